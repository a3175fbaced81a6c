package cpu

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/kiln-gpu/kiln/runtime/op"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// Attention computes, per query head, O = softmax(scale·Q·Kᵀ + mask)·V over
// a batch of sequences packed into q (split by queryStarts), reading keys and
// values from contiguous runs or a paged cache (see op.AttentionKV and
// op.AttentionOptions for the layouts, positions, causal and sliding-window
// masking, the additive mask and the log-sum-exp output). Query head h reads
// KV head h / (nHeads/nKVHeads).
//
// The metadata (queryStarts, kv.Starts or kv.Lens and the block table's used
// entries) is read and checked before anything is written: a start that is
// not 0, decreases or does not end where it must, a length or page index out
// of range, a sequence longer than MaxQueryLen or MaxKVLen, or a mask with
// fewer columns than a sequence has keys returns an error matching
// op.ErrInvalidArgument that names the tensor, the index, the value and the
// bound, and leaves dst and LSE untouched. Unused block-table entries are
// not read.
//
// Arithmetic, per query row and head, without ever forming a full score
// matrix: keys are visited in tiles of attentionKeyTile, aligned to
// multiples of it in key index (so a row's arithmetic does not depend on the
// other rows it is computed with, nor on the number of threads). Each
// visible key's score s = scale·(q·k) (+ mask) is a float32 dot product
// summed in order over the head dimension, products rounded to float32
// before they are added (never fused); per tile the running maximum m moves
// to the tile's maximum if larger, and the running sum ℓ (float64) and the
// output accumulator (float32) are multiplied by exp(m_old − m_new); each
// key adds p = exp(s − m) (evaluated in float64, rounded to float32) to ℓ and
// p·v to the accumulator. At the end the output is the accumulator divided
// by ℓ, rounded once to dst's dtype, and the log-sum-exp is m + ln ℓ
// (rounded to float32). A row that sees no key (causal or window masking,
// an empty key range, or a mask of −Inf everywhere) gets zeros and a
// log-sum-exp of −Inf. The probabilities are not rounded to the inputs'
// dtype (the GPU rounds them before P·V). NaN inputs give NaN rows.
//
// That is the Go loops' arithmetic. Where the assembly kernels run
// (useDotAsm: AVX2, FMA and F16C on amd64, and a head dimension that is a
// multiple of 8; attention_amd64.s) the steps are the same with three
// differences of rounding only: a score is an 8-lane chain of fused
// multiply-adds over the head dimension, its lanes then summed in a fixed
// tree; each accumulator element adds p·v by fused multiply-adds in order
// of key; and p = exp(s − m) is a float32 exponential (a few ulps; 0 below
// e^−87.3) whose tile sum is added to ℓ lane-wise in float64. Each result
// is still a fixed function of the operands (not of the threads, nor of
// the rows or KV heads it is computed with). The conformance cases'
// largest errors are the same for F16 and BF16 outputs (their rounding
// dominates) and slightly smaller for F32 on that path.
func (b *Backend) Attention(dst, q, queryStarts tensor.Tensor, kv op.AttentionKV, opts op.AttentionOptions) error {
	const name = op.NameAttention
	s, err := op.CheckAttention(dst, q, queryStarts, kv, opts)
	if err != nil {
		return err
	}
	if err := b.begin(name); err != nil {
		return err
	}
	defer b.end()
	vs, err := b.resolveAll(name, output("dst", dst), input("q", q), input("queryStarts", queryStarts),
		input("kv.K", kv.K), input("kv.V", kv.V), input("kv.Starts", kv.Starts), input("kv.BlockTable", kv.BlockTable),
		input("kv.Lens", kv.Lens), input("Mask", opts.Mask), output("LSE", opts.LSE))
	if err != nil {
		return err
	}
	av := attentionViews{dst: vs[0], q: vs[1], queryStarts: vs[2], k: vs[3], v: vs[4], kvStarts: vs[5],
		blockTable: vs[6], lens: vs[7], mask: vs[8], lse: vs[9]}
	seqs, err := attentionSequences(s, av)
	if err != nil {
		return err
	}
	job := newAttentionJob(s, opts, av, seqs)
	b.runAttention(job)
	return nil
}

// attentionViews are Attention's tensors resolved against host memory (the
// zero view for optional ones left out).
type attentionViews struct {
	dst, q, queryStarts        view
	k, v, kvStarts, blockTable view
	lens, mask, lse            view
}

// attnSeq is one sequence of an attention call, its metadata checked.
type attnSeq struct {
	qStart, qLen int // rows of q
	kvLen        int
	kvStart      int     // contiguous keys: the sequence's first row of K and V
	pages        []int32 // paged: the block-table entries its kvLen tokens use
}

