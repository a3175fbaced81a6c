package kernels

import (
	"fmt"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
)

// BinaryOp is an elementwise op of two inputs.
type BinaryOp uint8

const (
	// Add: dst = a + b.
	Add BinaryOp = iota
	// Mul: dst = a · b.
	Mul
)

func (o BinaryOp) String() string {
	switch o {
	case Add:
		return op.NameAdd
	case Mul:
		return op.NameMul
	}
	return fmt.Sprintf("BinaryOp(%d)", uint8(o))
}

func (o BinaryOp) kernelPrefix() string { return o.String() }

// Binary queues dst = a op b elementwise, in F32, for one float dtype. a and
// b must have dst's shape (broadcast through stride-0 dimensions); any strides.
//
// Kernels: add_<dt>, mul_<dt>; add_<dt>_vec, mul_<dt>_vec when all three are
// contiguous and 16-byte aligned.
func (s *Set) Binary(st *cuda.Stream, o BinaryOp, dst, a, b Operand) error {
	if o != Add && o != Mul {
		return argError("binary", "op", "unknown binary op %d", uint8(o))
	}
	name := o.String()
	n, err := checkOperand(name, "dst", dst)
	if err != nil {
		return err
	}
	if err := checkFloat(name, "dst", dst); err != nil {
		return err
	}
	for _, in := range []struct {
		arg string
		o   Operand
	}{{"a", a}, {"b", b}} {
		if _, err := checkOperand(name, in.arg, in.o); err != nil {
			return err
		}
		if err := checkLike(name, in.arg, in.o, dst); err != nil {
			return err
		}
	}
	if n == 0 {
		return nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	if v := chooseElementwiseVariant(s.sel, FamilyBinary, []Operand{dst, a, b}); v == KindVec {
		s.args.Ptr(dst.Ptr).Ptr(a.Ptr).Ptr(b.Ptr).I64(n)
		return s.launch(binaryKernels[binaryKey{o, dst.DType, KindVec}], vecConfig(n, vecWidth(dst.DType.BlockBytes())), st)
	}
	s.ew = elementwiseParams{Shape: shape64(dst), N: n, Dst: strided(dst), A: strided(a), B: strided(b)}
	cuda.Struct(&s.args, &s.ew)
	return s.launch(binaryKernels[binaryKey{o, dst.DType, KindSimple}], elementwiseConfig(n), st)
}
