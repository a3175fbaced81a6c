package builtin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/kiln-gpu/kiln/models/llama"
	"github.com/kiln-gpu/kiln/models/sample"
	"github.com/kiln-gpu/kiln/models/tokenizer"
	"github.com/kiln-gpu/kiln/runtime/backend"
)

// logitTolerance is how far the Go forward pass (F32 on the CPU backend) may
// be from the reference's logits (float64 numpy over the same F32 weights,
// rounded to 6 decimals in reference.json, so ±5e-7). float32 rounds each
// operation to 6e-8 relative; through 4 layers of 128- and 352-long dot
// products, norms and softmaxes, logits of magnitude about 10 come out
// within a few 1e-6 (the test logs the largest difference; 2.7e-6 when the
// model was made). 1e-4 leaves a factor of 30 for another summation order
// while any real mistake (a wrong RoPE pair, head grouping or norm) moves
// logits by 0.01 or more. The reference's greedy choices win by margins the
// test logs (reference.json's greedy_min_margin, at least 1.2e-3 for the
// committed model), above this tolerance, so the F32 argmax must agree.
const logitTolerance = 1e-4

// reference is models/builtin/testdata/reference.json, written by
// scripts/train-builtin/train.py from its independent float64 forward pass.
type reference struct {
	Model          string `json:"model"`
	ModelSHA256    string `json:"model_sha256"`
	ModelSizeBytes int    `json:"model_size_bytes"`
	VocabSize      int    `json:"vocab_size"`
	BOSID          int32  `json:"bos_id"`
	EOSID          int32  `json:"eos_id"`
	FromBOS        struct {
		PromptIDs       []int32   `json:"prompt_ids"`
		GreedyIDs       []int32   `json:"greedy_ids"`
		GreedyText      string    `json:"greedy_text"`
		GreedyMinMargin float64   `json:"greedy_min_margin"`
		Logits          []float64 `json:"logits"`
	} `json:"from_bos"`
	FromBOS200 struct {
		GreedyIDs       []int32 `json:"greedy_ids"`
		GreedyText      string  `json:"greedy_text"`
		GreedyMinMargin float64 `json:"greedy_min_margin"`
	} `json:"from_bos_200"`
	FromPrompt struct {
		PromptText      string    `json:"prompt_text"`
		PromptIDs       []int32   `json:"prompt_ids"`
		GreedyIDs       []int32   `json:"greedy_ids"`
		GreedyText      string    `json:"greedy_text"`
		GreedyMinMargin float64   `json:"greedy_min_margin"`
		LogitsFirst32   []float64 `json:"logits_first32"`
	} `json:"from_prompt"`
	Training struct {
		FinalValLoss float64 `json:"final_val_loss"`
	} `json:"training"`
	TokenizerCheck struct {
		Text string  `json:"text"`
		IDs  []int32 `json:"ids"`
	} `json:"tokenizer_check"`
}

func readReference(t *testing.T) reference {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r reference
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("reference.json: %v", err)
	}
	if len(r.FromBOS.GreedyIDs) == 0 || len(r.FromBOS.Logits) != r.VocabSize || len(r.FromBOS200.GreedyIDs) == 0 ||
		len(r.FromPrompt.GreedyIDs) == 0 || len(r.FromPrompt.LogitsFirst32) != 32 || len(r.TokenizerCheck.IDs) == 0 {
		t.Fatalf("reference.json is incomplete")
	}
	return r
}

// TestEmbeddedFileIsTheReferencedOne: the embedded bytes are the file the
// golden values were computed from, and the file on disk.
func TestEmbeddedFileIsTheReferencedOne(t *testing.T) {
	r := readReference(t)
	sum := sha256.Sum256(GGUF())
	if got := hex.EncodeToString(sum[:]); got != r.ModelSHA256 || len(GGUF()) != r.ModelSizeBytes {
		t.Errorf("embedded file: sha256 %s, %d bytes; reference.json describes sha256 %s, %d bytes", got, len(GGUF()), r.ModelSHA256, r.ModelSizeBytes)
	}
	if r.Model != Name+".gguf" {
		t.Errorf("reference.json is for %q, the package embeds %s.gguf", r.Model, Name)
	}
	f, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for key, want := range map[string]string{"general.name": Name, "general.architecture": "llama", "general.license": "MIT"} {
		if got, err := f.String(key); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", key, got, err, want)
		}
	}
}

