// fakecuda.c: a fake CUDA driver library (libcuda.so.1 stand-in) for kiln's
// tests. It exports the driver entry points kiln binds and simulates one or
// more GPUs well enough for the non-kernel code paths of kiln's GPU backend:
// device queries, malloc-backed device memory with a configurable total,
// copies and memsets that really move bytes, streams, events, graph capture,
// pinned host memory, PTX module loading (kernel names parsed from the text),
// and launches that run nothing but are counted and recorded.
//
// Behaviour is configured through environment variables read on every call;
// they are documented in the Go package cuda/fakecuda (doc.go).
//
// Everything runs under one mutex; the current context is per thread, as in
// the real driver. Handles (streams, events, modules, graphs) are never
// freed, only marked dead, so a stale handle is detected rather than read
// after free. This is a test fixture: it favours plain checks over speed.

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

enum {
	OK = 0,
	E_INVALID_VALUE = 1,
	E_OUT_OF_MEMORY = 2,
	E_NOT_INITIALIZED = 3,
	E_NO_DEVICE = 100,
	E_INVALID_DEVICE = 101,
	E_INVALID_IMAGE = 200,
	E_INVALID_CONTEXT = 201,
	E_INVALID_PTX = 218,
	E_PEER_ACCESS_UNSUPPORTED = 217,
	E_INVALID_HANDLE = 400,
	E_ILLEGAL_STATE = 401,
	E_NOT_FOUND = 500,
	E_NOT_READY = 600,
	E_NOT_SUPPORTED = 801,
	E_LAUNCH_OUT_OF_RESOURCES = 701,
	E_PEER_ACCESS_ALREADY_ENABLED = 704,
	E_LAUNCH_FAILED = 719,
	E_CAPTURE_UNSUPPORTED = 900,
	E_CAPTURE_INVALIDATED = 901,
	E_CAPTURE_WRONG_THREAD = 908,
	E_UNKNOWN = 999,
};

#define MAX_DEVICES 8
#define MAX_ARG_BYTES 32764
#define MAX_PARAMS 128
#define SHARED_PER_BLOCK 49152
#define SHARED_PER_BLOCK_OPTIN 232448
#define SHARED_PER_SM 233472

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

// ---------------------------------------------------------------------------
// Environment.

static long long env_ll(const char *name, long long def) {
	const char *s = getenv(name);
	if (s == NULL || *s == 0) {
		return def;
	}
	char *end = NULL;
	long long v = strtoll(s, &end, 0);
	return (end != NULL && *end == 0) ? v : def;
}

static int device_count(void) {
	long long n = env_ll("FAKECUDA_DEVICES", 1);
	if (n < 0) {
		n = 0;
	}
	if (n > MAX_DEVICES) {
		n = MAX_DEVICES;
	}
	return (int)n;
}

static long long total_mem(void) { return env_ll("FAKECUDA_TOTAL_MEM", 8LL << 30); }

static int cc_major(void) { return (int)(env_ll("FAKECUDA_CC", 90) / 10); }
static int cc_minor(void) { return (int)(env_ll("FAKECUDA_CC", 90) % 10); }

// ---------------------------------------------------------------------------
// Call counters and fault injection.

#define MAX_NAMES 128

struct counter {
	char name[64];
	long long calls;      // since the process started (or fakecuda_reset_counters)
	long long spec_calls; // since FAKECUDA_FAIL last changed
};

static struct counter counters[MAX_NAMES];
static int n_counters;
static char last_spec[1024];

static struct counter *counter_for(const char *name) {
	for (int i = 0; i < n_counters; i++) {
		if (strcmp(counters[i].name, name) == 0) {
			return &counters[i];
		}
	}
	if (n_counters == MAX_NAMES) {
		return NULL;
	}
	struct counter *c = &counters[n_counters++];
	snprintf(c->name, sizeof c->name, "%s", name);
	return c;
}

// enter counts a call of entry point name and returns the failure that
// FAKECUDA_FAIL injects for it, or 0. The spec is a comma-separated list of
// NAME=CODE or NAME=CODE@N (the first N calls after the spec was set succeed).
static CUresult enter(const char *name) {
	struct counter *c = counter_for(name);
	const char *spec = getenv("FAKECUDA_FAIL");
	if (spec == NULL) {
		spec = "";
	}
	if (strncmp(spec, last_spec, sizeof last_spec) != 0) {
		snprintf(last_spec, sizeof last_spec, "%s", spec);
		for (int i = 0; i < n_counters; i++) {
			counters[i].spec_calls = 0;
		}
	}
	if (c != NULL) {
		c->calls++;
		c->spec_calls++;
	}
	size_t name_len = strlen(name);
	const char *p = spec;
	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		while (len > 0 && *p == ' ') {
			p++;
			len--;
		}
		if (len > name_len && strncmp(p, name, name_len) == 0 && p[name_len] == '=') {
			char val[64];
			size_t vlen = len - name_len - 1;
			if (vlen >= sizeof val) {
				vlen = sizeof val - 1;
			}
			memcpy(val, p + name_len + 1, vlen);
			val[vlen] = 0;
			long long code = strtoll(val, NULL, 0);
			long long after = 0;
			char *at = strchr(val, '@');
			if (at != NULL) {
				after = strtoll(at + 1, NULL, 0);
			}
			if (code != 0 && (c == NULL || c->spec_calls > after)) {
				return (CUresult)code;
			}
		}
		if (end == NULL) {
			break;
		}
		p = end + 1;
	}
	return OK;
}

