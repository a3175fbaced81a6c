package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// This file runs the matmul kernels on a real GPU (skipped without one):
// every kernel kind, weight type and activation type against a float64
// reference computed here from kiln's Go dequantization, with poisoned
// outputs, padded and misaligned operands, SwiGLU, bias, split-k, and the
// determinism of the fast kernels. It is the first thing to run on a GPU
// after a change to the matmul kernels (the GPU suite runs it with every
// test of this package). On compute capability 9.0 the m > 16 cases run
// on the wgmma GEMM (sm_90a) and again on the mma GEMM.

// gpuContext returns the primary context of device 0, or skips the test.
func gpuContext(t *testing.T) *cuda.Context {
	t.Helper()
	if err := cuda.Init(); err != nil {
		t.Skipf("skipping: no usable CUDA driver: %v", err)
	}
	n, err := cuda.DeviceCount()
	if err != nil || n == 0 {
		t.Skipf("skipping: no CUDA device (count %d, %v)", n, err)
	}
	dev, err := cuda.GetDevice(0)
	if err != nil {
		t.Fatal(err)
	}
	major, minor, err := dev.ComputeCapability()
	if err != nil {
		t.Fatal(err)
	}
	if CheckComputeCapability(ComputeCapability{major, minor}) != nil {
		t.Skipf("skipping: device 0 has compute capability %d.%d; the kernels need %s", major, minor, MinComputeCapability)
	}
	ctx, err := dev.RetainPrimaryContext()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ctx.Release(); err != nil {
			t.Error(err)
		}
	})
	return ctx
}

// gpuMatMulCase is one product: shapes, types, and layout quirks.
type gpuMatMulCase struct {
	m, n, k    int
	w, x       tensor.DType
	swiglu     bool
	bias       bool
	padX, padY int // extra elements per row of X and Y
	padWBlocks int // extra blocks per row of W
	wOffset    int // bytes W (and WUp) start past an aligned address
}

func (c gpuMatMulCase) String() string {
	s := fmt.Sprintf("%v×%v m%d n%d k%d", c.w, c.x, c.m, c.n, c.k)
	if c.swiglu {
		s += " swiglu"
	}
	if c.bias {
		s += " bias"
	}
	if c.padX != 0 || c.padY != 0 || c.padWBlocks != 0 || c.wOffset != 0 {
		s += fmt.Sprintf(" pads x%d y%d wblocks%d woff%d", c.padX, c.padY, c.padWBlocks, c.wOffset)
	}
	return s
}

func gpuMatMulCases() []gpuMatMulCase {
	var cases []gpuMatMulCase
	shapes := []struct{ m, n, k int }{
		{1, 64, 256}, {2, 100, 512}, {7, 130, 768}, {16, 64, 2048}, {17, 72, 512}, {33, 200, 256}, {130, 96, 1024},
		{512, 136, 256},
	}
	for _, w := range matmulWeightTypes {
		for _, x := range floatTypes {
			for i, sh := range shapes {
				c := gpuMatMulCase{m: sh.m, n: sh.n, k: sh.k, w: w, x: x}
				switch i % 4 {
				case 1:
					c.bias = true
				case 2:
					c.swiglu = true
				case 3:
					c.padX, c.padY, c.padWBlocks = 8, 3, 1
				}
				if i == 4 {
					c.wOffset = 2 // rows not 16-byte aligned: the 2-byte staging
					if w == tensor.F32 {
						c.wOffset = 4
					}
				}
				cases = append(cases, c)
			}
			if !w.IsQuantized() { // k need not be a multiple of 32
				cases = append(cases, gpuMatMulCase{m: 1, n: 70, k: 100, w: w, x: x, bias: true},
					gpuMatMulCase{m: 40, n: 70, k: 37, w: w, x: x, swiglu: true, padX: 1})
			}
		}
	}
	return cases
}

// unitRoundoff is half an ulp at 1 of a float dtype.
func unitRoundoff(d tensor.DType) float64 {
	switch d {
	case tensor.F16:
		return math.Ldexp(1, -11)
	case tensor.BF16:
		return math.Ldexp(1, -8)
	}
	return math.Ldexp(1, -24)
}

