package conformance

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// opCase is one entry of the conformance table: host inputs, an output
// layout, how to call the op, and the naive reference result.
type opCase struct {
	op   string // op.NameAdd, ...
	name string
	// inputs in the op's argument order; nil for an optional tensor left out.
	inputs []*hostTensor
	// dst is the output's layout over a poisoned buffer; nil when the op runs
	// in place on inputs[inPlace].
	dst     *hostTensor
	inPlace int
	run     func(b backend.Backend, dst tensor.Tensor, in []tensor.Tensor) error
	// want is the reference, row-major over the output's shape.
	want []float64
	// tolerance, when not nil, replaces For(op, dtype) for ops whose
	// allowance depends on the data (matrix products): the CPU's against
	// the reference (vsCPU false), another backend's against the CPU's.
	tolerance func(vsCPU bool) Tolerance
}

// output is the host tensor the op writes.
func (c *opCase) output() *hostTensor {
	if c.dst == nil {
		return c.inputs[c.inPlace]
	}
	return c.dst
}

// TestOps runs every case on every backend: the CPU against the naive
// reference, every other backend against the CPU's result.
//
// A case is named by what it tests: op, dtypes, shape, layouts of its inputs
// and output ("contiguous", "padded": a slice of a bigger buffer at an offset,
// "transposed": innermost stride not 1, "permuted": outer dimensions swapped,
// "expanded": stride-0 broadcast), options, and "in-place". Run one with
// go test -run 'TestOps/<name>'.
func TestOps(t *testing.T) {
	backends := openAll(t)
	for _, spec := range allCases() {
		t.Run(spec.name, func(t *testing.T) {
			c := spec.generate()
			out := c.output()
			tol := For(c.op, out.dt)
			var cpuGot []float64
			for i, nb := range backends {
				got, err := runCase(nb.b, c)
				if err != nil {
					t.Errorf("%s: %v", nb.name, err)
					continue
				}
				want, against := c.want, "the float64 reference"
				if c.tolerance != nil {
					tol = c.tolerance(i > 0)
				}
				if i > 0 {
					if cpuGot == nil {
						continue // the CPU failed: nothing to compare with
					}
					want, against = cpuGot, "cpu"
				}
				if r := Compare(got, want, out.dt, out.shape, tol); !r.OK() {
					t.Errorf("%s against %s: %v", nb.name, against, r)
				}
				if i == 0 {
					cpuGot = got
				}
			}
		})
	}
}

// runCase allocates and uploads a case's tensors on b, runs the op, checks
// that nothing outside the output's view changed, and returns the output's
// elements in row-major order. Everything it allocates is freed.
func runCase(b backend.Backend, c *opCase) (got []float64, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	ctx := context.Background()
	var allocated []tensor.Tensor
	defer func() {
		for _, x := range allocated {
			if ferr := b.Free(x); ferr != nil && err == nil {
				err = fmt.Errorf("free: %w", ferr)
			}
		}
	}()
	upload := func(h *hostTensor) (whole, view tensor.Tensor, err error) {
		whole, err = b.Alloc(h.dt, h.baseElems())
		if err != nil {
			return whole, view, fmt.Errorf("alloc: %w", err)
		}
		allocated = append(allocated, whole)
		if err := b.Upload(whole, h.base); err != nil {
			return whole, view, fmt.Errorf("upload: %w", err)
		}
		view, err = tensor.NewView(whole.Buffer(), h.dt, h.offset, h.shape, h.strides)
		if err != nil {
			return whole, view, fmt.Errorf("view: %w", err)
		}
		return whole, view, nil
	}

	ins := make([]tensor.Tensor, len(c.inputs))
	wholes := make([]tensor.Tensor, len(c.inputs))
	for i, h := range c.inputs {
		if h == nil {
			continue
		}
		if wholes[i], ins[i], err = upload(h); err != nil {
			return nil, fmt.Errorf("input %d: %w", i, err)
		}
	}
	out := c.output()
	var dstWhole, dst tensor.Tensor
	if c.dst == nil {
		dstWhole, dst = wholes[c.inPlace], ins[c.inPlace]
	} else if dstWhole, dst, err = upload(c.dst); err != nil {
		return nil, fmt.Errorf("dst: %w", err)
	}

	if err := c.run(b, dst, ins); err != nil {
		return nil, fmt.Errorf("%s: %w", c.op, err)
	}
	raw := make([]byte, len(out.base))
	if err := b.Download(ctx, raw, dstWhole); err != nil {
		return nil, fmt.Errorf("download: %w", err)
	}

	elems := out.elemIndices()
	inView := make([]bool, out.baseElems())
	for _, e := range elems {
		inView[e] = true
	}
	size := out.dt.BlockBytes()
	for e, ok := range inView {
		if !ok && !bytes.Equal(raw[e*size:(e+1)*size], out.base[e*size:(e+1)*size]) {
			return nil, fmt.Errorf("wrote buffer element %d, outside dst's view (shape %v, strides %v, offset %d)",
				e, out.shape, out.strides, out.offset)
		}
	}
	return decodeElems(out.dt, raw, elems), nil
}

// TestCaseNamesAreUnique: a name identifies a case and seeds its data.
func TestCaseNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, spec := range allCases() {
		if seen[spec.name] {
			t.Errorf("two cases named %q", spec.name)
		}
		seen[spec.name] = true
	}
	if len(seen) < 500 {
		t.Errorf("only %d cases", len(seen))
	}
}