// ENTRY defines exported entry point NAME: it takes the lock, counts the
// call, applies FAKECUDA_FAIL, and runs NAME_impl.
#define ENTRY(NAME, PARAMS, ARGS)                \
	static CUresult NAME##_impl PARAMS;          \
	CUresult NAME PARAMS {                       \
		pthread_mutex_lock(&mu);                 \
		CUresult r_ = enter(#NAME);              \
		if (r_ == OK) {                          \
			r_ = NAME##_impl ARGS;               \
		}                                        \
		pthread_mutex_unlock(&mu);               \
		return r_;                               \
	}                                            \
	static CUresult NAME##_impl PARAMS

// ---------------------------------------------------------------------------
// Driver state.

static int initialized;

struct ctx {
	int device;
	int refcount;
	unsigned generation; // bumped when the last reference is released
	int peer_enabled[MAX_DEVICES];
	int global_captures; // live streams capturing in CU_STREAM_CAPTURE_MODE_GLOBAL
};

static struct ctx ctxs[MAX_DEVICES];

// The context current on this thread, and its generation when it was made
// current: once that context is destroyed it is no longer usable here, as in
// the driver, even if the device's primary context is retained again.
static __thread struct ctx *current;
static __thread unsigned current_generation;

enum { KIND_DEVICE = 1, KIND_HOST = 2 };

struct alloc {
	uintptr_t base;
	size_t size;
	int device;
	int kind;
};

static struct alloc *allocs;
static size_t n_allocs, cap_allocs;

#define STREAM_MAGIC 0x57524541u
#define EVENT_MAGIC 0x45564e54u
#define MODULE_MAGIC 0x4d4f444cu
#define FUNC_MAGIC 0x46554e43u
#define GRAPH_MAGIC 0x47524150u
#define EXEC_MAGIC 0x45584543u

struct stream {
	unsigned magic;
	struct ctx *ctx;
	unsigned generation;
	int dead;
	int capturing;
	int capture_mode;
	pthread_t capture_thread; // the thread that began the capture
	int invalidated;
	long long nodes;        // work captured since cuStreamBeginCapture
	long long launch_nodes; // of which kernel launches
};

struct event {
	unsigned magic;
	struct ctx *ctx;
	unsigned generation;
	int dead;
	unsigned flags;
	int recorded;
};

struct module;

struct function {
	unsigned magic;
	struct module *module;
	char name[256];
	int max_dynamic_shared;
	// The parameter list parsed from the .entry declaration; params_known is
	// 0 when the declaration was not understood (launches then go unchecked).
	int params_known;
	int n_params;
	size_t param_offset[MAX_PARAMS];
	size_t param_size[MAX_PARAMS];
	size_t param_bytes; // end of the last parameter: what the driver expects
};

struct module {
	unsigned magic;
	struct ctx *ctx;
	unsigned generation;
	int dead;
	int ptx_version;
	int n_functions;
	struct function *functions;
};

struct graph {
	unsigned magic;
	struct ctx *ctx;
	unsigned generation;
	int dead;
	long long nodes;
	long long launch_nodes;
};

static long long launch_count;
static long long graph_launch_count;

static struct {
	char name[256];
	unsigned dims[7];
	unsigned char args[MAX_ARG_BYTES];
	size_t args_size;
	int valid;
} last_launch;

static CUresult need_init(void) { return initialized ? OK : E_NOT_INITIALIZED; }

// need_ctx is the check of every call that works in the current context.
static CUresult need_ctx(void) {
	if (!initialized) {
		return E_NOT_INITIALIZED;
	}
	if (current == NULL || current->refcount <= 0 || current->generation != current_generation) {
		return E_INVALID_CONTEXT;
	}
	return OK;
}

static CUresult need_device(CUdevice d) {
	CUresult r = need_init();
	if (r != OK) {
		return r;
	}
	return (d >= 0 && d < device_count()) ? OK : E_INVALID_DEVICE;
}

static int ctx_valid(struct ctx *c) {
	for (int i = 0; i < MAX_DEVICES; i++) {
		if (c == &ctxs[i]) {
			return c->refcount > 0;
		}
	}
	return 0;
}

static struct alloc *find_alloc(uintptr_t p, int kind) {
	for (size_t i = 0; i < n_allocs; i++) {
		if (allocs[i].kind == kind && allocs[i].base == p) {
			return &allocs[i];
		}
	}
	return NULL;
}

// device_range checks that [p, p+n) lies inside one live device allocation.
static CUresult device_range(CUdeviceptr p, size_t n) {
	for (size_t i = 0; i < n_allocs; i++) {
		struct alloc *a = &allocs[i];
		if (a->kind == KIND_DEVICE && p >= a->base && p - a->base <= a->size && n <= a->size - (p - a->base)) {
			return OK;
		}
	}
	return E_INVALID_VALUE;
}

static long long used_bytes(int device) {
	long long used = 0;
	for (size_t i = 0; i < n_allocs; i++) {
		if (allocs[i].kind == KIND_DEVICE && allocs[i].device == device) {
			used += (long long)allocs[i].size;
		}
	}
	return used;
}

static CUresult add_alloc(void **out, size_t size, int device, int kind) {
	if (kind == KIND_DEVICE && used_bytes(device) + (long long)size > total_mem()) {
		return E_OUT_OF_MEMORY;
	}
	if (n_allocs == cap_allocs) {
		size_t cap = cap_allocs ? 2 * cap_allocs : 64;
		struct alloc *grown = realloc(allocs, cap * sizeof *grown);
		if (grown == NULL) {
			return E_OUT_OF_MEMORY;
		}
		allocs = grown;
		cap_allocs = cap;
	}
	void *p = malloc(size);
	if (p == NULL) {
		return E_OUT_OF_MEMORY;
	}
	allocs[n_allocs++] = (struct alloc){(uintptr_t)p, size, device, kind};
	*out = p;
	return OK;
}

static void remove_alloc(struct alloc *a) {
	free((void *)a->base);
	*a = allocs[--n_allocs];
}

// All streams ever created (they are never freed), so that a capture can be
// found and invalidated.
static struct stream **streams;
static size_t n_streams, cap_streams;

// sync_blocked: synchronous work while a stream of this context captures in
// global mode is refused and invalidates those captures, as in the driver.
static CUresult sync_blocked(struct ctx *c) {
	if (c->global_captures == 0) {
		return OK;
	}
	for (size_t i = 0; i < n_streams; i++) {
		struct stream *s = streams[i];
		if (s->ctx == c && !s->dead && s->capturing && s->capture_mode == 0) {
			s->invalidated = 1;
		}
	}
	return E_CAPTURE_UNSUPPORTED;
}

static CUresult stream_ok(struct stream *s) {
	if (s == NULL) {
		return OK;
	}
	if (s->magic != STREAM_MAGIC || s->dead || s->ctx != current || s->generation != current->generation) {
		return E_INVALID_HANDLE;
	}
	return OK;
}

static int capturing(struct stream *s) { return s != NULL && s->capturing; }

// ---------------------------------------------------------------------------
// Initialisation, version, errors.

ENTRY(cuInit, (unsigned int flags), (flags)) {
	if (flags != 0) {
		return E_INVALID_VALUE;
	}
	if (device_count() == 0) {
		return E_NO_DEVICE;
	}
	initialized = 1;
	return OK;
}

ENTRY(cuDriverGetVersion, (int *version), (version)) {
	if (version == NULL) {
		return E_INVALID_VALUE;
	}
	*version = (int)env_ll("FAKECUDA_DRIVER_VERSION", 12040);
	return OK;
}

static const struct {
	int code;
	const char *name;
	const char *text;
} error_table[] = {
	{0, "CUDA_SUCCESS", "no error"},
	{1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
	{2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
	{3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
	{100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
	{101, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
	{200, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
	{201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
	{217, "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED", "peer access is not supported between these two devices"},
	{218, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
	{400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
	{401, "CUDA_ERROR_ILLEGAL_STATE", "the operation cannot be performed in the present state"},
	{500, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
	{600, "CUDA_ERROR_NOT_READY", "device not ready"},
	{701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
	{704, "CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED", "peer access is already enabled"},
	{719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
	{801, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
	{900, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", "operation not permitted when stream is capturing"},
	{901, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", "operation failed due to a previous error during capture"},
	{908, "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD", "attempt to terminate a thread-local capture sequence from another thread"},
	{999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

ENTRY(cuGetErrorName, (CUresult error, const char **str), (error, str)) {
	for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++) {
		if (error_table[i].code == error) {
			*str = error_table[i].name;
			return OK;
		}
	}
	*str = NULL;
	return E_INVALID_VALUE;
}

ENTRY(cuGetErrorString, (CUresult error, const char **str), (error, str)) {
	for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++) {
		if (error_table[i].code == error) {
			*str = error_table[i].text;
			return OK;
		}
	}
	*str = NULL;
	return E_INVALID_VALUE;
}

// ---------------------------------------------------------------------------
// Devices.

ENTRY(cuDeviceGetCount, (int *count), (count)) {
	CUresult r = need_init();
	if (r != OK) {
		return r;
	}
	*count = device_count();
	return OK;
}

ENTRY(cuDeviceGet, (CUdevice * device, int ordinal), (device, ordinal)) {
	CUresult r = need_device(ordinal);
	if (r != OK) {
		return r;
	}
	*device = ordinal;
	return OK;
}

ENTRY(cuDeviceGetName, (char *name, int len, CUdevice dev), (name, len, dev)) {
	CUresult r = need_device(dev);
	if (r != OK) {
		return r;
	}
	if (name == NULL || len <= 0) {
		return E_INVALID_VALUE;
	}
	const char *n = getenv("FAKECUDA_NAME");
	snprintf(name, (size_t)len, "%s", n != NULL && *n ? n : "kiln fake GPU");
	return OK;
}

static CUresult device_uuid(unsigned char *uuid, CUdevice dev) {
	CUresult r = need_device(dev);
	if (r != OK) {
		return r;
	}
	static const unsigned char base[16] = {0xfa, 0x4e, 0xc0, 0xda, 0x00, 0x01, 0x42, 0x02,
	                                       0x83, 0x03, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x00};
	memcpy(uuid, base, 16);
	uuid[15] = (unsigned char)dev;
	return OK;
}

ENTRY(cuDeviceGetUuid, (unsigned char *uuid, CUdevice dev), (uuid, dev)) { return device_uuid(uuid, dev); }

#ifndef FAKECUDA_NO_UUID_V2
ENTRY(cuDeviceGetUuid_v2, (unsigned char *uuid, CUdevice dev), (uuid, dev)) { return device_uuid(uuid, dev); }
#endif

ENTRY(cuDeviceGetPCIBusId, (char *bus_id, int len, CUdevice dev), (bus_id, len, dev)) {
	CUresult r = need_device(dev);
	if (r != OK) {
		return r;
	}
	if (bus_id == NULL || len < 13) {
		return E_INVALID_VALUE;
	}
	// Upper-case hex, as the real driver writes it.
	snprintf(bus_id, (size_t)len, "0000:%02X:00.0", 0x3B + dev);
	return OK;
}

// attribute_override applies FAKECUDA_ATTRS ("16=108,97=166912").
static int attribute_override(int attr, int *value) {
	const char *s = getenv("FAKECUDA_ATTRS");
	while (s != NULL && *s) {
		char *end = NULL;
		long a = strtol(s, &end, 0);
		if (end == NULL || *end != '=') {
			return 0;
		}
		long v = strtol(end + 1, &end, 0);
		if (a == attr) {
			*value = (int)v;
			return 1;
		}
		s = (end != NULL && *end == ',') ? end + 1 : NULL;
	}
	return 0;
}

ENTRY(cuDeviceGetAttribute, (int *value, int attr, CUdevice dev), (value, attr, dev)) {
	CUresult r = need_device(dev);
	if (r != OK) {
		return r;
	}
	if (value == NULL || attr <= 0 || attr > 150) {
		return E_INVALID_VALUE;
	}
	if (attribute_override(attr, value)) {
		return OK;
	}
	int v = 0;
	switch (attr) {
	case 1: v = 1024; break;             // max threads per block
	case 2: case 3: v = 1024; break;     // max block dim x, y
	case 4: v = 64; break;               // max block dim z
	case 5: v = 2147483647; break;       // max grid dim x
	case 6: case 7: v = 65535; break;    // max grid dim y, z
	case 8: v = SHARED_PER_BLOCK; break; // shared memory per block
	case 9: v = 65536; break;            // total constant memory
	case 10: v = 32; break;              // warp size
	case 12: v = 65536; break;           // registers per block
	case 13: v = 1980000; break;         // clock rate, kHz
	case 15: v = 1; break;               // gpu overlap
	case 16: v = 132; break;             // multiprocessors
	case 19: v = 1; break;               // can map host memory
	case 31: v = 1; break;               // concurrent kernels
	case 33: v = 0x3B + dev; break;      // PCI bus
	case 36: v = 2619000; break;         // memory clock rate, kHz
	case 37: v = 5120; break;            // memory bus width, bits
	case 38: v = 50 << 20; break;        // L2 cache bytes
	case 39: v = 2048; break;            // max threads per multiprocessor
	case 40: v = 3; break;               // async engines
	case 41: v = 1; break;               // unified addressing
	case 75: v = cc_major(); break;
	case 76: v = cc_minor(); break;
	case 81: v = SHARED_PER_SM; break;
	case 82: v = 65536; break;           // registers per multiprocessor
	case 83: v = 1; break;               // managed memory
	case 95: v = 1; break;               // cooperative launch
	case 97: v = SHARED_PER_BLOCK_OPTIN; break;
	case 106: v = 32; break;             // max blocks per multiprocessor
	case 115: v = 1; break;              // memory pools supported
	default: v = 0;
	}
	*value = v;
	return OK;
}

ENTRY(cuDeviceTotalMem_v2, (size_t *bytes, CUdevice dev), (bytes, dev)) {
	CUresult r = need_device(dev);
	if (r != OK) {
		return r;
	}
	*bytes = (size_t)total_mem();
	return OK;
}

static int peer_supported(void) { return env_ll("FAKECUDA_PEER", 1) != 0; }

ENTRY(cuDeviceCanAccessPeer, (int *can, CUdevice dev, CUdevice peer), (can, dev, peer)) {
	CUresult r = need_device(dev);
	if (r == OK) {
		r = need_device(peer);
	}
	if (r != OK) {
		return r;
	}
	*can = dev != peer && peer_supported();
	return OK;
}

// ---------------------------------------------------------------------------
// Contexts.

ENTRY(cuDevicePrimaryCtxRetain, (void **pctx, CUdevice dev), (pctx, dev)) {
	CUresult r = need_device(dev);
	if (r != OK) {
		return r;
	}
	ctxs[dev].device = dev;
	ctxs[dev].refcount++;
	*pctx = &ctxs[dev];
	return OK;
}

ENTRY(cuDevicePrimaryCtxRelease_v2, (CUdevice dev), (dev)) {
	CUresult r = need_device(dev);
	if (r != OK) {
		return r;
	}
	struct ctx *c = &ctxs[dev];
	if (c->refcount <= 0) {
		return E_INVALID_CONTEXT;
	}
	if (--c->refcount == 0) {
		// The context is destroyed: its memory goes, its handles die.
		for (size_t i = 0; i < n_allocs;) {
			if (allocs[i].kind == KIND_DEVICE && allocs[i].device == dev) {
				remove_alloc(&allocs[i]);
			} else {
				i++;
			}
		}
		c->generation++;
		c->global_captures = 0;
		memset(c->peer_enabled, 0, sizeof c->peer_enabled);
	}
	return OK;
}

ENTRY(cuCtxSetCurrent, (void *pctx), (pctx)) {
	CUresult r = need_init();
	if (r != OK) {
		return r;
	}
	if (pctx != NULL && !ctx_valid((struct ctx *)pctx)) {
		return E_INVALID_CONTEXT;
	}
	current = (struct ctx *)pctx;
	current_generation = current != NULL ? current->generation : 0;
	return OK;
}

ENTRY(cuCtxGetCurrent, (void **pctx), (pctx)) {
	CUresult r = need_init();
	if (r != OK) {
		return r;
	}
	if (pctx == NULL) {
		return E_INVALID_VALUE;
	}
	*pctx = current;
	return OK;
}

ENTRY(cuCtxSynchronize, (void), ()) { return need_ctx(); }

ENTRY(cuCtxEnablePeerAccess, (void *peer, unsigned int flags), (peer, flags)) {
	CUresult r = need_ctx();
	if (r != OK) {
		return r;
	}
	struct ctx *p = (struct ctx *)peer;
	if (flags != 0 || !ctx_valid(p)) {
		return E_INVALID_VALUE;
	}
	if (p == current) {
		return E_INVALID_DEVICE;
	}
	if (!peer_supported()) {
		return E_PEER_ACCESS_UNSUPPORTED;
	}
	if (current->peer_enabled[p->device]) {
		return E_PEER_ACCESS_ALREADY_ENABLED;
	}
	current->peer_enabled[p->device] = 1;
	return OK;
}

ENTRY(cuMemGetInfo_v2, (size_t *free_bytes, size_t *total_bytes), (free_bytes, total_bytes)) {
	CUresult r = need_ctx();
	if (r != OK) {
		return r;
	}
	long long total = total_mem();
	long long used = used_bytes(current->device);
	*total_bytes = (size_t)total;
	*free_bytes = (size_t)(used < total ? total - used : 0);
	return OK;
}

// ---------------------------------------------------------------------------
// Memory.

static CUresult mem_alloc(CUdeviceptr *ptr, size_t size) {
	if (ptr == NULL || size == 0) {
		return E_INVALID_VALUE;
	}
	void *p = NULL;
	CUresult r = add_alloc(&p, size, current->device, KIND_DEVICE);
	if (r != OK) {
		return r;
	}
	*ptr = (CUdeviceptr)(uintptr_t)p;
	return OK;
}

static CUresult mem_free(CUdeviceptr ptr) {
	if (ptr == 0) {
		return OK;
	}
	struct alloc *a = find_alloc((uintptr_t)ptr, KIND_DEVICE);
	if (a == NULL) {
		return E_INVALID_VALUE;
	}
	remove_alloc(a);
	return OK;
}

ENTRY(cuMemAlloc_v2, (CUdeviceptr * ptr, size_t size), (ptr, size)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = sync_blocked(current);
	}
	return r != OK ? r : mem_alloc(ptr, size);
}

ENTRY(cuMemFree_v2, (CUdeviceptr ptr), (ptr)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = sync_blocked(current);
	}
	return r != OK ? r : mem_free(ptr);
}

ENTRY(cuMemAllocAsync, (CUdeviceptr * ptr, size_t size, void *stream), (ptr, size, stream)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = stream_ok(stream);
	}
	return r != OK ? r : mem_alloc(ptr, size);
}

ENTRY(cuMemFreeAsync, (CUdeviceptr ptr, void *stream), (ptr, stream)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = stream_ok(stream);
	}
	return r != OK ? r : mem_free(ptr);
}

ENTRY(cuMemHostAlloc, (void **ptr, size_t size, unsigned int flags), (ptr, size, flags)) {
	CUresult r = need_ctx();
	if (r != OK) {
		return r;
	}
	if (ptr == NULL || size == 0 || (flags & ~0xFu) != 0) {
		return E_INVALID_VALUE;
	}
	return add_alloc(ptr, size, current->device, KIND_HOST);
}

ENTRY(cuMemFreeHost, (void *ptr), (ptr)) {
	CUresult r = need_ctx();
	if (r != OK) {
		return r;
	}
	struct alloc *a = find_alloc((uintptr_t)ptr, KIND_HOST);
	if (a == NULL) {
		return E_INVALID_VALUE;
	}
	remove_alloc(a);
	return OK;
}

// copy checks the device ranges (dst_dev/src_dev say which side is device
// memory) and copies, unless the stream is capturing (then it only records a
// graph node).
static CUresult copy(void *dst, int dst_dev, const void *src, int src_dev, size_t n, struct stream *s) {
	if (dst == NULL || src == NULL) {
		return E_INVALID_VALUE;
	}
	CUresult r = OK;
	if (dst_dev) {
		r = device_range((CUdeviceptr)(uintptr_t)dst, n);
	}
	if (r == OK && src_dev) {
		r = device_range((CUdeviceptr)(uintptr_t)src, n);
	}
	if (r != OK) {
		return r;
	}
	if (capturing(s)) {
		s->nodes++;
		return OK;
	}
	memmove(dst, src, n);
	return OK;
}

static CUresult sync_copy(void *dst, int dst_dev, const void *src, int src_dev, size_t n) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = sync_blocked(current);
	}
	return r != OK ? r : copy(dst, dst_dev, src, src_dev, n, NULL);
}

static CUresult async_copy(void *dst, int dst_dev, const void *src, int src_dev, size_t n, void *stream) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = stream_ok(stream);
	}
	return r != OK ? r : copy(dst, dst_dev, src, src_dev, n, stream);
}

#define DP(p) ((void *)(uintptr_t)(p))

ENTRY(cuMemcpyHtoD_v2, (CUdeviceptr dst, const void *src, size_t n), (dst, src, n)) {
	return sync_copy(DP(dst), 1, src, 0, n);
}
ENTRY(cuMemcpyDtoH_v2, (void *dst, CUdeviceptr src, size_t n), (dst, src, n)) {
	return sync_copy(dst, 0, DP(src), 1, n);
}
ENTRY(cuMemcpyDtoD_v2, (CUdeviceptr dst, CUdeviceptr src, size_t n), (dst, src, n)) {
	return sync_copy(DP(dst), 1, DP(src), 1, n);
}
ENTRY(cuMemcpyHtoDAsync_v2, (CUdeviceptr dst, const void *src, size_t n, void *s), (dst, src, n, s)) {
	return async_copy(DP(dst), 1, src, 0, n, s);
}
ENTRY(cuMemcpyDtoHAsync_v2, (void *dst, CUdeviceptr src, size_t n, void *s), (dst, src, n, s)) {
	return async_copy(dst, 0, DP(src), 1, n, s);
}
ENTRY(cuMemcpyDtoDAsync_v2, (CUdeviceptr dst, CUdeviceptr src, size_t n, void *s), (dst, src, n, s)) {
	return async_copy(DP(dst), 1, DP(src), 1, n, s);
}

ENTRY(cuMemcpyPeerAsync, (CUdeviceptr dst, void *dst_ctx, CUdeviceptr src, void *src_ctx, size_t n, void *s),
      (dst, dst_ctx, src, src_ctx, n, s)) {
	CUresult r = need_ctx();
	if (r != OK) {
		return r;
	}
	if (!ctx_valid(dst_ctx) || !ctx_valid(src_ctx)) {
		return E_INVALID_CONTEXT;
	}
	return async_copy(DP(dst), 1, DP(src), 1, n, s);
}

static CUresult set8(CUdeviceptr dst, unsigned char v, size_t n, struct stream *s) {
	CUresult r = device_range(dst, n);
	if (r != OK) {
		return r;
	}
	if (capturing(s)) {
		s->nodes++;
		return OK;
	}
	memset(DP(dst), v, n);
	return OK;
}

ENTRY(cuMemsetD8_v2, (CUdeviceptr dst, unsigned char v, size_t n), (dst, v, n)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = sync_blocked(current);
	}
	return r != OK ? r : set8(dst, v, n, NULL);
}

ENTRY(cuMemsetD8Async, (CUdeviceptr dst, unsigned char v, size_t n, void *s), (dst, v, n, s)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = stream_ok(s);
	}
	return r != OK ? r : set8(dst, v, n, s);
}

ENTRY(cuMemsetD32Async, (CUdeviceptr dst, unsigned int v, size_t n, void *stream), (dst, v, n, stream)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = stream_ok(stream);
	}
	if (r != OK) {
		return r;
	}
	if (dst % 4 != 0 || n > SIZE_MAX / 4) {
		return E_INVALID_VALUE;
	}
	r = device_range(dst, 4 * n);
	if (r != OK) {
		return r;
	}
	struct stream *s = stream;
	if (capturing(s)) {
		s->nodes++;
		return OK;
	}
	unsigned char *p = DP(dst);
	for (size_t i = 0; i < n; i++) {
		memcpy(p + 4 * i, &v, 4);
	}
	return OK;
}

// ---------------------------------------------------------------------------
// Streams and capture.

ENTRY(cuStreamCreate, (void **pstream, unsigned int flags), (pstream, flags)) {
	CUresult r = need_ctx();
	if (r != OK) {
		return r;
	}
	if (pstream == NULL || flags > 1) {
		return E_INVALID_VALUE;
	}
	if (n_streams == cap_streams) {
		size_t cap = cap_streams ? 2 * cap_streams : 64;
		struct stream **grown = realloc(streams, cap * sizeof *grown);
		if (grown == NULL) {
			return E_OUT_OF_MEMORY;
		}
		streams = grown;
		cap_streams = cap;
	}
	struct stream *s = calloc(1, sizeof *s);
	if (s == NULL) {
		return E_OUT_OF_MEMORY;
	}
	streams[n_streams++] = s;
	s->magic = STREAM_MAGIC;
	s->ctx = current;
	s->generation = current->generation;
	*pstream = s;
	return OK;
}

ENTRY(cuStreamDestroy_v2, (void *stream), (stream)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = stream == NULL ? E_INVALID_HANDLE : stream_ok(stream);
	}
	if (r != OK) {
		return r;
	}
	struct stream *s = stream;
	if (s->capturing && s->capture_mode == 0) {
		current->global_captures--;
	}
	s->dead = 1;
	return OK;
}

ENTRY(cuStreamSynchronize, (void *stream), (stream)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = stream_ok(stream);
	}
	if (r == OK && capturing(stream)) {
		return E_CAPTURE_UNSUPPORTED;
	}
	return r;
}

ENTRY(cuStreamQuery, (void *stream), (stream)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = stream_ok(stream);
	}
	if (r == OK && capturing(stream)) {
		return E_CAPTURE_UNSUPPORTED;
	}
	return r;
}

static CUresult event_ok(struct event *e) {
	if (e == NULL || e->magic != EVENT_MAGIC || e->dead || e->ctx != current || e->generation != current->generation) {
		return E_INVALID_HANDLE;
	}
	return OK;
}

ENTRY(cuStreamWaitEvent, (void *stream, void *event, unsigned int flags), (stream, event, flags)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = stream_ok(stream);
	}
	// The event may belong to another context (cuStreamWaitEvent's
	// documentation: "event may be from a different context or device").
	struct event *e = event;
	if (r == OK && (e == NULL || e->magic != EVENT_MAGIC || e->dead || !ctx_valid(e->ctx) || e->generation != e->ctx->generation)) {
		r = E_INVALID_HANDLE;
	}
	if (r == OK && flags != 0) {
		r = E_INVALID_VALUE;
	}
	return r;
}

ENTRY(cuStreamBeginCapture_v2, (void *stream, int mode), (stream, mode)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = stream_ok(stream);
	}
	if (r != OK) {
		return r;
	}
	struct stream *s = stream;
	if (s == NULL) {
		return E_CAPTURE_UNSUPPORTED; // the legacy stream cannot be captured
	}
	if (mode < 0 || mode > 2) {
		return E_INVALID_VALUE;
	}
	if (s->capturing) {
		return E_ILLEGAL_STATE;
	}
	s->capturing = 1;
	s->capture_mode = mode;
	s->capture_thread = pthread_self();
	s->invalidated = 0;
	s->nodes = 0;
	s->launch_nodes = 0;
	if (mode == 0) {
		current->global_captures++;
	}
	return OK;
}

