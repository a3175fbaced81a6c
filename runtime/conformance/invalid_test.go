package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// The second table: invalid arguments for every op, on every backend. Each
// call must return an error matching the given sentinel — never succeed,
// never panic.

// invalidEnv holds valid tensors of one backend for the invalid cases to
// combine with bad ones.
type invalidEnv struct {
	b backend.Backend
	// f32, f32b: F32 [4, 8]; f16: F16 [4, 8]; i32: I32 [4, 8].
	f32, f32b, f16, i32 tensor.Tensor
	// ids: I32 [4] (valid ids for table); table: F32 [10, 8].
	ids, table tensor.Tensor
	// x3: F32 [2, 3, 8] and pos: I32 [2] for RoPE.
	x3, pos tensor.Tensor
	// freed: an F32 [4, 8] tensor whose buffer was freed.
	freed tensor.Tensor
	// foreign: an F32 [4, 8] tensor of another backend instance.
	foreign tensor.Tensor
}

// view is a view of t's buffer with t's dtype, or the test fails.
func view(t *testing.T, x tensor.Tensor, offset int, shape, strides []int) tensor.Tensor {
	t.Helper()
	v, err := x.View(offset, shape, strides)
	if err != nil {
		t.Fatalf("view %v %v+%d of %v: %v", shape, strides, offset, x, err)
	}
	return v
}

type invalidCase struct {
	name string
	want error
	call func(t *testing.T, e *invalidEnv) error
}

