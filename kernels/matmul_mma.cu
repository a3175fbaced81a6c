// matmul_mma.cu — FAST VARIANT, compiled, not yet run on a GPU: the matrix
// product for prefill (m > 16) with F16 or BF16 activations, a tensor-core
// GEMM (mma.sync m16n8k16, F32 accumulators) with the weight's
// dequantization fused into the main loop. W's values are decoded exactly
// (quant.cuh) and rounded to the activations' dtype, as the precision
// contract allows.
//
// Kernels: matmul_<w>_<x>_mma, w one of f32, f16, bf16, q8_0, q4_0, q4_k,
// q6_k, x one of f16, bf16.
//
// Work: a block of 256 threads (8 warps) computes a 128 (X rows, from m0 =
// 128·blockIdx.y) × 128 (virtual weight rows, from v0 = 128·blockIdx.x)
// tile over split-k slice blockIdx.z of k, in k-tiles of 32, double
// buffered in shared memory (rows padded to 40 elements, 80 bytes, so that
// ldmatrix's 8 rows fall in 8 different bank groups):
//   - X's tile is copied with 16-byte cp.async (zeros past m and k; element
//     copies when X's rows are not 16-byte aligned).
//   - W's tile: when W is the activations' dtype (F16 with F16, BF16 with
//     BF16) it is copied like X, no dequantization; otherwise thread i
//     fetches the raw bytes of 16 elements of row i/2 (half i%2 of the
//     k-tile) for the next k-tile before the current one's mma, and after
//     them decodes, rounds to T and stores them: the loads are in flight
//     during the mma.
//   - Warp w computes rows 64·(w/4) .. +63 of X against virtual rows
//     32·(w%4) .. +31: 4 × 4 mma tiles per 16-element k-step, fragments
//     loaded with ldmatrix.x4. For SwiGLU, n-tiles 2j and 2j+1 are the gate
//     and up rows of the same 8 outputs (kiln_params.h), so each thread holds
//     both sums of its outputs.
// The epilogue writes Y (bias or silu(g)·u) or the split-k partials from the
// accumulators. __launch_bounds__(256, 2) caps registers at 128 so that two
// blocks (80 KB of shared memory) share an SM.
#include "matmul_common.cuh"

