// embedding.cu — dst row r = table row ids[r], dequantized to F32 and stored as
// the float dtype of dst.
//
// The table is [vocab, dim] in F32, F16, BF16 or one of ggml's block formats
// (Q8_0, Q4_0, Q4_K, Q6_K), each row a whole number of blocks, rows
// table_row_stride_bytes apart. The block layouts and the dequantization
// arithmetic follow ggml exactly (ggml-common.h, dequantize_row_* in
// ggml-quants.c), including the order of float operations; __fmul_rn and
// __fsub_rn keep the compiler from fusing them into an FMA, which would round
// differently from ggml's CPU code and kiln's Go reference.
//
// Q8_0, Q4_0 and Q6_K blocks (34, 18, 210 bytes) are only 2-byte aligned, so
// blocks are read byte by byte, and the F16 scales with 16-bit loads at even
// offsets.
//
// An id outside [0, vocab) writes a row of zeros and records
// KILN_ERR_INDEX_OUT_OF_RANGE in the error word (first fault wins); nothing
// outside the table is read.
//
// Kernels, named embedding_<table>_to_<dst> with table one of f32, f16, bf16,
// q8_0, q4_0, q4_k, q6_k and dst one of f32, f16, bf16 (simple: one block per
// id, each thread dequantizes its elements one at a time).
#include "common.cuh"

namespace kiln {

__device__ __forceinline__ float load_f16_bits(const uint8_t* p) {
	return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short*>(p)));
}

// Each Table type decodes element j of a row that starts at `row`.

struct TableF32 {
	static __device__ __forceinline__ float at(const uint8_t* row, int64_t j) {
		return reinterpret_cast<const float*>(row)[j];
	}
};

struct TableF16 {
	static __device__ __forceinline__ float at(const uint8_t* row, int64_t j) {
		return to_f32(reinterpret_cast<const f16*>(row)[j]);
	}
};

struct TableBF16 {
	static __device__ __forceinline__ float at(const uint8_t* row, int64_t j) {
		return to_f32(reinterpret_cast<const bf16*>(row)[j]);
	}
};

// block_q8_0 (34 bytes, 32 elements): f16 d; int8 qs[32].   x_j = qs[j]·d
struct TableQ8_0 {
	static __device__ __forceinline__ float at(const uint8_t* row, int64_t j) {
		const uint8_t* blk = row + (j / 32) * 34;
		const float d = load_f16_bits(blk);
		const int q = (int8_t)blk[2 + j % 32];
		return __fmul_rn((float)q, d);
	}
};

// block_q4_0 (18 bytes, 32 elements): f16 d; uint8 qs[16]. Element l < 16 is
// the low nibble of qs[l], element l + 16 its high nibble; x = (nibble − 8)·d.
struct TableQ4_0 {
	static __device__ __forceinline__ float at(const uint8_t* row, int64_t j) {
		const uint8_t* blk = row + (j / 32) * 18;
		const float d = load_f16_bits(blk);
		const int l = (int)(j % 32);
		const uint8_t byte = blk[2 + (l & 15)];
		const int q = (l < 16 ? (byte & 0xF) : (byte >> 4)) - 8;
		return __fmul_rn((float)q, d);
	}
};

// block_q4_K (144 bytes, 256 elements): f16 d; f16 dmin; uint8 scales[12]
// (eight 6-bit scales and eight 6-bit mins, packed); uint8 qs[128].
// Sub-block s (32 elements) has scale sc_s and min m_s; chunk c (64 elements)
// holds sub-blocks 2c (low nibbles of qs[32c .. 32c+31]) and 2c+1 (their high
// nibbles). x = (d·sc_s)·q − dmin·m_s.
struct TableQ4_K {
	static __device__ __forceinline__ void scale_min(const uint8_t* s, int sub, int& sc, int& m) {
		if (sub < 4) {
			sc = s[sub] & 63;
			m = s[sub + 4] & 63;
		} else {
			sc = (s[sub + 4] & 0xF) | ((s[sub - 4] >> 6) << 4);
			m = (s[sub + 4] >> 4) | ((s[sub] >> 6) << 4);
		}
	}
	static __device__ __forceinline__ float at(const uint8_t* row, int64_t j) {
		const uint8_t* blk = row + (j / 256) * 144;
		const float d = load_f16_bits(blk);
		const float dmin = load_f16_bits(blk + 2);
		const int w = (int)(j % 256);
		const int chunk = w / 64, high = (w % 64) / 32, l = w % 32;
		int sc, m;
		scale_min(blk + 4, 2 * chunk + high, sc, m);
		const uint8_t byte = blk[16 + 32 * chunk + l];
		const int q = high ? (byte >> 4) : (byte & 0xF);
		const float d1 = __fmul_rn(d, (float)sc);
		const float m1 = __fmul_rn(dmin, (float)m);
		return __fsub_rn(__fmul_rn(d1, (float)q), m1);
	}
};

