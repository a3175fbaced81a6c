// attention_wgmma.cu — FAST VARIANT, compiled, not yet run on a GPU: the
// attention kernel for prefill on Hopper (sm_90a only), F16 or BF16, in the
// FlashAttention-3 style: K and V tiles brought in by TMA
// (cp.async.bulk.tensor completing on mbarriers, two stages, one producer
// thread), S = Q·Kᵀ and O += P·V on warpgroup tensor cores (wgmma, F32
// accumulators). Same semantics as attention_prefill.cu (see
// KilnAttentionParams in kiln_params.h): varlen, paged or contiguous K/V,
// GQA, causal with a query offset, sliding window, additive mask, LSE, the
// error word.
//
// kiln:targets below makes scripts/ptx.sh build an sm_90a module; the
// compute_80 module is built too (every family has one) but holds no
// kernel: the kernels exist only where __CUDA_ARCH_FEAT_SM90_ALL is defined
// (sm_90a), and the Go dispatch picks them only when this family's sm_90a
// module loaded (planHopperPrefill).
// kiln:targets sm_90a
//
// Kernels: attention_<dt>_wgmma_d<D>, dt f16 or bf16, D = 64, 128, 256 (the
// head dim exactly; other head dims run in attention_prefill.cu).
//
// Work: block (x, y) takes tile x of 128 rows of Q (the packed rows of all
// sequences, last tiles first) and query head y, and runs each sequence's
// part of the tile in turn (a "segment"), as attention_prefill.cu does.
// Threads: warpgroups 0 and 1 are the consumers (64 rows each: wgmma's M),
// warpgroup 2 the producer (its thread 0 issues the TMA copies; a whole
// warpgroup so that setmaxnreg can give its registers to the consumers);
// 384 threads.
//
// Shared memory (dynamic, its base rounded up to 1024 bytes, which the
// 128-byte swizzle pattern needs): Q, then K and V of two stages, then the
// mbarriers. Every tile is stored as D/64 column blocks of ROWS rows of 128
// bytes (64 elements) in the 128-byte swizzle layout (the 16-byte unit u of
// row r at unit u XOR (r mod 8)): what TMA writes with
// CU_TENSOR_MAP_SWIZZLE_128B and a box of 64 elements, and the canonical
// layout wgmma reads with a 128-byte-swizzle matrix descriptor — K-major
// for Q (A) and K (B), MN-major (the transpose bit) for V (B).
//
// Pipeline, per key tile of BN keys: the producer waits until the stage is
// empty (mbarrier empty[s], the 256 consumer threads arrive after their
// P·V completed), arms full_k[s] and full_v[s] with the byte counts of the
// K and V tiles (arrive.expect_tx) and issues their copies; the consumers
// wait on full_k[s], compute S with wgmma, do the online softmax on the
// accumulator fragments in registers, wait on full_v[s], round P to T in
// registers as the A operand of P·V (the accumulator layout of S is the A
// fragment layout of P), and arrive on empty[s]. Key tiles above the
// causal diagonal or before the window of the whole segment are never
// loaded.
//
// TMA tensor maps (encoded on the host per call, passed by value):
//   contiguous K/V: rank 3 (head dim, KV heads, tokens), box (64, 1, BN);
//     a key tile is one box per column block at token kv_begin + n0
//     (tokens past the tensor are zero-filled);
//   paged K/V: rank 4 (head dim, KV heads, page size, pages), box (64, 1,
//     R, 1) with R = min(BN, page size), which divides both BN and the
//     page size and is a multiple of 8 (the planner checks): a tile is
//     BN/R boxes per column block, each inside one page. A box whose keys
//     are all outside the segment's visible keys reads slot 0 of page 0
//     (a real page; its block-table entry, which may be anything, is never
//     read), not a page past the map: the ISA does not say that a box
//     wholly outside the tensor completes its transaction bytes.
// Keys inside a box but not visible are masked to −inf in S; because their
// rows of V may hold anything (unwritten cache slots, other sequences,
// recycled pages, NaN) and 0·NaN is NaN, the consumers zero the rows of V
// outside the segment's visible keys in its first and last tiles before
// P·V.
//
// Faults: as attention_prefill.cu (check_all grid-wide; a segment whose
// pages are bad is skipped).
#include "attention_common.cuh"

// KilnTensorMap is a CUtensorMap: 128 opaque bytes, 64-byte aligned,
// passed as a __grid_constant__ parameter (the TMA instructions take its
// generic address). On the host simulator it holds the fake driver's
// layout (cuda.FakeTensorMap).
struct __align__(64) KilnTensorMap {
	unsigned long long opaque[16];
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL) || defined(KILN_HOST_SIM)

