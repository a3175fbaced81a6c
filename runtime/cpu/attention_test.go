package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// contiguousKV is the AttentionKV of contiguous keys and values with the
// given starts.
func contiguousKV(t *testing.T, b *Backend, dt tensor.DType, k, v []float32, totalKV, nKVHeads, headDim int, starts []int32) op.AttentionKV {
	t.Helper()
	return op.AttentionKV{
		K:      floats(t, b, dt, k, totalKV, nKVHeads, headDim),
		V:      floats(t, b, dt, v, totalKV, nKVHeads, headDim),
		Starts: ints(t, b, starts, len(starts)),
	}
}

// lseOut allocates a poisoned LSE output [nHeads, totalQ].
func lseOut(t *testing.T, b *Backend, nHeads, totalQ int) tensor.Tensor {
	return alloc(t, b, tensor.F32, nHeads, totalQ)
}

func negInf() float64 { return math.Inf(-1) }

// TestAttentionHandWorked: tiny cases whose results follow by hand.
func TestAttentionHandWorked(t *testing.T) {
	b := newTestBackend(t, Options{Threads: 1})
	ln3 := float32(math.Log(3))

	t.Run("two keys, scale 1", func(t *testing.T) {
		// One query q = [1, 0], keys k0 = [0, 0] and k1 = [ln 3, 0], scale 1:
		// scores 0 and ln 3, weights e⁰ : e^ln3 = 1 : 3, so p = (1/4, 3/4).
		// v0 = [4, 0], v1 = [0, 8]: o = [4/4, 8·3/4] = [1, 6]; LSE = ln(1 + 3) = ln 4.
		for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
			q := floats(t, b, dt, []float32{1, 0}, 1, 1, 2)
			kv := contiguousKV(t, b, dt, []float32{0, 0, ln3, 0}, []float32{4, 0, 0, 8}, 2, 1, 2, []int32{0, 2})
			dst := alloc(t, b, dt, 1, 1, 2)
			lse := lseOut(t, b, 1, 1)
			if err := b.Attention(dst, q, ints(t, b, []int32{0, 1}, 2), kv, op.AttentionOptions{Scale: 1, LSE: lse}); err != nil {
				t.Fatal(err)
			}
			// k1 = ln 3 rounded to dt: BF16 keeps 8 bits, so the weights
			// are 1 : 3·(1 ± 2⁻⁸), moving o[1] by up to 8·3/16·2⁻⁸ ≈ 0.006.
			tol := map[tensor.DType]float64{tensor.F32: 1e-6, tensor.F16: 2e-3, tensor.BF16: 2e-2}[dt]
			near(t, dt.String()+" o", read(t, b, dst), []float64{1, 6}, tol)
			near(t, dt.String()+" lse", read(t, b, lse), []float64{math.Log(4)}, tol)
		}
	})

	t.Run("causal decode chunk", func(t *testing.T) {
		// kvLen 3, qLen 2, causal: query 0 sits at position 1 and sees keys
		// 0, 1; query 1 at position 2 sees 0, 1, 2. q = 0 makes every score
		// 0, so each output is the mean of the visible values:
		// (1 + 2)/2 = 1.5 and (1 + 2 + 6)/3 = 3; LSE = ln 2 and ln 3.
		q := floats(t, b, tensor.F32, []float32{0, 0}, 2, 1, 1)
		kv := contiguousKV(t, b, tensor.F32, []float32{5, -7, 9}, []float32{1, 2, 6}, 3, 1, 1, []int32{0, 3})
		dst := alloc(t, b, tensor.F32, 2, 1, 1)
		lse := lseOut(t, b, 1, 2)
		if err := b.Attention(dst, q, ints(t, b, []int32{0, 2}, 2), kv, op.AttentionOptions{Causal: true, LSE: lse}); err != nil {
			t.Fatal(err)
		}
		near(t, "o", read(t, b, dst), []float64{1.5, 3}, 1e-6)
		near(t, "lse", read(t, b, lse), []float64{math.Log(2), math.Log(3)}, 1e-6)
	})

	t.Run("sliding window", func(t *testing.T) {
		// qLen = kvLen = 4, causal, Window 2: query i sees keys i−1 and i
		// (key 0 alone for query 0). Scores 0: means of v = 1, 2, 4, 8:
		// 1, 1.5, 3, 6.
		q := floats(t, b, tensor.F32, []float32{0, 0, 0, 0}, 4, 1, 1)
		kv := contiguousKV(t, b, tensor.F32, []float32{1, 1, 1, 1}, []float32{1, 2, 4, 8}, 4, 1, 1, []int32{0, 4})
		dst := alloc(t, b, tensor.F32, 4, 1, 1)
		if err := b.Attention(dst, q, ints(t, b, []int32{0, 4}, 2), kv, op.AttentionOptions{Causal: true, Window: 2}); err != nil {
			t.Fatal(err)
		}
		near(t, "o", read(t, b, dst), []float64{1, 1.5, 3, 6}, 1e-6)
	})

	t.Run("additive mask", func(t *testing.T) {
		// Two queries over three keys, scores 0 (q = 0). Row 0's mask
		// [0, −Inf, ln 3] gives weights 1 : 0 : 3, so o = (4 + 3·8)/4 = 7 and
		// LSE = ln 4 (the 100 is hidden); row 1 is masked everywhere: zeros
		// and LSE −Inf.
		inf := float32(math.Inf(-1))
		q := floats(t, b, tensor.F32, []float32{0, 0}, 2, 1, 1)
		kv := contiguousKV(t, b, tensor.F32, []float32{3, 3, 3}, []float32{4, 100, 8}, 3, 1, 1, []int32{0, 3})
		mask := floats(t, b, tensor.F32, []float32{0, inf, ln3, inf, inf, inf}, 2, 3)
		dst := alloc(t, b, tensor.F32, 2, 1, 1)
		lse := lseOut(t, b, 1, 2)
		if err := b.Attention(dst, q, ints(t, b, []int32{0, 2}, 2), kv, op.AttentionOptions{Mask: mask, LSE: lse}); err != nil {
			t.Fatal(err)
		}
		near(t, "o", read(t, b, dst), []float64{7, 0}, 1e-6)
		near(t, "lse", read(t, b, lse), []float64{math.Log(4), negInf()}, 1e-6)
	})

	t.Run("grouped-query heads", func(t *testing.T) {
		// 4 query heads, 2 KV heads: heads 0, 1 read KV head 0, heads 2, 3
		// KV head 1. d = 1, scale 1, keys k0 = 0, k1 = 1 in both KV heads.
		// Heads 0 and 2 have q = 0 (weights 1 : 1), heads 1 and 3 q = ln 3
		// (scores 0, ln 3: weights 1 : 3). KV head 0's values are 1, 3;
		// KV head 1's 10, 20. So o = [(1+3)/2, (1 + 3·3)/4, (10+20)/2,
		// (10 + 3·20)/4] = [2, 2.5, 15, 17.5].
		q := floats(t, b, tensor.F32, []float32{0, ln3, 0, ln3}, 1, 4, 1)
		// K, V [2 tokens, 2 KV heads, 1].
		kv := contiguousKV(t, b, tensor.F32, []float32{0, 0, 1, 1}, []float32{1, 10, 3, 20}, 2, 2, 1, []int32{0, 2})
		dst := alloc(t, b, tensor.F32, 1, 4, 1)
		if err := b.Attention(dst, q, ints(t, b, []int32{0, 1}, 2), kv, op.AttentionOptions{Scale: 1}); err != nil {
			t.Fatal(err)
		}
		near(t, "o", read(t, b, dst), []float64{2, 2.5, 15, 17.5}, 1e-6)
	})

	t.Run("paged, shuffled, varlen", func(t *testing.T) {
		// A cache of 4 pages of 2 slots, d = 1, one KV head. Sequence 0 has
		// 3 tokens in pages 2 (tokens 0, 1) and 0 (token 2, slot 0);
		// sequence 1 has 1 token in page 3, slot 0; sequence 2 has no keys.
		// Its table row's other entries are garbage (99, −5) that must not
		// be read. V by page and slot: page 0 [6, x], page 1 [x, x],
		// page 2 [1, 2], page 3 [10, x] (x = 1000: read by mistake, it
		// shows). Queries: sequence 0 has 2 (causal, positions 1 and 2:
		// means 1.5 and 3), sequence 1 none, sequence 2 one (no key: zeros,
		// LSE −Inf).
		const x = 1000
		vVals := []float32{6, x, x, x, 1, 2, 10, x}
		k := floats(t, b, tensor.F32, make([]float32, 8), 4, 2, 1, 1)
		v := floats(t, b, tensor.F32, vVals, 4, 2, 1, 1)
		kv := op.AttentionKV{K: k, V: v,
			BlockTable: ints(t, b, []int32{2, 0, 99, 3, -5, 99, 99, 99, 99}, 3, 3),
			Lens:       ints(t, b, []int32{3, 1, 0}, 3)}
		q := floats(t, b, tensor.F32, []float32{0.5, -0.5, 0.25}, 3, 1, 1)
		dst := alloc(t, b, tensor.F32, 3, 1, 1)
		lse := lseOut(t, b, 1, 3)
		if err := b.Attention(dst, q, ints(t, b, []int32{0, 2, 2, 3}, 4), kv, op.AttentionOptions{Causal: true, LSE: lse}); err != nil {
			t.Fatal(err)
		}
		// Keys are all 0, so q does not matter: scores 0.
		near(t, "o", read(t, b, dst), []float64{1.5, 3, 0}, 1e-6)
		near(t, "lse", read(t, b, lse), []float64{math.Log(2), math.Log(3), negInf()}, 1e-6)
	})

	t.Run("no queries", func(t *testing.T) {
		q := alloc(t, b, tensor.F16, 0, 2, 8)
		dst := alloc(t, b, tensor.F16, 0, 2, 8)
		kv := contiguousKV(t, b, tensor.F16, make([]float32, 16), make([]float32, 16), 1, 2, 8, []int32{0, 1})
		if err := b.Attention(dst, q, ints(t, b, []int32{0, 0}, 2), kv, op.AttentionOptions{}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestAttentionAcrossTiles: keys whose scores rise along the sequence move
// the running maximum in every tile; the closed forms below hold exactly.
func TestAttentionAcrossTiles(t *testing.T) {
	b := newTestBackend(t, Options{Threads: 1})
	// One query q = [1], n keys k_j = c·j, scale 1: s_j = c·j. With every
	// v_j = 1 the output is exactly 1 (the weights sum to 1), and
	// LSE = ln Σ e^{cj} = ln((e^{cn} − 1)/(e^c − 1)). With v_j = j the output
	// is the weighted mean of j, computed below in float64.
	const n, c = 200, 0.1
	keys := make([]float32, n)
	ones := make([]float32, n)
	idx := make([]float32, n)
	var num, den float64
	for j := range n {
		keys[j] = float32(c * float64(j))
		ones[j] = 1
		idx[j] = float32(j)
		w := math.Exp(float64(keys[j])) // the scores the op sees: k rounded to float32
		num += w * float64(j)
		den += w
	}
	q := floats(t, b, tensor.F32, []float32{1}, 1, 1, 1)
	for _, tc := range []struct {
		name string
		v    []float32
		want float64
	}{{"ones", ones, 1}, {"index", idx, num / den}} {
		kv := contiguousKV(t, b, tensor.F32, keys, tc.v, n, 1, 1, []int32{0, n})
		dst := alloc(t, b, tensor.F32, 1, 1, 1)
		lse := lseOut(t, b, 1, 1)
		if err := b.Attention(dst, q, ints(t, b, []int32{0, 1}, 2), kv, op.AttentionOptions{Scale: 1, LSE: lse}); err != nil {
			t.Fatal(err)
		}
		near(t, tc.name+" o", read(t, b, dst), []float64{tc.want}, 2e-6)
		near(t, tc.name+" lse", read(t, b, lse), []float64{math.Log((math.Exp(c*n) - 1) / (math.Exp(c) - 1))}, 2e-6)
	}
}

// TestAttentionLayouts: q a slice of a fused QKV buffer, dst a slice of a
// wider buffer, K and V with padded rows: the same results as contiguous
// tensors, and nothing outside dst's view written.
func TestAttentionLayouts(t *testing.T) {
	b := newTestBackend(t, Options{Threads: 1})
	const totalQ, nHeads, nKV, d = 5, 4, 2, 8
	rng := rand.New(rand.NewPCG(3, 4))
	rnd := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.Float64()*2 - 1)
		}
		return v
	}
	qVals, kVals, vVals := rnd(totalQ*nHeads*d), rnd(totalQ*nKV*d), rnd(totalQ*nKV*d)
	starts := []int32{0, 2, 5}
	opts := op.AttentionOptions{Causal: true}

	q := floats(t, b, tensor.F16, qVals, totalQ, nHeads, d)
	kv := contiguousKV(t, b, tensor.F16, kVals, vVals, totalQ, nKV, d, starts)
	want := alloc(t, b, tensor.F16, totalQ, nHeads, d)
	if err := b.Attention(want, q, ints(t, b, starts, 3), kv, opts); err != nil {
		t.Fatal(err)
	}

	// Fused QKV rows: [totalQ, (nHeads + 2·nKV)·d], q the first nHeads·d.
	rowLen := (nHeads + 2*nKV) * d
	fused := make([]float32, totalQ*rowLen)
	for r := range totalQ {
		copy(fused[r*rowLen:], qVals[r*nHeads*d:(r+1)*nHeads*d])
		copy(fused[r*rowLen+nHeads*d:], kVals[r*nKV*d:(r+1)*nKV*d])
		copy(fused[r*rowLen+(nHeads+nKV)*d:], vVals[r*nKV*d:(r+1)*nKV*d])
	}
	qkv := floats(t, b, tensor.F16, fused, totalQ, rowLen)
	view := func(off int, shape, strides []int) tensor.Tensor {
		v, err := qkv.View(off, shape, strides)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	qv := view(0, []int{totalQ, nHeads, d}, []int{rowLen, d, 1})
	kvv := op.AttentionKV{
		K:      view(nHeads*d, []int{totalQ, nKV, d}, []int{rowLen, d, 1}),
		V:      view((nHeads+nKV)*d, []int{totalQ, nKV, d}, []int{rowLen, d, 1}),
		Starts: ints(t, b, starts, 3),
	}
	wide := alloc(t, b, tensor.F16, totalQ+1, nHeads+1, d+3)
	before := rawBuffer(t, b, wide)
	dst, err := wide.View(1+(nHeads+1)*(d+3), []int{totalQ, nHeads, d}, []int{(nHeads + 1) * (d + 3), d + 3, 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Attention(dst, qv, ints(t, b, starts, 3), kvv, opts); err != nil {
		t.Fatal(err)
	}
	exact(t, "strided dst", read(t, b, dst), read(t, b, want))
	after := rawBuffer(t, b, wide)
	inView := map[int]bool{}
	forEachIndex(dst, func(e int) { inView[e] = true })
	for e := 0; e < len(after)/2; e++ {
		if !inView[e] && (after[2*e] != before[2*e] || after[2*e+1] != before[2*e+1]) {
			t.Fatalf("element %d outside dst's view was written", e)
		}
	}
}

// randomAttention builds a varlen, paged, GQA, masked call with random
// values on b (the same values for the same seed).
func randomAttention(t *testing.T, b *Backend, dt tensor.DType, seed uint64) (dst, q, qs tensor.Tensor, kv op.AttentionKV, opts op.AttentionOptions) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	const nHeads, nKV, d, pageSize, nPages, maxPages = 8, 2, 40, 7, 40, 21
	qLens := []int{1, 70, 0, 130, 3}
	kvLens := []int{77, 70, 5, 140, 3}
	totalQ := 0
	qStarts := []int32{0}
	for _, n := range qLens {
		totalQ += n
		qStarts = append(qStarts, int32(totalQ))
	}
	rnd := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.Float64()*4 - 2)
		}
		return v
	}
	perm := rng.Perm(nPages)
	table := make([]int32, len(qLens)*maxPages)
	for i := range table {
		table[i] = int32(perm[i%nPages])
	}
	lens := make([]int32, len(kvLens))
	for i, n := range kvLens {
		lens[i] = int32(n)
	}
	maskVals := rnd(totalQ * 150)
	for i := range maskVals {
		if rng.IntN(10) == 0 {
			maskVals[i] = float32(math.Inf(-1))
		}
	}
	q = floats(t, b, dt, rnd(totalQ*nHeads*d), totalQ, nHeads, d)
	kv = op.AttentionKV{
		K:          floats(t, b, dt, rnd(nPages*pageSize*nKV*d), nPages, pageSize, nKV, d),
		V:          floats(t, b, dt, rnd(nPages*pageSize*nKV*d), nPages, pageSize, nKV, d),
		BlockTable: ints(t, b, table, len(qLens), maxPages),
		Lens:       ints(t, b, lens, len(lens)),
	}
	opts = op.AttentionOptions{Causal: true, Window: 50, Mask: floats(t, b, tensor.F32, maskVals, totalQ, 150),
		LSE: lseOut(t, b, nHeads, totalQ)}
	return alloc(t, b, dt, totalQ, nHeads, d), q, ints(t, b, qStarts, len(qStarts)), kv, opts
}

