package conformance

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Host-side test tensors: the bytes of a whole buffer and the view an op
// sees, with the layouts the suite exercises. Nothing here uses the backends'
// code: values are decoded by the naive functions at the end of this file.

// hostTensor is a buffer (base, in dt's storage format) and a view of it.
type hostTensor struct {
	dt      tensor.DType
	shape   []int
	strides []int // in elements
	offset  int   // in elements
	base    []byte
}

// baseElems is the number of elements the buffer holds.
func (h *hostTensor) baseElems() int {
	return len(h.base) / h.dt.BlockBytes() * h.dt.BlockElems()
}

func (h *hostTensor) numElems() int {
	n := 1
	for _, d := range h.shape {
		n *= d
	}
	return n
}

// elemIndices returns the buffer element index of every element of the
// view, in row-major order.
func (h *hostTensor) elemIndices() []int {
	out := make([]int, 0, h.numElems())
	idx := make([]int, len(h.shape))
	for range h.numElems() {
		e := h.offset
		for i, v := range idx {
			e += v * h.strides[i]
		}
		out = append(out, e)
		for i := len(idx) - 1; i >= 0; i-- {
			idx[i]++
			if idx[i] < h.shape[i] {
				break
			}
			idx[i] = 0
		}
	}
	return out
}

// values decodes the view's elements in row-major order (floats, or I32 as
// float64).
func (h *hostTensor) values() []float64 {
	return decodeElems(h.dt, h.base, h.elemIndices())
}

// decodeElems decodes the listed elements of a buffer of scalar dtype dt.
func decodeElems(dt tensor.DType, base []byte, elems []int) []float64 {
	out := make([]float64, len(elems))
	for i, e := range elems {
		switch dt {
		case tensor.F32:
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(base[4*e:])))
		case tensor.F16:
			out[i] = halfToFloat64(binary.LittleEndian.Uint16(base[2*e:]))
		case tensor.BF16:
			out[i] = float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(base[2*e:])) << 16))
		case tensor.I32:
			out[i] = float64(int32(binary.LittleEndian.Uint32(base[4*e:])))
		default:
			panic(fmt.Sprintf("decodeElems: %v", dt)) // test bug
		}
	}
	return out
}

// halfToFloat64 decodes IEEE binary16 from its definition:
// (−1)^s · 2^(e−15) · (1 + m/1024), subnormals 2^−14 · m/1024.
func halfToFloat64(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	switch e {
	case 0:
		return sign * math.Ldexp(m/1024, -14)
	case 0x1f:
		if m != 0 {
			return math.NaN()
		}
		return sign * math.Inf(1)
	}
	return sign * math.Ldexp(1+m/1024, e-15)
}

// layout names how a view sits in its buffer.
type layout string

const (
	contiguous layout = "contiguous"
	// padded: every dimension is longer in the buffer and the view starts at
	// an offset: a slice of a bigger tensor (rows not adjacent).
	padded layout = "padded"
	// transposed: the two innermost dimensions are swapped in memory, so the
	// innermost stride is not 1 (for rank 1: every other element).
	transposed layout = "transposed"
	// permuted: the two outermost dimensions are swapped in memory; rows
	// stay contiguous (rank ≥ 3).
	permuted layout = "permuted"
	// expanded: the outermost dimension longer than 1 and the innermost have
	// stride 0 (a broadcast view of a smaller buffer); inputs only.
	expanded layout = "expanded"
)

// place returns strides, offset and buffer size in elements for a view of
// shape laid out as l. For block-quantized dtypes only contiguous and
// padded apply, padded by whole blocks.
func place(rng *rand.Rand, dt tensor.DType, shape []int, l layout) (strides []int, offset, baseElems int) {
	r := len(shape)
	contiguousStrides := func(s []int) []int {
		st := make([]int, len(s))
		n := 1
		for i := len(s) - 1; i >= 0; i-- {
			st[i] = n
			n *= s[i]
		}
		return st
	}
	prod := func(s []int) int {
		n := 1
		for _, d := range s {
			n *= d
		}
		return n
	}
	switch l {
	case contiguous:
		return contiguousStrides(shape), 0, prod(shape)
	case padded:
		be := dt.BlockElems()
		phys := make([]int, r)
		start := make([]int, r)
		for i := range shape {
			extra := 1 + rng.IntN(2)
			if i == r-1 {
				extra = be * (1 + rng.IntN(3)) // whole blocks; 1 to 3 elements for scalar types
			}
			phys[i] = shape[i] + extra
			start[i] = rng.IntN(extra + 1)
			if i == r-1 {
				start[i] = start[i] / be * be
			}
		}
		strides = contiguousStrides(phys)
		for i := range shape {
			offset += start[i] * strides[i]
		}
		return strides, offset, prod(phys)
	case transposed:
		if r == 1 {
			return []int{2}, 1, 2*shape[0] + 1
		}
		phys := append([]int(nil), shape...)
		phys[r-1], phys[r-2] = phys[r-2], phys[r-1]
		strides = contiguousStrides(phys)
		strides[r-1], strides[r-2] = strides[r-2], strides[r-1]
		return strides, 0, prod(phys)
	case permuted:
		phys := append([]int(nil), shape...)
		phys[0], phys[1] = phys[1], phys[0]
		strides = contiguousStrides(phys)
		strides[0], strides[1] = strides[1], strides[0]
		return strides, 0, prod(phys)
	case expanded:
		phys := append([]int(nil), shape...)
		for i := range phys {
			if phys[i] > 1 {
				phys[i] = 1 // the outermost dimension longer than 1
				break
			}
		}
		phys[r-1] = 1
		strides = contiguousStrides(phys)
		for i := range phys {
			if phys[i] == 1 && shape[i] != 1 {
				strides[i] = 0
			}
		}
		return strides, 0, prod(phys)
	}
	panic("place: unknown layout " + string(l)) // test bug
}

