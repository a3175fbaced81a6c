//go:build !cgo

// The CGO_ENABLED=0 twin of nccl_cgo.go: the same API, every call answering
// ErrNoCGO. Keep the two files' exported API identical.

package cuda

// LoadNCCL opens the NCCL library (KILN_NCCL_LIBRARY, else libnccl.so.2) and
// binds its entry points, once per process; later calls return the first
// result.
func LoadNCCL() error { return ErrNoCGO }

// NCCLLibraryPath is the NCCL library path LoadNCCL tried (or opened).
func NCCLLibraryPath() string { return "" }

// NCCLVersion is ncclGetVersion: the library's version code (see
// NCCLVersionString).
func NCCLVersion() (int, error) { return 0, ErrNoCGO }

// NCCLCommInitAll is ncclCommInitAll: a single-process communicator group
// with one rank per device, rank i on devices[i].
func NCCLCommInitAll(devices []Device) ([]*NCCLComm, error) { return nil, ErrNoCGO }

// Destroy is ncclCommDestroy.
func (c *NCCLComm) Destroy() error { return ErrNoCGO }

// NCCLGroupStart is ncclGroupStart.
func NCCLGroupStart() error { return ErrNoCGO }

// NCCLGroupEnd is ncclGroupEnd.
func NCCLGroupEnd() error { return ErrNoCGO }

// AllReduceSum is ncclAllReduce with ncclSum on stream s.
func (c *NCCLComm) AllReduceSum(send, recv DevicePtr, count int64, dt NCCLDataType, s *Stream) error {
	return ErrNoCGO
}
