package kernels

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
)

// Options configure Open.
type Options struct {
	// Variant restricts dispatch to the simple kernels when VariantSimple
	// (the backend fills it from KILN_KERNELS); VariantAuto lets it pick fast
	// variants.
	Variant Variant
	// Logger receives the loader's messages (a refused Hopper module is a
	// warning); nil discards them.
	Logger *slog.Logger
	// FS replaces the embedded PTX (tests): it must hold
	// compute_80/<family>.ptx for every family and may hold sm_90a/<family>.ptx.
	FS fs.FS
}

// Set is the kernels of one device context: modules loaded lazily, one per
// family, on first use, and kept until Close; kernel functions looked up
// once. Launchers queue work on the given stream and return; they are safe
// for concurrent use (one mutex guards the caches and the argument buffer).
type Set struct {
	drv  driver
	cc   ComputeCapability
	sel  Variant
	log  *slog.Logger
	fsys fs.FS

	mu     sync.Mutex
	closed bool
	loaded map[Family]*loadedFamily
	// sm90a caches sm90aReady's answer per sm_90a-only family.
	sm90a map[Family]bool
	funcs []*cuda.Function // by kernelID; nil until first use
	args  cuda.Args        // reset and refilled by every launch

	// Parameter structs are filled in place, not on the stack, so that
	// packing them never makes them escape to the heap.
	ew   elementwiseParams
	rows rowsParams
	rope ropeParams
	emb  embeddingParams
	// mm is the matmul launcher's state: its parameter struct, the SM count
	// and the split-k workspaces (matmul_workspace.go).
	mm matmulState
	// attn is the attention launchers' state: parameter structs, shared
	// memory limits and split workspaces (attention_workspace.go).
	attn attentionState
}

// Open prepares the kernels for ctx's device. It loads no module yet (see
// LoadAll). A device older than compute capability 8.0 gets an error
// matching op.ErrUnsupported.
func Open(ctx *cuda.Context, opts Options) (*Set, error) {
	if ctx == nil {
		return nil, errors.New("kernels: Open: nil context")
	}
	major, minor, err := ctx.Device().ComputeCapability()
	if err != nil {
		return nil, fmt.Errorf("kernels: reading the compute capability of device %d: %w", int(ctx.Device()), err)
	}
	return newSet(contextDriver{ctx}, ComputeCapability{major, minor}, opts)
}

// newSet is Open with the driver given (tests pass a fake).
func newSet(drv driver, cc ComputeCapability, opts Options) (*Set, error) {
	if err := CheckComputeCapability(cc); err != nil {
		return nil, fmt.Errorf("kernels: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fsys := opts.FS
	if fsys == nil {
		fsys = EmbeddedPTX()
	}
	s := &Set{
		drv:    drv,
		cc:     cc,
		sel:    opts.Variant,
		log:    log,
		fsys:   fsys,
		loaded: map[Family]*loadedFamily{},
		sm90a:  map[Family]bool{},
		funcs:  make([]*cuda.Function, len(kernelTable)),
	}
	s.mm.workspaces.what = "matmul split-k"
	s.attn.workspaces.what = "attention split"
	return s, nil
}

// ComputeCapability is the device's compute capability.
func (s *Set) ComputeCapability() ComputeCapability { return s.cc }

// Variant is the kernel selection the Set dispatches with.
func (s *Set) Variant() Variant { return s.sel }

// LoadAll loads every family's module now instead of on first use, so that a
// driver that refuses the PTX is found at start-up (and load time can be
// measured).
func (s *Set) LoadAll() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed()
	}
	for _, f := range Families() {
		if _, err := s.loadFamily(f); err != nil {
			return err
		}
	}
	return nil
}

// LoadedTarget says which PTX target family f was loaded from; ok is false
// while it is not loaded.
func (s *Set) LoadedTarget(f Family) (t Target, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lf, found := s.loaded[f]; found {
		return lf.target, true
	}
	return "", false
}

// Close unloads every module. Work already queued must be finished (the
// backend synchronises first). Launchers return an error matching
// op.ErrClosed afterwards; a second Close does nothing.
func (s *Set) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, f := range Families() {
		if lf, ok := s.loaded[f]; ok {
			if err := lf.mod.Unload(); err != nil {
				errs = append(errs, fmt.Errorf("kernels: unloading kernel family %q: %w", f, err))
			}
		}
	}
	if err := s.closeMatMul(); err != nil {
		errs = append(errs, err)
	}
	if err := s.closeAttention(); err != nil {
		errs = append(errs, err)
	}
	clear(s.loaded)
	clear(s.funcs)
	return errors.Join(errs...)
}

func errClosed() error { return fmt.Errorf("kernels: %w: the kernel set was closed", op.ErrClosed) }

// function returns kernel k's function, loading its family first if needed
// (s.mu held).
func (s *Set) function(k kernelID) (*cuda.Function, error) {
	if fn := s.funcs[k]; fn != nil {
		return fn, nil
	}
	info := kernelTable[k]
	lf, err := s.loadFamily(info.family)
	if err != nil {
		return nil, err
	}
	fn, err := lf.mod.Function(info.name)
	if err != nil {
		return nil, fmt.Errorf("kernels: kernel %s in the %s PTX of family %q: %w", info.name, lf.target, info.family, err)
	}
	s.funcs[k] = fn
	return fn, nil
}

// ready prepares one launch (s.mu held): it refuses a closed Set and
// empties the argument buffer.
func (s *Set) ready() error {
	if s.closed {
		return errClosed()
	}
	s.args.Reset()
	return nil
}

// launch launches kernel k with the arguments packed in s.args (s.mu held).
func (s *Set) launch(k kernelID, lc launchConfig, st *cuda.Stream) error {
	fn, err := s.function(k)
	if err != nil {
		return err
	}
	if err := s.drv.Launch(fn, lc.grid, lc.block, lc.sharedBytes, st, &s.args); err != nil {
		return fmt.Errorf("kernels: launching %s: %w", kernelTable[k].name, err)
	}
	return nil
}
