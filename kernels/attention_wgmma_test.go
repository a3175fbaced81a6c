package kernels

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"unsafe"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// The sm_90a wgmma prefill (attention_wgmma.cu): dispatch, launch packing
// and, on the host simulator, the kernel itself against the float64
// reference.

// wgmmaKindFor is the kind auto dispatch picks for c on a Hopper Set that
// encodes tensor maps: the wgmma prefill where the mma.sync prefill would
// run and planHopperPrefill's conditions hold (computed here from the
// documented rules, not by calling the planner).
func wgmmaKindFor(c attnCase) Kind {
	if c.wantKind != KindPrefill || (c.dt != tensor.F16 && c.dt != tensor.BF16) || c.unaligned {
		return c.wantKind
	}
	bn := map[int]int{64: 128, 128: 128, 256: 64}[c.headDim]
	if bn == 0 {
		return c.wantKind
	}
	if c.paged {
		r := min(bn, c.pageSize)
		if r%8 != 0 || bn%r != 0 || c.pageSize%r != 0 {
			return c.wantKind
		}
	}
	return KindWGMMA
}

// wgmmaCases add to attnCases what the wgmma kernel's own structure needs:
// 128-row query tiles holding several sequences, more key tiles than
// stages (the pipeline wraps), every box-rows rule of paged K/V, GQA 8.
func wgmmaCases() []attnCase {
	return []attnCase{
		{name: "wgmma f16 d64 paged (8) GQA 8 causal, long: the stages wrap", dt: tensor.F16, headDim: 64, nHeads: 8, nKVHeads: 1,
			qLens: []int{150}, kvLens: []int{600}, paged: true, pageSize: 8, causal: true, lse: true, wantKind: KindPrefill},
		{name: "wgmma bf16 d128 varlen, a query tile across 4 sequences, odd lengths", dt: tensor.BF16, headDim: 128, nHeads: 2, nKVHeads: 2,
			qLens: []int{1, 37, 90, 3, 131}, kvLens: []int{1, 37, 300, 20, 131}, causal: true, lse: true, wantKind: KindPrefill},
		{name: "wgmma f16 d128 paged (128) GQA 4 window mask", dt: tensor.F16, headDim: 128, nHeads: 4, nKVHeads: 1,
			qLens: []int{70, 5}, kvLens: []int{333, 5}, paged: true, pageSize: 128, causal: true, window: 100, mask: true, lse: true,
			wantKind: KindPrefill},
		{name: "wgmma bf16 d256 paged (32) MQA, not causal", dt: tensor.BF16, headDim: 256, nHeads: 2, nKVHeads: 1,
			qLens: []int{17, 64}, kvLens: []int{200, 70}, paged: true, pageSize: 32, lse: true, wantKind: KindPrefill},
		{name: "wgmma f16 d64 contiguous, more queries than keys, scale", dt: tensor.F16, headDim: 64, nHeads: 1, nKVHeads: 1,
			qLens: []int{40}, kvLens: []int{25}, causal: true, scale: 0.5, lse: true, wantKind: KindPrefill},
		{name: "wgmma bf16 d64 paged (16), length 1", dt: tensor.BF16, headDim: 64, nHeads: 2, nKVHeads: 1,
			qLens: []int{1, 129}, kvLens: []int{1, 129}, paged: true, pageSize: 16, causal: true, wantKind: KindPrefill},
		{name: "wgmma f16 d128 paged (24): boxes would cross pages, mma.sync prefill", dt: tensor.F16, headDim: 128, nHeads: 2, nKVHeads: 2,
			qLens: []int{30}, kvLens: []int{50}, paged: true, pageSize: 24, causal: true, wantKind: KindPrefill},
	}
}

