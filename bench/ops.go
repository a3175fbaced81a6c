package bench

import (
	"fmt"

	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Prober is implemented by backends that measure raw memory bandwidth, the
// yardstick for memory-bound cases.
type Prober interface {
	// ProbeRead reads every byte of src once (the result is discarded).
	ProbeRead(src tensor.Tensor) error
	// ProbeCopy copies src to dst (both contiguous, same size in bytes).
	ProbeCopy(dst, src tensor.Tensor) error
}

const gib = 1 << 30

// asProber finds the Prober behind dev, looking through wrappers such as
// *backend.Device that embed a Backend and expose it with Unwrap.
func asProber(dev backend.Backend) (Prober, bool) {
	for {
		if p, ok := dev.(Prober); ok {
			return p, true
		}
		u, ok := dev.(interface{ Unwrap() backend.Backend })
		if !ok {
			return nil, false
		}
		dev = u.Unwrap()
	}
}

func init() {
	Register(
		probeCase("probe/read/1GiB", gib, false),
		probeCase("probe/copy/1GiB", gib, true),
		opCase("op/copy/F32-F16/4096x4096", tensor.F32, tensor.F16, []int{4096, 4096}, 0,
			func(dev backend.Backend, dst, x tensor.Tensor, _ []tensor.Tensor) error { return dev.Copy(dst, x) }),
		binaryCase("op/add/F16/4096x4096", tensor.F16, 4096, 4096, func(dev backend.Backend, d, a, b tensor.Tensor) error { return dev.Add(d, a, b) }),
		binaryCase("op/mul/BF16/4096x4096", tensor.BF16, 4096, 4096, func(dev backend.Backend, d, a, b tensor.Tensor) error { return dev.Mul(d, a, b) }),
		opCase("op/silu/F16/4096x14336", tensor.F16, tensor.F16, []int{4096, 14336}, 0,
			func(dev backend.Backend, dst, x tensor.Tensor, _ []tensor.Tensor) error { return dev.SiLU(dst, x) }),
		opCase("op/gelu/F16/4096x14336", tensor.F16, tensor.F16, []int{4096, 14336}, 0,
			func(dev backend.Backend, dst, x tensor.Tensor, _ []tensor.Tensor) error {
				return dev.GELU(dst, x, op.GELUOptions{Approx: op.GELUErf})
			}),
		opCase("op/softmax/F16/8192x4096", tensor.F16, tensor.F16, []int{8192, 4096}, 0,
			func(dev backend.Backend, dst, x tensor.Tensor, _ []tensor.Tensor) error {
				return dev.Softmax(dst, x, op.SoftmaxOptions{})
			}),
		opCase("op/rmsnorm/F16/4096x4096", tensor.F16, tensor.F16, []int{4096, 4096}, 1,
			func(dev backend.Backend, dst, x tensor.Tensor, v []tensor.Tensor) error {
				return dev.RMSNorm(dst, x, v[0], op.NormOptions{Eps: 1e-5})
			}),
		opCase("op/layernorm/F16/4096x4096", tensor.F16, tensor.F16, []int{4096, 4096}, 2,
			func(dev backend.Backend, dst, x tensor.Tensor, v []tensor.Tensor) error {
				return dev.LayerNorm(dst, x, v[0], v[1], op.NormOptions{Eps: 1e-5})
			}),
		ropeCase("op/rope/F16/512x32x128", tensor.F16, 512, 32, 128),
		embeddingCase("op/embedding/Q4_K-F32/512x4096", tensor.Q4_K, tensor.F32, 128256, 4096, 512),
		embeddingCase("op/embedding/F16-F16/512x4096", tensor.F16, tensor.F16, 128256, 4096, 512),
		argmaxCase("op/argmax/F32/32x128256", 32, 128256),
	)
}

func bytesOf(dt tensor.DType, shape ...int) int64 {
	n, err := tensor.SizeBytes(dt, shape...)
	if err != nil {
		panic(err) // the cases' shapes are constants
	}
	return n
}

func elems(shape []int) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= int64(d)
	}
	return n
}

func probeCase(name string, sizeBytes int64, copyToo bool) Case {
	traffic := sizeBytes
	if copyToo {
		traffic *= 2
	}
	return Case{Name: name, Bytes: traffic, Prepare: func(env *Env) (*Runner, error) {
		p, ok := asProber(env.Dev)
		if !ok {
			return nil, fmt.Errorf("%s has no bandwidth probe", env.Dev.Name())
		}
		n := int(sizeBytes / 4)
		src, err := env.Random(tensor.F32, 0, n)
		if err != nil {
			return nil, err
		}
		if !copyToo {
			return &Runner{Run: func() error { return p.ProbeRead(src) }}, nil
		}
		dst, err := env.Alloc(tensor.F32, n)
		if err != nil {
			return nil, err
		}
		return &Runner{Run: func() error { return p.ProbeCopy(dst, src) }}, nil
	}}
}

