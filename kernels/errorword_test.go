package kernels

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
)

// word builds an error word's bytes as the device writes them: eight
// little-endian uint32.
func word(values ...uint32) []byte {
	b := make([]byte, 32)
	for i, v := range values {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	return b
}

func TestDecodeDeviceError(t *testing.T) {
	tests := []struct {
		name    string
		word    []byte
		wantNil bool
		wantMsg string
		want    DeviceError
	}{
		{name: "zero word: no fault", word: word(), wantNil: true},
		{
			name:    "embedding id too large",
			word:    word(1, 1, 12, 0, 70000, 0, 32000, 0),
			wantMsg: "embedding: id 70000 at index 12 is outside [0, 32000)",
			want:    DeviceError{Code: ErrCodeIndexOutOfRange, Op: ErrOpEmbedding, Index: 12, Value: 70000, Limit: 32000},
		},
		{
			name:    "negative id (two's complement over two words)",
			word:    word(1, 1, 3, 0, 0xfffffffe, 0xffffffff, 151936, 0),
			wantMsg: "embedding: id -2 at index 3 is outside [0, 151936)",
			want:    DeviceError{Code: ErrCodeIndexOutOfRange, Op: ErrOpEmbedding, Index: 3, Value: -2, Limit: 151936},
		},
		{
			name:    "index beyond 2^32",
			word:    word(1, 1, 5, 1, 9, 0, 4, 0),
			wantMsg: "embedding: id 9 at index 4294967301 is outside [0, 4)",
			want:    DeviceError{Code: ErrCodeIndexOutOfRange, Op: ErrOpEmbedding, Index: 1<<32 + 5, Value: 9, Limit: 4},
		},
		{
			name:    "unknown code and op",
			word:    word(7, 9, 1, 0, 2, 0, 3, 0),
			wantMsg: "op 9: unknown device error code 7 (index 1, value 2, limit 3)",
			want:    DeviceError{Code: 7, Op: 9, Index: 1, Value: 2, Limit: 3},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := DecodeDeviceError(tc.word)
			if tc.wantNil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("got nil, want an error")
			}
			if err.Error() != tc.wantMsg {
				t.Errorf("message %q, want %q", err.Error(), tc.wantMsg)
			}
			if !errors.Is(err, op.ErrDeviceFault) {
				t.Errorf("errors.Is(%v, op.ErrDeviceFault) is false", err)
			}
			var de *DeviceError
			if !errors.As(err, &de) {
				t.Fatalf("%T is not a *DeviceError", err)
			}
			if *de != tc.want {
				t.Errorf("decoded %+v, want %+v", *de, tc.want)
			}
		})
	}
}

func TestDecodeDeviceErrorWrongLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		err := DecodeDeviceError(make([]byte, n))
		if err == nil {
			t.Errorf("%d bytes: got nil, want an error", n)
			continue
		}
		if errors.Is(err, op.ErrDeviceFault) {
			t.Errorf("%d bytes: a malformed word is not a device fault: %v", n, err)
		}
	}
}
