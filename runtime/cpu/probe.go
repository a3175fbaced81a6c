package cpu

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// probeSink keeps the read probe's sums observable, so no compiler may drop the reads.
var probeSink atomic.Uint64

// probeChunkBytes is the share of work one goroutine takes at a time.
const probeChunkBytes = 1 << 20

// ProbeRead reads every byte of src once (summing 8-byte words across the
// worker goroutines): the memory-bandwidth yardstick for the CPU benchmarks.
func (b *Backend) ProbeRead(src tensor.Tensor) error {
	data, err := b.probeBytes("src", src)
	if err != nil {
		return err
	}
	nChunks := (len(data) + probeChunkBytes - 1) / probeChunkBytes
	b.parallelFor(nChunks, probeChunkBytes, func(lo, hi int) {
		var sum uint64
		for c := lo; c < hi; c++ {
			chunk := data[c*probeChunkBytes : min((c+1)*probeChunkBytes, len(data))]
			for len(chunk) >= 32 {
				sum += binary.LittleEndian.Uint64(chunk) ^ binary.LittleEndian.Uint64(chunk[8:]) +
					binary.LittleEndian.Uint64(chunk[16:]) ^ binary.LittleEndian.Uint64(chunk[24:])
				chunk = chunk[32:]
			}
			for _, v := range chunk {
				sum += uint64(v)
			}
		}
		probeSink.Add(sum)
	})
	return nil
}

// ProbeCopy copies src to dst (both contiguous, the same size in bytes)
// across the worker goroutines.
func (b *Backend) ProbeCopy(dst, src tensor.Tensor) error {
	s, err := b.probeBytes("src", src)
	if err != nil {
		return err
	}
	d, err := b.probeBytes("dst", dst)
	if err != nil {
		return err
	}
	if len(d) != len(s) {
		return &op.ArgError{Op: "probe", Arg: "dst", Msg: fmt.Sprintf("%d bytes, src has %d", len(d), len(s))}
	}
	nChunks := (len(s) + probeChunkBytes - 1) / probeChunkBytes
	b.parallelFor(nChunks, probeChunkBytes, func(lo, hi int) {
		start, end := lo*probeChunkBytes, min(hi*probeChunkBytes, len(s))
		copy(d[start:end], s[start:end])
	})
	return nil
}

func (b *Backend) probeBytes(arg string, t tensor.Tensor) ([]byte, error) {
	data, err := b.Bytes(t)
	if err != nil {
		return nil, fmt.Errorf("probe: %s: %w", arg, err)
	}
	return data, nil
}
