package kernels

import (
	"embed"
	"io/fs"
)

// embeddedPTX is the committed PTX: ptx/<target>/<family>.ptx.
//
//go:embed ptx/compute_80/*.ptx ptx/sm_90a/*.ptx
var embeddedPTX embed.FS

// EmbeddedPTX is the PTX built into the binary, laid out as Options.FS
// expects: compute_80/<family>.ptx and sm_90a/<family>.ptx.
func EmbeddedPTX() fs.FS {
	sub, err := fs.Sub(embeddedPTX, "ptx")
	if err != nil {
		// fs.Sub fails only for an invalid path, and "ptx" is valid.
		panic("kernels: " + err.Error())
	}
	return sub
}
