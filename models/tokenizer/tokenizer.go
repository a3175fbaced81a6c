// Package tokenizer turns text into token ids and back with the vocabularies
// that GGUF files carry in their tokenizer.ggml.* metadata:
//
//   - tokenizer.ggml.model = "llama": SentencePiece BPE with piece scores, the
//     way LLaMA 1/2, Mistral and TinyLlama-style models tokenize. Spaces become
//     "▁" (U+2581), a space is put in front of the text (add_space_prefix), the
//     pieces merge highest score first, and characters the vocabulary lacks
//     fall back to byte tokens <0xNN>.
//   - tokenizer.ggml.model = "gpt2": byte-level BPE, the way GPT-2, LLaMA 3,
//     Qwen2, DeepSeek, Falcon and most recent models tokenize. The text is cut
//     into words by the pre-tokenizer that tokenizer.ggml.pre names (see
//     PreTokenizers), every byte of a word is mapped to a printable character,
//     and merges apply lowest rank first.
//
// The algorithms follow llama.cpp's (src/llama-vocab.cpp), and Encode
// reproduces its token ids for valid UTF-8 text: the conformance tests check
// the vocabularies and vectors in ../shared/vocab id for id. Deliberate
// differences, each for losslessness or safety:
//
//   - Invalid UTF-8 is encoded losslessly. SentencePiece: each byte that is not
//     part of a valid UTF-8 sequence is a character of its own, which no piece
//     contains, so it becomes its byte token <0xNN> (llama.cpp instead groups
//     a bad lead byte with the bytes after it). Byte-level BPE: such a byte
//     counts as U+FFFD for the pre-tokenizer's patterns but keeps its value,
//     so its byte token encodes it (llama.cpp replaces it with U+FFFD and so
//     loses it). Decode returns the original bytes.
//   - Plain text never produces control or unknown tokens: SentencePiece merges
//     only form normal, user-defined and undefined-type pieces (as
//     SentencePiece itself does; llama.cpp would also form, say, "<s>" if the
//     vocabulary let merges spell it). Special tokens come only from
//     EncodeOptions.ParseSpecial, AddBOS and AddEOS. Unused-type pieces are not
//     formed either.
//   - Decode does not apply clean_up_tokenization_spaces (" ," to ","), so
//     Decode(Encode(s)) is s.
//   - The per-model token attributes llama.cpp hard-codes by model name
//     (lstrip/rstrip around some Phi-3 and Jina special tokens) are not
//     applied.
//
// Round trips: for valid or invalid UTF-8 s, Decode(Encode(s)) == s with
// ParseSpecial off, for byte-level BPE always and for SentencePiece when the
// vocabulary has all 256 byte tokens, s contains no "▁" (SentencePiece writes
// spaces as "▁" and cannot tell them apart) and the vocabulary has no
// user-defined pieces occurring in s (a user-defined piece is always split
// out, and SentencePiece puts a space in front of the text that follows it).
//
// A Tokenizer is immutable once made and safe for concurrent use by many
// goroutines; a Decoder is not (use one per stream).
package tokenizer

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// TokenType is a token's kind, as tokenizer.ggml.token_type stores it.
type TokenType int32

// The token types of GGUF (llama.cpp's llama_token_type).
const (
	TokenUndefined   TokenType = 0 // treated as normal
	TokenNormal      TokenType = 1 // ordinary text
	TokenUnknown     TokenType = 2 // <unk>: what SentencePiece emits for text it cannot spell
	TokenControl     TokenType = 3 // <s>, </s>, <|eot_id|>, ...: never produced by plain text, decodes to nothing
	TokenUserDefined TokenType = 4 // added tokens matched literally in text before tokenization
	TokenUnused      TokenType = 5 // reserved slots: never produced, decode to nothing
	TokenByte        TokenType = 6 // SentencePiece byte fallback <0xNN>
)

func (t TokenType) String() string {
	switch t {
	case TokenUndefined:
		return "undefined"
	case TokenNormal:
		return "normal"
	case TokenUnknown:
		return "unknown"
	case TokenControl:
		return "control"
	case TokenUserDefined:
		return "user-defined"
	case TokenUnused:
		return "unused"
	case TokenByte:
		return "byte"
	}
	return fmt.Sprintf("TokenType(%d)", int32(t))
}

