/*
 * quant.cuh — the weight formats kiln's kernels read, decoded to F32 exactly as
 * ggml decodes them (ggml-common.h, dequantize_row_* in ggml-quants.c), bit for
 * bit: the same order of float operations, each rounded on its own (no fused
 * multiply-add), so that the values equal kiln's Go reference
 * (runtime/tensor/quant*.go), which is verified against ggml.
 *
 * Written in the common subset of C and CUDA C++ on purpose: nvcc compiles it
 * into the kernels (embedding.cu, matmul*.cu), and the C compiler compiles the
 * very same functions on the host in kernels/internal/quantcheck, whose test
 * compares every decoder with the Go reference on random blocks. Host builds
 * must not contract a·b − c into an FMA: that package builds with -std=c11,
 * under which GCC and Clang default to -ffp-contract=off.
 *
 * Formats (all little-endian, blocks along a row; F16 scales are IEEE half):
 *   F32, F16, BF16  plain elements.
 *   Q8_0  34 bytes / 32 elements: f16 d; int8 qs[32].        x_j = qs[j]·d
 *   Q4_0  18 bytes / 32 elements: f16 d; uint8 qs[16]. Element l < 16 is the
 *         low nibble of qs[l], element l + 16 its high nibble; x = (q − 8)·d.
 *   Q4_K  144 bytes / 256 elements: f16 d; f16 dmin; uint8 scales[12] (eight
 *         6-bit scales and eight 6-bit mins, packed); uint8 qs[128]. Sub-block
 *         s (32 elements) has scale sc_s and min m_s; chunk c (64 elements)
 *         holds sub-blocks 2c (low nibbles of qs[32c .. 32c+31]) and 2c+1
 *         (their high nibbles). x = (d·sc_s)·q − dmin·m_s.
 *   Q6_K  210 bytes / 256 elements: uint8 ql[128] (low 4 bits); uint8 qh[64]
 *         (high 2 bits); int8 scales[16]; f16 d. In half n (128 elements),
 *         quarter k (32 elements), lane l: the low bits are
 *         ql[64n + l + 32(k&1)] (low nibble for k < 2, high for k ≥ 2), the
 *         high bits (qh[32n + l] >> 2k) & 3, the scale scales[8n + l/16 + 2k];
 *         x = (d·scale)·(q − 32).
 *
 * Two ways to decode:
 *   kiln_<fmt>_at(row, j)  element j of a row that starts at `row`: one
 *       element at a time, obviously correct (the embedding and simple matmul
 *       kernels).
 *   kiln_<fmt>_fetch16 / kiln_<fmt>_decode16  16 consecutive elements
 *       e0 .. e0+15 of one block (e0 a multiple of 16): fetch copies the raw
 *       bytes they need into a KilnRaw16 (registers), decode turns them into
 *       16 floats. Split in two so that a kernel can issue the loads early and
 *       decode later (the prefill matmul). For the float formats the "block"
 *       is the element itself: blk points at element e, and e0 is 0.
 *
 * Alignment: blocks of Q8_0, Q4_0 and Q6_K are only 2-byte aligned in a GGUF
 * row, so every multi-byte read here is a 2-byte load (F32: 4-byte loads).
 */
#ifndef KILN_QUANT_CUH
#define KILN_QUANT_CUH

