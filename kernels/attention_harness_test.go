package kernels

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// This file holds what the attention kernel tests share, on the host
// simulator (attention_sim_test.go) and on a GPU (attention_gpu_test.go):
// the cases, their inputs laid out as device buffers (padded strides whose
// padding is NaN, shuffled pages, spare pages and rows full of NaN, outputs
// poisoned), a float64 reference computed here from the rounded inputs, and
// the checks of the outputs against it.

// attnFault is a metadata fault a case injects.
type attnFault int

const (
	faultNone        attnFault = iota
	faultPage                  // a block-table entry of the last sequence points past the cache
	faultQueryStarts           // queryStarts[2] < queryStarts[1]
	faultKVLen                 // paged: the last length over the table's capacity; contiguous: the last start past the rows
	faultMaskNarrow            // the mask is one column short of the longest sequence (there must be one)
	faultMaxKVLen              // MaxKVLen one short of the longest sequence
	faultTailRows              // rows of Q past the last start (tailRows of them)
)

// attnCase is one attention call.
type attnCase struct {
	name                      string
	dt                        tensor.DType
	headDim, nHeads, nKVHeads int
	qLens, kvLens             []int
	tailRows                  int // rows of Q past the last sequence (a fault: faultTailRows)
	paged                     bool
	pageSize                  int
	causal                    bool
	window                    int
	mask, lse                 bool
	scale                     float32
	// unaligned makes Q's token stride odd (the fast kernels then refuse).
	unaligned bool
	// maxQueryLen: the MaxQueryLen passed (0: the default, totalQ; -1:
	// the longest sequence's, as a server passes it).
	maxQueryLen int
	fault       attnFault
	// The fast kernel auto dispatch must pick, and whether it splits.
	wantKind  Kind
	wantSplit bool
}

func (c attnCase) String() string { return c.name }

// attnBuf is one device buffer of a case: its initial bytes, and whether
// the test reads it back.
type attnBuf struct {
	name   string
	data   []byte
	output bool
}

// attnData is a case's inputs, layout and reference.
type attnData struct {
	c                  attnCase
	batch, totalQ      int
	qStarts, kvStarts  []int32 // kvStarts: contiguous only
	kvLensI32          []int32
	q                  []float64   // [totalQ][nHeads][hd], rounded to dt
	k, v               [][]float64 // per sequence [kvLen][nKVHeads][hd], rounded to dt
	maskVals           []float64   // [totalQ][maskCols]
	maskCols           int
	qTok, qHead        int
	oTok, oHead        int
	kTok, kHead, kPage int
	vTok, vHead, vPage int
	totalKV            int // contiguous rows
	nPages, maxPages   int
	btStride           int
	blockTable         []int32
	maskStride         int
	lseStride          int
	maxKVLen           int
	bufs               []attnBuf
	// indexes into bufs
	iQ, iO, iQStarts, iK, iV, iKVStarts, iBT, iLens, iMask, iLSE, iErr int
	// the reference: out [totalQ][nHeads][hd], lse [nHeads][totalQ], and
	// absMean [totalQ][nHeads][hd] = Σ p·|v| / Σ p (the scale of the errors)
	ref, refAbs []float64
	refLSE      []float64
	// wantErr is the fault the kernels must record (nil: none); badSeq
	// the sequence whose rows may be left unwritten (-1: none), and
	// skipOutputs whether the outputs are not checked at all.
	wantErr     *DeviceError
	badSeq      int
	skipOutputs bool
}

// elemBytes of the case's dtype.
func (d *attnData) elemBytes() int { return d.c.dt.BlockBytes() }

// encodeAt writes v at element index i of a dtype buffer.
func putElem(dt tensor.DType, b []byte, i int, v float64) {
	switch dt {
	case tensor.F32:
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(v)))
	default:
		e, _ := tensor.EncodeFloats(dt, []float32{float32(v)})
		copy(b[2*i:], e)
	}
}

// getElem reads element i of a dtype buffer.
func getElem(dt tensor.DType, b []byte, i int) float64 {
	switch dt {
	case tensor.F32:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
	default:
		f, _ := tensor.DecodeFloats(dt, b[2*i:2*i+2])
		return float64(f[0])
	}
}

// nanBytes is n bytes of 0xff: NaN in every float dtype.
func nanBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 0xff
	}
	return b
}

