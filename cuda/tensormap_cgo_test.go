//go:build cgo

package cuda

import (
	"errors"
	"strings"
	"testing"
)

// TestFakeEncodeTensorMapTiled: the binding reaches the fake driver's
// cuTensorMapEncodeTiled, which writes the documented stand-in layout.
func TestFakeEncodeTensorMapTiled(t *testing.T) {
	if fakeBuildErr != nil {
		t.Skipf("skipping: the fake driver could not be built: %v", fakeBuildErr)
	}
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	if !HasTensorMaps() {
		t.Fatal("the fake driver exports cuTensorMapEncodeTiled, but HasTensorMaps is false")
	}
	s := validSpec()
	m, err := EncodeTensorMapTiled(&s)
	if err != nil {
		t.Fatal(err)
	}
	if want := FakeTensorMap(&s); m != want {
		t.Errorf("encoded map\n% x\nwant\n% x", m[:], want[:])
	}
	// A bad spec is refused by Validate before the driver sees it.
	s.Strides[0] = 250
	if _, err := EncodeTensorMapTiled(&s); err == nil || !strings.Contains(err.Error(), "stride of dimension 1") {
		t.Errorf("bad stride: %v", err)
	}
	var ce *Error
	if _, err := EncodeTensorMapTiled(&s); errors.As(err, &ce) {
		t.Errorf("a spec error reached the driver: %v", err)
	}
}