namespace kiln {
namespace attn {

constexpr int kWgmmaConsumers = 2;                         // consumer warpgroups
constexpr int kWgmmaThreads = 384;  // the consumers and the producer warpgroup
constexpr int kWgmmaRows = 128;     // query rows per block, 64 per consumer warpgroup
static_assert(kWgmmaThreads == 128 * (kWgmmaConsumers + 1) && kWgmmaRows == 64 * kWgmmaConsumers, "block shape");
constexpr int kWgmmaStages = 2;

// ---- PTX (sm_90a) ----------------------------------------------------------------------

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
#ifdef KILN_HOST_SIM
	kiln_sim_mbar_init(bar, count);
#else
	asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
#endif
}

// mbar_init_fence makes the initialised mbarriers visible to the async
// proxy (TMA) and the other threads (with the __syncthreads after it).
__device__ __forceinline__ void mbar_init_fence() {
#ifndef KILN_HOST_SIM
	asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

// mbar_arrive_expect_tx: this thread's arrival, with tx_bytes more bytes
// for the current phase to wait for.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t tx_bytes) {
#ifdef KILN_HOST_SIM
	kiln_sim_mbar_arrive(bar, tx_bytes);
#else
	asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(tx_bytes) : "memory");
#endif
}

__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
#ifdef KILN_HOST_SIM
	kiln_sim_mbar_arrive(bar, 0);
#else
	asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
#endif
}

// mbar_wait waits until the phase of the given parity has completed (the
// current phase, or the one before it: waiting for the parity of the phase
// before the first returns at once).
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
#ifdef KILN_HOST_SIM
	kiln_sim_mbar_wait(bar, parity);
#else
	uint32_t done;
	do {
		asm volatile(
		    "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
		    : "=r"(done)
		    : "r"(bar), "r"(parity)
		    : "memory");
	} while (!done);
#endif
}

// tma_load_3d / tma_load_4d copy the box at the given coordinates (element
// indices, innermost first) of the tensor map to shared memory dst
// (1024-byte aligned here) and complete its bytes on mbarrier bar.
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const KilnTensorMap* map, int c0, int c1, int c2, uint32_t bar) {
#ifdef KILN_HOST_SIM
	const int c[4] = {c0, c1, c2, 0};
	kiln_sim_tma_load(dst, map, 3, c, bar);
#else
	asm volatile(
	    "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(
	        dst),
	    "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
	    : "memory");
#endif
}
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const KilnTensorMap* map, int c0, int c1, int c2, int c3,
                                            uint32_t bar) {
#ifdef KILN_HOST_SIM
	const int c[4] = {c0, c1, c2, c3};
	kiln_sim_tma_load(dst, map, 4, c, bar);
#else
	asm volatile(
	    "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
	    "[%6];\n" ::"r"(dst),
	    "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
	    : "memory");
#endif
}

// fence_proxy_async orders this thread's generic-proxy writes to shared
// memory (cp.async, stores) before later async-proxy reads (wgmma, TMA).
__device__ __forceinline__ void fence_proxy_async() {
#ifndef KILN_HOST_SIM
	asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// st_shared_zero16 stores 16 zero bytes at shared address dst.
__device__ __forceinline__ void st_shared_zero16(uint32_t dst) {
#ifdef KILN_HOST_SIM
	kiln_sim_st_shared_zero16(dst);
#else
	asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(dst), "r"(0) : "memory");
#endif
}

// set_max_registers moves registers from the producer warpgroup (which
// needs few) to the consumers (setmaxnreg; 40 + 2·232 per thread-slot of
// the 3 warpgroups fits the 64 Ki registers of an SM).
template <bool PRODUCER> __device__ __forceinline__ void set_max_registers() {
#ifndef KILN_HOST_SIM
	if (PRODUCER)
		asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
	else
		asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
#endif
}

// named_barrier: bar.sync on barrier id (1..15) for n_threads threads.
__device__ __forceinline__ void named_barrier(int id, int n_threads) {
#ifdef KILN_HOST_SIM
	kiln_sim_named_barrier(id, n_threads);
#else
	asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n_threads) : "memory");
#endif
}

