package conformance

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// --- attention ---
//
// TestAttention runs each case below on every backend and checks:
//   - every backend against the float64 reference by the rule
//     (AttentionErrorBound): its largest error may be at most twice that
//     of a naive implementation at the case's precision, plus one ulp of
//     the output at the largest value; the log-sum-exp likewise;
//   - every backend but the CPU also against the CPU, element by element
//     (AttentionTolerance, AttentionLSETolerance);
//   - that nothing outside dst's and LSE's views was written.
//
// The reference and the naive implementation are written here, from the
// definitions in op.AttentionKV and op.AttentionOptions, sharing no code with
// a backend: per query row and head, the visible keys j (positions
// p = kvLen − qLen + i; causal hides j > p; Window hides j ≤ p − Window),
// scores s = scale·q·k + mask, and O = Σ exp(s − max)·v / Σ exp(s − max).
//
// Inputs hold decoys (NaN floats, out-of-range I32) wherever an op must not
// read: the rows of K and V after the last sequence, the slots of a paged
// cache past each sequence's length and its spare pages, the block-table
// entries past each sequence's pages, the mask's columns past each
// sequence's keys, and the gaps of padded layouts. A backend that reads one
// produces NaN (or reports a bad page), and fails.

// attnSeqLen is one sequence of a case: its queries and keys.
type attnSeqLen struct{ q, kv int }

// sq makes sequences from (qLen, kvLen) pairs.
func sq(pairs ...int) []attnSeqLen {
	var out []attnSeqLen
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, attnSeqLen{pairs[i], pairs[i+1]})
	}
	return out
}

// attnValues selects a case's input values.
type attnValues int

const (
	// attnUniform: q, k and v uniform in [−1, 1).
	attnUniform attnValues = iota
	// attnPeaky: q and k uniform in [−4, 4): scores spread over tens of
	// units, so the softmax is dominated by a few keys.
	attnPeaky
	// attnRising: q's first element 2, k's first element rising from −4 to
	// 4 along the keys (the rest small noise): the scores rise along the
	// sequence, so the running maximum moves in every tile.
	attnRising
)

// attnMaskKind selects a case's additive mask.
type attnMaskKind int

const (
	attnNoMask attnMaskKind = iota
	// attnMaskRandom: uniform in [−2, 2), one entry in eight −Inf.
	attnMaskRandom
	// attnMaskFullRow: as attnMaskRandom, and one query row −Inf everywhere
	// (its output is zeros and its log-sum-exp −Inf).
	attnMaskFullRow
)

// attnConfig is one attention case.
type attnConfig struct {
	dt                        tensor.DType
	nHeads, nKVHeads, headDim int
	seqs                      []attnSeqLen
	causal                    bool
	window                    int
	mask                      attnMaskKind
	lse                       bool
	pageSize                  int    // 0: contiguous keys
	layout                    layout // contiguous or padded: q, dst, K, V, block table, mask, LSE
	values                    attnValues
	scale                     float32 // 0: the default 1/√headDim
	bounds                    bool    // MaxQueryLen and MaxKVLen given as the true maxima
	large                     bool    // too slow under the race detector
}

func (c attnConfig) name() string {
	var seqs []string
	for _, s := range c.seqs {
		seqs = append(seqs, fmt.Sprintf("q%dkv%d", s.q, s.kv))
	}
	flags := []string{"full"}
	if c.causal {
		flags = []string{"causal"}
	}
	if c.window > 0 {
		flags = append(flags, fmt.Sprintf("window%d", c.window))
	}
	switch c.mask {
	case attnMaskRandom:
		flags = append(flags, "mask")
	case attnMaskFullRow:
		flags = append(flags, "mask-fullrow")
	}
	if c.lse {
		flags = append(flags, "lse")
	}
	if c.pageSize > 0 {
		flags = append(flags, fmt.Sprintf("paged%d", c.pageSize))
	}
	if c.layout == padded {
		flags = append(flags, "padded")
	}
	switch c.values {
	case attnPeaky:
		flags = append(flags, "peaky")
	case attnRising:
		flags = append(flags, "rising")
	}
	if c.scale != 0 {
		flags = append(flags, fmt.Sprintf("scale%g", c.scale))
	}
	if c.bounds {
		flags = append(flags, "bounds")
	}
	return fmt.Sprintf("attention/%v/h%dkv%dd%d/%s/%s", c.dt, c.nHeads, c.nKVHeads, c.headDim,
		strings.Join(seqs, "+"), strings.Join(flags, "-"))
}

