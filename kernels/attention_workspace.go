package kernels

import (
	"fmt"

	"github.com/kiln-gpu/kiln/cuda"
)

// sharedMemoryConfig is how the Set learns the largest dynamic shared
// memory a block can be given and raises a kernel's limit to it (cuFuncSetAttribute);
// contextDriver has it. Without it, kernels get at most the default 48 KiB
// (staticSharedBytes) and dispatch picks accordingly.
type sharedMemoryConfig interface {
	MaxSharedMemoryPerBlockOptin() (int, error)
	SetMaxDynamicSharedBytes(fn *cuda.Function, sizeBytes int) error
}

// MaxSharedMemoryPerBlockOptin reads the device's opt-in shared memory
// limit per block.
func (d contextDriver) MaxSharedMemoryPerBlockOptin() (int, error) {
	return d.ctx.Device().Attribute(cuda.AttrMaxSharedMemoryPerBlockOptin)
}

// SetMaxDynamicSharedBytes raises fn's dynamic shared memory limit.
func (d contextDriver) SetMaxDynamicSharedBytes(fn *cuda.Function, sizeBytes int) error {
	return fn.SetAttribute(cuda.FuncMaxDynamicSharedSizeBytes, sizeBytes)
}

// tensorMapEncoder is how the Set encodes TMA tensor maps for the sm_90a
// kernels (cuTensorMapEncodeTiled, a host-only computation); contextDriver
// has it. Without it (or when CanEncodeTensorMaps is false) dispatch never
// picks a kernel that needs tensor maps.
type tensorMapEncoder interface {
	CanEncodeTensorMaps() bool
	EncodeTensorMap(spec *cuda.TensorMapSpec) (cuda.TensorMap, error)
}

// CanEncodeTensorMaps: the driver library has cuTensorMapEncodeTiled.
func (d contextDriver) CanEncodeTensorMaps() bool { return cuda.HasTensorMaps() }

// EncodeTensorMap is cuda.EncodeTensorMapTiled.
func (d contextDriver) EncodeTensorMap(spec *cuda.TensorMapSpec) (cuda.TensorMap, error) {
	return cuda.EncodeTensorMapTiled(spec)
}

// attentionState is the Set's attention state (guarded by Set.mu).
type attentionState struct {
	// params and appendParams are filled in place for each launch, so
	// that packing them never makes them escape to the heap.
	params       attentionParams
	appendParams appendKVParams
	// sharedLimitBytes is the largest dynamic shared memory a block can
	// get, 0 until first asked.
	sharedLimitBytes int
	// sharedSet[k] is the dynamic shared memory limit set on kernel k (0:
	// the default), allocated on first use.
	sharedSet []int
	// workspaces holds each stream's split workspace (partial outputs and
	// log-sum-exps).
	workspaces streamWorkspaces
	// mapK and mapV are the wgmma prefill's tensor maps, filled per launch.
	mapK, mapV cuda.TensorMap
	// tensorMapWarned: the driver's refusal to encode a map was logged.
	tensorMapWarned bool
}

// attentionHopperReady reports whether the sm_90a attention kernels can
// run on this Set (s.mu held): a driver that encodes tensor maps, and
// FamilyAttentionWGMMA's sm_90a module on compute capability 9.0
// (sm90aReady, which loads it once).
func (s *Set) attentionHopperReady() bool {
	enc, ok := s.drv.(tensorMapEncoder)
	return ok && enc.CanEncodeTensorMaps() && s.sm90aReady(FamilyAttentionWGMMA)
}

// sharedLimit is the most dynamic shared memory a block can be given, read
// once (s.mu held).
func (s *Set) sharedLimit() int {
	if s.attn.sharedLimitBytes == 0 {
		s.attn.sharedLimitBytes = staticSharedBytes
		if cfg, ok := s.drv.(sharedMemoryConfig); ok {
			if n, err := cfg.MaxSharedMemoryPerBlockOptin(); err == nil && n > staticSharedBytes {
				s.attn.sharedLimitBytes = n
			} else if err != nil {
				s.log.Debug("kernels: opt-in shared memory per block unknown; kernels get the default",
					"default", staticSharedBytes, "error", err)
			}
		}
	}
	return s.attn.sharedLimitBytes
}

// prepareSharedBytes loads kernel k and, when it needs more than the
// default 48 KiB of dynamic shared memory, raises its limit to sizeBytes
// once (s.mu held).
func (s *Set) prepareSharedBytes(k kernelID, sizeBytes int) error {
	fn, err := s.function(k)
	if err != nil {
		return err
	}
	if sizeBytes <= staticSharedBytes {
		return nil
	}
	if s.attn.sharedSet == nil {
		s.attn.sharedSet = make([]int, len(kernelTable))
	}
	if s.attn.sharedSet[k] >= sizeBytes {
		return nil
	}
	cfg, ok := s.drv.(sharedMemoryConfig)
	if !ok {
		return fmt.Errorf("kernels: %s needs %d bytes of shared memory, and the driver cannot raise the 48 KiB default",
			kernelTable[k].name, sizeBytes)
	}
	if err := cfg.SetMaxDynamicSharedBytes(fn, sizeBytes); err != nil {
		return fmt.Errorf("kernels: allowing %s %d bytes of dynamic shared memory: %w", kernelTable[k].name, sizeBytes, err)
	}
	s.attn.sharedSet[k] = sizeBytes
	return nil
}

// attentionWorkspace returns st's split workspace, at least sizeBytes long
// (s.mu held).
func (s *Set) attentionWorkspace(st *cuda.Stream, sizeBytes int64) (cuda.DevicePtr, error) {
	return s.attn.workspaces.get(s.drv, st, sizeBytes)
}

// closeAttention frees the split workspaces (s.mu held, from Close).
func (s *Set) closeAttention() error {
	err := s.attn.workspaces.free(s.drv)
	clear(s.attn.sharedSet)
	return err
}
