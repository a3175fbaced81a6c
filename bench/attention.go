package bench

import (
	"fmt"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Attention cases, all F16 (the dtype of the FlashAttention-3 paper's
// forward tables, and of the peer's runs).
//
// attention/prefill/F16/d<D>-<causal|full>/b<B>s<S> is the FlashAttention-3
// paper's forward grid: batch·seqlen = 16k tokens, hidden 2048 (nHeads =
// 2048/D query heads and as many KV heads), head dims 64, 128 and 256,
// causal and not, seqlen 512 to 16k (batch = 16384/seqlen), contiguous keys
// (qLen = kvLen for every sequence). FLOPs = 4·batch·seqlen²·hidden, halved
// for causal, as the paper counts them (Q·Kᵀ and P·V, 2 flops per
// multiply-add); Bytes = Q + K + V + O. Compare TFLOP/s with torch SDPA's
// FLASH and CUDNN backends (scripts/peers/ops_torch.py).
//
// attention/decode/F16/h64kv8d128/b<B>kv<L> is one decode step: 64 query
// heads over 8 KV heads of 128 (GQA 8), one query per sequence, batch 1, 8,
// 32 and 128 × KV length 2k, 8k and 32k, every sequence the same length, in
// a paged cache with a shuffled block table. Pages of 64 tokens: a page then
// holds 64·8·128·2 = 128 KiB, one head's 64 keys are 16 KiB of 256-byte
// rows, so a kernel's 64-key tile never straddles two pages and the block
// table is read once per 64 keys; a sequence wastes at most 63 slots (0.2%
// at 32k), and servers use pages of 16 to 256 tokens. Bytes = K and V read
// once + Q + O (the block table, 1/512 of that, is left out); FLOPs =
// 4·batch·64·L·128. Decode is memory-bound: compare GB/s with probe/read.
// The largest case holds 128·32k·8·128·2·2 bytes = 16 GiB of keys and
// values: the harness keeps one input set for it (its Bytes exceed the
// footprint), and small cases rotate up to attentionMaxSets sets so that
// their iterations read memory, not the L2 cache.

var (
	// attentionPrefillHeadDims, attentionPrefillSeqLens: the paper's grid.
	attentionPrefillHeadDims = []int{64, 128, 256}
	attentionPrefillSeqLens  = []int{512, 1024, 2048, 4096, 8192, 16384}
	// attentionDecodeBatches, attentionDecodeKVLens: the decode grid.
	attentionDecodeBatches = []int{1, 8, 32, 128}
	attentionDecodeKVLens  = []int{2048, 8192, 32768}
)

const (
	// attentionPrefillTokens is batch·seqlen of every prefill case.
	attentionPrefillTokens = 16384
	// attentionPrefillHidden is nHeads·headDim of every prefill case.
	attentionPrefillHidden = 2048
	// The decode cases' heads, KV heads, head dimension and page size.
	attentionDecodeHeads    = 64
	attentionDecodeKVHeads  = 8
	attentionDecodeHeadDim  = 128
	attentionDecodePageSize = 64
	// attentionMaxSets lets small decode cases (8 MiB of keys and values
	// at batch 1 and 2k) rotate sets spanning the 256 MiB footprint.
	attentionMaxSets = 32
)

func init() {
	for _, d := range attentionPrefillHeadDims {
		for _, causal := range []bool{true, false} {
			for _, s := range attentionPrefillSeqLens {
				Register(attentionPrefillCase(tensor.F16, attentionPrefillTokens/s, s, attentionPrefillHidden/d, d, causal))
			}
		}
	}
	for _, b := range attentionDecodeBatches {
		for _, l := range attentionDecodeKVLens {
			Register(attentionDecodeCase(tensor.F16, b, l, attentionDecodeHeads, attentionDecodeKVHeads, attentionDecodeHeadDim,
				attentionDecodePageSize))
		}
	}
}

// attentionPrefillCase is a prefill of batch sequences of seqLen tokens,
// nHeads heads of headDim (as many KV heads), contiguous keys.
func attentionPrefillCase(dt tensor.DType, batch, seqLen, nHeads, headDim int, causal bool) Case {
	mode := "full"
	if causal {
		mode = "causal"
	}
	tokens := batch * seqLen
	flops := 4 * int64(batch) * int64(seqLen) * int64(seqLen) * int64(nHeads*headDim)
	if causal {
		flops /= 2
	}
	return Case{
		Name:  fmt.Sprintf("attention/prefill/%v/d%d-%s/b%ds%d", dt, headDim, mode, batch, seqLen),
		Bytes: 4 * bytesOf(dt, tokens, nHeads, headDim),
		FLOPs: flops,
		Prepare: func(env *Env) (*Runner, error) {
			q, err := env.Random(dt, 0, tokens, nHeads, headDim)
			if err != nil {
				return nil, err
			}
			k, err := env.Random(dt, 0, tokens, nHeads, headDim)
			if err != nil {
				return nil, err
			}
			v, err := env.Random(dt, 0, tokens, nHeads, headDim)
			if err != nil {
				return nil, err
			}
			dst, err := env.Alloc(dt, tokens, nHeads, headDim)
			if err != nil {
				return nil, err
			}
			startVals := make([]int32, batch+1)
			for i := range startVals {
				startVals[i] = int32(i * seqLen)
			}
			starts, err := env.ints(startVals)
			if err != nil {
				return nil, err
			}
			kv := op.AttentionKV{K: k, V: v, Starts: starts}
			opts := op.AttentionOptions{Causal: causal, MaxQueryLen: seqLen, MaxKVLen: seqLen}
			return &Runner{Run: func() error { return env.Dev.Attention(dst, q, starts, kv, opts) }}, nil
		},
	}
}

// attentionDecodeCase is one decode step of batch sequences of kvLen keys
// in a paged cache (pages of pageSize, shuffled): nHeads query heads over
// nKVHeads KV heads of headDim. kvLen must be a multiple of pageSize.
func attentionDecodeCase(dt tensor.DType, batch, kvLen, nHeads, nKVHeads, headDim, pageSize int) Case {
	pagesPerSeq := kvLen / pageSize
	nPages := batch * pagesPerSeq
	return Case{
		Name: fmt.Sprintf("attention/decode/%v/h%dkv%dd%d/b%dkv%d", dt, nHeads, nKVHeads, headDim, batch, kvLen),
		Bytes: 2*bytesOf(dt, nPages, pageSize, nKVHeads, headDim) + // K and V
			2*bytesOf(dt, batch, nHeads, headDim), // Q and O
		FLOPs:   4 * int64(batch) * int64(nHeads) * int64(kvLen) * int64(headDim),
		MaxSets: attentionMaxSets,
		Prepare: func(env *Env) (*Runner, error) {
			k, err := env.randomLarge(dt, nPages, pageSize, nKVHeads, headDim)
			if err != nil {
				return nil, err
			}
			v, err := env.randomLarge(dt, nPages, pageSize, nKVHeads, headDim)
			if err != nil {
				return nil, err
			}
			// Each sequence's pages are a random choice from the whole
			// cache, as in a server after many requests came and went.
			perm := env.rng.Perm(nPages)
			tableVals := make([]int32, nPages)
			for i, p := range perm {
				tableVals[i] = int32(p)
			}
			table, err := env.ints(tableVals)
			if err != nil {
				return nil, err
			}
			if table, err = table.Reshape(batch, pagesPerSeq); err != nil {
				return nil, err
			}
			lenVals := make([]int32, batch)
			startVals := make([]int32, batch+1)
			for i := range lenVals {
				lenVals[i] = int32(kvLen)
				startVals[i+1] = int32(i + 1)
			}
			lens, err := env.ints(lenVals)
			if err != nil {
				return nil, err
			}
			qStarts, err := env.ints(startVals)
			if err != nil {
				return nil, err
			}
			q, err := env.Random(dt, 0, batch, nHeads, headDim)
			if err != nil {
				return nil, err
			}
			dst, err := env.Alloc(dt, batch, nHeads, headDim)
			if err != nil {
				return nil, err
			}
			kv := op.AttentionKV{K: k, V: v, BlockTable: table, Lens: lens}
			// Causal, as a decoder passes it: the one query sits at the
			// last position and sees every key.
			opts := op.AttentionOptions{Causal: true, MaxQueryLen: 1, MaxKVLen: kvLen}
			return &Runner{Run: func() error { return env.Dev.Attention(dst, q, qStarts, kv, opts) }}, nil
		},
	}
}

// ints allocates an I32 vector holding vals.
func (e *Env) ints(vals []int32) (tensor.Tensor, error) {
	t, err := e.Alloc(tensor.I32, len(vals))
	if err != nil {
		return t, err
	}
	return t, e.Dev.Upload(t, tensor.I32Bytes(vals))
}

// randomLarge is Random for a float tensor that may be many GiB: it uploads
// the repeated random pattern a slice of the outermost dimension at a time,
// so the host never holds a copy of the whole tensor.
func (e *Env) randomLarge(dt tensor.DType, shape ...int) (tensor.Tensor, error) {
	t, err := e.Alloc(dt, shape...)
	if err != nil {
		return t, err
	}
	outerBytes := t.SizeBytes() / int64(max(1, shape[0]))
	perChunk := max(1, int(patternBytes/max(1, outerBytes))) // outer slices per upload
	chunkBytes := int64(perChunk) * outerBytes
	pattern, err := e.randomBytes(dt, 0, min(chunkBytes, t.SizeBytes()))
	if err != nil {
		return t, err
	}
	for lo := 0; lo < shape[0]; lo += perChunk {
		hi := min(shape[0], lo+perChunk)
		part, err := t.Slice(0, lo, hi)
		if err != nil {
			return t, err
		}
		if err := e.Dev.Upload(part, pattern[:int64(hi-lo)*outerBytes]); err != nil {
			return t, err
		}
	}
	return t, nil
}
