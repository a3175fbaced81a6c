//go:build !amd64 || purego

package cpu

// Without the amd64 assembly (other architectures, or the purego build
// tag) the fused path always runs the Go dots.

// dotAsmSupported is false: there are no assembly dots in this build.
const dotAsmSupported = false

// fusedDotAsm is never called in this build (useDotAsm stays false); it
// runs the Go dots so that it is correct if it were.
func (w *weightRows) fusedDotAsm(j int, x, xSums32 []float32) float32 {
	return w.fusedDotGo(j, x, xSums32, f16Table())
}

// fusedDotsAsm is never called in this build; it runs the Go dots.
func (w *weightRows) fusedDotsAsm(j int, xs, xSums32, out []float32) {
	k := w.k
	for i := range out {
		var xSums []float32
		if xSums32 != nil {
			xSums = xSums32[i*k/32 : (i+1)*k/32]
		}
		out[i] = w.fusedDotGo(j, xs[i*k:(i+1)*k], xSums, f16Table())
	}
}

// addChunkProductsAsm is never called in this build; it runs the Go
// micro-kernels.
func addChunkProductsAsm(acc, xs []float32, m, k, k0, kl int, cols [][]float32) {
	addChunkProducts(acc, xs, m, k, k0, kl, cols)
}
