package gguf

import (
	"bytes"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse: it must never panic, and what it
// accepts must be self-consistent: every tensor inside the input at an
// aligned offset, TensorData returning exactly SizeBytes, and writing the
// parsed contents again must reach a fixed point (a second rewrite gives the
// same bytes as the first).
func FuzzParse(f *testing.F) {
	valid := writeBytes(f, everyTypeWriter(f, 3))
	hand, _ := baseHandFile().build()
	for _, seed := range [][]byte{valid, hand} {
		f.Add(seed)
		for _, n := range []int{0, 3, 4, 8, 23, 24, 40, len(seed) / 3, len(seed) / 2, len(seed) - 1} {
			f.Add(seed[:n])
		}
	}
	v2 := writeBytes(f, everyTypeWriter(f, 2))
	f.Add(v2)
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data, "fuzz")
		if err != nil {
			return
		}
		if file.Alignment <= 0 || file.Alignment&(file.Alignment-1) != 0 {
			t.Fatalf("alignment %d", file.Alignment)
		}
		for _, ti := range file.Tensors {
			if len(ti.Shape) < 1 || len(ti.Shape) > 4 {
				t.Fatalf("tensor %q rank %d", ti.Name, len(ti.Shape))
			}
			if ti.Offset%file.Alignment != 0 || ti.Offset < file.DataOffset || ti.Offset > int64(len(data)) {
				t.Fatalf("tensor %q at offset %d (data at %d, %d bytes)", ti.Name, ti.Offset, file.DataOffset, len(data))
			}
			if ti.SizeBytes < 0 {
				t.Fatalf("tensor %q of ggml type %d accepted with an unknown size", ti.Name, ti.GGMLType)
			}
			if ti.Offset+ti.SizeBytes > int64(len(data)) {
				t.Fatalf("tensor %q [%d, +%d) past the end (%d)", ti.Name, ti.Offset, ti.SizeBytes, len(data))
			}
			if got, ok := file.Tensor(ti.Name); !ok || got.Offset != ti.Offset {
				t.Fatalf("Tensor(%q) lookup", ti.Name)
			}
			if ti.DType.Valid() {
				d, err := file.TensorData(ti)
				if err != nil || int64(len(d)) != ti.SizeBytes {
					t.Fatalf("TensorData(%q): %d bytes, %v", ti.Name, len(d), err)
				}
			}
		}
		for _, kv := range file.Metadata {
			if v, ok := file.Get(kv.Key); !ok || v.Type != kv.Value.Type {
				t.Fatalf("Get(%q)", kv.Key)
			}
		}
		once := rewrite(t, file)
		file2, err := Parse(once, "fuzz-rewrite")
		if err != nil {
			t.Fatalf("a rewrite of an accepted file does not parse: %v", err)
		}
		if twice := rewrite(t, file2); !bytes.Equal(once, twice) {
			t.Fatalf("rewriting is not idempotent: %d then %d bytes", len(once), len(twice))
		}
	})
}
