//go:build kilnwip

package main

import (
	"bufio"
	"context"
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

func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", stderr, `-model FILE (-tokens "ID ID ..." | -text TEXT) [-logits-out FILE] [-device D]`)
	modelPath := fs.String("model", "", "GGUF model file (default: the built-in model)")
	tokens := fs.String("tokens", "", "token ids separated by spaces")
	text := fs.String("text", "", "text to tokenize (with BOS when the model wants one)")
	logitsOut := fs.String("logits-out", "", "write the float32 logits of every position, row-major [n_tokens × n_vocab], little-endian")
	device := fs.String("device", "auto", "device: auto, cpu, cuda or cuda:N")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*tokens == "") == (*text == "") {
		return fmt.Errorf("%w: give exactly one of -tokens and -text", errUsage)
	}
	dev, err := backend.Open(ctx, *device, backend.Options{})
	if err != nil {
		return err
	}
	defer dev.Close()
	m, _, err := loadModel(ctx, dev, *modelPath, llama.Options{})
	if err != nil {
		return err
	}
	defer m.Close()

	var ids []int32
	if *tokens != "" {
		for _, f := range strings.Fields(*tokens) {
			v, err := strconv.ParseInt(f, 10, 32)
			if err != nil {
				return fmt.Errorf("%w: -tokens: %q is not a token id", errUsage, f)
			}
			ids = append(ids, int32(v))
		}
	} else {
		if ids, err = m.Tokenizer.Encode(*text, tokenizer.EncodeOptions{ParseSpecial: true}); err != nil {
			return err
		}
		if bos, ok := m.Tokenizer.BOS(); ok && m.AddsBOS() {
			ids = append([]int32{bos}, ids...)
		}
	}
	if len(ids) == 0 {
		return fmt.Errorf("%w: no tokens to evaluate", errUsage)
	}
	seq, err := m.NewSequence()
	if err != nil {
		return err
	}
	defer seq.Free()

	var out *bufio.Writer
	if *logitsOut != "" {
		f, err := os.Create(*logitsOut)
		if err != nil {
			return err
		}
		defer f.Close()
		out = bufio.NewWriter(f)
	}
	chunk := m.MaxBatchTokens()
	var sumLogProb float64
	scored := 0
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	fmt.Fprintln(w, "position\ttoken\tlogprob\tpiece")
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		res, err := m.Step(ctx, []llama.Request{{Seq: seq, Tokens: part, AllLogits: true}})
		if err != nil {
			return err
		}
		for j, logits := range res[0].Logits {
			pos := start + j
			if out != nil {
				if _, err := out.Write(tensor.F32Bytes(logits)); err != nil {
					return err
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
	if out != nil {
		if err := out.Flush(); err != nil {
			return err
		}
	}
	if scored > 0 {
		fmt.Fprintf(w, "tokens scored: %d, mean log-probability %.6f, perplexity %.4f\n",
			scored, sumLogProb/float64(scored), math.Exp(-sumLogProb/float64(scored)))
	}
	return nil
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
