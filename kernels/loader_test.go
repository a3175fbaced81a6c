package kernels

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
)

func TestTargetsFor(t *testing.T) {
	tests := []struct {
		cc       ComputeCapability
		hasSM90a bool
		want     []Target
	}{
		{ComputeCapability{8, 0}, true, []Target{TargetCompute80}},
		{ComputeCapability{8, 6}, true, []Target{TargetCompute80}},
		{ComputeCapability{8, 9}, true, []Target{TargetCompute80}},
		{ComputeCapability{9, 0}, true, []Target{TargetSM90a, TargetCompute80}},
		{ComputeCapability{9, 0}, false, []Target{TargetCompute80}},
		// sm_90a code is not forward compatible: Blackwell gets the baseline.
		{ComputeCapability{10, 0}, true, []Target{TargetCompute80}},
		{ComputeCapability{12, 0}, true, []Target{TargetCompute80}},
	}
	for _, tc := range tests {
		if got := targetsFor(tc.cc, tc.hasSM90a); !slices.Equal(got, tc.want) {
			t.Errorf("targetsFor(%v, %v) = %v, want %v", tc.cc, tc.hasSM90a, got, tc.want)
		}
	}
}

func TestCheckComputeCapability(t *testing.T) {
	for _, cc := range []ComputeCapability{{8, 0}, {8, 6}, {9, 0}, {10, 0}} {
		if err := CheckComputeCapability(cc); err != nil {
			t.Errorf("%v: %v", cc, err)
		}
	}
	for _, cc := range []ComputeCapability{{7, 5}, {7, 0}, {6, 1}, {0, 0}} {
		err := CheckComputeCapability(cc)
		if !errors.Is(err, op.ErrUnsupported) {
			t.Errorf("%v: got %v, want an error matching op.ErrUnsupported", cc, err)
		} else if !strings.Contains(err.Error(), cc.String()) {
			t.Errorf("%v: the error %q does not name the compute capability", cc, err)
		}
	}
	if _, err := newSet(newFakeDriver(), ComputeCapability{7, 5}, Options{}); !errors.Is(err, op.ErrUnsupported) {
		t.Errorf("newSet on 7.5: got %v, want op.ErrUnsupported", err)
	}
}

func TestCheckDriverVersion(t *testing.T) {
	for _, v := range []int{12040, 12050, 12080, 13000} {
		if err := CheckDriverVersion(v); err != nil {
			t.Errorf("%d: %v", v, err)
		}
	}
	err := CheckDriverVersion(12020)
	if !errors.Is(err, op.ErrNoDevice) {
		t.Fatalf("12020: got %v, want an error matching op.ErrNoDevice", err)
	}
	for _, want := range []string{"CUDA 12.2", "12020", "CUDA 12.4", "12040", "PTX ISA 8.4"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the message %q lacks %q", err, want)
		}
	}
}

// testPTX is a minimal PTX text with the given kernels.
func testPTX(target string, kernels ...string) *fstest.MapFile {
	text := ".version 8.4\n.target " + target + "\n.address_size 64\n"
	for _, k := range kernels {
		text += "\n.visible .entry " + k + "(\n)\n{\n\tret;\n}\n"
	}
	return &fstest.MapFile{Data: []byte(text)}
}

// hopperFS has a probe family with both targets and a copy family with the
// baseline only, using the real kernel names.
func hopperFS() fstest.MapFS {
	return fstest.MapFS{
		"compute_80/probe.ptx": testPTX("sm_80", "read_probe_b128"),
		"sm_90a/probe.ptx":     testPTX("sm_90a", "read_probe_b128"),
		"compute_80/copy.ptx":  testPTX("sm_80", "copy_f32_to_f32", "copy_f32_to_f32_vec"),
	}
}

// launchProbe launches read_probe_b128 with valid arguments.
func launchProbe(s *Set) error { return s.ReadProbe(nil, 0x1000, 1<<20, 0x2000, 4) }

