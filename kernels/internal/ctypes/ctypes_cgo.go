//go:build cgo

package ctypes

/*
#cgo CFLAGS: -I${SRCDIR}/../..
#include <stddef.h>
#include "kiln_params.h"

typedef struct { const char *name; size_t value; } kiln_entry;

#define OFF(T, F) { #T "." #F, offsetof(T, F) }
#define SIZE(T) { #T, sizeof(T) }

static const kiln_entry kiln_offsets[] = {
	OFF(KilnStrided, ptr), OFF(KilnStrided, strides),

	OFF(KilnElementwiseParams, shape), OFF(KilnElementwiseParams, n),
	OFF(KilnElementwiseParams, dst), OFF(KilnElementwiseParams, a), OFF(KilnElementwiseParams, b),

	OFF(KilnRowsParams, dst), OFF(KilnRowsParams, x), OFF(KilnRowsParams, outer),
	OFF(KilnRowsParams, dst_strides), OFF(KilnRowsParams, x_strides), OFF(KilnRowsParams, n_rows),
	OFF(KilnRowsParams, row_len), OFF(KilnRowsParams, weight), OFF(KilnRowsParams, bias),
	OFF(KilnRowsParams, position_offset), OFF(KilnRowsParams, scale), OFF(KilnRowsParams, eps),
	OFF(KilnRowsParams, causal), OFF(KilnRowsParams, reserved),

	OFF(KilnRoPEParams, dst), OFF(KilnRoPEParams, x), OFF(KilnRoPEParams, positions),
	OFF(KilnRoPEParams, freq_factors), OFF(KilnRoPEParams, shape), OFF(KilnRoPEParams, dst_strides),
	OFF(KilnRoPEParams, x_strides), OFF(KilnRoPEParams, pos_strides), OFF(KilnRoPEParams, position_offset),
	OFF(KilnRoPEParams, n_dims), OFF(KilnRoPEParams, style), OFF(KilnRoPEParams, freq_base),
	OFF(KilnRoPEParams, freq_scale),

	OFF(KilnEmbeddingParams, dst), OFF(KilnEmbeddingParams, table), OFF(KilnEmbeddingParams, ids),
	OFF(KilnEmbeddingParams, error_word), OFF(KilnEmbeddingParams, ids_shape),
	OFF(KilnEmbeddingParams, ids_strides), OFF(KilnEmbeddingParams, dst_strides),
	OFF(KilnEmbeddingParams, n_ids), OFF(KilnEmbeddingParams, vocab), OFF(KilnEmbeddingParams, dim),
	OFF(KilnEmbeddingParams, table_row_stride_bytes),

	OFF(KilnMatMulParams, x), OFF(KilnMatMulParams, w), OFF(KilnMatMulParams, w_up),
	OFF(KilnMatMulParams, y), OFF(KilnMatMulParams, bias), OFF(KilnMatMulParams, partials),
	OFF(KilnMatMulParams, m), OFF(KilnMatMulParams, n), OFF(KilnMatMulParams, k),
	OFF(KilnMatMulParams, x_row_stride), OFF(KilnMatMulParams, y_row_stride),
	OFF(KilnMatMulParams, w_row_stride_bytes), OFF(KilnMatMulParams, n_virtual),
	OFF(KilnMatMulParams, k_per_split), OFF(KilnMatMulParams, split_k), OFF(KilnMatMulParams, swiglu),
	OFF(KilnMatMulParams, w_vec16), OFF(KilnMatMulParams, x_vec16),

	OFF(KilnAttentionParams, q), OFF(KilnAttentionParams, o), OFF(KilnAttentionParams, k),
	OFF(KilnAttentionParams, v), OFF(KilnAttentionParams, q_starts), OFF(KilnAttentionParams, kv_starts),
	OFF(KilnAttentionParams, block_table), OFF(KilnAttentionParams, kv_lens), OFF(KilnAttentionParams, mask),
	OFF(KilnAttentionParams, lse), OFF(KilnAttentionParams, error_word), OFF(KilnAttentionParams, partial_o),
	OFF(KilnAttentionParams, partial_lse), OFF(KilnAttentionParams, q_token_stride),
	OFF(KilnAttentionParams, q_head_stride), OFF(KilnAttentionParams, o_token_stride),
	OFF(KilnAttentionParams, o_head_stride), OFF(KilnAttentionParams, k_page_stride),
	OFF(KilnAttentionParams, k_token_stride), OFF(KilnAttentionParams, k_head_stride),
	OFF(KilnAttentionParams, v_page_stride), OFF(KilnAttentionParams, v_token_stride),
	OFF(KilnAttentionParams, v_head_stride), OFF(KilnAttentionParams, block_table_row_stride),
	OFF(KilnAttentionParams, mask_row_stride), OFF(KilnAttentionParams, lse_head_stride),
	OFF(KilnAttentionParams, total_q), OFF(KilnAttentionParams, total_kv), OFF(KilnAttentionParams, n_pages),
	OFF(KilnAttentionParams, page_size), OFF(KilnAttentionParams, max_pages_per_seq),
	OFF(KilnAttentionParams, mask_cols), OFF(KilnAttentionParams, batch),
	OFF(KilnAttentionParams, max_query_len), OFF(KilnAttentionParams, max_kv_len),
	OFF(KilnAttentionParams, window), OFF(KilnAttentionParams, kv_per_split), OFF(KilnAttentionParams, n_heads),
	OFF(KilnAttentionParams, n_kv_heads), OFF(KilnAttentionParams, head_dim), OFF(KilnAttentionParams, paged),
	OFF(KilnAttentionParams, causal), OFF(KilnAttentionParams, page_shift), OFF(KilnAttentionParams, n_splits),
	OFF(KilnAttentionParams, row_groups), OFF(KilnAttentionParams, scale), OFF(KilnAttentionParams, scale_log2),

	OFF(KilnAppendKVParams, k_cache), OFF(KilnAppendKVParams, v_cache), OFF(KilnAppendKVParams, k),
	OFF(KilnAppendKVParams, v), OFF(KilnAppendKVParams, seq_ids), OFF(KilnAppendKVParams, positions),
	OFF(KilnAppendKVParams, block_table), OFF(KilnAppendKVParams, error_word),
	OFF(KilnAppendKVParams, k_token_stride), OFF(KilnAppendKVParams, k_head_stride),
	OFF(KilnAppendKVParams, v_token_stride), OFF(KilnAppendKVParams, v_head_stride),
	OFF(KilnAppendKVParams, k_cache_page_stride), OFF(KilnAppendKVParams, k_cache_token_stride),
	OFF(KilnAppendKVParams, k_cache_head_stride), OFF(KilnAppendKVParams, v_cache_page_stride),
	OFF(KilnAppendKVParams, v_cache_token_stride), OFF(KilnAppendKVParams, v_cache_head_stride),
	OFF(KilnAppendKVParams, block_table_row_stride), OFF(KilnAppendKVParams, n_new),
	OFF(KilnAppendKVParams, batch), OFF(KilnAppendKVParams, n_pages), OFF(KilnAppendKVParams, page_size),
	OFF(KilnAppendKVParams, max_pages_per_seq), OFF(KilnAppendKVParams, n_kv_heads),
	OFF(KilnAppendKVParams, head_dim),

	OFF(KilnErrorWord, code), OFF(KilnErrorWord, op), OFF(KilnErrorWord, index_lo),
	OFF(KilnErrorWord, index_hi), OFF(KilnErrorWord, value_lo), OFF(KilnErrorWord, value_hi),
	OFF(KilnErrorWord, limit_lo), OFF(KilnErrorWord, limit_hi),
};

static const kiln_entry kiln_sizes[] = {
	SIZE(KilnStrided), SIZE(KilnElementwiseParams), SIZE(KilnRowsParams), SIZE(KilnRoPEParams),
	SIZE(KilnEmbeddingParams), SIZE(KilnMatMulParams), SIZE(KilnAttentionParams), SIZE(KilnAppendKVParams),
	SIZE(KilnErrorWord),
};

static const kiln_entry kiln_defines[] = {
	{ "KILN_ROPE_NORMAL", KILN_ROPE_NORMAL }, { "KILN_ROPE_NEOX", KILN_ROPE_NEOX },
	{ "KILN_ERR_NONE", KILN_ERR_NONE }, { "KILN_ERR_INDEX_OUT_OF_RANGE", KILN_ERR_INDEX_OUT_OF_RANGE },
	{ "KILN_OP_EMBEDDING", KILN_OP_EMBEDDING },
	{ "KILN_ERR_QUERY_START_RANGE", KILN_ERR_QUERY_START_RANGE },
	{ "KILN_ERR_QUERY_START_DECREASING", KILN_ERR_QUERY_START_DECREASING },
	{ "KILN_ERR_KV_START_RANGE", KILN_ERR_KV_START_RANGE },
	{ "KILN_ERR_KV_START_DECREASING", KILN_ERR_KV_START_DECREASING },
	{ "KILN_ERR_KV_LEN_RANGE", KILN_ERR_KV_LEN_RANGE },
	{ "KILN_ERR_QUERY_LEN_OVER_MAX", KILN_ERR_QUERY_LEN_OVER_MAX },
	{ "KILN_ERR_KV_LEN_OVER_MAX", KILN_ERR_KV_LEN_OVER_MAX },
	{ "KILN_ERR_MASK_TOO_NARROW", KILN_ERR_MASK_TOO_NARROW },
	{ "KILN_ERR_PAGE_OUT_OF_RANGE", KILN_ERR_PAGE_OUT_OF_RANGE },
	{ "KILN_ERR_POSITION_OUT_OF_RANGE", KILN_ERR_POSITION_OUT_OF_RANGE },
	{ "KILN_ERR_QUERY_STARTS_END", KILN_ERR_QUERY_STARTS_END },
	{ "KILN_OP_ATTENTION", KILN_OP_ATTENTION }, { "KILN_OP_APPEND_KV", KILN_OP_APPEND_KV },
};

static size_t kiln_n_offsets(void) { return sizeof kiln_offsets / sizeof kiln_offsets[0]; }
static size_t kiln_n_sizes(void) { return sizeof kiln_sizes / sizeof kiln_sizes[0]; }
static size_t kiln_n_defines(void) { return sizeof kiln_defines / sizeof kiln_defines[0]; }
static const kiln_entry *kiln_offset_at(size_t i) { return &kiln_offsets[i]; }
static const kiln_entry *kiln_size_at(size_t i) { return &kiln_sizes[i]; }
static const kiln_entry *kiln_define_at(size_t i) { return &kiln_defines[i]; }
*/
import "C"

// Available is true: this build can ask the C compiler.
const Available = true

// Offsets maps "Struct.field" (C names) to offsetof(Struct, field).
var Offsets = map[string]uintptr{}

// Sizes maps a struct's C name to its sizeof.
var Sizes = map[string]uintptr{}

// Defines maps the name of an integer #define to its value.
var Defines = map[string]int64{}

func init() {
	for i := C.size_t(0); i < C.kiln_n_offsets(); i++ {
		e := C.kiln_offset_at(i)
		Offsets[C.GoString(e.name)] = uintptr(e.value)
	}
	for i := C.size_t(0); i < C.kiln_n_sizes(); i++ {
		e := C.kiln_size_at(i)
		Sizes[C.GoString(e.name)] = uintptr(e.value)
	}
	for i := C.size_t(0); i < C.kiln_n_defines(); i++ {
		e := C.kiln_define_at(i)
		Defines[C.GoString(e.name)] = int64(e.value)
	}
}
