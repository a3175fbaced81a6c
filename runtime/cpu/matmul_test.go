package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// blocks allocates a tensor of block format dt and shape holding raw.
func blocks(t testing.TB, b *Backend, dt tensor.DType, raw []byte, shape ...int) tensor.Tensor {
	t.Helper()
	w, err := b.Alloc(dt, shape...)
	if err != nil {
		t.Fatalf("Alloc(%v, %v): %v", dt, shape, err)
	}
	if err := b.Upload(w, raw); err != nil {
		t.Fatalf("Upload: %v", err)
	}
	return w
}

// putF16 writes v (exactly representable) as a little-endian F16 at b[0:2].
func putF16(b []byte, v float32) {
	binary.LittleEndian.PutUint16(b, tensor.F32ToF16(v))
}

// bothPaths runs MatMul (or, with wUp, MatMulSwiGLU) by the fused and the
// blocked path into fresh outputs of dt and shape, and returns both results.
func bothPaths(t *testing.T, b *Backend, dt tensor.DType, shape []int, x, w, wUp, bias tensor.Tensor) (fused, blocked []float32) {
	t.Helper()
	for _, path := range []matmulPath{pathFused, pathBlocked} {
		dst := alloc(t, b, dt, shape...)
		if err := b.matmulForced(dst, x, w, wUp, bias, path); err != nil {
			t.Fatalf("path %d: %v", path, err)
		}
		if path == pathFused {
			fused = read(t, b, dst)
		} else {
			blocked = read(t, b, dst)
		}
	}
	return fused, blocked
}

// matmulForced is MatMul / MatMulSwiGLU with the path chosen by the caller
// (the fused path only takes up to fusedMaxRowsAsm rows).
func (b *Backend) matmulForced(dst, x, w, wUp, bias tensor.Tensor, path matmulPath) error {
	if wUp.IsZero() {
		s, err := op.CheckMatMul(dst, x, w, op.MatMulOptions{Bias: bias})
		if err != nil {
			return err
		}
		return b.matmul(op.NameMatMul, dst, x, []tensor.Tensor{w}, bias, s, path)
	}
	s, err := op.CheckMatMulSwiGLU(dst, x, w, wUp)
	if err != nil {
		return err
	}
	return b.matmul(op.NameMatMulSwiGLU, dst, x, []tensor.Tensor{w, wUp}, tensor.Tensor{}, s, path)
}

func TestMatMulFloatWeightsByHand(t *testing.T) { forEachDotImpl(t, testMatMulFloatWeightsByHand) }

func testMatMulFloatWeightsByHand(t *testing.T) {
	b := newTestBackend(t, Options{Threads: 2})
	// x = [[1, 2, 3], [-1, 0.5, 4]], w = [[1, 0, -1], [2, 1, 0.5], [0.25, -2, 1]]:
	// y[0] = [1 + 0 - 3, 2 + 2 + 1.5, 0.25 - 4 + 3] = [-2, 5.5, -0.75]
	// y[1] = [-1 + 0 - 4, -2 + 0.5 + 2, -0.25 - 1 + 4] = [-5, 0.5, 2.75]
	// plus bias [10, 20, 30]: [8, 25.5, 29.25] and [5, 20.5, 32.75].
	xVals := []float32{1, 2, 3, -1, 0.5, 4}
	wVals := []float32{1, 0, -1, 2, 1, 0.5, 0.25, -2, 1}
	want := []float32{-2, 5.5, -0.75, -5, 0.5, 2.75}
	wantBias := []float32{8, 25.5, 29.25, 5, 20.5, 32.75}
	bias := floats(t, b, tensor.F32, []float32{10, 20, 30}, 3)
	for _, wt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
		for _, xt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
			w := floats(t, b, wt, wVals, 3, 3)
			x := floats(t, b, xt, xVals, 2, 3)
			f, bl := bothPaths(t, b, xt, []int{2, 3}, x, w, tensor.Tensor{}, tensor.Tensor{})
			exact(t, fmt.Sprintf("w %v x %v fused", wt, xt), f, want)
			exact(t, fmt.Sprintf("w %v x %v blocked", wt, xt), bl, want)
			f, bl = bothPaths(t, b, xt, []int{2, 3}, x, w, tensor.Tensor{}, bias)
			exact(t, fmt.Sprintf("w %v x %v fused, bias", wt, xt), f, wantBias)
			exact(t, fmt.Sprintf("w %v x %v blocked, bias", wt, xt), bl, wantBias)
		}
	}
	// The public entry point (m = 2: the fused path) agrees.
	dst := alloc(t, b, tensor.F32, 2, 3)
	if err := b.MatMul(dst, floats(t, b, tensor.F32, xVals, 2, 3), floats(t, b, tensor.F32, wVals, 3, 3), op.MatMulOptions{Bias: bias}); err != nil {
		t.Fatal(err)
	}
	exact(t, "MatMul", read(t, b, dst), wantBias)
}

