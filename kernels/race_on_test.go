//go:build race

package kernels

// raceEnabled: this test binary runs under the race detector. The host
// simulators (separate C++ processes) then skip: the race detector has
// nothing to watch in them, and the CGO_ENABLED=0 pass of `make test` runs
// them without the slowdown.
const raceEnabled = true
