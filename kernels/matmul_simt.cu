// matmul_simt.cu — FAST VARIANT, compiled, not yet run on a GPU: the matrix
// product with F32 activations on CUDA cores (the precision contract: F32
// activations are multiplied in F32, never rounded to a smaller type), for
// decode (m ≤ 8 in one tile) and, tiled over m, for larger m.
//
// Kernels: matmul_<w>_f32_simt_m<MR>, w one of f32, f16, bf16, q8_0, q4_0,
// q4_k, q6_k, MR one of 1, 2, 4, 8 (the X rows one block sums at once;
// dispatch picks the smallest MR ≥ m, and MR = 8 tiled over m for m > 8).
//
// Work: a block of 128 threads (4 warps) owns 64 virtual weight rows from v0
// = 64·blockIdx.x, the X rows m0 = MR·blockIdx.y .. m0+MR−1, and split-k
// slice blockIdx.z of k (the launcher splits an m of more than 65535 tiles
// into several launches).
//   - The slice's k is walked in chunks of Weight<w>::kChunkElems: the raw
//     bytes of the 64 rows' chunk and X's MR rows of it are copied to shared
//     memory with 16-byte cp.async (2- or 3-stage pipeline; 2-byte or
//     element copies when rows are not 16-byte aligned; zeros past m and k),
//     so every weight byte is read from memory once.
//   - Lane l owns tile rows r0 = 16(l/8) + l%8 and r1 = r0 + 8 (for SwiGLU
//     the gate and up rows of one output); warp w takes the 16-element units
//     w, w+4, ... of each chunk. Per unit a thread decodes 16 elements of
//     each of its two rows exactly as ggml does (fetch16/decode16 of
//     quant.cuh), reads X's 16 values of each of the MR rows (the same
//     address across the warp: shared-memory broadcasts) and accumulates
//     2·MR sums with fmaf, in k order.
//   - Then the 4 warps' sums of each (row, X row) are added in warp order in
//     shared memory, and finish_tile writes Y or the split-k partials.
// Each sum's order depends only on the shape and the dispatch, never on
// timing.
#include "matmul_common.cuh"

