package tensor

import (
	"fmt"
	"math"
	"strings"
)

// MaxRank is the largest number of dimensions a tensor may have. Every op and
// every kernel handles up to this many; callers fold larger shapes first.
const MaxRank = 4

// Buffer is storage owned by a backend: host memory for the CPU backend,
// device memory for a GPU backend. A Tensor views a Buffer; several tensors
// may view the same one.
type Buffer interface {
	// SizeBytes is the usable size of the buffer in bytes.
	SizeBytes() int64
}

// Tensor is a typed, strided view of a Buffer.
//
// Dimensions run outermost first (row-major): for a matrix, shape is
// [rows, cols] and the innermost (last) dimension is the one elements are
// adjacent along. Strides and the offset count elements, not bytes. Strides
// are never negative; a stride of 0 repeats an element (a broadcast view) and
// is allowed only for inputs. Block-quantized tensors keep their innermost
// dimension contiguous (stride 1) and whole blocks: the innermost size, the
// other strides and the offset are multiples of the block size.
//
// Shapes have 1 to MaxRank dimensions; a dimension may be 0, which makes the
// tensor empty (ops on empty tensors do nothing).
type Tensor struct {
	dtype   DType
	rank    int
	shape   [MaxRank]int
	strides [MaxRank]int
	offset  int
	buf     Buffer
}

// New returns a contiguous tensor of the given dtype and shape over buf,
// starting at element 0. It fails when the shape is invalid or buf is too small.
func New(buf Buffer, dt DType, shape ...int) (Tensor, error) {
	strides, err := ContiguousStrides(dt, shape)
	if err != nil {
		return Tensor{}, err
	}
	return NewView(buf, dt, 0, shape, strides)
}

// NewView returns a tensor over buf with an explicit layout, checking that the
// layout is valid for dt and lies inside buf.
func NewView(buf Buffer, dt DType, offset int, shape, strides []int) (Tensor, error) {
	if buf == nil {
		return Tensor{}, fmt.Errorf("tensor: nil buffer")
	}
	if !dt.Valid() {
		return Tensor{}, fmt.Errorf("tensor: invalid dtype %v", dt)
	}
	if len(shape) < 1 || len(shape) > MaxRank {
		return Tensor{}, fmt.Errorf("tensor: rank %d of shape %v is outside 1..%d", len(shape), shape, MaxRank)
	}
	if len(strides) != len(shape) {
		return Tensor{}, fmt.Errorf("tensor: %d strides %v for %d dimensions %v", len(strides), strides, len(shape), shape)
	}
	if offset < 0 {
		return Tensor{}, fmt.Errorf("tensor: negative offset %d", offset)
	}
	t := Tensor{dtype: dt, rank: len(shape), offset: offset, buf: buf}
	for i := range shape {
		if shape[i] < 0 {
			return Tensor{}, fmt.Errorf("tensor: negative dimension %d in shape %v", shape[i], shape)
		}
		if strides[i] < 0 {
			return Tensor{}, fmt.Errorf("tensor: negative stride %d in strides %v", strides[i], strides)
		}
		t.shape[i] = shape[i]
		t.strides[i] = strides[i]
	}
	// The element count must fit in an int (a broadcast view can have a
	// small extent and a huge count; NumElems would silently wrap).
	nElems := 1
	for _, d := range shape {
		if d != 0 && nElems > math.MaxInt/d {
			return Tensor{}, fmt.Errorf("tensor: element count of shape %v overflows", shape)
		}
		nElems *= d
	}
	if err := t.checkBlocks(); err != nil {
		return Tensor{}, err
	}
	need, err := t.extentBytes()
	if err != nil {
		return Tensor{}, err
	}
	if have := buf.SizeBytes(); need > have {
		return Tensor{}, fmt.Errorf("tensor: %v %v with strides %v at offset %d needs %d bytes, buffer has %d",
			dt, shape, strides, offset, need, have)
	}
	return t, nil
}

// ContiguousStrides returns row-major strides for shape, checking the shape.
func ContiguousStrides(dt DType, shape []int) ([]int, error) {
	if !dt.Valid() {
		return nil, fmt.Errorf("tensor: invalid dtype %v", dt)
	}
	if len(shape) < 1 || len(shape) > MaxRank {
		return nil, fmt.Errorf("tensor: rank %d of shape %v is outside 1..%d", len(shape), shape, MaxRank)
	}
	strides := make([]int, len(shape))
	s := 1
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] < 0 {
			return nil, fmt.Errorf("tensor: negative dimension %d in shape %v", shape[i], shape)
		}
		strides[i] = s
		next := s * shape[i]
		if shape[i] != 0 && next/shape[i] != s {
			return nil, fmt.Errorf("tensor: shape %v overflows", shape)
		}
		s = next
	}
	return strides, nil
}

