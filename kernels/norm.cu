// norm.cu — RMSNorm and LayerNorm over each contiguous row, in F32.
//
//   rmsnorm:   y = x / sqrt(mean(x²) + eps) · weight
//   layernorm: y = (x − mean) / sqrt(var + eps) · weight + bias
//
// weight and bias are optional F32 vectors of the row length (address 0 when
// absent). LayerNorm's variance takes two passes over the row (the mean first,
// then the mean of squared deviations), not E[x²] − E[x]², which cancels badly.
// sqrtf and the division are IEEE-exact (no rsqrtf).
//
// Kernels, named <op>_<dtype>[_warp]:
//   rmsnorm_<dt>, layernorm_<dt>   simple: one block per row.
//   ..._warp  FAST VARIANT, compiled, not yet run on a GPU: one warp per row,
//             for short rows.
#include "rows.cuh"

namespace kiln {

template <typename T, typename Group>
__device__ __forceinline__ void rmsnorm_row(const KilnRowsParams& p, int64_t row, const Group& g) {
	const Row<T, T> r = row_at<T, T>(p, row);
	const float* weight = reinterpret_cast<const float*>(p.weight);
	const int64_t n = p.row_len;

	float sum_sq = 0.0f;
	for (int64_t j = g.rank(); j < n; j += g.size()) {
		const float v = to_f32(r.x[j]);
		sum_sq += v * v;
	}
	sum_sq = g.sum(sum_sq);
	const float inv_rms = 1.0f / sqrtf(sum_sq / (float)n + p.eps);

	for (int64_t j = g.rank(); j < n; j += g.size()) {
		float y = to_f32(r.x[j]) * inv_rms;
		if (weight) y *= weight[j];
		r.dst[j] = from_f32<T>(y);
	}
}

template <typename T, typename Group>
__device__ __forceinline__ void layernorm_row(const KilnRowsParams& p, int64_t row, const Group& g) {
	const Row<T, T> r = row_at<T, T>(p, row);
	const float* weight = reinterpret_cast<const float*>(p.weight);
	const float* bias = reinterpret_cast<const float*>(p.bias);
	const int64_t n = p.row_len;

	float sum = 0.0f;
	for (int64_t j = g.rank(); j < n; j += g.size()) sum += to_f32(r.x[j]);
	const float mean = g.sum(sum) / (float)n;

	float sum_dev = 0.0f;
	for (int64_t j = g.rank(); j < n; j += g.size()) {
		const float d = to_f32(r.x[j]) - mean;
		sum_dev += d * d;
	}
	const float var = g.sum(sum_dev) / (float)n;
	const float inv_std = 1.0f / sqrtf(var + p.eps);

	for (int64_t j = g.rank(); j < n; j += g.size()) {
		float y = (to_f32(r.x[j]) - mean) * inv_std;
		// Rounded before the bias is added (no FMA), as on the CPU.
		if (weight) y = __fmul_rn(y, weight[j]);
		if (bias) y += bias[j];
		r.dst[j] = from_f32<T>(y);
	}
}

}  // namespace kiln

// Each thread reads and writes only its own columns of a row, so dst may be x.
#define KILN_NORM(OPNAME, DTNAME, T)                                                                \
	extern "C" __global__ void __launch_bounds__(1024) OPNAME##_##DTNAME(const KilnRowsParams p) { \
		__shared__ float scratch[32];                                                            \
		const kiln::BlockGroup g{scratch};                                                       \
		for (int64_t row = kiln::block_first_row(); row < p.n_rows; row += kiln::block_row_step()) \
			kiln::OPNAME##_row<T>(p, row, g);                                                    \
	}                                                                                              \
	extern "C" __global__ void __launch_bounds__(256) OPNAME##_##DTNAME##_warp(const KilnRowsParams p) { \
		const kiln::WarpGroup g;                                                                 \
		for (int64_t row = kiln::warp_first_row(); row < p.n_rows; row += kiln::warp_row_step())   \
			kiln::OPNAME##_row<T>(p, row, g);                                                    \
	}

KILN_NORM(rmsnorm, f32, float)
KILN_NORM(rmsnorm, f16, f16)
KILN_NORM(rmsnorm, bf16, bf16)
KILN_NORM(layernorm, f32, float)
KILN_NORM(layernorm, f16, f16)
KILN_NORM(layernorm, bf16, bf16)
