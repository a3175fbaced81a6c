package sample

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
)

func mustNew(t testing.TB, o Options) *Sampler {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// logitsOf returns the natural logs of probabilities (a softmax gives them
// back).
func logitsOf(probs ...float64) []float32 {
	out := make([]float32, len(probs))
	for i, p := range probs {
		out[i] = float32(math.Log(p))
	}
	return out
}

// frequencies draws n tokens and returns how often each came up.
func frequencies(t *testing.T, s *Sampler, logits []float32, n int) []float64 {
	t.Helper()
	counts := make([]float64, len(logits))
	for range n {
		tok, err := s.Sample(logits, nil)
		if err != nil {
			t.Fatal(err)
		}
		counts[tok]++
	}
	for i := range counts {
		counts[i] /= float64(n)
	}
	return counts
}

// checkFrequencies compares observed frequencies with probabilities, within
// 5 binomial standard deviations (a false alarm about once in 1.7 million
// per token; the seeds are fixed, so a pass is reproducible), and exactly
// zero where the probability is zero.
func checkFrequencies(t *testing.T, got, want []float64, n int) {
	t.Helper()
	for i := range want {
		if want[i] == 0 {
			if got[i] != 0 {
				t.Errorf("token %d drawn with frequency %v, want never", i, got[i])
			}
			continue
		}
		sigma := math.Sqrt(want[i] * (1 - want[i]) / float64(n))
		if math.Abs(got[i]-want[i]) > 5*sigma {
			t.Errorf("token %d: frequency %.4f, want %.4f ± %.4f", i, got[i], want[i], 5*sigma)
		}
	}
}

func normalize(w ...float64) []float64 {
	sum := 0.0
	for _, x := range w {
		sum += x
	}
	out := make([]float64, len(w))
	for i, x := range w {
		out[i] = x / sum
	}
	return out
}

func TestValidate(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, c := range []struct {
		o   Options
		msg string
	}{
		{Options{Temperature: -0.1}, "Temperature -0.1"},
		{Options{Temperature: nan}, "Temperature NaN"},
		{Options{Temperature: inf}, "Temperature +Inf"},
		{Options{TopK: -1}, "TopK -1"},
		{Options{TopP: 1.5}, "TopP 1.5"},
		{Options{TopP: -0.1}, "TopP -0.1"},
		{Options{TopP: nan}, "TopP NaN"},
		{Options{MinP: 2}, "MinP 2"},
		{Options{RepeatPenalty: -1}, "RepeatPenalty -1"},
		{Options{FrequencyPenalty: nan}, "FrequencyPenalty NaN"},
		{Options{PresencePenalty: -inf}, "PresencePenalty -Inf"},
		{Options{PenaltyLastN: -2}, "PenaltyLastN -2"},
	} {
		_, err := New(c.o)
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("New(%+v): %v, want %q", c.o, err, c.msg)
		}
	}
	for _, o := range []Options{
		{},
		{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, RepeatPenalty: 1.1, FrequencyPenalty: -0.5, PresencePenalty: 0.5, PenaltyLastN: -1, Seed: 7},
		{TopP: 1, MinP: 1, RepeatPenalty: 0},
	} {
		if _, err := New(o); err != nil {
			t.Errorf("New(%+v): %v", o, err)
		}
	}
}

func TestGreedy(t *testing.T) {
	s := mustNew(t, Options{})
	for _, c := range []struct {
		logits []float32
		want   int32
	}{
		{[]float32{1, 3, 3, 2}, 1}, // tie: the smaller id
		{[]float32{-5, -1, -2}, 1},
		{[]float32{float32(math.Inf(-1)), -100}, 1},
		{[]float32{7}, 0},
		{[]float32{0, 0, 0, 0}, 0},
	} {
		got, err := s.Sample(c.logits, nil)
		if err != nil || got != c.want {
			t.Errorf("greedy %v: %d (%v), want %d", c.logits, got, err, c.want)
		}
	}
	// Filters cannot change the argmax.
	s = mustNew(t, Options{TopK: 2, TopP: 0.1, MinP: 0.9})
	if got, _ := s.Sample([]float32{0, 5, 1}, nil); got != 1 {
		t.Errorf("greedy with filters: %d", got)
	}
}

