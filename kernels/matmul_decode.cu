// matmul_decode.cu — FAST VARIANT, compiled, not yet run on a GPU: the
// matrix product for decode (m = 1..16) with F16 or BF16 activations, on
// tensor cores (mma.sync m16n8k16, F32 accumulators). W's values are decoded
// exactly (quant.cuh) and rounded to the activations' dtype, as the precision
// contract allows; X's rows past m are zeros.
//
// Kernels: matmul_<w>_<x>_decode, w one of f32, f16, bf16, q8_0, q4_0, q4_k,
// q6_k, x one of f16, bf16.
//
// Work: a block of 128 threads (4 warps) owns 64 virtual weight rows from v0
// = 64·blockIdx.x, the 16 X rows m0 = 16·blockIdx.y .. m0+15, and split-k
// slice blockIdx.z of k.
//   - The slice's k is walked in chunks of Weight<w>::kChunkElems elements:
//     the raw bytes of the 64 weight rows and X's 16 rows are copied to
//     shared memory with 16-byte cp.async (two stages; ordinary 2-byte copies
//     when not 16-byte aligned), so each weight byte is read from memory once.
//   - Warp w owns tile rows 16w .. 16w+15: n-tiles 2w (rows 16w + g) and 2w+1
//     (rows 16w + 8 + g), g = lane/4; for SwiGLU these are the gate and the
//     up rows of the same 8 outputs.
//   - Within a chunk, lane quad t = lane%4 takes the 16-element units
//     u = t, t+4, ...; a unit is four mma k-steps. The sum over k does not
//     care in which order k is visited, as long as A and B use the same
//     order, so the mma's k slots are mapped to memory as: slots 2t, 2t+1,
//     2t+8, 2t+9 of step s are elements 16u + 4s + 0, 1, 2, 3 of the unit.
//     Then a thread's B fragments are 4 consecutive elements of its own row
//     (it decodes its unit's 16 elements once and packs them), and its A
//     fragments are 4 consecutive X elements of rows g and g+8 (two 8-byte
//     shared loads).
//   - At the end each thread's C fragments go to shared memory and
//     finish_tile writes Y or the split-k partials.
#include "matmul_common.cuh"

