package llama

import (
	"context"
	"fmt"
	"iter"

	"github.com/kiln-gpu/kiln/models/sample"
	"github.com/kiln-gpu/kiln/models/tokenizer"
)

// GenerateOptions configure Generate.
type GenerateOptions struct {
	Sample sample.Options
	// MaxTokens stops generation after this many new tokens; 0 means until
	// an end-of-generation token or a full context.
	MaxTokens int
}

// Token is one generated token and the text it completes: Text holds only
// whole UTF-8 characters, so a token that ends inside a character yields ""
// and the next one carries the rest; the last token of a generation also
// carries any bytes of a character that was never finished. The Texts of a
// generation add up to the tokenizer's Decode of its tokens, continuing the
// text already in the sequence.
type Token struct {
	ID   int32
	Text string
}

// Generate appends prompt to seq (with the tokenizer's BOS first when seq is
// empty and the model wants one), then samples tokens one at a time and
// yields each (after appending it to seq). It stops at an end-of-generation
// token (not yielded, not appended), after MaxTokens, when the context is
// full, or when ctx ends (yielding ctx's error). An error ends the sequence of values with (Token{}, err).
//
// The prompt and generated tokens stay in seq, so a later Generate on seq
// continues the conversation.
func (m *Model) Generate(ctx context.Context, seq *Sequence, prompt string, opts GenerateOptions) iter.Seq2[Token, error] {
	return func(yield func(Token, error) bool) {
		sampler, err := sample.New(opts.Sample)
		if err != nil {
			yield(Token{}, err)
			return
		}
		ids, err := m.Tokenizer.Encode(prompt, tokenizer.EncodeOptions{ParseSpecial: true})
		if err != nil {
			yield(Token{}, fmt.Errorf("llama: generate: %w", err))
			return
		}
		if seq.Len() == 0 && m.AddsBOS() {
			if bos, ok := m.Tokenizer.BOS(); ok {
				ids = append([]int32{bos}, ids...)
			}
		}
		if len(ids) == 0 {
			// Nothing new to feed: re-feed the last token to get its logits.
			n := seq.Len()
			if n == 0 {
				yield(Token{}, fmt.Errorf("llama: generate: empty prompt and empty sequence, and the model has no BOS token"))
				return
			}
			last := seq.Tokens()[n-1]
			if err := seq.Truncate(n - 1); err != nil {
				yield(Token{}, err)
				return
			}
			ids = []int32{last}
		}
		// Prefill in chunks of MaxBatchTokens; keep the last logits.
		var logits []float32
		for start := 0; start < len(ids); start += m.opts.MaxBatchTokens {
			chunk := ids[start:min(start+m.opts.MaxBatchTokens, len(ids))]
			req := Request{Seq: seq, Tokens: chunk}
			if start+len(chunk) < len(ids) {
				req.LogitsAt = []int{} // only the last chunk's logits are used
			}
			res, err := m.Step(ctx, []Request{req})
			if err != nil {
				yield(Token{}, err)
				return
			}
			if len(res[0].Logits) > 0 {
				logits = res[0].Logits[0]
			}
		}
		// The decoder sees the sequence's tokens first (their text is not
		// yielded), so that the first generated piece keeps its leading
		// space as a continuation of the prompt.
		dec := m.Tokenizer.NewDecoder()
		for _, id := range seq.Tokens() {
			dec.Next(id)
		}
		// Each token is sampled before the previous one is yielded, so that
		// the last token yielded carries the decoder's held-back bytes.
		sampleNext := func() (int32, bool, error) {
			id, err := sampler.Sample(logits, seq.Tokens())
			if err != nil {
				return 0, false, err
			}
			end := m.Tokenizer.IsEndOfGeneration(id) || seq.Len() >= m.opts.ContextLen
			return id, end, nil
		}
		id, end, err := sampleNext()
		for n := 0; !end; n++ {
			if err == nil {
				err = ctx.Err()
			}
			if err != nil {
				yield(Token{}, err)
				return
			}
			// The token goes into the sequence before it is yielded, so that
			// seq always holds everything generated (a later Generate
			// continues from it), even when the caller stops here.
			res, err := m.Step(ctx, []Request{{Seq: seq, Tokens: []int32{id}}})
			if err != nil {
				yield(Token{}, err)
				return
			}
			logits = res[0].Logits[0]
			last := opts.MaxTokens > 0 && n+1 == opts.MaxTokens
			var next int32
			if !last {
				if next, last, err = sampleNext(); err != nil {
					last = true // yield this token, then the error
				}
			}
			text := dec.Next(id)
			if last {
				text += dec.Flush()
			}
			if !yield(Token{ID: id, Text: text}, nil) {
				return
			}
			if err != nil {
				yield(Token{}, err)
				return
			}
			if last {
				return
			}
			id = next
		}
	}
}

// AddsBOS reports whether a new sequence's text starts with BOS:
// tokenizer.ggml.add_bos_token when the file says, else true for
// SentencePiece vocabularies.
func (m *Model) AddsBOS() bool {
	if v, err := m.file.Bool("tokenizer.ggml.add_bos_token"); err == nil {
		return v
	}
	model, _ := m.file.String("tokenizer.ggml.model")
	return model == "llama"
}

// ContextLen is the longest sequence, in tokens (Options.ContextLen after
// defaults).
func (m *Model) ContextLen() int { return m.opts.ContextLen }

// MaxBatchTokens is the most tokens one Step takes (Options.MaxBatchTokens).
func (m *Model) MaxBatchTokens() int { return m.opts.MaxBatchTokens }
