// Package tensor defines kiln's element types, shapes, strides and views, and
// the pure-Go conversions between them: IEEE half and bfloat16 rounding and the
// GGUF block formats, bit for bit as ggml lays them out.
//
// A Tensor is a small value: a dtype, a shape of at most MaxRank dimensions,
// strides in elements, an offset in elements and the Buffer it views. Buffers
// belong to a backend (host memory on the CPU, device memory on a GPU); this
// package knows nothing about where the bytes live.
package tensor

import (
	"fmt"
	"math"
	"strings"
)

// DType is the element type of a tensor.
//
// Block-quantized types (Q8_0, Q4_0, Q4_K, Q6_K) store BlockElems elements in
// BlockBytes bytes, blocks running along the innermost dimension exactly as in
// a GGUF file.
type DType uint8

const (
	Invalid DType = iota
	F32
	F16
	BF16
	I32
	I8
	Q8_0
	Q4_0
	Q4_K
	Q6_K
	numDTypes
)

type dtypeInfo struct {
	name       string
	blockElems int
	blockBytes int
	ggmlType   uint32 // ggml's enum ggml_type value, as stored in GGUF files
}

// QK_K is the number of elements in a K-quant super-block.
const QK_K = 256

var dtypeInfos = [numDTypes]dtypeInfo{
	Invalid: {"invalid", 0, 0, ^uint32(0)},
	F32:     {"F32", 1, 4, 0},
	F16:     {"F16", 1, 2, 1},
	BF16:    {"BF16", 1, 2, 30},
	I32:     {"I32", 1, 4, 26},
	I8:      {"I8", 1, 1, 24},
	Q8_0:    {"Q8_0", 32, 34, 8},
	Q4_0:    {"Q4_0", 32, 18, 2},
	Q4_K:    {"Q4_K", QK_K, 144, 12},
	Q6_K:    {"Q6_K", QK_K, 210, 14},
}

// Valid reports whether d is one of the defined types.
func (d DType) Valid() bool { return d > Invalid && d < numDTypes }

func (d DType) String() string {
	if d < numDTypes {
		return dtypeInfos[d].name
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// BlockElems is the number of elements in one storage block: 1 for scalar
// types, 32 for Q8_0/Q4_0, 256 for the K-quants, 0 for an invalid type.
func (d DType) BlockElems() int {
	if d < numDTypes {
		return dtypeInfos[d].blockElems
	}
	return 0
}

// BlockBytes is the size in bytes of one storage block (the element size for
// scalar types), 0 for an invalid type.
func (d DType) BlockBytes() int {
	if d < numDTypes {
		return dtypeInfos[d].blockBytes
	}
	return 0
}

// IsQuantized reports whether d is a block-quantized type.
func (d DType) IsQuantized() bool { return d.Valid() && d.BlockElems() > 1 }

// IsFloat reports whether d is F32, F16 or BF16: the types activations and
// op outputs use.
func (d DType) IsFloat() bool { return d == F32 || d == F16 || d == BF16 }

// GGMLType is the value of ggml's enum ggml_type for d, as GGUF files store it.
func (d DType) GGMLType() (uint32, bool) {
	if !d.Valid() {
		return 0, false
	}
	return dtypeInfos[d].ggmlType, true
}

// FromGGMLType maps a ggml_type value (as read from a GGUF file) to a DType.
func FromGGMLType(t uint32) (DType, bool) {
	for d := F32; d < numDTypes; d++ {
		if dtypeInfos[d].ggmlType == t {
			return d, true
		}
	}
	return Invalid, false
}

// ParseDType parses a name such as "f16", "F16", "q4_k" or "Q4_K".
func ParseDType(s string) (DType, error) {
	for d := F32; d < numDTypes; d++ {
		if strings.EqualFold(dtypeInfos[d].name, s) {
			return d, nil
		}
	}
	return Invalid, fmt.Errorf("tensor: unknown dtype %q (known: %s)", s, strings.Join(DTypeNames(), ", "))
}

// DTypeNames lists the names of all valid dtypes.
func DTypeNames() []string {
	names := make([]string, 0, numDTypes-1)
	for d := F32; d < numDTypes; d++ {
		names = append(names, dtypeInfos[d].name)
	}
	return names
}

// AllDTypes lists every valid dtype, in declaration order.
func AllDTypes() []DType {
	out := make([]DType, 0, numDTypes-1)
	for d := F32; d < numDTypes; d++ {
		out = append(out, d)
	}
	return out
}

// RowBytes is the storage size of nElems consecutive elements of type d. It
// fails when nElems is negative or not a whole number of blocks.
func (d DType) RowBytes(nElems int) (int64, error) {
	if !d.Valid() {
		return 0, fmt.Errorf("tensor: invalid dtype %v", d)
	}
	if nElems < 0 {
		return 0, fmt.Errorf("tensor: negative element count %d", nElems)
	}
	be := d.BlockElems()
	if nElems%be != 0 {
		return 0, fmt.Errorf("tensor: %d elements of %v is not a whole number of %d-element blocks", nElems, d, be)
	}
	nBlocks, bb := int64(nElems/be), int64(d.BlockBytes())
	if nBlocks > math.MaxInt64/bb {
		return 0, fmt.Errorf("tensor: %d elements of %v overflow a 64-bit byte count", nElems, d)
	}
	return nBlocks * bb, nil
}
