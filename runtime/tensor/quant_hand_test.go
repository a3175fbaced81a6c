package tensor

import (
	"bytes"
	"math"
	"testing"
)

// Blocks built byte by byte from the layouts in ggml-common.h, with the
// expected values worked out by hand in the comments. f16 constants used:
// 0x3400 = 0.25, 0x3800 = 0.5, 0x3c00 = 1.0, 0x4000 = 2.0, 0xbc00 = -1.0,
// 0x0001 = 2^-24 (the smallest subnormal).

func checkDequant(t *testing.T, dt DType, block []byte, want []float32) {
	t.Helper()
	if len(block) != dt.BlockBytes() || len(want) != dt.BlockElems() {
		t.Fatalf("test bug: %d bytes, %d values for one %v block", len(block), len(want), dt)
	}
	got := make([]float32, len(want))
	if err := Dequantize(dt, block, got); err != nil {
		t.Fatalf("Dequantize: %v", err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%v element %d: got %v, want %v", dt, i, got[i], want[i])
		}
	}
}

func TestHandQ8_0(t *testing.T) {
	// d = 0.5 (f16 0x3800, little-endian 00 38); y = q * 0.5.
	qs := []int8{0, 1, -1, 127, -128, 2, -2, 10, -10, 100, 3, 4, 5, 6, 7, 8,
		-3, -4, -5, -6, -7, -8, 50, -50, 64, -64, 126, -126, 11, 12, 13, 14}
	want := []float32{0, 0.5, -0.5, 63.5, -64, 1, -1, 5, -5, 50, 1.5, 2, 2.5, 3, 3.5, 4,
		-1.5, -2, -2.5, -3, -3.5, -4, 25, -25, 32, -32, 63, -63, 5.5, 6, 6.5, 7}
	block := []byte{0x00, 0x38}
	for _, q := range qs {
		block = append(block, byte(q))
	}
	checkDequant(t, Q8_0, block, want)

	// d = 2^-24 (f16 0x0001, a subnormal): q = 3 gives 3 * 2^-24, q = -128
	// gives -2^-17, the rest 0.
	block = make([]byte, 34)
	block[0] = 0x01
	block[2] = 3
	block[3] = 0x80 // -128
	want = make([]float32, 32)
	want[0] = float32(math.Ldexp(3, -24))
	want[1] = float32(math.Ldexp(-1, -17))
	checkDequant(t, Q8_0, block, want)
}

func TestHandQ4_0(t *testing.T) {
	// d = 2.0 (00 40); byte j holds element j in its low nibble and element
	// j+16 in its high nibble; y = (q - 8) * 2.
	//   byte 0 = 0x80: element 0: (0-8)*2 = -16; element 16: (8-8)*2 = 0
	//   byte 1 = 0xF9: element 1: (9-8)*2 = 2;   element 17: (15-8)*2 = 14
	//   byte 2 = 0x17: element 2: (7-8)*2 = -2;  element 18: (1-8)*2 = -14
	//   bytes 3..15 = 0x88: 0 for elements 3..15 and 19..31
	block := []byte{0x00, 0x40, 0x80, 0xF9, 0x17}
	for len(block) < 18 {
		block = append(block, 0x88)
	}
	want := make([]float32, 32)
	want[0], want[16] = -16, 0
	want[1], want[17] = 2, 14
	want[2], want[18] = -2, -14
	checkDequant(t, Q4_0, block, want)

	// d = -1.0 (00 bc): byte 0 = 0x0F: element 0: (15-8)*-1 = -7, element 16:
	// (0-8)*-1 = 8; the 0x88 bytes give -0.0, equal to 0.
	block = []byte{0x00, 0xbc, 0x0F}
	for len(block) < 18 {
		block = append(block, 0x88)
	}
	want = make([]float32, 32)
	want[0], want[16] = -7, 8
	checkDequant(t, Q4_0, block, want)
}