// attentionConfigs lists the cases: lengths of 1, odd and around the
// 64-key tile; every head dimension (1, 8 and 24 for the simple paths, 40
// to 256); GQA ratios 1, 4 and 8 and MQA; decode and chunked prefill
// (qLen < kvLen, causal); sliding windows; masks with −Inf entries and a
// fully masked row; varlen batches with empty sequences and with more
// queries than keys; cross-attention; paged caches with pages of 1, 5, 7 and
// 16 and shuffled block tables; padded layouts; spread and rising scores;
// F32, F16 and BF16; one 8k causal prefill.
func attentionConfigs() []attnConfig {
	var cfgs []attnConfig
	add := func(c attnConfig) {
		if c.layout == "" {
			c.layout = contiguous
		}
		cfgs = append(cfgs, c)
	}
	all := func(c attnConfig) {
		for _, dt := range floatTypes {
			c.dt = dt
			add(c)
		}
	}
	dts := func(i int) tensor.DType { return floatTypes[i%len(floatTypes)] }

	// Lengths.
	all(attnConfig{nHeads: 2, nKVHeads: 1, headDim: 64, seqs: sq(1, 1)})
	all(attnConfig{nHeads: 2, nKVHeads: 1, headDim: 64, seqs: sq(1, 1), causal: true, lse: true})
	all(attnConfig{nHeads: 4, nKVHeads: 4, headDim: 40, seqs: sq(7, 7), causal: true, lse: true})
	all(attnConfig{nHeads: 2, nKVHeads: 2, headDim: 64, seqs: sq(63, 63), causal: true, layout: padded})
	all(attnConfig{nHeads: 2, nKVHeads: 1, headDim: 80, seqs: sq(65, 65), causal: true, lse: true, pageSize: 16})
	add(attnConfig{dt: tensor.BF16, nHeads: 2, nKVHeads: 2, headDim: 96, seqs: sq(200, 200), causal: true})
	add(attnConfig{dt: tensor.F16, nHeads: 2, nKVHeads: 1, headDim: 128, seqs: sq(200, 200), lse: true})
	add(attnConfig{dt: tensor.F32, nHeads: 1, nKVHeads: 1, headDim: 64, seqs: sq(129, 129), layout: padded})

	// Head dimensions: a causal prefill, and a decode packed with a short
	// non-causal prefill over a paged cache.
	for i, d := range []int{1, 8, 24, 40, 64, 80, 96, 128, 160, 256} {
		add(attnConfig{dt: dts(i), nHeads: 4, nKVHeads: 2, headDim: d, seqs: sq(33, 33), causal: true, lse: true})
		add(attnConfig{dt: dts(i + 1), nHeads: 2, nKVHeads: 1, headDim: d, seqs: sq(1, 77, 17, 17), pageSize: 16, lse: true})
	}

	// GQA ratios 1, 4, 8 (MQA 4 and 8): a decode step over 200 keys and a
	// causal prefill.
	for i, hk := range [][2]int{{8, 8}, {8, 2}, {8, 1}, {16, 2}, {4, 1}} {
		add(attnConfig{dt: dts(i), nHeads: hk[0], nKVHeads: hk[1], headDim: 64, seqs: sq(1, 200), lse: true, pageSize: 16})
		add(attnConfig{dt: dts(i + 2), nHeads: hk[0], nKVHeads: hk[1], headDim: 64, seqs: sq(40, 40), causal: true})
	}

	// Decode batches: one query per sequence, key lengths 1, 63, 65, 300.
	all(attnConfig{nHeads: 8, nKVHeads: 2, headDim: 128, seqs: sq(1, 1, 1, 63, 1, 65, 1, 300), causal: true, lse: true,
		pageSize: 16, bounds: true})
	add(attnConfig{dt: tensor.BF16, nHeads: 8, nKVHeads: 1, headDim: 64, seqs: sq(1, 8192)})

	// Chunked prefill: fewer queries than keys, causal.
	add(attnConfig{dt: tensor.F16, nHeads: 4, nKVHeads: 2, headDim: 64, seqs: sq(65, 200), causal: true, lse: true, pageSize: 5})
	add(attnConfig{dt: tensor.BF16, nHeads: 4, nKVHeads: 1, headDim: 96, seqs: sq(7, 70, 30, 129), causal: true, layout: padded})
	add(attnConfig{dt: tensor.F32, nHeads: 2, nKVHeads: 2, headDim: 40, seqs: sq(3, 9), causal: true, pageSize: 1})

	// Sliding windows.
	add(attnConfig{dt: tensor.F16, nHeads: 2, nKVHeads: 1, headDim: 64, seqs: sq(100, 100), causal: true, window: 16, lse: true})
	add(attnConfig{dt: tensor.BF16, nHeads: 8, nKVHeads: 2, headDim: 128, seqs: sq(1, 300, 1, 10), causal: true, window: 64, pageSize: 16})
	add(attnConfig{dt: tensor.F32, nHeads: 2, nKVHeads: 2, headDim: 64, seqs: sq(40, 150), causal: true, window: 33, layout: padded})
	add(attnConfig{dt: tensor.F16, nHeads: 4, nKVHeads: 4, headDim: 32, seqs: sq(70, 70, 1, 64, 0, 5), causal: true, window: 1, lse: true})

	// Additive masks.
	all(attnConfig{nHeads: 2, nKVHeads: 2, headDim: 64, seqs: sq(20, 20), mask: attnMaskRandom, lse: true})
	add(attnConfig{dt: tensor.F16, nHeads: 4, nKVHeads: 2, headDim: 64, seqs: sq(33, 33, 1, 50, 12, 40), causal: true,
		mask: attnMaskFullRow, lse: true, pageSize: 16})
	add(attnConfig{dt: tensor.BF16, nHeads: 2, nKVHeads: 1, headDim: 40, seqs: sq(65, 65), causal: true, mask: attnMaskFullRow,
		layout: padded, lse: true})

	// Varlen batches: empty sequences (no queries, no keys), and more
	// queries than keys (the first six queries of the last see no key).
	varlen := sq(5, 5, 0, 0, 33, 33, 1, 64, 0, 9, 12, 40, 10, 4)
	all(attnConfig{nHeads: 4, nKVHeads: 2, headDim: 64, seqs: varlen, causal: true, lse: true})
	add(attnConfig{dt: tensor.F16, nHeads: 4, nKVHeads: 2, headDim: 64, seqs: varlen, causal: true, lse: true, pageSize: 16, layout: padded})
	add(attnConfig{dt: tensor.BF16, nHeads: 4, nKVHeads: 2, headDim: 64, seqs: varlen, lse: true, pageSize: 7})

	// Cross-attention (diffusion UNets): many queries, 77 keys, no mask.
	add(attnConfig{dt: tensor.F16, nHeads: 8, nKVHeads: 8, headDim: 40, seqs: sq(100, 77)})
	add(attnConfig{dt: tensor.BF16, nHeads: 4, nKVHeads: 4, headDim: 160, seqs: sq(64, 77, 16, 77), lse: true})

	// Values: spread scores, and scores rising along the keys.
	all(attnConfig{nHeads: 2, nKVHeads: 1, headDim: 64, seqs: sq(130, 130), causal: true, values: attnPeaky, lse: true})
	all(attnConfig{nHeads: 2, nKVHeads: 2, headDim: 64, seqs: sq(1, 300, 70, 70), causal: true, values: attnRising, lse: true, scale: 1})

	// An explicit scale and exact length bounds.
	add(attnConfig{dt: tensor.F16, nHeads: 4, nKVHeads: 2, headDim: 64, seqs: sq(9, 9, 30, 30), causal: true, scale: 0.3, bounds: true})

	// 8k causal prefill.
	add(attnConfig{dt: tensor.F16, nHeads: 1, nKVHeads: 1, headDim: 64, seqs: sq(8192, 8192), causal: true, lse: true, large: true})
	return cfgs
}