// i32At is element i of a rank-1 I32 view.
func i32At(v view, i int) int {
	return int(v.i32[v.d.Offset+i*v.d.Strides[3]])
}

// attentionSequences reads and checks the metadata of an attention call.
func attentionSequences(s op.AttentionShape, av attentionViews) ([]attnSeq, error) {
	const name = op.NameAttention
	fail := func(arg, format string, args ...any) error {
		return &op.ArgError{Op: name, Arg: arg, Msg: fmt.Sprintf(format, args...)}
	}
	seqs := make([]attnSeq, s.Batch)

	// queryStarts: 0, non-decreasing, ending at totalQ.
	if first := i32At(av.queryStarts, 0); first != 0 {
		return nil, fail("queryStarts", "queryStarts[0] = %d: the first start must be 0", first)
	}
	for b := range s.Batch {
		lo, hi := i32At(av.queryStarts, b), i32At(av.queryStarts, b+1)
		if hi < lo {
			return nil, fail("queryStarts", "queryStarts[%d] = %d is less than queryStarts[%d] = %d: starts must not decrease", b+1, hi, b, lo)
		}
		if hi > s.TotalQ {
			return nil, fail("queryStarts", "queryStarts[%d] = %d is beyond q's %d rows", b+1, hi, s.TotalQ)
		}
		seqs[b].qStart, seqs[b].qLen = lo, hi-lo
	}
	if last := i32At(av.queryStarts, s.Batch); last != s.TotalQ {
		return nil, fail("queryStarts", "queryStarts[%d] = %d: the last start must be totalQ = %d (q's rows)", s.Batch, last, s.TotalQ)
	}

	if s.Paged {
		capacity := s.MaxPagesPerSeq * s.PageSize
		bt := av.blockTable
		for b := range s.Batch {
			n := i32At(av.lens, b)
			if n < 0 || n > capacity {
				return nil, fail("kv.Lens", "kv.Lens[%d] = %d is outside [0, %d] (maxPagesPerSeq %d · pageSize %d)",
					b, n, capacity, s.MaxPagesPerSeq, s.PageSize)
			}
			nPagesUsed := (n + s.PageSize - 1) / s.PageSize
			row := bt.d.Offset + b*bt.d.Strides[2]
			// The block table's rows are contiguous (checked by op.CheckAttention).
			pages := bt.i32[row : row+nPagesUsed : row+nPagesUsed]
			for i, p := range pages {
				if p < 0 || int(p) >= s.NPages {
					return nil, fail("kv.BlockTable", "kv.BlockTable[%d, %d] = %d (tokens %d.. of sequence %d, of %d) is outside [0, %d): the cache has %d pages",
						b, i, p, i*s.PageSize, b, n, s.NPages, s.NPages)
				}
			}
			seqs[b].kvLen, seqs[b].pages = n, pages
		}
	} else {
		if first := i32At(av.kvStarts, 0); first != 0 {
			return nil, fail("kv.Starts", "kv.Starts[0] = %d: the first start must be 0", first)
		}
		for b := range s.Batch {
			lo, hi := i32At(av.kvStarts, b), i32At(av.kvStarts, b+1)
			if hi < lo {
				return nil, fail("kv.Starts", "kv.Starts[%d] = %d is less than kv.Starts[%d] = %d: starts must not decrease", b+1, hi, b, lo)
			}
			if hi > s.TotalKV {
				return nil, fail("kv.Starts", "kv.Starts[%d] = %d is beyond K's and V's %d rows", b+1, hi, s.TotalKV)
			}
			seqs[b].kvStart, seqs[b].kvLen = lo, hi-lo
		}
	}

	for b, sq := range seqs {
		if sq.qLen > s.MaxQueryLen {
			return nil, fail("MaxQueryLen", "sequence %d has %d queries, more than MaxQueryLen = %d", b, sq.qLen, s.MaxQueryLen)
		}
		if sq.kvLen > s.MaxKVLen {
			return nil, fail("MaxKVLen", "sequence %d has %d keys, more than MaxKVLen = %d", b, sq.kvLen, s.MaxKVLen)
		}
		if s.HasMask && sq.kvLen > s.MaskCols {
			return nil, fail("Mask", "Mask has %d columns but sequence %d has %d keys", s.MaskCols, b, sq.kvLen)
		}
	}
	return seqs, nil
}

