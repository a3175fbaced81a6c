package tensor

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

// The expected values are ggml's (ggml.h enum ggml_type, ggml-common.h block
// structs), written out here rather than read from the table under test.
var dtypeFacts = []struct {
	dt         DType
	name       string
	ggmlType   uint32
	blockElems int
	blockBytes int
	quantized  bool
	float      bool
}{
	{F32, "F32", 0, 1, 4, false, true},
	{F16, "F16", 1, 1, 2, false, true},
	{BF16, "BF16", 30, 1, 2, false, true},
	{I32, "I32", 26, 1, 4, false, false},
	{I8, "I8", 24, 1, 1, false, false},
	{Q8_0, "Q8_0", 8, 32, 34, true, false},    // f16 d + int8 qs[32]
	{Q4_0, "Q4_0", 2, 32, 18, true, false},    // f16 d + uint8 qs[16]
	{Q4_K, "Q4_K", 12, 256, 144, true, false}, // 2 f16 + scales[12] + qs[128]
	{Q6_K, "Q6_K", 14, 256, 210, true, false}, // ql[128] + qh[64] + scales[16] + f16
}

func TestDTypeFacts(t *testing.T) {
	if got := len(AllDTypes()); got != len(dtypeFacts) {
		t.Fatalf("AllDTypes has %d entries, the test knows %d: add the new dtype here", got, len(dtypeFacts))
	}
	for i, f := range dtypeFacts {
		dt := f.dt
		if !dt.Valid() {
			t.Errorf("%v not valid", dt)
		}
		if dt.String() != f.name || dt.BlockElems() != f.blockElems || dt.BlockBytes() != f.blockBytes ||
			dt.IsQuantized() != f.quantized || dt.IsFloat() != f.float {
			t.Errorf("%s: got name %q elems %d bytes %d quantized %v float %v", f.name, dt.String(),
				dt.BlockElems(), dt.BlockBytes(), dt.IsQuantized(), dt.IsFloat())
		}
		if g, ok := dt.GGMLType(); !ok || g != f.ggmlType {
			t.Errorf("%s: GGMLType = %d, %v; want %d", f.name, g, ok, f.ggmlType)
		}
		if back, ok := FromGGMLType(f.ggmlType); !ok || back != dt {
			t.Errorf("FromGGMLType(%d) = %v, %v; want %v", f.ggmlType, back, ok, dt)
		}
		if AllDTypes()[i] != dt || DTypeNames()[i] != f.name {
			t.Errorf("AllDTypes/DTypeNames[%d] = %v/%q, want %v", i, AllDTypes()[i], DTypeNames()[i], dt)
		}
	}
}

func TestBlockConstants(t *testing.T) {
	for _, c := range []struct {
		dt       DType
		constant int
	}{{Q8_0, BlockBytesQ8_0}, {Q4_0, BlockBytesQ4_0}, {Q4_K, BlockBytesQ4_K}, {Q6_K, BlockBytesQ6_K}} {
		if c.dt.BlockBytes() != c.constant {
			t.Errorf("%v: BlockBytes %d, constant %d", c.dt, c.dt.BlockBytes(), c.constant)
		}
	}
	if Q8_0.BlockElems() != QK8_0 || Q4_0.BlockElems() != QK8_0 || Q4_K.BlockElems() != QK_K || Q6_K.BlockElems() != QK_K {
		t.Errorf("block element constants disagree with the dtype table")
	}
}

func TestInvalidDTypes(t *testing.T) {
	for _, dt := range []DType{Invalid, DType(10), DType(255)} {
		if dt.Valid() || dt.IsQuantized() || dt.IsFloat() || dt.BlockElems() != 0 || dt.BlockBytes() != 0 {
			t.Errorf("%v: reported as a usable dtype", dt)
		}
		if _, ok := dt.GGMLType(); ok {
			t.Errorf("%v: has a ggml type", dt)
		}
		if _, err := dt.RowBytes(32); err == nil {
			t.Errorf("%v: RowBytes succeeded", dt)
		}
	}
	if s := DType(99).String(); s != "DType(99)" {
		t.Errorf("DType(99).String() = %q", s)
	}
	for _, g := range []uint32{3, 6, 7, 10, 11, 13, 15, 23, 29, 31, ^uint32(0)} {
		if dt, ok := FromGGMLType(g); ok {
			t.Errorf("FromGGMLType(%d) = %v, want not found", g, dt)
		}
	}
}

func TestParseDType(t *testing.T) {
	for _, c := range []struct {
		in   string
		want DType
	}{{"f32", F32}, {"F16", F16}, {"bf16", BF16}, {"q4_k", Q4_K}, {"Q6_K", Q6_K}, {"q8_0", Q8_0}, {"Q4_0", Q4_0}, {"i8", I8}, {"I32", I32}} {
		if got, err := ParseDType(c.in); err != nil || got != c.want {
			t.Errorf("ParseDType(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "invalid", "q4", "f64", "Q4_K ", "DType(3)"} {
		_, err := ParseDType(bad)
		if err == nil {
			t.Errorf("ParseDType(%q) succeeded", bad)
			continue
		}
		if !strings.Contains(err.Error(), "Q4_K") || !strings.Contains(err.Error(), "F32") {
			t.Errorf("ParseDType(%q) error %q does not list the known names", bad, err)
		}
	}
}

func TestRowBytes(t *testing.T) {
	for _, c := range []struct {
		dt   DType
		n    int
		want int64
	}{{F32, 0, 0}, {F32, 7, 28}, {F16, 3, 6}, {I8, 5, 5}, {Q8_0, 64, 68}, {Q4_0, 32, 18}, {Q4_K, 512, 288}, {Q6_K, 256, 210}} {
		if got, err := c.dt.RowBytes(c.n); err != nil || got != c.want {
			t.Errorf("%v.RowBytes(%d) = %d, %v; want %d", c.dt, c.n, got, err, c.want)
		}
	}
	for _, c := range []struct {
		dt DType
		n  int
	}{{F32, -1}, {Q8_0, 33}, {Q4_K, 32}, {Q6_K, 255}} {
		if _, err := c.dt.RowBytes(c.n); err == nil {
			t.Errorf("%v.RowBytes(%d) succeeded", c.dt, c.n)
		}
	}
	// Byte counts beyond int64 are an error, not a wrapped number (kiln is
	// 64-bit only; on a 32-bit int no element count can overflow).
	if strconv.IntSize == 64 {
		if n, err := F32.RowBytes(math.MaxInt / 2); err == nil {
			t.Errorf("F32.RowBytes(MaxInt/2) = %d, want an overflow error", n)
		}
		if n, err := I8.RowBytes(math.MaxInt); err != nil || n != math.MaxInt {
			t.Errorf("I8.RowBytes(MaxInt) = %d, %v", n, err)
		}
	}
}
