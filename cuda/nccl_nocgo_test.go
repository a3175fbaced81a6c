//go:build !cgo

package cuda

import (
	"errors"
	"testing"
)

// Without cgo NCCL cannot be reached either: every NCCL call answers ErrNoCGO.
func TestWithoutCGONCCLReportsErrNoCGO(t *testing.T) {
	var comm *NCCLComm
	_, versionErr := NCCLVersion()
	_, initErr := NCCLCommInitAll([]Device{0, 1})
	for name, err := range map[string]error{
		"LoadNCCL":        LoadNCCL(),
		"NCCLVersion":     versionErr,
		"NCCLCommInitAll": initErr,
		"NCCLGroupStart":  NCCLGroupStart(),
		"NCCLGroupEnd":    NCCLGroupEnd(),
		"Destroy":         comm.Destroy(),
		"AllReduceSum":    comm.AllReduceSum(0, 0, 1, NCCLFloat32, nil),
	} {
		if !errors.Is(err, ErrNoCGO) {
			t.Errorf("%s: got %v, want ErrNoCGO", name, err)
		}
	}
}
