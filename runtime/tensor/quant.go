package tensor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Block sizes of the GGUF block formats, as ggml's ggml-common.h lays them
// out. Elements per block are also given by DType.BlockElems, bytes per block
// by DType.BlockBytes; these constants are for code that indexes into blocks.
const (
	// BlockBytesQ8_0 is sizeof(block_q8_0): f16 d, then int8 qs[32].
	BlockBytesQ8_0 = 34
	// BlockBytesQ4_0 is sizeof(block_q4_0): f16 d, then uint8 qs[16], two
	// 4-bit quants per byte (low nibble = element j, high nibble = element j+16).
	BlockBytesQ4_0 = 18
	// BlockBytesQ4_K is sizeof(block_q4_K): f16 d, f16 dmin, uint8
	// scales[12] (eight 6-bit scales and eight 6-bit mins, packed), uint8 qs[128].
	BlockBytesQ4_K = 144
	// BlockBytesQ6_K is sizeof(block_q6_K): uint8 ql[128] (low 4 bits),
	// uint8 qh[64] (high 2 bits), int8 scales[16], f16 d.
	BlockBytesQ6_K = 210
	// QK8_0 is the number of elements in a Q8_0 or Q4_0 block.
	QK8_0 = 32
)

// Largest input magnitudes the quantizers accept: the largest magnitude each
// format can represent, with its f16 block scale at the f16 maximum 65504.
// An input beyond these would need an infinite scale (ggml then writes one,
// or for the K-quants can silently zero a sub-block through NaN arithmetic),
// so Quantize refuses it. An input within them can still be refused when its
// block as a whole needs a scale beyond f16: a Q8_0/Q4_0 block at the very
// limit whose scale rounds up, a K-quant block whose scale search settles a
// little above the limit, or a Q4_K block with negative values below
// -65504*63 (Q4_K holds negative values through its min, dmin*m, m <= 63).
const (
	// MaxAbsQ8_0 is 65504 * 127: d = amax/127 must fit in f16.
	MaxAbsQ8_0 = 65504 * 127
	// MaxAbsQ4_0 is 65504 * 8: d = max/-8 must fit in f16.
	MaxAbsQ4_0 = 65504 * 8
	// MaxAbsQ4_K is 65504 * 63 * 15: d * 6-bit scale * 4-bit quant, the
	// largest positive value (the largest negative one is 65504 * 63).
	MaxAbsQ4_K = 65504 * 63 * 15
	// MaxAbsQ6_K is 65504 * 128 * 32: d * 8-bit scale * 6-bit quant.
	MaxAbsQ6_K = 65504 * 128 * 32
)

// ErrNotRepresentable is matched (errors.Is) by the error Quantize returns
// for an input the target format cannot hold: NaN, ±Inf, or a magnitude
// beyond the format's range (MaxAbsQ8_0, ...).
var ErrNotRepresentable = errors.New("value not representable")

// ErrUnsupportedDType is matched (errors.Is) by the error Quantize,
// Dequantize and DequantizeBlock return for a dtype they do not convert.
var ErrUnsupportedDType = errors.New("unsupported dtype")

// Quantize converts src to the storage bytes of dt and returns them in a new
// slice. See QuantizeInto for the rules.
func Quantize(dt DType, src []float32) ([]byte, error) {
	n, err := quantizedSize(dt, len(src))
	if err != nil {
		return nil, err
	}
	dst := make([]byte, n)
	if err := quantizeInto(dt, dst, src); err != nil {
		return nil, err
	}
	return dst, nil
}