func TestMatMulOutputRoundsOnce(t *testing.T) { forEachDotImpl(t, testMatMulOutputRoundsOnce) }

func testMatMulOutputRoundsOnce(t *testing.T) {
	b := newTestBackend(t, Options{})
	// x = [1, 1], w = [[1, 2⁻⁹]], bias [2⁻¹⁰]: the F32 result 1 + 2⁻⁹ + 2⁻¹⁰
	// is exact and lies between the BF16 neighbours 1 and 1 + 2⁻⁷, nearer 1;
	// in F16 (ulp 2⁻¹⁰ at 1) it is exact: 1.0029296875.
	w := floats(t, b, tensor.F32, []float32{1, 1.0 / 512}, 1, 2)
	bias := floats(t, b, tensor.F32, []float32{1.0 / 1024}, 1)
	for _, c := range []struct {
		dt   tensor.DType
		want float32
	}{{tensor.F32, 1 + 1.0/512 + 1.0/1024}, {tensor.F16, 1.0029296875}, {tensor.BF16, 1}} {
		xc := floats(t, b, c.dt, []float32{1, 1}, 1, 2)
		dst := alloc(t, b, c.dt, 1, 1)
		if err := b.MatMul(dst, xc, w, op.MatMulOptions{Bias: bias}); err != nil {
			t.Fatal(err)
		}
		exact(t, c.dt.String(), read(t, b, dst), []float32{c.want})
	}
}

func TestMatMulQ8_0ByHand(t *testing.T) { forEachDotImpl(t, testMatMulQ8_0ByHand) }

func testMatMulQ8_0ByHand(t *testing.T) {
	b := newTestBackend(t, Options{})
	// Row 0: d = 0.5, q[t] = t − 16, so w[t] = (t − 16)/2.
	// Row 1: d = 0.25, q = [127, −128, 0, ...]: w = [31.75, −32, 0, ...].
	raw := make([]byte, 2*34)
	putF16(raw[0:], 0.5)
	for i := range 32 {
		raw[2+i] = byte(int8(i - 16))
	}
	putF16(raw[34:], 0.25)
	raw[36], raw[37] = 127, 0x80
	w := blocks(t, b, tensor.Q8_0, raw, 2, 32)
	// x row 0 all ones: Σ(t−16)/2 = (496 − 512)/2 = −8; 31.75 − 32 = −0.25.
	// x row 1 x[t] = t: Σ t(t−16)/2 = (10416 − 16·496)/2 = 1240; −32·1 = −32.
	xVals := make([]float32, 64)
	for i := range 32 {
		xVals[i] = 1
		xVals[32+i] = float32(i)
	}
	x := floats(t, b, tensor.F32, xVals, 2, 32)
	f, bl := bothPaths(t, b, tensor.F32, []int{2, 2}, x, w, tensor.Tensor{}, tensor.Tensor{})
	want := []float32{-8, -0.25, 1240, -32}
	exact(t, "fused", f, want)
	exact(t, "blocked", bl, want)
}

func TestMatMulQ4_0ByHand(t *testing.T) { forEachDotImpl(t, testMatMulQ4_0ByHand) }

