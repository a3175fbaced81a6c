package tensor

import (
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

var blockFormats = []DType{Q8_0, Q4_0, Q4_K, Q6_K}

// roundTrip quantizes x to dt and decodes it again.
func roundTrip(t *testing.T, dt DType, x []float32) []float32 {
	t.Helper()
	q, err := Quantize(dt, x)
	if err != nil {
		t.Fatalf("Quantize(%v): %v", dt, err)
	}
	y := make([]float32, len(x))
	if err := Dequantize(dt, q, y); err != nil {
		t.Fatalf("Dequantize(%v): %v", dt, err)
	}
	return y
}

// randomInputs returns seeded test vectors of n elements from several
// distributions, each at several scales.
func randomInputs(n int) map[string][]float32 {
	rng := rand.New(rand.NewPCG(42, 7))
	gens := map[string]func() float64{
		"normal":  rng.NormFloat64,
		"uniform": func() float64 { return rng.Float64()*2 - 1 },
		"offset":  func() float64 { return rng.Float64() + 0.5 },
		"heavy":   func() float64 { return rng.NormFloat64() / (0.05 + rng.Float64()) },
		"sparse": func() float64 {
			if rng.Float64() < 0.9 {
				return 0
			}
			return rng.NormFloat64()
		},
	}
	out := map[string][]float32{}
	for name, g := range gens {
		for _, scale := range []float64{1e-5, 1, 300} {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(g() * scale)
			}
			out[name+"*"+strconv.FormatFloat(scale, 'g', -1, 64)] = x
		}
	}
	return out
}

// f16Error bounds |f16(d) - d| for d >= 0: half an f16 ulp, relative 2^-11
// for normal values and 2^-25 absolute in the subnormal range.
func f16Error(d float64) float64 { return math.Max(d*math.Ldexp(1, -11), math.Ldexp(1, -25)) }

// TestRoundTripQ8_0Bound: each element comes back within d/2 of its input,
// d = amax/127, plus what rounding d to f16 adds (127 quants times its error)
// and float32 slack.
func TestRoundTripQ8_0Bound(t *testing.T) {
	for name, x := range randomInputs(32 * 256) {
		y := roundTrip(t, Q8_0, x)
		for b := 0; b < len(x)/32; b++ {
			var amax float64
			for _, v := range x[32*b : 32*b+32] {
				amax = math.Max(amax, math.Abs(float64(v)))
			}
			d := amax / 127
			bound := d/2 + 127*f16Error(d) + 1e-6*amax
			for i := 32 * b; i < 32*b+32; i++ {
				if e := math.Abs(float64(y[i]) - float64(x[i])); e > bound {
					t.Fatalf("%s: element %d: %v -> %v, error %g > bound %g (d %g)", name, i, x[i], y[i], e, bound, d)
				}
			}
		}
	}
}

// TestRoundTripQ4_0Bound: Q4_0 maps x to round(x/d) with d = max/-8 (max the
// element of largest magnitude, sign kept), quants -8..7: elements come back
// within |d|/2, except those with x/d above 7.5 (the opposite sign to max,
// clamped to 7), which come back within |d|. Plus f16 and float32 slack.
func TestRoundTripQ4_0Bound(t *testing.T) {
	for name, x := range randomInputs(32 * 256) {
		y := roundTrip(t, Q4_0, x)
		for b := 0; b < len(x)/32; b++ {
			var amax, max float64
			for _, v := range x[32*b : 32*b+32] {
				if a := math.Abs(float64(v)); a > amax {
					amax, max = a, float64(v)
				}
			}
			d := max / -8
			for i := 32 * b; i < 32*b+32; i++ {
				bound := math.Abs(d)/2 + 8*f16Error(math.Abs(d)) + 1e-6*amax
				if d != 0 && float64(x[i])/d > 7.5 {
					bound += math.Abs(d) / 2
				}
				if e := math.Abs(float64(y[i]) - float64(x[i])); e > bound {
					t.Fatalf("%s: element %d: %v -> %v, error %g > bound %g (d %g)", name, i, x[i], y[i], e, bound, d)
				}
			}
		}
	}
}

