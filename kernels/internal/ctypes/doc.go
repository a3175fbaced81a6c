// Package ctypes reports how the C compiler lays out the parameter structs of
// kernels/kiln_params.h (offsetof and sizeof of every field) and the values of
// its #defines, so that kernels' layout test can compare them with the Go
// mirrors. It needs cgo; without it, Available is false and the maps are empty.
package ctypes
