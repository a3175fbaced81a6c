package kernels

import (
	"errors"
	"fmt"

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
	// workspaces holds each stream's split-k workspace: launches on one
	// stream run in order, so one buffer per stream is never used by two
	// kernels at once.
	workspaces map[*cuda.Stream]*matmulWorkspace
	// retired are workspaces replaced by larger ones. They are freed only
	// by Close: a CUDA graph captured earlier may still use one.
	retired []cuda.DevicePtr
}

type matmulWorkspace struct {
	ptr       cuda.DevicePtr
	sizeBytes int64
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

// matmulWorkspace returns st's split-k workspace, at least sizeBytes long,
// allocating a larger one when needed (s.mu held). Growth doubles, so a
// stream allocates a handful of times at most.
func (s *Set) matmulWorkspace(st *cuda.Stream, sizeBytes int64) (cuda.DevicePtr, error) {
	mem, ok := s.drv.(deviceMemory)
	if !ok {
		return 0, errors.New("kernels: the driver cannot allocate a split-k workspace")
	}
	ws := s.mm.workspaces[st]
	if ws != nil && ws.sizeBytes >= sizeBytes {
		return ws.ptr, nil
	}
	size := sizeBytes
	if ws != nil {
		size = max(size, 2*ws.sizeBytes)
	}
	ptr, err := mem.MemAlloc(size)
	if err != nil {
		return 0, fmt.Errorf("kernels: allocating a %d-byte matmul split-k workspace: %w", size, err)
	}
	if ws != nil {
		s.mm.retired = append(s.mm.retired, ws.ptr)
	} else {
		ws = &matmulWorkspace{}
		if s.mm.workspaces == nil {
			s.mm.workspaces = map[*cuda.Stream]*matmulWorkspace{}
		}
		s.mm.workspaces[st] = ws
	}
	ws.ptr, ws.sizeBytes = ptr, size
	return ptr, nil
}

// closeMatMul frees the workspaces (s.mu held, from Close).
func (s *Set) closeMatMul() error {
	mem, ok := s.drv.(deviceMemory)
	if !ok {
		return nil
	}
	var errs []error
	free := func(p cuda.DevicePtr) {
		if err := mem.MemFree(p); err != nil {
			errs = append(errs, fmt.Errorf("kernels: freeing a matmul split-k workspace: %w", err))
		}
	}
	for _, ws := range s.mm.workspaces {
		free(ws.ptr)
	}
	for _, p := range s.mm.retired {
		free(p)
	}
	clear(s.mm.workspaces)
	s.mm.retired = nil
	return errors.Join(errs...)
}