func TestLoaderPicksHopperPTXOn90(t *testing.T) {
	s, d := newTestSetFS(t, ComputeCapability{9, 0}, hopperFS(), nil)
	if err := launchProbe(s); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.loads, []string{"sm_90a"}) {
		t.Errorf("loaded %v, want [sm_90a]", d.loads)
	}
	if tg, ok := s.LoadedTarget(FamilyProbe); !ok || tg != TargetSM90a {
		t.Errorf("LoadedTarget = %v, %v; want sm_90a", tg, ok)
	}
	// A family without Hopper PTX loads its baseline on the same device.
	if err := s.Convert(nil, f32Operand(0x3000, 4), f32Operand(0x4000, 4)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.loads, []string{"sm_90a", "sm_80"}) {
		t.Errorf("loaded %v, want [sm_90a sm_80]", d.loads)
	}
}

func TestLoaderUsesBaselineElsewhere(t *testing.T) {
	for _, cc := range []ComputeCapability{{8, 0}, {8, 9}, {10, 0}} {
		s, d := newTestSetFS(t, cc, hopperFS(), nil)
		if err := launchProbe(s); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(d.tried, []string{"sm_80"}) {
			t.Errorf("%v: tried %v, want only [sm_80]", cc, d.tried)
		}
	}
}

func TestLoaderFallsBackWhenHopperRefused(t *testing.T) {
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logBuf, nil))
	s, d := newTestSetFS(t, ComputeCapability{9, 0}, hopperFS(), logger)
	d.refuse["sm_90a"] = true
	if err := launchProbe(s); err != nil {
		t.Fatalf("the fallback should have succeeded: %v", err)
	}
	if !slices.Equal(d.tried, []string{"sm_90a", "sm_80"}) || !slices.Equal(d.loads, []string{"sm_80"}) {
		t.Errorf("tried %v, loaded %v; want tried [sm_90a sm_80], loaded [sm_80]", d.tried, d.loads)
	}
	if tg, _ := s.LoadedTarget(FamilyProbe); tg != TargetCompute80 {
		t.Errorf("LoadedTarget = %v, want compute_80", tg)
	}
	log := logBuf.String()
	for _, want := range []string{"level=WARN", "family=probe", "refused=sm_90a", "fallback=compute_80", "CUDA_ERROR_INVALID_PTX"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	if got := d.lastLaunch(t).kernel; got != "read_probe_b128" {
		t.Errorf("launched %s", got)
	}
}

func TestLoaderReturnsJITLogWhenBaselineRefused(t *testing.T) {
	s, d := newTestSetFS(t, ComputeCapability{9, 0}, hopperFS(), nil)
	d.refuse["sm_90a"] = true
	d.refuse["sm_80"] = true
	err := launchProbe(s)
	var cerr *cuda.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("got %v (%T), want a wrapped *cuda.Error", err, err)
	}
	if !errors.Is(err, cuda.ErrInvalidPTX) {
		t.Errorf("errors.Is(%v, cuda.ErrInvalidPTX) is false", err)
	}
	if !strings.Contains(cerr.Log, "ptxas fatal") || !strings.Contains(err.Error(), "JIT log") {
		t.Errorf("the JIT log is missing from %q", err)
	}
	if !strings.Contains(err.Error(), "compute_80/probe.ptx") {
		t.Errorf("the error %q does not name the PTX file", err)
	}
	if len(d.launches) != 0 {
		t.Error("a kernel was launched after the load failed")
	}
	// Nothing is cached: once the driver accepts the PTX, the next launch works.
	delete(d.refuse, "sm_80")
	if err := launchProbe(s); err != nil {
		t.Errorf("after the driver recovered: %v", err)
	}
}

