//go:build cgo

package cuda

/*
#cgo LDFLAGS: -ldl
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// defaultLibrary is the driver library's soname, as installed by every
// NVIDIA driver package.
const defaultLibrary = "libcuda.so.1"

// Driver flag values used below (from cuda.h).
const (
	streamNonBlocking    = 0x1 // CU_STREAM_NON_BLOCKING
	eventDisableTiming   = 0x2 // CU_EVENT_DISABLE_TIMING
	memHostAllocPortable = 0x1 // CU_MEMHOSTALLOC_PORTABLE: usable from every context
)

// JIT log buffer sizes for LoadModule. ptxas errors are a few lines each; a
// log longer than this is cut, which the driver does safely.
const jitLogBytes = 32 << 10

var (
	loadOnce sync.Once
	loadDone atomic.Bool
	loadErr  error
	libPath  string

	initOnce sync.Once
	initErr  error
)

func libraryPathFromEnv() string {
	if p := os.Getenv("KILN_CUDA_LIBRARY"); p != "" {
		return p
	}
	return defaultLibrary
}

// Load opens the driver library (KILN_CUDA_LIBRARY, else libcuda.so.1) and
// binds its entry points, once per process; later calls return the first
// result. It does not call cuInit.
func Load() error {
	loadOnce.Do(func() {
		libPath = libraryPathFromEnv()
		cpath := C.CString(libPath)
		defer C.free(unsafe.Pointer(cpath))
		var msg [1024]C.char
		switch C.kiln_load(cpath, &msg[0], C.size_t(len(msg))) {
		case C.KILN_LOAD_OK:
		case C.KILN_LOAD_DLOPEN_FAILED:
			loadErr = fmt.Errorf("%w: dlopen %s failed: %s (install the NVIDIA driver, or set KILN_CUDA_LIBRARY to its libcuda.so.1)",
				ErrLibraryNotFound, libPath, C.GoString(&msg[0]))
		default:
			loadErr = fmt.Errorf("%w: %s has no entry point %s (the driver is too old, or this is not the CUDA driver library)",
				ErrLibraryNotFound, libPath, C.GoString(&msg[0]))
		}
		loadDone.Store(true)
	})
	return loadErr
}

// Init calls Load, then cuInit(0), once per process; later calls return the
// first result.
func Init() error {
	initOnce.Do(func() {
		if err := Load(); err != nil {
			initErr = err
			return
		}
		if r := C.kiln_init(0); r != 0 {
			initErr = newError("cuInit", r, "driver library "+libPath)
		}
	})
	return initErr
}

// LibraryPath is the driver library path Load tried (or opened). Before Load
// it is the path Load would try.
func LibraryPath() string {
	if loadDone.Load() {
		return libPath
	}
	return libraryPathFromEnv()
}

// newError turns a failing result of a kiln_* shim function into an *Error
// naming call, or cuCtxSetCurrent when making the context current failed.
// Where the Go tables do not know the result's name or meaning, the driver's
// own words (cuGetErrorName, cuGetErrorString) are added to Detail.
func newError(call string, r C.int, detail string) error {
	code := int(r)
	if code&C.KILN_CTX_FAILED != 0 {
		code &^= C.KILN_CTX_FAILED
		detail = "making the context current for " + call + joinDetail(detail)
		call = "cuCtxSetCurrent"
	}
	res := Result(code)
	if loadDone.Load() && loadErr == nil {
		var words []string
		if _, known := resultNames[res]; !known {
			if s := C.kiln_error_name(C.int(code)); s != nil {
				words = append(words, C.GoString(s))
			}
		}
		if res.Description() == "" {
			if s := C.kiln_error_string(C.int(code)); s != nil {
				words = append(words, C.GoString(s))
			}
		}
		if len(words) > 0 {
			if detail != "" {
				detail += "; "
			}
			detail += "driver: " + strings.Join(words, ": ")
		}
	}
	return &Error{Call: call, Result: res, Detail: detail}
}

func joinDetail(detail string) string {
	if detail == "" {
		return ""
	}
	return ": " + detail
}

// destroyed is the error for a nil, released or destroyed handle.
func destroyed(what, handle string) error {
	return fmt.Errorf("%w: %s: the %s is nil, released or destroyed", ErrDestroyed, what, handle)
}

// ready is the check every Device method starts with: the driver must be
// loaded and initialised before a device can be asked anything.
func ready() error { return Init() }

// live checks that c can be used.
func (c *Context) live(what string) error {
	if c == nil || c.handle == nil {
		return destroyed(what, "Context")
	}
	return nil
}

// streamOf checks that s (nil: the legacy default stream) can be used in c.
func (c *Context) streamOf(s *Stream, what string) (unsafe.Pointer, error) {
	if s == nil {
		return nil, nil
	}
	if s.handle == nil {
		return nil, destroyed(what, "Stream")
	}
	if s.ctx == nil || s.ctx.handle == nil {
		return nil, destroyed(what, "Stream's Context")
	}
	if s.ctx.handle != c.handle {
		return nil, fmt.Errorf("cuda: %s: the stream belongs to device %d's context, not device %d's", what, s.ctx.dev, c.dev)
	}
	return s.handle, nil
}

func checkSize(what, name string, n int64) error {
	if n < 0 {
		return fmt.Errorf("cuda: %s: %s must not be negative, got %d", what, name, n)
	}
	return nil
}

// DriverVersion is cuDriverGetVersion: the newest CUDA version the driver
// supports, as 1000*major + 10*minor (12040 for 12.4). It needs only Load.
func DriverVersion() (int, error) {
	if err := Load(); err != nil {
		return 0, err
	}
	var v C.int
	if r := C.kiln_driver_version(&v); r != 0 {
		return 0, newError("cuDriverGetVersion", r, "")
	}
	return int(v), nil
}

// DeviceCount is cuDeviceGetCount. It calls Init first.
func DeviceCount() (int, error) {
	if err := ready(); err != nil {
		return 0, err
	}
	var n C.int
	if r := C.kiln_device_count(&n); r != 0 {
		return 0, newError("cuDeviceGetCount", r, "")
	}
	return int(n), nil
}

// GetDevice is cuDeviceGet. It calls Init first.
func GetDevice(ordinal int) (Device, error) {
	if err := ready(); err != nil {
		return 0, err
	}
	var d C.int
	if r := C.kiln_device_get(&d, C.int(ordinal)); r != 0 {
		return 0, newError("cuDeviceGet", r, fmt.Sprintf("ordinal %d", ordinal))
	}
	return Device(d), nil
}

// Name is cuDeviceGetName.
func (d Device) Name() (string, error) {
	if err := ready(); err != nil {
		return "", err
	}
	var buf [256]C.char
	if r := C.kiln_device_name(&buf[0], C.int(len(buf)), C.int(d)); r != 0 {
		return "", newError("cuDeviceGetName", r, fmt.Sprintf("device %d", int(d)))
	}
	return C.GoString(&buf[0]), nil
}

// UUID is cuDeviceGetUuid_v2, formatted as nvidia-smi does ("GPU-xxxxxxxx-xxxx-...").
func (d Device) UUID() (string, error) {
	if err := ready(); err != nil {
		return "", err
	}
	var u [16]C.uchar
	if r := C.kiln_device_uuid(&u[0], C.int(d)); r != 0 {
		call := "cuDeviceGetUuid_v2"
		if C.kiln_uuid_fallback() != 0 {
			call = "cuDeviceGetUuid"
		}
		return "", newError(call, r, fmt.Sprintf("device %d", int(d)))
	}
	var b [16]byte
	for i := range u {
		b[i] = byte(u[i])
	}
	return formatUUID(b), nil
}

// formatUUID writes 16 bytes the way nvidia-smi and NVML print GPU UUIDs.
func formatUUID(b [16]byte) string {
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// PCIBusID is cuDeviceGetPCIBusId ("0000:3b:00.0"), in lower case as Linux's
// sysfs writes it, whatever case the driver uses.
func (d Device) PCIBusID() (string, error) {
	if err := ready(); err != nil {
		return "", err
	}
	var buf [64]C.char
	if r := C.kiln_device_pci_bus_id(&buf[0], C.int(len(buf)), C.int(d)); r != 0 {
		return "", newError("cuDeviceGetPCIBusId", r, fmt.Sprintf("device %d", int(d)))
	}
	return strings.ToLower(C.GoString(&buf[0])), nil
}

// ComputeCapability reads the major and minor compute capability.
func (d Device) ComputeCapability() (major, minor int, err error) {
	if major, err = d.Attribute(AttrComputeCapabilityMajor); err != nil {
		return 0, 0, err
	}
	if minor, err = d.Attribute(AttrComputeCapabilityMinor); err != nil {
		return 0, 0, err
	}
	return major, minor, nil
}

// Attribute is cuDeviceGetAttribute.
func (d Device) Attribute(a Attribute) (int, error) {
	if err := ready(); err != nil {
		return 0, err
	}
	var v C.int
	if r := C.kiln_device_attribute(&v, C.int(a), C.int(d)); r != 0 {
		return 0, newError("cuDeviceGetAttribute", r, fmt.Sprintf("device %d, attribute %d", int(d), int(a)))
	}
	return int(v), nil
}

// TotalMemBytes is cuDeviceTotalMem_v2.
func (d Device) TotalMemBytes() (int64, error) {
	if err := ready(); err != nil {
		return 0, err
	}
	var n C.size_t
	if r := C.kiln_device_total_mem(&n, C.int(d)); r != 0 {
		return 0, newError("cuDeviceTotalMem_v2", r, fmt.Sprintf("device %d", int(d)))
	}
	return int64(n), nil
}

// CanAccessPeer is cuDeviceCanAccessPeer.
func (d Device) CanAccessPeer(peer Device) (bool, error) {
	if err := ready(); err != nil {
		return false, err
	}
	var can C.int
	if r := C.kiln_device_can_access_peer(&can, C.int(d), C.int(peer)); r != 0 {
		return false, newError("cuDeviceCanAccessPeer", r, fmt.Sprintf("device %d, peer %d", int(d), int(peer)))
	}
	return can != 0, nil
}

// RetainPrimaryContext is cuDevicePrimaryCtxRetain. Release the context when done.
func (d Device) RetainPrimaryContext() (*Context, error) {
	if err := ready(); err != nil {
		return nil, err
	}
	var h unsafe.Pointer
	if r := C.kiln_primary_ctx_retain(&h, C.int(d)); r != 0 {
		return nil, newError("cuDevicePrimaryCtxRetain", r, fmt.Sprintf("device %d", int(d)))
	}
	return &Context{handle: h, dev: d}, nil
}

// Release is cuDevicePrimaryCtxRelease_v2. The context must not be used
// afterwards; its methods, and those of its streams, events, modules and
// graphs, then return ErrDestroyed. Free pinned host buffers first: releasing
// the last reference destroys the context and everything allocated in it.
func (c *Context) Release() error {
	if err := c.live("Release"); err != nil {
		return err
	}
	if r := C.kiln_primary_ctx_release(C.int(c.dev)); r != 0 {
		return newError("cuDevicePrimaryCtxRelease_v2", r, fmt.Sprintf("device %d", int(c.dev)))
	}
	c.handle = nil
	return nil
}

// Synchronize is cuCtxSynchronize.
func (c *Context) Synchronize() error {
	if err := c.live("Synchronize"); err != nil {
		return err
	}
	if r := C.kiln_ctx_synchronize(c.handle); r != 0 {
		return newError("cuCtxSynchronize", r, fmt.Sprintf("device %d", int(c.dev)))
	}
	return nil
}

// MemInfo is cuMemGetInfo_v2: free and total device memory in bytes.
func (c *Context) MemInfo() (freeBytes, totalBytes int64, err error) {
	if err := c.live("MemInfo"); err != nil {
		return 0, 0, err
	}
	var f, t C.size_t
	if r := C.kiln_mem_get_info(c.handle, &f, &t); r != 0 {
		return 0, 0, newError("cuMemGetInfo_v2", r, fmt.Sprintf("device %d", int(c.dev)))
	}
	return int64(f), int64(t), nil
}

// EnablePeerAccess is cuCtxEnablePeerAccess: this context may then access
// peer's memory. Enabling twice is not an error.
func (c *Context) EnablePeerAccess(peer *Context) error {
	if err := c.live("EnablePeerAccess"); err != nil {
		return err
	}
	if err := peer.live("EnablePeerAccess (peer)"); err != nil {
		return err
	}
	r := C.kiln_ctx_enable_peer_access(c.handle, peer.handle)
	if r != 0 && Result(r) != ErrorPeerAlreadyOn {
		return newError("cuCtxEnablePeerAccess", r, fmt.Sprintf("device %d to peer device %d", int(c.dev), int(peer.dev)))
	}
	return nil
}

// MemAlloc is cuMemAlloc_v2.
func (c *Context) MemAlloc(sizeBytes int64) (DevicePtr, error) {
	if err := c.live("MemAlloc"); err != nil {
		return 0, err
	}
	if sizeBytes <= 0 {
		return 0, fmt.Errorf("cuda: MemAlloc: sizeBytes must be positive, got %d", sizeBytes)
	}
	var p C.kiln_devptr
	if r := C.kiln_mem_alloc(c.handle, &p, C.size_t(sizeBytes)); r != 0 {
		return 0, newError("cuMemAlloc_v2", r, fmt.Sprintf("%d bytes on device %d", sizeBytes, int(c.dev)))
	}
	return DevicePtr(p), nil
}

// MemFree is cuMemFree_v2.
func (c *Context) MemFree(p DevicePtr) error {
	if err := c.live("MemFree"); err != nil {
		return err
	}
	if r := C.kiln_mem_free(c.handle, C.kiln_devptr(p)); r != 0 {
		return newError("cuMemFree_v2", r, fmt.Sprintf("pointer %#x on device %d", uint64(p), int(c.dev)))
	}
	return nil
}

// MemAllocAsync is cuMemAllocAsync (stream-ordered allocation); s nil is
// the legacy default stream.
func (c *Context) MemAllocAsync(sizeBytes int64, s *Stream) (DevicePtr, error) {
	if err := c.live("MemAllocAsync"); err != nil {
		return 0, err
	}
	sh, err := c.streamOf(s, "MemAllocAsync")
	if err != nil {
		return 0, err
	}
	if sizeBytes <= 0 {
		return 0, fmt.Errorf("cuda: MemAllocAsync: sizeBytes must be positive, got %d", sizeBytes)
	}
	var p C.kiln_devptr
	if r := C.kiln_mem_alloc_async(c.handle, &p, C.size_t(sizeBytes), sh); r != 0 {
		return 0, newError("cuMemAllocAsync", r, fmt.Sprintf("%d bytes on device %d", sizeBytes, int(c.dev)))
	}
	return DevicePtr(p), nil
}

// MemFreeAsync is cuMemFreeAsync; s nil is the legacy default stream.
func (c *Context) MemFreeAsync(p DevicePtr, s *Stream) error {
	if err := c.live("MemFreeAsync"); err != nil {
		return err
	}
	sh, err := c.streamOf(s, "MemFreeAsync")
	if err != nil {
		return err
	}
	if r := C.kiln_mem_free_async(c.handle, C.kiln_devptr(p), sh); r != 0 {
		return newError("cuMemFreeAsync", r, fmt.Sprintf("pointer %#x on device %d", uint64(p), int(c.dev)))
	}
	return nil
}

// MemHostAlloc is cuMemHostAlloc: pinned host memory, usable from every
// context (CU_MEMHOSTALLOC_PORTABLE).
func (c *Context) MemHostAlloc(sizeBytes int64) (*HostBuffer, error) {
	if err := c.live("MemHostAlloc"); err != nil {
		return nil, err
	}
	if sizeBytes <= 0 {
		return nil, fmt.Errorf("cuda: MemHostAlloc: sizeBytes must be positive, got %d", sizeBytes)
	}
	var p unsafe.Pointer
	if r := C.kiln_mem_host_alloc(c.handle, &p, C.size_t(sizeBytes), memHostAllocPortable); r != 0 {
		return nil, newError("cuMemHostAlloc", r, fmt.Sprintf("%d bytes of pinned host memory", sizeBytes))
	}
	return &HostBuffer{ptr: p, size: sizeBytes, ctx: c}, nil
}

// Free is cuMemFreeHost. Bytes returns nil afterwards.
func (h *HostBuffer) Free() error {
	if h == nil || h.ptr == nil {
		return destroyed("HostBuffer.Free", "HostBuffer")
	}
	if err := h.ctx.live("HostBuffer.Free"); err != nil {
		return err
	}
	if r := C.kiln_mem_free_host(h.ctx.handle, h.ptr); r != 0 {
		return newError("cuMemFreeHost", r, fmt.Sprintf("%d bytes of pinned host memory", h.size))
	}
	h.ptr = nil
	h.size = 0
	return nil
}

// hostRange checks that [offset, offset+n) lies in h and returns its start.
func hostRange(h *HostBuffer, offset, n int64, what string) (unsafe.Pointer, error) {
	if h == nil || h.ptr == nil {
		return nil, destroyed(what, "HostBuffer")
	}
	if offset < 0 || n < 0 || offset > h.size || n > h.size-offset {
		return nil, fmt.Errorf("cuda: %s: bytes [%d, %d+%d) are outside the %d-byte pinned buffer", what, offset, offset, n, h.size)
	}
	return unsafe.Add(h.ptr, offset), nil
}

// MemcpyHtoD is cuMemcpyHtoD_v2 from Go memory; it returns when src may be
// reused, which is not when the data has arrived: the copy runs on the legacy
// default stream, and the driver may still be moving it to the device. The
// legacy stream is ordered with blocking streams but not with non-blocking
// ones (NewStream(true)), so work queued on a non-blocking stream may read dst
// before the copy lands: upload through pinned memory and MemcpyHtoDAsync on
// that stream instead, or synchronise the context first.
func (c *Context) MemcpyHtoD(dst DevicePtr, src []byte) error {
	if err := c.live("MemcpyHtoD"); err != nil {
		return err
	}
	if len(src) == 0 {
		return nil
	}
	if r := C.kiln_memcpy_htod(c.handle, C.kiln_devptr(dst), unsafe.Pointer(&src[0]), C.size_t(len(src))); r != 0 {
		return newError("cuMemcpyHtoD_v2", r, fmt.Sprintf("%d bytes to %#x", len(src), uint64(dst)))
	}
	return nil
}

// MemcpyDtoH is cuMemcpyDtoH_v2 into Go memory; it returns when the data is in
// dst. It runs on the legacy default stream, so it waits for that stream and
// for blocking streams, but not for work on non-blocking streams: synchronise
// such a stream before reading what it wrote.
func (c *Context) MemcpyDtoH(dst []byte, src DevicePtr) error {
	if err := c.live("MemcpyDtoH"); err != nil {
		return err
	}
	if len(dst) == 0 {
		return nil
	}
	if r := C.kiln_memcpy_dtoh(c.handle, unsafe.Pointer(&dst[0]), C.kiln_devptr(src), C.size_t(len(dst))); r != 0 {
		return newError("cuMemcpyDtoH_v2", r, fmt.Sprintf("%d bytes from %#x", len(dst), uint64(src)))
	}
	return nil
}

// MemcpyDtoD is cuMemcpyDtoD_v2. Despite its name it is asynchronous with
// respect to the host: it is queued on the legacy default stream (see
// MemcpyHtoD for what that stream is ordered with).
func (c *Context) MemcpyDtoD(dst, src DevicePtr, n int64) error {
	if err := c.live("MemcpyDtoD"); err != nil {
		return err
	}
	if err := checkSize("MemcpyDtoD", "n", n); err != nil || n == 0 {
		return err
	}
	if r := C.kiln_memcpy_dtod(c.handle, C.kiln_devptr(dst), C.kiln_devptr(src), C.size_t(n)); r != 0 {
		return newError("cuMemcpyDtoD_v2", r, fmt.Sprintf("%d bytes from %#x to %#x", n, uint64(src), uint64(dst)))
	}
	return nil
}

// MemcpyHtoDAsync is cuMemcpyHtoDAsync_v2 from pinned memory src[srcOffset:srcOffset+n].
func (c *Context) MemcpyHtoDAsync(dst DevicePtr, src *HostBuffer, srcOffset, n int64, s *Stream) error {
	if err := c.live("MemcpyHtoDAsync"); err != nil {
		return err
	}
	sh, err := c.streamOf(s, "MemcpyHtoDAsync")
	if err != nil {
		return err
	}
	p, err := hostRange(src, srcOffset, n, "MemcpyHtoDAsync")
	if err != nil || n == 0 {
		return err
	}
	if r := C.kiln_memcpy_htod_async(c.handle, C.kiln_devptr(dst), p, C.size_t(n), sh); r != 0 {
		return newError("cuMemcpyHtoDAsync_v2", r, fmt.Sprintf("%d bytes to %#x", n, uint64(dst)))
	}
	return nil
}

// MemcpyDtoHAsync is cuMemcpyDtoHAsync_v2 into pinned memory dst[dstOffset:dstOffset+n].
func (c *Context) MemcpyDtoHAsync(dst *HostBuffer, dstOffset int64, src DevicePtr, n int64, s *Stream) error {
	if err := c.live("MemcpyDtoHAsync"); err != nil {
		return err
	}
	sh, err := c.streamOf(s, "MemcpyDtoHAsync")
	if err != nil {
		return err
	}
	p, err := hostRange(dst, dstOffset, n, "MemcpyDtoHAsync")
	if err != nil || n == 0 {
		return err
	}
	if r := C.kiln_memcpy_dtoh_async(c.handle, p, C.kiln_devptr(src), C.size_t(n), sh); r != 0 {
		return newError("cuMemcpyDtoHAsync_v2", r, fmt.Sprintf("%d bytes from %#x", n, uint64(src)))
	}
	return nil
}

// MemcpyDtoDAsync is cuMemcpyDtoDAsync_v2.
func (c *Context) MemcpyDtoDAsync(dst, src DevicePtr, n int64, s *Stream) error {
	if err := c.live("MemcpyDtoDAsync"); err != nil {
		return err
	}
	sh, err := c.streamOf(s, "MemcpyDtoDAsync")
	if err != nil {
		return err
	}
	if err := checkSize("MemcpyDtoDAsync", "n", n); err != nil || n == 0 {
		return err
	}
	if r := C.kiln_memcpy_dtod_async(c.handle, C.kiln_devptr(dst), C.kiln_devptr(src), C.size_t(n), sh); r != 0 {
		return newError("cuMemcpyDtoDAsync_v2", r, fmt.Sprintf("%d bytes from %#x to %#x", n, uint64(src), uint64(dst)))
	}
	return nil
}

// MemcpyPeerAsync is cuMemcpyPeerAsync: n bytes from src in srcCtx to dst in c.
func (c *Context) MemcpyPeerAsync(dst DevicePtr, src DevicePtr, srcCtx *Context, n int64, s *Stream) error {
	if err := c.live("MemcpyPeerAsync"); err != nil {
		return err
	}
	if err := srcCtx.live("MemcpyPeerAsync (source)"); err != nil {
		return err
	}
	sh, err := c.streamOf(s, "MemcpyPeerAsync")
	if err != nil {
		return err
	}
	if err := checkSize("MemcpyPeerAsync", "n", n); err != nil || n == 0 {
		return err
	}
	if r := C.kiln_memcpy_peer_async(c.handle, C.kiln_devptr(dst), c.handle, C.kiln_devptr(src), srcCtx.handle, C.size_t(n), sh); r != 0 {
		return newError("cuMemcpyPeerAsync", r, fmt.Sprintf("%d bytes from device %d to device %d", n, int(srcCtx.dev), int(c.dev)))
	}
	return nil
}

// MemsetD8 is cuMemsetD8_v2. On device memory it is asynchronous with
// respect to the host and queued on the legacy default stream, which
// non-blocking streams do not wait for: use MemsetD8Async on the stream that
// will use the memory.
func (c *Context) MemsetD8(dst DevicePtr, v byte, n int64) error {
	if err := c.live("MemsetD8"); err != nil {
		return err
	}
	if err := checkSize("MemsetD8", "n", n); err != nil || n == 0 {
		return err
	}
	if r := C.kiln_memset_d8(c.handle, C.kiln_devptr(dst), C.uchar(v), C.size_t(n)); r != 0 {
		return newError("cuMemsetD8_v2", r, fmt.Sprintf("%d bytes at %#x", n, uint64(dst)))
	}
	return nil
}

// MemsetD8Async is cuMemsetD8Async.
func (c *Context) MemsetD8Async(dst DevicePtr, v byte, n int64, s *Stream) error {
	if err := c.live("MemsetD8Async"); err != nil {
		return err
	}
	sh, err := c.streamOf(s, "MemsetD8Async")
	if err != nil {
		return err
	}
	if err := checkSize("MemsetD8Async", "n", n); err != nil || n == 0 {
		return err
	}
	if r := C.kiln_memset_d8_async(c.handle, C.kiln_devptr(dst), C.uchar(v), C.size_t(n), sh); r != 0 {
		return newError("cuMemsetD8Async", r, fmt.Sprintf("%d bytes at %#x", n, uint64(dst)))
	}
	return nil
}

// MemsetD32Async is cuMemsetD32Async: n 32-bit words.
func (c *Context) MemsetD32Async(dst DevicePtr, v uint32, n int64, s *Stream) error {
	if err := c.live("MemsetD32Async"); err != nil {
		return err
	}
	sh, err := c.streamOf(s, "MemsetD32Async")
	if err != nil {
		return err
	}
	if err := checkSize("MemsetD32Async", "n", n); err != nil || n == 0 {
		return err
	}
	if r := C.kiln_memset_d32_async(c.handle, C.kiln_devptr(dst), C.uint(v), C.size_t(n), sh); r != 0 {
		return newError("cuMemsetD32Async", r, fmt.Sprintf("%d words at %#x", n, uint64(dst)))
	}
	return nil
}

// NewStream is cuStreamCreate (CU_STREAM_NON_BLOCKING when nonBlocking).
func (c *Context) NewStream(nonBlocking bool) (*Stream, error) {
	if err := c.live("NewStream"); err != nil {
		return nil, err
	}
	var flags C.uint
	if nonBlocking {
		flags = streamNonBlocking
	}
	var h unsafe.Pointer
	if r := C.kiln_stream_create(c.handle, &h, flags); r != 0 {
		return nil, newError("cuStreamCreate", r, fmt.Sprintf("device %d", int(c.dev)))
	}
	return &Stream{handle: h, ctx: c}, nil
}

// Context is the context the stream belongs to.
func (s *Stream) Context() *Context { return s.ctx }

// live checks that s and its context can be used.
func (s *Stream) live(what string) error {
	if s == nil || s.handle == nil {
		return destroyed(what, "Stream")
	}
	return s.ctx.live(what)
}

// Destroy is cuStreamDestroy_v2.
func (s *Stream) Destroy() error {
	if err := s.live("Stream.Destroy"); err != nil {
		return err
	}
	if r := C.kiln_stream_destroy(s.ctx.handle, s.handle); r != 0 {
		return newError("cuStreamDestroy_v2", r, "")
	}
	s.handle = nil
	return nil
}

// Synchronize is cuStreamSynchronize.
func (s *Stream) Synchronize() error {
	if err := s.live("Stream.Synchronize"); err != nil {
		return err
	}
	if r := C.kiln_stream_synchronize(s.ctx.handle, s.handle); r != 0 {
		return newError("cuStreamSynchronize", r, "")
	}
	return nil
}

// Query is cuStreamQuery: true when all work on the stream is done.
func (s *Stream) Query() (bool, error) {
	if err := s.live("Stream.Query"); err != nil {
		return false, err
	}
	switch r := C.kiln_stream_query(s.ctx.handle, s.handle); Result(r) {
	case Success:
		return true, nil
	case ErrorNotReady:
		return false, nil
	default:
		return false, newError("cuStreamQuery", r, "")
	}
}

// WaitEvent is cuStreamWaitEvent: later work on s waits for e.
func (s *Stream) WaitEvent(e *Event) error {
	if err := s.live("Stream.WaitEvent"); err != nil {
		return err
	}
	if e == nil || e.handle == nil {
		return destroyed("Stream.WaitEvent", "Event")
	}
	if r := C.kiln_stream_wait_event(s.ctx.handle, s.handle, e.handle); r != 0 {
		return newError("cuStreamWaitEvent", r, "")
	}
	return nil
}

// BeginCapture is cuStreamBeginCapture_v2. In CaptureGlobal and
// CaptureThreadLocal mode, call EndCapture on the same OS thread (hold it with
// runtime.LockOSThread); see CaptureMode.
func (s *Stream) BeginCapture(mode CaptureMode) error {
	if err := s.live("Stream.BeginCapture"); err != nil {
		return err
	}
	if r := C.kiln_stream_begin_capture(s.ctx.handle, s.handle, C.int(mode)); r != 0 {
		return newError("cuStreamBeginCapture_v2", r, fmt.Sprintf("mode %d", int(mode)))
	}
	return nil
}

// EndCapture is cuStreamEndCapture. Unless the capture is CaptureRelaxed, it
// must run on the OS thread that called BeginCapture.
func (s *Stream) EndCapture() (*Graph, error) {
	if err := s.live("Stream.EndCapture"); err != nil {
		return nil, err
	}
	var g unsafe.Pointer
	if r := C.kiln_stream_end_capture(s.ctx.handle, s.handle, &g); r != 0 {
		return nil, newError("cuStreamEndCapture", r, "")
	}
	return &Graph{handle: g, ctx: s.ctx}, nil
}

// NewEvent is cuEventCreate; timing=false adds CU_EVENT_DISABLE_TIMING.
func (c *Context) NewEvent(timing bool) (*Event, error) {
	if err := c.live("NewEvent"); err != nil {
		return nil, err
	}
	var flags C.uint
	if !timing {
		flags = eventDisableTiming
	}
	var h unsafe.Pointer
	if r := C.kiln_event_create(c.handle, &h, flags); r != 0 {
		return nil, newError("cuEventCreate", r, fmt.Sprintf("device %d", int(c.dev)))
	}
	return &Event{handle: h, ctx: c}, nil
}

// live checks that e and its context can be used.
func (e *Event) live(what string) error {
	if e == nil || e.handle == nil {
		return destroyed(what, "Event")
	}
	return e.ctx.live(what)
}

// Record is cuEventRecord; s nil is the legacy default stream.
func (e *Event) Record(s *Stream) error {
	if err := e.live("Event.Record"); err != nil {
		return err
	}
	sh, err := e.ctx.streamOf(s, "Event.Record")
	if err != nil {
		return err
	}
	if r := C.kiln_event_record(e.ctx.handle, e.handle, sh); r != 0 {
		return newError("cuEventRecord", r, "")
	}
	return nil
}

// Synchronize is cuEventSynchronize.
func (e *Event) Synchronize() error {
	if err := e.live("Event.Synchronize"); err != nil {
		return err
	}
	if r := C.kiln_event_synchronize(e.ctx.handle, e.handle); r != 0 {
		return newError("cuEventSynchronize", r, "")
	}
	return nil
}

// Query is cuEventQuery: true when the recorded work is done.
func (e *Event) Query() (bool, error) {
	if err := e.live("Event.Query"); err != nil {
		return false, err
	}
	switch r := C.kiln_event_query(e.ctx.handle, e.handle); Result(r) {
	case Success:
		return true, nil
	case ErrorNotReady:
		return false, nil
	default:
		return false, newError("cuEventQuery", r, "")
	}
}

// Destroy is cuEventDestroy_v2.
func (e *Event) Destroy() error {
	if err := e.live("Event.Destroy"); err != nil {
		return err
	}
	if r := C.kiln_event_destroy(e.ctx.handle, e.handle); r != 0 {
		return newError("cuEventDestroy_v2", r, "")
	}
	e.handle = nil
	return nil
}

// ElapsedMillis is cuEventElapsedTime between two recorded timing events.
func ElapsedMillis(start, end *Event) (float32, error) {
	if err := start.live("ElapsedMillis (start)"); err != nil {
		return 0, err
	}
	if err := end.live("ElapsedMillis (end)"); err != nil {
		return 0, err
	}
	var ms C.float
	if r := C.kiln_event_elapsed(start.ctx.handle, &ms, start.handle, end.handle); r != 0 {
		return 0, newError("cuEventElapsedTime", r, "")
	}
	return float32(ms), nil
}

// LoadModule is cuModuleLoadDataEx on NUL-terminated PTX text (the NUL is
// added if missing). A refusal returns an *Error whose Log holds the JIT
// compiler's error log (and its info log, when it wrote one).
func (c *Context) LoadModule(ptx []byte) (*Module, error) {
	if err := c.live("LoadModule"); err != nil {
		return nil, err
	}
	if len(ptx) == 0 {
		return nil, fmt.Errorf("cuda: LoadModule: the PTX is empty")
	}
	// The image is copied to C memory with a terminating NUL: the caller's
	// slice may lack one, and is not ours to extend.
	image := C.malloc(C.size_t(len(ptx) + 1))
	defer C.free(image)
	copy(unsafe.Slice((*byte)(image), len(ptx)), ptx)
	*(*byte)(unsafe.Add(image, len(ptx))) = 0
	logs := C.malloc(2 * jitLogBytes)
	defer C.free(logs)
	errLog := (*C.char)(logs)
	infoLog := (*C.char)(unsafe.Add(logs, jitLogBytes))

	var h unsafe.Pointer
	if r := C.kiln_module_load(c.handle, &h, image, errLog, jitLogBytes, infoLog, jitLogBytes); r != 0 {
		err := newError("cuModuleLoadDataEx", r, fmt.Sprintf("%d bytes of PTX%s on device %d", len(ptx), ptxTarget(ptx), int(c.dev)))
		if e, ok := err.(*Error); ok {
			e.Log = strings.TrimSpace(C.GoString(errLog))
			if info := strings.TrimSpace(C.GoString(infoLog)); info != "" {
				if e.Log != "" {
					e.Log += "\n"
				}
				e.Log += info
			}
		}
		return nil, err
	}
	return &Module{handle: h, ctx: c}, nil
}

// ptxTarget is ", .target X" for the PTX's .target directive, or "".
func ptxTarget(ptx []byte) string {
	i := bytes.Index(ptx, []byte(".target"))
	if i < 0 {
		return ""
	}
	line := ptx[i:]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	if len(line) > 80 {
		line = line[:80]
	}
	return ", " + string(bytes.TrimSpace(line))
}

// live checks that m and its context can be used.
func (m *Module) live(what string) error {
	if m == nil || m.handle == nil {
		return destroyed(what, "Module")
	}
	return m.ctx.live(what)
}

// Unload is cuModuleUnload. Its functions return ErrDestroyed afterwards.
func (m *Module) Unload() error {
	if err := m.live("Module.Unload"); err != nil {
		return err
	}
	if r := C.kiln_module_unload(m.ctx.handle, m.handle); r != 0 {
		return newError("cuModuleUnload", r, "")
	}
	m.handle = nil
	return nil
}

// Function is cuModuleGetFunction.
func (m *Module) Function(name string) (*Function, error) {
	if err := m.live("Module.Function"); err != nil {
		return nil, err
	}
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return nil, fmt.Errorf("cuda: Module.Function: invalid kernel name %q", name)
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var h unsafe.Pointer
	if r := C.kiln_module_get_function(m.ctx.handle, &h, m.handle, cname); r != 0 {
		return nil, newError("cuModuleGetFunction", r, fmt.Sprintf("kernel %q", name))
	}
	// The parameter size lets Launch catch arguments packed for another
	// signature, which the driver would otherwise run with garbage or refuse
	// with a misleading CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES. It is a check
	// only: when the driver cannot answer, launches go unchecked.
	f := &Function{handle: h, mod: m, name: name}
	var n C.size_t
	if C.kiln_func_param_bytes(m.ctx.handle, &n, h) == 0 {
		f.paramBytes, f.paramKnown = int(n), true
	}
	return f, nil
}

// live checks that f, its module and its context can be used.
func (f *Function) live(what string) error {
	if f == nil || f.handle == nil {
		return destroyed(what, "Function")
	}
	return f.mod.live(what)
}

// Attribute is cuFuncGetAttribute.
func (f *Function) Attribute(a FuncAttribute) (int, error) {
	if err := f.live("Function.Attribute"); err != nil {
		return 0, err
	}
	var v C.int
	if r := C.kiln_func_get_attribute(f.mod.ctx.handle, &v, C.int(a), f.handle); r != 0 {
		return 0, newError("cuFuncGetAttribute", r, fmt.Sprintf("kernel %s, attribute %d", f.name, int(a)))
	}
	return int(v), nil
}

// SetAttribute is cuFuncSetAttribute (for example to allow more than 48 KiB of
// dynamic shared memory).
func (f *Function) SetAttribute(a FuncAttribute, v int) error {
	if err := f.live("Function.SetAttribute"); err != nil {
		return err
	}
	if r := C.kiln_func_set_attribute(f.mod.ctx.handle, f.handle, C.int(a), C.int(v)); r != 0 {
		return newError("cuFuncSetAttribute", r, fmt.Sprintf("kernel %s, attribute %d = %d", f.name, int(a), v))
	}
	return nil
}

// MaxActiveBlocksPerSM is cuOccupancyMaxActiveBlocksPerMultiprocessor.
func (f *Function) MaxActiveBlocksPerSM(blockSize, dynamicSharedBytes int) (int, error) {
	if err := f.live("Function.MaxActiveBlocksPerSM"); err != nil {
		return 0, err
	}
	if blockSize <= 0 || dynamicSharedBytes < 0 {
		return 0, fmt.Errorf("cuda: MaxActiveBlocksPerSM: kernel %s: blockSize must be positive and dynamicSharedBytes not negative, got %d and %d",
			f.name, blockSize, dynamicSharedBytes)
	}
	var n C.int
	if r := C.kiln_occupancy_max_active_blocks(f.mod.ctx.handle, &n, f.handle, C.int(blockSize), C.size_t(dynamicSharedBytes)); r != 0 {
		return 0, newError("cuOccupancyMaxActiveBlocksPerMultiprocessor", r,
			fmt.Sprintf("kernel %s, block size %d, %d dynamic shared bytes", f.name, blockSize, dynamicSharedBytes))
	}
	return int(n), nil
}

// Launch is cuLaunchKernel with the packed arguments args (nil: none) on
// stream s (nil: the legacy default stream). The argument buffer goes to the
// driver through cuLaunchKernel's `extra` array, which the driver copies
// during the call. It does not allocate. When the driver reports the
// kernel's parameter size (Function.ParamBytes), packed arguments of any
// other size are refused before the driver sees them.
func (c *Context) Launch(f *Function, grid, block Dim3, sharedBytes int, s *Stream, args *Args) error {
	if err := c.live("Launch"); err != nil {
		return err
	}
	if err := f.live("Launch"); err != nil {
		return err
	}
	if f.mod.ctx.handle != c.handle {
		return fmt.Errorf("cuda: Launch: kernel %s was loaded on device %d, not device %d", f.name, int(f.mod.ctx.dev), int(c.dev))
	}
	sh, err := c.streamOf(s, "Launch")
	if err != nil {
		return err
	}
	if sharedBytes < 0 {
		return fmt.Errorf("cuda: Launch: kernel %s: sharedBytes must not be negative, got %d", f.name, sharedBytes)
	}
	var argPtr unsafe.Pointer
	var argBytes int
	if args != nil {
		if err := args.check(); err != nil {
			return fmt.Errorf("cuda: Launch: kernel %s: %w", f.name, err)
		}
		if argBytes = len(args.buf); argBytes > 0 {
			argPtr = unsafe.Pointer(&args.buf[0])
		}
	}
	if f.paramKnown && argBytes != f.paramBytes {
		return fmt.Errorf("cuda: Launch: kernel %s takes %d bytes of parameters (cuFuncGetParamInfo), but %d bytes were packed: the Args do not match the kernel's signature",
			f.name, f.paramBytes, argBytes)
	}
	r := C.kiln_launch(c.handle, f.handle,
		C.uint(grid.X), C.uint(grid.Y), C.uint(grid.Z),
		C.uint(block.X), C.uint(block.Y), C.uint(block.Z),
		C.uint(sharedBytes), sh, argPtr, C.size_t(argBytes))
	if r != 0 {
		return newError("cuLaunchKernel", r, fmt.Sprintf("kernel %s, grid %dx%dx%d, block %dx%dx%d, %d shared bytes, %d argument bytes",
			f.name, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, sharedBytes, argBytes))
	}
	return nil
}

// live checks that g and its context can be used.
func (g *Graph) live(what string) error {
	if g == nil || g.handle == nil {
		return destroyed(what, "Graph")
	}
	return g.ctx.live(what)
}

// Instantiate is cuGraphInstantiateWithFlags (flags 0).
func (g *Graph) Instantiate() (*GraphExec, error) {
	if err := g.live("Graph.Instantiate"); err != nil {
		return nil, err
	}
	var h unsafe.Pointer
	if r := C.kiln_graph_instantiate(g.ctx.handle, &h, g.handle); r != 0 {
		return nil, newError("cuGraphInstantiateWithFlags", r, "")
	}
	return &GraphExec{handle: h, ctx: g.ctx}, nil
}

// Destroy is cuGraphDestroy.
func (g *Graph) Destroy() error {
	if err := g.live("Graph.Destroy"); err != nil {
		return err
	}
	if r := C.kiln_graph_destroy(g.ctx.handle, g.handle); r != 0 {
		return newError("cuGraphDestroy", r, "")
	}
	g.handle = nil
	return nil
}

// live checks that g and its context can be used.
func (g *GraphExec) live(what string) error {
	if g == nil || g.handle == nil {
		return destroyed(what, "GraphExec")
	}
	return g.ctx.live(what)
}

// Launch is cuGraphLaunch; s nil is the legacy default stream.
func (g *GraphExec) Launch(s *Stream) error {
	if err := g.live("GraphExec.Launch"); err != nil {
		return err
	}
	sh, err := g.ctx.streamOf(s, "GraphExec.Launch")
	if err != nil {
		return err
	}
	if r := C.kiln_graph_launch(g.ctx.handle, g.handle, sh); r != 0 {
		return newError("cuGraphLaunch", r, "")
	}
	return nil
}

// Destroy is cuGraphExecDestroy.
func (g *GraphExec) Destroy() error {
	if err := g.live("GraphExec.Destroy"); err != nil {
		return err
	}
	if r := C.kiln_graph_exec_destroy(g.ctx.handle, g.handle); r != 0 {
		return newError("cuGraphExecDestroy", r, "")
	}
	g.handle = nil
	return nil
}

// HasTensorMaps reports whether the loaded driver has cuTensorMapEncodeTiled
// (false before Load succeeds).
func HasTensorMaps() bool {
	return Load() == nil && C.kiln_has_tensor_map() != 0
}

// EncodeTensorMapTiled is cuTensorMapEncodeTiled: it checks spec
// (TensorMapSpec.Validate) and returns the driver's encoding, with no
// interleave and zero fill out of bounds. It needs Load, not a context.
func EncodeTensorMapTiled(spec *TensorMapSpec) (TensorMap, error) {
	if err := spec.Validate(); err != nil {
		return TensorMap{}, err
	}
	if err := Load(); err != nil {
		return TensorMap{}, err
	}
	if C.kiln_has_tensor_map() == 0 {
		return TensorMap{}, fmt.Errorf("cuda: the driver library %s has no cuTensorMapEncodeTiled (CUDA 12.0 or newer has it)", libPath)
	}
	var dims, strides [5]C.ulonglong
	var box, elem [5]C.uint
	for i := range 5 {
		dims[i] = C.ulonglong(spec.Dims[i])
		box[i] = C.uint(spec.Box[i])
		e := spec.ElementStrides[i]
		if e == 0 {
			e = 1
		}
		elem[i] = C.uint(e)
	}
	for i := range 4 {
		strides[i] = C.ulonglong(spec.Strides[i])
	}
	var out TensorMap
	r := C.kiln_tensor_map_encode_tiled((*C.uchar)(unsafe.Pointer(&out[0])), C.int(spec.DataType), C.uint(spec.Rank),
		C.kiln_devptr(spec.Global), &dims[0], &strides[0], &box[0], &elem[0], C.int(spec.Swizzle), C.int(spec.L2Promotion))
	if r != 0 {
		return TensorMap{}, newError("cuTensorMapEncodeTiled", r, fmt.Sprintf("rank %d, dims %v, box %v", spec.Rank,
			spec.Dims[:spec.Rank], spec.Box[:spec.Rank]))
	}
	return out, nil
}
