// Package synthetic builds LLaMA-family GGUF models with random weights, for
// benchmarks and tests that need a model of a real shape (LLaMA-3-8B) but
// not its weights.
//
// A model is described by a Spec (dimensions, vocabulary, RoPE base, weight
// type) and written with the GGUF writer, with metadata and tensor names as
// llama.cpp's files carry them (general.architecture = "llama", the llama.*
// keys, token_embd / blk.N.* / output_norm / output tensors). Its tokenizer is
// a synthetic SentencePiece vocabulary (tokenizer.ggml.model = "llama"): the
// three special tokens <unk> <s> </s>, the 256 byte tokens <0x00>..<0xFF>,
// the printable ASCII characters, and then "▁"-prefixed lowercase words
// ("▁a", "▁b", ..., "▁aa", ...) until the vocabulary is full, so any text
// encodes and decodes.
//
// # Weights
//
// Every matrix (the token embedding and output matrices included) has the
// Spec's weight type; the RMSNorm weights are F32 ones, as a freshly
// initialised model has them. Matrix elements are normal(0, 1/k) for a row of
// k elements, so that a product with a unit-RMS input has unit-RMS outputs and
// activations stay well inside F16 range through any number of layers.
//
// Quantising the random rows of an 8B model with the reference quantisers
// would take minutes, so each weight type and row length has a pool of about
// 4 MiB of rows, drawn and quantised once (by tensor.QuantizeInto, in
// parallel), and every matrix with that row length is that pool's rows
// repeated, starting at a different row for each tensor. The blocks are
// therefore valid blocks of the real quantisers (scales, mins and quants
// distributed as in a real file, not random bytes with made-up scales), and
// writing a model costs little more than copying its bytes. Rows repeat every
// few thousand rows, which changes nothing for the kernels: they read every
// byte whatever it holds.
//
// Write streams a model to an io.Writer without holding its tensors in
// memory; Build returns the whole file in one aligned byte slice (for a model
// used in place, as the CPU backend does, or uploaded to a GPU), and Parse
// returns that slice parsed. Output is deterministic: the same Spec (Seed
// included) gives the same bytes on any machine and number of cores.
package synthetic

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	"github.com/kiln-gpu/kiln/models/gguf"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Spec describes a synthetic LLaMA-family model.
type Spec struct {
	// Name is a short name ("llama3-8b"); general.name is built from it
	// and the weight type.
	Name string
	// Dim is the embedding width (llama.embedding_length).
	Dim int
	// Layers is the number of transformer blocks (llama.block_count).
	Layers int
	// Heads and KVHeads are the query and key/value head counts; the head
	// dimension is Dim/Heads.
	Heads, KVHeads int
	// FFNDim is the feed-forward width (llama.feed_forward_length).
	FFNDim int
	// Vocab is the vocabulary size: at least MinVocab.
	Vocab int
	// ContextLen is llama.context_length, in tokens.
	ContextLen int
	// RopeBase is llama.rope.freq_base.
	RopeBase float32
	// RMSEps is llama.attention.layer_norm_rms_epsilon; 0 means 1e-5.
	RMSEps float32
	// WeightType is the dtype of every matrix: F32, F16, BF16, Q8_0, Q4_0,
	// Q4_K or Q6_K (see WeightTypes).
	WeightType tensor.DType
	// Seed seeds the random weights.
	Seed uint64
}

// WeightTypes are the weight types a Spec may have.
var WeightTypes = []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0, tensor.Q4_0, tensor.Q4_K, tensor.Q6_K}

// MinVocab is the smallest vocabulary: the three special tokens and the 256
// byte tokens.
const MinVocab = 3 + 256

// Llama3_8B is LLaMA-3-8B's shape (Meta-Llama-3-8B: 8,030,261,248
// parameters, untied output matrix) with weights of type wt: 4096 wide, 32
// layers, 32 query heads over 8 KV heads of 128, feed-forward 14336,
// vocabulary 128256, context 8192, RoPE base 500000.
func Llama3_8B(wt tensor.DType) Spec {
	return Spec{
		Name: "llama3-8b", Dim: 4096, Layers: 32, Heads: 32, KVHeads: 8, FFNDim: 14336,
		Vocab: 128256, ContextLen: 8192, RopeBase: 500000, RMSEps: 1e-5, WeightType: wt, Seed: 1,
	}
}