func TestLoaderCachesModulesAndFunctions(t *testing.T) {
	s, d := newTestSetFS(t, ComputeCapability{8, 6}, hopperFS(), nil)
	for range 3 {
		if err := launchProbe(s); err != nil {
			t.Fatal(err)
		}
	}
	if len(d.loads) != 1 {
		t.Errorf("%d module loads for one family, want 1", len(d.loads))
	}
	if len(d.names) != 1 {
		t.Errorf("%d function lookups for one kernel, want 1", len(d.names))
	}
	if len(d.launches) != 3 {
		t.Errorf("%d launches, want 3", len(d.launches))
	}
}

func TestLoaderMissingPTXAndKernel(t *testing.T) {
	fsys := hopperFS()
	delete(fsys, "compute_80/copy.ptx")
	s, _ := newTestSetFS(t, ComputeCapability{8, 0}, fsys, nil)
	err := s.Convert(nil, f32Operand(0x3000, 4), f32Operand(0x4000, 4))
	if err == nil || !strings.Contains(err.Error(), "compute_80/copy.ptx") {
		t.Errorf("a missing PTX file: got %v, want an error naming compute_80/copy.ptx", err)
	}
	// The probe module exists but lacks copy_probe_b128.
	err = s.CopyProbe(nil, 0x1000, 0x2000, 64)
	if err == nil || !strings.Contains(err.Error(), "copy_probe_b128") || !strings.Contains(err.Error(), "CUDA_ERROR_NOT_FOUND") {
		t.Errorf("a missing kernel: got %v, want an error naming copy_probe_b128 and CUDA_ERROR_NOT_FOUND", err)
	}
}

func TestCloseUnloadsModules(t *testing.T) {
	s, d := newTestSetFS(t, ComputeCapability{9, 0}, hopperFS(), nil)
	if err := launchProbe(s); err != nil {
		t.Fatal(err)
	}
	if err := s.Convert(nil, f32Operand(0x3000, 4), f32Operand(0x4000, 4)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(d.modules) != 2 {
		t.Fatalf("%d modules loaded, want 2", len(d.modules))
	}
	for _, m := range d.modules {
		if m.unloaded != 1 {
			t.Errorf("module %s unloaded %d times, want 1", m.target, m.unloaded)
		}
	}
	if err := launchProbe(s); !errors.Is(err, op.ErrClosed) {
		t.Errorf("launch after Close: got %v, want op.ErrClosed", err)
	}
	if err := s.LoadAll(); !errors.Is(err, op.ErrClosed) {
		t.Errorf("LoadAll after Close: got %v, want op.ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, m := range d.modules {
		if m.unloaded != 1 {
			t.Errorf("module %s unloaded %d times after two Closes, want 1", m.target, m.unloaded)
		}
	}
}

func TestLoadAllEmbedded(t *testing.T) {
	for _, cc := range []ComputeCapability{{8, 0}, {9, 0}} {
		s, d := newTestSet(t, cc, Options{})
		if err := s.LoadAll(); err != nil {
			t.Fatal(err)
		}
		if len(d.loads) != len(Families()) {
			t.Errorf("%v: %d modules loaded, want one per family (%d)", cc, len(d.loads), len(Families()))
		}
		wantProbe := TargetCompute80
		if cc.Major == 9 {
			wantProbe = TargetSM90a
		}
		if tg, _ := s.LoadedTarget(FamilyProbe); tg != wantProbe {
			t.Errorf("%v: probe loaded from %v, want %v", cc, tg, wantProbe)
		}
		if tg, _ := s.LoadedTarget(FamilyNorm); tg != TargetCompute80 {
			t.Errorf("%v: norm loaded from %v, want compute_80", cc, tg)
		}
	}
}

func TestOpenWithoutDriver(t *testing.T) {
	if _, err := Open(nil, Options{}); err == nil {
		t.Error("Open(nil) succeeded")
	}
}

func newTestSetFS(t *testing.T, cc ComputeCapability, fsys fstest.MapFS, logger *slog.Logger) (*Set, *fakeDriver) {
	t.Helper()
	return newTestSet(t, cc, Options{FS: fsys, Logger: logger})
}