const (
	// attentionKeyTile is how many keys the online softmax takes at once:
	// 64 keys of 128 dimensions as float32 are 32 KiB for K and as much for V.
	attentionKeyTile = 64
	// attentionTileRows is about how many (query, head) rows one work item
	// holds: queries of one sequence times the query heads sharing a KV head,
	// so that each decoded key and value tile serves all of them.
	attentionTileRows = 64
)

// attentionJob is one attention call resolved against host memory.
type attentionJob struct {
	s              op.AttentionShape
	causal         bool
	window         int
	av             attentionViews
	seqs           []attnSeq
	group          int // query heads per KV head
	queriesPerItem int
	kvPerItem      int // KV heads per item (set by items)
	// Strides in elements.
	qRow, qHead     int
	dstRow, dstHead int
	// K and V: page (0 for contiguous keys), slot or row, head.
	kPage, kSlot, kHead int
	vPage, vSlot, vHead int
	maskRow             int
	lseHead, lseCol     int
}

// attentionItem is one unit of work: queries [q0, q1) of sequence seq for
// the query heads of KV heads [kv0, kv1).
type attentionItem struct {
	seq, kv0, kv1, q0, q1 int
	cost                  int // estimated multiply-adds
}

func newAttentionJob(s op.AttentionShape, opts op.AttentionOptions, av attentionViews, seqs []attnSeq) *attentionJob {
	job := &attentionJob{s: s, causal: opts.Causal, window: opts.Window, av: av, seqs: seqs,
		group: s.NHeads / s.NKVHeads}
	job.queriesPerItem = max(1, attentionTileRows/job.group)
	// q and dst are padded to [1, totalQ, nHeads, headDim].
	job.qRow, job.qHead = av.q.d.Strides[1], av.q.d.Strides[2]
	job.dstRow, job.dstHead = av.dst.d.Strides[1], av.dst.d.Strides[2]
	if s.Paged {
		// [nPages, pageSize, nKVHeads, headDim]
		job.kPage, job.kSlot, job.kHead = av.k.d.Strides[0], av.k.d.Strides[1], av.k.d.Strides[2]
		job.vPage, job.vSlot, job.vHead = av.v.d.Strides[0], av.v.d.Strides[1], av.v.d.Strides[2]
	} else {
		// [1, totalKV, nKVHeads, headDim]
		job.kSlot, job.kHead = av.k.d.Strides[1], av.k.d.Strides[2]
		job.vSlot, job.vHead = av.v.d.Strides[1], av.v.d.Strides[2]
	}
	if s.HasMask {
		job.maskRow = av.mask.d.Strides[2] // [1, 1, totalQ, nCols]
	}
	if av.lse.f32 != nil {
		job.lseHead, job.lseCol = av.lse.d.Strides[2], av.lse.d.Strides[3] // [1, 1, nHeads, totalQ]
	}
	return job
}

// visible returns the keys [lo, hi) that query i of sequence sq may see
// before the additive mask (lo ≥ hi: none).
func (job *attentionJob) visible(sq *attnSeq, i int) (lo, hi int) {
	hi = sq.kvLen
	p := sq.kvLen - sq.qLen + i // the query's position
	if job.causal {
		hi = min(hi, p+1)
	}
	if job.window > 0 {
		lo = max(0, p-job.window+1)
	}
	return lo, hi
}

// keyOffset is the element index of token t's head vector for KV head g of
// sequence sq in K (or V, with its strides).
func (job *attentionJob) keyOffset(sq *attnSeq, base, page, slot, head, t, g int) int {
	if job.s.Paged {
		return base + int(sq.pages[t/job.s.PageSize])*page + (t%job.s.PageSize)*slot + g*head
	}
	return base + (sq.kvStart+t)*slot + g*head
}

// attentionDecodeQueries is the longest query run taken as a decode step:
// its items take several KV heads at once (see items).
const attentionDecodeQueries = 16

