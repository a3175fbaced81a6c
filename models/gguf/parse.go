package gguf

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Layout limits. The GGUF format itself bounds nothing but the file size;
// these keep a hostile file from driving the parser into deep recursion.
const (
	// maxArrayDepth is how deeply arrays may nest (an array of arrays is
	// depth 2). Real files use depth 1.
	maxArrayDepth = 8
	// ggmlMaxDims is ggml's GGML_MAX_DIMS: a GGUF tensor has at most this
	// many dimensions (kiln's tensor.MaxRank is the same).
	ggmlMaxDims = 4
	// headerSize is magic, version, tensor count, metadata count.
	headerSize = 4 + 4 + 8 + 8
	// minTensorInfoSize is the fewest bytes a tensor description takes:
	// name length, n_dims, one dimension, type, offset.
	minTensorInfoSize = 8 + 4 + 8 + 4 + 8
	// minKVSize is the fewest bytes a metadata pair takes: key length,
	// value type, a one-byte value.
	minKVSize = 8 + 4 + 1
)

// Parse validates and parses GGUF bytes, for tests, fuzzing and models
// embedded in a binary. Tensor data are not copied: TensorData returns
// slices of data, which the caller must keep unchanged while the File is in
// use. name is used in error messages and as File.Path.
func Parse(data []byte, name string) (*File, error) {
	p := parser{data: data, file: name}
	f, err := p.parse()
	if err != nil {
		return nil, err
	}
	f.data = data
	return f, nil
}

// parser reads a GGUF image front to back. Its read methods report ok=false
// when too few bytes are left; callers turn that into an *Error naming the
// field, so that field names are built only when something is wrong.
type parser struct {
	data []byte
	file string
	pos  int64
}

func (p *parser) left() int64 { return int64(len(p.data)) - p.pos }

func (p *parser) errAt(err error, field string, off int64, format string, args ...any) *Error {
	return &Error{File: p.file, Field: field, Offset: off, Msg: fmt.Sprintf(format, args...), Err: err}
}

// truncated reports a field of size bytes at the current position that the
// file is too short for.
func (p *parser) truncated(field string, size int64) *Error {
	return p.errAt(ErrMalformed, field, p.pos, "need %d bytes, the file has %d left (truncated file?)", size, max(p.left(), 0))
}

func (p *parser) u32() (uint32, bool) {
	if p.left() < 4 {
		return 0, false
	}
	v := binary.LittleEndian.Uint32(p.data[p.pos:])
	p.pos += 4
	return v, true
}

func (p *parser) u64() (uint64, bool) {
	if p.left() < 8 {
		return 0, false
	}
	v := binary.LittleEndian.Uint64(p.data[p.pos:])
	p.pos += 8
	return v, true
}

// str reads a GGUF string: a uint64 byte length, then the bytes (copied).
func (p *parser) str(field func() string) (string, error) {
	start := p.pos
	n, ok := p.u64()
	if !ok {
		return "", p.truncated(field()+" length", 8)
	}
	if n > uint64(p.left()) {
		return "", p.errAt(ErrMalformed, field()+" length", start, "string length %d exceeds the %d bytes left in the file", n, p.left())
	}
	s := string(p.data[p.pos : p.pos+int64(n)])
	p.pos += int64(n)
	return s, nil
}

