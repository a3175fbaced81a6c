//go:build !cgo

package telemetry

import (
	"errors"
	"testing"
)

func TestWithoutCGOTelemetryIsUnavailable(t *testing.T) {
	m, err := Open()
	if m != nil || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Open without cgo: %v, %v; want ErrUnavailable", m, err)
	}
	var zero Monitor
	if _, err := zero.Sample(0); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Sample: %v", err)
	}
	if _, err := zero.SampleUUID("GPU-x"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("SampleUUID: %v", err)
	}
	if _, err := zero.DeviceCount(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("DeviceCount: %v", err)
	}
	if err := zero.Close(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Close: %v", err)
	}
}