// TestAttentionDoesNotDependOnThreads: one goroutine and seven (with the
// parallel threshold at its minimum) give identical bytes.
func TestAttentionDoesNotDependOnThreads(t *testing.T) {
	serial := newTestBackend(t, Options{Threads: 1})
	parallel := newTestBackend(t, Options{Threads: 7})
	parallel.minParallelWork = 1
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
		dS, qS, qsS, kvS, oS := randomAttention(t, serial, dt, 11)
		dP, qP, qsP, kvP, oP := randomAttention(t, parallel, dt, 11)
		if err := serial.Attention(dS, qS, qsS, kvS, oS); err != nil {
			t.Fatal(err)
		}
		if err := parallel.Attention(dP, qP, qsP, kvP, oP); err != nil {
			t.Fatal(err)
		}
		if string(rawBuffer(t, serial, dS)) != string(rawBuffer(t, parallel, dP)) {
			t.Errorf("%v: outputs differ between 1 and 7 threads", dt)
		}
		if string(rawBuffer(t, serial, oS.LSE)) != string(rawBuffer(t, parallel, oP.LSE)) {
			t.Errorf("%v: LSE differs between 1 and 7 threads", dt)
		}
		// And the results are finite numbers (the random mask leaves
		// every row some key), so the comparison compared something.
		for i, v := range read(t, serial, dS) {
			if math.IsNaN(float64(v)) {
				t.Fatalf("%v: output %d is NaN", dt, i)
			}
		}
	}
}

