package llama

import (
	"context"
	"errors"
	"fmt"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// decodeGraph is a decode step of one batch bucket: buffers of the bucket's
// shape, which live as long as the model, and the graphs captured over them
// (one per key-length band).
//
// The first decode step of a bucket and band runs eagerly on these buffers (which
// also loads the kernels' modules and sizes their workspaces for exactly
// these shapes); the same ops are then captured, and later steps of the
// bucket upload their metadata into the same buffers and launch the graph.
// Everything a step varies (token ids, positions, sequence lengths, block
// tables) lives in device memory, so one graph serves every decode step of
// its bucket and key-length band (see kvBand): the attention's key bound,
// which sizes the split-KV decode grid, is the band's. A capture that fails
// is logged and that band stays eager.
// The buckets' buffers stay allocated until Close; Estimate counts them.
type decodeGraph struct {
	bufs   *stepBuffers
	graphs map[int]op.Graph // by key-length band; nil entry: the capture failed
}

// minKVBand is the smallest key-length band a decode graph is captured for.
const minKVBand = 256

// kvBand is the attention key bound a decode step with sequences of at most
// maxKV tokens replays with: the next power of two from minKVBand, at most
// the context length. One graph per band keeps the split-KV decode kernel's
// splits sized to the sequences (a bound of the whole context would give a
// short sequence few, long splits), at the cost of a capture per band.
func (m *Model) kvBand(maxKV int) int {
	band := minKVBand
	for band < maxKV {
		band *= 2
	}
	return min(band, m.opts.ContextLen)
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

// graphShape is the buffer shape of a decode bucket: the block table is
// wide enough for the context length.
func (m *Model) graphShape(bucket int) stepShape {
	return stepShape{tokens: bucket, seqs: bucket, rows: bucket, tablePages: m.kv.pagesFor(m.opts.ContextLen)}
}

// runDecodeGraph runs decode step p in its bucket's buffers: by replaying
// the graph of its bucket and key-length band, or eagerly (and then
// capturing) the first time.
func (m *Model) runDecodeGraph(ctx context.Context, p *stepPlan, capturer op.GraphCapturer, bucket int) ([]Result, error) {
	sh := m.shards[0]
	shape := m.graphShape(bucket)
	_, eager := m.eagerShape(p)
	band := m.kvBand(eager.MaxKVLen)
	attnOpts := op.AttentionOptions{Causal: true, MaxQueryLen: 1, MaxKVLen: band}
	g := m.graphs[bucket]
	if g == nil {
		bufs, err := m.allocStep(sh, shape)
		if err != nil {
			// No room for the bucket's own buffers: this step runs eagerly
			// (the next decode step of the bucket tries again).
			m.log.Warn("no memory for a decode graph's buffers; the step runs eagerly", "batch_bucket", bucket, "error", err)
			return m.runEager(ctx, p)
		}
		g = &decodeGraph{bufs: bufs, graphs: map[int]op.Graph{}}
		if m.graphs == nil {
			m.graphs = map[int]*decodeGraph{}
		}
		m.graphs[bucket] = g
	}
	// The metadata padded to the bucket (stepMeta fills rows beyond p's).
	if err := sh.dev.Upload(g.bufs.meta, tensor.I32Bytes(m.stepMeta(p, shape))); err != nil {
		return nil, fmt.Errorf("llama: step: %w", err)
	}
	graph, tried := g.graphs[band]
	if graph != nil {
		if err := graph.Launch(); err != nil {
			return nil, fmt.Errorf("llama: step: %w", err)
		}
	} else if err := m.forward(ctx, []*stepBuffers{g.bufs}, attnOpts); err != nil {
		return nil, err
	}
	results, err := m.readLogits(ctx, p, g.bufs)
	if err != nil || tried {
		return results, err
	}
	// The eager run succeeded: capture the same ops for the next steps.
	graph, cerr := capturer.CaptureGraph(func() error {
		return m.forward(context.Background(), []*stepBuffers{g.bufs}, attnOpts)
	})
	g.graphs[band] = graph // nil when the capture failed: the band stays eager
	if cerr != nil {
		m.log.Warn("decode step not captured into a CUDA graph; it runs eagerly", "batch_bucket", bucket, "kv_band", band, "error", cerr)
		return results, nil
	}
	m.log.Debug("decode step captured", "batch_bucket", bucket, "kv_band", band)
	return results, nil
}

// closeGraphs releases the decode graphs and their buffers.
func (m *Model) closeGraphs() error {
	var errs []error
	for bucket, g := range m.graphs {
		for _, graph := range g.graphs {
			if graph != nil {
				errs = append(errs, graph.Close())
			}
		}
		errs = append(errs, g.bufs.free(m.shards[0].dev))
		delete(m.graphs, bucket)
	}
	return errors.Join(errs...)
}
