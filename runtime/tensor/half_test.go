package tensor

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// Independent references for the half-precision conversions, in float64
// arithmetic (every f16, bf16 and float32 value is exact in float64).

// f16Value decodes IEEE binary16 bits from the definition:
// (-1)^s * 2^(e-15) * (1 + m/1024), or m * 2^-24 when e = 0.
func f16Value(h uint16) float64 {
	s, e, m := h>>15, int(h>>10)&0x1f, float64(h&0x3ff)
	var v float64
	switch {
	case e == 0x1f && m == 0:
		v = math.Inf(1)
	case e == 0x1f:
		v = math.NaN()
	case e == 0:
		v = math.Ldexp(m, -24)
	default:
		v = math.Ldexp(1+m/1024, e-15)
	}
	if s == 1 {
		v = -v
	}
	return v
}

// bf16Value decodes bfloat16 bits from the definition:
// (-1)^s * 2^(e-127) * (1 + m/128), or m * 2^-133 when e = 0.
func bf16Value(h uint16) float64 {
	s, e, m := h>>15, int(h>>7)&0xff, float64(h&0x7f)
	var v float64
	switch {
	case e == 0xff && m == 0:
		v = math.Inf(1)
	case e == 0xff:
		v = math.NaN()
	case e == 0:
		v = math.Ldexp(m, -133)
	default:
		v = math.Ldexp(1+m/128, e-127)
	}
	if s == 1 {
		v = -v
	}
	return v
}

// halfFormat is a table of a 16-bit format's non-negative finite values,
// ascending, for reference rounding.
type halfFormat struct {
	bits   []uint16  // bit patterns, ascending in value
	values []float64 // their values
	inf    uint16    // bit pattern of +Inf
	// overflowNext is the value the format would have one step above its
	// largest finite value if its exponent were unbounded: values at least
	// halfway there round to Inf.
	overflowNext float64
}

func newHalfFormat(maxFinite, inf uint16, decode func(uint16) float64, overflowNext float64) halfFormat {
	var f halfFormat
	for h := uint16(0); h <= maxFinite; h++ {
		f.bits = append(f.bits, h)
		f.values = append(f.values, decode(h))
	}
	f.inf = inf
	f.overflowNext = overflowNext
	return f
}

var (
	f16Format  = newHalfFormat(0x7bff, 0x7c00, f16Value, 65536)
	bf16Format = newHalfFormat(0x7f7f, 0x7f80, bf16Value, math.Ldexp(1, 128))
)

// roundRef rounds f to the format, to nearest, ties to the even bit pattern;
// NaN gives 0x7fff (kiln's canonical NaN for both formats).
func (hf halfFormat) roundRef(f float32) uint16 {
	v := float64(f)
	if math.IsNaN(v) {
		return 0x7fff
	}
	var sign uint16
	if math.Signbit(v) {
		sign, v = 0x8000, -v
	}
	if math.IsInf(v, 0) {
		return sign | hf.inf
	}
	// a = largest value <= v; b = the next one up (or the virtual overflow step).
	i := sort.SearchFloat64s(hf.values, v) // first index with values[i] >= v
	if i < len(hf.values) && hf.values[i] == v {
		return sign | hf.bits[i]
	}
	lo := i - 1
	a, aBits := hf.values[lo], hf.bits[lo]
	var b float64
	var bBits uint16
	if i < len(hf.values) {
		b, bBits = hf.values[i], hf.bits[i]
	} else {
		b, bBits = hf.overflowNext, hf.inf
	}
	mid := (a + b) / 2 // exact: one bit more than the format
	switch {
	case v < mid:
		return sign | aBits
	case v > mid:
		return sign | bBits
	case aBits&1 == 0:
		return sign | aBits
	default:
		return sign | bBits
	}
}

// boundaryInputs returns, for every pair of neighbouring non-negative values
// of the format (and the overflow step), the float32s at the midpoint and one
// float32 ulp either side, with both signs.
func (hf halfFormat) boundaryInputs() []float32 {
	var out []float32
	next := append(append([]float64(nil), hf.values[1:]...), hf.overflowNext)
	for i, a := range hf.values {
		mid := float32((a + next[i]) / 2)
		if float64(mid) != (a+next[i])/2 {
			panic("test bug: midpoint not exact in float32")
		}
		for _, v := range []float32{mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, float32(math.Inf(1)))} {
			out = append(out, v, -v)
		}
	}
	return out
}

func TestF16ToF32AllPatterns(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got, want := F16ToF32(h), f16Value(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) || math.Signbit(float64(got)) != (h>>15 == 1) {
				t.Errorf("F16ToF32(%#04x) = %v, want a NaN with the same sign", h, got)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Errorf("F16ToF32(%#04x) = %v, want %v", h, got, want)
		}
	}
}

