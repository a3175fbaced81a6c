package tokenizer

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-gpu/kiln/models/gguf"
)

// The conformance files live in ../shared beside the repository (see
// ../shared/vocab/README.md and ../shared/models/README.md). They may not be
// copied into the repository, so the tests that need them read them there
// (or from $KILN_SHARED) and skip, saying why, when they are absent (a clean
// clone in CI without the folder).

// sharedPath returns the path of a file under the shared folder, or skips t.
func sharedPath(t testing.TB, rel string) string {
	t.Helper()
	dir := os.Getenv("KILN_SHARED")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared")
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("conformance file %s not available (set KILN_SHARED to the shared folder to run this test): %v", p, err)
	}
	return p
}

// openTokenizer opens a GGUF file and reads its tokenizer.
func openTokenizer(t testing.TB, path string) *Tokenizer {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatalf("gguf.Open: %v", err)
	}
	defer f.Close()
	tok, err := FromGGUF(f)
	if err != nil {
		t.Fatalf("FromGGUF(%s): %v", path, err)
	}
	return tok
}

// vocabVector is one conformance case: a text and llama.cpp's token ids.
type vocabVector struct {
	text string
	ids  []int32
}

// readVectors reads X.gguf.inp and X.gguf.out (format in vocab/README.md).
func readVectors(t testing.TB, vocabPath string) []vocabVector {
	t.Helper()
	inp, err := os.ReadFile(vocabPath + ".inp")
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(vocabPath + ".out")
	if err != nil {
		t.Fatal(err)
	}
	texts := strings.Split(string(inp), "\n__ggml_vocab_test__\n")
	if texts[len(texts)-1] != "" {
		t.Fatalf("%s.inp does not end with the separator", vocabPath)
	}
	texts = texts[:len(texts)-1]
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("%s: %d test strings but %d output lines", vocabPath, len(texts), len(lines))
	}
	vectors := make([]vocabVector, len(texts))
	for i, text := range texts {
		vectors[i].text = text
		for _, field := range strings.Fields(lines[i]) {
			id, err := strconv.ParseInt(field, 10, 32)
			if err != nil {
				t.Fatalf("%s.out line %d: %v", vocabPath, i+1, err)
			}
			vectors[i].ids = append(vectors[i].ids, int32(id))
		}
	}
	return vectors
}