// items lists the work, most expensive first (so that the last items to
// start are short ones), with the total estimated cost, and sets
// job.kvPerItem. An item takes one KV head, except in decode-like calls
// (at most attentionDecodeQueries queries per sequence) on the assembly
// path, where it takes as many KV heads as leave at least one item per
// thread (halving from all of them): a token's K (or V) rows of consecutive KV heads are contiguous
// in the usual layouts, and reading them together streams memory, while
// one head's rows alone are short pieces a slot apart (measured on a
// 2-core EPYC: about 2.7 GB/s per thread for 256-byte pieces 2 KiB apart
// against 7.6 GB/s for the whole 2 KiB). Which KV heads share an item
// does not change any row's arithmetic.
func (job *attentionJob) items(threads int) ([]attentionItem, int) {
	var items []attentionItem
	total := 0
	d := job.s.HeadDim
	job.kvPerItem = 1
	if useDotAsm && attentionAsmSupported && d%8 == 0 && job.s.MaxQueryLen <= attentionDecodeQueries {
		perKV := 0 // items per KV head
		for b := range job.seqs {
			perKV += (job.seqs[b].qLen + job.queriesPerItem - 1) / job.queriesPerItem
		}
		job.kvPerItem = job.s.NKVHeads
		for job.kvPerItem%2 == 0 && perKV*(job.s.NKVHeads/job.kvPerItem) < threads {
			job.kvPerItem /= 2
		}
	}
	for b := range job.seqs {
		sq := &job.seqs[b]
		for q0 := 0; q0 < sq.qLen; q0 += job.queriesPerItem {
			q1 := min(sq.qLen, q0+job.queriesPerItem)
			keys := 0
			for i := q0; i < q1; i++ {
				if lo, hi := job.visible(sq, i); hi > lo {
					keys += hi - lo
				}
			}
			cost := (2*keys*d*job.group + (q1-q0)*job.group*d) * job.kvPerItem
			for g := 0; g < job.s.NKVHeads; g += job.kvPerItem {
				items = append(items, attentionItem{seq: b, kv0: g, kv1: g + job.kvPerItem, q0: q0, q1: q1, cost: cost})
				total += cost
			}
		}
	}
	slices.SortStableFunc(items, func(a, b attentionItem) int { return cmp.Compare(b.cost, a.cost) })
	return items, total
}

// runAttention computes every item, on worker goroutines that take the next
// item as they finish one (results do not depend on which worker computes
// which item).
func (b *Backend) runAttention(job *attentionJob) {
	items, total := job.items(b.threads)
	if len(items) == 0 {
		return
	}
	workers := min(b.threads, len(items))
	if total < b.minParallelWork {
		workers = 1
	}
	var next atomic.Int64
	work := func() {
		w := newAttentionWorkspace(job)
		for {
			i := int(next.Add(1)) - 1
			if i >= len(items) {
				return
			}
			job.compute(items[i], w)
		}
	}
	if workers <= 1 {
		work()
		return
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(work)
	}
	wg.Wait()
}

// attentionWorkspace is one worker's scratch memory.
type attentionWorkspace struct {
	qs       []float32   // rows × headDim: the item's query rows
	acc      []float32   // rows × headDim: the output accumulators
	m        []float32   // rows: running maxima
	l        []float64   // rows: running sums
	keys     [][]float32 // the tile's key vectors (in place for F32)
	vals     [][]float32 // the tile's value vectors
	kScratch []float32   // attentionKeyTile × headDim (× kvPerItem for F32 on the assembly path)
	vScratch []float32
	kPacked  []uint16 // the assembly path: kvPerItem × attentionKeyTile × headDim F16 or BF16 K elements as they are
	vPacked  []uint16
	scores   []float32      // rows × attentionKeyTile: scores, then probabilities
	active   []attentionRow // the rows that see keys of the current tile
	out      []float32      // headDim
}

// attentionRow is a row's part in one key tile: it sees keys [lo, hi) of
// the tile (indices from the tile's first key); mask, when not nil, holds
// the tile's mask values for the row's query.
type attentionRow struct {
	r      int
	lo, hi int
	mask   []float32
	skip   bool // every visible key masked with −Inf: nothing to add
}

func newAttentionWorkspace(job *attentionJob) *attentionWorkspace {
	d := job.s.HeadDim
	rows := job.queriesPerItem * job.group * job.kvPerItem
	// The assembly path packs the item's KV heads' tiles: F32 ones into
	// kScratch and vScratch, F16 and BF16 ones into kPacked and vPacked.
	nScratch, nPacked := attentionKeyTile*d, 0
	if useDotAsm && attentionAsmSupported && d%8 == 0 {
		if job.av.k.dt == tensor.F32 {
			nScratch *= job.kvPerItem
		} else {
			nPacked = job.kvPerItem * attentionKeyTile * d
		}
	}
	return &attentionWorkspace{
		qs:       make([]float32, rows*d),
		acc:      make([]float32, rows*d),
		m:        make([]float32, rows),
		l:        make([]float64, rows),
		keys:     make([][]float32, attentionKeyTile),
		vals:     make([][]float32, attentionKeyTile),
		kScratch: make([]float32, nScratch),
		vScratch: make([]float32, nScratch),
		kPacked:  make([]uint16, nPacked),
		vPacked:  make([]uint16, nPacked),
		scores:   make([]float32, rows*attentionKeyTile),
		active:   make([]attentionRow, 0, rows),
		out:      make([]float32, d),
	}
}

