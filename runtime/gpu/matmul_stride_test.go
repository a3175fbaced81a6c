package gpu

import (
	"errors"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// TestMatMulSwiGLUStridesMustMatch: the CUDA kernels read both SwiGLU
// weights at one row stride, so a wUp laid out unlike wGate (here a view of
// wider rows) is refused with an error naming wUp and both strides, not
// read at wGate's stride; weights laid out alike, views included, run.
func TestMatMulSwiGLUStridesMustMatch(t *testing.T) {
	b := openFake(t, Options{})
	alloc := func(dt tensor.DType, shape ...int) tensor.Tensor {
		x, err := b.Alloc(dt, shape...)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	view := func(whole tensor.Tensor, n, k int) tensor.Tensor {
		v, err := tensor.NewView(whole.Buffer(), whole.DType(), 0, []int{n, k}, []int{whole.Dim(1), 1})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	dst, x := alloc(tensor.F16, 2, 48), alloc(tensor.F16, 2, 256)
	gate := alloc(tensor.Q4_0, 48, 256)
	upWide := view(alloc(tensor.Q4_0, 48, 320), 48, 256) // row stride 320
	err := b.MatMulSwiGLU(dst, x, gate, upWide)
	if !errors.Is(err, op.ErrInvalidArgument) {
		t.Fatalf("MatMulSwiGLU with wUp's rows 320 apart and wGate's 256: %v, want an invalid-argument error", err)
	}
	for _, want := range []string{"wUp", "320", "256"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// Both weights views with the same row stride: accepted.
	gateWide := view(alloc(tensor.Q4_0, 48, 320), 48, 256)
	if err := b.MatMulSwiGLU(dst, x, gateWide, upWide); err != nil {
		t.Errorf("MatMulSwiGLU with both weights' rows 320 apart: %v", err)
	}
}
