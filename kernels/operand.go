package kernels

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Operand is a tensor as a kernel sees it: where its first element is, its
// dtype, and its layout padded to four dimensions (outermost first, leading
// dimensions of size 1, as op.Pad4 does). Strides are in elements, never
// negative; 0 broadcasts. For block-quantized dtypes Ptr is the address of
// the block holding element 0 and strides count elements (whole blocks).
type Operand struct {
	Ptr     cuda.DevicePtr
	DType   tensor.DType
	Shape   [4]int
	Strides [4]int
}

func (o Operand) String() string {
	return fmt.Sprintf("%v%v strides %v at %#x", o.DType, o.Shape, o.Strides, uint64(o.Ptr))
}

func argError(opName, arg, format string, args ...any) error {
	return &op.ArgError{Op: opName, Arg: arg, Msg: fmt.Sprintf(format, args...)}
}

// elemAlign is the alignment a kernel needs of an operand's address: the
// element size for scalar types, 2 for ggml blocks (their F16 scales are
// read with 16-bit loads; everything else byte by byte).
func elemAlign(d tensor.DType) uint64 {
	if d.IsQuantized() {
		return 2
	}
	return uint64(d.BlockBytes())
}

// checkOperand checks what every launcher relies on: a valid dtype, a
// non-negative shape and strides, an element count and a furthest element
// that fit in int64, and, when there are elements, a non-zero, aligned
// address. It returns the element count.
func checkOperand(opName, arg string, o Operand) (int64, error) {
	if !o.DType.Valid() {
		return 0, argError(opName, arg, "invalid dtype %v", o.DType)
	}
	n := int64(1)
	for i := range 4 {
		if o.Shape[i] < 0 || o.Strides[i] < 0 {
			return 0, argError(opName, arg, "negative size or stride in %v", o)
		}
		hi, lo := bits.Mul64(uint64(n), uint64(o.Shape[i]))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, argError(opName, arg, "element count of shape %v overflows int64", o.Shape)
		}
		n = int64(lo)
	}
	if n == 0 {
		return 0, nil
	}
	furthest := uint64(0)
	for i := range 4 {
		hi, lo := bits.Mul64(uint64(o.Shape[i]-1), uint64(o.Strides[i]))
		sum, carry := bits.Add64(furthest, lo, 0)
		if hi != 0 || carry != 0 || sum > math.MaxInt64/16 {
			return 0, argError(opName, arg, "the furthest element of %v is out of range", o)
		}
		furthest = sum
	}
	if o.Ptr == 0 {
		return 0, argError(opName, arg, "device address is 0 for %d elements", n)
	}
	if a := elemAlign(o.DType); uint64(o.Ptr)%a != 0 {
		return 0, argError(opName, arg, "device address %#x is not aligned to %d bytes (%v)", uint64(o.Ptr), a, o.DType)
	}
	return n, nil
}

// contiguous reports whether o's elements are packed in row-major order
// (dimensions of size 1 may have any stride).
func contiguous(o Operand) bool {
	want := 1
	for i := 3; i >= 0; i-- {
		if o.Shape[i] == 1 {
			continue
		}
		if o.Strides[i] != want {
			return false
		}
		want *= o.Shape[i]
	}
	return true
}

// innerContiguous reports whether o's innermost dimension is contiguous
// (stride 1, or a single element).
func innerContiguous(o Operand) bool { return o.Shape[3] <= 1 || o.Strides[3] == 1 }

// aligned reports whether every address is a multiple of its alignment.
func aligned(ptrs []cuda.DevicePtr, alignments []uint64) bool {
	for i, p := range ptrs {
		if uint64(p)%alignments[i] != 0 {
			return false
		}
	}
	return true
}

func strided(o Operand) stridedParams {
	return stridedParams{Ptr: uint64(o.Ptr), Strides: [4]int64{int64(o.Strides[0]), int64(o.Strides[1]), int64(o.Strides[2]), int64(o.Strides[3])}}
}

func shape64(o Operand) [4]int64 {
	return [4]int64{int64(o.Shape[0]), int64(o.Shape[1]), int64(o.Shape[2]), int64(o.Shape[3])}
}

// checkFloat checks that o is F32, F16 or BF16.
func checkFloat(opName, arg string, o Operand) error {
	if !o.DType.IsFloat() {
		return argError(opName, arg, "dtype %v is not one of F32, F16, BF16", o.DType)
	}
	return nil
}

// checkLike checks that o has dst's dtype and shape.
func checkLike(opName, arg string, o, dst Operand) error {
	if o.DType != dst.DType {
		return argError(opName, arg, "dtype %v, expected %v (dst's dtype)", o.DType, dst.DType)
	}
	if o.Shape != dst.Shape {
		return argError(opName, arg, "shape %v, expected %v (dst's shape; broadcast inputs through stride 0 first)", o.Shape, dst.Shape)
	}
	return nil
}

// checkParamPtr checks an optional F32 parameter vector's address.
func checkParamPtr(opName, arg string, p cuda.DevicePtr) error {
	if uint64(p)%4 != 0 {
		return argError(opName, arg, "device address %#x of an F32 vector is not aligned to 4 bytes", uint64(p))
	}
	return nil
}
