// Package gpu is the CUDA backend: device memory through the caching
// allocator, one stream per backend, and the ops launched as kiln's own
// kernels (package kernels).
//
// Each Backend retains the device's primary context, creates its own
// non-blocking stream and its own caching allocator (runtime/pool) over
// cuMemAlloc. Ops are queued on the stream and return at once. Host transfers
// go through pinned staging buffers with asynchronous copies on the same
// stream, so they are ordered with the ops. Faults that only the device can
// see are reported by the next Sync or Download: a failed launch or an
// illegal address (the CUDA error, matching op.ErrDeviceFault), and data
// faults the kernels record in a small device "error word" (for example an
// embedding id out of range).
//
// Two Backends opened on one device share the primary context (and so the
// device memory), but not streams, cached memory or loaded modules.
package gpu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/kernels"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/pool"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Options configure Open.
type Options struct {
	// Logger receives diagnostics (module loads, PTX fallbacks). nil discards.
	Logger *slog.Logger
	// MemoryLimitBytes caps the allocator (in use + cached); 0: none.
	MemoryLimitBytes int64
	// Kernels is "auto" or "simple"; empty means $KILN_KERNELS, else "auto".
	Kernels string
}

// minComputeMajor is the oldest architecture kiln's compute_80 PTX runs on.
const minComputeMajor = 8

// stagingChunkBytes is the size of each of the two pinned staging buffers
// used for uploads and downloads: large enough to reach full PCIe bandwidth,
// small enough to allocate on every open.
const stagingChunkBytes = 8 << 20

// streamID is the pool stream of every block: each Backend has one stream
// and its own pool, so stream order alone makes reuse safe.
const streamID pool.StreamID = 1

// Backend is the CUDA backend for one device. See the package doc and
// backend.Backend for the contract.
type Backend struct {
	name    string // "cuda:0"
	desc    string
	ordinal int
	dev     cuda.Device
	log     *slog.Logger

	ctx    *cuda.Context
	stream *cuda.Stream
	kern   *kernels.Set
	mem    *pool.Pool[cuda.DevicePtr]

	// opMu serialises ops, transfers and Sync: they share the staging
	// buffers, the kernel argument buffer and the fault state.
	opMu     sync.Mutex
	staging  [2]*cuda.HostBuffer
	stageEv  [2]*cuda.Event // recorded after the copy that last used staging[i]
	syncEv   *cuda.Event
	errWord  cuda.DevicePtr   // kernels.ErrorWordBytes of device memory
	errHost  *cuda.HostBuffer // pinned landing place for reading errWord
	mayFault bool             // a kernel that can write errWord ran since the last check
	fault    error            // the first asynchronous fault seen; sticky

	// capturing is set while CaptureGraph records the stream: calls that
	// cannot be recorded (transfers, Sync, Alloc, Free) fail meanwhile.
	capturing atomic.Bool
	graphs    map[*graph]struct{} // live graphs, destroyed by Close; guarded by closeMu

	peersTried map[*Backend]bool // peer access attempted, by peer; guarded by peerMu
	// peerEv is the event CopyFromPeer records on this backend's stream
	// (made on first use, guarded by opMu). One per backend suffices: a
	// stream's wait on an event waits for the record most recent at the
	// time of the wait, so re-recording it later does not disturb waits
	// already queued.
	peerEv *cuda.Event

	probeOut    cuda.DevicePtr // ReadProbe's per-block output, made on first use
	probeBlocks int

	// closeMu guards closed, live and each buffer's freed flag.
	closeMu sync.Mutex
	closed  bool
	live    map[*deviceBuffer]struct{} // allocated and not yet freed
}

// deviceBuffer is a tensor.Buffer in device memory.
type deviceBuffer struct {
	owner *Backend
	block *pool.Block[cuda.DevicePtr]
	size  int64
	freed bool // guarded by owner.closeMu; set by Free and by Close
}

func (d *deviceBuffer) SizeBytes() int64 { return d.size }

