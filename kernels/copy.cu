// copy.cu — copy/convert: dst <- src among F32, F16, BF16 (all nine pairs), and
// I32 to I32.
//
// Kernels, named copy_<src>_to_<dst>[_vec]:
//   copy_<s>_to_<d>      simple: any strides on both sides (src already
//                        broadcast to dst's shape through stride-0 dimensions).
//   copy_<s>_to_<d>_vec  FAST VARIANT, compiled, not yet run on a GPU: both
//                        sides contiguous, pointers aligned to one 16-byte
//                        vector of the wider type; a scalar loop does the tail.
//
// No __restrict__: an in-place copy (dst == src, same dtype and layout) is allowed.
#include "common.cuh"

namespace kiln {

template <typename D, typename S>
__device__ __forceinline__ void copy_strided(const KilnElementwiseParams& p) {
	const S* src = reinterpret_cast<const S*>(p.a.ptr);
	D* dst = reinterpret_cast<D*>(p.dst.ptr);
	for (int64_t i = global_thread(); i < p.n; i += grid_threads()) {
		int64_t c[4];
		unflatten4(i, p.shape, c);
		dst[offset4(c, p.dst.strides)] = Convert<D, S>::run(src[offset4(c, p.a.strides)]);
	}
}

template <typename D, typename S>
__device__ __forceinline__ void copy_contiguous_vec(D* dst, const S* src, int64_t n) {
	constexpr int V = 16 / (sizeof(S) > sizeof(D) ? sizeof(S) : sizeof(D));
	typedef Pack<S, V> PS;
	typedef Pack<D, V> PD;
	const int64_t n_vec = n / V;
	for (int64_t i = global_thread(); i < n_vec; i += grid_threads()) {
		const PS in = reinterpret_cast<const PS*>(src)[i];
		PD out;
#pragma unroll
		for (int k = 0; k < V; k++) out.v[k] = Convert<D, S>::run(in.v[k]);
		reinterpret_cast<PD*>(dst)[i] = out;
	}
	for (int64_t i = n_vec * V + global_thread(); i < n; i += grid_threads()) {
		dst[i] = Convert<D, S>::run(src[i]);
	}
}

}  // namespace kiln

#define KILN_COPY(SNAME, S, DNAME, D)                                                        \
	extern "C" __global__ void __launch_bounds__(256)                                       \
	    copy_##SNAME##_to_##DNAME(const KilnElementwiseParams p) {                          \
		kiln::copy_strided<D, S>(p);                                                      \
	}                                                                                       \
	extern "C" __global__ void __launch_bounds__(256)                                       \
	    copy_##SNAME##_to_##DNAME##_vec(D* dst, const S* src,                                 \
	                                    int64_t n) {                                        \
		kiln::copy_contiguous_vec<D, S>(dst, src, n);                                     \
	}

KILN_COPY(f32, float, f32, float)
KILN_COPY(f32, float, f16, f16)
KILN_COPY(f32, float, bf16, bf16)
KILN_COPY(f16, f16, f32, float)
KILN_COPY(f16, f16, f16, f16)
KILN_COPY(f16, f16, bf16, bf16)
KILN_COPY(bf16, bf16, f32, float)
KILN_COPY(bf16, bf16, f16, f16)
KILN_COPY(bf16, bf16, bf16, bf16)
KILN_COPY(i32, int32_t, i32, int32_t)
