package llama

import (
	"context"
	"errors"
	"fmt"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Request asks a Step to append tokens to a sequence.
type Request struct {
	Seq    *Sequence
	Tokens []int32
	// AllLogits asks for the logits after every new token; otherwise only
	// after the last one.
	AllLogits bool
}

// Result holds a request's logits: one row of VocabSize float32 per token
// asked for (one, or len(Tokens) with AllLogits), the distribution of the
// token that follows it.
type Result struct {
	Logits [][]float32
}

// Step runs the model over a batch: each request's tokens are appended to
// its sequence (keys and values into the cache) and the logits asked for are
// returned. Prefill (many tokens) and decode (one token) requests mix freely.
// The batch may hold at most Options.MaxBatchTokens tokens, and a sequence
// appears at most once. On error no sequence changes.
func (m *Model) Step(ctx context.Context, reqs []Request) ([]Result, error) {
	m.stepMu.Lock()
	defer m.stepMu.Unlock()
	plan, err := m.planStep(reqs)
	if err != nil {
		return nil, err
	}
	results, err := m.run(ctx, plan)
	m.finishStep(plan, err == nil)
	if err != nil {
		return nil, err
	}
	return results, nil
}

// stepPlan is a validated batch with its pages reserved.
type stepPlan struct {
	reqs     []Request
	start    []int     // each sequence's length before the step
	newPages [][]int32 // pages taken for each request
	total    int       // tokens in the batch
	rows     int       // logit rows
}

func (m *Model) planStep(reqs []Request) (*stepPlan, error) {
	if len(reqs) == 0 {
		return nil, fmt.Errorf("llama: step: no requests")
	}
	m.seqMu.Lock()
	defer m.seqMu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("llama: step: %w", errClosed)
	}
	p := &stepPlan{reqs: reqs, start: make([]int, len(reqs)), newPages: make([][]int32, len(reqs))}
	seen := map[*Sequence]bool{}
	for i, r := range reqs {
		s := r.Seq
		if s == nil || s.m != m {
			return nil, fmt.Errorf("llama: step: request %d: the sequence is missing or belongs to another model", i)
		}
		if err := s.usableLocked("step"); err != nil {
			return nil, fmt.Errorf("%w (request %d)", err, i)
		}
		if seen[s] {
			return nil, fmt.Errorf("llama: step: request %d: the sequence appears twice in the batch", i)
		}
		seen[s] = true
		if len(r.Tokens) == 0 {
			return nil, fmt.Errorf("llama: step: request %d has no tokens", i)
		}
		for j, id := range r.Tokens {
			if id < 0 || int(id) >= m.Config.VocabSize {
				return nil, fmt.Errorf("llama: step: request %d token %d: id %d is outside the vocabulary [0, %d)", i, j, id, m.Config.VocabSize)
			}
		}
		p.start[i] = len(s.tokens)
		if n := p.start[i] + len(r.Tokens); n > m.opts.ContextLen {
			return nil, fmt.Errorf("llama: step: request %d: %d + %d tokens exceed the context length %d", i, p.start[i], len(r.Tokens), m.opts.ContextLen)
		}
		p.total += len(r.Tokens)
		if r.AllLogits {
			p.rows += len(r.Tokens)
		} else {
			p.rows++
		}
	}
	if p.total > m.opts.MaxBatchTokens {
		return nil, fmt.Errorf("llama: step: %d tokens exceed Options.MaxBatchTokens = %d", p.total, m.opts.MaxBatchTokens)
	}
	for i, r := range reqs {
		need := m.kv.pagesFor(p.start[i]+len(r.Tokens)) - len(r.Seq.pages)
		if need <= 0 {
			continue
		}
		pages, err := m.kv.take(need)
		if err != nil {
			for j := 0; j < i; j++ {
				m.kv.give(p.newPages[j])
			}
			return nil, fmt.Errorf("llama: step: %w", err)
		}
		p.newPages[i] = pages
	}
	for i, r := range reqs {
		r.Seq.busy = true
		r.Seq.pages = append(r.Seq.pages, p.newPages[i]...)
	}
	return p, nil
}

