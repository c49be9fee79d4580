/*===- MoeRuntime.h - the run-time library of moe artifacts -------*- C -*-===//
 *
 * libmoe_runtime.so is the only run-time dependency of an artifact built by
 * moe-compile. It implements:
 *  - the mgpu* entry points that MLIR's gpu-to-llvm lowering calls (module
 *    load, launch, stream, allocation, copies), on the CUDA driver API
 *    loaded with dlopen("libcuda.so.1"): no CUDA toolkit, LLVM or MLIR is
 *    needed where an artifact runs;
 *  - memrefCopy, which CPU code lowered by MLIR calls;
 *  - the functions below, for hosts such as moe-exec.
 *
 * Errors: the mgpu* functions cannot return one, so the first error is kept
 * and every later GPU call does nothing; moeRuntimeError() reports it.
 *===----------------------------------------------------------------------===*/

#ifndef MOE_RUNTIME_MOERUNTIME_H
#define MOE_RUNTIME_MOERUNTIME_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Loads the driver and makes device 0's primary context current. 0 on
   success; otherwise moeRuntimeError() says why (no driver, no device). */
int moeRuntimeInit(void);
/* The first error seen, or NULL. */
const char *moeRuntimeError(void);
/* The device's name (after a successful init). */
const char *moeRuntimeDeviceName(void);
/* The stream every artifact launches on. */
void *moeRuntimeStream(void);
/* Runs this thread's later GPU work on `stream` (a CUstream of the primary
   context of device 0, e.g. a framework's current stream) instead of the
   runtime's own; NULL goes back to the runtime's. */
void moeRuntimeUseStream(void *stream);

/* Device memory; 0 / NULL on error. */
void *moeRuntimeAlloc(size_t bytes);
void moeRuntimeFree(void *device);
int moeRuntimeCopyToDevice(void *device, const void *host, size_t bytes);
int moeRuntimeCopyToHost(void *host, const void *device, size_t bytes);

/* Fills `count` 1-, 2- or 4-byte elements of device memory with `pattern`. */
int moeRuntimeFill8(void *device, unsigned char pattern, size_t count);
int moeRuntimeFill16(void *device, unsigned short pattern, size_t count);
int moeRuntimeFill32(void *device, unsigned pattern, size_t count);

/* Runs fn(context) between two events on the runtime's stream and gives
   the elapsed milliseconds. 0 on success. */
int moeRuntimeTime(void (*fn)(void *), void *context, float *milliseconds);

/* Kernel profile: while on, every kernel launch is timed by a pair of
   events around it on its stream (the launches stay asynchronous). */
void moeRuntimeProfileKernels(int on);
/* Prints to stdout, per kernel in the order of its first launch, the
   launches, grid, block, dynamic shared memory and mean time per call of
   the profiled code, `calls` being how many calls were profiled, then the
   sum per call; forgets what it printed. 0 on success. */
int moeRuntimeProfileReport(int calls);

#ifdef __cplusplus
}
#endif

#endif /* MOE_RUNTIME_MOERUNTIME_H */
