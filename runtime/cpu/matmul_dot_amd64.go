//go:build amd64 && !purego

package cpu

import "github.com/kiln-gpu/kiln/runtime/tensor"

// The fused path's dot products in assembly (matmul_dot_amd64.s), for CPUs
// with AVX2, FMA and F16C: weights are widened to float32 in registers and
// multiplied with x, which stays float32, in 8-lane fused multiply-adds.
// They sum in a different order than the Go dots (and round once per
// multiply-add), so their results differ from the Go dots by rounding only;
// each is still a fixed function of its operands.

// cpuid executes CPUID with EAX = leaf and ECX = subleaf.
func cpuid(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)

// xgetbv0 executes XGETBV with ECX = 0: the OS-enabled state components (XCR0).
func xgetbv0() (eax, edx uint32)

// dotF32AVX2 is Σ w[t]·x[t] over n elements, n a multiple of 8.
//
//go:noescape
func dotF32AVX2(w, x *float32, n int) float32

// dotF16AVX2 is dotF32AVX2 for F16 weights.
//
//go:noescape
func dotF16AVX2(w *uint16, x *float32, n int) float32

// dotBF16AVX2 is dotF32AVX2 for BF16 weights.
//
//go:noescape
func dotBF16AVX2(w *uint16, x *float32, n int) float32

// dotQ8_0AVX2 is dotQ8_0 over nBlocks blocks at row and 32·nBlocks elements of x.
//
//go:noescape
func dotQ8_0AVX2(row *byte, x *float32, nBlocks int) float32

// dotQ4_0AVX2 is dotQ4_0 over nBlocks blocks at row and 32·nBlocks elements of x.
//
//go:noescape
func dotQ4_0AVX2(row *byte, x *float32, nBlocks int) float32

// dotQ4_KAVX2 is dotQ4_K over nBlocks super-blocks at row, 256·nBlocks
// elements of x and their 8·nBlocks sums of 32 in xSums32.
//
//go:noescape
func dotQ4_KAVX2(row *byte, x, xSums32 *float32, nBlocks int) float32

// dotQ6_KAVX2 is dotQ6_K over nBlocks super-blocks at row and 256·nBlocks
// elements of x.
//
//go:noescape
func dotQ6_KAVX2(row *byte, x *float32, nBlocks int) float32

// dotQ8_0x4AVX2 is dotQ8_0AVX2 for four rows of x at once (row r at
// x + r·xStride elements): the weights are decoded once; the sums go to out.
//
//go:noescape
func dotQ8_0x4AVX2(row *byte, x *float32, xStride, nBlocks int, out *[4]float32)

// dotQ4_Kx4AVX2 is dotQ4_KAVX2 for four rows of x at once (row r at
// x + r·xStride elements, its sums of 32 at xSums32 + r·xStride/32).
//
//go:noescape
func dotQ4_Kx4AVX2(row *byte, x, xSums32 *float32, xStride, nBlocks int, out *[4]float32)

// dotF32x4AVX2 is dotF32AVX2 for four rows of x at once (row r at
// x + r·xStride elements); the sums go to out.
//
//go:noescape
func dotF32x4AVX2(w, x *float32, xStride, n int, out *[4]float32)

// dotF16x4AVX2 is dotF16AVX2 for four rows of x at once.
//
//go:noescape
func dotF16x4AVX2(w *uint16, x *float32, xStride, n int, out *[4]float32)

// dotBF16x4AVX2 is dotBF16AVX2 for four rows of x at once.
//
//go:noescape
func dotBF16x4AVX2(w *uint16, x *float32, xStride, n int, out *[4]float32)

// dotQ4_0x4AVX2 is dotQ4_0AVX2 for four rows of x at once.
//
//go:noescape
func dotQ4_0x4AVX2(row *byte, x *float32, xStride, nBlocks int, out *[4]float32)

// dotQ6_Kx4AVX2 is dotQ6_KAVX2 for four rows of x at once.
//
//go:noescape
func dotQ6_Kx4AVX2(row *byte, x *float32, xStride, nBlocks int, out *[4]float32)

// dot2x4AVX2 sets out to the dots of x rows x0, x1 with weight columns
// w0..w3 (row-major: x0·w0, x0·w1, x0·w2, x0·w3, x1·w0, ...) over n
// elements, n a multiple of 8, each as dot1x1AVX2 forms it.
//
//go:noescape
func dot2x4AVX2(x0, x1, w0, w1, w2, w3 *float32, n int, out *[8]float32)

// dot1x1AVX2 is x·w over n elements, n a multiple of 8: one 8-lane sum of
// fused multiply-adds in order, then the lanes added in a fixed order.
//
//go:noescape
func dot1x1AVX2(x, w *float32, n int) float32

