package tensor

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// FuzzDequantize: any bytes, any dtype byte (valid or not), any element
// count: Dequantize and DequantizeBlock return an error or succeed, never
// panic, and succeed whenever the sizes fit a valid dtype.
func FuzzDequantize(f *testing.F) {
	f.Add([]byte{}, uint8(Q8_0), uint16(0))
	f.Add(make([]byte, 34), uint8(Q8_0), uint16(32))
	f.Add(make([]byte, 18*3), uint8(Q4_0), uint16(96))
	f.Add(make([]byte, 144), uint8(Q4_K), uint16(256))
	f.Add(make([]byte, 210), uint8(Q6_K), uint16(256))
	f.Add([]byte{0xff, 0x7f, 0x00, 0x7c, 1, 2}, uint8(F16), uint16(3))
	f.Add([]byte{1, 2, 3}, uint8(200), uint16(7))
	f.Fuzz(func(t *testing.T, data []byte, dtByte uint8, nElems uint16) {
		dt := DType(dtByte)
		dst := make([]float32, int(nElems))
		err := Dequantize(dt, data, dst)
		if dt.Valid() {
			need, sizeErr := dt.RowBytes(len(dst))
			if sizeErr == nil && int64(len(data)) == need && err != nil {
				t.Fatalf("Dequantize(%v, %d bytes, %d elements): %v", dt, len(data), len(dst), err)
			}
			if (sizeErr != nil || int64(len(data)) != need) && err == nil {
				t.Fatalf("Dequantize(%v, %d bytes, %d elements): no error for mismatched sizes", dt, len(data), len(dst))
			}
			// The whole-blocks prefix always decodes.
			if be, bb := dt.BlockElems(), dt.BlockBytes(); be > 0 {
				nBlocks := len(data) / bb
				whole := make([]float32, nBlocks*be)
				if err := Dequantize(dt, data[:nBlocks*bb], whole); err != nil {
					t.Fatalf("Dequantize(%v) of %d whole blocks: %v", dt, nBlocks, err)
				}
			}
		} else if err == nil {
			t.Fatalf("Dequantize accepted invalid dtype %d", dtByte)
		}
		blockErr := DequantizeBlock(dt, data, dst)
		if dt.Valid() && len(data) >= dt.BlockBytes() && len(dst) >= dt.BlockElems() && blockErr != nil {
			t.Fatalf("DequantizeBlock(%v, %d bytes, %d elements): %v", dt, len(data), len(dst), blockErr)
		}
	})
}

// FuzzQuantize: any float32 bit patterns into each block format: Quantize
// either refuses with ErrNotRepresentable (and then some element is NaN,
// Inf or outside the surely representable range) or writes blocks that
// decode to finite values.
func FuzzQuantize(f *testing.F) {
	f.Add([]byte{0, 0, 0x80, 0x3f}, uint8(0))
	f.Add([]byte{0, 0, 0xc0, 0x7f, 0, 0, 0x80, 0x7f}, uint8(1))
	f.Add([]byte{0x01, 0, 0, 0, 0xff, 0xff, 0x7f, 0x7f}, uint8(2))
	f.Add([]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0}, uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, sel uint8) {
		dt := blockFormats[int(sel)%len(blockFormats)]
		be := dt.BlockElems()
		// Tile the fuzzer's floats over one or two blocks.
		nFloats := len(data) / 4
		x := make([]float32, be*(1+int(sel)/128))
		sure := true
		for i := range x {
			if nFloats > 0 {
				j := i % nFloats
				x[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*j:]))
			}
			lim := surelyRepresentable[dt]
			sure = sure && float64(x[i]) >= lim[0] && float64(x[i]) <= lim[1]
		}
		q, err := Quantize(dt, x)
		if err != nil {
			if !errors.Is(err, ErrNotRepresentable) {
				t.Fatalf("%v: unexpected error %v", dt, err)
			}
			if sure {
				t.Fatalf("%v: surely representable input refused: %v", dt, err)
			}
			return
		}
		y := make([]float32, len(x))
		if err := Dequantize(dt, q, y); err != nil {
			t.Fatal(err)
		}
		for i, v := range y {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%v: element %d (input %v) decodes to %v", dt, i, x[i], v)
			}
		}
	})
}

// BenchmarkDequantizeBlock reports the time to decode one block (ns/op is
// ns/block; divide by the block's elements for ns/element).
func BenchmarkDequantizeBlock(b *testing.B) {
	for _, dt := range blockFormats {
		b.Run(dt.String(), func(b *testing.B) {
			x := randomBenchInput(dt.BlockElems() * 64)
			q, err := Quantize(dt, x)
			if err != nil {
				b.Fatal(err)
			}
			out := make([]float32, dt.BlockElems())
			bb := dt.BlockBytes()
			nBlocks := len(q) / bb
			b.SetBytes(int64(bb))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				blk := i % nBlocks
				if err := DequantizeBlock(dt, q[blk*bb:(blk+1)*bb], out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkQuantize reports the time to quantize one block (ns/op is
// ns/block).
func BenchmarkQuantize(b *testing.B) {
	for _, dt := range blockFormats {
		b.Run(dt.String(), func(b *testing.B) {
			be := dt.BlockElems()
			x := randomBenchInput(be * 64)
			dst := make([]byte, dt.BlockBytes())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				blk := i % 64
				if err := QuantizeInto(dt, dst, x[blk*be:(blk+1)*be]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func randomBenchInput(n int) []float32 {
	rng := rand.New(rand.NewPCG(11, 12))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}
