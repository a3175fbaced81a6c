package cpu

import (
	"math"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// RMSNorm computes, over each innermost row of n elements,
// dst = x · s · weight with s = 1/√(mean(x²) + eps): the sum of squares
// accumulates in float64, s is computed in float64 and rounded to float32,
// then each element is (x·s)·weight in float32. weight, when not the zero
// Tensor, is an F32 vector of length n. eps is opts.EffectiveEps (0 means
// 1e-5). x and dst share dtype and shape and have contiguous rows.
func (b *Backend) RMSNorm(dst, x, weight tensor.Tensor, opts op.NormOptions) error {
	const name = op.NameRMSNorm
	if err := op.CheckRMSNorm(dst, x, weight, opts); err != nil {
		return err
	}
	if err := b.begin(name); err != nil {
		return err
	}
	defer b.end()
	vs, err := b.resolveAll(name, output("dst", dst), input("x", x), input("weight", weight))
	if err != nil || dst.NumElems() == 0 {
		return err
	}
	d, xv := vs[0], vs[1]
	n := d.d.Shape[3]
	w := paramVector(vs[2], n)
	eps := float64(opts.EffectiveEps())
	b.parallelFor(numRows(d.d.Shape), n*3, func(lo, hi int) {
		xScratch := make([]float32, n)
		outScratch := make([]float32, n)
		for r := lo; r < hi; r++ {
			i0, i1, i2 := rowIndex(d.d.Shape, r)
			xOff, dOff := xv.rowOffset(i0, i1, i2), d.rowOffset(i0, i1, i2)
			xRow := xv.row(xOff, n, 1, xScratch)
			outRow, direct := d.outRow(dOff, n, 1, outScratch)
			rmsNormRow(outRow, xRow, w, eps)
			d.finishRow(dOff, 1, outRow, direct)
		}
	})
	return nil
}

// paramVector returns the n floats of an optional F32 parameter vector
// (weight, bias, frequency factors), or nil when it was not given.
func paramVector(v view, n int) []float32 {
	if v.f32 == nil {
		return nil
	}
	off := v.d.Offset
	return v.f32[off : off+n : off+n]
}

// rmsNormRow normalises one row; out may be x itself; w may be nil.
func rmsNormRow(out, x, w []float32, eps float64) {
	var sumSq float64
	for _, v := range x {
		sumSq += float64(v) * float64(v)
	}
	s := float32(1 / math.Sqrt(sumSq/float64(len(x))+eps))
	if w == nil {
		for j, v := range x {
			out[j] = v * s
		}
		return
	}
	for j, v := range x {
		out[j] = float32(v*s) * w[j]
	}
}

// LayerNorm computes, over each innermost row of n elements,
// dst = (x − mean) · s · weight + bias with s = 1/√(var + eps), where mean and
// the (biased, divide-by-n) variance are computed in float64 in two passes;
// s is rounded to float32, x − mean is computed in float64 and rounded to
// float32, and the rest is float32, each step rounded (no fused
// multiply-add). weight and bias are optional F32 vectors of length n. eps is
// opts.EffectiveEps (0 means 1e-5). x and dst share dtype and shape and have
// contiguous rows.
func (b *Backend) LayerNorm(dst, x, weight, bias tensor.Tensor, opts op.NormOptions) error {
	const name = op.NameLayerNorm
	if err := op.CheckLayerNorm(dst, x, weight, bias, opts); err != nil {
		return err
	}
	if err := b.begin(name); err != nil {
		return err
	}
	defer b.end()
	vs, err := b.resolveAll(name, output("dst", dst), input("x", x), input("weight", weight), input("bias", bias))
	if err != nil || dst.NumElems() == 0 {
		return err
	}
	d, xv := vs[0], vs[1]
	n := d.d.Shape[3]
	w, bv := paramVector(vs[2], n), paramVector(vs[3], n)
	eps := float64(opts.EffectiveEps())
	b.parallelFor(numRows(d.d.Shape), n*5, func(lo, hi int) {
		xScratch := make([]float32, n)
		outScratch := make([]float32, n)
		for r := lo; r < hi; r++ {
			i0, i1, i2 := rowIndex(d.d.Shape, r)
			xOff, dOff := xv.rowOffset(i0, i1, i2), d.rowOffset(i0, i1, i2)
			xRow := xv.row(xOff, n, 1, xScratch)
			outRow, direct := d.outRow(dOff, n, 1, outScratch)
			layerNormRow(outRow, xRow, w, bv, eps)
			d.finishRow(dOff, 1, outRow, direct)
		}
	})
	return nil
}

// layerNormRow normalises one row; out may be x itself; w and bias may be nil.
func layerNormRow(out, x, w, bias []float32, eps float64) {
	n := float64(len(x))
	var sum float64
	for _, v := range x {
		sum += float64(v)
	}
	mean := sum / n
	var sumSq float64
	for _, v := range x {
		dev := float64(v) - mean
		sumSq += dev * dev
	}
	s := float32(1 / math.Sqrt(sumSq/n+eps))
	for j, v := range x {
		y := float32(float64(v)-mean) * s
		if w != nil {
			y = float32(y * w[j])
		}
		if bias != nil {
			y += bias[j]
		}
		out[j] = y
	}
}