func (p *parser) parse() (*File, error) {
	f := &File{Path: p.file, Alignment: DefaultAlignment}

	// Header.
	if len(p.data) < 4 {
		return nil, p.errAt(ErrMalformed, "header.magic", 0, "the file is %d bytes long, too short for the 4-byte magic %q", len(p.data), Magic)
	}
	if string(p.data[:4]) != Magic {
		return nil, p.errAt(ErrMalformed, "header.magic", 0, "found %q, want %q: not a GGUF file", p.data[:4], Magic)
	}
	p.pos = 4
	version, ok := p.u32()
	if !ok {
		return nil, p.truncated("header.version", 4)
	}
	switch {
	case version == 2 || version == 3:
	case version == 1:
		return nil, p.errAt(ErrUnsupported, "header.version", 4, "found version 1 (the 2023 draft format with 32-bit counts), want 2 or 3: convert the file with a current llama.cpp")
	case bits.ReverseBytes32(version) >= 1 && bits.ReverseBytes32(version) <= 3:
		return nil, p.errAt(ErrUnsupported, "header.version", 4, "found version bytes %08x: a big-endian GGUF file (version %d); kiln reads little-endian files only", version, bits.ReverseBytes32(version))
	default:
		return nil, p.errAt(ErrUnsupported, "header.version", 4, "found version %d, want 2 or 3", version)
	}
	f.Version = version
	nTensors, ok := p.u64()
	if !ok {
		return nil, p.truncated("header.tensor_count", 8)
	}
	nKV, ok := p.u64()
	if !ok {
		return nil, p.truncated("header.metadata_kv_count", 8)
	}
	// Every pair and every tensor description takes some bytes: bound the
	// counts by the bytes left before allocating anything for them.
	if nKV > uint64(p.left()/minKVSize) {
		return nil, p.errAt(ErrMalformed, "header.metadata_kv_count", 16, "found %d pairs, but the %d bytes after the header hold at most %d (%d bytes each at least)", nKV, p.left(), p.left()/minKVSize, minKVSize)
	}
	if nTensors > uint64(p.left()/minTensorInfoSize) {
		return nil, p.errAt(ErrMalformed, "header.tensor_count", 8, "found %d tensors, but the %d bytes after the header hold at most %d descriptions (%d bytes each at least)", nTensors, p.left(), p.left()/minTensorInfoSize, minTensorInfoSize)
	}

	// Metadata.
	f.Metadata = make([]KV, 0, nKV)
	f.keyIndex = make(map[string]int, nKV)
	alignmentOff := int64(-1)
	for i := range int(nKV) {
		keyOff := p.pos
		key, err := p.str(func() string { return fmt.Sprintf("metadata[%d] key", i) })
		if err != nil {
			return nil, err
		}
		if j, dup := f.keyIndex[key]; dup {
			return nil, p.errAt(ErrMalformed, fmt.Sprintf("metadata[%d] key", i), keyOff, "duplicate key %q (first defined by metadata[%d])", key, j)
		}
		typeOff := p.pos
		t, ok := p.u32()
		if !ok {
			return nil, p.truncated(fmt.Sprintf("metadata %q type", key), 4)
		}
		vt := ValueType(t)
		if !vt.Valid() {
			return nil, p.errAt(ErrMalformed, fmt.Sprintf("metadata %q type", key), typeOff, "found value type %d, want 0..%d", t, numValueTypes-1)
		}
		if key == AlignmentKey {
			alignmentOff = p.pos
		}
		v, err := p.value(vt, func() string { return fmt.Sprintf("metadata %q value", key) }, 0)
		if err != nil {
			return nil, err
		}
		f.keyIndex[key] = len(f.Metadata)
		f.Metadata = append(f.Metadata, KV{Key: key, Value: v})
	}
	if alignmentOff >= 0 {
		v := f.Metadata[f.keyIndex[AlignmentKey]].Value
		if v.Type != TypeUint32 {
			return nil, p.errAt(ErrMalformed, fmt.Sprintf("metadata %q value", AlignmentKey), alignmentOff, "found a %v, want a uint32", v.Type)
		}
		if v.U64 == 0 || v.U64&(v.U64-1) != 0 {
			return nil, p.errAt(ErrMalformed, fmt.Sprintf("metadata %q value", AlignmentKey), alignmentOff, "found %d, want a power of two", v.U64)
		}
		f.Alignment = int64(v.U64)
	}

	// Tensor descriptions.
	type rawTensor struct {
		infoOff, dimsOff, typeOff, offsetOff int64
		ne                                   []int64 // ggml order, innermost first
		ggmlType                             uint32
		relOffset                            uint64
	}
	raws := make([]rawTensor, 0, nTensors)
	f.Tensors = make([]TensorInfo, 0, nTensors)
	f.tensorIx = make(map[string]int, nTensors)
	for i := range int(nTensors) {
		rt := rawTensor{infoOff: p.pos}
		name, err := p.str(func() string { return fmt.Sprintf("tensor[%d] name", i) })
		if err != nil {
			return nil, err
		}
		field := func(what string) string { return fmt.Sprintf("tensor %q %s", name, what) }
		if j, dup := f.tensorIx[name]; dup {
			return nil, p.errAt(ErrMalformed, fmt.Sprintf("tensor[%d] name", i), rt.infoOff, "duplicate tensor name %q (first defined by tensor[%d])", name, j)
		}
		nDimsOff := p.pos
		nDims, ok := p.u32()
		if !ok {
			return nil, p.truncated(field("n_dims"), 4)
		}
		if nDims == 0 {
			return nil, p.errAt(ErrMalformed, field("n_dims"), nDimsOff, "found 0 dimensions, want 1..%d", ggmlMaxDims)
		}
		if nDims > ggmlMaxDims {
			return nil, p.errAt(ErrUnsupported, field("n_dims"), nDimsOff, "found %d dimensions; kiln (tensor.MaxRank) and ggml handle at most %d", nDims, ggmlMaxDims)
		}
		rt.dimsOff = p.pos
		rt.ne = make([]int64, nDims)
		for d := range rt.ne {
			dimOff := p.pos
			n, ok := p.u64()
			if !ok {
				return nil, p.truncated(field(fmt.Sprintf("ne[%d]", d)), 8)
			}
			if n > math.MaxInt64 || n > math.MaxInt {
				return nil, p.errAt(ErrMalformed, field(fmt.Sprintf("ne[%d]", d)), dimOff, "dimension %d is beyond the largest int (%d)", n, int64(math.MaxInt))
			}
			rt.ne[d] = int64(n)
		}
		rt.typeOff = p.pos
		if rt.ggmlType, ok = p.u32(); !ok {
			return nil, p.truncated(field("type"), 4)
		}
		rt.offsetOff = p.pos
		if rt.relOffset, ok = p.u64(); !ok {
			return nil, p.truncated(field("offset"), 8)
		}
		f.tensorIx[name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, TensorInfo{Name: name})
		raws = append(raws, rt)
	}

	// The data section starts at the next multiple of the alignment.
	fileSize := int64(len(p.data))
	dataStart, ok := alignUp(p.pos, f.Alignment)
	if !ok {
		return nil, p.errAt(ErrMalformed, "data section", p.pos, "aligning offset %d to %d overflows", p.pos, f.Alignment)
	}
	f.DataOffset = dataStart
	if len(raws) > 0 && dataStart > fileSize {
		return nil, p.errAt(ErrMalformed, "data section", p.pos, "the data section would start at offset %d (aligned to %d), beyond the end of the %d-byte file", dataStart, f.Alignment, fileSize)
	}

	for i := range f.Tensors {
		ti, rt := &f.Tensors[i], &raws[i]
		name := ti.Name
		ti.GGMLType = rt.ggmlType
		ti.DType, _ = tensor.FromGGMLType(rt.ggmlType)
		ti.Shape = make([]int, len(rt.ne))
		for d, n := range rt.ne {
			ti.Shape[len(rt.ne)-1-d] = int(n)
		}
		// Byte size: whole blocks along ne[0], times the other dimensions,
		// with every product checked for overflow.
		ti.SizeBytes = -1
		if be, bb, known := GGMLTypeLayout(rt.ggmlType); known {
			if rt.ne[0]%be != 0 {
				return nil, p.errAt(ErrMalformed, fmt.Sprintf("tensor %q ne[0]", name), rt.dimsOff,
					"row length %d is not a whole number of %d-element %s blocks", rt.ne[0], be, GGMLTypeName(rt.ggmlType))
			}
			size, ok := mulCheck(rt.ne[0]/be, bb)
			for _, n := range rt.ne[1:] {
				if !ok {
					break
				}
				size, ok = mulCheck(size, n)
			}
			if !ok {
				return nil, p.errAt(ErrMalformed, fmt.Sprintf("tensor %q dimensions", name), rt.dimsOff,
					"shape %v of %s needs more than %d bytes (integer overflow)", ti.Shape, GGMLTypeName(rt.ggmlType), int64(math.MaxInt64))
			}
			ti.SizeBytes = size
		} else {
			// Without a block layout the tensor's extent is unknown, so it
			// could not be bounds-checked: refuse it, as gguf.cpp does.
			return nil, p.errAt(ErrUnsupported, fmt.Sprintf("tensor %q type", name), rt.typeOff,
				"ggml type %d is not one this reader knows the layout of", rt.ggmlType)
		}
		if rt.relOffset%uint64(f.Alignment) != 0 {
			return nil, p.errAt(ErrMalformed, fmt.Sprintf("tensor %q offset", name), rt.offsetOff,
				"data offset %d is not a multiple of the alignment %d", rt.relOffset, f.Alignment)
		}
		if rt.relOffset > uint64(fileSize-dataStart) {
			return nil, p.errAt(ErrMalformed, fmt.Sprintf("tensor %q offset", name), rt.offsetOff,
				"data offset %d (absolute %d) is beyond the end of the %d-byte file", rt.relOffset, uint64(dataStart)+rt.relOffset, fileSize)
		}
		ti.Offset = dataStart + int64(rt.relOffset)
		if ti.SizeBytes > fileSize-ti.Offset {
			return nil, p.errAt(ErrMalformed, fmt.Sprintf("tensor %q data", name), rt.offsetOff,
				"%d bytes of %s %v from offset %d end at %d, past the end of the %d-byte file", ti.SizeBytes, GGMLTypeName(rt.ggmlType), ti.Shape, ti.Offset, ti.Offset+ti.SizeBytes, fileSize)
		}
	}

	// No two tensors may share bytes.
	order := make([]int, 0, len(f.Tensors))
	for i, t := range f.Tensors {
		if t.SizeBytes > 0 {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(f.Tensors[a].Offset, f.Tensors[b].Offset) })
	for k := 1; k < len(order); k++ {
		prev, cur := f.Tensors[order[k-1]], f.Tensors[order[k]]
		if cur.Offset < prev.Offset+prev.SizeBytes {
			return nil, p.errAt(ErrMalformed, fmt.Sprintf("tensor %q data", cur.Name), raws[order[k]].offsetOff,
				"bytes [%d, %d) overlap those of tensor %q [%d, %d)", cur.Offset, cur.Offset+cur.SizeBytes, prev.Name, prev.Offset, prev.Offset+prev.SizeBytes)
		}
	}
	return f, nil
}

