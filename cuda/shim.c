//go:build cgo

// shim.c: kiln's C side of the CUDA driver binding. It dlopens the driver
// library, binds each entry point by its exact (versioned) name, and wraps
// every call that needs a context so that the context is made current in the
// same C call. See shim.h.

#include "shim.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void *CUcontext;
typedef void *CUstream;
typedef void *CUevent;
typedef void *CUmodule;
typedef void *CUfunction;
typedef void *CUgraph;
typedef void *CUgraphExec;

// CUjit_option values used by kiln_module_load.
enum {
	KILN_JIT_INFO_LOG_BUFFER = 3,
	KILN_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4,
	KILN_JIT_ERROR_LOG_BUFFER = 5,
	KILN_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
	KILN_JIT_LOG_VERBOSE = 12,
};

// CUDA_ERROR_INVALID_VALUE.
#define KILN_CUDA_ERROR_INVALID_VALUE 1

// cuLaunchKernel's `extra` keys (CU_LAUNCH_PARAM_*).
#define KILN_LAUNCH_PARAM_END ((void *)0)
#define KILN_LAUNCH_PARAM_BUFFER_POINTER ((void *)1)
#define KILN_LAUNCH_PARAM_BUFFER_SIZE ((void *)2)

// The bound entry points. Each pointer is named after the symbol it holds.
static CUresult (*p_cuInit)(unsigned int);
static CUresult (*p_cuDriverGetVersion)(int *);
static CUresult (*p_cuGetErrorName)(CUresult, const char **);
static CUresult (*p_cuGetErrorString)(CUresult, const char **);
static CUresult (*p_cuDeviceGetCount)(int *);
static CUresult (*p_cuDeviceGet)(CUdevice *, int);
static CUresult (*p_cuDeviceGetName)(char *, int, CUdevice);
static CUresult (*p_cuDeviceGetUuid)(unsigned char *, CUdevice); // _v2, or the unversioned fallback
static CUresult (*p_cuDeviceGetPCIBusId)(char *, int, CUdevice);
static CUresult (*p_cuDeviceGetAttribute)(int *, int, CUdevice);
static CUresult (*p_cuDeviceTotalMem_v2)(size_t *, CUdevice);
static CUresult (*p_cuDeviceCanAccessPeer)(int *, CUdevice, CUdevice);
static CUresult (*p_cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
static CUresult (*p_cuDevicePrimaryCtxRelease_v2)(CUdevice);
static CUresult (*p_cuCtxSetCurrent)(CUcontext);
static CUresult (*p_cuCtxGetCurrent)(CUcontext *);
static CUresult (*p_cuCtxSynchronize)(void);
static CUresult (*p_cuCtxEnablePeerAccess)(CUcontext, unsigned int);
static CUresult (*p_cuMemGetInfo_v2)(size_t *, size_t *);
static CUresult (*p_cuMemAlloc_v2)(CUdeviceptr *, size_t);
static CUresult (*p_cuMemFree_v2)(CUdeviceptr);
static CUresult (*p_cuMemAllocAsync)(CUdeviceptr *, size_t, CUstream);
static CUresult (*p_cuMemFreeAsync)(CUdeviceptr, CUstream);
static CUresult (*p_cuMemHostAlloc)(void **, size_t, unsigned int);
static CUresult (*p_cuMemFreeHost)(void *);
static CUresult (*p_cuMemcpyHtoD_v2)(CUdeviceptr, const void *, size_t);
static CUresult (*p_cuMemcpyDtoH_v2)(void *, CUdeviceptr, size_t);
static CUresult (*p_cuMemcpyDtoD_v2)(CUdeviceptr, CUdeviceptr, size_t);
static CUresult (*p_cuMemcpyHtoDAsync_v2)(CUdeviceptr, const void *, size_t, CUstream);
static CUresult (*p_cuMemcpyDtoHAsync_v2)(void *, CUdeviceptr, size_t, CUstream);
static CUresult (*p_cuMemcpyDtoDAsync_v2)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
static CUresult (*p_cuMemcpyPeerAsync)(CUdeviceptr, CUcontext, CUdeviceptr, CUcontext, size_t, CUstream);
static CUresult (*p_cuMemsetD8_v2)(CUdeviceptr, unsigned char, size_t);
static CUresult (*p_cuMemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
static CUresult (*p_cuMemsetD32Async)(CUdeviceptr, unsigned int, size_t, CUstream);
static CUresult (*p_cuStreamCreate)(CUstream *, unsigned int);
static CUresult (*p_cuStreamDestroy_v2)(CUstream);
static CUresult (*p_cuStreamSynchronize)(CUstream);
static CUresult (*p_cuStreamQuery)(CUstream);
static CUresult (*p_cuStreamWaitEvent)(CUstream, CUevent, unsigned int);
static CUresult (*p_cuStreamBeginCapture_v2)(CUstream, int);
static CUresult (*p_cuStreamEndCapture)(CUstream, CUgraph *);
static CUresult (*p_cuEventCreate)(CUevent *, unsigned int);
static CUresult (*p_cuEventRecord)(CUevent, CUstream);
static CUresult (*p_cuEventSynchronize)(CUevent);
static CUresult (*p_cuEventQuery)(CUevent);
static CUresult (*p_cuEventDestroy_v2)(CUevent);
static CUresult (*p_cuEventElapsedTime)(float *, CUevent, CUevent);
static CUresult (*p_cuModuleLoadDataEx)(CUmodule *, const void *, unsigned int, int *, void **);
static CUresult (*p_cuModuleUnload)(CUmodule);
static CUresult (*p_cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
static CUresult (*p_cuFuncGetAttribute)(int *, int, CUfunction);
static CUresult (*p_cuFuncSetAttribute)(CUfunction, int, int);
static CUresult (*p_cuFuncGetParamInfo)(CUfunction, size_t, size_t *, size_t *); // optional (CUDA 12.4)
// optional (CUDA 12.0): CUtensorMap*, dataType, rank, globalAddress, globalDim, globalStrides, boxDim,
// elementStrides, interleave, swizzle, l2Promotion, oobFill
static CUresult (*p_cuTensorMapEncodeTiled)(void *, int, unsigned int, void *, const unsigned long long *,
                                            const unsigned long long *, const unsigned int *, const unsigned int *, int,
                                            int, int, int);
static CUresult (*p_cuOccupancyMaxActiveBlocksPerMultiprocessor)(int *, CUfunction, int, size_t);
static CUresult (*p_cuLaunchKernel)(CUfunction, unsigned int, unsigned int, unsigned int, unsigned int,
                                    unsigned int, unsigned int, unsigned int, CUstream, void **, void **);
static CUresult (*p_cuGraphInstantiateWithFlags)(CUgraphExec *, CUgraph, unsigned long long);
static CUresult (*p_cuGraphDestroy)(CUgraph);
static CUresult (*p_cuGraphLaunch)(CUgraphExec, CUstream);
static CUresult (*p_cuGraphExecDestroy)(CUgraphExec);

struct binding {
	const char *name;
	void **slot;
};

#define BIND(sym) {#sym, (void **)&p_##sym}

// Entry points without which kiln does not run. All exist in every driver
// that can load kiln's PTX (CUDA 12.4's ISA 8.4 needs a 550-series driver).
static const struct binding required[] = {
	BIND(cuInit),
	BIND(cuDriverGetVersion),
	BIND(cuDeviceGetCount),
	BIND(cuDeviceGet),
	BIND(cuDeviceGetName),
	BIND(cuDeviceGetPCIBusId),
	BIND(cuDeviceGetAttribute),
	BIND(cuDeviceTotalMem_v2),
	BIND(cuDeviceCanAccessPeer),
	BIND(cuDevicePrimaryCtxRetain),
	BIND(cuDevicePrimaryCtxRelease_v2),
	BIND(cuCtxSetCurrent),
	BIND(cuCtxGetCurrent),
	BIND(cuCtxSynchronize),
	BIND(cuCtxEnablePeerAccess),
	BIND(cuMemGetInfo_v2),
	BIND(cuMemAlloc_v2),
	BIND(cuMemFree_v2),
	BIND(cuMemAllocAsync),
	BIND(cuMemFreeAsync),
	BIND(cuMemHostAlloc),
	BIND(cuMemFreeHost),
	BIND(cuMemcpyHtoD_v2),
	BIND(cuMemcpyDtoH_v2),
	BIND(cuMemcpyDtoD_v2),
	BIND(cuMemcpyHtoDAsync_v2),
	BIND(cuMemcpyDtoHAsync_v2),
	BIND(cuMemcpyDtoDAsync_v2),
	BIND(cuMemcpyPeerAsync),
	BIND(cuMemsetD8_v2),
	BIND(cuMemsetD8Async),
	BIND(cuMemsetD32Async),
	BIND(cuStreamCreate),
	BIND(cuStreamDestroy_v2),
	BIND(cuStreamSynchronize),
	BIND(cuStreamQuery),
	BIND(cuStreamWaitEvent),
	BIND(cuStreamBeginCapture_v2),
	BIND(cuStreamEndCapture),
	BIND(cuEventCreate),
	BIND(cuEventRecord),
	BIND(cuEventSynchronize),
	BIND(cuEventQuery),
	BIND(cuEventDestroy_v2),
	BIND(cuEventElapsedTime),
	BIND(cuModuleLoadDataEx),
	BIND(cuModuleUnload),
	BIND(cuModuleGetFunction),
	BIND(cuFuncGetAttribute),
	BIND(cuFuncSetAttribute),
	BIND(cuOccupancyMaxActiveBlocksPerMultiprocessor),
	BIND(cuLaunchKernel),
	BIND(cuGraphInstantiateWithFlags),
	BIND(cuGraphDestroy),
	BIND(cuGraphLaunch),
	BIND(cuGraphExecDestroy),
};

static void *lib_handle;
static int uuid_fallback;

int kiln_load(const char *path, char *msg, size_t msg_size) {
	msg[0] = 0;
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		snprintf(msg, msg_size, "%s", e != NULL ? e : "dlopen failed");
		return KILN_LOAD_DLOPEN_FAILED;
	}
	for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
		void *sym = dlsym(h, required[i].name);
		if (sym == NULL) {
			snprintf(msg, msg_size, "%s", required[i].name);
			dlclose(h);
			return KILN_LOAD_MISSING_SYMBOL;
		}
		*required[i].slot = sym;
	}
	// cuDeviceGetUuid_v2 (CUDA 11.4) also reports MIG instances' own UUIDs;
	// older drivers only have the unversioned call.
	p_cuDeviceGetUuid = (CUresult(*)(unsigned char *, CUdevice))dlsym(h, "cuDeviceGetUuid_v2");
	if (p_cuDeviceGetUuid == NULL) {
		p_cuDeviceGetUuid = (CUresult(*)(unsigned char *, CUdevice))dlsym(h, "cuDeviceGetUuid");
		if (p_cuDeviceGetUuid == NULL) {
			snprintf(msg, msg_size, "cuDeviceGetUuid_v2 (nor cuDeviceGetUuid)");
			dlclose(h);
			return KILN_LOAD_MISSING_SYMBOL;
		}
		uuid_fallback = 1;
	}
	// cuFuncGetParamInfo (CUDA 12.4) lets Launch check the packed argument
	// size against the kernel's parameter list; without it the check is skipped.
	p_cuFuncGetParamInfo = (CUresult(*)(CUfunction, size_t, size_t *, size_t *))dlsym(h, "cuFuncGetParamInfo");
	// cuTensorMapEncodeTiled (CUDA 12.0) encodes TMA descriptors for the
	// sm_90a kernels; without it those kernels are not used.
	p_cuTensorMapEncodeTiled =
	    (CUresult(*)(void *, int, unsigned int, void *, const unsigned long long *, const unsigned long long *,
	                 const unsigned int *, const unsigned int *, int, int, int, int))dlsym(h, "cuTensorMapEncodeTiled");
	// Only used to word errors; the Go tables stand in when they are absent.
	p_cuGetErrorName = (CUresult(*)(CUresult, const char **))dlsym(h, "cuGetErrorName");
	p_cuGetErrorString = (CUresult(*)(CUresult, const char **))dlsym(h, "cuGetErrorString");
	lib_handle = h;
	return KILN_LOAD_OK;
}

int kiln_uuid_fallback(void) { return uuid_fallback; }

const char *kiln_error_name(int result) {
	const char *s = NULL;
	if (p_cuGetErrorName == NULL || p_cuGetErrorName(result, &s) != 0) {
		return NULL;
	}
	return s;
}

const char *kiln_error_string(int result) {
	const char *s = NULL;
	if (p_cuGetErrorString == NULL || p_cuGetErrorString(result, &s) != 0) {
		return NULL;
	}
	return s;
}

// The context kiln last made current on this OS thread, and the release
// generation it was made current in. Releasing a primary context bumps
// ctx_generation, which invalidates every thread's cache: a released context
// may be destroyed, and a context retained later can have the same handle.
static __thread CUcontext tls_ctx;
static __thread unsigned long tls_generation;
static unsigned long ctx_generation = 1;

// use_ctx makes ctx current on the calling thread. The cache alone is not
// enough: other code in the process (NCCL, cuBLAS, the CUDA runtime, a
// caller's own cgo) may call cuCtxSetCurrent or cudaSetDevice on this thread
// between two kiln calls, and trusting the cache would then run kiln's call
// in that other context (memory allocated on the wrong GPU, a launch failing
// with CUDA_ERROR_INVALID_HANDLE). So the driver's own answer is checked
// each time: cuCtxGetCurrent only reads thread-local state, which costs far
// less than the call it guards. cuCtxSetCurrent replaces the top of the
// thread's context stack; kiln never pushes or pops.
static int use_ctx(CUcontext ctx) {
	unsigned long gen = __atomic_load_n(&ctx_generation, __ATOMIC_ACQUIRE);
	if (tls_ctx == ctx && tls_generation == gen) {
		CUcontext cur = NULL;
		if (p_cuCtxGetCurrent(&cur) == 0 && cur == ctx) {
			return 0;
		}
	}
	CUresult r = p_cuCtxSetCurrent(ctx);
	if (r != 0) {
		tls_ctx = NULL;
		return r | KILN_CTX_FAILED;
	}
	tls_ctx = ctx;
	tls_generation = gen;
	return 0;
}

// WITH_CTX makes ctx current, returning its failure, then evaluates call.
#define WITH_CTX(ctx, call)             \
	do {                                \
		int kiln_r_ = use_ctx(ctx);     \
		if (kiln_r_ != 0) {             \
			return kiln_r_;             \
		}                               \
		return (call);                  \
	} while (0)

int kiln_use_ctx(void *ctx) { return use_ctx(ctx); }

int kiln_init(unsigned int flags) { return p_cuInit(flags); }
int kiln_driver_version(int *version) { return p_cuDriverGetVersion(version); }
int kiln_device_count(int *count) { return p_cuDeviceGetCount(count); }
int kiln_device_get(int *device, int ordinal) { return p_cuDeviceGet(device, ordinal); }
int kiln_device_name(char *name, int size, int device) { return p_cuDeviceGetName(name, size, device); }
int kiln_device_uuid(unsigned char *uuid16, int device) { return p_cuDeviceGetUuid(uuid16, device); }
int kiln_device_pci_bus_id(char *bus_id, int size, int device) {
	return p_cuDeviceGetPCIBusId(bus_id, size, device);
}
int kiln_device_attribute(int *value, int attribute, int device) {
	return p_cuDeviceGetAttribute(value, attribute, device);
}
int kiln_device_total_mem(size_t *bytes, int device) { return p_cuDeviceTotalMem_v2(bytes, device); }
int kiln_device_can_access_peer(int *can, int device, int peer) {
	return p_cuDeviceCanAccessPeer(can, device, peer);
}
int kiln_primary_ctx_retain(void **ctx, int device) { return p_cuDevicePrimaryCtxRetain(ctx, device); }

int kiln_primary_ctx_release(int device) {
	CUresult r = p_cuDevicePrimaryCtxRelease_v2(device);
	__atomic_add_fetch(&ctx_generation, 1, __ATOMIC_RELEASE);
	return r;
}

int kiln_ctx_synchronize(void *ctx) { WITH_CTX(ctx, p_cuCtxSynchronize()); }
int kiln_mem_get_info(void *ctx, size_t *free_bytes, size_t *total_bytes) {
	WITH_CTX(ctx, p_cuMemGetInfo_v2(free_bytes, total_bytes));
}
int kiln_ctx_enable_peer_access(void *ctx, void *peer_ctx) { WITH_CTX(ctx, p_cuCtxEnablePeerAccess(peer_ctx, 0)); }

int kiln_mem_alloc(void *ctx, kiln_devptr *ptr, size_t size) { WITH_CTX(ctx, p_cuMemAlloc_v2(ptr, size)); }
int kiln_mem_free(void *ctx, kiln_devptr ptr) { WITH_CTX(ctx, p_cuMemFree_v2(ptr)); }
int kiln_mem_alloc_async(void *ctx, kiln_devptr *ptr, size_t size, void *stream) {
	WITH_CTX(ctx, p_cuMemAllocAsync(ptr, size, stream));
}
int kiln_mem_free_async(void *ctx, kiln_devptr ptr, void *stream) { WITH_CTX(ctx, p_cuMemFreeAsync(ptr, stream)); }
int kiln_mem_host_alloc(void *ctx, void **ptr, size_t size, unsigned int flags) {
	WITH_CTX(ctx, p_cuMemHostAlloc(ptr, size, flags));
}
int kiln_mem_free_host(void *ctx, void *ptr) { WITH_CTX(ctx, p_cuMemFreeHost(ptr)); }
int kiln_memcpy_htod(void *ctx, kiln_devptr dst, const void *src, size_t size) {
	WITH_CTX(ctx, p_cuMemcpyHtoD_v2(dst, src, size));
}
int kiln_memcpy_dtoh(void *ctx, void *dst, kiln_devptr src, size_t size) {
	WITH_CTX(ctx, p_cuMemcpyDtoH_v2(dst, src, size));
}
int kiln_memcpy_dtod(void *ctx, kiln_devptr dst, kiln_devptr src, size_t size) {
	WITH_CTX(ctx, p_cuMemcpyDtoD_v2(dst, src, size));
}
int kiln_memcpy_htod_async(void *ctx, kiln_devptr dst, const void *src, size_t size, void *stream) {
	WITH_CTX(ctx, p_cuMemcpyHtoDAsync_v2(dst, src, size, stream));
}
int kiln_memcpy_dtoh_async(void *ctx, void *dst, kiln_devptr src, size_t size, void *stream) {
	WITH_CTX(ctx, p_cuMemcpyDtoHAsync_v2(dst, src, size, stream));
}
int kiln_memcpy_dtod_async(void *ctx, kiln_devptr dst, kiln_devptr src, size_t size, void *stream) {
	WITH_CTX(ctx, p_cuMemcpyDtoDAsync_v2(dst, src, size, stream));
}
int kiln_memcpy_peer_async(void *ctx, kiln_devptr dst, void *dst_ctx, kiln_devptr src, void *src_ctx,
                           size_t size, void *stream) {
	WITH_CTX(ctx, p_cuMemcpyPeerAsync(dst, dst_ctx, src, src_ctx, size, stream));
}
int kiln_memset_d8(void *ctx, kiln_devptr dst, unsigned char value, size_t n) {
	WITH_CTX(ctx, p_cuMemsetD8_v2(dst, value, n));
}
int kiln_memset_d8_async(void *ctx, kiln_devptr dst, unsigned char value, size_t n, void *stream) {
	WITH_CTX(ctx, p_cuMemsetD8Async(dst, value, n, stream));
}
int kiln_memset_d32_async(void *ctx, kiln_devptr dst, unsigned int value, size_t n, void *stream) {
	WITH_CTX(ctx, p_cuMemsetD32Async(dst, value, n, stream));
}

int kiln_stream_create(void *ctx, void **stream, unsigned int flags) {
	WITH_CTX(ctx, p_cuStreamCreate(stream, flags));
}
int kiln_stream_destroy(void *ctx, void *stream) { WITH_CTX(ctx, p_cuStreamDestroy_v2(stream)); }
int kiln_stream_synchronize(void *ctx, void *stream) { WITH_CTX(ctx, p_cuStreamSynchronize(stream)); }
int kiln_stream_query(void *ctx, void *stream) { WITH_CTX(ctx, p_cuStreamQuery(stream)); }
int kiln_stream_wait_event(void *ctx, void *stream, void *event) {
	WITH_CTX(ctx, p_cuStreamWaitEvent(stream, event, 0));
}
int kiln_stream_begin_capture(void *ctx, void *stream, int mode) {
	WITH_CTX(ctx, p_cuStreamBeginCapture_v2(stream, mode));
}
int kiln_stream_end_capture(void *ctx, void *stream, void **graph) { WITH_CTX(ctx, p_cuStreamEndCapture(stream, graph)); }

int kiln_event_create(void *ctx, void **event, unsigned int flags) { WITH_CTX(ctx, p_cuEventCreate(event, flags)); }
int kiln_event_record(void *ctx, void *event, void *stream) { WITH_CTX(ctx, p_cuEventRecord(event, stream)); }
int kiln_event_synchronize(void *ctx, void *event) { WITH_CTX(ctx, p_cuEventSynchronize(event)); }
int kiln_event_query(void *ctx, void *event) { WITH_CTX(ctx, p_cuEventQuery(event)); }
int kiln_event_destroy(void *ctx, void *event) { WITH_CTX(ctx, p_cuEventDestroy_v2(event)); }
int kiln_event_elapsed(void *ctx, float *millis, void *start, void *end) {
	WITH_CTX(ctx, p_cuEventElapsedTime(millis, start, end));
}

int kiln_module_load(void *ctx, void **module, const void *image, char *error_log, size_t error_log_size,
                     char *info_log, size_t info_log_size) {
	// The logs are read by the caller after any failure, this function's own
	// included, so they are emptied before anything can fail.
	error_log[0] = 0;
	info_log[0] = 0;
	int r = use_ctx(ctx);
	if (r != 0) {
		return r;
	}
	int options[5] = {
		KILN_JIT_ERROR_LOG_BUFFER, KILN_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
		KILN_JIT_INFO_LOG_BUFFER,  KILN_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
		KILN_JIT_LOG_VERBOSE,
	};
	// Option values travel in the pointer-sized slots: the buffers as
	// pointers, the sizes (unsigned int options) and the verbosity (int) as
	// integers cast to void*. The driver writes the number of log bytes it
	// used back into the size slots; the logs are NUL-terminated below
	// whatever it wrote.
	void *values[5] = {
		error_log, (void *)(size_t)error_log_size,
		info_log,  (void *)(size_t)info_log_size,
		(void *)(size_t)0,
	};
	r = p_cuModuleLoadDataEx(module, image, 5, options, values);
	error_log[error_log_size - 1] = 0;
	info_log[info_log_size - 1] = 0;
	return r;
}
int kiln_module_unload(void *ctx, void *module) { WITH_CTX(ctx, p_cuModuleUnload(module)); }
int kiln_module_get_function(void *ctx, void **function, void *module, const char *name) {
	WITH_CTX(ctx, p_cuModuleGetFunction(function, module, name));
}
int kiln_func_get_attribute(void *ctx, int *value, int attribute, void *function) {
	WITH_CTX(ctx, p_cuFuncGetAttribute(value, attribute, function));
}
int kiln_func_set_attribute(void *ctx, void *function, int attribute, int value) {
	WITH_CTX(ctx, p_cuFuncSetAttribute(function, attribute, value));
}
int kiln_func_param_bytes(void *ctx, size_t *bytes, void *function) {
	*bytes = 0;
	if (p_cuFuncGetParamInfo == NULL) {
		return KILN_NO_PARAM_INFO;
	}
	int r = use_ctx(ctx);
	if (r != 0) {
		return r;
	}
	// The end of the parameter that ends last is the size of the parameter
	// buffer the driver expects (no tail padding). An index past the last
	// parameter is CUDA_ERROR_INVALID_VALUE. A kernel has at most 32764
	// bytes, so at most that many parameters: the bound only guards
	// against a driver that never says stop.
	for (size_t i = 0; i <= 32764; i++) {
		size_t offset = 0, size = 0;
		CUresult q = p_cuFuncGetParamInfo(function, i, &offset, &size);
		if (q == KILN_CUDA_ERROR_INVALID_VALUE) {
			return 0;
		}
		if (q != 0) {
			return q;
		}
		if (offset + size > *bytes) {
			*bytes = offset + size;
		}
	}
	return KILN_CUDA_ERROR_INVALID_VALUE;
}

int kiln_occupancy_max_active_blocks(void *ctx, int *blocks, void *function, int block_size,
                                     size_t dynamic_shared_bytes) {
	WITH_CTX(ctx, p_cuOccupancyMaxActiveBlocksPerMultiprocessor(blocks, function, block_size, dynamic_shared_bytes));
}

int kiln_launch(void *ctx, void *function, unsigned int grid_x, unsigned int grid_y, unsigned int grid_z,
                unsigned int block_x, unsigned int block_y, unsigned int block_z, unsigned int shared_bytes,
                void *stream, void *args, size_t args_size) {
	int r = use_ctx(ctx);
	if (r != 0) {
		return r;
	}
	if (args_size == 0) {
		return p_cuLaunchKernel(function, grid_x, grid_y, grid_z, block_x, block_y, block_z, shared_bytes, stream,
		                        NULL, NULL);
	}
	// The driver copies the parameter buffer during the call, so the
	// caller's buffer (Go memory) is not kept past it. kernelParams must be
	// NULL when `extra` carries the buffer. The size is the packed size,
	// which ends at the last parameter: the driver refuses a buffer size
	// that includes a struct's tail padding (CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES).
	void *extra[5] = {
		KILN_LAUNCH_PARAM_BUFFER_POINTER, args, KILN_LAUNCH_PARAM_BUFFER_SIZE, &args_size, KILN_LAUNCH_PARAM_END,
	};
	return p_cuLaunchKernel(function, grid_x, grid_y, grid_z, block_x, block_y, block_z, shared_bytes, stream, NULL,
	                        extra);
}

int kiln_graph_instantiate(void *ctx, void **exec, void *graph) {
	WITH_CTX(ctx, p_cuGraphInstantiateWithFlags(exec, graph, 0));
}
int kiln_graph_destroy(void *ctx, void *graph) { WITH_CTX(ctx, p_cuGraphDestroy(graph)); }
int kiln_graph_launch(void *ctx, void *exec, void *stream) { WITH_CTX(ctx, p_cuGraphLaunch(exec, stream)); }
int kiln_graph_exec_destroy(void *ctx, void *exec) { WITH_CTX(ctx, p_cuGraphExecDestroy(exec)); }

int kiln_has_tensor_map(void) { return p_cuTensorMapEncodeTiled != NULL; }

int kiln_tensor_map_encode_tiled(unsigned char *out128, int data_type, unsigned int rank, kiln_devptr global,
                                 const unsigned long long *dims, const unsigned long long *strides,
                                 const unsigned int *box, const unsigned int *element_strides, int swizzle,
                                 int l2_promotion) {
	// The driver writes the map into 64-byte aligned storage; the Go side
	// gets a copy of the 128 bytes.
	_Alignas(64) unsigned char map[128];
	memset(map, 0, sizeof map);
	CUresult r = p_cuTensorMapEncodeTiled(map, data_type, rank, (void *)(uintptr_t)global, dims, strides, box,
	                                      element_strides, 0 /* CU_TENSOR_MAP_INTERLEAVE_NONE */, swizzle,
	                                      l2_promotion, 0 /* CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE: zeros */);
	if (r == 0) {
		memcpy(out128, map, sizeof map);
	}
	return r;
}
