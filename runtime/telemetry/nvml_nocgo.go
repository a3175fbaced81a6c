//go:build !cgo

package telemetry

import "fmt"

// errNoCGO is Open's answer in a binary built with CGO_ENABLED=0: go-nvml
// needs cgo to load NVML.
var errNoCGO = fmt.Errorf("%w: built without cgo", ErrUnavailable)

// Monitor samples GPU telemetry through NVML. Without cgo none can be opened.
type Monitor struct{}

// Open reports that telemetry is unavailable without cgo.
func Open() (*Monitor, error) { return nil, errNoCGO }

// DeviceCount is the number of devices NVML sees.
func (m *Monitor) DeviceCount() (int, error) { return 0, errNoCGO }

// Sample reads the telemetry of NVML device index.
func (m *Monitor) Sample(index int) (Sample, error) { return Sample{}, errNoCGO }

// SampleUUID reads the telemetry of the device with this UUID.
func (m *Monitor) SampleUUID(uuid string) (Sample, error) { return Sample{}, errNoCGO }

// Close shuts NVML down.
func (m *Monitor) Close() error { return errNoCGO }
