package llama

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/gpu"
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
	// LogitsAt, when not nil, chooses the tokens (indices into Tokens,
	// increasing) whose logits are returned, overriding AllLogits; an empty
	// non-nil slice asks for none (a prefill chunk whose logits are not
	// needed skips the output projection).
	LogitsAt []int
}

// logitIndices is which of r's tokens want logits.
func (r *Request) logitIndices() []int {
	switch {
	case r.LogitsAt != nil:
		return r.LogitsAt
	case r.AllLogits:
		idx := make([]int, len(r.Tokens))
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	return []int{len(r.Tokens) - 1}
}

// Result holds a request's logits: one row of VocabSize float32 per token
// asked for (by default the last; all with AllLogits; those of LogitsAt), in
// order, each the distribution of the token that follows it.
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
		for k, j := range r.LogitsAt {
			if j < 0 || j >= len(r.Tokens) || (k > 0 && j <= r.LogitsAt[k-1]) {
				return nil, fmt.Errorf("llama: step: request %d: LogitsAt[%d] = %d: expected increasing indices into its %d tokens", i, k, j, len(r.Tokens))
			}
		}
		p.rows += len(r.logitIndices())
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

// stepShape sizes a step's device buffers: tokens in the batch, sequences,
// logit rows, and the width of the block table in pages.
type stepShape struct {
	tokens, seqs, rows, tablePages int
}

// metaLen is the length of the packed I32 metadata vector, laid out as
// ids[tokens] | positions[tokens] | seqOf[tokens] | queryStarts[seqs+1] |
// lens[seqs] | rowsOut[rows] | table[seqs·tablePages]: one upload per step.
func (s stepShape) metaLen() int {
	return 3*s.tokens + 2*s.seqs + 1 + s.rows + s.seqs*s.tablePages
}

// stepBuffers are one shard's device tensors for a step of one shape.
type stepBuffers struct {
	shape                                stepShape
	meta                                 tensor.Tensor // I32 [metaLen]; the rest are views of it
	ids, pos, seqOf, qStarts, lens, rows tensor.Tensor
	table                                tensor.Tensor
	x, h, q, k, v, attn, o, g            tensor.Tensor
	// hRes and oRes: the norm output and the block output in the residual
	// dtype, when it differs from the activations' (else zero: the norm
	// writes h and the add reads o directly).
	hRes, oRes         tensor.Tensor
	q3, k3, v3, attn3  tensor.Tensor
	sel, sel32, logits tensor.Tensor // shard 0: the logit rows
	peerTmp            tensor.Tensor // shard 0 with device all-reduce: a peer's partial sum
	owned              []tensor.Tensor
	err                error
}

func (b *stepBuffers) alloc(dev backend.Backend, dt tensor.DType, shape ...int) tensor.Tensor {
	if b.err != nil {
		return tensor.Tensor{}
	}
	t, err := dev.Alloc(dt, shape...)
	if err != nil {
		b.err = fmt.Errorf("llama: step buffers on %s: %w", dev.Name(), err)
		return tensor.Tensor{}
	}
	b.owned = append(b.owned, t)
	return t
}

// view is t[lo:hi] of a vector reshaped to shape, recording the first error.
func (b *stepBuffers) view(t tensor.Tensor, lo, hi int, shape ...int) tensor.Tensor {
	if b.err != nil {
		return tensor.Tensor{}
	}
	v, err := t.Slice(0, lo, hi)
	if err == nil {
		v, err = v.Reshape(shape...)
	}
	if err != nil {
		b.err = fmt.Errorf("llama: step buffers: %w", err)
	}
	return v
}

func (b *stepBuffers) reshape(t tensor.Tensor, shape ...int) tensor.Tensor {
	if b.err != nil {
		return tensor.Tensor{}
	}
	return b.view(t, 0, t.Shape()[0], shape...)
}

// free releases the buffers.
func (b *stepBuffers) free(dev backend.Backend) error {
	var errs []error
	for _, t := range b.owned {
		errs = append(errs, dev.Free(t))
	}
	b.owned = nil
	return errors.Join(errs...)
}

// allocStep allocates sh's buffers for a step of shape s.
func (m *Model) allocStep(sh *shard, s stepShape) (*stepBuffers, error) {
	c, act, dev := m.Config, m.actType, sh.dev
	T, B, R := s.tokens, s.seqs, s.rows
	qDim, kvDim := sh.nHeads*c.HeadDim, sh.nKVHeads*c.HeadDim
	b := &stepBuffers{shape: s}
	b.meta = b.alloc(dev, tensor.I32, s.metaLen())
	off := 0
	next := func(n int, shape ...int) tensor.Tensor {
		if n == 0 {
			return tensor.Tensor{} // no logit rows
		}
		v := b.view(b.meta, off, off+n, shape...)
		off += n
		return v
	}
	b.ids, b.pos, b.seqOf = next(T, T), next(T, T), next(T, T)
	b.qStarts, b.lens, b.rows = next(B+1, B+1), next(B, B), next(R, R)
	b.table = next(B*s.tablePages, B, s.tablePages)
	res := m.resType
	b.x = b.alloc(dev, res, T, c.Dim)
	if res != act {
		b.hRes = b.alloc(dev, res, T, c.Dim)
		b.oRes = b.alloc(dev, res, T, c.Dim)
	}
	b.h = b.alloc(dev, act, T, c.Dim)
	b.q = b.alloc(dev, act, T, qDim)
	b.k = b.alloc(dev, act, T, kvDim)
	b.v = b.alloc(dev, act, T, kvDim)
	b.attn = b.alloc(dev, act, T, qDim)
	b.o = b.alloc(dev, act, T, c.Dim)
	b.g = b.alloc(dev, act, T, sh.ffnDim)
	b.q3, b.k3, b.v3 = b.reshape(b.q, T, sh.nHeads, c.HeadDim), b.reshape(b.k, T, sh.nKVHeads, c.HeadDim), b.reshape(b.v, T, sh.nKVHeads, c.HeadDim)
	b.attn3 = b.reshape(b.attn, T, sh.nHeads, c.HeadDim)
	if sh.index == 0 && R > 0 {
		b.sel = b.alloc(dev, res, R, c.Dim)
		b.sel32 = b.sel
		if res != tensor.F32 {
			b.sel32 = b.alloc(dev, tensor.F32, R, c.Dim)
		}
		b.logits = b.alloc(dev, tensor.F32, R, c.VocabSize)
	}
	if sh.index == 0 && m.peers != nil {
		b.peerTmp = b.alloc(dev, act, T, c.Dim)
	}
	if b.err != nil {
		err := b.err
		_ = b.free(dev)
		return nil, err
	}
	return b, nil
}

// stepMeta builds the packed metadata of p for shape s. Sequences beyond
// len(p.reqs) (up to s.seqs) are padding: one token 0 at position 0 whose
// keys and values go to the padding page; their logits are not read.
func (m *Model) stepMeta(p *stepPlan, s stepShape) []int32 {
	T, B, R, P := s.tokens, s.seqs, s.rows, s.tablePages
	meta := make([]int32, s.metaLen())
	ids, pos, seqOf := meta[0:T], meta[T:2*T], meta[2*T:3*T]
	qStarts, lens := meta[3*T:3*T+B+1], meta[3*T+B+1:3*T+2*B+1]
	rows, table := meta[3*T+2*B+1:3*T+2*B+1+R], meta[3*T+2*B+1+R:]
	t, r := 0, 0
	for i := range B {
		qStarts[i] = int32(t)
		if i >= len(p.reqs) { // padding
			ids[t], pos[t], seqOf[t] = 0, 0, int32(i)
			rows[r] = int32(t)
			lens[i] = 1
			table[i*P] = m.kv.paddingPage()
			t, r = t+1, r+1
			continue
		}
		req := p.reqs[i]
		for _, j := range req.logitIndices() {
			rows[r] = int32(t + j)
			r++
		}
		for j, id := range req.Tokens {
			ids[t], pos[t], seqOf[t] = id, int32(p.start[i]+j), int32(i)
			t++
		}
		lens[i] = int32(p.start[i] + len(req.Tokens))
		copy(table[i*P:(i+1)*P], req.Seq.pages)
	}
	qStarts[B] = int32(t)
	return meta
}

// eagerShape is the exact shape of p, and the attention bounds for it.
func (m *Model) eagerShape(p *stepPlan) (stepShape, op.AttentionOptions) {
	s := stepShape{tokens: p.total, seqs: len(p.reqs), rows: p.rows}
	maxQ, maxKV := 0, 0
	for i, r := range p.reqs {
		s.tablePages = max(s.tablePages, len(r.Seq.pages))
		maxQ = max(maxQ, len(r.Tokens))
		maxKV = max(maxKV, p.start[i]+len(r.Tokens))
	}
	return s, op.AttentionOptions{Causal: true, MaxQueryLen: maxQ, MaxKVLen: maxKV}
}

// run executes a planned step: CUDA graph replay for a decode step where
// the backend can capture one, otherwise eagerly with buffers of the step's
// exact shape.
func (m *Model) run(ctx context.Context, p *stepPlan) ([]Result, error) {
	if capturer, ok := m.graphCapturer(); ok && isDecode(p) {
		if bucket := m.decodeBucket(len(p.reqs)); bucket > 0 {
			return m.runDecodeGraph(ctx, p, capturer, bucket)
		}
	}
	return m.runEager(ctx, p)
}

// runEager runs step p with buffers of its exact shape, freed at the end.
func (m *Model) runEager(ctx context.Context, p *stepPlan) ([]Result, error) {
	shape, attnOpts := m.eagerShape(p)
	meta := m.stepMeta(p, shape)
	bufs := make([]*stepBuffers, len(m.shards))
	defer func() {
		for i, b := range bufs {
			if b != nil {
				_ = b.free(m.shards[i].dev)
			}
		}
	}()
	err := m.eachShard(func(sh *shard) error {
		b, err := m.allocStep(sh, shape)
		if err != nil {
			return err
		}
		bufs[sh.index] = b
		return sh.dev.Upload(b.meta, tensor.I32Bytes(meta))
	})
	if err != nil {
		return nil, fmt.Errorf("llama: step: %w", err)
	}
	if err := m.forward(ctx, bufs, attnOpts); err != nil {
		return nil, err
	}
	return m.readLogits(ctx, p, bufs[0])
}

// eachShard runs fn for every shard, concurrently when there are several,
// and joins their errors.
func (m *Model) eachShard(fn func(sh *shard) error) error {
	if len(m.shards) == 1 {
		return fn(m.shards[0])
	}
	errs := make([]error, len(m.shards))
	var wg sync.WaitGroup
	for i, sh := range m.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(sh)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// forward queues the model's ops for a step whose metadata is in bufs (one
// per shard). With one shard it only queues ops (so it can be captured into
// a graph); with several it also sums the row-parallel outputs across shards
// through the host.
func (m *Model) forward(ctx context.Context, bufs []*stepBuffers, attnOpts op.AttentionOptions) error {
	c := m.Config
	rope := op.RoPEOptions{Style: c.RopeStyle, NDims: c.RopeDims, FreqBase: c.RopeBase, FreqScale: c.RopeScale}
	norm := op.NormOptions{Eps: c.RMSEps}
	err := m.eachShard(func(sh *shard) error {
		b := bufs[sh.index]
		return sh.dev.Embedding(b.x, sh.w.tokEmb, b.ids)
	})
	for layer := 0; layer < c.NLayers && err == nil; layer++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Attention: each shard its heads; o holds a partial sum over shards.
		err = m.eachShard(func(sh *shard) error {
			b, l, dev := bufs[sh.index], &sh.w.layers[layer], sh.dev
			rope := rope
			rope.FreqFactors = sh.w.ropeFreqs
			cache := op.AttentionKV{K: sh.k[layer], V: sh.v[layer], BlockTable: b.table, Lens: b.lens}
			return errors.Join(
				b.normResidual(dev, l.attnNorm, norm),
				dev.MatMul(b.q, b.h, l.wq, op.MatMulOptions{Bias: l.bq}),
				dev.MatMul(b.k, b.h, l.wk, op.MatMulOptions{Bias: l.bk}),
				dev.MatMul(b.v, b.h, l.wv, op.MatMulOptions{Bias: l.bv}),
				dev.RoPE(b.q3, b.q3, b.pos, rope),
				dev.RoPE(b.k3, b.k3, b.pos, rope),
				dev.AppendKV(cache, b.k3, b.v3, b.seqOf, b.pos),
				dev.Attention(b.attn3, b.q3, b.qStarts, cache, attnOpts),
				dev.MatMul(b.o, b.attn, l.wo, op.MatMulOptions{}))
		})
		if err == nil {
			err = m.allReduce(ctx, bufs, func(b *stepBuffers) tensor.Tensor { return b.o })
		}
		// FFN: each shard its rows of gate/up and columns of down.
		if err == nil {
			err = m.eachShard(func(sh *shard) error {
				b, l, dev := bufs[sh.index], &sh.w.layers[layer], sh.dev
				return errors.Join(
					b.addToResidual(dev),
					b.normResidual(dev, l.ffnNorm, norm),
					dev.MatMulSwiGLU(b.g, b.h, l.wGate, l.wUp),
					dev.MatMul(b.o, b.g, l.wDown, op.MatMulOptions{}))
			})
		}
		if err == nil {
			err = m.allReduce(ctx, bufs, func(b *stepBuffers) tensor.Tensor { return b.o })
		}
		if err == nil {
			err = m.eachShard(func(sh *shard) error {
				return bufs[sh.index].addToResidual(sh.dev)
			})
		}
	}
	if err != nil {
		return fmt.Errorf("llama: step: %w", err)
	}
	// The rows that want logits, normalised, in F32, through the output
	// matrix (shard 0, which holds the full residual stream like every shard).
	sh, b := m.shards[0], bufs[0]
	if b.shape.rows == 0 {
		return nil
	}
	dev := sh.dev
	err = errors.Join(
		dev.Embedding(b.sel, b.x, b.rows),
		dev.RMSNorm(b.sel, b.sel, sh.w.outNorm, norm))
	if err == nil && b.sel32 != b.sel {
		err = dev.Copy(b.sel32, b.sel)
	}
	if err == nil {
		err = dev.MatMul(b.logits, b.sel32, sh.w.output, op.MatMulOptions{})
	}
	if err != nil {
		return fmt.Errorf("llama: step: %w", err)
	}
	return nil
}

// normResidual writes RMSNorm(x)·weight into h, through hRes when the
// residual stream's dtype differs from the activations'.
func (b *stepBuffers) normResidual(dev backend.Backend, weight tensor.Tensor, norm op.NormOptions) error {
	if b.hRes.IsZero() {
		return dev.RMSNorm(b.h, b.x, weight, norm)
	}
	if err := dev.RMSNorm(b.hRes, b.x, weight, norm); err != nil {
		return err
	}
	return dev.Copy(b.h, b.hRes)
}

// addToResidual adds the block output o to the residual stream x, through
// oRes when their dtypes differ.
func (b *stepBuffers) addToResidual(dev backend.Backend) error {
	if b.oRes.IsZero() {
		return dev.Add(b.x, b.x, b.o)
	}
	if err := dev.Copy(b.oRes, b.o); err != nil {
		return err
	}
	return dev.Add(b.x, b.x, b.oRes)
}

// peerCopier is the CUDA backend's copy from another backend's tensor
// (gpu.Backend.CopyFromPeer), ordered on both streams.
type peerCopier interface {
	CopyFromPeer(dst, src tensor.Tensor) error
}

// newNCCLGroup makes the NCCL communicator over devs when every one is a
// CUDA backend (behind any wrappers); otherwise, or when NCCL is not usable,
// it returns nil and the reason.
func newNCCLGroup(devs []backend.Backend) (*gpu.NCCLGroup, error) {
	gpus := make([]*gpu.Backend, len(devs))
	for i, d := range devs {
		g, ok := unwrap[*gpu.Backend](d)
		if !ok {
			return nil, fmt.Errorf("device %d (%s) is not a CUDA backend", i, d.Name())
		}
		gpus[i] = g
	}
	return gpu.NewNCCLGroup(gpus)
}

// allReduce replaces the tensor pick selects in every shard's buffers by
// the sum over shards. One shard: nothing to do. With an NCCL group, one
// in-place NCCL all-reduce over the shards' tensors. When every shard's backend
// can copy from its peers (CUDA), the partial sums are gathered on shard 0
// with peer copies, added there in shard order, and copied back: no host
// round trip and no synchronisation. Otherwise they come to the host, are
// added in F32 in shard order and go back to every shard. Either way the
// result is the same on every run.
func (m *Model) allReduce(ctx context.Context, bufs []*stepBuffers, pick func(*stepBuffers) tensor.Tensor) error {
	if len(m.shards) == 1 {
		return nil
	}
	if m.nccl != nil {
		ts := make([]tensor.Tensor, len(bufs))
		for i, b := range bufs {
			ts[i] = pick(b)
		}
		if err := m.nccl.AllReduceSum(ts); err != nil {
			return fmt.Errorf("all-reduce: %w", err)
		}
		return nil
	}
	if m.peers != nil {
		b0, dev0 := bufs[0], m.shards[0].dev
		for j := 1; j < len(m.shards); j++ {
			if err := m.peers[0].CopyFromPeer(b0.peerTmp, pick(bufs[j])); err != nil {
				return fmt.Errorf("all-reduce: %w", err)
			}
			if err := dev0.Add(pick(b0), pick(b0), b0.peerTmp); err != nil {
				return fmt.Errorf("all-reduce: %w", err)
			}
		}
		for j := 1; j < len(m.shards); j++ {
			if err := m.peers[j].CopyFromPeer(pick(bufs[j]), pick(b0)); err != nil {
				return fmt.Errorf("all-reduce: %w", err)
			}
		}
		return nil
	}
	parts := make([][]float32, len(m.shards))
	err := m.eachShard(func(sh *shard) error {
		t := pick(bufs[sh.index])
		raw := make([]byte, t.SizeBytes())
		if err := sh.dev.Download(ctx, raw, t); err != nil {
			return err
		}
		vals, ok := tensor.DecodeFloats(t.DType(), raw)
		if !ok {
			return fmt.Errorf("all-reduce: cannot decode %v", t.DType())
		}
		parts[sh.index] = vals
		return nil
	})
	if err != nil {
		return err
	}
	sum := parts[0]
	for _, p := range parts[1:] {
		for i, v := range p {
			sum[i] += v
		}
	}
	raw, ok := tensor.EncodeFloats(m.actType, sum)
	if !ok {
		return fmt.Errorf("all-reduce: cannot encode %v", m.actType)
	}
	return m.eachShard(func(sh *shard) error {
		return sh.dev.Upload(pick(bufs[sh.index]), raw)
	})
}

// readLogits downloads the logit rows of the step's requests (the first
// rows of b.logits; padding rows follow) and splits them per request.
func (m *Model) readLogits(ctx context.Context, p *stepPlan, b *stepBuffers) ([]Result, error) {
	V := m.Config.VocabSize
	if p.rows == 0 {
		// No logits asked for: still wait for the step, so that its faults
		// are reported here.
		if err := m.eachShard(func(sh *shard) error { return sh.dev.Sync(ctx) }); err != nil {
			return nil, fmt.Errorf("llama: step: %w", err)
		}
		return make([]Result, len(p.reqs)), nil
	}
	rows := b.logits
	if p.rows != b.shape.rows {
		var err error
		if rows, err = rows.Slice(0, 0, p.rows); err != nil {
			return nil, fmt.Errorf("llama: step: %w", err)
		}
	}
	flat := make([]float32, p.rows*V)
	if err := m.shards[0].dev.Download(ctx, tensor.F32Bytes(flat), rows); err != nil {
		return nil, fmt.Errorf("llama: step: %w", err)
	}
	// A fault that only another shard's device saw is reported too.
	for _, sh := range m.shards[1:] {
		if err := sh.dev.Sync(ctx); err != nil {
			return nil, fmt.Errorf("llama: step: %w", err)
		}
	}
	results := make([]Result, len(p.reqs))
	row := 0
	for i, r := range p.reqs {
		n := len(r.logitIndices())
		results[i].Logits = make([][]float32, n)
		for j := range n {
			results[i].Logits[j] = flat[row*V : (row+1)*V : (row+1)*V]
			row++
		}
	}
	return results, nil
}
