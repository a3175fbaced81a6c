// Package backend defines the Backend interface every compute backend
// satisfies, and Open, which picks one: the CUDA backend when a usable GPU is
// present, the pure-Go CPU backend otherwise, with the reason for the choice.
//
// The interface is small: allocation and transfer, a set of primitive ops and
// synchronisation. Ops validate their arguments before touching any memory
// (the checks live in runtime/op and are shared by all backends) and return
// errors matching ErrInvalidArgument for bad shapes, dtypes or layouts; they
// never panic on bad input.
//
// Ops are asynchronous on the GPU: they are queued on the backend's stream
// and return. Results become visible to the host through Download, which
// waits; Sync waits for everything queued. Errors that only the device can
// see (a failed launch, a token id out of range in Embedding) are reported by
// the next Sync or Download, matching ErrDeviceFault. On the CPU, ops run
// before they return.
//
// Concurrency: a Backend may be used by one goroutine at a time for ops; Alloc,
// Free and MemoryStats are safe from any goroutine. Tensors belong to the
// backend that allocated them; passing one to another backend is an error
// (ErrForeignTensor).
package backend

import (
	"context"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/pool"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Sentinel errors (see runtime/op for their meaning), re-exported so that
// callers need only this package.
var (
	ErrInvalidArgument = op.ErrInvalidArgument
	ErrUnsupported     = op.ErrUnsupported
	ErrOutOfMemory     = op.ErrOutOfMemory
	ErrNoDevice        = op.ErrNoDevice
	ErrClosed          = op.ErrClosed
	ErrForeignTensor   = op.ErrForeignTensor
	ErrDeviceFault     = op.ErrDeviceFault
)

// Backend is a compute device: memory, transfers and ops.
//
// The ops write into dst, which the caller allocates. Unless an op says
// otherwise, dst may be the same view as an input (in place) but must not
// partly overlap one.
type Backend interface {
	// Name is "cpu" or "cuda:N".
	Name() string
	// Description is one human-readable line about the device.
	Description() string
	// Close waits for queued work and releases every resource. Tensors of
	// this backend must not be used afterwards.
	Close() error

	// Alloc returns a new contiguous tensor. Its contents are undefined.
	Alloc(dt tensor.DType, shape ...int) (tensor.Tensor, error)
	// Free returns t's buffer to the allocator. Views of the same buffer
	// become invalid. Freeing a buffer twice returns ErrClosed.
	Free(t tensor.Tensor) error
	// Upload copies src, the storage bytes of dst's dtype in row-major order,
	// into dst, which must be contiguous. src may be reused when Upload returns.
	Upload(dst tensor.Tensor, src []byte) error
	// Download waits for queued work, then copies src (which must be
	// contiguous) into dst, whose length must be src's size in bytes.
	Download(ctx context.Context, dst []byte, src tensor.Tensor) error
	// Sync waits until all queued work is done, or ctx ends.
	Sync(ctx context.Context) error
	// MemoryStats is the allocator's accounting.
	MemoryStats() pool.Stats

	// Copy converts src to dst's dtype (among F32, F16, BF16; or I32 to I32),
	// broadcasting src to dst's shape. Any strides.
	Copy(dst, src tensor.Tensor) error
	// Add computes dst = a + b elementwise with broadcasting; one float dtype.
	Add(dst, a, b tensor.Tensor) error
	// Mul computes dst = a · b elementwise with broadcasting; one float dtype.
	Mul(dst, a, b tensor.Tensor) error
	// SiLU computes dst = x · sigmoid(x).
	SiLU(dst, x tensor.Tensor) error
	// GELU computes dst = gelu(x), exact or tanh-approximated.
	GELU(dst, x tensor.Tensor, opts op.GELUOptions) error
	// Softmax computes dst = softmax(scale·x + causal mask) over the innermost dimension.
	Softmax(dst, x tensor.Tensor, opts op.SoftmaxOptions) error
	// RMSNorm computes dst = x / sqrt(mean(x²) + eps) · weight over the innermost
	// dimension; weight is an optional F32 vector.
	RMSNorm(dst, x, weight tensor.Tensor, opts op.NormOptions) error
	// LayerNorm computes dst = (x − mean) / sqrt(var + eps) · weight + bias over the
	// innermost dimension; weight and bias are optional F32 vectors.
	LayerNorm(dst, x, weight, bias tensor.Tensor, opts op.NormOptions) error
	// RoPE rotates x ([nTokens, nHeads, headDim] or [batch, nTokens, nHeads,
	// headDim]) by the positions (I32, [nTokens] or [batch, nTokens]).
	RoPE(dst, x, positions tensor.Tensor, opts op.RoPEOptions) error
	// Embedding gathers rows of table ([vocab, dim], float or block-quantized)
	// by ids (I32) into dst (float, ids' shape + [dim]), dequantizing. An id
	// outside [0, vocab) is an error (on the GPU, reported by the next Sync).
	Embedding(dst, table, ids tensor.Tensor) error
	// MatMul computes Y = X·Wᵀ (+ bias): dst [..., n] from x [..., k] and w
	// [n, k]. W is F32, F16, BF16 or a GGUF block format (Q8_0, Q4_0, Q4_K,
	// Q6_K) stored as in the file, rows over k, blocks along k; X and dst are
	// one float dtype with contiguous, evenly spaced rows; products accumulate
	// in F32 and the result is rounded once to dst's dtype. k must be a whole
	// number of W's blocks (32 or 256). dst must not overlap x. With k = 0 the
	// result is the bias (or zeros).
	//
	// Precision on the GPU: F32 activations are multiplied in F32 (CUDA
	// cores); F16 and BF16 activations may use tensor cores, with W's
	// dequantized values rounded to the activations' dtype first.
	MatMul(dst, x, w tensor.Tensor, opts op.MatMulOptions) error
	// MatMulSwiGLU computes Y = silu(X·Wgᵀ) ⊙ (X·Wuᵀ) in one call (the gate
	// and up projections of a LLaMA feed-forward block), where wGate and wUp
	// share one dtype and shape [n, k]. It equals, up to rounding of the
	// intermediates (kept in F32 here):
	//
	//	MatMul(g, x, wGate, {}); MatMul(u, x, wUp, {}); SiLU(g, g); Mul(dst, g, u)
	MatMulSwiGLU(dst, x, wGate, wUp tensor.Tensor) error
	// Attention computes, per query head, O = softmax(scale·Q·Kᵀ + mask)·V
	// over a batch of sequences packed into q ([totalQ, nHeads, headDim],
	// split by queryStarts, I32 [batch+1]), reading keys and values from kv
	// (contiguous runs or a paged cache; see op.AttentionKV), with
	// grouped-query attention, causal masking (query i of a sequence of qLen
	// queries and kvLen keys sits at position kvLen − qLen + i), an optional
	// sliding window, additive mask and log-sum-exp output (see
	// op.AttentionOptions). Q, K, V and dst share one dtype (F16, BF16; F32
	// too); scores, softmax and the output accumulate in F32. A query that
	// sees no key gets a row of zeros. dst must not overlap any input.
	//
	// Precision on the GPU: the probabilities are rounded to the inputs'
	// dtype before P·V (as FlashAttention does).
	Attention(dst, q, queryStarts tensor.Tensor, kv op.AttentionKV, opts op.AttentionOptions) error
	// AppendKV writes new keys and values (k, v: [totalNew, nKVHeads,
	// headDim]) into the paged cache, token i at position positions[i] of
	// sequence seqIDs[i] (see op.CheckAppendKV). A page index or position out
	// of range is an error (on the GPU, reported by the next Sync) and that
	// token is not written.
	AppendKV(cache op.AttentionKV, k, v, seqIDs, positions tensor.Tensor) error
	// Argmax writes the index of the largest element of each innermost row of
	// x into dst (I32). Ties go to the smallest index; NaNs are never chosen
	// (a row of NaNs gives 0).
	Argmax(dst, x tensor.Tensor) error
}