// compute runs one item: rows r = (i − q0)·rowsPerQuery + (h − kv0·group)
// for queries i in [q0, q1) and the item's query heads h (rowsPerQuery of
// them, the query heads of KV heads [kv0, kv1)).
//
// Key tiles are the outer loop and the item's KV heads the inner one, so
// that a tile's rows of all the item's heads are read together. Rows that
// see the same keys of a tile (the heads of one query; the queries of a
// causal prefill below the diagonal) are taken several at a time, so that
// each key and value element loaded serves several rows. A row's
// arithmetic is the same whatever rows it is taken with (each score and
// each accumulator element is summed in the same order), so results do not
// depend on the grouping.
func (job *attentionJob) compute(it attentionItem, w *attentionWorkspace) {
	d := job.s.HeadDim
	sq := &job.seqs[it.seq]
	av := &job.av
	group := job.group
	rowsPerQuery := group * (it.kv1 - it.kv0)
	negInf := float32(math.Inf(-1))
	asm := useDotAsm && attentionAsmSupported && d%8 == 0

	// Query rows, and the key range any of them sees.
	tileLo, tileHi := sq.kvLen, 0
	for i := it.q0; i < it.q1; i++ {
		row := sq.qStart + i
		for hh := range rowsPerQuery {
			h := it.kv0*group + hh
			r := (i-it.q0)*rowsPerQuery + hh
			av.q.loadRow(w.qs[r*d:(r+1)*d], av.q.d.Offset+row*job.qRow+h*job.qHead, 1)
			w.m[r] = negInf
			w.l[r] = 0
			clear(w.acc[r*d : (r+1)*d])
		}
		if lo, hi := job.visible(sq, i); hi > lo {
			tileLo, tileHi = min(tileLo, lo), max(tileHi, hi)
		}
	}

	for j0 := tileLo / attentionKeyTile * attentionKeyTile; j0 < tileHi; j0 += attentionKeyTile {
		j1 := min(j0+attentionKeyTile, tileHi)
		if asm {
			job.packTile(w, sq, it, j0, j1)
		}
		for g := it.kv0; g < it.kv1; g++ {
			active := w.active[:0]
			for i := it.q0; i < it.q1; i++ {
				lo, hi := job.visible(sq, i)
				lo, hi = max(lo, j0), min(hi, j1)
				if lo >= hi {
					continue
				}
				var mask []float32
				if job.s.HasMask && job.s.MaskCols > 0 {
					off := av.mask.d.Offset + (sq.qStart+i)*job.maskRow
					mask = av.mask.f32[off+j0 : off+j1]
				}
				for hh := range group {
					r := (i-it.q0)*rowsPerQuery + (g-it.kv0)*group + hh
					active = append(active, attentionRow{r: r, lo: lo - j0, hi: hi - j0, mask: mask})
				}
			}
			w.active = active
			if asm {
				job.tileAsm(w, sq, g, g-it.kv0, j0, j1, active)
			} else {
				job.tileGo(w, sq, g, j0, j1, active)
			}
		}
	}

	// Normalise and store.
	for i := it.q0; i < it.q1; i++ {
		row := sq.qStart + i
		for hh := range rowsPerQuery {
			h := it.kv0*group + hh
			r := (i-it.q0)*rowsPerQuery + hh
			dstOff := av.dst.d.Offset + row*job.dstRow + h*job.dstHead
			l := w.l[r]
			// The assembly path stores F16 rows by attnNormF16AVX2: the same
			// bits as below, except that a NaN row is stored again below.
			stored := l != 0 && asm && av.dst.dt == tensor.F16 &&
				storeNormalizedF16(av.dst.u16[dstOff:dstOff+d], w.acc[r*d:(r+1)*d], l)
			if !stored {
				out := w.out
				if l == 0 {
					clear(out)
				} else {
					for t, a := range w.acc[r*d : (r+1)*d] {
						out[t] = float32(float64(a) / l)
					}
				}
				av.dst.storeRow(dstOff, 1, out)
			}
			if av.lse.f32 != nil {
				lse := negInf
				if l := w.l[r]; l != 0 {
					lse = float32(float64(w.m[r]) + math.Log(l))
				}
				av.lse.f32[av.lse.d.Offset+h*job.lseHead+row*job.lseCol] = lse
			}
		}
	}
}

// attentionPackAhead is how many keys ahead packTile asks for rows.
const attentionPackAhead = 6

