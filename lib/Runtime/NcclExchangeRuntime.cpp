//===- NcclExchangeRuntime.cpp - NCCL exchanges of device buffers ---------===//
//
// The moeEpGpu* entry points of libmoe_ep_runtime.so: GPU programs
// (moe-compile --target=gpu --ranks) call them from the host between their
// kernels, with device buffers. Token rows move over NCCL, one grouped
// ncclSend/ncclRecv per (peer, expert) block straight into place, on the
// program's stream: rows never leave the device. Only what sizes the buffers
// crosses to the host: the per-expert offsets and row counts, exchanged over
// MPI, which also starts the ranks and hands NCCL its unique id.
//
// libnccl.so.2 and the CUDA driver are opened at run time, as the CUDA
// runtime opens the driver, so that the library builds and loads on
// machines without either; a GPU exchange there ends the job with a message.
// One GPU per rank: the CUDA runtime picks each rank's device by its local
// rank (CudaRuntime.cpp).
//
//===----------------------------------------------------------------------===//

#include "ExpertParallelComm.h"
#include "moe/Runtime/MoeRuntime.h"

#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <cstring>

using namespace moe_ep;

namespace {

// The driver's and NCCL's ABI types and constants (cuda.h, nccl.h).
using CUresult = int;
using CUstream = void *;
using CUdeviceptr = uint64_t;
constexpr CUresult kCudaNotReady = 600;
constexpr int kPointerMemoryType = 2, kMemoryHost = 1, kMemoryDevice = 2;
struct Copy2D {
  size_t srcXInBytes, srcY;
  int srcMemoryType;
  const void *srcHost;
  CUdeviceptr srcDevice;
  void *srcArray;
  size_t srcPitch;
  size_t dstXInBytes, dstY;
  int dstMemoryType;
  void *dstHost;
  CUdeviceptr dstDevice;
  void *dstArray;
  size_t dstPitch;
  size_t widthInBytes, height;
};

using ncclResult_t = int;
using ncclComm_t = void *;
struct ncclUniqueId {
  char internal[128];
};
constexpr int kNcclUint8 = 1, kNcclSuccess = 0, kNcclInProgress = 7;

struct Libraries {
  CUresult (*cuStreamSynchronize)(CUstream);
  CUresult (*cuStreamQuery)(CUstream);
  CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
  CUresult (*cuMemcpy2DAsync)(const Copy2D *, CUstream);
  CUresult (*cuMemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
  CUresult (*cuPointerGetAttribute)(void *, int, CUdeviceptr);
  ncclResult_t (*ncclGetUniqueId)(ncclUniqueId *);
  ncclResult_t (*ncclCommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
  ncclResult_t (*ncclCommAbort)(ncclComm_t);
  ncclResult_t (*ncclCommGetAsyncError)(ncclComm_t, ncclResult_t *);
  const char *(*ncclGetErrorString)(ncclResult_t);
  ncclResult_t (*ncclGroupStart)();
  ncclResult_t (*ncclGroupEnd)();
  ncclResult_t (*ncclSend)(const void *, size_t, int, int, ncclComm_t, CUstream);
  ncclResult_t (*ncclRecv)(void *, size_t, int, int, ncclComm_t, CUstream);
  ncclResult_t (*ncclAllGather)(const void *, void *, size_t, int, ncclComm_t, CUstream);
};

template <typename Fn> void lookup(void *library, Fn &fn, const char *name, const char *from) {
  fn = reinterpret_cast<Fn>(dlsym(library, name));
  if (!fn)
    abortJob(std::string(from) + " has no " + name);
}

Libraries &libraries() {
  static Libraries *loaded = [] {
    auto *l = new Libraries{};
    void *cuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!cuda)
      abortJob("a GPU exchange needs the CUDA driver, and libcuda.so.1 cannot be loaded");
    const char *driver = "the CUDA driver";
    lookup(cuda, l->cuStreamSynchronize, "cuStreamSynchronize", driver);
    lookup(cuda, l->cuStreamQuery, "cuStreamQuery", driver);
    lookup(cuda, l->cuMemcpyDtoH, "cuMemcpyDtoH_v2", driver);
    lookup(cuda, l->cuMemcpyHtoD, "cuMemcpyHtoD_v2", driver);
    lookup(cuda, l->cuMemcpy2DAsync, "cuMemcpy2DAsync_v2", driver);
    lookup(cuda, l->cuMemsetD8Async, "cuMemsetD8Async", driver);
    lookup(cuda, l->cuPointerGetAttribute, "cuPointerGetAttribute", driver);
    void *nccl = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!nccl)
      abortJob("GPU expert-parallel artifacts exchange rows over NCCL, and libnccl.so.2 cannot be loaded "
               "(install NCCL or put its lib directory on LD_LIBRARY_PATH)");
    const char *from = "libnccl.so.2";
    lookup(nccl, l->ncclGetUniqueId, "ncclGetUniqueId", from);
    lookup(nccl, l->ncclCommInitRank, "ncclCommInitRank", from);
    lookup(nccl, l->ncclCommAbort, "ncclCommAbort", from);
    lookup(nccl, l->ncclCommGetAsyncError, "ncclCommGetAsyncError", from);
    lookup(nccl, l->ncclGetErrorString, "ncclGetErrorString", from);
    lookup(nccl, l->ncclGroupStart, "ncclGroupStart", from);
    lookup(nccl, l->ncclGroupEnd, "ncclGroupEnd", from);
    lookup(nccl, l->ncclSend, "ncclSend", from);
    lookup(nccl, l->ncclRecv, "ncclRecv", from);
    lookup(nccl, l->ncclAllGather, "ncclAllGather", from);
    return l;
  }();
  return *loaded;
}

void checkCuda(CUresult result, const char *what) {
  if (result != 0)
    abortJob(std::string(what) + " failed with CUDA error " + std::to_string(result));
}

void checkNccl(ncclResult_t result, const char *what) {
  if (result != kNcclSuccess && result != kNcclInProgress)
    abortJob(std::string(what) + " failed: " + libraries().ncclGetErrorString(result));
}

CUstream stream() {
  void *s = moeRuntimeStream();
  if (!s)
    abortJob(std::string("the GPU is not usable: ") + (moeRuntimeError() ? moeRuntimeError() : "unknown error"));
  return s;
}

/// The NCCL communicator of all ranks, made on first use.
ncclComm_t communicatorOnDevices() {
  static ncclComm_t comm = nullptr;
  if (comm)
    return comm;
  if (!ensureComm())
    abortJob("MPI could not be initialised");
  Libraries &l = libraries();
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  if (worldRank() == 0)
    checkNccl(l.ncclGetUniqueId(&id), "ncclGetUniqueId");
  MPI_Request request;
  if (MPI_Ibcast(&id, int(sizeof(id)), MPI_BYTE, 0, communicator(), &request) != MPI_SUCCESS)
    abortJob("MPI_Ibcast of the NCCL unique id failed");
  waitFor(request, "start of NCCL");
  checkNccl(l.ncclCommInitRank(&comm, worldSize(), id, worldRank()), "ncclCommInitRank");
  return comm;
}

/// Waits for the stream's work (NCCL's included) against the deadline: a
/// peer that died leaves its partners' receives pending forever.
void waitForStream(ncclComm_t comm, const char *what) {
  Libraries &l = libraries();
  auto start = std::chrono::steady_clock::now();
  double limit = timeoutSeconds();
  for (;;) {
    CUresult state = l.cuStreamQuery(stream());
    if (state == 0)
      return;
    if (state != kCudaNotReady)
      checkCuda(state, what);
    ncclResult_t async = kNcclSuccess;
    if (comm)
      checkNccl(l.ncclCommGetAsyncError(comm, &async), "ncclCommGetAsyncError");
    checkNccl(async, what);
    if (secondsSince(start) > limit) {
      if (comm)
        l.ncclCommAbort(comm);
      abortJob(std::string("no answer from the other ranks after ") + std::to_string(int(limit)) + " s in the " +
               what + " over NCCL (a rank died, exited early or runs another program; MOE_EP_TIMEOUT_S sets the "
               "limit)");
    }
    sched_yield();
  }
}

bool onDevice(const void *pointer) {
  int type = 0;
  return libraries().cuPointerGetAttribute(&type, kPointerMemoryType, CUdeviceptr(pointer)) == 0 &&
         type == kMemoryDevice;
}

/// The elements of a 1-D memref, wherever it lives, on the host.
template <typename T> std::vector<T> fetch(const MemRef<1> *m) {
  int64_t n = m->sizes[0], stride = m->strides[0];
  const T *first = reinterpret_cast<const T *>(m->aligned) + m->offset;
  std::vector<T> span(size_t(n > 0 ? (n - 1) * stride + 1 : 0));
  std::vector<T> values(static_cast<size_t>(n));
  if (span.empty())
    return values;
  if (onDevice(first))
    checkCuda(libraries().cuMemcpyDtoH(span.data(), CUdeviceptr(first), span.size() * sizeof(T)), "cuMemcpyDtoH");
  else
    std::memcpy(span.data(), first, span.size() * sizeof(T));
  for (int64_t i = 0; i < n; ++i)
    values[size_t(i)] = span[size_t(i * stride)];
  return values;
}

/// The [ranks, local] counts of a 2-D device memref, row-major.
std::vector<int32_t> fetchCounts(const MemRef<2> *m) {
  std::vector<int32_t> counts(size_t(m->sizes[0] * m->sizes[1]));
  for (int64_t s = 0; s < m->sizes[0]; ++s) {
    MemRef<1> row{m->allocated, m->aligned, m->offset + s * m->strides[0], {m->sizes[1]}, {m->strides[1]}};
    std::vector<int32_t> values = fetch<int32_t>(&row);
    std::copy(values.begin(), values.end(), counts.begin() + s * m->sizes[1]);
  }
  return counts;
}

/// Writes host `values` into a device memref of N dims (row-major order).
template <int N> void store(MemRef<N> *m, const std::vector<int32_t> &values) {
  int64_t expected = 1;
  bool contiguous = true;
  for (int d = N - 1; d >= 0; --d) {
    contiguous &= m->sizes[d] == 1 || m->strides[d] == expected;
    expected *= m->sizes[d];
  }
  int32_t *base = reinterpret_cast<int32_t *>(m->aligned) + m->offset;
  if (contiguous) {
    if (!values.empty())
      checkCuda(libraries().cuMemcpyHtoD(CUdeviceptr(base), values.data(), values.size() * sizeof(int32_t)),
                "cuMemcpyHtoD");
    return;
  }
  for (size_t i = 0; i < values.size(); ++i) {
    int64_t at = 0, rest = int64_t(i);
    for (int d = N - 1; d >= 0; --d) {
      at += (rest % m->sizes[d]) * m->strides[d];
      rest /= m->sizes[d];
    }
    checkCuda(libraries().cuMemcpyHtoD(CUdeviceptr(base + at), &values[i], sizeof(int32_t)), "cuMemcpyHtoD");
  }
}

/// Rows of a 2-D device buffer: `count` rows from `first`, each `rowBytes`
/// long and `pitch` bytes apart.
struct DeviceRows {
  char *base;
  int64_t pitch, rowBytes;
  char *row(int64_t r) const { return base + r * pitch; }
  bool packed() const { return pitch == rowBytes; }
};

DeviceRows rowsOf(const MemRef<2> *m, int64_t elementBytes, const char *what) {
  if (m->sizes[1] > 1 && m->strides[1] != 1)
    abortJob(std::string("the ") + what + " rows' elements are not contiguous");
  return {m->aligned + m->offset * elementBytes, m->strides[0] * elementBytes, m->sizes[1] * elementBytes};
}

/// One block of rows to (or from) a peer: whole when packed, else row by row
/// (NCCL moves contiguous bytes).
void moveBlock(bool send, const DeviceRows &rows, int64_t first, int64_t count, int peer, ncclComm_t comm) {
  Libraries &l = libraries();
  auto move = [&](char *at, int64_t bytes) {
    checkNccl(send ? l.ncclSend(at, size_t(bytes), kNcclUint8, peer, comm, stream())
                   : l.ncclRecv(at, size_t(bytes), kNcclUint8, peer, comm, stream()),
              send ? "ncclSend" : "ncclRecv");
  };
  if (rows.packed()) {
    move(rows.row(first), count * rows.rowBytes);
    return;
  }
  for (int64_t r = first; r < first + count; ++r)
    move(rows.row(r), rows.rowBytes);
}

/// The blocks of a rank's plan per owner, one per expert: NCCL pairs each
/// send with the peer's receive of the same size, and the owner receives
/// each source's rows expert by expert.
std::vector<RowBlocks> expertBlocks(const Placement &p, const std::vector<int32_t> &offsets) {
  std::vector<RowBlocks> blocks(size_t(p.ranks()));
  for (int d = 0; d < p.ranks(); ++d)
    for (int64_t e = p.bounds[size_t(d)]; e < p.bounds[size_t(d) + 1]; ++e)
      if (int n = offsets[size_t(e) + 1] - offsets[size_t(e)]; n > 0) {
        blocks[size_t(d)].first.push_back(offsets[size_t(e)]);
        blocks[size_t(d)].count.push_back(n);
      }
  return blocks;
}

/// One grouped exchange: peer d gets `send[d]`'s rows of `from`, this rank
/// receives `recv[s]`'s rows of `to` from peer s (itself included).
void exchange(const DeviceRows &from, const std::vector<RowBlocks> &send, const DeviceRows &to,
              const std::vector<RowBlocks> &recv, const char *what, std::vector<int64_t> &bytesPerPeer) {
  ncclComm_t comm = communicatorOnDevices();
  Libraries &l = libraries();
  bytesPerPeer.assign(send.size(), 0);
  checkNccl(l.ncclGroupStart(), "ncclGroupStart");
  for (int d = 0; d < int(send.size()); ++d) {
    for (size_t b = 0; b < send[size_t(d)].count.size(); ++b)
      moveBlock(/*send=*/true, from, send[size_t(d)].first[b], send[size_t(d)].count[b], d, comm);
    bytesPerPeer[size_t(d)] = send[size_t(d)].rows() * from.rowBytes;
    (d == worldRank() ? stats().bytesLocal : stats().bytesRemote) += bytesPerPeer[size_t(d)];
  }
  for (int s = 0; s < int(recv.size()); ++s)
    for (size_t b = 0; b < recv[size_t(s)].count.size(); ++b)
      moveBlock(/*send=*/false, to, recv[size_t(s)].first[b], recv[size_t(s)].count[b], s, comm);
  checkNccl(l.ncclGroupEnd(), "ncclGroupEnd");
  waitForStream(comm, what);
}

void zeroRows(const DeviceRows &rows, int64_t first, int64_t count) {
  if (count <= 0)
    return;
  Libraries &l = libraries();
  if (rows.packed()) {
    checkCuda(l.cuMemsetD8Async(CUdeviceptr(rows.row(first)), 0, size_t(count * rows.rowBytes), stream()),
              "cuMemsetD8Async");
    return;
  }
  for (int64_t r = first; r < first + count; ++r)
    checkCuda(l.cuMemsetD8Async(CUdeviceptr(rows.row(r)), 0, size_t(rows.rowBytes), stream()), "cuMemsetD8Async");
}

/// Copies `height` rows of `widthBytes` between device buffers of any pitch.
void copyRows(char *to, int64_t toPitch, const char *from, int64_t fromPitch, int64_t widthBytes, int64_t height) {
  if (height <= 0 || widthBytes <= 0)
    return;
  Copy2D copy{};
  copy.srcMemoryType = kMemoryDevice;
  copy.srcDevice = CUdeviceptr(from);
  copy.srcPitch = size_t(fromPitch);
  copy.dstMemoryType = kMemoryDevice;
  copy.dstDevice = CUdeviceptr(to);
  copy.dstPitch = size_t(toPitch);
  copy.widthInBytes = size_t(widthBytes);
  copy.height = size_t(height);
  checkCuda(libraries().cuMemcpy2DAsync(&copy, stream()), "cuMemcpy2DAsync");
}

/// Device scratch for one call, freed on return.
struct Scratch {
  void *pointer;
  explicit Scratch(size_t bytes) : pointer(moeRuntimeAlloc(bytes)) {
    if (!pointer)
      abortJob("cannot allocate " + std::to_string(bytes) + " bytes of GPU scratch");
  }
  ~Scratch() { moeRuntimeFree(pointer); }
  char *bytes() const { return static_cast<char *>(pointer); }
};

Placement placementOf(const MemRef<1> *bounds) { return {fetch<int64_t>(bounds)}; }

/// Rows of this rank's plan (grouped by expert) to their owners; `received`
/// gets the rank's experts' rows grouped by local expert, then source rank.
void dispatchRows(MemRef<2> *rows, MemRef<1> *offsets, MemRef<1> *bounds, int64_t rank, MemRef<2> *counts,
                  MemRef<2> *received, MemRef<1> *localOffsets, int64_t keep, int64_t byWeight, MemRef<1> *weights,
                  int64_t elementBytes) {
  checkCuda(libraries().cuStreamSynchronize(stream()), "cuStreamSynchronize");
  Placement p = placementOf(bounds);
  std::vector<int32_t> off = fetch<int32_t>(offsets);
  std::vector<int32_t> loff(size_t(p.local(int(rank)) + 1));
  std::vector<RowBlocks> send = expertBlocks(p, off);
  std::vector<RowBlocks> recv = receivedBlocks(p, rank, fetchCounts(counts), loff.data());
  store(localOffsets, loff);
  DeviceRows to = rowsOf(received, elementBytes, "received");
  barrierForStats();
  auto start = std::chrono::steady_clock::now();
  exchange(rowsOf(rows, elementBytes, "sent"), send, to, recv, "dispatch of token rows", stats().lastDispatchBytes);
  stats().dispatchSeconds += secondsSince(start);
  ++stats().dispatches;
  if (keep < 0)
    return;
  // A global capacity: dropped rows become zero rows, whose results are zero.
  std::vector<float> receivedWeights;
  if (byWeight) {
    int64_t total = loff.back();
    Scratch landed{size_t(std::max<int64_t>(total, 1)) * sizeof(float)};
    MemRef<2> weightRows{weights->allocated, weights->aligned, weights->offset, {weights->sizes[0], 1},
                         {weights->strides[0], 1}};
    std::vector<int64_t> unused;
    exchange(rowsOf(&weightRows, sizeof(float), "weight"), send, DeviceRows{landed.bytes(), 4, 4}, recv,
             "dispatch of row weights", unused);
    receivedWeights.resize(size_t(total));
    if (total > 0)
      checkCuda(libraries().cuMemcpyDtoH(receivedWeights.data(), CUdeviceptr(landed.bytes()), size_t(total) * 4),
                "cuMemcpyDtoH");
  }
  for (int64_t row : droppedRows(loff, keep, byWeight ? receivedWeights.data() : nullptr))
    zeroRows(to, row, 1);
  waitForStream(nullptr, "zeroing of dropped rows");
}

/// Each source rank's rows' results back, into its plan's layout.
void returnRows(MemRef<2> *rows, MemRef<2> *counts, MemRef<1> *offsets, MemRef<1> *bounds, int64_t rank,
                MemRef<2> *result, int64_t elementBytes) {
  checkCuda(libraries().cuStreamSynchronize(stream()), "cuStreamSynchronize");
  Placement p = placementOf(bounds);
  std::vector<int32_t> off = fetch<int32_t>(offsets);
  std::vector<RowBlocks> send = receivedBlocks(p, rank, fetchCounts(counts), nullptr);
  std::vector<RowBlocks> recv = expertBlocks(p, off);
  DeviceRows to = rowsOf(result, elementBytes, "result");
  barrierForStats();
  auto start = std::chrono::steady_clock::now();
  exchange(rowsOf(rows, elementBytes, "returned"), send, to, recv, "return of expert results",
           stats().lastReturnBytes);
  stats().returnSeconds += secondsSince(start);
  ++stats().returns;
  // Rows no rank computed (zero-computation experts, padding) are zero.
  int64_t computed = off[size_t(p.bounds.back())];
  zeroRows(to, computed, result->sizes[0] - computed);
  waitForStream(nullptr, "zeroing of rows no rank computed");
}

/// Every rank's [R, W] block of columns side by side in `result`: one
/// ncclAllGather of packed blocks, then each block copied into its columns.
void gatherColumns(MemRef<2> *input, MemRef<2> *result, int64_t elementBytes) {
  checkCuda(libraries().cuStreamSynchronize(stream()), "cuStreamSynchronize");
  DeviceRows in = rowsOf(input, elementBytes, "gathered"), out = rowsOf(result, elementBytes, "joined");
  int64_t rows = input->sizes[0], ranks = worldSize();
  if (result->sizes[0] != rows || result->sizes[1] != input->sizes[1] * ranks)
    abortJob("the joined rows of a column gather are " + std::to_string(result->sizes[0]) + " x " +
             std::to_string(result->sizes[1]) + ", not " + std::to_string(rows) + " x " + std::to_string(ranks) +
             " blocks of " + std::to_string(input->sizes[1]));
  int64_t blockBytes = rows * in.rowBytes;
  if (blockBytes == 0)
    return;
  ncclComm_t comm = communicatorOnDevices();
  Scratch packed{size_t(blockBytes)}, gathered{size_t(blockBytes * ranks)};
  copyRows(packed.bytes(), in.rowBytes, in.base, in.pitch, in.rowBytes, rows);
  stats().bytesLocal += blockBytes;
  stats().bytesRemote += blockBytes * (ranks - 1);
  stats().lastGatherBytes.assign(size_t(ranks), blockBytes);
  barrierForStats();
  auto start = std::chrono::steady_clock::now();
  checkNccl(libraries().ncclAllGather(packed.bytes(), gathered.bytes(), size_t(blockBytes), kNcclUint8, comm,
                                      stream()),
            "ncclAllGather");
  for (int64_t d = 0; d < ranks; ++d)
    copyRows(out.base + d * in.rowBytes, out.pitch, gathered.bytes() + d * blockBytes, in.rowBytes, in.rowBytes,
             rows);
  waitForStream(comm, "gather of column blocks");
  stats().gatherSeconds += secondsSince(start);
  ++stats().gathers;
}

} // namespace

extern "C" {

/// Fills the device buffer counts[s][e] (rows source rank s sends this rank
/// for its local expert e) and returns their sum.
int64_t _mlir_ciface_moeEpGpuExchangeCounts(MemRef<1> *offsets, MemRef<1> *bounds, int64_t rank, MemRef<2> *counts) {
  checkCuda(libraries().cuStreamSynchronize(stream()), "cuStreamSynchronize");
  Placement p = placementOf(bounds);
  std::vector<int32_t> off = fetch<int32_t>(offsets);
  std::vector<int32_t> received = exchangeCounts(p, off.data(), rank);
  store(counts, received);
  int64_t total = 0;
  for (int32_t c : received)
    total += c;
  return total;
}

MOE_EP_ELEMENT_ENTRY_POINTS(moeEpGpu, f32, 4)
MOE_EP_ELEMENT_ENTRY_POINTS(moeEpGpu, f16, 2)
MOE_EP_ELEMENT_ENTRY_POINTS(moeEpGpu, bf16, 2)

} // extern "C"