// Open opens CUDA device ordinal. Any reason the device cannot be used (no
// cgo, no driver library, cuInit failing, no such device, a driver older than
// the PTX needs, a GPU older than compute capability 8.0) is an error
// matching op.ErrNoDevice that says which. Nothing stays allocated after an
// error.
func Open(ctx context.Context, ordinal int, opts Options) (b *Backend, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := fmt.Sprintf("cuda:%d", ordinal)
	noDevice := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", name, op.ErrNoDevice, fmt.Sprintf(format, args...))
	}
	if err := cuda.Init(); err != nil {
		return nil, noDevice("%v", err)
	}
	count, err := cuda.DeviceCount()
	if err != nil {
		return nil, noDevice("%v", err)
	}
	if ordinal < 0 || ordinal >= count {
		return nil, noDevice("the driver reports %d CUDA device(s)", count)
	}
	version, err := cuda.DriverVersion()
	if err != nil {
		return nil, noDevice("%v", err)
	}
	if version < kernels.MinDriverVersion {
		return nil, noDevice("the driver supports CUDA %s, kiln's PTX needs CUDA %s or newer (driver 550+)",
			cudaVersionString(version), cudaVersionString(kernels.MinDriverVersion))
	}
	dev, err := cuda.GetDevice(ordinal)
	if err != nil {
		return nil, noDevice("%v", err)
	}
	major, minor, err := dev.ComputeCapability()
	if err != nil {
		return nil, noDevice("%v", err)
	}
	devName, err := dev.Name()
	if err != nil {
		return nil, noDevice("%v", err)
	}
	if major < minComputeMajor {
		return nil, noDevice("%s has compute capability %d.%d; kiln needs %d.0 or newer", devName, major, minor, minComputeMajor)
	}
	totalBytes, err := dev.TotalMemBytes()
	if err != nil {
		return nil, noDevice("%v", err)
	}
	variant, err := kernelVariant(opts.Kernels)
	if err != nil {
		return nil, err
	}

	b = &Backend{
		name:    name,
		ordinal: ordinal,
		dev:     dev,
		log:     log.With("device", name),
		desc: fmt.Sprintf("%s (%s, compute capability %d.%d, %.1f GiB, CUDA driver %s, %s kernels)",
			devName, name, major, minor, float64(totalBytes)/(1<<30), cudaVersionString(version), variant),
	}
	// On any error below, release what was acquired so far. (The returns
	// below set the named result b to nil, so the deferred call uses opened.)
	opened := b
	defer func() {
		if err != nil {
			// Work queued on the stream (the error word's memset) must end
			// before the memory it touches is freed.
			if opened.stream != nil {
				_ = opened.stream.Synchronize()
			}
			_ = opened.release()
		}
	}()
	if b.ctx, err = dev.RetainPrimaryContext(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if b.stream, err = b.ctx.NewStream(true); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if b.syncEv, err = b.ctx.NewEvent(false); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for i := range b.staging {
		if b.staging[i], err = b.ctx.MemHostAlloc(stagingChunkBytes); err != nil {
			return nil, fmt.Errorf("%s: pinned staging buffer: %w", name, err)
		}
		if b.stageEv[i], err = b.ctx.NewEvent(false); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		// Recorded once so that the first wait on it returns at once.
		if err = b.stageEv[i].Record(b.stream); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if b.errWord, err = b.ctx.MemAlloc(kernels.ErrorWordBytes); err != nil {
		return nil, fmt.Errorf("%s: device error word: %w", name, err)
	}
	// Zeroed on the backend's own stream: a synchronous cuMemsetD8 would be
	// queued on the legacy default stream, which the non-blocking stream
	// does not wait for, so a kernel could record a fault in the word before
	// the memset cleared it.
	if err = b.ctx.MemsetD8Async(b.errWord, 0, kernels.ErrorWordBytes, b.stream); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if b.errHost, err = b.ctx.MemHostAlloc(kernels.ErrorWordBytes); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if b.kern, err = kernels.Open(b.ctx, kernels.Options{Variant: variant, Logger: b.log}); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b.mem = pool.New[cuda.DevicePtr](deviceAllocator{b.ctx}, pool.Options{
		LimitBytes: opts.MemoryLimitBytes, Logger: b.log, Name: name,
	})
	b.log.Debug("opened", "description", b.desc)
	return b, nil
}

// kernelVariant resolves Options.Kernels and $KILN_KERNELS.
func kernelVariant(s string) (kernels.Variant, error) {
	if s == "" {
		s = os.Getenv("KILN_KERNELS")
	}
	switch s {
	case "", "auto":
		return kernels.VariantAuto, nil
	case "simple":
		return kernels.VariantSimple, nil
	}
	return 0, fmt.Errorf("gpu: kernel set %q: expected auto or simple (Options.Kernels or KILN_KERNELS): %w", s, op.ErrInvalidArgument)
}

func cudaVersionString(v int) string {
	return fmt.Sprintf("%d.%d", v/1000, v%1000/10)
}

// deviceAllocator is the pool's Allocator over cuMemAlloc/cuMemFree.
type deviceAllocator struct{ ctx *cuda.Context }

func (a deviceAllocator) Alloc(sizeBytes int64) (cuda.DevicePtr, error) {
	p, err := a.ctx.MemAlloc(sizeBytes)
	if errors.Is(err, cuda.ErrOutOfMemory) {
		return 0, fmt.Errorf("%w: %w", op.ErrOutOfMemory, err)
	}
	return p, err
}

func (a deviceAllocator) Free(p cuda.DevicePtr) error {
	// The pool frees cached blocks that queued work may still touch only in
	// ReleaseCache, Close and on out-of-memory; make sure that work is done.
	if err := a.ctx.Synchronize(); err != nil {
		return err
	}
	return a.ctx.MemFree(p)
}

// Name is "cuda:N".
func (b *Backend) Name() string { return b.name }

// Description names the device, its compute capability, memory, driver and kernel set.
func (b *Backend) Description() string { return b.desc }

// Context is the retained primary context (for benchmarks and later
// subsystems that launch their own kernels on this device).
func (b *Backend) Context() *cuda.Context { return b.ctx }

// Stream is the backend's stream.
func (b *Backend) Stream() *cuda.Stream { return b.stream }

// Kernels is the backend's kernel set.
func (b *Backend) Kernels() *kernels.Set { return b.kern }

// Close waits for queued work, then releases the stream, the kernels, all
// memory (tensors not yet freed included: they become unusable) and the
// context. A second Close does nothing.
func (b *Backend) Close() error {
	b.closeMu.Lock()
	if b.closed {
		b.closeMu.Unlock()
		return nil
	}
	b.closed = true
	live := b.live
	b.live = nil
	for buf := range live {
		buf.freed = true
	}
	graphs := b.graphs
	b.graphs = nil
	b.closeMu.Unlock()
	b.opMu.Lock()
	defer b.opMu.Unlock()
	var errs []error
	if err := b.stream.Synchronize(); err != nil {
		errs = append(errs, err)
	}
	for g := range graphs {
		errs = append(errs, g.destroy())
	}
	if len(live) > 0 {
		b.log.Debug("closing with live tensors; freeing them", "count", len(live))
	}
	for buf := range live {
		if err := b.mem.Free(buf.block, streamID, nil); err != nil {
			errs = append(errs, err)
		}
	}
	if err := b.mem.Close(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, b.release())
	return errors.Join(errs...)
}

// release frees everything Open acquired, in reverse order, tolerating
// fields that were never set.
func (b *Backend) release() error {
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if b.kern != nil {
		keep(b.kern.Close())
	}
	if b.errHost != nil {
		keep(b.errHost.Free())
	}
	if b.errWord != 0 {
		keep(b.ctx.MemFree(b.errWord))
	}
	if b.probeOut != 0 {
		keep(b.ctx.MemFree(b.probeOut))
	}
	for i := range b.staging {
		if b.stageEv[i] != nil {
			keep(b.stageEv[i].Destroy())
		}
		if b.staging[i] != nil {
			keep(b.staging[i].Free())
		}
	}
	if b.syncEv != nil {
		keep(b.syncEv.Destroy())
	}
	if b.peerEv != nil {
		keep(b.peerEv.Destroy())
	}
	if b.stream != nil {
		keep(b.stream.Destroy())
	}
	if b.ctx != nil {
		keep(b.ctx.Release())
	}
	return errors.Join(errs...)
}

func (b *Backend) checkOpen() error {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	if b.closed {
		return fmt.Errorf("%s: %w", b.name, op.ErrClosed)
	}
	return nil
}

// Alloc returns a new contiguous tensor in device memory.
func (b *Backend) Alloc(dt tensor.DType, shape ...int) (tensor.Tensor, error) {
	if err := b.checkOpen(); err != nil {
		return tensor.Tensor{}, err
	}
	if b.capturing.Load() {
		return tensor.Tensor{}, fmt.Errorf("%s: alloc: %w", b.name, errCapturing)
	}
	size, err := tensor.SizeBytes(dt, shape...)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("%s: alloc: %w: %v", b.name, op.ErrInvalidArgument, err)
	}
	blk, err := b.mem.Alloc(size, streamID)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("%s: alloc %v %v: %w", b.name, dt, shape, err)
	}
	buf := &deviceBuffer{owner: b, block: blk, size: size}
	t, err := tensor.New(buf, dt, shape...)
	if err == nil {
		b.closeMu.Lock()
		if b.closed {
			err = fmt.Errorf("%s: alloc: %w", b.name, op.ErrClosed)
		} else {
			if b.live == nil {
				b.live = map[*deviceBuffer]struct{}{}
			}
			b.live[buf] = struct{}{}
		}
		b.closeMu.Unlock()
	}
	if err != nil {
		_ = b.mem.Free(blk, streamID, nil)
		return tensor.Tensor{}, err
	}
	return t, nil
}