// QuantizeInto converts src to the storage bytes of dt, written to dst, which
// must be exactly dt.RowBytes(len(src)) long.
//
// dt is F32, F16, BF16 (rounded to nearest even) or one of the block formats
// Q8_0, Q4_0, Q4_K, Q6_K. For a block format len(src) must be a whole number
// of blocks, and the bytes are those of ggml's reference quantizers
// (quantize_row_q8_0_ref, quantize_row_q4_0_ref, quantize_row_q4_K_ref,
// quantize_row_q6_K_ref: what llama-quantize writes without an importance
// matrix), bit for bit, as computed without fused multiply-add (ggml built for
// baseline x86-64; a ggml build that contracts a*b+c into FMA, as GCC does by
// default on arm64, can differ in the last bit of a search and so pick other
// K-quant scales).
//
// Block formats cannot hold NaN or ±Inf, nor magnitudes beyond MaxAbsQ8_0,
// MaxAbsQ4_0, MaxAbsQ4_K or MaxAbsQ6_K: such an input gives an error that
// matches ErrNotRepresentable and names the first offending element's index.
// A block whose elements are all in range but which needs a scale beyond f16
// (see MaxAbsQ8_0) gives such an error naming the block. (ggml checks
// neither; it writes an infinite or garbage scale.) On error the contents of
// dst are unspecified.
func QuantizeInto(dt DType, dst []byte, src []float32) error {
	n, err := quantizedSize(dt, len(src))
	if err != nil {
		return err
	}
	if int64(len(dst)) != n {
		return fmt.Errorf("tensor: quantize %d elements to %v: destination has %d bytes, need %d", len(src), dt, len(dst), n)
	}
	return quantizeInto(dt, dst, src)
}

// quantizedSize checks that dt can be quantized to and returns the byte size
// of nElems elements.
func quantizedSize(dt DType, nElems int) (int64, error) {
	switch dt {
	case F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K:
	default:
		return 0, fmt.Errorf("tensor: quantize to %v: %w (want F32, F16, BF16, Q8_0, Q4_0, Q4_K or Q6_K)", dt, ErrUnsupportedDType)
	}
	n, err := dt.RowBytes(nElems)
	if err != nil {
		return 0, fmt.Errorf("tensor: quantize to %v: %w", dt, err)
	}
	return n, nil
}

func quantizeInto(dt DType, dst []byte, src []float32) error {
	switch dt {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
		return nil
	case F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(v))
		}
		return nil
	case BF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(v))
		}
		return nil
	}
	if err := checkRepresentable(dt, src); err != nil {
		return err
	}
	be, bb := dt.BlockElems(), dt.BlockBytes()
	for b := 0; b < len(src)/be; b++ {
		block := dst[b*bb : (b+1)*bb]
		x := src[b*be : (b+1)*be]
		var ok bool
		switch dt {
		case Q8_0:
			ok = quantizeBlockQ8_0(block, x)
		case Q4_0:
			ok = quantizeBlockQ4_0(block, x)
		case Q4_K:
			ok = quantizeBlockQ4_K(block, x)
		case Q6_K:
			ok = quantizeBlockQ6_K(block, x)
		}
		if !ok {
			// Every element is within range, but the block as a whole
			// needs a scale beyond f16 (see MaxAbsQ8_0).
			return fmt.Errorf("tensor: quantize to %v: block %d (elements %d..%d): scale overflows f16: %w",
				dt, b, b*be, (b+1)*be-1, ErrNotRepresentable)
		}
	}
	return nil
}

// checkRepresentable reports the first element of src that a block format
// cannot hold.
func checkRepresentable(dt DType, src []float32) error {
	var limit float32
	switch dt {
	case Q8_0:
		limit = MaxAbsQ8_0
	case Q4_0:
		limit = MaxAbsQ4_0
	case Q4_K:
		limit = MaxAbsQ4_K
	case Q6_K:
		limit = MaxAbsQ6_K
	}
	for i, v := range src {
		// !(|v| <= limit) also catches NaN.
		if !(abs32(v) <= limit) {
			return fmt.Errorf("tensor: quantize to %v: element %d is %v, outside the format's range ±%v: %w",
				dt, i, v, limit, ErrNotRepresentable)
		}
	}
	return nil
}

