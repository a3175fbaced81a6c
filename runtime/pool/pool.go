package pool

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"

	"github.com/kiln-gpu/kiln/runtime/op"
)

// Allocator is the device-level allocator a Pool caches for. B is the block
// handle: cuda.DevicePtr for the GPU, []byte for the CPU.
//
// The pool never calls an Allocator while holding its own lock, so an
// Allocator may block (cuMemFree waits for the device) and may even call the
// pool's methods.
type Allocator[B any] interface {
	// Alloc returns a new block of exactly sizeBytes. When the device is out of
	// memory it returns an error matching op.ErrOutOfMemory (package
	// github.com/kiln-gpu/kiln/runtime/op), which makes the pool release its
	// cache and retry once.
	Alloc(sizeBytes int64) (B, error)
	// Free returns a block to the device.
	//
	// The pool calls Free for cached blocks in ReleaseCache, in Close and on
	// the out-of-memory path, whether or not the Fence they were freed with
	// is Done: Free must therefore not let the memory be reused while queued
	// device work may still touch it. (cuMemFree waits for the device in
	// practice, although the driver's documentation does not promise it; a
	// GPU Allocator that wants certainty synchronises first.)
	Free(b B) error
}

// StreamID identifies the stream a block was used on (0: the CPU, or a
// default stream). Blocks freed on a stream are reused on the same stream
// at once: stream order makes that safe.
type StreamID uintptr

// Fence reports whether the device work that used a freed block has
// finished (for the GPU: an event recorded on the freeing stream). A block
// freed with a fence may be reused on another stream only once Done.
//
// The pool calls Done while holding its lock, to decide whether a cached block
// may be handed out: Done must be quick, must not block, and must not call
// the pool (cuEventQuery qualifies).
type Fence interface{ Done() bool }

// FenceCloser is a Fence that holds a resource (for the GPU, the CUDA event).
// A Pool owns every fence given to Free, and calls Close exactly once when it
// drops the fence: when the block is reused, handed back to the Allocator, or
// when Free refuses the block. Close is called without the pool's lock held;
// it may be called before the fence is Done (cuEventDestroy allows that). An
// error from Close is logged, not returned.
type FenceCloser interface {
	Fence
	Close() error
}

// Options configure a Pool.
type Options struct {
	LimitBytes int64        // cap on in-use + cached bytes; 0: none
	Logger     *slog.Logger // nil: discard
	Name       string       // for errors and logs, e.g. "cuda:0"
}

// Block is a piece of device memory handed out by a Pool. Mem, SizeBytes and
// ClassBytes are for the caller to read; the pool keeps its own copies, so
// changing them does not confuse its accounting. Free clears Mem, so that a
// use after Free finds a zero handle rather than memory someone else now holds.
type Block[B any] struct {
	// Mem is the device memory, ClassBytes long.
	Mem B
	// SizeBytes is the size the caller asked for.
	SizeBytes int64
	// ClassBytes is the size reserved: SizeClass(SizeBytes).
	ClassBytes int64

	pool       *Pool[B] // the pool that made it; nil for a Block not from a pool
	mem        B
	classBytes int64
	freed      bool // guarded by pool.mu
}

// cachedBlock is a freed block kept for reuse. It is a separate value rather
// than the caller's *Block so that a stale *Block can never free memory that
// has since been handed to someone else: every Alloc makes a new Block.
type cachedBlock[B any] struct {
	mem        B
	classBytes int64
	stream     StreamID // the stream it was freed on
	fence      Fence    // nil: no pending work
}

// Pool is a caching allocator for one device. It is safe for concurrent use.
//
// Blocks are grouped into size classes (see SizeClass) and a freed block is
// cached, then reused only for a request of exactly the same class. Exact
// matching is deliberate: the pool neither splits nor merges blocks, so handing
// a larger cached block to a smaller request would waste the difference for as
// long as the block lives, and would let small requests eat the big blocks
// that large requests then have to allocate again. Inference allocates the
// same shapes step after step, so exact classes hit in the steady state, and
// the classes are coarse enough (at most 25% waste) to absorb small
// variations.
//
// Within a class, a block freed on the requesting stream is preferred (stream
// order makes it safe at once), the most recently freed first; otherwise a
// block from another stream whose fence is nil or Done.
//
// Locking: one mutex guards the accounting and the cache. The Allocator and
// FenceCloser.Close are always called with it released; Fence.Done is called
// with it held (see Fence). An allocation that misses the cache reserves its
// bytes under the lock (so that concurrent allocations respect LimitBytes),
// calls the Allocator unlocked, then commits.
type Pool[B any] struct {
	alloc      Allocator[B]
	label      string // "pool cuda:0", the prefix of every error
	limitBytes int64
	logger     *slog.Logger
	configErr  error // a bad argument to New, returned by every Alloc

	mu            sync.Mutex
	closed        bool
	bins          map[int64]*bin[B] // by size class
	reservedBytes int64             // device allocations in flight
	// releasingBytes are taken from the cache and being handed back to the
	// Allocator. Like reservedBytes they count against the limit, so that
	// the device never holds more than LimitBytes for the pool.
	releasingBytes int64
	stats          Stats
}

