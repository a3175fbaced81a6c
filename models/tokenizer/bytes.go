package tokenizer

import "unicode/utf8"

// GPT-2's byte-level BPE never works on raw bytes: every byte is first mapped
// to a printable Unicode character, so that vocabulary entries and merges are
// ordinary strings without spaces or control characters. Bytes that are
// already printable Latin-1 (0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF) map to the
// character with the same code point; the other 68 bytes map, in increasing
// byte order, to U+0100, U+0101, ... (so the space 0x20 becomes U+0120 'Ġ' and
// the newline 0x0A becomes U+010A 'Ċ').

// byteSymbols[b] is the UTF-8 encoding of the character byte b maps to.
var byteSymbols [256]string

// symbolBytes is the inverse of byteSymbols: the byte a mapped character
// stands for.
var symbolBytes = make(map[rune]byte, 256)

func init() {
	next := rune(256)
	for b := 0; b < 256; b++ {
		printable := (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		r := rune(b)
		if !printable {
			r = next
			next++
		}
		byteSymbols[b] = string(r)
		symbolBytes[r] = byte(b)
	}
}

// byteLevelDecode turns a byte-level vocabulary string back into the bytes it
// stands for. A character outside the byte map (a vocabulary entry written
// with raw text) is kept as its own UTF-8 encoding, so no text is lost.
func byteLevelDecode(piece string) string {
	out := make([]byte, 0, len(piece))
	for i := 0; i < len(piece); {
		r, size := utf8.DecodeRuneInString(piece[i:])
		if b, ok := symbolBytes[r]; ok {
			out = append(out, b)
		} else {
			out = append(out, piece[i:i+size]...)
		}
		i += size
	}
	return string(out)
}
