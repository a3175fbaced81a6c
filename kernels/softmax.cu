// softmax.cu — y = softmax(scale·x + causal mask) over each contiguous row, in F32.
//
// With causal set, row r of the second-innermost dimension is the query at
// position position_offset + r and columns j > position_offset + r are masked
// (−inf). A row with every column masked comes out all zeros instead of 0/0.
// Max-subtracted: z_j = s·x_j rounded to F32 (never fused into the
// subtraction, so that the maximum and the exponents see the same z),
// y_j = exp(z_j − m) / Σ exp(z_k − m), sums in F32.
//
// NaN and infinities follow the CPU reference (runtime/cpu/softmax.go): a
// NaN among the unmasked inputs makes the row NaN, and so do +inf (inf − inf)
// and an unmasked row whose values are all −inf (−inf − −inf); only the
// causal mask gives a row of zeros.
//
// Kernels, named softmax_<dtype>[_warp]:
//   softmax_<dt>       simple: one block per row, three passes over the row
//                      (max, sum, write).
//   softmax_<dt>_warp  FAST VARIANT, compiled, not yet run on a GPU: one warp
//                      per row, for short rows; the same three passes.
#include "rows.cuh"

namespace kiln {

template <typename T, typename Group>
__device__ __forceinline__ void softmax_row(const KilnRowsParams& p, int64_t row, const Group& g) {
	const Row<T, T> r = row_at<T, T>(p, row);
	const int64_t n = p.row_len;
	// Columns [0, n_valid) take part; the rest are masked. The comparison is
	// written so that no sum can overflow, whatever position_offset is: the
	// row is unmasked when position_offset + coord ≥ n − 1.
	int64_t n_valid = n;
	if (p.causal && p.position_offset < n - 1 - r.coord[2]) {
		const int64_t last = p.position_offset + r.coord[2];  // < n − 1: no overflow
		n_valid = last < 0 ? 0 : last + 1;
	}

	if (n_valid == 0) {  // every column masked; the same on every thread of the group
		for (int64_t j = g.rank(); j < n; j += g.size()) r.dst[j] = from_f32<T>(0.0f);
		return;
	}

	// __fmul_rn: z is rounded on its own, never fused with the "− m" below
	// into an FMA, which would give the maximum column exp(residual) ≠ 1.
	float m = -INFINITY;
	for (int64_t j = g.rank(); j < n_valid; j += g.size()) m = fmaxf(m, __fmul_rn(p.scale, to_f32(r.x[j])));
	m = g.max(m);

	float sum = 0.0f;
	for (int64_t j = g.rank(); j < n_valid; j += g.size()) sum += expf(__fmul_rn(p.scale, to_f32(r.x[j])) - m);
	sum = g.sum(sum);

	// Each thread reads and writes only its own columns, so dst may be x.
	for (int64_t j = g.rank(); j < n; j += g.size()) {
		const float y = j < n_valid ? expf(__fmul_rn(p.scale, to_f32(r.x[j])) - m) / sum : 0.0f;
		r.dst[j] = from_f32<T>(y);
	}
}

template <typename T> __device__ __forceinline__ void softmax_block(const KilnRowsParams& p) {
	__shared__ float scratch[32];
	const BlockGroup g{scratch};
	for (int64_t row = block_first_row(); row < p.n_rows; row += block_row_step()) softmax_row<T>(p, row, g);
}

template <typename T> __device__ __forceinline__ void softmax_warp(const KilnRowsParams& p) {
	const WarpGroup g;
	for (int64_t row = warp_first_row(); row < p.n_rows; row += warp_row_step()) softmax_row<T>(p, row, g);
}

}  // namespace kiln

#define KILN_SOFTMAX(DTNAME, T)                                                                         \
	extern "C" __global__ void __launch_bounds__(1024) softmax_##DTNAME(const KilnRowsParams p) {     \
		kiln::softmax_block<T>(p);                                                                   \
	}                                                                                                  \
	extern "C" __global__ void __launch_bounds__(256) softmax_##DTNAME##_warp(const KilnRowsParams p) { \
		kiln::softmax_warp<T>(p);                                                                    \
	}

KILN_SOFTMAX(f32, float)
KILN_SOFTMAX(f16, f16)
KILN_SOFTMAX(bf16, bf16)
