package cuda

import (
	"fmt"
	"math"
)

// Tensor maps (TMA descriptors) for Hopper's cp.async.bulk.tensor: a
// TensorMapSpec describes a tiled map as cuTensorMapEncodeTiled takes it,
// EncodeTensorMapTiled (driver_cgo.go) turns it into the driver's opaque
// 128-byte TensorMap, and Args.TensorMap passes one to a kernel by value (a
// `const __grid_constant__ CUtensorMap` parameter). Encoding is a host-only
// computation (no GPU work, no context needed), cheap enough to do per
// launch; a launch captured into a CUDA graph keeps the map's bytes, as it
// keeps every parameter.

// TensorMapBytes is the size of an encoded tensor map (CUtensorMap), and
// TensorMapAlign its alignment, both in the driver's memory and in a
// kernel's parameter list.
const (
	TensorMapBytes = 128
	TensorMapAlign = 64
)

// TensorMap is an encoded tensor map: the driver's opaque CUtensorMap bytes
// (on the fake driver, its documented stand-in layout).
type TensorMap [TensorMapBytes]byte

// TensorMapDataType is CUtensorMapDataType (the element type).
type TensorMapDataType int

// The element types kiln uses (values from cuda.h).
const (
	TensorMapUint8    TensorMapDataType = 0
	TensorMapUint16   TensorMapDataType = 1
	TensorMapUint32   TensorMapDataType = 2
	TensorMapInt32    TensorMapDataType = 3
	TensorMapFloat16  TensorMapDataType = 6
	TensorMapFloat32  TensorMapDataType = 7
	TensorMapBFloat16 TensorMapDataType = 9
)

// ElementBytes is the size of one element of type t (0 for a type kiln
// does not know).
func (t TensorMapDataType) ElementBytes() int {
	switch t {
	case TensorMapUint8:
		return 1
	case TensorMapUint16, TensorMapFloat16, TensorMapBFloat16:
		return 2
	case TensorMapUint32, TensorMapInt32, TensorMapFloat32:
		return 4
	}
	return 0
}

// TensorMapSwizzle is CUtensorMapSwizzle: how a box lands in shared memory.
type TensorMapSwizzle int

// The swizzle modes (values from cuda.h). With 128B swizzling the 16-byte
// unit u of the 128-byte row r of a box lands at unit u XOR (r mod 8), the
// pattern repeating every 1024 bytes of shared memory.
const (
	TensorMapSwizzleNone TensorMapSwizzle = 0
	TensorMapSwizzle32B  TensorMapSwizzle = 1
	TensorMapSwizzle64B  TensorMapSwizzle = 2
	TensorMapSwizzle128B TensorMapSwizzle = 3
)

// swizzleBytes is the span of a swizzle pattern's row (0: none).
func (s TensorMapSwizzle) swizzleBytes() int {
	switch s {
	case TensorMapSwizzle32B:
		return 32
	case TensorMapSwizzle64B:
		return 64
	case TensorMapSwizzle128B:
		return 128
	}
	return 0
}

// TensorMapL2Promotion is CUtensorMapL2promotion.
type TensorMapL2Promotion int

// The L2 promotion sizes (values from cuda.h).
const (
	TensorMapL2None TensorMapL2Promotion = 0
	TensorMapL2_64B TensorMapL2Promotion = 1
	TensorMapL2128B TensorMapL2Promotion = 2
	TensorMapL2256B TensorMapL2Promotion = 3
)

// TensorMapSpec is a tiled tensor map's description, in
// cuTensorMapEncodeTiled's terms. Dimension 0 is the innermost (contiguous)
// one. Interleaving is always none and out-of-bounds elements are filled
// with zeros (CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE), the only modes kiln uses.
type TensorMapSpec struct {
	DataType TensorMapDataType
	// Rank is the number of dimensions, 1 to 5.
	Rank int
	// Global is the device address of element (0, ..., 0): 16-byte aligned.
	Global DevicePtr
	// Dims are the elements per dimension, each 1 to 2^32.
	Dims [5]uint64
	// Strides are the bytes between consecutive indices of dimensions 1 ..
	// Rank−1 (Strides[0] is dimension 1's): multiples of 16, below 2^40.
	Strides [4]uint64
	// Box is the box (tile) a copy moves, in elements per dimension, each 1
	// to 256; Box[0]·element size must be a multiple of 16 bytes, and at
	// most the swizzle span when swizzling.
	Box [5]uint32
	// ElementStrides step through the box (1 to 8; 0 is taken as 1).
	ElementStrides [5]uint32
	Swizzle        TensorMapSwizzle
	L2Promotion    TensorMapL2Promotion
}

