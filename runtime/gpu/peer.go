package gpu

import (
	"fmt"
	"slices"
	"sync"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// peerMu serialises peer copies, so that a copy never holds two backends'
// op locks at once (two goroutines copying in opposite directions would
// otherwise deadlock).
var peerMu sync.Mutex

// CopyFromPeer copies src, a tensor of another CUDA backend (another device,
// or another Backend of the same device), into dst on b with
// cuMemcpyPeerAsync; dst and src are contiguous with the same dtype and
// shape. The copy runs on b's stream after the work queued on src's backend
// before the call, and src's backend's later work waits for the copy, so
// neither side needs a Sync. Peer access between the two devices is enabled
// on first use where the hardware allows it; without it the driver stages
// the copy through the host. This is what tensor parallelism over GPUs uses
// to sum partial results (models/llama).
func (b *Backend) CopyFromPeer(dst, src tensor.Tensor) error {
	const name = "copy from peer"
	dbuf, err := b.buffer(name, "dst", dst)
	if err != nil {
		return err
	}
	sb, ok := src.Buffer().(*deviceBuffer)
	if !ok {
		return &op.ArgError{Op: name, Arg: "src", Msg: "not a tensor of a CUDA backend"}
	}
	peer := sb.owner
	if peer == b {
		return b.Copy(dst, src)
	}
	sbuf, err := peer.buffer(name, "src", src)
	if err != nil {
		return err
	}
	if dst.DType() != src.DType() || !slices.Equal(dst.Shape(), src.Shape()) || !dst.IsContiguous() || !src.IsContiguous() {
		return &op.ArgError{Op: name, Arg: "src", Msg: fmt.Sprintf("%v into %v: expected contiguous tensors of one dtype and shape", src, dst)}
	}
	if b.capturing.Load() || peer.capturing.Load() {
		return fmt.Errorf("%s: %s: %w", b.name, name, errCapturing)
	}
	peerMu.Lock()
	defer peerMu.Unlock()
	b.enablePeer(peer)

	// 1. src is ready when the peer's queued work is done.
	ready, err := peer.recordPeerEvent()
	if err != nil {
		return err
	}
	// 2. b's stream waits for that, then copies.
	done, err := b.copyAfter(dst, dbuf, src, sbuf, peer, ready)
	if err != nil {
		return err
	}
	// 3. The peer's later work (which may overwrite src) waits for the copy.
	peer.opMu.Lock()
	defer peer.opMu.Unlock()
	if err := peer.stream.WaitEvent(done); err != nil {
		return peer.noteFault(name, err)
	}
	return nil
}

// recordPeerEvent records b's peer event on b's stream (creating the event
// on first use) and returns it. peerMu is held: no other peer copy records
// it meanwhile.
func (b *Backend) recordPeerEvent() (*cuda.Event, error) {
	b.opMu.Lock()
	defer b.opMu.Unlock()
	return b.recordPeerEventLocked()
}

// recordPeerEventLocked is recordPeerEvent with b.opMu held.
func (b *Backend) recordPeerEventLocked() (*cuda.Event, error) {
	if b.fault != nil {
		return nil, b.fault
	}
	if b.peerEv == nil {
		e, err := b.ctx.NewEvent(false)
		if err != nil {
			return nil, b.noteFault("copy from peer: event", err)
		}
		b.peerEv = e
	}
	if err := b.peerEv.Record(b.stream); err != nil {
		return nil, b.noteFault("copy from peer: event", err)
	}
	return b.peerEv, nil
}

// copyAfter queues on b's stream: wait for ready, copy src into dst, and
// returns b's peer event recorded after the copy.
func (b *Backend) copyAfter(dst tensor.Tensor, dbuf *deviceBuffer, src tensor.Tensor, sbuf *deviceBuffer, peer *Backend, ready *cuda.Event) (*cuda.Event, error) {
	b.opMu.Lock()
	defer b.opMu.Unlock()
	if b.fault != nil {
		return nil, b.fault
	}
	if err := b.stream.WaitEvent(ready); err != nil {
		return nil, b.noteFault("copy from peer", err)
	}
	n := dst.SizeBytes()
	if err := b.ctx.MemcpyPeerAsync(b.ptr(dbuf, dst), peer.ptr(sbuf, src), peer.ctx, n, b.stream); err != nil {
		return nil, b.noteFault("copy from peer", err)
	}
	return b.recordPeerEventLocked()
}

// enablePeer turns on peer access from b to peer's device once per pair
// (peerMu held). Failure is not an error: copies still work, staged by the
// driver.
func (b *Backend) enablePeer(peer *Backend) {
	if b.peersTried == nil {
		b.peersTried = map[*Backend]bool{}
	}
	if b.peersTried[peer] || b.ordinal == peer.ordinal {
		return
	}
	b.peersTried[peer] = true
	can, err := b.dev.CanAccessPeer(peer.dev)
	if err == nil && can {
		err = b.ctx.EnablePeerAccess(peer.ctx)
	}
	if err != nil || !can {
		b.log.Debug("peer access not enabled; peer copies go through the host", "device", b.name, "peer", peer.name, "can_access", can, "error", err)
	}
}
