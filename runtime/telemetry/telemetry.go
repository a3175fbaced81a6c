// Package telemetry reads live GPU telemetry — memory used and free,
// utilisation, temperature, power — through NVIDIA's management library
// (NVML, libnvidia-ml.so.1), loaded at run time by github.com/NVIDIA/go-nvml.
//
// Telemetry is optional: device discovery lives in package cuda and works
// without NVML. Open fails with an error matching ErrUnavailable where NVML
// cannot be loaded or initialised (no driver, a container without the
// library, a binary built with CGO_ENABLED=0); callers log that and go on.
// A value a device cannot report (power on some boards, utilisation under
// MIG) is a Reading whose Err matches ErrNotSupported, never a zero posing
// as a measurement.
//
// go-nvml needs cgo, so it is imported only by this package's cgo build; its
// NVML header makes gcc print deprecation warnings, which
// CGO_CFLAGS="-O2 -g -Wno-deprecated-declarations" silences.
package telemetry

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrUnavailable: NVML could not be loaded or initialised, or the binary
	// was built without cgo.
	ErrUnavailable = errors.New("telemetry: NVML is not available")
	// ErrNotSupported: the device does not report this value.
	ErrNotSupported = errors.New("telemetry: not supported by this device")
	// ErrClosed: the Monitor was closed.
	ErrClosed = errors.New("telemetry: monitor is closed")
)

// Reading is one measured value, or why it could not be read.
type Reading[T any] struct {
	// Value is meaningful only when Err is nil.
	Value T
	// Err is nil for a valid reading; it matches ErrNotSupported when the
	// device does not report the value.
	Err error
}

// OK reports whether the reading holds a value.
func (r Reading[T]) OK() bool { return r.Err == nil }

// String is the value, or "n/a (reason)".
func (r Reading[T]) String() string {
	if r.Err != nil {
		return "n/a (" + r.Err.Error() + ")"
	}
	return fmt.Sprint(r.Value)
}

// Sample is one device's telemetry at one moment.
type Sample struct {
	// Index is NVML's device index (which need not equal the CUDA ordinal;
	// match devices by UUID).
	Index int
	// UUID ("GPU-...") and Name identify the device; empty when NVML could
	// not read them.
	UUID string
	Name string
	// Time is when the sample was taken.
	Time time.Time

	// Device memory in bytes, as NVML counts it (used includes memory the
	// driver reserves).
	MemoryTotalBytes Reading[int64]
	MemoryUsedBytes  Reading[int64]
	MemoryFreeBytes  Reading[int64]
	// GPUUtilPercent is the share of the last sample period (1/6 s to 1 s,
	// by device) in which a kernel ran; MemoryUtilPercent the share in which
	// device memory was read or written.
	GPUUtilPercent    Reading[int]
	MemoryUtilPercent Reading[int]
	// TemperatureC is the GPU core temperature in degrees Celsius.
	TemperatureC Reading[int]
	// PowerW is the board's power draw and PowerLimitW the enforced limit,
	// in watts.
	PowerW      Reading[float64]
	PowerLimitW Reading[float64]
}
