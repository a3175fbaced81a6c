package tokenizer

import (
	"bytes"
	"testing"

	"github.com/kiln-gpu/kiln/models/gguf"
)

// testVocab describes a small vocabulary to write as a GGUF file with the
// gguf Writer and read back through FromGGUF, as a model file would be.
type testVocab struct {
	model  string
	pre    string // "" leaves tokenizer.ggml.pre out
	tokens []string
	types  []int32   // nil leaves token_type out
	scores []float32 // nil leaves scores out
	merges []string  // nil leaves merges out
	extra  func(w *gguf.Writer)
}

// encodeGGUF writes v as a GGUF file and returns its bytes.
func (v testVocab) encodeGGUF(t testing.TB) []byte {
	t.Helper()
	w := gguf.NewWriter(3)
	w.SetString("general.architecture", "test")
	if v.model != "" {
		w.SetString("tokenizer.ggml.model", v.model)
	}
	if v.pre != "" {
		w.SetString("tokenizer.ggml.pre", v.pre)
	}
	if v.tokens != nil {
		w.SetStrings("tokenizer.ggml.tokens", v.tokens)
	}
	if v.types != nil {
		w.SetInt32s("tokenizer.ggml.token_type", v.types)
	}
	if v.scores != nil {
		w.SetFloat32s("tokenizer.ggml.scores", v.scores)
	}
	if v.merges != nil {
		w.SetStrings("tokenizer.ggml.merges", v.merges)
	}
	if v.extra != nil {
		v.extra(w)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatalf("writing the test vocabulary: %v", err)
	}
	return buf.Bytes()
}

// load reads v back through gguf.Parse and FromGGUF.
func (v testVocab) load(t testing.TB) (*Tokenizer, error) {
	t.Helper()
	f, err := gguf.Parse(v.encodeGGUF(t), "test.gguf")
	if err != nil {
		t.Fatalf("gguf.Parse of the test vocabulary: %v", err)
	}
	defer f.Close()
	return FromGGUF(f)
}

// mustLoad is load that fails the test on error.
func (v testVocab) mustLoad(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := v.load(t)
	if err != nil {
		t.Fatalf("FromGGUF: %v", err)
	}
	return tok
}

// gpt2ByteSymbols are the 256 characters of GPT-2's byte map, in byte order,
// written out from the published rule (printable Latin-1 maps to itself, the
// other bytes to U+0100 onwards in order) independently of bytes.go.
func gpt2ByteSymbols() []string {
	syms := make([]string, 256)
	n := 0
	for b := 0; b < 256; b++ {
		switch {
		case b >= '!' && b <= '~', b >= 0xA1 && b <= 0xAC, b >= 0xAE && b <= 0xFF:
			syms[b] = string(rune(b))
		default:
			syms[b] = string(rune(0x100 + n))
			n++
		}
	}
	return syms
}

// byteLevelVocab is a byte-level BPE vocabulary whose ids 0-255 are the byte
// symbols in byte order (so byte b is token b), followed by extra tokens, with
// the given merges.
func byteLevelVocab(pre string, extra []string, merges []string) testVocab {
	tokens := append(gpt2ByteSymbols(), extra...)
	types := make([]int32, len(tokens))
	for i := range types {
		types[i] = int32(TokenNormal)
	}
	if merges == nil {
		merges = []string{}
	}
	return testVocab{model: "gpt2", pre: pre, tokens: tokens, types: types, merges: merges}
}

// spmVocab is a SentencePiece vocabulary laid out like LLaMA's: <unk> 0, <s> 1,
// </s> 2, the byte tokens <0x00>..<0xFF> as ids 3-258, then the given pieces
// with their scores.
func spmVocab(pieces []string, scores []float32) testVocab {
	tokens := []string{"<unk>", "<s>", "</s>"}
	types := []int32{int32(TokenUnknown), int32(TokenControl), int32(TokenControl)}
	sc := []float32{0, 0, 0}
	for b := 0; b < 256; b++ {
		tokens = append(tokens, "<0x"+string("0123456789ABCDEF"[b>>4])+string("0123456789ABCDEF"[b&15])+">")
		types = append(types, int32(TokenByte))
		sc = append(sc, 0)
	}
	tokens = append(tokens, pieces...)
	for range pieces {
		types = append(types, int32(TokenNormal))
	}
	sc = append(sc, scores...)
	return testVocab{model: "llama", tokens: tokens, types: types, scores: sc}
}

// spmByte is the id of byte b's token in an spmVocab.
func spmByte(b byte) int32 { return 3 + int32(b) }

// spmPiece is the id of the i-th extra piece of an spmVocab.
func spmPiece(i int) int32 { return 259 + int32(i) }
