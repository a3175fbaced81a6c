package llama

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// recordingDevice gives the CPU backend graph capture with CUDA's semantics,
// so the model's graph path runs (and is checked) without a GPU: during a
// capture, ops are recorded and not run, and calls a stream capture cannot
// hold (transfers, Sync, Alloc, Free) fail; Launch runs the recorded ops with
// the tensors they were captured with, reading whatever those hold now.
type recordingDevice struct {
	backend.Backend
	recording []func() error // non-nil while capturing
	captures  int
	launches  int
}

func (r *recordingDevice) Unwrap() backend.Backend { return r.Backend }

var errNotCapturable = errors.New("not allowed while capturing")

func (r *recordingDevice) do(fn func() error) error {
	if r.recording != nil {
		r.recording = append(r.recording, fn)
		return nil
	}
	return fn()
}

func (r *recordingDevice) refuse() error {
	if r.recording != nil {
		return errNotCapturable
	}
	return nil
}

func (r *recordingDevice) CaptureGraph(fn func() error) (op.Graph, error) {
	r.recording = []func() error{}
	err := fn()
	ops := r.recording
	r.recording = nil
	if err != nil {
		return nil, err
	}
	r.captures++
	return &recordedGraph{r: r, ops: ops}, nil
}

type recordedGraph struct {
	r   *recordingDevice
	ops []func() error
}

func (g *recordedGraph) Launch() error {
	if g.ops == nil {
		return op.ErrClosed
	}
	g.r.launches++
	for _, fn := range g.ops {
		if err := fn(); err != nil {
			return err
		}
	}
	return nil
}

func (g *recordedGraph) Close() error { g.ops = nil; return nil }

func (r *recordingDevice) Alloc(dt tensor.DType, shape ...int) (tensor.Tensor, error) {
	if err := r.refuse(); err != nil {
		return tensor.Tensor{}, err
	}
	return r.Backend.Alloc(dt, shape...)
}

func (r *recordingDevice) Free(t tensor.Tensor) error {
	if err := r.refuse(); err != nil {
		return err
	}
	return r.Backend.Free(t)
}

func (r *recordingDevice) Upload(dst tensor.Tensor, src []byte) error {
	if err := r.refuse(); err != nil {
		return err
	}
	return r.Backend.Upload(dst, src)
}

func (r *recordingDevice) Download(ctx context.Context, dst []byte, src tensor.Tensor) error {
	if err := r.refuse(); err != nil {
		return err
	}
	return r.Backend.Download(ctx, dst, src)
}

func (r *recordingDevice) Sync(ctx context.Context) error {
	if err := r.refuse(); err != nil {
		return err
	}
	return r.Backend.Sync(ctx)
}

func (r *recordingDevice) Copy(dst, src tensor.Tensor) error {
	return r.do(func() error { return r.Backend.Copy(dst, src) })
}
func (r *recordingDevice) Add(dst, a, b tensor.Tensor) error {
	return r.do(func() error { return r.Backend.Add(dst, a, b) })
}
func (r *recordingDevice) Mul(dst, a, b tensor.Tensor) error {
	return r.do(func() error { return r.Backend.Mul(dst, a, b) })
}
func (r *recordingDevice) SiLU(dst, x tensor.Tensor) error {
	return r.do(func() error { return r.Backend.SiLU(dst, x) })
}
func (r *recordingDevice) GELU(dst, x tensor.Tensor, o op.GELUOptions) error {
	return r.do(func() error { return r.Backend.GELU(dst, x, o) })
}
func (r *recordingDevice) Softmax(dst, x tensor.Tensor, o op.SoftmaxOptions) error {
	return r.do(func() error { return r.Backend.Softmax(dst, x, o) })
}
func (r *recordingDevice) RMSNorm(dst, x, w tensor.Tensor, o op.NormOptions) error {
	return r.do(func() error { return r.Backend.RMSNorm(dst, x, w, o) })
}
func (r *recordingDevice) LayerNorm(dst, x, w, b tensor.Tensor, o op.NormOptions) error {
	return r.do(func() error { return r.Backend.LayerNorm(dst, x, w, b, o) })
}
func (r *recordingDevice) RoPE(dst, x, pos tensor.Tensor, o op.RoPEOptions) error {
	return r.do(func() error { return r.Backend.RoPE(dst, x, pos, o) })
}
func (r *recordingDevice) Embedding(dst, table, ids tensor.Tensor) error {
	return r.do(func() error { return r.Backend.Embedding(dst, table, ids) })
}
func (r *recordingDevice) MatMul(dst, x, w tensor.Tensor, o op.MatMulOptions) error {
	return r.do(func() error { return r.Backend.MatMul(dst, x, w, o) })
}
func (r *recordingDevice) MatMulSwiGLU(dst, x, g, u tensor.Tensor) error {
	return r.do(func() error { return r.Backend.MatMulSwiGLU(dst, x, g, u) })
}
func (r *recordingDevice) Attention(dst, q, qs tensor.Tensor, kv op.AttentionKV, o op.AttentionOptions) error {
	return r.do(func() error { return r.Backend.Attention(dst, q, qs, kv, o) })
}
func (r *recordingDevice) AppendKV(cache op.AttentionKV, k, v, seqIDs, pos tensor.Tensor) error {
	return r.do(func() error { return r.Backend.AppendKV(cache, k, v, seqIDs, pos) })
}
func (r *recordingDevice) Argmax(dst, x tensor.Tensor) error {
	return r.do(func() error { return r.Backend.Argmax(dst, x) })
}

