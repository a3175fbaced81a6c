package llama

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-gpu/kiln/models/gguf"
	"github.com/kiln-gpu/kiln/models/sample"
	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// The reference behaviour of stories260K.gguf (../shared/models/README.md:
// llama2.c's test suite, reproduced by llama.cpp): greedy from BOS, 200 tokens.
const storiesText = `Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.
Lily's mom said, "Lily, let's go to the park." Lily was sad and didn't know what to do. She said, "I want to play with your ball, but I can't find it."
Lily was sad and didn't know what to do. She said, "I'm sorry, Lily. I didn't know what to do."
Lily didn't want to help her mom, so she`

var (
	storiesFirstIDs    = []int32{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421}
	storiesFirstLogits = []float32{-6.22291, 8.40434, -6.22374, -6.22254}
)

// sharedModel finds a model file of ../shared/models: KILN_TEST_MODELS (the
// GPU bundle sets it), KILN_SHARED/models, or ../../../shared/models from this
// package. It skips the test when the file is absent.
func sharedModel(t *testing.T, name string) string {
	t.Helper()
	var dirs []string
	if d := os.Getenv("KILN_TEST_MODELS"); d != "" {
		dirs = append(dirs, d)
	}
	if d := os.Getenv("KILN_SHARED"); d != "" {
		dirs = append(dirs, filepath.Join(d, "models"))
	}
	dirs = append(dirs, filepath.Join("..", "..", "..", "shared", "models"))
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("%s not found in %v (set KILN_SHARED or KILN_TEST_MODELS)", name, dirs)
	return ""
}

// testDevices is the CPU, plus cuda:0 when a device is usable (the GPU suite).
func testDevices(t *testing.T) []backend.Backend {
	t.Helper()
	ctx := context.Background()
	cpu, err := backend.Open(ctx, "cpu", backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cpu.Close() })
	devs := []backend.Backend{cpu}
	if gpu, err := backend.Open(ctx, "cuda:0", backend.Options{}); err == nil {
		t.Cleanup(func() { gpu.Close() })
		devs = append(devs, gpu)
	} else {
		t.Logf("no CUDA device: %v", err)
	}
	return devs
}

func greedy(t *testing.T, m *Model, prompt string, n int) ([]int32, string) {
	t.Helper()
	seq, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Free()
	var ids []int32
	var text strings.Builder
	for tok, err := range m.Generate(context.Background(), seq, prompt, GenerateOptions{MaxTokens: n}) {
		if err != nil {
			t.Fatalf("generate: %v", err)
		}
		ids = append(ids, tok.ID)
		text.WriteString(tok.Text)
	}
	return ids, text.String()
}