// The vocabulary kinds (tokenizer.ggml.model values) this package reads.
const (
	ModelSentencePiece = "llama" // SentencePiece BPE with scores and byte fallback
	ModelByteLevelBPE  = "gpt2"  // byte-level BPE with merges and a pre-tokenizer
)

// noToken marks an absent special token.
const noToken int32 = -1

// spaceMarker is SentencePiece's visible space, U+2581 "▁".
const spaceMarker = "\u2581"

// Tokenizer encodes text to token ids and decodes ids to text for one
// vocabulary. Make one with FromGGUF.
type Tokenizer struct {
	model string        // ModelSentencePiece or ModelByteLevelBPE
	pre   *preTokenizer // byte-level BPE only

	pieces  []string    // the vocabulary strings, by id
	scores  []float32   // SentencePiece merge priorities, by id (nil for BPE)
	types   []TokenType // by id
	decoded []string    // the text each token decodes to, by id

	// lookup maps the strings that encoding may produce to their ids: normal,
	// user-defined and undefined pieces (and byte pieces for byte-level BPE).
	lookup map[string]int32
	// ranks maps a BPE merge to its rank (its index in tokenizer.ggml.merges).
	ranks map[mergePair]int32
	// byteTokens[b] is the token that stands for byte b, or noToken:
	// SentencePiece's <0xNN> (or failing that a piece that is the byte
	// itself), byte-level BPE's one-character piece for the byte.
	byteTokens [256]int32

	bos, eos, unk int32 // noToken when absent
	eog           map[int32]bool
	// specials are the tokens Encode looks for literally in the text
	// (control, user-defined and unknown tokens), longest first.
	specials []int32

	addBOS, addEOS bool // the model's defaults (tokenizer.ggml.add_bos_token, add_eos_token)
	addSpacePrefix bool // SentencePiece puts a space before the text (and drops it when decoding)
}

// mergePair is a BPE merge: two adjacent symbols that become one.
type mergePair struct{ left, right string }

// EncodeOptions controls Encode.
type EncodeOptions struct {
	// AddBOS puts the BOS token first. It is an error when the vocabulary
	// has none. DefaultAddBOS reports whether the model expects it.
	AddBOS bool
	// AddEOS puts the EOS token last (an addition to the issue-5 contract;
	// DefaultAddEOS reports whether the model expects it).
	AddEOS bool
	// ParseSpecial turns the text of control and unknown tokens ("<s>",
	// "<|eot_id|>", "<unk>") into those tokens. Without it such text is
	// tokenized as ordinary characters. User-defined tokens are matched
	// either way, as llama.cpp and Hugging Face do.
	ParseSpecial bool
}

// vocabSource is the tokenizer metadata of a file, before validation.
type vocabSource struct {
	name      string // for error messages: the file path
	model     string
	pre       string
	hasPre    bool
	tokens    []string
	scores    []float32 // nil when absent
	types     []int32   // nil when absent
	merges    []string  // nil when absent
	hasMerges bool
	// ids holds the special-token keys present in the file (full key name
	// to value); noToken for a key that says "none" (-1 or 0xFFFFFFFF).
	ids            map[string]int32
	addBOS, addEOS *bool
	addSpacePrefix *bool
}

// Special-token metadata keys.
const (
	keyBOS    = "tokenizer.ggml.bos_token_id"
	keyEOS    = "tokenizer.ggml.eos_token_id"
	keyUNK    = "tokenizer.ggml.unknown_token_id"
	keyPAD    = "tokenizer.ggml.padding_token_id"
	keySEP    = "tokenizer.ggml.seperator_token_id" // sic: GGUF's spelling
	keyEOT    = "tokenizer.ggml.eot_token_id"
	keyEOM    = "tokenizer.ggml.eom_token_id"
	keyFIMPad = "tokenizer.ggml.fim_pad_token_id"
	keyFIMRep = "tokenizer.ggml.fim_rep_token_id"
	keyFIMSep = "tokenizer.ggml.fim_sep_token_id"
)

// specialIDKeys are the special-token keys FromGGUF reads.
var specialIDKeys = []string{keyBOS, keyEOS, keyUNK, keyPAD, keySEP, keyEOT, keyEOM, keyFIMPad, keyFIMRep, keyFIMSep}