__device__ __forceinline__ void wgmma_fence() {
#ifndef KILN_HOST_SIM
	asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#ifdef KILN_HOST_SIM
	kiln_sim_wgmma_commit();
#else
	asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_wait0() {
#ifdef KILN_HOST_SIM
	kiln_sim_wgmma_wait(0);
#else
	asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
}

// fence_regs keeps the compiler from moving reads or writes of an
// accumulator across the wgmma that owns it.
template <int NT> __device__ __forceinline__ void fence_regs(float (&d)[NT][4]) {
#ifndef KILN_HOST_SIM
#pragma unroll
	for (int i = 0; i < NT; ++i)
#pragma unroll
		for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[i][e])::"memory");
#endif
}

// smem_desc is a wgmma matrix descriptor for 128-byte swizzled canonical
// layouts: start address, leading and stride dimension byte offsets (all
// encoded >> 4, 14 bits), base offset 0 (every swizzle pattern starts on
// 1024 bytes here), swizzle mode 1 (128 bytes) in bits 62-63.
__device__ __forceinline__ uint64_t smem_desc(uint32_t start, uint32_t lead_bytes, uint32_t stride_bytes) {
	return (uint64_t)((start & 0x3FFFF) >> 4) | (uint64_t)((lead_bytes & 0x3FFFF) >> 4) << 16 |
	       (uint64_t)((stride_bytes & 0x3FFFF) >> 4) << 32 | (uint64_t)1 << 62;
}

// WgmmaSS<T, N>::run: d (64×N, F32, the accumulator fragments: d[j][e] is
// row 16·(warp%4) + lane/4 + 8·(e/2), column 8j + 2·(lane%4) + e%2) =
// A·B (+ d when scale_d), A 64×16 and B 16×N from shared memory
// (descriptors; both K-major). WgmmaRS<T, N>::run: d += A·B, A from
// registers (a[0..3]: the mma.sync m16n8k16 A fragment of the warp's 16
// rows), B from shared memory, MN-major (the transpose bit set).
template <typename T, int N> struct WgmmaSS;
template <typename T, int N> struct WgmmaRS;

