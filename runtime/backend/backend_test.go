package backend_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/cpu"
	"github.com/kiln-gpu/kiln/runtime/gpu"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Both backends satisfy the interface.
var (
	_ backend.Backend = (*cpu.Backend)(nil)
	_ backend.Backend = (*gpu.Backend)(nil)
)

// TestOpenCPUPassesOptions: CPUThreads and MemoryLimitBytes reach the CPU backend.
func TestOpenCPUPassesOptions(t *testing.T) {
	d, err := backend.Open(context.Background(), "cpu", backend.Options{CPUThreads: 3, MemoryLimitBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Name() != "cpu" || d.Reason() != "requested cpu" {
		t.Errorf("Name %q, Reason %q", d.Name(), d.Reason())
	}
	if !strings.Contains(d.Description(), "3 threads") {
		t.Errorf("Description %q should say the thread count asked for", d.Description())
	}
	// The memory limit reaches the CPU allocator.
	if _, err := d.Alloc(tensor.F32, 1<<19); !errors.Is(err, backend.ErrOutOfMemory) {
		t.Errorf("2 MiB under a 1 MiB limit: %v", err)
	}
	if got := d.MemoryStats().LimitBytes; got != 1<<20 {
		t.Errorf("LimitBytes %d, want %d", got, 1<<20)
	}
}
