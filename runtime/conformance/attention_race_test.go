//go:build race

package conformance

// raceEnabled reports whether the tests run under the race detector, which
// makes the largest attention case (8k causal) too slow for two cores; it
// runs in the suite's pass without -race instead.
const raceEnabled = true
