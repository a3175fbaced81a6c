// matmul_common.cuh — what the matmul kernels (matmul.cu, matmul_simt.cu,
// matmul_decode.cu, matmul_mma.cu) share: the weight formats as C++ traits,
// the virtual-row map of SwiGLU, split-k ranges, staging of weight rows and X
// into shared memory (cp.async, with a 2-byte fallback), the outputs (bias,
// SwiGLU, split-k partials), and the few PTX instructions (cp.async,
// ldmatrix, mma.sync) as inline functions.
//
// The product is Y[m, n] = X[m, k] · W[n, k]ᵀ (+ bias[n]) or, for SwiGLU,
// silu(X·Wᵀ) ⊙ (X·W_upᵀ); every sum is F32 and each output is rounded once
// (see KilnMatMulParams in kiln_params.h for the layouts).
#pragma once

#include "common.cuh"
#include "quant.cuh"

namespace kiln {

// The most static shared memory a block may declare.
constexpr int kStaticSmemLimit = 48 * 1024;

__host__ __device__ constexpr int ceil_div_c(int a, int b) { return (a + b - 1) / b; }
__host__ __device__ constexpr int max_c(int a, int b) { return a > b ? a : b; }

// ---- weight formats -------------------------------------------------------------
//
// Weight<F> describes one weight format: a block of kBlockElems elements
// takes kBlockBytes bytes (the float formats: one element per "block"), and
// decode16 yields 16 consecutive elements of one block (quant.cuh).
// kChunkElems is the k step of the decode kernels: the elements of one row
// staged in shared memory at a time, a whole number of blocks and of
// 64-element rounds, small enough that two or three stages of 64 rows fit in
// 48 KB.

enum WeightFormat { kWF32, kWF16, kWBF16, kWQ8_0, kWQ4_0, kWQ4_K, kWQ6_K };

template <int F> struct Weight;

template <> struct Weight<kWF32> {
	static constexpr int kBlockElems = 1, kBlockBytes = 4, kChunkElems = 64;
	static constexpr bool kIsFloat = true;
	static __device__ __forceinline__ void fetch16(const uint8_t* b, int e0, KilnRaw16* r) { kiln_f32_fetch16(b, e0, r); }
	static __device__ __forceinline__ void fetch16_tail(const uint8_t* b, int n, KilnRaw16* r) { kiln_f32_fetch16_tail(b, n, r); }
	static __device__ __forceinline__ void decode16(const KilnRaw16* r, int e0, float* o) { kiln_f32_decode16(r, e0, o); }
};
template <> struct Weight<kWF16> {
	static constexpr int kBlockElems = 1, kBlockBytes = 2, kChunkElems = 128;
	static constexpr bool kIsFloat = true;
	static __device__ __forceinline__ void fetch16(const uint8_t* b, int e0, KilnRaw16* r) { kiln_f16_fetch16(b, e0, r); }
	static __device__ __forceinline__ void fetch16_tail(const uint8_t* b, int n, KilnRaw16* r) { kiln_f16_fetch16_tail(b, n, r); }
	static __device__ __forceinline__ void decode16(const KilnRaw16* r, int e0, float* o) { kiln_f16_decode16(r, e0, o); }
};
template <> struct Weight<kWBF16> {
	static constexpr int kBlockElems = 1, kBlockBytes = 2, kChunkElems = 128;
	static constexpr bool kIsFloat = true;
	static __device__ __forceinline__ void fetch16(const uint8_t* b, int e0, KilnRaw16* r) { kiln_bf16_fetch16(b, e0, r); }
	static __device__ __forceinline__ void fetch16_tail(const uint8_t* b, int n, KilnRaw16* r) { kiln_f16_fetch16_tail(b, n, r); }
	static __device__ __forceinline__ void decode16(const KilnRaw16* r, int e0, float* o) { kiln_bf16_decode16(r, e0, o); }
};
template <> struct Weight<kWQ8_0> {
	static constexpr int kBlockElems = 32, kBlockBytes = 34, kChunkElems = 128;
	static constexpr bool kIsFloat = false;
	static __device__ __forceinline__ void fetch16(const uint8_t* b, int e0, KilnRaw16* r) { kiln_q8_0_fetch16(b, e0, r); }
	static __device__ __forceinline__ void fetch16_tail(const uint8_t*, int, KilnRaw16*) {}
	static __device__ __forceinline__ void decode16(const KilnRaw16* r, int e0, float* o) { kiln_q8_0_decode16(r, e0, o); }
};
template <> struct Weight<kWQ4_0> {
	static constexpr int kBlockElems = 32, kBlockBytes = 18, kChunkElems = 256;
	static constexpr bool kIsFloat = false;
	static __device__ __forceinline__ void fetch16(const uint8_t* b, int e0, KilnRaw16* r) { kiln_q4_0_fetch16(b, e0, r); }
	static __device__ __forceinline__ void fetch16_tail(const uint8_t*, int, KilnRaw16*) {}
	static __device__ __forceinline__ void decode16(const KilnRaw16* r, int e0, float* o) { kiln_q4_0_decode16(r, e0, o); }
};
template <> struct Weight<kWQ4_K> {
	static constexpr int kBlockElems = 256, kBlockBytes = 144, kChunkElems = 256;
	static constexpr bool kIsFloat = false;
	static __device__ __forceinline__ void fetch16(const uint8_t* b, int e0, KilnRaw16* r) { kiln_q4_k_fetch16(b, e0, r); }
	static __device__ __forceinline__ void fetch16_tail(const uint8_t*, int, KilnRaw16*) {}
	static __device__ __forceinline__ void decode16(const KilnRaw16* r, int e0, float* o) { kiln_q4_k_decode16(r, e0, o); }
};
template <> struct Weight<kWQ6_K> {
	static constexpr int kBlockElems = 256, kBlockBytes = 210, kChunkElems = 256;
	static constexpr bool kIsFloat = false;
	static __device__ __forceinline__ void fetch16(const uint8_t* b, int e0, KilnRaw16* r) { kiln_q6_k_fetch16(b, e0, r); }
	static __device__ __forceinline__ void fetch16_tail(const uint8_t*, int, KilnRaw16*) {}
	static __device__ __forceinline__ void decode16(const KilnRaw16* r, int e0, float* o) { kiln_q6_k_decode16(r, e0, o); }
};

// decode16_at: elements e .. e+15 (e a multiple of 16) of a row whose first
// element's block starts at row: fetch and decode at once.
template <class W> __device__ __forceinline__ void decode16_at(const uint8_t* row, int64_t e, float out[16]) {
	KilnRaw16 r;
	const int e0 = (int)(e % W::kBlockElems);
	W::fetch16(row + (e / W::kBlockElems) * W::kBlockBytes, e0, &r);
	W::decode16(&r, e0, out);
}

// ---- rows, slices, outputs ----------------------------------------------------------

// weight_row is where virtual row v of the weight starts (kiln_params.h):
// v itself for a plain product; for SwiGLU, rows 0-7 of every 16 are gate
// rows and rows 8-15 the up rows of the same outputs. Rows past n read row
// n − 1, which exists (n ≥ 1): their sums are computed and never stored.
__device__ __forceinline__ const uint8_t* weight_row(const KilnMatMulParams& p, int64_t v) {
	int64_t row = v;
	uint64_t base = p.w;
	if (p.swiglu) {
		row = (v >> 4) * 8 + (v & 7);
		if (v & 8) base = p.w_up;
	}
	if (row >= p.n) row = p.n - 1;
	return reinterpret_cast<const uint8_t*>(base) + row * p.w_row_stride_bytes;
}

// KRange is the part of k one split-k slice sums.
struct KRange {
	int64_t begin, end;
};

__device__ __forceinline__ KRange split_range(const KilnMatMulParams& p, int64_t slice) {
	KRange r;
	r.begin = slice * p.k_per_split;
	r.end = r.begin + p.k_per_split < p.k ? r.begin + p.k_per_split : p.k;
	if (r.begin > r.end) r.begin = r.end;
	return r;
}

// silu(g)·u in F32: silu(g) = g / (1 + e^−g), then the product. The
// division is __fdividef (within 2 ulp; for very negative g, expf(−g) is
// +inf and the quotient −0, the limit), not the IEEE one, whose subnormal
// slow path is a subroutine call that makes every kernel save its live
// registers to local memory (spills) around it. The CPU reference evaluates
// silu(g)·u in float64; the difference is far below the sums' own rounding.
__device__ __forceinline__ float silu_mul(float g, float u) { return __fdividef(g, 1.0f + expf(-g)) * u; }

// plain_out is a finished plain sum: the bias added in F32 when there is one.
__device__ __forceinline__ float plain_out(const KilnMatMulParams& p, int64_t n, float sum) {
	return p.bias ? sum + reinterpret_cast<const float*>(p.bias)[n] : sum;
}

template <typename T> __device__ __forceinline__ void store_y(const KilnMatMulParams& p, int64_t m, int64_t n, float v) {
	reinterpret_cast<T*>(p.y)[m * p.y_row_stride + n] = from_f32<T>(v);
}

__device__ __forceinline__ void store_partial(const KilnMatMulParams& p, int64_t slice, int64_t m, int64_t v, float s) {
	reinterpret_cast<float*>(p.partials)[(slice * p.m + m) * p.n_virtual + v] = s;
}

// finish_tile writes the outputs of a tile of ROWS virtual rows from v0 (a
// multiple of 16) and MROWS rows of X from m0, whose finished sums sums(r, i)
// (tile row r, X row m0 + i) the block holds: partials for split-k, else Y.
// Every thread of the block calls it.
template <typename T, int ROWS, int MROWS, int THREADS, class Sums>
__device__ __forceinline__ void finish_tile(const KilnMatMulParams& p, int64_t v0, int64_t m0, int64_t slice, Sums sums) {
	if (p.split_k > 1) {
		for (int idx = threadIdx.x; idx < ROWS * MROWS; idx += THREADS) {
			const int i = idx / ROWS, r = idx % ROWS;
			const int64_t m = m0 + i, v = v0 + r;
			if (m < p.m && v < p.n_virtual) store_partial(p, slice, m, v, sums(r, i));
		}
	} else if (p.swiglu) {
		for (int idx = threadIdx.x; idx < ROWS / 2 * MROWS; idx += THREADS) {
			const int i = idx / (ROWS / 2), j = idx % (ROWS / 2);
			const int gate = (j / 8) * 16 + j % 8;  // its up row is gate + 8
			const int64_t m = m0 + i, n = v0 / 2 + j;
			if (m < p.m && n < p.n) store_y<T>(p, m, n, silu_mul(sums(gate, i), sums(gate + 8, i)));
		}
	} else {
		for (int idx = threadIdx.x; idx < ROWS * MROWS; idx += THREADS) {
			const int i = idx / ROWS, r = idx % ROWS;
			const int64_t m = m0 + i, n = v0 + r;
			if (m < p.m && n < p.n) store_y<T>(p, m, n, plain_out(p, n, sums(r, i)));
		}
	}
}

// ---- PTX --------------------------------------------------------------------------------

#ifdef KILN_HOST_SIM
// kernels/testdata/matmulsim runs these kernels on the host (matmul_sim_test.go)
// and supplies the instructions below, emulated from the PTX ISA (sim.h).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) { kiln_sim_cp_async16(dst, src, src_bytes); }
__device__ __forceinline__ void cp_async_commit() { kiln_sim_cp_async_commit(); }
template <int N> __device__ __forceinline__ void cp_async_wait() { kiln_sim_cp_async_wait(N); }
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) { kiln_sim_ldmatrix_x4(r, smem_row); }
template <typename T> struct Mma;
template <> struct Mma<f16> {
	static void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) { kiln_sim_mma_16816(false, c, a, b0, b1); }
};
template <> struct Mma<bf16> {
	static void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) { kiln_sim_mma_16816(true, c, a, b0, b1); }
};
#else
__device__ __forceinline__ uint32_t smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// cp_async16 copies src_bytes (0..16) bytes from global src to shared dst and
// zero-fills the rest of the 16; both addresses 16-byte aligned (src must be a
// valid address even when src_bytes is 0).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(src_bytes)
	             : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
	asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// ldmatrix_x4 loads four 8x8 b16 matrices; lanes 8i..8i+7 give the row