// newAttnData lays out and fills case c (values from rng) and computes its
// reference.
func newAttnData(c attnCase, rng *rand.Rand) *attnData {
	d := &attnData{c: c, batch: len(c.qLens), badSeq: -1}
	hd, dt := c.headDim, c.dt
	round := func(x float64) float64 { return float64(tensor.RoundTo(dt, float32(x))) }
	group := c.nHeads / c.nKVHeads

	// Queries: starts, values, layout (head gaps and token padding are NaN).
	d.qStarts = make([]int32, d.batch+1)
	for b, n := range c.qLens {
		d.qStarts[b+1] = d.qStarts[b] + int32(n)
	}
	d.totalQ = int(d.qStarts[d.batch]) + c.tailRows
	d.qHead = hd + 8
	d.qTok = c.nHeads*d.qHead + 8
	if c.unaligned {
		d.qTok++
	}
	d.oHead = hd + 16 // O's strides differ from Q's
	d.oTok = c.nHeads*d.oHead + 24
	eb := dt.BlockBytes()
	qBytes := nanBytes(d.totalQ * d.qTok * eb)
	d.q = make([]float64, d.totalQ*c.nHeads*hd)
	for r := range d.totalQ {
		for h := range c.nHeads {
			for e := range hd {
				x := round(rng.NormFloat64())
				d.q[(r*c.nHeads+h)*hd+e] = x
				putElem(dt, qBytes, r*d.qTok+h*d.qHead+e, x)
			}
		}
	}

	// Keys and values, per sequence.
	d.k = make([][]float64, d.batch)
	d.v = make([][]float64, d.batch)
	maxKV := 0
	for b, n := range c.kvLens {
		maxKV = max(maxKV, n)
		d.k[b] = make([]float64, n*c.nKVHeads*hd)
		d.v[b] = make([]float64, n*c.nKVHeads*hd)
		for i := range d.k[b] {
			d.k[b][i] = round(rng.NormFloat64())
			d.v[b][i] = round(rng.NormFloat64())
		}
	}
	d.kHead, d.vHead = hd+8, hd+16 // K's and V's strides differ
	d.kTok, d.vTok = c.nKVHeads*d.kHead+8, c.nKVHeads*d.vHead
	var kBytes, vBytes []byte
	put := func(b, j, hk, e int, kb, vb []byte, kOff, vOff int) {
		x := (j*c.nKVHeads+hk)*hd + e
		putElem(dt, kb, kOff+hk*d.kHead+e, d.k[b][x])
		putElem(dt, vb, vOff+hk*d.vHead+e, d.v[b][x])
	}
	if c.paged {
		ps := c.pageSize
		need := 0
		for _, n := range c.kvLens {
			need += (n + ps - 1) / ps
			d.maxPages = max(d.maxPages, (n+ps-1)/ps)
		}
		d.maxPages++ // a spare column, never read
		d.nPages = need + 3
		d.kPage, d.vPage = ps*d.kTok+8, ps*d.vTok+16
		d.btStride = d.maxPages + 2
		d.blockTable = make([]int32, d.batch*d.btStride)
		for i := range d.blockTable {
			d.blockTable[i] = 1 << 30 // unused entries point far past the cache
		}
		perm := rng.Perm(d.nPages)
		kBytes, vBytes = nanBytes(d.nPages*d.kPage*eb), nanBytes(d.nPages*d.vPage*eb)
		next := 0
		for b, n := range c.kvLens {
			for col := 0; col*ps < n; col++ {
				page := perm[next]
				next++
				d.blockTable[b*d.btStride+col] = int32(page)
				for slot := 0; slot < ps && col*ps+slot < n; slot++ {
					j := col*ps + slot
					for hk := range c.nKVHeads {
						for e := range hd {
							put(b, j, hk, e, kBytes, vBytes, page*d.kPage+slot*d.kTok, page*d.vPage+slot*d.vTok)
						}
					}
				}
			}
		}
		d.kvLensI32 = make([]int32, d.batch)
		for b, n := range c.kvLens {
			d.kvLensI32[b] = int32(n)
		}
		d.maxKVLen = d.maxPages * ps
	} else {
		d.kvStarts = make([]int32, d.batch+1)
		for b, n := range c.kvLens {
			d.kvStarts[b+1] = d.kvStarts[b] + int32(n)
		}
		d.totalKV = int(d.kvStarts[d.batch]) + 3 // trailing rows of NaN
		kBytes, vBytes = nanBytes(d.totalKV*d.kTok*eb), nanBytes(d.totalKV*d.vTok*eb)
		for b, n := range c.kvLens {
			for j := range n {
				row := int(d.kvStarts[b]) + j
				for hk := range c.nKVHeads {
					for e := range hd {
						put(b, j, hk, e, kBytes, vBytes, row*d.kTok, row*d.vTok)
					}
				}
			}
		}
		d.maxKVLen = d.totalKV
	}

	// The mask: random, some keys hidden, the first row of sequence 0
	// hidden entirely; columns a row's sequence does not have are NaN.
	if c.mask {
		d.maskCols = maxKV + 2
		if c.fault == faultMaskNarrow {
			d.maskCols = maxKV - 1
		}
		d.maskStride = d.maskCols + 3
		d.maskVals = make([]float64, d.totalQ*d.maskCols)
		for b := range d.batch {
			for r := int(d.qStarts[b]); r < int(d.qStarts[b+1]); r++ {
				for j := range d.maskCols {
					x := float64(float32(rng.Float64()*4 - 3))
					if rng.IntN(10) == 0 || (b == 0 && r == 0) {
						x = math.Inf(-1)
					}
					d.maskVals[r*d.maskCols+j] = x
				}
			}
		}
	}

	d.computeReference(group)
	d.makeBuffers(qBytes, kBytes, vBytes)
	d.injectFault()
	return d
}