// TestRoundTripKQuantBound: the K-quants store each sub-block's scale (and
// Q4_K's min) relative to one super-block scale, so a sub-block much smaller
// than its neighbours can lose all its precision; what holds for every
// element is a bound relative to the super-block: Q4_K within one step
// (max - min(min, 0))/15 of the super-block, Q6_K within one step amax/32.
// The best quantization would be within half a step; the 6- and 8-bit
// sub-block scales and the scale search's trade-offs take up the rest
// (measured worst cases on these inputs: about 0.85 step for Q4_K, 0.65 for
// Q6_K). On top of that comes the f16 rounding of the super-block scale d
// (about step/63 for Q4_K, step/128 for Q6_K) times the largest
// sub-block-scale*quant product (63*15, 128*32): negligible for normal f16,
// but for tiny inputs d is an f16 subnormal with a large relative error.
func TestRoundTripKQuantBound(t *testing.T) {
	for name, x := range randomInputs(QK_K * 64) {
		for _, dt := range []DType{Q4_K, Q6_K} {
			y := roundTrip(t, dt, x)
			for sb := 0; sb < len(x); sb += QK_K {
				var lo, hi, amax float64
				for _, v := range x[sb : sb+QK_K] {
					lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
					amax = math.Max(amax, math.Abs(float64(v)))
				}
				step := (hi - lo) / 15
				bound := step + 63*15*f16Error(step/63) + 1e-6*amax
				if dt == Q6_K {
					step = amax / 32
					bound = step + 128*32*f16Error(step/128) + 1e-6*amax
				}
				for i := sb; i < sb+QK_K; i++ {
					if e := math.Abs(float64(y[i]) - float64(x[i])); e > bound {
						t.Fatalf("%s %v: element %d: %v -> %v, error %g > bound %g", name, dt, i, x[i], y[i], e, bound)
					}
				}
			}
		}
	}
}

// TestRoundTripNormalRMSE: on N(0, 1) data the whole-tensor error is close to
// the uniform-noise estimate (see TestRealTensorRoundTripError), and far from
// zero.
func TestRoundTripNormalRMSE(t *testing.T) {
	x := randomInputs(QK_K * 64)["normal*1"]
	limits := map[DType][2]float64{Q8_0: {0.002, 0.008}, Q4_0: {0.03, 0.12}, Q4_K: {0.03, 0.10}, Q6_K: {0.005, 0.025}}
	for _, dt := range blockFormats {
		y := roundTrip(t, dt, x)
		var se, ss float64
		for i := range x {
			e := float64(y[i]) - float64(x[i])
			se += e * e
			ss += float64(x[i]) * float64(x[i])
		}
		rel := math.Sqrt(se / ss)
		if rel < limits[dt][0] || rel > limits[dt][1] {
			t.Errorf("%v: RMSE/RMS %.5f outside [%g, %g]", dt, rel, limits[dt][0], limits[dt][1])
		}
	}
}

func TestRoundTripZeroBlocksExact(t *testing.T) {
	for _, dt := range blockFormats {
		x := make([]float32, 2*dt.BlockElems())
		for i := range x {
			if i%3 == 0 {
				x[i] = float32(math.Copysign(0, -1))
			}
		}
		for i, v := range roundTrip(t, dt, x) {
			if v != 0 {
				t.Errorf("%v: element %d of a zero block came back as %v", dt, i, v)
			}
		}
	}
}

// TestRoundTripConstantBlocks: a block of one value c (positive or negative)
// comes back as c to within f16 rounding of the scale, for c large enough
// that the f16 scale is a normal number (d is c/127 for Q8_0, c/8 for Q4_0,
// c/945 for Q4_K, c/4096 for Q6_K).
func TestRoundTripConstantBlocks(t *testing.T) {
	for _, dt := range blockFormats {
		for _, c := range []float32{0.75, -3.5, 0.3, -250, 4096} {
			x := make([]float32, dt.BlockElems())
			for i := range x {
				x[i] = c
			}
			for i, v := range roundTrip(t, dt, x) {
				if math.Abs(float64(v-c)) > math.Abs(float64(c))*math.Ldexp(1, -10) {
					t.Errorf("%v constant %v: element %d came back as %v", dt, c, i, v)
					break
				}
			}
		}
	}
}