// Free returns t's buffer to the allocator (stream-ordered: queued work that
// uses it finishes first, and only later work on the stream can reuse it).
func (b *Backend) Free(t tensor.Tensor) error {
	buf, err := b.buffer("free", "t", t)
	if err != nil {
		return err
	}
	if b.capturing.Load() {
		return fmt.Errorf("%s: free: %w", b.name, errCapturing)
	}
	b.closeMu.Lock()
	if buf.freed { // freed by a concurrent Free or Close since buffer() looked
		b.closeMu.Unlock()
		return fmt.Errorf("free: t: %w: the tensor's buffer was freed", op.ErrClosed)
	}
	buf.freed = true
	delete(b.live, buf)
	b.closeMu.Unlock()
	return b.mem.Free(buf.block, streamID, nil)
}

// buffer returns t's device buffer, checking that it belongs to b, is
// still allocated and b is open.
func (b *Backend) buffer(opName, arg string, t tensor.Tensor) (*deviceBuffer, error) {
	buf, ok := t.Buffer().(*deviceBuffer)
	if !ok || buf.owner != b {
		if t.IsZero() {
			return nil, &op.ArgError{Op: opName, Arg: arg, Msg: "missing tensor"}
		}
		return nil, fmt.Errorf("%s: %s: %w (%s)", opName, arg, op.ErrForeignTensor, b.name)
	}
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("%s: %s: %w", opName, b.name, op.ErrClosed)
	}
	if buf.freed {
		return nil, fmt.Errorf("%s: %s: %w: the tensor's buffer was freed", opName, arg, op.ErrClosed)
	}
	return buf, nil
}

