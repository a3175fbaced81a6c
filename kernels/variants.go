package kernels

import (
	"fmt"
	"strings"
)

// Variant says which kernels dispatch may use: Options.Variant, filled by
// the backend from KILN_KERNELS.
type Variant uint8

const (
	// VariantAuto lets dispatch pick a fast variant where one applies and is
	// not disabled (the default).
	VariantAuto Variant = iota
	// VariantSimple restricts dispatch to the simple kernels
	// (KILN_KERNELS=simple), to check or work around a fast variant.
	VariantSimple
)

func (s Variant) String() string {
	if s == VariantSimple {
		return "simple"
	}
	return "auto"
}

// ParseVariant reads a KILN_KERNELS value: "" or "auto", or "simple".
func ParseVariant(s string) (Variant, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return VariantAuto, nil
	case "simple":
		return VariantSimple, nil
	}
	return VariantAuto, fmt.Errorf("kernels: unknown kernel selection %q (want \"auto\" or \"simple\")", s)
}

// Status records what is known about a variant on real GPUs.
type Status string

const (
	// StatusCompiled: compiled and checked by ptxas, never run on a GPU.
	StatusCompiled Status = "compiled, not yet run on a GPU"
	// StatusPassed: matched the CPU reference in the GPU suite.
	StatusPassed Status = "passed on a GPU"
	// StatusDisabled: failed on a GPU; dispatch never picks it.
	StatusDisabled Status = "failed on a GPU, disabled"
)

// VariantStatus is one row of the variant table: one kind of kernel of one family.
type VariantStatus struct {
	Family Family
	Kind   Kind
	// Kernels is the name pattern of the variant's kernels.
	Kernels string
	// When says when dispatch picks the variant.
	When   string
	Status Status
}

