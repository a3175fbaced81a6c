package op

// GraphCapturer is an optional capability of a Backend: recording a fixed
// sequence of ops once and replaying it (a CUDA graph). The CUDA backend has
// it; the CPU backend does not. Find it behind wrappers such as *Device with
// Unwrap.
//
// Capture rules, which the caller keeps: while fn runs, the ops it calls are
// recorded, not executed, and their tensor arguments (addresses and shapes)
// are frozen into the graph, so fn must use tensors that stay allocated for
// the graph's life and whose contents the caller refreshes (Upload) before
// each Launch. fn must not Upload, Download, Sync, Alloc or Free, and no other
// goroutine may use the backend during the capture. Ops whose work depends on
// scalar arguments (shapes, bounds such as AttentionOptions.MaxKVLen) replay
// with the values they were captured with.
type GraphCapturer interface {
	CaptureGraph(fn func() error) (Graph, error)
}

// Graph is a captured sequence of ops.
type Graph interface {
	// Launch queues the recorded ops on the backend's stream, in order. Like
	// any op it returns at once; faults surface at the next Sync or Download.
	Launch() error
	// Close releases the graph. Launching it afterwards is an error.
	Close() error
}
