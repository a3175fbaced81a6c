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
