package backend

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/cuda/fakecuda"
)

// The driver library is loaded once per process: TestMain decides which one
// this binary sees. By default the fake driver (one simulated GPU), so that
// "auto" picks CUDA; KILN_BACKEND_TEST_NO_DRIVER=1 (set for a child run by
// TestAutoFallsBackToCPUWithAReason) points at a library that does not exist.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv("KILN_BACKEND_TEST_NO_DRIVER") != "":
		os.Setenv("KILN_CUDA_LIBRARY", "/nonexistent/kiln-test/libcuda.so.1")
	default:
		if path, err := fakecuda.BuildPath(); err == nil {
			os.Setenv("KILN_CUDA_LIBRARY", path)
			fakeBuilt = true
		} else {
			os.Setenv("KILN_CUDA_LIBRARY", "/nonexistent/kiln-test/libcuda.so.1")
		}
	}
	os.Exit(m.Run())
}

var fakeBuilt bool

func TestOpenCPU(t *testing.T) {
	dev, err := Open(context.Background(), "cpu", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if dev.Name() != "cpu" || dev.Reason() != "requested cpu" {
		t.Errorf("Name %q, Reason %q", dev.Name(), dev.Reason())
	}
}

func TestOpenRejectsBadSpecs(t *testing.T) {
	for _, spec := range []string{"gpu", "cuda:", "cuda:-1", "cuda:x", "CPU", "cuda:0:1"} {
		dev, err := Open(context.Background(), spec, Options{})
		if err == nil {
			dev.Close()
			t.Errorf("Open(%q) succeeded", spec)
			continue
		}
		if !strings.Contains(err.Error(), spec) {
			t.Errorf("Open(%q): error %q does not name the spec", spec, err)
		}
	}
}

func TestAutoPicksCUDAWhenUsable(t *testing.T) {
	if os.Getenv("KILN_BACKEND_TEST_NO_DRIVER") != "" {
		t.Skip("running without a driver")
	}
	if !haveCgo {
		t.Skip("built with CGO_ENABLED=0: no driver library can be loaded")
	}
	if !fakeBuilt {
		t.Skip("fake CUDA driver not built (no C compiler?)")
	}
	dev, err := Open(context.Background(), "auto", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if dev.Name() != "cuda:0" || !strings.HasPrefix(dev.Reason(), "auto: ") {
		t.Errorf("auto on the fake GPU: Name %q, Reason %q", dev.Name(), dev.Reason())
	}
	// Asking for a device that is not there is an error, not a fallback.
	if _, err := Open(context.Background(), "cuda:5", Options{}); !errors.Is(err, ErrNoDevice) {
		t.Errorf("cuda:5: %v", err)
	}
}

func TestAutoFallsBackToCPUWithAReason(t *testing.T) {
	if os.Getenv("KILN_BACKEND_TEST_NO_DRIVER") == "" {
		runChildTest(t, "TestAutoFallsBackToCPUWithAReason", "KILN_BACKEND_TEST_NO_DRIVER=1")
		return
	}
	dev, err := Open(context.Background(), "auto", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if dev.Name() != "cpu" {
		t.Fatalf("auto without a driver picked %q", dev.Name())
	}
	// Without cgo the reason is the build, else the missing library.
	missing := "/nonexistent/kiln-test/libcuda.so.1"
	if !haveCgo {
		missing = "without cgo"
	}
	for _, want := range []string{"using the CPU", missing} {
		if !strings.Contains(dev.Reason(), want) {
			t.Errorf("Reason %q lacks %q", dev.Reason(), want)
		}
	}
	if _, err := Open(context.Background(), "cuda", Options{}); !errors.Is(err, ErrNoDevice) {
		t.Errorf("explicit cuda without a driver: %v", err)
	}
}
