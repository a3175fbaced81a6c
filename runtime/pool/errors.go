package pool

import (
	"fmt"
	"strings"

	"github.com/kiln-gpu/kiln/runtime/op"
)

// OOMError is the error of an allocation that did not fit: either the
// Allocator ran out of memory even after the pool released its cache and
// retried (Err is the device's error), or the block would have taken the pool
// past its limit (Err is nil; without a limit, past what an int64 counts,
// which only a fake device can reach). It matches op.ErrOutOfMemory with
// errors.Is.
// The sizes are the pool's accounting when the allocation failed.
type OOMError struct {
	Pool           string // "pool cuda:0"
	RequestedBytes int64  // what the caller asked for
	ClassBytes     int64  // what the pool tried to reserve: SizeClass(RequestedBytes)
	InUseBytes     int64
	CachedBytes    int64
	PendingBytes   int64 // in flight on other goroutines: allocations, and cached blocks being handed back
	LimitBytes     int64 // 0: none
	Err            error // the device's error; nil when the limit refused the block
}

// Error says which pool, the sizes, and why: the limit, or the device's error.
func (e *OOMError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s: out of memory allocating %s (size class %s): in use %s, cached %s",
		e.Pool, formatBytes(e.RequestedBytes), formatBytes(e.ClassBytes), formatBytes(e.InUseBytes), formatBytes(e.CachedBytes))
	if e.PendingBytes != 0 {
		fmt.Fprintf(&sb, ", being allocated %s", formatBytes(e.PendingBytes))
	}
	if e.LimitBytes != 0 {
		fmt.Fprintf(&sb, ", limit %s", formatBytes(e.LimitBytes))
	} else {
		sb.WriteString(", no limit")
	}
	switch {
	case e.Err != nil:
		fmt.Fprintf(&sb, "; the device failed even after the cache was released: %v", e.Err)
	case e.LimitBytes != 0:
		sb.WriteString("; the block would exceed the limit")
	default:
		sb.WriteString("; the pool's byte count would overflow int64")
	}
	return sb.String()
}

// Is makes errors.Is(err, op.ErrOutOfMemory) true.
func (e *OOMError) Is(target error) bool { return target == op.ErrOutOfMemory }

// Unwrap returns the device's error (nil when the limit refused the block).
func (e *OOMError) Unwrap() error { return e.Err }

// formatBytes writes n exactly, and in binary units as well when that helps:
// "1536 bytes (1.5 KiB)".
func formatBytes(n int64) string {
	const units = "KMGTPE"
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d bytes", n)
	}
	v := float64(n)
	i := -1
	for (v >= 1024 || v <= -1024) && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%d bytes (%.1f %ciB)", n, v, units[i])
}
