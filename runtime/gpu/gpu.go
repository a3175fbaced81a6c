// Package gpu is the CUDA backend: device memory through the caching
// allocator, one stream per backend, and the ops launched as kiln's own
// kernels.
package gpu

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/kiln-gpu/kiln/runtime/op"
)

// Options configure Open.
type Options struct {
	Logger           *slog.Logger
	MemoryLimitBytes int64
	// Kernels is "auto", "simple", or empty for $KILN_KERNELS (default auto).
	Kernels string
}

// Backend is the CUDA backend for one device.
type Backend struct{}

// Open opens CUDA device ordinal. TEMPORARY STUB while the backend is written.
func Open(ctx context.Context, ordinal int, opts Options) (*Backend, error) {
	return nil, fmt.Errorf("%w: the CUDA backend is not implemented yet", op.ErrNoDevice)
}

// Description describes the device.
func (b *Backend) Description() string { return "" }
