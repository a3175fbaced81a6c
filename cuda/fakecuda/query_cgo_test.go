//go:build cgo

package fakecuda

import (
	"strings"
	"testing"
)

func TestOpenRefusesALibraryNotLoaded(t *testing.T) {
	path := Build(t)
	// Nothing in this test binary has dlopened the fake.
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "not loaded") {
		t.Errorf("Open of a library this process never loaded: %v", err)
	}
}
