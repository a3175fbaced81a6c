// main.cc — the attention host simulator's driver (see sim.h and
// attention_sim_test.go).
//
// Usage: attentionsim INPUT OUTPUT
//
// INPUT (little endian), written by the Go test:
//   "KATT" u32 version (1) u64 seed u32 lazy
//   u32 n_buffers, each: u64 map_base u64 map_bytes u64 addr u64 len, len bytes
//   u32 n_launches, each: u32 name_len, name, u32 grid x y z, u32 threads,
//       u32 shared_bytes, u32 arg_len, arg bytes (the packed parameter struct)
// Every buffer is mapped at its device address (map_base, map_bytes page
// aligned, unmapped pages between buffers), so the parameter structs the Go
// launchers packed run unchanged; the launches run in order. OUTPUT gets
// every buffer's len bytes after the last launch, in the input's order.
// Prints "ok" and the counts of emulated instructions, or "FAIL ...".
#include "sim.h"

#include <sys/mman.h>

#include <map>
#include <string>

#include "../../append_kv.cu"
#include "../../attention.cu"
#include "../../attention_decode.cu"
#include "../../attention_prefill.cu"
#include "../../attention_wgmma.cu"

// The dynamic shared memory (extern __shared__ smem[] of the kernels).
namespace kiln {
namespace attn {
// 256 KiB-aligned: a wgmma descriptor's 18-bit start address is then the
// offset in it (hopper.h), as on the GPU, where shared addresses are small.
alignas(1 << 18) unsigned char smem[sim::kSharedMax];
}  // namespace attn
}  // namespace kiln

typedef std::function<void()> (*Binder)(const std::vector<uint8_t>&);

template <typename P, void (*K)(P)> std::function<void()> bind(const std::vector<uint8_t>& args) {
	if (args.size() != sizeof(P)) sim::fail("%zu argument bytes, the kernel takes %zu", args.size(), sizeof(P));
	P p;
	memcpy(&p, args.data(), sizeof p);
	return [p] { K(p); };
}

// The wgmma kernels take the parameter struct, then two tensor maps, each
// at the next multiple of 64 bytes (as cuda.Args.TensorMap packs them).
template <void (*K)(KilnAttentionParams, KilnTensorMap, KilnTensorMap)>
std::function<void()> bind_tma(const std::vector<uint8_t>& args) {
	const size_t off = (sizeof(KilnAttentionParams) + 63) / 64 * 64;
	if (args.size() != off + 2 * sizeof(KilnTensorMap))
		sim::fail("%zu argument bytes, the kernel takes %zu", args.size(), off + 2 * sizeof(KilnTensorMap));
	KilnAttentionParams p;
	KilnTensorMap mk, mv;
	memcpy(&p, args.data(), sizeof p);
	memcpy(&mk, args.data() + off, sizeof mk);
	memcpy(&mv, args.data() + off + sizeof mk, sizeof mv);
	return [p, mk, mv] { K(p, mk, mv); };
}

