// Package bench holds kiln's benchmark cases and the harness that times them
// on a backend, used by `kiln bench`.
//
// A case allocates its inputs on the backend once (several independent input
// sets when one set would fit in the GPU's L2 cache, so that iterations read
// memory, not cache), then the harness times it: a warm-up, then batches of
// iterations each ended by Sync, timed on the host clock. Since the ops are
// queued asynchronously and each batch lasts tens of milliseconds, the
// per-iteration time of a batch is the device time plus at most the last
// launch's latency. The reported time is the median over batches. A case
// whose first iteration already takes longer than Options.MinTime (a large
// matrix product on the CPU) is timed on one more iteration instead, and
// reports Iterations 1.
//
// Speed is compared with peers (PyTorch on the same shapes,
// scripts/peers/ops_torch.py) and with the bandwidth probes measured in the
// same run; nothing here asserts a speed. Model cases (llama.go) also report
// tokens per second, and those bound by memory reads (Case.ReadBound) their
// GB/s as a fraction of the read probe's.
package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Case is one benchmark.
type Case struct {
	// Name is "<group>/<what>/<dtype>/<shape>", e.g. "op/rmsnorm/F16/4096x4096".
	Name string
	// Bytes is the least memory traffic one iteration needs: every input
	// read once and every output written once.
	Bytes int64
	// FLOPs is the arithmetic of one iteration (0 when not meaningful).
	FLOPs int64
	// MaxSets, when not 0, overrides Options.MaxSets for this case (a
	// gather that reads a small part of a shared table needs many sets).
	MaxSets int
	// Tokens, when not 0, is how many tokens one iteration processes (a
	// model benchmark): the result then has TokensPerSecond.
	Tokens int64
	// ReadBound says Bytes is the memory traffic that bounds the case (a
	// decode step reads every weight once): its result then has
	// OfReadProbe, its GB/s as a fraction of probe/read's in the same run.
	ReadBound bool
	// Prepare allocates one input set on env.Dev and returns the function
	// that runs one iteration over it. The harness calls Prepare once per
	// input set and closes each set's Runner at the end. An error made by
	// Skip marks the case as not run on this device (Result.Skipped) rather
	// than failed.
	Prepare func(env *Env) (*Runner, error)
}

// Skip returns the error a Prepare returns for a case that does not run on
// this device (a model too large or too slow for the CPU), with the reason.
func Skip(format string, args ...any) error {
	return &skipError{reason: fmt.Sprintf(format, args...)}
}

type skipError struct{ reason string }

func (e *skipError) Error() string { return "skipped: " + e.reason }

// Runner runs one iteration of a case over one input set.
type Runner struct {
	Run   func() error
	Close func() error
}

// Result is one timed case.
type Result struct {
	Name       string  `json:"name"`
	Iterations int     `json:"iterations"`
	Seconds    float64 `json:"seconds"` // median time per iteration
	Bytes      int64   `json:"bytes"`
	FLOPs      int64   `json:"flops"`
	GBps       float64 `json:"gbps"`
	TFLOPs     float64 `json:"tflops"`
	Sets       int     `json:"sets"` // input sets rotated over
	Error      string  `json:"error,omitempty"`
	// Skipped is why the case did not run on this device (see Skip).
	Skipped string `json:"skipped,omitempty"`
	// TokensPerSecond is Case.Tokens over Seconds (model cases).
	TokensPerSecond float64 `json:"tokens_per_second,omitempty"`
	// OfReadProbe is GBps over the GB/s of probe/read in the same run, for
	// cases with Case.ReadBound when the probe ran first (see Cases' order).
	OfReadProbe float64 `json:"of_read_probe,omitempty"`
}

// Options control Run.
type Options struct {
	// MinTime is the least total timed duration per case; 0 means 1 s.
	MinTime time.Duration
	// FootprintBytes is the least memory the rotated input sets should span
	// (beyond any cache); 0 means 256 MiB. At most MaxSets sets are made.
	FootprintBytes int64
	MaxSets        int // 0 means 8
	// Progress, when not nil, is told about each case as it starts and ends.
	Progress func(msg string)
	// Seed seeds the inputs' random values.
	Seed uint64
}

var (
	registryMu sync.Mutex
	registry   []Case
)

// Register adds cases to the registry (each issue's package registers its own
// cases from an init function). Names must be unique.
func Register(cases ...Case) {
	registryMu.Lock()
	defer registryMu.Unlock()
	for _, c := range cases {
		for _, have := range registry {
			if have.Name == c.Name {
				panic("bench: case registered twice: " + c.Name) // a programming error at init time
			}
		}
		registry = append(registry, c)
	}
}

