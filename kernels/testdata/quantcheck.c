/*
 * quantcheck.c — runs the decoders of ../quant.cuh on the host, for
 * quant_host_test.go, which compiles this file with the C compiler at test
 * time (so the result always reflects the current quant.cuh) and compares
 * the output with kiln's Go reference.
 *
 * Usage: quantcheck IN OUT. IN holds records, each
 *     uint32 fmt (0 F32, 1 F16, 2 BF16, 3 Q8_0, 4 Q4_0, 5 Q4_K, 6 Q6_K)
 *     uint32 n_elems, uint32 n_bytes, then n_bytes bytes of a row;
 * for each, OUT receives n_elems floats from kiln_<fmt>_at, n_elems floats
 * from fetch16 + decode16 (16 at a time, block by block), and, for the float
 * formats, 17 × 16 floats from fetch16_tail with n_valid = 0 .. 16 on the
 * row's first elements. Little-endian, native float layout.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "quant.cuh"

static const int block_elems[] = {1, 1, 1, 32, 32, 256, 256};
static const int block_bytes[] = {4, 2, 2, 34, 18, 144, 210};

static float at(uint32_t fmt, const uint8_t* row, int64_t j) {
	switch (fmt) {
	case 0: return kiln_f32_at(row, j);
	case 1: return kiln_f16_at(row, j);
	case 2: return kiln_bf16_at(row, j);
	case 3: return kiln_q8_0_at(row, j);
	case 4: return kiln_q4_0_at(row, j);
	case 5: return kiln_q4_k_at(row, j);
	default: return kiln_q6_k_at(row, j);
	}
}

static void decode16(uint32_t fmt, const uint8_t* blk, int e0, float* out) {
	KilnRaw16 r;
	switch (fmt) {
	case 0: kiln_f32_fetch16(blk, e0, &r); kiln_f32_decode16(&r, e0, out); break;
	case 1: kiln_f16_fetch16(blk, e0, &r); kiln_f16_decode16(&r, e0, out); break;
	case 2: kiln_bf16_fetch16(blk, e0, &r); kiln_bf16_decode16(&r, e0, out); break;
	case 3: kiln_q8_0_fetch16(blk, e0, &r); kiln_q8_0_decode16(&r, e0, out); break;
	case 4: kiln_q4_0_fetch16(blk, e0, &r); kiln_q4_0_decode16(&r, e0, out); break;
	case 5: kiln_q4_k_fetch16(blk, e0, &r); kiln_q4_k_decode16(&r, e0, out); break;
	default: kiln_q6_k_fetch16(blk, e0, &r); kiln_q6_k_decode16(&r, e0, out); break;
	}
}

static void tail16(uint32_t fmt, const uint8_t* blk, int n_valid, float* out) {
	KilnRaw16 r;
	switch (fmt) {
	case 0: kiln_f32_fetch16_tail(blk, n_valid, &r); kiln_f32_decode16(&r, 0, out); break;
	case 1: kiln_f16_fetch16_tail(blk, n_valid, &r); kiln_f16_decode16(&r, 0, out); break;
	default: kiln_f16_fetch16_tail(blk, n_valid, &r); kiln_bf16_decode16(&r, 0, out); break;
	}
}

static void fail(const char* what) {
	fprintf(stderr, "quantcheck: %s\n", what);
	exit(1);
}

int main(int argc, char** argv) {
	if (argc != 3) fail("usage: quantcheck IN OUT");
	FILE* in = fopen(argv[1], "rb");
	FILE* out = fopen(argv[2], "wb");
	if (!in || !out) fail("cannot open the files");
	uint32_t hdr[3];
	while (fread(hdr, 4, 3, in) == 3) {
		const uint32_t fmt = hdr[0], n = hdr[1], nb = hdr[2];
		if (fmt > 6 || n % 16 != 0 || n % block_elems[fmt] != 0 ||
		    (uint64_t)n / block_elems[fmt] * block_bytes[fmt] != nb)
			fail("bad record header");
		uint8_t* row = malloc(nb);
		float* vals = malloc((size_t)n * sizeof(float));
		if (!row || !vals || fread(row, 1, nb, in) != nb) fail("short record");
		for (uint32_t j = 0; j < n; j++) vals[j] = at(fmt, row, j);
		if (fwrite(vals, sizeof(float), n, out) != n) fail("write");
		for (uint32_t e = 0; e < n; e += 16) {
			const uint32_t be = block_elems[fmt];
			decode16(fmt, row + (e / be) * block_bytes[fmt], (int)(e % be), vals + e);
		}
		if (fwrite(vals, sizeof(float), n, out) != n) fail("write");
		if (fmt <= 2) {
			float t[16];
			for (int v = 0; v <= 16; v++) {
				tail16(fmt, row, v, t);
				if (fwrite(t, sizeof(float), 16, out) != 16) fail("write");
			}
		}
		free(row);
		free(vals);
	}
	if (fclose(out) != 0) fail("close");
	return 0;
}
