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
