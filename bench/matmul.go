package bench

import (
	"fmt"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Matrix-product cases, named matmul/<wtype>/m<M>n<N>k<K>: Y[m, n] =
// X[m, k]·W[n, k]ᵀ with W in each weight type (op.MatMulWeightTypes, random
// valid blocks with small finite scales for the block formats), X and Y in
// BF16 — as the peer, torch's bf16 x @ w.T (scripts/peers/ops_torch.py),
// which runs bf16 weights whatever the wtype. Bytes = W + X + Y (each read or
// written once); FLOPs = 2·m·n·k. m = 1 is the decode shape (memory-bound:
// compare its GB/s with probe/read), m = 16 a small batch, m = 512 prefill
// (compute-bound: TFLOP/s). The (n, k) pairs are LLaMA-3-8B's projections
// (4096×4096 attention, 14336×4096 gate/up, 4096×14336 down) and its output
// layer (128256×4096).

// matmulRows are the m of the cases.
var matmulRows = []int{1, 4, 16, 512}

// matmulShapes are the (n, k) of the cases.
var matmulShapes = [][2]int{{4096, 4096}, {14336, 4096}, {4096, 14336}, {128256, 4096}}

// matmulMaxSets lets the rotated input sets of small weights span the
// harness's footprint (256 MiB by default: five times an H100's or H200's
// 50 MiB L2, eight times this CPU's L3) instead of the default 8 sets; each
// set has its own weights, so every iteration reads its weights from memory.
// Large weights get fewer sets (the F32 128256×4096 matrix, 2 GiB, one).
const matmulMaxSets = 32

func init() {
	for _, wt := range op.MatMulWeightTypes {
		for _, m := range matmulRows {
			for _, nk := range matmulShapes {
				Register(matmulCase(wt, m, nk[0], nk[1]))
			}
		}
	}
}

// matmulCaseName is the name of a matrix-product case.
func matmulCaseName(wt tensor.DType, m, n, k int) string {
	return fmt.Sprintf("matmul/%v/m%dn%dk%d", wt, m, n, k)
}

// matmulCase times MatMul of BF16 X [m, k] by W [n, k] of type wt into
// BF16 Y [m, n].
func matmulCase(wt tensor.DType, m, n, k int) Case {
	return Case{
		Name:    matmulCaseName(wt, m, n, k),
		Bytes:   bytesOf(wt, n, k) + bytesOf(tensor.BF16, m, k) + bytesOf(tensor.BF16, m, n),
		FLOPs:   2 * int64(m) * int64(n) * int64(k),
		MaxSets: matmulMaxSets,
		Prepare: func(env *Env) (*Runner, error) {
			w, err := env.Random(wt, 0, n, k)
			if err != nil {
				return nil, err
			}
			x, err := env.Random(tensor.BF16, 0, m, k)
			if err != nil {
				return nil, err
			}
			y, err := env.Alloc(tensor.BF16, m, n)
			if err != nil {
				return nil, err
			}
			return &Runner{Run: func() error { return env.Dev.MatMul(y, x, w, op.MatMulOptions{}) }}, nil
		},
	}
}