// eogTexts are token texts that end generation whatever the metadata says
// (llama.cpp's list: chat templates end turns with these).
var eogTexts = map[string]bool{
	"<|eot_id|>":          true,
	"<|im_end|>":          true,
	"<|end|>":             true,
	"<end_of_turn>":       true,
	"<|endoftext|>":       true,
	"<|eom_id|>":          true,
	"<EOT>":               true,
	"<｜end▁of▁sentence｜>": true, // DeepSeek
}

// build validates a vocabulary and makes its Tokenizer.
func build(src *vocabSource) (*Tokenizer, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("tokenizer: %s: "+format, append([]any{src.name}, args...)...)
	}
	t := &Tokenizer{model: src.model, bos: noToken, eos: noToken, unk: noToken}
	switch src.model {
	case ModelSentencePiece:
		t.addBOS, t.addEOS, t.addSpacePrefix = true, false, true
	case ModelByteLevelBPE:
		preName := "default"
		if src.hasPre && src.pre != "" {
			preName = src.pre
		}
		pre, err := newPreTokenizer(preName)
		if err != nil {
			return nil, fail("%v", err)
		}
		t.pre = pre
		t.addBOS = pre.addBOS
	default:
		return nil, fail("tokenizer.ggml.model %q is not supported (supported: %q SentencePiece, %q byte-level BPE)", src.model, ModelSentencePiece, ModelByteLevelBPE)
	}

	n := len(src.tokens)
	if n == 0 {
		return nil, fail("tokenizer.ggml.tokens is empty")
	}
	if n > 1<<31-1 {
		return nil, fail("tokenizer.ggml.tokens has %d entries, more than int32 ids can number", n)
	}
	if src.scores != nil && len(src.scores) != n {
		return nil, fail("tokenizer.ggml.scores has %d entries but tokenizer.ggml.tokens has %d", len(src.scores), n)
	}
	if src.types != nil && len(src.types) != n {
		return nil, fail("tokenizer.ggml.token_type has %d entries but tokenizer.ggml.tokens has %d", len(src.types), n)
	}
	t.pieces = src.tokens
	t.scores = src.scores
	if t.model == ModelSentencePiece && t.scores == nil {
		t.scores = make([]float32, n) // llama.cpp's default: all pieces equal
	}
	t.types = make([]TokenType, n)
	for id := range t.types {
		t.types[id] = TokenNormal
		if src.types != nil {
			tt := src.types[id]
			if tt < int32(TokenUndefined) || tt > int32(TokenByte) {
				return nil, fail("tokenizer.ggml.token_type[%d] = %d is not a token type (0 to 6)", id, tt)
			}
			t.types[id] = TokenType(tt)
		}
	}

	// Special tokens named by the metadata.
	if t.model == ModelSentencePiece {
		// llama.cpp's defaults for SentencePiece vocabularies.
		for _, d := range []struct {
			field *int32
			id    int32
		}{{&t.bos, 1}, {&t.eos, 2}, {&t.unk, 0}} {
			if int(d.id) < n {
				*d.field = d.id
			}
		}
	}
	named := map[string]int32{}
	for _, key := range specialIDKeys {
		id, ok := src.ids[key]
		if !ok {
			continue
		}
		if id != noToken && (id < 0 || int(id) >= n) {
			return nil, fail("%s = %d is outside the vocabulary of %d tokens", key, id, n)
		}
		named[key] = id
	}
	if id, ok := named[keyBOS]; ok {
		t.bos = id
	}
	if id, ok := named[keyEOS]; ok {
		t.eos = id
	}
	if id, ok := named[keyUNK]; ok {
		t.unk = id
	}
	if src.addBOS != nil {
		t.addBOS = *src.addBOS
	}
	if src.addEOS != nil {
		t.addEOS = *src.addEOS
	}
	if src.addSpacePrefix != nil && t.model == ModelSentencePiece {
		t.addSpacePrefix = *src.addSpacePrefix
	}

	// End-of-generation tokens: EOS, EOT, EOM, the fill-in-the-middle
	// stops, and the tokens whose text says so. Like llama.cpp, a token
	// found by its text is made a control token, so that it is parsed as
	// special and decodes to nothing.
	t.eog = map[int32]bool{}
	for _, key := range []string{keyEOS, keyEOT, keyEOM, keyFIMPad, keyFIMRep, keyFIMSep} {
		if id, ok := named[key]; ok && id != noToken {
			t.eog[id] = true
		}
	}
	if t.eos != noToken {
		t.eog[t.eos] = true
	}
	for id, piece := range t.pieces {
		if eogTexts[piece] {
			t.eog[int32(id)] = true
			t.types[id] = TokenControl
		}
	}

	// The lookup table for encoding, with duplicates refused.
	t.lookup = make(map[string]int32, n)
	seen := make(map[string]int32, n)
	for i := range t.byteTokens {
		t.byteTokens[i] = noToken
	}
	for id, piece := range t.pieces {
		if piece == "" {
			continue // llama.cpp tolerates empty entries; they are never produced
		}
		if prev, dup := seen[piece]; dup {
			return nil, fail("tokenizer.ggml.tokens[%d] %q repeats tokenizer.ggml.tokens[%d]", id, piece, prev)
		}
		seen[piece] = int32(id)
		switch tt := t.types[id]; {
		case tt == TokenNormal || tt == TokenUserDefined || tt == TokenUndefined:
			t.lookup[piece] = int32(id)
		case tt == TokenByte && t.model == ModelSentencePiece:
			b, ok := parseByteToken(piece)
			if !ok {
				return nil, fail("tokenizer.ggml.tokens[%d] %q has type byte but is not of the form <0xHH>", id, piece)
			}
			if prev := t.byteTokens[b]; prev != noToken {
				return nil, fail("tokenizer.ggml.tokens[%d] %q and tokenizer.ggml.tokens[%d] %q are both byte 0x%02X", id, piece, prev, t.pieces[prev], b)
			}
			t.byteTokens[b] = int32(id)
		case tt == TokenByte:
			t.lookup[piece] = int32(id)
		}
	}
	for b := 0; b < 256; b++ {
		if t.byteTokens[b] != noToken {
			continue
		}
		if t.model == ModelSentencePiece {
			// llama.cpp's fallback when <0xNN> is missing: a piece that is
			// the byte itself.
			if id, ok := t.lookup[string([]byte{byte(b)})]; ok {
				t.byteTokens[b] = id
			}
		} else if id, ok := t.lookup[byteSymbols[b]]; ok {
			t.byteTokens[b] = id
		}
	}

	// Merges.
	if t.model == ModelByteLevelBPE {
		if !src.hasMerges {
			return nil, fail("tokenizer.ggml.merges is missing (a gpt2 vocabulary needs its merges)")
		}
		t.ranks = make(map[mergePair]int32, len(src.merges))
		for rank, merge := range src.merges {
			// The separator is the first space after the first byte (a
			// left part could itself be a space in a raw-text vocabulary).
			sep := -1
			if len(merge) > 1 {
				if i := strings.IndexByte(merge[1:], ' '); i >= 0 {
					sep = i + 1
				}
			}
			if sep < 0 || sep == len(merge)-1 {
				return nil, fail("tokenizer.ggml.merges[%d] %q is not two symbols separated by a space", rank, merge)
			}
			pair := mergePair{merge[:sep], merge[sep+1:]}
			if _, dup := t.ranks[pair]; !dup { // the first (best) rank wins
				t.ranks[pair] = int32(rank)
			}
		}
	}

	// What each token decodes to.
	t.decoded = make([]string, n)
	for id, piece := range t.pieces {
		switch t.types[id] {
		case TokenNormal, TokenUndefined:
			if t.model == ModelSentencePiece {
				t.decoded[id] = strings.ReplaceAll(piece, spaceMarker, " ")
			} else {
				t.decoded[id] = byteLevelDecode(piece)
			}
		case TokenUserDefined:
			t.decoded[id] = piece
		case TokenByte:
			if t.model == ModelSentencePiece {
				b, _ := parseByteToken(piece) // validated above
				t.decoded[id] = string([]byte{b})
			} else {
				t.decoded[id] = byteLevelDecode(piece)
			}
		default: // control, unknown, unused: no text
		}
	}

	// Tokens matched literally in text, longest first (so "<|im_end|>" is
	// found before a shorter token that is its prefix).
	for id, piece := range t.pieces {
		switch t.types[id] {
		case TokenControl, TokenUserDefined, TokenUnknown:
			if piece != "" {
				t.specials = append(t.specials, int32(id))
			}
		}
	}
	sort.SliceStable(t.specials, func(i, j int) bool {
		return len(t.pieces[t.specials[i]]) > len(t.pieces[t.specials[j]])
	})
	return t, nil
}

