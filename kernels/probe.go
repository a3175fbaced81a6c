package kernels

import (
	"github.com/kiln-gpu/kiln/cuda"
)

// DefaultProbeBlocks is a read-probe grid that keeps every SM busy: 8 blocks
// of 256 threads per SM (2048 threads, an SM's maximum on Ampere and Hopper).
func DefaultProbeBlocks(smCount int) int { return max(1, 8*smCount) }

// ProbeOutputBytes is the size of ReadProbe's output for a grid of blocks.
func ProbeOutputBytes(blocks int) int64 { return 4 * int64(max(blocks, 0)) }

func checkProbeBuffer(arg string, p cuda.DevicePtr, sizeBytes int64) error {
	if p == 0 || uint64(p)%16 != 0 {
		return argError("probe", arg, "device address %#x must be non-zero and 16-byte aligned", uint64(p))
	}
	if sizeBytes <= 0 || sizeBytes%16 != 0 {
		return argError("probe", "sizeBytes", "%d must be a positive multiple of 16", sizeBytes)
	}
	return nil
}

// ReadProbe queues read_probe_b128: it reads sizeBytes at src with 128-bit
// loads using a grid of blocks (see DefaultProbeBlocks) and writes one
// uint32 per block to out (ProbeOutputBytes(blocks)), so that the reads
// cannot be optimised away. Timing it gives the achievable read bandwidth.
func (s *Set) ReadProbe(st *cuda.Stream, src cuda.DevicePtr, sizeBytes int64, out cuda.DevicePtr, blocks int) error {
	if err := checkProbeBuffer("src", src, sizeBytes); err != nil {
		return err
	}
	if out == 0 || uint64(out)%4 != 0 {
		return argError("probe", "out", "device address %#x must be non-zero and 4-byte aligned", uint64(out))
	}
	if blocks < 1 || blocks > maxGridX {
		return argError("probe", "blocks", "%d is outside [1, %d]", blocks, maxGridX)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	s.args.Ptr(src).I64(sizeBytes / 16).Ptr(out)
	return s.launch(readProbeKernel, launchConfig{grid: cuda.D1(blocks), block: cuda.D1(probeThreads)}, st)
}

// CopyProbe queues copy_probe_b128: dst ← src, sizeBytes, device to device,
// with 128-bit loads and stores.
func (s *Set) CopyProbe(st *cuda.Stream, dst, src cuda.DevicePtr, sizeBytes int64) error {
	if err := checkProbeBuffer("dst", dst, sizeBytes); err != nil {
		return err
	}
	if err := checkProbeBuffer("src", src, sizeBytes); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	nVec := sizeBytes / 16
	s.args.Ptr(dst).Ptr(src).I64(nVec)
	return s.launch(copyProbeKernel, vecConfig(nVec, 1), st)
}