func invalidCases() []invalidCase {
	var z tensor.Tensor // a missing tensor
	inv, foreign, closed := op.ErrInvalidArgument, op.ErrForeignTensor, op.ErrClosed
	tr := func(t *testing.T, x tensor.Tensor) tensor.Tensor {
		v, err := x.Transpose(-1, -2)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return append([]invalidCase{
		// copy
		{"copy/missing dst", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Copy(z, e.f32) }},
		{"copy/missing src", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Copy(e.f32, z) }},
		{"copy/I32 to F32", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Copy(e.f32, e.i32) }},
		{"copy/F32 to I32", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Copy(e.i32, e.f32) }},
		{"copy/no broadcast", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Copy(view(t, e.f32, 0, []int{8, 4}, []int{4, 1}), e.f32b)
		}},
		{"copy/stride-0 dst", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Copy(view(t, e.f32, 0, []int{4, 8}, []int{0, 1}), e.f32b)
		}},
		{"copy/dst partly overlapping src", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Copy(view(t, e.f32, 1, []int{3, 8}, []int{8, 1}), view(t, e.f32, 0, []int{3, 8}, []int{8, 1}))
		}},
		{"copy/foreign src", foreign, func(t *testing.T, e *invalidEnv) error { return e.b.Copy(e.f32, e.foreign) }},
		{"copy/foreign dst", foreign, func(t *testing.T, e *invalidEnv) error { return e.b.Copy(e.foreign, e.f32) }},
		{"copy/freed src", closed, func(t *testing.T, e *invalidEnv) error { return e.b.Copy(e.f32, e.freed) }},
		// add, mul
		{"add/mixed dtypes", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Add(e.f32, e.f32b, e.f16) }},
		{"add/I32", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Add(e.i32, e.i32, e.i32) }},
		{"add/shapes", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Add(e.f32, e.f32b, e.x3) }},
		{"add/missing b", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Add(e.f32, e.f32b, z) }},
		{"add/dst overlapping b", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Add(view(t, e.f32, 4, []int{3, 8}, []int{8, 1}), view(t, e.f32b, 0, []int{3, 8}, []int{8, 1}),
				view(t, e.f32, 0, []int{3, 8}, []int{8, 1}))
		}},
		{"add/foreign", foreign, func(t *testing.T, e *invalidEnv) error { return e.b.Add(e.f32, e.f32b, e.foreign) }},
		{"mul/freed", closed, func(t *testing.T, e *invalidEnv) error { return e.b.Mul(e.f32, e.freed, e.f32b) }},
		{"mul/missing dst", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Mul(z, e.f32, e.f32b) }},
		{"mul/dst shape", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Mul(e.ids, e.f32, e.f32b) }},
		// silu, gelu
		{"silu/shapes", inv, func(t *testing.T, e *invalidEnv) error { return e.b.SiLU(e.f32, e.x3) }},
		{"silu/dtypes", inv, func(t *testing.T, e *invalidEnv) error { return e.b.SiLU(e.f32, e.f16) }},
		{"silu/foreign", foreign, func(t *testing.T, e *invalidEnv) error { return e.b.SiLU(e.f32, e.foreign) }},
		{"gelu/I32", inv, func(t *testing.T, e *invalidEnv) error { return e.b.GELU(e.i32, e.i32, op.GELUOptions{}) }},
		{"gelu/freed", closed, func(t *testing.T, e *invalidEnv) error { return e.b.GELU(e.freed, e.f32, op.GELUOptions{}) }},
		// softmax
		{"softmax/rows not contiguous", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Softmax(view(t, e.f32, 0, []int{8, 4}, []int{4, 1}), tr(t, e.f32b), op.SoftmaxOptions{})
		}},
		{"softmax/dst rows not contiguous", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Softmax(tr(t, e.f32), view(t, e.f32b, 0, []int{8, 4}, []int{4, 1}), op.SoftmaxOptions{})
		}},
		{"softmax/shapes", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Softmax(e.f32, e.x3, op.SoftmaxOptions{}) }},
		{"softmax/missing x", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Softmax(e.f32, z, op.SoftmaxOptions{}) }},
		{"softmax/foreign", foreign, func(t *testing.T, e *invalidEnv) error {
			return e.b.Softmax(e.foreign, e.f32, op.SoftmaxOptions{Causal: true})
		}},
		// rmsnorm, layernorm
		{"rmsnorm/weight length", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RMSNorm(e.f32, e.f32b, view(t, e.table, 0, []int{7}, []int{1}), op.NormOptions{})
		}},
		{"rmsnorm/weight F16", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RMSNorm(e.f32, e.f32b, view(t, e.f16, 0, []int{8}, []int{1}), op.NormOptions{})
		}},
		{"rmsnorm/negative eps", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RMSNorm(e.f32, e.f32b, z, op.NormOptions{Eps: -1e-6})
		}},
		{"rmsnorm/NaN eps", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RMSNorm(e.f32, e.f32b, z, op.NormOptions{Eps: float32(math.NaN())})
		}},
		{"rmsnorm/rows not contiguous", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RMSNorm(view(t, e.f32, 0, []int{8, 4}, []int{4, 1}), tr(t, e.f32b), z, op.NormOptions{})
		}},
		{"rmsnorm/dst overlapping weight", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RMSNorm(view(t, e.f32, 0, []int{2, 8}, []int{8, 1}), view(t, e.f32b, 0, []int{2, 8}, []int{8, 1}),
				view(t, e.f32, 4, []int{8}, []int{1}), op.NormOptions{})
		}},
		{"rmsnorm/freed weight", closed, func(t *testing.T, e *invalidEnv) error {
			return e.b.RMSNorm(e.f32, e.f32b, view(t, e.freed, 0, []int{8}, []int{1}), op.NormOptions{})
		}},
		{"layernorm/bias length", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.LayerNorm(e.f32, e.f32b, z, view(t, e.table, 0, []int{9}, []int{1}), op.NormOptions{})
		}},
		{"layernorm/weight rank 2", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.LayerNorm(e.f32, e.f32b, view(t, e.table, 0, []int{1, 8}, []int{8, 1}), z, op.NormOptions{})
		}},
		{"layernorm/foreign bias", foreign, func(t *testing.T, e *invalidEnv) error {
			return e.b.LayerNorm(e.f32, e.f32b, z, view(t, e.foreign, 0, []int{8}, []int{1}), op.NormOptions{})
		}},
		// rope
		{"rope/NDims odd", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RoPE(e.x3, e.x3, e.pos, op.RoPEOptions{NDims: 5})
		}},
		{"rope/NDims too large", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RoPE(e.x3, e.x3, e.pos, op.RoPEOptions{NDims: 10})
		}},
		{"rope/NDims negative", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RoPE(e.x3, e.x3, e.pos, op.RoPEOptions{NDims: -2})
		}},
		{"rope/unknown style", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RoPE(e.x3, e.x3, e.pos, op.RoPEOptions{Style: 9})
		}},
		{"rope/negative FreqBase", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RoPE(e.x3, e.x3, e.pos, op.RoPEOptions{FreqBase: -1})
		}},
		{"rope/positions F32", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RoPE(e.x3, e.x3, view(t, e.f32, 0, []int{2}, []int{1}), op.RoPEOptions{})
		}},
		{"rope/positions shape", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RoPE(e.x3, e.x3, e.ids, op.RoPEOptions{})
		}},
		{"rope/x rank 2", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RoPE(e.f32, e.f32b, e.pos, op.RoPEOptions{})
		}},
		{"rope/FreqFactors length", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RoPE(e.x3, e.x3, e.pos, op.RoPEOptions{FreqFactors: view(t, e.table, 0, []int{3}, []int{1})})
		}},
		{"rope/heads not contiguous", inv, func(t *testing.T, e *invalidEnv) error {
			x := view(t, e.x3, 0, []int{2, 8, 3}, []int{24, 1, 8})
			return e.b.RoPE(x, x, e.pos, op.RoPEOptions{})
		}},
		{"rope/missing positions", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.RoPE(e.x3, e.x3, z, op.RoPEOptions{})
		}},
		{"rope/freed positions", closed, func(t *testing.T, e *invalidEnv) error {
			return e.b.RoPE(e.x3, e.x3, asDType(t, view(t, e.freed, 0, []int{2}, []int{1}), tensor.I32), op.RoPEOptions{})
		}},
		// embedding
		{"embedding/table I32", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Embedding(e.f32, e.i32, e.ids) }},
		{"embedding/table rank 3", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Embedding(e.f32, view(t, e.table, 0, []int{2, 5, 8}, []int{40, 8, 1}), e.ids)
		}},
		{"embedding/ids F32", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Embedding(e.f32, e.table, view(t, e.f32b, 0, []int{4}, []int{1}))
		}},
		{"embedding/dst shape", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Embedding(e.x3, e.table, e.ids) }},
		{"embedding/dst I32", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Embedding(e.i32, e.table, e.ids) }},
		{"embedding/ids rank 4", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Embedding(e.f32, e.table, view(t, e.ids, 0, []int{1, 1, 1, 4}, []int{4, 4, 4, 1}))
		}},
		{"embedding/dst overlapping table", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Embedding(view(t, e.table, 8, []int{4, 8}, []int{8, 1}), e.table, e.ids)
		}},
		{"embedding/foreign table", foreign, func(t *testing.T, e *invalidEnv) error {
			return e.b.Embedding(e.f32, view(t, e.foreign, 0, []int{4, 8}, []int{8, 1}), e.ids)
		}},
		// argmax
		{"argmax/dst F32", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Argmax(view(t, e.f32b, 0, []int{4}, []int{1}), e.f32)
		}},
		{"argmax/dst shape", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Argmax(e.ids, e.x3) }},
		{"argmax/x I32", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Argmax(e.ids, e.i32) }},
		{"argmax/rows of 0", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Argmax(e.ids, view(t, e.f32, 0, []int{4, 0}, []int{8, 1}))
		}},
		{"argmax/rows not contiguous", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Argmax(view(t, e.i32, 0, []int{8}, []int{1}), tr(t, e.f32))
		}},
		{"argmax/freed x", closed, func(t *testing.T, e *invalidEnv) error { return e.b.Argmax(e.ids, e.freed) }},
		// matmul, matmul-swiglu: x [4, 8] (e.f32b), w [4, 8] (rows of e.table), dst [4, 4] (rows of e.f32)
		{"matmul/w I32", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(mmDst(t, e), e.f32b, e.i32, op.MatMulOptions{})
		}},
		{"matmul/w rank 3", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(mmDst(t, e), e.f32b, e.x3, op.MatMulOptions{})
		}},
		{"matmul/w rank 1", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(view(t, e.f32, 0, []int{4, 1}, []int{8, 1}), e.f32b, view(t, e.table, 0, []int{8}, []int{1}), op.MatMulOptions{})
		}},
		{"matmul/k mismatch", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(mmDst(t, e), e.f32b, view(t, e.table, 0, []int{4, 7}, []int{8, 1}), op.MatMulOptions{})
		}},
		{"matmul/k not a multiple of the Q8_0 block", inv, func(t *testing.T, e *invalidEnv) error {
			// x's k = 48: no Q8_0 matrix has it (its k would be a multiple of 32).
			return e.b.MatMul(view(t, e.table, 0, []int{4}, []int{1}), view(t, e.x3, 0, []int{48}, []int{1}),
				allocZeros(t, e.b, tensor.Q8_0, 4, 32), op.MatMulOptions{})
		}},
		{"matmul/w transposed", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(view(t, e.f32, 0, []int{4, 8}, []int{8, 1}), e.f32b, tr(t, view(t, e.table, 0, []int{8, 8}, []int{8, 1})), op.MatMulOptions{})
		}},
		{"matmul/x and dst dtypes differ", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(view(t, e.f16, 0, []int{4, 4}, []int{8, 1}), e.f32b, mmW(t, e), op.MatMulOptions{})
		}},
		{"matmul/x I32", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(asDType(t, mmDst(t, e), tensor.I32), e.i32, mmW(t, e), op.MatMulOptions{})
		}},
		{"matmul/dst shape", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(e.f32, e.f32b, mmW(t, e), op.MatMulOptions{})
		}},
		{"matmul/bias length", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(mmDst(t, e), e.f32b, mmW(t, e), op.MatMulOptions{Bias: view(t, e.table, 72, []int{5}, []int{1})})
		}},
		{"matmul/bias F16", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(mmDst(t, e), e.f32b, mmW(t, e), op.MatMulOptions{Bias: view(t, e.f16, 0, []int{4}, []int{1})})
		}},
		{"matmul/bias rank 2", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(mmDst(t, e), e.f32b, mmW(t, e), op.MatMulOptions{Bias: view(t, e.table, 72, []int{1, 4}, []int{4, 1})})
		}},
		{"matmul/dst overlapping x", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(view(t, e.f32b, 0, []int{4, 4}, []int{8, 1}), e.f32b, mmW(t, e), op.MatMulOptions{})
		}},
		{"matmul/dst in place of x", inv, func(t *testing.T, e *invalidEnv) error {
			// n = k = 8: dst could be x itself, which a product cannot overwrite.
			return e.b.MatMul(e.f32b, e.f32b, view(t, e.table, 0, []int{8, 8}, []int{8, 1}), op.MatMulOptions{})
		}},
		{"matmul/dst overlapping bias", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(mmDst(t, e), e.f32b, mmW(t, e), op.MatMulOptions{Bias: view(t, e.f32, 2, []int{4}, []int{1})})
		}},
		{"matmul/x rows uneven", inv, func(t *testing.T, e *invalidEnv) error {
			// [2, 2, 8] over x3's 6 rows of 8: rows 0, 1, 3, 4 (gaps of 8, 16, 8 elements).
			x := view(t, e.x3, 0, []int{2, 2, 8}, []int{24, 8, 1})
			return e.b.MatMul(view(t, e.f32, 0, []int{2, 2, 4}, []int{8, 4, 1}), x, mmW(t, e), op.MatMulOptions{})
		}},
		{"matmul/x rows not contiguous", inv, func(t *testing.T, e *invalidEnv) error {
			// x [8, 4] with stride 8 along k; w [4, 4].
			return e.b.MatMul(view(t, e.f32, 0, []int{8, 4}, []int{4, 1}), tr(t, e.f32b), view(t, e.table, 0, []int{4, 4}, []int{8, 1}), op.MatMulOptions{})
		}},
		{"matmul/missing w", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(mmDst(t, e), e.f32b, z, op.MatMulOptions{})
		}},
		{"matmul/missing x", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(mmDst(t, e), z, mmW(t, e), op.MatMulOptions{})
		}},
		{"matmul/foreign w", foreign, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(mmDst(t, e), e.f32b, e.foreign, op.MatMulOptions{})
		}},
		{"matmul/freed w", closed, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMul(mmDst(t, e), e.f32b, e.freed, op.MatMulOptions{})
		}},
		{"matmul-swiglu/weight dtypes differ", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMulSwiGLU(mmDst(t, e), e.f32b, mmW(t, e), e.f16)
		}},
		{"matmul-swiglu/weight shapes differ", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMulSwiGLU(mmDst(t, e), e.f32b, mmW(t, e), view(t, e.table, 0, []int{3, 8}, []int{8, 1}))
		}},
		{"matmul-swiglu/block formats differ", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMulSwiGLU(view(t, e.f32, 0, []int{1, 4}, []int{4, 1}), view(t, e.x3, 0, []int{1, 32}, []int{32, 1}),
				allocZeros(t, e.b, tensor.Q8_0, 4, 32), allocZeros(t, e.b, tensor.Q4_0, 4, 32))
		}},
		{"matmul-swiglu/missing wUp", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMulSwiGLU(mmDst(t, e), e.f32b, mmW(t, e), z)
		}},
		{"matmul-swiglu/foreign wGate", foreign, func(t *testing.T, e *invalidEnv) error {
			return e.b.MatMulSwiGLU(mmDst(t, e), e.f32b, e.foreign, mmW(t, e))
		}},
		// memory
		{"upload/size", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Upload(e.f32, make([]byte, 127)) }},
		{"upload/not contiguous", inv, func(t *testing.T, e *invalidEnv) error { return e.b.Upload(tr(t, e.f32), make([]byte, 128)) }},
		{"upload/freed", closed, func(t *testing.T, e *invalidEnv) error { return e.b.Upload(e.freed, make([]byte, 128)) }},
		{"download/size", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Download(context.Background(), make([]byte, 129), e.f32)
		}},
		{"download/not contiguous", inv, func(t *testing.T, e *invalidEnv) error {
			return e.b.Download(context.Background(), make([]byte, 128), tr(t, e.f32))
		}},
		{"free/twice", closed, func(t *testing.T, e *invalidEnv) error { return e.b.Free(e.freed) }},
		{"free/foreign", foreign, func(t *testing.T, e *invalidEnv) error { return e.b.Free(e.foreign) }},
		{"alloc/bad shape", inv, func(t *testing.T, e *invalidEnv) error {
			_, err := e.b.Alloc(tensor.F32, 2, -3)
			return err
		}},
		{"alloc/partial block", inv, func(t *testing.T, e *invalidEnv) error {
			_, err := e.b.Alloc(tensor.Q4_K, 2, 100)
			return err
		}},
	}, attentionInvalidCases()...)
}