// Top-k 1 keeps only the argmax: any temperature, any seed gives greedy's
// token.
func TestTopK1IsGreedy(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for seed := range uint64(50) {
		s := mustNew(t, Options{Temperature: 1.5, TopK: 1, Seed: seed})
		g := mustNew(t, Options{})
		logits := make([]float32, 100)
		for i := range logits {
			logits[i] = float32(rng.NormFloat64())
		}
		logits[17] = logits[42] + 1 // a clear maximum somewhere
		logits[int(seed)] = logits[17]
		got, err := s.Sample(logits, nil)
		want, _ := g.Sample(logits, nil)
		if err != nil || got != want {
			t.Fatalf("seed %d: top-k 1 gives %d (%v), greedy %d", seed, got, err, want)
		}
	}
}

func TestTemperature(t *testing.T) {
	p := []float64{0.5, 0.3, 0.2}
	const n = 40000
	for _, c := range []struct {
		temp float32
		want []float64
	}{
		{1, p},
		{0.5, normalize(0.25, 0.09, 0.04)}, // p^2
		{2, normalize(math.Sqrt(0.5), math.Sqrt(0.3), math.Sqrt(0.2))},               // p^(1/2)
		{100, normalize(math.Pow(0.5, .01), math.Pow(0.3, .01), math.Pow(0.2, .01))}, // nearly uniform
	} {
		s := mustNew(t, Options{Temperature: c.temp, Seed: 11})
		checkFrequencies(t, frequencies(t, s, logitsOf(p...), n), c.want, n)
	}
}

func TestTopK(t *testing.T) {
	const n = 40000
	s := mustNew(t, Options{Temperature: 1, TopK: 2, Seed: 5})
	logits := []float32{0, 1, 2, 3, 4}
	e := math.E
	checkFrequencies(t, frequencies(t, s, logits, n), []float64{0, 0, 0, 1 / (1 + e), e / (1 + e)}, n)
	// Ties at the boundary go to the smaller ids.
	s = mustNew(t, Options{Temperature: 1, TopK: 2, Seed: 5})
	checkFrequencies(t, frequencies(t, s, []float32{1, 1, 1, 1}, n), []float64{0.5, 0.5, 0, 0}, n)
	// TopK beyond the vocabulary is no filter.
	s = mustNew(t, Options{Temperature: 1, TopK: 10, Seed: 5})
	checkFrequencies(t, frequencies(t, s, logitsOf(0.5, 0.3, 0.2), n), []float64{0.5, 0.3, 0.2}, n)
}

func TestTopP(t *testing.T) {
	const n = 40000
	p := logitsOf(0.5, 0.3, 0.15, 0.05)
	for _, c := range []struct {
		topP float32
		want []float64
	}{
		{0.45, []float64{1, 0, 0, 0}},
		{0.7, normalize(0.5, 0.3, 0, 0)}, // 0.5 < 0.7 <= 0.8
		{0.81, normalize(0.5, 0.3, 0.15, 0)},
		{0.99, []float64{0.5, 0.3, 0.15, 0.05}},
	} {
		s := mustNew(t, Options{Temperature: 1, TopP: c.topP, Seed: 9})
		checkFrequencies(t, frequencies(t, s, p, n), c.want, n)
	}
	// After top-k the probabilities are renormalized over the k left:
	// top-3 gives 0.5/0.95, 0.3/0.95, 0.15/0.95; top-p 0.8 then keeps two
	// (0.526 < 0.8 <= 0.842).
	s := mustNew(t, Options{Temperature: 1, TopK: 3, TopP: 0.8, Seed: 9})
	checkFrequencies(t, frequencies(t, s, p, n), normalize(0.5, 0.3, 0, 0), n)
}

func TestMinP(t *testing.T) {
	const n = 40000
	p := logitsOf(0.5, 0.3, 0.15, 0.05)
	for _, c := range []struct {
		minP float32
		want []float64
	}{
		{0.2, normalize(0.5, 0.3, 0.15, 0)}, // keep p >= 0.1
		{0.5, normalize(0.5, 0.3, 0, 0)},    // keep p >= 0.25
		{0.7, []float64{1, 0, 0, 0}},
		{0.05, []float64{0.5, 0.3, 0.15, 0.05}},
	} {
		s := mustNew(t, Options{Temperature: 1, MinP: c.minP, Seed: 13})
		checkFrequencies(t, frequencies(t, s, p, n), c.want, n)
	}
}

