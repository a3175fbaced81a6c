package kernels

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// AttentionArgs describes one attention call for Set.Attention:
//
//	O = softmax(Scale·Q·Kᵀ + Mask)·V   per query head
//
// over a batch of sequences packed along Q's rows (the semantics are
// op.CheckAttention's and backend.Backend.Attention's; the backend runs
// op.CheckAttention first and fills this struct from its tensors).
// Pointers are device addresses of element 0 of each tensor; strides are in
// elements; the innermost (head-dim) stride of Q, O, K and V is 1 and that of
// every other tensor's last dimension is 1.
//
// The I32 metadata (QueryStarts, KVStarts, KVLens, BlockTable) is read by
// the kernels, which check it: a fault is recorded in the error word at
// ErrorWord and the work it affects is skipped (see DecodeDeviceError).
type AttentionArgs struct {
	// DType is the dtype of Q, K, V and O: F32, F16 or BF16.
	DType tensor.DType
	// Batch is the number of sequences (≥ 1).
	Batch int
	// TotalQ is the number of rows (tokens) of Q and O; NHeads and
	// NKVHeads the query and key/value heads (NHeads a multiple of
	// NKVHeads; query head h reads KV head h/(NHeads/NKVHeads)); HeadDim
	// the elements per head, 1..256.
	TotalQ, NHeads, NKVHeads, HeadDim int

	// Q and O are [TotalQ, NHeads, HeadDim]: element (t, h, d) at
	// t·TokenStride + h·HeadStride + d. O must not overlap any input.
	Q                         cuda.DevicePtr
	QTokenStride, QHeadStride int
	O                         cuda.DevicePtr
	OTokenStride, OHeadStride int
	// QueryStarts is I32 [Batch+1], cumulative (QueryStarts[0] = 0,
	// QueryStarts[Batch] = TotalQ): sequence b's queries are rows
	// QueryStarts[b] .. QueryStarts[b+1]−1.
	QueryStarts cuda.DevicePtr

	// K and V hold the keys and values, in the layout Paged says; their
	// strides may differ (K and V may be views of one buffer).
	//
	// Contiguous (Paged false): [TotalKV, NKVHeads, HeadDim], element
	// (t, h, d) at t·TokenStride + h·HeadStride + d; the PageStrides are
	// unused.
	//
	// Paged: [NPages, PageSize, NKVHeads, HeadDim], element (page, slot, h,
	// d) at page·PageStride + slot·TokenStride + h·HeadStride + d.
	K, V                                   cuda.DevicePtr
	KPageStride, KTokenStride, KHeadStride int
	VPageStride, VTokenStride, VHeadStride int
	Paged                                  bool

	// Contiguous K/V: TotalKV rows; KVStarts, I32 [Batch+1] cumulative
	// (KVStarts[0] = 0): sequence b's keys are rows KVStarts[b] ..
	// KVStarts[b+1]−1.
	TotalKV  int
	KVStarts cuda.DevicePtr

	// Paged K/V: NPages pages of PageSize tokens (PageSize ≥ 1, any value);
	// BlockTable, I32 [Batch, MaxPagesPerSeq] with rows BlockTableRowStride
	// elements apart, lists each sequence's pages (key t of sequence b is
	// slot t % PageSize of page BlockTable[b, t / PageSize]); KVLens, I32
	// [Batch], is each sequence's number of keys.
	NPages, PageSize                    int
	BlockTable                          cuda.DevicePtr
	MaxPagesPerSeq, BlockTableRowStride int
	KVLens                              cuda.DevicePtr

	// Mask, when not 0, is an F32 additive mask [TotalQ, MaskCols], rows
	// MaskRowStride elements apart: Mask[r, j] is added to the scaled score
	// of Q's row r against key j of r's sequence (MaskCols must be at least
	// every sequence's key count; the kernels check it).
	Mask                    cuda.DevicePtr
	MaskRowStride, MaskCols int
	// LSE, when not 0, receives the natural log-sum-exp of every (query
	// row, head), F32 [NHeads, TotalQ] with heads LSEHeadStride elements
	// apart; −Inf for a query that sees no key (its output row is zeros).
	LSE           cuda.DevicePtr
	LSEHeadStride int

	// Scale multiplies Q·Kᵀ; 0 means 1/√HeadDim.
	Scale float32
	// Causal hides from the query at position p (query i of a sequence of
	// qLen queries and kvLen keys sits at p = kvLen − qLen + i) the keys
	// j > p; Window > 0 (with Causal) also hides the keys j ≤ p − Window.
	Causal bool
	Window int
	// MaxQueryLen and MaxKVLen bound any sequence's queries and keys: the
	// kernels are chosen and their grids sized by them (a decode-sized
	// MaxQueryLen selects the split decode kernel), and a sequence that
	// exceeds them is a fault. 0 means the safe bound: TotalQ; TotalKV or
	// MaxPagesPerSeq·PageSize. Pass op.AttentionShape's values.
	MaxQueryLen, MaxKVLen int

	// ErrorWord is the device error word (ErrorWordBytes, zeroed by the
	// caller; required).
	ErrorWord cuda.DevicePtr
}

