package conformance

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Naive references in float64: the obvious loops, written from the op
// definitions in runtime/op and runtime/backend, sharing no code with any
// backend. Inputs and outputs are row-major value slices.

func numElems(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// broadcastValues stretches vals (of shape inShape) to outShape by numpy's
// rules: trailing dimensions aligned, size-1 dimensions repeated.
func broadcastValues(vals []float64, inShape, outShape []int) []float64 {
	out := make([]float64, numElems(outShape))
	pad := len(outShape) - len(inShape)
	idx := make([]int, len(outShape))
	for k := range out {
		src := 0
		for i, d := range inShape {
			j := idx[pad+i]
			if d == 1 {
				j = 0
			}
			src = src*d + j
		}
		out[k] = vals[src]
		for i := len(idx) - 1; i >= 0; i-- {
			idx[i]++
			if idx[i] < outShape[i] {
				break
			}
			idx[i] = 0
		}
	}
	return out
}

func refBinary(a, b []float64, f func(x, y float64) float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = f(a[i], b[i])
	}
	return out
}

func refMap(x []float64, f func(float64) float64) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = f(v)
	}
	return out
}

func refSiLU(x float64) float64 { return x / (1 + math.Exp(-x)) }

func refGELUErf(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }

func refGELUTanh(x float64) float64 {
	return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
}

// refSoftmax: rows of n along the last dimension; row r of the
// second-innermost dimension masks columns j > offset + r when causal.
func refSoftmax(x []float64, shape []int, opts op.SoftmaxOptions) []float64 {
	n := shape[len(shape)-1]
	rowsPerMatrix := 1
	if len(shape) >= 2 {
		rowsPerMatrix = shape[len(shape)-2]
	}
	scale := 1.0
	if opts.Scale != 0 {
		scale = float64(opts.Scale)
	}
	out := make([]float64, len(x))
	for row := 0; row*n < len(x); row++ {
		r := row % rowsPerMatrix
		xs := x[row*n : (row+1)*n]
		ys := out[row*n : (row+1)*n]
		masked := func(j int) bool { return opts.Causal && j > opts.PositionOffset+r }
		m := math.Inf(-1)
		for j, v := range xs {
			if !masked(j) {
				m = math.Max(m, scale*v)
			}
		}
		sum := 0.0
		for j, v := range xs {
			if !masked(j) {
				sum += math.Exp(scale*v - m)
			}
		}
		for j, v := range xs {
			if !masked(j) {
				ys[j] = math.Exp(scale*v-m) / sum
			} // masked columns, and fully masked rows, stay 0
		}
	}
	return out
}

func effectiveEps(opts op.NormOptions) float64 {
	if opts.Eps == 0 {
		return float64(float32(1e-5))
	}
	return float64(opts.Eps)
}

func refRMSNorm(x []float64, n int, weight []float64, opts op.NormOptions) []float64 {
	out := make([]float64, len(x))
	for row := 0; row*n < len(x); row++ {
		xs := x[row*n : (row+1)*n]
		ss := 0.0
		for _, v := range xs {
			ss += v * v
		}
		rms := math.Sqrt(ss/float64(n) + effectiveEps(opts))
		for j, v := range xs {
			y := v / rms
			if weight != nil {
				y *= weight[j]
			}
			out[row*n+j] = y
		}
	}
	return out
}

func refLayerNorm(x []float64, n int, weight, bias []float64, opts op.NormOptions) []float64 {
	out := make([]float64, len(x))
	for row := 0; row*n < len(x); row++ {
		xs := x[row*n : (row+1)*n]
		mean := 0.0
		for _, v := range xs {
			mean += v
		}
		mean /= float64(n)
		variance := 0.0
		for _, v := range xs {
			variance += (v - mean) * (v - mean)
		}
		variance /= float64(n)
		for j, v := range xs {
			y := (v - mean) / math.Sqrt(variance+effectiveEps(opts))
			if weight != nil {
				y *= weight[j]
			}
			if bias != nil {
				y += bias[j]
			}
			out[row*n+j] = y
		}
	}
	return out
}

// refRoPE: x is [..., nTokens, nHeads, headDim] with positions [..., nTokens]
// (one position per token, batch-major). As op.RoPEOptions specifies, θ, cos θ
// and sin θ are computed in float64 and cos θ and sin θ rounded to float32;
// the rotation here is exact arithmetic on those.
func refRoPE(x []float64, shape []int, positions []float64, opts op.RoPEOptions, factors []float64) []float64 {
	headDim := shape[len(shape)-1]
	nHeads := shape[len(shape)-2]
	nDims := opts.NDims
	if nDims == 0 {
		nDims = headDim
	}
	base, freqScale := float64(opts.FreqBase), float64(opts.FreqScale)
	if base == 0 {
		base = 10000
	}
	if freqScale == 0 {
		freqScale = 1
	}
	out := append([]float64(nil), x...)
	for tok, p := range positions {
		pos := p + float64(opts.PositionOffset)
		for h := range nHeads {
			head := x[(tok*nHeads+h)*headDim : (tok*nHeads+h+1)*headDim]
			res := out[(tok*nHeads+h)*headDim : (tok*nHeads+h+1)*headDim]
			for i := range nDims / 2 {
				theta := pos * freqScale * math.Pow(base, -2*float64(i)/float64(nDims))
				if factors != nil {
					theta /= factors[i]
				}
				c := float64(float32(math.Cos(theta)))
				s := float64(float32(math.Sin(theta)))
				ia, ib := 2*i, 2*i+1
				if opts.Style == op.RoPENeoX {
					ia, ib = i, i+nDims/2
				}
				a, b := head[ia], head[ib]
				res[ia] = a*c - b*s
				res[ib] = a*s + b*c
			}
		}
	}
	return out
}

