package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// The attention's assembly path (attention_amd64.s, under useDotAsm) and
// its Go loops are both checked here: each against a float64 reference
// computed in this file, and the invariance tests of attention_test.go
// (threads, neighbouring rows, hand-worked values) rerun under each.

// TestAttentionBothPathsInvariances reruns the attention tests whose
// expectations hold bit for bit (thread count, a row alone or among
// neighbours) or follow by hand, once per implementation.
func TestAttentionBothPathsInvariances(t *testing.T) {
	forEachDotImpl(t, func(t *testing.T) {
		t.Run("HandWorked", TestAttentionHandWorked)
		t.Run("AcrossTiles", TestAttentionAcrossTiles)
		t.Run("Layouts", TestAttentionLayouts)
		t.Run("Threads", TestAttentionDoesNotDependOnThreads)
		t.Run("Neighbours", TestAttentionRowDoesNotDependOnNeighbours)
		t.Run("AppendThenAttend", TestAppendThenAttend)
	})
}

// attnTestCase is a random attention call with its inputs kept as the
// float32 values the backend holds (already rounded to dt), for the
// reference.
type attnTestCase struct {
	dt                  tensor.DType
	nHeads, nKV, d      int
	pageSize            int // 0: contiguous keys
	qLens, kvLens       []int
	causal              bool
	window              int
	withMask            bool
	maskCols            int
	q, k, v, mask       []float32
	table               []int32 // paged: [batch, maxPages]
	maxPages, kvStarts0 int
}

// keyIndex is the row of the K/V tensor (as [rows, nKV, d]) holding token
// t of sequence b.
func (c *attnTestCase) keyIndex(b, t int, kvStarts []int) int {
	if c.pageSize == 0 {
		return kvStarts[b] + t
	}
	return int(c.table[b*c.maxPages+t/c.pageSize])*c.pageSize + t%c.pageSize
}

// reference is the float64 attention of the case: outputs [totalQ, nHeads,
// d] and log-sum-exps [nHeads, totalQ] (−Inf and zeros for rows that see
// no key).
func (c *attnTestCase) reference() (out, lse []float64) {
	totalQ := 0
	for _, n := range c.qLens {
		totalQ += n
	}
	out = make([]float64, totalQ*c.nHeads*c.d)
	lse = make([]float64, c.nHeads*totalQ)
	kvStarts := make([]int, len(c.kvLens)+1)
	for b, n := range c.kvLens {
		kvStarts[b+1] = kvStarts[b] + n
	}
	scale := 1 / math.Sqrt(float64(c.d))
	scale = float64(float32(scale))
	group := c.nHeads / c.nKV
	row := 0
	for b, qLen := range c.qLens {
		kvLen := c.kvLens[b]
		for i := range qLen {
			pos := kvLen - qLen + i
			for h := range c.nHeads {
				g := h / group
				qv := c.q[(row*c.nHeads+h)*c.d:][:c.d]
				scores := make([]float64, kvLen)
				m := math.Inf(-1)
				for t := range kvLen {
					s := math.Inf(-1)
					visible := (!c.causal || t <= pos) && (c.window == 0 || t > pos-c.window)
					if visible {
						kv := c.k[(c.keyIndex(b, t, kvStarts)*c.nKV+g)*c.d:][:c.d]
						dot := 0.0
						for e := range c.d {
							dot += float64(qv[e]) * float64(kv[e])
						}
						s = scale * dot
						if c.withMask {
							s += float64(c.mask[row*c.maskCols+t])
						}
					}
					scores[t] = s
					m = math.Max(m, s)
				}
				o := out[(row*c.nHeads+h)*c.d:][:c.d]
				if math.IsInf(m, -1) {
					lse[h*totalQ+row] = math.Inf(-1)
					continue
				}
				sum := 0.0
				for t, s := range scores {
					p := math.Exp(s - m)
					sum += p
					if p == 0 {
						continue
					}
					vv := c.v[(c.keyIndex(b, t, kvStarts)*c.nKV+g)*c.d:][:c.d]
					for e := range c.d {
						o[e] += p * float64(vv[e])
					}
				}
				for e := range o {
					o[e] /= sum
				}
				lse[h*totalQ+row] = m + math.Log(sum)
			}
			row++
		}
	}
	return out, lse
}

// roundTo rounds float32 values to dt as the backend stores them.
func roundTo(dt tensor.DType, vals []float32) []float32 {
	out := make([]float32, len(vals))
	for i, v := range vals {
		switch dt {
		case tensor.F16:
			out[i] = tensor.F16ToF32(tensor.F32ToF16(v))
		case tensor.BF16:
			out[i] = tensor.BF16ToF32(tensor.F32ToBF16(v))
		default:
			out[i] = v
		}
	}
	return out
}