// variantStatuses is the variant table. Update a Status here when the GPU
// suite has run a variant; set StatusDisabled to switch a failing one off.
var variantStatuses = []VariantStatus{
	{FamilyCopy, KindSimple, "copy_<src>_to_<dst>", "always available; any strides", StatusCompiled},
	{FamilyCopy, KindVec, "copy_<src>_to_<dst>_vec", "both contiguous, pointers aligned to a 16-byte vector of the wider type", StatusCompiled},
	{FamilyBinary, KindSimple, "add_<dt>, mul_<dt>", "always available; any strides, broadcasting", StatusCompiled},
	{FamilyBinary, KindVec, "add_<dt>_vec, mul_<dt>_vec", "dst, a, b contiguous (no broadcasting), 16-byte aligned", StatusCompiled},
	{FamilyUnary, KindSimple, "silu_<dt>, gelu_<dt>, gelu_tanh_<dt>", "always available; any strides", StatusCompiled},
	{FamilyUnary, KindVec, "silu_<dt>_vec, gelu_<dt>_vec, gelu_tanh_<dt>_vec", "dst, x contiguous, 16-byte aligned", StatusCompiled},
	{FamilySoftmax, KindSimple, "softmax_<dt>", "always available; one block per row", StatusCompiled},
	{FamilySoftmax, KindWarp, "softmax_<dt>_warp", fmt.Sprintf("rows of at most %d elements; one warp per row", warpRowMaxLen), StatusCompiled},
	{FamilyNorm, KindSimple, "rmsnorm_<dt>, layernorm_<dt>", "always available; one block per row", StatusCompiled},
	{FamilyNorm, KindWarp, "rmsnorm_<dt>_warp, layernorm_<dt>_warp", fmt.Sprintf("rows of at most %d elements; one warp per row", warpRowMaxLen), StatusCompiled},
	{FamilyRoPE, KindSimple, "rope_<dt>", "always", StatusCompiled},
	{FamilyEmbedding, KindSimple, "embedding_<table>_to_<dst>", "always", StatusCompiled},
	{FamilyArgmax, KindSimple, "argmax_<dt>", "always", StatusCompiled},
	{FamilyProbe, KindProbe, "read_probe_b128, copy_probe_b128", "benchmark harness only", StatusCompiled},
	{FamilyMatMul, KindSimple, "matmul_<w>_<x>", "always available; one thread per output element", StatusCompiled},
	{FamilyMatMul, KindSplitK, "matmul_reduce_<x>", "after a fast matmul kernel that split k (too few output tiles for the SMs)", StatusCompiled},
	{FamilyMatMulSIMT, KindSIMT, "matmul_<w>_f32_simt_m<MR>, MR 1, 2, 4, 8", "F32 activations: the smallest MR ≥ m, MR 8 tiled over m above 8", StatusCompiled},
	{FamilyMatMulDecode, KindDecode, "matmul_<w>_<x>_decode, x f16, bf16", "F16/BF16 activations, m ≤ 16 (tensor cores)", StatusCompiled},
	{FamilyMatMulMMA, KindMMA, "matmul_<w>_<x>_mma, x f16, bf16", "F16/BF16 activations, m > 16 (tensor-core GEMM)", StatusCompiled},
	{FamilyMatMulWGMMA, KindWGMMA, "matmul_<w>_<x>_wgmma, x f16, bf16", "F16/BF16 activations, m > 16, compute capability 9.0 with the family's sm_90a module loaded (Hopper wgmma GEMM; else the mma GEMM)", StatusCompiled},
	{FamilyAttention, KindSimple, "attention_<dt>", "always available: every dtype, head dim, K/V layout and option; one warp per (query row, head)", StatusCompiled},
	{FamilyAttention, KindCombine, "attention_<dt>_combine, dt f16, bf16", "after a decode kernel that split the keys (too few blocks for the SMs)", StatusCompiled},
	{FamilyAttentionPrefill, KindPrefill, "attention_<dt>_prefill_d<D>, dt f16, bf16, D 48, 64, 80, 96, 128, 160, 256",
		"F16/BF16, head dim 40, 48, 64, 80, 96, 128, 160 or 256, 16-byte aligned rows, when the decode kernel does not apply (tensor cores, FlashAttention-2 style)", StatusCompiled},
	{FamilyAttentionWGMMA, KindWGMMA, "attention_<dt>_wgmma_d<D>, dt f16, bf16, D 64, 128, 256",
		"as prefill with head dim exactly 64, 128 or 256, on compute capability 9.0 with the family's sm_90a module loaded and a driver that encodes tensor maps; paged K/V only with page sizes 8, 16, 32, 64 or a multiple of the key tile (Hopper wgmma + TMA, FlashAttention-3 style; else the mma.sync prefill)", StatusCompiled},
	{FamilyAttentionDecode, KindDecode, "attention_<dt>_decode_d<D>, dt f16, bf16, D as prefill",
		"as prefill, and MaxQueryLen ≤ 16 with at most 4 blocks of 16 (query, head) rows per KV head (split-KV flash-decoding)", StatusCompiled},
	{FamilyAppendKV, KindSimple, "append_kv_<dt>", "always; one block per new token", StatusCompiled},
}

// VariantStatuses returns the variant table: every variant of every family,
// when dispatch uses it and whether it has run on a GPU.
func VariantStatuses() []VariantStatus {
	return append([]VariantStatus(nil), variantStatuses...)
}

type familyVariant struct {
	family Family
	kind   Kind
}

// disabledVariants is filled from variantStatuses by init.
var disabledVariants = map[familyVariant]bool{}

func init() {
	for _, v := range variantStatuses {
		if v.Status == StatusDisabled {
			disabledVariants[familyVariant{v.Family, v.Kind}] = true
		}
	}
}

// fastAllowed reports whether dispatch may pick fast variant v of family f.
func fastAllowed(sel Variant, f Family, v Kind) bool {
	return sel == VariantAuto && !disabledVariants[familyVariant{f, v}]
}
