//===- CudaRuntime.cpp - mgpu* entry points on the CUDA driver API --------===//
//
// The driver is loaded with dlopen, and only the handful of functions below
// are looked up, so this library builds and loads on machines without CUDA;
// calling into it there gives a clear error instead.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/MoeRuntime.h"

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

// The driver API's types, as the driver's ABI defines them.
using CUresult = int;
using CUdevice = int;
using CUcontext = void *;
using CUmodule = void *;
using CUfunction = void *;
using CUstream = void *;
using CUevent = void *;
using CUdeviceptr = uint64_t;

struct Driver {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGetCount)(int *);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetName)(char *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuGetErrorName)(CUresult, const char **);
  CUresult (*cuGetErrorString)(CUresult, const char **);
  CUresult (*cuModuleLoadData)(CUmodule *, const void *);
  CUresult (*cuModuleUnload)(CUmodule);
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, CUstream, void **, void **);
  CUresult (*cuStreamCreate)(CUstream *, unsigned);
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuStreamWaitEvent)(CUstream, CUevent, unsigned);
  CUresult (*cuMemAllocAsync)(CUdeviceptr *, size_t, CUstream);
  CUresult (*cuMemFreeAsync)(CUdeviceptr, CUstream);
  CUresult (*cuMemcpyAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
  CUresult (*cuMemsetD32Async)(CUdeviceptr, unsigned, size_t, CUstream);
  CUresult (*cuMemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
  CUresult (*cuMemsetD16Async)(CUdeviceptr, unsigned short, size_t, CUstream);
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
  CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
  CUresult (*cuEventCreate)(CUevent *, unsigned);
  CUresult (*cuEventDestroy)(CUevent);
  CUresult (*cuEventRecord)(CUevent, CUstream);
  CUresult (*cuEventSynchronize)(CUevent);
  CUresult (*cuEventElapsedTime)(float *, CUevent, CUevent);
  CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
  // CUDA 12+ only (TMA, sm_90): looked up when a kernel first needs it.
  CUresult (*cuTensorMapEncodeTiled)(void *, int, uint32_t, void *, const uint64_t *, const uint64_t *,
                                     const uint32_t *, const uint32_t *, int, int, int, int);
};

struct Runtime {
  std::mutex mutex;
  bool tried = false;
  bool ready = false;
  std::string error;
  std::string deviceName;
  Driver driver{};
  void *library = nullptr;
  CUstream stream = nullptr;
  /// Device copies of the TMA descriptors made so far, by content: a
  /// descriptor a queued kernel may still read is never overwritten.
  std::map<std::array<uint64_t, 16>, CUdeviceptr> tensorMaps;
  /// The kernel profile (moeRuntimeProfileKernels): each launch's events.
  struct Launch {
    CUfunction function;
    unsigned grid[3], block;
    int sharedBytes;
    CUevent start, stop;
  };
  bool profiling = false;
  std::vector<Launch> launches;
  std::vector<CUevent> spareEvents;
};

Runtime &runtime() {
  // Never destroyed: artifacts unload their modules from their own
  // destructors at exit, which may run after this library's statics die.
  static Runtime *instance = new Runtime;
  return *instance;
}

void setError(const std::string &message) {
  Runtime &rt = runtime();
  if (rt.error.empty()) {
    rt.error = message;
    std::fprintf(stderr, "moe runtime: %s\n", message.c_str());
  }
}

/// Checks a driver call; on failure keeps the first error. True if it succeeded.
bool check(CUresult result, const char *what) {
  if (result == 0)
    return true;
  Driver &d = runtime().driver;
  const char *name = "unknown", *text = "";
  if (d.cuGetErrorName)
    d.cuGetErrorName(result, &name);
  if (d.cuGetErrorString)
    d.cuGetErrorString(result, &text);
  setError(std::string(what) + " failed: " + name + " (" + text + ")");
  return false;
}

template <typename Fn> bool lookup(void *library, Fn &fn, const char *name, const char *fallback = nullptr) {
  void *symbol = dlsym(library, name);
  if (!symbol && fallback)
    symbol = dlsym(library, fallback);
  fn = reinterpret_cast<Fn>(symbol);
  if (!symbol)
    setError(std::string("the CUDA driver has no ") + name);
  return symbol != nullptr;
}

bool loadDriver(Driver &d) {
  void *library = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    setError("no CUDA driver: libcuda.so.1 cannot be loaded (this machine has no NVIDIA GPU or "
             "driver); GPU artifacts need one");
    return false;
  }
  bool ok = true;
  ok &= lookup(library, d.cuGetErrorName, "cuGetErrorName");
  ok &= lookup(library, d.cuGetErrorString, "cuGetErrorString");
  ok &= lookup(library, d.cuInit, "cuInit");
  ok &= lookup(library, d.cuDeviceGetCount, "cuDeviceGetCount");
  ok &= lookup(library, d.cuDeviceGet, "cuDeviceGet");
  ok &= lookup(library, d.cuDeviceGetName, "cuDeviceGetName");
  ok &= lookup(library, d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  ok &= lookup(library, d.cuCtxSetCurrent, "cuCtxSetCurrent");
  ok &= lookup(library, d.cuModuleLoadData, "cuModuleLoadData");
  ok &= lookup(library, d.cuModuleUnload, "cuModuleUnload");
  ok &= lookup(library, d.cuModuleGetFunction, "cuModuleGetFunction");
  ok &= lookup(library, d.cuLaunchKernel, "cuLaunchKernel");
  ok &= lookup(library, d.cuStreamCreate, "cuStreamCreate");
  ok &= lookup(library, d.cuStreamSynchronize, "cuStreamSynchronize");
  ok &= lookup(library, d.cuStreamWaitEvent, "cuStreamWaitEvent");
  ok &= lookup(library, d.cuMemAllocAsync, "cuMemAllocAsync");
  ok &= lookup(library, d.cuMemFreeAsync, "cuMemFreeAsync");
  ok &= lookup(library, d.cuMemcpyAsync, "cuMemcpyAsync");
  ok &= lookup(library, d.cuMemsetD32Async, "cuMemsetD32Async");
  ok &= lookup(library, d.cuMemsetD8Async, "cuMemsetD8Async");
  ok &= lookup(library, d.cuMemsetD16Async, "cuMemsetD16Async");
  ok &= lookup(library, d.cuMemcpyHtoD, "cuMemcpyHtoD_v2", "cuMemcpyHtoD");
  ok &= lookup(library, d.cuMemcpyDtoH, "cuMemcpyDtoH_v2", "cuMemcpyDtoH");
  ok &= lookup(library, d.cuEventCreate, "cuEventCreate");
  ok &= lookup(library, d.cuEventDestroy, "cuEventDestroy_v2", "cuEventDestroy");
  ok &= lookup(library, d.cuEventRecord, "cuEventRecord");
  ok &= lookup(library, d.cuEventSynchronize, "cuEventSynchronize");
  ok &= lookup(library, d.cuEventElapsedTime, "cuEventElapsedTime");
  ok &= lookup(library, d.cuFuncSetAttribute, "cuFuncSetAttribute");
  ok &= lookup(library, d.cuMemAlloc, "cuMemAlloc_v2", "cuMemAlloc");
  runtime().library = library;
  return ok;
}

/// Which of `count` GPUs this process uses: MOE_GPU_DEVICE when set, else
/// under a launcher (mpirun, srun, torchrun) the process's rank on its node,
/// so that the ranks of an expert-parallel program get a GPU each.
int deviceOrdinal(int count) {
  for (const char *name : {"MOE_GPU_DEVICE", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID",
                           "LOCAL_RANK"})
    if (const char *value = std::getenv(name))
      return std::max(std::atoi(value), 0) % count;
  return 0;
}

/// Initialises once; true when the GPU can be used.
bool ensureReady() {
  Runtime &rt = runtime();
  std::lock_guard<std::mutex> lock(rt.mutex);
  if (rt.tried)
    return rt.ready;
  rt.tried = true;
  Driver &d = rt.driver;
  if (!loadDriver(d) || !check(d.cuInit(0), "cuInit"))
    return false;
  int count = 0;
  if (!check(d.cuDeviceGetCount(&count), "cuDeviceGetCount"))
    return false;
  if (count == 0) {
    setError("the CUDA driver sees no GPU");
    return false;
  }
  CUdevice device;
  CUcontext context;
  char name[256] = {0};
  if (!check(d.cuDeviceGet(&device, deviceOrdinal(count)), "cuDeviceGet") ||
      !check(d.cuDeviceGetName(name, sizeof(name) - 1, device), "cuDeviceGetName") ||
      !check(d.cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain") ||
      !check(d.cuCtxSetCurrent(context), "cuCtxSetCurrent") ||
      !check(d.cuStreamCreate(&rt.stream, /*CU_STREAM_NON_BLOCKING=*/1), "cuStreamCreate"))
    return false;
  rt.deviceName = name;
  rt.ready = true;
  return true;
}

/// True when the GPU is ready and no error happened: later calls would only
/// build on a failure.
bool usable() { return ensureReady() && runtime().error.empty(); }

Driver &drv() { return runtime().driver; }

/// The stream a host asked this thread's calls to run on
/// (moeRuntimeUseStream), else the runtime's own.
thread_local CUstream callerStream = nullptr;
CUstream currentStream() { return callerStream ? callerStream : runtime().stream; }

} // namespace

//===--- Host API ----------------------------------------------------------===//

extern "C" int moeRuntimeInit(void) { return usable() ? 0 : 1; }
extern "C" const char *moeRuntimeError(void) {
  return runtime().error.empty() ? nullptr : runtime().error.c_str();
}
extern "C" const char *moeRuntimeDeviceName(void) { return runtime().deviceName.c_str(); }
extern "C" void *moeRuntimeStream(void) { return usable() ? currentStream() : nullptr; }
extern "C" void moeRuntimeUseStream(void *stream) { callerStream = static_cast<CUstream>(stream); }

extern "C" void *moeRuntimeAlloc(size_t bytes) {
  CUdeviceptr ptr = 0;
  if (!usable() || !check(drv().cuMemAllocAsync(&ptr, bytes ? bytes : 1, currentStream()),
                          "cuMemAllocAsync") ||
      !check(drv().cuStreamSynchronize(currentStream()), "cuStreamSynchronize"))
    return nullptr;
  return reinterpret_cast<void *>(ptr);
}
extern "C" void moeRuntimeFree(void *device) {
  if (usable() && device) {
    check(drv().cuMemFreeAsync(reinterpret_cast<CUdeviceptr>(device), currentStream()),
          "cuMemFreeAsync");
    check(drv().cuStreamSynchronize(currentStream()), "cuStreamSynchronize");
  }
}
extern "C" int moeRuntimeCopyToDevice(void *device, const void *host, size_t bytes) {
  return usable() && check(drv().cuMemcpyHtoD(reinterpret_cast<CUdeviceptr>(device), host, bytes),
                           "cuMemcpyHtoD")
             ? 0
             : 1;
}
extern "C" int moeRuntimeCopyToHost(void *host, const void *device, size_t bytes) {
  return usable() && check(drv().cuMemcpyDtoH(host, reinterpret_cast<CUdeviceptr>(device), bytes),
                           "cuMemcpyDtoH")
             ? 0
             : 1;
}
extern "C" int moeRuntimeFill8(void *device, unsigned char pattern, size_t count) {
  return usable() && check(drv().cuMemsetD8Async(reinterpret_cast<CUdeviceptr>(device), pattern,
                                                 count, currentStream()),
                           "cuMemsetD8Async") &&
                 check(drv().cuStreamSynchronize(currentStream()), "cuStreamSynchronize")
             ? 0
             : 1;
}
extern "C" int moeRuntimeFill16(void *device, unsigned short pattern, size_t count) {
  return usable() && check(drv().cuMemsetD16Async(reinterpret_cast<CUdeviceptr>(device), pattern,
                                                  count, currentStream()),
                           "cuMemsetD16Async") &&
                 check(drv().cuStreamSynchronize(currentStream()), "cuStreamSynchronize")
             ? 0
             : 1;
}
extern "C" int moeRuntimeFill32(void *device, unsigned pattern, size_t count) {
  return usable() && check(drv().cuMemsetD32Async(reinterpret_cast<CUdeviceptr>(device), pattern,
                                                  count, currentStream()),
                           "cuMemsetD32Async") &&
                 check(drv().cuStreamSynchronize(currentStream()), "cuStreamSynchronize")
             ? 0
             : 1;
}
extern "C" int moeRuntimeTime(void (*fn)(void *), void *context, float *milliseconds) {
  if (!usable())
    return 1;
  CUevent start = nullptr, stop = nullptr;
  bool ok = check(drv().cuEventCreate(&start, 0), "cuEventCreate") &&
            check(drv().cuEventCreate(&stop, 0), "cuEventCreate") &&
            check(drv().cuEventRecord(start, currentStream()), "cuEventRecord");
  if (ok) {
    fn(context);
    ok = runtime().error.empty() && check(drv().cuEventRecord(stop, currentStream()), "cuEventRecord") &&
         check(drv().cuEventSynchronize(stop), "cuEventSynchronize") &&
         check(drv().cuEventElapsedTime(milliseconds, start, stop), "cuEventElapsedTime");
  }
  if (start)
    drv().cuEventDestroy(start);
  if (stop)
    drv().cuEventDestroy(stop);
  return ok ? 0 : 1;
}

//===--- Kernel profile -------------------------------------------------------===//

namespace {
/// A timing event, reused across reports (creating one per launch would
/// cost more than many small kernels).
CUevent profileEvent() {
  Runtime &rt = runtime();
  if (!rt.spareEvents.empty()) {
    CUevent event = rt.spareEvents.back();
    rt.spareEvents.pop_back();
    return event;
  }
  CUevent event = nullptr;
  check(drv().cuEventCreate(&event, 0), "cuEventCreate (kernel profile)");
  return event;
}
} // namespace

extern "C" void moeRuntimeProfileKernels(int on) { runtime().profiling = on != 0 && usable(); }

extern "C" int moeRuntimeProfileReport(int calls) {
  Runtime &rt = runtime();
  if (!usable() || calls < 1)
    return 1;
  struct Kernel {
    const Runtime::Launch *first;
    int launches = 0;
    double ms = 0;
  };
  std::vector<Kernel> kernels;
  std::map<CUfunction, size_t> index;
  bool ok = true;
  for (const Runtime::Launch &launch : rt.launches) {
    float ms = 0;
    ok = ok && check(drv().cuEventSynchronize(launch.stop), "cuEventSynchronize (kernel profile)") &&
         check(drv().cuEventElapsedTime(&ms, launch.start, launch.stop), "cuEventElapsedTime (kernel profile)");
    auto [at, added] = index.try_emplace(launch.function, kernels.size());
    if (added)
      kernels.push_back({&launch});
    kernels[at->second].launches += 1;
    kernels[at->second].ms += ms;
  }
  if (ok) {
    double total = 0;
    for (const Kernel &k : kernels)
      total += k.ms;
    std::printf("kernel profile: %zu kernels, per call of %d (mean us, launch order; grid x.y.z, threads, "
                "dynamic shared bytes):\n",
                kernels.size(), calls);
    for (size_t i = 0; i < kernels.size(); ++i) {
      const Kernel &k = kernels[i];
      const Runtime::Launch &l = *k.first;
      std::printf("  #%-3zu %9.1f us %5.1f%%  %gx  grid %u.%u.%u  threads %u  smem %d\n", i,
                  1e3 * k.ms / calls, total > 0 ? 100 * k.ms / total : 0.0, double(k.launches) / calls,
                  l.grid[0], l.grid[1], l.grid[2], l.block, l.sharedBytes);
    }
    std::printf("  sum %.1f us per call\n", 1e3 * total / calls);
  }
  for (const Runtime::Launch &launch : rt.launches)
    rt.spareEvents.insert(rt.spareEvents.end(), {launch.start, launch.stop});
  rt.launches.clear();
  return ok ? 0 : 1;
}

//===--- What MLIR's gpu-to-llvm lowering calls -----------------------------===//

extern "C" void *mgpuModuleLoad(void *data, size_t /*size*/) {
  CUmodule module = nullptr;
  if (usable())
    check(drv().cuModuleLoadData(&module, data), "cuModuleLoadData (loading a kernel module)");
  return module;
}
// PTX (format=isa): the driver compiles it when loading.
extern "C" void *mgpuModuleLoadJIT(void *data, int /*optLevel*/) { return mgpuModuleLoad(data, 0); }
extern "C" void mgpuModuleUnload(void *module) {
  // At exit the driver may already be gone; unloading is best effort.
  if (module && runtime().ready)
    drv().cuModuleUnload(module);
}
extern "C" void *mgpuModuleGetFunction(void *module, const char *name) {
  CUfunction function = nullptr;
  if (usable() && module)
    check(drv().cuModuleGetFunction(&function, module, name),
          (std::string("cuModuleGetFunction(") + name + ")").c_str());
  return function;
}
extern "C" void mgpuLaunchKernel(void *function, intptr_t gridX, intptr_t gridY, intptr_t gridZ,
                                 intptr_t blockX, intptr_t blockY, intptr_t blockZ, int32_t smem,
                                 void *stream, void **params, void ** /*extra*/, size_t /*count*/) {
  if (!usable())
    return;
  if (!function) {
    setError("a kernel launch found no kernel (its module did not load)");
    return;
  }
  // Above 48 KiB a kernel must opt in to its dynamic shared memory.
  constexpr int kDefaultSharedLimit = 48 * 1024, kMaxDynamicSharedSizeBytes = 8;
  if (smem > kDefaultSharedLimit &&
      !check(drv().cuFuncSetAttribute(function, kMaxDynamicSharedSizeBytes, smem),
             "cuFuncSetAttribute (dynamic shared memory above 48 KiB)"))
    return;
  CUstream on = stream ? stream : currentStream();
  Runtime::Launch timed{function, {unsigned(gridX), unsigned(gridY), unsigned(gridZ)},
                        unsigned(blockX * blockY * blockZ), smem, nullptr, nullptr};
  bool profile = runtime().profiling && (timed.start = profileEvent()) && (timed.stop = profileEvent()) &&
                 check(drv().cuEventRecord(timed.start, on), "cuEventRecord (kernel profile)");
  if (!check(drv().cuLaunchKernel(function, gridX, gridY, gridZ, blockX, blockY, blockZ, smem, on, params, nullptr),
             "cuLaunchKernel") ||
      !profile || !check(drv().cuEventRecord(timed.stop, on), "cuEventRecord (kernel profile)"))
    return;
  runtime().launches.push_back(timed);
}
// One stream for every artifact call, so that a host can time calls with
// events on moeRuntimeStream(); "destroying" it only synchronizes.
extern "C" void *mgpuStreamCreate() { return moeRuntimeStream(); }
extern "C" void mgpuStreamDestroy(void *stream) {
  if (usable() && stream)
    check(drv().cuStreamSynchronize(stream), "cuStreamSynchronize");
}
extern "C" void mgpuStreamSynchronize(void *stream) {
  if (usable() && stream)
    check(drv().cuStreamSynchronize(stream), "cuStreamSynchronize (a kernel failed?)");
}
extern "C" void mgpuStreamWaitEvent(void *stream, void *event) {
  if (usable())
    check(drv().cuStreamWaitEvent(stream, event, 0), "cuStreamWaitEvent");
}
extern "C" void *mgpuEventCreate() {
  CUevent event = nullptr;
  if (usable())
    check(drv().cuEventCreate(&event, /*CU_EVENT_DISABLE_TIMING=*/2), "cuEventCreate");
  return event;
}
extern "C" void mgpuEventDestroy(void *event) {
  if (usable() && event)
    check(drv().cuEventDestroy(event), "cuEventDestroy");
}
extern "C" void mgpuEventSynchronize(void *event) {
  if (usable() && event)
    check(drv().cuEventSynchronize(event), "cuEventSynchronize");
}
extern "C" void mgpuEventRecord(void *event, void *stream) {
  if (usable() && event)
    check(drv().cuEventRecord(event, stream), "cuEventRecord");
}
// Stream-ordered allocation: scratch buffers come from the driver's pool, so
// a layer call does not pay cuMemAlloc each time.
extern "C" void *mgpuMemAlloc(uint64_t bytes, void *stream, bool /*isHostShared*/) {
  CUdeviceptr ptr = 0;
  if (usable())
    check(drv().cuMemAllocAsync(&ptr, bytes ? bytes : 1, stream ? stream : currentStream()),
          "cuMemAllocAsync");
  return reinterpret_cast<void *>(ptr);
}
extern "C" void mgpuMemFree(void *ptr, void *stream) {
  if (usable() && ptr)
    check(drv().cuMemFreeAsync(reinterpret_cast<CUdeviceptr>(ptr), stream ? stream : currentStream()),
          "cuMemFreeAsync");
}
extern "C" void mgpuMemcpy(void *dst, void *src, size_t bytes, void *stream) {
  if (usable())
    check(drv().cuMemcpyAsync(reinterpret_cast<CUdeviceptr>(dst), reinterpret_cast<CUdeviceptr>(src),
                              bytes, stream ? stream : currentStream()),
          "cuMemcpyAsync");
}
extern "C" void mgpuMemset32(void *dst, unsigned value, size_t count, void *stream) {
  if (usable())
    check(drv().cuMemsetD32Async(reinterpret_cast<CUdeviceptr>(dst), value, count,
                                 stream ? stream : currentStream()),
          "cuMemsetD32Async");
}
extern "C" void mgpuMemset16(void *dst, unsigned short value, size_t count, void *stream) {
  if (usable())
    check(drv().cuMemsetD16Async(reinterpret_cast<CUdeviceptr>(dst), value, count,
                                 stream ? stream : currentStream()),
          "cuMemsetD16Async");
}
extern "C" void mgpuSetDefaultDevice(int32_t device) {
  if (device != 0)
    setError("only device 0 is supported");
}

//===--- TMA descriptors (the sm_90a tensor-core kernels) -------------------===//

namespace {
/// A TMA descriptor for the ranked memref `descriptor` (MLIR's layout:
/// allocated, aligned, offset, sizes[rank], strides[rank]) of 2-byte
/// elements: boxes of boxRows x boxCols over the last two dimensions (1 in
/// the others), 128-byte swizzle, zeros outside. Returns its device copy,
/// or null (with the runtime's error set) when TMA cannot address it.
void *createTensorMap(int64_t rank, void *descriptor, int64_t boxRows, int64_t boxCols, int dataType) {
  if (!usable())
    return nullptr;
  Runtime &rt = runtime();
  Driver &d = rt.driver;
  if (!d.cuTensorMapEncodeTiled &&
      !lookup(rt.library, d.cuTensorMapEncodeTiled, "cuTensorMapEncodeTiled"))
    return nullptr; // lookup set the error: the driver predates CUDA 12
  constexpr int64_t kElementBytes = 2;
  auto *fields = static_cast<int64_t *>(descriptor);
  char *aligned = reinterpret_cast<char **>(descriptor)[1];
  const int64_t *sizes = fields + 3, *strides = fields + 3 + rank;
  if (rank < 2 || rank > 5 || strides[rank - 1] != 1) {
    setError("a TMA operand must have 2 to 5 dimensions with contiguous rows");
    return nullptr;
  }
  uint64_t dims[5], byteStrides[4];
  uint32_t box[5], elementStrides[5] = {1, 1, 1, 1, 1};
  for (int64_t i = 0; i < rank; ++i) {
    // Nothing to load from an empty operand: its kernel issues no loads.
    if (sizes[rank - 1 - i] == 0)
      return nullptr;
    dims[i] = static_cast<uint64_t>(sizes[rank - 1 - i]);
    box[i] = i == 0 ? uint32_t(boxCols) : i == 1 ? uint32_t(boxRows) : 1;
    if (i + 1 < rank)
      byteStrides[i] = static_cast<uint64_t>(strides[rank - 2 - i] * kElementBytes);
  }
  void *address = aligned + fields[2] * kElementBytes;
  if (reinterpret_cast<uintptr_t>(address) % 16 != 0) {
    setError("a TMA operand's address is not 16-byte aligned");
    return nullptr;
  }
  alignas(64) std::array<uint64_t, 16> map{};
  constexpr int kInterleaveNone = 0, kSwizzle128B = 3, kL2Promotion128B = 2, kOobFillZero = 0;
  if (!check(d.cuTensorMapEncodeTiled(map.data(), dataType, uint32_t(rank), address, dims, byteStrides, box,
                                      elementStrides, kInterleaveNone, kSwizzle128B, kL2Promotion128B,
                                      kOobFillZero),
             "cuTensorMapEncodeTiled"))
    return nullptr;
  std::lock_guard<std::mutex> lock(rt.mutex);
  auto found = rt.tensorMaps.find(map);
  if (found != rt.tensorMaps.end())
    return reinterpret_cast<void *>(found->second);
  CUdeviceptr device = 0;
  if (!check(d.cuMemAlloc(&device, sizeof(map)), "cuMemAlloc (a TMA descriptor)") ||
      !check(d.cuMemcpyHtoD(device, map.data(), sizeof(map)), "cuMemcpyHtoD (a TMA descriptor)"))
    return nullptr;
  rt.tensorMaps.emplace(map, device);
  return reinterpret_cast<void *>(device);
}
} // namespace

extern "C" void *moeTensorMapCreateBF16(int64_t rank, void *descriptor, int64_t boxRows, int64_t boxCols) {
  constexpr int kBFloat16 = 9; // CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
  return createTensorMap(rank, descriptor, boxRows, boxCols, kBFloat16);
}
extern "C" void *moeTensorMapCreateF16(int64_t rank, void *descriptor, int64_t boxRows, int64_t boxCols) {
  constexpr int kFloat16 = 6; // CU_TENSOR_MAP_DATA_TYPE_FLOAT16
  return createTensorMap(rank, descriptor, boxRows, boxCols, kFloat16);
}