// newAttnTestCase fills a case with random inputs in [−2, 2) (mask: also
// some −Inf) and a shuffled block table.
func newAttnTestCase(rng *rand.Rand, c attnTestCase) *attnTestCase {
	rnd := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.Float64()*4 - 2)
		}
		return v
	}
	totalQ, totalKV, maxKV := 0, 0, 0
	for b := range c.qLens {
		totalQ += c.qLens[b]
		totalKV += c.kvLens[b]
		maxKV = max(maxKV, c.kvLens[b])
	}
	c.q = roundTo(c.dt, rnd(totalQ*c.nHeads*c.d))
	rows := totalKV
	if c.pageSize > 0 {
		c.maxPages = (maxKV + c.pageSize - 1) / c.pageSize
		nPages := len(c.qLens)*c.maxPages + 3
		perm := rng.Perm(nPages)
		c.table = make([]int32, len(c.qLens)*c.maxPages)
		for i := range c.table {
			c.table[i] = int32(perm[i])
		}
		rows = nPages * c.pageSize
	}
	c.k = roundTo(c.dt, rnd(rows*c.nKV*c.d))
	c.v = roundTo(c.dt, rnd(rows*c.nKV*c.d))
	if c.withMask {
		c.maskCols = maxKV
		c.mask = rnd(totalQ * maxKV)
		for i := range c.mask {
			if rng.IntN(8) == 0 {
				c.mask[i] = float32(math.Inf(-1))
			}
		}
	}
	return &c
}

// run computes the case on b: outputs [totalQ, nHeads, d] and LSE.
func (c *attnTestCase) run(t *testing.T, b *Backend) (out, lse []float32) {
	t.Helper()
	totalQ, maxQ, maxKV := 0, 0, 0
	qStarts, kvStarts, lens := []int32{0}, []int32{0}, []int32{}
	for i := range c.qLens {
		totalQ += c.qLens[i]
		maxQ, maxKV = max(maxQ, c.qLens[i]), max(maxKV, c.kvLens[i])
		qStarts = append(qStarts, int32(totalQ))
		kvStarts = append(kvStarts, kvStarts[i]+int32(c.kvLens[i]))
		lens = append(lens, int32(c.kvLens[i]))
	}
	var kv op.AttentionKV
	if c.pageSize > 0 {
		nPages := len(c.k) / (c.pageSize * c.nKV * c.d)
		kv = op.AttentionKV{
			K:          floats(t, b, c.dt, c.k, nPages, c.pageSize, c.nKV, c.d),
			V:          floats(t, b, c.dt, c.v, nPages, c.pageSize, c.nKV, c.d),
			BlockTable: ints(t, b, c.table, len(c.qLens), c.maxPages),
			Lens:       ints(t, b, lens, len(lens)),
		}
	} else {
		rows := len(c.k) / (c.nKV * c.d)
		kv = contiguousKV(t, b, c.dt, c.k, c.v, rows, c.nKV, c.d, kvStarts)
	}
	opts := op.AttentionOptions{Causal: c.causal, Window: c.window, MaxQueryLen: maxQ, MaxKVLen: maxKV,
		LSE: lseOut(t, b, c.nHeads, totalQ)}
	if c.withMask {
		opts.Mask = floats(t, b, tensor.F32, c.mask, totalQ, c.maskCols)
	}
	dst := alloc(t, b, c.dt, totalQ, c.nHeads, c.d)
	q := floats(t, b, c.dt, c.q, totalQ, c.nHeads, c.d)
	if err := b.Attention(dst, q, ints(t, b, qStarts, len(qStarts)), kv, opts); err != nil {
		t.Fatal(err)
	}
	return read(t, b, dst), read(t, b, opts.LSE)
}

