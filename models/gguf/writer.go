package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Writer builds a GGUF file: metadata in the order first set, tensors in the
// order added, each tensor's data at a multiple of the alignment
// (general.alignment when set, else DefaultAlignment) and followed by zero
// padding up to the next multiple. Files it writes read back through Parse
// bit for bit, and the same calls write the same bytes.
//
// Tensor data are either given as bytes (AddTensor, kept by reference until
// the write) or produced at write time (AddTensorFunc), so that models larger
// than memory can be written.
//
// A Writer is not safe for concurrent use.
type Writer struct {
	version     uint32
	kvs         []KV
	keyIndex    map[string]int
	tensors     []writerTensor
	tensorIndex map[string]int
}

type writerTensor struct {
	name      string
	ggmlType  uint32
	ne        []uint64 // ggml order, innermost first
	sizeBytes int64
	data      []byte                  // the bytes, or nil when produce is set
	produce   func(w io.Writer) error // writes exactly sizeBytes bytes
}

// NewWriter returns a Writer for GGUF version 2 or 3 (3 is what llama.cpp
// writes today; the layouts are the same). Another version makes WriteTo
// fail.
func NewWriter(version uint32) *Writer {
	return &Writer{version: version, keyIndex: map[string]int{}, tensorIndex: map[string]int{}}
}

// Set sets key to v, replacing an earlier value of key in place (the key
// keeps its first position). v is checked when the file is written: a value
// whose Type does not match the field used, an array whose Len differs from
// its slice, or general.alignment that is not a UINT32 power of two makes
// WriteTo fail. Arrays are kept by reference until the write.
func (w *Writer) Set(key string, v Value) {
	if i, ok := w.keyIndex[key]; ok {
		w.kvs[i].Value = v
		return
	}
	w.keyIndex[key] = len(w.kvs)
	w.kvs = append(w.kvs, KV{Key: key, Value: v})
}

// SetUint8 sets key to a UINT8 value.
func (w *Writer) SetUint8(key string, v uint8) { w.Set(key, Value{Type: TypeUint8, U64: uint64(v)}) }

// SetInt8 sets key to an INT8 value.
func (w *Writer) SetInt8(key string, v int8) { w.Set(key, Value{Type: TypeInt8, I64: int64(v)}) }

// SetUint16 sets key to a UINT16 value.
func (w *Writer) SetUint16(key string, v uint16) { w.Set(key, Value{Type: TypeUint16, U64: uint64(v)}) }

// SetInt16 sets key to an INT16 value.
func (w *Writer) SetInt16(key string, v int16) { w.Set(key, Value{Type: TypeInt16, I64: int64(v)}) }

// SetUint32 sets key to a UINT32 value.
func (w *Writer) SetUint32(key string, v uint32) { w.Set(key, Value{Type: TypeUint32, U64: uint64(v)}) }

// SetInt32 sets key to an INT32 value.
func (w *Writer) SetInt32(key string, v int32) { w.Set(key, Value{Type: TypeInt32, I64: int64(v)}) }

// SetUint64 sets key to a UINT64 value.
func (w *Writer) SetUint64(key string, v uint64) { w.Set(key, Value{Type: TypeUint64, U64: v}) }

// SetInt64 sets key to an INT64 value.
func (w *Writer) SetInt64(key string, v int64) { w.Set(key, Value{Type: TypeInt64, I64: v}) }

// SetFloat32 sets key to a FLOAT32 value.
func (w *Writer) SetFloat32(key string, v float32) {
	w.Set(key, Value{Type: TypeFloat32, F64: float64(v)})
}

// SetFloat64 sets key to a FLOAT64 value.
func (w *Writer) SetFloat64(key string, v float64) { w.Set(key, Value{Type: TypeFloat64, F64: v}) }

// SetBool sets key to a BOOL value.
func (w *Writer) SetBool(key string, v bool) { w.Set(key, Value{Type: TypeBool, Bool: v}) }

