package kernels

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// This file runs the matmul kernels' CUDA source on the host, without a
// GPU: testdata/matmulsim compiles matmul.cu, matmul_simt.cu,
// matmul_decode.cu, matmul_mma.cu and matmul_wgmma.cu with the host C++
// compiler, runs every CUDA thread of a block as a fiber and emulates
// ldmatrix, mma.sync, cp.async, wgmma (matrix descriptors, the 128-byte
// swizzle, fence/commit/wait) and fence.proxy.async from the PTX ISA's
// definitions (see testdata/matmulsim/sim.h).
// The products are planned and packed by this package's own Go code
// (planMatMulKind, fillMatMulParams, the grids), so the test covers
// dispatch, argument packing and kernel index arithmetic together; the
// simulator compares every output with a float64 reference. What it cannot
// see: timing, the real instruction encodings and the hardware's own
// rounding; TestMatMulOnGPU is still the test that counts on a GPU.

// hostCXX finds a C++ compiler for the simulator: $CXX, g++, c++ or clang++.
func hostCXX() (string, bool) {
	for _, c := range []string{os.Getenv("CXX"), "g++", "c++", "clang++"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p, true
		}
	}
	return "", false
}

// simCase is one product on one kernel kind.
type simCase struct {
	kind          Kind
	w, x          tensor.DType
	m, n, k       int
	swiglu, bias  bool
	padX, padY    int // extra elements per row of X and Y
	padWBlocks    int // extra blocks per row of W
	xOff, wOff    int // bytes X and W (and WUp) start past a 16-byte boundary
	yOff          int
	split         int    // force this many k slices (0: as planned)
	wantKernelSub string // a substring the kernel name must have
	wantWVec16    bool   // the plan must stage W with 16-byte copies
}

func (c simCase) String() string {
	s := fmt.Sprintf("%s %v×%v m%d n%d k%d", c.kind, c.w, c.x, c.m, c.n, c.k)
	if c.swiglu {
		s += " swiglu"
	}
	if c.bias {
		s += " bias"
	}
	if c.padX|c.padY|c.padWBlocks|c.xOff|c.wOff|c.yOff != 0 {
		s += fmt.Sprintf(" pads x%d y%d wblocks%d offs x%d w%d y%d", c.padX, c.padY, c.padWBlocks, c.xOff, c.wOff, c.yOff)
	}
	if c.split > 0 {
		s += fmt.Sprintf(" split%d", c.split)
	}
	return s
}

