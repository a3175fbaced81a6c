//go:build amd64 && !purego

#include "textflag.h"

// AVX2 + FMA + F16C dot products for the fused MatMul path (see
// matmul_dot_amd64.go for the Go declarations and the contracts). Every
// kernel keeps x in float32: weights are widened to float32 in registers and
// multiplied with VFMADD231PS / VMULPS; per-block scales multiply the
// block's 8-lane partial sums. The horizontal sum at the end is in a fixed
// order, so a result depends only on the operands.

// func cpuid(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL subleaf+4(FP), CX
	CPUID
	MOVL AX, eax+8(FP)
	MOVL BX, ebx+12(FP)
	MOVL CX, ecx+16(FP)
	MOVL DX, edx+20(FP)
	RET

// func xgetbv0() (eax, edx uint32)
TEXT ·xgetbv0(SB), NOSPLIT, $0-8
	MOVL $0, CX
	XGETBV
	MOVL AX, eax+0(FP)
	MOVL DX, edx+4(FP)
	RET

// HSUM8 leaves in X(acc) the sum of the 8 lanes of Y(acc), using X(tmp):
// (lanes 0..3 + lanes 4..7), then pairs, then the last two.
#define HSUM8(yacc, xacc, xtmp) \
	VEXTRACTF128 $1, yacc, xtmp; \
	VADDPS       xtmp, xacc, xacc; \
	VMOVHLPS     xacc, xacc, xtmp; \
	VADDPS       xtmp, xacc, xacc; \
	VMOVSHDUP    xacc, xtmp; \
	VADDSS       xtmp, xacc, xacc

// F16SCALE broadcasts the little-endian F16 at addr into every lane of
// Y(dst) as float32 (uses AX).
#define F16SCALE(addr, xdst, ydst) \
	MOVWLZX      addr, AX; \
	VMOVD        AX, xdst; \
	VCVTPH2PS    xdst, xdst; \
	VBROADCASTSS xdst, ydst

// func dotF32AVX2(w, x *float32, n int) float32
// n is a multiple of 8.
TEXT ·dotF32AVX2(SB), NOSPLIT, $0-28
	MOVQ   w+0(FP), SI
	MOVQ   x+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

f32loop32:
	CMPQ        CX, $32
	JLT         f32loop8
	VMOVUPS     (SI), Y4
	VMOVUPS     32(SI), Y5
	VMOVUPS     64(SI), Y6
	VMOVUPS     96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $128, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JMP         f32loop32

