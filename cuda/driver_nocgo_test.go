//go:build !cgo

package cuda

import (
	"errors"
	"testing"
)

// Without cgo every entry point answers ErrNoCGO, on zero values and nil
// receivers too, and nothing panics.
func TestWithoutCGOEveryCallReportsErrNoCGO(t *testing.T) {
	var (
		dev  Device
		ctx  *Context
		s    *Stream
		e    *Event
		m    *Module
		f    *Function
		g    *Graph
		ge   *GraphExec
		h    *HostBuffer
		args Args
	)
	_, versionErr := DriverVersion()
	_, countErr := DeviceCount()
	_, getErr := GetDevice(0)
	_, nameErr := dev.Name()
	_, uuidErr := dev.UUID()
	_, busErr := dev.PCIBusID()
	_, _, ccErr := dev.ComputeCapability()
	_, attrErr := dev.Attribute(AttrWarpSize)
	_, memErr := dev.TotalMemBytes()
	_, peerErr := dev.CanAccessPeer(1)
	_, retainErr := dev.RetainPrimaryContext()
	_, allocErr := ctx.MemAlloc(16)
	_, _, infoErr := ctx.MemInfo()
	_, hostErr := ctx.MemHostAlloc(16)
	_, streamErr := ctx.NewStream(true)
	_, eventErr := ctx.NewEvent(true)
	_, moduleErr := ctx.LoadModule([]byte(".version 8.4"))
	_, functionErr := m.Function("k")
	_, endErr := s.EndCapture()
	_, instErr := g.Instantiate()
	_, elapsedErr := ElapsedMillis(e, e)
	_, occErr := f.MaxActiveBlocksPerSM(128, 0)
	calls := map[string]error{
		"Load":                 Load(),
		"Init":                 Init(),
		"DriverVersion":        versionErr,
		"DeviceCount":          countErr,
		"GetDevice":            getErr,
		"Device.Name":          nameErr,
		"Device.UUID":          uuidErr,
		"Device.PCIBusID":      busErr,
		"ComputeCapability":    ccErr,
		"Device.Attribute":     attrErr,
		"TotalMemBytes":        memErr,
		"CanAccessPeer":        peerErr,
		"RetainPrimaryContext": retainErr,
		"Context.Release":      ctx.Release(),
		"MemAlloc":             allocErr,
		"MemInfo":              infoErr,
		"MemHostAlloc":         hostErr,
		"HostBuffer.Free":      h.Free(),
		"MemcpyHtoD":           ctx.MemcpyHtoD(0, []byte{1}),
		"NewStream":            streamErr,
		"NewEvent":             eventErr,
		"LoadModule":           moduleErr,
		"Module.Function":      functionErr,
		"Launch":               ctx.Launch(f, D1(1), D1(1), 0, s, &args),
		"Stream.BeginCapture":  s.BeginCapture(CaptureGlobal),
		"Stream.EndCapture":    endErr,
		"Graph.Instantiate":    instErr,
		"GraphExec.Launch":     ge.Launch(s),
		"ElapsedMillis":        elapsedErr,
		"MaxActiveBlocksPerSM": occErr,
	}
	for name, err := range calls {
		if !errors.Is(err, ErrNoCGO) {
			t.Errorf("%s: got %v, want ErrNoCGO", name, err)
		}
	}
	if p := LibraryPath(); p != "" {
		t.Errorf("LibraryPath without cgo: %q, want empty", p)
	}
}
