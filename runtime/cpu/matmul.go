package cpu

import (
	"fmt"
	"sync"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// MatMul computes dst = x·wᵀ (+ opts.Bias): dst [..., n] from x [..., k]
// and w [n, k], w in F32, F16, BF16 or a GGUF block format (Q8_0, Q4_0,
// Q4_K, Q6_K) stored as in the file. See op.CheckMatMul for the layouts.
//
// Arithmetic: x is converted exactly to float32; each output element is a
// float32 sum of products, the bias (F32) is added in float32, and the
// result is rounded once to dst's dtype. The order of the sums is fixed per
// output element and does not depend on the number of threads, but it
// depends on the number of rows m (see matmulPathFor):
//
//   - m ≤ fusedMaxRows, or fusedMaxRowsAsm with the assembly dots (the
//     decode path): the product is fused with the
//     dequantization, per block of w: Q8_0 Σq·x then ·d; Q4_0 Σ(q−8)·x
//     then ·d; Q4_K d·sc·Σq·x − dmin·m·Σx per 32-element sub-block; Q6_K
//     d·sc·Σ(q−32)·x per 16-element sub-block; float weights a plain dot
//     product with four partial sums.
//   - larger m: w is decoded block by block (tensor.DequantizeBlock, ggml's
//     values bit for bit) and multiplied in float32, each element's sum in
//     order over k within chunks of matmulChunkElems, the chunks added in
//     order.
//
// In the Go code, products are rounded to float32 before they are added
// (never fused into a multiply-add), so results are the same on every
// architecture. On amd64 CPUs with AVX2, FMA and F16C both paths run
// assembly instead (useDotAsm; the fused path then up to 16 rows, see
// fusedMaxRowsAsm): the same per-block formulas and chunks, each sum kept
// in 8 lanes of fused multiply-adds in a fixed order, the lanes then added
// in a fixed order, so the results differ from the Go code's by rounding
// only and still do not depend on the number of threads. Every form differs from the exact product by a
// small multiple of 2⁻²⁴·Σₖ|x·w|.
// k = 0 gives the bias (or zeros).
func (b *Backend) MatMul(dst, x, w tensor.Tensor, opts op.MatMulOptions) error {
	s, err := op.CheckMatMul(dst, x, w, opts)
	if err != nil {
		return err
	}
	return b.matmul(op.NameMatMul, dst, x, []tensor.Tensor{w}, opts.Bias, s, matmulPathFor(s.M))
}

// MatMulSwiGLU computes dst = silu(x·wGateᵀ) ⊙ (x·wUpᵀ): both products are
// computed as MatMul computes them (float32 sums, the same order), then
// silu(g)·u is evaluated in float64 (silu(g) = g/(1 + e^−g)) and rounded
// once to dst's dtype. wGate and wUp share one dtype and shape [n, k].
func (b *Backend) MatMulSwiGLU(dst, x, wGate, wUp tensor.Tensor) error {
	s, err := op.CheckMatMulSwiGLU(dst, x, wGate, wUp)
	if err != nil {
		return err
	}
	return b.matmul(op.NameMatMulSwiGLU, dst, x, []tensor.Tensor{wGate, wUp}, tensor.Tensor{}, s, matmulPathFor(s.M))
}

// matmulPath selects how the products are computed.
type matmulPath int

const (
	// pathFused: per-format dot products straight from w's blocks, one
	// output element at a time; the fast path for few rows of x (decode),
	// where the cost is streaming w from memory.
	pathFused matmulPath = iota
	// pathBlocked: w decoded to float32 one chunk of matmulChunkElems at a
	// time for a tile of matmulTileCols columns, the chunk used by every
	// row of x. The obviously correct path, and the fast one for many rows.
	pathBlocked
)

// fusedMaxRows is the largest m for which the fused path runs with the Go
// dots: up to a few rows, decoding w once per row is cheaper than writing
// and re-reading decoded chunks.
const fusedMaxRows = 4

// fusedMaxRowsAsm is the largest m for which the fused path runs with the
// assembly dots (useDotAsm), which decode a block in a few vector
// instructions, once for four rows of x: up to 16 rows they beat the
// blocked path several times over. It is also the most rows fusedColumns
// takes.
const fusedMaxRowsAsm = 16

// matmulPathFor picks the path from m (and whether the assembly dots run),
// so that a result never depends on the number of threads.
func matmulPathFor(m int) matmulPath {
	if m <= fusedMaxRows || (useDotAsm && m <= fusedMaxRowsAsm) {
		return pathFused
	}
	return pathBlocked
}

const (
	// matmulChunkElems is the blocked path's k chunk: a whole number of
	// every format's blocks (32 and 256), 1 KiB of float32 per row.
	matmulChunkElems = 256
	// matmulTileCols is the blocked path's column tile: 16 decoded chunks
	// (16 KiB) stay in L1 while every row of x passes over them.
	matmulTileCols = 16
)

// matmulJob is one matrix product resolved against host memory.
type matmulJob struct {
	m, n, k int
	xs      []float32 // x converted to float32, row i at xs[i*k:(i+1)*k]
	// xSums32 holds, for Q4_K weights on the fused path, the float32 sum of
	// each 32 elements of each row of x (row i at xSums32[i*k/32:]).
	xSums32 []float32
	ws      []weightRows // one, or gate and up for SwiGLU
	bias    []float32    // nil or n values
	dst     view
	dstOff  int // element index of dst's row 0
	dstRow  int // elements between dst's rows
	swiglu  bool
}

// matmul runs MatMul (one weight) or MatMulSwiGLU (two) after the op's checks.
func (b *Backend) matmul(name string, dst, x tensor.Tensor, ws []tensor.Tensor, bias tensor.Tensor, s op.MatMulShape, path matmulPath) error {
	if err := b.begin(name); err != nil {
		return err
	}
	defer b.end()
	args := []opArg{output("dst", dst), input("x", x), input("bias", bias)}
	wNames := []string{"w"}
	if len(ws) == 2 {
		wNames = []string{"wGate", "wUp"}
	}
	for i, w := range ws {
		args = append(args, input(wNames[i], w))
	}
	vs, err := b.resolveAll(name, args...)
	if err != nil {
		return err
	}
	if s.M == 0 || s.N == 0 {
		return nil
	}
	job := &matmulJob{
		m: s.M, n: s.N, k: s.K,
		bias:   paramVector(vs[2], s.N),
		dst:    vs[0],
		dstOff: vs[0].d.Offset,
		dstRow: s.YRowStride,
		swiglu: len(ws) == 2,
	}
	xv := vs[1]
	job.xs = make([]float32, s.M*s.K)
	for i := range s.M {
		xv.loadRow(job.xs[i*s.K:(i+1)*s.K], xv.d.Offset+i*s.XRowStride, 1)
	}
	for i, w := range ws {
		job.ws = append(job.ws, newWeightRows(vs[3+i], w))
	}
	if path == pathFused && ws[0].DType() == tensor.Q4_K {
		job.xSums32 = sums32(job.xs)
	}

	var (
		errMu    sync.Mutex
		firstErr error
	)
	b.parallelFor(s.N, s.M*s.K*len(ws), func(lo, hi int) {
		var err error
		if path == pathFused {
			err = job.fusedColumns(lo, hi)
		} else {
			err = job.blockedColumns(lo, hi)
		}
		if err != nil {
			errMu.Lock()
			firstErr = cmpOr(firstErr, fmt.Errorf("cpu: %s: %w", name, err))
			errMu.Unlock()
		}
	})
	return firstErr
}

// sums32 returns the sum of each 32 consecutive elements of xs (whose length
// is a multiple of 32), each in order.
func sums32(xs []float32) []float32 {
	out := make([]float32, len(xs)/32)
	for g := range out {
		var s float32
		for _, v := range xs[32*g : 32*g+32] {
			s += v
		}
		out[g] = s
	}
	return out
}

// store writes output element (i, j) from its float32 sums: acc for
// MatMul (plus the bias), or g and u for SwiGLU.
func (job *matmulJob) store(i, j int, g, u float32) {
	var y float32
	if job.swiglu {
		y = float32(silu(float64(g)) * float64(u))
	} else {
		y = g
		if job.bias != nil {
			y += job.bias[j]
		}
	}
	e := job.dstOff + i*job.dstRow + j
	switch job.dst.dt {
	case tensor.F32:
		job.dst.f32[e] = y
	case tensor.F16:
		job.dst.u16[e] = tensor.F32ToF16(y)
	case tensor.BF16:
		job.dst.u16[e] = tensor.F32ToBF16(y)
	}
}

// weightRows is a weight matrix [n, k] resolved against its memory.
type weightRows struct {
	dt         tensor.DType
	k          int
	blockElems int
	blockBytes int
	mem        []byte    // the whole buffer
	f32        []float32 // mem as float32 (F32)
	u16        []uint16  // mem as uint16 (F16, BF16)
	offset     int       // element index of w[0, 0]
	rowStride  int       // elements from one row to the next
}

func newWeightRows(v view, w tensor.Tensor) weightRows {
	return weightRows{
		dt:         w.DType(),
		k:          w.Dim(1),
		blockElems: w.DType().BlockElems(),
		blockBytes: w.DType().BlockBytes(),
		mem:        v.mem,
		f32:        v.f32,
		u16:        v.u16,
		offset:     v.d.Offset,
		rowStride:  v.d.Strides[2], // padded to [1, 1, n, k]
	}
}

// rowBlocks returns the storage bytes of elements [k0, k0+count) of row j of
// a block-format matrix (k0 and count whole blocks).
func (w *weightRows) rowBlocks(j, k0, count int) []byte {
	start := (w.offset + j*w.rowStride + k0) / w.blockElems * w.blockBytes
	end := start + count/w.blockElems*w.blockBytes
	return w.mem[start:end:end]
}

// rowF32 returns elements [k0, k0+count) of row j of an F32 matrix, in place.
func (w *weightRows) rowF32(j, k0, count int) []float32 {
	start := w.offset + j*w.rowStride + k0
	return w.f32[start : start+count : start+count]
}

// rowU16 returns elements [k0, k0+count) of row j of an F16 or BF16 matrix.
func (w *weightRows) rowU16(j, k0, count int) []uint16 {
	start := w.offset + j*w.rowStride + k0
	return w.u16[start : start+count : start+count]
}

// decode returns elements [k0, k0+len(scratch)) of row j as float32: in
// place for F32, else decoded into scratch (block formats through
// tensor.DequantizeBlock; k0 and len(scratch) whole blocks).
func (w *weightRows) decode(j, k0 int, scratch []float32, f16 *[1 << 16]float32) ([]float32, error) {
	count := len(scratch)
	switch w.dt {
	case tensor.F32:
		return w.rowF32(j, k0, count), nil
	case tensor.F16:
		for t, h := range w.rowU16(j, k0, count) {
			scratch[t] = f16[h]
		}
		return scratch, nil
	case tensor.BF16:
		for t, h := range w.rowU16(j, k0, count) {
			scratch[t] = tensor.BF16ToF32(h)
		}
		return scratch, nil
	}
	blocks := w.rowBlocks(j, k0, count)
	be, bb := w.blockElems, w.blockBytes
	for blk := 0; blk < count/be; blk++ {
		if err := tensor.DequantizeBlock(w.dt, blocks[blk*bb:], scratch[blk*be:]); err != nil {
			return nil, fmt.Errorf("row %d, elements %d..: %w", j, k0+blk*be, err)
		}
	}
	return scratch, nil
}

// blockedColumns computes output columns [j0, j1) for every row by the
// blocked path: for each tile of matmulTileCols columns and each k chunk,
// the tile's chunks are decoded once and used by every row of x.
func (job *matmulJob) blockedColumns(j0, j1 int) error {
	m, k := job.m, job.k
	nw := len(job.ws)
	f16 := f16Table()
	tile := min(matmulTileCols, j1-j0)
	chunk := min(matmulChunkElems, k)
	// acc[w][i*tile + jj]: the running sums of weight w, row i, column jj.
	acc := make([][]float32, nw)
	for w := range acc {
		acc[w] = make([]float32, m*tile)
	}
	scratch := make([]float32, tile*chunk)
	cols := make([][]float32, tile)
	for jt := j0; jt < j1; jt += tile {
		nt := min(tile, j1-jt)
		for w := range job.ws {
			a := acc[w][:m*nt]
			clear(a)
			for k0 := 0; k0 < k; k0 += chunk {
				kl := min(chunk, k-k0)
				for jj := range nt {
					col, err := job.ws[w].decode(jt+jj, k0, scratch[jj*chunk:jj*chunk+kl], f16)
					if err != nil {
						return err
					}
					cols[jj] = col
				}
				if useDotAsm {
					addChunkProductsAsm(a, job.xs, m, k, k0, kl, cols[:nt])
				} else {
					addChunkProducts(a, job.xs, m, k, k0, kl, cols[:nt])
				}
			}
		}
		for i := range m {
			for jj := range nt {
				var u float32
				if nw == 2 {
					u = acc[1][i*nt+jj]
				}
				job.store(i, jt+jj, acc[0][i*nt+jj], u)
			}
		}
	}
	return nil
}

// addChunkProducts adds to acc[i*len(cols)+jj] the product of x's row i,
// elements [k0, k0+kl), with cols[jj] (kl elements), for every row and
// column. Each product is summed in order over the chunk, starting from 0,
// then added to acc: the same arithmetic in every micro-kernel below, so
// the result does not depend on how rows and columns are grouped.
func addChunkProducts(acc, xs []float32, m, k, k0, kl int, cols [][]float32) {
	nt := len(cols)
	row := func(i int) []float32 { return xs[i*k+k0 : i*k+k0+kl] }
	i := 0
	for ; i+2 <= m; i += 2 {
		x0, x1 := row(i), row(i+1)
		a0, a1 := acc[i*nt:(i+1)*nt], acc[(i+1)*nt:(i+2)*nt]
		jj := 0
		for ; jj+4 <= nt; jj += 4 {
			s00, s01, s02, s03, s10, s11, s12, s13 := dot2x4(x0, x1, cols[jj], cols[jj+1], cols[jj+2], cols[jj+3])
			a0[jj] += s00
			a0[jj+1] += s01
			a0[jj+2] += s02
			a0[jj+3] += s03
			a1[jj] += s10
			a1[jj+1] += s11
			a1[jj+2] += s12
			a1[jj+3] += s13
		}
		for ; jj < nt; jj++ {
			a0[jj] += dot1x1(x0, cols[jj])
			a1[jj] += dot1x1(x1, cols[jj])
		}
	}
	for ; i < m; i++ {
		x0 := row(i)
		a0 := acc[i*nt : (i+1)*nt]
		jj := 0
		for ; jj+4 <= nt; jj += 4 {
			s0, s1, s2, s3 := dot1x4(x0, cols[jj], cols[jj+1], cols[jj+2], cols[jj+3])
			a0[jj] += s0
			a0[jj+1] += s1
			a0[jj+2] += s2
			a0[jj+3] += s3
		}
		for ; jj < nt; jj++ {
			a0[jj] += dot1x1(x0, cols[jj])
		}
	}
}

// dot2x4 returns the in-order sums Σₜ xᵢ[t]·wⱼ[t] for two rows and four
// columns of len(x0) elements. Products are rounded before they are added
// (float32(a*b) forbids the compiler to fuse them into a multiply-add, as it
// would on arm64), so that results are the same on every architecture.
func dot2x4(x0, x1, w0, w1, w2, w3 []float32) (s00, s01, s02, s03, s10, s11, s12, s13 float32) {
	n := len(x0)
	x1, w0, w1, w2, w3 = x1[:n], w0[:n], w1[:n], w2[:n], w3[:n]
	for t, a := range x0 {
		c := x1[t]
		v0, v1, v2, v3 := w0[t], w1[t], w2[t], w3[t]
		s00 += float32(a * v0)
		s01 += float32(a * v1)
		s02 += float32(a * v2)
		s03 += float32(a * v3)
		s10 += float32(c * v0)
		s11 += float32(c * v1)
		s12 += float32(c * v2)
		s13 += float32(c * v3)
	}
	return
}

// dot1x4 is dot2x4 for one row.
func dot1x4(x0, w0, w1, w2, w3 []float32) (s0, s1, s2, s3 float32) {
	n := len(x0)
	w0, w1, w2, w3 = w0[:n], w1[:n], w2[:n], w3[:n]
	for t, a := range x0 {
		s0 += float32(a * w0[t])
		s1 += float32(a * w1[t])
		s2 += float32(a * w2[t])
		s3 += float32(a * w3[t])
	}
	return
}

// dot1x1 is dot2x4 for one row and one column.
func dot1x1(x0, w0 []float32) (s float32) {
	w0 = w0[:len(x0)]
	for t, a := range x0 {
		s += float32(a * w0[t])
	}
	return
}
