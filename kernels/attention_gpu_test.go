package kernels

import (
	"bytes"
	"testing"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// This file runs the attention and AppendKV kernels on a real GPU (skipped
// without one): every case of attention_harness_test.go (each fast tile,
// dtype, GQA 1/4/8, paged with shuffled tables and small pages, causal with
// fewer queries than keys, windows, masks, LSE, varlen batches, decode with
// splits, metadata faults) plus a few larger shapes, with the fast kernels
// (twice: the bytes must be equal) and the simple ones, against the float64
// reference, outputs poisoned before every run. It is the first thing to
// run on a GPU after a change to the attention kernels.

// gpuAttnBuffers allocates and fills the device buffers of a case.
func gpuAttnBuffers(t *testing.T, ctx *cuda.Context, bufs []attnBuf) []cuda.DevicePtr {
	t.Helper()
	addr := make([]cuda.DevicePtr, len(bufs))
	for i, b := range bufs {
		p, err := ctx.MemAlloc(int64(max(len(b.data), 16)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ctx.MemFree(p) })
		if err := ctx.MemcpyHtoD(p, b.data); err != nil {
			t.Fatal(err)
		}
		addr[i] = p
	}
	return addr
}

// gpuRun restores the outputs' initial bytes (poison, a zero error word),
// runs launch on st and returns every output buffer's bytes (nil for inputs).
func gpuRun(t *testing.T, ctx *cuda.Context, st *cuda.Stream, bufs []attnBuf, addr []cuda.DevicePtr, launch func() error) [][]byte {
	t.Helper()
	for i, b := range bufs {
		if b.output {
			if err := ctx.MemcpyHtoD(addr[i], b.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := launch(); err != nil {
		t.Fatal(err)
	}
	if err := st.Synchronize(); err != nil {
		t.Fatal(err)
	}
	outs := make([][]byte, len(bufs))
	for i, b := range bufs {
		if b.output {
			outs[i] = make([]byte, len(b.data))
			if err := ctx.MemcpyDtoH(outs[i], addr[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	return outs
}

// gpuAttnCases are the harness's cases and a few larger shapes.
func gpuAttnCases() []attnCase {
	cases := append(attnCases(), wgmmaCases()...)
	return append(cases,
		attnCase{name: "large prefill bf16 d128 causal GQA 4", dt: tensor.BF16, headDim: 128, nHeads: 8, nKVHeads: 2,
			qLens: []int{1000, 1500}, kvLens: []int{1000, 1500}, causal: true, lse: true, wantKind: KindPrefill},
		attnCase{name: "large prefill f16 d64 paged (64) chunked prefill", dt: tensor.F16, headDim: 64, nHeads: 8, nKVHeads: 8,
			qLens: []int{300, 200}, kvLens: []int{2300, 700}, paged: true, pageSize: 64, causal: true, wantKind: KindPrefill},
		attnCase{name: "large decode f16 d128 GQA 8 8k keys", dt: tensor.F16, headDim: 128, nHeads: 32, nKVHeads: 4,
			qLens: []int{1, 1, 1, 1}, kvLens: []int{8192, 5000, 100, 8000}, paged: true, pageSize: 16, lse: true, maxQueryLen: -1,
			wantKind: KindDecode, wantSplit: true},
		attnCase{name: "large decode bf16 d256 MQA", dt: tensor.BF16, headDim: 256, nHeads: 8, nKVHeads: 1,
			qLens: []int{1, 1}, kvLens: []int{4000, 3000}, causal: true, window: 1024, maxQueryLen: -1, wantKind: KindDecode, wantSplit: true},
	)
}

func TestAttentionOnGPU(t *testing.T) {
	ctx := gpuContext(t)
	auto, err := Open(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer auto.Close()
	simple, err := Open(ctx, Options{Variant: VariantSimple})
	if err != nil {
		t.Fatal(err)
	}
	defer simple.Close()
	st, err := ctx.NewStream(true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Destroy()

	// On Hopper (compute capability 9.0) the wgmma prefill takes the
	// prefill cases its rules allow (wgmmaKindFor).
	hopper := auto.ComputeCapability() == (ComputeCapability{9, 0})
	kinds := map[Kind]int{}
	for ci, c := range gpuAttnCases() {
		t.Run(attnCaseName(c.name), func(t *testing.T) {
			data := newAttnData(c, newCaseRand(ci))
			addr := gpuAttnBuffers(t, ctx, data.bufs)
			a := data.args(addr)
			choice, err := auto.AttentionChoice(a)
			if err != nil {
				t.Fatal(err)
			}
			// The split count depends on the device's SM count; the kind
			// does not.
			want := c.wantKind
			if hopper {
				want = wgmmaKindFor(c)
			}
			if choice.Kind != want {
				target, _ := auto.LoadedTarget(FamilyAttentionWGMMA)
				t.Errorf("dispatch chose %+v, want kind %s (attention_wgmma loaded from %q)", choice, want, target)
			}
			kinds[choice.Kind]++
			if choice.Splits > 1 {
				kinds[KindCombine]++
			}
			run := func(s *Set) [][]byte {
				return gpuRun(t, ctx, st, data.bufs, addr, func() error { return s.Attention(st, a) })
			}
			fast := run(auto)
			data.check(t, choice.Kernel, fast, choice.Kind != KindSimple)
			again := run(auto)
			for i, b := range data.bufs {
				if b.output && b.name != "errorWord" && !bytes.Equal(again[i], fast[i]) {
					t.Errorf("%s (split %d): two runs wrote different %s", choice.Kernel, choice.Splits, b.name)
				}
			}
			if choice.Kind != KindSimple {
				data.check(t, "attention_"+dtypeName(c.dt)+" (KILN_KERNELS=simple)", run(simple), false)
			}
		})
	}
	t.Logf("kernels run: %v", kinds)
	want := []Kind{KindSimple, KindPrefill, KindDecode, KindCombine}
	if hopper {
		want = append(want, KindWGMMA)
	}
	for _, k := range want {
		if kinds[k] == 0 {
			t.Errorf("no case ran a %s kernel", k)
		}
	}
}

func TestAppendKVOnGPU(t *testing.T) {
	ctx := gpuContext(t)
	s, err := Open(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := ctx.NewStream(true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Destroy()
	for ci, c := range appendCases() {
		t.Run(attnCaseName(c.name), func(t *testing.T) {
			data := newAppendData(c, newCaseRand(100+ci))
			addr := gpuAttnBuffers(t, ctx, data.bufs)
			outs := gpuRun(t, ctx, st, data.bufs, addr, func() error { return s.AppendKV(st, data.args(addr)) })
			data.check(t, "append_kv_"+dtypeName(c.dt), outs)
		})
	}
}
