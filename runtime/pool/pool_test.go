package pool

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-gpu/kiln/runtime/op"
)

// checkStats compares every field of p's Stats with want.
func checkStats[B any](t *testing.T, step string, p *Pool[B], want Stats) {
	t.Helper()
	if got := p.Stats(); got != want {
		t.Fatalf("%s: stats\n got  %+v\n want %+v", step, got, want)
	}
}

func mustAlloc[B any](t *testing.T, p *Pool[B], sizeBytes int64, s StreamID) *Block[B] {
	t.Helper()
	b, err := p.Alloc(sizeBytes, s)
	if err != nil {
		t.Fatalf("Alloc(%d, stream %d): %v", sizeBytes, s, err)
	}
	if b.SizeBytes != sizeBytes || b.ClassBytes != SizeClass(sizeBytes) {
		t.Fatalf("Alloc(%d): block SizeBytes %d ClassBytes %d, want %d and %d",
			sizeBytes, b.SizeBytes, b.ClassBytes, sizeBytes, SizeClass(sizeBytes))
	}
	return b
}

func mustFree[B any](t *testing.T, p *Pool[B], b *Block[B], s StreamID, f Fence) {
	t.Helper()
	if err := p.Free(b, s, f); err != nil {
		t.Fatalf("Free(block of %d bytes, stream %d): %v", b.SizeBytes, s, err)
	}
}

func TestAllocFreeReuseStats(t *testing.T) {
	dev := newFakeAllocator(0)
	p := New[fakeMem](dev, Options{Name: "test"})
	checkStats(t, "new", p, Stats{})

	a1 := mustAlloc(t, p, 1000, 1) // class 1024
	a1Mem := a1.Mem
	checkStats(t, "alloc 1000", p, Stats{InUseBytes: 1024, InUseBlocks: 1, PeakInUseBytes: 1024, Allocs: 1, DeviceAllocs: 1})

	a2 := mustAlloc(t, p, 3000, 1) // class 3072
	a2Mem := a2.Mem
	if a1Mem == a2Mem {
		t.Fatalf("two live blocks share the handle %d", a1Mem)
	}
	checkStats(t, "alloc 3000", p, Stats{InUseBytes: 4096, InUseBlocks: 2, PeakInUseBytes: 4096, Allocs: 2, DeviceAllocs: 2})

	mustFree(t, p, a1, 1, nil)
	var zero fakeMem
	if a1.Mem != zero {
		t.Errorf("Free left Mem = %d, want the zero handle", a1.Mem)
	}
	checkStats(t, "free 1000", p, Stats{InUseBytes: 3072, InUseBlocks: 1, CachedBytes: 1024, CachedBlocks: 1,
		PeakInUseBytes: 4096, Allocs: 2, Frees: 1, DeviceAllocs: 2})

	// Same class (600 rounds to 1024): served from the cache, same memory.
	a3 := mustAlloc(t, p, 600, 1)
	if a3.Mem != a1Mem {
		t.Errorf("Alloc(600) after freeing a 1024-byte block got handle %d, want the cached %d", a3.Mem, a1Mem)
	}
	checkStats(t, "alloc 600 (hit)", p, Stats{InUseBytes: 4096, InUseBlocks: 2, PeakInUseBytes: 4096,
		Allocs: 3, CacheHits: 1, Frees: 1, DeviceAllocs: 2})

	// A cached 3072-byte block does not serve a 2048-byte request: exact classes only.
	mustFree(t, p, a2, 1, nil)
	a4 := mustAlloc(t, p, 2000, 1)
	if a4.Mem == a2Mem {
		t.Errorf("Alloc(2000) reused the 3072-byte block: classes must match exactly")
	}
	checkStats(t, "alloc 2000 (miss)", p, Stats{InUseBytes: 1024 + 2048, InUseBlocks: 2, CachedBytes: 3072, CachedBlocks: 1,
		PeakInUseBytes: 4096, Allocs: 4, CacheHits: 1, Frees: 2, DeviceAllocs: 3})

	// Peak moves only when in-use passes it.
	a5 := mustAlloc(t, p, 4096, 1)
	checkStats(t, "alloc 4096", p, Stats{InUseBytes: 1024 + 2048 + 4096, InUseBlocks: 3, CachedBytes: 3072, CachedBlocks: 1,
		PeakInUseBytes: 7168, Allocs: 5, CacheHits: 1, Frees: 2, DeviceAllocs: 4})

	if err := p.ReleaseCache(); err != nil {
		t.Fatalf("ReleaseCache: %v", err)
	}
	checkStats(t, "release", p, Stats{InUseBytes: 7168, InUseBlocks: 3, PeakInUseBytes: 7168,
		Allocs: 5, CacheHits: 1, Frees: 2, DeviceAllocs: 4, DeviceFrees: 1})
	if r := dev.record(); !slices.Equal(r.freeSizes, []int64{3072}) {
		t.Errorf("device frees %v, want [3072]", r.freeSizes)
	}

	for _, b := range []*Block[fakeMem]{a3, a4, a5} {
		mustFree(t, p, b, 1, nil)
	}
	checkStats(t, "all freed", p, Stats{CachedBytes: 7168, CachedBlocks: 3, PeakInUseBytes: 7168,
		Allocs: 5, CacheHits: 1, Frees: 5, DeviceAllocs: 4, DeviceFrees: 1})
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checkStats(t, "closed", p, Stats{PeakInUseBytes: 7168, Allocs: 5, CacheHits: 1, Frees: 5, DeviceAllocs: 4, DeviceFrees: 4})
	r := dev.record()
	if !slices.Equal(r.allocSizes, []int64{1024, 3072, 2048, 4096}) {
		t.Errorf("device allocations %v, want [1024 3072 2048 4096]", r.allocSizes)
	}
	dev.checkAllReturned(t)
}

