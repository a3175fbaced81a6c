package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/kiln-gpu/kiln/models/llama"
	"github.com/kiln-gpu/kiln/models/tokenizer"
	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// runEval is `kiln eval -model FILE (-tokens "ID ID ..." | -text TEXT)
// [-logits-out FILE]`: the model's log-probability of each token given the
// ones before it, and the perplexity over them; optionally the raw float32
// logits after every position, row-major [n_tokens × n_vocab],
// little-endian.
//
// -tokens are evaluated exactly as given (no BOS is added); -text is
// tokenized with BOS first when the model wants one. The first token has no
// log-probability (nothing comes before it), so n tokens give n-1 scores,
// but the logits file has all n rows.
func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", stderr, `-model FILE (-tokens "ID ID ..." | -text TEXT) [-logits-out FILE] [-device D] [-ctx N]`)
	modelPath := fs.String("model", "", "GGUF model `file` (default: the built-in model)")
	tokensFlag := fs.String("tokens", "", "token `ids` separated by spaces, evaluated as given")
	text := fs.String("text", "", "`text` to tokenize (BOS first when the model wants one)")
	logitsOut := fs.String("logits-out", "", "write the float32 logits after every position to `file`: row-major [n_tokens × n_vocab], little-endian")
	device := fs.String("device", "auto", "`device`: auto, cpu, cuda or cuda:N")
	ctxLen := fs.Int("ctx", 0, "context length in `tokens` (0: the model's, at most 4096)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	textGiven := false
	fs.Visit(func(f *flag.Flag) { textGiven = textGiven || f.Name == "text" })
	if (*tokensFlag != "") == textGiven {
		return fmt.Errorf("%w: give exactly one of -tokens and -text", errUsage)
	}
	if *ctxLen < 0 {
		return fmt.Errorf("%w: -ctx %d is negative", errUsage, *ctxLen)
	}
	var ids []int32
	if *tokensFlag != "" {
		var err error
		if ids, err = parseTokenIDs(*tokensFlag); err != nil {
			return err
		}
	}

	dev, err := backend.Open(ctx, *device, backend.Options{})
	if err != nil {
		return err
	}
	defer dev.Close()
	m, _, closeModel, err := loadModel(ctx, []backend.Backend{dev}, *modelPath, llama.Options{MaxSequences: 1, ContextLen: *ctxLen})
	if err != nil {
		return err
	}
	defer closeModel()

	if textGiven {
		if ids, err = m.Tokenizer.Encode(*text, tokenizer.EncodeOptions{ParseSpecial: true}); err != nil {
			return fmt.Errorf("tokenizing -text: %w", err)
		}
		if bos, ok := m.Tokenizer.BOS(); ok && m.AddsBOS() {
			ids = append([]int32{bos}, ids...)
		}
	} else if err := m.Tokenizer.CheckIDs(ids); err != nil {
		return fmt.Errorf("%w: -tokens: %v", errUsage, err)
	}
	if len(ids) == 0 {
		return fmt.Errorf("%w: no tokens to evaluate", errUsage)
	}
	if contextLen := m.ContextLen(); len(ids) > contextLen {
		return fmt.Errorf("%w: %d tokens are more than the context length %d (raise -ctx, up to the model's %d)", errUsage, len(ids), contextLen, m.Config.ContextLen)
	}
	seq, err := m.NewSequence()
	if err != nil {
		return err
	}
	defer seq.Free()

	if *logitsOut == "" {
		return evalTokens(ctx, m, seq, ids, stdout, nil)
	}
	logitsFile, err := os.Create(*logitsOut)
	if err != nil {
		return err
	}
	logitsW := bufio.NewWriterSize(logitsFile, 1<<20)
	err = evalTokens(ctx, m, seq, ids, stdout, logitsW)
	if err == nil {
		err = logitsW.Flush()
	}
	err = errors.Join(err, logitsFile.Close())
	if err != nil {
		os.Remove(*logitsOut) // no partial logits file
	}
	return err
}

// parseTokenIDs reads token ids separated by spaces.
func parseTokenIDs(s string) ([]int32, error) {
	fields := strings.Fields(s)
	ids := make([]int32, 0, len(fields))
	for i, f := range fields {
		v, err := strconv.ParseInt(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: -tokens: item %d, %q, is not a token id (a non-negative integer)", errUsage, i, f)
		}
		if v < 0 {
			return nil, fmt.Errorf("%w: -tokens: item %d, %d, is negative", errUsage, i, v)
		}
		ids = append(ids, int32(v))
	}
	return ids, nil
}

// evalTokens feeds ids into seq in chunks of at most MaxBatchTokens with
// the logits of every position, writing each next token's log-probability
// to stdout and (when logitsW is not nil) every logits row to logitsW.
func evalTokens(ctx context.Context, m *llama.Model, seq *llama.Sequence, ids []int32, stdout io.Writer, logitsW io.Writer) error {
	w := bufio.NewWriter(stdout)
	fmt.Fprintln(w, "position\ttoken\tlogprob\tpiece")
	var sumLogProb float64
	scored := 0
	chunk := m.MaxBatchTokens()
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		res, err := m.Step(ctx, []llama.Request{{Seq: seq, Tokens: part, AllLogits: true}})
		if err != nil {
			return fmt.Errorf("evaluating tokens %d to %d: %w", start, start+len(part)-1, err)
		}
		for j, logits := range res[0].Logits {
			pos := start + j
			if logitsW != nil {
				if _, err := logitsW.Write(tensor.F32Bytes(logits)); err != nil {
					return fmt.Errorf("writing -logits-out: %w", err)
				}
			}
			if pos+1 < len(ids) {
				next := ids[pos+1]
				lp := logProb(logits, next)
				sumLogProb += lp
				scored++
				fmt.Fprintf(w, "%d\t%d\t%.6f\t%q\n", pos+1, next, lp, m.Tokenizer.Piece(next))
			}
		}
	}
	if scored > 0 {
		mean := sumLogProb / float64(scored)
		fmt.Fprintf(w, "tokens scored: %d, mean log-probability %.6f, perplexity %.4f\n", scored, mean, math.Exp(-mean))
	} else {
		fmt.Fprintln(w, "tokens scored: 0 (one token has nothing before it to be predicted from), perplexity undefined")
	}
	return w.Flush()
}

// logProb is log softmax(logits)[id], computed in float64.
func logProb(logits []float32, id int32) float64 {
	maxV := math.Inf(-1)
	for _, v := range logits {
		maxV = math.Max(maxV, float64(v))
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - maxV)
	}
	return float64(logits[id]) - maxV - math.Log(sum)
}
