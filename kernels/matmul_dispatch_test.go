package kernels

import (
	"os"
	"regexp"
	"strconv"
	"testing"
	"testing/fstest"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// TestPlanMatMul is dispatch's table: kernel, tiles and split-k for the
// shapes of LLaMA-sized layers and the edges (m around 16 and 32, k = 0,
// SwiGLU, a small GPU, no workspace). The expected numbers are worked out
// by hand from the rules in matmul_dispatch.go:
//
//	tiles = ⌈n_virtual/rows⌉·⌈m/m_rows⌉ (decode and SIMT 64 rows, GEMM 128×128);
//	want = 2·SMs (decode, SIMT) or SMs (GEMM); split when 2·tiles ≤ want into
//	min(⌊want/tiles⌋, ⌊steps/minSteps⌋, 16) slices of whole k steps (chunk
//	of the format, or 32 for the GEMM), then as few slices as that many
//	steps per slice needs.
func TestPlanMatMul(t *testing.T) {
	h100 := ComputeCapability{9, 0}
	a100 := ComputeCapability{8, 0}
	type want struct {
		kernel    string
		splitK    int
		kPerSplit int64
		nTiles    int64
		mTiles    int64
		wsBytes   int64
	}
	tests := []struct {
		name   string
		m, n   int64
		k      int64
		w, x   tensor.DType
		swiglu bool
		cc     ComputeCapability
		sms    int
		sel    Variant
		noWS   bool
		want   want
	}{
		// Decode, F16/BF16 activations: tensor-core decode kernel.
		{"m1 4096x4096 q4_k: 64 tiles, 4 slices of 4 chunks", 1, 4096, 4096, tensor.Q4_K, tensor.F16, false, h100, 132, VariantAuto, false,
			want{"matmul_q4_k_f16_decode", 4, 1024, 64, 1, 4 * 1 * 4096 * 4}},
		{"m2 4096x4096 q4_0", 2, 4096, 4096, tensor.Q4_0, tensor.F16, false, h100, 132, VariantAuto, false,
			want{"matmul_q4_0_f16_decode", 4, 1024, 64, 1, 4 * 2 * 4096 * 4}},
		{"m7 14336x4096 q8_0: 224 tiles, no split", 7, 14336, 4096, tensor.Q8_0, tensor.BF16, false, h100, 132, VariantAuto, false,
			want{"matmul_q8_0_bf16_decode", 1, 4096, 224, 1, 0}},
		{"m16 4096x14336 q6_k: 56 chunks in 4 slices of 14", 16, 4096, 14336, tensor.Q6_K, tensor.F16, false, h100, 132, VariantAuto, false,
			want{"matmul_q6_k_f16_decode", 4, 14 * 256, 64, 1, 4 * 16 * 4096 * 4}},
		{"m1 1024x4096 q4_k (a KV projection): 16 tiles, 8 slices of 2 chunks", 1, 1024, 4096, tensor.Q4_K, tensor.BF16, false, h100, 132, VariantAuto, false,
			want{"matmul_q4_k_bf16_decode", 8, 512, 16, 1, 8 * 1 * 1024 * 4}},
		{"m1 128256x4096 q6_k (the output layer): 2004 tiles", 1, 128256, 4096, tensor.Q6_K, tensor.F16, false, h100, 132, VariantAuto, false,
			want{"matmul_q6_k_f16_decode", 1, 4096, 2004, 1, 0}},
		{"m1 f32 weights, k = 100: 2 chunks, too few to split", 1, 64, 100, tensor.F32, tensor.F16, false, h100, 132, VariantAuto, false,
			want{"matmul_f32_f16_decode", 1, 100, 1, 1, 0}},
		{"A100 (108 SMs): 3 slices of 6 chunks", 1, 4096, 4096, tensor.Q4_K, tensor.F16, false, a100, 108, VariantAuto, false,
			want{"matmul_q4_k_f16_decode", 3, 1536, 64, 1, 3 * 1 * 4096 * 4}},
		{"unknown SM count: the default, 108", 1, 4096, 4096, tensor.Q4_K, tensor.F16, false, a100, 0, VariantAuto, false,
			want{"matmul_q4_k_f16_decode", 3, 1536, 64, 1, 3 * 1 * 4096 * 4}},
		{"no workspace: no split", 1, 4096, 4096, tensor.Q4_K, tensor.F16, false, h100, 132, VariantAuto, true,
			want{"matmul_q4_k_f16_decode", 1, 4096, 64, 1, 0}},
		// SwiGLU: n_virtual = 16·⌈n/8⌉.
		{"swiglu m1 n14336: 28672 virtual rows", 1, 14336, 4096, tensor.Q4_K, tensor.F16, true, h100, 132, VariantAuto, false,
			want{"matmul_q4_k_f16_decode", 1, 4096, 448, 1, 0}},
		{"swiglu m1 n100: 208 virtual rows, 4 tiles, 8 slices", 1, 100, 4096, tensor.Q4_K, tensor.F16, true, h100, 132, VariantAuto, false,
			want{"matmul_q4_k_f16_decode", 8, 512, 4, 1, 8 * 1 * 208 * 4}},
		// Prefill, F16/BF16 activations: the tensor-core GEMM.
		{"m17: the GEMM, 32 tiles, 4 slices of 32 k-tiles", 17, 4096, 4096, tensor.Q4_K, tensor.F16, false, h100, 132, VariantAuto, false,
			want{"matmul_q4_k_f16_mma", 4, 1024, 32, 1, 4 * 17 * 4096 * 4}},
		{"m32 14336x4096 f16: 112 tiles", 32, 14336, 4096, tensor.F16, tensor.F16, false, h100, 132, VariantAuto, false,
			want{"matmul_f16_f16_mma", 1, 4096, 112, 1, 0}},
		{"m33 bf16 4096x4096", 33, 4096, 4096, tensor.BF16, tensor.BF16, false, h100, 132, VariantAuto, false,
			want{"matmul_bf16_bf16_mma", 4, 1024, 32, 1, 4 * 33 * 4096 * 4}},
		{"m512 4096x4096 q4_k: 128 tiles", 512, 4096, 4096, tensor.Q4_K, tensor.F16, false, h100, 132, VariantAuto, false,
			want{"matmul_q4_k_f16_mma", 1, 4096, 32, 4, 0}},
		{"m512 4096x14336 q8_0", 512, 4096, 14336, tensor.Q8_0, tensor.BF16, false, h100, 132, VariantAuto, false,
			want{"matmul_q8_0_bf16_mma", 1, 14336, 32, 4, 0}},
		{"m4096 128256x4096 q6_k", 4096, 128256, 4096, tensor.Q6_K, tensor.BF16, false, h100, 132, VariantAuto, false,
			want{"matmul_q6_k_bf16_mma", 1, 4096, 1002, 32, 0}},
		// F32 activations: CUDA cores, MR the smallest of 1, 2, 4, 8 ≥ m, else 8.
		{"f32 m1", 1, 4096, 4096, tensor.Q4_K, tensor.F32, false, h100, 132, VariantAuto, false,
			want{"matmul_q4_k_f32_simt_m1", 4, 1024, 64, 1, 4 * 1 * 4096 * 4}},
		{"f32 m2", 2, 14336, 4096, tensor.Q8_0, tensor.F32, false, h100, 132, VariantAuto, false,
			want{"matmul_q8_0_f32_simt_m2", 1, 4096, 224, 1, 0}},
		{"f32 m3", 3, 14336, 4096, tensor.Q4_0, tensor.F32, false, h100, 132, VariantAuto, false,
			want{"matmul_q4_0_f32_simt_m4", 1, 4096, 224, 1, 0}},
		{"f32 m7", 7, 14336, 4096, tensor.Q6_K, tensor.F32, false, h100, 132, VariantAuto, false,
			want{"matmul_q6_k_f32_simt_m8", 1, 4096, 224, 1, 0}},
		{"f32 m16: two m tiles of 8", 16, 14336, 4096, tensor.BF16, tensor.F32, false, h100, 132, VariantAuto, false,
			want{"matmul_bf16_f32_simt_m8", 1, 4096, 224, 2, 0}},
		{"f32 m17: three m tiles of 8", 17, 14336, 4096, tensor.F16, tensor.F32, false, h100, 132, VariantAuto, false,
			want{"matmul_f16_f32_simt_m8", 1, 4096, 224, 3, 0}},
		{"f32 m9, 1024x4096: 32 tiles, 8 slices", 9, 1024, 4096, tensor.F32, tensor.F32, false, h100, 132, VariantAuto, false,
			want{"matmul_f32_f32_simt_m8", 8, 512, 16, 2, 8 * 9 * 1024 * 4}},
		{"f32 m33, 4096x4096: 320 tiles", 33, 4096, 4096, tensor.F32, tensor.F32, false, h100, 132, VariantAuto, false,
			want{"matmul_f32_f32_simt_m8", 1, 4096, 64, 5, 0}},
		{"f32 m512", 512, 4096, 14336, tensor.Q4_K, tensor.F32, false, h100, 132, VariantAuto, false,
			want{"matmul_q4_k_f32_simt_m8", 1, 14336, 64, 64, 0}},
		{"f32 m4096 128256x4096", 4096, 128256, 4096, tensor.Q6_K, tensor.F32, false, h100, 132, VariantAuto, false,
			want{"matmul_q6_k_f32_simt_m8", 1, 4096, 2004, 512, 0}},
		// The simple kernel.
		{"k = 0: simple", 5, 64, 0, tensor.Q4_K, tensor.F16, false, h100, 132, VariantAuto, false,
			want{"matmul_q4_k_f16", 1, 0, 0, 0, 0}},
		{"KILN_KERNELS=simple, decode shape", 1, 4096, 4096, tensor.Q4_K, tensor.F16, false, h100, 132, VariantSimple, false,
			want{"matmul_q4_k_f16", 1, 4096, 0, 0, 0}},
		{"KILN_KERNELS=simple, prefill shape", 512, 4096, 4096, tensor.Q8_0, tensor.BF16, false, h100, 132, VariantSimple, false,
			want{"matmul_q8_0_bf16", 1, 4096, 0, 0, 0}},
		{"KILN_KERNELS=simple, f32", 1, 4096, 4096, tensor.Q6_K, tensor.F32, false, h100, 132, VariantSimple, false,
			want{"matmul_q6_k_f32", 1, 4096, 0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := planMatMul(matmulProblem{M: tc.m, N: tc.n, K: tc.k, WType: tc.w, XType: tc.x, SwiGLU: tc.swiglu,
				CC: tc.cc, SMCount: tc.sms, Variant: tc.sel, SplitOK: !tc.noWS})
			got := want{kernelTable[p.Kernel].name, p.SplitK, p.KPerSplit, p.NTiles, p.MTiles, p.WorkspaceBytes}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			// Invariants: the slices cover k with whole steps, none empty.
			if p.SplitK > 1 {
				if int64(p.SplitK-1)*p.KPerSplit >= tc.k || int64(p.SplitK)*p.KPerSplit < tc.k {
					t.Errorf("%d slices of %d do not cover k = %d with none empty", p.SplitK, p.KPerSplit, tc.k)
				}
			}
		})
	}
}

// TestPlanMatMulEveryType: every weight and activation dtype gets a kernel
// of its own types, for decode and prefill shapes, and the simple kernel
// under VariantSimple.
func TestPlanMatMulEveryType(t *testing.T) {
	for _, w := range matmulWeightTypes {
		for _, x := range floatTypes {
			for _, m := range []int64{1, 2, 7, 16, 17, 32, 33, 512, 4096} {
				for _, sel := range []Variant{VariantAuto, VariantSimple} {
					p := planMatMul(matmulProblem{M: m, N: 4096, K: 14336, WType: w, XType: x, CC: ComputeCapability{8, 6}, SMCount: 84, Variant: sel, SplitOK: true})
					info := kernelTable[p.Kernel]
					want := "matmul_" + dtypeName(w) + "_" + dtypeName(x)
					if info.name[:len(want)] != want {
						t.Errorf("%v × %v, m %d, %v: kernel %s, want a %s… kernel", w, x, m, sel, info.name, want)
					}
					if info.kind != p.Kind {
						t.Errorf("%s: plan kind %s, kernel kind %s", info.name, p.Kind, info.kind)
					}
					if sel == VariantSimple && p.Kind != KindSimple {
						t.Errorf("%v × %v m %d: VariantSimple chose %s", w, x, m, info.name)
					}
					if sel == VariantAuto && p.Kind == KindSimple {
						t.Errorf("%v × %v m %d: auto chose the simple kernel", w, x, m)
					}
					if p.Kind == KindSIMT && int64(p.MR) < min(m, 8) {
						t.Errorf("%s for m = %d", info.name, m)
					}
				}
			}
		}
	}
}

// TestPlanMatMulDisabledVariants: a variant switched off in variants.go is
// never chosen; the next in line is.
func TestPlanMatMulDisabledVariants(t *testing.T) {
	q := matmulProblem{M: 1, N: 4096, K: 4096, WType: tensor.Q4_K, XType: tensor.F16, CC: ComputeCapability{9, 0}, SMCount: 132, SplitOK: true}
	name := func(q matmulProblem) string { return kernelTable[planMatMul(q).Kernel].name }
	disable := func(f Family, k Kind) func() {
		key := familyVariant{f, k}
		disabledVariants[key] = true
		return func() { delete(disabledVariants, key) }
	}
	undo := disable(FamilyMatMulDecode, KindDecode)
	if got := name(q); got != "matmul_q4_k_f16_mma" {
		t.Errorf("decode disabled, m = 1: %s, want the GEMM", got)
	}
	undo2 := disable(FamilyMatMulMMA, KindMMA)
	if got := name(q); got != "matmul_q4_k_f16" {
		t.Errorf("decode and GEMM disabled: %s, want the simple kernel", got)
	}
	undo()
	q.M = 512
	if got := name(q); got != "matmul_q4_k_f16_decode" {
		t.Errorf("GEMM disabled, m = 512: %s, want the decode kernel (m tiles of 16)", got)
	}
	undo2()
	q.M = 1
	undo3 := disable(FamilyMatMul, KindSplitK)
	if p := planMatMul(q); p.SplitK != 1 || p.WorkspaceBytes != 0 {
		t.Errorf("split-k reduction disabled: split %d, workspace %d", p.SplitK, p.WorkspaceBytes)
	}
	undo3()
	q.XType = tensor.F32
	undo4 := disable(FamilyMatMulSIMT, KindSIMT)
	if got := name(q); got != "matmul_q4_k_f32" {
		t.Errorf("SIMT disabled: %s, want the simple kernel", got)
	}
	undo4()
}

// TestChooseSplitK: the split rules on their own.
func TestChooseSplitK(t *testing.T) {
	tests := []struct {
		tiles, want, steps, minSteps int64
		slices                       int
		per                          int64
	}{
		{64, 264, 16, 2, 4, 4},    // ⌊264/64⌋ = 4
		{133, 264, 16, 2, 1, 16},  // 2·133 > 264
		{132, 264, 16, 2, 2, 8},   // exactly half: split in 2
		{1, 264, 1000, 2, 16, 63}, // capped at 16: 16 slices of 63 steps (the last 55)
		{16, 264, 16, 2, 8, 2},    // capped by steps: 8 slices of 2
		{16, 264, 3, 2, 1, 3},     // too few steps
		{10, 264, 10, 2, 5, 2},
		{10, 264, 11, 2, 4, 3}, // 5 slices wanted, of ⌈11/5⌉ = 3 steps: ⌈11/3⌉ = 4 suffice
		{0, 264, 16, 2, 1, 16},
	}
	for _, tc := range tests {
		slices, per := chooseSplitK(tc.tiles, tc.want, tc.steps, tc.minSteps)
		if slices != tc.slices || per != tc.per {
			t.Errorf("chooseSplitK(%d tiles, want %d, %d steps, min %d) = %d slices of %d, want %d of %d",
				tc.tiles, tc.want, tc.steps, tc.minSteps, slices, per, tc.slices, tc.per)
		}
	}
}

// TestMatMulConstantsMatchSources: the Go launch geometry equals the
// kernels' constants.
func TestMatMulConstantsMatchSources(t *testing.T) {
	read := func(file string) string {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	constant := func(text, file, name string) int {
		m := regexp.MustCompile(`constexpr int ` + name + ` = (\d+)`).FindStringSubmatch(text)
		if m == nil {
			m = regexp.MustCompile(`\b` + name + ` = (\d+)`).FindStringSubmatch(text)
		}
		if m == nil {
			t.Fatalf("%s: %s not found", file, name)
		}
		v, _ := strconv.Atoi(m[1])
		return v
	}
	simt, decode, mma, common := read("matmul_simt.cu"), read("matmul_decode.cu"), read("matmul_mma.cu"), read("matmul_common.cuh")
	wg := read("matmul_wgmma.cu")
	for _, c := range []struct {
		text, file, name string
		goValue          int
	}{
		{simt, "matmul_simt.cu", "kSimtThreads", simtThreads},
		{simt, "matmul_simt.cu", "kSimtRows", simtRows},
		{decode, "matmul_decode.cu", "kDecodeThreads", decodeThreads},
		{decode, "matmul_decode.cu", "kDecodeRows", decodeRows},
		{mma, "matmul_mma.cu", "kMmaThreads", mmaThreads},
		{mma, "matmul_mma.cu", "kMmaBM", mmaBM},
		{mma, "matmul_mma.cu", "kMmaBN", mmaBN},
		{mma, "matmul_mma.cu", "kMmaBK", mmaBK},
		{wg, "matmul_wgmma.cu", "kWgThreads", wgmmaThreads},
		{wg, "matmul_wgmma.cu", "kWgBM", wgmmaBM},
		{wg, "matmul_wgmma.cu", "kWgBN", wgmmaBN},
		{wg, "matmul_wgmma.cu", "kWgBK", wgmmaBK},
		{wg, "matmul_wgmma.cu", "kWgSmemBytes", wgmmaSharedBytes},
	} {
		if got := constant(c.text, c.file, c.name); got != c.goValue {
			t.Errorf("%s: %s = %d, Go has %d", c.file, c.name, got, c.goValue)
		}
	}
	formats := map[string]tensor.DType{"kWF32": tensor.F32, "kWF16": tensor.F16, "kWBF16": tensor.BF16, "kWQ8_0": tensor.Q8_0,
		"kWQ4_0": tensor.Q4_0, "kWQ4_K": tensor.Q4_K, "kWQ6_K": tensor.Q6_K}
	re := regexp.MustCompile(`struct Weight<(kW\w+)> \{\s*static constexpr int kBlockElems = (\d+), kBlockBytes = (\d+), kChunkElems = (\d+);`)
	found := 0
	for _, m := range re.FindAllStringSubmatch(common, -1) {
		dt, ok := formats[m[1]]
		if !ok {
			t.Errorf("matmul_common.cuh: unknown format %s", m[1])
			continue
		}
		found++
		be, _ := strconv.Atoi(m[2])
		bb, _ := strconv.Atoi(m[3])
		chunk, _ := strconv.Atoi(m[4])
		if be != dt.BlockElems() || bb != dt.BlockBytes() {
			t.Errorf("Weight<%s>: %d elements in %d bytes, %v has %d in %d", m[1], be, bb, dt, dt.BlockElems(), dt.BlockBytes())
		}
		if int64(chunk) != matmulChunkElems(dt) {
			t.Errorf("Weight<%s>::kChunkElems = %d, matmulChunkElems(%v) = %d", m[1], chunk, dt, matmulChunkElems(dt))
		}
	}
	if found != len(formats) {
		t.Errorf("found %d Weight<> formats in matmul_common.cuh, want %d", found, len(formats))
	}
	mrs := regexp.MustCompile(`KILN_MATMUL_SIMT\(WNAME, FMT, (\d+)\)`).FindAllStringSubmatch(simt, -1)
	if len(mrs) != len(simtRowsPerBlock) {
		t.Fatalf("matmul_simt.cu instantiates %d MR values, Go knows %v", len(mrs), simtRowsPerBlock)
	}
	for i, m := range mrs {
		if v, _ := strconv.Atoi(m[1]); v != simtRowsPerBlock[i] {
			t.Errorf("MR %d in matmul_simt.cu, %d in simtRowsPerBlock", v, simtRowsPerBlock[i])
		}
	}
}

// TestPlanMatMulHopperHook: a kind listed in matmulHopperKinds goes first
// for m > 16 on compute capability 9.0 only (the slot the sm_90a wgmma GEMM
// will take; the decode kind stands in for it here).
func TestPlanMatMulHopperHook(t *testing.T) {
	saved := matmulHopperKinds
	matmulHopperKinds = []Kind{KindDecode}
	defer func() { matmulHopperKinds = saved }()
	q := matmulProblem{M: 512, N: 4096, K: 4096, WType: tensor.Q4_K, XType: tensor.F16, SMCount: 132, SplitOK: true, HopperOK: true}
	for _, tc := range []struct {
		cc   ComputeCapability
		want Kind
	}{{ComputeCapability{9, 0}, KindDecode}, {ComputeCapability{8, 0}, KindMMA}, {ComputeCapability{8, 9}, KindMMA}, {ComputeCapability{10, 0}, KindMMA}} {
		q.CC = tc.cc
		if got := planMatMul(q).Kind; got != tc.want {
			t.Errorf("compute capability %s: %s, want %s", tc.cc, got, tc.want)
		}
	}
	q.CC, q.HopperOK = ComputeCapability{9, 0}, false
	if got := planMatMul(q).Kind; got != KindMMA {
		t.Errorf("compute capability 9.0 without the Hopper module: %s, want mma", got)
	}
	q.HopperOK = true
	q.M = 8
	if got := planMatMul(q).Kind; got != KindDecode {
		t.Errorf("m = 8 on 9.0: %s", got)
	}
	q.XType = tensor.F32
	if got := planMatMul(q).Kind; got != KindSIMT {
		t.Errorf("F32 activations on 9.0: %s, want simt (tensor cores never take F32)", got)
	}
}

// TestPlanMatMulWGMMA: the Hopper GEMM's plans, worked out by hand from the
// rules in matmul_dispatch.go: 128×128 tiles, one block per SM wanted,
// 64-element k steps, at least 2 per slice.
func TestPlanMatMulWGMMA(t *testing.T) {
	h100 := ComputeCapability{9, 0}
	type want struct {
		kernel         string
		threads        int
		sharedBytes    int
		splitK         int
		kPerSplit      int64
		nTiles, mTiles int64
		wsBytes        int64
	}
	tests := []struct {
		name   string
		m, n   int64
		k      int64
		w, x   tensor.DType
		swiglu bool
		want   want
	}{
		{"m512 4096x4096 q4_k: 128 tiles, no split", 512, 4096, 4096, tensor.Q4_K, tensor.F16, false,
			want{"matmul_q4_k_f16_wgmma", 256, 99328, 1, 4096, 32, 4, 0}},
		{"m17 4096x4096 q4_0: 32 tiles, 4 slices of 16 k-tiles", 17, 4096, 4096, tensor.Q4_0, tensor.BF16, false,
			want{"matmul_q4_0_bf16_wgmma", 256, 99328, 4, 1024, 32, 1, 4 * 17 * 4096 * 4}},
		{"m33 swiglu 14336x4096 q6_k: 28672 virtual rows, 224 tiles", 33, 14336, 4096, tensor.Q6_K, tensor.BF16, true,
			want{"matmul_q6_k_bf16_wgmma", 256, 99328, 1, 4096, 224, 1, 0}},
		{"m40 f16 64x100: 2 k-tiles, too few to split", 40, 64, 100, tensor.F16, tensor.F16, false,
			want{"matmul_f16_f16_wgmma", 256, 99328, 1, 100, 1, 1, 0}},
		{"m64 q8_0 1024x640: 8 tiles, 10 k-tiles: 5 slices of 2", 64, 1024, 640, tensor.Q8_0, tensor.F16, false,
			want{"matmul_q8_0_f16_wgmma", 256, 99328, 5, 128, 8, 1, 5 * 64 * 1024 * 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := planMatMul(matmulProblem{M: tc.m, N: tc.n, K: tc.k, WType: tc.w, XType: tc.x, SwiGLU: tc.swiglu,
				CC: h100, SMCount: 132, SplitOK: true, HopperOK: true})
			got := want{kernelTable[p.Kernel].name, p.Threads, p.SharedBytes, p.SplitK, p.KPerSplit, p.NTiles, p.MTiles, p.WorkspaceBytes}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if p.Kind != KindWGMMA || kernelTable[p.Kernel].family != FamilyMatMulWGMMA {
				t.Errorf("kind %s, family %s", p.Kind, kernelTable[p.Kernel].family)
			}
		})
	}
	// Every weight type with both activation types gets its own kernel.
	for _, w := range matmulWeightTypes {
		for _, x := range tensorCoreTypes {
			p := planMatMul(matmulProblem{M: 100, N: 4096, K: 4096, WType: w, XType: x, CC: h100, SMCount: 132, SplitOK: true, HopperOK: true})
			if want := "matmul_" + dtypeName(w) + "_" + dtypeName(x) + "_wgmma"; kernelTable[p.Kernel].name != want {
				t.Errorf("%v × %v: %s, want %s", w, x, kernelTable[p.Kernel].name, want)
			}
		}
	}
	// Where it does not apply, the existing order.
	base := matmulProblem{M: 512, N: 4096, K: 4096, WType: tensor.Q4_K, XType: tensor.F16, CC: h100, SMCount: 132, SplitOK: true, HopperOK: true}
	for _, tc := range []struct {
		name   string
		change func(q *matmulProblem)
		want   string
	}{
		{"sm_90a module not loaded", func(q *matmulProblem) { q.HopperOK = false }, "matmul_q4_k_f16_mma"},
		{"compute capability 8.0", func(q *matmulProblem) { q.CC = ComputeCapability{8, 0} }, "matmul_q4_k_f16_mma"},
		{"compute capability 10.0", func(q *matmulProblem) { q.CC = ComputeCapability{10, 0} }, "matmul_q4_k_f16_mma"},
		{"m = 16", func(q *matmulProblem) { q.M = 16 }, "matmul_q4_k_f16_decode"},
		{"F32 activations", func(q *matmulProblem) { q.XType = tensor.F32 }, "matmul_q4_k_f32_simt_m8"},
		{"KILN_KERNELS=simple", func(q *matmulProblem) { q.Variant = VariantSimple }, "matmul_q4_k_f16"},
		{"k = 0", func(q *matmulProblem) { q.K = 0 }, "matmul_q4_k_f16"},
	} {
		q := base
		tc.change(&q)
		if got := kernelTable[planMatMul(q).Kernel].name; got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	key := familyVariant{FamilyMatMulWGMMA, KindWGMMA}
	disabledVariants[key] = true
	got := kernelTable[planMatMul(base).Kernel].name
	delete(disabledVariants, key)
	if got != "matmul_q4_k_f16_mma" {
		t.Errorf("wgmma disabled: %s, want the mma GEMM", got)
	}
}

// hopperMatMulFS is PTX for the matmul families with the Hopper GEMM's
// sm_90a module (a few of its kernels) and its empty compute_80 module.
func hopperMatMulFS() fstest.MapFS {
	return fstest.MapFS{
		"compute_80/matmul.ptx":       testPTX("sm_80", "matmul_q4_k_f16", "matmul_reduce_f16"),
		"compute_80/matmul_mma.ptx":   testPTX("sm_80", "matmul_q4_k_f16_mma"),
		"compute_80/matmul_wgmma.ptx": testPTX("sm_80"),
		"sm_90a/matmul_wgmma.ptx":     testPTX("sm_90a", "matmul_q4_k_f16_wgmma"),
	}
}

// prefillArgs is a prefill-sized product: 512 F16 rows against a
// 4096×4096 Q4_K weight.
func prefillArgs() MatMulArgs {
	return MatMulArgs{M: 512, N: 4096, K: 4096,
		X: 0x1000_0000, XRowStride: 4096, XType: tensor.F16,
		W: 0x2000_0000, WRowStride: 4096, WType: tensor.Q4_K,
		Y: 0x3000_0000, YRowStride: 4096}
}

// TestMatMulWGMMALaunch: on compute capability 9.0 with the sm_90a module
// loaded, MatMul launches the Hopper GEMM with its dynamic shared memory
// (raised once); when the driver refuses the sm_90a module, the compute_80
// one loads (without wgmma kernels) and the mma GEMM runs instead; without
// a way to raise the shared memory limit, the mma GEMM too.
func TestMatMulWGMMALaunch(t *testing.T) {
	newDriver := func() *smemDriver {
		d := &smemDriver{fakeDriver: newFakeDriver(), optin: 227 << 10, set: map[string]int{}}
		d.smCount = 132
		return d
	}
	t.Run("sm_90a loaded", func(t *testing.T) {
		d := newDriver()
		s, err := newSet(d, ComputeCapability{9, 0}, Options{FS: hopperMatMulFS()})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := s.MatMul(nil, prefillArgs()); err != nil {
				t.Fatal(err)
			}
		}
		got := d.lastLaunch(t)
		if got.kernel != "matmul_q4_k_f16_wgmma" || got.grid != (cuda.Dim3{X: 32, Y: 4, Z: 1}) || got.block != cuda.D1(256) || got.sharedBytes != 99328 {
			t.Errorf("launch %s grid %v block %v shared %d", got.kernel, got.grid, got.block, got.sharedBytes)
		}
		if d.set["matmul_q4_k_f16_wgmma"] != 99328 || d.setCalls != 1 {
			t.Errorf("shared memory limits set %v in %d calls, want 99328 once", d.set, d.setCalls)
		}
		if tg, ok := s.LoadedTarget(FamilyMatMulWGMMA); !ok || tg != TargetSM90a {
			t.Errorf("matmul_wgmma loaded from %q (%v)", tg, ok)
		}
		c, err := s.MatMulChoice(prefillArgs())
		if err != nil || c.Kernel != "matmul_q4_k_f16_wgmma" || c.Kind != KindWGMMA {
			t.Errorf("MatMulChoice = %+v, %v", c, err)
		}
		// On 8.9 the same Set contents give the mma GEMM.
		d2 := newDriver()
		s2, err := newSet(d2, ComputeCapability{8, 9}, Options{FS: hopperMatMulFS()})
		if err != nil {
			t.Fatal(err)
		}
		if err := s2.MatMul(nil, prefillArgs()); err != nil {
			t.Fatal(err)
		}
		if got := d2.lastLaunch(t); got.kernel != "matmul_q4_k_f16_mma" || got.sharedBytes != 0 {
			t.Errorf("compute capability 8.9: launched %s with %d shared bytes", got.kernel, got.sharedBytes)
		}
		if _, ok := s2.LoadedTarget(FamilyMatMulWGMMA); ok {
			t.Error("compute capability 8.9 loaded the Hopper matmul family")
		}
	})
	t.Run("sm_90a refused", func(t *testing.T) {
		d := newDriver()
		d.refuse["sm_90a"] = true
		s, err := newSet(d, ComputeCapability{9, 0}, Options{FS: hopperMatMulFS()})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.MatMul(nil, prefillArgs()); err != nil {
			t.Fatal(err)
		}
		if got := d.lastLaunch(t); got.kernel != "matmul_q4_k_f16_mma" || got.sharedBytes != 0 {
			t.Errorf("launched %s with %d shared bytes, want the mma GEMM", got.kernel, got.sharedBytes)
		}
		if tg, ok := s.LoadedTarget(FamilyMatMulWGMMA); !ok || tg != TargetCompute80 {
			t.Errorf("matmul_wgmma loaded from %q (%v), want the compute_80 fallback", tg, ok)
		}
	})
	t.Run("no shared memory opt-in", func(t *testing.T) {
		s, d := newTestSetFS(t, ComputeCapability{9, 0}, hopperMatMulFS(), nil)
		d.smCount = 132
		if err := s.MatMul(nil, prefillArgs()); err != nil {
			t.Fatal(err)
		}
		if got := d.lastLaunch(t); got.kernel != "matmul_q4_k_f16_mma" {
			t.Errorf("launched %s, want the mma GEMM (no way to raise the 48 KiB limit)", got.kernel)
		}
	})
	t.Run("KILN_KERNELS=simple", func(t *testing.T) {
		d := newDriver()
		s, err := newSet(d, ComputeCapability{9, 0}, Options{FS: hopperMatMulFS(), Variant: VariantSimple})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.MatMul(nil, prefillArgs()); err != nil {
			t.Fatal(err)
		}
		if got := d.lastLaunch(t); got.kernel != "matmul_q4_k_f16" {
			t.Errorf("launched %s, want the simple kernel", got.kernel)
		}
		if _, ok := s.LoadedTarget(FamilyMatMulWGMMA); ok {
			t.Error("VariantSimple loaded the Hopper matmul family")
		}
	})
}