// TestQuantizeRejectsNonFinite: NaN, ±Inf and out-of-range values give an
// error that matches ErrNotRepresentable and names the element.
func TestQuantizeRejectsNonFinite(t *testing.T) {
	limits := map[DType]float64{Q8_0: MaxAbsQ8_0, Q4_0: MaxAbsQ4_0, Q4_K: MaxAbsQ4_K, Q6_K: MaxAbsQ6_K}
	for _, dt := range blockFormats {
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)),
			float32(limits[dt] * 1.01), float32(-limits[dt] * 1.01)} {
			x := make([]float32, 2*dt.BlockElems())
			x[dt.BlockElems()+5] = bad
			x[dt.BlockElems()+9] = float32(math.NaN()) // a later bad element is not the one named
			idx := dt.BlockElems() + 5
			_, err := Quantize(dt, x)
			if !errors.Is(err, ErrNotRepresentable) {
				t.Fatalf("%v with %v: err = %v, want ErrNotRepresentable", dt, bad, err)
			}
			if want := "element " + strconv.Itoa(idx) + " "; !strings.Contains(err.Error(), want) {
				t.Errorf("%v with %v: error %q does not name %q", dt, bad, err, want)
			}
			if err := QuantizeInto(dt, make([]byte, 2*dt.BlockBytes()), x); !errors.Is(err, ErrNotRepresentable) {
				t.Errorf("QuantizeInto %v with %v: err = %v, want ErrNotRepresentable", dt, bad, err)
			}
		}
	}
	// The IEEE types hold NaN and Inf: no error.
	for _, dt := range []DType{F32, F16, BF16} {
		if _, err := Quantize(dt, []float32{float32(math.NaN()), float32(math.Inf(-1))}); err != nil {
			t.Errorf("%v: %v", dt, err)
		}
	}
}

// Largest magnitudes each format is sure to take: a Q4_K block's negative
// values are held by its min, dmin*m <= 65504*63, and its positive range
// by d*sc*15 - dmin*m; the scale searches can pick a scale a little above
// range/15 (Q4_K) or amax/32 (Q6_K), hence the 0.9 and 0.5 factors.
var surelyRepresentable = map[DType][2]float64{ // most negative, most positive
	Q8_0: {-MaxAbsQ8_0, MaxAbsQ8_0},
	Q4_0: {-MaxAbsQ4_0, MaxAbsQ4_0},
	Q4_K: {-65504 * 63 * 0.9, MaxAbsQ4_K * 0.5},
	Q6_K: {-MaxAbsQ6_K * 0.9, MaxAbsQ6_K * 0.9},
}

// TestQuantizeRangeLimits: values at the edge of what a format surely holds
// quantize and come back finite and close; a Q4_K block whose negative values
// need a min beyond f16 is refused, naming the block.
func TestQuantizeRangeLimits(t *testing.T) {
	for _, dt := range blockFormats {
		for _, v := range surelyRepresentable[dt] {
			x := make([]float32, dt.BlockElems())
			x[3] = float32(v)
			x[4] = float32(v / 3)
			x[5] = float32(-v / 100)
			q, err := Quantize(dt, x)
			if err != nil {
				t.Errorf("%v with %v: %v", dt, v, err)
				continue
			}
			y := make([]float32, len(x))
			if err := Dequantize(dt, q, y); err != nil {
				t.Fatal(err)
			}
			for i, got := range y {
				if math.IsInf(float64(got), 0) || math.IsNaN(float64(got)) {
					t.Errorf("%v with %v: element %d decodes to %v", dt, v, i, got)
				}
			}
			if rel := math.Abs(float64(y[3])-v) / math.Abs(v); rel > 0.1 {
				t.Errorf("%v: %v came back as %v", dt, v, y[3])
			}
		}
	}
	x := make([]float32, 2*QK_K)
	x[QK_K+1] = -MaxAbsQ4_K / 2
	_, err := Quantize(Q4_K, x)
	if !errors.Is(err, ErrNotRepresentable) || !strings.Contains(err.Error(), "block 1 ") {
		t.Errorf("Q4_K block with -MaxAbsQ4_K/2: err = %v, want ErrNotRepresentable naming block 1", err)
	}
}

// TestQuantizeLargeMagnitudes: random inputs of every magnitude either
// quantize to blocks that decode finite, or are refused with
// ErrNotRepresentable; none are refused while surely representable.
func TestQuantizeLargeMagnitudes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, dt := range blockFormats {
		refused := 0
		for trial := 0; trial < 300; trial++ {
			scale := math.Pow(10, rng.Float64()*12-2)
			x := make([]float32, dt.BlockElems())
			sure := true
			for i := range x {
				x[i] = float32(rng.NormFloat64() * scale)
				lim := surelyRepresentable[dt]
				sure = sure && float64(x[i]) >= lim[0] && float64(x[i]) <= lim[1]
			}
			q, err := Quantize(dt, x)
			if err != nil {
				if !errors.Is(err, ErrNotRepresentable) {
					t.Fatalf("%v: unexpected error %v", dt, err)
				}
				if sure {
					t.Fatalf("%v: input within the sure range (scale %g) refused: %v", dt, scale, err)
				}
				refused++
				continue
			}
			y := make([]float32, len(x))
			if err := Dequantize(dt, q, y); err != nil {
				t.Fatal(err)
			}
			for i, v := range y {
				if math.IsInf(float64(v), 0) || math.IsNaN(float64(v)) {
					t.Fatalf("%v: scale %g: element %d decodes to %v", dt, scale, i, v)
				}
			}
		}
		if refused == 0 || refused == 300 {
			t.Errorf("%v: %d of 300 refused; the magnitudes should straddle the limit", dt, refused)
		}
	}
}

