// common.cuh — what every kiln kernel shares: the storage types and their
// conversions to and from F32, 4-dimensional index arithmetic, reductions
// within a warp and a block, and the device error word.
//
// Arithmetic is F32 throughout: F16 and BF16 values are converted on load and
// rounded to nearest even on store. Math functions are the exact ones (expf,
// erff, tanhf, sqrtf, IEEE division); never build with --use_fast_math.
#pragma once

#include <stdint.h>
#include <math.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "kiln_params.h"

typedef __half f16;
typedef __nv_bfloat16 bf16;

namespace kiln {

// ---- storage types <-> F32 ---------------------------------------------------

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(f16 v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(bf16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ f16 from_f32<f16>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float v) { return __float2bfloat16_rn(v); }

// Convert<D, S>::run converts one element of S to D through F32; a copy
// between equal types moves the bits unchanged (NaN payloads included), and
// I32 only copies to I32.
template <typename D, typename S> struct Convert {
	static __device__ __forceinline__ D run(S v) { return from_f32<D>(to_f32(v)); }
};
template <typename T> struct Convert<T, T> {
	static __device__ __forceinline__ T run(T v) { return v; }
};

// Pack is V elements moved as one aligned vector access (16 bytes for the
// widest type of a kernel), so that the compiler emits 128-bit loads/stores.
template <typename T, int V> struct alignas(sizeof(T) * V) Pack {
	T v[V];
};

// ---- indices -------------------------------------------------------------------

// Index of this thread in a grid-stride loop, and the loop's stride, in 64 bits
// so that more than 2^31 elements index correctly.
__device__ __forceinline__ int64_t global_thread() {
	return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() { return (int64_t)gridDim.x * blockDim.x; }

// Unflatten4 splits a row-major flat index over shape into 4 coordinates.
__device__ __forceinline__ void unflatten4(int64_t i, const int64_t shape[4], int64_t c[4]) {
	c[3] = i % shape[3];
	i /= shape[3];
	c[2] = i % shape[2];
	i /= shape[2];
	c[1] = i % shape[1];
	c[0] = i / shape[1];
}

__device__ __forceinline__ int64_t offset4(const int64_t c[4], const int64_t strides[4]) {
	return c[0] * strides[0] + c[1] * strides[1] + c[2] * strides[2] + c[3] * strides[3];
}

// Unflatten3 splits a row number into the coordinates of three outer dimensions.
__device__ __forceinline__ void unflatten3(int64_t i, const int64_t shape[3], int64_t c[3]) {
	c[2] = i % shape[2];
	i /= shape[2];
	c[1] = i % shape[1];
	c[0] = i / shape[1];
}

__device__ __forceinline__ int64_t offset3(const int64_t c[3], const int64_t strides[3]) {
	return c[0] * strides[0] + c[1] * strides[1] + c[2] * strides[2];
}

// ---- reductions ------------------------------------------------------------------
//
// A "group" is the set of threads that cooperate on one row: a whole block
// (BlockGroup) or one warp (WarpGroup). Both offer the thread's rank, the
// group size and sum/max reductions that every thread of the group must call
// together and that return the same value to all of them. The reduction
// order depends only on the group size, so results are deterministic.

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
	return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
	return v;
}

struct WarpGroup {
	__device__ __forceinline__ int rank() const { return threadIdx.x & 31; }
	__device__ __forceinline__ int size() const { return 32; }
	__device__ __forceinline__ float sum(float v) const { return warp_sum(v); }
	__device__ __forceinline__ float max(float v) const { return warp_max(v); }
};

// BlockGroup needs blockDim.x to be a multiple of 32 (at most 1024) and a
// 32-float shared scratch array.
struct BlockGroup {
	float* scratch;

	__device__ __forceinline__ int rank() const { return threadIdx.x; }
	__device__ __forceinline__ int size() const { return blockDim.x; }

	template <bool IsMax> __device__ __forceinline__ float reduce(float v) const {
		const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
		v = IsMax ? warp_max(v) : warp_sum(v);
		if (lane == 0) scratch[warp] = v;
		__syncthreads();
		if (warp == 0) {
			float w = lane < n_warps ? scratch[lane] : (IsMax ? -INFINITY : 0.0f);
			w = IsMax ? warp_max(w) : warp_sum(w);
			if (lane == 0) scratch[0] = w;
		}
		__syncthreads();
		v = scratch[0];
		// Nobody may overwrite scratch (the next reduction) before everyone has read it.
		__syncthreads();
		return v;
	}
	__device__ __forceinline__ float sum(float v) const { return reduce<false>(v); }
	__device__ __forceinline__ float max(float v) const { return reduce<true>(v); }
};

// ---- the device error word (kiln_params.h) -------------------------------------------

// report_error records a fault in the error word at word_ptr unless an
// earlier fault already claimed it (first fault wins).
__device__ inline void report_error(uint64_t word_ptr, uint32_t code, uint32_t op, int64_t index,
                                    int64_t value, int64_t limit) {
	if (word_ptr == 0) return;
	KilnErrorWord* w = reinterpret_cast<KilnErrorWord*>(word_ptr);
	if (atomicCAS(&w->code, 0u, code) != 0u) return;
	w->op = op;
	w->index_lo = (uint32_t)(uint64_t)index;
	w->index_hi = (uint32_t)((uint64_t)index >> 32);
	w->value_lo = (uint32_t)(uint64_t)value;
	w->value_hi = (uint32_t)((uint64_t)value >> 32);
	w->limit_lo = (uint32_t)(uint64_t)limit;
	w->limit_hi = (uint32_t)((uint64_t)limit >> 32);
}

}  // namespace kiln
