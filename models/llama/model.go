package llama

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/kiln-gpu/kiln/models/gguf"
	"github.com/kiln-gpu/kiln/models/tokenizer"
	"github.com/kiln-gpu/kiln/runtime/backend"
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
	// ActivationType is the dtype of activations and of the KV cache. Invalid
	// (the zero value) picks: F32 on the CPU or when the model's matrices are
	// F32; otherwise BF16 when they are BF16, else F16.
	ActivationType tensor.DType
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
	dev       backend.Backend
	file      *gguf.File // kept open: CPU weights point into its mapping
	ownsFile  bool
	actType   tensor.DType
	w         weights
	kv        *kvCache
	log       *slog.Logger

	stepMu   sync.Mutex // one Step (or Fork) at a time
	seqMu    sync.Mutex // guards sequence bookkeeping, liveSeqs and the page allocator
	liveSeqs int
	closed   bool // guarded by stepMu and seqMu
}

type weights struct {
	tokEmb, outNorm, output, ropeFreqs tensor.Tensor
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
	// ScratchBytes bounds the activations of one Step of MaxBatchTokens.
	ScratchBytes int64
	// DeviceBytes is what Load allocates: weights (unless used in place), KV
	// cache and scratch.
	DeviceBytes int64
}

// Estimate returns the memory a model would need with opts, without
// allocating anything. inPlaceWeights says whether weights are used from the
// file's mapping (the CPU backend) rather than copied to the device.
func Estimate(f *gguf.File, opts Options, inPlaceWeights bool) (MemoryEstimate, error) {
	c, err := ReadConfig(f)
	if err != nil {
		return MemoryEstimate{}, err
	}
	opts = opts.withDefaults(c)
	act := opts.ActivationType
	if !act.Valid() {
		act = tensor.F32
	}
	var e MemoryEstimate
	for _, t := range f.Tensors {
		e.WeightBytes += t.SizeBytes
	}
	es := int64(act.BlockBytes())
	kvHeadBytes := int64(c.NKVHeads*c.HeadDim) * es
	e.KVCacheBytes = 2 * int64(c.NLayers) * int64(opts.KVPages) * int64(opts.PageSize) * kvHeadBytes
	t := int64(opts.MaxBatchTokens)
	q := int64(c.NHeads * c.HeadDim)
	kv := int64(c.NKVHeads * c.HeadDim)
	perToken := (3*int64(c.Dim) + 2*q + 2*kv + int64(c.FFNDim)) * es
	e.ScratchBytes = t*perToken + t*int64(c.VocabSize)*4 + t*int64(c.Dim)*4 + 1<<20
	e.DeviceBytes = e.KVCacheBytes + e.ScratchBytes
	if !inPlaceWeights {
		e.DeviceBytes += e.WeightBytes
	}
	return e, nil
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
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := LoadFile(ctx, dev, f, opts)
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
	c, err := ReadConfig(f)
	if err != nil {
		return nil, err
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
	host, inPlace := unwrap[hostWrapper](dev)
	act, err := chooseActivationType(f, opts.ActivationType, inPlace)
	if err != nil {
		return nil, err
	}
	opts.ActivationType = act
	est, err := Estimate(f, opts, inPlace)
	if err != nil {
		return nil, err
	}
	if mi, ok := unwrap[memoryInfo](dev); ok {
		free, total, err := mi.MemoryInfo()
		if err == nil && est.DeviceBytes > free {
			return nil, fmt.Errorf("llama: %s on %s: %w: the model needs %d bytes (weights %d, KV cache %d, scratch %d), the device has %d free of %d; lower ContextLen, MaxSequences or MaxBatchTokens",
				f.Path, dev.Name(), backend.ErrOutOfMemory, est.DeviceBytes, est.WeightBytes, est.KVCacheBytes, est.ScratchBytes, free, total)
		}
	}
	m := &Model{Config: c, Tokenizer: tok, opts: opts, dev: dev, file: f, actType: act, log: opts.Logger}
	if err := m.loadWeights(ctx, host, inPlace, est.WeightBytes); err != nil {
		m.freeAll()
		return nil, err
	}
	if m.kv, err = newKVCache(dev, c, opts, act); err != nil {
		m.freeAll()
		return nil, err
	}
	m.log.Debug("model loaded", "name", c.Name, "arch", c.Arch, "params", c.ParamCount(), "activations", act,
		"kv_pages", opts.KVPages, "page_size", opts.PageSize, "device", dev.Name())
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

func (m *Model) freeAll() error {
	var errs []error
	if m.kv != nil {
		errs = append(errs, m.kv.free(m.dev))
		m.kv = nil
	}
	for _, t := range m.w.owned {
		errs = append(errs, m.dev.Free(t))
	}
	m.w.owned = nil
	return errors.Join(errs...)
}

// loadWeights puts every tensor the model uses on the device: in place on
// the CPU, uploaded elsewhere.
func (m *Model) loadWeights(ctx context.Context, host hostWrapper, inPlace bool, totalBytes int64) error {
	c := m.Config
	var done int64
	load := func(name string, allowed []tensor.DType, shape ...int) (tensor.Tensor, error) {
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
		var t tensor.Tensor
		if inPlace {
			t, err = host.WrapReadOnly(data, info.DType, shape...)
		} else {
			if t, err = m.dev.Alloc(info.DType, shape...); err == nil {
				m.w.owned = append(m.w.owned, t)
				err = m.dev.Upload(t, data)
			}
		}
		if err != nil {
			return tensor.Tensor{}, fmt.Errorf("llama: %s: tensor %s: %w", m.file.Path, name, err)
		}
		done += info.SizeBytes
		if m.opts.Progress != nil {
			m.opts.Progress(done, totalBytes)
		}
		return t, nil
	}
	matrix := op.MatMulWeightTypes
	vector := []tensor.DType{tensor.F32}
	var err error
	w := &m.w
	q, kv := c.NHeads*c.HeadDim, c.NKVHeads*c.HeadDim
	if w.tokEmb, err = load("token_embd.weight", op.EmbeddingTableTypes, c.VocabSize, c.Dim); err != nil {
		return err
	}
	w.layers = make([]layerWeights, c.NLayers)
	for i := range w.layers {
		l := &w.layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		steps := []struct {
			dst     *tensor.Tensor
			name    string
			allowed []tensor.DType
			shape   []int
		}{
			{&l.attnNorm, "attn_norm.weight", vector, []int{c.Dim}},
			{&l.wq, "attn_q.weight", matrix, []int{q, c.Dim}},
			{&l.wk, "attn_k.weight", matrix, []int{kv, c.Dim}},
			{&l.wv, "attn_v.weight", matrix, []int{kv, c.Dim}},
			{&l.wo, "attn_output.weight", matrix, []int{c.Dim, q}},
			{&l.ffnNorm, "ffn_norm.weight", vector, []int{c.Dim}},
			{&l.wGate, "ffn_gate.weight", matrix, []int{c.FFNDim, c.Dim}},
			{&l.wUp, "ffn_up.weight", matrix, []int{c.FFNDim, c.Dim}},
			{&l.wDown, "ffn_down.weight", matrix, []int{c.Dim, c.FFNDim}},
		}
		if c.QKVBias {
			steps = append(steps, []struct {
				dst     *tensor.Tensor
				name    string
				allowed []tensor.DType
				shape   []int
			}{
				{&l.bq, "attn_q.bias", vector, []int{q}},
				{&l.bk, "attn_k.bias", vector, []int{kv}},
				{&l.bv, "attn_v.bias", vector, []int{kv}},
			}...)
		}
		for _, s := range steps {
			if *s.dst, err = load(p+s.name, s.allowed, s.shape...); err != nil {
				return err
			}
		}
		if l.wGate.DType() != l.wUp.DType() {
			return fmt.Errorf("llama: %s: %sffn_gate.weight is %v but ffn_up.weight is %v (the fused SwiGLU needs one type)",
				m.file.Path, p, l.wGate.DType(), l.wUp.DType())
		}
	}
	if w.outNorm, err = load("output_norm.weight", vector, c.Dim); err != nil {
		return err
	}
	if c.TiedEmbeddings {
		if !slices.Contains(matrix, w.tokEmb.DType()) {
			return fmt.Errorf("llama: %s: tied output uses token_embd.weight of type %v, which the matrix product does not take", m.file.Path, w.tokEmb.DType())
		}
		w.output = w.tokEmb
	} else if w.output, err = load("output.weight", matrix, c.VocabSize, c.Dim); err != nil {
		return err
	}
	if c.RopeFreqFactors {
		if w.ropeFreqs, err = load("rope_freqs.weight", vector, c.RopeDims/2); err != nil {
			return err
		}
	}
	return nil
}