// simCases covers every kernel kind with every weight type, the tails of
// m, n and k, SwiGLU, bias, padded and unaligned operands (the 2-byte and
// element staging) and split-k.
func simCases() []simCase {
	var cases []simCase
	for _, w := range matmulWeightTypes {
		be := w.BlockElems()
		// k with a partial last chunk (and, for the 32-blocks, a partial
		// last 64-element round); float weights: k not a multiple of 8.
		kTail, kLong := 352, 768
		switch {
		case be == 256:
			kTail = 512
		case be == 1:
			kTail = 100
		}
		for _, x := range []tensor.DType{tensor.F16, tensor.BF16} {
			// Unaligned W: 2-byte (F32: 4-byte) aligned rows take the 2-byte staging.
			wOff := 2
			if w == tensor.F32 {
				wOff = 4
			}
			cases = append(cases,
				simCase{kind: KindDecode, w: w, x: x, m: 1, n: 70, k: kTail, bias: true},
				simCase{kind: KindDecode, w: w, x: x, m: 16, n: 64, k: kLong, split: 3},
				simCase{kind: KindDecode, w: w, x: x, m: 19, n: 13, k: kTail, swiglu: true, padX: 8, padY: 3, padWBlocks: 1},
				simCase{kind: KindDecode, w: w, x: x, m: 3, n: 5, k: kLong, wOff: wOff, xOff: 2, padX: 1, split: 2},
			)
			// The GEMM cases are the slow ones: each x takes some of them.
			if x == tensor.F16 {
				cases = append(cases,
					simCase{kind: KindMMA, w: w, x: x, m: 33, n: 130, k: kTail, bias: true, padY: 1},
					simCase{kind: KindMMA, w: w, x: x, m: 130, n: 24, k: kTail, swiglu: true, wOff: wOff, xOff: 2, padX: 3, padWBlocks: 1},
				)
			} else {
				cases = append(cases,
					simCase{kind: KindMMA, w: w, x: x, m: 1, n: 5, k: kLong, swiglu: true, split: 3},
					simCase{kind: KindMMA, w: w, x: x, m: 40, n: 21, k: kLong, bias: true, split: 2, padX: 8, padY: 2},
				)
			}
			// The Hopper GEMM: m 33 and 512, n and k not multiples of its
			// 128×128×64 tile, split-k, unaligned operands.
			if x == tensor.F16 {
				cases = append(cases,
					simCase{kind: KindWGMMA, w: w, x: x, m: 33, n: 130, k: kTail, bias: true, padY: 1},
					simCase{kind: KindWGMMA, w: w, x: x, m: 512, n: 70, k: kTail, swiglu: true, wOff: wOff, xOff: 2, padX: 3, padWBlocks: 1},
				)
			} else {
				cases = append(cases,
					simCase{kind: KindWGMMA, w: w, x: x, m: 40, n: 21, k: kLong, bias: true, split: 2, padX: 8, padY: 2},
					simCase{kind: KindWGMMA, w: w, x: x, m: 130, n: 24, k: kLong, swiglu: true, split: 3, wOff: wOff},
				)
			}
			if be == 1 {
				cases = append(cases,
					simCase{kind: KindDecode, w: w, x: x, m: 2, n: 9, k: 37, bias: true, padX: 8},
					simCase{kind: KindMMA, w: w, x: x, m: 40, n: 70, k: 37, swiglu: true, padX: 1},
					simCase{kind: KindWGMMA, w: w, x: x, m: 40, n: 70, k: 37, swiglu: true, padX: 1},
				)
			}
			cases = append(cases, simCase{kind: KindSimple, w: w, x: x, m: 3, n: 11, k: kTail, swiglu: true, padX: 2})
		}
		// W rows padded to a multiple of 16 bytes: 16-byte staging, and for
		// Q8_0 (136-byte chunks) and Q6_K (210) chunks that start 2..14
		// bytes past a 16-byte boundary (the staged row's lead).
		padAligned := 0
		for (kLong/be+padAligned)*w.BlockBytes()%16 != 0 {
			padAligned++
		}
		cases = append(cases,
			simCase{kind: KindDecode, w: w, x: tensor.F16, m: 2, n: 67, k: kLong, padWBlocks: padAligned, wantWVec16: true},
			simCase{kind: KindDecode, w: w, x: tensor.BF16, m: 5, n: 64, k: kLong, padWBlocks: padAligned, split: 3, wantWVec16: true},
			simCase{kind: KindSIMT, w: w, x: tensor.F32, m: 4, n: 65, k: kLong, padWBlocks: padAligned, swiglu: true, wantWVec16: true},
			simCase{kind: KindSIMT, w: w, x: tensor.F32, m: 1, n: 64, k: kLong, padWBlocks: padAligned, split: 3, wantWVec16: true},
			simCase{kind: KindWGMMA, w: w, x: tensor.F16, m: 200, n: 67, k: kLong, padWBlocks: padAligned, wantWVec16: true},
			simCase{kind: KindWGMMA, w: w, x: tensor.BF16, m: 64, n: 129, k: kLong, padWBlocks: padAligned, bias: true, wantWVec16: true},
		)
		for _, m := range []int{1, 2, 3, 8, 19} {
			c := simCase{kind: KindSIMT, w: w, x: tensor.F32, m: m, n: 70, k: kTail, wantKernelSub: "simt_m"}
			switch m {
			case 2:
				c.swiglu, c.padX = true, 4
			case 3:
				c.bias, c.split = true, 2
				c.k = kLong
			case 8:
				c.wOff, c.xOff, c.padX, c.padWBlocks = 2, 4, 1, 1
				if w == tensor.F32 {
					c.wOff = 4
				}
			case 19:
				c.swiglu, c.n = true, 21
			}
			cases = append(cases, c)
		}
		cases = append(cases, simCase{kind: KindSimple, w: w, x: tensor.F32, m: 2, n: 9, k: kTail, bias: true, padY: 2})
	}
	return cases
}

