package conformance

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// The conformance table. Each case's data comes from a random source seeded
// by the case's name, so a failure reproduces by running that case alone.

var floatTypes = []tensor.DType{tensor.F32, tensor.F16, tensor.BF16}

// Sizes of the innermost dimension: 1, odd, around and not multiples of
// typical block sizes (32, 256, 1024, 4096).
var rowSizes = []int{1, 7, 33, 255, 257, 1000, 4097}

// elemShapes are the shapes of the elementwise cases, up to rank 4.
var elemShapes = [][]int{{1}, {7}, {33}, {255}, {257}, {1000}, {4097}, {3, 5}, {2, 3, 7}, {2, 3, 4, 5}, {5, 1, 33}}

// stridedShapes get the strided-layout cases.
var stridedShapes = [][]int{{3, 5}, {2, 3, 7}, {2, 3, 4, 33}}

// largeShape is the elementwise ops' large case: big enough to run the
// backends' parallel and multi-block paths, small enough for the suite to
// stay fast (seconds on two cores under -race). Each op has one large case
// (two for copy, RoPE and embedding).
var largeShape = []int{67, 4099}

// largeCaseDType is the dtype of each op's large case; they rotate so that
// every dtype gets some.
var largeCaseDType = map[string]tensor.DType{
	op.NameAdd: tensor.F16, op.NameMul: tensor.BF16, "silu": tensor.F32, "gelu-erf": tensor.F16,
	"gelu-tanh": tensor.BF16, op.NameSoftmax: tensor.F16, op.NameRMSNorm: tensor.BF16,
	op.NameLayerNorm: tensor.F32, op.NameRoPE: tensor.F16, op.NameArgmax: tensor.F32,
}

// caseSpec is a case not yet built: its name, and a function that generates
// its data from a random source seeded by the name (see seedOf), so that a
// case's data does not depend on which other cases run, and only the case
// being run holds memory.
type caseSpec struct {
	name  string
	build func(rng *rand.Rand) *opCase
}

func allCases() []caseSpec {
	var cs []caseSpec
	for _, gen := range []func() []caseSpec{
		copyCases, binaryCases, unaryCases, softmaxCases, normCases, ropeCases, embeddingCases, argmaxCases,
		matmulCases,
	} {
		cs = append(cs, gen()...)
	}
	return cs
}

// seedOf derives a case's random seed from its name (FNV-1a).
func seedOf(name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return h
}

// generate builds the case's data.
func (s caseSpec) generate() *opCase {
	c := s.build(rand.New(rand.NewPCG(seedOf(s.name), 2026)))
	c.name = s.name
	return c
}

func shapeName(shape []int) string {
	s := ""
	for i, d := range shape {
		if i > 0 {
			s += "x"
		}
		s += fmt.Sprint(d)
	}
	return s
}

// --- copy ---

func copyCases() []caseSpec {
	var cs []caseSpec
	add := func(srcDT, dstDT tensor.DType, srcShape, dstShape []int, srcL, dstL layout, inPlace bool) {
		name := fmt.Sprintf("copy/%v-%v/%s-%s/%s-%s", srcDT, dstDT, shapeName(srcShape), shapeName(dstShape), srcL, dstL)
		if inPlace {
			name += "/in-place"
		}
		cs = append(cs, caseSpec{name, func(rng *rand.Rand) *opCase {
			gen := conversionValues(rng)
			if srcDT == tensor.I32 {
				gen = func() float64 { return float64(int32(rng.Uint32())) }
			}
			src := newFloatInput(rng, srcDT, srcShape, srcL, gen)
			c := &opCase{
				op:     op.NameCopy,
				inputs: []*hostTensor{src},
				run: func(b backend.Backend, dst tensor.Tensor, in []tensor.Tensor) error {
					return b.Copy(dst, in[0])
				},
				want: broadcastValues(src.values(), srcShape, dstShape),
			}
			if !inPlace {
				c.dst = newOutput(rng, dstDT, dstShape, dstL)
			}
			return c
		}})
	}
	pairs := [][2]tensor.DType{{tensor.I32, tensor.I32}}
	for _, s := range floatTypes {
		for _, d := range floatTypes {
			pairs = append(pairs, [2]tensor.DType{s, d})
		}
	}
	for _, p := range pairs {
		for _, shape := range elemShapes {
			add(p[0], p[1], shape, shape, contiguous, contiguous, false)
		}
		for _, shape := range stridedShapes {
			add(p[0], p[1], shape, shape, transposed, contiguous, false)
			add(p[0], p[1], shape, shape, padded, transposed, false)
			add(p[0], p[1], shape, shape, expanded, padded, false)
		}
		// Broadcasting by rank: a row to every row, a column to every column.
		add(p[0], p[1], []int{33}, []int{5, 33}, contiguous, contiguous, false)
		add(p[0], p[1], []int{3, 1, 7}, []int{2, 3, 4, 7}, padded, contiguous, false)
		if p[0] == p[1] {
			add(p[0], p[1], []int{3, 5}, []int{3, 5}, padded, padded, true)
		}
	}
	add(tensor.F32, tensor.F16, largeShape, largeShape, contiguous, contiguous, false)
	add(tensor.BF16, tensor.F32, largeShape, largeShape, transposed, contiguous, false)
	return cs
}

