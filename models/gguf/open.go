package gguf

import (
	"fmt"
	"math"
	"os"
)

// Open maps the GGUF file at path read-only and validates it (see Parse and
// the package documentation for what is checked). Call Close to release the
// mapping.
//
// The file must not be truncated or rewritten while it is open: on Linux and
// macOS its bytes are those of the mapping, and reading a page that a
// truncation removed faults.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("gguf: %s: not a regular file (%v)", path, st.Mode().Type())
	}
	size := st.Size()
	if size > math.MaxInt {
		return nil, fmt.Errorf("gguf: %s: %d bytes is more than this platform can address", path, size)
	}
	data, unmap, err := mapFile(fh, size)
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	p := parser{data: data, file: path}
	f, err := p.parse()
	if err != nil {
		if unmap != nil {
			unmap(data)
		}
		return nil, err
	}
	f.data, f.unmap = data, unmap
	return f, nil
}