// computeReference is the float64 attention of the rounded inputs.
func (d *attnData) computeReference(group int) {
	c := d.c
	hd := c.headDim
	scale := float64(c.scale)
	if scale == 0 {
		scale = float64(float32(1 / math.Sqrt(float64(hd))))
	}
	d.ref = make([]float64, d.totalQ*c.nHeads*hd)
	d.refAbs = make([]float64, len(d.ref))
	d.refLSE = make([]float64, c.nHeads*d.totalQ)
	for i := range d.refLSE {
		d.refLSE[i] = math.NaN() // rows of no sequence
	}
	for i := range d.ref {
		d.ref[i] = math.NaN()
	}
	scores := []float64{}
	for b := range d.batch {
		qLen, kvLen := c.qLens[b], c.kvLens[b]
		for i := range qLen {
			row := int(d.qStarts[b]) + i
			pos := kvLen - qLen + i
			for h := range c.nHeads {
				hk := h / group
				scores = scores[:0]
				best := math.Inf(-1)
				for j := range kvLen {
					s := math.Inf(-1)
					if !c.causal || (j <= pos && (c.window == 0 || j > pos-c.window)) {
						dot := 0.0
						for e := range hd {
							dot += d.q[(row*c.nHeads+h)*hd+e] * d.k[b][(j*c.nKVHeads+hk)*hd+e]
						}
						s = scale * dot
						if c.mask && j < d.maskCols {
							s += d.maskVals[row*d.maskCols+j]
						} else if c.mask {
							s = math.NaN() // the narrow-mask fault: the sequence has no defined output
						}
					}
					scores = append(scores, s)
					best = math.Max(best, s)
				}
				out := d.ref[(row*c.nHeads+h)*hd : (row*c.nHeads+h+1)*hd]
				abs := d.refAbs[(row*c.nHeads+h)*hd : (row*c.nHeads+h+1)*hd]
				for e := range hd {
					out[e], abs[e] = 0, 0
				}
				if math.IsInf(best, -1) {
					d.refLSE[h*d.totalQ+row] = math.Inf(-1)
					continue
				}
				sum := 0.0
				for j, s := range scores {
					p := math.Exp(s - best)
					if p == 0 {
						continue
					}
					sum += p
					for e := range hd {
						v := d.v[b][(j*c.nKVHeads+hk)*hd+e]
						out[e] += p * v
						abs[e] += p * math.Abs(v)
					}
				}
				for e := range hd {
					out[e] /= sum
					abs[e] /= sum
				}
				d.refLSE[h*d.totalQ+row] = best + math.Log(sum)
			}
		}
	}
}

// makeBuffers lays the inputs and outputs out as device buffers.
func (d *attnData) makeBuffers(qBytes, kBytes, vBytes []byte) {
	c := d.c
	add := func(name string, data []byte, output bool) int {
		d.bufs = append(d.bufs, attnBuf{name: name, data: data, output: output})
		return len(d.bufs) - 1
	}
	i32 := func(v []int32) []byte {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
		}
		return b
	}
	d.iQ = add("q", qBytes, false)
	d.iO = add("dst", nanBytes(d.totalQ*d.oTok*d.elemBytes()), true)
	d.iQStarts = add("queryStarts", i32(d.qStarts), false)
	d.iK = add("kv.K", kBytes, false)
	d.iV = add("kv.V", vBytes, false)
	d.iKVStarts, d.iBT, d.iLens, d.iMask, d.iLSE = -1, -1, -1, -1, -1
	if c.paged {
		d.iBT = add("kv.BlockTable", i32(d.blockTable), false)
		d.iLens = add("kv.Lens", i32(d.kvLensI32), false)
	} else {
		d.iKVStarts = add("kv.Starts", i32(d.kvStarts), false)
	}
	if c.mask {
		m := nanBytes(4 * d.totalQ * d.maskStride)
		for b := range d.batch {
			for r := int(d.qStarts[b]); r < int(d.qStarts[b+1]); r++ {
				for j := range min(d.maskCols, c.kvLens[b]) {
					binary.LittleEndian.PutUint32(m[4*(r*d.maskStride+j):], math.Float32bits(float32(d.maskVals[r*d.maskCols+j])))
				}
			}
		}
		d.iMask = add("Mask", m, false)
	}
	if c.lse {
		d.lseStride = d.totalQ + 5
		d.iLSE = add("LSE", nanBytes(4*c.nHeads*d.lseStride), true)
	}
	d.iErr = add("errorWord", make([]byte, ErrorWordBytes), true)
}