// TestAttentionRowDoesNotDependOnNeighbours: a query's result is the same
// bits whether it is computed alone (a decode step over the keys up to its
// position) or as one row of a causal prefill (where it shares key tiles,
// and paired loops, with its neighbours).
func TestAttentionRowDoesNotDependOnNeighbours(t *testing.T) {
	b := newTestBackend(t, Options{Threads: 2})
	const n, nHeads, nKV, d = 150, 4, 2, 64
	rng := rand.New(rand.NewPCG(9, 9))
	rnd := func(m int) []float32 {
		v := make([]float32, m)
		for i := range v {
			v[i] = float32(rng.Float64()*2 - 1)
		}
		return v
	}
	qVals, kVals, vVals := rnd(n*nHeads*d), rnd(n*nKV*d), rnd(n*nKV*d)
	kv := contiguousKV(t, b, tensor.F16, kVals, vVals, n, nKV, d, []int32{0, n})
	prefill := alloc(t, b, tensor.F16, n, nHeads, d)
	if err := b.Attention(prefill, floats(t, b, tensor.F16, qVals, n, nHeads, d), ints(t, b, []int32{0, n}, 2), kv,
		op.AttentionOptions{Causal: true}); err != nil {
		t.Fatal(err)
	}
	all := read(t, b, prefill)
	for _, row := range []int{0, 63, 64, 100, n - 1} {
		one := alloc(t, b, tensor.F16, 1, nHeads, d)
		q := floats(t, b, tensor.F16, qVals[row*nHeads*d:(row+1)*nHeads*d], 1, nHeads, d)
		// The keys up to the query's position: kv.Starts [0, row+1].
		kvRow := op.AttentionKV{K: kv.K, V: kv.V, Starts: ints(t, b, []int32{0, int32(row + 1)}, 2)}
		if err := b.Attention(one, q, ints(t, b, []int32{0, 1}, 2), kvRow, op.AttentionOptions{Causal: true}); err != nil {
			t.Fatal(err)
		}
		exact(t, fmt.Sprintf("row %d alone", row), read(t, b, one), all[row*nHeads*d:(row+1)*nHeads*d])
	}
}

