package kernels

import (
	"fmt"
	"strconv"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Family is a kernel family: one kernels/<family>.cu, one PTX module per target.
type Family string

// The kernel families.
const (
	FamilyCopy      Family = "copy"
	FamilyBinary    Family = "binary"
	FamilyUnary     Family = "unary"
	FamilySoftmax   Family = "softmax"
	FamilyNorm      Family = "norm"
	FamilyRoPE      Family = "rope"
	FamilyEmbedding Family = "embedding"
	FamilyArgmax    Family = "argmax"
	FamilyProbe     Family = "probe"
	// FamilyMatMul: the simple matmul kernels and the split-k reduction.
	FamilyMatMul Family = "matmul"
	// FamilyMatMulSIMT, FamilyMatMulDecode, FamilyMatMulMMA: the fast matmul
	// kernels, one family each so that a process loads (and the driver
	// JIT-compiles) only the ones its shapes use.
	FamilyMatMulSIMT   Family = "matmul_simt"
	FamilyMatMulDecode Family = "matmul_decode"
	FamilyMatMulMMA    Family = "matmul_mma"
	// FamilyMatMulWGMMA: the Hopper GEMM (sm_90a wgmma). Its compute_80
	// PTX has no kernels (see sm90aOnlyFamilies).
	FamilyMatMulWGMMA Family = "matmul_wgmma"
	// FamilyAttention: the simple attention kernels and the merge of
	// split-KV partial results.
	FamilyAttention Family = "attention"
	// FamilyAttentionPrefill, FamilyAttentionDecode: the fast attention
	// kernels (tensor cores), one family each.
	FamilyAttentionPrefill Family = "attention_prefill"
	FamilyAttentionDecode  Family = "attention_decode"
	// FamilyAttentionWGMMA: the Hopper prefill attention (sm_90a wgmma and
	// TMA). Its compute_80 PTX has no kernels (see sm90aOnlyFamilies).
	FamilyAttentionWGMMA Family = "attention_wgmma"
	// FamilyAppendKV: writing new keys and values into a paged KV cache.
	FamilyAppendKV Family = "append_kv"
)

// Families lists every kernel family.
func Families() []Family {
	return []Family{FamilyCopy, FamilyBinary, FamilyUnary, FamilySoftmax, FamilyNorm,
		FamilyRoPE, FamilyEmbedding, FamilyArgmax, FamilyProbe,
		FamilyMatMul, FamilyMatMulSIMT, FamilyMatMulDecode, FamilyMatMulMMA, FamilyMatMulWGMMA,
		FamilyAttention, FamilyAttentionPrefill, FamilyAttentionDecode, FamilyAttentionWGMMA, FamilyAppendKV}
}

// sm90aOnlyFamilies are the families whose kernels exist only in their
// sm_90a PTX: their compute_80 module loads but holds no kernel, so a
// launcher may use them only when the family's sm_90a module loaded.
var sm90aOnlyFamilies = map[Family]bool{FamilyMatMulWGMMA: true, FamilyAttentionWGMMA: true}

// simpleKernelsOf maps a family of fast variants only to the family that
// holds the same op's simple kernels.
var simpleKernelsOf = map[Family]Family{
	FamilyMatMulSIMT:   FamilyMatMul,
	FamilyMatMulDecode: FamilyMatMul,
	FamilyMatMulMMA:    FamilyMatMul,
	FamilyMatMulWGMMA:  FamilyMatMul,

	FamilyAttentionPrefill: FamilyAttention,
	FamilyAttentionDecode:  FamilyAttention,
	FamilyAttentionWGMMA:   FamilyAttention,
}

// Kind is a kind of kernel within a family: the simple kernel every op has,
// or one of the fast variants (the name suffix after the dtype).
type Kind string

// The kernel kinds.
const (
	// KindSimple: no tricks, obviously correct; every op has one.
	KindSimple Kind = "simple"
	// KindVec: contiguous operands, 128-bit loads and stores (suffix _vec).
	KindVec Kind = "vec"
	// KindWarp: one warp per row for short rows (suffix _warp).
	KindWarp Kind = "warp"
	// KindProbe: the benchmark harness's probes, not ops.
	KindProbe Kind = "probe"
	// KindSplitK: the reduction that finishes a split-k fast kernel's
	// partial sums (matmul_reduce_<dt>).
	KindSplitK Kind = "splitk"
	// KindSIMT: F32 activations on CUDA cores, MR rows of X per block
	// (matmul_<w>_f32_simt_m<MR>, MR 1, 2, 4, 8).
	KindSIMT Kind = "simt"
	// KindDecode: few rows of X (m ≤ 16) on tensor cores
	// (matmul_<w>_<x>_decode).
	KindDecode Kind = "decode"
	// KindMMA: a tensor-core GEMM for many rows of X (matmul_<w>_<x>_mma).
	KindMMA Kind = "mma"
	// KindWGMMA: the Hopper (sm_90a) warpgroup tensor-core GEMM for many
	// rows of X (matmul_<w>_<x>_wgmma), and the Hopper prefill attention
	// (attention_<dt>_wgmma_d<D>).
	KindWGMMA Kind = "wgmma"
	// KindPrefill: attention for many queries per sequence on tensor cores
	// (attention_<dt>_prefill_d<D>).
	KindPrefill Kind = "prefill"
	// KindCombine: the merge of a split-KV attention kernel's partial
	// results (attention_<dt>_combine). Attention's split decode kernels
	// are KindDecode (attention_<dt>_decode_d<D>).
	KindCombine Kind = "combine"
)

// kernelID indexes kernelTable; the launchers keep IDs, not names, so that a
// launch looks its function up without hashing or allocating.
type kernelID int

// kernelInfo is one kernel as the launchers know it.
type kernelInfo struct {
	family Family
	name   string
	kind   Kind
}

// kernelTable holds every kernel a launcher can launch, filled by init below.
var kernelTable []kernelInfo

func register(f Family, name string, v Kind) kernelID {
	kernelTable = append(kernelTable, kernelInfo{family: f, name: name, kind: v})
	return kernelID(len(kernelTable) - 1)
}

// KernelInfo describes one kernel.
type KernelInfo struct {
	Family Family
	Name   string
	Kind   Kind
}

// Kernels lists every kernel the launchers use, family by family.
func Kernels() []KernelInfo {
	out := make([]KernelInfo, len(kernelTable))
	for i, k := range kernelTable {
		out[i] = KernelInfo{Family: k.family, Name: k.name, Kind: k.kind}
	}
	return out
}

// dtypeName is a dtype as it appears in kernel names.
func dtypeName(d tensor.DType) string {
	switch d {
	case tensor.F32:
		return "f32"
	case tensor.F16:
		return "f16"
	case tensor.BF16:
		return "bf16"
	case tensor.I32:
		return "i32"
	case tensor.Q8_0:
		return "q8_0"
	case tensor.Q4_0:
		return "q4_0"
	case tensor.Q4_K:
		return "q4_k"
	case tensor.Q6_K:
		return "q6_k"
	}
	panic(fmt.Sprintf("kernels: no kernel name for dtype %v", d))
}

// floatTypes are the dtypes of activations and op outputs.
var floatTypes = []tensor.DType{tensor.F32, tensor.F16, tensor.BF16}

// matmulWeightTypes are the weight dtypes the matmul kernels decode.
var matmulWeightTypes = []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0, tensor.Q4_0, tensor.Q4_K, tensor.Q6_K}

