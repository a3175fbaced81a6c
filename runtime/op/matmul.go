package op

import (
	"slices"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Names of the matrix-multiplication ops.
const (
	NameMatMul       = "matmul"
	NameMatMulSwiGLU = "matmul-swiglu"
)

// MatMulWeightTypes are the dtypes a weight matrix may have: the float types
// and the GGUF block formats, stored exactly as in a GGUF file.
var MatMulWeightTypes = []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0, tensor.Q4_0, tensor.Q4_K, tensor.Q6_K}

// MatMulOptions configures MatMul.
type MatMulOptions struct {
	// Bias, when not the zero Tensor, is an F32 vector [n] added to every
	// row of the product before it is rounded to the output dtype.
	Bias tensor.Tensor
}

// MatMulShape is a matrix product's size: Y[m, n] = X[m, k] · W[n, k]ᵀ.
type MatMulShape struct {
	M, N, K int
	// XRowStride and YRowStride are the distances between consecutive rows
	// of X and Y, in elements (rows themselves are contiguous).
	XRowStride, YRowStride int
}

// RowStride returns the uniform distance in elements between consecutive
// innermost rows of t, when its outer dimensions fold into one (as they do
// for contiguous tensors and for row slices of them). ok is false when the
// rows are not evenly spaced. A tensor of one row reports its row length.
func RowStride(t tensor.Tensor) (stride int, ok bool) {
	r := t.Rank()
	if r < 2 {
		return t.Dim(-1), true
	}
	stride = -1
	expect := 0
	for i := r - 2; i >= 0; i-- {
		if t.Dim(i) == 1 {
			continue
		}
		if stride < 0 {
			stride = t.Stride(i)
			expect = stride * t.Dim(i)
			continue
		}
		if t.Stride(i) != expect {
			return 0, false
		}
		expect *= t.Dim(i)
	}
	if stride < 0 {
		return t.Dim(-1), true
	}
	return stride, true
}

