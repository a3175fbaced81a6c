// matmul.cu — the simple matrix-product kernels, and the split-k reduction
// the fast ones use (KilnMatMulParams in kiln_params.h):
//
//   Y[m, n] = X[m, k] · W[n, k]ᵀ (+ bias[n])            (plain)
//   Y[m, n] = silu(X · Wᵀ)[m, n] · (X · W_upᵀ)[m, n]      (swiglu = 1)
//
// Kernels:
//   matmul_<w>_<x>  simple: one thread per output element, a loop over k that
//       decodes each weight element on its own (kiln_<w>_at, quant.cuh) and
//       accumulates x·w with fmaf in F32, in order; the result (bias added
//       in F32, or silu(g)·u) is rounded once to X's dtype. w is one of f32,
//       f16, bf16, q8_0, q4_0, q4_k, q6_k; x (and Y) one of f32, f16, bf16.
//       Obviously correct, slow: what KILN_KERNELS=simple runs, and what the
//       fast kernels are compared with on a GPU. Ignores split_k.
//   matmul_reduce_<x>  FAST-VARIANT HELPER, compiled, not yet run on a GPU:
//       adds the split_k F32 partial sums of every output in slice order
//       (deterministic: no atomics) and finishes it as above.
//
// Weight rows are w_row_stride_bytes apart; blocks are 2-byte aligned.
#include "matmul_common.cuh"

namespace kiln {

template <class Table, typename T> __device__ __forceinline__ void matmul_simple(const KilnMatMulParams& p) {
	const T* x = reinterpret_cast<const T*>(p.x);
	const int64_t total = p.m * p.n;
	for (int64_t idx = global_thread(); idx < total; idx += grid_threads()) {
		const int64_t m = idx / p.n, n = idx - m * p.n;
		const T* xr = x + m * p.x_row_stride;
		const uint8_t* wr = reinterpret_cast<const uint8_t*>(p.w) + n * p.w_row_stride_bytes;
		// For a plain product ur is never read.
		const uint8_t* ur = reinterpret_cast<const uint8_t*>(p.swiglu ? p.w_up : p.w) + n * p.w_row_stride_bytes;
		float sum = 0.0f, sum_up = 0.0f;
		for (int64_t j = 0; j < p.k; ++j) {
			const float xv = to_f32(xr[j]);
			sum = fmaf(xv, Table::at(wr, j), sum);
			if (p.swiglu) sum_up = fmaf(xv, Table::at(ur, j), sum_up);
		}
		store_y<T>(p, m, n, p.swiglu ? silu_mul(sum, sum_up) : plain_out(p, n, sum));
	}
}

// sum_slices adds the split_k partial sums of (m, v) in slice order.
__device__ __forceinline__ float sum_slices(const KilnMatMulParams& p, int64_t m, int64_t v) {
	const float* part = reinterpret_cast<const float*>(p.partials);
	const int64_t slice_stride = p.m * p.n_virtual;
	const float* q = part + m * p.n_virtual + v;
	float s = q[0];
	for (int32_t i = 1; i < p.split_k; ++i) s += q[i * slice_stride];
	return s;
}

template <typename T> __device__ __forceinline__ void matmul_reduce(const KilnMatMulParams& p) {
	const int64_t total = p.m * p.n;
	for (int64_t idx = global_thread(); idx < total; idx += grid_threads()) {
		const int64_t m = idx / p.n, n = idx - m * p.n;
		if (p.swiglu) {
			const int64_t gate = (n / 8) * 16 + n % 8;  // virtual rows (kiln_params.h)
			store_y<T>(p, m, n, silu_mul(sum_slices(p, m, gate), sum_slices(p, m, gate + 8)));
		} else {
			store_y<T>(p, m, n, plain_out(p, n, sum_slices(p, m, n)));
		}
	}
}

}  // namespace kiln

#define KILN_MATMUL_SIMPLE(WNAME, TABLE, XNAME, X)                                                           \
	extern "C" __global__ void __launch_bounds__(256) matmul_##WNAME##_##XNAME(const KilnMatMulParams p) { \
		kiln::matmul_simple<TABLE, X>(p);                                                                \
	}

#define KILN_MATMUL_SIMPLE_ALL_X(WNAME, TABLE)        \
	KILN_MATMUL_SIMPLE(WNAME, TABLE, f32, float)      \
	KILN_MATMUL_SIMPLE(WNAME, TABLE, f16, f16)        \
	KILN_MATMUL_SIMPLE(WNAME, TABLE, bf16, bf16)

KILN_MATMUL_SIMPLE_ALL_X(f32, kiln::TableF32)
KILN_MATMUL_SIMPLE_ALL_X(f16, kiln::TableF16)
KILN_MATMUL_SIMPLE_ALL_X(bf16, kiln::TableBF16)
KILN_MATMUL_SIMPLE_ALL_X(q8_0, kiln::TableQ8_0)
KILN_MATMUL_SIMPLE_ALL_X(q4_0, kiln::TableQ4_0)
KILN_MATMUL_SIMPLE_ALL_X(q4_k, kiln::TableQ4_K)
KILN_MATMUL_SIMPLE_ALL_X(q6_k, kiln::TableQ6_K)

#define KILN_MATMUL_REDUCE(XNAME, X)                                                                          \
	extern "C" __global__ void __launch_bounds__(256) matmul_reduce_##XNAME(const KilnMatMulParams p) { \
		kiln::matmul_reduce<X>(p);                                                                       \
	}

KILN_MATMUL_REDUCE(f32, float)
KILN_MATMUL_REDUCE(f16, f16)
KILN_MATMUL_REDUCE(bf16, bf16)
