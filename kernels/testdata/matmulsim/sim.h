// sim.h — runs kiln's matmul kernels (../../matmul*.cu) on the host, one
// block at a time, for matmul_sim_test.go: every CUDA thread of a block is a
// fiber (ucontext), scheduled in a random order that changes only at
// __syncthreads, at the warp- and warpgroup-wide instructions and (in the
// lazy mode) after a cp.async or fence.proxy.async, so that the kernels' own
// index arithmetic, pipelines and fragment layouts run unchanged.
//
// The PTX instructions are emulated from the PTX ISA's definitions, written
// here independently of the kernels:
//   - ldmatrix .x4: lanes 8i..8i+7 give the row addresses of matrix i
//     (16-byte aligned, in shared memory); lane l receives in register i the
//     32 bits at row l/4, byte 4(l%4) of matrix i.
//   - mma.sync m16n8k16 .row.col, F32 accumulators, g = lane/4, t = lane%4:
//     A registers (g, 2t..2t+1), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..);
//     B registers (k 2t..2t+1, n g), (k 2t+8..2t+9, n g); C/D (g, 2t),
//     (g, 2t+1), (g+8, 2t), (g+8, 2t+1); the lower index in the low half.
//   - cp.async 16 bytes with a source size: the destination and the source
//     16-byte aligned, the destination in shared memory, the bytes read
//     inside one registered valid range (a row's k elements: reading a row's
//     padding fails), the rest of the 16 zero-filled. Eager mode copies at
//     once; lazy mode fills the destination with 0xff (NaN in every float
//     type) at issue and copies at the cp.async.wait_group that completes
//     it, so reading a stage too early or overwriting one still being read
//     shows up as NaN.
//   - wgmma (matmul_wgmma.cu), warpgroup-wide (128 threads, warpgroup
//     tid/128; each of these instructions must be reached by all 128
//     threads, in the same order, with the same descriptors):
//       * matrix descriptors (64 bits): start address (bits 0-13, shared
//         address >> 4), leading byte offset (16-29, >> 4), stride byte
//         offset (32-45, >> 4), base offset (49-51; only 0 is modelled, and
//         any other value fails), swizzle mode (62-63: 0 none, 1 128-byte;
//         the 64- and 32-byte modes fail as not modelled).
//       * K-major operands (imm-trans 0), element (row r, k kk) of 16-bit
//         type at: no swizzle, core matrices of 8 rows × 16 bytes:
//         start + (r/8)·SBO + (r%8)·16 + (kk/8)·LBO + 2·(kk%8); 128-byte
//         swizzle: start + (r/8)·SBO + (r%8)·128 + 2·kk, then address bits
//         4-6 XOR bits 7-9 (the swizzle acts on the shared address itself,
//         so the atoms are 1024-byte aligned). Every byte read must lie in
//         the dynamic shared memory the launch gave the block.
//       * wgmma.mma_async m64nNk16 .f32.{f16,bf16}, A 64×16 and B N×16 from
//         descriptors, scale-d 1: thread t (warp w = t/32, lane l, g = l/4,
//         s = l%4) holds d[4j + 2h + e] = D[16w + g + 8h][8j + 2s + e].
//         Summed in float64, rounded once to F32.
//       * wgmma.fence: a thread must execute one before its first
//         wgmma.mma_async after start or after a wait_group (its
//         accumulators were accessible in between).
//       * commit_group / wait_group N. Eager mode: the product is computed
//         at issue from live shared memory. Lazy mode: at issue the
//         accumulators are set to NaN and the operation is queued; at the
//         wait_group that completes its group, the queued operations run in
//         order, reading shared memory as the async proxy sees it, and the
//         accumulators receive the results; reading them before that, or
//         overwriting a stage a queued wgmma still reads, shows up.
//       * fence.proxy.async (lazy mode): the async proxy's view of shared
//         memory is a copy of it taken at the latest fence.proxy.async of
//         any thread; writes after it (stores, landed cp.async) are not
//         seen by wgmma until the next. (Coarser than the hardware, where
//         a fence publishes only the fencing thread's writes: a missing
//         fence in one thread while another fences later is not caught.)
//     Dynamic shared memory (the launch's smem= bytes) starts a random
//     multiple of 16 bytes past a 1024-byte boundary of the emulated shared
//     address space, and is filled with 0xff before each block.
// Shared memory (every __shared__ array: the function-local statics of
// namespace kiln, found in the executable's symbol table; the simulator is
// linked with -no-pie) is filled with 0xff before each block. UBSan
// (-fsanitize=alignment) checks the alignment of every typed load and store,
// quant.cuh's 2- and 4-byte loads included (its device branch is compiled).
// A block that deadlocks (a barrier or warp-wide instruction not every
// thread reaches) or exits with cp.async copies never waited for fails.
// Not modelled: timing, the hardware's own rounding in mma and wgmma (the
// emulation sums in float64), the PTX text of the instructions themselves
// (their operand order and encodings: only ptxas checks those), wgmma with
// operands in registers, transposed operands, scale-d 0, the 64- and 32-byte
// swizzles, and the asynchronous proxy's memory model beyond the view above.
#pragma once

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <elf.h>
#include <ucontext.h>

