// Package sample picks the next token from a model's logits: greedy,
// temperature, top-k, top-p (nucleus), min-p, and repetition, frequency and
// presence penalties, seeded and reproducible.
//
// # Order of operations
//
// As llama.cpp's default sampler chain (penalties; top-k; top-p; min-p;
// temperature; draw), one step after the other on the surviving candidates:
//
//  1. Penalties, on the tokens that occur among the last PenaltyLastN tokens
//     of history, each once however often it occurs (c times): a logit l
//     becomes l*RepeatPenalty when l <= 0 and l/RepeatPenalty when l > 0,
//     then l - c*FrequencyPenalty - PresencePenalty (llama.cpp's
//     llama_sampler_penalties).
//  2. Top-k: keep the TopK highest logits.
//  3. Top-p: sort by logit; keep the shortest prefix whose probabilities
//     (softmax at temperature 1 over the candidates left) add up to at
//     least TopP.
//  4. Min-p: keep the tokens whose probability is at least MinP times the
//     largest one's (logit >= max + ln MinP).
//  5. Temperature: divide the logits by Temperature.
//  6. Draw one token from the softmax of what is left.
//
// Top-p and min-p thus see the distribution at temperature 1, as in
// llama.cpp: the temperature reshapes only the final draw. With Temperature
// 0 the sampler is greedy: it returns the highest logit after penalties
// (ties to the smallest token id) and draws no random number; top-k, top-p
// and min-p cannot change that choice.
//
// Ties between equal logits are broken by token id (smaller first) at every
// step, so the candidate set never depends on sort stability.
//
// # Reproducibility
//
// A Sampler draws from math/rand/v2's PCG generator seeded with Seed, one
// 64-bit number per non-greedy Sample call. The arithmetic that turns logits
// into a choice is written so that Go cannot fuse it into multiply-adds and
// uses its own exponential instead of math.Exp (whose assembly and Go
// versions may differ in the last bit), so the same seed and the same
// sequence of logits and histories give the same tokens on every machine.
package sample

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Options configure a Sampler. The zero value is greedy decoding with no
// penalties.
type Options struct {
	// Temperature divides the logits before the draw; 0 is greedy (argmax,
	// ties to the smallest id). Must be finite and >= 0.
	Temperature float32
	// TopK keeps the TopK most likely tokens; 0 is off. Must be >= 0.
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// adds up to at least TopP; 0 or 1 is off. Must be in [0, 1].
	TopP float32
	// MinP keeps the tokens at least MinP times as likely as the most
	// likely one; 0 is off. Must be in [0, 1].
	MinP float32
	// RepeatPenalty divides positive logits and multiplies negative ones
	// of tokens seen in the recent history; 0 or 1 is off. Must be finite
	// and >= 0.
	RepeatPenalty float32
	// FrequencyPenalty is subtracted from a recent token's logit once per
	// occurrence; 0 is off. Must be finite (negative values encourage
	// repetition).
	FrequencyPenalty float32
	// PresencePenalty is subtracted once from the logit of every token
	// that occurs in the recent history; 0 is off. Must be finite.
	PresencePenalty float32
	// PenaltyLastN is how many of the most recent history tokens the
	// penalties look at, as llama.cpp's penalty_last_n: 0 turns the
	// penalties off, -1 means the whole history. llama.cpp's default is
	// DefaultPenaltyLastN (64); callers that set a penalty usually want it.
	PenaltyLastN int
	// Seed seeds the random generator (any value, 0 included, is a seed).
	Seed uint64
}

// DefaultPenaltyLastN is llama.cpp's default penalty window, in tokens.
const DefaultPenaltyLastN = 64

// ErrInvalidOptions is matched by the errors New and Validate return.
var ErrInvalidOptions = errors.New("invalid sampling options")

