//go:build !cgo

package backend

// haveCgo: built with CGO_ENABLED=0, so no driver library can be loaded and
// the tests that need the fake driver skip.
const haveCgo = false
