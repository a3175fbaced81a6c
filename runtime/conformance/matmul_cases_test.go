package conformance

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// --- matmul, matmul-swiglu ---
//
// Every weight type × every activation type, over m in 1, 2, 3, 7, 16, 33
// (plus a few cases of 512), n in 1, 7, 33, 100 and k not a multiple of any
// tile where the format allows (any k for float weights, multiples of 32 or
// 256 for the block formats), k = 0, with and without bias, SwiGLU for a
// subset, x of rank 1 to 4, and x, dst and w rows that are slices of wider
// buffers. The reference dequantizes w with tensor.Dequantize (checked
// against ggml by runtime/tensor's golden tests) and multiplies in float64.

// matmulConfig is one matrix-product case.
type matmulConfig struct {
	wt, xt tensor.DType
	outer  []int // x's dimensions before k (their product is m); empty for a vector
	n, k   int
	bias   bool
	swiglu bool
	// xRows, dstRows, wRows: "contiguous", or "rows-of-wider": each row a
	// slice of a longer row of a bigger buffer, starting at an offset.
	xRows, dstRows, wRows layout
}

// rowsOfWider is the layout of a matrix whose rows are slices of the rows
// of a wider matrix: evenly spaced, a few elements (whole blocks for block
// formats) longer than the view's rows, the view starting at an offset.
const rowsOfWider layout = "rows-of-wider"

func (c matmulConfig) m() int {
	m := 1
	for _, d := range c.outer {
		m *= d
	}
	return m
}

func (c matmulConfig) name() string {
	opName := op.NameMatMul
	if c.swiglu {
		opName = op.NameMatMulSwiGLU
	}
	return fmt.Sprintf("%s/W%v-X%v/m%d-n%d-k%d/x%s-%s/dst-%s/w-%s/bias%v", opName, c.wt, c.xt, c.m(), c.n, c.k,
		shapeName(append(append([]int(nil), c.outer...), c.k)), c.xRows, c.dstRows, c.wRows, c.bias)
}

// matmulKs are the k of each weight type's ordinary cases: for float
// weights, sizes of no block (1, 7, 129) and one block of every format
// (256); for block formats, one and several blocks, up to 768.
func matmulKs(wt tensor.DType) []int {
	switch wt.BlockElems() {
	case 32:
		return []int{32, 96, 768}
	case tensor.QK_K:
		return []int{256, 768}
	}
	return []int{1, 7, 129, 256}
}