// attnCase is a case with its data: host tensors, options, and the results
// of the float64 reference and of the naive implementation.
type attnCase struct {
	cfg    attnConfig
	totalQ int
	// Inputs; kvStarts for contiguous keys, table and lens for a paged
	// cache, mask when the case has one.
	q, k, v, mask                 *hostTensor
	qStarts, kvStarts, table, lns *hostTensor
	// Outputs over poisoned buffers; lse when the case has one.
	dst, lse *hostTensor
	opts     op.AttentionOptions // without Mask and LSE
	// want, wantLSE: the float64 reference; naive, naiveLSE: the naive
	// implementation at the case's precision. Row-major over outShape
	// ([totalQ, nHeads, headDim]) and lseShape ([nHeads, totalQ]).
	want, wantLSE, naive, naiveLSE []float64
	outShape, lseShape             []int
	// maxAbsV is the largest |v|, maxScoreAbs a bound on the largest
	// |scale|·Σ|q·k| + |mask| over the visible keys (for the tolerance
	// against the CPU).
	maxAbsV, maxScoreAbs float64
}

// attnData is a case's logical inputs, as float64 values of the rounded
// elements.
type attnData struct {
	qv    []float64   // [totalQ, nHeads, headDim]
	kSeq  [][]float64 // per sequence: [kvLen, nKVHeads, headDim]
	vSeq  [][]float64
	maskv []float64 // [totalQ, nCols]; nil without a mask
	nCols int
}

// putFloat stores v at buffer element e of h (rounded to h's dtype) and
// returns the stored value, decoded back.
func putFloat(h *hostTensor, e int, v float64) float64 {
	switch h.dt {
	case tensor.F32:
		binary.LittleEndian.PutUint32(h.base[4*e:], math.Float32bits(float32(v)))
	case tensor.F16:
		binary.LittleEndian.PutUint16(h.base[2*e:], tensor.F32ToF16(float32(v)))
	case tensor.BF16:
		binary.LittleEndian.PutUint16(h.base[2*e:], tensor.F32ToBF16(float32(v)))
	default:
		panic(fmt.Sprintf("putFloat: %v", h.dt)) // test bug
	}
	return decodeElems(h.dt, h.base, []int{e})[0]
}

