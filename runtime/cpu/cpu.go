// Package cpu is the pure-Go backend, the reference every GPU kernel is
// tested against.
//
// Ops run on the calling goroutine and on up to Options.Threads worker
// goroutines, and are complete when they return. Each op computes in float32
// from its inputs converted exactly to float32 (F16 and BF16 widen without
// loss) and rounds its result once to the output dtype, to nearest even.
// Where this package chooses more precision than float32, it says so on the
// op: reductions (softmax sums, norm statistics) accumulate in float64, and
// transcendental functions (exp, erf, tanh, cos, sin) are evaluated in float64
// and rounded once, so that the reference is as close to the exact answer as
// it cheaply can be. Results never depend on the number of threads: every
// output element is computed by one goroutine with the same arithmetic.
//
// Non-finite inputs follow IEEE arithmetic (a NaN in a softmax row makes the
// whole row NaN, and so on); the ops do not check for them.
package cpu

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/pool"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Options configure New.
type Options struct {
	// Threads is the number of worker goroutines; 0 means GOMAXPROCS.
	Threads int
	// MemoryLimitBytes caps the bytes the backend's allocator holds (in use
	// plus cached); 0 means no cap. Memory given to Wrap is not counted.
	MemoryLimitBytes int64
	// Logger receives the allocator's diagnostics; nil discards them.
	Logger *slog.Logger
}

// defaultMinParallelWork is the estimated work (roughly, element operations)
// below which an op runs on the calling goroutine: starting goroutines costs
// a few microseconds, more than a small op takes.
const defaultMinParallelWork = 1 << 15

// Backend is the CPU backend. It satisfies backend.Backend.
//
// Concurrency: ops may be called by one goroutine at a time; Alloc, Free,
// MemoryStats and Close are safe from any goroutine. Close waits for an op
// in progress to finish.
type Backend struct {
	threads int
	logger  *slog.Logger
	pool    *pool.Pool[[]byte]

	// minParallelWork is defaultMinParallelWork; tests lower it to run the
	// parallel paths on small inputs.
	minParallelWork int

	// lifecycle is held shared by every call that touches memory and
	// exclusively by Close, so that Close waits for them.
	lifecycle sync.RWMutex
	closed    bool // guarded by lifecycle
}

// New returns a CPU backend.
func New(opts Options) *Backend {
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Backend{
		threads:         threads,
		logger:          logger,
		pool:            pool.New[[]byte](hostAllocator{}, pool.Options{LimitBytes: opts.MemoryLimitBytes, Logger: logger, Name: "cpu"}),
		minParallelWork: defaultMinParallelWork,
	}
}

// Name is "cpu".
func (b *Backend) Name() string { return "cpu" }

// Description is one line about the backend.
func (b *Backend) Description() string {
	kernels := "pure Go"
	if useDotAsm {
		kernels = "Go, AVX2+FMA matmul dots"
	}
	return fmt.Sprintf("CPU (%s, %s/%s, %d threads)", kernels, runtime.GOOS, runtime.GOARCH, b.threads)
}

// Threads is the number of worker goroutines an op may use.
func (b *Backend) Threads() int { return b.threads }

// Close releases the allocator's cached memory. Later calls on the backend,
// and ops on its tensors, return an error matching op.ErrClosed. Memory of
// tensors still allocated is reclaimed by the garbage collector once they are
// no longer referenced. A second Close does nothing.
func (b *Backend) Close() error {
	b.lifecycle.Lock()
	defer b.lifecycle.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	// The pool reports blocks still in use; on the CPU that is not a leak
	// (the garbage collector reclaims them), so it is logged, not returned.
	if err := b.pool.Close(); err != nil {
		b.logger.Debug("cpu: closing the allocator", "err", err)
	}
	return nil
}

// begin takes the lifecycle lock for a call and fails if the backend is
// closed. The caller must call b.end() when begin succeeded.
func (b *Backend) begin(what string) error {
	b.lifecycle.RLock()
	if b.closed {
		b.lifecycle.RUnlock()
		return fmt.Errorf("cpu: %s: %w: the backend was closed", what, op.ErrClosed)
	}
	return nil
}

func (b *Backend) end() { b.lifecycle.RUnlock() }

