// main.cc — the host simulator's driver (see sim.h and matmul_sim_test.go).
//
// Usage: matmulsim key=value ...  One product per run, launched exactly as
// the Go launcher packs it (the test computes the plan and the parameters
// with kernels' own Go code and passes them here):
//   kernel=NAME grid=X,Y,Z threads=N  [reduce=NAME rgrid=X,Y,Z rthreads=N]
//   wfmt=0..6 (F32 F16 BF16 Q8_0 Q4_0 Q4_K Q6_K)  xfmt=0..2 (F32 F16 BF16)
//   rounded=0|1   (the kernel rounds W's values to X's dtype)
//   m n k x_row_stride y_row_stride w_row_stride_bytes n_virtual
//   k_per_split split_k swiglu bias w_vec16 x_vec16  (KilnMatMulParams)
//   xoff woff yoff  (byte offsets of X, W/W_up and Y past a 64-byte boundary)
//   mode=eager|lazy seed=S  [smem=BYTES: the launch's dynamic shared memory]
// Inputs are random: X in [−1, 1] (its row padding NaN); W's blocks random
// bytes with sane scales (its row padding 0xff bytes: NaN scales); Y and
// the partial sums start as 0xff bytes. Every output is compared with a
// float64 reference from quant.cuh's one-element decoders (kiln_<fmt>_at,
// which quant_host_test.go checks bit for bit against the Go reference),
// with W rounded to X's dtype when rounded=1, within a bound on F32
// summation error plus the output's rounding; Y's row padding must keep
// its 0xff bytes. Prints "ok ..." or "FAIL ..." (exit status 1).
#include "sim.h"

#include <map>
#include <string>

#include "../../matmul.cu"
#include "../../matmul_decode.cu"
#include "../../matmul_mma.cu"
#include "../../matmul_simt.cu"
#include "../../matmul_wgmma.cu"

typedef void (*KernelFn)(KilnMatMulParams);

