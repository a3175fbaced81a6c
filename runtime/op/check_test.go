package op

import (
	"errors"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// fakeBuf is a tensor.Buffer of a given size, enough to build layouts.
type fakeBuf int64

func (b fakeBuf) SizeBytes() int64 { return int64(b) }

func mustView(t *testing.T, buf tensor.Buffer, dt tensor.DType, offset int, shape, strides []int) tensor.Tensor {
	t.Helper()
	x, err := tensor.NewView(buf, dt, offset, shape, strides)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestPadAndBroadcast(t *testing.T) {
	buf := fakeBuf(1 << 20)
	x := mustView(t, buf, tensor.F32, 5, []int{3, 1}, []int{7, 1})
	d := Pad4(x)
	if d.Shape != [4]int{1, 1, 3, 1} || d.Strides != [4]int{0, 0, 7, 1} || d.Offset != 5 {
		t.Errorf("Pad4 = %+v", d)
	}
	b := BroadcastTo(x, [4]int{1, 2, 3, 4})
	// Dimension 1 (size 1 in x, padded) and dimension 3 (size 1) are stretched with stride 0.
	if b.Shape != [4]int{1, 2, 3, 4} || b.Strides != [4]int{0, 0, 7, 0} || b.NumElems() != 24 {
		t.Errorf("BroadcastTo = %+v", b)
	}
	if err := CheckBroadcast("add", "b", x, []int{3, 4}); err != nil {
		t.Errorf("[3 1] to [3 4]: %v", err)
	}
	err := CheckBroadcast("add", "b", x, []int{4, 4})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "add: b: shape [3 1] does not broadcast") {
		t.Errorf("[3 1] to [4 4]: %v", err)
	}
	if err := CheckBroadcast("add", "b", x, []int{3}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("rank 2 to rank 1: %v", err)
	}
}

func TestOutputsMustNotOverlap(t *testing.T) {
	buf := fakeBuf(1 << 20)
	x := mustView(t, buf, tensor.F32, 0, []int{4, 8}, []int{8, 1})
	// In place (the same view) is fine.
	if err := CheckUnary(NameSiLU, x, x); err != nil {
		t.Errorf("in place: %v", err)
	}
	// Shifted by one element: partial overlap.
	shifted := mustView(t, buf, tensor.F32, 1, []int{4, 8}, []int{8, 1})
	if err := CheckUnary(NameSiLU, shifted, x); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "partly overlaps") {
		t.Errorf("shifted dst: %v", err)
	}
	// A broadcast output addresses elements twice.
	bcast := mustView(t, buf, tensor.F32, 64, []int{4, 8}, []int{0, 1})
	if err := CheckUnary(NameSiLU, bcast, x); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "more than once") {
		t.Errorf("broadcast dst: %v", err)
	}
	// Disjoint views of one buffer are fine.
	other := mustView(t, buf, tensor.F32, 32, []int{4, 8}, []int{8, 1})
	if err := CheckUnary(NameSiLU, other, x); err != nil {
		t.Errorf("disjoint: %v", err)
	}
}

func TestEffectiveDefaults(t *testing.T) {
	if s := (SoftmaxOptions{}).EffectiveScale(); s != 1 {
		t.Errorf("softmax scale default %v", s)
	}
	if e := (NormOptions{}).EffectiveEps(); e != 1e-5 {
		t.Errorf("eps default %v", e)
	}
	r := (RoPEOptions{}).Effective(128)
	if r.NDims != 128 || r.FreqBase != 10000 || r.FreqScale != 1 {
		t.Errorf("rope defaults %+v", r)
	}
	r = (RoPEOptions{NDims: 64, FreqBase: 500000, FreqScale: 0.25}).Effective(128)
	if r.NDims != 64 || r.FreqBase != 500000 || r.FreqScale != 0.25 {
		t.Errorf("rope explicit %+v", r)
	}
}

func TestArgErrorNamesOpAndArgument(t *testing.T) {
	buf := fakeBuf(1 << 20)
	x := mustView(t, buf, tensor.F16, 0, []int{2, 64}, []int{64, 1})
	w := mustView(t, buf, tensor.F32, 1024, []int{32}, []int{1})
	err := CheckRMSNorm(x, x, w, NormOptions{})
	var ae *ArgError
	if !errors.As(err, &ae) || ae.Op != NameRMSNorm || ae.Arg != "weight" || !strings.Contains(ae.Msg, "[32]") || !strings.Contains(ae.Msg, "[64]") {
		t.Errorf("weight of the wrong length: %v", err)
	}
}

func TestMatMulRefusesAliasingAndNamesTheBlock(t *testing.T) {
	buf := fakeBuf(1 << 20)
	x := mustView(t, buf, tensor.F32, 0, []int{4, 4}, []int{4, 1})
	w := mustView(t, buf, tensor.F32, 64, []int{4, 4}, []int{4, 1})
	// dst the very same view as w (m = n = k): refused, not computed in place.
	if _, err := CheckMatMul(w, x, w, MatMulOptions{}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "overlaps w") {
		t.Errorf("dst == w: %v", err)
	}
	if _, err := CheckMatMul(x, x, w, MatMulOptions{}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "overlaps x") {
		t.Errorf("dst == x: %v", err)
	}
	dst := mustView(t, buf, tensor.F32, 128, []int{4, 4}, []int{4, 1})
	if _, err := CheckMatMul(dst, x, w, MatMulOptions{}); err != nil {
		t.Errorf("disjoint: %v", err)
	}
	row := mustView(t, buf, tensor.F32, 128, []int{1, 4}, []int{4, 1})
	bias := mustView(t, buf, tensor.F32, 128, []int{4}, []int{1})
	x1 := mustView(t, buf, tensor.F32, 0, []int{1, 4}, []int{4, 1})
	if _, err := CheckMatMul(row, x1, w, MatMulOptions{Bias: bias}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "overlaps Bias") {
		t.Errorf("dst == bias: %v", err)
	}
	// k = 48 against a Q8_0 weight: the message names k and the block.
	xq := mustView(t, buf, tensor.F32, 0, []int{2, 48}, []int{48, 1})
	wq := mustView(t, buf, tensor.Q8_0, 0, []int{3, 32}, []int{32, 1})
	dq := mustView(t, buf, tensor.F32, 4096, []int{2, 3}, []int{3, 1})
	if _, err := CheckMatMul(dq, xq, wq, MatMulOptions{}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "k = 48 is not a multiple of 32") {
		t.Errorf("k = 48 with Q8_0: %v", err)
	}
}

func TestSwiGLUWeightsShareOneRowStride(t *testing.T) {
	buf := fakeBuf(1 << 20)
	x := mustView(t, buf, tensor.F32, 0, []int{2, 32}, []int{32, 1})
	gate := mustView(t, buf, tensor.F32, 1024, []int{4, 32}, []int{32, 1})
	upWide := mustView(t, buf, tensor.F32, 4096, []int{4, 32}, []int{40, 1})
	dst := mustView(t, buf, tensor.F32, 16384, []int{2, 4}, []int{4, 1})
	if _, err := CheckMatMulSwiGLU(dst, x, gate, upWide); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "wUp: row stride 40") {
		t.Errorf("wUp rows 40 apart, wGate's 32: %v", err)
	}
	up := mustView(t, buf, tensor.F32, 4096, []int{4, 32}, []int{32, 1})
	if _, err := CheckMatMulSwiGLU(dst, x, gate, up); err != nil {
		t.Errorf("matching strides: %v", err)
	}
}
