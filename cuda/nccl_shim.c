//go:build cgo

// nccl_shim.c: kiln's C side of the NCCL binding. It dlopens libnccl.so.2
// (or the file Go passes), binds each entry point by name, and makes the
// caller's CUDA context current around the calls that enqueue work. See
// nccl_shim.h.

#include "nccl_shim.h"
#include "shim.h"

#include <dlfcn.h>
#include <stdio.h>

typedef int ncclResult_t;
typedef void *ncclComm_t;

// ncclRedOp_t's ncclSum.
#define KILN_NCCL_SUM 0

// The bound entry points, each named after the symbol it holds.
static ncclResult_t (*p_ncclGetVersion)(int *);
static const char *(*p_ncclGetErrorString)(ncclResult_t);
static ncclResult_t (*p_ncclCommInitAll)(ncclComm_t *, int, const int *);
static ncclResult_t (*p_ncclCommDestroy)(ncclComm_t);
static ncclResult_t (*p_ncclGroupStart)(void);
static ncclResult_t (*p_ncclGroupEnd)(void);
static ncclResult_t (*p_ncclAllReduce)(const void *, void *, size_t, int, int, ncclComm_t, void *);

struct nccl_binding {
	const char *name;
	void **slot;
};

#define NCCL_BIND(sym) {#sym, (void **)&p_##sym}

static const struct nccl_binding nccl_required[] = {
	NCCL_BIND(ncclGetVersion),   NCCL_BIND(ncclGetErrorString), NCCL_BIND(ncclCommInitAll),
	NCCL_BIND(ncclCommDestroy),  NCCL_BIND(ncclGroupStart),     NCCL_BIND(ncclGroupEnd),
	NCCL_BIND(ncclAllReduce),
};

int kiln_nccl_load(const char *path, char *msg, size_t msg_size) {
	msg[0] = 0;
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		snprintf(msg, msg_size, "%s", e != NULL ? e : "dlopen failed");
		return KILN_NCCL_LOAD_DLOPEN_FAILED;
	}
	// Bind into locals first, so that a library missing a symbol leaves no
	// half-bound state behind.
	void *syms[sizeof nccl_required / sizeof nccl_required[0]];
	for (size_t i = 0; i < sizeof nccl_required / sizeof nccl_required[0]; i++) {
		syms[i] = dlsym(h, nccl_required[i].name);
		if (syms[i] == NULL) {
			snprintf(msg, msg_size, "%s", nccl_required[i].name);
			dlclose(h);
			return KILN_NCCL_LOAD_MISSING_SYMBOL;
		}
	}
	for (size_t i = 0; i < sizeof nccl_required / sizeof nccl_required[0]; i++) {
		*nccl_required[i].slot = syms[i];
	}
	return KILN_NCCL_LOAD_OK;
}

const char *kiln_nccl_error_string(int result) {
	if (p_ncclGetErrorString == NULL) {
		return NULL;
	}
	return p_ncclGetErrorString(result);
}

int kiln_nccl_get_version(int *version) { return p_ncclGetVersion(version); }
int kiln_nccl_comm_init_all(void **comms, int ndev, const int *devices) {
	return p_ncclCommInitAll(comms, ndev, devices);
}
int kiln_nccl_comm_destroy(void *comm) { return p_ncclCommDestroy(comm); }
int kiln_nccl_group_start(void) { return p_ncclGroupStart(); }
int kiln_nccl_group_end(void) { return p_ncclGroupEnd(); }

int kiln_nccl_all_reduce_sum(void *ctx, unsigned long long send, unsigned long long recv, size_t count, int datatype,
                             void *comm, void *stream) {
	int r = kiln_use_ctx(ctx);
	if (r != 0) {
		return r;
	}
	return p_ncclAllReduce((const void *)(size_t)send, (void *)(size_t)recv, count, datatype, KILN_NCCL_SUM, comm, stream);
}
