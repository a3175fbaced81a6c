package tokenizer

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Byte-level BPE never merges across the boundaries a pre-tokenizer draws:
// the text is first cut into "words" by a list of patterns, and BPE runs on
// each word alone. Each model family names its list in tokenizer.ggml.pre.
//
// The patterns come from the families' tokenizer.json files (as collected in
// llama.cpp's llama-vocab.cpp). A list is applied the way llama.cpp and
// Hugging Face's Split(behavior=Isolated) apply it: the first pattern cuts the
// text into matches and the stretches between them, the second pattern cuts
// each of those pieces again, and so on; a later pattern never sees across an
// earlier cut.
//
// Patterns that Go's RE2-based regexp can express run as regexps. The GPT-2
// and LLaMA-3/Qwen2 patterns end in \s+(?!\S), a negative lookahead RE2 lacks,
// so they are hand-written scanners that follow the regex semantics
// (leftmost-first alternation, greedy quantifiers with backtracking) exactly.
//
// Character classes use Unicode 15 categories from Go's unicode package:
// \p{L} letters, \p{N} numbers, \p{P} punctuation, and \s the Unicode
// White_Space property (which includes U+000B, U+0085, U+00A0, U+3000, ...).
// A byte that is not part of valid UTF-8 counts as U+FFFD (a symbol, so it
// falls in [^\s\p{L}\p{N}]) for matching, and stays the original byte in the
// word: byte-level BPE then encodes it losslessly.

// splitFunc cuts chunk into consecutive pieces that cover it exactly and
// appends their lengths in bytes to lengths.
type splitFunc func(chunk string, lengths []int) []int

// matchFunc returns the length in bytes of the pattern's match that starts at
// byte pos of chunk, or 0 when none starts there. The end of chunk is the end
// of the text as far as the pattern can see.
type matchFunc func(chunk string, pos int) int

// scanSplit applies a hand-written pattern the way a regex iterator does:
// successive leftmost matches, with the unmatched stretches between them kept
// as pieces of their own.
func scanSplit(match matchFunc) splitFunc {
	return func(chunk string, lengths []int) []int {
		gapStart := 0
		for pos := 0; pos < len(chunk); {
			if n := match(chunk, pos); n > 0 {
				if pos > gapStart {
					lengths = append(lengths, pos-gapStart)
				}
				lengths = append(lengths, n)
				pos += n
				gapStart = pos
				continue
			}
			_, size := utf8.DecodeRuneInString(chunk[pos:])
			pos += size
		}
		if gapStart < len(chunk) {
			lengths = append(lengths, len(chunk)-gapStart)
		}
		return lengths
	}
}

// regexpSplit is scanSplit for a pattern Go's regexp can express. Go's
// regexp treats an invalid UTF-8 byte as U+FFFD of width 1, as the scanners
// do.
func regexpSplit(pattern string) splitFunc {
	re := regexp.MustCompile(pattern)
	return func(chunk string, lengths []int) []int {
		prev := 0
		for _, m := range re.FindAllStringIndex(chunk, -1) {
			if m[1] == m[0] {
				continue // none of the patterns can match empty; be safe anyway
			}
			if m[0] > prev {
				lengths = append(lengths, m[0]-prev)
			}
			lengths = append(lengths, m[1]-m[0])
			prev = m[1]
		}
		if prev < len(chunk) {
			lengths = append(lengths, len(chunk)-prev)
		}
		return lengths
	}
}

// preTokenizer is one family's list of patterns.
type preTokenizer struct {
	name   string // the canonical tokenizer.ggml.pre name
	splits []splitFunc
	// ignoreMerges: a word that is itself a vocabulary entry becomes that
	// token without running BPE (LLaMA-3's tokenizer.json sets
	// ignore_merges; it matters when merges could not build the entry).
	ignoreMerges bool
	// addBOS is the family's default for tokenizer.ggml.add_bos_token.
	addBOS bool
}

