package cpu

import (
	"fmt"
	"math"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Argmax writes the index of the largest element of each innermost row of x
// (float, rows contiguous) into dst (I32, x's shape without the last
// dimension, [1] for a rank-1 x; any strides). Values compare exactly as
// float32 (F16 and BF16 widen without loss; −0 equals +0). Ties go to the
// smallest index; NaNs are never chosen; a row of NaNs gives 0.
func (b *Backend) Argmax(dst, x tensor.Tensor) error {
	const name = op.NameArgmax
	if err := op.CheckArgmax(dst, x); err != nil {
		return err
	}
	if n := x.Dim(-1); n > math.MaxInt32 {
		return &op.ArgError{Op: name, Arg: "x", Msg: fmt.Sprintf("rows of %d elements: indices would not fit in I32", n)}
	}
	if err := b.begin(name); err != nil {
		return err
	}
	defer b.end()
	vs, err := b.resolveAll(name, output("dst", dst), input("x", x))
	if err != nil || x.NumElems() == 0 {
		return err
	}
	d, xv := vs[0], vs[1]
	n := xv.d.Shape[3]
	b.parallelFor(numRows(xv.d.Shape), n, func(lo, hi int) {
		scratch := make([]float32, n)
		for r := lo; r < hi; r++ {
			i0, i1, i2 := rowIndex(xv.d.Shape, r)
			xRow := xv.row(xv.rowOffset(i0, i1, i2), n, 1, scratch)
			// dst's padded shape is [1, x0, x1, x2]: x's outer indices one place in.
			d.i32[d.d.Offset+i0*d.d.Strides[1]+i1*d.d.Strides[2]+i2*d.d.Strides[3]] = int32(argmaxRow(xRow))
		}
	})
	return nil
}

// argmaxRow is the index of the first largest non-NaN element, 0 if all are NaN.
func argmaxRow(x []float32) int {
	best := -1
	var bestVal float32
	for j, v := range x {
		if v != v { // NaN
			continue
		}
		if best < 0 || v > bestVal {
			best, bestVal = j, v
		}
	}
	return max(best, 0)
}
