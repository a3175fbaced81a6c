// Package conformance holds kiln's single definition of numerical agreement
// (this file: tolerances per op and output dtype, and Compare) and, in its
// tests, the conformance suite: one table that runs every op on every
// available backend, checks the CPU backend against naive float64 references
// written in the tests, and checks every other backend (the CUDA backend, with
// its "simple" and "auto" kernel sets) against the CPU.
//
// Run it with `go test ./runtime/conformance/`; on a machine without a GPU the
// CUDA part is skipped with a line saying why.
package conformance

import (
	"fmt"
	"math"
	"strings"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Tolerance bounds how far a result may be from the reference.
//
// Per element: |got − want| ≤ ATol + RTol·|want|, where want is the reference
// rounded through the output dtype. NaN where want is not NaN fails (and a
// number where want is NaN fails); an infinite want must be matched exactly.
// Over the whole tensor: the normalised mean squared error
// Σ(got − want)² / Σ want² must be at most MaxNMSE (when Σ want² is 0, the
// plain sum of squared errors is used).
type Tolerance struct {
	ATol    float64
	RTol    float64
	MaxNMSE float64
	// Why says where the allowance comes from.
	Why string
}

// Exact is the tolerance of results that every backend must reproduce bit
// for bit (after rounding the reference through the output dtype).
var Exact = Tolerance{Why: "exact: the op is a correctly rounded conversion or an index"}

// The units of the tables below. An ulp of F16 is at most 2⁻¹⁰ of the value
// (10 stored mantissa bits), of BF16 2⁻⁷ (7 bits), of F32 2⁻²³.
const (
	ulpF16  = 1.0 / 1024
	ulpBF16 = 1.0 / 128
)

// baseTolerances apply to every op not listed in opTolerances.
var baseTolerances = map[tensor.DType]Tolerance{
	tensor.F32: {ATol: 1e-6, RTol: 1e-5, MaxNMSE: 1e-10, Why: "F32: backends compute in float32 " +
		"but may order sums differently, fuse multiply-adds, or use device math functions with " +
		"a few ulps of error; 1e-5 is about 80 ulps, far below what a wrong kernel produces. " +
		"The absolute term covers results that cancel to near zero."},
	tensor.F16: {ATol: 1e-5, RTol: 2 * ulpF16, MaxNMSE: 1e-6, Why: "F16: two float32 results that " +
		"differ in their last bits can round to neighbouring F16 values (1 ulp), and one more ulp " +
		"covers float32 differences upstream of the final rounding; the absolute term covers " +
		"subnormals and float32 cancellation near zero."},
	tensor.BF16: {ATol: 1e-5, RTol: 2 * ulpBF16, MaxNMSE: 1e-4, Why: "BF16: as F16, two ulps of " +
		"an 8-bit mantissa."},
	tensor.I32: Exact,
}

// opTolerances override baseTolerances for an op and output dtype.
var opTolerances = map[string]map[tensor.DType]Tolerance{
	op.NameCopy: {
		tensor.F32: Exact, tensor.F16: Exact, tensor.BF16: Exact, tensor.I32: Exact,
	},
	op.NameArgmax: {tensor.I32: Exact},
	op.NameSoftmax: {
		tensor.F32: {ATol: 1e-6, RTol: 2e-5, MaxNMSE: 1e-10, Why: "softmax F32: exp on a device " +
			"(expf, or __expf at a few ulps per unit of |x|) and float32 row sums in another order; " +
			"outputs lie in [0, 1], so 1e-6 absolute bounds the tiny probabilities."},
	},
	op.NameGELU: {
		tensor.F32: {ATol: 2e-6, RTol: 1e-5, MaxNMSE: 1e-10, Why: "gelu F32: 1 + erf(x/√2) and " +
			"1 + tanh(u) cancel for negative x, so a float32 erff or tanhf with an ulp of error " +
			"gives an absolute error up to about |x|·2⁻²⁴ in the (tiny) result."},
	},
	op.NameSiLU: {
		tensor.F32: {ATol: 1e-6, RTol: 1e-5, MaxNMSE: 1e-10, Why: "silu F32: x/(1 + e⁻ˣ) with a " +
			"float32 exp of a few ulps."},
	},
	op.NameLayerNorm: {
		tensor.F32: {ATol: 2e-6, RTol: 1e-5, MaxNMSE: 1e-10, Why: "layernorm F32: x − mean cancels " +
			"for elements near the mean, leaving an absolute error of a few ulps of the mean " +
			"times the normalising scale; the variance may be computed in float32."},
	},
	op.NameRoPE: {
		tensor.F32: {ATol: 2e-6, RTol: 1e-5, MaxNMSE: 1e-10, Why: "rope F32: a·cos θ − b·sin θ " +
			"cancels when the rotated value is near zero, leaving a few ulps of |a| + |b| as " +
			"absolute error (more with a fused multiply-add)."},
	},
	op.NameEmbedding: {
		tensor.F32: {ATol: 1e-6, RTol: 1e-6, MaxNMSE: 1e-12, Why: "embedding F32: float tables " +
			"convert exactly; block formats dequantize in float32 (d·scale·q, and d·scale·q − " +
			"dmin·min for Q4_K), whose last products can round by an ulp or fuse."},
	},
}

// For returns the tolerance for results of op opName with output dtype dt.
func For(opName string, dt tensor.DType) Tolerance {
	if byType, ok := opTolerances[opName]; ok {
		if tol, ok := byType[dt]; ok {
			return tol
		}
	}
	if tol, ok := baseTolerances[dt]; ok {
		return tol
	}
	return Exact
}

// Report is the outcome of Compare.
type Report struct {
	// N is the number of elements compared; Failures how many broke the
	// per-element bound (or the NaN and Inf rules).
	N, Failures int
	// Worst is the flat (row-major) index of the element furthest past its
	// bound, relative to the bound; -1 when N is 0. WorstIndex is the same
	// element as a multi-index of the shape given to Compare.
	Worst      int
	WorstIndex []int
	// WorstGot and WorstWant are that element's values (want after rounding
	// through the output dtype), WorstErr their absolute difference.
	WorstGot, WorstWant, WorstErr float64
	// NMSE is the whole tensor's normalised mean squared error (NaN and
	// infinite elements left out).
	NMSE float64
	// Tol is the tolerance applied.
	Tol Tolerance
}

// OK reports whether every element passed and the NMSE is within bounds.
func (r Report) OK() bool { return r.Failures == 0 && !(r.NMSE > r.Tol.MaxNMSE) }

// String says whether the comparison passed and describes the worst element
// and the NMSE.
func (r Report) String() string {
	var sb strings.Builder
	if r.OK() {
		fmt.Fprintf(&sb, "ok: %d elements", r.N)
	} else {
		fmt.Fprintf(&sb, "FAILED: %d of %d elements outside |got − want| ≤ %g + %g·|want|", r.Failures, r.N, r.Tol.ATol, r.Tol.RTol)
	}
	if r.Worst >= 0 {
		fmt.Fprintf(&sb, "; worst at %v (element %d): got %v, want %v (|diff| %.3g)",
			r.WorstIndex, r.Worst, r.WorstGot, r.WorstWant, r.WorstErr)
	}
	fmt.Fprintf(&sb, "; NMSE %.3g (max %.3g)", r.NMSE, r.Tol.MaxNMSE)
	return sb.String()
}

// RoundTo rounds a reference value through dtype dt as a backend storing it
// would: to float32, then to F16 or BF16 (round to nearest even each time);
// I32 values pass unchanged. (The two roundings can differ from one direct
// rounding of a float64 only for values within 2⁻²⁹ relative of a tie, far
// inside every tolerance.)
func RoundTo(dt tensor.DType, v float64) float64 {
	switch dt {
	case tensor.F32, tensor.F16, tensor.BF16:
		return float64(tensor.RoundTo(dt, float32(v)))
	}
	return v
}

// Compare checks got against want, both row-major over shape, as results of
// an op with output dtype dt: want is rounded through dt first.
func Compare(got, want []float64, dt tensor.DType, shape []int, tol Tolerance) Report {
	r := Report{N: len(want), Worst: -1, Tol: tol}
	if len(got) != len(want) {
		r.Failures = max(len(got), len(want))
		r.NMSE = math.Inf(1)
		return r
	}
	worstExcess := math.Inf(-1)
	var sumSqErr, sumSqWant float64
	for i := range want {
		w := RoundTo(dt, want[i])
		g := got[i]
		diff := math.Abs(g - w)
		bound := tol.ATol + tol.RTol*math.Abs(w)
		var excess float64 // how far past the bound, relative to it; ≤ 0 passes
		switch {
		case math.IsNaN(w) || math.IsNaN(g):
			if math.IsNaN(w) && math.IsNaN(g) {
				excess = math.Inf(-1)
			} else {
				excess = math.Inf(1)
			}
		case math.IsInf(w, 0) || math.IsInf(g, 0):
			if g == w {
				excess = math.Inf(-1)
			} else {
				excess = math.Inf(1)
			}
		default:
			sumSqErr += diff * diff
			sumSqWant += w * w
			if bound == 0 {
				excess = diff // exact: any difference fails
				if diff == 0 {
					excess = math.Inf(-1)
				}
			} else {
				excess = diff/bound - 1
			}
		}
		if excess > 0 {
			r.Failures++
		}
		if r.Worst < 0 || excess > worstExcess {
			worstExcess = excess
			r.Worst, r.WorstGot, r.WorstWant, r.WorstErr = i, g, w, diff
		}
	}
	if sumSqWant > 0 {
		r.NMSE = sumSqErr / sumSqWant
	} else {
		r.NMSE = sumSqErr
	}
	if r.Worst >= 0 {
		r.WorstIndex = unflatten(r.Worst, shape)
	}
	return r
}

// unflatten turns a row-major flat index into a multi-index of shape.
func unflatten(flat int, shape []int) []int {
	idx := make([]int, len(shape))
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] > 0 {
			idx[i] = flat % shape[i]
			flat /= shape[i]
		}
	}
	return idx
}

