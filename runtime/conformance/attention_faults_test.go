package conformance

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// TestAttentionMetadataFaults: starts, lengths, page indices and sequence
// ids whose values are wrong (the shapes are right, so op.CheckAttention
// and op.CheckAppendKV cannot see it). The CPU reports each from the call,
// matching op.ErrInvalidArgument and naming the tensor, the index, the value
// and the bound, and writes nothing; a GPU may report it from the call or
// from the next Sync (matching op.ErrDeviceFault). Each case runs on a
// freshly opened backend, so that a device fault cannot disturb the others.
// The calls start from the valid ones of attention_args_test.go (q [3, 4, 8]
// in sequences of 1 and 2 queries; keys [5, 2, 8] in runs of 2 and 3; a
// paged cache of 4 pages of 2 slots, table {0, 1, 2}, {3, 0, 0}, lengths 3
// and 2; a mask of 6 columns; new tokens of sequences 0 and 1 at positions 3
// and 2).
func TestAttentionMetadataFaults(t *testing.T) {
	ctx := context.Background()
	i32 := func(vals ...int32) []int32 { return vals }
	type fault struct {
		name string
		// set uploads the bad values into a's tensors and returns the call.
		set   func(t *testing.T, a *attnArgs) error
		parts []string // what the CPU's error names
	}
	upload := func(t *testing.T, a *attnArgs, x tensor.Tensor, vals []int32) {
		t.Helper()
		if err := a.b.Upload(x, tensor.I32Bytes(vals)); err != nil {
			t.Fatal(err)
		}
	}
	attn := func(x func(a *attnArgs) tensor.Tensor, vals []int32, paged bool, opts func(c *attnCall)) func(t *testing.T, a *attnArgs) error {
		return func(t *testing.T, a *attnArgs) error {
			if x != nil {
				upload(t, a, x(a), vals)
			}
			c := a.contiguous()
			if paged {
				c = a.paged()
			}
			if opts != nil {
				opts(&c)
			}
			return a.run(c)
		}
	}
	qs := func(a *attnArgs) tensor.Tensor { return a.qs }
	starts := func(a *attnArgs) tensor.Tensor { return a.starts }
	lens := func(a *attnArgs) tensor.Tensor { return a.lens }
	table := func(a *attnArgs) tensor.Tensor { return a.table }
	appendWith := func(x func(a *attnArgs) tensor.Tensor, vals []int32) func(t *testing.T, a *attnArgs) error {
		return func(t *testing.T, a *attnArgs) error {
			upload(t, a, x(a), vals)
			return a.runAppend(a.appendKV())
		}
	}
	faults := []fault{
		{"queryStarts[0] not 0", attn(qs, i32(1, 1, 3), false, nil), []string{"queryStarts[0] = 1"}},
		{"queryStarts decreasing", attn(qs, i32(0, 2, 1), false, nil), []string{"queryStarts[2] = 1", "queryStarts[1] = 2"}},
		{"queryStarts short of totalQ", attn(qs, i32(0, 1, 2), false, nil), []string{"queryStarts[2] = 2", "totalQ = 3"}},
		{"kv.Starts[0] not 0", attn(starts, i32(1, 2, 5), false, nil), []string{"kv.Starts[0] = 1"}},
		{"kv.Starts decreasing", attn(starts, i32(0, 3, 2), false, nil), []string{"kv.Starts[2] = 2", "kv.Starts[1] = 3"}},
		{"kv.Starts beyond the keys", attn(starts, i32(0, 2, 6), false, nil), []string{"kv.Starts[2] = 6", "5 rows"}},
		{"mask narrower than the keys", attn(nil, nil, false, func(c *attnCall) {
			c.opts.Mask = mustView(c.opts.Mask, 0, []int{3, 2}, []int{6, 1})
		}), []string{"2 columns", "sequence 1 has 3 keys"}},
		{"MaxQueryLen too small", attn(nil, nil, false, func(c *attnCall) { c.opts.MaxQueryLen = 1 }),
			[]string{"MaxQueryLen = 1", "sequence 1 has 2 queries"}},
		{"MaxKVLen too small", attn(nil, nil, false, func(c *attnCall) { c.opts.MaxKVLen = 2 }),
			[]string{"MaxKVLen = 2", "sequence 1 has 3 keys"}},
		{"kv.Lens beyond the table", attn(lens, i32(7, 2), true, nil), []string{"kv.Lens[0] = 7", "[0, 6]"}},
		{"kv.Lens negative", attn(lens, i32(3, -1), true, nil), []string{"kv.Lens[1] = -1"}},
		{"page index past the cache", attn(table, i32(0, 4, 2, 3, 0, 0), true, nil), []string{"kv.BlockTable[0, 1] = 4", "4 pages"}},
		{"page index negative", attn(table, i32(0, 1, 2, -2, 0, 0), true, nil), []string{"kv.BlockTable[1, 0] = -2"}},
		{"page index huge", attn(table, i32(0, math.MaxInt32, 2, 3, 0, 0), true, nil), []string{"kv.BlockTable[0, 1] = 2147483647"}},
		{"append: sequence id", appendWith(func(a *attnArgs) tensor.Tensor { return a.seqIDs }, i32(0, 2)), []string{"seqIDs[1] = 2", "[0, 2)"}},
		{"append: negative position", appendWith(func(a *attnArgs) tensor.Tensor { return a.positions }, i32(-1, 2)), []string{"positions[0] = -1"}},
		{"append: position past the table row", appendWith(func(a *attnArgs) tensor.Tensor { return a.positions }, i32(3, 6)),
			[]string{"positions[1] = 6", "[0, 6)"}},
		{"append: page index", appendWith(table, i32(0, 9, 2, 3, 0, 0)), []string{"cache.BlockTable[0, 1] = 9", "4 pages"}},
	}
	for _, tb := range backendsUnderTest() {
		for _, f := range faults {
			t.Run(tb.name+"/"+f.name, func(t *testing.T) {
				b, err := tb.open(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				a := newAttnArgs(t, b)
				// Poison the outputs (dst, LSE, the paged cache) to see writes.
				outputs := []tensor.Tensor{a.dst, a.lse, a.kp, a.vp}
				var before [][]byte
				for _, x := range outputs {
					p := poison(x.DType(), x.NumElems())
					if err := b.Upload(x, p); err != nil {
						t.Fatal(err)
					}
					before = append(before, p)
				}
				err = callSafely(func() error { return f.set(t, a) })
				if tb.name == "cpu" {
					if !errors.Is(err, op.ErrInvalidArgument) {
						t.Fatalf("error %v, want one matching %q", err, op.ErrInvalidArgument)
					}
					for _, p := range f.parts {
						if !strings.Contains(err.Error(), p) {
							t.Errorf("error %q should name %q", err, p)
						}
					}
					for i, x := range outputs {
						after := make([]byte, len(before[i]))
						if err := b.Download(ctx, after, x); err != nil {
							t.Fatal(err)
						}
						if string(after) != string(before[i]) {
							t.Errorf("output %d (%v) was written", i, x)
						}
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

// mustView is x.View, panicking on a test bug (callSafely reports it).
func mustView(x tensor.Tensor, offset int, shape, strides []int) tensor.Tensor {
	v, err := x.View(offset, shape, strides)
	if err != nil {
		panic(err)
	}
	return v
}