// TestOpenAlignsTensors: every tensor Open returns starts at an address
// aligned to 32 bytes (the GGUF data alignment), which the CPU backend
// needs to use weights in place.
func TestOpenAlignsTensors(t *testing.T) {
	f, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if dataAlignment%f.Alignment != 0 {
		t.Fatalf("the file's alignment %d does not divide Open's %d", f.Alignment, dataAlignment)
	}
	if len(f.Tensors) != 4*9+3 {
		t.Errorf("%d tensors, want 39 (9 a layer for 4 layers, embedding, output norm, output)", len(f.Tensors))
	}
	for _, info := range f.Tensors {
		data, err := f.TensorData(info)
		if err != nil {
			t.Fatal(err)
		}
		if addr := uintptr(unsafe.Pointer(unsafe.SliceData(data))); addr%32 != 0 {
			t.Errorf("tensor %s at address %#x is not 32-byte aligned", info.Name, addr)
		}
	}
	// Two Opens are independent copies: the embedded bytes are never
	// handed out for writing.
	g, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	a, _ := f.TensorData(f.Tensors[0])
	b, _ := g.TensorData(g.Tensors[0])
	if unsafe.SliceData(a) == unsafe.SliceData(b) || unsafe.SliceData(a) == unsafe.SliceData(GGUF()) {
		t.Error("Open returned shared memory")
	}
}

// loadCPU loads the built-in model on the CPU backend.
func loadCPU(t *testing.T) *llama.Model {
	t.Helper()
	ctx := context.Background()
	dev, err := backend.Open(ctx, "cpu", backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	f, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	m, err := llama.LoadFile(ctx, dev, f, llama.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); f.Close() })
	c := m.Config
	if c.Arch != "llama" || c.NLayers != 4 || c.Dim != 128 || c.NHeads != 4 || c.NKVHeads != 2 || c.FFNDim != 352 || c.VocabSize != 1024 || c.ContextLen != 512 {
		t.Fatalf("config %+v, want the documented 4 layers, dim 128, 4/2 heads, FFN 352, vocabulary 1024, context 512", c)
	}
	return m
}

// greedy runs llama.Model.Generate at temperature 0 and returns the ids and
// the text.
func greedy(t *testing.T, m *llama.Model, prompt string, n int) ([]int32, string) {
	t.Helper()
	seq, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Free()
	var ids []int32
	var text strings.Builder
	for tok, err := range m.Generate(context.Background(), seq, prompt, llama.GenerateOptions{MaxTokens: n, Sample: sample.Options{Temperature: 0}}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tok.ID)
		text.WriteString(tok.Text)
	}
	return ids, text.String()
}

// stepLogits feeds ids into a new sequence and returns the logits after the
// last one.
func stepLogits(t *testing.T, m *llama.Model, ids []int32) []float32 {
	t.Helper()
	seq, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Free()
	res, err := m.Step(context.Background(), []llama.Request{{Seq: seq, Tokens: ids}})
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Logits[0]
}

func maxAbsDiff(t *testing.T, what string, got []float32, want []float64) float64 {
	t.Helper()
	worst, at := 0.0, 0
	for i, w := range want {
		if d := math.Abs(float64(got[i]) - w); d > worst || math.IsNaN(d) {
			worst, at = d, i
		}
	}
	t.Logf("%s: largest difference from the float64 reference %.3g (logit %d)", what, worst, at)
	if !(worst <= logitTolerance) {
		t.Errorf("%s: logit %d = %v, reference %v (difference %.3g > %g)", what, at, got[at], want[at], worst, logitTolerance)
	}
	return worst
}

