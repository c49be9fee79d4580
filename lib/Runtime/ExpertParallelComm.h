//===- ExpertParallelComm.h - what the MPI and NCCL exchanges share -------===//
//
// Both transports of libmoe_ep_runtime.so (host buffers over MPI, device
// buffers over NCCL) agree on the ranks (MPI starts them and bootstraps
// NCCL), on how a placement splits the experts, and on the exchange plan:
// which rows of a rank's dispatch plan go to which peer, and where received
// rows land. Failures end the whole job with a message, never a hang.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_RUNTIME_EXPERTPARALLELCOMM_H
#define MOE_RUNTIME_EXPERTPARALLELCOMM_H

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

extern "C" void moeRuntimeSetCallError(const char *message);

namespace moe_ep {

/// A ranked memref descriptor as MLIR's C interface passes it.
template <int Rank> struct MemRef {
  char *allocated;
  char *aligned;
  int64_t offset;
  int64_t sizes[Rank];
  int64_t strides[Rank];
};

/// Starts MPI (when the host has not) on a duplicate of MPI_COMM_WORLD, so
/// that the program's traffic never meets the host's. False if MPI cannot start.
bool ensureComm();
MPI_Comm communicator();
int worldRank();
int worldSize();

/// How long a rank waits for its peers (MOE_EP_TIMEOUT_S, default 300 s).
double timeoutSeconds();
/// Ends the job with `message` (this rank and the others).
[[noreturn]] void abortJob(const std::string &message);
/// Polls `request` until it completes; past the deadline, abortJob.
void waitFor(MPI_Request &request, const char *what);

/// What MOE_EP_STATS=PREFIX reports in PREFIX.rank<r>.json at exit.
struct Stats {
  int64_t dispatches = 0, returns = 0, gathers = 0;
  int64_t bytesRemote = 0, bytesLocal = 0;
  double countSeconds = 0, dispatchSeconds = 0, returnSeconds = 0, gatherSeconds = 0, waitSeconds = 0;
  bool enabled = false;
  std::vector<int64_t> lastDispatchBytes, lastReturnBytes, lastGatherBytes;
};
Stats &stats();
double secondsSince(std::chrono::steady_clock::time_point start);
/// With stats on: waits for every rank first, so that an exchange's own time
/// leaves out the wait for the slowest rank.
void barrierForStats();

/// Blocks of rows of one buffer that go to (or come from) one peer.
struct RowBlocks {
  std::vector<int> first, count;
  int64_t rows() const;
};

/// Rank d owns experts [bounds[d], bounds[d+1]).
struct Placement {
  std::vector<int64_t> bounds;
  int ranks() const { return int(bounds.size()) - 1; }
  int64_t local(int d) const { return bounds[size_t(d) + 1] - bounds[size_t(d)]; }
};

/// Per-expert row counts of this rank's plan (offsets over all E experts)
/// to their owners: the result holds, for every source rank s and local
/// expert e, the rows s sends this rank for e ([ranks][local], row-major).
std::vector<int32_t> exchangeCounts(const Placement &p, const int32_t *offsets, int64_t rank);
/// The plan rows of all ranks together (each rank's `planRows` summed).
int64_t globalRows(int64_t planRows);

/// The blocks of each source rank in the layout of received rows: by local
/// expert, then source rank. Fills `localOffsets` (local + 1 entries) when given.
std::vector<RowBlocks> receivedBlocks(const Placement &p, int64_t rank, const std::vector<int32_t> &counts,
                                      int32_t *localOffsets);
/// The block of this rank's plan that each owner's experts hold.
std::vector<RowBlocks> ownerBlocks(const Placement &p, const int32_t *offsets);

/// Row indices of `received` (grouped by local expert, `localOffsets`) that
/// a global capacity of `keep` rows per expert drops: beyond the first `keep`
/// of each expert, or with `weights` beyond its `keep` heaviest (ties: the
/// earlier row). Received rows are in global token order.
std::vector<int64_t> droppedRows(const std::vector<int32_t> &localOffsets, int64_t keep, const float *weights);

} // namespace moe_ep

/// The C entry points of one element type (`SUFFIX`, `BYTES` per element)
/// named `<PREFIX>DispatchRows_<SUFFIX>` and so on, calling the including
/// file's dispatchRows, returnRows and gatherColumns (host or device buffers).
#define MOE_EP_ELEMENT_ENTRY_POINTS(PREFIX, SUFFIX, BYTES)                                                   \
  void _mlir_ciface_##PREFIX##DispatchRows_##SUFFIX(                                                         \
      moe_ep::MemRef<2> *rows, moe_ep::MemRef<1> *offsets, moe_ep::MemRef<1> *bounds, int64_t rank,          \
      moe_ep::MemRef<2> *counts, moe_ep::MemRef<2> *received, moe_ep::MemRef<1> *localOffsets, int64_t keep, \
      int64_t byWeight, moe_ep::MemRef<1> *weights) {                                                        \
    dispatchRows(rows, offsets, bounds, rank, counts, received, localOffsets, keep, byWeight, weights, BYTES); \
  }                                                                                                          \
  void _mlir_ciface_##PREFIX##ReturnRows_##SUFFIX(moe_ep::MemRef<2> *rows, moe_ep::MemRef<2> *counts,       \
                                                  moe_ep::MemRef<1> *offsets, moe_ep::MemRef<1> *bounds,    \
                                                  int64_t rank, moe_ep::MemRef<2> *result) {                 \
    returnRows(rows, counts, offsets, bounds, rank, result, BYTES);                                          \
  }                                                                                                          \
  void _mlir_ciface_##PREFIX##AllGatherColumns_##SUFFIX(moe_ep::MemRef<2> *input, moe_ep::MemRef<2> *result) { \
    gatherColumns(input, result, BYTES);                                                                     \
  }

#endif // MOE_RUNTIME_EXPERTPARALLELCOMM_H
