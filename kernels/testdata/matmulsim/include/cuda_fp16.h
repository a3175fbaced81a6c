// cuda_fp16.h for the host simulator (../sim.h): the few __half functions
// kiln's matmul kernels use, with the device's semantics (conversions round
// to nearest even; GCC's _Float16 conversions are correctly rounded).
#pragma once
#include <stdint.h>
#include <string.h>

struct __half {
	unsigned short __x;
};
struct alignas(4) __half2 {
	__half x, y;
};

inline float __half2float(__half h) {
	_Float16 f;
	memcpy(&f, &h.__x, 2);
	return (float)f;
}
inline __half __float2half_rn(float v) {
	const _Float16 f = (_Float16)v;
	__half h;
	memcpy(&h.__x, &f, 2);
	return h;
}
inline __half __ushort_as_half(unsigned short u) {
	__half h;
	h.__x = u;
	return h;
}
// x (the low half) from lo, y from hi, as on the device.
inline __half2 __floats2half2_rn(float lo, float hi) {
	__half2 r;
	r.x = __float2half_rn(lo);
	r.y = __float2half_rn(hi);
	return r;
}