// finishStep commits (appends the tokens) or rolls back (returns the pages).
func (m *Model) finishStep(p *stepPlan, ok bool) {
	m.seqMu.Lock()
	defer m.seqMu.Unlock()
	for i, r := range p.reqs {
		s := r.Seq
		s.busy = false
		if ok {
			s.tokens = append(s.tokens, r.Tokens...)
			continue
		}
		s.pages = s.pages[:len(s.pages)-len(p.newPages[i])]
		m.kv.give(p.newPages[i])
	}
}

var errClosed = errors.New("the model was closed")

// scratch allocates a step's temporaries and frees them all at the end
// (the backend's caching allocator makes this cheap step after step).
type scratch struct {
	m   *Model
	all []tensor.Tensor
	err error
}

func (s *scratch) alloc(dt tensor.DType, shape ...int) tensor.Tensor {
	if s.err != nil {
		return tensor.Tensor{}
	}
	t, err := s.m.dev.Alloc(dt, shape...)
	if err != nil {
		s.err = fmt.Errorf("llama: step: %w", err)
		return tensor.Tensor{}
	}
	s.all = append(s.all, t)
	return t
}

func (s *scratch) upload(vals []int32, shape ...int) tensor.Tensor {
	t := s.alloc(tensor.I32, shape...)
	if s.err == nil {
		if err := s.m.dev.Upload(t, tensor.I32Bytes(vals)); err != nil {
			s.err = err
		}
	}
	return t
}

// view reshapes t, recording the first error.
func (s *scratch) view(t tensor.Tensor, shape ...int) tensor.Tensor {
	if s.err != nil {
		return tensor.Tensor{}
	}
	v, err := t.Reshape(shape...)
	if err != nil {
		s.err = err
	}
	return v
}

func (s *scratch) free() {
	for _, t := range s.all {
		_ = s.m.dev.Free(t)
	}
}

// do records the first error of a sequence of ops.
func (s *scratch) do(err error) {
	if s.err == nil && err != nil {
		s.err = err
	}
}