// ptr is the device address of t's first element.
func (b *Backend) ptr(buf *deviceBuffer, t tensor.Tensor) cuda.DevicePtr {
	return buf.block.Mem + cuda.DevicePtr(t.ByteOffset())
}

// Upload copies src into dst through the pinned staging buffers. It returns
// once src has been copied to pinned memory; the device copies are ordered
// on the backend's stream with the ops around them.
func (b *Backend) Upload(dst tensor.Tensor, src []byte) error {
	buf, err := b.buffer("upload", "dst", dst)
	if err != nil {
		return err
	}
	if !dst.IsContiguous() {
		return &op.ArgError{Op: "upload", Arg: "dst", Msg: fmt.Sprintf("layout %v is not contiguous", dst)}
	}
	if want := dst.SizeBytes(); int64(len(src)) != want {
		return &op.ArgError{Op: "upload", Arg: "src", Msg: fmt.Sprintf("%d bytes, expected %d for %v", len(src), want, dst)}
	}
	b.opMu.Lock()
	defer b.opMu.Unlock()
	if b.fault != nil {
		return b.fault
	}
	if b.capturing.Load() {
		return fmt.Errorf("%s: upload: %w", b.name, errCapturing)
	}
	base := b.ptr(buf, dst)
	for off, i := int64(0), 0; off < int64(len(src)); i ^= 1 {
		n := min(int64(len(src))-off, stagingChunkBytes)
		// Wait until the copy that last read staging[i] is done.
		if err := b.waitEvent(context.Background(), b.stageEv[i]); err != nil {
			return b.noteFault("upload", err)
		}
		copy(b.staging[i].Bytes()[:n], src[off:off+n])
		if err := b.ctx.MemcpyHtoDAsync(base+cuda.DevicePtr(off), b.staging[i], 0, n, b.stream); err != nil {
			return b.noteFault("upload", err)
		}
		if err := b.stageEv[i].Record(b.stream); err != nil {
			return b.noteFault("upload", err)
		}
		off += n
	}
	return nil
}