// AttentionChoice says what Set.Attention runs for a call (for logs,
// tests and benchmarks).
type AttentionChoice struct {
	// Kernel is the attention kernel; Combine the merge of split partial
	// results run after it ("" when the keys are not split).
	Kernel, Combine string
	Kind            Kind
	// TileDim is the head dim of the fast kernel's tile (0 for the simple
	// kernel); SharedBytes its dynamic shared memory.
	TileDim, SharedBytes int
	// Splits of KVPerSplit keys each (decode; 1: none), and the workspace
	// bytes their partial results take.
	Splits         int
	KVPerSplit     int64
	WorkspaceBytes int64
}

// Attention queues the attention call a describes on st (see
// AttentionArgs). It checks the arguments (errors match
// op.ErrInvalidArgument), picks a kernel (planAttention), raises the
// kernel's dynamic shared memory limit on first use, and for a split
// decode grows the stream's split workspace first (see PrepareAttention).
// TotalQ = 0 launches nothing.
//
// Kernels: attention_<dt> (simple), attention_<dt>_prefill_d<D>,
// attention_<dt>_wgmma_d<D> (compute capability 9.0: K and V through TMA
// tensor maps encoded here per call),
// attention_<dt>_decode_d<D>, then attention_<dt>_combine after a split.
func (s *Set) Attention(st *cuda.Stream, a AttentionArgs) error {
	if err := checkAttentionArgs(&a); err != nil {
		return err
	}
	if a.TotalQ == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	plan := s.planAttentionLocked(&a, true)
	if plan.Kind == KindWGMMA {
		// The tensor maps are encoded per call on the host (no GPU work)
		// and passed by value, so a captured graph keeps its own copy. A
		// layout the driver will not describe runs on the mma.sync prefill.
		if err := s.attentionTensorMaps(&a, plan.Tile); err != nil {
			// Once per Set: a layout the driver refuses is refused every call.
			if !s.attn.tensorMapWarned {
				s.attn.tensorMapWarned = true
				s.log.Warn("kernels: no tensor maps for the Hopper attention kernel; using the mma.sync prefill (logged once)", "error", err)
			}
			plan = s.planAttention(&a, true, false)
		}
	}
	var ws cuda.DevicePtr
	if plan.Splits > 1 {
		var err error
		if ws, err = s.attentionWorkspace(st, plan.WorkspaceBytes); err != nil {
			// No room for partial results: the same kernel without splitting.
			s.log.Warn("kernels: no attention split workspace, running the decode kernel without splitting the keys",
				"bytes", plan.WorkspaceBytes, "error", err)
			plan = s.planAttentionLocked(&a, false)
		}
	}
	return s.launchAttention(st, &a, &plan, ws)
}

// PrepareAttention does for a everything Attention does but launch: it
// checks the arguments, loads the kernels' modules, raises their shared
// memory limit and grows st's split workspace to what a needs. Call it for
// the largest shapes before capturing a stream into a CUDA graph: a capture
// cannot allocate, and a captured launch keeps using the workspace it was
// captured with (the Set frees no workspace before Close).
func (s *Set) PrepareAttention(st *cuda.Stream, a AttentionArgs) error {
	if err := checkAttentionArgs(&a); err != nil {
		return err
	}
	if a.TotalQ == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	plan := s.planAttentionLocked(&a, true)
	if err := s.prepareSharedBytes(plan.Kernel, plan.SharedBytes); err != nil {
		return err
	}
	if plan.Splits > 1 {
		if _, err := s.function(plan.Combine); err != nil {
			return err
		}
		if _, err := s.attentionWorkspace(st, plan.WorkspaceBytes); err != nil {
			return err
		}
	}
	return nil
}