func TestF16RoundTripAllPatterns(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		want := h
		if h&0x7c00 == 0x7c00 && h&0x3ff != 0 {
			want = 0x7fff // NaNs come back canonical
		}
		if got := F32ToF16(F16ToF32(h)); got != want {
			t.Errorf("F32ToF16(F16ToF32(%#04x)) = %#04x, want %#04x", h, got, want)
		}
	}
}

func TestF32ToF16RoundingBoundaries(t *testing.T) {
	inputs := f16Format.boundaryInputs()
	// Named cases on the edges of the subnormal and overflow ranges.
	inputs = append(inputs,
		65504, 65519.996, 65520, 65536, 1e6, 3.4e38, // 65520 is halfway to 65536: ties to even = Inf
		float32(math.Ldexp(1, -25)),                             // halfway between 0 and 2^-24: ties to 0
		math.Nextafter32(float32(math.Ldexp(1, -25)), 1),        // just above: 2^-24
		float32(math.Ldexp(3, -26)),                             // 1.5 * 2^-25 -> 2^-24
		float32(math.Ldexp(3, -25)),                             // 1.5 * 2^-24: tie between 1 and 2 units -> 2 (even)
		float32(math.Ldexp(1, -14))-float32(math.Ldexp(1, -25)), // halfway below the smallest normal
		1e-45, -1e-45, float32(math.Ldexp(1, -126)), // float32 subnormal and smallest normal -> 0
		1+float32(math.Ldexp(1, -11)), 1+float32(math.Ldexp(3, -11)), // ties at 1: to 1, and to 1+2^-9
		float32(math.Inf(1)), float32(math.Inf(-1)), 0, float32(math.Copysign(0, -1)),
	)
	for _, f := range inputs {
		if got, want := F32ToF16(f), f16Format.roundRef(f); got != want {
			t.Errorf("F32ToF16(%v [%#08x]) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
	}
	t.Logf("%d boundary inputs", len(inputs))
}

func TestF32ToF16RandomAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 16))
	n := 2_000_000
	if testing.Short() {
		n = 100_000
	}
	for i := 0; i < n; i++ {
		bits := rng.Uint32()
		if i%2 == 0 {
			// Half the samples in and around f16's range (exponents 100..145).
			bits = bits&0x807fffff | (100+rng.Uint32N(46))<<23
		}
		f := math.Float32frombits(bits)
		if got, want := F32ToF16(f), f16Format.roundRef(f); got != want {
			t.Fatalf("F32ToF16(%v [%#08x]) = %#04x, want %#04x", f, bits, got, want)
		}
	}
}

func TestF32ToF16NaN(t *testing.T) {
	for _, bits := range []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0x7fa00000} {
		if got := F32ToF16(math.Float32frombits(bits)); got != 0x7fff {
			t.Errorf("F32ToF16(NaN %#08x) = %#04x, want 0x7fff", bits, got)
		}
	}
}

func TestBF16ToF32AllPatterns(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got, want := BF16ToF32(h), bf16Value(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) {
				t.Errorf("BF16ToF32(%#04x) = %v, want NaN", h, got)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Errorf("BF16ToF32(%#04x) = %v, want %v", h, got, want)
		}
		wantBack := h
		if got := F32ToBF16(BF16ToF32(h)); got != wantBack {
			t.Errorf("F32ToBF16(BF16ToF32(%#04x)) = %#04x", h, got)
		}
	}
}