#define SIM_W(W)                                                                                                   \
	{"matmul_" #W "_f32", matmul_##W##_f32}, {"matmul_" #W "_f16", matmul_##W##_f16},                              \
	    {"matmul_" #W "_bf16", matmul_##W##_bf16}, {"matmul_" #W "_f16_decode", matmul_##W##_f16_decode},          \
	    {"matmul_" #W "_bf16_decode", matmul_##W##_bf16_decode}, {"matmul_" #W "_f16_mma", matmul_##W##_f16_mma},  \
	    {"matmul_" #W "_bf16_mma", matmul_##W##_bf16_mma}, {"matmul_" #W "_f32_simt_m1", matmul_##W##_f32_simt_m1}, \
	    {"matmul_" #W "_f32_simt_m2", matmul_##W##_f32_simt_m2}, {"matmul_" #W "_f32_simt_m4", matmul_##W##_f32_simt_m4}, \
	    {"matmul_" #W "_f32_simt_m8", matmul_##W##_f32_simt_m8}, {"matmul_" #W "_f16_wgmma", matmul_##W##_f16_wgmma}, \
	    {"matmul_" #W "_bf16_wgmma", matmul_##W##_bf16_wgmma},

static const std::map<std::string, KernelFn> kKernels = {
    SIM_W(f32) SIM_W(f16) SIM_W(bf16) SIM_W(q8_0) SIM_W(q4_0) SIM_W(q4_k) SIM_W(q6_k)
    {"matmul_reduce_f32", matmul_reduce_f32},
    {"matmul_reduce_f16", matmul_reduce_f16},
    {"matmul_reduce_bf16", matmul_reduce_bf16},
};

static const int kBlockElems[] = {1, 1, 1, 32, 32, 256, 256};
static const int kBlockBytes[] = {4, 2, 2, 34, 18, 144, 210};

static std::map<std::string, std::string> g_args;

static std::string arg(const char* key) {
	auto it = g_args.find(key);
	if (it == g_args.end()) sim::fail("missing argument %s", key);
	return it->second;
}
static int64_t iarg(const char* key) { return strtoll(arg(key).c_str(), nullptr, 10); }
static SimDim3 dim3arg(const char* key) {
	SimDim3 d{1, 1, 1};
	if (sscanf(arg(key).c_str(), "%u,%u,%u", &d.x, &d.y, &d.z) != 3) sim::fail("bad %s", key);
	return d;
}
static KernelFn kernel_arg(const char* key) {
	auto it = kKernels.find(arg(key));
	if (it == kKernels.end()) sim::fail("no kernel %s", arg(key).c_str());
	return it->second;
}

static std::mt19937_64 g_rng;
static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)((g_rng() >> 11) * 0x1.0p-53); }

static uint16_t f16_bits(float v) { return __float2half_rn(v).__x; }
static uint16_t bf16_bits(float v) { return __float2bfloat16_rn(v).__x; }
static float f16_val(uint16_t b) { return __half2float(__ushort_as_half(b)); }
static float bf16_val(uint16_t b) {
	__nv_bfloat16 h;
	h.__x = b;
	return __bfloat162float(h);
}

// round_to rounds v to X's dtype (xfmt) and back.
static float round_to(int xfmt, float v) {
	if (xfmt == 1) return f16_val(f16_bits(v));
	if (xfmt == 2) return bf16_val(bf16_bits(v));
	return v;
}

static void put16(uint8_t* p, uint16_t v) { memcpy(p, &v, 2); }

// fill_block writes one random block of format f with sane scales.
static void fill_block(int f, uint8_t* b) {
	for (int i = 0; i < kBlockBytes[f]; ++i) b[i] = (uint8_t)g_rng();
	switch (f) {
	case 0: {
		const float v = uniform(-1, 1);
		memcpy(b, &v, 4);
		break;
	}
	case 1: put16(b, f16_bits(uniform(-1, 1))); break;
	case 2: put16(b, bf16_bits(uniform(-1, 1))); break;
	case 3: put16(b, f16_bits(uniform(0.005f, 0.02f) * (g_rng() & 1 ? 1 : -1))); break;
	case 4: put16(b, f16_bits(uniform(0.01f, 0.1f) * (g_rng() & 1 ? 1 : -1))); break;
	case 5:
		put16(b, f16_bits(uniform(0.001f, 0.01f)));
		put16(b + 2, f16_bits(uniform(0.001f, 0.01f)));
		break;
	case 6: put16(b + 208, f16_bits(uniform(0.0002f, 0.001f))); break;
	}
}

static float decode_at(int f, const uint8_t* row, int64_t j) {
	switch (f) {
	case 0: return kiln_f32_at(row, j);
	case 1: return kiln_f16_at(row, j);
	case 2: return kiln_bf16_at(row, j);
	case 3: return kiln_q8_0_at(row, j);
	case 4: return kiln_q4_0_at(row, j);
	case 5: return kiln_q4_k_at(row, j);
	default: return kiln_q6_k_at(row, j);
	}
}

// Buffer is host memory standing in for device memory: `size` bytes from
// ptr, which is off bytes past a 64-byte boundary, then 64 guard bytes.
struct Buffer {
	uint8_t* base = nullptr;
	uint8_t* ptr = nullptr;
	size_t size = 0;
	void alloc(size_t n, int off) {
		size = n;
		base = static_cast<uint8_t*>(aligned_alloc(64, (off + n + 64 + 63) / 64 * 64));
		ptr = base + off;
		memset(base, 0xff, off + n + 64);
	}
};

int main(int argc, char** argv) {
	for (int i = 1; i < argc; ++i) {
		const char* eq = strchr(argv[i], '=');
		if (!eq) sim::fail("argument %s is not key=value", argv[i]);
		g_args[std::string(argv[i], eq - argv[i])] = eq + 1;
	}
	const uint64_t seed = (uint64_t)iarg("seed");
	g_rng.seed(seed);
	sim::S.rng.seed(seed * 7919 + 1);
	sim::S.lazy = arg("mode") == "lazy";
	const int wfmt = (int)iarg("wfmt"), xfmt = (int)iarg("xfmt");
	const bool rounded = iarg("rounded") != 0;
	const int xsz = xfmt == 0 ? 4 : 2;

	KilnMatMulParams p;
	memset(&p, 0, sizeof p);
	p.m = iarg("m");
	p.n = iarg("n");
	p.k = iarg("k");
	p.x_row_stride = iarg("x_row_stride");
	p.y_row_stride = iarg("y_row_stride");
	p.w_row_stride_bytes = iarg("w_row_stride_bytes");
	p.n_virtual = iarg("n_virtual");
	p.k_per_split = iarg("k_per_split");
	p.split_k = (int32_t)iarg("split_k");
	p.swiglu = (int32_t)iarg("swiglu");
	p.w_vec16 = (int32_t)iarg("w_vec16");
	p.x_vec16 = (int32_t)iarg("x_vec16");
	const bool has_bias = iarg("bias") != 0;
	const int64_t m = p.m, n = p.n, k = p.k;
	const int64_t k_bytes = k / kBlockElems[wfmt] * kBlockBytes[wfmt];

	// X: values in [−1, 1] rounded to X's dtype; row padding stays 0xff (NaN).
	Buffer xb;
	xb.alloc((size_t)(m * p.x_row_stride * xsz), (int)iarg("xoff"));
	std::vector<float> xv((size_t)(m * k));
	for (int64_t r = 0; r < m; ++r) {
		for (int64_t e = 0; e < k; ++e) {
			const float v = round_to(xfmt, uniform(-1, 1));
			xv[r * k + e] = v;
			uint8_t* d = xb.ptr + (r * p.x_row_stride + e) * xsz;
			if (xfmt == 0)
				memcpy(d, &v, 4);
			else
				put16(d, xfmt == 1 ? f16_bits(v) : bf16_bits(v));
		}
		const uintptr_t lo = (uintptr_t)(xb.ptr + r * p.x_row_stride * xsz);
		sim::S.readable.push_back({lo, lo + k * xsz});
	}
	// W and W_up: random blocks; row padding stays 0xff.
	Buffer wb[2];
	const int n_weights = p.swiglu ? 2 : 1;
	std::vector<double> wv[2];
	for (int wi = 0; wi < n_weights; ++wi) {
		wb[wi].alloc((size_t)(n * p.w_row_stride_bytes), (int)iarg("woff"));
		wv[wi].resize((size_t)(n * k));
		for (int64_t r = 0; r < n; ++r) {
			uint8_t* row = wb[wi].ptr + r * p.w_row_stride_bytes;
			for (int64_t b = 0; b < k_bytes; b += kBlockBytes[wfmt]) fill_block(wfmt, row + b);
			for (int64_t e = 0; e < k; ++e) {
				const float v = decode_at(wfmt, row, e);
				wv[wi][r * k + e] = rounded ? round_to(xfmt, v) : v;
			}
			sim::S.readable.push_back({(uintptr_t)row, (uintptr_t)row + k_bytes});
		}
	}
	std::vector<float> bias((size_t)n);
	for (auto& b : bias) b = uniform(-1, 1);
	Buffer yb;
	yb.alloc((size_t)(m * p.y_row_stride * xsz), (int)iarg("yoff"));
	Buffer partials;
	if (p.split_k > 1) partials.alloc((size_t)p.split_k * m * p.n_virtual * 4, 0);

	p.x = (uint64_t)(uintptr_t)xb.ptr;
	p.w = (uint64_t)(uintptr_t)wb[0].ptr;
	p.w_up = p.swiglu ? (uint64_t)(uintptr_t)wb[1].ptr : 0;
	p.y = (uint64_t)(uintptr_t)yb.ptr;
	p.bias = has_bias ? (uint64_t)(uintptr_t)bias.data() : 0;
	p.partials = p.split_k > 1 ? (uint64_t)(uintptr_t)partials.ptr : 0;
	// The Go launcher decided the vec flags from addresses with these same
	// residues mod 16; the kernels may rely on them.
	if (p.x_vec16 && (p.x % 16 != 0 || p.x_row_stride * xsz % 16 != 0)) sim::fail("harness: x_vec16 set for an unaligned X");
	if (p.w_vec16 && (p.w % 16 != 0 || p.w_up % 16 != 0 || p.w_row_stride_bytes % 16 != 0))
		sim::fail("harness: w_vec16 set for an unaligned W");

	if (g_args.count("smem")) sim::S.dyn_bytes = (size_t)iarg("smem");
	sim::run_grid(kernel_arg("kernel"), p, dim3arg("grid"), (int)iarg("threads"));
	if (g_args.count("reduce")) sim::run_grid(kernel_arg("reduce"), p, dim3arg("rgrid"), (int)iarg("rthreads"));

	// Check every output, then Y's padding.
	const double rel_out = xfmt == 1 ? 0x1p-11 : (xfmt == 2 ? 0x1p-8 : 0);
	const double abs_out = xfmt == 1 ? 0x1p-25 : 0;
	const double rel_sum = 1e-4;  // ≥ k·2⁻²⁴ for the k tested
	double worst = 0;
	for (int64_t r = 0; r < m; ++r) {
		for (int64_t c = 0; c < n; ++c) {
			double sum[2] = {0, 0}, mag[2] = {0, 0};
			for (int wi = 0; wi < n_weights; ++wi)
				for (int64_t e = 0; e < k; ++e) {
					const double t = (double)xv[r * k + e] * wv[wi][c * k + e];
					sum[wi] += t;
					mag[wi] += fabs(t);
				}
			double want, tol;
			if (p.swiglu) {
				const double g = sum[0], u = sum[1], tg = rel_sum * mag[0] + 1e-30, tu = rel_sum * mag[1] + 1e-30;
				const double silu = g / (1 + exp(-g));
				want = silu * u;
				tol = 1.1 * tg * fabs(u) + fabs(silu) * tu + 1.1 * tg * tu;
			} else {
				want = sum[0] + (has_bias ? bias[c] : 0);
				tol = rel_sum * mag[0] + 1e-30;
			}
			tol = tol * (1 + rel_out) + rel_out * fabs(want) + abs_out;
			const uint8_t* yp = yb.ptr + (r * p.y_row_stride + c) * xsz;
			float got;
			if (xfmt == 0) {
				memcpy(&got, yp, 4);
			} else {
				uint16_t bits;
				memcpy(&bits, yp, 2);
				got = xfmt == 1 ? f16_val(bits) : bf16_val(bits);
			}
			const double err = fabs((double)got - want);
			// Beyond the output dtype's range the right answer is ±inf.
			const float want_out = round_to(xfmt, (float)want);
			if (isinf(want_out) && fabs(want) > tol && got == want_out) continue;
			if (!(err <= tol))
				sim::fail("Y[%lld, %lld] = %.9g, want %.9g (|error| %.3g > tolerance %.3g)", (long long)r, (long long)c, got, want, err,
				          tol);
			worst = fmax(worst, err / tol);
		}
		for (int64_t c = n; c < p.y_row_stride; ++c)
			for (int b = 0; b < xsz; ++b)
				if (yb.ptr[(r * p.y_row_stride + c) * xsz + b] != 0xff) sim::fail("Y[%lld, %lld] is row padding, and was written", (long long)r, (long long)c);
	}
	for (int b = 0; b < 64; ++b)
		if (yb.ptr[yb.size + b] != 0xff) sim::fail("the bytes after Y were written");
	printf("ok worst error/tolerance %.3g, mma %ld, wgmma %ld, cp.async %ld, fence.proxy.async %ld, ldmatrix phases %ld (bank-conflicted %ld)\n",
	       worst, sim::S.mma_count, sim::S.wgmma_count, sim::S.cp_async_count, sim::S.proxy_fences, sim::S.ldmatrix_phases,
	       sim::S.ldmatrix_conflicted);
	return 0;
}
