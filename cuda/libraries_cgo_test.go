//go:build cgo

package cuda

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/cuda/fakecuda"
)

func TestNoDriverLibraryIsErrLibraryNotFoundNamingThePath(t *testing.T) {
	const path = "/nonexistent/libcuda.so.1"
	r := probeWith(t, "KILN_CUDA_LIBRARY="+path)
	if r.Path != path {
		t.Errorf("LibraryPath: %q, want %q", r.Path, path)
	}
	for name, e := range map[string]*errReport{"Load": r.Load, "DriverVersion": r.Version, "Init": r.Init, "DeviceCount": r.Count} {
		if e == nil || !e.LibraryNotFound {
			t.Errorf("%s: %v, want an error matching ErrLibraryNotFound", name, e)
			continue
		}
		if !strings.Contains(e.Msg, path) {
			t.Errorf("%s: %q does not name %s", name, e.Msg, path)
		}
	}
}

func TestLibraryWithoutDriverEntryPointsNamesTheMissingSymbol(t *testing.T) {
	// The C library loads fine but is not a CUDA driver.
	r := probeWith(t, "KILN_CUDA_LIBRARY=libc.so.6")
	if r.Load == nil || !r.Load.LibraryNotFound {
		t.Fatalf("Load: %v, want ErrLibraryNotFound", r.Load)
	}
	if !strings.Contains(r.Load.Msg, "cuInit") || !strings.Contains(r.Load.Msg, "libc.so.6") {
		t.Errorf("Load error %q should name the missing entry point cuInit and the library", r.Load.Msg)
	}
}

// debianLibcuda1 finds Debian's libcuda1 as fetched by scripts/fetch-libcuda1.sh.
func debianLibcuda1(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KILN_TEST_LIBCUDA1"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("KILN_TEST_LIBCUDA1=%s: %v", p, err)
		}
		return p
	}
	p, err := filepath.Abs("../.cache/libcuda1/usr/lib/x86_64-linux-gnu/nvidia/current/libcuda.so.1")
	if err == nil {
		if _, err = os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("skipping: Debian's libcuda1 is not fetched (run scripts/fetch-libcuda1.sh, or set KILN_TEST_LIBCUDA1): %v", err)
	return ""
}

func TestDebianDriverWithoutGPUIsErrNoDevice(t *testing.T) {
	lib := debianLibcuda1(t)
	// The kernel module, not a device node: as root, the driver library
	// creates /dev/nvidiactl itself even where no GPU exists.
	if _, err := os.Stat("/proc/driver/nvidia/version"); err == nil {
		t.Skip("skipping: this machine has the NVIDIA kernel module loaded; Debian's 535 library's no-device answer is checked on machines without a GPU")
	}
	r := probeWith(t, "KILN_CUDA_LIBRARY="+lib)
	if r.Load != nil {
		t.Fatalf("Load(%s): %v", lib, r.Load)
	}
	if r.Version != nil || r.VersionValue != 12020 {
		t.Errorf("DriverVersion: %d, %v; want 12020 (driver 535 supports CUDA 12.2)", r.VersionValue, r.Version)
	}
	if r.Init == nil || !r.Init.NoDevice || r.Init.Call != "cuInit" || r.Init.Result != int(ErrorNoDevice) {
		t.Fatalf("Init: %v; want an *Error from cuInit with CUDA_ERROR_NO_DEVICE matching ErrNoDevice", r.Init)
	}
	if !strings.Contains(r.Init.Msg, "CUDA_ERROR_NO_DEVICE") {
		t.Errorf("Init error %q does not name CUDA_ERROR_NO_DEVICE", r.Init.Msg)
	}
	if r.Count == nil || !r.Count.NoDevice {
		t.Errorf("DeviceCount after a failed Init: %v, want the Init error", r.Count)
	}
}

func TestCuInitFailureIsAnErrorNamingCuInit(t *testing.T) {
	requireFakeBuilt(t)
	r := probeWith(t, "KILN_CUDA_LIBRARY="+fakePath, "FAKECUDA_FAIL=cuInit=999")
	if r.Load != nil {
		t.Fatalf("Load: %v", r.Load)
	}
	if r.Version != nil || r.VersionValue != 12040 {
		t.Errorf("DriverVersion needs only Load: got %d, %v; want the fake's 12040", r.VersionValue, r.Version)
	}
	if r.Init == nil || !r.Init.IsError || r.Init.Call != "cuInit" || r.Init.Result != int(ErrorUnknown) {
		t.Fatalf("Init: %v; want an *Error from cuInit with result 999", r.Init)
	}
	if !strings.Contains(r.Init.Msg, "cuInit") || !strings.Contains(r.Init.Msg, "CUDA_ERROR_UNKNOWN") {
		t.Errorf("Init error %q should name cuInit and CUDA_ERROR_UNKNOWN", r.Init.Msg)
	}
	if r.Init.NoDevice || r.Init.LibraryNotFound {
		t.Errorf("Init error %v matches the wrong sentinel", r.Init)
	}
	if r.Count == nil || r.Count.Call != "cuInit" {
		t.Errorf("DeviceCount after a failed Init: %v, want the cuInit error again", r.Count)
	}
}

func TestFakeWithoutDevicesIsErrNoDevice(t *testing.T) {
	requireFakeBuilt(t)
	r := probeWith(t, "KILN_CUDA_LIBRARY="+fakePath, "FAKECUDA_DEVICES=0", "FAKECUDA_DRIVER_VERSION=12080")
	if r.VersionValue != 12080 {
		t.Errorf("DriverVersion: %d, want FAKECUDA_DRIVER_VERSION's 12080", r.VersionValue)
	}
	if r.Init == nil || !r.Init.NoDevice || r.Init.Call != "cuInit" {
		t.Fatalf("Init: %v, want cuInit's CUDA_ERROR_NO_DEVICE", r.Init)
	}
}

func TestUUIDFallsBackToUnversionedEntryPoint(t *testing.T) {
	lib := fakecuda.BuildVariant(t, "FAKECUDA_NO_UUID_V2")
	r := probeWith(t, "KILN_CUDA_LIBRARY="+lib)
	if r.Load != nil || r.Init != nil || r.UUID != nil {
		t.Fatalf("a driver without cuDeviceGetUuid_v2: Load %v, Init %v, UUID %v", r.Load, r.Init, r.UUID)
	}
	if want := "GPU-fa4ec0da-0001-4202-8303-0a0b0c0d0e00"; r.UUIDValue != want {
		t.Errorf("UUID through cuDeviceGetUuid: %q, want %q", r.UUIDValue, want)
	}
}
