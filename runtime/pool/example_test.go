package pool_test

import (
	"errors"
	"fmt"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/pool"
)

// byteAllocator is the shape of the CPU backend's Allocator: Go byte slices.
type byteAllocator struct{}

func (byteAllocator) Alloc(sizeBytes int64) ([]byte, error) { return make([]byte, sizeBytes), nil }
func (byteAllocator) Free([]byte) error                     { return nil }

func Example() {
	p := pool.New[[]byte](byteAllocator{}, pool.Options{Name: "cpu", LimitBytes: 1 << 20})

	a, err := p.Alloc(1000, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("asked", a.SizeBytes, "got", a.ClassBytes, "bytes, len", len(a.Mem))
	if err := p.Free(a, 0, nil); err != nil {
		fmt.Println(err)
	}

	b, _ := p.Alloc(800, 0) // same class: served from the cache
	s := p.Stats()
	fmt.Println("device allocations", s.DeviceAllocs, "cache hits", s.CacheHits)

	_, err = p.Alloc(2<<20, 0) // past the limit
	fmt.Println("out of memory:", errors.Is(err, op.ErrOutOfMemory))

	_ = p.Free(b, 0, nil)
	fmt.Println("close:", p.Close())
	// Output:
	// asked 1000 got 1024 bytes, len 1024
	// device allocations 1 cache hits 1
	// out of memory: true
	// close: <nil>
}
