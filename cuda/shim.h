//go:build cgo

// shim.h declares kiln's C shim over the CUDA driver API. No cuda.h is
// needed: the few driver types used are declared here by their ABI (CUresult
// and CUdevice are int, CUdeviceptr is a 64-bit integer, every other handle
// is an opaque pointer).
//
// Every kiln_* function that works in a context takes that context as its
// first argument and makes it current on the calling OS thread inside the
// same C call, so the Go side never depends on which thread it runs on.
// A failure of that cuCtxSetCurrent is reported as its CUresult with
// KILN_CTX_FAILED added, so the Go side can name the right entry point.

#ifndef KILN_CUDA_SHIM_H
#define KILN_CUDA_SHIM_H

#include <stddef.h>

typedef unsigned long long kiln_devptr;

// KILN_CTX_FAILED marks a result that came from cuCtxSetCurrent rather than
// from the entry point the shim function is named after.
#define KILN_CTX_FAILED 0x100000

// KILN_NO_PARAM_INFO is kiln_func_param_bytes' answer when the driver lacks
// cuFuncGetParamInfo (before CUDA 12.4). It is no CUresult.
#define KILN_NO_PARAM_INFO 0x200000

// kiln_load outcomes.
#define KILN_LOAD_OK 0
#define KILN_LOAD_DLOPEN_FAILED 1
#define KILN_LOAD_MISSING_SYMBOL 2

// kiln_load dlopens path and binds every entry point kiln uses. On failure it
// writes dlerror's text or the missing symbol's name into msg.
int kiln_load(const char *path, char *msg, size_t msg_size);

// kiln_error_name and kiln_error_string are cuGetErrorName and
// cuGetErrorString; NULL when the driver does not know the result.
const char *kiln_error_name(int result);
const char *kiln_error_string(int result);

// kiln_uuid_fallback reports whether cuDeviceGetUuid_v2 was missing and the
// unversioned cuDeviceGetUuid is used instead.
int kiln_uuid_fallback(void);

// Library-level and device-level calls (no context needed).
int kiln_init(unsigned int flags);
int kiln_driver_version(int *version);
int kiln_device_count(int *count);
int kiln_device_get(int *device, int ordinal);
int kiln_device_name(char *name, int size, int device);
int kiln_device_uuid(unsigned char *uuid16, int device);
int kiln_device_pci_bus_id(char *bus_id, int size, int device);
int kiln_device_attribute(int *value, int attribute, int device);
int kiln_device_total_mem(size_t *bytes, int device);
int kiln_device_can_access_peer(int *can, int device, int peer);
int kiln_primary_ctx_retain(void **ctx, int device);
int kiln_primary_ctx_release(int device);

// kiln_use_ctx makes ctx current on the calling thread, as every context-level
// kiln_* call does first (for the NCCL shim, nccl_shim.c). A failure is the
// cuCtxSetCurrent result with KILN_CTX_FAILED added.
int kiln_use_ctx(void *ctx);

// Context-level calls.
int kiln_ctx_synchronize(void *ctx);
int kiln_mem_get_info(void *ctx, size_t *free_bytes, size_t *total_bytes);
int kiln_ctx_enable_peer_access(void *ctx, void *peer_ctx);

// Memory.
int kiln_mem_alloc(void *ctx, kiln_devptr *ptr, size_t size);
int kiln_mem_free(void *ctx, kiln_devptr ptr);
int kiln_mem_alloc_async(void *ctx, kiln_devptr *ptr, size_t size, void *stream);
int kiln_mem_free_async(void *ctx, kiln_devptr ptr, void *stream);
int kiln_mem_host_alloc(void *ctx, void **ptr, size_t size, unsigned int flags);
int kiln_mem_free_host(void *ctx, void *ptr);
int kiln_memcpy_htod(void *ctx, kiln_devptr dst, const void *src, size_t size);
int kiln_memcpy_dtoh(void *ctx, void *dst, kiln_devptr src, size_t size);
int kiln_memcpy_dtod(void *ctx, kiln_devptr dst, kiln_devptr src, size_t size);
int kiln_memcpy_htod_async(void *ctx, kiln_devptr dst, const void *src, size_t size, void *stream);
int kiln_memcpy_dtoh_async(void *ctx, void *dst, kiln_devptr src, size_t size, void *stream);
int kiln_memcpy_dtod_async(void *ctx, kiln_devptr dst, kiln_devptr src, size_t size, void *stream);
int kiln_memcpy_peer_async(void *ctx, kiln_devptr dst, void *dst_ctx, kiln_devptr src, void *src_ctx,
                           size_t size, void *stream);