// TestAttentionPathsAgainstReference: decode and prefill shapes (head
// dims 12 and 40 … 256, GQA ratios 1 … 8, pages that split key tiles, odd
// lengths, causal with window and an additive mask) by the Go loops and by
// the assembly kernels, each within the dtype's output rounding of the
// float64 reference; the error of each is logged.
func TestAttentionPathsAgainstReference(t *testing.T) {
	shapes := []attnTestCase{
		{nHeads: 64, nKV: 8, d: 128, pageSize: 16, qLens: []int{1, 1, 1}, kvLens: []int{300, 1, 129}},
		{nHeads: 32, nKV: 8, d: 128, qLens: []int{4, 16}, kvLens: []int{200, 77}, causal: true},
		{nHeads: 8, nKV: 8, d: 64, pageSize: 5, qLens: []int{1, 9}, kvLens: []int{131, 66}, causal: true, withMask: true},
		{nHeads: 6, nKV: 2, d: 40, pageSize: 7, qLens: []int{70, 3}, kvLens: []int{70, 90}, causal: true, window: 33},
		{nHeads: 4, nKV: 1, d: 80, qLens: []int{67}, kvLens: []int{67}, causal: true},
		{nHeads: 2, nKV: 1, d: 256, pageSize: 64, qLens: []int{2, 5}, kvLens: []int{100, 5}},
		{nHeads: 3, nKV: 3, d: 96, qLens: []int{1}, kvLens: []int{0}},
		{nHeads: 4, nKV: 2, d: 12, pageSize: 8, qLens: []int{1, 5}, kvLens: []int{77, 5}, causal: true}, // d not a multiple of 8: Go loops on both
	}
	for si, shape := range shapes {
		for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
			shape.dt = dt
			name := fmt.Sprintf("%d/%v/h%dkv%dd%d", si, dt, shape.nHeads, shape.nKV, shape.d)
			t.Run(name, func(t *testing.T) {
				c := newAttnTestCase(rand.New(rand.NewPCG(uint64(si), 7)), shape)
				want, wantLSE := c.reference()
				maxAbsV := 2.0
				// Output rounding to dt (half an ulp of |v| ≤ 2), with room for
				// the float32 arithmetic before it.
				tol := map[tensor.DType]float64{tensor.F32: 2e-5, tensor.F16: 2 * maxAbsV * 0x1p-11, tensor.BF16: 2 * maxAbsV * 0x1p-8}[dt]
				forEachDotImpl(t, func(t *testing.T) {
					b := newTestBackend(t, Options{Threads: 2})
					got, gotLSE := c.run(t, b)
					worst, worstLSE := 0.0, 0.0
					for i, w := range want {
						e := math.Abs(float64(got[i]) - w)
						if !(e <= tol) {
							t.Fatalf("output %d = %g, want %g (error %.3g > %.3g)", i, got[i], w, e, tol)
						}
						worst = max(worst, e)
					}
					for i, w := range wantLSE {
						g := float64(gotLSE[i])
						if math.IsInf(w, -1) {
							if !math.IsInf(g, -1) {
								t.Fatalf("LSE %d = %g, want -Inf", i, g)
							}
							continue
						}
						e := math.Abs(g - w)
						if !(e <= 1e-5*math.Max(1, math.Abs(w))) {
							t.Fatalf("LSE %d = %g, want %g", i, g, w)
						}
						worstLSE = max(worstLSE, e)
					}
					t.Logf("max error: output %.3g (bound %.3g), LSE %.3g", worst, tol, worstLSE)
				})
			})
		}
	}
}

// TestAttentionDecodeDoesNotDependOnThreads: decode steps (where the
// assembly path gives an item several KV heads, as many as the thread
// count leaves: all 8 with one thread, one with seven) give the same bytes
// with 1, 2 and 7 threads, by either implementation.
func TestAttentionDecodeDoesNotDependOnThreads(t *testing.T) {
	forEachDotImpl(t, func(t *testing.T) {
		for _, shape := range []attnTestCase{
			{dt: tensor.F16, nHeads: 64, nKV: 8, d: 128, pageSize: 16, qLens: []int{1}, kvLens: []int{333}},
			{dt: tensor.BF16, nHeads: 16, nKV: 8, d: 64, qLens: []int{3, 1}, kvLens: []int{100, 70}, causal: true},
			{dt: tensor.F32, nHeads: 8, nKV: 4, d: 40, pageSize: 7, qLens: []int{16}, kvLens: []int{90}, causal: true, withMask: true},
		} {
			c := newAttnTestCase(rand.New(rand.NewPCG(21, uint64(shape.d))), shape)
			var first []float32
			var firstLSE []float32
			for _, threads := range []int{1, 2, 7} {
				b := newTestBackend(t, Options{Threads: threads})
				b.minParallelWork = 1
				got, lse := c.run(t, b)
				if first == nil {
					first, firstLSE = got, lse
					continue
				}
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(first[i]) {
						t.Fatalf("%v h%dkv%d: output %d = %g with %d threads, %g with 1", c.dt, c.nHeads, c.nKV, i, got[i], threads, first[i])
					}
				}
				for i := range lse {
					if math.Float32bits(lse[i]) != math.Float32bits(firstLSE[i]) {
						t.Fatalf("%v: LSE %d = %g with %d threads, %g with 1", c.dt, i, lse[i], threads, firstLSE[i])
					}
				}
			}
		}
	})
}