f32loop8:
	CMPQ        CX, $8
	JLT         f32done
	VMOVUPS     (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         f32loop8

f32done:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM8(Y0, X0, X1)
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// func dotF16AVX2(w *uint16, x *float32, n int) float32
// n is a multiple of 8.
TEXT ·dotF16AVX2(SB), NOSPLIT, $0-28
	MOVQ   w+0(FP), SI
	MOVQ   x+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

f16loop32:
	CMPQ        CX, $32
	JLT         f16loop8
	VCVTPH2PS   (SI), Y4
	VCVTPH2PS   16(SI), Y5
	VCVTPH2PS   32(SI), Y6
	VCVTPH2PS   48(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $64, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JMP         f16loop32

f16loop8:
	CMPQ        CX, $8
	JLT         f16done
	VCVTPH2PS   (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ        $16, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         f16loop8

f16done:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM8(Y0, X0, X1)
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// func dotBF16AVX2(w *uint16, x *float32, n int) float32
// n is a multiple of 8. A BF16 is the top half of a float32: widen to
// 32 bits and shift left by 16.
TEXT ·dotBF16AVX2(SB), NOSPLIT, $0-28
	MOVQ   w+0(FP), SI
	MOVQ   x+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

bf16loop32:
	CMPQ        CX, $32
	JLT         bf16loop8
	VPMOVZXWD   (SI), Y4
	VPMOVZXWD   16(SI), Y5
	VPMOVZXWD   32(SI), Y6
	VPMOVZXWD   48(SI), Y7
	VPSLLD      $16, Y4, Y4
	VPSLLD      $16, Y5, Y5
	VPSLLD      $16, Y6, Y6
	VPSLLD      $16, Y7, Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $64, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JMP         bf16loop32

bf16loop8:
	CMPQ        CX, $8
	JLT         bf16done
	VPMOVZXWD   (SI), Y4
	VPSLLD      $16, Y4, Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ        $16, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         bf16loop8

bf16done:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM8(Y0, X0, X1)
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// func dotQ8_0AVX2(row *byte, x *float32, nBlocks int) float32
// Block: f16 d, int8 q[32]. Per block: Σ q·x in 8 lanes, then acc += d·that.
// Two accumulators (even and odd blocks) so that the FMAs into them overlap.
TEXT ·dotQ8_0AVX2(SB), NOSPLIT, $0-28
	MOVQ   row+0(FP), SI
	MOVQ   x+8(FP), DI
	MOVQ   nBlocks+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1

q8loop2:
	CMPQ        CX, $2
	JLT         q8loop1
	PREFETCHT0  1024(SI)
	F16SCALE(0(SI), X2, Y2)
	VPMOVSXBD   2(SI), Y3
	VPMOVSXBD   10(SI), Y4
	VPMOVSXBD   18(SI), Y5
	VPMOVSXBD   26(SI), Y6
	VCVTDQ2PS   Y3, Y3
	VCVTDQ2PS   Y4, Y4
	VCVTDQ2PS   Y5, Y5
	VCVTDQ2PS   Y6, Y6
	VMULPS      (DI), Y3, Y3
	VFMADD231PS 32(DI), Y4, Y3
	VMULPS      64(DI), Y5, Y5
	VFMADD231PS 96(DI), Y6, Y5
	VADDPS      Y5, Y3, Y3
	VFMADD231PS Y3, Y2, Y0
	F16SCALE(34(SI), X7, Y7)
	VPMOVSXBD   36(SI), Y8
	VPMOVSXBD   44(SI), Y9
	VPMOVSXBD   52(SI), Y10
	VPMOVSXBD   60(SI), Y11
	VCVTDQ2PS   Y8, Y8
	VCVTDQ2PS   Y9, Y9
	VCVTDQ2PS   Y10, Y10
	VCVTDQ2PS   Y11, Y11
	VMULPS      128(DI), Y8, Y8
	VFMADD231PS 160(DI), Y9, Y8
	VMULPS      192(DI), Y10, Y10
	VFMADD231PS 224(DI), Y11, Y10
	VADDPS      Y10, Y8, Y8
	VFMADD231PS Y8, Y7, Y1
	ADDQ        $68, SI
	ADDQ        $256, DI
	SUBQ        $2, CX
	JMP         q8loop2

q8loop1:
	TESTQ       CX, CX
	JZ          q8done
	F16SCALE(0(SI), X2, Y2)
	VPMOVSXBD   2(SI), Y3
	VPMOVSXBD   10(SI), Y4
	VPMOVSXBD   18(SI), Y5
	VPMOVSXBD   26(SI), Y6
	VCVTDQ2PS   Y3, Y3
	VCVTDQ2PS   Y4, Y4
	VCVTDQ2PS   Y5, Y5
	VCVTDQ2PS   Y6, Y6
	VMULPS      (DI), Y3, Y3
	VFMADD231PS 32(DI), Y4, Y3
	VMULPS      64(DI), Y5, Y5
	VFMADD231PS 96(DI), Y6, Y5
	VADDPS      Y5, Y3, Y3
	VFMADD231PS Y3, Y2, Y0

q8done:
	VADDPS Y1, Y0, Y0
	HSUM8(Y0, X0, X1)
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// Q4_0HALF widens 8 quant bytes at off(SI) to 32-bit lanes: the low
// nibbles (elements t..t+7) to Y(lo), the high nibbles (t+16..t+23) to
// Y(hi), each minus 8, as float32. Y15 holds 15 in every dword, Y14 8.
#define Q4_0HALF(off, lo, hi) \
	VPMOVZXBD off(SI), lo; \
	VPSRLD    $4, lo, hi; \
	VPAND     Y15, lo, lo; \
	VPSUBD    Y14, lo, lo; \
	VPSUBD    Y14, hi, hi; \
	VCVTDQ2PS lo, lo; \
	VCVTDQ2PS hi, hi

// Q4_0BLOCK adds block boff(SI) against x at xoff(DI) into Y(acc): 16
// quant bytes, element t in the low nibble of byte t and element t+16 in
// its high nibble, biased by 8. Uses Y2, Y5..Y8.
#define Q4_0BLOCK(boff, xoff, acc) \
	F16SCALE(boff(SI), X2, Y2); \
	Q4_0HALF(boff+2, Y5, Y7); \
	Q4_0HALF(boff+10, Y6, Y8); \
	VMULPS      xoff(DI), Y5, Y5; \
	VFMADD231PS xoff+32(DI), Y6, Y5; \
	VMULPS      xoff+64(DI), Y7, Y7; \
	VFMADD231PS xoff+96(DI), Y8, Y7; \
	VADDPS      Y7, Y5, Y5; \
	VFMADD231PS Y5, Y2, acc

// func dotQ4_0AVX2(row *byte, x *float32, nBlocks int) float32
// Block: f16 d, 16 bytes of 4-bit quants. Per block: Σ (q−8)·x in 8 lanes,
// then acc += d·that.
TEXT ·dotQ4_0AVX2(SB), NOSPLIT, $0-28
	MOVQ         row+0(FP), SI
	MOVQ         x+8(FP), DI
	MOVQ         nBlocks+16(FP), CX
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVL         $8, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1

q4loop2:
	CMPQ CX, $2
	JLT  q4loop1
	PREFETCHT0 1024(SI)
	Q4_0BLOCK(0, 0, Y0)
	Q4_0BLOCK(18, 128, Y1)
	ADDQ $36, SI
	ADDQ $256, DI
	SUBQ $2, CX
	JMP  q4loop2

q4loop1:
	TESTQ CX, CX
	JZ    q4done
	Q4_0BLOCK(0, 0, Y0)

q4done:
	VADDPS Y1, Y0, Y0
	HSUM8(Y0, X0, X1)
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// Q4KQUARTER widens 8 quant bytes at boff(SI) to 32-bit lanes: low
// nibbles (sub-block 2c) against x at xoff(DI), high nibbles (sub-block
// 2c+1) against x at xoff+128(DI); the products go to Y(lo) and Y(hi),
// first (MUL) or added (FMA, the op argument). Y15 holds 15 in every
// dword. Uses Y8, Y9.
#define Q4KQUARTER(boff, xoff, op, lo, hi) \
	VPMOVZXBD boff(SI), Y8; \
	VPSRLD    $4, Y8, Y9; \
	VPAND     Y15, Y8, Y8; \
	VCVTDQ2PS Y8, Y8; \
	VCVTDQ2PS Y9, Y9; \
	op        xoff(DI), Y8, lo; \
	op        xoff+128(DI), Y9, hi

// Q4KCHUNK handles chunk c of a Q4_K super-block: 32 quant bytes at
// boff(SI), low nibbles sub-block 2c (x at xoff), high nibbles sub-block
// 2c+1 (x at xoff+128); the scales d·sc of the two are elements 2c and
// 2c+1 of Y12 (lane: the VPERM2F128 selector of their 128-bit half; sel0,
// sel1: the VPERMILPS selectors of the element within it). Y0 accumulates
// even sub-blocks, Y1 odd ones. Uses Y4..Y11, Y14.
#define Q4KCHUNK(boff, xoff, lane, sel0, sel1) \
	Q4KQUARTER(boff, xoff, VMULPS, Y4, Y5); \
	Q4KQUARTER(boff+8, xoff+32, VMULPS, Y6, Y7); \
	Q4KQUARTER(boff+16, xoff+64, VFMADD231PS, Y4, Y5); \
	Q4KQUARTER(boff+24, xoff+96, VFMADD231PS, Y6, Y7); \
	VADDPS       Y6, Y4, Y4; \
	VADDPS       Y7, Y5, Y5; \
	VPERM2F128   $lane, Y12, Y12, Y14; \
	VPERMILPS    $sel0, Y14, Y10; \
	VPERMILPS    $sel1, Y14, Y11; \
	VFMADD231PS  Y4, Y10, Y0; \
	VFMADD231PS  Y5, Y11, Y1

// func dotQ4_KAVX2(row *byte, x, xSums32 *float32, nBlocks int) float32
// Super-block: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, 128
// bytes of 4-bit quants. Result: Σ over sub-blocks s of
// (d·sc_s)·Σ q·x − dmin·(m_s·xSums32[s]); the first part accumulates in
// Y0 (even s) and Y1 (odd s), the second in Y13. The eight d·sc_s are kept
// in Y12, each broadcast by a lane copy (VPERM2F128) and an in-lane
// shuffle (VPERMILPS).
TEXT ·dotQ4_KAVX2(SB), NOSPLIT, $0-36
	MOVQ         row+0(FP), SI
	MOVQ         x+8(FP), DI
	MOVQ         xSums32+16(FP), R12
	MOVQ         nBlocks+24(FP), CX
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1
	VXORPS       Y13, Y13, Y13

q4kloop:
	TESTQ CX, CX
	JZ    q4kdone
	PREFETCHT0 1152(SI)
	PREFETCHT0 1216(SI)
	PREFETCHT0 1280(SI)
	F16SCALE(0(SI), X2, Y2)
	F16SCALE(2(SI), X3, Y3)

	// Scales and mins, as ggml's get_scale_min_k4 on 32-bit words:
	// u0, u1, u2 = bytes 0..3, 4..7, 8..11 of the 12;
	// scales 0..3 = u0 & 0x3f.., mins 0..3 = u1 & 0x3f..,
	// scales 4..7 = (u2 & 0x0f..) | ((u0 >> 6) & 0x03..) << 4,
	// mins 4..7 = ((u2 >> 4) & 0x0f..) | ((u1 >> 6) & 0x03..) << 4.
	MOVL  4(SI), AX
	MOVL  8(SI), BX
	MOVL  12(SI), DX
	MOVL  AX, R8
	ANDL  $0x3f3f3f3f, R8
	MOVL  BX, R9
	ANDL  $0x3f3f3f3f, R9
	MOVL  DX, R10
	ANDL  $0x0f0f0f0f, R10
	SHRL  $6, AX
	ANDL  $0x03030303, AX
	SHLL  $4, AX
	ORL   AX, R10
	SHRL  $4, DX
	ANDL  $0x0f0f0f0f, DX
	SHRL  $6, BX
	ANDL  $0x03030303, BX
	SHLL  $4, BX
	ORL   BX, DX
	SHLQ  $32, R10
	ORQ   R10, R8
	SHLQ  $32, DX
	ORQ   DX, R9

	// d·sc_s to the stack; dmin·(m_s·xSums32[s]) into Y13.
	VMOVQ        R8, X4
	VPMOVZXBD    X4, Y4
	VCVTDQ2PS    Y4, Y4
	VMULPS       Y2, Y4, Y12
	VMOVQ        R9, X5
	VPMOVZXBD    X5, Y5
	VCVTDQ2PS    Y5, Y5
	VMULPS       (R12), Y5, Y5
	VFMADD231PS  Y5, Y3, Y13

	Q4KCHUNK(16, 0, 0x00, 0x00, 0x55)
	Q4KCHUNK(48, 256, 0x00, 0xaa, 0xff)
	Q4KCHUNK(80, 512, 0x11, 0x00, 0x55)
	Q4KCHUNK(112, 768, 0x11, 0xaa, 0xff)

	ADDQ $144, SI
	ADDQ $1024, DI
	ADDQ $32, R12
	DECQ CX
	JMP  q4kloop

q4kdone:
	VADDPS Y1, Y0, Y0
	VSUBPS Y13, Y0, Y0
	HSUM8(Y0, X0, X1)
	VZEROUPPER
	MOVSS  X0, ret+32(FP)
	RET

// Q6KPAIR adds the two 16-element sub-blocks whose quants (q − 32, int8)
// are the 32 bytes of Y(q), against x at xoff(DI), times the broadcast
// float32s at soff(SP) and soff+4(SP), into Y(acc). Uses Y2..Y4, Y12.
#define Q6KPAIR(yq, xq, xoff, soff, acc) \
	VPMOVSXBD    xq, Y3; \
	VPSRLDQ      $8, xq, X4; \
	VPMOVSXBD    X4, Y4; \
	VCVTDQ2PS    Y3, Y3; \
	VCVTDQ2PS    Y4, Y4; \
	VMULPS       xoff(DI), Y3, Y3; \
	VFMADD231PS  xoff+32(DI), Y4, Y3; \
	VBROADCASTSS soff(SP), Y2; \
	VFMADD231PS  Y3, Y2, acc; \
	VEXTRACTI128 $1, yq, X12; \
	VPMOVSXBD    X12, Y3; \
	VPSRLDQ      $8, X12, X12; \
	VPMOVSXBD    X12, Y4; \
	VCVTDQ2PS    Y3, Y3; \
	VCVTDQ2PS    Y4, Y4; \
	VMULPS       xoff+64(DI), Y3, Y3; \
	VFMADD231PS  xoff+96(DI), Y4, Y3; \
	VBROADCASTSS soff+4(SP), Y2; \
	VFMADD231PS  Y3, Y2, acc

// Q6KHALF handles half h of a Q6_K super-block (128 elements): ql bytes
// at qloff(SI) (A) and qloff+32(SI) (B), qh bytes at qhoff(SI) (H). Quant
// groups: (A & 15) | (H << 4 & 0x30), (B & 15) | (H << 2 & 0x30),
// (A >> 4) | (H & 0x30), (B >> 4) | (H >> 2 & 0x30), each minus 32; group g
// covers elements 32g..32g+31 of the half, sub-blocks 2g and 2g+1.
// Y15 = 0x0f, Y14 = 0x30, Y13 = 0x20 in every byte.
#define Q6KHALF(qloff, qhoff, xoff, soff) \
	VMOVDQU qloff(SI), Y5; \
	VMOVDQU qloff+32(SI), Y6; \
	VMOVDQU qhoff(SI), Y7; \
	VPAND   Y15, Y5, Y8; \
	VPSLLW  $4, Y7, Y9; \
	VPAND   Y14, Y9, Y9; \
	VPOR    Y9, Y8, Y8; \
	VPSUBB  Y13, Y8, Y8; \
	Q6KPAIR(Y8, X8, xoff, soff, Y0); \
	VPAND   Y15, Y6, Y8; \
	VPSLLW  $2, Y7, Y9; \
	VPAND   Y14, Y9, Y9; \
	VPOR    Y9, Y8, Y8; \
	VPSUBB  Y13, Y8, Y8; \
	Q6KPAIR(Y8, X8, xoff+128, soff+8, Y1); \
	VPSRLW  $4, Y5, Y8; \
	VPAND   Y15, Y8, Y8; \
	VPAND   Y14, Y7, Y9; \
	VPOR    Y9, Y8, Y8; \
	VPSUBB  Y13, Y8, Y8; \
	Q6KPAIR(Y8, X8, xoff+256, soff+16, Y10); \
	VPSRLW  $4, Y6, Y8; \
	VPAND   Y15, Y8, Y8; \
	VPSRLW  $2, Y7, Y9; \
	VPAND   Y14, Y9, Y9; \
	VPOR    Y9, Y8, Y8; \
	VPSUBB  Y13, Y8, Y8; \
	Q6KPAIR(Y8, X8, xoff+384, soff+24, Y11)

// func dotQ6_KAVX2(row *byte, x *float32, nBlocks int) float32
// Super-block: ql[128], qh[64], int8 scales[16], f16 d. Result: Σ over
// sub-blocks s of (d·sc_s)·Σ (q−32)·x, in four accumulators (one per quant
// group); the sixteen d·sc_s are kept at 0(SP)..60(SP).
TEXT ·dotQ6_KAVX2(SB), NOSPLIT, $64-28
	MOVQ         row+0(FP), SI
	MOVQ         x+8(FP), DI
	MOVQ         nBlocks+16(FP), CX
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVL         $0x30303030, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	MOVL         $0x20202020, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Y13
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1
	VXORPS       Y10, Y10, Y10
	VXORPS       Y11, Y11, Y11

q6kloop:
	TESTQ CX, CX
	JZ    q6kdone
	PREFETCHT0 1260(SI)
	PREFETCHT0 1324(SI)
	PREFETCHT0 1388(SI)
	PREFETCHT0 1452(SI)
	F16SCALE(208(SI), X2, Y2)
	VPMOVSXBD 192(SI), Y3
	VPMOVSXBD 200(SI), Y4
	VCVTDQ2PS Y3, Y3
	VCVTDQ2PS Y4, Y4
	VMULPS    Y2, Y3, Y3
	VMULPS    Y2, Y4, Y4
	VMOVUPS   Y3, 0(SP)
	VMOVUPS   Y4, 32(SP)
	Q6KHALF(0, 128, 0, 0)
	Q6KHALF(64, 160, 512, 32)
	ADDQ $210, SI
	ADDQ $1024, DI
	DECQ CX
	JMP  q6kloop

q6kdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y11, Y10, Y10
	VADDPS Y10, Y0, Y0
	HSUM8(Y0, X0, X1)
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// Four rows of x against one row of weights: the weights are decoded once
// and multiplied with each row. x row r starts r·xStride float32s after x;
// the four sums go to out[0..3]. Each row's sum is formed as in the
// one-row kernel of the same format, except that a row has one accumulator
// (the four rows' chains already overlap).

// STORE4 writes the horizontal sums of Y0..Y3 to out[0..3] (out in AX).
#define STORE4 \
	HSUM8(Y0, X0, X4); \
	MOVSS X0, 0(AX); \
	HSUM8(Y1, X1, X4); \
	MOVSS X1, 4(AX); \
	HSUM8(Y2, X2, X4); \
	MOVSS X2, 8(AX); \
	HSUM8(Y3, X3, X4); \
	MOVSS X3, 12(AX)

// X4ROWS(op, off, w, s0, s1, s2, s3): s_r (op)= w · x_r[off], for x_0 at
// DI and x_r at DI + r·R8 (R9 = 3·R8).
#define X4ROWS(op, off, w, s0, s1, s2, s3) \
	op off(DI), w, s0; \
	op off(DI)(R8*1), w, s1; \
	op off(DI)(R8*2), w, s2; \
	op off(DI)(R9*1), w, s3

// func dotQ8_0x4AVX2(row *byte, x *float32, xStride, nBlocks int, out *[4]float32)
TEXT ·dotQ8_0x4AVX2(SB), NOSPLIT, $0-40
	MOVQ   row+0(FP), SI
	MOVQ   x+8(FP), DI
	MOVQ   xStride+16(FP), R8
	SHLQ   $2, R8
	LEAQ   (R8)(R8*2), R9
	MOVQ   nBlocks+24(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

q8x4loop:
	TESTQ     CX, CX
	JZ        q8x4done
	F16SCALE(0(SI), X4, Y4)
	VPMOVSXBD 2(SI), Y5
	VPMOVSXBD 10(SI), Y10
	VCVTDQ2PS Y5, Y5
	VCVTDQ2PS Y10, Y10
	X4ROWS(VMULPS, 0, Y5, Y6, Y7, Y8, Y9)
	X4ROWS(VFMADD231PS, 32, Y10, Y6, Y7, Y8, Y9)
	VPMOVSXBD 18(SI), Y5
	VPMOVSXBD 26(SI), Y10
	VCVTDQ2PS Y5, Y5
	VCVTDQ2PS Y10, Y10
	X4ROWS(VFMADD231PS, 64, Y5, Y6, Y7, Y8, Y9)
	X4ROWS(VFMADD231PS, 96, Y10, Y6, Y7, Y8, Y9)
	VFMADD231PS Y6, Y4, Y0
	VFMADD231PS Y7, Y4, Y1
	VFMADD231PS Y8, Y4, Y2
	VFMADD231PS Y9, Y4, Y3
	ADDQ      $34, SI
	ADDQ      $128, DI
	DECQ      CX
	JMP       q8x4loop

q8x4done:
	MOVQ out+32(FP), AX
	STORE4
	VZEROUPPER
	RET

// Q4KX4QUARTER decodes 8 quant bytes at boff(SI) (low nibbles to Y12,
// high to Y13, as float32) and multiplies them with the four rows of x at
// xoff (low: sub-block 2c) and xoff+128 (high: sub-block 2c+1) into
// Y4..Y7 (low) and Y8..Y11 (high), first (VMULPS) or added (VFMADD231PS).
#define Q4KX4QUARTER(boff, xoff, op) \
	VPMOVZXBD boff(SI), Y12; \
	VPSRLD    $4, Y12, Y13; \
	VPAND     Y15, Y12, Y12; \
	VCVTDQ2PS Y12, Y12; \
	VCVTDQ2PS Y13, Y13; \
	X4ROWS(op, xoff, Y12, Y4, Y5, Y6, Y7); \
	X4ROWS(op, xoff+128, Y13, Y8, Y9, Y10, Y11)

// Q4KX4CHUNK handles chunk c of a super-block for four rows of x (see
// Q4KCHUNK), the scales d·sc at soff(SP) and soff+4(SP).
#define Q4KX4CHUNK(boff, xoff, soff) \
	Q4KX4QUARTER(boff, xoff, VMULPS); \
	Q4KX4QUARTER(boff+8, xoff+32, VFMADD231PS); \
	Q4KX4QUARTER(boff+16, xoff+64, VFMADD231PS); \
	Q4KX4QUARTER(boff+24, xoff+96, VFMADD231PS); \
	VBROADCASTSS soff(SP), Y14; \
	VFMADD231PS  Y4, Y14, Y0; \
	VFMADD231PS  Y5, Y14, Y1; \
	VFMADD231PS  Y6, Y14, Y2; \
	VFMADD231PS  Y7, Y14, Y3; \
	VBROADCASTSS soff+4(SP), Y14; \
	VFMADD231PS  Y8, Y14, Y0; \
	VFMADD231PS  Y9, Y14, Y1; \
	VFMADD231PS  Y10, Y14, Y2; \
	VFMADD231PS  Y11, Y14, Y3

// func dotQ4_Kx4AVX2(row *byte, x, xSums32 *float32, xStride, nBlocks int, out *[4]float32)
// xSums32 row r starts r·xStride/32 float32s after xSums32. The min term
// −dmin·m_s·xSums32[s] goes straight into each row's accumulator.
TEXT ·dotQ4_Kx4AVX2(SB), NOSPLIT, $32-48
	MOVQ         row+0(FP), SI
	MOVQ         x+8(FP), DI
	MOVQ         xSums32+16(FP), R10
	MOVQ         xStride+24(FP), R8
	MOVQ         R8, R11
	SHRQ         $3, R11              // xSums32 row stride in bytes: xStride/32·4
	SHLQ         $2, R8
	LEAQ         (R8)(R8*2), R9
	LEAQ         (R11)(R11*2), R12
	MOVQ         nBlocks+32(FP), CX
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1
	VXORPS       Y2, Y2, Y2
	VXORPS       Y3, Y3, Y3

q4kx4loop:
	TESTQ CX, CX
	JZ    q4kx4done
	F16SCALE(0(SI), X4, Y4)
	F16SCALE(2(SI), X5, Y5)

	// Scales and mins as in dotQ4_KAVX2, with fewer registers.
	MOVL  4(SI), AX
	MOVL  12(SI), DX
	MOVL  AX, R13
	ANDL  $0x3f3f3f3f, R13
	SHRL  $6, AX
	ANDL  $0x03030303, AX
	SHLL  $4, AX
	MOVL  DX, BX
	ANDL  $0x0f0f0f0f, BX
	ORL   BX, AX
	SHLQ  $32, AX
	ORQ   AX, R13
	VMOVQ R13, X6
	MOVL  8(SI), AX
	MOVL  AX, R13
	ANDL  $0x3f3f3f3f, R13
	SHRL  $6, AX
	ANDL  $0x03030303, AX
	SHLL  $4, AX
	SHRL  $4, DX
	ANDL  $0x0f0f0f0f, DX
	ORL   DX, AX
	SHLQ  $32, AX
	ORQ   AX, R13
	VMOVQ R13, X7

	VPMOVZXBD     X6, Y6
	VCVTDQ2PS     Y6, Y6
	VMULPS        Y4, Y6, Y6
	VMOVUPS       Y6, 0(SP)
	VPMOVZXBD     X7, Y7
	VCVTDQ2PS     Y7, Y7
	VMULPS        Y5, Y7, Y7
	VFNMADD231PS  (R10), Y7, Y0
	VFNMADD231PS  (R10)(R11*1), Y7, Y1
	VFNMADD231PS  (R10)(R11*2), Y7, Y2
	VFNMADD231PS  (R10)(R12*1), Y7, Y3

	Q4KX4CHUNK(16, 0, 0)
	Q4KX4CHUNK(48, 256, 8)
	Q4KX4CHUNK(80, 512, 16)
	Q4KX4CHUNK(112, 768, 24)

	ADDQ $144, SI
	ADDQ $1024, DI
	ADDQ $32, R10
	DECQ CX
	JMP  q4kx4loop

q4kx4done:
	MOVQ out+40(FP), AX
	STORE4
	VZEROUPPER
	RET

// FLOATX4BODY is the loop of the four-row float dots (after it, the sums
// are in Y0..Y3): the weights at SI
// (wbytes bytes per 8 elements), decoded by load(off, reg), are multiplied
// with x rows 0..3 into Y0..Y3 (even groups of 8) and Y4..Y7 (odd groups).
// CX counts elements (a multiple of 8).
#define FLOATX4BODY(load, wbytes, loop16, loop8, done) \
loop16: \
	CMPQ CX, $16; \
	JLT  loop8; \
	load(0, Y8); \
	load(wbytes, Y9); \
	X4ROWS(VFMADD231PS, 0, Y8, Y0, Y1, Y2, Y3); \
	X4ROWS(VFMADD231PS, 32, Y9, Y4, Y5, Y6, Y7); \
	ADDQ $(2*wbytes), SI; \
	ADDQ $64, DI; \
	SUBQ $16, CX; \
	JMP  loop16; \
loop8: \
	CMPQ CX, $8; \
	JLT  done; \
	load(0, Y8); \
	X4ROWS(VFMADD231PS, 0, Y8, Y0, Y1, Y2, Y3); \
	ADDQ $wbytes, SI; \
	ADDQ $32, DI; \
	SUBQ $8, CX; \
	JMP  loop8; \
done: \
	VADDPS Y4, Y0, Y0; \
	VADDPS Y5, Y1, Y1; \
	VADDPS Y6, Y2, Y2; \
	VADDPS Y7, Y3, Y3

#define LOADF32(off, reg) VMOVUPS off(SI), reg
#define LOADF16(off, reg) VCVTPH2PS off(SI), reg
#define LOADBF16(off, reg) VPMOVZXWD off(SI), reg; VPSLLD $16, reg, reg

// func dotF32x4AVX2(w, x *float32, xStride, n int, out *[4]float32)
TEXT ·dotF32x4AVX2(SB), NOSPLIT, $0-40
	MOVQ   w+0(FP), SI
	MOVQ   x+8(FP), DI
	MOVQ   xStride+16(FP), R8
	SHLQ   $2, R8
	LEAQ   (R8)(R8*2), R9
	MOVQ   n+24(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	FLOATX4BODY(LOADF32, 32, f32x4loop16, f32x4loop8, f32x4done)
	MOVQ out+32(FP), AX
	STORE4
	VZEROUPPER
	RET

// func dotF16x4AVX2(w *uint16, x *float32, xStride, n int, out *[4]float32)
TEXT ·dotF16x4AVX2(SB), NOSPLIT, $0-40
	MOVQ   w+0(FP), SI
	MOVQ   x+8(FP), DI
	MOVQ   xStride+16(FP), R8
	SHLQ   $2, R8
	LEAQ   (R8)(R8*2), R9
	MOVQ   n+24(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	FLOATX4BODY(LOADF16, 16, f16x4loop16, f16x4loop8, f16x4done)
	MOVQ out+32(FP), AX
	STORE4
	VZEROUPPER
	RET

// func dotBF16x4AVX2(w *uint16, x *float32, xStride, n int, out *[4]float32)
TEXT ·dotBF16x4AVX2(SB), NOSPLIT, $0-40
	MOVQ   w+0(FP), SI
	MOVQ   x+8(FP), DI
	MOVQ   xStride+16(FP), R8
	SHLQ   $2, R8
	LEAQ   (R8)(R8*2), R9
	MOVQ   n+24(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	FLOATX4BODY(LOADBF16, 16, bf16x4loop16, bf16x4loop8, bf16x4done)
	MOVQ out+32(FP), AX
	STORE4
	VZEROUPPER
	RET

// func dotQ4_0x4AVX2(row *byte, x *float32, xStride, nBlocks int, out *[4]float32)
TEXT ·dotQ4_0x4AVX2(SB), NOSPLIT, $0-40
	MOVQ         row+0(FP), SI
	MOVQ         x+8(FP), DI
	MOVQ         xStride+16(FP), R8
	SHLQ         $2, R8
	LEAQ         (R8)(R8*2), R9
	MOVQ         nBlocks+24(FP), CX
	MOVL         $15, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVL         $8, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1
	VXORPS       Y2, Y2, Y2
	VXORPS       Y3, Y3, Y3

q4x4loop:
	TESTQ CX, CX
	JZ    q4x4done
	F16SCALE(0(SI), X4, Y4)
	Q4_0HALF(2, Y5, Y7)
	Q4_0HALF(10, Y6, Y8)
	X4ROWS(VMULPS, 0, Y5, Y9, Y10, Y11, Y12)
	X4ROWS(VFMADD231PS, 32, Y6, Y9, Y10, Y11, Y12)
	X4ROWS(VFMADD231PS, 64, Y7, Y9, Y10, Y11, Y12)
	X4ROWS(VFMADD231PS, 96, Y8, Y9, Y10, Y11, Y12)
	VFMADD231PS Y9, Y4, Y0
	VFMADD231PS Y10, Y4, Y1
	VFMADD231PS Y11, Y4, Y2
	VFMADD231PS Y12, Y4, Y3
	ADDQ $18, SI
	ADDQ $128, DI
	DECQ CX
	JMP  q4x4loop

q4x4done:
	MOVQ out+32(FP), AX
	STORE4
	VZEROUPPER
	RET

// Q6KX4PAIR is Q6KPAIR for four rows of x: the quants (q − 32) of two
// 16-element sub-blocks in Y(q), against x at xoff, times the broadcast
// scales at soff(SP) and soff+4(SP), into Y0..Y3. Uses Y4..Y9, Y12.
#define Q6KX4PAIR(yq, xq, xoff, soff) \
	VPMOVSXBD    xq, Y8; \
	VPSRLDQ      $8, xq, X9; \
	VPMOVSXBD    X9, Y9; \
	VCVTDQ2PS    Y8, Y8; \
	VCVTDQ2PS    Y9, Y9; \
	X4ROWS(VMULPS, xoff, Y8, Y4, Y5, Y6, Y7); \
	X4ROWS(VFMADD231PS, xoff+32, Y9, Y4, Y5, Y6, Y7); \
	VBROADCASTSS soff(SP), Y9; \
	VFMADD231PS  Y4, Y9, Y0; \
	VFMADD231PS  Y5, Y9, Y1; \
	VFMADD231PS  Y6, Y9, Y2; \
	VFMADD231PS  Y7, Y9, Y3; \
	VEXTRACTI128 $1, yq, X12; \
	VPMOVSXBD    X12, Y8; \
	VPSRLDQ      $8, X12, X12; \
	VPMOVSXBD    X12, Y9; \
	VCVTDQ2PS    Y8, Y8; \
	VCVTDQ2PS    Y9, Y9; \
	X4ROWS(VMULPS, xoff+64, Y8, Y4, Y5, Y6, Y7); \
	X4ROWS(VFMADD231PS, xoff+96, Y9, Y4, Y5, Y6, Y7); \
	VBROADCASTSS soff+4(SP), Y9; \
	VFMADD231PS  Y4, Y9, Y0; \
	VFMADD231PS  Y5, Y9, Y1; \
	VFMADD231PS  Y6, Y9, Y2; \
	VFMADD231PS  Y7, Y9, Y3

// Q6KX4HALF is Q6KHALF for four rows of x; the ql bytes are read from
// memory where needed, qh stays in Y11. Y15 = 0x0f, Y14 = 0x30, Y13 =
// 0x20 in every byte.
#define Q6KX4HALF(qloff, qhoff, xoff, soff) \
	VMOVDQU qhoff(SI), Y11; \
	VPAND   qloff(SI), Y15, Y10; \
	VPSLLW  $4, Y11, Y12; \
	VPAND   Y14, Y12, Y12; \
	VPOR    Y12, Y10, Y10; \
	VPSUBB  Y13, Y10, Y10; \
	Q6KX4PAIR(Y10, X10, xoff, soff); \
	VPAND   qloff+32(SI), Y15, Y10; \
	VPSLLW  $2, Y11, Y12; \
	VPAND   Y14, Y12, Y12; \
	VPOR    Y12, Y10, Y10; \
	VPSUBB  Y13, Y10, Y10; \
	Q6KX4PAIR(Y10, X10, xoff+128, soff+8); \
	VMOVDQU qloff(SI), Y10; \
	VPSRLW  $4, Y10, Y10; \
	VPAND   Y15, Y10, Y10; \
	VPAND   Y14, Y11, Y12; \
	VPOR    Y12, Y10, Y10; \
	VPSUBB  Y13, Y10, Y10; \
	Q6KX4PAIR(Y10, X10, xoff+256, soff+16); \
	VMOVDQU qloff+32(SI), Y10; \
	VPSRLW  $4, Y10, Y10; \
	VPAND   Y15, Y10, Y10; \
	VPSRLW  $2, Y11, Y12; \
	VPAND   Y14, Y12, Y12; \
	VPOR    Y12, Y10, Y10; \
	VPSUBB  Y13, Y10, Y10; \
	Q6KX4PAIR(Y10, X10, xoff+384, soff+24)

// func dotQ6_Kx4AVX2(row *byte, x *float32, xStride, nBlocks int, out *[4]float32)
TEXT ·dotQ6_Kx4AVX2(SB), NOSPLIT, $64-40
	MOVQ         row+0(FP), SI
	MOVQ         x+8(FP), DI
	MOVQ         xStride+16(FP), R8
	SHLQ         $2, R8
	LEAQ         (R8)(R8*2), R9
	MOVQ         nBlocks+24(FP), CX
	MOVL         $0x0f0f0f0f, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15
	MOVL         $0x30303030, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	MOVL         $0x20202020, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Y13
	VXORPS       Y0, Y0, Y0
	VXORPS       Y1, Y1, Y1
	VXORPS       Y2, Y2, Y2
	VXORPS       Y3, Y3, Y3

q6kx4loop:
	TESTQ CX, CX
	JZ    q6kx4done
	F16SCALE(208(SI), X4, Y4)
	VPMOVSXBD 192(SI), Y5
	VPMOVSXBD 200(SI), Y6
	VCVTDQ2PS Y5, Y5
	VCVTDQ2PS Y6, Y6
	VMULPS    Y4, Y5, Y5
	VMULPS    Y4, Y6, Y6
	VMOVUPS   Y5, 0(SP)
	VMOVUPS   Y6, 32(SP)
	Q6KX4HALF(0, 128, 0, 0)
	Q6KX4HALF(64, 160, 512, 32)
	ADDQ $210, SI
	ADDQ $1024, DI
	DECQ CX
	JMP  q6kx4loop

q6kx4done:
	MOVQ out+32(FP), AX
	STORE4
	VZEROUPPER
	RET

// Blocked-path micro-kernels: in-order float32 dot products of decoded
// weight columns with rows of x. Every output element is formed the same
// way in each kernel (one 8-lane accumulator, lane l summing elements
// t ≡ l mod 8 in order with fused multiply-adds, then HSUM8), so that a
// result does not depend on how rows and columns are grouped.

// func dot2x4AVX2(x0, x1, w0, w1, w2, w3 *float32, n int, out *[8]float32)
// out = [x0·w0, x0·w1, x0·w2, x0·w3, x1·w0, x1·w1, x1·w2, x1·w3] over n
// elements, n a multiple of 8.
TEXT ·dot2x4AVX2(SB), NOSPLIT, $0-64
	MOVQ   x0+0(FP), SI
	MOVQ   x1+8(FP), DI
	MOVQ   w0+16(FP), R8
	MOVQ   w1+24(FP), R9
	MOVQ   w2+32(FP), R10
	MOVQ   w3+40(FP), R11
	MOVQ   n+48(FP), CX
	SHLQ   $2, CX
	XORQ   BX, BX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

d24loop:
	CMPQ        BX, CX
	JGE         d24done
	VMOVUPS     (SI)(BX*1), Y8
	VMOVUPS     (DI)(BX*1), Y9
	VMOVUPS     (R8)(BX*1), Y10
	VMOVUPS     (R9)(BX*1), Y11
	VMOVUPS     (R10)(BX*1), Y12
	VMOVUPS     (R11)(BX*1), Y13
	VFMADD231PS Y10, Y8, Y0
	VFMADD231PS Y11, Y8, Y1
	VFMADD231PS Y12, Y8, Y2
	VFMADD231PS Y13, Y8, Y3
	VFMADD231PS Y10, Y9, Y4
	VFMADD231PS Y11, Y9, Y5
	VFMADD231PS Y12, Y9, Y6
	VFMADD231PS Y13, Y9, Y7
	ADDQ        $32, BX
	JMP         d24loop

d24done:
	MOVQ  out+56(FP), AX
	HSUM8(Y0, X0, X8)
	MOVSS X0, 0(AX)
	HSUM8(Y1, X1, X8)
	MOVSS X1, 4(AX)
	HSUM8(Y2, X2, X8)
	MOVSS X2, 8(AX)
	HSUM8(Y3, X3, X8)
	MOVSS X3, 12(AX)
	HSUM8(Y4, X4, X8)
	MOVSS X4, 16(AX)
	HSUM8(Y5, X5, X8)
	MOVSS X5, 20(AX)
	HSUM8(Y6, X6, X8)
	MOVSS X6, 24(AX)
	HSUM8(Y7, X7, X8)
	MOVSS X7, 28(AX)
	VZEROUPPER
	RET

// func dot1x1AVX2(x, w *float32, n int) float32
// x·w over n elements (a multiple of 8), each lane as in dot2x4AVX2.
TEXT ·dot1x1AVX2(SB), NOSPLIT, $0-28
	MOVQ   x+0(FP), SI
	MOVQ   w+8(FP), DI
	MOVQ   n+16(FP), CX
	SHLQ   $2, CX
	XORQ   BX, BX
	VXORPS Y0, Y0, Y0

d11loop:
	CMPQ        BX, CX
	JGE         d11done
	VMOVUPS     (SI)(BX*1), Y8
	VFMADD231PS (DI)(BX*1), Y8, Y0
	ADDQ        $32, BX
	JMP         d11loop

d11done:
	HSUM8(Y0, X0, X8)
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET
