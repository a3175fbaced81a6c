package llama

import (
	"errors"
	"fmt"
	"slices"

	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// kvCache hands out KV pages: sequences own pages through their block
// tables, and page p of every shard's per-layer K and V tensors belongs to
// the sequence holding p. The free list is guarded by Model.seqMu. Page
// nPages (one past the last) is the padding page, never handed out.
type kvCache struct {
	pageSize int
	nPages   int
	freeList []int32
}

func newPageAllocator(opts Options) *kvCache {
	kv := &kvCache{pageSize: opts.PageSize, nPages: opts.KVPages}
	kv.freeList = make([]int32, opts.KVPages)
	for i := range kv.freeList {
		kv.freeList[i] = int32(opts.KVPages - 1 - i) // pop from the end: page 0 first
	}
	return kv
}

// paddingPage is the page padded batch rows write into.
func (kv *kvCache) paddingPage() int32 { return int32(kv.nPages) }

// take pops n free pages, or fails without taking any.
func (kv *kvCache) take(n int) ([]int32, error) {
	if n > len(kv.freeList) {
		return nil, fmt.Errorf("llama: %w: the KV cache needs %d more pages of %d tokens, %d of %d are free (raise Options.KVPages or free sequences)",
			backend.ErrOutOfMemory, n, kv.pageSize, len(kv.freeList), kv.nPages)
	}
	pages := slices.Clone(kv.freeList[len(kv.freeList)-n:])
	kv.freeList = kv.freeList[:len(kv.freeList)-n]
	return pages, nil
}

func (kv *kvCache) give(pages []int32) { kv.freeList = append(kv.freeList, pages...) }

// pagesFor is how many pages hold n tokens.
func (kv *kvCache) pagesFor(n int) int { return (n + kv.pageSize - 1) / kv.pageSize }

// Sequence is one token stream whose keys and values live in the model's KV
// cache. Create it with Model.NewSequence or Model.Fork; Free it when done.
type Sequence struct {
	m      *Model
	tokens []int32 // the tokens whose keys and values are in the cache
	pages  []int32 // KV pages, in order
	busy   bool    // in a Step
	freed  bool
}

// NewSequence returns an empty sequence. At most Options.MaxSequences may
// exist at once.
func (m *Model) NewSequence() (*Sequence, error) {
	m.seqMu.Lock()
	defer m.seqMu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("llama: new sequence: %w", backend.ErrClosed)
	}
	if m.liveSeqs >= m.opts.MaxSequences {
		return nil, fmt.Errorf("llama: new sequence: %d sequences exist, the limit (Options.MaxSequences) is %d", m.liveSeqs, m.opts.MaxSequences)
	}
	m.liveSeqs++
	return &Sequence{m: m}, nil
}

// Len is the number of tokens in the sequence.
func (s *Sequence) Len() int {
	s.m.seqMu.Lock()
	defer s.m.seqMu.Unlock()
	return len(s.tokens)
}

// Tokens returns a copy of the sequence's tokens.
func (s *Sequence) Tokens() []int32 {
	s.m.seqMu.Lock()
	defer s.m.seqMu.Unlock()
	return slices.Clone(s.tokens)
}

// Free returns the sequence's pages to the cache. Freeing twice is not an error.
func (s *Sequence) Free() error {
	m := s.m
	m.seqMu.Lock()
	defer m.seqMu.Unlock()
	if s.freed {
		return nil
	}
	if s.busy {
		return fmt.Errorf("llama: free: the sequence is in a Step")
	}
	s.freed = true
	m.liveSeqs--
	if m.kv != nil {
		m.kv.give(s.pages)
	}
	s.pages, s.tokens = nil, nil
	return nil
}

// Truncate keeps the first n tokens (a server rewinding a sequence),
// returning pages no longer needed.
func (s *Sequence) Truncate(n int) error {
	m := s.m
	m.seqMu.Lock()
	defer m.seqMu.Unlock()
	if err := s.usableLocked("truncate"); err != nil {
		return err
	}
	if n < 0 || n > len(s.tokens) {
		return fmt.Errorf("llama: truncate to %d: the sequence has %d tokens", n, len(s.tokens))
	}
	keep := m.kv.pagesFor(n)
	m.kv.give(s.pages[keep:])
	s.pages = s.pages[:keep]
	s.tokens = s.tokens[:n]
	return nil
}

func (s *Sequence) usableLocked(what string) error {
	switch {
	case s.m.closed:
		return fmt.Errorf("llama: %s: %w", what, backend.ErrClosed)
	case s.freed:
		return fmt.Errorf("llama: %s: the sequence was freed", what)
	case s.busy:
		return fmt.Errorf("llama: %s: the sequence is in another Step", what)
	}
	return nil
}

// Fork returns a new sequence with a copy of s's tokens and KV cache (for
// beam search, or a shared prompt prefix).
func (m *Model) Fork(s *Sequence) (*Sequence, error) {
	if s.m != m {
		return nil, fmt.Errorf("llama: fork: the sequence belongs to another model")
	}
	m.stepMu.Lock() // the copies run on the device: no Step in between
	defer m.stepMu.Unlock()
	m.seqMu.Lock()
	if err := s.usableLocked("fork"); err != nil {
		m.seqMu.Unlock()
		return nil, err
	}
	if m.liveSeqs >= m.opts.MaxSequences {
		m.seqMu.Unlock()
		return nil, fmt.Errorf("llama: fork: %d sequences exist, the limit (Options.MaxSequences) is %d", m.liveSeqs, m.opts.MaxSequences)
	}
	pages, err := m.kv.take(len(s.pages))
	if err != nil {
		m.seqMu.Unlock()
		return nil, fmt.Errorf("llama: fork: %w", err)
	}
	m.liveSeqs++
	child := &Sequence{m: m, tokens: slices.Clone(s.tokens), pages: pages}
	src := slices.Clone(s.pages)
	m.seqMu.Unlock()
	for _, sh := range m.shards {
		for layer := range sh.k {
			for _, cache := range []tensor.Tensor{sh.k[layer], sh.v[layer]} {
				for i, p := range src {
					from, err1 := cache.Slice(0, int(p), int(p)+1)
					to, err2 := cache.Slice(0, int(pages[i]), int(pages[i])+1)
					if err := errors.Join(err1, err2); err != nil {
						_ = child.Free()
						return nil, err
					}
					if err := sh.dev.Copy(to, from); err != nil {
						_ = child.Free()
						return nil, fmt.Errorf("llama: fork: copying KV page on %s: %w", sh.dev.Name(), err)
					}
				}
			}
		}
	}
	return child, nil
}