// packTile copies (as they are, no conversion) the K and V rows of the keys
// that the item's queries see in the tile [j0, j1) into w's packed tile,
// KV head by KV head (head kv0 + gi at gi·attentionKeyTile·headDim, key j
// at (j − j0)·headDim after that), reading each token's rows of the item's
// heads together. In place, one head's rows lie a slot or more apart (a
// power of two in the usual layouts), so they would fall into a few cache
// sets and evict each other between the kernels' passes over them.
func (job *attentionJob) packTile(w *attentionWorkspace, sq *attnSeq, it attentionItem, j0, j1 int) {
	d := job.s.HeadDim
	av := &job.av
	lo, hi := j1, j0
	for i := it.q0; i < it.q1; i++ {
		l, h := job.visible(sq, i)
		l, h = max(l, j0), min(h, j1)
		if l < h {
			lo, hi = min(lo, l), max(hi, h)
		}
	}
	headStride := attentionKeyTile * d
	gaps := it.kv1-it.kv0 < job.s.NKVHeads
	for t := lo; t < hi; {
		tEnd := job.keyRun(t, hi)
		kRun := job.keyOffset(sq, av.k.d.Offset, job.kPage, job.kSlot, job.kHead, t, it.kv0)
		vRun := job.keyOffset(sq, av.v.d.Offset, job.vPage, job.vSlot, job.vHead, t, it.kv0)
		for j := t; j < tEnd; j++ {
			kOff, vOff := kRun+(j-t)*job.kSlot, vRun+(j-t)*job.vSlot
			if gaps && j+attentionPackAhead < tEnd {
				// The item's heads of key j+attentionPackAhead, while key j
				// is copied: more misses in flight than the copies make.
				// (When the item has every KV head, a token's rows are one
				// contiguous run, which the hardware prefetches better
				// alone: measured 10% faster without, 15% slower with gaps.)
				span := (it.kv1-it.kv0-1)*job.kHead + d
				prefetchElems(&av.k, kOff+attentionPackAhead*job.kSlot, span)
				prefetchElems(&av.v, vOff+attentionPackAhead*job.vSlot, span)
			}
			at := (j - j0) * d
			for gi := range it.kv1 - it.kv0 {
				kg, vg, dst := kOff+gi*job.kHead, vOff+gi*job.vHead, gi*headStride+at
				if av.k.dt == tensor.F32 {
					copy(w.kScratch[dst:dst+d], av.k.f32[kg:kg+d])
					copy(w.vScratch[dst:dst+d], av.v.f32[vg:vg+d])
				} else {
					copy(w.kPacked[dst:dst+d], av.k.u16[kg:kg+d])
					copy(w.vPacked[dst:dst+d], av.v.u16[vg:vg+d])
				}
			}
		}
		t = tEnd
	}
}

// tileGo is one key tile [j0, j1) of an item by the Go loops: the tile's
// keys and values are decoded to float32 (in place for F32), then the
// scores, the softmax step and the P·V products of the active rows.
func (job *attentionJob) tileGo(w *attentionWorkspace, sq *attnSeq, kvHead, j0, j1 int, active []attentionRow) {
	d := job.s.HeadDim
	av := &job.av
	for j := j0; j < j1; j++ {
		jj := j - j0
		kOff := job.keyOffset(sq, av.k.d.Offset, job.kPage, job.kSlot, job.kHead, j, kvHead)
		vOff := job.keyOffset(sq, av.v.d.Offset, job.vPage, job.vSlot, job.vHead, j, kvHead)
		w.keys[jj] = headVector(&av.k, kOff, w.kScratch[jj*d:(jj+1)*d])
		w.vals[jj] = headVector(&av.v, vOff, w.vScratch[jj*d:(jj+1)*d])
	}
	job.tileScores(w, active)
	for a := range active {
		job.softmaxStep(w, &active[a], false)
	}
	job.tileValues(w, active)
}

// keyRun returns the end of the run of keys from t (before hi) that lie
// in one page (all of them for contiguous keys): consecutive keys of a run
// are kSlot (vSlot) elements apart.
func (job *attentionJob) keyRun(t, hi int) int {
	if !job.s.Paged {
		return hi
	}
	ps := job.s.PageSize
	return min(hi, (t/ps+1)*ps)
}

// sameRows is how many of active[a:] (at most maxRows) can go through a
// multi-row kernel with active[a]: the same first visible key, consecutive
// rows r, and (when values is set) none skipping the tile. Their last
// visible keys may differ (the diagonal tiles of a causal prefill).
func sameRows(active []attentionRow, a, maxRows int, values bool) int {
	n := 1
	for n < maxRows && a+n < len(active) {
		b := &active[a+n]
		if b.lo != active[a].lo || b.r != active[a].r+n || (values && b.skip) {
			break
		}
		n++
	}
	return n
}