func TestMatMulOnGPU(t *testing.T) {
	ctx := gpuContext(t)
	auto, err := Open(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer auto.Close()
	simple, err := Open(ctx, Options{Variant: VariantSimple})
	if err != nil {
		t.Fatal(err)
	}
	defer simple.Close()
	st, err := ctx.NewStream(true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Destroy()
	rng := rand.New(rand.NewPCG(2026, 11))
	kinds := map[Kind]int{}
	for _, c := range gpuMatMulCases() {
		choice := runGPUMatMulCase(t, ctx, st, auto, simple, c, rng)
		kinds[choice.Kind]++
		if choice.SplitK > 1 {
			kinds[KindSplitK]++
		}
	}
	want := []Kind{KindSIMT, KindDecode, KindMMA, KindSplitK}
	if tg, ok := auto.LoadedTarget(FamilyMatMulWGMMA); ok && tg == TargetSM90a {
		// A Hopper: the wgmma GEMM took the m > 16 cases; run them again
		// with it switched off, so that the mma GEMM is checked too.
		want = append(want, KindWGMMA)
		key := familyVariant{FamilyMatMulWGMMA, KindWGMMA}
		disabledVariants[key] = true
		for _, c := range gpuMatMulCases() {
			if c.m > decodeXRows && c.x != tensor.F32 {
				kinds[runGPUMatMulCase(t, ctx, st, auto, simple, c, rng).Kind]++
			}
		}
		delete(disabledVariants, key)
	} else if auto.ComputeCapability() == (ComputeCapability{9, 0}) {
		t.Errorf("compute capability 9.0, but the matmul_wgmma family did not load from sm_90a PTX (target %q, loaded %v)", tg, ok)
	}
	t.Logf("fast kernels run: %v", kinds)
	for _, k := range want {
		if kinds[k] == 0 {
			t.Errorf("no case ran a %s kernel", k)
		}
	}
}

// runGPUMatMulCase runs c with the simple and the fast kernels and checks
// both against a float64 reference.
func runGPUMatMulCase(t *testing.T, ctx *cuda.Context, st *cuda.Stream, auto, simple *Set, c gpuMatMulCase, rng *rand.Rand) MatMulChoice {
	t.Helper()
	be, bb := c.w.BlockElems(), c.w.BlockBytes()
	xStride, yStride := c.k+c.padX, c.n+c.padY
	wStride := c.k + c.padWBlocks*be
	wRowBytes := wStride / be * bb
	yb := c.x.BlockBytes()

	// X: random values, padding NaN (a kernel that reads past k poisons its sums).
	xVals := make([]float32, c.m*xStride)
	for i := range xVals {
		if i%xStride < c.k {
			xVals[i] = float32(rng.NormFloat64())
		} else {
			xVals[i] = float32(math.NaN())
		}
	}
	xBytes, _ := tensor.EncodeFloats(c.x, xVals)
	xExact, _ := tensor.DecodeFloats(c.x, xBytes)

	// W (and WUp): rows quantized from random values; padding bytes 0xff
	// (NaN scales or values).
	nWeights := 1
	if c.swiglu {
		nWeights = 2
	}
	wBytes := make([][]byte, nWeights)
	wExact := make([][]float32, nWeights) // [n·k], dequantized
	for wi := range nWeights {
		buf := make([]byte, c.wOffset+c.n*wRowBytes)
		for i := range buf {
			buf[i] = 0xff
		}
		wExact[wi] = make([]float32, c.n*c.k)
		for r := 0; r < c.n; r++ {
			src := make([]float32, c.k)
			for i := range src {
				src[i] = float32(rng.NormFloat64() * 0.5)
			}
			var row []byte
			if c.w.IsQuantized() {
				var err error
				if row, err = tensor.Quantize(c.w, src); err != nil {
					t.Fatal(err)
				}
			} else {
				row, _ = tensor.EncodeFloats(c.w, src)
			}
			copy(buf[c.wOffset+r*wRowBytes:], row)
			if err := tensor.Dequantize(c.w, row, wExact[wi][r*c.k:(r+1)*c.k]); err != nil {
				t.Fatal(err)
			}
		}
		wBytes[wi] = buf
	}
	var biasVals []float32
	if c.bias {
		biasVals = make([]float32, c.n)
		for i := range biasVals {
			biasVals[i] = float32(rng.NormFloat64())
		}
	}

	// Device buffers.
	alloc := func(b []byte) cuda.DevicePtr {
		p, err := ctx.MemAlloc(int64(max(len(b), 1)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ctx.MemFree(p) })
		if len(b) > 0 {
			if err := ctx.MemcpyHtoD(p, b); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	a := MatMulArgs{M: c.m, N: c.n, K: c.k, X: alloc(xBytes), XRowStride: xStride, XType: c.x,
		WRowStride: wStride, WType: c.w, YRowStride: yStride}
	a.W = alloc(wBytes[0]) + cuda.DevicePtr(c.wOffset)
	if c.swiglu {
		a.WUp = alloc(wBytes[1]) + cuda.DevicePtr(c.wOffset)
	}
	if c.bias {
		a.Bias = alloc(tensor.F32Bytes(biasVals))
	}
	poison := make([]byte, c.m*yStride*yb)
	for i := range poison {
		poison[i] = 0xff // NaN in every float dtype
	}
	a.Y = alloc(poison)

	run := func(s *Set) []byte {
		if err := ctx.MemcpyHtoD(a.Y, poison); err != nil {
			t.Fatal(err)
		}
		if err := s.MatMul(st, a); err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		if err := st.Synchronize(); err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		out := make([]byte, len(poison))
		if err := ctx.MemcpyDtoH(out, a.Y); err != nil {
			t.Fatal(err)
		}
		return out
	}
	choice, err := auto.MatMulChoice(a)
	if err != nil {
		t.Fatal(err)
	}
	gotSimple := run(simple)
	gotFast := run(auto)
	if again := run(auto); string(again) != string(gotFast) {
		t.Errorf("%v (%s, split %d): two runs of the fast kernel differ", c, choice.Kernel, choice.SplitK)
	}

	// Reference sums in float64: with W exact (the simple kernel and F32
	// activations) and with W rounded to X's dtype (the tensor-core kernels).
	tensorCores := choice.Kind == KindDecode || choice.Kind == KindMMA || choice.Kind == KindWGMMA
	sum := func(wi, m, n int, roundW bool) (s, abs float64) {
		for j := 0; j < c.k; j++ {
			w := wExact[wi][n*c.k+j]
			if roundW {
				w = tensor.RoundTo(c.x, w)
			}
			p := float64(xExact[m*xStride+j]) * float64(w)
			s += p
			abs += math.Abs(p)
		}
		return s, abs
	}
	uy := unitRoundoff(c.x)
	check := func(kernel string, got []byte, roundW bool) {
		// F32 accumulation, relative to Σ|x·w|; tensor cores add with
		// truncation inside an mma, so they get 4 times the margin.
		sumErr := float64(c.k+2) * math.Ldexp(1, -24)
		if roundW {
			sumErr *= 4
		}
		vals, _ := tensor.DecodeFloats(c.x, got)
		bad := 0
		for m := 0; m < c.m; m++ {
			for n := 0; n < yStride; n++ {
				v := float64(vals[m*yStride+n])
				if n >= c.n {
					if !math.IsNaN(v) {
						t.Errorf("%v (%s): Y[%d][%d] in the row padding was written (%v)", c, kernel, m, n, v)
					}
					continue
				}
				var want, tol float64
				if c.swiglu {
					g, ga := sum(0, m, n, roundW)
					u, ua := sum(1, m, n, roundW)
					sg := g / (1 + math.Exp(-g))
					want = sg * u
					tol = 1.1*math.Abs(u)*sumErr*ga + math.Abs(sg)*sumErr*ua + 4e-7*math.Abs(want)
				} else {
					s, sa := sum(0, m, n, roundW)
					if c.bias {
						s += float64(biasVals[n])
						sa += math.Abs(float64(biasVals[n]))
					}
					want, tol = s, sumErr*sa
				}
				tol += 2*uy*math.Abs(want) + 1e-30
				if !(math.Abs(v-want) <= tol) {
					if bad++; bad <= 3 {
						t.Errorf("%v (%s): Y[%d][%d] = %v, want %v ± %.3g", c, kernel, m, n, v, want, tol)
					}
				}
			}
		}
	}
	check(kernelTable[matmulKernels[matmulKey{KindSimple, c.w, c.x, 0}]].name, gotSimple, false)
	check(choice.Kernel, gotFast, tensorCores)
	return choice
}
