package conformance

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// TestHugeShapesOnGPU runs a few ops at sizes past the launchers' grid
// limits (more than 65535 rows, more than 65536 blocks of elements), where
// kernels loop over their work instead of mapping one block to one piece.
// The table in TestOps keeps its shapes small for the CPU under -race; these
// cases matter only where a GPU is present, and compare it with the CPU
// backend directly.
func TestHugeShapesOnGPU(t *testing.T) {
	ordinals, reason := cudaProbe()
	if len(ordinals) == 0 {
		t.Skipf("no CUDA device: %s", reason)
	}
	ctx := context.Background()
	ref, err := backend.Open(ctx, "cpu", backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	for _, tb := range backendsUnderTest()[1:] {
		t.Run(tb.name, func(t *testing.T) {
			dev, err := tb.open(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Close()
			for _, c := range hugeCases() {
				t.Run(c.name, func(t *testing.T) { runHuge(t, ref, dev, c) })
			}
		})
	}
}

// hugeCase builds its inputs with in (which allocates on a backend and
// uploads bytes) and runs its op on backend b into out.
type hugeCase struct {
	name   string
	opName string
	outDT  tensor.DType
	out    []int
	inputs func(rng *rand.Rand) []hostInput
	run    func(b backend.Backend, out tensor.Tensor, in []tensor.Tensor) error
}

type hostInput struct {
	dt    tensor.DType
	shape []int
	data  []byte
}

func floats(rng *rand.Rand, dt tensor.DType, shape ...int) hostInput {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	b, _ := tensor.EncodeFloats(dt, v)
	return hostInput{dt, shape, b}
}

func hugeCases() []hugeCase {
	const rows = 70000 // past gridDim.y/z's 65535
	return []hugeCase{
		{"silu/F16/5000x4099", op.NameSiLU, tensor.F16, []int{5000, 4099},
			func(rng *rand.Rand) []hostInput { return []hostInput{floats(rng, tensor.F16, 5000, 4099)} },
			func(b backend.Backend, out tensor.Tensor, in []tensor.Tensor) error { return b.SiLU(out, in[0]) }},
		{"add-broadcast/BF16/70000x300", op.NameAdd, tensor.BF16, []int{rows, 300},
			func(rng *rand.Rand) []hostInput {
				return []hostInput{floats(rng, tensor.BF16, rows, 300), floats(rng, tensor.BF16, 300)}
			},
			func(b backend.Backend, out tensor.Tensor, in []tensor.Tensor) error { return b.Add(out, in[0], in[1]) }},
		{"rmsnorm/F32/70000x64", op.NameRMSNorm, tensor.F32, []int{rows, 64},
			func(rng *rand.Rand) []hostInput {
				return []hostInput{floats(rng, tensor.F32, rows, 64), floats(rng, tensor.F32, 64)}
			},
			func(b backend.Backend, out tensor.Tensor, in []tensor.Tensor) error {
				return b.RMSNorm(out, in[0], in[1], op.NormOptions{})
			}},
		{"layernorm/F16/70000x600", op.NameLayerNorm, tensor.F16, []int{rows, 600},
			func(rng *rand.Rand) []hostInput {
				return []hostInput{floats(rng, tensor.F16, rows, 600), floats(rng, tensor.F32, 600), floats(rng, tensor.F32, 600)}
			},
			func(b backend.Backend, out tensor.Tensor, in []tensor.Tensor) error {
				return b.LayerNorm(out, in[0], in[1], in[2], op.NormOptions{})
			}},
		{"softmax-causal/F16/70000x100", op.NameSoftmax, tensor.F16, []int{rows, 100},
			func(rng *rand.Rand) []hostInput { return []hostInput{floats(rng, tensor.F16, rows, 100)} },
			func(b backend.Backend, out tensor.Tensor, in []tensor.Tensor) error {
				return b.Softmax(out, in[0], op.SoftmaxOptions{Scale: 0.5, Causal: true, PositionOffset: 50 - rows})
			}},
		{"argmax/F32/70000x33", op.NameArgmax, tensor.I32, []int{rows},
			func(rng *rand.Rand) []hostInput { return []hostInput{floats(rng, tensor.F32, rows, 33)} },
			func(b backend.Backend, out tensor.Tensor, in []tensor.Tensor) error { return b.Argmax(out, in[0]) }},
	}
}

func runHuge(t *testing.T, ref, dev backend.Backend, c hugeCase) {
	rng := rand.New(rand.NewPCG(7, uint64(len(c.name))))
	inputs := c.inputs(rng)
	results := make([][]float64, 2)
	for i, b := range []backend.Backend{ref, dev} {
		var ins []tensor.Tensor
		for _, h := range inputs {
			x, err := b.Alloc(h.dt, h.shape...)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Free(x)
			if err := b.Upload(x, h.data); err != nil {
				t.Fatal(err)
			}
			ins = append(ins, x)
		}
		out, err := b.Alloc(c.outDT, c.out...)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Free(out)
		if err := b.Upload(out, poison(c.outDT, out.NumElems())); err != nil {
			t.Fatal(err)
		}
		if err := c.run(b, out, ins); err != nil {
			t.Fatalf("%s: %v", b.Name(), err)
		}
		raw := make([]byte, out.SizeBytes())
		if err := b.Download(context.Background(), raw, out); err != nil {
			t.Fatalf("%s: %v", b.Name(), err)
		}
		all := make([]int, out.NumElems())
		for j := range all {
			all[j] = j
		}
		results[i] = decodeElems(c.outDT, raw, all)
	}
	tol := For(c.opName, c.outDT)
	if r := Compare(results[1], results[0], c.outDT, c.out, tol); !r.OK() {
		t.Errorf("%s against the CPU: %s", dev.Name(), r)
	}
}
