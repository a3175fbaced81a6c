package llama

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/models/gguf"
	"github.com/kiln-gpu/kiln/models/tokenizer"
	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// cpuGroup opens n CPU backends: the CPU standing for n devices.
func cpuGroup(t *testing.T, n int) []backend.Backend {
	t.Helper()
	devs := make([]backend.Backend, n)
	for i := range devs {
		d, err := backend.Open(context.Background(), "cpu", backend.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		devs[i] = d
	}
	return devs
}

// promptLogits runs one prefill step over ids and returns every position's logits.
func promptLogits(t *testing.T, m *Model, ids []int32) [][]float32 {
	t.Helper()
	seq, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Free()
	res, err := m.Step(context.Background(), []Request{{Seq: seq, Tokens: ids, AllLogits: true}})
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Logits
}

func maxAbsDiff(a, b [][]float32) float64 {
	d := 0.0
	for i := range a {
		for j := range a[i] {
			d = math.Max(d, math.Abs(float64(a[i][j])-float64(b[i][j])))
		}
	}
	return d
}

// TestTensorParallelMatchesOneDevice shards stories260K (8 query heads, 4
// KV heads, FFN 172) over 2 and 4 CPU "devices" and compares with one: the
// logits of a prompt may differ only by the order of F32 partial sums, and
// greedy generation gives the same text.
func TestTensorParallelMatchesOneDevice(t *testing.T) {
	path := sharedModel(t, "stories260K.gguf")
	ctx := context.Background()
	one, err := Load(ctx, cpuGroup(t, 1)[0], path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	bos, _ := one.Tokenizer.BOS()
	prompt, err := one.Tokenizer.Encode("Once upon a time, there was a little dog named Max. He liked to run", tokenizer.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	prompt = append([]int32{bos}, prompt...)
	want := promptLogits(t, one, prompt)
	wantIDs, wantText := greedy(t, one, "", 120)
	for _, n := range []int{2, 4} {
		t.Run(fmt.Sprintf("tp%d", n), func(t *testing.T) {
			m, err := LoadParallel(ctx, cpuGroup(t, n), path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			got := promptLogits(t, m, prompt)
			d := maxAbsDiff(got, want)
			t.Logf("TP=%d: max |logit difference| over %d prompt positions: %.3g", n, len(prompt), d)
			if d > 1e-4 {
				t.Errorf("TP=%d logits differ from one device by up to %g (bound 1e-4)", n, d)
			}
			ids, text := greedy(t, m, "", 120)
			if !slices.Equal(ids, wantIDs) {
				t.Errorf("TP=%d greedy text differs:\n%q\nwant\n%q", n, text, wantText)
			}
		})
	}
}

func TestTensorParallelRefusesWhatDoesNotDivide(t *testing.T) {
	path := sharedModel(t, "stories260K.gguf")
	ctx := context.Background()
	// 4 KV heads do not split over 3 devices.
	if _, err := LoadParallel(ctx, cpuGroup(t, 3), path, Options{}); err == nil || !strings.Contains(err.Error(), "multiples of 3") {
		t.Errorf("TP=3: %v, want an error about multiples of 3", err)
	}
	dev := cpuGroup(t, 1)[0]
	if _, err := LoadParallel(ctx, []backend.Backend{dev, dev}, path, Options{}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("one device twice: %v", err)
	}
	if _, err := LoadParallel(ctx, nil, path, Options{}); err == nil {
		t.Error("no devices: no error")
	}
}

func TestSlicePartColumnsOfBlocks(t *testing.T) {
	// Columns of a block-quantised matrix must fall on block boundaries.
	data := make([]byte, 2*2*34) // Q8_0 [2, 64]: 2 blocks of 34 bytes a row
	for i := range data {
		data[i] = byte(i)
	}
	out, shape, copied, err := slicePart(data, tensor.Q8_0, []int{2, 64}, part{dim: 1, lo: 32, hi: 64})
	if err != nil || !copied || !slices.Equal(shape, []int{2, 32}) {
		t.Fatalf("columns 32..64: %v %v %v", shape, copied, err)
	}
	if !slices.Equal(out[:34], data[34:68]) || !slices.Equal(out[34:], data[102:136]) {
		t.Error("columns 32..64 of Q8_0 rows: wrong bytes")
	}
	if _, _, _, err := slicePart(data, tensor.Q8_0, []int{2, 64}, part{dim: 1, lo: 16, hi: 64}); err == nil || !strings.Contains(err.Error(), "blocks of 32") {
		t.Errorf("columns 16..64 of Q8_0: %v, want a block boundary error", err)
	}
}

// TestTensorParallelQ8_0 shards the project's Q8_0 quantisation of
// stories260K over two CPU devices: the attention output matrix is split
// along its Q8_0 blocks (32 columns a shard).
func TestTensorParallelQ8_0(t *testing.T) {
	f, err := gguf.Open(sharedModel(t, "stories260K.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	q8, _ := quantizeFile(t, f, tensor.Q8_0)
	defer q8.Close()
	ctx := context.Background()
	one, err := LoadFile(ctx, cpuGroup(t, 1)[0], q8, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	two, err := LoadFileParallel(ctx, cpuGroup(t, 2), q8, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer two.Close()
	if dt := two.shards[1].w.layers[0].wo.DType(); dt != tensor.Q8_0 {
		t.Fatalf("shard 1's attn_output is %v, want Q8_0", dt)
	}
	bos, _ := one.Tokenizer.BOS()
	prompt := []int32{bos, 403, 407, 261, 378, 432, 383, 286}
	d := maxAbsDiff(promptLogits(t, two, prompt), promptLogits(t, one, prompt))
	t.Logf("Q8_0 TP=2: max |logit difference| %.3g", d)
	if d > 1e-4 {
		t.Errorf("Q8_0 TP=2 logits differ from one device by up to %g", d)
	}
	wantIDs, _ := greedy(t, one, "", 100)
	gotIDs, _ := greedy(t, two, "", 100)
	if !slices.Equal(gotIDs, wantIDs) {
		t.Error("Q8_0 TP=2 greedy tokens differ from one device")
	}
}