// Dequantize converts len(dst) elements stored as dt in src to float32. dt may
// be any valid dtype: F32, F16 and BF16 convert exactly, I8 and I32 convert
// as Go's float32(int) does (exact for I32 magnitudes up to 2^24), and the
// block formats decode as ggml's dequantize_row_* do, bit for bit.
// len(dst) must be a whole number of blocks and src exactly
// dt.RowBytes(len(dst)) long.
func Dequantize(dt DType, src []byte, dst []float32) error {
	if !dt.Valid() {
		return fmt.Errorf("tensor: dequantize: invalid dtype %v: %w", dt, ErrUnsupportedDType)
	}
	need, err := dt.RowBytes(len(dst))
	if err != nil {
		return fmt.Errorf("tensor: dequantize to %d floats: %w", len(dst), err)
	}
	if int64(len(src)) != need {
		return fmt.Errorf("tensor: dequantize %d elements of %v: source has %d bytes, need %d", len(dst), dt, len(src), need)
	}
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case I32:
		for i := range dst {
			dst[i] = float32(int32(binary.LittleEndian.Uint32(src[4*i:])))
		}
	case I8:
		for i := range dst {
			dst[i] = float32(int8(src[i]))
		}
	case Q8_0, Q4_0, Q4_K, Q6_K:
		be, bb := dt.BlockElems(), dt.BlockBytes()
		for b := 0; b < len(dst)/be; b++ {
			block := src[b*bb : (b+1)*bb]
			out := dst[b*be : (b+1)*be]
			switch dt {
			case Q8_0:
				dequantizeBlockQ8_0(block, out)
			case Q4_0:
				dequantizeBlockQ4_0(block, out)
			case Q4_K:
				dequantizeBlockQ4_K(block, out)
			case Q6_K:
				dequantizeBlockQ6_K(block, out)
			}
		}
	default:
		return fmt.Errorf("tensor: dequantize %v: %w", dt, ErrUnsupportedDType)
	}
	return nil
}

// DequantizeBlock decodes the first block of block (dt.BlockBytes() bytes)
// into the first dt.BlockElems() elements of dst, for loops that walk a row
// block by block (embedding lookup, matrix-vector products). It allocates
// nothing. It fails only when dt is not a valid dtype or a slice is shorter
// than one block; bytes after the first block are not read and elements of
// dst after the first block are not written. Every byte pattern is a valid
// block: f16 scales that are NaN or ±Inf decode to NaN or ±Inf, as in ggml.
func DequantizeBlock(dt DType, block []byte, dst []float32) error {
	be, bb := dt.BlockElems(), dt.BlockBytes()
	if be == 0 {
		return fmt.Errorf("tensor: dequantize block: invalid dtype %v: %w", dt, ErrUnsupportedDType)
	}
	if len(block) < bb || len(dst) < be {
		return fmt.Errorf("tensor: dequantize one %v block: have %d bytes and room for %d elements, need %d bytes and %d elements",
			dt, len(block), len(dst), bb, be)
	}
	switch dt {
	case Q8_0:
		dequantizeBlockQ8_0(block, dst)
	case Q4_0:
		dequantizeBlockQ4_0(block, dst)
	case Q4_K:
		dequantizeBlockQ4_K(block, dst)
	case Q6_K:
		dequantizeBlockQ6_K(block, dst)
	default:
		// Scalar types: a block is one element.
		return Dequantize(dt, block[:bb], dst[:1])
	}
	return nil
}

func abs32(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ (1 << 31)) }

// sqrt32 is C's sqrtf: a correctly rounded float32 square root (float64's
// square root of a float32, rounded once more to float32, is exactly that).
func sqrt32(f float32) float32 { return float32(math.Sqrt(float64(f))) }

// nearestInt is ggml's nearest_int: it adds 1.5*2^23 in float32, which rounds
// to an integer (ties to even), and reads the integer back from the mantissa
// bits. For |f| < 2^22 that is round-half-even; beyond, and for NaN or Inf,
// it returns the same wrapped value ggml computes, which the quantizers then
// clamp, so that even those paths match ggml.
//
// The explicit float32(f) keeps the compiler from fusing a product passed as
// f into this addition (a multiply-add would round once, not twice).
func nearestInt(f float32) int32 {
	v := float32(f) + 12582912
	return int32(math.Float32bits(v)&0x007fffff) - 0x00400000
}

// f16At reads the little-endian f16 at b[0:2] as float32.
func f16At(b []byte) float32 { return F16ToF32(binary.LittleEndian.Uint16(b)) }