// injectFault edits the metadata buffers and sets what the kernels must
// report.
func (d *attnData) injectFault() {
	c := d.c
	last := d.batch - 1
	set32 := func(buf, i int, v int32) { binary.LittleEndian.PutUint32(d.bufs[buf].data[4*i:], uint32(v)) }
	longest := func() int {
		best, n := -1, 0
		for b, l := range c.kvLens {
			if best < 0 || l > c.kvLens[best] {
				best, n = b, 1
			} else if l == c.kvLens[best] {
				n++
			}
		}
		if n != 1 {
			panic(fmt.Sprintf("case %s: the fault needs one longest sequence", c.name))
		}
		return best
	}
	switch c.fault {
	case faultPage:
		bad := int32(d.nPages + 7)
		set32(d.iBT, last*d.btStride, bad)
		d.wantErr = &DeviceError{Code: ErrCodePageOutOfRange, Op: ErrOpAttention, Index: int64(last) << 32, Value: int64(bad), Limit: int64(d.nPages)}
		d.badSeq = last
	case faultQueryStarts:
		v := d.qStarts[1] - 1
		set32(d.iQStarts, 2, v)
		d.wantErr = &DeviceError{Code: ErrCodeQueryStartDecreasing, Op: ErrOpAttention, Index: 2, Value: int64(v), Limit: int64(d.qStarts[1])}
		d.skipOutputs = true
	case faultKVLen:
		if c.paged {
			capacity := int64(d.maxPages * c.pageSize)
			set32(d.iLens, last, int32(capacity+1))
			d.wantErr = &DeviceError{Code: ErrCodeKVLenRange, Op: ErrOpAttention, Index: int64(last), Value: capacity + 1, Limit: capacity}
		} else {
			set32(d.iKVStarts, d.batch, int32(d.totalKV+1))
			d.wantErr = &DeviceError{Code: ErrCodeKVStartRange, Op: ErrOpAttention, Index: int64(d.batch), Value: int64(d.totalKV + 1), Limit: int64(d.totalKV)}
		}
		d.badSeq = last
	case faultMaskNarrow:
		b := longest()
		d.wantErr = &DeviceError{Code: ErrCodeMaskTooNarrow, Op: ErrOpAttention, Index: int64(b), Value: int64(c.kvLens[b]), Limit: int64(d.maskCols)}
		d.badSeq = b
	case faultTailRows:
		d.wantErr = &DeviceError{Code: ErrCodeQueryStartsEnd, Op: ErrOpAttention, Index: int64(d.batch), Value: int64(d.qStarts[d.batch]), Limit: int64(d.totalQ)}
		d.badSeq = last
	case faultMaxKVLen:
		b := longest()
		d.maxKVLen = c.kvLens[b] - 1
		d.wantErr = &DeviceError{Code: ErrCodeKVLenOverMax, Op: ErrOpAttention, Index: int64(b), Value: int64(c.kvLens[b]), Limit: int64(d.maxKVLen)}
		d.badSeq = b
	}
}

// args is the launcher's description of the case with its buffers at addr.
func (d *attnData) args(addr []cuda.DevicePtr) AttentionArgs {
	c := d.c
	a := AttentionArgs{
		DType: c.dt, Batch: d.batch, TotalQ: d.totalQ, NHeads: c.nHeads, NKVHeads: c.nKVHeads, HeadDim: c.headDim,
		Q: addr[d.iQ], QTokenStride: d.qTok, QHeadStride: d.qHead,
		O: addr[d.iO], OTokenStride: d.oTok, OHeadStride: d.oHead,
		QueryStarts: addr[d.iQStarts],
		K:           addr[d.iK], KTokenStride: d.kTok, KHeadStride: d.kHead,
		V: addr[d.iV], VTokenStride: d.vTok, VHeadStride: d.vHead,
		Scale: c.scale, Causal: c.causal, Window: c.window,
		ErrorWord: addr[d.iErr],
	}
	if c.paged {
		a.Paged = true
		a.KPageStride, a.VPageStride = d.kPage, d.vPage
		a.NPages, a.PageSize = d.nPages, c.pageSize
		a.BlockTable, a.MaxPagesPerSeq, a.BlockTableRowStride = addr[d.iBT], d.maxPages, d.btStride
		a.KVLens = addr[d.iLens]
	} else {
		a.TotalKV, a.KVStarts = d.totalKV, addr[d.iKVStarts]
	}
	if c.mask {
		a.Mask, a.MaskRowStride, a.MaskCols = addr[d.iMask], d.maskStride, d.maskCols
	}
	if c.lse {
		a.LSE, a.LSEHeadStride = addr[d.iLSE], d.lseStride
	}
	switch c.maxQueryLen {
	case -1:
		for _, n := range c.qLens {
			a.MaxQueryLen = max(a.MaxQueryLen, n)
		}
	default:
		a.MaxQueryLen = c.maxQueryLen
	}
	if c.fault == faultMaxKVLen {
		a.MaxKVLen = d.maxKVLen
	}
	return a
}

