// rope.cu — rotary position embedding over x [batch, n_tokens, n_heads, head_dim].
//
// For pair i (0 ≤ i < n_dims/2) of a token at position p = positions[b, t] +
// position_offset:
//
//   θ = p · freq_scale · freq_base^(−2i/n_dims) / freq_factors[i]
//
// computed in double as the CPU reference does (runtime/cpu/rope.go), in the
// same order: f_i = freq_scale · freq_base^(−2i/n_dims) / freq_factors[i],
// then θ = p · f_i; cos θ and sin θ in double too, each rounded to float, so
// that every backend gets the same angles even at large positions. The
// rotation (a, b) → (a·cos θ − b·sin θ, a·sin θ + b·cos θ) is float with
// every product rounded before the sum (__fmul_rn: no fused multiply-add),
// again as on the CPU.
// Pairs are (2i, 2i+1) in the normal style and (i, i + n_dims/2) in the NeoX
// style. Elements at and past n_dims are copied through.
//
// One block per token: the block computes each pair's angle once, into shared
// memory (kChunk pairs at a time), and all its threads then rotate every head
// with it. Each element is read and written by one thread, so dst may be x.
//
// Kernels: rope_<dtype> (simple).
#include "common.cuh"

namespace kiln {

constexpr int kRoPEChunk = 256;  // pairs whose angles a block holds at once

template <typename T> __device__ __forceinline__ void rope(const KilnRoPEParams& p) {
	__shared__ float cos_s[kRoPEChunk];
	__shared__ float sin_s[kRoPEChunk];

	const T* x = reinterpret_cast<const T*>(p.x);
	T* dst = reinterpret_cast<T*>(p.dst);
	const int32_t* positions = reinterpret_cast<const int32_t*>(p.positions);
	const float* freq_factors = reinterpret_cast<const float*>(p.freq_factors);

	const int64_t n_tokens = p.shape[1], n_heads = p.shape[2], head_dim = p.shape[3];
	const int64_t n_rows = p.shape[0] * n_tokens;
	const int half = p.n_dims / 2;

	for (int64_t row = blockIdx.x; row < n_rows; row += gridDim.x) {
		const int64_t b = row / n_tokens, t = row % n_tokens;
		const int64_t position = (int64_t)positions[b * p.pos_strides[0] + t * p.pos_strides[1]] + p.position_offset;
		const T* x_tok = x + b * p.x_strides[0] + t * p.x_strides[1];
		T* dst_tok = dst + b * p.dst_strides[0] + t * p.dst_strides[1];

		for (int first = 0; first < half; first += kRoPEChunk) {
			const int n_pairs = half - first < kRoPEChunk ? half - first : kRoPEChunk;
			for (int k = threadIdx.x; k < n_pairs; k += blockDim.x) {
				const int i = first + k;
				double freq = (double)p.freq_scale * pow((double)p.freq_base, -2.0 * (double)i / (double)p.n_dims);
				if (freq_factors) freq /= (double)freq_factors[i];
				const double theta = (double)position * freq;
				double s, c;
				sincos(theta, &s, &c);
				cos_s[k] = (float)c;
				sin_s[k] = (float)s;
			}
			__syncthreads();
			for (int64_t k = threadIdx.x; k < n_heads * n_pairs; k += blockDim.x) {
				const int64_t h = k / n_pairs;
				const int pair = (int)(k % n_pairs);
				const int i = first + pair;
				const int64_t i0 = p.style == KILN_ROPE_NEOX ? i : 2 * (int64_t)i;
				const int64_t i1 = p.style == KILN_ROPE_NEOX ? i + half : 2 * (int64_t)i + 1;
				const T* xh = x_tok + h * p.x_strides[2];
				T* dh = dst_tok + h * p.dst_strides[2];
				const float a = to_f32(xh[i0]), bb = to_f32(xh[i1]);
				const float c = cos_s[pair], s = sin_s[pair];
				dh[i0] = from_f32<T>(__fmul_rn(a, c) - __fmul_rn(bb, s));
				dh[i1] = from_f32<T>(__fmul_rn(a, s) + __fmul_rn(bb, c));
			}
			// The next chunk (or token) overwrites the angles.
			__syncthreads();
		}

		const int64_t n_pass = head_dim - p.n_dims;
		for (int64_t k = threadIdx.x; k < n_heads * n_pass; k += blockDim.x) {
			const int64_t h = k / n_pass, j = p.n_dims + k % n_pass;
			dst_tok[h * p.dst_strides[2] + j] = x_tok[h * p.x_strides[2] + j];
		}
	}
}

}  // namespace kiln

#define KILN_ROPE(DTNAME, T)                                                                        \
	extern "C" __global__ void __launch_bounds__(256) rope_##DTNAME(const KilnRoPEParams p) {     \
		kiln::rope<T>(p);                                                                        \
	}

KILN_ROPE(f32, float)
KILN_ROPE(f16, f16)
KILN_ROPE(bf16, bf16)
