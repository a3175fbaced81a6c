// rows.cuh — the row iteration shared by the row ops (softmax, rmsnorm,
// layernorm, argmax): a row is the contiguous innermost dimension; up to three
// outer dimensions with any strides number the rows.
//
// Two ways to spread rows over threads:
//   block per row: block b handles rows b, b + gridDim.x, ...; all threads of
//                  the block work on one row (BlockGroup reductions).
//   warp per row:  warp w of block b handles rows (b·warps + w), then steps by
//                  gridDim.x·warps (WarpGroup reductions); for short rows.
#pragma once

#include "common.cuh"

namespace kiln {

// Row addresses the elements of one row in x and dst.
template <typename TX, typename TD> struct Row {
	const TX* x;
	TD* dst;
	int64_t coord[3];  // coordinates of the row in the three outer dimensions
};

template <typename TX, typename TD>
__device__ __forceinline__ Row<TX, TD> row_at(const KilnRowsParams& p, int64_t row) {
	Row<TX, TD> r;
	unflatten3(row, p.outer, r.coord);
	r.x = reinterpret_cast<const TX*>(p.x) + offset3(r.coord, p.x_strides);
	r.dst = reinterpret_cast<TD*>(p.dst) + offset3(r.coord, p.dst_strides);
	return r;
}

// First row and row step of this block (block per row).
__device__ __forceinline__ int64_t block_first_row() { return blockIdx.x; }
__device__ __forceinline__ int64_t block_row_step() { return gridDim.x; }

// First row and row step of this warp (warp per row).
__device__ __forceinline__ int64_t warp_first_row() {
	return (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
}
__device__ __forceinline__ int64_t warp_row_step() { return (int64_t)gridDim.x * (blockDim.x >> 5); }

}  // namespace kiln