// block_q6_K (210 bytes, 256 elements): uint8 ql[128] (low 4 bits); uint8
// qh[64] (high 2 bits); int8 scales[16]; f16 d. In half n (128 elements),
// quarter k (32 elements), lane l: the low bits are ql[64n + l + 32(k&1)]
// (low nibble for k < 2, high for k ≥ 2), the high bits (qh[32n + l] >> 2k) & 3,
// the scale scales[8n + l/16 + 2k]; x = (d·scale)·(q − 32).
struct TableQ6_K {
	static __device__ __forceinline__ float at(const uint8_t* row, int64_t j) {
		const uint8_t* blk = row + (j / 256) * 210;
		const uint8_t* ql = blk;
		const uint8_t* qh = blk + 128;
		const int8_t* scales = reinterpret_cast<const int8_t*>(blk + 192);
		const float d = load_f16_bits(blk + 208);
		const int w = (int)(j % 256);
		const int n = w / 128, k = (w % 128) / 32, l = w % 32;
		const uint8_t low_byte = ql[64 * n + l + 32 * (k & 1)];
		const int low = k < 2 ? (low_byte & 0xF) : (low_byte >> 4);
		const int high = (qh[32 * n + l] >> (2 * k)) & 3;
		const int q = (low | (high << 4)) - 32;
		const int sc = scales[8 * n + l / 16 + 2 * k];
		return __fmul_rn(__fmul_rn(d, (float)sc), (float)q);
	}
};

template <typename D, typename Table> __device__ __forceinline__ void embedding(const KilnEmbeddingParams& p) {
	const int32_t* ids = reinterpret_cast<const int32_t*>(p.ids);
	const uint8_t* table = reinterpret_cast<const uint8_t*>(p.table);
	for (int64_t r = blockIdx.x; r < p.n_ids; r += gridDim.x) {
		int64_t c[3];
		unflatten3(r, p.ids_shape, c);
		const int64_t id = ids[offset3(c, p.ids_strides)];
		D* y = reinterpret_cast<D*>(p.dst) + offset3(c, p.dst_strides);
		if (id < 0 || id >= p.vocab) {
			for (int64_t j = threadIdx.x; j < p.dim; j += blockDim.x) y[j] = from_f32<D>(0.0f);
			if (threadIdx.x == 0) report_error(p.error_word, KILN_ERR_INDEX_OUT_OF_RANGE, KILN_OP_EMBEDDING, r, id, p.vocab);
			continue;
		}
		const uint8_t* row = table + id * p.table_row_stride_bytes;
		for (int64_t j = threadIdx.x; j < p.dim; j += blockDim.x) y[j] = from_f32<D>(Table::at(row, j));
	}
}

}  // namespace kiln

#define KILN_EMBEDDING(TNAME, TABLE, DNAME, D)                                                          \
	extern "C" __global__ void __launch_bounds__(256) embedding_##TNAME##_to_##DNAME(const KilnEmbeddingParams p) { \
		kiln::embedding<D, TABLE>(p);                                                                \
	}

#define KILN_EMBEDDING_ALL_DST(TNAME, TABLE)          \
	KILN_EMBEDDING(TNAME, TABLE, f32, float)          \
	KILN_EMBEDDING(TNAME, TABLE, f16, f16)            \
	KILN_EMBEDDING(TNAME, TABLE, bf16, bf16)

KILN_EMBEDDING_ALL_DST(f32, kiln::TableF32)
KILN_EMBEDDING_ALL_DST(f16, kiln::TableF16)
KILN_EMBEDDING_ALL_DST(bf16, kiln::TableBF16)
KILN_EMBEDDING_ALL_DST(q8_0, kiln::TableQ8_0)
KILN_EMBEDDING_ALL_DST(q4_0, kiln::TableQ4_0)
KILN_EMBEDDING_ALL_DST(q4_k, kiln::TableQ4_K)
KILN_EMBEDDING_ALL_DST(q6_k, kiln::TableQ6_K)