// Top-p and min-p see the distribution at temperature 1; the temperature
// reshapes only the draw among the survivors.
func TestFiltersBeforeTemperature(t *testing.T) {
	const n = 40000
	p := logitsOf(0.5, 0.3, 0.15, 0.05)
	// At temperature 10 the four would be nearly uniform and top-p 0.7
	// would keep three; at temperature 1 it keeps two.
	s := mustNew(t, Options{Temperature: 10, TopP: 0.7, Seed: 17})
	checkFrequencies(t, frequencies(t, s, p, n), normalize(math.Pow(0.5, 0.1), math.Pow(0.3, 0.1), 0, 0), n)
	s = mustNew(t, Options{Temperature: 10, MinP: 0.5, Seed: 17})
	checkFrequencies(t, frequencies(t, s, p, n), normalize(math.Pow(0.5, 0.1), math.Pow(0.3, 0.1), 0, 0), n)
}

func TestPenalties(t *testing.T) {
	logits := []float32{2, -2, 1, 0.5}
	orig := slices.Clone(logits)
	// Worked by hand (see applyPenalties' test for the exact values): with
	// history [2 0 0 1] and a window of 3, tokens 0 (twice) and 1 (once)
	// are penalized: 0 -> 2/2 - 2*0.5 - 0.25 = -0.25, 1 -> -2*2 - 0.5 - 0.25
	// = -4.75. Greedy then picks token 2 (logit 1), not token 0.
	s := mustNew(t, Options{RepeatPenalty: 2, FrequencyPenalty: 0.5, PresencePenalty: 0.25, PenaltyLastN: 3})
	got, err := s.Sample(logits, []int32{2, 0, 0, 1})
	if err != nil || got != 2 {
		t.Errorf("penalized greedy: %d (%v), want 2", got, err)
	}
	if !slices.Equal(logits, orig) {
		t.Errorf("Sample changed the caller's logits: %v", logits)
	}
	// A window of the whole history penalizes token 2 too (1 -> 0.5 - 0.75
	// = -0.25), leaving token 3 (0.5) the best.
	s = mustNew(t, Options{RepeatPenalty: 2, FrequencyPenalty: 0.5, PresencePenalty: 0.25, PenaltyLastN: -1})
	if got, _ := s.Sample(logits, []int32{2, 0, 0, 1}); got != 3 {
		t.Errorf("whole-history window: %d, want 3", got)
	}
	// A window of 64 (llama.cpp's default) looks at the last 64 tokens.
	hist := make([]int32, 100)
	for i := range hist {
		hist[i] = 1
	}
	hist[35] = 0 // 65th from the end: outside
	s = mustNew(t, Options{PresencePenalty: 10, PenaltyLastN: DefaultPenaltyLastN})
	if got, _ := s.Sample(logits, hist); got != 0 {
		t.Errorf("token 0 outside the window of 64 was penalized: got %d", got)
	}
	hist[36] = 0 // 64th from the end: inside
	if got, _ := s.Sample(logits, hist); got != 2 {
		t.Errorf("token 0 inside the window of 64: got %d, want 2", got)
	}
	// PenaltyLastN 0 turns the penalties off, as llama.cpp's penalty_last_n.
	off := mustNew(t, Options{PresencePenalty: 10})
	if got, err := off.Sample(logits, hist); err != nil || got != 0 {
		t.Errorf("PenaltyLastN 0: %d %v, want 0 (no penalty)", got, err)
	}
	// History tokens outside the vocabulary are refused, by position.
	if _, err := s.Sample(logits, []int32{0, 4}); err == nil || !strings.Contains(err.Error(), "history[1] is token 4, outside the vocabulary of 4") {
		t.Errorf("bad history: %v", err)
	}
	if _, err := s.Sample(logits, []int32{-1, 0}); err == nil || !strings.Contains(err.Error(), "history[0] is token -1") {
		t.Errorf("bad history: %v", err)
	}
	// With penalties off, history is not even looked at.
	s = mustNew(t, Options{RepeatPenalty: 1})
	if got, err := s.Sample(logits, []int32{99}); err != nil || got != 0 {
		t.Errorf("penalties off: %d %v", got, err)
	}
}

// The exact penalized logits, against values worked by hand (all exact in
// float32).
func TestApplyPenaltiesExact(t *testing.T) {
	s := mustNew(t, Options{RepeatPenalty: 2, FrequencyPenalty: 0.5, PresencePenalty: 0.25, PenaltyLastN: 3})
	logits := []float32{2, -2, 1, 0.5, 0}
	cands := make([]candidate, len(logits))
	for i, l := range logits {
		cands[i] = candidate{int32(i), l}
	}
	s.counts = make([]int32, len(logits))
	if err := s.applyPenalties(cands, []int32{2, 0, 0, 1}); err != nil {
		t.Fatal(err)
	}
	want := []float32{-0.25, -4.75, 1, 0.5, 0}
	for i, c := range cands {
		if c.logit != want[i] || c.id != int32(i) {
			t.Errorf("token %d: %v, want %v", i, c.logit, want[i])
		}
	}
	for i, c := range s.counts {
		if c != 0 {
			t.Errorf("counts[%d] = %d left over", i, c)
		}
	}
	// A zero logit counts as non-positive: multiplied (stays 0), then the
	// presence penalty.
	s = mustNew(t, Options{RepeatPenalty: 3, PresencePenalty: 1, PenaltyLastN: -1})
	s.counts = make([]int32, len(logits))
	for i, l := range logits {
		cands[i] = candidate{int32(i), l}
	}
	if err := s.applyPenalties(cands, []int32{4}); err != nil || cands[4].logit != -1 {
		t.Errorf("zero logit: %v %v", cands[4].logit, err)
	}
}

