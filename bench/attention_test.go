package bench

import (
	"context"
	"math"
	"math/rand/v2"
	"regexp"
	"testing"
	"time"

	"github.com/kiln-gpu/kiln/runtime/cpu"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// TestAttentionCasesRegistered: the FlashAttention-3 grid (3 head dims × causal
// and not × 6 sequence lengths) and the decode grid (4 batches × 3 KV
// lengths), with bytes and flops worked out by hand.
func TestAttentionCasesRegistered(t *testing.T) {
	byName := map[string]Case{}
	for _, c := range Cases(regexp.MustCompile(`^attention/`)) {
		byName[c.Name] = c
	}
	if len(byName) != 3*2*6+4*3 {
		t.Errorf("%d attention cases, want %d", len(byName), 3*2*6+4*3)
	}
	const mib = 1 << 20
	for _, c := range []struct {
		name         string
		bytes, flops int64
	}{
		// 16384 tokens × 2048 × 2 bytes = 64 MiB each for Q, K, V, O;
		// flops 4·batch·seqlen²·2048, halved for causal.
		{"attention/prefill/F16/d128-causal/b8s2048", 4 * 64 * mib, 4 * 8 * 2048 * 2048 * 2048 / 2},
		{"attention/prefill/F16/d64-full/b32s512", 4 * 64 * mib, 4 * 32 * 512 * 512 * 2048},
		{"attention/prefill/F16/d256-causal/b1s16384", 4 * 64 * mib, 4 * 16384 * 16384 * 2048 / 2},
		// Batch 1, 2048 keys: K and V 2048·8·128·2 bytes = 4 MiB each; Q and
		// O 64·128·2 = 16 KiB each; 4·64·2048·128 flops.
		{"attention/decode/F16/h64kv8d128/b1kv2048", 8*mib + 32*1024, 4 * 64 * 2048 * 128},
		// Batch 128, 32k keys: 8 GiB each for K and V.
		{"attention/decode/F16/h64kv8d128/b128kv32768", 16<<30 + 128*32*1024, 4 * 128 * 64 * 32768 * 128},
	} {
		got, ok := byName[c.name]
		if !ok {
			t.Errorf("%s: not registered", c.name)
			continue
		}
		if got.Bytes != c.bytes || got.FLOPs != c.flops {
			t.Errorf("%s: bytes %d, flops %d; want %d, %d", c.name, got.Bytes, got.FLOPs, c.bytes, c.flops)
		}
	}
	// Decode is memory-bound: 8 flops per byte of K and V (8 query heads
	// share each KV head, 2 flops per multiply-add, 2 products per element,
	// 2 bytes per element).
	c := byName["attention/decode/F16/h64kv8d128/b32kv8192"]
	if r := float64(c.FLOPs) / float64(c.Bytes); r < 7.9 || r > 8 {
		t.Errorf("decode flops per byte %g, want just under 8", r)
	}
}

// TestAttentionCasesComputeAttention runs small cases of both constructors
// on the CPU and checks their outputs against attention computed here in
// float64 from the tensors the cases made: so the starts, block table and
// lengths they build describe what their names say.
func TestAttentionCasesComputeAttention(t *testing.T) {
	dev := cpu.New(cpu.Options{})
	defer dev.Close()
	const headDim = 16
	for _, tc := range []struct {
		name  string
		c     Case
		check func(t *testing.T, vals [][]float32)
	}{
		{"prefill", attentionPrefillCase(tensor.F16, 3, 20, 2, headDim, true), func(t *testing.T, v [][]float32) {
			// q, k, v, dst [60, 2, 16]; starts [0, 20, 40, 60].
			q, k, vv, dst, starts := v[0], v[1], v[2], v[3], v[4]
			if !equalInts32(starts, []float32{0, 20, 40, 60}) {
				t.Fatalf("starts %v", starts)
			}
			for r := range 60 {
				s0 := r / 20 * 20
				for h := range 2 {
					var keys []int
					for j := s0; j <= r; j++ { // causal: keys of the sequence up to the query
						keys = append(keys, j)
					}
					checkRow(t, r, h, q, k, vv, dst, 2, 2, headDim, keys)
				}
			}
		}},
		{"decode", attentionDecodeCase(tensor.F16, 3, 32, 8, 2, headDim, 8), func(t *testing.T, v [][]float32) {
			// k, v [12 pages, 8, 2, 16]; table [3, 4]; lens [3]; qStarts [4]; q, dst [3, 8, 16].
			kp, vp, table, lens, qs, q, dst := v[0], v[1], v[2], v[3], v[4], v[5], v[6]
			if !equalInts32(lens, []float32{32, 32, 32}) || !equalInts32(qs, []float32{0, 1, 2, 3}) {
				t.Fatalf("lens %v, query starts %v", lens, qs)
			}
			seen := map[float32]bool{}
			for _, p := range table {
				seen[p] = true
			}
			if len(seen) != 12 {
				t.Fatalf("block table %v does not use each of the 12 pages once", table)
			}
			// Gather each sequence's keys into contiguous [32, 2, 16] rows.
			for b := range 3 {
				k := make([]float32, 32*2*headDim)
				vv := make([]float32, 32*2*headDim)
				for j := range 32 {
					page := int(table[b*4+j/8])
					copy(k[j*2*headDim:], kp[(page*8+j%8)*2*headDim:(page*8+j%8+1)*2*headDim])
					copy(vv[j*2*headDim:], vp[(page*8+j%8)*2*headDim:(page*8+j%8+1)*2*headDim])
				}
				keys := make([]int, 32)
				for j := range keys {
					keys[j] = j
				}
				for h := range 8 {
					checkRow(t, b, h, q, k, vv, dst, 8, 2, headDim, keys)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := &Env{Dev: dev, rng: rand.New(rand.NewPCG(1, 2))}
			defer env.freeAll()
			r, err := tc.c.Prepare(env)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Run(); err != nil {
				t.Fatal(err)
			}
			var vals [][]float32
			for _, x := range env.owned {
				vals = append(vals, hostFloats(t, dev, x))
			}
			tc.check(t, vals)
		})
	}
}

// checkRow compares dst's row (r, h) with softmax(q·kᵀ/√d)·v over keys,
// computed in float64 (kv rows [j, nKV, d], query head h reading KV head
// h/(nHeads/nKV)); dst is F16, so within 2⁻⁹ relative plus float32 noise.
func checkRow(t *testing.T, r, h int, q, k, v, dst []float32, nHeads, nKV, d int, keys []int) {
	t.Helper()
	g := h / (nHeads / nKV)
	qo := (r*nHeads + h) * d
	scores := make([]float64, len(keys))
	m := math.Inf(-1)
	for i, j := range keys {
		var s float64
		for e := range d {
			s += float64(q[qo+e]) * float64(k[(j*nKV+g)*d+e])
		}
		scores[i] = s / math.Sqrt(float64(d))
		m = math.Max(m, scores[i])
	}
	var l float64
	out := make([]float64, d)
	for i, j := range keys {
		w := math.Exp(scores[i] - m)
		l += w
		for e := range d {
			out[e] += w * float64(v[(j*nKV+g)*d+e])
		}
	}
	for e := range d {
		want := out[e] / l
		if got := float64(dst[qo+e]); math.Abs(got-want) > math.Abs(want)/512+1e-3 {
			t.Errorf("row %d head %d element %d: got %v, want %v", r, h, e, got, want)
			return
		}
	}
}

func equalInts32(got, want []float32) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// hostFloats downloads a float or I32 tensor as float32 values.
func hostFloats(t *testing.T, dev *cpu.Backend, x tensor.Tensor) []float32 {
	t.Helper()
	raw := make([]byte, x.SizeBytes())
	if err := dev.Download(context.Background(), raw, x); err != nil {
		t.Fatal(err)
	}
	if x.DType() == tensor.I32 {
		ints := tensor.BytesI32(raw)
		out := make([]float32, len(ints))
		for i, v := range ints {
			out[i] = float32(v)
		}
		return out
	}
	out, ok := tensor.DecodeFloats(x.DType(), raw)
	if !ok {
		t.Fatalf("cannot decode %v", x.DType())
	}
	return out
}

// TestAttentionDecodeCaseRunsOnTheCPU times the smallest decode case.
func TestAttentionDecodeCaseRunsOnTheCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	dev := cpu.New(cpu.Options{})
	defer dev.Close()
	cases := Cases(regexp.MustCompile(`^attention/decode/F16/h64kv8d128/b1kv2048$`))
	if len(cases) != 1 {
		t.Fatalf("cases %v", names(cases))
	}
	res, err := Run(context.Background(), dev, cases, Options{MinTime: time.Millisecond, FootprintBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Error != "" || r.GBps <= 0 || r.TFLOPs <= 0 || r.Sets != 1 {
		t.Errorf("%s: error %q, %g GB/s, %g TFLOP/s, %d sets", r.Name, r.Error, r.GBps, r.TFLOPs, r.Sets)
	}
	if s := dev.MemoryStats(); s.InUseBytes != 0 {
		t.Errorf("%d bytes still in use after the case", s.InUseBytes)
	}
}
