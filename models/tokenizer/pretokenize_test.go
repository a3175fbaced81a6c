package tokenizer

import (
	"slices"
	"testing"
)

// The expected splits below were worked out by hand from each family's
// pattern list (quoted in pretokenize.go, from the families' tokenizer.json
// files as collected in llama.cpp), applying the regex rules: alternatives
// tried left to right at the leftmost position, greedy quantifiers that give
// back characters only when the rest of the pattern needs them, unmatched
// stretches kept as pieces, and each later pattern applied within the pieces
// of the earlier ones. Each tokenizer is read from a GGUF file written with
// the gguf Writer, so the tests also cover the tokenizer.ggml.pre lookup.

type splitCase struct {
	text string
	want []string
}

func checkSplits(t *testing.T, pre string, cases []splitCase) {
	t.Helper()
	tok := byteLevelVocab(pre, nil, nil).mustLoad(t)
	if tok.PreTokenizer() != pre {
		t.Fatalf("PreTokenizer() = %q, want %q", tok.PreTokenizer(), pre)
	}
	for _, c := range cases {
		got := tok.pre.split(c.text)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: split(%q)\n got  %q\n want %q", pre, c.text, got, c.want)
		}
	}
}

func TestPreTokenizerGPT2(t *testing.T) {
	// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
	checkSplits(t, "gpt-2", []splitCase{
		{"Hello world", []string{"Hello", " world"}},
		// Contractions are case-sensitive: "'S" is punctuation then a letter.
		{"I'm can't we'll they've It'S", []string{"I", "'m", " can", "'t", " we", "'ll", " they", "'ve", " It", "'", "S"}},
		// Numbers are not grouped.
		{"12345 678", []string{"12345", " 678"}},
		// \s+(?!\S) leaves the last space of a run to the next word.
		{"a  b", []string{"a", " ", " b"}},
		{"a \n\nb", []string{"a", " \n", "\n", "b"}},
		{"a  ", []string{"a", "  "}},
		{"Hello!!! ?", []string{"Hello", "!!!", " ?"}},
		// CJK ideographs and Latin letters are all \p{L}.
		{"我想在apple工作", []string{"我想在apple工作"}},
		// An emoji is a symbol, [^\s\p{L}\p{N}].
		{"🚀 (x)", []string{"🚀", " (", "x", ")"}},
		// Invalid UTF-8 counts as U+FFFD, a symbol, and keeps its bytes.
		{"a\xffb", []string{"a", "\xff", "b"}},
		{" \xff\xfe!", []string{" \xff\xfe!"}},
	})
}

func TestPreTokenizerLLaMA3(t *testing.T) {
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
	cases := []splitCase{
		{"Hello world", []string{"Hello", " world"}},
		// Contractions are case-insensitive.
		{"I'M WE'LL it's", []string{"I", "'M", " WE", "'LL", " it", "'s"}},
		// Numbers in groups of up to three; a space before a number is its own piece.
		{"1234567", []string{"123", "456", "7"}},
		{" 12345", []string{" ", "123", "45"}},
		{"3.14", []string{"3", ".", "14"}},
		// One non-letter, non-number, non-newline character may lead a word.
		{"$hello", []string{"$hello"}},
		{" \tword", []string{" ", "\tword"}},
		// Punctuation takes the newlines after it.
		{"hello...\n\nworld", []string{"hello", "...\n\n", "world"}},
		// Whitespace up to the last newline of a run, then \s+(?!\S).
		{"a  \n  b", []string{"a", "  \n", " ", " b"}},
		{"\nHello", []string{"\n", "Hello"}},
		{"我想🚀", []string{"我想", "🚀"}},
		{"✅ ok", []string{"✅", " ok"}},
	}
	checkSplits(t, "llama-bpe", cases)
	checkSplits(t, "llama3", cases)
}

