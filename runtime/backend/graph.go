package backend

import "github.com/kiln-gpu/kiln/runtime/op"

// GraphCapturer is an optional capability of a Backend: recording a fixed
// sequence of ops once and replaying it (a CUDA graph). See op.GraphCapturer
// for the capture rules; the type lives in runtime/op so that backends can
// implement it without importing this package.
type GraphCapturer = op.GraphCapturer

// Graph is a captured sequence of ops (op.Graph).
type Graph = op.Graph