// elemOf is the buffer element index of view index idx of h.
func elemOf(h *hostTensor, idx ...int) int {
	e := h.offset
	for i, v := range idx {
		e += v * h.strides[i]
	}
	return e
}

// newI32Host makes an I32 tensor of shape laid out as l, decoys
// everywhere, then vals (row-major over shape) in the view.
func newI32Host(rng *rand.Rand, shape []int, l layout, vals []int32) *hostTensor {
	strides, offset, n := place(rng, tensor.I32, shape, l)
	h := &hostTensor{dt: tensor.I32, shape: shape, strides: strides, offset: offset, base: make([]byte, 4*n)}
	for i := range n {
		binary.LittleEndian.PutUint32(h.base[4*i:], decoyI32)
	}
	for i, e := range h.elemIndices() {
		binary.LittleEndian.PutUint32(h.base[4*e:], uint32(vals[i]))
	}
	return h
}

func newAttnCase(rng *rand.Rand, cfg attnConfig) *attnCase {
	dt, nH, nKV, d := cfg.dt, cfg.nHeads, cfg.nKVHeads, cfg.headDim
	batch := len(cfg.seqs)
	c := &attnCase{cfg: cfg}
	qStarts := []int32{0}
	maxQ, maxKV := 0, 0
	for _, s := range cfg.seqs {
		c.totalQ += s.q
		qStarts = append(qStarts, int32(c.totalQ))
		maxQ, maxKV = max(maxQ, s.q), max(maxKV, s.kv)
	}
	c.qStarts = newI32Host(rng, []int{batch + 1}, contiguous, qStarts)
	c.outShape = []int{c.totalQ, nH, d}
	c.lseShape = []int{nH, c.totalQ}

	unit := uniform(rng, -1, 1)
	qGen, kGen := unit, unit
	if cfg.values == attnPeaky {
		qGen, kGen = uniform(rng, -4, 4), uniform(rng, -4, 4)
	}
	var data attnData

	// Queries.
	c.q = newOutput(rng, dt, c.outShape, cfg.layout)
	data.qv = make([]float64, c.totalQ*nH*d)
	for r := range c.totalQ {
		for h := range nH {
			for t := range d {
				v := qGen()
				if cfg.values == attnRising && t == 0 {
					v = 2
				}
				data.qv[(r*nH+h)*d+t] = putFloat(c.q, elemOf(c.q, r, h, t), v)
			}
		}
	}

	// Keys and values, sequence by sequence, written into their storage
	// by place(b, j, g, t, v) below.
	keyVal := func(j, kvLen, t int) float64 {
		if cfg.values == attnRising {
			if t == 0 {
				return -4 + 8*(float64(j)+0.5)/float64(kvLen)
			}
			return 0.25 * unit()
		}
		return kGen()
	}
	var kAt, vAt func(b, j, g, t int) int // buffer elements of K and V
	if cfg.pageSize == 0 {
		totalKV := 1 // one decoy row after the last sequence
		kvStarts := []int32{0}
		for _, s := range cfg.seqs {
			totalKV += s.kv
			kvStarts = append(kvStarts, kvStarts[len(kvStarts)-1]+int32(s.kv))
		}
		c.kvStarts = newI32Host(rng, []int{batch + 1}, contiguous, kvStarts)
		c.k = newOutput(rng, dt, []int{totalKV, nKV, d}, cfg.layout)
		c.v = newOutput(rng, dt, []int{totalKV, nKV, d}, cfg.layout)
		kAt = func(b, j, g, t int) int { return elemOf(c.k, int(kvStarts[b])+j, g, t) }
		vAt = func(b, j, g, t int) int { return elemOf(c.v, int(kvStarts[b])+j, g, t) }
	} else {
		ps := cfg.pageSize
		pagesOf := make([]int, batch)
		nPages, maxPages := 2, 1 // two spare pages; one unused entry per table row
		for b, s := range cfg.seqs {
			pagesOf[b] = (s.kv + ps - 1) / ps
			nPages += pagesOf[b]
			maxPages = max(maxPages, pagesOf[b]+1)
		}
		perm := rng.Perm(nPages)
		table := make([]int32, batch*maxPages)
		next := 0
		for b := range batch {
			for i := range maxPages {
				if i < pagesOf[b] {
					table[b*maxPages+i] = int32(perm[next])
					next++
				} else {
					table[b*maxPages+i] = decoyI32
				}
			}
		}
		lens := make([]int32, batch)
		for b, s := range cfg.seqs {
			lens[b] = int32(s.kv)
		}
		c.table = newI32Host(rng, []int{batch, maxPages}, cfg.layout, table)
		c.lns = newI32Host(rng, []int{batch}, contiguous, lens)
		c.k = newOutput(rng, dt, []int{nPages, ps, nKV, d}, cfg.layout)
		c.v = newOutput(rng, dt, []int{nPages, ps, nKV, d}, cfg.layout)
		kAt = func(b, j, g, t int) int { return elemOf(c.k, int(table[b*maxPages+j/ps]), j%ps, g, t) }
		vAt = func(b, j, g, t int) int { return elemOf(c.v, int(table[b*maxPages+j/ps]), j%ps, g, t) }
	}
	for b, s := range cfg.seqs {
		ks := make([]float64, s.kv*nKV*d)
		vs := make([]float64, s.kv*nKV*d)
		for j := range s.kv {
			for g := range nKV {
				for t := range d {
					i := (j*nKV+g)*d + t
					ks[i] = putFloat(c.k, kAt(b, j, g, t), keyVal(j, s.kv, t))
					vs[i] = putFloat(c.v, vAt(b, j, g, t), unit())
					c.maxAbsV = math.Max(c.maxAbsV, math.Abs(vs[i]))
				}
			}
		}
		data.kSeq = append(data.kSeq, ks)
		data.vSeq = append(data.vSeq, vs)
	}

	// The mask: two decoy columns after the longest sequence's keys, and
	// decoys after each row's own keys.
	if cfg.mask != attnNoMask {
		data.nCols = maxKV + 2
		c.mask = newOutput(rng, tensor.F32, []int{c.totalQ, data.nCols}, cfg.layout)
		data.maskv = make([]float64, c.totalQ*data.nCols)
		gen := uniform(rng, -2, 2)
		fullRow := -1
		if cfg.mask == attnMaskFullRow {
			fullRow = c.totalQ / 2
		}
		r := 0
		for _, s := range cfg.seqs {
			for range s.q {
				for j := range s.kv {
					v := gen()
					if rng.IntN(8) == 0 || r == fullRow {
						v = math.Inf(-1)
					}
					data.maskv[r*data.nCols+j] = putFloat(c.mask, elemOf(c.mask, r, j), v)
				}
				r++
			}
		}
	}

	c.dst = newOutput(rng, dt, c.outShape, cfg.layout)
	if cfg.lse {
		c.lse = newOutput(rng, tensor.F32, c.lseShape, cfg.layout)
	}
	c.opts = op.AttentionOptions{Scale: cfg.scale, Causal: cfg.causal, Window: cfg.window}
	if cfg.bounds {
		c.opts.MaxQueryLen, c.opts.MaxKVLen = maxQ, maxKV
	}
	c.reference(data)
	return c
}