// TestAttentionMetadataErrors: bad starts, lengths, pages and bounds are
// refused with an error naming them, before anything is written.
func TestAttentionMetadataErrors(t *testing.T) {
	b := newTestBackend(t, Options{})
	const d = 4
	// Contiguous: 2 sequences, q [3, 1, d], K/V [5, 1, d].
	q := floats(t, b, tensor.F32, make([]float32, 3*d), 3, 1, d)
	k := floats(t, b, tensor.F32, make([]float32, 5*d), 5, 1, d)
	// Paged: 4 pages of 2 slots, 2 sequences, 3 entries per table row.
	kp := floats(t, b, tensor.F32, make([]float32, 8*d), 4, 2, 1, d)
	mask := floats(t, b, tensor.F32, make([]float32, 3*4), 3, 4)
	contiguous := func(starts ...int32) op.AttentionKV {
		return op.AttentionKV{K: k, V: k, Starts: ints(t, b, starts, 3)}
	}
	paged := func(table []int32, lens ...int32) op.AttentionKV {
		return op.AttentionKV{K: kp, V: kp, BlockTable: ints(t, b, table, 2, 3), Lens: ints(t, b, lens, 2)}
	}
	goodTable := []int32{3, 1, 7, 0, 2, 9} // entries [0, 2] and [1, 2] unused below
	qs := func(v ...int32) tensor.Tensor { return ints(t, b, v, 3) }
	for _, c := range []struct {
		name  string
		qs    tensor.Tensor
		kv    op.AttentionKV
		opts  op.AttentionOptions
		parts []string // the error names these
	}{
		{"queryStarts[0] not 0", qs(1, 2, 3), contiguous(0, 2, 5), op.AttentionOptions{}, []string{"queryStarts[0] = 1", "must be 0"}},
		{"queryStarts decreasing", qs(0, 3, 2), contiguous(0, 2, 5), op.AttentionOptions{}, []string{"queryStarts[2] = 2", "queryStarts[1] = 3"}},
		{"queryStarts beyond q", qs(0, 4, 4), contiguous(0, 2, 5), op.AttentionOptions{}, []string{"queryStarts[1] = 4", "3 rows"}},
		{"queryStarts short of totalQ", qs(0, 1, 2), contiguous(0, 2, 5), op.AttentionOptions{}, []string{"queryStarts[2] = 2", "totalQ = 3"}},
		{"kv.Starts[0] not 0", qs(0, 1, 3), contiguous(2, 3, 5), op.AttentionOptions{}, []string{"kv.Starts[0] = 2"}},
		{"kv.Starts decreasing", qs(0, 1, 3), contiguous(0, 4, 3), op.AttentionOptions{}, []string{"kv.Starts[2] = 3", "kv.Starts[1] = 4"}},
		{"kv.Starts beyond K", qs(0, 1, 3), contiguous(0, 2, 6), op.AttentionOptions{}, []string{"kv.Starts[2] = 6", "5 rows"}},
		{"kv.Lens negative", qs(0, 1, 3), paged(goodTable, 3, -1), op.AttentionOptions{}, []string{"kv.Lens[1] = -1", "[0, 6]"}},
		{"kv.Lens beyond the table", qs(0, 1, 3), paged(goodTable, 7, 3), op.AttentionOptions{}, []string{"kv.Lens[0] = 7", "[0, 6]"}},
		{"page index too large", qs(0, 1, 3), paged([]int32{3, 1, 4, 0, 2, 9}, 5, 3), op.AttentionOptions{},
			[]string{"kv.BlockTable[0, 2] = 4", "[0, 4)", "4 pages"}},
		{"page index negative", qs(0, 1, 3), paged([]int32{3, 1, 7, -1, 2, 9}, 3, 1), op.AttentionOptions{},
			[]string{"kv.BlockTable[1, 0] = -1", "[0, 4)"}},
		{"MaxQueryLen", qs(0, 1, 3), contiguous(0, 2, 5), op.AttentionOptions{MaxQueryLen: 1}, []string{"MaxQueryLen = 1", "sequence 1 has 2 queries"}},
		{"MaxKVLen", qs(0, 1, 3), paged(goodTable, 3, 2), op.AttentionOptions{MaxKVLen: 2}, []string{"MaxKVLen = 2", "sequence 0 has 3 keys"}},
		{"mask too narrow", qs(0, 1, 3), contiguous(0, 5, 5), op.AttentionOptions{Mask: mask}, []string{"4 columns", "sequence 0 has 5 keys"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := alloc(t, b, tensor.F32, 3, 1, d)
			before := rawBuffer(t, b, dst)
			err := b.Attention(dst, q, c.qs, c.kv, c.opts)
			wantErr(t, c.name, err, op.ErrInvalidArgument)
			if err == nil {
				return
			}
			for _, p := range c.parts {
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not name %q", err, p)
				}
			}
			if string(rawBuffer(t, b, dst)) != string(before) {
				t.Errorf("dst was written")
			}
		})
	}
	// The same metadata, corrected, runs: the faults above were the only problem.
	dst := alloc(t, b, tensor.F32, 3, 1, d)
	if err := b.Attention(dst, q, qs(0, 1, 3), contiguous(0, 2, 5), op.AttentionOptions{Mask: mask}); err != nil {
		t.Errorf("valid contiguous call: %v", err)
	}
	if err := b.Attention(dst, q, qs(0, 1, 3), paged(goodTable, 4, 3), op.AttentionOptions{MaxKVLen: 4, MaxQueryLen: 2}); err != nil {
		t.Errorf("valid paged call: %v", err)
	}
}