// check compares a run's outputs (outs[i] is buffer i after the run; nil
// for inputs) with the reference. fast says the kernel rounded the
// probabilities to the dtype (the tensor-core kernels).
func (d *attnData) check(t *testing.T, what string, outs [][]byte, fast bool) {
	t.Helper()
	c := d.c
	hd := c.headDim
	gotErr := DecodeDeviceError(outs[d.iErr])
	switch {
	case d.wantErr == nil && gotErr != nil:
		t.Errorf("%s: the kernels recorded a fault: %v", what, gotErr)
	case d.wantErr != nil:
		var de *DeviceError
		if !errors.As(gotErr, &de) || *de != *d.wantErr {
			t.Errorf("%s: recorded fault %v, want %v", what, gotErr, d.wantErr)
		}
	}
	if d.skipOutputs {
		return
	}
	seqOf := make([]int, d.totalQ)
	for r := range seqOf {
		seqOf[r] = -1
	}
	for b := range d.batch {
		for r := int(d.qStarts[b]); r < int(d.qStarts[b+1]); r++ {
			seqOf[r] = b
		}
	}
	u := unitRoundoff(c.dt)
	bad := 0
	report := func(format string, args ...any) {
		if bad++; bad <= 6 {
			t.Errorf("%s: "+format, append([]any{what}, args...)...)
		}
	}
	o := outs[d.iO]
	for r := range d.totalQ {
		for h := range c.nHeads {
			for e := 0; e < d.oHead; e++ {
				got := getElem(c.dt, o, r*d.oTok+h*d.oHead+e)
				if e >= hd || seqOf[r] < 0 {
					if !math.IsNaN(got) {
						report("dst[%d][%d][%d] = %v is padding or a row of no sequence, and was written", r, h, e, got)
					}
					continue
				}
				want := d.ref[(r*c.nHeads+h)*hd+e]
				if seqOf[r] == d.badSeq && math.IsNaN(got) {
					continue // a skipped row of the faulty sequence
				}
				abs := d.refAbs[(r*c.nHeads+h)*hd+e]
				// Output rounding, the probabilities' rounding (fast
				// kernels), F32 scores and exp2f.
				tol := 1.01*u*math.Abs(want) + 2e-5*abs + 1e-6
				if fast {
					tol += 2*u*math.Abs(want) + 2*u*abs
				}
				if !(math.Abs(got-want) <= tol) {
					report("dst[%d][%d][%d] = %v, want %v ± %.3g (sequence %d)", r, h, e, got, want, tol, seqOf[r])
				}
			}
		}
		// The token padding of dst stays NaN.
		for e := c.nHeads * d.oHead; e < d.oTok; e++ {
			if got := getElem(c.dt, o, r*d.oTok+e); !math.IsNaN(got) {
				report("dst row %d padding element %d was written (%v)", r, e, got)
			}
		}
	}
	if c.lse {
		l := outs[d.iLSE]
		for h := range c.nHeads {
			for r := range d.lseStride {
				got := float64(math.Float32frombits(binary.LittleEndian.Uint32(l[4*(h*d.lseStride+r):])))
				if r >= d.totalQ || seqOf[r] < 0 {
					if !math.IsNaN(got) {
						report("LSE[%d][%d] = %v is padding or a row of no sequence, and was written", h, r, got)
					}
					continue
				}
				if seqOf[r] == d.badSeq && math.IsNaN(got) {
					continue
				}
				want := d.refLSE[h*d.totalQ+r]
				if math.IsInf(want, -1) {
					if !math.IsInf(got, -1) {
						report("LSE[%d][%d] = %v, want -Inf (the query sees no key)", h, r, got)
					}
					continue
				}
				if tol := 1e-4 * (1 + math.Abs(want)); !(math.Abs(got-want) <= tol) {
					report("LSE[%d][%d] = %v, want %v ± %.3g", h, r, got, want, tol)
				}
			}
		}
	}
	if bad > 6 {
		t.Errorf("%s: %d bad elements in all", what, bad)
	}
}