// rowScores is where row a's scores (then probabilities) for the tile go.
func (w *attentionWorkspace) rowScores(a *attentionRow) []float32 {
	return w.scores[a.r*attentionKeyTile : a.r*attentionKeyTile+a.hi-a.lo]
}

// tileScores computes scale·(q·k) for every active row and its visible
// keys of the tile, two rows at a time where they see the same keys.
func (job *attentionJob) tileScores(w *attentionWorkspace, active []attentionRow) {
	d := job.s.HeadDim
	scale := job.s.Scale
	for a := 0; a < len(active); {
		ra := &active[a]
		qa := w.qs[ra.r*d : (ra.r+1)*d]
		keys := w.keys[ra.lo:ra.hi]
		sa := w.rowScores(ra)
		if a+1 < len(active) && active[a+1].lo == ra.lo && active[a+1].hi == ra.hi {
			rb := &active[a+1]
			qb := w.qs[rb.r*d : (rb.r+1)*d]
			sb := w.rowScores(rb)
			j := 0
			for ; j+4 <= len(keys); j += 4 {
				a0, a1, a2, a3, b0, b1, b2, b3 := dot2x4(qa, qb, keys[j], keys[j+1], keys[j+2], keys[j+3])
				sa[j], sa[j+1], sa[j+2], sa[j+3] = scale*a0, scale*a1, scale*a2, scale*a3
				sb[j], sb[j+1], sb[j+2], sb[j+3] = scale*b0, scale*b1, scale*b2, scale*b3
			}
			for ; j < len(keys); j++ {
				sa[j] = scale * dot1x1(qa, keys[j])
				sb[j] = scale * dot1x1(qb, keys[j])
			}
			a += 2
			continue
		}
		j := 0
		for ; j+4 <= len(keys); j += 4 {
			s0, s1, s2, s3 := dot1x4(qa, keys[j], keys[j+1], keys[j+2], keys[j+3])
			sa[j], sa[j+1], sa[j+2], sa[j+3] = scale*s0, scale*s1, scale*s2, scale*s3
		}
		for ; j < len(keys); j++ {
			sa[j] = scale * dot1x1(qa, keys[j])
		}
		a++
	}
}

// softmaxStep adds the mask to a row's scores, moves its running maximum
// to the tile's if larger (scaling its sum and accumulator by
// exp(m_old − m_new)), turns the scores into p = exp(s − m) and adds them
// to the row's sum. A tile whose visible keys are all masked with −Inf
// leaves the row as it was (a.skip).
//
// With asm set (the assembly path), p = exp(s − m) is attnExpAVX2's float32
// exponential and the tile's sum its lane-wise float64 sum, except for a
// row whose maximum is NaN or +Inf, which takes the Go loop.
func (job *attentionJob) softmaxStep(w *attentionWorkspace, a *attentionRow, asm bool) {
	scores := w.rowScores(a)
	if a.mask != nil {
		for j, m := range a.mask[a.lo:a.hi] {
			scores[j] += m
		}
	}
	// The tile's maximum; a NaN score makes it NaN, and so the row.
	tileMax := float32(math.Inf(-1))
	var padded []float32 // the assembly path: scores padded with −Inf to a multiple of 8
	if asm {
		n := len(scores)
		n8 := (n + 7) &^ 7
		padded = w.scores[a.r*attentionKeyTile : a.r*attentionKeyTile+n8]
		for j := n; j < n8; j++ {
			padded[j] = float32(math.Inf(-1))
		}
		tileMax = attnMax(padded)
	} else {
		for _, s := range scores {
			if s > tileMax || s != s {
				tileMax = s
				if s != s {
					break
				}
			}
		}
	}
	if a.skip = tileMax == float32(math.Inf(-1)); a.skip {
		return
	}
	r := a.r
	mOld := w.m[r]
	mNew := max(mOld, tileMax)
	if tileMax != tileMax {
		mNew = tileMax
	}
	if mNew != mOld {
		// mOld = −Inf (the row's first visible keys) gives a factor of 0:
		// the sum and accumulator are 0 then anyway.
		d := job.s.HeadDim
		corr := math.Exp(float64(mOld) - float64(mNew))
		w.l[r] *= corr
		c := float32(corr)
		acc := w.acc[r*d : (r+1)*d]
		for t := range acc {
			acc[t] = float32(acc[t] * c)
		}
	}
	w.m[r] = mNew
	if asm && !math.IsInf(float64(mNew), 1) && mNew == mNew {
		// The padding's −Inf gives exp = 0.
		w.l[r] += attnExp(padded, mNew)
		return
	}
	var sum float64
	for j, s := range scores {
		p := float32(math.Exp(float64(s) - float64(mNew)))
		scores[j] = p
		sum += float64(p)
	}
	w.l[r] += sum
}

