package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// forEachDotImpl runs f as a subtest once with the Go dots and, where this
// machine supports them, once with the assembly dots.
func forEachDotImpl(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := useDotAsm
	defer func() { useDotAsm = saved }()
	impls := []bool{false}
	if dotAsmSupported {
		impls = append(impls, true)
	} else {
		t.Log("no assembly dots on this machine or build: Go dots only")
	}
	for _, asm := range impls {
		useDotAsm = asm
		name := "godot"
		if asm {
			name = "asmdot"
		}
		t.Run(name, f)
	}
}

// randomWeightRows returns weightRows for nRows rows of dt with k elements
// each and rowPad padding elements between rows (a whole number of blocks
// for block formats), starting off elements (or blocks) into its storage,
// whose first byte is memSkew bytes past an aligned allocation. Block
// formats get random quant bytes with small finite F16 scales (every bit
// pattern of the quants and the K-quant scales occurs); float formats get
// normal values.
func randomWeightRows(t *testing.T, rng *rand.Rand, dt tensor.DType, nRows, k, rowPad, off, memSkew int) weightRows {
	t.Helper()
	be, bb := dt.BlockElems(), dt.BlockBytes()
	stride := k + rowPad
	nElems := off + nRows*stride
	if dt.IsFloat() {
		vals := make([]float32, nElems)
		for i := range vals {
			vals[i] = float32(rng.NormFloat64())
		}
		w := weightRows{dt: dt, k: k, blockElems: 1, blockBytes: dt.BlockBytes(), offset: off, rowStride: stride}
		switch dt {
		case tensor.F32:
			w.f32 = vals
		case tensor.F16, tensor.BF16:
			w.u16 = make([]uint16, nElems)
			for i, v := range vals {
				if dt == tensor.F16 {
					w.u16[i] = tensor.F32ToF16(v)
				} else {
					w.u16[i] = tensor.F32ToBF16(v)
				}
			}
		}
		return w
	}
	nBlocks := nElems / be
	buf := make([]byte, memSkew+nBlocks*bb)
	raw := buf[memSkew:]
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	scales := map[tensor.DType][]int{tensor.Q8_0: {0}, tensor.Q4_0: {0}, tensor.Q4_K: {0, 2}, tensor.Q6_K: {208}}[dt]
	for blk := 0; blk < nBlocks; blk++ {
		for _, s := range scales {
			v := float32(0.001 + 0.01*rng.Float64())
			if rng.IntN(4) == 0 {
				v = -v
			}
			binary.LittleEndian.PutUint16(raw[blk*bb+s:], tensor.F32ToF16(v))
		}
	}
	return weightRows{dt: dt, k: k, blockElems: be, blockBytes: bb, mem: raw, offset: off, rowStride: stride}
}

// decodedRow returns row j of w as float64 by tensor.Dequantize (or the
// plain conversion for float formats), and, for Q4_K, the dequantized row
// with every quant zeroed (−dmin·m per element: the min term of the
// formula, whose rounding the error bound must cover).
func decodedRow(t *testing.T, w *weightRows, j int) (vals, minTerm []float64) {
	t.Helper()
	k := w.k
	vals = make([]float64, k)
	f16 := f16Table()
	switch w.dt {
	case tensor.F32:
		for i, v := range w.rowF32(j, 0, k) {
			vals[i] = float64(v)
		}
		return vals, nil
	case tensor.F16:
		for i, v := range w.rowU16(j, 0, k) {
			vals[i] = float64(f16[v])
		}
		return vals, nil
	case tensor.BF16:
		for i, v := range w.rowU16(j, 0, k) {
			vals[i] = float64(tensor.BF16ToF32(v))
		}
		return vals, nil
	}
	raw := w.rowBlocks(j, 0, k)
	dec := make([]float32, k)
	if err := tensor.Dequantize(w.dt, raw, dec); err != nil {
		t.Fatal(err)
	}
	for i, v := range dec {
		vals[i] = float64(v)
	}
	if w.dt == tensor.Q4_K {
		zeroed := append([]byte(nil), raw...)
		for b := 0; b < len(zeroed); b += tensor.BlockBytesQ4_K {
			clear(zeroed[b+16 : b+tensor.BlockBytesQ4_K])
		}
		if err := tensor.Dequantize(w.dt, zeroed, dec); err != nil {
			t.Fatal(err)
		}
		minTerm = make([]float64, k)
		for i, v := range dec {
			minTerm[i] = float64(v)
		}
	}
	return vals, minTerm
}