// dotAsmSupported reports whether this CPU and OS run the assembly dots:
// AVX2, FMA and F16C present, and the OS saving the YMM registers.
var dotAsmSupported = detectAVX2FMAF16C()

func detectAVX2FMAF16C() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const (
		fma     = 1 << 12
		osxsave = 1 << 27
		avx     = 1 << 28
		f16c    = 1 << 29
	)
	if ecx1&(fma|osxsave|avx|f16c) != fma|osxsave|avx|f16c {
		return false
	}
	// XCR0 bits 1 (SSE state) and 2 (AVX state): the OS saves the YMM registers.
	if xcr0, _ := xgetbv0(); xcr0&6 != 6 {
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	const avx2 = 1 << 5
	return ebx7&avx2 != 0
}

// fusedDotsAsm sets out[i] to the dot of row j of w with row i of x (rows
// of k elements, len(out) of them) by the assembly dots: four rows of x at
// a time (the weights decoded once for the four), the rest one by one.
func (w *weightRows) fusedDotsAsm(j int, xs, xSums32, out []float32) {
	k, m := w.k, len(out)
	i := 0
	if k > 0 && m >= 4 {
		_ = xs[m*k-1]
		switch w.dt {
		case tensor.F32:
			row := w.rowF32(j, 0, k)
			n8 := k &^ 7
			for ; i+4 <= m; i += 4 {
				o := (*[4]float32)(out[i:])
				*o = [4]float32{}
				if n8 > 0 {
					dotF32x4AVX2(&row[0], &xs[i*k], k, n8, o)
				}
				for r := range 4 {
					x := xs[(i+r)*k : (i+r+1)*k]
					for t := n8; t < k; t++ {
						o[r] += float32(row[t] * x[t])
					}
				}
			}
		case tensor.F16, tensor.BF16:
			row := w.rowU16(j, 0, k)
			n8 := k &^ 7
			f16 := f16Table()
			for ; i+4 <= m; i += 4 {
				o := (*[4]float32)(out[i:])
				*o = [4]float32{}
				if n8 > 0 {
					if w.dt == tensor.F16 {
						dotF16x4AVX2(&row[0], &xs[i*k], k, n8, o)
					} else {
						dotBF16x4AVX2(&row[0], &xs[i*k], k, n8, o)
					}
				}
				for r := range 4 {
					x := xs[(i+r)*k : (i+r+1)*k]
					for t := n8; t < k; t++ {
						v := f16[row[t]]
						if w.dt == tensor.BF16 {
							v = tensor.BF16ToF32(row[t])
						}
						o[r] += float32(v * x[t])
					}
				}
			}
		case tensor.Q8_0:
			row := w.rowBlocks(j, 0, k)
			nb := k / 32
			_ = row[nb*tensor.BlockBytesQ8_0-1]
			for ; i+4 <= m; i += 4 {
				dotQ8_0x4AVX2(&row[0], &xs[i*k], k, nb, (*[4]float32)(out[i:]))
			}
		case tensor.Q4_0:
			row := w.rowBlocks(j, 0, k)
			nb := k / 32
			_ = row[nb*tensor.BlockBytesQ4_0-1]
			for ; i+4 <= m; i += 4 {
				dotQ4_0x4AVX2(&row[0], &xs[i*k], k, nb, (*[4]float32)(out[i:]))
			}
		case tensor.Q4_K:
			row := w.rowBlocks(j, 0, k)
			nb := k / 256
			_ = row[nb*tensor.BlockBytesQ4_K-1]
			_ = xSums32[m*k/32-1]
			for ; i+4 <= m; i += 4 {
				dotQ4_Kx4AVX2(&row[0], &xs[i*k], &xSums32[i*k/32], k, nb, (*[4]float32)(out[i:]))
			}
		case tensor.Q6_K:
			row := w.rowBlocks(j, 0, k)
			nb := k / 256
			_ = row[nb*tensor.BlockBytesQ6_K-1]
			for ; i+4 <= m; i += 4 {
				dotQ6_Kx4AVX2(&row[0], &xs[i*k], k, nb, (*[4]float32)(out[i:]))
			}
		}
	}
	for ; i < m; i++ {
		var xSums []float32
		if xSums32 != nil {
			xSums = xSums32[i*k/32 : (i+1)*k/32]
		}
		out[i] = w.fusedDotAsm(j, xs[i*k:(i+1)*k], xSums)
	}
}

