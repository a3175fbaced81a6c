package cpu

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Benchmarks at realistic sizes. SetBytes counts the bytes an op must read
// and write once (inputs plus output), so the reported MB/s is its
// effective memory throughput.

func benchTensor(b *testing.B, be *Backend, dt tensor.DType, shape ...int) tensor.Tensor {
	b.Helper()
	n := 1
	for _, d := range shape {
		n *= d
	}
	rng := rand.New(rand.NewPCG(7, 8))
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64())
	}
	return floats(b, be, dt, vals, shape...)
}

func BenchmarkRMSNorm(b *testing.B) {
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16} {
		b.Run(dt.String()+"/4096x4096", func(b *testing.B) {
			be := newTestBackend(b, Options{})
			x := benchTensor(b, be, dt, 4096, 4096)
			w := benchTensor(b, be, tensor.F32, 4096)
			dst := alloc(b, be, dt, 4096, 4096)
			b.SetBytes(2 * x.SizeBytes())
			for b.Loop() {
				if err := be.RMSNorm(dst, x, w, op.NormOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSoftmax(b *testing.B) {
	be := newTestBackend(b, Options{})
	x := benchTensor(b, be, tensor.F32, 32, 4096)
	dst := alloc(b, be, tensor.F32, 32, 4096)
	b.SetBytes(2 * x.SizeBytes())
	for b.Loop() {
		if err := be.Softmax(dst, x, op.SoftmaxOptions{Scale: 0.125}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAdd(b *testing.B) {
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16} {
		b.Run(dt.String()+"/4096x4096", func(b *testing.B) {
			be := newTestBackend(b, Options{})
			x := benchTensor(b, be, dt, 4096, 4096)
			y := benchTensor(b, be, dt, 4096, 4096)
			dst := alloc(b, be, dt, 4096, 4096)
			b.SetBytes(3 * x.SizeBytes())
			for b.Loop() {
				if err := be.Add(dst, x, y); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSiLU(b *testing.B) {
	be := newTestBackend(b, Options{})
	x := benchTensor(b, be, tensor.F32, 1024, 4096)
	dst := alloc(b, be, tensor.F32, 1024, 4096)
	b.SetBytes(2 * x.SizeBytes())
	for b.Loop() {
		if err := be.SiLU(dst, x); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRoPE(b *testing.B) {
	be := newTestBackend(b, Options{})
	// 512 tokens × 32 heads × 128.
	x := benchTensor(b, be, tensor.F32, 512, 32, 128)
	pos := make([]int32, 512)
	for i := range pos {
		pos[i] = int32(i)
	}
	p := ints(b, be, pos, 512)
	dst := alloc(b, be, tensor.F32, 512, 32, 128)
	b.SetBytes(2 * x.SizeBytes())
	for b.Loop() {
		if err := be.RoPE(dst, x, p, op.RoPEOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEmbeddingQ4_K(b *testing.B) {
	be := newTestBackend(b, Options{})
	const vocab, dim, nIds = 1024, 4096, 512
	rng := rand.New(rand.NewPCG(9, 10))
	vals := make([]float32, vocab*dim)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64())
	}
	q, err := tensor.Quantize(tensor.Q4_K, vals)
	if err != nil {
		b.Fatal(err)
	}
	table, err := be.Alloc(tensor.Q4_K, vocab, dim)
	if err != nil {
		b.Fatal(err)
	}
	if err := be.Upload(table, q); err != nil {
		b.Fatal(err)
	}
	idVals := make([]int32, nIds)
	for i := range idVals {
		idVals[i] = int32(rng.IntN(vocab))
	}
	ids := ints(b, be, idVals, nIds)
	dst := alloc(b, be, tensor.F32, nIds, dim)
	rowBytes, _ := tensor.Q4_K.RowBytes(dim)
	b.SetBytes(nIds*rowBytes + dst.SizeBytes())
	for b.Loop() {
		if err := be.Embedding(dst, table, ids); err != nil {
			b.Fatal(err)
		}
	}
}
