package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/models/gguf"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// TestGGUFStories260KTable: the tensor table lists every tensor of the file
// with its type and shape; the metadata shows the facts README.md states.
func TestGGUFStories260KTable(t *testing.T) {
	model := sharedModel(t, "stories260K.gguf")
	code, out, errOut := runKiln(t, "gguf", model)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	f, err := gguf.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !strings.Contains(out, "GGUF version 3") || !strings.Contains(out, fmt.Sprintf("%d tensors", len(f.Tensors))) {
		t.Errorf("no header line with the version and tensor count:\n%s", firstLines(out, 3))
	}
	// From ../shared/models/README.md: architecture llama, embedding 64, 5
	// layers, 8 heads, 4 KV heads, vocabulary 512, all tensors F32.
	for _, re := range []string{
		`(?m)^  general\.architecture +string +"llama"$`,
		`(?m)^  llama\.embedding_length +uint32 +64$`,
		`(?m)^  llama\.block_count +uint32 +5$`,
		`(?m)^  llama\.attention\.head_count +uint32 +8$`,
		`(?m)^  llama\.attention\.head_count_kv +uint32 +4$`,
		`(?m)^  tokenizer\.ggml\.tokens +\[string × 512\] +\["<unk>", "<s>", "</s>", .*… \(504 more\)\]$`,
		`(?m)^ +0 +token_embd\.weight +F32 +\[512 64\] +32768 +\d+ +131072 *$`,
		`(?m)^ +\d+ +blk\.4\.ffn_down\.weight +F32 +\[64 172\] +11008 +\d+ +44032 *$`,
		`(?m)^ +\d+ +output\.weight +F32 +\[512 64\] +32768 +\d+ +131072 *$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output does not match %s", re)
		}
	}
	rows := regexp.MustCompile(`(?m)^ +\d+ +(\S+) +F32 +\[`).FindAllStringSubmatch(out, -1)
	if len(rows) != len(f.Tensors) {
		t.Fatalf("%d tensor rows, the file has %d tensors", len(rows), len(f.Tensors))
	}
	for i, r := range rows {
		if r[1] != f.Tensors[i].Name {
			t.Errorf("row %d names %s, the file's tensor %d is %s", i, r[1], i, f.Tensors[i].Name)
		}
	}
}

// TestGGUFDequantStories260K: -dequant of an F32 tensor writes its values.
func TestGGUFDequantStories260K(t *testing.T) {
	model := sharedModel(t, "stories260K.gguf")
	outPath := filepath.Join(t.TempDir(), "q.f32")
	code, out, errOut := runKiln(t, "gguf", model, "-tensor", "blk.0.attn_q.weight", "-dequant", "-out", outPath)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	if !regexp.MustCompile(`blk\.0\.attn_q\.weight +F32 +\[64 64\]`).MatchString(out) || !strings.Contains(out, "wrote 4096 float32 values") {
		t.Errorf("output:\n%s", out)
	}
	f, err := gguf.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Tensor("blk.0.attn_q.weight")
	data, err := f.TensorData(info)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, info.NumElements())
	if err := tensor.Dequantize(info.DType, data, want); err != nil {
		t.Fatal(err)
	}
	compareFloatFile(t, outPath, want)
}

// TestGGUFDequantBlockFormats writes a file with a tensor of each block
// format and checks -dequant against tensor.Dequantize of the same bytes,
// and a tensor large enough to be converted in several chunks.
func TestGGUFDequantBlockFormats(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	w := gguf.NewWriter(3)
	w.SetString("general.architecture", "test")
	type entry struct {
		name  string
		dt    tensor.DType
		shape []int
	}
	entries := []entry{
		{"q8_0", tensor.Q8_0, []int{3, 64}},
		{"q4_0", tensor.Q4_0, []int{2, 32}},
		{"q4_k", tensor.Q4_K, []int{2, 256}},
		{"q6_k", tensor.Q6_K, []int{1, 512}},
		{"f16", tensor.F16, []int{5, 3}},
		{"bf16", tensor.BF16, []int{4}},
		// 1100 rows of 1024: more than one chunk of about 2^20 elements.
		{"big_q8_0", tensor.Q8_0, []int{1100, 1024}},
	}
	stored := map[string][]byte{}
	for _, e := range entries {
		n := 1
		for _, d := range e.shape {
			n *= d
		}
		vals := make([]float32, n)
		for i := range vals {
			vals[i] = float32(rng.NormFloat64())
		}
		var data []byte
		var err error
		if e.dt.IsQuantized() {
			data, err = tensor.Quantize(e.dt, vals)
		} else {
			var ok bool
			data, ok = tensor.EncodeFloats(e.dt, vals)
			if !ok {
				t.Fatalf("encode %v", e.dt)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		stored[e.name] = data
		if err := w.AddTensor(e.name, e.dt, e.shape, data); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "blocks.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		outPath := filepath.Join(dir, e.name+".f32")
		// Flags before the file work too.
		code, _, errOut := runKiln(t, "gguf", "-tensor", e.name, "-dequant", "-out", outPath, path)
		if code != 0 {
			t.Fatalf("%s: exit %d, stderr:\n%s", e.name, code, errOut)
		}
		want := make([]float32, len(stored[e.name])/e.dt.BlockBytes()*e.dt.BlockElems())
		if err := tensor.Dequantize(e.dt, stored[e.name], want); err != nil {
			t.Fatal(err)
		}
		compareFloatFile(t, outPath, want)
	}
}

func compareFloatFile(t *testing.T, path string, want []float32) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 4*len(want) {
		t.Fatalf("%s: %d bytes, want %d float32", path, len(raw), len(want))
	}
	for i, w := range want {
		got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		if math.Float32bits(got) != math.Float32bits(w) {
			t.Fatalf("%s: value %d = %v, tensor.Dequantize gives %v", path, i, got, w)
		}
	}
}

func TestGGUFErrors(t *testing.T) {
	dir := t.TempDir()
	model := builtinModelFile(t)
	truncated := filepath.Join(dir, "truncated.gguf")
	data, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	// A tensor of a ggml type kiln has no dtype for (Q5_K, 176 bytes a block).
	unsupported := filepath.Join(dir, "q5k.gguf")
	if err := os.WriteFile(unsupported, q5kFile(t), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.f32")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "no GGUF file given"},
		{[]string{filepath.Join(dir, "missing.gguf")}, 1, "missing.gguf"},
		{[]string{truncated}, 1, "truncated.gguf"},
		{[]string{model, "-tensor", "no.such.tensor"}, 1, `no tensor named "no.such.tensor"`},
		{[]string{model, "-tensor", "output.weight", "-dequant"}, 2, "-dequant needs -out FILE"},
		{[]string{model, "-dequant", "-out", out}, 2, "-dequant needs -tensor NAME"},
		{[]string{model, "-out", out}, 2, "-out is only for -dequant"},
		{[]string{model, "extra"}, 2, "unexpected arguments: extra"},
		{[]string{model, "-tensor", "output.weight", "-dequant", "-out", filepath.Join(dir, "no-such-dir", "x.f32")}, 1, "no-such-dir"},
		{[]string{unsupported, "-tensor", "w", "-dequant", "-out", out}, 1, "tensor w has ggml type Q5_K, which kiln cannot dequantize"},
	} {
		code, _, errOut := runKiln(t, append([]string{"gguf"}, c.args...)...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("kiln gguf %q: exit %d, stderr %q; want exit %d and %q", c.args, code, errOut, c.code, c.want)
		}
		if strings.Contains(errOut, "panic") {
			t.Errorf("kiln gguf %q panicked: %s", c.args, errOut)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a failed -dequant left %s behind", out)
	}
	// The table of a file with an unsupported type still prints.
	code, stdout, errOut := runKiln(t, "gguf", unsupported)
	if code != 0 || !regexp.MustCompile(`(?m)^ +0 +w +Q5_K +\[256\] +256 +\d+ +176 *$`).MatchString(stdout) {
		t.Errorf("kiln gguf of a Q5_K file: exit %d, stdout:\n%s\nstderr: %s", code, stdout, errOut)
	}
}

// q5kFile builds, byte by byte, a GGUF v3 file with no metadata and one
// Q5_K tensor "w" of 256 elements (one 176-byte block of zeros).
func q5kFile(t *testing.T) []byte {
	t.Helper()
	var b []byte
	u32 := func(v uint32) { b = binary.LittleEndian.AppendUint32(b, v) }
	u64 := func(v uint64) { b = binary.LittleEndian.AppendUint64(b, v) }
	b = append(b, "GGUF"...)
	u32(3) // version
	u64(1) // tensors
	u64(0) // metadata
	u64(1) // name length
	b = append(b, 'w')
	u32(1)   // n_dims
	u64(256) // ne[0]
	u32(13)  // GGML_TYPE_Q5_K
	u64(0)   // offset in the data section
	for len(b)%gguf.DefaultAlignment != 0 {
		b = append(b, 0)
	}
	return append(b, make([]byte, 176)...)
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
