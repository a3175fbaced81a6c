package cuda

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// validSpec is a 4-D F16 map over a paged K cache: (head dim 128, 2 heads,
// 64 tokens, 10 pages), a box of 64 × 1 × 64 × 1 with 128B swizzling.
func validSpec() TensorMapSpec {
	return TensorMapSpec{
		DataType: TensorMapFloat16, Rank: 4, Global: 0x7000_0000_0000,
		Dims:    [5]uint64{128, 2, 64, 10},
		Strides: [4]uint64{256, 512, 64 * 512},
		Box:     [5]uint32{64, 1, 64, 1},
		Swizzle: TensorMapSwizzle128B,
	}
}

func TestTensorMapSpecValidate(t *testing.T) {
	ok := validSpec()
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid spec refused: %v", err)
	}
	for _, c := range []struct {
		name, want string
		edit       func(s *TensorMapSpec)
	}{
		{"unknown dtype", "data type", func(s *TensorMapSpec) { s.DataType = 42 }},
		{"rank 0", "rank 0", func(s *TensorMapSpec) { s.Rank = 0 }},
		{"rank 6", "rank 6", func(s *TensorMapSpec) { s.Rank = 6 }},
		{"null address", "global address", func(s *TensorMapSpec) { s.Global = 0 }},
		{"unaligned address", "16-byte aligned", func(s *TensorMapSpec) { s.Global += 8 }},
		{"empty dim", "dimension 2 has 0", func(s *TensorMapSpec) { s.Dims[2] = 0 }},
		{"box too big", "box dimension 2 is 257", func(s *TensorMapSpec) { s.Box[2] = 257 }},
		{"stride not a multiple of 16", "stride of dimension 2 is 520", func(s *TensorMapSpec) { s.Strides[1] = 520 }},
		{"inner box not 16 bytes", "not a multiple of 16", func(s *TensorMapSpec) { s.Box[0] = 4 }},
		{"inner box over the swizzle span", "more than the 128-byte swizzle span", func(s *TensorMapSpec) { s.Box[0] = 128 }},
		{"element stride", "element stride 9", func(s *TensorMapSpec) { s.ElementStrides[1] = 9 }},
		{"swizzle mode", "swizzle mode 7", func(s *TensorMapSpec) { s.Swizzle = 7 }},
	} {
		s := validSpec()
		c.edit(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", c.name, err, c.want)
		}
	}
	// Strides of dimensions past the rank are not looked at.
	s := validSpec()
	s.Rank = 2
	s.Strides[2] = 3
	if err := s.Validate(); err != nil {
		t.Errorf("rank 2 with a junk third stride: %v", err)
	}
}

func TestFakeTensorMapLayout(t *testing.T) {
	s := validSpec()
	m := FakeTensorMap(&s)
	le := binary.LittleEndian
	if string(m[:4]) != "KTMP" || m[4] != 6 || m[5] != 4 || m[6] != 3 || m[7] != 0 {
		t.Fatalf("header % x", m[:8])
	}
	if le.Uint64(m[8:]) != 0x7000_0000_0000 {
		t.Errorf("global %#x", le.Uint64(m[8:]))
	}
	for i, want := range []uint32{128, 2, 64, 10, 0} {
		if got := le.Uint32(m[16+4*i:]); got != want {
			t.Errorf("dims[%d] = %d, want %d", i, got, want)
		}
	}
	for i, want := range []uint32{64, 1, 64, 1, 0} {
		if got := le.Uint32(m[36+4*i:]); got != want {
			t.Errorf("box[%d] = %d, want %d", i, got, want)
		}
	}
	for i, want := range []uint64{256, 512, 32768, 0} {
		if got := le.Uint64(m[56+8*i:]); got != want {
			t.Errorf("strides[%d] = %d, want %d", i, got, want)
		}
	}
	for i := range 5 {
		if got := le.Uint32(m[88+4*i:]); got != 1 {
			t.Errorf("element stride %d = %d, want 1 (0 means 1)", i, got)
		}
	}
	if !bytes.Equal(m[108:], make([]byte, 20)) {
		t.Errorf("tail not zero: % x", m[108:])
	}
}

func TestArgsTensorMapAlignsTo64(t *testing.T) {
	var a Args
	var m TensorMap
	for i := range m {
		m[i] = byte(i + 1)
	}
	a.I32(7).TensorMap(&m).I32(9)
	b := a.Bytes()
	if len(b) != 64+128+4 {
		t.Fatalf("%d bytes packed, want %d (int, padding to 64, 128-byte map, int)", len(b), 64+128+4)
	}
	if !bytes.Equal(b[64:192], m[:]) || !bytes.Equal(b[4:64], make([]byte, 60)) {
		t.Errorf("map not at offset 64 after zero padding")
	}
	if b[192] != 9 {
		t.Errorf("the int after the map is not at offset 192")
	}
}
