package conformance

import (
	"context"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Valid attention and AppendKV arguments on one backend, for the
// invalid-argument table (invalid_test.go): each invalid case changes one
// thing in a valid call. TestAttentionArgsAreValid checks that the valid
// calls succeed, so that a refused variant is refused for its one change.

// attnArgs holds the tensors: F16 (which every backend's attention takes)
// unless said.
type attnArgs struct {
	b backend.Backend
	// q, dst [3, 4, 8] (2 sequences: 1 and 2 queries); qs I32 [3] = 0, 1, 3.
	q, dst, qs tensor.Tensor
	// qBF16: BF16 [3, 4, 8].
	qBF16 tensor.Tensor
	// k, v [5, 2, 8] with starts I32 [3] = 0, 2, 5 (2 and 3 keys).
	k, v, starts tensor.Tensor
	// kp, vp [4 pages, 2 slots, 2, 8]; table I32 [2, 3] = {0, 1, 2}, {3, 0, 0};
	// lens I32 [2] = 3, 2.
	kp, vp, table, lens tensor.Tensor
	// mask F32 [3, 6]; lse F32 [4, 3].
	mask, lse tensor.Tensor
	// kNew, vNew [2, 2, 8]; seqIDs I32 [2] = 0, 1; positions I32 [2] = 3, 2.
	kNew, vNew, seqIDs, positions tensor.Tensor
	// scratch F16 [512] and scratch32 F32 [256]: room for overlapping views.
	scratch, scratch32 tensor.Tensor
}

// attnCall is one Attention call's arguments.
type attnCall struct {
	dst, q, qs tensor.Tensor
	kv         op.AttentionKV
	opts       op.AttentionOptions
}

// appendCall is one AppendKV call's arguments.
type appendCall struct {
	cache                   op.AttentionKV
	k, v, seqIDs, positions tensor.Tensor
}

func newAttnArgs(t *testing.T, b backend.Backend) *attnArgs {
	t.Helper()
	i32 := func(vals ...int32) []int32 { return vals }
	ints := func(shape []int, vals []int32) tensor.Tensor {
		x := allocZeros(t, b, tensor.I32, shape...)
		if err := b.Upload(x, tensor.I32Bytes(vals)); err != nil {
			t.Fatalf("upload: %v", err)
		}
		return x
	}
	const dt = tensor.F16
	return &attnArgs{
		b:         b,
		q:         allocZeros(t, b, dt, 3, 4, 8),
		dst:       allocZeros(t, b, dt, 3, 4, 8),
		qs:        ints([]int{3}, i32(0, 1, 3)),
		qBF16:     allocZeros(t, b, tensor.BF16, 3, 4, 8),
		k:         allocZeros(t, b, dt, 5, 2, 8),
		v:         allocZeros(t, b, dt, 5, 2, 8),
		starts:    ints([]int{3}, i32(0, 2, 5)),
		kp:        allocZeros(t, b, dt, 4, 2, 2, 8),
		vp:        allocZeros(t, b, dt, 4, 2, 2, 8),
		table:     ints([]int{2, 3}, i32(0, 1, 2, 3, 0, 0)),
		lens:      ints([]int{2}, i32(3, 2)),
		mask:      allocZeros(t, b, tensor.F32, 3, 6),
		lse:       allocZeros(t, b, tensor.F32, 4, 3),
		kNew:      allocZeros(t, b, dt, 2, 2, 8),
		vNew:      allocZeros(t, b, dt, 2, 2, 8),
		seqIDs:    ints([]int{2}, i32(0, 1)),
		positions: ints([]int{2}, i32(3, 2)),
		scratch:   allocZeros(t, b, dt, 512),
		scratch32: allocZeros(t, b, tensor.F32, 256),
	}
}

// contiguous is a valid call over contiguous keys, with a mask and LSE.
func (a *attnArgs) contiguous() attnCall {
	return attnCall{dst: a.dst, q: a.q, qs: a.qs,
		kv:   op.AttentionKV{K: a.k, V: a.v, Starts: a.starts},
		opts: op.AttentionOptions{Causal: true, Mask: a.mask, LSE: a.lse}}
}

// paged is a valid call over the paged cache.
func (a *attnArgs) paged() attnCall {
	return attnCall{dst: a.dst, q: a.q, qs: a.qs,
		kv:   op.AttentionKV{K: a.kp, V: a.vp, BlockTable: a.table, Lens: a.lens},
		opts: op.AttentionOptions{Causal: true, Window: 2, LSE: a.lse}}
}

// appendKV is a valid AppendKV call into the paged cache.
func (a *attnArgs) appendKV() appendCall {
	return appendCall{cache: op.AttentionKV{K: a.kp, V: a.vp, BlockTable: a.table},
		k: a.kNew, v: a.vNew, seqIDs: a.seqIDs, positions: a.positions}
}

func (a *attnArgs) run(c attnCall) error { return a.b.Attention(c.dst, c.q, c.qs, c.kv, c.opts) }

func (a *attnArgs) runAppend(c appendCall) error {
	return a.b.AppendKV(c.cache, c.k, c.v, c.seqIDs, c.positions)
}

// sv is an F16 view of the scratch buffer, sv32 an F32 view of the other.
func (a *attnArgs) sv(t *testing.T, offset int, shape, strides []int) tensor.Tensor {
	return view(t, a.scratch, offset, shape, strides)
}

func (a *attnArgs) sv32(t *testing.T, offset int, shape, strides []int) tensor.Tensor {
	return view(t, a.scratch32, offset, shape, strides)
}

// viewAs is a view of x's buffer with dtype dt (offset in dt's elements).
func viewAs(t *testing.T, x tensor.Tensor, dt tensor.DType, offset int, shape, strides []int) tensor.Tensor {
	t.Helper()
	v, err := tensor.NewView(x.Buffer(), dt, offset, shape, strides)
	if err != nil {
		t.Fatalf("view %v %v %v+%d of %v: %v", dt, shape, strides, offset, x, err)
	}
	return v
}

// attnInvalid is an invalid-argument case: the valid call base (contiguous
// or paged) with one change.
func attnInvalid(name string, want error, paged bool, change func(t *testing.T, e *invalidEnv, a *attnArgs, c *attnCall)) invalidCase {
	return invalidCase{"attention/" + name, want, func(t *testing.T, e *invalidEnv) error {
		a := newAttnArgs(t, e.b)
		c := a.contiguous()
		if paged {
			c = a.paged()
		}
		change(t, e, a, &c)
		return a.run(c)
	}}
}

// appendInvalid is an invalid-argument case of AppendKV: the valid call
// with one change.
func appendInvalid(name string, want error, change func(t *testing.T, e *invalidEnv, a *attnArgs, c *appendCall)) invalidCase {
	return invalidCase{"append-kv/" + name, want, func(t *testing.T, e *invalidEnv) error {
		a := newAttnArgs(t, e.b)
		c := a.appendKV()
		change(t, e, a, &c)
		return a.runAppend(c)
	}}
}

// TestAttentionArgsAreValid: the valid calls the invalid cases start from
// succeed on every backend.
func TestAttentionArgsAreValid(t *testing.T) {
	for _, nb := range openAll(t) {
		a := newAttnArgs(t, nb.b)
		for name, call := range map[string]func() error{
			"contiguous": func() error { return a.run(a.contiguous()) },
			"paged":      func() error { return a.run(a.paged()) },
			"append-kv":  func() error { return a.runAppend(a.appendKV()) },
		} {
			if err := callSafely(call); err != nil {
				t.Errorf("%s: the valid %s call: %v", nb.name, name, err)
			}
		}
		if err := nb.b.Sync(context.Background()); err != nil {
			t.Errorf("%s: Sync after the valid calls: %v", nb.name, err)
		}
	}
}
