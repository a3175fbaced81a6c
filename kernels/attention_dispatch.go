package kernels

import (
	"fmt"
	"math"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Attention dispatch: which kernel, tile, grid and split count an attention
// call gets. A pure function of the problem (planAttention), so that a table
// of cases tests it.
//
// Kernel choice (Variant auto; VariantSimple always takes the simple
// kernel, and a variant marked disabled in variants.go is skipped):
//
//	F32, a head dim without a tile,   attention_<dt> (simple)
//	or rows not 16-byte aligned
//	MaxQueryLen ≤ 16 and              attention_<dt>_decode_d<D>, then
//	⌈MaxQueryLen·G/16⌉ ≤ 4            attention_<dt>_combine when split
//	otherwise                         attention_<dt>_prefill_d<D>
//
// (G = NHeads/NKVHeads; D the tile head dim: 40 → 48, 48, 64, 80, 96, 128,
// 160, 256.) A fast kernel whose shared memory exceeds what the device (or
// the driver binding) grants a block, or whose grid would exceed the
// hardware limits, gives way to the next choice, the simple kernel last.
//
// On compute capability 9.0, before the mma.sync prefill (after decode),
// the Hopper prefill attention_<dt>_wgmma_d<D> (sm_90a wgmma and TMA,
// attention_wgmma.cu) when planHopperPrefill's conditions hold: the
// family's sm_90a module loaded and the driver encodes tensor maps
// (attentionProblem.Hopper), head dim exactly 64, 128 or 256, and for paged
// K/V a page size whose box rows R = min(BN, page size) divide BN and the
// page size and are a multiple of 8 (BN = 128 for D 64 and 128, 64 for
// 256: page sizes 8, 16, 32, 64 or a multiple of BN), fewer than 2^31
// pages, and K/V strides below 2^40 bytes (TMA's limit; the 16-byte
// alignment TMA needs is Aligned16's). Everything the mma.sync prefill
// supports otherwise (varlen, GQA, causal offset, window, mask, LSE, the
// error word) the wgmma kernel supports too; the rest falls back.
//
// Split-KV (decode): with base = Batch·rowGroups·NKVHeads blocks fewer
// than the SMs, the keys are split into s = min(⌈2·SMs/base⌉, 32,
// ⌊MaxKVLen/256⌋) slices (none when s < 2), each a whole number of the
// block's key tiles; the workspace holds s·TotalQ·NHeads·(HeadDim+1)
// floats (at most maxAttentionWorkspaceBytes; fewer splits otherwise).
// Unmeasured: revisit every threshold with GPU timings.

// Launch geometry of the attention kernels; the .cu files have the same
// numbers (TestAttentionConstantsMatchSources).
const (
	attentionSimpleThreads  = 128 // kSimpleThreads: one warp per (query row, head)
	attentionCombineThreads = 128 // kCombineThreads: one warp per (query, head)
	attentionPrefillThreads = 128 // kPrefillThreads
	attentionPrefillRows    = 64  // kPrefillRows: query rows per block
	attentionDecodeRows     = 16  // kDecodeRows: (query, head) rows per block
	attentionDecodeKeys     = 16  // kDecodeKeys: keys per warp tile
	attentionMaxSplits      = 32  // kMaxSplits: one split per lane in the combine
	appendKVThreads         = 256 // kAppendKVThreads
)

// Dispatch thresholds (unmeasured).
const (
	// attentionDecodeMaxQueryLen and attentionDecodeMaxRowGroups bound the
	// calls the decode kernel takes: few queries, at most 4 blocks of 16
	// (query, head) rows per KV head (each reads the keys once).
	attentionDecodeMaxQueryLen  = 16
	attentionDecodeMaxRowGroups = 4
	// attentionMinKeysPerSplit: a split has at least this many keys.
	attentionMinKeysPerSplit = 256
	// maxAttentionWorkspaceBytes bounds the split partial results of one call.
	maxAttentionWorkspaceBytes = 256 << 20
	// staticSharedBytes is what every block may use without raising the
	// kernel's dynamic shared memory limit.
	staticSharedBytes = 48 << 10
)

// attentionTile is one fast kernel's tile configuration: Dim the head dim
// it is built for (its name's d<Dim>; smaller head dims that are multiples
// of 8 are zero-padded), KeysPerTile the keys per tile (prefill), Warps the
// warps per block (decode; prefill always has 4), QInRegisters whether Q's
// mma fragments stay in registers. The KILN_ATTENTION_PREFILL_ALL and
// KILN_ATTENTION_DECODE_ALL lines of the .cu files list the same values.
type attentionTile struct {
	Dim          int
	KeysPerTile  int
	Warps        int
	QInRegisters bool
}

// prefillTiles and decodeTiles are the fast kernels' tiles, one per Dim.
var (
	prefillTiles = []attentionTile{
		{Dim: 48, KeysPerTile: 64, Warps: 4, QInRegisters: true},
		{Dim: 64, KeysPerTile: 64, Warps: 4, QInRegisters: true},
		{Dim: 80, KeysPerTile: 64, Warps: 4, QInRegisters: true},
		{Dim: 96, KeysPerTile: 64, Warps: 4, QInRegisters: false},
		{Dim: 128, KeysPerTile: 64, Warps: 4, QInRegisters: false},
		{Dim: 160, KeysPerTile: 64, Warps: 4, QInRegisters: false},
		{Dim: 256, KeysPerTile: 32, Warps: 4, QInRegisters: false},
	}
	decodeTiles = []attentionTile{
		{Dim: 48, KeysPerTile: attentionDecodeKeys, Warps: 4, QInRegisters: true},
		{Dim: 64, KeysPerTile: attentionDecodeKeys, Warps: 4, QInRegisters: true},
		{Dim: 80, KeysPerTile: attentionDecodeKeys, Warps: 4, QInRegisters: true},
		{Dim: 96, KeysPerTile: attentionDecodeKeys, Warps: 4, QInRegisters: false},
		{Dim: 128, KeysPerTile: attentionDecodeKeys, Warps: 4, QInRegisters: false},
		{Dim: 160, KeysPerTile: attentionDecodeKeys, Warps: 2, QInRegisters: false},
		{Dim: 256, KeysPerTile: attentionDecodeKeys, Warps: 2, QInRegisters: false},
	}
)

// attentionTileDim is the tile head dim a head dim runs in on the fast
// kernels (0: none, the simple kernel): the head dims models use, 40 (SD
// UNets) padded to 48.
func attentionTileDim(headDim int) int {
	switch headDim {
	case 40, 48:
		return 48
	case 64, 80, 96, 128, 160, 256:
		return headDim
	}
	return 0
}

func tileFor(tiles []attentionTile, dim int) attentionTile {
	for _, t := range tiles {
		if t.Dim == dim {
			return t
		}
	}
	panic(fmt.Sprintf("kernels: no attention tile for head dim %d", dim)) // attentionTileDim lists only tiled dims
}

// prefillSharedBytes: Q (64 rows), K and V (KeysPerTile rows each), rows of
// Dim + 8 two-byte elements.
func (t attentionTile) prefillSharedBytes() int {
	return (attentionPrefillRows + 2*t.KeysPerTile) * (t.Dim + 8) * 2
}

// decodeSharedBytes: Q (16 rows), then per warp two stages of K and V (16
// rows each), rows of Dim + 8 two-byte elements.
func (t attentionTile) decodeSharedBytes() int {
	return (attentionDecodeRows + t.Warps*4*attentionDecodeKeys) * (t.Dim + 8) * 2
}

// attentionHopperKinds are the sm_90a-only attention variants dispatch
// tries first for prefill on compute capability 9.0.
var attentionHopperKinds = []Kind{KindWGMMA}

// Launch geometry of the wgmma prefill (attention_wgmma.cu's
// kWgmmaThreads, kWgmmaRows; TestAttentionWGMMAConstantsMatchSources).
const (
	attentionWGMMAThreads = 384 // 2 consumer warpgroups + the producer warpgroup
	attentionWGMMARows    = 128 // query rows per block, 64 per consumer warpgroup
	// attentionWGMMABoxCols is the inner extent of every TMA box: 64
	// elements, 128 bytes, the 128-byte swizzle span.
	attentionWGMMABoxCols = 64
)

// wgmmaTiles are the wgmma prefill's tiles (KILN_ATTENTION_WGMMA_ALL lines
// of attention_wgmma.cu): Dim the head dim (exact), KeysPerTile BN.
var wgmmaTiles = []attentionTile{
	{Dim: 64, KeysPerTile: 128, Warps: 12},
	{Dim: 128, KeysPerTile: 128, Warps: 12},
	{Dim: 256, KeysPerTile: 64, Warps: 12},
}

// wgmmaTileFor is the wgmma tile of a head dim (ok false: none).
func wgmmaTileFor(headDim int) (attentionTile, bool) {
	for _, t := range wgmmaTiles {
		if t.Dim == headDim {
			return t, true
		}
	}
	return attentionTile{}, false
}

// wgmmaSharedBytes: 1024 bytes of slack to round the base up to the
// swizzle pattern's 1024 bytes, Q (128 rows), K and V of two stages
// (KeysPerTile rows each), rows of Dim two-byte elements, and 64 bytes for
// the mbarriers.
func (t attentionTile) wgmmaSharedBytes() int {
	return 1024 + (attentionWGMMARows+4*t.KeysPerTile)*t.Dim*2 + 64
}

// wgmmaBoxRows is the key rows of one TMA box: a whole key tile for
// contiguous K/V, min(KeysPerTile, pageSize) for paged (ok false when that
// does not divide both or is not a multiple of 8, so boxes would cross a
// page or break the swizzle pattern).
func (t attentionTile) wgmmaBoxRows(paged bool, pageSize int) (int, bool) {
	if !paged {
		return t.KeysPerTile, true
	}
	rows := min(t.KeysPerTile, pageSize)
	return rows, rows%8 == 0 && t.KeysPerTile%rows == 0 && pageSize%rows == 0
}

// attentionProblem is what dispatch decides from.
type attentionProblem struct {
	DType                            tensor.DType
	HeadDim, Batch, NHeads, NKVHeads int
	TotalQ                           int
	// MaxQueryLen and MaxKVLen are the effective bounds (resolved).
	MaxQueryLen, MaxKVLen int
	// Aligned16: Q, K, V and O start on 16 bytes and every token, head and
	// page stride is a multiple of 16 bytes (the fast kernels copy rows in
	// 16-byte chunks).
	Aligned16 bool
	CC        ComputeCapability
	SMCount   int
	Variant   Variant
	// SharedLimit is the most dynamic shared memory a block can be given
	// (staticSharedBytes when the limit cannot be raised).
	SharedLimit int
	// SplitOK: a split workspace can be allocated.
	SplitOK bool
	// Hopper: the sm_90a module of FamilyAttentionWGMMA loaded and the
	// driver can encode tensor maps (compute capability 9.0 only).
	Hopper bool
	// Paged, PageSize and KVRows (TotalKV, or NPages when paged) describe
	// K/V for the TMA boxes; KVStridesOK: every K/V stride is below 2^40
	// bytes.
	Paged       bool
	PageSize    int
	KVRows      int
	KVStridesOK bool
}

// attentionPlan is dispatch's answer.
type attentionPlan struct {
	Kind        Kind
	Kernel      kernelID
	Tile        attentionTile // fast kernels
	Threads     int
	SharedBytes int
	Grid        cuda.Dim3
	// RowGroups: decode blocks per (sequence, KV head) along the (query,
	// head) rows.
	RowGroups int
	// Splits of KVPerSplit keys (decode; 1: no split, no combine); the
	// combine kernel and its grid, and the workspace, when split.
	Splits         int
	KVPerSplit     int64
	Combine        kernelID
	CombineGrid    cuda.Dim3
	WorkspaceBytes int64
}

// planAttention chooses the kernel, tile, grid and split count for q.
func planAttention(q attentionProblem) attentionPlan {
	plan := attentionPlan{Kind: KindSimple, Splits: 1, RowGroups: 1}
	group := q.NHeads / q.NKVHeads
	rowGroups := ceilDiv(int64(q.MaxQueryLen)*int64(group), attentionDecodeRows)
	tileDim := attentionTileDim(q.HeadDim)
	fast := q.Variant == VariantAuto && (q.DType == tensor.F16 || q.DType == tensor.BF16) && tileDim != 0 && q.Aligned16

	if fast && q.MaxQueryLen <= attentionDecodeMaxQueryLen && rowGroups <= attentionDecodeMaxRowGroups &&
		q.NKVHeads <= maxGridYZ && int64(q.Batch)*rowGroups <= maxGridX &&
		fastAllowed(q.Variant, FamilyAttentionDecode, KindDecode) {
		tile := tileFor(decodeTiles, tileDim)
		if tile.decodeSharedBytes() <= q.SharedLimit {
			return planDecode(q, tile, max(rowGroups, 1))
		}
	}
	if fast && q.CC == (ComputeCapability{9, 0}) {
		if plan, ok := planHopperPrefill(q); ok {
			return plan
		}
	}
	if fast && q.NHeads <= maxGridYZ && fastAllowed(q.Variant, FamilyAttentionPrefill, KindPrefill) {
		tile := tileFor(prefillTiles, tileDim)
		if tile.prefillSharedBytes() <= q.SharedLimit {
			plan.Kind = KindPrefill
			plan.Kernel = attentionFastKernels[attentionKey{KindPrefill, q.DType, tileDim}]
			plan.Tile = tile
			plan.Threads = attentionPrefillThreads
			plan.SharedBytes = tile.prefillSharedBytes()
			plan.Grid = cuda.Dim3{X: uint32(ceilDiv(int64(q.TotalQ), attentionPrefillRows)), Y: uint32(q.NHeads), Z: 1}
			return plan
		}
	}
	plan.Kernel = attentionSimpleKernels[q.DType]
	plan.Threads = attentionSimpleThreads
	plan.Grid = cuda.D1(int(gridFor(int64(q.TotalQ)*int64(q.NHeads), attentionSimpleThreads/32)))
	return plan
}

// planHopperPrefill plans the first of attentionHopperKinds that applies to
// q (the caller checked compute capability 9.0 and the fast-kernel
// conditions): the wgmma prefill, under the conditions of the comment at
// the top of this file.
func planHopperPrefill(q attentionProblem) (attentionPlan, bool) {
	if !q.Hopper || q.CC != (ComputeCapability{9, 0}) || !fastAllowed(q.Variant, FamilyAttentionWGMMA, KindWGMMA) {
		return attentionPlan{}, false
	}
	tile, ok := wgmmaTileFor(q.HeadDim)
	if !ok || q.NHeads > maxGridYZ || q.KVRows < 1 || q.KVRows >= math.MaxInt32 || !q.KVStridesOK {
		return attentionPlan{}, false
	}
	if _, ok := tile.wgmmaBoxRows(q.Paged, q.PageSize); !ok {
		return attentionPlan{}, false
	}
	if tile.wgmmaSharedBytes() > q.SharedLimit {
		return attentionPlan{}, false
	}
	return attentionPlan{
		Kind:        KindWGMMA,
		Kernel:      attentionFastKernels[attentionKey{KindWGMMA, q.DType, tile.Dim}],
		Tile:        tile,
		Threads:     attentionWGMMAThreads,
		SharedBytes: tile.wgmmaSharedBytes(),
		Grid:        cuda.Dim3{X: uint32(ceilDiv(int64(q.TotalQ), attentionWGMMARows)), Y: uint32(q.NHeads), Z: 1},
		Splits:      1,
		RowGroups:   1,
	}, true
}

// planDecode plans the split decode kernel with the given tile.
func planDecode(q attentionProblem, tile attentionTile, rowGroups int64) attentionPlan {
	plan := attentionPlan{
		Kind:        KindDecode,
		Kernel:      attentionFastKernels[attentionKey{KindDecode, q.DType, tile.Dim}],
		Tile:        tile,
		Threads:     32 * tile.Warps,
		SharedBytes: tile.decodeSharedBytes(),
		RowGroups:   int(rowGroups),
		Splits:      1,
	}
	step := int64(attentionDecodeKeys * tile.Warps) // keys the block's warps take in one round
	maxKV := int64(q.MaxKVLen)
	base := int64(q.Batch) * rowGroups * int64(q.NKVHeads)
	sms := int64(q.SMCount)
	if sms <= 0 {
		sms = defaultSMCount
	}
	if q.SplitOK && fastAllowed(q.Variant, FamilyAttention, KindCombine) && base < sms {
		s := min(ceilDiv(2*sms, base), attentionMaxSplits, maxKV/attentionMinKeysPerSplit)
		for ; s >= 2; s-- {
			per := ceilDiv(ceilDiv(maxKV, s), step) * step
			n := ceilDiv(maxKV, per)
			bytes := n * int64(q.TotalQ) * int64(q.NHeads) * int64(q.HeadDim+1) * 4
			if n >= 2 && bytes <= maxAttentionWorkspaceBytes {
				plan.Splits, plan.KVPerSplit, plan.WorkspaceBytes = int(n), per, bytes
				break
			}
		}
	}
	if plan.Splits == 1 {
		plan.KVPerSplit = max(ceilDiv(maxKV, step)*step, step)
	} else {
		plan.Combine = attentionCombineKernels[q.DType]
		plan.CombineGrid = cuda.D1(int(gridFor(int64(q.Batch)*int64(q.MaxQueryLen)*int64(q.NHeads), attentionCombineThreads/32)))
	}
	plan.Grid = cuda.Dim3{X: uint32(int64(q.Batch) * rowGroups), Y: uint32(q.NKVHeads), Z: uint32(plan.Splits)}
	return plan
}