func matmulCases() []caseSpec {
	var cfgs []matmulConfig
	ns := []int{1, 7, 33, 100}
	for wi, wt := range op.MatMulWeightTypes {
		ks := matmulKs(wt)
		for a, xt := range floatTypes {
			// The ordinary cases: each m once per weight and activation
			// type, n, k, bias and layouts rotating so that every
			// combination of neighbours occurs somewhere.
			for idx, m := range []int{1, 2, 3, 7, 16, 33} {
				c := matmulConfig{
					wt: wt, xt: xt,
					n: ns[(idx+a+wi)%len(ns)], k: ks[(idx+a)%len(ks)],
					bias:  (idx+a)%2 == 0,
					xRows: contiguous, dstRows: contiguous, wRows: contiguous,
				}
				switch m {
				case 1:
					if a%2 == 0 {
						c.outer = nil // x a vector [k], dst [n]
					} else {
						c.outer = []int{1}
					}
				case 16:
					c.outer = []int{2, 8}
					if a == 2 {
						c.outer = []int{2, 2, 4}
					}
				case 33:
					c.outer = []int{3, 11}
				default:
					c.outer = []int{m}
				}
				if (idx+wi)%3 == 1 {
					c.xRows = rowsOfWider
				}
				if (idx+wi)%3 == 2 {
					c.dstRows = rowsOfWider
				}
				if (idx+a)%2 == 1 {
					c.wRows = rowsOfWider
				}
				cfgs = append(cfgs, c)
			}
			// SwiGLU: a decode-sized and a prefill-sized case.
			cfgs = append(cfgs,
				matmulConfig{wt: wt, xt: xt, outer: []int{1}, n: 33, k: ks[len(ks)-1], swiglu: true,
					xRows: contiguous, dstRows: rowsOfWider, wRows: contiguous},
				matmulConfig{wt: wt, xt: xt, outer: []int{7}, n: 7, k: ks[a%len(ks)], swiglu: true,
					xRows: rowsOfWider, dstRows: contiguous, wRows: rowsOfWider})
		}
		// m = 512, small n and k: the prefill shape for each weight type,
		// activation types rotating.
		xt := floatTypes[wi%len(floatTypes)]
		cfgs = append(cfgs, matmulConfig{wt: wt, xt: xt, outer: []int{4, 128}, n: 7, k: ks[(len(ks)-1)/2], bias: wi%2 == 0,
			xRows: rowsOfWider, dstRows: contiguous, wRows: contiguous})
	}
	// k = 0: the bias, or zeros (and silu(0)·0 = 0).
	for i, wt := range []tensor.DType{tensor.F32, tensor.BF16, tensor.Q8_0, tensor.Q4_K} {
		xt := floatTypes[i%len(floatTypes)]
		cfgs = append(cfgs,
			matmulConfig{wt: wt, xt: xt, outer: []int{3}, n: 7, k: 0, bias: true, xRows: rowsOfWider, dstRows: rowsOfWider, wRows: rowsOfWider},
			matmulConfig{wt: wt, xt: xt, outer: []int{2}, n: 5, k: 0, swiglu: true, xRows: rowsOfWider, dstRows: contiguous, wRows: rowsOfWider})
	}
	cfgs = append(cfgs, matmulConfig{wt: tensor.Q4_K, xt: tensor.F16, outer: []int{512}, n: 9, k: 256, swiglu: true,
		xRows: contiguous, dstRows: rowsOfWider, wRows: contiguous})

	var cs []caseSpec
	for _, cfg := range cfgs {
		cs = append(cs, caseSpec{cfg.name(), func(rng *rand.Rand) *opCase { return newMatMulCase(rng, cfg) }})
	}
	return cs
}

// rowsPlace returns strides, offset and buffer size in elements for a view
// of shape (rank ≥ 1; the last dimension is the row) laid out as l
// (contiguous or rowsOfWider). Rows stay evenly spaced, as matrix products
// require: the outer dimensions fold into one.
func rowsPlace(rng *rand.Rand, dt tensor.DType, shape []int, l layout) (strides []int, offset, baseElems int) {
	r := len(shape)
	rowLen := shape[r-1]
	rows := 1
	for _, d := range shape[:r-1] {
		rows *= d
	}
	rowStride, startRow, startCol := rowLen, 0, 0
	if l == rowsOfWider {
		be := dt.BlockElems()
		extra := be * (1 + rng.IntN(2)) // whole blocks; 1 or 2 elements for scalar types
		rowStride = rowLen + extra
		startCol = be * rng.IntN(extra/be+1)
		startRow = rng.IntN(2)
	} else if l != contiguous {
		panic("rowsPlace: layout " + string(l)) // test bug
	}
	strides = make([]int, r)
	strides[r-1] = 1
	s := rowStride
	for i := r - 2; i >= 0; i-- {
		strides[i] = s
		s *= shape[i]
	}
	offset = startRow*rowStride + startCol
	baseElems = offset + rows*rowStride
	if l == rowsOfWider {
		baseElems += rowStride // a row after the view
	}
	return strides, offset, baseElems
}