ENTRY(cuStreamEndCapture, (void *stream, void **pgraph), (stream, pgraph)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = stream == NULL ? E_ILLEGAL_STATE : stream_ok(stream);
	}
	if (r != OK) {
		return r;
	}
	struct stream *s = stream;
	if (!s->capturing) {
		return E_ILLEGAL_STATE;
	}
	// Only a relaxed capture may end on another thread than it began on.
	if (s->capture_mode != 2 && !pthread_equal(s->capture_thread, pthread_self())) {
		return E_CAPTURE_WRONG_THREAD;
	}
	s->capturing = 0;
	if (s->capture_mode == 0) {
		current->global_captures--;
	}
	if (s->invalidated) {
		*pgraph = NULL;
		return E_CAPTURE_INVALIDATED;
	}
	struct graph *g = calloc(1, sizeof *g);
	if (g == NULL) {
		return E_OUT_OF_MEMORY;
	}
	g->magic = GRAPH_MAGIC;
	g->ctx = current;
	g->generation = current->generation;
	g->nodes = s->nodes;
	g->launch_nodes = s->launch_nodes;
	*pgraph = g;
	return OK;
}

// ---------------------------------------------------------------------------
// Events.

ENTRY(cuEventCreate, (void **pevent, unsigned int flags), (pevent, flags)) {
	CUresult r = need_ctx();
	if (r != OK) {
		return r;
	}
	if (pevent == NULL || (flags & ~0x7u) != 0) {
		return E_INVALID_VALUE;
	}
	struct event *e = calloc(1, sizeof *e);
	if (e == NULL) {
		return E_OUT_OF_MEMORY;
	}
	e->magic = EVENT_MAGIC;
	e->ctx = current;
	e->generation = current->generation;
	e->flags = flags;
	*pevent = e;
	return OK;
}

