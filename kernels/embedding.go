package kernels

import (
	"slices"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Embedding queues the gather dst[r] = dequantize(table[ids[r]]).
//
//   - table is [1, 1, vocab, dim] of F32, F16, BF16, Q8_0, Q4_0, Q4_K or
//     Q6_K, rows contiguous (stride 1) and a whole number of blocks apart;
//   - ids is I32 [1, a, b, c] (up to three dimensions, any strides);
//   - dst is float [a, b, c, dim], rows contiguous.
//
// An id outside [0, vocab) gives a row of zeros and is recorded in the device
// error word at errorWord (ErrorWordBytes, zeroed by the caller; required),
// which DecodeDeviceError reads after synchronising.
//
// Kernels: embedding_<table>_to_<dst>.
func (s *Set) Embedding(st *cuda.Stream, dst, table, ids Operand, errorWord cuda.DevicePtr) error {
	const name = op.NameEmbedding
	nOut, err := checkOperand(name, "dst", dst)
	if err != nil {
		return err
	}
	if err := checkFloat(name, "dst", dst); err != nil {
		return err
	}
	if !innerContiguous(dst) {
		return argError(name, "dst", "rows must be contiguous (stride 1), layout %v", dst)
	}
	if _, err := checkOperand(name, "table", table); err != nil {
		return err
	}
	if !slices.Contains(embeddingTableTypes, table.DType) {
		return argError(name, "table", "dtype %v is not supported (supported: %v)", table.DType, embeddingTableTypes)
	}
	if table.Shape[0] != 1 || table.Shape[1] != 1 {
		return argError(name, "table", "shape %v: expected [1, 1, vocab, dim]", table.Shape)
	}
	if !innerContiguous(table) {
		return argError(name, "table", "rows must be contiguous (stride 1), layout %v", table)
	}
	vocab, dim := table.Shape[2], table.Shape[3]
	blockElems := table.DType.BlockElems()
	rowStride := table.Strides[2]
	if dim%blockElems != 0 || rowStride%blockElems != 0 {
		return argError(name, "table", "row length %d and row stride %d must be whole %d-element blocks of %v",
			dim, rowStride, blockElems, table.DType)
	}
	if _, err := checkOperand(name, "ids", ids); err != nil {
		return err
	}
	if ids.DType != tensor.I32 {
		return argError(name, "ids", "dtype %v, expected I32", ids.DType)
	}
	if ids.Shape[0] != 1 {
		return argError(name, "ids", "shape %v: at most three dimensions, padded as [1, a, b, c]", ids.Shape)
	}
	if want := [4]int{ids.Shape[1], ids.Shape[2], ids.Shape[3], dim}; dst.Shape != want {
		return argError(name, "dst", "shape %v, expected %v (ids' shape and the table's row length)", dst.Shape, want)
	}
	if errorWord == 0 || uint64(errorWord)%4 != 0 {
		return argError(name, "errorWord", "device address %#x: a 4-byte aligned error word is required", uint64(errorWord))
	}
	if nOut == 0 {
		return nil
	}
	if vocab == 0 {
		// Every id is out of range, and there is no row to read: the kernel
		// still runs to zero dst and record the first id.
		rowStride = 0
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	nIDs := int64(ids.Shape[1]) * int64(ids.Shape[2]) * int64(ids.Shape[3])
	s.emb = embeddingParams{
		Dst:                 uint64(dst.Ptr),
		Table:               uint64(table.Ptr),
		IDs:                 uint64(ids.Ptr),
		ErrorWord:           uint64(errorWord),
		IDsShape:            [3]int64{int64(ids.Shape[1]), int64(ids.Shape[2]), int64(ids.Shape[3])},
		IDsStrides:          [3]int64{int64(ids.Strides[1]), int64(ids.Strides[2]), int64(ids.Strides[3])},
		DstStrides:          [3]int64{int64(dst.Strides[0]), int64(dst.Strides[1]), int64(dst.Strides[2])},
		NIDs:                nIDs,
		Vocab:               int64(vocab),
		Dim:                 int64(dim),
		TableRowStrideBytes: int64(rowStride/blockElems) * int64(table.DType.BlockBytes()),
	}
	cuda.Struct(&s.args, &s.emb)
	return s.launch(embeddingKernels[embeddingKey{table.DType, dst.DType}], embeddingConfig(nIDs, int64(dim)), st)
}