// simArgs plans and packs c with the package's Go code and returns the
// simulator's command line.
func simArgs(t *testing.T, c simCase) []string {
	t.Helper()
	be := c.w.BlockElems()
	a := MatMulArgs{M: c.m, N: c.n, K: c.k, XRowStride: c.k + c.padX, XType: c.x, WRowStride: c.k + c.padWBlocks*be,
		WType: c.w, YRowStride: c.n + c.padY}
	// Device addresses with the residues mod 16 the simulator reproduces.
	a.X = 0x1000_0000 + 0x40 + cuda.DevicePtr(c.xOff)
	a.W = 0x2000_0000 + 0x40 + cuda.DevicePtr(c.wOff)
	if c.swiglu {
		a.WUp = 0x3000_0000 + 0x40 + cuda.DevicePtr(c.wOff)
	}
	a.Y = 0x4000_0000 + 0x40 + cuda.DevicePtr(c.yOff)
	if c.bias {
		a.Bias = 0x5000_0000
	}
	if err := checkMatMulArgs(&a); err != nil {
		t.Fatalf("%v: %v", c, err)
	}
	q := matmulProblem{M: int64(c.m), N: int64(c.n), K: int64(c.k), WType: c.w, XType: c.x, SwiGLU: c.swiglu,
		CC: ComputeCapability{8, 0}, SMCount: 108, SplitOK: true}
	plan := planMatMulKind(q, c.kind)
	if c.split > 0 {
		step := matmulKStep(c.kind, c.w)
		plan.SplitK, plan.KPerSplit = splitInto(ceilDiv(q.K, step), int64(c.split))
		plan.KPerSplit *= step
		if plan.SplitK != c.split {
			t.Fatalf("%v: k = %d in steps of %d makes %d slices, not %d", c, c.k, step, plan.SplitK, c.split)
		}
		if plan.SplitK == 1 {
			plan.KPerSplit = q.K
		}
	}
	var p matmulParams
	fillMatMulParams(&p, &a, &plan, 0x6000_0000)
	name := kernelTable[plan.Kernel].name
	if c.wantKernelSub != "" && !strings.Contains(name, c.wantKernelSub) {
		t.Fatalf("%v: planned kernel %s", c, name)
	}
	wantMR := 0
	if c.kind == KindSIMT {
		wantMR = min(8, 1<<bitsLen(c.m-1))
		if !strings.HasSuffix(name, fmt.Sprintf("_m%d", wantMR)) {
			t.Fatalf("%v: planned kernel %s, want MR %d", c, name, wantMR)
		}
	}
	grid := matmulSimpleGrid(p.M, p.N)
	if c.kind != KindSimple {
		grid = matmulFastGrid(&plan, p.M)
	}
	rounded := 0
	if c.kind == KindDecode || c.kind == KindMMA || c.kind == KindWGMMA {
		rounded = 1
	}
	args := []string{
		"kernel=" + name,
		fmt.Sprintf("grid=%d,%d,%d", grid.X, grid.Y, grid.Z),
		fmt.Sprintf("threads=%d", plan.Threads),
		fmt.Sprintf("wfmt=%d", quantFormatCode[c.w]),
		fmt.Sprintf("xfmt=%d", quantFormatCode[c.x]),
		fmt.Sprintf("rounded=%d", rounded),
		fmt.Sprintf("m=%d", p.M), fmt.Sprintf("n=%d", p.N), fmt.Sprintf("k=%d", p.K),
		fmt.Sprintf("x_row_stride=%d", p.XRowStride), fmt.Sprintf("y_row_stride=%d", p.YRowStride),
		fmt.Sprintf("w_row_stride_bytes=%d", p.WRowStrideBytes), fmt.Sprintf("n_virtual=%d", p.NVirtual),
		fmt.Sprintf("k_per_split=%d", p.KPerSplit), fmt.Sprintf("split_k=%d", p.SplitK),
		fmt.Sprintf("swiglu=%d", p.SwiGLU), fmt.Sprintf("bias=%d", min(p.Bias, 1)),
		fmt.Sprintf("w_vec16=%d", p.WVec16), fmt.Sprintf("x_vec16=%d", p.XVec16),
		fmt.Sprintf("xoff=%d", c.xOff), fmt.Sprintf("woff=%d", c.wOff), fmt.Sprintf("yoff=%d", c.yOff),
		fmt.Sprintf("smem=%d", plan.SharedBytes),
	}
	if plan.SplitK > 1 {
		rgrid := matmulSimpleGrid(p.M, p.N)
		args = append(args, "reduce="+kernelTable[matmulReduce[c.x]].name,
			fmt.Sprintf("rgrid=%d,%d,%d", rgrid.X, rgrid.Y, rgrid.Z), fmt.Sprintf("rthreads=%d", matmulSimpleThreads))
	}
	if c.wantWVec16 && p.WVec16 != 1 {
		t.Fatalf("%v: W is not staged with 16-byte copies (row stride %d bytes)", c, p.WRowStrideBytes)
	}
	return args
}

