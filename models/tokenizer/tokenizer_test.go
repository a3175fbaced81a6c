package tokenizer

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kiln-gpu/kiln/models/gguf"
)

// A small SentencePiece vocabulary whose expected encodings are worked out by
// hand below. Pieces (index, text, score):
//
//	0 "▁" -1   1 "a" -2   2 "b" -3   3 "ab" -4   4 "▁a" -5
//	5 "ba" -0.5   6 "▁ab" -6   7 "x" -7   8 "xx" -8   9 "<s" -9
func handSPM() testVocab {
	return spmVocab(
		[]string{"▁", "a", "b", "ab", "▁a", "ba", "▁ab", "x", "xx", "<s"},
		[]float32{-1, -2, -3, -4, -5, -0.5, -6, -7, -8, -9},
	)
}

func TestSentencePieceEncode(t *testing.T) {
	tok := handSPM().mustLoad(t)
	p := spmPiece
	cases := []struct {
		text string
		opts EncodeOptions
		want []int32
	}{
		// "▁ab": "ab" (-4) beats "▁a" (-5), then "▁ab" (-6).
		{"ab", EncodeOptions{}, []int32{p(6)}},
		// "▁aba": "ba" (-0.5) merges first, then "▁a"; "aba" is no piece.
		// (Merging by position or by the lowest score would give ▁ab + a.)
		{"aba", EncodeOptions{}, []int32{p(4), p(5)}},
		// "▁xxx": the two "xx" candidates tie; the leftmost merges.
		{"xxx", EncodeOptions{}, []int32{p(0), p(8), p(7)}},
		// Spaces are "▁"; "a▁" and "▁b" are no pieces.
		{"a b", EncodeOptions{}, []int32{p(4), p(0), p(2)}},
		{" a", EncodeOptions{}, []int32{p(0), p(4)}},
		// "é" is no piece: byte fallback, UTF-8 bytes C3 A9.
		{"é", EncodeOptions{}, []int32{p(0), spmByte(0xC3), spmByte(0xA9)}},
		// Invalid UTF-8: the stray byte is a character of its own.
		{"a\xffb", EncodeOptions{}, []int32{p(4), spmByte(0xFF), p(2)}},
		{"", EncodeOptions{}, []int32{}},
		{"", EncodeOptions{AddBOS: true}, []int32{1}},
		{"a", EncodeOptions{AddBOS: true, AddEOS: true}, []int32{1, p(4), 2}},
		// Special tokens: with ParseSpecial "<s>" is BOS and the text after
		// it gets its own leading space.
		{"<s>a", EncodeOptions{ParseSpecial: true}, []int32{1, p(4)}},
		// Without it, "<s" (a normal piece) merges but "<s>" (control) is
		// never formed from text.
		{"<s>", EncodeOptions{}, []int32{p(0), p(9), spmByte('>')}},
		{"<unk>", EncodeOptions{ParseSpecial: true}, []int32{0}},
	}
	for _, c := range cases {
		got, err := tok.Encode(c.text, c.opts)
		if err != nil {
			t.Errorf("Encode(%q, %+v): %v", c.text, c.opts, err)
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q, %+v) = %v, want %v", c.text, c.opts, got, c.want)
		}
	}
}

func TestSentencePieceDecode(t *testing.T) {
	tok := handSPM().mustLoad(t)
	p := spmPiece
	cases := []struct {
		ids  []int32
		want string
	}{
		{[]int32{p(4), p(0), p(2)}, "a b"},
		// The leading space of the first piece with text is dropped, also
		// after BOS (SentencePiece's rule: "▁Once" after <s> is "Once").
		{[]int32{1, p(4)}, "a"},
		{[]int32{p(0), p(4)}, " a"},
		// Control and unknown tokens add no text; only the first piece loses its space.
		{[]int32{1, p(4), 2, p(4), 0}, "a a"},
		// Byte tokens are reassembled.
		{[]int32{p(0), spmByte(0xC3), spmByte(0xA9)}, "é"},
		{[]int32{spmByte(0xFF)}, "\xff"},
		// Ids outside the vocabulary add nothing (CheckIDs reports them).
		{[]int32{p(1), -5, 1 << 20}, "a"},
	}
	for _, c := range cases {
		if got := tok.Decode(c.ids); got != c.want {
			t.Errorf("Decode(%v) = %q, want %q", c.ids, got, c.want)
		}
	}
	if err := tok.CheckIDs([]int32{p(1), 1 << 20}); err == nil || !strings.Contains(err.Error(), "token 1048576 (at index 1)") {
		t.Errorf("CheckIDs: %v", err)
	}
	if err := tok.CheckIDs([]int32{0, p(9)}); err != nil {
		t.Errorf("CheckIDs of valid ids: %v", err)
	}
}

