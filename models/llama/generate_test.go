package llama

import (
	"context"
	"errors"
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
