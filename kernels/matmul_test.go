package kernels

import (
	"errors"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// onlyLaunches hides the fake driver's memory and attribute methods: a
// driver that can load and launch and nothing else.
type onlyLaunches struct{ driver }

func matmulSet(t *testing.T, cc ComputeCapability, sms int, sel Variant) (*Set, *fakeDriver) {
	t.Helper()
	s, d := newTestSet(t, cc, Options{Variant: sel})
	d.smCount = sms
	return s, d
}

// decodeArgs1 is a decode-sized product: one F16 row against a 64×4096
// Q4_0 weight (so few tiles that k is split).
func decodeArgs1() MatMulArgs {
	return MatMulArgs{M: 1, N: 64, K: 4096,
		X: 0x10_0000, XRowStride: 4096, XType: tensor.F16,
		W: 0x100_0000, WRowStride: 4096, WType: tensor.Q4_0,
		Y: 0x20_0000, YRowStride: 64, Bias: 0x30_0000}
}

func TestMatMulDecodeSplitK(t *testing.T) {
	s, d := matmulSet(t, ComputeCapability{9, 0}, 132, VariantAuto)
	a := decodeArgs1()
	if err := s.MatMul(nil, a); err != nil {
		t.Fatal(err)
	}
	// 64 rows: 1 tile; ⌊264/1⌋ → capped by 16 chunks of 256 / 2 = 8 slices of
	// 2 chunks (512 elements); partials 8·1·64 floats.
	if len(d.allocs) != 1 || d.allocs[0] != 8*1*64*4 {
		t.Fatalf("workspace allocations %v, want one of %d bytes", d.allocs, 8*64*4)
	}
	if len(d.launches) != 2 {
		t.Fatalf("%d launches, want the decode kernel and the reduction", len(d.launches))
	}
	main, red := d.launches[0], d.launches[1]
	if main.kernel != "matmul_q4_0_f16_decode" || main.grid != (cuda.Dim3{X: 1, Y: 1, Z: 8}) || main.block != cuda.D1(128) || main.sharedBytes != 0 {
		t.Errorf("main launch %s grid %v block %v shared %d", main.kernel, main.grid, main.block, main.sharedBytes)
	}
	want := matmulParams{
		X: 0x10_0000, W: 0x100_0000, Y: 0x20_0000, Bias: 0x30_0000, Partials: 0x7000_0000_0000,
		M: 1, N: 64, K: 4096, XRowStride: 4096, YRowStride: 64,
		WRowStrideBytes: 4096 / 32 * 18, NVirtual: 64, KPerSplit: 512, SplitK: 8,
		WVec16: 1, XVec16: 1,
	}
	if p := decodeArgs[matmulParams](t, main.args); p != want {
		t.Errorf("params %+v\nwant   %+v", p, want)
	}
	if red.kernel != "matmul_reduce_f16" || red.grid != cuda.D1(1) || red.block != cuda.D1(256) {
		t.Errorf("reduction launch %s grid %v block %v", red.kernel, red.grid, red.block)
	}
	if p := decodeArgs[matmulParams](t, red.args); p != want {
		t.Errorf("reduction params %+v\nwant   %+v", p, want)
	}

	// The same shape again reuses the workspace; a larger one replaces it
	// (doubling), and a second stream gets its own.
	if err := s.MatMul(nil, a); err != nil {
		t.Fatal(err)
	}
	if len(d.allocs) != 1 {
		t.Errorf("allocations %v after a second launch, want the first one only", d.allocs)
	}
	a.M = 2 // needs 2·2048 bytes: double the first
	a.Y = 0x40_0000
	if err := s.MatMul(nil, a); err != nil {
		t.Fatal(err)
	}
	a.M = 3 // needs 6144 bytes: the workspace doubles to 8192
	if err := s.MatMul(nil, a); err != nil {
		t.Fatal(err)
	}
	if len(d.allocs) != 3 || d.allocs[1] != 4096 || d.allocs[2] != 8192 {
		t.Errorf("allocations %v: want 2048, 4096, 8192 (each at least double the last)", d.allocs)
	}
	st := &cuda.Stream{}
	if err := s.MatMul(st, a); err != nil {
		t.Fatal(err)
	}
	if len(d.allocs) != 4 || d.allocs[3] != 6144 {
		t.Errorf("allocations %v: a new stream needs its own workspace, of 6144 bytes", d.allocs)
	}
	if got := d.lastLaunch(t).stream; got != st {
		t.Error("the reduction did not run on the given stream")
	}
	if len(d.freed) != 0 {
		t.Errorf("workspaces %v freed before Close", d.freed)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(d.freed) != 4 {
		t.Errorf("Close freed %v, want all 4 workspaces (the replaced ones included)", d.freed)
	}
	if err := s.MatMul(nil, a); !errors.Is(err, op.ErrClosed) {
		t.Errorf("MatMul after Close: %v", err)
	}
}

func TestMatMulWorkspaceGrowsToTheNeed(t *testing.T) {
	// need 12·8·64·4 = 24576 > 2·2048: the new size is the need.
	s, d := matmulSet(t, ComputeCapability{9, 0}, 132, VariantAuto)
	a := decodeArgs1()
	if err := s.MatMul(nil, a); err != nil {
		t.Fatal(err)
	}
	a.M = 12
	if err := s.MatMul(nil, a); err != nil {
		t.Fatal(err)
	}
	if len(d.allocs) != 2 || d.allocs[1] != 12*8*64*4 {
		t.Errorf("allocations %v, want the second of %d bytes", d.allocs, 12*8*64*4)
	}
}

func TestMatMulWithoutWorkspace(t *testing.T) {
	// A driver that cannot allocate: no split, one launch.
	d := newFakeDriver()
	s, err := newSet(onlyLaunches{d}, ComputeCapability{9, 0}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MatMul(nil, decodeArgs1()); err != nil {
		t.Fatal(err)
	}
	if len(d.launches) != 1 {
		t.Fatalf("%d launches, want 1", len(d.launches))
	}
	p := decodeArgs[matmulParams](t, d.launches[0].args)
	if p.SplitK != 1 || p.Partials != 0 || p.KPerSplit != 4096 || d.launches[0].grid.Z != 1 {
		t.Errorf("params %+v grid %v: want no split", p, d.launches[0].grid)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}

	// An allocation that fails: the same, with a warning.
	s2, d2 := matmulSet(t, ComputeCapability{9, 0}, 132, VariantAuto)
	d2.allocErr = &cuda.Error{Call: "cuMemAlloc_v2", Result: 2}
	if err := s2.MatMul(nil, decodeArgs1()); err != nil {
		t.Fatal(err)
	}
	if len(d2.launches) != 1 || decodeArgs[matmulParams](t, d2.launches[0].args).SplitK != 1 {
		t.Errorf("after a failed allocation: %d launches, want 1 without split", len(d2.launches))
	}
	// PrepareMatMul reports the failure instead.
	if err := s2.PrepareMatMul(nil, decodeArgs1()); err == nil || !strings.Contains(err.Error(), "workspace") {
		t.Errorf("PrepareMatMul with a failing allocation: %v", err)
	}
}

func TestPrepareMatMul(t *testing.T) {
	s, d := matmulSet(t, ComputeCapability{9, 0}, 132, VariantAuto)
	if err := s.PrepareMatMul(nil, decodeArgs1()); err != nil {
		t.Fatal(err)
	}
	if len(d.launches) != 0 {
		t.Errorf("PrepareMatMul launched %d kernels", len(d.launches))
	}
	if len(d.allocs) != 1 {
		t.Errorf("PrepareMatMul allocated %v, want the workspace", d.allocs)
	}
	if _, ok := s.LoadedTarget(FamilyMatMulDecode); !ok {
		t.Error("PrepareMatMul did not load the decode kernels")
	}
	if _, ok := s.LoadedTarget(FamilyMatMul); !ok {
		t.Error("PrepareMatMul did not load the reduction")
	}
	// The launch after it allocates nothing.
	if err := s.MatMul(nil, decodeArgs1()); err != nil {
		t.Fatal(err)
	}
	if len(d.allocs) != 1 {
		t.Errorf("allocations %v after PrepareMatMul and MatMul", d.allocs)
	}
	c, err := s.MatMulChoice(decodeArgs1())
	if err != nil {
		t.Fatal(err)
	}
	if c != (MatMulChoice{Kernel: "matmul_q4_0_f16_decode", Reduce: "matmul_reduce_f16", Kind: KindDecode, SplitK: 8, WorkspaceBytes: 8 * 64 * 4}) {
		t.Errorf("MatMulChoice %+v", c)
	}
}

func TestMatMulPrefillSwiGLU(t *testing.T) {
	s, d := matmulSet(t, ComputeCapability{8, 0}, 108, VariantAuto)
	a := MatMulArgs{M: 300, N: 1000, K: 512,
		X: 0x10_0000, XRowStride: 520, XType: tensor.BF16,
		W: 0x100_0000, WUp: 0x200_0000, WRowStride: 512, WType: tensor.Q6_K,
		Y: 0x300_0000, YRowStride: 1000}
	if err := s.MatMul(nil, a); err != nil {
		t.Fatal(err)
	}
	// n_virtual = 16·125 = 2000: 16 tiles of 128; m: 3 tiles; 48 tiles, 2·48 ≤ 108:
	// ⌊108/48⌋ = 2 slices wanted, 16 k-tiles: 2 slices of 8 (256 elements).
	if len(d.launches) != 2 {
		t.Fatalf("%d launches", len(d.launches))
	}
	got := d.launches[0]
	if got.kernel != "matmul_q6_k_bf16_mma" || got.grid != (cuda.Dim3{X: 16, Y: 3, Z: 2}) || got.block != cuda.D1(256) {
		t.Errorf("launch %s grid %v block %v", got.kernel, got.grid, got.block)
	}
	p := decodeArgs[matmulParams](t, got.args)
	want := matmulParams{X: 0x10_0000, W: 0x100_0000, WUp: 0x200_0000, Y: 0x300_0000, Partials: 0x7000_0000_0000,
		M: 300, N: 1000, K: 512, XRowStride: 520, YRowStride: 1000, WRowStrideBytes: 2 * 210,
		NVirtual: 2000, KPerSplit: 256, SplitK: 2, SwiGLU: 1,
		WVec16: 0, // 420-byte rows are not a multiple of 16
		XVec16: 1, // 1040-byte rows are
	}
	if p != want {
		t.Errorf("params %+v\nwant   %+v", p, want)
	}
	if d.allocs[0] != 2*300*2000*4 {
		t.Errorf("workspace %d bytes, want %d", d.allocs[0], 2*300*2000*4)
	}
	if red := d.launches[1]; red.kernel != "matmul_reduce_bf16" || red.grid != cuda.D1(int(ceilDiv(300*1000, 256))) {
		t.Errorf("reduction %s grid %v", red.kernel, red.grid)
	}
}

func TestMatMulSimpleAndSIMT(t *testing.T) {
	a := MatMulArgs{M: 5, N: 300, K: 96,
		X: 0x10_0004, XRowStride: 96, XType: tensor.F32, // 4-byte aligned only
		W: 0x100_0000, WRowStride: 128, WType: tensor.Q8_0,
		Y: 0x300_0000, YRowStride: 300}
	s, d := matmulSet(t, ComputeCapability{8, 6}, 84, VariantSimple)
	if err := s.MatMul(nil, a); err != nil {
		t.Fatal(err)
	}
	got := d.lastLaunch(t)
	checkLaunch(t, got, "matmul_q8_0_f32", uint32(ceilDiv(5*300, 256)), 256)
	p := decodeArgs[matmulParams](t, got.args)
	if p.M != 5 || p.N != 300 || p.K != 96 || p.WRowStrideBytes != 4*34 || p.SplitK != 1 || p.KPerSplit != 96 || p.NVirtual != 300 || p.XVec16 != 0 {
		t.Errorf("simple params %+v", p)
	}

	s2, d2 := matmulSet(t, ComputeCapability{8, 6}, 84, VariantAuto)
	if err := s2.MatMul(nil, a); err != nil {
		t.Fatal(err)
	}
	got = d2.lastLaunch(t)
	// MR 8 ≥ 5; 300 rows: 5 tiles of 64; 168 wanted, ⌊168/5⌋ = 33 but k is
	// 96 (one chunk of 128): no split.
	if got.kernel != "matmul_q8_0_f32_simt_m8" || got.grid != (cuda.Dim3{X: 5, Y: 1, Z: 1}) || got.block != cuda.D1(128) {
		t.Errorf("launch %s grid %v block %v", got.kernel, got.grid, got.block)
	}
	if len(d2.launches) != 1 || len(d2.allocs) != 0 {
		t.Errorf("%d launches, allocations %v", len(d2.launches), d2.allocs)
	}
}

// TestMatMulHugeM: an m of more than 65535 m-tiles is launched in pieces,
// each with its rows of X and Y.
func TestMatMulHugeM(t *testing.T) {
	s, d := matmulSet(t, ComputeCapability{9, 0}, 132, VariantAuto)
	const m = 65535*8 + 5
	a := MatMulArgs{M: m, N: 64, K: 32,
		X: 0x1_0000_0000, XRowStride: 32, XType: tensor.F32,
		W: 0x100_0000, WRowStride: 32, WType: tensor.Q4_0,
		Y: 0x10_0000_0000, YRowStride: 64}
	if err := s.MatMul(nil, a); err != nil {
		t.Fatal(err)
	}
	if len(d.launches) != 2 {
		t.Fatalf("%d launches, want 2", len(d.launches))
	}
	first, second := decodeArgs[matmulParams](t, d.launches[0].args), decodeArgs[matmulParams](t, d.launches[1].args)
	if first.M != 65535*8 || d.launches[0].grid != (cuda.Dim3{X: 1, Y: 65535, Z: 1}) || first.X != 0x1_0000_0000 || first.Y != 0x10_0000_0000 {
		t.Errorf("first piece %+v grid %v", first, d.launches[0].grid)
	}
	if second.M != 5 || d.launches[1].grid != (cuda.Dim3{X: 1, Y: 1, Z: 1}) ||
		second.X != 0x1_0000_0000+65535*8*32*4 || second.Y != 0x10_0000_0000+65535*8*64*4 {
		t.Errorf("second piece %+v grid %v", second, d.launches[1].grid)
	}
}

func TestMatMulEmptyAndZeroK(t *testing.T) {
	s, d := matmulSet(t, ComputeCapability{9, 0}, 132, VariantAuto)
	// m = 0 or n = 0: nothing to do, even with null pointers.
	for _, a := range []MatMulArgs{
		{M: 0, N: 64, K: 32, XType: tensor.F16, WType: tensor.Q4_0, WRowStride: 32, XRowStride: 32, YRowStride: 64},
		{M: 4, N: 0, K: 32, XType: tensor.F16, WType: tensor.Q4_0, WRowStride: 32, XRowStride: 32},
	} {
		if err := s.MatMul(nil, a); err != nil {
			t.Errorf("%+v: %v", a, err)
		}
	}
	if len(d.launches) != 0 {
		t.Errorf("%d launches for empty products", len(d.launches))
	}
	// k = 0: the simple kernel writes the bias; X and W are not needed.
	a := MatMulArgs{M: 4, N: 64, K: 0, XType: tensor.F16, WType: tensor.Q4_K, Y: 0x1000, YRowStride: 64, Bias: 0x9000}
	if err := s.MatMul(nil, a); err != nil {
		t.Fatal(err)
	}
	checkLaunch(t, d.lastLaunch(t), "matmul_q4_k_f16", 1, 256)
}

func TestMatMulBadArguments(t *testing.T) {
	s, d := matmulSet(t, ComputeCapability{9, 0}, 132, VariantAuto)
	good := decodeArgs1()
	tests := []struct {
		name  string
		edit  func(a *MatMulArgs)
		wants []string
	}{
		{"x dtype", func(a *MatMulArgs) { a.XType = tensor.I32 }, []string{"matmul", "x", "I32"}},
		{"w dtype", func(a *MatMulArgs) { a.WType = tensor.I8 }, []string{"w", "I8"}},
		{"negative m", func(a *MatMulArgs) { a.M = -1 }, []string{"m = -1"}},
		{"k not whole blocks", func(a *MatMulArgs) { a.K = 100; a.WRowStride = 128 }, []string{"k = 100", "32"}},
		{"w stride not whole blocks", func(a *MatMulArgs) { a.WRowStride = 4100 }, []string{"w", "row stride 4100"}},
		{"w stride below k", func(a *MatMulArgs) { a.WRowStride = 2048 }, []string{"w", "row stride 2048"}},
		{"x stride below k", func(a *MatMulArgs) { a.M = 2; a.XRowStride = 100 }, []string{"x", "row stride 100"}},
		{"y stride below n", func(a *MatMulArgs) { a.YRowStride = 10 }, []string{"dst", "row stride 10"}},
		{"swiglu with bias", func(a *MatMulArgs) { a.WUp = 0x500_0000 }, []string{"matmul-swiglu", "Bias"}},
		{"null x", func(a *MatMulArgs) { a.X = 0 }, []string{"x", "address is 0"}},
		{"null w", func(a *MatMulArgs) { a.W = 0 }, []string{"w", "address is 0"}},
		{"null y", func(a *MatMulArgs) { a.Y = 0 }, []string{"dst", "address is 0"}},
		{"misaligned x", func(a *MatMulArgs) { a.X = 0x10_0001 }, []string{"x", "aligned to 2"}},
		{"misaligned w", func(a *MatMulArgs) { a.W = 0x100_0001 }, []string{"w", "aligned to 2"}},
		{"misaligned bias", func(a *MatMulArgs) { a.Bias = 0x30_0002 }, []string{"Bias", "aligned to 4"}},
		{"y overlaps x", func(a *MatMulArgs) { a.Y = 0x10_0000 + 4000 }, []string{"dst", "overlap x"}},
		{"y overlaps w", func(a *MatMulArgs) { a.Y = 0x100_0000 }, []string{"dst", "overlap w"}},
		{"y overlaps bias", func(a *MatMulArgs) { a.Y = 0x30_0000 - 64 }, []string{"dst", "overlap Bias"}},
		{"x past the address space", func(a *MatMulArgs) { a.M = 2; a.XRowStride = 1 << 62 }, []string{"x", "do not fit"}},
		{"w past the address space", func(a *MatMulArgs) { a.W = 0xffff_ffff_ffff_0000 }, []string{"w", "do not fit"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := good
			tc.edit(&a)
			wantInvalid(t, s.MatMul(nil, a), tc.wants...)
			wantInvalid(t, s.PrepareMatMul(nil, a), tc.wants...)
			if _, err := s.MatMulChoice(a); !errors.Is(err, op.ErrInvalidArgument) {
				t.Errorf("MatMulChoice: %v", err)
			}
		})
	}
	if len(d.launches) != 0 || len(d.allocs) != 0 {
		t.Errorf("%d launches and allocations %v for invalid arguments", len(d.launches), d.allocs)
	}
}

// TestMatMulDoesNotAllocate: once the module is loaded and the workspace
// exists, a launch allocates no Go memory.
func TestMatMulDoesNotAllocate(t *testing.T) {
	s, d := matmulSet(t, ComputeCapability{9, 0}, 132, VariantAuto)
	prefill := MatMulArgs{M: 512, N: 4096, K: 4096, X: 0x10_0000, XRowStride: 4096, XType: tensor.F16,
		W: 0x1000_0000, WRowStride: 4096, WType: tensor.Q4_K, Y: 0x100_0000_0000, YRowStride: 4096}
	simt := prefill
	simt.XType = tensor.F32
	simt.M = 3
	launches := []MatMulArgs{decodeArgs1(), prefill, simt}
	for _, a := range launches {
		if err := s.MatMul(nil, a); err != nil {
			t.Fatal(err)
		}
	}
	d.countOnly = true
	for i, a := range launches {
		allocs := testing.AllocsPerRun(50, func() {
			if err := s.MatMul(nil, a); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("launch %d: %v allocations per MatMul, want 0", i, allocs)
		}
	}
}
