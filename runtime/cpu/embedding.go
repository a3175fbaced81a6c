package cpu

import (
	"fmt"
	"sync"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Embedding gathers rows of table ([vocab, dim], rows contiguous, one of
// op.EmbeddingTableTypes) by ids (I32, any rank up to 3, any strides) into dst
// (float, ids' shape + [dim], rows contiguous), converting or dequantizing:
// float tables convert exactly to float32 and round once to dst's dtype;
// block formats decode as tensor.Dequantize does (ggml's dequantize_row_*, bit
// for bit) and round once to dst's dtype.
//
// Every id is checked before anything is written: an id outside [0, vocab)
// returns an error matching op.ErrInvalidArgument that names the id, its
// index in ids and the vocabulary size, and leaves dst untouched.
func (b *Backend) Embedding(dst, table, ids tensor.Tensor) error {
	const name = op.NameEmbedding
	if err := op.CheckEmbedding(dst, table, ids); err != nil {
		return err
	}
	if err := b.begin(name); err != nil {
		return err
	}
	defer b.end()
	vs, err := b.resolveAll(name, output("dst", dst), input("table", table), input("ids", ids))
	if err != nil {
		return err
	}
	d, tv, iv := vs[0], vs[1], vs[2]
	vocab, dim := table.Dim(0), table.Dim(1)
	idShape := iv.d.Shape // [1, s1, s2, s3]: ids padded
	nIds := ids.NumElems()
	idAt := func(k int) (id int32, i1, i2, i3 int) {
		i3 = k % idShape[3]
		i2 = k / idShape[3] % idShape[2]
		i1 = k / idShape[3] / idShape[2]
		return iv.i32[iv.d.Offset+i1*iv.d.Strides[1]+i2*iv.d.Strides[2]+i3*iv.d.Strides[3]], i1, i2, i3
	}
	for k := range nIds {
		if id, i1, i2, i3 := idAt(k); id < 0 || int(id) >= vocab {
			index := []int{i1, i2, i3}[tensor.MaxRank-1-ids.Rank():]
			return &op.ArgError{Op: name, Arg: "ids", Msg: fmt.Sprintf(
				"id %d at index %v (element %d of %d) is outside the table's vocabulary [0, %d)", id, index, k, nIds, vocab)}
		}
	}
	if dst.NumElems() == 0 {
		return nil
	}

	dt := table.DType()
	blockElems, blockBytes := dt.BlockElems(), dt.BlockBytes()
	rowStride := tv.d.Strides[2] // table padded: [1, 1, vocab, dim]
	var (
		errMu    sync.Mutex
		firstErr error
	)
	// A float table of dst's own dtype needs no conversion: rows are copied
	// as bytes (what converting through float32 and back gives, except that
	// NaN payloads are kept rather than made canonical).
	sameType := dt == dst.DType()
	elemBytes := dt.BlockBytes()
	b.parallelFor(nIds, dim*4, func(lo, hi int) {
		scratch := make([]float32, dim)
		for k := lo; k < hi; k++ {
			id, i1, i2, i3 := idAt(k)
			// dst's padded shape is [s1, s2, s3, dim]: ids' indices one place out.
			dOff := d.d.Offset + i1*d.d.Strides[0] + i2*d.d.Strides[1] + i3*d.d.Strides[2]
			if sameType {
				src := (tv.d.Offset + int(id)*rowStride) * elemBytes
				copy(d.mem[dOff*elemBytes:(dOff+dim)*elemBytes], tv.mem[src:src+dim*elemBytes])
				continue
			}
			outRow, direct := d.outRow(dOff, dim, 1, scratch)
			rowElem := tv.d.Offset + int(id)*rowStride
			if dt.IsQuantized() {
				start := rowElem / blockElems * blockBytes
				rowBytes := tv.mem[start : start+dim/blockElems*blockBytes]
				if err := tensor.Dequantize(dt, rowBytes, outRow); err != nil {
					// Unreachable: the row's size follows from its shape.
					errMu.Lock()
					firstErr = cmpOr(firstErr, fmt.Errorf("cpu: %s: row %d: %w", name, id, err))
					errMu.Unlock()
					return
				}
			} else {
				tv.loadRow(outRow, rowElem, 1)
			}
			d.finishRow(dOff, 1, outRow, direct)
		}
	})
	return firstErr
}

// cmpOr returns the first non-nil error.
func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
