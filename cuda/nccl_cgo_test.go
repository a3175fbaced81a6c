//go:build cgo

package cuda

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NCCL is loaded once per process, so each scenario runs this test binary
// again as a child that runs only TestNCCLChildProbe, with
// KILN_NCCL_LIBRARY set as the scenario needs; the child writes what it saw
// as JSON.
const (
	ncclChildEnv  = "KILN_NCCL_TEST_CHILD"
	ncclReportEnv = "KILN_NCCL_TEST_REPORT"
)

// ncclProbeReport is what the child saw.
type ncclProbeReport struct {
	Path        string
	Load        *ncclErrReport
	Version     int
	VersionErr  *ncclErrReport
	Init        *ncclErrReport
	InitRanks   int
	DestroyErrs []string
}

type ncclErrReport struct {
	Msg       string
	NoNCCL    bool
	IsNCCLErr bool
	Call      string
	Result    int
	Message   string
}

func reportNCCLErr(err error) *ncclErrReport {
	if err == nil {
		return nil
	}
	r := &ncclErrReport{Msg: err.Error(), NoNCCL: errors.Is(err, ErrNoNCCL)}
	var e *NCCLError
	if errors.As(err, &e) {
		r.IsNCCLErr, r.Call, r.Result, r.Message = true, e.Call, int(e.Result), e.Message
	}
	return r
}

// TestNCCLChildProbe is the child's side; it skips in a normal run.
func TestNCCLChildProbe(t *testing.T) {
	out := os.Getenv(ncclReportEnv)
	if os.Getenv(ncclChildEnv) == "" || out == "" {
		t.Skip("runs only as the child of the NCCL loading tests")
	}
	var r ncclProbeReport
	r.Load = reportNCCLErr(LoadNCCL())
	r.Path = NCCLLibraryPath()
	v, err := NCCLVersion()
	r.Version, r.VersionErr = v, reportNCCLErr(err)
	if err == nil {
		comms, err := NCCLCommInitAll([]Device{0})
		r.Init, r.InitRanks = reportNCCLErr(err), len(comms)
		for _, c := range comms {
			if err := c.Destroy(); err != nil {
				r.DestroyErrs = append(r.DestroyErrs, err.Error())
			}
		}
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// probeNCCL runs the child with KILN_NCCL_LIBRARY=libPath. A hang (NCCL
// waiting on something that never comes) fails the test instead of the run.
func probeNCCL(t *testing.T, libPath string) ncclProbeReport {
	t.Helper()
	report := filepath.Join(t.TempDir(), "nccl.json")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestNCCLChildProbe$")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KILN_NCCL_") && !strings.HasPrefix(kv, "GORACE=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"),
		"KILN_NCCL_LIBRARY="+libPath, ncclChildEnv+"=1", ncclReportEnv+"="+report)
	output, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the NCCL child (KILN_NCCL_LIBRARY=%s) did not finish in time: a hang\n%s", libPath, output)
	}
	if err != nil {
		t.Fatalf("the NCCL child (KILN_NCCL_LIBRARY=%s) failed: %v\n%s", libPath, err, output)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("the NCCL child wrote no report: %v\n%s", err, output)
	}
	var r ncclProbeReport
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("NCCL child report %s: %v", data, err)
	}
	return r
}

func TestNCCLMissingLibraryIsErrNoNCCL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-dir", "libnccl.so.2")
	r := probeNCCL(t, path)
	if r.Load == nil || !r.Load.NoNCCL {
		t.Fatalf("LoadNCCL with a missing library: %v, want an error matching ErrNoNCCL", r.Load)
	}
	if !strings.Contains(r.Load.Msg, path) {
		t.Errorf("LoadNCCL's error %q does not name the path tried %s", r.Load.Msg, path)
	}
	if r.Path != path {
		t.Errorf("NCCLLibraryPath = %q, want %q", r.Path, path)
	}
	if r.VersionErr == nil || !r.VersionErr.NoNCCL {
		t.Errorf("NCCLVersion after a failed load: %v, want ErrNoNCCL", r.VersionErr)
	}
}

