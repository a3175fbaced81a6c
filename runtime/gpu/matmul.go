package gpu

import (
	"github.com/kiln-gpu/kiln/kernels"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// MatMul computes Y = X·Wᵀ (+ bias) with the fused dequantize-matmul
// kernels (see kernels.Set.MatMul for which kernel runs when).
func (b *Backend) MatMul(dst, x, w tensor.Tensor, opts op.MatMulOptions) error {
	s, err := op.CheckMatMul(dst, x, w, opts)
	if err != nil {
		return err
	}
	args, err := b.matMulArgs(op.NameMatMul, s, dst, x, w, tensor.Tensor{})
	if err != nil {
		return err
	}
	if args.Bias, err = b.vectorPtr(op.NameMatMul, "Bias", opts.Bias); err != nil {
		return err
	}
	return b.runMatMul(op.NameMatMul, args)
}

// MatMulSwiGLU computes Y = silu(X·Wgᵀ) ⊙ (X·Wuᵀ) in one pass over X.
func (b *Backend) MatMulSwiGLU(dst, x, wGate, wUp tensor.Tensor) error {
	s, err := op.CheckMatMulSwiGLU(dst, x, wGate, wUp)
	if err != nil {
		return err
	}
	args, err := b.matMulArgs(op.NameMatMulSwiGLU, s, dst, x, wGate, wUp)
	if err != nil {
		return err
	}
	return b.runMatMul(op.NameMatMulSwiGLU, args)
}

// matMulArgs resolves the operands' device addresses and strides.
func (b *Backend) matMulArgs(name string, s op.MatMulShape, dst, x, w, wUp tensor.Tensor) (kernels.MatMulArgs, error) {
	a := kernels.MatMulArgs{
		M: s.M, N: s.N, K: s.K,
		XRowStride: s.XRowStride, XType: x.DType(),
		YRowStride: s.YRowStride,
		WType:      w.DType(),
	}
	r := resolver{b: b, name: name}
	a.Y, a.X = r.ptr("dst", dst), r.ptr("x", x)
	if wUp.IsZero() {
		a.W = r.ptr("w", w)
	} else {
		a.W, a.WUp = r.ptr("wGate", w), r.ptr("wUp", wUp)
	}
	// W is [n, k] with contiguous rows; its row stride is that of dimension
	// 0. The kernels read both SwiGLU weights at this one stride, which
	// op.CheckMatMulSwiGLU guarantees they share.
	a.WRowStride = weightRowStride(w)
	return a, r.err
}

// weightRowStride is the distance in elements between the rows of a weight
// [n, k] (a single row: its length).
func weightRowStride(w tensor.Tensor) int {
	if w.Dim(0) == 1 {
		return w.Dim(1)
	}
	return w.Stride(0)
}

func (b *Backend) runMatMul(name string, a kernels.MatMulArgs) error {
	if a.M == 0 || a.N == 0 {
		return nil
	}
	return b.launch(name, func() error { return b.kern.MatMul(b.stream, a) })
}
