package llama

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/kiln-gpu/kiln/models/gguf"
	"github.com/kiln-gpu/kiln/models/tokenizer"
	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/gpu"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Options configure Load.
type Options struct {
	// MaxSequences is how many sequences may hold KV pages at once. 0: 4.
	MaxSequences int
	// ContextLen is the longest sequence, in tokens. 0: the model's context
	// length, at most 4096.
	ContextLen int
	// PageSize is the KV cache page size in tokens. 0: 64 (the attention
	// kernels' key tile, so a tile never straddles two pages).
	PageSize int
	// KVPages is the number of KV pages. 0: enough for MaxSequences sequences
	// of ContextLen tokens.
	KVPages int
	// MaxBatchTokens is the most tokens one Step may process (all sequences
	// together). 0: 512.
	MaxBatchTokens int
	// ActivationType is the dtype of activations (the inputs and outputs
	// of the matrix products and of attention) and of the KV cache.
	// Invalid (the zero value) picks: F32 on the CPU or when the model's
	// matrices are F32; otherwise BF16 when they are BF16, else F16. F16
	// overflows above 65504: for models known for very large activations
	// choose BF16 (range) or F32 (the GPU then runs the simple, slower
	// attention kernels).
	ActivationType tensor.DType
	// ResidualType is the dtype of the residual stream: the running sum
	// that every block adds its attention and FFN outputs to, and that the
	// norms read. Invalid (the zero value) picks F32, as llama.cpp keeps it:
	// a sum over dozens of blocks kept in F16 or BF16 loses the small
	// contributions of later blocks to rounding (and F16 overflows first
	// there). When it differs from ActivationType, each norm writes F32 and
	// converts, and each block output is converted to F32 before the add:
	// four small conversions per block, and 2 · Dim · 4 more scratch bytes
	// per batch token. Set it to ActivationType to keep the whole stream in
	// one dtype.
	ResidualType tensor.DType
	// DisableGraphs turns off CUDA graphs. By default, on a backend that can
	// capture graphs (the CUDA backend) and without tensor parallelism, a
	// decode step (every request one token, last-token logits) runs as a
	// graph captured once per batch bucket (1, 2, 4, 8, ... sequences, the
	// batch padded up to its bucket): one launch instead of a few hundred.
	DisableGraphs bool
	// Progress, when not nil, is called as weights load, with bytes done and total.
	Progress func(doneBytes, totalBytes int64)
	// Logger receives load diagnostics. nil discards them.
	Logger *slog.Logger
}