type bin[B any] struct {
	blocks []cachedBlock[B] // oldest first
}

// New returns a Pool caching blocks of a. A nil Allocator or a negative
// LimitBytes makes every Alloc fail with an error that says so.
func New[B any](a Allocator[B], opts Options) *Pool[B] {
	p := &Pool[B]{
		alloc:      a,
		label:      "pool",
		limitBytes: opts.LimitBytes,
		logger:     opts.Logger,
		bins:       make(map[int64]*bin[B]),
	}
	if opts.Name != "" {
		p.label = "pool " + opts.Name
	}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case a == nil:
		p.configErr = fmt.Errorf("%s: %w: created with a nil Allocator", p.label, op.ErrInvalidArgument)
	case opts.LimitBytes < 0:
		p.configErr = fmt.Errorf("%s: %w: LimitBytes %d is negative (0 means no limit)",
			p.label, op.ErrInvalidArgument, opts.LimitBytes)
		p.limitBytes = 0
	}
	p.stats.LimitBytes = p.limitBytes
	return p
}

// Alloc returns a block of at least sizeBytes (exactly SizeClass(sizeBytes)
// reserved) for use on stream s: a cached block when one of the same class
// may be used on s, otherwise a new one from the Allocator. Its contents are
// undefined.
//
// Errors: sizeBytes negative or above MaxSizeBytes (op.ErrInvalidArgument);
// the pool closed (op.ErrClosed); out of memory (an *OOMError, matching
// op.ErrOutOfMemory), either because the block would take in-use + cached
// bytes past LimitBytes even after releasing the cache, or because the
// Allocator ran out even after the cache was released and the allocation
// retried once; any other Allocator error, wrapped.
func (p *Pool[B]) Alloc(sizeBytes int64, s StreamID) (*Block[B], error) {
	if p == nil {
		return nil, fmt.Errorf("pool: Alloc: %w: nil *Pool", op.ErrInvalidArgument)
	}
	if p.configErr != nil {
		return nil, p.configErr
	}
	classBytes := SizeClass(sizeBytes)
	if classBytes < 0 {
		if sizeBytes < 0 {
			return nil, fmt.Errorf("%s: Alloc: %w: sizeBytes %d is negative", p.label, op.ErrInvalidArgument, sizeBytes)
		}
		return nil, fmt.Errorf("%s: Alloc: %w: sizeBytes %d is larger than the largest size class allows (%d)",
			p.label, op.ErrInvalidArgument, sizeBytes, MaxSizeBytes)
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, p.closedErr("Alloc")
	}
	if c, ok := p.takeCachedLocked(classBytes, s); ok {
		p.mu.Unlock()
		return p.reuse(c, sizeBytes), nil
	}

	if p.overLimitLocked(classBytes) {
		if !p.cacheCouldMakeRoomLocked(classBytes) {
			return nil, p.failLimitLocked(sizeBytes, classBytes)
		}
		released := p.takeCacheLocked()
		p.stats.CacheReleases++
		p.mu.Unlock()
		p.logger.Debug("releasing the cache to stay under the limit", "pool", p.label,
			"requestedBytes", sizeBytes, "classBytes", classBytes, "limitBytes", p.limitBytes,
			"releasedBlocks", len(released))
		p.logErr("releasing the cache", p.releaseToDevice(released))

		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, p.closedErr("Alloc")
		}
		// Another goroutine may have freed a block of this class meanwhile.
		if c, ok := p.takeCachedLocked(classBytes, s); ok {
			p.mu.Unlock()
			return p.reuse(c, sizeBytes), nil
		}
		if p.overLimitLocked(classBytes) {
			return nil, p.failLimitLocked(sizeBytes, classBytes)
		}
	}
	p.reservedBytes += classBytes
	p.mu.Unlock()

	mem, err := p.deviceAlloc(classBytes)
	if err != nil && errors.Is(err, op.ErrOutOfMemory) {
		p.mu.Lock()
		released := p.takeCacheLocked()
		p.stats.CacheReleases++
		p.mu.Unlock()
		p.logger.Debug("device out of memory: releasing the cache and retrying", "pool", p.label,
			"requestedBytes", sizeBytes, "classBytes", classBytes, "releasedBlocks", len(released), "err", err)
		p.logErr("releasing the cache", p.releaseToDevice(released))
		mem, err = p.deviceAlloc(classBytes)
	}

	p.mu.Lock()
	p.reservedBytes -= classBytes
	if err != nil {
		if errors.Is(err, op.ErrOutOfMemory) {
			oom := p.oomLocked(sizeBytes, classBytes, err)
			p.stats.OutOfMemory++
			p.mu.Unlock()
			p.logger.Debug("out of memory", "pool", p.label, "err", oom)
			return nil, oom
		}
		p.mu.Unlock()
		return nil, fmt.Errorf("%s: allocating %d bytes (size class %d bytes): %w", p.label, sizeBytes, classBytes, err)
	}
	if p.closed {
		// Closed while the Allocator was working: the block is nobody's.
		p.mu.Unlock()
		p.logErr("freeing a block allocated during Close", p.freeToDevice([]cachedBlock[B]{{mem: mem, classBytes: classBytes}}))
		return nil, p.closedErr("Alloc")
	}
	p.addInUseLocked(classBytes)
	p.mu.Unlock()
	return p.newBlock(mem, sizeBytes, classBytes), nil
}

