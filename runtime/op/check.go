package op

import (
	"slices"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Dims4 is a tensor layout padded to tensor.MaxRank dimensions with leading
// dimensions of size 1, the form kernels and the CPU loops iterate over.
type Dims4 struct {
	Shape   [tensor.MaxRank]int
	Strides [tensor.MaxRank]int
	Offset  int
}

// Pad4 returns t's layout padded to MaxRank dimensions.
func Pad4(t tensor.Tensor) Dims4 {
	var d Dims4
	pad := tensor.MaxRank - t.Rank()
	for i := 0; i < pad; i++ {
		d.Shape[i] = 1
	}
	for i := 0; i < t.Rank(); i++ {
		d.Shape[pad+i] = t.Dim(i)
		d.Strides[pad+i] = t.Stride(i)
	}
	d.Offset = t.Offset()
	return d
}

// BroadcastTo returns t's padded layout stretched to shape (itself padded):
// dimensions where t has size 1 and shape does not get stride 0. It assumes
// CheckBroadcast passed.
func BroadcastTo(t tensor.Tensor, shape [tensor.MaxRank]int) Dims4 {
	d := Pad4(t)
	for i := range d.Shape {
		if d.Shape[i] == 1 && shape[i] != 1 {
			d.Strides[i] = 0
		}
		d.Shape[i] = shape[i]
	}
	return d
}

// NumElems is the product of the shape.
func (d Dims4) NumElems() int {
	return d.Shape[0] * d.Shape[1] * d.Shape[2] * d.Shape[3]
}

func checkPresent(opName, arg string, t tensor.Tensor) error {
	if t.IsZero() {
		return argErr(opName, arg, "missing tensor")
	}
	return nil
}

func checkFloat(opName, arg string, t tensor.Tensor) error {
	if err := checkPresent(opName, arg, t); err != nil {
		return err
	}
	if !t.DType().IsFloat() {
		return argErr(opName, arg, "dtype %v is not one of F32, F16, BF16", t.DType())
	}
	return nil
}

func checkSameDType(opName, arg string, t tensor.Tensor, want tensor.DType) error {
	if t.DType() != want {
		return argErr(opName, arg, "dtype %v, expected %v (the output's dtype)", t.DType(), want)
	}
	return nil
}

func checkSameShape(opName, arg string, t, want tensor.Tensor) error {
	if !tensor.SameShape(t, want) {
		return argErr(opName, arg, "shape %v, expected %v (the output's shape)", t.Shape(), want.Shape())
	}
	return nil
}

func checkInnerContiguous(opName, arg string, t tensor.Tensor) error {
	if !t.InnerContiguous() {
		return argErr(opName, arg, "innermost dimension must be contiguous (stride 1), layout %v", t)
	}
	return nil
}

// checkOutput: the output must not address an element twice, and must not
// partly overlap an input (identical layouts, an in-place op, are fine).
func checkOutput(opName string, dst tensor.Tensor, inputs ...tensor.Tensor) error {
	if dst.HasOverlap() {
		return argErr(opName, "dst", "layout %v addresses some elements more than once", dst)
	}
	for _, in := range inputs {
		if in.IsZero() || in.Buffer() != dst.Buffer() {
			continue
		}
		if in.DType() == dst.DType() && in.Offset() == dst.Offset() && tensor.SameShape(in, dst) &&
			slices.Equal(in.Strides(), dst.Strides()) {
			continue
		}
		if byteRangesOverlap(in, dst) {
			return argErr(opName, "dst", "layout %v partly overlaps an input %v in the same buffer", dst, in)
		}
	}
	return nil
}

func byteRange(t tensor.Tensor) (lo, hi int64) {
	if t.NumElems() == 0 {
		return 0, 0
	}
	last := t.Offset()
	for i := 0; i < t.Rank(); i++ {
		last += (t.Dim(i) - 1) * t.Stride(i)
	}
	be := int64(t.DType().BlockElems())
	bb := int64(t.DType().BlockBytes())
	return int64(t.Offset()) / be * bb, (int64(last)/be + 1) * bb
}

func byteRangesOverlap(a, b tensor.Tensor) bool {
	alo, ahi := byteRange(a)
	blo, bhi := byteRange(b)
	return alo < bhi && blo < ahi
}

// CheckBroadcast checks that t can be broadcast to shape (numpy rules,
// trailing dimensions aligned, rank at most shape's).
func CheckBroadcast(opName, arg string, t tensor.Tensor, shape []int) error {
	if t.Rank() > len(shape) {
		return argErr(opName, arg, "rank %d is larger than the output's rank %d", t.Rank(), len(shape))
	}
	pad := len(shape) - t.Rank()
	for i := 0; i < t.Rank(); i++ {
		if d := t.Dim(i); d != shape[pad+i] && d != 1 {
			return argErr(opName, arg, "shape %v does not broadcast to the output's shape %v (dimension %d is %d, not 1 or %d)",
				t.Shape(), shape, i, d, shape[pad+i])
		}
	}
	return nil
}

// CheckCopy validates Copy: dst and src are F32, F16 or BF16 (any pair), or
// both I32; src broadcasts to dst's shape; any strides.
func CheckCopy(dst, src tensor.Tensor) error {
	const name = NameCopy
	if err := checkPresent(name, "dst", dst); err != nil {
		return err
	}
	if err := checkPresent(name, "src", src); err != nil {
		return err
	}
	ok := (dst.DType().IsFloat() && src.DType().IsFloat()) || (dst.DType() == tensor.I32 && src.DType() == tensor.I32)
	if !ok {
		return argErr(name, "", "cannot convert %v to %v (supported: among F32, F16, BF16; I32 to I32)", src.DType(), dst.DType())
	}
	if err := CheckBroadcast(name, "src", src, dst.Shape()); err != nil {
		return err
	}
	return checkOutput(name, dst, src)
}

// CheckBinary validates Add and Mul: a, b and dst share one float dtype; a
// and b broadcast to dst's shape; any strides.
func CheckBinary(name string, dst, a, b tensor.Tensor) error {
	if err := checkFloat(name, "dst", dst); err != nil {
		return err
	}
	for _, in := range []struct {
		arg string
		t   tensor.Tensor
	}{{"a", a}, {"b", b}} {
		if err := checkPresent(name, in.arg, in.t); err != nil {
			return err
		}
		if err := checkSameDType(name, in.arg, in.t, dst.DType()); err != nil {
			return err
		}
		if err := CheckBroadcast(name, in.arg, in.t, dst.Shape()); err != nil {
			return err
		}
	}
	return checkOutput(name, dst, a, b)
}

// CheckUnary validates SiLU and GELU: x and dst share one float dtype and shape; any strides.
func CheckUnary(name string, dst, x tensor.Tensor) error {
	if err := checkFloat(name, "dst", dst); err != nil {
		return err
	}
	if err := checkPresent(name, "x", x); err != nil {
		return err
	}
	if err := checkSameDType(name, "x", x, dst.DType()); err != nil {
		return err
	}
	if err := checkSameShape(name, "x", x, dst); err != nil {
		return err
	}
	return checkOutput(name, dst, x)
}

// checkRows validates a row op's x and dst: one float dtype, one shape,
// innermost dimension contiguous in both.
func checkRows(name string, dst, x tensor.Tensor) error {
	if err := CheckUnary(name, dst, x); err != nil {
		return err
	}
	if err := checkInnerContiguous(name, "dst", dst); err != nil {
		return err
	}
	return checkInnerContiguous(name, "x", x)
}

// CheckSoftmax validates Softmax: x and dst share dtype and shape, rows contiguous.
func CheckSoftmax(dst, x tensor.Tensor, opts SoftmaxOptions) error {
	return checkRows(NameSoftmax, dst, x)
}

// checkVector checks an optional F32 parameter vector of length n.
func checkVector(name, arg string, v tensor.Tensor, n int) error {
	if v.IsZero() {
		return nil
	}
	if v.DType() != tensor.F32 {
		return argErr(name, arg, "dtype %v, expected F32", v.DType())
	}
	if v.Rank() != 1 || v.Dim(0) != n {
		return argErr(name, arg, "shape %v, expected [%d]", v.Shape(), n)
	}
	return checkInnerContiguous(name, arg, v)
}

// CheckRMSNorm validates RMSNorm: x and dst share dtype and shape, rows
// contiguous; weight, if given, is an F32 vector of the row length.
func CheckRMSNorm(dst, x, weight tensor.Tensor, opts NormOptions) error {
	if err := checkRows(NameRMSNorm, dst, x); err != nil {
		return err
	}
	if !(opts.Eps >= 0) {
		return argErr(NameRMSNorm, "eps", "%v is not a non-negative number", opts.Eps)
	}
	if err := checkVector(NameRMSNorm, "weight", weight, x.Dim(-1)); err != nil {
		return err
	}
	return checkOutput(NameRMSNorm, dst, weight)
}

// CheckLayerNorm validates LayerNorm: as RMSNorm, with an optional bias too.
func CheckLayerNorm(dst, x, weight, bias tensor.Tensor, opts NormOptions) error {
	if err := checkRows(NameLayerNorm, dst, x); err != nil {
		return err
	}
	if !(opts.Eps >= 0) {
		return argErr(NameLayerNorm, "eps", "%v is not a non-negative number", opts.Eps)
	}
	if err := checkVector(NameLayerNorm, "weight", weight, x.Dim(-1)); err != nil {
		return err
	}
	if err := checkVector(NameLayerNorm, "bias", bias, x.Dim(-1)); err != nil {
		return err
	}
	return checkOutput(NameLayerNorm, dst, weight, bias)
}

// CheckRoPE validates RoPE: x and dst are [nTokens, nHeads, headDim] or
// [batch, nTokens, nHeads, headDim], one float dtype, heads contiguous;
// positions is I32 with x's shape minus the last two dimensions.
func CheckRoPE(dst, x, positions tensor.Tensor, opts RoPEOptions) error {
	const name = NameRoPE
	if err := checkRows(name, dst, x); err != nil {
		return err
	}
	if x.Rank() < 3 {
		return argErr(name, "x", "rank %d: expected [nTokens, nHeads, headDim] or [batch, nTokens, nHeads, headDim]", x.Rank())
	}
	if err := checkPresent(name, "positions", positions); err != nil {
		return err
	}
	if positions.DType() != tensor.I32 {
		return argErr(name, "positions", "dtype %v, expected I32", positions.DType())
	}
	want := x.Shape()[:x.Rank()-2]
	if !slices.Equal(positions.Shape(), want) {
		return argErr(name, "positions", "shape %v, expected %v (x's shape without heads and head dimension)", positions.Shape(), want)
	}
	headDim := x.Dim(-1)
	o := opts.Effective(headDim)
	if o.NDims < 0 || o.NDims%2 != 0 || o.NDims > headDim {
		return argErr(name, "NDims", "%d: must be even and at most the head dimension %d", o.NDims, headDim)
	}
	if o.Style != RoPENormal && o.Style != RoPENeoX {
		return argErr(name, "Style", "unknown style %d", o.Style)
	}
	if !(o.FreqBase > 0) || !(o.FreqScale > 0) {
		return argErr(name, "", "FreqBase %v and FreqScale %v must be positive", o.FreqBase, o.FreqScale)
	}
	if err := checkVector(name, "FreqFactors", o.FreqFactors, o.NDims/2); err != nil {
		return err
	}
	return checkOutput(name, dst, positions, o.FreqFactors)
}

// EmbeddingTableTypes are the dtypes an embedding table may have.
var EmbeddingTableTypes = []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0, tensor.Q4_0, tensor.Q4_K, tensor.Q6_K}