// run executes a planned step on the device.
func (m *Model) run(ctx context.Context, p *stepPlan) ([]Result, error) {
	c, dev, w := m.Config, m.dev, &m.w
	act := m.actType
	T, B := p.total, len(p.reqs)
	qDim, kvDim := c.NHeads*c.HeadDim, c.NKVHeads*c.HeadDim

	// Host-side metadata.
	ids := make([]int32, 0, T)
	positions := make([]int32, 0, T)
	seqOf := make([]int32, 0, T)
	queryStarts := make([]int32, 0, B+1)
	lens := make([]int32, B)
	rowsOut := make([]int32, 0, p.rows)
	maxPages, maxQ, maxKV := 0, 0, 0
	queryStarts = append(queryStarts, 0)
	for i, r := range p.reqs {
		for j, id := range r.Tokens {
			if r.AllLogits || j == len(r.Tokens)-1 {
				rowsOut = append(rowsOut, int32(len(ids)))
			}
			ids = append(ids, id)
			positions = append(positions, int32(p.start[i]+j))
			seqOf = append(seqOf, int32(i))
		}
		queryStarts = append(queryStarts, int32(len(ids)))
		lens[i] = int32(p.start[i] + len(r.Tokens))
		maxPages = max(maxPages, len(r.Seq.pages))
		maxQ, maxKV = max(maxQ, len(r.Tokens)), max(maxKV, int(lens[i]))
	}
	table := make([]int32, B*maxPages)
	for i, r := range p.reqs {
		copy(table[i*maxPages:], r.Seq.pages)
	}

	s := &scratch{m: m}
	defer s.free()
	idsT := s.upload(ids, T)
	posT := s.upload(positions, T)
	seqT := s.upload(seqOf, T)
	qsT := s.upload(queryStarts, B+1)
	lensT := s.upload(lens, B)
	tableT := s.upload(table, B, maxPages)
	rowsT := s.upload(rowsOut, len(rowsOut))

	x := s.alloc(act, T, c.Dim)
	h := s.alloc(act, T, c.Dim)
	q := s.alloc(act, T, qDim)
	k := s.alloc(act, T, kvDim)
	v := s.alloc(act, T, kvDim)
	attn := s.alloc(act, T, qDim)
	o := s.alloc(act, T, c.Dim)
	g := s.alloc(act, T, c.FFNDim)
	if s.err != nil {
		return nil, s.err
	}
	q3, k3, v3 := s.view(q, T, c.NHeads, c.HeadDim), s.view(k, T, c.NKVHeads, c.HeadDim), s.view(v, T, c.NKVHeads, c.HeadDim)
	attn3 := s.view(attn, T, c.NHeads, c.HeadDim)
	rope := op.RoPEOptions{
		Style: c.RopeStyle, NDims: c.RopeDims, FreqBase: c.RopeBase, FreqScale: c.RopeScale, FreqFactors: w.ropeFreqs,
	}
	norm := op.NormOptions{Eps: c.RMSEps}
	attnOpts := op.AttentionOptions{Causal: true, MaxQueryLen: maxQ, MaxKVLen: maxKV}

	s.do(dev.Embedding(x, w.tokEmb, idsT))
	for layer := range w.layers {
		if s.err != nil {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l := &w.layers[layer]
		s.do(dev.RMSNorm(h, x, l.attnNorm, norm))
		s.do(dev.MatMul(q, h, l.wq, op.MatMulOptions{Bias: l.bq}))
		s.do(dev.MatMul(k, h, l.wk, op.MatMulOptions{Bias: l.bk}))
		s.do(dev.MatMul(v, h, l.wv, op.MatMulOptions{Bias: l.bv}))
		s.do(dev.RoPE(q3, q3, posT, rope))
		s.do(dev.RoPE(k3, k3, posT, rope))
		cache := op.AttentionKV{K: m.kv.k[layer], V: m.kv.v[layer], BlockTable: tableT, Lens: lensT}
		s.do(dev.AppendKV(cache, k3, v3, seqT, posT))
		s.do(dev.Attention(attn3, q3, qsT, cache, attnOpts))
		s.do(dev.MatMul(o, attn, l.wo, op.MatMulOptions{}))
		s.do(dev.Add(x, x, o))
		s.do(dev.RMSNorm(h, x, l.ffnNorm, norm))
		s.do(dev.MatMulSwiGLU(g, h, l.wGate, l.wUp))
		s.do(dev.MatMul(o, g, l.wDown, op.MatMulOptions{}))
		s.do(dev.Add(x, x, o))
	}
	// The rows that want logits, normalised, in F32, through the output matrix.
	R := len(rowsOut)
	sel := s.alloc(act, R, c.Dim)
	s.do(dev.Embedding(sel, x, rowsT))
	s.do(dev.RMSNorm(sel, sel, w.outNorm, norm))
	sel32 := sel
	if act != tensor.F32 {
		sel32 = s.alloc(tensor.F32, R, c.Dim)
		s.do(dev.Copy(sel32, sel))
	}
	logits := s.alloc(tensor.F32, R, c.VocabSize)
	s.do(dev.MatMul(logits, sel32, w.output, op.MatMulOptions{}))
	if s.err != nil {
		return nil, s.err
	}
	flat := make([]float32, R*c.VocabSize)
	if err := dev.Download(ctx, tensor.F32Bytes(flat), logits); err != nil {
		return nil, fmt.Errorf("llama: step: %w", err)
	}
	results := make([]Result, len(p.reqs))
	row := 0
	for i, r := range p.reqs {
		n := 1
		if r.AllLogits {
			n = len(r.Tokens)
		}
		results[i].Logits = make([][]float32, n)
		for j := range n {
			results[i].Logits[j] = flat[row*c.VocabSize : (row+1)*c.VocabSize : (row+1)*c.VocabSize]
			row++
		}
	}
	return results, nil
}