// addresses of matrix i (16-byte aligned), and register i receives row
// lane/4, columns 2(lane%4) and 2(lane%4)+1 of matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(smem_u32(smem_row)));
}

// mma_16816: c (16x8, F32) += a (16x16, row-major) · b (16x8, column-major),
// with g = lane/4, t = lane%4:
//   a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9]
//   b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g]
//   c[0] = C[g][2t], c[1] = C[g][2t+1], c[2] = C[g+8][2t], c[3] = C[g+8][2t+1]
// (two 16-bit values per register, the lower index in the low half).
template <typename T> struct Mma;
template <> struct Mma<f16> {
	static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
		asm volatile(
		    "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
		    "{%0, %1, %2, %3};\n"
		    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
	}
};
template <> struct Mma<bf16> {
	static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
		asm volatile(
		    "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
		    "{%0, %1, %2, %3};\n"
		    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
	}
};
#endif  // KILN_HOST_SIM

// pack2 rounds two F32 values to T (nearest even) and packs them, lo in the
// low half: the precision contract's "W's values rounded to the activations'
// dtype".
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<f16>(float lo, float hi) {
	const __half2 h = __floats2half2_rn(lo, hi);
	return *reinterpret_cast<const uint32_t*>(&h);
}
template <> __device__ __forceinline__ uint32_t pack2<bf16>(float lo, float hi) {
	const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
	return *reinterpret_cast<const uint32_t*>(&h);
}