// --- add, mul ---

func binaryCases() []caseSpec {
	var cs []caseSpec
	for _, opName := range []string{op.NameAdd, op.NameMul} {
		for _, dt := range floatTypes {
			add := func(outShape, aShape, bShape []int, aL, bL, dstL layout, inPlace bool) {
				name := fmt.Sprintf("%s/%v/%s/a%s-%s/b%s-%s/dst-%s", opName, dt, shapeName(outShape),
					shapeName(aShape), aL, shapeName(bShape), bL, dstL)
				if inPlace {
					name += "/in-place"
				}
				cs = append(cs, caseSpec{name, func(rng *rand.Rand) *opCase {
					a := newFloatInput(rng, dt, aShape, aL, wideRange(rng))
					bIn := newFloatInput(rng, dt, bShape, bL, wideRange(rng))
					av := broadcastValues(a.values(), aShape, outShape)
					bv := broadcastValues(bIn.values(), bShape, outShape)
					c := &opCase{op: opName, inputs: []*hostTensor{a, bIn}}
					if opName == op.NameAdd {
						c.want = refBinary(av, bv, func(x, y float64) float64 { return x + y })
						c.run = func(b backend.Backend, dst tensor.Tensor, in []tensor.Tensor) error { return b.Add(dst, in[0], in[1]) }
					} else {
						c.want = refBinary(av, bv, func(x, y float64) float64 { return x * y })
						c.run = func(b backend.Backend, dst tensor.Tensor, in []tensor.Tensor) error { return b.Mul(dst, in[0], in[1]) }
					}
					if !inPlace {
						c.dst = newOutput(rng, dt, outShape, dstL)
					}
					return c
				}})
			}
			for _, shape := range elemShapes {
				add(shape, shape, shape, contiguous, contiguous, contiguous, false)
			}
			for _, shape := range stridedShapes {
				r := len(shape)
				inner := shape[r-1:]
				column := append(append([]int(nil), shape[:r-1]...), 1)
				add(shape, shape, inner, contiguous, contiguous, contiguous, false)       // b: one row for all rows
				add(shape, column, shape, padded, contiguous, contiguous, false)          // a: one value per row
				add(shape, column, inner, contiguous, padded, transposed, false)          // both broadcast
				add(shape, shape, shape, transposed, expanded, padded, false)             // stride-0 view
				add(shape, shape, shape, padded, transposed, transposed, false)           // all strided
				add(shape, shape, inner, padded, contiguous, contiguous, true)            // in place
				add(shape, shape[r-2:], shape, contiguous, transposed, contiguous, false) // a: trailing matrix
			}
			if dt == largeCaseDType[opName] {
				add(largeShape, largeShape, largeShape[1:], transposed, contiguous, contiguous, false)
			}
		}
	}
	return cs
}

// --- silu, gelu ---

