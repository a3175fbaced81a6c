package llama

import (
	"context"
	"math"
	"testing"

	"github.com/kiln-gpu/kiln/models/builtin"
	"github.com/kiln-gpu/kiln/models/tokenizer"
	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// TestResidualStreamInF32 runs the built-in model on the CPU with F16
// activations, once with the residual stream in F16 and once in F32 (the
// default), against F32 throughout, over a prompt of Austen's prose: the
// F32 stream must be closer to the F32 model's logits than the F16 stream,
// and both must stay near them. It also checks that the default is F32 and
// that a non-float ResidualType is refused.
func TestResidualStreamInF32(t *testing.T) {
	ctx := context.Background()
	dev, err := backend.Open(ctx, "cpu", backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	f, err := builtin.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	logits := func(opts Options) ([][]float32, *Model) {
		t.Helper()
		m, err := LoadFile(ctx, dev, f, opts)
		if err != nil {
			t.Fatalf("load %+v: %v", opts, err)
		}
		t.Cleanup(func() { m.Close() })
		ids, err := m.Tokenizer.Encode("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. However little known the feelings or views of such a man may be on his first entering a neighbourhood", tokenizer.EncodeOptions{AddBOS: true})
		if err != nil {
			t.Fatal(err)
		}
		seq, err := m.NewSequence()
		if err != nil {
			t.Fatal(err)
		}
		defer seq.Free()
		res, err := m.Step(ctx, []Request{{Seq: seq, Tokens: ids, AllLogits: true}})
		if err != nil {
			t.Fatal(err)
		}
		return res[0].Logits, m
	}
	ref, m32 := logits(Options{ActivationType: tensor.F32})
	if m32.resType != tensor.F32 {
		t.Errorf("default ResidualType resolved to %v, want F32", m32.resType)
	}
	f16Stream, _ := logits(Options{ActivationType: tensor.F16, ResidualType: tensor.F16})
	f32Stream, m := logits(Options{ActivationType: tensor.F16})
	if m.resType != tensor.F32 || m.actType != tensor.F16 {
		t.Fatalf("resolved activation %v, residual %v; want F16, F32", m.actType, m.resType)
	}
	rmsErr := func(got [][]float32) (rms, maxAbs float64) {
		var sum float64
		n := 0
		for i := range ref {
			for j := range ref[i] {
				d := float64(got[i][j] - ref[i][j])
				sum += d * d
				maxAbs = math.Max(maxAbs, math.Abs(d))
				n++
			}
		}
		return math.Sqrt(sum / float64(n)), maxAbs
	}
	rms16, max16 := rmsErr(f16Stream)
	rms32, max32 := rmsErr(f32Stream)
	t.Logf("%d positions: logits vs F32 throughout: residual F16 rms %.3g max %.3g; residual F32 rms %.3g max %.3g",
		len(ref), rms16, max16, rms32, max32)
	if !(rms32 < rms16) {
		t.Errorf("the F32 residual stream is not closer to the F32 model than the F16 one: rms %.3g vs %.3g", rms32, rms16)
	}
	// F16 activations round every product input to 11 bits; measured
	// (2026-11-27, see the log line): max about 0.02 either way.
	if max32 > 0.05 || max16 > 0.05 {
		t.Errorf("logits moved too far from the F32 model: max %.3g (F32 stream), %.3g (F16 stream); bound 0.05", max32, max16)
	}

	if _, err := LoadFile(ctx, dev, f, Options{ResidualType: tensor.Q8_0}); err == nil {
		t.Error("ResidualType Q8_0 was accepted")
	}
}
