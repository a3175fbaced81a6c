package synthetic

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/kiln-gpu/kiln/models/gguf"
	"github.com/kiln-gpu/kiln/models/llama"
	"github.com/kiln-gpu/kiln/models/tokenizer"
	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// tiny is a small spec every weight type can take (256-wide rows: one
// K-quant super-block), cheap enough to run on the CPU in a test.
func tiny(wt tensor.DType) Spec {
	return Spec{
		Name: "tiny", Dim: 256, Layers: 2, Heads: 4, KVHeads: 2, FFNDim: 512,
		Vocab: 400, ContextLen: 256, RopeBase: 10000, WeightType: wt, Seed: 7,
	}
}

func TestPresetsHaveTheRealShapes(t *testing.T) {
	// Meta-Llama-3-8B's published parameter count.
	if n, err := Llama3_8B(tensor.F16).ParamCount(); err != nil || n != 8_030_261_248 {
		t.Errorf("Llama3_8B has %d parameters (%v), want 8030261248", n, err)
	}
	// Small100M by hand: embedding and output 32000×768, per layer q and o
	// 768×768, k and v 256×768, gate/up/down 2048×768, two norms; a final norm.
	want := int64(2*32000*768 + 12*(2*768*768+2*256*768+3*2048*768+2*768) + 768)
	if n, err := Small100M(tensor.F32).ParamCount(); err != nil || n != want {
		t.Errorf("Small100M has %d parameters (%v), want %d", n, err, want)
	}
	// Q4_K: 144 bytes per 256 matrix elements, norms 4 bytes per element:
	// 65 norm vectors of 4096 in LLaMA-3-8B.
	norms := int64(65 * 4096)
	wantBytes := (8_030_261_248-norms)/256*144 + 4*norms
	if b, err := Llama3_8B(tensor.Q4_K).WeightBytes(); err != nil || b != wantBytes {
		t.Errorf("Llama3_8B Q4_K weights are %d bytes (%v), want %d", b, err, wantBytes)
	}
	for _, s := range []Spec{Llama3_8B(tensor.Q4_K), Small100M(tensor.Q8_0)} {
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		field  string
		change func(*Spec)
	}{
		{"Dim", func(s *Spec) { s.Dim = 0 }},
		{"Layers", func(s *Spec) { s.Layers = -1 }},
		{"KVHeads", func(s *Spec) { s.KVHeads = 3 }},
		{"Heads", func(s *Spec) { s.Heads = 3 }},
		{"head dimension", func(s *Spec) { s.Dim, s.Heads, s.KVHeads = 512, 1, 1 }},
		{"FFNDim", func(s *Spec) { s.FFNDim = 300 }},
		{"Vocab", func(s *Spec) { s.Vocab = 258 }},
		{"WeightType", func(s *Spec) { s.WeightType = tensor.I32 }},
		{"RopeBase", func(s *Spec) { s.RopeBase = 0 }},
		{"RMSEps", func(s *Spec) { s.RMSEps = float32(math.NaN()) }},
		{"Name", func(s *Spec) { s.Name = "" }},
	} {
		s := tiny(tensor.Q4_K)
		tc.change(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Validate() = %v, want an error naming %s", tc.field, err, tc.field)
		}
		if _, err := Build(s); err == nil {
			t.Errorf("%s: Build accepted an invalid spec", tc.field)
		}
	}
}

func TestVocabulary(t *testing.T) {
	for _, n := range []int{MinVocab, MinVocab + 1, 400, 32000} {
		tokens, scores, types := Vocabulary(n)
		if len(tokens) != n || len(scores) != n || len(types) != n {
			t.Fatalf("Vocabulary(%d): %d tokens, %d scores, %d types", n, len(tokens), len(scores), len(types))
		}
		seen := map[string]bool{}
		for id, p := range tokens {
			if seen[p] {
				t.Fatalf("Vocabulary(%d): %q twice", n, p)
			}
			seen[p] = true
			// Every multi-letter word's prefix is a piece, so merges can
			// build it.
			if w, ok := strings.CutPrefix(p, "\u2581"); ok && len(w) > 1 && !seen["\u2581"+w[:len(w)-1]] {
				t.Errorf("Vocabulary(%d): token %d %q before its prefix", n, id, p)
			}
		}
		if tokens[3] != "<0x00>" || tokens[258] != "<0xFF>" || types[3] != 6 || types[1] != 3 {
			t.Errorf("Vocabulary(%d): byte or control tokens misplaced: %q %q types %d %d", n, tokens[3], tokens[258], types[3], types[1])
		}
	}
}

