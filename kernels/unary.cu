// unary.cu — activations, same dtype in and out (F32, F16, BF16), computed in F32
// with the exact math functions:
//   silu(x)      = x · sigmoid(x) = x / (1 + e^(−x))
//   gelu(x)      = 0.5 · x · (1 + erf(x / √2))                     (exact)
//   gelu_tanh(x) = 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))
//
// Kernels, named <op>_<dtype>[_vec]:
//   silu_<dt>, gelu_<dt>, gelu_tanh_<dt>  simple: any strides on dst and x.
//   ..._vec  FAST VARIANT, compiled, not yet run on a GPU: both contiguous,
//            16-byte aligned; 128-bit loads and stores, a scalar tail loop.
//
// No __restrict__: dst may be x (in place).
#include "common.cuh"

namespace kiln {

struct SiLUOp {
	// For very negative x, expf(-x) overflows to +inf and x / inf = -0, the limit.
	__device__ __forceinline__ float operator()(float x) const { return x / (1.0f + expf(-x)); }
};

struct GELUErfOp {
	__device__ __forceinline__ float operator()(float x) const {
		const float kInvSqrt2 = 0.70710678118654752440f;
		return 0.5f * x * (1.0f + erff(x * kInvSqrt2));
	}
};

struct GELUTanhOp {
	__device__ __forceinline__ float operator()(float x) const {
		const float kSqrt2OverPi = 0.79788456080286535588f;
		const float kCoeff = 0.044715f;
		return 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + kCoeff * x * x * x)));
	}
};

template <typename T, typename Op>
__device__ __forceinline__ void unary_strided(const KilnElementwiseParams& p) {
	const T* x = reinterpret_cast<const T*>(p.a.ptr);
	T* dst = reinterpret_cast<T*>(p.dst.ptr);
	const Op op;
	for (int64_t i = global_thread(); i < p.n; i += grid_threads()) {
		int64_t c[4];
		unflatten4(i, p.shape, c);
		dst[offset4(c, p.dst.strides)] = from_f32<T>(op(to_f32(x[offset4(c, p.a.strides)])));
	}
}

template <typename T, typename Op>
__device__ __forceinline__ void unary_contiguous_vec(T* dst, const T* x, int64_t n) {
	constexpr int V = 16 / sizeof(T);
	typedef Pack<T, V> P;
	const Op op;
	const int64_t n_vec = n / V;
	for (int64_t i = global_thread(); i < n_vec; i += grid_threads()) {
		const P in = reinterpret_cast<const P*>(x)[i];
		P out;
#pragma unroll
		for (int k = 0; k < V; k++) out.v[k] = from_f32<T>(op(to_f32(in.v[k])));
		reinterpret_cast<P*>(dst)[i] = out;
	}
	for (int64_t i = n_vec * V + global_thread(); i < n; i += grid_threads()) {
		dst[i] = from_f32<T>(op(to_f32(x[i])));
	}
}

}  // namespace kiln

#define KILN_UNARY(OPNAME, OP, DTNAME, T)                                                      \
	extern "C" __global__ void __launch_bounds__(256) OPNAME##_##DTNAME(const KilnElementwiseParams p) { \
		kiln::unary_strided<T, OP>(p);                                                      \
	}                                                                                         \
	extern "C" __global__ void __launch_bounds__(256) OPNAME##_##DTNAME##_vec(T* dst, const T* x, int64_t n) { \
		kiln::unary_contiguous_vec<T, OP>(dst, x, n);                                       \
	}

KILN_UNARY(silu, kiln::SiLUOp, f32, float)
KILN_UNARY(silu, kiln::SiLUOp, f16, f16)
KILN_UNARY(silu, kiln::SiLUOp, bf16, bf16)
KILN_UNARY(gelu, kiln::GELUErfOp, f32, float)
KILN_UNARY(gelu, kiln::GELUErfOp, f16, f16)
KILN_UNARY(gelu, kiln::GELUErfOp, bf16, bf16)
KILN_UNARY(gelu_tanh, kiln::GELUTanhOp, f32, float)
KILN_UNARY(gelu_tanh, kiln::GELUTanhOp, f16, f16)
KILN_UNARY(gelu_tanh, kiln::GELUTanhOp, bf16, bf16)
