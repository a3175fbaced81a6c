/*
 * kiln_params.h — the parameter structs kiln's kernels take by value, and the
 * device error word protocol.
 *
 * Plain C on purpose (no CUDA types): the same header is compiled by nvcc for
 * the kernels and by the C compiler in kernels/internal/ctypes, whose offsetof
 * and sizeof values the Go layout test compares with the Go mirrors in
 * kernels/params.go. Change a struct here, there, and in that test together.
 *
 * Conventions: device addresses are uint64_t (the Go side's cuda.DevicePtr);
 * sizes, strides and indices are int64_t so that tensors of more than 2^31
 * elements index correctly; strides are in elements, outermost dimension
 * first, never negative, and 0 broadcasts.
 */
#ifndef KILN_PARAMS_H
#define KILN_PARAMS_H

#include <stdint.h>

/* A strided view: where element 0 is and how to step through 4 dimensions. */
typedef struct KilnStrided {
	uint64_t ptr;       /* device address of element 0 */
	int64_t strides[4]; /* element strides, outermost first */
} KilnStrided;

/*
 * Elementwise ops (copy/convert, add, mul, silu, gelu): dst[i] = f(a[i], b[i])
 * over a 4-dimensional index space. Inputs are already broadcast to shape
 * (stride 0 on broadcast dimensions); b is unused by unary ops and copy.
 */
typedef struct KilnElementwiseParams {
	int64_t shape[4]; /* dst's shape, outermost first */
	int64_t n;        /* shape[0]*shape[1]*shape[2]*shape[3] */
	KilnStrided dst;
	KilnStrided a;
	KilnStrided b;
} KilnElementwiseParams;

/*
 * Row ops (softmax, rmsnorm, layernorm, argmax): the innermost dimension is a
 * contiguous row of row_len elements; up to three outer dimensions, with any
 * strides, enumerate n_rows = outer[0]*outer[1]*outer[2] rows.
 */
typedef struct KilnRowsParams {
	uint64_t dst;
	uint64_t x;
	int64_t outer[3];       /* sizes of the three outer dimensions */
	int64_t dst_strides[3]; /* element strides of those dimensions in dst */
	int64_t x_strides[3];   /* ... and in x */
	int64_t n_rows;
	int64_t row_len;
	uint64_t weight;         /* norms: F32 [row_len], 0 when absent */
	uint64_t bias;           /* layernorm: F32 [row_len], 0 when absent */
	int64_t position_offset; /* softmax: position of row 0 of outer[2] */
	float scale;             /* softmax: multiplies x */
	float eps;               /* norms: added under the square root */
	int32_t causal;          /* softmax: nonzero masks columns j > position */
	int32_t reserved;        /* keeps the size a multiple of 8; zero */
} KilnRowsParams;

/* RoPE styles (values of KilnRoPEParams.style). */
#define KILN_ROPE_NORMAL 0 /* pairs (2i, 2i+1) */
#define KILN_ROPE_NEOX 1   /* pairs (i, i + n_dims/2) */

/*
 * RoPE over x [batch, n_tokens, n_heads, head_dim] (batch 1 for rank-3 x),
 * heads contiguous; positions I32 [batch, n_tokens].
 */
typedef struct KilnRoPEParams {
	uint64_t dst;
	uint64_t x;
	uint64_t positions;
	uint64_t freq_factors;  /* F32 [n_dims/2], 0 when absent */
	int64_t shape[4];       /* batch, n_tokens, n_heads, head_dim */
	int64_t dst_strides[3]; /* batch, token, head strides of dst */
	int64_t x_strides[3];   /* ... and of x */
	int64_t pos_strides[2]; /* batch, token strides of positions */
	int64_t position_offset;
	int32_t n_dims; /* rotated elements per head, even, <= head_dim */
	int32_t style;  /* KILN_ROPE_NORMAL or KILN_ROPE_NEOX */
	float freq_base;
	float freq_scale;
} KilnRoPEParams;

/*
 * Embedding: dst row r = dequantized table row ids[r]. ids has up to three
 * dimensions (ids_shape, any strides); dst rows are contiguous and addressed
 * through dst_strides over the same three dimensions.
 */
