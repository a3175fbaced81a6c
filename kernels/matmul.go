package kernels

import (
	"math"
	"math/bits"
	"slices"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// MatMulArgs describes one matrix product for Set.MatMul:
//
//	Y[m, n] = X[m, k] · W[n, k]ᵀ (+ Bias[n])                (WUp == 0)
//	Y[m, n] = silu(X·Wᵀ)[m, n] · (X·WUpᵀ)[m, n]              (WUp != 0: SwiGLU)
//
// X and Y have dtype XType (F32, F16 or BF16) with contiguous rows
// XRowStride and YRowStride elements apart. W (and WUp, of the same dtype
// and stride) is stored as in a GGUF file: N rows over k, each a whole
// number of WType's blocks (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K), rows
// WRowStride elements apart. Sums are F32; each output is rounded once.
// Y must not overlap X, W, WUp or Bias.
type MatMulArgs struct {
	M, N, K int

	X          cuda.DevicePtr
	XRowStride int // elements
	XType      tensor.DType

	W          cuda.DevicePtr
	WUp        cuda.DevicePtr // SwiGLU's up weight; 0 for a plain product
	WRowStride int            // elements, a whole number of WType's blocks
	WType      tensor.DType

	Y          cuda.DevicePtr // dtype XType
	YRowStride int            // elements

	Bias cuda.DevicePtr // F32 [N], or 0; plain products only
}

func (a *MatMulArgs) opName() string {
	if a.WUp != 0 {
		return op.NameMatMulSwiGLU
	}
	return op.NameMatMul
}

// MatMulChoice says what Set.MatMul runs for a product (for logs, tests
// and benchmarks).
type MatMulChoice struct {
	// Kernel is the product's kernel; Reduce the split-k reduction run after
	// it ("" when k is not split).
	Kernel, Reduce string
	Kind           Kind
	// SplitK is the number of k slices (1: none), WorkspaceBytes the partial
	// sums they need.
	SplitK         int
	WorkspaceBytes int64
}

// MatMul queues the product a describes on st (see MatMulArgs). It checks
// the arguments (errors match op.ErrInvalidArgument; the op layer's checks
// run before it in the backend), picks a kernel (planMatMul), and when it
// splits k, grows the stream's split-k workspace first (see
// PrepareMatMul). m = 0 or n = 0 launches nothing; k = 0 writes the bias
// (or zeros).
//
// Kernels: matmul_<w>_<x> (simple), matmul_<w>_f32_simt_m<MR>,
// matmul_<w>_<x>_decode, matmul_<w>_<x>_mma, matmul_<w>_<x>_wgmma (compute
// capability 9.0), then matmul_reduce_<x> after a split.
func (s *Set) MatMul(st *cuda.Stream, a MatMulArgs) error {
	if err := checkMatMulArgs(&a); err != nil {
		return err
	}
	if a.M == 0 || a.N == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	plan := s.planMatMulLocked(&a)
	var ws cuda.DevicePtr
	if plan.SplitK > 1 {
		var err error
		if ws, err = s.matmulWorkspace(st, plan.WorkspaceBytes); err != nil {
			// No room for partial sums: the same kernel without splitting k.
			s.log.Warn("kernels: no split-k workspace, running the matmul without splitting k",
				"bytes", plan.WorkspaceBytes, "error", err)
			plan.SplitK, plan.KPerSplit, plan.WorkspaceBytes = 1, int64(a.K), 0
		}
	}
	return s.launchMatMul(st, &a, &plan, ws)
}

// PrepareMatMul does for a everything MatMul does but launch: it checks
// the arguments, loads the kernels' modules and grows st's split-k
// workspace to what a needs. Call it for the largest shapes before
// capturing a stream into a CUDA graph: a capture cannot allocate, and a
// captured launch keeps using the workspace it was captured with (the Set
// frees no workspace before Close, so a graph's stays valid).
func (s *Set) PrepareMatMul(st *cuda.Stream, a MatMulArgs) error {
	if err := checkMatMulArgs(&a); err != nil {
		return err
	}
	if a.M == 0 || a.N == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return err
	}
	plan := s.planMatMulLocked(&a)
	if err := s.prepareSharedBytes(plan.Kernel, plan.SharedBytes); err != nil {
		return err
	}
	if plan.SplitK > 1 {
		if _, err := s.function(matmulReduce[a.XType]); err != nil {
			return err
		}
		if _, err := s.matmulWorkspace(st, plan.WorkspaceBytes); err != nil {
			return err
		}
	}
	return nil
}

