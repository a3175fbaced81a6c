// cuda_bf16.h for the attention host simulator (../sim.h): the
// __nv_bfloat16 functions kiln's attention kernels and common.cuh use, with
// the device's semantics (round to nearest even; NaN stays NaN).
#pragma once
#include <stdint.h>
#include <string.h>

struct __nv_bfloat16 {
	unsigned short __x;
};
struct alignas(4) __nv_bfloat162 {
	__nv_bfloat16 x, y;  // x in the low 16 bits, as on the device
};

inline float __bfloat162float(__nv_bfloat16 h) {
	const uint32_t u = (uint32_t)h.__x << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float v) {
	uint32_t u;
	memcpy(&u, &v, 4);
	__nv_bfloat16 h;
	if ((u & 0x7fffffffu) > 0x7f800000u) {
		h.__x = (unsigned short)((u >> 16) | 0x40);  // a quiet NaN
		return h;
	}
	u += 0x7fffu + ((u >> 16) & 1u);
	h.__x = (unsigned short)(u >> 16);
	return h;
}
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
	__nv_bfloat162 r;
	r.x = __float2bfloat16_rn(lo);
	r.y = __float2bfloat16_rn(hi);
	return r;
}
