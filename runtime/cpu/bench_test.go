package cpu

import (
	"encoding/binary"
	"fmt"
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

// BenchmarkFusedDot times the fused path's dot products alone, one core,
// on 64 rows of 4096 elements that stay in L2: the compute ceiling of each
// kernel (MB/s of weight bytes), without memory bandwidth in the way.
// Sub-benchmarks "asm" and "go" run the assembly dots (where supported)
// and the Go dots.
func BenchmarkFusedDot(b *testing.B) {
	const nRows, k = 64, 4096
	for _, dt := range op.MatMulWeightTypes {
		for _, asm := range []bool{true, false} {
			if asm && !dotAsmSupported {
				continue
			}
			name := dt.String() + "/go"
			if asm {
				name = dt.String() + "/asm"
			}
			b.Run(name, func(b *testing.B) {
				rng := rand.New(rand.NewPCG(13, 14))
				w := benchWeightRows(rng, dt, nRows, k)
				x := make([]float32, k)
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
				xSums := sums32(x)
				f16 := f16Table()
				size, _ := tensor.SizeBytes(dt, nRows, k)
				b.SetBytes(size)
				var sink float32
				for b.Loop() {
					for j := range nRows {
						if asm {
							sink += w.fusedDotAsm(j, x, xSums)
						} else {
							sink += w.fusedDotGo(j, x, xSums, f16)
						}
					}
				}
				_ = sink
			})
		}
	}
}

// benchWeightRows is an [nRows, k] weight matrix of dt in host memory:
// normal values, or random quant bytes with small finite scales.
func benchWeightRows(rng *rand.Rand, dt tensor.DType, nRows, k int) weightRows {
	w := weightRows{dt: dt, k: k, blockElems: dt.BlockElems(), blockBytes: dt.BlockBytes(), rowStride: k}
	switch dt {
	case tensor.F32:
		w.f32 = make([]float32, nRows*k)
		for i := range w.f32 {
			w.f32[i] = float32(rng.NormFloat64())
		}
	case tensor.F16, tensor.BF16:
		w.u16 = make([]uint16, nRows*k)
		for i := range w.u16 {
			v := float32(rng.NormFloat64())
			if dt == tensor.F16 {
				w.u16[i] = tensor.F32ToF16(v)
			} else {
				w.u16[i] = tensor.F32ToBF16(v)
			}
		}
	default:
		size, _ := tensor.SizeBytes(dt, nRows, k)
		w.mem = make([]byte, size)
		for i := range w.mem {
			w.mem[i] = byte(rng.Uint32())
		}
		scales := map[tensor.DType][]int{tensor.Q8_0: {0}, tensor.Q4_0: {0}, tensor.Q4_K: {0, 2}, tensor.Q6_K: {208}}[dt]
		bb := dt.BlockBytes()
		for blk := 0; blk+bb <= len(w.mem); blk += bb {
			for _, off := range scales {
				binary.LittleEndian.PutUint16(w.mem[blk+off:], tensor.F32ToF16(float32(0.001+0.01*rng.Float64())))
			}
		}
	}
	return w
}

// BenchmarkAttentionDecode: one decode step of the attention/decode grid's
// shape (64 query heads over 8 KV heads, d = 128, F16, shuffled pages of
// 64 tokens) for a batch of sequences of kvLen keys, by the Go loops and
// (where this machine has them) the assembly kernels. MB/s counts the keys
// and values read.
func BenchmarkAttentionDecode(b *testing.B) {
	for _, shape := range []struct{ batch, kvLen int }{{1, 2048}, {8, 2048}, {1, 8192}} {
		for _, asm := range []bool{false, true} {
			if asm && !(dotAsmSupported && attentionAsmSupported) {
				continue
			}
			impl := "godot"
			if asm {
				impl = "asmdot"
			}
			b.Run(fmt.Sprintf("F16/h64kv8d128/b%dkv%d/%s", shape.batch, shape.kvLen, impl), func(b *testing.B) {
				saved := useDotAsm
				defer func() { useDotAsm = saved }()
				useDotAsm = asm
				benchAttentionDecode(b, shape.batch, shape.kvLen)
			})
		}
	}
}

func benchAttentionDecode(b *testing.B, batch, kvLen int) {
	const nHeads, nKV, d, pageSize = 64, 8, 128, 64
	be := newTestBackend(b, Options{})
	pagesPerSeq := kvLen / pageSize
	nPages := batch * pagesPerSeq
	rng := rand.New(rand.NewPCG(1, 2))
	table := make([]int32, nPages)
	for i, p := range rng.Perm(nPages) {
		table[i] = int32(p)
	}
	lens := make([]int32, batch)
	qStarts := make([]int32, batch+1)
	for i := range lens {
		lens[i] = int32(kvLen)
		qStarts[i+1] = int32(i + 1)
	}
	kv := op.AttentionKV{
		K:          benchTensor(b, be, tensor.F16, nPages, pageSize, nKV, d),
		V:          benchTensor(b, be, tensor.F16, nPages, pageSize, nKV, d),
		BlockTable: ints(b, be, table, batch, pagesPerSeq),
		Lens:       ints(b, be, lens, batch),
	}
	q := benchTensor(b, be, tensor.F16, batch, nHeads, d)
	dst := alloc(b, be, tensor.F16, batch, nHeads, d)
	qs := ints(b, be, qStarts, batch+1)
	b.SetBytes(kv.K.SizeBytes() + kv.V.SizeBytes())
	opts := op.AttentionOptions{Causal: true, MaxQueryLen: 1, MaxKVLen: kvLen}
	for b.Loop() {
		if err := be.Attention(dst, q, qs, kv, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAttentionPrefill: a causal prefill of the attention/prefill
// grid's shape at seqlen 512 (16 heads, d = 128, F16, contiguous keys),
// 4 sequences, by the Go loops and (where this machine has them) the
// assembly kernels.
func BenchmarkAttentionPrefill(b *testing.B) {
	for _, asm := range []bool{false, true} {
		if asm && !(dotAsmSupported && attentionAsmSupported) {
			continue
		}
		impl := "godot"
		if asm {
			impl = "asmdot"
		}
		b.Run("F16/d128-causal/b4s512h16/"+impl, func(b *testing.B) {
			saved := useDotAsm
			defer func() { useDotAsm = saved }()
			useDotAsm = asm
			const batch, s, nHeads, d = 4, 512, 16, 128
			be := newTestBackend(b, Options{})
			q := benchTensor(b, be, tensor.F16, batch*s, nHeads, d)
			k := benchTensor(b, be, tensor.F16, batch*s, nHeads, d)
			v := benchTensor(b, be, tensor.F16, batch*s, nHeads, d)
			dst := alloc(b, be, tensor.F16, batch*s, nHeads, d)
			starts := make([]int32, batch+1)
			for i := range starts {
				starts[i] = int32(i * s)
			}
			st := ints(b, be, starts, batch+1)
			kv := op.AttentionKV{K: k, V: v, Starts: st}
			flops := attentionFLOPs(nHeads, d, batch*int64(s)*(s+1)/2)
			opts := op.AttentionOptions{Causal: true, MaxQueryLen: s, MaxKVLen: s}
			for b.Loop() {
				if err := be.Attention(dst, q, st, kv, opts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
