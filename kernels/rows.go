package kernels

import (
	"math"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// checkRowOperands checks x and dst of softmax and the norms: one float
// dtype, one shape, innermost dimension contiguous in both. It returns the
// number of rows and the row length.
func checkRowOperands(name string, dst, x Operand) (nRows, rowLen int64, err error) {
	n, err := checkOperand(name, "dst", dst)
	if err != nil {
		return 0, 0, err
	}
	if err := checkFloat(name, "dst", dst); err != nil {
		return 0, 0, err
	}
	if _, err := checkOperand(name, "x", x); err != nil {
		return 0, 0, err
	}
	if err := checkLike(name, "x", x, dst); err != nil {
		return 0, 0, err
	}
	for _, in := range []struct {
		arg string
		o   Operand
	}{{"dst", dst}, {"x", x}} {
		if !innerContiguous(in.o) {
			return 0, 0, argError(name, in.arg, "innermost dimension must be contiguous (stride 1), layout %v", in.o)
		}
	}
	rowLen = int64(dst.Shape[3])
	if n == 0 {
		return 0, rowLen, nil
	}
	return n / rowLen, rowLen, nil
}

// fillRows sets s.rows for rows of x and dst; dstOuter are dst's strides of
// the three outer dimensions of x.
func (s *Set) fillRows(dst cuda.DevicePtr, dstOuter [3]int, x Operand, nRows, rowLen int64) *rowsParams {
	s.rows = rowsParams{
		Dst:        uint64(dst),
		X:          uint64(x.Ptr),
		Outer:      [3]int64{int64(x.Shape[0]), int64(x.Shape[1]), int64(x.Shape[2])},
		DstStrides: [3]int64{int64(dstOuter[0]), int64(dstOuter[1]), int64(dstOuter[2])},
		XStrides:   [3]int64{int64(x.Strides[0]), int64(x.Strides[1]), int64(x.Strides[2])},
		NRows:      nRows,
		RowLen:     rowLen,
	}
	return &s.rows
}

func outerStrides(o Operand) [3]int { return [3]int{o.Strides[0], o.Strides[1], o.Strides[2]} }

// Softmax queues dst = softmax(scale·x + causal mask) over each row (the
// innermost dimension, contiguous); see op.SoftmaxOptions. The causal
// position of a row is opts.PositionOffset plus its index in dimension 2
// (the second-innermost of the padded shape). A row with every column
// masked comes out as zeros; NaN and infinities among the unmasked columns
// give NaN rows, as on the CPU (see softmax.cu).
//
// Kernels: softmax_<dt> (a block per row); softmax_<dt>_warp (a warp per
// row) for rows of at most 512 elements.
func (s *Set) Softmax(st *cuda.Stream, dst, x Operand, opts op.SoftmaxOptions) error {
	const name = op.NameSoftmax
	nRows, rowLen, err := checkRowOperands(name, dst, x)
	if err != nil || nRows == 0 || rowLen == 0 {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	p := s.fillRows(dst.Ptr, outerStrides(dst), x, nRows, rowLen)
	p.Scale = opts.EffectiveScale()
	p.PositionOffset = int64(opts.PositionOffset)
	if opts.Causal {
		p.Causal = 1
	}
	cuda.Struct(&s.args, p)
	v := chooseRowsVariant(s.sel, FamilySoftmax, rowLen)
	return s.launch(softmaxKernels[rowsKey{dst.DType, v}], rowsConfig(v, nRows, rowLen), st)
}

// checkEps checks a norm's epsilon as op.CheckRMSNorm and op.CheckLayerNorm
// do: NaN and negative values are refused. +Inf is accepted, as on the CPU,
// and gives 1/sqrt(+Inf) = 0: rows of zeros (NaN where x is infinite).
func checkEps(name string, eps float32) error {
	if !(eps >= 0) {
		return argError(name, "eps", "%v is not a non-negative number", eps)
	}
	return nil
}

// RMSNorm queues dst = x / sqrt(mean(x²) + eps) · weight over each row;
// weight is an F32 vector of the row length, or 0 for none.
//
// Kernels: rmsnorm_<dt> (a block per row); rmsnorm_<dt>_warp for rows of at
// most 512 elements.
func (s *Set) RMSNorm(st *cuda.Stream, dst, x Operand, weight cuda.DevicePtr, opts op.NormOptions) error {
	const name = op.NameRMSNorm
	nRows, rowLen, err := checkRowOperands(name, dst, x)
	if err != nil {
		return err
	}
	eps := opts.EffectiveEps()
	if err := checkEps(name, eps); err != nil {
		return err
	}
	if err := checkParamPtr(name, "weight", weight); err != nil {
		return err
	}
	if nRows == 0 || rowLen == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	p := s.fillRows(dst.Ptr, outerStrides(dst), x, nRows, rowLen)
	p.Weight = uint64(weight)
	p.Eps = eps
	cuda.Struct(&s.args, p)
	v := chooseRowsVariant(s.sel, FamilyNorm, rowLen)
	return s.launch(rmsnormKernels[rowsKey{dst.DType, v}], rowsConfig(v, nRows, rowLen), st)
}

// LayerNorm queues dst = (x − mean) / sqrt(var + eps) · weight + bias over
// each row, the variance from a second pass over the row; weight and bias
// are F32 vectors of the row length, or 0 for none.
//
// Kernels: layernorm_<dt> (a block per row); layernorm_<dt>_warp for rows of
// at most 512 elements.
func (s *Set) LayerNorm(st *cuda.Stream, dst, x Operand, weight, bias cuda.DevicePtr, opts op.NormOptions) error {
	const name = op.NameLayerNorm
	nRows, rowLen, err := checkRowOperands(name, dst, x)
	if err != nil {
		return err
	}
	eps := opts.EffectiveEps()
	if err := checkEps(name, eps); err != nil {
		return err
	}
	if err := checkParamPtr(name, "weight", weight); err != nil {
		return err
	}
	if err := checkParamPtr(name, "bias", bias); err != nil {
		return err
	}
	if nRows == 0 || rowLen == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	p := s.fillRows(dst.Ptr, outerStrides(dst), x, nRows, rowLen)
	p.Weight = uint64(weight)
	p.Bias = uint64(bias)
	p.Eps = eps
	cuda.Struct(&s.args, p)
	v := chooseRowsVariant(s.sel, FamilyNorm, rowLen)
	return s.launch(layernormKernels[rowsKey{dst.DType, v}], rowsConfig(v, nRows, rowLen), st)
}

// Argmax queues, for each row of x (innermost, contiguous, non-empty), the
// index of its largest element into dst (I32). dst has x's padded shape
// shifted right by one: x [a, b, c, n] gives dst [1, a, b, c] (for x of rank
// 1, dst [1, 1, 1, 1]). Ties go to the smallest index; NaN is never chosen; a
// row of NaNs gives 0.
//
// Kernels: argmax_<dt> (a block per row).
func (s *Set) Argmax(st *cuda.Stream, dst, x Operand) error {
	const name = op.NameArgmax
	n, err := checkOperand(name, "x", x)
	if err != nil {
		return err
	}
	if err := checkFloat(name, "x", x); err != nil {
		return err
	}
	if !innerContiguous(x) {
		return argError(name, "x", "innermost dimension must be contiguous (stride 1), layout %v", x)
	}
	if _, err := checkOperand(name, "dst", dst); err != nil {
		return err
	}
	if dst.DType != tensor.I32 {
		return argError(name, "dst", "dtype %v, expected I32", dst.DType)
	}
	if want := [4]int{1, x.Shape[0], x.Shape[1], x.Shape[2]}; dst.Shape != want {
		return argError(name, "dst", "shape %v, expected %v (x's outer dimensions)", dst.Shape, want)
	}
	rowLen := int64(x.Shape[3])
	nRows := int64(x.Shape[0]) * int64(x.Shape[1]) * int64(x.Shape[2])
	if nRows == 0 {
		return nil
	}
	if rowLen == 0 || n == 0 {
		return argError(name, "x", "rows of length 0 have no maximum")
	}
	if rowLen > math.MaxInt32 {
		return argError(name, "x", "rows of %d elements: the index does not fit in I32", rowLen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	p := s.fillRows(dst.Ptr, [3]int{dst.Strides[1], dst.Strides[2], dst.Strides[3]}, x, nRows, rowLen)
	cuda.Struct(&s.args, p)
	return s.launch(argmaxKernels[x.DType], rowsConfig(KindSimple, nRows, rowLen), st)
}