typedef struct KilnEmbeddingParams {
	uint64_t dst;
	uint64_t table;      /* device address of row 0's first block */
	uint64_t ids;
	uint64_t error_word; /* KilnErrorWord, required */
	int64_t ids_shape[3];
	int64_t ids_strides[3];
	int64_t dst_strides[3];
	int64_t n_ids; /* ids_shape[0]*ids_shape[1]*ids_shape[2] */
	int64_t vocab;
	int64_t dim;                    /* elements per row */
	int64_t table_row_stride_bytes; /* bytes between consecutive rows */
} KilnEmbeddingParams;

/*
 * Matrix products (every matmul kernel): Y[m, n] = X[m, k] · W[n, k]ᵀ (+ bias),
 * or, for SwiGLU, Y = silu(X·Wᵀ) ⊙ (X·W_upᵀ). X and Y are one float dtype
 * (the kernel's), rows contiguous; W and W_up are one weight dtype stored as
 * in a GGUF file (rows over k, blocks along k, w_row_stride_bytes apart).
 *
 * The fast kernels work on "virtual rows" v of the weight, n_virtual of
 * them: v = n for a plain product; for SwiGLU, each group of 16 virtual rows
 * holds 8 gate rows then the 8 up rows of the same outputs
 * (n = 8·(v/16) + v%8, W_up when v%16 >= 8), so that one thread ends up with
 * both sums of an output. With split_k > 1 each of the split_k slices of k
 * (k_per_split elements each) writes F32 sums to
 * partials[(slice·m + row)·n_virtual + v], and the reduce kernel adds the
 * slices in order and finishes the outputs.
 */
typedef struct KilnMatMulParams {
	uint64_t x;        /* X [m, k] */
	uint64_t w;        /* W [n, k], or the gate weight */
	uint64_t w_up;     /* SwiGLU's up weight, 0 for a plain product */
	uint64_t y;        /* Y [m, n] */
	uint64_t bias;     /* F32 [n], 0 when absent (plain products only) */
	uint64_t partials; /* F32 [split_k, m, n_virtual] when split_k > 1 */
	int64_t m;
	int64_t n;
	int64_t k;
	int64_t x_row_stride;       /* elements between rows of X */
	int64_t y_row_stride;       /* elements between rows of Y */
	int64_t w_row_stride_bytes; /* bytes between rows of W (and W_up) */
	int64_t n_virtual;          /* n, or 16·ceil(n/8) for SwiGLU */
	int64_t k_per_split;        /* elements of k per slice (a multiple of the kernel's k step) */
	int32_t split_k;            /* slices of k, >= 1 */
	int32_t swiglu;             /* 1: SwiGLU, 0: plain */
	int32_t w_vec16;            /* 1: w, w_up and w_row_stride_bytes are multiples of 16 */
	int32_t x_vec16;            /* 1: x and x_row_stride·sizeof(X) are multiples of 16 */
} KilnMatMulParams;

/*
 * Attention (every attention kernel, and the split combine):
 * O = softmax(scale·Q·Kᵀ + mask)·V per query head, over a batch of sequences.
 *
 * Q and O are [total_q, n_heads, head_dim] (head vectors contiguous; token and
 * head strides in elements), split into sequences by q_starts (I32 [batch+1],
 * cumulative, q_starts[0] = 0, q_starts[batch] = total_q). Query head h reads KV head
 * h / (n_heads / n_kv_heads). K and V are either contiguous
 * ([total_kv, n_kv_heads, head_dim], sequence b's keys are rows
 * kv_starts[b] .. kv_starts[b+1]−1) or, when paged is nonzero, a paged cache
 * ([n_pages, page_size, n_kv_heads, head_dim]; key t of sequence b is slot
 * t % page_size of page block_table[b·block_table_row_stride + t / page_size];
 * kv_lens[b] keys). Query i of a sequence of q_len queries and kv_len keys sits
 * at position kv_len − q_len + i; causal hides keys j > position, window > 0
 * also hides keys j <= position − window.
 *
 * The I32 metadata is data: kernels check it (KILN_ERR_* below) before use,
 * record the first fault in the error word and skip what it affects.
 *
 * Split decode (n_splits > 1): split s covers keys [s·kv_per_split,
 * (s+1)·kv_per_split) of each sequence and writes, per query row r (its row in
 * Q) and head h, partial_lse[(s·total_q + r)·n_heads + h] (log2 of the split's
 * softmax denominator, in the log2-scaled domain: max + log2(sum)) and
 * partial_o[((s·total_q + r)·n_heads + h)·head_dim + d] (the split's
 * normalised output, F32); attention_combine_<dt> merges the splits.
 */
