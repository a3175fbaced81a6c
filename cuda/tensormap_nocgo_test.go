//go:build !cgo

package cuda

import (
	"errors"
	"testing"
)

// Without cgo a valid tensor map spec is answered with ErrNoCGO, an
// invalid one with its validation error.
func TestWithoutCGOTensorMaps(t *testing.T) {
	if HasTensorMaps() {
		t.Error("HasTensorMaps without cgo")
	}
	s := validSpec()
	if _, err := EncodeTensorMapTiled(&s); !errors.Is(err, ErrNoCGO) {
		t.Errorf("EncodeTensorMapTiled: %v, want ErrNoCGO", err)
	}
	s.Rank = 0
	if _, err := EncodeTensorMapTiled(&s); err == nil || errors.Is(err, ErrNoCGO) {
		t.Errorf("EncodeTensorMapTiled of rank 0: %v, want the validation error", err)
	}
}
