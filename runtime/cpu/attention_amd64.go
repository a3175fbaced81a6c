//go:build amd64 && !purego

package cpu

import (
	"math"
	"unsafe"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// The attention's inner loops in assembly (attention_amd64.s), for CPUs
// with AVX2, FMA and F16C (useDotAsm, the same switch as the matmul dots):
// scores and P·V read K and V in place (paged or contiguous), widening
// F16 and BF16 in registers, and the probabilities are a vectorised float32
// exponential. See attentionTileAsm for how they are driven.

// attnScores2F16AVX2 sets out[r·outStride + j] = scale·(q_r·k_j) for the
// two query rows q_r = q + r·qStride and the nKeys keys k_j = k +
// j·kStride (strides in elements), over d elements, d a multiple of 8.
// Each dot is one 8-lane chain of fused multiply-adds in order over the
// head dimension, then its lanes a0..a7 summed as ((a0+a1)+(a2+a3)) +
// ((a4+a5)+(a6+a7)); attnScores1F16AVX2 forms it the same way.
//
//go:noescape
func attnScores2F16AVX2(q *float32, qStride int, k *uint16, kStride, nKeys, d int, scale float32, out *float32, outStride int)

// attnScores4F16AVX2 is attnScores2F16AVX2 for four query rows (two keys
// at a time: fewer conversions of K per multiply-add).
//
//go:noescape
func attnScores4F16AVX2(q *float32, qStride int, k *uint16, kStride, nKeys, d int, scale float32, out *float32, outStride int)

// attnScores4BF16AVX2 is attnScores4F16AVX2 for BF16 keys.
//
//go:noescape
func attnScores4BF16AVX2(q *float32, qStride int, k *uint16, kStride, nKeys, d int, scale float32, out *float32, outStride int)

// attnScores4F32AVX2 is attnScores4F16AVX2 for F32 keys.
//
//go:noescape
func attnScores4F32AVX2(q *float32, qStride int, k *float32, kStride, nKeys, d int, scale float32, out *float32, outStride int)

// attnScores1F16AVX2 is attnScores2F16AVX2 for one query row, out[j] the
// score of key j.
//
//go:noescape
func attnScores1F16AVX2(q *float32, k *uint16, kStride, nKeys, d int, scale float32, out *float32)

// attnPV4F16AVX2 adds Σⱼ p_r[j]·v_j to acc_r for the four rows acc_r = acc
// + r·accStride and p_r = p + r·pStride and the nKeys values v_j = v +
// j·vStride (strides in elements), over d elements, d a multiple of 8:
// each element one chain of fused multiply-adds in order of j, as
// attnPV1F16AVX2 forms it too.
//
//go:noescape
func attnPV4F16AVX2(acc *float32, accStride int, p *float32, pStride int, v *uint16, vStride, nKeys, d int)

// attnPV1F16AVX2 is attnPV4F16AVX2 for one row.
//
//go:noescape
func attnPV1F16AVX2(acc, p *float32, v *uint16, vStride, nKeys, d int)

// attnScores2BF16AVX2 is attnScores2F16AVX2 for BF16 keys.
//
//go:noescape
func attnScores2BF16AVX2(q *float32, qStride int, k *uint16, kStride, nKeys, d int, scale float32, out *float32, outStride int)

// attnScores1BF16AVX2 is attnScores1F16AVX2 for BF16 keys.
//
//go:noescape
func attnScores1BF16AVX2(q *float32, k *uint16, kStride, nKeys, d int, scale float32, out *float32)

// attnPV4BF16AVX2 is attnPV4F16AVX2 for BF16 values.
//
//go:noescape
func attnPV4BF16AVX2(acc *float32, accStride int, p *float32, pStride int, v *uint16, vStride, nKeys, d int)

// attnPV1BF16AVX2 is attnPV1F16AVX2 for BF16 values.
//
//go:noescape
func attnPV1BF16AVX2(acc, p *float32, v *uint16, vStride, nKeys, d int)

// attnScores2F32AVX2 is attnScores2F16AVX2 for F32 keys.
//
//go:noescape
func attnScores2F32AVX2(q *float32, qStride int, k *float32, kStride, nKeys, d int, scale float32, out *float32, outStride int)

// attnScores1F32AVX2 is attnScores1F16AVX2 for F32 keys.
//
//go:noescape
func attnScores1F32AVX2(q *float32, k *float32, kStride, nKeys, d int, scale float32, out *float32)

// attnPV4F32AVX2 is attnPV4F16AVX2 for F32 values.
//
//go:noescape
func attnPV4F32AVX2(acc *float32, accStride int, p *float32, pStride int, v *float32, vStride, nKeys, d int)

// attnPV1F32AVX2 is attnPV1F16AVX2 for F32 values.
//
//go:noescape
func attnPV1F32AVX2(acc, p *float32, v *float32, vStride, nKeys, d int)

// attnExpAVX2 replaces s[i] by exp(s[i] − m) in float32 for i < n, n a
// multiple of 8, and returns the sum of the new values (widened to
// float64, summed per lane in order of i, the 8 lanes then added in a
// fixed order). Every s[i] − m must be ≤ 0 or −Inf (not NaN); arguments
// below −87.34 give 0. Relative error of a value: a few float32 ulps.
//
//go:noescape
func attnExpAVX2(s *float32, n int, m float32) float64

// attnMaxAVX2 is the largest of s[0:n] (n a multiple of 8): −Inf when
// every s[i] is −Inf, NaN when any is NaN.
//
//go:noescape
func attnMaxAVX2(s *float32, n int) float32

// attnMax is attnMaxAVX2 over s (len(s) a multiple of 8).
func attnMax(s []float32) float32 {
	if len(s) == 0 {
		return float32(math.Inf(-1))
	}
	return attnMaxAVX2(&s[0], len(s))
}

// attnNormF16AVX2 sets dst[i] to float32(float64(acc[i]) / l) rounded to
// F16 (both to nearest even, as the Go path's division and
// tensor.F32ToF16 round) for i < n, n a multiple of 8, and reports whether
// any of the quotients is NaN (whose F16 bits differ from
// tensor.F32ToF16's; the caller stores such a row again).
//
//go:noescape
func attnNormF16AVX2(dst *uint16, acc *float32, n int, l float64) bool

// storeNormalizedF16 writes acc / l to the F16 row dst by attnNormF16AVX2
// and reports whether it did (false: a NaN, nothing the caller may keep).
func storeNormalizedF16(dst []uint16, acc []float32, l float64) bool {
	n := len(acc)
	if n == 0 || n%8 != 0 {
		return false
	}
	dst = dst[:n]
	return !attnNormF16AVX2(&dst[0], &acc[0], n, l)
}

// attnPrefetch asks for the cache lines of [p, p+nBytes), nBytes > 0. It
// reads nothing (a prefetch never faults), so p need not be valid memory.
//
//go:noescape
func attnPrefetch(p unsafe.Pointer, nBytes int)

// prefetchElems asks for elements [off, off+n) of v's memory (n > 0).
func prefetchElems(v *view, off, n int) {
	es := v.dt.BlockBytes()
	attnPrefetch(unsafe.Add(unsafe.Pointer(unsafe.SliceData(v.mem)), off*es), n*es)
}

// attentionAsmSupported reports whether this build has the attention's
// assembly kernels (they run when useDotAsm holds).
const attentionAsmSupported = true

// attnExp is attnExpAVX2 over s (len(s) a multiple of 8).
func attnExp(s []float32, m float32) float64 {
	if len(s) == 0 {
		return 0
	}
	return attnExpAVX2(&s[0], len(s), m)
}

// tileAsm is tileGo by the assembly kernels (d a multiple of 8) for KV
// head g, the item's gi-th, in the tile [j0, j1), which packTile
// has copied into w: the scores of four rows that see the same keys at
// once (else two, else one), the softmax step of every row, and the P·V products of four
// rows at once (else one), F16 and BF16 widened in registers. A row's
// scores and accumulator do not depend on which rows it is computed with
// (see attention_amd64.s).
func (job *attentionJob) tileAsm(w *attentionWorkspace, sq *attnSeq, g, gi, j0, j1 int, active []attentionRow) {
	d := job.s.HeadDim
	scale := job.s.Scale
	const pStride = attentionKeyTile
	base := gi * attentionKeyTile * d
	wide := job.av.k.dt == tensor.F32
	bf16 := job.av.k.dt == tensor.BF16
	for a := 0; a < len(active); {
		ra := &active[a]
		n := sameRows(active, a, 4, false)
		if n == 3 {
			n = 2
		}
		nKeys := ra.hi - ra.lo
		for _, rb := range active[a+1 : a+n] {
			// The rows' scores up to the latest last key: a score does not
			// depend on the others, and the extra ones (within the rows'
			// attentionKeyTile slots) are not read.
			nKeys = max(nKeys, rb.hi-ra.lo)
		}
		q := &w.qs[ra.r*d]
		out := &w.scores[ra.r*pStride]
		at := base + ra.lo*d
		switch {
		case wide && n == 4:
			attnScores4F32AVX2(q, d, &w.kScratch[at], d, nKeys, d, scale, out, pStride)
		case bf16 && n == 4:
			attnScores4BF16AVX2(q, d, &w.kPacked[at], d, nKeys, d, scale, out, pStride)
		case n == 4:
			attnScores4F16AVX2(q, d, &w.kPacked[at], d, nKeys, d, scale, out, pStride)
		case wide && n == 2:
			attnScores2F32AVX2(q, d, &w.kScratch[at], d, nKeys, d, scale, out, pStride)
		case wide:
			attnScores1F32AVX2(q, &w.kScratch[at], d, nKeys, d, scale, out)
		case bf16 && n == 2:
			attnScores2BF16AVX2(q, d, &w.kPacked[at], d, nKeys, d, scale, out, pStride)
		case bf16:
			attnScores1BF16AVX2(q, &w.kPacked[at], d, nKeys, d, scale, out)
		case n == 2:
			attnScores2F16AVX2(q, d, &w.kPacked[at], d, nKeys, d, scale, out, pStride)
		default:
			attnScores1F16AVX2(q, &w.kPacked[at], d, nKeys, d, scale, out)
		}
		a += n
	}
	for a := range active {
		job.softmaxStep(w, &active[a], true)
	}
	for a := 0; a < len(active); {
		ra := &active[a]
		if ra.skip {
			a++
			continue
		}
		n := sameRows(active, a, 4, true)
		if n != 4 {
			job.pv1(w, base, ra, 0)
			a++
			continue
		}
		// The four rows' common keys together, then each row's own rest:
		// every accumulator element still adds its products in order of key.
		common := ra.hi
		for _, rb := range active[a+1 : a+4] {
			common = min(common, rb.hi)
		}
		nKeys := common - ra.lo
		acc := &w.acc[ra.r*d]
		p := &w.scores[ra.r*pStride]
		at := base + ra.lo*d
		switch {
		case wide:
			attnPV4F32AVX2(acc, d, p, pStride, &w.vScratch[at], d, nKeys, d)
		case bf16:
			attnPV4BF16AVX2(acc, d, p, pStride, &w.vPacked[at], d, nKeys, d)
		default:
			attnPV4F16AVX2(acc, d, p, pStride, &w.vPacked[at], d, nKeys, d)
		}
		for i := range 4 {
			job.pv1(w, base, &active[a+i], nKeys)
		}
		a += 4
	}
}

// pv1 adds row ra's products for its visible keys from the skip-th on (in
// the tile packed at base) to its accumulator.
func (job *attentionJob) pv1(w *attentionWorkspace, base int, ra *attentionRow, skip int) {
	nKeys := ra.hi - ra.lo - skip
	if nKeys <= 0 {
		return
	}
	d := job.s.HeadDim
	acc := &w.acc[ra.r*d]
	p := &w.scores[ra.r*attentionKeyTile+skip]
	at := base + (ra.lo+skip)*d
	switch job.av.v.dt {
	case tensor.F32:
		attnPV1F32AVX2(acc, p, &w.vScratch[at], d, nKeys, d)
	case tensor.BF16:
		attnPV1BF16AVX2(acc, p, &w.vPacked[at], d, nKeys, d)
	default:
		attnPV1F16AVX2(acc, p, &w.vPacked[at], d, nKeys, d)
	}
}
