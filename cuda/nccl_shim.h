//go:build cgo

// nccl_shim.h declares kiln's C shim over NCCL. No nccl.h is needed: the
// few NCCL types used are declared by their ABI (ncclResult_t, ncclDataType_t
// and ncclRedOp_t are int enums, ncclComm_t and cudaStream_t are opaque
// pointers; a CUstream is a cudaStream_t).

#ifndef KILN_NCCL_SHIM_H
#define KILN_NCCL_SHIM_H

#include <stddef.h>

// kiln_nccl_load outcomes (the same values as kiln_load's).
#define KILN_NCCL_LOAD_OK 0
#define KILN_NCCL_LOAD_DLOPEN_FAILED 1
#define KILN_NCCL_LOAD_MISSING_SYMBOL 2

// kiln_nccl_load dlopens path and binds the NCCL entry points kiln uses. On
// failure it writes dlerror's text or the missing symbol's name into msg.
int kiln_nccl_load(const char *path, char *msg, size_t msg_size);

// kiln_nccl_error_string is ncclGetErrorString.
const char *kiln_nccl_error_string(int result);

// The NCCL calls, returning their ncclResult_t.
int kiln_nccl_get_version(int *version);
int kiln_nccl_comm_init_all(void **comms, int ndev, const int *devices);
int kiln_nccl_comm_destroy(void *comm);
int kiln_nccl_group_start(void);
int kiln_nccl_group_end(void);

// kiln_nccl_all_reduce_sum makes ctx current (as every context-level kiln_*
// call does; its failure is the CUresult with KILN_CTX_FAILED added), then
// calls ncclAllReduce with ncclSum on stream. send and recv are device
// addresses (CUdeviceptr), as NCCL takes them in a unified address space.
int kiln_nccl_all_reduce_sum(void *ctx, unsigned long long send, unsigned long long recv, size_t count, int datatype,
                             void *comm, void *stream);

#endif