func TestZeroByteAlloc(t *testing.T) {
	dev := newFakeAllocator(0)
	p := New[fakeMem](dev, Options{})
	b := mustAlloc(t, p, 0, 0)
	if b.ClassBytes != 512 || b.Mem == 0 {
		t.Fatalf("Alloc(0): ClassBytes %d, Mem %d; want a real 512-byte block", b.ClassBytes, b.Mem)
	}
	if r := dev.record(); !slices.Equal(r.allocSizes, []int64{512}) {
		t.Errorf("device allocations %v, want [512]", r.allocSizes)
	}
	mustFree(t, p, b, 0, nil)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	dev.checkAllReturned(t)
}

func TestAllocBadSize(t *testing.T) {
	dev := newFakeAllocator(0)
	p := New[fakeMem](dev, Options{Name: "cpu"})
	for _, size := range []int64{-1, math.MinInt64, MaxSizeBytes + 1, math.MaxInt64} {
		b, err := p.Alloc(size, 0)
		if b != nil || !errors.Is(err, op.ErrInvalidArgument) {
			t.Errorf("Alloc(%d) = %v, %v; want nil and ErrInvalidArgument", size, b, err)
			continue
		}
		if !strings.Contains(err.Error(), "pool cpu") || !strings.Contains(err.Error(), "sizeBytes") {
			t.Errorf("Alloc(%d) error %q does not name the pool and the argument", size, err)
		}
	}
	if r := dev.record(); r.allocCalls != 0 {
		t.Errorf("bad sizes reached the device allocator %d times", r.allocCalls)
	}
	checkStats(t, "after bad sizes", p, Stats{})
}

