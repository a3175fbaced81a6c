package cuda

import (
	"fmt"
	"math"
	"unsafe"
)

// Args packs kernel arguments by exact type and size, each aligned to its own
// size, into one buffer laid out as the kernel's parameter list. The buffer
// is kept across Reset calls, so a launcher that keeps one Args per kernel (or
// per stream) packs and launches without allocating.
//
// Pack in the kernel's parameter order: I32 for int, U32 for unsigned, I64
// for long long, F32 for float, Ptr for a pointer, Struct for a parameter
// struct passed by value (mirrored in Go with the same field types).
//
// An Args is not safe for concurrent use.
type Args struct {
	buf []byte
}

// Reset empties the buffer, keeping its storage.
func (a *Args) Reset() *Args {
	a.buf = a.buf[:0]
	return a
}

// Bytes is the packed parameter buffer.
func (a *Args) Bytes() []byte { return a.buf }

func (a *Args) align(n int) {
	for len(a.buf)%n != 0 {
		a.buf = append(a.buf, 0)
	}
}

func (a *Args) put32(v uint32) *Args {
	a.align(4)
	a.buf = append(a.buf, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	return a
}

func (a *Args) put64(v uint64) *Args {
	a.align(8)
	a.buf = append(a.buf, byte(v), byte(v>>8), byte(v>>16), byte(v>>24),
		byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
	return a
}

// I32 appends a C int.
func (a *Args) I32(v int32) *Args { return a.put32(uint32(v)) }

// U32 appends a C unsigned int.
func (a *Args) U32(v uint32) *Args { return a.put32(v) }

// I64 appends a C long long.
func (a *Args) I64(v int64) *Args { return a.put64(uint64(v)) }

// U64 appends a C unsigned long long.
func (a *Args) U64(v uint64) *Args { return a.put64(v) }

// F32 appends a C float.
func (a *Args) F32(v float32) *Args { return a.put32(math.Float32bits(v)) }

// F64 appends a C double.
func (a *Args) F64(v float64) *Args { return a.put64(math.Float64bits(v)) }

// Ptr appends a device pointer.
func (a *Args) Ptr(p DevicePtr) *Args { return a.put64(uint64(p)) }

// Struct appends a parameter struct by value. T must be a plain struct of
// fixed-size numbers (no Go pointers, slices, strings or maps) whose Go layout
// matches the C struct; each kernel family keeps a layout test for its structs.
func Struct[T any](a *Args, v *T) *Args {
	size := int(unsafe.Sizeof(*v))
	align := int(unsafe.Alignof(*v))
	a.align(align)
	a.buf = append(a.buf, unsafe.Slice((*byte)(unsafe.Pointer(v)), size)...)
	return a
}

// TensorMap appends a tensor map by value (a `const __grid_constant__
// CUtensorMap` parameter): 128 bytes at the next multiple of 64 bytes of the
// parameter list, as the driver lays such a parameter out.
func (a *Args) TensorMap(m *TensorMap) *Args {
	a.align(TensorMapAlign)
	a.buf = append(a.buf, m[:]...)
	return a
}

// maxArgBytes is CUDA's limit on a kernel's parameter space (4 KiB before
// Volta's 32 KiB extension; kiln stays under the portable limit).
const maxArgBytes = 4096

func (a *Args) check() error {
	if len(a.buf) > maxArgBytes {
		return fmt.Errorf("cuda: %d bytes of kernel arguments exceed the %d-byte limit", len(a.buf), maxArgBytes)
	}
	return nil
}