#include <deque>
#include <random>
#include <utility>
#include <vector>

#include "kiln_params.h"

// quant.cuh and common.cuh take their device branches.
#define __CUDACC__ 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static

struct SimDim3 {
	unsigned x, y, z;
};
inline SimDim3 threadIdx, blockIdx, blockDim, gridDim;

struct alignas(8) uint2 {
	unsigned x, y;
};
struct alignas(16) uint4 {
	unsigned x, y, z, w;
};
struct alignas(16) float4 {
	float x, y, z, w;
};

// Built with -ffp-contract=off: single roundings.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdividef(float a, float b) { return a / b; }
inline float __uint_as_float(uint32_t u) {
	float f;
	memcpy(&f, &u, 4);
	return f;
}

namespace sim {

[[noreturn]] inline void fail(const char* fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	printf("FAIL ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	exit(1);
}

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
	std::vector<Copy> pending;              // issued, not committed
	std::deque<std::vector<Copy>> groups;   // committed, not waited for
	bool wg_fenced = false;                 // wgmma.fence since the accumulators were last accessible
};

// WgOp is one wgmma.mma_async of a warpgroup: its operands and the
// accumulators of its 128 threads.
struct WgOp {
	bool bf16 = false;
	int n = 0;
	uint64_t desc_a = 0, desc_b = 0;
	float* acc[128] = {};
};

// Warpgroup is the wgmma state of one warpgroup.
struct Warpgroup {
	int arrived = 0, op = 0;
	std::vector<int> waiting;
	// Operands deposited by the threads that have arrived (by lane 0..127).
	uint64_t desc_a[128], desc_b[128];
	float* acc[128];
	int n[128], bf[128], wait_n[128];
	std::vector<WgOp> uncommitted;
	std::deque<std::vector<WgOp>> groups;
	// Lazy mode: the accumulator values of queued operations, by (lane,
	// accumulator array): the registers themselves hold NaN meanwhile.
	std::vector<std::pair<std::pair<int, float*>, std::vector<float>>> shadow;
};

enum { kOpLdmatrix = 1, kOpMmaF16, kOpMmaBF16 };

struct Slot {
	const uint8_t* addr;
	uint32_t a[4], b[2];
	float c[4];
	uint32_t r[4];
};

struct State {
	std::vector<Fiber> fibers;
	int cur = -1;
	ucontext_t sched;
	std::vector<int> run;
	std::mt19937_64 rng;
	bool lazy = false;
	int n_threads = 0;
	int bar_arrived = 0;
	std::vector<int> bar_waiting;
	std::vector<Slot> slots;  // [warp][lane]
	std::vector<int> warp_arrived, warp_op;
	std::vector<std::vector<int>> warp_waiting;
	void (*kernel)(KilnMatMulParams) = nullptr;
	KilnMatMulParams params;
	std::vector<std::pair<uintptr_t, uintptr_t>> readable;  // [lo, hi) byte ranges cp.async may read
	long ldmatrix_phases = 0, ldmatrix_conflicted = 0;
	long mma_count = 0, cp_async_count = 0;
	long wgmma_count = 0, proxy_fences = 0;
	// Dynamic shared memory: an emulated shared address space of window
	// bytes (1024-byte aligned on the host, so address bits are host bits),
	// the block's dynamic shared memory dyn_bytes from dyn; view is the
	// async proxy's copy (lazy mode).
	std::vector<uint8_t> window_store;
	uint8_t* window = nullptr;
	size_t window_bytes = 0;
	uint8_t* dyn = nullptr;
	size_t dyn_bytes = 0;
	std::vector<uint8_t> view;
	std::vector<Warpgroup> wgs;
};
inline State S;

}  // namespace sim