// TestEveryWeightTypeLoadsAndRuns builds the tiny spec in each weight type,
// parses it, checks metadata, tensors, tokenizer and weight statistics, and
// runs it on the CPU.
func TestEveryWeightTypeLoadsAndRuns(t *testing.T) {
	dev, err := backend.Open(context.Background(), "cpu", backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	for _, wt := range WeightTypes {
		t.Run(wt.String(), func(t *testing.T) {
			spec := tiny(wt)
			data, err := Build(spec)
			if err != nil {
				t.Fatal(err)
			}
			if addr := uintptr(unsafe.Pointer(unsafe.SliceData(data))); addr%64 != 0 {
				t.Errorf("Build's slice starts at %#x, not 64-byte aligned", addr)
			}
			f, err := gguf.Parse(data, spec.FileName())
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			checkFile(t, f, spec)
			checkWeights(t, f, spec)

			m, err := llama.LoadFile(context.Background(), dev, f, llama.Options{MaxSequences: 1, ContextLen: 64})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			c := m.Config
			if c.Dim != spec.Dim || c.NLayers != spec.Layers || c.NHeads != spec.Heads || c.NKVHeads != spec.KVHeads ||
				c.FFNDim != spec.FFNDim || c.VocabSize != spec.Vocab || c.ContextLen != spec.ContextLen ||
				c.RopeBase != spec.RopeBase || c.RMSEps != 1e-5 || c.TiedEmbeddings || c.QKVBias || c.Arch != "llama" {
				t.Errorf("config %+v does not match the spec %+v", c, spec)
			}
			seq, err := m.NewSequence()
			if err != nil {
				t.Fatal(err)
			}
			defer seq.Free()
			prompt := []int32{1, 300, 17, 399, 250}
			res, err := m.Step(context.Background(), []llama.Request{{Seq: seq, Tokens: prompt, AllLogits: true}})
			if err != nil {
				t.Fatal(err)
			}
			for i, row := range res[0].Logits {
				checkLogits(t, fmt.Sprintf("prompt token %d", i), row, spec.Vocab)
			}
			res, err = m.Step(context.Background(), []llama.Request{{Seq: seq, Tokens: []int32{42}}})
			if err != nil {
				t.Fatal(err)
			}
			checkLogits(t, "decode", res[0].Logits[0], spec.Vocab)
		})
	}
}

// checkFile compares the parsed file with the spec: llama.cpp's keys and
// types, the tensor table, a working tokenizer.
func checkFile(t *testing.T, f *gguf.File, spec Spec) {
	t.Helper()
	if v, err := f.String("general.architecture"); err != nil || v != "llama" {
		t.Errorf("general.architecture = %q (%v)", v, err)
	}
	for key, want := range map[string]uint64{
		"llama.vocab_size": uint64(spec.Vocab), "llama.context_length": uint64(spec.ContextLen),
		"llama.embedding_length": uint64(spec.Dim), "llama.block_count": uint64(spec.Layers),
		"llama.feed_forward_length": uint64(spec.FFNDim), "llama.attention.head_count": uint64(spec.Heads),
		"llama.attention.head_count_kv": uint64(spec.KVHeads), "llama.rope.dimension_count": uint64(spec.Dim / spec.Heads),
		"tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
	} {
		v, ok := f.Get(key)
		if !ok || v.Type != gguf.TypeUint32 || v.U64 != want {
			t.Errorf("%s = %+v (present %v), want uint32 %d", key, v, ok, want)
		}
	}
	if v, ok := f.Get("llama.rope.freq_base"); !ok || v.Type != gguf.TypeFloat32 || v.F64 != float64(spec.RopeBase) {
		t.Errorf("llama.rope.freq_base = %+v, want float32 %v", v, spec.RopeBase)
	}
	want, err := spec.Tensors()
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tensors) != len(want) || len(want) != 3+9*spec.Layers {
		t.Fatalf("%d tensors in the file, %d in the spec, want %d", len(f.Tensors), len(want), 3+9*spec.Layers)
	}
	for i, ti := range f.Tensors {
		if ti.Name != want[i].Name || ti.DType != want[i].DType || fmt.Sprint(ti.Shape) != fmt.Sprint(want[i].Shape) {
			t.Errorf("tensor %d: %s %v %v, want %s %v %v", i, ti.Name, ti.DType, ti.Shape, want[i].Name, want[i].DType, want[i].Shape)
		}
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != spec.Vocab {
		t.Errorf("tokenizer has %d tokens, want %d", tok.VocabSize(), spec.Vocab)
	}
	const text = "hello, synthetic World! ünïcode"
	ids, err := tok.Encode(text, tokenizer.EncodeOptions{AddBOS: true})
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] != 1 || tok.Decode(ids) != text {
		t.Errorf("encode/decode: %v -> %q, want BOS first and %q", ids, tok.Decode(ids), text)
	}
}