func TestPreTokenizerQwen2(t *testing.T) {
	// LLaMA-3's pattern with \p{N} (one number character) for \p{N}{1,3}.
	checkSplits(t, "qwen2", []splitCase{
		{"1234", []string{"1", "2", "3", "4"}},
		{" 12", []string{" ", "1", "2"}},
		{"I'VE 2 cats\n\n", []string{"I", "'VE", " ", "2", " cats", "\n\n"}},
		{"价格是100元", []string{"价格是", "1", "0", "0", "元"}},
	})
}

func TestPreTokenizerFalcon(t *testing.T) {
	// [\p{P}\$\+<=>\^~\|`]+ then GPT-2's pattern then [0-9][0-9][0-9].
	checkSplits(t, "falcon", []splitCase{
		{"Hello, world!", []string{"Hello", ",", " world", "!"}},
		// The first pattern takes "+" away from the space before it.
		{"a +b", []string{"a", " ", "+", "b"}},
		{"x=`y`", []string{"x", "=`", "y", "`"}},
		// "'" is punctuation, so contractions are split by the first pattern.
		{"it's", []string{"it", "'", "s"}},
		{"1234567", []string{"123", "456", "7"}},
		{" 12345", []string{" ", "123", "45"}},
	})
}

func TestPreTokenizerDeepSeekLLM(t *testing.T) {
	// [\r\n], \s?[cased letters]+, \s?[ASCII/full-width punctuation]+, \s+$,
	// [CJK]+, \p{N}+.
	checkSplits(t, "deepseek-llm", []splitCase{
		{"Hello world\n", []string{"Hello", " world", "\n"}},
		{"我想在apple工作1314151天", []string{"我想在", "apple", "工作", "1314151", "天"}},
		{"a, b  ", []string{"a", ",", " b", "  "}},
		// "¿" (U+00BF) is in neither set. "Qué" is one cased-letter word,
		// but the punctuation set's ASCII range :-~ (0x3A-0x7E) includes
		// the ASCII letters, so the third pattern cuts "Qu" from "é".
		{"¿Qué?", []string{"¿", "Qu", "é", "?"}},
	})
}

func TestPreTokenizerDeepSeekCoder(t *testing.T) {
	// [\r\n], \s?\p{L}+, \s?\p{P}+, [CJK]+, \p{N}.
	checkSplits(t, "deepseek-coder", []splitCase{
		// "=" is a math symbol (Sm), not \p{P}; ";" is.
		{"int x = 42;\n", []string{"int", " x", " = ", "4", "2", ";", "\n"}},
		{"我想在apple", []string{"我想在", "apple"}},
	})
}

func TestPreTokenizerDeepSeekV3(t *testing.T) {
	// \p{N}{1,3}, [CJK and kana]+, then an ASCII punctuation character glued
	// to the ASCII letters after it, letters with marks, punctuation and
	// symbols, newlines and spaces. Expected splits from Python's regex
	// module over llama.cpp's patterns (the scanner also matched it on 6,000
	// random strings when it was written).
	checkSplits(t, "deepseek-v3", []splitCase{
		{"Hello, world! 12345 日本語とカタカナ", []string{"Hello", ",", " world", "!", " ", "123", "45", " ", "日本語とカタカナ"}},
		{"x=foo.bar(baz) cafe\u0301", []string{"x", "=foo", ".bar", "(baz", ")", " cafe\u0301"}},
		{"line1\r\n\n  indented  ", []string{"line", "1", "\r\n\n", " ", " indented", "  "}},
		{"It's 3.14159 — ok?!", []string{"It", "'s", " ", "3", ".", "141", "59", " —", " ok", "?!"}},
	})
}

func TestPreTokenizerDefault(t *testing.T) {
	// [\p{P}\$\+<=>\^~\|]+, GPT-2's pattern, \p{N}+, [0-9][0-9][0-9].
	checkSplits(t, "default", []splitCase{
		{"x=12345!", []string{"x", "=", "123", "45", "!"}},
	})
	// A gpt2 vocabulary that names no pre-tokenizer gets "default".
	v := byteLevelVocab("", nil, nil)
	tok := v.mustLoad(t)
	if tok.PreTokenizer() != "default" {
		t.Errorf("no tokenizer.ggml.pre: PreTokenizer() = %q, want default", tok.PreTokenizer())
	}
}

