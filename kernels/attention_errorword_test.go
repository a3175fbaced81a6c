package kernels

import (
	"errors"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
)

// TestDecodeAttentionDeviceErrors: the words the attention and AppendKV
// kernels write (codes and ops of kiln_params.h, index/value/limit as
// documented there) decode to messages that name the tensor, the entry and
// the bound.
func TestDecodeAttentionDeviceErrors(t *testing.T) {
	neg := func(v int32) uint32 { return uint32(v) }
	tests := []struct {
		name string
		word []byte
		msg  string
		want DeviceError
	}{
		{"query start past q", word(2, 2, 3, 0, 900, 0, 512, 0),
			"attention: queryStarts[3] = 900 is outside [0, 512] (q's rows)",
			DeviceError{Code: ErrCodeQueryStartRange, Op: ErrOpAttention, Index: 3, Value: 900, Limit: 512}},
		{"first query start not 0", word(2, 2, 0, 0, 4, 0, 0, 0),
			"attention: queryStarts[0] = 4, must be 0",
			DeviceError{Code: ErrCodeQueryStartRange, Op: ErrOpAttention, Index: 0, Value: 4, Limit: 0}},
		{"last query start short of q", word(12, 2, 3, 0, 60, 0, 64, 0),
			"attention: queryStarts[3] = 60: the last start must be totalQ = 64 (q's rows)",
			DeviceError{Code: ErrCodeQueryStartsEnd, Op: ErrOpAttention, Index: 3, Value: 60, Limit: 64}},
		{"query starts decrease", word(3, 2, 2, 0, 5, 0, 7, 0),
			"attention: queryStarts[2] = 5 is less than queryStarts[1] = 7 (starts must not decrease)",
			DeviceError{Code: ErrCodeQueryStartDecreasing, Op: ErrOpAttention, Index: 2, Value: 5, Limit: 7}},
		{"negative kv start", word(4, 2, 1, 0, neg(-3), 0xffffffff, 100, 0),
			"attention: kv.Starts[1] = -3 is outside [0, 100] (the rows of kv.K and kv.V)",
			DeviceError{Code: ErrCodeKVStartRange, Op: ErrOpAttention, Index: 1, Value: -3, Limit: 100}},
		{"kv starts decrease", word(5, 2, 4, 0, 10, 0, 12, 0),
			"attention: kv.Starts[4] = 10 is less than kv.Starts[3] = 12 (starts must not decrease)",
			DeviceError{Code: ErrCodeKVStartDecreasing, Op: ErrOpAttention, Index: 4, Value: 10, Limit: 12}},
		{"length over the table", word(6, 2, 1, 0, 5000, 0, 4096, 0),
			"attention: kv.Lens[1] = 5000 is outside [0, 4096] (the block table's capacity)",
			DeviceError{Code: ErrCodeKVLenRange, Op: ErrOpAttention, Index: 1, Value: 5000, Limit: 4096}},
		{"too many queries", word(7, 2, 2, 0, 300, 0, 256, 0),
			"attention: sequence 2 has 300 queries, more than MaxQueryLen = 256",
			DeviceError{Code: ErrCodeQueryLenOverMax, Op: ErrOpAttention, Index: 2, Value: 300, Limit: 256}},
		{"too many keys", word(8, 2, 0, 0, 9000, 0, 8192, 0),
			"attention: sequence 0 has 9000 keys, more than MaxKVLen = 8192",
			DeviceError{Code: ErrCodeKVLenOverMax, Op: ErrOpAttention, Index: 0, Value: 9000, Limit: 8192}},
		{"narrow mask", word(9, 2, 1, 0, 300, 0, 256, 0),
			"attention: sequence 1 has 300 keys, but the mask has only 256 columns",
			DeviceError{Code: ErrCodeMaskTooNarrow, Op: ErrOpAttention, Index: 1, Value: 300, Limit: 256}},
		{"page of a sequence", word(10, 2, 5, 2, 70, 0, 64, 0),
			"attention: page 70 of sequence 2 (kv.BlockTable[2, 5]) is outside [0, 64)",
			DeviceError{Code: ErrCodePageOutOfRange, Op: ErrOpAttention, Index: 2<<32 | 5, Value: 70, Limit: 64}},
		{"negative page", word(10, 2, 0, 0, neg(-1), 0xffffffff, 64, 0),
			"attention: page -1 of sequence 0 (kv.BlockTable[0, 0]) is outside [0, 64)",
			DeviceError{Code: ErrCodePageOutOfRange, Op: ErrOpAttention, Index: 0, Value: -1, Limit: 64}},
		{"append: seq id", word(1, 3, 3, 0, 9, 0, 4, 0),
			"append-kv: seqIDs[3] = 9 is outside [0, 4) (the block table's rows)",
			DeviceError{Code: ErrCodeIndexOutOfRange, Op: ErrOpAppendKV, Index: 3, Value: 9, Limit: 4}},
		{"append: position", word(11, 3, 0, 0, 4096, 0, 4096, 0),
			"append-kv: positions[0] = 4096 is outside [0, 4096) (the block table's capacity)",
			DeviceError{Code: ErrCodePositionOutOfRange, Op: ErrOpAppendKV, Index: 0, Value: 4096, Limit: 4096}},
		{"append: page", word(10, 3, 7, 0, 99, 0, 64, 0),
			"append-kv: page 99 for token 7 is outside [0, 64)",
			DeviceError{Code: ErrCodePageOutOfRange, Op: ErrOpAppendKV, Index: 7, Value: 99, Limit: 64}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := DecodeDeviceError(tc.word)
			if err == nil {
				t.Fatal("got nil, want an error")
			}
			if err.Error() != tc.msg {
				t.Errorf("message %q\nwant    %q", err.Error(), tc.msg)
			}
			if !errors.Is(err, op.ErrDeviceFault) {
				t.Errorf("errors.Is(%v, op.ErrDeviceFault) is false", err)
			}
			var de *DeviceError
			if !errors.As(err, &de) || *de != tc.want {
				t.Errorf("decoded %+v, want %+v", de, tc.want)
			}
		})
	}
	if ErrOpAttention.String() != op.NameAttention || ErrOpAppendKV.String() != op.NameAppendKV {
		t.Errorf("op names %q, %q", ErrOpAttention, ErrOpAppendKV)
	}
}