int kiln_memset_d8(void *ctx, kiln_devptr dst, unsigned char value, size_t n);
int kiln_memset_d8_async(void *ctx, kiln_devptr dst, unsigned char value, size_t n, void *stream);
int kiln_memset_d32_async(void *ctx, kiln_devptr dst, unsigned int value, size_t n, void *stream);

// Streams and capture.
int kiln_stream_create(void *ctx, void **stream, unsigned int flags);
int kiln_stream_destroy(void *ctx, void *stream);
int kiln_stream_synchronize(void *ctx, void *stream);
int kiln_stream_query(void *ctx, void *stream);
int kiln_stream_wait_event(void *ctx, void *stream, void *event);
int kiln_stream_begin_capture(void *ctx, void *stream, int mode);
int kiln_stream_end_capture(void *ctx, void *stream, void **graph);

// Events.
int kiln_event_create(void *ctx, void **event, unsigned int flags);
int kiln_event_record(void *ctx, void *event, void *stream);
int kiln_event_synchronize(void *ctx, void *event);
int kiln_event_query(void *ctx, void *event);
int kiln_event_destroy(void *ctx, void *event);
int kiln_event_elapsed(void *ctx, float *millis, void *start, void *end);

// Modules and functions. The logs are caller-provided buffers; the driver
// writes NUL-terminated text into them.
int kiln_module_load(void *ctx, void **module, const void *image, char *error_log, size_t error_log_size,
                     char *info_log, size_t info_log_size);
int kiln_module_unload(void *ctx, void *module);
int kiln_module_get_function(void *ctx, void **function, void *module, const char *name);
int kiln_func_get_attribute(void *ctx, int *value, int attribute, void *function);
int kiln_func_set_attribute(void *ctx, void *function, int attribute, int value);
// kiln_func_param_bytes writes the size of function's parameter buffer (the
// end of its last parameter, per cuFuncGetParamInfo) into bytes.
int kiln_func_param_bytes(void *ctx, size_t *bytes, void *function);
int kiln_occupancy_max_active_blocks(void *ctx, int *blocks, void *function, int block_size,
                                     size_t dynamic_shared_bytes);

// kiln_launch is cuLaunchKernel with the packed parameter buffer passed
// through the `extra` array (kernelParams NULL: the two are exclusive); args
// may be NULL when args_size is 0. args_size must be the kernel's exact
// parameter size, without tail padding: the driver refuses a larger one.
int kiln_launch(void *ctx, void *function, unsigned int grid_x, unsigned int grid_y, unsigned int grid_z,
                unsigned int block_x, unsigned int block_y, unsigned int block_z, unsigned int shared_bytes,
                void *stream, void *args, size_t args_size);

// Graphs.
int kiln_graph_instantiate(void *ctx, void **exec, void *graph);
int kiln_graph_destroy(void *ctx, void *graph);
int kiln_graph_launch(void *ctx, void *exec, void *stream);
int kiln_graph_exec_destroy(void *ctx, void *exec);

// kiln_has_tensor_map reports whether the driver has cuTensorMapEncodeTiled.
int kiln_has_tensor_map(void);

// kiln_tensor_map_encode_tiled is cuTensorMapEncodeTiled with no
// interleave and zero fill out of bounds, writing the 128-byte map to out128
// (any alignment). No context is needed.
int kiln_tensor_map_encode_tiled(unsigned char *out128, int data_type, unsigned int rank, kiln_devptr global,
                                 const unsigned long long *dims, const unsigned long long *strides,
                                 const unsigned int *box, const unsigned int *element_strides, int swizzle,
                                 int l2_promotion);

#endif
