//go:build !race

package conformance

// raceEnabled reports whether the tests run under the race detector (see
// attention_race_test.go).
const raceEnabled = false
