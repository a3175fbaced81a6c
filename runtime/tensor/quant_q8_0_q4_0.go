package tensor

import (
	"encoding/binary"
	"math"
)

// Q8_0 and Q4_0: 32 elements per block, one f16 scale d per block. The
// quantizers follow ggml's reference quantizers (ggml-quants.c, MIT licence).
//
// Arithmetic is float32 throughout, as in ggml. Products that feed an
// addition are wrapped in float32(...) so that the Go compiler cannot fuse
// them into a multiply-add (the Go spec allows fusion; an explicit conversion
// forbids it), which would change the rounding and so the bytes.

// quantizeBlockQ8_0 follows ggml's quantize_row_q8_0_ref: d = amax/127,
// q = roundf(x/d) (ties away from zero). x has 32 elements, dst 34 bytes.
// It reports false when d overflows f16.
func quantizeBlockQ8_0(dst []byte, x []float32) bool {
	_ = dst[BlockBytesQ8_0-1]
	_ = x[QK8_0-1]
	var amax float32
	for _, v := range x[:QK8_0] {
		if a := abs32(v); a > amax {
			amax = a
		}
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	dBits := F32ToF16(d)
	binary.LittleEndian.PutUint16(dst, dBits)
	for j, v := range x[:QK8_0] {
		// math.Round rounds half away from zero, as C's roundf; the float32
		// product is exact in float64, so no double rounding.
		dst[2+j] = byte(cvttInt32(math.Round(float64(v * id))))
	}
	return !f16IsInf(dBits)
}

// dequantizeBlockQ8_0 follows ggml's dequantize_row_q8_0: y = q*d.
func dequantizeBlockQ8_0(block []byte, y []float32) {
	_ = block[BlockBytesQ8_0-1]
	_ = y[QK8_0-1]
	d := f16At(block)
	qs := block[2:BlockBytesQ8_0]
	for j := 0; j < QK8_0; j++ {
		y[j] = float32(int8(qs[j])) * d
	}
}

// quantizeBlockQ4_0 follows ggml's quantize_row_q4_0_ref: d = max/-8 where
// max is the first element of largest magnitude (sign kept), and
// q = min(15, trunc(x/d + 8.5)). Element j goes to the low nibble of byte j,
// element j+16 to its high nibble. It reports false when d overflows f16.
func quantizeBlockQ4_0(dst []byte, x []float32) bool {
	_ = dst[BlockBytesQ4_0-1]
	_ = x[QK8_0-1]
	var amax, xmax float32
	for _, v := range x[:QK8_0] {
		if a := abs32(v); amax < a {
			amax = a
			xmax = v
		}
	}
	d := xmax / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	dBits := F32ToF16(d)
	binary.LittleEndian.PutUint16(dst, dBits)
	for j := 0; j < QK8_0/2; j++ {
		x0 := float32(x[j] * id)
		x1 := float32(x[j+QK8_0/2] * id)
		// x/d + 8.5 lies in [0.5, 16.5] (|x| <= |max|) unless 1/d
		// overflowed (d tiny, stored as f16 zero); C's (int8_t) conversion.
		q0 := min(15, int32(int8(cvttInt32(float64(x0+8.5)))))
		q1 := min(15, int32(int8(cvttInt32(float64(x1+8.5)))))
		dst[2+j] = byte(q0) | byte(q1)<<4
	}
	return !f16IsInf(dBits)
}

// dequantizeBlockQ4_0 follows ggml's dequantize_row_q4_0: y = (q-8)*d.
func dequantizeBlockQ4_0(block []byte, y []float32) {
	_ = block[BlockBytesQ4_0-1]
	_ = y[QK8_0-1]
	d := f16At(block)
	qs := block[2:BlockBytesQ4_0]
	for j := 0; j < QK8_0/2; j++ {
		y[j] = float32(int32(qs[j]&0x0f)-8) * d
		y[j+QK8_0/2] = float32(int32(qs[j]>>4)-8) * d
	}
}

// cvttInt32 converts f to int32 by truncation as x86-64's CVTTSS2SI does,
// which is what ggml's float-to-integer casts compile to there: NaN, ±Inf and
// values outside the int32 range give math.MinInt32 (whose low byte is 0).
// Go leaves such conversions implementation-defined, and they do occur: when
// a block's largest magnitude is below about 1e-37, 1/d overflows to +Inf and
// x/d is ±Inf or NaN (the f16 scale is then 0, so the quants are never seen,
// but the bytes must still match ggml's).
func cvttInt32(f float64) int32 {
	if !(f > -2147483649 && f < 2147483648) {
		return math.MinInt32
	}
	return int32(f)
}

// f16IsInf reports whether h is +Inf or -Inf.
func f16IsInf(h uint16) bool { return h&0x7fff == 0x7c00 }
