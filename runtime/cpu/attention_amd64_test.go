//go:build amd64 && !purego

package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// The attention's assembly kernels one by one (the whole call by both
// paths is in attention_kernels_test.go).

// TestAttnExp: the vectorised exponential against math.Exp over the range
// the softmax uses (s − m ≤ 0, −Inf included), and its sum.
func TestAttnExp(t *testing.T) {
	if !attentionAsmSupported || !dotAsmSupported {
		t.Skip("no attention assembly on this machine or build")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 4096
	m := float32(1.5)
	s := make([]float32, n)
	for i := range s {
		switch {
		case i%97 == 0:
			s[i] = float32(math.Inf(-1))
		case i%5 == 0:
			s[i] = m - float32(rng.Float64()*120) // down to far below the float32 range
		default:
			s[i] = m - float32(rng.Float64()*20)
		}
	}
	s[1] = m // exp(0) = 1 exactly
	orig := append([]float32(nil), s...)
	sum := attnExp(s, m)
	wantSum, maxRel := 0.0, 0.0
	for i, x := range orig {
		want := math.Exp(float64(x) - float64(m))
		wantSum += float64(s[i])
		if float64(x)-float64(m) < -87.34 {
			if s[i] != 0 {
				t.Fatalf("exp(%g) = %g, want 0 (below the cut-off)", float64(x)-float64(m), s[i])
			}
			continue
		}
		rel := math.Abs(float64(s[i])-want) / want
		if rel > 4*0x1p-24 {
			t.Fatalf("exp(%g) = %g, want %g (relative error %.3g, more than 4 float32 ulps)", float64(x)-float64(m), s[i], want, rel)
		}
		maxRel = max(maxRel, rel)
	}
	if s[1] != 1 {
		t.Errorf("exp(0) = %g, want 1", s[1])
	}
	if math.Abs(sum-wantSum) > 1e-12*wantSum {
		t.Errorf("sum %g, want %g (the sum of the values written)", sum, wantSum)
	}
	t.Logf("max relative error %.3g (%.2f float32 ulps)", maxRel, maxRel/0x1p-24)
}

// TestAttnMaxAndNormF16: the vectorised tile maximum (NaN wins, −Inf for
// an all −Inf tile) and the F16 output store against tensor.F32ToF16 of
// the float64 quotient, over values that round to F16 normals,
// subnormals, zero and overflow.
func TestAttnMaxAndNormF16(t *testing.T) {
	if !attentionAsmSupported || !dotAsmSupported {
		t.Skip("no attention assembly on this machine or build")
	}
	ninf := float32(math.Inf(-1))
	s := []float32{ninf, -3, 7, 2, ninf, 7.5, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8}
	if got := attnMax(s); got != 8 {
		t.Errorf("max = %g, want 8", got)
	}
	if got := attnMax(s[:8]); got != 7.5 {
		t.Errorf("max of the first 8 = %g, want 7.5", got)
	}
	allInf := []float32{ninf, ninf, ninf, ninf, ninf, ninf, ninf, ninf}
	if got := attnMax(allInf); !math.IsInf(float64(got), -1) {
		t.Errorf("max of −Inf = %g, want −Inf", got)
	}
	s[13] = float32(math.NaN())
	if got := attnMax(s); got == got {
		t.Errorf("max with a NaN = %g, want NaN", got)
	}

	rng := rand.New(rand.NewPCG(5, 6))
	const n = 1 << 14
	acc := make([]float32, n)
	for i := range acc {
		// Magnitudes from 2^-30 (below F16's subnormals) to 2^20 (above its range).
		acc[i] = float32(math.Ldexp(rng.Float64()+0.5, rng.IntN(50)-30))
		if i%2 == 1 {
			acc[i] = -acc[i]
		}
	}
	acc[0], acc[1] = 0, float32(math.Copysign(0, -1))
	for _, l := range []float64{1, 3, 0.7, 1e-3} {
		got := make([]uint16, n)
		if !storeNormalizedF16(got, acc, l) {
			t.Fatalf("l = %g: reported a NaN", l)
		}
		for i, a := range acc {
			want := tensor.F32ToF16(float32(float64(a) / l))
			if got[i] != want {
				t.Fatalf("l = %g: acc %g: F16 bits %#04x, want %#04x", l, a, got[i], want)
			}
		}
	}
	acc[9] = float32(math.NaN())
	if storeNormalizedF16(make([]uint16, n), acc, 1) {
		t.Error("a NaN quotient was not reported")
	}
}

// TestAttnKernelsAgreeAcrossRowCounts: a score or an accumulator element
// is the same bits whether the four-, two- or one-row kernel computes it,
// for every key dtype, odd key counts and head dims that are not multiples
// of 16 (the property that keeps a row's result independent of the rows
// it is grouped with); and each is within float32 rounding of a float64
// dot product.
func TestAttnKernelsAgreeAcrossRowCounts(t *testing.T) {
	if !attentionAsmSupported || !dotAsmSupported {
		t.Skip("no attention assembly on this machine or build")
	}
	rng := rand.New(rand.NewPCG(8, 9))
	for _, dt := range []tensor.DType{tensor.F16, tensor.BF16, tensor.F32} {
		for _, d := range []int{8, 40, 128, 136} {
			for _, nKeys := range []int{1, 2, 5, 64} {
				q := make([]float32, 4*d)
				for i := range q {
					q[i] = float32(rng.NormFloat64())
				}
				kv := roundTo(dt, func() []float32 {
					v := make([]float32, nKeys*d)
					for i := range v {
						v[i] = float32(rng.NormFloat64())
					}
					return v
				}())
				k16 := make([]uint16, len(kv))
				for i, x := range kv {
					if dt == tensor.F16 {
						k16[i] = tensor.F32ToF16(x)
					} else {
						k16[i] = tensor.F32ToBF16(x)
					}
				}
				const stride = 64
				const scale = float32(0.125)
				s4, s2, s1 := make([]float32, 4*stride), make([]float32, 4*stride), make([]float32, 4*stride)
				switch dt {
				case tensor.F32:
					attnScores4F32AVX2(&q[0], d, &kv[0], d, nKeys, d, scale, &s4[0], stride)
					attnScores2F32AVX2(&q[0], d, &kv[0], d, nKeys, d, scale, &s2[0], stride)
					attnScores2F32AVX2(&q[2*d], d, &kv[0], d, nKeys, d, scale, &s2[2*stride], stride)
					for r := range 4 {
						attnScores1F32AVX2(&q[r*d], &kv[0], d, nKeys, d, scale, &s1[r*stride])
					}
				case tensor.F16:
					attnScores4F16AVX2(&q[0], d, &k16[0], d, nKeys, d, scale, &s4[0], stride)
					attnScores2F16AVX2(&q[0], d, &k16[0], d, nKeys, d, scale, &s2[0], stride)
					attnScores2F16AVX2(&q[2*d], d, &k16[0], d, nKeys, d, scale, &s2[2*stride], stride)
					for r := range 4 {
						attnScores1F16AVX2(&q[r*d], &k16[0], d, nKeys, d, scale, &s1[r*stride])
					}
				case tensor.BF16:
					attnScores4BF16AVX2(&q[0], d, &k16[0], d, nKeys, d, scale, &s4[0], stride)
					attnScores2BF16AVX2(&q[0], d, &k16[0], d, nKeys, d, scale, &s2[0], stride)
					attnScores2BF16AVX2(&q[2*d], d, &k16[0], d, nKeys, d, scale, &s2[2*stride], stride)
					for r := range 4 {
						attnScores1BF16AVX2(&q[r*d], &k16[0], d, nKeys, d, scale, &s1[r*stride])
					}
				}
				for r := range 4 {
					for j := range nKeys {
						i := r*stride + j
						if s4[i] != s2[i] || s4[i] != s1[i] {
							t.Fatalf("%v d=%d nKeys=%d: score (row %d, key %d): 4 rows %g, 2 rows %g, 1 row %g",
								dt, d, nKeys, r, j, s4[i], s2[i], s1[i])
						}
						want := 0.0
						sumAbs := 0.0
						for e := range d {
							p := float64(q[r*d+e]) * float64(kv[j*d+e])
							want += p
							sumAbs += math.Abs(p)
						}
						want *= float64(scale)
						if e := math.Abs(float64(s4[i]) - want); e > float64(d)*0x1p-23*sumAbs*float64(scale)+1e-30 {
							t.Fatalf("%v d=%d: score (row %d, key %d) = %g, want %g", dt, d, r, j, s4[i], want)
						}
					}
				}

				// P·V: the four-row kernel against the one-row kernel, from the
				// same starting accumulators.
				p := make([]float32, 4*stride)
				for i := range p {
					p[i] = float32(rng.Float64())
				}
				acc4, acc1 := make([]float32, 4*d), make([]float32, 4*d)
				for i := range acc4 {
					acc4[i] = float32(rng.NormFloat64())
				}
				copy(acc1, acc4)
				switch dt {
				case tensor.F32:
					attnPV4F32AVX2(&acc4[0], d, &p[0], stride, &kv[0], d, nKeys, d)
					for r := range 4 {
						attnPV1F32AVX2(&acc1[r*d], &p[r*stride], &kv[0], d, nKeys, d)
					}
				case tensor.F16:
					attnPV4F16AVX2(&acc4[0], d, &p[0], stride, &k16[0], d, nKeys, d)
					for r := range 4 {
						attnPV1F16AVX2(&acc1[r*d], &p[r*stride], &k16[0], d, nKeys, d)
					}
				case tensor.BF16:
					attnPV4BF16AVX2(&acc4[0], d, &p[0], stride, &k16[0], d, nKeys, d)
					for r := range 4 {
						attnPV1BF16AVX2(&acc1[r*d], &p[r*stride], &k16[0], d, nKeys, d)
					}
				}
				for i := range acc4 {
					if acc4[i] != acc1[i] {
						t.Fatalf("%v d=%d nKeys=%d: accumulator %d: 4 rows %g, 1 row %g", dt, d, nKeys, i, acc4[i], acc1[i])
					}
				}
			}
		}
	}
}
