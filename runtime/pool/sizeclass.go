package pool

import "math/bits"

// Size classes.
//
// Every request is rounded up to a size class, and a cached block is reused
// only for a request of exactly the same class:
//
//   - 0 to 1 MiB: multiples of 512 bytes (MinClassBytes). A request of 0 bytes
//     gets the 512-byte class. Waste: under 512 bytes per block.
//   - above 1 MiB: four classes per power of two. A request in (2^k, 2^(k+1)]
//     is rounded up to the next multiple of 2^(k-2), so the classes are
//     1.25, 1.5, 1.75 and 2 times 2^k. Waste: under 2^(k-2), that is under a
//     quarter of the request (and under a fifth of the class).
//
// Small tensors (norm weights, biases, per-token vectors) are many and
// varied, and a 512-byte step wastes little on them while keeping the small
// classes to 2048. Above 1 MiB a fixed step would make so many classes that
// freed blocks would rarely be asked for again; four per power of two keeps
// the classes few while bounding the waste. (Alignment is the Allocator's
// business: the pool hands out the blocks it returns, never offsets into them.)
const (
	// MinClassBytes is the smallest size class and the granularity of the
	// classes up to SmallLimitBytes.
	MinClassBytes int64 = 512
	// SmallLimitBytes is the largest size rounded to a multiple of
	// MinClassBytes; larger sizes get four classes per power of two.
	SmallLimitBytes int64 = 1 << 20
	// MaxSizeBytes is the largest request that has a size class: the class
	// of anything larger would not fit in an int64.
	MaxSizeBytes int64 = 7 << 60
)

// SizeClass returns the size class, in bytes, that a request of sizeBytes is
// rounded up to (see the table above). It returns -1 when sizeBytes is
// negative or larger than MaxSizeBytes.
func SizeClass(sizeBytes int64) int64 {
	switch {
	case sizeBytes < 0 || sizeBytes > MaxSizeBytes:
		return -1
	case sizeBytes == 0:
		return MinClassBytes
	case sizeBytes <= SmallLimitBytes:
		return roundUp(sizeBytes, MinClassBytes)
	}
	// sizeBytes is in (2^k, 2^(k+1)] with k >= 20.
	k := bits.Len64(uint64(sizeBytes-1)) - 1
	step := int64(1) << (k - 2)
	// No overflow: sizeBytes <= 7<<60 and step <= 1<<60.
	return roundUp(sizeBytes, step)
}

// roundUp rounds n up to a multiple of step, a power of two.
func roundUp(n, step int64) int64 {
	return (n + step - 1) &^ (step - 1)
}
