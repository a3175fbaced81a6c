package gpu

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/kiln-gpu/kiln/cuda/fakecuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// TestCopyFromPeer copies between two backends (two streams, one fake
// device; the fake driver really copies memory) and checks the bytes, the
// driver call, and the argument checks.
func TestCopyFromPeer(t *testing.T) {
	a := openFake(t, Options{})
	b := openFake(t, Options{})
	lib, err := fakecuda.Open(fakePath)
	if err != nil {
		t.Fatal(err)
	}
	src, err := b.Alloc(tensor.F16, 3, 100)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := a.Alloc(tensor.F16, 3, 100)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, src.SizeBytes())
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := b.Upload(src, data); err != nil {
		t.Fatal(err)
	}
	lib.ResetCounters()
	if err := a.CopyFromPeer(dst, src); err != nil {
		t.Fatalf("CopyFromPeer: %v", err)
	}
	got := make([]byte, dst.SizeBytes())
	if err := a.Download(context.Background(), got, dst); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("the copy's bytes differ from the source's")
	}
	if n := lib.Calls("cuMemcpyPeerAsync"); n != 1 {
		t.Errorf("%d cuMemcpyPeerAsync calls, want 1", n)
	}
	if err := b.Sync(context.Background()); err != nil {
		t.Errorf("the peer's stream after waiting on the copy: %v", err)
	}
	// Each backend made its peer event at the first copy; later copies
	// re-record it (one record on each side per copy) and make none.
	lib.ResetCounters()
	for range 3 {
		if err := a.CopyFromPeer(dst, src); err != nil {
			t.Fatalf("CopyFromPeer again: %v", err)
		}
	}
	if n := lib.Calls("cuEventCreate"); n != 0 {
		t.Errorf("%d cuEventCreate calls over 3 more copies, want 0 (one event per backend, reused)", n)
	}
	if n := lib.Calls("cuEventRecord"); n != 6 {
		t.Errorf("%d cuEventRecord calls over 3 copies, want 6", n)
	}
	if err := b.Sync(context.Background()); err != nil {
		t.Errorf("the peer's stream after the copies: %v", err)
	}
	other, _ := a.Alloc(tensor.F32, 3, 100)
	if err := a.CopyFromPeer(other, src); !errors.Is(err, op.ErrInvalidArgument) {
		t.Errorf("dtype mismatch: %v, want ErrInvalidArgument", err)
	}
	part, _ := src.Slice(1, 0, 50)
	half, _ := a.Alloc(tensor.F16, 3, 50)
	if err := a.CopyFromPeer(half, part); !errors.Is(err, op.ErrInvalidArgument) {
		t.Errorf("strided source: %v, want ErrInvalidArgument", err)
	}
}
