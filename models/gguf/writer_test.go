package gguf

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// everyTypeWriter sets metadata of every type, arrays of every element type
// (empty ones, nested ones), and tensors of every kiln dtype.
func everyTypeWriter(t testing.TB, version uint32) *Writer {
	t.Helper()
	w := NewWriter(version)
	w.SetUint8("u8", 0xfe)
	w.SetInt8("i8", -128)
	w.SetUint16("u16", 0xfffe)
	w.SetInt16("i16", -32768)
	w.SetUint32("u32", 0xfffffffe)
	w.SetInt32("i32", math.MinInt32)
	w.SetUint64("u64", math.MaxUint64)
	w.SetInt64("i64", math.MinInt64)
	w.SetFloat32("f32", float32(math.Inf(-1)))
	w.SetFloat64("f64", math.Copysign(0, -1))
	w.SetBool("t", true)
	w.SetBool("f", false)
	w.SetString("empty", "")
	w.SetString("utf8", "héllo, 世界 \x00 after NUL")
	w.SetArray("a.u8", &Array{ElemType: TypeUint8, Len: 3, U8: []uint8{0, 1, 255}})
	w.SetArray("a.i8", &Array{ElemType: TypeInt8, Len: 2, I8: []int8{-128, 127}})
	w.SetArray("a.u16", &Array{ElemType: TypeUint16, Len: 1, U16: []uint16{65535}})
	w.SetArray("a.i16", &Array{ElemType: TypeInt16, Len: 2, I16: []int16{-1, 1}})
	w.SetUint32s("a.u32", []uint32{1, 2, 3})
	w.SetInt32s("a.i32", []int32{-7})
	w.SetArray("a.u64", &Array{ElemType: TypeUint64, Len: 1, U64: []uint64{1 << 63}})
	w.SetArray("a.i64", &Array{ElemType: TypeInt64, Len: 1, I64: []int64{-1 << 40}})
	w.SetFloat32s("a.f32", []float32{0.5, float32(math.Inf(1)), -0})
	w.SetArray("a.f64", &Array{ElemType: TypeFloat64, Len: 2, F64: []float64{math.Pi, -1e300}})
	w.SetArray("a.bool", &Array{ElemType: TypeBool, Len: 3, Bool: []bool{true, false, true}})
	w.SetStrings("a.str", []string{"a", "", "ccc"})
	w.SetStrings("a.empty", []string{})
	shapes := map[tensor.DType][]int{
		tensor.F32: {3, 5}, tensor.F16: {7}, tensor.BF16: {2, 2, 2, 2}, tensor.I32: {1, 3},
		tensor.I8: {5}, tensor.Q8_0: {3, 64}, tensor.Q4_0: {32}, tensor.Q4_K: {2, 256}, tensor.Q6_K: {256},
	}
	for i, dt := range tensor.AllDTypes() {
		shape := shapes[dt]
		size, err := dt.RowBytes(shape[len(shape)-1])
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range shape[:len(shape)-1] {
			size *= int64(d)
		}
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(i*31 + j*7)
		}
		if err := w.AddTensor("t."+dt.String(), dt, shape, data); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func writeBytes(t testing.TB, w *Writer) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := w.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo reports %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func TestWriterRoundTrip(t *testing.T) {
	for _, version := range []uint32{2, 3} {
		w := everyTypeWriter(t, version)
		data := writeBytes(t, w)
		f, err := Parse(data, "roundtrip.gguf")
		if err != nil {
			t.Fatal(err)
		}
		if f.Version != version {
			t.Errorf("version %d, want %d", f.Version, version)
		}
		// Every value reads back as set (the writer's own list is the
		// expectation: it is what the caller asked for).
		if len(f.Metadata) != len(w.kvs) {
			t.Fatalf("%d pairs, want %d", len(f.Metadata), len(w.kvs))
		}
		for i, kv := range f.Metadata {
			want := w.kvs[i]
			if kv.Key != want.Key || !reflect.DeepEqual(kv.Value, want.Value) {
				// DeepEqual treats -0 and +0 alike and NaN unlike; no NaN is set.
				t.Errorf("pair %d: %q %+v, want %q %+v", i, kv.Key, kv.Value, want.Key, want.Value)
			}
		}
		if v, _ := f.Get("f64"); math.Float64bits(v.F64) != math.Float64bits(math.Copysign(0, -1)) {
			t.Errorf("f64 -0 read back as %v", v.F64)
		}
		for i, ti := range f.Tensors {
			wt := w.tensors[i]
			if ti.Name != wt.name || ti.Offset%DefaultAlignment != 0 || ti.SizeBytes != int64(len(wt.data)) {
				t.Errorf("tensor %d: %+v", i, ti)
			}
			if !ti.DType.Valid() || "t."+ti.DType.String() != ti.Name {
				t.Errorf("tensor %s has dtype %v", ti.Name, ti.DType)
			}
			d, err := f.TensorData(ti)
			if err != nil || !bytes.Equal(d, wt.data) {
				t.Errorf("tensor %s data differ (%v)", ti.Name, err)
			}
		}
		if bf, _ := f.Tensor("t.BF16"); !reflect.DeepEqual(bf.Shape, []int{2, 2, 2, 2}) {
			t.Errorf("BF16 shape %v", bf.Shape)
		}
		// Bit for bit: writing what was read gives the same bytes.
		if again := rewrite(t, f); !bytes.Equal(again, data) {
			t.Errorf("version %d: rewrite differs from the first write (%d vs %d bytes)", version, len(again), len(data))
		}
		// And the same calls write the same bytes.
		if second := writeBytes(t, everyTypeWriter(t, version)); !bytes.Equal(second, data) {
			t.Error("two writes of the same content differ")
		}
	}
}

func TestWriterLayout(t *testing.T) {
	w := NewWriter(3)
	w.SetUint32(AlignmentKey, 64)
	w.SetString("general.architecture", "llama")
	w.SetString("general.architecture", "test") // replaces, keeps the position
	if err := w.AddTensor("x", tensor.F32, []int{3}, make([]byte, 12)); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("y", tensor.F16, []int{5}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}); err != nil {
		t.Fatal(err)
	}
	data := writeBytes(t, w)
	f, err := Parse(data, "layout.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if f.Alignment != 64 || f.DataOffset%64 != 0 {
		t.Errorf("alignment %d, data at %d", f.Alignment, f.DataOffset)
	}
	if len(f.Metadata) != 2 || f.Metadata[1].Value.Str != "test" {
		t.Errorf("metadata %+v", f.Metadata)
	}
	x, _ := f.Tensor("x")
	y, _ := f.Tensor("y")
	if x.Offset != f.DataOffset || y.Offset != f.DataOffset+64 {
		t.Errorf("offsets %d and %d, want %d and %d", x.Offset, y.Offset, f.DataOffset, f.DataOffset+64)
	}
	// Each tensor is followed by zeros up to the alignment.
	if int64(len(data)) != y.Offset+64 || !bytes.Equal(data[x.Offset+12:y.Offset], make([]byte, 52)) || !bytes.Equal(data[y.Offset+10:], make([]byte, 54)) {
		t.Errorf("padding: file of %d bytes, tensors at %d and %d", len(data), x.Offset, y.Offset)
	}
	// Header, as the GGUF specification lays it out.
	if string(data[:4]) != "GGUF" || !bytes.Equal(data[4:24], cat(le32(3), le64(2), le64(2))) {
		t.Errorf("header % x", data[:24])
	}
}

