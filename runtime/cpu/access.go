package cpu

import (
	"sync"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Row access. Ops work on runs of elements ("rows": n elements starting at
// element index off, stride elements apart) converted to float32. An F32 run
// with stride 1 is used in place; anything else is decoded into scratch
// memory and, for outputs, encoded back with round-to-nearest-even.

// row returns the n elements at off, stride apart, as float32: the buffer
// itself when that is possible (F32, stride 1), else a decoded copy in
// scratch (which must hold n elements). A stride of 0 repeats one element.
func (v *view) row(off, n, stride int, scratch []float32) []float32 {
	if v.dt == tensor.F32 && (stride == 1 || n == 1) {
		return v.f32[off : off+n : off+n]
	}
	dst := scratch[:n]
	v.loadRow(dst, off, stride)
	return dst
}

// loadRow decodes len(dst) elements at off, stride apart, into dst.
func (v *view) loadRow(dst []float32, off, stride int) {
	switch v.dt {
	case tensor.F32:
		if stride == 1 {
			copy(dst, v.f32[off:off+len(dst)])
			return
		}
		for i := range dst {
			dst[i] = v.f32[off+i*stride]
		}
	case tensor.F16:
		table := f16Table()
		for i := range dst {
			dst[i] = table[v.u16[off+i*stride]]
		}
	case tensor.BF16:
		for i := range dst {
			dst[i] = tensor.BF16ToF32(v.u16[off+i*stride])
		}
	}
}

// outRow returns where to compute n output elements at off, stride apart: the
// buffer itself when v is F32 with stride 1 (direct is true, nothing more to
// do), else scratch, which the caller then writes back with storeRow.
func (v *view) outRow(off, n, stride int, scratch []float32) (row []float32, direct bool) {
	if v.dt == tensor.F32 && (stride == 1 || n == 1) {
		return v.f32[off : off+n : off+n], true
	}
	return scratch[:n], false
}

// storeRow encodes src into len(src) elements at off, stride apart,
// rounding to nearest even for F16 and BF16.
func (v *view) storeRow(off, stride int, src []float32) {
	switch v.dt {
	case tensor.F32:
		if stride == 1 {
			copy(v.f32[off:off+len(src)], src)
			return
		}
		for i, x := range src {
			v.f32[off+i*stride] = x
		}
	case tensor.F16:
		for i, x := range src {
			v.u16[off+i*stride] = tensor.F32ToF16(x)
		}
	case tensor.BF16:
		for i, x := range src {
			v.u16[off+i*stride] = tensor.F32ToBF16(x)
		}
	}
}

// finishRow writes an output row computed into scratch back to the buffer;
// it does nothing for a row computed in place.
func (v *view) finishRow(off, stride int, row []float32, direct bool) {
	if !direct {
		v.storeRow(off, stride, row)
	}
}

// rowOffset is the element index of the first element of row (i0, i1, i2)
// of a padded layout.
func (v *view) rowOffset(i0, i1, i2 int) int {
	return v.d.Offset + i0*v.d.Strides[0] + i1*v.d.Strides[1] + i2*v.d.Strides[2]
}

// rowIndex splits a row number of a padded shape into its three outer indices.
func rowIndex(shape [tensor.MaxRank]int, r int) (i0, i1, i2 int) {
	i2 = r % shape[2]
	r /= shape[2]
	i1 = r % shape[1]
	i0 = r / shape[1]
	return i0, i1, i2
}

// numRows is the number of innermost rows of a padded shape.
func numRows(shape [tensor.MaxRank]int) int { return shape[0] * shape[1] * shape[2] }

// parallelFor runs fn over [0, n) split into contiguous ranges, one per
// worker goroutine, and returns when all are done. workPerItem estimates the
// cost of one item in element operations; when n·workPerItem is below the
// backend's threshold, fn(0, n) runs on the calling goroutine.
func (b *Backend) parallelFor(n, workPerItem int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	workers := min(b.threads, n)
	if workPerItem < 1 {
		workPerItem = 1
	}
	if workers <= 1 || n*workPerItem < b.minParallelWork {
		fn(0, n)
		return
	}
	chunk := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Go(func() { fn(lo, hi) })
	}
	wg.Wait()
}

// f16Table returns the float32 value of every F16 bit pattern, built once
// from tensor.F16ToF32 (so exactly its values): a table lookup is several
// times faster than decoding the bits, and 256 KiB stays in cache.
var f16Table = sync.OnceValue(func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for h := range t {
		t[h] = tensor.F16ToF32(uint16(h))
	}
	return &t
})
