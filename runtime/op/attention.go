package op

import (
	"fmt"
	"math"
	"slices"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Names of the attention ops.
const (
	NameAttention = "attention"
	NameAppendKV  = "append-kv"
)

// MaxHeadDim is the largest head dimension the attention ops accept.
const MaxHeadDim = 256

// AttentionKV says where an attention call reads its keys and values: one
// contiguous run per sequence, or a paged cache.
//
// Contiguous (BlockTable is the zero Tensor): K and V are [totalKV, nKVHeads,
// headDim] and Starts, I32 [batch+1] with Starts[0] = 0 and non-decreasing
// values, delimits sequence b's keys: rows Starts[b] .. Starts[b+1]−1.
//
// Paged: K and V are [nPages, pageSize, nKVHeads, headDim]; BlockTable, I32
// [batch, maxPagesPerSeq], lists each sequence's pages in order (token t of
// sequence b lives in page BlockTable[b, t / pageSize], slot t % pageSize);
// Lens, I32 [batch], is each sequence's length in tokens (at most
// maxPagesPerSeq·pageSize). Unused table entries are not read.
type AttentionKV struct {
	K, V       tensor.Tensor
	Starts     tensor.Tensor
	BlockTable tensor.Tensor
	Lens       tensor.Tensor
}

// Paged reports whether kv describes a paged cache.
func (kv AttentionKV) Paged() bool { return !kv.BlockTable.IsZero() }

// AttentionOptions configure Attention.
//
// Positions: query i of sequence b (0 ≤ i < qLen_b) sits at position
// p = kvLen_b − qLen_b + i, so the new queries are the last qLen_b tokens of
// the sequence's keys (prefill: qLen = kvLen; decode: qLen = 1). Key j sits
// at position j.
type AttentionOptions struct {
	// Scale multiplies Q·Kᵀ. 0 means 1/√headDim.
	Scale float32
	// Causal hides keys j > p from the query at position p.
	Causal bool
	// Window, when positive, also hides keys j ≤ p − Window (a sliding
	// window of Window keys ending at the query). It requires Causal.
	Window int
	// Mask, when not the zero Tensor, is an F32 additive mask [totalQ, nCols]
	// (row stride arbitrary, columns contiguous, nCols at least the longest
	// sequence's kvLen): Mask[r, j] is added to the scaled score of query row
	// r (its index in Q) against key j of its sequence. −Inf hides a key.
	Mask tensor.Tensor
	// LSE, when not the zero Tensor, receives the natural log of the softmax
	// denominator, logΣⱼ exp(scale·q·kⱼ + mask), F32 [nHeads, totalQ]; −Inf
	// for a query that sees no key (whose output row is zeros).
	LSE tensor.Tensor
	// MaxQueryLen and MaxKVLen are upper bounds on any sequence's qLen and
	// kvLen, which the host cannot read from the device metadata: kernels
	// size their grids by them. 0 means the safe bound from the shapes
	// (totalQ; totalKV or maxPagesPerSeq·pageSize). A smaller true bound
	// makes long-batch calls faster; a bound that is too small is an error
	// (on the GPU, reported by the next Sync).
	MaxQueryLen, MaxKVLen int
}

// AttentionShape is an attention call's size, as the checks derived it.
type AttentionShape struct {
	Batch, TotalQ, NHeads, NKVHeads, HeadDim int
	Paged                                    bool
	TotalKV                                  int // contiguous: rows of K and V
	NPages, PageSize, MaxPagesPerSeq         int // paged
	HasMask                                  bool
	MaskCols                                 int // 0 without a mask (or with a mask of no columns)
	MaxQueryLen, MaxKVLen                    int // effective bounds
	Scale                                    float32
}

// CheckAttention validates Attention: O = softmax(scale·Q·Kᵀ + mask)·V per
// query head, with grouped-query attention (nHeads a multiple of nKVHeads;
// query head h reads KV head h / (nHeads/nKVHeads)).
//
// q and dst are [totalQ, nHeads, headDim] of one dtype (F16, BF16 or F32),
// head vectors contiguous (other strides free); queryStarts is I32 [batch+1]
// (cumulative, as AttentionKV.Starts) splitting q's rows into sequences; kv
// (see AttentionKV) has q's dtype and headDim. headDim is 1 to MaxHeadDim.
// dst must not overlap any input. Values in the I32 metadata (starts,
// lengths, page indices) are checked when the op runs: on the CPU before
// anything is written, on the GPU by the kernels, reported at the next Sync.
func CheckAttention(dst, q, queryStarts tensor.Tensor, kv AttentionKV, opts AttentionOptions) (AttentionShape, error) {
	const name = NameAttention
	var s AttentionShape
	if err := checkPresent(name, "q", q); err != nil {
		return s, err
	}
	dt := q.DType()
	if !dt.IsFloat() {
		return s, argErr(name, "q", "dtype %v is not one of F32, F16, BF16", dt)
	}
	if q.Rank() != 3 {
		return s, argErr(name, "q", "shape %v: expected [totalQ, nHeads, headDim]", q.Shape())
	}
	s.TotalQ, s.NHeads, s.HeadDim = q.Dim(0), q.Dim(1), q.Dim(2)
	if s.HeadDim < 1 || s.HeadDim > MaxHeadDim {
		return s, argErr(name, "q", "head dimension %d is outside 1..%d", s.HeadDim, MaxHeadDim)
	}
	if s.NHeads < 1 {
		return s, argErr(name, "q", "shape %v has no heads", q.Shape())
	}
	if err := checkInnerContiguous(name, "q", q); err != nil {
		return s, err
	}
	if err := checkPresent(name, "dst", dst); err != nil {
		return s, err
	}
	if err := checkSameDType(name, "dst", dst, dt); err != nil {
		return s, err
	}
	if !tensor.SameShape(dst, q) {
		return s, argErr(name, "dst", "shape %v, expected q's shape %v", dst.Shape(), q.Shape())
	}
	if err := checkInnerContiguous(name, "dst", dst); err != nil {
		return s, err
	}
	if err := checkI32Vector(name, "queryStarts", queryStarts, -1); err != nil {
		return s, err
	}
	s.Batch = queryStarts.Dim(0) - 1
	if s.Batch < 1 {
		return s, argErr(name, "queryStarts", "shape %v: expected [batch+1] with batch ≥ 1", queryStarts.Shape())
	}

	// Keys and values.
	if err := checkPresent(name, "kv.K", kv.K); err != nil {
		return s, err
	}
	if err := checkPresent(name, "kv.V", kv.V); err != nil {
		return s, err
	}
	for _, a := range []namedTensor{{"kv.K", kv.K}, {"kv.V", kv.V}} {
		if a.t.DType() != dt {
			return s, argErr(name, a.arg, "dtype %v, expected %v (q's dtype)", a.t.DType(), dt)
		}
		if err := checkInnerContiguous(name, a.arg, a.t); err != nil {
			return s, err
		}
	}
	if !tensor.SameShape(kv.K, kv.V) {
		return s, argErr(name, "kv.V", "shape %v differs from kv.K's %v", kv.V.Shape(), kv.K.Shape())
	}
	s.Paged = kv.Paged()
	if s.Paged {
		if kv.K.Rank() != 4 {
			return s, argErr(name, "kv.K", "shape %v: a paged cache is [nPages, pageSize, nKVHeads, headDim]", kv.K.Shape())
		}
		s.NPages, s.PageSize, s.NKVHeads = kv.K.Dim(0), kv.K.Dim(1), kv.K.Dim(2)
		if !kv.Starts.IsZero() {
			return s, argErr(name, "kv.Starts", "given with a BlockTable: a paged cache uses Lens")
		}
		bt := kv.BlockTable
		if bt.DType() != tensor.I32 || bt.Rank() != 2 || bt.Dim(0) != s.Batch {
			return s, argErr(name, "kv.BlockTable", "%v %v: expected I32 [batch=%d, maxPagesPerSeq]", bt.DType(), bt.Shape(), s.Batch)
		}
		if err := checkInnerContiguous(name, "kv.BlockTable", bt); err != nil {
			return s, err
		}
		s.MaxPagesPerSeq = bt.Dim(1)
		if err := checkI32Vector(name, "kv.Lens", kv.Lens, s.Batch); err != nil {
			return s, err
		}
	} else {
		if kv.K.Rank() != 3 {
			return s, argErr(name, "kv.K", "shape %v: contiguous keys are [totalKV, nKVHeads, headDim] (or give a BlockTable for a paged cache)", kv.K.Shape())
		}
		s.TotalKV, s.NKVHeads = kv.K.Dim(0), kv.K.Dim(1)
		if !kv.Lens.IsZero() {
			return s, argErr(name, "kv.Lens", "given without a BlockTable: contiguous keys use Starts")
		}
		if err := checkI32Vector(name, "kv.Starts", kv.Starts, s.Batch+1); err != nil {
			return s, err
		}
	}
	if kv.K.Dim(-1) != s.HeadDim {
		return s, argErr(name, "kv.K", "head dimension %d differs from q's %d", kv.K.Dim(-1), s.HeadDim)
	}
	if s.NKVHeads < 1 || s.NHeads%s.NKVHeads != 0 {
		return s, argErr(name, "kv.K", "%d KV heads: q's %d heads must be a multiple of it", s.NKVHeads, s.NHeads)
	}

	// Options.
	s.Scale = opts.Scale
	if s.Scale == 0 {
		s.Scale = float32(1 / math.Sqrt(float64(s.HeadDim)))
	}
	if math.IsNaN(float64(s.Scale)) || math.IsInf(float64(s.Scale), 0) {
		return s, argErr(name, "Scale", "%v is not a finite number", opts.Scale)
	}
	if opts.Window < 0 || (opts.Window > 0 && !opts.Causal) {
		return s, argErr(name, "Window", "%d: must be 0, or positive with Causal", opts.Window)
	}
	capacity := s.TotalKV
	if s.Paged {
		capacity = s.MaxPagesPerSeq * s.PageSize
	}
	s.MaxQueryLen, s.MaxKVLen = opts.MaxQueryLen, opts.MaxKVLen
	if s.MaxQueryLen < 0 || s.MaxKVLen < 0 {
		return s, argErr(name, "", "MaxQueryLen %d and MaxKVLen %d must not be negative", opts.MaxQueryLen, opts.MaxKVLen)
	}
	if s.MaxQueryLen == 0 || s.MaxQueryLen > s.TotalQ {
		s.MaxQueryLen = s.TotalQ
	}
	if s.MaxKVLen == 0 || s.MaxKVLen > capacity {
		s.MaxKVLen = capacity
	}
	if !opts.Mask.IsZero() {
		m := opts.Mask
		if m.DType() != tensor.F32 || m.Rank() != 2 || m.Dim(0) != s.TotalQ {
			return s, argErr(name, "Mask", "%v %v: expected F32 [totalQ=%d, nCols]", m.DType(), m.Shape(), s.TotalQ)
		}
		if err := checkInnerContiguous(name, "Mask", m); err != nil {
			return s, err
		}
		s.HasMask, s.MaskCols = true, m.Dim(1)
	}
	if !opts.LSE.IsZero() {
		l := opts.LSE
		if l.DType() != tensor.F32 || !slices.Equal(l.Shape(), []int{s.NHeads, s.TotalQ}) {
			return s, argErr(name, "LSE", "%v %v: expected F32 [nHeads=%d, totalQ=%d]", l.DType(), l.Shape(), s.NHeads, s.TotalQ)
		}
		if err := checkInnerContiguous(name, "LSE", l); err != nil {
			return s, err
		}
	}

	// Outputs overlap nothing.
	inputs := []namedTensor{{"q", q}, {"queryStarts", queryStarts}, {"kv.K", kv.K}, {"kv.V", kv.V},
		{"kv.Starts", kv.Starts}, {"kv.BlockTable", kv.BlockTable}, {"kv.Lens", kv.Lens}, {"Mask", opts.Mask}}
	for _, out := range []namedTensor{{"dst", dst}, {"LSE", opts.LSE}} {
		if out.t.IsZero() {
			continue
		}
		if out.t.HasOverlap() {
			return s, argErr(name, out.arg, "layout %v addresses some elements more than once", out.t)
		}
		for _, in := range inputs {
			if !in.t.IsZero() && in.t.Buffer() == out.t.Buffer() && byteRangesOverlap(in.t, out.t) {
				return s, argErr(name, out.arg, "layout %v overlaps %s %v", out.t, in.arg, in.t)
			}
		}
	}
	if !opts.LSE.IsZero() && opts.LSE.Buffer() == dst.Buffer() && byteRangesOverlap(opts.LSE, dst) {
		return s, argErr(name, "LSE", "layout %v overlaps dst %v", opts.LSE, dst)
	}
	return s, nil
}

// checkI32Vector checks a contiguous I32 vector of n elements (n < 0: any length ≥ 1).
func checkI32Vector(name, arg string, v tensor.Tensor, n int) error {
	if err := checkPresent(name, arg, v); err != nil {
		return err
	}
	if v.DType() != tensor.I32 || v.Rank() != 1 || (n >= 0 && v.Dim(0) != n) || (n < 0 && v.Dim(0) < 1) {
		want := "[n]"
		if n >= 0 {
			want = fmt.Sprintf("[%d]", n)
		}
		return argErr(name, arg, "%v %v: expected I32 %s", v.DType(), v.Shape(), want)
	}
	return checkInnerContiguous(name, arg, v)
}

// CheckAppendKV validates AppendKV: k and v ([totalNew, nKVHeads, headDim],
// the cache's dtype, head vectors contiguous) go into the paged cache (K, V
// [nPages, pageSize, nKVHeads, headDim], BlockTable I32 [batch,
// maxPagesPerSeq]); seqIDs and positions (I32 [totalNew]) say, per new token,
// its sequence and its position there. Token i lands in page
// BlockTable[seqIDs[i], positions[i] / pageSize], slot positions[i] %
// pageSize. The values are checked when the op runs (on the GPU, reported at
// the next Sync); a token whose page or position is out of range is not
// written. Two tokens written to one slot in a call leave either value.
func CheckAppendKV(cache AttentionKV, k, v, seqIDs, positions tensor.Tensor) error {
	const name = NameAppendKV
	if !cache.Paged() {
		return argErr(name, "cache", "has no BlockTable: AppendKV writes a paged cache")
	}
	for _, a := range []namedTensor{{"cache.K", cache.K}, {"cache.V", cache.V}, {"k", k}, {"v", v}} {
		if err := checkPresent(name, a.arg, a.t); err != nil {
			return err
		}
		if err := checkInnerContiguous(name, a.arg, a.t); err != nil {
			return err
		}
	}
	dt := cache.K.DType()
	if !dt.IsFloat() {
		return argErr(name, "cache.K", "dtype %v is not one of F32, F16, BF16", dt)
	}
	if cache.K.Rank() != 4 || !tensor.SameShape(cache.K, cache.V) || cache.V.DType() != dt {
		return argErr(name, "cache", "K %v %v and V %v %v: expected one dtype and shape [nPages, pageSize, nKVHeads, headDim]",
			cache.K.DType(), cache.K.Shape(), cache.V.DType(), cache.V.Shape())
	}
	bt := cache.BlockTable
	if bt.DType() != tensor.I32 || bt.Rank() != 2 {
		return argErr(name, "cache.BlockTable", "%v %v: expected I32 [batch, maxPagesPerSeq]", bt.DType(), bt.Shape())
	}
	if err := checkInnerContiguous(name, "cache.BlockTable", bt); err != nil {
		return err
	}
	want := []int{k.Dim(0), cache.K.Dim(2), cache.K.Dim(3)}
	for _, a := range []namedTensor{{"k", k}, {"v", v}} {
		if a.t.DType() != dt || !slices.Equal(a.t.Shape(), want) {
			return argErr(name, a.arg, "%v %v: expected %v %v (the cache's dtype, [totalNew, nKVHeads, headDim])", a.t.DType(), a.t.Shape(), dt, want)
		}
	}
	for _, a := range []namedTensor{{"seqIDs", seqIDs}, {"positions", positions}} {
		if err := checkI32Vector(name, a.arg, a.t, k.Dim(0)); err != nil {
			return err
		}
	}
	for _, out := range []namedTensor{{"cache.K", cache.K}, {"cache.V", cache.V}} {
		for _, in := range []namedTensor{{"k", k}, {"v", v}, {"seqIDs", seqIDs}, {"positions", positions}, {"cache.BlockTable", bt}} {
			if in.t.Buffer() == out.t.Buffer() && byteRangesOverlap(in.t, out.t) {
				return argErr(name, out.arg, "layout %v overlaps %s %v", out.t, in.arg, in.t)
			}
		}
	}
	if cache.K.Buffer() == cache.V.Buffer() && byteRangesOverlap(cache.K, cache.V) {
		return argErr(name, "cache.V", "layout %v overlaps cache.K %v", cache.V, cache.K)
	}
	return nil
}
