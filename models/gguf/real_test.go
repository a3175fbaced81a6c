package gguf

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// The facts checked here come from ../shared/models/README.md (the model
// card of stories260K) and from llama2.c's layout of its tinyllamas models.
func TestStories260K(t *testing.T) {
	path := sharedFile(t, "models/stories260K.gguf")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Version != 3 || f.Alignment != 32 {
		t.Errorf("version %d, alignment %d", f.Version, f.Alignment)
	}
	if s, err := f.String("general.architecture"); s != "llama" || err != nil {
		t.Errorf("architecture %q %v", s, err)
	}
	for key, want := range map[string]uint64{
		"llama.block_count":               5,
		"llama.embedding_length":          64,
		"llama.feed_forward_length":       172,
		"llama.attention.head_count":      8,
		"llama.attention.head_count_kv":   4,
		"llama.context_length":            2048,
		"llama.rope.dimension_count":      8,
		"tokenizer.ggml.bos_token_id":     1,
		"tokenizer.ggml.eos_token_id":     2,
		"tokenizer.ggml.unknown_token_id": 0,
	} {
		if got, err := f.Uint(key); got != want || err != nil {
			t.Errorf("%s = %d (%v), want %d", key, got, err, want)
		}
	}
	if eps, err := f.Float("llama.attention.layer_norm_rms_epsilon"); err != nil || eps != float64(float32(1e-5)) {
		t.Errorf("rms eps %v %v", eps, err)
	}
	if m, _ := f.String("tokenizer.ggml.model"); m != "llama" {
		t.Errorf("tokenizer model %q", m)
	}
	tokens, err := f.Strings("tokenizer.ggml.tokens")
	if err != nil || len(tokens) != 512 {
		t.Fatalf("%d tokens, %v", len(tokens), err)
	}
	// SentencePiece layout: <unk> <s> </s>, then the 256 byte tokens.
	if tokens[0] != "<unk>" || tokens[1] != "<s>" || tokens[2] != "</s>" || tokens[3] != "<0x00>" || tokens[3+255] != "<0xFF>" {
		t.Errorf("tokens begin %q, byte tokens end %q", tokens[:4], tokens[258])
	}
	if scores, err := f.Float32s("tokenizer.ggml.scores"); err != nil || len(scores) != 512 {
		t.Errorf("%d scores, %v", len(scores), err)
	}
	if types, err := f.Int32s("tokenizer.ggml.token_type"); err != nil || len(types) != 512 || types[1] != 3 || types[3] != 6 {
		// llama.cpp token types: 3 = control (<s>), 6 = byte.
		t.Errorf("token types %v..., %v", types[:4], err)
	}

	// 2 + 9 per block tensors; all F32.
	if len(f.Tensors) != 2+1+9*5 {
		t.Errorf("%d tensors, want %d", len(f.Tensors), 3+9*5)
	}
	var total int64
	for _, ti := range f.Tensors {
		if ti.DType != tensor.F32 {
			t.Errorf("tensor %s is %v, want F32", ti.Name, ti.DType)
		}
		if ti.Offset%32 != 0 || ti.SizeBytes != 4*ti.NumElements() {
			t.Errorf("tensor %s offset %d size %d for %d elements", ti.Name, ti.Offset, ti.SizeBytes, ti.NumElements())
		}
		total += ti.NumElements()
	}
	// "260K parameters": the README's count.
	if total < 250_000 || total > 300_000 {
		t.Errorf("%d parameters, want about 260K", total)
	}
	for name, shape := range map[string][]int{
		"token_embd.weight":        {512, 64},
		"output.weight":            {512, 64},
		"output_norm.weight":       {64},
		"blk.0.attn_q.weight":      {64, 64},
		"blk.0.attn_k.weight":      {32, 64}, // 4 KV heads of 8
		"blk.4.attn_v.weight":      {32, 64},
		"blk.2.ffn_gate.weight":    {172, 64},
		"blk.2.ffn_down.weight":    {64, 172},
		"blk.3.ffn_norm.weight":    {64},
		"blk.3.attn_output.weight": {64, 64},
	} {
		ti, ok := f.Tensor(name)
		if !ok || !slices.Equal(ti.Shape, shape) {
			t.Errorf("tensor %s: %v (found %v), want shape %v", name, ti.Shape, ok, shape)
		}
	}
	// TensorData is the file's bytes at the tensor's offset.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	emb, _ := f.Tensor("token_embd.weight")
	d, err := f.TensorData(emb)
	if err != nil || !bytes.Equal(d, raw[emb.Offset:emb.Offset+emb.SizeBytes]) {
		t.Errorf("TensorData(token_embd.weight): %d bytes, %v", len(d), err)
	}
	norm, _ := f.Tensor("output_norm.weight")
	nd, _ := f.TensorData(norm)
	w := make([]float32, 64)
	if err := tensor.Dequantize(tensor.F32, nd, w); err != nil {
		t.Fatal(err)
	}
	// RMSNorm gains of a trained model: positive, of order one.
	for i, v := range w {
		if !(v > 0.01 && v < 100) {
			t.Errorf("output_norm.weight[%d] = %v", i, v)
			break
		}
	}
}