#include <stdint.h>

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define KILN_QFN static __device__ __forceinline__
#define KILN_UNROLL _Pragma("unroll")
/* __fmul_rn and __fsub_rn are never contracted into an FMA. */
KILN_QFN float kiln_mul_rn(float a, float b) { return __fmul_rn(a, b); }
KILN_QFN float kiln_sub_rn(float a, float b) { return __fsub_rn(a, b); }
/* p is 2-byte aligned. */
KILN_QFN uint32_t kiln_ld_u16(const uint8_t* p) { return *(const uint16_t*)p; }
/* p is 4-byte aligned. */
KILN_QFN uint32_t kiln_ld_u32(const uint8_t* p) { return *(const uint32_t*)p; }
KILN_QFN float kiln_f16_to_f32(uint32_t bits) { return __half2float(__ushort_as_half((unsigned short)bits)); }
KILN_QFN float kiln_bits_to_f32(uint32_t bits) { return __uint_as_float(bits); }
#else
#include <string.h>
#pragma STDC FP_CONTRACT OFF
#define KILN_QFN static inline
#define KILN_UNROLL
/* No contraction on the host (see above), so these are single roundings. */
static inline float kiln_mul_rn(float a, float b) { return a * b; }
static inline float kiln_sub_rn(float a, float b) { return a - b; }
static inline uint32_t kiln_ld_u16(const uint8_t* p) {
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}
static inline uint32_t kiln_ld_u32(const uint8_t* p) {
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}
static inline float kiln_bits_to_f32(uint32_t bits) {
	float f;
	memcpy(&f, &bits, 4);
	return f;
}
/* IEEE half to float, exact (subnormals, infinities and NaNs included). */
static inline float kiln_f16_to_f32(uint32_t h) {
	const uint32_t sign = (h & 0x8000u) << 16;
	const uint32_t exp = (h >> 10) & 0x1f;
	uint32_t mant = h & 0x3ff;
	if (exp == 0x1f) return kiln_bits_to_f32(sign | 0x7f800000u | (mant << 13));
	if (exp != 0) return kiln_bits_to_f32(sign | ((exp + 112) << 23) | (mant << 13));
	if (mant == 0) return kiln_bits_to_f32(sign);
	/* Subnormal: normalise. */
	int e = -1;
	do {
		e++;
		mant <<= 1;
	} while ((mant & 0x400) == 0);
	return kiln_bits_to_f32(sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13));
}
#endif

/* 4 bytes from a 2-byte aligned address, little-endian. */
KILN_QFN uint32_t kiln_ld_2x16(const uint8_t* p) { return kiln_ld_u16(p) | (kiln_ld_u16(p + 2) << 16); }
KILN_QFN float kiln_bf16_to_f32(uint32_t bits) { return kiln_bits_to_f32((bits & 0xffffu) << 16); }
KILN_QFN uint32_t kiln_byte(uint32_t word, int i) { return (word >> (8 * i)) & 0xffu; }

/* Block geometry (elements, bytes). */
#define KILN_QK8_0 32
#define KILN_Q8_0_BYTES 34
#define KILN_QK4_0 32
#define KILN_Q4_0_BYTES 18
#define KILN_QK_K 256
#define KILN_Q4_K_BYTES 144
#define KILN_Q6_K_BYTES 210

/* ---- one element at a time --------------------------------------------------- */

KILN_QFN float kiln_f32_at(const uint8_t* row, int64_t j) { return kiln_bits_to_f32(kiln_ld_u32(row + 4 * j)); }
KILN_QFN float kiln_f16_at(const uint8_t* row, int64_t j) { return kiln_f16_to_f32(kiln_ld_u16(row + 2 * j)); }
KILN_QFN float kiln_bf16_at(const uint8_t* row, int64_t j) { return kiln_bf16_to_f32(kiln_ld_u16(row + 2 * j)); }

KILN_QFN float kiln_q8_0_at(const uint8_t* row, int64_t j) {
	const uint8_t* blk = row + (j / 32) * KILN_Q8_0_BYTES;
	const float d = kiln_f16_to_f32(kiln_ld_u16(blk));
	const int q = (int8_t)blk[2 + j % 32];
	return kiln_mul_rn((float)q, d);
}

KILN_QFN float kiln_q4_0_at(const uint8_t* row, int64_t j) {
	const uint8_t* blk = row + (j / 32) * KILN_Q4_0_BYTES;
	const float d = kiln_f16_to_f32(kiln_ld_u16(blk));
	const int l = (int)(j % 32);
	const uint8_t byte = blk[2 + (l & 15)];
	const int q = (l < 16 ? (byte & 0xF) : (byte >> 4)) - 8;
	return kiln_mul_rn((float)q, d);
}

/* The 6-bit scale and min of Q4_K sub-block `sub` (0..7) from scales[12]. */
KILN_QFN void kiln_q4_k_scale_min(const uint8_t* s, int sub, int* sc, int* m) {
	if (sub < 4) {
		*sc = s[sub] & 63;
		*m = s[sub + 4] & 63;
	} else {
		*sc = (s[sub + 4] & 0xF) | ((s[sub - 4] >> 6) << 4);
		*m = (s[sub + 4] >> 4) | ((s[sub] >> 6) << 4);
	}
}

