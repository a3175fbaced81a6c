// Package op holds what every backend shares about the ops: the sentinel
// errors, the option structs, and the checks that validate an op's arguments
// (shapes, dtypes, layouts) before any backend touches them, so that every
// backend refuses bad input with the same clear error.
//
// It is a leaf package: cpu, gpu and backend import it; it imports only
// runtime/tensor.
package op

import (
	"errors"
	"fmt"
)

// Sentinel errors, matched with errors.Is. Package backend re-exports them so
// that callers need one import.
var (
	// ErrInvalidArgument: an op was given shapes, dtypes or layouts it does
	// not accept. The wrapping error names the op, the argument and what was
	// expected and found.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnsupported: the request is well formed but this backend or device
	// does not implement it.
	ErrUnsupported = errors.New("unsupported")
	// ErrOutOfMemory: an allocation failed even after the allocator released
	// its cache. The wrapping error gives the sizes.
	ErrOutOfMemory = errors.New("out of memory")
	// ErrNoDevice: no usable GPU (no driver library, no device, a driver
	// that failed to initialise, or one too old). The wrapping error says which.
	ErrNoDevice = errors.New("no usable device")
	// ErrClosed: the backend or buffer was used after Close or Free.
	ErrClosed = errors.New("closed")
	// ErrForeignTensor: a tensor from another backend was passed to an op.
	ErrForeignTensor = errors.New("tensor belongs to another backend")
	// ErrDeviceFault: the device reported a failure while running ops (a
	// failed launch, an illegal address, a data-dependent fault such as a
	// token id out of range). The wrapping error says which op and why.
	ErrDeviceFault = errors.New("device fault")
)

// ArgError is the error an op check returns: which op, which argument, and
// what is wrong. It matches ErrInvalidArgument.
type ArgError struct {
	Op  string // "rmsnorm"
	Arg string // "weight"
	Msg string // "shape [64] does not match the rows' length 128"
}

func (e *ArgError) Error() string {
	if e.Arg == "" {
		return fmt.Sprintf("%s: %s", e.Op, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.Op, e.Arg, e.Msg)
}

// Is makes errors.Is(err, ErrInvalidArgument) true.
func (e *ArgError) Is(target error) bool { return target == ErrInvalidArgument }

func argErr(opName, arg, format string, args ...any) error {
	return &ArgError{Op: opName, Arg: arg, Msg: fmt.Sprintf(format, args...)}
}
