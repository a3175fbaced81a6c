package cpu

import (
	"math"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// RoPE rotates x ([nTokens, nHeads, headDim] or [batch, nTokens, nHeads,
// headDim], heads contiguous) by the positions (I32, [nTokens] or [batch,
// nTokens], any strides) as op.RoPEOptions specifies, into dst (x's dtype and
// shape; it may be x itself).
//
// For pair i the angle is θ = p · f_i with p = positions[t] +
// PositionOffset and f_i = FreqScale · FreqBase^(−2i/NDims) / FreqFactors[i],
// all in float64 (the position exactly, as an integer, before conversion);
// cos θ and sin θ are rounded to float32, and the pair (a, b) becomes
// (a·cos θ − b·sin θ, a·sin θ + b·cos θ) with every product rounded to
// float32 before the sum (no fused multiply-add). Frequency factors are used
// as given: a zero factor gives an infinite angle and NaN results.
func (b *Backend) RoPE(dst, x, positions tensor.Tensor, opts op.RoPEOptions) error {
	const name = op.NameRoPE
	if err := op.CheckRoPE(dst, x, positions, opts); err != nil {
		return err
	}
	if err := b.begin(name); err != nil {
		return err
	}
	defer b.end()
	vs, err := b.resolveAll(name, output("dst", dst), input("x", x), input("positions", positions),
		input("FreqFactors", opts.FreqFactors))
	if err != nil || dst.NumElems() == 0 {
		return err
	}
	d, xv, pv := vs[0], vs[1], vs[2]
	shape := d.d.Shape // [batch, nTokens, nHeads, headDim]
	headDim := shape[3]
	o := opts.Effective(headDim)
	nPairs := o.NDims / 2
	factors := paramVector(vs[3], nPairs)
	freqs := make([]float64, nPairs)
	for i := range freqs {
		freqs[i] = float64(o.FreqScale) * math.Pow(float64(o.FreqBase), -2*float64(i)/float64(o.NDims))
		if factors != nil {
			freqs[i] /= float64(factors[i])
		}
	}
	nTokens := shape[0] * shape[1]
	b.parallelFor(nTokens, shape[2]*headDim*4+nPairs*40, func(lo, hi int) {
		cos := make([]float32, nPairs)
		sin := make([]float32, nPairs)
		xScratch := make([]float32, headDim)
		outScratch := make([]float32, headDim)
		for tok := lo; tok < hi; tok++ {
			bi, ti := tok/shape[1], tok%shape[1]
			pos := int64(pv.i32[pv.d.Offset+bi*pv.d.Strides[2]+ti*pv.d.Strides[3]]) + int64(o.PositionOffset)
			for i, f := range freqs {
				theta := float64(pos) * f
				cos[i] = float32(math.Cos(theta))
				sin[i] = float32(math.Sin(theta))
			}
			for h := 0; h < shape[2]; h++ {
				xOff, dOff := xv.rowOffset(bi, ti, h), d.rowOffset(bi, ti, h)
				xRow := xv.row(xOff, headDim, 1, xScratch)
				outRow, direct := d.outRow(dOff, headDim, 1, outScratch)
				ropeRow(outRow, xRow, cos, sin, o.Style)
				d.finishRow(dOff, 1, outRow, direct)
			}
		}
	})
	return nil
}

// ropeRow rotates the first 2·len(cos) elements of one head and copies the
// rest. out may be x itself: each pair is read before it is written.
func ropeRow(out, x, cos, sin []float32, style op.RoPEStyle) {
	nPairs := len(cos)
	for i := range nPairs {
		ia, ib := 2*i, 2*i+1 // RoPENormal: adjacent pairs
		if style == op.RoPENeoX {
			ia, ib = i, i+nPairs
		}
		a, bv := x[ia], x[ib]
		c, s := cos[i], sin[i]
		out[ia] = float32(a*c) - float32(bv*s)
		out[ib] = float32(a*s) + float32(bv*c)
	}
	copy(out[2*nPairs:], x[2*nPairs:])
}