// decoyByte fills the parts of an input buffer outside the view: 0xff bytes
// decode to NaN in F32, F16 and BF16, and to NaN block scales in the block
// formats, so an op reading outside its view produces NaNs that the
// comparison catches.
const decoyByte = 0xff

// decoyI32 fills I32 buffers outside the view: out of range as a token id,
// and an absurd position.
const decoyI32 = 0x3fffffff

// poison fills output buffers before an op runs, so that unwritten elements
// show up (NaN for floats) and writes outside the view are detected.
func poison(dt tensor.DType, n int) []byte {
	if dt == tensor.I32 {
		b := make([]byte, 4*n)
		for i := range n {
			binary.LittleEndian.PutUint32(b[4*i:], 0x5a5a5a5a)
		}
		return b
	}
	size, err := dt.RowBytes(n)
	if err != nil {
		panic(err) // test bug
	}
	b := make([]byte, size)
	for i := range b {
		b[i] = decoyByte
	}
	return b
}

// newFloatInput makes a float (or I32) input of shape laid out as l, its
// elements drawn from gen (I32 values are gen's result converted to int32),
// and its buffer's other elements decoys.
func newFloatInput(rng *rand.Rand, dt tensor.DType, shape []int, l layout, gen func() float64) *hostTensor {
	strides, offset, n := place(rng, dt, shape, l)
	h := &hostTensor{dt: dt, shape: shape, strides: strides, offset: offset}
	if dt == tensor.I32 {
		h.base = make([]byte, 4*n)
		for i := range n {
			binary.LittleEndian.PutUint32(h.base[4*i:], decoyI32)
		}
	} else {
		h.base = poison(dt, n)
	}
	written := make([]bool, n)
	for _, e := range h.elemIndices() {
		if written[e] {
			continue // a stride-0 view visits an element more than once
		}
		written[e] = true
		v := gen()
		switch dt {
		case tensor.F32:
			binary.LittleEndian.PutUint32(h.base[4*e:], math.Float32bits(float32(v)))
		case tensor.F16:
			binary.LittleEndian.PutUint16(h.base[2*e:], tensor.F32ToF16(float32(v)))
		case tensor.BF16:
			binary.LittleEndian.PutUint16(h.base[2*e:], tensor.F32ToBF16(float32(v)))
		case tensor.I32:
			binary.LittleEndian.PutUint32(h.base[4*e:], uint32(int32(v)))
		}
	}
	return h
}

// newOutput makes an output of shape laid out as l over a poisoned buffer.
func newOutput(rng *rand.Rand, dt tensor.DType, shape []int, l layout) *hostTensor {
	strides, offset, n := place(rng, dt, shape, l)
	return &hostTensor{dt: dt, shape: shape, strides: strides, offset: offset, base: poison(dt, n)}
}

// Value generators. None returns 0: a zero hides sign and scale errors.

// uniform returns values uniform in [lo, hi), never 0.
func uniform(rng *rand.Rand, lo, hi float64) func() float64 {
	return func() float64 {
		for {
			if v := lo + (hi-lo)*rng.Float64(); v != 0 {
				return v
			}
		}
	}
}

// wideRange returns values of random sign with magnitudes from 2⁻²⁰ to 2²⁰,
// log-uniform, to exercise every exponent an op's output may take.
func wideRange(rng *rand.Rand) func() float64 {
	return func() float64 {
		v := math.Ldexp(1+rng.Float64(), rng.IntN(41)-20)
		if rng.IntN(2) == 0 {
			v = -v
		}
		return v
	}
}

// conversionValues are values for Copy: ordinary numbers, and, one time in
// eight, special cases of the F16 and BF16 conversions: beyond F16's range
// (→ ±Inf), F16 subnormals, values that round to zero in F16, and exact ties.
func conversionValues(rng *rand.Rand) func() float64 {
	specials := []float64{70000, -1e6, 65519, 65520, 6e-8, -3e-6, 1e-9, 1 + 1.0/2048, 1 + 3.0/2048,
		1 + 1.0/256, -(1 + 3.0/256), 3e38, -1e-40}
	wide := wideRange(rng)
	return func() float64 {
		if rng.IntN(8) == 0 {
			return specials[rng.IntN(len(specials))]
		}
		return wide()
	}
}