// checkMatMulOperands validates X, one or two weights and Y, and returns the
// product's shape. X is [..., k] (rank 1 to 4, its rows evenly spaced and
// contiguous) of F32, F16 or BF16; each W is [n, k] of a MatMulWeightTypes
// dtype with contiguous rows (k a whole number of blocks: a multiple of 32
// for Q8_0/Q4_0, 256 for Q4_K/Q6_K); Y has X's dtype and shape X.shape[:-1] +
// [n], rows evenly spaced and contiguous.
func checkMatMulOperands(name string, dst, x tensor.Tensor, ws ...namedTensor) (MatMulShape, error) {
	var s MatMulShape
	if err := checkFloat(name, "x", x); err != nil {
		return s, err
	}
	if err := checkFloat(name, "dst", dst); err != nil {
		return s, err
	}
	if err := checkSameDType(name, "x", x, dst.DType()); err != nil {
		return s, err
	}
	s.K = x.Dim(-1)
	s.M = 1 // rows: the product of the outer dimensions (k may be 0)
	for i := 0; i < x.Rank()-1; i++ {
		s.M *= x.Dim(i)
	}
	for i, w := range ws {
		if err := checkPresent(name, w.arg, w.t); err != nil {
			return s, err
		}
		if !slices.Contains(MatMulWeightTypes, w.t.DType()) {
			return s, argErr(name, w.arg, "dtype %v is not supported (supported: %v)", w.t.DType(), MatMulWeightTypes)
		}
		if w.t.Rank() != 2 {
			return s, argErr(name, w.arg, "shape %v: expected [n, k]", w.t.Shape())
		}
		// x's k against the block size first: a block-format w always has
		// whole blocks, so this is the message a wrong k deserves.
		if be := w.t.DType().BlockElems(); s.K%be != 0 {
			return s, argErr(name, "x", "k = %d is not a multiple of %d, the block size of %s's %v", s.K, be, w.arg, w.t.DType())
		}
		if w.t.Dim(1) != s.K {
			return s, argErr(name, w.arg, "shape %v: its k (%d) differs from x's innermost dimension %d", w.t.Shape(), w.t.Dim(1), s.K)
		}
		if err := checkInnerContiguous(name, w.arg, w.t); err != nil {
			return s, err
		}
		if i == 0 {
			s.N = w.t.Dim(0)
		} else {
			first := ws[0]
			if w.t.DType() != first.t.DType() || !tensor.SameShape(w.t, first.t) {
				return s, argErr(name, w.arg, "%v %v differs from %s's %v %v", w.t.DType(), w.t.Shape(), first.arg, first.t.DType(), first.t.Shape())
			}
			// The fused kernels walk both weights with one row stride.
			if s.N > 1 && w.t.Stride(0) != first.t.Stride(0) {
				return s, argErr(name, w.arg, "row stride %d elements differs from %s's %d; the pair must be laid out alike", w.t.Stride(0), first.arg, first.t.Stride(0))
			}
		}
	}
	want := x.Shape()
	want[len(want)-1] = s.N
	if !slices.Equal(dst.Shape(), want) {
		return s, argErr(name, "dst", "shape %v, expected %v (x's shape with its last dimension replaced by n)", dst.Shape(), want)
	}
	for _, a := range []namedTensor{{"x", x}, {"dst", dst}} {
		if err := checkInnerContiguous(name, a.arg, a.t); err != nil {
			return s, err
		}
	}
	var ok bool
	if s.XRowStride, ok = RowStride(x); !ok {
		return s, argErr(name, "x", "rows are not evenly spaced (layout %v); make it contiguous first", x)
	}
	if s.YRowStride, ok = RowStride(dst); !ok {
		return s, argErr(name, "dst", "rows are not evenly spaced (layout %v)", dst)
	}
	inputs := []tensor.Tensor{x}
	for _, w := range ws {
		inputs = append(inputs, w.t)
	}
	// Every output element reads a whole row of x and of w: dst may share
	// no byte with any input, in place included.
	if err := checkNoAlias(name, dst, namedTensor{"x", x}); err != nil {
		return s, err
	}
	for _, w := range ws {
		if err := checkNoAlias(name, dst, w); err != nil {
			return s, err
		}
	}
	return s, checkOutput(name, dst, inputs...)
}

type namedTensor struct {
	arg string
	t   tensor.Tensor
}

// checkNoAlias refuses a dst sharing any byte with in (in place included).
func checkNoAlias(name string, dst tensor.Tensor, in namedTensor) error {
	if in.t.Buffer() == dst.Buffer() && byteRangesOverlap(in.t, dst) {
		return argErr(name, "dst", "layout %v overlaps %s %v; a matrix product cannot run in place", dst, in.arg, in.t)
	}
	return nil
}

// CheckMatMul validates MatMul (Y = X·Wᵀ + bias) and returns its shape.
// See checkMatMulOperands for the rules; Bias, if given, is an F32 vector [n].
func CheckMatMul(dst, x, w tensor.Tensor, opts MatMulOptions) (MatMulShape, error) {
	s, err := checkMatMulOperands(NameMatMul, dst, x, namedTensor{"w", w})
	if err != nil {
		return s, err
	}
	if err := checkVector(NameMatMul, "Bias", opts.Bias, s.N); err != nil {
		return s, err
	}
	if !opts.Bias.IsZero() {
		if err := checkNoAlias(NameMatMul, dst, namedTensor{"Bias", opts.Bias}); err != nil {
			return s, err
		}
	}
	return s, nil
}

// CheckMatMulSwiGLU validates MatMulSwiGLU (Y = silu(X·Wgᵀ) ⊙ (X·Wuᵀ)): the
// gate and up weights have one dtype, shape [n, k] and row stride.
func CheckMatMulSwiGLU(dst, x, wGate, wUp tensor.Tensor) (MatMulShape, error) {
	return checkMatMulOperands(NameMatMulSwiGLU, dst, x, namedTensor{"wGate", wGate}, namedTensor{"wUp", wUp})
}