func TestF32ToBF16Rounding(t *testing.T) {
	inputs := bf16Format.boundaryInputs()
	rng := rand.New(rand.NewPCG(2, 16))
	for i := 0; i < 500_000; i++ {
		inputs = append(inputs, math.Float32frombits(rng.Uint32()))
	}
	// 0x7f7f8000 is halfway from the largest bf16 (0x7f7f, odd) to 2^128:
	// ties to even gives Inf.
	inputs = append(inputs, math.Float32frombits(0x7f7f8000), math.Float32frombits(0x7f7f7fff), math.MaxFloat32)
	for _, f := range inputs {
		if got, want := F32ToBF16(f), bf16Format.roundRef(f); got != want {
			t.Fatalf("F32ToBF16(%v [%#08x]) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
	}
	if got := F32ToBF16(math.Float32frombits(0x7f7f8000)); got != 0x7f80 {
		t.Errorf("halfway to overflow: %#04x, want 0x7f80 (+Inf)", got)
	}
}

func TestRoundTo(t *testing.T) {
	// 1 + 2^-11 is a tie in f16 (rounds to 1) but exact in neither; in bf16
	// (7 fraction bits) it rounds to 1 as well; 1 + 2^-7 is exact in both.
	cases := []struct {
		dt   DType
		in   float32
		want float32
	}{
		{F32, 1 + 1.0/2048, 1 + 1.0/2048},
		{F16, 1 + 1.0/2048, 1},
		{F16, 1 + 3.0/2048, 1 + 4.0/2048},
		{F16, 70000, float32(math.Inf(1))},
		{BF16, 1 + 1.0/2048, 1},
		{BF16, 1 + 1.0/128, 1 + 1.0/128},
		{BF16, 1 + 3.0/256, 1 + 4.0/256},
		{I32, 2.5, 2.5}, // not a float storage type: unchanged
	}
	for _, c := range cases {
		if got := RoundTo(c.dt, c.in); got != c.want {
			t.Errorf("RoundTo(%v, %v) = %v, want %v", c.dt, c.in, got, c.want)
		}
	}
}

func TestByteViews(t *testing.T) {
	f := []float32{1, -2.5, float32(math.Inf(1))}
	b := F32Bytes(f)
	if len(b) != 12 || b[3] != 0x3f || b[2] != 0x80 { // 1.0 = 0x3f800000, little-endian
		t.Fatalf("F32Bytes(%v) = %x", f, b)
	}
	b[0] = 1 // a view, not a copy
	if math.Float32bits(f[0]) != 0x3f800001 {
		t.Errorf("F32Bytes copied instead of viewing")
	}
	if back := BytesF32(b); len(back) != 3 || &back[0] != &f[0] {
		t.Errorf("BytesF32 does not view the same memory")
	}
	i := []int32{-1, 2}
	if ib := I32Bytes(i); len(ib) != 8 || ib[0] != 0xff || ib[4] != 2 {
		t.Errorf("I32Bytes(%v) = %x", i, ib)
	} else if back := BytesI32(ib); back[1] != 2 {
		t.Errorf("BytesI32 = %v", back)
	}
	u := []uint16{0x3c00, 0x8001}
	if ub := U16Bytes(u); len(ub) != 4 || ub[1] != 0x3c || ub[3] != 0x80 {
		t.Errorf("U16Bytes(%v) = %x", u, ub)
	} else if back := BytesU16(ub); back[1] != 0x8001 {
		t.Errorf("BytesU16 = %v", back)
	}
	if F32Bytes(nil) != nil || I32Bytes(nil) != nil || U16Bytes(nil) != nil {
		t.Errorf("views of empty slices should be nil")
	}
	if BytesF32(make([]byte, 3)) != nil || BytesI32(make([]byte, 3)) != nil || BytesU16(make([]byte, 1)) != nil {
		t.Errorf("views of too-short byte slices should be nil")
	}
}

func TestEncodeDecodeFloats(t *testing.T) {
	vals := []float32{0, 1, -2, 0.1, 65504, 1e-7}
	for _, dt := range []DType{F32, F16, BF16} {
		raw, ok := EncodeFloats(dt, vals)
		if !ok || len(raw) != len(vals)*dt.BlockBytes() {
			t.Fatalf("EncodeFloats(%v): %d bytes, ok %v", dt, len(raw), ok)
		}
		back, ok := DecodeFloats(dt, raw)
		if !ok || len(back) != len(vals) {
			t.Fatalf("DecodeFloats(%v): %d values, ok %v", dt, len(back), ok)
		}
		for i, v := range vals {
			if back[i] != RoundTo(dt, v) {
				t.Errorf("%v: %v came back as %v, want %v", dt, v, back[i], RoundTo(dt, v))
			}
		}
		// A partial trailing element is refused, not dropped.
		if _, ok := DecodeFloats(dt, append(raw, 0)); ok {
			t.Errorf("DecodeFloats(%v) accepted %d bytes", dt, len(raw)+1)
		}
		// Unaligned input is fine.
		shifted := append([]byte{0}, raw...)[1:]
		if again, ok := DecodeFloats(dt, shifted); !ok || !equalFloats(again, back) {
			t.Errorf("DecodeFloats(%v) of unaligned bytes differs", dt)
		}
	}
	// The F16 bytes are the little-endian bit patterns: 1.0 = 0x3c00.
	if raw, _ := EncodeFloats(F16, []float32{1}); raw[0] != 0x00 || raw[1] != 0x3c {
		t.Errorf("EncodeFloats(F16, 1) = %x, want 003c", raw)
	}
	for _, dt := range []DType{I8, I32, Q8_0, Invalid} {
		if _, ok := EncodeFloats(dt, vals); ok {
			t.Errorf("EncodeFloats(%v) reported ok", dt)
		}
		if _, ok := DecodeFloats(dt, make([]byte, 68)); ok {
			t.Errorf("DecodeFloats(%v) reported ok", dt)
		}
	}
}
