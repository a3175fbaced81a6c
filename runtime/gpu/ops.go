package gpu

import (
	"errors"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/kernels"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// operand describes t to a kernel: its first element's address and its
// layout padded to four dimensions.
func (b *Backend) operand(opName, arg string, t tensor.Tensor) (kernels.Operand, error) {
	buf, err := b.buffer(opName, arg, t)
	if err != nil {
		return kernels.Operand{}, err
	}
	d := op.Pad4(t)
	return kernels.Operand{Ptr: b.ptr(buf, t), DType: t.DType(), Shape: d.Shape, Strides: d.Strides}, nil
}

// broadcastOperand describes t stretched to shape (stride 0 where t has size 1).
func (b *Backend) broadcastOperand(opName, arg string, t tensor.Tensor, shape [tensor.MaxRank]int) (kernels.Operand, error) {
	o, err := b.operand(opName, arg, t)
	if err != nil {
		return o, err
	}
	d := op.BroadcastTo(t, shape)
	o.Shape, o.Strides = d.Shape, d.Strides
	return o, nil
}

// vectorPtr is the address of an optional F32 parameter vector (0: none).
func (b *Backend) vectorPtr(opName, arg string, t tensor.Tensor) (cuda.DevicePtr, error) {
	if t.IsZero() {
		return 0, nil
	}
	buf, err := b.buffer(opName, arg, t)
	if err != nil {
		return 0, err
	}
	return b.ptr(buf, t), nil
}

// launch runs fn, which queues kernels, under the op lock. Argument errors
// pass through; driver errors become device faults (sticky when the context
// is broken).
func (b *Backend) launch(opName string, fn func() error) error {
	b.opMu.Lock()
	defer b.opMu.Unlock()
	if b.fault != nil {
		return b.fault
	}
	err := fn()
	if err == nil || errors.Is(err, op.ErrInvalidArgument) || errors.Is(err, op.ErrClosed) {
		return err
	}
	return b.noteFault(opName, err)
}

// Copy converts src into dst's dtype, broadcasting src to dst's shape.
func (b *Backend) Copy(dst, src tensor.Tensor) error {
	if err := op.CheckCopy(dst, src); err != nil {
		return err
	}
	d, err := b.operand(op.NameCopy, "dst", dst)
	if err != nil {
		return err
	}
	s, err := b.broadcastOperand(op.NameCopy, "src", src, d.Shape)
	if err != nil || dst.NumElems() == 0 {
		return err
	}
	return b.launch(op.NameCopy, func() error { return b.kern.Convert(b.stream, d, s) })
}

// Add computes dst = a + c with broadcasting.
func (b *Backend) Add(dst, a, c tensor.Tensor) error {
	return b.binary(op.NameAdd, kernels.Add, dst, a, c)
}

// Mul computes dst = a · c with broadcasting.
func (b *Backend) Mul(dst, a, c tensor.Tensor) error {
	return b.binary(op.NameMul, kernels.Mul, dst, a, c)
}

func (b *Backend) binary(name string, kind kernels.BinaryOp, dst, x, y tensor.Tensor) error {
	if err := op.CheckBinary(name, dst, x, y); err != nil {
		return err
	}
	d, err := b.operand(name, "dst", dst)
	if err != nil {
		return err
	}
	xo, err := b.broadcastOperand(name, "a", x, d.Shape)
	if err != nil {
		return err
	}
	yo, err := b.broadcastOperand(name, "b", y, d.Shape)
	if err != nil || dst.NumElems() == 0 {
		return err
	}
	return b.launch(name, func() error { return b.kern.Binary(b.stream, kind, d, xo, yo) })
}

// SiLU computes dst = x · sigmoid(x).
func (b *Backend) SiLU(dst, x tensor.Tensor) error { return b.unary(op.NameSiLU, kernels.SiLU, dst, x) }

// GELU computes dst = gelu(x).
func (b *Backend) GELU(dst, x tensor.Tensor, opts op.GELUOptions) error {
	kind, err := kernels.GELUOp(opts.Approx)
	if err != nil {
		return err
	}
	return b.unary(op.NameGELU, kind, dst, x)
}

func (b *Backend) unary(name string, kind kernels.UnaryOp, dst, x tensor.Tensor) error {
	if err := op.CheckUnary(name, dst, x); err != nil {
		return err
	}
	d, err := b.operand(name, "dst", dst)
	if err != nil {
		return err
	}
	xo, err := b.operand(name, "x", x)
	if err != nil || dst.NumElems() == 0 {
		return err
	}
	return b.launch(name, func() error { return b.kern.Unary(b.stream, kind, d, xo) })
}

// rowOperands resolves dst and x of a row op.
func (b *Backend) rowOperands(name string, dst, x tensor.Tensor) (d, xo kernels.Operand, err error) {
	if d, err = b.operand(name, "dst", dst); err != nil {
		return
	}
	xo, err = b.operand(name, "x", x)
	return
}

// Softmax computes dst = softmax(scale·x + causal mask) along rows.
func (b *Backend) Softmax(dst, x tensor.Tensor, opts op.SoftmaxOptions) error {
	if err := op.CheckSoftmax(dst, x, opts); err != nil {
		return err
	}
	d, xo, err := b.rowOperands(op.NameSoftmax, dst, x)
	if err != nil || dst.NumElems() == 0 {
		return err
	}
	return b.launch(op.NameSoftmax, func() error { return b.kern.Softmax(b.stream, d, xo, opts) })
}

// RMSNorm computes dst = x / sqrt(mean(x²) + eps) · weight along rows.
func (b *Backend) RMSNorm(dst, x, weight tensor.Tensor, opts op.NormOptions) error {
	if err := op.CheckRMSNorm(dst, x, weight, opts); err != nil {
		return err
	}
	d, xo, err := b.rowOperands(op.NameRMSNorm, dst, x)
	if err != nil {
		return err
	}
	w, err := b.vectorPtr(op.NameRMSNorm, "weight", weight)
	if err != nil || dst.NumElems() == 0 {
		return err
	}
	return b.launch(op.NameRMSNorm, func() error { return b.kern.RMSNorm(b.stream, d, xo, w, opts) })
}

// LayerNorm computes dst = (x − mean)/sqrt(var + eps) · weight + bias along rows.
func (b *Backend) LayerNorm(dst, x, weight, bias tensor.Tensor, opts op.NormOptions) error {
	if err := op.CheckLayerNorm(dst, x, weight, bias, opts); err != nil {
		return err
	}
	d, xo, err := b.rowOperands(op.NameLayerNorm, dst, x)
	if err != nil {
		return err
	}
	w, err := b.vectorPtr(op.NameLayerNorm, "weight", weight)
	if err != nil {
		return err
	}
	bi, err := b.vectorPtr(op.NameLayerNorm, "bias", bias)
	if err != nil || dst.NumElems() == 0 {
		return err
	}
	return b.launch(op.NameLayerNorm, func() error { return b.kern.LayerNorm(b.stream, d, xo, w, bi, opts) })
}

// RoPE rotates x by the positions.
func (b *Backend) RoPE(dst, x, positions tensor.Tensor, opts op.RoPEOptions) error {
	if err := op.CheckRoPE(dst, x, positions, opts); err != nil {
		return err
	}
	d, xo, err := b.rowOperands(op.NameRoPE, dst, x)
	if err != nil {
		return err
	}
	pos, err := b.operand(op.NameRoPE, "positions", positions)
	if err != nil {
		return err
	}
	eff := opts.Effective(x.Dim(-1))
	ff, err := b.vectorPtr(op.NameRoPE, "FreqFactors", eff.FreqFactors)
	if err != nil || dst.NumElems() == 0 {
		return err
	}
	p := kernels.RoPEParams{
		Style: eff.Style, NDims: eff.NDims, FreqBase: eff.FreqBase, FreqScale: eff.FreqScale,
		PositionOffset: eff.PositionOffset, FreqFactors: ff,
	}
	return b.launch(op.NameRoPE, func() error { return b.kern.RoPE(b.stream, d, xo, pos, p) })
}

// Embedding gathers and dequantizes rows of table by ids. An id out of
// range is reported by the next Sync or Download (op.ErrDeviceFault); its
// row is written as zeros.
func (b *Backend) Embedding(dst, table, ids tensor.Tensor) error {
	if err := op.CheckEmbedding(dst, table, ids); err != nil {
		return err
	}
	d, err := b.operand(op.NameEmbedding, "dst", dst)
	if err != nil {
		return err
	}
	tab, err := b.operand(op.NameEmbedding, "table", table)
	if err != nil {
		return err
	}
	io, err := b.operand(op.NameEmbedding, "ids", ids)
	if err != nil || dst.NumElems() == 0 {
		return err
	}
	return b.launch(op.NameEmbedding, func() error {
		b.mayFault = true
		return b.kern.Embedding(b.stream, d, tab, io, b.errWord)
	})
}

// Argmax writes the index of each row's largest element into dst.
func (b *Backend) Argmax(dst, x tensor.Tensor) error {
	if err := op.CheckArgmax(dst, x); err != nil {
		return err
	}
	d, err := b.operand(op.NameArgmax, "dst", dst)
	if err != nil {
		return err
	}
	xo, err := b.operand(op.NameArgmax, "x", x)
	if err != nil || x.NumElems() == 0 {
		return err
	}
	return b.launch(op.NameArgmax, func() error { return b.kern.Argmax(b.stream, d, xo) })
}