// SetString sets key to a STRING value.
func (w *Writer) SetString(key string, v string) { w.Set(key, Value{Type: TypeString, Str: v}) }

// SetArray sets key to an ARRAY value (kept by reference until the write).
func (w *Writer) SetArray(key string, a *Array) { w.Set(key, Value{Type: TypeArray, Array: a}) }

// SetStrings sets key to an array of STRING (kept by reference until the write).
func (w *Writer) SetStrings(key string, v []string) {
	w.SetArray(key, &Array{ElemType: TypeString, Len: len(v), Str: v})
}

// SetFloat32s sets key to an array of FLOAT32 (kept by reference until the write).
func (w *Writer) SetFloat32s(key string, v []float32) {
	w.SetArray(key, &Array{ElemType: TypeFloat32, Len: len(v), F32: v})
}

// SetInt32s sets key to an array of INT32 (kept by reference until the write).
func (w *Writer) SetInt32s(key string, v []int32) {
	w.SetArray(key, &Array{ElemType: TypeInt32, Len: len(v), I32: v})
}

// SetUint32s sets key to an array of UINT32 (kept by reference until the write).
func (w *Writer) SetUint32s(key string, v []uint32) {
	w.SetArray(key, &Array{ElemType: TypeUint32, Len: len(v), U32: v})
}

// AddTensor adds a tensor of a kiln dtype with shape in kiln order
// (outermost first) and its storage bytes, which must be exactly the size of
// the shape in dt (dt.RowBytes of the innermost dimension times the others).
// data is kept by reference and must not change until the write.
func (w *Writer) AddTensor(name string, dt tensor.DType, shape []int, data []byte) error {
	gt, ok := dt.GGMLType()
	if !ok {
		return fmt.Errorf("gguf: writer: tensor %q: invalid dtype %v", name, dt)
	}
	return w.AddRawTensor(name, gt, shape, data)
}

// AddRawTensor is AddTensor for any ggml type this package knows the block
// layout of (GGMLTypeLayout), including types kiln cannot compute with: for
// tests of tools and loaders that must refuse them.
func (w *Writer) AddRawTensor(name string, ggmlType uint32, shape []int, data []byte) error {
	t, err := w.newTensor(name, ggmlType, shape)
	if err != nil {
		return err
	}
	if int64(len(data)) != t.sizeBytes {
		return fmt.Errorf("gguf: writer: tensor %q: %d bytes of data, want %d for %s %v", name, len(data), t.sizeBytes, GGMLTypeName(ggmlType), shape)
	}
	t.data = data
	w.add(t)
	return nil
}

// AddTensorFunc adds a tensor whose bytes produce writes at write time:
// exactly the size of the shape in dt (see AddTensor), or the write fails.
// produce is called once per WriteTo, in tensor order, with a writer that
// counts and buffers; it lets a multi-gigabyte synthetic model be written
// without holding its tensors in memory. To copy from a reader r, produce
// can be func(w io.Writer) error { _, err := io.Copy(w, r); return err }.
func (w *Writer) AddTensorFunc(name string, dt tensor.DType, shape []int, produce func(w io.Writer) error) error {
	gt, ok := dt.GGMLType()
	if !ok {
		return fmt.Errorf("gguf: writer: tensor %q: invalid dtype %v", name, dt)
	}
	if produce == nil {
		return fmt.Errorf("gguf: writer: tensor %q: nil produce function", name)
	}
	t, err := w.newTensor(name, gt, shape)
	if err != nil {
		return err
	}
	t.produce = produce
	w.add(t)
	return nil
}

// maxTensorNameBytes is ggml's GGML_MAX_NAME: names must be shorter, so
// that they fit its fixed buffer with the terminating NUL.
const maxTensorNameBytes = 64

