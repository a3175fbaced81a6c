// attention_prefill.cu — FAST VARIANT, compiled, not yet run on a GPU: the
// attention kernel for prefill (many queries per sequence), F16 or BF16, in
// the FlashAttention-2 style on tensor cores (mma.sync m16n8k16, F32
// accumulators). See KilnAttentionParams in kiln_params.h for the layouts.
//
// Kernels: attention_<dt>_prefill_d<D>, dt f16 or bf16, D the head dim the
// tile is built for (48, 64, 80, 96, 128, 160, 256); a head dim below D
// (a multiple of 8: 40 runs in d48) is padded with zeros in shared memory.
//
// Work: block (x, y) takes tile x of 64 rows of Q (the packed rows of all
// sequences, last tiles first: under a causal mask they see the most keys)
// and query head y. The tile's rows may belong to several
// sequences; the block runs each sequence's part of the tile in turn (a
// "segment"), the rows of the other sequences zero and never stored. So the
// grid is sized by total_q, not by max_query_len, and a varlen batch wastes
// at most one partial tile per sequence.
//
// A segment: warp w owns rows 16w .. 16w+15 of the tile. Q is copied to
// shared memory once (cp.async) and, for D <= 80, kept in registers as mma
// A fragments (re-read with ldmatrix for every key tile otherwise). The keys the segment's queries can see (causal and window
// bounds: tiles above the diagonal or before the window are never loaded)
// are walked in tiles of BN keys, K and V loaded with 16-byte cp.async
// through the block table (any page size: each row's address is computed on
// its own), K of the next tile in flight during this tile's softmax and P·V,
// V of the next during the following Q·Kᵀ (FlashAttention-2's order, one
// buffer each). Per tile: S = Q·Kᵀ (ldmatrix.x4 of K), scale (and log2(e))
// folded in, masks applied only to tiles that need them, the online softmax
// on the accumulator fragments (row max and sum over the 4 lanes of a row),
// P rounded to the dtype as the A operand of P·V (ldmatrix.x4.trans of V).
// Shared rows are padded to D + 8 elements (an odd number of 16-byte units),
// so the 8 rows of every ldmatrix fall in 8 different bank groups.
//
// Faults: check_all (grid-wide) records any bad metadata; a segment whose
// sequence is bad, or that would read a page outside the cache, is skipped.
#include "attention_common.cuh"

