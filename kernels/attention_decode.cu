// attention_decode.cu — FAST VARIANT, compiled, not yet run on a GPU: the
// attention kernel for decode (few queries per sequence, long contexts),
// F16 or BF16, split-KV ("flash-decoding") on tensor cores (mma.sync
// m16n8k16, F32 accumulators). See KilnAttentionParams in kiln_params.h for
// the layouts and the split workspace.
//
// Kernels: attention_<dt>_decode_d<D>, dt f16 or bf16, D the head dim the
// tile is built for (48, 64, 80, 96, 128, 160, 256; smaller head dims that
// are multiples of 8 are zero-padded, as in the prefill kernel).
//
// Work: block (x, y, z) takes sequence b = x / row_groups, KV head y and key
// split z. Its 16 rows are (query, head) pairs of the sequence's GQA group
// of KV head y, query-major: row ρ of row group x % row_groups is query
// ρ / G and head y·G + ρ % G (G = n_heads / n_kv_heads), so each K and V
// tile is read once for every query head that shares it and every query of
// the sequence (up to 16 rows; more queries or heads take more row groups).
// The split's keys (those the rows can see: causal and window bounds) are
// dealt out in tiles of 16 to the block's warps in turn; each warp keeps its
// own online softmax, with its own two shared-memory stages of K and V
// (cp.async, 16-byte chunks through the block table; only __syncwarp
// between them), so that the warps' loads stream independently. Per tile:
// S = Q·Kᵀ (16 × 16), the online softmax on the fragments, P rounded to the
// dtype, O += P·V (ldmatrix.trans). At the end the warps' states are merged
// through shared memory in warp order (deterministic), and the block writes
// either the output and log-sum-exp (n_splits = 1) or the split's
// normalised output and log2-domain log-sum-exp to the workspace, which
// attention_<dt>_combine merges.
//
// Faults: every block checks its sequence (recording a fault) and the pages
// of its split; a block whose sequence is bad writes nothing (the combine
// skips the sequence too); one whose pages are bad writes nothing without a
// split, and a NaN log-sum-exp for its rows with one (the combine then
// writes those rows as NaN: they depend on keys that could not be read).
#include "attention_common.cuh"