// TestAppendKV: tokens land in the pages their block-table rows name.
func TestAppendKV(t *testing.T) {
	b := newTestBackend(t, Options{})
	const x = 9 // the cache's initial contents
	// 3 pages of 2 slots, 1 KV head, d = 2: element (page, slot, 0, e) at (page·2 + slot)·2 + e.
	cacheVals := make([]float32, 12)
	for i := range cacheVals {
		cacheVals[i] = x
	}
	for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
		cache := op.AttentionKV{
			K:          floats(t, b, dt, cacheVals, 3, 2, 1, 2),
			V:          floats(t, b, dt, cacheVals, 3, 2, 1, 2),
			BlockTable: ints(t, b, []int32{2, 0, 1, -7}, 2, 2),
		}
		// Tokens: (seq 0, pos 0) → page 2 slot 0; (seq 0, pos 2) → page 0
		// slot 0; (seq 1, pos 1) → page 1 slot 1; (seq 0, pos 3) → page 0
		// slot 1, twice: the later token (values 7, 8) wins.
		k := floats(t, b, dt, []float32{1, 2, 3, 4, 5, 6, -1, -2, 7, 8}, 5, 1, 2)
		v := floats(t, b, dt, []float32{-1, -2, -3, -4, -5, -6, 1, 2, -7, -8}, 5, 1, 2)
		seqIDs := ints(t, b, []int32{0, 0, 1, 0, 0}, 5)
		positions := ints(t, b, []int32{0, 2, 1, 3, 3}, 5)
		if err := b.AppendKV(cache, k, v, seqIDs, positions); err != nil {
			t.Fatal(err)
		}
		//             page 0: slot 0, slot 1   page 1: slot 0, 1   page 2: slot 0, 1
		wantK := []float32{3, 4, 7, 8, x, x, 5, 6, 1, 2, x, x}
		wantV := []float32{-3, -4, -7, -8, x, x, -5, -6, -1, -2, x, x}
		exact(t, dt.String()+" cache.K", read(t, b, cache.K), wantK)
		exact(t, dt.String()+" cache.V", read(t, b, cache.V), wantV)

		for _, c := range []struct {
			name      string
			seq, pos  int32
			errorText []string
		}{
			{"sequence id", 2, 0, []string{"seqIDs[1] = 2", "[0, 2)"}},
			{"negative sequence id", -1, 0, []string{"seqIDs[1] = -1"}},
			{"negative position", 0, -3, []string{"positions[1] = -3"}},
			{"position beyond the table row", 0, 4, []string{"positions[1] = 4", "[0, 4)"}},
			{"page index", 1, 2, []string{"cache.BlockTable[1, 1] = -7", "[0, 3)", "3 pages"}},
		} {
			before := rawBuffer(t, b, cache.K)
			// Token 0 is valid, token 1 is not: nothing may be written.
			err := b.AppendKV(cache, view2(t, k), view2(t, v), ints(t, b, []int32{0, c.seq}, 2), ints(t, b, []int32{1, c.pos}, 2))
			wantErr(t, c.name, err, op.ErrInvalidArgument)
			if err != nil {
				for _, p := range c.errorText {
					if !strings.Contains(err.Error(), p) {
						t.Errorf("%s: error %q does not name %q", c.name, err, p)
					}
				}
			}
			if string(rawBuffer(t, b, cache.K)) != string(before) {
				t.Errorf("%s: the cache was written", c.name)
			}
		}
	}
}

