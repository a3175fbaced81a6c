package cpu

import (
	"context"
	"errors"
	"math"
	"testing"
	"unsafe"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

func newTestBackend(t testing.TB, opts Options) *Backend {
	t.Helper()
	b := New(opts)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// floats allocates a contiguous tensor of dt and shape holding vals (rounded
// to dt).
func floats(t testing.TB, b *Backend, dt tensor.DType, vals []float32, shape ...int) tensor.Tensor {
	t.Helper()
	x, err := b.Alloc(dt, shape...)
	if err != nil {
		t.Fatalf("Alloc(%v, %v): %v", dt, shape, err)
	}
	raw, ok := tensor.EncodeFloats(dt, vals)
	if !ok {
		t.Fatalf("cannot encode %v", dt)
	}
	if err := b.Upload(x, raw); err != nil {
		t.Fatalf("Upload: %v", err)
	}
	return x
}

// ints allocates a contiguous I32 tensor holding vals.
func ints(t testing.TB, b *Backend, vals []int32, shape ...int) tensor.Tensor {
	t.Helper()
	x, err := b.Alloc(tensor.I32, shape...)
	if err != nil {
		t.Fatalf("Alloc(I32, %v): %v", shape, err)
	}
	if err := b.Upload(x, tensor.I32Bytes(append([]int32(nil), vals...))); err != nil {
		t.Fatalf("Upload: %v", err)
	}
	return x
}

// alloc allocates a tensor filled with NaN-like garbage (0xff bytes), so that
// elements an op fails to write show up.
func alloc(t testing.TB, b *Backend, dt tensor.DType, shape ...int) tensor.Tensor {
	t.Helper()
	x, err := b.Alloc(dt, shape...)
	if err != nil {
		t.Fatalf("Alloc(%v, %v): %v", dt, shape, err)
	}
	raw := make([]byte, x.SizeBytes())
	for i := range raw {
		raw[i] = 0xff
	}
	if err := b.Upload(x, raw); err != nil {
		t.Fatalf("Upload: %v", err)
	}
	return x
}

// read returns the elements of x (any layout) in row-major order as float32,
// gathering them element by element from the buffer's bytes.
func read(t testing.TB, b *Backend, x tensor.Tensor) []float32 {
	t.Helper()
	raw := rawBuffer(t, b, x)
	out := make([]float32, 0, x.NumElems())
	forEachIndex(x, func(elem int) {
		switch x.DType() {
		case tensor.F32:
			out = append(out, math.Float32frombits(le32(raw[4*elem:])))
		case tensor.F16:
			out = append(out, tensor.F16ToF32(le16(raw[2*elem:])))
		case tensor.BF16:
			out = append(out, tensor.BF16ToF32(le16(raw[2*elem:])))
		case tensor.I32:
			out = append(out, float32(int32(le32(raw[4*elem:]))))
		default:
			t.Fatalf("read: dtype %v", x.DType())
		}
	})
	return out
}

// readInts returns the elements of an I32 tensor in row-major order.
func readInts(t testing.TB, b *Backend, x tensor.Tensor) []int32 {
	t.Helper()
	raw := rawBuffer(t, b, x)
	var out []int32
	forEachIndex(x, func(elem int) { out = append(out, int32(le32(raw[4*elem:]))) })
	return out
}

// rawBuffer is a copy of the whole buffer x views.
func rawBuffer(t testing.TB, b *Backend, x tensor.Tensor) []byte {
	t.Helper()
	buf := x.Buffer().(*Buffer)
	whole, err := tensor.New(buf, tensor.I8, int(buf.SizeBytes()))
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, buf.SizeBytes())
	if err := b.Download(context.Background(), raw, whole); err != nil {
		t.Fatalf("Download: %v", err)
	}
	return raw
}

// forEachIndex calls fn with the element index (offset plus strides) of
// every element of x in row-major order.
func forEachIndex(x tensor.Tensor, fn func(elem int)) {
	idx := make([]int, x.Rank())
	for range x.NumElems() {
		elem := x.Offset()
		for i, v := range idx {
			elem += v * x.Stride(i)
		}
		fn(elem)
		for i := x.Rank() - 1; i >= 0; i-- {
			idx[i]++
			if idx[i] < x.Dim(i) {
				break
			}
			idx[i] = 0
		}
	}
}

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// near compares got with want elementwise: |got − want| ≤ tol·max(1, |want|).
func near(t testing.TB, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values %v, want %d %v", what, len(got), got, len(want), want)
	}
	for i, w := range want {
		g := float64(got[i])
		var ok bool
		switch {
		case math.IsNaN(w):
			ok = math.IsNaN(g)
		case math.IsInf(w, 0):
			ok = g == w
		default:
			ok = math.Abs(g-w) <= tol*math.Max(1, math.Abs(w)) // false for a NaN g
		}
		if !ok {
			t.Errorf("%s[%d] = %v, want %v (all: %v)", what, i, g, w, got)
		}
	}
}

// exact compares got with want bit for bit (as float32 values).
func exact(t testing.TB, what string, got []float32, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values %v, want %d %v", what, len(got), got, len(want), want)
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("%s[%d] = %v, want %v (all: %v)", what, i, got[i], want[i], got)
		}
	}
}

// wantErr fails unless err matches target.
func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want one matching %q", what, err, target)
	}
}

// addressOf is the address of data's first byte.
func addressOf(data []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(data))) }
