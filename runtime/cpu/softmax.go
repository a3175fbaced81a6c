package cpu

import (
	"math"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Softmax computes dst = softmax(scale·x + causal mask) over the innermost
// dimension; x and dst share dtype and shape and have contiguous rows.
//
// Per row: z_j = scale·x_j in float32; the masked columns (see
// op.SoftmaxOptions; the row number is the index in the second-innermost
// dimension, 0 for a rank-1 tensor) come out 0 and take no part; then
// m = max z_j over the other columns, e_j = exp(z_j − m) and their sum in
// float64, and dst_j = e_j / sum rounded to the output dtype. A row with
// every column masked comes out all zeros. A NaN among the unmasked inputs
// makes the row NaN; so do +Inf (Inf − Inf) and a row of −Inf.
func (b *Backend) Softmax(dst, x tensor.Tensor, opts op.SoftmaxOptions) error {
	const name = op.NameSoftmax
	if err := op.CheckSoftmax(dst, x, opts); err != nil {
		return err
	}
	if err := b.begin(name); err != nil {
		return err
	}
	defer b.end()
	vs, err := b.resolveAll(name, output("dst", dst), input("x", x))
	if err != nil || dst.NumElems() == 0 {
		return err
	}
	d, xv := vs[0], vs[1]
	scale := opts.EffectiveScale()
	n := d.d.Shape[3]
	b.parallelFor(numRows(d.d.Shape), n*20, func(lo, hi int) {
		xScratch := make([]float32, n)
		outScratch := make([]float32, n)
		exps := make([]float64, n)
		for r := lo; r < hi; r++ {
			i0, i1, i2 := rowIndex(d.d.Shape, r)
			xOff, dOff := xv.rowOffset(i0, i1, i2), d.rowOffset(i0, i1, i2)
			xRow := xv.row(xOff, n, 1, xScratch)
			outRow, direct := d.outRow(dOff, n, 1, outScratch)
			softmaxRow(outRow, xRow, exps, scale, softmaxUnmasked(opts, i2, n))
			d.finishRow(dOff, 1, outRow, direct)
		}
	})
	return nil
}

// softmaxUnmasked is how many leading columns of row (of n) the mask leaves:
// all of them without Causal, else those j ≤ PositionOffset + row.
func softmaxUnmasked(opts op.SoftmaxOptions, row, n int) int {
	if !opts.Causal || opts.PositionOffset >= n-row-1 {
		return n
	}
	return max(0, opts.PositionOffset+row+1)
}

// softmaxRow writes the softmax of scale·x[:nValid] into out[:nValid] and
// zeros into the rest. out may be x itself; exps is scratch of len(x).
func softmaxRow(out, x []float32, exps []float64, scale float32, nValid int) {
	if nValid > 0 {
		m := float32(math.Inf(-1))
		for _, v := range x[:nValid] {
			if z := scale * v; z > m {
				m = z
			}
		}
		var sum float64
		for j, v := range x[:nValid] {
			z := scale * v
			e := math.Exp(float64(z) - float64(m))
			exps[j] = e
			sum += e
		}
		for j := range nValid {
			out[j] = float32(exps[j] / sum)
		}
	}
	clear(out[nValid:])
}