typedef struct KilnAttentionParams {
	uint64_t q;           /* T [total_q, n_heads, head_dim] */
	uint64_t o;           /* T, Q's shape */
	uint64_t k;           /* T, contiguous or paged (see above) */
	uint64_t v;           /* T, K's shape */
	uint64_t q_starts;    /* I32 [batch+1] */
	uint64_t kv_starts;   /* I32 [batch+1], contiguous K/V only */
	uint64_t block_table; /* I32 [batch, max_pages_per_seq], paged only */
	uint64_t kv_lens;     /* I32 [batch], paged only */
	uint64_t mask;        /* F32 [total_q, mask_cols] (rows mask_row_stride apart), 0 when absent */
	uint64_t lse;         /* F32 [n_heads, total_q] (heads lse_head_stride apart), 0 when absent */
	uint64_t error_word;  /* KilnErrorWord, required */
	uint64_t partial_o;   /* F32 workspace, split decode only */
	uint64_t partial_lse; /* F32 workspace, split decode only */
	int64_t q_token_stride;
	int64_t q_head_stride;
	int64_t o_token_stride;
	int64_t o_head_stride;
	int64_t k_page_stride; /* paged only */
	int64_t k_token_stride;
	int64_t k_head_stride;
	int64_t v_page_stride; /* paged only */
	int64_t v_token_stride;
	int64_t v_head_stride;
	int64_t block_table_row_stride;
	int64_t mask_row_stride;
	int64_t lse_head_stride;
	int64_t total_q;           /* rows of Q */
	int64_t total_kv;          /* contiguous: rows of K and V */
	int64_t n_pages;           /* paged: pages of the cache */
	int64_t page_size;         /* paged: tokens per page, >= 1 */
	int64_t max_pages_per_seq; /* paged: columns of the block table */
	int64_t mask_cols;         /* columns of the mask */
	int64_t batch;             /* sequences */
	int64_t max_query_len;     /* bound on any sequence's q_len (exceeding it is a fault) */
	int64_t max_kv_len;        /* bound on any sequence's kv_len (exceeding it is a fault) */
	int64_t window;            /* > 0: sliding window of that many keys (with causal) */
	int64_t kv_per_split;      /* split decode: keys per split (a multiple of the key tile) */
	int32_t n_heads;
	int32_t n_kv_heads;
	int32_t head_dim;    /* 1..256 */
	int32_t paged;       /* nonzero: K/V are a paged cache */
	int32_t causal;      /* nonzero: causal mask */
	int32_t page_shift;  /* paged: log2(page_size) when a power of two, else -1 */
	int32_t n_splits;    /* split decode: splits of the keys (1: none, O written directly) */
	int32_t row_groups;  /* decode: blocks of 16 (query, head) rows per sequence and KV head */
	float scale;         /* multiplies Q·Kᵀ (resolved: never 0) */
	float scale_log2;    /* scale · log2(e): kernels work with exp2 */
} KilnAttentionParams;

/*
 * AppendKV: token i of k and v ([n_new, n_kv_heads, head_dim], head vectors
 * contiguous) goes to slot positions[i] % page_size of page
 * block_table[seq_ids[i]·block_table_row_stride + positions[i] / page_size] of
 * the paged caches k_cache and v_cache ([n_pages, page_size, n_kv_heads,
 * head_dim]). A seq id outside [0, batch), a position outside [0,
 * max_pages_per_seq·page_size) or a page outside [0, n_pages) is recorded in
 * the error word and that token is not written.
 */