func TestQuantizeArgumentErrors(t *testing.T) {
	for _, dt := range []DType{Invalid, I8, I32, DType(200)} {
		if _, err := Quantize(dt, make([]float32, 32)); !errors.Is(err, ErrUnsupportedDType) {
			t.Errorf("Quantize(%v): err = %v, want ErrUnsupportedDType", dt, err)
		}
	}
	for _, dt := range blockFormats {
		n := dt.BlockElems() + 1
		_, err := Quantize(dt, make([]float32, n))
		if err == nil || !strings.Contains(err.Error(), strconv.Itoa(n)) {
			t.Errorf("Quantize(%v, %d floats): err = %v, want one naming %d", dt, n, err, n)
		}
		src := make([]float32, dt.BlockElems())
		for _, size := range []int{dt.BlockBytes() - 1, dt.BlockBytes() + 1, 0} {
			err := QuantizeInto(dt, make([]byte, size), src)
			if err == nil || !strings.Contains(err.Error(), strconv.Itoa(size)+" bytes") {
				t.Errorf("QuantizeInto(%v) into %d bytes: err = %v", dt, size, err)
			}
		}
		if q, err := Quantize(dt, nil); err != nil || len(q) != 0 {
			t.Errorf("Quantize(%v, nil) = %d bytes, %v; want 0 bytes, nil", dt, len(q), err)
		}
	}
}

// TestQuantizeIEEETypes: Quantize to F32/F16/BF16 writes the same bytes as
// EncodeFloats, and Dequantize reads them back as DecodeFloats does.
func TestQuantizeIEEETypes(t *testing.T) {
	x := randomInputs(64)["heavy*300"]
	x = append(x, 65519, 65520, -1e-8, float32(math.Inf(1)))
	for _, dt := range []DType{F32, F16, BF16} {
		got, err := Quantize(dt, x)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := EncodeFloats(dt, x)
		if string(got) != string(want) {
			t.Errorf("%v: Quantize and EncodeFloats differ", dt)
		}
		back := make([]float32, len(x))
		if err := Dequantize(dt, got, back); err != nil {
			t.Fatal(err)
		}
		ref, _ := DecodeFloats(dt, got)
		for i := range back {
			if math.Float32bits(back[i]) != math.Float32bits(ref[i]) {
				t.Errorf("%v element %d: Dequantize %v, DecodeFloats %v", dt, i, back[i], ref[i])
			}
		}
	}
}

func TestDequantizeIntegerTypes(t *testing.T) {
	// I8: bytes are two's complement.
	got := make([]float32, 4)
	if err := Dequantize(I8, []byte{0x00, 0x7f, 0x80, 0xff}, got); err != nil {
		t.Fatal(err)
	}
	if want := []float32{0, 127, -128, -1}; !equalFloats(got, want) {
		t.Errorf("I8: got %v, want %v", got, want)
	}
	// I32 little-endian: 1, -2, 2^24+1 (rounds to 2^24 in float32), -2^31.
	raw := []byte{1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 1, 0, 0, 1, 0, 0, 0, 0x80}
	if err := Dequantize(I32, raw, got); err != nil {
		t.Fatal(err)
	}
	if want := []float32{1, -2, 16777216, -2147483648}; !equalFloats(got, want) {
		t.Errorf("I32: got %v, want %v", got, want)
	}
}

func TestDequantizeArgumentErrors(t *testing.T) {
	for _, dt := range []DType{Invalid, DType(77)} {
		if err := Dequantize(dt, nil, nil); !errors.Is(err, ErrUnsupportedDType) {
			t.Errorf("Dequantize(%v): err = %v, want ErrUnsupportedDType", dt, err)
		}
	}
	for _, dt := range AllDTypes() {
		be, bb := dt.BlockElems(), dt.BlockBytes()
		// Source one byte short and one byte long.
		for _, n := range []int{2*bb - 1, 2*bb + 1} {
			err := Dequantize(dt, make([]byte, n), make([]float32, 2*be))
			if err == nil || !strings.Contains(err.Error(), strconv.Itoa(n)) || !strings.Contains(err.Error(), strconv.Itoa(2*bb)) {
				t.Errorf("Dequantize(%v, %d bytes, %d floats): err = %v, want one naming %d and %d", dt, n, 2*be, err, n, 2*bb)
			}
		}
		if be > 1 {
			if err := Dequantize(dt, make([]byte, bb), make([]float32, be+1)); err == nil {
				t.Errorf("Dequantize(%v) into %d floats: no error", dt, be+1)
			}
		}
		if err := Dequantize(dt, nil, nil); err != nil {
			t.Errorf("Dequantize(%v) of nothing: %v", dt, err)
		}
	}
}