// takeCachedLocked takes a cached block of classBytes usable on stream s out
// of the cache and counts it as in use, if there is one.
func (p *Pool[B]) takeCachedLocked(classBytes int64, s StreamID) (cachedBlock[B], bool) {
	bn := p.bins[classBytes]
	if bn == nil {
		return cachedBlock[B]{}, false
	}
	i := p.findUsable(bn.blocks, s)
	if i < 0 {
		return cachedBlock[B]{}, false
	}
	c := bn.blocks[i]
	bn.blocks = slices.Delete(bn.blocks, i, i+1) // keeps the order; zeroes the freed slot
	p.stats.CachedBytes -= classBytes
	p.stats.CachedBlocks--
	p.stats.CacheHits++
	p.addInUseLocked(classBytes)
	return c, true
}

// reuse hands out a block taken by takeCachedLocked (p.mu not held): its
// fence is no longer needed.
func (p *Pool[B]) reuse(c cachedBlock[B], sizeBytes int64) *Block[B] {
	p.closeFence(c.fence)
	return p.newBlock(c.mem, sizeBytes, c.classBytes)
}

// findUsable returns the index of the block to reuse on stream s, or -1: the
// most recently freed block of stream s, else the most recently freed block
// whose fence is nil or Done.
func (p *Pool[B]) findUsable(blocks []cachedBlock[B], s StreamID) int {
	for i := len(blocks) - 1; i >= 0; i-- {
		if blocks[i].stream == s {
			return i
		}
	}
	for i := len(blocks) - 1; i >= 0; i-- {
		if f := blocks[i].fence; f == nil || f.Done() {
			return i
		}
	}
	return -1
}

func (p *Pool[B]) newBlock(mem B, sizeBytes, classBytes int64) *Block[B] {
	// This is the one heap allocation of a cache hit: see cachedBlock.
	return &Block[B]{Mem: mem, SizeBytes: sizeBytes, ClassBytes: classBytes, pool: p, mem: mem, classBytes: classBytes}
}

func (p *Pool[B]) addInUseLocked(classBytes int64) {
	p.stats.Allocs++
	p.stats.InUseBytes += classBytes
	p.stats.InUseBlocks++
	p.stats.PeakInUseBytes = max(p.stats.PeakInUseBytes, p.stats.InUseBytes)
}

