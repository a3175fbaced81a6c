//go:build cgo

package cuda

/*
#include <stdlib.h>
#include "shim.h"
#include "nccl_shim.h"
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"
)

// defaultNCCLLibrary is NCCL's soname, as its packages install it.
const defaultNCCLLibrary = "libnccl.so.2"

var (
	ncclOnce     sync.Once
	ncclLoadDone atomic.Bool
	ncclLoadErr  error
	ncclPath     string
)

func ncclPathFromEnv() string {
	if p := os.Getenv("KILN_NCCL_LIBRARY"); p != "" {
		return p
	}
	return defaultNCCLLibrary
}

// LoadNCCL opens the NCCL library (KILN_NCCL_LIBRARY, else libnccl.so.2) and
// binds its entry points, once per process; later calls return the first
// result. Failure matches ErrNoNCCL and names the path tried. It does not
// need the CUDA driver to be loaded: NCCL reaches the driver itself, through
// the CUDA runtime it carries, which opens libcuda.so.1 by that name.
func LoadNCCL() error {
	ncclOnce.Do(func() {
		ncclPath = ncclPathFromEnv()
		cpath := C.CString(ncclPath)
		defer C.free(unsafe.Pointer(cpath))
		var msg [1024]C.char
		switch C.kiln_nccl_load(cpath, &msg[0], C.size_t(len(msg))) {
		case C.KILN_NCCL_LOAD_OK:
		case C.KILN_NCCL_LOAD_DLOPEN_FAILED:
			ncclLoadErr = fmt.Errorf("%w: dlopen %s failed: %s (install NCCL, or set KILN_NCCL_LIBRARY to its libnccl.so.2)",
				ErrNoNCCL, ncclPath, C.GoString(&msg[0]))
		default:
			ncclLoadErr = fmt.Errorf("%w: %s has no entry point %s (NCCL is too old, or this is not the NCCL library)",
				ErrNoNCCL, ncclPath, C.GoString(&msg[0]))
		}
		ncclLoadDone.Store(true)
	})
	return ncclLoadErr
}

// NCCLLibraryPath is the NCCL library path LoadNCCL tried (or opened).
// Before LoadNCCL it is the path LoadNCCL would try.
func NCCLLibraryPath() string {
	if ncclLoadDone.Load() {
		return ncclPath
	}
	return ncclPathFromEnv()
}

// newNCCLError turns a failing ncclResult_t into an *NCCLError with NCCL's
// own text for it.
func newNCCLError(call string, r C.int, detail string) error {
	e := &NCCLError{Call: call, Result: NCCLResult(r), Detail: detail}
	if s := C.kiln_nccl_error_string(r); s != nil {
		e.Message = C.GoString(s)
	}
	return e
}

// NCCLVersion is ncclGetVersion: the library's version code (see
// NCCLVersionString). It calls LoadNCCL first.
func NCCLVersion() (int, error) {
	if err := LoadNCCL(); err != nil {
		return 0, err
	}
	var v C.int
	if r := C.kiln_nccl_get_version(&v); r != 0 {
		return 0, newNCCLError("ncclGetVersion", r, "")
	}
	return int(v), nil
}

// NCCLCommInitAll is ncclCommInitAll: a single-process communicator group
// with one rank per device, rank i on devices[i]. Each device may appear
// once. Destroy every communicator when done. It checks the list, then
// calls LoadNCCL.
func NCCLCommInitAll(devices []Device) ([]*NCCLComm, error) {
	if err := checkNCCLDevices(devices); err != nil {
		return nil, err
	}
	if err := LoadNCCL(); err != nil {
		return nil, err
	}
	n := len(devices)
	// C memory: NCCL writes its handles here, and reads the ordinals.
	ords := (*C.int)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof(C.int(0)))))
	defer C.free(unsafe.Pointer(ords))
	handles := (*unsafe.Pointer)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(unsafe.Pointer(nil)))))
	defer C.free(unsafe.Pointer(handles))
	ordSlice := unsafe.Slice(ords, n)
	for i, d := range devices {
		ordSlice[i] = C.int(d)
	}
	if r := C.kiln_nccl_comm_init_all(handles, C.int(n), ords); r != 0 {
		return nil, newNCCLError("ncclCommInitAll", r, fmt.Sprintf("devices %v", devices))
	}
	comms := make([]*NCCLComm, n)
	for i, h := range unsafe.Slice(handles, n) {
		comms[i] = &NCCLComm{handle: h, dev: devices[i], rank: i}
	}
	return comms, nil
}

// Destroy is ncclCommDestroy. The communicator must not be used afterwards;
// its methods then return ErrDestroyed.
func (c *NCCLComm) Destroy() error {
	if c == nil || c.handle == nil {
		return destroyed("NCCLComm.Destroy", "NCCLComm")
	}
	if r := C.kiln_nccl_comm_destroy(c.handle); r != 0 {
		return newNCCLError("ncclCommDestroy", r, fmt.Sprintf("rank %d, device %d", c.rank, int(c.dev)))
	}
	c.handle = nil
	return nil
}

// NCCLGroupStart is ncclGroupStart: the collectives issued until
// NCCLGroupEnd are launched together, which one thread driving several ranks
// needs (each rank's call would otherwise wait for the others).
func NCCLGroupStart() error {
	if err := LoadNCCL(); err != nil {
		return err
	}
	if r := C.kiln_nccl_group_start(); r != 0 {
		return newNCCLError("ncclGroupStart", r, "")
	}
	return nil
}

// NCCLGroupEnd is ncclGroupEnd: it launches the group's collectives.
func NCCLGroupEnd() error {
	if err := LoadNCCL(); err != nil {
		return err
	}
	if r := C.kiln_nccl_group_end(); r != 0 {
		return newNCCLError("ncclGroupEnd", r, "")
	}
	return nil
}

// AllReduceSum is ncclAllReduce with ncclSum: count elements of type dt at
// send, summed over all ranks, land at recv (send == recv: in place). It is
// queued on s, a stream of this rank's device, with that stream's context
// made current for the call. With more than one rank driven from one
// thread, issue every rank's call between NCCLGroupStart and NCCLGroupEnd.
func (c *NCCLComm) AllReduceSum(send, recv DevicePtr, count int64, dt NCCLDataType, s *Stream) error {
	if c == nil || c.handle == nil {
		return destroyed("NCCLComm.AllReduceSum", "NCCLComm")
	}
	if err := s.live("NCCLComm.AllReduceSum"); err != nil {
		return err
	}
	if s.ctx.dev != c.dev {
		return fmt.Errorf("cuda: NCCLComm.AllReduceSum: the stream belongs to device %d, the communicator's rank %d to device %d",
			int(s.ctx.dev), c.rank, int(c.dev))
	}
	if err := checkSize("NCCLComm.AllReduceSum", "count", count); err != nil {
		return err
	}
	if err := checkNCCLDataType(dt); err != nil {
		return err
	}
	r := C.kiln_nccl_all_reduce_sum(s.ctx.handle, C.ulonglong(send), C.ulonglong(recv),
		C.size_t(count), C.int(dt), c.handle, s.handle)
	if r == 0 {
		return nil
	}
	detail := fmt.Sprintf("rank %d, device %d, %d elements of %v", c.rank, int(c.dev), count, dt)
	if r&C.KILN_CTX_FAILED != 0 {
		return newError("ncclAllReduce", r, detail)
	}
	return newNCCLError("ncclAllReduce", r, detail)
}
