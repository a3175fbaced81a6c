package kernels

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// hostCompiler finds a C compiler for TestQuantDecodersMatchGo: $CC, cc,
// gcc or clang.
func hostCompiler() (string, bool) {
	for _, c := range []string{os.Getenv("CC"), "cc", "gcc", "clang"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p, true
		}
	}
	return "", false
}

// quantFormatCode is the format number of testdata/quantcheck.c.
var quantFormatCode = map[tensor.DType]uint32{tensor.F32: 0, tensor.F16: 1, tensor.BF16: 2, tensor.Q8_0: 3, tensor.Q4_0: 4, tensor.Q4_K: 5, tensor.Q6_K: 6}

// quantTestRows returns rows of nElems elements of dt: quantized from random
// floats of several magnitudes (the blocks a model has), and random bytes
// (every bit pattern is a valid block; scales may then be NaN or ±Inf).
func quantTestRows(t *testing.T, dt tensor.DType, nElems int, rng *rand.Rand) [][]byte {
	t.Helper()
	var out [][]byte
	for _, scale := range []float64{1e-3, 1, 300} {
		src := make([]float32, nElems)
		for i := range src {
			src[i] = float32(rng.NormFloat64() * scale)
		}
		var b []byte
		if dt.IsQuantized() {
			var err error
			if b, err = tensor.Quantize(dt, src); err != nil {
				t.Fatal(err)
			}
		} else {
			var ok bool
			if b, ok = tensor.EncodeFloats(dt, src); !ok {
				t.Fatalf("EncodeFloats(%v) failed", dt)
			}
		}
		out = append(out, b)
	}
	for range 4 {
		b := make([]byte, nElems/dt.BlockElems()*dt.BlockBytes())
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		out = append(out, b)
	}
	return out
}

// sameFloat: bit for bit, except that any NaN equals any NaN (the payload is
// not part of the formats' definition).
func sameFloat(got, want float32) bool {
	if math.IsNaN(float64(got)) || math.IsNaN(float64(want)) {
		return math.IsNaN(float64(got)) && math.IsNaN(float64(want))
	}
	return math.Float32bits(got) == math.Float32bits(want)
}

// TestQuantDecodersMatchGo compiles quant.cuh's decoders — the ones every
// weight-reading kernel uses (embedding, matmul) — with the host C compiler
// (testdata/quantcheck.c, built fresh each run) and checks that, on
// multi-block rows of every weight format, kiln_<fmt>_at and
// fetch16/decode16 give exactly the values of kiln's Go reference
// (runtime/tensor, itself verified against ggml), and that the float
// formats' fetch16_tail reads only the valid elements. Only the primitives
// quant.cuh defines per compiler (half to float, loads, single-rounding
// multiply) differ on the device.
func TestQuantDecodersMatchGo(t *testing.T) {
	cc, ok := hostCompiler()
	if !ok {
		t.Skip("skipping: no C compiler ($CC, cc, gcc or clang) to build quant.cuh on the host")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "quantcheck")
	// -std=c11: no contraction of a·b − c into an FMA (GCC and Clang default
	// to -ffp-contract=off in ISO C mode; quant.cuh also says so by pragma).
	build := exec.Command(cc, "-std=c11", "-O2", "-Wall", "-Werror", "-Wno-unknown-pragmas", "-Wno-unused-function",
		"-I", ".", "-o", bin, filepath.Join("testdata", "quantcheck.c"))
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("compiling testdata/quantcheck.c: %v\n%s", err, msg)
	}

	type record struct {
		dt  tensor.DType
		row []byte
		ref []float32
	}
	var records []record
	var in bytes.Buffer
	rng := rand.New(rand.NewPCG(7, 11))
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0, tensor.Q4_0, tensor.Q4_K, tensor.Q6_K} {
		nElems := 3 * max(dt.BlockElems(), 32) // several blocks
		for _, row := range quantTestRows(t, dt, nElems, rng) {
			ref := make([]float32, nElems)
			if err := tensor.Dequantize(dt, row, ref); err != nil {
				t.Fatal(err)
			}
			records = append(records, record{dt, row, ref})
			for _, v := range []uint32{quantFormatCode[dt], uint32(nElems), uint32(len(row))} {
				_ = binary.Write(&in, binary.LittleEndian, v)
			}
			in.Write(row)
		}
	}
	inPath, outPath := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	if err := os.WriteFile(inPath, in.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command(bin, inPath, outPath).CombinedOutput(); err != nil {
		t.Fatalf("running quantcheck: %v\n%s", err, msg)
	}
	raw, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	out := tensor.BytesF32(raw)
	next := func(n int) []float32 {
		if len(out) < n {
			t.Fatalf("quantcheck wrote too little output")
		}
		v := out[:n]
		out = out[n:]
		return v
	}
	for ri, r := range records {
		for _, way := range []string{"kiln_at", "fetch16+decode16"} {
			got := next(len(r.ref))
			bad := 0
			for j := range r.ref {
				if !sameFloat(got[j], r.ref[j]) {
					if bad++; bad <= 3 {
						t.Errorf("%v record %d element %d: %s gives %v (%#x), Go %v (%#x)", r.dt, ri, j, way,
							got[j], math.Float32bits(got[j]), r.ref[j], math.Float32bits(r.ref[j]))
					}
				}
			}
		}
		if r.dt.IsQuantized() {
			continue
		}
		for nValid := 0; nValid <= 16; nValid++ {
			got := next(16)
			for i := range 16 {
				want := float32(0)
				if i < nValid {
					want = r.ref[i]
				}
				if !sameFloat(got[i], want) {
					t.Errorf("%v record %d: fetch16_tail(n_valid %d) element %d is %v, want %v", r.dt, ri, nValid, i, got[i], want)
				}
			}
		}
	}
	if len(out) != 0 {
		t.Errorf("%d floats of output left over", len(out))
	}
}
