package kernels

// Go mirrors of the parameter structs in kiln_params.h, field for field, in
// the same order and with the same fixed-size types, so that Go's layout
// equals C's (amd64 and arm64 both align int64/uint64 to 8 and float/int32 to
// 4). Each field's tag `c:"..."` names its C field; TestParamLayout compares
// every offset and size with the C compiler's.

// stridedParams mirrors KilnStrided.
type stridedParams struct {
	Ptr     uint64   `c:"ptr"`
	Strides [4]int64 `c:"strides"`
}

// elementwiseParams mirrors KilnElementwiseParams.
type elementwiseParams struct {
	Shape [4]int64      `c:"shape"`
	N     int64         `c:"n"`
	Dst   stridedParams `c:"dst"`
	A     stridedParams `c:"a"`
	B     stridedParams `c:"b"`
}

// rowsParams mirrors KilnRowsParams.
type rowsParams struct {
	Dst            uint64   `c:"dst"`
	X              uint64   `c:"x"`
	Outer          [3]int64 `c:"outer"`
	DstStrides     [3]int64 `c:"dst_strides"`
	XStrides       [3]int64 `c:"x_strides"`
	NRows          int64    `c:"n_rows"`
	RowLen         int64    `c:"row_len"`
	Weight         uint64   `c:"weight"`
	Bias           uint64   `c:"bias"`
	PositionOffset int64    `c:"position_offset"`
	Scale          float32  `c:"scale"`
	Eps            float32  `c:"eps"`
	Causal         int32    `c:"causal"`
	Reserved       int32    `c:"reserved"`
}

// ropeParams mirrors KilnRoPEParams.
type ropeParams struct {
	Dst            uint64   `c:"dst"`
	X              uint64   `c:"x"`
	Positions      uint64   `c:"positions"`
	FreqFactors    uint64   `c:"freq_factors"`
	Shape          [4]int64 `c:"shape"`
	DstStrides     [3]int64 `c:"dst_strides"`
	XStrides       [3]int64 `c:"x_strides"`
	PosStrides     [2]int64 `c:"pos_strides"`
	PositionOffset int64    `c:"position_offset"`
	NDims          int32    `c:"n_dims"`
	Style          int32    `c:"style"`
	FreqBase       float32  `c:"freq_base"`
	FreqScale      float32  `c:"freq_scale"`
}

// embeddingParams mirrors KilnEmbeddingParams.
type embeddingParams struct {
	Dst                 uint64   `c:"dst"`
	Table               uint64   `c:"table"`
	IDs                 uint64   `c:"ids"`
	ErrorWord           uint64   `c:"error_word"`
	IDsShape            [3]int64 `c:"ids_shape"`
	IDsStrides          [3]int64 `c:"ids_strides"`
	DstStrides          [3]int64 `c:"dst_strides"`
	NIDs                int64    `c:"n_ids"`
	Vocab               int64    `c:"vocab"`
	Dim                 int64    `c:"dim"`
	TableRowStrideBytes int64    `c:"table_row_stride_bytes"`
}

// matmulParams mirrors KilnMatMulParams.
type matmulParams struct {
	X               uint64 `c:"x"`
	W               uint64 `c:"w"`
	WUp             uint64 `c:"w_up"`
	Y               uint64 `c:"y"`
	Bias            uint64 `c:"bias"`
	Partials        uint64 `c:"partials"`
	M               int64  `c:"m"`
	N               int64  `c:"n"`
	K               int64  `c:"k"`
	XRowStride      int64  `c:"x_row_stride"`
	YRowStride      int64  `c:"y_row_stride"`
	WRowStrideBytes int64  `c:"w_row_stride_bytes"`
	NVirtual        int64  `c:"n_virtual"`
	KPerSplit       int64  `c:"k_per_split"`
	SplitK          int32  `c:"split_k"`
	SwiGLU          int32  `c:"swiglu"`
	WVec16          int32  `c:"w_vec16"`
	XVec16          int32  `c:"x_vec16"`
}