// value reads one value of type t at the current position.
func (p *parser) value(t ValueType, field func() string, depth int) (Value, error) {
	v := Value{Type: t}
	start := p.pos
	if size := int64(t.scalarSize()); size > 0 && p.left() < size {
		return v, p.truncated(field(), size)
	}
	switch t {
	case TypeUint8:
		v.U64 = uint64(p.data[p.pos])
	case TypeInt8:
		v.I64 = int64(int8(p.data[p.pos]))
	case TypeUint16:
		v.U64 = uint64(binary.LittleEndian.Uint16(p.data[p.pos:]))
	case TypeInt16:
		v.I64 = int64(int16(binary.LittleEndian.Uint16(p.data[p.pos:])))
	case TypeUint32:
		v.U64 = uint64(binary.LittleEndian.Uint32(p.data[p.pos:]))
	case TypeInt32:
		v.I64 = int64(int32(binary.LittleEndian.Uint32(p.data[p.pos:])))
	case TypeUint64:
		v.U64 = binary.LittleEndian.Uint64(p.data[p.pos:])
	case TypeInt64:
		v.I64 = int64(binary.LittleEndian.Uint64(p.data[p.pos:]))
	case TypeFloat32:
		v.F64 = float64(math.Float32frombits(binary.LittleEndian.Uint32(p.data[p.pos:])))
	case TypeFloat64:
		v.F64 = math.Float64frombits(binary.LittleEndian.Uint64(p.data[p.pos:]))
	case TypeBool:
		b := p.data[p.pos]
		if b > 1 {
			return v, p.errAt(ErrMalformed, field(), start, "bool byte is %d, want 0 or 1", b)
		}
		v.Bool = b == 1
	case TypeString:
		s, err := p.str(field)
		if err != nil {
			return v, err
		}
		v.Str = s
		return v, nil
	case TypeArray:
		a, err := p.array(field, depth+1)
		if err != nil {
			return v, err
		}
		v.Array = a
		return v, nil
	default:
		return v, p.errAt(ErrMalformed, field(), start, "value type %d is not a GGUF type", uint32(t))
	}
	p.pos += int64(t.scalarSize())
	return v, nil
}

