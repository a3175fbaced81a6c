package op

import "github.com/kiln-gpu/kiln/runtime/tensor"

// Op names, as they appear in errors, benchmarks and the conformance table.
const (
	NameCopy      = "copy"
	NameAdd       = "add"
	NameMul       = "mul"
	NameSiLU      = "silu"
	NameGELU      = "gelu"
	NameSoftmax   = "softmax"
	NameRMSNorm   = "rmsnorm"
	NameLayerNorm = "layernorm"
	NameRoPE      = "rope"
	NameEmbedding = "embedding"
	NameArgmax    = "argmax"
)

// GELUApprox selects the GELU formula.
type GELUApprox uint8

const (
	// GELUErf is the exact GELU, x·Φ(x) = 0.5·x·(1 + erf(x/√2)) (PyTorch's default).
	GELUErf GELUApprox = iota
	// GELUTanh is the tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
	// (GPT-2, PyTorch's approximate="tanh").
	GELUTanh
)

// GELUOptions configures GELU.
type GELUOptions struct {
	Approx GELUApprox
}

// SoftmaxOptions configures a row softmax: y = softmax(Scale·x + mask) along
// the innermost dimension.
type SoftmaxOptions struct {
	// Scale multiplies x before the softmax. 0 means 1.
	Scale float32
	// Causal masks, in row r of the second-innermost dimension (the query at
	// position PositionOffset + r), every column j > PositionOffset + r. A
	// row with every column masked comes out all zeros.
	Causal bool
	// PositionOffset is the position of the first row when Causal is set;
	// it may be negative (then early rows are fully masked).
	PositionOffset int
}

// EffectiveScale is Scale with 0 read as 1.
func (o SoftmaxOptions) EffectiveScale() float32 {
	if o.Scale == 0 {
		return 1
	}
	return o.Scale
}

// NormOptions configures RMSNorm and LayerNorm.
type NormOptions struct {
	// Eps is added to the mean square (RMSNorm) or variance (LayerNorm)
	// before the square root. 0 means 1e-5.
	Eps float32
}

// EffectiveEps is Eps with 0 read as 1e-5.
func (o NormOptions) EffectiveEps() float32 {
	if o.Eps == 0 {
		return 1e-5
	}
	return o.Eps
}

// RoPEStyle selects which elements of a head are rotated together.
type RoPEStyle uint8

const (
	// RoPENormal rotates adjacent pairs (x[2i], x[2i+1]): LLaMA as GGUF
	// stores it (ggml's rope "norm" mode).
	RoPENormal RoPEStyle = iota
	// RoPENeoX rotates pairs half a rotation apart, (x[i], x[i+NDims/2]):
	// GPT-NeoX, Qwen2, Falcon, Phi (ggml's "neox" mode).
	RoPENeoX
)

func (s RoPEStyle) String() string {
	if s == RoPENeoX {
		return "neox"
	}
	return "normal"
}

// RoPEOptions configures rotary position embedding.
//
// For pair i (0 ≤ i < NDims/2) of a token at position p = positions[t] +
// PositionOffset, the angle is
//
//	θ = p · FreqScale · FreqBase^(−2i/NDims) / FreqFactors[i]
//
// and the pair (a, b) becomes (a·cos θ − b·sin θ, a·sin θ + b·cos θ).
// Elements at and past NDims pass through unchanged. θ, cos θ and sin θ are
// computed in float64 on every backend and rounded to float32, so backends
// agree even at large positions; the rotation itself is float32.
type RoPEOptions struct {
	Style RoPEStyle
	// NDims is how many leading elements of each head are rotated; it must be
	// even and at most the head dimension. 0 means the whole head.
	NDims int
	// FreqBase is the base of the frequencies. 0 means 10000.
	FreqBase float32
	// FreqScale multiplies positions (linear RoPE scaling). 0 means 1.
	FreqScale float32
	// PositionOffset is added to every position.
	PositionOffset int
	// FreqFactors, when not the zero Tensor, is an F32 vector of NDims/2
	// divisors of the frequencies (LLaMA-3.x rope scaling, "rope_freqs" in GGUF).
	FreqFactors tensor.Tensor
}

// Effective returns the options with zero fields replaced by their defaults
// for a head of headDim elements.
func (o RoPEOptions) Effective(headDim int) RoPEOptions {
	if o.NDims == 0 {
		o.NDims = headDim
	}
	if o.FreqBase == 0 {
		o.FreqBase = 10000
	}
	if o.FreqScale == 0 {
		o.FreqScale = 1
	}
	return o
}