// checkWeights dequantises two matrices (row lengths Dim and FFNDim) and
// checks the statistics the package promises: finite, mean about 0,
// standard deviation about 1/sqrt(k); and the norms are ones.
func checkWeights(t *testing.T, f *gguf.File, spec Spec) {
	t.Helper()
	for _, name := range []string{"blk.1.attn_q.weight", "blk.0.ffn_down.weight", "output.weight"} {
		ti, _ := f.Tensor(name)
		raw, err := f.TensorData(ti)
		if err != nil {
			t.Fatal(err)
		}
		vals := make([]float32, ti.Shape[0]*ti.Shape[1])
		if err := tensor.Dequantize(ti.DType, raw, vals); err != nil {
			t.Fatal(err)
		}
		var sum, sumSq float64
		for i, v := range vals {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s element %d is %v", name, i, v)
			}
			sum += float64(v)
			sumSq += float64(v) * float64(v)
		}
		n := float64(len(vals))
		mean, std := sum/n, math.Sqrt(sumSq/n-(sum/n)*(sum/n))
		wantStd := 1 / math.Sqrt(float64(ti.Shape[1]))
		// Quantisation to 4 bits adds up to about 15% of noise power.
		if math.Abs(std/wantStd-1) > 0.15 || math.Abs(mean) > 0.05*wantStd {
			t.Errorf("%s (%v): mean %.3g, std %.4g; want about 0 and %.4g", name, ti.DType, mean, std, wantStd)
		}
	}
	ti, _ := f.Tensor("blk.0.ffn_norm.weight")
	raw, _ := f.TensorData(ti)
	for i, v := range tensor.BytesF32(raw) {
		if v != 1 {
			t.Fatalf("blk.0.ffn_norm.weight[%d] = %v, want 1", i, v)
		}
	}
}

// checkLogits wants finite logits of unit-order spread (the output rows
// have unit variance and the final norm gives unit-RMS inputs).
func checkLogits(t *testing.T, what string, logits []float32, vocab int) {
	t.Helper()
	if len(logits) != vocab {
		t.Fatalf("%s: %d logits, want %d", what, len(logits), vocab)
	}
	var sum, sumSq float64
	for i, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("%s: logit %d is %v", what, i, v)
		}
		sum += float64(v)
		sumSq += float64(v) * float64(v)
	}
	n := float64(len(logits))
	if std := math.Sqrt(sumSq/n - (sum/n)*(sum/n)); std < 0.3 || std > 3 {
		t.Errorf("%s: logits have standard deviation %.3g, want about 1", what, std)
	}
}

func TestOutputIsDeterministicAndStreamed(t *testing.T) {
	spec := tiny(tensor.Q4_K)
	built, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	var streamed bytes.Buffer
	n, err := Write(&streamed, spec)
	if err != nil || n != int64(len(built)) || !bytes.Equal(streamed.Bytes(), built) {
		t.Fatalf("Write gave %d bytes (%v), differing from Build's %d", n, err, len(built))
	}
	// One core draws the same rows as many.
	prev := runtime.GOMAXPROCS(1)
	one, err := Build(spec)
	runtime.GOMAXPROCS(prev)
	if err != nil || !bytes.Equal(one, built) {
		t.Errorf("Build with GOMAXPROCS=1 differs from GOMAXPROCS=%d (%v)", prev, err)
	}
	spec.Seed++
	other, err := Build(spec)
	if err != nil || bytes.Equal(other, built) || len(other) != len(built) {
		t.Errorf("another seed gave the same bytes, or another size (%v)", err)
	}
	path := t.TempDir() + "/" + spec.FileName()
	if err := WriteFile(path, spec); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Tensors) != 3+9*spec.Layers {
		t.Errorf("the written file has %d tensors", len(f.Tensors))
	}
}

func TestParse(t *testing.T) {
	spec := tiny(tensor.Q8_0)
	f, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Path != "synthetic/tiny-Q8_0.gguf" {
		t.Errorf("Path %q", f.Path)
	}
	if name, err := f.String("general.name"); err != nil || name != "synthetic tiny Q8_0" {
		t.Errorf("general.name %q (%v)", name, err)
	}
	if ft, err := f.Uint("general.file_type"); err != nil || ft != 7 { // LLAMA_FTYPE_MOSTLY_Q8_0
		t.Errorf("general.file_type %d (%v), want 7", ft, err)
	}
}

// BenchmarkWriteLlama3_8B_Q4_K streams the 8B Q4_K model (about 4.6 GB)
// to io.Discard: the cost of generating it, without memory.
func BenchmarkWriteLlama3_8B_Q4_K(b *testing.B) {
	spec := Llama3_8B(tensor.Q4_K)
	size, _ := spec.WeightBytes()
	b.SetBytes(size)
	for b.Loop() {
		if _, err := Write(io.Discard, spec); err != nil {
			b.Fatal(err)
		}
	}
}