ENTRY(cuEventRecord, (void *event, void *stream), (event, stream)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = event_ok(event);
	}
	if (r == OK) {
		r = stream_ok(stream);
	}
	if (r == OK) {
		((struct event *)event)->recorded = 1;
	}
	return r;
}

ENTRY(cuEventSynchronize, (void *event), (event)) {
	CUresult r = need_ctx();
	return r != OK ? r : event_ok(event);
}

ENTRY(cuEventQuery, (void *event), (event)) {
	CUresult r = need_ctx();
	return r != OK ? r : event_ok(event);
}

ENTRY(cuEventDestroy_v2, (void *event), (event)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = event_ok(event);
	}
	if (r == OK) {
		((struct event *)event)->dead = 1;
	}
	return r;
}

ENTRY(cuEventElapsedTime, (float *ms, void *start, void *end), (ms, start, end)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = event_ok(start);
	}
	if (r == OK) {
		r = event_ok(end);
	}
	if (r != OK) {
		return r;
	}
	struct event *a = start, *b = end;
	// Events made with CU_EVENT_DISABLE_TIMING, or never recorded, cannot be timed.
	if ((a->flags & 2) || (b->flags & 2) || !a->recorded || !b->recorded) {
		return E_INVALID_HANDLE;
	}
	*ms = 0;
	return OK;
}

