package cpu

import (
	"fmt"
	"math"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// The fused path of MatMul: for few rows of x, each output element is one
// dot product read straight from w's storage, dequantization folded into
// the sum (Σq·x per block, then one multiply by the block's scale), so that
// the work per weight byte is small and w streams from memory once.
//
// Every product is wrapped in float32(...) so that the compiler cannot fuse
// it into a multiply-add (it would on arm64): results are then the same on
// every architecture. Partial sums are kept four (or two, or per sub-block)
// at a time, in a fixed order, so that the additions overlap.
//
// On amd64 CPUs with AVX2, FMA and F16C, fusedColumns runs the assembly
// versions of these dots instead (matmul_dot_amd64.s, useDotAsm): the same
// per-block formulas in 8-lane fused multiply-adds, and for four rows of x
// at a time the weights decoded once.

// Small decode tables: a load from L1 is cheaper than an integer-to-float
// conversion, and indexing a [2^b] array with a b-bit value needs no bounds
// check.
var (
	// int8ToF32[q] is q read as int8 (Q8_0 quants).
	int8ToF32 = func() (t [256]float32) {
		for i := range t {
			t[i] = float32(int8(i))
		}
		return t
	}()
	// q4ToF32[q] is q − 8 (Q4_0 quants).
	q4ToF32 = func() (t [16]float32) {
		for i := range t {
			t[i] = float32(i - 8)
		}
		return t
	}()
	// nibbleToF32[q] is q (Q4_K quants, whose offset is the block's min).
	nibbleToF32 = func() (t [16]float32) {
		for i := range t {
			t[i] = float32(i)
		}
		return t
	}()
	// q6ToF32[q] is q − 32 (Q6_K quants).
	q6ToF32 = func() (t [64]float32) {
		for i := range t {
			t[i] = float32(i - 32)
		}
		return t
	}()
)

// fusedColumns computes output columns [j0, j1) for every row (at most
// fusedMaxRowsAsm) by the fused path.
func (job *matmulJob) fusedColumns(j0, j1 int) error {
	m, k := job.m, job.k
	if m > fusedMaxRowsAsm {
		return fmt.Errorf("fused path for %d rows (at most %d)", m, fusedMaxRowsAsm) // unreachable: matmulPathFor
	}
	f16 := f16Table()
	var sums [2][fusedMaxRowsAsm]float32 // [weight][row]
	for j := j0; j < j1; j++ {
		for w := range job.ws {
			if useDotAsm {
				job.ws[w].fusedDotsAsm(j, job.xs, job.xSums32, sums[w][:m])
				continue
			}
			for i := range m {
				var xSums []float32
				if job.xSums32 != nil {
					xSums = job.xSums32[i*k/32 : (i+1)*k/32]
				}
				sums[w][i] = job.ws[w].fusedDotGo(j, job.xs[i*k:(i+1)*k], xSums, f16)
			}
		}
		for i := range m {
			job.store(i, j, sums[0][i], sums[1][i])
		}
	}
	return nil
}

// useDotAsm selects the assembly kernels (matmul_dot_amd64.s) where the
// CPU supports them: the fused path's dots, its row limit (matmulPathFor)
// and the blocked path's micro-kernels (addChunkProductsAsm).
// Tests set it to false to run the Go dots on the same machine; nothing
// else writes it.
var useDotAsm = dotAsmSupported

// fusedDotGo returns Σₜ x[t]·w[j, t] over the k elements of row j by the
// Go dots below. xSums32 is the sum of each 32 elements of x, for Q4_K.
func (w *weightRows) fusedDotGo(j int, x, xSums32 []float32, f16 *[1 << 16]float32) float32 {
	k := w.k
	switch w.dt {
	case tensor.F32:
		return dotF32(w.rowF32(j, 0, k), x)
	case tensor.F16:
		return dotF16(w.rowU16(j, 0, k), x, f16)
	case tensor.BF16:
		return dotBF16(w.rowU16(j, 0, k), x)
	case tensor.Q8_0:
		return dotQ8_0(w.rowBlocks(j, 0, k), x, f16)
	case tensor.Q4_0:
		return dotQ4_0(w.rowBlocks(j, 0, k), x, f16)
	case tensor.Q4_K:
		return dotQ4_K(w.rowBlocks(j, 0, k), x, xSums32, f16)
	case tensor.Q6_K:
		return dotQ6_K(w.rowBlocks(j, 0, k), x, f16)
	}
	return float32(math.NaN()) // unreachable: op.CheckMatMul admits only the types above
}

// dotF32 is Σ w[t]·x[t] with four partial sums (element t goes to sum t mod 4).
func dotF32(w, x []float32) float32 {
	w = w[:len(x)]
	var s0, s1, s2, s3 float32
	t := 0
	for ; t+4 <= len(x); t += 4 {
		xx, ww := x[t:t+4:t+4], w[t:t+4:t+4]
		s0 += float32(ww[0] * xx[0])
		s1 += float32(ww[1] * xx[1])
		s2 += float32(ww[2] * xx[2])
		s3 += float32(ww[3] * xx[3])
	}
	for ; t < len(x); t++ {
		s0 += float32(w[t] * x[t])
	}
	return (s0 + s1) + (s2 + s3)
}

// dotF16 is dotF32 for F16 weights, decoded through f16.
func dotF16(w []uint16, x []float32, f16 *[1 << 16]float32) float32 {
	w = w[:len(x)]
	var s0, s1, s2, s3 float32
	t := 0
	for ; t+4 <= len(x); t += 4 {
		xx, ww := x[t:t+4:t+4], w[t:t+4:t+4]
		s0 += float32(f16[ww[0]] * xx[0])
		s1 += float32(f16[ww[1]] * xx[1])
		s2 += float32(f16[ww[2]] * xx[2])
		s3 += float32(f16[ww[3]] * xx[3])
	}
	for ; t < len(x); t++ {
		s0 += float32(f16[w[t]] * x[t])
	}
	return (s0 + s1) + (s2 + s3)
}

// dotBF16 is dotF32 for BF16 weights.
func dotBF16(w []uint16, x []float32) float32 {
	w = w[:len(x)]
	var s0, s1, s2, s3 float32
	t := 0
	for ; t+4 <= len(x); t += 4 {
		xx, ww := x[t:t+4:t+4], w[t:t+4:t+4]
		s0 += float32(tensor.BF16ToF32(ww[0]) * xx[0])
		s1 += float32(tensor.BF16ToF32(ww[1]) * xx[1])
		s2 += float32(tensor.BF16ToF32(ww[2]) * xx[2])
		s3 += float32(tensor.BF16ToF32(ww[3]) * xx[3])
	}
	for ; t < len(x); t++ {
		s0 += float32(tensor.BF16ToF32(w[t]) * x[t])
	}
	return (s0 + s1) + (s2 + s3)
}

// f16At decodes the little-endian F16 at b[0:2] through the table.
func f16At(f16 *[1 << 16]float32, b0, b1 byte) float32 {
	return f16[uint16(b0)|uint16(b1)<<8]
}

// dotQ8_0 is Σ over Q8_0 blocks (f16 d, int8 q[32]) of d·Σₜ q[t]·x[t], the
// inner sum in four partial sums.
func dotQ8_0(row []byte, x []float32, f16 *[1 << 16]float32) float32 {
	var acc float32
	for b := range len(x) / 32 {
		blk := (*[tensor.BlockBytesQ8_0]byte)(row[tensor.BlockBytesQ8_0*b:])
		xb := (*[32]float32)(x[32*b:])
		q := (*[32]byte)(blk[2:])
		var s0, s1, s2, s3 float32
		for t := 0; t <= 28; t += 4 {
			s0 += float32(int8ToF32[q[t]] * xb[t])
			s1 += float32(int8ToF32[q[t+1]] * xb[t+1])
			s2 += float32(int8ToF32[q[t+2]] * xb[t+2])
			s3 += float32(int8ToF32[q[t+3]] * xb[t+3])
		}
		acc += float32(f16At(f16, blk[0], blk[1]) * ((s0 + s1) + (s2 + s3)))
	}
	return acc
}

// dotQ4_0 is Σ over Q4_0 blocks (f16 d, 16 bytes: element t in the low
// nibble of byte t, element t+16 in its high nibble) of d·Σₜ (q[t]−8)·x[t].
func dotQ4_0(row []byte, x []float32, f16 *[1 << 16]float32) float32 {
	var acc float32
	for b := range len(x) / 32 {
		blk := (*[tensor.BlockBytesQ4_0]byte)(row[tensor.BlockBytesQ4_0*b:])
		xb := (*[32]float32)(x[32*b:])
		q := (*[16]byte)(blk[2:])
		var s0, s1, s2, s3 float32
		for t := 0; t <= 14; t += 2 {
			v0, v1 := q[t], q[t+1]
			s0 += float32(q4ToF32[v0&15] * xb[t])
			s1 += float32(q4ToF32[v1&15] * xb[t+1])
			s2 += float32(q4ToF32[v0>>4] * xb[t+16])
			s3 += float32(q4ToF32[v1>>4] * xb[t+17])
		}
		acc += float32(f16At(f16, blk[0], blk[1]) * ((s0 + s1) + (s2 + s3)))
	}
	return acc
}

// q4KScaleMin unpacks the 6-bit scale and min of sub-block j (0..7) from a
// Q4_K block's 12 scale bytes (ggml's get_scale_min_k4): bytes 0..3 hold the
// scales of sub-blocks 0..3 in their low 6 bits and bytes 4..7 their mins;
// bytes 8..11 hold the low 4 bits of scale (low nibble) and min (high
// nibble) of sub-blocks 4..7, whose top 2 bits are the top 2 bits of bytes
// 0..3 (scales) and 4..7 (mins).
func q4KScaleMin(j int, sc *[12]byte) (scale, min float32) {
	if j < 4 {
		return float32(sc[j] & 63), float32(sc[j+4] & 63)
	}
	return float32(sc[j+4]&15 | (sc[j-4]>>6)<<4), float32(sc[j+4]>>4 | (sc[j]>>6)<<4)
}

// dotQ4_K is Σ over Q4_K super-blocks (f16 d, f16 dmin, 12 scale bytes, 128
// quant bytes) of Σ over its eight 32-element sub-blocks s of
// (d·scale_s)·Σₜ q[t]·x[t] − (dmin·min_s)·Σₜ x[t], the sub-block's Σx taken
// from xSums32. Quant byte l of chunk c (0..3) holds element 64c+l in its
// low nibble (sub-block 2c) and element 64c+32+l in its high nibble
// (sub-block 2c+1).
func dotQ4_K(row []byte, x, xSums32 []float32, f16 *[1 << 16]float32) float32 {
	var acc float32
	for b := range len(x) / 256 {
		blk := (*[tensor.BlockBytesQ4_K]byte)(row[tensor.BlockBytesQ4_K*b:])
		xb := (*[256]float32)(x[256*b:])
		xs := (*[8]float32)(xSums32[8*b:])
		d, dmin := f16At(f16, blk[0], blk[1]), f16At(f16, blk[2], blk[3])
		sc := (*[12]byte)(blk[4:])
		var sb float32
		for c := range 4 {
			q := (*[32]byte)(blk[16+32*c:])
			lo := (*[32]float32)(xb[64*c:])
			hi := (*[32]float32)(xb[64*c+32:])
			var a0, a1, h0, h1 float32
			for l := 0; l <= 30; l += 2 {
				v0, v1 := q[l], q[l+1]
				a0 += float32(nibbleToF32[v0&15] * lo[l])
				a1 += float32(nibbleToF32[v1&15] * lo[l+1])
				h0 += float32(nibbleToF32[v0>>4] * hi[l])
				h1 += float32(nibbleToF32[v1>>4] * hi[l+1])
			}
			s1, m1 := q4KScaleMin(2*c, sc)
			s2, m2 := q4KScaleMin(2*c+1, sc)
			d1, min1 := float32(d*s1), float32(dmin*m1)
			d2, min2 := float32(d*s2), float32(dmin*m2)
			sb += float32(d1*(a0+a1)) - float32(min1*xs[2*c])
			sb += float32(d2*(h0+h1)) - float32(min2*xs[2*c+1])
		}
		acc += sb
	}
	return acc
}

// dotQ6_K is Σ over Q6_K super-blocks (ql[128] low 4 bits, qh[64] high 2
// bits, int8 scales[16], f16 d) of Σ over its sixteen 16-element sub-blocks
// s of (d·scale_s)·Σₜ (q[t]−32)·x[t]. In half h (128 elements), byte l of ql
// and qh (l < 32) give elements l, l+32, l+64 and l+96: low nibbles of ql[l]
// and ql[l+32], then their high nibbles, with bits 0-1, 2-3, 4-5 and 6-7 of
// qh[l] on top; element e of the half is in sub-block e/16.
func dotQ6_K(row []byte, x []float32, f16 *[1 << 16]float32) float32 {
	var acc float32
	for b := range len(x) / 256 {
		blk := (*[tensor.BlockBytesQ6_K]byte)(row[tensor.BlockBytesQ6_K*b:])
		xb := (*[256]float32)(x[256*b:])
		d := f16At(f16, blk[208], blk[209])
		var sb float32
		for h := range 2 {
			ql := (*[64]byte)(blk[64*h:])
			qh := (*[32]byte)(blk[128+32*h:])
			sc := (*[8]byte)(blk[192+8*h:])
			xh := (*[128]float32)(xb[128*h:])
			for is := range 2 {
				var s1, s2, s3, s4 float32
				for l := 16 * is; l < 16*is+16; l++ {
					lo, hi, hb := ql[l&31], ql[l&31+32], qh[l&31]
					s1 += float32(q6ToF32[(lo&15|hb<<4&0x30)&63] * xh[l&31])
					s2 += float32(q6ToF32[(hi&15|hb<<2&0x30)&63] * xh[l&31+32])
					s3 += float32(q6ToF32[(lo>>4|hb&0x30)&63] * xh[l&31+64])
					s4 += float32(q6ToF32[(hi>>4|hb>>2&0x30)&63] * xh[l&31+96])
				}
				d1, d2 := float32(d*float32(int8(sc[is]))), float32(d*float32(int8(sc[is+2])))
				d3, d4 := float32(d*float32(int8(sc[is+4]))), float32(d*float32(int8(sc[is+6])))
				sb += float32(d1*s1) + float32(d2*s2) + float32(d3*s3) + float32(d4*s4)
			}
		}
		acc += sb
	}
	return acc
}