func TestFreeMisuse(t *testing.T) {
	dev := newFakeAllocator(0)
	p := New[fakeMem](dev, Options{Name: "mine"})
	other := New[fakeMem](newFakeAllocator(0), Options{Name: "theirs"})

	b := mustAlloc(t, p, 100, 1)
	ob := mustAlloc(t, other, 100, 1)
	before := p.Stats()

	tests := []struct {
		name    string
		block   *Block[fakeMem]
		want    error
		message string
	}{
		{"nil block", nil, op.ErrInvalidArgument, "nil block"},
		{"zero Block", &Block[fakeMem]{SizeBytes: 7}, op.ErrInvalidArgument, "not allocated by a pool"},
		{"other pool's block", ob, op.ErrInvalidArgument, "belongs to pool theirs"},
	}
	for _, tt := range tests {
		f := &fakeFence{}
		err := p.Free(tt.block, 1, f)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.message) || !strings.Contains(err.Error(), "pool mine") {
			t.Errorf("%s: Free = %v; want %v mentioning %q and the pool", tt.name, err, tt.want, tt.message)
		}
		if n := f.closes.Load(); n != 1 {
			t.Errorf("%s: the refused fence was closed %d times, want 1 (the pool owns it)", tt.name, n)
		}
	}
	checkStats(t, "after refused frees", p, before)

	mustFree(t, p, b, 1, nil)
	afterFree := p.Stats()
	f := &fakeFence{}
	if err := p.Free(b, 1, f); !errors.Is(err, op.ErrClosed) {
		t.Errorf("second Free = %v, want ErrClosed", err)
	}
	if f.closes.Load() != 1 {
		t.Errorf("the fence of a refused second Free was closed %d times, want 1", f.closes.Load())
	}
	checkStats(t, "after double free", p, afterFree)

	// The freed block's memory goes to a new Block; the stale one still cannot be freed.
	c := mustAlloc(t, p, 100, 1)
	if err := p.Free(b, 1, nil); !errors.Is(err, op.ErrClosed) {
		t.Errorf("Free of a stale block whose memory was handed out again = %v, want ErrClosed", err)
	}
	if s := p.Stats(); s.InUseBlocks != 1 || s.InUseBytes != 512 {
		t.Errorf("a stale Free changed the live block's accounting: %+v", s)
	}
	mustFree(t, p, c, 1, nil)
	mustFree(t, other, ob, 1, nil)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	dev.checkAllReturned(t)
}

