//go:build cgo

package telemetry

import (
	"errors"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

// TestOpenOnThisMachine: where NVML is missing (no driver) Open fails with
// ErrUnavailable and nothing crashes; where it is present, a sample of
// device 0 is sane.
func TestOpenOnThisMachine(t *testing.T) {
	m, err := Open()
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Open: %v, want an error matching ErrUnavailable", err)
		}
		if m != nil {
			t.Fatal("Open returned a Monitor with its error")
		}
		t.Logf("NVML unavailable here, as expected without a driver: %v", err)
		return
	}
	defer func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	n, err := m.DeviceCount()
	if err != nil || n == 0 {
		t.Skipf("skipping: NVML loaded but reports %d devices (%v)", n, err)
	}
	s, err := m.Sample(0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.UUID, "GPU-") {
		t.Errorf("UUID %q", s.UUID)
	}
	if s.MemoryTotalBytes.OK() && (s.MemoryTotalBytes.Value <= 0 || s.MemoryUsedBytes.Value+s.MemoryFreeBytes.Value > s.MemoryTotalBytes.Value) {
		t.Errorf("memory: used %v + free %v vs total %v", s.MemoryUsedBytes, s.MemoryFreeBytes, s.MemoryTotalBytes)
	}
	byUUID, err := m.SampleUUID(s.UUID)
	if err != nil || byUUID.UUID != s.UUID || byUUID.Index != 0 {
		t.Errorf("SampleUUID(%s): index %d, %v", s.UUID, byUUID.Index, err)
	}
	t.Logf("device 0: %s %s, %v °C, %v W of %v W, GPU %v%%", s.Name, s.UUID, s.TemperatureC, s.PowerW, s.PowerLimitW, s.GPUUtilPercent)
}

// fakeDevice is an NVML device whose power readings are not supported when
// noPower is set.
func fakeDevice(index int, uuid string, noPower bool) *mock.Device {
	d := &mock.Device{
		GetUUIDFunc:  func() (string, nvml.Return) { return uuid, nvml.SUCCESS },
		GetNameFunc:  func() (string, nvml.Return) { return "NVIDIA H100 80GB HBM3", nvml.SUCCESS },
		GetIndexFunc: func() (int, nvml.Return) { return index, nvml.SUCCESS },
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
			return nvml.Memory{Total: 85899345920, Used: 1073741824, Free: 84825604096}, nvml.SUCCESS
		},
		GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: 87, Memory: 41}, nvml.SUCCESS
		},
		GetTemperatureFunc: func(sensor nvml.TemperatureSensors) (uint32, nvml.Return) {
			if sensor != nvml.TEMPERATURE_GPU {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			return 54, nvml.SUCCESS
		},
		GetPowerUsageFunc:         func() (uint32, nvml.Return) { return 312456, nvml.SUCCESS },
		GetEnforcedPowerLimitFunc: func() (uint32, nvml.Return) { return 700000, nvml.SUCCESS },
	}
	if noPower {
		d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
		d.GetEnforcedPowerLimitFunc = func() (uint32, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
	}
	return d
}

