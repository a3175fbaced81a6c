//go:build !(linux || darwin)

package gguf

import (
	"fmt"
	"io"
	"os"
)

// mapFile reads the whole file into memory: this platform has no mmap in
// the standard library that this package uses.
func mapFile(fh *os.File, size int64) ([]byte, func([]byte) error, error) {
	data := make([]byte, size)
	if _, err := io.ReadFull(fh, data); err != nil {
		return nil, nil, fmt.Errorf("read %d bytes: %w", size, err)
	}
	return data, nil, nil
}
