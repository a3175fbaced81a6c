package kernels

import "github.com/kiln-gpu/kiln/cuda"

// Launch-configuration heuristics: pure functions of sizes, so that tables of
// cases test them (grid_test.go). Every kernel loops grid-stride over its
// work (elements, rows, ids), so a grid smaller than the work is always
// correct; grids are capped well inside the hardware limits.

// Hardware limits on grid dimensions (all GPUs since compute capability 3.0).
const (
	maxGridX  = 1<<31 - 1
	maxGridYZ = 65535
)

const (
	// maxBlocks caps grid-stride grids: 65536 blocks of 256 threads are 16M
	// threads, many times what the largest GPU (132 SMs × 2048) holds at
	// once; the loops cover the rest.
	maxBlocks = 1 << 16
	// elementwiseThreads is the block size of elementwise kernels (their
	// __launch_bounds__ is 256).
	elementwiseThreads = 256
	// vecBytes is the access width of the _vec kernels.
	vecBytes = 16
	// maxRowThreads is the largest block of the block-per-row kernels
	// (__launch_bounds__(1024)).
	maxRowThreads = 1024
	// warpRowThreads is the block size of the warp-per-row kernels: 8 rows
	// per block (__launch_bounds__(256)).
	warpRowThreads = 256
	// warpRowMaxLen is the longest row the warp-per-row variants take: at
	// most 16 elements per lane. Unmeasured: revisit with GPU timings.
	warpRowMaxLen = 512
	// ropeThreads, embeddingThreads, probeThreads: block sizes (each
	// kernel's __launch_bounds__ is 256).
	ropeThreads      = 256
	embeddingThreads = 256
	probeThreads     = 256
	// ropeChunk is kRoPEChunk in rope.cu: angles a block holds at once.
	ropeChunk = 256
)

// launchConfig is a grid, a block and the dynamic shared memory of a launch.
type launchConfig struct {
	grid, block cuda.Dim3
	sharedBytes int
}

// ceilDiv is ⌈n/d⌉ for n ≥ 0, d > 0, without overflow.
func ceilDiv(n, d int64) int64 {
	q := n / d
	if n%d != 0 {
		q++
	}
	return q
}

// gridFor is the number of blocks for nItems items at itemsPerBlock each,
// at least 1 and at most maxBlocks.
func gridFor(nItems, itemsPerBlock int64) uint32 {
	if nItems <= 0 {
		return 1
	}
	return uint32(min(ceilDiv(nItems, itemsPerBlock), maxBlocks))
}

// threadsFor rounds n up to whole warps, within [32, limit].
func threadsFor(n int64, limit int) uint32 {
	if n <= 32 {
		return 32
	}
	if n >= int64(limit) {
		return uint32(limit)
	}
	return uint32(ceilDiv(n, 32) * 32)
}

// elementwiseConfig launches a simple elementwise kernel over n elements.
func elementwiseConfig(n int64) launchConfig {
	return launchConfig{grid: cuda.D1(int(gridFor(n, elementwiseThreads))), block: cuda.D1(elementwiseThreads)}
}

// vecConfig launches a _vec kernel over n elements taken width at a time.
func vecConfig(n int64, width int) launchConfig {
	return elementwiseConfig(ceilDiv(n, int64(width)))
}

// vecWidth is the elements per 16-byte vector of the widest of the element sizes.
func vecWidth(elemBytes ...int) int {
	widest := 1
	for _, b := range elemBytes {
		widest = max(widest, b)
	}
	return vecBytes / widest
}

// chooseRowsVariant picks block-per-row or warp-per-row.
func chooseRowsVariant(sel Variant, f Family, rowLen int64) Kind {
	if rowLen <= warpRowMaxLen && fastAllowed(sel, f, KindWarp) {
		return KindWarp
	}
	return KindSimple
}

// rowsConfig launches a row kernel of variant v over nRows rows of rowLen.
func rowsConfig(v Kind, nRows, rowLen int64) launchConfig {
	if v == KindWarp {
		return launchConfig{grid: cuda.D1(int(gridFor(nRows, warpRowThreads/32))), block: cuda.D1(warpRowThreads)}
	}
	return launchConfig{grid: cuda.D1(int(gridFor(nRows, 1))), block: cuda.D1(int(threadsFor(rowLen, maxRowThreads)))}
}

// ropeConfig launches rope over nRows = batch·nTokens tokens: one block per
// token, enough threads for one chunk of pairs across all heads.
func ropeConfig(nRows, nHeads, halfDims int64) launchConfig {
	work := nHeads * min(halfDims, ropeChunk)
	return launchConfig{grid: cuda.D1(int(gridFor(nRows, 1))), block: cuda.D1(int(threadsFor(work, ropeThreads)))}
}

// embeddingConfig launches the embedding gather: one block per id.
func embeddingConfig(nIDs, dim int64) launchConfig {
	return launchConfig{grid: cuda.D1(int(gridFor(nIDs, 1))), block: cuda.D1(int(threadsFor(dim, embeddingThreads)))}
}
