package conformance

import (
	"math"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

func TestCompare(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	loose := Tolerance{ATol: 0.1, RTol: 0.01, MaxNMSE: 1}
	for _, tc := range []struct {
		name       string
		got, want  []float64
		dt         tensor.DType
		tol        Tolerance
		ok         bool
		worst      int
		worstIndex []int
	}{
		{"equal", []float64{1, 2}, []float64{1, 2}, tensor.F32, Exact, true, 0, []int{0}},
		// |3.2 − 3| = 0.2 > 0.1 + 0.03; element 1 of shape [2] is the worst.
		{"outside", []float64{1, 3.2}, []float64{1, 3}, tensor.F32, loose, false, 1, []int{1}},
		// 0.12 ≤ 0.1 + 0.01·3 = 0.13 passes.
		{"inside", []float64{1, 3.12}, []float64{1, 3}, tensor.F32, loose, true, 1, []int{1}},
		{"NaN got", []float64{nan, 1}, []float64{1, 1}, tensor.F32, loose, false, 0, []int{0}},
		{"NaN want", []float64{1, 1}, []float64{1, nan}, tensor.F32, loose, false, 1, []int{1}},
		{"NaN both", []float64{nan}, []float64{nan}, tensor.F32, loose, true, 0, []int{0}},
		// An infinite reference must be matched exactly, however loose the tolerance.
		{"Inf vs large", []float64{1e300}, []float64{inf}, tensor.F32, Tolerance{ATol: 1e300, RTol: 1e300, MaxNMSE: 1e300}, false, 0, []int{0}},
		{"Inf vs -Inf", []float64{-inf}, []float64{inf}, tensor.F32, loose, false, 0, []int{0}},
		{"Inf both", []float64{inf}, []float64{inf}, tensor.F32, Exact, true, 0, []int{0}},
		// The reference is rounded through F16 first: 1 + 2⁻¹² rounds to 1.
		{"rounded through F16", []float64{1}, []float64{1 + 1.0/4096}, tensor.F16, Exact, true, 0, []int{0}},
		// In F32 the same values differ.
		{"not rounded away in F32", []float64{1}, []float64{1 + 1.0/4096}, tensor.F32, Exact, false, 0, []int{0}},
		// 65520 rounds to +Inf in F16, so a backend's +Inf is right.
		{"overflow to Inf in F16", []float64{inf}, []float64{65520}, tensor.F16, Exact, true, 0, []int{0}},
		// Shape [2, 3]: flat element 4 is index [1 1].
		{"multi-index", []float64{0, 0, 0, 0, 5, 0}, []float64{0, 0, 0, 0, 0, 0}, tensor.F32, loose, false, 4, []int{1, 1}},
	} {
		shape := []int{len(tc.want)}
		if len(tc.worstIndex) == 2 {
			shape = []int{2, 3}
		}
		r := Compare(tc.got, tc.want, tc.dt, shape, tc.tol)
		if r.OK() != tc.ok {
			t.Errorf("%s: OK() = %v, want %v (%v)", tc.name, r.OK(), tc.ok, r)
		}
		if r.Worst != tc.worst || !equalInts(r.WorstIndex, tc.worstIndex) {
			t.Errorf("%s: worst element %d %v, want %d %v", tc.name, r.Worst, r.WorstIndex, tc.worst, tc.worstIndex)
		}
	}

	// The report names the worst element, its index and both values.
	r := Compare([]float64{1, 2, 7}, []float64{1, 2, 3}, tensor.F32, []int{3}, loose)
	s := r.String()
	for _, part := range []string{"FAILED", "1 of 3", "[2]", "got 7", "want 3"} {
		if !strings.Contains(s, part) {
			t.Errorf("report %q should contain %q", s, part)
		}
	}

	// Many small errors that each pass can still fail the NMSE bound.
	many := Tolerance{ATol: 0.5, RTol: 0, MaxNMSE: 0.01}
	r = Compare([]float64{1.4, 1.4, 1.4, 1.4}, []float64{1, 1, 1, 1}, tensor.F32, []int{4}, many)
	if r.Failures != 0 || r.OK() || math.Abs(r.NMSE-0.16) > 1e-12 {
		t.Errorf("NMSE: failures %d, NMSE %v (want 0.16), OK %v", r.Failures, r.NMSE, r.OK())
	}

	// Lengths that differ fail.
	if r := Compare([]float64{1}, []float64{1, 2}, tensor.F32, []int{2}, loose); r.OK() {
		t.Errorf("different lengths passed")
	}
}

func TestToleranceTable(t *testing.T) {
	ops := []string{op.NameCopy, op.NameAdd, op.NameMul, op.NameSiLU, op.NameGELU, op.NameSoftmax,
		op.NameRMSNorm, op.NameLayerNorm, op.NameRoPE, op.NameEmbedding, op.NameArgmax}
	for _, name := range ops {
		for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
			tol := For(name, dt)
			if tol.Why == "" {
				t.Errorf("%s %v: tolerance without a reason", name, dt)
			}
			if name != op.NameCopy && name != op.NameArgmax && (tol.RTol <= 0 || tol.RTol > 0.02) {
				t.Errorf("%s %v: RTol %v outside (0, 0.02]", name, dt, tol.RTol)
			}
		}
	}
	// Half types are looser than F32, and copies are exact.
	if !(For(op.NameAdd, tensor.F32).RTol < For(op.NameAdd, tensor.F16).RTol &&
		For(op.NameAdd, tensor.F16).RTol < For(op.NameAdd, tensor.BF16).RTol) {
		t.Errorf("tolerances should grow from F32 to F16 to BF16")
	}
	if For(op.NameCopy, tensor.F16) != Exact || For(op.NameArgmax, tensor.I32) != Exact {
		t.Errorf("copy and argmax must be exact")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
