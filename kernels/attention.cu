// attention.cu — the simple attention kernels and the merge of split-KV
// partial results (see KilnAttentionParams in kiln_params.h for the layouts).
//
// Kernels:
//   attention_<dt>          (dt f32, f16, bf16) the simple kernel: every
//                           dtype, head dim 1..256, contiguous or paged K/V,
//                           every option. One warp per (query row, head):
//                           the row's sequence is found by binary search over
//                           q_starts, and the keys it sees are streamed one at
//                           a time: a dot product over the lanes (each lane
//                           holds head dims lane, lane+32, ...), then an
//                           online-softmax update, all in F32, no rounding
//                           before the output. Obviously correct, not fast:
//                           what KILN_KERNELS=simple runs.
//   attention_<dt>_combine  (dt f16, bf16) merges the n_splits partial
//                           results of the split decode kernel (one warp per
//                           (query, head)): the largest split log-sum-exp M,
//                           weights exp2(lse_s − M) (0 for a split that saw no
//                           key), output Σ w_s·O_s / Σ w_s, in split order
//                           (deterministic). A NaN split log-sum-exp (NaN
//                           inputs, or a split that skipped a bad page) makes
//                           the row NaN.
#include "attention_common.cuh"

namespace kiln {
namespace attn {

constexpr int kSimpleThreads = 128;   // 4 warps, one (query row, head) each
constexpr int kCombineThreads = 128;  // 4 warps, one (query, head) each
constexpr int kMaxPerLane = 8;        // head dims per lane: 256 / 32
constexpr int kMaxSplits = 32;        // one split per lane in the combine (the Go launcher never asks more)
static_assert(kMaxSplits == 32, "the combine holds one split per lane");

template <typename T> __device__ __forceinline__ void attention_simple(const KilnAttentionParams& p) {
	check_all(p, grid_rank(), grid_size());

	const int lane = threadIdx.x & 31;
	const int warps_per_block = kSimpleThreads / 32;
	const int64_t n_warps = (int64_t)gridDim.x * warps_per_block;
	const int64_t items = p.total_q * p.n_heads;
	const int group = p.n_heads / p.n_kv_heads;
	const T* q = reinterpret_cast<const T*>(p.q);
	const T* k = reinterpret_cast<const T*>(p.k);
	const T* v = reinterpret_cast<const T*>(p.v);
	T* o = reinterpret_cast<T*>(p.o);
	const float* mask = reinterpret_cast<const float*>(p.mask);

	for (int64_t item = (int64_t)blockIdx.x * warps_per_block + (threadIdx.x >> 5); item < items; item += n_warps) {
		const int64_t row = item / p.n_heads;
		const int h = (int)(item % p.n_heads);
		const int64_t b = find_sequence(p, row);
		Seq s;
		if (!load_seq(p, b, s, false)) continue;  // check_all records the fault
		if (row < s.q_begin || row >= (int64_t)s.q_begin + s.q_len) continue;
		const int hk = h / group;
		const int pos = s.kv_len - s.q_len + (int)(row - s.q_begin);
		const KeyRange keys = visible_keys(p, s.kv_len, pos, pos);

		float qv[kMaxPerLane], acc[kMaxPerLane];
		const T* q_row = q + row * p.q_token_stride + (int64_t)h * p.q_head_stride;
#pragma unroll
		for (int e = 0; e < kMaxPerLane; ++e) {
			const int d = lane + 32 * e;
			qv[e] = d < p.head_dim ? to_f32(q_row[d]) : 0.0f;
			acc[e] = 0.0f;
		}
		float m = -INFINITY, l = 0.0f;
		bool pages_ok = true;
		int checked_col = -1;
		for (int j = keys.lo; j < keys.hi; ++j) {
			if (p.paged) {
				const int col = page_column(p, j);
				if (col != checked_col) {
					if (!page_ok(p, b, col, true)) {
						pages_ok = false;
						break;
					}
					checked_col = col;
				}
			}
			const int64_t k_off = key_offset<false>(p, s, b, j, hk), v_off = key_offset<true>(p, s, b, j, hk);
			float dot = 0.0f;
#pragma unroll
			for (int e = 0; e < kMaxPerLane; ++e) {
				const int d = lane + 32 * e;
				if (d < p.head_dim) dot += qv[e] * to_f32(k[k_off + d]);
			}
			float score = warp_sum(dot) * p.scale_log2;
			if (mask != nullptr) score += mask[row * p.mask_row_stride + j] * kLog2e;
			if (score == -INFINITY) continue;  // a masked key adds nothing
			const float m_new = fmaxf(m, score);
			const float alpha = exp2f(m - m_new);  // 0 while m is −inf
			const float pk = exp2f(score - m_new);
			l = l * alpha + pk;
#pragma unroll
			for (int e = 0; e < kMaxPerLane; ++e) {
				const int d = lane + 32 * e;
				if (d < p.head_dim) acc[e] = acc[e] * alpha + pk * to_f32(v[v_off + d]);
			}
			m = m_new;
		}
		if (!pages_ok) continue;  // recorded; the row is not written

		const float inv = l > 0.0f ? 1.0f / l : 0.0f;
		T* o_row = o + row * p.o_token_stride + (int64_t)h * p.o_head_stride;
#pragma unroll
		for (int e = 0; e < kMaxPerLane; ++e) {
			const int d = lane + 32 * e;
			if (d < p.head_dim) o_row[d] = from_f32<T>(acc[e] * inv);
		}
		if (p.lse != 0 && lane == 0)
			reinterpret_cast<float*>(p.lse)[h * p.lse_head_stride + row] = l > 0.0f ? (m + log2f(l)) * kLn2 : -INFINITY;
	}
}

template <typename T> __device__ __forceinline__ void attention_combine(const KilnAttentionParams& p) {
	const int lane = threadIdx.x & 31;
	const int warps_per_block = kCombineThreads / 32;
	const int64_t n_warps = (int64_t)gridDim.x * warps_per_block;
	const int64_t items = p.batch * p.max_query_len * p.n_heads;
	const int64_t split_rows = p.total_q * p.n_heads;  // partial rows per split
	const float* part_lse = reinterpret_cast<const float*>(p.partial_lse);
	const float* part_o = reinterpret_cast<const float*>(p.partial_o);
	T* o = reinterpret_cast<T*>(p.o);

	for (int64_t item = (int64_t)blockIdx.x * warps_per_block + (threadIdx.x >> 5); item < items; item += n_warps) {
		const int h = (int)(item % p.n_heads);
		const int64_t bi = item / p.n_heads;
		const int i = (int)(bi % p.max_query_len);
		const int64_t b = bi / p.max_query_len;
		Seq s;
		if (!load_seq(p, b, s, false)) continue;  // the decode kernel recorded it
		if (i >= s.q_len) continue;
		const int64_t row = (int64_t)s.q_begin + i;
		// The splits the decode kernel wrote for this sequence: split 0
		// always, split s when it holds keys.
		int64_t n_used = ((int64_t)s.kv_len + p.kv_per_split - 1) / p.kv_per_split;
		n_used = n_used < 1 ? 1 : (n_used > p.n_splits ? p.n_splits : n_used);

		const int64_t at = row * p.n_heads + h;
		const float ls = lane < n_used ? part_lse[lane * split_rows + at] : -INFINITY;
		// A NaN split (NaN inputs, or a split that met a bad page) makes the
		// row NaN: never a merge of what the other splits saw alone.
		const bool nan_split = warp_max(isnan(ls) ? 1.0f : 0.0f) > 0.0f;
		const float big = warp_max(ls);
		const float w = nan_split ? NAN : ((big == -INFINITY || ls == -INFINITY) ? 0.0f : exp2f(ls - big));
		const float total = nan_split ? NAN : warp_sum(w);

		float out[kMaxPerLane];
#pragma unroll
		for (int e = 0; e < kMaxPerLane; ++e) out[e] = 0.0f;
		for (int sp = 0; sp < (int)n_used; ++sp) {
			const float ws = __shfl_sync(kFullMask, w, sp);
			if (ws == 0.0f) continue;  // the same in every lane (NaN is not skipped)
			const float* po = part_o + (sp * split_rows + at) * p.head_dim;
#pragma unroll
			for (int e = 0; e < kMaxPerLane; ++e) {
				const int d = lane + 32 * e;
				if (d < p.head_dim) out[e] += ws * po[d];
			}
		}
		const float inv = total > 0.0f ? 1.0f / total : (total == 0.0f ? 0.0f : NAN);
		T* o_row = o + row * p.o_token_stride + (int64_t)h * p.o_head_stride;
#pragma unroll
		for (int e = 0; e < kMaxPerLane; ++e) {
			const int d = lane + 32 * e;
			if (d < p.head_dim) o_row[d] = from_f32<T>(out[e] * inv);
		}
		if (p.lse != 0 && lane == 0)
			reinterpret_cast<float*>(p.lse)[h * p.lse_head_stride + row] =
			    total > 0.0f ? (big + log2f(total)) * kLn2 : (total == 0.0f ? -INFINITY : NAN);
	}
}

}  // namespace attn
}  // namespace kiln

#define KILN_ATTENTION_SIMPLE(NAME, T)                                                                           \
	extern "C" __global__ void __launch_bounds__(kiln::attn::kSimpleThreads) attention_##NAME(const KilnAttentionParams p) { \
		kiln::attn::attention_simple<T>(p);                                                                  \
	}

KILN_ATTENTION_SIMPLE(f32, float)
KILN_ATTENTION_SIMPLE(f16, f16)
KILN_ATTENTION_SIMPLE(bf16, bf16)

#define KILN_ATTENTION_COMBINE(NAME, T)                                                                                   \
	extern "C" __global__ void __launch_bounds__(kiln::attn::kCombineThreads) attention_##NAME##_combine(const KilnAttentionParams p) { \
		kiln::attn::attention_combine<T>(p);                                                                          \
	}

KILN_ATTENTION_COMBINE(f16, f16)
KILN_ATTENTION_COMBINE(bf16, bf16)
