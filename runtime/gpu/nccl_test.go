package gpu

import (
	"errors"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

func TestNewNCCLGroupArgumentChecks(t *testing.T) {
	if _, err := NewNCCLGroup(nil); !errors.Is(err, op.ErrInvalidArgument) || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty list: %v, want op.ErrInvalidArgument saying it is empty", err)
	}
	if _, err := NewNCCLGroup([]*Backend{nil}); !errors.Is(err, op.ErrInvalidArgument) || !strings.Contains(err.Error(), "backends[0]") {
		t.Errorf("nil backend: %v, want op.ErrInvalidArgument naming backends[0]", err)
	}
	a := openFake(t, Options{})
	b := openFake(t, Options{}) // the same device, cuda:0
	_, err := NewNCCLGroup([]*Backend{a, b})
	if !errors.Is(err, op.ErrInvalidArgument) || !strings.Contains(err.Error(), "backends[1]") || !strings.Contains(err.Error(), "one rank per device") {
		t.Errorf("two backends on cuda:0: %v, want op.ErrInvalidArgument naming backends[1] and the one-rank-per-device rule", err)
	}
	c, err := Open(t.Context(), 0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewNCCLGroup([]*Backend{a, c}); !errors.Is(err, op.ErrInvalidArgument) || !strings.Contains(err.Error(), "closed") {
		t.Errorf("closed backend: %v, want op.ErrInvalidArgument saying it is closed", err)
	}
}

// NCCL's CUDA runtime opens libcuda.so.1 itself; over kiln's fake driver
// (KILN_CUDA_LIBRARY) the two would see different devices, so the group is
// refused before NCCL is touched.
func TestNewNCCLGroupRefusesAnotherDriverLibrary(t *testing.T) {
	t.Setenv("FAKECUDA_DEVICES", "2")
	a := openFake(t, Options{})
	b, err := Open(t.Context(), 1, Options{})
	if err != nil {
		t.Fatalf("Open cuda:1 on the fake driver: %v", err)
	}
	defer b.Close()
	g, err := NewNCCLGroup([]*Backend{a, b})
	if err == nil {
		g.Close()
		t.Fatal("NewNCCLGroup over the fake driver succeeded")
	}
	if errors.Is(err, op.ErrInvalidArgument) || !strings.Contains(err.Error(), "KILN_CUDA_LIBRARY") || !strings.Contains(err.Error(), cuda.LibraryPath()) {
		t.Errorf("NewNCCLGroup over the fake driver: %v, want an error naming KILN_CUDA_LIBRARY and %s", err, cuda.LibraryPath())
	}
}

// AllReduceSum checks its arguments before any NCCL call. The group here
// has communicators NCCL never made: reaching NCCL would fail differently.
func TestNCCLAllReduceArgumentChecks(t *testing.T) {
	t.Setenv("FAKECUDA_DEVICES", "2")
	a := openFake(t, Options{})
	b, err := Open(t.Context(), 1, Options{})
	if err != nil {
		t.Fatalf("Open cuda:1 on the fake driver: %v", err)
	}
	defer b.Close()
	g := &NCCLGroup{backends: []*Backend{a, b}, comms: []*cuda.NCCLComm{{}, {}}}
	alloc := func(be *Backend, dt tensor.DType, shape ...int) tensor.Tensor {
		t.Helper()
		x, err := be.Alloc(dt, shape...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { be.Free(x) })
		return x
	}
	a4x8, b4x8 := alloc(a, tensor.F32, 4, 8), alloc(b, tensor.F32, 4, 8)
	bT, err := alloc(b, tensor.F32, 8, 4).Transpose(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		ts   []tensor.Tensor
		want string
	}{
		{"too few tensors", []tensor.Tensor{a4x8}, "1 tensors for a group of 2"},
		{"missing tensor", []tensor.Tensor{{}, b4x8}, "ts[0]: missing tensor"},
		{"integer dtype", []tensor.Tensor{alloc(a, tensor.I32, 4, 8), alloc(b, tensor.I32, 4, 8)}, "expected F32, F16 or BF16"},
		{"dtype mismatch", []tensor.Tensor{a4x8, alloc(b, tensor.F16, 4, 8)}, "ts[1]"},
		{"shape mismatch", []tensor.Tensor{a4x8, alloc(b, tensor.F32, 4, 9)}, "ts[1]"},
		{"not contiguous", []tensor.Tensor{a4x8, bT}, "not contiguous"},
	} {
		err := g.AllReduceSum(c.ts)
		if !errors.Is(err, op.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want op.ErrInvalidArgument containing %q", c.name, err, c.want)
		}
	}
	// A tensor of the wrong backend (rank order matters).
	if err := g.AllReduceSum([]tensor.Tensor{b4x8, a4x8}); !errors.Is(err, op.ErrForeignTensor) {
		t.Errorf("tensors in the wrong order: %v, want op.ErrForeignTensor", err)
	}
	g.comms = nil // closed
	if err := g.AllReduceSum([]tensor.Tensor{a4x8, b4x8}); !errors.Is(err, op.ErrClosed) {
		t.Errorf("closed group: %v, want op.ErrClosed", err)
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
