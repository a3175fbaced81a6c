package kernels

import (
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Matmul dispatch: which kernel, tile and split-k a product gets. A pure
// function of the problem (planMatMul) so that a table of cases tests it.
//
// Kernel choice (Variant auto; VariantSimple or k = 0 always take the simple
// kernel, and a variant marked disabled in variants.go is skipped):
//
//	X F32                 matmul_<w>_f32_simt_m<MR>: MR the smallest of 1, 2, 4,
//	                      8 that is ≥ m; MR 8 tiled over m above 8
//	X F16/BF16, m ≤ 16    matmul_<w>_<x>_decode (then _mma, then simple)
//	X F16/BF16, m > 16    matmul_<w>_<x>_mma (then _decode, then simple)
//
// On compute capability 9.0 the Hopper-only variants (matmulHopperKinds:
// the sm_90a wgmma GEMM, matmul_<w>_<x>_wgmma) go first for m > 16, when
// the family's sm_90a module loaded and a block may have their shared
// memory (matmulProblem.HopperOK; the launcher finds that out).
//
// Split-k: a fast kernel whose output tiles number at most half of what
// the GPU should run at once (want: 2 blocks per SM for the memory-bound
// decode kernels; 1 per SM for the GEMM, whose partial sums cost more than
// a second block per SM gains) splits k into s = ⌊want / tiles⌋ slices (at
// most 16, each at least minSteps k steps), whose F32 partial sums a second
// kernel adds in order (deterministic). The Set's workspace holds
// s·m·n_virtual floats.

// Launch geometry of the matmul kernels; the .cu files have the same
// numbers (TestMatMulConstantsMatchSources).
const (
	matmulSimpleThreads = 256 // matmul_<w>_<x> and matmul_reduce_<x>, grid-stride
	simtThreads         = 128 // kSimtThreads
	simtRows            = 64  // kSimtRows: virtual rows per block
	decodeThreads       = 128 // kDecodeThreads
	decodeRows          = 64  // kDecodeRows
	decodeXRows         = 16  // X rows per block (one mma m-tile)
	mmaThreads          = 256 // kMmaThreads
	mmaBM               = 128 // kMmaBM: X rows per block
	mmaBN               = 128 // kMmaBN: virtual rows per block
	mmaBK               = 32  // kMmaBK: the GEMM's k step
	wgmmaThreads        = 256 // kWgThreads: two warpgroups
	wgmmaBM             = 128 // kWgBM: X rows per block
	wgmmaBN             = 128 // kWgBN: virtual rows per block
	wgmmaBK             = 64  // kWgBK: the Hopper GEMM's k step
	// wgmmaSharedBytes is the Hopper GEMM's dynamic shared memory
	// (kWgSmemBytes): three stages of 32 KiB and 1 KiB of alignment slack.
	wgmmaSharedBytes = 99328
)

// Split-k limits.
const (
	maxSplitK = 16
	// minSteps*: a slice gets at least this many k steps (chunks for
	// the decode kernels, 32-element k-tiles for the GEMM), so that its
	// pipeline fills.
	minStepsDecode = 2
	minStepsMMA    = 4
	minStepsWGMMA  = 2 // 64-element k-tiles
	// maxWorkspaceBytes bounds the partial sums of one product.
	maxWorkspaceBytes = 256 << 20
)

// defaultSMCount stands in for the multiprocessor count when the driver
// cannot say (it affects only split-k, never results): an A100's.
const defaultSMCount = 108

// simtRowsPerBlock are the MR values of the SIMT kernels.
var simtRowsPerBlock = []int{1, 2, 4, 8}

// matmulHopperKinds are the sm_90a-only matmul variants dispatch tries first
// on compute capability 9.0 for m > 16.
var matmulHopperKinds = []Kind{KindWGMMA}

// matmulChunkElems is Weight<F>::kChunkElems of matmul_common.cuh: the k
// step of the decode kernels (elements of a row staged at a time).
func matmulChunkElems(w tensor.DType) int64 {
	switch w {
	case tensor.F32:
		return 64
	case tensor.F16, tensor.BF16, tensor.Q8_0:
		return 128
	}
	return 256 // Q4_0, Q4_K, Q6_K
}

// matmulKStep is the k step of a fast kernel kind: split-k slices are
// whole steps, so that every slice starts on a chunk (or k-tile) boundary,
// which the kernels' staging assumes.
func matmulKStep(kind Kind, w tensor.DType) int64 {
	switch kind {
	case KindMMA:
		return mmaBK
	case KindWGMMA:
		return wgmmaBK
	}
	return matmulChunkElems(w)
}

// matmulProblem is what dispatch decides from.
type matmulProblem struct {
	M, N, K      int64
	WType, XType tensor.DType
	SwiGLU       bool
	CC           ComputeCapability
	SMCount      int
	Variant      Variant
	// SplitOK: a split-k workspace can be allocated.
	SplitOK bool
	// HopperOK: the sm_90a modules of the Hopper variants' families loaded
	// (not the compute_80 fallback, which has no such kernels) and a block
	// can get their dynamic shared memory.
	HopperOK bool
}

// matmulPlan is dispatch's answer: the kernel and how to launch it.
type matmulPlan struct {
	Kind   Kind
	MR     int // KindSIMT: X rows per block
	Kernel kernelID
	// Threads per block. Simple kernels loop grid-stride over m·n outputs;
	// the fast ones have one block per tile.
	Threads int
	// RowsPerBlock virtual rows and MRowsPerBlock X rows per block (fast).
	RowsPerBlock, MRowsPerBlock int64
	// SharedBytes is the dynamic shared memory per block.
	SharedBytes    int
	NVirtual       int64 // n, or 16·⌈n/8⌉ for SwiGLU
	NTiles, MTiles int64
	// SplitK slices of KPerSplit elements; 1: no split.
	SplitK         int
	KPerSplit      int64
	WorkspaceBytes int64
}

// planMatMul chooses the kernel, tile and split-k for q.
func planMatMul(q matmulProblem) matmulPlan {
	return planMatMulKind(q, chooseMatMulKind(q))
}

// planMatMulKind plans q on a kernel of the given kind (the tile and
// split-k); kind must handle q's dtypes (KindSIMT: F32 X; KindDecode,
// KindMMA and KindWGMMA: F16 or BF16 X).
func planMatMulKind(q matmulProblem, kind Kind) matmulPlan {
	nv := q.N
	if q.SwiGLU {
		nv = 16 * ceilDiv(q.N, 8)
	}
	plan := matmulPlan{Kind: KindSimple, Threads: matmulSimpleThreads, NVirtual: nv, SplitK: 1, KPerSplit: q.K}
	switch kind {
	case KindSimple:
		plan.Kernel = matmulKernels[matmulKey{KindSimple, q.WType, q.XType, 0}]
		return plan
	case KindSIMT:
		plan.MR = simtRowsPerBlock[len(simtRowsPerBlock)-1]
		for _, mr := range simtRowsPerBlock {
			if int64(mr) >= q.M {
				plan.MR = mr
				break
			}
		}
		plan.Threads, plan.RowsPerBlock, plan.MRowsPerBlock = simtThreads, simtRows, int64(plan.MR)
	case KindDecode:
		plan.Threads, plan.RowsPerBlock, plan.MRowsPerBlock = decodeThreads, decodeRows, decodeXRows
	case KindMMA:
		plan.Threads, plan.RowsPerBlock, plan.MRowsPerBlock = mmaThreads, mmaBN, mmaBM
	case KindWGMMA:
		plan.Threads, plan.RowsPerBlock, plan.MRowsPerBlock = wgmmaThreads, wgmmaBN, wgmmaBM
		plan.SharedBytes = wgmmaSharedBytes
	}
	plan.Kind = kind
	plan.Kernel = matmulKernels[matmulKey{kind, q.WType, q.XType, plan.MR}]
	plan.NTiles = ceilDiv(nv, plan.RowsPerBlock)
	plan.MTiles = ceilDiv(q.M, plan.MRowsPerBlock)

	step, minSteps, perSM := matmulKStep(kind, q.WType), int64(minStepsDecode), int64(2)
	switch kind {
	case KindMMA:
		minSteps, perSM = minStepsMMA, 1
	case KindWGMMA:
		minSteps, perSM = minStepsWGMMA, 1
	}
	sms := int64(q.SMCount)
	if sms <= 0 {
		sms = defaultSMCount
	}
	if q.SplitOK && fastAllowed(q.Variant, FamilyMatMul, KindSplitK) {
		plan.SplitK, plan.KPerSplit = chooseSplitK(plan.NTiles*plan.MTiles, perSM*sms, ceilDiv(q.K, step), minSteps)
		plan.KPerSplit *= step
		for plan.SplitK > 1 && int64(plan.SplitK)*q.M*nv*4 > maxWorkspaceBytes {
			plan.SplitK, plan.KPerSplit = splitInto(ceilDiv(q.K, step), int64(plan.SplitK-1))
			plan.KPerSplit *= step
		}
	}
	if plan.SplitK == 1 {
		plan.KPerSplit = q.K
	} else {
		plan.WorkspaceBytes = int64(plan.SplitK) * q.M * nv * 4
	}
	return plan
}

// chooseMatMulKind picks the kernel kind (see the table above).
func chooseMatMulKind(q matmulProblem) Kind {
	if q.Variant == VariantSimple || q.K == 0 {
		return KindSimple
	}
	// The kinds in order of preference, in a fixed array (dispatch runs on
	// every launch and must not allocate).
	var prefs [4]Kind
	n := 0
	switch {
	case q.XType == tensor.F32:
		prefs[0], n = KindSIMT, 1
	case q.M <= decodeXRows:
		prefs[0], prefs[1], n = KindDecode, KindMMA, 2
	default:
		if q.CC.Major == 9 && q.CC.Minor == 0 && q.HopperOK {
			n = copy(prefs[:len(prefs)-2], matmulHopperKinds)
		}
		prefs[n], prefs[n+1] = KindMMA, KindDecode
		n += 2
	}
	for _, k := range prefs[:n] {
		if fastAllowed(q.Variant, matmulFamilyOf(k), k) {
			return k
		}
	}
	return KindSimple
}

// matmulFamilyOf is the family of a matmul kernel kind.
func matmulFamilyOf(k Kind) Family {
	switch k {
	case KindSIMT:
		return FamilyMatMulSIMT
	case KindDecode:
		return FamilyMatMulDecode
	case KindMMA:
		return FamilyMatMulMMA
	case KindWGMMA:
		return FamilyMatMulWGMMA
	}
	return FamilyMatMul
}

// chooseSplitK returns the number of k slices and the k steps per slice for
// a kernel with tiles output tiles, want blocks wanted at once, nSteps k
// steps and at least minSteps steps per slice.
func chooseSplitK(tiles, want, nSteps, minSteps int64) (slices int, stepsPerSlice int64) {
	if tiles <= 0 || 2*tiles > want {
		return 1, nSteps
	}
	s := min(want/tiles, nSteps/minSteps, maxSplitK)
	if s < 2 {
		return 1, nSteps
	}
	return splitInto(nSteps, s)
}

// splitInto divides nSteps into at most s slices of equal whole steps (the
// last may be shorter) and returns how many slices that makes, none empty.
func splitInto(nSteps, s int64) (slices int, stepsPerSlice int64) {
	if s <= 1 || nSteps <= 1 {
		return 1, nSteps
	}
	per := ceilDiv(nSteps, s)
	return int(ceilDiv(nSteps, per)), per
}
