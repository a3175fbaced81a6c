// Package llama runs LLaMA-family language models from GGUF files (Llama 2,
// Llama 3/3.x, Mistral, Qwen2-style QKV biases, tied embeddings, grouped-query
// attention, Llama-3.x RoPE frequency factors) on any kiln backend, with a
// paged KV cache shared by many sequences.
//
// A server loads a Model once, creates Sequences, and either batches them
// itself through Step (tokens in, logits out, prefill and decode mixed in one
// call) or streams one sequence's text with Generate.
//
// Tensor parallelism: LoadParallel shards a model over a group of devices
// (attention heads and FFN rows split, the row-parallel products summed
// through the host after each half-layer); the CPU backend opened N times
// stands for N devices. CUDA graphs: on the CUDA backend with one device,
// decode steps replay a graph captured once per batch bucket (see
// Options.DisableGraphs).
//
// Concurrency: every Model method is safe for concurrent use. Steps run one
// at a time (a Model holds one set of scratch buffers and one device
// stream); a Sequence may take part in only one Step at a time (a second
// concurrent use is an error, not a race). Generate runs one Step per token,
// so concurrent Generate calls interleave their steps rather than batch them:
// a server that wants batching calls Step with all its sequences.
package llama

import (
	"fmt"
	"math"

	"github.com/kiln-gpu/kiln/models/gguf"
	"github.com/kiln-gpu/kiln/runtime/op"
)

// Config is a model's architecture, read from GGUF metadata.
type Config struct {
	// Arch is general.architecture: "llama" (Llama, Mistral, ...) or "qwen2".
	Arch       string
	Name       string // general.name, if present
	ContextLen int    // <arch>.context_length
	Dim        int    // <arch>.embedding_length
	NLayers    int    // <arch>.block_count
	FFNDim     int    // <arch>.feed_forward_length
	NHeads     int    // <arch>.attention.head_count
	NKVHeads   int    // <arch>.attention.head_count_kv (default NHeads)
	HeadDim    int    // <arch>.attention.key_length (default Dim/NHeads)
	RMSEps     float32
	RopeStyle  op.RoPEStyle
	RopeDims   int     // <arch>.rope.dimension_count (default HeadDim)
	RopeBase   float32 // <arch>.rope.freq_base (default 10000)
	RopeScale  float32 // 1/<arch>.rope.scaling.factor for linear scaling (default 1)
	VocabSize  int
	// TiedEmbeddings: the file has no output.weight; the token embedding
	// table also projects to the vocabulary.
	TiedEmbeddings bool
	// QKVBias: the attention projections have biases (Qwen2).
	QKVBias bool
	// RopeFreqFactors: the file has rope_freqs.weight (Llama-3.x scaling).
	RopeFreqFactors bool
}

// archRope gives each supported architecture's RoPE style: LLaMA as GGUF
// stores it rotates adjacent pairs; Qwen2 rotates halves (NeoX).
var archRope = map[string]op.RoPEStyle{
	"llama": op.RoPENormal,
	"qwen2": op.RoPENeoX,
}

