// hopper.h — the sm_90a instructions of attention_wgmma.cu, emulated for the
// host simulator (included by sim.h) from the PTX ISA's definitions,
// written independently of the kernel:
//
//   - mbarrier (init, arrive, arrive.expect_tx, try_wait.parity in a loop):
//     a barrier has an expected arrival count, a pending count, a signed
//     tx-count and a phase number; a phase completes when the pending count
//     and the tx-count are both 0, and then the phase number goes up and
//     the pending count is reset. Waiting for parity P returns at once when
//     P differs from the current phase's parity (the phase before it
//     completed), else blocks until the phase completes. An arrival with no
//     pending arrival left, a tx-count below 0 at completion time, a wait
//     or arrival on an address that was never initialised, or a phase left
//     with queued copies at the end of a block is a failure.
//   - cp.async.bulk.tensor (tiled, 3-d and 4-d, .mbarrier::complete_tx):
//     the tensor map is cuda.FakeTensorMap's layout (the fake drivers'
//     encoding; the real one is opaque). The box (box[i] elements from the
//     coordinates, element strides 1 only) is laid out densely in shared
//     memory, dimension 0 fastest; elements with any coordinate outside
//     [0, dims[i]) are zeros, and every box byte counts towards the
//     tx-count, in bounds or not; the global address of an element is
//     global + c0·elem + Σ c_i·strides[i−1], and must lie in a mapped buffer.
//     With 128-byte swizzling (the only mode modelled besides none) the
//     box's inner extent must be 128 bytes, the destination 1024-byte
//     aligned, and the byte at shared address a lands at a XOR (((a >> 7)
//     & 7) << 4). Eager mode writes at issue and completes the bytes at
//     once; lazy mode fills the destination with 0xff at issue and writes
//     the box only when its mbarrier phase completes (when a waiter waits
//     for it), so that reading a stage before its barrier, or a copy whose
//     bytes were not armed, shows as NaN or a deadlock.
//   - wgmma.mma_async .m64nNk16 .f32 .f16/.bf16 (all 128 threads of the
//     warpgroup take part, with equal descriptors): A from a descriptor
//     (K-major) or from registers (thread 32w + lane, g = lane/4, t =
//     lane%4, holds rows 16w+g and 16w+g+8 of columns 2t, 2t+1, 2t+8, 2t+9
//     in a[0..3]: (g, 2t..), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..));
//     B from a descriptor, K-major or (transpose bit) MN-major; D:
//     d[4j + e] is row 16w + g + 8(e/2), column 8j + 2t + e%2. Matrix
//     descriptors: start, LBO, SBO (bits 0-13, 16-29, 32-45, each >> 4; the
//     start is bits 4..17 of the shared address),
//     base offset (bits 49-51, must be 0), swizzle mode (bits 62-63; 128B
//     only). Canonical 128B-swizzle layouts for 16-bit types (T = 8):
//     K-major ((8,m),(T,2k)):((8T,SBO),(1,T)) — row r, column k at byte
//     start + (r/8)·SBO + (r%8)·128 + 2k; MN-major
//     ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)) — n, k at byte start +
//     (n/64)·LBO + 2(n%64) + (k%8)·128 + (k/8)·SBO; then the 128-byte
//     swizzle on the address as for TMA. Products are summed in double and
//     rounded once to F32 (the hardware's order and rounding are not
//     modelled). scale-d 0 ignores the old D. Lazy mode: results are
//     computed and written to the registers only at the wgmma.wait_group
//     that completes their group, from the shared memory of that moment,
//     and the accumulator registers read NaN in between; eager mode
//     computes at issue. Several wgmmas on the same accumulator in flight
//     chain. commit_group and wait_group are warpgroup-wide too.
//   - bar.sync with an id and a thread count (named barriers).
//   - st.shared.v4 of zeros (16-byte aligned, inside shared memory).
// Not modelled: wgmma.fence, fence.proxy.async and fence.mbarrier_init (no
// proxies here: every write is visible at once), setmaxnreg, clusters,
// multicast, other swizzle modes and element strides, L2 promotion, timing.
#pragma once

#include <map>
#include <type_traits>

