//===- ExpertParallelRuntime.cpp - MPI exchanges of expert-parallel layers ===//
//
// libmoe_ep_runtime.so: what the lowering of moe.ep_rank,
// moe.all_to_all_dispatch, moe.all_to_all_return and moe.all_gather_columns
// calls on the CPU (ExpertParallelToCalls.cpp), on MPI: MPI_Alltoall of the
// per-expert row counts, MPI_Alltoallv of the rows (one MPI datatype per
// row, so counts stay small integers however wide a row is), MPI_Allgather
// of column blocks straight into their place in the joined rows. Only expert-parallel
// artifacts link it; the rest of the runtime never needs MPI.
//
// MPI is initialised on first use when the host has not done it, on a
// duplicate of MPI_COMM_WORLD so that the program's traffic never meets
// the host's. Every collective is non-blocking and polled against a
// deadline (MOE_EP_TIMEOUT_S, default 300 s): a peer that died or left
// makes this rank abort the job with a message instead of hanging.
//
// With MOE_EP_STATS=PREFIX, each rank writes PREFIX.rank<r>.json at exit:
// its calls, the bytes it sent to other ranks and kept for itself, the
// time spent in the exchanges, the bytes per peer of its last dispatch,
// return and column gather (bench/ep_bench.py replays them on plain MPI),
// and its peak resident memory. To tell the transfers from waiting for
// slower ranks, each exchange then starts with a barrier, timed apart
// (wait_seconds).
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
#include <sys/resource.h>
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

/// What MOE_EP_STATS reports.
struct Stats {
  int64_t dispatches = 0, returns = 0, gathers = 0;
  int64_t bytesRemote = 0, bytesLocal = 0;
  double countSeconds = 0, dispatchSeconds = 0, returnSeconds = 0, gatherSeconds = 0, waitSeconds = 0;
  bool enabled = false;
  std::vector<int64_t> lastDispatchBytes, lastReturnBytes, lastGatherBytes;
} stats;

/// This process's peak resident memory: what a rank held at most.
long maxRssKb() {
  struct rusage usage;
  return getrusage(RUSAGE_SELF, &usage) == 0 ? usage.ru_maxrss : -1;
}

void writeStats() {
  const char *prefix = std::getenv("MOE_EP_STATS");
  if (!prefix || !*prefix)
    return;
  std::string path = std::string(prefix) + ".rank" + std::to_string(worldRank) + ".json";
  FILE *f = std::fopen(path.c_str(), "w");
  if (!f)
    return;
  auto list = [&](const std::vector<int64_t> &v) {
    std::string text = "[";
    for (size_t i = 0; i < v.size(); ++i)
      text += (i ? ", " : "") + std::to_string(v[i]);
    return text + "]";
  };
  std::fprintf(f,
               "{\"rank\": %d, \"ranks\": %d, \"dispatches\": %lld, \"returns\": %lld, \"gathers\": %lld, "
               "\"bytes_remote\": %lld, \"bytes_local\": %lld, \"count_seconds\": %.9f, "
               "\"dispatch_seconds\": %.9f, \"return_seconds\": %.9f, \"gather_seconds\": %.9f, "
               "\"wait_seconds\": %.9f, \"last_dispatch_bytes\": %s, "
               "\"last_return_bytes\": %s, \"last_gather_bytes\": %s, \"max_rss_kb\": %ld}\n",
               worldRank, worldSize, (long long)stats.dispatches, (long long)stats.returns,
               (long long)stats.gathers, (long long)stats.bytesRemote, (long long)stats.bytesLocal,
               stats.countSeconds, stats.dispatchSeconds, stats.returnSeconds, stats.gatherSeconds,
               stats.waitSeconds, list(stats.lastDispatchBytes).c_str(), list(stats.lastReturnBytes).c_str(),
               list(stats.lastGatherBytes).c_str(), maxRssKb());
  std::fclose(f);
}

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// With stats on: waits for every rank first, so that the exchange's own
/// time leaves out the wait for the slowest one.
void barrierForStats() {
  if (!stats.enabled)
    return;
  auto start = std::chrono::steady_clock::now();
  MPI_Barrier(comm);
  stats.waitSeconds += secondsSince(start);
}

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
  const char *statsPrefix = std::getenv("MOE_EP_STATS");
  stats.enabled = statsPrefix && *statsPrefix;
  if (stats.enabled)
    std::atexit(writeStats);
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
  // MPI_Abort can itself wait on a peer (one already in MPI_Finalize's
  // fence): leave after 10 s regardless, so that mpirun sees this rank fail
  // and ends the job instead of hanging.
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::seconds(10));
    std::_Exit(1);
  }).detach();
  MPI_Abort(comm == MPI_COMM_NULL ? MPI_COMM_WORLD : comm, 1);
  std::abort();
}

