//go:build cgo

package cuda

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/cuda/fakecuda"
)

// These tests pin down rules of the real CUDA driver that the binding must
// follow and that the fake driver models: the exact size of a launch's
// parameter buffer, a current context changed by other code on the same
// thread, and the JIT logs after a failure before the load.

// paddedParams mirrors the 24-byte struct that padded_struct (testPTX) takes
// as its second parameter.
type paddedParams struct{ A, B, C uint64 }

func TestFakeLaunchChecksTheParameterSize(t *testing.T) {
	lib := fakeLib(t)
	ctx := fakeContext(t, 0)
	mod, err := ctx.LoadModule([]byte(testPTX))
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Unload()
	// The sizes the driver lays the parameters out in, by hand from the PTX:
	// scale_f32(u64 at 0, f32 at 8) ends at 12; padded_struct(u32 at 0,
	// 24 bytes aligned to 8 at 8, u32 at 32) ends at 36, not at 40 as a C
	// struct of the same members would (the driver counts no tail padding);
	// no_params takes none.
	for _, c := range []struct {
		kernel string
		want   int
	}{{"scale_f32", 12}, {"padded_struct", 36}, {"no_params", 0}, {"plain_kernel", 4}} {
		f, err := mod.Function(c.kernel)
		if err != nil {
			t.Fatal(err)
		}
		if n, known := f.ParamBytes(); !known || n != c.want {
			t.Errorf("%s: ParamBytes %d, %v; want %d, true", c.kernel, n, known, c.want)
		}
	}

	padded, err := mod.Function("padded_struct")
	if err != nil {
		t.Fatal(err)
	}
	var args Args
	args.U32(1)
	Struct(&args, &paddedParams{2, 3, 4})
	args.U32(5)
	if err := ctx.Launch(padded, D1(1), D1(1), 0, nil, &args); err != nil {
		t.Fatalf("launch with the exact 36 bytes: %v", err)
	}
	last, _ := lib.LastLaunch()
	if last.Kernel != "padded_struct" || len(last.Args) != 36 || last.Args[8] != 2 || last.Args[32] != 5 {
		t.Errorf("the driver received %s with % x", last.Kernel, last.Args)
	}

	// Arguments packed for another signature never reach the driver.
	scale, err := mod.Function("scale_f32")
	if err != nil {
		t.Fatal(err)
	}
	before := lib.LaunchCount()
	for _, bad := range []struct {
		what string
		pack func(*Args)
	}{
		{"a missing float", func(a *Args) { a.Ptr(0x1000) }},
		{"tail padding", func(a *Args) { a.Ptr(0x1000).F32(1).U32(0) }},
		{"no arguments", func(*Args) {}},
	} {
		var a Args
		bad.pack(&a)
		err := ctx.Launch(scale, D1(1), D1(1), 0, nil, &a)
		if err == nil || !strings.Contains(err.Error(), "scale_f32 takes 12 bytes of parameters") {
			t.Errorf("launch with %s (%d bytes): %v, want an error saying scale_f32 takes 12 bytes", bad.what, len(a.Bytes()), err)
		}
	}
	if err := ctx.Launch(scale, D1(1), D1(1), 0, nil, nil); err == nil {
		t.Error("a launch with nil Args of a kernel that takes 12 bytes was accepted")
	}
	if got := lib.LaunchCount(); got != before {
		t.Errorf("%d mis-packed launches reached the driver", got-before)
	}
}

// launchReport is what the "launch" child saw.
type launchReport struct {
	ParamBytes    int
	ParamKnown    bool
	Setup         *errReport
	Exact, Padded *errReport
}

// launchCheck launches scale_f32 with exact and with padded arguments.
func launchCheck() launchReport {
	var r launchReport
	ctx, err := Device(0).RetainPrimaryContext()
	if err != nil {
		r.Setup = reportErr(err)
		return r
	}
	defer ctx.Release()
	mod, err := ctx.LoadModule([]byte(testPTX))
	if err != nil {
		r.Setup = reportErr(err)
		return r
	}
	defer mod.Unload()
	f, err := mod.Function("scale_f32")
	if err != nil {
		r.Setup = reportErr(err)
		return r
	}
	r.ParamBytes, r.ParamKnown = f.ParamBytes()
	var a Args
	a.Ptr(0x1000).F32(1)
	r.Exact = reportErr(ctx.Launch(f, D1(1), D1(1), 0, nil, &a))
	a.U32(0) // the tail padding sizeof(struct {void *p; float f;}) would count
	r.Padded = reportErr(ctx.Launch(f, D1(1), D1(1), 0, nil, &a))
	return r
}

func TestLaunchWithoutParamInfoLeavesTheSizeToTheDriver(t *testing.T) {
	lib := fakecuda.BuildVariant(t, "FAKECUDA_NO_PARAM_INFO")
	var r launchReport
	runChildMode(t, "launch", &r, "KILN_CUDA_LIBRARY="+lib)
	if r.Setup != nil {
		t.Fatalf("setting up the launch: %v", r.Setup)
	}
	if r.ParamKnown {
		t.Errorf("ParamBytes known (%d) on a driver without cuFuncGetParamInfo", r.ParamBytes)
	}
	if r.Exact != nil {
		t.Errorf("launch with the exact 12 bytes: %v", r.Exact)
	}
	// The driver itself refuses the padded buffer, with a misleading result.
	if r.Padded == nil || r.Padded.Call != "cuLaunchKernel" || r.Padded.Result != int(ErrorLaunchOutOfRes) {
		t.Errorf("launch with 16 bytes for 12: %v, want cuLaunchKernel's CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", r.Padded)
	}
}

