package kernels

import (
	"math"
	"testing"

	"github.com/kiln-gpu/kiln/cuda"
)

func TestGridFor(t *testing.T) {
	tests := []struct {
		nItems, perBlock int64
		want             uint32
	}{
		{0, 256, 1},
		{1, 256, 1},
		{256, 256, 1},
		{257, 256, 2},
		{65536 * 256, 256, 65536},
		{65536*256 + 1, 256, 65536}, // capped: the grid-stride loop does the rest
		{1 << 40, 256, 65536},
		{math.MaxInt64, 1, 65536}, // no overflow in the rounding
		{24, 8, 3},
	}
	for _, tc := range tests {
		if got := gridFor(tc.nItems, tc.perBlock); got != tc.want {
			t.Errorf("gridFor(%d, %d) = %d, want %d", tc.nItems, tc.perBlock, got, tc.want)
		}
	}
}

func TestThreadsFor(t *testing.T) {
	tests := []struct {
		n     int64
		limit int
		want  uint32
	}{
		{0, 1024, 32},
		{1, 1024, 32},
		{32, 1024, 32},
		{33, 1024, 64},
		{100, 1024, 128},
		{1024, 1024, 1024},
		{5000, 1024, 1024},
		{math.MaxInt64, 1024, 1024},
		{300, 256, 256},
	}
	for _, tc := range tests {
		if got := threadsFor(tc.n, tc.limit); got != tc.want {
			t.Errorf("threadsFor(%d, %d) = %d, want %d", tc.n, tc.limit, got, tc.want)
		}
	}
}

func TestLaunchConfigs(t *testing.T) {
	tests := []struct {
		name        string
		got         launchConfig
		grid, block uint32
	}{
		{"elementwise 1", elementwiseConfig(1), 1, 256},
		{"elementwise 1000", elementwiseConfig(1000), 4, 256},
		{"elementwise 2^40", elementwiseConfig(1 << 40), 65536, 256},
		{"elementwise MaxInt64", elementwiseConfig(math.MaxInt64), 65536, 256},
		{"vec 10 f32", vecConfig(10, 4), 1, 256},
		{"vec 4096 f16", vecConfig(4096, 8), 2, 256},
		{"vec 2^33 f16", vecConfig(1<<33, 8), 65536, 256},
		{"rows simple 5×100", rowsConfig(KindSimple, 5, 100), 5, 128},
		{"rows simple 1×1", rowsConfig(KindSimple, 1, 1), 1, 32},
		{"rows simple 2^40 rows", rowsConfig(KindSimple, 1<<40, 4096), 65536, 1024},
		{"rows warp 24 rows", rowsConfig(KindWarp, 24, 100), 3, 256},
		{"rows warp 2^40 rows", rowsConfig(KindWarp, 1<<40, 10), 65536, 256},
		{"rope 5 tokens 4 heads 16 pairs", ropeConfig(5, 4, 16), 5, 64},
		{"rope 64 heads 64 pairs", ropeConfig(1, 64, 64), 1, 256},
		{"rope 1 head 1 pair", ropeConfig(3, 1, 1), 3, 32},
		{"rope 2^31 tokens", ropeConfig(1<<31, 32, 64), 65536, 256},
		{"embedding 6 ids × 512", embeddingConfig(6, 512), 6, 256},
		{"embedding 1 id × 10", embeddingConfig(1, 10), 1, 32},
		{"embedding 2^33 ids", embeddingConfig(1<<33, 4096), 65536, 256},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.got
			if c.grid.X != tc.grid || c.block.X != tc.block {
				t.Errorf("grid %d block %d, want grid %d block %d", c.grid.X, c.block.X, tc.grid, tc.block)
			}
			checkHardwareLimits(t, c)
		})
	}
}

// checkHardwareLimits: what every GPU since compute capability 3.0 accepts,
// and what the kernels' reductions need (whole warps).
func checkHardwareLimits(t *testing.T, c launchConfig) {
	t.Helper()
	if c.grid.X < 1 || c.grid.X > maxGridX || c.grid.Y < 1 || c.grid.Y > maxGridYZ || c.grid.Z < 1 || c.grid.Z > maxGridYZ {
		t.Errorf("grid %v outside the hardware limits", c.grid)
	}
	if c.block.X < 32 || c.block.X > 1024 || c.block.X%32 != 0 || c.block.Y != 1 || c.block.Z != 1 {
		t.Errorf("block %v: want whole warps, at most 1024 threads, one-dimensional", c.block)
	}
	if c.sharedBytes < 0 || c.sharedBytes > 48*1024 {
		t.Errorf("%d dynamic shared bytes", c.sharedBytes)
	}
}

func TestChooseRowsVariant(t *testing.T) {
	tests := []struct {
		sel    Variant
		rowLen int64
		want   Kind
	}{
		{VariantAuto, 1, KindWarp},
		{VariantAuto, 512, KindWarp},
		{VariantAuto, 513, KindSimple},
		{VariantAuto, 128256, KindSimple},
		{VariantSimple, 64, KindSimple},
	}
	for _, tc := range tests {
		for _, f := range []Family{FamilySoftmax, FamilyNorm} {
			if got := chooseRowsVariant(tc.sel, f, tc.rowLen); got != tc.want {
				t.Errorf("chooseRowsVariant(%v, %s, %d) = %s, want %s", tc.sel, f, tc.rowLen, got, tc.want)
			}
		}
	}
}

func TestChooseElementwiseVariant(t *testing.T) {
	f32 := func(ptr uint64, n int) Operand { return f32Operand(ptr, n) }
	tests := []struct {
		name     string
		sel      Variant
		operands []Operand
		want     Kind
	}{
		{"aligned contiguous", VariantAuto, []Operand{f32(0x1000, 100), f32(0x2000, 100)}, KindVec},
		{"forced simple", VariantSimple, []Operand{f32(0x1000, 100), f32(0x2000, 100)}, KindSimple},
		{"one misaligned", VariantAuto, []Operand{f32(0x1000, 100), f32(0x2004, 100)}, KindSimple},
		{"broadcast", VariantAuto, []Operand{f32Operand(0x1000, 4, 8), {Ptr: 0x2000, DType: 1, Shape: [4]int{1, 1, 4, 8}, Strides: [4]int{0, 0, 0, 1}}}, KindSimple},
		{"size-1 dims with odd strides are still contiguous", VariantAuto, []Operand{f32Operand(0x1000, 4, 8), {Ptr: 0x2000, DType: 1, Shape: [4]int{1, 1, 4, 8}, Strides: [4]int{7, 99, 8, 1}}}, KindVec},
	}
	for _, tc := range tests {
		if got := chooseElementwiseVariant(tc.sel, FamilyBinary, tc.operands); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestVecWidthAndCeilDiv(t *testing.T) {
	if vecWidth(4) != 4 || vecWidth(2) != 8 || vecWidth(4, 2) != 4 || vecWidth(2, 2) != 8 {
		t.Error("vecWidth: 16-byte vectors of the widest type")
	}
	if ceilDiv(math.MaxInt64, 2) != math.MaxInt64/2+1 || ceilDiv(10, 5) != 2 || ceilDiv(11, 5) != 3 || ceilDiv(0, 5) != 0 {
		t.Error("ceilDiv")
	}
	if d := cuda.D1(int(gridFor(1<<50, 1))); d.Y != 1 || d.Z != 1 {
		t.Error("one-dimensional grids")
	}
}