func testMatMulQ4_0ByHand(t *testing.T) {
	b := newTestBackend(t, Options{})
	// d = 2; byte j holds j in its low nibble (element j: w = 2(j − 8)) and
	// 15 − j in its high nibble (element j+16: w = 2(7 − j)).
	raw := make([]byte, 18)
	putF16(raw, 2)
	for j := range 16 {
		raw[2+j] = byte(j) | byte(15-j)<<4
	}
	w := blocks(t, b, tensor.Q4_0, raw, 1, 32)
	// All ones: 2·Σⱼ((j − 8) + (7 − j)) = 2·16·(−1) = −32.
	// Ones on the first 16 elements only: 2·Σⱼ(j − 8) = 2·(120 − 128) = −16.
	// One-hot at element 20 (j = 4, high nibble): 2·(7 − 4) = 6.
	xVals := make([]float32, 96)
	for i := range 32 {
		xVals[i] = 1
		if i < 16 {
			xVals[32+i] = 1
		}
	}
	xVals[64+20] = 1
	x := floats(t, b, tensor.F32, xVals, 3, 32)
	f, bl := bothPaths(t, b, tensor.F32, []int{3, 1}, x, w, tensor.Tensor{}, tensor.Tensor{})
	want := []float32{-32, -16, 6}
	exact(t, "fused", f, want)
	exact(t, "blocked", bl, want)
}

func TestMatMulQ4_KByHand(t *testing.T) { forEachDotImpl(t, testMatMulQ4_KByHand) }

func testMatMulQ4_KByHand(t *testing.T) {
	b := newTestBackend(t, Options{})
	// d = 1, dmin = 0.5. Scales s and mins m of the eight sub-blocks:
	// s = [1, 2, 3, 4, 2, 2, 2, 18], m = [0, 1, 2, 3, 1, 1, 1, 1]; sub-block 7's
	// scale 18 = 2 + 16 takes its top bits (01) from byte 3 (4 | 1<<6).
	// Every quant byte is 0x31: q = 1 in the low nibble (sub-blocks 0, 2, 4,
	// 6) and 3 in the high nibble (1, 3, 5, 7). w = d·s·q − dmin·m:
	// [1, 5.5, 2, 10.5, 1.5, 5.5, 1.5, 53.5] per sub-block.
	raw := make([]byte, 144)
	putF16(raw[0:], 1)
	putF16(raw[2:], 0.5)
	copy(raw[4:16], []byte{1, 2, 3, 4 | 1<<6, 0, 1, 2, 3, 0x12, 0x12, 0x12, 0x12})
	for i := 16; i < 144; i++ {
		raw[i] = 0x31
	}
	w := blocks(t, b, tensor.Q4_K, raw, 1, 256)
	// All ones: 32·(1 + 5.5 + 2 + 10.5 + 1.5 + 5.5 + 1.5 + 53.5) = 32·81 = 2592.
	// Ones on sub-block 7 (elements 224..255): 32·53.5 = 1712.
	// 2 at element 0 only: 2·1 = 2. Ones on sub-block 1 (elements 32..63): 32·5.5 = 176.
	xVals := make([]float32, 4*256)
	for i := range 256 {
		xVals[i] = 1
		if i >= 224 {
			xVals[256+i] = 1
		}
		if i >= 32 && i < 64 {
			xVals[768+i] = 1
		}
	}
	xVals[512] = 2
	x := floats(t, b, tensor.F32, xVals, 4, 256)
	f, bl := bothPaths(t, b, tensor.F32, []int{4, 1}, x, w, tensor.Tensor{}, tensor.Tensor{})
	want := []float32{2592, 1712, 2, 176}
	exact(t, "fused", f, want)
	exact(t, "blocked", bl, want)
}

func TestMatMulQ6_KByHand(t *testing.T) { forEachDotImpl(t, testMatMulQ6_KByHand) }