// bitsLen is the bit length of v (v ≥ 0).
func bitsLen(v int) int {
	n := 0
	for ; v > 0; v >>= 1 {
		n++
	}
	return n
}

// cudaDevicePresent reports whether the CUDA driver loads and sees a device.
func cudaDevicePresent() bool {
	if cuda.Init() != nil {
		return false
	}
	n, err := cuda.DeviceCount()
	return err == nil && n > 0
}

// buildMatMulSim compiles testdata/matmulsim into dir.
func buildMatMulSim(t *testing.T, cxx, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "matmulsim")
	src := filepath.Join("testdata", "matmulsim")
	cmd := exec.Command(cxx, "-std=c++17", "-O1", "-no-pie", "-ffp-contract=off", "-fno-strict-aliasing",
		"-Wall", "-Werror", "-Wno-unknown-pragmas", "-Wno-unused-function",
		"-fsanitize=alignment,bounds", "-fno-sanitize-recover=all", "-DKILN_HOST_SIM",
		"-I", filepath.Join(src, "include"), "-I", ".", "-o", bin, filepath.Join(src, "main.cc"))
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("compiling the matmul simulator: %v\n%s", err, msg)
	}
	return bin
}

// TestMatMulKernelsOnHostSimulator runs every simCase in both cp.async
// modes (eager, and lazy: copies land only at their wait_group, with the
// destination poisoned from issue on) and several thread schedules.
func TestMatMulKernelsOnHostSimulator(t *testing.T) {
	if raceEnabled {
		t.Skip("skipping under -race: the matmul simulator is a separate C++ process; the non-race test pass runs it")
	}
	if testing.Short() {
		t.Skip("skipping in -short mode: compiling and running the simulator takes about two minutes")
	}
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skipf("skipping: the simulator needs linux (ucontext, /proc/self/exe) on amd64 or arm64 (_Float16), not %s/%s",
			runtime.GOOS, runtime.GOARCH)
	}
	cxx, ok := hostCXX()
	if !ok {
		t.Skip("skipping: no C++ compiler ($CXX, g++, c++ or clang++) to build the matmul simulator")
	}
	if cudaDevicePresent() {
		t.Skip("skipping: a CUDA device is present, and TestMatMulOnGPU runs these kernels on it")
	}
	bin := buildMatMulSim(t, cxx, t.TempDir())
	cases := simCases()
	caseArgs := make([][]string, len(cases))
	for i, c := range cases {
		caseArgs[i] = simArgs(t, c)
	}
	type result struct {
		c   simCase
		out string
		err error
	}
	jobs := make(chan int)
	results := make([]result, len(cases)*2)
	var wg sync.WaitGroup
	for range max(1, min(4, runtime.NumCPU())) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				ci, mode := j/2, []string{"eager", "lazy"}[j%2]
				c := cases[ci]
				args := append(slices.Clone(caseArgs[ci]), "mode="+mode, fmt.Sprintf("seed=%d", j+1))
				out, err := exec.Command(bin, args...).CombinedOutput()
				results[j] = result{c, mode + ": " + strings.TrimSpace(string(out)), err}
			}
		}()
	}
	for j := range results {
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	kinds := map[Kind]int{}
	for _, r := range results {
		if r.err != nil || !strings.HasPrefix(r.out[strings.Index(r.out, ": ")+2:], "ok") {
			t.Errorf("%v: %s (%v)", r.c, r.out, r.err)
			continue
		}
		kinds[r.c.kind]++
		if testing.Verbose() {
			t.Logf("%v: %s", r.c, r.out)
		}
	}
	for _, k := range []Kind{KindSimple, KindSIMT, KindDecode, KindMMA, KindWGMMA} {
		if kinds[k] == 0 {
			t.Errorf("no %s case passed", k)
		}
	}
}
