package main

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/models/llama"
	"github.com/kiln-gpu/kiln/runtime/backend"
)

// evalLine is one scored token of eval's output.
type evalLine struct {
	pos, token int
	logProb    float64
}

// parseEvalOutput reads eval's table and its summary line.
func parseEvalOutput(t *testing.T, out string) (lines []evalLine, scored int, meanLogProb, perplexity float64) {
	t.Helper()
	rows := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(rows) < 2 || rows[0] != "position\ttoken\tlogprob\tpiece" {
		t.Fatalf("eval output has no header:\n%s", out)
	}
	for _, r := range rows[1 : len(rows)-1] {
		f := strings.SplitN(r, "\t", 4)
		if len(f) != 4 {
			t.Fatalf("eval line %q: want 4 tab-separated fields", r)
		}
		pos, err1 := strconv.Atoi(f[0])
		tok, err2 := strconv.Atoi(f[1])
		lp, err3 := strconv.ParseFloat(f[2], 64)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("eval line %q does not parse", r)
		}
		lines = append(lines, evalLine{pos, tok, lp})
	}
	summary := rows[len(rows)-1]
	var rest string
	var err error
	if rest, err = cutNumber(summary, "tokens scored: ", &scored); err == nil {
		var mean, ppl float64
		if rest, err = cutFloat(rest, ", mean log-probability ", &mean); err == nil {
			if _, err = cutFloat(rest, ", perplexity ", &ppl); err == nil {
				return lines, scored, mean, ppl
			}
		}
	}
	t.Fatalf("eval summary %q: %v", summary, err)
	return
}

func cutNumber(s, prefix string, v *int) (string, error) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return "", strconv.ErrSyntax
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	n, err := strconv.Atoi(rest[:end])
	*v = n
	return rest[end:], err
}

func cutFloat(s, prefix string, v *float64) (string, error) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return "", strconv.ErrSyntax
	}
	end := strings.IndexAny(rest, ", ")
	if end < 0 {
		end = len(rest)
	}
	f, err := strconv.ParseFloat(rest[:end], 64)
	*v = f
	return rest[end:], err
}

// logSoftmaxAt is log(exp(row[i]) / Σ exp(row)), in float64, computed here
// independently of eval's own.
func logSoftmaxAt(row []float32, i int) float64 {
	m := float64(row[0])
	for _, v := range row {
		if float64(v) > m {
			m = float64(v)
		}
	}
	var s float64
	for _, v := range row {
		s += math.Exp(float64(v) - m)
	}
	return float64(row[i]) - m - math.Log(s)
}