func testMatMulQ6_KByHand(t *testing.T) {
	b := newTestBackend(t, Options{})
	// d = 0.5; scale of sub-block s (16 elements each) is s − 8; every quant
	// is 33 (q − 32 = 1: low nibbles 1, high bits 2, so ql bytes 0x11 and qh
	// bytes 0xaa), except element 100 (half 0, l = 4, the fourth group:
	// high nibble of ql[36], bits 6-7 of qh[4]), whose quant is 0 (q − 32 = −32).
	raw := make([]byte, 210)
	for i := range 128 {
		raw[i] = 0x11
	}
	for i := 128; i < 192; i++ {
		raw[i] = 0xaa
	}
	raw[36] = 0x01
	raw[128+4] = 0x2a
	for s := range 16 {
		raw[192+s] = byte(int8(s - 8))
	}
	putF16(raw[208:], 0.5)
	w := blocks(t, b, tensor.Q6_K, raw, 1, 256)
	// One-hot at 100 (sub-block 6): 0.5·(6 − 8)·(−32) = 32.
	// One-hot at 200 (sub-block 12): 0.5·(12 − 8)·1 = 2.
	// One-hot at 36 (sub-block 2; ql[36]'s low nibble is still 1): 0.5·(−6) = −3.
	// All ones: Σₛ 16·0.5·(s − 8) = 8·(120 − 128) = −64, minus the −1
	// element 100 would have had, plus its 32: −64 + 1 + 32 = −31.
	xVals := make([]float32, 4*256)
	xVals[100] = 1
	xVals[256+200] = 1
	xVals[512+36] = 1
	for i := range 256 {
		xVals[768+i] = 1
	}
	x := floats(t, b, tensor.F32, xVals, 4, 256)
	f, bl := bothPaths(t, b, tensor.F32, []int{4, 1}, x, w, tensor.Tensor{}, tensor.Tensor{})
	want := []float32{32, 2, -3, -31}
	exact(t, "fused", f, want)
	exact(t, "blocked", bl, want)
}

func TestMatMulSwiGLUByHand(t *testing.T) { forEachDotImpl(t, testMatMulSwiGLUByHand) }

func testMatMulSwiGLUByHand(t *testing.T) {
	b := newTestBackend(t, Options{})
	// x = [1, 2]; gate rows [1, 0], [0, −1] give g = [1, −2]; up rows
	// [2, 1], [0.5, 0.5] give u = [4, 1.5].
	// silu(1)·4 = 4/(1 + e⁻¹) = 2.9242343145200196;
	// silu(−2)·1.5 = −3/(1 + e²) = −0.35760876606635273.
	x := floats(t, b, tensor.F32, []float32{1, 2}, 2)
	gate := floats(t, b, tensor.F32, []float32{1, 0, 0, -1}, 2, 2)
	up := floats(t, b, tensor.F32, []float32{2, 1, 0.5, 0.5}, 2, 2)
	want := []float32{float32(2.9242343145200196), float32(-0.35760876606635273)}
	f, bl := bothPaths(t, b, tensor.F32, []int{2}, x, gate, up, tensor.Tensor{})
	exact(t, "fused", f, want)
	exact(t, "blocked", bl, want)
	dst := alloc(t, b, tensor.F32, 2)
	if err := b.MatMulSwiGLU(dst, x, gate, up); err != nil {
		t.Fatal(err)
	}
	exact(t, "MatMulSwiGLU", read(t, b, dst), want)
}

func TestMatMulEmptyK(t *testing.T) { forEachDotImpl(t, testMatMulEmptyK) }

func testMatMulEmptyK(t *testing.T) {
	b := newTestBackend(t, Options{})
	bias := floats(t, b, tensor.F32, []float32{1, -2, 3}, 3)
	for _, wt := range []tensor.DType{tensor.F32, tensor.BF16, tensor.Q8_0, tensor.Q4_K} {
		w := alloc(t, b, wt, 3, 0)
		x := alloc(t, b, tensor.F16, 2, 0)
		// k = 0: the bias, or zeros.
		f, bl := bothPaths(t, b, tensor.F16, []int{2, 3}, x, w, tensor.Tensor{}, bias)
		exact(t, wt.String()+" fused, bias", f, []float32{1, -2, 3, 1, -2, 3})
		exact(t, wt.String()+" blocked, bias", bl, []float32{1, -2, 3, 1, -2, 3})
		f, bl = bothPaths(t, b, tensor.F16, []int{2, 3}, x, w, tensor.Tensor{}, tensor.Tensor{})
		exact(t, wt.String()+" fused", f, make([]float32, 6))
		exact(t, wt.String()+" blocked", bl, make([]float32, 6))
		f, bl = bothPaths(t, b, tensor.F16, []int{2, 3}, x, w, w, tensor.Tensor{})
		exact(t, wt.String()+" fused, swiglu", f, make([]float32, 6))
		exact(t, wt.String()+" blocked, swiglu", bl, make([]float32, 6))
	}
}