// newRowsInput is newFloatInput with a rowsPlace layout.
func newRowsInput(rng *rand.Rand, dt tensor.DType, shape []int, l layout, gen func() float64) *hostTensor {
	strides, offset, n := rowsPlace(rng, dt, shape, l)
	h := &hostTensor{dt: dt, shape: shape, strides: strides, offset: offset, base: poison(dt, n)}
	enc := map[tensor.DType]func(e int, v float32){
		tensor.F32:  func(e int, v float32) { binary.LittleEndian.PutUint32(h.base[4*e:], math.Float32bits(v)) },
		tensor.F16:  func(e int, v float32) { binary.LittleEndian.PutUint16(h.base[2*e:], tensor.F32ToF16(v)) },
		tensor.BF16: func(e int, v float32) { binary.LittleEndian.PutUint16(h.base[2*e:], tensor.F32ToBF16(v)) },
	}[dt]
	for _, e := range h.elemIndices() {
		enc(e, float32(gen()))
	}
	return h
}

// newWeights makes an [n, k] weight matrix of dt laid out as l, values
// uniform in [-1, 1) (quantized row by row with tensor.Quantize for the
// block formats, as a GGUF file holds them), decoys outside the view (0xff:
// NaN floats and NaN block scales), and returns it with its values as
// tensor.Dequantize decodes them, row-major.
func newWeights(rng *rand.Rand, dt tensor.DType, n, k int, l layout) (*hostTensor, []float64) {
	if !dt.IsQuantized() {
		h := newRowsInput(rng, dt, []int{n, k}, l, uniform(rng, -1, 1))
		return h, h.values()
	}
	strides, offset, baseElems := rowsPlace(rng, dt, []int{n, k}, l)
	return newWeightsAt(rng, dt, n, k, strides, offset, baseElems)
}

// newWeightsLike makes a second weight matrix laid out exactly as like (the
// SwiGLU up projection, which shares the gate's row stride).
func newWeightsLike(rng *rand.Rand, like *hostTensor) (*hostTensor, []float64) {
	return newWeightsAt(rng, like.dt, like.shape[0], like.shape[1], like.strides, like.offset, like.baseElems())
}

// newWeightsAt is newWeights with the layout given.
func newWeightsAt(rng *rand.Rand, dt tensor.DType, n, k int, strides []int, offset, baseElems int) (*hostTensor, []float64) {
	shape := []int{n, k}
	h := &hostTensor{dt: dt, shape: shape, strides: strides, offset: offset, base: poison(dt, baseElems)}
	if !dt.IsQuantized() {
		gen := uniform(rng, -1, 1)
		for _, e := range h.elemIndices() {
			v := float32(gen())
			switch dt {
			case tensor.F32:
				binary.LittleEndian.PutUint32(h.base[4*e:], math.Float32bits(v))
			case tensor.F16:
				binary.LittleEndian.PutUint16(h.base[2*e:], tensor.F32ToF16(v))
			case tensor.BF16:
				binary.LittleEndian.PutUint16(h.base[2*e:], tensor.F32ToBF16(v))
			}
		}
		return h, h.values()
	}
	gen := uniform(rng, -1, 1)
	be, bb := dt.BlockElems(), dt.BlockBytes()
	vals := make([]float32, k)
	dec := make([]float32, k)
	out := make([]float64, 0, n*k)
	for j := range n {
		for i := range vals {
			vals[i] = float32(gen())
		}
		q, err := tensor.Quantize(dt, vals)
		if err != nil {
			panic(err) // test bug: the values are in range
		}
		copy(h.base[(offset+j*strides[0])/be*bb:], q)
		if err := tensor.Dequantize(dt, q, dec); err != nil {
			panic(err) // test bug
		}
		for _, v := range dec {
			out = append(out, float64(v))
		}
	}
	return h, out
}

// refMatMul is y[i, j] = Σₜ x[i, t]·w[j, t] in float64, and
// sumAbs[i, j] = Σₜ |x[i, t]·w[j, t]|.
func refMatMul(x, w []float64, m, n, k int) (y, sumAbs []float64) {
	y, sumAbs = make([]float64, m*n), make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s, a float64
			for t := range k {
				p := x[i*k+t] * w[j*k+t]
				s += p
				a += math.Abs(p)
			}
			y[i*n+j], sumAbs[i*n+j] = s, a
		}
	}
	return y, sumAbs
}

