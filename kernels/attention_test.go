package kernels

import (
	"errors"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// smemDriver is the fake driver plus the shared-memory configuration the
// real one has: it reports an opt-in limit and records the limits set.
type smemDriver struct {
	*fakeDriver
	optin    int
	optinErr error
	setErr   error
	set      map[string]int // kernel name → bytes set
	setCalls int
}

func (d *smemDriver) MaxSharedMemoryPerBlockOptin() (int, error) { return d.optin, d.optinErr }

func (d *smemDriver) SetMaxDynamicSharedBytes(fn *cuda.Function, n int) error {
	d.setCalls++
	if d.setErr != nil {
		return d.setErr
	}
	d.set[d.names[fn]] = n
	return nil
}

// attentionSet is a Set on a fake driver with an H100's SMs and shared
// memory opt-in limit.
func attentionSet(t *testing.T, cc ComputeCapability, sel Variant) (*Set, *smemDriver) {
	t.Helper()
	d := &smemDriver{fakeDriver: newFakeDriver(), optin: 227 << 10, set: map[string]int{}}
	d.smCount = 132
	s, err := newSet(d, cc, Options{Variant: sel})
	if err != nil {
		t.Fatal(err)
	}
	return s, d
}

// contiguousArgs is a packed contiguous call: Q [totalQ, nHeads, hd] and K,
// V [totalKV, nKV, hd], each densely packed, at distinct 16-byte aligned
// addresses.
func contiguousArgs(dt tensor.DType, batch, totalQ, totalKV, nHeads, nKV, hd int) AttentionArgs {
	return AttentionArgs{
		DType: dt, Batch: batch, TotalQ: totalQ, NHeads: nHeads, NKVHeads: nKV, HeadDim: hd,
		Q: 0x1000_0000, QTokenStride: nHeads * hd, QHeadStride: hd,
		O: 0x2000_0000, OTokenStride: nHeads * hd, OHeadStride: hd,
		QueryStarts: 0x3000_0000,
		K:           0x4000_0000, KTokenStride: nKV * hd, KHeadStride: hd,
		V: 0x5000_0000, VTokenStride: nKV * hd, VHeadStride: hd,
		TotalKV: totalKV, KVStarts: 0x3100_0000,
		ErrorWord: 0x3200_0000,
	}
}

// pagedArgs is a paged call: K, V [nPages, pageSize, nKV, hd].
func pagedArgs(dt tensor.DType, batch, totalQ, nHeads, nKV, hd, nPages, pageSize, maxPages int) AttentionArgs {
	a := contiguousArgs(dt, batch, totalQ, 0, nHeads, nKV, hd)
	a.KVStarts = 0
	a.Paged = true
	a.NPages, a.PageSize, a.MaxPagesPerSeq = nPages, pageSize, maxPages
	a.KPageStride, a.VPageStride = pageSize*nKV*hd, pageSize*nKV*hd
	a.BlockTable, a.BlockTableRowStride, a.KVLens = 0x3300_0000, maxPages, 0x3400_0000
	return a
}

func TestPlanAttention(t *testing.T) {
	h100 := ComputeCapability{9, 0}
	base := attentionProblem{DType: tensor.F16, HeadDim: 128, Batch: 4, NHeads: 32, NKVHeads: 8,
		TotalQ: 4096, MaxQueryLen: 1024, MaxKVLen: 1024, Aligned16: true,
		CC: h100, SMCount: 132, SharedLimit: 227 << 10, SplitOK: true}
	decode := base
	decode.Batch, decode.NHeads, decode.NKVHeads, decode.TotalQ, decode.MaxQueryLen, decode.MaxKVLen = 8, 64, 8, 8, 1, 8192
	tests := []struct {
		name   string
		edit   func(q *attentionProblem)
		from   attentionProblem
		kernel string
		check  func(t *testing.T, p attentionPlan)
	}{
		{name: "prefill d128", from: base, kernel: "attention_f16_prefill_d128", check: func(t *testing.T, p attentionPlan) {
			// 4096 rows: 64 tiles of 64; (64 + 2·64)·136·2 bytes of shared memory.
			if p.Grid != (cuda.Dim3{X: 64, Y: 32, Z: 1}) || p.Threads != 128 || p.SharedBytes != 52224 || p.Splits != 1 {
				t.Errorf("grid %v threads %d shared %d splits %d", p.Grid, p.Threads, p.SharedBytes, p.Splits)
			}
		}},
		{name: "bf16 head dim 40 runs in d48", from: base, edit: func(q *attentionProblem) { q.DType, q.HeadDim = tensor.BF16, 40 },
			kernel: "attention_bf16_prefill_d48", check: func(t *testing.T, p attentionPlan) {
				if p.SharedBytes != (64+128)*56*2 {
					t.Errorf("shared %d", p.SharedBytes)
				}
			}},
		{name: "head dim 160", from: base, edit: func(q *attentionProblem) { q.HeadDim = 160 }, kernel: "attention_f16_prefill_d160"},
		{name: "head dim 256 takes 32-key tiles", from: base, edit: func(q *attentionProblem) { q.HeadDim = 256 },
			kernel: "attention_f16_prefill_d256", check: func(t *testing.T, p attentionPlan) {
				if p.Tile.KeysPerTile != 32 || p.SharedBytes != (64+64)*264*2 {
					t.Errorf("tile %+v shared %d", p.Tile, p.SharedBytes)
				}
			}},
		{name: "head dim 72 has no tile", from: base, edit: func(q *attentionProblem) { q.HeadDim = 72 }, kernel: "attention_f16"},
		{name: "f32 is simple", from: base, edit: func(q *attentionProblem) { q.DType = tensor.F32 }, kernel: "attention_f32",
			check: func(t *testing.T, p attentionPlan) {
				// 4096·32 (row, head) warps, 4 per block.
				if p.Grid != cuda.D1(32768) || p.Threads != 128 || p.SharedBytes != 0 {
					t.Errorf("grid %v threads %d shared %d", p.Grid, p.Threads, p.SharedBytes)
				}
			}},
		{name: "simple grid is capped", from: base, edit: func(q *attentionProblem) { q.DType, q.TotalQ, q.NHeads = tensor.F32, 1<<30, 64 },
			kernel: "attention_f32", check: func(t *testing.T, p attentionPlan) {
				if p.Grid != cuda.D1(maxBlocks) {
					t.Errorf("grid %v, want %d blocks (grid-stride)", p.Grid, maxBlocks)
				}
			}},
		{name: "unaligned rows are simple", from: base, edit: func(q *attentionProblem) { q.Aligned16 = false }, kernel: "attention_f16"},
		{name: "KILN_KERNELS=simple", from: base, edit: func(q *attentionProblem) { q.Variant = VariantSimple }, kernel: "attention_f16"},
		{name: "48 KiB of shared memory: d128 does not fit", from: base, edit: func(q *attentionProblem) { q.SharedLimit = staticSharedBytes },
			kernel: "attention_f16"},
		{name: "48 KiB of shared memory: d96 fits", from: base, edit: func(q *attentionProblem) { q.SharedLimit, q.HeadDim = staticSharedBytes, 96 },
			kernel: "attention_f16_prefill_d96"},
		{name: "sm_80 prefill", from: base, edit: func(q *attentionProblem) { q.CC = ComputeCapability{8, 0} }, kernel: "attention_f16_prefill_d128"},
		{name: "more heads than grid.y allows", from: base, edit: func(q *attentionProblem) { q.NHeads, q.NKVHeads = 1<<17, 1<<17 },
			kernel: "attention_f16"},
		{name: "decode, split", from: decode, kernel: "attention_f16_decode_d128", check: func(t *testing.T, p attentionPlan) {
			// 8 sequences × 1 row group × 8 KV heads = 64 blocks < 132 SMs:
			// min(⌈264/64⌉ = 5, 32, 8192/256) = 5 splits of ⌈1639/64⌉·64 = 1664 keys.
			if p.Splits != 5 || p.KVPerSplit != 1664 || p.RowGroups != 1 {
				t.Errorf("splits %d × %d keys, %d row groups", p.Splits, p.KVPerSplit, p.RowGroups)
			}
			if p.Grid != (cuda.Dim3{X: 8, Y: 8, Z: 5}) || p.Threads != 128 || p.SharedBytes != (16+256)*136*2 {
				t.Errorf("grid %v threads %d shared %d", p.Grid, p.Threads, p.SharedBytes)
			}
			if want := int64(5 * 8 * 64 * 129 * 4); p.WorkspaceBytes != want {
				t.Errorf("workspace %d bytes, want %d", p.WorkspaceBytes, want)
			}
			if kernelTable[p.Combine].name != "attention_f16_combine" || p.CombineGrid != cuda.D1(8*1*64/4) {
				t.Errorf("combine %s grid %v", kernelTable[p.Combine].name, p.CombineGrid)
			}
		}},
		{name: "decode, enough blocks: no split", from: decode, edit: func(q *attentionProblem) { q.Batch, q.TotalQ = 128, 128 },
			kernel: "attention_f16_decode_d128", check: func(t *testing.T, p attentionPlan) {
				if p.Splits != 1 || p.KVPerSplit != 8192 || p.WorkspaceBytes != 0 || p.Grid != (cuda.Dim3{X: 128, Y: 8, Z: 1}) {
					t.Errorf("splits %d × %d, workspace %d, grid %v", p.Splits, p.KVPerSplit, p.WorkspaceBytes, p.Grid)
				}
			}},
		{name: "decode, no workspace: no split", from: decode, edit: func(q *attentionProblem) { q.SplitOK = false },
			kernel: "attention_f16_decode_d128", check: func(t *testing.T, p attentionPlan) {
				if p.Splits != 1 || p.KVPerSplit != 8192 {
					t.Errorf("splits %d × %d", p.Splits, p.KVPerSplit)
				}
			}},
		{name: "decode, short keys: no split", from: decode, edit: func(q *attentionProblem) { q.MaxKVLen = 300 },
			kernel: "attention_f16_decode_d128", check: func(t *testing.T, p attentionPlan) {
				// 300/256 = 1 split at most; 300 keys rounded up to 64.
				if p.Splits != 1 || p.KVPerSplit != 320 {
					t.Errorf("splits %d × %d", p.Splits, p.KVPerSplit)
				}
			}},
		{name: "decode, no keys", from: decode, edit: func(q *attentionProblem) { q.MaxKVLen = 0 },
			kernel: "attention_f16_decode_d128", check: func(t *testing.T, p attentionPlan) {
				if p.Splits != 1 || p.KVPerSplit != 64 {
					t.Errorf("splits %d × %d", p.Splits, p.KVPerSplit)
				}
			}},
		{name: "decode, workspace too large: no split", from: decode, edit: func(q *attentionProblem) { q.Batch, q.TotalQ = 1, 4_000_000 },
			kernel: "attention_f16_decode_d128", check: func(t *testing.T, p attentionPlan) {
				if p.Splits != 1 || p.WorkspaceBytes != 0 {
					t.Errorf("splits %d, workspace %d", p.Splits, p.WorkspaceBytes)
				}
			}},
		{name: "decode, 8 queries of a GQA group of 8: 4 row groups", from: decode, edit: func(q *attentionProblem) { q.MaxQueryLen, q.TotalQ = 8, 64 },
			kernel: "attention_f16_decode_d128", check: func(t *testing.T, p attentionPlan) {
				// 256 blocks ≥ 132 SMs: no split.
				if p.RowGroups != 4 || p.Splits != 1 || p.Grid != (cuda.Dim3{X: 32, Y: 8, Z: 1}) {
					t.Errorf("row groups %d splits %d grid %v", p.RowGroups, p.Splits, p.Grid)
				}
			}},
		{name: "9 queries of a GQA group of 8: prefill", from: decode, edit: func(q *attentionProblem) { q.MaxQueryLen, q.TotalQ = 9, 72 },
			kernel: "attention_f16_prefill_d128"},
		{name: "17 queries of MHA: prefill", from: decode, edit: func(q *attentionProblem) { q.MaxQueryLen, q.TotalQ, q.NKVHeads = 17, 17*8, 64 },
			kernel: "attention_f16_prefill_d128"},
		{name: "decode d256 has 2 warps", from: decode, edit: func(q *attentionProblem) { q.HeadDim, q.DType = 256, tensor.BF16 },
			kernel: "attention_bf16_decode_d256", check: func(t *testing.T, p attentionPlan) {
				if p.Threads != 64 || p.SharedBytes != (16+128)*264*2 {
					t.Errorf("threads %d shared %d", p.Threads, p.SharedBytes)
				}
				// Keys per split: a multiple of 2 warps × 16.
				if p.Splits < 2 || p.KVPerSplit%32 != 0 {
					t.Errorf("splits %d × %d", p.Splits, p.KVPerSplit)
				}
			}},
		{name: "decode without the opt-in shared memory: simple", from: decode, edit: func(q *attentionProblem) { q.SharedLimit = staticSharedBytes },
			kernel: "attention_f16"},
		{name: "decode d64 fits in 48 KiB", from: decode, edit: func(q *attentionProblem) { q.SharedLimit, q.HeadDim = staticSharedBytes, 64 },
			kernel: "attention_f16_decode_d64"},
		{name: "unknown SM count: A100's", from: decode, edit: func(q *attentionProblem) { q.SMCount = 0 },
			kernel: "attention_f16_decode_d128", check: func(t *testing.T, p attentionPlan) {
				// ⌈216/64⌉ = 4 splits of 2048.
				if p.Splits != 4 || p.KVPerSplit != 2048 {
					t.Errorf("splits %d × %d", p.Splits, p.KVPerSplit)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.from
			if tc.edit != nil {
				tc.edit(&q)
			}
			p := planAttention(q)
			if got := kernelTable[p.Kernel].name; got != tc.kernel {
				t.Fatalf("kernel %s, want %s", got, tc.kernel)
			}
			if kernelTable[p.Kernel].kind != p.Kind {
				t.Errorf("kind %s, the kernel's is %s", p.Kind, kernelTable[p.Kernel].kind)
			}
			if p.SharedBytes > q.SharedLimit {
				t.Errorf("%d shared bytes over the limit %d", p.SharedBytes, q.SharedLimit)
			}
			if p.Grid.X < 1 || p.Grid.Y < 1 || p.Grid.Z < 1 || p.Grid.Y > maxGridYZ || p.Grid.Z > maxGridYZ {
				t.Errorf("grid %v outside the hardware limits", p.Grid)
			}
			if p.Kind == KindDecode {
				if p.KVPerSplit%int64(16*p.Tile.Warps) != 0 || int64(p.Splits)*p.KVPerSplit < int64(q.MaxKVLen) || p.Splits > attentionMaxSplits {
					t.Errorf("%d splits of %d keys do not tile %d keys in whole rounds of %d", p.Splits, p.KVPerSplit, q.MaxKVLen, 16*p.Tile.Warps)
				}
				if p.Splits > 1 && int64(p.Splits-1)*p.KVPerSplit >= int64(q.MaxKVLen) {
					t.Errorf("split %d of %d keys is empty for %d keys", p.Splits-1, p.KVPerSplit, q.MaxKVLen)
				}
			}
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}
}

// TestAttentionTileDims: every head dim 1..256 either has a tile that holds
// it or goes to the simple kernel; the head dims the models use have tiles.
func TestAttentionTileDims(t *testing.T) {
	for hd := 1; hd <= op.MaxHeadDim; hd++ {
		d := attentionTileDim(hd)
		if d == 0 {
			continue
		}
		if d < hd || hd%8 != 0 {
			t.Errorf("head dim %d runs in tile d%d", hd, d)
		}
		tileFor(prefillTiles, d)
		tileFor(decodeTiles, d)
	}
	for _, hd := range []int{40, 64, 80, 96, 128, 160, 256} {
		if attentionTileDim(hd) == 0 {
			t.Errorf("head dim %d has no fast tile", hd)
		}
	}
}

// TestAttentionConstantsMatchSources: the Go tables and constants repeat
// the .cu files' (tile configurations, block sizes, rows and keys per tile).
func TestAttentionConstantsMatchSources(t *testing.T) {
	read := func(file string) string {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return string(text)
	}
	constant := func(text, file, name string, want int) {
		m := regexp.MustCompile(`constexpr int ` + name + ` = (\d+);`).FindStringSubmatch(text)
		if m == nil {
			t.Errorf("%s: %s not found", file, name)
			return
		}
		if got, _ := strconv.Atoi(m[1]); got != want {
			t.Errorf("%s is %d in %s, %d in Go", name, got, file, want)
		}
	}
	simple, prefill, decode, appendKV := read("attention.cu"), read("attention_prefill.cu"), read("attention_decode.cu"), read("append_kv.cu")
	constant(simple, "attention.cu", "kSimpleThreads", attentionSimpleThreads)
	constant(simple, "attention.cu", "kCombineThreads", attentionCombineThreads)
	constant(simple, "attention.cu", "kMaxSplits", attentionMaxSplits)
	constant(prefill, "attention_prefill.cu", "kPrefillThreads", attentionPrefillThreads)
	constant(prefill, "attention_prefill.cu", "kPrefillRows", attentionPrefillRows)
	constant(decode, "attention_decode.cu", "kDecodeRows", attentionDecodeRows)
	constant(decode, "attention_decode.cu", "kDecodeKeys", attentionDecodeKeys)
	constant(appendKV, "append_kv.cu", "kAppendKVThreads", appendKVThreads)

	tiles := func(text, macro string) []attentionTile {
		var out []attentionTile
		for _, m := range regexp.MustCompile(`(?m)^`+macro+`\((\d+), (\d+), (true|false)\)$`).FindAllStringSubmatch(text, -1) {
			dim, _ := strconv.Atoi(m[1])
			n, _ := strconv.Atoi(m[2])
			tile := attentionTile{Dim: dim, QInRegisters: m[3] == "true"}
			if macro == "KILN_ATTENTION_PREFILL_ALL" {
				tile.KeysPerTile, tile.Warps = n, 4
			} else {
				tile.KeysPerTile, tile.Warps = attentionDecodeKeys, n
			}
			out = append(out, tile)
		}
		return out
	}
	for _, c := range []struct {
		file, macro string
		text        string
		want        []attentionTile
	}{{"attention_prefill.cu", "KILN_ATTENTION_PREFILL_ALL", prefill, prefillTiles}, {"attention_decode.cu", "KILN_ATTENTION_DECODE_ALL", decode, decodeTiles}} {
		got := tiles(c.text, c.macro)
		if len(got) != len(c.want) {
			t.Errorf("%s instantiates %d tiles (%+v), Go lists %d", c.file, len(got), got, len(c.want))
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s tile %d: %+v in the source, %+v in Go", c.file, i, got[i], c.want[i])
			}
		}
	}
}

func TestAttentionPrefillLaunch(t *testing.T) {
	s, d := attentionSet(t, ComputeCapability{8, 0}, VariantAuto)
	a := contiguousArgs(tensor.BF16, 3, 700, 900, 32, 8, 128)
	a.Causal, a.Window = true, 256
	a.Mask, a.MaskRowStride, a.MaskCols = 0x6000_0000, 1024, 1000
	a.LSE, a.LSEHeadStride = 0x7000_0000, 700
	a.MaxQueryLen = 400
	if err := s.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	if len(d.launches) != 1 {
		t.Fatalf("%d launches, want 1", len(d.launches))
	}
	got := d.launches[0]
	if got.kernel != "attention_bf16_prefill_d128" || got.grid != (cuda.Dim3{X: 11, Y: 32, Z: 1}) || got.block != cuda.D1(128) || got.sharedBytes != 52224 {
		t.Errorf("launch %s grid %v block %v shared %d", got.kernel, got.grid, got.block, got.sharedBytes)
	}
	if d.set["attention_bf16_prefill_d128"] != 52224 {
		t.Errorf("shared memory limits set %v, want the kernel's 52224 bytes", d.set)
	}
	want := attentionParams{
		Q: 0x1000_0000, O: 0x2000_0000, K: 0x4000_0000, V: 0x5000_0000, QStarts: 0x3000_0000, KVStarts: 0x3100_0000,
		Mask: 0x6000_0000, LSE: 0x7000_0000, ErrorWord: 0x3200_0000,
		QTokenStride: 32 * 128, QHeadStride: 128, OTokenStride: 32 * 128, OHeadStride: 128,
		KTokenStride: 8 * 128, KHeadStride: 128, VTokenStride: 8 * 128, VHeadStride: 128,
		MaskRowStride: 1024, LSEHeadStride: 700,
		TotalQ: 700, TotalKV: 900, MaskCols: 1000, Batch: 3, MaxQueryLen: 400, MaxKVLen: 900, Window: 256,
		KVPerSplit: 0, NHeads: 32, NKVHeads: 8, HeadDim: 128, Causal: 1, PageShift: -1, NSplits: 1, RowGroups: 1,
		Scale: float32(1 / math.Sqrt(128)), ScaleLog2: float32(1 / math.Sqrt(128) * math.Log2E),
	}
	if p := decodeArgs[attentionParams](t, got.args); p != want {
		t.Errorf("params %+v\nwant   %+v", p, want)
	}

	// Again: the limit is not set twice.
	if err := s.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	if d.setCalls != 1 {
		t.Errorf("%d shared-memory attribute calls, want 1", d.setCalls)
	}
	c, err := s.AttentionChoice(a)
	if err != nil {
		t.Fatal(err)
	}
	if c != (AttentionChoice{Kernel: "attention_bf16_prefill_d128", Kind: KindPrefill, TileDim: 128, SharedBytes: 52224, Splits: 1}) {
		t.Errorf("AttentionChoice %+v", c)
	}
}

func TestAttentionDecodeSplitLaunch(t *testing.T) {
	s, d := attentionSet(t, ComputeCapability{9, 0}, VariantAuto)
	// 8 sequences, one query each, GQA 64/8, a paged cache of 16-token pages.
	a := pagedArgs(tensor.F16, 8, 8, 64, 8, 128, 4096, 16, 512)
	a.MaxQueryLen, a.MaxKVLen = 1, 8192
	a.Scale = 0.5
	if err := s.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	if len(d.launches) != 2 {
		t.Fatalf("%d launches, want the decode kernel and the combine", len(d.launches))
	}
	main, comb := d.launches[0], d.launches[1]
	if main.kernel != "attention_f16_decode_d128" || main.grid != (cuda.Dim3{X: 8, Y: 8, Z: 5}) || main.block != cuda.D1(128) || main.sharedBytes != 73984 {
		t.Errorf("decode launch %s grid %v block %v shared %d", main.kernel, main.grid, main.block, main.sharedBytes)
	}
	if comb.kernel != "attention_f16_combine" || comb.grid != cuda.D1(128) || comb.block != cuda.D1(128) || comb.sharedBytes != 0 {
		t.Errorf("combine launch %s grid %v block %v shared %d", comb.kernel, comb.grid, comb.block, comb.sharedBytes)
	}
	wsBytes := int64(5 * 8 * 64 * 129 * 4)
	if len(d.allocs) != 1 || d.allocs[0] != wsBytes {
		t.Fatalf("allocations %v, want one workspace of %d bytes", d.allocs, wsBytes)
	}
	ws := uint64(0x7000_0000_0000)
	want := attentionParams{
		Q: 0x1000_0000, O: 0x2000_0000, K: 0x4000_0000, V: 0x5000_0000, QStarts: 0x3000_0000,
		BlockTable: 0x3300_0000, KVLens: 0x3400_0000, ErrorWord: 0x3200_0000,
		PartialO: ws, PartialLSE: ws + 5*8*64*128*4,
		QTokenStride: 64 * 128, QHeadStride: 128, OTokenStride: 64 * 128, OHeadStride: 128,
		KPageStride: 16 * 8 * 128, KTokenStride: 8 * 128, KHeadStride: 128,
		VPageStride: 16 * 8 * 128, VTokenStride: 8 * 128, VHeadStride: 128,
		BlockTableRowStride: 512,
		TotalQ:              8, NPages: 4096, PageSize: 16, MaxPagesPerSeq: 512, Batch: 8, MaxQueryLen: 1, MaxKVLen: 8192,
		KVPerSplit: 1664, NHeads: 64, NKVHeads: 8, HeadDim: 128, Paged: 1, PageShift: 4, NSplits: 5, RowGroups: 1,
		Scale: 0.5, ScaleLog2: float32(0.5 * math.Log2E),
	}
	if p := decodeArgs[attentionParams](t, main.args); p != want {
		t.Errorf("decode params %+v\nwant          %+v", p, want)
	}
	if p := decodeArgs[attentionParams](t, comb.args); p != want {
		t.Errorf("combine params %+v\nwant           %+v", p, want)
	}

	// The same call reuses the workspace; a second stream gets its own;
	// Close frees both.
	if err := s.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	st := &cuda.Stream{}
	if err := s.Attention(st, a); err != nil {
		t.Fatal(err)
	}
	if len(d.allocs) != 2 {
		t.Errorf("allocations %v, want one per stream", d.allocs)
	}
	if d.lastLaunch(t).stream != st {
		t.Error("the combine did not run on the given stream")
	}
	// A larger need doubles the workspace.
	b := a
	b.Batch, b.TotalQ = 16, 16 // 128 blocks: 3 splits of 2752 keys
	if err := s.Attention(nil, b); err != nil {
		t.Fatal(err)
	}
	if len(d.allocs) != 3 || d.allocs[2] != 2*wsBytes {
		t.Errorf("allocations %v: want the first workspace doubled", d.allocs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(d.freed) != 3 {
		t.Errorf("Close freed %v, want all 3 workspaces (the replaced one included)", d.freed)
	}
	if err := s.Attention(nil, a); !errors.Is(err, op.ErrClosed) {
		t.Errorf("Attention after Close: %v", err)
	}
}

func TestAttentionDecodeWithoutWorkspace(t *testing.T) {
	s, d := attentionSet(t, ComputeCapability{9, 0}, VariantAuto)
	d.allocErr = &cuda.Error{Call: "cuMemAlloc_v2", Result: 2}
	a := pagedArgs(tensor.F16, 8, 8, 64, 8, 128, 4096, 16, 512)
	a.MaxQueryLen, a.MaxKVLen = 1, 8192
	if err := s.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	if len(d.launches) != 1 {
		t.Fatalf("%d launches, want the decode kernel alone", len(d.launches))
	}
	p := decodeArgs[attentionParams](t, d.launches[0].args)
	if p.NSplits != 1 || p.KVPerSplit != 8192 || p.PartialO != 0 || d.launches[0].grid.Z != 1 {
		t.Errorf("params %+v grid %v: want no split", p, d.launches[0].grid)
	}
	if err := s.PrepareAttention(nil, a); err == nil || !strings.Contains(err.Error(), "workspace") {
		t.Errorf("PrepareAttention with a failing allocation: %v", err)
	}
}

func TestPrepareAttention(t *testing.T) {
	s, d := attentionSet(t, ComputeCapability{9, 0}, VariantAuto)
	a := pagedArgs(tensor.BF16, 8, 8, 64, 8, 128, 4096, 16, 512)
	a.MaxQueryLen, a.MaxKVLen = 1, 8192
	if err := s.PrepareAttention(nil, a); err != nil {
		t.Fatal(err)
	}
	if len(d.launches) != 0 {
		t.Errorf("PrepareAttention launched %d kernels", len(d.launches))
	}
	if len(d.allocs) != 1 || d.set["attention_bf16_decode_d128"] != 73984 {
		t.Errorf("PrepareAttention allocated %v and set shared memory %v", d.allocs, d.set)
	}
	for _, f := range []Family{FamilyAttentionDecode, FamilyAttention} {
		if _, ok := s.LoadedTarget(f); !ok {
			t.Errorf("PrepareAttention did not load family %s", f)
		}
	}
	calls := d.setCalls
	if err := s.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	if len(d.allocs) != 1 || d.setCalls != calls {
		t.Errorf("after PrepareAttention, Attention allocated %v and set attributes %d more times", d.allocs, d.setCalls-calls)
	}
}

func TestAttentionSharedMemoryLimits(t *testing.T) {
	// A driver that cannot raise limits: d128 gives way to the simple kernel.
	fd := newFakeDriver()
	fd.smCount = 108
	s, err := newSet(fd, ComputeCapability{8, 0}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := contiguousArgs(tensor.F16, 1, 256, 256, 8, 8, 128)
	if err := s.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	if got := fd.lastLaunch(t); got.kernel != "attention_f16" || got.sharedBytes != 0 {
		t.Errorf("launched %s with %d shared bytes, want attention_f16 (d128 needs more than 48 KiB)", got.kernel, got.sharedBytes)
	}
	a.HeadDim, a.QTokenStride, a.OTokenStride, a.KTokenStride, a.VTokenStride = 64, 8*64, 8*64, 8*64, 8*64
	a.QHeadStride, a.OHeadStride, a.KHeadStride, a.VHeadStride = 64, 64, 64, 64
	if err := s.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	if got := fd.lastLaunch(t); got.kernel != "attention_f16_prefill_d64" || got.sharedBytes != (64+128)*72*2 {
		t.Errorf("launched %s with %d shared bytes, want attention_f16_prefill_d64 in %d", got.kernel, got.sharedBytes, (64+128)*72*2)
	}

	// A device whose opt-in limit is unknown: the default.
	s2, d2 := attentionSet(t, ComputeCapability{8, 6}, VariantAuto)
	d2.optinErr = errors.New("fake: no attribute")
	a = contiguousArgs(tensor.F16, 1, 256, 256, 8, 8, 128)
	if err := s2.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	if got := d2.lastLaunch(t); got.kernel != "attention_f16" {
		t.Errorf("launched %s, want the simple kernel", got.kernel)
	}

	// Setting the limit fails: the error names the kernel.
	s3, d3 := attentionSet(t, ComputeCapability{8, 0}, VariantAuto)
	d3.setErr = &cuda.Error{Call: "cuFuncSetAttribute", Result: 1}
	err = s3.Attention(nil, a)
	if err == nil || !strings.Contains(err.Error(), "attention_f16_prefill_d128") || !strings.Contains(err.Error(), "52224") {
		t.Errorf("Attention with a failing cuFuncSetAttribute: %v", err)
	}
	if len(d3.launches) != 0 {
		t.Errorf("%d launches after the failure", len(d3.launches))
	}
}

func TestAttentionSimpleLaunch(t *testing.T) {
	s, d := attentionSet(t, ComputeCapability{9, 0}, VariantSimple)
	a := pagedArgs(tensor.F32, 2, 10, 4, 4, 100, 20, 7, 5)
	a.QTokenStride, a.OTokenStride = 512, 512 // padded rows
	a.QHeadStride, a.OHeadStride = 128, 128
	if err := s.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	got := d.lastLaunch(t)
	// 10 rows × 4 heads = 40 warps: 10 blocks of 4.
	if got.kernel != "attention_f32" || got.grid != cuda.D1(10) || got.block != cuda.D1(128) || got.sharedBytes != 0 {
		t.Errorf("launch %s grid %v block %v shared %d", got.kernel, got.grid, got.block, got.sharedBytes)
	}
	p := decodeArgs[attentionParams](t, got.args)
	// Page size 7 is not a power of two; the defaults resolve the bounds.
	if p.PageShift != -1 || p.PageSize != 7 || p.MaxQueryLen != 10 || p.MaxKVLen != 35 || p.HeadDim != 100 ||
		p.QTokenStride != 512 || p.QHeadStride != 128 || p.Scale != float32(0.1) || p.NSplits != 1 {
		t.Errorf("params %+v", p)
	}
	// TotalQ = 0: nothing to do.
	a.TotalQ = 0
	n := len(d.launches)
	if err := s.Attention(nil, a); err != nil || len(d.launches) != n {
		t.Errorf("TotalQ = 0: %v, %d launches", err, len(d.launches)-n)
	}
}

func TestAttentionBadArguments(t *testing.T) {
	s, d := attentionSet(t, ComputeCapability{9, 0}, VariantAuto)
	good := pagedArgs(tensor.F16, 2, 10, 8, 2, 64, 32, 16, 8)
	tests := []struct {
		name  string
		edit  func(a *AttentionArgs)
		wants []string
	}{
		{"dtype", func(a *AttentionArgs) { a.DType = tensor.Q4_0 }, []string{"attention", "q", "Q4_0"}},
		{"no batch", func(a *AttentionArgs) { a.Batch = 0 }, []string{"queryStarts", "batch 0"}},
		{"negative rows", func(a *AttentionArgs) { a.TotalQ = -1 }, []string{"q", "-1 rows"}},
		{"rows past I32", func(a *AttentionArgs) { a.TotalQ = 1 << 31 }, []string{"q", "2147483648 rows"}},
		{"heads not a multiple", func(a *AttentionArgs) { a.NKVHeads = 3 }, []string{"kv.K", "8 query heads and 3 KV heads"}},
		{"no KV heads", func(a *AttentionArgs) { a.NKVHeads = 0 }, []string{"kv.K", "0 KV heads"}},
		{"head dim 0", func(a *AttentionArgs) { a.HeadDim = 0 }, []string{"q", "head dimension 0"}},
		{"head dim 300", func(a *AttentionArgs) { a.HeadDim = 300 }, []string{"q", "head dimension 300"}},
		{"negative stride", func(a *AttentionArgs) { a.VHeadStride = -64 }, []string{"kv.V", "negative stride -64"}},
		{"window without causal", func(a *AttentionArgs) { a.Window = 4 }, []string{"Window", "4"}},
		{"negative window", func(a *AttentionArgs) { a.Window, a.Causal = -1, true }, []string{"Window", "-1"}},
		{"NaN scale", func(a *AttentionArgs) { a.Scale = float32(math.NaN()) }, []string{"Scale", "NaN"}},
		{"negative MaxKVLen", func(a *AttentionArgs) { a.MaxKVLen = -5 }, []string{"MaxKVLen -5"}},
		{"no error word", func(a *AttentionArgs) { a.ErrorWord = 0 }, []string{"errorWord", "required"}},
		{"misaligned error word", func(a *AttentionArgs) { a.ErrorWord = 0x3200_0002 }, []string{"errorWord", "0x32000002"}},
		{"null q", func(a *AttentionArgs) { a.Q = 0 }, []string{"q", "address is 0"}},
		{"misaligned dst", func(a *AttentionArgs) { a.O = 0x2000_0001 }, []string{"dst", "aligned to 2"}},
		{"null queryStarts", func(a *AttentionArgs) { a.QueryStarts = 0 }, []string{"queryStarts", "address is 0"}},
		{"null block table", func(a *AttentionArgs) { a.BlockTable = 0 }, []string{"kv.BlockTable", "address is 0"}},
		{"null lens", func(a *AttentionArgs) { a.KVLens = 0 }, []string{"kv.Lens", "address is 0"}},
		{"null K", func(a *AttentionArgs) { a.K = 0 }, []string{"kv.K", "address is 0"}},
		{"page size 0", func(a *AttentionArgs) { a.PageSize = 0 }, []string{"kv.K", "page size"}},
		{"misaligned mask", func(a *AttentionArgs) { a.Mask, a.MaskCols, a.MaskRowStride = 0x6000_0002, 128, 128 }, []string{"Mask", "aligned to 4"}},
		{"negative mask columns", func(a *AttentionArgs) { a.Mask, a.MaskCols = 0x6000_0000, -1 }, []string{"Mask", "-1 columns"}},
		{"misaligned LSE", func(a *AttentionArgs) { a.LSE, a.LSEHeadStride = 0x7000_0001, 10 }, []string{"LSE", "aligned to 4"}},
		{"q past the address space", func(a *AttentionArgs) { a.QTokenStride = 1 << 60 }, []string{"q", "address space"}},
		{"V past the address space", func(a *AttentionArgs) { a.V = 0xffff_ffff_ffff_0000 }, []string{"kv.V", "address space"}},
		{"contiguous: null starts", func(a *AttentionArgs) { *a = contiguousArgs(tensor.F16, 2, 10, 20, 8, 2, 64); a.KVStarts = 0 },
			[]string{"kv.Starts", "address is 0"}},
		{"contiguous: rows past I32", func(a *AttentionArgs) { *a = contiguousArgs(tensor.F16, 2, 10, 1<<31, 8, 2, 64) },
			[]string{"kv.K", "2147483648 rows"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := good
			tc.edit(&a)
			wantInvalid(t, s.Attention(nil, a), tc.wants...)
			wantInvalid(t, s.PrepareAttention(nil, a), tc.wants...)
			if _, err := s.AttentionChoice(a); !errors.Is(err, op.ErrInvalidArgument) {
				t.Errorf("AttentionChoice: %v", err)
			}
		})
	}
	if len(d.launches) != 0 || len(d.allocs) != 0 {
		t.Errorf("%d launches and allocations %v for invalid arguments", len(d.launches), d.allocs)
	}
	// An empty cache needs no address: a paged cache of 0 pages, a
	// contiguous one of 0 rows (every sequence has 0 keys, or is a fault).
	empty := good
	empty.NPages, empty.K, empty.V = 0, 0, 0
	if err := s.Attention(nil, empty); err != nil {
		t.Errorf("0 pages: %v", err)
	}
	emptyRows := contiguousArgs(tensor.F32, 2, 10, 0, 8, 2, 64)
	emptyRows.K, emptyRows.V = 0, 0
	if err := s.Attention(nil, emptyRows); err != nil {
		t.Errorf("0 rows of K and V: %v", err)
	}
}

func appendArgs(dt tensor.DType) AppendKVArgs {
	return AppendKVArgs{
		DType: dt, NNew: 5, NKVHeads: 8, HeadDim: 128,
		K: 0x1000_0000, KTokenStride: 3 * 8 * 128, KHeadStride: 128, // a view of a fused QKV buffer
		V: 0x1000_0800, VTokenStride: 3 * 8 * 128, VHeadStride: 128,
		SeqIDs: 0x2000_0000, Positions: 0x2100_0000,
		KCache: 0x4000_0000, KCachePageStride: 16 * 8 * 128, KCacheTokenStride: 8 * 128, KCacheHeadStride: 128,
		VCache: 0x5000_0000, VCachePageStride: 16 * 8 * 128, VCacheTokenStride: 8 * 128, VCacheHeadStride: 128,
		NPages: 64, PageSize: 16,
		BlockTable: 0x3000_0000, Batch: 4, MaxPagesPerSeq: 16, BlockTableRowStride: 16,
		ErrorWord: 0x3200_0000,
	}
}

func TestAppendKVLaunch(t *testing.T) {
	s, d := attentionSet(t, ComputeCapability{8, 0}, VariantAuto)
	if err := s.AppendKV(nil, appendArgs(tensor.BF16)); err != nil {
		t.Fatal(err)
	}
	got := d.lastLaunch(t)
	checkLaunch(t, got, "append_kv_bf16", 5, 256)
	want := appendKVParams{
		KCache: 0x4000_0000, VCache: 0x5000_0000, K: 0x1000_0000, V: 0x1000_0800,
		SeqIDs: 0x2000_0000, Positions: 0x2100_0000, BlockTable: 0x3000_0000, ErrorWord: 0x3200_0000,
		KTokenStride: 3 * 8 * 128, KHeadStride: 128, VTokenStride: 3 * 8 * 128, VHeadStride: 128,
		KCachePageStride: 16 * 8 * 128, KCacheTokenStride: 8 * 128, KCacheHeadStride: 128,
		VCachePageStride: 16 * 8 * 128, VCacheTokenStride: 8 * 128, VCacheHeadStride: 128,
		BlockTableRowStride: 16, NNew: 5, Batch: 4, NPages: 64, PageSize: 16, MaxPagesPerSeq: 16,
		NKVHeads: 8, HeadDim: 128,
	}
	if p := decodeArgs[appendKVParams](t, got.args); p != want {
		t.Errorf("params %+v\nwant   %+v", p, want)
	}
	// A small token: 2 heads of 40 → 96 threads.
	small := appendArgs(tensor.F32)
	small.NKVHeads, small.HeadDim = 2, 40
	if err := s.AppendKV(nil, small); err != nil {
		t.Fatal(err)
	}
	checkLaunch(t, d.lastLaunch(t), "append_kv_f32", 5, 96)
	// Nothing to append: no launch.
	n := len(d.launches)
	small.NNew = 0
	if err := s.AppendKV(nil, small); err != nil || len(d.launches) != n {
		t.Errorf("0 tokens: %v, %d launches", err, len(d.launches)-n)
	}
}

func TestAppendKVBadArguments(t *testing.T) {
	s, d := attentionSet(t, ComputeCapability{8, 0}, VariantAuto)
	tests := []struct {
		name  string
		edit  func(a *AppendKVArgs)
		wants []string
	}{
		{"dtype", func(a *AppendKVArgs) { a.DType = tensor.I32 }, []string{"append-kv", "cache.K", "I32"}},
		{"negative tokens", func(a *AppendKVArgs) { a.NNew = -1 }, []string{"k", "-1 tokens"}},
		{"page size 0", func(a *AppendKVArgs) { a.PageSize = 0 }, []string{"cache", "page size"}},
		{"negative stride", func(a *AppendKVArgs) { a.KCacheTokenStride = -1 }, []string{"cache.K", "negative stride"}},
		{"no error word", func(a *AppendKVArgs) { a.ErrorWord = 0 }, []string{"errorWord"}},
		{"null seq ids", func(a *AppendKVArgs) { a.SeqIDs = 0 }, []string{"seqIDs", "address is 0"}},
		{"null positions", func(a *AppendKVArgs) { a.Positions = 0 }, []string{"positions", "address is 0"}},
		{"null cache", func(a *AppendKVArgs) { a.VCache = 0 }, []string{"cache.V", "address is 0"}},
		{"null table", func(a *AppendKVArgs) { a.BlockTable = 0 }, []string{"cache.BlockTable", "address is 0"}},
		{"misaligned k", func(a *AppendKVArgs) { a.K = 0x1000_0001 }, []string{"k", "aligned to 2"}},
		{"cache past the address space", func(a *AppendKVArgs) { a.KCachePageStride = 1 << 61 }, []string{"cache.K", "address space"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := appendArgs(tensor.F16)
			tc.edit(&a)
			wantInvalid(t, s.AppendKV(nil, a), tc.wants...)
		})
	}
	if len(d.launches) != 0 {
		t.Errorf("%d launches for invalid arguments", len(d.launches))
	}
}

// TestAttentionDoesNotAllocate: once the modules are loaded, the limits set
// and the workspace allocated, a launch allocates no Go memory.
func TestAttentionDoesNotAllocate(t *testing.T) {
	s, d := attentionSet(t, ComputeCapability{9, 0}, VariantAuto)
	prefill := contiguousArgs(tensor.F16, 4, 4096, 4096, 32, 8, 128)
	prefill.Causal = true
	decode := pagedArgs(tensor.BF16, 8, 8, 64, 8, 128, 4096, 16, 512)
	decode.MaxQueryLen = 1
	simple := contiguousArgs(tensor.F32, 4, 100, 100, 4, 4, 72)
	calls := []func() error{
		func() error { return s.Attention(nil, prefill) },
		func() error { return s.Attention(nil, decode) },
		func() error { return s.Attention(nil, simple) },
		func() error { return s.AppendKV(nil, appendArgs(tensor.F16)) },
	}
	for _, call := range calls {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	d.countOnly = true
	for i, call := range calls {
		allocs := testing.AllocsPerRun(50, func() {
			if err := call(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("call %d: %v allocations per launch, want 0", i, allocs)
		}
	}
}