// overLimitLocked reports whether a new block of classBytes would take
// in-use + cached (+ allocations and releases in flight) past the limit. It
// is written so as not to overflow.
func (p *Pool[B]) overLimitLocked(classBytes int64) bool {
	limit := p.effectiveLimit()
	held := p.stats.InUseBytes + p.stats.CachedBytes + p.reservedBytes + p.releasingBytes
	return classBytes > limit || held > limit-classBytes
}

// cacheCouldMakeRoomLocked reports whether releasing the cache would bring a
// new block of classBytes under the limit; when it would not, the cache is
// kept, since releasing it would only cost the next allocations.
func (p *Pool[B]) cacheCouldMakeRoomLocked(classBytes int64) bool {
	limit := p.effectiveLimit()
	held := p.stats.InUseBytes + p.reservedBytes + p.releasingBytes
	return classBytes <= limit && held <= limit-classBytes
}

// effectiveLimit is LimitBytes, or without one the largest byte count the
// pool's int64 accounting can hold (only a fake device could reach it).
func (p *Pool[B]) effectiveLimit() int64 {
	if p.limitBytes == 0 {
		return math.MaxInt64
	}
	return p.limitBytes
}

// failLimitLocked records and returns the out-of-memory error of an
// allocation refused by the limit, and unlocks p.mu.
func (p *Pool[B]) failLimitLocked(sizeBytes, classBytes int64) error {
	oom := p.oomLocked(sizeBytes, classBytes, nil)
	p.stats.OutOfMemory++
	p.mu.Unlock()
	p.logger.Debug("out of memory", "pool", p.label, "err", oom)
	return oom
}

func (p *Pool[B]) oomLocked(sizeBytes, classBytes int64, deviceErr error) *OOMError {
	return &OOMError{
		Pool:           p.label,
		RequestedBytes: sizeBytes,
		ClassBytes:     classBytes,
		InUseBytes:     p.stats.InUseBytes,
		CachedBytes:    p.stats.CachedBytes,
		PendingBytes:   p.reservedBytes + p.releasingBytes,
		LimitBytes:     p.limitBytes,
		Err:            deviceErr,
	}
}

// deviceAlloc calls the Allocator (p.mu not held) and counts the call.
func (p *Pool[B]) deviceAlloc(classBytes int64) (B, error) {
	mem, err := p.alloc.Alloc(classBytes)
	p.mu.Lock()
	p.stats.DeviceAllocs++
	p.mu.Unlock()
	return mem, err
}

// Free returns b, last used on stream s, to the pool, which caches it for
// reuse. f, when not nil, tells when the device work queued on s before Free
// is done; the block is reused on another stream only then (on s, at once).
// The pool takes ownership of f in every case (see FenceCloser).
//
// Errors: b nil, not from a pool, or from another pool (op.ErrInvalidArgument);
// b already freed (op.ErrClosed). After Close, Free hands the block straight
// back to the Allocator and returns its error, if any.
func (p *Pool[B]) Free(b *Block[B], s StreamID, f Fence) error {
	if p == nil {
		p.closeFence(f)
		return fmt.Errorf("pool: Free: %w: nil *Pool", op.ErrInvalidArgument)
	}
	switch {
	case b == nil:
		p.closeFence(f)
		return fmt.Errorf("%s: Free: %w: nil block", p.label, op.ErrInvalidArgument)
	case b.pool == nil:
		p.closeFence(f)
		return fmt.Errorf("%s: Free: %w: the block of %d bytes was not allocated by a pool", p.label, op.ErrInvalidArgument, b.SizeBytes)
	case b.pool != p:
		p.closeFence(f)
		return fmt.Errorf("%s: Free: %w: the block of %d bytes belongs to %s", p.label, op.ErrInvalidArgument, b.SizeBytes, b.pool.label)
	}

	p.mu.Lock()
	if b.freed {
		p.mu.Unlock()
		p.closeFence(f)
		return fmt.Errorf("%s: Free: %w: the block of %d bytes (size class %d bytes) was already freed", p.label, op.ErrClosed, b.SizeBytes, b.classBytes)
	}
	b.freed = true
	var zero B
	b.Mem = zero
	p.stats.InUseBytes -= b.classBytes
	p.stats.InUseBlocks--
	p.stats.Frees++
	if p.closed {
		p.mu.Unlock()
		return p.freeToDevice([]cachedBlock[B]{{mem: b.mem, classBytes: b.classBytes, fence: f}})
	}
	bn := p.bins[b.classBytes]
	if bn == nil {
		bn = &bin[B]{}
		p.bins[b.classBytes] = bn
	}
	bn.blocks = append(bn.blocks, cachedBlock[B]{mem: b.mem, classBytes: b.classBytes, stream: s, fence: f})
	p.stats.CachedBytes += b.classBytes
	p.stats.CachedBlocks++
	p.mu.Unlock()
	return nil
}