// TestGreedyReproducesReference loads the model with models/llama on the
// CPU backend: the logits after BOS and after the prompt match the float64
// reference, and greedy generation reproduces its ids and text exactly.
func TestGreedyReproducesReference(t *testing.T) {
	r := readReference(t)
	m := loadCPU(t)
	if bos, ok := m.Tokenizer.BOS(); !ok || bos != r.BOSID || !m.AddsBOS() {
		t.Fatalf("BOS %d (%v), adds BOS %v; reference BOS %d", bos, ok, m.AddsBOS(), r.BOSID)
	}
	// A greedy choice that wins by less than the logits' error could
	// legitimately differ in F32; the runs' smallest margins say how far
	// from that they are.
	t.Logf("smallest greedy margins in the reference: %.3g (from BOS), %.3g (200 tokens), %.3g (after the prompt)",
		r.FromBOS.GreedyMinMargin, r.FromBOS200.GreedyMinMargin, r.FromPrompt.GreedyMinMargin)

	maxAbsDiff(t, "logits after BOS", stepLogits(t, m, r.FromBOS.PromptIDs), r.FromBOS.Logits)
	ids, text := greedy(t, m, "", len(r.FromBOS.GreedyIDs))
	if !slices.Equal(ids, r.FromBOS.GreedyIDs) {
		t.Errorf("greedy ids from BOS\n got %v\nwant %v", ids, r.FromBOS.GreedyIDs)
	}
	if text != r.FromBOS.GreedyText {
		t.Errorf("greedy text from BOS\n got %q\nwant %q", text, r.FromBOS.GreedyText)
	}
	ids, text = greedy(t, m, "", len(r.FromBOS200.GreedyIDs))
	if !slices.Equal(ids, r.FromBOS200.GreedyIDs) || text != r.FromBOS200.GreedyText {
		t.Errorf("greedy from BOS, %d tokens\n got %v %q\nwant %v %q", len(r.FromBOS200.GreedyIDs), ids, text, r.FromBOS200.GreedyIDs, r.FromBOS200.GreedyText)
	}

	p := r.FromPrompt
	promptIDs, err := m.Tokenizer.Encode(p.PromptText, tokenizer.EncodeOptions{AddBOS: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(promptIDs, p.PromptIDs) {
		t.Fatalf("prompt %q encodes to %v, sentencepiece gave %v", p.PromptText, promptIDs, p.PromptIDs)
	}
	maxAbsDiff(t, "logits after the prompt", stepLogits(t, m, p.PromptIDs)[:32], p.LogitsFirst32)
	ids, _ = greedy(t, m, p.PromptText, len(p.GreedyIDs))
	if !slices.Equal(ids, p.GreedyIDs) {
		t.Errorf("greedy ids after %q\n got %v\nwant %v", p.PromptText, ids, p.GreedyIDs)
	}
	// The reference's text is sentencepiece's decoding of the generated ids
	// on their own.
	if got := m.Tokenizer.Decode(ids); got != p.GreedyText {
		t.Errorf("greedy text after %q\n got %q\nwant %q", p.PromptText, got, p.GreedyText)
	}
}

// TestTokenizerMatchesSentencePiece: the Go tokenizer reading the GGUF
// vocabulary encodes the check text as sentencepiece itself did, and
// decodes it back.
func TestTokenizerMatchesSentencePiece(t *testing.T) {
	r := readReference(t)
	f, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != r.VocabSize {
		t.Fatalf("vocabulary of %d, reference %d", tok.VocabSize(), r.VocabSize)
	}
	c := r.TokenizerCheck
	ids, err := tok.Encode(c.Text, tokenizer.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, c.IDs) {
		t.Errorf("Encode(%q)\n got %v\nwant %v (sentencepiece)", c.Text, ids, c.IDs)
	}
	if got := tok.Decode(c.IDs); got != c.Text {
		t.Errorf("Decode(sentencepiece's ids) = %q, want %q", got, c.Text)
	}
}