// Matrix products (op.NameMatMul, op.NameMatMulSwiGLU) get a tolerance made
// from each case's data, by MatMulTolerance, rather than a fixed one from
// For: the error of a sum of k products grows with Σₖ|x·w|, not with the
// result, which cancels (a product of random data is typically √k times
// smaller than Σ|x·w|, and some outputs are near zero). A fixed relative
// tolerance would be either far too loose for large results or fail on
// small ones.
//
// The absolute term is c·S, where S is the largest, over the output, of
// Σₖ|x_ik·w_jk| (+ |bias_j|), or for SwiGLU of the first-order bound
// 1.1·|u|·S_gate + |silu(g)|·S_up (silu's slope is at most 1.1); c is:
const (
	// matmulCoeffCPU: the CPU against the float64 reference, any
	// activation dtype. The CPU converts x exactly to float32 and decodes w
	// to the reference's values (or folds the block scale in after Σq·x),
	// then sums in float32 in blocks of 4 to 256: with k ≤ 1024 in the
	// suite, a few hundred roundings of 2⁻²⁴·S at the very worst. 2⁻¹⁶
	// (1.5e-5) leaves room and is still ~100 times smaller than the
	// contribution of one 32-element block of random data, so a block
	// dropped, doubled or decoded wrong fails.
	matmulCoeffCPU = 1.0 / (1 << 16)
	// matmulCoeffF32: another backend against the CPU with F32
	// activations: both sum in float32 (the GPU in another order, with
	// fused multiply-adds and split-k partial sums), so twice the CPU's
	// allowance.
	matmulCoeffF32 = 1.0 / (1 << 15)
	// matmulCoeffF16, matmulCoeffBF16: another backend against the CPU with
	// F16 or BF16 activations. The GPU's tensor-core path rounds the
	// dequantized w to the activations' dtype before multiplying (relative
	// error up to 2⁻¹¹ for F16, 2⁻⁸ for BF16, per weight), which the CPU does
	// not; so c is one ulp at 1 of that dtype (two unit roundoffs), plus
	// the float32 term.
	matmulCoeffF16  = ulpF16 + matmulCoeffF32
	matmulCoeffBF16 = ulpBF16 + matmulCoeffF32
)

