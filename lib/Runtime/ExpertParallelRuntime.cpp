//===- ExpertParallelRuntime.cpp - MPI exchanges of host buffers ----------===//
//
// libmoe_ep_runtime.so: what the lowering of moe.ep_rank,
// moe.all_to_all_dispatch, moe.all_to_all_return and moe.all_gather_columns
// calls in CPU programs (ExpertParallelToCalls.cpp), on MPI: MPI_Alltoall of
// the per-expert row counts, MPI_Ialltoallw of the rows (one indexed
// datatype per peer, so rows land in place), MPI_Allgather of column blocks
// straight into their place in the joined rows. GPU programs call the
// device-buffer versions (NcclExchangeRuntime.cpp). Only expert-parallel
// artifacts link this library; the rest of the runtime never needs MPI.
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

#include "ExpertParallelComm.h"

#include <cstring>

using namespace moe_ep;

namespace {

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
    (d == worldRank() ? stats().bytesLocal : stats().bytesRemote) += bytesPerPeer[d];
    sendTypes[d] = blocksType(send[d], sendUnit);
    recvTypes[d] = blocksType(recv[d], recvUnit);
  }
  MPI_Request request;
  if (MPI_Ialltoallw(sendBase, ones.data(), zeros.data(), sendTypes.data(), recvBase, ones.data(), zeros.data(),
                     recvTypes.data(), communicator(), &request) != MPI_SUCCESS)
    abortJob(std::string("MPI_Ialltoallw failed in the ") + what);
  waitFor(request, what);
  for (int d = 0; d < peers; ++d) {
    MPI_Type_free(&sendTypes[d]);
    MPI_Type_free(&recvTypes[d]);
  }
}

Placement placementOf(const MemRef<1> *bounds) {
  const int64_t *b = reinterpret_cast<const int64_t *>(bounds->aligned) + bounds->offset;
  return {std::vector<int64_t>(b, b + bounds->sizes[0])};
}

const int32_t *int32s(const MemRef<1> *m) { return reinterpret_cast<const int32_t *>(m->aligned) + m->offset; }

/// A [ranks, local] count buffer as exchangeCounts returns it.
std::vector<int32_t> countsOf(const MemRef<2> *m) {
  std::vector<int32_t> counts(size_t(m->sizes[0] * m->sizes[1]));
  for (int64_t s = 0; s < m->sizes[0]; ++s)
    for (int64_t e = 0; e < m->sizes[1]; ++e)
      counts[size_t(s * m->sizes[1] + e)] =
          reinterpret_cast<const int32_t *>(m->aligned)[m->offset + s * m->strides[0] + e * m->strides[1]];
  return counts;
}

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

/// Sends each rank its experts' rows; `received` gets this rank's experts'
/// rows grouped by local expert, then source rank.
void dispatchRows(MemRef<2> *rows, MemRef<1> *offsets, MemRef<1> *bounds, int64_t rank, MemRef<2> *counts,
                  MemRef<2> *received, MemRef<1> *localOffsets, int64_t keep, int64_t byWeight, MemRef<1> *weights,
                  int64_t elementBytes) {
  requireContiguousRows(rows, "sent");
  requireContiguousRows(received, "received");
  Placement p = placementOf(bounds);
  int64_t rowBytes = rows->sizes[1] * elementBytes;
  std::vector<int32_t> loff(size_t(p.local(int(rank)) + 1));
  std::vector<RowBlocks> send = ownerBlocks(p, int32s(offsets));
  std::vector<RowBlocks> recv = receivedBlocks(p, rank, countsOf(counts), loff.data());
  for (size_t e = 0; e < loff.size(); ++e)
    reinterpret_cast<int32_t *>(localOffsets->aligned)[localOffsets->offset + int64_t(e) * localOffsets->strides[0]] =
        loff[e];
  barrierForStats();
  auto start = std::chrono::steady_clock::now();
  exchangeRows(rowOf(rows, 0, elementBytes), rows->strides[0] * elementBytes, send, rowOf(received, 0, elementBytes),
               received->strides[0] * elementBytes, recv, rowBytes, "dispatch of token rows",
               stats().lastDispatchBytes);
  stats().dispatchSeconds += secondsSince(start);
  ++stats().dispatches;
  if (keep < 0)
    return;
  // A global capacity: dropped rows become zero rows, whose results are zero.
  std::vector<float> receivedWeights;
  // Every rank passes the same byWeight (the op's capacity): all of them
  // take part in the weights' exchange, or none.
  if (byWeight) {
    receivedWeights.resize(size_t(std::max<int32_t>(loff.back(), 1)));
    std::vector<int64_t> unused;
    exchangeRows(reinterpret_cast<const char *>(reinterpret_cast<float *>(weights->aligned) + weights->offset),
                 weights->strides[0] * int64_t(sizeof(float)), send,
                 reinterpret_cast<char *>(receivedWeights.data()), int64_t(sizeof(float)), recv, sizeof(float),
                 "dispatch of row weights", unused);
  }
  for (int64_t row : droppedRows(loff, keep, byWeight ? receivedWeights.data() : nullptr))
    std::memset(rowOf(received, row, elementBytes), 0, size_t(rowBytes));
}