namespace kiln {
namespace attn {

constexpr int kPrefillThreads = 128;  // 4 warps
constexpr int kPrefillRows = 64;      // query rows per tile, 16 per warp

// Prefill<T, D, BN, QREGS> is one tile configuration: D the padded head
// dim, BN keys per tile, QREGS whether Q's fragments stay in registers (the
// registers of D = 256 go to the accumulators instead; Q is re-read from
// shared memory there). Its dynamic shared memory is
// (64 + 2·BN)·(D + 8)·sizeof(T) bytes; the Go launcher has the same table.
template <typename T, int D, int BN, bool QREGS> struct Prefill {
	static constexpr int kPitch = D + 8;
	static constexpr int kKSteps = D / 16;  // k-steps of Q·Kᵀ; n-tile pairs of P·V
	static constexpr int kDT = D / 8;       // output n-tiles
	static constexpr int kNT = BN / 8;      // score n-tiles
	static_assert(D % 16 == 0 && BN % 16 == 0, "tile shape");

	static __device__ __forceinline__ void segment(const KilnAttentionParams& p, const Seq& s, int b, int h, int r0,
	                                               int row_lo, int row_hi, uint32_t qs, uint32_t ks, uint32_t vs) {
		const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
		const int g = lane >> 2, t = lane & 3;
		const int hk = h / (p.n_heads / p.n_kv_heads);
		const int offset = s.kv_len - s.q_len;  // position of the sequence's query 0
		const int pos_min = offset + (row_lo - s.q_begin), pos_max = offset + (row_hi - 1 - s.q_begin);
		const KeyRange keys = visible_keys(p, s.kv_len, pos_min, pos_max);
		const KeyRange all = all_see(p, s.kv_len, pos_min, pos_max);
		if (p.paged && keys.lo < keys.hi && !check_pages(p, b, keys.lo, keys.hi)) return;

		// Q's rows of this segment (others zero).
		{
			using L = ChunkLayout<D, kPrefillThreads>;
			const int c = L::column(threadIdx.x), rr = L::first_row(threadIdx.x);
			if (c < L::kChunks) {
				const T* q = reinterpret_cast<const T*>(p.q);
				const bool col_ok = 8 * c < p.head_dim;
				const uint32_t d0 = qs + (uint32_t)(rr * kPitch + 8 * c) * (uint32_t)sizeof(T);
#pragma unroll
				for (int i = 0; i < kPrefillRows / L::kRowStep; ++i) {
					const int row = r0 + rr + L::kRowStep * i;
					const bool valid = col_ok && row >= row_lo && row < row_hi;
					const T* src = valid ? q + (int64_t)row * p.q_token_stride + (int64_t)h * p.q_head_stride + 8 * c : q;
					cp_async16(d0 + (uint32_t)(L::kRowStep * i * kPitch * sizeof(T)), src, valid ? 16 : 0);
				}
			}
		}
		cp_async_commit();

		// This lane's two rows (g and g + 8 of the warp's 16).
		bool row_in[2];
		int row_pos[2];
#pragma unroll
		for (int hh = 0; hh < 2; ++hh) {
			const int row = r0 + 16 * warp + g + 8 * hh;
			row_in[hh] = row >= row_lo && row < row_hi;
			row_pos[hh] = offset + (row - s.q_begin);
		}

		float acc[kDT][4];
#pragma unroll
		for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
			for (int e = 0; e < 4; ++e) acc[dt][e] = 0.0f;
		float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

		if (keys.lo < keys.hi) {
			const int n_begin = keys.lo / BN * BN;
			load_keys<T, D, BN, kPrefillThreads, false>(p, s, b, hk, n_begin, keys.lo, keys.hi, ks, threadIdx.x);
			cp_async_commit();
			load_keys<T, D, BN, kPrefillThreads, true>(p, s, b, hk, n_begin, keys.lo, keys.hi, vs, threadIdx.x);
			cp_async_commit();
			cp_async_wait<1>();  // Q and the first K
			__syncthreads();

			// This lane's ldmatrix row addresses (bytes, shared space); each
			// fragment adds a constant offset. Q: A fragments of the warp's
			// rows; K: B fragments of key pairs of n-tiles; V: transposed B
			// fragments of d pairs of n-tiles.
			constexpr uint32_t kRowBytes = kPitch * sizeof(T);
			const uint32_t q_frag = qs + (16 * warp + (lane & 15)) * kRowBytes + 16 * (lane >> 4);
			const uint32_t k_frag = ks + (8 * (lane >> 4) + (lane & 7)) * kRowBytes + 16 * ((lane >> 3) & 1);
			const uint32_t v_frag = vs + ((lane & 7) + 8 * ((lane >> 3) & 1)) * kRowBytes + 16 * (lane >> 4);
			uint32_t qf[QREGS ? kKSteps : 1][4];
			if (QREGS) {
#pragma unroll
				for (int kstep = 0; kstep < kKSteps; ++kstep) ldmatrix_x4(qf[QREGS ? kstep : 0], q_frag + 32 * kstep);
			}
			const float* mask = reinterpret_cast<const float*>(p.mask);

#pragma unroll 1
			for (int n0 = n_begin; n0 < keys.hi; n0 += BN) {
				// S = Q·Kᵀ for this warp's 16 rows and the tile's BN keys.
				float sc[kNT][4];
#pragma unroll
				for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
					for (int e = 0; e < 4; ++e) sc[nt][e] = 0.0f;
#pragma unroll
				for (int kstep = 0; kstep < kKSteps; ++kstep) {
					uint32_t a[4];
					if (QREGS) {
#pragma unroll
						for (int e = 0; e < 4; ++e) a[e] = qf[QREGS ? kstep : 0][e];
					} else {
						ldmatrix_x4(a, q_frag + 32 * kstep);
					}
#pragma unroll
					for (int jp = 0; jp < BN / 16; ++jp) {
						uint32_t bk[4];
						ldmatrix_x4(bk, k_frag + 16 * jp * kRowBytes + 32 * kstep);
						Mma<T>::run(sc[2 * jp], a, bk[0], bk[1]);
						Mma<T>::run(sc[2 * jp + 1], a, bk[2], bk[3]);
					}
				}
				__syncthreads();  // every warp has read this K tile
				const bool more = n0 + BN < keys.hi;
				if (more) {
					load_keys<T, D, BN, kPrefillThreads, false>(p, s, b, hk, n0 + BN, keys.lo, keys.hi, ks, threadIdx.x);
					cp_async_commit();
				}

				// Scale; mask the tiles that need it (partly outside what
				// every row sees, or an additive mask).
				const bool whole = mask == nullptr && n0 >= all.lo && n0 + BN <= all.hi;
#pragma unroll
				for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
					for (int e = 0; e < 4; ++e) sc[nt][e] *= p.scale_log2;
				if (!whole) {
#pragma unroll
					for (int hh = 0; hh < 2; ++hh) {
						if (!row_in[hh]) continue;  // zero Q, never stored
						const int64_t mask_row = (int64_t)(r0 + 16 * warp + g + 8 * hh) * p.mask_row_stride;
#pragma unroll
						for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
							for (int e = 0; e < 2; ++e) {
								const int j = n0 + 8 * nt + 2 * t + e;
								float& x = sc[nt][2 * hh + e];
								if (!key_visible(p, j, s.kv_len, row_pos[hh]))
									x = -INFINITY;
								else if (mask != nullptr)
									x += mask[mask_row + j] * kLog2e;
							}
					}
				}
				softmax_step<kNT, kDT>(sc, m, l, acc);

				if (more)
					cp_async_wait<1>();  // this V tile (the next K may still fly)
				else
					cp_async_wait<0>();
				__syncthreads();

				// O += P·V.
#pragma unroll
				for (int kk = 0; kk < BN / 16; ++kk) {
					uint32_t a[4];
					p_fragment<T, kNT>(sc, kk, a);
#pragma unroll
					for (int dp = 0; dp < kKSteps; ++dp) {
						uint32_t bv[4];
						ldmatrix_x4_trans(bv, v_frag + 16 * kk * kRowBytes + 32 * dp);
						Mma<T>::run(acc[2 * dp], a, bv[0], bv[1]);
						Mma<T>::run(acc[2 * dp + 1], a, bv[2], bv[3]);
					}
				}
				__syncthreads();  // every warp has read this V tile
				if (more) {
					load_keys<T, D, BN, kPrefillThreads, true>(p, s, b, hk, n0 + BN, keys.lo, keys.hi, vs, threadIdx.x);
					cp_async_commit();
					cp_async_wait<1>();  // the next K
					__syncthreads();
				}
			}
		}
		cp_async_wait<0>();  // with no keys, Q's copy may still be in flight
		__syncthreads();      // shared memory is free for the next segment

		// O = acc / l, the log-sum-exp; rows of other sequences untouched.
		T* o = reinterpret_cast<T*>(p.o);
#pragma unroll
		for (int hh = 0; hh < 2; ++hh) {
			const float sum = quad_sum(l[hh]);
			if (!row_in[hh]) continue;
			const int row = r0 + 16 * warp + g + 8 * hh;
			const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
			T* o_row = o + (int64_t)row * p.o_token_stride + (int64_t)h * p.o_head_stride;
#pragma unroll
			for (int dt = 0; dt < kDT; ++dt) {
				const int d = 8 * dt + 2 * t;
				if (d < p.head_dim) store2<T>(o_row + d, acc[dt][2 * hh] * inv, acc[dt][2 * hh + 1] * inv);
			}
			if (p.lse != 0 && t == 0)
				reinterpret_cast<float*>(p.lse)[h * p.lse_head_stride + row] = lse2_of(m[hh], sum) * kLn2;
		}
	}

	static __device__ __forceinline__ void run(const KilnAttentionParams& p) {
		extern __shared__ __align__(16) unsigned char smem[];
		const uint32_t qs = smem_u32(smem);
		const uint32_t ks = qs + kPrefillRows * kPitch * sizeof(T);
		const uint32_t vs = ks + BN * kPitch * sizeof(T);
		check_all(p, grid_rank(), grid_size());

		// One tile and head per block (the launcher's grid is exactly
		// ⌈total_q/64⌉ × n_heads), last tiles first.
		const int r0 = (int)(gridDim.x - 1 - blockIdx.x) * kPrefillRows;
		const int h = blockIdx.y;
		for (int b = (int)find_sequence(p, r0); b < p.batch; ++b) {
			if (load_i32(p.q_starts, b) >= (int64_t)r0 + kPrefillRows) break;
			Seq s;
			if (!load_seq(p, b, s, false)) continue;  // check_all records it
			const int lo = r0 > s.q_begin ? r0 : s.q_begin;
			const int end = s.q_begin + s.q_len;
			const int hi = r0 + kPrefillRows < end ? r0 + kPrefillRows : end;
			if (lo >= hi) continue;
			segment(p, s, b, h, r0, lo, hi, qs, ks, vs);
		}
	}
};

}  // namespace attn
}  // namespace kiln

