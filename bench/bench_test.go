package bench

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kiln-gpu/kiln/runtime/cpu"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

func TestRunTimesACaseAndRotatesSets(t *testing.T) {
	dev := cpu.New(cpu.Options{})
	defer dev.Close()
	runs := map[int]int{} // set -> iterations
	prepared, closed := 0, 0
	c := Case{
		Name:  "test/add/F32/64",
		Bytes: 100 << 20, // asks for 3 sets over the 256 MiB default footprint
		FLOPs: 64,
		Prepare: func(env *Env) (*Runner, error) {
			set := prepared
			prepared++
			x, err := env.Random(tensor.F32, 0, 64)
			if err != nil {
				return nil, err
			}
			return &Runner{
				Run:   func() error { runs[set]++; return env.Dev.Add(x, x, x) },
				Close: func() error { closed++; return nil },
			}, nil
		},
	}
	res, err := Run(context.Background(), dev, []Case{c}, Options{MinTime: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if r.Error != "" {
		t.Fatalf("case error: %s", r.Error)
	}
	if r.Sets != 3 || prepared != 3 || closed != 3 {
		t.Errorf("sets %d, prepared %d, closed %d; want 3 each", r.Sets, prepared, closed)
	}
	if len(runs) != 3 {
		t.Errorf("iterations ran over %d sets, want 3", len(runs))
	}
	if r.Iterations < 5 || r.Seconds <= 0 {
		t.Errorf("iterations %d, seconds %g", r.Iterations, r.Seconds)
	}
	if want := float64(r.Bytes) / r.Seconds / 1e9; r.GBps != want {
		t.Errorf("GBps %g, want bytes/seconds/1e9 = %g", r.GBps, want)
	}
	if s := dev.MemoryStats(); s.InUseBytes != 0 {
		t.Errorf("%d bytes still in use after the case", s.InUseBytes)
	}
}

func TestRunReportsCaseErrorsAndGoesOn(t *testing.T) {
	dev := cpu.New(cpu.Options{})
	defer dev.Close()
	bad := Case{Name: "test/bad", Prepare: func(env *Env) (*Runner, error) { return nil, errors.New("no such thing") }}
	failing := Case{Name: "test/failing", Prepare: func(env *Env) (*Runner, error) {
		return &Runner{Run: func() error { return errors.New("op failed") }}, nil
	}}
	good := Case{Name: "test/good", Prepare: func(env *Env) (*Runner, error) {
		return &Runner{Run: func() error { return nil }}, nil
	}}
	res, err := Run(context.Background(), dev, []Case{bad, failing, good}, Options{MinTime: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Error != "no such thing" || res[1].Error != "op failed" || res[2].Error != "" {
		t.Errorf("errors: %q %q %q", res[0].Error, res[1].Error, res[2].Error)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, dev, []Case{good}, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v", err)
	}
}

func TestRegisteredCasesRunOnTheCPU(t *testing.T) {
	cases := Cases(regexp.MustCompile(`^probe/|^op/(argmax|rope)/`))
	if len(cases) != 4 || !strings.HasPrefix(cases[0].Name, "probe/") {
		t.Fatalf("cases %v", names(cases))
	}
	if testing.Short() {
		cases = cases[2:]
	}
	dev := cpu.New(cpu.Options{})
	defer dev.Close()
	res, err := Run(context.Background(), dev, cases, Options{MinTime: time.Millisecond, MaxSets: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Error != "" || r.GBps <= 0 {
			t.Errorf("%s: error %q, %g GB/s", r.Name, r.Error, r.GBps)
		}
	}
}

func TestCaseNamesAreUniqueAndWellFormed(t *testing.T) {
	seen := map[string]bool{}
	re := regexp.MustCompile(`^([a-z]+/[a-z0-9-]+/[A-Za-z0-9_-]+(/[0-9x]+)?|matmul/[A-Z0-9_]+/m[0-9]+n[0-9]+k[0-9]+|` +
		`attention/prefill/[A-Z0-9]+/d[0-9]+-(causal|full)/b[0-9]+s[0-9]+|attention/decode/[A-Z0-9]+/h[0-9]+kv[0-9]+d[0-9]+/b[0-9]+kv[0-9]+|` +
		`llama/[a-z0-9-]+/[A-Z0-9_]+/(pp|tg)[0-9]+)$`)
	for _, c := range Cases(nil) {
		if seen[c.Name] {
			t.Errorf("duplicate case %s", c.Name)
		}
		seen[c.Name] = true
		if !re.MatchString(c.Name) {
			t.Errorf("case name %q is not group/what/dtype/shape (or matmul/<wtype>/m<M>n<N>k<K>, "+
				"attention/prefill/<dtype>/d<D>-<causal|full>/b<B>s<S>, attention/decode/<dtype>/h<H>kv<KV>d<D>/b<B>kv<L>, "+
				"llama/<model>/<wtype>/<pp|tg><N>)", c.Name)
		}
		if c.Bytes <= 0 {
			t.Errorf("%s: no byte count", c.Name)
		}
	}
}

func names(cs []Case) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestSlowCaseIsTimedOnOneIteration(t *testing.T) {
	dev := cpu.New(cpu.Options{})
	defer dev.Close()
	runs := 0
	slow := Case{Name: "test/slow", Bytes: 1, Prepare: func(env *Env) (*Runner, error) {
		return &Runner{Run: func() error { runs++; time.Sleep(30 * time.Millisecond); return nil }}, nil
	}}
	res, err := Run(context.Background(), dev, []Case{slow}, Options{MinTime: 10 * time.Millisecond, MaxSets: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Error != "" || r.Iterations != 1 || r.Seconds < 0.03 || runs != 2 {
		t.Errorf("slow case: %+v after %d runs; want one warm-up and one timed iteration", r, runs)
	}
}
