package kernels

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// operand builds an Operand padded to 4 dimensions; strides nil means
// contiguous (row-major), given strides are padded with zeros (the padded
// dimensions have size 1, so their strides do not matter).
func operand(dt tensor.DType, ptr uint64, shape []int, strides []int) Operand {
	o := Operand{Ptr: cuda.DevicePtr(ptr), DType: dt}
	pad := 4 - len(shape)
	for i := range 4 {
		o.Shape[i] = 1
	}
	copy(o.Shape[pad:], shape)
	if strides == nil {
		s := 1
		for i := 3; i >= 0; i-- {
			o.Strides[i] = s
			s *= o.Shape[i]
		}
	} else {
		copy(o.Strides[pad:], strides)
	}
	return o
}

func f32Operand(ptr uint64, shape ...int) Operand { return operand(tensor.F32, ptr, shape, nil) }

// decodeArgs reads a launch's parameter bytes as the struct T (little
// endian, as the device reads them); the byte count must match exactly.
func decodeArgs[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if want := binary.Size(v); len(b) != want {
		t.Fatalf("argument buffer is %d bytes, want %d", len(b), want)
	}
	if err := binary.Read(bytes.NewReader(b), binary.LittleEndian, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// scalarArgs builds the expected argument bytes of a kernel taking 8-byte
// scalars (pointers and int64).
func scalarArgs(vals ...uint64) []byte {
	b := make([]byte, 8*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint64(b[8*i:], v)
	}
	return b
}

func checkLaunch(t *testing.T, got fakeLaunch, kernel string, grid, block uint32) {
	t.Helper()
	if got.kernel != kernel {
		t.Errorf("launched %s, want %s", got.kernel, kernel)
	}
	if got.grid != (cuda.Dim3{X: grid, Y: 1, Z: 1}) || got.block != (cuda.Dim3{X: block, Y: 1, Z: 1}) {
		t.Errorf("%s: grid %v block %v, want grid %d block %d", got.kernel, got.grid, got.block, grid, block)
	}
	if got.sharedBytes != 0 {
		t.Errorf("%s: %d dynamic shared bytes, want 0", got.kernel, got.sharedBytes)
	}
}

func wantInvalid(t *testing.T, err error, fragments ...string) {
	t.Helper()
	if !errors.Is(err, op.ErrInvalidArgument) {
		t.Fatalf("got %v, want an error matching op.ErrInvalidArgument", err)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("the error %q lacks %q", err, f)
		}
	}
}

func TestBinaryVecWhenContiguousAndAligned(t *testing.T) {
	s, d := newTestSet(t, ComputeCapability{8, 0}, Options{})
	dst := operand(tensor.F16, 0x10000, []int{2, 3, 8}, nil)
	a := operand(tensor.F16, 0x20000, []int{2, 3, 8}, nil)
	b := operand(tensor.F16, 0x30000, []int{2, 3, 8}, nil)
	if err := s.Binary(nil, Add, dst, a, b); err != nil {
		t.Fatal(err)
	}
	got := d.lastLaunch(t)
	checkLaunch(t, got, "add_f16_vec", 1, 256)
	if want := scalarArgs(0x10000, 0x20000, 0x30000, 48); !bytes.Equal(got.args, want) {
		t.Errorf("args % x, want % x", got.args, want)
	}
}

func TestBinaryBroadcastUsesSimple(t *testing.T) {
	s, d := newTestSet(t, ComputeCapability{8, 6}, Options{})
	dst := operand(tensor.F32, 0x10000, []int{4, 8}, nil)
	a := operand(tensor.F32, 0x20000, []int{4, 8}, nil)
	b := operand(tensor.F32, 0x30000, []int{4, 8}, []int{0, 1}) // a row broadcast over 4 rows
	st := &cuda.Stream{}
	if err := s.Binary(st, Mul, dst, a, b); err != nil {
		t.Fatal(err)
	}
	got := d.lastLaunch(t)
	checkLaunch(t, got, "mul_f32", 1, 256)
	if got.stream != st {
		t.Error("the launch did not use the given stream")
	}
	want := elementwiseParams{
		Shape: [4]int64{1, 1, 4, 8},
		N:     32,
		Dst:   stridedParams{Ptr: 0x10000, Strides: [4]int64{32, 32, 8, 1}},
		A:     stridedParams{Ptr: 0x20000, Strides: [4]int64{32, 32, 8, 1}},
		B:     stridedParams{Ptr: 0x30000, Strides: [4]int64{0, 0, 0, 1}},
	}
	if p := decodeArgs[elementwiseParams](t, got.args); p != want {
		t.Errorf("params %+v\nwant   %+v", p, want)
	}
}

func TestSelectSimpleAndAlignment(t *testing.T) {
	contiguous := func(ptr uint64) Operand { return operand(tensor.F16, ptr, []int{64}, nil) }
	tests := []struct {
		name   string
		sel    Variant
		dstPtr uint64
		want   string
	}{
		{"auto, aligned", VariantAuto, 0x1000, "silu_f16_vec"},
		{"simple forced", VariantSimple, 0x1000, "silu_f16"},
		{"auto, 2-byte aligned only", VariantAuto, 0x1002, "silu_f16"},
		{"auto, 8-byte aligned only", VariantAuto, 0x1008, "silu_f16"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, d := newTestSet(t, ComputeCapability{8, 0}, Options{Variant: tc.sel})
			if err := s.Unary(nil, SiLU, contiguous(tc.dstPtr), contiguous(0x8000)); err != nil {
				t.Fatal(err)
			}
			if got := d.lastLaunch(t).kernel; got != tc.want {
				t.Errorf("launched %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDisabledVariantIsNotPicked(t *testing.T) {
	key := familyVariant{FamilyUnary, KindVec}
	disabledVariants[key] = true
	defer delete(disabledVariants, key)
	s, d := newTestSet(t, ComputeCapability{8, 0}, Options{})
	x := operand(tensor.F32, 0x1000, []int{64}, nil)
	if err := s.Unary(nil, GELU, x, x); err != nil {
		t.Fatal(err)
	}
	if got := d.lastLaunch(t).kernel; got != "gelu_f32" {
		t.Errorf("launched %s, want the simple gelu_f32 while gelu's vec variant is disabled", got)
	}
}

func TestUnaryStrided(t *testing.T) {
	s, d := newTestSet(t, ComputeCapability{8, 0}, Options{})
	dst := operand(tensor.BF16, 0x1000, []int{3, 5}, nil)
	x := operand(tensor.BF16, 0x2000, []int{3, 5}, []int{1, 3}) // a transposed view
	if err := s.Unary(nil, GELUTanh, dst, x); err != nil {
		t.Fatal(err)
	}
	got := d.lastLaunch(t)
	checkLaunch(t, got, "gelu_tanh_bf16", 1, 256)
	p := decodeArgs[elementwiseParams](t, got.args)
	if p.A.Strides != [4]int64{0, 0, 1, 3} || p.N != 15 || p.Shape != [4]int64{1, 1, 3, 5} {
		t.Errorf("params %+v", p)
	}
	if op, err := GELUOp(1); err != nil || op != GELUTanh {
		t.Errorf("GELUOp(GELUTanh) = %v, %v", op, err)
	}
	if _, err := GELUOp(9); !errors.Is(err, op.ErrInvalidArgument) {
		t.Errorf("GELUOp(9): %v", err)
	}
}

func TestConvert(t *testing.T) {
	tests := []struct {
		name     string
		src, dst Operand
		want     string
	}{
		{"f32 to bf16 vec (dst 8-byte aligned suffices)", operand(tensor.F32, 0x1000, []int{10}, nil), operand(tensor.BF16, 0x2008, []int{10}, nil), "copy_f32_to_bf16_vec"},
		{"f32 to bf16, dst 4-byte aligned", operand(tensor.F32, 0x1000, []int{10}, nil), operand(tensor.BF16, 0x2004, []int{10}, nil), "copy_f32_to_bf16"},
		{"f16 to f32 strided", operand(tensor.F16, 0x1000, []int{4, 4}, []int{8, 1}), operand(tensor.F32, 0x2000, []int{4, 4}, nil), "copy_f16_to_f32"},
		{"i32 broadcast", operand(tensor.I32, 0x1000, []int{4, 4}, []int{0, 1}), operand(tensor.I32, 0x2000, []int{4, 4}, nil), "copy_i32_to_i32"},
		{"i32 contiguous", operand(tensor.I32, 0x1000, []int{4, 4}, nil), operand(tensor.I32, 0x2000, []int{4, 4}, nil), "copy_i32_to_i32_vec"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, d := newTestSet(t, ComputeCapability{8, 0}, Options{})
			if err := s.Convert(nil, tc.dst, tc.src); err != nil {
				t.Fatal(err)
			}
			if got := d.lastLaunch(t).kernel; got != tc.want {
				t.Errorf("launched %s, want %s", got, tc.want)
			}
		})
	}

	s, d := newTestSet(t, ComputeCapability{8, 0}, Options{})
	wantInvalid(t, s.Convert(nil, operand(tensor.I32, 0x1000, []int{4}, nil), operand(tensor.F32, 0x2000, []int{4}, nil)),
		"cannot convert F32 to I32")
	wantInvalid(t, s.Convert(nil, operand(tensor.F32, 0x1000, []int{4}, nil), operand(tensor.F32, 0x2000, []int{5}, nil)),
		"src", "[1 1 1 5]")
	if len(d.launches) != 0 {
		t.Errorf("%d launches for invalid arguments", len(d.launches))
	}
}

func TestSoftmax(t *testing.T) {
	x := operand(tensor.F32, 0x1000, []int{2, 3, 4, 100}, nil)
	dst := operand(tensor.F32, 0x9000, []int{2, 3, 4, 100}, []int{2400, 800, 200, 1}) // padded rows
	s, d := newTestSet(t, ComputeCapability{8, 0}, Options{})
	if err := s.Softmax(nil, dst, x, op.SoftmaxOptions{Causal: true, PositionOffset: -3, Scale: 0.125}); err != nil {
		t.Fatal(err)
	}
	got := d.lastLaunch(t)
	checkLaunch(t, got, "softmax_f32_warp", 3, 256) // 24 rows, 8 per block
	want := rowsParams{
		Dst: 0x9000, X: 0x1000,
		Outer:      [3]int64{2, 3, 4},
		DstStrides: [3]int64{2400, 800, 200},
		XStrides:   [3]int64{1200, 400, 100},
		NRows:      24, RowLen: 100,
		PositionOffset: -3, Scale: 0.125, Causal: 1,
	}
	if p := decodeArgs[rowsParams](t, got.args); p != want {
		t.Errorf("params %+v\nwant   %+v", p, want)
	}

	// Scale 0 means 1; long rows take the block-per-row kernel.
	long := operand(tensor.F16, 0x1000, []int{3, 5000}, nil)
	if err := s.Softmax(nil, long, long, op.SoftmaxOptions{}); err != nil {
		t.Fatal(err)
	}
	got = d.lastLaunch(t)
	checkLaunch(t, got, "softmax_f16", 3, 1024)
	if p := decodeArgs[rowsParams](t, got.args); p.Scale != 1 || p.Causal != 0 || p.RowLen != 5000 || p.NRows != 3 {
		t.Errorf("params %+v", p)
	}

	// Forced simple: a block per row, rounded up to whole warps.
	s2, d2 := newTestSet(t, ComputeCapability{8, 0}, Options{Variant: VariantSimple})
	if err := s2.Softmax(nil, dst, x, op.SoftmaxOptions{}); err != nil {
		t.Fatal(err)
	}
	checkLaunch(t, d2.lastLaunch(t), "softmax_f32", 24, 128)

	wantInvalid(t, s.Softmax(nil, dst, operand(tensor.F32, 0x1000, []int{2, 3, 4, 100}, []int{1, 2, 6, 24}), op.SoftmaxOptions{}),
		"innermost dimension must be contiguous")
	wantInvalid(t, s.Softmax(nil, dst, operand(tensor.F16, 0x1000, []int{2, 3, 4, 100}, nil), op.SoftmaxOptions{}), "dtype F16")
}

func TestNorms(t *testing.T) {
	s, d := newTestSet(t, ComputeCapability{8, 0}, Options{})
	x := operand(tensor.BF16, 0x1000, []int{7, 4096}, nil)
	if err := s.RMSNorm(nil, x, x, 0x5000, op.NormOptions{}); err != nil {
		t.Fatal(err)
	}
	got := d.lastLaunch(t)
	checkLaunch(t, got, "rmsnorm_bf16", 7, 1024)
	p := decodeArgs[rowsParams](t, got.args)
	if p.Weight != 0x5000 || p.Bias != 0 || p.Eps != 1e-5 || p.NRows != 7 || p.RowLen != 4096 {
		t.Errorf("rmsnorm params %+v", p)
	}

	short := operand(tensor.F32, 0x1000, []int{100, 64}, nil)
	if err := s.LayerNorm(nil, short, short, 0x5000, 0x6000, op.NormOptions{Eps: 1e-6}); err != nil {
		t.Fatal(err)
	}
	got = d.lastLaunch(t)
	checkLaunch(t, got, "layernorm_f32_warp", 13, 256)
	p = decodeArgs[rowsParams](t, got.args)
	if p.Weight != 0x5000 || p.Bias != 0x6000 || p.Eps != 1e-6 {
		t.Errorf("layernorm params %+v", p)
	}

	// +Inf passes, as op.CheckRMSNorm lets it (the CPU then gives zeros, and
	// so does 1/sqrtf(+Inf) in the kernel): the GPU must not refuse what the
	// CPU accepts.
	inf := float32(math.Inf(1))
	if err := s.RMSNorm(nil, x, x, 0, op.NormOptions{Eps: inf}); err != nil {
		t.Fatalf("eps +Inf: %v", err)
	}
	if p := decodeArgs[rowsParams](t, d.lastLaunch(t).args); p.Eps != inf {
		t.Errorf("eps +Inf packed as %v", p.Eps)
	}
	wantInvalid(t, s.RMSNorm(nil, x, x, 0, op.NormOptions{Eps: -1}), "eps")
	wantInvalid(t, s.RMSNorm(nil, x, x, 0, op.NormOptions{Eps: float32(math.NaN())}), "eps")
	wantInvalid(t, s.LayerNorm(nil, short, short, 0x5000, 0x6002, op.NormOptions{}), "bias", "aligned")
}

func TestArgmax(t *testing.T) {
	s, d := newTestSet(t, ComputeCapability{8, 0}, Options{})
	x := operand(tensor.BF16, 0x1000, []int{3, 50000}, nil)
	dst := operand(tensor.I32, 0x9000, []int{3}, []int{2}) // every other I32
	if err := s.Argmax(nil, dst, x); err != nil {
		t.Fatal(err)
	}
	got := d.lastLaunch(t)
	checkLaunch(t, got, "argmax_bf16", 3, 1024)
	// dst's padded strides are [0, 0, 0, 2]: the row strides are its last three.
	want := rowsParams{Dst: 0x9000, X: 0x1000, Outer: [3]int64{1, 1, 3}, DstStrides: [3]int64{0, 0, 2},
		XStrides: [3]int64{150000, 150000, 50000}, NRows: 3, RowLen: 50000}
	if p := decodeArgs[rowsParams](t, got.args); p != want {
		t.Errorf("params %+v\nwant   %+v", p, want)
	}
	// Rank-1 x: dst is [1].
	if err := s.Argmax(nil, operand(tensor.I32, 0x9000, []int{1}, nil), operand(tensor.F32, 0x1000, []int{10}, nil)); err != nil {
		t.Error(err)
	}
	wantInvalid(t, s.Argmax(nil, operand(tensor.I32, 0x9000, []int{4}, nil), x), "dst", "[1 1 1 3]")
	wantInvalid(t, s.Argmax(nil, operand(tensor.F32, 0x9000, []int{3}, nil), x), "dst", "I32")
	wantInvalid(t, s.Argmax(nil, dst, operand(tensor.F32, 0x1000, []int{3, 0}, nil)), "length 0")
}

func TestRoPE(t *testing.T) {
	s, d := newTestSet(t, ComputeCapability{8, 0}, Options{})
	x := operand(tensor.F16, 0x1000, []int{5, 4, 64}, nil)
	dst := operand(tensor.F16, 0x8000, []int{5, 4, 64}, nil)
	pos := operand(tensor.I32, 0x2000, []int{5}, nil)
	p := RoPEParams{Style: op.RoPENeoX, NDims: 32, FreqBase: 500000, FreqScale: 0.25, PositionOffset: 7, FreqFactors: 0x3000}
	if err := s.RoPE(nil, dst, x, pos, p); err != nil {
		t.Fatal(err)
	}
	got := d.lastLaunch(t)
	checkLaunch(t, got, "rope_f16", 5, 64) // 4 heads × 16 pairs
	want := ropeParams{Dst: 0x8000, X: 0x1000, Positions: 0x2000, FreqFactors: 0x3000,
		Shape: [4]int64{1, 5, 4, 64}, DstStrides: [3]int64{1280, 256, 64}, XStrides: [3]int64{1280, 256, 64},
		PosStrides: [2]int64{5, 1}, PositionOffset: 7, NDims: 32, Style: 1, FreqBase: 500000, FreqScale: 0.25}
	if gp := decodeArgs[ropeParams](t, got.args); gp != want {
		t.Errorf("params %+v\nwant   %+v", gp, want)
	}

	// Batched: positions [batch, nTokens].
	xb := operand(tensor.F32, 0x1000, []int{2, 3, 8, 128}, nil)
	posb := operand(tensor.I32, 0x2000, []int{2, 3}, nil)
	if err := s.RoPE(nil, xb, xb, posb, RoPEParams{NDims: 128, FreqBase: 10000, FreqScale: 1}); err != nil {
		t.Fatal(err)
	}
	got = d.lastLaunch(t)
	checkLaunch(t, got, "rope_f32", 6, 256)
	if gp := decodeArgs[ropeParams](t, got.args); gp.PosStrides != [2]int64{3, 1} || gp.Style != 0 {
		t.Errorf("params %+v", gp)
	}

	wantInvalid(t, s.RoPE(nil, dst, x, pos, RoPEParams{NDims: 31, FreqBase: 1, FreqScale: 1}), "NDims")
	wantInvalid(t, s.RoPE(nil, dst, x, pos, RoPEParams{NDims: 0, FreqBase: 1, FreqScale: 1}), "NDims")
	wantInvalid(t, s.RoPE(nil, dst, x, pos, RoPEParams{NDims: 66, FreqBase: 1, FreqScale: 1}), "NDims")
	// +Inf passes, as op.CheckRoPE lets it; NaN does not.
	if err := s.RoPE(nil, dst, x, pos, RoPEParams{NDims: 64, FreqBase: float32(math.Inf(1)), FreqScale: 1}); err != nil {
		t.Errorf("FreqBase +Inf: %v", err)
	}
	wantInvalid(t, s.RoPE(nil, dst, x, pos, RoPEParams{NDims: 64, FreqBase: 0, FreqScale: 1}), "FreqBase")
	wantInvalid(t, s.RoPE(nil, dst, x, pos, RoPEParams{NDims: 64, FreqBase: 1, FreqScale: float32(math.NaN())}), "FreqScale")
	wantInvalid(t, s.RoPE(nil, dst, x, pos, RoPEParams{NDims: 64, FreqBase: 1, FreqScale: 1, Style: 5}), "Style")
	wantInvalid(t, s.RoPE(nil, dst, x, operand(tensor.I32, 0x2000, []int{4}, nil), RoPEParams{NDims: 64, FreqBase: 1, FreqScale: 1}), "positions")
	wantInvalid(t, s.RoPE(nil, dst, x, operand(tensor.F32, 0x2000, []int{5}, nil), RoPEParams{NDims: 64, FreqBase: 1, FreqScale: 1}), "positions", "I32")
}

func TestEmbedding(t *testing.T) {
	s, d := newTestSet(t, ComputeCapability{8, 0}, Options{})
	table := operand(tensor.Q4_K, 0x100000, []int{1000, 512}, nil)
	ids := operand(tensor.I32, 0x2000, []int{2, 3}, nil)
	dst := operand(tensor.F16, 0x8000, []int{2, 3, 512}, nil)
	if err := s.Embedding(nil, dst, table, ids, 0x7000); err != nil {
		t.Fatal(err)
	}
	got := d.lastLaunch(t)
	checkLaunch(t, got, "embedding_q4_k_to_f16", 6, 256)
	want := embeddingParams{Dst: 0x8000, Table: 0x100000, IDs: 0x2000, ErrorWord: 0x7000,
		IDsShape: [3]int64{1, 2, 3}, IDsStrides: [3]int64{6, 3, 1}, DstStrides: [3]int64{3072, 1536, 512},
		NIDs: 6, Vocab: 1000, Dim: 512, TableRowStrideBytes: 2 * 144}
	if p := decodeArgs[embeddingParams](t, got.args); p != want {
		t.Errorf("params %+v\nwant   %+v", p, want)
	}

	// Q8_0 rows 34 bytes per 32 elements, with a padded row stride.
	table8 := operand(tensor.Q8_0, 0x100002, []int{10, 64}, []int{96, 1})
	dst8 := operand(tensor.F32, 0x8000, []int{4, 64}, nil)
	if err := s.Embedding(nil, dst8, table8, operand(tensor.I32, 0x2000, []int{4}, nil), 0x7000); err != nil {
		t.Fatal(err)
	}
	got = d.lastLaunch(t)
	checkLaunch(t, got, "embedding_q8_0_to_f32", 4, 64)
	if p := decodeArgs[embeddingParams](t, got.args); p.TableRowStrideBytes != 3*34 || p.Dim != 64 || p.Vocab != 10 {
		t.Errorf("params %+v", p)
	}

	wantInvalid(t, s.Embedding(nil, dst, table, ids, 0), "errorWord")
	wantInvalid(t, s.Embedding(nil, dst8, operand(tensor.Q8_0, 0x100000, []int{10, 48}, nil), operand(tensor.I32, 0x2000, []int{4}, nil), 0x7000),
		"whole 32-element blocks")
	wantInvalid(t, s.Embedding(nil, dst, table, operand(tensor.F32, 0x2000, []int{2, 3}, nil), 0x7000), "ids", "I32")
	wantInvalid(t, s.Embedding(nil, dst, operand(tensor.I8, 0x100000, []int{1000, 512}, nil), ids, 0x7000), "table", "I8")
	wantInvalid(t, s.Embedding(nil, operand(tensor.F16, 0x8000, []int{2, 3, 256}, nil), table, ids, 0x7000), "dst", "expected [1 2 3 512]")
}

func TestProbes(t *testing.T) {
	s, d := newTestSet(t, ComputeCapability{9, 0}, Options{})
	if err := s.ReadProbe(nil, 0x10000, 1<<30, 0x2000, DefaultProbeBlocks(132)); err != nil {
		t.Fatal(err)
	}
	got := d.lastLaunch(t)
	checkLaunch(t, got, "read_probe_b128", 1056, 256)
	if want := scalarArgs(0x10000, 1<<26, 0x2000); !bytes.Equal(got.args, want) {
		t.Errorf("args % x, want % x", got.args, want)
	}
	if err := s.CopyProbe(nil, 0x20000, 0x10000, 4096); err != nil {
		t.Fatal(err)
	}
	got = d.lastLaunch(t)
	checkLaunch(t, got, "copy_probe_b128", 1, 256)
	if want := scalarArgs(0x20000, 0x10000, 256); !bytes.Equal(got.args, want) {
		t.Errorf("args % x, want % x", got.args, want)
	}
	if ProbeOutputBytes(1056) != 4224 {
		t.Errorf("ProbeOutputBytes(1056) = %d", ProbeOutputBytes(1056))
	}
	wantInvalid(t, s.ReadProbe(nil, 0x10008, 1<<20, 0x2000, 4), "src")
	wantInvalid(t, s.ReadProbe(nil, 0x10000, 100, 0x2000, 4), "sizeBytes")
	wantInvalid(t, s.ReadProbe(nil, 0x10000, 1<<20, 0x2000, 0), "blocks")
	wantInvalid(t, s.CopyProbe(nil, 0, 0x10000, 64), "dst")
}

func TestBadOperands(t *testing.T) {
	s, d := newTestSet(t, ComputeCapability{8, 0}, Options{})
	good := f32Operand(0x1000, 4, 4)
	tests := []struct {
		name string
		x    Operand
		want []string
	}{
		{"negative stride", operand(tensor.F32, 0x1000, []int{4, 4}, []int{-4, 1}), []string{"negative"}},
		{"negative size", operand(tensor.F32, 0x1000, []int{-4, 4}, nil), []string{"negative"}},
		{"null pointer", operand(tensor.F32, 0, []int{4, 4}, nil), []string{"address is 0"}},
		{"misaligned", operand(tensor.F32, 0x1002, []int{4, 4}, nil), []string{"aligned to 4"}},
		{"invalid dtype", operand(tensor.Invalid, 0x1000, []int{4, 4}, nil), []string{"invalid dtype"}},
		{"element count overflow", operand(tensor.F32, 0x1000, []int{1 << 31, 1 << 31, 1 << 2, 1}, []int{0, 0, 0, 0}), []string{"overflows"}},
		{"furthest element overflow", operand(tensor.F32, 0x1000, []int{4, 4}, []int{1 << 62, 1}), []string{"out of range"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := tc.x
			x.Shape = good.Shape
			if tc.name == "negative size" || tc.name == "element count overflow" {
				x.Shape = tc.x.Shape
			}
			err := s.Unary(nil, SiLU, good, x)
			wantInvalid(t, err, append(tc.want, "silu", "x")...)
		})
	}
	if len(d.launches) != 0 {
		t.Errorf("%d launches for invalid operands", len(d.launches))
	}
	// Nothing to do: no launch, no error, even with null pointers.
	empty := operand(tensor.F32, 0, []int{0, 4}, nil)
	if err := s.Unary(nil, SiLU, empty, empty); err != nil {
		t.Errorf("empty tensors: %v", err)
	}
	if len(d.launches) != 0 {
		t.Error("a kernel was launched for an empty tensor")
	}
}

func TestLaunchErrorNamesKernel(t *testing.T) {
	s, d := newTestSet(t, ComputeCapability{8, 0}, Options{})
	d.launchErr = &cuda.Error{Call: "cuLaunchKernel", Result: cuda.ErrorLaunchOutOfRes}
	x := f32Operand(0x1000, 4, 4)
	err := s.Binary(nil, Add, x, x, x)
	var cerr *cuda.Error
	if !errors.As(err, &cerr) || cerr.Result != cuda.ErrorLaunchOutOfRes {
		t.Fatalf("got %v, want the driver's *cuda.Error", err)
	}
	if !strings.Contains(err.Error(), "add_f32_vec") {
		t.Errorf("the error %q does not name the kernel", err)
	}
}

// TestLaunchDoesNotAllocate: once its module is loaded, a launch packs its
// arguments into the Set's reused buffer without allocating.
func TestLaunchDoesNotAllocate(t *testing.T) {
	s, d := newTestSet(t, ComputeCapability{8, 0}, Options{})
	dst := f32Operand(0x1000, 64, 64)
	b := operand(tensor.F32, 0x3000, []int{64, 64}, []int{0, 1})
	x := operand(tensor.F32, 0x4000, []int{64, 64}, []int{1, 64})
	rows := f32Operand(0x5000, 64, 4096)
	launches := []func() error{
		func() error { return s.Binary(nil, Add, dst, dst, b) },   // simple, parameter struct
		func() error { return s.Binary(nil, Mul, dst, dst, dst) }, // vec, scalars
		func() error { return s.Unary(nil, SiLU, dst, x) },        // strided
		func() error { return s.RMSNorm(nil, rows, rows, 0, op.NormOptions{}) },
	}
	for _, launch := range launches {
		if err := launch(); err != nil { // loads the module, looks the function up
			t.Fatal(err)
		}
	}
	d.countOnly = true
	for i, launch := range launches {
		allocs := testing.AllocsPerRun(100, func() {
			if err := launch(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("launch %d: %v allocations per launch, want 0", i, allocs)
		}
	}
	if d.count != 4*101 {
		t.Errorf("%d launches counted, want %d", d.count, 4*101)
	}
}

func TestOperandValidationDoesNotNeedADevice(t *testing.T) {
	// Binary with an unknown op is refused before anything else.
	s, _ := newTestSet(t, ComputeCapability{8, 0}, Options{})
	x := f32Operand(0x1000, 4)
	wantInvalid(t, s.Binary(nil, BinaryOp(9), x, x, x), "unknown binary op")
	wantInvalid(t, s.Unary(nil, UnaryOp(9), x, x), "unknown unary op")
	wantInvalid(t, s.Binary(nil, Add, x, x, operand(tensor.F16, 0x1000, []int{4}, nil)), "b", "F16")
	wantInvalid(t, s.Binary(nil, Add, operand(tensor.I32, 0x1000, []int{4}, nil), x, x), "dst", "I32")
}

// TestConcurrentLaunches: launchers may be called from several goroutines;
// the Set serialises its caches and argument buffer (run with -race).
func TestConcurrentLaunches(t *testing.T) {
	s, d := newTestSet(t, ComputeCapability{9, 0}, Options{})
	x := f32Operand(0x1000, 16, 100)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				var err error
				if g%2 == 0 {
					err = s.Binary(nil, Add, x, x, x)
				} else {
					err = s.Softmax(nil, x, x, op.SoftmaxOptions{Causal: true})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(d.launches) != 400 {
		t.Errorf("%d launches recorded, want 400", len(d.launches))
	}
	if len(d.loads) != 2 {
		t.Errorf("%d modules loaded, want 2 (binary and softmax, once each)", len(d.loads))
	}
}