// ReleaseCache hands every cached block back to the Allocator (whatever its
// fence says; see Allocator.Free) and returns the Allocator's errors, joined.
// A block whose Free failed is forgotten all the same: retrying it could free
// memory twice.
func (p *Pool[B]) ReleaseCache() error {
	if p == nil {
		return fmt.Errorf("pool: ReleaseCache: %w: nil *Pool", op.ErrInvalidArgument)
	}
	p.mu.Lock()
	released := p.takeCacheLocked()
	p.mu.Unlock()
	return p.releaseToDevice(released)
}

// takeCacheLocked empties the cache and returns what it held, which then
// counts as releasing until releaseToDevice is done with it.
func (p *Pool[B]) takeCacheLocked() []cachedBlock[B] {
	var all []cachedBlock[B]
	for _, bn := range p.bins {
		all = append(all, bn.blocks...)
	}
	clear(p.bins)
	p.releasingBytes += p.stats.CachedBytes
	p.stats.CachedBytes = 0
	p.stats.CachedBlocks = 0
	return all
}

// releaseToDevice hands back blocks taken by takeCacheLocked.
func (p *Pool[B]) releaseToDevice(blocks []cachedBlock[B]) error {
	return p.handBack(blocks, true)
}

// freeToDevice hands back blocks that were never counted as cached.
func (p *Pool[B]) freeToDevice(blocks []cachedBlock[B]) error {
	return p.handBack(blocks, false)
}

// handBack gives blocks to the Allocator (p.mu not held), closes their
// fences, counts the calls, and returns the Allocator's errors, joined. A
// block whose Free fails is forgotten all the same.
func (p *Pool[B]) handBack(blocks []cachedBlock[B], fromCache bool) error {
	if len(blocks) == 0 {
		return nil
	}
	var errs []error
	var sizeBytes int64
	for _, c := range blocks {
		if err := p.alloc.Free(c.mem); err != nil {
			errs = append(errs, fmt.Errorf("%s: freeing a block of %d bytes on the device: %w", p.label, c.classBytes, err))
		}
		p.closeFence(c.fence)
		sizeBytes += c.classBytes
	}
	p.mu.Lock()
	p.stats.DeviceFrees += int64(len(blocks))
	if fromCache {
		p.releasingBytes -= sizeBytes
	}
	p.mu.Unlock()
	return errors.Join(errs...)
}

func (p *Pool[B]) closeFence(f Fence) {
	c, ok := f.(FenceCloser)
	if !ok {
		return
	}
	if err := c.Close(); err != nil {
		p.logger.Warn("closing a fence", "pool", p.label, "err", err)
	}
}

func (p *Pool[B]) logErr(what string, err error) {
	if err != nil {
		p.logger.Warn(what, "pool", p.label, "err", err)
	}
}

// Stats returns a snapshot of the pool's accounting. An allocation in flight
// on another goroutine shows up once it completes.
func (p *Pool[B]) Stats() Stats {
	if p == nil {
		return Stats{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Close releases the cache to the Allocator and closes the pool: a later Alloc
// returns op.ErrClosed, and a later Free hands its block straight back to the
// Allocator. If blocks are still in use, Close says how many and how many
// bytes, in its error (joined with any Allocator errors). A second Close does
// nothing and returns nil.
func (p *Pool[B]) Close() error {
	if p == nil {
		return fmt.Errorf("pool: Close: %w: nil *Pool", op.ErrInvalidArgument)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	released := p.takeCacheLocked()
	inUseBlocks, inUseBytes := p.stats.InUseBlocks, p.stats.InUseBytes
	p.mu.Unlock()

	err := p.releaseToDevice(released)
	if inUseBlocks > 0 {
		err = errors.Join(err, fmt.Errorf("%s: closed with %d blocks (%s) still in use; each goes back to the device when freed",
			p.label, inUseBlocks, formatBytes(inUseBytes)))
	}
	return err
}

func (p *Pool[B]) closedErr(method string) error {
	return fmt.Errorf("%s: %s: %w", p.label, method, op.ErrClosed)
}
