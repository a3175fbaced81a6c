//go:build kilnwip

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/kiln-gpu/kiln/models/builtin"
	"github.com/kiln-gpu/kiln/models/gguf"
	"github.com/kiln-gpu/kiln/models/llama"
	"github.com/kiln-gpu/kiln/models/sample"
	"github.com/kiln-gpu/kiln/runtime/backend"
)

func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("generate", stderr, "[-model FILE] [-prompt TEXT] [-n N] [-temp T] [-top-k K] [-top-p P] [-seed S] [-device D] [-tp N]")
	modelPath := fs.String("model", "", "GGUF model file (default: the built-in model, "+builtin.Name+")")
	prompt := fs.String("prompt", "", "prompt text (default: none, generate from the start of a text)")
	n := fs.Int("n", 128, "tokens to generate at most")
	temp := fs.Float64("temp", 0.8, "sampling temperature; 0 is greedy")
	topK := fs.Int("top-k", 40, "keep the K most likely tokens (0: off)")
	topP := fs.Float64("top-p", 0.95, "keep the most likely tokens up to probability P (1: off)")
	minP := fs.Float64("min-p", 0.05, "drop tokens below P times the most likely one's probability (0: off)")
	repeat := fs.Float64("repeat-penalty", 1.0, "repetition penalty (1: off)")
	seed := fs.Int64("seed", -1, "random seed (-1: a new one each run, printed with the statistics)")
	device := fs.String("device", "auto", "device: auto, cpu, cuda or cuda:N")
	tp := fs.Int("tp", 1, "tensor-parallel degree (devices)")
	ctxLen := fs.Int("ctx", 0, "context length in tokens (0: the model's, at most 4096)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *n < 0 {
		return fmt.Errorf("%w: -n %d is negative", errUsage, *n)
	}
	if *tp != 1 {
		return fmt.Errorf("%w: -tp %d: tensor parallelism is not implemented yet (only -tp 1)", errUsage, *tp)
	}
	s := *seed
	if s < 0 {
		s = rand.Int64N(1 << 62)
	}
	dev, err := backend.Open(ctx, *device, backend.Options{})
	if err != nil {
		return err
	}
	defer dev.Close()

	progress := newProgress(stderr)
	m, name, err := loadModel(ctx, dev, *modelPath, llama.Options{ContextLen: *ctxLen, Progress: progress.update})
	progress.done()
	if err != nil {
		return err
	}
	defer m.Close()
	seq, err := m.NewSequence()
	if err != nil {
		return err
	}
	defer seq.Free()

	opts := llama.GenerateOptions{
		MaxTokens: *n,
		Sample: sample.Options{
			Temperature: float32(*temp), TopK: *topK, TopP: float32(*topP), MinP: float32(*minP),
			RepeatPenalty: float32(*repeat), Seed: uint64(s),
		},
	}
	start := time.Now()
	var firstToken time.Duration
	promptTokens := -1
	generated := 0
	for tok, err := range m.Generate(ctx, seq, *prompt, opts) {
		if err != nil {
			return err
		}
		if promptTokens < 0 {
			firstToken = time.Since(start)
			promptTokens = seq.Len() - 1
		}
		generated++
		// os.Stdout is unbuffered: each token's text appears as it comes.
		if _, err := io.WriteString(stdout, tok.Text); err != nil {
			return err
		}
	}
	total := time.Since(start)
	if promptTokens < 0 {
		promptTokens = seq.Len()
	}
	fmt.Fprintf(stderr, "\nkiln: %s on %s (%s)\n", name, dev.Name(), dev.Description())
	fmt.Fprintf(stderr, "kiln: prompt %d tokens and the first token in %.3f s; generated %d tokens in %.3f s (%s); seed %d\n",
		promptTokens, firstToken.Seconds(), generated, total.Seconds(), rate(generated-1, total-firstToken), s)
	return nil
}

// rate formats tokens per second, or "-" when there is nothing to divide.
func rate(tokens int, d time.Duration) string {
	if tokens <= 0 || d <= 0 {
		return "- tok/s"
	}
	return fmt.Sprintf("%.1f tok/s", float64(tokens)/d.Seconds())
}

// loadModel loads path, or the built-in model when path is empty, and
// returns the model and a name to show.
func loadModel(ctx context.Context, dev backend.Backend, path string, opts llama.Options) (*llama.Model, string, error) {
	if path != "" {
		m, err := llama.Load(ctx, dev, path, opts)
		return m, path, err
	}
	// The embedded bytes are copied into memory the allocator aligned, as
	// the CPU backend uses weights in place and needs aligned floats.
	raw := builtin.GGUF()
	data := make([]byte, len(raw))
	copy(data, raw)
	f, err := gguf.Parse(data, builtin.Name)
	if err != nil {
		return nil, "", fmt.Errorf("the built-in model: %w", err)
	}
	m, err := llama.LoadFile(ctx, dev, f, opts)
	if err != nil {
		return nil, "", errors.Join(err, f.Close())
	}
	return m, builtin.Name + " (built in)", nil
}

// progress draws a loading bar on stderr.
type progress struct {
	w        io.Writer
	lastPct  int
	drawn    bool
	started  time.Time
	lastDraw time.Time
}

func newProgress(w io.Writer) *progress { return &progress{w: w, lastPct: -1, started: time.Now()} }

func (p *progress) update(done, total int64) {
	if total <= 0 {
		return
	}
	pct := int(done * 100 / total)
	if pct == p.lastPct || (time.Since(p.lastDraw) < 100*time.Millisecond && pct != 100) {
		return
	}
	p.lastPct, p.drawn, p.lastDraw = pct, true, time.Now()
	const width = 30
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if i < pct*width/100 {
			bar[i] = '='
		}
	}
	fmt.Fprintf(p.w, "\rloading [%s] %3d%% %.1f/%.1f MiB", bar, pct, float64(done)/(1<<20), float64(total)/(1<<20))
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprintf(p.w, " in %.2f s\n", time.Since(p.started).Seconds())
	}
}
