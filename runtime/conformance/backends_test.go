package conformance

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/backend"
)

// testBackend is a way to open one backend under test.
type testBackend struct {
	// name is "cpu", or "cuda:N/simple" and "cuda:N/auto".
	name string
	open func(ctx context.Context) (backend.Backend, error)
}

// maxCUDADevices bounds the probe for CUDA devices.
const maxCUDADevices = 16

var cudaProbe = sync.OnceValues(func() ([]int, string) {
	ctx := context.Background()
	var ordinals []int
	reason := ""
	for n := range maxCUDADevices {
		d, err := backend.Open(ctx, fmt.Sprintf("cuda:%d", n), backend.Options{Kernels: "simple"})
		if err != nil {
			if n == 0 {
				reason = err.Error()
			}
			break
		}
		_ = d.Close()
		ordinals = append(ordinals, n)
	}
	return ordinals, reason
})

// backendsUnderTest lists the CPU backend first (the reference for the
// others), then each CUDA device twice: kernel sets "simple" and "auto".
func backendsUnderTest() []testBackend {
	list := []testBackend{{name: "cpu", open: func(ctx context.Context) (backend.Backend, error) {
		return backend.Open(ctx, "cpu", backend.Options{})
	}}}
	ordinals, _ := cudaProbe()
	for _, n := range ordinals {
		for _, kernels := range []string{"simple", "auto"} {
			spec := fmt.Sprintf("cuda:%d", n)
			list = append(list, testBackend{name: spec + "/" + kernels, open: func(ctx context.Context) (backend.Backend, error) {
				return backend.Open(ctx, spec, backend.Options{Kernels: kernels})
			}})
		}
	}
	return list
}

// openAll opens every backend under test for the duration of t.
func openAll(t *testing.T) []namedBackend {
	t.Helper()
	var out []namedBackend
	for _, tb := range backendsUnderTest() {
		b, err := tb.open(context.Background())
		if err != nil {
			t.Fatalf("open %s: %v", tb.name, err)
		}
		t.Cleanup(func() {
			if err := b.Close(); err != nil {
				t.Errorf("close %s: %v", tb.name, err)
			}
		})
		out = append(out, namedBackend{tb.name, b})
	}
	return out
}

type namedBackend struct {
	name string
	b    backend.Backend
}

// TestCUDADevices reports which CUDA devices the suite runs on, or why none.
func TestCUDADevices(t *testing.T) {
	ordinals, reason := cudaProbe()
	if len(ordinals) == 0 {
		t.Skipf("no CUDA device: %s", reason)
	}
	t.Logf("CUDA devices under test: %v (each with kernel sets simple and auto)", ordinals)
}
