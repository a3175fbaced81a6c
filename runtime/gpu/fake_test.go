package gpu

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/cuda/fakecuda"
	"github.com/kiln-gpu/kiln/kernels"
	"github.com/kiln-gpu/kiln/runtime/cpu"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// These tests run the backend against the fake driver (cuda/fakecuda): real
// memory copies, module loads and launch bookkeeping, no kernels executed.
// They cover the backend's plumbing and its faults. Kernel results are tested
// on a GPU by the conformance suite (runtime/conformance).
//
// The driver library is loaded once per process, so TestMain points this
// test binary at the fake; scenarios that need a fresh cuInit or another
// library run the binary again as a child (childEnv) that opens a backend and
// prints what happened as JSON.

const childEnv = "KILN_GPU_TEST_CHILD"

var (
	fakePath     string
	fakeBuildErr error
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	fakePath, fakeBuildErr = fakecuda.BuildPath()
	if fakeBuildErr == nil {
		os.Setenv("KILN_CUDA_LIBRARY", fakePath)
	} else {
		os.Setenv("KILN_CUDA_LIBRARY", "/nonexistent/fake-driver-not-built/libcuda.so.1")
	}
	os.Exit(m.Run())
}

// childResult is what a child saw when opening cuda:0.
type childResult struct {
	Err      string
	NoDevice bool
}

func runChild() int {
	b, err := Open(context.Background(), 0, Options{})
	r := childResult{}
	if err != nil {
		r.Err, r.NoDevice = err.Error(), errors.Is(err, op.ErrNoDevice)
	} else {
		_ = b.Close()
	}
	out, _ := json.Marshal(r)
	os.Stdout.Write(out)
	return 0
}

// openInChild runs the test binary as a child with env and returns what its Open saw.
func openInChild(t *testing.T, env ...string) childResult {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{childEnv + "=1"}, env...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\nstderr: %s", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("the child printed to stderr (the library must not print): %s", stderr.String())
	}
	var r childResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("child output %q: %v", stdout.String(), err)
	}
	return r
}

func needFake(t *testing.T) {
	t.Helper()
	if !haveCgo {
		t.Skip("built with CGO_ENABLED=0: the fake CUDA driver cannot be loaded")
	}
	if fakeBuildErr != nil {
		t.Skipf("fake CUDA driver not built: %v", fakeBuildErr)
	}
}