// Small100M is a LLaMA-shaped model sized for the CPU: 768 wide, 12 layers,
// 12 query heads over 4 KV heads of 64, feed-forward 2048, vocabulary 32000,
// context 2048, RoPE base 10000. It has 124.7M parameters, of which 100.1M
// (all but the token embedding) are read for every decoded token.
func Small100M(wt tensor.DType) Spec {
	return Spec{
		Name: "small-100m", Dim: 768, Layers: 12, Heads: 12, KVHeads: 4, FFNDim: 2048,
		Vocab: 32000, ContextLen: 2048, RopeBase: 10000, RMSEps: 1e-5, WeightType: wt, Seed: 1,
	}
}

// HeadDim is the dimension of one attention head, Dim/Heads (0 when Heads is 0).
func (s Spec) HeadDim() int {
	if s.Heads <= 0 {
		return 0
	}
	return s.Dim / s.Heads
}

// FileName is a file name for the model: "<Name>-<WeightType>.gguf".
func (s Spec) FileName() string { return fmt.Sprintf("%s-%v.gguf", s.Name, s.WeightType) }

// maxDim bounds each dimension so that no size computation overflows.
const maxDim = 1 << 24

// Validate reports the first thing wrong with s, naming the field.
func (s Spec) Validate() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("synthetic: spec %q: "+format, append([]any{s.Name}, args...)...)
	}
	for _, d := range []struct {
		name string
		v    int
	}{
		{"Dim", s.Dim}, {"Layers", s.Layers}, {"Heads", s.Heads}, {"KVHeads", s.KVHeads},
		{"FFNDim", s.FFNDim}, {"Vocab", s.Vocab}, {"ContextLen", s.ContextLen},
	} {
		if d.v <= 0 || d.v > maxDim {
			return fail("%s = %d, want 1 to %d", d.name, d.v, maxDim)
		}
	}
	if s.Name == "" {
		return fail("Name is empty")
	}
	if !slices.Contains(WeightTypes, s.WeightType) {
		return fail("WeightType %v is not one of %v", s.WeightType, WeightTypes)
	}
	if s.Dim%s.Heads != 0 {
		return fail("Dim %d is not a multiple of Heads %d", s.Dim, s.Heads)
	}
	if s.Heads%s.KVHeads != 0 {
		return fail("Heads %d is not a multiple of KVHeads %d", s.Heads, s.KVHeads)
	}
	if hd := s.HeadDim(); hd%2 != 0 || hd > op.MaxHeadDim {
		return fail("head dimension Dim/Heads = %d must be even and at most %d", hd, op.MaxHeadDim)
	}
	// Rows run over Dim (every matrix but ffn_down) and FFNDim (ffn_down):
	// both must be whole blocks of the weight type.
	if be := s.WeightType.BlockElems(); s.Dim%be != 0 || s.FFNDim%be != 0 {
		return fail("Dim %d and FFNDim %d must be multiples of %d, the %v block size", s.Dim, s.FFNDim, be, s.WeightType)
	}
	if s.Vocab < MinVocab {
		return fail("Vocab = %d, want at least %d (3 special and 256 byte tokens)", s.Vocab, MinVocab)
	}
	if !(s.RopeBase > 0) || math.IsInf(float64(s.RopeBase), 0) {
		return fail("RopeBase = %v, want a positive finite number", s.RopeBase)
	}
	if s.RMSEps < 0 || math.IsNaN(float64(s.RMSEps)) || math.IsInf(float64(s.RMSEps), 0) {
		return fail("RMSEps = %v, want 0 (default) or a positive finite number", s.RMSEps)
	}
	return nil
}

// TensorSpec is one tensor of a synthetic model.
type TensorSpec struct {
	Name  string
	DType tensor.DType
	// Shape is in kiln order, outermost first: a matrix is [rows, k].
	Shape []int
}

