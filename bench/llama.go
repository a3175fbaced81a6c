package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/kiln-gpu/kiln/models/llama"
	"github.com/kiln-gpu/kiln/models/synthetic"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// LLaMA model cases, on synthetic models (random weights, models/synthetic):
//
//	llama/<model>/<wtype>/pp512: prompt processing, one Step of 512 tokens
//	  into an empty sequence (logits of the last one only).
//	llama/<model>/<wtype>/tg128: decoding, 128 Steps of one token each
//	  after a 32-token prompt (prefilled once, outside the timing).
//
// One iteration is the whole prompt or all 128 steps; the result's
// TokensPerSecond is 512 or 128 over its time. Decode feeds fixed random
// tokens instead of sampling, as llama.cpp's llama-bench does, so the time
// is the model's (each Step still downloads its logits to the host).
//
// Models: llama3-8b (LLaMA-3-8B's shape) in F16, Q8_0, Q4_0 and Q4_K with
// F16 activations and KV cache, GPU only (the CPU backend would need tens of
// minutes per iteration; the cases report Skipped there); small-100m (100M
// weights read per token) in F32 and Q8_0 with F32 activations, for the CPU
// (it runs on a GPU too). The KV cache holds one sequence of 1024 tokens.
//
// Bytes: tg128 counts what decoding must read, summed over the 128 tokens:
// every weight but the token embedding table, one embedding row, and the
// keys and values of all positions so far (the new one included). It is
// ReadBound, so its result has OfReadProbe = GB/s ÷ probe/read's GB/s, which
// is tokens/s as a fraction of the bandwidth bound (probe GB/s ÷ bytes per
// token) — when probe/read runs in the same `kiln bench` (a filter such as
// '^(probe/read|llama/)'). pp512 counts the weights read once, 512
// embedding rows and the keys and values written. FLOPs: 2 per weight per
// token for the matrix products (the output matrix for one row per Step),
// and 4·heads·headDim per (query, key) pair for attention.
//
// The model is built in host memory (synthetic.Parse: an 8B F16 model is
// 16 GB, built in seconds), loaded onto the device once per case (MaxSets
// 1) and freed, with its host bytes, when the case ends.

const (
	llamaPromptTokens       = 512  // pp cases: tokens in the one Step
	llamaDecodeTokens       = 128  // tg cases: Steps of one token
	llamaDecodePromptTokens = 32   // tg cases: the prompt before decoding
	llamaContextLen         = 1024 // the KV cache: one sequence this long
)

// llamaBenchModel is a model the cases run, in several weight types.
type llamaBenchModel struct {
	spec        func(wt tensor.DType) synthetic.Spec
	weightTypes []tensor.DType
	// act is llama.Options.ActivationType (fixed, so that the KV bytes
	// counted are those the device reads).
	act tensor.DType
	// gpuOnly: skipped on the CPU backend.
	gpuOnly bool
}

var llamaBenchModels = []llamaBenchModel{
	{synthetic.Llama3_8B, []tensor.DType{tensor.F16, tensor.Q8_0, tensor.Q4_0, tensor.Q4_K}, tensor.F16, true},
	{synthetic.Small100M, []tensor.DType{tensor.F32, tensor.Q8_0}, tensor.F32, false},
}

func init() {
	for _, m := range llamaBenchModels {
		for _, wt := range m.weightTypes {
			Register(llamaCases(m, wt)...)
		}
	}
}

// llamaShape is the arithmetic of one model for the byte and FLOP counts.
type llamaShape struct {
	// passBytes is every tensor but the token embedding table; embRowBytes
	// one row of it.
	passBytes, embRowBytes int64
	// kvPosBytes is the keys and values of one position, all layers.
	kvPosBytes int64
	// matParams are the weights of the layers' matrices; outParams the
	// output matrix's.
	matParams, outParams int64
	// attnPairFLOPs is the attention arithmetic per (query, key) pair, all
	// layers.
	attnPairFLOPs int64
}

func newLlamaShape(s synthetic.Spec, act tensor.DType) (llamaShape, error) {
	ts, err := s.Tensors()
	if err != nil {
		return llamaShape{}, err
	}
	var sh llamaShape
	for _, t := range ts {
		if t.Name == "token_embd.weight" {
			sh.embRowBytes = t.SizeBytes() / int64(t.Shape[0])
			continue
		}
		sh.passBytes += t.SizeBytes()
	}
	d, f, v, l := int64(s.Dim), int64(s.FFNDim), int64(s.Vocab), int64(s.Layers)
	q, kv := int64(s.Heads*s.HeadDim()), int64(s.KVHeads*s.HeadDim())
	sh.kvPosBytes = 2 * l * kv * int64(act.BlockBytes())
	sh.matParams = l * (2*d*q + 2*d*kv + 3*d*f)
	sh.outParams = v * d
	sh.attnPairFLOPs = 4 * l * q
	return sh, nil
}