// parseByteToken reads a SentencePiece byte piece "<0xHH>".
func parseByteToken(piece string) (byte, bool) {
	if len(piece) != 6 || piece[:3] != "<0x" || piece[5] != '>' {
		return 0, false
	}
	var b byte
	for _, c := range []byte(piece[3:5]) {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		b = b<<4 | d
	}
	return b, true
}

// Encode returns the token ids of text.
func (t *Tokenizer) Encode(text string, opts EncodeOptions) ([]int32, error) {
	ids := make([]int32, 0, len(text)/3+2)
	if opts.AddBOS {
		if t.bos == noToken {
			return nil, errors.New("tokenizer: AddBOS: this vocabulary has no BOS token")
		}
		ids = append(ids, t.bos)
	}
	var err error
	switch t.model {
	case ModelSentencePiece:
		// SentencePiece puts a space in front of the text and in front of
		// the text after each special token (llama.cpp's rule).
		afterSpecial := true
		for _, f := range t.partition(text, opts.ParseSpecial) {
			if f.special != noToken {
				ids = append(ids, f.special)
				afterSpecial = true
				continue
			}
			s := f.text
			if t.addSpacePrefix && afterSpecial {
				s = " " + s
			}
			ids, err = t.encodeSentencePiece(strings.ReplaceAll(s, " ", spaceMarker), ids)
			if err != nil {
				return nil, err
			}
			afterSpecial = false
		}
	case ModelByteLevelBPE:
		for _, f := range t.partition(text, opts.ParseSpecial) {
			if f.special != noToken {
				ids = append(ids, f.special)
				continue
			}
			ids, err = t.encodeByteLevel(f.text, ids)
			if err != nil {
				return nil, err
			}
		}
	}
	if opts.AddEOS {
		if t.eos == noToken {
			return nil, errors.New("tokenizer: AddEOS: this vocabulary has no EOS token")
		}
		ids = append(ids, t.eos)
	}
	return ids, nil
}

