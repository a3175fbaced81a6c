package gpu

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// ncclDriverLibrary is the name the CUDA runtime inside NCCL opens the
// driver by. kiln's driver is chosen by KILN_CUDA_LIBRARY; when that names
// another library (a test's fake driver), NCCL and kiln would see different
// devices, so NewNCCLGroup refuses.
const ncclDriverLibrary = "libcuda.so.1"

// ncclMu serialises the collectives of every NCCLGroup and their Close.
// NCCL needs each communicator's collectives issued in one order on every
// rank, and an all-reduce holds several backends' op locks at once: one
// group at a time means two groups over the same backends in another order
// cannot deadlock.
var ncclMu sync.Mutex

// NCCLGroup is an NCCL communicator over CUDA backends on distinct devices,
// one rank per backend, for summing tensors across them (tensor
// parallelism). It is safe for concurrent use; collectives run one at a time.
type NCCLGroup struct {
	backends []*Backend
	comms    []*cuda.NCCLComm // comms[i] is backends[i]'s rank; nil after Close
	// broken is set when an all-reduce failed on kiln's side after some
	// ranks' calls were queued in the group: those ranks may wait forever
	// for the others, so the group refuses further work and Close does not
	// wait for the streams.
	broken error
}

// NewNCCLGroup makes a communicator with rank i on backends[i]'s device
// (ncclCommInitAll). Each backend must be open and on its own device: NCCL
// needs one rank per device. An empty list, a nil or closed backend, or two
// backends on one device are errors matching op.ErrInvalidArgument. Without
// NCCL (no cgo, no libnccl.so.2: see cuda.LoadNCCL) the error matches
// cuda.ErrNoCGO or cuda.ErrNoNCCL; NCCL's own failures are *cuda.NCCLError.
// Close the group before the backends.
func NewNCCLGroup(backends []*Backend) (*NCCLGroup, error) {
	const name = "nccl group"
	if len(backends) == 0 {
		return nil, &op.ArgError{Op: name, Arg: "backends", Msg: "the list is empty"}
	}
	devices := make([]cuda.Device, len(backends))
	for i, b := range backends {
		arg := fmt.Sprintf("backends[%d]", i)
		if b == nil {
			return nil, &op.ArgError{Op: name, Arg: arg, Msg: "nil backend"}
		}
		b.closeMu.Lock()
		closed := b.closed
		b.closeMu.Unlock()
		if closed {
			return nil, &op.ArgError{Op: name, Arg: arg, Msg: fmt.Sprintf("%s is closed", b.name)}
		}
		for j := range i {
			if backends[j].ordinal == b.ordinal {
				return nil, &op.ArgError{Op: name, Arg: arg,
					Msg: fmt.Sprintf("%s is on the same device as backends[%d]; NCCL needs one rank per device", b.name, j)}
			}
		}
		devices[i] = b.dev
	}
	if p := cuda.LibraryPath(); p != ncclDriverLibrary {
		return nil, fmt.Errorf("%s: kiln uses the CUDA driver %s (KILN_CUDA_LIBRARY), but NCCL opens %s itself; they could disagree about devices, so NCCL is not used",
			name, p, ncclDriverLibrary)
	}
	comms, err := cuda.NCCLCommInitAll(devices)
	if err != nil {
		return nil, fmt.Errorf("%s over %s: %w", name, backendNames(backends), err)
	}
	return &NCCLGroup{backends: slices.Clone(backends), comms: comms}, nil
}

func backendNames(backends []*Backend) []string {
	names := make([]string, len(backends))
	for i, b := range backends {
		names[i] = b.name
	}
	return names
}