// WeightIs<F, T>: format F stores T itself, so its raw words are already
// packed T pairs (F16 weights with F16 activations, BF16 with BF16).
template <int F, typename T> struct WeightIs {
	static constexpr bool value = false;
};
template <> struct WeightIs<kWF16, f16> {
	static constexpr bool value = true;
};
template <> struct WeightIs<kWBF16, bf16> {
	static constexpr bool value = true;
};

// ---- staging into shared memory ---------------------------------------------------------

// staged_pitch: bytes per staged weight row: a chunk plus up to 15 bytes of
// lead (below), in an odd number of 16-byte units, so that rows r and r+1
// start in different bank groups.
__host__ __device__ constexpr int staged_pitch(int chunk_bytes) { return (ceil_div_c(chunk_bytes + 15, 16) | 1) * 16; }

template <class W> __host__ __device__ constexpr int chunk_bytes() { return W::kChunkElems / W::kBlockElems * W::kBlockBytes; }

// staged_lead is where, in each staged row, the chunk starting at element kc
// begins: with 16-byte copies the copy starts at the 16-byte boundary at or
// below the chunk (every row start is aligned, so this is the same for all
// rows); the 2-byte fallback copies the chunk to offset 0.
template <class W> __device__ __forceinline__ int staged_lead(const KilnMatMulParams& p, int64_t kc) {
	return p.w_vec16 ? (int)((kc / W::kBlockElems * W::kBlockBytes) & 15) : 0;
}