func TestWriterTensorFunc(t *testing.T) {
	w := NewWriter(3)
	// A 144 MiB Q4_K tensor produced in 1 MiB pieces: nothing holds it whole.
	const cols = 1 << 19
	shape := []int{512, cols}
	want := int64(512 * (cols / 256) * 144)
	piece := make([]byte, 1<<20)
	for i := range piece {
		piece[i] = byte(i)
	}
	calls := 0
	err := w.AddTensorFunc("big", tensor.Q4_K, shape, func(out io.Writer) error {
		calls++
		for left := want; left > 0; {
			n := min(left, int64(len(piece)))
			if _, err := out.Write(piece[:n]); err != nil {
				return err
			}
			left -= n
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("small", tensor.F32, []int{1}, []byte{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	// Keep only the head and the tail of the file.
	var head bytes.Buffer
	tail := &tailWriter{keep: 64}
	n, err := w.WriteTo(io.MultiWriter(&limitedBuffer{buf: &head, limit: 4096}, tail))
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("produce called %d times, want 1", calls)
	}
	// The head parses up to the tensor table; the end of the file is the
	// small tensor and its padding.
	_, err = Parse(head.Bytes(), "head")
	var e *Error
	if !errors.As(err, &e) || e.Field != `tensor "big" data` {
		t.Fatalf("head of the file: %v", err)
	}
	// The twin has the same header and tensor table, so the same data offset.
	twin, err := Parse(writeBytes(t, smallTwin(t)), "twin")
	if err != nil {
		t.Fatal(err)
	}
	wantTotal := twin.DataOffset + want + 32 // big is a multiple of 32 bytes; small takes one 32-byte slot
	if n != wantTotal {
		t.Errorf("wrote %d bytes, want %d", n, wantTotal)
	}
	if got := tail.bytes(); !bytes.Equal(got[len(got)-32:], cat([]byte{1, 2, 3, 4}, make([]byte, 28))) {
		t.Errorf("file ends % x", got)
	}

	// A produce function that writes too little or too much fails, naming
	// the tensor.
	for _, c := range []struct {
		produce func(io.Writer) error
		msg     string
	}{
		{func(w io.Writer) error { _, err := w.Write(make([]byte, 3)); return err }, `tensor "t": produced 3 bytes, want 4`},
		{func(w io.Writer) error { _, err := w.Write(make([]byte, 5)); return err }, `tensor "t": produced more than its 4 bytes`},
		{func(w io.Writer) error { return errors.New("disk on fire") }, `tensor "t": disk on fire`},
	} {
		w := NewWriter(3)
		if err := w.AddTensorFunc("t", tensor.F32, []int{1}, c.produce); err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteTo(io.Discard); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("WriteTo: %v, want %q", err, c.msg)
		}
	}
}

// smallTwin has the same metadata and tensor table as the writer of
// TestWriterTensorFunc, with data given as bytes.
func smallTwin(t testing.TB) *Writer {
	w := NewWriter(3)
	if err := w.AddRawTensor("big", 12, []int{1, 256}, make([]byte, 144)); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("small", tensor.F32, []int{1}, []byte{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	return w
}

type limitedBuffer struct {
	buf   *bytes.Buffer
	limit int
}

func (l *limitedBuffer) Write(b []byte) (int, error) {
	if room := l.limit - l.buf.Len(); room > 0 {
		l.buf.Write(b[:min(room, len(b))])
	}
	return len(b), nil
}

type tailWriter struct {
	keep int
	buf  []byte
}

func (w *tailWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	if len(w.buf) > w.keep {
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-w.keep:]...)
	}
	return len(b), nil
}

func (w *tailWriter) bytes() []byte { return w.buf }

func TestWriterErrors(t *testing.T) {
	w := NewWriter(3)
	for _, c := range []struct {
		err error
		msg string
	}{
		{w.AddTensor("x", tensor.Invalid, []int{1}, nil), "invalid dtype"},
		{w.AddTensor("x", tensor.F32, []int{}, nil), "0 dimensions, want 1..4"},
		{w.AddTensor("x", tensor.F32, []int{1, 1, 1, 1, 1}, nil), "5 dimensions, want 1..4"},
		{w.AddTensor("x", tensor.F32, []int{-1}, nil), "negative dimension"},
		{w.AddTensor("x", tensor.Q8_0, []int{2, 48}, make([]byte, 68)), "innermost dimension 48 of shape [2 48] is not a whole number of 32-element Q8_0 blocks"},
		{w.AddTensor("x", tensor.F32, []int{2, 2}, make([]byte, 15)), "15 bytes of data, want 16 for F32 [2 2]"},
		{w.AddTensor("x", tensor.F32, []int{1 << 62, 1 << 3}, nil), "overflows"},
		{w.AddRawTensor("x", 4, []int{1}, nil), "unknown ggml type 4"},
		{w.AddTensorFunc("x", tensor.F32, []int{1}, nil), "nil produce function"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.msg) || !strings.Contains(c.err.Error(), `"x"`) {
			t.Errorf("error %v, want %q naming the tensor", c.err, c.msg)
		}
	}
	if err := w.AddTensor("x", tensor.F32, []int{1}, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("x", tensor.F32, []int{1}, make([]byte, 4)); err == nil || !strings.Contains(err.Error(), `duplicate tensor name "x"`) {
		t.Errorf("duplicate: %v", err)
	}
	// ggml's limit: names of 63 bytes pass, 64 do not.
	if err := w.AddTensor(strings.Repeat("n", 63), tensor.F32, []int{1}, make([]byte, 4)); err != nil {
		t.Errorf("63-byte name: %v", err)
	}
	if err := w.AddTensor(strings.Repeat("n", 64), tensor.F32, []int{1}, make([]byte, 4)); err == nil || !strings.Contains(err.Error(), "GGML_MAX_NAME") {
		t.Errorf("64-byte name: %v, want an error about ggml's limit", err)
	}

	for _, c := range []struct {
		set func(w *Writer)
		msg string
	}{
		{func(w *Writer) { w.SetUint16(AlignmentKey, 32) }, "general.alignment must be a uint32 power of two, have uint16"},
		{func(w *Writer) { w.SetUint32(AlignmentKey, 24) }, "power of two, have uint32 24"},
		{func(w *Writer) { w.Set("k", Value{Type: 13}) }, `metadata "k": value type 13 is not a GGUF type`},
		{func(w *Writer) { w.Set("k", Value{Type: TypeUint8, U64: 256}) }, `metadata "k": uint8 value out of range`},
		{func(w *Writer) { w.Set("k", Value{Type: TypeInt16, I64: -40000}) }, `metadata "k": int16 value out of range`},
		{func(w *Writer) { w.Set("k", Value{Type: TypeArray}) }, "nil Array"},
		{func(w *Writer) { w.SetArray("k", &Array{ElemType: TypeInt32, Len: 2, I32: []int32{1}}) }, "Len 2 but 1 elements"},
		{func(w *Writer) { w.SetArray("k", &Array{ElemType: 77}) }, "element type 77"},
		{func(w *Writer) {
			w.SetArray("k", &Array{ElemType: TypeArray, Len: 1, Arrays: []*Array{{ElemType: TypeBool, Len: 1}}})
		}, "arrays of arrays are not supported"},
	} {
		w := NewWriter(3)
		c.set(w)
		var buf bytes.Buffer
		if _, err := w.WriteTo(&buf); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("WriteTo: %v, want %q", err, c.msg)
		} else if buf.Len() != 0 {
			t.Errorf("WriteTo wrote %d bytes before failing on metadata", buf.Len())
		}
	}
	if _, err := NewWriter(1).WriteTo(io.Discard); err == nil || !strings.Contains(err.Error(), "version 1, want 2 or 3") {
		t.Errorf("version 1: %v", err)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.gguf")
	w := everyTypeWriter(t, 3)
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Tensors) != len(tensor.AllDTypes()) {
		t.Errorf("%d tensors", len(f.Tensors))
	}
	// A failing write leaves no file behind.
	bad := NewWriter(3)
	bad.AddTensorFunc("t", tensor.F32, []int{1}, func(io.Writer) error { return errors.New("no") })
	badPath := filepath.Join(dir, "bad.gguf")
	if err := bad.WriteFile(badPath); err == nil {
		t.Fatal("no error")
	}
	if _, err := os.Stat(badPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("partial file left: %v", err)
	}
}