// attnVisible is the keys [lo, hi) that query i of a sequence of qLen
// queries and kvLen keys may see (before the mask), from the definitions in
// op.AttentionOptions.
func attnVisible(cfg attnConfig, qLen, kvLen, i int) (lo, hi int) {
	p := kvLen - qLen + i
	hi = kvLen
	if cfg.causal {
		hi = min(hi, p+1)
	}
	if cfg.window > 0 {
		lo = max(0, p-cfg.window+1)
	}
	return lo, hi
}

// reference computes, for every query row and head, the float64 reference
// and the naive implementation at the case's precision:
//
//   - reference: s = scale·Σₜ q·k + mask in float64 (scale is the float32
//     value the op uses), m = max s, O = Σ e^{s−m}·v / Σ e^{s−m} and
//     LSE = m + ln Σ e^{s−m};
//   - naive: the dot products in float32 in order of t, s = scale·dot + mask
//     in float32, e = exp(s − m) rounded to float32, ℓ = Σ e in float32 in
//     order of j; for F16 and BF16 each e rounded to that dtype before it
//     multiplies v (FlashAttention's P in the inputs' dtype on tensor cores;
//     ℓ keeps the float32 values, as FlashAttention's row sums do);
//     O = (Σ e·v in float32)/ℓ rounded to the output dtype;
//     LSE = m + ln ℓ in float32.
//
// A row that sees no key (or only −Inf) is zeros with LSE −Inf in both.
// Rows are spread over goroutines: the 8k case has 8k·4k visible pairs.
func (c *attnCase) reference(data attnData) {
	cfg := c.cfg
	nH, d := cfg.nHeads, cfg.headDim
	group := nH / cfg.nKVHeads
	scale32 := cfg.scale
	if scale32 == 0 {
		scale32 = float32(1 / math.Sqrt(float64(d)))
	}
	scale := float64(scale32)
	c.want = make([]float64, c.totalQ*nH*d)
	c.naive = make([]float64, c.totalQ*nH*d)
	c.wantLSE = make([]float64, nH*c.totalQ)
	c.naiveLSE = make([]float64, nH*c.totalQ)
	rowScoreAbs := make([]float64, c.totalQ)

	type rowRef struct{ b, i, r int }
	var rows []rowRef
	r := 0
	for b, s := range cfg.seqs {
		for i := range s.q {
			rows = append(rows, rowRef{b, i, r})
			r++
		}
	}
	roundP := func(x float32) float32 { return x }
	if cfg.dt != tensor.F32 {
		roundP = func(x float32) float32 { return float32(RoundTo(cfg.dt, float64(x))) }
	}
	// float32 copies of the inputs, made once, and the norms of the keys
	// for the tolerance's S: by Cauchy–Schwarz, Σₜ|q·k| ≤ ‖q‖·‖k‖, so
	// S ≤ |scale|·‖q‖·max ‖k‖ + |mask| (within a factor of about 4/3 of
	// Σ|q·k| for random vectors, and much cheaper).
	f32s := func(x []float64) []float32 {
		out := make([]float32, len(x))
		for i, v := range x {
			out[i] = float32(v)
		}
		return out
	}
	norm := func(x []float64) float64 {
		var s float64
		for _, v := range x {
			s += v * v
		}
		return math.Sqrt(s)
	}
	q32 := f32s(data.qv)
	var k32, v32 [][]float32
	maxKeyNorm := make([][]float64, len(cfg.seqs)) // [sequence][KV head]
	for b, s := range cfg.seqs {
		k32 = append(k32, f32s(data.kSeq[b]))
		v32 = append(v32, f32s(data.vSeq[b]))
		maxKeyNorm[b] = make([]float64, cfg.nKVHeads)
		for j := range s.kv {
			for g := range cfg.nKVHeads {
				ko := (j*cfg.nKVHeads + g) * d
				maxKeyNorm[b][g] = math.Max(maxKeyNorm[b][g], norm(data.kSeq[b][ko:ko+d]))
			}
		}
	}
	work := func(rr rowRef) {
		s := cfg.seqs[rr.b]
		lo, hi := attnVisible(cfg, s.q, s.kv, rr.i)
		n := max(0, hi-lo)
		s64 := make([]float64, n)
		s32 := make([]float32, n)
		acc64 := make([]float64, d)
		acc32 := make([]float32, d)
		nKV := cfg.nKVHeads
		for h := range nH {
			g := h / group
			qo := (rr.r*nH + h) * d
			q, qf := data.qv[qo:qo+d], q32[qo:qo+d]
			qkAbs := math.Abs(scale) * norm(q) * maxKeyNorm[rr.b][g]
			m64, m32 := math.Inf(-1), float32(math.Inf(-1))
			for jj := range n {
				j := lo + jj
				ko := (j*nKV + g) * d
				k, kf := data.kSeq[rr.b][ko:ko+d], k32[rr.b][ko:ko+d]
				k, kf, qf = k[:len(q)], kf[:len(q)], qf[:len(q)]
				var dot64 float64
				var dot32 float32
				for t, qt := range q {
					dot64 += qt * k[t]
					dot32 += float32(qf[t] * kf[t])
				}
				sc64 := scale * dot64
				sc32 := scale32 * dot32
				abs := qkAbs
				if data.maskv != nil {
					mv := data.maskv[rr.r*data.nCols+j]
					sc64 += mv
					sc32 += float32(mv)
					if !math.IsInf(mv, 0) {
						abs += math.Abs(mv)
					}
				}
				if !math.IsInf(sc64, -1) && abs > rowScoreAbs[rr.r] {
					rowScoreAbs[rr.r] = abs
				}
				s64[jj], s32[jj] = sc64, sc32
				if sc64 > m64 {
					m64 = sc64
				}
				if sc32 > m32 {
					m32 = sc32
				}
			}
			out64 := c.want[qo : qo+d]
			outNaive := c.naive[qo : qo+d]
			lseAt := h*c.totalQ + rr.r
			if math.IsInf(m64, -1) {
				clear(out64)
				c.wantLSE[lseAt] = math.Inf(-1)
			} else {
				clear(acc64)
				var l float64
				for jj := range n {
					e := math.Exp(s64[jj] - m64)
					l += e
					vo := ((lo+jj)*nKV + g) * d
					v := data.vSeq[rr.b][vo : vo+d]
					v = v[:len(acc64)]
					for t := range acc64 {
						acc64[t] += e * v[t]
					}
				}
				for t := range d {
					out64[t] = acc64[t] / l
				}
				c.wantLSE[lseAt] = m64 + math.Log(l)
			}
			if math.IsInf(float64(m32), -1) {
				clear(outNaive)
				c.naiveLSE[lseAt] = math.Inf(-1)
				continue
			}
			clear(acc32)
			var l32 float32
			for jj := range n {
				e := float32(math.Exp(float64(s32[jj] - m32)))
				l32 += e
				p := roundP(e)
				vo := ((lo+jj)*nKV + g) * d
				v := v32[rr.b][vo : vo+d]
				v = v[:len(acc32)]
				for t := range acc32 {
					acc32[t] += float32(p * v[t])
				}
			}
			for t := range d {
				outNaive[t] = RoundTo(cfg.dt, float64(acc32[t]/l32))
			}
			c.naiveLSE[lseAt] = float64(m32 + float32(math.Log(float64(l32))))
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(rows) {
					return
				}
				work(rows[i])
			}
		})
	}
	wg.Wait()
	for _, a := range rowScoreAbs {
		c.maxScoreAbs = math.Max(c.maxScoreAbs, a)
	}
}

