// sim.h — runs kiln's attention kernels (../../attention*.cu,
// ../../append_kv.cu) on the host, for attention_sim_test.go: every CUDA
// thread of a block is a fiber (ucontext), scheduled in a random order that
// changes only at the block and warp barriers, at the warp-wide
// instructions and (in the lazy mode) after a cp.async, so that the
// kernels' own index arithmetic, pipelines and fragment layouts run
// unchanged. Blocks run one at a time, in a random order.
//
// The instructions are emulated from the PTX ISA's definitions, written
// here independently of the kernels:
//   - ldmatrix .x4: lanes 8i..8i+7 give the row addresses of matrix i
//     (16-byte aligned, inside the launch's dynamic shared memory); lane l
//     receives in register i the 32 bits at row l/4, byte 4(l%4) of matrix
//     i; with .trans, the 16-bit elements (row 2(l%4), column l/4) (low
//     half) and (row 2(l%4)+1, column l/4) (high half) of matrix i.
//   - mma.sync m16n8k16 .row.col, F32 accumulators, g = lane/4, t = lane%4:
//     A registers (g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..);
//     B registers (k 2t..2t+1, n g), (k 2t+8..2t+9, n g); C/D (g, 2t),
//     (g, 2t+1), (g+8, 2t), (g+8, 2t+1); the lower index in the low half;
//     the products summed in double and rounded once to F32.
//   - cp.async 16 bytes with a source size of 0 or 16: the destination
//     16-byte aligned inside the launch's dynamic shared memory, the source
//     16-byte aligned and, when read, inside one of the buffers the test
//     mapped; the rest zero-filled. Eager mode copies at once; lazy mode
//     fills the destination with 0xff (NaN in every float type) at issue
//     and copies at the cp.async.wait_group that completes it, so reading a
//     stage too early, or overwriting one still being read, shows as NaN.
//   - shfl.sync (xor and index), bar.warp.sync, bar.sync and bar.red.or:
//     every lane (thread) must arrive, or the block deadlocks (reported).
//   - the sm_90a instructions of attention_wgmma.cu (mbarrier, TMA tensor
//     copies, wgmma, named barriers): see hopper.h, which says what is
//     modelled and what is not.
// Dynamic shared memory is filled with 0xff before each block; bytes past
// the launch's size must still be 0xff after it. A load or store outside
// every mapped buffer is a memory fault, reported as a failure.
#pragma once

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <random>
#include <utility>
#include <vector>

#include "kiln_params.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__

struct SimDim3 {
	unsigned x, y, z;
};
inline SimDim3 threadIdx, blockIdx, blockDim, gridDim;

