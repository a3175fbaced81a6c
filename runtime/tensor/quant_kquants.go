package tensor

import "encoding/binary"

// Q4_K and Q6_K: super-blocks of QK_K = 256 elements.
//
// Q4_K: 8 sub-blocks of 32, each with a 6-bit scale sc and a 6-bit min m;
// element = d*sc*q - dmin*m with q in 0..15.
// Q6_K: 16 sub-blocks of 16, each with an int8 scale sc;
// element = d*sc*(q-32) with q in 0..63.
//
// The quantizers follow ggml's reference quantizers (ggml-quants.c, MIT
// licence) step by step, in float32, in the same order of operations, so
// that they write the same bytes. As in
// quant_q8_0_q4_0.go, products that feed an addition are wrapped in
// float32(...) so that Go cannot fuse them into a multiply-add.

// groupMaxEps is ggml's GROUP_MAX_EPS (1e-15f): below this a group counts as zero.
const groupMaxEps float32 = 1e-15

// scaleMinK4 unpacks the 6-bit scale and min of sub-block j (0..7) from a
// Q4_K block's 12 scale bytes, as ggml's get_scale_min_k4. Bytes 0..3 hold
// the scales of sub-blocks 0..3 in their low 6 bits, bytes 4..7 the mins of
// sub-blocks 0..3; bytes 8..11 hold the low 4 bits of the scale (low nibble)
// and min (high nibble) of sub-blocks 4..7, whose top 2 bits are the top 2
// bits of bytes 0..3 (scales) and 4..7 (mins).
func scaleMinK4(j int, q []byte) (sc, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0x0f | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// makeQKX2Quants is ggml's make_qkx2_quants with use_mad = false: it fits
// x ≈ scale*L - theMin with L in 0..nmax (theMin >= 0), minimising the
// weighted squared error over a small search of inverse scales. It fills L
// and returns scale and theMin. Laux is scratch of len(x).
//
// As in ggml, the offset (xmin) is updated inside the search loop and later
// steps use the updated value: a quirk of the reference code that the bytes
// depend on.
func makeQKX2Quants(nmax int32, x, weights []float32, L, Laux []uint8, rmin, rdelta float32, nstep int) (scale, theMin float32) {
	n := len(x)
	weights = weights[:n]
	L = L[:n]
	Laux = Laux[:n]
	xmin, xmax := x[0], x[0]
	sumW := weights[0]
	sumX := sumW * x[0]
	for i := 1; i < n; i++ {
		if x[i] < xmin {
			xmin = x[i]
		}
		if x[i] > xmax {
			xmax = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if xmin > 0 {
		xmin = 0
	}
	if xmax == xmin {
		for i := range L {
			L[i] = 0
		}
		return 0, -xmin
	}
	fnmax := float32(nmax)
	iscale := fnmax / (xmax - xmin)
	scale = 1 / iscale
	var bestError float32
	for i := 0; i < n; i++ {
		l := nearestInt(iscale * (x[i] - xmin))
		L[i] = uint8(clampInt32(l, 0, nmax))
		diff := float32(scale*float32(L[i])) + xmin - x[i]
		diff = diff * diff
		bestError += float32(weights[i] * diff)
	}
	if nstep < 1 {
		return scale, -xmin
	}
	for is := 0; is <= nstep; is++ {
		iscale = (rmin + float32(rdelta*float32(is)) + fnmax) / (xmax - xmin)
		var sumL, sumL2, sumXL float32
		for i := 0; i < n; i++ {
			l := clampInt32(nearestInt(iscale*(x[i]-xmin)), 0, nmax)
			Laux[i] = uint8(l)
			w := weights[i]
			fl := float32(l)
			sumL += float32(w * fl)
			sumL2 += float32(w * fl * fl)
			sumXL += float32(w * fl * x[i])
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curError float32
			for i := 0; i < n; i++ {
				diff := float32(thisScale*float32(Laux[i])) + thisMin - x[i]
				diff = diff * diff
				curError += float32(weights[i] * diff)
			}
			if curError < bestError {
				copy(L, Laux)
				bestError = curError
				scale = thisScale
				xmin = thisMin
			}
		}
	}
	return scale, -xmin
}

// quantizeBlockQ4_K follows ggml's quantize_row_q4_K_ref for one super-block:
// x has 256 elements, dst 144 bytes. It reports false when d or dmin
// overflows f16.
func quantizeBlockQ4_K(dst []byte, x []float32) bool {
	_ = dst[BlockBytesQ4_K-1]
	x = x[:QK_K]
	var (
		L       [QK_K]uint8
		Laux    [32]uint8
		weights [32]float32
		mins    [8]float32
		scales  [8]float32
	)
	var maxScale, maxMin float32
	for j := 0; j < 8; j++ {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := sqrt32(sumX2 / 32)
		for l, v := range xs {
			weights[l] = avX + abs32(v)
		}
		scales[j], mins[j] = makeQKX2Quants(15, xs, weights[:], L[32*j:32*j+32], Laux[:], -1, 0.1, 20)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}

	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := dst[4:16]
	for j := 0; j < 8; j++ {
		// uint8(...) wraps as C's conversion of int to uint8_t does.
		ls := min(63, uint8(nearestInt(invScale*scales[j])))
		lm := min(63, uint8(nearestInt(invMin*mins[j])))
		if j < 4 {
			sc[j] = ls
			sc[j+4] = lm
		} else {
			sc[j+4] = ls&0x0f | (lm&0x0f)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	dBits := F32ToF16(maxScale / 63)
	dminBits := F32ToF16(maxMin / 63)
	binary.LittleEndian.PutUint16(dst[0:], dBits)
	binary.LittleEndian.PutUint16(dst[2:], dminBits)

	// Requantize with the scales as stored (6-bit, f16); a sub-block whose
	// stored scale is zero keeps the quants make_qkx2_quants chose.
	d, dmin := F16ToF32(dBits), F16ToF32(dminBits)
	for j := 0; j < 8; j++ {
		s, m := scaleMinK4(j, sc)
		dj := d * float32(s)
		if dj == 0 {
			continue
		}
		dm := float32(dmin * float32(m))
		for ii := 0; ii < 32; ii++ {
			l := nearestInt((x[32*j+ii] + dm) / dj)
			L[32*j+ii] = uint8(clampInt32(l, 0, 15))
		}
	}

	// qs: 4 chunks of 32 bytes; chunk c holds sub-block 2c in the low
	// nibbles and sub-block 2c+1 in the high nibbles.
	qs := dst[16:BlockBytesQ4_K]
	for c := 0; c < 4; c++ {
		for l := 0; l < 32; l++ {
			qs[32*c+l] = L[64*c+l] | L[64*c+32+l]<<4
		}
	}
	return !f16IsInf(dBits) && !f16IsInf(dminBits)
}

// dequantizeBlockQ4_K follows ggml's dequantize_row_q4_K: y = d*sc*q - dmin*m.
func dequantizeBlockQ4_K(block []byte, y []float32) {
	_ = block[BlockBytesQ4_K-1]
	y = y[:QK_K]
	d := f16At(block[0:])
	dmin := f16At(block[2:])
	sc := block[4:16]
	qs := block[16:BlockBytesQ4_K]
	for c := 0; c < 4; c++ {
		s1, m1 := scaleMinK4(2*c, sc)
		s2, m2 := scaleMinK4(2*c+1, sc)
		d1, min1 := d*float32(s1), float32(dmin*float32(m1))
		d2, min2 := d*float32(s2), float32(dmin*float32(m2))
		q := qs[32*c : 32*c+32]
		lo := y[64*c : 64*c+32]
		hi := y[64*c+32 : 64*c+64]
		for l := 0; l < 32; l++ {
			lo[l] = float32(d1*float32(q[l]&0x0f)) - min1
			hi[l] = float32(d2*float32(q[l]>>4)) - min2
		}
	}
}

// makeQXQuants is ggml's make_qx_quants with rmse_type = 1 and no importance
// weights (weights x²): it fits x ≈ scale*(L - nmax) with L in 0..2*nmax-1,
// searching 19 inverse scales around -nmax/max. It fills L and returns scale.
func makeQXQuants(nmax int32, x []float32, L []int8) float32 {
	n := len(x)
	L = L[:n]
	var xmax, amax float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax = a
			xmax = v
		}
	}
	if amax < groupMaxEps {
		for i := range L {
			L[i] = 0
		}
		return 0
	}
	fnmax := float32(nmax)
	iscale := -fnmax / xmax
	var sumLX, sumL2 float32
	for i, v := range x {
		l := clampInt32(nearestInt(iscale*v), -nmax, nmax-1)
		L[i] = int8(l + nmax)
		w := v * v
		fl := float32(l)
		sumLX += float32(w * v * fl)
		sumL2 += float32(w * fl * fl)
	}
	var scale float32
	if sumL2 != 0 {
		scale = sumLX / sumL2
	}
	best := scale * sumLX
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fnmax + float32(0.1*float32(is))) / xmax
		sumLX, sumL2 = 0, 0
		for _, v := range x {
			l := clampInt32(nearestInt(iscale*v), -nmax, nmax-1)
			w := v * v
			fl := float32(l)
			sumLX += float32(w * v * fl)
			sumL2 += float32(w * fl * fl)
		}
		if sumL2 > 0 && float32(sumLX*sumLX) > float32(best*sumL2) {
			for i, v := range x {
				L[i] = int8(clampInt32(nearestInt(iscale*v), -nmax, nmax-1) + nmax)
			}
			scale = sumLX / sumL2
			best = scale * sumLX
		}
	}
	return scale
}

// quantizeBlockQ6_K follows ggml's quantize_row_q6_K_ref for one super-block:
// x has 256 elements, dst 210 bytes. It reports false when d overflows f16.
func quantizeBlockQ6_K(dst []byte, x []float32) bool {
	_ = dst[BlockBytesQ6_K-1]
	x = x[:QK_K]
	var (
		L      [QK_K]int8
		scales [16]float32
	)
	var maxScale, maxAbsScale float32
	for ib := 0; ib < 16; ib++ {
		s := makeQXQuants(32, x[16*ib:16*ib+16], L[16*ib:16*ib+16])
		scales[ib] = s
		if a := abs32(s); a > maxAbsScale {
			maxAbsScale = a
			maxScale = s
		}
	}
	if maxAbsScale < groupMaxEps {
		clear(dst[:BlockBytesQ6_K])
		return true
	}

	iscale := -128 / maxScale
	dBits := F32ToF16(1 / iscale)
	sc := dst[192:208]
	for ib := 0; ib < 16; ib++ {
		// int8(...) wraps as C's conversion of int to int8_t does.
		sc[ib] = byte(int8(min(127, nearestInt(iscale*scales[ib]))))
	}
	binary.LittleEndian.PutUint16(dst[208:], dBits)

	// Requantize with the scales as stored; a sub-block whose stored scale
	// is zero keeps the quants make_qx_quants chose.
	d := F16ToF32(dBits)
	for j := 0; j < 16; j++ {
		dj := d * float32(int8(sc[j]))
		if dj == 0 {
			continue
		}
		for ii := 0; ii < 16; ii++ {
			l := clampInt32(nearestInt(x[16*j+ii]/dj), -32, 31)
			L[16*j+ii] = int8(l + 32)
		}
	}

	// Two halves of 128 elements; in half h, for l in 0..31, ql byte l holds
	// elements l (low nibble) and l+64 (high nibble), ql byte l+32 holds
	// elements l+32 and l+96, and qh byte l holds the top 2 bits of
	// elements l, l+32, l+64, l+96 at bits 0, 2, 4, 6.
	for h := 0; h < 2; h++ {
		ql := dst[64*h : 64*h+64]
		qh := dst[128+32*h : 128+32*h+32]
		Lh := L[128*h : 128*h+128]
		for l := 0; l < 32; l++ {
			q1, q2, q3, q4 := uint8(Lh[l]), uint8(Lh[l+32]), uint8(Lh[l+64]), uint8(Lh[l+96])
			ql[l] = q1&0x0f | (q3&0x0f)<<4
			ql[l+32] = q2&0x0f | (q4&0x0f)<<4
			qh[l] = q1>>4 | (q2>>4)<<2 | (q3>>4)<<4 | (q4>>4)<<6
		}
	}
	return !f16IsInf(dBits)
}

// dequantizeBlockQ6_K follows ggml's dequantize_row_q6_K: y = d*sc*(q-32),
// computed as (d*sc)*(q-32) in float32 as ggml does, with d*sc formed once
// per sub-block.
func dequantizeBlockQ6_K(block []byte, y []float32) {
	_ = block[BlockBytesQ6_K-1]
	y = y[:QK_K]
	d := f16At(block[208:])
	var ds [16]float32
	for i, s := range block[192:208] {
		ds[i] = d * float32(int8(s))
	}
	for h := 0; h < 2; h++ {
		ql := block[64*h : 64*h+64]
		qh := block[128+32*h : 128+32*h+32]
		dh := ds[8*h : 8*h+8]
		yh := y[128*h : 128*h+128]
		for l := 0; l < 32; l++ {
			is := l / 16
			q1 := int32(ql[l]&0x0f|(qh[l]&3)<<4) - 32
			q2 := int32(ql[l+32]&0x0f|((qh[l]>>2)&3)<<4) - 32
			q3 := int32(ql[l]>>4|((qh[l]>>4)&3)<<4) - 32
			q4 := int32(ql[l+32]>>4|((qh[l]>>6)&3)<<4) - 32
			yh[l] = dh[is] * float32(q1)
			yh[l+32] = dh[is+2] * float32(q2)
			yh[l+64] = dh[is+4] * float32(q3)
			yh[l+96] = dh[is+6] * float32(q4)
		}
	}
}

func clampInt32(v, lo, hi int32) int32 {
	return max(lo, min(hi, v))
}