// SizeBytes is the tensor's data size.
func (t TensorSpec) SizeBytes() int64 {
	n, err := tensor.SizeBytes(t.DType, t.Shape...)
	if err != nil {
		return -1 // unreachable for a validated Spec's tensors
	}
	return n
}

// Tensors lists the model's tensors in file order: token_embd.weight
// [Vocab, Dim]; per layer attn_norm, attn_q [Dim, Dim], attn_k and attn_v
// [KVHeads·HeadDim, Dim], attn_output [Dim, Dim], ffn_norm, ffn_gate and
// ffn_up [FFNDim, Dim], ffn_down [Dim, FFNDim]; output_norm.weight and
// output.weight [Vocab, Dim]. Norm vectors are F32, matrices WeightType.
func (s Spec) Tensors() ([]TensorSpec, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	wt, d, kv := s.WeightType, s.Dim, s.KVHeads*s.HeadDim()
	ts := []TensorSpec{{"token_embd.weight", wt, []int{s.Vocab, d}}}
	for i := 0; i < s.Layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts,
			TensorSpec{p + "attn_norm.weight", tensor.F32, []int{d}},
			TensorSpec{p + "attn_q.weight", wt, []int{d, d}},
			TensorSpec{p + "attn_k.weight", wt, []int{kv, d}},
			TensorSpec{p + "attn_v.weight", wt, []int{kv, d}},
			TensorSpec{p + "attn_output.weight", wt, []int{d, d}},
			TensorSpec{p + "ffn_norm.weight", tensor.F32, []int{d}},
			TensorSpec{p + "ffn_gate.weight", wt, []int{s.FFNDim, d}},
			TensorSpec{p + "ffn_up.weight", wt, []int{s.FFNDim, d}},
			TensorSpec{p + "ffn_down.weight", wt, []int{d, s.FFNDim}},
		)
	}
	ts = append(ts,
		TensorSpec{"output_norm.weight", tensor.F32, []int{d}},
		TensorSpec{"output.weight", wt, []int{s.Vocab, d}},
	)
	return ts, nil
}

// ParamCount is the number of weights (matrix and norm elements).
func (s Spec) ParamCount() (int64, error) {
	ts, err := s.Tensors()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, t := range ts {
		e := int64(1)
		for _, d := range t.Shape {
			e *= int64(d)
		}
		n += e
	}
	return n, nil
}

// WeightBytes is the size of all tensor data.
func (s Spec) WeightBytes() (int64, error) {
	ts, err := s.Tensors()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, t := range ts {
		n += t.SizeBytes()
	}
	return n, nil
}

// llamaFileType is general.file_type, llama.cpp's llama_ftype for a file
// whose matrices are all of one type (Q4_K: MOSTLY_Q4_K_S, the
// all-Q4_K-but-a-few mix; this file has no exceptions).
var llamaFileType = map[tensor.DType]uint32{
	tensor.F32: 0, tensor.F16: 1, tensor.Q4_0: 2, tensor.Q8_0: 7,
	tensor.Q4_K: 14, tensor.Q6_K: 18, tensor.BF16: 32,
}