namespace kiln {
namespace attn {

constexpr int kDecodeRows = 16;  // (query, head) rows per block: one mma m-tile
constexpr int kDecodeKeys = 16;  // keys per warp tile

// Decode<T, D, WARPS, QREGS>: D the padded head dim, WARPS warps per block,
// QREGS whether Q's fragments stay in registers. Dynamic shared memory:
// (16 + WARPS·4·16)·(D + 8)·sizeof(T) bytes (Q, then per warp two stages
// of K and V); the Go launcher has the same table.
template <typename T, int D, int WARPS, bool QREGS> struct Decode {
	static constexpr int kThreads = 32 * WARPS;
	static constexpr int kPitch = D + 8;
	static constexpr uint32_t kRowBytes = kPitch * sizeof(T);
	static constexpr uint32_t kTileBytes = kDecodeKeys * kRowBytes;
	static constexpr int kKSteps = D / 16;
	static constexpr int kDT = D / 8;
	static_assert(D % 16 == 0, "tile shape");
	// The merge area (F32 accumulators, maxima and sums of every warp's
	// rows) reuses the K/V stages.
	static_assert(WARPS * kDecodeRows * (D + 2) * 4 <= WARPS * 4 * (int)kTileBytes, "merge area");

	static __device__ __forceinline__ void run(const KilnAttentionParams& p) {
		extern __shared__ __align__(16) unsigned char smem[];
		const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
		const int g = lane >> 2, t = lane & 3;
		const uint32_t qs = smem_u32(smem);
		const uint32_t stages = qs + kDecodeRows * kRowBytes;  // [warp][stage][K, V]
		const uint32_t my_stages = stages + warp * 4 * kTileBytes;

		const int b = (int)(blockIdx.x / p.row_groups);
		const int rg = (int)(blockIdx.x % p.row_groups);
		const int hk = blockIdx.y;
		const int split = blockIdx.z;
		const int group = p.n_heads / p.n_kv_heads;

		Seq s;
		if (!load_seq(p, b, s, threadIdx.x == 0)) return;
		const int rho0 = rg * kDecodeRows;
		const bool no_rows = rho0 >= s.q_len * group;
		if (no_rows && rg > 0) return;
		const int64_t split_lo = (int64_t)split * p.kv_per_split;
		if (split > 0 && split_lo >= s.kv_len) return;  // the combine does not read this split
		const int sb = (int)split_lo;
		const int se = (int)(split_lo + p.kv_per_split < s.kv_len ? split_lo + p.kv_per_split : s.kv_len);
		// Every page of the split's keys, even those no row sees, so that
		// the blocks of a sequence check all its pages.
		if (p.paged && sb < se && !check_pages(p, b, sb, se)) {
			// Recorded. A split's rows get a NaN log-sum-exp, so that the
			// combine writes NaN rows instead of merging stale workspace.
			if (p.n_splits > 1 && !no_rows) {
				for (int r = threadIdx.x; r < kDecodeRows; r += kThreads) {
					const int rho = rho0 + r, i = rho / group;
					if (i < s.q_len)
						reinterpret_cast<float*>(p.partial_lse)[((int64_t)split * p.total_q + s.q_begin + i) * p.n_heads +
						                                        hk * group + rho % group] = NAN;
				}
			}
			return;
		}
		if (no_rows) return;

		// The rows' queries and the keys they see in this split.
		const int offset = s.kv_len - s.q_len;
		const int i_min = rho0 / group;
		const int i_last = (rho0 + kDecodeRows - 1) / group;
		const int i_max = i_last < s.q_len - 1 ? i_last : s.q_len - 1;
		const KeyRange keys = visible_keys(p, s.kv_len, offset + i_min, offset + i_max);
		const KeyRange all = all_see(p, s.kv_len, offset + i_min, offset + i_max);
		const int kb = sb > keys.lo ? sb : keys.lo;
		const int ke = se < keys.hi ? se : keys.hi;

		// Q: row ρ0 + r is query (ρ0 + r) / G, head hk·G + (ρ0 + r) % G.
		{
			using L = ChunkLayout<D, kThreads>;
			const int c = L::column(threadIdx.x);
			if (c < L::kChunks) {
				const T* q = reinterpret_cast<const T*>(p.q);
				const bool col_ok = 8 * c < p.head_dim;
				for (int r = L::first_row(threadIdx.x); r < kDecodeRows; r += L::kRowStep) {
					const int rho = rho0 + r, i = rho / group, h = hk * group + rho % group;
					const bool valid = col_ok && i < s.q_len;
					const T* src = valid ? q + (int64_t)(s.q_begin + i) * p.q_token_stride + (int64_t)h * p.q_head_stride + 8 * c : q;
					cp_async16(qs + (uint32_t)(r * kPitch + 8 * c) * (uint32_t)sizeof(T), src, valid ? 16 : 0);
				}
			}
		}
		cp_async_commit();
		cp_async_wait<0>();
		__syncthreads();

		// This lane's two rows.
		bool row_in[2];
		int row_pos[2], row_q[2];
#pragma unroll
		for (int hh = 0; hh < 2; ++hh) {
			const int i = (rho0 + g + 8 * hh) / group;
			row_in[hh] = i < s.q_len;
			row_pos[hh] = offset + i;
			row_q[hh] = s.q_begin + i;
		}

		float acc[kDT][4];
#pragma unroll
		for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
			for (int e = 0; e < 4; ++e) acc[dt][e] = 0.0f;
		float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

		const uint32_t q_frag = qs + (lane & 15) * kRowBytes + 16 * (lane >> 4);
		const uint32_t k_frag = (8 * (lane >> 4) + (lane & 7)) * kRowBytes + 16 * ((lane >> 3) & 1);
		const uint32_t v_frag = ((lane & 7) + 8 * ((lane >> 3) & 1)) * kRowBytes + 16 * (lane >> 4);
		uint32_t qf[QREGS ? kKSteps : 1][4];
		if (QREGS) {
#pragma unroll
			for (int kstep = 0; kstep < kKSteps; ++kstep) ldmatrix_x4(qf[QREGS ? kstep : 0], q_frag + 32 * kstep);
		}
		const float* mask = reinterpret_cast<const float*>(p.mask);

		// This warp's tiles: kb rounded down to a tile, then every WARPS-th.
		const int first = kb / kDecodeKeys * kDecodeKeys + kDecodeKeys * warp;
		if (kb < ke && first < ke) {
			load_keys<T, D, kDecodeKeys, 32, false>(p, s, b, hk, first, kb, ke, my_stages, lane);
			load_keys<T, D, kDecodeKeys, 32, true>(p, s, b, hk, first, kb, ke, my_stages + kTileBytes, lane);
			cp_async_commit();
			int stage = 0;
#pragma unroll 1
			for (int n0 = first; n0 < ke; n0 += kDecodeKeys * WARPS) {
				const int next = n0 + kDecodeKeys * WARPS;
				if (next < ke) {
					const uint32_t dst = my_stages + (stage ^ 1) * 2 * kTileBytes;
					load_keys<T, D, kDecodeKeys, 32, false>(p, s, b, hk, next, kb, ke, dst, lane);
					load_keys<T, D, kDecodeKeys, 32, true>(p, s, b, hk, next, kb, ke, dst + kTileBytes, lane);
					cp_async_commit();
					cp_async_wait<1>();
				} else {
					cp_async_wait<0>();
				}
				__syncwarp();  // the lanes' copies of this tile are visible to the warp
				const uint32_t kt = my_stages + stage * 2 * kTileBytes, vt = kt + kTileBytes;

				float sc[2][4];
#pragma unroll
				for (int nt = 0; nt < 2; ++nt)
#pragma unroll
					for (int e = 0; e < 4; ++e) sc[nt][e] = 0.0f;
#pragma unroll
				for (int kstep = 0; kstep < kKSteps; ++kstep) {
					uint32_t a[4], bk[4];
					if (QREGS) {
#pragma unroll
						for (int e = 0; e < 4; ++e) a[e] = qf[QREGS ? kstep : 0][e];
					} else {
						ldmatrix_x4(a, q_frag + 32 * kstep);
					}
					ldmatrix_x4(bk, kt + k_frag + 32 * kstep);
					Mma<T>::run(sc[0], a, bk[0], bk[1]);
					Mma<T>::run(sc[1], a, bk[2], bk[3]);
				}
#pragma unroll
				for (int nt = 0; nt < 2; ++nt)
#pragma unroll
					for (int e = 0; e < 4; ++e) sc[nt][e] *= p.scale_log2;
				const bool whole = mask == nullptr && n0 >= kb && n0 + kDecodeKeys <= ke && n0 >= all.lo &&
				                   n0 + kDecodeKeys <= all.hi;
				if (!whole) {
#pragma unroll
					for (int hh = 0; hh < 2; ++hh) {
						if (!row_in[hh]) continue;  // zero Q, never stored
#pragma unroll
						for (int nt = 0; nt < 2; ++nt)
#pragma unroll
							for (int e = 0; e < 2; ++e) {
								const int j = n0 + 8 * nt + 2 * t + e;
								float& x = sc[nt][2 * hh + e];
								// Keys outside [kb, ke) belong to another split or
								// to no row: zero-filled, and hidden here.
								if (j < kb || j >= ke || !key_visible(p, j, s.kv_len, row_pos[hh]))
									x = -INFINITY;
								else if (mask != nullptr)
									x += mask[(int64_t)row_q[hh] * p.mask_row_stride + j] * kLog2e;
							}
					}
				}
				softmax_step<2, kDT>(sc, m, l, acc);

				uint32_t a[4];
				p_fragment<T, 2>(sc, 0, a);
#pragma unroll
				for (int dp = 0; dp < kKSteps; ++dp) {
					uint32_t bv[4];
					ldmatrix_x4_trans(bv, vt + v_frag + 32 * dp);
					Mma<T>::run(acc[2 * dp], a, bv[0], bv[1]);
					Mma<T>::run(acc[2 * dp + 1], a, bv[2], bv[3]);
				}
				__syncwarp();  // every lane is done with this stage before it is refilled
				stage ^= 1;
			}
		}

		// Merge the warps: accumulators, maxima and sums through shared
		// memory (the K/V stages, free once every warp is done).
		__syncthreads();
		float* red_acc = reinterpret_cast<float*>(smem + kDecodeRows * kRowBytes);  // [WARPS][16][D]
		float* red_m = red_acc + WARPS * kDecodeRows * D;                            // [WARPS][16]
		float* red_l = red_m + WARPS * kDecodeRows;                                  // [WARPS][16]
#pragma unroll
		for (int hh = 0; hh < 2; ++hh) {
			const int r = g + 8 * hh;
			const float sum = quad_sum(l[hh]);
			float* dst = red_acc + (warp * kDecodeRows + r) * D;
#pragma unroll
			for (int dt = 0; dt < kDT; ++dt) {
				dst[8 * dt + 2 * t] = acc[dt][2 * hh];
				dst[8 * dt + 2 * t + 1] = acc[dt][2 * hh + 1];
			}
			if (t == 0) {
				red_m[warp * kDecodeRows + r] = m[hh];
				red_l[warp * kDecodeRows + r] = sum;
			}
		}
		__syncthreads();

		T* o = reinterpret_cast<T*>(p.o);
		for (int idx = threadIdx.x; idx < kDecodeRows * D; idx += kThreads) {
			const int r = idx / D, d = idx % D;
			const int rho = rho0 + r, i = rho / group;
			if (i >= s.q_len || d >= p.head_dim) continue;
			float big = -INFINITY;
#pragma unroll
			for (int w = 0; w < WARPS; ++w) big = fmaxf(big, red_m[w * kDecodeRows + r]);
			float sum = 0.0f, out = 0.0f;
			if (big != -INFINITY) {
#pragma unroll
				for (int w = 0; w < WARPS; ++w) {
					const float scale = exp2f(red_m[w * kDecodeRows + r] - big);  // 0 for a warp that saw nothing
					sum += red_l[w * kDecodeRows + r] * scale;
					out += red_acc[(w * kDecodeRows + r) * D + d] * scale;
				}
			}
			out = sum > 0.0f ? out / sum : 0.0f;
			const int h = hk * group + rho % group;
			const int64_t row = (int64_t)s.q_begin + i;
			if (p.n_splits == 1) {
				o[row * p.o_token_stride + (int64_t)h * p.o_head_stride + d] = from_f32<T>(out);
				if (d == 0 && p.lse != 0) reinterpret_cast<float*>(p.lse)[h * p.lse_head_stride + row] = lse2_of(big, sum) * kLn2;
			} else {
				const int64_t at = ((int64_t)split * p.total_q + row) * p.n_heads + h;
				reinterpret_cast<float*>(p.partial_o)[at * p.head_dim + d] = out;
				if (d == 0) reinterpret_cast<float*>(p.partial_lse)[at] = lse2_of(big, sum);
			}
		}
	}
};

}  // namespace attn
}  // namespace kiln

