package cuda

import (
	"bytes"
	"strings"
	"testing"
	"unsafe"
)

func TestArgsPackingAlignsEachValueToItsSize(t *testing.T) {
	var a Args
	a.I32(-2).Ptr(0x1122334455667788).F32(1.5).U32(0xdeadbeef).I64(-3).F64(2.25).I32(5).U64(1)
	want := []byte{
		0xfe, 0xff, 0xff, 0xff, // I32 -2 at 0
		0, 0, 0, 0, // padding: Ptr is 8-aligned
		0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // Ptr at 8
		0x00, 0x00, 0xc0, 0x3f, // F32 1.5 (0x3fc00000) at 16
		0xef, 0xbe, 0xad, 0xde, // U32 at 20
		0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // I64 -3 at 24
		0, 0, 0, 0, 0, 0, 0x02, 0x40, // F64 2.25 (0x4002000000000000) at 32
		0x05, 0, 0, 0, // I32 5 at 40
		0, 0, 0, 0, // padding
		0x01, 0, 0, 0, 0, 0, 0, 0, // U64 1 at 48
	}
	if got := a.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("packed bytes:\n got % x\nwant % x", got, want)
	}
	a.Reset()
	if len(a.Bytes()) != 0 {
		t.Fatalf("after Reset, %d bytes remain", len(a.Bytes()))
	}
	a.F32(-1)
	if got, want := a.Bytes(), []byte{0, 0, 0x80, 0xbf}; !bytes.Equal(got, want) {
		t.Fatalf("after Reset and F32(-1): got % x, want % x", got, want)
	}
}

// kernelParams mirrors a C struct { int n; float scale; unsigned long long
// base; short k; } (24 bytes, 8-aligned).
type kernelParams struct {
	N     int32
	Scale float32
	Base  uint64
	K     int16
}

type pairParams struct{ A, B int32 }

func TestArgsStructIsAlignedAndCopiedByValue(t *testing.T) {
	var a Args
	p := kernelParams{N: 3, Scale: -1, Base: 0x0102030405060708, K: -1}
	a.I32(7)
	Struct(&a, &p)
	got := a.Bytes()
	if len(got) != 8+24 {
		t.Fatalf("I32 then a 24-byte 8-aligned struct: %d bytes, want 32", len(got))
	}
	wantPrefix := []byte{
		7, 0, 0, 0, // I32 7
		0, 0, 0, 0, // padding to the struct's 8-byte alignment
		3, 0, 0, 0, // N
		0, 0, 0x80, 0xbf, // Scale -1
		8, 7, 6, 5, 4, 3, 2, 1, // Base
		0xff, 0xff, // K -1; the rest is the struct's own tail padding
	}
	if !bytes.Equal(got[:len(wantPrefix)], wantPrefix) {
		t.Fatalf("packed struct:\n got % x\nwant % x", got[:len(wantPrefix)], wantPrefix)
	}
	// Changing the value afterwards does not change the packed copy.
	p.N = 99
	if got[8] != 3 {
		t.Fatalf("the packed struct changed with the Go value: byte 8 is %d", got[8])
	}

	// A 4-aligned struct after a 4-byte value needs no padding.
	a.Reset().I32(1)
	Struct(&a, &pairParams{A: 2, B: 3})
	if got, want := a.Bytes(), []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0}; !bytes.Equal(got, want) {
		t.Fatalf("4-aligned struct: got % x, want % x", got, want)
	}
	if unsafe.Sizeof(kernelParams{}) != 24 || unsafe.Alignof(kernelParams{}) != 8 {
		t.Fatalf("kernelParams layout changed: size %d align %d", unsafe.Sizeof(kernelParams{}), unsafe.Alignof(kernelParams{}))
	}
}

func TestArgsPackingDoesNotAllocateOnceWarm(t *testing.T) {
	var a Args
	p := kernelParams{N: 1}
	fill := func() {
		a.Reset().Ptr(0x1000).I32(4).F32(0.5).I64(9)
		Struct(&a, &p)
		a.U32(2)
	}
	fill() // grows the buffer once
	if n := testing.AllocsPerRun(200, fill); n != 0 {
		t.Fatalf("packing allocated %.1f times per run once warm, want 0", n)
	}
}

func TestArgsCheckRejectsOversizedParameterLists(t *testing.T) {
	var a Args
	for range 1024 {
		a.U32(0)
	}
	if err := a.check(); err != nil {
		t.Fatalf("4096 bytes (the limit) refused: %v", err)
	}
	a.U32(0)
	err := a.check()
	if err == nil {
		t.Fatal("4100 bytes of arguments accepted, want an error")
	}
	if !strings.Contains(err.Error(), "4100") || !strings.Contains(err.Error(), "4096") {
		t.Fatalf("error %q does not give the size and the limit", err)
	}
}
