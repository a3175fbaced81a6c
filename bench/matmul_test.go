package bench

import (
	"context"
	"math"
	"math/rand/v2"
	"regexp"
	"testing"
	"time"

	"github.com/kiln-gpu/kiln/runtime/cpu"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// TestMatMulCasesRegistered: every weight type × m × (n, k) of the issue is
// registered, with bytes = W + X + Y (BF16 activations) and flops = 2mnk.
func TestMatMulCasesRegistered(t *testing.T) {
	byName := map[string]Case{}
	for _, c := range Cases(regexp.MustCompile(`^matmul/`)) {
		byName[c.Name] = c
	}
	want := len(op.MatMulWeightTypes) * 4 * 4
	if len(byName) != want {
		t.Errorf("%d matmul cases, want %d", len(byName), want)
	}
	for _, c := range []struct {
		name         string
		bytes, flops int64
	}{
		// Q4_0 4096×4096: 4096·128 blocks of 18 bytes; x 1×4096 and y 1×4096 BF16.
		{"matmul/Q4_0/m1n4096k4096", 4096*128*18 + 2*4096 + 2*4096, 2 * 4096 * 4096},
		// Q4_K 14336×4096: 14336·16 super-blocks of 144 bytes; x 16×4096, y 16×14336.
		{"matmul/Q4_K/m16n14336k4096", 14336*16*144 + 2*16*4096 + 2*16*14336, 2 * 16 * 14336 * 4096},
		// Q6_K 4096×14336: 4096·56 super-blocks of 210 bytes.
		{"matmul/Q6_K/m4n4096k14336", 4096*56*210 + 2*4*14336 + 2*4*4096, 2 * 4 * 4096 * 14336},
		// F32 128256×4096: 2 GiB of weights; m = 512.
		{"matmul/F32/m512n128256k4096", 4*128256*4096 + 2*512*4096 + 2*512*128256, 2 * 512 * 128256 * 4096},
		{"matmul/BF16/m1n4096k4096", 2*4096*4096 + 2*4096 + 2*4096, 2 * 4096 * 4096},
		{"matmul/Q8_0/m512n4096k14336", 4096*448*34 + 2*512*14336 + 2*512*4096, 2 * 512 * 4096 * 14336},
	} {
		got, ok := byName[c.name]
		if !ok {
			t.Errorf("%s: not registered", c.name)
			continue
		}
		if got.Bytes != c.bytes || got.FLOPs != c.flops {
			t.Errorf("%s: bytes %d, flops %d; want %d, %d", c.name, got.Bytes, got.FLOPs, c.bytes, c.flops)
		}
	}
}

// TestMatMulCaseRunsOnTheCPU times a decode-shaped case and checks, on a
// small case of the same constructor, that its runner computes the product.
func TestMatMulCaseRunsOnTheCPU(t *testing.T) {
	dev := cpu.New(cpu.Options{})
	defer dev.Close()
	cases := Cases(regexp.MustCompile(`^matmul/Q4_0/m1n4096k4096$`))
	if len(cases) != 1 {
		t.Fatalf("cases %v", names(cases))
	}
	res, err := Run(context.Background(), dev, cases, Options{MinTime: time.Millisecond, FootprintBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Error != "" || r.GBps <= 0 || r.TFLOPs <= 0 || r.Sets != 1 {
		t.Errorf("%s: error %q, %g GB/s, %g TFLOP/s, %d sets", r.Name, r.Error, r.GBps, r.TFLOPs, r.Sets)
	}
	if s := dev.MemoryStats(); s.InUseBytes != 0 {
		t.Errorf("%d bytes still in use after the case", s.InUseBytes)
	}

	// A small case: run it, then recompute y from the tensors it made.
	c := matmulCase(tensor.Q8_0, 3, 5, 64)
	env := &Env{Dev: dev, rng: rand.New(rand.NewPCG(1, 2))}
	defer env.freeAll()
	r, err := c.Prepare(env)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(); err != nil {
		t.Fatal(err)
	}
	if len(env.owned) != 3 {
		t.Fatalf("the case made %d tensors, want w, x, y", len(env.owned))
	}
	w, x, y := env.owned[0], env.owned[1], env.owned[2]
	if w.DType() != tensor.Q8_0 || x.DType() != tensor.BF16 || y.DType() != tensor.BF16 {
		t.Fatalf("dtypes %v %v %v", w.DType(), x.DType(), y.DType())
	}
	wv := hostValues(t, dev, w)
	xv := hostValues(t, dev, x)
	yv := hostValues(t, dev, y)
	for i := range 3 {
		for j := range 5 {
			var s, a float64
			for k := range 64 {
				s += float64(xv[i*64+k]) * float64(wv[j*64+k])
				a += math.Abs(float64(xv[i*64+k]) * float64(wv[j*64+k]))
			}
			// y is BF16: its rounding (2⁻⁸ relative) plus float32 sums.
			if d := math.Abs(float64(yv[i*5+j]) - s); d > math.Abs(s)/256+a*1e-5 {
				t.Errorf("y[%d, %d] = %v, want %v", i, j, yv[i*5+j], s)
			}
		}
	}
}

// hostValues downloads a tensor and decodes it to float32.
func hostValues(t *testing.T, dev *cpu.Backend, x tensor.Tensor) []float32 {
	t.Helper()
	raw := make([]byte, x.SizeBytes())
	if err := dev.Download(context.Background(), raw, x); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, x.NumElems())
	if err := tensor.Dequantize(x.DType(), raw, out); err != nil {
		t.Fatal(err)
	}
	return out
}