#ifdef KILN_HOST_SIM
template <typename T, int N> struct WgmmaSS {
	static void run(float (&d)[N / 8][4], uint64_t desc_a, uint64_t desc_b, int scale_d) {
		kiln_sim_wgmma(std::is_same<T, bf16>::value, N, &d[0][0], nullptr, desc_a, desc_b, scale_d != 0, false);
	}
};
template <typename T, int N> struct WgmmaRS {
	static void run(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t desc_b) {
		kiln_sim_wgmma(std::is_same<T, bf16>::value, N, &d[0][0], a, 0, desc_b, true, true);
	}
};
#else
template <> struct WgmmaSS<f16, 64> {
	static __device__ __forceinline__ void run(float (&d)[8][4], uint64_t desc_a, uint64_t desc_b, int scale_d) {
		asm volatile(
		    "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
		    "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {"
		    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
		    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
		    "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
		    : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		      "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
		      "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
		      "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
		    : "l"(desc_a), "l"(desc_b), "r"(scale_d));
	}
};
template <> struct WgmmaSS<f16, 128> {
	static __device__ __forceinline__ void run(float (&d)[16][4], uint64_t desc_a, uint64_t desc_b, int scale_d) {
		asm volatile(
		    "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
		    "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
		    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
		    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
		    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
		    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
		    "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
		    : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		      "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
		      "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
		      "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
		      "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
		      "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
		      "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
		      "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
		    : "l"(desc_a), "l"(desc_b), "r"(scale_d));
	}
};
template <> struct WgmmaSS<bf16, 64> {
	static __device__ __forceinline__ void run(float (&d)[8][4], uint64_t desc_a, uint64_t desc_b, int scale_d) {
		asm volatile(
		    "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
		    "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
		    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
		    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
		    "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
		    : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		      "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
		      "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
		      "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
		    : "l"(desc_a), "l"(desc_b), "r"(scale_d));
	}
};
template <> struct WgmmaSS<bf16, 128> {
	static __device__ __forceinline__ void run(float (&d)[16][4], uint64_t desc_a, uint64_t desc_b, int scale_d) {
		asm volatile(
		    "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
		    "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
		    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
		    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
		    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
		    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
		    "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
		    : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		      "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
		      "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
		      "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
		      "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
		      "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
		      "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
		      "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
		    : "l"(desc_a), "l"(desc_b), "r"(scale_d));
	}
};
template <> struct WgmmaRS<f16, 64> {
	static __device__ __forceinline__ void run(float (&d)[8][4], const uint32_t (&a)[4], uint64_t desc_b) {
		asm volatile(
		    "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
		    "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {"
		    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
		    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
		    "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
		    : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		      "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
		      "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
		      "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
		    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
	}
};
template <> struct WgmmaRS<f16, 128> {
	static __device__ __forceinline__ void run(float (&d)[16][4], const uint32_t (&a)[4], uint64_t desc_b) {
		asm volatile(
		    "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
		    "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
		    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
		    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
		    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
		    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
		    "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
		    : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		      "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
		      "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
		      "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
		      "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
		      "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
		      "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
		      "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
		    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
	}
};
template <> struct WgmmaRS<f16, 256> {
	static __device__ __forceinline__ void run(float (&d)[32][4], const uint32_t (&a)[4], uint64_t desc_b) {
		asm volatile(
		    "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
		    "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {"
		    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
		    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
		    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
		    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
		    "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
		    "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
		    "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
		    "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
		    "}, {%128, %129, %130, %131}, %132, p, 1, 1, 1;\n}\n"
		    : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		      "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
		      "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
		      "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
		      "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
		      "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
		      "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
		      "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3]),
		      "+f"(d[16][0]), "+f"(d[16][1]), "+f"(d[16][2]), "+f"(d[16][3]), "+f"(d[17][0]), "+f"(d[17][1]), "+f"(d[17][2]), "+f"(d[17][3]),
		      "+f"(d[18][0]), "+f"(d[18][1]), "+f"(d[18][2]), "+f"(d[18][3]), "+f"(d[19][0]), "+f"(d[19][1]), "+f"(d[19][2]), "+f"(d[19][3]),
		      "+f"(d[20][0]), "+f"(d[20][1]), "+f"(d[20][2]), "+f"(d[20][3]), "+f"(d[21][0]), "+f"(d[21][1]), "+f"(d[21][2]), "+f"(d[21][3]),
		      "+f"(d[22][0]), "+f"(d[22][1]), "+f"(d[22][2]), "+f"(d[22][3]), "+f"(d[23][0]), "+f"(d[23][1]), "+f"(d[23][2]), "+f"(d[23][3]),
		      "+f"(d[24][0]), "+f"(d[24][1]), "+f"(d[24][2]), "+f"(d[24][3]), "+f"(d[25][0]), "+f"(d[25][1]), "+f"(d[25][2]), "+f"(d[25][3]),
		      "+f"(d[26][0]), "+f"(d[26][1]), "+f"(d[26][2]), "+f"(d[26][3]), "+f"(d[27][0]), "+f"(d[27][1]), "+f"(d[27][2]), "+f"(d[27][3]),
		      "+f"(d[28][0]), "+f"(d[28][1]), "+f"(d[28][2]), "+f"(d[28][3]), "+f"(d[29][0]), "+f"(d[29][1]), "+f"(d[29][2]), "+f"(d[29][3]),
		      "+f"(d[30][0]), "+f"(d[30][1]), "+f"(d[30][2]), "+f"(d[30][3]), "+f"(d[31][0]), "+f"(d[31][1]), "+f"(d[31][2]), "+f"(d[31][3])
		    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
	}
};
template <> struct WgmmaRS<bf16, 64> {
	static __device__ __forceinline__ void run(float (&d)[8][4], const uint32_t (&a)[4], uint64_t desc_b) {
		asm volatile(
		    "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
		    "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
		    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
		    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
		    "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
		    : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		      "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
		      "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
		      "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
		    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
	}
};
template <> struct WgmmaRS<bf16, 128> {
	static __device__ __forceinline__ void run(float (&d)[16][4], const uint32_t (&a)[4], uint64_t desc_b) {
		asm volatile(
		    "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
		    "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
		    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
		    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
		    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
		    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
		    "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
		    : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		      "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
		      "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
		      "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
		      "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
		      "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
		      "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
		      "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
		    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
	}
};
template <> struct WgmmaRS<bf16, 256> {
	static __device__ __forceinline__ void run(float (&d)[32][4], const uint32_t (&a)[4], uint64_t desc_b) {
		asm volatile(
		    "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
		    "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {"
		    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
		    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
		    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
		    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
		    "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
		    "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
		    "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
		    "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
		    "}, {%128, %129, %130, %131}, %132, p, 1, 1, 1;\n}\n"
		    : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
		      "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
		      "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
		      "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]),
		      "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]),
		      "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
		      "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
		      "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3]),
		      "+f"(d[16][0]), "+f"(d[16][1]), "+f"(d[16][2]), "+f"(d[16][3]), "+f"(d[17][0]), "+f"(d[17][1]), "+f"(d[17][2]), "+f"(d[17][3]),
		      "+f"(d[18][0]), "+f"(d[18][1]), "+f"(d[18][2]), "+f"(d[18][3]), "+f"(d[19][0]), "+f"(d[19][1]), "+f"(d[19][2]), "+f"(d[19][3]),
		      "+f"(d[20][0]), "+f"(d[20][1]), "+f"(d[20][2]), "+f"(d[20][3]), "+f"(d[21][0]), "+f"(d[21][1]), "+f"(d[21][2]), "+f"(d[21][3]),
		      "+f"(d[22][0]), "+f"(d[22][1]), "+f"(d[22][2]), "+f"(d[22][3]), "+f"(d[23][0]), "+f"(d[23][1]), "+f"(d[23][2]), "+f"(d[23][3]),
		      "+f"(d[24][0]), "+f"(d[24][1]), "+f"(d[24][2]), "+f"(d[24][3]), "+f"(d[25][0]), "+f"(d[25][1]), "+f"(d[25][2]), "+f"(d[25][3]),
		      "+f"(d[26][0]), "+f"(d[26][1]), "+f"(d[26][2]), "+f"(d[26][3]), "+f"(d[27][0]), "+f"(d[27][1]), "+f"(d[27][2]), "+f"(d[27][3]),
		      "+f"(d[28][0]), "+f"(d[28][1]), "+f"(d[28][2]), "+f"(d[28][3]), "+f"(d[29][0]), "+f"(d[29][1]), "+f"(d[29][2]), "+f"(d[29][3]),
		      "+f"(d[30][0]), "+f"(d[30][1]), "+f"(d[30][2]), "+f"(d[30][3]), "+f"(d[31][0]), "+f"(d[31][1]), "+f"(d[31][2]), "+f"(d[31][3])
		    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
	}
};
#endif  // KILN_HOST_SIM

// ---- the kernel ---------------------------------------------------------------------------

// Wgmma<T, D, BN> is one configuration: D the head dim, BN keys per tile.
// Dynamic shared memory: 1024 (alignment slack) + (128·D + 2·2·BN·D)·2
// bytes + 64 for the mbarriers; the Go launcher has the same formula.
template <typename T, int D, int BN> struct Wgmma {
	static constexpr int kBlocks = D / 64;             // 64-element column blocks
	static constexpr int kQBytes = kWgmmaRows * D * 2;  // Q tile
	static constexpr int kKVBytes = BN * D * 2;         // one K or V tile
	static constexpr int kNT = BN / 8;                  // score n-tiles
	static constexpr int kDT = D / 8;                   // output n-tiles
	static_assert(D % 64 == 0 && BN % 64 == 0, "tile shape");

	// Smem: the shared-space addresses, all from Q's (computed, not kept
	// in arrays: a stage index is a runtime value, and an array indexed by
	// it would live in local memory).
	struct Smem {
		uint32_t q;
		__device__ __forceinline__ uint32_t k(int st) const { return q + kQBytes + st * kKVBytes; }
		__device__ __forceinline__ uint32_t v(int st) const { return q + kQBytes + (kWgmmaStages + st) * kKVBytes; }
		// full_k(s), full_v(s): K, V of stage s landed; empty(s): stage s
		// consumed. 8 bytes each, 48 of the 64 reserved.
		__device__ __forceinline__ uint32_t full_k(int st) const { return q + kQBytes + 2 * kWgmmaStages * kKVBytes + 8 * st; }
		__device__ __forceinline__ uint32_t full_v(int st) const { return full_k(st) + 8 * kWgmmaStages; }
		__device__ __forceinline__ uint32_t empty(int st) const { return full_k(st) + 16 * kWgmmaStages; }
	};

	// issue_tile (the producer thread): the copies of key tile n0 .. n0+BN−1
	// of sequence b into stage s, K's bytes armed on full_k[s], V's on
	// full_v[s] (so that S = Q·Kᵀ can start before V lands).
	static __device__ __forceinline__ void issue_tile(const KilnAttentionParams& p, const Seq& s, int b, int hk, int n0,
	                                                  const KeyRange& keys, const Smem& sm, int st,
	                                                  const KilnTensorMap* map_k, const KilnTensorMap* map_v) {
		mbar_arrive_expect_tx(sm.full_k(st), kKVBytes);
		mbar_arrive_expect_tx(sm.full_v(st), kKVBytes);
		if (!p.paged) {
			const int token = s.kv_begin + n0;
#pragma unroll
			for (int c = 0; c < kBlocks; ++c) {
				tma_load_3d(sm.k(st) + c * BN * 128, map_k, 64 * c, hk, token, sm.full_k(st));
				tma_load_3d(sm.v(st) + c * BN * 128, map_v, 64 * c, hk, token, sm.full_v(st));
			}
			return;
		}
		const int rows = BN < p.page_size ? BN : (int)p.page_size;  // R: divides BN and the page size
		for (int r = 0; r < BN; r += rows) {
			const int j = n0 + r;  // the box's first key
			// A box none of whose keys is visible still has to deliver its
			// bytes (the barrier was armed for the whole tile): it reads page
			// 0, slot 0, a real page, rather than a page past the map. (Whether
			// a box wholly outside the tensor completes its transaction bytes
			// is not stated by the PTX ISA.) Those keys are masked to −inf and
			// those V rows zeroed before P·V, so what the page holds is unused.
			int page = 0, slot = 0;
			if (j + rows > keys.lo && j < keys.hi) {
				const int col = page_column(p, j);
				page = (int)page_entry(p, b, col);  // checked by check_pages
				slot = j - col * (int)p.page_size;
			}
#pragma unroll
			for (int c = 0; c < kBlocks; ++c) {
				tma_load_4d(sm.k(st) + c * BN * 128 + r * 128, map_k, 64 * c, hk, slot, page, sm.full_k(st));
			}
#pragma unroll
			for (int c = 0; c < kBlocks; ++c) {
				tma_load_4d(sm.v(st) + c * BN * 128 + r * 128, map_v, 64 * c, hk, slot, page, sm.full_v(st));
			}
		}
	}

	template <bool PRODUCER>
	static __device__ __forceinline__ void segment(const KilnAttentionParams& p, const Seq& s, int b, int h, int r0,
	                                               int row_lo, int row_hi, const Smem& sm, int& tile_count,
	                                               const KilnTensorMap* map_k, const KilnTensorMap* map_v) {
		const int tid = threadIdx.x, wg = tid / 128, lane = tid & 31, warp_in_wg = (tid / 32) & 3;
		const int g = lane >> 2, t = lane & 3;
		const int hk = h / (p.n_heads / p.n_kv_heads);
		const int offset = s.kv_len - s.q_len;  // position of the sequence's query 0
		const int pos_min = offset + (row_lo - s.q_begin), pos_max = offset + (row_hi - 1 - s.q_begin);
		const KeyRange keys = visible_keys(p, s.kv_len, pos_min, pos_max);
		const KeyRange all = all_see(p, s.kv_len, pos_min, pos_max);
		if (p.paged && keys.lo < keys.hi && !check_pages(p, b, keys.lo, keys.hi)) return;  // every thread
		const int n_begin = keys.lo / BN * BN;
		const int n_tiles = keys.lo < keys.hi ? (keys.hi - n_begin + BN - 1) / BN : 0;

		if (PRODUCER) {
			// The producer: thread 0 of the last warpgroup.
			if (tid == 128 * kWgmmaConsumers) {
				for (int i = 0; i < n_tiles; ++i) {
					const int it = tile_count + i, st = it % kWgmmaStages;
					mbar_wait(sm.empty(st), ((it / kWgmmaStages) & 1) ^ 1);
					issue_tile(p, s, b, hk, n_begin + i * BN, keys, sm, st, map_k, map_v);
				}
			}
			__syncwarp();  // the warp meets again before the next block-wide barrier
			tile_count += n_tiles;
			return;
		}

		// A consumer warpgroup: rows 64·wg .. 64·wg+63 of the tile. Q's rows
		// of this segment (others zero) into the swizzled layout, once the
		// whole warpgroup is past the previous segment's wgmmas.
		named_barrier(1 + wg, 128);
		{
			const T* q = reinterpret_cast<const T*>(p.q);
			const int tw = tid & 127;
#pragma unroll 4
			for (int i = tw; i < 64 * (D / 8); i += 128) {
				const int rr = 64 * wg + i / (D / 8), ch = i % (D / 8);
				const int row = r0 + rr;
				const bool valid = row >= row_lo && row < row_hi;
				const T* src = valid ? q + (int64_t)row * p.q_token_stride + (int64_t)h * p.q_head_stride + 8 * ch : q;
				const uint32_t dst = sm.q + (ch / 8) * (kWgmmaRows * 128) + rr * 128 + (((ch % 8) ^ (rr % 8)) * 16);
				cp_async16(dst, src, valid ? 16 : 0);
			}
			cp_async_commit();
			cp_async_wait<0>();
			fence_proxy_async();
			named_barrier(1 + wg, 128);
		}

		bool row_in[2];
		int row_pos[2];
#pragma unroll
		for (int hh = 0; hh < 2; ++hh) {
			const int row = r0 + 64 * wg + 16 * warp_in_wg + g + 8 * hh;
			row_in[hh] = row >= row_lo && row < row_hi;
			row_pos[hh] = offset + (row - s.q_begin);
		}
		float acc[kDT][4];
#pragma unroll
		for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
			for (int e = 0; e < 4; ++e) acc[dt][e] = 0.0f;
		float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
		const float* mask = reinterpret_cast<const float*>(p.mask);

#pragma unroll 1
		for (int i = 0; i < n_tiles; ++i) {
			const int it = tile_count + i, st = it % kWgmmaStages;
			const int n0 = n_begin + i * BN;
			const uint32_t parity = (it / kWgmmaStages) & 1;
			mbar_wait(sm.full_k(st), parity);

			// S = Q·Kᵀ: D/16 k-steps of 16; within a column block the
			// descriptor's start moves by 32 bytes per k-step (the swizzle
			// is applied to the address), between blocks by a block.
			float sc[kNT][4];
			fence_regs(sc);
			wgmma_fence();
#pragma unroll
			for (int ks = 0; ks < D / 16; ++ks) {
				const uint32_t qa = sm.q + (ks / 4) * (kWgmmaRows * 128) + wg * 64 * 128 + (ks % 4) * 32;
				const uint32_t kb = sm.k(st) + (ks / 4) * (BN * 128) + (ks % 4) * 32;
				WgmmaSS<T, BN>::run(sc, smem_desc(qa, 16, 1024), smem_desc(kb, 16, 1024), ks > 0);
			}
			wgmma_commit();
			wgmma_wait0();
			fence_regs(sc);

			// Scale; mask the tiles that need it.
			const bool whole = mask == nullptr && n0 >= all.lo && n0 + BN <= all.hi;
#pragma unroll
			for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
				for (int e = 0; e < 4; ++e) sc[nt][e] *= p.scale_log2;
			if (!whole) {
#pragma unroll
				for (int hh = 0; hh < 2; ++hh) {
					if (!row_in[hh]) continue;  // zero Q, never stored
					const int64_t mask_row = (int64_t)(r0 + 64 * wg + 16 * warp_in_wg + g + 8 * hh) * p.mask_row_stride;
#pragma unroll
					for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
						for (int e = 0; e < 2; ++e) {
							const int j = n0 + 8 * nt + 2 * t + e;
							float& x = sc[nt][2 * hh + e];
							if (j < keys.lo || !key_visible(p, j, s.kv_len, row_pos[hh]))
								x = -INFINITY;
							else if (mask != nullptr)
								x += mask[mask_row + j] * kLog2e;
						}
				}
			}
			softmax_step<kNT, kDT>(sc, m, l, acc);

			mbar_wait(sm.full_v(st), parity);
			// The first and last tiles: zero V's rows outside the visible
			// keys (both warpgroups share the work, then meet).
			if (n0 < keys.lo || n0 + BN > keys.hi) {
				for (int e = tid; e < kBlocks * BN * 8; e += 128 * kWgmmaConsumers) {
					const int c = e / (BN * 8), r = (e / 8) % BN, u = e % 8;
					if (n0 + r < keys.lo || n0 + r >= keys.hi) st_shared_zero16(sm.v(st) + c * BN * 128 + r * 128 + u * 16);
				}
				fence_proxy_async();
				named_barrier(3, 128 * kWgmmaConsumers);
			}

			// O += P·V: BN/16 k-steps of 16 keys (2048 bytes of V each);
			// N = D spans the column blocks, LBO apart. P's fragments are
			// all made first, so that no register a wgmma reads is written
			// while the batch is in flight.
			uint32_t pa[BN / 16][4];
#pragma unroll
			for (int kk = 0; kk < BN / 16; ++kk) p_fragment<T, kNT>(sc, kk, pa[kk]);
			fence_regs(acc);
			wgmma_fence();
#pragma unroll
			for (int kk = 0; kk < BN / 16; ++kk) WgmmaRS<T, D>::run(acc, pa[kk], smem_desc(sm.v(st) + kk * 2048, BN * 128, 1024));
			wgmma_commit();
			wgmma_wait0();
			fence_regs(acc);
			mbar_arrive(sm.empty(st));
		}
		tile_count += n_tiles;

		// O = acc / l, the log-sum-exp; rows of other sequences untouched.
		T* o = reinterpret_cast<T*>(p.o);
#pragma unroll
		for (int hh = 0; hh < 2; ++hh) {
			const float sum = quad_sum(l[hh]);
			if (!row_in[hh]) continue;
			const int row = r0 + 64 * wg + 16 * warp_in_wg + g + 8 * hh;
			const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
			T* o_row = o + (int64_t)row * p.o_token_stride + (int64_t)h * p.o_head_stride;
#pragma unroll
			for (int dt = 0; dt < kDT; ++dt) store2<T>(o_row + 8 * dt + 2 * t, acc[dt][2 * hh] * inv, acc[dt][2 * hh + 1] * inv);
			if (p.lse != 0 && t == 0)
				reinterpret_cast<float*>(p.lse)[h * p.lse_head_stride + row] = lse2_of(m[hh], sum) * kLn2;
		}
	}

	static __device__ __forceinline__ void run(const KilnAttentionParams& p, const KilnTensorMap* map_k,
	                                           const KilnTensorMap* map_v) {
		extern __shared__ __align__(16) unsigned char smem[];
		Smem sm;
		sm.q = (smem_u32(smem) + 1023u) & ~1023u;
		if (threadIdx.x == 0) {
			for (int st = 0; st < kWgmmaStages; ++st) {
				mbar_init(sm.full_k(st), 1);
				mbar_init(sm.full_v(st), 1);
				mbar_init(sm.empty(st), 128 * kWgmmaConsumers);
			}
			mbar_init_fence();
		}
		check_all(p, grid_rank(), grid_size());
		__syncthreads();
		// The roles part here for good (setmaxnreg: each gets its own
		// register budget), and walk the same segments and key tiles.
		if (threadIdx.x / 128 == kWgmmaConsumers) {
			set_max_registers<true>();
			walk<true>(p, sm, map_k, map_v);
		} else {
			set_max_registers<false>();
			walk<false>(p, sm, map_k, map_v);
		}
	}

	// walk runs the block's segments in one role.
	template <bool PRODUCER>
	static __device__ __forceinline__ void walk(const KilnAttentionParams& p, const Smem& sm, const KilnTensorMap* map_k,
	                                            const KilnTensorMap* map_v) {
		// One tile and head per block (the launcher's grid is exactly
		// ⌈total_q/128⌉ × n_heads), last tiles first.
		const int r0 = (int)(gridDim.x - 1 - blockIdx.x) * kWgmmaRows;
		const int h = blockIdx.y;
		int tile_count = 0;  // key tiles through the pipeline so far (same in every thread)
		for (int b = (int)find_sequence(p, r0); b < p.batch; ++b) {
			if (load_i32(p.q_starts, b) >= (int64_t)r0 + kWgmmaRows) break;
			Seq s;
			if (!load_seq(p, b, s, false)) continue;  // check_all records it
			const int lo = r0 > s.q_begin ? r0 : s.q_begin;
			const int end = s.q_begin + s.q_len;
			const int hi = r0 + kWgmmaRows < end ? r0 + kWgmmaRows : end;
			if (lo >= hi) continue;
			segment<PRODUCER>(p, s, b, h, r0, lo, hi, sm, tile_count, map_k, map_v);
		}
	}
};

}  // namespace attn
}  // namespace kiln

// KILN_ATTENTION_WGMMA(dt, T, D, BN): one kernel; the Go launcher's
// wgmmaTiles table repeats D and BN (TestAttentionWGMMATilesMatchSources).
#define KILN_ATTENTION_WGMMA(NAME, T, D, BN)                                                              \
	extern "C" __global__ void __launch_bounds__(kiln::attn::kWgmmaThreads, 1)                            \
	    attention_##NAME##_wgmma_d##D(const KilnAttentionParams p, const __grid_constant__ KilnTensorMap map_k, \
	                                  const __grid_constant__ KilnTensorMap map_v) {                        \
		kiln::attn::Wgmma<T, D, BN>::run(p, &map_k, &map_v);                                          \
	}

#define KILN_ATTENTION_WGMMA_ALL(D, BN)          \
	KILN_ATTENTION_WGMMA(f16, f16, D, BN)    \
	KILN_ATTENTION_WGMMA(bf16, bf16, D, BN)

KILN_ATTENTION_WGMMA_ALL(64, 128)
KILN_ATTENTION_WGMMA_ALL(128, 128)
KILN_ATTENTION_WGMMA_ALL(256, 64)

#endif  // __CUDA_ARCH_FEAT_SM90_ALL || KILN_HOST_SIM
