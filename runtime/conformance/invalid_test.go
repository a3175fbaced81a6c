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
	return []invalidCase{
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
	}
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