// logBuffer collects a backend's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func openFake(t *testing.T, opts Options) *Backend {
	t.Helper()
	needFake(t)
	b, err := Open(context.Background(), 0, opts)
	if err != nil {
		t.Fatalf("Open on the fake driver: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func TestOpenDescribesTheDevice(t *testing.T) {
	t.Setenv("FAKECUDA_NAME", "Fakeon X100")
	b := openFake(t, Options{})
	if b.Name() != "cuda:0" {
		t.Errorf("Name = %q", b.Name())
	}
	for _, want := range []string{"Fakeon X100", "cuda:0", "compute capability 9.0", "12.4"} {
		if !strings.Contains(b.Description(), want) {
			t.Errorf("Description %q lacks %q", b.Description(), want)
		}
	}
}

func TestUploadDownloadRoundTrip(t *testing.T) {
	b := openFake(t, Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	// Sizes around the staging chunk (8 MiB) exercise the double buffering.
	for _, n := range []int{1, 7, 1000, stagingChunkBytes / 4, stagingChunkBytes/4 + 1, 5*stagingChunkBytes/8 + 3} {
		src := make([]byte, 4*n)
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		x, err := b.Alloc(tensor.F32, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Upload(x, src); err != nil {
			t.Fatalf("Upload %d floats: %v", n, err)
		}
		got := make([]byte, len(src))
		if err := b.Download(context.Background(), got, x); err != nil {
			t.Fatalf("Download %d floats: %v", n, err)
		}
		if !bytes.Equal(got, src) {
			t.Fatalf("round trip of %d floats differs", n)
		}
		// A view at an offset reads the right bytes.
		if n > 4 {
			v, err := x.Slice(0, 2, n)
			if err != nil {
				t.Fatal(err)
			}
			part := make([]byte, 4*(n-2))
			if err := b.Download(context.Background(), part, v); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(part, src[8:]) {
				t.Fatalf("download of a view at offset 2 of %d floats differs", n)
			}
		}
		if err := b.Free(x); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTransferErrors(t *testing.T) {
	b := openFake(t, Options{})
	x, err := b.Alloc(tensor.F16, 4, 6)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(x, make([]byte, 10)); !errors.Is(err, op.ErrInvalidArgument) || !strings.Contains(err.Error(), "expected 48") {
		t.Errorf("short upload: %v", err)
	}
	col, _ := x.Slice(1, 0, 3)
	if err := b.Upload(col, make([]byte, 24)); !errors.Is(err, op.ErrInvalidArgument) || !strings.Contains(err.Error(), "contiguous") {
		t.Errorf("upload to a strided view: %v", err)
	}
	if err := b.Download(context.Background(), make([]byte, 47), x); !errors.Is(err, op.ErrInvalidArgument) {
		t.Errorf("short download: %v", err)
	}
	// A tensor of another backend, a freed tensor, a missing tensor.
	host := cpu.New(cpu.Options{})
	defer host.Close()
	h, err := host.Alloc(tensor.F16, 4, 6)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(h, make([]byte, 48)); !errors.Is(err, op.ErrForeignTensor) {
		t.Errorf("upload to a CPU tensor: %v", err)
	}
	if err := b.Add(x, x, h); !errors.Is(err, op.ErrForeignTensor) {
		t.Errorf("add with a CPU tensor: %v", err)
	}
	if err := b.Free(x); err != nil {
		t.Fatal(err)
	}
	if err := b.Free(x); !errors.Is(err, op.ErrClosed) {
		t.Errorf("second Free: %v", err)
	}
	if err := b.SiLU(x, x); !errors.Is(err, op.ErrClosed) {
		t.Errorf("op on a freed tensor: %v", err)
	}
	if err := b.Download(context.Background(), make([]byte, 48), x); !errors.Is(err, op.ErrClosed) {
		t.Errorf("download of a freed tensor: %v", err)
	}
	if _, err := b.Alloc(tensor.Q4_K, 100); !errors.Is(err, op.ErrInvalidArgument) {
		t.Errorf("Q4_K of 100 elements: %v", err)
	}
	if _, err := b.Alloc(tensor.F32, -1); !errors.Is(err, op.ErrInvalidArgument) {
		t.Errorf("negative shape: %v", err)
	}
}

func TestUseAfterClose(t *testing.T) {
	needFake(t)
	if err := cuda.Load(); err != nil {
		t.Fatal(err)
	}
	lib, err := fakecuda.Open(fakePath)
	if err != nil {
		t.Fatal(err)
	}
	devBefore, hostBefore := lib.DeviceAllocations(), lib.HostAllocations()
	b, err := Open(context.Background(), 0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	x, err := b.Alloc(tensor.F32, 8)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Alloc(tensor.F16, 1000); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close with live tensors: %v", err)
	}
	if d, h := lib.DeviceAllocations(), lib.HostAllocations(); d != devBefore || h != hostBefore {
		t.Errorf("after Close the fake holds %d device and %d pinned allocations, %d and %d before Open", d, h, devBefore, hostBefore)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := b.Alloc(tensor.F32, 8); !errors.Is(err, op.ErrClosed) {
		t.Errorf("Alloc after Close: %v", err)
	}
	if err := b.SiLU(x, x); !errors.Is(err, op.ErrClosed) {
		t.Errorf("op after Close: %v", err)
	}
	if err := b.Free(x); !errors.Is(err, op.ErrClosed) {
		t.Errorf("Free after Close: %v", err)
	}
	if err := b.Sync(context.Background()); !errors.Is(err, op.ErrClosed) {
		t.Errorf("Sync after Close: %v", err)
	}
}

func TestOutOfMemoryNamesTheSizes(t *testing.T) {
	t.Setenv("FAKECUDA_TOTAL_MEM", fmt.Sprint(64<<20))
	b := openFake(t, Options{})
	_, err := b.Alloc(tensor.F32, 32<<20) // 128 MiB
	if !errors.Is(err, op.ErrOutOfMemory) {
		t.Fatalf("Alloc beyond the device: %v", err)
	}
	for _, want := range []string{"cuda:0", "134217728", "CUDA_ERROR_OUT_OF_MEMORY"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("OOM error %q lacks %q", err, want)
		}
	}
	// The backend stays usable.
	x, err := b.Alloc(tensor.F32, 1<<20)
	if err != nil {
		t.Fatalf("small Alloc after OOM: %v", err)
	}
	if err := b.Free(x); err != nil {
		t.Fatal(err)
	}
	if s := b.MemoryStats(); s.OutOfMemory != 1 || s.InUseBytes != 0 {
		t.Errorf("stats after OOM: %+v", s)
	}
}

func TestMemoryLimit(t *testing.T) {
	b := openFake(t, Options{MemoryLimitBytes: 1 << 20})
	if _, err := b.Alloc(tensor.F32, 1<<19); !errors.Is(err, op.ErrOutOfMemory) || !strings.Contains(err.Error(), "limit") {
		t.Errorf("2 MiB under a 1 MiB limit: %v", err)
	}
}

// Every op must reach a kernel that exists in the embedded PTX: the fake
// driver looks kernels up by their .entry names and counts launches.
func TestEveryOpLaunchesAKernel(t *testing.T) {
	b := openFake(t, Options{})
	lib, err := fakecuda.Open(fakePath)
	if err != nil {
		t.Fatal(err)
	}
	alloc := func(dt tensor.DType, shape ...int) tensor.Tensor {
		x, err := b.Alloc(dt, shape...)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	x := alloc(tensor.F16, 3, 4, 8)
	y := alloc(tensor.F16, 3, 4, 8)
	f32 := alloc(tensor.F32, 3, 4, 8)
	w := alloc(tensor.F32, 8)
	pos := alloc(tensor.I32, 3)
	ids := alloc(tensor.I32, 5)
	table := alloc(tensor.Q4_K, 10, 256)
	emb := alloc(tensor.F32, 5, 256)
	am := alloc(tensor.I32, 3, 4)
	src := alloc(tensor.F32, 1024)
	dst := alloc(tensor.F32, 1024)
	ops := []struct {
		name string
		run  func() error
	}{
		{"copy", func() error { return b.Copy(f32, x) }},
		{"add", func() error { return b.Add(y, x, x) }},
		{"mul broadcast", func() error { return b.Mul(y, x, alloc(tensor.F16, 8)) }},
		{"silu", func() error { return b.SiLU(y, x) }},
		{"gelu", func() error { return b.GELU(y, x, op.GELUOptions{}) }},
		{"gelu tanh", func() error { return b.GELU(y, x, op.GELUOptions{Approx: op.GELUTanh}) }},
		{"softmax", func() error { return b.Softmax(y, x, op.SoftmaxOptions{Causal: true}) }},
		{"rmsnorm", func() error { return b.RMSNorm(y, x, w, op.NormOptions{}) }},
		{"layernorm", func() error { return b.LayerNorm(y, x, w, w, op.NormOptions{}) }},
		{"rope", func() error { return b.RoPE(y, x, pos, op.RoPEOptions{Style: op.RoPENeoX}) }},
		{"embedding", func() error { return b.Embedding(emb, table, ids) }},
		{"argmax", func() error { return b.Argmax(am, x) }},
		{"matmul decode Q4_K", func() error {
			return b.MatMul(alloc(tensor.F16, 1, 64), alloc(tensor.F16, 1, 4096), alloc(tensor.Q4_K, 64, 4096), op.MatMulOptions{})
		}},
		{"matmul mma Q8_0 + bias", func() error {
			return b.MatMul(alloc(tensor.BF16, 64, 96), alloc(tensor.BF16, 64, 256), alloc(tensor.Q8_0, 96, 256), op.MatMulOptions{Bias: alloc(tensor.F32, 96)})
		}},
		{"matmul simt F32", func() error {
			return b.MatMul(alloc(tensor.F32, 3, 40), alloc(tensor.F32, 3, 512), alloc(tensor.Q6_K, 40, 512), op.MatMulOptions{})
		}},
		{"matmul swiglu", func() error {
			return b.MatMulSwiGLU(alloc(tensor.F16, 2, 48), alloc(tensor.F16, 2, 256), alloc(tensor.Q4_0, 48, 256), alloc(tensor.Q4_0, 48, 256))
		}},
		{"attention prefill", func() error {
			q := alloc(tensor.F16, 32, 4, 64)
			kv := op.AttentionKV{K: alloc(tensor.F16, 32, 1, 64), V: alloc(tensor.F16, 32, 1, 64), Starts: alloc(tensor.I32, 2)}
			return b.Attention(alloc(tensor.F16, 32, 4, 64), q, alloc(tensor.I32, 2), kv, op.AttentionOptions{Causal: true})
		}},
		{"attention decode paged", func() error {
			q := alloc(tensor.BF16, 2, 8, 128)
			kv := op.AttentionKV{K: alloc(tensor.BF16, 16, 16, 2, 128), V: alloc(tensor.BF16, 16, 16, 2, 128),
				BlockTable: alloc(tensor.I32, 2, 8), Lens: alloc(tensor.I32, 2)}
			return b.Attention(alloc(tensor.BF16, 2, 8, 128), q, alloc(tensor.I32, 3), kv, op.AttentionOptions{Causal: true, MaxQueryLen: 1})
		}},
		{"append kv", func() error {
			cache := op.AttentionKV{K: alloc(tensor.F16, 4, 16, 2, 64), V: alloc(tensor.F16, 4, 16, 2, 64), BlockTable: alloc(tensor.I32, 1, 4)}
			return b.AppendKV(cache, alloc(tensor.F16, 3, 2, 64), alloc(tensor.F16, 3, 2, 64), alloc(tensor.I32, 3), alloc(tensor.I32, 3))
		}},
		{"probe read", func() error { return b.ProbeRead(src) }},
		{"probe copy", func() error { return b.ProbeCopy(dst, src) }},
	}
	for _, o := range ops {
		before := lib.LaunchCount()
		if err := o.run(); err != nil {
			t.Errorf("%s: %v", o.name, err)
			continue
		}
		if got := lib.LaunchCount() - before; got < 1 {
			t.Errorf("%s launched %d kernels", o.name, got)
		}
		if l, ok := lib.LastLaunch(); ok {
			t.Logf("%-14s -> %s grid %v block %v", o.name, l.Kernel, l.Grid, l.Block)
		}
	}
	if err := b.Sync(context.Background()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	// Empty tensors launch nothing.
	before := lib.LaunchCount()
	e := alloc(tensor.F32, 0, 8)
	if err := b.SiLU(e, e); err != nil {
		t.Fatal(err)
	}
	if lib.LaunchCount() != before {
		t.Errorf("an op on an empty tensor launched a kernel")
	}
}

func TestLaunchFailureIsADeviceFault(t *testing.T) {
	b := openFake(t, Options{})
	x, err := b.Alloc(tensor.F32, 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKECUDA_FAIL", "cuLaunchKernel=719")
	err = b.SiLU(x, x)
	if !errors.Is(err, op.ErrDeviceFault) || !strings.Contains(err.Error(), "CUDA_ERROR_LAUNCH_FAILED") || !strings.Contains(err.Error(), "silu") {
		t.Fatalf("failed launch: %v", err)
	}
	// The context is broken: later calls report the same fault.
	t.Setenv("FAKECUDA_FAIL", "")
	if err := b.Sync(context.Background()); !errors.Is(err, op.ErrDeviceFault) {
		t.Errorf("Sync after a failed launch: %v", err)
	}
	if err := b.Add(x, x, x); !errors.Is(err, op.ErrDeviceFault) {
		t.Errorf("op after a failed launch: %v", err)
	}
}

func TestDeviceErrorWordReportedBySync(t *testing.T) {
	b := openFake(t, Options{})
	// Stand in for a kernel: record an out-of-range embedding id in the word.
	var word [kernels.ErrorWordBytes]byte
	for i, v := range []uint32{uint32(kernels.ErrCodeIndexOutOfRange), uint32(kernels.ErrOpEmbedding), 12, 0, 70000, 0, 32000, 0} {
		binary.LittleEndian.PutUint32(word[4*i:], v)
	}
	if err := b.ctx.MemcpyHtoD(b.errWord, word[:]); err != nil {
		t.Fatal(err)
	}
	b.mayFault = true
	err := b.Sync(context.Background())
	if !errors.Is(err, op.ErrDeviceFault) || !strings.Contains(err.Error(), "id 70000 at index 12 is outside [0, 32000)") {
		t.Fatalf("Sync with a recorded fault: %v", err)
	}
	// The word was reset: the backend goes on.
	b.mayFault = true
	if err := b.Sync(context.Background()); err != nil {
		t.Errorf("second Sync: %v", err)
	}
}

func TestTooOldDriverOrGPU(t *testing.T) {
	needFake(t)
	t.Run("driver 12.2", func(t *testing.T) {
		t.Setenv("FAKECUDA_DRIVER_VERSION", "12020")
		_, err := Open(context.Background(), 0, Options{})
		if !errors.Is(err, op.ErrNoDevice) || !strings.Contains(err.Error(), "CUDA 12.2") || !strings.Contains(err.Error(), "12.4") {
			t.Errorf("old driver: %v", err)
		}
	})
	t.Run("compute capability 7.5", func(t *testing.T) {
		t.Setenv("FAKECUDA_CC", "75")
		_, err := Open(context.Background(), 0, Options{})
		if !errors.Is(err, op.ErrNoDevice) || !strings.Contains(err.Error(), "compute capability 7.5") {
			t.Errorf("old GPU: %v", err)
		}
	})
	t.Run("no such ordinal", func(t *testing.T) {
		_, err := Open(context.Background(), 3, Options{})
		if !errors.Is(err, op.ErrNoDevice) || !strings.Contains(err.Error(), "1 CUDA device") {
			t.Errorf("cuda:3 of 1: %v", err)
		}
	})
	t.Run("bad kernel set", func(t *testing.T) {
		_, err := Open(context.Background(), 0, Options{Kernels: "fastest"})
		if !errors.Is(err, op.ErrInvalidArgument) {
			t.Errorf("Kernels: fastest: %v", err)
		}
	})
}

func TestPTXRefusedFallsBackToBaseline(t *testing.T) {
	var logs logBuffer
	t.Setenv("FAKECUDA_REJECT_TARGET", "sm_90a")
	b := openFake(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	src, err := b.Alloc(tensor.F32, 1024)
	if err != nil {
		t.Fatal(err)
	}
	// The probe family has sm_90a PTX, which the fake refuses on this CC 9.0 device.
	if err := b.ProbeRead(src); err != nil {
		t.Fatalf("probe after the sm_90a PTX was refused: %v", err)
	}
	if tgt, ok := b.kern.LoadedTarget(kernels.FamilyProbe); !ok || !strings.Contains(fmt.Sprint(tgt), "compute_80") {
		t.Errorf("probe module target = %v, %v; want the compute_80 baseline", tgt, ok)
	}
	if !strings.Contains(logs.String(), "sm_90a") {
		t.Errorf("the fallback was not logged; log:\n%s", logs.String())
	}
}

func TestPTXRefusedEverywhereIsAnError(t *testing.T) {
	t.Setenv("FAKECUDA_REJECT_TARGET", "sm_80,sm_90a")
	b := openFake(t, Options{})
	x, err := b.Alloc(tensor.F32, 64)
	if err != nil {
		t.Fatal(err)
	}
	err = b.SiLU(x, x)
	if !errors.Is(err, cuda.ErrInvalidPTX) || !strings.Contains(err.Error(), "JIT log") {
		t.Fatalf("every PTX refused: %v", err)
	}
	// Not sticky: a refused module does not break the context.
	t.Setenv("FAKECUDA_REJECT_TARGET", "")
	if err := b.Sync(context.Background()); err != nil {
		t.Errorf("Sync after a refused module: %v", err)
	}
}

func TestOpenFailuresInAFreshProcess(t *testing.T) {
	needFake(t)
	cases := []struct {
		name string
		env  []string
		want []string
	}{
		{"no driver library", []string{"KILN_CUDA_LIBRARY=/nonexistent/dir/libcuda.so.1"}, []string{"/nonexistent/dir/libcuda.so.1"}},
		{"cuInit fails", []string{"KILN_CUDA_LIBRARY=" + fakePath, "FAKECUDA_FAIL=cuInit=999"}, []string{"cuInit", "CUDA_ERROR_UNKNOWN"}},
		{"no device", []string{"KILN_CUDA_LIBRARY=" + fakePath, "FAKECUDA_DEVICES=0"}, []string{"CUDA_ERROR_NO_DEVICE"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := openInChild(t, c.env...)
			if !r.NoDevice {
				t.Fatalf("Open error %q does not match ErrNoDevice", r.Err)
			}
			for _, w := range c.want {
				if !strings.Contains(r.Err, w) {
					t.Errorf("Open error %q lacks %q", r.Err, w)
				}
			}
		})
	}
}

// A failure part-way through Open leaves nothing allocated.
func TestFailedOpenReleasesEverything(t *testing.T) {
	needFake(t)
	if err := cuda.Load(); err != nil {
		t.Fatal(err)
	}
	lib, err := fakecuda.Open(fakePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, fail := range []string{
		"cuStreamCreate=2",
		"cuMemHostAlloc=2@1", // the second staging buffer
		"cuMemAlloc_v2=2",    // the error word
		"cuEventCreate=999@2",
	} {
		t.Run(fail, func(t *testing.T) {
			devBefore, hostBefore := lib.DeviceAllocations(), lib.HostAllocations()
			t.Setenv("FAKECUDA_FAIL", fail)
			b, err := Open(context.Background(), 0, Options{})
			if err == nil {
				b.Close()
				t.Fatalf("Open succeeded with %s", fail)
			}
			t.Setenv("FAKECUDA_FAIL", "")
			if d, h := lib.DeviceAllocations(), lib.HostAllocations(); d != devBefore || h != hostBefore {
				t.Errorf("after a failed Open (%v) the fake holds %d device and %d pinned allocations, %d and %d before",
					err, d, h, devBefore, hostBefore)
			}
		})
	}
}