// split cuts text into words, applying every pattern in turn.
func (p *preTokenizer) split(text string) []string {
	if text == "" {
		return nil
	}
	chunks := []string{text}
	var lengths []int
	for _, split := range p.splits {
		next := make([]string, 0, len(chunks)*2)
		for _, chunk := range chunks {
			lengths = split(chunk, lengths[:0])
			pos := 0
			for _, n := range lengths {
				next = append(next, chunk[pos:pos+n])
				pos += n
			}
		}
		chunks = next
	}
	return chunks
}

// Character classes of the patterns.

func runeAt(s string, pos int) (rune, int) { return utf8.DecodeRuneInString(s[pos:]) }

func isLetter(r rune) bool { return unicode.IsLetter(r) }
func isNumber(r rune) bool { return unicode.IsNumber(r) }
func isSpace(r rune) bool  { return unicode.IsSpace(r) }

// isOther is [^\s\p{L}\p{N}].
func isOther(r rune) bool { return !unicode.IsSpace(r) && !unicode.IsLetter(r) && !unicode.IsNumber(r) }

// runEnd returns the end of the run of characters in class that starts at pos.
func runEnd(s string, pos int, class func(rune) bool) int {
	for pos < len(s) {
		r, size := runeAt(s, pos)
		if !class(r) {
			break
		}
		pos += size
	}
	return pos
}

// contraction matches 's|'t|'re|'ve|'m|'ll|'d (ASCII case-insensitive when
// asked, as LLaMA-3's (?i:...) group and llama.cpp's '[sS]... rewrite of it).
func contraction(s string, pos int, caseInsensitive bool) int {
	if s[pos] != '\'' || pos+1 >= len(s) {
		return 0
	}
	lower := func(b byte) byte {
		if caseInsensitive && 'A' <= b && b <= 'Z' {
			return b + ('a' - 'A')
		}
		return b
	}
	c1 := lower(s[pos+1])
	switch c1 {
	case 's', 't', 'm', 'd':
		return 2
	}
	if pos+2 < len(s) {
		c2 := lower(s[pos+2])
		if (c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l') {
			return 3
		}
	}
	return 0
}

// spaceRun matches \s+(?!\S)|\s+ at pos: a whitespace run, less its last
// character when a non-space follows (that character then starts the next
// word, as in " world"); all of it at the end of the chunk, or when the run is
// a single character.
func spaceRun(s string, pos int) int {
	end, lastStart := pos, pos
	for end < len(s) {
		r, size := runeAt(s, end)
		if !isSpace(r) {
			break
		}
		lastStart = end
		end += size
	}
	if end == pos {
		return 0
	}
	if end < len(s) && lastStart > pos {
		return lastStart - pos
	}
	return end - pos
}

// gpt2Match is GPT-2's pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
func gpt2Match(s string, pos int) int {
	if n := contraction(s, pos, false); n > 0 {
		return n
	}
	p := pos
	if s[p] == ' ' {
		p++
	}
	if p < len(s) {
		r, _ := runeAt(s, p)
		switch {
		case isLetter(r):
			return runEnd(s, p, isLetter) - pos
		case isNumber(r):
			return runEnd(s, p, isNumber) - pos
		case isOther(r):
			return runEnd(s, p, isOther) - pos
		}
	}
	return spaceRun(s, pos)
}