/// Polls `request` until it completes or the deadline passes. Yields the
/// core between polls: ranks may share cores (mpirun --oversubscribe).
void waitFor(MPI_Request &request, const char *what) {
  auto start = std::chrono::steady_clock::now();
  double limit = timeoutSeconds();
  for (;;) {
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
    // Yield for the first 20 ms (a peer that is about to arrive), then
    // sleep between polls (a peer still computing its share).
    if (waited < 0.02)
      sched_yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

/// One row of `rowBytes` bytes every `strideBytes` bytes, as an MPI
/// datatype (cached: layers share widths), so that displacements count rows.
MPI_Datatype rowUnit(int64_t rowBytes, int64_t strideBytes) {
  struct Cached {
    int64_t bytes, stride;
    MPI_Datatype type;
  };
  static std::vector<Cached> types;
  for (const Cached &c : types)
    if (c.bytes == rowBytes && c.stride == strideBytes)
      return c.type;
  MPI_Datatype contiguous, unit;
  MPI_Type_contiguous(int(rowBytes), MPI_BYTE, &contiguous);
  MPI_Type_create_resized(contiguous, 0, strideBytes, &unit);
  MPI_Type_commit(&unit);
  MPI_Type_free(&contiguous);
  types.push_back({rowBytes, strideBytes, unit});
  return unit;
}

/// Blocks of rows of one buffer that go to (or come from) one peer.
struct RowBlocks {
  std::vector<int> first, count;
  int64_t rows() const {
    int64_t n = 0;
    for (int c : count)
      n += c;
    return n;
  }
};

/// The blocks as one datatype over `unit` rows (freed by the caller).
MPI_Datatype blocksType(const RowBlocks &blocks, MPI_Datatype unit) {
  MPI_Datatype type;
  MPI_Type_indexed(int(blocks.count.size()), blocks.count.data(), blocks.first.data(), unit, &type);
  MPI_Type_commit(&type);
  return type;
}

/// One exchange: rank d gets `send[d]`'s rows of `sendBase` and this rank
/// receives `recv[s]`'s rows of `recvBase` from rank s, in place, with no
/// staging copy (MPI_Ialltoallw, one indexed datatype per peer).
void exchangeRows(const char *sendBase, int64_t sendStride, const std::vector<RowBlocks> &send, char *recvBase,
                  int64_t recvStride, const std::vector<RowBlocks> &recv, int64_t rowBytes, const char *what,
                  std::vector<int64_t> &bytesPerPeer) {
  int peers = int(send.size());
  bytesPerPeer.assign(size_t(peers), 0);
  std::vector<MPI_Datatype> sendTypes(peers), recvTypes(peers);
  std::vector<int> ones(peers, 1), zeros(peers, 0);
  MPI_Datatype sendUnit = rowUnit(rowBytes, sendStride), recvUnit = rowUnit(rowBytes, recvStride);
  for (int d = 0; d < peers; ++d) {
    bytesPerPeer[d] = send[d].rows() * rowBytes;
    (d == worldRank ? stats.bytesLocal : stats.bytesRemote) += bytesPerPeer[d];
    sendTypes[d] = blocksType(send[d], sendUnit);
    recvTypes[d] = blocksType(recv[d], recvUnit);
  }
  MPI_Request request;
  if (MPI_Ialltoallw(sendBase, ones.data(), zeros.data(), sendTypes.data(), recvBase, ones.data(), zeros.data(),
                     recvTypes.data(), comm, &request) != MPI_SUCCESS)
    abortJob(std::string("MPI_Ialltoallw failed in the ") + what);
  waitFor(request, what);
  for (int d = 0; d < peers; ++d) {
    MPI_Type_free(&sendTypes[d]);
    MPI_Type_free(&recvTypes[d]);
  }
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

/// Row `row` of a 2-D memref (any row stride).
char *rowOf(const MemRef<2> *m, int64_t row, int64_t elementBytes) {
  return m->aligned + (m->offset + row * m->strides[0]) * elementBytes;
}

/// The exchanges move whole rows (any row stride): each row's elements must
/// be contiguous. A rank that cannot take part ends the job, since its peers
/// would otherwise wait for it.
void requireContiguousRows(const MemRef<2> *m, const char *what) {
  if (m->sizes[1] > 1 && m->strides[1] != 1)
    abortJob(std::string("the ") + what + " rows' elements are not contiguous");
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
    std::string message = "this expert-parallel program was compiled for " + std::to_string(ranks) +
                          " ranks but runs in " + std::to_string(worldSize) + " process(es); run it as `mpirun -np " +
                          std::to_string(ranks) + " ...`";
    moeRuntimeSetCallError(message.c_str());
    return -1;
  }
  return worldRank;
}

/// Exchanges per-expert row counts: fills counts[s][e] (rows source rank s
/// sends this rank for its local expert e) and global[0] (the plan rows of
/// all ranks: k per token), and returns the sum of counts.
int64_t _mlir_ciface_moeEpExchangeCounts(MemRef<1> *offsets, MemRef<1> *bounds, int64_t rank, MemRef<2> *counts,
                                         int64_t planRows, MemRef<1> *global) {
  Placement p = placementOf(bounds);
  const int32_t *off = int32s(offsets);
  // Per peer: its experts' counts, then this rank's plan rows.
  int64_t width = p.mostLocal() + 1;
  std::vector<int32_t> send(size_t(p.ranks * width), 0), recv(size_t(p.ranks * width), 0);
  for (int d = 0; d < p.ranks; ++d) {
    for (int64_t e = 0; e < p.local(d); ++e) {
      int64_t expert = p.bounds[d] + e;
      send[size_t(d * width + e)] = off[expert + 1] - off[expert];
    }
    send[size_t(d * width + width - 1)] = int32_t(planRows);
  }
  MPI_Request request;
  barrierForStats();
  auto start = std::chrono::steady_clock::now();
  if (MPI_Ialltoall(send.data(), int(width), MPI_INT32_T, recv.data(), int(width), MPI_INT32_T, comm,
                    &request) != MPI_SUCCESS)
    abortJob("MPI_Ialltoall of the row counts failed");
  waitFor(request, "exchange of row counts");
  stats.countSeconds += secondsSince(start);
  int64_t local = p.local(int(rank)), total = 0, allRows = 0;
  int32_t *out = reinterpret_cast<int32_t *>(counts->aligned) + counts->offset;
  for (int s = 0; s < p.ranks; ++s) {
    for (int64_t e = 0; e < local; ++e) {
      int32_t c = recv[size_t(s * width + e)];
      out[s * counts->strides[0] + e * counts->strides[1]] = c;
      total += c;
    }
    allRows += recv[size_t(s * width + width - 1)];
  }
  reinterpret_cast<int64_t *>(global->aligned)[global->offset] = allRows;
  return total;
}

/// The blocks of each source rank in the layout of received rows: by local
/// expert, then source rank (fills `localOffsets` on the way when given).
static std::vector<RowBlocks> receivedBlocks(const Placement &p, int64_t rank, MemRef<2> *counts,
                                             MemRef<1> *localOffsets) {
  int64_t local = p.local(int(rank));
  auto countOf = [&](int s, int64_t e) {
    return reinterpret_cast<int32_t *>(counts->aligned)[counts->offset + s * counts->strides[0] + e * counts->strides[1]];
  };
  std::vector<RowBlocks> blocks(size_t(p.ranks));
  int64_t next = 0;
  for (int64_t e = 0; e < local; ++e) {
    if (localOffsets)
      reinterpret_cast<int32_t *>(localOffsets->aligned)[localOffsets->offset + e * localOffsets->strides[0]] =
          int32_t(next);
    for (int s = 0; s < p.ranks; ++s) {
      int32_t n = countOf(s, e);
      if (n > 0) {
        blocks[s].first.push_back(int(next));
        blocks[s].count.push_back(n);
      }
      next += n;
    }
  }
  if (localOffsets)
    reinterpret_cast<int32_t *>(localOffsets->aligned)[localOffsets->offset + local * localOffsets->strides[0]] =
        int32_t(next);
  return blocks;
}

/// The block of this rank's plan that each owner's experts hold.
static std::vector<RowBlocks> ownerBlocks(const Placement &p, const int32_t *off) {
  std::vector<RowBlocks> blocks(size_t(p.ranks));
  for (int d = 0; d < p.ranks; ++d) {
    int n = off[p.bounds[d + 1]] - off[p.bounds[d]];
    if (n > 0) {
      blocks[d].first.push_back(off[p.bounds[d]]);
      blocks[d].count.push_back(n);
    }
  }
  return blocks;
}

/// Sends each rank its experts' rows; `received` gets this rank's experts'
/// rows grouped by local expert, then source rank.
static void dispatchRows(MemRef<2> *rows, MemRef<1> *offsets, MemRef<1> *bounds, int64_t rank, MemRef<2> *counts,
                         MemRef<2> *received, MemRef<1> *localOffsets, int64_t keep, int64_t byWeight,
                         MemRef<1> *weights, int64_t elementBytes) {
  requireContiguousRows(rows, "sent");
  requireContiguousRows(received, "received");
  Placement p = placementOf(bounds);
  int64_t rowBytes = rows->sizes[1] * elementBytes;
  std::vector<RowBlocks> send = ownerBlocks(p, int32s(offsets));
  std::vector<RowBlocks> recv = receivedBlocks(p, rank, counts, localOffsets);
  barrierForStats();
  auto start = std::chrono::steady_clock::now();
  exchangeRows(rowOf(rows, 0, elementBytes), rows->strides[0] * elementBytes, send, rowOf(received, 0, elementBytes),
               received->strides[0] * elementBytes, recv, rowBytes, "dispatch of token rows",
               stats.lastDispatchBytes);
  stats.dispatchSeconds += secondsSince(start);
  ++stats.dispatches;
  // A global capacity: each expert keeps `keep` of its rows (they are in
  // global token order): the first ones, or with weights the heaviest
  // (ties: the earlier row). The rest become zero rows, whose results are zero.
  if (keep < 0)
    return;
  const int32_t *loff = int32s(localOffsets);
  int64_t local = p.local(int(rank)), total = loff[local];
  std::vector<float> receivedWeights;
  // Every rank passes the same byWeight (the op's capacity): all of them
  // take part in the weights' exchange, or none.
  if (byWeight) {
    receivedWeights.resize(size_t(std::max<int64_t>(total, 1)));
    std::vector<int64_t> unused;
    exchangeRows(reinterpret_cast<const char *>(reinterpret_cast<float *>(weights->aligned) + weights->offset),
                 weights->strides[0] * int64_t(sizeof(float)), send,
                 reinterpret_cast<char *>(receivedWeights.data()), int64_t(sizeof(float)), recv, sizeof(float),
                 "dispatch of row weights", unused);
  }
  std::vector<int64_t> order;
  for (int64_t e = 0; e < local; ++e) {
    int64_t first = loff[e], n = loff[e + 1] - loff[e];
    if (n <= keep)
      continue;
    order.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i)
      order[size_t(i)] = first + i;
    if (byWeight)
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return receivedWeights[size_t(a)] > receivedWeights[size_t(b)];
      });
    for (int64_t i = keep; i < n; ++i)
      std::memset(rowOf(received, order[size_t(i)], elementBytes), 0, size_t(rowBytes));
  }
}