// Validate reports the first option out of its range.
func (o Options) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("sample: %s: %w", fmt.Sprintf(format, args...), ErrInvalidOptions)
	}
	finite := func(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }
	switch {
	case !finite(o.Temperature) || o.Temperature < 0:
		return bad("Temperature %v, want a finite value >= 0 (0 is greedy)", o.Temperature)
	case o.TopK < 0:
		return bad("TopK %d, want >= 0 (0 is off)", o.TopK)
	case !(o.TopP >= 0 && o.TopP <= 1):
		return bad("TopP %v, want a value in [0, 1] (0 or 1 is off)", o.TopP)
	case !(o.MinP >= 0 && o.MinP <= 1):
		return bad("MinP %v, want a value in [0, 1] (0 is off)", o.MinP)
	case !finite(o.RepeatPenalty) || o.RepeatPenalty < 0:
		return bad("RepeatPenalty %v, want a finite value >= 0 (0 or 1 is off)", o.RepeatPenalty)
	case !finite(o.FrequencyPenalty):
		return bad("FrequencyPenalty %v, want a finite value", o.FrequencyPenalty)
	case !finite(o.PresencePenalty):
		return bad("PresencePenalty %v, want a finite value", o.PresencePenalty)
	case o.PenaltyLastN < -1:
		return bad("PenaltyLastN %d, want >= -1 (0 is %d, -1 is the whole history)", o.PenaltyLastN, DefaultPenaltyLastN)
	}
	return nil
}

// candidate is a token still in the running, with its (possibly penalized)
// logit.
type candidate struct {
	id    int32
	logit float32
}

// better reports whether a ranks before b: a higher logit, or an equal logit
// and a smaller id.
func better(a, b candidate) bool {
	return a.logit > b.logit || (a.logit == b.logit && a.id < b.id)
}

// Sampler picks tokens according to its Options. It keeps scratch buffers
// sized to the vocabulary, so that after the first call Sample allocates
// nothing while the vocabulary size stays the same. A Sampler is not safe
// for concurrent use; use one per sequence.
type Sampler struct {
	opts    Options
	rng     *rand.PCG
	cands   []candidate
	weights []float64
	counts  []int32 // per-token counts in the penalty window; all zero between calls
}

// New validates opts and returns a Sampler seeded with opts.Seed.
func New(opts Options) (*Sampler, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Sampler{opts: opts, rng: rand.NewPCG(opts.Seed, pcgStream)}, nil
}

// pcgStream is the second PCG seed word, fixed so that Seed alone decides
// the sequence.
const pcgStream = 0x6b696c6e2d73616d // "kiln-sam"

// Options returns the options the Sampler was made with.
func (s *Sampler) Options() Options { return s.opts }