// tensorCoreTypes are the activation dtypes the tensor-core kernels take.
var tensorCoreTypes = []tensor.DType{tensor.F16, tensor.BF16}

// embeddingTableTypes are the table dtypes the embedding kernels decode.
var embeddingTableTypes = []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0, tensor.Q4_0, tensor.Q4_K, tensor.Q6_K}

func suffix(v Kind) string {
	if v == KindSimple || v == KindProbe {
		return ""
	}
	return "_" + string(v)
}

// Kernel lookup tables, filled once by init (kernel names are never built per launch).
type (
	copyKey struct {
		src, dst tensor.DType
		kind     Kind
	}
	binaryKey struct {
		op    BinaryOp
		dtype tensor.DType
		kind  Kind
	}
	unaryKey struct {
		op    UnaryOp
		dtype tensor.DType
		kind  Kind
	}
	rowsKey struct {
		dtype tensor.DType
		kind  Kind
	}
	embeddingKey struct{ table, dst tensor.DType }
	// matmulKey names a matmul kernel: its kind, weight and activation
	// dtypes, and for KindSIMT the X rows per block (mr; 0 otherwise).
	matmulKey struct {
		kind Kind
		w, x tensor.DType
		mr   int
	}
	// attentionKey names a fast attention kernel: its kind (KindPrefill,
	// KindDecode), dtype and tile head dim.
	attentionKey struct {
		kind    Kind
		dtype   tensor.DType
		tileDim int
	}
)

