//go:build amd64 && !purego

package cpu

import (
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// TestDotAsmDetection: on amd64 the detection agrees with /proc/cpuinfo
// where that file exists (Linux), so the assembly cannot be skipped, or
// chosen, by a detection bug unnoticed.
func TestDotAsmDetection(t *testing.T) {
	want, ok := cpuinfoHasAVX2FMAF16C(t)
	if !ok {
		t.Skip("no x86 /proc/cpuinfo flags to compare with")
	}
	if dotAsmSupported != want {
		t.Errorf("dotAsmSupported = %v, /proc/cpuinfo says avx2, fma and f16c: %v", dotAsmSupported, want)
	}
	if !dotAsmSupported {
		t.Log("assembly dots not supported here (or built with purego / not amd64): only the Go dots are tested")
	}
}

// cpuinfoHasAVX2FMAF16C reads the first "flags" line of /proc/cpuinfo;
// ok is false where there is none.
func cpuinfoHasAVX2FMAF16C(t *testing.T) (has, ok bool) {
	t.Helper()
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false, false
	}
	for line := range strings.Lines(string(data)) {
		name, value, found := strings.Cut(line, ":")
		if !found || strings.TrimSpace(name) != "flags" {
			continue
		}
		flags := strings.Fields(value)
		return slices.Contains(flags, "avx2") && slices.Contains(flags, "fma") && slices.Contains(flags, "f16c"), true
	}
	return false, false
}

// TestBlockedMicroKernelsAgree: dot2x4AVX2's eight sums equal dot1x1AVX2's
// bit for bit (the blocked path's results must not depend on how rows and
// columns are grouped), and both are close to the float64 dot, for
// lengths from 8 to 264 and rows at odd offsets.
func TestBlockedMicroKernelsAgree(t *testing.T) {
	if !dotAsmSupported {
		t.Skip("no AVX2/FMA/F16C on this CPU")
	}
	rng := rand.New(rand.NewPCG(51, 52))
	for n := 8; n <= 264; n += 8 {
		vecs := make([][]float32, 6) // x0, x1, w0..w3
		for v := range vecs {
			buf := make([]float32, n+v+1)
			for i := range buf {
				buf[i] = float32(rng.NormFloat64())
			}
			vecs[v] = buf[v+1:]
		}
		var out [8]float32
		dot2x4AVX2(&vecs[0][0], &vecs[1][0], &vecs[2][0], &vecs[3][0], &vecs[4][0], &vecs[5][0], n, &out)
		for r := range 2 {
			for c := range 4 {
				x, w := vecs[r], vecs[2+c]
				one := dot1x1AVX2(&x[0], &w[0], n)
				if got := out[4*r+c]; math.Float32bits(got) != math.Float32bits(one) {
					t.Errorf("n=%d x%d·w%d: dot2x4AVX2 %v, dot1x1AVX2 %v", n, r, c, got, one)
				}
				var want, sumAbs float64
				for i := range n {
					want += float64(x[i]) * float64(w[i])
					sumAbs += math.Abs(float64(x[i]) * float64(w[i]))
				}
				if d := math.Abs(float64(one) - want); d > float64(n)*0x1p-24*sumAbs {
					t.Errorf("n=%d x%d·w%d: %v, want %v (diff %.3g)", n, r, c, one, want, d)
				}
			}
		}
	}
}

// TestHalfConversionsAllPatterns: the assembly F16 (VCVTPH2PS) and BF16
// (widen and shift) decodes agree with the Go decodes for every one of the
// 65536 bit patterns, subnormals, infinities and NaNs included: a dot of
// [p, 0, ..., 0] with [1, 0, ..., 0] is p itself.
func TestHalfConversionsAllPatterns(t *testing.T) {
	if !dotAsmSupported {
		t.Skip("no AVX2/FMA/F16C on this CPU")
	}
	f16 := f16Table()
	x := []float32{1, 0, 0, 0, 0, 0, 0, 0}
	w := make([]uint16, 8)
	bad := 0
	for p := range 1 << 16 {
		w[0] = uint16(p)
		for _, c := range []struct {
			name string
			got  float32
			want float32
		}{
			{"F16", dotF16AVX2(&w[0], &x[0], 8), f16[p]},
			{"BF16", dotBF16AVX2(&w[0], &x[0], 8), tensor.BF16ToF32(uint16(p))},
		} {
			same := c.got == c.want || (math.IsNaN(float64(c.got)) && math.IsNaN(float64(c.want)))
			if !same {
				if bad < 10 {
					t.Errorf("%s pattern %#04x: assembly %v, Go %v", c.name, p, c.got, c.want)
				}
				bad++
			}
		}
	}
}