// KILN_ATTENTION_DECODE(dt, T, D, WARPS, QREGS): one kernel; the Go
// launcher's decodeTiles table repeats D, WARPS and QREGS
// (TestAttentionTilesMatchSources).
#define KILN_ATTENTION_DECODE(NAME, T, D, WARPS, QREGS)                                                        \
	extern "C" __global__ void __launch_bounds__(32 * WARPS) attention_##NAME##_decode_d##D(const KilnAttentionParams p) { \
		kiln::attn::Decode<T, D, WARPS, QREGS>::run(p);                                                    \
	}

#define KILN_ATTENTION_DECODE_ALL(D, WARPS, QREGS)          \
	KILN_ATTENTION_DECODE(f16, f16, D, WARPS, QREGS)    \
	KILN_ATTENTION_DECODE(bf16, bf16, D, WARPS, QREGS)

// Q in registers for the small head dims only: decode is bound by the K/V
// reads, and fewer registers let more blocks (loads in flight) share an SM
// (ptxas sm_80: D = 128 takes 160 registers with Q in shared memory, 186
// with it in registers).
KILN_ATTENTION_DECODE_ALL(48, 4, true)
KILN_ATTENTION_DECODE_ALL(64, 4, true)
KILN_ATTENTION_DECODE_ALL(80, 4, true)
KILN_ATTENTION_DECODE_ALL(96, 4, false)
KILN_ATTENTION_DECODE_ALL(128, 4, false)
KILN_ATTENTION_DECODE_ALL(160, 2, false)
KILN_ATTENTION_DECODE_ALL(256, 2, false)