func TestSampleErrors(t *testing.T) {
	s := mustNew(t, Options{Temperature: 1})
	ninf := float32(math.Inf(-1))
	for _, c := range []struct {
		logits []float32
		msg    string
	}{
		{nil, "empty logits"},
		{[]float32{0, float32(math.NaN())}, "logit 1 is NaN"},
		{[]float32{float32(math.Inf(1)), 0}, "logit 0 is +Inf"},
		{[]float32{ninf, ninf}, "every logit is -Inf"},
	} {
		if _, err := s.Sample(c.logits, nil); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("Sample(%v): %v, want %q", c.logits, err, c.msg)
		}
	}
	g := mustNew(t, Options{})
	if _, err := g.Sample([]float32{ninf}, nil); err == nil || !strings.Contains(err.Error(), "every logit is -Inf") {
		t.Errorf("greedy all -Inf: %v", err)
	}
	// Penalties that push a finite logit to +Inf are an error, not a panic
	// or a draw from NaN weights (with and without min-p).
	for _, o := range []Options{
		{Temperature: 1, MinP: 0.1, FrequencyPenalty: -3e38, PenaltyLastN: -1},
		{Temperature: 1, FrequencyPenalty: -3e38, PenaltyLastN: -1},
		{FrequencyPenalty: -3e38, PenaltyLastN: -1},
	} {
		p := mustNew(t, o)
		if _, err := p.Sample([]float32{1, 0}, []int32{0, 0}); err == nil || !strings.Contains(err.Error(), "penalties made token 0's logit +Inf") {
			t.Errorf("%+v: %v, want an error about the penalties", o, err)
		}
	}
	// -Inf tokens are never drawn.
	got := frequencies(t, s, []float32{ninf, 0, ninf, 0}, 2000)
	if got[0] != 0 || got[2] != 0 {
		t.Errorf("-Inf tokens drawn: %v", got)
	}
}

// The same seed and logits give the same tokens; another seed, others. The
// draw is checked against a model written here from the documented rule:
// one PCG(Seed) number u per draw, the first token whose cumulative weight
// exceeds u times the total.
func TestReproducible(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	steps := make([][]float32, 300)
	for i := range steps {
		steps[i] = make([]float32, 50)
		for j := range steps[i] {
			steps[i][j] = float32(rng.NormFloat64() * 2)
		}
	}
	run := func(seed uint64) []int32 {
		s := mustNew(t, Options{Temperature: 0.9, Seed: seed})
		out := make([]int32, len(steps))
		for i, l := range steps {
			tok, err := s.Sample(l, nil)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = tok
		}
		return out
	}
	a, b, c := run(42), run(42), run(43)
	if !slices.Equal(a, b) {
		t.Error("the same seed gave different tokens")
	}
	if slices.Equal(a, c) {
		t.Error("seeds 42 and 43 gave the same 300 tokens")
	}

	// The model.
	pcg := rand.NewPCG(42, pcgStream)
	checked := 0
	for i, l := range steps {
		u := float64(pcg.Uint64()>>11) / (1 << 53)
		m := slices.Max(l)
		w := make([]float64, len(l))
		total := 0.0
		for j, x := range l {
			w[j] = math.Exp(float64(x-m) / 0.9)
			total += w[j]
		}
		target, cum, want := u*total, 0.0, int32(-1)
		nearBoundary := false
		for j := range w {
			if math.Abs(cum+w[j]-target) < 1e-9*total {
				nearBoundary = true
			}
			cum += w[j]
			if cum > target && want < 0 {
				want = int32(j)
			}
		}
		if nearBoundary {
			continue
		}
		checked++
		if a[i] != want {
			t.Fatalf("step %d: sampled %d, the model says %d", i, a[i], want)
		}
	}
	if checked < 250 {
		t.Errorf("only %d of %d draws were away from a boundary", checked, len(steps))
	}
}

