// matmul_wgmma.cu — FAST VARIANT, compiled, not yet run on a GPU: the
// Hopper (sm_90a) matrix product for prefill (m > 16) with F16 or BF16
// activations, a warpgroup tensor-core GEMM (wgmma.mma_async m64n128k16,
// F32 accumulators, both operands read by the tensor cores from shared
// memory through matrix descriptors) with the weight's dequantization fused
// into the main loop. Same contract as matmul_mma.cu: W's values are decoded
// exactly (quant.cuh) and rounded to the activations' dtype; bias, SwiGLU
// and split-k partial sums as KilnMatMulParams (kiln_params.h) defines them.
//
// Kernels: matmul_<w>_<x>_wgmma, w one of f32, f16, bf16, q8_0, q4_0, q4_k,
// q6_k, x one of f16, bf16.
//
// wgmma exists only on sm_90a, so the kernels are compiled only where nvcc
// defines __CUDA_ARCH_FEAT_SM90_ALL (the sm_90a PTX): the compute_80 module
// of this family has no kernels, and dispatch picks these kernels only when
// the family's sm_90a module loaded (matmul_dispatch.go).
//
// Work: a block of 256 threads (two warpgroups) computes a 128 (X rows, from
// m0 = 128·blockIdx.y) × 128 (virtual weight rows, from v0 = 128·blockIdx.x)
// tile over split-k slice blockIdx.z, in k-tiles of 64 elements, through
// three stages of shared memory. A stage holds X's tile (A: 128 rows of 64
// elements, 128 bytes) and W's tile (B: 128 rows of 64 elements), each in
// the canonical K-major layout with the 128-byte swizzle: row r at byte
// 128·r, its 16-byte chunk c at chunk c ^ (r % 8), so that a tile is 16
// swizzle atoms of 8 rows × 128 bytes (1024 bytes, 1024-byte aligned):
//   - X's tile: 16-byte cp.async (zeros past m and k), or element copies
//     when X's rows are not 16-byte aligned, issued two k-tiles ahead.
//   - W's tile: when W is the activations' dtype, copied like X; otherwise
//     thread i fetches the raw bytes of elements 32·(i%2) .. +31 of virtual
//     row i/2 two k-tiles ahead into registers, and one iteration later,
//     while the tensor cores work, decodes, rounds and stores them.
//   - Warpgroup g multiplies rows 64g .. 64g+63 of A by all 128 rows of B:
//     four wgmma m64n128k16 per k-tile (the descriptors' start addresses
//     advance 32 bytes per 16 elements inside the swizzled rows), then
//     commit_group and wait_group 1: a k-tile's products run on while the
//     next stages are written and the next k-tile's products are issued.
//   - Every write of a stage (cp.async, the decoded stores) is made visible
//     to the tensor cores' async proxy by fence.proxy.async before the
//     barrier that precedes the wgmma reading it; a stage is overwritten
//     only after a barrier that follows both warpgroups' wait_group for
//     the products that read it.
// Accumulators: thread t of warpgroup g (warp w = t/32 within it, lane l,
// q = l/4, s = l%4) holds acc[4j + 2h + e] = sum for X row m0 + 64g + 16w +
// q + 8h and virtual row v0 + 8j + 2s + e, j = 0..15. For SwiGLU, 8-row
// chunks 2j and 2j+1 are the gate and up rows of the same 8 outputs, so
// each thread holds both sums of its outputs (as in matmul_mma.cu).
// Dynamic shared memory: kWgSmemBytes (three stages of 32 KiB, plus 1 KiB
// to align the first stage to 1024 bytes); __launch_bounds__(256, 1).
// kiln:targets sm_90a
#include "matmul_common.cuh"

#if defined(KILN_HOST_SIM) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define KILN_WGMMA_KERNELS 1
#endif

#ifdef KILN_WGMMA_KERNELS