// llama3Match is LLaMA-3's pattern (maxDigits 3) and Qwen2's (maxDigits 1):
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
func llama3Match(maxDigits int) matchFunc {
	return func(s string, pos int) int {
		if n := contraction(s, pos, true); n > 0 {
			return n
		}
		r, size := runeAt(s, pos)
		// [^\r\n\p{L}\p{N}]?\p{L}+
		if isLetter(r) {
			return runEnd(s, pos, isLetter) - pos
		}
		if r != '\r' && r != '\n' && !isNumber(r) && pos+size < len(s) {
			if next, _ := runeAt(s, pos+size); isLetter(next) {
				return runEnd(s, pos+size, isLetter) - pos
			}
		}
		// \p{N}{1,maxDigits}
		if isNumber(r) {
			p := pos
			for k := 0; k < maxDigits && p < len(s); k++ {
				r2, size2 := runeAt(s, p)
				if !isNumber(r2) {
					break
				}
				p += size2
			}
			return p - pos
		}
		// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
		p := pos
		if r == ' ' {
			p++
		}
		if p < len(s) {
			if r2, _ := runeAt(s, p); isOther(r2) {
				end := runEnd(s, p, isOther)
				for end < len(s) && (s[end] == '\r' || s[end] == '\n') {
					end++
				}
				return end - pos
			}
		}
		return newlineOrSpaceRun(s, pos)
	}
}

// newlineOrSpaceRun is the common tail \s*[\r\n]+|\s+(?!\S)|\s+ of the
// LLaMA-3 and DeepSeek-V3 patterns: a whitespace run up to and including its
// last \r or \n, else spaceRun.
func newlineOrSpaceRun(s string, pos int) int {
	afterNewline := -1
	for end := pos; end < len(s); {
		r2, size2 := runeAt(s, end)
		if !isSpace(r2) {
			break
		}
		end += size2
		if r2 == '\r' || r2 == '\n' {
			afterNewline = end
		}
	}
	if afterNewline > 0 {
		return afterNewline - pos
	}
	return spaceRun(s, pos)
}

// whiteSpaceClass is \s as a regexp class body: Unicode's White_Space.
var whiteSpaceClass = func() string {
	var b strings.Builder
	for _, r16 := range unicode.White_Space.R16 {
		for c := int(r16.Lo); c <= int(r16.Hi); c += int(r16.Stride) {
			fmt.Fprintf(&b, `\x{%X}`, c)
		}
	}
	for _, r32 := range unicode.White_Space.R32 {
		for c := int(r32.Lo); c <= int(r32.Hi); c += int(r32.Stride) {
			fmt.Fprintf(&b, `\x{%X}`, c)
		}
	}
	return b.String()
}()

// Character sets of DeepSeek's pre-tokenizers, as code point ranges.
const (
	// deepseekLetters: the cased letters (Latin, Greek, Cyrillic, Armenian,
	// Georgian, Cherokee, Glagolitic, Coptic, Deseret, ... and full-width
	// Latin) of DeepSeek-LLM's second pattern.
	deepseekLetters = `\x{41}-\x{5A}\x{61}-\x{7A}\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}` +
		`\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}` +
		`\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}` +
		`\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}` +
		`\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}` +
		`\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}` +
		`\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}` +
		`\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}` +
		`\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}` +
		`\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}` +
		`\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}` +
		`\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}` +
		`\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}` +
		`\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}` +
		`\x{1E900}-\x{1E943}`
	// deepseekPunct: ASCII punctuation and symbols, their full-width forms,
	// the curly quotes U+2018-U+201F and the CJK space and marks U+3000-U+3002.
	deepseekPunct = `\x{21}-\x{2F}\x{3A}-\x{7E}\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}`
	// deepseekCJK: CJK unified ideographs U+4E00-U+9FA5, U+0800-U+4E00
	// (Samaritan through CJK extension A, as DeepSeek wrote it) and Hangul
	// syllables and Jamo U+AC00-U+D7FF.
	deepseekCJK = `\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}`
)