// TestEvalStories260K checks eval on the real model: the logits file has
// n_tokens × n_vocab float32 values equal to what llama.Model.Step returns
// for the same tokens; each printed log-probability is the log-softmax of
// the previous row at the next token; the perplexity is finite and follows
// from them.
func TestEvalStories260K(t *testing.T) {
	model := sharedModel(t, "stories260K.gguf")
	// BOS and the start of the reference text's greedy tokens, then tokens
	// the model does not expect, so that the log-probabilities vary.
	ids := []int32{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 5, 77, 300, 2, 499}
	const nVocab = 512
	var idText []string
	for _, id := range ids {
		idText = append(idText, strconv.Itoa(int(id)))
	}
	logitsPath := filepath.Join(t.TempDir(), "logits.f32")
	code, out, errOut := runKiln(t, "eval", "-model", model, "-tokens", strings.Join(idText, " "), "-logits-out", logitsPath, "-device", "cpu")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	raw, err := os.ReadFile(logitsPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != len(ids)*nVocab*4 {
		t.Fatalf("logits file: %d bytes, want %d tokens × %d vocabulary × 4", len(raw), len(ids), nVocab)
	}
	rows := make([][]float32, len(ids))
	for i := range rows {
		rows[i] = make([]float32, nVocab)
		for j := range rows[i] {
			rows[i][j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*(i*nVocab+j):]))
		}
	}

	// The same tokens through the library.
	dev, err := backend.Open(context.Background(), "cpu", backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	m, err := llama.Load(context.Background(), dev, model, llama.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	seq, err := m.NewSequence()
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Step(context.Background(), []llama.Request{{Seq: seq, Tokens: ids, AllLogits: true}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range res[0].Logits {
		for j := range want {
			if rows[i][j] != want[j] {
				t.Fatalf("logits file row %d column %d = %v, Step gives %v", i, j, rows[i][j], want[j])
			}
		}
	}
	// Row 0 is the distribution after BOS: the reference values of the README.
	for j, want := range []float64{-6.22291, 8.40434, -6.22374, -6.22254} {
		if math.Abs(float64(rows[0][j])-want) > 1e-4 {
			t.Errorf("logit %d after BOS = %v, reference %v", j, rows[0][j], want)
		}
	}

	lines, scored, mean, ppl := parseEvalOutput(t, out)
	if scored != len(ids)-1 || len(lines) != len(ids)-1 {
		t.Fatalf("%d lines and %d scored, want %d", len(lines), scored, len(ids)-1)
	}
	var sum float64
	for k, l := range lines {
		if l.pos != k+1 || l.token != int(ids[k+1]) {
			t.Errorf("line %d: position %d token %d, want %d and %d", k, l.pos, l.token, k+1, ids[k+1])
		}
		want := logSoftmaxAt(rows[k], int(ids[k+1]))
		if math.Abs(l.logProb-want) > 1e-5 {
			t.Errorf("position %d: log-probability %v, log-softmax of the logits file gives %v", l.pos, l.logProb, want)
		}
		if l.logProb > 0 {
			t.Errorf("position %d: log-probability %v > 0", l.pos, l.logProb)
		}
		sum += want
	}
	if math.Abs(mean-sum/float64(scored)) > 1e-5 {
		t.Errorf("mean log-probability %v, the lines give %v", mean, sum/float64(scored))
	}
	if math.IsInf(ppl, 0) || math.IsNaN(ppl) || ppl < 1 || math.Abs(ppl-math.Exp(-sum/float64(scored)))/ppl > 1e-4 {
		t.Errorf("perplexity %v, want finite exp(-mean) = %v", ppl, math.Exp(-sum/float64(scored)))
	}
	// The model's own greedy choices are likely: the reference tokens after
	// BOS score better than the ones appended at the end.
	if lines[0].logProb < -1 || lines[len(lines)-1].logProb > lines[0].logProb {
		t.Errorf("log-probabilities do not look like a trained model's: first %v, last %v", lines[0].logProb, lines[len(lines)-1].logProb)
	}

	// -text tokenizes with BOS first: "Once upon a time" is BOS and the
	// four greedy tokens 403 407 261 378, which score as above.
	code, out, errOut = runKiln(t, "eval", "-model", model, "-text", "Once upon a time", "-device", "cpu")
	if code != 0 {
		t.Fatalf("-text: exit %d, stderr:\n%s", code, errOut)
	}
	textLines, scored, _, _ := parseEvalOutput(t, out)
	if scored != 4 {
		t.Fatalf("-text: %d scored, want 4:\n%s", scored, out)
	}
	// The two runs process different numbers of tokens, so their matrix
	// products may take different paths (runtime/cpu: fused up to 16 rows
	// with the AVX2 dots, blocked above) and round differently: 1e-5, as
	// above, not bit equality.
	for k, l := range textLines {
		if l.token != int(ids[k+1]) || math.Abs(l.logProb-lines[k].logProb) > 1e-5 {
			t.Errorf("-text line %d: token %d log-probability %v; -tokens gave token %d %v", k, l.token, l.logProb, lines[k].token, lines[k].logProb)
		}
	}
}

// TestEvalBuiltinModelByDefault: without -model, eval scores with the
// built-in model.
func TestEvalBuiltinModelByDefault(t *testing.T) {
	code, out, errOut := runKiln(t, "eval", "-text", "It is a truth universally acknowledged", "-device", "cpu")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	_, scored, _, ppl := parseEvalOutput(t, out)
	// A model of Austen's prose that has read this sentence finds it far
	// likelier than a uniform guess over 1024 tokens.
	if scored < 4 || !(ppl > 1 && ppl < 200) {
		t.Errorf("%d tokens scored, perplexity %v; want a few tokens and 1 < perplexity < 200", scored, ppl)
	}
}

func TestEvalErrors(t *testing.T) {
	model := builtinModelFile(t)
	missing := filepath.Join(t.TempDir(), "missing.gguf")
	unwritable := filepath.Join(t.TempDir(), "no-such-dir", "logits.f32")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-model", missing, "-tokens", "1 2"}, 1, "missing.gguf"},
		{[]string{"-model", model, "-tokens", "1 abc 3"}, 2, `item 1, "abc", is not a token id`},
		{[]string{"-model", model, "-tokens", "1 -3"}, 2, "-3, is negative"},
		{[]string{"-model", model, "-tokens", "1 99999999999"}, 2, `item 1, "99999999999", is not a token id`},
		{[]string{"-model", model, "-tokens", "1 1024", "-device", "cpu"}, 2, "token 1024 (at index 1) is outside the vocabulary of 1024 tokens"},
		{[]string{"-model", model}, 2, "exactly one of -tokens and -text"},
		{[]string{"-model", model, "-tokens", "1", "-text", "x"}, 2, "exactly one of -tokens and -text"},
		{[]string{"-model", model, "-tokens", " ", "-device", "cpu"}, 2, "no tokens to evaluate"},
		{[]string{"-model", model, "-tokens", "1 2 3 4 5", "-ctx", "4", "-device", "cpu"}, 2, "5 tokens are more than the context length 4"},
		{[]string{"-model", model, "-tokens", "1 2", "-logits-out", unwritable, "-device", "cpu"}, 1, "no-such-dir"},
	} {
		code, out, errOut := runKiln(t, append([]string{"eval"}, c.args...)...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("kiln eval %q: exit %d, stderr %q; want exit %d and %q", c.args, code, errOut, c.code, c.want)
		}
		if strings.Contains(errOut, "panic") || (code != 0 && strings.Contains(out, "perplexity")) {
			t.Errorf("kiln eval %q: stdout %q, stderr %q", c.args, out, errOut)
		}
	}
}
