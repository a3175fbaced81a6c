package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sharedFile returns the path of a file under the shared folder of real
// models (KILN_SHARED, else ../../../shared from this package), skipping the
// test when it is absent.
func sharedFile(t testing.TB, rel string) string {
	t.Helper()
	dirs := []string{filepath.Join("..", "..", "..", "shared")}
	if d := os.Getenv("KILN_SHARED"); d != "" {
		dirs = append([]string{d}, dirs...)
	}
	for _, d := range dirs {
		p := filepath.Join(d, rel)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("%s not found under %v (set KILN_SHARED to the shared folder to run this test)", rel, dirs)
	return ""
}

// Little-endian encoders for hand-built files, written independently of the
// Writer so that tests of the reader do not trust the writer.
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func gstr(s string) []byte { return append(le64(uint64(len(s))), s...) }
func cat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

// segment is one named field of a hand-built file. A segment with pad set
// holds zeros up to the next multiple of the alignment, computed at build.
type segment struct {
	name string
	b    []byte
	pad  bool
}

// handFile is a GGUF image assembled field by field, so that a test can
// replace one field (with bytes of any length) and know every field's offset.
type handFile struct {
	segs  []segment
	align int
}

func (h *handFile) set(name string, b []byte) {
	for i := range h.segs {
		if h.segs[i].name == name {
			h.segs[i].b = b
			return
		}
	}
	panic("no segment " + name)
}

func (h *handFile) build() (data []byte, offsets map[string]int64) {
	offsets = map[string]int64{}
	for _, s := range h.segs {
		offsets[s.name] = int64(len(data))
		if s.pad {
			for len(data)%h.align != 0 {
				data = append(data, 0)
			}
			continue
		}
		data = append(data, s.b...)
	}
	return data, offsets
}

// baseHandFile is a small valid GGUF v3 file: four metadata pairs (a string,
// the alignment, an INT32 array, a bool) and two tensors, "a" (F32, ne
// {4, 2}: kiln shape [2 4], 32 bytes) and "b" (Q8_0, ne {32}: one block,
// 34 bytes).
func baseHandFile() *handFile {
	aData := make([]byte, 0, 32)
	for i := range 8 {
		aData = binary.LittleEndian.AppendUint32(aData, 0x3f800000+uint32(i)) // 1.0 and its next floats
	}
	bData := make([]byte, 34)
	bData[0], bData[1] = 0x00, 0x3c // f16 1.0
	for i := range 32 {
		bData[2+i] = byte(i - 16)
	}
	return &handFile{align: 32, segs: []segment{
		{name: "magic", b: []byte("GGUF")},
		{name: "version", b: le32(3)},
		{name: "n_tensors", b: le64(2)},
		{name: "n_kv", b: le64(4)},
		{name: "kv0.key", b: gstr("general.architecture")},
		{name: "kv0.type", b: le32(8)},
		{name: "kv0.value", b: gstr("llama")},
		{name: "kv1.key", b: gstr("general.alignment")},
		{name: "kv1.type", b: le32(4)},
		{name: "kv1.value", b: le32(32)},
		{name: "kv2.key", b: gstr("test.array")},
		{name: "kv2.type", b: le32(9)},
		{name: "kv2.elemtype", b: le32(5)},
		{name: "kv2.len", b: le64(3)},
		{name: "kv2.elems", b: cat(le32(1), le32(0xfffffffe), le32(3))},
		{name: "kv3.key", b: gstr("test.flag")},
		{name: "kv3.type", b: le32(7)},
		{name: "kv3.value", b: []byte{1}},
		{name: "t0.name", b: gstr("a")},
		{name: "t0.ndims", b: le32(2)},
		{name: "t0.ne", b: cat(le64(4), le64(2))},
		{name: "t0.type", b: le32(0)},
		{name: "t0.offset", b: le64(0)},
		{name: "t1.name", b: gstr("b")},
		{name: "t1.ndims", b: le32(1)},
		{name: "t1.ne", b: le64(32)},
		{name: "t1.type", b: le32(8)},
		{name: "t1.offset", b: le64(32)},
		{name: "pad", pad: true},
		{name: "t0.data", b: aData},
		{name: "t1.data", b: bData},
	}}
}

// asError checks that err is an *Error matching want (ErrMalformed or
// ErrUnsupported) and returns it.
func asError(t *testing.T, err error, want error) *Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one matching %v", want)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %q (%T) is not a *gguf.Error", err, err)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %q does not match %v", err, want)
	}
	return e
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