// tileValues adds Σⱼ pⱼ·vⱼ to each active row's accumulator, two rows at a
// time where they see the same keys.
func (job *attentionJob) tileValues(w *attentionWorkspace, active []attentionRow) {
	d := job.s.HeadDim
	for a := 0; a < len(active); {
		ra := &active[a]
		if ra.skip {
			a++
			continue
		}
		vals := w.vals[ra.lo:ra.hi]
		accA := w.acc[ra.r*d : (ra.r+1)*d]
		if a+1 < len(active) && !active[a+1].skip && active[a+1].lo == ra.lo && active[a+1].hi == ra.hi {
			rb := &active[a+1]
			addWeighted2(accA, w.acc[rb.r*d:(rb.r+1)*d], w.rowScores(ra), w.rowScores(rb), vals)
			a += 2
			continue
		}
		addWeighted(accA, w.rowScores(ra), vals)
		a++
	}
}

// addWeighted adds Σⱼ probs[j]·vals[j] to acc, in order of j for every
// element, each product rounded to float32 before it is added.
func addWeighted(acc, probs []float32, vals [][]float32) {
	d := len(acc)
	n := len(probs)
	j := 0
	for ; j+4 <= n; j += 4 {
		p0, p1, p2, p3 := probs[j], probs[j+1], probs[j+2], probs[j+3]
		v0, v1, v2, v3 := vals[j][:d], vals[j+1][:d], vals[j+2][:d], vals[j+3][:d]
		for t := range acc {
			a := acc[t]
			a += float32(p0 * v0[t])
			a += float32(p1 * v1[t])
			a += float32(p2 * v2[t])
			a += float32(p3 * v3[t])
			acc[t] = a
		}
	}
	for ; j < n; j++ {
		p, v := probs[j], vals[j][:d]
		for t := range acc {
			acc[t] += float32(p * v[t])
		}
	}
}

// addWeighted2 is addWeighted for two rows over the same values, with the
// same arithmetic per row.
func addWeighted2(accA, accB, probsA, probsB []float32, vals [][]float32) {
	d := len(accA)
	accB = accB[:d]
	n := len(probsA)
	probsB = probsB[:n]
	j := 0
	for ; j+4 <= n; j += 4 {
		a0, a1, a2, a3 := probsA[j], probsA[j+1], probsA[j+2], probsA[j+3]
		b0, b1, b2, b3 := probsB[j], probsB[j+1], probsB[j+2], probsB[j+3]
		v0, v1, v2, v3 := vals[j][:d], vals[j+1][:d], vals[j+2][:d], vals[j+3][:d]
		for t := range accA {
			x0, x1, x2, x3 := v0[t], v1[t], v2[t], v3[t]
			a := accA[t]
			a += float32(a0 * x0)
			a += float32(a1 * x1)
			a += float32(a2 * x2)
			a += float32(a3 * x3)
			accA[t] = a
			b := accB[t]
			b += float32(b0 * x0)
			b += float32(b1 * x1)
			b += float32(b2 * x2)
			b += float32(b3 * x3)
			accB[t] = b
		}
	}
	for ; j < n; j++ {
		pa, pb, v := probsA[j], probsB[j], vals[j][:d]
		for t := range accA {
			accA[t] += float32(pa * v[t])
			accB[t] += float32(pb * v[t])
		}
	}
}

// headVector returns the len(scratch) contiguous elements at off as
// float32: in place for F32, else decoded into scratch. (view.row does the
// same for any stride; this loop over a contiguous slice lets the compiler
// drop the bounds checks, which matters when decoding keys and values is
// most of a decode step's work.)
func headVector(v *view, off int, scratch []float32) []float32 {
	n := len(scratch)
	switch v.dt {
	case tensor.F16:
		table := f16Table()
		for i, h := range v.u16[off : off+n] {
			scratch[i] = table[h]
		}
		return scratch
	case tensor.BF16:
		for i, h := range v.u16[off : off+n] {
			scratch[i] = math.Float32frombits(uint32(h) << 16)
		}
		return scratch
	}
	return v.f32[off : off+n : off+n]
}
