package cpu

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/pool"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Buffer is host memory owned by a CPU backend: a 64-byte-aligned slice from
// the backend's allocator, or caller-owned memory given to Wrap. It satisfies
// tensor.Buffer.
type Buffer struct {
	backend *Backend
	data    []byte
	// block is the allocator's block (nil for memory given to Wrap).
	block *pool.Block[[]byte]
	// readOnly buffers (WrapReadOnly) are refused as op outputs and by Upload.
	readOnly bool
	freed    atomic.Bool
}

// SizeBytes is the usable size of the buffer in bytes.
func (buf *Buffer) SizeBytes() int64 { return int64(len(buf.data)) }

// bufferAlign is the alignment of every buffer the allocator hands out: a
// cache line, more than any element type needs.
const bufferAlign = 64

// maxHostAllocBytes bounds a single allocation. Larger requests fail with
// op.ErrOutOfMemory instead of reaching make, which would panic (beyond the
// address space) or abort the process.
const maxHostAllocBytes = 1 << 46

// hostAllocator is the pool's Allocator over Go memory.
type hostAllocator struct{}

// Alloc returns sizeBytes of zeroed Go memory whose first byte is
// bufferAlign-aligned.
func (hostAllocator) Alloc(sizeBytes int64) ([]byte, error) {
	if sizeBytes < 0 || sizeBytes > maxHostAllocBytes {
		return nil, fmt.Errorf("cpu: %w: %d bytes is more than one host allocation may take (%d)", op.ErrOutOfMemory, sizeBytes, int64(maxHostAllocBytes))
	}
	raw := make([]byte, sizeBytes+bufferAlign)
	skip := 0
	if rem := int(uintptr(unsafe.Pointer(unsafe.SliceData(raw))) % bufferAlign); rem != 0 {
		skip = bufferAlign - rem
	}
	return raw[skip : skip+int(sizeBytes) : skip+int(sizeBytes)], nil
}

// Free drops the reference; the garbage collector reclaims the memory.
func (hostAllocator) Free([]byte) error { return nil }

// Wrap returns a contiguous tensor of dt and shape over data, caller-owned
// host memory such as a memory-mapped weights file, without copying. data
// must hold at least the tensor's size in bytes and, for F32 and I32, start
// at a 4-byte-aligned address (2 for F16 and BF16). The caller keeps data
// alive and unchanged while the tensor is used; Free marks the tensor's buffer
// freed but leaves the memory to the caller. Ops may write into a wrapped
// tensor; use WrapReadOnly for memory that must not be written (a read-only
// mapping, where a write would crash the process).
func (b *Backend) Wrap(data []byte, dt tensor.DType, shape ...int) (tensor.Tensor, error) {
	return b.wrap("wrap", data, false, dt, shape)
}

// WrapReadOnly is Wrap for memory that must not be written: ops refuse the
// tensor (and views of it) as an output, and Upload refuses it, with an error
// matching op.ErrInvalidArgument.
func (b *Backend) WrapReadOnly(data []byte, dt tensor.DType, shape ...int) (tensor.Tensor, error) {
	return b.wrap("wrap read-only", data, true, dt, shape)
}

func (b *Backend) wrap(what string, data []byte, readOnly bool, dt tensor.DType, shape []int) (tensor.Tensor, error) {
	sizeBytes, err := tensor.SizeBytes(dt, shape...)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("cpu: %s %v %v: %w: %v", what, dt, shape, op.ErrInvalidArgument, err)
	}
	if int64(len(data)) < sizeBytes {
		return tensor.Tensor{}, fmt.Errorf("cpu: %s %v %v: %w: data has %d bytes, need %d", what, dt, shape, op.ErrInvalidArgument, len(data), sizeBytes)
	}
	if a := alignOf(dt); len(data) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(data)))%uintptr(a) != 0 {
		return tensor.Tensor{}, fmt.Errorf("cpu: %s %v %v: %w: data at address %p is not %d-byte aligned",
			what, dt, shape, op.ErrInvalidArgument, unsafe.SliceData(data), a)
	}
	if err := b.begin(what); err != nil {
		return tensor.Tensor{}, err
	}
	defer b.end()
	buf := &Buffer{backend: b, data: data[:sizeBytes:sizeBytes], readOnly: readOnly}
	t, err := tensor.New(buf, dt, shape...)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("cpu: %s %v %v: %w: %v", what, dt, shape, op.ErrInvalidArgument, err)
	}
	return t, nil
}

