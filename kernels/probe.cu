// probe.cu — kernels for the benchmark harness, not ops.
//
//   read_probe_b128: reads n_vec 16-byte vectors with 128-bit loads, four
//     independent loads in flight per thread, folds them with XOR and writes
//     one uint32 per block to out[blockIdx.x], so that no load can be
//     optimised away. Its time gives the device's achievable read bandwidth.
//   copy_probe_b128: dst ← src, n_vec 16-byte vectors, device to device.
// Both need 16-byte aligned pointers; the launcher checks.
//
// kiln:targets sm_90a
// This family is also compiled for sm_90a: the same source, so that the whole
// Hopper path (build, embed, load on compute capability 9.0, fall back to
// compute_80 when refused) is exercised by a kernel that is cheap to check.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256)
    read_probe_b128(const uint4* __restrict__ src, int64_t n_vec, uint32_t* __restrict__ out) {
	__shared__ uint32_t scratch[32];
	const int64_t stride = kiln::grid_threads();
	uint32_t acc = 0;
	int64_t i = kiln::global_thread();
	for (; i + 3 * stride < n_vec; i += 4 * stride) {
		const uint4 v0 = src[i], v1 = src[i + stride], v2 = src[i + 2 * stride], v3 = src[i + 3 * stride];
		acc ^= v0.x ^ v0.y ^ v0.z ^ v0.w ^ v1.x ^ v1.y ^ v1.z ^ v1.w;
		acc ^= v2.x ^ v2.y ^ v2.z ^ v2.w ^ v3.x ^ v3.y ^ v3.z ^ v3.w;
	}
	for (; i < n_vec; i += stride) {
		const uint4 v = src[i];
		acc ^= v.x ^ v.y ^ v.z ^ v.w;
	}
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(kiln::kFullMask, acc, o);
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	if (lane == 0) scratch[warp] = acc;
	__syncthreads();
	if (threadIdx.x == 0) {
		uint32_t block_acc = 0;
		for (int w = 0; w < (int)(blockDim.x >> 5); w++) block_acc ^= scratch[w];
		out[blockIdx.x] = block_acc;
	}
}

extern "C" __global__ void __launch_bounds__(256)
    copy_probe_b128(uint4* __restrict__ dst, const uint4* __restrict__ src, int64_t n_vec) {
	for (int64_t i = kiln::global_thread(); i < n_vec; i += kiln::grid_threads()) dst[i] = src[i];
}