// TestFusedDotsAgainstReference: the Go and the assembly dots of every
// weight type against a float64 dot of the dequantized row, for lengths
// that exercise every tail (float types: each k up to 80, then some long
// ones; block types: 0 to 9 blocks and more), rows at odd element offsets
// and odd byte addresses, and x at odd offsets; then the two against each
// other.
func TestFusedDotsAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, dt := range op.MatMulWeightTypes {
		be := dt.BlockElems()
		var ks []int
		if be == 1 {
			for k := range 81 {
				ks = append(ks, k)
			}
			ks = append(ks, 127, 255, 256, 257, 1000, 4099)
		} else {
			for nb := range 10 {
				ks = append(ks, nb*be)
			}
			ks = append(ks, 17*be, 64*be)
		}
		for _, k := range ks {
			for variant := range 3 {
				off := variant * be // whole blocks for block formats
				if be == 1 {
					off = variant*3 + 1 // odd element offsets: rows not 32-byte aligned
				}
				w := randomWeightRows(t, rng, dt, 3, k, variant*be, off, variant)
				xBuf := make([]float32, k+variant+1)
				for i := range xBuf {
					xBuf[i] = float32(rng.Float64()*4 - 2)
				}
				x := xBuf[variant : variant+k]
				var xSums []float32
				if dt == tensor.Q4_K {
					xSums = sums32(x)
				}
				for j := range 3 {
					name := fmt.Sprintf("%v/k%d/variant%d/row%d", dt, k, variant, j)
					wv, minTerm := decodedRow(t, &w, j)
					var want, sumAbs float64
					for i := range k {
						want += float64(x[i]) * wv[i]
						sumAbs += math.Abs(float64(x[i]) * wv[i])
						if minTerm != nil {
							sumAbs += math.Abs(float64(x[i]) * minTerm[i])
						}
					}
					// Float32 sums of at most k terms: each rounding at most
					// 2⁻²⁴ of a partial sum, itself at most Σ|terms|.
					allowed := (float64(k)+8)*0x1p-24*sumAbs + 1e-30
					goDot := w.fusedDotGo(j, x, xSums, f16Table())
					if d := math.Abs(float64(goDot) - want); !(d <= allowed) {
						t.Errorf("%s: Go dot %v, want %v (diff %.3g, allowed %.3g)", name, goDot, want, d, allowed)
					}
					if !dotAsmSupported {
						continue
					}
					asmDot := w.fusedDotAsm(j, x, xSums)
					if d := math.Abs(float64(asmDot) - want); !(d <= allowed) {
						t.Errorf("%s: assembly dot %v, want %v (diff %.3g, allowed %.3g)", name, asmDot, want, d, allowed)
					}
					if k == 0 && (asmDot != 0 || goDot != 0) {
						t.Errorf("%s: empty dot = %v (asm), %v (Go), want 0", name, asmDot, goDot)
					}
				}
			}
		}
	}
}

