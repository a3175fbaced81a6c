package kernels

import (
	"errors"
	"fmt"

	"github.com/kiln-gpu/kiln/cuda"
)

// streamWorkspaces holds one scratch buffer per stream (the matmul's
// split-k partial sums, the attention's split partial outputs): launches
// on one stream run in order, so one buffer per stream is never used by two
// calls at once. Buffers only grow; one replaced by a larger one is retired,
// not freed, until free (from Set.Close), because a CUDA graph captured
// earlier may still use it. Guarded by Set.mu.
type streamWorkspaces struct {
	what    string // "matmul split-k", "attention split": for errors
	bufs    map[*cuda.Stream]*workspaceBuf
	retired []cuda.DevicePtr
}

type workspaceBuf struct {
	ptr       cuda.DevicePtr
	sizeBytes int64
}

// get returns st's buffer, at least sizeBytes long, allocating a larger one
// when needed. Growth doubles, so a stream allocates a handful of times at
// most.
func (w *streamWorkspaces) get(drv any, st *cuda.Stream, sizeBytes int64) (cuda.DevicePtr, error) {
	mem, ok := drv.(deviceMemory)
	if !ok {
		return 0, fmt.Errorf("kernels: the driver cannot allocate a %s workspace", w.what)
	}
	ws := w.bufs[st]
	if ws != nil && ws.sizeBytes >= sizeBytes {
		return ws.ptr, nil
	}
	size := sizeBytes
	if ws != nil {
		size = max(size, 2*ws.sizeBytes)
	}
	ptr, err := mem.MemAlloc(size)
	if err != nil {
		return 0, fmt.Errorf("kernels: allocating a %d-byte %s workspace: %w", size, w.what, err)
	}
	if ws != nil {
		w.retired = append(w.retired, ws.ptr)
	} else {
		ws = &workspaceBuf{}
		if w.bufs == nil {
			w.bufs = map[*cuda.Stream]*workspaceBuf{}
		}
		w.bufs[st] = ws
	}
	ws.ptr, ws.sizeBytes = ptr, size
	return ptr, nil
}

// free releases every buffer, current and retired.
func (w *streamWorkspaces) free(drv any) error {
	mem, ok := drv.(deviceMemory)
	if !ok {
		return nil
	}
	var errs []error
	release := func(p cuda.DevicePtr) {
		if err := mem.MemFree(p); err != nil {
			errs = append(errs, fmt.Errorf("kernels: freeing a %s workspace: %w", w.what, err))
		}
	}
	for _, ws := range w.bufs {
		release(ws.ptr)
	}
	for _, p := range w.retired {
		release(p)
	}
	clear(w.bufs)
	w.retired = nil
	return errors.Join(errs...)
}
