//go:build !cgo

package ctypes

// Available is false: without cgo there is no C compiler to ask.
const Available = false

// Offsets is empty without cgo.
var Offsets = map[string]uintptr{}

// Sizes is empty without cgo.
var Sizes = map[string]uintptr{}

// Defines is empty without cgo.
var Defines = map[string]int64{}
