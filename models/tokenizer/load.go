package tokenizer

import (
	"errors"
	"fmt"
	"math"

	"github.com/kiln-gpu/kiln/models/gguf"
)

// FromGGUF reads the tokenizer.ggml.* metadata of f and returns its
// Tokenizer. It reads tokenizer.ggml.model ("llama" or "gpt2"; others are
// refused by name), tokens, scores, token_type, merges (gpt2), pre, the
// special-token ids (bos, eos, unknown, padding, seperator, eot, eom,
// fim_pad/rep/sep) and add_bos_token, add_eos_token and add_space_prefix.
// Every array is checked against the token list (lengths, ids in range,
// types, byte tokens, merges); an error names the key and entry at fault.
// The Tokenizer copies what it needs and does not refer to f afterwards.
func FromGGUF(f *gguf.File) (*Tokenizer, error) {
	src := &vocabSource{name: f.Path, ids: map[string]int32{}}
	var err error
	if src.model, err = f.String("tokenizer.ggml.model"); err != nil {
		if errors.Is(err, gguf.ErrKeyNotFound) {
			return nil, fmt.Errorf("tokenizer: %s has no tokenizer (metadata key tokenizer.ggml.model is missing)", f.Path)
		}
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if src.tokens, err = f.Strings("tokenizer.ggml.tokens"); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if src.pre, src.hasPre, err = optional(f.String("tokenizer.ggml.pre")); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if src.scores, _, err = optional(f.Float32s("tokenizer.ggml.scores")); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if src.types, _, err = optional(f.Int32s("tokenizer.ggml.token_type")); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if src.merges, src.hasMerges, err = optional(f.Strings("tokenizer.ggml.merges")); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	for _, flag := range []struct {
		key string
		dst **bool
	}{
		{"tokenizer.ggml.add_bos_token", &src.addBOS},
		{"tokenizer.ggml.add_eos_token", &src.addEOS},
		{"tokenizer.ggml.add_space_prefix", &src.addSpacePrefix},
	} {
		v, ok, err := optional(f.Bool(flag.key))
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %w", err)
		}
		if ok {
			*flag.dst = &v
		}
	}
	for _, key := range specialIDKeys {
		v, ok := f.Get(key)
		if !ok {
			continue
		}
		id, err := tokenID(f.Path, key, v)
		if err != nil {
			return nil, err
		}
		src.ids[key] = id
	}
	return build(src)
}

// optional turns a missing key into ok == false.
func optional[T any](v T, err error) (T, bool, error) {
	if errors.Is(err, gguf.ErrKeyNotFound) {
		var zero T
		return zero, false, nil
	}
	return v, err == nil, err
}

// tokenID reads a special-token id. Converters write "none" as -1 in an
// INT32 or as 0xFFFFFFFF in a UINT32; both become noToken. Range checks
// against the vocabulary happen in build.
func tokenID(path, key string, v gguf.Value) (int32, error) {
	switch {
	case v.Type.IsUnsigned():
		if v.U64 == math.MaxUint32 || v.U64 == math.MaxUint64 {
			return noToken, nil
		}
		if v.U64 > math.MaxInt32 {
			return 0, fmt.Errorf("tokenizer: %s: %s = %d is not a token id", path, key, v.U64)
		}
		return int32(v.U64), nil
	case v.Type.IsSigned():
		if v.I64 == -1 {
			return noToken, nil
		}
		if v.I64 < 0 || v.I64 > math.MaxInt32 {
			return 0, fmt.Errorf("tokenizer: %s: %s = %d is not a token id", path, key, v.I64)
		}
		return int32(v.I64), nil
	}
	return 0, fmt.Errorf("tokenizer: %s: %s holds a %v, want an integer token id", path, key, v.Type)
}