namespace sim {

// ---- mbarriers -----------------------------------------------------------------------

struct TmaCopy {
	uint8_t* dst;               // shared memory
	std::vector<uint8_t> data;  // the box's bytes, swizzled, in destination order
	std::vector<size_t> offs;   // destination offset of each byte run (16 bytes each)
};

struct Mbar {
	uint32_t count = 0, pending = 0, phase = 0;
	int64_t tx = 0;
	std::vector<TmaCopy> queued;  // lazy: copies that land when the phase completes
	int64_t queued_bytes = 0;
	std::vector<int> waiters;
};

struct NamedBar {
	int arrived = 0, expected = 0;
	std::vector<int> waiting;
};

// WgOp is one wgmma of a warpgroup.
struct WgOp {
	bool bf16, a_regs, trans_b, scale_d;
	int n;
	uint64_t desc_a, desc_b;
	uint32_t a[128][4];
	float* d[128];
	std::vector<float> c[128];  // the accumulator input, per thread (N/2 values)
	int chain[128];             // index of the in-flight op whose result is this op's C, or -1
	std::vector<float> result[128];
	bool done = false;
};

struct WgState {
	int arrived = 0, kind = 0;
	std::vector<int> waiting;
	// Per-thread deposits of the instruction being gathered.
	uint64_t desc_a[128], desc_b[128];
	uint32_t a[128][4];
	float* d[128];
	int n[128], flags[128], arg[128];
	std::vector<WgOp> ops;             // issued, in order (kept until the block ends)
	std::vector<int> uncommitted;      // indices into ops
	std::deque<std::vector<int>> groups;
};

struct Hopper {
	std::map<uint32_t, Mbar> mbars;
	std::map<int, NamedBar> named;
	std::vector<WgState> wgs;
	long wgmma_count = 0, tma_count = 0;
};
inline Hopper H;

inline void hopper_begin_block(int threads) {
	H.mbars.clear();
	H.named.clear();
	H.wgs.assign((threads + 127) / 128, WgState{});
}

inline void land(TmaCopy& c) {
	for (size_t i = 0; i < c.offs.size(); ++i) memcpy(c.dst + c.offs[i], c.data.data() + 16 * i, 16);
}

// mbar_progress completes the current phase when it can; land says whether
// lazy copies may land now (a waiter is there).
inline void mbar_progress(Mbar& b, bool land_now) {
	if (b.pending != 0) return;
	if (!b.queued.empty()) {
		if (!land_now || b.queued_bytes != b.tx) return;
		for (TmaCopy& c : b.queued) land(c);
		b.tx -= b.queued_bytes;
		b.queued.clear();
		b.queued_bytes = 0;
	}
	if (b.tx < 0) fail("mbarrier: a phase received %lld bytes more than arrive.expect_tx announced", (long long)-b.tx);
	if (b.tx != 0) return;
	b.phase++;
	b.pending = b.count;
	for (int i : b.waiters) release(i);
	b.waiters.clear();
}

inline Mbar& mbar_at(uint32_t addr, const char* what) {
	auto it = H.mbars.find(addr);
	if (it == H.mbars.end()) fail("%s on shared address %#x, which is no initialised mbarrier", what, addr);
	return it->second;
}

inline void mbar_init(uint32_t addr, uint32_t count) {
	if (addr % 8 != 0 || !in_shared((const void*)(uintptr_t)addr, 8)) fail("mbarrier.init at %#x: not 8-byte aligned shared memory", addr);
	if (count < 1) fail("mbarrier.init with count %u", count);
	Mbar b;
	b.count = b.pending = count;
	H.mbars[addr] = b;
}

inline void mbar_arrive(uint32_t addr, uint32_t tx) {
	Mbar& b = mbar_at(addr, "mbarrier.arrive");
	if (b.pending == 0) fail("mbarrier.arrive at %#x: the phase has no pending arrival left", addr);
	b.tx += tx;
	b.pending--;
	mbar_progress(b, !b.waiters.empty());
	maybe_yield();
}

inline void mbar_wait(uint32_t addr, uint32_t parity) {
	Mbar& b = mbar_at(addr, "mbarrier.try_wait");
	if ((parity & 1) != (b.phase & 1)) return;  // that phase completed
	mbar_progress(b, true);
	if ((parity & 1) != (b.phase & 1)) return;
	b.waiters.push_back(S.cur);
	block_self();
	if ((parity & 1) == (mbar_at(addr, "mbarrier.try_wait").phase & 1)) fail("mbarrier: woken for a phase that did not complete");
}

// ---- TMA --------------------------------------------------------------------------------

struct FakeMap {
	int dtype, rank, swizzle;
	uint64_t global;
	uint32_t dims[5], box[5], estride[5];
	uint64_t strides[4];
};

inline FakeMap read_map(const void* p) {
	const uint8_t* m = static_cast<const uint8_t*>(p);
	if (memcmp(m, "KTMP", 4) != 0) fail("cp.async.bulk.tensor: the tensor map is not the fake driver's encoding (no KTMP magic)");
	FakeMap f{};
	f.dtype = m[4];
	f.rank = m[5];
	f.swizzle = m[6];
	memcpy(&f.global, m + 8, 8);
	memcpy(f.dims, m + 16, 20);
	memcpy(f.box, m + 36, 20);
	memcpy(f.strides, m + 56, 32);
	memcpy(f.estride, m + 88, 20);
	return f;
}

inline uint32_t swizzle128(uint32_t a) { return a ^ (((a >> 7) & 7) << 4); }

inline void tma_load(uint32_t dst, const void* map, int rank, const int* coord, uint32_t bar) {
	const FakeMap f = read_map(map);
	if (f.rank != rank) fail("cp.async.bulk.tensor.%dd with a rank-%d tensor map", rank, f.rank);
	const int eb = f.dtype == 6 || f.dtype == 9 || f.dtype == 1 ? 2 : (f.dtype == 0 ? 1 : 4);
	for (int i = 0; i < rank; ++i)
		if (f.estride[i] != 1) fail("cp.async.bulk.tensor: element strides other than 1 are not modelled");
	if (f.swizzle != 0 && f.swizzle != 3) fail("cp.async.bulk.tensor: swizzle mode %d is not modelled", f.swizzle);
	const uint32_t inner = f.box[0] * eb;
	if (f.swizzle == 3 && (inner != 128 || dst % 1024 != 0))
		fail("cp.async.bulk.tensor: 128B swizzle with an inner box of %u bytes to %#x (modelled: 128 bytes, 1024-byte aligned)", inner, dst);
	if (dst % 128 != 0) fail("cp.async.bulk.tensor: destination %#x is not 128-byte aligned", dst);
	uint64_t n = 1;
	for (int i = 0; i < rank; ++i) n *= f.box[i];
	const size_t bytes = n * eb;
	if (!in_shared((const void*)(uintptr_t)dst, bytes)) fail("cp.async.bulk.tensor: %zu bytes at %#x leave the dynamic shared memory", bytes, dst);
	// The box, densely, then swizzled 16 bytes at a time.
	std::vector<uint8_t> box(bytes, 0);
	int idx[5] = {0, 0, 0, 0, 0};
	for (uint64_t e = 0; e < n; ++e) {
		uint64_t rem = e;
		bool in = true;
		uint64_t addr = f.global;
		for (int i = 0; i < rank; ++i) {
			idx[i] = (int)(rem % f.box[i]);
			rem /= f.box[i];
			const int64_t c = (int64_t)coord[i] + idx[i];
			if (c < 0 || c >= (int64_t)f.dims[i]) in = false;
			addr += i == 0 ? (uint64_t)c * eb : (uint64_t)c * f.strides[i - 1];
		}
		if (!in) continue;
		bool ok = false;
		for (const auto& r : S.readable) ok = ok || (addr >= r.first && addr + eb <= r.second);
		if (!ok) fail("cp.async.bulk.tensor: element at %#llx is inside the tensor map but outside every buffer", (unsigned long long)addr);
		memcpy(&box[e * eb], (const void*)(uintptr_t)addr, eb);
	}
	TmaCopy c;
	c.dst = (uint8_t*)(uintptr_t)dst;
	c.data = box;
	for (size_t o = 0; o < bytes; o += 16) {
		const uint32_t a = dst + (uint32_t)o;
		c.offs.push_back((f.swizzle == 3 ? swizzle128(a) : a) - dst);
	}
	H.tma_count++;
	Mbar& b = mbar_at(bar, "cp.async.bulk.tensor's mbarrier");
	if (!S.lazy) {
		land(c);
		b.tx -= (int64_t)bytes;
		mbar_progress(b, true);
	} else {
		memset(c.dst, 0xff, bytes);
		b.queued_bytes += (int64_t)bytes;
		b.queued.push_back(std::move(c));
		mbar_progress(b, !b.waiters.empty());
	}
	maybe_yield();
}

// ---- named barriers, shared stores -------------------------------------------------------

inline void named_barrier(int id, int n) {
	if (id < 1 || id > 15) fail("bar.sync %d: named barriers here are 1..15", id);
	if (n % 32 != 0 || n > S.n_threads) fail("bar.sync %d, %d threads", id, n);
	NamedBar& b = H.named[id];
	if (b.arrived == 0) b.expected = n;
	if (b.expected != n) fail("bar.sync %d: thread counts %d and %d", id, b.expected, n);
	if (++b.arrived == n) {
		b.arrived = 0;
		for (int i : b.waiting) release(i);
		b.waiting.clear();
		maybe_yield();
		return;
	}
	b.waiting.push_back(S.cur);
	block_self();
}

inline void st_shared_zero16(uint32_t addr) {
	if (addr % 16 != 0 || !in_shared((const void*)(uintptr_t)addr, 16)) fail("st.shared.v4 at %#x", addr);
	memset((void*)(uintptr_t)addr, 0, 16);
}

// ---- wgmma ------------------------------------------------------------------------------

enum { kWgMma = 1, kWgCommit, kWgWait };

// wg_gather: every thread of the warpgroup deposits, the last one runs fn.
template <typename F> inline void wg_gather(int kind, F fn) {
	const int tid = (int)S.fibers[S.cur].tid, w = tid / 128;
	if ((w + 1) * 128 > S.n_threads) fail("a warpgroup instruction in warpgroup %d of a %d-thread block", w, S.n_threads);
	WgState& g = H.wgs[w];
	if (g.arrived == 0)
		g.kind = kind;
	else if (g.kind != kind)
		fail("warpgroup %d: threads at different warpgroup instructions (%d, %d)", w, g.kind, kind);
	if (++g.arrived == 128) {
		g.arrived = 0;
		fn(g);
		for (int i : g.waiting) release(i);
		g.waiting.clear();
		return;
	}
	g.waiting.push_back(S.cur);
	block_self();
}

inline double elem_at(uint32_t addr, bool bf) {
	if (!in_shared((const void*)(uintptr_t)addr, 2)) fail("wgmma: operand element at %#x outside the dynamic shared memory", addr);
	uint16_t h;
	memcpy(&h, (const void*)(uintptr_t)addr, 2);
	return half_bits_to_f32(h, bf);
}

struct Desc {
	uint32_t start, lbo, sbo;
};
inline Desc decode_desc(uint64_t d) {
	if (((d >> 49) & 7) != 0) fail("wgmma: descriptor base offset %d is not modelled", (int)((d >> 49) & 7));
	if ((d >> 62) != 1) fail("wgmma: descriptor swizzle mode %d is not modelled (128B only)", (int)(d >> 62));
	// The descriptor holds address bits 4..17; the simulator's shared memory
	// is 256 KiB-aligned (main.cc), so its base supplies the bits above.
	const uint32_t base = (uint32_t)(uintptr_t)S.smem & ~0x3FFFFu;
	if (((uintptr_t)S.smem & 0x3FFFF) != 0) fail("the simulator's shared memory is not 256 KiB-aligned");
	return Desc{base + ((uint32_t)(d & 0x3FFF) << 4), (uint32_t)((d >> 16) & 0x3FFF) << 4, (uint32_t)((d >> 32) & 0x3FFF) << 4};
}
// k_major: row r (M or N), column k (0..15); mn_major: n, k.
inline uint32_t k_major(const Desc& d, int r, int k) { return swizzle128(d.start + (r / 8) * d.sbo + (r % 8) * 128 + 2 * k); }
inline uint32_t mn_major(const Desc& d, int n, int k) {
	return swizzle128(d.start + (n / 64) * d.lbo + 2 * (n % 64) + (k % 8) * 128 + (k / 8) * d.sbo);
}

inline void wgmma_compute(WgOp& op, std::vector<WgOp>& ops) {
	if (op.done) return;
	std::vector<double> Abuf(64 * 16), Bbuf(16 * 256);
	auto A = reinterpret_cast<double(*)[16]>(Abuf.data());
	auto B = reinterpret_cast<double(*)[256]>(Bbuf.data());
	const bool bf = op.bf16;
	if (op.a_regs) {
		for (int th = 0; th < 128; ++th) {
			const int w = th / 32, l = th % 32, g = l / 4, t = l % 4;
			const int rows[4] = {16 * w + g, 16 * w + g + 8, 16 * w + g, 16 * w + g + 8};
			const int cols[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
			for (int q = 0; q < 4; ++q) {
				A[rows[q]][cols[q]] = half_bits_to_f32(op.a[th][q] & 0xffff, bf);
				A[rows[q]][cols[q] + 1] = half_bits_to_f32(op.a[th][q] >> 16, bf);
			}
		}
	} else {
		const Desc da = decode_desc(op.desc_a);
		for (int m = 0; m < 64; ++m)
			for (int k = 0; k < 16; ++k) A[m][k] = elem_at(k_major(da, m, k), bf);
	}
	const Desc db = decode_desc(op.desc_b);
	for (int k = 0; k < 16; ++k)
		for (int n = 0; n < op.n; ++n) B[k][n] = elem_at(op.trans_b ? mn_major(db, n, k) : k_major(db, n, k), bf);
	for (int th = 0; th < 128; ++th) {
		const int w = th / 32, l = th % 32, g = l / 4, t = l % 4;
		std::vector<float> c;
		if (op.chain[th] >= 0) {
			const WgOp& prev = ops[op.chain[th]];
			if (!prev.done) fail("wgmma: an accumulator's earlier wgmma completes after a later one");
			c = prev.result[th];
		} else {
			c = op.c[th];
		}
		std::vector<float>& out = op.result[th];
		out.assign(op.n / 2, 0.0f);
		for (int i = 0; i < op.n / 2; ++i) {
			const int j = i / 4, e = i % 4;
			const int m = 16 * w + g + 8 * (e / 2), n = 8 * j + 2 * t + e % 2;
			double s = op.scale_d ? (double)c[i] : 0.0;
			for (int k = 0; k < 16; ++k) s += A[m][k] * B[k][n];
			out[i] = (float)s;
		}
	}
	op.done = true;
	H.wgmma_count++;
}

inline void wgmma_write(WgOp& op) {
	for (int th = 0; th < 128; ++th) memcpy(op.d[th], op.result[th].data(), sizeof(float) * (op.n / 2));
}

inline void wgmma(bool bf, int n, float* d, const uint32_t* a, uint64_t desc_a, uint64_t desc_b, bool scale_d, bool trans_b) {
	const int th = (int)S.fibers[S.cur].tid % 128;
	WgState& g0 = H.wgs[S.fibers[S.cur].tid / 128];
	g0.d[th] = d;
	g0.desc_a[th] = desc_a;
	g0.desc_b[th] = desc_b;
	g0.n[th] = n;
	g0.flags[th] = (bf ? 1 : 0) | (a != nullptr ? 2 : 0) | (scale_d ? 4 : 0) | (trans_b ? 8 : 0);
	if (a != nullptr)
		for (int q = 0; q < 4; ++q) g0.a[th][q] = a[q];
	wg_gather(kWgMma, [](WgState& g) {
		for (int i = 1; i < 128; ++i)
			if (g.desc_a[i] != g.desc_a[0] || g.desc_b[i] != g.desc_b[0] || g.n[i] != g.n[0] || g.flags[i] != g.flags[0])
				fail("wgmma: thread %d of the warpgroup has another shape, flags or descriptor than thread 0", i);
		WgOp op;
		op.bf16 = g.flags[0] & 1;
		op.a_regs = g.flags[0] & 2;
		op.scale_d = g.flags[0] & 4;
		op.trans_b = g.flags[0] & 8;
		op.n = g.n[0];
		op.desc_a = g.desc_a[0];
		op.desc_b = g.desc_b[0];
		const int self = (int)g.ops.size();
		for (int th = 0; th < 128; ++th) {
			op.d[th] = g.d[th];
			for (int q = 0; q < 4; ++q) op.a[th][q] = g.a[th][q];
			op.chain[th] = -1;
			for (int i = self - 1; i >= 0 && op.chain[th] < 0; --i)
				if (!g.ops[i].done && g.ops[i].d[th] == g.d[th]) op.chain[th] = i;
			if (op.chain[th] < 0) op.c[th].assign(g.d[th], g.d[th] + op.n / 2);
		}
		g.ops.push_back(std::move(op));
		WgOp& me = g.ops.back();
		if (!S.lazy) {
			wgmma_compute(me, g.ops);
			wgmma_write(me);
		} else {
			for (int th = 0; th < 128; ++th)
				for (int i = 0; i < me.n / 2; ++i) me.d[th][i] = NAN;  // in flight: unreadable
		}
		g.uncommitted.push_back(self);
	});
}

inline void wgmma_commit() {
	wg_gather(kWgCommit, [](WgState& g) {
		g.groups.push_back(g.uncommitted);
		g.uncommitted.clear();
	});
}

inline void wgmma_wait(int n) {
	H.wgs[S.fibers[S.cur].tid / 128].arg[S.fibers[S.cur].tid % 128] = n;
	wg_gather(kWgWait, [](WgState& g) {
		const int keep = g.arg[0];
		if (!g.uncommitted.empty()) fail("wgmma.wait_group with %zu wgmmas never committed", g.uncommitted.size());
		while ((int)g.groups.size() > keep) {
			for (int i : g.groups.front()) {
				wgmma_compute(g.ops[i], g.ops);
				if (S.lazy) wgmma_write(g.ops[i]);
			}
			g.groups.pop_front();
		}
		// Completed ops no longer matter (chains point only at pending ones).
		bool all_done = g.groups.empty();
		if (all_done) g.ops.clear();
	});
}

inline void hopper_end_block(SimDim3 b) {
	for (auto& [addr, m] : H.mbars)
		if (!m.queued.empty())
			fail("block (%u, %u, %u): mbarrier %#x has %zu TMA copies whose phase never completed", b.x, b.y, b.z, addr, m.queued.size());
	for (size_t w = 0; w < H.wgs.size(); ++w)
		if (!H.wgs[w].groups.empty() || !H.wgs[w].uncommitted.empty())
			fail("block (%u, %u, %u): warpgroup %zu exited with wgmmas never waited for", b.x, b.y, b.z, w);
}

}  // namespace sim

// The PTX wrappers of attention_wgmma.cu under KILN_HOST_SIM.
#define __grid_constant__
inline void kiln_sim_mbar_init(uint32_t bar, uint32_t count) { sim::mbar_init(bar, count); }
inline void kiln_sim_mbar_arrive(uint32_t bar, uint32_t tx) { sim::mbar_arrive(bar, tx); }
inline void kiln_sim_mbar_wait(uint32_t bar, uint32_t parity) { sim::mbar_wait(bar, parity); }
inline void kiln_sim_tma_load(uint32_t dst, const void* map, int rank, const int* c, uint32_t bar) {
	sim::tma_load(dst, map, rank, c, bar);
}
inline void kiln_sim_named_barrier(int id, int n) { sim::named_barrier(id, n); }
inline void kiln_sim_st_shared_zero16(uint32_t addr) { sim::st_shared_zero16(addr); }
inline void kiln_sim_wgmma(bool bf16, int n, float* d, const uint32_t* a, uint64_t desc_a, uint64_t desc_b, bool scale_d,
                           bool trans_b) {
	sim::wgmma(bf16, n, d, a, desc_a, desc_b, scale_d, trans_b);
}
inline void kiln_sim_wgmma_commit() { sim::wgmma_commit(); }
inline void kiln_sim_wgmma_wait(int n) { sim::wgmma_wait(n); }
