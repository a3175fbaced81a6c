package gpu

import (
	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/kernels"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Attention computes O = softmax(scale·Q·Kᵀ + mask)·V with the attention
// kernels (see kernels.Set.Attention for which kernel runs when). Metadata
// faults (starts, lengths, page indices) are found by the kernels and
// reported by the next Sync or Download.
func (b *Backend) Attention(dst, q, queryStarts tensor.Tensor, kv op.AttentionKV, opts op.AttentionOptions) error {
	const name = op.NameAttention
	s, err := op.CheckAttention(dst, q, queryStarts, kv, opts)
	if err != nil {
		return err
	}
	r := resolver{b: b, name: name}
	a := kernels.AttentionArgs{
		DType: q.DType(), Batch: s.Batch,
		TotalQ: s.TotalQ, NHeads: s.NHeads, NKVHeads: s.NKVHeads, HeadDim: s.HeadDim,
		Q: r.ptr("q", q), QTokenStride: q.Stride(0), QHeadStride: q.Stride(1),
		O: r.ptr("dst", dst), OTokenStride: dst.Stride(0), OHeadStride: dst.Stride(1),
		QueryStarts: r.ptr("queryStarts", queryStarts),
		K:           r.ptr("kv.K", kv.K), V: r.ptr("kv.V", kv.V),
		Paged: s.Paged,
		Scale: s.Scale, Causal: opts.Causal, Window: opts.Window,
		MaxQueryLen: s.MaxQueryLen, MaxKVLen: s.MaxKVLen,
		ErrorWord: b.errWord,
	}
	if s.Paged {
		a.KPageStride, a.KTokenStride, a.KHeadStride = kv.K.Stride(0), kv.K.Stride(1), kv.K.Stride(2)
		a.VPageStride, a.VTokenStride, a.VHeadStride = kv.V.Stride(0), kv.V.Stride(1), kv.V.Stride(2)
		a.NPages, a.PageSize = s.NPages, s.PageSize
		a.BlockTable = r.ptr("kv.BlockTable", kv.BlockTable)
		a.MaxPagesPerSeq, a.BlockTableRowStride = s.MaxPagesPerSeq, kv.BlockTable.Stride(0)
		a.KVLens = r.ptr("kv.Lens", kv.Lens)
	} else {
		a.KTokenStride, a.KHeadStride = kv.K.Stride(0), kv.K.Stride(1)
		a.VTokenStride, a.VHeadStride = kv.V.Stride(0), kv.V.Stride(1)
		a.TotalKV = s.TotalKV
		a.KVStarts = r.ptr("kv.Starts", kv.Starts)
	}
	if s.HasMask {
		a.Mask, a.MaskRowStride, a.MaskCols = r.ptr("Mask", opts.Mask), opts.Mask.Stride(0), s.MaskCols
	}
	if !opts.LSE.IsZero() {
		a.LSE, a.LSEHeadStride = r.ptr("LSE", opts.LSE), opts.LSE.Stride(0)
	}
	if r.err != nil || s.TotalQ == 0 {
		return r.err
	}
	return b.launch(name, func() error {
		b.mayFault = true
		return b.kern.Attention(b.stream, a)
	})
}

// AppendKV writes new keys and values into a paged cache. A bad sequence id,
// position or page index is found by the kernel and reported by the next
// Sync or Download; that token is not written.
func (b *Backend) AppendKV(cache op.AttentionKV, k, v, seqIDs, positions tensor.Tensor) error {
	const name = op.NameAppendKV
	if err := op.CheckAppendKV(cache, k, v, seqIDs, positions); err != nil {
		return err
	}
	r := resolver{b: b, name: name}
	bt := cache.BlockTable
	a := kernels.AppendKVArgs{
		DType: k.DType(), NNew: k.Dim(0), NKVHeads: k.Dim(1), HeadDim: k.Dim(2),
		K: r.ptr("k", k), V: r.ptr("v", v),
		KTokenStride: k.Stride(0), KHeadStride: k.Stride(1),
		VTokenStride: v.Stride(0), VHeadStride: v.Stride(1),
		SeqIDs: r.ptr("seqIDs", seqIDs), Positions: r.ptr("positions", positions),
		KCache: r.ptr("cache.K", cache.K), VCache: r.ptr("cache.V", cache.V),
		KCachePageStride: cache.K.Stride(0), KCacheTokenStride: cache.K.Stride(1), KCacheHeadStride: cache.K.Stride(2),
		VCachePageStride: cache.V.Stride(0), VCacheTokenStride: cache.V.Stride(1), VCacheHeadStride: cache.V.Stride(2),
		NPages: cache.K.Dim(0), PageSize: cache.K.Dim(1),
		BlockTable: r.ptr("cache.BlockTable", bt), Batch: bt.Dim(0), MaxPagesPerSeq: bt.Dim(1), BlockTableRowStride: bt.Stride(0),
		ErrorWord: b.errWord,
	}
	if r.err != nil || k.Dim(0) == 0 {
		return r.err
	}
	return b.launch(name, func() error {
		b.mayFault = true
		return b.kern.AppendKV(b.stream, a)
	})
}

// resolver turns tensors into device addresses, keeping the first error.
type resolver struct {
	b    *Backend
	name string
	err  error
}

func (r *resolver) ptr(arg string, t tensor.Tensor) cuda.DevicePtr {
	if r.err != nil || t.IsZero() {
		return 0
	}
	buf, err := r.b.buffer(r.name, arg, t)
	if err != nil {
		r.err = err
		return 0
	}
	return r.b.ptr(buf, t)
}