func fakeNVML(devices ...*mock.Device) *mock.Interface {
	return &mock.Interface{
		InitFunc:           func() nvml.Return { return nvml.SUCCESS },
		ShutdownFunc:       func() nvml.Return { return nvml.SUCCESS },
		DeviceGetCountFunc: func() (int, nvml.Return) { return len(devices), nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if i < 0 || i >= len(devices) {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			return devices[i], nvml.SUCCESS
		},
		DeviceGetHandleByUUIDFunc: func(uuid string) (nvml.Device, nvml.Return) {
			for _, d := range devices {
				if u, _ := d.GetUUID(); u == uuid {
					return d, nvml.SUCCESS
				}
			}
			return nil, nvml.ERROR_NOT_FOUND
		},
	}
}

func TestSampleConvertsNVMLUnits(t *testing.T) {
	lib := fakeNVML(fakeDevice(0, "GPU-aaaaaaaa-0000-0000-0000-000000000000", false))
	m, err := open(lib)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Sample(0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Index != 0 || s.UUID != "GPU-aaaaaaaa-0000-0000-0000-000000000000" || s.Name != "NVIDIA H100 80GB HBM3" || s.Time.IsZero() {
		t.Errorf("identity: %+v", s)
	}
	checks := []struct {
		name string
		ok   bool
		got  any
		want any
	}{
		{"MemoryTotalBytes", s.MemoryTotalBytes.OK(), s.MemoryTotalBytes.Value, int64(85899345920)},
		{"MemoryUsedBytes", s.MemoryUsedBytes.OK(), s.MemoryUsedBytes.Value, int64(1073741824)},
		{"MemoryFreeBytes", s.MemoryFreeBytes.OK(), s.MemoryFreeBytes.Value, int64(84825604096)},
		{"GPUUtilPercent", s.GPUUtilPercent.OK(), s.GPUUtilPercent.Value, 87},
		{"MemoryUtilPercent", s.MemoryUtilPercent.OK(), s.MemoryUtilPercent.Value, 41},
		{"TemperatureC", s.TemperatureC.OK(), s.TemperatureC.Value, 54},
		{"PowerW (312456 mW)", s.PowerW.OK(), s.PowerW.Value, 312.456},
		{"PowerLimitW (700000 mW)", s.PowerLimitW.OK(), s.PowerLimitW.Value, 700.0},
	}
	for _, c := range checks {
		if !c.ok || c.got != c.want {
			t.Errorf("%s: %v (ok %v), want %v", c.name, c.got, c.ok, c.want)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(lib.ShutdownCalls()); n != 1 {
		t.Errorf("nvmlShutdown called %d times, want 1", n)
	}
}

func TestUnsupportedValuesAreReportedNotZeroed(t *testing.T) {
	m, err := open(fakeNVML(fakeDevice(0, "GPU-bbbbbbbb-0000-0000-0000-000000000000", true)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := m.Sample(0)
	if err != nil {
		t.Fatal(err)
	}
	if s.PowerW.OK() || !errors.Is(s.PowerW.Err, ErrNotSupported) {
		t.Errorf("power on a board without power readings: %v, want ErrNotSupported", s.PowerW)
	}
	if !strings.HasPrefix(s.PowerW.String(), "n/a (") {
		t.Errorf("PowerW.String: %q", s.PowerW.String())
	}
	if s.PowerLimitW.OK() || errors.Is(s.PowerLimitW.Err, ErrNotSupported) || !strings.Contains(s.PowerLimitW.Err.Error(), "nvmlDeviceGetEnforcedPowerLimit") {
		t.Errorf("a failed power-limit query: %v, want an error naming the NVML call, not ErrNotSupported", s.PowerLimitW)
	}
	if !s.TemperatureC.OK() || s.TemperatureC.Value != 54 || s.TemperatureC.String() != "54" {
		t.Errorf("temperature still read: %v", s.TemperatureC)
	}
}

func TestSampleByUUIDAndBadLookups(t *testing.T) {
	m, err := open(fakeNVML(
		fakeDevice(0, "GPU-00000000-0000-0000-0000-000000000000", false),
		fakeDevice(1, "GPU-11111111-0000-0000-0000-000000000000", false),
	))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := m.DeviceCount(); err != nil || n != 2 {
		t.Fatalf("DeviceCount: %d, %v", n, err)
	}
	s, err := m.SampleUUID("GPU-11111111-0000-0000-0000-000000000000")
	if err != nil || s.Index != 1 {
		t.Fatalf("SampleUUID of device 1: index %d, %v", s.Index, err)
	}
	if _, err := m.Sample(2); err == nil || !strings.Contains(err.Error(), "device index 2") || !strings.Contains(err.Error(), "2 devices") {
		t.Errorf("Sample(2) of 2 devices: %v", err)
	}
	if _, err := m.SampleUUID("GPU-ffffffff"); err == nil || !strings.Contains(err.Error(), `"GPU-ffffffff"`) {
		t.Errorf("SampleUUID of an unknown device: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sample(0); !errors.Is(err, ErrClosed) {
		t.Errorf("Sample after Close: %v, want ErrClosed", err)
	}
	if err := m.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
}

func TestOpenFailsCleanlyWhenNVMLInitFails(t *testing.T) {
	for _, c := range []struct {
		ret  nvml.Return
		want string
	}{
		{nvml.ERROR_LIBRARY_NOT_FOUND, "libnvidia-ml.so.1 could not be loaded"},
		{nvml.ERROR_DRIVER_NOT_LOADED, "nvmlInit"},
	} {
		lib := &mock.Interface{InitFunc: func() nvml.Return { return c.ret }}
		m, err := open(lib)
		if m != nil || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Init returning %d: %v, %v; want ErrUnavailable mentioning %q", int32(c.ret), m, err, c.want)
		}
	}
}