func TestSentencePieceWithoutSpacePrefix(t *testing.T) {
	v := handSPM()
	v.extra = func(w *gguf.Writer) { w.SetBool("tokenizer.ggml.add_space_prefix", false) }
	tok := v.mustLoad(t)
	got, err := tok.Encode("ab a", EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// "ab▁a": "ab" merges (-4) and "▁a" (-5); no space in front.
	if want := []int32{spmPiece(3), spmPiece(4)}; !slices.Equal(got, want) {
		t.Errorf("Encode = %v, want %v", got, want)
	}
	if dec := tok.Decode(got); dec != "ab a" {
		t.Errorf("Decode = %q, want %q (no space to drop)", dec, "ab a")
	}
}

func TestSentencePieceUnknownFallback(t *testing.T) {
	// No byte tokens: a character no piece spells becomes <unk>.
	v := testVocab{model: "llama",
		tokens: []string{"<unk>", "<s>", "</s>", "▁", "a"},
		types:  []int32{2, 3, 3, 1, 1},
		scores: []float32{0, 0, 0, -1, -2},
	}
	tok := v.mustLoad(t)
	got, err := tok.Encode("aé", EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{3, 4, 0}; !slices.Equal(got, want) {
		t.Errorf("Encode(\"aé\") = %v, want %v", got, want)
	}
	// With no unknown token either, that is an error naming the byte.
	v.extra = func(w *gguf.Writer) { w.SetInt32("tokenizer.ggml.unknown_token_id", -1) }
	tok = v.mustLoad(t)
	if _, err := tok.Encode("aé", EncodeOptions{}); err == nil || !strings.Contains(err.Error(), "byte 0xC3") {
		t.Errorf("Encode without byte or unknown tokens: err = %v, want one naming byte 0xC3", err)
	}
}

// specialBPE is a byte-level vocabulary with a control token <|endoftext|>
// (256), user-defined tokens <x> (257) and <x>y (258), a control token
// <|eot_id|> typed normal in the file (259), and EOS = 256.
func specialBPE() testVocab {
	v := byteLevelVocab("gpt-2", []string{"<|endoftext|>", "<x>", "<x>y", "<|eot_id|>"}, nil)
	v.types[256] = int32(TokenControl)
	v.types[257] = int32(TokenUserDefined)
	v.types[258] = int32(TokenUserDefined)
	v.extra = func(w *gguf.Writer) {
		w.SetUint32("tokenizer.ggml.eos_token_id", 256)
		w.SetUint32("tokenizer.ggml.bos_token_id", 256)
		w.SetUint32("tokenizer.ggml.padding_token_id", 0xFFFFFFFF) // "none"
	}
	return v
}

func TestByteLevelSpecialTokens(t *testing.T) {
	tok := specialBPE().mustLoad(t)
	cases := []struct {
		text string
		opts EncodeOptions
		want []int32
	}{
		{"hi<|endoftext|>", EncodeOptions{ParseSpecial: true}, []int32{'h', 'i', 256}},
		// Without ParseSpecial a control token's text is plain text.
		{"hi<|endoftext|>", EncodeOptions{}, bytesOf("hi<|endoftext|>")},
		// User-defined tokens are split out either way, longest first.
		{"a<x>b", EncodeOptions{}, []int32{'a', 257, 'b'}},
		{"a<x>yb", EncodeOptions{}, []int32{'a', 258, 'b'}},
		{"<x><x>", EncodeOptions{}, []int32{257, 257}},
		// <|eot_id|> is made a control token by its text, as llama.cpp does.
		{"<|eot_id|>", EncodeOptions{ParseSpecial: true}, []int32{259}},
		{"a", EncodeOptions{AddBOS: true}, []int32{256, 'a'}},
	}
	for _, c := range cases {
		got, err := tok.Encode(c.text, c.opts)
		if err != nil {
			t.Errorf("Encode(%q): %v", c.text, err)
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q, %+v) = %v, want %v", c.text, c.opts, got, c.want)
		}
	}
	if got := tok.Decode([]int32{'a', 256, 257, 259, ' ', 'b'}); got != "a<x> b" {
		t.Errorf("Decode with specials = %q, want %q (control tokens add no text, user-defined their text)", got, "a<x> b")
	}
	for id, want := range map[int32]bool{256: true, 259: true, 257: false, 'a': false, -1: false} {
		if got := tok.IsEndOfGeneration(id); got != want {
			t.Errorf("IsEndOfGeneration(%d) = %v, want %v", id, got, want)
		}
	}
	if tok.Type(259) != TokenControl || tok.Type(257) != TokenUserDefined || tok.Type('a') != TokenNormal {
		t.Errorf("types: %v %v %v", tok.Type(259), tok.Type(257), tok.Type('a'))
	}
	if id, ok := tok.EOS(); !ok || id != 256 {
		t.Errorf("EOS() = %d, %v", id, ok)
	}
	if tok.Piece(' ') != "Ġ" || tok.Piece(256) != "<|endoftext|>" || tok.Piece(9999) != "" {
		t.Errorf("Piece: %q %q %q", tok.Piece(' '), tok.Piece(256), tok.Piece(9999))
	}
	if tok.VocabSize() != 260 || tok.Model() != ModelByteLevelBPE || tok.DefaultAddBOS() || tok.DefaultAddEOS() {
		t.Errorf("VocabSize %d, Model %q, DefaultAddBOS %v, DefaultAddEOS %v", tok.VocabSize(), tok.Model(), tok.DefaultAddBOS(), tok.DefaultAddEOS())
	}
}

func bytesOf(s string) []int32 {
	ids := make([]int32, len(s))
	for i := 0; i < len(s); i++ {
		ids[i] = int32(s[i])
	}
	return ids
}

func TestDefaultsAndNoneIDs(t *testing.T) {
	// SentencePiece: BOS 1, EOS 2, <unk> 0 by default; add BOS by default.
	tok := handSPM().mustLoad(t)
	if id, ok := tok.BOS(); !ok || id != 1 {
		t.Errorf("BOS() = %d, %v", id, ok)
	}
	if !tok.DefaultAddBOS() || tok.DefaultAddEOS() || !tok.IsEndOfGeneration(2) || tok.IsEndOfGeneration(1) {
		t.Errorf("SentencePiece defaults wrong")
	}
	// A byte-level vocabulary without BOS: AddBOS is an error.
	bpe := byteLevelVocab("gpt-2", nil, nil).mustLoad(t)
	if _, ok := bpe.BOS(); ok {
		t.Errorf("byte-level vocabulary without bos_token_id has a BOS")
	}
	if _, err := bpe.Encode("a", EncodeOptions{AddBOS: true}); err == nil || !strings.Contains(err.Error(), "no BOS") {
		t.Errorf("AddBOS without BOS: %v", err)
	}
	// LLaMA-3's family adds BOS by default; add_bos_token overrides.
	if !byteLevelVocab("llama-bpe", nil, nil).mustLoad(t).DefaultAddBOS() {
		t.Errorf("llama-bpe: DefaultAddBOS false")
	}
	v := byteLevelVocab("llama-bpe", nil, nil)
	v.extra = func(w *gguf.Writer) { w.SetBool("tokenizer.ggml.add_bos_token", false) }
	if v.mustLoad(t).DefaultAddBOS() {
		t.Errorf("add_bos_token false ignored")
	}
	// An INT32 -1 id means none.
	v = handSPM()
	v.extra = func(w *gguf.Writer) { w.SetInt32("tokenizer.ggml.bos_token_id", -1) }
	if _, ok := v.mustLoad(t).BOS(); ok {
		t.Errorf("bos_token_id -1 still gives a BOS")
	}
}

func TestFromGGUFErrors(t *testing.T) {
	good := func() testVocab { return byteLevelVocab("gpt-2", []string{"ab"}, []string{"a b"}) }
	cases := []struct {
		name   string
		vocab  func() testVocab
		errSub string
	}{
		{"no model", func() testVocab { v := good(); v.model = ""; return v }, "tokenizer.ggml.model is missing"},
		{"bert", func() testVocab { v := good(); v.model = "bert"; return v }, `tokenizer.ggml.model "bert" is not supported`},
		{"unknown pre", func() testVocab { v := good(); v.pre = "klingon"; return v }, `tokenizer.ggml.pre "klingon" is not a supported pre-tokenizer`},
		{"no tokens", func() testVocab { v := good(); v.tokens = nil; v.types = nil; return v }, "tokenizer.ggml.tokens"},
		{"empty tokens", func() testVocab { v := good(); v.tokens = []string{}; v.types = nil; return v }, "tokenizer.ggml.tokens is empty"},
		{"scores length", func() testVocab { v := good(); v.scores = []float32{1, 2}; return v }, "tokenizer.ggml.scores has 2 entries but tokenizer.ggml.tokens has 257"},
		{"types length", func() testVocab { v := good(); v.types = v.types[:10]; return v }, "tokenizer.ggml.token_type has 10 entries"},
		{"bad type", func() testVocab { v := good(); v.types[7] = 9; return v }, "tokenizer.ggml.token_type[7] = 9 is not a token type"},
		{"no merges", func() testVocab { v := good(); v.merges = nil; return v }, "tokenizer.ggml.merges is missing"},
		{"bad merge", func() testVocab { v := good(); v.merges = []string{"a b", "abc"}; return v }, `tokenizer.ggml.merges[1] "abc" is not two symbols`},
		{"merge ends in space", func() testVocab { v := good(); v.merges = []string{"ab "}; return v }, `tokenizer.ggml.merges[0] "ab "`},
		{"duplicate token", func() testVocab { v := good(); v.tokens[256] = "a"; return v }, `tokenizer.ggml.tokens[256] "a" repeats tokenizer.ggml.tokens[97]`},
		{"bos out of range", func() testVocab {
			v := good()
			v.extra = func(w *gguf.Writer) { w.SetUint32("tokenizer.ggml.bos_token_id", 999) }
			return v
		}, "tokenizer.ggml.bos_token_id = 999 is outside the vocabulary of 257 tokens"},
		{"eos negative", func() testVocab {
			v := good()
			v.extra = func(w *gguf.Writer) { w.SetInt32("tokenizer.ggml.eos_token_id", -7) }
			return v
		}, "tokenizer.ggml.eos_token_id = -7 is not a token id"},
		{"id as string", func() testVocab {
			v := good()
			v.extra = func(w *gguf.Writer) { w.SetString("tokenizer.ggml.eot_token_id", "7") }
			return v
		}, "tokenizer.ggml.eot_token_id holds a string"},
		{"tokens wrong type", func() testVocab {
			v := good()
			v.tokens = nil
			v.types = nil
			v.extra = func(w *gguf.Writer) { w.SetInt32s("tokenizer.ggml.tokens", []int32{1, 2}) }
			return v
		}, "want an array of string"},
		{"flag wrong type", func() testVocab {
			v := good()
			v.extra = func(w *gguf.Writer) { w.SetUint32("tokenizer.ggml.add_bos_token", 1) }
			return v
		}, "tokenizer.ggml.add_bos_token"},
		{"bad byte token", func() testVocab { v := handSPM(); v.tokens[3+0x41] = "<0xZZ>"; return v }, `tokenizer.ggml.tokens[68] "<0xZZ>" has type byte but is not of the form <0xHH>`},
		{"repeated byte", func() testVocab { v := handSPM(); v.tokens[3+0x41] = "<0x4b>"; return v }, `tokenizer.ggml.tokens[78] "<0x4B>" and tokenizer.ggml.tokens[68] "<0x4b>" are both byte 0x4B`},
	}
	for _, c := range cases {
		tok, err := c.vocab().load(t)
		if err == nil {
			t.Errorf("%s: FromGGUF succeeded (%d tokens), want an error containing %q", c.name, tok.VocabSize(), c.errSub)
			continue
		}
		if !strings.Contains(err.Error(), c.errSub) {
			t.Errorf("%s: error %q does not contain %q", c.name, err, c.errSub)
		}
		if !strings.HasPrefix(err.Error(), "tokenizer: ") {
			t.Errorf("%s: error %q does not start with the package name", c.name, err)
		}
	}
	// The good vocabulary loads and merges.
	tok := good().mustLoad(t)
	if got, _ := tok.Encode("ab", EncodeOptions{}); !slices.Equal(got, []int32{256}) {
		t.Errorf("good vocabulary: Encode(\"ab\") = %v, want [256]", got)
	}
}

func TestDecoderStreaming(t *testing.T) {
	tok := handSPM().mustLoad(t)
	p := spmPiece
	// "é🚀" spelled with byte tokens: C3 A9, F0 9F 9A 80.
	ids := []int32{p(0), spmByte(0xC3), spmByte(0xA9), spmByte(0xF0), spmByte(0x9F), spmByte(0x9A), spmByte(0x80), p(4)}
	want := []string{"", "", "é", "", "", "", "🚀", " a"}
	d := tok.NewDecoder()
	var all strings.Builder
	for i, id := range ids {
		got := d.Next(id)
		if got != want[i] {
			t.Errorf("Next(%d) #%d = %q, want %q", id, i, got, want[i])
		}
		all.WriteString(got)
	}
	if rest := d.Flush(); rest != "" {
		t.Errorf("Flush = %q, want empty", rest)
	}
	if all.String() != tok.Decode(ids) {
		t.Errorf("streamed %q, Decode %q", all.String(), tok.Decode(ids))
	}

	// Invalid sequences pass through at once; an unfinished one at the end
	// comes out of Flush.
	d = tok.NewDecoder()
	ids = []int32{p(1), spmByte(0xFF), spmByte(0xC3), p(1), spmByte(0xE2), spmByte(0x82)}
	want = []string{"a", "\xff", "", "\xc3a", "", ""}
	all.Reset()
	for i, id := range ids {
		got := d.Next(id)
		if got != want[i] {
			t.Errorf("invalid stream: Next(%d) #%d = %q, want %q", id, i, got, want[i])
		}
		all.WriteString(got)
	}
	if rest := d.Flush(); rest != "\xe2\x82" {
		t.Errorf("Flush = %q, want the unfinished E2 82", rest)
	}
	all.WriteString("\xe2\x82")
	if all.String() != tok.Decode(ids) {
		t.Errorf("streamed %q, Decode %q", all.String(), tok.Decode(ids))
	}
}

// TestRoundTripInvalidUTF8 checks that invalid UTF-8 survives Encode and
// Decode byte for byte, for both kinds of vocabulary.
func TestRoundTripInvalidUTF8(t *testing.T) {
	inputs := []string{
		"\xff", "\xc3(", "a\xe2\x82", "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80 too big",
		"overlong \xc0\xaf", "\x80\x80 lone continuations", "mixed é\xe9 latin-1", "\x00nul\x00",
	}
	toks := map[string]*Tokenizer{
		"spm":       handSPM().mustLoad(t),
		"gpt-2":     byteLevelVocab("gpt-2", nil, nil).mustLoad(t),
		"llama-bpe": byteLevelVocab("llama-bpe", nil, nil).mustLoad(t),
		"falcon":    byteLevelVocab("falcon", nil, nil).mustLoad(t),
	}
	for name, tok := range toks {
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

func TestByteMapIsGPT2s(t *testing.T) {
	want := gpt2ByteSymbols()
	for b := 0; b < 256; b++ {
		if byteSymbols[b] != want[b] {
			t.Errorf("byte 0x%02X maps to %q, want %q", b, byteSymbols[b], want[b])
		}
	}
	// Spot checks from GPT-2's published vocabulary: space is "Ġ", newline "Ċ".
	if byteSymbols[' '] != "Ġ" || byteSymbols['\n'] != "Ċ" || byteSymbols['\t'] != "ĉ" {
		t.Errorf("space %q newline %q tab %q", byteSymbols[' '], byteSymbols['\n'], byteSymbols['\t'])
	}
	if got := byteLevelDecode("ĠHelloĊ"); got != " Hello\n" {
		t.Errorf("byteLevelDecode = %q", got)
	}
	if !utf8.ValidString(strings.Join(byteSymbols[:], "")) {
		t.Errorf("byte symbols are not valid UTF-8")
	}
}
