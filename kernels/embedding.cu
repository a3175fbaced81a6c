// embedding.cu — dst row r = table row ids[r], dequantized to F32 and stored as
// the float dtype of dst.
//
// The table is [vocab, dim] in F32, F16, BF16 or one of ggml's block formats
// (Q8_0, Q4_0, Q4_K, Q6_K), each row a whole number of blocks, rows
// table_row_stride_bytes apart. The block layouts and the dequantization
// arithmetic (ggml's exactly, including the order of float operations) are in
// quant.cuh, shared with the matmul kernels and checked on the host against
// kiln's Go reference (kernels/internal/quantcheck).
//
// An id outside [0, vocab) writes a row of zeros and records
// KILN_ERR_INDEX_OUT_OF_RANGE in the error word (first fault wins); nothing
// outside the table is read.
//
// Kernels, named embedding_<table>_to_<dst> with table one of f32, f16, bf16,
// q8_0, q4_0, q4_k, q6_k and dst one of f32, f16, bf16 (simple: one block per
// id, each thread dequantizes its elements one at a time).
#include "common.cuh"
#include "quant.cuh"

namespace kiln {

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
