// attention_common.cuh — what the attention kernels (attention.cu,
// attention_prefill.cu, attention_decode.cu) share: reading and checking a
// sequence's metadata (query and key ranges, page indices) against the rules
// of KilnAttentionParams in kiln_params.h, the keys a query may see, the
// address of a key's row, and the few PTX instructions of the tensor-core
// kernels (cp.async, ldmatrix, mma.sync) as inline functions.
//
// Softmax conventions, in every kernel: scores are F32 and scaled by
// scale·log2(e) (p.scale_log2), so that exp2f replaces expf; a mask value is
// multiplied by log2(e) before it is added. The running maximum m of a row
// starts at −inf; a step whose new maximum is still −inf uses 0 in its place
// (exp2f(−inf − 0) = 0), so that −inf − −inf never makes a NaN. The
// log-sum-exp of a row is (m + log2(l))·ln(2), −inf when l = 0 (the row saw
// no key; its output is zeros).
#pragma once

#include "common.cuh"

namespace kiln {
namespace attn {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.69314718055994531f;

// ---- metadata ---------------------------------------------------------------------

__device__ __forceinline__ int64_t load_i32(uint64_t base, int64_t i) {
	return (int64_t)reinterpret_cast<const int32_t*>(base)[i];
}

// Seq is one sequence's checked metadata. Every value fits in int32: they
// come from I32 tensors and were checked against their bounds.
struct Seq {
	int q_begin;   // its first row of Q
	int q_len;     // its queries
	int kv_begin;  // contiguous K/V: its first row; paged: 0
	int kv_len;    // its keys
};

// fault records a fault in the error word when report is set, and returns false.
__device__ __forceinline__ bool fault(const KilnAttentionParams& p, bool report, uint32_t code, int64_t index,
                                      int64_t value, int64_t limit) {
	if (report) report_error(p.error_word, code, KILN_OP_ATTENTION, index, value, limit);
	return false;
}

// check_starts checks entries b and b+1 of a starts array (I32 [batch+1]
// over n rows): start[0] = 0, every entry in [0, n], none below the one
// before it.
__device__ __forceinline__ bool check_starts(const KilnAttentionParams& p, bool report, int64_t b, int64_t s0, int64_t s1,
                                             int64_t n, uint32_t range_code, uint32_t decreasing_code) {
	if (b == 0 && s0 != 0) return fault(p, report, range_code, 0, s0, 0);
	if (s0 < 0 || s0 > n) return fault(p, report, range_code, b, s0, n);
	if (s1 < 0 || s1 > n) return fault(p, report, range_code, b + 1, s1, n);
	if (s1 < s0) return fault(p, report, decreasing_code, b + 1, s1, s0);
	return true;
}

// load_seq reads and checks sequence b's metadata (not its pages: see
// check_pages). On a fault it returns false, after recording the fault when
// report is set.
__device__ __forceinline__ bool load_seq(const KilnAttentionParams& p, int64_t b, Seq& s, bool report) {
	const int64_t q0 = load_i32(p.q_starts, b), q1 = load_i32(p.q_starts, b + 1);
	if (!check_starts(p, report, b, q0, q1, p.total_q, KILN_ERR_QUERY_START_RANGE, KILN_ERR_QUERY_START_DECREASING))
		return false;
	// The sequences split all of Q's rows.
	if (b == p.batch - 1 && q1 != p.total_q) return fault(p, report, KILN_ERR_QUERY_STARTS_END, b + 1, q1, p.total_q);
	if (q1 - q0 > p.max_query_len) return fault(p, report, KILN_ERR_QUERY_LEN_OVER_MAX, b, q1 - q0, p.max_query_len);
	int64_t kv0 = 0, kv_len;
	if (p.paged) {
		kv_len = load_i32(p.kv_lens, b);
		const int64_t capacity = p.max_pages_per_seq * p.page_size;
		if (kv_len < 0 || kv_len > capacity) return fault(p, report, KILN_ERR_KV_LEN_RANGE, b, kv_len, capacity);
	} else {
		kv0 = load_i32(p.kv_starts, b);
		const int64_t kv1 = load_i32(p.kv_starts, b + 1);
		if (!check_starts(p, report, b, kv0, kv1, p.total_kv, KILN_ERR_KV_START_RANGE, KILN_ERR_KV_START_DECREASING))
			return false;
		kv_len = kv1 - kv0;
	}
	if (kv_len > p.max_kv_len) return fault(p, report, KILN_ERR_KV_LEN_OVER_MAX, b, kv_len, p.max_kv_len);
	if (p.mask != 0 && kv_len > p.mask_cols) return fault(p, report, KILN_ERR_MASK_TOO_NARROW, b, kv_len, p.mask_cols);
	s.q_begin = (int)q0;
	s.q_len = (int)(q1 - q0);
	s.kv_begin = (int)kv0;
	s.kv_len = (int)kv_len;
	return true;
}

// page_column is the block-table column of key j (paged).
__device__ __forceinline__ int page_column(const KilnAttentionParams& p, int j) {
	return p.page_shift >= 0 ? (j >> p.page_shift) : (int)(j / (int)p.page_size);
}

// page_entry is sequence b's block-table entry in column col (unchecked).
__device__ __forceinline__ int64_t page_entry(const KilnAttentionParams& p, int64_t b, int col) {
	return load_i32(p.block_table, b * p.block_table_row_stride + col);
}

// page_ok checks one block-table entry, recording a fault when report is set.
__device__ __forceinline__ bool page_ok(const KilnAttentionParams& p, int64_t b, int col, bool report) {
	const int64_t page = page_entry(p, b, col);
	if (page >= 0 && page < p.n_pages) return true;
	return fault(p, report, KILN_ERR_PAGE_OUT_OF_RANGE, (b << 32) | (int64_t)col, page, p.n_pages);
}

// check_pages: every page holding keys [key_lo, key_hi) of sequence b
// (paged; key_lo < key_hi) is inside the cache. All threads of the block
// call it and get the same answer; faults are recorded.
__device__ __forceinline__ bool check_pages(const KilnAttentionParams& p, int64_t b, int key_lo, int key_hi) {
	const int c0 = page_column(p, key_lo), c1 = page_column(p, key_hi - 1);
	int bad = 0;
	for (int c = c0 + (int)threadIdx.x; c <= c1; c += (int)blockDim.x) bad |= page_ok(p, b, c, true) ? 0 : 1;
	return __syncthreads_or(bad) == 0;
}

// check_all checks the metadata of every sequence and every page entry of
// the keys it holds, recording faults; the threads of the whole grid share
// the work (thread `rank` of `n_threads`). The kernels that do not visit
// every sequence from its own block (prefill, simple) call it, so that a
// fault in a sequence with no queries, or in a page no query sees, is still
// reported.
__device__ __forceinline__ void check_all(const KilnAttentionParams& p, int64_t rank, int64_t n_threads) {
	for (int64_t b = rank; b < p.batch; b += n_threads) {
		Seq s;
		load_seq(p, b, s, true);
	}
	if (!p.paged) return;
	const int64_t entries = p.batch * p.max_pages_per_seq;
	for (int64_t e = rank; e < entries; e += n_threads) {
		const int64_t b = e / p.max_pages_per_seq, col = e % p.max_pages_per_seq;
		const int64_t kv_len = load_i32(p.kv_lens, b);
		if (kv_len <= 0 || kv_len > p.max_pages_per_seq * p.page_size) continue;  // load_seq reported it
		if (col * p.page_size < kv_len) page_ok(p, b, (int)col, true);
	}
}

// grid_rank is this thread's rank among all the grid's threads, and
// grid_size their number (for check_all).
__device__ __forceinline__ int64_t grid_rank() {
	const int64_t block = ((int64_t)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
	return block * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_size() {
	return (int64_t)gridDim.x * gridDim.y * gridDim.z * blockDim.x;
}

// find_sequence is the last sequence b in [0, batch) with q_starts[b] <=
// row: with valid (non-decreasing) starts, the sequence holding row, or one
// of the empty sequences just before it. Binary search: log2(batch) steps
// whatever the values.
__device__ __forceinline__ int64_t find_sequence(const KilnAttentionParams& p, int64_t row) {
	int64_t lo = 0, hi = p.batch;
	while (hi - lo > 1) {
		const int64_t mid = lo + (hi - lo) / 2;
		if (load_i32(p.q_starts, mid) <= row)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

// ---- which keys a query sees ------------------------------------------------------------

// KeyRange is a half-open range of key indices.
struct KeyRange {
	int lo, hi;
};

// visible_keys is the union of the keys seen by queries at positions
// pos_min .. pos_max of a sequence of kv_len keys: [0, kv_len) without a
// causal mask, else [max(0, pos_min − window + 1) (window > 0), min(kv_len,
// pos_max + 1)). Positions may be negative (more queries than keys).
__device__ __forceinline__ KeyRange visible_keys(const KilnAttentionParams& p, int kv_len, int pos_min, int pos_max) {
	KeyRange r{0, kv_len};
	if (p.causal) {
		r.hi = pos_max + 1 < kv_len ? pos_max + 1 : kv_len;
		if (r.hi < 0) r.hi = 0;
		if (p.window > 0) {
			const int64_t lo = (int64_t)pos_min - p.window + 1;
			r.lo = lo > 0 ? (int)lo : 0;
		}
	}
	return r;
}

// key_visible: key j (0 <= j) of a sequence of kv_len keys is seen by the
// query at position pos.
__device__ __forceinline__ bool key_visible(const KilnAttentionParams& p, int j, int kv_len, int pos) {
	if (j >= kv_len) return false;
	if (p.causal) {
		if (j > pos) return false;
		if (p.window > 0 && (int64_t)j <= (int64_t)pos - p.window) return false;
	}
	return true;
}

// all_see: the keys [lo, hi) that every query at positions pos_min ..
// pos_max sees (empty when none): a key tile inside it needs no mask.
__device__ __forceinline__ KeyRange all_see(const KilnAttentionParams& p, int kv_len, int pos_min, int pos_max) {
	KeyRange r{0, kv_len};
	if (p.causal) {
		r.hi = pos_min + 1 < kv_len ? pos_min + 1 : kv_len;
		if (p.window > 0) {
			const int64_t lo = (int64_t)pos_max - p.window + 1;
			r.lo = lo > 0 ? (int)(lo < kv_len ? lo : kv_len) : 0;
		}
	}
	return r;
}

// key_offset is the element offset of key j's row (KV head hk) of sequence b
// in K (V false) or V (V true). The caller has checked that j is a key of
// the sequence and, for a paged cache, that its page is inside the cache.
template <bool V>
__device__ __forceinline__ int64_t key_offset(const KilnAttentionParams& p, const Seq& s, int64_t b, int j, int hk) {
	const int64_t token_stride = V ? p.v_token_stride : p.k_token_stride;
	const int64_t head_stride = V ? p.v_head_stride : p.k_head_stride;
	if (p.paged) {
		const int col = page_column(p, j);
		const int slot = j - col * (int)p.page_size;
		const int64_t page = page_entry(p, b, col);
		return page * (V ? p.v_page_stride : p.k_page_stride) + slot * token_stride + hk * head_stride;
	}
	return ((int64_t)s.kv_begin + j) * token_stride + hk * head_stride;
}

// ---- PTX (sm_80) ----------------------------------------------------------------------
//
// Under KILN_HOST_SIM (the host simulator of testdata/attentionsim, which
// defines the kiln_sim_* functions) these wrappers call the simulator's
// emulations instead of the instructions.

__device__ __forceinline__ uint32_t smem_u32(const void* ptr) { return (uint32_t)__cvta_generic_to_shared(ptr); }

// cp_async16 copies src_bytes (0 or 16) bytes from global src to shared dst
// (a shared-space address, smem_u32)
// and zero-fills the rest of the 16; both addresses 16-byte aligned (src must
// be a valid address even when src_bytes is 0: pass a tensor's base).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
#ifdef KILN_HOST_SIM
	kiln_sim_cp_async16(dst, src, src_bytes);
#else
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#ifdef KILN_HOST_SIM
	kiln_sim_cp_async_commit();
#else
	asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
#ifdef KILN_HOST_SIM
	kiln_sim_cp_async_wait(N);
#else
	asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

// ldmatrix_x4 loads four 8x8 b16 matrices: lanes 8i..8i+7 give the row
// addresses of matrix i (shared-space, 16-byte aligned; callers add constant
// byte offsets to one base address, which ptxas folds into the instruction), and register i receives row
// lane/4, columns 2(lane%4) and 2(lane%4)+1 of matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t smem_row) {
#ifdef KILN_HOST_SIM
	kiln_sim_ldmatrix_x4(r, smem_row, false);
#else
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(smem_row));
#endif
}

// ldmatrix_x4_trans is ldmatrix_x4 with each matrix transposed: register i
// receives rows 2(lane%4) and 2(lane%4)+1, column lane/4 of matrix i (the B
// operand of an mma from a [k][n] row-major tile).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t smem_row) {
#ifdef KILN_HOST_SIM
	kiln_sim_ldmatrix_x4(r, smem_row, true);
#else
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(smem_row));
#endif
}

// Mma<T>::run: c (16x8, F32) += a (16x16, row-major) · b (16x8, column-major),
// with g = lane/4, t = lane%4:
//   a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9]
//   b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g]
//   c[0] = C[g][2t], c[1] = C[g][2t+1], c[2] = C[g+8][2t], c[3] = C[g+8][2t+1]
// (two 16-bit values per register, the lower index in the low half).
template <typename T> struct Mma;
template <> struct Mma<f16> {
	static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef KILN_HOST_SIM
		kiln_sim_mma(false, c, a, b0, b1);
#else
		asm volatile(
		    "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
		    "{%0, %1, %2, %3};\n"
		    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
	}
};
template <> struct Mma<bf16> {
	static __device__ __forceinline__ void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef KILN_HOST_SIM
		kiln_sim_mma(true, c, a, b0, b1);
#else
		asm volatile(
		    "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
		    "{%0, %1, %2, %3};\n"
		    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
	}
};

// pack2 rounds two F32 values to T (nearest even) and packs them, lo in the
// low half.
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<f16>(float lo, float hi) {
	const __half2 h = __floats2half2_rn(lo, hi);
	return *reinterpret_cast<const uint32_t*>(&h);
}
template <> __device__ __forceinline__ uint32_t pack2<bf16>(float lo, float hi) {
	const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
	return *reinterpret_cast<const uint32_t*>(&h);
}

// store2 writes two consecutive output elements (d, d+1 < head_dim; the
// address 4-byte aligned).
template <typename T> __device__ __forceinline__ void store2(T* dst, float a, float b) {
	*reinterpret_cast<uint32_t*>(dst) = pack2<T>(a, b);
}

// ---- key tiles --------------------------------------------------------------------------

// ChunkLayout: how THREADS threads copy rows of D elements in 16-byte
// chunks: each thread always copies the same chunk column c (of kSlots, the
// next power of two at or above D/8; columns from D/8 on are idle) of rows
// r0, r0 + kRowStep, ..., so that its row and column offsets are a base plus
// constants.
template <int D, int THREADS> struct ChunkLayout {
	static constexpr int kChunks = D / 8;
	static constexpr int kSlots = kChunks <= 8 ? 8 : (kChunks <= 16 ? 16 : 32);
	static constexpr int kRowStep = THREADS / kSlots;
	static_assert(kChunks <= kSlots && THREADS % kSlots == 0, "chunk layout");
	static __device__ __forceinline__ int column(int rank) { return rank % kSlots; }
	static __device__ __forceinline__ int first_row(int rank) { return rank / kSlots; }
};

// load_keys copies the rows of keys n0 .. n0+ROWS−1 (KV head hk) of K (V
// false) or V (V true) into dst (shared-space address of ROWS rows of D + 8
// elements) with 16-byte cp.async, THREADS threads sharing the work (this
// one is `rank`); keys outside [lo, hi) and head dims from head_dim on are
// zero-filled. The caller commits and waits. Needs head_dim a multiple of 8
// and 16-byte aligned rows.
template <typename T, int D, int ROWS, int THREADS, bool V>
__device__ __forceinline__ void load_keys(const KilnAttentionParams& p, const Seq& s, int64_t b, int hk, int n0, int lo,
                                          int hi, uint32_t dst, int rank) {
	using L = ChunkLayout<D, THREADS>;
	static_assert(ROWS % L::kRowStep == 0, "rows per pass");
	const int c = L::column(rank), r0 = L::first_row(rank);
	if (c >= L::kChunks) return;
	const bool col_ok = 8 * c < p.head_dim;
	const T* base = reinterpret_cast<const T*>(V ? p.v : p.k);
	const uint32_t d0 = dst + (uint32_t)(r0 * (D + 8) + 8 * c) * (uint32_t)sizeof(T);
#pragma unroll
	for (int i = 0; i < ROWS / L::kRowStep; ++i) {
		const int j = n0 + r0 + L::kRowStep * i;
		const bool valid = col_ok && j >= lo && j < hi;
		const T* src = valid ? base + key_offset<V>(p, s, b, j, hk) + 8 * c : base;
		cp_async16(d0 + (uint32_t)(L::kRowStep * i * (D + 8) * sizeof(T)), src, valid ? 16 : 0);
	}
}

// ---- online softmax on mma fragments -------------------------------------------------------
//
// A warp's score tile is NT n-tiles of 16 rows × 8 keys in mma C layout:
// s[nt][2h + e] is row g + 8h, key 8nt + 2t + e. m[h] and l[h] are the
// running maximum (quad-reduced, so equal in the 4 lanes of a row) and this
// lane's share of the running sum of row g + 8h; acc[dt][2h + e] is row
// g + 8h, output column 8dt + 2t + e.

// softmax_step folds a tile of scaled, masked scores into (m, l, acc) and
// turns the scores into probabilities (exp2(s − m)).
template <int NT, int DT>
__device__ __forceinline__ void softmax_step(float (&s)[NT][4], float (&m)[2], float (&l)[2], float (&acc)[DT][4]) {
#pragma unroll
	for (int h = 0; h < 2; ++h) {
		float mx = m[h];
#pragma unroll
		for (int nt = 0; nt < NT; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * h], s[nt][2 * h + 1]));
		mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 1));
		mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, 2));
		const float m_use = mx == -INFINITY ? 0.0f : mx;
		const float alpha = exp2f(m[h] - m_use);  // 0 when m[h] was −inf
		m[h] = mx;
		float sum = 0.0f;
