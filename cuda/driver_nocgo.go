//go:build !cgo

// This file is the CGO_ENABLED=0 twin of driver_cgo.go: the same API, every
// call answering ErrNoCGO, so that packages above build and fall back to the
// CPU everywhere. Keep the two files' exported API identical.

package cuda

import "unsafe"

// Load opens the driver library (KILN_CUDA_LIBRARY, else libcuda.so.1) and
// binds its entry points, once per process; later calls return the first
// result. It does not call cuInit.
func Load() error { return ErrNoCGO }

// Init calls Load, then cuInit(0), once per process; later calls return the
// first result.
func Init() error { return ErrNoCGO }

// LibraryPath is the driver library path Load tried (or opened).
func LibraryPath() string { return "" }

// DriverVersion is cuDriverGetVersion: the newest CUDA version the driver
// supports, as 1000*major + 10*minor (12040 for 12.4). It needs only Load.
func DriverVersion() (int, error) { return 0, ErrNoCGO }

// DeviceCount is cuDeviceGetCount.
func DeviceCount() (int, error) { return 0, ErrNoCGO }

// GetDevice is cuDeviceGet.
func GetDevice(ordinal int) (Device, error) { return 0, ErrNoCGO }

// Name is cuDeviceGetName.
func (d Device) Name() (string, error) { return "", ErrNoCGO }

// UUID is cuDeviceGetUuid_v2, formatted as nvidia-smi does ("GPU-xxxxxxxx-xxxx-...").
func (d Device) UUID() (string, error) { return "", ErrNoCGO }

// PCIBusID is cuDeviceGetPCIBusId ("0000:3b:00.0").
func (d Device) PCIBusID() (string, error) { return "", ErrNoCGO }

// ComputeCapability reads the major and minor compute capability.
func (d Device) ComputeCapability() (major, minor int, err error) { return 0, 0, ErrNoCGO }

// Attribute is cuDeviceGetAttribute.
func (d Device) Attribute(a Attribute) (int, error) { return 0, ErrNoCGO }

// TotalMemBytes is cuDeviceTotalMem_v2.
func (d Device) TotalMemBytes() (int64, error) { return 0, ErrNoCGO }

// CanAccessPeer is cuDeviceCanAccessPeer.
func (d Device) CanAccessPeer(peer Device) (bool, error) { return false, ErrNoCGO }

// RetainPrimaryContext is cuDevicePrimaryCtxRetain. Release the context when done.
func (d Device) RetainPrimaryContext() (*Context, error) { return nil, ErrNoCGO }

// Release is cuDevicePrimaryCtxRelease_v2. The context must not be used afterwards.
func (c *Context) Release() error { return ErrNoCGO }

// Synchronize is cuCtxSynchronize.
func (c *Context) Synchronize() error { return ErrNoCGO }

// MemInfo is cuMemGetInfo_v2: free and total device memory in bytes.
func (c *Context) MemInfo() (freeBytes, totalBytes int64, err error) { return 0, 0, ErrNoCGO }

// EnablePeerAccess is cuCtxEnablePeerAccess: this context may then access
// peer's memory. Enabling twice is not an error.
func (c *Context) EnablePeerAccess(peer *Context) error { return ErrNoCGO }

// MemAlloc is cuMemAlloc_v2.
func (c *Context) MemAlloc(sizeBytes int64) (DevicePtr, error) { return 0, ErrNoCGO }

// MemFree is cuMemFree_v2.
func (c *Context) MemFree(p DevicePtr) error { return ErrNoCGO }

// MemAllocAsync is cuMemAllocAsync (stream-ordered allocation).
func (c *Context) MemAllocAsync(sizeBytes int64, s *Stream) (DevicePtr, error) { return 0, ErrNoCGO }

// MemFreeAsync is cuMemFreeAsync.
func (c *Context) MemFreeAsync(p DevicePtr, s *Stream) error { return ErrNoCGO }

// MemHostAlloc is cuMemHostAlloc: pinned host memory.
func (c *Context) MemHostAlloc(sizeBytes int64) (*HostBuffer, error) { return nil, ErrNoCGO }

// Free is cuMemFreeHost.
func (h *HostBuffer) Free() error { return ErrNoCGO }

// MemcpyHtoD is cuMemcpyHtoD_v2 from Go memory; it returns when src may be reused.
func (c *Context) MemcpyHtoD(dst DevicePtr, src []byte) error { return ErrNoCGO }

// MemcpyDtoH is cuMemcpyDtoH_v2 into Go memory; it returns when the data is in dst.
func (c *Context) MemcpyDtoH(dst []byte, src DevicePtr) error { return ErrNoCGO }

// MemcpyDtoD is cuMemcpyDtoD_v2.
func (c *Context) MemcpyDtoD(dst, src DevicePtr, n int64) error { return ErrNoCGO }

// MemcpyHtoDAsync is cuMemcpyHtoDAsync_v2 from pinned memory src[srcOffset:srcOffset+n].
func (c *Context) MemcpyHtoDAsync(dst DevicePtr, src *HostBuffer, srcOffset, n int64, s *Stream) error {
	return ErrNoCGO
}

// MemcpyDtoHAsync is cuMemcpyDtoHAsync_v2 into pinned memory dst[dstOffset:dstOffset+n].
func (c *Context) MemcpyDtoHAsync(dst *HostBuffer, dstOffset int64, src DevicePtr, n int64, s *Stream) error {
	return ErrNoCGO
}