// TestAttentionWGMMAOnHostSimulator runs the attention cases and
// wgmmaCases on a Hopper Set that encodes tensor maps: dispatch must pick
// the wgmma prefill exactly where its rules say, the outputs must match the
// reference, and a lazy run (TMA copies landing at their mbarrier phase,
// wgmma results at their wait, another thread schedule) must give the same
// bytes as the eager one.
func TestAttentionWGMMAOnHostSimulator(t *testing.T) {
	sim := attentionSimulator(t)
	base := attnCases()
	cases := append(base, wgmmaCases()...)
	ran := 0
	for ci, c := range cases {
		want := wgmmaKindFor(c)
		if want != KindWGMMA && ci < len(base) {
			continue // unchanged from TestAttentionKernelsOnHostSimulator
		}
		if want == KindWGMMA {
			ran++
		}
		t.Run(attnCaseName(c.name), func(t *testing.T) {
			t.Parallel()
			data := newAttnData(c, newCaseRand(500+ci))
			var choice AttentionChoice
			launch := func(s *Set, addr []cuda.DevicePtr) error {
				a := data.args(addr)
				var err error
				if choice, err = s.AttentionChoice(a); err != nil {
					return err
				}
				return s.Attention(nil, a)
			}
			eager, st := sim.runOn(t, data.bufs, VariantAuto, uint64(5000+ci), false, true, launch)
			if choice.Kind != want {
				t.Fatalf("dispatch chose %+v, want kind %s", choice, want)
			}
			data.check(t, choice.Kernel, eager, true)
			if want == KindWGMMA && (st.wgmma == 0 || st.tma == 0) {
				t.Errorf("%s ran %d wgmma and %d TMA copies", choice.Kernel, st.wgmma, st.tma)
			}
			if want != KindWGMMA && st.wgmma != 0 {
				t.Errorf("%s ran %d wgmma", choice.Kernel, st.wgmma)
			}
			lazy, _ := sim.runOn(t, data.bufs, VariantAuto, uint64(6000+ci), true, true, launch)
			for _, i := range []int{data.iO, data.iLSE} {
				if i >= 0 && !bytes.Equal(lazy[i], eager[i]) {
					t.Errorf("%s: %s differs between the eager and the lazy run", choice.Kernel, data.bufs[i].name)
				}
			}
		})
	}
	if ran < 12 {
		t.Errorf("only %d cases took the wgmma kernel", ran)
	}
}

// TestAttentionWGMMASimulatorSeesTheInputs: the TMA path is not blind: a
// value of V changed in the paged cache only must move the outputs.
func TestAttentionWGMMASimulatorSeesTheInputs(t *testing.T) {
	sim := attentionSimulator(t)
	c := attnCase{name: "sanity", dt: tensor.F16, headDim: 64, nHeads: 1, nKVHeads: 1, qLens: []int{40}, kvLens: []int{40},
		paged: true, pageSize: 16, wantKind: KindPrefill}
	data := newAttnData(c, newCaseRand(8))
	v := data.bufs[data.iV].data
	page := int(data.blockTable[0])
	putElem(c.dt, v, page*data.vPage+3*data.vTok+5, 1000)
	var choice AttentionChoice
	outs, _ := sim.runOn(t, data.bufs, VariantAuto, 1, false, true, func(s *Set, addr []cuda.DevicePtr) error {
		var err error
		if choice, err = s.AttentionChoice(data.args(addr)); err != nil {
			return err
		}
		return s.Attention(nil, data.args(addr))
	})
	if choice.Kind != KindWGMMA {
		t.Fatalf("dispatch chose %s, want the wgmma prefill", choice.Kernel)
	}
	moved := false
	for r := range 40 {
		got := getElem(c.dt, outs[data.iO], r*data.oTok+5)
		if want := data.ref[r*64+5]; !(got-want < 1e-2 && want-got < 1e-2) {
			moved = true
		}
	}
	if !moved {
		t.Error("a changed value of V did not change the output of the wgmma kernel")
	}
}