// randomWeights returns an [n, k] weight matrix of dt (normal values,
// quantized by tensor.Quantize for the block formats), row-padded by
// padBlocks blocks when padBlocks > 0 (a slice of a wider matrix), and its
// values as tensor.Dequantize decodes them.
func randomWeights(t testing.TB, b *Backend, rng *rand.Rand, dt tensor.DType, n, k, padBlocks int) (tensor.Tensor, []float64) {
	t.Helper()
	be := dt.BlockElems()
	stride := k + padBlocks*be
	vals := make([]float32, n*stride)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64())
	}
	raw, err := tensor.Quantize(dt, vals)
	if err != nil {
		t.Fatal(err)
	}
	whole := blocks(t, b, dt, raw, n, stride)
	w := whole
	if padBlocks > 0 {
		w, err = tensor.NewView(whole.Buffer(), dt, padBlocks/2*be, []int{n, k}, []int{stride, 1})
		if err != nil {
			t.Fatal(err)
		}
	}
	dec := make([]float32, len(vals))
	if err := tensor.Dequantize(dt, raw, dec); err != nil {
		t.Fatal(err)
	}
	out := make([]float64, 0, n*k)
	for j := range n {
		start := j*stride + padBlocks/2*be
		for _, v := range dec[start : start+k] {
			out = append(out, float64(v))
		}
	}
	return w, out
}

// naiveMatMul is Σₖ x[i,k]·w[j,k] (+ bias[j]) in float64, and Σ|x||w| for
// each output element.
func naiveMatMul(x, w, bias []float64, m, n, k int) (y, sumAbs []float64) {
	y, sumAbs = make([]float64, m*n), make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s, a float64
			for t := range k {
				s += x[i*k+t] * w[j*k+t]
				a += math.Abs(x[i*k+t] * w[j*k+t])
			}
			if bias != nil {
				s += bias[j]
				a += math.Abs(bias[j])
			}
			y[i*n+j], sumAbs[i*n+j] = s, a
		}
	}
	return y, sumAbs
}

// within checks got against want elementwise: |got − want| ≤ c·sumAbs + 1e-30.
func within(t *testing.T, what string, got []float32, want, sumAbs []float64, c float64) {
	t.Helper()
	bad := 0
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= c*sumAbs[i]+1e-30) {
			if bad < 5 {
				t.Errorf("%s: element %d = %v, want %v (diff %.3g, allowed %.3g)", what, i, got[i], want[i], d, c*sumAbs[i])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d elements off", what, bad, len(want))
	}
}

// TestMatMulPathsAgainstReference checks the fused path (fast, m ≤ 16) and
// the blocked path (obviously correct) against a float64 product of the
// dequantized weights, for every weight type and shapes that are not
// multiples of the tiles, then against each other.
func TestMatMulPathsAgainstReference(t *testing.T) {
	forEachDotImpl(t, testMatMulPathsAgainstReference)
}