// MemcpyDtoDAsync is cuMemcpyDtoDAsync_v2.
func (c *Context) MemcpyDtoDAsync(dst, src DevicePtr, n int64, s *Stream) error { return ErrNoCGO }

// MemcpyPeerAsync is cuMemcpyPeerAsync: n bytes from src in srcCtx to dst in c.
func (c *Context) MemcpyPeerAsync(dst DevicePtr, src DevicePtr, srcCtx *Context, n int64, s *Stream) error {
	return ErrNoCGO
}

// MemsetD8 is cuMemsetD8_v2.
func (c *Context) MemsetD8(dst DevicePtr, v byte, n int64) error { return ErrNoCGO }

// MemsetD8Async is cuMemsetD8Async.
func (c *Context) MemsetD8Async(dst DevicePtr, v byte, n int64, s *Stream) error { return ErrNoCGO }

// MemsetD32Async is cuMemsetD32Async: n 32-bit words.
func (c *Context) MemsetD32Async(dst DevicePtr, v uint32, n int64, s *Stream) error { return ErrNoCGO }

// NewStream is cuStreamCreate (CU_STREAM_NON_BLOCKING when nonBlocking).
func (c *Context) NewStream(nonBlocking bool) (*Stream, error) { return nil, ErrNoCGO }

// Context is the context the stream belongs to.
func (s *Stream) Context() *Context { return s.ctx }

// Destroy is cuStreamDestroy_v2.
func (s *Stream) Destroy() error { return ErrNoCGO }

// Synchronize is cuStreamSynchronize.
func (s *Stream) Synchronize() error { return ErrNoCGO }

// Query is cuStreamQuery: true when all work on the stream is done.
func (s *Stream) Query() (bool, error) { return false, ErrNoCGO }

// WaitEvent is cuStreamWaitEvent: later work on s waits for e.
func (s *Stream) WaitEvent(e *Event) error { return ErrNoCGO }

// BeginCapture is cuStreamBeginCapture_v2.
func (s *Stream) BeginCapture(mode CaptureMode) error { return ErrNoCGO }

// EndCapture is cuStreamEndCapture.
func (s *Stream) EndCapture() (*Graph, error) { return nil, ErrNoCGO }

// NewEvent is cuEventCreate; timing=false adds CU_EVENT_DISABLE_TIMING.
func (c *Context) NewEvent(timing bool) (*Event, error) { return nil, ErrNoCGO }

// Record is cuEventRecord.
func (e *Event) Record(s *Stream) error { return ErrNoCGO }

// Synchronize is cuEventSynchronize.
func (e *Event) Synchronize() error { return ErrNoCGO }

// Query is cuEventQuery: true when the recorded work is done.
func (e *Event) Query() (bool, error) { return false, ErrNoCGO }

// Destroy is cuEventDestroy_v2.
func (e *Event) Destroy() error { return ErrNoCGO }

// ElapsedMillis is cuEventElapsedTime between two recorded timing events.
func ElapsedMillis(start, end *Event) (float32, error) { return 0, ErrNoCGO }

// LoadModule is cuModuleLoadDataEx on NUL-terminated PTX text (the NUL is
// added if missing). A refusal returns an *Error whose Log holds the JIT
// compiler's error log.
func (c *Context) LoadModule(ptx []byte) (*Module, error) { return nil, ErrNoCGO }

// Unload is cuModuleUnload.
func (m *Module) Unload() error { return ErrNoCGO }

// Function is cuModuleGetFunction.
func (m *Module) Function(name string) (*Function, error) { return nil, ErrNoCGO }

// Attribute is cuFuncGetAttribute.
func (f *Function) Attribute(a FuncAttribute) (int, error) { return 0, ErrNoCGO }

// SetAttribute is cuFuncSetAttribute (for example to allow more than 48 KiB of
// dynamic shared memory).
func (f *Function) SetAttribute(a FuncAttribute, v int) error { return ErrNoCGO }

// MaxActiveBlocksPerSM is cuOccupancyMaxActiveBlocksPerMultiprocessor.
func (f *Function) MaxActiveBlocksPerSM(blockSize, dynamicSharedBytes int) (int, error) {
	return 0, ErrNoCGO
}

// Launch is cuLaunchKernel with the packed arguments args on stream s (nil:
// the legacy default stream). It does not allocate.
func (c *Context) Launch(f *Function, grid, block Dim3, sharedBytes int, s *Stream, args *Args) error {
	return ErrNoCGO
}

// Instantiate is cuGraphInstantiateWithFlags (flags 0).
func (g *Graph) Instantiate() (*GraphExec, error) { return nil, ErrNoCGO }

// Destroy is cuGraphDestroy.
func (g *Graph) Destroy() error { return ErrNoCGO }

// Launch is cuGraphLaunch.
func (g *GraphExec) Launch(s *Stream) error { return ErrNoCGO }

// Destroy is cuGraphExecDestroy.
func (g *GraphExec) Destroy() error { return ErrNoCGO }

var _ = unsafe.Pointer(nil)

// HasTensorMaps reports whether the loaded driver has cuTensorMapEncodeTiled
// (false before Load succeeds).
func HasTensorMaps() bool { return false }

// EncodeTensorMapTiled is cuTensorMapEncodeTiled: it checks spec
// (TensorMapSpec.Validate) and returns the driver's encoding, with no
// interleave and zero fill out of bounds. It needs Load, not a context.
func EncodeTensorMapTiled(spec *TensorMapSpec) (TensorMap, error) {
	if err := spec.Validate(); err != nil {
		return TensorMap{}, err
	}
	return TensorMap{}, ErrNoCGO
}