typedef struct KilnAppendKVParams {
	uint64_t k_cache;
	uint64_t v_cache;
	uint64_t k;
	uint64_t v;
	uint64_t seq_ids;     /* I32 [n_new] */
	uint64_t positions;   /* I32 [n_new] */
	uint64_t block_table; /* I32 [batch, max_pages_per_seq] */
	uint64_t error_word;  /* KilnErrorWord, required */
	int64_t k_token_stride;
	int64_t k_head_stride;
	int64_t v_token_stride;
	int64_t v_head_stride;
	int64_t k_cache_page_stride;
	int64_t k_cache_token_stride;
	int64_t k_cache_head_stride;
	int64_t v_cache_page_stride;
	int64_t v_cache_token_stride;
	int64_t v_cache_head_stride;
	int64_t block_table_row_stride;
	int64_t n_new;
	int64_t batch;
	int64_t n_pages;
	int64_t page_size;
	int64_t max_pages_per_seq;
	int32_t n_kv_heads;
	int32_t head_dim;
} KilnAppendKVParams;

/*
 * The device error word: 8 uint32 words (32 bytes) in device memory, zeroed by
 * the host. A kernel that finds bad data (a token id out of range) claims the
 * word with atomicCAS on `code` (0 -> its code), and only the winner fills in
 * the other fields, so the first fault wins and the record is never mixed.
 * The host reads it after synchronising and decodes it (kernels.DecodeDeviceError).
 */
typedef struct KilnErrorWord {
	uint32_t code;     /* KILN_ERR_*, 0 = no fault */
	uint32_t op;       /* KILN_OP_* */
	uint32_t index_lo; /* flat (row-major) index of the faulting element */
	uint32_t index_hi;
	uint32_t value_lo; /* the offending value, int64 two's complement */
	uint32_t value_hi;
	uint32_t limit_lo; /* the exclusive upper bound it broke, int64 */
	uint32_t limit_hi;
} KilnErrorWord;

#define KILN_ERR_NONE 0
#define KILN_ERR_INDEX_OUT_OF_RANGE 1 /* value is outside [0, limit) */
/*
 * Attention and AppendKV metadata faults. Unless said otherwise, index is the
 * entry's index in its I32 tensor, value the entry, limit the bound it broke.
 */
#define KILN_ERR_QUERY_START_RANGE 2      /* q_starts[index] = value is outside [0, limit] (index 0: must be 0, limit 0) */
#define KILN_ERR_QUERY_START_DECREASING 3 /* q_starts[index] = value < q_starts[index-1] = limit */
#define KILN_ERR_KV_START_RANGE 4         /* kv_starts[index] = value is outside [0, limit] (index 0: must be 0) */
#define KILN_ERR_KV_START_DECREASING 5    /* kv_starts[index] = value < kv_starts[index-1] = limit */
#define KILN_ERR_KV_LEN_RANGE 6           /* kv_lens[index] = value is outside [0, limit] (the block table's capacity) */
#define KILN_ERR_QUERY_LEN_OVER_MAX 7     /* sequence index has value queries, more than max_query_len = limit */
#define KILN_ERR_KV_LEN_OVER_MAX 8        /* sequence index has value keys, more than max_kv_len = limit */
#define KILN_ERR_MASK_TOO_NARROW 9        /* sequence index has value keys, the mask only limit columns */
#define KILN_ERR_PAGE_OUT_OF_RANGE 10     /* page value is outside [0, limit); attention: index = sequence << 32 | table column; append-kv: index = token */
#define KILN_ERR_POSITION_OUT_OF_RANGE 11 /* append-kv: positions[index] = value is outside [0, limit) */
#define KILN_ERR_QUERY_STARTS_END 12      /* q_starts[index = batch] = value, the last start, is not total_q = limit */

#define KILN_OP_EMBEDDING 1
#define KILN_OP_ATTENTION 2
#define KILN_OP_APPEND_KV 3 /* KILN_ERR_INDEX_OUT_OF_RANGE: seq_ids[index] = value is outside [0, batch = limit) */

#endif /* KILN_PARAMS_H */
