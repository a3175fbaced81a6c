// Package cpu is the pure-Go backend, the reference every GPU kernel is tested against.
package cpu

import "log/slog"

// Options configure New.
type Options struct {
	// Threads is the number of worker goroutines; 0 means GOMAXPROCS.
	Threads          int
	MemoryLimitBytes int64
	Logger           *slog.Logger
}

// Backend is the CPU backend. TEMPORARY STUB while the backend is written.
type Backend struct{}

// New returns a CPU backend.
func New(opts Options) *Backend { return &Backend{} }
