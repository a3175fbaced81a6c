package tokenizer

import "unicode/utf8"

// Decoder turns a stream of token ids into text as they arrive, for printing
// generated text token by token. A character that byte tokens spell over
// several tokens is held back until it is complete, so every string Next
// returns ends on a UTF-8 character boundary. Bytes that can never become
// valid UTF-8 (a stray continuation byte, 0xFF, a lead byte followed by a
// non-continuation byte) are passed through as they are, so the
// concatenation of everything Next and Flush return is exactly
// Tokenizer.Decode of all the ids.
//
// Feed a prompt's tokens through Next too (and discard their text) before the
// generated ones: the SentencePiece leading-space rule applies only to the
// first piece with text in the whole stream, and a prompt can end inside a
// character. A Decoder is not safe for concurrent use.
type Decoder struct {
	t         *Tokenizer
	dropSpace bool
	pending   []byte // the bytes of an incomplete character
}

// NewDecoder returns a Decoder at the start of a stream.
func (t *Tokenizer) NewDecoder() *Decoder {
	return &Decoder{t: t, dropSpace: t.dropsLeadingSpace()}
}

// Next adds id to the stream and returns the text that is now complete
// (possibly ""). Ids outside the vocabulary add no text, as in Decode.
func (d *Decoder) Next(id int32) string {
	piece := d.t.pieceText(id, &d.dropSpace)
	if piece == "" {
		return ""
	}
	if len(d.pending) == 0 {
		// The common case: no held bytes, and the piece is usually whole.
		n := completePrefix([]byte(piece))
		d.pending = append(d.pending, piece[n:]...)
		return piece[:n]
	}
	d.pending = append(d.pending, piece...)
	n := completePrefix(d.pending)
	out := string(d.pending[:n])
	d.pending = d.pending[:copy(d.pending, d.pending[n:])]
	return out
}

// Flush returns the bytes held back at the end of the stream (the start of
// a character the stream never finished), and empties the Decoder's buffer.
func (d *Decoder) Flush() string {
	out := string(d.pending)
	d.pending = d.pending[:0]
	return out
}

// completePrefix returns the length of the longest prefix of b after which
// what is left is the valid beginning of an unfinished UTF-8 character.
func completePrefix(b []byte) int {
	// A UTF-8 character is at most 4 bytes, so an unfinished one starts
	// within the last 3.
	for i := len(b) - 1; i >= 0 && i >= len(b)-3; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}