var (
	copyKernels      = map[copyKey]kernelID{}
	binaryKernels    = map[binaryKey]kernelID{}
	unaryKernels     = map[unaryKey]kernelID{}
	softmaxKernels   = map[rowsKey]kernelID{}
	rmsnormKernels   = map[rowsKey]kernelID{}
	layernormKernels = map[rowsKey]kernelID{}
	ropeKernels      = map[tensor.DType]kernelID{}
	embeddingKernels = map[embeddingKey]kernelID{}
	argmaxKernels    = map[tensor.DType]kernelID{}
	matmulKernels    = map[matmulKey]kernelID{}
	matmulReduce     = map[tensor.DType]kernelID{}
	readProbeKernel  kernelID
	copyProbeKernel  kernelID

	attentionSimpleKernels  = map[tensor.DType]kernelID{}
	attentionCombineKernels = map[tensor.DType]kernelID{}
	attentionFastKernels    = map[attentionKey]kernelID{}
	appendKVKernels         = map[tensor.DType]kernelID{}
)

func init() {
	elementwise := []Kind{KindSimple, KindVec}
	rows := []Kind{KindSimple, KindWarp}

	// copy_<src>_to_<dst>[_vec]
	for _, src := range floatTypes {
		for _, dst := range floatTypes {
			for _, v := range elementwise {
				copyKernels[copyKey{src, dst, v}] = register(FamilyCopy,
					"copy_"+dtypeName(src)+"_to_"+dtypeName(dst)+suffix(v), v)
			}
		}
	}
	for _, v := range elementwise {
		copyKernels[copyKey{tensor.I32, tensor.I32, v}] = register(FamilyCopy, "copy_i32_to_i32"+suffix(v), v)
	}
	// add_<dt>[_vec], mul_<dt>[_vec]
	for _, op := range []BinaryOp{Add, Mul} {
		for _, dt := range floatTypes {
			for _, v := range elementwise {
				binaryKernels[binaryKey{op, dt, v}] = register(FamilyBinary, op.kernelPrefix()+"_"+dtypeName(dt)+suffix(v), v)
			}
		}
	}
	// silu_<dt>, gelu_<dt>, gelu_tanh_<dt>, each [_vec]
	for _, op := range []UnaryOp{SiLU, GELU, GELUTanh} {
		for _, dt := range floatTypes {
			for _, v := range elementwise {
				unaryKernels[unaryKey{op, dt, v}] = register(FamilyUnary, op.kernelPrefix()+"_"+dtypeName(dt)+suffix(v), v)
			}
		}
	}
	for _, dt := range floatTypes {
		for _, v := range rows {
			softmaxKernels[rowsKey{dt, v}] = register(FamilySoftmax, "softmax_"+dtypeName(dt)+suffix(v), v)
			rmsnormKernels[rowsKey{dt, v}] = register(FamilyNorm, "rmsnorm_"+dtypeName(dt)+suffix(v), v)
			layernormKernels[rowsKey{dt, v}] = register(FamilyNorm, "layernorm_"+dtypeName(dt)+suffix(v), v)
		}
		ropeKernels[dt] = register(FamilyRoPE, "rope_"+dtypeName(dt), KindSimple)
		argmaxKernels[dt] = register(FamilyArgmax, "argmax_"+dtypeName(dt), KindSimple)
	}
	for _, table := range embeddingTableTypes {
		for _, dst := range floatTypes {
			embeddingKernels[embeddingKey{table, dst}] = register(FamilyEmbedding,
				"embedding_"+dtypeName(table)+"_to_"+dtypeName(dst), KindSimple)
		}
	}
	// matmul_<w>_<x>, matmul_reduce_<x>, matmul_<w>_f32_simt_m<MR>,
	// matmul_<w>_<x>_decode, matmul_<w>_<x>_mma, matmul_<w>_<x>_wgmma.
	for _, w := range matmulWeightTypes {
		for _, x := range floatTypes {
			matmulKernels[matmulKey{KindSimple, w, x, 0}] = register(FamilyMatMul, "matmul_"+dtypeName(w)+"_"+dtypeName(x), KindSimple)
		}
	}
	for _, x := range floatTypes {
		matmulReduce[x] = register(FamilyMatMul, "matmul_reduce_"+dtypeName(x), KindSplitK)
	}
	for _, w := range matmulWeightTypes {
		for _, mr := range simtRowsPerBlock {
			matmulKernels[matmulKey{KindSIMT, w, tensor.F32, mr}] = register(FamilyMatMulSIMT,
				"matmul_"+dtypeName(w)+"_f32_simt_m"+strconv.Itoa(mr), KindSIMT)
		}
	}
	for _, w := range matmulWeightTypes {
		for _, x := range tensorCoreTypes {
			matmulKernels[matmulKey{KindDecode, w, x, 0}] = register(FamilyMatMulDecode, "matmul_"+dtypeName(w)+"_"+dtypeName(x)+"_decode", KindDecode)
		}
	}
	for _, w := range matmulWeightTypes {
		for _, x := range tensorCoreTypes {
			matmulKernels[matmulKey{KindMMA, w, x, 0}] = register(FamilyMatMulMMA, "matmul_"+dtypeName(w)+"_"+dtypeName(x)+"_mma", KindMMA)
		}
	}
	for _, w := range matmulWeightTypes {
		for _, x := range tensorCoreTypes {
			matmulKernels[matmulKey{KindWGMMA, w, x, 0}] = register(FamilyMatMulWGMMA, "matmul_"+dtypeName(w)+"_"+dtypeName(x)+"_wgmma", KindWGMMA)
		}
	}
	// attention_<dt>, attention_<dt>_combine, attention_<dt>_prefill_d<D>,
	// attention_<dt>_decode_d<D>, append_kv_<dt>.
	for _, dt := range floatTypes {
		attentionSimpleKernels[dt] = register(FamilyAttention, "attention_"+dtypeName(dt), KindSimple)
	}
	for _, dt := range tensorCoreTypes {
		attentionCombineKernels[dt] = register(FamilyAttention, "attention_"+dtypeName(dt)+"_combine", KindCombine)
	}
	for _, dt := range tensorCoreTypes {
		for _, tile := range prefillTiles {
			attentionFastKernels[attentionKey{KindPrefill, dt, tile.Dim}] = register(FamilyAttentionPrefill,
				"attention_"+dtypeName(dt)+"_prefill_d"+strconv.Itoa(tile.Dim), KindPrefill)
		}
		for _, tile := range decodeTiles {
			attentionFastKernels[attentionKey{KindDecode, dt, tile.Dim}] = register(FamilyAttentionDecode,
				"attention_"+dtypeName(dt)+"_decode_d"+strconv.Itoa(tile.Dim), KindDecode)
		}
		for _, tile := range wgmmaTiles {
			attentionFastKernels[attentionKey{KindWGMMA, dt, tile.Dim}] = register(FamilyAttentionWGMMA,
				"attention_"+dtypeName(dt)+"_wgmma_d"+strconv.Itoa(tile.Dim), KindWGMMA)
		}
	}
	for _, dt := range floatTypes {
		appendKVKernels[dt] = register(FamilyAppendKV, "append_kv_"+dtypeName(dt), KindSimple)
	}
	readProbeKernel = register(FamilyProbe, "read_probe_b128", KindProbe)
	copyProbeKernel = register(FamilyProbe, "copy_probe_b128", KindProbe)
}