// ---------------------------------------------------------------------------
// Modules and functions.

static int is_ident(char ch) {
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '$';
}

// log_to writes a message into a JIT log buffer and stores the bytes used
// in the buffer's size option, as the driver does.
static void log_to(char *buf, void **size_slot, const char *msg) {
	if (buf == NULL || size_slot == NULL) {
		return;
	}
	size_t cap = (size_t)(uintptr_t)*size_slot;
	if (cap == 0) {
		return;
	}
	snprintf(buf, cap, "%s", msg);
	size_t used = strlen(buf) + 1;
	*size_slot = (void *)(uintptr_t)used;
}

static int ptx_version(const char *text) {
	const char *v = strstr(text, ".version");
	if (v == NULL) {
		return 0;
	}
	int major = 0, minor = 0;
	if (sscanf(v + 8, " %d.%d", &major, &minor) != 2) {
		return 0;
	}
	return major * 10 + minor;
}

// target_rejected reports whether the .target line contains one of the
// comma-separated strings in FAKECUDA_REJECT_TARGET, and copies the line.
static int target_rejected(const char *text, char *line, size_t line_size) {
	line[0] = 0;
	const char *t = strstr(text, ".target");
	if (t == NULL) {
		return 0;
	}
	size_t len = strcspn(t, "\r\n");
	if (len >= line_size) {
		len = line_size - 1;
	}
	memcpy(line, t, len);
	line[len] = 0;
	const char *spec = getenv("FAKECUDA_REJECT_TARGET");
	while (spec != NULL && *spec) {
		size_t n = strcspn(spec, ",");
		if (n > 0) {
			char want[64];
			if (n >= sizeof want) {
				n = sizeof want - 1;
			}
			memcpy(want, spec, n);
			want[n] = 0;
			if (strstr(line, want) != NULL) {
				return 1;
			}
		}
		spec += n;
		if (*spec == ',') {
			spec++;
		}
	}
	return 0;
}

