package gpu

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/cuda/fakecuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// These tests pin down how the backend must use the real CUDA driver, in
// ways the fake driver (which completes all work at once) cannot show by
// itself going wrong.

// The backend's stream is non-blocking, so it is not ordered with the legacy
// default stream: nothing the backend does may go through that stream (a
// synchronous cuMemsetD8 or cuMemcpy*), or it could race with the kernels.
func TestBackendQueuesNothingOnTheLegacyStream(t *testing.T) {
	needFake(t)
	if err := cuda.Load(); err != nil {
		t.Fatal(err)
	}
	lib, err := fakecuda.Open(fakePath)
	if err != nil {
		t.Fatal(err)
	}
	legacy := []string{"cuMemsetD8_v2", "cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2", "cuMemcpyDtoD_v2"}
	before := map[string]int64{}
	for _, name := range legacy {
		before[name] = lib.Calls(name)
	}
	memsetsBefore := lib.Calls("cuMemsetD8Async")

	b, err := Open(context.Background(), 0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	x, err := b.Alloc(tensor.F32, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(x, make([]byte, 4000)); err != nil {
		t.Fatal(err)
	}
	if err := b.SiLU(x, x); err != nil {
		t.Fatal(err)
	}
	b.mayFault = true // read the error word too
	if err := b.Download(context.Background(), make([]byte, 4000), x); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range legacy {
		if n := lib.Calls(name) - before[name]; n != 0 {
			t.Errorf("the backend called %s %d times; it must queue its work on its own stream", name, n)
		}
	}
	if lib.Calls("cuMemsetD8Async") == memsetsBefore {
		t.Error("Open did not zero the device error word on its stream (no cuMemsetD8Async)")
	}
}

// A result that leaves the context broken makes the fault sticky; one that
// only refuses the launch does not.
func TestStickyDriverResults(t *testing.T) {
	// Classified from cuda.h's descriptions: "This leaves the process in an
	// inconsistent state and any further CUDA work will return the same
	// error" (or, for the hardware errors, the same in other words).
	sticky := map[int]string{
		214: "CUDA_ERROR_ECC_UNCORRECTABLE",
		700: "CUDA_ERROR_ILLEGAL_ADDRESS",
		710: "CUDA_ERROR_ASSERT",
		715: "CUDA_ERROR_ILLEGAL_INSTRUCTION",
		719: "CUDA_ERROR_LAUNCH_FAILED",
		226: "CUDA_ERROR_CONTAINED",
		810: "CUDA_ERROR_MPS_CLIENT_TERMINATED",
	}
	notSticky := map[int]string{
		1:   "CUDA_ERROR_INVALID_VALUE",
		2:   "CUDA_ERROR_OUT_OF_MEMORY",
		701: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
		720: "CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE",
	}
	check := func(code int, name string, wantSticky bool) {
		t.Run(name, func(t *testing.T) {
			b := openFake(t, Options{})
			x, err := b.Alloc(tensor.F32, 64)
			if err != nil {
				t.Fatal(err)
			}
			t.Setenv("FAKECUDA_FAIL", fmt.Sprintf("cuLaunchKernel=%d", code))
			if err := b.SiLU(x, x); !errors.Is(err, op.ErrDeviceFault) || !strings.Contains(err.Error(), fmt.Sprintf("(%d)", code)) {
				t.Fatalf("launch failing with %d: %v", code, err)
			}
			t.Setenv("FAKECUDA_FAIL", "")
			err = b.SiLU(x, x)
			if wantSticky && !errors.Is(err, op.ErrDeviceFault) {
				t.Errorf("op after %s: %v, want the sticky device fault", name, err)
			}
			if !wantSticky && err != nil {
				t.Errorf("op after %s: %v, want the backend to go on", name, err)
			}
		})
	}
	for code, name := range sticky {
		check(code, name, true)
	}
	for code, name := range notSticky {
		check(code, name, false)
	}
}