namespace sim {

[[noreturn]] inline void fail(const char* fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	printf("FAIL ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	_exit(1);
}

// The largest dynamic shared memory a launch may ask (the H100's opt-in limit).
constexpr size_t kSharedMax = 227 << 10;

struct Copy {
	uint8_t* dst;
	const uint8_t* src;
	int bytes;
};

struct Fiber {
	ucontext_t ctx;
	std::vector<uint8_t> stack;
	unsigned tid = 0;
	bool done = false, blocked = false;
	std::vector<Copy> pending;             // issued, not committed
	std::deque<std::vector<Copy>> groups;  // committed, not waited for
};

enum { kOpLdmatrix = 1, kOpLdmatrixTrans, kOpMmaF16, kOpMmaBF16, kOpShflXor, kOpShflIdx, kOpSyncwarp };

// Slot is one lane's operands and results of a warp-wide instruction.
struct Slot {
	const uint8_t* addr;
	uint32_t a[4], b[2];
	float c[4];
	uint32_t r[4];
	uint32_t v;
	int arg;
};

struct State {
	std::vector<Fiber> fibers;
	int cur = -1;
	ucontext_t sched;
	std::vector<int> run;
	std::mt19937_64 rng;
	bool lazy = false;
	int n_threads = 0;
	int bar_arrived = 0, bar_or = 0, bar_result = 0;
	std::vector<int> bar_waiting;
	std::vector<Slot> slots;  // [warp][lane]
	std::vector<int> warp_arrived, warp_op;
	std::vector<std::vector<int>> warp_waiting;
	std::function<void()> body;                             // the kernel call of the current launch
	uint8_t* smem = nullptr;                                // the dynamic shared memory
	size_t smem_bytes = 0;                                  // the current launch's
	std::vector<std::pair<uintptr_t, uintptr_t>> readable;  // [lo, hi) of the mapped buffers
	long ldmatrix_phases = 0, ldmatrix_conflicted = 0;
	long mma_count = 0, cp_async_count = 0, shfl_count = 0;
};
inline State S;

inline void yield_now() { swapcontext(&S.fibers[S.cur].ctx, &S.sched); }
inline void block_self() {
	S.fibers[S.cur].blocked = true;
	yield_now();
}
inline void release(int i) {
	S.fibers[i].blocked = false;
	S.run.push_back(i);
}
inline void maybe_yield() {
	if (S.lazy && S.rng() % 4 == 0) yield_now();
}

// barrier is bar.sync with an OR reduction of pred over the block.
inline int barrier(int pred) {
	S.bar_or |= pred != 0;
	if (++S.bar_arrived == S.n_threads) {
		S.bar_result = S.bar_or;
		S.bar_arrived = 0;
		S.bar_or = 0;
		for (int i : S.bar_waiting) release(i);
		S.bar_waiting.clear();
		maybe_yield();
		return S.bar_result;
	}
	S.bar_waiting.push_back(S.cur);
	block_self();
	return S.bar_result;  // the next barrier cannot complete before this thread arrives there
}

// warp_op runs a warp-wide instruction: every lane deposits its operands,
// the last one to arrive computes every lane's results.
inline Slot warp_op(int op, const Slot& in, void (*compute)(int op, Slot* lanes)) {
	const unsigned tid = S.fibers[S.cur].tid;
	const int w = (int)(tid / 32), l = (int)(tid % 32);
	Slot* lanes = &S.slots[32 * w];
	lanes[l] = in;
	if (S.warp_arrived[w] == 0)
		S.warp_op[w] = op;
	else if (S.warp_op[w] != op)
		fail("warp %d: lanes at different warp-wide instructions (%d, %d)", w, S.warp_op[w], op);
	if (++S.warp_arrived[w] == 32) {
		compute(op, lanes);
		S.warp_arrived[w] = 0;
		for (int i : S.warp_waiting[w]) release(i);
		S.warp_waiting[w].clear();
	} else {
		S.warp_waiting[w].push_back(S.cur);
		block_self();
	}
	return lanes[l];
}

inline bool in_shared(const void* p, size_t n) {
	const uint8_t* b = static_cast<const uint8_t*>(p);
	return b >= S.smem && b + n <= S.smem + S.smem_bytes;
}

inline void ldmatrix_compute(int op, Slot* lanes) {
	for (int i = 0; i < 4; ++i) {
		int groups = 0;
		for (int j = 0; j < 8; ++j) {
			const uint8_t* row = lanes[8 * i + j].addr;
			if ((uintptr_t)row % 16 != 0) fail("ldmatrix: matrix %d row %d address %p is not 16-byte aligned", i, j, (const void*)row);
			if (!in_shared(row, 16))
				fail("ldmatrix: matrix %d row %d address %p is outside the %zu bytes of dynamic shared memory", i, j,
				     (const void*)row, S.smem_bytes);
			groups |= 1 << (((uintptr_t)row >> 4) & 7);
		}
		S.ldmatrix_phases++;
		if (groups != 0xff) S.ldmatrix_conflicted++;
	}
	for (int l = 0; l < 32; ++l)
		for (int i = 0; i < 4; ++i) {
			if (op == kOpLdmatrix) {
				memcpy(&lanes[l].r[i], lanes[8 * i + l / 4].addr + 4 * (l % 4), 4);
			} else {
				uint16_t lo, hi;
				memcpy(&lo, lanes[8 * i + 2 * (l % 4)].addr + 2 * (l / 4), 2);
				memcpy(&hi, lanes[8 * i + 2 * (l % 4) + 1].addr + 2 * (l / 4), 2);
				lanes[l].r[i] = (uint32_t)lo | (uint32_t)hi << 16;
			}
		}
}

inline float half_bits_to_f32(uint32_t h, bool bf) {
	if (bf) {
		const uint32_t u = h << 16;
		float f;
		memcpy(&f, &u, 4);
		return f;
	}
	_Float16 f;
	const uint16_t u = (uint16_t)h;
	memcpy(&f, &u, 2);
	return (float)f;
}

inline void mma_compute(int op, Slot* lanes) {
	const bool bf = op == kOpMmaBF16;
	double A[16][16], B[16][8], C[16][8];
	int setA[16][16] = {}, setB[16][8] = {};
	auto lo = [&](uint32_t r) { return (double)half_bits_to_f32(r & 0xffffu, bf); };
	auto hi = [&](uint32_t r) { return (double)half_bits_to_f32(r >> 16, bf); };
	for (int l = 0; l < 32; ++l) {
		const int g = l >> 2, t = l & 3;
		const Slot& s = lanes[l];
		const int ar[4] = {g, g + 8, g, g + 8}, ac[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
		for (int q = 0; q < 4; ++q) {
			A[ar[q]][ac[q]] = lo(s.a[q]);
			A[ar[q]][ac[q] + 1] = hi(s.a[q]);
			setA[ar[q]][ac[q]]++;
			setA[ar[q]][ac[q] + 1]++;
		}
		for (int q = 0; q < 2; ++q) {
			B[2 * t + 8 * q][g] = lo(s.b[q]);
			B[2 * t + 8 * q + 1][g] = hi(s.b[q]);
			setB[2 * t + 8 * q][g]++;
			setB[2 * t + 8 * q + 1][g]++;
		}
		C[g][2 * t] = s.c[0];
		C[g][2 * t + 1] = s.c[1];
		C[g + 8][2 * t] = s.c[2];
		C[g + 8][2 * t + 1] = s.c[3];
	}
	for (int i = 0; i < 16; ++i)
		for (int j = 0; j < 16; ++j)
			if (setA[i][j] != 1) fail("mma emulation: A[%d][%d] set %d times", i, j, setA[i][j]);
	for (int i = 0; i < 16; ++i)
		for (int j = 0; j < 8; ++j)
			if (setB[i][j] != 1) fail("mma emulation: B[%d][%d] set %d times", i, j, setB[i][j]);
	for (int l = 0; l < 32; ++l) {
		const int g = l >> 2, t = l & 3;
		const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
		for (int q = 0; q < 4; ++q) {
			double s = C[rows[q]][cols[q]];
			for (int k = 0; k < 16; ++k) s += A[rows[q]][k] * B[k][cols[q]];
			lanes[l].c[q] = (float)s;
		}
	}
	S.mma_count++;
}

inline void shfl_compute(int op, Slot* lanes) {
	uint32_t in[32];
	for (int l = 0; l < 32; ++l) in[l] = lanes[l].v;
	for (int l = 0; l < 32; ++l) {
		const int src = op == kOpShflXor ? (l ^ lanes[l].arg) & 31 : lanes[l].arg & 31;
		lanes[l].r[0] = in[src];
	}
	S.shfl_count++;
}

inline void nothing_compute(int, Slot*) {}

inline void do_copy(const Copy& c) {
	if (c.bytes > 0) memcpy(c.dst, c.src, c.bytes);
	memset(c.dst + c.bytes, 0, 16 - c.bytes);
}

inline void cp_async16(uint8_t* d, const uint8_t* s, int bytes) {
	if (bytes != 0 && bytes != 16) fail("cp.async: source size %d (the kernels copy 0 or 16 bytes)", bytes);
	if ((uintptr_t)d % 16 != 0) fail("cp.async: destination %p is not 16-byte aligned", (void*)d);
	if ((uintptr_t)s % 16 != 0) fail("cp.async: source %p is not 16-byte aligned", (const void*)s);
	if (!in_shared(d, 16)) fail("cp.async: destination %p is outside the %zu bytes of dynamic shared memory", (void*)d, S.smem_bytes);
	if (bytes > 0) {
		bool ok = false;
		for (const auto& r : S.readable) ok = ok || ((uintptr_t)s >= r.first && (uintptr_t)s + bytes <= r.second);
		if (!ok) fail("cp.async: reads %d bytes at %p, outside every buffer", bytes, (const void*)s);
	}
	S.cp_async_count++;
	const Copy c{d, s, bytes};
	if (!S.lazy) {
		do_copy(c);
		return;
	}
	memset(d, 0xff, 16);
	S.fibers[S.cur].pending.push_back(c);
	maybe_yield();
}

inline void cp_async_commit() {
	Fiber& f = S.fibers[S.cur];
	f.groups.push_back(std::move(f.pending));
	f.pending.clear();
}

inline void cp_async_wait(int n) {
	Fiber& f = S.fibers[S.cur];
	while ((int)f.groups.size() > n) {
		for (const Copy& c : f.groups.front()) do_copy(c);
		f.groups.pop_front();
	}
}

// hopper.h's per-block state (defined there).
inline void hopper_begin_block(int threads);
inline void hopper_end_block(SimDim3 b);

inline void fiber_entry() {
	S.body();
	S.fibers[S.cur].done = true;
}

// run_grid runs body (a kernel call) over grid with block threads and
// shared_bytes of dynamic shared memory, the blocks in a random order.
inline void run_grid(SimDim3 grid, int threads, size_t shared_bytes) {
	const size_t kStack = 256 << 10;
	if (threads % 32 != 0 || threads < 32 || threads > 1024) fail("block of %d threads", threads);
	if (shared_bytes > kSharedMax) fail("%zu bytes of dynamic shared memory, more than %zu", shared_bytes, kSharedMax);
	S.smem_bytes = shared_bytes;
	S.n_threads = threads;
	S.fibers.resize(threads);
	const int warps = threads / 32;
	S.slots.assign(32 * warps, Slot{});
	S.warp_arrived.assign(warps, 0);
	S.warp_op.assign(warps, 0);
	S.warp_waiting.assign(warps, {});
	gridDim = grid;
	blockDim = SimDim3{(unsigned)threads, 1, 1};
	std::vector<SimDim3> blocks;
	for (unsigned z = 0; z < grid.z; ++z)
		for (unsigned y = 0; y < grid.y; ++y)
			for (unsigned x = 0; x < grid.x; ++x) blocks.push_back(SimDim3{x, y, z});
	std::shuffle(blocks.begin(), blocks.end(), S.rng);
	for (const SimDim3& b : blocks) {
		blockIdx = b;
		memset(S.smem, 0xff, kSharedMax);
		hopper_begin_block(threads);
		S.run.clear();
		S.bar_arrived = S.bar_or = 0;
		S.bar_waiting.clear();
		for (int i = 0; i < threads; ++i) {
			Fiber& f = S.fibers[i];
			f.stack.resize(kStack);
			f.tid = i;
			f.done = f.blocked = false;
			f.pending.clear();
			f.groups.clear();
			getcontext(&f.ctx);
			f.ctx.uc_stack.ss_sp = f.stack.data();
			f.ctx.uc_stack.ss_size = kStack;
			f.ctx.uc_link = &S.sched;
			makecontext(&f.ctx, fiber_entry, 0);
			S.run.push_back(i);
		}
		while (!S.run.empty()) {
			const size_t idx = S.rng() % S.run.size();
			const int i = S.run[idx];
			S.cur = i;
			threadIdx = SimDim3{S.fibers[i].tid, 0, 0};
			swapcontext(&S.sched, &S.fibers[i].ctx);
			if (S.fibers[i].done || S.fibers[i].blocked) {
				S.run[idx] = S.run.back();
				S.run.pop_back();
			}
		}
		for (int i = 0; i < threads; ++i) {
			const Fiber& f = S.fibers[i];
			if (!f.done)
				fail("block (%u, %u, %u): deadlock: thread %d waits at a barrier or warp-wide instruction that not every thread reaches",
				     b.x, b.y, b.z, i);
			if (!f.pending.empty()) fail("block (%u, %u, %u): thread %d exited with uncommitted cp.async copies", b.x, b.y, b.z, i);
			for (const auto& g : f.groups)
				if (!g.empty()) fail("block (%u, %u, %u): thread %d exited with cp.async copies never waited for", b.x, b.y, b.z, i);
		}
		hopper_end_block(b);
		for (size_t i = shared_bytes; i < kSharedMax; ++i)
			if (S.smem[i] != 0xff) fail("block (%u, %u, %u): shared memory byte %zu, past the launch's %zu, was written", b.x, b.y, b.z, i, shared_bytes);
	}
}

}  // namespace sim

// ---- CUDA built-ins ----------------------------------------------------------------------

inline void __syncthreads() { sim::barrier(0); }
inline int __syncthreads_or(int pred) { return sim::barrier(pred); }
inline void __syncwarp(unsigned = 0xffffffffu) {
	sim::Slot in{};
	sim::warp_op(sim::kOpSyncwarp, in, sim::nothing_compute);
}
template <typename T> inline T sim_shfl(int op, T v, int arg) {
	static_assert(sizeof(T) == 4, "32-bit shuffles only");
	sim::Slot in{};
	memcpy(&in.v, &v, 4);
	in.arg = arg;
	const sim::Slot out = sim::warp_op(op, in, sim::shfl_compute);
	T r;
	memcpy(&r, &out.r[0], 4);
	return r;
}
template <typename T> inline T __shfl_xor_sync(unsigned, T v, int lane_mask) { return sim_shfl(sim::kOpShflXor, v, lane_mask); }
template <typename T> inline T __shfl_sync(unsigned, T v, int src_lane) { return sim_shfl(sim::kOpShflIdx, v, src_lane); }
// Fibers switch only at barriers and warp-wide instructions: an atomic is a
// plain read-modify-write.
inline unsigned atomicCAS(unsigned* p, unsigned compare, unsigned value) {
	const unsigned old = *p;
	if (old == compare) *p = value;
	return old;
}
// Shared-space addresses: the dynamic shared memory is a static array of a
// -no-pie executable, below 4 GiB, so its generic address is its shared one.
inline size_t __cvta_generic_to_shared(const void* p) {
	const uint8_t* b = static_cast<const uint8_t*>(p);
	if (b < sim::S.smem || b > sim::S.smem + sim::kSharedMax || ((uintptr_t)p >> 32) != 0)
		sim::fail("__cvta_generic_to_shared of %p, outside the dynamic shared memory", p);
	return (size_t)(uintptr_t)p;
}

// The PTX wrappers of attention_common.cuh under KILN_HOST_SIM.
inline void kiln_sim_cp_async16(uint32_t dst, const void* src, int bytes) {
	sim::cp_async16((uint8_t*)(uintptr_t)dst, static_cast<const uint8_t*>(src), bytes);
}
inline void kiln_sim_cp_async_commit() { sim::cp_async_commit(); }
inline void kiln_sim_cp_async_wait(int n) { sim::cp_async_wait(n); }
inline void kiln_sim_ldmatrix_x4(uint32_t (&r)[4], uint32_t row, bool trans) {
	sim::Slot in{};
	in.addr = (const uint8_t*)(uintptr_t)row;
	const sim::Slot out = sim::warp_op(trans ? sim::kOpLdmatrixTrans : sim::kOpLdmatrix, in, sim::ldmatrix_compute);
	for (int i = 0; i < 4; ++i) r[i] = out.r[i];
}
inline void kiln_sim_mma(bool bf16, float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
	sim::Slot in{};
	for (int i = 0; i < 4; ++i) {
		in.a[i] = a[i];
		in.c[i] = c[i];
	}
	in.b[0] = b0;
	in.b[1] = b1;
	const sim::Slot out = sim::warp_op(bf16 ? sim::kOpMmaBF16 : sim::kOpMmaF16, in, sim::mma_compute);
	for (int i = 0; i < 4; ++i) c[i] = out.c[i];
}

#include "hopper.h"
