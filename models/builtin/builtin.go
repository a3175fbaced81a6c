// Package builtin embeds kiln's built-in default model, kiln-austen, so that
// `kiln generate` and programs linking kiln can generate text without a
// download.
//
// kiln-austen is a tiny LLaMA-architecture language model (about 1.0M
// parameters, all F32, about 4 MB: 4 layers, embedding 128, 4 query heads and
// 2 KV heads of 32 dims, FFN 352, context 512, a SentencePiece BPE vocabulary
// of 1024 tokens) that the kiln project trained from scratch on Jane Austen's
// six novels. It writes Austen-flavoured English, not sense: it exists to
// show and test the whole generation path on any machine. README.md in this
// folder gives the training recipe, time, held-out loss and checksum.
//
// # Licence
//
// The weights and tokenizer are the kiln project's own work, under the MIT
// licence, as the rest of the repository. The training corpus is Jane
// Austen's novels (published 1811–1818, public domain), taken from Debian's
// package r-cran-janeaustenr 1.0.0-1, the R data package janeaustenr by
// Julia Silge (MIT licence), which holds the Project Gutenberg texts.
//
// # Regenerating
//
// scripts/train-builtin/train.py is the whole recipe: it fetches the corpus
// with apt-get, trains the tokenizer and the model on the CPU, writes
// kiln-austen.gguf and testdata/reference.json (golden values from an
// independent float64 forward pass). From the repository root:
//
//	python3 -m venv /tmp/kiln-train-builtin
//	/tmp/kiln-train-builtin/bin/pip install -r scripts/train-builtin/requirements.txt
//	make builtin-model
//
// The run is seeded and deterministic for the same package versions, thread
// count and CPU kind.
package builtin

import (
	_ "embed"
	"unsafe"

	"github.com/kiln-gpu/kiln/models/gguf"
)

// Name is the built-in model's name (its general.name).
const Name = "kiln-austen"

//go:embed kiln-austen.gguf
var ggufBytes []byte

// dataAlignment is the alignment Open gives the copy it parses: at least
// the file's tensor alignment (general.alignment, 32 by default), so every
// tensor starts aligned for any element type the CPU backend reads in place.
const dataAlignment = 64

// GGUF returns the embedded GGUF file. The slice is the binary's read-only
// data: do not modify it. Its address has no particular alignment, so
// tensors read from it in place may be misaligned; Open gives an aligned
// copy.
func GGUF() []byte { return ggufBytes }

// Open parses a copy of the embedded file placed at an address aligned to
// 64 bytes, so that its tensors can be used in place (the CPU backend wraps
// weights without copying and requires aligned data). The copy is ordinary
// memory (about 4 MB) that stays valid as long as the File is reachable;
// Close is harmless.
func Open() (*gguf.File, error) {
	buf := make([]byte, len(ggufBytes)+dataAlignment)
	skip := int((dataAlignment - uintptr(unsafe.Pointer(unsafe.SliceData(buf)))%dataAlignment) % dataAlignment)
	data := buf[skip : skip+len(ggufBytes) : skip+len(ggufBytes)]
	copy(data, ggufBytes)
	return gguf.Parse(data, Name+".gguf (built in)")
}