func TestBadConfigAndNilPool(t *testing.T) {
	p := New[fakeMem](nil, Options{Name: "x"})
	if _, err := p.Alloc(10, 0); !errors.Is(err, op.ErrInvalidArgument) || !strings.Contains(err.Error(), "nil Allocator") {
		t.Errorf("Alloc on a pool without an Allocator = %v, want ErrInvalidArgument naming the nil Allocator", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close of an empty pool without an Allocator = %v", err)
	}

	p = New[fakeMem](newFakeAllocator(0), Options{LimitBytes: -5})
	if _, err := p.Alloc(10, 0); !errors.Is(err, op.ErrInvalidArgument) || !strings.Contains(err.Error(), "LimitBytes -5") {
		t.Errorf("Alloc on a pool with a negative limit = %v, want ErrInvalidArgument naming LimitBytes", err)
	}

	var np *Pool[fakeMem]
	if _, err := np.Alloc(1, 0); !errors.Is(err, op.ErrInvalidArgument) {
		t.Errorf("nil pool Alloc = %v", err)
	}
	if err := np.Free(nil, 0, nil); !errors.Is(err, op.ErrInvalidArgument) {
		t.Errorf("nil pool Free = %v", err)
	}
	if err := np.ReleaseCache(); !errors.Is(err, op.ErrInvalidArgument) {
		t.Errorf("nil pool ReleaseCache = %v", err)
	}
	if err := np.Close(); !errors.Is(err, op.ErrInvalidArgument) {
		t.Errorf("nil pool Close = %v", err)
	}
	if s := np.Stats(); s != (Stats{}) {
		t.Errorf("nil pool Stats = %+v", s)
	}
}

func TestCrossStreamReuse(t *testing.T) {
	dev := newFakeAllocator(0)
	p := New[fakeMem](dev, Options{})

	// Freed on stream 1 with a fence not yet done.
	a := mustAlloc(t, p, 4096, 1)
	aMem := a.Mem
	fa := &fakeFence{}
	mustFree(t, p, a, 1, fa)

	b := mustAlloc(t, p, 4096, 2)
	if b.Mem == aMem {
		t.Fatalf("stream 2 got the block freed on stream 1 before its fence was done")
	}
	if fa.closes.Load() != 0 {
		t.Errorf("the fence of a cached block was closed before the block was reused")
	}

	// Once the fence is done, another stream may have it.
	fa.done.Store(true)
	c := mustAlloc(t, p, 4096, 3)
	if c.Mem != aMem {
		t.Fatalf("stream 3 did not get the cached block after its fence was done (got %d, want %d)", c.Mem, aMem)
	}
	if fa.closes.Load() != 1 {
		t.Errorf("the fence of a reused block was closed %d times, want 1", fa.closes.Load())
	}

	// The same stream reuses at once, fence done or not.
	cMem := c.Mem
	fc := &fakeFence{}
	mustFree(t, p, c, 3, fc)
	d := mustAlloc(t, p, 4096, 3)
	if d.Mem != cMem {
		t.Fatalf("stream 3 did not reuse its own freed block at once")
	}
	if fc.closes.Load() != 1 {
		t.Errorf("the fence of a block reused on its own stream was closed %d times, want 1", fc.closes.Load())
	}

	// A nil fence means nothing is pending: any stream may reuse it.
	dMem := d.Mem
	mustFree(t, p, d, 3, nil)
	e := mustAlloc(t, p, 4096, 4)
	if e.Mem != dMem {
		t.Fatalf("a block freed with a nil fence was not reused on another stream")
	}

	// A Fence without Close works too.
	eMem := e.Mem
	pf := &plainFence{}
	mustFree(t, p, e, 4, pf)
	f := mustAlloc(t, p, 4096, 5)
	if f.Mem == eMem {
		t.Fatalf("stream 5 got a block whose plain fence is not done")
	}
	pf.done = true
	g := mustAlloc(t, p, 4096, 5)
	if g.Mem != eMem {
		t.Fatalf("stream 5 did not get the block once its plain fence was done")
	}

	// Live: b, f, g. Device allocations: a, b, f; the rest were cache hits.
	checkStats(t, "end", p, Stats{InUseBytes: 3 * 4096, InUseBlocks: 3, PeakInUseBytes: 3 * 4096,
		Allocs: 7, CacheHits: 4, Frees: 4, DeviceAllocs: 3})
	for _, blk := range []*Block[fakeMem]{b, f, g} {
		mustFree(t, p, blk, 0, nil)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	dev.checkAllReturned(t)
}

func TestReuseOrder(t *testing.T) {
	dev := newFakeAllocator(0)
	p := New[fakeMem](dev, Options{})
	x := mustAlloc(t, p, 512, 1)
	y := mustAlloc(t, p, 512, 1)
	z := mustAlloc(t, p, 512, 2)
	xMem, yMem, zMem := x.Mem, y.Mem, z.Mem
	// Freed in order x (stream 1), y (stream 1), z (stream 2, done fence).
	mustFree(t, p, x, 1, nil)
	mustFree(t, p, y, 1, nil)
	done := &fakeFence{}
	done.done.Store(true)
	mustFree(t, p, z, 2, done)

	// Stream 1 prefers its own blocks, most recent first, over the more recent
	// block of stream 2.
	got1 := mustAlloc(t, p, 512, 1)
	got2 := mustAlloc(t, p, 512, 1)
	got3 := mustAlloc(t, p, 512, 1)
	if got1.Mem != yMem || got2.Mem != xMem || got3.Mem != zMem {
		t.Errorf("reuse order %d %d %d, want y=%d x=%d z=%d", got1.Mem, got2.Mem, got3.Mem, yMem, xMem, zMem)
	}
	for _, b := range []*Block[fakeMem]{got1, got2, got3} {
		mustFree(t, p, b, 1, nil)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	dev.checkAllReturned(t)
}

func TestLimit(t *testing.T) {
	dev := newFakeAllocator(0)
	p := New[fakeMem](dev, Options{Name: "lim", LimitBytes: 4096})
	checkStats(t, "new", p, Stats{LimitBytes: 4096})

	a := mustAlloc(t, p, 2048, 1)
	b := mustAlloc(t, p, 2048, 1)

	// Full: the cache is empty so nothing can make room.
	_, err := p.Alloc(1, 1)
	var oom *OOMError
	if !errors.Is(err, op.ErrOutOfMemory) || !errors.As(err, &oom) {
		t.Fatalf("Alloc past the limit = %v, want an *OOMError matching ErrOutOfMemory", err)
	}
	wantOOM := OOMError{Pool: "pool lim", RequestedBytes: 1, ClassBytes: 512, InUseBytes: 4096, LimitBytes: 4096}
	if *oom != wantOOM {
		t.Errorf("OOMError %+v, want %+v", *oom, wantOOM)
	}
	for _, s := range []string{"pool lim", "out of memory", "1 bytes", "size class 512 bytes", "in use 4096 bytes (4.0 KiB)", "limit 4096 bytes (4.0 KiB)", "exceed the limit"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	checkStats(t, "refused at the limit", p, Stats{InUseBytes: 4096, InUseBlocks: 2, PeakInUseBytes: 4096, LimitBytes: 4096,
		Allocs: 2, DeviceAllocs: 2, OutOfMemory: 1})

	// A cached block of the right class is used without releasing anything.
	aMem := a.Mem
	mustFree(t, p, a, 1, nil)
	a2 := mustAlloc(t, p, 2048, 1)
	if a2.Mem != aMem {
		t.Errorf("at the limit, a cache hit was not used")
	}
	checkStats(t, "hit at the limit", p, Stats{InUseBytes: 4096, InUseBlocks: 2, PeakInUseBytes: 4096, LimitBytes: 4096,
		Allocs: 3, CacheHits: 1, Frees: 1, DeviceAllocs: 2, OutOfMemory: 1})

	// Another class does not fit with the cache: the cache is released, then it fits.
	mustFree(t, p, a2, 1, nil)
	c := mustAlloc(t, p, 1024, 1)
	checkStats(t, "released for the limit", p, Stats{InUseBytes: 3072, InUseBlocks: 2, PeakInUseBytes: 4096, LimitBytes: 4096,
		Allocs: 4, CacheHits: 1, Frees: 2, DeviceAllocs: 3, DeviceFrees: 1, CacheReleases: 1, OutOfMemory: 1})

	// Exactly up to the limit is allowed.
	d := mustAlloc(t, p, 1024, 1)
	checkStats(t, "exactly at the limit", p, Stats{InUseBytes: 4096, InUseBlocks: 3, PeakInUseBytes: 4096, LimitBytes: 4096,
		Allocs: 5, CacheHits: 1, Frees: 2, DeviceAllocs: 4, DeviceFrees: 1, CacheReleases: 1, OutOfMemory: 1})

	// With cache that cannot make enough room, the cache is kept.
	mustFree(t, p, d, 1, nil)
	if _, err := p.Alloc(2048, 1); !errors.Is(err, op.ErrOutOfMemory) {
		t.Fatalf("Alloc(2048) with 3072 in use under a 4096 limit = %v, want ErrOutOfMemory", err)
	}
	checkStats(t, "cache kept", p, Stats{InUseBytes: 3072, InUseBlocks: 2, CachedBytes: 1024, CachedBlocks: 1, PeakInUseBytes: 4096,
		LimitBytes: 4096, Allocs: 5, CacheHits: 1, Frees: 3, DeviceAllocs: 4, DeviceFrees: 1, CacheReleases: 1, OutOfMemory: 2})

	// A request larger than the limit itself.
	if _, err := p.Alloc(5000, 1); !errors.As(err, &oom) || oom.ClassBytes != 5120 {
		t.Fatalf("Alloc(5000) under a 4096 limit = %v, want an *OOMError with class 5120", err)
	}

	for _, blk := range []*Block[fakeMem]{b, c} {
		mustFree(t, p, blk, 1, nil)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	dev.checkAllReturned(t)
}

func TestDeviceOutOfMemory(t *testing.T) {
	dev := newFakeAllocator(4096)
	p := New[fakeMem](dev, Options{Name: "gpu-test"})

	a := mustAlloc(t, p, 2048, 1)
	b := mustAlloc(t, p, 1024, 1)
	mustFree(t, p, a, 1, nil) // cached: 2048; the device holds 3072 of 4096

	// 1536 does not fit beside the cache; releasing it makes room.
	c := mustAlloc(t, p, 1536, 1)
	checkStats(t, "released and retried", p, Stats{InUseBytes: 2560, InUseBlocks: 2, PeakInUseBytes: 3072,
		Allocs: 3, Frees: 1, DeviceAllocs: 4, DeviceFrees: 1, CacheReleases: 1})
	if r := dev.record(); !slices.Equal(r.allocSizes, []int64{2048, 1024, 1536}) || !slices.Equal(r.freeSizes, []int64{2048}) {
		t.Errorf("device allocations %v and frees %v, want [2048 1024 1536] and [2048]", r.allocSizes, r.freeSizes)
	}

	// 4096 cannot fit at all: release (nothing), retry once, then the error.
	_, err := p.Alloc(4096, 1)
	var oom *OOMError
	if !errors.As(err, &oom) || !errors.Is(err, op.ErrOutOfMemory) || !errors.Is(err, errFakeOOM) {
		t.Fatalf("Alloc(4096) on a full device = %v, want an *OOMError wrapping the device's error", err)
	}
	if oom.Pool != "pool gpu-test" || oom.RequestedBytes != 4096 || oom.ClassBytes != 4096 || oom.InUseBytes != 2560 ||
		oom.CachedBytes != 0 || oom.LimitBytes != 0 || oom.PendingBytes != 0 {
		t.Errorf("OOMError sizes %+v", *oom)
	}
	for _, s := range []string{"pool gpu-test", "out of memory allocating 4096 bytes (4.0 KiB)", "in use 2560 bytes (2.5 KiB)", "no limit", "fake device", "2560 of 4096 in use"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	checkStats(t, "out of memory", p, Stats{InUseBytes: 2560, InUseBlocks: 2, PeakInUseBytes: 3072,
		Allocs: 3, Frees: 1, DeviceAllocs: 6, DeviceFrees: 1, CacheReleases: 2, OutOfMemory: 1})

	// An injected OOM that the retry survives.
	mustFree(t, p, c, 1, nil)
	dev.mu.Lock()
	dev.failNext = []error{errFakeOOM}
	dev.mu.Unlock()
	d := mustAlloc(t, p, 512, 1)
	checkStats(t, "injected OOM, retry succeeded", p, Stats{InUseBytes: 1024 + 512, InUseBlocks: 2, PeakInUseBytes: 3072,
		Allocs: 4, Frees: 2, DeviceAllocs: 8, DeviceFrees: 2, CacheReleases: 3, OutOfMemory: 1})

	// Any other device error is passed through, wrapped, with no release and no retry.
	mustFree(t, p, d, 1, nil)
	boom := errors.New("driver exploded")
	dev.mu.Lock()
	dev.failNext = []error{boom}
	dev.mu.Unlock()
	_, err = p.Alloc(8192, 1)
	if !errors.Is(err, boom) || errors.Is(err, op.ErrOutOfMemory) || !strings.Contains(err.Error(), "pool gpu-test") ||
		!strings.Contains(err.Error(), "8192") {
		t.Fatalf("Alloc with a failing device = %v, want the device's error wrapped with the pool and size", err)
	}
	checkStats(t, "other error", p, Stats{InUseBytes: 1024, InUseBlocks: 1, CachedBytes: 512, CachedBlocks: 1, PeakInUseBytes: 3072,
		Allocs: 4, Frees: 3, DeviceAllocs: 9, DeviceFrees: 2, CacheReleases: 3, OutOfMemory: 1})

	mustFree(t, p, b, 1, nil)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	dev.checkAllReturned(t)
}

func TestDeviceFreeErrors(t *testing.T) {
	dev := newFakeAllocator(0)
	p := New[fakeMem](dev, Options{})
	a := mustAlloc(t, p, 512, 0)
	mustFree(t, p, a, 0, nil)
	errFree := errors.New("free refused")
	dev.mu.Lock()
	dev.failFree = errFree
	dev.mu.Unlock()
	if err := p.ReleaseCache(); !errors.Is(err, errFree) {
		t.Fatalf("ReleaseCache with a failing device Free = %v, want the device's error", err)
	}
	// The block is forgotten, never freed twice.
	checkStats(t, "after failed release", p, Stats{PeakInUseBytes: 512, Allocs: 1, Frees: 1, DeviceAllocs: 1, DeviceFrees: 1})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	dev.checkClean(t)
}

func TestClose(t *testing.T) {
	dev := newFakeAllocator(0)
	p := New[fakeMem](dev, Options{Name: "c"})
	a := mustAlloc(t, p, 1000, 1)
	b := mustAlloc(t, p, 3000, 1)
	c := mustAlloc(t, p, 512, 1)
	fc := &fakeFence{}
	mustFree(t, p, c, 1, fc)

	err := p.Close()
	if err == nil || !strings.Contains(err.Error(), "2 blocks (4096 bytes (4.0 KiB)) still in use") || !strings.Contains(err.Error(), "pool c") {
		t.Fatalf("Close with 2 live blocks = %v, want an error naming 2 blocks and 4096 bytes", err)
	}
	if fc.closes.Load() != 1 {
		t.Errorf("Close closed the cached block's fence %d times, want 1", fc.closes.Load())
	}
	if r := dev.record(); r.liveBlocks != 2 {
		t.Errorf("after Close the device holds %d blocks, want the 2 live ones", r.liveBlocks)
	}
	if _, err := p.Alloc(10, 1); !errors.Is(err, op.ErrClosed) {
		t.Errorf("Alloc after Close = %v, want ErrClosed", err)
	}

	// Freeing after Close hands the block straight to the device.
	fa := &fakeFence{}
	mustFree(t, p, a, 1, fa)
	if fa.closes.Load() != 1 {
		t.Errorf("Free after Close closed the fence %d times, want 1", fa.closes.Load())
	}
	mustFree(t, p, b, 1, nil)
	if err := p.Free(b, 1, nil); !errors.Is(err, op.ErrClosed) {
		t.Errorf("double Free after Close = %v, want ErrClosed", err)
	}
	checkStats(t, "closed and drained", p, Stats{PeakInUseBytes: 4608, Allocs: 3, Frees: 3, DeviceAllocs: 3, DeviceFrees: 3, OutOfMemory: 0})
	if err := p.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := p.ReleaseCache(); err != nil {
		t.Errorf("ReleaseCache after Close = %v, want nil (nothing cached)", err)
	}
	dev.checkAllReturned(t)
}

// TestCloseDuringAlloc: an allocation in flight when Close runs gives its
// block back and fails with ErrClosed.
func TestCloseDuringAlloc(t *testing.T) {
	dev := newFakeAllocator(0)
	entered := make(chan struct{})
	proceed := make(chan struct{})
	dev.onAlloc = func() {
		close(entered)
		<-proceed
	}
	p := New[fakeMem](dev, Options{})
	result := make(chan error, 1)
	go func() {
		_, err := p.Alloc(100, 0)
		result <- err
	}()
	<-entered
	if err := p.Close(); err != nil {
		t.Fatalf("Close with an allocation in flight = %v, want nil (the block is not the caller's yet)", err)
	}
	close(proceed)
	if err := <-result; !errors.Is(err, op.ErrClosed) {
		t.Fatalf("Alloc that finished after Close = %v, want ErrClosed", err)
	}
	checkStats(t, "after", p, Stats{DeviceAllocs: 1, DeviceFrees: 1})
	dev.checkAllReturned(t)
}

// TestAllocatorCalledUnlocked: an Allocator that calls back into the pool
// must not deadlock, which shows the pool's lock is not held around it.
func TestAllocatorCalledUnlocked(t *testing.T) {
	dev := newFakeAllocator(2048)
	var p *Pool[fakeMem]
	dev.onAlloc = func() { _ = p.Stats() }
	dev.onFree = func() { _ = p.Stats() }
	p = New[fakeMem](dev, Options{})

	done := make(chan struct{})
	go func() {
		defer close(done)
		a, _ := p.Alloc(2048, 0)
		_ = p.Free(a, 0, nil)
		b, _ := p.Alloc(1024, 0) // out of memory: release (Free) and retry
		_ = p.Free(b, 0, nil)
		_ = p.Close()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("deadlock: the pool held its lock while calling the Allocator")
	}
	checkStats(t, "after", p, Stats{PeakInUseBytes: 2048, Allocs: 2, Frees: 2, DeviceAllocs: 3, DeviceFrees: 2, CacheReleases: 1})
	dev.checkAllReturned(t)
}

// TestLogsFreeFailureOnRetryPath: a device Free that fails while the cache is
// released for a retry is not the caller's error, so it is logged.
func TestLogsFreeFailureOnRetryPath(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dev := newFakeAllocator(1024)
	p := New[fakeMem](dev, Options{Name: "logged", Logger: logger})
	a := mustAlloc(t, p, 1024, 0)
	mustFree(t, p, a, 0, nil)
	dev.mu.Lock()
	dev.failFree = errors.New("free refused")
	dev.mu.Unlock()
	b := mustAlloc(t, p, 512, 0) // OOM, release (Free fails but frees), retry succeeds
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	for _, s := range []string{"level=WARN", "pool logged", "free refused", "level=DEBUG", "retrying"} {
		if !strings.Contains(out, s) {
			t.Errorf("log %q does not contain %q", out, s)
		}
	}
	dev.mu.Lock()
	dev.failFree = nil
	dev.mu.Unlock()
	mustFree(t, p, b, 0, nil)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	dev.checkAllReturned(t)
}

// TestAccountingOverflow: without a limit, a device that hands out absurd
// sizes still cannot overflow the pool's int64 byte counts.
func TestAccountingOverflow(t *testing.T) {
	dev := newFakeAllocator(0)
	p := New[fakeMem](dev, Options{Name: "huge"})
	a := mustAlloc(t, p, MaxSizeBytes, 0)
	_, err := p.Alloc(MaxSizeBytes, 0)
	var oom *OOMError
	if !errors.As(err, &oom) || oom.Err != nil || !strings.Contains(err.Error(), "overflow") {
		t.Fatalf("second Alloc(MaxSizeBytes) = %v, want an *OOMError about overflow", err)
	}
	if s := p.Stats(); s.InUseBytes != MaxSizeBytes || s.DeviceAllocs != 1 || s.OutOfMemory != 1 {
		t.Errorf("stats %+v, want one block of %d bytes, one device call, one out-of-memory", s, MaxSizeBytes)
	}
	mustFree(t, p, a, 0, nil)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	dev.checkAllReturned(t)
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestCacheHitAllocations pins the heap cost of a cache hit: the new *Block
// (see cachedBlock for why it is new each time), and nothing else.
func TestCacheHitAllocations(t *testing.T) {
	p := New[fakeMem](newFakeAllocator(0), Options{})
	warm := mustAlloc(t, p, 4096, 1)
	mustFree(t, p, warm, 1, nil)
	f := &fakeFence{}
	allocs := testing.AllocsPerRun(1000, func() {
		b, err := p.Alloc(4096, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Free(b, 1, f); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("a cache-hit Alloc+Free allocates %.1f times on the Go heap, want at most 1 (the Block)", allocs)
	}
}

func BenchmarkAllocFreeCacheHit(b *testing.B) {
	p := New[fakeMem](newFakeAllocator(0), Options{})
	warm, err := p.Alloc(1<<20, 1)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Free(warm, 1, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		blk, err := p.Alloc(1<<20, 1)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Free(blk, 1, nil); err != nil {
			b.Fatal(err)
		}
	}
	if s := p.Stats(); s.DeviceAllocs != 1 {
		b.Fatalf("the benchmark missed the cache: %d device allocations", s.DeviceAllocs)
	}
}
