package tensor

import (
	"math"
	"unsafe"
)

// F32ToF16 rounds f to the nearest IEEE binary16 value, ties to even, as
// CUDA's __float2half_rn does: overflow gives ±Inf, tiny values become
// subnormals or ±0, and NaN becomes the canonical quiet NaN 0x7fff.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return 0x7fff
		}
		return sign | 0x7c00
	}
	// Unbiased exponent; half's bias is 15, float's 127.
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal half (or zero). The value is mant' * 2^-24 where mant'
		// includes the implicit bit; shift by (14 - e) with round to nearest even.
		if e < -10 {
			return sign // rounds to zero (even below half the smallest subnormal)
		}
		m := mant | 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		r := m >> shift
		rem := m & ((uint32(1) << shift) - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, and up to Inf: both correct
	}
	return sign | uint16(r)
}

// F16ToF32 converts an IEEE binary16 value to float32 exactly.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// Subnormal: mant * 2^-24.
		f := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// F32ToBF16 rounds f to bfloat16, ties to even, as CUDA's
// __float2bfloat16_rn does; NaN becomes the canonical quiet NaN 0x7fff.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return 0x7fff
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// BF16ToF32 converts a bfloat16 value to float32 exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// RoundTo returns f rounded through dtype d (F32, F16 or BF16) and back: what
// storing f in a tensor of type d keeps.
func RoundTo(d DType, f float32) float32 {
	switch d {
	case F16:
		return F16ToF32(F32ToF16(f))
	case BF16:
		return BF16ToF32(F32ToBF16(f))
	}
	return f
}

// The byte views below reinterpret slices in place. kiln runs only on
// little-endian machines (x86-64, arm64), where these match the on-disk and
// on-device layouts.

// F32Bytes views a float32 slice as bytes, without copying.
func F32Bytes(s []float32) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*4)
}

// I32Bytes views an int32 slice as bytes, without copying.
func I32Bytes(s []int32) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*4)
}

// U16Bytes views a uint16 slice (F16 or BF16 bits) as bytes, without copying.
func U16Bytes(s []uint16) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*2)
}

// BytesF32 views bytes as float32s without copying; len(b) must be a
// multiple of 4 and b 4-byte aligned (true of every buffer kiln allocates).
func BytesF32(b []byte) []float32 {
	if len(b) < 4 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// BytesI32 views bytes as int32s without copying (see BytesF32).
func BytesI32(b []byte) []int32 {
	if len(b) < 4 {
		return nil
	}
	return unsafe.Slice((*int32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// BytesU16 views bytes as uint16s without copying (see BytesF32).
func BytesU16(b []byte) []uint16 {
	if len(b) < 2 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}

// EncodeFloats converts float32 values to the storage bytes of dtype d (F32,
// F16 or BF16), rounding to nearest even.
func EncodeFloats(d DType, vals []float32) ([]byte, bool) {
	switch d {
	case F32:
		out := make([]float32, len(vals))
		copy(out, vals)
		return F32Bytes(out), true
	case F16:
		out := make([]uint16, len(vals))
		for i, v := range vals {
			out[i] = F32ToF16(v)
		}
		return U16Bytes(out), true
	case BF16:
		out := make([]uint16, len(vals))
		for i, v := range vals {
			out[i] = F32ToBF16(v)
		}
		return U16Bytes(out), true
	}
	return nil, false
}

// DecodeFloats converts the storage bytes of dtype d (F32, F16 or BF16) to
// float32. ok is false for any other dtype, and when len(b) is not a whole
// number of elements. b need not be aligned.
func DecodeFloats(d DType, b []byte) ([]float32, bool) {
	if !d.IsFloat() || len(b)%d.BlockBytes() != 0 {
		return nil, false
	}
	out := make([]float32, len(b)/d.BlockBytes())
	if err := Dequantize(d, b, out); err != nil {
		return nil, false
	}
	return out, true
}