namespace sim {

// SharedArray is one __shared__ array: [lo, hi).
struct SharedArray {
	uint8_t *lo, *hi;
};
inline std::vector<SharedArray> shared_arrays;

// find_shared_arrays reads the symbol table of /proc/self/exe: the
// __shared__ arrays are the objects whose mangled names start with
// "_ZZN4kiln" (function-local statics in namespace kiln).
inline void find_shared_arrays() {
	FILE* f = fopen("/proc/self/exe", "rb");
	if (!f) fail("cannot open /proc/self/exe");
	std::vector<uint8_t> img;
	uint8_t buf[1 << 16];
	size_t got;
	while ((got = fread(buf, 1, sizeof buf, f)) > 0) img.insert(img.end(), buf, buf + got);
	fclose(f);
	const Elf64_Ehdr* eh = (const Elf64_Ehdr*)img.data();
	if (eh->e_type != ET_EXEC) fail("the simulator must be linked with -no-pie");
	const Elf64_Shdr* sh = (const Elf64_Shdr*)(img.data() + eh->e_shoff);
	for (int i = 0; i < eh->e_shnum; ++i) {
		if (sh[i].sh_type != SHT_SYMTAB) continue;
		const Elf64_Sym* sym = (const Elf64_Sym*)(img.data() + sh[i].sh_offset);
		const char* names = (const char*)(img.data() + sh[sh[i].sh_link].sh_offset);
		for (size_t j = 0; j < sh[i].sh_size / sizeof(Elf64_Sym); ++j) {
			if (ELF64_ST_TYPE(sym[j].st_info) != STT_OBJECT || sym[j].st_size == 0) continue;
			if (strncmp(names + sym[j].st_name, "_ZZN4kiln", 9) != 0) continue;
			uint8_t* lo = (uint8_t*)(uintptr_t)sym[j].st_value;
			shared_arrays.push_back({lo, lo + sym[j].st_size});
		}
	}
	if (shared_arrays.empty()) fail("no __shared__ arrays found in the symbol table");
}

inline bool in_shared(const void* p, size_t n) {
	const uint8_t* b = static_cast<const uint8_t*>(p);
	if (S.dyn != nullptr && b >= S.dyn && b + n <= S.dyn + S.dyn_bytes) return true;
	for (const auto& a : shared_arrays)
		if (b >= a.lo && b + n <= a.hi) return true;
	return false;
}

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

inline void syncthreads() {
	if (++S.bar_arrived == S.n_threads) {
		S.bar_arrived = 0;
		for (int i : S.bar_waiting) release(i);
		S.bar_waiting.clear();
		maybe_yield();
		return;
	}
	S.bar_waiting.push_back(S.cur);
	block_self();
}

// warp_op runs a warp-wide instruction: every lane deposits its operands,
// the last one to arrive computes every lane's results.
inline Slot& warp_op(int op, const Slot& in, void (*compute)(int op, Slot* lanes)) {
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

inline void ldmatrix_compute(int, Slot* lanes) {
	for (int i = 0; i < 4; ++i) {
		int groups = 0;
		for (int j = 0; j < 8; ++j) {
			const uint8_t* row = lanes[8 * i + j].addr;
			if ((uintptr_t)row % 16 != 0) fail("ldmatrix: matrix %d row %d address %p is not 16-byte aligned", i, j, (const void*)row);
			if (!in_shared(row, 16)) fail("ldmatrix: matrix %d row %d address %p is outside shared memory", i, j, (const void*)row);
			groups |= 1 << (((uintptr_t)row >> 4) & 7);
		}
		S.ldmatrix_phases++;
		if (groups != 0xff) S.ldmatrix_conflicted++;
	}
	for (int l = 0; l < 32; ++l)
		for (int i = 0; i < 4; ++i) memcpy(&lanes[l].r[i], lanes[8 * i + l / 4].addr + 4 * (l % 4), 4);
}

inline float half_bits_to_f32(uint32_t h, bool bf) {
	if (bf) return __uint_as_float(h << 16);
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
	float D[16][8];
	for (int i = 0; i < 16; ++i)
		for (int j = 0; j < 8; ++j) {
			double s = C[i][j];
			for (int k = 0; k < 16; ++k) s += A[i][k] * B[k][j];
			D[i][j] = (float)s;
		}
	for (int l = 0; l < 32; ++l) {
		const int g = l >> 2, t = l & 3;
		lanes[l].c[0] = D[g][2 * t];
		lanes[l].c[1] = D[g][2 * t + 1];
		lanes[l].c[2] = D[g + 8][2 * t];
		lanes[l].c[3] = D[g + 8][2 * t + 1];
	}
	S.mma_count++;
}

inline void do_copy(const Copy& c) {
	if (c.bytes > 0) memcpy(c.dst, c.src, c.bytes);
	memset(c.dst + c.bytes, 0, 16 - c.bytes);
}

inline void cp_async16(void* dst, const void* src, int bytes) {
	uint8_t* d = static_cast<uint8_t*>(dst);
	const uint8_t* s = static_cast<const uint8_t*>(src);
	if (bytes < 0 || bytes > 16) fail("cp.async: source size %d", bytes);
	if ((uintptr_t)d % 16 != 0) fail("cp.async: destination %p is not 16-byte aligned", dst);
	if ((uintptr_t)s % 16 != 0) fail("cp.async: source %p is not 16-byte aligned", src);
	if (!in_shared(d, 16)) fail("cp.async: destination %p is outside shared memory", dst);
	if (bytes > 0) {
		bool ok = false;
		for (const auto& r : S.readable) ok = ok || ((uintptr_t)s >= r.first && (uintptr_t)s + bytes <= r.second);
		if (!ok) fail("cp.async: reads %d bytes at %p, outside every valid row (padding or out of bounds)", bytes, src);
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

// ---- wgmma -------------------------------------------------------------------------------

// smem_addr is p's address in the emulated shared address space.
inline uint32_t smem_addr(const void* p) {
	const uint8_t* b = static_cast<const uint8_t*>(p);
	if (S.dyn == nullptr || b < S.window || b >= S.window + S.window_bytes)
		fail("shared address of %p: not in the dynamic shared memory window", p);
	return (uint32_t)(b - S.window);
}

// operand_byte is the byte a descriptor-addressed K-major 16-bit operand
// keeps element (r, kk) at (see the header), as an emulated shared address.
inline uint32_t operand_addr(uint64_t desc, int r, int kk) {
	const uint32_t start = (uint32_t)(desc & 0x3FFF) << 4;
	const uint32_t lbo = (uint32_t)((desc >> 16) & 0x3FFF) << 4;
	const uint32_t sbo = (uint32_t)((desc >> 32) & 0x3FFF) << 4;
	const int base_offset = (int)((desc >> 49) & 7), swizzle = (int)(desc >> 62);
	if (base_offset != 0) fail("wgmma: descriptor %#llx has base offset %d (not modelled)", (unsigned long long)desc, base_offset);
	uint32_t a;
	switch (swizzle) {
	case 0: a = start + (r / 8) * sbo + (r % 8) * 16 + (kk / 8) * lbo + 2 * (kk % 8); break;
	case 1:
		a = start + (r / 8) * sbo + (r % 8) * 128 + 2 * kk;
		a ^= ((a >> 7) & 7) << 4;
		break;
	default: fail("wgmma: descriptor %#llx has swizzle mode %d (64 or 32 bytes: not modelled)", (unsigned long long)desc, swizzle);
	}
	return a;
}

// operand_value reads element (r, kk) through desc from mem (the emulated
// shared address space: live memory or the async proxy's view).
inline double operand_value(const uint8_t* mem, uint64_t desc, int r, int kk, bool bf) {
	const uint32_t a = operand_addr(desc, r, kk);
	const uint8_t* live = S.window + a;
	if (live < S.dyn || live + 2 > S.dyn + S.dyn_bytes)
		fail("wgmma: descriptor %#llx reads element (%d, %d) at shared address %#x, outside the block's dynamic shared memory",
		     (unsigned long long)desc, r, kk, a);
	if (a % 2 != 0) fail("wgmma: element (%d, %d) at odd address %#x", r, kk, a);
	uint16_t bits;
	memcpy(&bits, mem + a, 2);
	return (double)half_bits_to_f32(bits, bf);
}

// wgmma_run computes op: for each lane, d = A·B + c, c from cin(lane),
// results to dout(lane); mem is what the tensor cores read.
template <class In, class Out> inline void wgmma_run(const WgOp& op, const uint8_t* mem, In cin, Out dout) {
	static double A[64][16], B[256][16];
	for (int r = 0; r < 64; ++r)
		for (int kk = 0; kk < 16; ++kk) A[r][kk] = operand_value(mem, op.desc_a, r, kk, op.bf16);
	for (int c = 0; c < op.n; ++c)
		for (int kk = 0; kk < 16; ++kk) B[c][kk] = operand_value(mem, op.desc_b, c, kk, op.bf16);
	for (int lane = 0; lane < 128; ++lane) {
		const int w = lane / 32, g = (lane % 32) / 4, s = lane % 4;
		const float* c = cin(lane);
		float* d = dout(lane);
		float res[256];
		for (int j = 0; j < op.n / 8; ++j)
			for (int h = 0; h < 2; ++h)
				for (int e = 0; e < 2; ++e) {
					const int row = 16 * w + g + 8 * h, col = 8 * j + 2 * s + e;
					double sum = c[4 * j + 2 * h + e];
					for (int kk = 0; kk < 16; ++kk) sum += A[row][kk] * B[col][kk];
					res[4 * j + 2 * h + e] = (float)sum;
				}
		memcpy(d, res, sizeof(float) * op.n / 2);
	}
	S.wgmma_count++;
}

inline std::vector<float>* find_shadow(Warpgroup& g, int lane, float* acc) {
	for (auto& s : g.shadow)
		if (s.first.first == lane && s.first.second == acc) return &s.second;
	return nullptr;
}

// complete_group runs the oldest committed group of g (lazy mode) and hands
// each accumulator array no queued operation still uses back to its thread.
inline void complete_group(Warpgroup& g) {
	std::vector<WgOp> ops = std::move(g.groups.front());
	g.groups.pop_front();
	for (const WgOp& op : ops) {
		auto sh = [&](int lane) {
			std::vector<float>* v = find_shadow(g, lane, op.acc[lane]);
			if (!v) fail("wgmma emulation: lost the accumulators of lane %d", lane);
			return v->data();
		};
		wgmma_run(op, S.view.data(), sh, sh);
	}
	auto still_used = [&](int lane, float* acc) {
		for (const auto& grp : g.groups)
			for (const WgOp& op : grp)
				if (op.acc[lane] == acc) return true;
		for (const WgOp& op : g.uncommitted)
			if (op.acc[lane] == acc) return true;
		return false;
	};
	for (size_t i = 0; i < g.shadow.size();) {
		auto& s = g.shadow[i];
		if (!still_used(s.first.first, s.first.second)) {
			memcpy(s.first.second, s.second.data(), sizeof(float) * s.second.size());
			g.shadow[i] = std::move(g.shadow.back());
			g.shadow.pop_back();
		} else {
			++i;
		}
	}
}

enum { kWgMma = 1, kWgCommit, kWgWait };

// wg_collective runs one warpgroup-wide instruction: each thread deposits
// its operands, the last of the 128 to arrive executes it.
inline void wg_collective(int op, uint64_t da, uint64_t db, float* acc, int n, bool bf, int wait_n) {
	const unsigned tid = S.fibers[S.cur].tid;
	if (S.n_threads % 128 != 0) fail("wgmma: a block of %d threads is not whole warpgroups", S.n_threads);
	Warpgroup& g = S.wgs[tid / 128];
	const int lane = (int)(tid % 128);
	if (op == kWgMma && !S.fibers[S.cur].wg_fenced)
		fail("thread %u: wgmma.mma_async without a wgmma.fence since its accumulators were last accessible", tid);
	g.desc_a[lane] = da;
	g.desc_b[lane] = db;
	g.acc[lane] = acc;
	g.n[lane] = n;
	g.bf[lane] = bf;
	g.wait_n[lane] = wait_n;
	if (g.arrived == 0)
		g.op = op;
	else if (g.op != op)
		fail("warpgroup %u: threads at different warpgroup-wide instructions (%d, %d)", tid / 128, g.op, op);
	if (++g.arrived < 128) {
		g.waiting.push_back(S.cur);
		block_self();
		return;
	}
	// The last thread: check uniformity, then execute.
	for (int l = 1; l < 128; ++l)
		if (g.desc_a[l] != g.desc_a[0] || g.desc_b[l] != g.desc_b[0] || g.n[l] != g.n[0] || g.bf[l] != g.bf[0] || g.wait_n[l] != g.wait_n[0])
			fail("warpgroup %u: lanes 0 and %d give different operands to the same warpgroup-wide instruction", tid / 128, l);
	switch (op) {
	case kWgMma: {
		WgOp w;
		w.bf16 = bf;
		w.n = n;
		w.desc_a = da;
		w.desc_b = db;
		for (int l = 0; l < 128; ++l) w.acc[l] = g.acc[l];
		if (!S.lazy) {
			auto live = [&](int l) { return w.acc[l]; };
			wgmma_run(w, S.window, live, live);
		} else {
			for (int l = 0; l < 128; ++l) {
				if (!find_shadow(g, l, w.acc[l])) {
					g.shadow.push_back({{l, w.acc[l]}, std::vector<float>(w.acc[l], w.acc[l] + n / 2)});
					for (int i = 0; i < n / 2; ++i) w.acc[l][i] = NAN;
				}
			}
		}
		g.uncommitted.push_back(w);
		break;
	}
	case kWgCommit:
		g.groups.push_back(std::move(g.uncommitted));
		g.uncommitted.clear();
		break;
	case kWgWait:
		while ((int)g.groups.size() > wait_n) {
			if (S.lazy)
				complete_group(g);
			else
				g.groups.pop_front();
		}
		for (int l = 0; l < 128; ++l) S.fibers[(tid / 128) * 128 + l].wg_fenced = false;
		break;
	}
	g.arrived = 0;
	for (int i : g.waiting) release(i);
	g.waiting.clear();
}

inline void fence_proxy_async() {
	S.proxy_fences++;
	if (S.lazy) memcpy(S.view.data(), S.window, S.window_bytes);
	maybe_yield();
}

inline void fiber_entry() {
	S.kernel(S.params);
	S.fibers[S.cur].done = true;
}

// run_grid runs kernel over grid with block threads.
inline void run_grid(void (*kernel)(KilnMatMulParams), const KilnMatMulParams& p, SimDim3 grid, int threads) {
	const size_t kStack = 256 << 10;
	if (shared_arrays.empty()) find_shared_arrays();
	S.kernel = kernel;
	S.params = p;
	S.n_threads = threads;
	S.fibers.resize(threads);
	const int warps = (threads + 31) / 32;
	S.slots.assign(32 * warps, Slot{});
	S.warp_arrived.assign(warps, 0);
	S.warp_op.assign(warps, 0);
	S.warp_waiting.assign(warps, {});
	S.wgs.assign((threads + 127) / 128, Warpgroup{});
	if (S.dyn_bytes > 0 && S.window == nullptr) {
		// 1024-byte aligned on the host; the block's memory starts 16·(1..63)
		// bytes in, as if static shared memory came first.
		S.window_bytes = 1024 + S.dyn_bytes;
		S.window_store.assign(S.window_bytes + 1024, 0);
		S.window = S.window_store.data() + (1024 - (uintptr_t)S.window_store.data() % 1024) % 1024;
		S.dyn = S.window + 16 * (1 + S.rng() % 63);
		S.view.assign(S.window_bytes, 0xff);
	}
	gridDim = grid;
	blockDim = SimDim3{(unsigned)threads, 1, 1};
	for (unsigned z = 0; z < grid.z; ++z)
		for (unsigned y = 0; y < grid.y; ++y)
			for (unsigned x = 0; x < grid.x; ++x) {
				blockIdx = SimDim3{x, y, z};
				for (const auto& a : shared_arrays) memset(a.lo, 0xff, a.hi - a.lo);
				if (S.window) {
					memset(S.window, 0xff, S.window_bytes);
					memset(S.view.data(), 0xff, S.window_bytes);
				}
				S.run.clear();
				S.bar_arrived = 0;
				S.bar_waiting.clear();
				for (int i = 0; i < threads; ++i) {
					Fiber& f = S.fibers[i];
					f.stack.resize(kStack);
					f.tid = i;
					f.done = f.blocked = f.wg_fenced = false;
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
						     x, y, z, i);
					if (!f.pending.empty()) fail("block (%u, %u, %u): thread %d exited with uncommitted cp.async copies", x, y, z, i);
					for (const auto& g : f.groups)
						if (!g.empty()) fail("block (%u, %u, %u): thread %d exited with cp.async copies never waited for", x, y, z, i);
				}
				for (size_t w = 0; w < S.wgs.size(); ++w) {
					if (!S.wgs[w].uncommitted.empty()) fail("block (%u, %u, %u): warpgroup %zu exited with uncommitted wgmma", x, y, z, w);
					for (const auto& g : S.wgs[w].groups)
						if (!g.empty()) fail("block (%u, %u, %u): warpgroup %zu exited with wgmma never waited for", x, y, z, w);
				}
			}
}

}  // namespace sim

inline void __syncthreads() { sim::syncthreads(); }
template <typename T> inline T __shfl_xor_sync(unsigned, T v, int) {
	sim::fail("__shfl_xor_sync is not simulated");
	return v;
}
inline unsigned atomicCAS(unsigned*, unsigned, unsigned) { sim::fail("atomicCAS is not simulated"); }

// The PTX wrappers of matmul_common.cuh under KILN_HOST_SIM.
inline void kiln_sim_cp_async16(void* dst, const void* src, int bytes) { sim::cp_async16(dst, src, bytes); }
inline void kiln_sim_cp_async_commit() { sim::cp_async_commit(); }
inline void kiln_sim_cp_async_wait(int n) { sim::cp_async_wait(n); }
inline void kiln_sim_ldmatrix_x4(uint32_t (&r)[4], const void* row) {
	sim::Slot in{};
	in.addr = static_cast<const uint8_t*>(row);
	const sim::Slot& out = sim::warp_op(sim::kOpLdmatrix, in, sim::ldmatrix_compute);
	for (int i = 0; i < 4; ++i) r[i] = out.r[i];
}
inline void kiln_sim_mma_16816(bool bf16, float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
	sim::Slot in{};
	for (int i = 0; i < 4; ++i) {
		in.a[i] = a[i];
		in.c[i] = c[i];
	}
	in.b[0] = b0;
	in.b[1] = b1;
	const sim::Slot& out = sim::warp_op(bf16 ? sim::kOpMmaBF16 : sim::kOpMmaF16, in, sim::mma_compute);
	for (int i = 0; i < 4; ++i) c[i] = out.c[i];
}

// The PTX wrappers of matmul_wgmma.cu under KILN_HOST_SIM.
inline uint8_t* kiln_sim_dynamic_smem() {
	if (sim::S.dyn == nullptr) sim::fail("the kernel uses dynamic shared memory, and the launch gave it none (smem=)");
	return sim::S.dyn;
}
inline uint32_t kiln_sim_smem_addr(const void* p) { return sim::smem_addr(p); }
inline void kiln_sim_wgmma_fence() { sim::S.fibers[sim::S.cur].wg_fenced = true; }
inline void kiln_sim_wgmma_commit() { sim::wg_collective(sim::kWgCommit, 0, 0, nullptr, 0, false, 0); }
inline void kiln_sim_wgmma_wait(int n) { sim::wg_collective(sim::kWgWait, 0, 0, nullptr, 0, false, n); }
inline void kiln_sim_fence_proxy_async() { sim::fence_proxy_async(); }
inline void kiln_sim_wgmma(bool bf16, int n, float* d, uint64_t desc_a, uint64_t desc_b) {
	sim::wg_collective(sim::kWgMma, desc_a, desc_b, d, n, bf16, 0);
}
