package cpu

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

func TestAllocRejectsBadShapes(t *testing.T) {
	b := newTestBackend(t, Options{})
	for _, tc := range []struct {
		dt    tensor.DType
		shape []int
	}{
		{tensor.F32, []int{-1}},
		{tensor.F32, []int{1, 2, 3, 4, 5}},
		{tensor.F32, nil},
		{tensor.Q4_0, []int{2, 31}}, // not a whole number of 32-element blocks
		{tensor.Invalid, []int{4}},
	} {
		_, err := b.Alloc(tc.dt, tc.shape...)
		wantErr(t, "Alloc "+tc.dt.String(), err, op.ErrInvalidArgument)
	}
}

func TestFreeAndUseAfterFree(t *testing.T) {
	b := newTestBackend(t, Options{})
	x := floats(t, b, tensor.F32, []float32{1, 2}, 2)
	view, err := x.Slice(0, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	dst := alloc(t, b, tensor.F32, 1)
	if err := b.Free(x); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "second Free", b.Free(x), op.ErrClosed)
	wantErr(t, "Free of a view of a freed buffer", b.Free(view), op.ErrClosed)
	wantErr(t, "op on a view of a freed buffer", b.SiLU(dst, view), op.ErrClosed)
	wantErr(t, "Upload into a freed tensor", b.Upload(x, make([]byte, 8)), op.ErrClosed)
	wantErr(t, "Download from a freed tensor", b.Download(context.Background(), make([]byte, 8), x), op.ErrClosed)
	wantErr(t, "Free of the zero Tensor", b.Free(tensor.Tensor{}), op.ErrInvalidArgument)
}

// fakeBuffer is a tensor.Buffer of no backend.
type fakeBuffer struct{ n int64 }

func (f fakeBuffer) SizeBytes() int64 { return f.n }

func TestForeignTensors(t *testing.T) {
	b := newTestBackend(t, Options{})
	other := newTestBackend(t, Options{})
	mine := alloc(t, b, tensor.F32, 4)
	theirs := alloc(t, other, tensor.F32, 4)
	wantErr(t, "op with another backend's input", b.SiLU(mine, theirs), op.ErrForeignTensor)
	wantErr(t, "op with another backend's output", b.SiLU(theirs, mine), op.ErrForeignTensor)
	wantErr(t, "Free of another backend's tensor", b.Free(theirs), op.ErrForeignTensor)
	fake, err := tensor.New(fakeBuffer{16}, tensor.F32, 4)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Add(mine, mine, fake)
	wantErr(t, "op with a non-CPU buffer", err, op.ErrForeignTensor)
	if err != nil && !strings.Contains(err.Error(), "b:") {
		t.Errorf("error %q should name the argument b", err)
	}
}