// array reads an array header (element type, length) and its elements.
func (p *parser) array(field func() string, depth int) (*Array, error) {
	start := p.pos
	if depth > maxArrayDepth {
		return nil, p.errAt(ErrMalformed, field(), start, "arrays nested %d deep, more than the %d kiln accepts", depth, maxArrayDepth)
	}
	et, ok := p.u32()
	if !ok {
		return nil, p.truncated(field()+" element type", 4)
	}
	elem := ValueType(et)
	if !elem.Valid() {
		return nil, p.errAt(ErrMalformed, field()+" element type", start, "found value type %d, want 0..%d", et, numValueTypes-1)
	}
	if elem == TypeArray {
		// ggml's gguf.cpp refuses them too; and an empty nested array costs
		// 12 bytes in the file but hundreds in memory, which would let a
		// small file demand a large allocation.
		return nil, p.errAt(ErrUnsupported, field()+" element type", start, "arrays of arrays are not supported")
	}
	lenOff := p.pos
	n, ok := p.u64()
	if !ok {
		return nil, p.truncated(field()+" length", 8)
	}
	if minSize := elem.minEncodedSize(); n > uint64(p.left()/minSize) {
		return nil, p.errAt(ErrMalformed, field()+" length", lenOff, "array of %d %v elements needs at least %d bytes each, but only %d bytes are left", n, elem, minSize, p.left())
	}
	count := int(n)
	a := &Array{ElemType: elem, Len: count}
	// Fixed-size elements: the length check above covers all of them.
	d := p.data[p.pos:]
	switch elem {
	case TypeUint8:
		a.U8 = slices.Clone(d[:count])
	case TypeInt8:
		a.I8 = make([]int8, count)
		for i := range a.I8 {
			a.I8[i] = int8(d[i])
		}
	case TypeUint16:
		a.U16 = make([]uint16, count)
		for i := range a.U16 {
			a.U16[i] = binary.LittleEndian.Uint16(d[2*i:])
		}
	case TypeInt16:
		a.I16 = make([]int16, count)
		for i := range a.I16 {
			a.I16[i] = int16(binary.LittleEndian.Uint16(d[2*i:]))
		}
	case TypeUint32:
		a.U32 = make([]uint32, count)
		for i := range a.U32 {
			a.U32[i] = binary.LittleEndian.Uint32(d[4*i:])
		}
	case TypeInt32:
		a.I32 = make([]int32, count)
		for i := range a.I32 {
			a.I32[i] = int32(binary.LittleEndian.Uint32(d[4*i:]))
		}
	case TypeUint64:
		a.U64 = make([]uint64, count)
		for i := range a.U64 {
			a.U64[i] = binary.LittleEndian.Uint64(d[8*i:])
		}
	case TypeInt64:
		a.I64 = make([]int64, count)
		for i := range a.I64 {
			a.I64[i] = int64(binary.LittleEndian.Uint64(d[8*i:]))
		}
	case TypeFloat32:
		a.F32 = make([]float32, count)
		for i := range a.F32 {
			a.F32[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
	case TypeFloat64:
		a.F64 = make([]float64, count)
		for i := range a.F64 {
			a.F64[i] = math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:]))
		}
	case TypeBool:
		a.Bool = make([]bool, count)
		for i := range a.Bool {
			if d[i] > 1 {
				return nil, p.errAt(ErrMalformed, field()+"["+strconv.Itoa(i)+"]", p.pos+int64(i), "bool byte is %d, want 0 or 1", d[i])
			}
			a.Bool[i] = d[i] == 1
		}
	case TypeString:
		a.Str = make([]string, count)
		for i := range a.Str {
			s, err := p.str(func() string { return field() + "[" + strconv.Itoa(i) + "]" })
			if err != nil {
				return nil, err
			}
			a.Str[i] = s
		}
		return a, nil
	case TypeArray:
		a.Arrays = make([]*Array, count)
		for i := range a.Arrays {
			sub, err := p.array(func() string { return field() + "[" + strconv.Itoa(i) + "]" }, depth+1)
			if err != nil {
				return nil, err
			}
			a.Arrays[i] = sub
		}
		return a, nil
	}
	p.pos += int64(count) * int64(elem.scalarSize())
	return a, nil
}

// alignUp rounds off up to a multiple of align (a power of two), reporting
// false on overflow.
func alignUp(off, align int64) (int64, bool) {
	if off > math.MaxInt64-(align-1) {
		return 0, false
	}
	return (off + align - 1) &^ (align - 1), true
}

// mulCheck multiplies two non-negative int64 values, reporting false when the
// product overflows.
func mulCheck(a, b int64) (int64, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	if a > math.MaxInt64/b {
		return 0, false
	}
	return a * b, true
}