// newTensor checks a tensor's name, type and shape and computes its size.
func (w *Writer) newTensor(name string, ggmlType uint32, shape []int) (writerTensor, error) {
	if _, dup := w.tensorIndex[name]; dup {
		return writerTensor{}, fmt.Errorf("gguf: writer: duplicate tensor name %q", name)
	}
	if len(name) >= maxTensorNameBytes {
		return writerTensor{}, fmt.Errorf("gguf: writer: tensor name %q is %d bytes; ggml (GGML_MAX_NAME) refuses names of %d bytes or more", name, len(name), maxTensorNameBytes)
	}
	be, bb, ok := GGMLTypeLayout(ggmlType)
	if !ok {
		return writerTensor{}, fmt.Errorf("gguf: writer: tensor %q: unknown ggml type %d", name, ggmlType)
	}
	if len(shape) < 1 || len(shape) > ggmlMaxDims {
		return writerTensor{}, fmt.Errorf("gguf: writer: tensor %q: shape %v has %d dimensions, want 1..%d", name, shape, len(shape), ggmlMaxDims)
	}
	t := writerTensor{name: name, ggmlType: ggmlType, ne: make([]uint64, len(shape))}
	for i, d := range shape {
		if d < 0 {
			return writerTensor{}, fmt.Errorf("gguf: writer: tensor %q: shape %v has a negative dimension", name, shape)
		}
		t.ne[len(shape)-1-i] = uint64(d)
	}
	inner := int64(shape[len(shape)-1])
	if inner%be != 0 {
		return writerTensor{}, fmt.Errorf("gguf: writer: tensor %q: innermost dimension %d of shape %v is not a whole number of %d-element %s blocks",
			name, inner, shape, be, GGMLTypeName(ggmlType))
	}
	size, ok := mulCheck(inner/be, bb)
	for _, d := range shape[:len(shape)-1] {
		if !ok {
			break
		}
		size, ok = mulCheck(size, int64(d))
	}
	if !ok {
		return writerTensor{}, fmt.Errorf("gguf: writer: tensor %q: shape %v of %s overflows a 64-bit byte count", name, shape, GGMLTypeName(ggmlType))
	}
	t.sizeBytes = size
	return t, nil
}

func (w *Writer) add(t writerTensor) {
	w.tensorIndex[t.name] = len(w.tensors)
	w.tensors = append(w.tensors, t)
}

// alignment returns the alignment the file will use, checking
// general.alignment when it is set.
func (w *Writer) alignment() (int64, error) {
	i, ok := w.keyIndex[AlignmentKey]
	if !ok {
		return DefaultAlignment, nil
	}
	v := w.kvs[i].Value
	if v.Type != TypeUint32 || v.U64 == 0 || v.U64 > math.MaxUint32 || v.U64&(v.U64-1) != 0 {
		return 0, fmt.Errorf("gguf: writer: %s must be a uint32 power of two, have %v %d", AlignmentKey, v.Type, v.U64)
	}
	return int64(v.U64), nil
}

// checkValue reports what is wrong with a value the writer is asked to
// write, or nil.
func checkValue(v Value) error {
	if !v.Type.Valid() {
		return fmt.Errorf("value type %d is not a GGUF type", uint32(v.Type))
	}
	var inRange bool
	switch v.Type {
	case TypeUint8:
		inRange = v.U64 <= math.MaxUint8
	case TypeUint16:
		inRange = v.U64 <= math.MaxUint16
	case TypeUint32:
		inRange = v.U64 <= math.MaxUint32
	case TypeInt8:
		inRange = v.I64 >= math.MinInt8 && v.I64 <= math.MaxInt8
	case TypeInt16:
		inRange = v.I64 >= math.MinInt16 && v.I64 <= math.MaxInt16
	case TypeInt32:
		inRange = v.I64 >= math.MinInt32 && v.I64 <= math.MaxInt32
	case TypeArray:
		return checkArray(v.Array, 1)
	default:
		inRange = true
	}
	if !inRange {
		return fmt.Errorf("%v value out of range (U64 %d, I64 %d)", v.Type, v.U64, v.I64)
	}
	return nil
}