// scalar_bytes is the size of a PTX fundamental type such as ".u64", or 0.
static size_t scalar_bytes(const char *t, size_t len) {
	if (len < 3 || t[0] != '.' || strchr("bsuf", t[1]) == NULL) {
		return 0;
	}
	if (len == 3 && t[2] == '8') {
		return 1;
	}
	if (len == 4 && t[2] == '1' && t[3] == '6') {
		return 2;
	}
	if (len == 4 && t[2] == '3' && t[3] == '2') {
		return 4;
	}
	if (len == 4 && t[2] == '6' && t[3] == '4') {
		return 8;
	}
	return 0;
}

// parse_params reads the parameter list of an .entry, p pointing just past
// its name, into f: each ".param [.align A] .TYPE [.ptr ...] NAME[[N]]" is
// placed at the next multiple of its alignment (A, or the type's size), as
// the driver lays parameters out. It leaves params_known 0 when the text is
// not understood.
static void parse_params(const char *p, struct function *f) {
	f->params_known = 0;
	f->n_params = 0;
	f->param_bytes = 0;
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
		p++;
	}
	if (*p != '(') {
		return;
	}
	const char *end = strchr(p, ')');
	if (end == NULL) {
		return;
	}
	p++;
	size_t offset = 0;
	while (p < end) {
		// One declaration: up to the next ',' or the closing ')'.
		const char *decl_end = memchr(p, ',', (size_t)(end - p));
		if (decl_end == NULL) {
			decl_end = end;
		}
		size_t align = 0, elem = 0, count = 1;
		int saw_param = 0, saw_name = 0;
		const char *q = p;
		while (q < decl_end) {
			while (q < decl_end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')) {
				q++;
			}
			const char *tok = q;
			while (q < decl_end && *q != ' ' && *q != '\t' && *q != '\r' && *q != '\n') {
				q++;
			}
			size_t len = (size_t)(q - tok);
			if (len == 0) {
				continue;
			}
			if (len == 6 && strncmp(tok, ".param", 6) == 0) {
				saw_param = 1;
			} else if (len == 6 && strncmp(tok, ".align", 6) == 0) {
				// The alignment's value is the next token. Before the type
				// it aligns the parameter; after .ptr, the pointee (ignored).
				while (q < decl_end && (*q == ' ' || *q == '\t')) {
					q++;
				}
				long a = strtol(q, NULL, 10);
				while (q < decl_end && *q >= '0' && *q <= '9') {
					q++;
				}
				if (elem == 0) {
					align = a > 0 ? (size_t)a : 0;
				}
			} else if (tok[0] == '.' && elem == 0) {
				elem = scalar_bytes(tok, len);
				if (elem == 0) {
					return; // an unknown type
				}
			} else if (tok[0] == '.') {
				// .ptr, a state space: qualifiers of a pointer parameter.
			} else {
				saw_name = 1;
				const char *br = memchr(tok, '[', len);
				if (br != NULL) {
					long n = strtol(br + 1, NULL, 10);
					if (n <= 0) {
						return;
					}
					count = (size_t)n;
				}
			}
		}
		if (!saw_param || !saw_name || elem == 0 || f->n_params == MAX_PARAMS) {
			return;
		}
		if (align == 0) {
			align = elem;
		}
		offset = (offset + align - 1) / align * align;
		f->param_offset[f->n_params] = offset;
		f->param_size[f->n_params] = elem * count;
		f->n_params++;
		offset += elem * count;
		p = decl_end + 1;
	}
	f->param_bytes = offset;
	f->params_known = 1;
}

ENTRY(cuModuleLoadDataEx, (void **pmodule, const void *image, unsigned int n_options, int *options, void **values),
      (pmodule, image, n_options, options, values)) {
	CUresult r = need_ctx();
	if (r != OK) {
		return r;
	}
	if (pmodule == NULL || image == NULL || (n_options > 0 && (options == NULL || values == NULL))) {
		return E_INVALID_VALUE;
	}
	char *error_log = NULL, *info_log = NULL;
	void **error_size = NULL, **info_size = NULL;
	for (unsigned i = 0; i < n_options; i++) {
		switch (options[i]) {
		case 3: info_log = values[i]; break;
		case 4: info_size = &values[i]; break;
		case 5: error_log = values[i]; break;
		case 6: error_size = &values[i]; break;
		default: break;
		}
	}
	const char *text = image;
	int version = ptx_version(text);
	if (version == 0) {
		log_to(error_log, error_size, "fakecuda: the image is not PTX text (no \".version X.Y\" directive)");
		return E_INVALID_IMAGE;
	}
	char target[128], msg[512];
	if (target_rejected(text, target, sizeof target)) {
		snprintf(msg, sizeof msg,
		         "ptxas fatal   : fakecuda refuses '%s' (FAKECUDA_REJECT_TARGET=%s)", target,
		         getenv("FAKECUDA_REJECT_TARGET"));
		log_to(error_log, error_size, msg);
		return E_INVALID_PTX;
	}

	struct module *m = calloc(1, sizeof *m);
	if (m == NULL) {
		return E_OUT_OF_MEMORY;
	}
	m->magic = MODULE_MAGIC;
	m->ctx = current;
	m->generation = current->generation;
	m->ptx_version = version;
	int cap = 0;
	for (const char *p = strstr(text, ".entry"); p != NULL; p = strstr(p + 6, ".entry")) {
		const char *q = p + 6;
		if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
			continue;
		}
		while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') {
			q++;
		}
		size_t len = 0;
		while (is_ident(q[len])) {
			len++;
		}
		if (len == 0 || len >= sizeof m->functions[0].name) {
			continue;
		}
		if (m->n_functions == cap) {
			cap = cap ? 2 * cap : 16;
			struct function *grown = realloc(m->functions, (size_t)cap * sizeof *grown);
			if (grown == NULL) {
				free(m->functions);
				free(m);
				return E_OUT_OF_MEMORY;
			}
			m->functions = grown;
		}
		struct function *f = &m->functions[m->n_functions++];
		memset(f, 0, sizeof *f);
		f->magic = FUNC_MAGIC;
		f->module = m;
		memcpy(f->name, q, len);
		f->name[len] = 0;
		parse_params(q + len, f);
	}
	snprintf(msg, sizeof msg, "fakecuda: loaded %d kernel(s) from PTX %d.%d (%s)", m->n_functions, version / 10,
	         version % 10, target[0] ? target : "no .target");
	log_to(info_log, info_size, msg);
	log_to(error_log, error_size, "");
	*pmodule = m;
	return OK;
}

