// argmax.cu — the index of the largest element of each contiguous row, as I32.
//
// Ties go to the smallest index; NaN is never chosen; a row of NaNs gives 0.
// Each thread keeps the best (value, index) of its columns; candidates are
// combined with better(), a total order on valid (value, index) pairs, so the
// result does not depend on the order of the reduction: deterministic.
//
// Kernels: argmax_<dtype> (simple: one block per row).
#include "rows.cuh"

namespace kiln {

// Candidate is a (value, index) pair; index < 0 means "no candidate yet"
// (every element seen so far was NaN).
struct Candidate {
	float value;
	int64_t index;
};

__device__ __forceinline__ Candidate better(Candidate a, Candidate b) {
	if (a.index < 0) return b;
	if (b.index < 0) return a;
	if (a.value > b.value) return a;
	if (b.value > a.value) return b;
	return a.index < b.index ? a : b;
}

__device__ __forceinline__ Candidate warp_best(Candidate c) {
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) {
		Candidate other;
		other.value = __shfl_xor_sync(kFullMask, c.value, o);
		other.index = __shfl_xor_sync(kFullMask, c.index, o);
		c = better(c, other);
	}
	return c;
}

template <typename T> __device__ __forceinline__ void argmax_block(const KilnRowsParams& p) {
	__shared__ float scratch_value[32];
	__shared__ int64_t scratch_index[32];
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;

	for (int64_t row = block_first_row(); row < p.n_rows; row += block_row_step()) {
		const Row<T, int32_t> r = row_at<T, int32_t>(p, row);
		Candidate c{0.0f, -1};
		for (int64_t j = threadIdx.x; j < p.row_len; j += blockDim.x) {
			const float v = to_f32(r.x[j]);
			if (!isnan(v)) c = better(c, Candidate{v, j});
		}
		c = warp_best(c);
		if (lane == 0) {
			scratch_value[warp] = c.value;
			scratch_index[warp] = c.index;
		}
		__syncthreads();
		if (warp == 0) {
			Candidate w{0.0f, -1};
			if (lane < n_warps) w = Candidate{scratch_value[lane], scratch_index[lane]};
			w = warp_best(w);
			if (lane == 0) r.dst[0] = (int32_t)(w.index < 0 ? 0 : w.index);
		}
		// The scratch arrays are reused by the next row.
		__syncthreads();
	}
}

}  // namespace kiln

// dst of argmax is addressed through the outer strides only (one I32 per row).
#define KILN_ARGMAX(DTNAME, T)                                                                      \
	extern "C" __global__ void __launch_bounds__(1024) argmax_##DTNAME(const KilnRowsParams p) {  \
		kiln::argmax_block<T>(p);                                                                \
	}

KILN_ARGMAX(f32, float)
KILN_ARGMAX(f16, f16)
KILN_ARGMAX(bf16, bf16)