func unaryCases() []caseSpec {
	type unary struct {
		op, label string
		ref       func(float64) float64
		run       func(b backend.Backend, dst, x tensor.Tensor) error
	}
	unaries := []unary{
		{op.NameSiLU, "silu", refSiLU, func(b backend.Backend, dst, x tensor.Tensor) error { return b.SiLU(dst, x) }},
		{op.NameGELU, "gelu-erf", refGELUErf, func(b backend.Backend, dst, x tensor.Tensor) error {
			return b.GELU(dst, x, op.GELUOptions{Approx: op.GELUErf})
		}},
		{op.NameGELU, "gelu-tanh", refGELUTanh, func(b backend.Backend, dst, x tensor.Tensor) error {
			return b.GELU(dst, x, op.GELUOptions{Approx: op.GELUTanh})
		}},
	}
	var cs []caseSpec
	for _, u := range unaries {
		for _, dt := range floatTypes {
			add := func(shape []int, xL, dstL layout, inPlace bool) {
				name := fmt.Sprintf("%s/%v/%s/x-%s/dst-%s", u.label, dt, shapeName(shape), xL, dstL)
				if inPlace {
					name += "/in-place"
				}
				cs = append(cs, caseSpec{name, func(rng *rand.Rand) *opCase {
					x := newFloatInput(rng, dt, shape, xL, uniform(rng, -12, 12))
					c := &opCase{
						op:     u.op,
						inputs: []*hostTensor{x},
						run:    func(b backend.Backend, dst tensor.Tensor, in []tensor.Tensor) error { return u.run(b, dst, in[0]) },
						want:   refMap(x.values(), u.ref),
					}
					if !inPlace {
						c.dst = newOutput(rng, dt, shape, dstL)
					}
					return c
				}})
			}
			for _, shape := range elemShapes {
				add(shape, contiguous, contiguous, false)
			}
			for _, shape := range stridedShapes {
				add(shape, transposed, contiguous, false)
				add(shape, padded, transposed, false)
				add(shape, permuted, padded, false)
				add(shape, padded, padded, true)
			}
			if dt == largeCaseDType[u.label] {
				add(largeShape, contiguous, contiguous, false)
			}
		}
	}
	return cs
}

// --- softmax ---

// valueKind selects a softmax case's input values.
type valueKind int

const (
	large   valueKind = iota // largeMagnitudes
	wide                     // wideRange
	special                  // specialSoftmaxRows
)

// specialSoftmaxRows generates, in row-major order over rows of n: a row of
// −inf; a row of ordinary values with a NaN in column 3; a row with −inf in
// every other column; then ordinary rows.
func specialSoftmaxRows(rng *rand.Rand, n int) func() float64 {
	ordinary := largeMagnitudes(rng)
	k := 0
	return func() float64 {
		row, col := k/n, k%n
		k++
		switch {
		case row == 0:
			return math.Inf(-1)
		case row == 1 && col == 3:
			return math.NaN()
		case row == 2 && col%2 == 1:
			return math.Inf(-1)
		}
		return ordinary()
	}
}

// largeMagnitudes are softmax inputs for which exp would overflow float32
// without subtracting the row maximum.
func largeMagnitudes(rng *rand.Rand) func() float64 { return uniform(rng, -30, 30) }

