//go:build cgo

package cuda

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/cuda/fakecuda"
)

// The driver library is loaded once per process. This test binary loads the
// fake driver (built in TestMain) for the in-process tests; tests that need
// another library, or a fresh cuInit, run this binary again as a child with
// childModeEnv set, and the child writes what it saw as JSON to the file named
// by childReportEnv instead of running tests.
const (
	childModeEnv   = "KILN_CUDA_TEST_CHILD"
	childReportEnv = "KILN_CUDA_TEST_REPORT"
)

var (
	fakePath     string // the fake driver library this process loads, if built
	fakeBuildErr error
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childModeEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	fakePath, fakeBuildErr = fakecuda.BuildPath()
	if fakeBuildErr == nil {
		os.Setenv("KILN_CUDA_LIBRARY", fakePath)
	} else {
		// Never let the in-process tests reach a real driver by accident.
		os.Setenv("KILN_CUDA_LIBRARY", "/nonexistent/fake-driver-not-built/libcuda.so.1")
	}
	os.Exit(m.Run())
}

// errReport is an error as a child saw it.
type errReport struct {
	Msg             string
	LibraryNotFound bool
	NoDevice        bool
	IsError         bool // an *Error
	Call            string
	Result          int
}

func reportErr(err error) *errReport {
	if err == nil {
		return nil
	}
	r := &errReport{
		Msg:             err.Error(),
		LibraryNotFound: errors.Is(err, ErrLibraryNotFound),
		NoDevice:        errors.Is(err, ErrNoDevice),
	}
	var e *Error
	if errors.As(err, &e) {
		r.IsError, r.Call, r.Result = true, e.Call, int(e.Result)
	}
	return r
}

// probeReport is what the "probe" child saw.
type probeReport struct {
	Path                   string
	Load, Version, Init    *errReport
	Count, UUID            *errReport
	VersionValue, NDevices int
	UUIDValue              string
}

// realReport is what the "real" child saw on the machine's own driver.
type realReport struct {
	Skip     string
	Device   string
	Failures []string
}

func runChild(mode string) int {
	var report any
	switch mode {
	case "probe":
		report = probe()
	case "real":
		report = realDeviceCheck()
	case "launch":
		report = launchCheck()
	default:
		return 3
	}
	data, err := json.Marshal(report)
	if err != nil {
		return 4
	}
	if err := os.WriteFile(os.Getenv(childReportEnv), data, 0o644); err != nil {
		return 5
	}
	return 0
}

func probe() probeReport {
	var r probeReport
	r.Load = reportErr(Load())
	r.Path = LibraryPath()
	v, err := DriverVersion()
	r.VersionValue, r.Version = v, reportErr(err)
	r.Init = reportErr(Init())
	n, err := DeviceCount()
	r.NDevices, r.Count = n, reportErr(err)
	if err == nil && n > 0 {
		u, err := Device(0).UUID()
		r.UUIDValue, r.UUID = u, reportErr(err)
	}
	return r
}

// childEnv is this process's environment without the variables that steer
// the driver or the child, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KILN_CUDA_") || strings.HasPrefix(kv, "FAKECUDA_") || strings.HasPrefix(kv, "GORACE=") {
			continue
		}
		env = append(env, kv)
	}
	// Under -race a child would otherwise sleep a second before exiting.
	env = append(env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	return append(env, extra...)
}

// runChildMode runs this test binary as a child in mode with the extra
// environment and decodes its report into out. The child must print nothing:
// the library never writes to stdout or stderr.
func runChildMode(t *testing.T, mode string, out any, extra ...string) {
	t.Helper()
	reportPath := filepath.Join(t.TempDir(), "report.json")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = childEnv(append(extra, childModeEnv+"="+mode, childReportEnv+"="+reportPath)...)
	output, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child %q (%s) failed: %v\n%s", mode, strings.Join(extra, " "), err, output)
	}
	if printed := withoutToolNoise(string(output)); printed != "" {
		t.Errorf("child %q printed %q; the library must print nothing", mode, printed)
	}
	data, err := os.ReadFile(reportPath)
	if err != nil {
		t.Fatalf("child %q wrote no report: %v", mode, err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatalf("child %q report %s: %v", mode, data, err)
	}
}

// withoutToolNoise drops what the Go tool itself may print in a child (a
// coverage warning when run under -cover).
func withoutToolNoise(s string) string {
	var kept []string
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" || strings.HasPrefix(line, "warning: GOCOVERDIR not set") {
			continue
		}
		kept = append(kept, line)
	}
	return strings.Join(kept, "\n")
}

func probeWith(t *testing.T, env ...string) probeReport {
	t.Helper()
	var r probeReport
	runChildMode(t, "probe", &r, env...)
	return r
}

// requireFakeBuilt skips when the fake driver could not be built here.
func requireFakeBuilt(t *testing.T) {
	t.Helper()
	if errors.Is(fakeBuildErr, fakecuda.ErrNoCompiler) {
		t.Skipf("skipping: %v", fakeBuildErr)
	}
	if fakeBuildErr != nil {
		t.Fatalf("building the fake CUDA driver: %v", fakeBuildErr)
	}
}

func (r *errReport) String() string {
	if r == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%+v", *r)
}
