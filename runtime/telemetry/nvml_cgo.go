//go:build cgo

package telemetry

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Monitor samples GPU telemetry through NVML. It is safe for concurrent use.
type Monitor struct {
	mu     sync.Mutex
	lib    nvml.Interface
	closed bool
}

// Open loads and initialises NVML (libnvidia-ml.so.1). Where that fails the
// error matches ErrUnavailable and says why. Close the Monitor when done.
func Open() (*Monitor, error) {
	return open(nvml.New())
}

// open initialises lib; tests pass a mock.
func open(lib nvml.Interface) (*Monitor, error) {
	ret := lib.Init()
	switch ret {
	case nvml.SUCCESS:
		return &Monitor{lib: lib}, nil
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return nil, fmt.Errorf("%w: libnvidia-ml.so.1 could not be loaded (no NVIDIA driver installed here)", ErrUnavailable)
	default:
		return nil, fmt.Errorf("%w: nvmlInit: %v", ErrUnavailable, nvmlError(ret))
	}
}

// nvmlError words an NVML result.
func nvmlError(ret nvml.Return) string {
	return fmt.Sprintf("%s (NVML result %d)", ret.Error(), int32(ret))
}

// DeviceCount is the number of devices NVML sees.
func (m *Monitor) DeviceCount() (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	n, ret := m.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return 0, fmt.Errorf("telemetry: nvmlDeviceGetCount: %s", nvmlError(ret))
	}
	return n, nil
}

// Sample reads the telemetry of NVML device index.
func (m *Monitor) Sample(index int) (Sample, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Sample{}, ErrClosed
	}
	dev, ret := m.lib.DeviceGetHandleByIndex(index)
	if ret != nvml.SUCCESS {
		n, _ := m.lib.DeviceGetCount()
		return Sample{}, fmt.Errorf("telemetry: device index %d (NVML sees %d devices): nvmlDeviceGetHandleByIndex: %s", index, n, nvmlError(ret))
	}
	s := sampleDevice(dev)
	s.Index = index
	return s, nil
}

// SampleUUID reads the telemetry of the device with this UUID ("GPU-...", as
// cuda.Device.UUID reports it).
func (m *Monitor) SampleUUID(uuid string) (Sample, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Sample{}, ErrClosed
	}
	dev, ret := m.lib.DeviceGetHandleByUUID(uuid)
	if ret != nvml.SUCCESS {
		return Sample{}, fmt.Errorf("telemetry: device %q: nvmlDeviceGetHandleByUUID: %s", uuid, nvmlError(ret))
	}
	s := sampleDevice(dev)
	s.Index = -1
	if i, ret := dev.GetIndex(); ret == nvml.SUCCESS {
		s.Index = i
	}
	if s.UUID == "" {
		s.UUID = uuid
	}
	return s, nil
}

// Close shuts NVML down. The Monitor cannot be used afterwards.
func (m *Monitor) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.closed = true
	if ret := m.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("telemetry: nvmlShutdown: %s", nvmlError(ret))
	}
	return nil
}

// readingErr turns a failed NVML query into a Reading's Err.
func readingErr(query string, ret nvml.Return) error {
	if ret == nvml.ERROR_NOT_SUPPORTED {
		return fmt.Errorf("%w (%s)", ErrNotSupported, query)
	}
	return errors.New("telemetry: " + query + ": " + nvmlError(ret))
}

// sampleDevice reads every value of one device; a value that fails is
// recorded as such and does not stop the others.
func sampleDevice(dev nvml.Device) Sample {
	s := Sample{Time: time.Now()}
	if uuid, ret := dev.GetUUID(); ret == nvml.SUCCESS {
		s.UUID = uuid
	}
	if name, ret := dev.GetName(); ret == nvml.SUCCESS {
		s.Name = name
	}

	if mem, ret := dev.GetMemoryInfo(); ret == nvml.SUCCESS {
		s.MemoryTotalBytes.Value = int64(mem.Total)
		s.MemoryUsedBytes.Value = int64(mem.Used)
		s.MemoryFreeBytes.Value = int64(mem.Free)
	} else {
		err := readingErr("nvmlDeviceGetMemoryInfo", ret)
		s.MemoryTotalBytes.Err, s.MemoryUsedBytes.Err, s.MemoryFreeBytes.Err = err, err, err
	}

	if util, ret := dev.GetUtilizationRates(); ret == nvml.SUCCESS {
		s.GPUUtilPercent.Value = int(util.Gpu)
		s.MemoryUtilPercent.Value = int(util.Memory)
	} else {
		err := readingErr("nvmlDeviceGetUtilizationRates", ret)
		s.GPUUtilPercent.Err, s.MemoryUtilPercent.Err = err, err
	}

	if temp, ret := dev.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
		s.TemperatureC.Value = int(temp)
	} else {
		s.TemperatureC.Err = readingErr("nvmlDeviceGetTemperature", ret)
	}

	// NVML reports power in milliwatts.
	if mw, ret := dev.GetPowerUsage(); ret == nvml.SUCCESS {
		s.PowerW.Value = float64(mw) / 1000
	} else {
		s.PowerW.Err = readingErr("nvmlDeviceGetPowerUsage", ret)
	}
	if mw, ret := dev.GetEnforcedPowerLimit(); ret == nvml.SUCCESS {
		s.PowerLimitW.Value = float64(mw) / 1000
	} else {
		s.PowerLimitW.Err = readingErr("nvmlDeviceGetEnforcedPowerLimit", ret)
	}
	return s
}