KILN_QFN float kiln_q4_k_at(const uint8_t* row, int64_t j) {
	const uint8_t* blk = row + (j / 256) * KILN_Q4_K_BYTES;
	const float d = kiln_f16_to_f32(kiln_ld_u16(blk));
	const float dmin = kiln_f16_to_f32(kiln_ld_u16(blk + 2));
	const int w = (int)(j % 256);
	const int chunk = w / 64, high = (w % 64) / 32, l = w % 32;
	int sc, m;
	kiln_q4_k_scale_min(blk + 4, 2 * chunk + high, &sc, &m);
	const uint8_t byte = blk[16 + 32 * chunk + l];
	const int q = high ? (byte >> 4) : (byte & 0xF);
	const float d1 = kiln_mul_rn(d, (float)sc);
	const float m1 = kiln_mul_rn(dmin, (float)m);
	return kiln_sub_rn(kiln_mul_rn(d1, (float)q), m1);
}

KILN_QFN float kiln_q6_k_at(const uint8_t* row, int64_t j) {
	const uint8_t* blk = row + (j / 256) * KILN_Q6_K_BYTES;
	const uint8_t* ql = blk;
	const uint8_t* qh = blk + 128;
	const int8_t* scales = (const int8_t*)(blk + 192);
	const float d = kiln_f16_to_f32(kiln_ld_u16(blk + 208));
	const int w = (int)(j % 256);
	const int n = w / 128, k = (w % 128) / 32, l = w % 32;
	const uint8_t low_byte = ql[64 * n + l + 32 * (k & 1)];
	const int low = k < 2 ? (low_byte & 0xF) : (low_byte >> 4);
	const int high = (qh[32 * n + l] >> (2 * k)) & 3;
	const int q = (low | (high << 4)) - 32;
	const int sc = scales[8 * n + l / 16 + 2 * k];
	return kiln_mul_rn(kiln_mul_rn(d, (float)sc), (float)q);
}

/* ---- sixteen elements at a time ------------------------------------------------ */

/* The raw bytes of 16 elements, as fetched (the largest need is F32's 64 bytes). */
typedef struct KilnRaw16 {
	uint32_t w[16];
} KilnRaw16;

/* F32: w[i] = element i. blk is 4-byte aligned. */
KILN_QFN void kiln_f32_fetch16(const uint8_t* blk, int e0, KilnRaw16* r) {
	(void)e0;
	KILN_UNROLL
	for (int i = 0; i < 16; i++) r->w[i] = kiln_ld_u32(blk + 4 * i);
}
KILN_QFN void kiln_f32_decode16(const KilnRaw16* r, int e0, float* out) {
	(void)e0;
	KILN_UNROLL
	for (int i = 0; i < 16; i++) out[i] = kiln_bits_to_f32(r->w[i]);
}

/* F16 and BF16: w[i] = elements 2i (low half) and 2i+1 (high half). */
KILN_QFN void kiln_f16_fetch16(const uint8_t* blk, int e0, KilnRaw16* r) {
	(void)e0;
	KILN_UNROLL
	for (int i = 0; i < 8; i++) r->w[i] = kiln_ld_2x16(blk + 4 * i);
}
KILN_QFN void kiln_f16_decode16(const KilnRaw16* r, int e0, float* out) {
	(void)e0;
	KILN_UNROLL
	for (int i = 0; i < 8; i++) {
		out[2 * i] = kiln_f16_to_f32(r->w[i] & 0xffffu);
		out[2 * i + 1] = kiln_f16_to_f32(r->w[i] >> 16);
	}
}
#define kiln_bf16_fetch16 kiln_f16_fetch16
KILN_QFN void kiln_bf16_decode16(const KilnRaw16* r, int e0, float* out) {
	(void)e0;
	KILN_UNROLL
	for (int i = 0; i < 8; i++) {
		out[2 * i] = kiln_bf16_to_f32(r->w[i] & 0xffffu);
		out[2 * i + 1] = kiln_bf16_to_f32(r->w[i] >> 16);
	}
}

/* The float formats at a row's end: only the first n_valid (0..16) elements
 * are read, the rest are zero. */
KILN_QFN void kiln_f32_fetch16_tail(const uint8_t* blk, int n_valid, KilnRaw16* r) {
	KILN_UNROLL
	for (int i = 0; i < 16; i++) r->w[i] = i < n_valid ? kiln_ld_u32(blk + 4 * i) : 0u;
}
KILN_QFN void kiln_f16_fetch16_tail(const uint8_t* blk, int n_valid, KilnRaw16* r) {
	KILN_UNROLL
	for (int i = 0; i < 8; i++) {
		const uint32_t lo = 2 * i < n_valid ? kiln_ld_u16(blk + 4 * i) : 0u;
		const uint32_t hi = 2 * i + 1 < n_valid ? kiln_ld_u16(blk + 4 * i + 2) : 0u;
		r->w[i] = lo | (hi << 16);
	}
}

