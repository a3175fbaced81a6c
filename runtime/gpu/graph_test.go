package gpu

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/cuda/fakecuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// TestCaptureGraphRecordsAndReplays checks the plumbing of CaptureGraph on
// the fake driver: captured ops launch nothing until the graph does, each
// Launch is one cuGraphLaunch, calls that cannot be recorded fail during the
// capture, and a failed capture leaves the backend usable.
func TestCaptureGraphRecordsAndReplays(t *testing.T) {
	b := openFake(t, Options{})
	lib, err := fakecuda.Open(fakePath)
	if err != nil {
		t.Fatal(err)
	}
	x, err := b.Alloc(tensor.F32, 4, 64)
	if err != nil {
		t.Fatal(err)
	}
	y, err := b.Alloc(tensor.F32, 4, 64)
	if err != nil {
		t.Fatal(err)
	}
	// Run the ops once first (module loads happen outside the capture).
	if err := errors.Join(b.Add(y, x, x), b.SiLU(y, y), b.Sync(context.Background())); err != nil {
		t.Fatal(err)
	}
	lib.ResetCounters()
	var insideErrs []error
	g, err := b.CaptureGraph(func() error {
		insideErrs = append(insideErrs,
			b.Upload(x, make([]byte, x.SizeBytes())),
			b.Download(context.Background(), make([]byte, y.SizeBytes()), y),
			b.Sync(context.Background()))
		if _, err := b.Alloc(tensor.F32, 8); err != nil {
			insideErrs = append(insideErrs, err)
		} else {
			insideErrs = append(insideErrs, nil)
		}
		insideErrs = append(insideErrs, b.Free(x))
		return errors.Join(b.Add(y, x, x), b.SiLU(y, y))
	})
	if err != nil {
		t.Fatalf("CaptureGraph: %v", err)
	}
	for i, e := range insideErrs {
		if e == nil || !strings.Contains(e.Error(), "capturing a CUDA graph") {
			t.Errorf("call %d inside the capture: error %v, want one about the capture", i, e)
		}
	}
	if n, k := lib.GraphLaunchCount(), lib.LaunchCount(); n != 0 || k != 0 {
		t.Errorf("%d graph launches and %d kernel launches after capturing, want none", n, k)
	}
	for i := range 3 {
		if err := g.Launch(); err != nil {
			t.Fatalf("launch %d: %v", i, err)
		}
	}
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Each replay runs the two captured kernels (add, silu).
	if n, k := lib.GraphLaunchCount(), lib.LaunchCount(); n != 3 || k != 6 {
		t.Errorf("%d graph launches running %d kernels, want 3 running 6", n, k)
	}
	// x was not freed by the refused Free inside the capture.
	if err := b.Upload(x, make([]byte, x.SizeBytes())); err != nil {
		t.Errorf("upload after the capture: %v", err)
	}
	if err := errors.Join(g.Close(), g.Close()); err != nil {
		t.Errorf("closing the graph twice: %v", err)
	}
	if err := g.Launch(); !errors.Is(err, op.ErrClosed) {
		t.Errorf("launch after Close: %v, want ErrClosed", err)
	}

	// An error inside fn ends the capture and is returned; the backend works after.
	boom := errors.New("boom")
	if _, err := b.CaptureGraph(func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("capture whose fn fails: %v, want the fn's error", err)
	}
	if err := errors.Join(b.Add(y, x, x), b.Sync(context.Background())); err != nil {
		t.Errorf("ops after a failed capture: %v", err)
	}
	// A graph left open is destroyed by Close (openFake's cleanup checks
	// that Close succeeds).
	if _, err := b.CaptureGraph(func() error { return b.SiLU(y, y) }); err != nil {
		t.Fatal(err)
	}
}
