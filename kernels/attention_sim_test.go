package kernels

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// This file runs the attention kernels' CUDA source on the host, without a
// GPU: testdata/attentionsim compiles attention.cu, attention_prefill.cu,
// attention_decode.cu, attention_wgmma.cu and append_kv.cu with the host
// C++ compiler, runs every CUDA thread of a block as a fiber and emulates
// ldmatrix, mma.sync, cp.async, the shuffles and the barriers, and for the
// sm_90a kernel mbarriers, TMA tensor copies and wgmma, from the PTX ISA's
// definitions (see testdata/attentionsim/sim.h and hopper.h; the wgmma
// kernel's tests are in attention_wgmma_test.go). The calls are planned and packed by
// this package's own launchers on the fake driver (dispatch, split count,
// shared memory sizes, the parameter structs), and the simulator maps every
// buffer at the address the launcher was given, so the test covers
// dispatch, packing and the kernels' index arithmetic together, against the
// float64 reference of attention_harness_test.go. It also checks that every
// ldmatrix is free of bank conflicts, that a lazy cp.async schedule (copies
// land only at their wait) gives the same bytes (no pipeline hazard, and
// determinism), and that nothing is read or written outside the buffers.
// What it cannot see: timing, the real instruction encodings and the
// hardware's rounding; TestAttentionOnGPU is still the test that counts.

// attnSim is the built simulator.
type attnSim struct {
	bin string
	dir string
	mu  sync.Mutex
	n   int
}

var (
	attnSimOnce sync.Once
	attnSimBin  *attnSim
	attnSimErr  error
)

// attentionSimulator builds testdata/attentionsim once per test binary, or
// skips the test.
func attentionSimulator(t *testing.T) *attnSim {
	t.Helper()
	if raceEnabled {
		t.Skip("skipping under -race: the attention simulator is a separate C++ process; the non-race test pass runs it")
	}
	if testing.Short() {
		t.Skip("skipping in -short mode: compiling and running the attention simulator takes a few minutes")
	}
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skipf("skipping: the simulator needs linux (ucontext, fixed mappings) on amd64 or arm64 (_Float16), not %s/%s",
			runtime.GOOS, runtime.GOARCH)
	}
	cxx, ok := hostCXX()
	if !ok {
		t.Skip("skipping: no C++ compiler ($CXX, g++, c++ or clang++) to build the attention simulator")
	}
	attnSimOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kiln-attentionsim")
		if err != nil {
			attnSimErr = err
			return
		}
		bin := filepath.Join(dir, "attentionsim")
		src := filepath.Join("testdata", "attentionsim")
		cmd := exec.Command(cxx, "-std=c++17", "-O1", "-no-pie", "-fno-pie", "-ffp-contract=off", "-fno-strict-aliasing",
			"-Wall", "-Werror", "-Wno-unknown-pragmas", "-Wno-unused-function", "-Wno-unused-variable",
			"-fsanitize=alignment,bounds", "-fno-sanitize-recover=all", "-DKILN_HOST_SIM",
			"-I", filepath.Join(src, "include"), "-I", ".", "-o", bin, filepath.Join(src, "main.cc"))
		if msg, err := cmd.CombinedOutput(); err != nil {
			attnSimErr = fmt.Errorf("compiling the attention simulator: %v\n%s", err, msg)
			return
		}
		attnSimBin = &attnSim{bin: bin, dir: dir}
	})
	if attnSimErr != nil {
		t.Fatal(attnSimErr)
	}
	return attnSimBin
}

// simMapping is one buffer as the simulator maps it.
type simMapping struct {
	base, bytes, addr uint64
	data              []byte
}

// simStats are the simulator's instruction counts.
type simStats struct {
	mma, ldmatrixPhases, ldmatrixConflicted, cpAsync int64
	wgmma, tma                                       int64
}

var (
	simStatsRE       = regexp.MustCompile(`^ok mma=(\d+) ldmatrix_phases=(\d+) ldmatrix_conflicted=(\d+) cp_async=(\d+)`)
	simHopperStatsRE = regexp.MustCompile(` wgmma=(\d+) tma=(\d+)`)
)

// tmaDriver is the attention tests' fake driver that also encodes tensor
// maps, in the fake layout the simulator reads (cuda.FakeTensorMap), after
// the same checks as the real binding: with it, a Set on compute
// capability 9.0 dispatches to the sm_90a wgmma prefill.
type tmaDriver struct {
	*smemDriver
	encoded int
	specs   []cuda.TensorMapSpec // every spec encoded, in order
	refuse  error                // when set, EncodeTensorMap fails with it
}

func (d *tmaDriver) CanEncodeTensorMaps() bool { return true }

