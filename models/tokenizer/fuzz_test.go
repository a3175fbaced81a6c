package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzTokenizers returns the vocabularies the fuzz target runs: the hand-made
// SentencePiece one, a byte-level one (the 256 byte symbols plus a few merges)
// under every pre-tokenizer family, and the real ../shared vocabularies when
// they are present.
func fuzzTokenizers(t testing.TB) map[string]*Tokenizer {
	toks := map[string]*Tokenizer{"spm": handSPM().mustLoad(t)}
	extra := []string{"Ġt", "he", "Ġthe", "in", "er", "12", "ĠĠ", "ĊĊ"}
	merges := []string{"Ġ t", "h e", "Ġt he", "i n", "e r", "1 2", "Ġ Ġ", "Ċ Ċ"}
	for _, pre := range []string{"gpt-2", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder", "falcon", "default", "starcoder"} {
		toks[pre] = byteLevelVocab(pre, extra, merges).mustLoad(t)
	}
	dir := os.Getenv("KILN_SHARED")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared")
	}
	for _, name := range []string{"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"} {
		if p := filepath.Join(dir, "vocab", name); fileExists(p) {
			toks[name] = openTokenizer(t, p)
		}
	}
	return toks
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// FuzzEncodeDecode: Encode of arbitrary bytes never fails or panics on these
// vocabularies (they can spell every byte), returns ids inside the
// vocabulary, and Decode gives the input back where the vocabulary can
// represent it (byte-level BPE: always; SentencePiece: unless the text holds
// "▁"). The streaming Decoder's output, concatenated, equals Decode, and for
// valid UTF-8 every piece it returns is valid UTF-8.
func FuzzEncodeDecode(f *testing.F) {
	for _, s := range []string{
		"", "Hello world", " Hello World!", "I'm can't WE'LL", "3333333 3.3 3..3",
		"a\xffb", "\xc3(", "é🚀", "  \n\t\r\n  ", "<s>a</s>", "<|endoftext|>", "<unk>",
		"我想在apple工作1314151天～", "👩‍👩‍👧‍👦", "Cửa Việt", "▁x", "\x00\x01\x02",
	} {
		f.Add([]byte(s))
	}
	toks := fuzzTokenizers(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		s := string(data)
		for name, tok := range toks {
			for _, parseSpecial := range []bool{false, true} {
				ids, err := tok.Encode(s, EncodeOptions{ParseSpecial: parseSpecial})
				if err != nil {
					t.Fatalf("%s: Encode(%q, ParseSpecial %v): %v", name, s, parseSpecial, err)
				}
				if err := tok.CheckIDs(ids); err != nil {
					t.Fatalf("%s: Encode(%q): %v", name, s, err)
				}
				dec := tok.Decode(ids)
				representable := tok.Model() == ModelByteLevelBPE || !strings.Contains(s, spaceMarker)
				if !parseSpecial && representable && dec != s {
					t.Fatalf("%s: Decode(Encode(%q)) = %q", name, s, dec)
				}
				d := tok.NewDecoder()
				var streamed strings.Builder
				for _, id := range ids {
					piece := d.Next(id)
					if utf8.ValidString(dec) && !utf8.ValidString(piece) {
						t.Fatalf("%s: Decoder.Next(%d) returned invalid UTF-8 %q for valid text %q", name, id, piece, dec)
					}
					streamed.WriteString(piece)
				}
				streamed.WriteString(d.Flush())
				if streamed.String() != dec {
					t.Fatalf("%s: streamed %q, Decode %q", name, streamed.String(), dec)
				}
			}
		}
	})
}
