package tensor

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

// sizedBuffer is a Buffer of a given size; tensors never touch its bytes.
type sizedBuffer int64

func (b sizedBuffer) SizeBytes() int64 { return int64(b) }

func mustNew(t *testing.T, buf Buffer, dt DType, shape ...int) Tensor {
	t.Helper()
	x, err := New(buf, dt, shape...)
	if err != nil {
		t.Fatalf("New(%v, %v): %v", dt, shape, err)
	}
	return x
}

// wantErr checks that err is non-nil and mentions each of the fragments.
func wantErr(t *testing.T, what string, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error", what)
		return
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("%s: error %q does not mention %q", what, err, f)
		}
	}
}

func TestNewContiguous(t *testing.T) {
	x := mustNew(t, sizedBuffer(2*3*4*4), F32, 2, 3, 4)
	if x.DType() != F32 || x.Rank() != 3 || !reflect.DeepEqual(x.Shape(), []int{2, 3, 4}) ||
		!reflect.DeepEqual(x.Strides(), []int{12, 4, 1}) || x.Offset() != 0 {
		t.Errorf("got %v shape %v strides %v", x, x.Shape(), x.Strides())
	}
	if x.NumElems() != 24 || x.Rows() != 6 || x.SizeBytes() != 96 || !x.IsContiguous() || x.HasOverlap() || x.IsZero() {
		t.Errorf("NumElems %d Rows %d SizeBytes %d contiguous %v overlap %v", x.NumElems(), x.Rows(), x.SizeBytes(), x.IsContiguous(), x.HasOverlap())
	}
	if x.Dim(-1) != 4 || x.Dim(0) != 2 || x.Stride(-2) != 4 || x.Stride(0) != 12 {
		t.Errorf("Dim/Stride with negative indices")
	}
	// Shape and Strides return copies.
	x.Shape()[0] = 99
	x.Strides()[0] = 99
	if x.Dim(0) != 2 || x.Stride(0) != 12 {
		t.Errorf("Shape/Strides exposed internal state")
	}
	if s := x.String(); s != "F32[2 3 4]" {
		t.Errorf("String() = %q", s)
	}
}

func TestNewErrors(t *testing.T) {
	_, err := New(sizedBuffer(95), F32, 2, 3, 4)
	wantErr(t, "buffer one byte short", err, "96", "95")
	_, err = New(nil, F32, 2)
	wantErr(t, "nil buffer", err, "nil buffer")
	_, err = New(sizedBuffer(100), Invalid, 2)
	wantErr(t, "invalid dtype", err, "invalid dtype")
	_, err = New(sizedBuffer(100), F32)
	wantErr(t, "rank 0", err, "rank 0")
	_, err = New(sizedBuffer(1000), F32, 1, 2, 3, 4, 5)
	wantErr(t, "rank 5", err, "rank 5")
	_, err = New(sizedBuffer(100), F32, 2, -1)
	wantErr(t, "negative dimension", err, "negative dimension -1")
	_, err = New(sizedBuffer(100), F32, math.MaxInt/2, 4)
	wantErr(t, "overflowing shape", err, "overflows")
}

// TestNewHugeLayoutsAreErrors: sizes whose byte or element counts overflow
// 64 bits must fail, not wrap to a small number that passes the size check.
func TestNewHugeLayoutsAreErrors(t *testing.T) {
	// 2^62 F32 elements need 2^64 bytes.
	_, err := New(sizedBuffer(1<<20), F32, 1<<62)
	wantErr(t, "2^62 F32 elements", err, "overflow")
	_, err = NewView(sizedBuffer(1<<20), F32, 0, []int{1 << 62}, []int{1})
	wantErr(t, "2^62 F32 elements as a view", err, "overflow")
	// A broadcast view with 2^64 elements has a tiny extent but an element
	// count that does not fit in an int.
	_, err = NewView(sizedBuffer(4), F32, 0, []int{1 << 32, 1 << 32}, []int{0, 0})
	wantErr(t, "2^64-element broadcast", err, "overflows")
	_, err = NewView(sizedBuffer(1<<20), F32, 0, []int{2, math.MaxInt/2 + 1}, []int{math.MaxInt / 2, 1})
	wantErr(t, "extent past MaxInt64", err, "overflow")
	_, err = SizeBytes(F32, 1<<62)
	wantErr(t, "SizeBytes of 2^62 F32", err, "overflow")
}