/// Sends each source rank its rows' results back, into the plan's layout.
static void returnRows(MemRef<2> *rows, MemRef<2> *counts, MemRef<1> *offsets, MemRef<1> *bounds, int64_t rank,
                       MemRef<2> *result, int64_t elementBytes) {
  requireContiguousRows(rows, "returned");
  requireContiguousRows(result, "result");
  Placement p = placementOf(bounds);
  const int32_t *off = int32s(offsets);
  int64_t rowBytes = result->sizes[1] * elementBytes;
  std::vector<RowBlocks> send = receivedBlocks(p, rank, counts, nullptr);
  std::vector<RowBlocks> recv = ownerBlocks(p, off);
  barrierForStats();
  auto start = std::chrono::steady_clock::now();
  exchangeRows(rowOf(rows, 0, elementBytes), rows->strides[0] * elementBytes, send, rowOf(result, 0, elementBytes),
               result->strides[0] * elementBytes, recv, rowBytes, "return of expert results", stats.lastReturnBytes);
  stats.returnSeconds += secondsSince(start);
  ++stats.returns;
  // Rows no rank computed (zero-computation experts, padding) are zero.
  for (int64_t r = off[p.bounds[p.ranks]]; r < result->sizes[0]; ++r)
    std::memset(rowOf(result, r, elementBytes), 0, size_t(rowBytes));
}