func TestHandQ4_K(t *testing.T) {
	// d = 1.0 (00 3c), dmin = 0.5 (00 38). Sub-block scales and mins (6 bits):
	//   sb0: sc 1,  m 2     sb1: sc 3, m 0     sb2, sb3: 0, 0
	//   sb4: sc 33 (0b10_0001), m 17 (0b01_0001)   sb5, sb6: 0, 0
	//   sb7: sc 63 (0b11_1111), m 63
	// Packed: bytes 0..3 = scales of sb0..3 | (top 2 bits of sb4..7's scale) << 6
	//   byte 0 = 1 | 2<<6 = 0x81, byte 1 = 3, byte 2 = 0, byte 3 = 0 | 3<<6 = 0xC0
	// bytes 4..7 = mins of sb0..3 | (top 2 bits of sb4..7's min) << 6
	//   byte 4 = 2 | 1<<6 = 0x42, byte 5 = 0, byte 6 = 0, byte 7 = 0 | 3<<6 = 0xC0
	// bytes 8..11 = low 4 bits of sb4..7's scale | low 4 bits of their min << 4
	//   byte 8 = 1 | 1<<4 = 0x11, bytes 9, 10 = 0, byte 11 = 15 | 15<<4 = 0xFF
	block := make([]byte, 144)
	block[1], block[3] = 0x3c, 0x38
	copy(block[4:16], []byte{0x81, 0x03, 0x00, 0xC0, 0x42, 0x00, 0x00, 0xC0, 0x11, 0x00, 0x00, 0xFF})
	// qs (block[16:144]): chunk c of 32 bytes holds sub-block 2c in the low
	// nibbles and 2c+1 in the high nibbles; y = d*sc*q - dmin*m.
	qs := block[16:]
	qs[0] = 0x5A  // element 0 (sb0): 1*1*10 - 0.5*2 = 9;  element 32 (sb1): 1*3*5 - 0 = 15
	qs[1] = 0x0F  // element 1 (sb0): 15 - 1 = 14;          element 33 (sb1): 0
	qs[64] = 0x03 // element 128 (sb4): 33*3 - 0.5*17 = 90.5; element 160 (sb5): 0
	qs[96] = 0xF0 // element 192 (sb6): 0;                   element 224 (sb7): 63*15 - 0.5*63 = 913.5
	want := make([]float32, 256)
	for i := 0; i < 32; i++ {
		want[i] = -1        // sb0 with q = 0: 0 - 0.5*2
		want[128+i] = -8.5  // sb4 with q = 0: 0 - 0.5*17
		want[224+i] = -31.5 // sb7 with q = 0: 0 - 0.5*63
	}
	want[0], want[32] = 9, 15
	want[1], want[33] = 14, 0
	want[128], want[160] = 90.5, 0
	want[192], want[224] = 0, 913.5
	checkDequant(t, Q4_K, block, want)

	// The unpacking on its own, for every sub-block.
	wantSc := []uint8{1, 3, 0, 0, 33, 0, 0, 63}
	wantM := []uint8{2, 0, 0, 0, 17, 0, 0, 63}
	for j := 0; j < 8; j++ {
		sc, m := scaleMinK4(j, block[4:16])
		if sc != wantSc[j] || m != wantM[j] {
			t.Errorf("sub-block %d: scale %d min %d, want %d %d", j, sc, m, wantSc[j], wantM[j])
		}
	}
}

