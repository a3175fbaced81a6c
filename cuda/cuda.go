// Package cuda is kiln's own thin binding to the CUDA driver API.
//
// The driver library (libcuda.so.1, or the file named by KILN_CUDA_LIBRARY)
// is opened with dlopen on first use and never linked at build time, so a
// binary built with cgo runs on machines without a GPU, and one built with
// CGO_ENABLED=0 builds everywhere and reports ErrNoCGO. Versioned entry points
// (cuMemAlloc_v2, ...) are bound explicitly by name.
//
// Every call that needs a context takes it from its receiver and makes it
// current on the calling OS thread inside the same C call, so callers never
// deal with thread-bound state: any goroutine may use any Context, Stream or
// Module at any time. Every failing CUresult becomes an *Error naming the
// driver function and the result.
//
// The package knows nothing about tensors; it deals in device pointers,
// sizes, streams and modules.
package cuda

import (
	"errors"
	"fmt"
	"unsafe"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrNoCGO: the binary was built with CGO_ENABLED=0 and cannot reach the driver.
	ErrNoCGO = errors.New("cuda: built without cgo, the CUDA driver cannot be used")
	// ErrLibraryNotFound: the driver library could not be opened (dlopen failed)
	// or lacks a required entry point. The wrapping error gives the path and dlerror.
	ErrLibraryNotFound = errors.New("cuda: driver library not available")
	// ErrNoDevice: the driver reports no CUDA device (CUDA_ERROR_NO_DEVICE).
	ErrNoDevice = errors.New("cuda: no CUDA device")
	// ErrOutOfMemory: CUDA_ERROR_OUT_OF_MEMORY.
	ErrOutOfMemory = errors.New("cuda: out of memory")
	// ErrInvalidPTX: the driver refused a module's PTX (invalid PTX, an
	// unsupported PTX version, no binary for this GPU, JIT not found).
	ErrInvalidPTX = errors.New("cuda: PTX refused by the driver")
	// ErrDestroyed: a handle was used after it was released or destroyed.
	ErrDestroyed = errors.New("cuda: handle used after release")
)

// Result is a CUresult.
type Result int

// A few results the package and its callers test for.
const (
	Success               Result = 0
	ErrorInvalidValue     Result = 1
	ErrorOutOfMemory      Result = 2
	ErrorNotInitialized   Result = 3
	ErrorNoDevice         Result = 100
	ErrorInvalidDevice    Result = 101
	ErrorInvalidImage     Result = 200
	ErrorNoBinaryForGPU   Result = 209
	ErrorInvalidPTX       Result = 218
	ErrorUnsupportedPTX   Result = 222
	ErrorJITNotFound      Result = 221
	ErrorNotFound         Result = 500
	ErrorNotReady         Result = 600
	ErrorIllegalAddress   Result = 700
	ErrorLaunchOutOfRes   Result = 701
	ErrorLaunchTimeout    Result = 702
	ErrorPeerAlreadyOn    Result = 704
	ErrorLaunchFailed     Result = 719
	ErrorNotPermitted     Result = 800
	ErrorNotSupported     Result = 801
	ErrorStreamCaptureInv Result = 901
	ErrorUnknown          Result = 999
)

// Error is a failed driver call.
type Error struct {
	// Call is the driver entry point, for example "cuMemAlloc_v2".
	Call string
	// Result is the CUresult it returned.
	Result Result
	// Detail is extra context from kiln (sizes, names); may be empty.
	Detail string
	// Log is the JIT compiler's error log for module loads; may be empty.
	Log string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s (%d)", e.Call, e.Result.Name(), int(e.Result))
	if d := e.Result.Description(); d != "" {
		s += ": " + d
	}
	if e.Detail != "" {
		s += " [" + e.Detail + "]"
	}
	if e.Log != "" {
		s += "\nJIT log:\n" + e.Log
	}
	return s
}

// Is maps results onto the package's sentinel errors.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrOutOfMemory:
		return e.Result == ErrorOutOfMemory
	case ErrNoDevice:
		return e.Result == ErrorNoDevice
	case ErrInvalidPTX:
		switch e.Result {
		case ErrorInvalidPTX, ErrorUnsupportedPTX, ErrorNoBinaryForGPU, ErrorInvalidImage, ErrorJITNotFound:
			return true
		}
	}
	return false
}

// DevicePtr is a device memory address (CUdeviceptr).
type DevicePtr uint64

// Dim3 is a grid or block size.
type Dim3 struct{ X, Y, Z uint32 }

// D1 is a one-dimensional Dim3.
func D1(x int) Dim3 { return Dim3{uint32(x), 1, 1} }

// Device is a CUDA device ordinal (CUdevice). Ordinals are not stable across
// machines or reboots; use UUID or PCIBusID to identify a device.
type Device int

// Context is a retained primary context of one device. Release it when done.
type Context struct {
	handle unsafe.Pointer // CUcontext
	dev    Device
}

