package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/kiln-gpu/kiln/models/builtin"
	"github.com/kiln-gpu/kiln/models/gguf"
	"github.com/kiln-gpu/kiln/models/llama"
	"github.com/kiln-gpu/kiln/models/sample"
	"github.com/kiln-gpu/kiln/models/tokenizer"
	"github.com/kiln-gpu/kiln/runtime/backend"
)

// runGenerate is `kiln generate [-model FILE] [-prompt TEXT] [-n N] [-temp T]
// [-top-k K] [-top-p P] [-seed S] [-device D] [-tp N]`: the generated text on
// stdout as it comes (the prompt is not repeated, BOS is not printed), a
// loading bar and the statistics on stderr.
//
// It runs its own prefill/decode loop over llama.Model.Step rather than
// llama.Model.Generate so that it can time prompt processing and decoding
// separately, and it decodes text with a tokenizer.Decoder that has seen the
// prompt (so a continuation keeps its leading space).
func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("generate", stderr, "[-model FILE] [-prompt TEXT] [-n N] [-temp T] [-top-k K] [-top-p P] [-min-p P] [-repeat-penalty R] [-seed S] [-device auto|cpu|cuda:N] [-tp N] [-ctx N]")
	modelPath := fs.String("model", "", "GGUF model `file` (default: the built-in model, "+builtin.Name+")")
	prompt := fs.String("prompt", "", "prompt `text` (default: none; generation starts after BOS)")
	n := fs.Int("n", 128, "generate at most `N` tokens; -1: until an end-of-text token or a full context")
	temp := fs.Float64("temp", 0.8, "sampling temperature; 0 is greedy (argmax)")
	topK := fs.Int("top-k", 40, "keep the `K` most likely tokens (0: off)")
	topP := fs.Float64("top-p", 0.95, "keep the most likely tokens up to probability `P` (1: off)")
	minP := fs.Float64("min-p", 0.05, "drop tokens below `P` times the most likely token's probability (0: off)")
	repeat := fs.Float64("repeat-penalty", 1.0, "repetition penalty over the last 64 tokens (1: off)")
	seed := fs.Int64("seed", -1, "random `seed` (-1: a new one each run, printed with the statistics)")
	device := fs.String("device", "auto", "`device`: auto, cpu, cuda or cuda:N")
	tp := fs.Int("tp", 1, "tensor-parallel degree: the number of devices (`N`)")
	ctxLen := fs.Int("ctx", 0, "context length in `tokens` (0: the model's, at most 4096)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *n == 0 || *n < -1 {
		return fmt.Errorf("%w: -n %d: expected a number of tokens ≥ 1, or -1 for no limit", errUsage, *n)
	}
	if *tp < 1 {
		return fmt.Errorf("%w: -tp %d: expected a number of devices ≥ 1", errUsage, *tp)
	}
	if *ctxLen < 0 {
		return fmt.Errorf("%w: -ctx %d is negative", errUsage, *ctxLen)
	}
	s := *seed
	if s < 0 {
		s = rand.Int64N(1 << 62)
	}
	sampler, err := sample.New(sample.Options{
		Temperature: float32(*temp), TopK: *topK, TopP: float32(*topP), MinP: float32(*minP),
		RepeatPenalty: float32(*repeat), PenaltyLastN: sample.DefaultPenaltyLastN, Seed: uint64(s),
	})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}

	devs, err := openGroup(ctx, *device, *tp)
	if err != nil {
		return err
	}
	defer func() {
		for _, d := range devs {
			d.Close()
		}
	}()
	dev := devs[0]
	group := make([]backend.Backend, len(devs))
	for i, d := range devs {
		group[i] = d
	}
	progress := newProgress(stderr)
	m, name, closeModel, err := loadModel(ctx, group, *modelPath, llama.Options{MaxSequences: 1, ContextLen: *ctxLen, Progress: progress.update})
	progress.done()
	if err != nil {
		return err
	}
	defer closeModel()
	seq, err := m.NewSequence()
	if err != nil {
		return err
	}
	defer seq.Free()

	ids, err := promptTokens(m, *prompt)
	if err != nil {
		return err
	}
	contextLen := m.ContextLen()
	if len(ids) > contextLen {
		return fmt.Errorf("%w: the prompt has %d tokens, more than the context length %d (-ctx)", errUsage, len(ids), contextLen)
	}
	dec := m.Tokenizer.NewDecoder()
	for _, id := range ids {
		dec.Next(id) // the prompt's text is not printed, but sets the decoder's state
	}

	// Prompt processing, in chunks of at most MaxBatchTokens.
	start := time.Now()
	var logits []float32
	for i := 0; i < len(ids); i += m.MaxBatchTokens() {
		chunk := ids[i:min(i+m.MaxBatchTokens(), len(ids))]
		res, err := m.Step(ctx, []llama.Request{{Seq: seq, Tokens: chunk}})
		if err != nil {
			return fmt.Errorf("prompt of %d tokens: %w", len(ids), err)
		}
		logits = res[0].Logits[0]
	}
	promptTime := time.Since(start)

	// Decoding: sample, print, then feed the token back for the next logits
	// (not after the last one).
	decodeStart := time.Now()
	generated, decodeSteps := 0, 0
	stop := "-n reached"
	lastText := ""
	for {
		id, err := sampler.Sample(logits, seq.Tokens())
		if err != nil {
			return err
		}
		if m.Tokenizer.IsEndOfGeneration(id) {
			stop = fmt.Sprintf("end-of-text token %d", id)
			break
		}
		generated++
		if text := dec.Next(id); text != "" {
			lastText = text
			// Each token's text is written as it comes (os.Stdout is unbuffered).
			if _, err := io.WriteString(stdout, text); err != nil {
				return err
			}
		}
		if generated == *n {
			break
		}
		if ctx.Err() != nil {
			stop = "interrupted"
			break
		}
		if seq.Len() >= contextLen {
			stop = fmt.Sprintf("the context of %d tokens is full", contextLen)
			break
		}
		res, err := m.Step(ctx, []llama.Request{{Seq: seq, Tokens: []int32{id}}})
		if err != nil {
			return err
		}
		decodeSteps++
		logits = res[0].Logits[0]
	}
	if text := dec.Flush(); text != "" {
		lastText = text
		if _, err := io.WriteString(stdout, text); err != nil {
			return err
		}
	}
	decodeTime := time.Since(decodeStart)

	if !strings.HasSuffix(lastText, "\n") {
		fmt.Fprintln(stderr) // end the generated line on a terminal
	}
	where := dev.Name() + " (" + dev.Description() + ")"
	if len(devs) > 1 {
		names := make([]string, len(devs))
		for i, d := range devs {
			names[i] = d.Name()
		}
		where = fmt.Sprintf("%d devices, tensor parallel (%s); %s", len(devs), strings.Join(names, ", "), dev.Description())
	}
	if *device == "auto" {
		where += "; " + dev.Reason()
	}
	fmt.Fprintf(stderr, "kiln: %s on %s\n", name, where)
	fmt.Fprintf(stderr, "kiln: prompt %d tokens in %.3f s (%s); generated %d tokens, %d decode steps in %.3f s (%s); stopped: %s; seed %d\n",
		len(ids), promptTime.Seconds(), rate(len(ids), promptTime), generated, decodeSteps, decodeTime.Seconds(), rate(decodeSteps, decodeTime), stop, s)
	return ctx.Err()
}