func TestHandQ6_K(t *testing.T) {
	// Layout: ql[128], qh[64], scales[16] (int8), d (f16) at byte 208.
	// d = 0.25 (00 34). Scale of element e is scales[e/16].
	// scales: [0] = 2, [1] = -1, [2] = 4, [4] = 1, [6] = -128, [8] = 127, [15] = 3, others 0.
	// With ql = qh = 0 an element has q = 0, so y = 0.25*sc*(0-32) = -8*sc:
	//   elements 0..15: -16, 16..31: 8, 32..47: -32, 64..79: -8, 96..111: 1024,
	//   128..143: -1016, 240..255: -24, the rest 0.
	block := make([]byte, 210)
	block[209] = 0x34
	sc := block[192:208]
	sc[0], sc[1], sc[2], sc[4] = 2, 0xFF, 4, 1
	sc[6], sc[8], sc[15] = 0x80, 127, 3
	ql, qh := block[0:128], block[128:192]
	// In each half of 128 elements (h = 0, 1), for l in 0..31:
	//   ql[64h+l]:    low nibble = element 128h+l,    high = element 128h+l+64
	//   ql[64h+32+l]: low nibble = element 128h+l+32, high = element 128h+l+96
	//   qh[32h+l]: bits 0-1, 2-3, 4-5, 6-7 = top bits of elements l, l+32, l+64, l+96.
	ql[0] = 0x1F   // element 0: low 4 bits 15; element 64: low 4 bits 1
	qh[0] = 0x23   // element 0: top bits 3 -> q = 63; element 64: top bits 2 -> q = 33
	qh[17] = 0x02  // element 17: top bits 2, low 0 -> q = 32 -> 0.25*-1*0 = 0
	ql[64] = 0x05  // element 128: low 4 bits 5
	qh[32] = 0x01  // element 128: top bits 1 -> q = 21
	ql[127] = 0xF0 // element 255 (h=1, l=31, +96): low 4 bits 15
	qh[63] = 0xC0  // element 255: top bits 3 -> q = 63
	want := make([]float32, 256)
	fill := func(from int, v float32) {
		for i := from; i < from+16; i++ {
			want[i] = v
		}
	}
	fill(0, -16)
	fill(16, 8)
	fill(32, -32)
	fill(64, -8)
	fill(96, 1024)
	fill(128, -1016)
	fill(240, -24)
	want[0] = 15.5      // 0.25 * 2 * (63-32)
	want[64] = 0.25     // 0.25 * 1 * (33-32)
	want[17] = 0        // 0.25 * -1 * (32-32)
	want[128] = -349.25 // 0.25 * 127 * (21-32)
	want[255] = 23.25   // 0.25 * 3 * (63-32)
	checkDequant(t, Q6_K, block, want)
}

// Quantizing by hand: inputs chosen so that d is exactly 1 and every
// rounding decision can be followed on paper.

func TestHandQuantizeQ8_0(t *testing.T) {
	// amax = 127, so d = 127/127 = 1 (f16 0x3c00) and q = roundf(x), ties
	// away from zero: 0.5 -> 1, -0.5 -> -1, 1.5 -> 2, -2.5 -> -3, 126.5 -> 127.
	x := make([]float32, 32)
	copy(x, []float32{127, 0.5, -0.5, 1.5, -2.5, 126.5, -127, 0.49})
	want := make([]byte, 34)
	copy(want, []byte{0x00, 0x3c, 0x7f, 0x01, 0xff, 0x02, 0xfd, 0x7f, 0x81, 0x00})
	got, err := Quantize(Q8_0, x)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got  %x\nwant %x", got, want)
	}
}

func TestHandQuantizeQ4_0(t *testing.T) {
	// The first element of largest magnitude is x[0] = -8 (x[16] = +8 ties in
	// magnitude but comes later), so d = -8/-8 = 1 (0x3c00) and
	// q = min(15, trunc(x + 8.5)):
	//   x[0] = -8 -> 0, x[1] = 0.5 -> 9, x[2] = -0.5 -> 8, x[3] = 1.5 -> 10,
	//   x[4] = 7.5 -> 16 -> 15, x[16] = 8 -> 16 -> 15, zeros -> 8.
	// Byte j = q[j] | q[j+16] << 4.
	x := make([]float32, 32)
	copy(x, []float32{-8, 0.5, -0.5, 1.5, 7.5})
	x[16] = 8
	want := []byte{0x00, 0x3c, 0xF0, 0x89, 0x88, 0x8A, 0x8F}
	for len(want) < 18 {
		want = append(want, 0x88)
	}
	got, err := Quantize(Q4_0, x)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got  %x\nwant %x", got, want)
	}
}

func TestHandQuantizeZeroBlocks(t *testing.T) {
	// All-zero input: every scale is 0 and every byte is 0, except Q4_0,
	// where ggml's d = 0/-8 is -0.0 (f16 0x8000) and each quant is
	// trunc(0 + 8.5) = 8, so every qs byte is 0x88.
	q40 := []byte{0x00, 0x80}
	for len(q40) < 18 {
		q40 = append(q40, 0x88)
	}
	for _, tc := range []struct {
		dt   DType
		want []byte
	}{
		{Q8_0, make([]byte, 34)},
		{Q4_0, q40},
		{Q4_K, make([]byte, 144)},
		{Q6_K, make([]byte, 210)},
	} {
		got, err := Quantize(tc.dt, make([]float32, tc.dt.BlockElems()))
		if err != nil {
			t.Fatalf("%v: %v", tc.dt, err)
		}
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%v: got %x, want %x", tc.dt, got, tc.want)
		}
	}
}