// preTokenizerFamilies maps every accepted tokenizer.ggml.pre name to a
// constructor. Names that llama.cpp treats as the same pattern list share one.
var preTokenizerFamilies = map[string]func() *preTokenizer{
	"default":          defaultPre,
	"gpt-2":            gpt2Pre,
	"gpt2":             gpt2Pre,
	"phi-2":            gpt2Pre,
	"roberta-bpe":      gpt2Pre,
	"mpt":              gpt2Pre,
	"olmo":             gpt2Pre,
	"jais":             gpt2Pre,
	"llama3":           llama3Pre,
	"llama-v3":         llama3Pre,
	"llama-bpe":        llama3Pre,
	"falcon3":          llama3Pre,
	"falcon-h1":        llama3Pre,
	"pixtral":          llama3Pre,
	"midm-2.0":         llama3Pre,
	"lfm2":             llama3Pre,
	"dbrx":             dbrxPre,
	"smaug-bpe":        dbrxPre,
	"qwen2":            qwen2Pre,
	"deepseek-r1-qwen": qwen2Pre, // DeepSeek-R1-Distill-Qwen
	"kormo":            qwen2Pre,
	"stablelm2":        qwen2Pre,
	"megrez":           qwen2Pre,
	"deepseek-llm":     deepseekLLMPre,
	"deepseek-coder":   deepseekCoderPre,
	"deepseek-v3":      deepseekV3Pre,
	"falcon":           falconPre,
	"starcoder":        starcoderPre,
	"refact":           starcoderPre,
	"command-r":        starcoderPre,
	"smollm":           starcoderPre,
	"codeshell":        starcoderPre,
	"exaone":           starcoderPre,
	"minerva-7b":       starcoderPre,
}