// MatMulTolerance is the tolerance of a matrix product (MatMul or
// MatMulSwiGLU) whose activations and output have dtype act, where sumAbs is
// S above (see the constants before it). vsCPU selects the tolerance of
// another backend compared with the CPU, rather than of the CPU compared
// with the float64 reference.
//
// On top of c·S: RTol is one ulp of the output dtype (a result within c·S
// of the reference can round to the neighbour of the rounded reference; for
// SwiGLU in F32, four ulps, for a device's expf), and MaxNMSE is the output
// dtype's default (baseTolerances): rounding w to BF16 adds an NMSE of about
// (2⁻⁸)²/3 ≈ 5e-6, inside BF16's 1e-4, and to F16 about 8e-8, inside its
// 1e-6.
func MatMulTolerance(opName string, act tensor.DType, sumAbs float64, vsCPU bool) Tolerance {
	c := matmulCoeffCPU
	if vsCPU {
		switch act {
		case tensor.F16:
			c = matmulCoeffF16
		case tensor.BF16:
			c = matmulCoeffBF16
		default:
			c = matmulCoeffF32
		}
	}
	rtol := map[tensor.DType]float64{tensor.F32: 1.0 / (1 << 23), tensor.F16: ulpF16, tensor.BF16: ulpBF16}[act]
	if opName == op.NameMatMulSwiGLU && act == tensor.F32 {
		rtol *= 4
	}
	against := "the float64 reference (c = 2⁻¹⁶: float32 sums on the CPU)"
	if vsCPU {
		against = fmt.Sprintf("the CPU (c = %.3g: float32 sums; F16/BF16 activations: w rounded to that dtype on tensor cores)", c)
	}
	return Tolerance{
		ATol:    c * sumAbs,
		RTol:    rtol,
		MaxNMSE: baseTolerances[act].MaxNMSE,
		Why: fmt.Sprintf("%s %v against %s: |error| ≤ c·max Σ|x·w| = %.3g, plus one ulp of the output for its rounding",
			opName, act, against, c*sumAbs),
	}
}

