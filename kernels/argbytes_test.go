package kernels

import (
	"bufio"
	"bytes"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// ptxParam is one kernel parameter as the PTX declares it.
type ptxParam struct {
	align, size int
}

var ptxParamRE = regexp.MustCompile(`^\s*\.param\s+(?:\.align\s+(\d+)\s+)?\.([a-z]+)(\d+)\s+\w+(?:\[(\d+)\])?,?\s*$`)

// ptxParams returns the parameter list of every .entry in a PTX file.
func ptxParams(t *testing.T, text []byte) map[string][]ptxParam {
	t.Helper()
	out := map[string][]ptxParam{}
	current := ""
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := entryRE.FindStringSubmatch(line); m != nil {
			current = m[1]
			out[current] = nil
			continue
		}
		if current == "" {
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), ")") {
			current = ""
			continue
		}
		m := ptxParamRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		bits, _ := strconv.Atoi(m[3])
		p := ptxParam{size: bits / 8, align: bits / 8}
		if m[4] != "" { // .b8 name[N]: a struct passed by value
			n, _ := strconv.Atoi(m[4])
			p.size = n
		}
		if m[1] != "" {
			p.align, _ = strconv.Atoi(m[1])
		}
		out[current] = append(out[current], p)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// paramSpaceBytes is the size of a parameter list laid out as the driver
// reads a packed buffer: each parameter at the next multiple of its alignment.
func paramSpaceBytes(params []ptxParam) int {
	off := 0
	for _, p := range params {
		off = (off + p.align - 1) / p.align * p.align
		off += p.size
	}
	return off
}

// TestLaunchArgsMatchPTXParams: for one launch of every kind of kernel (a
// struct kernel, every _vec signature, the warp variants, the probes), the
// bytes the launcher packs are exactly the PTX parameter space of the kernel
// it launches: same total size, and a struct parameter of the same size as
// the Go mirror. A kernel whose parameter list changed without its launcher
// (or the other way round) would read garbage on a GPU; this catches it here.
func TestLaunchArgsMatchPTXParams(t *testing.T) {
	params := map[string][]ptxParam{}
	for _, f := range Families() {
		text, err := fs.ReadFile(EmbeddedPTX(), ptxPath(TargetCompute80, f))
		if err != nil {
			t.Fatal(err)
		}
		for name, ps := range ptxParams(t, text) {
			params[name] = ps
		}
	}

	s, d := newTestSet(t, ComputeCapability{8, 0}, Options{})
	d.smCount = 108
	f32 := operand(tensor.F32, 0x1000, []int{4, 100}, nil)
	f16 := operand(tensor.F16, 0x9000, []int{4, 100}, nil)
	strided := operand(tensor.F32, 0x1000, []int{4, 100}, []int{1, 4})
	i32 := operand(tensor.I32, 0x3000, []int{4}, nil)
	launches := []struct {
		what string
		run  func() error
	}{
		{"convert vec", func() error { return s.Convert(nil, f16, f32) }},
		{"convert strided", func() error { return s.Convert(nil, f16, strided) }},
		{"binary vec", func() error { return s.Binary(nil, Add, f32, f32, f32) }},
		{"binary strided", func() error { return s.Binary(nil, Mul, f32, strided, f32) }},
		{"unary vec", func() error { return s.Unary(nil, SiLU, f16, f16) }},
		{"unary strided", func() error { return s.Unary(nil, GELU, f32, strided) }},
		{"softmax warp", func() error { return s.Softmax(nil, f32, f32, op.SoftmaxOptions{}) }},
		{"softmax block", func() error {
			long := operand(tensor.BF16, 0x1000, []int{2, 5000}, nil)
			return s.Softmax(nil, long, long, op.SoftmaxOptions{})
		}},
		{"rmsnorm warp", func() error { return s.RMSNorm(nil, f32, f32, 0, op.NormOptions{}) }},
		{"layernorm block", func() error {
			long := operand(tensor.F16, 0x1000, []int{2, 5000}, nil)
			return s.LayerNorm(nil, long, long, 0x8000, 0x9000, op.NormOptions{})
		}},
		{"argmax", func() error { return s.Argmax(nil, operand(tensor.I32, 0x3000, []int{1, 1, 1, 4}, nil), f32) }},
		{"rope", func() error {
			x := operand(tensor.F16, 0x1000, []int{4, 2, 64}, nil)
			return s.RoPE(nil, x, x, i32, RoPEParams{NDims: 64, FreqBase: 10000, FreqScale: 1})
		}},
		{"embedding", func() error {
			table := operand(tensor.Q4_K, 0x10000, []int{10, 256}, nil)
			return s.Embedding(nil, operand(tensor.F32, 0x1000, []int{4, 256}, nil), table, i32, 0x20000)
		}},
		{"matmul simple (k = 0 takes it)", func() error {
			return s.MatMul(nil, MatMulArgs{M: 3, N: 5, K: 0, XType: tensor.F32,
				WType: tensor.Q8_0, Y: 0x300000, YRowStride: 5, Bias: 0x500000})
		}},
		{"matmul simt", func() error {
			return s.MatMul(nil, MatMulArgs{M: 3, N: 5000, K: 256, X: 0x100000, XRowStride: 256, XType: tensor.F32,
				W: 0x200000, WRowStride: 256, WType: tensor.Q4_K, Y: 0x400000, YRowStride: 5000})
		}},
		{"matmul decode, split-k (then matmul_reduce_f16)", func() error {
			return s.MatMul(nil, MatMulArgs{M: 1, N: 64, K: 4096, X: 0x100000, XRowStride: 4096, XType: tensor.F16,
				W: 0x200000, WRowStride: 4096, WType: tensor.Q4_0, Y: 0x400000, YRowStride: 64})
		}},
		{"matmul mma", func() error {
			return s.MatMul(nil, MatMulArgs{M: 512, N: 4096, K: 256, X: 0x100000, XRowStride: 256, XType: tensor.BF16,
				W: 0x200000, WUp: 0x300000, WRowStride: 256, WType: tensor.Q6_K, Y: 0x400000, YRowStride: 4096})
		}},
		{"attention simple", func() error { return s.Attention(nil, contiguousArgs(tensor.F32, 2, 10, 10, 4, 4, 64)) }},
		{"attention prefill", func() error { return s.Attention(nil, contiguousArgs(tensor.F16, 2, 100, 100, 4, 4, 64)) }},
		{"attention split decode (then attention_bf16_combine)", func() error {
			a := pagedArgs(tensor.BF16, 2, 2, 8, 2, 64, 256, 16, 128)
			a.MaxQueryLen = 1
			return s.Attention(nil, a)
		}},
		{"append kv", func() error { return s.AppendKV(nil, appendArgs(tensor.F16)) }},
		{"read probe", func() error { return s.ReadProbe(nil, 0x1000, 1<<20, 0x200000, 8) }},
		{"copy probe", func() error { return s.CopyProbe(nil, 0x200000, 0x1000, 1<<20) }},
	}
	for _, l := range launches {
		if err := l.run(); err != nil {
			t.Fatalf("%s: %v", l.what, err)
		}
	}
	// Every launch, including the second of a split-k matmul (the reduction).
	for _, got := range d.launches {
		ps, ok := params[got.kernel]
		if !ok {
			t.Errorf("kernel %s has no parameter list in the PTX", got.kernel)
			continue
		}
		if want := paramSpaceBytes(ps); len(got.args) != want {
			t.Errorf("%s packed %d argument bytes, its PTX parameters take %d (%+v)", got.kernel, len(got.args), want, ps)
		}
	}
	// Each kind of matmul kernel was among them.
	for _, prefix := range []string{"matmul_q8_0_f32", "matmul_q4_k_f32_simt_m4", "matmul_q4_0_f16_decode", "matmul_reduce_f16", "matmul_q6_k_bf16_mma",
		"attention_f32", "attention_f16_prefill_d64", "attention_bf16_decode_d64", "attention_bf16_combine", "append_kv_f16"} {
		found := false
		for _, l := range d.launches {
			found = found || l.kernel == prefix
		}
		if !found {
			t.Errorf("no launch of %s", prefix)
		}
	}
	// The kinds of launch above reach every signature the PTX has: each
	// kernel's parameter list is one of those seen.
	seen := map[string]bool{}
	for _, l := range d.launches {
		seen[signature(params[l.kernel])] = true
	}
	for name, ps := range params {
		if !seen[signature(ps)] {
			t.Errorf("kernel %s has a parameter list %+v that no launch in this test checks", name, ps)
		}
	}
}

func signature(ps []ptxParam) string {
	var sb strings.Builder
	for _, p := range ps {
		sb.WriteString(strconv.Itoa(p.align) + ":" + strconv.Itoa(p.size) + ",")
	}
	return sb.String()
}
