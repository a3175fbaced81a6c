package pool

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestSizeClassTable(t *testing.T) {
	const (
		KiB = int64(1) << 10
		MiB = int64(1) << 20
		GiB = int64(1) << 30
	)
	tests := []struct {
		sizeBytes, want int64
	}{
		// 512-byte granularity up to 1 MiB; zero gets the smallest class.
		{0, 512},
		{1, 512},
		{511, 512},
		{512, 512},
		{513, 1024},
		{1000, 1024},
		{1024, 1024},
		{4097, 4608},
		{100_000, 100_352}, // 196*512 = 100352
		{MiB - 1, MiB},
		{MiB, MiB},
		// Four classes per power of two above 1 MiB: steps of 256 KiB in (1, 2] MiB.
		{MiB + 1, MiB + 256*KiB},
		{MiB + 256*KiB, MiB + 256*KiB},
		{MiB + 256*KiB + 1, MiB + 512*KiB},
		{MiB + 700*KiB, MiB + 768*KiB},
		{2*MiB - 1, 2 * MiB},
		{2 * MiB, 2 * MiB},
		// Steps of 512 KiB in (2, 4] MiB.
		{2*MiB + 1, 2*MiB + 512*KiB},
		{3 * MiB, 3 * MiB},
		{3*MiB + 1, 3*MiB + 512*KiB},
		{4 * MiB, 4 * MiB},
		{4*MiB + 1, 5 * MiB},
		// Large sizes.
		{GiB + 1, GiB + 256*MiB},
		{3*GiB - 5, 3 * GiB},
		{80 * GiB, 80 * GiB},
		{6<<60 + 1, 7 << 60},
		{MaxSizeBytes, 7 << 60},
		// No class: negative, or a class that would overflow int64.
		{-1, -1},
		{math.MinInt64, -1},
		{MaxSizeBytes + 1, -1},
		{math.MaxInt64, -1},
	}
	for _, tt := range tests {
		if got := SizeClass(tt.sizeBytes); got != tt.want {
			t.Errorf("SizeClass(%d) = %d, want %d", tt.sizeBytes, got, tt.want)
		}
	}
}

// TestSizeClassProperties checks the documented guarantees over many sizes:
// the class holds the request, is a multiple of 512, is a fixed point, grows
// with the request, and wastes under 512 bytes (up to 1 MiB) or under a
// quarter of the request (above).
func TestSizeClassProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int64{0, 1, 2, 511, 512, 513, SmallLimitBytes - 1, SmallLimitBytes, SmallLimitBytes + 1, MaxSizeBytes - 1, MaxSizeBytes}
	for k := 10; k < 63; k++ {
		p := int64(1) << k
		sizes = append(sizes, p-1, p, p+1)
	}
	for range 20000 {
		// Spread over magnitudes: a random bit length, then a random value of it.
		bitLen := rng.IntN(63)
		sizes = append(sizes, rng.Int64N(int64(1)<<bitLen+1))
	}
	for _, size := range sizes {
		if size > MaxSizeBytes {
			continue
		}
		c := SizeClass(size)
		if c < size || c < MinClassBytes {
			t.Fatalf("SizeClass(%d) = %d, smaller than the request or the minimum", size, c)
		}
		if c%MinClassBytes != 0 {
			t.Fatalf("SizeClass(%d) = %d, not a multiple of %d", size, c, MinClassBytes)
		}
		if SizeClass(c) != c {
			t.Fatalf("SizeClass(SizeClass(%d)) = %d, want %d", size, SizeClass(c), c)
		}
		if size > 0 && SizeClass(size-1) > c {
			t.Fatalf("SizeClass(%d) = %d > SizeClass(%d) = %d: not monotonic", size-1, SizeClass(size-1), size, c)
		}
		waste := c - size
		if size <= SmallLimitBytes {
			if size > 0 && waste >= MinClassBytes {
				t.Fatalf("SizeClass(%d) = %d wastes %d bytes, want < %d", size, c, waste, MinClassBytes)
			}
		} else if waste*4 >= size {
			t.Fatalf("SizeClass(%d) = %d wastes %d bytes, not under a quarter of the request", size, c, waste)
		}
	}
}

// TestSizeClassCount checks that every power-of-two range above 1 MiB has
// exactly four classes.
func TestSizeClassCount(t *testing.T) {
	for k := 20; k < 62; k++ {
		lo, hi := int64(1)<<k, int64(1)<<(k+1)
		classes := map[int64]bool{}
		// Sample the range finely enough to meet every class: 64 points plus the ends.
		for i := int64(0); i <= 64; i++ {
			size := lo + 1 + (hi-lo-1)/64*i
			classes[SizeClass(size)] = true
		}
		classes[SizeClass(hi)] = true
		if len(classes) != 4 {
			t.Errorf("(2^%d, 2^%d]: %d classes, want 4: %v", k, k+1, len(classes), classes)
		}
	}
}