/* Q8_0, e0 ∈ {0, 16}: w[0] = d; w[1+i] = qs[e0+4i .. e0+4i+3]. */
KILN_QFN void kiln_q8_0_fetch16(const uint8_t* blk, int e0, KilnRaw16* r) {
	r->w[0] = kiln_ld_u16(blk);
	KILN_UNROLL
	for (int i = 0; i < 4; i++) r->w[1 + i] = kiln_ld_2x16(blk + 2 + e0 + 4 * i);
}
KILN_QFN void kiln_q8_0_decode16(const KilnRaw16* r, int e0, float* out) {
	(void)e0;
	const float d = kiln_f16_to_f32(r->w[0]);
	KILN_UNROLL
	for (int i = 0; i < 16; i++) {
		const int q = (int8_t)kiln_byte(r->w[1 + i / 4], i % 4);
		out[i] = kiln_mul_rn((float)q, d);
	}
}

/* Q4_0, e0 ∈ {0, 16}: w[0] = d; w[1+i] = qs[4i .. 4i+3]; elements e0 = 0 are
 * the low nibbles, e0 = 16 the high nibbles of those 16 bytes. */
KILN_QFN void kiln_q4_0_fetch16(const uint8_t* blk, int e0, KilnRaw16* r) {
	(void)e0;
	r->w[0] = kiln_ld_u16(blk);
	KILN_UNROLL
	for (int i = 0; i < 4; i++) r->w[1 + i] = kiln_ld_2x16(blk + 2 + 4 * i);
}
KILN_QFN void kiln_q4_0_decode16(const KilnRaw16* r, int e0, float* out) {
	const float d = kiln_f16_to_f32(r->w[0]);
	const int shift = e0 >= 16 ? 4 : 0;
	KILN_UNROLL
	for (int i = 0; i < 16; i++) {
		const int q = (int)((kiln_byte(r->w[1 + i / 4], i % 4) >> shift) & 0xF) - 8;
		out[i] = kiln_mul_rn((float)q, d);
	}
}

/* Q4_K, e0 a multiple of 16 in 0..240: sub-block s = e0/32, chunk c = s/2,
 * lanes l0 = e0%32 .. l0+15. w[0] = d | dmin<<16; w[1..3] = scales[0..11];
 * w[4+i] = qs[32c + l0 + 4i .. +3]. */
KILN_QFN void kiln_q4_k_fetch16(const uint8_t* blk, int e0, KilnRaw16* r) {
	const int c = e0 / 64, l0 = e0 % 32;
	r->w[0] = kiln_ld_2x16(blk);
	KILN_UNROLL
	for (int i = 0; i < 3; i++) r->w[1 + i] = kiln_ld_2x16(blk + 4 + 4 * i);
	KILN_UNROLL
	for (int i = 0; i < 4; i++) r->w[4 + i] = kiln_ld_2x16(blk + 16 + 32 * c + l0 + 4 * i);
}
/* scales[k] (k = 0..11) from the fetched words w[1..3]. */
KILN_QFN uint32_t kiln_q4_k_scale_byte(const KilnRaw16* r, int k) {
	const uint32_t word = k < 4 ? r->w[1] : (k < 8 ? r->w[2] : r->w[3]);
	return (word >> (8 * (k & 3))) & 0xffu;
}
KILN_QFN void kiln_q4_k_decode16(const KilnRaw16* r, int e0, float* out) {
	const float d = kiln_f16_to_f32(r->w[0] & 0xffffu);
	const float dmin = kiln_f16_to_f32(r->w[0] >> 16);
	const int sub = e0 / 32, high = sub & 1;
	/* kiln_q4_k_scale_min on the fetched words (sub is not a compile-time
	 * constant, and an array indexed by it would live in local memory). */
	int sc, m;
	if (sub < 4) {
		sc = (int)(kiln_q4_k_scale_byte(r, sub) & 63);
		m = (int)(kiln_q4_k_scale_byte(r, sub + 4) & 63);
	} else {
		sc = (int)((kiln_q4_k_scale_byte(r, sub + 4) & 0xF) | ((kiln_q4_k_scale_byte(r, sub - 4) >> 6) << 4));
		m = (int)((kiln_q4_k_scale_byte(r, sub + 4) >> 4) | ((kiln_q4_k_scale_byte(r, sub) >> 6) << 4));
	}
	/* Once per 16 elements, as in ggml once per sub-block. */
	const float d1 = kiln_mul_rn(d, (float)sc);
	const float m1 = kiln_mul_rn(dmin, (float)m);
	KILN_UNROLL
	for (int i = 0; i < 16; i++) {
		const uint32_t byte = kiln_byte(r->w[4 + i / 4], i % 4);
		const int q = (int)(high ? (byte >> 4) : (byte & 0xF));
		out[i] = kiln_sub_rn(kiln_mul_rn(d1, (float)q), m1);
	}
}

