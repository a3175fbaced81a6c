package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/kiln-gpu/kiln/runtime/cpu"
	"github.com/kiln-gpu/kiln/runtime/gpu"
)

// Options configure Open.
type Options struct {
	// Logger receives the backend's diagnostics (module loads, fallbacks).
	// nil discards them.
	Logger *slog.Logger
	// MemoryLimitBytes caps the backend allocator's device memory (in use plus
	// cached); 0 means no cap beyond the device's own.
	MemoryLimitBytes int64
	// CPUThreads is the CPU backend's worker count; 0 means GOMAXPROCS.
	CPUThreads int
	// Kernels selects the GPU kernel set: "auto" (the default) or "simple"
	// (the plain, obviously correct kernels only). Empty means the value of
	// the KILN_KERNELS environment variable, else "auto".
	Kernels string
}

// Device is an opened backend and the reason it was chosen.
type Device struct {
	Backend
	reason string
}

// Unwrap returns the backend itself (a *cpu.Backend or *gpu.Backend), for
// optional interfaces beyond Backend that the wrapper does not forward.
func (d *Device) Unwrap() Backend { return d.Backend }

// Reason says why this backend was chosen; for "auto" on a machine without a
// usable GPU it names what was missing (no driver library, no device, a driver
// that failed to initialise or is too old).
func (d *Device) Reason() string { return d.reason }

// Kind is one entry of the backend registry.
type Kind struct {
	// Name is the spec prefix: "cpu" or "cuda".
	Name string
	// Description says what the backend is.
	Description string
}

// Kinds lists the backends Open knows, in the order "auto" tries them
// (last to first: CUDA, then the CPU).
func Kinds() []Kind {
	return []Kind{
		{"cpu", "pure-Go CPU backend (the reference; runs everywhere)"},
		{"cuda", "NVIDIA GPU through the CUDA driver (cuda:N selects device N)"},
	}
}

// Open opens a backend by spec:
//
//	"auto"    the first usable CUDA device, else the CPU (Reason says why)
//	"cpu"     the CPU backend
//	"cuda"    CUDA device 0
//	"cuda:N"  CUDA device N
//
// Asking for a CUDA device that is not usable is an error matching
// ErrNoDevice; only "auto" falls back.
func Open(ctx context.Context, spec string, opts Options) (*Device, error) {
	switch {
	case spec == "auto" || spec == "":
		return openAuto(ctx, opts)
	case spec == "cpu":
		return &Device{Backend: openCPU(opts), reason: "requested cpu"}, nil
	case spec == "cuda" || strings.HasPrefix(spec, "cuda:"):
		ordinal := 0
		if rest, ok := strings.CutPrefix(spec, "cuda:"); ok {
			n, err := strconv.Atoi(rest)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("backend: bad device %q: expected cuda:N with N a device number", spec)
			}
			ordinal = n
		}
		b, err := gpu.Open(ctx, ordinal, gpuOptions(opts))
		if err != nil {
			return nil, err
		}
		return &Device{Backend: b, reason: "requested " + spec}, nil
	}
	return nil, fmt.Errorf("backend: unknown device %q (expected auto, cpu, cuda or cuda:N)", spec)
}

func openAuto(ctx context.Context, opts Options) (*Device, error) {
	b, err := gpu.Open(ctx, 0, gpuOptions(opts))
	if err == nil {
		return &Device{Backend: b, reason: "auto: " + b.Description()}, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if !errors.Is(err, ErrNoDevice) {
		// A GPU is present but opening it failed for another reason (out of
		// memory, a kernel module refused): still fall back, but say so.
		err = fmt.Errorf("%w (%v)", ErrNoDevice, err)
	}
	return &Device{Backend: openCPU(opts), reason: "auto: using the CPU: " + err.Error()}, nil
}

func openCPU(opts Options) *cpu.Backend {
	return cpu.New(cpu.Options{Threads: opts.CPUThreads, MemoryLimitBytes: opts.MemoryLimitBytes, Logger: opts.Logger})
}

func gpuOptions(opts Options) gpu.Options {
	return gpu.Options{Logger: opts.Logger, MemoryLimitBytes: opts.MemoryLimitBytes, Kernels: opts.Kernels}
}