// Device is the device this context belongs to.
func (c *Context) Device() Device { return c.dev }

// Stream is a CUDA stream (CUstream) of a context.
type Stream struct {
	handle unsafe.Pointer
	ctx    *Context
}

// Event is a CUDA event (CUevent) of a context.
type Event struct {
	handle unsafe.Pointer
	ctx    *Context
}

// Module is a loaded PTX module (CUmodule).
type Module struct {
	handle unsafe.Pointer
	ctx    *Context
}

// Function is a kernel of a loaded module (CUfunction).
type Function struct {
	handle unsafe.Pointer
	mod    *Module
	name   string
	// paramBytes is the size of the kernel's parameter buffer as the driver
	// reports it (cuFuncGetParamInfo); paramKnown is false when it cannot.
	paramBytes int
	paramKnown bool
}

// Name is the kernel's name.
func (f *Function) Name() string { return f.name }

// ParamBytes is the size in bytes of the kernel's parameter list as the
// driver lays it out (the end of its last parameter), which Launch requires
// the packed Args to match exactly. known is false when the driver cannot
// report it (cuFuncGetParamInfo needs CUDA 12.4); Launch then cannot check.
func (f *Function) ParamBytes() (n int, known bool) {
	if f == nil || !f.paramKnown {
		return 0, false
	}
	return f.paramBytes, true
}

// Graph is a captured CUDA graph (CUgraph).
type Graph struct {
	handle unsafe.Pointer
	ctx    *Context
}

// GraphExec is an instantiated, launchable graph (CUgraphExec).
type GraphExec struct {
	handle unsafe.Pointer
	ctx    *Context
}

// HostBuffer is page-locked (pinned) host memory from cuMemHostAlloc, the
// only host memory the asynchronous copies accept.
type HostBuffer struct {
	ptr  unsafe.Pointer
	size int64
	ctx  *Context
}

// Bytes views the pinned memory as a byte slice. The slice is valid until Free.
func (h *HostBuffer) Bytes() []byte {
	if h == nil || h.ptr == nil {
		return nil
	}
	return unsafe.Slice((*byte)(h.ptr), h.size)
}

// SizeBytes is the buffer's size.
func (h *HostBuffer) SizeBytes() int64 { return h.size }

// CaptureMode is a CUstreamCaptureMode.
//
// A capture begun in CaptureGlobal or CaptureThreadLocal mode must end on the
// OS thread that began it: the driver refuses cuStreamEndCapture from another
// thread (CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD). Go moves goroutines
// between threads, so a caller of those modes holds its thread from
// BeginCapture to EndCapture (runtime.LockOSThread); CaptureRelaxed has no
// such rule.
type CaptureMode int

const (
	// CaptureGlobal forbids unsafe calls (synchronous allocation, ...) from any thread during capture.
	CaptureGlobal CaptureMode = 0
	// CaptureThreadLocal forbids them on the capturing thread only. Go moves
	// goroutines between threads, so this mode is rarely what a Go caller wants.
	CaptureThreadLocal CaptureMode = 1
	// CaptureRelaxed forbids nothing, and the capture may end on any thread.
	CaptureRelaxed CaptureMode = 2
)

// Attribute is a CUdevice_attribute.
type Attribute int

// The device attributes kiln reads.
const (
	AttrMaxThreadsPerBlock           Attribute = 1
	AttrMaxSharedMemoryPerBlock      Attribute = 8
	AttrWarpSize                     Attribute = 10
	AttrClockRateKHz                 Attribute = 13
	AttrMultiprocessorCount          Attribute = 16
	AttrPCIBusID                     Attribute = 33
	AttrPCIDeviceID                  Attribute = 34
	AttrMemoryClockRateKHz           Attribute = 36
	AttrGlobalMemoryBusWidthBits     Attribute = 37
	AttrL2CacheSizeBytes             Attribute = 38
	AttrMaxThreadsPerMultiprocessor  Attribute = 39
	AttrPCIDomainID                  Attribute = 50
	AttrComputeCapabilityMajor       Attribute = 75
	AttrComputeCapabilityMinor       Attribute = 76
	AttrMaxSharedMemoryPerSM         Attribute = 81
	AttrMaxRegistersPerSM            Attribute = 82
	AttrMaxSharedMemoryPerBlockOptin Attribute = 97
	AttrMemoryPoolsSupported         Attribute = 115
)

// FuncAttribute is a CUfunction_attribute.
type FuncAttribute int

// The function attributes kiln reads or sets.
const (
	FuncMaxThreadsPerBlock        FuncAttribute = 0
	FuncSharedSizeBytes           FuncAttribute = 1
	FuncConstSizeBytes            FuncAttribute = 2
	FuncLocalSizeBytes            FuncAttribute = 3
	FuncNumRegs                   FuncAttribute = 4
	FuncPTXVersion                FuncAttribute = 5
	FuncBinaryVersion             FuncAttribute = 6
	FuncMaxDynamicSharedSizeBytes FuncAttribute = 8
)