func TestReferenceVectors(t *testing.T) {
	for _, name := range []string{"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"} {
		t.Run(name, func(t *testing.T) {
			path := sharedPath(t, filepath.Join("vocab", name))
			tok := openTokenizer(t, path)
			vectors := readVectors(t, path)
			if len(vectors) != 46 {
				t.Errorf("%d vectors, the README says 46", len(vectors))
			}
			matched := 0
			for i, v := range vectors {
				got, err := tok.Encode(v.text, EncodeOptions{ParseSpecial: true})
				if err != nil {
					t.Errorf("vector %d %q: %v", i, v.text, err)
					continue
				}
				if !equalIDs(got, v.ids) {
					t.Errorf("vector %d %q:\n got  %v\n want %v", i, v.text, got, v.ids)
					continue
				}
				// The ids decode back to the text (these texts are valid
				// UTF-8 without "▁").
				if dec := tok.Decode(got); dec != v.text {
					t.Errorf("vector %d: Decode(Encode(%q)) = %q", i, v.text, dec)
					continue
				}
				matched++
			}
			t.Logf("%s: %d of %d reference vectors match", name, matched, len(vectors))
		})
	}
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// storiesReference reads the greedy reference text and the first greedy
// token ids from ../shared/models/README.md.
func storiesReference(t *testing.T) (text string, firstIDs []int32) {
	t.Helper()
	readme, err := os.ReadFile(sharedPath(t, filepath.Join("models", "README.md")))
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i := strings.Index(s, "exactly this text")
	if i < 0 {
		t.Fatal("models/README.md: no reference text section")
	}
	s = s[i:]
	start := strings.Index(s, "```\n")
	end := strings.Index(s[start+4:], "\n```")
	if start < 0 || end < 0 {
		t.Fatal("models/README.md: no code block with the reference text")
	}
	text = s[start+4 : start+4+end]
	const idsLead = "The first greedy token ids are "
	j := strings.Index(s, idsLead)
	if j < 0 {
		t.Fatal("models/README.md: no first greedy token ids")
	}
	line := s[j+len(idsLead):]
	line = line[:strings.IndexAny(line, ".\n")]
	for _, field := range strings.Fields(line) {
		id, err := strconv.ParseInt(field, 10, 32)
		if err != nil {
			t.Fatalf("models/README.md first ids: %v", err)
		}
		firstIDs = append(firstIDs, int32(id))
	}
	return text, firstIDs
}

func TestStories260KVocabulary(t *testing.T) {
	path := sharedPath(t, filepath.Join("models", "stories260K.gguf"))
	tok := openTokenizer(t, path)
	if tok.VocabSize() != 512 || tok.Model() != ModelSentencePiece {
		t.Fatalf("stories260K: %d tokens, model %q; the README says 512 SentencePiece tokens", tok.VocabSize(), tok.Model())
	}
	text, firstIDs := storiesReference(t)
	if len(firstIDs) != 12 || !strings.HasPrefix(text, "Once upon a time") {
		t.Fatalf("README parse: %d ids, text %.20q", len(firstIDs), text)
	}

	// The greedy text round-trips through Encode and Decode.
	ids, err := tok.Encode(text, EncodeOptions{AddBOS: true})
	if err != nil {
		t.Fatal(err)
	}
	if bos, _ := tok.BOS(); ids[0] != bos {
		t.Errorf("Encode with AddBOS starts with %d, want BOS %d", ids[0], bos)
	}
	if got := tok.Decode(ids); got != text {
		t.Errorf("Decode(Encode(text)) differs from the text:\n got  %q\n want %q", got, text)
	}
	// So does streaming decoding.
	d := tok.NewDecoder()
	var streamed strings.Builder
	for _, id := range ids {
		streamed.WriteString(d.Next(id))
	}
	streamed.WriteString(d.Flush())
	if streamed.String() != text {
		t.Errorf("streamed decoding differs from the text")
	}

	// The README's first greedy ids come from generation, not from
	// encoding the text, so they are not compared with Encode's ids; but
	// after BOS they decode to the start of the reference text (the
	// leading space of "▁Once" dropped).
	prefix := tok.Decode(append([]int32{1}, firstIDs...))
	if !strings.HasPrefix(text, prefix) || len(prefix) < 20 {
		t.Errorf("the first greedy ids decode to %q, not a prefix of the reference text", prefix)
	}
	t.Logf("first greedy ids decode to %q; Encode gives %d tokens for the %d-byte text", prefix, len(ids), len(text))
}

// TestSharedVocabRoundTrips checks invalid UTF-8 and other awkward inputs
// on the real vocabularies: Encode never fails and Decode gives the bytes back.
func TestSharedVocabRoundTrips(t *testing.T) {
	inputs := []string{
		"\xff", "\xc3(", "a\xe2\x82", "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80", "overlong \xc0\xaf",
		"\x80\x80", "é\xe9", "\x00nul\x00", "tabs\t\tand\r\nCRLF", "  leading and trailing  ", "<s> </s> <unk> <|endoftext|>",
		"emoji 👩‍👩‍👧‍👦 flags 🇫🇷", "Ὗ ώ ΐ Ω K", "日本語のテキスト", "ﬁ ligature", "\u200b\u2028\u3000",
	}
	for _, name := range []string{"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"} {
		tok := openTokenizer(t, sharedPath(t, filepath.Join("vocab", name)))
		for _, s := range inputs {
			ids, err := tok.Encode(s, EncodeOptions{})
			if err != nil {
				t.Errorf("%s: Encode(%q): %v", name, s, err)
				continue
			}
			if got := tok.Decode(ids); got != s {
				t.Errorf("%s: Decode(Encode(%q)) = %q", name, s, got)
			}
		}
	}
}

// TestConcurrentUse shares one *Tokenizer among goroutines (run with -race):
// each encodes and decodes every reference vector and must get the ids the
// tokenizer gives when used alone.
func TestConcurrentUse(t *testing.T) {
	for _, name := range []string{"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"} {
		path := sharedPath(t, filepath.Join("vocab", name))
		tok := openTokenizer(t, path)
		vectors := readVectors(t, path)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range vectors {
					v := vectors[(i+g)%len(vectors)]
					got, err := tok.Encode(v.text, EncodeOptions{ParseSpecial: true})
					if err != nil || !slices.Equal(got, v.ids) {
						t.Errorf("%s goroutine %d: %q: %v %v, want %v", name, g, v.text, got, err, v.ids)
						return
					}
					_ = tok.Decode(got)
				}
			}()
		}
		wg.Wait()
	}
}
