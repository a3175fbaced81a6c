package cpu

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// TestResultsDoNotDependOnThreads runs every op on one goroutine and on
// seven with the parallel threshold at its minimum (so that even small
// inputs split into many pieces, rows cut at odd places), and requires
// identical bytes: every element must be computed once, by one goroutine,
// with the same arithmetic.
func TestResultsDoNotDependOnThreads(t *testing.T) {
	serial := newTestBackend(t, Options{Threads: 1})
	parallel := newTestBackend(t, Options{Threads: 7})
	parallel.minParallelWork = 1

	rng := rand.New(rand.NewPCG(1, 2))
	randFloats := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 3)
		}
		return v
	}
	type inputs struct{ x, y, w, table, pos, ids tensor.Tensor }
	// Shapes: rows of 33, 5·7·3 rows; RoPE [3, 5, 7, 33 → 32]; ids [5, 7].
	xVals, yVals, wVals := randFloats(3*5*7*33), randFloats(7*33), randFloats(33)
	tableVals := randFloats(12 * 256) // 12 rows of one Q4_K block
	posVals := make([]int32, 3*5)
	for i := range posVals {
		posVals[i] = int32(rng.IntN(5000))
	}
	idVals := make([]int32, 5*7)
	for i := range idVals {
		idVals[i] = int32(rng.IntN(12))
	}
	tableQ, err := tensor.Quantize(tensor.Q4_K, tableVals)
	if err != nil {
		t.Fatal(err)
	}
	make4 := func(b *Backend, dt tensor.DType) inputs {
		table, err := b.Alloc(tensor.Q4_K, 12, 256)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Upload(table, tableQ); err != nil {
			t.Fatal(err)
		}
		return inputs{
			x:     floats(t, b, dt, xVals, 3, 5, 7, 33),
			y:     floats(t, b, dt, yVals, 7, 33),
			w:     floats(t, b, tensor.F32, wVals, 33),
			table: table,
			pos:   ints(t, b, posVals, 3, 5),
			ids:   ints(t, b, idVals, 5, 7),
		}
	}
	type run func(b *Backend, in inputs, dt tensor.DType) (tensor.Tensor, error)
	ops := map[string]run{
		"copy": func(b *Backend, in inputs, dt tensor.DType) (tensor.Tensor, error) {
			d := alloc(t, b, tensor.BF16, 3, 5, 7, 33)
			xt, _ := in.x.Transpose(1, 3)
			dt2, _ := d.Transpose(1, 3)
			return d, b.Copy(dt2, xt)
		},
		"add": func(b *Backend, in inputs, dt tensor.DType) (tensor.Tensor, error) {
			d := alloc(t, b, dt, 3, 5, 7, 33)
			return d, b.Add(d, in.x, in.y)
		},
		"mul": func(b *Backend, in inputs, dt tensor.DType) (tensor.Tensor, error) {
			d := alloc(t, b, dt, 3, 5, 7, 33)
			return d, b.Mul(d, in.y, in.x)
		},
		"silu": func(b *Backend, in inputs, dt tensor.DType) (tensor.Tensor, error) {
			d := alloc(t, b, dt, 3, 5, 7, 33)
			return d, b.SiLU(d, in.x)
		},
		"gelu": func(b *Backend, in inputs, dt tensor.DType) (tensor.Tensor, error) {
			d := alloc(t, b, dt, 3, 5, 7, 33)
			return d, b.GELU(d, in.x, op.GELUOptions{Approx: op.GELUTanh})
		},
		"softmax": func(b *Backend, in inputs, dt tensor.DType) (tensor.Tensor, error) {
			d := alloc(t, b, dt, 3, 5, 7, 33)
			return d, b.Softmax(d, in.x, op.SoftmaxOptions{Causal: true, PositionOffset: 20, Scale: 0.3})
		},
		"rmsnorm": func(b *Backend, in inputs, dt tensor.DType) (tensor.Tensor, error) {
			d := alloc(t, b, dt, 3, 5, 7, 33)
			return d, b.RMSNorm(d, in.x, in.w, op.NormOptions{})
		},
		"layernorm": func(b *Backend, in inputs, dt tensor.DType) (tensor.Tensor, error) {
			d := alloc(t, b, dt, 3, 5, 7, 33)
			return d, b.LayerNorm(d, in.x, in.w, in.w, op.NormOptions{})
		},
		"rope": func(b *Backend, in inputs, dt tensor.DType) (tensor.Tensor, error) {
			d := alloc(t, b, dt, 3, 5, 7, 33)
			return d, b.RoPE(d, in.x, in.pos, op.RoPEOptions{Style: op.RoPENeoX, NDims: 32})
		},
		"embedding": func(b *Backend, in inputs, dt tensor.DType) (tensor.Tensor, error) {
			d := alloc(t, b, dt, 5, 7, 256)
			return d, b.Embedding(d, in.table, in.ids)
		},
		"argmax": func(b *Backend, in inputs, dt tensor.DType) (tensor.Tensor, error) {
			d := alloc(t, b, tensor.I32, 3, 5, 7)
			return d, b.Argmax(d, in.x)
		},
	}
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16} {
		inS, inP := make4(serial, dt), make4(parallel, dt)
		for name, fn := range ops {
			dS, err := fn(serial, inS, dt)
			if err != nil {
				t.Fatalf("%s %v serial: %v", name, dt, err)
			}
			dP, err := fn(parallel, inP, dt)
			if err != nil {
				t.Fatalf("%s %v parallel: %v", name, dt, err)
			}
			if string(rawBuffer(t, serial, dS)) != string(rawBuffer(t, parallel, dP)) {
				t.Errorf("%s %v: results differ between 1 and 7 threads", name, dt)
			}
		}
	}
}
