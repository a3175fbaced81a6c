package fakegpu_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-gpu/kiln/models/llama"
	"github.com/kiln-gpu/kiln/runtime/backend"
)

// syncBuffer is a log sink safe for the model's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestTensorParallelWithoutNCCLUsesPeerCopies: two CUDA backends on two
// (fake) devices with no NCCL to be had fall back to peer copies, and the
// choice and its reason are logged at Debug.
func TestTensorParallelWithoutNCCLUsesPeerCopies(t *testing.T) {
	t.Setenv("KILN_NCCL_LIBRARY", "/nonexistent/kiln-test/libnccl.so.2")
	t.Setenv("FAKECUDA_DEVICES", "2")
	if fakeErr != nil {
		t.Skipf("fake CUDA driver not built: %v", fakeErr)
	}
	var devs []backend.Backend
	for _, name := range []string{"cuda:0", "cuda:1"} {
		dev, err := backend.Open(context.Background(), name, backend.Options{})
		if err != nil {
			t.Skipf("%s on the fake driver (CGO_ENABLED=0?): %v", name, err)
		}
		t.Cleanup(func() {
			if err := dev.Close(); err != nil {
				t.Errorf("closing %s: %v", name, err)
			}
		})
		devs = append(devs, dev)
	}
	_, lib := openFakeGPU(t)
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := llama.LoadParallel(context.Background(), devs, storiesPath(t), llama.Options{ContextLen: 256, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var choice string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "tensor-parallel all-reduce") {
			choice = line
		}
	}
	if !strings.Contains(choice, `method="peer copies"`) || !strings.Contains(choice, "nccl_unused_because=") {
		t.Errorf("the all-reduce choice logged %q, want method=\"peer copies\" with the reason NCCL is unused", choice)
	}
	lib.ResetCounters()
	decodeSteps(t, m, 2)
	if got, want := lib.Calls("cuMemcpyPeerAsync"), int64(2*m.Config.NLayers*2*2); got != want {
		t.Errorf("%d peer copies for 2 steps, want %d", got, want)
	}
}