func TestNCCLLibraryWithoutTheEntryPointsIsErrNoNCCL(t *testing.T) {
	requireFakeBuilt(t)
	// The fake CUDA driver is a real shared library, but not NCCL.
	r := probeNCCL(t, fakePath)
	if r.Load == nil || !r.Load.NoNCCL || !strings.Contains(r.Load.Msg, "ncclGetVersion") || !strings.Contains(r.Load.Msg, fakePath) {
		t.Fatalf("LoadNCCL on a library without NCCL's symbols: %v, want ErrNoNCCL naming %s and ncclGetVersion", r.Load, fakePath)
	}
}

// TestNCCLRealLibrary loads the libnccl.so.2 that KILN_TEST_NCCL names. On
// a machine without a usable GPU ncclCommInitAll must fail with an error
// naming the call; with one, the one-rank communicator must also destroy
// cleanly.
func TestNCCLRealLibrary(t *testing.T) {
	lib := os.Getenv("KILN_TEST_NCCL")
	if lib == "" {
		t.Skip("set KILN_TEST_NCCL to a libnccl.so.2 to test loading the real NCCL")
	}
	r := probeNCCL(t, lib)
	if r.Load != nil {
		t.Fatalf("LoadNCCL(%s): %s", lib, r.Load.Msg)
	}
	if r.VersionErr != nil {
		t.Fatalf("ncclGetVersion: %s", r.VersionErr.Msg)
	}
	// 2.0.0 is 2000 in the old encoding; no NCCL 3 exists yet.
	if s := NCCLVersionString(r.Version); r.Version < 2000 || !strings.HasPrefix(s, "2.") {
		t.Fatalf("ncclGetVersion = %d (%s), want a 2.x version", r.Version, s)
	}
	t.Logf("NCCL %s (code %d) from %s", NCCLVersionString(r.Version), r.Version, lib)
	switch {
	case r.Init == nil:
		if r.InitRanks != 1 || len(r.DestroyErrs) != 0 {
			t.Errorf("ncclCommInitAll on device 0 made %d communicators; destroy errors %v", r.InitRanks, r.DestroyErrs)
		}
		t.Log("ncclCommInitAll succeeded: a GPU is present")
	case !r.Init.IsNCCLErr || r.Init.Call != "ncclCommInitAll" || r.Init.Result == 0 || !strings.Contains(r.Init.Msg, "ncclCommInitAll"):
		t.Errorf("ncclCommInitAll failed with %+v, want an *NCCLError naming ncclCommInitAll", r.Init)
	default:
		t.Logf("ncclCommInitAll without a usable GPU: %s", r.Init.Msg)
	}
}

// Argument checks come before NCCL is loaded, so they hold without it.
func TestNCCLArgumentChecks(t *testing.T) {
	for name, devs := range map[string][]Device{
		"empty":     nil,
		"duplicate": {0, 1, 0},
		"negative":  {-1},
	} {
		comms, err := NCCLCommInitAll(devs)
		if err == nil || comms != nil || errors.Is(err, ErrNoNCCL) || !strings.Contains(err.Error(), "NCCLCommInitAll") {
			t.Errorf("%s device list %v: got %v, %v; want an argument error naming NCCLCommInitAll", name, devs, comms, err)
		}
	}
	var comm *NCCLComm
	if err := comm.AllReduceSum(0, 0, 1, NCCLFloat32, nil); !errors.Is(err, ErrDestroyed) {
		t.Errorf("AllReduceSum on a nil communicator: %v, want ErrDestroyed", err)
	}
	if err := comm.Destroy(); !errors.Is(err, ErrDestroyed) {
		t.Errorf("Destroy on a nil communicator: %v, want ErrDestroyed", err)
	}
	if err := checkNCCLDataType(NCCLDataType(0)); err == nil || !strings.Contains(err.Error(), "ncclDataType_t(0)") {
		t.Errorf("data type 0 (ncclInt8): %v, want an error naming it", err)
	}
}