// opCase is a unary-shaped op: dst (outType) from x (inType) of one
// shape, plus nVectors F32 parameter vectors of the row length (norm weights
// and biases). These ops are memory-bound: their cases count bytes, not FLOPs.
func opCase(name string, inType, outType tensor.DType, shape []int, nVectors int,
	run func(dev backend.Backend, dst, x tensor.Tensor, vectors []tensor.Tensor) error) Case {
	rowLen := shape[len(shape)-1]
	return Case{
		Name:  name,
		Bytes: bytesOf(inType, shape...) + bytesOf(outType, shape...) + int64(nVectors)*bytesOf(tensor.F32, rowLen),
		Prepare: func(env *Env) (*Runner, error) {
			x, err := env.Random(inType, 0, shape...)
			if err != nil {
				return nil, err
			}
			dst, err := env.Alloc(outType, shape...)
			if err != nil {
				return nil, err
			}
			vectors := make([]tensor.Tensor, nVectors)
			for i := range vectors {
				if vectors[i], err = env.Random(tensor.F32, 0, rowLen); err != nil {
					return nil, err
				}
			}
			return &Runner{Run: func() error { return run(env.Dev, dst, x, vectors) }}, nil
		},
	}
}

func binaryCase(name string, dt tensor.DType, rows, cols int,
	run func(dev backend.Backend, dst, a, b tensor.Tensor) error) Case {
	return Case{
		Name:  name,
		Bytes: 3 * bytesOf(dt, rows, cols),
		Prepare: func(env *Env) (*Runner, error) {
			a, err := env.Random(dt, 0, rows, cols)
			if err != nil {
				return nil, err
			}
			b, err := env.Random(dt, 0, rows, cols)
			if err != nil {
				return nil, err
			}
			dst, err := env.Alloc(dt, rows, cols)
			if err != nil {
				return nil, err
			}
			return &Runner{Run: func() error { return run(env.Dev, dst, a, b) }}, nil
		},
	}
}

// ropeCase rotates x [nTokens, nHeads, headDim] (NeoX style) at positions 0..nTokens-1.
func ropeCase(name string, dt tensor.DType, nTokens, nHeads, headDim int) Case {
	return Case{
		Name:  name,
		Bytes: 2*bytesOf(dt, nTokens, nHeads, headDim) + bytesOf(tensor.I32, nTokens),
		Prepare: func(env *Env) (*Runner, error) {
			x, err := env.Random(dt, 0, nTokens, nHeads, headDim)
			if err != nil {
				return nil, err
			}
			dst, err := env.Alloc(dt, nTokens, nHeads, headDim)
			if err != nil {
				return nil, err
			}
			pos, err := env.Alloc(tensor.I32, nTokens)
			if err != nil {
				return nil, err
			}
			ids := make([]int32, nTokens)
			for i := range ids {
				ids[i] = int32(i)
			}
			if err := env.Dev.Upload(pos, tensor.I32Bytes(ids)); err != nil {
				return nil, err
			}
			opts := op.RoPEOptions{Style: op.RoPENeoX, FreqBase: 500000}
			return &Runner{Run: func() error { return env.Dev.RoPE(dst, x, pos, opts) }}, nil
		},
	}
}

// embeddingCase gathers nIDs random rows of a [vocab, dim] table; the
// table is shared by all input sets, the ids differ.
func embeddingCase(name string, tableType, outType tensor.DType, vocab, dim, nIDs int) Case {
	rowBytes := bytesOf(tableType, 1, dim)
	return Case{
		Name:  name,
		Bytes: int64(nIDs)*rowBytes + bytesOf(tensor.I32, nIDs) + bytesOf(outType, nIDs, dim),
		// One table, many id sets: 32 sets of 512 random rows span about
		// 16k distinct rows, well beyond an H100/H200's L2 for 4096-wide rows.
		MaxSets: 32,
		Prepare: func(env *Env) (*Runner, error) {
			table, err := env.Shared("table", func() (tensor.Tensor, error) {
				return env.Random(tableType, 0, vocab, dim)
			})
			if err != nil {
				return nil, err
			}
			ids, err := env.Random(tensor.I32, vocab, nIDs)
			if err != nil {
				return nil, err
			}
			dst, err := env.Alloc(outType, nIDs, dim)
			if err != nil {
				return nil, err
			}
			return &Runner{Run: func() error { return env.Dev.Embedding(dst, table, ids) }}, nil
		},
	}
}

// argmaxCase finds the largest logit of rows of a [rows, vocab] F32 tensor.
func argmaxCase(name string, rows, vocab int) Case {
	return Case{
		Name:  name,
		Bytes: bytesOf(tensor.F32, rows, vocab) + bytesOf(tensor.I32, rows),
		Prepare: func(env *Env) (*Runner, error) {
			x, err := env.Random(tensor.F32, 0, rows, vocab)
			if err != nil {
				return nil, err
			}
			dst, err := env.Alloc(tensor.I32, rows)
			if err != nil {
				return nil, err
			}
			return &Runner{Run: func() error { return env.Dev.Argmax(dst, x) }}, nil
		},
	}
}
