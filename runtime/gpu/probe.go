package gpu

import (
	"fmt"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/kernels"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// probeBytes checks a probe operand: contiguous, a multiple of 16 bytes.
func (b *Backend) probeBytes(arg string, t tensor.Tensor) (cuda.DevicePtr, int64, error) {
	buf, err := b.buffer("probe", arg, t)
	if err != nil {
		return 0, 0, err
	}
	n := t.SizeBytes()
	if !t.IsContiguous() || n%16 != 0 || n == 0 {
		return 0, 0, &op.ArgError{Op: "probe", Arg: arg, Msg: fmt.Sprintf("%v must be contiguous and a non-zero multiple of 16 bytes", t)}
	}
	return b.ptr(buf, t), n, nil
}

// ProbeRead reads every byte of src once with 128-bit loads: the read
// bandwidth yardstick of the benchmarks.
func (b *Backend) ProbeRead(src tensor.Tensor) error {
	p, n, err := b.probeBytes("src", src)
	if err != nil {
		return err
	}
	return b.launch("probe", func() error {
		if b.probeOut == 0 {
			sms, err := b.dev.Attribute(cuda.AttrMultiprocessorCount)
			if err != nil {
				return err
			}
			b.probeBlocks = kernels.DefaultProbeBlocks(sms)
			if b.probeOut, err = b.ctx.MemAlloc(kernels.ProbeOutputBytes(b.probeBlocks)); err != nil {
				return err
			}
		}
		return b.kern.ReadProbe(b.stream, p, n, b.probeOut, b.probeBlocks)
	})
}

// ProbeCopy copies src to dst (same size) with 128-bit loads and stores.
func (b *Backend) ProbeCopy(dst, src tensor.Tensor) error {
	dp, dn, err := b.probeBytes("dst", dst)
	if err != nil {
		return err
	}
	sp, sn, err := b.probeBytes("src", src)
	if err != nil {
		return err
	}
	if dn != sn {
		return &op.ArgError{Op: "probe", Arg: "dst", Msg: fmt.Sprintf("%d bytes, src has %d", dn, sn)}
	}
	return b.launch("probe", func() error { return b.kern.CopyProbe(b.stream, dp, sp, sn) })
}
