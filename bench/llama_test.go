package bench

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-gpu/kiln/models/synthetic"
	"github.com/kiln-gpu/kiln/runtime/cpu"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

func TestLlamaCasesAreRegistered(t *testing.T) {
	var want []string
	for _, m := range []string{"llama3-8b/F16", "llama3-8b/Q8_0", "llama3-8b/Q4_0", "llama3-8b/Q4_K", "small-100m/F32", "small-100m/Q8_0"} {
		want = append(want, "llama/"+m+"/pp512", "llama/"+m+"/tg128")
	}
	slices.Sort(want)
	cases := Cases(regexp.MustCompile(`^llama/`))
	if got := names(cases); !slices.Equal(got, want) {
		t.Fatalf("llama cases %v, want %v", got, want)
	}
	for _, c := range cases {
		tokens := int64(512)
		if strings.HasSuffix(c.Name, "tg128") {
			tokens = 128
		}
		if c.Tokens != tokens || c.MaxSets != 1 || c.ReadBound != (tokens == 128) || c.FLOPs <= 0 {
			t.Errorf("%s: Tokens %d, MaxSets %d, ReadBound %v, FLOPs %d", c.Name, c.Tokens, c.MaxSets, c.ReadBound, c.FLOPs)
		}
	}
}

// TestLlamaDecodeBytes checks tg128's byte count for LLaMA-3-8B F16 against
// the model's published shape: 8,030,261,248 parameters, of which 65 norm
// vectors of 4096 (F32) and a 128256×4096 embedding table that decoding
// reads one row of; F16 keys and values of 8 heads of 128 in 32 layers for
// positions 33 to 160 (a 32-token prompt, then 128 tokens).
func TestLlamaDecodeBytes(t *testing.T) {
	cases := Cases(regexp.MustCompile(`^llama/llama3-8b/F16/tg128$`))
	if len(cases) != 1 {
		t.Fatalf("cases %v", names(cases))
	}
	const params, norms, emb = 8_030_261_248, 65 * 4096, 128256 * 4096
	perToken := int64(params-norms-emb+4096)*2 + norms*4
	kvPerPos := int64(2 * 32 * 8 * 128 * 2)
	positions := int64((33 + 160) * 128 / 2)
	if want := 128*perToken + positions*kvPerPos; cases[0].Bytes != want {
		t.Errorf("Bytes %d, want %d", cases[0].Bytes, want)
	}
}

// tinyLlama is a model small enough to run the cases on the CPU in a test.
var tinyLlama = llamaBenchModel{
	spec: func(wt tensor.DType) synthetic.Spec {
		return synthetic.Spec{Name: "tiny", Dim: 256, Layers: 2, Heads: 4, KVHeads: 2, FFNDim: 512,
			Vocab: 512, ContextLen: 1024, RopeBase: 10000, WeightType: wt, Seed: 3}
	},
	act: tensor.F32,
}

func TestLlamaCasesRunOnTheCPU(t *testing.T) {
	dev := cpu.New(cpu.Options{})
	defer dev.Close()
	cases := append([]Case{probeCase("probe/read/test", 16<<20, false)}, llamaCases(tinyLlama, tensor.Q8_0)...)
	res, err := Run(context.Background(), dev, cases, Options{MinTime: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	probe := res[0]
	if probe.Error != "" || probe.GBps <= 0 {
		t.Fatalf("probe: %+v", probe)
	}
	for i, r := range res[1:] {
		c := cases[i+1]
		if r.Error != "" || r.Skipped != "" || r.Seconds <= 0 || r.Sets != 1 {
			t.Fatalf("%s: %+v", r.Name, r)
		}
		if want := float64(c.Tokens) / r.Seconds; r.TokensPerSecond != want {
			t.Errorf("%s: %g tokens/s, want tokens/seconds = %g", r.Name, r.TokensPerSecond, want)
		}
		wantFraction := 0.0
		if c.ReadBound {
			wantFraction = r.GBps / probe.GBps
		}
		if r.OfReadProbe != wantFraction {
			t.Errorf("%s: OfReadProbe %g, want %g", r.Name, r.OfReadProbe, wantFraction)
		}
		if s := FormatResult(r); !strings.Contains(s, "tok/s") || c.ReadBound != strings.Contains(s, "of read probe") {
			t.Errorf("%s: summary %q", r.Name, s)
		}
	}
	if s := dev.MemoryStats(); s.InUseBytes != 0 {
		t.Errorf("%d bytes still in use after the cases", s.InUseBytes)
	}
}

func TestLlama8BIsSkippedOnTheCPU(t *testing.T) {
	dev := cpu.New(cpu.Options{})
	defer dev.Close()
	cases := Cases(regexp.MustCompile(`^llama/llama3-8b/Q4_K/`))
	start := time.Now()
	res, err := Run(context.Background(), dev, cases, Options{MinTime: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("%d results", len(res))
	}
	for _, r := range res {
		if r.Error != "" || !strings.Contains(r.Skipped, "GPU only") || r.Seconds != 0 || r.TokensPerSecond != 0 {
			t.Errorf("%s: %+v, want skipped", r.Name, r)
		}
		if s := FormatResult(r); !strings.HasPrefix(s, "skipped: ") {
			t.Errorf("%s: summary %q", r.Name, s)
		}
	}
	// Skipped before the 4.6 GB model is built.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("skipping took %v", d)
	}
}
