package kernels

import (
	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
)

// Convert queues dst ← src converted to dst's dtype: among F32, F16 and BF16
// (any pair, rounding to nearest even), or I32 to I32. src must have dst's
// shape (broadcast it through stride-0 dimensions first); any strides.
//
// Kernels: copy_<src>_to_<dst>; copy_<src>_to_<dst>_vec when both are
// contiguous and aligned to a 16-byte vector of the wider type.
func (s *Set) Convert(st *cuda.Stream, dst, src Operand) error {
	const name = op.NameCopy
	n, err := checkOperand(name, "dst", dst)
	if err != nil {
		return err
	}
	if _, err := checkOperand(name, "src", src); err != nil {
		return err
	}
	simple, ok := copyKernels[copyKey{src.DType, dst.DType, KindSimple}]
	if !ok {
		return argError(name, "", "cannot convert %v to %v (supported: among F32, F16, BF16; I32 to I32)", src.DType, dst.DType)
	}
	if src.Shape != dst.Shape {
		return argError(name, "src", "shape %v, expected %v (dst's shape; broadcast src through stride 0 first)", src.Shape, dst.Shape)
	}
	if n == 0 {
		return nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	if v := chooseElementwiseVariant(s.sel, FamilyCopy, []Operand{dst, src}); v == KindVec {
		width := vecWidth(src.DType.BlockBytes(), dst.DType.BlockBytes())
		s.args.Ptr(dst.Ptr).Ptr(src.Ptr).I64(n)
		return s.launch(copyKernels[copyKey{src.DType, dst.DType, KindVec}], vecConfig(n, width), st)
	}
	s.ew = elementwiseParams{Shape: shape64(dst), N: n, Dst: strided(dst), A: strided(src)}
	cuda.Struct(&s.args, &s.ew)
	return s.launch(simple, elementwiseConfig(n), st)
}

// chooseElementwiseVariant picks the _vec kernel when every operand is
// contiguous (they share one shape, checked before) and every address is
// aligned to one vector of the operands' widest element type, so that the
// same index i addresses vector i of each.
func chooseElementwiseVariant(sel Variant, f Family, operands []Operand) Kind {
	if !fastAllowed(sel, f, KindVec) {
		return KindSimple
	}
	widest := 1
	for _, o := range operands {
		if !contiguous(o) {
			return KindSimple
		}
		widest = max(widest, o.DType.BlockBytes())
	}
	width := vecBytes / widest
	for _, o := range operands {
		if uint64(o.Ptr)%uint64(width*o.DType.BlockBytes()) != 0 {
			return KindSimple
		}
	}
	return KindVec
}