// NewWriter returns a GGUF writer holding s's metadata and tensors, whose
// data are produced at write time from the row pools (built here, in
// parallel). Each WriteTo of the writer writes the same bytes.
func NewWriter(s Spec) (*gguf.Writer, error) {
	ts, err := s.Tensors()
	if err != nil {
		return nil, err
	}
	eps := s.RMSEps
	if eps == 0 {
		eps = 1e-5
	}
	w := gguf.NewWriter(3)
	w.SetString("general.architecture", "llama")
	w.SetString("general.name", fmt.Sprintf("synthetic %s %v", s.Name, s.WeightType))
	w.SetUint32("general.file_type", llamaFileType[s.WeightType])
	w.SetUint32("general.quantization_version", 2)
	w.SetUint32("llama.vocab_size", uint32(s.Vocab))
	w.SetUint32("llama.context_length", uint32(s.ContextLen))
	w.SetUint32("llama.embedding_length", uint32(s.Dim))
	w.SetUint32("llama.block_count", uint32(s.Layers))
	w.SetUint32("llama.feed_forward_length", uint32(s.FFNDim))
	w.SetUint32("llama.rope.dimension_count", uint32(s.HeadDim()))
	w.SetUint32("llama.attention.head_count", uint32(s.Heads))
	w.SetUint32("llama.attention.head_count_kv", uint32(s.KVHeads))
	w.SetFloat32("llama.rope.freq_base", s.RopeBase)
	w.SetFloat32("llama.attention.layer_norm_rms_epsilon", eps)
	tokens, scores, types := Vocabulary(s.Vocab)
	w.SetString("tokenizer.ggml.model", "llama")
	w.SetStrings("tokenizer.ggml.tokens", tokens)
	w.SetFloat32s("tokenizer.ggml.scores", scores)
	w.SetInt32s("tokenizer.ggml.token_type", types)
	w.SetUint32("tokenizer.ggml.bos_token_id", 1)
	w.SetUint32("tokenizer.ggml.eos_token_id", 2)
	w.SetUint32("tokenizer.ggml.unknown_token_id", 0)
	w.SetBool("tokenizer.ggml.add_bos_token", true)
	w.SetBool("tokenizer.ggml.add_eos_token", false)

	pools, err := buildPools(s, ts)
	if err != nil {
		return nil, err
	}
	ones := tensor.F32Bytes(slices.Repeat([]float32{1}, s.Dim))
	for i, t := range ts {
		var produce func(io.Writer) error
		if len(t.Shape) == 1 {
			produce = func(out io.Writer) error { _, err := out.Write(ones); return err }
		} else {
			p := pools[poolKey{t.DType, t.Shape[1]}]
			rows, start := t.Shape[0], i*poolStartStride
			produce = func(out io.Writer) error { return p.writeRows(out, rows, start) }
		}
		if err := w.AddTensorFunc(t.Name, t.DType, t.Shape, produce); err != nil {
			return nil, fmt.Errorf("synthetic: %w", err)
		}
	}
	return w, nil
}

// poolStartStride spaces the first pool row of successive tensors, so that
// two tensors of one shape do not hold the same rows in the same places.
const poolStartStride = 97

// poolTargetBytes is about how many bytes of rows a pool holds.
const poolTargetBytes = 4 << 20

// poolChunkRows rows are drawn from one random stream: the unit of parallel
// work, fixed so that the bytes do not depend on the number of cores.
const poolChunkRows = 8

type poolKey struct {
	dt tensor.DType
	k  int
}

// rowPool is rows random rows of k elements in dtype dt, encoded.
type rowPool struct {
	data     []byte
	rowBytes int64
	rows     int
}

// writeRows writes rows rows of the pool, starting at pool row start and
// wrapping around, in writes of up to the whole pool.
func (p *rowPool) writeRows(out io.Writer, rows, start int) error {
	remaining := int64(rows) * p.rowBytes
	off := int64(start%p.rows) * p.rowBytes
	for remaining > 0 {
		chunk := p.data[off:]
		if int64(len(chunk)) > remaining {
			chunk = chunk[:remaining]
		}
		if _, err := out.Write(chunk); err != nil {
			return err
		}
		remaining -= int64(len(chunk))
		off = 0
	}
	return nil
}

// buildPools makes one pool per (dtype, row length) of the matrices, with
// as many rows as fill poolTargetBytes but no more than the largest matrix
// of that row length has.
func buildPools(s Spec, ts []TensorSpec) (map[poolKey]*rowPool, error) {
	need := map[poolKey]int{} // most rows any matrix of the key has
	var keys []poolKey
	for _, t := range ts {
		if len(t.Shape) != 2 {
			continue
		}
		key := poolKey{t.DType, t.Shape[1]}
		if _, ok := need[key]; !ok {
			keys = append(keys, key)
		}
		need[key] = max(need[key], t.Shape[0])
	}
	pools := map[poolKey]*rowPool{}
	for _, key := range keys {
		rowBytes, err := key.dt.RowBytes(key.k)
		if err != nil {
			return nil, fmt.Errorf("synthetic: %v rows of %d: %w", key.dt, key.k, err)
		}
		rows := int(min(int64(need[key]), max(1, (poolTargetBytes+rowBytes-1)/rowBytes)))
		p := &rowPool{data: make([]byte, int64(rows)*rowBytes), rowBytes: rowBytes, rows: rows}
		if err := fillPool(p, key, s.Seed); err != nil {
			return nil, err
		}
		pools[key] = p
	}
	return pools, nil
}