func testMatMulPathsAgainstReference(t *testing.T) {
	b := newTestBackend(t, Options{Threads: 3})
	b.minParallelWork = 1
	rng := rand.New(rand.NewPCG(3, 4))
	for _, wt := range op.MatMulWeightTypes {
		ks := []int{1, 7, 33, 300}
		switch wt.BlockElems() {
		case 32:
			ks = []int{32, 96, 288}
		case 256:
			ks = []int{256, 768}
		}
		for _, k := range ks {
			for _, m := range []int{1, 2, 3, 4, 7, 16} {
				for _, n := range []int{1, 5, 17, 35} {
					for _, withBias := range []bool{false, true} {
						name := fmt.Sprintf("%v/m%d-n%d-k%d/bias%v", wt, m, n, k, withBias)
						w, wv := randomWeights(t, b, rng, wt, n, k, (m+n)%3)
						xVals := make([]float32, m*k)
						xv := make([]float64, m*k)
						for i := range xVals {
							xVals[i] = float32(rng.Float64()*2 - 1)
							xv[i] = float64(xVals[i])
						}
						x := floats(t, b, tensor.F32, xVals, m, k)
						var bias tensor.Tensor
						var bv []float64
						if withBias {
							bf := make([]float32, n)
							bv = make([]float64, n)
							for j := range bf {
								bf[j] = float32(rng.NormFloat64())
								bv[j] = float64(bf[j])
							}
							bias = floats(t, b, tensor.F32, bf, n)
						}
						want, sumAbs := naiveMatMul(xv, wv, bv, m, n, k)
						f, bl := bothPaths(t, b, tensor.F32, []int{m, n}, x, w, tensor.Tensor{}, bias)
						// Float32 sums of at most 768 products, blocked by 4 or by
						// 16 to 256: a few hundred float32 roundings (2⁻²⁴ each)
						// of Σ|x||w| at the very worst; 2⁻¹⁶ ≈ 1.5e-5 leaves
						// room and is far below a dropped or doubled block.
						const c = 1.0 / (1 << 16)
						within(t, name+"/fused", f, want, sumAbs, c)
						within(t, name+"/blocked", bl, want, sumAbs, c)
						f64 := make([]float64, len(bl))
						for i, v := range bl {
							f64[i] = float64(v)
						}
						within(t, name+"/fused vs blocked", f, f64, sumAbs, c)
						if err := b.Free(w); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		}
	}
}

// TestMatMulLayouts: rank-3 x, x and dst rows that are slices of wider
// buffers (strided, at an offset), F16 and BF16 activations, SwiGLU; on the
// public entry points (m = 3 takes the fused path; m = 12 the blocked one
// with the Go dots, the fused one with the assembly dots).
func TestMatMulLayouts(t *testing.T) { forEachDotImpl(t, testMatMulLayouts) }

func testMatMulLayouts(t *testing.T) {
	b := newTestBackend(t, Options{Threads: 4})
	b.minParallelWork = 1
	rng := rand.New(rand.NewPCG(5, 6))
	for _, wt := range []tensor.DType{tensor.F16, tensor.Q4_0, tensor.Q6_K} {
		k := 64
		if wt.BlockElems() == 256 {
			k = 256
		}
		for _, xt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
			for _, outer := range [][]int{{3}, {3, 4}} {
				for _, swiglu := range []bool{false, true} {
					n := 9
					m := 1
					for _, d := range outer {
						m *= d
					}
					name := fmt.Sprintf("%v/x%v/outer%v/swiglu%v", wt, xt, outer, swiglu)
					w, wv := randomWeights(t, b, rng, wt, n, k, 1)
					wUp, uv := randomWeights(t, b, rng, wt, n, k, 1) // laid out as w: the pair shares one row stride
					// x: rows of k inside rows of k+5 elements, starting at row 1, column 2.
					xRow := k + 5
					xBuf := make([]float32, (m+2)*xRow)
					for i := range xBuf {
						xBuf[i] = float32(math.NaN()) // outside the view: must not be read
					}
					xv := make([]float64, m*k)
					for i := range m {
						for c := range k {
							v := tensor.RoundTo(xt, float32(rng.Float64()*2-1))
							xBuf[(i+1)*xRow+2+c] = v
							xv[i*k+c] = float64(v)
						}
					}
					xWhole := floats(t, b, xt, xBuf, len(xBuf))
					xShape := append(append([]int(nil), outer...), k)
					xStrides := make([]int, len(xShape))
					xStrides[len(xStrides)-1] = 1
					s := xRow
					for d := len(outer) - 1; d >= 0; d-- {
						xStrides[d] = s
						s *= outer[d]
					}
					x, err := tensor.NewView(xWhole.Buffer(), xt, xRow+2, xShape, xStrides)
					if err != nil {
						t.Fatal(err)
					}
					// dst: rows of n inside rows of n+3, at offset 1.
					yRow := n + 3
					yWhole := alloc(t, b, xt, (m+1)*yRow)
					yShape := append(append([]int(nil), outer...), n)
					yStrides := make([]int, len(yShape))
					yStrides[len(yStrides)-1] = 1
					s = yRow
					for d := len(outer) - 1; d >= 0; d-- {
						yStrides[d] = s
						s *= outer[d]
					}
					dst, err := tensor.NewView(yWhole.Buffer(), xt, 1, yShape, yStrides)
					if err != nil {
						t.Fatal(err)
					}
					before := read(t, b, yWhole)
					var want, sumAbs []float64
					if swiglu {
						err = b.MatMulSwiGLU(dst, x, w, wUp)
						g, ga := naiveMatMul(xv, wv, nil, m, n, k)
						u, ua := naiveMatMul(xv, uv, nil, m, n, k)
						want, sumAbs = make([]float64, m*n), make([]float64, m*n)
						for i := range want {
							sg := g[i] / (1 + math.Exp(-g[i]))
							want[i] = sg * u[i]
							// d(silu(g)·u) ≤ 1.1·|u|·dg + |silu(g)|·du
							sumAbs[i] = 1.1*math.Abs(u[i])*ga[i] + math.Abs(sg)*ua[i]
						}
					} else {
						err = b.MatMul(dst, x, w, op.MatMulOptions{})
						want, sumAbs = naiveMatMul(xv, wv, nil, m, n, k)
					}
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					// The result is rounded to xt: allow its half ulp on top.
					got := read(t, b, dst)
					unit := map[tensor.DType]float64{tensor.F32: 0x1p-24, tensor.F16: 0x1p-11, tensor.BF16: 0x1p-8}[xt]
					for i := range sumAbs {
						sumAbs[i] += math.Abs(want[i]) * unit * (1 << 16)
					}
					within(t, name, got, want, sumAbs, 1.0/(1<<16))
					// Nothing outside dst's view changed.
					after := read(t, b, yWhole)
					for r := range m + 1 {
						for c := range yRow {
							e := r*yRow + c
							inView := r < m && c >= 1 && c < 1+n
							if !inView && math.Float32bits(after[e]) != math.Float32bits(before[e]) {
								t.Errorf("%s: element %d of dst's buffer, outside its view, was written", name, e)
							}
						}
					}
				}
			}
		}
	}
}

// TestMatMulResultsDoNotDependOnThreads: 1 and 7 threads (the parallel
// threshold at its minimum, so columns split at odd places) give identical
// bytes on both paths, for every weight type.
func TestMatMulResultsDoNotDependOnThreads(t *testing.T) {
	forEachDotImpl(t, testMatMulResultsDoNotDependOnThreads)
}

func testMatMulResultsDoNotDependOnThreads(t *testing.T) {
	serial := newTestBackend(t, Options{Threads: 1})
	parallel := newTestBackend(t, Options{Threads: 7})
	parallel.minParallelWork = 1
	for _, wt := range op.MatMulWeightTypes {
		k := 300
		if be := wt.BlockElems(); be > 1 {
			k = 2 * max(be, 128)
		}
		const n = 37
		for _, m := range []int{1, 3, 5, 19} {
			rngS, rngP := rand.New(rand.NewPCG(9, uint64(m))), rand.New(rand.NewPCG(9, uint64(m)))
			wS, _ := randomWeights(t, serial, rngS, wt, n, k, 0)
			wP, _ := randomWeights(t, parallel, rngP, wt, n, k, 0)
			xVals := make([]float32, m*k)
			for i := range xVals {
				xVals[i] = float32(rngS.NormFloat64())
			}
			for _, dt := range []tensor.DType{tensor.F32, tensor.BF16} {
				dS, dP := alloc(t, serial, dt, m, n), alloc(t, parallel, dt, m, n)
				if err := serial.MatMul(dS, floats(t, serial, dt, xVals, m, k), wS, op.MatMulOptions{}); err != nil {
					t.Fatal(err)
				}
				if err := parallel.MatMul(dP, floats(t, parallel, dt, xVals, m, k), wP, op.MatMulOptions{}); err != nil {
					t.Fatal(err)
				}
				if string(rawBuffer(t, serial, dS)) != string(rawBuffer(t, parallel, dP)) {
					t.Errorf("%v m=%d %v: results differ between 1 and 7 threads", wt, m, dt)
				}
				sS, sP := alloc(t, serial, dt, m, n), alloc(t, parallel, dt, m, n)
				if err := serial.MatMulSwiGLU(sS, floats(t, serial, dt, xVals, m, k), wS, wS); err != nil {
					t.Fatal(err)
				}
				if err := parallel.MatMulSwiGLU(sP, floats(t, parallel, dt, xVals, m, k), wP, wP); err != nil {
					t.Fatal(err)
				}
				if string(rawBuffer(t, serial, sS)) != string(rawBuffer(t, parallel, sP)) {
					t.Errorf("%v m=%d %v swiglu: results differ between 1 and 7 threads", wt, m, dt)
				}
			}
		}
	}
}

func TestMatMulErrors(t *testing.T) {
	b := newTestBackend(t, Options{})
	other := newTestBackend(t, Options{})
	x := alloc(t, b, tensor.F32, 2, 32)
	dst := alloc(t, b, tensor.F32, 2, 4)
	w := alloc(t, b, tensor.Q8_0, 4, 32)
	wantErr(t, "foreign w", b.MatMul(dst, x, alloc(t, other, tensor.Q8_0, 4, 32), op.MatMulOptions{}), op.ErrForeignTensor)
	freed := alloc(t, b, tensor.Q8_0, 4, 32)
	if err := b.Free(freed); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "freed w", b.MatMul(dst, x, freed, op.MatMulOptions{}), op.ErrClosed)
	wantErr(t, "freed wUp", b.MatMulSwiGLU(dst, x, w, freed), op.ErrClosed)
	wantErr(t, "k mismatch", b.MatMul(dst, x, alloc(t, b, tensor.Q8_0, 4, 64), op.MatMulOptions{}), op.ErrInvalidArgument)
	overX, err := tensor.NewView(x.Buffer(), tensor.F32, 8, []int{2, 4}, []int{4, 1})
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "dst overlapping x", b.MatMul(overX, x, w, op.MatMulOptions{}), op.ErrInvalidArgument)
	ro, err := b.WrapReadOnly(make([]byte, 32), tensor.F32, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "read-only dst", b.MatMul(ro, x, w, op.MatMulOptions{}), op.ErrInvalidArgument)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "closed", b.MatMul(dst, x, w, op.MatMulOptions{}), op.ErrClosed)
	wantErr(t, "closed swiglu", b.MatMulSwiGLU(dst, x, w, w), op.ErrClosed)
}