func softmaxCases() []caseSpec {
	var cs []caseSpec
	add := func(dt tensor.DType, shape []int, xL, dstL layout, inPlace bool, opts op.SoftmaxOptions, kind valueKind) {
		name := fmt.Sprintf("softmax/%v/%s/x-%s/dst-%s/scale%g-causal%v-offset%d", dt, shapeName(shape), xL, dstL,
			opts.Scale, opts.Causal, opts.PositionOffset)
		values := largeMagnitudes
		switch kind {
		case wide:
			values = wideRange
			name += "/wide-range"
		case special:
			values = func(rng *rand.Rand) func() float64 { return specialSoftmaxRows(rng, shape[len(shape)-1]) }
			name += "/inf-and-nan-rows"
		}
		if inPlace {
			name += "/in-place"
		}
		cs = append(cs, caseSpec{name, func(rng *rand.Rand) *opCase {
			x := newFloatInput(rng, dt, shape, xL, values(rng))
			c := &opCase{
				op:     op.NameSoftmax,
				inputs: []*hostTensor{x},
				run: func(b backend.Backend, dst tensor.Tensor, in []tensor.Tensor) error {
					return b.Softmax(dst, in[0], opts)
				},
				want: refSoftmax(x.values(), shape, opts),
			}
			if !inPlace {
				c.dst = newOutput(rng, dt, shape, dstL)
			}
			return c
		}})
	}
	for _, dt := range floatTypes {
		// Rows of −inf and NaN: an unmasked all −inf row and a row holding a
		// NaN give NaN rows (as the reference computes them); −inf entries
		// in an ordinary row give zeros there.
		add(dt, []int{4, 9}, contiguous, contiguous, false, op.SoftmaxOptions{}, special)
		add(dt, []int{4, 9}, contiguous, contiguous, false, op.SoftmaxOptions{Causal: true, PositionOffset: 2}, special)
		for _, n := range rowSizes {
			rows := 3
			add(dt, []int{rows, n}, contiguous, contiguous, false, op.SoftmaxOptions{}, large)
			add(dt, []int{rows, n}, padded, contiguous, false, op.SoftmaxOptions{Scale: 0.125}, large)
			// Causal, as in prefill: the last rows' positions end at n.
			add(dt, []int{rows, n}, contiguous, padded, false, op.SoftmaxOptions{Scale: 2.5, Causal: true, PositionOffset: n - rows}, large)
			// A negative offset: rows 0 and 1 fully masked (→ zeros).
			add(dt, []int{rows, n}, contiguous, contiguous, false, op.SoftmaxOptions{Causal: true, PositionOffset: -2}, large)
		}
		add(dt, []int{7}, contiguous, contiguous, false, op.SoftmaxOptions{}, large)
		add(dt, []int{7}, contiguous, contiguous, false, op.SoftmaxOptions{Causal: true, PositionOffset: 3}, large)
		add(dt, []int{2, 3, 5, 33}, permuted, padded, false, op.SoftmaxOptions{Causal: true, PositionOffset: 1}, large)
		add(dt, []int{2, 3, 5, 33}, padded, contiguous, true, op.SoftmaxOptions{Scale: 0.3}, large)
		add(dt, []int{4, 9}, contiguous, contiguous, false, op.SoftmaxOptions{Causal: true, PositionOffset: -4}, large) // all masked
		add(dt, []int{4, 9}, contiguous, contiguous, false, op.SoftmaxOptions{Causal: true, PositionOffset: 1 << 40}, large)
		add(dt, []int{3, 257}, contiguous, contiguous, false, op.SoftmaxOptions{}, wide) // magnitudes up to 2^21
		if dt == largeCaseDType[op.NameSoftmax] {
			add(dt, []int{64, 4097}, contiguous, contiguous, false, op.SoftmaxOptions{Scale: 0.088, Causal: true, PositionOffset: 4033}, large)
		}
	}
	return cs
}

// --- rmsnorm, layernorm ---

func normCases() []caseSpec {
	var cs []caseSpec
	add := func(layerNorm bool, dt tensor.DType, shape []int, xL, dstL layout, inPlace, withWeight, withBias bool, eps float32) {
		opName := op.NameRMSNorm
		if layerNorm {
			opName = op.NameLayerNorm
		}
		name := fmt.Sprintf("%s/%v/%s/x-%s/dst-%s/weight%v-bias%v-eps%g", opName, dt, shapeName(shape), xL, dstL,
			withWeight, withBias, eps)
		if inPlace {
			name += "/in-place"
		}
		cs = append(cs, caseSpec{name, func(rng *rand.Rand) *opCase {
			n := shape[len(shape)-1]
			gen := uniform(rng, -4, 4)
			if layerNorm {
				gen = uniform(rng, 1, 5) // a mean far from 0 exercises x − mean
			}
			x := newFloatInput(rng, dt, shape, xL, gen)
			var weight, bias *hostTensor
			var wv, bv []float64
			if withWeight {
				weight = newFloatInput(rng, tensor.F32, []int{n}, contiguous, uniform(rng, -2, 2))
				wv = weight.values()
			}
			if withBias {
				bias = newFloatInput(rng, tensor.F32, []int{n}, padded, uniform(rng, -1, 1))
				bv = bias.values()
			}
			opts := op.NormOptions{Eps: eps}
			c := &opCase{op: opName, inputs: []*hostTensor{x, weight, bias}}
			if layerNorm {
				c.want = refLayerNorm(x.values(), n, wv, bv, opts)
				c.run = func(b backend.Backend, dst tensor.Tensor, in []tensor.Tensor) error {
					return b.LayerNorm(dst, in[0], in[1], in[2], opts)
				}
			} else {
				c.want = refRMSNorm(x.values(), n, wv, opts)
				c.run = func(b backend.Backend, dst tensor.Tensor, in []tensor.Tensor) error {
					return b.RMSNorm(dst, in[0], in[1], opts)
				}
			}
			if !inPlace {
				c.dst = newOutput(rng, dt, shape, dstL)
			}
			return c
		}})
	}
	for _, layerNorm := range []bool{false, true} {
		for _, dt := range floatTypes {
			for i, n := range rowSizes {
				add(layerNorm, dt, []int{3, n}, contiguous, contiguous, false, true, layerNorm, 0)
				add(layerNorm, dt, []int{3, n}, padded, padded, false, i%2 == 0, layerNorm && i%2 == 1, 1e-3)
			}
			add(layerNorm, dt, []int{33}, contiguous, contiguous, false, false, false, 0)
			add(layerNorm, dt, []int{2, 3, 5, 33}, permuted, contiguous, false, true, true, 0)
			add(layerNorm, dt, []int{2, 3, 5, 33}, padded, padded, true, true, false, 1e-6)
			opName := op.NameRMSNorm
			if layerNorm {
				opName = op.NameLayerNorm
			}
			if dt == largeCaseDType[opName] {
				add(layerNorm, dt, []int{64, 4097}, contiguous, contiguous, false, true, layerNorm, 0)
			}
		}
	}
	return cs
}