// Cases returns the registered cases whose names match filter (nil: all),
// sorted by name with the probes first.
func Cases(filter *regexp.Regexp) []Case {
	registryMu.Lock()
	all := slices.Clone(registry)
	registryMu.Unlock()
	var out []Case
	for _, c := range all {
		if filter == nil || filter.MatchString(c.Name) {
			out = append(out, c)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		pi, pj := isProbe(out[i].Name), isProbe(out[j].Name)
		if pi != pj {
			return pi
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func isProbe(name string) bool { return len(name) >= 6 && name[:6] == "probe/" }

// Run times cases on dev. A case that fails is reported in its Result's
// Error and the others still run; the returned error is only for a cancelled
// context.
func Run(ctx context.Context, dev backend.Backend, cases []Case, opts Options) ([]Result, error) {
	if opts.MinTime <= 0 {
		opts.MinTime = time.Second
	}
	if opts.FootprintBytes <= 0 {
		opts.FootprintBytes = 256 << 20
	}
	if opts.MaxSets <= 0 {
		opts.MaxSets = 8
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(string) {}
	}
	var results []Result
	readProbeGBps := 0.0 // of the first probe/read case run
	for i, c := range cases {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		progress(fmt.Sprintf("[%d/%d] %s", i+1, len(cases), c.Name))
		r := runCase(ctx, dev, c, opts)
		if r.Error == "" && r.Skipped == "" && r.Seconds > 0 {
			if c.Tokens > 0 {
				r.TokensPerSecond = float64(c.Tokens) / r.Seconds
			}
			if strings.HasPrefix(c.Name, "probe/read/") && readProbeGBps == 0 {
				readProbeGBps = r.GBps
			}
			if c.ReadBound && readProbeGBps > 0 {
				r.OfReadProbe = r.GBps / readProbeGBps
			}
		}
		if r.Error != "" {
			progress(fmt.Sprintf("      %s: error: %s", c.Name, r.Error))
		} else {
			progress(fmt.Sprintf("      %s: %s", c.Name, FormatResult(r)))
		}
		results = append(results, r)
	}
	return results, nil
}

// FormatResult is a one-line human summary of a result.
func FormatResult(r Result) string {
	if r.Skipped != "" {
		return "skipped: " + r.Skipped
	}
	s := fmt.Sprintf("%10.3f us", r.Seconds*1e6)
	if r.Bytes > 0 {
		s += fmt.Sprintf("  %8.1f GB/s", r.GBps)
	}
	if r.FLOPs > 0 {
		s += fmt.Sprintf("  %7.2f TFLOP/s", r.TFLOPs)
	}
	if r.TokensPerSecond > 0 {
		s += fmt.Sprintf("  %9.1f tok/s", r.TokensPerSecond)
	}
	if r.OfReadProbe > 0 {
		s += fmt.Sprintf("  %5.1f%% of read probe", 100*r.OfReadProbe)
	}
	return s
}

func runCase(ctx context.Context, dev backend.Backend, c Case, opts Options) (res Result) {
	res = Result{Name: c.Name, Bytes: c.Bytes, FLOPs: c.FLOPs}
	nSets := 1
	maxSets := opts.MaxSets
	if c.MaxSets > 0 {
		maxSets = c.MaxSets
	}
	if c.Bytes > 0 {
		nSets = int(min(int64(maxSets), (opts.FootprintBytes+c.Bytes-1)/c.Bytes))
		nSets = max(nSets, 1)
	}
	env := &Env{Dev: dev, rng: rand.New(rand.NewPCG(opts.Seed, uint64(len(c.Name))))}
	var runners []*Runner
	defer func() {
		for _, r := range runners {
			if r.Close != nil {
				if err := r.Close(); err != nil && res.Error == "" {
					res.Error = err.Error()
				}
			}
		}
		env.freeAll()
	}()
	for s := 0; s < nSets; s++ {
		r, err := c.Prepare(env)
		if err != nil {
			var skip *skipError
			if s == 0 && errors.As(err, &skip) {
				res.Skipped = skip.reason
				return res
			}
			if s == 0 {
				res.Error = err.Error()
				return res
			}
			break // fewer sets when memory is short; the first suffices to run
		}
		runners = append(runners, r)
	}
	res.Sets = len(runners)
	next := 0
	runOnce := func() error {
		err := runners[next].Run()
		next = (next + 1) % len(runners)
		return err
	}
	// timed runs n iterations and waits for them, returning the time per iteration.
	timed := func(n int) (float64, error) {
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := runOnce(); err != nil {
				return 0, err
			}
		}
		if err := dev.Sync(ctx); err != nil {
			return 0, err
		}
		return time.Since(start).Seconds() / float64(n), nil
	}
	// Warm-up: module loads, JIT, first-touch allocation. The first
	// iteration also tells how slow the case is: one that takes more than
	// MinTime (a 512-row product on the CPU) is timed on a single further
	// iteration instead of batches, so that a run over all cases ends.
	first, err := timed(1)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	if time.Duration(first*float64(time.Second)) > opts.MinTime {
		one, err := timed(1)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		res.Iterations, res.Seconds = 1, one
		res.GBps = float64(c.Bytes) / one / 1e9
		res.TFLOPs = float64(c.FLOPs) / one / 1e12
		return res
	}
	if _, err := timed(2*len(runners) - 1); err != nil {
		res.Error = err.Error()
		return res
	}
	// One timed iteration estimates how many fit in a batch.
	oneSeconds, err := timed(1)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	one := time.Duration(oneSeconds * float64(time.Second))
	const batches = 5
	perBatch := int(math.Ceil(float64(opts.MinTime/batches) / float64(max(one, time.Microsecond))))
	perBatch = max(1, min(perBatch, 100000))
	times := make([]float64, 0, batches)
	for b := 0; b < batches; b++ {
		t, err := timed(perBatch)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		times = append(times, t)
		res.Iterations += perBatch
	}
	sort.Float64s(times)
	res.Seconds = times[len(times)/2]
	if res.Seconds > 0 {
		res.GBps = float64(c.Bytes) / res.Seconds / 1e9
		res.TFLOPs = float64(c.FLOPs) / res.Seconds / 1e12
	}
	return res
}

// Env gives a case's Prepare the backend and helpers to make inputs.
type Env struct {
	Dev    backend.Backend
	rng    *rand.Rand
	owned  []tensor.Tensor
	shared map[string]tensor.Tensor
}

// Shared returns the tensor stored under key for this case run, making it
// with make on first use: inputs that all of a case's sets read (a large
// table) are made once.
func (e *Env) Shared(key string, make func() (tensor.Tensor, error)) (tensor.Tensor, error) {
	if t, ok := e.shared[key]; ok {
		return t, nil
	}
	t, err := make()
	if err != nil {
		return t, err
	}
	if e.shared == nil {
		e.shared = map[string]tensor.Tensor{}
	}
	e.shared[key] = t
	return t, nil
}

// Alloc allocates a tensor freed when the case ends.
func (e *Env) Alloc(dt tensor.DType, shape ...int) (tensor.Tensor, error) {
	t, err := e.Dev.Alloc(dt, shape...)
	if err != nil {
		return t, err
	}
	e.owned = append(e.owned, t)
	return t, nil
}

// patternBytes is the size of the random pattern big inputs repeat: random
// enough that no op sees structure, cheap enough to make 1 GiB tables quickly.
const patternBytes = 4 << 20

// Random allocates a tensor filled with random values: normal(0, 1) floats
// for float dtypes, ids in [0, idRange) for I32 (idRange must then be > 0),
// valid blocks with small scales for block-quantized dtypes. Tensors larger
// than 4 MiB repeat a 4 MiB random pattern.
func (e *Env) Random(dt tensor.DType, idRange int, shape ...int) (tensor.Tensor, error) {
	t, err := e.Alloc(dt, shape...)
	if err != nil {
		return t, err
	}
	size := t.SizeBytes()
	n := min(size, patternBytes)
	// Whole blocks (and whole elements) in the pattern.
	bb := int64(dt.BlockBytes())
	n = n / bb * bb
	pattern, err := e.randomBytes(dt, idRange, n)
	if err != nil {
		return t, err
	}
	data := pattern
	if size > n {
		data = make([]byte, size)
		for off := int64(0); off < size; off += n {
			copy(data[off:], pattern)
		}
	}
	return t, e.Dev.Upload(t, data)
}

func (e *Env) randomBytes(dt tensor.DType, idRange int, n int64) ([]byte, error) {
	switch {
	case dt.IsFloat():
		vals := make([]float32, n/int64(dt.BlockBytes()))
		for i := range vals {
			vals[i] = float32(e.rng.NormFloat64())
		}
		b, _ := tensor.EncodeFloats(dt, vals)
		return b, nil
	case dt == tensor.I32:
		if idRange <= 0 {
			return nil, fmt.Errorf("bench: I32 input needs an id range")
		}
		ids := make([]int32, n/4)
		for i := range ids {
			ids[i] = int32(e.rng.IntN(idRange))
		}
		return tensor.I32Bytes(ids), nil
	case dt.IsQuantized():
		return randomBlocks(e.rng, dt, n)
	}
	return nil, fmt.Errorf("bench: no random generator for %v", dt)
}

// randomBlocks fills n bytes of dt blocks with random quants and small,
// finite f16 scales (random bytes there could be Inf or NaN).
func randomBlocks(rng *rand.Rand, dt tensor.DType, n int64) ([]byte, error) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	var scaleOffsets []int // byte offsets of f16 scales within a block
	switch dt {
	case tensor.Q8_0, tensor.Q4_0:
		scaleOffsets = []int{0}
	case tensor.Q4_K:
		scaleOffsets = []int{0, 2}
	case tensor.Q6_K:
		scaleOffsets = []int{208}
	default:
		return nil, fmt.Errorf("bench: no random block generator for %v", dt)
	}
	bb := dt.BlockBytes()
	for blk := 0; blk+bb <= len(b); blk += bb {
		for _, off := range scaleOffsets {
			h := tensor.F32ToF16(float32(0.001 + 0.01*rng.Float64()))
			b[blk+off], b[blk+off+1] = byte(h), byte(h>>8)
		}
	}
	return b, nil
}

func (e *Env) freeAll() {
	for _, t := range e.owned {
		_ = e.Dev.Free(t)
	}
	e.owned = nil
}
