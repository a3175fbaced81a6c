package cpu

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Expected values below are worked out by hand (or with a calculator, as
// noted), never with this package.

func TestCopyConvertsWithRoundToNearestEven(t *testing.T) {
	b := newTestBackend(t, Options{})
	// F32 → F16:
	//   1.5 and -2.25 are exact in F16;
	//   65504 is F16's largest finite value; 65520 lies halfway between 65504
	//   and 65536 (which overflows), and the tie goes to the even mantissa,
	//   65536, so it becomes +Inf;
	//   1 + 2^-11 lies halfway between 1 and 1 + 2^-10: tie to even → 1;
	//   1 + 3·2^-11 lies halfway between 1 + 2^-10 (odd) and 1 + 2^-9 → 1 + 2^-9;
	//   2^-25 is half the smallest subnormal 2^-24: a tie between 0 (even) and 2^-24 → 0;
	//   3·2^-25 = 1.5·2^-24 lies halfway between 2^-24 (odd) and 2^-23 → 2^-23.
	src := floats(t, b, tensor.F32, []float32{1.5, -2.25, 65504, 65520, 1 + 1.0/2048, 1 + 3.0/2048, 0x1p-25, 3 * 0x1p-25}, 8)
	dst := alloc(t, b, tensor.F16, 8)
	if err := b.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	exact(t, "F32→F16", read(t, b, dst), []float32{1.5, -2.25, 65504, float32(math.Inf(1)), 1, 1 + 1.0/512, 0, 0x1p-23})

	// F32 → BF16: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 → 1;
	// 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 → 1 + 2^-6.
	src = floats(t, b, tensor.F32, []float32{1 + 1.0/256, 1 + 3.0/256, -0.5}, 3)
	dst = alloc(t, b, tensor.BF16, 3)
	if err := b.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	exact(t, "F32→BF16", read(t, b, dst), []float32{1, 1 + 1.0/64, -0.5})

	// F16 → F32 is exact: 1 + 2^-10 stays.
	h := floats(t, b, tensor.F16, []float32{1 + 1.0/1024, -0x1p-24}, 2)
	f := alloc(t, b, tensor.F32, 2)
	if err := b.Copy(f, h); err != nil {
		t.Fatal(err)
	}
	exact(t, "F16→F32", read(t, b, f), []float32{1 + 1.0/1024, -0x1p-24})
}

func TestCopySameDTypeIsBitExact(t *testing.T) {
	b := newTestBackend(t, Options{})
	// A NaN with a payload survives a same-dtype copy unchanged.
	nan := math.Float32frombits(0x7fc12345)
	src := floats(t, b, tensor.F32, []float32{nan, float32(math.Copysign(0, -1)), 3}, 3)
	dst := alloc(t, b, tensor.F32, 3)
	if err := b.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	got := read(t, b, dst)
	if math.Float32bits(got[0]) != 0x7fc12345 || math.Float32bits(got[1]) != 0x80000000 || got[2] != 3 {
		t.Errorf("copy F32: got bits %#x %#x %v", math.Float32bits(got[0]), math.Float32bits(got[1]), got[2])
	}

	ids := ints(t, b, []int32{7, -1, math.MaxInt32}, 3)
	idsOut := alloc(t, b, tensor.I32, 3)
	if err := b.Copy(idsOut, ids); err != nil {
		t.Fatal(err)
	}
	if got := readInts(t, b, idsOut); got[0] != 7 || got[1] != -1 || got[2] != math.MaxInt32 {
		t.Errorf("copy I32: got %v", got)
	}
}

func TestCopyBroadcastAndStrides(t *testing.T) {
	b := newTestBackend(t, Options{})
	// [3] broadcast to [2, 3]: the row repeats.
	row := floats(t, b, tensor.F32, []float32{1, 2, 3}, 3)
	dst := alloc(t, b, tensor.F16, 2, 3)
	if err := b.Copy(dst, row); err != nil {
		t.Fatal(err)
	}
	exact(t, "broadcast", read(t, b, dst), []float32{1, 2, 3, 1, 2, 3})

	// A [2, 3] matrix read transposed ([3, 2], strides [1, 3]) into a
	// contiguous tensor: element (i, j) of the result is m[j][i].
	m := floats(t, b, tensor.F32, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	mt, err := m.Transpose(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	out := alloc(t, b, tensor.BF16, 3, 2)
	if err := b.Copy(out, mt); err != nil {
		t.Fatal(err)
	}
	exact(t, "transpose", read(t, b, out), []float32{1, 4, 2, 5, 3, 6})

	// Writing into a non-contiguous output: column 1 of a [2, 3] tensor.
	whole := floats(t, b, tensor.F32, []float32{9, 9, 9, 9, 9, 9}, 2, 3)
	col, err := whole.Slice(1, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	src := floats(t, b, tensor.F32, []float32{-1, -2}, 2, 1)
	if err := b.Copy(col, src); err != nil {
		t.Fatal(err)
	}
	exact(t, "column", read(t, b, whole), []float32{9, -1, 9, 9, -2, 9})

	// A stride-0 view (Expand) broadcasts too: [2, 1] expanded to [2, 3].
	colVec := floats(t, b, tensor.F32, []float32{7, 8}, 2, 1)
	expanded, err := colVec.Expand(2, 3)
	if err != nil {
		t.Fatal(err)
	}
	dst2 := alloc(t, b, tensor.F32, 2, 3)
	if err := b.Copy(dst2, expanded); err != nil {
		t.Fatal(err)
	}
	exact(t, "expand", read(t, b, dst2), []float32{7, 7, 7, 8, 8, 8})
}

func TestAddMulBroadcast(t *testing.T) {
	b := newTestBackend(t, Options{})
	a := floats(t, b, tensor.F32, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	rowVec := floats(t, b, tensor.F32, []float32{10, 20, 30}, 3)
	colVec := floats(t, b, tensor.F32, []float32{100, 200}, 2, 1)
	dst := alloc(t, b, tensor.F32, 2, 3)

	if err := b.Add(dst, a, rowVec); err != nil {
		t.Fatal(err)
	}
	exact(t, "a+row", read(t, b, dst), []float32{11, 22, 33, 14, 25, 36})
	if err := b.Add(dst, colVec, a); err != nil {
		t.Fatal(err)
	}
	exact(t, "col+a", read(t, b, dst), []float32{101, 102, 103, 204, 205, 206})
	if err := b.Mul(dst, a, rowVec); err != nil {
		t.Fatal(err)
	}
	exact(t, "a*row", read(t, b, dst), []float32{10, 40, 90, 40, 100, 180})
	// Both inputs broadcast: [2, 1] · [3] → [2, 3].
	if err := b.Mul(dst, colVec, rowVec); err != nil {
		t.Fatal(err)
	}
	exact(t, "col*row", read(t, b, dst), []float32{1000, 2000, 3000, 2000, 4000, 6000})
}

func TestAddF16RoundsOnce(t *testing.T) {
	b := newTestBackend(t, Options{})
	// 1 + 2^-11 = halfway between 1 and 1 + 2^-10 → 1 (even);
	// (1 + 2^-10) + 2^-11 = halfway between 1 + 2^-10 (odd) and 1 + 2^-9 → 1 + 2^-9.
	x := floats(t, b, tensor.F16, []float32{1, 1 + 1.0/1024}, 2)
	y := floats(t, b, tensor.F16, []float32{1.0 / 2048, 1.0 / 2048}, 2)
	dst := alloc(t, b, tensor.F16, 2)
	if err := b.Add(dst, x, y); err != nil {
		t.Fatal(err)
	}
	exact(t, "F16 add", read(t, b, dst), []float32{1, 1 + 1.0/512})
}

func TestAddInPlaceAndStridedOutput(t *testing.T) {
	b := newTestBackend(t, Options{})
	a := floats(t, b, tensor.BF16, []float32{1, 2, 3, 4}, 2, 2)
	one := floats(t, b, tensor.BF16, []float32{0.5}, 1)
	if err := b.Add(a, a, one); err != nil {
		t.Fatal(err)
	}
	exact(t, "in place", read(t, b, a), []float32{1.5, 2.5, 3.5, 4.5})

	// dst transposed: dst^T = x, so dst (as stored) is x transposed.
	x := floats(t, b, tensor.F32, []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	store := alloc(t, b, tensor.F32, 3, 2)
	dstT, err := store.Transpose(0, 1) // [2, 3] view of a [3, 2] buffer
	if err != nil {
		t.Fatal(err)
	}
	zero := floats(t, b, tensor.F32, []float32{0}, 1)
	if err := b.Add(dstT, x, zero); err != nil {
		t.Fatal(err)
	}
	exact(t, "transposed dst", read(t, b, store), []float32{1, 4, 2, 5, 3, 6})
}

func TestSiLUGELU(t *testing.T) {
	b := newTestBackend(t, Options{})
	x := floats(t, b, tensor.F32, []float32{1, -1, 2, -3}, 4)
	dst := alloc(t, b, tensor.F32, 4)
	// Calculator values: x/(1+e^-x).
	if err := b.SiLU(dst, x); err != nil {
		t.Fatal(err)
	}
	near(t, "silu", read(t, b, dst), []float64{0.7310585786300049, -0.2689414213699951, 1.7615941559557646, -0.14227761953270035}, 1e-7)
	// x·Φ(x), Φ(1) = 0.841344746..., Φ(2) = 0.977249868..., Φ(-3) = 0.001349898...
	if err := b.GELU(dst, x, op.GELUOptions{}); err != nil {
		t.Fatal(err)
	}
	near(t, "gelu erf", read(t, b, dst), []float64{0.8413447460685429, -0.15865525393145707, 1.9544997361036416, -0.004049694094890287}, 1e-7)
	// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715x³))).
	if err := b.GELU(dst, x, op.GELUOptions{Approx: op.GELUTanh}); err != nil {
		t.Fatal(err)
	}
	near(t, "gelu tanh", read(t, b, dst), []float64{0.8411919906082768, -0.15880800939172324, 1.954597694087775, -0.0036373920817729943}, 1e-7)

	// Far tails: silu(-200) and gelu(-20) underflow to -0 or a tiny negative
	// number, never NaN; silu(200) = 200.
	tails := floats(t, b, tensor.F32, []float32{-200, 200, -20}, 3)
	tailOut := alloc(t, b, tensor.F32, 3)
	if err := b.SiLU(tailOut, tails); err != nil {
		t.Fatal(err)
	}
	near(t, "silu tails", read(t, b, tailOut), []float64{0, 200, -20 / (1 + math.Exp(20))}, 1e-7)
	if err := b.GELU(tailOut, tails, op.GELUOptions{}); err != nil {
		t.Fatal(err)
	}
	near(t, "gelu tails", read(t, b, tailOut), []float64{0, 200, 0}, 1e-7)

	err := b.GELU(dst, x, op.GELUOptions{Approx: 7})
	wantErr(t, "unknown approximation", err, op.ErrInvalidArgument)
}

func TestSoftmax(t *testing.T) {
	b := newTestBackend(t, Options{})
	x := floats(t, b, tensor.F32, []float32{1, 2, 3}, 3)
	dst := alloc(t, b, tensor.F32, 3)
	// e^(x-3)/Σ: [e^-2, e^-1, 1]/(e^-2 + e^-1 + 1).
	if err := b.Softmax(dst, x, op.SoftmaxOptions{}); err != nil {
		t.Fatal(err)
	}
	near(t, "softmax", read(t, b, dst), []float64{0.09003057317038046, 0.24472847105479767, 0.6652409557748219}, 1e-7)
	// Scale 2: softmax of [2, 4, 6].
	if err := b.Softmax(dst, x, op.SoftmaxOptions{Scale: 2}); err != nil {
		t.Fatal(err)
	}
	near(t, "softmax scale 2", read(t, b, dst), []float64{0.015876239976466765, 0.11731042782619835, 0.8668133321973348}, 1e-7)

	// Large magnitudes do not overflow: [1000, 1000, -1000] → [½, ½, 0].
	big := floats(t, b, tensor.F32, []float32{1000, 1000, -1000}, 3)
	if err := b.Softmax(dst, big, op.SoftmaxOptions{}); err != nil {
		t.Fatal(err)
	}
	near(t, "softmax large", read(t, b, dst), []float64{0.5, 0.5, 0}, 1e-7)

	// In place on F16.
	h := floats(t, b, tensor.F16, []float32{5, 5, 5, 5}, 4)
	if err := b.Softmax(h, h, op.SoftmaxOptions{}); err != nil {
		t.Fatal(err)
	}
	exact(t, "softmax in place", read(t, b, h), []float32{0.25, 0.25, 0.25, 0.25})
}

func TestSoftmaxCausal(t *testing.T) {
	b := newTestBackend(t, Options{})
	ones := floats(t, b, tensor.F32, []float32{1, 1, 1, 1, 1, 1, 1, 1, 1}, 3, 3)
	dst := alloc(t, b, tensor.F32, 3, 3)
	third := 1.0 / 3
	for _, tc := range []struct {
		offset int
		want   []float64
	}{
		// Row r keeps columns j ≤ offset + r, equal weights among them.
		{0, []float64{1, 0, 0, 0.5, 0.5, 0, third, third, third}},
		{-1, []float64{0, 0, 0, 1, 0, 0, 0.5, 0.5, 0}}, // row 0 fully masked → zeros
		{-5, []float64{0, 0, 0, 0, 0, 0, 0, 0, 0}},     // every row masked
		{1, []float64{0.5, 0.5, 0, third, third, third, third, third, third}},
		{1 << 62, []float64{third, third, third, third, third, third, third, third, third}}, // no overflow
	} {
		err := b.Softmax(dst, ones, op.SoftmaxOptions{Causal: true, PositionOffset: tc.offset})
		if err != nil {
			t.Fatal(err)
		}
		near(t, "causal offset "+strconv.Itoa(tc.offset), read(t, b, dst), tc.want, 1e-7)
	}

	// Rank 4: the mask follows the second-innermost index only, for every
	// outer index. [2, 1, 2, 2] of ones, offset 0 → each [2, 2] block is [[1, 0], [½, ½]].
	x4 := floats(t, b, tensor.F32, []float32{1, 1, 1, 1, 1, 1, 1, 1}, 2, 1, 2, 2)
	d4 := alloc(t, b, tensor.F32, 2, 1, 2, 2)
	if err := b.Softmax(d4, x4, op.SoftmaxOptions{Causal: true}); err != nil {
		t.Fatal(err)
	}
	near(t, "causal rank 4", read(t, b, d4), []float64{1, 0, 0.5, 0.5, 1, 0, 0.5, 0.5}, 1e-7)
}

func TestRMSNorm(t *testing.T) {
	b := newTestBackend(t, Options{})
	// x = [3, 4]: mean(x²) = 12.5; s = 1/√(12.5 + 1e-5) (eps defaults to 1e-5).
	x := floats(t, b, tensor.F32, []float32{3, 4}, 1, 2)
	dst := alloc(t, b, tensor.F32, 1, 2)
	if err := b.RMSNorm(dst, x, tensor.Tensor{}, op.NormOptions{}); err != nil {
		t.Fatal(err)
	}
	near(t, "rmsnorm", read(t, b, dst), []float64{0.8485277980128058, 1.1313703973504077}, 1e-7)
	w := floats(t, b, tensor.F32, []float32{2, 0.5}, 2)
	if err := b.RMSNorm(dst, x, w, op.NormOptions{}); err != nil {
		t.Fatal(err)
	}
	near(t, "rmsnorm weight", read(t, b, dst), []float64{1.6970555960256115, 0.5656851986752038}, 1e-7)
	// eps = 7: s = 1/√(12.5 + 7) = 1/√19.5.
	if err := b.RMSNorm(dst, x, tensor.Tensor{}, op.NormOptions{Eps: 7}); err != nil {
		t.Fatal(err)
	}
	near(t, "rmsnorm eps", read(t, b, dst), []float64{3 / math.Sqrt(19.5), 4 / math.Sqrt(19.5)}, 1e-7)

	// Rows are independent; F16 in place: [[3, 4], [-6, 8]] → row 2 has
	// mean square 50, s = 1/√50.00001.
	h := floats(t, b, tensor.F16, []float32{3, 4, -6, 8}, 2, 2)
	if err := b.RMSNorm(h, h, tensor.Tensor{}, op.NormOptions{}); err != nil {
		t.Fatal(err)
	}
	near(t, "rmsnorm F16 in place", read(t, b, h), []float64{0.8485277980128058, 1.1313703973504077, -6 / math.Sqrt(50.00001), 8 / math.Sqrt(50.00001)}, 1e-3)
}

func TestLayerNorm(t *testing.T) {
	b := newTestBackend(t, Options{})
	// x = [1, 2, 3, 4]: mean 2.5, var 1.25; (x − 2.5)/√(1.25 + 1e-5).
	x := floats(t, b, tensor.F32, []float32{1, 2, 3, 4}, 4)
	dst := alloc(t, b, tensor.F32, 4)
	if err := b.LayerNorm(dst, x, tensor.Tensor{}, tensor.Tensor{}, op.NormOptions{}); err != nil {
		t.Fatal(err)
	}
	near(t, "layernorm", read(t, b, dst), []float64{-1.3416354199689269, -0.447211806656309, 0.447211806656309, 1.3416354199689269}, 1e-6)
	// weight [1, 2, 3, 4], bias 0.5 everywhere.
	w := floats(t, b, tensor.F32, []float32{1, 2, 3, 4}, 4)
	bias := floats(t, b, tensor.F32, []float32{0.5, 0.5, 0.5, 0.5}, 4)
	if err := b.LayerNorm(dst, x, w, bias, op.NormOptions{}); err != nil {
		t.Fatal(err)
	}
	near(t, "layernorm weight bias", read(t, b, dst), []float64{-0.8416354199689269, -0.394423613312618, 1.8416354199689269, 5.8665416798757075}, 1e-6)
	// Bias alone: the normalised row plus 0.5.
	if err := b.LayerNorm(dst, x, tensor.Tensor{}, bias, op.NormOptions{}); err != nil {
		t.Fatal(err)
	}
	near(t, "layernorm bias", read(t, b, dst), []float64{-0.8416354199689269, 0.052788193343691, 0.947211806656309, 1.8416354199689269}, 1e-6)
	// A constant row has variance 0: (x − mean) = 0 → 0, not NaN.
	c := floats(t, b, tensor.F32, []float32{5, 5, 5, 5}, 4)
	if err := b.LayerNorm(dst, c, tensor.Tensor{}, tensor.Tensor{}, op.NormOptions{}); err != nil {
		t.Fatal(err)
	}
	exact(t, "layernorm constant", read(t, b, dst), []float32{0, 0, 0, 0})
	// A large offset does not cost accuracy (two-pass variance): [1e4+1, 1e4+2, 1e4+3, 1e4+4] → as [1, 2, 3, 4].
	off := floats(t, b, tensor.F32, []float32{10001, 10002, 10003, 10004}, 4)
	if err := b.LayerNorm(dst, off, tensor.Tensor{}, tensor.Tensor{}, op.NormOptions{}); err != nil {
		t.Fatal(err)
	}
	near(t, "layernorm offset", read(t, b, dst), []float64{-1.3416354199689269, -0.447211806656309, 0.447211806656309, 1.3416354199689269}, 1e-6)
}

func TestRoPE(t *testing.T) {
	b := newTestBackend(t, Options{})
	// One token at position 1, one head of 4: x = [1, 2, 3, 4].
	// Frequencies 10000^(−2i/4): 1 and 0.01, so θ = 1 and 0.01.
	// A pair (a, b) becomes (a·cos θ − b·sin θ, a·sin θ + b·cos θ).
	x := floats(t, b, tensor.F32, []float32{1, 2, 3, 4}, 1, 1, 4)
	pos := ints(t, b, []int32{1}, 1)
	pos0 := ints(t, b, []int32{0}, 1)
	dst := alloc(t, b, tensor.F32, 1, 1, 4)
	cases := []struct {
		name string
		pos  tensor.Tensor
		opts op.RoPEOptions
		want []float64
	}{
		// Normal: pairs (1, 2) at θ = 1 and (3, 4) at θ = 0.01.
		{"normal", pos, op.RoPEOptions{}, []float64{-1.1426396637476532, 1.922075596544176, 2.9598506679133294, 4.029799501669161}},
		// NeoX: pairs (x0, x2) = (1, 3) at θ = 1 and (x1, x3) = (2, 4) at θ = 0.01;
		// results go back to x0, x2 and x1, x3.
		{"neox", pos, op.RoPEOptions{Style: op.RoPENeoX}, []float64{-1.9841106485555495, 1.959900667496664, 2.4623779024123156, 4.019799668334994}},
		// Position 0 + offset 1 is position 1.
		{"offset", pos0, op.RoPEOptions{PositionOffset: 1}, []float64{-1.1426396637476532, 1.922075596544176, 2.9598506679133294, 4.029799501669161}},
		// NDims 2: only (1, 2) rotates, with frequency 10000^0 = 1; 3 and 4 pass.
		{"ndims 2", pos, op.RoPEOptions{NDims: 2}, []float64{-1.1426396637476532, 1.922075596544176, 3, 4}},
		// FreqScale 0.5 halves θ; FreqFactors [1, 4] then divide: θ = 0.5, 0.01·0.5/4 = 0.00125.
		{"scale and factors", pos, op.RoPEOptions{FreqScale: 0.5, FreqFactors: floats(t, b, tensor.F32, []float32{1, 4}, 2)},
			[]float64{-0.08126851531803325, 2.2345906623849485, 2.9949976575523887, 4.003746874023844}},
		// FreqBase 100: frequencies 1 and 0.1.
		{"base 100", pos, op.RoPEOptions{FreqBase: 100}, []float64{-1.1426396637476532, 1.922075596544176,
			3*math.Cos(0.1) - 4*math.Sin(0.1), 3*math.Sin(0.1) + 4*math.Cos(0.1)}},
		// A large position: θ = 10^6 for the first pair, computed in float64.
		{"large position", ints(t, b, []int32{1000000}, 1), op.RoPEOptions{NDims: 2},
			[]float64{1.6367391318757307, 1.5235107528949965, 3, 4}},
	}
	for _, tc := range cases {
		if err := b.RoPE(dst, x, tc.pos, tc.opts); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		near(t, "rope "+tc.name, read(t, b, dst), tc.want, 2e-6)
	}

	// Batched, two heads, in place, per-token positions: batch 2 × 1 token,
	// positions [[0], [1]]. Position 0 leaves x unchanged.
	xb := floats(t, b, tensor.F32, []float32{1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8}, 2, 1, 2, 4)
	pb := ints(t, b, []int32{0, 1}, 2, 1)
	if err := b.RoPE(xb, xb, pb, op.RoPEOptions{NDims: 2}); err != nil {
		t.Fatal(err)
	}
	// (5, 6) at θ = 1: 5cos1 − 6sin1, 5sin1 + 6cos1.
	c1, s1 := math.Cos(1), math.Sin(1)
	near(t, "rope batched in place", read(t, b, xb), []float64{1, 2, 3, 4, 1, 2, 3, 4,
		c1 - 2*s1, s1 + 2*c1, 3, 4, 5*c1 - 6*s1, 5*s1 + 6*c1, 7, 8}, 2e-6)
}

func TestEmbeddingFloatTables(t *testing.T) {
	b := newTestBackend(t, Options{})
	table := floats(t, b, tensor.F32, []float32{1, 2, 3, 4, 5, 6}, 3, 2)
	ids := ints(t, b, []int32{2, 0, 2}, 3)
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
		dst := alloc(t, b, dt, 3, 2)
		if err := b.Embedding(dst, table, ids); err != nil {
			t.Fatal(err)
		}
		exact(t, "embedding F32 → "+dt.String(), read(t, b, dst), []float32{5, 6, 1, 2, 5, 6})
	}
	// An F16 table with a value F32 keeps exactly; ids of rank 2.
	h := floats(t, b, tensor.F16, []float32{1 + 1.0/1024, -2, 0.5, 0.25}, 2, 2)
	ids2 := ints(t, b, []int32{1, 0, 0, 1}, 2, 2)
	dst := alloc(t, b, tensor.F32, 2, 2, 2)
	if err := b.Embedding(dst, h, ids2); err != nil {
		t.Fatal(err)
	}
	exact(t, "embedding F16 table", read(t, b, dst), []float32{0.5, 0.25, 1 + 1.0/1024, -2, 1 + 1.0/1024, -2, 0.5, 0.25})
}

// quantTable allocates a [len(rows), dim] table of dt from raw rows.
func quantTable(t *testing.T, b *Backend, dt tensor.DType, dim int, rows ...[]byte) tensor.Tensor {
	t.Helper()
	var raw []byte
	for _, r := range rows {
		raw = append(raw, r...)
	}
	table, err := b.Alloc(dt, len(rows), dim)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(table, raw); err != nil {
		t.Fatal(err)
	}
	return table
}

func TestEmbeddingQuantizedTables(t *testing.T) {
	b := newTestBackend(t, Options{})

	// Q8_0 block: f16 d = 0.5 (0x3800), then 32 int8 quants q; value = d·q.
	q8 := make([]byte, 34)
	q8[0], q8[1] = 0x00, 0x38
	wantQ8 := make([]float32, 32)
	for i := range 32 {
		q := int8(i - 16)
		q8[2+i] = byte(q)
		wantQ8[i] = 0.5 * float32(i-16)
	}
	// A second row of zeros (d = 0) to check the row choice.
	table := quantTable(t, b, tensor.Q8_0, 32, make([]byte, 34), q8)
	dst := alloc(t, b, tensor.F32, 1, 32)
	if err := b.Embedding(dst, table, ints(t, b, []int32{1}, 1)); err != nil {
		t.Fatal(err)
	}
	exact(t, "Q8_0", read(t, b, dst), wantQ8)

	// Q4_0 block: f16 d = 2 (0x4000), 16 bytes; byte j holds element j in its
	// low nibble and element j+16 in its high nibble, value = d·(nibble − 8).
	// Bytes 0x9F: low 15 → 2·7 = 14, high 9 → 2·1 = 2.
	q4 := make([]byte, 18)
	q4[1] = 0x40
	for j := range 16 {
		q4[2+j] = 0x9F
	}
	wantQ4 := make([]float32, 32)
	for j := range 16 {
		wantQ4[j], wantQ4[j+16] = 14, 2
	}
	table = quantTable(t, b, tensor.Q4_0, 32, q4)
	if err := b.Embedding(dst, table, ints(t, b, []int32{0}, 1)); err != nil {
		t.Fatal(err)
	}
	exact(t, "Q4_0", read(t, b, dst), wantQ4)

	// Q4_K super-block: f16 d = 1 (0x3C00), f16 dmin = 0.5 (0x3800), 12 bytes
	// of packed 6-bit scales and mins, 128 bytes of quants. Sub-blocks 0–3
	// take scale q[j] & 63 and min q[j+4] & 63; sub-blocks 4–7 take scale
	// (q[j+4] & 15) | (q[j−4] >> 6) << 4 and min (q[j+4] >> 4) | (q[j] >> 6) << 4.
	// With q[0..3] = 2, q[4..7] = 1, q[8..11] = 0x13: sub-blocks 0–3 have
	// scale 2, min 1; sub-blocks 4–7 have scale 3, min 1.
	// Each 64-element chunk c uses sub-block 2c on the low nibbles of
	// qs[32c:32c+32] and 2c+1 on the high nibbles. All qs = 0x21: low 1, high 2.
	// value = d·scale·nibble − dmin·min:
	//   sub 0, 2 (low, scale 2): 2·1 − 0.5 = 1.5;  sub 1, 3 (high): 2·2 − 0.5 = 3.5;
	//   sub 4, 6 (low, scale 3): 3·1 − 0.5 = 2.5;  sub 5, 7 (high): 3·2 − 0.5 = 5.5.
	qk := make([]byte, 144)
	qk[0], qk[1] = 0x00, 0x3C
	qk[2], qk[3] = 0x00, 0x38
	for j := range 4 {
		qk[4+j] = 2
		qk[4+4+j] = 1
		qk[4+8+j] = 0x13
	}
	for j := range 128 {
		qk[16+j] = 0x21
	}
	wantQK := make([]float32, 256)
	subValue := []float32{1.5, 3.5, 1.5, 3.5, 2.5, 5.5, 2.5, 5.5}
	for i := range wantQK {
		wantQK[i] = subValue[i/32]
	}
	table = quantTable(t, b, tensor.Q4_K, 256, qk)
	dstK := alloc(t, b, tensor.F32, 1, 256)
	if err := b.Embedding(dstK, table, ints(t, b, []int32{0}, 1)); err != nil {
		t.Fatal(err)
	}
	exact(t, "Q4_K", read(t, b, dstK), wantQK)

	// Q6_K super-block: ql[128], qh[64], int8 scales[16], f16 d. For each
	// half h (128 elements) and l < 32, with ql' = ql[64h:], qh' = qh[32h:],
	// sc' = scales[8h:], is = l/16:
	//   q1 = (ql'[l] & 15 | (qh'[l] & 3) << 4) − 32        → element 128h + l,      scale sc'[is]
	//   q2 = (ql'[l+32] & 15 | (qh'[l] >> 2 & 3) << 4) − 32 → element 128h + l + 32, scale sc'[is+2]
	//   q3 = (ql'[l] >> 4 | (qh'[l] >> 4 & 3) << 4) − 32    → element 128h + l + 64, scale sc'[is+4]
	//   q4 = (ql'[l+32] >> 4 | (qh'[l] >> 6) << 4) − 32     → element 128h + l + 96, scale sc'[is+6]
	// With every ql = 0x21 and qh = 0xE4 (bits 00, 01, 10, 11 from the low end):
	//   q1 = 1 − 32 = −31, q2 = 1 + 16 − 32 = −15, q3 = 2 + 32 − 32 = 2, q4 = 2 + 48 − 32 = 18.
	// scales = 1..16, d = 0.25 (0x3400); value = d·scale·q.
	q6 := make([]byte, 210)
	for j := range 128 {
		q6[j] = 0x21
	}
	for j := range 64 {
		q6[128+j] = 0xE4
	}
	for j := range 16 {
		q6[192+j] = byte(j + 1)
	}
	q6[208], q6[209] = 0x00, 0x34
	wantQ6 := make([]float32, 256)
	qs := []float32{-31, -15, 2, 18}
	for h := range 2 {
		for l := range 32 {
			is := l / 16
			for k := range 4 { // k picks q1..q4 and element offset 32k, scale index is + 2k
				scale := float32(8*h + is + 2*k + 1)
				wantQ6[128*h+32*k+l] = 0.25 * scale * qs[k]
			}
		}
	}
	// Spot checks of that loop: element 0 = 0.25·1·(−31) = −7.75;
	// element 16 = 0.25·2·(−31) = −15.5; element 96 = 0.25·7·18 = 31.5;
	// element 128 = 0.25·9·(−31) = −69.75.
	if wantQ6[0] != -7.75 || wantQ6[16] != -15.5 || wantQ6[96] != 31.5 || wantQ6[128] != -69.75 {
		t.Fatalf("test table: %v %v %v %v", wantQ6[0], wantQ6[16], wantQ6[96], wantQ6[128])
	}
	table = quantTable(t, b, tensor.Q6_K, 256, q6)
	dstH := alloc(t, b, tensor.F16, 1, 256)
	if err := b.Embedding(dstH, table, ints(t, b, []int32{0}, 1)); err != nil {
		t.Fatal(err)
	}
	exact(t, "Q6_K", read(t, b, dstH), wantQ6) // every value is exact in F16
}

func TestEmbeddingIDOutOfRange(t *testing.T) {
	b := newTestBackend(t, Options{})
	table := floats(t, b, tensor.F32, []float32{1, 2, 3, 4, 5, 6}, 3, 2)
	dst := alloc(t, b, tensor.F32, 2, 2, 2)
	before := rawBuffer(t, b, dst)
	for _, tc := range []struct {
		ids  []int32
		want string
	}{
		{[]int32{0, 1, 2, 3}, "id 3 at index [1 1]"},
		{[]int32{0, -1, 2, 7}, "id -1 at index [0 1]"}, // the first bad id in row-major order
	} {
		err := b.Embedding(dst, table, ints(t, b, tc.ids, 2, 2))
		wantErr(t, "out of range id", err, op.ErrInvalidArgument)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "[0, 3)") {
			t.Errorf("error %q should contain %q and the vocabulary [0, 3)", err, tc.want)
		}
		if after := rawBuffer(t, b, dst); string(after) != string(before) {
			t.Errorf("dst was written before the ids were checked")
		}
	}
}

func TestArgmax(t *testing.T) {
	b := newTestBackend(t, Options{})
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	x := floats(t, b, tensor.F32, []float32{
		1, 3, 3, 2, // tie → the first 3, index 1
		nan, 1, nan, 1, // NaN skipped, tie → index 1
		nan, nan, nan, nan, // all NaN → 0
		float32(math.Inf(-1)), nan, -inf, -5, // -5 is the largest
		0, float32(math.Copysign(0, -1)), -1, -2, // +0 and −0 are equal → index 0
		-1, inf, nan, inf, // first +Inf
	}, 6, 4)
	dst := alloc(t, b, tensor.I32, 6)
	if err := b.Argmax(dst, x); err != nil {
		t.Fatal(err)
	}
	got := readInts(t, b, dst)
	want := []int32{1, 1, 0, 3, 0, 1}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("argmax row %d = %d, want %d", i, got[i], want[i])
		}
	}

	// Rank 1 → dst [1]; F16 values that tie only after rounding: 1 + 2^-12
	// rounds to 1 in F16, so [1, 1 + 2^-12] ties → 0.
	h := floats(t, b, tensor.F16, []float32{1, 1 + 1.0/4096, 0.5}, 3)
	d1 := alloc(t, b, tensor.I32, 1)
	if err := b.Argmax(d1, h); err != nil {
		t.Fatal(err)
	}
	if got := readInts(t, b, d1); got[0] != 0 {
		t.Errorf("argmax F16 tie = %d, want 0", got[0])
	}

	// Rank 3 into a strided dst: [2, 2, 3] → [2, 2], dst transposed.
	x3 := floats(t, b, tensor.BF16, []float32{0, 1, 2, 5, 4, 3, 9, 9, 1, 1, 2, 1}, 2, 2, 3)
	store := alloc(t, b, tensor.I32, 2, 2)
	dstT, _ := store.Transpose(0, 1)
	if err := b.Argmax(dstT, x3); err != nil {
		t.Fatal(err)
	}
	// Row argmaxes: [0 1 2]→2, [5 4 3]→0, [9 9 1]→0, [1 2 1]→1; stored transposed.
	if got := readInts(t, b, store); got[0] != 2 || got[1] != 0 || got[2] != 0 || got[3] != 1 {
		t.Errorf("argmax transposed dst = %v, want [2 0 0 1]", got)
	}
}

func TestEmptyTensorsDoNothing(t *testing.T) {
	b := newTestBackend(t, Options{})
	e := alloc(t, b, tensor.F32, 0, 4)
	e2 := alloc(t, b, tensor.F32, 0, 4)
	if err := b.Add(e2, e, e); err != nil {
		t.Errorf("add on empty: %v", err)
	}
	if err := b.Softmax(e2, e, op.SoftmaxOptions{}); err != nil {
		t.Errorf("softmax on empty: %v", err)
	}
	if err := b.RMSNorm(e2, e, tensor.Tensor{}, op.NormOptions{}); err != nil {
		t.Errorf("rmsnorm on empty: %v", err)
	}
	empty := alloc(t, b, tensor.I32, 0)
	if err := b.Argmax(empty, e); err != nil {
		t.Errorf("argmax on empty: %v", err)
	}
	table := floats(t, b, tensor.F32, []float32{1, 2}, 1, 2)
	if err := b.Embedding(alloc(t, b, tensor.F32, 0, 2), table, empty); err != nil {
		t.Errorf("embedding on empty: %v", err)
	}
}
