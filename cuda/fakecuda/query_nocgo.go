//go:build !cgo

package fakecuda

import "errors"

// Lib is the fake driver library as loaded in this process.
type Lib struct{}

// Launch is a recorded kernel launch.
type Launch struct {
	Kernel      string
	Grid, Block [3]uint32
	SharedBytes uint32
	// Args is the parameter buffer passed through cuLaunchKernel's `extra`.
	Args []byte
}

// Open needs cgo: without it the cuda package cannot load any driver library.
func Open(path string) (*Lib, error) {
	return nil, errors.New("fakecuda: built without cgo, no driver library can be loaded")
}

// LaunchCount is the number of kernels launched directly, plus the launch
// nodes of launched graphs.
func (l *Lib) LaunchCount() int64 { return 0 }

// GraphLaunchCount is the number of cuGraphLaunch calls that succeeded.
func (l *Lib) GraphLaunchCount() int64 { return 0 }

// Calls is the number of calls of the named entry point, failed ones included.
func (l *Lib) Calls(entryPoint string) int64 { return 0 }

// ResetCounters zeroes the call counters, the launch counts and the last launch.
func (l *Lib) ResetCounters() {}

// LastLaunch is the last direct launch; ok is false when there was none.
func (l *Lib) LastLaunch() (launch Launch, ok bool) { return Launch{}, false }

// DeviceAllocations is the number of live device allocations, all devices.
func (l *Lib) DeviceAllocations() int64 { return 0 }

// HostAllocations is the number of live pinned host allocations.
func (l *Lib) HostAllocations() int64 { return 0 }