// --- rope ---

// ropeConfig is one RoPE case's shape, options and layouts.
type ropeConfig struct {
	shape   []int // [nTokens, nHeads, headDim] or [batch, nTokens, nHeads, headDim]
	opts    op.RoPEOptions
	factors bool // pass FreqFactors (random, in [0.5, 8))
	maxPos  int  // positions are drawn from [0, maxPos)
	xL      layout
	posL    layout
	dstL    layout
	inPlace bool
}

func ropeCases() []caseSpec {
	var cs []caseSpec
	add := func(dt tensor.DType, cfg ropeConfig) {
		opts := cfg.opts
		name := fmt.Sprintf("rope/%v/%s/%v-ndims%d-base%g-scale%g-offset%d-factors%v-maxpos%d/x-%s/pos-%s/dst-%s",
			dt, shapeName(cfg.shape), opts.Style, opts.NDims, opts.FreqBase, opts.FreqScale, opts.PositionOffset,
			cfg.factors, cfg.maxPos, cfg.xL, cfg.posL, cfg.dstL)
		if cfg.inPlace {
			name += "/in-place"
		}
		cs = append(cs, caseSpec{name, func(rng *rand.Rand) *opCase {
			shape := cfg.shape
			r := len(shape)
			x := newFloatInput(rng, dt, shape, cfg.xL, uniform(rng, -2, 2))
			pos := newFloatInput(rng, tensor.I32, shape[:r-2], cfg.posL, func() float64 { return float64(rng.IntN(cfg.maxPos)) })
			inputs := []*hostTensor{x, pos}
			var factors []float64
			if cfg.factors {
				nDims := opts.NDims
				if nDims == 0 {
					nDims = shape[r-1]
				}
				ff := newFloatInput(rng, tensor.F32, []int{nDims / 2}, contiguous, uniform(rng, 0.5, 8))
				inputs = append(inputs, ff)
				factors = ff.values()
			}
			c := &opCase{
				op:     op.NameRoPE,
				inputs: inputs,
				run: func(b backend.Backend, dst tensor.Tensor, in []tensor.Tensor) error {
					o := opts
					if len(in) > 2 {
						o.FreqFactors = in[2]
					}
					return b.RoPE(dst, in[0], in[1], o)
				},
				want: refRoPE(x.values(), shape, pos.values(), opts, factors),
			}
			if !cfg.inPlace {
				c.dst = newOutput(rng, dt, shape, cfg.dstL)
			}
			return c
		}})
	}
	for _, dt := range floatTypes {
		for _, style := range []op.RoPEStyle{op.RoPENormal, op.RoPENeoX} {
			o := op.RoPEOptions{Style: style}
			with := func(f func(*op.RoPEOptions)) op.RoPEOptions { c := o; f(&c); return c }
			for _, cfg := range []ropeConfig{
				{shape: []int{1, 1, 2}, opts: o, maxPos: 4096, xL: contiguous, posL: contiguous, dstL: contiguous},
				{shape: []int{3, 2, 8}, opts: o, maxPos: 4096, xL: padded, posL: transposed, dstL: contiguous},
				{shape: []int{5, 3, 64}, opts: o, maxPos: 4096, xL: permuted, posL: contiguous, dstL: padded},
				{shape: []int{2, 4, 3, 128}, opts: o, maxPos: 4096, xL: contiguous, posL: padded, dstL: contiguous},
				{shape: []int{3, 2, 10}, opts: with(func(o *op.RoPEOptions) { o.NDims = 6 }), maxPos: 100, xL: contiguous, posL: contiguous, dstL: padded},
				{shape: []int{7, 1, 66}, opts: with(func(o *op.RoPEOptions) { o.NDims = 64; o.PositionOffset = 17 }), maxPos: 4096, xL: padded, posL: contiguous, dstL: contiguous},
				{shape: []int{4, 2, 32}, opts: with(func(o *op.RoPEOptions) { o.FreqBase = 500000; o.FreqScale = 0.25 }), maxPos: 1 << 16, xL: contiguous, posL: contiguous, dstL: contiguous},
				{shape: []int{4, 2, 32}, opts: o, factors: true, maxPos: 1 << 14, xL: contiguous, posL: contiguous, dstL: permuted},
				{shape: []int{3, 2, 16}, opts: with(func(o *op.RoPEOptions) { o.NDims = 8 }), factors: true, maxPos: 4096, xL: contiguous, posL: contiguous, dstL: contiguous},
				// Large positions (up to 2^24), shifted down by a negative offset.
				{shape: []int{4, 3, 16}, opts: with(func(o *op.RoPEOptions) { o.PositionOffset = -1000 }), maxPos: 1 << 24, xL: contiguous, posL: contiguous, dstL: contiguous},
				{shape: []int{2, 3, 2, 64}, opts: o, maxPos: 4096, xL: padded, posL: transposed, dstL: padded, inPlace: true},
			} {
				add(dt, cfg)
			}
			if dt == largeCaseDType[op.NameRoPE] {
				add(dt, ropeConfig{shape: []int{64, 32, 128}, opts: o, maxPos: 8192, xL: contiguous, posL: contiguous, dstL: contiguous})
			}
		}
	}
	return cs
}

