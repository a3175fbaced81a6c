package llama

import (
	"context"
	"errors"
	"fmt"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// decodeGraph is a decode step of one batch bucket: buffers of the bucket's
// shape, which live as long as the model, and the graph captured over them.
//
// The first decode step of a bucket runs eagerly on these buffers (which
// also loads the kernels' modules and sizes their workspaces for exactly
// these shapes); the same ops are then captured, and later steps of the
// bucket upload their metadata into the same buffers and launch the graph.
// Everything a step varies (token ids, positions, sequence lengths, block
// tables) lives in device memory, so one graph serves every decode step of
// its bucket; the attention's key bound is the context length, the largest
// any step can need (so the split-KV decode kernel splits keys by the
// context length, not each step's: with a very long ContextLen and short
// sequences the replayed attention uses fewer, longer splits than an eager
// step would). A capture that fails is logged and the bucket stays eager.
// The buckets' buffers stay allocated until Close; Estimate counts them.
type decodeGraph struct {
	bufs     *stepBuffers
	graph    op.Graph // nil before the first capture, or when it failed
	captured bool     // a capture was tried
}

// graphCapturer returns the backend's graph capture, when graphs apply.
func (m *Model) graphCapturer() (op.GraphCapturer, bool) {
	if m.opts.DisableGraphs || len(m.shards) != 1 {
		return nil, false
	}
	return unwrap[op.GraphCapturer](m.shards[0].dev)
}

// isDecode reports a step of one new token per sequence and only the last
// logits: the shape graphs replay.
func isDecode(p *stepPlan) bool {
	for _, r := range p.reqs {
		if len(r.Tokens) != 1 || (r.LogitsAt != nil && len(r.LogitsAt) != 1) {
			return false
		}
	}
	return true
}

// decodeBucket is the batch size a decode step of nSeqs sequences is padded
// to (the next power of two), or 0 when it would exceed MaxBatchTokens.
func (m *Model) decodeBucket(nSeqs int) int {
	b := 1
	for b < nSeqs {
		b *= 2
	}
	if b > m.opts.MaxBatchTokens {
		return 0
	}
	return b
}

// graphShape is the buffer shape of a decode bucket and its attention bounds.
func (m *Model) graphShape(bucket int) (stepShape, op.AttentionOptions) {
	pages := (m.opts.ContextLen + m.opts.PageSize - 1) / m.opts.PageSize
	s := stepShape{tokens: bucket, seqs: bucket, rows: bucket, tablePages: pages}
	return s, op.AttentionOptions{Causal: true, MaxQueryLen: 1, MaxKVLen: m.opts.ContextLen}
}

// runDecodeGraph runs decode step p in its bucket's buffers: by replaying
// the bucket's graph, or eagerly (and then capturing) the first time.
func (m *Model) runDecodeGraph(ctx context.Context, p *stepPlan, capturer op.GraphCapturer, bucket int) ([]Result, error) {
	sh := m.shards[0]
	shape, attnOpts := m.graphShape(bucket)
	g := m.graphs[bucket]
	if g == nil {
		bufs, err := m.allocStep(sh, shape)
		if err != nil {
			// No room for the bucket's own buffers: this step runs eagerly
			// (the next decode step of the bucket tries again).
			m.log.Warn("no memory for a decode graph's buffers; the step runs eagerly", "batch_bucket", bucket, "error", err)
			return m.runEager(ctx, p)
		}
		g = &decodeGraph{bufs: bufs}
		if m.graphs == nil {
			m.graphs = map[int]*decodeGraph{}
		}
		m.graphs[bucket] = g
	}
	// The metadata padded to the bucket (stepMeta fills rows beyond p's).
	if err := sh.dev.Upload(g.bufs.meta, tensor.I32Bytes(m.stepMeta(p, shape))); err != nil {
		return nil, fmt.Errorf("llama: step: %w", err)
	}
	if g.graph != nil {
		if err := g.graph.Launch(); err != nil {
			return nil, fmt.Errorf("llama: step: %w", err)
		}
	} else if err := m.forward(ctx, []*stepBuffers{g.bufs}, attnOpts); err != nil {
		return nil, err
	}
	results, err := m.readLogits(ctx, p, g.bufs)
	if err != nil || g.captured {
		return results, err
	}
	// The eager run succeeded: capture the same ops for the next steps.
	g.captured = true
	graph, cerr := capturer.CaptureGraph(func() error {
		return m.forward(context.Background(), []*stepBuffers{g.bufs}, attnOpts)
	})
	if cerr != nil {
		m.log.Warn("decode step not captured into a CUDA graph; it runs eagerly", "batch_bucket", bucket, "error", cerr)
		return results, nil
	}
	g.graph = graph
	m.log.Debug("decode step captured", "batch_bucket", bucket)
	return results, nil
}

// closeGraphs releases the decode graphs and their buffers.
func (m *Model) closeGraphs() error {
	var errs []error
	for bucket, g := range m.graphs {
		if g.graph != nil {
			errs = append(errs, g.graph.Close())
		}
		errs = append(errs, g.bufs.free(m.shards[0].dev))
		delete(m.graphs, bucket)
	}
	return errors.Join(errs...)
}