// TestPlanHopperPrefill is the dispatch table of the wgmma prefill.
func TestPlanHopperPrefill(t *testing.T) {
	base := attentionProblem{
		DType: tensor.F16, HeadDim: 128, Batch: 2, NHeads: 16, NKVHeads: 2, TotalQ: 4000,
		MaxQueryLen: 2000, MaxKVLen: 2000, Aligned16: true, CC: ComputeCapability{9, 0}, SMCount: 132,
		SharedLimit: 227 << 10, SplitOK: true, Hopper: true, KVRows: 4000, KVStridesOK: true,
	}
	for _, c := range []struct {
		name string
		edit func(q *attentionProblem)
		want Kind
		dim  int
	}{
		{"d128 contiguous", func(q *attentionProblem) {}, KindWGMMA, 128},
		{"d64 bf16", func(q *attentionProblem) { q.HeadDim, q.DType = 64, tensor.BF16 }, KindWGMMA, 64},
		{"d256", func(q *attentionProblem) { q.HeadDim = 256 }, KindWGMMA, 256},
		{"d96: no wgmma tile", func(q *attentionProblem) { q.HeadDim = 96 }, KindPrefill, 96},
		{"d40: no wgmma tile", func(q *attentionProblem) { q.HeadDim = 40 }, KindPrefill, 48},
		{"module not loaded from sm_90a", func(q *attentionProblem) { q.Hopper = false }, KindPrefill, 128},
		{"compute capability 8.9", func(q *attentionProblem) { q.CC = ComputeCapability{8, 9} }, KindPrefill, 128},
		{"compute capability 10.0", func(q *attentionProblem) { q.CC = ComputeCapability{10, 0} }, KindPrefill, 128},
		{"simple variant", func(q *attentionProblem) { q.Variant = VariantSimple }, KindSimple, 0},
		{"F32", func(q *attentionProblem) { q.DType = tensor.F32 }, KindSimple, 0},
		{"unaligned rows", func(q *attentionProblem) { q.Aligned16 = false }, KindSimple, 0},
		{"decode shape", func(q *attentionProblem) { q.MaxQueryLen, q.TotalQ = 1, 2 }, KindDecode, 128},
		{"paged 16", func(q *attentionProblem) { q.Paged, q.PageSize = true, 16 }, KindWGMMA, 128},
		{"paged 8", func(q *attentionProblem) { q.Paged, q.PageSize = true, 8 }, KindWGMMA, 128},
		{"paged 4: box rows below 8", func(q *attentionProblem) { q.Paged, q.PageSize = true, 4 }, KindPrefill, 128},
		{"paged 24: does not divide the tile", func(q *attentionProblem) { q.Paged, q.PageSize = true, 24 }, KindPrefill, 128},
		{"paged 7", func(q *attentionProblem) { q.Paged, q.PageSize = true, 7 }, KindPrefill, 128},
		{"paged 256", func(q *attentionProblem) { q.Paged, q.PageSize = true, 256 }, KindWGMMA, 128},
		{"paged 192: not a multiple of 128", func(q *attentionProblem) { q.Paged, q.PageSize = true, 192 }, KindPrefill, 128},
		{"d256 paged 192: a multiple of 64", func(q *attentionProblem) { q.HeadDim, q.Paged, q.PageSize = 256, true, 192 }, KindWGMMA, 256},
		{"no K/V rows", func(q *attentionProblem) { q.KVRows = 0 }, KindPrefill, 128},
		{"2^31 pages", func(q *attentionProblem) { q.Paged, q.PageSize, q.KVRows = true, 16, 1<<31-1 }, KindPrefill, 128},
		{"strides of 2^40 bytes", func(q *attentionProblem) { q.KVStridesOK = false }, KindPrefill, 128},
		{"48 KiB of shared memory", func(q *attentionProblem) { q.SharedLimit = 48 << 10 }, KindSimple, 0},
		{"d256 with 160 KiB", func(q *attentionProblem) { q.HeadDim, q.SharedLimit = 256, 160<<10 }, KindPrefill, 256},
	} {
		q := base
		c.edit(&q)
		p := planAttention(q)
		if p.Kind != c.want {
			t.Errorf("%s: kind %s, want %s", c.name, p.Kind, c.want)
			continue
		}
		if p.Kind == KindSimple {
			continue
		}
		if p.Tile.Dim != c.dim {
			t.Errorf("%s: tile d%d, want d%d", c.name, p.Tile.Dim, c.dim)
		}
		if p.Kind != KindWGMMA {
			continue
		}
		wantName := "attention_" + dtypeName(q.DType) + "_wgmma_d" + strconv.Itoa(q.HeadDim)
		if got := kernelTable[p.Kernel].name; got != wantName {
			t.Errorf("%s: kernel %s, want %s", c.name, got, wantName)
		}
		wantGrid := cuda.Dim3{X: uint32((q.TotalQ + 127) / 128), Y: uint32(q.NHeads), Z: 1}
		if p.Grid != wantGrid || p.Threads != 384 || p.Splits != 1 {
			t.Errorf("%s: grid %v, %d threads, %d splits; want %v, 384, 1", c.name, p.Grid, p.Threads, p.Splits, wantGrid)
		}
		// Q 128 rows, two stages of K and V, 1024 bytes of alignment slack, the barriers.
		bn := map[int]int{64: 128, 128: 128, 256: 64}[q.HeadDim]
		if want := 1024 + (128+4*bn)*q.HeadDim*2 + 64; p.SharedBytes != want || p.SharedBytes > q.SharedLimit {
			t.Errorf("%s: %d bytes of shared memory, want %d", c.name, p.SharedBytes, want)
		}
	}
}