// TestDecodeGraphsMatchEagerSteps runs stories260K with decode steps
// captured and replayed (on the recording device) against plain eager steps:
// greedy text and logits agree, one graph is captured per batch bucket and
// replayed for every later decode step, and a batch of three decodes (padded
// to the bucket of four) gives each sequence its own logits.
func TestDecodeGraphsMatchEagerSteps(t *testing.T) {
	cpu := testDevices(t)[0]
	rec := &recordingDevice{Backend: cpu}
	eager := loadStories(t, cpu, Options{MaxSequences: 4, PageSize: 16, ContextLen: 256})
	graphed := loadStories(t, rec, Options{MaxSequences: 4, PageSize: 16, ContextLen: 256})
	if _, ok := graphed.graphCapturer(); !ok {
		t.Fatal("the model does not see the recording device's graph capture")
	}

	wantIDs, wantText := greedy(t, eager, "", 80)
	gotIDs, gotText := greedy(t, graphed, "", 80)
	if !slices.Equal(gotIDs, wantIDs) {
		t.Fatalf("greedy with graphs:\n%q\nwant\n%q", gotText, wantText)
	}
	// 81 one-token steps (BOS, then each of the 80 generated tokens is
	// appended before it is yielded): the first runs eagerly and is
	// captured, the other 80 replay it.
	if rec.captures != 1 || rec.launches != 80 {
		t.Errorf("%d captures and %d launches, want 1 and 80", rec.captures, rec.launches)
	}

	// A batch of three decode steps on sequences of different lengths.
	bos, _ := eager.Tokenizer.BOS()
	prompts := [][]int32{{bos, 403, 407}, {bos}, {bos, 403, 407, 261, 378, 432}}
	next := []int32{261, 403, 383}
	stepAll := func(m *Model) ([][]float32, []*Sequence) {
		var seqs []*Sequence
		for _, p := range prompts {
			s, err := m.NewSequence()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.Step(context.Background(), []Request{{Seq: s, Tokens: p}}); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, s)
		}
		var out [][]float32
		for round := range 3 { // the first round captures, the others replay
			reqs := make([]Request, len(seqs))
			for i, s := range seqs {
				reqs[i] = Request{Seq: s, Tokens: []int32{next[(i+round)%3]}}
			}
			res, err := m.Step(context.Background(), reqs)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				out = append(out, r.Logits[0])
			}
		}
		return out, seqs
	}
	want, eagerSeqs := stepAll(eager)
	before := rec.captures
	got, graphedSeqs := stepAll(graphed)
	if d := maxAbsDiff(got, want); d > 1e-5 {
		t.Errorf("batched decode with graphs: logits differ by up to %g", d)
	}
	if rec.captures != before+1 {
		t.Errorf("%d new captures for the batch of three, want 1 (bucket 4)", rec.captures-before)
	}
	// Closing the models releases their graphs and buffers.
	for _, s := range slices.Concat(eagerSeqs, graphedSeqs) {
		s.Free()
	}
	if err := errors.Join(graphed.Close(), eager.Close()); err != nil {
		t.Fatal(err)
	}
	if s := cpu.MemoryStats(); s.InUseBytes != 0 {
		t.Errorf("%d bytes in use after closing both models", s.InUseBytes)
	}
}

// TestGraphsOffWithDisableGraphs checks the option.
func TestGraphsOffWithDisableGraphs(t *testing.T) {
	rec := &recordingDevice{Backend: testDevices(t)[0]}
	m := loadStories(t, rec, Options{DisableGraphs: true})
	greedy(t, m, "", 10)
	if rec.captures != 0 || rec.launches != 0 {
		t.Errorf("DisableGraphs: %d captures, %d launches", rec.captures, rec.launches)
	}
}

// TestDecodeGraphsPerKeyBand: a sequence growing past 256 tokens moves to
// the next key-length band, which is captured once too; the text is the
// eager model's.
func TestDecodeGraphsPerKeyBand(t *testing.T) {
	cpu := testDevices(t)[0]
	rec := &recordingDevice{Backend: cpu}
	eager := loadStories(t, cpu, Options{ContextLen: 1024})
	graphed := loadStories(t, rec, Options{ContextLen: 1024})
	wantIDs, _ := greedy(t, eager, "", 300)
	gotIDs, _ := greedy(t, graphed, "", 300)
	if !slices.Equal(gotIDs, wantIDs) {
		t.Fatal("greedy tokens with graphs differ from eager ones")
	}
	// 301 one-token steps: keys 1..256 in band 256, 257..301 in band 512;
	// each band's first step runs eagerly and is captured.
	if rec.captures != 2 || rec.launches != 299 {
		t.Errorf("%d captures and %d launches, want 2 and 299", rec.captures, rec.launches)
	}
}

// TestDecodeGraphsWithF16Activations captures decode steps with F16
// activations, so that the residual stream (F32 by default) goes through its
// conversions inside the graph: the greedy text matches eager steps.
func TestDecodeGraphsWithF16Activations(t *testing.T) {
	cpu := testDevices(t)[0]
	rec := &recordingDevice{Backend: cpu}
	opts := Options{ContextLen: 256, ActivationType: tensor.F16}
	eager := loadStories(t, cpu, opts)
	graphed := loadStories(t, rec, opts)
	if graphed.resType != tensor.F32 || graphed.actType != tensor.F16 {
		t.Fatalf("activation %v, residual %v; want F16, F32", graphed.actType, graphed.resType)
	}
	wantIDs, wantText := greedy(t, eager, "", 40)
	gotIDs, gotText := greedy(t, graphed, "", 40)
	if !slices.Equal(gotIDs, wantIDs) {
		t.Fatalf("greedy with graphs:\n%q\nwant\n%q", gotText, wantText)
	}
	if rec.captures != 1 || rec.launches != 40 {
		t.Errorf("%d captures and %d launches, want 1 and 40", rec.captures, rec.launches)
	}
}