func TestStories260KGreedyText(t *testing.T) {
	path := sharedModel(t, "stories260K.gguf")
	for _, dev := range testDevices(t) {
		t.Run(dev.Name(), func(t *testing.T) {
			m, err := Load(context.Background(), dev, path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if c := m.Config; c.NLayers != 5 || c.Dim != 64 || c.NHeads != 8 || c.NKVHeads != 4 || c.VocabSize != 512 || c.TiedEmbeddings {
				t.Fatalf("config %+v", c)
			}
			// Logits after BOS.
			seq, _ := m.NewSequence()
			bos, _ := m.Tokenizer.BOS()
			res, err := m.Step(context.Background(), []Request{{Seq: seq, Tokens: []int32{bos}}})
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range storiesFirstLogits {
				if got := res[0].Logits[0][i]; math.Abs(float64(got-want)) > 1e-4 {
					t.Errorf("logit %d after BOS = %v, reference %v", i, got, want)
				}
			}
			seq.Free()
			ids, text := greedy(t, m, "", 200)
			for i, want := range storiesFirstIDs {
				if ids[i] != want {
					t.Fatalf("greedy token %d = %d, reference %d (first ids %v)", i, ids[i], want, ids[:len(storiesFirstIDs)])
				}
			}
			if text != storiesText {
				t.Errorf("greedy text differs from the reference:\n got: %q\nwant: %q", text, storiesText)
			}
		})
	}
}

// quantizeFile rewrites a GGUF with every matrix whose rows are a whole
// number of dt's blocks quantized to dt by tensor.Quantize (the others, and
// all vectors, kept as they are), as a converter would.
func quantizeFile(t *testing.T, f *gguf.File, dt tensor.DType) (*gguf.File, int) {
	t.Helper()
	w := gguf.NewWriter(f.Version)
	for _, kv := range f.Metadata {
		w.Set(kv.Key, kv.Value)
	}
	quantized := 0
	for _, info := range f.Tensors {
		data, err := f.TensorData(info)
		if err != nil {
			t.Fatal(err)
		}
		if info.DType == tensor.F32 && len(info.Shape) == 2 && info.Shape[1]%dt.BlockElems() == 0 {
			vals := make([]float32, len(data)/4)
			copy(vals, tensor.BytesF32(data))
			q, err := tensor.Quantize(dt, vals)
			if err != nil {
				t.Fatalf("%s: %v", info.Name, err)
			}
			if err := w.AddTensor(info.Name, dt, info.Shape, q); err != nil {
				t.Fatal(err)
			}
			quantized++
			continue
		}
		if err := w.AddTensor(info.Name, info.DType, info.Shape, data); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	out, err := gguf.Parse(buf.Bytes(), f.Path+" ("+dt.String()+")")
	if err != nil {
		t.Fatal(err)
	}
	return out, quantized
}

// TestStories260KQ8_0StaysClose quantizes the model with kiln's own Q8_0
// quantizer and measures how far it moves: the logits after BOS and how
// many greedy tokens agree with the F32 model.
func TestStories260KQ8_0StaysClose(t *testing.T) {
	path := sharedModel(t, "stories260K.gguf")
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	q8, quantized := quantizeFile(t, f, tensor.Q8_0)
	defer q8.Close()
	for _, dev := range testDevices(t) {
		t.Run(dev.Name(), func(t *testing.T) {
			ref, err := LoadFile(context.Background(), dev, f, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			m, err := LoadFile(context.Background(), dev, q8, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			bos, _ := m.Tokenizer.BOS()
			maxDiff := 0.0
			seqA, _ := ref.NewSequence()
			seqB, _ := m.NewSequence()
			ra, err1 := ref.Step(context.Background(), []Request{{Seq: seqA, Tokens: []int32{bos}}})
			rb, err2 := m.Step(context.Background(), []Request{{Seq: seqB, Tokens: []int32{bos}}})
			if err := errors.Join(err1, err2); err != nil {
				t.Fatal(err)
			}
			for i := range ra[0].Logits[0] {
				maxDiff = math.Max(maxDiff, math.Abs(float64(ra[0].Logits[0][i]-rb[0].Logits[0][i])))
			}
			seqA.Free()
			seqB.Free()
			idsA, _ := greedy(t, ref, "", 200)
			idsB, _ := greedy(t, m, "", 200)
			agree := 0
			for agree < len(idsA) && agree < len(idsB) && idsA[agree] == idsB[agree] {
				agree++
			}
			t.Logf("Q8_0 (%d of %d tensors quantized): max |logit difference| after BOS %.4f; greedy tokens agreeing with F32 before the first difference: %d of 200",
				quantized, len(f.Tensors), maxDiff, agree)
			// Bounds measured with margin (see the log line): Q8_0's error is
			// about 0.5% of a weight; after BOS the logits span about 15.
			if maxDiff > 0.25 {
				t.Errorf("Q8_0 moved a logit after BOS by %.4f (bound 0.25)", maxDiff)
			}
			if agree < 20 {
				t.Errorf("Q8_0 greedy text diverges from F32 after %d tokens (bound 20)", agree)
			}
		})
	}
}

func loadStories(t *testing.T, dev backend.Backend, opts Options) *Model {
	t.Helper()
	m, err := Load(context.Background(), dev, sharedModel(t, "stories260K.gguf"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// A batch mixing a prefill and decodes gives each sequence the logits it
// gets alone.
func TestStepBatchesMatchSingleSequences(t *testing.T) {
	dev := testDevices(t)[0]
	m := loadStories(t, dev, Options{MaxSequences: 4, PageSize: 16})
	bos, _ := m.Tokenizer.BOS()
	prompts := [][]int32{{bos, 403, 407, 261, 378}, {bos, 403}, {bos}}
	alone := make([][]float32, len(prompts))
	for i, p := range prompts {
		s, _ := m.NewSequence()
		res, err := m.Step(context.Background(), []Request{{Seq: s, Tokens: p}})
		if err != nil {
			t.Fatal(err)
		}
		alone[i] = res[0].Logits[0]
		s.Free()
	}
	// Batched: sequence 0 prefilled in one go; 1 and 2 already hold a prefix.
	seqs := make([]*Sequence, len(prompts))
	for i := range seqs {
		seqs[i], _ = m.NewSequence()
		defer seqs[i].Free()
	}
	if _, err := m.Step(context.Background(), []Request{{Seq: seqs[1], Tokens: prompts[1][:1]}}); err != nil {
		t.Fatal(err)
	}
	res, err := m.Step(context.Background(), []Request{
		{Seq: seqs[0], Tokens: prompts[0], AllLogits: true},
		{Seq: seqs[1], Tokens: prompts[1][1:]},
		{Seq: seqs[2], Tokens: prompts[2]},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res[0].Logits) != len(prompts[0]) {
		t.Fatalf("AllLogits returned %d rows for %d tokens", len(res[0].Logits), len(prompts[0]))
	}
	got := [][]float32{res[0].Logits[len(prompts[0])-1], res[1].Logits[0], res[2].Logits[0]}
	for i := range got {
		for j := range got[i] {
			if d := math.Abs(float64(got[i][j] - alone[i][j])); d > 1e-4 {
				t.Fatalf("sequence %d logit %d: batched %v, alone %v", i, j, got[i][j], alone[i][j])
			}
		}
	}
	if n := seqs[0].Len(); n != len(prompts[0]) {
		t.Errorf("sequence 0 holds %d tokens after the step, want %d", n, len(prompts[0]))
	}
}

func TestForkAndTruncateContinueAlike(t *testing.T) {
	dev := testDevices(t)[0]
	m := loadStories(t, dev, Options{PageSize: 16})
	seq, _ := m.NewSequence()
	defer seq.Free()
	first, _ := greedyOn(t, m, seq, "", 30)
	fork, err := m.Fork(seq)
	if err != nil {
		t.Fatal(err)
	}
	defer fork.Free()
	a, _ := greedyOn(t, m, seq, "", 20)
	b, _ := greedyOn(t, m, fork, "", 20)
	if !equalIDs(a, b) {
		t.Errorf("a fork continues differently: %v vs %v", a, b)
	}
	// Rewind the original to where the fork was made and continue again.
	if err := seq.Truncate(len(first) + 1); err != nil {
		t.Fatal(err)
	}
	c, _ := greedyOn(t, m, seq, "", 20)
	if !equalIDs(a, c) {
		t.Errorf("after Truncate the sequence continues differently: %v vs %v", a, c)
	}
}

func greedyOn(t *testing.T, m *Model, seq *Sequence, prompt string, n int) ([]int32, string) {
	t.Helper()
	var ids []int32
	var text strings.Builder
	for tok, err := range m.Generate(context.Background(), seq, prompt, GenerateOptions{MaxTokens: n}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tok.ID)
		text.WriteString(tok.Text)
	}
	return ids, text.String()
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStepRefusesBadRequestsAndChangesNothing(t *testing.T) {
	dev := testDevices(t)[0]
	m := loadStories(t, dev, Options{MaxSequences: 2, ContextLen: 64, MaxBatchTokens: 32, PageSize: 16})
	s, _ := m.NewSequence()
	other, _ := m.NewSequence()
	defer s.Free()
	defer other.Free()
	if _, err := m.NewSequence(); err == nil || !strings.Contains(err.Error(), "MaxSequences") {
		t.Errorf("a third sequence with MaxSequences 2: %v", err)
	}
	long := make([]int32, 33)
	cases := []struct {
		name string
		reqs []Request
		want string
	}{
		{"no requests", nil, "no requests"},
		{"no tokens", []Request{{Seq: s}}, "no tokens"},
		{"bad id", []Request{{Seq: s, Tokens: []int32{1, 512}}}, "outside the vocabulary"},
		{"twice", []Request{{Seq: s, Tokens: []int32{1}}, {Seq: s, Tokens: []int32{1}}}, "twice"},
		{"too many tokens", []Request{{Seq: s, Tokens: long}}, "MaxBatchTokens"},
		{"nil sequence", []Request{{Tokens: []int32{1}}}, "missing"},
	}
	for _, c := range cases {
		if _, err := m.Step(context.Background(), c.reqs); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if s.Len() != 0 {
		t.Errorf("a refused step changed the sequence: %d tokens", s.Len())
	}
	// Filling the context: 64 tokens fit, the 65th does not.
	fill := make([]int32, 32)
	for i := range fill {
		fill[i] = 1
	}
	for i := 0; i < 2; i++ {
		if _, err := m.Step(context.Background(), []Request{{Seq: s, Tokens: fill}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Step(context.Background(), []Request{{Seq: s, Tokens: []int32{1}}}); err == nil || !strings.Contains(err.Error(), "context length") {
		t.Errorf("past the context: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Step(context.Background(), []Request{{Seq: other, Tokens: []int32{1}}}); !errors.Is(err, backend.ErrClosed) && !strings.Contains(err.Error(), "closed") {
		t.Errorf("step after Close: %v", err)
	}
}

// Many goroutines generating on their own sequences (run with -race).
func TestConcurrentGenerate(t *testing.T) {
	dev := testDevices(t)[0]
	m := loadStories(t, dev, Options{MaxSequences: 4, PageSize: 16})
	want, _ := greedy(t, m, "", 24)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Go(func() {
			seq, err := m.NewSequence()
			if err != nil {
				errs <- err
				return
			}
			defer seq.Free()
			var ids []int32
			for tok, err := range m.Generate(context.Background(), seq, "", GenerateOptions{MaxTokens: 24}) {
				if err != nil {
					errs <- err
					return
				}
				ids = append(ids, tok.ID)
			}
			if !equalIDs(ids, want) {
				errs <- errors.New("a concurrent greedy generation differs from a lone one")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// memoryLimited reports little free memory: Load must refuse before
// allocating anything.
type memoryLimited struct {
	backend.Backend
	free int64
}

func (m memoryLimited) MemoryInfo() (int64, int64, error) { return m.free, 1 << 30, nil }

func TestLoadRefusesWhatDoesNotFitBeforeAllocating(t *testing.T) {
	dev := testDevices(t)[0]
	small := memoryLimited{Backend: dev, free: 4096}
	_, err := Load(context.Background(), small, sharedModel(t, "stories260K.gguf"), Options{})
	if !errors.Is(err, backend.ErrOutOfMemory) || !strings.Contains(err.Error(), "KV cache") {
		t.Fatalf("Load with 4 KiB free: %v", err)
	}
	if s := dev.MemoryStats(); s.InUseBytes != 0 {
		t.Errorf("%d bytes left allocated after a refused Load", s.InUseBytes)
	}
}

func TestSampledGenerationIsReproducible(t *testing.T) {
	dev := testDevices(t)[0]
	m := loadStories(t, dev, Options{})
	run := func() []int32 {
		seq, _ := m.NewSequence()
		defer seq.Free()
		var ids []int32
		opts := GenerateOptions{MaxTokens: 40, Sample: sample.Options{Temperature: 0.9, TopK: 40, TopP: 0.95, Seed: 7}}
		for tok, err := range m.Generate(context.Background(), seq, "Once upon", opts) {
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, tok.ID)
		}
		return ids
	}
	a, b := run(), run()
	if !equalIDs(a, b) {
		t.Errorf("same seed, different tokens: %v vs %v", a, b)
	}
}
