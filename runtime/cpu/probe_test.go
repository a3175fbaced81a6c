package cpu

import (
	"bytes"
	"errors"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

func TestProbeCopyCopiesEveryByte(t *testing.T) {
	b := New(Options{Threads: 3})
	defer b.Close()
	n := 3*probeChunkBytes/4 + 5 // several chunks and a ragged end
	src, _ := b.Alloc(tensor.I32, n)
	dst, _ := b.Alloc(tensor.I32, n)
	want := make([]int32, n)
	for i := range want {
		want[i] = int32(i*2654435761) ^ 0x5a5a
	}
	if err := b.Upload(src, tensor.I32Bytes(want)); err != nil {
		t.Fatal(err)
	}
	if err := b.ProbeRead(src); err != nil {
		t.Fatal(err)
	}
	if err := b.ProbeCopy(dst, src); err != nil {
		t.Fatal(err)
	}
	got, _ := b.Bytes(dst)
	if !bytes.Equal(got, tensor.I32Bytes(want)) {
		t.Fatal("ProbeCopy did not copy src")
	}
	small, _ := b.Alloc(tensor.I32, 3)
	if err := b.ProbeCopy(small, src); !errors.Is(err, op.ErrInvalidArgument) {
		t.Errorf("size mismatch: %v", err)
	}
	col, _ := src.Reshape(n/5, 5)
	col, _ = col.Slice(1, 0, 2)
	if err := b.ProbeRead(col); !errors.Is(err, op.ErrInvalidArgument) {
		t.Errorf("strided probe: %v", err)
	}
}
