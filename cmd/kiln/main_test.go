package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// The driver library is loaded once per process; this binary never loads a
// real one, so kiln's answers are those of a machine without a GPU.
func TestMain(m *testing.M) {
	os.Setenv("KILN_CUDA_LIBRARY", "/nonexistent/kiln-cmd-test/libcuda.so.1")
	os.Exit(m.Run())
}

func runKiln(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestInfoExplainsTheCPUFallback(t *testing.T) {
	code, out, errOut := runKiln(t, "info")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	for _, want := range []string{"CUDA devices: none", "Backend for -device auto: cpu", "why: auto: using the CPU"} {
		if !strings.Contains(out, want) {
			t.Errorf("kiln info lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runKiln(t, "info", "-json")
	var r infoReport
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("kiln info -json: exit %d, output %s", code, out)
	}
	if r.AutoBackend != "cpu" || r.DriverError == "" || r.RequiredCUDA != "12.4" || len(r.Devices) != 0 {
		t.Errorf("info report %+v", r)
	}
}

func TestBenchListAndRun(t *testing.T) {
	code, out, _ := runKiln(t, "bench", "-list", "-filter", "^op/argmax/")
	if code != 0 || strings.TrimSpace(out) != "op/argmax/F32/32x128256" {
		t.Fatalf("bench -list: exit %d, output %q", code, out)
	}
	code, out, errOut := runKiln(t, "bench", "-filter", "^op/argmax/", "-device", "cpu", "-json", "-time", "1ms")
	if code != 0 {
		t.Fatalf("bench: exit %d, stderr %s", code, errOut)
	}
	var r benchReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench -json output: %v\n%s", err, out)
	}
	if r.Tool != "kiln" || r.Backend != "cpu" || len(r.Results) != 1 || r.Results[0].Error != "" || r.Results[0].Seconds <= 0 {
		t.Errorf("bench report %+v", r)
	}
	if !strings.Contains(errOut, "[1/1] op/argmax/F32/32x128256") {
		t.Errorf("no progress on stderr: %s", errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "Usage: kiln <command>"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"bench", "-filter", "("}, 2, "-filter"},
		{[]string{"bench", "-filter", "no-such-case"}, 2, "no case matches"},
		{[]string{"bench", "-device", "tpu:0", "-filter", "argmax"}, 1, `unknown device "tpu:0"`},
		{[]string{"info", "extra"}, 2, "unexpected arguments"},
		{[]string{"help"}, 0, "Commands:"},
	} {
		code, _, errOut := runKiln(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("kiln %v: exit %d (want %d), stderr %q (want %q)", c.args, code, c.code, errOut, c.want)
		}
	}
}