// refArgmax: the first index of the largest non-NaN value, 0 for all NaN.
func refArgmax(x []float64, n int) []float64 {
	out := make([]float64, len(x)/n)
	for row := range out {
		best := -1
		for j, v := range x[row*n : (row+1)*n] {
			if math.IsNaN(v) {
				continue
			}
			if best < 0 || v > x[row*n+best] {
				best = j
			}
		}
		out[row] = float64(max(best, 0))
	}
	return out
}

// refEmbedding gathers rows of a [vocab, dim] table (a host tensor, any
// supported dtype, rows possibly padded) by ids.
func refEmbedding(table *hostTensor, ids []float64) []float64 {
	dim := table.shape[1]
	out := make([]float64, 0, len(ids)*dim)
	for _, id := range ids {
		rowStart := table.offset + int(id)*table.strides[0]
		out = append(out, dequantizeRow(table.dt, table.base, rowStart, dim)...)
	}
	return out
}

// dequantizeRow decodes dim elements of dt starting at element rowStart (a
// block boundary) of base, written from ggml's block layouts
// (ggml-common.h) and dequantize_row_* formulas, in float64.
func dequantizeRow(dt tensor.DType, base []byte, rowStart, dim int) []float64 {
	if !dt.IsQuantized() {
		elems := make([]int, dim)
		for i := range elems {
			elems[i] = rowStart + i
		}
		return decodeElems(dt, base, elems)
	}
	be, bb := dt.BlockElems(), dt.BlockBytes()
	out := make([]float64, 0, dim)
	for blk := rowStart / be; blk < (rowStart+dim)/be; blk++ {
		block := base[blk*bb : (blk+1)*bb]
		f16 := func(at int) float64 { return halfToFloat64(binary.LittleEndian.Uint16(block[at:])) }
		switch dt {
		case tensor.Q8_0: // f16 d; int8 qs[32]: d·q
			d := f16(0)
			for i := range 32 {
				out = append(out, d*float64(int8(block[2+i])))
			}
		case tensor.Q4_0: // f16 d; qs[16]: element j low nibble, j+16 high; d·(q − 8)
			d := f16(0)
			vals := make([]float64, 32)
			for j := range 16 {
				vals[j] = d * float64(int(block[2+j]&15)-8)
				vals[j+16] = d * float64(int(block[2+j]>>4)-8)
			}
			out = append(out, vals...)
		case tensor.Q4_K: // f16 d, f16 dmin, scales[12], qs[128]
			d, dmin := f16(0), f16(2)
			sc := block[4:16]
			qs := block[16:144]
			scaleMin := func(j int) (float64, float64) {
				if j < 4 {
					return float64(sc[j] & 63), float64(sc[j+4] & 63)
				}
				return float64(sc[j+4]&15 | (sc[j-4]>>6)<<4), float64(sc[j+4]>>4 | (sc[j]>>6)<<4)
			}
			for e := range 256 {
				chunk, within := e/64, e%64
				var sub int
				var q byte
				if within < 32 {
					sub, q = 2*chunk, qs[32*chunk+within]&15
				} else {
					sub, q = 2*chunk+1, qs[32*chunk+within-32]>>4
				}
				s, m := scaleMin(sub)
				out = append(out, d*s*float64(q)-dmin*m)
			}
		case tensor.Q6_K: // ql[128], qh[64], int8 scales[16], f16 d
			ql, qh, scales := block[0:128], block[128:192], block[192:208]
			d := f16(208)
			for e := range 256 {
				half, r := e/128, e%128
				k, l := r/32, r%32
				qlh, qhh, sch := ql[64*half:], qh[32*half:], scales[8*half:]
				var low, high byte
				switch k {
				case 0:
					low, high = qlh[l]&15, qhh[l]&3
				case 1:
					low, high = qlh[l+32]&15, (qhh[l]>>2)&3
				case 2:
					low, high = qlh[l]>>4, (qhh[l]>>4)&3
				case 3:
					low, high = qlh[l+32]>>4, (qhh[l]>>6)&3
				}
				q := int(low|high<<4) - 32
				out = append(out, d*float64(int8(sch[l/16+2*k]))*float64(q))
			}
		default:
			panic(fmt.Sprintf("dequantizeRow: %v", dt)) // test bug
		}
	}
	return out
}
