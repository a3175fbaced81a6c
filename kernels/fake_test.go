package kernels

import (
	"bytes"
	"fmt"
	"regexp"
	"testing"

	"github.com/kiln-gpu/kiln/cuda"
)

// fakeDriver stands in for the CUDA driver: it "loads" PTX by reading its
// .target and .entry lines, refuses the targets it is told to, hands out
// distinct *cuda.Function values, and records launches.
type fakeDriver struct {
	refuse   map[string]bool // .target values to refuse ("sm_90a")
	loads    []string        // .target of every successful load, in order
	tried    []string        // .target of every load attempt
	modules  []*fakeModule
	launches []fakeLaunch
	names    map[*cuda.Function]string
	// countOnly makes Launch count instead of recording (for AllocsPerRun).
	countOnly bool
	count     int
	launchErr error
	// Device memory for the matmul split-k workspace: MemAlloc hands out
	// addresses from nextPtr (or fails with allocErr) and records sizes;
	// MemFree records what was freed.
	nextPtr  cuda.DevicePtr
	allocs   []int64
	freed    []cuda.DevicePtr
	allocErr error
	// smCount is what MultiprocessorCount reports; 0 makes it fail.
	smCount int
}

func (d *fakeDriver) MemAlloc(sizeBytes int64) (cuda.DevicePtr, error) {
	if d.allocErr != nil {
		return 0, d.allocErr
	}
	if d.nextPtr == 0 {
		d.nextPtr = 0x7000_0000_0000
	}
	p := d.nextPtr
	d.nextPtr += cuda.DevicePtr((sizeBytes + 255) &^ 255)
	d.allocs = append(d.allocs, sizeBytes)
	return p, nil
}

func (d *fakeDriver) MemFree(p cuda.DevicePtr) error {
	d.freed = append(d.freed, p)
	return nil
}

func (d *fakeDriver) MultiprocessorCount() (int, error) {
	if d.smCount == 0 {
		return 0, fmt.Errorf("fake: no multiprocessor count")
	}
	return d.smCount, nil
}

type fakeLaunch struct {
	kernel      string
	grid, block cuda.Dim3
	sharedBytes int
	stream      *cuda.Stream
	args        []byte
}

type fakeModule struct {
	drv      *fakeDriver
	target   string
	entries  map[string]bool
	unloaded int
}

var (
	fakeTargetRE = regexp.MustCompile(`(?m)^\.target (\S+)`)
	fakeEntryRE  = regexp.MustCompile(`(?m)^\.visible \.entry (\w+)\(`)
)

func newFakeDriver() *fakeDriver {
	return &fakeDriver{refuse: map[string]bool{}, names: map[*cuda.Function]string{}}
}

func (d *fakeDriver) LoadModule(ptx []byte) (module, error) {
	target := ""
	if m := fakeTargetRE.FindSubmatch(ptx); m != nil {
		target = string(m[1])
	}
	d.tried = append(d.tried, target)
	if d.refuse[target] {
		return nil, &cuda.Error{Call: "cuModuleLoadDataEx", Result: cuda.ErrorInvalidPTX,
			Log: fmt.Sprintf("ptxas fatal   : SM version specified by .target (%s) is higher than default", target)}
	}
	if !bytes.Contains(ptx, []byte(".version ")) {
		return nil, &cuda.Error{Call: "cuModuleLoadDataEx", Result: cuda.ErrorInvalidImage}
	}
	m := &fakeModule{drv: d, target: target, entries: map[string]bool{}}
	for _, e := range fakeEntryRE.FindAllSubmatch(ptx, -1) {
		m.entries[string(e[1])] = true
	}
	d.loads = append(d.loads, target)
	d.modules = append(d.modules, m)
	return m, nil
}

func (d *fakeDriver) Launch(fn *cuda.Function, grid, block cuda.Dim3, sharedBytes int, st *cuda.Stream, args *cuda.Args) error {
	if d.countOnly {
		d.count++
		return d.launchErr
	}
	name, ok := d.names[fn]
	if !ok {
		return fmt.Errorf("fake: launch of an unknown function %p", fn)
	}
	d.launches = append(d.launches, fakeLaunch{kernel: name, grid: grid, block: block, sharedBytes: sharedBytes,
		stream: st, args: append([]byte(nil), args.Bytes()...)})
	return d.launchErr
}

func (m *fakeModule) Function(name string) (*cuda.Function, error) {
	if m.unloaded > 0 {
		return nil, &cuda.Error{Call: "cuModuleGetFunction", Result: 400}
	}
	if !m.entries[name] {
		return nil, &cuda.Error{Call: "cuModuleGetFunction", Result: cuda.ErrorNotFound, Detail: fmt.Sprintf("kernel %q", name)}
	}
	fn := new(cuda.Function)
	m.drv.names[fn] = name
	return fn, nil
}

func (m *fakeModule) Unload() error {
	m.unloaded++
	return nil
}

// lastLaunch returns the most recent launch, failing the test when there is none.
func (d *fakeDriver) lastLaunch(t *testing.T) fakeLaunch {
	t.Helper()
	if len(d.launches) == 0 {
		t.Fatal("no kernel was launched")
	}
	return d.launches[len(d.launches)-1]
}

// newTestSet is a Set on the fake driver with the embedded PTX.
func newTestSet(t *testing.T, cc ComputeCapability, opts Options) (*Set, *fakeDriver) {
	t.Helper()
	d := newFakeDriver()
	s, err := newSet(d, cc, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, d
}