// CheckEmbedding validates Embedding: table is [vocab, dim] of an
// EmbeddingTableTypes dtype with contiguous rows; ids is I32 of any rank up
// to MaxRank-1; dst is float with shape ids.shape + [dim], rows contiguous.
// Ids outside [0, vocab) are found when the op runs, not here.
func CheckEmbedding(dst, table, ids tensor.Tensor) error {
	const name = NameEmbedding
	if err := checkFloat(name, "dst", dst); err != nil {
		return err
	}
	if err := checkPresent(name, "table", table); err != nil {
		return err
	}
	okType := false
	for _, d := range EmbeddingTableTypes {
		okType = okType || table.DType() == d
	}
	if !okType {
		return argErr(name, "table", "dtype %v is not supported (supported: %v)", table.DType(), EmbeddingTableTypes)
	}
	if table.Rank() != 2 {
		return argErr(name, "table", "shape %v: expected [vocab, dim]", table.Shape())
	}
	if err := checkInnerContiguous(name, "table", table); err != nil {
		return err
	}
	if err := checkPresent(name, "ids", ids); err != nil {
		return err
	}
	if ids.DType() != tensor.I32 {
		return argErr(name, "ids", "dtype %v, expected I32", ids.DType())
	}
	if ids.Rank() > tensor.MaxRank-1 {
		return argErr(name, "ids", "rank %d is larger than %d", ids.Rank(), tensor.MaxRank-1)
	}
	want := append(ids.Shape(), table.Dim(1))
	if !slices.Equal(dst.Shape(), want) {
		return argErr(name, "dst", "shape %v, expected %v (ids' shape and the table's row length)", dst.Shape(), want)
	}
	if err := checkInnerContiguous(name, "dst", dst); err != nil {
		return err
	}
	return checkOutput(name, dst, ids, table)
}

// CheckArgmax validates Argmax: x is float [..., n] with n ≥ 1 and rows
// contiguous; dst is I32 with x's shape minus the last dimension ([1] when x
// has rank 1).
func CheckArgmax(dst, x tensor.Tensor) error {
	const name = NameArgmax
	if err := checkFloat(name, "x", x); err != nil {
		return err
	}
	if err := checkInnerContiguous(name, "x", x); err != nil {
		return err
	}
	if x.Dim(-1) == 0 {
		return argErr(name, "x", "rows of length 0 have no maximum")
	}
	if err := checkPresent(name, "dst", dst); err != nil {
		return err
	}
	if dst.DType() != tensor.I32 {
		return argErr(name, "dst", "dtype %v, expected I32", dst.DType())
	}
	want := ArgmaxShape(x)
	if !slices.Equal(dst.Shape(), want) {
		return argErr(name, "dst", "shape %v, expected %v", dst.Shape(), want)
	}
	return checkOutput(name, dst, x)
}

// ArgmaxShape is the output shape of Argmax for x.
func ArgmaxShape(x tensor.Tensor) []int {
	if x.Rank() <= 1 {
		return []int{1}
	}
	return x.Shape()[:x.Rank()-1]
}