// promptTokens is the prompt's token ids, after BOS when the model wants
// one. Special tokens written in the prompt are parsed as such.
func promptTokens(m *llama.Model, prompt string) ([]int32, error) {
	ids, err := m.Tokenizer.Encode(prompt, tokenizer.EncodeOptions{ParseSpecial: true})
	if err != nil {
		return nil, fmt.Errorf("tokenizing the prompt: %w", err)
	}
	if bos, ok := m.Tokenizer.BOS(); ok && m.AddsBOS() {
		ids = append([]int32{bos}, ids...)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: the prompt is empty and the model has no BOS token to start from; give -prompt", errUsage)
	}
	return ids, nil
}

// rate formats tokens per second, or "- tok/s" when there is nothing to divide.
func rate(tokens int, d time.Duration) string {
	if tokens <= 0 || d <= 0 {
		return "- tok/s"
	}
	return fmt.Sprintf("%.1f tok/s", float64(tokens)/d.Seconds())
}

// loadModel loads the GGUF file at path, or the built-in model when path is
// empty, onto dev. It returns the model, a name to show, and a function that
// closes the model and the file.
func loadModel(ctx context.Context, devs []backend.Backend, path string, opts llama.Options) (*llama.Model, string, func() error, error) {
	var f *gguf.File
	var err error
	name := path
	if path == "" {
		// builtin.Open parses an aligned copy of the embedded bytes: the CPU
		// backend uses weights in place and needs aligned floats.
		f, err = builtin.Open()
		name = builtin.Name + " (built in)"
	} else {
		f, err = gguf.Open(path)
	}
	if err != nil {
		return nil, "", nil, err
	}
	m, err := llama.LoadFileParallel(ctx, devs, f, opts)
	if err != nil {
		return nil, "", nil, errors.Join(err, f.Close())
	}
	closeAll := func() error { return errors.Join(m.Close(), f.Close()) }
	return m, name, closeAll, nil
}