func (o Options) withDefaults(c Config) Options {
	if o.MaxSequences <= 0 {
		o.MaxSequences = 4
	}
	if o.ContextLen <= 0 {
		o.ContextLen = min(c.ContextLen, 4096)
	}
	if o.PageSize <= 0 {
		o.PageSize = 64
	}
	if o.KVPages <= 0 {
		o.KVPages = o.MaxSequences * ((o.ContextLen + o.PageSize - 1) / o.PageSize)
	}
	if o.MaxBatchTokens <= 0 {
		o.MaxBatchTokens = 512
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Model is a loaded model. See the package doc for the concurrency rules.
type Model struct {
	Config    Config
	Tokenizer *tokenizer.Tokenizer
	opts      Options
	dev       backend.Backend // shards[0].dev
	shards    []*shard        // one per device of the tensor-parallel group
	file      *gguf.File      // kept open: CPU weights point into its mapping
	ownsFile  bool
	actType   tensor.DType
	resType   tensor.DType // the residual stream's (Options.ResidualType, resolved)
	kv        *kvCache     // the page allocator (the pages live in each shard)
	log       *slog.Logger

	stepMu   sync.Mutex // one Step (or Fork) at a time
	seqMu    sync.Mutex // guards sequence bookkeeping, liveSeqs and the page allocator
	liveSeqs int
	closed   bool // guarded by stepMu and seqMu

	graphs map[int]*decodeGraph // captured decode steps by batch bucket; guarded by stepMu
	peers  []peerCopier         // per shard, when every shard's backend copies from peers (CUDA); else nil
	nccl   *gpu.NCCLGroup       // the all-reduce's first choice, when every shard is a CUDA backend and NCCL is usable; else nil
}

// shard is one device's part of a model. Without tensor parallelism there
// is one shard holding everything. With n shards (Megatron-style), shard i
// holds query heads [i·H/n, (i+1)·H/n) with their KV heads, FFN rows
// [i·F/n, (i+1)·F/n), and the matching column slices of the output
// projections, whose partial products are summed across shards
// (all-reduce); the embedding table and norms are replicated, and shard 0
// alone computes the logits.
type shard struct {
	index                    int
	dev                      backend.Backend
	nHeads, nKVHeads, ffnDim int // this shard's share
	w                        weights
	// k and v hold each layer's KV pages with this shard's KV heads:
	// [KVPages+1, pageSize, nKVHeads, headDim]. Page KVPages is the padding
	// page that the padded rows of a captured decode step write into.
	k, v []tensor.Tensor
}

type weights struct {
	tokEmb, outNorm, output, ropeFreqs tensor.Tensor // output: shard 0 only
	layers                             []layerWeights
	owned                              []tensor.Tensor // allocated on the device (freed on Close)
}

type layerWeights struct {
	attnNorm, wq, wk, wv, wo, bq, bk, bv tensor.Tensor
	ffnNorm, wGate, wUp, wDown           tensor.Tensor
}

// MemoryEstimate is what a model needs on its device, in bytes.
type MemoryEstimate struct {
	// WeightBytes is the size of the weights; on the CPU they are used in
	// place from the file's mapping and not allocated.
	WeightBytes  int64
	KVCacheBytes int64
	// ScratchBytes bounds the activations of one Step of MaxBatchTokens,
	// plus (on a device that is not the CPU, without tensor parallelism)
	// the buffers of the captured decode graphs.
	ScratchBytes int64
	// DeviceBytes is what Load allocates: weights (unless used in place), KV
	// cache and scratch.
	DeviceBytes int64
}

// Estimate returns the memory a model would need with opts on one device,
// without allocating anything. inPlaceWeights says whether weights are used
// from the file's mapping (the CPU backend) rather than copied to the device.
func Estimate(f *gguf.File, opts Options, inPlaceWeights bool) (MemoryEstimate, error) {
	c, err := ReadConfig(f)
	if err != nil {
		return MemoryEstimate{}, err
	}
	return estimateShard(f, c, opts.withDefaults(c), 1, 0, inPlaceWeights), nil
}

// estimateShard is the memory shard index of nShards needs.
func estimateShard(f *gguf.File, c Config, opts Options, nShards, index int, inPlaceWeights bool) MemoryEstimate {
	act := opts.ActivationType
	if !act.Valid() {
		act = tensor.F32
	}
	n := int64(nShards)
	var e MemoryEstimate
	for _, t := range f.Tensors {
		switch {
		case isSplitTensor(t.Name):
			e.WeightBytes += (t.SizeBytes + n - 1) / n
		case t.Name == "output.weight" && index != 0:
		default:
			e.WeightBytes += t.SizeBytes
		}
	}
	res := opts.ResidualType
	if !res.Valid() {
		res = tensor.F32
	}
	es := int64(act.BlockBytes())
	kvHeadBytes := int64(c.NKVHeads/nShards*c.HeadDim) * es
	e.KVCacheBytes = 2 * int64(c.NLayers) * int64(opts.KVPages+1) * int64(opts.PageSize) * kvHeadBytes
	t := int64(opts.MaxBatchTokens)
	q := int64(c.NHeads / nShards * c.HeadDim)
	kv := int64(c.NKVHeads / nShards * c.HeadDim)
	perToken := (3*int64(c.Dim) + 2*q + 2*kv + int64(c.FFNDim/nShards)) * es
	e.ScratchBytes = t*perToken + t*int64(c.Dim)*4 + 1<<20
	if res != act {
		// x in the residual dtype instead of the activations', and the
		// norm output and block output in the residual dtype before their
		// conversions.
		e.ScratchBytes += t * int64(c.Dim) * (3*int64(res.BlockBytes()) - es)
	}
	if index == 0 {
		e.ScratchBytes += t * int64(c.VocabSize) * 4
	}
	if !inPlaceWeights && nShards == 1 && !opts.DisableGraphs {
		// Decode graphs (CUDA): each batch bucket 1, 2, 4, ... up to
		// MaxSequences keeps its own step buffers, logits included; the
		// buckets add up to less than twice the largest.
		maxBucket := int64(1)
		for maxBucket < int64(opts.MaxSequences) {
			maxBucket *= 2
		}
		maxBucket = min(maxBucket, t)
		e.ScratchBytes += 2 * maxBucket * (perToken + int64(c.Dim)*4 + int64(c.VocabSize)*4)
	}
	e.DeviceBytes = e.KVCacheBytes + e.ScratchBytes
	if !inPlaceWeights {
		e.DeviceBytes += e.WeightBytes
	}
	return e
}

// splitSuffixes name the tensors tensor parallelism divides among shards.
var splitSuffixes = []string{
	".attn_q.weight", ".attn_k.weight", ".attn_v.weight", ".attn_output.weight",
	".attn_q.bias", ".attn_k.bias", ".attn_v.bias",
	".ffn_gate.weight", ".ffn_up.weight", ".ffn_down.weight",
}

func isSplitTensor(name string) bool {
	for _, s := range splitSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// hostWrapper is the CPU backend's way to use the file's bytes in place.
type hostWrapper interface {
	WrapReadOnly(data []byte, dt tensor.DType, shape ...int) (tensor.Tensor, error)
}

// memoryInfo is the GPU backend's free/total device memory.
type memoryInfo interface {
	MemoryInfo() (freeBytes, totalBytes int64, err error)
}

// unwrap finds the backend behind wrappers such as *backend.Device.
func unwrap[T any](dev backend.Backend) (T, bool) {
	for {
		if t, ok := dev.(T); ok {
			return t, true
		}
		u, ok := dev.(interface{ Unwrap() backend.Backend })
		if !ok {
			var zero T
			return zero, false
		}
		dev = u.Unwrap()
	}
}

// Load opens a GGUF file and loads its model onto dev. The file stays open
// (mapped) until Close.
func Load(ctx context.Context, dev backend.Backend, path string, opts Options) (*Model, error) {
	return LoadParallel(ctx, []backend.Backend{dev}, path, opts)
}

// LoadParallel is Load over a tensor-parallel group of devices (see
// LoadFileParallel).
func LoadParallel(ctx context.Context, devs []backend.Backend, path string, opts Options) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := LoadFileParallel(ctx, devs, f, opts)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	m.ownsFile = true
	return m, nil
}

// LoadFile loads the model in an opened GGUF file onto dev. The caller keeps
// f open while the model is in use (on the CPU the weights are used in place
// from its bytes) and closes it after Model.Close.
//
// Before allocating anything it checks the memory estimate against the
// device's free memory (where the backend reports it) and returns an error
// matching backend.ErrOutOfMemory with the sizes when it does not fit. Any
// failure part-way frees everything loaded so far.
func LoadFile(ctx context.Context, dev backend.Backend, f *gguf.File, opts Options) (*Model, error) {
	return LoadFileParallel(ctx, []backend.Backend{dev}, f, opts)
}

// LoadFileParallel loads the model sharded over devs, a tensor-parallel
// group (one device: no parallelism). Shard i runs on devs[i] with its share
// of the attention heads and FFN rows; the row-parallel products (attention
// output, FFN down) are summed across shards after each layer half
// (all-reduce), by the first of these that applies:
//   - NCCL, when every device is a CUDA backend on its own GPU and
//     libnccl.so.2 (or the file KILN_NCCL_LIBRARY names) loads and forms a
//     communicator over them; NCCL's reduction order is its own, fixed for a
//     given group;
//   - peer copies, when every device is a CUDA backend: the partial sums are
//     gathered on the first device and added in shard order;
//   - the host: the partial sums are downloaded and added in F32 in shard
//     order, so the CPU backend can stand for N devices (open it N times).
//
// The choice is logged at Debug. The number of KV heads and the FFN width
// must divide by len(devs),
// and each shard's slice of a block-quantised matrix must start on a block
// boundary; otherwise it is an error naming the tensor.
//
// Each device's share is checked against its free memory before anything is
// allocated, as in LoadFile.
func LoadFileParallel(ctx context.Context, devs []backend.Backend, f *gguf.File, opts Options) (*Model, error) {
	if len(devs) == 0 {
		return nil, fmt.Errorf("llama: load %s: no devices", f.Path)
	}
	for i, d := range devs {
		if d == nil {
			return nil, fmt.Errorf("llama: load %s: device %d is nil", f.Path, i)
		}
		for j := range i {
			if devs[j] == d {
				return nil, fmt.Errorf("llama: load %s: device %d (%s) appears twice in the group; open a backend per shard", f.Path, i, d.Name())
			}
		}
	}
	c, err := ReadConfig(f)
	if err != nil {
		return nil, err
	}
	n := len(devs)
	if c.NKVHeads%n != 0 || c.FFNDim%n != 0 {
		return nil, fmt.Errorf("llama: %s: tensor parallelism over %d devices needs head_count_kv (%d) and feed_forward_length (%d) to be multiples of %d",
			f.Path, n, c.NKVHeads, c.FFNDim, n)
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		return nil, fmt.Errorf("llama: %s: %w", f.Path, err)
	}
	if tok.VocabSize() != c.VocabSize {
		return nil, fmt.Errorf("llama: %s: the tokenizer has %d tokens, token_embd.weight %d rows", f.Path, tok.VocabSize(), c.VocabSize)
	}
	opts = opts.withDefaults(c)
	if opts.ContextLen > c.ContextLen {
		opts.Logger.Warn("context length beyond the model's training length", "requested", opts.ContextLen, "model", c.ContextLen)
	}
	hosts := make([]hostWrapper, n)
	allInPlace := true
	for i, d := range devs {
		var ok bool
		hosts[i], ok = unwrap[hostWrapper](d)
		allInPlace = allInPlace && ok
	}
	act, err := chooseActivationType(f, opts.ActivationType, allInPlace)
	if err != nil {
		return nil, err
	}
	opts.ActivationType = act
	res, err := chooseResidualType(opts.ResidualType)
	if err != nil {
		return nil, err
	}
	opts.ResidualType = res
	var totalWeightBytes int64
	for i, d := range devs {
		est := estimateShard(f, c, opts, n, i, hosts[i] != nil)
		totalWeightBytes += est.WeightBytes
		mi, ok := unwrap[memoryInfo](d)
		if !ok {
			continue
		}
		free, total, err := mi.MemoryInfo()
		if err == nil && est.DeviceBytes > free {
			return nil, fmt.Errorf("llama: %s on %s: %w: the model needs %d bytes (weights %d, KV cache %d, scratch %d), the device has %d free of %d; lower ContextLen, MaxSequences or MaxBatchTokens",
				f.Path, d.Name(), backend.ErrOutOfMemory, est.DeviceBytes, est.WeightBytes, est.KVCacheBytes, est.ScratchBytes, free, total)
		}
	}
	m := &Model{Config: c, Tokenizer: tok, opts: opts, dev: devs[0], file: f, actType: act, resType: res, log: opts.Logger}
	m.kv = newPageAllocator(opts)
	if n > 1 {
		var ncclErr error
		m.nccl, ncclErr = newNCCLGroup(devs)
		if m.nccl == nil {
			m.peers = make([]peerCopier, n)
			for i, d := range devs {
				pc, ok := unwrap[peerCopier](d)
				if !ok {
					m.peers = nil
					break
				}
				m.peers[i] = pc
			}
		}
		method := "host"
		switch {
		case m.nccl != nil:
			method = "nccl"
		case m.peers != nil:
			method = "peer copies"
		}
		m.log.Debug("tensor-parallel all-reduce", "method", method, "devices", n, "nccl_unused_because", ncclErr)
	}
	var progress loadProgress
	progress.total, progress.report = totalWeightBytes, opts.Progress
	for i, d := range devs {
		sh := &shard{index: i, dev: d, nHeads: c.NHeads / n, nKVHeads: c.NKVHeads / n, ffnDim: c.FFNDim / n}
		m.shards = append(m.shards, sh)
		if err := m.loadWeights(ctx, sh, n, hosts[i], &progress); err != nil {
			m.freeAll()
			return nil, err
		}
		if err := m.allocKV(sh); err != nil {
			m.freeAll()
			return nil, err
		}
	}
	m.log.Debug("model loaded", "name", c.Name, "arch", c.Arch, "params", c.ParamCount(), "activations", act,
		"kv_pages", opts.KVPages, "page_size", opts.PageSize, "device", devs[0].Name(), "tensor_parallel", n)
	return m, nil
}

// chooseActivationType applies Options.ActivationType's rule.
func chooseActivationType(f *gguf.File, want tensor.DType, onCPU bool) (tensor.DType, error) {
	if want.Valid() {
		if !want.IsFloat() {
			return 0, fmt.Errorf("llama: ActivationType %v: expected F32, F16 or BF16", want)
		}
		return want, nil
	}
	if onCPU {
		return tensor.F32, nil
	}
	q, ok := f.Tensor("blk.0.attn_q.weight")
	switch {
	case !ok || q.DType == tensor.F32:
		return tensor.F32, nil
	case q.DType == tensor.BF16:
		return tensor.BF16, nil
	}
	return tensor.F16, nil
}

// chooseResidualType resolves Options.ResidualType: F32 unless set.
func chooseResidualType(want tensor.DType) (tensor.DType, error) {
	if !want.Valid() {
		return tensor.F32, nil
	}
	if !want.IsFloat() {
		return 0, fmt.Errorf("llama: ResidualType %v: expected F32, F16 or BF16", want)
	}
	return want, nil
}

// Close frees the model's device memory (and closes the file if Load opened
// it). Sequences become unusable.
func (m *Model) Close() error {
	m.stepMu.Lock()
	defer m.stepMu.Unlock()
	m.seqMu.Lock()
	if m.closed {
		m.seqMu.Unlock()
		return nil
	}
	m.closed = true
	m.seqMu.Unlock()
	err := m.freeAll()
	if m.ownsFile {
		err = errors.Join(err, m.file.Close())
	}
	return err
}

// freeAll releases captured graphs, KV pages and weights (stepMu held, or
// during Load).
func (m *Model) freeAll() error {
	var errs []error
	errs = append(errs, m.closeGraphs())
	if m.nccl != nil {
		errs = append(errs, m.nccl.Close())
		m.nccl = nil
	}
	for _, sh := range m.shards {
		for _, t := range append(sh.k, sh.v...) {
			errs = append(errs, sh.dev.Free(t))
		}
		sh.k, sh.v = nil, nil
		for _, t := range sh.w.owned {
			errs = append(errs, sh.dev.Free(t))
		}
		sh.w.owned = nil
	}
	return errors.Join(errs...)
}

// allocKV allocates sh's KV pages for every layer (plus the padding page).
func (m *Model) allocKV(sh *shard) error {
	c, o := m.Config, m.opts
	for i := 0; i < c.NLayers; i++ {
		for _, dst := range []*[]tensor.Tensor{&sh.k, &sh.v} {
			t, err := sh.dev.Alloc(m.actType, o.KVPages+1, o.PageSize, sh.nKVHeads, c.HeadDim)
			if err != nil {
				return fmt.Errorf("llama: KV cache on %s (%d pages of %d tokens, layer %d): %w", sh.dev.Name(), o.KVPages, o.PageSize, i, err)
			}
			*dst = append(*dst, t)
		}
	}
	return nil
}

// loadProgress adds up loaded bytes over all shards for Options.Progress.
type loadProgress struct {
	done, total int64
	report      func(doneBytes, totalBytes int64)
}

func (p *loadProgress) add(n int64) {
	p.done += n
	if p.report != nil {
		p.report(p.done, p.total)
	}
}

// part is which slice of a tensor a shard loads: rows (the outer dimension)
// or columns (the inner one) [lo, hi); all means the whole tensor.
type part struct {
	dim    int // -1: all; 0: rows; 1: columns
	lo, hi int
}

var all = part{dim: -1}

// loadWeights puts sh's share of every tensor the model uses on its device:
// in place on the CPU where the share is contiguous in the file, copied
// otherwise.
func (m *Model) loadWeights(ctx context.Context, sh *shard, nShards int, host hostWrapper, progress *loadProgress) error {
	c := m.Config
	load := func(name string, allowed []tensor.DType, shape []int, p part) (tensor.Tensor, error) {
		if err := ctx.Err(); err != nil {
			return tensor.Tensor{}, err
		}
		info, ok := m.file.Tensor(name)
		if !ok {
			return tensor.Tensor{}, fmt.Errorf("llama: %s: no tensor %s", m.file.Path, name)
		}
		if !slices.Contains(allowed, info.DType) {
			return tensor.Tensor{}, fmt.Errorf("llama: %s: tensor %s has type %v (ggml type %d); supported here: %v",
				m.file.Path, name, info.DType, info.GGMLType, allowed)
		}
		if !slices.Equal(info.Shape, shape) {
			return tensor.Tensor{}, fmt.Errorf("llama: %s: tensor %s has shape %v, expected %v", m.file.Path, name, info.Shape, shape)
		}
		data, err := m.file.TensorData(info)
		if err != nil {
			return tensor.Tensor{}, err
		}
		data, shape, copied, err := slicePart(data, info.DType, shape, p)
		if err != nil {
			return tensor.Tensor{}, fmt.Errorf("llama: %s: tensor %s, shard %d of %d: %w", m.file.Path, name, sh.index, nShards, err)
		}
		var t tensor.Tensor
		if host != nil && !copied {
			t, err = host.WrapReadOnly(data, info.DType, shape...)
		} else {
			if t, err = sh.dev.Alloc(info.DType, shape...); err == nil {
				sh.w.owned = append(sh.w.owned, t)
				err = sh.dev.Upload(t, data)
			}
		}
		if err != nil {
			return tensor.Tensor{}, fmt.Errorf("llama: %s: tensor %s: %w", m.file.Path, name, err)
		}
		progress.add(int64(len(data)))
		return t, nil
	}
	matrix := op.MatMulWeightTypes
	vector := []tensor.DType{tensor.F32}
	var err error
	w := &sh.w
	q, kv := c.NHeads*c.HeadDim, c.NKVHeads*c.HeadDim
	i := sh.index
	qPart := part{dim: 0, lo: i * sh.nHeads * c.HeadDim, hi: (i + 1) * sh.nHeads * c.HeadDim}
	kvPart := part{dim: 0, lo: i * sh.nKVHeads * c.HeadDim, hi: (i + 1) * sh.nKVHeads * c.HeadDim}
	ffnPart := part{dim: 0, lo: i * sh.ffnDim, hi: (i + 1) * sh.ffnDim}
	oPart := part{dim: 1, lo: qPart.lo, hi: qPart.hi}
	downPart := part{dim: 1, lo: ffnPart.lo, hi: ffnPart.hi}
	if nShards == 1 {
		qPart, kvPart, ffnPart, oPart, downPart = all, all, all, all, all
	}
	if w.tokEmb, err = load("token_embd.weight", op.EmbeddingTableTypes, []int{c.VocabSize, c.Dim}, all); err != nil {
		return err
	}
	w.layers = make([]layerWeights, c.NLayers)
	type step struct {
		dst     *tensor.Tensor
		name    string
		allowed []tensor.DType
		shape   []int
		part    part
	}
	for li := range w.layers {
		l := &w.layers[li]
		p := fmt.Sprintf("blk.%d.", li)
		steps := []step{
			{&l.attnNorm, "attn_norm.weight", vector, []int{c.Dim}, all},
			{&l.wq, "attn_q.weight", matrix, []int{q, c.Dim}, qPart},
			{&l.wk, "attn_k.weight", matrix, []int{kv, c.Dim}, kvPart},
			{&l.wv, "attn_v.weight", matrix, []int{kv, c.Dim}, kvPart},
			{&l.wo, "attn_output.weight", matrix, []int{c.Dim, q}, oPart},
			{&l.ffnNorm, "ffn_norm.weight", vector, []int{c.Dim}, all},
			{&l.wGate, "ffn_gate.weight", matrix, []int{c.FFNDim, c.Dim}, ffnPart},
			{&l.wUp, "ffn_up.weight", matrix, []int{c.FFNDim, c.Dim}, ffnPart},
			{&l.wDown, "ffn_down.weight", matrix, []int{c.Dim, c.FFNDim}, downPart},
		}
		if c.QKVBias {
			steps = append(steps,
				step{&l.bq, "attn_q.bias", vector, []int{q}, qPart},
				step{&l.bk, "attn_k.bias", vector, []int{kv}, kvPart},
				step{&l.bv, "attn_v.bias", vector, []int{kv}, kvPart})
		}
		for _, s := range steps {
			if *s.dst, err = load(p+s.name, s.allowed, s.shape, s.part); err != nil {
				return err
			}
		}
		if l.wGate.DType() != l.wUp.DType() {
			return fmt.Errorf("llama: %s: %sffn_gate.weight is %v but ffn_up.weight is %v (the fused SwiGLU needs one type)",
				m.file.Path, p, l.wGate.DType(), l.wUp.DType())
		}
	}
	if w.outNorm, err = load("output_norm.weight", vector, []int{c.Dim}, all); err != nil {
		return err
	}
	if sh.index == 0 {
		if c.TiedEmbeddings {
			if !slices.Contains(matrix, w.tokEmb.DType()) {
				return fmt.Errorf("llama: %s: tied output uses token_embd.weight of type %v, which the matrix product does not take", m.file.Path, w.tokEmb.DType())
			}
			w.output = w.tokEmb
		} else if w.output, err = load("output.weight", matrix, []int{c.VocabSize, c.Dim}, all); err != nil {
			return err
		}
	}
	if c.RopeFreqFactors {
		if w.ropeFreqs, err = load("rope_freqs.weight", vector, []int{c.RopeDims / 2}, all); err != nil {
			return err
		}
	}
	return nil
}

// slicePart cuts part p out of a tensor's bytes (shape in kiln order, one
// or two dimensions). Rows are contiguous and returned in place; columns are
// gathered into a new slice (copied = true), and must start and end on
// block boundaries of a block-quantised type.
func slicePart(data []byte, dt tensor.DType, shape []int, p part) (out []byte, outShape []int, copied bool, err error) {
	if p.dim < 0 {
		return data, shape, false, nil
	}
	inner := shape[len(shape)-1]
	if p.dim == 0 {
		outer := shape[0]
		if p.lo < 0 || p.hi > outer || p.lo >= p.hi {
			return nil, nil, false, fmt.Errorf("rows [%d, %d) outside [0, %d)", p.lo, p.hi, outer)
		}
		if len(shape) == 1 { // a vector: rows are elements
			lo, err1 := tensor.SizeBytes(dt, p.lo)
			hi, err2 := tensor.SizeBytes(dt, p.hi)
			if err := errors.Join(err1, err2); err != nil {
				return nil, nil, false, err
			}
			return data[lo:hi], []int{p.hi - p.lo}, false, nil
		}
		rowBytes, err := tensor.SizeBytes(dt, 1, inner)
		if err != nil {
			return nil, nil, false, err
		}
		return data[int64(p.lo)*rowBytes : int64(p.hi)*rowBytes], []int{p.hi - p.lo, inner}, false, nil
	}
	if len(shape) != 2 || p.lo < 0 || p.hi > inner || p.lo >= p.hi {
		return nil, nil, false, fmt.Errorf("columns [%d, %d) of shape %v", p.lo, p.hi, shape)
	}
	rowBytes, err := tensor.SizeBytes(dt, 1, inner)
	if err != nil {
		return nil, nil, false, err
	}
	if bs := dt.BlockElems(); p.lo%bs != 0 || p.hi%bs != 0 {
		return nil, nil, false, fmt.Errorf("columns [%d, %d) do not start and end on %v blocks of %d", p.lo, p.hi, dt, bs)
	}
	lo, err1 := tensor.SizeBytes(dt, 1, p.lo)
	width, err2 := tensor.SizeBytes(dt, 1, p.hi-p.lo)
	if err := errors.Join(err1, err2); err != nil {
		return nil, nil, false, err
	}
	rows := shape[0]
	out = make([]byte, int64(rows)*width)
	for r := range rows {
		copy(out[int64(r)*width:], data[int64(r)*rowBytes+lo:int64(r)*rowBytes+lo+width])
	}
	return out, []int{rows, p.hi - p.lo}, true, nil
}