func TestDequantizeBlock(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, dt := range AllDTypes() {
		be, bb := dt.BlockElems(), dt.BlockBytes()
		raw := make([]byte, 3*bb)
		for i := range raw {
			raw[i] = byte(rng.Uint32())
		}
		if dt == F16 || dt == BF16 || dt == F32 {
			// Keep the element finite so == below is meaningful.
			raw[bb-1] &= 0x3f
		}
		if dt.IsQuantized() {
			// Keep the f16 scales finite.
			for b := 0; b < 3; b++ {
				for _, off := range scaleOffsets(dt) {
					raw[b*bb+off+1] &= 0x3f
				}
			}
		}
		want := make([]float32, 3*be)
		if err := Dequantize(dt, raw, want); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, be+5)
		for i := range got {
			got[i] = 12345
		}
		// Block 1 with the rest of the row after it: only block 1 is read.
		if err := DequantizeBlock(dt, raw[bb:], got); err != nil {
			t.Fatalf("%v: %v", dt, err)
		}
		if !equalFloats(got[:be], want[be:2*be]) {
			t.Errorf("%v: DequantizeBlock differs from Dequantize", dt)
		}
		for i := be; i < len(got); i++ {
			if got[i] != 12345 {
				t.Errorf("%v: DequantizeBlock wrote element %d beyond the block", dt, i)
			}
		}
		if err := DequantizeBlock(dt, raw[:bb-1], got); err == nil {
			t.Errorf("%v: %d-byte block accepted", dt, bb-1)
		}
		if err := DequantizeBlock(dt, raw, got[:be-1]); err == nil {
			t.Errorf("%v: room for %d elements accepted", dt, be-1)
		}
	}
	if err := DequantizeBlock(Invalid, make([]byte, 300), make([]float32, 300)); !errors.Is(err, ErrUnsupportedDType) {
		t.Errorf("DequantizeBlock(Invalid): err = %v", err)
	}
	// No allocation on the hot path.
	for _, dt := range blockFormats {
		block := make([]byte, dt.BlockBytes())
		out := make([]float32, dt.BlockElems())
		if n := testing.AllocsPerRun(100, func() { _ = DequantizeBlock(dt, block, out) }); n != 0 {
			t.Errorf("%v: DequantizeBlock allocates %v times per call", dt, n)
		}
	}
}

// scaleOffsets are the byte offsets of a block format's f16 fields.
func scaleOffsets(dt DType) []int {
	switch dt {
	case Q8_0, Q4_0:
		return []int{0}
	case Q4_K:
		return []int{0, 2}
	case Q6_K:
		return []int{208}
	}
	return nil
}

func equalFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestNearestInt checks ggml's rounding trick against round-half-even.
func TestNearestInt(t *testing.T) {
	for _, tc := range []struct {
		in   float32
		want int32
	}{{0, 0}, {0.5, 0}, {1.5, 2}, {2.5, 2}, {-0.5, 0}, {-1.5, -2}, {-2.5, -2}, {0.49999997, 0}, {3.7, 4}, {-3.7, -4}, {4194303, 4194303}, {-4194303, -4194303}} {
		if got := nearestInt(tc.in); got != tc.want {
			t.Errorf("nearestInt(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 100000; i++ {
		f := float32((rng.Float64()*2 - 1) * 4e6)
		if got, want := nearestInt(f), int32(math.RoundToEven(float64(f))); got != want {
			t.Fatalf("nearestInt(%v) = %d, want %d", f, got, want)
		}
	}
}

// TestCvttInt32 checks the x86 truncation rule the Q8_0/Q4_0 quantizers use.
func TestCvttInt32(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want int32
	}{{2.9, 2}, {-2.9, -2}, {2147483647, 2147483647}, {-2147483648, -2147483648}, {2147483648, math.MinInt32},
		{-2147483649, math.MinInt32}, {math.Inf(1), math.MinInt32}, {math.Inf(-1), math.MinInt32}, {math.NaN(), math.MinInt32}} {
		if got := cvttInt32(tc.in); got != tc.want {
			t.Errorf("cvttInt32(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
