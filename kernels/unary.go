package kernels

import (
	"fmt"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
)

// UnaryOp is an elementwise activation.
type UnaryOp uint8

const (
	// SiLU: x · sigmoid(x).
	SiLU UnaryOp = iota
	// GELU: the exact 0.5 · x · (1 + erf(x/√2)) (op.GELUErf).
	GELU
	// GELUTanh: the tanh approximation (op.GELUTanh).
	GELUTanh
)

func (o UnaryOp) String() string {
	switch o {
	case SiLU:
		return op.NameSiLU
	case GELU:
		return op.NameGELU
	case GELUTanh:
		return "gelu_tanh"
	}
	return fmt.Sprintf("UnaryOp(%d)", uint8(o))
}

func (o UnaryOp) kernelPrefix() string { return o.String() }

// GELUOp maps op.GELUOptions' approximation to its UnaryOp.
func GELUOp(a op.GELUApprox) (UnaryOp, error) {
	switch a {
	case op.GELUErf:
		return GELU, nil
	case op.GELUTanh:
		return GELUTanh, nil
	}
	return 0, argError(op.NameGELU, "Approx", "unknown GELU approximation %d", uint8(a))
}

// Unary queues dst = f(x) elementwise, in F32; x has dst's dtype and shape;
// any strides.
//
// Kernels: silu_<dt>, gelu_<dt>, gelu_tanh_<dt>; their _vec variants when
// both are contiguous and 16-byte aligned.
func (s *Set) Unary(st *cuda.Stream, o UnaryOp, dst, x Operand) error {
	if o > GELUTanh {
		return argError("unary", "op", "unknown unary op %d", uint8(o))
	}
	name := o.String()
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
	if n == 0 {
		return nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	if v := chooseElementwiseVariant(s.sel, FamilyUnary, []Operand{dst, x}); v == KindVec {
		s.args.Ptr(dst.Ptr).Ptr(x.Ptr).I64(n)
		return s.launch(unaryKernels[unaryKey{o, dst.DType, KindVec}], vecConfig(n, vecWidth(dst.DType.BlockBytes())), st)
	}
	s.ew = elementwiseParams{Shape: shape64(dst), N: n, Dst: strided(dst), A: strided(x)}
	cuda.Struct(&s.args, &s.ew)
	return s.launch(unaryKernels[unaryKey{o, dst.DType, KindSimple}], elementwiseConfig(n), st)
}