namespace kiln {

constexpr int kDecodeThreads = 128;
constexpr int kDecodeRows = 64;

// b_fragments decodes elements e .. e+15 of the staged row at row and packs
// them as four k-steps of B fragments: b[2s] = elements 4s, 4s+1 and
// b[2s+1] = elements 4s+2, 4s+3, rounded to T.
template <int F, typename T> __device__ __forceinline__ void b_fragments(const uint8_t* row, int e, uint32_t b[8]) {
	using W = Weight<F>;
	KilnRaw16 r;
	const int e0 = e % W::kBlockElems;
	W::fetch16(row + (e / W::kBlockElems) * W::kBlockBytes, e0, &r);
	if (WeightIs<F, T>::value) {
		// The weight is T already: its words are the packed pairs.
#pragma unroll
		for (int i = 0; i < 8; ++i) b[i] = r.w[i];
		return;
	}
	float f[16];
	W::decode16(&r, e0, f);
#pragma unroll
	for (int i = 0; i < 8; ++i) b[i] = pack2<T>(f[2 * i], f[2 * i + 1]);
}

template <int F, typename T> __device__ __forceinline__ void matmul_decode(const KilnMatMulParams& p) {
	using W = Weight<F>;
	constexpr int KC = W::kChunkElems;
	constexpr int kPitch = staged_pitch(chunk_bytes<W>());
	constexpr int kWBytes = kDecodeRows * kPitch;
	constexpr int kXPitch = KC + 8;  // elements; (KC + 8)·2 bytes ≡ 16 mod 128 spreads rows over banks
	constexpr int kXBytes = 16 * kXPitch * (int)sizeof(T);
	constexpr int kStageBytes = kWBytes + kXBytes;
	constexpr int kStages = 2;
	constexpr int kSmemBytes = max_c(kStages * kStageBytes, kDecodeRows * 16 * (int)sizeof(float));
	static_assert(kSmemBytes <= kStaticSmemLimit, "shared memory");
	static_assert(kWBytes % 16 == 0 && kXBytes % 16 == 0, "16-byte aligned stages");
	static_assert(KC % 64 == 0, "a chunk is whole rounds of 4 units of 16");
	__shared__ __align__(16) uint8_t smem[kSmemBytes];

	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int g = lane >> 2, t = lane & 3;
	const int64_t v0 = (int64_t)blockIdx.x * kDecodeRows;
	const int64_t m0 = (int64_t)blockIdx.y * 16;
	const int64_t slice = blockIdx.z;
	const KRange kr = split_range(p, slice);
	const int64_t n_chunks = (kr.end - kr.begin + KC - 1) / KC;
	const StagedRows<kDecodeRows, kDecodeThreads> rows(p, v0);

	float c[2][4];
#pragma unroll
	for (int j = 0; j < 2; ++j)
#pragma unroll
		for (int q = 0; q < 4; ++q) c[j][q] = 0.0f;

	if (n_chunks > 0) {
		stage_weights<W, kDecodeRows, kPitch, kDecodeThreads>(p, rows, smem, kr.begin);
		stage_x<T, 16, KC, kXPitch, kDecodeThreads>(p, reinterpret_cast<T*>(smem + kWBytes), m0, kr.begin);
	}
	cp_async_commit();
#pragma unroll 1
	for (int64_t ch = 0; ch < n_chunks; ++ch) {
		cp_async_wait<0>();
		__syncthreads();  // chunk ch is visible; everyone is done with chunk ch − 1's stage
		if (ch + 1 < n_chunks) {
			uint8_t* next = smem + ((ch + 1) % kStages) * kStageBytes;
			stage_weights<W, kDecodeRows, kPitch, kDecodeThreads>(p, rows, next, kr.begin + (ch + 1) * KC);
			stage_x<T, 16, KC, kXPitch, kDecodeThreads>(p, reinterpret_cast<T*>(next + kWBytes), m0, kr.begin + (ch + 1) * KC);
		}
		cp_async_commit();

		const int64_t kc = kr.begin + ch * KC;
		const uint8_t* stage = smem + (ch % kStages) * kStageBytes;
		const uint8_t* wbuf = stage + staged_lead<W>(p, kc);
		const T* xbuf = reinterpret_cast<const T*>(stage + kWBytes);
		// Rounds of 4 units past the slice's end are skipped; within the last
		// round, elements past k are zeros in both W and X.
		const int n_rounds = kr.end - kc >= KC ? KC / 64 : (int)((kr.end - kc + 63) / 64);
#pragma unroll 1
		for (int rr = 0; rr < n_rounds; ++rr) {
			const int e = 16 * (4 * rr + t);  // this lane's unit, in chunk elements
			uint32_t b[2][8];
			b_fragments<F, T>(wbuf + (16 * warp + g) * kPitch, e, b[0]);
			b_fragments<F, T>(wbuf + (16 * warp + 8 + g) * kPitch, e, b[1]);
#pragma unroll
			for (int s = 0; s < 4; ++s) {
				const uint2 lo = *reinterpret_cast<const uint2*>(xbuf + g * kXPitch + e + 4 * s);
				const uint2 hi = *reinterpret_cast<const uint2*>(xbuf + (g + 8) * kXPitch + e + 4 * s);
				const uint32_t a[4] = {lo.x, hi.x, lo.y, hi.y};
				Mma<T>::run(c[0], a, b[0][2 * s], b[0][2 * s + 1]);
				Mma<T>::run(c[1], a, b[1][2 * s], b[1][2 * s + 1]);
			}
		}
	}
	cp_async_wait<0>();
	__syncthreads();  // the stages are free: reuse them for the sums

	float* sums = reinterpret_cast<float*>(smem);  // [tile row][X row]
#pragma unroll
	for (int j = 0; j < 2; ++j) {
		const int r = 16 * warp + 8 * j + 2 * t;
		sums[r * 16 + g] = c[j][0];
		sums[(r + 1) * 16 + g] = c[j][1];
		sums[r * 16 + g + 8] = c[j][2];
		sums[(r + 1) * 16 + g + 8] = c[j][3];
	}
	__syncthreads();
	finish_tile<T, kDecodeRows, 16, kDecodeThreads>(p, v0, m0, slice, [&](int r, int i) { return sums[r * 16 + i]; });
}

}  // namespace kiln

#define KILN_MATMUL_DECODE(WNAME, FMT, XNAME, X)                                                                             \
	extern "C" __global__ void __launch_bounds__(kiln::kDecodeThreads, 1) matmul_##WNAME##_##XNAME##_decode(const KilnMatMulParams p) { \
		kiln::matmul_decode<FMT, X>(p);                                                                                  \
	}

#define KILN_MATMUL_DECODE_ALL_X(WNAME, FMT)     \
	KILN_MATMUL_DECODE(WNAME, FMT, f16, f16)     \
	KILN_MATMUL_DECODE(WNAME, FMT, bf16, bf16)

KILN_MATMUL_DECODE_ALL_X(f32, kiln::kWF32)
KILN_MATMUL_DECODE_ALL_X(f16, kiln::kWF16)
KILN_MATMUL_DECODE_ALL_X(bf16, kiln::kWBF16)
KILN_MATMUL_DECODE_ALL_X(q8_0, kiln::kWQ8_0)
KILN_MATMUL_DECODE_ALL_X(q4_0, kiln::kWQ4_0)
KILN_MATMUL_DECODE_ALL_X(q4_k, kiln::kWQ4_K)
KILN_MATMUL_DECODE_ALL_X(q6_k, kiln::kWQ6_K)
