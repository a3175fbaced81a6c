package kernels

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
)

// Target is a PTX target: a folder of the PTX file system.
type Target string

const (
	// TargetCompute80 is the baseline PTX every family has (Ampere and newer,
	// through the driver's JIT compiler).
	TargetCompute80 Target = "compute_80"
	// TargetSM90a is Hopper-specific PTX (wgmma, TMA, setmaxnreg), which
	// loads only on compute capability 9.0.
	TargetSM90a Target = "sm_90a"
)

// PTXISAVersion is the ".version" of the committed PTX (nvcc 12.4 writes 8.4).
const PTXISAVersion = "8.4"

// MinDriverVersion is the oldest driver that JIT-compiles the committed PTX,
// as cuDriverGetVersion reports it: CUDA 12.4 (PTX ISA 8.4), driver series
// 550 or newer. An older driver refuses every module with
// CUDA_ERROR_UNSUPPORTED_PTX_VERSION.
const MinDriverVersion = 12040

// CheckDriverVersion returns nil when a driver reporting version (as
// cuDriverGetVersion does: 1000·major + 10·minor) can load kiln's PTX, and
// otherwise an error matching op.ErrNoDevice that says what is needed.
func CheckDriverVersion(version int) error {
	if version >= MinDriverVersion {
		return nil
	}
	return fmt.Errorf("%w: the CUDA driver supports CUDA %d.%d (version %d), but kiln's kernels are PTX ISA %s and need CUDA %d.%d (%d) or newer: update the NVIDIA driver to the 550 series or later",
		op.ErrNoDevice, version/1000, version%1000/10, version, PTXISAVersion, MinDriverVersion/1000, MinDriverVersion%1000/10, MinDriverVersion)
}

// ComputeCapability is a device's compute capability.
type ComputeCapability struct{ Major, Minor int }

func (c ComputeCapability) String() string { return fmt.Sprintf("%d.%d", c.Major, c.Minor) }

func (c ComputeCapability) atLeast(major, minor int) bool {
	return c.Major > major || (c.Major == major && c.Minor >= minor)
}

// MinComputeCapability is the oldest GPU generation the kernels support
// (Ampere, the compute_80 baseline).
var MinComputeCapability = ComputeCapability{8, 0}

// CheckComputeCapability returns an error matching op.ErrUnsupported when
// kiln's kernels cannot run on a device of compute capability cc.
func CheckComputeCapability(cc ComputeCapability) error {
	if cc.atLeast(MinComputeCapability.Major, MinComputeCapability.Minor) {
		return nil
	}
	return fmt.Errorf("%w: compute capability %s is older than %s, the oldest kiln's kernels support (their baseline PTX targets compute_80, Ampere)",
		op.ErrUnsupported, cc, MinComputeCapability)
}

// targetsFor lists, best first, the PTX targets to try for a family on a
// device of compute capability cc: sm_90a first on exactly 9.0 when the
// family has it (sm_90a code does not run on any other GPU, newer ones
// included), then always the compute_80 baseline.
func targetsFor(cc ComputeCapability, hasSM90a bool) []Target {
	if hasSM90a && cc.Major == 9 && cc.Minor == 0 {
		return []Target{TargetSM90a, TargetCompute80}
	}
	return []Target{TargetCompute80}
}

func ptxPath(t Target, f Family) string { return string(t) + "/" + string(f) + ".ptx" }

// driver is what a Set needs from the CUDA driver: loading modules and
// launching. contextDriver is the real one; tests substitute a fake.
type driver interface {
	LoadModule(ptx []byte) (module, error)
	Launch(fn *cuda.Function, grid, block cuda.Dim3, sharedBytes int, st *cuda.Stream, args *cuda.Args) error
}

// module is a loaded module (*cuda.Module).
type module interface {
	Function(name string) (*cuda.Function, error)
	Unload() error
}

// contextDriver loads and launches on one context.
type contextDriver struct{ ctx *cuda.Context }

func (d contextDriver) LoadModule(ptx []byte) (module, error) {
	m, err := d.ctx.LoadModule(ptx)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (d contextDriver) Launch(fn *cuda.Function, grid, block cuda.Dim3, sharedBytes int, st *cuda.Stream, args *cuda.Args) error {
	return d.ctx.Launch(fn, grid, block, sharedBytes, st, args)
}

// loadedFamily is a family's module and the target it was loaded from.
type loadedFamily struct {
	mod    module
	target Target
}

// loadFamily loads family f's best PTX for the device (s.mu held). When the
// driver refuses a Hopper module it logs that and falls back to the
// baseline; when it refuses the baseline too, the error wraps the driver's
// (a *cuda.Error with the JIT log).
func (s *Set) loadFamily(f Family) (*loadedFamily, error) {
	if lf, ok := s.loaded[f]; ok {
		return lf, nil
	}
	_, statErr := fs.Stat(s.fsys, ptxPath(TargetSM90a, f))
	hasSM90a := statErr == nil
	targets := targetsFor(s.cc, hasSM90a)
	for i, t := range targets {
		path := ptxPath(t, f)
		ptx, err := fs.ReadFile(s.fsys, path)
		if err != nil {
			return nil, fmt.Errorf("kernels: reading %s for kernel family %q: %w", path, f, err)
		}
		mod, err := s.drv.LoadModule(ptx)
		if err != nil {
			if i+1 < len(targets) {
				s.log.Warn("kernels: the driver refused a Hopper module; using the baseline PTX instead",
					"family", string(f), "refused", string(t), "fallback", string(targets[i+1]),
					"compute_capability", s.cc.String(), "error", err)
				continue
			}
			return nil, fmt.Errorf("kernels: loading %s (kernel family %q) on a device of compute capability %s: %w", path, f, s.cc, err)
		}
		lf := &loadedFamily{mod: mod, target: t}
		s.loaded[f] = lf
		s.log.Debug("kernels: loaded module", "family", string(f), "target", string(t), "ptx_bytes", len(ptx))
		return lf, nil
	}
	return nil, errors.New("kernels: no PTX target to try") // targetsFor never returns an empty list
}

// sm90aReady reports whether the kernels of f, one of sm90aOnlyFamilies,
// can run on this Set (s.mu held): compute capability 9.0 and f's sm_90a
// module loaded, not the compute_80 fallback (which holds no kernels of
// such a family). Decided once per family, so that a module the driver
// refuses is neither reloaded nor logged again on every launch.
func (s *Set) sm90aReady(f Family) bool {
	if ready, ok := s.sm90a[f]; ok {
		return ready
	}
	if s.closed || s.cc != (ComputeCapability{9, 0}) {
		return false
	}
	ready := false
	lf, err := s.loadFamily(f)
	switch {
	case err != nil:
		s.log.Warn("kernels: a Hopper kernel family did not load; the baseline kernels serve", "family", string(f), "error", err)
	case lf.target != TargetSM90a:
		s.log.Info("kernels: no sm_90a module for a Hopper kernel family; the baseline kernels serve", "family", string(f), "target", string(lf.target))
	default:
		ready = true
	}
	s.sm90a[f] = ready
	return ready
}