func newMatMulCase(rng *rand.Rand, cfg matmulConfig) *opCase {
	m, n, k := cfg.m(), cfg.n, cfg.k
	xShape := append(append([]int(nil), cfg.outer...), k)
	outShape := append(append([]int(nil), cfg.outer...), n)
	x := newRowsInput(rng, cfg.xt, xShape, cfg.xRows, uniform(rng, -1, 1))
	w, wv := newWeights(rng, cfg.wt, n, k, cfg.wRows)
	xv := x.values()
	y, sumAbs := refMatMul(xv, wv, m, n, k)
	c := &opCase{}
	strides, offset, baseElems := rowsPlace(rng, cfg.xt, outShape, cfg.dstRows)
	c.dst = &hostTensor{dt: cfg.xt, shape: outShape, strides: strides, offset: offset, base: poison(cfg.xt, baseElems)}
	if cfg.swiglu {
		up, uv := newWeightsLike(rng, w)
		u, uAbs := refMatMul(xv, uv, m, n, k)
		c.op = op.NameMatMulSwiGLU
		c.inputs = []*hostTensor{x, w, up}
		c.run = func(b backend.Backend, dst tensor.Tensor, in []tensor.Tensor) error {
			return b.MatMulSwiGLU(dst, in[0], in[1], in[2])
		}
		c.want = make([]float64, m*n)
		for i, g := range y {
			sg := g / (1 + math.Exp(-g))
			c.want[i] = sg * u[i]
			// |d silu/dg| ≤ 1.1, so an error e_g in g and e_u in u give at
			// most 1.1·|u|·e_g + |silu(g)|·e_u (to first order).
			sumAbs[i] = 1.1*math.Abs(u[i])*sumAbs[i] + math.Abs(sg)*uAbs[i]
		}
	} else {
		c.op = op.NameMatMul
		var bias *hostTensor
		if cfg.bias {
			l := contiguous
			if cfg.wRows == rowsOfWider {
				l = padded
			}
			bias = newFloatInput(rng, tensor.F32, []int{n}, l, uniform(rng, -1, 1))
			bv := bias.values()
			for i := range y {
				y[i] += bv[i%n]
				sumAbs[i] += math.Abs(bv[i%n])
			}
		}
		c.inputs = []*hostTensor{x, w, bias}
		c.run = func(b backend.Backend, dst tensor.Tensor, in []tensor.Tensor) error {
			return b.MatMul(dst, in[0], in[1], op.MatMulOptions{Bias: in[2]})
		}
		c.want = y
	}
	maxSum := 0.0
	for _, s := range sumAbs {
		maxSum = math.Max(maxSum, s)
	}
	opName := c.op
	c.tolerance = func(vsCPU bool) Tolerance { return MatMulTolerance(opName, cfg.xt, maxSum, vsCPU) }
	return c
}

// Helpers of the matmul invalid-argument cases (invalid_test.go).

// mmDst is a valid matmul output [4, 4] for x = e.f32b [4, 8] and
// w = mmW [4, 8]: rows of e.f32.
func mmDst(t *testing.T, e *invalidEnv) tensor.Tensor {
	return view(t, e.f32, 0, []int{4, 4}, []int{8, 1})
}

// mmW is a valid F32 weight [4, 8]: the first rows of e.table.
func mmW(t *testing.T, e *invalidEnv) tensor.Tensor {
	return view(t, e.table, 0, []int{4, 8}, []int{8, 1})
}

// allocZeros allocates a tensor of dt and shape on b holding zero bytes
// (valid blocks for block formats), freed when the test ends.
func allocZeros(t *testing.T, b backend.Backend, dt tensor.DType, shape ...int) tensor.Tensor {
	t.Helper()
	x, err := b.Alloc(dt, shape...)
	if err != nil {
		t.Fatalf("alloc %v %v: %v", dt, shape, err)
	}
	t.Cleanup(func() { _ = b.Free(x) })
	if err := b.Upload(x, make([]byte, x.SizeBytes())); err != nil {
		t.Fatalf("upload: %v", err)
	}
	return x
}