// attnCases are the cases both runners take: every fast tile, dtype and
// layout feature at least once, small enough for the simulator.
func attnCases() []attnCase {
	return []attnCase{
		// Prefill.
		{name: "prefill f16 d64 contiguous causal, queries after cached keys", dt: tensor.F16, headDim: 64, nHeads: 2, nKVHeads: 2,
			qLens: []int{37, 70}, kvLens: []int{37, 100}, causal: true, wantKind: KindPrefill},
		{name: "prefill bf16 d128 paged (16) GQA 2 causal window lse", dt: tensor.BF16, headDim: 128, nHeads: 4, nKVHeads: 2,
			qLens: []int{65, 1, 20}, kvLens: []int{65, 130, 20}, paged: true, pageSize: 16, causal: true, window: 24, lse: true,
			wantKind: KindPrefill},
		{name: "prefill f16 head dim 40 GQA 4 mask lse", dt: tensor.F16, headDim: 40, nHeads: 8, nKVHeads: 2,
			qLens: []int{9, 30}, kvLens: []int{20, 30}, mask: true, lse: true, scale: 0.3, wantKind: KindPrefill},
		{name: "prefill bf16 head dim 160 paged (7) MQA, more queries than keys", dt: tensor.BF16, headDim: 160, nHeads: 4, nKVHeads: 1,
			qLens: []int{10, 9}, kvLens: []int{6, 50}, paged: true, pageSize: 7, causal: true, lse: true, wantKind: KindPrefill},
		{name: "prefill f16 d256 causal", dt: tensor.F16, headDim: 256, nHeads: 2, nKVHeads: 1,
			qLens: []int{40, 33}, kvLens: []int{40, 90}, causal: true, lse: true, wantKind: KindPrefill},
		{name: "prefill bf16 d80 varlen, an empty sequence", dt: tensor.BF16, headDim: 80, nHeads: 2, nKVHeads: 2,
			qLens: []int{17, 0, 66}, kvLens: []int{17, 5, 66}, wantKind: KindPrefill},
		{name: "prefill f16 d96 paged (32) causal mask", dt: tensor.F16, headDim: 96, nHeads: 2, nKVHeads: 1,
			qLens: []int{70}, kvLens: []int{75}, paged: true, pageSize: 32, causal: true, mask: true, wantKind: KindPrefill},
		{name: "prefill f16 d128 no keys for one sequence", dt: tensor.F16, headDim: 128, nHeads: 2, nKVHeads: 2,
			qLens: []int{20, 20}, kvLens: []int{0, 20}, lse: true, wantKind: KindPrefill},

		// Decode (MaxQueryLen as a server passes it).
		{name: "decode f16 d128 paged (16) GQA 8, split", dt: tensor.F16, headDim: 128, nHeads: 16, nKVHeads: 2,
			qLens: []int{1, 1, 1}, kvLens: []int{700, 33, 1500}, paged: true, pageSize: 16, lse: true, maxQueryLen: -1,
			wantKind: KindDecode, wantSplit: true},
		{name: "decode bf16 d64 MHA, 3 queries, causal window mask lse", dt: tensor.BF16, headDim: 64, nHeads: 4, nKVHeads: 4,
			qLens: []int{3, 2}, kvLens: []int{300, 90}, causal: true, window: 50, mask: true, lse: true, maxQueryLen: -1,
			wantKind: KindDecode},
		{name: "decode f16 d256 paged (32) GQA 4, 2 queries, split", dt: tensor.F16, headDim: 256, nHeads: 4, nKVHeads: 1,
			qLens: []int{2}, kvLens: []int{1100}, paged: true, pageSize: 32, causal: true, lse: true, maxQueryLen: -1,
			wantKind: KindDecode, wantSplit: true},
		{name: "decode bf16 d160 GQA 8, 4 queries: 2 row groups", dt: tensor.BF16, headDim: 160, nHeads: 8, nKVHeads: 1,
			qLens: []int{4, 4}, kvLens: []int{300, 560}, causal: true, maxQueryLen: -1, wantKind: KindDecode, wantSplit: true},
		{name: "decode f16 head dim 40, an empty cache", dt: tensor.F16, headDim: 40, nHeads: 2, nKVHeads: 1,
			qLens: []int{1, 1}, kvLens: []int{0, 40}, lse: true, maxQueryLen: -1, wantKind: KindDecode},
		{name: "decode bf16 d80 paged (5) split, one sequence", dt: tensor.BF16, headDim: 80, nHeads: 2, nKVHeads: 2,
			qLens: []int{1}, kvLens: []int{613}, paged: true, pageSize: 5, causal: true, maxQueryLen: -1,
			wantKind: KindDecode, wantSplit: true},
		{name: "decode f16 d96, the default bound: prefill", dt: tensor.F16, headDim: 96, nHeads: 2, nKVHeads: 1,
			qLens: []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, kvLens: []int{30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46},
			wantKind: KindPrefill},

		// The simple kernel only.
		{name: "simple f32 head dim 72 paged (3) causal window mask lse", dt: tensor.F32, headDim: 72, nHeads: 3, nKVHeads: 1,
			qLens: []int{5, 7}, kvLens: []int{5, 19}, paged: true, pageSize: 3, causal: true, window: 4, mask: true, lse: true,
			wantKind: KindSimple},
		{name: "simple f16 unaligned rows", dt: tensor.F16, headDim: 64, nHeads: 2, nKVHeads: 2,
			qLens: []int{6}, kvLens: []int{33}, unaligned: true, causal: true, wantKind: KindSimple},
		{name: "simple f32 head dim 1", dt: tensor.F32, headDim: 1, nHeads: 2, nKVHeads: 1,
			qLens: []int{3, 4}, kvLens: []int{3, 9}, causal: true, lse: true, wantKind: KindSimple},
		{name: "simple bf16 head dim 200", dt: tensor.BF16, headDim: 200, nHeads: 1, nKVHeads: 1,
			qLens: []int{2}, kvLens: []int{40}, lse: true, wantKind: KindSimple},

		// Metadata faults.
		{name: "fault: page past the cache (prefill)", dt: tensor.F16, headDim: 64, nHeads: 2, nKVHeads: 1,
			qLens: []int{20, 20}, kvLens: []int{20, 40}, paged: true, pageSize: 16, causal: true, fault: faultPage, wantKind: KindPrefill},
		{name: "fault: page past the cache (decode)", dt: tensor.BF16, headDim: 128, nHeads: 8, nKVHeads: 1,
			qLens: []int{1, 1}, kvLens: []int{600, 700}, paged: true, pageSize: 16, maxQueryLen: -1, fault: faultPage,
			wantKind: KindDecode, wantSplit: true},
		{name: "fault: query starts decrease", dt: tensor.F16, headDim: 64, nHeads: 1, nKVHeads: 1,
			qLens: []int{9, 9, 9}, kvLens: []int{9, 9, 9}, fault: faultQueryStarts, wantKind: KindPrefill},
		{name: "fault: query starts decrease (simple)", dt: tensor.F32, headDim: 64, nHeads: 1, nKVHeads: 1,
			qLens: []int{3, 3, 3}, kvLens: []int{3, 3, 3}, fault: faultQueryStarts, wantKind: KindSimple},
		{name: "fault: rows of q past the last start", dt: tensor.F16, headDim: 40, nHeads: 4, nKVHeads: 2,
			qLens: []int{9, 30}, kvLens: []int{20, 30}, tailRows: 2, lse: true, fault: faultTailRows, wantKind: KindPrefill},
		{name: "fault: rows of q past the last start (decode)", dt: tensor.BF16, headDim: 64, nHeads: 4, nKVHeads: 1,
			qLens: []int{1, 1}, kvLens: []int{20, 30}, tailRows: 1, maxQueryLen: -1, fault: faultTailRows, wantKind: KindDecode},
		{name: "fault: length over the table", dt: tensor.F16, headDim: 64, nHeads: 2, nKVHeads: 2,
			qLens: []int{1, 1}, kvLens: []int{30, 40}, paged: true, pageSize: 8, maxQueryLen: -1, fault: faultKVLen, wantKind: KindDecode},
		{name: "fault: kv start past the rows", dt: tensor.BF16, headDim: 48, nHeads: 2, nKVHeads: 2,
			qLens: []int{4, 4}, kvLens: []int{10, 10}, fault: faultKVLen, wantKind: KindDecode},
		{name: "fault: mask too narrow", dt: tensor.F16, headDim: 64, nHeads: 2, nKVHeads: 2,
			qLens: []int{8, 8}, kvLens: []int{8, 30}, mask: true, fault: faultMaskNarrow, wantKind: KindDecode},
		{name: "fault: mask too narrow (prefill)", dt: tensor.BF16, headDim: 64, nHeads: 2, nKVHeads: 2,
			qLens: []int{20, 20}, kvLens: []int{20, 30}, mask: true, causal: true, fault: faultMaskNarrow, wantKind: KindPrefill},
		{name: "fault: page past the cache (simple)", dt: tensor.F32, headDim: 32, nHeads: 2, nKVHeads: 1,
			qLens: []int{4, 4}, kvLens: []int{20, 40}, paged: true, pageSize: 16, causal: true, fault: faultPage, wantKind: KindSimple},
		{name: "fault: a sequence over MaxKVLen", dt: tensor.BF16, headDim: 128, nHeads: 4, nKVHeads: 1,
			qLens: []int{1, 1}, kvLens: []int{100, 200}, maxQueryLen: -1, fault: faultMaxKVLen, wantKind: KindDecode},
	}
}