namespace kiln {

constexpr int kWgThreads = 256;
constexpr int kWgBM = 128, kWgBN = 128, kWgBK = 64;
constexpr int kWgStages = 3;
constexpr int kWgTileBytes = 128 * 128;  // 128 rows × 64 elements × 2 bytes
constexpr int kWgStageBytes = 2 * kWgTileBytes;
constexpr int kWgSmemBytes = 99328;  // kWgStages·kWgStageBytes + 1024
static_assert(kWgSmemBytes == kWgStages * kWgStageBytes + 1024, "kWgSmemBytes");

// ---- PTX ----------------------------------------------------------------------------------

#ifdef KILN_HOST_SIM
// kernels/testdata/matmulsim emulates these (sim.h).
__device__ __forceinline__ uint8_t* wg_dynamic_smem() { return kiln_sim_dynamic_smem(); }
__device__ __forceinline__ uint32_t wg_smem_addr(const void* p) { return kiln_sim_smem_addr(p); }
__device__ __forceinline__ void wgmma_fence() { kiln_sim_wgmma_fence(); }
__device__ __forceinline__ void wgmma_commit() { kiln_sim_wgmma_commit(); }
template <int N> __device__ __forceinline__ void wgmma_wait() { kiln_sim_wgmma_wait(N); }
__device__ __forceinline__ void fence_proxy_async() { kiln_sim_fence_proxy_async(); }
__device__ __forceinline__ void acc_fence(float (&)[64]) {}
template <typename T> struct Wgmma;
template <> struct Wgmma<f16> {
	static void run(float (&d)[64], uint64_t desc_a, uint64_t desc_b) { kiln_sim_wgmma(false, 128, d, desc_a, desc_b); }
};
template <> struct Wgmma<bf16> {
	static void run(float (&d)[64], uint64_t desc_a, uint64_t desc_b) { kiln_sim_wgmma(true, 128, d, desc_a, desc_b); }
};
#else
__device__ __forceinline__ uint8_t* wg_dynamic_smem() {
	extern __shared__ __align__(16) uint8_t wg_smem[];
	return wg_smem;
}
__device__ __forceinline__ uint32_t wg_smem_addr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// wgmma_fence orders this thread's earlier register and shared-memory
// accesses before the wgmma.mma_async that follow (required before the
// first wgmma of a batch whose accumulators were touched by other
// instructions).
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() {
	asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// fence_proxy_async makes this thread's generic-proxy writes to shared
// memory (stores, cp.async) visible to the async proxy the wgmma read with.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// acc_fence keeps the compiler from moving accesses of the accumulators
// across the wgmma instructions, which it cannot see as reading them.
__device__ __forceinline__ void acc_fence(float (&d)[64]) {
#pragma unroll
	for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// Wgmma<T>::run: d (64x128, F32, the accumulator fragment above) += A (64x16
// at desc_a, K-major) · B (16x128 at desc_b, K-major: 128 rows of 16
// elements), scale-d 1, no negation, no transposition.
template <typename T> struct Wgmma;
template <> struct Wgmma<f16> {
	static __device__ __forceinline__ void run(float (&d)[64], uint64_t desc_a, uint64_t desc_b) {
		asm volatile(
		    "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
		    "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
		    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
		    "%64, %65, p, 1, 1, 0, 0;\n}\n"
		    : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
		    : "l"(desc_a), "l"(desc_b), "n"(1));
	}
};
template <> struct Wgmma<bf16> {
	static __device__ __forceinline__ void run(float (&d)[64], uint64_t desc_a, uint64_t desc_b) {
		asm volatile(
		    "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
		    "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
		    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
		    "%64, %65, p, 1, 1, 0, 0;\n}\n"
		    : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
		    : "l"(desc_a), "l"(desc_b), "n"(1));
	}
};
#endif  // KILN_HOST_SIM

// wg_desc is the matrix descriptor of a K-major operand with the 128-byte
// swizzle starting at shared address addr: start address (bits 0-13,
// address >> 4), leading byte offset 16 (bits 16-29, unused by swizzled
// K-major layouts; 1 as is customary), stride byte offset 1024 (bits 32-45:
// from one 8-row swizzle atom to the next), base offset 0 (every atom is
// 1024-byte aligned), swizzle mode 1 = 128 bytes (bits 62-63).
__device__ __forceinline__ uint64_t wg_desc(uint32_t addr) {
	return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

// sw128 is the byte offset of 16-byte chunk c (0..7) of row r in a tile of
// 128-byte rows with the 128-byte swizzle.
__device__ __forceinline__ int sw128(int r, int c) { return r * 128 + ((c ^ (r & 7)) << 4); }

// ---- staging ------------------------------------------------------------------------------

// wg_load_rows copies elements [k0, k0 + 64) of 128 rows of T, rows
// row_of(r) (nullptr: a row of zeros), into the swizzled tile dst, zeros
// past k: 16-byte cp.async when vec (base a valid source for the zero-byte
// copies), else element copies.
template <typename T, class RowOf>
__device__ __forceinline__ void wg_load_rows(uint8_t* dst, RowOf row_of, const T* base, int64_t k0, int64_t k, bool vec) {
#pragma unroll
	for (int i = 0; i < 128 * 8 / kWgThreads; ++i) {
		const int idx = threadIdx.x + kWgThreads * i;
		const int r = idx / 8, c = idx % 8;
		const int64_t kk = k0 + 8 * c;
		const T* row = row_of(r);
		uint8_t* d = dst + sw128(r, c);
		if (vec) {
			int bytes = 0;
			if (row != nullptr) {
				const int64_t left = (k - kk) * (int64_t)sizeof(T);
				bytes = left <= 0 ? 0 : (left >= 16 ? 16 : (int)left);
			}
			cp_async16(d, bytes > 0 ? row + kk : base, bytes);
		} else {
			T* dt = reinterpret_cast<T*>(d);
#pragma unroll
			for (int e = 0; e < 8; ++e) dt[e] = (row != nullptr && kk + e < k) ? row[kk + e] : from_f32<T>(0.0f);
		}
	}
}

// WgPiece is the raw bytes of 16 weight elements, fetched ahead of their
// decoding; valid is false past k (the piece is zeros).
struct WgPiece {
	KilnRaw16 raw;
	bool valid;
};

// wg_fetch reads the raw bytes of elements e .. e+15 of a weight row (for
// the float formats only those before k). The 32-element formats have k a
// multiple of 32 and e a multiple of 16, so a piece is wholly before or
// past k; the K-quants have k a multiple of 256, never past it.
template <class W> __device__ __forceinline__ void wg_fetch(const uint8_t* row, int64_t e, int64_t k, WgPiece* pc) {
	pc->valid = e < k;
	if (!pc->valid) return;
	if (W::kIsFloat) {
		const int64_t left = k - e;
		if (left >= 16)
			W::fetch16(row + e * W::kBlockBytes, 0, &pc->raw);
		else
			W::fetch16_tail(row + e * W::kBlockBytes, (int)left, &pc->raw);
		return;
	}
	W::fetch16(row + (e / W::kBlockElems) * W::kBlockBytes, (int)(e % W::kBlockElems), &pc->raw);
}

// wg_store decodes a fetched piece of element e, rounds it to T and stores
// its 16 values as chunks c and c+1 of tile row r.
template <class W, typename T> __device__ __forceinline__ void wg_store(const WgPiece& pc, int64_t e, uint8_t* tile, int r, int c) {
	uint4 lo = {0, 0, 0, 0}, hi = {0, 0, 0, 0};
	if (pc.valid) {
		float f[16];
		W::decode16(&pc.raw, (int)(e % W::kBlockElems), f);
		lo.x = pack2<T>(f[0], f[1]);
		lo.y = pack2<T>(f[2], f[3]);
		lo.z = pack2<T>(f[4], f[5]);
		lo.w = pack2<T>(f[6], f[7]);
		hi.x = pack2<T>(f[8], f[9]);
		hi.y = pack2<T>(f[10], f[11]);
		hi.z = pack2<T>(f[12], f[13]);
		hi.w = pack2<T>(f[14], f[15]);
	}
	*reinterpret_cast<uint4*>(tile + sw128(r, c)) = lo;
	*reinterpret_cast<uint4*>(tile + sw128(r, c + 1)) = hi;
}

// ---- the kernel -----------------------------------------------------------------------------

template <int F, typename T> __device__ __forceinline__ void matmul_wgmma(const KilnMatMulParams& p) {
	using W = Weight<F>;
	constexpr bool kDirect = WeightIs<F, T>::value;

	// The stages, from the first 1024-byte aligned shared address.
	uint8_t* const smem_raw = wg_dynamic_smem();
	uint8_t* const smem = smem_raw + ((1024u - (wg_smem_addr(smem_raw) & 1023u)) & 1023u);
	auto a_tile = [&](int s) { return smem + s * kWgStageBytes; };
	auto b_tile = [&](int s) { return smem + s * kWgStageBytes + kWgTileBytes; };

	const int wg = threadIdx.x >> 7;  // warpgroup
	const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3;
	const int q = lane >> 2, s4 = lane & 3;
	const int64_t v0 = (int64_t)blockIdx.x * kWgBN;
	const int64_t m0 = (int64_t)blockIdx.y * kWgBM;
	const int64_t slice = blockIdx.z;
	const KRange kr = split_range(p, slice);
	const int64_t kt0 = kr.begin / kWgBK, kt1 = (kr.end + kWgBK - 1) / kWgBK;

	const T* x = reinterpret_cast<const T*>(p.x);
	auto x_row = [&](int r) -> const T* { return m0 + r < p.m ? x + (m0 + r) * p.x_row_stride : nullptr; };
	auto w_row_t = [&](int r) -> const T* { return reinterpret_cast<const T*>(weight_row(p, v0 + r)); };
	const bool x_vec = p.x_vec16 != 0, w_vec = p.w_vec16 != 0;
	// The decoding path: this thread's weight row (tile row my_r) and half
	// my_h of the k-tile (elements 32·my_h .. +31, chunks 4·my_h .. +3).
	const int my_r = threadIdx.x >> 1, my_h = threadIdx.x & 1;
	const uint8_t* my_row = weight_row(p, v0 + my_r);

	float acc[64];
#pragma unroll
	for (int i = 0; i < 64; ++i) acc[i] = 0.0f;

	// load_b_direct and the fetch/store pair fill stage s's B with k-tile kt.
	auto load_b_direct = [&](int s, int64_t kt) {
		wg_load_rows<T>(b_tile(s), w_row_t, reinterpret_cast<const T*>(p.w), kt * kWgBK, p.k, w_vec);
	};
	WgPiece pc[2];
	auto fetch_b = [&](int64_t kt) {
#pragma unroll
		for (int i = 0; i < 2; ++i) wg_fetch<W>(my_row, kt * kWgBK + 32 * my_h + 16 * i, p.k, &pc[i]);
	};
	auto store_b = [&](int s, int64_t kt) {
#pragma unroll
		for (int i = 0; i < 2; ++i) wg_store<W, T>(pc[i], kt * kWgBK + 32 * my_h + 16 * i, b_tile(s), my_r, 4 * my_h + 2 * i);
	};

	// The pipeline, three stages: at the top of iteration kt, k-tile kt is
	// in stage kt % 3 (from kt0), written and fenced before the barrier
	// that ended the previous iteration; k-tile kt + 1's copies (cp.async)
	// are in flight to stage (kt + 1) % 3, and for a decoded W this
	// thread's raw bytes of k-tile kt + 1 are in registers.
	if (kt0 < kt1) {
		// Prologue: k-tiles kt0 and kt0 + 1 (when there is one) into stages
		// 0 and 1, one commit group each; W's first tile decoded at once,
		// the second one's raw bytes fetched.
		wg_load_rows<T>(a_tile(0), x_row, x, kt0 * kWgBK, p.k, x_vec);
		if (kDirect) load_b_direct(0, kt0);
		cp_async_commit();
		if (kt0 + 1 < kt1) {
			wg_load_rows<T>(a_tile(1), x_row, x, (kt0 + 1) * kWgBK, p.k, x_vec);
			if (kDirect) load_b_direct(1, kt0 + 1);
		}
		cp_async_commit();
		if (!kDirect) {
			fetch_b(kt0);
			store_b(0, kt0);
			if (kt0 + 1 < kt1) fetch_b(kt0 + 1);
		}
		cp_async_wait<1>();
		fence_proxy_async();
		__syncthreads();
	}

	int cur = 0;  // the stage of k-tile kt
#pragma unroll 1
	for (int64_t kt = kt0; kt < kt1; ++kt) {
		const int next = cur == kWgStages - 1 ? 0 : cur + 1;
		const int after = next == kWgStages - 1 ? 0 : next + 1;  // also the stage of k-tile kt − 1

		// This k-tile's products: asynchronous; the previous k-tile's may
		// still be running (they add into the same accumulators, in order).
		const uint32_t a_addr = wg_smem_addr(a_tile(cur)) + 64 * 128 * wg;
		const uint32_t b_addr = wg_smem_addr(b_tile(cur));
		acc_fence(acc);
		wgmma_fence();
#pragma unroll
		for (int ks = 0; ks < kWgBK / 16; ++ks) Wgmma<T>::run(acc, wg_desc(a_addr + 32 * ks), wg_desc(b_addr + 32 * ks));
		wgmma_commit();
		acc_fence(acc);
		// This warpgroup's products of k-tile kt − 1 are done (stage after
		// is free once the barrier below shows every warpgroup's are).
		wgmma_wait<1>();
		acc_fence(acc);

		// W of k-tile kt + 1, decoded into stage next: its last reader,
		// k-tile kt − 2, completed in both warpgroups before the previous
		// barrier. Then the raw bytes of k-tile kt + 2, in flight until the
		// next iteration.
		if (!kDirect) {
			if (kt + 1 < kt1) store_b(next, kt + 1);
			if (kt + 2 < kt1) fetch_b(kt + 2);
		}
		cp_async_wait<0>();  // k-tile kt + 1's copies
		fence_proxy_async();
		__syncthreads();

		// k-tile kt + 2's copies into stage after, which k-tile kt − 1's
		// products (every warpgroup's, before the barrier) no longer read.
		if (kt + 2 < kt1) {
			wg_load_rows<T>(a_tile(after), x_row, x, (kt + 2) * kWgBK, p.k, x_vec);
			if (kDirect) load_b_direct(after, kt + 2);
		}
		cp_async_commit();
		cur = next;
	}
	wgmma_wait<0>();
	acc_fence(acc);
	cp_async_wait<0>();

	// Epilogue (the accumulator layout above).
#pragma unroll
	for (int h = 0; h < 2; ++h) {
		const int64_t m = m0 + 64 * wg + 16 * warp + q + 8 * h;
		if (m >= p.m) continue;
#pragma unroll
		for (int j = 0; j < 16; ++j) {
			const int64_t vb = v0 + 8 * j;
#pragma unroll
			for (int e = 0; e < 2; ++e) {
				const float sum = acc[4 * j + 2 * h + e];
				if (p.split_k > 1) {
					if (vb + 2 * s4 + e < p.n_virtual) store_partial(p, slice, m, vb + 2 * s4 + e, sum);
				} else if (p.swiglu) {
					if (j % 2 == 0) {  // chunk j is gate, j + 1 its up rows
						const int64_t n = vb / 2 + 2 * s4 + e;
						if (n < p.n) store_y<T>(p, m, n, silu_mul(sum, acc[4 * (j + 1) + 2 * h + e]));
					}
				} else {
					const int64_t n = vb + 2 * s4 + e;
					if (n < p.n) store_y<T>(p, m, n, plain_out(p, n, sum));
				}
			}
		}
	}
}

}  // namespace kiln

#define KILN_MATMUL_WGMMA(WNAME, FMT, XNAME, X)                                                               \
	extern "C" __global__ void __launch_bounds__(kiln::kWgThreads, 1)                                       \
	    matmul_##WNAME##_##XNAME##_wgmma(const KilnMatMulParams p) {                                         \
		kiln::matmul_wgmma<FMT, X>(p);                                                                      \
	}

#define KILN_MATMUL_WGMMA_ALL_X(WNAME, FMT) \
	KILN_MATMUL_WGMMA(WNAME, FMT, f16, f16) \
	KILN_MATMUL_WGMMA(WNAME, FMT, bf16, bf16)

KILN_MATMUL_WGMMA_ALL_X(f32, kiln::kWF32)
KILN_MATMUL_WGMMA_ALL_X(f16, kiln::kWF16)
KILN_MATMUL_WGMMA_ALL_X(bf16, kiln::kWBF16)
KILN_MATMUL_WGMMA_ALL_X(q8_0, kiln::kWQ8_0)
KILN_MATMUL_WGMMA_ALL_X(q4_0, kiln::kWQ4_0)
KILN_MATMUL_WGMMA_ALL_X(q4_k, kiln::kWQ4_K)
KILN_MATMUL_WGMMA_ALL_X(q6_k, kiln::kWQ6_K)

#endif  // KILN_WGMMA_KERNELS
