package pool

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
)

// fakeMem is the block handle of fakeAllocator: an id, never 0 (0 is the
// zero handle Free leaves in Block.Mem).
type fakeMem uint64

// fakeAllocator is a device allocator with a capacity, failure injection,
// and a record of every call. It notes misuse (freeing an unknown or already
// freed block) in problems instead of failing, so that tests can check it.
type fakeAllocator struct {
	mu            sync.Mutex
	capacityBytes int64 // 0: unlimited
	liveBytes     int64
	maxLiveBytes  int64
	live          map[fakeMem]int64 // id -> size
	freed         map[fakeMem]bool
	nextID        fakeMem
	allocCalls    int
	freeCalls     int
	allocSizes    []int64 // sizes of successful allocations, in order
	freeSizes     []int64 // sizes of successful frees, in order
	failNext      []error // returned by the next Alloc calls, in order, before anything else
	failFree      error   // returned by every Free (the block is still released)
	onAlloc       func()  // called at the start of Alloc, without a.mu held
	onFree        func()  // called at the start of Free, without a.mu held
	problems      []string
}

func newFakeAllocator(capacityBytes int64) *fakeAllocator {
	return &fakeAllocator{capacityBytes: capacityBytes, live: map[fakeMem]int64{}, freed: map[fakeMem]bool{}}
}

var errFakeOOM = fmt.Errorf("fake device: %w", op.ErrOutOfMemory)

func (a *fakeAllocator) Alloc(sizeBytes int64) (fakeMem, error) {
	if a.onAlloc != nil {
		a.onAlloc()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.allocCalls++
	if len(a.failNext) > 0 {
		err := a.failNext[0]
		a.failNext = a.failNext[1:]
		return 0, err
	}
	if sizeBytes <= 0 {
		a.problems = append(a.problems, fmt.Sprintf("Alloc(%d): not a positive size", sizeBytes))
	}
	if a.capacityBytes > 0 && a.liveBytes+sizeBytes > a.capacityBytes {
		return 0, fmt.Errorf("%w: %d bytes requested, %d of %d in use", errFakeOOM, sizeBytes, a.liveBytes, a.capacityBytes)
	}
	a.nextID++
	a.live[a.nextID] = sizeBytes
	a.liveBytes += sizeBytes
	a.maxLiveBytes = max(a.maxLiveBytes, a.liveBytes)
	a.allocSizes = append(a.allocSizes, sizeBytes)
	return a.nextID, nil
}

func (a *fakeAllocator) Free(m fakeMem) error {
	if a.onFree != nil {
		a.onFree()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.freeCalls++
	size, ok := a.live[m]
	switch {
	case ok:
		delete(a.live, m)
		a.freed[m] = true
		a.liveBytes -= size
		a.freeSizes = append(a.freeSizes, size)
	case a.freed[m]:
		a.problems = append(a.problems, fmt.Sprintf("Free(%d): double free", m))
		return errors.New("fake device: double free")
	default:
		a.problems = append(a.problems, fmt.Sprintf("Free(%d): not allocated here", m))
		return errors.New("fake device: unknown block")
	}
	return a.failFree
}

// snapshot is the fake's record, read under its lock.
type fakeRecord struct {
	allocCalls, freeCalls int
	liveBlocks            int
	liveBytes             int64
	maxLiveBytes          int64
	allocSizes, freeSizes []int64
	problems              []string
}

func (a *fakeAllocator) record() fakeRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return fakeRecord{
		allocCalls: a.allocCalls, freeCalls: a.freeCalls,
		liveBlocks: len(a.live), liveBytes: a.liveBytes, maxLiveBytes: a.maxLiveBytes,
		allocSizes: append([]int64(nil), a.allocSizes...), freeSizes: append([]int64(nil), a.freeSizes...),
		problems: append([]string(nil), a.problems...),
	}
}

// checkClean fails the test if the fake saw any misuse.
func (a *fakeAllocator) checkClean(t *testing.T) {
	t.Helper()
	if r := a.record(); len(r.problems) > 0 {
		t.Errorf("device allocator misused: %v", r.problems)
	}
}

// checkAllReturned fails the test unless every block went back to the fake.
func (a *fakeAllocator) checkAllReturned(t *testing.T) {
	t.Helper()
	a.checkClean(t)
	if r := a.record(); r.liveBlocks != 0 || r.liveBytes != 0 {
		t.Errorf("device still holds %d blocks (%d bytes) after Close", r.liveBlocks, r.liveBytes)
	}
}

// fakeFence is a Fence whose Done the test controls, counting Close calls.
type fakeFence struct {
	done   atomic.Bool
	closes atomic.Int32
}

func (f *fakeFence) Done() bool   { return f.done.Load() }
func (f *fakeFence) Close() error { f.closes.Add(1); return nil }

// plainFence is a Fence without Close.
type plainFence struct{ done bool }

func (f *plainFence) Done() bool { return f.done }