#pragma unroll
		for (int nt = 0; nt < NT; ++nt) {
			const float p0 = exp2f(s[nt][2 * h] - m_use), p1 = exp2f(s[nt][2 * h + 1] - m_use);
			s[nt][2 * h] = p0;
			s[nt][2 * h + 1] = p1;
			sum += p0 + p1;
		}
		l[h] = l[h] * alpha + sum;
#pragma unroll
		for (int dt = 0; dt < DT; ++dt) {
			acc[dt][2 * h] *= alpha;
			acc[dt][2 * h + 1] *= alpha;
		}
	}
}

// p_fragment is the mma A operand of keys 16kk .. 16kk+15 of a probability
// tile (rounded to T: the only rounding of the softmax).
template <typename T, int NT>
__device__ __forceinline__ void p_fragment(const float (&s)[NT][4], int kk, uint32_t (&a)[4]) {
	a[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
	a[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
	a[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
	a[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

// quad_sum adds a value over the 4 lanes of a fragment row.
__device__ __forceinline__ float quad_sum(float v) {
	v += __shfl_xor_sync(kFullMask, v, 1);
	v += __shfl_xor_sync(kFullMask, v, 2);
	return v;
}

// lse2_of is the log2-domain log-sum-exp of a finished row (−inf when it saw
// no key).
__device__ __forceinline__ float lse2_of(float m, float l) { return l > 0.0f ? m + log2f(l) : -INFINITY; }

}  // namespace attn
}  // namespace kiln