// StagedRows is where each thread copies weight bytes from: a staging pass
// gives kThreadsPerRow consecutive threads to each row, so that a warp copies
// 128 contiguous bytes of each of 4 rows per instruction, and each thread
// always copies from the same kRowsPerThread rows, whose starts it computes
// once (weight_row) instead of per copy.
template <int ROWS, int THREADS> struct StagedRows {
	static constexpr int kThreadsPerRow = 8;
	static constexpr int kRowsPerPass = THREADS / kThreadsPerRow;
	static constexpr int kRowsPerThread = ROWS / kRowsPerPass;
	static_assert(ROWS % kRowsPerPass == 0, "rows per pass");
	const uint8_t* row[kRowsPerThread];

	__device__ __forceinline__ StagedRows(const KilnMatMulParams& p, int64_t v0) {
#pragma unroll
		for (int j = 0; j < kRowsPerThread; ++j) row[j] = weight_row(p, v0 + tile_row(j));
	}
	// tile_row is the tile row of this thread's j-th row.
	static __device__ __forceinline__ int tile_row(int j) { return threadIdx.x / kThreadsPerRow + kRowsPerPass * j; }
	static __device__ __forceinline__ int lane_in_row() { return threadIdx.x % kThreadsPerRow; }
};

// stage_weights copies the chunk of k elements [kc, kc + W::kChunkElems) of
// the tile's rows (rows, ROWS of them) into dst (ROWS rows of PITCH bytes),
// bytes past the end of a row (k) as zeros. With p.w_vec16 it issues 16-byte
// cp.async copies (the caller commits and waits); otherwise it copies 2 bytes
// at a time with ordinary loads and stores (visible after __syncthreads).
// Every thread of the block calls it.
template <class W, int ROWS, int PITCH, int THREADS>
__device__ __forceinline__ void stage_weights(const KilnMatMulParams& p, const StagedRows<ROWS, THREADS>& rows,
                                              uint8_t* dst, int64_t kc) {
	using Rows = StagedRows<ROWS, THREADS>;
	constexpr int kChunkBytes = chunk_bytes<W>();
	static_assert(kChunkBytes + 15 <= PITCH, "staged row too small");
	const int64_t chunk_off = kc / W::kBlockElems * W::kBlockBytes;
	const int64_t row_bytes = p.k / W::kBlockElems * W::kBlockBytes;
	const int lane = Rows::lane_in_row();
	if (p.w_vec16) {
		const int lead = (int)(chunk_off & 15);
		const int64_t first = chunk_off - lead;
		const int units = (lead + kChunkBytes + 15) / 16;
		constexpr int kMaxUnits = PITCH / 16;
#pragma unroll
		for (int j = 0; j < Rows::kRowsPerThread; ++j) {
			uint8_t* d = dst + Rows::tile_row(j) * PITCH;
#pragma unroll
			for (int u = lane; u < kMaxUnits; u += Rows::kThreadsPerRow) {
				if (u >= units) continue;
				const int64_t off = first + 16 * u;
				const int64_t left = row_bytes - off;
				const int bytes = left <= 0 ? 0 : (left >= 16 ? 16 : (int)left);
				cp_async16(d + 16 * u, rows.row[j] + (bytes > 0 ? off : 0), bytes);
			}
		}
		return;
	}
	constexpr int kHalves = kChunkBytes / 2;  // every block size is even
#pragma unroll
	for (int j = 0; j < Rows::kRowsPerThread; ++j) {
		uint8_t* d = dst + Rows::tile_row(j) * PITCH;
#pragma unroll 4
		for (int h = lane; h < kHalves; h += Rows::kThreadsPerRow) {
			const int64_t off = chunk_off + 2 * h;
			const uint16_t v = off < row_bytes ? *reinterpret_cast<const uint16_t*>(rows.row[j] + off) : (uint16_t)0;
			*reinterpret_cast<uint16_t*>(d + 2 * h) = v;
		}
	}
}