// asDType reinterprets a view of a 4-byte dtype as another 4-byte dtype.
func asDType(t *testing.T, x tensor.Tensor, dt tensor.DType) tensor.Tensor {
	t.Helper()
	r, err := tensor.NewView(x.Buffer(), dt, x.Offset(), x.Shape(), x.Strides())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// newInvalidEnv allocates the environment's tensors on b (and the foreign
// one on other).
func newInvalidEnv(t *testing.T, b, other backend.Backend) *invalidEnv {
	t.Helper()
	alloc := func(on backend.Backend, dt tensor.DType, shape ...int) tensor.Tensor {
		x, err := on.Alloc(dt, shape...)
		if err != nil {
			t.Fatalf("alloc %v %v: %v", dt, shape, err)
		}
		raw := make([]byte, x.SizeBytes()) // zeros: valid ids and positions, finite floats
		if err := on.Upload(x, raw); err != nil {
			t.Fatalf("upload: %v", err)
		}
		t.Cleanup(func() { _ = on.Free(x) })
		return x
	}
	e := &invalidEnv{
		b:       b,
		f32:     alloc(b, tensor.F32, 4, 8),
		f32b:    alloc(b, tensor.F32, 4, 8),
		f16:     alloc(b, tensor.F16, 4, 8),
		i32:     alloc(b, tensor.I32, 4, 8),
		ids:     alloc(b, tensor.I32, 4),
		table:   alloc(b, tensor.F32, 10, 8),
		x3:      alloc(b, tensor.F32, 2, 3, 8),
		pos:     alloc(b, tensor.I32, 2),
		foreign: alloc(other, tensor.F32, 4, 8),
	}
	freed, err := b.Alloc(tensor.F32, 4, 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Free(freed); err != nil {
		t.Fatal(err)
	}
	e.freed = freed
	return e
}

// callSafely runs fn and turns a panic into an error that says so.
func callSafely(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("PANIC: %v", p)
		}
	}()
	return fn()
}