/// Sends each source rank its rows' results back, into the plan's layout.
void returnRows(MemRef<2> *rows, MemRef<2> *counts, MemRef<1> *offsets, MemRef<1> *bounds, int64_t rank,
                MemRef<2> *result, int64_t elementBytes) {
  requireContiguousRows(rows, "returned");
  requireContiguousRows(result, "result");
  Placement p = placementOf(bounds);
  const int32_t *off = int32s(offsets);
  int64_t rowBytes = result->sizes[1] * elementBytes;
  std::vector<RowBlocks> send = receivedBlocks(p, rank, countsOf(counts), nullptr);
  std::vector<RowBlocks> recv = ownerBlocks(p, off);
  barrierForStats();
  auto start = std::chrono::steady_clock::now();
  exchangeRows(rowOf(rows, 0, elementBytes), rows->strides[0] * elementBytes, send, rowOf(result, 0, elementBytes),
               result->strides[0] * elementBytes, recv, rowBytes, "return of expert results",
               stats().lastReturnBytes);
  stats().returnSeconds += secondsSince(start);
  ++stats().returns;
  // Rows no rank computed (zero-computation experts, padding) are zero.
  for (int64_t r = off[p.bounds.back()]; r < result->sizes[0]; ++r)
    std::memset(rowOf(result, r, elementBytes), 0, size_t(rowBytes));
}

/// Every rank's [R, W] block of columns side by side in `result`
/// ([R, ranks * W]): one MPI_Iallgather whose receive datatype is a
/// column block of the result, so each block lands in place.
void gatherColumns(MemRef<2> *input, MemRef<2> *result, int64_t elementBytes) {
  requireContiguousRows(input, "gathered");
  requireContiguousRows(result, "joined");
  int64_t rows = input->sizes[0], blockBytes = input->sizes[1] * elementBytes;
  if (result->sizes[0] != rows || result->sizes[1] != input->sizes[1] * worldSize())
    abortJob("the joined rows of a column gather are " + std::to_string(result->sizes[0]) + " x " +
             std::to_string(result->sizes[1]) + ", not " + std::to_string(rows) + " x " +
             std::to_string(worldSize()) + " blocks of " + std::to_string(input->sizes[1]));
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
  stats().bytesLocal += rows * blockBytes;
  stats().bytesRemote += rows * blockBytes * (worldSize() - 1);
  stats().lastGatherBytes.assign(size_t(worldSize()), rows * blockBytes);
  barrierForStats();
  auto start = std::chrono::steady_clock::now();
  MPI_Request request;
  if (MPI_Iallgather(rowOf(input, 0, elementBytes), 1, sendType, rowOf(result, 0, elementBytes), 1, recvType, communicator(),
                     &request) != MPI_SUCCESS)
    abortJob("MPI_Iallgather failed in the gather of column blocks");
  waitFor(request, "gather of column blocks");
  stats().gatherSeconds += secondsSince(start);
  ++stats().gathers;
  MPI_Type_free(&sendType);
  MPI_Type_free(&block);
  MPI_Type_free(&recvType);
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
  if (worldSize() != ranks) {
    std::string message = "this expert-parallel program was compiled for " + std::to_string(ranks) +
                          " ranks but runs in " + std::to_string(worldSize()) +
                          " process(es); run it as `mpirun -np " + std::to_string(ranks) + " ...`";
    moeRuntimeSetCallError(message.c_str());
    return -1;
  }
  return worldRank();
}

/// Fills counts[s][e] (rows source rank s sends this rank for its local
/// expert e) and returns their sum: the rows this rank receives.
int64_t _mlir_ciface_moeEpExchangeCounts(MemRef<1> *offsets, MemRef<1> *bounds, int64_t rank, MemRef<2> *counts) {
  Placement p = placementOf(bounds);
  std::vector<int32_t> received = exchangeCounts(p, int32s(offsets), rank);
  int64_t local = p.local(int(rank)), total = 0;
  int32_t *out = reinterpret_cast<int32_t *>(counts->aligned) + counts->offset;
  for (int s = 0; s < p.ranks(); ++s)
    for (int64_t e = 0; e < local; ++e) {
      out[s * counts->strides[0] + e * counts->strides[1]] = received[size_t(s * local + e)];
      total += received[size_t(s * local + e)];
    }
  return total;
}

/// The plan rows of all ranks (k per token): what a global capacity counts.
int64_t _mlir_ciface_moeEpGlobalRows(int64_t planRows) { return globalRows(planRows); }

MOE_EP_ELEMENT_ENTRY_POINTS(moeEp, f32, 4)
MOE_EP_ELEMENT_ENTRY_POINTS(moeEp, f16, 2)
MOE_EP_ELEMENT_ENTRY_POINTS(moeEp, bf16, 2)

} // extern "C"
