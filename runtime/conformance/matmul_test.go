package conformance

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// TestMatMulErrorMessages: beyond matching op.ErrInvalidArgument (the
// invalid-argument table), a refused matrix product says what is wrong, on
// every backend.
func TestMatMulErrorMessages(t *testing.T) {
	for _, nb := range openAll(t) {
		b := nb.b
		x48 := allocZeros(t, b, tensor.F32, 2, 48)
		x256 := allocZeros(t, b, tensor.F32, 2, 256)
		q8 := allocZeros(t, b, tensor.Q8_0, 4, 32)
		q4k := allocZeros(t, b, tensor.Q4_K, 4, 256)
		q6k := allocZeros(t, b, tensor.Q6_K, 3, 256)
		dst := allocZeros(t, b, tensor.F32, 2, 4)
		dstF16 := allocZeros(t, b, tensor.F16, 2, 4)
		bias5 := allocZeros(t, b, tensor.F32, 5)
		for _, c := range []struct {
			name  string
			call  func() error
			parts []string // the message names these
		}{
			{"k not a multiple of the block", func() error { return b.MatMul(dst, x48, q8, op.MatMulOptions{}) },
				[]string{"48", "32"}},
			{"x and dst dtypes", func() error { return b.MatMul(dstF16, x256, q4k, op.MatMulOptions{}) },
				[]string{"F16", "F32"}},
			{"bias length", func() error { return b.MatMul(dst, x256, q4k, op.MatMulOptions{Bias: bias5}) },
				[]string{"[5]", "[4]"}},
			{"swiglu weights", func() error { return b.MatMulSwiGLU(dst, x256, q4k, q6k) },
				[]string{"Q6_K", "Q4_K", "wUp"}},
		} {
			err := callSafely(c.call)
			if !errors.Is(err, op.ErrInvalidArgument) {
				t.Errorf("%s: %s: error %v, want one matching %q", nb.name, c.name, err, op.ErrInvalidArgument)
				continue
			}
			for _, p := range c.parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("%s: %s: error %q should name %q", nb.name, c.name, err, p)
				}
			}
		}
		if err := b.Sync(context.Background()); err != nil {
			t.Errorf("%s: Sync after refused products: %v", nb.name, err)
		}
	}
}

// TestMatMulTolerance: the allowance grows with Σ|x·w| and, against the
// CPU, with the unit roundoff of the activations' dtype; every entry says
// why.
func TestMatMulTolerance(t *testing.T) {
	for _, opName := range []string{op.NameMatMul, op.NameMatMulSwiGLU} {
		var prev float64
		for _, act := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
			ref := MatMulTolerance(opName, act, 100, false)
			vs := MatMulTolerance(opName, act, 100, true)
			if ref.Why == "" || vs.Why == "" {
				t.Errorf("%s %v: tolerance without a reason", opName, act)
			}
			if !(ref.ATol > 0 && ref.ATol < 100*1e-4) {
				t.Errorf("%s %v against the reference: ATol %g for Σ|x·w| = 100", opName, act, ref.ATol)
			}
			if !(vs.ATol >= ref.ATol && vs.ATol > prev) {
				t.Errorf("%s %v against the CPU: ATol %g (reference %g, previous dtype %g)", opName, act, vs.ATol, ref.ATol, prev)
			}
			prev = vs.ATol
			if twice := MatMulTolerance(opName, act, 200, true); twice.ATol != 2*vs.ATol {
				t.Errorf("%s %v: ATol %g for twice the sum, want %g", opName, act, twice.ATol, 2*vs.ATol)
			}
			if vs.RTol <= 0 || vs.RTol > 0.01 || vs.MaxNMSE <= 0 {
				t.Errorf("%s %v: RTol %g, MaxNMSE %g", opName, act, vs.RTol, vs.MaxNMSE)
			}
		}
	}
	// BF16 activations against the CPU: w rounded to BF16 (2⁻⁸ relative)
	// must fit in the allowance.
	if tol := MatMulTolerance(op.NameMatMul, tensor.BF16, 1, true); tol.ATol < 1.0/256 {
		t.Errorf("BF16 against the CPU: ATol %g per unit of Σ|x·w| is below BF16's unit roundoff", tol.ATol)
	}
}