#define SIM_WGMMA(DT) \
	{"attention_" #DT "_wgmma_d64", bind_tma<attention_##DT##_wgmma_d64>}, {"attention_" #DT "_wgmma_d128", bind_tma<attention_##DT##_wgmma_d128>}, \
	    {"attention_" #DT "_wgmma_d256", bind_tma<attention_##DT##_wgmma_d256>}

#define SIM_ATTN(NAME) {#NAME, bind<KilnAttentionParams, NAME>}
#define SIM_APPEND(NAME) {#NAME, bind<KilnAppendKVParams, NAME>}
#define SIM_TILES(KIND, DT) \
	SIM_ATTN(attention_##DT##_##KIND##_d48), SIM_ATTN(attention_##DT##_##KIND##_d64), SIM_ATTN(attention_##DT##_##KIND##_d80), \
	    SIM_ATTN(attention_##DT##_##KIND##_d96), SIM_ATTN(attention_##DT##_##KIND##_d128),                                   \
	    SIM_ATTN(attention_##DT##_##KIND##_d160), SIM_ATTN(attention_##DT##_##KIND##_d256)

static const std::map<std::string, Binder> kKernels = {
    SIM_ATTN(attention_f32),          SIM_ATTN(attention_f16),         SIM_ATTN(attention_bf16),
    SIM_ATTN(attention_f16_combine),  SIM_ATTN(attention_bf16_combine), SIM_TILES(prefill, f16),
    SIM_TILES(prefill, bf16),         SIM_TILES(decode, f16),          SIM_TILES(decode, bf16),
    SIM_WGMMA(f16),                   SIM_WGMMA(bf16),
    SIM_APPEND(append_kv_f32),        SIM_APPEND(append_kv_f16),       SIM_APPEND(append_kv_bf16),
};

static FILE* g_in;
static void read_bytes(void* p, size_t n) {
	if (fread(p, 1, n, g_in) != n) sim::fail("input: truncated");
}
static uint32_t u32() {
	uint32_t v;
	read_bytes(&v, 4);
	return v;
}
static uint64_t u64() {
	uint64_t v;
	read_bytes(&v, 8);
	return v;
}

static void on_fault(int sig, siginfo_t* info, void*) {
	char msg[160];
	const int n = snprintf(msg, sizeof msg, "FAIL memory fault (signal %d) at address %p: a load or store outside every buffer\n", sig,
	                       info->si_addr);
	if (write(1, msg, n) < 0) _exit(2);
	_exit(1);
}

int main(int argc, char** argv) {
	if (argc != 3) sim::fail("usage: attentionsim INPUT OUTPUT");
	g_in = fopen(argv[1], "rb");
	if (!g_in) sim::fail("cannot open %s", argv[1]);
	char magic[4];
	read_bytes(magic, 4);
	if (memcmp(magic, "KATT", 4) != 0 || u32() != 1) sim::fail("input: not an attentionsim version 1 file");
	sim::S.rng.seed(u64());
	sim::S.lazy = u32() != 0;
	sim::S.smem = kiln::attn::smem;

	struct Buffer {
		uint8_t* addr;
		uint64_t len;
	};
	std::vector<Buffer> buffers(u32());
	for (Buffer& b : buffers) {
		const uint64_t base = u64(), bytes = u64();
		b.addr = (uint8_t*)(uintptr_t)u64();
		b.len = u64();
		if (base % 4096 != 0 || bytes % 4096 != 0 || (uintptr_t)b.addr < base || (uintptr_t)b.addr + b.len > base + bytes)
			sim::fail("input: buffer at %p of %llu bytes outside its mapping", (void*)b.addr, (unsigned long long)b.len);
		void* m = mmap((void*)(uintptr_t)base, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (m != (void*)(uintptr_t)base) sim::fail("cannot map %llu bytes at %#llx", (unsigned long long)bytes, (unsigned long long)base);
		memset(m, 0xff, bytes);
		read_bytes(b.addr, b.len);
		sim::S.readable.push_back({(uintptr_t)b.addr, (uintptr_t)b.addr + b.len});
	}

	// Memory faults end the run with a message (on an alternate stack: the
	// fibers' stacks are small).
	static std::vector<uint8_t> alt(1 << 16);
	stack_t ss{};
	ss.ss_sp = alt.data();
	ss.ss_size = alt.size();
	sigaltstack(&ss, nullptr);
	struct sigaction sa {};
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigaction(SIGSEGV, &sa, nullptr);
	sigaction(SIGBUS, &sa, nullptr);

	const uint32_t n_launches = u32();
	for (uint32_t i = 0; i < n_launches; ++i) {
		std::string name(u32(), '\0');
		read_bytes(name.data(), name.size());
		SimDim3 grid;
		grid.x = u32();
		grid.y = u32();
		grid.z = u32();
		const uint32_t threads = u32(), shared = u32();
		std::vector<uint8_t> args(u32());
		read_bytes(args.data(), args.size());
		auto it = kKernels.find(name);
		if (it == kKernels.end()) sim::fail("no kernel %s", name.c_str());
		sim::S.body = it->second(args);
		sim::run_grid(grid, (int)threads, shared);
	}
	fclose(g_in);

	FILE* out = fopen(argv[2], "wb");
	if (!out) sim::fail("cannot create %s", argv[2]);
	for (const Buffer& b : buffers)
		if (fwrite(b.addr, 1, b.len, out) != b.len) sim::fail("cannot write %s", argv[2]);
	if (fclose(out) != 0) sim::fail("cannot write %s", argv[2]);
	printf("ok mma=%ld ldmatrix_phases=%ld ldmatrix_conflicted=%ld cp_async=%ld shfl=%ld wgmma=%ld tma=%ld\n", sim::S.mma_count,
	       sim::S.ldmatrix_phases, sim::S.ldmatrix_conflicted, sim::S.cp_async_count, sim::S.shfl_count, sim::H.wgmma_count,
	       sim::H.tma_count);
	return 0;
}