// MatMulChoice reports what MatMul would run for a.
func (s *Set) MatMulChoice(a MatMulArgs) (MatMulChoice, error) {
	if err := checkMatMulArgs(&a); err != nil {
		return MatMulChoice{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	plan := s.planMatMulLocked(&a)
	c := MatMulChoice{Kernel: kernelTable[plan.Kernel].name, Kind: plan.Kind, SplitK: plan.SplitK, WorkspaceBytes: plan.WorkspaceBytes}
	if plan.SplitK > 1 {
		c.Reduce = kernelTable[matmulReduce[a.XType]].name
	}
	return c, nil
}

// planMatMulLocked plans a on this Set's device (s.mu held).
func (s *Set) planMatMulLocked(a *MatMulArgs) matmulPlan {
	_, canAlloc := s.drv.(deviceMemory)
	return planMatMul(matmulProblem{
		M: int64(a.M), N: int64(a.N), K: int64(a.K),
		WType: a.WType, XType: a.XType, SwiGLU: a.WUp != 0,
		CC: s.cc, SMCount: s.multiprocessorCount(), Variant: s.sel,
		SplitOK: canAlloc, HopperOK: s.matmulHopperOK(a),
	})
}

// matmulHopperOK reports whether the Hopper GEMM can run a on this device
// (s.mu held): only asked where dispatch would consider it (compute
// capability 9.0, F16/BF16 activations, m > 16, fast variants allowed), it
// needs the family's sm_90a module (sm90aReady) and a block that can get the
// kernels' dynamic shared memory.
func (s *Set) matmulHopperOK(a *MatMulArgs) bool {
	if s.cc != (ComputeCapability{9, 0}) || int64(a.M) <= decodeXRows || a.K == 0 ||
		(a.XType != tensor.F16 && a.XType != tensor.BF16) || !fastAllowed(s.sel, FamilyMatMulWGMMA, KindWGMMA) {
		return false
	}
	return s.sm90aReady(FamilyMatMulWGMMA) && s.sharedLimit() >= wgmmaSharedBytes
}

// maxGridY bounds the m tiles of one launch; a larger m is split into
// several launches over consecutive rows.
const maxGridY = maxGridYZ

// launchMatMul packs and launches plan for a (s.mu held); ws is the split-k
// workspace when plan.SplitK > 1.
func (s *Set) launchMatMul(st *cuda.Stream, a *MatMulArgs, plan *matmulPlan, ws cuda.DevicePtr) error {
	p := &s.mm.params
	fillMatMulParams(p, a, plan, ws)
	if plan.Kind == KindSimple {
		s.args.Reset()
		cuda.Struct(&s.args, p)
		lc := launchConfig{grid: matmulSimpleGrid(p.M, p.N), block: cuda.D1(matmulSimpleThreads)}
		return s.launch(plan.Kernel, lc, st)
	}
	if err := s.prepareSharedBytes(plan.Kernel, plan.SharedBytes); err != nil {
		return err
	}
	// One launch per maxGridY m tiles (only an m of millions of rows needs
	// more than one); split-k happens only with few tiles, so in one launch.
	xBytes := int64(a.XType.BlockBytes())
	rowsPerLaunch := maxGridY * plan.MRowsPerBlock
	for m0 := int64(0); m0 < int64(a.M); m0 += rowsPerLaunch {
		rows := min(rowsPerLaunch, int64(a.M)-m0)
		p.M = rows
		p.X = uint64(a.X) + uint64(m0*int64(a.XRowStride)*xBytes)
		p.Y = uint64(a.Y) + uint64(m0*int64(a.YRowStride)*xBytes)
		s.args.Reset()
		cuda.Struct(&s.args, p)
		lc := launchConfig{grid: matmulFastGrid(plan, rows), block: cuda.D1(plan.Threads), sharedBytes: plan.SharedBytes}
		if err := s.launch(plan.Kernel, lc, st); err != nil {
			return err
		}
		if plan.SplitK > 1 {
			lc := launchConfig{grid: matmulSimpleGrid(rows, p.N), block: cuda.D1(matmulSimpleThreads)}
			if err := s.launch(matmulReduce[a.XType], lc, st); err != nil {
				return err
			}
		}
	}
	return nil
}

// fillMatMulParams packs a, planned as plan, into p (for every row of X;
// launchMatMul narrows M, X and Y per launch). ws is the split-k workspace.
func fillMatMulParams(p *matmulParams, a *MatMulArgs, plan *matmulPlan, ws cuda.DevicePtr) {
	*p = matmulParams{
		X: uint64(a.X), W: uint64(a.W), WUp: uint64(a.WUp), Y: uint64(a.Y), Bias: uint64(a.Bias), Partials: uint64(ws),
		M: int64(a.M), N: int64(a.N), K: int64(a.K),
		XRowStride: int64(a.XRowStride), YRowStride: int64(a.YRowStride),
		WRowStrideBytes: weightRowStrideBytes(a),
		NVirtual:        plan.NVirtual, KPerSplit: plan.KPerSplit,
		SplitK: int32(plan.SplitK),
	}
	if a.WUp != 0 {
		p.SwiGLU = 1
	}
	xBytes := int64(a.XType.BlockBytes())
	if uint64(a.X)%16 == 0 && int64(a.XRowStride)*xBytes%16 == 0 {
		p.XVec16 = 1
	}
	if uint64(a.W)%16 == 0 && uint64(a.WUp)%16 == 0 && p.WRowStrideBytes%16 == 0 {
		p.WVec16 = 1
	}
}

// matmulSimpleGrid is the grid of the grid-stride kernels (simple and the
// split-k reduction) over rows·n outputs.
func matmulSimpleGrid(rows, n int64) cuda.Dim3 {
	return cuda.D1(int(gridFor(rows*n, matmulSimpleThreads)))
}

// matmulFastGrid is the grid of a fast kernel's launch over rows X rows:
// n tiles × m tiles × k slices.
func matmulFastGrid(plan *matmulPlan, rows int64) cuda.Dim3 {
	return cuda.Dim3{X: uint32(plan.NTiles), Y: uint32(ceilDiv(rows, plan.MRowsPerBlock)), Z: uint32(plan.SplitK)}
}

// weightRowStrideBytes is W's row stride in bytes.
func weightRowStrideBytes(a *MatMulArgs) int64 {
	return int64(a.WRowStride/a.WType.BlockElems()) * int64(a.WType.BlockBytes())
}

// checkMatMulArgs checks what the kernels rely on; errors name the
// argument and match op.ErrInvalidArgument.
func checkMatMulArgs(a *MatMulArgs) error {
	name := a.opName()
	if !a.XType.IsFloat() {
		return argError(name, "x", "dtype %v is not one of F32, F16, BF16", a.XType)
	}
	if !slices.Contains(matmulWeightTypes, a.WType) {
		return argError(name, "w", "dtype %v is not supported (supported: %v)", a.WType, matmulWeightTypes)
	}
	if a.M < 0 || a.N < 0 || a.K < 0 {
		return argError(name, "shape", "m = %d, n = %d, k = %d: sizes must not be negative", a.M, a.N, a.K)
	}
	be := a.WType.BlockElems()
	if a.K%be != 0 {
		return argError(name, "w", "k = %d is not a multiple of %d, the %v block size", a.K, be, a.WType)
	}
	if a.WRowStride < a.K || a.WRowStride%be != 0 {
		return argError(name, "w", "row stride %d elements: must be at least k = %d and whole %d-element %v blocks", a.WRowStride, a.K, be, a.WType)
	}
	if a.XRowStride < a.K {
		return argError(name, "x", "row stride %d elements is less than k = %d", a.XRowStride, a.K)
	}
	if a.YRowStride < a.N {
		return argError(name, "dst", "row stride %d elements is less than n = %d", a.YRowStride, a.N)
	}
	if a.WUp != 0 && a.Bias != 0 {
		return argError(name, "Bias", "a SwiGLU product takes no bias")
	}
	if a.M == 0 || a.N == 0 {
		return nil
	}
	xBytes := int64(a.XType.BlockBytes())
	wRowBytes := int64(a.WRowStride/be) * int64(a.WType.BlockBytes())
	kBytes := int64(a.K/be) * int64(a.WType.BlockBytes())
	// The byte regions the kernels read (x, w, wUp, Bias) and write (dst):
	// a fixed array, so that checking does not allocate.
	var regions [5]matmulRegion
	n := 0
	add := func(r matmulRegion) {
		regions[n] = r
		n++
	}
	add(matmulRegion{"dst", a.Y, uint64(xBytes), int64(a.M), int64(a.YRowStride) * xBytes, int64(a.N) * xBytes})
	if a.K > 0 {
		add(matmulRegion{"x", a.X, uint64(xBytes), int64(a.M), int64(a.XRowStride) * xBytes, int64(a.K) * xBytes})
		add(matmulRegion{"w", a.W, elemAlign(a.WType), int64(a.N), wRowBytes, kBytes})
		if a.WUp != 0 {
			add(matmulRegion{"wUp", a.WUp, elemAlign(a.WType), int64(a.N), wRowBytes, kBytes})
		}
	}
	if a.Bias != 0 {
		add(matmulRegion{"Bias", a.Bias, 4, 1, 0, int64(a.N) * 4})
	}
	for i := range n {
		if err := regions[i].check(name); err != nil {
			return err
		}
	}
	// dst may not overlap an input: the kernels read them while writing it.
	y := &regions[0]
	for i := 1; i < n; i++ {
		if r := &regions[i]; r.lo() < y.hi() && y.lo() < r.hi() {
			return argError(name, "dst", "bytes [%#x, %#x) overlap %s's [%#x, %#x)", y.lo(), y.hi(), r.arg, r.lo(), r.hi())
		}
	}
	return nil
}

// matmulRegion is the bytes of one operand: rows of rowBytes, rowStride
// bytes apart, from ptr.
type matmulRegion struct {
	arg                       string
	ptr                       cuda.DevicePtr
	align                     uint64
	rows, rowStride, rowBytes int64
}

func (r *matmulRegion) lo() uint64 { return uint64(r.ptr) }

// hi is one past the last byte (check has verified that it fits).
func (r *matmulRegion) hi() uint64 {
	return uint64(r.ptr) + uint64(r.rows-1)*uint64(r.rowStride) + uint64(r.rowBytes)
}

// check: a non-zero, aligned address, and a last byte inside the address space.
func (r *matmulRegion) check(name string) error {
	if r.ptr == 0 {
		return argError(name, r.arg, "device address is 0")
	}
	if uint64(r.ptr)%r.align != 0 {
		return argError(name, r.arg, "device address %#x is not aligned to %d bytes", uint64(r.ptr), r.align)
	}
	hi, lo := bits.Mul64(uint64(r.rows-1), uint64(r.rowStride))
	end, carry := bits.Add64(lo, uint64(r.rowBytes), 0)
	_, carry2 := bits.Add64(end, uint64(r.ptr), 0)
	if hi != 0 || carry != 0 || carry2 != 0 || end > math.MaxInt64 {
		return argError(name, r.arg, "%d rows of %d bytes, %d bytes apart, from %#x do not fit in the address space",
			r.rows, r.rowBytes, r.rowStride, uint64(r.ptr))
	}
	return nil
}