// TestFusedDotsAsmExactOnIntegers: with small integer weights and x, every
// product and partial sum is exact in float32, so the assembly and the Go
// dots must agree bit for bit whatever their order of summation; a dropped,
// doubled or misplaced element shows as an exact mismatch.
func TestFusedDotsAsmExactOnIntegers(t *testing.T) {
	if !dotAsmSupported {
		t.Skip("no assembly dots on this machine or build")
	}
	rng := rand.New(rand.NewPCG(31, 32))
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
		for k := range 100 {
			w := weightRows{dt: dt, k: k, blockElems: 1, blockBytes: dt.BlockBytes(), offset: 1, rowStride: k}
			vals := make([]float32, k+1)
			for i := range vals {
				vals[i] = float32(rng.IntN(33) - 16)
			}
			w.f32 = vals
			w.u16 = make([]uint16, len(vals))
			for i, v := range vals {
				if dt == tensor.F16 {
					w.u16[i] = tensor.F32ToF16(v)
				} else {
					w.u16[i] = tensor.F32ToBF16(v)
				}
			}
			x := make([]float32, k)
			var want float32
			for i := range x {
				// One-hot-ish: element i weighted by a distinct power of two
				// modulo a small range, so a misplaced element changes the sum.
				x[i] = float32(int(1) << (i % 7))
				want += vals[1+i] * x[i]
			}
			if got := w.fusedDotAsm(0, x, nil); got != want {
				t.Errorf("%v k=%d: assembly dot %v, want %v", dt, k, got, want)
			}
		}
	}
	// Block formats: scale 1 (d and, for Q4_K, dmin) and x in {−2..2}: every
	// term is a small integer.
	for _, dt := range []tensor.DType{tensor.Q8_0, tensor.Q4_0, tensor.Q4_K, tensor.Q6_K} {
		be, bb := dt.BlockElems(), dt.BlockBytes()
		for nb := range 6 {
			k := nb * be
			raw := make([]byte, nb*bb+1)[1:] // an odd address
			for i := range raw {
				raw[i] = byte(rng.Uint32())
			}
			for blk := range nb {
				switch dt {
				case tensor.Q8_0, tensor.Q4_0:
					putF16(raw[blk*bb:], 1)
				case tensor.Q4_K:
					putF16(raw[blk*bb:], 1)
					putF16(raw[blk*bb+2:], 1)
				case tensor.Q6_K:
					putF16(raw[blk*bb+208:], 1)
				}
			}
			w := weightRows{dt: dt, k: k, blockElems: be, blockBytes: bb, mem: raw, rowStride: k}
			x := make([]float32, k)
			for i := range x {
				x[i] = float32(rng.IntN(5) - 2)
			}
			wv, _ := decodedRow(t, &w, 0)
			var want float64
			for i := range k {
				want += wv[i] * float64(x[i])
			}
			var xSums []float32
			if dt == tensor.Q4_K {
				xSums = sums32(x)
			}
			got := w.fusedDotAsm(0, x, xSums)
			if float64(got) != want {
				t.Errorf("%v blocks=%d: assembly dot %v, want %v", dt, nb, got, want)
			}
			if goDot := w.fusedDotGo(0, x, xSums, f16Table()); goDot != got {
				t.Errorf("%v blocks=%d: assembly dot %v, Go dot %v", dt, nb, got, goDot)
			}
		}
	}
}

// TestFusedDotsAsmRows: fusedDotsAsm (four rows of x per call where the
// format has a four-row kernel, the rest one by one) against the float64
// reference for every weight type and m from 1 to 9 and 16, x starting at
// an odd offset; the result of each row also agrees with the one-row dot.
func TestFusedDotsAsmRows(t *testing.T) {
	if !dotAsmSupported {
		t.Skip("no assembly dots on this machine or build")
	}
	rng := rand.New(rand.NewPCG(41, 42))
	for _, dt := range op.MatMulWeightTypes {
		be := dt.BlockElems()
		ks := []int{0, 5, 72, 77}
		if be > 1 {
			ks = []int{0, be, 3 * be}
		}
		for _, k := range ks {
			for _, m := range []int{1, 2, 3, 4, 5, 7, 8, 9, 16} {
				w := randomWeightRows(t, rng, dt, 2, k, be, be, 1)
				xBuf := make([]float32, m*k+3)
				for i := range xBuf {
					xBuf[i] = float32(rng.Float64()*4 - 2)
				}
				xs := xBuf[3:]
				var xSums []float32
				if dt == tensor.Q4_K {
					xSums = sums32(xs)
				}
				for j := range 2 {
					wv, minTerm := decodedRow(t, &w, j)
					out := make([]float32, m+1)
					out[m] = 12345 // past the rows: must stay
					w.fusedDotsAsm(j, xs, xSums, out[:m])
					if out[m] != 12345 {
						t.Errorf("%v k=%d m=%d: fusedDotsAsm wrote past its %d outputs", dt, k, m, m)
					}
					for i := range m {
						x := xs[i*k : (i+1)*k]
						var want, sumAbs float64
						for e := range k {
							want += float64(x[e]) * wv[e]
							sumAbs += math.Abs(float64(x[e]) * wv[e])
							if minTerm != nil {
								sumAbs += math.Abs(float64(x[e]) * minTerm[e])
							}
						}
						allowed := (float64(k)+8)*0x1p-24*sumAbs + 1e-30
						if d := math.Abs(float64(out[i]) - want); !(d <= allowed) {
							t.Errorf("%v k=%d m=%d row %d x row %d: %v, want %v (diff %.3g, allowed %.3g)", dt, k, m, j, i, out[i], want, d, allowed)
						}
						var rowSums []float32
						if xSums != nil {
							rowSums = xSums[i*k/32 : (i+1)*k/32]
						}
						one := w.fusedDotAsm(j, x, rowSums)
						if d := math.Abs(float64(out[i]) - float64(one)); !(d <= 2*allowed) {
							t.Errorf("%v k=%d m=%d row %d x row %d: %v, one-row dot %v", dt, k, m, j, i, out[i], one)
						}
					}
				}
			}
		}
	}
}