// Attention (op.NameAttention) is checked two ways, both from each case's
// data rather than a fixed table entry.
//
// Against the float64 reference, by the rule: a backend's largest
// error may be at most twice that of a naive implementation at the same
// precision, computed in the test from the same (rounded) inputs — scores,
// softmax and P·V in float32, and for F16 and BF16 the unnormalised
// probabilities exp(s − max) rounded to that dtype before P·V, as
// FlashAttention does on tensor cores — plus one ulp of the output dtype at
// the largest reference value (AttentionErrorBound). The log-sum-exp output
// follows the same rule in float32.
//
// Against the CPU (every other backend), element by element
// (AttentionTolerance, AttentionLSETolerance): see there.

// attentionScoreCoeff bounds the float32 rounding of one score, per unit of
// S = |scale|·Σₜ|q·k| + |mask|: a sum of at most 256 products rounded in any
// order (with or without fused multiply-adds) is within 256·2⁻²⁴ = 2⁻¹⁶ of
// S; typical errors are far smaller.
const attentionScoreCoeff = 1.0 / (1 << 16)

// ulpOf is one ulp at 1 of a float dtype: 2⁻²³ for F32, 2⁻¹⁰ for F16, 2⁻⁷
// for BF16.
func ulpOf(dt tensor.DType) float64 {
	switch dt {
	case tensor.F16:
		return ulpF16
	case tensor.BF16:
		return ulpBF16
	}
	return 1.0 / (1 << 23)
}

// AttentionErrorBound is the largest error against the float64 reference
// that the accuracy rule allows a backend: 2·naiveMaxErr + ulp(dt)·maxAbsRef,
// where naiveMaxErr is the largest error of the naive implementation at dt's
// precision over the case and maxAbsRef the largest |reference value|.
// The ulp term keeps the rule meaningful where the naive implementation
// happens to be exact (a single key, equal values) and covers a final
// rounding that falls the other way.
func AttentionErrorBound(dt tensor.DType, naiveMaxErr, maxAbsRef float64) float64 {
	return 2*naiveMaxErr + ulpOf(dt)*maxAbsRef
}

// AttentionTolerance is the tolerance of another backend's attention output
// (dtype dt) compared with the CPU's, where maxAbsV is the largest |value|
// and maxScoreAbs the largest S = |scale|·Σₜ|q·k| + |mask| over the visible
// keys. The two differ by:
//
//   - the order of the score sums (and fused multiply-adds): each score
//     within c·S (c = 2⁻¹⁶), moving each probability by a factor within
//     e^{±2c·S} after the shift by the maximum: at most 2c·S·max|v| in the
//     output;
//   - the GPU rounding the probabilities to dt before P·V (F16, BF16; the CPU
//     keeps float32): half an ulp of dt per probability, at most
//     ulp(dt)/2·max|v| in the output;
//   - device exp and float32 sums of the denominator in another order:
//     a few ulps of float32, 2⁻²⁰·max|v|;
//   - the final rounding to dt, which can fall to neighbouring values: one
//     ulp of the output (RTol).
//
// MaxNMSE is dt's default.
func AttentionTolerance(dt tensor.DType, maxAbsV, maxScoreAbs float64) Tolerance {
	pRounding := 0.0
	if dt == tensor.F16 || dt == tensor.BF16 {
		pRounding = ulpOf(dt) / 2
	}
	return Tolerance{
		ATol:    maxAbsV * (2*attentionScoreCoeff*maxScoreAbs + pRounding + 1.0/(1<<20)),
		RTol:    ulpOf(dt),
		MaxNMSE: baseTolerances[dt].MaxNMSE,
		Why: fmt.Sprintf("attention %v against the CPU: scores in another order (2·2⁻¹⁶·S, S = %.3g), "+
			"probabilities rounded to %v on the GPU, device exp, all times max|v| = %.3g; one ulp of the output",
			dt, maxScoreAbs, dt, maxAbsV),
	}
}

// AttentionLSETolerance is the tolerance of another backend's log-sum-exp
// (F32) compared with the CPU's: the scores' rounding moves the maximum and
// the weighted mean of the scores by at most c·S each (2c·S in all), and
// the denominator's sum and logarithm add a few ulps of float32.
func AttentionLSETolerance(maxScoreAbs float64) Tolerance {
	return Tolerance{
		ATol:    2*attentionScoreCoeff*maxScoreAbs + 1e-6,
		RTol:    4.0 / (1 << 23),
		MaxNMSE: baseTolerances[tensor.F32].MaxNMSE,
		Why: fmt.Sprintf("attention log-sum-exp against the CPU: scores in another order (2·2⁻¹⁶·S, S = %.3g), "+
			"the denominator's sum and log: a few ulps", maxScoreAbs),
	}
}
