//===- ExpertParallelRuntime.cpp - MPI exchanges of expert-parallel layers ===//
//
// libmoe_ep_runtime.so: what the lowering of moe.ep_rank,
// moe.all_to_all_dispatch and moe.all_to_all_return calls on the CPU
// (ExpertParallelToCalls.cpp), on MPI: MPI_Alltoall of the per-expert row
// counts, MPI_Alltoallv of the rows (one MPI datatype per row, so counts
// stay small integers however wide a row is). Only expert-parallel
// artifacts link it; the rest of the runtime never needs MPI.
//
// MPI is initialised on first use when the host has not done it, on a
// duplicate of MPI_COMM_WORLD so that the program's traffic never meets
// the host's. Every collective is non-blocking and polled against a
// deadline (MOE_EP_TIMEOUT_S, default 300 s): a peer that died or left
// makes this rank abort the job with a message instead of hanging.
//
//===----------------------------------------------------------------------===//

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sched.h>
#include <string>
#include <thread>
#include <vector>

extern "C" void moeRuntimeSetCallError(const char *message);

namespace {

/// A ranked memref descriptor as MLIR's C interface passes it.
template <int Rank> struct MemRef {
  char *allocated;
  char *aligned;
  int64_t offset;
  int64_t sizes[Rank];
  int64_t strides[Rank];
};

MPI_Comm comm = MPI_COMM_NULL;
int worldRank = 0, worldSize = 1;

void finalizeAtExit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized)
    MPI_Finalize();
}

/// Initialises MPI (when the host has not) and the program's communicator.
bool ensureComm() {
  if (comm != MPI_COMM_NULL)
    return true;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
      return false;
    std::atexit(finalizeAtExit);
  }
  if (MPI_Comm_dup(MPI_COMM_WORLD, &comm) != MPI_SUCCESS)
    return false;
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm, &worldRank);
  MPI_Comm_size(comm, &worldSize);
  return true;
}

double timeoutSeconds() {
  const char *text = std::getenv("MOE_EP_TIMEOUT_S");
  double seconds = text ? std::atof(text) : 0;
  return seconds > 0 ? seconds : 300;
}

[[noreturn]] void abortJob(const std::string &message) {
  std::fprintf(stderr, "moe expert-parallel runtime: rank %d of %d: %s\n", worldRank, worldSize,
               message.c_str());
  std::fflush(stderr);
  MPI_Abort(comm == MPI_COMM_NULL ? MPI_COMM_WORLD : comm, 1);
  std::abort();
}