// fillPool draws the pool's rows, normal(0, 1/k), and encodes them, in
// parallel over chunks of poolChunkRows rows.
func fillPool(p *rowPool, key poolKey, seed uint64) error {
	nChunks := (p.rows + poolChunkRows - 1) / poolChunkRows
	workers := min(runtime.GOMAXPROCS(0), nChunks)
	std := 1 / math.Sqrt(float64(key.k))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		firstEr error
		next    = make(chan int, nChunks)
	)
	for c := 0; c < nChunks; c++ {
		next <- c
	}
	close(next)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals := make([]float32, key.k)
			for c := range next {
				// One stream per chunk, named by the pool and the chunk.
				rng := rand.New(rand.NewPCG(seed, uint64(key.dt)<<56|uint64(key.k)<<24|uint64(c)))
				for r := c * poolChunkRows; r < min(p.rows, (c+1)*poolChunkRows); r++ {
					for i := range vals {
						vals[i] = float32(rng.NormFloat64() * std)
					}
					row := p.data[int64(r)*p.rowBytes : int64(r+1)*p.rowBytes]
					if err := tensor.QuantizeInto(key.dt, row, vals); err != nil {
						mu.Lock()
						if firstEr == nil {
							firstEr = fmt.Errorf("synthetic: encoding a random %v row of %d: %w", key.dt, key.k, err)
						}
						mu.Unlock()
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	return firstEr
}

// Vocabulary returns a synthetic SentencePiece vocabulary of n tokens (n at
// least MinVocab): tokens, scores and token types as tokenizer.ggml.tokens,
// .scores and .token_type store them. Ids 0, 1, 2 are <unk> (unknown), <s>
// and </s> (control); 3 to 258 the byte tokens <0x00>..<0xFF>; then "▁"
// and the printable ASCII characters, then "▁"-prefixed lowercase words in
// order of length and then alphabetically, scored so that shorter pieces
// merge first. Every prefix of a word is an earlier piece, so SentencePiece
// merging can build each word from its letters.
func Vocabulary(n int) (tokens []string, scores []float32, types []int32) {
	const (
		typeNormal  = 1
		typeUnknown = 2
		typeControl = 3
		typeByte    = 6
	)
	tokens = make([]string, 0, n)
	scores = make([]float32, 0, n)
	types = make([]int32, 0, n)
	add := func(piece string, score float32, tt int32) bool {
		if len(tokens) == n {
			return false
		}
		tokens, scores, types = append(tokens, piece), append(scores, score), append(types, tt)
		return true
	}
	add("<unk>", 0, typeUnknown)
	add("<s>", 0, typeControl)
	add("</s>", 0, typeControl)
	for b := 0; b < 256; b++ {
		add(fmt.Sprintf("<0x%02X>", b), 0, typeByte)
	}
	rank := float32(0)
	normal := func(piece string) bool {
		rank--
		return add(piece, rank, typeNormal)
	}
	if !normal("\u2581") {
		return
	}
	for c := byte('!'); c <= '~'; c++ {
		if !normal(string(c)) {
			return
		}
	}
	// Words of length 1, 2, ...: a word of length L is a base-26 number
	// of L digits.
	for length := 1; ; length++ {
		word := make([]byte, length)
		for i := range word {
			word[i] = 'a'
		}
		for {
			if !normal("\u2581" + string(word)) {
				return
			}
			// Increment the base-26 number; stop after "zz...z".
			i := length - 1
			for i >= 0 && word[i] == 'z' {
				word[i] = 'a'
				i--
			}
			if i < 0 {
				break
			}
			word[i]++
		}
	}
}

// Write streams the model to out and returns the bytes written. Only the
// row pools (a few MiB per weight type and row length) are held in memory.
func Write(out io.Writer, s Spec) (int64, error) {
	w, err := NewWriter(s)
	if err != nil {
		return 0, err
	}
	n, err := w.WriteTo(out)
	if err != nil {
		return n, fmt.Errorf("synthetic: %w", err)
	}
	return n, nil
}

// WriteFile writes the model to path (created or truncated; removed on error).
func WriteFile(path string, s Spec) error {
	w, err := NewWriter(s)
	if err != nil {
		return err
	}
	if err := w.WriteFile(path); err != nil {
		return fmt.Errorf("synthetic: %w", err)
	}
	return nil
}

// bufferAlign is the alignment of the slice Build returns: a cache line,
// more than any tensor element needs (the tensors themselves sit at
// multiples of the GGUF alignment, 32, from its start).
const bufferAlign = 64

// Build returns the whole model file in memory, in a slice whose first byte
// is 64-byte aligned (so that the CPU backend can use F32 and F16 weights in
// place). The file is written twice: once to count its bytes (the tensor
// data pass through without being copied), once into a slice of exactly
// that size; only the one copy is held.
func Build(s Spec) ([]byte, error) {
	w, err := NewWriter(s)
	if err != nil {
		return nil, err
	}
	var count countingWriter
	if _, err := w.WriteTo(&count); err != nil {
		return nil, fmt.Errorf("synthetic: %w", err)
	}
	raw := make([]byte, count.n+bufferAlign)
	skip := 0
	if rem := int(uintptr(unsafe.Pointer(unsafe.SliceData(raw))) % bufferAlign); rem != 0 {
		skip = bufferAlign - rem
	}
	prefault(raw)
	out := &sliceWriter{buf: raw[skip : int64(skip)+count.n : int64(skip)+count.n]}
	n, err := w.WriteTo(out)
	if err != nil {
		return nil, fmt.Errorf("synthetic: %w", err)
	}
	if n != count.n || int64(out.n) != count.n {
		return nil, fmt.Errorf("synthetic: the second write of %s gave %d bytes, the first %d", s.FileName(), n, count.n)
	}
	return out.buf, nil
}

// prefault touches every page of a freshly allocated buffer from all cores
// at once: the kernel's first-touch page faults, not the copying, are most
// of the time of writing a multi-gigabyte file into new memory, and one
// goroutine takes them one at a time.
func prefault(buf []byte) {
	const page = 4096
	workers := runtime.GOMAXPROCS(0)
	if len(buf) < 64<<20 || workers < 2 {
		return
	}
	per := (len(buf)/workers + page - 1) / page * page
	var wg sync.WaitGroup
	for lo := 0; lo < len(buf); lo += per {
		part := buf[lo:min(len(buf), lo+per)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < len(part); i += page {
				part[i] = 0
			}
		}()
	}
	wg.Wait()
}

// Parse builds the model in memory (Build) and parses it. The File's Path is
// "synthetic/<FileName>"; closing it releases nothing but the reference to
// the bytes.
func Parse(s Spec) (*gguf.File, error) {
	data, err := Build(s)
	if err != nil {
		return nil, err
	}
	f, err := gguf.Parse(data, "synthetic/"+s.FileName())
	if err != nil {
		return nil, fmt.Errorf("synthetic: parsing what was written: %w", err)
	}
	return f, nil
}

// countingWriter counts bytes and keeps none.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// sliceWriter writes into a fixed slice and refuses to grow it.
type sliceWriter struct {
	buf []byte
	n   int
}

var errSliceFull = errors.New("synthetic: the file grew between the counting and the writing pass")

func (w *sliceWriter) Write(p []byte) (int, error) {
	if len(p) > len(w.buf)-w.n {
		return 0, errSliceFull
	}
	copy(w.buf[w.n:], p)
	w.n += len(p)
	return len(p), nil
}