// topP, on an unsorted large vocabulary (the threshold path), keeps exactly
// the nucleus computed by brute force: sort everything, add probabilities.
func TestTopPLargeVocabulary(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	const vocab = 50000
	for _, p := range []float64{0.1, 0.5, 0.9, 0.99, 0.9999} {
		logits := make([]float32, vocab)
		for i := range logits {
			logits[i] = float32(rng.NormFloat64() * 3)
		}
		// Brute force.
		idx := make([]int, vocab)
		for i := range idx {
			idx[i] = i
		}
		sort.Slice(idx, func(a, b int) bool {
			if logits[idx[a]] != logits[idx[b]] {
				return logits[idx[a]] > logits[idx[b]]
			}
			return idx[a] < idx[b]
		})
		m := float64(logits[idx[0]])
		total := 0.0
		for _, x := range logits {
			total += math.Exp(float64(x) - m)
		}
		cum, wantN := 0.0, 0
		for k, i := range idx {
			cum += math.Exp(float64(logits[i]) - m)
			if cum >= p*total {
				wantN = k + 1
				break
			}
		}
		s := mustNew(t, Options{Temperature: 1, TopP: float32(p)})
		s.weights = make([]float64, vocab)
		cands := make([]candidate, vocab)
		for i, l := range logits {
			cands[i] = candidate{int32(i), l}
		}
		got := s.topP(cands, float32(m), float64(float32(p)), false)
		// float32(p) differs from p by ~1e-8 relative; allow the count to
		// differ by one at the boundary.
		if len(got) < wantN-1 || len(got) > wantN+1 {
			t.Errorf("top-p %v: kept %d, brute force %d", p, len(got), wantN)
		}
		for k := range min(len(got), wantN) {
			if got[k].id != int32(idx[k]) {
				t.Fatalf("top-p %v: candidate %d is token %d, brute force %d", p, k, got[k].id, idx[k])
			}
		}
	}
}

func TestExpDet(t *testing.T) {
	if expDet(0) != 1 || expDet(math.Inf(-1)) != 0 || expDet(-800) != 0 {
		t.Errorf("expDet(0)=%v expDet(-Inf)=%v expDet(-800)=%v", expDet(0), expDet(math.Inf(-1)), expDet(-800))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	worst := 0.0
	for range 200000 {
		x := -rng.Float64() * 700
		if rng.IntN(2) == 0 {
			x = -rng.Float64() * 2
		}
		got, want := expDet(x), math.Exp(x)
		if rel := math.Abs(got-want) / want; rel > worst {
			worst = rel
		}
	}
	if worst > 1e-15 {
		t.Errorf("expDet differs from math.Exp by %g relative", worst)
	}
}

func TestNoAllocationsInSteadyState(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	logits := make([]float32, 32000)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 3)
	}
	history := []int32{5, 6, 7, 5, 100, 31999}
	for _, o := range []Options{
		{},
		{Temperature: 0.8},
		{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, RepeatPenalty: 1.1, FrequencyPenalty: 0.1, PresencePenalty: 0.1},
		{Temperature: 0.8, TopP: 0.9, MinP: 0.01, RepeatPenalty: 1.3},
	} {
		s := mustNew(t, o)
		if _, err := s.Sample(logits, history); err != nil {
			t.Fatal(err)
		}
		if a := testing.AllocsPerRun(20, func() { s.Sample(logits, history) }); a != 0 {
			t.Errorf("%+v: %v allocations per Sample", o, a)
		}
	}
	// A different vocabulary size still works (the buffers grow).
	s := mustNew(t, Options{Temperature: 1, TopK: 3})
	s.Sample(logits[:10], nil)
	if tok, err := s.Sample(logits, nil); err != nil || tok < 0 || int(tok) >= len(logits) {
		t.Errorf("after growing: %d %v", tok, err)
	}
}

func BenchmarkSample(b *testing.B) {
	rng := rand.New(rand.NewPCG(8, 8))
	logits := make([]float32, 128256)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 3)
	}
	for _, c := range []struct {
		name string
		o    Options
	}{
		{"greedy", Options{}},
		{"temp", Options{Temperature: 0.8}},
		{"topk40-topp0.95", Options{Temperature: 0.8, TopK: 40, TopP: 0.95}},
		{"topp0.9", Options{Temperature: 0.8, TopP: 0.9}},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := mustNew(b, c.o)
			for b.Loop() {
				s.Sample(logits, nil)
			}
		})
	}
}
