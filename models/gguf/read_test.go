package gguf

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

func TestParseHandFile(t *testing.T) {
	data, off := baseHandFile().build()
	f, err := Parse(data, "hand.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 3 || f.Alignment != 32 || f.Path != "hand.gguf" {
		t.Errorf("version %d alignment %d path %q", f.Version, f.Alignment, f.Path)
	}
	dataStart := off["t0.data"]
	if f.DataOffset != dataStart || dataStart%32 != 0 {
		t.Errorf("DataOffset %d, want %d (a multiple of 32)", f.DataOffset, dataStart)
	}
	keys := []string{}
	for _, kv := range f.Metadata {
		keys = append(keys, kv.Key)
	}
	if want := []string{"general.architecture", "general.alignment", "test.array", "test.flag"}; !slices.Equal(keys, want) {
		t.Errorf("keys %v, want %v (file order)", keys, want)
	}
	if s, err := f.String("general.architecture"); s != "llama" || err != nil {
		t.Errorf("architecture %q, %v", s, err)
	}
	if v, err := f.Int32s("test.array"); !slices.Equal(v, []int32{1, -2, 3}) || err != nil {
		t.Errorf("test.array %v, %v", v, err)
	}
	if b, err := f.Bool("test.flag"); !b || err != nil {
		t.Errorf("test.flag %v, %v", b, err)
	}

	a, ok := f.Tensor("a")
	if !ok {
		t.Fatal("no tensor a")
	}
	want := TensorInfo{Name: "a", DType: tensor.F32, GGMLType: 0, Shape: []int{2, 4}, Offset: dataStart, SizeBytes: 32}
	if a.Name != want.Name || a.DType != want.DType || !slices.Equal(a.Shape, want.Shape) || a.Offset != want.Offset || a.SizeBytes != want.SizeBytes {
		t.Errorf("tensor a %+v, want %+v", a, want)
	}
	b, _ := f.Tensor("b")
	if b.DType != tensor.Q8_0 || b.GGMLType != 8 || !slices.Equal(b.Shape, []int{32}) || b.Offset != dataStart+32 || b.SizeBytes != 34 {
		t.Errorf("tensor b %+v", b)
	}
	if a.NumElements() != 8 || b.NumElements() != 32 || b.TypeName() != "Q8_0" {
		t.Errorf("elements %d %d, type name %q", a.NumElements(), b.NumElements(), b.TypeName())
	}

	// TensorData: the bytes in place, not a copy.
	ad, err := f.TensorData(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(ad) != 32 || &ad[0] != &data[dataStart] {
		t.Errorf("TensorData(a) is %d bytes at %p, want 32 bytes at %p (the input, uncopied)", len(ad), &ad[0], &data[dataStart])
	}
	vals := make([]float32, 8)
	if err := tensor.Dequantize(tensor.F32, ad, vals); err != nil {
		t.Fatal(err)
	}
	if vals[0] != 1 || vals[1] != math.Nextafter32(1, 2) {
		t.Errorf("tensor a begins %v, want 1 and the float after it", vals[:2])
	}
	bd, err := f.TensorData(b)
	if err != nil || len(bd) != 34 || cap(bd) != 34 {
		t.Fatalf("TensorData(b): %d bytes (cap %d), %v", len(bd), cap(bd), err)
	}
	q := make([]float32, 32)
	if err := tensor.Dequantize(tensor.Q8_0, bd, q); err != nil {
		t.Fatal(err)
	}
	if q[0] != -16 || q[31] != 15 {
		t.Errorf("Q8_0 block decodes to %v ... %v, want -16 ... 15", q[0], q[31])
	}

	// A TensorInfo that is not this file's is refused.
	forged := a
	forged.SizeBytes = 1 << 20
	if _, err := f.TensorData(forged); err == nil || !strings.Contains(err.Error(), "not this file's") {
		t.Errorf("forged TensorInfo: %v", err)
	}
	if _, err := f.TensorData(TensorInfo{Name: "zzz"}); err == nil || !strings.Contains(err.Error(), `"zzz"`) {
		t.Errorf("unknown tensor: %v", err)
	}

	// After Close the metadata stays, the data go.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.TensorData(a); !errors.Is(err, ErrClosed) {
		t.Errorf("TensorData after Close: %v, want ErrClosed", err)
	}
	if s, _ := f.String("general.architecture"); s != "llama" {
		t.Errorf("metadata after Close: %q", s)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestGetters(t *testing.T) {
	w := NewWriter(3)
	w.SetUint8("u8", 200)
	w.SetInt8("i8", -5)
	w.SetInt32("neg", -1)
	w.SetUint64("big", math.MaxUint64)
	w.SetFloat32("f32", 0.1)
	w.SetFloat64("f64", 0.1)
	w.SetString("s", "héllo")
	w.SetBool("b", true)
	w.SetStrings("ss", []string{"x", "", "z"})
	w.SetFloat32s("fs", []float32{1.5, -2})
	w.SetInt32s("is", []int32{7})
	w.SetUint32s("us", []uint32{7})
	var buf strings.Builder
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := Parse([]byte(buf.String()), "getters.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := f.Uint("u8"); v != 200 || err != nil {
		t.Errorf("Uint(u8) %d %v", v, err)
	}
	if v, err := f.Int("u8"); v != 200 || err != nil {
		t.Errorf("Int(u8) %d %v", v, err)
	}
	if v, err := f.Int("i8"); v != -5 || err != nil {
		t.Errorf("Int(i8) %d %v", v, err)
	}
	if _, err := f.Uint("neg"); !errors.Is(err, ErrWrongType) || !strings.Contains(err.Error(), "-1") {
		t.Errorf("Uint(neg): %v", err)
	}
	if v, err := f.Uint("big"); v != math.MaxUint64 || err != nil {
		t.Errorf("Uint(big) %d %v", v, err)
	}
	if _, err := f.Int("big"); !errors.Is(err, ErrWrongType) {
		t.Errorf("Int(big): %v", err)
	}
	if v, err := f.Float("f32"); v != float64(float32(0.1)) || err != nil {
		t.Errorf("Float(f32) %v %v", v, err)
	}
	if v, err := f.Float("f64"); v != 0.1 || err != nil {
		t.Errorf("Float(f64) %v %v", v, err)
	}
	if _, err := f.Float("u8"); !errors.Is(err, ErrWrongType) || !strings.Contains(err.Error(), `"u8" holds a uint8`) {
		t.Errorf("Float(u8): %v", err)
	}
	if v, err := f.String("s"); v != "héllo" || err != nil {
		t.Errorf("String %q %v", v, err)
	}
	if _, err := f.String("b"); !errors.Is(err, ErrWrongType) {
		t.Errorf("String(b): %v", err)
	}
	if v, err := f.Bool("b"); !v || err != nil {
		t.Errorf("Bool %v %v", v, err)
	}
	if v, err := f.Strings("ss"); !slices.Equal(v, []string{"x", "", "z"}) || err != nil {
		t.Errorf("Strings %q %v", v, err)
	}
	if v, err := f.Float32s("fs"); !slices.Equal(v, []float32{1.5, -2}) || err != nil {
		t.Errorf("Float32s %v %v", v, err)
	}
	if v, err := f.Int32s("is"); !slices.Equal(v, []int32{7}) || err != nil {
		t.Errorf("Int32s %v %v", v, err)
	}
	if _, err := f.Int32s("us"); !errors.Is(err, ErrWrongType) || !strings.Contains(err.Error(), "array of uint32, want an array of int32") {
		t.Errorf("Int32s(us): %v", err)
	}
	if _, err := f.Strings("s"); !errors.Is(err, ErrWrongType) {
		t.Errorf("Strings(s): %v", err)
	}
	for _, get := range []func(string) error{
		func(k string) error { _, err := f.String(k); return err },
		func(k string) error { _, err := f.Uint(k); return err },
		func(k string) error { _, err := f.Int(k); return err },
		func(k string) error { _, err := f.Float(k); return err },
		func(k string) error { _, err := f.Bool(k); return err },
		func(k string) error { _, err := f.Strings(k); return err },
		func(k string) error { _, err := f.Float32s(k); return err },
		func(k string) error { _, err := f.Int32s(k); return err },
	} {
		if err := get("missing.key"); !errors.Is(err, ErrKeyNotFound) || !strings.Contains(err.Error(), `"missing.key"`) {
			t.Errorf("missing key: %v", err)
		}
	}
	if _, ok := f.Get("missing.key"); ok {
		t.Error("Get of a missing key reports ok")
	}
	// The getters return copies: changing one leaves the file's value.
	ss, _ := f.Strings("ss")
	ss[0] = "changed"
	if again, _ := f.Strings("ss"); again[0] != "x" {
		t.Errorf("Strings returned the file's own slice")
	}
}

// TestCorruptFiles breaks one field of a valid hand-built file at a time and
// checks the error: its kind, the field it names, the offset and the message.
func TestCorruptFiles(t *testing.T) {
	for _, c := range []struct {
		name      string
		edit      func(h *handFile)
		kind      error
		field     string // the Field the error must name
		offsetOf  string // the segment whose offset the error must give ("" to skip)
		msg       []string
		truncateN int // when > 0, the file is cut to this many bytes
	}{
		{name: "magic", edit: func(h *handFile) { h.set("magic", []byte("GGUG")) }, kind: ErrMalformed,
			field: "header.magic", offsetOf: "magic", msg: []string{`found "GGUG", want "GGUF"`, "not a GGUF file"}},
		{name: "too short", truncateN: 3, kind: ErrMalformed, field: "header.magic", offsetOf: "magic", msg: []string{"3 bytes long"}},
		{name: "version 1", edit: func(h *handFile) { h.set("version", le32(1)) }, kind: ErrUnsupported,
			field: "header.version", offsetOf: "version", msg: []string{"found version 1", "want 2 or 3"}},
		{name: "big-endian", edit: func(h *handFile) { h.set("version", []byte{0, 0, 0, 3}) }, kind: ErrUnsupported,
			field: "header.version", offsetOf: "version", msg: []string{"big-endian", "version 3"}},
		{name: "version 4", edit: func(h *handFile) { h.set("version", le32(4)) }, kind: ErrUnsupported,
			field: "header.version", offsetOf: "version", msg: []string{"found version 4, want 2 or 3"}},
		{name: "tensor count", edit: func(h *handFile) { h.set("n_tensors", le64(1<<40)) }, kind: ErrMalformed,
			field: "header.tensor_count", offsetOf: "n_tensors", msg: []string{"found 1099511627776 tensors", "hold at most"}},
		{name: "kv count", edit: func(h *handFile) { h.set("n_kv", le64(1<<62)) }, kind: ErrMalformed,
			field: "header.metadata_kv_count", offsetOf: "n_kv", msg: []string{"found 4611686018427387904 pairs"}},
		{name: "kv count too small", edit: func(h *handFile) { h.set("n_kv", le64(3)) }, kind: ErrUnsupported,
			// The fourth pair is then read as the first tensor: its name
			// "test.flag" is followed by the bool's type 7 as n_dims.
			field: `tensor "test.flag" n_dims`, offsetOf: "kv3.type", msg: []string{"found 7 dimensions"}},
		{name: "key length", edit: func(h *handFile) { h.set("kv0.key", cat(le64(1<<50), []byte("x"))) }, kind: ErrMalformed,
			field: "metadata[0] key length", offsetOf: "kv0.key", msg: []string{"string length 1125899906842624 exceeds"}},
		{name: "value type", edit: func(h *handFile) { h.set("kv0.type", le32(13)) }, kind: ErrMalformed,
			field: `metadata "general.architecture" type`, offsetOf: "kv0.type", msg: []string{"found value type 13, want 0..12"}},
		{name: "string value length", edit: func(h *handFile) { h.set("kv0.value", cat(le64(100000), []byte("llama"))) }, kind: ErrMalformed,
			field: `metadata "general.architecture" value length`, offsetOf: "kv0.value", msg: []string{"string length 100000 exceeds"}},
		{name: "array element type", edit: func(h *handFile) { h.set("kv2.elemtype", le32(99)) }, kind: ErrMalformed,
			field: `metadata "test.array" value element type`, offsetOf: "kv2.elemtype", msg: []string{"found value type 99"}},
		{name: "array length", edit: func(h *handFile) { h.set("kv2.len", le64(1<<61)) }, kind: ErrMalformed,
			field: `metadata "test.array" value length`, offsetOf: "kv2.len", msg: []string{"array of 2305843009213693952 int32 elements needs at least 4 bytes each"}},
		{name: "string array length", edit: func(h *handFile) {
			h.set("kv2.elemtype", le32(uint32(TypeString)))
			h.set("kv2.elems", cat(gstr("x"), gstr("y"), le64(1<<40)))
		}, kind: ErrMalformed, field: `metadata "test.array" value[2] length`, msg: []string{"string length 1099511627776 exceeds"}},
		{name: "array of arrays", edit: func(h *handFile) {
			h.set("kv2.elemtype", le32(uint32(TypeArray)))
			h.set("kv2.len", le64(1))
			h.set("kv2.elems", cat(le32(uint32(TypeInt32)), le64(0)))
		}, kind: ErrUnsupported, field: `metadata "test.array" value element type`, offsetOf: "kv2.elemtype", msg: []string{"arrays of arrays are not supported"}},
		{name: "bool", edit: func(h *handFile) { h.set("kv3.value", []byte{2}) }, kind: ErrMalformed,
			field: `metadata "test.flag" value`, offsetOf: "kv3.value", msg: []string{"bool byte is 2, want 0 or 1"}},
		{name: "bool array", edit: func(h *handFile) {
			h.set("kv2.elemtype", le32(uint32(TypeBool)))
			h.set("kv2.elems", []byte{1, 0, 7})
		}, kind: ErrMalformed, field: `metadata "test.array" value[2]`, msg: []string{"bool byte is 7"}},
		{name: "duplicate key", edit: func(h *handFile) { h.set("kv2.key", gstr("general.architecture")) }, kind: ErrMalformed,
			field: "metadata[2] key", offsetOf: "kv2.key", msg: []string{`duplicate key "general.architecture" (first defined by metadata[0])`}},
		{name: "alignment not a power of two", edit: func(h *handFile) { h.set("kv1.value", le32(48)) }, kind: ErrMalformed,
			field: `metadata "general.alignment" value`, offsetOf: "kv1.value", msg: []string{"found 48, want a power of two"}},
		{name: "alignment zero", edit: func(h *handFile) { h.set("kv1.value", le32(0)) }, kind: ErrMalformed,
			field: `metadata "general.alignment" value`, offsetOf: "kv1.value", msg: []string{"found 0, want a power of two"}},
		{name: "alignment type", edit: func(h *handFile) { h.set("kv1.type", le32(10)); h.set("kv1.value", le64(32)) }, kind: ErrMalformed,
			field: `metadata "general.alignment" value`, offsetOf: "kv1.value", msg: []string{"found a uint64, want a uint32"}},
		{name: "duplicate tensor", edit: func(h *handFile) { h.set("t1.name", gstr("a")) }, kind: ErrMalformed,
			field: "tensor[1] name", offsetOf: "t1.name", msg: []string{`duplicate tensor name "a" (first defined by tensor[0])`}},
		{name: "zero dims", edit: func(h *handFile) { h.set("t0.ndims", le32(0)); h.set("t0.ne", nil) }, kind: ErrMalformed,
			field: `tensor "a" n_dims`, offsetOf: "t0.ndims", msg: []string{"found 0 dimensions, want 1..4"}},
		{name: "five dims", edit: func(h *handFile) {
			h.set("t0.ndims", le32(5))
			h.set("t0.ne", cat(le64(4), le64(2), le64(1), le64(1), le64(1)))
		}, kind: ErrUnsupported, field: `tensor "a" n_dims`, offsetOf: "t0.ndims", msg: []string{"found 5 dimensions", "at most 4"}},
		{name: "dimension beyond int64", edit: func(h *handFile) { h.set("t0.ne", cat(le64(1<<63), le64(2))) }, kind: ErrMalformed,
			field: `tensor "a" ne[0]`, offsetOf: "t0.ne", msg: []string{"dimension 9223372036854775808 is beyond the largest int"}},
		{name: "partial block", edit: func(h *handFile) { h.set("t1.ne", le64(33)) }, kind: ErrMalformed,
			field: `tensor "b" ne[0]`, offsetOf: "t1.ne", msg: []string{"row length 33 is not a whole number of 32-element Q8_0 blocks"}},
		{name: "size overflow", edit: func(h *handFile) { h.set("t0.ne", cat(le64(1<<40), le64(1<<40))) }, kind: ErrMalformed,
			field: `tensor "a" dimensions`, offsetOf: "t0.ne", msg: []string{"shape [1099511627776 1099511627776] of F32", "integer overflow"}},
		{name: "misaligned offset", edit: func(h *handFile) { h.set("t0.offset", le64(8)) }, kind: ErrMalformed,
			field: `tensor "a" offset`, offsetOf: "t0.offset", msg: []string{"data offset 8 is not a multiple of the alignment 32"}},
		{name: "offset beyond the file", edit: func(h *handFile) { h.set("t1.offset", le64(1<<20)) }, kind: ErrMalformed,
			field: `tensor "b" offset`, offsetOf: "t1.offset", msg: []string{"data offset 1048576", "beyond the end of the"}},
		{name: "data past the end", edit: func(h *handFile) { h.set("t1.offset", le64(64)) }, kind: ErrMalformed,
			field: `tensor "b" data`, offsetOf: "t1.offset", msg: []string{"34 bytes of Q8_0 [32]", "past the end of the"}},
		{name: "overlapping tensors", edit: func(h *handFile) { h.set("t0.ne", cat(le64(16), le64(1))) }, kind: ErrMalformed,
			// a is now 64 bytes from data offset 0; b starts at 32.
			field: `tensor "b" data`, offsetOf: "t1.offset", msg: []string{`bytes [`, `overlap those of tensor "a"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := baseHandFile()
			if c.edit != nil {
				c.edit(h)
			}
			data, off := h.build()
			if c.truncateN > 0 {
				data = data[:c.truncateN]
			}
			_, err := Parse(data, "corrupt.gguf")
			e := asError(t, err, c.kind)
			if e.File != "corrupt.gguf" || e.Field != c.field {
				t.Errorf("error names file %q field %q, want %q and %q\n%v", e.File, e.Field, "corrupt.gguf", c.field, err)
			}
			if c.offsetOf != "" && e.Offset != off[c.offsetOf] {
				t.Errorf("error at offset %d, want %d (segment %s)\n%v", e.Offset, off[c.offsetOf], c.offsetOf, err)
			}
			if !containsAll(err.Error(), c.msg...) || !strings.Contains(err.Error(), "corrupt.gguf") {
				t.Errorf("error %q lacks %q", err, c.msg)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	data, off := baseHandFile().build()
	path := filepath.Join(t.TempDir(), "hand.gguf")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Path != path || len(f.Tensors) != 2 {
		t.Fatalf("path %q, %d tensors", f.Path, len(f.Tensors))
	}
	b, _ := f.Tensor("b")
	got, err := f.TensorData(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := data[off["t1.data"] : off["t1.data"]+34]; string(got) != string(want) {
		t.Errorf("TensorData(b) = % x, want % x", got, want)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.TensorData(b); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}

	// A corrupt file on disk: the error names the path.
	bad := filepath.Join(t.TempDir(), "bad.gguf")
	if err := os.WriteFile(bad, data[:100], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(bad); err == nil || !strings.Contains(err.Error(), bad) || !errors.Is(err, ErrMalformed) {
		t.Errorf("Open(truncated): %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.gguf")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(empty); err == nil || !strings.Contains(err.Error(), "0 bytes long") {
		t.Errorf("Open(empty): %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.gguf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing): %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Open(directory): %v", err)
	}
}

// A tensor of a ggml type kiln has no dtype for is listed (type, shape, size)
// but TensorData refuses it by name.
func TestUnsupportedTensorType(t *testing.T) {
	h := baseHandFile()
	h.set("t1.type", le32(20)) // IQ4_NL: 32-element blocks of 18 bytes
	data, off := h.build()
	f, err := Parse(data, "iq.gguf")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := f.Tensor("b")
	if b.DType != tensor.Invalid || b.GGMLType != 20 || b.TypeName() != "IQ4_NL" || b.SizeBytes != 18 || b.Offset != off["t1.data"] {
		t.Errorf("tensor b %+v (%s)", b, b.TypeName())
	}
	_, err = f.TensorData(b)
	e := asError(t, err, ErrUnsupported)
	if e.Field != `tensor "b" type` || !containsAll(err.Error(), "IQ4_NL (20)", "no kiln dtype") {
		t.Errorf("TensorData(IQ4_NL): %v", err)
	}

	// A type no ggml version defines: its extent is unknown, so the file is
	// refused, naming the tensor, its type field and the type number.
	h.set("t1.type", le32(200))
	data, off = h.build()
	_, err = Parse(data, "unknown.gguf")
	e = asError(t, err, ErrUnsupported)
	if e.Field != `tensor "b" type` || e.Offset != off["t1.type"] || !strings.Contains(err.Error(), "ggml type 200") {
		t.Errorf("Parse with ggml type 200: %v", err)
	}
}

// Zero-sized tensors are valid (ggml allows ne = 0) and may share offsets.
func TestZeroSizeTensor(t *testing.T) {
	h := baseHandFile()
	h.set("t1.ne", le64(0))
	h.set("t1.offset", le64(0))
	data, _ := h.build()
	f, err := Parse(data, "zero.gguf")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := f.Tensor("b")
	if b.SizeBytes != 0 || !slices.Equal(b.Shape, []int{0}) || b.Offset != f.DataOffset {
		t.Errorf("tensor b %+v", b)
	}
	if d, err := f.TensorData(b); err != nil || len(d) != 0 {
		t.Errorf("TensorData of an empty tensor: %d bytes, %v", len(d), err)
	}
}

// TestTruncatedHandFile cuts the hand-built file at every length: each cut
// fails with an *Error, and while the cut falls in the header, metadata or
// tensor table the error names the field being read there (or a count that
// the remaining bytes cannot hold).
func TestTruncatedHandFile(t *testing.T) {
	h := baseHandFile()
	data, off := h.build()
	fieldOf := map[string]string{
		"magic": "header.magic", "version": "header.version",
		"n_tensors": "header.tensor_count", "n_kv": "header.metadata_kv_count",
		"kv0.key": "metadata[0] key", "kv0.type": `metadata "general.architecture" type`, "kv0.value": `metadata "general.architecture" value`,
		"kv1.key": "metadata[1] key", "kv1.type": `metadata "general.alignment" type`, "kv1.value": `metadata "general.alignment" value`,
		"kv2.key": "metadata[2] key", "kv2.type": `metadata "test.array" type`, "kv2.elemtype": `metadata "test.array" value element type`,
		"kv2.len": `metadata "test.array" value length`, "kv2.elems": `metadata "test.array" value`,
		"kv3.key": "metadata[3] key", "kv3.type": `metadata "test.flag" type`, "kv3.value": `metadata "test.flag" value`,
		"t0.name": "tensor[0] name", "t0.ndims": `tensor "a" n_dims`, "t0.ne": `tensor "a" ne[`, "t0.type": `tensor "a" type`, "t0.offset": `tensor "a" offset`,
		"t1.name": "tensor[1] name", "t1.ndims": `tensor "b" n_dims`, "t1.ne": `tensor "b" ne[`, "t1.type": `tensor "b" type`, "t1.offset": `tensor "b" offset`,
		"pad": "data section", "t0.data": `tensor "`, "t1.data": `tensor "b" data`,
	}
	segAt := func(n int64) string {
		best, bestOff := "", int64(-1)
		for _, s := range h.segs {
			if o := off[s.name]; o <= n && o >= bestOff {
				best, bestOff = s.name, o
			}
		}
		return best
	}
	for n := 0; n < len(data); n++ {
		_, err := Parse(data[:n], "cut.gguf")
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrMalformed) {
			t.Fatalf("cut at %d: %v, want a malformed-file *Error", n, err)
		}
		if e.Offset > int64(n) {
			t.Errorf("cut at %d: error offset %d is past the cut: %v", n, e.Offset, err)
		}
		seg := segAt(int64(n))
		if n < int(off["t0.data"]) && seg != "pad" {
			want := fieldOf[seg]
			countErr := e.Field == "header.metadata_kv_count" || e.Field == "header.tensor_count"
			if !strings.HasPrefix(e.Field, want) && !countErr {
				t.Errorf("cut at %d (in %s): error field %q, want %q: %v", n, seg, e.Field, want, err)
			}
		}
	}
}