func TestFakeContextChangedBehindKilnsBackIsRestored(t *testing.T) {
	lib := fakeLib(t)
	t.Setenv("FAKECUDA_DEVICES", "2")
	ctx0 := fakeContext(t, 0)
	ctx1 := fakeContext(t, 1)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	free0, _, err := ctx0.MemInfo() // ctx0 is now current on this thread
	if err != nil {
		t.Fatal(err)
	}
	free1, _, err := ctx1.MemInfo()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ctx0.MemInfo(); err != nil {
		t.Fatal(err)
	}
	// Another library makes device 1's context current on this thread.
	if r := lib.SetCurrentContext(ctx1.handle); r != 0 {
		t.Fatalf("cuCtxSetCurrent(device 1) from outside kiln: CUresult %d", r)
	}
	const size = 1 << 20
	p, err := ctx0.MemAlloc(size)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx0.MemFree(p)
	after0, _, err := ctx0.MemInfo()
	if err != nil {
		t.Fatal(err)
	}
	after1, _, err := ctx1.MemInfo()
	if err != nil {
		t.Fatal(err)
	}
	if free0-after0 != size || after1 != free1 {
		t.Errorf("MemAlloc in device 0's context after another library switched the thread to device 1: device 0 free %d -> %d, device 1 free %d -> %d; want the %d bytes on device 0",
			free0, after0, free1, after1, size)
	}
	// The same after the other code left no context current at all.
	if r := lib.SetCurrentContext(nil); r != 0 {
		t.Fatalf("cuCtxSetCurrent(NULL) from outside kiln: CUresult %d", r)
	}
	if _, _, err := ctx0.MemInfo(); err != nil {
		t.Errorf("MemInfo after another library cleared the current context: %v", err)
	}
}

func TestFakeModuleLoadLogIsEmptyWhenTheContextFails(t *testing.T) {
	fakeLib(t)
	ctx := fakeContext(t, 0)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Fill the C heap with non-zero bytes and free them, so that the log
	// buffers LoadModule allocates are likely to reuse dirty memory.
	for range 4 {
		if _, err := ctx.LoadModule([]byte(strings.Repeat("x", 100<<10))); err == nil {
			t.Fatal("text without .version loaded as a module")
		}
	}
	// Invalidate the cached current context, then make setting it fail.
	extra, err := Device(0).RetainPrimaryContext()
	if err != nil {
		t.Fatal(err)
	}
	if err := extra.Release(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKECUDA_FAIL", "cuCtxSetCurrent=201")
	_, err = ctx.LoadModule([]byte(testPTX))
	e := wantError(t, "LoadModule when cuCtxSetCurrent fails", err, "cuCtxSetCurrent", Result(201))
	if e.Log != "" {
		t.Errorf("a JIT log of %d bytes (%.40q...) after a failure before the driver compiled anything, want none", len(e.Log), e.Log)
	}
	var anyErr *Error
	if !errors.As(err, &anyErr) || !strings.Contains(anyErr.Detail, "cuModuleLoadDataEx") {
		t.Errorf("detail %q does not name cuModuleLoadDataEx", anyErr.Detail)
	}
}

func TestFakeGlobalCaptureMustEndOnItsThread(t *testing.T) {
	fakeLib(t)
	ctx := fakeContext(t, 0)
	s, err := ctx.NewStream(true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// elsewhere runs f on another OS thread (this goroutine holds its own),
	// as a goroutine may find itself on after any call.
	elsewhere := func(f func() error) error {
		done := make(chan error)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			done <- f()
		}()
		return <-done
	}
	var g *Graph
	endCapture := func() error {
		var err error
		g, err = s.EndCapture()
		return err
	}
	for _, mode := range []CaptureMode{CaptureGlobal, CaptureThreadLocal} {
		if err := s.BeginCapture(mode); err != nil {
			t.Fatal(err)
		}
		err := elsewhere(endCapture)
		wantError(t, "EndCapture on another thread than BeginCapture", err, "cuStreamEndCapture", Result(908))
		// The capture goes on, and ends on its own thread.
		if err := endCapture(); err != nil {
			t.Fatalf("EndCapture on the capturing thread after a refusal: %v", err)
		}
		if err := g.Destroy(); err != nil {
			t.Fatal(err)
		}
	}
	// A relaxed capture may end anywhere.
	if err := s.BeginCapture(CaptureRelaxed); err != nil {
		t.Fatal(err)
	}
	if err := elsewhere(endCapture); err != nil {
		t.Fatalf("ending a relaxed capture on another thread: %v", err)
	}
	if err := g.Destroy(); err != nil {
		t.Fatal(err)
	}
}