// TestMergesStayInsideWords checks on token ids that BPE merges apply within
// a pre-tokenizer word and never across two.
func TestMergesStayInsideWords(t *testing.T) {
	// Extra tokens 256.. : "Ġw", "or", "Ġwor", "ld", "Ġworld", "ĠĠ".
	extra := []string{"Ġw", "or", "Ġwor", "ld", "Ġworld", "ĠĠ"}
	merges := []string{"Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "Ġ Ġ"}
	const (
		idGw, idOr, idGwor, idLd, idGworld, idGG = 256, 257, 258, 259, 260, 261
	)
	cases := []struct {
		pre  string
		text string
		want []int32
	}{
		{"gpt-2", " world", []int32{idGworld}},
		// "  world" is " " + " world": the two spaces are in different
		// words, so "Ġ Ġ" cannot merge.
		{"gpt-2", "  world", []int32{' ', idGworld}},
		// Three spaces at the end are one word: "ĠĠ" merges first (leftmost), then "Ġ".
		{"gpt-2", "   ", []int32{idGG, ' '}},
		{"llama-bpe", "world", []int32{'w', idOr, idLd}},
		// LLaMA-3: "\n" ends the word before " world".
		{"llama-bpe", "\n world", []int32{'\n', idGworld}},
		// Falcon: "," splits off; " wor" and "ld" are one word.
		{"falcon", "x, world", []int32{'x', ',', idGworld}},
	}
	for _, c := range cases {
		tok := byteLevelVocab(c.pre, extra, merges).mustLoad(t)
		got, err := tok.Encode(c.text, EncodeOptions{})
		if err != nil {
			t.Fatalf("%s Encode(%q): %v", c.pre, c.text, err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s Encode(%q) = %v, want %v", c.pre, c.text, got, c.want)
		}
		if dec := tok.Decode(got); dec != c.text {
			t.Errorf("%s Decode(%v) = %q, want %q", c.pre, got, dec, c.text)
		}
	}
	_ = idGw
	_ = idGwor
}

// TestIgnoreMerges: LLaMA-3 takes a word that is itself a token without
// merging; Qwen2 does not.
func TestIgnoreMerges(t *testing.T) {
	extra := []string{"Ġxyz"} // id 256, with no merges that build it
	for _, c := range []struct {
		pre  string
		want []int32
	}{
		{"llama-bpe", []int32{256}},
		{"qwen2", []int32{' ', 'x', 'y', 'z'}},
	} {
		tok := byteLevelVocab(c.pre, extra, nil).mustLoad(t)
		got, err := tok.Encode(" xyz", EncodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: Encode(\" xyz\") = %v, want %v", c.pre, got, c.want)
		}
	}
}

// TestPreTokenizerAliases: names llama.cpp maps to the Qwen2 and LLaMA-3
// pre-tokenizers (DeepSeek-R1-Distill-Qwen's "deepseek-r1-qwen", ...) split
// exactly as those do, with the same settings.
func TestPreTokenizerAliases(t *testing.T) {
	texts := []string{"Hello world 12345", "I'm ok!!  \n\nyes", "数字 123 and émoji 🙂"}
	for alias, base := range map[string]string{
		"deepseek-r1-qwen": "qwen2", "kormo": "qwen2",
		"falcon-h1": "llama-bpe", "pixtral": "llama-bpe", "midm-2.0": "llama-bpe", "lfm2": "llama-bpe",
	} {
		a := byteLevelVocab(alias, nil, nil).mustLoad(t)
		b := byteLevelVocab(base, nil, nil).mustLoad(t)
		if a.pre.ignoreMerges != b.pre.ignoreMerges || a.pre.addBOS != b.pre.addBOS {
			t.Errorf("%s: settings differ from %s", alias, base)
		}
		for _, text := range texts {
			if got, want := a.pre.split(text), b.pre.split(text); !slices.Equal(got, want) {
				t.Errorf("%s: split(%q) = %q, %s gives %q", alias, text, got, base, want)
			}
		}
	}
}
