// Package fakecuda builds and inspects a fake CUDA driver library for tests.
// It is for tests only (it imports package testing), and lives outside
// cuda/internal so that the tests of other packages (the GPU backend) can
// use it too.
//
// The library (C source in csrc/fakecuda.c, embedded) exports the driver
// entry points package cuda binds and simulates GPUs well enough for the GPU
// backend's non-kernel code paths: device queries, device memory, copies,
// memsets, streams, events, graph capture, pinned memory, module loading and
// launches. It runs no kernels. A test builds it with Build and points the
// cuda package at it with KILN_CUDA_LIBRARY before cuda.Load runs (cuda loads
// its library once per process, so set the variable in TestMain, or run a
// subprocess):
//
//	func TestMain(m *testing.M) {
//		path, err := fakecuda.BuildPath()
//		if err == nil {
//			os.Setenv("KILN_CUDA_LIBRARY", path)
//		} // else: no C compiler; the tests that need the fake skip
//		os.Exit(m.Run())
//	}
//
// # What it simulates
//
//   - cuInit fails with CUDA_ERROR_NO_DEVICE when FAKECUDA_DEVICES is 0; every
//     other call except cuDriverGetVersion and cuGetError* needs cuInit first
//     (CUDA_ERROR_NOT_INITIALIZED).
//   - Devices: name, UUID (GPU-fa4ec0da-0001-4202-8303-0a0b0c0d0e0N for
//     ordinal N), PCI bus id ("0000:3B:00.0" for ordinal 0, bus 0x3B+N, in
//     upper case as the driver writes it), an H100-like attribute table
//     (132 SMs, 48 KiB shared memory per block, 227 KiB opt-in, ...), compute
//     capability from FAKECUDA_CC, total memory from FAKECUDA_TOTAL_MEM.
//     Unknown attributes in 1..150 read 0; others are CUDA_ERROR_INVALID_VALUE.
//   - Primary contexts with reference counts; the current context is per OS
//     thread (cuCtxSetCurrent, cuCtxGetCurrent), and calls that need one fail
//     with CUDA_ERROR_INVALID_CONTEXT without it, so a caller that forgets
//     cuCtxSetCurrent is caught; calls run in whichever context is current, so
//     one that trusts a stale idea of it works in the wrong device. Releasing
//     the last reference frees the device's memory and kills its handles.
//   - Device memory is malloc'd and counted against FAKECUDA_TOTAL_MEM per
//     device: an allocation beyond it is CUDA_ERROR_OUT_OF_MEMORY. Copies and
//     memsets check that device ranges lie inside one live allocation
//     (CUDA_ERROR_INVALID_VALUE otherwise) and really move bytes.
//   - Streams and events complete at once; cuEventElapsedTime answers 0 ms
//     (CUDA_ERROR_INVALID_HANDLE for events made without timing or never
//     recorded). Stale or destroyed handles are CUDA_ERROR_INVALID_HANDLE.
//   - Stream capture: async copies, memsets and launches issued to a
//     capturing stream are counted as graph nodes and not executed; the
//     legacy stream cannot be captured (CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED).
//     Synchronous allocation, free, copy or memset while a stream of the
//     context captures in global mode fails with
//     CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and invalidates that capture
//     (cuStreamEndCapture then fails with CUDA_ERROR_STREAM_CAPTURE_INVALIDATED).
//     A capture begun in global or thread-local mode must end on the OS thread
//     that began it (CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD otherwise, and the
//     capture goes on), as in the driver; a relaxed one may end anywhere.
//     Launching an instantiated graph adds its launch nodes to the launch count.
//   - Tensor maps: cuTensorMapEncodeTiled checks its arguments as the
//     driver does (64-byte aligned map, rank 1..5, 16-byte aligned address,
//     strides multiples of 16 below 2^40, box 1..256 with an inner extent of
//     a multiple of 16 bytes within the swizzle span, element strides 1..8)
//     and writes the stand-in layout cuda.FakeTensorMap documents ("KTMP"
//     and the fields) instead of the opaque encoding.
//   - Modules: cuModuleLoadDataEx needs PTX text with a ".version X.Y"
//     directive (else CUDA_ERROR_INVALID_IMAGE), finds kernels by their
//     ".entry NAME" directives, writes a line into the JIT info log, and
//     refuses PTX whose ".target" line contains one of FAKECUDA_REJECT_TARGET's
//     strings with CUDA_ERROR_INVALID_PTX and a ptxas-style message in the
//     JIT error log. cuModuleGetFunction finds kernels by name
//     (CUDA_ERROR_NOT_FOUND otherwise). Each kernel's parameter list is read
//     from its .entry declaration (".param [.align A] .TYPE NAME[[N]]", each
//     placed at the next multiple of its alignment) and reported by
//     cuFuncGetParamInfo.
//   - cuLaunchKernel checks the function, stream, dimensions (none zero, at
//     most 1024 threads per block), shared memory (48 KiB, or the function's
//     CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) and the `extra` array,
//     whose buffer size must be exactly the end of the kernel's last
//     parameter, as the real driver requires: larger (a struct's tail
//     padding counted) is CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, smaller (or no
//     parameters for a kernel that has some) CUDA_ERROR_INVALID_VALUE. It
//     then only counts the launch and records it (Lib.LastLaunch).
//
// # Environment
//
// Read on every call, so a test may change them between calls (t.Setenv);
// not while other goroutines call the driver.
//
//	FAKECUDA_FAIL           comma-separated NAME=CODE or NAME=CODE@N: entry point
//	                        NAME (the exported symbol, e.g. cuMemAlloc_v2) returns
//	                        CUresult CODE; with @N, only after N calls succeeded
//	                        (counted from when the variable last changed).
//	                        Example: "cuInit=999,cuLaunchKernel=719@2".
//	FAKECUDA_DEVICES        number of devices, 0..8 (default 1; 0: cuInit fails
//	                        with CUDA_ERROR_NO_DEVICE).
//	FAKECUDA_DRIVER_VERSION cuDriverGetVersion's answer (default 12040).
//	FAKECUDA_CC             compute capability as 10*major+minor (default 90).
//	FAKECUDA_TOTAL_MEM      device memory per device in bytes (default 8 GiB).
//	FAKECUDA_NAME           device name (default "kiln fake GPU").
//	FAKECUDA_ATTRS          device attribute overrides, "ATTR=VALUE,..." with
//	                        CUdevice_attribute numbers, e.g. "16=108".
//	FAKECUDA_PEER           0: devices cannot access each other (default 1).
//	FAKECUDA_REJECT_TARGET  comma-separated strings; PTX whose .target line
//	                        contains one is refused, e.g. "sm_90a".
//
// # Variants
//
// BuildVariant compiles the library with C preprocessor macros:
// FAKECUDA_NO_UUID_V2 leaves out cuDeviceGetUuid_v2, as in drivers before
// CUDA 11.4, so that the fallback to cuDeviceGetUuid is exercised;
// FAKECUDA_NO_PARAM_INFO leaves out cuFuncGetParamInfo, as in drivers before
// CUDA 12.4 (launches are still checked by the fake itself).
//
// # Queries
//
// Open (cgo builds only) finds the fake library already loaded in this
// process and reads its counters: launches, graph launches, calls per entry
// point, the last launch's kernel, dimensions and parameter bytes, and live
// allocations; Lib.SetCurrentContext changes the calling thread's current
// context behind the cuda package's back, as another library may.
package fakecuda