// stage_x copies X rows m0 .. m0+MROWS−1, elements [kc, kc + KC), into dst
// (MROWS rows of XPITCH elements of T), with zeros for rows past m and
// elements past k: 16-byte cp.async with p.x_vec16, else element by element.
template <typename T, int MROWS, int KC, int XPITCH, int THREADS>
__device__ __forceinline__ void stage_x(const KilnMatMulParams& p, T* dst, int64_t m0, int64_t kc) {
	const T* x = reinterpret_cast<const T*>(p.x);
	constexpr int kPerUnit = 16 / (int)sizeof(T);
	if (p.x_vec16) {
		constexpr int kUnits = KC / kPerUnit;
		for (int idx = threadIdx.x; idx < MROWS * kUnits; idx += THREADS) {
			const int r = idx / kUnits, u = idx % kUnits;
			const int64_t m = m0 + r, kk = kc + kPerUnit * u;
			int bytes = 0;
			if (m < p.m) {
				const int64_t left = (p.k - kk) * (int64_t)sizeof(T);
				bytes = left <= 0 ? 0 : (left >= 16 ? 16 : (int)left);
			}
			cp_async16(dst + r * XPITCH + kPerUnit * u, x + (bytes > 0 ? m * p.x_row_stride + kk : 0), bytes);
		}
		return;
	}
	for (int idx = threadIdx.x; idx < MROWS * KC; idx += THREADS) {
		const int r = idx / KC, e = idx % KC;
		const int64_t m = m0 + r, kk = kc + e;
		dst[r * XPITCH + e] = (m < p.m && kk < p.k) ? x[m * p.x_row_stride + kk] : from_f32<T>(0.0f);
	}
}

}  // namespace kiln