// ruleReport is the outcome of the accuracy rule for one output.
type ruleReport struct {
	ok                   bool
	worst                int // flat index of the largest error; -1 if none
	got, want            float64
	err, naiveErr, bound float64
	nonFinite            string // a non-finite value where it should not be
}

// checkRule applies the accuracy rule (AttentionErrorBound) to got against
// the reference want, given the naive implementation's results. Infinite
// references (the log-sum-exp of rows that see no key) must be matched
// exactly, and a NaN anywhere fails.
func checkRule(got, want, naive []float64, dt tensor.DType) ruleReport {
	rep := ruleReport{ok: true, worst: -1}
	if len(got) != len(want) {
		return ruleReport{nonFinite: fmt.Sprintf("%d values, want %d", len(got), len(want))}
	}
	maxAbsRef := 0.0
	for i, w := range want {
		if math.IsInf(w, 0) {
			if got[i] != w && rep.nonFinite == "" {
				rep.nonFinite = fmt.Sprintf("element %d is %v, want %v", i, got[i], w)
			}
			continue
		}
		if math.IsNaN(got[i]) || math.IsInf(got[i], 0) {
			if rep.nonFinite == "" {
				rep.nonFinite = fmt.Sprintf("element %d is %v, want %v", i, got[i], w)
			}
			continue
		}
		maxAbsRef = math.Max(maxAbsRef, math.Abs(w))
		rep.naiveErr = math.Max(rep.naiveErr, math.Abs(naive[i]-w))
		if e := math.Abs(got[i] - w); rep.worst < 0 || e > rep.err {
			rep.worst, rep.err, rep.got, rep.want = i, e, got[i], w
		}
	}
	rep.bound = AttentionErrorBound(dt, rep.naiveErr, maxAbsRef)
	rep.ok = rep.nonFinite == "" && rep.err <= rep.bound
	return rep
}