/// Every rank's [R, W] block of columns side by side in `result`
/// ([R, ranks * W]): one MPI_Iallgather whose receive datatype is a
/// column block of the result, so each block lands in place.
static void gatherColumns(MemRef<2> *input, MemRef<2> *result, int64_t elementBytes) {
  requireContiguousRows(input, "gathered");
  requireContiguousRows(result, "joined");
  int64_t rows = input->sizes[0], blockBytes = input->sizes[1] * elementBytes;
  if (result->sizes[0] != rows || result->sizes[1] != input->sizes[1] * worldSize)
    abortJob("the joined rows of a column gather are " + std::to_string(result->sizes[0]) + " x " +
             std::to_string(result->sizes[1]) + ", not " + std::to_string(rows) + " x " +
             std::to_string(worldSize) + " blocks of " + std::to_string(input->sizes[1]));
  // Every rank holds the same rows, so all of them skip an empty gather.
  if (rows == 0 || blockBytes == 0)
    return;
  MPI_Datatype sendType, block, recvType;
  MPI_Type_vector(int(rows), int(blockBytes), int(input->strides[0] * elementBytes), MPI_BYTE, &sendType);
  MPI_Type_vector(int(rows), int(blockBytes), int(result->strides[0] * elementBytes), MPI_BYTE, &block);
  // Rank d's block starts d blocks to the right.
  MPI_Type_create_resized(block, 0, blockBytes, &recvType);
  MPI_Type_commit(&sendType);
  MPI_Type_commit(&recvType);
  stats.bytesLocal += rows * blockBytes;
  stats.bytesRemote += rows * blockBytes * (worldSize - 1);
  stats.lastGatherBytes.assign(size_t(worldSize), rows * blockBytes);
  barrierForStats();
  auto start = std::chrono::steady_clock::now();
  MPI_Request request;
  if (MPI_Iallgather(rowOf(input, 0, elementBytes), 1, sendType, rowOf(result, 0, elementBytes), 1, recvType, comm,
                     &request) != MPI_SUCCESS)
    abortJob("MPI_Iallgather failed in the gather of column blocks");
  waitFor(request, "gather of column blocks");
  stats.gatherSeconds += secondsSince(start);
  ++stats.gathers;
  MPI_Type_free(&sendType);
  MPI_Type_free(&block);
  MPI_Type_free(&recvType);
}

