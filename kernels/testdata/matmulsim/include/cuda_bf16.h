// cuda_bf16.h for the host simulator (../sim.h): the __nv_bfloat16
// functions kiln's matmul kernels use, rounding to nearest even.
#pragma once
#include <stdint.h>
#include <string.h>

struct __nv_bfloat16 {
	unsigned short __x;
};
struct alignas(4) __nv_bfloat162 {
	__nv_bfloat16 x, y;
};

inline float __bfloat162float(__nv_bfloat16 h) {
	const uint32_t b = (uint32_t)h.__x << 16;
	float f;
	memcpy(&f, &b, 4);
	return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float v) {
	uint32_t b;
	memcpy(&b, &v, 4);
	__nv_bfloat16 r;
	if ((b & 0x7fffffffu) > 0x7f800000u) {
		r.__x = (unsigned short)((b >> 16) | 0x40u);  // quiet NaN
		return r;
	}
	b += 0x7fffu + ((b >> 16) & 1u);
	r.__x = (unsigned short)(b >> 16);
	return r;
}
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
	__nv_bfloat162 r;
	r.x = __float2bfloat16_rn(lo);
	r.y = __float2bfloat16_rn(hi);
	return r;
}