func checkArray(a *Array, depth int) error {
	if a == nil {
		return errors.New("array value with a nil Array")
	}
	if depth > maxArrayDepth {
		return fmt.Errorf("arrays nested more than %d deep", maxArrayDepth)
	}
	if a.ElemType == TypeArray {
		return errors.New("arrays of arrays are not supported (ggml's gguf.cpp and kiln's reader refuse them)")
	}
	n := a.sliceLen()
	if n < 0 {
		return fmt.Errorf("array element type %d is not a GGUF type", uint32(a.ElemType))
	}
	if n != a.Len {
		return fmt.Errorf("array of %v has Len %d but %d elements in its slice", a.ElemType, a.Len, n)
	}
	for i, sub := range a.Arrays {
		if err := checkArray(sub, depth+1); err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
	}
	return nil
}

// encoder writes little-endian values to a buffered writer, keeping the
// first error and the byte count.
type encoder struct {
	w   *bufio.Writer
	n   int64
	err error
	buf [8]byte
}

func (e *encoder) bytes(b []byte) {
	if e.err != nil {
		return
	}
	var k int
	k, e.err = e.w.Write(b)
	e.n += int64(k)
}

func (e *encoder) u8(v uint8) {
	e.buf[0] = v
	e.bytes(e.buf[:1])
}
func (e *encoder) u16(v uint16) {
	binary.LittleEndian.PutUint16(e.buf[:], v)
	e.bytes(e.buf[:2])
}
func (e *encoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:], v)
	e.bytes(e.buf[:4])
}
func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], v)
	e.bytes(e.buf[:8])
}
func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		var k int
		k, e.err = e.w.WriteString(s)
		e.n += int64(k)
	}
}

func (e *encoder) zeros(n int64) {
	var zero [64]byte
	for n > 0 && e.err == nil {
		k := min(n, int64(len(zero)))
		e.bytes(zero[:k])
		n -= k
	}
}

