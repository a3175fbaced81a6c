package cuda

import "testing"

// The version codes are nccl.h's NCCL_VERSION(X, Y, Z): X*1000 + Y*100 + Z up
// to 2.8, X*10000 + Y*100 + Z from 2.9 on.
func TestNCCLVersionString(t *testing.T) {
	for _, c := range []struct {
		code int
		want string
	}{
		{2804, "2.8.4"},
		{20903, "2.9.3"},
		{21903, "2.19.3"},
		{23203, "2.32.3"},
	} {
		if got := NCCLVersionString(c.code); got != c.want {
			t.Errorf("NCCLVersionString(%d) = %q, want %q", c.code, got, c.want)
		}
	}
}

func TestNCCLResultAndErrorText(t *testing.T) {
	e := &NCCLError{Call: "ncclCommInitAll", Result: NCCLUnhandledCudaError, Message: "unhandled cuda error", Detail: "devices [0 1]"}
	want := "ncclCommInitAll: ncclUnhandledCudaError (1): unhandled cuda error [devices [0 1]]"
	if got := e.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := NCCLResult(42).Name(); got != "ncclResult_t(42)" {
		t.Errorf("unknown result named %q", got)
	}
}
