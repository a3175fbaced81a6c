package cpu

import (
	"fmt"
	"math"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Elementwise ops (Copy, Add, Mul, SiLU, GELU) accept any strides. They walk
// the output in segments: runs of at most maxSegmentElems elements along the
// innermost dimension, after merging dimensions that are laid out
// contiguously in every operand (so a contiguous tensor is one long run, split
// only to bound scratch memory and to share work between goroutines).

// maxSegmentElems bounds the elements converted at once, and so the scratch
// memory each worker needs.
const maxSegmentElems = 2048

// segIter walks an elementwise op's output shape in segments.
type segIter struct {
	shape      [tensor.MaxRank]int   // merged shape, padded
	strides    [][tensor.MaxRank]int // per operand, in the merged shape
	offsets    []int                 // per operand: its first element
	segLen     int                   // elements per segment (the last of a row may be shorter)
	segsPerRow int
}

// newSegIter prepares the walk over shape (the output's padded shape) for
// operands laid out as ds (each already broadcast to shape), output first.
func newSegIter(shape [tensor.MaxRank]int, ds []op.Dims4) segIter {
	it := segIter{offsets: make([]int, len(ds))}
	for k, d := range ds {
		it.offsets[k] = d.Offset
	}
	it.shape, it.strides = mergeDims(shape, ds)
	it.segLen = min(it.shape[3], maxSegmentElems)
	if it.segLen > 0 {
		it.segsPerRow = (it.shape[3] + it.segLen - 1) / it.segLen
	}
	return it
}

// mergeDims drops dimensions of size 1 and merges each dimension into the
// one inside it when every operand steps over the inner one contiguously
// (outer stride = inner stride · inner size), then pads back to MaxRank.
func mergeDims(shape [tensor.MaxRank]int, ds []op.Dims4) ([tensor.MaxRank]int, [][tensor.MaxRank]int) {
	type dim struct {
		size    int
		strides []int // per operand
	}
	var merged []dim // innermost first
	for i := tensor.MaxRank - 1; i >= 0; i-- {
		if shape[i] == 1 {
			continue
		}
		strides := make([]int, len(ds))
		for k := range ds {
			strides[k] = ds[k].Strides[i]
		}
		if n := len(merged); n > 0 {
			inner := &merged[n-1]
			contiguous := true
			for k := range ds {
				if strides[k] != inner.strides[k]*inner.size {
					contiguous = false
					break
				}
			}
			if contiguous {
				inner.size *= shape[i]
				continue
			}
		}
		merged = append(merged, dim{shape[i], strides})
	}
	var outShape [tensor.MaxRank]int
	outStrides := make([][tensor.MaxRank]int, len(ds))
	for i := range outShape {
		outShape[i] = 1
	}
	for j, d := range merged {
		pos := tensor.MaxRank - 1 - j
		outShape[pos] = d.size
		for k := range ds {
			outStrides[k][pos] = d.strides[k]
		}
	}
	return outShape, outStrides
}

// units is the number of segments.
func (it *segIter) units() int { return numRows(it.shape) * it.segsPerRow }

// seg returns the length of segment u and writes each operand's element
// index for the segment's first element into offs.
func (it *segIter) seg(u int, offs []int) int {
	r, s := u/it.segsPerRow, u%it.segsPerRow
	i0, i1, i2 := rowIndex(it.shape, r)
	c0 := s * it.segLen
	for k := range offs {
		st := it.strides[k]
		offs[k] = it.offsets[k] + i0*st[0] + i1*st[1] + i2*st[2] + c0*st[3]
	}
	return min(it.segLen, it.shape[3]-c0)
}

// elementwise computes dst from ins (each already broadcast to dst's shape)
// segment by segment: fn receives the output run and the matching input
// runs, all as float32 and of equal length, and fills the output.
// workPerElem is the estimated cost of one element, for parallelFor.
func (b *Backend) elementwise(dst view, ins []view, workPerElem int, fn func(out []float32, ins [][]float32)) {
	ds := make([]op.Dims4, 1+len(ins))
	ds[0] = dst.d
	for k, v := range ins {
		ds[k+1] = v.d
	}
	it := newSegIter(dst.d.Shape, ds)
	b.parallelFor(it.units(), it.segLen*workPerElem, func(lo, hi int) {
		scratch := make([]float32, (1+len(ins))*it.segLen)
		offs := make([]int, len(ds))
		rows := make([][]float32, len(ins))
		for u := lo; u < hi; u++ {
			n := it.seg(u, offs)
			for k, v := range ins {
				rows[k] = v.row(offs[k+1], n, it.strides[k+1][3], scratch[(k+1)*it.segLen:])
			}
			outRow, direct := dst.outRow(offs[0], n, it.strides[0][3], scratch[:it.segLen])
			fn(outRow, rows)
			dst.finishRow(offs[0], it.strides[0][3], outRow, direct)
		}
	})
}

// copyElems copies elements bit for bit between two layouts of one element
// type (no conversion), for Copy between tensors of the same dtype.
func copyElems[T any](b *Backend, it segIter, dst, src []T) {
	b.parallelFor(it.units(), it.segLen, func(lo, hi int) {
		offs := make([]int, 2)
		ds, ss := it.strides[0][3], it.strides[1][3]
		for u := lo; u < hi; u++ {
			n := it.seg(u, offs)
			if ds == 1 && ss == 1 {
				copy(dst[offs[0]:offs[0]+n], src[offs[1]:offs[1]+n])
				continue
			}
			for i := 0; i < n; i++ {
				dst[offs[0]+i*ds] = src[offs[1]+i*ss]
			}
		}
	})
}

// Copy converts src to dst's dtype (among F32, F16, BF16; or I32 to I32),
// broadcasting src to dst's shape; any strides. A copy between tensors of the
// same dtype is bit for bit (NaN payloads included); a conversion widens to
// float32 exactly and rounds to nearest even (F32 beyond F16's range becomes
// ±Inf; NaN becomes the canonical quiet NaN).
func (b *Backend) Copy(dst, src tensor.Tensor) error {
	const name = op.NameCopy
	if err := op.CheckCopy(dst, src); err != nil {
		return err
	}
	if err := b.begin(name); err != nil {
		return err
	}
	defer b.end()
	vs, err := b.resolveAll(name, output("dst", dst), input("src", src))
	if err != nil || dst.NumElems() == 0 {
		return err
	}
	d, s := vs[0], vs[1]
	s.d = op.BroadcastTo(src, d.d.Shape)
	if dst.DType() != src.DType() {
		b.elementwise(d, []view{s}, 2, func(out []float32, ins [][]float32) { copy(out, ins[0]) })
		return nil
	}
	it := newSegIter(d.d.Shape, []op.Dims4{d.d, s.d})
	if dst.DType().BlockBytes() == 4 { // F32, I32
		copyElems(b, it, tensor.BytesI32(d.mem), tensor.BytesI32(s.mem))
	} else { // F16, BF16
		copyElems(b, it, d.u16, s.u16)
	}
	return nil
}

// binary runs Add or Mul.
func (b *Backend) binary(name string, dst, x, y tensor.Tensor, fn func(out, x, y []float32)) error {
	if err := op.CheckBinary(name, dst, x, y); err != nil {
		return err
	}
	if err := b.begin(name); err != nil {
		return err
	}
	defer b.end()
	vs, err := b.resolveAll(name, output("dst", dst), input("a", x), input("b", y))
	if err != nil || dst.NumElems() == 0 {
		return err
	}
	vs[1].d = op.BroadcastTo(x, vs[0].d.Shape)
	vs[2].d = op.BroadcastTo(y, vs[0].d.Shape)
	b.elementwise(vs[0], vs[1:], 1, func(out []float32, ins [][]float32) { fn(out, ins[0], ins[1]) })
	return nil
}

// Add computes dst = a + b elementwise in float32 with numpy broadcasting
// (trailing dimensions aligned; stride-0 views broadcast too); one float
// dtype for all three; any strides.
func (b *Backend) Add(dst, x, y tensor.Tensor) error {
	return b.binary(op.NameAdd, dst, x, y, func(out, x, y []float32) {
		for i := range out {
			out[i] = x[i] + y[i]
		}
	})
}

// Mul computes dst = a · b elementwise in float32, broadcasting as Add does.
func (b *Backend) Mul(dst, x, y tensor.Tensor) error {
	return b.binary(op.NameMul, dst, x, y, func(out, x, y []float32) {
		for i := range out {
			out[i] = x[i] * y[i]
		}
	})
}

// unary runs SiLU or GELU: f maps one input element to the result.
func (b *Backend) unary(name string, dst, x tensor.Tensor, f func(float64) float64) error {
	if err := op.CheckUnary(name, dst, x); err != nil {
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
	b.elementwise(vs[0], vs[1:], 20, func(out []float32, ins [][]float32) {
		for i, v := range ins[0] {
			out[i] = float32(f(float64(v)))
		}
	})
	return nil
}

// SiLU computes dst = x · sigmoid(x) = x / (1 + e^−x), evaluated in float64
// and rounded once; x and dst share dtype and shape; any strides.
func (b *Backend) SiLU(dst, x tensor.Tensor) error {
	return b.unary(op.NameSiLU, dst, x, silu)
}

func silu(x float64) float64 { return x / (1 + math.Exp(-x)) }

// GELU computes dst = gelu(x), evaluated in float64 and rounded once; x and
// dst share dtype and shape; any strides. op.GELUErf is x·Φ(x), computed as
// x · erfc(−x/√2) / 2 (the same value as 0.5·x·(1 + erf(x/√2)), without the
// cancellation for negative x). op.GELUTanh is 0.5·x·(1 + tanh(u)) with
// u = √(2/π)·(x + 0.044715·x³), computed as x / (1 + e^−2u), the same value.
func (b *Backend) GELU(dst, x tensor.Tensor, opts op.GELUOptions) error {
	switch opts.Approx {
	case op.GELUErf:
		return b.unary(op.NameGELU, dst, x, geluErf)
	case op.GELUTanh:
		return b.unary(op.NameGELU, dst, x, geluTanh)
	}
	if err := op.CheckUnary(op.NameGELU, dst, x); err != nil {
		return err
	}
	return &op.ArgError{Op: op.NameGELU, Arg: "Approx", Msg: fmt.Sprintf("unknown approximation %d (expected GELUErf or GELUTanh)", opts.Approx)}
}

func geluErf(x float64) float64 { return x * 0.5 * math.Erfc(-x/math.Sqrt2) }

// sqrt2OverPi is √(2/π).
var sqrt2OverPi = math.Sqrt(2 / math.Pi)

func geluTanh(x float64) float64 {
	u := sqrt2OverPi * (x + 0.044715*x*x*x)
	return x / (1 + math.Exp(-2*u))
}
