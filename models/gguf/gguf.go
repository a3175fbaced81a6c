// Package gguf reads and writes GGUF files, the model format of ggml and
// llama.cpp.
//
// A GGUF file is a header (magic "GGUF", version, tensor and metadata counts),
// typed metadata key/value pairs, a table of tensor descriptions, padding to
// the file's alignment, and the tensor data. Every integer and float is
// little-endian. This package reads versions 2 and 3 (their layouts are the
// same for little-endian files); version 1 and big-endian files are refused.
//
// Open maps the file read-only (mmap on Linux and macOS, a plain read
// elsewhere) and validates all of it before returning: the header, every
// string and array length against the bytes left, value types, the
// alignment, each tensor's rank, dimensions, type, byte size and offset. A
// malformed file gives an *Error naming the file, the field or tensor, the
// byte offset and what was expected; no input makes the reader panic or
// allocate more than the file's size justifies.
//
// Tensor shapes are given in kiln order, outermost dimension first: GGUF
// stores ggml's ne[] (innermost first), and Shape is its reverse. A matrix
// that ggml describes as ne = {n_embd, n_vocab} has Shape {n_vocab, n_embd},
// each of its n_vocab rows holding n_embd contiguous elements.
//
// Tensor bytes are returned without copying (TensorData): slices of the
// mapping, valid until Close. Metadata (strings, arrays) is copied out of the
// mapping while parsing, so it stays valid after Close.
//
// The Writer produces files this reader (and llama.cpp) reads back: for tests
// and synthetic benchmark models, including models larger than memory
// (AddTensorFunc produces a tensor's bytes only at write time).
package gguf

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// DefaultAlignment is the alignment of tensor data when a file has no
// general.alignment key.
const DefaultAlignment = 32

// AlignmentKey is the metadata key that sets the alignment of tensor data
// (a UINT32 power of two).
const AlignmentKey = "general.alignment"

// Sentinel errors, matched with errors.Is.
var (
	// ErrMalformed is matched by every error that reports a file breaking
	// the GGUF format: truncated, inconsistent or out of range.
	ErrMalformed = errors.New("malformed GGUF")
	// ErrUnsupported is matched by errors for valid GGUF that kiln cannot
	// read or use: version 1, big-endian files, tensors of more than
	// tensor.MaxRank dimensions, TensorData on a ggml type kiln has no
	// DType for.
	ErrUnsupported = errors.New("unsupported GGUF feature")
	// ErrKeyNotFound is matched by the typed getters (String, Uint, ...)
	// when the key is absent, so callers can fall back to a default.
	ErrKeyNotFound = errors.New("metadata key not found")
	// ErrWrongType is matched by the typed getters when the key holds a
	// value of another type.
	ErrWrongType = errors.New("metadata value of the wrong type")
	// ErrClosed is returned by TensorData after Close.
	ErrClosed = errors.New("GGUF file closed")
)

// Error describes a malformed or unsupported file: which file, which field or
// tensor, where, and what was wrong. It matches ErrMalformed or
// ErrUnsupported (errors.Is).
type Error struct {
	File   string // the path given to Open, or the name given to Parse
	Field  string // what was being read: "header.version", `metadata "general.name" value`, `tensor "output.weight" dims[1]`, ...
	Offset int64  // byte offset in the file where that field starts (or where reading failed)
	Msg    string // what was expected and what was found
	Err    error  // ErrMalformed or ErrUnsupported
}

func (e *Error) Error() string {
	return fmt.Sprintf("gguf: %s: %s at offset %d: %s", e.File, e.Field, e.Offset, e.Msg)
}

// Unwrap returns ErrMalformed or ErrUnsupported.
func (e *Error) Unwrap() error { return e.Err }

// ValueType is the type tag of a GGUF metadata value.
type ValueType uint32