namespace kiln {

constexpr int kMmaThreads = 256;
constexpr int kMmaBM = 128, kMmaBN = 128, kMmaBK = 32;
constexpr int kMmaPitch = kMmaBK + 8;  // elements per shared row

// load_tile copies a [128][32] tile of T, rows row_of(r) (nullptr: a row of
// zeros) from column k0, into dst ([128][kMmaPitch]), zeros past k: 16-byte
// cp.async when vec (row starts and base 16-byte aligned; base is a valid
// source for the zero-byte copies), else element copies.
template <typename T, class RowOf>
__device__ __forceinline__ void load_tile(T* dst, RowOf row_of, const T* base, int64_t k0, int64_t k, bool vec) {
	constexpr int kUnitsPerRow = kMmaBK / 8;  // 8 elements per 16 bytes
#pragma unroll
	for (int i = 0; i < kMmaBM * kUnitsPerRow / kMmaThreads; ++i) {
		const int idx = threadIdx.x + kMmaThreads * i;
		const int r = idx / kUnitsPerRow, ch = idx % kUnitsPerRow;
		const int64_t kk = k0 + 8 * ch;
		const T* row = row_of(r);
		T* d = dst + r * kMmaPitch + 8 * ch;
		if (vec) {
			int bytes = 0;
			if (row != nullptr) {
				const int64_t left = (k - kk) * (int64_t)sizeof(T);
				bytes = left <= 0 ? 0 : (left >= 16 ? 16 : (int)left);
			}
			cp_async16(d, bytes > 0 ? row + kk : base, bytes);
		} else {
#pragma unroll
			for (int e = 0; e < 8; ++e) d[e] = (row != nullptr && kk + e < k) ? row[kk + e] : from_f32<T>(0.0f);
		}
	}
}

// fetch_w reads the raw bytes of elements e .. e+15 of a weight row (for the
// float formats only those before k; the rest are zeros).
template <class W>
__device__ __forceinline__ void fetch_w(const uint8_t* row, int64_t e, int64_t k, KilnRaw16* raw) {
	if (W::kIsFloat) {
		const int64_t left = k - e;
		if (left >= 16)
			W::fetch16(row + e * W::kBlockBytes, 0, raw);
		else
			W::fetch16_tail(left > 0 ? row + e * W::kBlockBytes : row, left > 0 ? (int)left : 0, raw);
		return;
	}
	W::fetch16(row + (e / W::kBlockElems) * W::kBlockBytes, (int)(e % W::kBlockElems), raw);
}

// store_w decodes what fetch_w read for element e, rounds to T and stores
// the 16 values (32 bytes) at dst.
template <class W, typename T> __device__ __forceinline__ void store_w(const KilnRaw16& raw, int64_t e, T* dst) {
	float f[16];
	W::decode16(&raw, (int)(e % W::kBlockElems), f);
	uint4 lo, hi;
	lo.x = pack2<T>(f[0], f[1]);
	lo.y = pack2<T>(f[2], f[3]);
	lo.z = pack2<T>(f[4], f[5]);
	lo.w = pack2<T>(f[6], f[7]);
	hi.x = pack2<T>(f[8], f[9]);
	hi.y = pack2<T>(f[10], f[11]);
	hi.z = pack2<T>(f[12], f[13]);
	hi.w = pack2<T>(f[14], f[15]);
	reinterpret_cast<uint4*>(dst)[0] = lo;
	reinterpret_cast<uint4*>(dst)[1] = hi;
}

template <int F, typename T> __device__ __forceinline__ void matmul_mma(const KilnMatMulParams& p) {
	using W = Weight<F>;
	constexpr bool kDirect = WeightIs<F, T>::value;
	__shared__ __align__(16) T a_s[2][kMmaBM * kMmaPitch];
	__shared__ __align__(16) T b_s[2][kMmaBN * kMmaPitch];

	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int wm = warp >> 2, wn = warp & 3;
	const int g = lane >> 2, t = lane & 3;
	const int64_t v0 = (int64_t)blockIdx.x * kMmaBN;
	const int64_t m0 = (int64_t)blockIdx.y * kMmaBM;
	const int64_t slice = blockIdx.z;
	const KRange kr = split_range(p, slice);
	const int64_t kt0 = kr.begin / kMmaBK, kt1 = (kr.end + kMmaBK - 1) / kMmaBK;

	const T* x = reinterpret_cast<const T*>(p.x);
	auto x_row = [&](int r) -> const T* { return m0 + r < p.m ? x + (m0 + r) * p.x_row_stride : nullptr; };
	auto w_row_t = [&](int r) -> const T* { return reinterpret_cast<const T*>(weight_row(p, v0 + r)); };
	const bool x_vec = p.x_vec16 != 0, w_vec = p.w_vec16 != 0;
	// The decoding path: this thread's weight row and half of the k-tile.
	const uint8_t* my_row = weight_row(p, v0 + (threadIdx.x >> 1));
	const int my_half = threadIdx.x & 1;
	T* my_b0 = &b_s[0][(threadIdx.x >> 1) * kMmaPitch + 16 * my_half];
	T* my_b1 = &b_s[1][(threadIdx.x >> 1) * kMmaPitch + 16 * my_half];

	float acc[4][4][4];
#pragma unroll
	for (int i = 0; i < 4; ++i)
#pragma unroll
		for (int j = 0; j < 4; ++j)
#pragma unroll
			for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

	if (kt0 < kt1) {
		// Prologue: k-tile kt0 into buffer 0.
		load_tile<T>(a_s[0], x_row, x, kt0 * kMmaBK, p.k, x_vec);
		if (kDirect) load_tile<T>(b_s[0], w_row_t, reinterpret_cast<const T*>(p.w), kt0 * kMmaBK, p.k, w_vec);
		cp_async_commit();
		if (!kDirect) {
			KilnRaw16 raw;
			const int64_t e = kt0 * kMmaBK + 16 * my_half;
			fetch_w<W>(my_row, e, p.k, &raw);
			store_w<W, T>(raw, e, my_b0);
		}
		cp_async_wait<0>();
		__syncthreads();
	}

#pragma unroll 1
	for (int64_t kt = kt0; kt < kt1; ++kt) {
		const int cur = (int)((kt - kt0) & 1);
		const bool has_next = kt + 1 < kt1;
		const int64_t e_next = (kt + 1) * kMmaBK + 16 * my_half;
		KilnRaw16 raw;
		if (has_next) {
			load_tile<T>(a_s[cur ^ 1], x_row, x, (kt + 1) * kMmaBK, p.k, x_vec);
			if (kDirect) load_tile<T>(b_s[cur ^ 1], w_row_t, reinterpret_cast<const T*>(p.w), (kt + 1) * kMmaBK, p.k, w_vec);
			if (!kDirect) fetch_w<W>(my_row, e_next, p.k, &raw);
		}
		cp_async_commit();

		const T* as = a_s[cur];
		const T* bs = b_s[cur];
#pragma unroll
		for (int ks = 0; ks < 2; ++ks) {
			uint32_t af[4][4], bf[4][2];
#pragma unroll
			for (int i = 0; i < 4; ++i)
				ldmatrix_x4(af[i], as + (64 * wm + 16 * i + (lane & 15)) * kMmaPitch + 16 * ks + 8 * (lane >> 4));
#pragma unroll
			for (int jp = 0; jp < 2; ++jp) {
				uint32_t q[4];
				ldmatrix_x4(q, bs + (32 * wn + 16 * jp + 8 * (lane >> 4) + (lane & 7)) * kMmaPitch + 16 * ks + 8 * ((lane >> 3) & 1));
				bf[2 * jp][0] = q[0];
				bf[2 * jp][1] = q[1];
				bf[2 * jp + 1][0] = q[2];
				bf[2 * jp + 1][1] = q[3];
			}
#pragma unroll
			for (int i = 0; i < 4; ++i)
#pragma unroll
				for (int j = 0; j < 4; ++j) Mma<T>::run(acc[i][j], af[i], bf[j][0], bf[j][1]);
		}

		if (!kDirect && has_next) store_w<W, T>(raw, e_next, cur ? my_b0 : my_b1);
		cp_async_wait<0>();
		__syncthreads();
	}

	// Epilogue: acc[i][j][2h + e] is X row m0 + 64wm + 16i + g + 8h and
	// virtual row v0 + 32wn + 8j + 2t + e.
#pragma unroll
	for (int i = 0; i < 4; ++i) {
#pragma unroll
		for (int h = 0; h < 2; ++h) {
			const int64_t m = m0 + 64 * wm + 16 * i + g + 8 * h;
			if (m >= p.m) continue;
#pragma unroll
			for (int j = 0; j < 4; ++j) {
				const int64_t vb = v0 + 32 * wn + 8 * j;
#pragma unroll
				for (int e = 0; e < 2; ++e) {
					const float s = acc[i][j][2 * h + e];
					if (p.split_k > 1) {
						if (vb + 2 * t + e < p.n_virtual) store_partial(p, slice, m, vb + 2 * t + e, s);
					} else if (p.swiglu) {
						if (j % 2 == 0) {  // tile j is gate, j + 1 its up rows
							const int64_t n = vb / 2 + 2 * t + e;
							if (n < p.n) store_y<T>(p, m, n, silu_mul(s, acc[i][j + 1][2 * h + e]));
						}
					} else {
						const int64_t n = vb + 2 * t + e;
						if (n < p.n) store_y<T>(p, m, n, plain_out(p, n, s));
					}
				}
			}
		}
	}
}

}  // namespace kiln

#define KILN_MATMUL_MMA(WNAME, FMT, XNAME, X)                                                                             \
	extern "C" __global__ void __launch_bounds__(kiln::kMmaThreads, 2) matmul_##WNAME##_##XNAME##_mma(const KilnMatMulParams p) { \
		kiln::matmul_mma<FMT, X>(p);                                                                                  \
	}

#define KILN_MATMUL_MMA_ALL_X(WNAME, FMT)     \
	KILN_MATMUL_MMA(WNAME, FMT, f16, f16)     \
	KILN_MATMUL_MMA(WNAME, FMT, bf16, bf16)

KILN_MATMUL_MMA_ALL_X(f32, kiln::kWF32)
KILN_MATMUL_MMA_ALL_X(f16, kiln::kWF16)
KILN_MATMUL_MMA_ALL_X(bf16, kiln::kWBF16)
KILN_MATMUL_MMA_ALL_X(q8_0, kiln::kWQ8_0)
KILN_MATMUL_MMA_ALL_X(q4_0, kiln::kWQ4_0)
KILN_MATMUL_MMA_ALL_X(q4_k, kiln::kWQ4_K)
KILN_MATMUL_MMA_ALL_X(q6_k, kiln::kWQ6_K)