// attentionParams mirrors KilnAttentionParams.
type attentionParams struct {
	Q                   uint64  `c:"q"`
	O                   uint64  `c:"o"`
	K                   uint64  `c:"k"`
	V                   uint64  `c:"v"`
	QStarts             uint64  `c:"q_starts"`
	KVStarts            uint64  `c:"kv_starts"`
	BlockTable          uint64  `c:"block_table"`
	KVLens              uint64  `c:"kv_lens"`
	Mask                uint64  `c:"mask"`
	LSE                 uint64  `c:"lse"`
	ErrorWord           uint64  `c:"error_word"`
	PartialO            uint64  `c:"partial_o"`
	PartialLSE          uint64  `c:"partial_lse"`
	QTokenStride        int64   `c:"q_token_stride"`
	QHeadStride         int64   `c:"q_head_stride"`
	OTokenStride        int64   `c:"o_token_stride"`
	OHeadStride         int64   `c:"o_head_stride"`
	KPageStride         int64   `c:"k_page_stride"`
	KTokenStride        int64   `c:"k_token_stride"`
	KHeadStride         int64   `c:"k_head_stride"`
	VPageStride         int64   `c:"v_page_stride"`
	VTokenStride        int64   `c:"v_token_stride"`
	VHeadStride         int64   `c:"v_head_stride"`
	BlockTableRowStride int64   `c:"block_table_row_stride"`
	MaskRowStride       int64   `c:"mask_row_stride"`
	LSEHeadStride       int64   `c:"lse_head_stride"`
	TotalQ              int64   `c:"total_q"`
	TotalKV             int64   `c:"total_kv"`
	NPages              int64   `c:"n_pages"`
	PageSize            int64   `c:"page_size"`
	MaxPagesPerSeq      int64   `c:"max_pages_per_seq"`
	MaskCols            int64   `c:"mask_cols"`
	Batch               int64   `c:"batch"`
	MaxQueryLen         int64   `c:"max_query_len"`
	MaxKVLen            int64   `c:"max_kv_len"`
	Window              int64   `c:"window"`
	KVPerSplit          int64   `c:"kv_per_split"`
	NHeads              int32   `c:"n_heads"`
	NKVHeads            int32   `c:"n_kv_heads"`
	HeadDim             int32   `c:"head_dim"`
	Paged               int32   `c:"paged"`
	Causal              int32   `c:"causal"`
	PageShift           int32   `c:"page_shift"`
	NSplits             int32   `c:"n_splits"`
	RowGroups           int32   `c:"row_groups"`
	Scale               float32 `c:"scale"`
	ScaleLog2           float32 `c:"scale_log2"`
}

// appendKVParams mirrors KilnAppendKVParams.
type appendKVParams struct {
	KCache              uint64 `c:"k_cache"`
	VCache              uint64 `c:"v_cache"`
	K                   uint64 `c:"k"`
	V                   uint64 `c:"v"`
	SeqIDs              uint64 `c:"seq_ids"`
	Positions           uint64 `c:"positions"`
	BlockTable          uint64 `c:"block_table"`
	ErrorWord           uint64 `c:"error_word"`
	KTokenStride        int64  `c:"k_token_stride"`
	KHeadStride         int64  `c:"k_head_stride"`
	VTokenStride        int64  `c:"v_token_stride"`
	VHeadStride         int64  `c:"v_head_stride"`
	KCachePageStride    int64  `c:"k_cache_page_stride"`
	KCacheTokenStride   int64  `c:"k_cache_token_stride"`
	KCacheHeadStride    int64  `c:"k_cache_head_stride"`
	VCachePageStride    int64  `c:"v_cache_page_stride"`
	VCacheTokenStride   int64  `c:"v_cache_token_stride"`
	VCacheHeadStride    int64  `c:"v_cache_head_stride"`
	BlockTableRowStride int64  `c:"block_table_row_stride"`
	NNew                int64  `c:"n_new"`
	Batch               int64  `c:"batch"`
	NPages              int64  `c:"n_pages"`
	PageSize            int64  `c:"page_size"`
	MaxPagesPerSeq      int64  `c:"max_pages_per_seq"`
	NKVHeads            int32  `c:"n_kv_heads"`
	HeadDim             int32  `c:"head_dim"`
}

// errorWordLayout mirrors KilnErrorWord; DecodeDeviceError reads these fields
// from the 32 bytes the device wrote.
type errorWordLayout struct {
	Code    uint32 `c:"code"`
	Op      uint32 `c:"op"`
	IndexLo uint32 `c:"index_lo"`
	IndexHi uint32 `c:"index_hi"`
	ValueLo uint32 `c:"value_lo"`
	ValueHi uint32 `c:"value_hi"`
	LimitLo uint32 `c:"limit_lo"`
	LimitHi uint32 `c:"limit_hi"`
}

// Values of the C #defines in kiln_params.h (TestParamLayout checks them).
const (
	ropeStyleNormal = 0 // KILN_ROPE_NORMAL
	ropeStyleNeoX   = 1 // KILN_ROPE_NEOX
)
