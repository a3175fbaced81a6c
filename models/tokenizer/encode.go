package tokenizer

import (
	"unicode/utf8"
)

// symbol is a stretch of the text being tokenized, in a doubly linked list of
// the stretches that are still separate. Merging extends the left symbol
// over the right one and empties the right one.
type symbol struct {
	start, end int // byte range in the text
	prev, next int // neighbours in the list, -1 at the ends
}

// candidate is a possible merge of two adjacent symbols. The sizes record the
// symbols as they were when the candidate was made: if either has changed
// since, an earlier merge consumed one of them and the candidate is stale.
type candidate struct {
	left, right         int
	leftSize, rightSize int
	score               float32 // SentencePiece: the merged piece's score, higher first
	rank                int32   // BPE: the merge's rank, lower first
}

// candidateQueue is a priority queue of merges: SentencePiece's pops the
// highest score, BPE's the lowest rank; ties go to the leftmost pair, as in
// llama.cpp (which makes the result independent of heap details).
type candidateQueue struct {
	items   []candidate
	byScore bool
}

func (q *candidateQueue) len() int { return len(q.items) }

func (q *candidateQueue) less(i, j int) bool {
	a, b := &q.items[i], &q.items[j]
	if q.byScore {
		if a.score != b.score {
			return a.score > b.score
		}
	} else if a.rank != b.rank {
		return a.rank < b.rank
	}
	return a.left < b.left
}

// push and pop keep items a binary heap by less. (Typed rather than through
// container/heap: boxing each candidate in an interface dominated the time
// of encoding long texts.)
func (q *candidateQueue) push(c candidate) {
	q.items = append(q.items, c)
	for i := len(q.items) - 1; i > 0; {
		parent := (i - 1) / 2
		if !q.less(i, parent) {
			break
		}
		q.items[i], q.items[parent] = q.items[parent], q.items[i]
		i = parent
	}
}

func (q *candidateQueue) pop() candidate {
	top := q.items[0]
	n := len(q.items) - 1
	q.items[0] = q.items[n]
	q.items = q.items[:n]
	for i := 0; ; {
		best, l, r := i, 2*i+1, 2*i+2
		if l < n && q.less(l, best) {
			best = l
		}
		if r < n && q.less(r, best) {
			best = r
		}
		if best == i {
			break
		}
		q.items[i], q.items[best] = q.items[best], q.items[i]
		i = best
	}
	return top
}

// mergeSymbols runs the merge loop over syms: pop the best candidate, skip it
// if stale, else merge and offer the new symbol's pairs with its neighbours.
// offer(left, right) pushes the candidate for two adjacent symbols, if any.
func mergeSymbols(syms []symbol, q *candidateQueue, offer func(left, right int)) {
	for i := 1; i < len(syms); i++ {
		offer(i-1, i)
	}
	for q.len() > 0 {
		c := q.pop()
		l, r := &syms[c.left], &syms[c.right]
		if l.end-l.start != c.leftSize || r.end-r.start != c.rightSize || l.next != c.right {
			continue
		}
		l.end = r.end
		l.next = r.next
		r.start = r.end // empty: merged away
		if l.next >= 0 {
			syms[l.next].prev = c.left
		}
		if l.prev >= 0 {
			offer(l.prev, c.left)
		}
		if l.next >= 0 {
			offer(c.left, l.next)
		}
	}
}

// encodeSentencePiece appends the tokens of one stretch of escaped text
// (spaces already written as "▁").
//
// The text starts as one symbol per UTF-8 character (each byte of an invalid
// sequence on its own). Repeatedly, of all adjacent pairs whose concatenation
// is a piece, the one with the highest piece score merges (ties: leftmost).
// Each final symbol is its piece, or its bytes' byte tokens.
func (t *Tokenizer) encodeSentencePiece(text string, ids []int32) ([]int32, error) {
	if text == "" {
		return ids, nil
	}
	syms := make([]symbol, 0, len(text))
	for pos := 0; pos < len(text); {
		_, size := utf8.DecodeRuneInString(text[pos:])
		i := len(syms)
		syms = append(syms, symbol{start: pos, end: pos + size, prev: i - 1, next: i + 1})
		pos += size
	}
	syms[len(syms)-1].next = -1

	q := &candidateQueue{byScore: true}
	offer := func(left, right int) {
		l, r := syms[left], syms[right]
		id, ok := t.lookup[text[l.start:r.end]]
		if !ok {
			return
		}
		q.push(candidate{left: left, right: right, leftSize: l.end - l.start, rightSize: r.end - r.start, score: t.scores[id]})
	}
	mergeSymbols(syms, q, offer)

	var err error
	for i := 0; i >= 0; i = syms[i].next {
		piece := text[syms[i].start:syms[i].end]
		if id, ok := t.lookup[piece]; ok {
			ids = append(ids, id)
			continue
		}
		if ids, err = t.appendByteFallback(piece, ids); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// encodeByteLevel appends the tokens of one stretch of text with byte-level
// BPE: pre-tokenize into words, map each word's bytes to their characters,
// and merge adjacent symbols lowest merge rank first (ties: leftmost).
func (t *Tokenizer) encodeByteLevel(text string, ids []int32) ([]int32, error) {
	var mapped []byte
	var syms []symbol
	q := &candidateQueue{}
	var word string
	offer := func(left, right int) {
		l, r := syms[left], syms[right]
		rank, ok := t.ranks[mergePair{word[l.start:l.end], word[r.start:r.end]}]
		if !ok {
			return
		}
		q.push(candidate{left: left, right: right, leftSize: l.end - l.start, rightSize: r.end - r.start, rank: rank})
	}
	var err error
	for _, raw := range t.pre.split(text) {
		// The word in mapped characters, one symbol per original byte.
		mapped = mapped[:0]
		syms = syms[:0]
		for i := 0; i < len(raw); i++ {
			start := len(mapped)
			mapped = append(mapped, byteSymbols[raw[i]]...)
			syms = append(syms, symbol{start: start, end: len(mapped), prev: i - 1, next: i + 1})
		}
		syms[len(syms)-1].next = -1
		word = string(mapped)

		if t.pre.ignoreMerges {
			if id, ok := t.lookup[word]; ok {
				ids = append(ids, id)
				continue
			}
		}
		q.items = q.items[:0]
		mergeSymbols(syms, q, offer)

		for i := 0; i >= 0; i = syms[i].next {
			piece := word[syms[i].start:syms[i].end]
			if id, ok := t.lookup[piece]; ok {
				ids = append(ids, id)
				continue
			}
			// No token for the merged symbol: fall back to its bytes.
			if ids, err = t.appendByteFallback(byteLevelDecode(piece), ids); err != nil {
				return nil, err
			}
		}
	}
	return ids, nil
}
