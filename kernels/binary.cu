// binary.cu — add and mul: dst = a op b elementwise, one float dtype (F32, F16,
// BF16), computed in F32.
//
// Kernels, named <op>_<dtype>[_vec]:
//   add_<dt>, mul_<dt>          simple: any strides on dst, a and b (a and b
//                               broadcast to dst's shape through stride 0).
//   add_<dt>_vec, mul_<dt>_vec  FAST VARIANT, compiled, not yet run on a GPU:
//                               all three contiguous with the same shape,
//                               16-byte aligned; 128-bit loads and stores, a
//                               scalar loop for the tail.
//
// No __restrict__: dst may be a or b (in place).
#include "common.cuh"

namespace kiln {

struct AddOp {
	__device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct MulOp {
	__device__ __forceinline__ float operator()(float a, float b) const { return a * b; }
};

template <typename T, typename Op>
__device__ __forceinline__ void binary_strided(const KilnElementwiseParams& p) {
	const T* a = reinterpret_cast<const T*>(p.a.ptr);
	const T* b = reinterpret_cast<const T*>(p.b.ptr);
	T* dst = reinterpret_cast<T*>(p.dst.ptr);
	const Op op;
	for (int64_t i = global_thread(); i < p.n; i += grid_threads()) {
		int64_t c[4];
		unflatten4(i, p.shape, c);
		const float va = to_f32(a[offset4(c, p.a.strides)]);
		const float vb = to_f32(b[offset4(c, p.b.strides)]);
		dst[offset4(c, p.dst.strides)] = from_f32<T>(op(va, vb));
	}
}

template <typename T, typename Op>
__device__ __forceinline__ void binary_contiguous_vec(T* dst, const T* a, const T* b, int64_t n) {
	constexpr int V = 16 / sizeof(T);
	typedef Pack<T, V> P;
	const Op op;
	const int64_t n_vec = n / V;
	for (int64_t i = global_thread(); i < n_vec; i += grid_threads()) {
		const P va = reinterpret_cast<const P*>(a)[i];
		const P vb = reinterpret_cast<const P*>(b)[i];
		P out;
#pragma unroll
		for (int k = 0; k < V; k++) out.v[k] = from_f32<T>(op(to_f32(va.v[k]), to_f32(vb.v[k])));
		reinterpret_cast<P*>(dst)[i] = out;
	}
	for (int64_t i = n_vec * V + global_thread(); i < n; i += grid_threads()) {
		dst[i] = from_f32<T>(op(to_f32(a[i]), to_f32(b[i])));
	}
}

}  // namespace kiln

#define KILN_BINARY(OPNAME, OP, DTNAME, T)                                                      \
	extern "C" __global__ void __launch_bounds__(256) OPNAME##_##DTNAME(const KilnElementwiseParams p) { \
		kiln::binary_strided<T, OP>(p);                                                      \
	}                                                                                          \
	extern "C" __global__ void __launch_bounds__(256)                                          \
	    OPNAME##_##DTNAME##_vec(T* dst, const T* a, const T* b, int64_t n) {                  \
		kiln::binary_contiguous_vec<T, OP>(dst, a, b, n);                                    \
	}

KILN_BINARY(add, kiln::AddOp, f32, float)
KILN_BINARY(add, kiln::AddOp, f16, f16)
KILN_BINARY(add, kiln::AddOp, bf16, bf16)
KILN_BINARY(mul, kiln::MulOp, f32, float)
KILN_BINARY(mul, kiln::MulOp, f16, f16)
KILN_BINARY(mul, kiln::MulOp, bf16, bf16)