// view2 is the first two tokens of k [n, 1, 2].
func view2(t *testing.T, k tensor.Tensor) tensor.Tensor {
	v, err := k.Slice(0, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAppendThenAttend: keys appended across page boundaries into a
// shuffled table read back through Attention as the contiguous keys do.
func TestAppendThenAttend(t *testing.T) {
	b := newTestBackend(t, Options{})
	const nKV, nHeads, d, pageSize, n = 2, 4, 16, 5, 23
	rng := rand.New(rand.NewPCG(5, 6))
	rnd := func(m int) []float32 {
		v := make([]float32, m)
		for i := range v {
			v[i] = float32(rng.Float64()*2 - 1)
		}
		return v
	}
	kVals, vVals, qVals := rnd(n*nKV*d), rnd(n*nKV*d), rnd(nHeads*d)
	q := floats(t, b, tensor.F16, qVals, 1, nHeads, d)
	want := alloc(t, b, tensor.F16, 1, nHeads, d)
	if err := b.Attention(want, q, ints(t, b, []int32{0, 1}, 2),
		contiguousKV(t, b, tensor.F16, kVals, vVals, n, nKV, d, []int32{0, n}), op.AttentionOptions{}); err != nil {
		t.Fatal(err)
	}
	const nPages = 8
	cache := op.AttentionKV{
		K:          alloc(t, b, tensor.F16, nPages, pageSize, nKV, d),
		V:          alloc(t, b, tensor.F16, nPages, pageSize, nKV, d),
		BlockTable: ints(t, b, []int32{6, 1, 7, 3, 0, 99}, 1, 6),
		Lens:       ints(t, b, []int32{n}, 1),
	}
	// Append in three calls of 10, 1 and 12 tokens (a prefill, a decode
	// step, a chunk), positions crossing page boundaries.
	for _, r := range [][2]int{{0, 10}, {10, 11}, {11, n}} {
		cnt := r[1] - r[0]
		pos := make([]int32, cnt)
		for i := range pos {
			pos[i] = int32(r[0] + i)
		}
		err := b.AppendKV(cache,
			floats(t, b, tensor.F16, kVals[r[0]*nKV*d:r[1]*nKV*d], cnt, nKV, d),
			floats(t, b, tensor.F16, vVals[r[0]*nKV*d:r[1]*nKV*d], cnt, nKV, d),
			ints(t, b, make([]int32, cnt), cnt), ints(t, b, pos, cnt))
		if err != nil {
			t.Fatal(err)
		}
	}
	got := alloc(t, b, tensor.F16, 1, nHeads, d)
	if err := b.Attention(got, q, ints(t, b, []int32{0, 1}, 2), cache, op.AttentionOptions{}); err != nil {
		t.Fatal(err)
	}
	exact(t, "paged after append", read(t, b, got), read(t, b, want))
}

// attentionFLOPs is 4·d per (query, head, visible key): Q·Kᵀ and P·V.
func attentionFLOPs(nHeads, d int, visibleKeys int64) float64 {
	return 4 * float64(nHeads) * float64(d) * float64(visibleKeys)
}

// BenchmarkAttention: a causal prefill of 2048 tokens (one head, d = 128)
// and a decode step of 8 sequences over 2048 keys each (32 query heads, 8
// KV heads, d = 128, pages of 64), both F16.
func BenchmarkAttention(b *testing.B) {
	b.Run("prefill/F16/d128-causal/b1s2048h1", func(b *testing.B) {
		be := newTestBackend(b, Options{})
		const s, d = 2048, 128
		q := benchTensor(b, be, tensor.F16, s, 1, d)
		k := benchTensor(b, be, tensor.F16, s, 1, d)
		v := benchTensor(b, be, tensor.F16, s, 1, d)
		dst := alloc(b, be, tensor.F16, s, 1, d)
		starts := ints(b, be, []int32{0, s}, 2)
		kv := op.AttentionKV{K: k, V: v, Starts: starts}
		flops := attentionFLOPs(1, d, int64(s)*(s+1)/2)
		for b.Loop() {
			if err := be.Attention(dst, q, starts, kv, op.AttentionOptions{Causal: true}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
	b.Run("decode/F16/h32kv8d128/b8kv2048", func(b *testing.B) {
		be := newTestBackend(b, Options{})
		const batch, kvLen, nHeads, nKV, d, pageSize = 8, 2048, 32, 8, 128, 64
		pagesPerSeq := kvLen / pageSize
		nPages := batch * pagesPerSeq
		rng := rand.New(rand.NewPCG(1, 2))
		perm := rng.Perm(nPages)
		table := make([]int32, nPages)
		for i, p := range perm {
			table[i] = int32(p)
		}
		lens := make([]int32, batch)
		qStarts := make([]int32, batch+1)
		for i := range lens {
			lens[i] = kvLen
			qStarts[i+1] = int32(i + 1)
		}
		kv := op.AttentionKV{
			K:          benchTensor(b, be, tensor.F16, nPages, pageSize, nKV, d),
			V:          benchTensor(b, be, tensor.F16, nPages, pageSize, nKV, d),
			BlockTable: ints(b, be, table, batch, pagesPerSeq),
			Lens:       ints(b, be, lens, batch),
		}
		q := benchTensor(b, be, tensor.F16, batch, nHeads, d)
		dst := alloc(b, be, tensor.F16, batch, nHeads, d)
		qs := ints(b, be, qStarts, batch+1)
		b.SetBytes(kv.K.SizeBytes() + kv.V.SizeBytes() + q.SizeBytes() + dst.SizeBytes())
		flops := attentionFLOPs(nHeads, d, batch*kvLen)
		for b.Loop() {
			if err := be.Attention(dst, q, qs, kv, op.AttentionOptions{MaxQueryLen: 1, MaxKVLen: kvLen}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}