func TestInvalidArguments(t *testing.T) {
	backends := openAll(t)
	other, err := backend.Open(context.Background(), "cpu", backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, nb := range backends {
		e := newInvalidEnv(t, nb.b, other)
		for _, c := range invalidCases() {
			t.Run(nb.name+"/"+c.name, func(t *testing.T) {
				err := callSafely(func() error { return c.call(t, e) })
				if !errors.Is(err, c.want) {
					t.Errorf("error %v, want one matching %q", err, c.want)
				}
			})
		}
		// The backend still works after all that.
		if err := callSafely(func() error { return nb.b.Add(e.f32, e.f32b, e.f32b) }); err != nil {
			t.Errorf("%s: a valid op after the invalid ones: %v", nb.name, err)
		}
		if err := nb.b.Sync(context.Background()); err != nil {
			t.Errorf("%s: Sync after the invalid ones: %v", nb.name, err)
		}
	}
}

// TestClosedBackend: after Close, every call returns an error matching
// op.ErrClosed.
func TestClosedBackend(t *testing.T) {
	ctx := context.Background()
	for _, tb := range backendsUnderTest() {
		t.Run(tb.name, func(t *testing.T) {
			b, err := tb.open(ctx)
			if err != nil {
				t.Fatal(err)
			}
			x, err := b.Alloc(tensor.F32, 2, 4)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			calls := map[string]func() error{
				"alloc":    func() error { _, err := b.Alloc(tensor.F32, 4); return err },
				"upload":   func() error { return b.Upload(x, make([]byte, 32)) },
				"download": func() error { return b.Download(ctx, make([]byte, 32), x) },
				"sync":     func() error { return b.Sync(ctx) },
				"silu":     func() error { return b.SiLU(x, x) },
				"softmax":  func() error { return b.Softmax(x, x, op.SoftmaxOptions{}) },
				"free":     func() error { return b.Free(x) },
			}
			for name, call := range calls {
				if err := callSafely(call); !errors.Is(err, op.ErrClosed) {
					t.Errorf("%s after Close: %v, want an error matching %q", name, err, op.ErrClosed)
				}
			}
		})
	}
}

// TestEmbeddingIDOutOfRange: an id outside [0, vocab) is an error. The CPU
// reports it from the call (matching op.ErrInvalidArgument, naming the id,
// its index and the vocabulary size) and leaves dst untouched; a GPU may
// report it from the call or from the next Sync (matching
// op.ErrDeviceFault). Each case runs on a freshly opened backend, so that a
// device fault cannot disturb other tests.
func TestEmbeddingIDOutOfRange(t *testing.T) {
	ctx := context.Background()
	for _, tb := range backendsUnderTest() {
		for _, tc := range []struct {
			ids      []int32
			bad      string // how the error names the bad id
			badIndex string // and its index
		}{
			{[]int32{0, 3, -1, 2}, "-1", "[2]"},
			{[]int32{9, 10, 0, 1}, "10", "[1]"}, // vocab is 10: 10 is the first id out
			{[]int32{0, 1, 2, math.MaxInt32}, "2147483647", "[3]"},
		} {
			t.Run(fmt.Sprintf("%s/%v", tb.name, tc.ids), func(t *testing.T) {
				b, err := tb.open(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				table, err := b.Alloc(tensor.F32, 10, 8)
				if err != nil {
					t.Fatal(err)
				}
				ids, err := b.Alloc(tensor.I32, 4)
				if err != nil {
					t.Fatal(err)
				}
				dst, err := b.Alloc(tensor.F32, 4, 8)
				if err != nil {
					t.Fatal(err)
				}
				if err := b.Upload(table, make([]byte, 320)); err != nil {
					t.Fatal(err)
				}
				if err := b.Upload(ids, tensor.I32Bytes(tc.ids)); err != nil {
					t.Fatal(err)
				}
				before := poison(tensor.F32, 32)
				if err := b.Upload(dst, before); err != nil {
					t.Fatal(err)
				}
				err = callSafely(func() error { return b.Embedding(dst, table, ids) })
				if tb.name == "cpu" {
					if !errors.Is(err, op.ErrInvalidArgument) {
						t.Fatalf("error %v, want one matching %q", err, op.ErrInvalidArgument)
					}
					for _, part := range []string{tc.bad, tc.badIndex, "10"} {
						if !strings.Contains(err.Error(), part) {
							t.Errorf("error %q should name %q", err, part)
						}
					}
					after := make([]byte, 128)
					if err := b.Download(ctx, after, dst); err != nil {
						t.Fatal(err)
					}
					if string(after) != string(before) {
						t.Errorf("dst was written")
					}
					return
				}
				if err == nil {
					err = b.Sync(ctx)
				}
				if !errors.Is(err, op.ErrInvalidArgument) && !errors.Is(err, op.ErrDeviceFault) {
					t.Errorf("error %v, want one matching %q or %q", err, op.ErrInvalidArgument, op.ErrDeviceFault)
				}
			})
		}
	}
}

// attentionInvalidCases: every check of op.CheckAttention and
// op.CheckAppendKV, and ownership, each a valid call of attention_args_test.go
// (F16 q [3, 4, 8]; keys [5, 2, 8] or a paged cache [4, 2, 2, 8]; F32 mask
// [3, 6] and LSE [4, 3]; new keys [2, 2, 8]) with one change. Faults in the values of
// the I32 metadata are TestAttentionMetadataFaults'.
func attentionInvalidCases() []invalidCase {
	var z tensor.Tensor
	inv, foreign, closed := op.ErrInvalidArgument, op.ErrForeignTensor, op.ErrClosed
	type ae = invalidEnv
	type aa = attnArgs
	type ac = attnCall
	type pc = appendCall
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	return []invalidCase{
		// q
		attnInvalid("missing q", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.q = z }),
		attnInvalid("q I32", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.q = allocZeros(t, e.b, tensor.I32, 3, 4, 8) }),
		attnInvalid("q rank 2", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.q = a.sv(t, 0, []int{3, 32}, []int{32, 1}) }),
		attnInvalid("head dim 0", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.q, c.dst = a.sv(t, 0, []int{3, 4, 0}, []int{32, 8, 1}), a.sv(t, 0, []int{3, 4, 0}, []int{32, 8, 1})
		}),
		attnInvalid("head dim 257", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.q, c.dst = allocZeros(t, e.b, tensor.F16, 3, 4, 257), allocZeros(t, e.b, tensor.F16, 3, 4, 257)
			c.kv.K, c.kv.V = allocZeros(t, e.b, tensor.F16, 5, 2, 257), allocZeros(t, e.b, tensor.F16, 5, 2, 257)
		}),
		attnInvalid("no heads", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.q = a.sv(t, 0, []int{3, 0, 8}, []int{8, 8, 1}) }),
		attnInvalid("q head vectors not contiguous", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.q = a.sv(t, 0, []int{3, 4, 8}, []int{64, 16, 2})
		}),
		// dst
		attnInvalid("missing dst", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.dst = z }),
		attnInvalid("dst BF16", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.dst = a.qBF16 }),
		attnInvalid("dst shape", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.dst = a.sv(t, 0, []int{3, 4, 7}, []int{28, 7, 1}) }),
		attnInvalid("dst head vectors not contiguous", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.dst = a.sv(t, 0, []int{3, 4, 8}, []int{64, 16, 2})
		}),
		attnInvalid("dst with stride 0", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.dst = view(t, a.dst, 0, []int{3, 4, 8}, []int{0, 8, 1})
		}),
		// queryStarts
		attnInvalid("missing queryStarts", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.qs = z }),
		attnInvalid("queryStarts F32", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.qs = a.sv32(t, 0, []int{3}, []int{1}) }),
		attnInvalid("queryStarts rank 2", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.qs = view(t, a.table, 0, []int{1, 3}, []int{3, 1})
		}),
		attnInvalid("queryStarts of one element", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.qs = view(t, a.qs, 0, []int{1}, []int{1})
		}),
		attnInvalid("queryStarts not contiguous", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.qs = view(t, a.table, 0, []int{3}, []int{2})
		}),
		// contiguous keys and values
		attnInvalid("missing kv.K", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.kv.K = z }),
		attnInvalid("missing kv.V", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.kv.V = z }),
		attnInvalid("kv.K BF16", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.kv.K = allocZeros(t, e.b, tensor.BF16, 5, 2, 8) }),
		attnInvalid("kv.V head vectors not contiguous", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.V = a.sv(t, 0, []int{5, 2, 8}, []int{32, 16, 2})
		}),
		attnInvalid("kv.V shape differs from kv.K", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.V = a.sv(t, 0, []int{4, 2, 8}, []int{16, 8, 1})
		}),
		attnInvalid("kv head dim differs from q", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.K, c.kv.V = a.sv(t, 0, []int{5, 2, 7}, []int{14, 7, 1}), a.sv(t, 100, []int{5, 2, 7}, []int{14, 7, 1})
		}),
		attnInvalid("heads not a multiple of KV heads", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.K, c.kv.V = a.sv(t, 0, []int{5, 3, 8}, []int{24, 8, 1}), a.sv(t, 120, []int{5, 3, 8}, []int{24, 8, 1})
		}),
		attnInvalid("contiguous keys of rank 4", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.kv.K, c.kv.V = a.kp, a.vp }),
		attnInvalid("contiguous keys with Lens", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.kv.Lens = a.lens }),
		attnInvalid("missing kv.Starts", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.kv.Starts = z }),
		attnInvalid("kv.Starts length", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.Starts = view(t, a.starts, 0, []int{2}, []int{1})
		}),
		attnInvalid("kv.Starts F32", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.kv.Starts = a.sv32(t, 0, []int{3}, []int{1}) }),
		// paged cache
		attnInvalid("paged keys of rank 3", inv, true, func(t *testing.T, e *ae, a *aa, c *ac) { c.kv.K, c.kv.V = a.k, a.v }),
		attnInvalid("paged with kv.Starts", inv, true, func(t *testing.T, e *ae, a *aa, c *ac) { c.kv.Starts = a.starts }),
		attnInvalid("block table F32", inv, true, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.BlockTable = a.sv32(t, 0, []int{2, 3}, []int{3, 1})
		}),
		attnInvalid("block table rank 1", inv, true, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.BlockTable = view(t, a.table, 0, []int{6}, []int{1})
		}),
		attnInvalid("block table batch", inv, true, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.BlockTable = view(t, a.table, 0, []int{1, 3}, []int{3, 1})
		}),
		attnInvalid("block table rows not contiguous", inv, true, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.BlockTable = view(t, a.table, 0, []int{2, 2}, []int{3, 2})
		}),
		attnInvalid("missing kv.Lens", inv, true, func(t *testing.T, e *ae, a *aa, c *ac) { c.kv.Lens = z }),
		attnInvalid("kv.Lens length", inv, true, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.Lens = view(t, a.lens, 0, []int{1}, []int{1})
		}),
		attnInvalid("paged head dim differs from q", inv, true, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.K, c.kv.V = a.sv(t, 0, []int{4, 2, 2, 4}, []int{16, 8, 4, 1}), a.sv(t, 64, []int{4, 2, 2, 4}, []int{16, 8, 4, 1})
		}),
		// options
		attnInvalid("Scale NaN", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.opts.Scale = nan }),
		attnInvalid("Scale +Inf", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.opts.Scale = inf }),
		attnInvalid("Window negative", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.opts.Window = -1 }),
		attnInvalid("Window without Causal", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.opts.Causal, c.opts.Window = false, 4 }),
		attnInvalid("MaxQueryLen negative", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.opts.MaxQueryLen = -1 }),
		attnInvalid("MaxKVLen negative", inv, true, func(t *testing.T, e *ae, a *aa, c *ac) { c.opts.MaxKVLen = -1 }),
		attnInvalid("Mask F16", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.opts.Mask = view(t, a.q, 0, []int{3, 6}, []int{6, 1})
		}),
		attnInvalid("Mask rows", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.opts.Mask = view(t, a.mask, 0, []int{2, 6}, []int{6, 1})
		}),
		attnInvalid("Mask rank 3", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.opts.Mask = view(t, a.mask, 0, []int{1, 3, 6}, []int{18, 6, 1})
		}),
		attnInvalid("Mask columns not contiguous", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.opts.Mask = view(t, a.mask, 0, []int{3, 3}, []int{6, 2})
		}),
		attnInvalid("LSE shape", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.opts.LSE = view(t, a.lse, 0, []int{3, 4}, []int{4, 1})
		}),
		attnInvalid("LSE F16", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.opts.LSE = view(t, a.q, 0, []int{4, 3}, []int{3, 1})
		}),
		attnInvalid("LSE not contiguous", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.opts.LSE = a.sv32(t, 0, []int{4, 3}, []int{6, 2})
		}),
		// outputs overlapping
		attnInvalid("dst overlapping q", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.q, c.dst = a.sv(t, 0, []int{3, 4, 8}, []int{32, 8, 1}), a.sv(t, 8, []int{3, 4, 8}, []int{32, 8, 1})
		}),
		attnInvalid("dst is q", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) { c.dst = c.q }),
		attnInvalid("dst overlapping kv.V", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.V, c.dst = a.sv(t, 0, []int{5, 2, 8}, []int{16, 8, 1}), a.sv(t, 64, []int{3, 4, 8}, []int{32, 8, 1})
		}),
		attnInvalid("dst overlapping the block table", inv, true, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.BlockTable = viewAs(t, a.scratch, tensor.I32, 0, []int{2, 3}, []int{3, 1}) // the first 24 bytes
			c.dst = a.sv(t, 8, []int{3, 4, 8}, []int{32, 8, 1})
		}),
		attnInvalid("LSE overlapping dst", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.dst, c.opts.LSE = a.sv(t, 0, []int{3, 4, 8}, []int{32, 8, 1}), viewAs(t, a.scratch, tensor.F32, 45, []int{4, 3}, []int{3, 1})
		}),
		attnInvalid("LSE overlapping Mask", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.opts.Mask, c.opts.LSE = a.sv32(t, 0, []int{3, 6}, []int{6, 1}), a.sv32(t, 10, []int{4, 3}, []int{3, 1})
		}),
		attnInvalid("LSE with stride 0", inv, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.opts.LSE = view(t, a.lse, 0, []int{4, 3}, []int{0, 1})
		}),
		// ownership
		attnInvalid("foreign q", foreign, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.q = viewAs(t, e.foreign, tensor.F16, 0, []int{1, 4, 8}, []int{32, 8, 1})
			c.dst = view(t, a.dst, 0, []int{1, 4, 8}, []int{32, 8, 1})
			c.qs = view(t, a.qs, 0, []int{2}, []int{1}) // [0, 1]: one sequence, one query
			c.kv.Starts = view(t, a.starts, 0, []int{2}, []int{1})
			c.opts.Mask, c.opts.LSE = z, z
		}),
		attnInvalid("foreign block table", foreign, true, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.BlockTable = asDType(t, view(t, e.foreign, 0, []int{2, 3}, []int{3, 1}), tensor.I32)
		}),
		attnInvalid("freed kv.K", closed, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.kv.K, c.kv.V = viewAs(t, e.freed, tensor.F16, 0, []int{2, 2, 8}, []int{16, 8, 1}), a.sv(t, 0, []int{2, 2, 8}, []int{16, 8, 1})
		}),
		attnInvalid("freed LSE", closed, false, func(t *testing.T, e *ae, a *aa, c *ac) {
			c.opts.LSE = view(t, e.freed, 0, []int{4, 3}, []int{3, 1})
		}),
		// append-kv
		appendInvalid("cache without BlockTable", inv, func(t *testing.T, e *ae, a *aa, c *pc) { c.cache.BlockTable = z }),
		appendInvalid("missing cache.K", inv, func(t *testing.T, e *ae, a *aa, c *pc) { c.cache.K = z }),
		appendInvalid("missing k", inv, func(t *testing.T, e *ae, a *aa, c *pc) { c.k = z }),
		appendInvalid("missing v", inv, func(t *testing.T, e *ae, a *aa, c *pc) { c.v = z }),
		appendInvalid("cache I32", inv, func(t *testing.T, e *ae, a *aa, c *pc) {
			c.cache.K, c.cache.V = allocZeros(t, e.b, tensor.I32, 4, 2, 2, 8), allocZeros(t, e.b, tensor.I32, 4, 2, 2, 8)
		}),
		appendInvalid("cache rank 3", inv, func(t *testing.T, e *ae, a *aa, c *pc) { c.cache.K, c.cache.V = a.k, a.v }),
		appendInvalid("cache.V shape differs", inv, func(t *testing.T, e *ae, a *aa, c *pc) {
			c.cache.V = a.sv(t, 0, []int{4, 2, 2, 7}, []int{28, 14, 7, 1})
		}),
		appendInvalid("cache.V BF16", inv, func(t *testing.T, e *ae, a *aa, c *pc) {
			c.cache.V = allocZeros(t, e.b, tensor.BF16, 4, 2, 2, 8)
		}),
		appendInvalid("cache.K head vectors not contiguous", inv, func(t *testing.T, e *ae, a *aa, c *pc) {
			c.cache.K = a.sv(t, 0, []int{4, 2, 2, 8}, []int{64, 32, 16, 2})
		}),
		appendInvalid("block table F32", inv, func(t *testing.T, e *ae, a *aa, c *pc) {
			c.cache.BlockTable = a.sv32(t, 0, []int{2, 3}, []int{3, 1})
		}),
		appendInvalid("block table rank 1", inv, func(t *testing.T, e *ae, a *aa, c *pc) {
			c.cache.BlockTable = view(t, a.table, 0, []int{6}, []int{1})
		}),
		appendInvalid("block table rows not contiguous", inv, func(t *testing.T, e *ae, a *aa, c *pc) {
			c.cache.BlockTable = view(t, a.table, 0, []int{2, 2}, []int{3, 2})
		}),
		appendInvalid("k KV heads", inv, func(t *testing.T, e *ae, a *aa, c *pc) { c.k = a.sv(t, 0, []int{2, 1, 8}, []int{8, 8, 1}) }),
		appendInvalid("k head dim", inv, func(t *testing.T, e *ae, a *aa, c *pc) { c.k = a.sv(t, 0, []int{2, 2, 7}, []int{14, 7, 1}) }),
		appendInvalid("k rank 2", inv, func(t *testing.T, e *ae, a *aa, c *pc) { c.k = a.sv(t, 0, []int{2, 16}, []int{16, 1}) }),
		appendInvalid("v BF16", inv, func(t *testing.T, e *ae, a *aa, c *pc) { c.v = allocZeros(t, e.b, tensor.BF16, 2, 2, 8) }),
		appendInvalid("v tokens", inv, func(t *testing.T, e *ae, a *aa, c *pc) { c.v = a.sv(t, 0, []int{3, 2, 8}, []int{16, 8, 1}) }),
		appendInvalid("k head vectors not contiguous", inv, func(t *testing.T, e *ae, a *aa, c *pc) {
			c.k = a.sv(t, 0, []int{2, 2, 8}, []int{32, 16, 2})
		}),
		appendInvalid("seqIDs length", inv, func(t *testing.T, e *ae, a *aa, c *pc) { c.seqIDs = view(t, a.seqIDs, 0, []int{1}, []int{1}) }),
		appendInvalid("positions F32", inv, func(t *testing.T, e *ae, a *aa, c *pc) { c.positions = a.sv32(t, 0, []int{2}, []int{1}) }),
		appendInvalid("missing positions", inv, func(t *testing.T, e *ae, a *aa, c *pc) { c.positions = z }),
		appendInvalid("cache.K overlapping k", inv, func(t *testing.T, e *ae, a *aa, c *pc) {
			c.cache.K, c.k = a.sv(t, 0, []int{4, 2, 2, 8}, []int{32, 16, 8, 1}), a.sv(t, 100, []int{2, 2, 8}, []int{16, 8, 1})
		}),
		appendInvalid("cache.V overlapping cache.K", inv, func(t *testing.T, e *ae, a *aa, c *pc) {
			c.cache.K, c.cache.V = a.sv(t, 0, []int{4, 2, 2, 8}, []int{32, 16, 8, 1}), a.sv(t, 64, []int{4, 2, 2, 8}, []int{32, 16, 8, 1})
		}),
		appendInvalid("cache.V overlapping the block table", inv, func(t *testing.T, e *ae, a *aa, c *pc) {
			c.cache.BlockTable = viewAs(t, a.scratch, tensor.I32, 0, []int{2, 3}, []int{3, 1}) // the first 24 bytes
			c.cache.V = a.sv(t, 0, []int{4, 2, 2, 8}, []int{32, 16, 8, 1})
		}),
		appendInvalid("foreign k", foreign, func(t *testing.T, e *ae, a *aa, c *pc) {
			c.k = viewAs(t, e.foreign, tensor.F16, 0, []int{2, 2, 8}, []int{16, 8, 1})
		}),
		appendInvalid("freed cache.V", closed, func(t *testing.T, e *ae, a *aa, c *pc) {
			c.cache.K = a.sv(t, 0, []int{1, 2, 2, 8}, []int{32, 16, 8, 1})
			c.cache.V = viewAs(t, e.freed, tensor.F16, 0, []int{1, 2, 2, 8}, []int{32, 16, 8, 1})
		}),
		appendInvalid("freed seqIDs", closed, func(t *testing.T, e *ae, a *aa, c *pc) {
			c.seqIDs = asDType(t, view(t, e.freed, 0, []int{2}, []int{1}), tensor.I32)
		}),
	}
}