// llamaCases are the pp and tg cases of one model and weight type.
func llamaCases(m llamaBenchModel, wt tensor.DType) []Case {
	spec := m.spec(wt)
	sh, err := newLlamaShape(spec, m.act)
	if err != nil {
		panic(err) // the models are constants; a bad one is a programming error at init
	}
	prefix := fmt.Sprintf("llama/%s/%v/", spec.Name, wt)

	P := int64(llamaPromptTokens)
	pp := Case{
		Name:    fmt.Sprintf("%spp%d", prefix, llamaPromptTokens),
		Bytes:   sh.passBytes + P*sh.embRowBytes + P*sh.kvPosBytes,
		FLOPs:   2*P*sh.matParams + 2*sh.outParams + sh.attnPairFLOPs*P*(P+1)/2,
		Tokens:  P,
		MaxSets: 1,
	}
	pp.Prepare = func(env *Env) (*Runner, error) {
		lm, err := loadLlama(env, m, spec)
		if err != nil {
			return nil, err
		}
		prompt := lm.randomTokens(env, llamaPromptTokens)
		return &Runner{
			Run: func() error {
				if err := lm.seq.Truncate(0); err != nil {
					return err
				}
				_, err := lm.model.Step(context.Background(), []llama.Request{{Seq: lm.seq, Tokens: prompt}})
				return err
			},
			Close: lm.close,
		}, nil
	}

	// Decode: the token at position p attends to p+1 keys.
	N, start := int64(llamaDecodeTokens), int64(llamaDecodePromptTokens)
	var keysRead int64
	for p := start; p < start+N; p++ {
		keysRead += p + 1
	}
	tg := Case{
		Name:      fmt.Sprintf("%stg%d", prefix, llamaDecodeTokens),
		Bytes:     N*(sh.passBytes+sh.embRowBytes) + keysRead*sh.kvPosBytes,
		FLOPs:     N*2*(sh.matParams+sh.outParams) + sh.attnPairFLOPs*keysRead,
		Tokens:    N,
		ReadBound: true,
		MaxSets:   1,
	}
	tg.Prepare = func(env *Env) (*Runner, error) {
		lm, err := loadLlama(env, m, spec)
		if err != nil {
			return nil, err
		}
		prompt := lm.randomTokens(env, llamaDecodePromptTokens)
		if _, err := lm.model.Step(context.Background(), []llama.Request{{Seq: lm.seq, Tokens: prompt}}); err != nil {
			return nil, errors.Join(err, lm.close())
		}
		tokens := lm.randomTokens(env, llamaDecodeTokens)
		return &Runner{
			Run: func() error {
				for _, tok := range tokens {
					if _, err := lm.model.Step(context.Background(), []llama.Request{{Seq: lm.seq, Tokens: []int32{tok}}}); err != nil {
						return err
					}
				}
				return lm.seq.Truncate(llamaDecodePromptTokens)
			},
			Close: lm.close,
		}, nil
	}
	return []Case{pp, tg}
}

// loadedLlama is a case's model with its one sequence.
type loadedLlama struct {
	spec  synthetic.Spec
	model *llama.Model
	seq   *llama.Sequence
	close func() error
}

// loadLlama builds m's model in weight type spec.WeightType and loads it
// onto env.Dev with room for one sequence of llamaContextLen tokens; on the
// CPU a GPU-only model is skipped before anything is built.
func loadLlama(env *Env, m llamaBenchModel, spec synthetic.Spec) (*loadedLlama, error) {
	if m.gpuOnly && env.Dev.Name() == "cpu" {
		return nil, Skip("%s runs on a GPU only (the CPU backend would take tens of minutes per iteration)", spec.Name)
	}
	// The previous case's model (16 GB of host memory for the 8B F16 one)
	// is unreachable now but not yet collected: return it to the system
	// before building another.
	debug.FreeOSMemory()
	f, err := synthetic.Parse(spec)
	if err != nil {
		return nil, err
	}
	model, err := llama.LoadFile(context.Background(), env.Dev, f, llama.Options{
		MaxSequences: 1, ContextLen: llamaContextLen, MaxBatchTokens: llamaPromptTokens, ActivationType: m.act,
	})
	if err != nil {
		return nil, errors.Join(err, f.Close())
	}
	seq, err := model.NewSequence()
	if err != nil {
		return nil, errors.Join(err, model.Close(), f.Close())
	}
	return &loadedLlama{spec: spec, model: model, seq: seq, close: func() error {
		return errors.Join(seq.Free(), model.Close(), f.Close())
	}}, nil
}

// randomTokens draws n token ids among the vocabulary's ordinary pieces
// (past the special and byte tokens), or among all when it has none.
func (lm *loadedLlama) randomTokens(env *Env, n int) []int32 {
	lo := synthetic.MinVocab
	if lm.spec.Vocab <= lo {
		lo = 0
	}
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(lo + env.rng.IntN(lm.spec.Vocab-lo))
	}
	return ids
}