#define MOE_EP_ELEMENT(SUFFIX, BYTES)                                                                        \
  void _mlir_ciface_moeEpDispatchRows_##SUFFIX(MemRef<2> *rows, MemRef<1> *offsets, MemRef<1> *bounds,     \
                                               int64_t rank, MemRef<2> *counts, MemRef<2> *received,       \
                                               MemRef<1> *localOffsets, int64_t keep, int64_t byWeight,     \
                                               MemRef<1> *weights) {                                       \
    dispatchRows(rows, offsets, bounds, rank, counts, received, localOffsets, keep, byWeight, weights, BYTES); \
  }                                                                                                          \
  void _mlir_ciface_moeEpReturnRows_##SUFFIX(MemRef<2> *rows, MemRef<2> *counts, MemRef<1> *offsets,       \
                                             MemRef<1> *bounds, int64_t rank, MemRef<2> *result) {         \
    returnRows(rows, counts, offsets, bounds, rank, result, BYTES);                                         \
  }                                                                                                          \
  void _mlir_ciface_moeEpAllGatherColumns_##SUFFIX(MemRef<2> *input, MemRef<2> *result) {                  \
    gatherColumns(input, result, BYTES);                                                                    \
  }

MOE_EP_ELEMENT(f32, 4)
MOE_EP_ELEMENT(f16, 2)
MOE_EP_ELEMENT(bf16, 2)

} // extern "C"