// benchWeights returns an [n, k] weight matrix of dt with random contents:
// normal floats, or random quant bytes with small finite f16 scales.
func benchWeights(b *testing.B, be *Backend, dt tensor.DType, n, k int) tensor.Tensor {
	b.Helper()
	if dt.IsFloat() {
		return benchTensor(b, be, dt, n, k)
	}
	size, err := tensor.SizeBytes(dt, n, k)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(11, 12))
	raw := make([]byte, size)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	scales := map[tensor.DType][]int{tensor.Q8_0: {0}, tensor.Q4_0: {0}, tensor.Q4_K: {0, 2}, tensor.Q6_K: {208}}[dt]
	bb := dt.BlockBytes()
	for blk := 0; blk+bb <= len(raw); blk += bb {
		for _, off := range scales {
			putF16(raw[blk+off:], float32(0.001+0.01*rng.Float64()))
		}
	}
	return blocks(b, be, dt, raw, n, k)
}

// BenchmarkMatMul: 4096×4096 weights, m = 1 (decode, memory-bound: compare
// its MB/s, weight bytes only, with BenchmarkMatMulProbeRead) and m = 16.
func BenchmarkMatMul(b *testing.B) {
	const n, k = 4096, 4096
	for _, wt := range op.MatMulWeightTypes {
		for _, m := range []int{1, 16} {
			b.Run(fmt.Sprintf("%v/m%d", wt, m), func(b *testing.B) {
				be := newTestBackend(b, Options{})
				w := benchWeights(b, be, wt, n, k)
				x := benchTensor(b, be, tensor.F32, m, k)
				dst := alloc(b, be, tensor.F32, m, n)
				b.SetBytes(w.SizeBytes())
				for b.Loop() {
					if err := be.MatMul(dst, x, w, op.MatMulOptions{}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkMatMulProbeRead is the read-bandwidth yardstick for
// BenchmarkMatMul's m = 1 cases (256 MiB, beyond any cache).
func BenchmarkMatMulProbeRead(b *testing.B) {
	be := newTestBackend(b, Options{})
	src := alloc(b, be, tensor.F32, 64<<20)
	b.SetBytes(src.SizeBytes())
	for b.Loop() {
		if err := be.ProbeRead(src); err != nil {
			b.Fatal(err)
		}
	}
}