// TestAttentionWGMMASetDispatch: a Set uses the wgmma prefill only on
// compute capability 9.0, with a driver that encodes tensor maps and the
// family's sm_90a module loaded; the launch carries the parameter struct
// and the two maps at 64-byte aligned offsets.
func TestAttentionWGMMASetDispatch(t *testing.T) {
	a := contiguousArgs(tensor.BF16, 1, 300, 300, 4, 2, 128)
	a.QueryStarts, a.KVStarts = 0x3000_0000, 0x6000_0000
	newTMASet := func(cc ComputeCapability, refuse bool) (*Set, *tmaDriver) {
		_, sd := attentionSet(t, cc, VariantAuto)
		if refuse {
			sd.refuse["sm_90a"] = true
		}
		d := &tmaDriver{smemDriver: sd}
		s, err := newSet(d, cc, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s, d
	}

	s, d := newTMASet(ComputeCapability{9, 0}, false)
	if err := s.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	l := d.lastLaunch(t)
	if l.kernel != "attention_bf16_wgmma_d128" || l.block.X != 384 || l.grid != (cuda.Dim3{X: 3, Y: 4, Z: 1}) {
		t.Fatalf("launch %s grid %v block %v", l.kernel, l.grid, l.block)
	}
	if target, _ := s.LoadedTarget(FamilyAttentionWGMMA); target != TargetSM90a {
		t.Errorf("attention_wgmma loaded from %q", target)
	}
	off := (int(unsafe.Sizeof(attentionParams{})) + 63) / 64 * 64
	if len(l.args) != off+256 {
		t.Fatalf("%d argument bytes, want %d (the struct, padding to 64, two 128-byte maps)", len(l.args), off+256)
	}
	mk, mv := l.args[off:off+128], l.args[off+128:]
	if string(mk[:4]) != "KTMP" || string(mv[:4]) != "KTMP" || d.encoded != 2 {
		t.Fatalf("tensor maps not packed (%d encoded)", d.encoded)
	}
	// K's map: rank 3 over (head dim, KV heads, tokens), box (64, 1, 128), 128B swizzle, K's address.
	specK := cuda.TensorMapSpec{DataType: cuda.TensorMapBFloat16, Rank: 3, Global: a.K,
		Dims: [5]uint64{128, 2, 300}, Strides: [4]uint64{uint64(a.KHeadStride) * 2, uint64(a.KTokenStride) * 2},
		Box: [5]uint32{64, 1, 128}, Swizzle: cuda.TensorMapSwizzle128B, L2Promotion: cuda.TensorMapL2256B}
	if want := cuda.FakeTensorMap(&specK); !bytes.Equal(mk, want[:]) {
		t.Errorf("K's tensor map\n% x\nwant\n% x", mk, want[:])
	}
	s.Close()

	// A paged cache of 16-token pages: rank 4 maps over (head dim, KV
	// heads, page size, pages) with boxes of 16 rows, V's own strides.
	s, d = newTMASet(ComputeCapability{9, 0}, false)
	p := a
	p.Paged, p.NPages, p.PageSize, p.MaxPagesPerSeq, p.BlockTableRowStride = true, 40, 16, 20, 20
	p.KPageStride, p.VPageStride = 16*p.KTokenStride, 16*p.VTokenStride+64
	p.BlockTable, p.KVLens, p.KVStarts, p.TotalKV = 0x6000_0000, 0x6100_0000, 0, 0
	if err := s.Attention(nil, p); err != nil {
		t.Fatal(err)
	}
	if l := d.lastLaunch(t); l.kernel != "attention_bf16_wgmma_d128" || len(d.specs) != 2 {
		t.Fatalf("paged: launched %s, %d maps", l.kernel, len(d.specs))
	}
	specV := cuda.TensorMapSpec{DataType: cuda.TensorMapBFloat16, Rank: 4, Global: p.V,
		Dims:    [5]uint64{128, 2, 16, 40},
		Strides: [4]uint64{uint64(p.VHeadStride) * 2, uint64(p.VTokenStride) * 2, uint64(p.VPageStride) * 2},
		Box:     [5]uint32{64, 1, 16, 1}, Swizzle: cuda.TensorMapSwizzle128B, L2Promotion: cuda.TensorMapL2256B}
	if d.specs[1] != specV {
		t.Errorf("paged V map\n%+v\nwant\n%+v", d.specs[1], specV)
	}
	s.Close()

	// A driver that will not encode the maps: the mma.sync prefill, no error.
	s, d = newTMASet(ComputeCapability{9, 0}, false)
	d.refuse = errors.New("fake: CUDA_ERROR_INVALID_VALUE")
	if err := s.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	if l := d.lastLaunch(t); l.kernel != "attention_bf16_prefill_d128" {
		t.Errorf("maps refused: launched %s", l.kernel)
	}
	s.Close()

	// The driver refuses the sm_90a module: the mma.sync prefill.
	s, d = newTMASet(ComputeCapability{9, 0}, true)
	if err := s.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	if l := d.lastLaunch(t); l.kernel != "attention_bf16_prefill_d128" {
		t.Errorf("sm_90a refused: launched %s", l.kernel)
	}
	s.Close()

	// Ada: never loads the family.
	s, d = newTMASet(ComputeCapability{8, 9}, false)
	if err := s.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	if l := d.lastLaunch(t); l.kernel != "attention_bf16_prefill_d128" {
		t.Errorf("cc 8.9: launched %s", l.kernel)
	}
	if _, ok := s.LoadedTarget(FamilyAttentionWGMMA); ok {
		t.Error("cc 8.9 loaded attention_wgmma")
	}
	s.Close()

	// A driver without tensor maps: the mma.sync prefill.
	s2, d2 := attentionSet(t, ComputeCapability{9, 0}, VariantAuto)
	if err := s2.Attention(nil, a); err != nil {
		t.Fatal(err)
	}
	if l := d2.lastLaunch(t); l.kernel != "attention_bf16_prefill_d128" {
		t.Errorf("no tensor maps: launched %s", l.kernel)
	}
	s2.Close()
}

// TestAttentionWGMMAConstantsMatchSources: the Go launcher's numbers are
// attention_wgmma.cu's.
func TestAttentionWGMMAConstantsMatchSources(t *testing.T) {
	text, err := os.ReadFile("attention_wgmma.cu")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"kWgmmaThreads": attentionWGMMAThreads, "kWgmmaRows": attentionWGMMARows, "kWgmmaStages": 2} {
		m := regexp.MustCompile(`constexpr int ` + name + ` = (\d+);`).FindSubmatch(text)
		if m == nil {
			t.Errorf("attention_wgmma.cu: %s not found", name)
			continue
		}
		if got, _ := strconv.Atoi(string(m[1])); got != want {
			t.Errorf("%s is %d in attention_wgmma.cu, %d in Go", name, got, want)
		}
	}
	var got []attentionTile
	for _, m := range regexp.MustCompile(`(?m)^KILN_ATTENTION_WGMMA_ALL\((\d+), (\d+)\)$`).FindAllSubmatch(text, -1) {
		dim, _ := strconv.Atoi(string(m[1]))
		bn, _ := strconv.Atoi(string(m[2]))
		got = append(got, attentionTile{Dim: dim, KeysPerTile: bn, Warps: 12})
	}
	if !slices.Equal(got, wgmmaTiles) {
		t.Errorf("attention_wgmma.cu's tiles %v, wgmmaTiles %v", got, wgmmaTiles)
	}
	if !regexp.MustCompile(`(?m)^// kiln:targets sm_90a$`).Match(text) {
		t.Error("attention_wgmma.cu lacks the sm_90a marker")
	}
	if !slices.Contains(attentionHopperKinds, KindWGMMA) {
		t.Error("attentionHopperKinds does not list the wgmma prefill")
	}
}
