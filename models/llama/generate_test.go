package llama

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestGenerateHonoursCancellation cancels the context after five tokens: the
// stream ends with the context's error and the sequence keeps BOS and the
// five tokens yielded, so a later Generate could continue it.
func TestGenerateHonoursCancellation(t *testing.T) {
	m := loadStories(t, testDevices(t)[0], Options{})
	seq, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Free()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	var last error
	for _, err := range m.Generate(ctx, seq, "", GenerateOptions{MaxTokens: 100}) {
		if err != nil {
			last = err
			break
		}
		n++
		if n == 5 {
			cancel()
		}
	}
	if !errors.Is(last, context.Canceled) || n != 5 {
		t.Errorf("after cancelling at 5 tokens: %d tokens, final error %v", n, last)
	}
	if got := seq.Len(); got != 6 {
		t.Errorf("the sequence holds %d tokens, want 6 (BOS and five generated)", got)
	}
}

// TestGenerateTextContinuesThePrompt: the Texts of a generation after a
// prompt add up to what Decode gives for the whole sequence beyond the
// prompt's own text (the first piece keeps its leading space).
func TestGenerateTextContinuesThePrompt(t *testing.T) {
	m := loadStories(t, testDevices(t)[0], Options{})
	seq, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Free()
	var text strings.Builder
	n := 0
	for tok, err := range m.Generate(context.Background(), seq, "Once upon a time,", GenerateOptions{MaxTokens: 30}) {
		if err != nil {
			t.Fatal(err)
		}
		text.WriteString(tok.Text)
		n++
	}
	all := seq.Tokens()
	promptText := m.Tokenizer.Decode(all[:len(all)-n])
	whole := m.Tokenizer.Decode(all)
	if !strings.HasPrefix(whole, promptText) || whole[len(promptText):] != text.String() {
		t.Errorf("generated text %q; Decode of the sequence is %q after the prompt's %q", text.String(), whole, promptText)
	}
	if !strings.HasPrefix(text.String(), " ") {
		t.Errorf("the continuation %q lost its leading space", text.String())
	}
}

// TestLogitsAtChoosesPositions: LogitsAt returns exactly the rows AllLogits
// gives at those positions, an empty LogitsAt none (the tokens still go in),
// and bad indices are refused without changing the sequence.
func TestLogitsAtChoosesPositions(t *testing.T) {
	m := loadStories(t, testDevices(t)[0], Options{})
	bos, _ := m.Tokenizer.BOS()
	prompt := []int32{bos, 403, 407, 261, 378}
	all := promptLogits(t, m, prompt)
	seq, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Free()
	res, err := m.Step(context.Background(), []Request{{Seq: seq, Tokens: prompt[:3], LogitsAt: []int{}}})
	if err != nil || len(res[0].Logits) != 0 || seq.Len() != 3 {
		t.Fatalf("LogitsAt {}: %d rows, %v, sequence of %d", len(res[0].Logits), err, seq.Len())
	}
	for _, bad := range [][]int{{2}, {1, 0}, {-1}, {0, 0}} {
		if _, err := m.Step(context.Background(), []Request{{Seq: seq, Tokens: prompt[3:], LogitsAt: bad}}); err == nil || !strings.Contains(err.Error(), "LogitsAt") {
			t.Errorf("LogitsAt %v: %v", bad, err)
		}
	}
	res, err = m.Step(context.Background(), []Request{{Seq: seq, Tokens: prompt[3:], LogitsAt: []int{0, 1}}})
	if err != nil || len(res[0].Logits) != 2 {
		t.Fatalf("LogitsAt {0, 1}: %v", err)
	}
	if d := maxAbsDiff(res[0].Logits, all[3:]); d > 1e-5 {
		t.Errorf("LogitsAt rows differ from AllLogits' by %g", d)
	}
}