func TestEmptyTensors(t *testing.T) {
	x, err := New(sizedBuffer(0), F16, 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	if x.NumElems() != 0 || x.Rows() != 0 || x.SizeBytes() != 0 {
		t.Errorf("empty tensor: NumElems %d Rows %d SizeBytes %d", x.NumElems(), x.Rows(), x.SizeBytes())
	}
	y, err := New(sizedBuffer(0), Q4_K, 3, 0)
	if err != nil || y.Rows() != 0 {
		t.Errorf("empty Q4_K tensor: %v, rows %d", err, y.Rows())
	}
	var zero Tensor
	if !zero.IsZero() || zero.Rank() != 0 || zero.NumElems() != 0 || zero.Rows() != 0 || zero.Buffer() != nil || zero.ByteOffset() != 0 {
		t.Errorf("zero Tensor: %+v", zero)
	}
	if _, err := zero.Slice(0, 0, 0); err == nil {
		t.Errorf("Slice of the zero Tensor succeeded")
	}
	if _, err := zero.Reshape(1); err == nil {
		t.Errorf("Reshape of the zero Tensor succeeded")
	}
}

func TestNewViewBounds(t *testing.T) {
	buf := sizedBuffer(40) // 10 F32
	// A 2x3 view with row stride 4 at offset 3: last element 3 + 4 + 2 = 9.
	x, err := NewView(buf, F32, 3, []int{2, 3}, []int{4, 1})
	if err != nil {
		t.Fatal(err)
	}
	if x.IsContiguous() || x.HasOverlap() || x.ByteOffset() != 12 {
		t.Errorf("view: contiguous %v overlap %v byte offset %d", x.IsContiguous(), x.HasOverlap(), x.ByteOffset())
	}
	if s := x.String(); s != "F32[2 3]{[4 1]}+3" {
		t.Errorf("String() = %q", s)
	}
	// One further and it runs past the buffer.
	_, err = NewView(buf, F32, 4, []int{2, 3}, []int{4, 1})
	wantErr(t, "view past the end", err, "44", "40")
	_, err = NewView(buf, F32, -1, []int{2}, []int{1})
	wantErr(t, "negative offset", err, "negative offset")
	_, err = NewView(buf, F32, 0, []int{2}, []int{-1})
	wantErr(t, "negative stride", err, "negative stride")
	_, err = NewView(buf, F32, 0, []int{2, 2}, []int{1})
	wantErr(t, "stride count", err, "1 strides")
	// An empty view needs no bytes, wherever it starts.
	if _, err := NewView(buf, F32, 1000, []int{0, 3}, []int{3, 1}); err != nil {
		t.Errorf("empty view far past the end: %v", err)
	}
}

func TestQuantizedLayoutRules(t *testing.T) {
	buf := sizedBuffer(4 * 144) // four Q4_K blocks
	x, err := New(buf, Q4_K, 2, 512)
	if err != nil {
		t.Fatal(err)
	}
	if x.SizeBytes() != 576 || x.Rows() != 2 {
		t.Errorf("Q4_K [2 512]: SizeBytes %d Rows %d", x.SizeBytes(), x.Rows())
	}
	_, err = New(buf, Q4_K, 2, 500)
	wantErr(t, "row not a whole number of blocks", err, "500", "256")
	_, err = New(sizedBuffer(5*144), Q4_K, 2, 512+256)
	wantErr(t, "buffer too small for blocks", err, "864", "720")
	_, err = NewView(buf, Q4_K, 0, []int{256, 2}, []int{1, 256})
	wantErr(t, "transposed quantized layout", err, "multiple of the 256-element block")
	_, err = NewView(buf, Q4_K, 0, []int{2, 256}, []int{256, 2})
	wantErr(t, "inner stride 2", err, "contiguous along its innermost dimension")
	_, err = NewView(buf, Q4_K, 32, []int{1, 256}, []int{256, 1})
	wantErr(t, "offset inside a block", err, "offset 32")
	_, err = NewView(buf, Q4_K, 0, []int{2, 256}, []int{300, 1})
	wantErr(t, "row stride inside a block", err, "stride 300")
	// Row 1 of the [2 512] tensor starts at block 2: byte 288.
	row, err := x.Slice(0, 1, 2)
	if err != nil || row.ByteOffset() != 288 || row.Offset() != 512 {
		t.Errorf("row 1: %v, byte offset %d, offset %d", err, row.ByteOffset(), row.Offset())
	}
	// Slicing along the row works at block boundaries only.
	if half, err := x.Slice(1, 256, 512); err != nil || half.ByteOffset() != 144 {
		t.Errorf("second block of each row: %v, byte offset %d", err, half.ByteOffset())
	}
	_, err = x.Slice(1, 0, 100)
	wantErr(t, "slice inside a block", err, "100")
	_, err = x.Transpose(0, 1)
	wantErr(t, "transpose of a quantized tensor", err, "Q4_K")
	// A broadcast of one Q8_0 row over 3 rows: outer stride 0 is a multiple
	// of the block.
	q8 := mustNew(t, sizedBuffer(34), Q8_0, 1, 32)
	if b, err := q8.Expand(3, 32); err != nil || !b.HasOverlap() {
		t.Errorf("Q8_0 broadcast: %v, overlap %v", err, b.HasOverlap())
	}
}

func TestSlice(t *testing.T) {
	x := mustNew(t, sizedBuffer(4*24), F32, 2, 3, 4)
	s, err := x.Slice(1, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Shape(), []int{2, 2, 4}) || !reflect.DeepEqual(s.Strides(), []int{12, 4, 1}) || s.Offset() != 4 {
		t.Errorf("Slice(1, 1, 3): shape %v strides %v offset %d", s.Shape(), s.Strides(), s.Offset())
	}
	if s.IsContiguous() {
		t.Errorf("a middle slice of dimension 1 reported contiguous")
	}
	if inner, _ := x.Slice(-1, 2, 4); inner.Offset() != 2 || inner.Dim(-1) != 2 {
		t.Errorf("Slice(-1, 2, 4): offset %d dim %d", inner.Offset(), inner.Dim(-1))
	}
	if first, _ := x.Slice(0, 0, 1); !first.IsContiguous() {
		t.Errorf("the first outer slice should be contiguous")
	}
	if empty, err := x.Slice(2, 4, 4); err != nil || empty.NumElems() != 0 {
		t.Errorf("empty slice at the end: %v, %d elements", err, empty.NumElems())
	}
	for _, c := range []struct{ dim, start, end int }{{3, 0, 1}, {-4, 0, 1}, {0, -1, 1}, {0, 1, 0}, {2, 0, 5}} {
		_, err := x.Slice(c.dim, c.start, c.end)
		wantErr(t, "bad slice", err, "out of range")
	}
}

func TestTranspose(t *testing.T) {
	x := mustNew(t, sizedBuffer(4*6), F16, 2, 3)
	y, err := x.Transpose(0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(y.Shape(), []int{3, 2}) || !reflect.DeepEqual(y.Strides(), []int{1, 3}) {
		t.Errorf("transpose: shape %v strides %v", y.Shape(), y.Strides())
	}
	if y.IsContiguous() || y.InnerContiguous() || y.HasOverlap() {
		t.Errorf("transpose: contiguous %v inner %v overlap %v", y.IsContiguous(), y.InnerContiguous(), y.HasOverlap())
	}
	if _, err := x.Transpose(0, 2); err == nil {
		t.Errorf("transpose of dimension 2 of a rank-2 tensor succeeded")
	}
	if _, err := x.Transpose(-3, 0); err == nil {
		t.Errorf("transpose of dimension -3 of a rank-2 tensor succeeded")
	}
}

func TestReshape(t *testing.T) {
	x := mustNew(t, sizedBuffer(4*24), F32, 2, 3, 4)
	y, err := x.Reshape(6, 4)
	if err != nil || !reflect.DeepEqual(y.Strides(), []int{4, 1}) {
		t.Fatalf("Reshape(6, 4): %v, strides %v", err, y.Strides())
	}
	_, err = x.Reshape(5, 5)
	wantErr(t, "reshape to a different count", err, "24", "25")
	tr, _ := x.Transpose(1, 2)
	_, err = tr.Reshape(24)
	wantErr(t, "reshape of a transposed view", err, "non-contiguous")
	_, err = x.Reshape(-24, -1)
	wantErr(t, "negative reshape", err, "negative")
	// A quantized tensor reshapes only to whole blocks per row.
	q := mustNew(t, sizedBuffer(4*34), Q8_0, 4, 32)
	if _, err := q.Reshape(2, 64); err != nil {
		t.Errorf("Q8_0 [4 32] -> [2 64]: %v", err)
	}
	_, err = q.Reshape(8, 16)
	wantErr(t, "Q8_0 rows of 16", err, "16")
}

func TestExpand(t *testing.T) {
	x := mustNew(t, sizedBuffer(4*3), F32, 1, 3)
	y, err := x.Expand(5, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(y.Strides(), []int{0, 1}) || y.NumElems() != 15 || !y.HasOverlap() || y.IsContiguous() {
		t.Errorf("Expand(5, 3): strides %v elems %d overlap %v contiguous %v", y.Strides(), y.NumElems(), y.HasOverlap(), y.IsContiguous())
	}
	_, err = x.Expand(5, 4)
	wantErr(t, "expand of a size-3 dimension", err, "size 3", "4")
	_, err = x.Expand(5)
	wantErr(t, "expand to another rank", err, "rank-1")
	if _, err := x.Expand(-1, 3); err == nil {
		t.Errorf("Expand to a negative size succeeded")
	}
}

func TestContiguityAndOverlap(t *testing.T) {
	buf := sizedBuffer(4 * 1000)
	for _, c := range []struct {
		shape, strides      []int
		contiguous, overlap bool
	}{
		{[]int{2, 3}, []int{3, 1}, true, false},
		{[]int{2, 1, 3}, []int{3, 77, 1}, true, false}, // size-1 dimensions may have any stride
		{[]int{2, 3}, []int{1, 2}, false, false},       // column-major
		{[]int{2, 3}, []int{4, 1}, false, false},       // padded rows
		{[]int{2, 3}, []int{2, 1}, false, true},        // rows overlap
		{[]int{3}, []int{0}, false, true},              // broadcast
		{[]int{1}, []int{0}, true, false},
		{[]int{4, 2, 2}, []int{1, 8, 4}, false, false},
		{[]int{2, 2}, []int{1, 1}, false, true},
	} {
		x, err := NewView(buf, F32, 0, c.shape, c.strides)
		if err != nil {
			t.Fatalf("%v %v: %v", c.shape, c.strides, err)
		}
		if x.IsContiguous() != c.contiguous || x.HasOverlap() != c.overlap {
			t.Errorf("%v strides %v: contiguous %v overlap %v, want %v %v",
				c.shape, c.strides, x.IsContiguous(), x.HasOverlap(), c.contiguous, c.overlap)
		}
	}
}

func TestSizeBytesAndSameShape(t *testing.T) {
	for _, c := range []struct {
		dt    DType
		shape []int
		want  int64
	}{{F32, []int{2, 3}, 24}, {BF16, []int{5}, 10}, {Q4_0, []int{3, 64}, 108}, {Q6_K, []int{1, 256}, 210}, {I8, []int{0, 9}, 0}} {
		if got, err := SizeBytes(c.dt, c.shape...); err != nil || got != c.want {
			t.Errorf("SizeBytes(%v, %v) = %d, %v; want %d", c.dt, c.shape, got, err, c.want)
		}
	}
	_, err := SizeBytes(Q4_0, 2, 48)
	wantErr(t, "Q4_0 rows of 48", err, "48", "32")
	_, err = SizeBytes(Invalid, 2)
	wantErr(t, "invalid dtype", err, "invalid")
	a := mustNew(t, sizedBuffer(24), F32, 2, 3)
	b := mustNew(t, sizedBuffer(12), F16, 2, 3)
	c := mustNew(t, sizedBuffer(24), F32, 3, 2)
	if !SameShape(a, b) || SameShape(a, c) {
		t.Errorf("SameShape")
	}
	if v, err := a.View(1, []int{5}, []int{1}); err != nil || v.Offset() != 1 {
		t.Errorf("View: %v", err)
	}
}
