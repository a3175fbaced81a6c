//go:build linux || darwin

package gguf

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps the whole of an open file read-only. The mapping stays valid
// after the file is closed.
func mapFile(fh *os.File, size int64) ([]byte, func([]byte) error, error) {
	if size == 0 {
		return []byte{}, nil, nil
	}
	data, err := syscall.Mmap(int(fh.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %d bytes: %w", size, err)
	}
	return data, syscall.Munmap, nil
}