// Validate checks s against cuTensorMapEncodeTiled's rules, so that a bad
// map is refused with a message naming the field instead of the driver's
// bare CUDA_ERROR_INVALID_VALUE.
func (s *TensorMapSpec) Validate() error {
	eb := uint64(s.DataType.ElementBytes())
	if eb == 0 {
		return fmt.Errorf("cuda: tensor map: unknown data type %d", s.DataType)
	}
	if s.Rank < 1 || s.Rank > 5 {
		return fmt.Errorf("cuda: tensor map: rank %d is outside 1..5", s.Rank)
	}
	if s.Global == 0 || uint64(s.Global)%16 != 0 {
		return fmt.Errorf("cuda: tensor map: global address %#x must be non-zero and 16-byte aligned", uint64(s.Global))
	}
	for i := range s.Rank {
		if s.Dims[i] < 1 || s.Dims[i] > 1<<32 {
			return fmt.Errorf("cuda: tensor map: dimension %d has %d elements, outside 1..2^32", i, s.Dims[i])
		}
		if s.Box[i] < 1 || s.Box[i] > 256 {
			return fmt.Errorf("cuda: tensor map: box dimension %d is %d, outside 1..256", i, s.Box[i])
		}
		if e := s.ElementStrides[i]; e > 8 {
			return fmt.Errorf("cuda: tensor map: element stride %d of dimension %d is outside 1..8", e, i)
		}
	}
	for i := 0; i < s.Rank-1; i++ {
		st := s.Strides[i]
		if st%16 != 0 || st >= 1<<40 {
			return fmt.Errorf("cuda: tensor map: stride of dimension %d is %d bytes: must be a multiple of 16 below 2^40", i+1, st)
		}
	}
	innerBytes := uint64(s.Box[0]) * eb
	if innerBytes%16 != 0 {
		return fmt.Errorf("cuda: tensor map: the box's inner dimension is %d bytes, not a multiple of 16", innerBytes)
	}
	if span := s.Swizzle.swizzleBytes(); span != 0 && innerBytes > uint64(span) {
		return fmt.Errorf("cuda: tensor map: the box's inner dimension is %d bytes, more than the %d-byte swizzle span", innerBytes, span)
	} else if s.Swizzle < TensorMapSwizzleNone || s.Swizzle > TensorMapSwizzle128B {
		return fmt.Errorf("cuda: tensor map: unknown swizzle mode %d", s.Swizzle)
	}
	if s.L2Promotion < TensorMapL2None || s.L2Promotion > TensorMapL2256B {
		return fmt.Errorf("cuda: tensor map: unknown L2 promotion %d", s.L2Promotion)
	}
	if uint64(s.Global) > math.MaxInt64 {
		return fmt.Errorf("cuda: tensor map: global address %#x is past the address space", uint64(s.Global))
	}
	return nil
}

// FakeTensorMap is the layout the fake drivers (cuda/fakecuda, and the
// kernels package's simulator tests) write into a TensorMap in place of the
// driver's opaque encoding, little-endian: the magic "KTMP", then
//
//	offset  4  uint8   data type (TensorMapDataType)
//	offset  5  uint8   rank
//	offset  6  uint8   swizzle (TensorMapSwizzle)
//	offset  7  uint8   L2 promotion
//	offset  8  uint64  global address
//	offset 16  uint32  dims[5]
//	offset 36  uint32  box[5]
//	offset 56  uint64  strides[4] (bytes, of dimensions 1..4)
//	offset 88  uint32  element strides[5] (0 written as 1)
//
// and zeros to byte 128. The host simulators read the same fields.
func FakeTensorMap(s *TensorMapSpec) TensorMap {
	var m TensorMap
	copy(m[0:4], "KTMP")
	m[4], m[5], m[6], m[7] = byte(s.DataType), byte(s.Rank), byte(s.Swizzle), byte(s.L2Promotion)
	put32 := func(off int, v uint32) {
		m[off], m[off+1], m[off+2], m[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	put64 := func(off int, v uint64) {
		put32(off, uint32(v))
		put32(off+4, uint32(v>>32))
	}
	put64(8, uint64(s.Global))
	for i := range 5 {
		put32(16+4*i, uint32(s.Dims[i]))
		put32(36+4*i, s.Box[i])
		e := s.ElementStrides[i]
		if e == 0 {
			e = 1
		}
		put32(88+4*i, e)
	}
	for i := range 4 {
		put64(56+8*i, s.Strides[i])
	}
	return m
}
