//go:build !amd64 || purego

package cpu

import "math"

// Without the amd64 assembly (other architectures, or the purego build
// tag) the attention always runs the Go loops.

// attentionAsmSupported is false: there are no attention kernels in this
// build.
const attentionAsmSupported = false

// tileAsm is never called in this build (attentionAsmSupported is false);
// it runs the Go loops so that it is correct if it were.
func (job *attentionJob) tileAsm(w *attentionWorkspace, sq *attnSeq, g, gi, j0, j1 int, active []attentionRow) {
	job.tileGo(w, sq, g, j0, j1, active)
}

// attnExp is never called in this build; it is the Go loop's exponential.
func attnExp(s []float32, m float32) float64 {
	var sum float64
	for j, x := range s {
		p := float32(math.Exp(float64(x) - float64(m)))
		s[j] = p
		sum += float64(p)
	}
	return sum
}

// attnMax is never called in this build; it is the largest of s, NaN when
// any is NaN.
func attnMax(s []float32) float32 {
	m := float32(math.Inf(-1))
	for _, x := range s {
		if x > m || x != x {
			m = x
			if x != x {
				break
			}
		}
	}
	return m
}

// storeNormalizedF16 is never called in this build; it reports that it
// stored nothing.
func storeNormalizedF16(dst []uint16, acc []float32, l float64) bool { return false }

// prefetchElems does nothing in this build.
func prefetchElems(v *view, off, n int) {}