func TestVocabFiles(t *testing.T) {
	for _, c := range []struct {
		file, model string
		nTokens     int
		merges      bool
	}{
		{"vocab/ggml-vocab-llama-spm.gguf", "llama", 32000, false},
		{"vocab/ggml-vocab-gpt-2.gguf", "gpt2", 50257, true},
	} {
		f, err := Open(sharedFile(t, c.file))
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := f.String("tokenizer.ggml.model"); m != c.model {
			t.Errorf("%s: model %q, want %q", c.file, m, c.model)
		}
		tokens, err := f.Strings("tokenizer.ggml.tokens")
		if err != nil || len(tokens) != c.nTokens {
			t.Errorf("%s: %d tokens, want %d (%v)", c.file, len(tokens), c.nTokens, err)
		}
		merges, err := f.Strings("tokenizer.ggml.merges")
		if c.merges != (err == nil) || (err != nil && !errors.Is(err, ErrKeyNotFound)) {
			t.Errorf("%s: merges %d, %v", c.file, len(merges), err)
		}
		if c.merges && (len(merges) != 50000 || !strings.Contains(merges[0], " ")) {
			t.Errorf("%s: %d merges, first %q", c.file, len(merges), merges[0])
		}
		if len(f.Tensors) != 0 {
			t.Errorf("%s: %d tensors in a vocabulary-only file", c.file, len(f.Tensors))
		}
		f.Close()
	}
}

// rewrite writes a parsed file again through the Writer.
func rewrite(t testing.TB, f *File) []byte {
	t.Helper()
	w := NewWriter(f.Version)
	for _, kv := range f.Metadata {
		w.Set(kv.Key, kv.Value)
	}
	for _, ti := range f.Tensors {
		data := f.data[ti.Offset : ti.Offset+ti.SizeBytes]
		if err := w.AddRawTensor(ti.Name, ti.GGMLType, ti.Shape, data); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The Writer lays files out as gguf-py and llama.cpp do: writing the parsed
// contents of the real files again gives back the same bytes.
func TestRewriteRealFilesBitForBit(t *testing.T) {
	for _, rel := range []string{"models/stories260K.gguf", "vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf"} {
		path := sharedFile(t, rel)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := Parse(raw, rel)
		if err != nil {
			t.Fatal(err)
		}
		got := rewrite(t, f)
		// A file without tensors ends after its metadata, unpadded.
		if !bytes.Equal(got, raw) {
			n := 0
			for n < min(len(got), len(raw)) && got[n] == raw[n] {
				n++
			}
			t.Errorf("%s: rewrite is %d bytes, the file %d; first difference at offset %d", rel, len(got), len(raw), n)
		}
	}
}

// TestTruncatedRealFile cuts stories260K at many lengths; every cut must fail
// cleanly, naming the file.
func TestTruncatedRealFile(t *testing.T) {
	raw, err := os.ReadFile(sharedFile(t, "models/stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	cuts := []int{}
	for n := 0; n < 4096; n++ {
		cuts = append(cuts, n)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		cuts = append(cuts, rng.IntN(len(raw)))
	}
	cuts = append(cuts, len(raw)-1)
	for _, n := range cuts {
		_, err := Parse(raw[:n], "stories-cut")
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrMalformed) || e.Offset > int64(n) {
			t.Fatalf("cut at %d: %v", n, err)
		}
	}
}