namespace kiln {

constexpr int kSimtThreads = 128;
constexpr int kSimtRows = 64;

// fma_unit adds w[j][e]·X[i][e] to acc[j][i] for the 16 elements e of one
// unit, the 2 rows j and the MR staged rows i of X (xs: the unit's first
// element of staged row 0). Every lane of a warp reads the same X
// addresses: shared-memory broadcasts.
template <int MR, int XPITCH>
__device__ __forceinline__ void fma_unit(const float* xs, const float (&w)[2][16], float (&acc)[2][MR]) {
#pragma unroll
	for (int i = 0; i < MR; ++i) {
		float xv[16];
#pragma unroll
		for (int q = 0; q < 4; ++q) {
			const float4 v = reinterpret_cast<const float4*>(xs + i * XPITCH)[q];
			xv[4 * q] = v.x;
			xv[4 * q + 1] = v.y;
			xv[4 * q + 2] = v.z;
			xv[4 * q + 3] = v.w;
		}
#pragma unroll
		for (int e = 0; e < 16; ++e) {
			acc[0][i] = fmaf(w[0][e], xv[e], acc[0][i]);
			acc[1][i] = fmaf(w[1][e], xv[e], acc[1][i]);
		}
	}
}

template <int F, int MR> __device__ __forceinline__ void matmul_simt(const KilnMatMulParams& p) {
	using W = Weight<F>;
	constexpr int KC = W::kChunkElems;
	constexpr int kPitch = staged_pitch(chunk_bytes<W>());
	constexpr int kWBytes = kSimtRows * kPitch;
	constexpr int kXPitch = KC + 4;  // floats: rows stay 16-byte aligned
	constexpr int kXBytes = MR * kXPitch * (int)sizeof(float);
	constexpr int kStageBytes = kWBytes + kXBytes;
	constexpr int kStages = 3 * kStageBytes <= kStaticSmemLimit ? 3 : 2;
	constexpr int kReduceBytes = 4 * kSimtRows * MR * (int)sizeof(float);
	constexpr int kSmemBytes = max_c(kStages * kStageBytes, kReduceBytes);
	static_assert(kSmemBytes <= kStaticSmemLimit, "shared memory");
	static_assert(kWBytes % 16 == 0 && kXBytes % 16 == 0, "16-byte aligned stages");
	static_assert(KC % 64 == 0, "a chunk is whole rounds of 4 units of 16");
	__shared__ __align__(16) uint8_t smem[kSmemBytes];

	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int r0 = 16 * (lane >> 3) + (lane & 7), r1 = r0 + 8;
	const int64_t v0 = (int64_t)blockIdx.x * kSimtRows;
	const int64_t m0 = (int64_t)blockIdx.y * MR;
	const int64_t slice = blockIdx.z;
	const KRange kr = split_range(p, slice);
	const int64_t n_chunks = (kr.end - kr.begin + KC - 1) / KC;
	const StagedRows<kSimtRows, kSimtThreads> rows(p, v0);

	float acc[2][MR];
#pragma unroll
	for (int i = 0; i < MR; ++i) acc[0][i] = acc[1][i] = 0.0f;

	// Pipeline: chunk c lives in stage c % kStages; one commit group per chunk
	// (empty ones included), so wait_group(kStages − 2) means chunk c arrived.
#pragma unroll
	for (int s = 0; s < kStages - 1; ++s) {
		if (s < n_chunks) {
			uint8_t* stage = smem + s * kStageBytes;
			stage_weights<W, kSimtRows, kPitch, kSimtThreads>(p, rows, stage, kr.begin + s * KC);
			stage_x<float, MR, KC, kXPitch, kSimtThreads>(p, reinterpret_cast<float*>(stage + kWBytes), m0, kr.begin + s * KC);
		}
		cp_async_commit();
	}
#pragma unroll 1
	for (int64_t c = 0; c < n_chunks; ++c) {
		cp_async_wait<kStages - 2>();
		__syncthreads();  // chunk c is visible; everyone is done with chunk c − 1's stage
		const int64_t next = c + kStages - 1;
		if (next < n_chunks) {
			uint8_t* stage = smem + (next % kStages) * kStageBytes;
			stage_weights<W, kSimtRows, kPitch, kSimtThreads>(p, rows, stage, kr.begin + next * KC);
			stage_x<float, MR, KC, kXPitch, kSimtThreads>(p, reinterpret_cast<float*>(stage + kWBytes), m0, kr.begin + next * KC);
		}
		cp_async_commit();

		const int64_t kc = kr.begin + c * KC;
		const uint8_t* stage = smem + (c % kStages) * kStageBytes;
		const uint8_t* wbuf = stage + staged_lead<W>(p, kc);
		const float* xbuf = reinterpret_cast<const float*>(stage + kWBytes);
		// Units past the slice's end (k's end, in the last chunk) are skipped;
		// within the last unit, elements past k are zeros in W and X.
		const int n_units = kr.end - kc >= KC ? KC / 16 : (int)((kr.end - kc + 15) / 16);
#pragma unroll 1
		for (int u = warp; u < n_units; u += 4) {
			float w[2][16];
			decode16_at<W>(wbuf + r0 * kPitch, 16 * u, w[0]);
			decode16_at<W>(wbuf + r1 * kPitch, 16 * u, w[1]);
			fma_unit<MR, kXPitch>(xbuf + 16 * u, w, acc);
		}
	}
	cp_async_wait<0>();
	__syncthreads();  // the stages are free: reuse them for the sums

	float* red = reinterpret_cast<float*>(smem);  // [warp][tile row][MR]
#pragma unroll
	for (int i = 0; i < MR; ++i) {
		red[(warp * kSimtRows + r0) * MR + i] = acc[0][i];
		red[(warp * kSimtRows + r1) * MR + i] = acc[1][i];
	}
	__syncthreads();
	// The 4 warps' sums added in warp order.
	finish_tile<float, kSimtRows, MR, kSimtThreads>(p, v0, m0, slice, [&](int r, int i) {
		float s = red[r * MR + i];
#pragma unroll
		for (int w = 1; w < 4; ++w) s += red[(w * kSimtRows + r) * MR + i];
		return s;
	});
}

}  // namespace kiln

#define KILN_MATMUL_SIMT(WNAME, FMT, MR)                                                                                  \
	extern "C" __global__ void __launch_bounds__(kiln::kSimtThreads, 1) matmul_##WNAME##_f32_simt_m##MR(const KilnMatMulParams p) { \
		kiln::matmul_simt<FMT, MR>(p);                                                                                  \
	}

#define KILN_MATMUL_SIMT_ALL_MR(WNAME, FMT) \
	KILN_MATMUL_SIMT(WNAME, FMT, 1)         \
	KILN_MATMUL_SIMT(WNAME, FMT, 2)         \
	KILN_MATMUL_SIMT(WNAME, FMT, 4)         \
	KILN_MATMUL_SIMT(WNAME, FMT, 8)

KILN_MATMUL_SIMT_ALL_MR(f32, kiln::kWF32)
KILN_MATMUL_SIMT_ALL_MR(f16, kiln::kWF16)
KILN_MATMUL_SIMT_ALL_MR(bf16, kiln::kWBF16)
KILN_MATMUL_SIMT_ALL_MR(q8_0, kiln::kWQ8_0)
KILN_MATMUL_SIMT_ALL_MR(q4_0, kiln::kWQ4_0)
KILN_MATMUL_SIMT_ALL_MR(q4_k, kiln::kWQ4_K)
KILN_MATMUL_SIMT_ALL_MR(q6_k, kiln::kWQ6_K)