// Sample returns the next token for logits (one per vocabulary entry),
// given the tokens so far (history, oldest first; the penalties look at its
// tail). logits is not modified. It fails when logits is empty, holds NaN or
// +Inf, when every logit is -Inf after penalties, or when a history token in
// the penalty window is outside the vocabulary; the errors name the index.
func (s *Sampler) Sample(logits []float32, history []int32) (int32, error) {
	n := len(logits)
	if n == 0 {
		return 0, errors.New("sample: empty logits")
	}
	if n > math.MaxInt32 {
		return 0, fmt.Errorf("sample: %d logits, more than token ids can number", n)
	}
	if cap(s.cands) < n {
		s.cands = make([]candidate, n)
		s.weights = make([]float64, n)
		s.counts = make([]int32, n)
	}
	cands := s.cands[:n]
	for i, l := range logits {
		if math.IsNaN(float64(l)) || math.IsInf(float64(l), 1) {
			return 0, fmt.Errorf("sample: logit %d is %v", i, l)
		}
		cands[i] = candidate{id: int32(i), logit: l}
	}
	if err := s.applyPenalties(cands, history); err != nil {
		return 0, err
	}
	// Extreme penalties can push a finite logit to +Inf (or NaN), which no
	// distribution can be built from.
	for _, c := range cands {
		if math.IsNaN(float64(c.logit)) || math.IsInf(float64(c.logit), 1) {
			return 0, fmt.Errorf("sample: the penalties made token %d's logit %v (lower RepeatPenalty, FrequencyPenalty or PresencePenalty)", c.id, c.logit)
		}
	}

	if s.opts.Temperature == 0 {
		best := cands[0]
		for _, c := range cands[1:] {
			if c.logit > best.logit {
				best = c
			}
		}
		if math.IsInf(float64(best.logit), -1) {
			return 0, errors.New("sample: every logit is -Inf after penalties")
		}
		return best.id, nil
	}

	sorted := false
	if k := s.opts.TopK; k > 0 && k < len(cands) {
		cands = topK(cands, k)
		sorted = true
	}
	maxLogit := cands[0].logit
	if !sorted {
		for _, c := range cands[1:] {
			maxLogit = max(maxLogit, c.logit)
		}
	}
	if math.IsInf(float64(maxLogit), -1) {
		return 0, errors.New("sample: every logit is -Inf after penalties")
	}
	if p := s.opts.TopP; p > 0 && p < 1 {
		cands = s.topP(cands, maxLogit, float64(p), sorted)
		sorted = true
	}
	if mp := s.opts.MinP; mp > 0 {
		// Keep w = exp(l - max) >= MinP; the most likely token always stays.
		kept := 0
		for _, c := range cands {
			if expDet(float64(c.logit)-float64(maxLogit)) >= float64(mp) {
				cands[kept] = c
				kept++
			}
		}
		cands = cands[:kept]
	}
	if len(cands) == 0 { // not reachable with finite logits: the best token has weight 1
		return 0, errors.New("sample: no candidate token left")
	}

	// Temperature and the draw.
	invT := 1 / float64(s.opts.Temperature)
	weights := s.weights[:len(cands)]
	total := 0.0
	for i, c := range cands {
		w := expDet(float64(float64(c.logit)-float64(maxLogit)) * invT)
		weights[i] = w
		total += w
	}
	u := float64(s.rng.Uint64()>>11) * 0x1p-53 // uniform in [0, 1)
	target := float64(u * total)
	cum := 0.0
	last := cands[0].id
	for i, c := range cands {
		if weights[i] == 0 {
			continue
		}
		last = c.id
		cum += weights[i]
		if cum > target {
			return c.id, nil
		}
	}
	// Rounding left target at or past the sum: the last token with weight.
	return last, nil
}

// applyPenalties applies the repetition, frequency and presence penalties
// to cands (in token id order) for the tokens in the window of history.
func (s *Sampler) applyPenalties(cands []candidate, history []int32) error {
	o := s.opts
	repeat := o.RepeatPenalty != 0 && o.RepeatPenalty != 1
	if !repeat && o.FrequencyPenalty == 0 && o.PresencePenalty == 0 {
		return nil
	}
	if o.PenaltyLastN == 0 {
		return nil
	}
	window := history
	if lastN := o.PenaltyLastN; lastN > 0 && len(window) > lastN {
		window = window[len(window)-lastN:]
	}
	base := len(history) - len(window)
	for i, tok := range window {
		if tok < 0 || int(tok) >= len(cands) {
			return fmt.Errorf("sample: history[%d] is token %d, outside the vocabulary of %d", base+i, tok, len(cands))
		}
	}
	counts := s.counts
	for _, tok := range window {
		counts[tok]++
	}
	// Each distinct token once; clearing its count marks it done and leaves
	// counts all zero for the next call.
	for _, tok := range window {
		c := counts[tok]
		if c == 0 {
			continue
		}
		counts[tok] = 0
		l := cands[tok].logit
		if repeat {
			if l <= 0 {
				l *= o.RepeatPenalty
			} else {
				l /= o.RepeatPenalty
			}
		}
		l -= float32(float32(c)*o.FrequencyPenalty) + o.PresencePenalty
		cands[tok].logit = l
	}
	return nil
}

