// Package pool is the caching allocator both backends use: one Pool per
// device, in front of the device's own allocator (cuMemAlloc/cuMemFree for the
// GPU backend, Go byte slices for the CPU backend), given to the pool as an
// Allocator.
//
// Asking the CUDA driver for memory is a driver call that costs far more than
// a lookup in a map, and cuMemFree waits for the device, while an inference
// step allocates and frees the same shapes over and over. A Pool therefore
// keeps freed blocks and hands them out again:
//
//   - Size classes. A request is rounded up to a class (SizeClass): multiples
//     of 512 bytes up to 1 MiB, then four classes per power of two; the waste
//     is under 512 bytes, or under 25% of the request. A freed block is reused
//     only for a request of the same class.
//   - Streams. A block is freed on a stream (StreamID), optionally with a Fence
//     that says when the device work queued before the free has finished. It
//     is reused on the same stream at once (stream order keeps it safe), and
//     on another stream only once its fence is nil or Done.
//   - Limit. Options.LimitBytes caps in-use plus cached bytes. An allocation
//     that would pass it releases the cache (when that would make room) and,
//     if it still does not fit, fails with an *OOMError.
//   - Out of memory. When the Allocator fails with op.ErrOutOfMemory, the pool
//     hands its whole cache back, retries once, and otherwise returns an
//     *OOMError (matching op.ErrOutOfMemory) that gives the sizes involved.
//   - Statistics (Stats): bytes and blocks in use and cached, peak, and counts
//     of allocations, cache hits, device calls, releases and failures.
//
// A Pool is safe for concurrent use. It never panics on misuse: freeing a nil
// block, a block of another pool or a block twice returns an error, and so
// does allocating from a closed pool.
//
// Typical use by a backend:
//
//	p := pool.New[cuda.DevicePtr](deviceAllocator, pool.Options{Name: "cuda:0", LimitBytes: limit, Logger: log})
//	b, err := p.Alloc(nBytes, stream)      // b.Mem is the device pointer
//	...                                    // queue work using b.Mem on stream
//	err = p.Free(b, stream, eventOnStream) // the pool now owns the fence
//	...
//	err = p.Close()                        // hands the cache back; reports leaks
package pool