// fragment is a stretch of text to tokenize, or a special token found in it.
type fragment struct {
	text    string
	special int32 // the token, or noToken for text
}

// partition cuts text at every occurrence of a special token: longest
// tokens first, each occurrence found left to right (llama.cpp's
// tokenizer_st_partition).
func (t *Tokenizer) partition(text string, parseSpecial bool) []fragment {
	if text == "" {
		return nil
	}
	frags := []fragment{{text: text, special: noToken}}
	for _, id := range t.specials {
		if !parseSpecial && t.types[id] != TokenUserDefined {
			continue
		}
		piece := t.pieces[id]
		found := false
		for _, f := range frags {
			if f.special == noToken && strings.Contains(f.text, piece) {
				found = true
				break
			}
		}
		if !found {
			continue
		}
		next := make([]fragment, 0, len(frags)+2)
		for _, f := range frags {
			if f.special != noToken {
				next = append(next, f)
				continue
			}
			rest := f.text
			for {
				i := strings.Index(rest, piece)
				if i < 0 {
					break
				}
				if i > 0 {
					next = append(next, fragment{text: rest[:i], special: noToken})
				}
				next = append(next, fragment{special: id})
				rest = rest[i+len(piece):]
			}
			if rest != "" {
				next = append(next, fragment{text: rest, special: noToken})
			}
		}
		frags = next
	}
	return frags
}

// appendByteFallback appends the tokens for a symbol no piece spells: its
// byte tokens, or the unknown token when some byte has none.
func (t *Tokenizer) appendByteFallback(symbol string, ids []int32) ([]int32, error) {
	for i := 0; i < len(symbol); i++ {
		if t.byteTokens[symbol[i]] == noToken {
			if t.unk != noToken {
				return append(ids, t.unk), nil
			}
			return nil, fmt.Errorf("tokenizer: byte 0x%02X of %q has no token: the vocabulary has no byte token for it and no unknown token", symbol[i], symbol)
		}
	}
	for i := 0; i < len(symbol); i++ {
		ids = append(ids, t.byteTokens[symbol[i]])
	}
	return ids, nil
}