// Alloc returns a new contiguous tensor of dt and shape. Its contents are
// undefined (memory reused from the cache keeps old values). Errors: a bad
// dtype or shape (op.ErrInvalidArgument), the memory limit or the machine's
// memory exceeded (op.ErrOutOfMemory), a closed backend (op.ErrClosed).
func (b *Backend) Alloc(dt tensor.DType, shape ...int) (tensor.Tensor, error) {
	sizeBytes, err := tensor.SizeBytes(dt, shape...)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("cpu: alloc %v %v: %w: %v", dt, shape, op.ErrInvalidArgument, err)
	}
	if err := b.begin("alloc"); err != nil {
		return tensor.Tensor{}, err
	}
	defer b.end()
	blk, err := b.pool.Alloc(sizeBytes, 0)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("cpu: alloc %v %v (%d bytes): %w", dt, shape, sizeBytes, err)
	}
	buf := &Buffer{backend: b, data: blk.Mem[:sizeBytes:sizeBytes], block: blk}
	t, err := tensor.New(buf, dt, shape...)
	if err != nil {
		// Unreachable: SizeBytes accepted the shape and the buffer has its size.
		_ = b.pool.Free(blk, 0, nil)
		return tensor.Tensor{}, fmt.Errorf("cpu: alloc %v %v: %w: %v", dt, shape, op.ErrInvalidArgument, err)
	}
	return t, nil
}

// Free returns t's buffer to the allocator (for a tensor made by Wrap, it
// only marks the buffer freed: the memory stays the caller's). Every view of
// the buffer becomes invalid. Errors: the zero Tensor (op.ErrInvalidArgument),
// a tensor of another backend (op.ErrForeignTensor), a buffer already freed
// or a closed backend (op.ErrClosed).
func (b *Backend) Free(t tensor.Tensor) error {
	if t.IsZero() {
		return fmt.Errorf("cpu: free: %w: missing tensor (the zero Tensor)", op.ErrInvalidArgument)
	}
	buf, err := b.ownBuffer("free", "t", t)
	if err != nil {
		return err
	}
	if err := b.begin("free"); err != nil {
		return err
	}
	defer b.end()
	if !buf.freed.CompareAndSwap(false, true) {
		return fmt.Errorf("cpu: free: %w: the buffer of %v was already freed", op.ErrClosed, t)
	}
	if buf.block == nil {
		return nil
	}
	if err := b.pool.Free(buf.block, 0, nil); err != nil {
		return fmt.Errorf("cpu: free %v: %w", t, err)
	}
	return nil
}

// Upload copies src, the storage bytes of dst's dtype in row-major order,
// into dst, which must be contiguous and writable; len(src) must be dst's size
// in bytes.
func (b *Backend) Upload(dst tensor.Tensor, src []byte) error {
	const what = "upload"
	if dst.IsZero() {
		return fmt.Errorf("cpu: %s: %w: dst: missing tensor", what, op.ErrInvalidArgument)
	}
	if !dst.IsContiguous() {
		return fmt.Errorf("cpu: %s: %w: dst %v is not contiguous (upload into a contiguous tensor, then Copy)", what, op.ErrInvalidArgument, dst)
	}
	if want := dst.SizeBytes(); int64(len(src)) != want {
		return fmt.Errorf("cpu: %s: %w: src has %d bytes, dst %v needs %d", what, op.ErrInvalidArgument, len(src), dst, want)
	}
	if err := b.begin(what); err != nil {
		return err
	}
	defer b.end()
	v, err := b.resolve(what, "dst", dst, true)
	if err != nil {
		return err
	}
	start := dst.ByteOffset()
	copy(v.mem[start:start+int64(len(src))], src)
	return nil
}

// Download copies src, which must be contiguous, into dst, whose length must
// be src's size in bytes. It returns ctx.Err() if ctx is already done.
func (b *Backend) Download(ctx context.Context, dst []byte, src tensor.Tensor) error {
	const what = "download"
	if err := ctx.Err(); err != nil {
		return err
	}
	if src.IsZero() {
		return fmt.Errorf("cpu: %s: %w: src: missing tensor", what, op.ErrInvalidArgument)
	}
	if !src.IsContiguous() {
		return fmt.Errorf("cpu: %s: %w: src %v is not contiguous (Copy it into a contiguous tensor first)", what, op.ErrInvalidArgument, src)
	}
	if want := src.SizeBytes(); int64(len(dst)) != want {
		return fmt.Errorf("cpu: %s: %w: dst has %d bytes, src %v has %d", what, op.ErrInvalidArgument, len(dst), src, want)
	}
	if err := b.begin(what); err != nil {
		return err
	}
	defer b.end()
	v, err := b.resolve(what, "src", src, false)
	if err != nil {
		return err
	}
	start := src.ByteOffset()
	copy(dst, v.mem[start:start+int64(len(dst))])
	return nil
}

// Sync returns at once: CPU ops are complete when they return. It returns
// ctx.Err() when ctx is done, and op.ErrClosed after Close.
func (b *Backend) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.begin("sync"); err != nil {
		return err
	}
	b.end()
	return nil
}

// MemoryStats is the allocator's accounting. Memory given to Wrap is not counted.
func (b *Backend) MemoryStats() pool.Stats { return b.pool.Stats() }