// AttentionChoice reports what Attention would run for a (assuming the
// split workspace can be had).
func (s *Set) AttentionChoice(a AttentionArgs) (AttentionChoice, error) {
	if err := checkAttentionArgs(&a); err != nil {
		return AttentionChoice{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	plan := s.planAttentionLocked(&a, true)
	c := AttentionChoice{Kernel: kernelTable[plan.Kernel].name, Kind: plan.Kind, SharedBytes: plan.SharedBytes,
		Splits: plan.Splits, KVPerSplit: plan.KVPerSplit, WorkspaceBytes: plan.WorkspaceBytes}
	if plan.Kind != KindSimple {
		c.TileDim = plan.Tile.Dim
	}
	if plan.Splits > 1 {
		c.Combine = kernelTable[plan.Combine].name
	}
	return c, nil
}

// planAttentionLocked plans a on this Set's device (s.mu held); splitOK
// false plans without a split workspace.
func (s *Set) planAttentionLocked(a *AttentionArgs, splitOK bool) attentionPlan {
	return s.planAttention(a, splitOK, true)
}

// planAttention is planAttentionLocked; hopperOK false keeps the sm_90a
// kernels out.
func (s *Set) planAttention(a *AttentionArgs, splitOK, hopperOK bool) attentionPlan {
	_, canAlloc := s.drv.(deviceMemory)
	maxQ, maxKV := attentionBounds(a)
	q := attentionProblem{
		DType: a.DType, HeadDim: a.HeadDim, Batch: a.Batch, NHeads: a.NHeads, NKVHeads: a.NKVHeads,
		TotalQ: a.TotalQ, MaxQueryLen: maxQ, MaxKVLen: maxKV,
		Aligned16: attentionAligned16(a),
		CC:        s.cc, SMCount: s.multiprocessorCount(), Variant: s.sel,
		SharedLimit: s.sharedLimit(),
		SplitOK:     splitOK && canAlloc,
		Paged:       a.Paged, PageSize: a.PageSize, KVRows: a.TotalKV,
		KVStridesOK: attentionKVStridesBelow(a, 1<<40),
	}
	if a.Paged {
		q.KVRows = a.NPages
	}
	// Only a call that could take the wgmma prefill loads its module.
	if _, ok := wgmmaTileFor(a.HeadDim); ok && hopperOK && s.cc == (ComputeCapability{9, 0}) && s.sel == VariantAuto &&
		(a.DType == tensor.F16 || a.DType == tensor.BF16) {
		q.Hopper = s.attentionHopperReady()
	}
	return planAttention(q)
}

// attentionKVStridesBelow: every K and V stride is below limit bytes.
func attentionKVStridesBelow(a *AttentionArgs, limit uint64) bool {
	eb := uint64(a.DType.BlockBytes())
	for _, st := range [...]int{a.KPageStride, a.KTokenStride, a.KHeadStride, a.VPageStride, a.VTokenStride, a.VHeadStride} {
		if uint64(st)*eb >= limit {
			return false
		}
	}
	return true
}

// attentionTensorMaps encodes the wgmma prefill's tensor maps of K and V
// into s.attn.mapK and mapV (s.mu held): contiguous, rank 3 (head dim, KV
// heads, tokens) with boxes (64, 1, KeysPerTile); paged, rank 4 (head dim,
// KV heads, page size, pages) with boxes (64, 1, R, 1) (wgmmaBoxRows);
// 128-byte swizzle, zeros out of bounds. A stride of a dimension of size 1
// is never stepped, so it is given as the dense one (the caller's may be
// anything, 0 included).
func (s *Set) attentionTensorMaps(a *AttentionArgs, tile attentionTile) error {
	enc, ok := s.drv.(tensorMapEncoder)
	if !ok {
		return fmt.Errorf("kernels: %s needs tensor maps, and the driver cannot encode them", op.NameAttention)
	}
	eb := uint64(a.DType.BlockBytes())
	dt := cuda.TensorMapFloat16
	if a.DType == tensor.BF16 {
		dt = cuda.TensorMapBFloat16
	}
	rows, _ := tile.wgmmaBoxRows(a.Paged, a.PageSize)
	stride := func(size, given int, dense uint64) uint64 {
		if size == 1 {
			return dense
		}
		return uint64(given) * eb
	}
	build := func(base cuda.DevicePtr, pageStride, tokenStride, headStride int) cuda.TensorMapSpec {
		headBytes := uint64(a.HeadDim) * eb
		sp := cuda.TensorMapSpec{DataType: dt, Global: base, Swizzle: cuda.TensorMapSwizzle128B, L2Promotion: cuda.TensorMapL2256B}
		hs := stride(a.NKVHeads, headStride, headBytes)
		if a.Paged {
			ts := stride(a.PageSize, tokenStride, hs*uint64(a.NKVHeads))
			sp.Rank = 4
			sp.Dims = [5]uint64{uint64(a.HeadDim), uint64(a.NKVHeads), uint64(a.PageSize), uint64(a.NPages)}
			sp.Strides = [4]uint64{hs, ts, stride(a.NPages, pageStride, ts*uint64(a.PageSize))}
			sp.Box = [5]uint32{attentionWGMMABoxCols, 1, uint32(rows), 1}
		} else {
			sp.Rank = 3
			sp.Dims = [5]uint64{uint64(a.HeadDim), uint64(a.NKVHeads), uint64(a.TotalKV)}
			sp.Strides = [4]uint64{hs, stride(a.TotalKV, tokenStride, hs*uint64(a.NKVHeads))}
			sp.Box = [5]uint32{attentionWGMMABoxCols, 1, uint32(rows)}
		}
		return sp
	}
	specK := build(a.K, a.KPageStride, a.KTokenStride, a.KHeadStride)
	specV := build(a.V, a.VPageStride, a.VTokenStride, a.VHeadStride)
	var err error
	if s.attn.mapK, err = enc.EncodeTensorMap(&specK); err != nil {
		return fmt.Errorf("kernels: %s: the tensor map of K: %w", op.NameAttention, err)
	}
	if s.attn.mapV, err = enc.EncodeTensorMap(&specV); err != nil {
		return fmt.Errorf("kernels: %s: the tensor map of V: %w", op.NameAttention, err)
	}
	return nil
}

// attentionBounds resolves MaxQueryLen and MaxKVLen: 0 (or more than the
// shapes allow) means the safe bound.
func attentionBounds(a *AttentionArgs) (maxQ, maxKV int) {
	maxQ, maxKV = a.MaxQueryLen, a.MaxKVLen
	if maxQ == 0 || maxQ > a.TotalQ {
		maxQ = a.TotalQ
	}
	capacity := int64(a.TotalKV)
	if a.Paged {
		capacity = int64(a.MaxPagesPerSeq) * int64(a.PageSize)
	}
	capacity = min(capacity, math.MaxInt32) // key counts are I32
	if maxKV == 0 || int64(maxKV) > capacity {
		maxKV = int(capacity)
	}
	return maxQ, maxKV
}

// attentionScale resolves Scale: 0 means 1/√HeadDim.
func attentionScale(a *AttentionArgs) float32 {
	if a.Scale == 0 {
		return float32(1 / math.Sqrt(float64(a.HeadDim)))
	}
	return a.Scale
}

// attentionAligned16: the fast kernels' 16-byte row copies apply (Q, O, K
// and V start on 16 bytes and step by multiples of 16 bytes).
func attentionAligned16(a *AttentionArgs) bool {
	eb := uint64(a.DType.BlockBytes())
	aligned := func(v uint64) bool { return v%16 == 0 }
	if !aligned(uint64(a.Q)) || !aligned(uint64(a.O)) || !aligned(uint64(a.K)) || !aligned(uint64(a.V)) {
		return false
	}
	for _, stride := range [...]int{a.QTokenStride, a.QHeadStride, a.OTokenStride, a.OHeadStride,
		a.KTokenStride, a.KHeadStride, a.VTokenStride, a.VHeadStride} {
		if !aligned(uint64(stride) * eb) {
			return false
		}
	}
	if a.Paged && (!aligned(uint64(a.KPageStride)*eb) || !aligned(uint64(a.VPageStride)*eb)) {
		return false
	}
	return a.HeadDim%8 == 0
}

// pageShift is log2(pageSize) for a power of two, else −1.
func pageShift(pageSize int) int32 {
	if pageSize > 0 && pageSize&(pageSize-1) == 0 {
		return int32(bits.TrailingZeros64(uint64(pageSize)))
	}
	return -1
}

// launchAttention packs and launches plan for a (s.mu held); ws is the
// split workspace when plan.Splits > 1.
func (s *Set) launchAttention(st *cuda.Stream, a *AttentionArgs, plan *attentionPlan, ws cuda.DevicePtr) error {
	maxQ, maxKV := attentionBounds(a)
	scale := attentionScale(a)
	p := &s.attn.params
	*p = attentionParams{
		Q: uint64(a.Q), O: uint64(a.O), K: uint64(a.K), V: uint64(a.V),
		QStarts: uint64(a.QueryStarts), Mask: uint64(a.Mask), LSE: uint64(a.LSE), ErrorWord: uint64(a.ErrorWord),
		QTokenStride: int64(a.QTokenStride), QHeadStride: int64(a.QHeadStride),
		OTokenStride: int64(a.OTokenStride), OHeadStride: int64(a.OHeadStride),
		KTokenStride: int64(a.KTokenStride), KHeadStride: int64(a.KHeadStride),
		VTokenStride: int64(a.VTokenStride), VHeadStride: int64(a.VHeadStride),
		MaskRowStride: int64(a.MaskRowStride), LSEHeadStride: int64(a.LSEHeadStride),
		TotalQ: int64(a.TotalQ), MaskCols: int64(a.MaskCols), Batch: int64(a.Batch),
		MaxQueryLen: int64(maxQ), MaxKVLen: int64(maxKV), Window: int64(a.Window),
		KVPerSplit: plan.KVPerSplit,
		NHeads:     int32(a.NHeads), NKVHeads: int32(a.NKVHeads), HeadDim: int32(a.HeadDim),
		PageShift: -1, NSplits: int32(plan.Splits), RowGroups: int32(plan.RowGroups),
		Scale: scale, ScaleLog2: float32(float64(scale) * math.Log2E),
	}
	if a.Causal {
		p.Causal = 1
	}
	if a.Paged {
		p.Paged = 1
		p.BlockTable, p.KVLens = uint64(a.BlockTable), uint64(a.KVLens)
		p.KPageStride, p.VPageStride = int64(a.KPageStride), int64(a.VPageStride)
		p.NPages, p.PageSize = int64(a.NPages), int64(a.PageSize)
		p.MaxPagesPerSeq, p.BlockTableRowStride = int64(a.MaxPagesPerSeq), int64(a.BlockTableRowStride)
		p.PageShift = pageShift(a.PageSize)
	} else {
		p.KVStarts, p.TotalKV = uint64(a.KVStarts), int64(a.TotalKV)
	}
	if plan.Splits > 1 {
		// Partial outputs first, then the log-sum-exps (see kiln_params.h).
		p.PartialO = uint64(ws)
		p.PartialLSE = uint64(ws) + uint64(int64(plan.Splits)*int64(a.TotalQ)*int64(a.NHeads)*int64(a.HeadDim)*4)
	}
	if err := s.prepareSharedBytes(plan.Kernel, plan.SharedBytes); err != nil {
		return err
	}
	s.args.Reset()
	cuda.Struct(&s.args, p)
	if plan.Kind == KindWGMMA {
		s.args.TensorMap(&s.attn.mapK).TensorMap(&s.attn.mapV) // encoded by Attention
	}
	lc := launchConfig{grid: plan.Grid, block: cuda.D1(plan.Threads), sharedBytes: plan.SharedBytes}
	if err := s.launch(plan.Kernel, lc, st); err != nil {
		return err
	}
	if plan.Splits > 1 {
		s.args.Reset()
		cuda.Struct(&s.args, p)
		lc := launchConfig{grid: plan.CombineGrid, block: cuda.D1(attentionCombineThreads)}
		if err := s.launch(plan.Combine, lc, st); err != nil {
			return err
		}
	}
	return nil
}

// checkAttentionArgs checks what the kernels rely on; errors name the
// argument and match op.ErrInvalidArgument. (Overlap between O and the
// inputs is op.CheckAttention's to refuse.)
func checkAttentionArgs(a *AttentionArgs) error {
	const name = op.NameAttention
	if !a.DType.IsFloat() {
		return argError(name, "q", "dtype %v is not one of F32, F16, BF16", a.DType)
	}
	if a.Batch < 1 || a.Batch >= math.MaxInt32 {
		return argError(name, "queryStarts", "batch %d: must be 1 to %d", a.Batch, math.MaxInt32-1)
	}
	if a.TotalQ < 0 || a.TotalQ > math.MaxInt32 {
		return argError(name, "q", "%d rows: must be 0 to %d (queryStarts is I32)", a.TotalQ, math.MaxInt32)
	}
	if a.NHeads < 1 || a.NHeads > math.MaxInt32 || a.NKVHeads < 1 || a.NHeads%a.NKVHeads != 0 {
		return argError(name, "kv.K", "%d query heads and %d KV heads: both at least 1, and the query heads a multiple of the KV heads",
			a.NHeads, a.NKVHeads)
	}
	if a.HeadDim < 1 || a.HeadDim > op.MaxHeadDim {
		return argError(name, "q", "head dimension %d is outside 1..%d", a.HeadDim, op.MaxHeadDim)
	}
	for _, st := range [...]struct {
		arg    string
		stride int
	}{{"q", a.QTokenStride}, {"q", a.QHeadStride}, {"dst", a.OTokenStride}, {"dst", a.OHeadStride},
		{"kv.K", a.KPageStride}, {"kv.K", a.KTokenStride}, {"kv.K", a.KHeadStride},
		{"kv.V", a.VPageStride}, {"kv.V", a.VTokenStride}, {"kv.V", a.VHeadStride},
		{"kv.BlockTable", a.BlockTableRowStride}, {"Mask", a.MaskRowStride}, {"LSE", a.LSEHeadStride}} {
		if st.stride < 0 {
			return argError(name, st.arg, "negative stride %d", st.stride)
		}
	}
	if a.Window < 0 || (a.Window > 0 && !a.Causal) {
		return argError(name, "Window", "%d: must be 0, or positive with Causal", a.Window)
	}
	if math.IsNaN(float64(a.Scale)) || math.IsInf(float64(a.Scale), 0) {
		return argError(name, "Scale", "%v is not a finite number", a.Scale)
	}
	if a.MaxQueryLen < 0 || a.MaxKVLen < 0 {
		return argError(name, "", "MaxQueryLen %d and MaxKVLen %d must not be negative", a.MaxQueryLen, a.MaxKVLen)
	}
	if a.MaskCols < 0 {
		return argError(name, "Mask", "%d columns", a.MaskCols)
	}
	if a.ErrorWord == 0 || uint64(a.ErrorWord)%4 != 0 {
		return argError(name, "errorWord", "device address %#x: a 4-byte aligned error word is required", uint64(a.ErrorWord))
	}

	eb := int64(a.DType.BlockBytes())
	nQ, nH, nKV, hd := int64(a.TotalQ), int64(a.NHeads), int64(a.NKVHeads), int64(a.HeadDim)
	batch := int64(a.Batch)
	spans := [...]attentionSpan{
		{"q", a.Q, eb, [4][2]int64{{nQ, int64(a.QTokenStride)}, {nH, int64(a.QHeadStride)}, {hd, 1}, {1, 0}}},
		{"dst", a.O, eb, [4][2]int64{{nQ, int64(a.OTokenStride)}, {nH, int64(a.OHeadStride)}, {hd, 1}, {1, 0}}},
		{"queryStarts", a.QueryStarts, 4, [4][2]int64{{batch + 1, 1}, {1, 0}, {1, 0}, {1, 0}}},
		{"Mask", a.Mask, 4, [4][2]int64{{nQ, int64(a.MaskRowStride)}, {int64(a.MaskCols), 1}, {1, 0}, {1, 0}}},
		{"LSE", a.LSE, 4, [4][2]int64{{nH, int64(a.LSEHeadStride)}, {nQ, 1}, {1, 0}, {1, 0}}},
	}
	for i := range spans {
		sp := &spans[i]
		if (sp.arg == "Mask" || sp.arg == "LSE") && sp.ptr == 0 {
			continue // absent
		}
		if err := sp.check(name); err != nil {
			return err
		}
	}
	if a.Paged {
		if a.PageSize < 1 || a.NPages < 0 || a.MaxPagesPerSeq < 0 {
			return argError(name, "kv.K", "%d pages of %d tokens, %d pages per sequence: page size at least 1, counts not negative",
				a.NPages, a.PageSize, a.MaxPagesPerSeq)
		}
		np, ps := int64(a.NPages), int64(a.PageSize)
		paged := [...]attentionSpan{
			{"kv.K", a.K, eb, [4][2]int64{{np, int64(a.KPageStride)}, {ps, int64(a.KTokenStride)}, {nKV, int64(a.KHeadStride)}, {hd, 1}}},
			{"kv.V", a.V, eb, [4][2]int64{{np, int64(a.VPageStride)}, {ps, int64(a.VTokenStride)}, {nKV, int64(a.VHeadStride)}, {hd, 1}}},
			{"kv.BlockTable", a.BlockTable, 4, [4][2]int64{{batch, int64(a.BlockTableRowStride)}, {int64(a.MaxPagesPerSeq), 1}, {1, 0}, {1, 0}}},
			{"kv.Lens", a.KVLens, 4, [4][2]int64{{batch, 1}, {1, 0}, {1, 0}, {1, 0}}},
		}
		for i := range paged {
			if err := paged[i].check(name); err != nil {
				return err
			}
		}
		return nil
	}
	if a.TotalKV < 0 || a.TotalKV > math.MaxInt32 {
		return argError(name, "kv.K", "%d rows: must be 0 to %d (kv.Starts is I32)", a.TotalKV, math.MaxInt32)
	}
	nk := int64(a.TotalKV)
	contiguous := [...]attentionSpan{
		{"kv.K", a.K, eb, [4][2]int64{{nk, int64(a.KTokenStride)}, {nKV, int64(a.KHeadStride)}, {hd, 1}, {1, 0}}},
		{"kv.V", a.V, eb, [4][2]int64{{nk, int64(a.VTokenStride)}, {nKV, int64(a.VHeadStride)}, {hd, 1}, {1, 0}}},
		{"kv.Starts", a.KVStarts, 4, [4][2]int64{{batch + 1, 1}, {1, 0}, {1, 0}, {1, 0}}},
	}
	for i := range contiguous {
		if err := contiguous[i].check(name); err != nil {
			return err
		}
	}
	return nil
}

// attentionSpan is the memory of one operand: up to four dimensions of
// (size, element stride) from ptr, elements of elemBytes bytes.
type attentionSpan struct {
	arg       string
	ptr       cuda.DevicePtr
	elemBytes int64
	dims      [4][2]int64
}

// check: when the operand has elements, a non-zero address aligned to the
// element size, and a last byte inside the address space.
func (sp *attentionSpan) check(name string) error {
	furthest := uint64(0)
	for _, d := range sp.dims {
		if d[0] == 0 {
			return nil // no elements: nothing is read or written
		}
		hi, lo := bits.Mul64(uint64(d[0]-1), uint64(d[1]))
		sum, carry := bits.Add64(furthest, lo, 0)
		if hi != 0 || carry != 0 || sum > math.MaxInt64/16 {
			return argError(name, sp.arg, "sizes and strides %v reach past the address space", sp.dims)
		}
		furthest = sum
	}
	if sp.ptr == 0 {
		return argError(name, sp.arg, "device address is 0")
	}
	if uint64(sp.ptr)%uint64(sp.elemBytes) != 0 {
		return argError(name, sp.arg, "device address %#x is not aligned to %d bytes", uint64(sp.ptr), sp.elemBytes)
	}
	end, carry := bits.Add64(uint64(sp.ptr), (furthest+1)*uint64(sp.elemBytes), 0)
	if carry != 0 || end > math.MaxInt64 {
		return argError(name, sp.arg, "sizes and strides %v from %#x reach past the address space", sp.dims, uint64(sp.ptr))
	}
	return nil
}

// AppendKVArgs describes one AppendKV call for Set.AppendKV: token i of K
// and V ([NNew, NKVHeads, HeadDim]) goes to slot Positions[i] % PageSize of
// page BlockTable[SeqIDs[i], Positions[i] / PageSize] of the paged caches
// KCache and VCache ([NPages, PageSize, NKVHeads, HeadDim]) (semantics:
// op.CheckAppendKV). Pointers are device addresses of element 0; strides
// are in elements, head vectors contiguous.
type AppendKVArgs struct {
	// DType is the dtype of K, V and the caches: F32, F16 or BF16.
	DType tensor.DType
	// NNew new tokens of NKVHeads heads of HeadDim elements.
	NNew, NKVHeads, HeadDim int

	// K and V: [NNew, NKVHeads, HeadDim].
	K, V                      cuda.DevicePtr
	KTokenStride, KHeadStride int
	VTokenStride, VHeadStride int
	// SeqIDs and Positions: I32 [NNew], each token's sequence (a row of
	// BlockTable) and position in it.
	SeqIDs, Positions cuda.DevicePtr

	// KCache and VCache: [NPages, PageSize, NKVHeads, HeadDim].
	KCache, VCache                                        cuda.DevicePtr
	KCachePageStride, KCacheTokenStride, KCacheHeadStride int
	VCachePageStride, VCacheTokenStride, VCacheHeadStride int
	NPages, PageSize                                      int
	// BlockTable: I32 [Batch, MaxPagesPerSeq], rows BlockTableRowStride
	// elements apart.
	BlockTable                                 cuda.DevicePtr
	Batch, MaxPagesPerSeq, BlockTableRowStride int

	// ErrorWord is the device error word (required): a seq id, position or
	// page out of range is recorded there and that token is not written.
	ErrorWord cuda.DevicePtr
}

// AppendKV queues the scatter a describes on st (see AppendKVArgs). NNew
// = 0 launches nothing. Kernel: append_kv_<dt>.
func (s *Set) AppendKV(st *cuda.Stream, a AppendKVArgs) error {
	if err := checkAppendKVArgs(&a); err != nil {
		return err
	}
	if a.NNew == 0 || a.NKVHeads == 0 || a.HeadDim == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	p := &s.attn.appendParams
	*p = appendKVParams{
		KCache: uint64(a.KCache), VCache: uint64(a.VCache), K: uint64(a.K), V: uint64(a.V),
		SeqIDs: uint64(a.SeqIDs), Positions: uint64(a.Positions), BlockTable: uint64(a.BlockTable),
		ErrorWord:    uint64(a.ErrorWord),
		KTokenStride: int64(a.KTokenStride), KHeadStride: int64(a.KHeadStride),
		VTokenStride: int64(a.VTokenStride), VHeadStride: int64(a.VHeadStride),
		KCachePageStride: int64(a.KCachePageStride), KCacheTokenStride: int64(a.KCacheTokenStride),
		KCacheHeadStride: int64(a.KCacheHeadStride),
		VCachePageStride: int64(a.VCachePageStride), VCacheTokenStride: int64(a.VCacheTokenStride),
		VCacheHeadStride:    int64(a.VCacheHeadStride),
		BlockTableRowStride: int64(a.BlockTableRowStride),
		NNew:                int64(a.NNew), Batch: int64(a.Batch), NPages: int64(a.NPages),
		PageSize: int64(a.PageSize), MaxPagesPerSeq: int64(a.MaxPagesPerSeq),
		NKVHeads: int32(a.NKVHeads), HeadDim: int32(a.HeadDim),
	}
	cuda.Struct(&s.args, p)
	return s.launch(appendKVKernels[a.DType], appendKVConfig(int64(a.NNew), int64(a.NKVHeads)*int64(a.HeadDim)), st)
}

// appendKVConfig launches append_kv: one block per token (grid-stride),
// enough threads for a token's elements.
func appendKVConfig(nNew, perToken int64) launchConfig {
	return launchConfig{grid: cuda.D1(int(gridFor(nNew, 1))), block: cuda.D1(int(threadsFor(perToken, appendKVThreads)))}
}

// checkAppendKVArgs checks what the kernel relies on (errors match
// op.ErrInvalidArgument).
func checkAppendKVArgs(a *AppendKVArgs) error {
	const name = op.NameAppendKV
	if !a.DType.IsFloat() {
		return argError(name, "cache.K", "dtype %v is not one of F32, F16, BF16", a.DType)
	}
	if a.NNew < 0 || a.NKVHeads < 0 || a.HeadDim < 0 || a.NKVHeads > math.MaxInt32 || a.HeadDim > math.MaxInt32 {
		return argError(name, "k", "%d tokens of %d heads of %d elements: sizes must not be negative", a.NNew, a.NKVHeads, a.HeadDim)
	}
	if a.PageSize < 1 || a.NPages < 0 || a.Batch < 0 || a.MaxPagesPerSeq < 0 {
		return argError(name, "cache", "%d pages of %d tokens, block table [%d, %d]: page size at least 1, counts not negative",
			a.NPages, a.PageSize, a.Batch, a.MaxPagesPerSeq)
	}
	for _, st := range [...]struct {
		arg    string
		stride int
	}{{"k", a.KTokenStride}, {"k", a.KHeadStride}, {"v", a.VTokenStride}, {"v", a.VHeadStride},
		{"cache.K", a.KCachePageStride}, {"cache.K", a.KCacheTokenStride}, {"cache.K", a.KCacheHeadStride},
		{"cache.V", a.VCachePageStride}, {"cache.V", a.VCacheTokenStride}, {"cache.V", a.VCacheHeadStride},
		{"cache.BlockTable", a.BlockTableRowStride}} {
		if st.stride < 0 {
			return argError(name, st.arg, "negative stride %d", st.stride)
		}
	}
	if a.ErrorWord == 0 || uint64(a.ErrorWord)%4 != 0 {
		return argError(name, "errorWord", "device address %#x: a 4-byte aligned error word is required", uint64(a.ErrorWord))
	}
	eb := int64(a.DType.BlockBytes())
	n, nKV, hd := int64(a.NNew), int64(a.NKVHeads), int64(a.HeadDim)
	np, ps := int64(a.NPages), int64(a.PageSize)
	spans := [...]attentionSpan{
		{"k", a.K, eb, [4][2]int64{{n, int64(a.KTokenStride)}, {nKV, int64(a.KHeadStride)}, {hd, 1}, {1, 0}}},
		{"v", a.V, eb, [4][2]int64{{n, int64(a.VTokenStride)}, {nKV, int64(a.VHeadStride)}, {hd, 1}, {1, 0}}},
		{"seqIDs", a.SeqIDs, 4, [4][2]int64{{n, 1}, {1, 0}, {1, 0}, {1, 0}}},
		{"positions", a.Positions, 4, [4][2]int64{{n, 1}, {1, 0}, {1, 0}, {1, 0}}},
		{"cache.K", a.KCache, eb, [4][2]int64{{np, int64(a.KCachePageStride)}, {ps, int64(a.KCacheTokenStride)}, {nKV, int64(a.KCacheHeadStride)}, {hd, 1}}},
		{"cache.V", a.VCache, eb, [4][2]int64{{np, int64(a.VCachePageStride)}, {ps, int64(a.VCacheTokenStride)}, {nKV, int64(a.VCacheHeadStride)}, {hd, 1}}},
		{"cache.BlockTable", a.BlockTable, 4, [4][2]int64{{int64(a.Batch), int64(a.BlockTableRowStride)}, {int64(a.MaxPagesPerSeq), 1}, {1, 0}, {1, 0}}},
	}
	if n == 0 || nKV == 0 || hd == 0 {
		return nil // nothing is read or written
	}
	for i := range spans {
		if err := spans[i].check(name); err != nil {
			return err
		}
	}
	return nil
}