// AllReduceSum replaces every ts[i] by the element-wise sum of all of them,
// in place. ts[i] is a tensor of the group's i-th backend; all are
// contiguous, of one shape and of dtype F32, F16 or BF16. The sum is queued
// on each backend's stream after the work queued there before the call, and
// later work there sees the result: no Sync is needed. (NCCL's reduction
// order is its own, so float results may differ in the last bits from a
// sum in shard order.) Bad arguments are errors matching
// op.ErrInvalidArgument, checked before anything is queued.
func (g *NCCLGroup) AllReduceSum(ts []tensor.Tensor) error {
	const name = "nccl all-reduce"
	ncclMu.Lock()
	defer ncclMu.Unlock()
	if g == nil || g.comms == nil {
		return fmt.Errorf("%s: %w: the group is closed", name, op.ErrClosed)
	}
	if g.broken != nil {
		return g.broken
	}
	if len(ts) != len(g.backends) {
		return &op.ArgError{Op: name, Arg: "ts", Msg: fmt.Sprintf("%d tensors for a group of %d backends", len(ts), len(g.backends))}
	}
	var dt cuda.NCCLDataType
	switch ts[0].DType() {
	case tensor.F32:
		dt = cuda.NCCLFloat32
	case tensor.F16:
		dt = cuda.NCCLFloat16
	case tensor.BF16:
		dt = cuda.NCCLBfloat16
	default:
		if ts[0].IsZero() {
			return &op.ArgError{Op: name, Arg: "ts[0]", Msg: "missing tensor"}
		}
		return &op.ArgError{Op: name, Arg: "ts[0]", Msg: fmt.Sprintf("dtype %v: expected F32, F16 or BF16", ts[0].DType())}
	}
	ptrs := make([]cuda.DevicePtr, len(ts))
	for i, t := range ts {
		b, arg := g.backends[i], fmt.Sprintf("ts[%d]", i)
		buf, err := b.buffer(name, arg, t)
		if err != nil {
			return err
		}
		if t.DType() != ts[0].DType() || !slices.Equal(t.Shape(), ts[0].Shape()) {
			return &op.ArgError{Op: name, Arg: arg, Msg: fmt.Sprintf("%v: expected the dtype and shape of ts[0], %v", t, ts[0])}
		}
		if !t.IsContiguous() {
			return &op.ArgError{Op: name, Arg: arg, Msg: fmt.Sprintf("layout %v is not contiguous", t)}
		}
		if b.capturing.Load() {
			return fmt.Errorf("%s: %s: %w", b.name, name, errCapturing)
		}
		ptrs[i] = b.ptr(buf, t)
	}
	count := int64(ts[0].NumElems())
	if count == 0 {
		return nil
	}
	// Every backend's op lock, in index order (ncclMu keeps any other
	// multi-lock holder out), so that no op slips between the ranks' calls.
	for _, b := range g.backends {
		b.opMu.Lock()
		defer b.opMu.Unlock()
	}
	for _, b := range g.backends {
		if b.fault != nil {
			return b.fault
		}
	}
	// All ranks' calls in one group: from one thread, each rank's call would
	// otherwise wait for the others'. When a call in the group fails, NCCL
	// launches none of the group's work at ncclGroupEnd, so no rank is left
	// waiting on the others.
	// NCCL keeps the group depth per OS thread: the whole group stays on
	// this goroutine's thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cuda.NCCLGroupStart(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var errs []error
	for i, b := range g.backends {
		if err := g.comms[i].AllReduceSum(ptrs[i], ptrs[i], count, dt, b.stream); err != nil {
			errs = append(errs, b.noteFault(name, err))
			if i > 0 {
				// Ranks 0..i-1 are queued and will wait for rank i: the
				// devices cannot be trusted to finish. Every backend of the
				// group gets the fault, sticky.
				g.broken = fmt.Errorf("%s over %s: %w: rank %d failed after %d ranks were queued (%w); the group is unusable",
					name, backendNames(g.backends), op.ErrDeviceFault, i, i, err)
				for _, gb := range g.backends {
					if gb.fault == nil {
						gb.fault = g.broken
					}
				}
			}
			break
		}
	}
	if err := cuda.NCCLGroupEnd(); err != nil {
		errs = append(errs, fmt.Errorf("%s over %s: %w: %w", name, backendNames(g.backends), op.ErrDeviceFault, err))
	}
	return errors.Join(errs...)
}

// Close waits for the group's queued work on each backend still open, then
// destroys the communicators. A second Close does nothing.
func (g *NCCLGroup) Close() error {
	ncclMu.Lock()
	defer ncclMu.Unlock()
	if g == nil || g.comms == nil {
		return nil
	}
	var errs []error
	for i, b := range g.backends {
		b.closeMu.Lock()
		closed := b.closed
		b.closeMu.Unlock()
		if !closed && g.broken == nil {
			b.opMu.Lock()
			err := b.stream.Synchronize()
			b.opMu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("nccl group close: %s: %w", b.name, err))
			}
		}
		if err := g.comms[i].Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("nccl group close: %s: %w", b.name, err))
		}
	}
	g.comms = nil
	return errors.Join(errs...)
}
