package pool

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
)

// blockState is what the checker knows about one device block.
type blockState struct {
	live       bool
	freeStream StreamID
	fence      *fakeFence // nil: freed with a nil fence
}

// usageChecker watches every block handed out by a pool, from the caller's
// side: no block is held twice at once, and no block freed on one stream
// with a pending fence is handed to another stream.
type usageChecker struct {
	mu       sync.Mutex
	blocks   map[fakeMem]*blockState
	problems []string
}

func (c *usageChecker) allocated(m fakeMem, s StreamID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.blocks[m]
	if st == nil {
		st = &blockState{}
		c.blocks[m] = st
	}
	switch {
	case st.live:
		c.problems = append(c.problems, fmt.Sprintf("block %d handed out while still held", m))
	case st.fence != nil && st.freeStream != s && !st.fence.Done():
		c.problems = append(c.problems, fmt.Sprintf("block %d freed on stream %d handed to stream %d before its fence was done", m, st.freeStream, s))
	}
	st.live = true
}

// freeing is called just before the pool's Free: until then the pool cannot
// hand the block to anyone else.
func (c *usageChecker) freeing(m fakeMem, s StreamID, f *fakeFence) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.blocks[m]
	st.live, st.freeStream, st.fence = false, s, f
}

type stressConfig struct {
	capacityBytes int64 // the fake device's capacity; 0: none
	limitBytes    int64 // the pool's limit; 0: none
}

// TestConcurrentStress runs many goroutines allocating, freeing (on several
// streams, with fences a simulated device completes later), releasing the
// cache and reading stats, against a device that runs out of memory or a
// pool limit; then checks the accounting against the fake device exactly.
// Run it with -race.
func TestConcurrentStress(t *testing.T) {
	for name, cfg := range map[string]stressConfig{
		"device capacity": {capacityBytes: 128 << 10},
		"pool limit":      {limitBytes: 128 << 10},
	} {
		t.Run(name, func(t *testing.T) { runStress(t, cfg) })
	}
}

func runStress(t *testing.T, cfg stressConfig) {
	const (
		nWorkers    = 16
		nIterations = 600
		maxHeld     = 6
	)
	sizes := []int64{0, 100, 512, 1000, 2048, 5000, 16 << 10, 40 << 10, 64 << 10}

	dev := newFakeAllocator(cfg.capacityBytes)
	p := New[fakeMem](dev, Options{Name: "stress", LimitBytes: cfg.limitBytes})
	checker := &usageChecker{blocks: map[fakeMem]*blockState{}}

	// The simulated device completes fences some time after they are recorded.
	pending := make(chan *fakeFence, 1<<16)
	deviceDone := make(chan struct{})
	go func() {
		defer close(deviceDone)
		for f := range pending {
			f.done.Store(true)
		}
	}()

	var (
		fencesMu    sync.Mutex
		fences      []*fakeFence
		nAllocs     atomic.Int64
		nOOM        atomic.Int64
		limitBroken atomic.Int64
		errsMu      sync.Mutex
		errs        []error
	)
	var wg sync.WaitGroup
	for w := range nWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			stream := StreamID(w % 4) // 0..3: several goroutines share each stream
			var held []*Block[fakeMem]
			free := func(b *Block[fakeMem]) {
				var f *fakeFence
				var fence Fence
				if rng.IntN(4) != 0 {
					f = &fakeFence{}
					fence = f
					fencesMu.Lock()
					fences = append(fences, f)
					fencesMu.Unlock()
				}
				checker.freeing(b.Mem, stream, f)
				if err := p.Free(b, stream, fence); err != nil {
					errsMu.Lock()
					errs = append(errs, err)
					errsMu.Unlock()
				}
				if f != nil {
					select {
					case pending <- f:
					default:
						f.done.Store(true)
					}
				}
			}
			for range nIterations {
				switch r := rng.IntN(100); {
				case r < 55 && len(held) < maxHeld:
					b, err := p.Alloc(sizes[rng.IntN(len(sizes))], stream)
					if errors.Is(err, op.ErrOutOfMemory) {
						nOOM.Add(1)
						continue
					}
					if err != nil {
						errsMu.Lock()
						errs = append(errs, err)
						errsMu.Unlock()
						continue
					}
					nAllocs.Add(1)
					checker.allocated(b.Mem, stream)
					held = append(held, b)
				case r < 95 && len(held) > 0:
					i := rng.IntN(len(held))
					b := held[i]
					held = append(held[:i], held[i+1:]...)
					free(b)
				case r < 97:
					if err := p.ReleaseCache(); err != nil {
						errsMu.Lock()
						errs = append(errs, err)
						errsMu.Unlock()
					}
				default:
					s := p.Stats()
					if cfg.limitBytes > 0 && s.InUseBytes+s.CachedBytes > cfg.limitBytes {
						limitBroken.Add(1)
					}
				}
			}
			for _, b := range held {
				free(b)
			}
		}()
	}
	wg.Wait()
	close(pending)
	<-deviceDone

	for _, err := range errs {
		t.Errorf("unexpected error: %v", err)
	}
	for _, pr := range checker.problems {
		t.Error(pr)
	}
	if n := limitBroken.Load(); n > 0 {
		t.Errorf("Stats showed in-use + cached above the limit %d times", n)
	}
	dev.checkClean(t)
	if t.Failed() {
		return
	}

	s := p.Stats()
	r := dev.record()
	want := s
	want.InUseBytes, want.InUseBlocks = 0, 0
	want.Allocs = nAllocs.Load()
	want.Frees = nAllocs.Load()
	want.OutOfMemory = nOOM.Load()
	want.CachedBytes, want.CachedBlocks = r.liveBytes, int64(r.liveBlocks)
	want.DeviceAllocs, want.DeviceFrees = int64(r.allocCalls), int64(r.freeCalls)
	want.CacheHits = want.Allocs - int64(len(r.allocSizes)) // every other allocation came from the device
	want.LimitBytes = cfg.limitBytes
	if s != want {
		t.Fatalf("stats after all blocks were freed\n got  %+v\n want %+v", s, want)
	}
	if s.CacheHits == 0 || s.CacheReleases == 0 || s.OutOfMemory == 0 {
		t.Errorf("the stress run did not exercise hits, releases and out-of-memory: %+v", s)
	}
	capBytes := max(cfg.capacityBytes, cfg.limitBytes)
	if s.PeakInUseBytes <= 0 || s.PeakInUseBytes > capBytes {
		t.Errorf("PeakInUseBytes %d, want in (0, %d]", s.PeakInUseBytes, capBytes)
	}
	if cfg.limitBytes > 0 && r.maxLiveBytes > cfg.limitBytes {
		t.Errorf("the device held up to %d bytes for a pool limited to %d", r.maxLiveBytes, cfg.limitBytes)
	}
	t.Logf("stats: %+v", s)

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	dev.checkAllReturned(t)
	for i, f := range fences {
		if n := f.closes.Load(); n != 1 {
			t.Fatalf("fence %d of %d was closed %d times, want exactly 1", i, len(fences), n)
		}
	}
}
