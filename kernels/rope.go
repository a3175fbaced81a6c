package kernels

import (
	"math"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// RoPEParams are the effective RoPE settings (op.RoPEOptions after
// Effective: no zero defaults here), with the frequency factors as a device
// address.
type RoPEParams struct {
	Style op.RoPEStyle
	// NDims is how many leading elements of each head are rotated: even,
	// positive, at most the head dimension.
	NDims int
	// FreqBase and FreqScale are positive (+Inf is allowed, as in op.CheckRoPE).
	FreqBase  float32
	FreqScale float32
	// PositionOffset is added to every position.
	PositionOffset int
	// FreqFactors is an F32 vector of NDims/2 divisors of the frequencies,
	// or 0 for none.
	FreqFactors cuda.DevicePtr
}

// RoPE queues the rotary embedding of x into dst (which may be x).
// x and dst are [batch, nTokens, nHeads, headDim] (batch 1 for rank-3
// tensors), one float dtype, heads contiguous; positions is I32
// [1, 1, batch, nTokens]. See rope.cu for the formula; the angles are
// computed in double once per token and pair, and shared across heads.
//
// Kernels: rope_<dt>.
func (s *Set) RoPE(st *cuda.Stream, dst, x, positions Operand, p RoPEParams) error {
	const name = op.NameRoPE
	n, err := checkOperand(name, "dst", dst)
	if err != nil {
		return err
	}
	if err := checkFloat(name, "dst", dst); err != nil {
		return err
	}
	if _, err := checkOperand(name, "x", x); err != nil {
		return err
	}
	if err := checkLike(name, "x", x, dst); err != nil {
		return err
	}
	for _, in := range []struct {
		arg string
		o   Operand
	}{{"dst", dst}, {"x", x}} {
		if !innerContiguous(in.o) {
			return argError(name, in.arg, "innermost dimension must be contiguous (stride 1), layout %v", in.o)
		}
	}
	if _, err := checkOperand(name, "positions", positions); err != nil {
		return err
	}
	if positions.DType != tensor.I32 {
		return argError(name, "positions", "dtype %v, expected I32", positions.DType)
	}
	if want := [4]int{1, 1, x.Shape[0], x.Shape[1]}; positions.Shape != want {
		return argError(name, "positions", "shape %v, expected %v (x's batch and token dimensions)", positions.Shape, want)
	}
	headDim := x.Shape[3]
	if p.NDims <= 0 || p.NDims%2 != 0 || p.NDims > headDim || p.NDims > math.MaxInt32 {
		return argError(name, "NDims", "%d: must be even, positive and at most the head dimension %d", p.NDims, headDim)
	}
	if p.Style != op.RoPENormal && p.Style != op.RoPENeoX {
		return argError(name, "Style", "unknown style %d", uint8(p.Style))
	}
	// As op.CheckRoPE: positive (NaN refused); +Inf is accepted, as on the CPU.
	if !(p.FreqBase > 0) || !(p.FreqScale > 0) {
		return argError(name, "", "FreqBase %v and FreqScale %v must be positive", p.FreqBase, p.FreqScale)
	}
	if err := checkParamPtr(name, "FreqFactors", p.FreqFactors); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	style := int32(ropeStyleNormal)
	if p.Style == op.RoPENeoX {
		style = ropeStyleNeoX
	}
	s.rope = ropeParams{
		Dst:            uint64(dst.Ptr),
		X:              uint64(x.Ptr),
		Positions:      uint64(positions.Ptr),
		FreqFactors:    uint64(p.FreqFactors),
		Shape:          shape64(x),
		DstStrides:     [3]int64{int64(dst.Strides[0]), int64(dst.Strides[1]), int64(dst.Strides[2])},
		XStrides:       [3]int64{int64(x.Strides[0]), int64(x.Strides[1]), int64(x.Strides[2])},
		PosStrides:     [2]int64{int64(positions.Strides[2]), int64(positions.Strides[3])},
		PositionOffset: int64(p.PositionOffset),
		NDims:          int32(p.NDims),
		Style:          style,
		FreqBase:       p.FreqBase,
		FreqScale:      p.FreqScale,
	}
	cuda.Struct(&s.args, &s.rope)
	nRows := int64(x.Shape[0]) * int64(x.Shape[1])
	return s.launch(ropeKernels[dst.DType], ropeConfig(nRows, int64(x.Shape[2]), int64(p.NDims/2)), st)
}