// ---- AppendKV ------------------------------------------------------------------------------

// appendCase is one AppendKV call into a paged cache.
type appendCase struct {
	name                      string
	dt                        tensor.DType
	nKVHeads, headDim         int
	nNew, batch, pageSize     int
	maxPages                  int
	badSeqID, badPos, badPage bool // inject one fault (token 1)
}

// appendData is an append case's buffers and the expected caches.
type appendData struct {
	c                                       appendCase
	nPages                                  int
	kTok, kHead, vTok, vHead                int
	cTok, cHead, cPage                      int
	btStride                                int
	bufs                                    []attnBuf
	iK, iV, iSeq, iPos, iKC, iVC, iBT, iErr int
	wantKC, wantVC                          []byte
	wantErr                                 *DeviceError
}

func newAppendData(c appendCase, rng *rand.Rand) *appendData {
	d := &appendData{c: c}
	dt, hd, eb := c.dt, c.headDim, c.dt.BlockBytes()
	d.nPages = c.batch*c.maxPages + 2
	d.kHead, d.vHead = hd+8, hd
	d.kTok, d.vTok = c.nKVHeads*d.kHead+8, c.nKVHeads*d.vHead+16
	d.cHead = hd + 8
	d.cTok = c.nKVHeads * d.cHead
	d.cPage = c.pageSize*d.cTok + 8
	d.btStride = c.maxPages + 1
	// The caches start with finite values, so that an unwanted write shows.
	kc, vc := make([]byte, d.nPages*d.cPage*eb), make([]byte, d.nPages*d.cPage*eb)
	for i := 0; i < d.nPages*d.cPage; i++ {
		putElem(dt, kc, i, float64(i%97)/97)
		putElem(dt, vc, i, -float64(i%89)/89)
	}
	bt := make([]int32, c.batch*d.btStride)
	perm := rng.Perm(d.nPages)
	for b := range c.batch {
		for col := range c.maxPages {
			bt[b*d.btStride+col] = int32(perm[b*c.maxPages+col])
		}
		bt[b*d.btStride+c.maxPages] = -5 // past the table's columns: never read
	}
	// Distinct (sequence, position) slots.
	seen := map[[2]int]bool{}
	seq, pos := make([]int32, c.nNew), make([]int32, c.nNew)
	for i := range c.nNew {
		for {
			s, p := rng.IntN(c.batch), rng.IntN(c.maxPages*c.pageSize)
			if !seen[[2]int{s, p}] {
				seen[[2]int{s, p}] = true
				seq[i], pos[i] = int32(s), int32(p)
				break
			}
		}
	}
	capacity := int64(c.maxPages * c.pageSize)
	switch {
	case c.badSeqID:
		seq[1] = int32(c.batch)
		d.wantErr = &DeviceError{Code: ErrCodeIndexOutOfRange, Op: ErrOpAppendKV, Index: 1, Value: int64(c.batch), Limit: int64(c.batch)}
	case c.badPos:
		pos[1] = int32(capacity)
		d.wantErr = &DeviceError{Code: ErrCodePositionOutOfRange, Op: ErrOpAppendKV, Index: 1, Value: capacity, Limit: capacity}
	case c.badPage:
		bt[int(seq[1])*d.btStride+int(pos[1])/c.pageSize] = int32(d.nPages)
		d.wantErr = &DeviceError{Code: ErrCodePageOutOfRange, Op: ErrOpAppendKV, Index: 1, Value: int64(d.nPages), Limit: int64(d.nPages)}
	}
	k, v := nanBytes(c.nNew*d.kTok*eb), nanBytes(c.nNew*d.vTok*eb)
	d.wantKC, d.wantVC = append([]byte(nil), kc...), append([]byte(nil), vc...)
	for i := range c.nNew {
		faulty := d.wantErr != nil && i == 1
		for hk := range c.nKVHeads {
			for e := range hd {
				kx, vx := float64(tensor.RoundTo(dt, float32(rng.NormFloat64()))), float64(tensor.RoundTo(dt, float32(rng.NormFloat64())))
				putElem(dt, k, i*d.kTok+hk*d.kHead+e, kx)
				putElem(dt, v, i*d.vTok+hk*d.vHead+e, vx)
				if faulty {
					continue
				}
				page := int(bt[int(seq[i])*d.btStride+int(pos[i])/c.pageSize])
				at := page*d.cPage + int(pos[i])%c.pageSize*d.cTok + hk*d.cHead + e
				putElem(dt, d.wantKC, at, kx)
				putElem(dt, d.wantVC, at, vx)
			}
		}
	}
	i32 := func(v []int32) []byte {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
		}
		return b
	}
	add := func(name string, data []byte, output bool) int {
		d.bufs = append(d.bufs, attnBuf{name: name, data: data, output: output})
		return len(d.bufs) - 1
	}
	d.iK, d.iV = add("k", k, false), add("v", v, false)
	d.iSeq, d.iPos = add("seqIDs", i32(seq), false), add("positions", i32(pos), false)
	d.iKC, d.iVC = add("cache.K", kc, true), add("cache.V", vc, true)
	d.iBT = add("cache.BlockTable", i32(bt), false)
	d.iErr = add("errorWord", make([]byte, ErrorWordBytes), true)
	return d
}