func (d *tmaDriver) EncodeTensorMap(spec *cuda.TensorMapSpec) (cuda.TensorMap, error) {
	if d.refuse != nil {
		return cuda.TensorMap{}, d.refuse
	}
	if err := spec.Validate(); err != nil {
		return cuda.TensorMap{}, err
	}
	d.encoded++
	d.specs = append(d.specs, *spec)
	return cuda.FakeTensorMap(spec), nil
}

// run places bufs at device addresses, lets launch pack its call with a Set
// of the given variant on the fake driver (an H100: 132 SMs, 227 KiB of
// shared memory), runs the recorded launches on the simulator (seeded; lazy
// cp.async or eager) and returns every buffer's bytes afterwards.
func (sim *attnSim) run(t *testing.T, bufs []attnBuf, variant Variant, seed uint64, lazy bool,
	launch func(s *Set, addr []cuda.DevicePtr) error) ([][]byte, simStats) {
	t.Helper()
	return sim.runOn(t, bufs, variant, seed, lazy, false, launch)
}

// runOn is run, on a driver that encodes tensor maps when tma is set (the
// wgmma prefill then applies).
func (sim *attnSim) runOn(t *testing.T, bufs []attnBuf, variant Variant, seed uint64, lazy, tma bool,
	launch func(s *Set, addr []cuda.DevicePtr) error) ([][]byte, simStats) {
	t.Helper()
	s, d := attentionSet(t, ComputeCapability{9, 0}, variant)
	if tma {
		s.Close()
		var err error
		if s, err = newSet(&tmaDriver{smemDriver: d}, ComputeCapability{9, 0}, Options{Variant: variant}); err != nil {
			t.Fatal(err)
		}
	}
	defer s.Close()

	const page = 4096
	roundUp := func(n, m uint64) uint64 { return (n + m - 1) / m * m }
	var maps []simMapping
	addr := make([]cuda.DevicePtr, len(bufs))
	next := uint64(0x2000_0000_0000)
	for i, b := range bufs {
		// The buffer ends within 15 bytes of its mapping's end (the next
		// page is unmapped), so that reading past it faults.
		size := roundUp(uint64(len(b.data)), 16)
		mapped := max(roundUp(size, page), page)
		m := simMapping{base: next, bytes: mapped, addr: next + mapped - size, data: b.data}
		addr[i] = cuda.DevicePtr(m.addr)
		maps = append(maps, m)
		next += mapped + page
	}
	if err := launch(s, addr); err != nil {
		t.Fatalf("launch: %v", err)
	}
	if d.nextPtr != 0 { // workspaces from the fake driver's MemAlloc
		const wsBase = 0x7000_0000_0000
		n := roundUp(uint64(d.nextPtr)-wsBase, page)
		maps = append(maps, simMapping{base: wsBase, bytes: n, addr: wsBase, data: nanBytes(int(n))})
	}

	var in bytes.Buffer
	w := func(v any) { _ = binary.Write(&in, binary.LittleEndian, v) }
	in.WriteString("KATT")
	w(uint32(1))
	w(seed)
	w(uint32(map[bool]int{false: 0, true: 1}[lazy]))
	w(uint32(len(maps)))
	for _, m := range maps {
		w(m.base)
		w(m.bytes)
		w(m.addr)
		w(uint64(len(m.data)))
		in.Write(m.data)
	}
	w(uint32(len(d.launches)))
	for _, l := range d.launches {
		w(uint32(len(l.kernel)))
		in.WriteString(l.kernel)
		w([3]uint32{l.grid.X, l.grid.Y, l.grid.Z})
		if l.block.Y != 1 || l.block.Z != 1 {
			t.Fatalf("%s: block %v", l.kernel, l.block)
		}
		w(l.block.X)
		w(uint32(l.sharedBytes))
		w(uint32(len(l.args)))
		in.Write(l.args)
	}

	sim.mu.Lock()
	sim.n++
	name := filepath.Join(sim.dir, fmt.Sprintf("run%d", sim.n))
	sim.mu.Unlock()
	if err := os.WriteFile(name+".in", in.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(name + ".in")
	defer os.Remove(name + ".out")
	msg, err := exec.Command(sim.bin, name+".in", name+".out").CombinedOutput()
	m := simStatsRE.FindSubmatch(msg)
	if err != nil || m == nil {
		t.Fatalf("simulator (launches %v): %v\n%s", launchNames(d.launches), err, msg)
	}
	var st simStats
	for i, p := range []*int64{&st.mma, &st.ldmatrixPhases, &st.ldmatrixConflicted, &st.cpAsync} {
		*p, _ = strconv.ParseInt(string(m[i+1]), 10, 64)
	}
	if h := simHopperStatsRE.FindSubmatch(msg); h != nil {
		st.wgmma, _ = strconv.ParseInt(string(h[1]), 10, 64)
		st.tma, _ = strconv.ParseInt(string(h[2]), 10, 64)
	}
	out, err := os.ReadFile(name + ".out")
	if err != nil {
		t.Fatal(err)
	}
	outs := make([][]byte, len(bufs))
	off := 0
	for i, b := range bufs {
		outs[i] = out[off : off+len(b.data)]
		off += len(b.data)
	}
	return outs, st
}

func launchNames(ls []fakeLaunch) []string {
	var names []string
	for _, l := range ls {
		names = append(names, l.kernel)
	}
	return names
}

// TestAttentionKernelsOnHostSimulator runs every attention case with the
// fast kernels (eager cp.async, then lazy with another thread schedule:
// the bytes must be the same) and the simple kernel, against the float64
// reference.
func TestAttentionKernelsOnHostSimulator(t *testing.T) {
	sim := attentionSimulator(t)
	for ci, c := range attnCases() {
		t.Run(attnCaseName(c.name), func(t *testing.T) {
			t.Parallel()
			data := newAttnData(c, newCaseRand(ci))
			var choice AttentionChoice
			launch := func(s *Set, addr []cuda.DevicePtr) error {
				a := data.args(addr)
				var err error
				if choice, err = s.AttentionChoice(a); err != nil {
					return err
				}
				return s.Attention(nil, a)
			}
			fast, st := sim.run(t, data.bufs, VariantAuto, uint64(1000+ci), false, launch)
			if choice.Kind != c.wantKind || (choice.Splits > 1) != c.wantSplit {
				t.Fatalf("dispatch chose %+v, want kind %s, split %v", choice, c.wantKind, c.wantSplit)
			}
			isFast := choice.Kind != KindSimple
			data.check(t, choice.Kernel, fast, isFast)
			if isFast && st.mma == 0 {
				t.Errorf("%s ran no mma", choice.Kernel)
			}
			if st.ldmatrixConflicted != 0 {
				t.Errorf("%s: %d of %d ldmatrix phases had bank conflicts", choice.Kernel, st.ldmatrixConflicted, st.ldmatrixPhases)
			}
			lazy, _ := sim.run(t, data.bufs, VariantAuto, uint64(2000+ci), true, launch)
			for _, i := range []int{data.iO, data.iLSE} {
				if i >= 0 && !bytes.Equal(lazy[i], fast[i]) {
					t.Errorf("%s: %s differs between two runs (lazy cp.async, another schedule)", choice.Kernel, data.bufs[i].name)
				}
			}
			if isFast {
				simple, _ := sim.run(t, data.bufs, VariantSimple, uint64(3000+ci), false, launch)
				data.check(t, "attention_"+dtypeName(c.dt)+" (KILN_KERNELS=simple)", simple, false)
			}
		})
	}
}

// TestAppendKVOnHostSimulator runs the AppendKV cases.
func TestAppendKVOnHostSimulator(t *testing.T) {
	sim := attentionSimulator(t)
	for ci, c := range appendCases() {
		t.Run(attnCaseName(c.name), func(t *testing.T) {
			t.Parallel()
			data := newAppendData(c, newCaseRand(100+ci))
			outs, _ := sim.run(t, data.bufs, VariantAuto, uint64(ci), true, func(s *Set, addr []cuda.DevicePtr) error {
				return s.AppendKV(nil, data.args(addr))
			})
			data.check(t, "append_kv_"+dtypeName(c.dt), outs)
		})
	}
}

// TestAttentionSimulatorSeesTheInputs: the pipeline is not blind. A value
// of V changed in the device buffer only (not in the reference) must move
// the outputs of the rows that see it.
func TestAttentionSimulatorSeesTheInputs(t *testing.T) {
	sim := attentionSimulator(t)
	c := attnCase{name: "sanity", dt: tensor.F16, headDim: 64, nHeads: 1, nKVHeads: 1, qLens: []int{16}, kvLens: []int{16},
		paged: true, pageSize: 16, wantKind: KindPrefill}
	data := newAttnData(c, newCaseRand(7))
	// Perturb one value of V in the buffer only: the reference no longer
	// matches, and the check must see it.
	v := data.bufs[data.iV].data
	page := int(data.blockTable[0])
	putElem(c.dt, v, page*data.vPage+3*data.vTok+5, 1000)
	outs, _ := sim.run(t, data.bufs, VariantAuto, 1, false, func(s *Set, addr []cuda.DevicePtr) error {
		return s.Attention(nil, data.args(addr))
	})
	o := outs[data.iO]
	moved := false
	for r := range 16 {
		got := getElem(c.dt, o, r*data.oTok+5)
		if want := data.ref[r*64+5]; !(got-want < 1e-2 && want-got < 1e-2) {
			moved = true
		}
	}
	if !moved {
		t.Error("a changed value of V did not change the output: the simulator or the layout is not what the test thinks")
	}
}

// newCaseRand is a deterministic generator per case.
func newCaseRand(i int) *rand.Rand { return rand.New(rand.NewPCG(2026, uint64(i))) }
