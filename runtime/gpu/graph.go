package gpu

import (
	"errors"
	"fmt"
	"sync"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
)

// errCapturing is returned by calls that cannot be recorded into a graph
// (transfers, Sync, Alloc, Free) while the backend's stream is capturing.
var errCapturing = errors.New("not allowed while the backend's stream is capturing a CUDA graph")

// CaptureGraph records the ops fn queues on the backend's stream into a CUDA
// graph (op.GraphCapturer; read its rules). The capture uses
// CU_STREAM_CAPTURE_MODE_RELAXED: Go moves goroutines between OS threads, and
// the kernel set may still grow a workspace or load a module on first use
// (run the same ops once before capturing so that it does not). While fn runs,
// Upload, Download, Sync, Alloc and Free on this backend fail; an error from
// fn or from the driver ends the capture, discards the graph and returns the
// error, and the backend stays usable.
//
// The kernels' split-k and split-KV workspaces are never freed before Close,
// so the addresses a graph was captured with stay valid for its life.
func (b *Backend) CaptureGraph(fn func() error) (op.Graph, error) {
	if err := b.checkOpen(); err != nil {
		return nil, err
	}
	b.opMu.Lock()
	if b.fault != nil {
		b.opMu.Unlock()
		return nil, b.fault
	}
	if b.capturing.Load() {
		b.opMu.Unlock()
		return nil, fmt.Errorf("%s: capture graph: %w", b.name, errCapturing)
	}
	if err := b.stream.BeginCapture(cuda.CaptureRelaxed); err != nil {
		b.opMu.Unlock()
		return nil, b.noteFault("capture graph", err)
	}
	b.capturing.Store(true)
	b.opMu.Unlock()

	fnErr := fn()

	b.opMu.Lock()
	defer b.opMu.Unlock()
	b.capturing.Store(false)
	g, endErr := b.stream.EndCapture()
	if fnErr != nil || endErr != nil {
		if g != nil {
			_ = g.Destroy()
		}
		if fnErr != nil {
			return nil, fmt.Errorf("%s: capture graph: %w", b.name, fnErr)
		}
		return nil, b.noteFault("capture graph", endErr)
	}
	exec, err := g.Instantiate()
	if derr := g.Destroy(); err == nil && derr != nil {
		err = derr
	}
	if err != nil {
		if exec != nil {
			_ = exec.Destroy()
		}
		return nil, b.noteFault("capture graph: instantiate", err)
	}
	g2 := &graph{b: b, exec: exec}
	b.closeMu.Lock()
	if b.closed { // closed during the capture: Close did not see this graph
		b.closeMu.Unlock()
		_ = exec.Destroy()
		return nil, fmt.Errorf("%s: capture graph: %w", b.name, op.ErrClosed)
	}
	if b.graphs == nil {
		b.graphs = map[*graph]struct{}{}
	}
	b.graphs[g2] = struct{}{}
	b.closeMu.Unlock()
	return g2, nil
}

// graph is an instantiated CUDA graph of one Backend.
type graph struct {
	b    *Backend
	mu   sync.Mutex
	exec *cuda.GraphExec // nil once closed
}

// Launch queues the graph on the backend's stream.
func (g *graph) Launch() error {
	b := g.b
	if err := b.checkOpen(); err != nil {
		return err
	}
	// Lock order: b.opMu (taken by launch), then g.mu, as Close and
	// Backend.Close take them.
	return b.launch("graph launch", func() error {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.exec == nil {
			return fmt.Errorf("%s: graph launch: %w: the graph was closed", b.name, op.ErrClosed)
		}
		if b.capturing.Load() {
			return fmt.Errorf("%s: graph launch: %w", b.name, errCapturing)
		}
		// The graph's kernels may record faults in the error word.
		b.mayFault = true
		return g.exec.Launch(b.stream)
	})
}

// Close destroys the graph. Closing twice is not an error; Backend.Close
// destroys the graphs still open.
func (g *graph) Close() error {
	b := g.b
	b.closeMu.Lock()
	_, live := b.graphs[g]
	delete(b.graphs, g)
	b.closeMu.Unlock()
	if !live {
		return nil
	}
	b.opMu.Lock()
	defer b.opMu.Unlock()
	return g.destroy()
}

// destroy releases the executable graph (b.opMu held).
func (g *graph) destroy() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.exec == nil {
		return nil
	}
	exec := g.exec
	g.exec = nil
	return exec.Destroy()
}