// PreTokenizers lists the tokenizer.ggml.pre names this package accepts.
func PreTokenizers() []string {
	names := make([]string, 0, len(preTokenizerFamilies))
	for name := range preTokenizerFamilies {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func newPreTokenizer(name string) (*preTokenizer, error) {
	build, ok := preTokenizerFamilies[name]
	if !ok {
		return nil, fmt.Errorf("tokenizer.ggml.pre %q is not a supported pre-tokenizer (supported: %s)", name, strings.Join(PreTokenizers(), ", "))
	}
	p := build()
	p.name = name
	return p, nil
}

// gpt2Pre: GPT-2's single pattern.
func gpt2Pre() *preTokenizer {
	return &preTokenizer{splits: []splitFunc{scanSplit(gpt2Match)}}
}

// defaultPre: what llama.cpp uses for a BPE vocabulary whose pre-tokenizer is
// "default" or not named: punctuation runs, then GPT-2's pattern, then number
// runs, then groups of three ASCII digits.
func defaultPre() *preTokenizer {
	return &preTokenizer{splits: []splitFunc{
		regexpSplit(`[\p{P}$+<=>^~|]+`),
		scanSplit(gpt2Match),
		regexpSplit(`\p{N}+`),
		regexpSplit(`[0-9][0-9][0-9]`),
	}}
}

// llama3Pre: LLaMA-3 (and Falcon-3): numbers in groups of up to three.
func llama3Pre() *preTokenizer {
	return &preTokenizer{splits: []splitFunc{scanSplit(llama3Match(3))}, ignoreMerges: true, addBOS: true}
}

// dbrxPre: DBRX and Smaug use LLaMA-3's pattern without its other settings.
func dbrxPre() *preTokenizer {
	return &preTokenizer{splits: []splitFunc{scanSplit(llama3Match(3))}}
}

// qwen2Pre: LLaMA-3's pattern with every number character on its own.
func qwen2Pre() *preTokenizer {
	return &preTokenizer{splits: []splitFunc{scanSplit(llama3Match(1))}}
}

// deepseekLLMPre: DeepSeek-LLM's six patterns.
func deepseekLLMPre() *preTokenizer {
	ws := "[" + whiteSpaceClass + "]"
	return &preTokenizer{splits: []splitFunc{
		regexpSplit(`[\r\n]`),
		regexpSplit(ws + `?[` + deepseekLetters + `]+`),
		regexpSplit(ws + `?[` + deepseekPunct + `]+`),
		regexpSplit(ws + `+$`),
		regexpSplit(`[` + deepseekCJK + `]+`),
		regexpSplit(`\p{N}+`),
	}}
}

// deepseekCoderPre: DeepSeek-Coder's five patterns (every digit on its own).
func deepseekCoderPre() *preTokenizer {
	ws := "[" + whiteSpaceClass + "]"
	return &preTokenizer{splits: []splitFunc{
		regexpSplit(`[\r\n]`),
		regexpSplit(ws + `?\p{L}+`),
		regexpSplit(ws + `?\p{P}+`),
		regexpSplit(`[` + deepseekCJK + `]+`),
		regexpSplit(`\p{N}`),
	}}
}

// falconPre: Falcon's punctuation runs (with $+<=>^~|`), GPT-2's pattern,
// then groups of three ASCII digits.
func falconPre() *preTokenizer {
	return &preTokenizer{splits: []splitFunc{
		regexpSplit(`[\p{P}$+<=>^~|` + "`" + `]+`),
		scanSplit(gpt2Match),
		regexpSplit(`[0-9][0-9][0-9]`),
	}}
}

// starcoderPre: every number character on its own, then GPT-2's pattern.
func starcoderPre() *preTokenizer {
	return &preTokenizer{splits: []splitFunc{
		regexpSplit(`\p{N}`),
		scanSplit(gpt2Match),
	}}
}

// deepseekV3Pre: DeepSeek-V3's list: numbers in groups of up to three, runs
// of CJK ideographs and kana, then deepseekV3Match.
func deepseekV3Pre() *preTokenizer {
	return &preTokenizer{splits: []splitFunc{
		regexpSplit(`\p{N}{1,3}`),
		regexpSplit(`[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+`),
		scanSplit(deepseekV3Match),
	}}
}

// isASCIIPunct is [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]: every printable
// ASCII character that is neither a letter, a digit nor a space.
func isASCIIPunct(b byte) bool {
	return (b >= '!' && b <= '/') || (b >= ':' && b <= '@') || (b >= '[' && b <= '`') || (b >= '{' && b <= '~')
}

func isASCIILetter(b byte) bool { return (b|0x20) >= 'a' && (b|0x20) <= 'z' }

// isLetterOrMark is [\p{L}\p{M}].
func isLetterOrMark(r rune) bool { return unicode.IsLetter(r) || unicode.IsMark(r) }

// isPunctOrSymbol is [\p{P}\p{S}].
func isPunctOrSymbol(r rune) bool { return unicode.IsPunct(r) || unicode.IsSymbol(r) }

// deepseekV3Match is DeepSeek-V3's third pattern:
//
//	[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ |
//	 ?[\p{P}\p{S}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
func deepseekV3Match(s string, pos int) int {
	r, size := runeAt(s, pos)
	// An ASCII punctuation character glued to the ASCII letters after it.
	if r < utf8.RuneSelf && isASCIIPunct(byte(r)) && pos+1 < len(s) && isASCIILetter(s[pos+1]) {
		end := pos + 1
		for end < len(s) && isASCIILetter(s[end]) {
			end++
		}
		return end - pos
	}
	// [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+: with the optional lead first, then without.
	if r != '\r' && r != '\n' && !isLetter(r) && !isPunctOrSymbol(r) && pos+size < len(s) {
		if next, _ := runeAt(s, pos+size); isLetterOrMark(next) {
			return runEnd(s, pos+size, isLetterOrMark) - pos
		}
	}
	if isLetterOrMark(r) {
		return runEnd(s, pos, isLetterOrMark) - pos
	}
	// ` ?[\p{P}\p{S}]+[\r\n]*`
	p := pos
	if r == ' ' {
		p++
	}
	if p < len(s) {
		if r2, _ := runeAt(s, p); isPunctOrSymbol(r2) {
			end := runEnd(s, p, isPunctOrSymbol)
			for end < len(s) && (s[end] == '\r' || s[end] == '\n') {
				end++
			}
			return end - pos
		}
	}
	return newlineOrSpaceRun(s, pos)
}
