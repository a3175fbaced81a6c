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
// passes its address to the launchers that take one (Embedding, Attention,
// AppendKV). A kernel
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

	// Attention and AppendKV metadata faults. Unless said otherwise, Index
	// is the entry's index in its I32 tensor, Value the entry, Limit the
	// bound it broke.

	// ErrCodeQueryStartRange: queryStarts[Index] = Value is outside [0,
	// Limit] (Limit: q's rows; for Index 0, which must be 0, Limit is 0).
	ErrCodeQueryStartRange ErrorCode = 2
	// ErrCodeQueryStartDecreasing: queryStarts[Index] = Value is less than
	// queryStarts[Index−1] = Limit.
	ErrCodeQueryStartDecreasing ErrorCode = 3
	// ErrCodeKVStartRange: kv.Starts[Index] = Value is outside [0, Limit]
	// (Limit: the rows of K and V; for Index 0, Limit 0).
	ErrCodeKVStartRange ErrorCode = 4
	// ErrCodeKVStartDecreasing: kv.Starts[Index] = Value is less than
	// kv.Starts[Index−1] = Limit.
	ErrCodeKVStartDecreasing ErrorCode = 5
	// ErrCodeKVLenRange: kv.Lens[Index] = Value is outside [0, Limit], the
	// block table's capacity (maxPagesPerSeq·pageSize).
	ErrCodeKVLenRange ErrorCode = 6
	// ErrCodeQueryLenOverMax: sequence Index has Value queries, more than
	// MaxQueryLen = Limit.
	ErrCodeQueryLenOverMax ErrorCode = 7
	// ErrCodeKVLenOverMax: sequence Index has Value keys, more than
	// MaxKVLen = Limit.
	ErrCodeKVLenOverMax ErrorCode = 8
	// ErrCodeMaskTooNarrow: sequence Index has Value keys, but the mask has
	// only Limit columns.
	ErrCodeMaskTooNarrow ErrorCode = 9
	// ErrCodePageOutOfRange: page Value is outside [0, Limit), the cache's
	// pages. Attention: Index is sequence<<32 | block-table column;
	// AppendKV: Index is the token.
	ErrCodePageOutOfRange ErrorCode = 10
	// ErrCodePositionOutOfRange: AppendKV's positions[Index] = Value is
	// outside [0, Limit), the block table's capacity.
	ErrCodePositionOutOfRange ErrorCode = 11
	// ErrCodeQueryStartsEnd: the last start, queryStarts[Index = batch] =
	// Value, is not q's row count Limit (the sequences split all of q).
	ErrCodeQueryStartsEnd ErrorCode = 12
)

// ErrorOp is the op whose kernel recorded a fault (KILN_OP_* in kiln_params.h).
type ErrorOp uint32

const (
	// ErrOpEmbedding: an embedding id was out of range; Index is the flat
	// (row-major) position of the id in ids, Value the id, Limit the vocabulary size.
	ErrOpEmbedding ErrorOp = 1
	// ErrOpAttention: attention's I32 metadata (query and key starts,
	// lengths, block table) broke a rule (codes 2 to 10 and 12).
	ErrOpAttention ErrorOp = 2
	// ErrOpAppendKV: AppendKV's seq ids (ErrCodeIndexOutOfRange: Limit is
	// the block table's rows), positions or pages were out of range.
	ErrOpAppendKV ErrorOp = 3
)

func (o ErrorOp) String() string {
	switch o {
	case ErrOpEmbedding:
		return op.NameEmbedding
	case ErrOpAttention:
		return op.NameAttention
	case ErrOpAppendKV:
		return op.NameAppendKV
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
	switch e.Op {
	case ErrOpEmbedding:
		if e.Code == ErrCodeIndexOutOfRange {
			return fmt.Sprintf("%s: id %d at index %d is outside [0, %d)", e.Op, e.Value, e.Index, e.Limit)
		}
	case ErrOpAttention:
		if msg, ok := e.attentionMessage(); ok {
			return msg
		}
	case ErrOpAppendKV:
		switch e.Code {
		case ErrCodeIndexOutOfRange:
			return fmt.Sprintf("%s: seqIDs[%d] = %d is outside [0, %d) (the block table's rows)", e.Op, e.Index, e.Value, e.Limit)
		case ErrCodePositionOutOfRange:
			return fmt.Sprintf("%s: positions[%d] = %d is outside [0, %d) (the block table's capacity)", e.Op, e.Index, e.Value, e.Limit)
		case ErrCodePageOutOfRange:
			return fmt.Sprintf("%s: page %d for token %d is outside [0, %d)", e.Op, e.Value, e.Index, e.Limit)
		}
	}
	if e.Code == ErrCodeIndexOutOfRange {
		return fmt.Sprintf("%s: value %d at index %d is outside [0, %d)", e.Op, e.Value, e.Index, e.Limit)
	}
	return fmt.Sprintf("%s: unknown device error code %d (index %d, value %d, limit %d)", e.Op, uint32(e.Code), e.Index, e.Value, e.Limit)
}

// attentionMessage is the message of an attention fault (codes 2 to 10, 12).
func (e *DeviceError) attentionMessage() (string, bool) {
	switch e.Code {
	case ErrCodeQueryStartRange, ErrCodeKVStartRange:
		arg, rows := "queryStarts", "q's rows"
		if e.Code == ErrCodeKVStartRange {
			arg, rows = "kv.Starts", "the rows of kv.K and kv.V"
		}
		if e.Index == 0 {
			return fmt.Sprintf("%s: %s[0] = %d, must be 0", e.Op, arg, e.Value), true
		}
		return fmt.Sprintf("%s: %s[%d] = %d is outside [0, %d] (%s)", e.Op, arg, e.Index, e.Value, e.Limit, rows), true
	case ErrCodeQueryStartDecreasing, ErrCodeKVStartDecreasing:
		arg := "queryStarts"
		if e.Code == ErrCodeKVStartDecreasing {
			arg = "kv.Starts"
		}
		return fmt.Sprintf("%s: %s[%d] = %d is less than %s[%d] = %d (starts must not decrease)",
			e.Op, arg, e.Index, e.Value, arg, e.Index-1, e.Limit), true
	case ErrCodeQueryStartsEnd:
		return fmt.Sprintf("%s: queryStarts[%d] = %d: the last start must be totalQ = %d (q's rows)", e.Op, e.Index, e.Value, e.Limit), true
	case ErrCodeKVLenRange:
		return fmt.Sprintf("%s: kv.Lens[%d] = %d is outside [0, %d] (the block table's capacity)", e.Op, e.Index, e.Value, e.Limit), true
	case ErrCodeQueryLenOverMax:
		return fmt.Sprintf("%s: sequence %d has %d queries, more than MaxQueryLen = %d", e.Op, e.Index, e.Value, e.Limit), true
	case ErrCodeKVLenOverMax:
		return fmt.Sprintf("%s: sequence %d has %d keys, more than MaxKVLen = %d", e.Op, e.Index, e.Value, e.Limit), true
	case ErrCodeMaskTooNarrow:
		return fmt.Sprintf("%s: sequence %d has %d keys, but the mask has only %d columns", e.Op, e.Index, e.Value, e.Limit), true
	case ErrCodePageOutOfRange:
		seq, col := uint64(e.Index)>>32, uint32(e.Index)
		return fmt.Sprintf("%s: page %d of sequence %d (kv.BlockTable[%d, %d]) is outside [0, %d)", e.Op, e.Value, seq, seq, col, e.Limit), true
	}
	return "", false
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