// The GGUF metadata value types, with the numbers files store.
const (
	TypeUint8     ValueType = 0
	TypeInt8      ValueType = 1
	TypeUint16    ValueType = 2
	TypeInt16     ValueType = 3
	TypeUint32    ValueType = 4
	TypeInt32     ValueType = 5
	TypeFloat32   ValueType = 6
	TypeBool      ValueType = 7
	TypeString    ValueType = 8
	TypeArray     ValueType = 9
	TypeUint64    ValueType = 10
	TypeInt64     ValueType = 11
	TypeFloat64   ValueType = 12
	numValueTypes ValueType = 13
)

var valueTypeNames = [numValueTypes]string{
	"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
	"bool", "string", "array", "uint64", "int64", "float64",
}

// Valid reports whether t is one of the thirteen GGUF value types.
func (t ValueType) Valid() bool { return t < numValueTypes }

func (t ValueType) String() string {
	if t.Valid() {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("ValueType(%d)", uint32(t))
}

// IsUnsigned reports whether t is UINT8, UINT16, UINT32 or UINT64.
func (t ValueType) IsUnsigned() bool {
	return t == TypeUint8 || t == TypeUint16 || t == TypeUint32 || t == TypeUint64
}

// IsSigned reports whether t is INT8, INT16, INT32 or INT64.
func (t ValueType) IsSigned() bool {
	return t == TypeInt8 || t == TypeInt16 || t == TypeInt32 || t == TypeInt64
}

// IsFloat reports whether t is FLOAT32 or FLOAT64.
func (t ValueType) IsFloat() bool { return t == TypeFloat32 || t == TypeFloat64 }

// scalarSize is the encoded size in bytes of a fixed-size value type, 0 for
// STRING and ARRAY.
func (t ValueType) scalarSize() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// minEncodedSize is the fewest bytes one value of type t can take in a file:
// its fixed size, 8 for a string (its length), 12 for an array (element type
// and length). Counts read from a file are checked against it before
// anything is allocated.
func (t ValueType) minEncodedSize() int64 {
	switch t {
	case TypeString:
		return 8
	case TypeArray:
		return 12
	}
	return int64(t.scalarSize())
}

// Value is one metadata value. Type says which field holds it:
//
//	UINT8, UINT16, UINT32, UINT64  U64
//	INT8, INT16, INT32, INT64      I64
//	FLOAT32, FLOAT64               F64 (a FLOAT32 converted exactly)
//	BOOL                           Bool
//	STRING                         Str
//	ARRAY                          Array
type Value struct {
	Type  ValueType
	U64   uint64
	I64   int64
	F64   float64
	Bool  bool
	Str   string
	Array *Array
}

// Array is a metadata array. ElemType says which slice holds the Len
// elements; the other slices are nil. Arrays of arrays use Arrays.
type Array struct {
	ElemType ValueType
	Len      int
	U8       []uint8
	I8       []int8
	U16      []uint16
	I16      []int16
	U32      []uint32
	I32      []int32
	U64      []uint64
	I64      []int64
	F32      []float32
	F64      []float64
	Bool     []bool
	Str      []string
	Arrays   []*Array
}

// sliceLen is the length of the slice that ElemType selects, or -1 when
// ElemType is not a valid type.
func (a *Array) sliceLen() int {
	switch a.ElemType {
	case TypeUint8:
		return len(a.U8)
	case TypeInt8:
		return len(a.I8)
	case TypeUint16:
		return len(a.U16)
	case TypeInt16:
		return len(a.I16)
	case TypeUint32:
		return len(a.U32)
	case TypeInt32:
		return len(a.I32)
	case TypeUint64:
		return len(a.U64)
	case TypeInt64:
		return len(a.I64)
	case TypeFloat32:
		return len(a.F32)
	case TypeFloat64:
		return len(a.F64)
	case TypeBool:
		return len(a.Bool)
	case TypeString:
		return len(a.Str)
	case TypeArray:
		return len(a.Arrays)
	}
	return -1
}

// KV is one metadata key and its value.
type KV struct {
	Key   string
	Value Value
}

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name string
	// DType is the kiln dtype of the ggml type, or tensor.Invalid when kiln
	// has none for it (GGMLType then says which type it is).
	DType tensor.DType
	// GGMLType is the ggml_type value stored in the file.
	GGMLType uint32
	// Shape is in kiln order, outermost first: the reverse of GGUF's ne[].
	Shape []int
	// Offset is the absolute file offset of the first byte of data.
	Offset int64
	// SizeBytes is the size of the data in bytes. (A ggml type whose block
	// layout this package does not know makes Parse refuse the file.)
	SizeBytes int64
}

