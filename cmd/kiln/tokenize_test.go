package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/models/gguf"
)

// sharedFile returns a file of the ../shared folder beside the repository
// (or $KILN_SHARED), or skips the test: the conformance files may not be
// copied into the repository, so a clean clone without the folder skips
// these checks.
func sharedFile(t *testing.T, rel string) string {
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

// withStdin makes the command read s as standard input for the test.
func withStdin(t *testing.T, s string) {
	t.Helper()
	old := stdin
	stdin = strings.NewReader(s)
	t.Cleanup(func() { stdin = old })
}

// TestTokenizeReferenceVectors runs `kiln tokenize` on every test string of
// the SentencePiece conformance vocabulary and compares the output with the
// expected ids of its .out file.
func TestTokenizeReferenceVectors(t *testing.T) {
	vocab := sharedFile(t, filepath.Join("vocab", "ggml-vocab-llama-spm.gguf"))
	inp, err := os.ReadFile(vocab + ".inp")
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(vocab + ".out")
	if err != nil {
		t.Fatal(err)
	}
	texts := strings.Split(string(inp), "\n__ggml_vocab_test__\n")
	texts = texts[:len(texts)-1]
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(texts) != 46 || len(lines) != 46 {
		t.Fatalf("%d texts and %d output lines, want 46 of each", len(texts), len(lines))
	}
	for i, text := range texts {
		want := strings.Join(strings.Fields(lines[i]), " ") + "\n"
		code, got, errOut := runKiln(t, "tokenize", "-model", vocab, "-text", text)
		if code != 0 || got != want {
			t.Errorf("vector %d %q: exit %d, output %q, want %q (stderr %s)", i, text, code, got, want, errOut)
		}
	}
	// Standard input is read exactly as given.
	withStdin(t, texts[12]) // " Hello world"
	code, got, _ := runKiln(t, "tokenize", "-model", vocab)
	if want := strings.Join(strings.Fields(lines[12]), " ") + "\n"; code != 0 || got != want {
		t.Errorf("stdin %q: exit %d, output %q, want %q", texts[12], code, got, want)
	}
	// -add-bos puts BOS (1) first; special tokens in the text are parsed.
	code, got, _ = runKiln(t, "tokenize", "-model", vocab, "-add-bos", "-text", "Hello world")
	if code != 0 || got != "1 15043 3186\n" {
		t.Errorf("-add-bos: exit %d, output %q, want %q", code, got, "1 15043 3186\n")
	}
	code, got, _ = runKiln(t, "tokenize", "-model", vocab, "-text", "<s>Hello world</s>")
	if code != 0 || got != "1 15043 3186 2\n" {
		t.Errorf("special tokens: exit %d, output %q, want %q", code, got, "1 15043 3186 2\n")
	}
}

// TestTokenizeSyntheticVocabulary runs the command on a byte-level vocabulary
// written here, so it is exercised without ../shared too.
func TestTokenizeSyntheticVocabulary(t *testing.T) {
	// The 256 byte symbols of GPT-2's byte map (byte b is token b), then
	// "hi" (256) built by the merge "h i".
	tokens := make([]string, 0, 257)
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE {
			tokens = append(tokens, string(rune(b)))
		} else {
			tokens = append(tokens, string(rune(0x100+n)))
			n++
		}
	}
	tokens = append(tokens, "hi")
	w := gguf.NewWriter(3)
	w.SetString("general.architecture", "test")
	w.SetString("tokenizer.ggml.model", "gpt2")
	w.SetString("tokenizer.ggml.pre", "gpt-2")
	w.SetStrings("tokenizer.ggml.tokens", tokens)
	w.SetStrings("tokenizer.ggml.merges", []string{"h i"})
	path := filepath.Join(t.TempDir(), "vocab.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"-text", "hi!"}, "", "256 33\n"},
		{[]string{"-text", ""}, "not read", "\n"},
		{nil, "hi\n", "256 10\n"}, // byte 10 is token 10 here (its symbol is "Ċ")
	} {
		withStdin(t, c.stdin)
		code, got, errOut := runKiln(t, append([]string{"tokenize", "-model", path}, c.args...)...)
		if code != 0 || got != c.want {
			t.Errorf("kiln tokenize %q (stdin %q): exit %d, output %q, want %q (stderr %s)", c.args, c.stdin, code, got, c.want, errOut)
		}
	}
	// No BOS in this vocabulary: -add-bos is an error.
	code, _, errOut := runKiln(t, "tokenize", "-model", path, "-add-bos", "-text", "hi")
	if code != 1 || !strings.Contains(errOut, "no BOS token") {
		t.Errorf("-add-bos without BOS: exit %d, stderr %q", code, errOut)
	}
}

func TestTokenizeErrors(t *testing.T) {
	// A GGUF file with no tokenizer.
	w := gguf.NewWriter(3)
	w.SetString("general.architecture", "test")
	noTok := filepath.Join(t.TempDir(), "notok.gguf")
	if err := w.WriteFile(noTok); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"tokenize", "-text", "x"}, 2, "-model is required"},
		{[]string{"tokenize", "-model", noTok, "extra"}, 2, "unexpected arguments"},
		{[]string{"tokenize", "-model", filepath.Join(t.TempDir(), "missing.gguf"), "-text", "x"}, 1, "missing.gguf"},
		{[]string{"tokenize", "-model", noTok, "-text", "x"}, 1, "has no tokenizer"},
	} {
		code, _, errOut := runKiln(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("kiln %q: exit %d, stderr %q; want exit %d and %q", c.args, code, errOut, c.code, c.want)
		}
	}
}
