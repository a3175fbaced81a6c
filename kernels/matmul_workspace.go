package kernels

import (
	"github.com/kiln-gpu/kiln/cuda"
)

// deviceMemory is what the split-k workspace needs from the driver.
// contextDriver has it; a driver without it gets no split-k.
type deviceMemory interface {
	MemAlloc(sizeBytes int64) (cuda.DevicePtr, error)
	MemFree(p cuda.DevicePtr) error
}

// deviceAttributes is how the Set learns the multiprocessor count; a
// driver without it gets defaultSMCount.
type deviceAttributes interface {
	MultiprocessorCount() (int, error)
}

// MemAlloc allocates device memory in the Set's context.
func (d contextDriver) MemAlloc(sizeBytes int64) (cuda.DevicePtr, error) {
	return d.ctx.MemAlloc(sizeBytes)
}

// MemFree frees what MemAlloc returned.
func (d contextDriver) MemFree(p cuda.DevicePtr) error { return d.ctx.MemFree(p) }

// MultiprocessorCount reads the device's SM count.
func (d contextDriver) MultiprocessorCount() (int, error) {
	return d.ctx.Device().Attribute(cuda.AttrMultiprocessorCount)
}

// matmulState is the Set's matmul state (guarded by Set.mu).
type matmulState struct {
	// params is filled in place for each launch, so that packing it never
	// makes it escape to the heap.
	params matmulParams
	// smCount is the device's multiprocessor count, 0 until first asked.
	smCount int
	// workspaces holds each stream's split-k workspace.
	workspaces streamWorkspaces
}

// multiprocessorCount is the device's SM count, read once (s.mu held).
func (s *Set) multiprocessorCount() int {
	if s.mm.smCount == 0 {
		s.mm.smCount = defaultSMCount
		if d, ok := s.drv.(deviceAttributes); ok {
			if n, err := d.MultiprocessorCount(); err == nil && n > 0 {
				s.mm.smCount = n
			} else {
				s.log.Debug("kernels: multiprocessor count unknown; split-k assumes the default",
					"default", defaultSMCount, "error", err)
			}
		}
	}
	return s.mm.smCount
}

// matmulWorkspace returns st's split-k workspace, at least sizeBytes long
// (s.mu held).
func (s *Set) matmulWorkspace(st *cuda.Stream, sizeBytes int64) (cuda.DevicePtr, error) {
	return s.mm.workspaces.get(s.drv, st, sizeBytes)
}

// closeMatMul frees the workspaces (s.mu held, from Close).
func (s *Set) closeMatMul() error { return s.mm.workspaces.free(s.drv) }
