package cpu

import (
	"fmt"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// AppendKV writes new keys and values (k, v: [totalNew, nKVHeads, headDim],
// the cache's dtype) into the paged cache: token i goes to page
// cache.BlockTable[seqIDs[i], positions[i] / pageSize], slot positions[i] %
// pageSize, its head vectors copied bit for bit. See op.CheckAppendKV.
//
// Every token's sequence, position and page are checked before anything is
// written: a sequence id outside [0, batch), a negative position, a position
// beyond the block table's row, or a page index outside [0, nPages) returns
// an error matching op.ErrInvalidArgument naming the token, the value and the
// bound, and leaves the cache untouched. When two tokens of one call go to
// the same slot, the later one (in k's order) wins.
func (b *Backend) AppendKV(cache op.AttentionKV, k, v, seqIDs, positions tensor.Tensor) error {
	const name = op.NameAppendKV
	if err := op.CheckAppendKV(cache, k, v, seqIDs, positions); err != nil {
		return err
	}
	if err := b.begin(name); err != nil {
		return err
	}
	defer b.end()
	vs, err := b.resolveAll(name, output("cache.K", cache.K), output("cache.V", cache.V), input("k", k), input("v", v),
		input("seqIDs", seqIDs), input("positions", positions), input("cache.BlockTable", cache.BlockTable))
	if err != nil {
		return err
	}
	cK, cV, kv, vv, ids, pos, bt := vs[0], vs[1], vs[2], vs[3], vs[4], vs[5], vs[6]
	nPages, pageSize, nKVHeads, headDim := cache.K.Dim(0), cache.K.Dim(1), cache.K.Dim(2), cache.K.Dim(3)
	batch, maxPages := cache.BlockTable.Dim(0), cache.BlockTable.Dim(1)
	totalNew := k.Dim(0)

	// slots[i] is token i's (page, slot), all checked before any write.
	type slotOf struct{ page, slot int }
	slots := make([]slotOf, totalNew)
	for i := range totalNew {
		seq, p := i32At(ids, i), i32At(pos, i)
		if seq < 0 || seq >= batch {
			return &op.ArgError{Op: name, Arg: "seqIDs", Msg: fmt.Sprintf(
				"seqIDs[%d] = %d is outside [0, %d): the block table has %d sequences", i, seq, batch, batch)}
		}
		if p < 0 || p >= maxPages*pageSize {
			return &op.ArgError{Op: name, Arg: "positions", Msg: fmt.Sprintf(
				"positions[%d] = %d (sequence %d) is outside [0, %d) (maxPagesPerSeq %d · pageSize %d)",
				i, p, seq, maxPages*pageSize, maxPages, pageSize)}
		}
		page := int(bt.i32[bt.d.Offset+seq*bt.d.Strides[2]+p/pageSize])
		if page < 0 || page >= nPages {
			return &op.ArgError{Op: name, Arg: "cache.BlockTable", Msg: fmt.Sprintf(
				"cache.BlockTable[%d, %d] = %d (token %d, position %d) is outside [0, %d): the cache has %d pages",
				seq, p/pageSize, page, i, p, nPages, nPages)}
		}
		slots[i] = slotOf{page, p % pageSize}
	}

	elemBytes := cache.K.DType().BlockBytes() // F32, F16 or BF16: one element per block
	rowBytes := headDim * elemBytes
	copyRow := func(dst view, dstElem int, src view, srcElem int) {
		copy(dst.mem[dstElem*elemBytes:dstElem*elemBytes+rowBytes], src.mem[srcElem*elemBytes:srcElem*elemBytes+rowBytes])
	}
	// One KV head per goroutine, tokens in order: the later of two tokens
	// for one slot wins, whatever the number of threads.
	b.parallelFor(nKVHeads, 2*totalNew*headDim, func(lo, hi int) {
		for g := lo; g < hi; g++ {
			for i, sl := range slots {
				// cache [nPages, pageSize, nKVHeads, headDim]; k, v padded to [1, totalNew, nKVHeads, headDim].
				copyRow(cK, cK.d.Offset+sl.page*cK.d.Strides[0]+sl.slot*cK.d.Strides[1]+g*cK.d.Strides[2],
					kv, kv.d.Offset+i*kv.d.Strides[1]+g*kv.d.Strides[2])
				copyRow(cV, cV.d.Offset+sl.page*cV.d.Strides[0]+sl.slot*cV.d.Strides[1]+g*cV.d.Strides[2],
					vv, vv.d.Offset+i*vv.d.Strides[1]+g*vv.d.Strides[2])
			}
		}
	})
	return nil
}