// Download waits for queued work, then copies src into dst.
func (b *Backend) Download(ctx context.Context, dst []byte, src tensor.Tensor) error {
	buf, err := b.buffer("download", "src", src)
	if err != nil {
		return err
	}
	if !src.IsContiguous() {
		return &op.ArgError{Op: "download", Arg: "src", Msg: fmt.Sprintf("layout %v is not contiguous", src)}
	}
	if want := src.SizeBytes(); int64(len(dst)) != want {
		return &op.ArgError{Op: "download", Arg: "dst", Msg: fmt.Sprintf("%d bytes, expected %d for %v", len(dst), want, src)}
	}
	b.opMu.Lock()
	defer b.opMu.Unlock()
	if b.fault != nil {
		return b.fault
	}
	if b.capturing.Load() {
		return fmt.Errorf("%s: download: %w", b.name, errCapturing)
	}
	base := b.ptr(buf, src)
	total := int64(len(dst))
	// Two chunks in flight: queue chunk k+1 before copying chunk k out.
	type pending struct{ off, n int64 }
	var inFlight [2]pending
	enqueue := func(i int, off int64) error {
		n := min(total-off, stagingChunkBytes)
		if err := b.ctx.MemcpyDtoHAsync(b.staging[i], 0, base+cuda.DevicePtr(off), n, b.stream); err != nil {
			return err
		}
		inFlight[i] = pending{off, n}
		return b.stageEv[i].Record(b.stream)
	}
	next, i := int64(0), 0
	if total > 0 {
		if err := enqueue(0, 0); err != nil {
			return b.noteFault("download", err)
		}
		next = inFlight[0].n
	}
	for done := int64(0); done < total; i ^= 1 {
		if next < total {
			if err := b.enqueueAfterWait(ctx, i^1, next, enqueue); err != nil {
				return err
			}
			next += inFlight[i^1].n
		}
		if err := b.waitEvent(ctx, b.stageEv[i]); err != nil {
			return b.noteFault("download", err)
		}
		p := inFlight[i]
		copy(dst[p.off:p.off+p.n], b.staging[i].Bytes()[:p.n])
		done += p.n
	}
	// With nothing to copy, still wait for queued work.
	if total == 0 {
		if err := b.syncLocked(ctx); err != nil {
			return err
		}
	}
	return b.checkErrorWord(ctx)
}

func (b *Backend) enqueueAfterWait(ctx context.Context, i int, off int64, enqueue func(int, int64) error) error {
	if err := b.waitEvent(ctx, b.stageEv[i]); err != nil {
		return b.noteFault("download", err)
	}
	if err := enqueue(i, off); err != nil {
		return b.noteFault("download", err)
	}
	return nil
}

// Sync waits until all queued work is done, or ctx ends, and reports any
// fault the device recorded.
func (b *Backend) Sync(ctx context.Context) error {
	if err := b.checkOpen(); err != nil {
		return err
	}
	b.opMu.Lock()
	defer b.opMu.Unlock()
	if b.fault != nil {
		return b.fault
	}
	if b.capturing.Load() {
		return fmt.Errorf("%s: sync: %w", b.name, errCapturing)
	}
	if err := b.syncLocked(ctx); err != nil {
		return err
	}
	return b.checkErrorWord(ctx)
}