static CUresult module_ok(struct module *m) {
	if (m == NULL || m->magic != MODULE_MAGIC || m->dead || m->ctx != current || m->generation != current->generation) {
		return E_INVALID_HANDLE;
	}
	return OK;
}

static CUresult function_ok(struct function *f) {
	if (f == NULL || f->magic != FUNC_MAGIC) {
		return E_INVALID_HANDLE;
	}
	return module_ok(f->module);
}

ENTRY(cuModuleUnload, (void *module), (module)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = module_ok(module);
	}
	if (r == OK) {
		((struct module *)module)->dead = 1;
	}
	return r;
}

ENTRY(cuModuleGetFunction, (void **pfunc, void *module, const char *name), (pfunc, module, name)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = module_ok(module);
	}
	if (r != OK) {
		return r;
	}
	if (pfunc == NULL || name == NULL) {
		return E_INVALID_VALUE;
	}
	struct module *m = module;
	for (int i = 0; i < m->n_functions; i++) {
		if (strcmp(m->functions[i].name, name) == 0) {
			*pfunc = &m->functions[i];
			return OK;
		}
	}
	return E_NOT_FOUND;
}

ENTRY(cuFuncGetAttribute, (int *value, int attr, void *func), (value, attr, func)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = function_ok(func);
	}
	if (r != OK) {
		return r;
	}
	struct function *f = func;
	switch (attr) {
	case 0: *value = 1024; break;                              // max threads per block
	case 1: case 2: case 3: *value = 0; break;                 // static shared, const, local bytes
	case 4: *value = 32; break;                                // registers
	case 5: *value = f->module->ptx_version; break;            // PTX version
	case 6: *value = cc_major() * 10 + cc_minor(); break;      // binary version
	case 8: *value = f->max_dynamic_shared; break;             // max dynamic shared bytes
	default: return E_INVALID_VALUE;
	}
	return OK;
}

ENTRY(cuFuncSetAttribute, (void *func, int attr, int value), (func, attr, value)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = function_ok(func);
	}
	if (r != OK) {
		return r;
	}
	if (attr != 8 || value < 0 || value > SHARED_PER_BLOCK_OPTIN) {
		return E_INVALID_VALUE;
	}
	((struct function *)func)->max_dynamic_shared = value;
	return OK;
}

#ifndef FAKECUDA_NO_PARAM_INFO
ENTRY(cuFuncGetParamInfo, (void *func, size_t index, size_t *offset, size_t *size), (func, index, offset, size)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = function_ok(func);
	}
	if (r != OK) {
		return r;
	}
	struct function *f = func;
	if (!f->params_known) {
		return E_NOT_SUPPORTED;
	}
	if (offset == NULL || index >= (size_t)f->n_params) {
		return E_INVALID_VALUE;
	}
	*offset = f->param_offset[index];
	if (size != NULL) {
		*size = f->param_size[index];
	}
	return OK;
}
#endif

ENTRY(cuOccupancyMaxActiveBlocksPerMultiprocessor, (int *blocks, void *func, int block_size, size_t dynamic_shared),
      (blocks, func, block_size, dynamic_shared)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = function_ok(func);
	}
	if (r != OK) {
		return r;
	}
	if (blocks == NULL || block_size <= 0) {
		return E_INVALID_VALUE;
	}
	int n = block_size > 1024 ? 0 : 2048 / block_size;
	if (n > 32) {
		n = 32;
	}
	if (dynamic_shared > 0 && (size_t)n * dynamic_shared > SHARED_PER_SM) {
		n = (int)(SHARED_PER_SM / dynamic_shared);
	}
	*blocks = n;
	return OK;
}

// ---------------------------------------------------------------------------
// Launches.

ENTRY(cuLaunchKernel,
      (void *func, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared,
       void *stream, void **params, void **extra),
      (func, gx, gy, gz, bx, by, bz, shared, stream, params, extra)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = function_ok(func);
	}
	if (r == OK) {
		r = stream_ok(stream);
	}
	if (r != OK) {
		return r;
	}
	struct function *f = func;
	if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0) {
		return E_INVALID_VALUE;
	}
	if ((unsigned long long)bx * by * bz > 1024) {
		return E_INVALID_VALUE;
	}
	unsigned max_shared = f->max_dynamic_shared > SHARED_PER_BLOCK ? (unsigned)f->max_dynamic_shared : SHARED_PER_BLOCK;
	if (shared > max_shared) {
		return E_INVALID_VALUE;
	}
	if (params != NULL && extra != NULL) {
		return E_INVALID_VALUE;
	}
	const void *buf = NULL;
	size_t size = 0;
	if (extra != NULL) {
		const size_t *size_ptr = NULL;
		for (int i = 0; extra[i] != (void *)0; i += 2) {
			if (extra[i] == (void *)1) {
				buf = extra[i + 1];
			} else if (extra[i] == (void *)2) {
				size_ptr = extra[i + 1];
			} else {
				return E_INVALID_VALUE;
			}
		}
		if (buf == NULL || size_ptr == NULL || *size_ptr > MAX_ARG_BYTES) {
			return E_INVALID_VALUE;
		}
		size = *size_ptr;
	}
	// The driver takes the parameter buffer's size to be exactly the end of
	// the kernel's last parameter: a size that includes a struct's tail
	// padding is refused with CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES (as LLVM's
	// offload runtime found), and a kernel's parameters cannot be left out.
	if (f->params_known && params == NULL) {
		if (size > f->param_bytes) {
			return E_LAUNCH_OUT_OF_RESOURCES;
		}
		if (size < f->param_bytes) {
			return E_INVALID_VALUE;
		}
	}
	struct stream *s = stream;
	if (capturing(s)) {
		s->nodes++;
		s->launch_nodes++;
		return OK;
	}
	launch_count++;
	snprintf(last_launch.name, sizeof last_launch.name, "%s", f->name);
	unsigned dims[7] = {gx, gy, gz, bx, by, bz, shared};
	memcpy(last_launch.dims, dims, sizeof dims);
	if (size > 0) {
		memcpy(last_launch.args, buf, size);
	}
	last_launch.args_size = size;
	last_launch.valid = 1;
	return OK;
}

// ---------------------------------------------------------------------------
// Graphs.

static CUresult graph_ok(struct graph *g, unsigned magic) {
	if (g == NULL || g->magic != magic || g->dead || g->ctx != current || g->generation != current->generation) {
		return E_INVALID_HANDLE;
	}
	return OK;
}