// fusedDotAsm is fusedDot by the assembly dots (dotAsmSupported must hold).
// Float weights: the assembly takes the elements up to a multiple of 8, the
// rest are added in Go.
func (w *weightRows) fusedDotAsm(j int, x, xSums32 []float32) float32 {
	k := w.k
	if k == 0 {
		return 0
	}
	x = x[:k]
	switch w.dt {
	case tensor.F32:
		row := w.rowF32(j, 0, k)
		n8 := k &^ 7
		var s float32
		if n8 > 0 {
			s = dotF32AVX2(&row[0], &x[0], n8)
		}
		for t := n8; t < k; t++ {
			s += float32(row[t] * x[t])
		}
		return s
	case tensor.F16:
		row := w.rowU16(j, 0, k)
		n8 := k &^ 7
		var s float32
		if n8 > 0 {
			s = dotF16AVX2(&row[0], &x[0], n8)
		}
		if n8 < k {
			f16 := f16Table()
			for t := n8; t < k; t++ {
				s += float32(f16[row[t]] * x[t])
			}
		}
		return s
	case tensor.BF16:
		row := w.rowU16(j, 0, k)
		n8 := k &^ 7
		var s float32
		if n8 > 0 {
			s = dotBF16AVX2(&row[0], &x[0], n8)
		}
		for t := n8; t < k; t++ {
			s += float32(tensor.BF16ToF32(row[t]) * x[t])
		}
		return s
	case tensor.Q8_0:
		row := w.rowBlocks(j, 0, k)
		nb := k / 32
		_ = row[nb*tensor.BlockBytesQ8_0-1]
		return dotQ8_0AVX2(&row[0], &x[0], nb)
	case tensor.Q4_0:
		row := w.rowBlocks(j, 0, k)
		nb := k / 32
		_ = row[nb*tensor.BlockBytesQ4_0-1]
		return dotQ4_0AVX2(&row[0], &x[0], nb)
	case tensor.Q4_K:
		row := w.rowBlocks(j, 0, k)
		nb := k / 256
		_ = row[nb*tensor.BlockBytesQ4_K-1]
		_ = xSums32[nb*8-1]
		return dotQ4_KAVX2(&row[0], &x[0], &xSums32[0], nb)
	case tensor.Q6_K:
		row := w.rowBlocks(j, 0, k)
		nb := k / 256
		_ = row[nb*tensor.BlockBytesQ6_K-1]
		return dotQ6_KAVX2(&row[0], &x[0], nb)
	}
	return w.fusedDotGo(j, x, xSums32, f16Table()) // unreachable: op.CheckMatMul admits only the types above
}

// addChunkProductsAsm is addChunkProducts by the assembly micro-kernels:
// every element's sum is dot1x1AVX2 over the first kl &^ 7 elements, then
// the remaining ones added in order in Go, whatever kernel computes it, so
// that the result does not depend on how rows and columns are grouped.
func addChunkProductsAsm(acc, xs []float32, m, k, k0, kl int, cols [][]float32) {
	nt := len(cols)
	n8 := kl &^ 7
	row := func(i int) []float32 { return xs[i*k+k0 : i*k+k0+kl] }
	// one is the sum of x·w over the chunk.
	one := func(x, w []float32) float32 {
		var s float32
		if n8 > 0 {
			s = dot1x1AVX2(&x[0], &w[0], n8)
		}
		return addTail(s, x, w, n8)
	}
	i := 0
	for ; i+2 <= m; i += 2 {
		x0, x1 := row(i), row(i+1)
		a0, a1 := acc[i*nt:(i+1)*nt], acc[(i+1)*nt:(i+2)*nt]
		jj := 0
		if n8 > 0 {
			var out [8]float32
			for ; jj+4 <= nt; jj += 4 {
				w0, w1, w2, w3 := cols[jj][:kl], cols[jj+1][:kl], cols[jj+2][:kl], cols[jj+3][:kl]
				dot2x4AVX2(&x0[0], &x1[0], &w0[0], &w1[0], &w2[0], &w3[0], n8, &out)
				a0[jj] += addTail(out[0], x0, w0, n8)
				a0[jj+1] += addTail(out[1], x0, w1, n8)
				a0[jj+2] += addTail(out[2], x0, w2, n8)
				a0[jj+3] += addTail(out[3], x0, w3, n8)
				a1[jj] += addTail(out[4], x1, w0, n8)
				a1[jj+1] += addTail(out[5], x1, w1, n8)
				a1[jj+2] += addTail(out[6], x1, w2, n8)
				a1[jj+3] += addTail(out[7], x1, w3, n8)
			}
		}
		for ; jj < nt; jj++ {
			a0[jj] += one(x0, cols[jj][:kl])
			a1[jj] += one(x1, cols[jj][:kl])
		}
	}
	for ; i < m; i++ {
		x0 := row(i)
		a0 := acc[i*nt : (i+1)*nt]
		for jj := range nt {
			a0[jj] += one(x0, cols[jj][:kl])
		}
	}
}

// addTail adds x[t]·w[t] for t from n8 to len(x), in order, to s.
func addTail(s float32, x, w []float32, n8 int) float32 {
	w = w[:len(x)]
	for t := n8; t < len(x); t++ {
		s += float32(x[t] * w[t])
	}
	return s
}