// NumElements is the product of the dimensions.
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// TypeName is the name of the tensor's ggml type ("F32", "Q4_K", "IQ2_XXS",
// "type 200" for a type this package does not know).
func (t TensorInfo) TypeName() string { return GGMLTypeName(t.GGMLType) }

// File is an opened, validated GGUF v2/v3 file.
//
// Its fields and the metadata are read-only once Open or Parse returns; a File
// is safe for concurrent use by many goroutines, except that Close must not
// run concurrently with TensorData or with uses of the bytes it returned.
type File struct {
	// Path is the path given to Open, or the name given to Parse.
	Path string
	// Version is the GGUF version: 2 or 3.
	Version uint32
	// Alignment is general.alignment, DefaultAlignment when absent.
	Alignment int64
	// DataOffset is the absolute file offset where the tensor data section
	// begins; tensor offsets in the file are relative to it.
	DataOffset int64
	// Metadata lists the key/value pairs in file order.
	Metadata []KV
	// Tensors lists the tensors in file order.
	Tensors []TensorInfo

	data     []byte             // the whole file (mapping or memory); nil after Close
	unmap    func([]byte) error // releases data; nil for Parse
	keyIndex map[string]int     // key -> index in Metadata
	tensorIx map[string]int     // name -> index in Tensors
}

// Close releases the file's mapping. Slices returned by TensorData must not be
// used afterwards. Close is idempotent; after it, TensorData fails with
// ErrClosed while the metadata stays readable.
func (f *File) Close() error {
	if f.data == nil {
		return nil
	}
	data, unmap := f.data, f.unmap
	f.data, f.unmap = nil, nil
	if unmap != nil {
		if err := unmap(data); err != nil {
			return fmt.Errorf("gguf: %s: unmap: %w", f.Path, err)
		}
	}
	return nil
}

// Get returns the value of key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.keyIndex[key]
	if !ok {
		return Value{}, false
	}
	return f.Metadata[i].Value, true
}

// lookup returns key's value or an error matching ErrKeyNotFound.
func (f *File) lookup(key string) (Value, error) {
	v, ok := f.Get(key)
	if !ok {
		return Value{}, fmt.Errorf("gguf: %s: metadata key %q: %w", f.Path, key, ErrKeyNotFound)
	}
	return v, nil
}

func (f *File) wrongType(key string, found ValueType, want string) error {
	return fmt.Errorf("gguf: %s: metadata key %q holds a %v, want %s: %w", f.Path, key, found, want, ErrWrongType)
}

func (f *File) wrongElemType(key string, found ValueType, want string) error {
	return fmt.Errorf("gguf: %s: metadata key %q holds an array of %v, want an array of %s: %w", f.Path, key, found, want, ErrWrongType)
}

// String returns the STRING value of key.
func (f *File) String(key string) (string, error) {
	v, err := f.lookup(key)
	if err != nil {
		return "", err
	}
	if v.Type != TypeString {
		return "", f.wrongType(key, v.Type, "string")
	}
	return v.Str, nil
}

// Uint returns the value of key, which must be an integer (of any width,
// signed or not) and not negative.
func (f *File) Uint(key string) (uint64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	switch {
	case v.Type.IsUnsigned():
		return v.U64, nil
	case v.Type.IsSigned():
		if v.I64 < 0 {
			return 0, fmt.Errorf("gguf: %s: metadata key %q is %d, want a non-negative integer: %w", f.Path, key, v.I64, ErrWrongType)
		}
		return uint64(v.I64), nil
	}
	return 0, f.wrongType(key, v.Type, "an integer")
}

