package kernels

import (
	"encoding/binary"
	"fmt"

	"github.com/kiln-gpu/kiln/runtime/op"
)

// ErrorWordBytes is the size of the device error word (KilnErrorWord in
// kiln_params.h): eight little-endian uint32, {code, op, index lo/hi,
// value lo/hi, limit lo/hi}.
//
// Protocol: the backend allocates the word in device memory, zeroes it, and
// passes its address to the launchers that take one (Embedding). A kernel
// that meets bad data claims the word with atomicCAS on code (0 -> its code);
// only the winner writes the other fields, so the first fault is kept whole.
// After synchronising, the backend copies the 32 bytes back, calls
// DecodeDeviceError, and zeroes the word again before reusing it.
const ErrorWordBytes = 32

// ErrorCode says what a kernel found wrong (KILN_ERR_* in kiln_params.h).
type ErrorCode uint32

const (
	// ErrCodeNone: no fault was recorded.
	ErrCodeNone ErrorCode = 0
	// ErrCodeIndexOutOfRange: Value is outside [0, Limit).
	ErrCodeIndexOutOfRange ErrorCode = 1
)

// ErrorOp is the op whose kernel recorded a fault (KILN_OP_* in kiln_params.h).
type ErrorOp uint32

const (
	// ErrOpEmbedding: an embedding id was out of range; Index is the flat
	// (row-major) position of the id in ids, Value the id, Limit the vocabulary size.
	ErrOpEmbedding ErrorOp = 1
)

func (o ErrorOp) String() string {
	if o == ErrOpEmbedding {
		return op.NameEmbedding
	}
	return fmt.Sprintf("op %d", uint32(o))
}

// DeviceError is a fault a kernel recorded in the device error word. It
// matches op.ErrDeviceFault.
type DeviceError struct {
	Code  ErrorCode
	Op    ErrorOp
	Index int64
	Value int64
	Limit int64
}

func (e *DeviceError) Error() string {
	switch {
	case e.Code == ErrCodeIndexOutOfRange && e.Op == ErrOpEmbedding:
		return fmt.Sprintf("%s: id %d at index %d is outside [0, %d)", e.Op, e.Value, e.Index, e.Limit)
	case e.Code == ErrCodeIndexOutOfRange:
		return fmt.Sprintf("%s: value %d at index %d is outside [0, %d)", e.Op, e.Value, e.Index, e.Limit)
	}
	return fmt.Sprintf("%s: unknown device error code %d (index %d, value %d, limit %d)", e.Op, uint32(e.Code), e.Index, e.Value, e.Limit)
}

// Is makes errors.Is(err, op.ErrDeviceFault) true.
func (e *DeviceError) Is(target error) bool { return target == op.ErrDeviceFault }

// DecodeDeviceError decodes the error word's bytes as copied from the
// device: nil when no fault was recorded, a *DeviceError when one was, and a
// plain error when word is not ErrorWordBytes long.
func DecodeDeviceError(word []byte) error {
	if len(word) != ErrorWordBytes {
		return fmt.Errorf("kernels: the device error word is %d bytes, expected %d", len(word), ErrorWordBytes)
	}
	var w [ErrorWordBytes / 4]uint32
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(word[4*i:])
	}
	return decodeWords(w)
}

func decodeWords(w [ErrorWordBytes / 4]uint32) error {
	if ErrorCode(w[0]) == ErrCodeNone {
		return nil
	}
	join := func(lo, hi uint32) int64 { return int64(uint64(hi)<<32 | uint64(lo)) }
	return &DeviceError{
		Code:  ErrorCode(w[0]),
		Op:    ErrorOp(w[1]),
		Index: join(w[2], w[3]),
		Value: join(w[4], w[5]),
		Limit: join(w[6], w[7]),
	}
}