// KILN_ATTENTION_PREFILL(dt, T, D, BN, QREGS): one kernel; the Go launcher's
// prefillTiles table repeats D, BN and QREGS (TestAttentionTilesMatchSources).
#define KILN_ATTENTION_PREFILL(NAME, T, D, BN, QREGS)                                                          \
	extern "C" __global__ void __launch_bounds__(kiln::attn::kPrefillThreads)                                  \
	    attention_##NAME##_prefill_d##D(const KilnAttentionParams p) {                                         \
		kiln::attn::Prefill<T, D, BN, QREGS>::run(p);                                                      \
	}

#define KILN_ATTENTION_PREFILL_ALL(D, BN, QREGS)          \
	KILN_ATTENTION_PREFILL(f16, f16, D, BN, QREGS)    \
	KILN_ATTENTION_PREFILL(bf16, bf16, D, BN, QREGS)

// Q in registers only where that costs no spill and no occupancy (ptxas
// sm_80: D = 96 with Q in registers spills; D = 128 needs 210 registers
// instead of 166, so 2 blocks per SM instead of 3).
KILN_ATTENTION_PREFILL_ALL(48, 64, true)
KILN_ATTENTION_PREFILL_ALL(64, 64, true)
KILN_ATTENTION_PREFILL_ALL(80, 64, true)
KILN_ATTENTION_PREFILL_ALL(96, 64, false)
KILN_ATTENTION_PREFILL_ALL(128, 64, false)
KILN_ATTENTION_PREFILL_ALL(160, 64, false)
KILN_ATTENTION_PREFILL_ALL(256, 32, false)