// ReadConfig reads and validates the architecture of a GGUF file.
func ReadConfig(f *gguf.File) (Config, error) {
	var c Config
	arch, err := f.String("general.architecture")
	if err != nil {
		return c, fmt.Errorf("llama: %s: %w", f.Path, err)
	}
	style, ok := archRope[arch]
	if !ok {
		return c, fmt.Errorf("llama: %s: architecture %q is not supported (supported: llama, qwen2)", f.Path, arch)
	}
	c.Arch, c.RopeStyle = arch, style
	if name, err := f.String("general.name"); err == nil {
		c.Name = name
	}
	need := func(key string) (int, error) {
		v, err := f.Uint(arch + "." + key)
		if err != nil {
			return 0, fmt.Errorf("llama: %s: %w", f.Path, err)
		}
		if v == 0 || v > math.MaxInt32 {
			return 0, fmt.Errorf("llama: %s: %s.%s = %d is out of range", f.Path, arch, key, v)
		}
		return int(v), nil
	}
	optional := func(key string, def int) (int, error) {
		if _, ok := f.Get(arch + "." + key); !ok {
			return def, nil
		}
		return need(key)
	}
	if c.ContextLen, err = need("context_length"); err != nil {
		return c, err
	}
	if c.Dim, err = need("embedding_length"); err != nil {
		return c, err
	}
	if c.NLayers, err = need("block_count"); err != nil {
		return c, err
	}
	if c.FFNDim, err = need("feed_forward_length"); err != nil {
		return c, err
	}
	if c.NHeads, err = need("attention.head_count"); err != nil {
		return c, err
	}
	if c.NKVHeads, err = optional("attention.head_count_kv", c.NHeads); err != nil {
		return c, err
	}
	if c.Dim%c.NHeads != 0 {
		return c, fmt.Errorf("llama: %s: embedding_length %d is not a multiple of head_count %d", f.Path, c.Dim, c.NHeads)
	}
	if c.HeadDim, err = optional("attention.key_length", c.Dim/c.NHeads); err != nil {
		return c, err
	}
	if v, err := optional("attention.value_length", c.HeadDim); err != nil {
		return c, err
	} else if v != c.HeadDim {
		return c, fmt.Errorf("llama: %s: value_length %d differs from key_length %d (not supported)", f.Path, v, c.HeadDim)
	}
	if c.NHeads%c.NKVHeads != 0 {
		return c, fmt.Errorf("llama: %s: head_count %d is not a multiple of head_count_kv %d", f.Path, c.NHeads, c.NKVHeads)
	}
	if c.HeadDim > op.MaxHeadDim {
		return c, fmt.Errorf("llama: %s: head dimension %d is larger than %d", f.Path, c.HeadDim, op.MaxHeadDim)
	}
	if c.RopeDims, err = optional("rope.dimension_count", c.HeadDim); err != nil {
		return c, err
	}
	if c.RopeDims > c.HeadDim || c.RopeDims%2 != 0 {
		return c, fmt.Errorf("llama: %s: rope.dimension_count %d must be even and at most the head dimension %d", f.Path, c.RopeDims, c.HeadDim)
	}
	c.RopeBase, c.RopeScale, c.RMSEps = 10000, 1, 1e-5
	if v, err := floatKey(f, arch+".rope.freq_base"); err != nil {
		return c, err
	} else if v != 0 {
		c.RopeBase = v
	}
	if v, err := floatKey(f, arch+".attention.layer_norm_rms_epsilon"); err != nil {
		return c, err
	} else if v != 0 {
		c.RMSEps = v
	}
	if kind, err := f.String(arch + ".rope.scaling.type"); err == nil && kind == "linear" {
		factor, err := floatKey(f, arch+".rope.scaling.factor")
		if err != nil {
			return c, err
		}
		if factor > 0 {
			c.RopeScale = 1 / factor
		}
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok {
		return c, fmt.Errorf("llama: %s: no tensor token_embd.weight", f.Path)
	}
	if len(emb.Shape) != 2 || emb.Shape[1] != c.Dim {
		return c, fmt.Errorf("llama: %s: token_embd.weight has shape %v, expected [vocab, %d]", f.Path, emb.Shape, c.Dim)
	}
	c.VocabSize = emb.Shape[0]
	_, hasOutput := f.Tensor("output.weight")
	c.TiedEmbeddings = !hasOutput
	_, c.QKVBias = f.Tensor("blk.0.attn_q.bias")
	_, c.RopeFreqFactors = f.Tensor("rope_freqs.weight")
	return c, nil
}

// floatKey reads an optional float metadata value (0 when absent).
func floatKey(f *gguf.File, key string) (float32, error) {
	if _, ok := f.Get(key); !ok {
		return 0, nil
	}
	v, err := f.Float(key)
	if err != nil {
		return 0, fmt.Errorf("llama: %s: %w", f.Path, err)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, fmt.Errorf("llama: %s: %s = %v is not a usable number", f.Path, key, v)
	}
	return float32(v), nil
}

// ParamCount is the number of weights in the model's matrices and vectors.
func (c Config) ParamCount() int64 {
	d, f, v := int64(c.Dim), int64(c.FFNDim), int64(c.VocabSize)
	q := int64(c.NHeads * c.HeadDim)
	kv := int64(c.NKVHeads * c.HeadDim)
	perLayer := d*q + 2*d*kv + q*d + 3*d*f + 2*d
	out := v * d
	if c.TiedEmbeddings {
		out = 0
	}
	return v*d + int64(c.NLayers)*perLayer + d + out
}
