package cuda

import (
	"errors"
	"fmt"
	"unsafe"
)

// ErrNoNCCL: the NCCL library (libnccl.so.2, or the file named by
// KILN_NCCL_LIBRARY) could not be opened or lacks an entry point kiln binds.
// The wrapping error gives the path and dlerror's text.
var ErrNoNCCL = errors.New("cuda: NCCL library not available")

// NCCLResult is an ncclResult_t.
type NCCLResult int

// The ncclResult_t values (nccl.h).
const (
	NCCLSuccess            NCCLResult = 0
	NCCLUnhandledCudaError NCCLResult = 1
	NCCLSystemError        NCCLResult = 2
	NCCLInternalError      NCCLResult = 3
	NCCLInvalidArgument    NCCLResult = 4
	NCCLInvalidUsage       NCCLResult = 5
	NCCLRemoteError        NCCLResult = 6
	NCCLInProgress         NCCLResult = 7
	NCCLTimeout            NCCLResult = 8
)

var ncclResultNames = map[NCCLResult]string{
	NCCLSuccess:            "ncclSuccess",
	NCCLUnhandledCudaError: "ncclUnhandledCudaError",
	NCCLSystemError:        "ncclSystemError",
	NCCLInternalError:      "ncclInternalError",
	NCCLInvalidArgument:    "ncclInvalidArgument",
	NCCLInvalidUsage:       "ncclInvalidUsage",
	NCCLRemoteError:        "ncclRemoteError",
	NCCLInProgress:         "ncclInProgress",
	NCCLTimeout:            "ncclTimeout",
}

// Name is the result's name in nccl.h, for example ncclUnhandledCudaError.
func (r NCCLResult) Name() string {
	if n, ok := ncclResultNames[r]; ok {
		return n
	}
	return fmt.Sprintf("ncclResult_t(%d)", int(r))
}

// NCCLError is a failed NCCL call.
type NCCLError struct {
	// Call is the NCCL entry point, for example "ncclCommInitAll".
	Call string
	// Result is the ncclResult_t it returned.
	Result NCCLResult
	// Message is NCCL's own text for the result (ncclGetErrorString).
	Message string
	// Detail is extra context from kiln (devices, sizes); may be empty.
	Detail string
}

func (e *NCCLError) Error() string {
	s := fmt.Sprintf("%s: %s (%d)", e.Call, e.Result.Name(), int(e.Result))
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Detail != "" {
		s += " [" + e.Detail + "]"
	}
	return s
}

// NCCLDataType is an ncclDataType_t; kiln uses the three float types its
// activations come in.
type NCCLDataType int

// The ncclDataType_t values kiln uses (nccl.h).
const (
	NCCLFloat16  NCCLDataType = 6
	NCCLFloat32  NCCLDataType = 7
	NCCLBfloat16 NCCLDataType = 9
)

// String names the type as nccl.h does.
func (t NCCLDataType) String() string {
	switch t {
	case NCCLFloat16:
		return "ncclFloat16"
	case NCCLFloat32:
		return "ncclFloat32"
	case NCCLBfloat16:
		return "ncclBfloat16"
	}
	return fmt.Sprintf("ncclDataType_t(%d)", int(t))
}

// NCCLComm is one rank's communicator (ncclComm_t) of a group made by
// NCCLCommInitAll. Rank i belongs to the i-th device passed there. A
// communicator is not safe for concurrent use: NCCL requires every rank's
// collectives to be issued in one order, which the caller serialises.
type NCCLComm struct {
	handle unsafe.Pointer
	dev    Device
	rank   int
}

// Device is the device of this rank.
func (c *NCCLComm) Device() Device { return c.dev }

// Rank is the communicator's rank in its group.
func (c *NCCLComm) Rank() int { return c.rank }

// NCCLVersionString formats an ncclGetVersion code: 23203 is "2.32.3"; codes
// below 2.9 used 1000*major + 100*minor + patch (2804 is "2.8.4").
func NCCLVersionString(code int) string {
	if code < 10000 {
		return fmt.Sprintf("%d.%d.%d", code/1000, code%1000/100, code%100)
	}
	return fmt.Sprintf("%d.%d.%d", code/10000, code%10000/100, code%100)
}

// checkNCCLDevices validates NCCLCommInitAll's device list.
func checkNCCLDevices(devices []Device) error {
	if len(devices) == 0 {
		return fmt.Errorf("cuda: NCCLCommInitAll: the device list is empty")
	}
	for i, d := range devices {
		if d < 0 {
			return fmt.Errorf("cuda: NCCLCommInitAll: device %d is ordinal %d; ordinals are not negative", i, int(d))
		}
		for j := range i {
			if devices[j] == d {
				return fmt.Errorf("cuda: NCCLCommInitAll: device ordinal %d appears at %d and %d; NCCL needs one rank per device", int(d), j, i)
			}
		}
	}
	return nil
}

// checkNCCLDataType validates an all-reduce's element type.
func checkNCCLDataType(dt NCCLDataType) error {
	switch dt {
	case NCCLFloat16, NCCLFloat32, NCCLBfloat16:
		return nil
	}
	return fmt.Errorf("cuda: NCCLComm.AllReduceSum: data type %v: expected ncclFloat32, ncclFloat16 or ncclBfloat16", dt)
}