// SizeBytes returns the storage size of a contiguous tensor of dt and shape.
func SizeBytes(dt DType, shape ...int) (int64, error) {
	if _, err := ContiguousStrides(dt, shape); err != nil {
		return 0, err
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	if dt.IsQuantized() && len(shape) > 0 && shape[len(shape)-1]%dt.BlockElems() != 0 {
		return 0, fmt.Errorf("tensor: innermost dimension %d of %v %v is not a multiple of the %d-element block",
			shape[len(shape)-1], dt, shape, dt.BlockElems())
	}
	return dt.RowBytes(n)
}

func (t Tensor) checkBlocks() error {
	be := t.dtype.BlockElems()
	if be == 1 {
		return nil
	}
	last := t.rank - 1
	if t.shape[last]%be != 0 {
		return fmt.Errorf("tensor: innermost dimension %d of %v tensor is not a multiple of the %d-element block", t.shape[last], t.dtype, be)
	}
	if t.shape[last] > 1 && t.strides[last] != 1 {
		return fmt.Errorf("tensor: %v tensor must be contiguous along its innermost dimension (stride %d)", t.dtype, t.strides[last])
	}
	if t.offset%be != 0 {
		return fmt.Errorf("tensor: offset %d of %v tensor is not a multiple of the %d-element block", t.offset, t.dtype, be)
	}
	for i := 0; i < last; i++ {
		if t.strides[i]%be != 0 {
			return fmt.Errorf("tensor: stride %d of %v tensor is not a multiple of the %d-element block", t.strides[i], t.dtype, be)
		}
	}
	return nil
}

// extentBytes is the number of bytes from the start of the buffer to the end
// of the last element the view touches (0 for an empty tensor).
func (t Tensor) extentBytes() (int64, error) {
	if t.NumElems() == 0 {
		return 0, nil
	}
	last := int64(t.offset)
	for i := 0; i < t.rank; i++ {
		step := int64(t.shape[i]-1) * int64(t.strides[i])
		if t.strides[i] != 0 && step/int64(t.strides[i]) != int64(t.shape[i]-1) {
			return 0, fmt.Errorf("tensor: layout overflows")
		}
		last += step
		if last < 0 {
			return 0, fmt.Errorf("tensor: layout overflows")
		}
	}
	be, bb := int64(t.dtype.BlockElems()), int64(t.dtype.BlockBytes())
	endBlock := last/be + 1
	if endBlock > math.MaxInt64/bb {
		return 0, fmt.Errorf("tensor: layout overflows")
	}
	return endBlock * bb, nil
}

// DType is the element type.
func (t Tensor) DType() DType { return t.dtype }

// Rank is the number of dimensions (0 for the zero Tensor).
func (t Tensor) Rank() int { return t.rank }

// Shape returns a copy of the dimensions, outermost first.
func (t Tensor) Shape() []int { return append([]int(nil), t.shape[:t.rank]...) }

// Strides returns a copy of the strides in elements.
func (t Tensor) Strides() []int { return append([]int(nil), t.strides[:t.rank]...) }

// Dim returns dimension i; negative i counts from the end (-1 is innermost).
func (t Tensor) Dim(i int) int {
	if i < 0 {
		i += t.rank
	}
	return t.shape[i]
}

// Stride returns the stride of dimension i in elements; negative i counts from the end.
func (t Tensor) Stride(i int) int {
	if i < 0 {
		i += t.rank
	}
	return t.strides[i]
}

// Offset is the element index of the first element within the buffer.
func (t Tensor) Offset() int { return t.offset }

// ByteOffset is the byte position of the first element within the buffer.
func (t Tensor) ByteOffset() int64 {
	be := t.dtype.BlockElems()
	if be == 0 {
		return 0
	}
	return int64(t.offset/be) * int64(t.dtype.BlockBytes())
}

// Buffer is the storage this tensor views (nil for the zero Tensor).
func (t Tensor) Buffer() Buffer { return t.buf }

// IsZero reports whether t is the zero Tensor (no buffer): how optional
// tensor arguments are left out.
func (t Tensor) IsZero() bool { return t.buf == nil }

// NumElems is the number of elements (the product of the shape).
func (t Tensor) NumElems() int {
	if t.rank == 0 {
		return 0
	}
	n := 1
	for i := 0; i < t.rank; i++ {
		n *= t.shape[i]
	}
	return n
}

// SizeBytes is the storage size of NumElems elements of this dtype (the
// bytes a contiguous copy of the tensor occupies).
func (t Tensor) SizeBytes() int64 {
	n, err := t.dtype.RowBytes(t.NumElems())
	if err != nil {
		return 0
	}
	return n
}

// Rows is the number of innermost rows: NumElems / Dim(-1) (0 when empty).
func (t Tensor) Rows() int {
	if t.rank == 0 || t.shape[t.rank-1] == 0 {
		return 0
	}
	return t.NumElems() / t.shape[t.rank-1]
}

// IsContiguous reports whether the elements are densely packed in row-major
// order (dimensions of size 1 may have any stride).
func (t Tensor) IsContiguous() bool {
	s := 1
	for i := t.rank - 1; i >= 0; i-- {
		if t.shape[i] != 1 && t.strides[i] != s {
			return false
		}
		s *= t.shape[i]
	}
	return true
}

// InnerContiguous reports whether the innermost dimension has stride 1 (or size 1).
func (t Tensor) InnerContiguous() bool {
	return t.rank > 0 && (t.shape[t.rank-1] <= 1 || t.strides[t.rank-1] == 1)
}

// HasOverlap reports whether two different indices may address the same
// element: some dimension longer than 1 has stride 0, or strides that
// interleave. Outputs must not overlap.
func (t Tensor) HasOverlap() bool {
	// Sort dimensions by stride (insertion sort, at most 4) and check that each
	// stride is at least the extent of the dimensions inside it.
	type ds struct{ size, stride int }
	var dims [MaxRank]ds
	n := 0
	for i := 0; i < t.rank; i++ {
		if t.shape[i] > 1 {
			dims[n] = ds{t.shape[i], t.strides[i]}
			n++
		}
	}
	for i := 1; i < n; i++ {
		for j := i; j > 0 && dims[j].stride < dims[j-1].stride; j-- {
			dims[j], dims[j-1] = dims[j-1], dims[j]
		}
	}
	extent := 1
	for i := 0; i < n; i++ {
		if dims[i].stride < extent {
			return true
		}
		extent = dims[i].stride * dims[i].size
	}
	return false
}

// View returns a tensor over the same buffer with the given layout, relative
// to nothing: offset is absolute within the buffer.
func (t Tensor) View(offset int, shape, strides []int) (Tensor, error) {
	return NewView(t.buf, t.dtype, offset, shape, strides)
}

// Slice keeps indices [start, end) of dimension dim (negative dim counts from the end).
func (t Tensor) Slice(dim, start, end int) (Tensor, error) {
	if dim < 0 {
		dim += t.rank
	}
	if dim < 0 || dim >= t.rank {
		return Tensor{}, fmt.Errorf("tensor: slice dimension %d out of range for rank %d", dim, t.rank)
	}
	if start < 0 || end < start || end > t.shape[dim] {
		return Tensor{}, fmt.Errorf("tensor: slice [%d, %d) out of range for dimension %d of size %d", start, end, dim, t.shape[dim])
	}
	shape, strides := t.Shape(), t.Strides()
	shape[dim] = end - start
	return NewView(t.buf, t.dtype, t.offset+start*t.strides[dim], shape, strides)
}

// Transpose swaps dimensions a and b (negative values count from the end).
func (t Tensor) Transpose(a, b int) (Tensor, error) {
	if a < 0 {
		a += t.rank
	}
	if b < 0 {
		b += t.rank
	}
	if a < 0 || a >= t.rank || b < 0 || b >= t.rank {
		return Tensor{}, fmt.Errorf("tensor: transpose of dimensions %d and %d out of range for rank %d", a, b, t.rank)
	}
	shape, strides := t.Shape(), t.Strides()
	shape[a], shape[b] = shape[b], shape[a]
	strides[a], strides[b] = strides[b], strides[a]
	return NewView(t.buf, t.dtype, t.offset, shape, strides)
}

// Reshape returns a contiguous view with a new shape of the same number of
// elements. The tensor must be contiguous.
func (t Tensor) Reshape(shape ...int) (Tensor, error) {
	if !t.IsContiguous() {
		return Tensor{}, fmt.Errorf("tensor: reshape of a non-contiguous %v tensor %v (strides %v)", t.dtype, t.Shape(), t.Strides())
	}
	strides, err := ContiguousStrides(t.dtype, shape)
	if err != nil {
		return Tensor{}, err
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	if n != t.NumElems() {
		return Tensor{}, fmt.Errorf("tensor: reshape of %v (%d elements) to %v (%d elements)", t.Shape(), t.NumElems(), shape, n)
	}
	return NewView(t.buf, t.dtype, t.offset, shape, strides)
}

// Expand returns a broadcast view: dimensions of size 1 are stretched to the
// sizes in shape with stride 0. shape must have the same rank.
func (t Tensor) Expand(shape ...int) (Tensor, error) {
	if len(shape) != t.rank {
		return Tensor{}, fmt.Errorf("tensor: expand of rank-%d tensor %v to rank-%d shape %v", t.rank, t.Shape(), len(shape), shape)
	}
	strides := t.Strides()
	for i, d := range shape {
		switch {
		case d == t.shape[i]:
		case t.shape[i] == 1:
			strides[i] = 0
		default:
			return Tensor{}, fmt.Errorf("tensor: cannot expand dimension %d of size %d to %d", i, t.shape[i], d)
		}
	}
	return NewView(t.buf, t.dtype, t.offset, shape, strides)
}

// SameShape reports whether a and b have identical shapes.
func SameShape(a, b Tensor) bool {
	return a.rank == b.rank && a.shape == b.shape
}

// String describes the layout, for example "F16[2 3]{3 1}+0".
func (t Tensor) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v%v", t.dtype, t.shape[:t.rank])
	if !t.IsContiguous() || t.offset != 0 {
		fmt.Fprintf(&b, "{%v}+%d", t.strides[:t.rank], t.offset)
	}
	return b.String()
}
