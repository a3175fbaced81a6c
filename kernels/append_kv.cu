// append_kv.cu — AppendKV, the simple kernel of the op (no fast variant: a
// scatter of the new tokens' keys and values into a paged cache; see
// KilnAppendKVParams in kiln_params.h).
//
// Kernels: append_kv_<dt>, dt f32, f16, bf16.
//
// Work: one block per new token (grid-stride), its threads over the token's
// n_kv_heads·head_dim elements of K and of V. A token whose seq id, position
// or page is out of range is recorded in the error word (by thread 0) and
// not written.
#include "common.cuh"

namespace kiln {

constexpr int kAppendKVThreads = 256;

template <typename T> __device__ __forceinline__ void append_kv(const KilnAppendKVParams& p) {
	const int64_t per_token = (int64_t)p.n_kv_heads * p.head_dim;
	const T* k = reinterpret_cast<const T*>(p.k);
	const T* v = reinterpret_cast<const T*>(p.v);
	T* kc = reinterpret_cast<T*>(p.k_cache);
	T* vc = reinterpret_cast<T*>(p.v_cache);
	const bool reporter = threadIdx.x == 0;
	for (int64_t i = blockIdx.x; i < p.n_new; i += gridDim.x) {
		const int64_t seq = reinterpret_cast<const int32_t*>(p.seq_ids)[i];
		const int64_t pos = reinterpret_cast<const int32_t*>(p.positions)[i];
		if (seq < 0 || seq >= p.batch) {
			if (reporter) report_error(p.error_word, KILN_ERR_INDEX_OUT_OF_RANGE, KILN_OP_APPEND_KV, i, seq, p.batch);
			continue;
		}
		const int64_t capacity = p.max_pages_per_seq * p.page_size;
		if (pos < 0 || pos >= capacity) {
			if (reporter) report_error(p.error_word, KILN_ERR_POSITION_OUT_OF_RANGE, KILN_OP_APPEND_KV, i, pos, capacity);
			continue;
		}
		const int64_t page =
		    reinterpret_cast<const int32_t*>(p.block_table)[seq * p.block_table_row_stride + pos / p.page_size];
		if (page < 0 || page >= p.n_pages) {
			if (reporter) report_error(p.error_word, KILN_ERR_PAGE_OUT_OF_RANGE, KILN_OP_APPEND_KV, i, page, p.n_pages);
			continue;
		}
		const int64_t slot = pos % p.page_size;
		for (int64_t e = threadIdx.x; e < per_token; e += blockDim.x) {
			const int64_t hk = e / p.head_dim, d = e % p.head_dim;
			kc[page * p.k_cache_page_stride + slot * p.k_cache_token_stride + hk * p.k_cache_head_stride + d] =
			    k[i * p.k_token_stride + hk * p.k_head_stride + d];
			vc[page * p.v_cache_page_stride + slot * p.v_cache_token_stride + hk * p.v_cache_head_stride + d] =
			    v[i * p.v_token_stride + hk * p.v_head_stride + d];
		}
	}
}

}  // namespace kiln

#define KILN_APPEND_KV(NAME, T)                                                                             \
	extern "C" __global__ void __launch_bounds__(kiln::kAppendKVThreads) append_kv_##NAME(const KilnAppendKVParams p) { \
		kiln::append_kv<T>(p);                                                                            \
	}

KILN_APPEND_KV(f32, float)
KILN_APPEND_KV(f16, f16)
KILN_APPEND_KV(bf16, bf16)