func (r ruleReport) describe(shape []int) string {
	if r.nonFinite != "" {
		return "FAILED: " + r.nonFinite
	}
	verdict := "ok"
	if !r.ok {
		verdict = "FAILED"
	}
	s := fmt.Sprintf("%s: max error %.3g, bound %.3g (2 × naive %.3g + an ulp at the largest value)", verdict, r.err, r.bound, r.naiveErr)
	if r.worst >= 0 {
		s += fmt.Sprintf("; worst at %v: got %v, want %v", unflatten(r.worst, shape), r.got, r.want)
	}
	return s
}

// uploadHost allocates h's whole buffer on b, uploads it, and returns it
// with the view; allocated collects what to free.
func uploadHost(b backend.Backend, h *hostTensor, allocated *[]tensor.Tensor) (whole, view tensor.Tensor, err error) {
	if h == nil {
		return whole, view, nil
	}
	whole, err = b.Alloc(h.dt, h.baseElems())
	if err != nil {
		return whole, view, fmt.Errorf("alloc: %w", err)
	}
	*allocated = append(*allocated, whole)
	if err := b.Upload(whole, h.base); err != nil {
		return whole, view, fmt.Errorf("upload: %w", err)
	}
	view, err = tensor.NewView(whole.Buffer(), h.dt, h.offset, h.shape, h.strides)
	if err != nil {
		return whole, view, fmt.Errorf("view: %w", err)
	}
	return whole, view, nil
}

// downloadView downloads whole (h's buffer on b), checks that nothing
// outside h's view differs from what was uploaded, and returns the view's
// elements in row-major order.
func downloadView(b backend.Backend, whole tensor.Tensor, h *hostTensor) ([]float64, error) {
	raw := make([]byte, len(h.base))
	if err := b.Download(context.Background(), raw, whole); err != nil {
		return nil, fmt.Errorf("download: %w", err)
	}
	elems := h.elemIndices()
	inView := make([]bool, h.baseElems())
	for _, e := range elems {
		inView[e] = true
	}
	size := h.dt.BlockBytes()
	for e, ok := range inView {
		if !ok && !bytes.Equal(raw[e*size:(e+1)*size], h.base[e*size:(e+1)*size]) {
			return nil, fmt.Errorf("wrote buffer element %d, outside the view (shape %v, strides %v, offset %d)",
				e, h.shape, h.strides, h.offset)
		}
	}
	return decodeElems(h.dt, raw, elems), nil
}