// --- embedding ---

// newTable makes a [vocab, dim] table of dt (values uniform in [-2, 2],
// quantized with tensor.Quantize for the block formats) laid out as l, with
// decoys (NaN scales, NaN floats) outside the view.
func newTable(rng *rand.Rand, dt tensor.DType, vocab, dim int, l layout) *hostTensor {
	shape := []int{vocab, dim}
	if !dt.IsQuantized() {
		return newFloatInput(rng, dt, shape, l, uniform(rng, -2, 2))
	}
	strides, offset, n := place(rng, dt, shape, l)
	h := &hostTensor{dt: dt, shape: shape, strides: strides, offset: offset, base: poison(dt, n)}
	gen := uniform(rng, -2, 2)
	be, bb := dt.BlockElems(), dt.BlockBytes()
	for row := range vocab {
		vals := make([]float32, dim)
		for i := range vals {
			vals[i] = float32(gen())
		}
		q, err := tensor.Quantize(dt, vals)
		if err != nil {
			panic(err) // test bug: the values are in range
		}
		start := (offset + row*strides[0]) / be * bb
		copy(h.base[start:], q)
	}
	return h
}

func embeddingCases() []caseSpec {
	var cs []caseSpec
	add := func(tableDT, dstDT tensor.DType, vocab, dim int, idShape []int, tableL, idL, dstL layout) {
		name := fmt.Sprintf("embedding/%v-%v/vocab%d-dim%d/ids%s/table-%s/ids-%s/dst-%s", tableDT, dstDT, vocab, dim,
			shapeName(idShape), tableL, idL, dstL)
		cs = append(cs, caseSpec{name, func(rng *rand.Rand) *opCase {
			table := newTable(rng, tableDT, vocab, dim, tableL)
			k := 0
			ids := newFloatInput(rng, tensor.I32, idShape, idL, func() float64 {
				k++
				switch k {
				case 1:
					return float64(vocab - 1) // the edges of the vocabulary
				case 2:
					return 0
				}
				return float64(rng.IntN(vocab))
			})
			outShape := append(append([]int(nil), idShape...), dim)
			return &opCase{
				op:     op.NameEmbedding,
				inputs: []*hostTensor{table, ids},
				dst:    newOutput(rng, dstDT, outShape, dstL),
				run: func(b backend.Backend, dst tensor.Tensor, in []tensor.Tensor) error {
					return b.Embedding(dst, in[0], in[1])
				},
				want: refEmbedding(table, ids.values()),
			}
		}})
	}
	for _, tableDT := range op.EmbeddingTableTypes {
		dim := 33
		switch tableDT.BlockElems() {
		case 32:
			dim = 64
		case 256:
			dim = 512
		}
		for _, dstDT := range floatTypes {
			add(tableDT, dstDT, 37, dim, []int{1}, contiguous, contiguous, contiguous)
			add(tableDT, dstDT, 37, dim, []int{7}, padded, transposed, contiguous)
			add(tableDT, dstDT, 37, dim, []int{3, 5}, contiguous, transposed, padded)
			add(tableDT, dstDT, 37, dim, []int{2, 3, 4}, padded, permuted, contiguous)
		}
	}
	// Large: 67 rows of 4096.
	add(tensor.Q4_K, tensor.F16, 64, 4096, []int{67}, contiguous, contiguous, contiguous)
	add(tensor.F16, tensor.F32, 64, 4096, []int{67}, contiguous, contiguous, contiguous)
	return cs
}