// Int returns the value of key, which must be an integer (of any width,
// signed or not) that fits an int64.
func (f *File) Int(key string) (int64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	switch {
	case v.Type.IsSigned():
		return v.I64, nil
	case v.Type.IsUnsigned():
		if v.U64 > math.MaxInt64 {
			return 0, fmt.Errorf("gguf: %s: metadata key %q is %d, beyond int64: %w", f.Path, key, v.U64, ErrWrongType)
		}
		return int64(v.U64), nil
	}
	return 0, f.wrongType(key, v.Type, "an integer")
}

// Float returns the FLOAT32 or FLOAT64 value of key (a FLOAT32 converts
// exactly). Integers are refused: a key that should hold a float but holds
// an integer is a sign of a misread file.
func (f *File) Float(key string) (float64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	if !v.Type.IsFloat() {
		return 0, f.wrongType(key, v.Type, "float32 or float64")
	}
	return v.F64, nil
}

// Bool returns the BOOL value of key.
func (f *File) Bool(key string) (bool, error) {
	v, err := f.lookup(key)
	if err != nil {
		return false, err
	}
	if v.Type != TypeBool {
		return false, f.wrongType(key, v.Type, "bool")
	}
	return v.Bool, nil
}

// array returns key's array, checking its element type.
func (f *File) array(key string, elem ValueType) (*Array, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	if v.Type != TypeArray {
		return nil, f.wrongType(key, v.Type, "an array of "+elem.String())
	}
	if v.Array.ElemType != elem {
		return nil, f.wrongElemType(key, v.Array.ElemType, elem.String())
	}
	return v.Array, nil
}

// Strings returns a copy of the array of STRING of key.
func (f *File) Strings(key string) ([]string, error) {
	a, err := f.array(key, TypeString)
	if err != nil {
		return nil, err
	}
	return slices.Clone(a.Str), nil
}

// Float32s returns a copy of the array of FLOAT32 of key.
func (f *File) Float32s(key string) ([]float32, error) {
	a, err := f.array(key, TypeFloat32)
	if err != nil {
		return nil, err
	}
	return slices.Clone(a.F32), nil
}

// Int32s returns a copy of the array of INT32 of key.
func (f *File) Int32s(key string) ([]int32, error) {
	a, err := f.array(key, TypeInt32)
	if err != nil {
		return nil, err
	}
	return slices.Clone(a.I32), nil
}

// Tensor returns the description of the named tensor.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.tensorIx[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensors[i], true
}

// TensorData returns the bytes of t, a tensor of this file, as a slice of the
// mapping: no copy, read-only (writing to it faults), valid until Close. It
// fails for a tensor this file does not have (by name, offset and size), for
// a ggml type kiln has no DType for (naming the type), and after Close.
func (f *File) TensorData(t TensorInfo) ([]byte, error) {
	i, ok := f.tensorIx[t.Name]
	if !ok {
		return nil, fmt.Errorf("gguf: %s: no tensor named %q", f.Path, t.Name)
	}
	own := f.Tensors[i]
	if own.Offset != t.Offset || own.SizeBytes != t.SizeBytes || own.GGMLType != t.GGMLType || !slices.Equal(own.Shape, t.Shape) {
		return nil, fmt.Errorf("gguf: %s: tensor %q: the TensorInfo given (offset %d, %d bytes, type %s, shape %v) is not this file's (offset %d, %d bytes, type %s, shape %v)",
			f.Path, t.Name, t.Offset, t.SizeBytes, GGMLTypeName(t.GGMLType), t.Shape, own.Offset, own.SizeBytes, own.TypeName(), own.Shape)
	}
	if !own.DType.Valid() {
		return nil, &Error{File: f.Path, Field: fmt.Sprintf("tensor %q type", own.Name), Offset: own.Offset,
			Msg: fmt.Sprintf("ggml type %s (%d) has no kiln dtype (kiln reads %v)", own.TypeName(), own.GGMLType, tensor.DTypeNames()),
			Err: ErrUnsupported}
	}
	if f.data == nil {
		return nil, fmt.Errorf("gguf: %s: tensor %q: %w", f.Path, t.Name, ErrClosed)
	}
	return f.data[own.Offset : own.Offset+own.SizeBytes : own.Offset+own.SizeBytes], nil
}