// runAttentionCase runs a case on b and returns dst's and LSE's values
// (nil LSE when the case has none). Everything it allocates is freed.
func runAttentionCase(b backend.Backend, c *attnCase) (got, gotLSE []float64, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	var allocated []tensor.Tensor
	defer func() {
		for _, x := range allocated {
			if ferr := b.Free(x); ferr != nil && err == nil {
				err = fmt.Errorf("free: %w", ferr)
			}
		}
	}()
	hosts := []*hostTensor{c.q, c.qStarts, c.k, c.v, c.kvStarts, c.table, c.lns, c.mask, c.dst, c.lse}
	wholes := make([]tensor.Tensor, len(hosts))
	views := make([]tensor.Tensor, len(hosts))
	for i, h := range hosts {
		if wholes[i], views[i], err = uploadHost(b, h, &allocated); err != nil {
			return nil, nil, fmt.Errorf("input %d: %w", i, err)
		}
	}
	q, qs, k, v, kvStarts, table, lens, mask, dst, lse := views[0], views[1], views[2], views[3], views[4], views[5],
		views[6], views[7], views[8], views[9]
	opts := c.opts
	opts.Mask, opts.LSE = mask, lse
	kv := op.AttentionKV{K: k, V: v, Starts: kvStarts, BlockTable: table, Lens: lens}
	if err := b.Attention(dst, q, qs, kv, opts); err != nil {
		return nil, nil, fmt.Errorf("attention: %w", err)
	}
	if err := b.Sync(context.Background()); err != nil {
		return nil, nil, fmt.Errorf("sync: %w", err)
	}
	if got, err = downloadView(b, wholes[8], c.dst); err != nil {
		return nil, nil, fmt.Errorf("dst: %w", err)
	}
	if c.lse != nil {
		if gotLSE, err = downloadView(b, wholes[9], c.lse); err != nil {
			return nil, nil, fmt.Errorf("LSE: %w", err)
		}
	}
	return got, gotLSE, nil
}

// TestAttention runs every attention case on every backend (see the
// comment at the top of this file).
func TestAttention(t *testing.T) {
	backends := openAll(t)
	for _, cfg := range attentionConfigs() {
		name := cfg.name()
		t.Run(name, func(t *testing.T) {
			if cfg.large && raceEnabled {
				t.Skip("too slow under the race detector on two cores; it runs in the pass without -race")
			}
			if cfg.large && testing.Short() {
				t.Skip("-short")
			}
			c := newAttnCase(rand.New(rand.NewPCG(seedOf(name), 2026)), cfg)
			var cpuGot, cpuLSE []float64
			for i, nb := range backends {
				got, gotLSE, err := runAttentionCase(nb.b, c)
				if err != nil {
					if i > 0 && cfg.dt == tensor.F32 && errors.Is(err, op.ErrUnsupported) {
						t.Logf("%s: F32 attention is not supported (the issue asks F16 and BF16 of GPUs): %v", nb.name, err)
						continue
					}
					t.Errorf("%s: %v", nb.name, err)
					continue
				}
				rep := checkRule(got, c.want, c.naive, cfg.dt)
				if !rep.ok {
					t.Errorf("%s against the float64 reference: %s", nb.name, rep.describe(c.outShape))
				} else if testing.Verbose() {
					t.Logf("%s: error %.3g of bound %.3g (%.0f%%)", nb.name, rep.err, rep.bound, 100*rep.err/math.Max(rep.bound, 1e-300))
				}
				if c.lse != nil {
					if rep := checkRule(gotLSE, c.wantLSE, c.naiveLSE, tensor.F32); !rep.ok {
						t.Errorf("%s: LSE against the float64 reference: %s", nb.name, rep.describe(c.lseShape))
					}
				}
				if i == 0 {
					cpuGot, cpuLSE = got, gotLSE
					continue
				}
				if cpuGot == nil {
					continue // the CPU failed: nothing to compare with
				}
				tol := AttentionTolerance(cfg.dt, c.maxAbsV, c.maxScoreAbs)
				if r := Compare(got, cpuGot, cfg.dt, c.outShape, tol); !r.OK() {
					t.Errorf("%s against cpu: %v", nb.name, r)
				}
				if c.lse != nil {
					if r := Compare(gotLSE, cpuLSE, tensor.F32, c.lseShape, AttentionLSETolerance(c.maxScoreAbs)); !r.OK() {
						t.Errorf("%s: LSE against cpu: %v", nb.name, r)
					}
				}
			}
		})
	}
}

// TestAttentionCaseNamesAreUnique: a name identifies a case and seeds its
// data.
func TestAttentionCaseNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range attentionConfigs() {
		if seen[c.name()] {
			t.Errorf("two attention cases named %q", c.name())
		}
		seen[c.name()] = true
	}
}