// --- argmax ---

func argmaxCases() []caseSpec {
	var cs []caseSpec
	add := func(dt tensor.DType, shape []int, xL, dstL layout) {
		name := fmt.Sprintf("argmax/%v/%s/x-%s/dst-%s", dt, shapeName(shape), xL, dstL)
		cs = append(cs, caseSpec{name, func(rng *rand.Rand) *opCase {
			nan, inf := math.NaN(), math.Inf(1)
			n := shape[len(shape)-1]
			plain := uniform(rng, -100, 100)
			ties := map[int]bool{}
			for range 3 {
				ties[rng.IntN(n)] = true
			}
			// Rows by row number mod 5: ties at the maximum; NaNs and a tie;
			// all NaN; −Inf and NaN around one finite value; plain values.
			k := 0
			x := newFloatInput(rng, dt, shape, xL, func() float64 {
				row, col := k/n, k%n
				k++
				switch row % 5 {
				case 0:
					if ties[col] {
						return 150
					}
				case 1:
					if col%3 == 0 {
						return nan
					}
					if ties[col] {
						return 150
					}
				case 2:
					return nan
				case 3:
					switch {
					case col == n/2:
						return -7
					case col%2 == 0:
						return -inf
					default:
						return nan
					}
				}
				return plain()
			})
			return &opCase{
				op:     op.NameArgmax,
				inputs: []*hostTensor{x},
				dst:    newOutput(rng, tensor.I32, op.ArgmaxShape(shapeTensor(shape)), dstL),
				run: func(b backend.Backend, dst tensor.Tensor, in []tensor.Tensor) error {
					return b.Argmax(dst, in[0])
				},
				want: refArgmax(x.values(), n),
			}
		}})
	}
	for _, dt := range floatTypes {
		for _, n := range rowSizes {
			add(dt, []int{5, n}, contiguous, contiguous)
		}
		add(dt, []int{257}, contiguous, contiguous)
		add(dt, []int{5, 33}, padded, transposed)
		add(dt, []int{2, 5, 9}, permuted, transposed)
		add(dt, []int{2, 3, 5, 7}, padded, padded)
		if dt == largeCaseDType[op.NameArgmax] {
			add(dt, []int{16, 32003}, contiguous, contiguous) // large: a vocabulary's logits
		}
	}
	return cs
}

// shapeTensor is a tensor of shape over a buffer of no backend, for the shape
// helpers of runtime/op that take a Tensor.
func shapeTensor(shape []int) tensor.Tensor {
	t, err := tensor.New(fakeBuffer(numElems(shape)*4), tensor.F32, shape...)
	if err != nil {
		panic(err) // test bug
	}
	return t
}

// fakeBuffer is a tensor.Buffer of a given size that belongs to no backend.
type fakeBuffer int64

func (f fakeBuffer) SizeBytes() int64 { return int64(f) }