// Bytes returns the storage bytes of t, which must be a contiguous tensor of
// this backend, without copying: the slice aliases the tensor's memory, so
// writes through it change the tensor, and it must not be used after Free.
// It is for host-side code that reads weights or results in place. For a
// tensor made by WrapReadOnly the slice must only be read.
func (b *Backend) Bytes(t tensor.Tensor) ([]byte, error) {
	const what = "bytes"
	if t.IsZero() {
		return nil, fmt.Errorf("cpu: %s: %w: missing tensor", what, op.ErrInvalidArgument)
	}
	if !t.IsContiguous() {
		return nil, fmt.Errorf("cpu: %s: %w: %v is not contiguous", what, op.ErrInvalidArgument, t)
	}
	if err := b.begin(what); err != nil {
		return nil, err
	}
	defer b.end()
	v, err := b.resolve(what, "t", t, false)
	if err != nil {
		return nil, err
	}
	start := t.ByteOffset()
	end := start + t.SizeBytes()
	return v.mem[start:end:end], nil
}

// alignOf is the address alignment the backend needs for dt's elements.
func alignOf(dt tensor.DType) int {
	switch dt {
	case tensor.F32, tensor.I32:
		return 4
	case tensor.F16, tensor.BF16:
		return 2
	}
	return 1 // I8 and the block formats are read byte by byte
}

// ownBuffer returns t's buffer if this backend made it, and an error naming
// the op and argument otherwise. It does not look at whether it was freed.
func (b *Backend) ownBuffer(opName, arg string, t tensor.Tensor) (*Buffer, error) {
	buf, ok := t.Buffer().(*Buffer)
	switch {
	case !ok:
		return nil, fmt.Errorf("cpu: %s: %s: %w: its buffer is a %T, not a CPU buffer", opName, arg, op.ErrForeignTensor, t.Buffer())
	case buf == nil:
		return nil, fmt.Errorf("cpu: %s: %s: %w: nil CPU buffer", opName, arg, op.ErrForeignTensor)
	case buf.backend != b:
		return nil, fmt.Errorf("cpu: %s: %s: %w: its buffer belongs to another CPU backend", opName, arg, op.ErrForeignTensor)
	}
	return buf, nil
}

// view is a tensor resolved against its host memory: its layout padded to
// four dimensions and typed views of the whole buffer, indexed by element.
type view struct {
	dt  tensor.DType
	d   op.Dims4
	mem []byte
	f32 []float32 // mem as float32, when dt is F32
	u16 []uint16  // mem as uint16, when dt is F16 or BF16
	i32 []int32   // mem as int32, when dt is I32
}

// resolve checks that t (not the zero Tensor) belongs to this backend, was
// not freed, is aligned for its dtype, and, when write is set, may be
// written; then it returns t's view. The caller holds the lifecycle lock.
func (b *Backend) resolve(opName, arg string, t tensor.Tensor, write bool) (view, error) {
	buf, err := b.ownBuffer(opName, arg, t)
	if err != nil {
		return view{}, err
	}
	if buf.freed.Load() {
		return view{}, fmt.Errorf("cpu: %s: %s: %w: the buffer of %v was freed", opName, arg, op.ErrClosed, t)
	}
	if write && buf.readOnly {
		return view{}, fmt.Errorf("cpu: %s: %s: %w: %v views read-only memory (WrapReadOnly)", opName, arg, op.ErrInvalidArgument, t)
	}
	dt := t.DType()
	if a := alignOf(dt); len(buf.data) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(buf.data)))%uintptr(a) != 0 {
		return view{}, fmt.Errorf("cpu: %s: %s: %w: %v views memory that is not %d-byte aligned", opName, arg, op.ErrInvalidArgument, t, a)
	}
	v := view{dt: dt, d: op.Pad4(t), mem: buf.data}
	switch dt {
	case tensor.F32:
		v.f32 = tensor.BytesF32(buf.data)
	case tensor.F16, tensor.BF16:
		v.u16 = tensor.BytesU16(buf.data)
	case tensor.I32:
		v.i32 = tensor.BytesI32(buf.data)
	}
	return v, nil
}

// resolveAll resolves several arguments of one op; optional ones given as the
// zero Tensor resolve to the zero view.
func (b *Backend) resolveAll(opName string, args ...opArg) ([]view, error) {
	views := make([]view, len(args))
	for i, a := range args {
		if a.t.IsZero() {
			continue
		}
		v, err := b.resolve(opName, a.name, a.t, a.write)
		if err != nil {
			return nil, err
		}
		views[i] = v
	}
	return views, nil
}

// opArg is one tensor argument of an op, for resolveAll.
type opArg struct {
	name  string
	t     tensor.Tensor
	write bool
}

// input is a tensor the op reads.
func input(name string, t tensor.Tensor) opArg { return opArg{name: name, t: t} }

// output is a tensor the op writes.
func output(name string, t tensor.Tensor) opArg { return opArg{name: name, t: t, write: true} }
