// Package fakegpu_test runs models/llama on the CUDA backend over the fake
// driver (cuda/fakecuda): no kernel computes anything there, so logits are
// meaningless, but every transfer, allocation, launch and graph capture the
// model makes goes through the real CUDA backend and the driver API's rules
// (a capture that uploads or allocates fails). It is its own test binary
// because the driver library is chosen once per process.
package fakegpu_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-gpu/kiln/cuda/fakecuda"
	"github.com/kiln-gpu/kiln/models/llama"
	"github.com/kiln-gpu/kiln/runtime/backend"
)

var fakePath string
var fakeErr error

func TestMain(m *testing.M) {
	fakePath, fakeErr = fakecuda.BuildPath()
	if fakeErr == nil {
		os.Setenv("KILN_CUDA_LIBRARY", fakePath)
	} else {
		os.Setenv("KILN_CUDA_LIBRARY", "/nonexistent/fake-driver-not-built/libcuda.so.1")
	}
	os.Exit(m.Run())
}

func storiesPath(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KILN_SHARED")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "..", "shared")
	}
	p := filepath.Join(dir, "models", "stories260K.gguf")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not available (set KILN_SHARED): %v", p, err)
	}
	return p
}

func openFakeGPU(t *testing.T) (backend.Backend, *fakecuda.Lib) {
	t.Helper()
	if fakeErr != nil {
		t.Skipf("fake CUDA driver not built: %v", fakeErr)
	}
	dev, err := backend.Open(context.Background(), "cuda:0", backend.Options{})
	if err != nil {
		t.Skipf("cuda:0 on the fake driver (CGO_ENABLED=0?): %v", err)
	}
	lib, err := fakecuda.Open(fakePath)
	if err != nil {
		dev.Close()
		t.Fatalf("fake CUDA driver: %v", err)
	}
	t.Cleanup(func() {
		if err := dev.Close(); err != nil {
			t.Errorf("closing the backend: %v", err)
		}
	})
	return dev, lib
}

// decodeSteps feeds n one-token steps to a new sequence.
func decodeSteps(t *testing.T, m *llama.Model, n int) {
	t.Helper()
	seq, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Free()
	for i := range n {
		res, err := m.Step(context.Background(), []llama.Request{{Seq: seq, Tokens: []int32{int32(1 + i)}}})
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if len(res[0].Logits) != 1 || len(res[0].Logits[0]) != m.Config.VocabSize {
			t.Fatalf("step %d: logits %d rows", i, len(res[0].Logits))
		}
	}
}

// TestDecodeStepsReplayOneGraph: the first decode step of a bucket runs
// eagerly and is captured; every later one is a single cuGraphLaunch.
func TestDecodeStepsReplayOneGraph(t *testing.T) {
	dev, lib := openFakeGPU(t)
	m, err := llama.Load(context.Background(), dev, storiesPath(t), llama.Options{ContextLen: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	lib.ResetCounters()
	decodeSteps(t, m, 6)
	if n := lib.GraphLaunchCount(); n != 5 {
		t.Errorf("%d graph launches for 6 decode steps, want 5", n)
	}
	if n := lib.Calls("cuStreamBeginCapture_v2"); n != 1 {
		t.Errorf("%d captures, want 1", n)
	}
}

func TestDisableGraphsLaunchesKernels(t *testing.T) {
	dev, lib := openFakeGPU(t)
	m, err := llama.Load(context.Background(), dev, storiesPath(t), llama.Options{ContextLen: 256, DisableGraphs: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	lib.ResetCounters()
	decodeSteps(t, m, 3)
	if n := lib.GraphLaunchCount(); n != 0 {
		t.Errorf("%d graph launches with DisableGraphs", n)
	}
	if lib.LaunchCount() == 0 {
		t.Error("no kernels launched")
	}
}

// TestTensorParallelOnTwoBackends shards the model over two backends of the
// fake device: weights split, KV pages on both, partial sums gathered and
// broadcast with peer copies.
func TestTensorParallelOnTwoBackends(t *testing.T) {
	dev0, lib := openFakeGPU(t)
	dev1, _ := openFakeGPU(t)
	m, err := llama.LoadParallel(context.Background(), []backend.Backend{dev0, dev1}, storiesPath(t), llama.Options{ContextLen: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	lib.ResetCounters()
	decodeSteps(t, m, 3)
	if n := lib.GraphLaunchCount(); n != 0 {
		t.Errorf("%d graph launches with tensor parallelism (graphs apply to one device)", n)
	}
	// Two all-reduces a layer, each one copy to shard 0 and one back.
	if got, want := lib.Calls("cuMemcpyPeerAsync"), int64(3*m.Config.NLayers*2*2); got != want {
		t.Errorf("%d peer copies for 3 steps, want %d", got, want)
	}
}