func (d *appendData) args(addr []cuda.DevicePtr) AppendKVArgs {
	c := d.c
	return AppendKVArgs{
		DType: c.dt, NNew: c.nNew, NKVHeads: c.nKVHeads, HeadDim: c.headDim,
		K: addr[d.iK], KTokenStride: d.kTok, KHeadStride: d.kHead,
		V: addr[d.iV], VTokenStride: d.vTok, VHeadStride: d.vHead,
		SeqIDs: addr[d.iSeq], Positions: addr[d.iPos],
		KCache: addr[d.iKC], KCachePageStride: d.cPage, KCacheTokenStride: d.cTok, KCacheHeadStride: d.cHead,
		VCache: addr[d.iVC], VCachePageStride: d.cPage, VCacheTokenStride: d.cTok, VCacheHeadStride: d.cHead,
		NPages: d.nPages, PageSize: c.pageSize,
		BlockTable: addr[d.iBT], Batch: c.batch, MaxPagesPerSeq: c.maxPages, BlockTableRowStride: d.btStride,
		ErrorWord: addr[d.iErr],
	}
}

func (d *appendData) check(t *testing.T, what string, outs [][]byte) {
	t.Helper()
	gotErr := DecodeDeviceError(outs[d.iErr])
	switch {
	case d.wantErr == nil && gotErr != nil:
		t.Errorf("%s: recorded fault %v", what, gotErr)
	case d.wantErr != nil:
		var de *DeviceError
		if !errors.As(gotErr, &de) || *de != *d.wantErr {
			t.Errorf("%s: recorded fault %v, want %v", what, gotErr, d.wantErr)
		}
	}
	for _, cc := range []struct {
		name string
		got  []byte
		want []byte
	}{{"cache.K", outs[d.iKC], d.wantKC}, {"cache.V", outs[d.iVC], d.wantVC}} {
		if string(cc.got) == string(cc.want) {
			continue
		}
		eb := d.c.dt.BlockBytes()
		bad := 0
		for i := 0; i < len(cc.want)/eb; i++ {
			if string(cc.got[i*eb:(i+1)*eb]) != string(cc.want[i*eb:(i+1)*eb]) {
				if bad++; bad <= 4 {
					t.Errorf("%s: %s element %d (page %d) = %v, want %v", what, cc.name, i, i/d.cPage,
						getElem(d.c.dt, cc.got, i), getElem(d.c.dt, cc.want, i))
				}
			}
		}
		t.Errorf("%s: %s: %d elements differ", what, cc.name, bad)
	}
}

func appendCases() []appendCase {
	return []appendCase{
		{name: "append f16", dt: tensor.F16, nKVHeads: 2, headDim: 64, nNew: 9, batch: 3, pageSize: 16, maxPages: 4},
		{name: "append bf16 page size 5", dt: tensor.BF16, nKVHeads: 3, headDim: 40, nNew: 12, batch: 2, pageSize: 5, maxPages: 6},
		{name: "append f32 head dim 7", dt: tensor.F32, nKVHeads: 1, headDim: 7, nNew: 5, batch: 4, pageSize: 2, maxPages: 3},
		{name: "append fault: seq id", dt: tensor.F16, nKVHeads: 1, headDim: 16, nNew: 4, batch: 2, pageSize: 4, maxPages: 2, badSeqID: true},
		{name: "append fault: position", dt: tensor.F16, nKVHeads: 1, headDim: 16, nNew: 4, batch: 2, pageSize: 4, maxPages: 2, badPos: true},
		{name: "append fault: page", dt: tensor.BF16, nKVHeads: 1, headDim: 16, nNew: 4, batch: 2, pageSize: 4, maxPages: 2, badPage: true},
	}
}

// attnCaseName is a case name usable as a subtest name.
func attnCaseName(s string) string {
	return strings.NewReplacer(" ", "_", ",", "", "(", "", ")", "").Replace(s)
}