// topK moves the k best candidates to the front of cands, sorted best
// first, and returns them. It keeps a min-heap of the best k seen so far
// (its root is the worst of them), O(n log k).
func topK(cands []candidate, k int) []candidate {
	heap := cands[:k]
	for i := k/2 - 1; i >= 0; i-- {
		siftDown(heap, i)
	}
	for _, c := range cands[k:] {
		if better(c, heap[0]) {
			heap[0] = c
			siftDown(heap, 0)
		}
	}
	sortBest(heap)
	return heap
}

// siftDown restores the min-heap order ("worst" at the root) below i.
func siftDown(h []candidate, i int) {
	for {
		worst := i
		if l := 2*i + 1; l < len(h) && better(h[worst], h[l]) {
			worst = l
		}
		if r := 2*i + 2; r < len(h) && better(h[worst], h[r]) {
			worst = r
		}
		if worst == i {
			return
		}
		h[i], h[worst] = h[worst], h[i]
		i = worst
	}
}

func sortBest(c []candidate) {
	slices.SortFunc(c, func(a, b candidate) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	})
}

// topP keeps the shortest best-first prefix of cands whose probabilities
// (softmax at temperature 1) add up to at least p, and returns it sorted
// best first. When cands is not sorted it sorts only the candidates that
// can be in the prefix: those with weight exp(l - max) at or above a
// threshold whose candidates already carry p of the mass (the prefix is
// inside that set, since the set is itself a best-first prefix).
func (s *Sampler) topP(cands []candidate, maxLogit float32, p float64, sorted bool) []candidate {
	weights := s.weights[:len(cands)]
	total := 0.0
	for i, c := range cands {
		w := expDet(float64(c.logit) - float64(maxLogit))
		weights[i] = w
		total += w
	}
	need := float64(p * total)
	if !sorted {
		// Thresholds 1e-3, 1e-6, ... 1e-18, then 0 (everything): at most
		// seven passes, usually one.
		for threshold := 1e-3; ; threshold *= 1e-3 {
			if threshold < 1e-19 {
				threshold = 0
			}
			mass := 0.0
			for _, w := range weights {
				if w >= threshold {
					mass += w
				}
			}
			if mass >= need || threshold == 0 {
				kept := 0
				for i, c := range cands {
					if weights[i] >= threshold {
						cands[kept] = c
						kept++
					}
				}
				cands = cands[:kept]
				break
			}
		}
		sortBest(cands)
	}
	cum := 0.0
	for i, c := range cands {
		cum += expDet(float64(c.logit) - float64(maxLogit))
		if cum >= need {
			return cands[:i+1]
		}
	}
	return cands
}

// expDet is e^x for x <= 0, computed with operations whose rounding Go fixes
// on every platform (no fused multiply-add, no assembly): x = k ln2 + r with
// |r| <= ln2/2, e^r by its Taylor series to degree 13 (error below 1e-17
// relative), times 2^k. It is within a few ulps of math.Exp.
func expDet(x float64) float64 {
	if x < -745.2 || math.IsNaN(x) { // below the smallest subnormal (and -Inf)
		return 0
	}
	if x > 709 {
		return math.Inf(1)
	}
	const (
		log2e = 1.44269504088896338700e+00
		ln2Hi = 6.93147180369123816490e-01 // ln 2, high 32 bits: k*ln2Hi is exact
		ln2Lo = 1.90821492927058770002e-10 // ln 2 - ln2Hi
	)
	k := math.Floor(float64(x*log2e) + 0.5)
	r := float64(x-float64(k*ln2Hi)) - float64(k*ln2Lo)
	p := invFactorials[len(invFactorials)-1]
	for j := len(invFactorials) - 2; j >= 0; j-- {
		p = float64(p*r) + invFactorials[j]
	}
	return math.Ldexp(p, int(k))
}

// invFactorials[j] is 1/j!, j = 0..13.
var invFactorials = [...]float64{
	1, 1, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
	1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800,
}