// Decode returns the text of ids. Control, unknown and unused tokens (BOS,
// EOS, <unk>, ...) add no text; byte tokens are reassembled into the bytes
// they stand for, so the result can hold invalid UTF-8 if the ids do. For a
// SentencePiece vocabulary that puts a space before the text, the leading
// space of the first piece with text is dropped (as SentencePiece does: the
// first piece after BOS, "▁Once", decodes to "Once"). Ids outside the
// vocabulary add no text; CheckIDs finds them.
func (t *Tokenizer) Decode(ids []int32) string {
	var b strings.Builder
	dropSpace := t.dropsLeadingSpace()
	for _, id := range ids {
		piece := t.pieceText(id, &dropSpace)
		b.WriteString(piece)
	}
	return b.String()
}

// dropsLeadingSpace reports whether decoding drops the leading space of the
// first piece with text.
func (t *Tokenizer) dropsLeadingSpace() bool {
	return t.model == ModelSentencePiece && t.addSpacePrefix
}

// pieceText is the text id adds to a decoding, applying the leading-space
// rule while *dropSpace is set (it is cleared by the first piece with text).
func (t *Tokenizer) pieceText(id int32, dropSpace *bool) string {
	if id < 0 || int(id) >= len(t.decoded) {
		return ""
	}
	piece := t.decoded[id]
	if piece == "" {
		return ""
	}
	if *dropSpace {
		*dropSpace = false
		tt := t.types[id]
		if (tt == TokenNormal || tt == TokenUndefined) && piece[0] == ' ' {
			piece = piece[1:]
		}
	}
	return piece
}

// CheckIDs returns an error naming the first id outside the vocabulary, or
// nil. (An addition to the issue-5 contract, for callers holding ids from
// outside.)
func (t *Tokenizer) CheckIDs(ids []int32) error {
	for i, id := range ids {
		if id < 0 || int(id) >= len(t.pieces) {
			return fmt.Errorf("tokenizer: token %d (at index %d) is outside the vocabulary of %d tokens", id, i, len(t.pieces))
		}
	}
	return nil
}

// VocabSize returns the number of tokens in the vocabulary.
func (t *Tokenizer) VocabSize() int { return len(t.pieces) }

// BOS returns the beginning-of-sequence token, if the vocabulary has one.
func (t *Tokenizer) BOS() (int32, bool) { return t.bos, t.bos != noToken }

// EOS returns the end-of-sequence token, if the vocabulary has one.
func (t *Tokenizer) EOS() (int32, bool) { return t.eos, t.eos != noToken }

// IsEndOfGeneration reports whether generating id ends the text: EOS, EOT
// (tokenizer.ggml.eot_token_id), EOM, the fill-in-the-middle stop tokens, and
// the tokens whose text marks an end of turn (<|eot_id|>, <|im_end|>,
// <|endoftext|>, <end_of_turn>, ...), as llama.cpp decides.
func (t *Tokenizer) IsEndOfGeneration(id int32) bool { return t.eog[id] }

// Piece returns id's raw vocabulary string ("▁Once", "Ġworld", "<0x0A>",
// "<s>"), or "" for an id outside the vocabulary.
func (t *Tokenizer) Piece(id int32) string {
	if id < 0 || int(id) >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// Type returns id's token type (TokenUndefined for an id outside the
// vocabulary). An addition to the issue-5 contract.
func (t *Tokenizer) Type(id int32) TokenType {
	if id < 0 || int(id) >= len(t.types) {
		return TokenUndefined
	}
	return t.types[id]
}

// Model returns the vocabulary kind: ModelSentencePiece or ModelByteLevelBPE.
func (t *Tokenizer) Model() string { return t.model }

// PreTokenizer returns the tokenizer.ggml.pre name in use for a byte-level
// BPE vocabulary ("default" when the file names none), or "" for
// SentencePiece.
func (t *Tokenizer) PreTokenizer() string {
	if t.pre == nil {
		return ""
	}
	return t.pre.name
}

// DefaultAddBOS reports whether the model expects BOS in front of a prompt
// (tokenizer.ggml.add_bos_token, else the family's default: true for
// SentencePiece and LLaMA-3).
func (t *Tokenizer) DefaultAddBOS() bool { return t.addBOS }

// DefaultAddEOS reports whether the model expects EOS after a prompt
// (tokenizer.ggml.add_eos_token, default false).
func (t *Tokenizer) DefaultAddEOS() bool { return t.addEOS }