// openGroup opens the device spec names (auto, cpu, cuda, cuda:N) and, for
// tensor parallelism over n devices, the n−1 that follow it: more CPU
// backends (the CPU standing for n devices), or the next CUDA ordinals.
func openGroup(ctx context.Context, spec string, n int) ([]*backend.Device, error) {
	first, err := backend.Open(ctx, spec, backend.Options{})
	if err != nil {
		return nil, err
	}
	devs := []*backend.Device{first}
	closeAll := func() {
		for _, d := range devs {
			d.Close()
		}
	}
	ordinal := 0
	isCUDA := strings.HasPrefix(first.Name(), "cuda:")
	if isCUDA {
		if _, err := fmt.Sscanf(first.Name(), "cuda:%d", &ordinal); err != nil {
			closeAll()
			return nil, fmt.Errorf("device name %q: %w", first.Name(), err)
		}
	}
	for i := 1; i < n; i++ {
		next := "cpu"
		if isCUDA {
			next = fmt.Sprintf("cuda:%d", ordinal+i)
		}
		d, err := backend.Open(ctx, next, backend.Options{})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("-tp %d: device %d of the group (%s): %w", n, i, next, err)
		}
		devs = append(devs, d)
	}
	return devs, nil
}

// progress draws a loading bar on stderr.
type progress struct {
	w           io.Writer
	interactive bool // w is a terminal: redraw the bar in place
	lastPct     int
	drawn       bool
	started     time.Time
	lastDraw    time.Time
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, interactive: isTerminal(w), lastPct: -1, started: time.Now()}
}

// isTerminal reports whether w is a character device (a terminal), where
// carriage returns redraw a line; in a log file they would pile up.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// update is llama.Options.Progress: on a terminal it redraws the bar at
// most every 100 ms (and at 100%); elsewhere it draws only the full bar.
func (p *progress) update(done, total int64) {
	if total <= 0 {
		return
	}
	pct := int(done * 100 / total)
	if pct == p.lastPct || (pct != 100 && (!p.interactive || time.Since(p.lastDraw) < 100*time.Millisecond)) {
		return
	}
	p.lastPct, p.drawn, p.lastDraw = pct, true, time.Now()
	const width = 30
	bar := strings.Repeat("=", pct*width/100) + strings.Repeat(" ", width-pct*width/100)
	fmt.Fprintf(p.w, "\rloading [%s] %3d%% %.1f/%.1f MiB", bar, pct, float64(done)/(1<<20), float64(total)/(1<<20))
}

// done ends the bar's line with the loading time.
func (p *progress) done() {
	if p.drawn {
		fmt.Fprintf(p.w, " in %.2f s\n", time.Since(p.started).Seconds())
	}
}