func (b *Backend) syncLocked(ctx context.Context) error {
	if err := b.syncEv.Record(b.stream); err != nil {
		return b.noteFault("sync", err)
	}
	if err := b.waitEvent(ctx, b.syncEv); err != nil {
		return b.noteFault("sync", err)
	}
	return nil
}

// checkErrorWord reads the device error word when a kernel that can record
// a data fault ran since the last check, and turns a recorded fault into an
// error (resetting the word, so the backend stays usable).
func (b *Backend) checkErrorWord(ctx context.Context) error {
	if !b.mayFault {
		return nil
	}
	if err := b.ctx.MemcpyDtoHAsync(b.errHost, 0, b.errWord, kernels.ErrorWordBytes, b.stream); err != nil {
		return b.noteFault("sync", err)
	}
	if err := b.syncLocked(ctx); err != nil {
		return err
	}
	b.mayFault = false
	ferr := kernels.DecodeDeviceError(b.errHost.Bytes())
	if ferr == nil {
		return nil
	}
	if err := b.ctx.MemsetD8Async(b.errWord, 0, kernels.ErrorWordBytes, b.stream); err != nil {
		return b.noteFault("sync", err)
	}
	return fmt.Errorf("%s: %w: %w", b.name, op.ErrDeviceFault, ferr)
}

// waitEvent polls e until it completes, ctx ends, or the driver reports an
// error. Polling (rather than cuEventSynchronize) keeps the wait cancellable.
func (b *Backend) waitEvent(ctx context.Context, e *cuda.Event) error {
	for spin := 0; ; spin++ {
		done, err := e.Query()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case spin < 64:
			// Short waits (a decode step) finish within a few microseconds.
		case spin < 1024:
			time.Sleep(time.Microsecond)
		default:
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// noteFault records err as the backend's sticky fault when it is a device
// error (a CUDA error other than cancellation), so later calls report it
// rather than running on a broken context.
func (b *Backend) noteFault(what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	ferr := fmt.Errorf("%s: %s: %w: %w", b.name, what, op.ErrDeviceFault, err)
	var cerr *cuda.Error
	if errors.As(err, &cerr) && isStickyResult(cerr.Result) {
		b.fault = ferr
	}
	return ferr
}

// isStickyResult reports CUresults that leave the context unusable: those
// cuda.h documents as leaving the process in an inconsistent state (every
// later call returns the same error, and only a new process recovers), and
// the hardware faults that do the same.
func isStickyResult(r cuda.Result) bool {
	switch r {
	case 214, // CUDA_ERROR_ECC_UNCORRECTABLE
		220, // CUDA_ERROR_NVLINK_UNCORRECTABLE
		226, // CUDA_ERROR_CONTAINED (CUDA 12.8: a contained hardware error, or a bad NVLink peer access)
		cuda.ErrorIllegalAddress,
		cuda.ErrorLaunchTimeout,
		709, // CUDA_ERROR_CONTEXT_IS_DESTROYED
		710, // CUDA_ERROR_ASSERT
		714, // CUDA_ERROR_HARDWARE_STACK_ERROR
		715, // CUDA_ERROR_ILLEGAL_INSTRUCTION
		716, // CUDA_ERROR_MISALIGNED_ADDRESS
		717, // CUDA_ERROR_INVALID_ADDRESS_SPACE
		718, // CUDA_ERROR_INVALID_PC
		cuda.ErrorLaunchFailed,
		721, // CUDA_ERROR_TENSOR_MEMORY_LEAK
		810, // CUDA_ERROR_MPS_CLIENT_TERMINATED
		911: // CUDA_ERROR_EXTERNAL_DEVICE
		return true
	}
	return false
}

// MemoryStats is the allocator's accounting.
func (b *Backend) MemoryStats() pool.Stats { return b.mem.Stats() }

// MemoryInfo is the device's free and total memory (cuMemGetInfo), for
// callers that size their allocations (a model's memory estimate) before
// making them. Memory cached by this backend's allocator counts as used.
func (b *Backend) MemoryInfo() (freeBytes, totalBytes int64, err error) {
	if err := b.checkOpen(); err != nil {
		return 0, 0, err
	}
	return b.ctx.MemInfo()
}