/* Q6_K, e0 a multiple of 16 in 0..240: half n = e0/128, quarter k =
 * (e0%128)/32, lanes l0 = e0%32 .. l0+15 (one scale: scales[8n + l0/16 + 2k]).
 * w[0] = d | scale byte<<16; w[1+i] = ql[64n + 32(k&1) + l0 + 4i .. +3];
 * w[5+i] = qh[32n + l0 + 4i .. +3]. */
KILN_QFN void kiln_q6_k_fetch16(const uint8_t* blk, int e0, KilnRaw16* r) {
	const int n = e0 / 128, k = (e0 % 128) / 32, l0 = e0 % 32;
	const int si = 8 * n + l0 / 16 + 2 * k;
	const uint32_t pair = kiln_ld_u16(blk + 192 + (si & ~1));
	r->w[0] = kiln_ld_u16(blk + 208) | (((pair >> (8 * (si & 1))) & 0xffu) << 16);
	KILN_UNROLL
	for (int i = 0; i < 4; i++) r->w[1 + i] = kiln_ld_2x16(blk + 64 * n + 32 * (k & 1) + l0 + 4 * i);
	KILN_UNROLL
	for (int i = 0; i < 4; i++) r->w[5 + i] = kiln_ld_2x16(blk + 128 + 32 * n + l0 + 4 * i);
}
KILN_QFN void kiln_q6_k_decode16(const KilnRaw16* r, int e0, float* out) {
	const int k = (e0 % 128) / 32;
	const float d = kiln_f16_to_f32(r->w[0] & 0xffffu);
	const int sc = (int8_t)(r->w[0] >> 16);
	const float ds = kiln_mul_rn(d, (float)sc);
	KILN_UNROLL
	for (int i = 0; i < 16; i++) {
		const uint32_t low_byte = kiln_byte(r->w[1 + i / 4], i % 4);
		const int low = (int)(k < 2 ? (low_byte & 0xF) : (low_byte >> 4));
		const int high = (int)((kiln_byte(r->w[5 + i / 4], i % 4) >> (2 * k)) & 3);
		const int q = (low | (high << 4)) - 32;
		out[i] = kiln_mul_rn(ds, (float)q);
	}
}

#ifdef __CUDACC__
/* ---- C++ views for the kernels' templates ---------------------------------------- */
namespace kiln {

/* Each Table type decodes element j of a row that starts at `row` (the
 * embedding and simple matmul kernels). */
struct TableF32 {
	static __device__ __forceinline__ float at(const uint8_t* row, int64_t j) { return kiln_f32_at(row, j); }
};
struct TableF16 {
	static __device__ __forceinline__ float at(const uint8_t* row, int64_t j) { return kiln_f16_at(row, j); }
};
struct TableBF16 {
	static __device__ __forceinline__ float at(const uint8_t* row, int64_t j) { return kiln_bf16_at(row, j); }
};
struct TableQ8_0 {
	static __device__ __forceinline__ float at(const uint8_t* row, int64_t j) { return kiln_q8_0_at(row, j); }
};
struct TableQ4_0 {
	static __device__ __forceinline__ float at(const uint8_t* row, int64_t j) { return kiln_q4_0_at(row, j); }
};
struct TableQ4_K {
	static __device__ __forceinline__ float at(const uint8_t* row, int64_t j) { return kiln_q4_k_at(row, j); }
};
struct TableQ6_K {
	static __device__ __forceinline__ float at(const uint8_t* row, int64_t j) { return kiln_q6_k_at(row, j); }
};

}  // namespace kiln
#endif

#endif /* KILN_QUANT_CUH */
