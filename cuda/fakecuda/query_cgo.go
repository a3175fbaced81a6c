//go:build cgo

package fakecuda

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

static void *fc_open_loaded(const char *path) { return dlopen(path, RTLD_NOW | RTLD_NOLOAD); }
static const char *fc_dlerror(void) { return dlerror(); }
static void *fc_sym(void *h, const char *name) { return dlsym(h, name); }

static long long fc_call_ll(void *f) { return ((long long (*)(void))f)(); }
static long long fc_call_ll_str(void *f, const char *s) { return ((long long (*)(const char *))f)(s); }
static long long fc_call_ll_int(void *f, int v) { return ((long long (*)(int))f)(v); }
static void fc_call_void(void *f) { ((void (*)(void))f)(); }
static int fc_call_int_ptr(void *f, void *p) { return ((int (*)(void *))f)(p); }
static int fc_call_last_launch(void *f, char *name, size_t name_size, unsigned *dims, unsigned char *args,
                               size_t args_cap, size_t *args_size) {
	return ((int (*)(char *, size_t, unsigned *, unsigned char *, size_t, size_t *))f)(name, name_size, dims, args,
	                                                                                     args_cap, args_size);
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Lib is the fake driver library as loaded in this process.
type Lib struct {
	path                                                    string
	launchCount, graphLaunchCount, calls, reset, lastLaunch unsafe.Pointer
	allocations, setCurrent                                 unsafe.Pointer
}

// Launch is a recorded kernel launch.
type Launch struct {
	Kernel      string
	Grid, Block [3]uint32
	SharedBytes uint32
	// Args is the parameter buffer passed through cuLaunchKernel's `extra`.
	Args []byte
}

// Open finds the fake library at path among the libraries already loaded in
// this process (it does not load it: counters of a fresh copy would say
// nothing about the one the cuda package uses).
func Open(path string) (*Lib, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	h := C.fc_open_loaded(cpath)
	if h == nil {
		msg := "not loaded"
		if e := C.fc_dlerror(); e != nil {
			msg = C.GoString(e)
		}
		return nil, fmt.Errorf("fakecuda: %s is not loaded in this process (%s); call cuda.Load first", path, msg)
	}
	l := &Lib{path: path}
	for _, s := range []struct {
		name string
		dst  *unsafe.Pointer
	}{
		{"fakecuda_launch_count", &l.launchCount},
		{"fakecuda_graph_launch_count", &l.graphLaunchCount},
		{"fakecuda_calls", &l.calls},
		{"fakecuda_reset_counters", &l.reset},
		{"fakecuda_last_launch", &l.lastLaunch},
		{"fakecuda_allocations", &l.allocations},
		{"cuCtxSetCurrent", &l.setCurrent},
	} {
		cname := C.CString(s.name)
		*s.dst = C.fc_sym(h, cname)
		C.free(unsafe.Pointer(cname))
		if *s.dst == nil {
			return nil, fmt.Errorf("fakecuda: %s has no %s; is it the fake driver?", path, s.name)
		}
	}
	return l, nil
}

// LaunchCount is the number of kernels launched directly, plus the launch
// nodes of launched graphs.
func (l *Lib) LaunchCount() int64 { return int64(C.fc_call_ll(l.launchCount)) }

// GraphLaunchCount is the number of cuGraphLaunch calls that succeeded.
func (l *Lib) GraphLaunchCount() int64 { return int64(C.fc_call_ll(l.graphLaunchCount)) }

// Calls is the number of calls of the named entry point (for example
// "cuCtxSetCurrent"), failed ones included.
func (l *Lib) Calls(entryPoint string) int64 {
	c := C.CString(entryPoint)
	defer C.free(unsafe.Pointer(c))
	return int64(C.fc_call_ll_str(l.calls, c))
}

// ResetCounters zeroes the call counters, the launch counts and the last launch.
func (l *Lib) ResetCounters() { C.fc_call_void(l.reset) }

// LastLaunch is the last direct launch; ok is false when there was none.
func (l *Lib) LastLaunch() (launch Launch, ok bool) {
	var name [256]C.char
	var dims [7]C.uint
	args := make([]byte, 32768)
	var n C.size_t
	if C.fc_call_last_launch(l.lastLaunch, &name[0], C.size_t(len(name)), &dims[0],
		(*C.uchar)(unsafe.Pointer(&args[0])), C.size_t(len(args)), &n) == 0 {
		return Launch{}, false
	}
	return Launch{
		Kernel:      C.GoString(&name[0]),
		Grid:        [3]uint32{uint32(dims[0]), uint32(dims[1]), uint32(dims[2])},
		Block:       [3]uint32{uint32(dims[3]), uint32(dims[4]), uint32(dims[5])},
		SharedBytes: uint32(dims[6]),
		Args:        args[:int(n)],
	}, true
}

// DeviceAllocations is the number of live device allocations, all devices.
func (l *Lib) DeviceAllocations() int64 { return int64(C.fc_call_ll_int(l.allocations, 1)) }

// SetCurrentContext calls the fake driver's cuCtxSetCurrent directly on the
// calling OS thread, as other code in the process (NCCL, the CUDA runtime, a
// caller's own cgo) may, and returns its CUresult. ctx is a CUcontext handle;
// nil makes no context current. The caller must hold its OS thread
// (runtime.LockOSThread) for the change to concern the calls that follow.
func (l *Lib) SetCurrentContext(ctx unsafe.Pointer) int {
	return int(C.fc_call_int_ptr(l.setCurrent, ctx))
}

// HostAllocations is the number of live pinned host allocations.
func (l *Lib) HostAllocations() int64 { return int64(C.fc_call_ll_int(l.allocations, 2)) }