func TestUploadDownloadChecks(t *testing.T) {
	b := newTestBackend(t, Options{})
	ctx := context.Background()
	x := alloc(t, b, tensor.F16, 2, 3)
	err := b.Upload(x, make([]byte, 10))
	wantErr(t, "Upload of the wrong size", err, op.ErrInvalidArgument)
	if err != nil && (!strings.Contains(err.Error(), "10") || !strings.Contains(err.Error(), "12")) {
		t.Errorf("error %q should give both sizes (10 found, 12 expected)", err)
	}
	err = b.Download(ctx, make([]byte, 13), x)
	wantErr(t, "Download of the wrong size", err, op.ErrInvalidArgument)
	xt, _ := x.Transpose(0, 1)
	wantErr(t, "Upload into a transposed view", b.Upload(xt, make([]byte, 12)), op.ErrInvalidArgument)
	wantErr(t, "Download from a transposed view", b.Download(ctx, make([]byte, 12), xt), op.ErrInvalidArgument)
	wantErr(t, "Upload into the zero Tensor", b.Upload(tensor.Tensor{}, nil), op.ErrInvalidArgument)

	// A contiguous slice with an offset uploads and downloads its own bytes.
	row1, _ := x.Slice(0, 1, 2)
	raw, _ := tensor.EncodeFloats(tensor.F16, []float32{4, 5, 6})
	if err := b.Upload(row1, raw); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 6)
	if err := b.Download(ctx, got, row1); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(raw) {
		t.Errorf("round trip through a slice: got %v, want %v", got, raw)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Download(cancelled, got, row1); !errors.Is(err, context.Canceled) {
		t.Errorf("Download with a cancelled context: %v", err)
	}
	if err := b.Sync(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("Sync with a cancelled context: %v", err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Errorf("Sync: %v", err)
	}
}

func TestClose(t *testing.T) {
	b := New(Options{})
	x := alloc(t, b, tensor.F32, 4)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	_, err := b.Alloc(tensor.F32, 4)
	wantErr(t, "Alloc after Close", err, op.ErrClosed)
	wantErr(t, "op after Close", b.SiLU(x, x), op.ErrClosed)
	wantErr(t, "Free after Close", b.Free(x), op.ErrClosed)
	wantErr(t, "Upload after Close", b.Upload(x, make([]byte, 16)), op.ErrClosed)
	wantErr(t, "Sync after Close", b.Sync(context.Background()), op.ErrClosed)
	_, err = b.Wrap(make([]byte, 16), tensor.F32, 4)
	wantErr(t, "Wrap after Close", err, op.ErrClosed)
}

func TestMemoryLimitAndStats(t *testing.T) {
	b := newTestBackend(t, Options{MemoryLimitBytes: 1 << 20})
	_, err := b.Alloc(tensor.F32, 1<<19) // 2 MiB
	wantErr(t, "Alloc beyond the limit", err, op.ErrOutOfMemory)
	x, err := b.Alloc(tensor.F32, 1<<16) // 256 KiB
	if err != nil {
		t.Fatal(err)
	}
	s := b.MemoryStats()
	if s.InUseBytes < 1<<18 || s.LimitBytes != 1<<20 || s.OutOfMemory != 1 {
		t.Errorf("stats after one allocation of 256 KiB and one refusal: %+v", s)
	}
	if err := b.Free(x); err != nil {
		t.Fatal(err)
	}
	if s := b.MemoryStats(); s.InUseBytes != 0 || s.CachedBytes < 1<<18 {
		t.Errorf("stats after Free: %+v", s)
	}
	// Allocations are 64-byte aligned.
	y, err := b.Alloc(tensor.F16, 3)
	if err != nil {
		t.Fatal(err)
	}
	data, err := b.Bytes(y)
	if err != nil {
		t.Fatal(err)
	}
	if addr := addressOf(data); addr%64 != 0 {
		t.Errorf("buffer at %#x is not 64-byte aligned", addr)
	}
}

func TestWrapAndBytes(t *testing.T) {
	b := newTestBackend(t, Options{})
	host, _ := tensor.EncodeFloats(tensor.F32, []float32{1, 2, 3, 4})
	w, err := b.Wrap(host, tensor.F32, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	dst := alloc(t, b, tensor.F32, 2, 2)
	if err := b.Add(dst, w, w); err != nil {
		t.Fatal(err)
	}
	exact(t, "add of a wrapped tensor", read(t, b, dst), []float32{2, 4, 6, 8})
	// Ops write into wrapped memory in place.
	if err := b.Copy(w, dst); err != nil {
		t.Fatal(err)
	}
	exact(t, "host memory after a copy into it", tensor.BytesF32(host), []float32{2, 4, 6, 8})
	// Bytes aliases the tensor: what Upload writes shows through.
	view, err := b.Bytes(dst)
	if err != nil {
		t.Fatal(err)
	}
	up, _ := tensor.EncodeFloats(tensor.F32, []float32{9, 8, 7, 6})
	if err := b.Upload(dst, up); err != nil {
		t.Fatal(err)
	}
	exact(t, "Bytes after Upload", tensor.BytesF32(view), []float32{9, 8, 7, 6})
	if err := b.Free(w); err != nil {
		t.Errorf("Free of a wrapped tensor: %v", err)
	}
	wantErr(t, "op on a freed wrapped tensor", b.Copy(dst, w), op.ErrClosed)

	_, err = b.Wrap(host[:15], tensor.F32, 2, 2)
	wantErr(t, "Wrap of too little data", err, op.ErrInvalidArgument)
	// F32 data must be 4-byte aligned: host is (Go's allocator aligns it), host[2:] is not.
	big := make([]byte, 64)
	_, err = b.Wrap(big[2:], tensor.F32, 4)
	wantErr(t, "Wrap of misaligned F32 data", err, op.ErrInvalidArgument)
	// F16 needs only 2 bytes; viewing that buffer as F32 is then refused by ops.
	h, err := b.Wrap(big[2:], tensor.F16, 8)
	if err != nil {
		t.Fatal(err)
	}
	asF32, err := tensor.NewView(h.Buffer(), tensor.F32, 0, []int{4}, []int{1})
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "op on a misaligned F32 view", b.SiLU(dst.Buffer().(*Buffer).mustView(t, 4), asF32), op.ErrInvalidArgument)
	_, err = b.Bytes(h)
	if err != nil {
		t.Errorf("Bytes of a wrapped F16 tensor: %v", err)
	}
}

// mustView is a contiguous F32 [n] view at the start of buf.
func (buf *Buffer) mustView(t *testing.T, n int) tensor.Tensor {
	t.Helper()
	v, err := tensor.New(buf, tensor.F32, n)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestWrapReadOnly(t *testing.T) {
	b := newTestBackend(t, Options{})
	host, _ := tensor.EncodeFloats(tensor.F32, []float32{1, 2, 3, 4})
	r, err := b.WrapReadOnly(host, tensor.F32, 4)
	if err != nil {
		t.Fatal(err)
	}
	dst := alloc(t, b, tensor.F32, 4)
	if err := b.Copy(dst, r); err != nil {
		t.Errorf("reading a read-only tensor: %v", err)
	}
	wantErr(t, "op writing a read-only tensor", b.Copy(r, dst), op.ErrInvalidArgument)
	wantErr(t, "Upload into a read-only tensor", b.Upload(r, make([]byte, 16)), op.ErrInvalidArgument)
	exact(t, "read-only memory", tensor.BytesF32(host), []float32{1, 2, 3, 4})
}

// TestOpsRefuseBadArguments calls every op with missing and mismatched
// tensors: each must return an error matching op.ErrInvalidArgument, never
// panic.
func TestOpsRefuseBadArguments(t *testing.T) {
	b := newTestBackend(t, Options{})
	var z tensor.Tensor
	f := alloc(t, b, tensor.F32, 2, 4)
	h := alloc(t, b, tensor.F16, 2, 4)
	other := alloc(t, b, tensor.F32, 3, 4)
	ids := ints(t, b, []int32{0, 1}, 2)
	calls := map[string]error{
		"copy missing":        b.Copy(z, f),
		"copy I32 to F32":     b.Copy(f, alloc(t, b, tensor.I32, 2, 4)),
		"add missing":         b.Add(f, z, f),
		"add mixed dtypes":    b.Add(f, f, h),
		"add shapes":          b.Add(f, f, other),
		"mul missing dst":     b.Mul(z, f, f),
		"silu shapes":         b.SiLU(f, other),
		"gelu dtype":          b.GELU(f, h, op.GELUOptions{}),
		"softmax missing":     b.Softmax(f, z, op.SoftmaxOptions{}),
		"rmsnorm weight":      b.RMSNorm(f, f, h, op.NormOptions{}),
		"rmsnorm eps":         b.RMSNorm(f, f, z, op.NormOptions{Eps: -1}),
		"layernorm bias":      b.LayerNorm(f, f, z, other, op.NormOptions{}),
		"rope rank":           b.RoPE(f, f, ids, op.RoPEOptions{}),
		"embedding table":     b.Embedding(f, z, ids),
		"embedding ids dtype": b.Embedding(f, other, f),
		"argmax dst dtype":    b.Argmax(alloc(t, b, tensor.F32, 2), f),
		"argmax missing":      b.Argmax(z, z),
	}
	for name, err := range calls {
		wantErr(t, name, err, op.ErrInvalidArgument)
	}
}

// TestOutputsMustNotOverlapParameters: dst partly overlapping a weight,
// position or table must be refused, not computed in an order-dependent way.
func TestOutputsMustNotOverlapParameters(t *testing.T) {
	b := newTestBackend(t, Options{})
	buf := alloc(t, b, tensor.F32, 16)
	dst, _ := buf.View(0, []int{2, 4}, []int{4, 1})
	w, _ := buf.View(2, []int{4}, []int{1})
	x := alloc(t, b, tensor.F32, 2, 4)
	wantErr(t, "rmsnorm dst over weight", b.RMSNorm(dst, x, w, op.NormOptions{}), op.ErrInvalidArgument)
	table, _ := buf.View(4, []int{3, 4}, []int{4, 1})
	ids := ints(t, b, []int32{0, 1}, 2)
	wantErr(t, "embedding dst over table", b.Embedding(dst, table, ids), op.ErrInvalidArgument)
}

// TestConcurrentAllocFree: Alloc, Free and MemoryStats are safe from many
// goroutines at once (run under -race).
func TestConcurrentAllocFree(t *testing.T) {
	b := newTestBackend(t, Options{MemoryLimitBytes: 64 << 20})
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 50 {
				x, err := b.Alloc(tensor.F32, 1+(g*50+i)%300)
				if err != nil {
					errs <- err
					return
				}
				_ = b.MemoryStats()
				if err := b.Free(x); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if s := b.MemoryStats(); s.InUseBytes != 0 || s.Allocs != 400 {
		t.Errorf("after 400 allocations and frees: %+v", s)
	}
}
