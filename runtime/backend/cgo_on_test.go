//go:build cgo

package backend

// haveCgo: this test binary can reach a driver library (fake or real).
const haveCgo = true