/// Polls `request` until it completes or the deadline passes. Yields the
/// core between polls: ranks may share cores (mpirun --oversubscribe).
void waitFor(MPI_Request &request, const char *what) {
  auto start = std::chrono::steady_clock::now();
  double limit = timeoutSeconds();
  for (int polls = 0;; ++polls) {
    int done = 0;
    if (MPI_Test(&request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      abortJob(std::string("MPI failed during the ") + what);
    if (done)
      return;
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > limit)
      abortJob(std::string("no answer from the other ranks after ") + std::to_string(int(limit)) +
               " s in the " + what + " (a rank died, exited early or runs another program; "
               "MOE_EP_TIMEOUT_S sets the limit)");
    if (polls < 1000)
      sched_yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

/// One MPI datatype per row of `rowBytes` bytes (cached: layers share widths).
MPI_Datatype rowType(int64_t rowBytes) {
  static std::vector<std::pair<int64_t, MPI_Datatype>> types;
  for (auto &[bytes, type] : types)
    if (bytes == rowBytes)
      return type;
  MPI_Datatype type;
  MPI_Type_contiguous(int(rowBytes), MPI_BYTE, &type);
  MPI_Type_commit(&type);
  types.push_back({rowBytes, type});
  return type;
}

/// Rank d owns experts [bounds[d], bounds[d+1]).
struct Placement {
  const int64_t *bounds;
  int ranks;
  int64_t local(int d) const { return bounds[d + 1] - bounds[d]; }
  int64_t mostLocal() const {
    int64_t most = 0;
    for (int d = 0; d < ranks; ++d)
      most = std::max(most, local(d));
    return most;
  }
};

Placement placementOf(const MemRef<1> *bounds) {
  return {reinterpret_cast<const int64_t *>(bounds->aligned) + bounds->offset, int(bounds->sizes[0] - 1)};
}

const int32_t *int32s(const MemRef<1> *m) { return reinterpret_cast<const int32_t *>(m->aligned) + m->offset; }

/// A row of a 2-D memref whose rows are contiguous.
char *rowOf(const MemRef<2> *m, int64_t row, int64_t elementBytes) {
  return m->aligned + (m->offset + row * m->strides[0]) * elementBytes;
}

bool rowsContiguous(const MemRef<2> *m, const char *what) {
  if (m->sizes[1] <= 1 || m->strides[1] == 1)
    return true;
  moeRuntimeSetCallError((std::string("expert-parallel exchange: the ") + what +
                          " rows are not contiguous").c_str());
  return false;
}

/// Sends rows [first, first + count) of `rows` to `to` for each peer and
/// receives into `out` at the rows `recvFirst` gives, all at once.
void exchangeRows(const char *send, const std::vector<int> &sendCounts, const std::vector<int> &sendFirst,
                  char *recv, const std::vector<int> &recvCounts, const std::vector<int> &recvFirst,
                  int64_t rowBytes, const char *what) {
  MPI_Datatype row = rowType(rowBytes);
  MPI_Request request;
  if (MPI_Ialltoallv(send, sendCounts.data(), sendFirst.data(), row, recv, recvCounts.data(),
                     recvFirst.data(), row, comm, &request) != MPI_SUCCESS)
    abortJob(std::string("MPI_Ialltoallv failed in the ") + what);
  waitFor(request, what);
}

} // namespace

extern "C" {

/// This process's rank, or -1 (with the call's error set) when the run
/// does not have `ranks` processes or MPI cannot start.
int64_t _mlir_ciface_moeEpRank(int64_t ranks) {
  if (!ensureComm()) {
    moeRuntimeSetCallError("expert-parallel artifact: MPI could not be initialised");
    return -1;
  }
  if (worldSize != ranks) {
    std::string message = "this expert-parallel artifact was compiled for " + std::to_string(ranks) +
                          " ranks but runs in " + std::to_string(worldSize) + " process(es); run it as `mpirun -np " +
                          std::to_string(ranks) + " ...`";
    moeRuntimeSetCallError(message.c_str());
    return -1;
  }
  return worldRank;
}

/// Exchanges per-expert row counts: fills counts[s][e] (rows source rank s
/// sends this rank for its local expert e) and returns their sum.
int64_t _mlir_ciface_moeEpExchangeCounts(MemRef<1> *offsets, MemRef<1> *bounds, int64_t rank, MemRef<2> *counts) {
  Placement p = placementOf(bounds);
  const int32_t *off = int32s(offsets);
  int64_t width = std::max<int64_t>(p.mostLocal(), 1);
  std::vector<int32_t> send(size_t(p.ranks * width), 0), recv(size_t(p.ranks * width), 0);
  for (int d = 0; d < p.ranks; ++d)
    for (int64_t e = 0; e < p.local(d); ++e) {
      int64_t expert = p.bounds[d] + e;
      send[size_t(d * width + e)] = off[expert + 1] - off[expert];
    }
  MPI_Request request;
  if (MPI_Ialltoall(send.data(), int(width), MPI_INT32_T, recv.data(), int(width), MPI_INT32_T, comm,
                    &request) != MPI_SUCCESS)
    abortJob("MPI_Ialltoall of the row counts failed");
  waitFor(request, "exchange of row counts");
  int64_t local = p.local(int(rank)), total = 0;
  int32_t *out = reinterpret_cast<int32_t *>(counts->aligned) + counts->offset;
  for (int s = 0; s < p.ranks; ++s)
    for (int64_t e = 0; e < local; ++e) {
      int32_t c = recv[size_t(s * width + e)];
      out[s * counts->strides[0] + e * counts->strides[1]] = c;
      total += c;
    }
  return total;
}

/// Sends each rank its experts' rows; `received` gets this rank's experts'
/// rows grouped by local expert, then source rank.
static void dispatchRows(MemRef<2> *rows, MemRef<1> *offsets, MemRef<1> *bounds, int64_t rank, MemRef<2> *counts,
                         MemRef<2> *received, MemRef<1> *localOffsets, int64_t elementBytes) {
  if (!rowsContiguous(rows, "sent") || !rowsContiguous(received, "received"))
    return;
  Placement p = placementOf(bounds);
  const int32_t *off = int32s(offsets);
  int64_t width = rows->sizes[1], rowBytes = width * elementBytes, local = p.local(int(rank));
  auto countOf = [&](int s, int64_t e) {
    return reinterpret_cast<int32_t *>(counts->aligned)[counts->offset + s * counts->strides[0] + e * counts->strides[1]];
  };
  // Send side: each destination's experts are consecutive in the plan, so
  // its rows are one block of `rows` (packed first when rows are strided).
  std::vector<int> sendCounts(p.ranks), sendFirst(p.ranks), recvCounts(p.ranks), recvFirst(p.ranks);
  for (int d = 0; d < p.ranks; ++d) {
    sendFirst[d] = off[p.bounds[d]];
    sendCounts[d] = off[p.bounds[d + 1]] - off[p.bounds[d]];
  }
  int64_t totalSend = off[p.bounds[p.ranks]];
  std::vector<char> packed;
  const char *send = rowOf(rows, 0, elementBytes);
  if (rows->strides[0] != width && totalSend > 0) {
    packed.resize(size_t(totalSend * rowBytes));
    for (int64_t r = 0; r < totalSend; ++r)
      std::memcpy(packed.data() + r * rowBytes, rowOf(rows, r, elementBytes), size_t(rowBytes));
    send = packed.data();
  }
  // Receive side: source-major, then regrouped by expert.
  int64_t totalRecv = 0;
  for (int s = 0; s < p.ranks; ++s) {
    recvFirst[s] = int(totalRecv);
    recvCounts[s] = 0;
    for (int64_t e = 0; e < local; ++e)
      recvCounts[s] += countOf(s, e);
    totalRecv += recvCounts[s];
  }
  std::vector<char> staging(size_t(std::max<int64_t>(totalRecv, 1) * rowBytes));
  exchangeRows(send, sendCounts, sendFirst, staging.data(), recvCounts, recvFirst, rowBytes,
               "dispatch of token rows");
  int32_t *loff = reinterpret_cast<int32_t *>(localOffsets->aligned) + localOffsets->offset;
  int64_t next = 0;
  std::vector<int64_t> cursor(recvFirst.begin(), recvFirst.end());
  for (int64_t e = 0; e < local; ++e) {
    loff[e * localOffsets->strides[0]] = int32_t(next);
    for (int s = 0; s < p.ranks; ++s) {
      int64_t n = countOf(s, e);
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(rowOf(received, next + i, elementBytes), staging.data() + (cursor[s] + i) * rowBytes,
                    size_t(rowBytes));
      cursor[s] += n;
      next += n;
    }
  }
  loff[local * localOffsets->strides[0]] = int32_t(next);
}

/// Sends each source rank its rows' results back, into the plan's layout.
static void returnRows(MemRef<2> *rows, MemRef<2> *counts, MemRef<1> *offsets, MemRef<1> *bounds, int64_t rank,
                       MemRef<2> *result, int64_t elementBytes) {
  if (!rowsContiguous(rows, "returned") || !rowsContiguous(result, "result"))
    return;
  Placement p = placementOf(bounds);
  const int32_t *off = int32s(offsets);
  int64_t width = result->sizes[1], rowBytes = width * elementBytes, local = p.local(int(rank));
  auto countOf = [&](int s, int64_t e) {
    return reinterpret_cast<int32_t *>(counts->aligned)[counts->offset + s * counts->strides[0] + e * counts->strides[1]];
  };
  // Regroup the results source-major: each source gets one block.
  std::vector<int> sendCounts(p.ranks, 0), sendFirst(p.ranks), recvCounts(p.ranks), recvFirst(p.ranks);
  for (int s = 0; s < p.ranks; ++s)
    for (int64_t e = 0; e < local; ++e)
      sendCounts[s] += countOf(s, e);
  int64_t total = 0;
  for (int s = 0; s < p.ranks; ++s) {
    sendFirst[s] = int(total);
    total += sendCounts[s];
  }
  std::vector<char> staging(size_t(std::max<int64_t>(total, 1) * rowBytes));
  std::vector<int64_t> cursor(sendFirst.begin(), sendFirst.end());
  int64_t next = 0;
  for (int64_t e = 0; e < local; ++e)
    for (int s = 0; s < p.ranks; ++s) {
      int64_t n = countOf(s, e);
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(staging.data() + (cursor[s] + i) * rowBytes, rowOf(rows, next + i, elementBytes),
                    size_t(rowBytes));
      cursor[s] += n;
      next += n;
    }
  // Each owner's rows land where this rank's plan put that owner's experts.
  for (int d = 0; d < p.ranks; ++d) {
    recvFirst[d] = off[p.bounds[d]];
    recvCounts[d] = off[p.bounds[d + 1]] - off[p.bounds[d]];
  }
  int64_t planRows = result->sizes[0];
  bool dense = result->strides[0] == width;
  std::vector<char> landing;
  char *recv = rowOf(result, 0, elementBytes);
  if (!dense) {
    landing.resize(size_t(std::max<int64_t>(planRows, 1) * rowBytes));
    recv = landing.data();
  }
  exchangeRows(staging.data(), sendCounts, sendFirst, recv, recvCounts, recvFirst, rowBytes,
               "return of expert results");
  // Rows no rank computed (zero-computation experts, padding) are zero.
  int64_t placedEnd = off[p.bounds[p.ranks]];
  for (int64_t r = 0; r < planRows; ++r) {
    char *dst = rowOf(result, r, elementBytes);
    if (r >= placedEnd)
      std::memset(dst, 0, size_t(rowBytes));
    else if (!dense)
      std::memcpy(dst, landing.data() + r * rowBytes, size_t(rowBytes));
  }
}

#define MOE_EP_ELEMENT(SUFFIX, BYTES)                                                                        \
  void _mlir_ciface_moeEpDispatchRows_##SUFFIX(MemRef<2> *rows, MemRef<1> *offsets, MemRef<1> *bounds,     \
                                               int64_t rank, MemRef<2> *counts, MemRef<2> *received,       \
                                               MemRef<1> *localOffsets) {                                  \
    dispatchRows(rows, offsets, bounds, rank, counts, received, localOffsets, BYTES);                      \
  }                                                                                                          \
  void _mlir_ciface_moeEpReturnRows_##SUFFIX(MemRef<2> *rows, MemRef<2> *counts, MemRef<1> *offsets,       \
                                             MemRef<1> *bounds, int64_t rank, MemRef<2> *result) {         \
    returnRows(rows, counts, offsets, bounds, rank, result, BYTES);                                         \
  }

MOE_EP_ELEMENT(f32, 4)
MOE_EP_ELEMENT(f16, 2)
MOE_EP_ELEMENT(bf16, 2)

} // extern "C"
