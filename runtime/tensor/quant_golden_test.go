package tensor

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"testing"
)

// The golden file is written by scripts/peers/gguf_quant_golden.py from two
// implementations that are not ours: gguf-py (PyPI `gguf`) and ggml's C
// reference quantizers. Its format is documented in that script.
const goldenPath = "testdata/quant_golden.bin.gz"

// Sources of a golden encoding's bytes, as the script numbers them.
const (
	srcRandom         = 0 // random bytes made by the script
	srcGGUFPy         = 1 // gguf-py's quantizer (agrees with ggml's)
	srcGGML           = 2 // ggml's C reference quantizer
	srcGGUFPyDiffers  = 3 // gguf-py's quantizer where it differs from ggml's
	goldenRealTensor  = "stories260K/token_embd.weight"
	goldenNegZeroCase = "negative_zeros"
)

type goldenEncoding struct {
	dtype   DType
	source  uint8
	raw     []byte
	dequant []float32 // nil when the file has none
}

type goldenCase struct {
	name  string
	n     int
	input []float32 // nil when the case has no input
	encs  []goldenEncoding
}

// goldenReader reads the little-endian fields of the golden file, keeping
// the first error.
type goldenReader struct {
	r   io.Reader
	err error
}

func (g *goldenReader) read(n int) []byte {
	if g.err != nil {
		return make([]byte, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(g.r, b); err != nil {
		g.err = err
	}
	return b
}

func (g *goldenReader) u8() uint8   { return g.read(1)[0] }
func (g *goldenReader) u16() uint16 { return binary.LittleEndian.Uint16(g.read(2)) }
func (g *goldenReader) u32() uint32 { return binary.LittleEndian.Uint32(g.read(4)) }

func (g *goldenReader) floats(n int) []float32 {
	b := g.read(4 * n)
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func readGolden(t testing.TB) []goldenCase {
	t.Helper()
	f, err := os.Open(goldenPath)
	if err != nil {
		t.Fatalf("golden file missing (regenerate with scripts/peers/gguf_quant_golden.py): %v", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", goldenPath, err)
	}
	g := &goldenReader{r: zr}
	if magic := string(g.read(8)); magic != "KILNQG01" {
		t.Fatalf("%s: magic %q, want KILNQG01", goldenPath, magic)
	}
	nCases := int(g.u32())
	var cases []goldenCase
	for c := 0; c < nCases && g.err == nil; c++ {
		var gc goldenCase
		gc.name = string(g.read(int(g.u16())))
		gc.n = int(g.u32())
		if g.u8() == 1 {
			gc.input = g.floats(gc.n)
		}
		nEnc := int(g.u32())
		for e := 0; e < nEnc && g.err == nil; e++ {
			var enc goldenEncoding
			ggmlType := g.u32()
			dt, ok := FromGGMLType(ggmlType)
			if !ok {
				t.Fatalf("%s: case %q: unknown ggml type %d", goldenPath, gc.name, ggmlType)
			}
			enc.dtype = dt
			enc.source = g.u8()
			enc.raw = g.read(int(g.u32()))
			if g.u8() == 1 {
				enc.dequant = g.floats(gc.n)
			}
			gc.encs = append(gc.encs, enc)
		}
		cases = append(cases, gc)
	}
	if g.err != nil {
		t.Fatalf("%s: truncated or corrupt: %v", goldenPath, g.err)
	}
	if rest, _ := io.ReadAll(zr); len(rest) != 0 {
		t.Fatalf("%s: %d bytes after the last case", goldenPath, len(rest))
	}
	return cases
}

// firstBlockDiff returns the index of the first block where a and b differ,
// or -1.
func firstBlockDiff(a, b []byte, blockBytes int) int {
	for i := 0; i < len(a) && i < len(b); i += blockBytes {
		end := min(i+blockBytes, len(a), len(b))
		if !bytes.Equal(a[i:end], b[i:end]) {
			return i / blockBytes
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b)) / blockBytes
	}
	return -1
}

// sameFloatBits reports whether got and want are the same float32 bit
// pattern, treating any two NaNs as equal (payloads are not compared).
func sameFloatBits(got, want float32) bool {
	if got != got && want != want {
		return true
	}
	return math.Float32bits(got) == math.Float32bits(want)
}

// TestGoldenCoverage guards against a regenerated golden file that quietly
// lost what the other golden tests rely on.
func TestGoldenCoverage(t *testing.T) {
	cases := readGolden(t)
	quantRef := map[DType]int{}
	randomBytes := map[DType]bool{}
	dequantRef := map[DType]int{}
	realTensor := map[DType]bool{}
	for _, c := range cases {
		for _, e := range c.encs {
			if c.input != nil && (e.source == srcGGUFPy || e.source == srcGGML) {
				quantRef[e.dtype]++
				if c.name == goldenRealTensor {
					realTensor[e.dtype] = true
				}
			}
			if e.source == srcRandom {
				randomBytes[e.dtype] = true
			}
			if e.dequant != nil {
				dequantRef[e.dtype]++
			}
		}
	}
	for _, dt := range []DType{Q8_0, Q4_0, Q4_K, Q6_K} {
		if quantRef[dt] < 10 {
			t.Errorf("%v: %d cases with reference bytes, want at least 10", dt, quantRef[dt])
		}
		if !realTensor[dt] {
			t.Errorf("%v: no reference bytes for %s", dt, goldenRealTensor)
		}
	}
	for _, dt := range []DType{Q8_0, Q4_0, Q4_K, Q6_K, F16, BF16} {
		if !randomBytes[dt] {
			t.Errorf("%v: no random-bytes case", dt)
		}
		if dequantRef[dt] == 0 {
			t.Errorf("%v: no gguf-py dequantization", dt)
		}
	}
	if quantRef[F16] == 0 || quantRef[BF16] == 0 {
		t.Errorf("no gguf-py F16/BF16 rounding case (F16 %d, BF16 %d)", quantRef[F16], quantRef[BF16])
	}
}

// TestGoldenQuantizeMatchesReference: our bytes equal gguf-py's (Q8_0, Q4_0,
// F16, BF16) and ggml's (all four block formats) for the same input.
func TestGoldenQuantizeMatchesReference(t *testing.T) {
	for _, c := range readGolden(t) {
		if c.input == nil {
			continue
		}
		for _, e := range c.encs {
			if e.source != srcGGUFPy && e.source != srcGGML {
				continue
			}
			t.Run(fmt.Sprintf("%s/%v", c.name, e.dtype), func(t *testing.T) {
				got, err := Quantize(e.dtype, c.input)
				if err != nil {
					t.Fatalf("Quantize: %v", err)
				}
				if b := firstBlockDiff(got, e.raw, e.dtype.BlockBytes()); b >= 0 {
					bb, be := e.dtype.BlockBytes(), e.dtype.BlockElems()
					t.Fatalf("bytes differ from the reference (source %d) first in block %d of %d\n got  %x\n want %x\n input %v",
						e.source, b, len(e.raw)/bb, got[b*bb:min((b+1)*bb, len(got))], e.raw[b*bb:(b+1)*bb], c.input[b*be:(b+1)*be])
				}
			})
		}
	}
}

// TestGoldenGGUFPyDifference pins down the one known way gguf-py's quantizer
// differs from ggml's, which we follow: a Q4_0 block of zeros whose first
// element is -0.0 gets d = -0.0 in ggml (its running max starts at +0.0 and
// -0.0/-8 = -0.0) but +0.0 in gguf-py (argmax picks the -0.0 itself).
func TestGoldenGGUFPyDifference(t *testing.T) {
	seen := 0
	for _, c := range readGolden(t) {
		for _, e := range c.encs {
			if e.source != srcGGUFPyDiffers {
				continue
			}
			seen++
			if c.name != goldenNegZeroCase || e.dtype != Q4_0 {
				t.Errorf("case %q %v: gguf-py differs from ggml where no difference is known; look at the script's output", c.name, e.dtype)
				continue
			}
			ours, err := Quantize(e.dtype, c.input)
			if err != nil {
				t.Fatal(err)
			}
			bb := e.dtype.BlockBytes()
			for b := 0; b < len(ours)/bb; b++ {
				o, p := ours[b*bb:(b+1)*bb], e.raw[b*bb:(b+1)*bb]
				if bytes.Equal(o, p) {
					continue
				}
				// Only d may differ, and only as -0.0 (ours) versus +0.0.
				if !bytes.Equal(o[2:], p[2:]) || binary.LittleEndian.Uint16(o) != 0x8000 || binary.LittleEndian.Uint16(p) != 0x0000 {
					t.Errorf("block %d: ours %x, gguf-py %x: differ beyond the sign of a zero scale", b, o, p)
				}
			}
		}
	}
	if seen == 0 {
		t.Logf("gguf-py and ggml agree on every case")
	}
}

// TestGoldenDequantizeMatchesGGUFPy: our float32 output equals gguf-py's bit
// for bit for every stored encoding (random bytes, gguf-py's and ggml's
// quantizations), every format.
func TestGoldenDequantizeMatchesGGUFPy(t *testing.T) {
	for _, c := range readGolden(t) {
		for _, e := range c.encs {
			if e.dequant == nil {
				continue
			}
			t.Run(fmt.Sprintf("%s/%v/source%d", c.name, e.dtype, e.source), func(t *testing.T) {
				got := make([]float32, c.n)
				if err := Dequantize(e.dtype, e.raw, got); err != nil {
					t.Fatalf("Dequantize: %v", err)
				}
				for i := range got {
					if !sameFloatBits(got[i], e.dequant[i]) {
						be := e.dtype.BlockElems()
						t.Fatalf("element %d (block %d): got %v (%#08x), gguf-py %v (%#08x)",
							i, i/be, got[i], math.Float32bits(got[i]), e.dequant[i], math.Float32bits(e.dequant[i]))
					}
				}
				// The per-block entry point must agree with the row one.
				be, bb := e.dtype.BlockElems(), e.dtype.BlockBytes()
				blockOut := make([]float32, be)
				for b := 0; b < c.n/be; b++ {
					if err := DequantizeBlock(e.dtype, e.raw[b*bb:], blockOut); err != nil {
						t.Fatalf("DequantizeBlock %d: %v", b, err)
					}
					for j := range blockOut {
						if !sameFloatBits(blockOut[j], e.dequant[b*be+j]) {
							t.Fatalf("DequantizeBlock %d element %d: got %v, gguf-py %v", b, j, blockOut[j], e.dequant[b*be+j])
						}
					}
				}
			})
		}
	}
}

// TestRealTensorRoundTripError measures quantize -> dequantize error on a
// real trained tensor (stories260K's token embedding, 32768 floats), relative
// to the tensor's RMS, and holds each format to a bound.
//
// The bounds come from uniform quantization noise, step/sqrt(12), with the
// step each format uses. For roughly Gaussian weights of deviation s, the
// largest magnitude of 32 samples is about 2.1s and of 16 about 1.8s, and
// the range of 32 about 4s, which gives (measured values in brackets):
//   - Q8_0: step amax/127 = 0.0165s, noise 0.0048s    [0.0055]; bound 0.008
//   - Q4_0: step amax/8   = 0.26s,   noise 0.076s     [0.0865]; bound 0.12
//   - Q4_K: step range/15 = 0.27s,   noise 0.077s     [0.0780]; bound 0.10
//   - Q6_K: step 2amax/63 = 0.057s,  noise 0.0165s    [0.0175]; bound 0.025
//
// (TestGoldenQuantizeMatchesReference checks the bytes against ggml's; this
// test says what those bytes are worth on real weights.)
func TestRealTensorRoundTripError(t *testing.T) {
	var input []float32
	for _, c := range readGolden(t) {
		if c.name == goldenRealTensor {
			input = c.input
		}
	}
	if len(input) != 32768 {
		t.Fatalf("golden case %s has %d floats, want 32768", goldenRealTensor, len(input))
	}
	var sumSq float64
	for _, v := range input {
		sumSq += float64(v) * float64(v)
	}
	rms := math.Sqrt(sumSq / float64(len(input)))
	bounds := map[DType]float64{Q8_0: 0.008, Q4_0: 0.12, Q4_K: 0.10, Q6_K: 0.025}
	var report []string
	for _, dt := range []DType{Q8_0, Q4_0, Q4_K, Q6_K} {
		q, err := Quantize(dt, input)
		if err != nil {
			t.Fatalf("%v: %v", dt, err)
		}
		out := make([]float32, len(input))
		if err := Dequantize(dt, q, out); err != nil {
			t.Fatalf("%v: %v", dt, err)
		}
		var errSq float64
		for i := range out {
			d := float64(out[i]) - float64(input[i])
			errSq += d * d
		}
		rel := math.Sqrt(errSq/float64(len(input))) / rms
		report = append(report, fmt.Sprintf("%v %.5f", dt, rel))
		if rel > bounds[dt] {
			t.Errorf("%v: RMSE/RMS = %.5f, bound %.3f", dt, rel, bounds[dt])
		}
		// A sanity floor: a format that returned the input unchanged (or a
		// test that compared the input with itself) would show no error.
		if rel < 1e-4 {
			t.Errorf("%v: RMSE/RMS = %g: suspiciously exact for a lossy format", dt, rel)
		}
	}
	t.Logf("stories260K token_embd.weight, RMS %.5f; RMSE/RMS: %s", rms, strings.Join(report, ", "))
}