ENTRY(cuGraphInstantiateWithFlags, (void **pexec, void *graph, unsigned long long flags), (pexec, graph, flags)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = graph_ok(graph, GRAPH_MAGIC);
	}
	if (r != OK) {
		return r;
	}
	if (pexec == NULL || flags != 0) {
		return E_INVALID_VALUE;
	}
	struct graph *e = calloc(1, sizeof *e);
	if (e == NULL) {
		return E_OUT_OF_MEMORY;
	}
	*e = *(struct graph *)graph;
	e->magic = EXEC_MAGIC;
	*pexec = e;
	return OK;
}

ENTRY(cuGraphDestroy, (void *graph), (graph)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = graph_ok(graph, GRAPH_MAGIC);
	}
	if (r == OK) {
		((struct graph *)graph)->dead = 1;
	}
	return r;
}

ENTRY(cuGraphLaunch, (void *exec, void *stream), (exec, stream)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = graph_ok(exec, EXEC_MAGIC);
	}
	if (r == OK) {
		r = stream_ok(stream);
	}
	if (r != OK) {
		return r;
	}
	graph_launch_count++;
	launch_count += ((struct graph *)exec)->launch_nodes;
	return OK;
}

ENTRY(cuGraphExecDestroy, (void *exec), (exec)) {
	CUresult r = need_ctx();
	if (r == OK) {
		r = graph_ok(exec, EXEC_MAGIC);
	}
	if (r == OK) {
		((struct graph *)exec)->dead = 1;
	}
	return r;
}

// ---------------------------------------------------------------------------
// Queries for tests (not part of the CUDA driver API).

long long fakecuda_launch_count(void) {
	pthread_mutex_lock(&mu);
	long long n = launch_count;
	pthread_mutex_unlock(&mu);
	return n;
}

long long fakecuda_graph_launch_count(void) {
	pthread_mutex_lock(&mu);
	long long n = graph_launch_count;
	pthread_mutex_unlock(&mu);
	return n;
}

// fakecuda_calls is the number of calls of entry point name (failed ones
// included) since the library was loaded or counters were reset.
long long fakecuda_calls(const char *name) {
	long long n = 0;
	pthread_mutex_lock(&mu);
	for (int i = 0; i < n_counters; i++) {
		if (strcmp(counters[i].name, name) == 0) {
			n = counters[i].calls;
		}
	}
	pthread_mutex_unlock(&mu);
	return n;
}

void fakecuda_reset_counters(void) {
	pthread_mutex_lock(&mu);
	for (int i = 0; i < n_counters; i++) {
		counters[i].calls = 0;
	}
	launch_count = 0;
	graph_launch_count = 0;
	last_launch.valid = 0;
	pthread_mutex_unlock(&mu);
}

// fakecuda_last_launch copies the last direct (not graph) launch: the kernel
// name, dims = grid x, y, z, block x, y, z, shared bytes, and the parameter
// buffer. It returns 0 when nothing was launched yet, else 1.
int fakecuda_last_launch(char *name, size_t name_size, unsigned *dims, unsigned char *args, size_t args_cap,
                         size_t *args_size) {
	pthread_mutex_lock(&mu);
	int valid = last_launch.valid;
	if (valid) {
		snprintf(name, name_size, "%s", last_launch.name);
		memcpy(dims, last_launch.dims, sizeof last_launch.dims);
		size_t n = last_launch.args_size < args_cap ? last_launch.args_size : args_cap;
		memcpy(args, last_launch.args, n);
		*args_size = last_launch.args_size;
	}
	pthread_mutex_unlock(&mu);
	return valid;
}

// fakecuda_allocations is the number of live allocations of one kind:
// 1 device memory, 2 pinned host memory.
long long fakecuda_allocations(int kind) {
	long long n = 0;
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < n_allocs; i++) {
		if (allocs[i].kind == kind) {
			n++;
		}
	}
	pthread_mutex_unlock(&mu);
	return n;
}

// ---------------------------------------------------------------------------
// Tensor maps. cuTensorMapEncodeTiled checks what the driver checks (map
// 64-byte aligned, rank 1..5, global address 16-byte aligned, strides
// multiples of 16, box 1..256 with an inner extent of a multiple of 16 bytes
// and at most the swizzle span, element strides 1..8) and writes the
// stand-in layout package cuda documents at FakeTensorMap ("KTMP", the
// fields), which the host simulators read.

static void put_u32(unsigned char *p, unsigned v) {
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

ENTRY(cuTensorMapEncodeTiled,
      (void *map, int data_type, unsigned rank, void *global, const unsigned long long *dims,
       const unsigned long long *strides, const unsigned *box, const unsigned *element_strides, int interleave,
       int swizzle, int l2_promotion, int oob_fill),
      (map, data_type, rank, global, dims, strides, box, element_strides, interleave, swizzle, l2_promotion,
       oob_fill)) {
	unsigned elem;
	switch (data_type) {
	case 0: elem = 1; break;
	case 1: case 6: case 9: elem = 2; break;
	case 2: case 3: case 7: elem = 4; break;
	default: return E_INVALID_VALUE;
	}
	if (map == NULL || (uintptr_t)map % 64 != 0 || rank < 1 || rank > 5 || global == NULL ||
	    (uintptr_t)global % 16 != 0 || dims == NULL || box == NULL || element_strides == NULL ||
	    (rank > 1 && strides == NULL) || interleave != 0 || swizzle < 0 || swizzle > 3 || l2_promotion < 0 ||
	    l2_promotion > 3 || oob_fill < 0 || oob_fill > 1) {
		return E_INVALID_VALUE;
	}
	for (unsigned i = 0; i < rank; i++) {
		if (dims[i] < 1 || dims[i] > (1ull << 32) || box[i] < 1 || box[i] > 256 || element_strides[i] < 1 ||
		    element_strides[i] > 8) {
			return E_INVALID_VALUE;
		}
		if (i + 1 < rank && (strides[i] % 16 != 0 || strides[i] >= (1ull << 40))) {
			return E_INVALID_VALUE;
		}
	}
	const unsigned inner = box[0] * elem, span = swizzle == 0 ? 0 : 16u << swizzle;
	if (inner % 16 != 0 || (span != 0 && inner > span)) {
		return E_INVALID_VALUE;
	}
	unsigned char *m = map;
	memset(m, 0, 128);
	memcpy(m, "KTMP", 4);
	m[4] = (unsigned char)data_type;
	m[5] = (unsigned char)rank;
	m[6] = (unsigned char)swizzle;
	m[7] = (unsigned char)l2_promotion;
	put_u32(m + 8, (unsigned)(uintptr_t)global);
	put_u32(m + 12, (unsigned)((uintptr_t)global >> 32));
	for (unsigned i = 0; i < 5; i++) {
		put_u32(m + 16 + 4 * i, i < rank ? (unsigned)dims[i] : 0);
		put_u32(m + 36 + 4 * i, i < rank ? box[i] : 0);
		put_u32(m + 88 + 4 * i, i < rank ? element_strides[i] : 1);
	}
	for (unsigned i = 0; i + 1 < rank; i++) {
		put_u32(m + 56 + 8 * i, (unsigned)strides[i]);
		put_u32(m + 60 + 8 * i, (unsigned)(strides[i] >> 32));
	}
	return OK;
}