// scalar writes the payload of a fixed-size or string value.
func (e *encoder) scalar(v Value) {
	switch v.Type {
	case TypeUint8:
		e.u8(uint8(v.U64))
	case TypeInt8:
		e.u8(uint8(v.I64))
	case TypeUint16:
		e.u16(uint16(v.U64))
	case TypeInt16:
		e.u16(uint16(v.I64))
	case TypeUint32:
		e.u32(uint32(v.U64))
	case TypeInt32:
		e.u32(uint32(v.I64))
	case TypeUint64:
		e.u64(v.U64)
	case TypeInt64:
		e.u64(uint64(v.I64))
	case TypeFloat32:
		e.u32(math.Float32bits(float32(v.F64)))
	case TypeFloat64:
		e.u64(math.Float64bits(v.F64))
	case TypeBool:
		if v.Bool {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case TypeString:
		e.str(v.Str)
	case TypeArray:
		e.array(v.Array)
	}
}

func (e *encoder) array(a *Array) {
	e.u32(uint32(a.ElemType))
	e.u64(uint64(a.Len))
	switch a.ElemType {
	case TypeUint8:
		e.bytes(a.U8)
	case TypeInt8:
		for _, x := range a.I8 {
			e.u8(uint8(x))
		}
	case TypeUint16:
		for _, x := range a.U16 {
			e.u16(x)
		}
	case TypeInt16:
		for _, x := range a.I16 {
			e.u16(uint16(x))
		}
	case TypeUint32:
		for _, x := range a.U32 {
			e.u32(x)
		}
	case TypeInt32:
		for _, x := range a.I32 {
			e.u32(uint32(x))
		}
	case TypeUint64:
		for _, x := range a.U64 {
			e.u64(x)
		}
	case TypeInt64:
		for _, x := range a.I64 {
			e.u64(uint64(x))
		}
	case TypeFloat32:
		for _, x := range a.F32 {
			e.u32(math.Float32bits(x))
		}
	case TypeFloat64:
		for _, x := range a.F64 {
			e.u64(math.Float64bits(x))
		}
	case TypeBool:
		for _, x := range a.Bool {
			if x {
				e.u8(1)
			} else {
				e.u8(0)
			}
		}
	case TypeString:
		for _, s := range a.Str {
			e.str(s)
		}
	case TypeArray:
		for _, sub := range a.Arrays {
			e.array(sub)
		}
	}
}

// countingWriter passes bytes on to an encoder and refuses more than limit.
type countingWriter struct {
	e       *encoder
	name    string
	limit   int64
	written int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > c.limit-c.written {
		return 0, fmt.Errorf("gguf: writer: tensor %q: produced more than its %d bytes", c.name, c.limit)
	}
	c.e.bytes(b)
	if c.e.err != nil {
		return 0, c.e.err
	}
	c.written += int64(len(b))
	return len(b), nil
}

// WriteTo writes the file to out and returns the number of bytes written. It
// checks all metadata and the version before writing anything; a tensor
// whose produce function fails or writes the wrong number of bytes stops the
// write with an error naming the tensor (out then holds a partial file).
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	if w.version != 2 && w.version != 3 {
		return 0, fmt.Errorf("gguf: writer: version %d, want 2 or 3", w.version)
	}
	align, err := w.alignment()
	if err != nil {
		return 0, err
	}
	for _, kv := range w.kvs {
		if err := checkValue(kv.Value); err != nil {
			return 0, fmt.Errorf("gguf: writer: metadata %q: %w", kv.Key, err)
		}
	}
	// Offsets relative to the data section: each tensor at a multiple of
	// the alignment.
	relOffsets := make([]int64, len(w.tensors))
	var next int64
	for i, t := range w.tensors {
		relOffsets[i] = next
		end, ok := alignUp(next+t.sizeBytes, align)
		if !ok || next > math.MaxInt64-t.sizeBytes {
			return 0, fmt.Errorf("gguf: writer: tensor %q: the data section overflows a 64-bit offset", t.name)
		}
		next = end
	}

	e := &encoder{w: bufio.NewWriterSize(out, 1<<20)}
	e.bytes([]byte(Magic))
	e.u32(w.version)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kvs)))
	for _, kv := range w.kvs {
		e.str(kv.Key)
		e.u32(uint32(kv.Value.Type))
		e.scalar(kv.Value)
	}
	for i, t := range w.tensors {
		e.str(t.name)
		e.u32(uint32(len(t.ne)))
		for _, n := range t.ne {
			e.u64(n)
		}
		e.u32(t.ggmlType)
		e.u64(uint64(relOffsets[i]))
	}
	if len(w.tensors) > 0 {
		start, _ := alignUp(e.n, align)
		e.zeros(start - e.n)
	}
	for _, t := range w.tensors {
		if e.err != nil {
			break
		}
		if t.produce != nil {
			c := &countingWriter{e: e, name: t.name, limit: t.sizeBytes}
			if err := t.produce(c); err != nil {
				return e.n, fmt.Errorf("gguf: writer: tensor %q: %w", t.name, err)
			}
			if c.written != t.sizeBytes {
				return e.n, fmt.Errorf("gguf: writer: tensor %q: produced %d bytes, want %d", t.name, c.written, t.sizeBytes)
			}
		} else {
			e.bytes(t.data)
		}
		end, _ := alignUp(e.n, align)
		e.zeros(end - e.n)
	}
	if e.err == nil {
		e.err = e.w.Flush()
	}
	if e.err != nil {
		return e.n, fmt.Errorf("gguf: writer: %w", e.err)
	}
	return e.n, nil
}

// WriteFile writes the file to path (created or truncated). On error the
// partial file is removed.
func (w *Writer) WriteFile(path string) (err error) {
	fh, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("gguf: writer: %w", err)
	}
	defer func() {
		if cerr := fh.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("gguf: writer: %w", cerr)
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	_, err = w.WriteTo(fh)
	return err
}
