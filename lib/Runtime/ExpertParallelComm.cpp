//===- ExpertParallelComm.cpp - ranks, deadlines and the exchange plan ----===//
//
// MPI is initialised on first use when the host has not done it. Every
// collective is non-blocking and polled against a deadline
// (MOE_EP_TIMEOUT_S): a peer that died or left makes this rank abort the job
// with a message instead of hanging.
//
//===----------------------------------------------------------------------===//

#include "ExpertParallelComm.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sched.h>
#include <sys/resource.h>
#include <thread>

namespace moe_ep {
namespace {

MPI_Comm comm = MPI_COMM_NULL;
int rankOfThis = 0, rankCount = 1;
Stats statistics;

/// This process's peak resident memory: what a rank held at most.
long maxRssKb() {
  struct rusage usage;
  return getrusage(RUSAGE_SELF, &usage) == 0 ? usage.ru_maxrss : -1;
}

void writeStats() {
  const char *prefix = std::getenv("MOE_EP_STATS");
  if (!prefix || !*prefix)
    return;
  std::string path = std::string(prefix) + ".rank" + std::to_string(rankOfThis) + ".json";
  FILE *f = std::fopen(path.c_str(), "w");
  if (!f)
    return;
  auto list = [&](const std::vector<int64_t> &v) {
    std::string text = "[";
    for (size_t i = 0; i < v.size(); ++i)
      text += (i ? ", " : "") + std::to_string(v[i]);
    return text + "]";
  };
  const Stats &s = statistics;
  std::fprintf(f,
               "{\"rank\": %d, \"ranks\": %d, \"dispatches\": %lld, \"returns\": %lld, \"gathers\": %lld, "
               "\"bytes_remote\": %lld, \"bytes_local\": %lld, \"count_seconds\": %.9f, "
               "\"dispatch_seconds\": %.9f, \"return_seconds\": %.9f, \"gather_seconds\": %.9f, "
               "\"wait_seconds\": %.9f, \"last_dispatch_bytes\": %s, "
               "\"last_return_bytes\": %s, \"last_gather_bytes\": %s, \"max_rss_kb\": %ld}\n",
               rankOfThis, rankCount, (long long)s.dispatches, (long long)s.returns, (long long)s.gathers,
               (long long)s.bytesRemote, (long long)s.bytesLocal, s.countSeconds, s.dispatchSeconds,
               s.returnSeconds, s.gatherSeconds, s.waitSeconds, list(s.lastDispatchBytes).c_str(),
               list(s.lastReturnBytes).c_str(), list(s.lastGatherBytes).c_str(), maxRssKb());
  std::fclose(f);
}

void finalizeAtExit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized)
    MPI_Finalize();
}

} // namespace

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
  statistics.enabled = statsPrefix && *statsPrefix;
  if (statistics.enabled)
    std::atexit(writeStats);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm, &rankOfThis);
  MPI_Comm_size(comm, &rankCount);
  return true;
}

MPI_Comm communicator() { return comm; }
int worldRank() { return rankOfThis; }
int worldSize() { return rankCount; }
Stats &stats() { return statistics; }

double timeoutSeconds() {
  const char *text = std::getenv("MOE_EP_TIMEOUT_S");
  double seconds = text ? std::atof(text) : 0;
  return seconds > 0 ? seconds : 300;
}

void abortJob(const std::string &message) {
  std::fprintf(stderr, "moe expert-parallel runtime: rank %d of %d: %s\n", rankOfThis, rankCount,
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

void waitFor(MPI_Request &request, const char *what) {
  auto start = std::chrono::steady_clock::now();
  double limit = timeoutSeconds();
  for (;;) {
    int done = 0;
    if (MPI_Test(&request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      abortJob(std::string("MPI failed during the ") + what);
    if (done)
      return;
    double waited = secondsSince(start);
    if (waited > limit)
      abortJob(std::string("no answer from the other ranks after ") + std::to_string(int(limit)) +
               " s in the " + what + " (a rank died, exited early or runs another program; "
               "MOE_EP_TIMEOUT_S sets the limit)");
    // Yield for the first 20 ms (a peer that is about to arrive), then
    // sleep between polls (a peer still computing its share): ranks may
    // share cores (mpirun --oversubscribe).
    if (waited < 0.02)
      sched_yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void barrierForStats() {
  if (!statistics.enabled)
    return;
  auto start = std::chrono::steady_clock::now();
  MPI_Barrier(comm);
  statistics.waitSeconds += secondsSince(start);
}

int64_t RowBlocks::rows() const {
  int64_t n = 0;
  for (int c : count)
    n += c;
  return n;
}

std::vector<int32_t> exchangeCounts(const Placement &p, const int32_t *offsets, int64_t rank) {
  int64_t width = 0;
  for (int d = 0; d < p.ranks(); ++d)
    width = std::max(width, p.local(d));
  width = std::max<int64_t>(width, 1);
  std::vector<int32_t> send(size_t(p.ranks() * width), 0), recv(size_t(p.ranks() * width), 0);
  for (int d = 0; d < p.ranks(); ++d)
    for (int64_t e = 0; e < p.local(d); ++e) {
      int64_t expert = p.bounds[size_t(d)] + e;
      send[size_t(d * width + e)] = offsets[expert + 1] - offsets[expert];
    }
  MPI_Request request;
  barrierForStats();
  auto start = std::chrono::steady_clock::now();
  if (MPI_Ialltoall(send.data(), int(width), MPI_INT32_T, recv.data(), int(width), MPI_INT32_T, comm,
                    &request) != MPI_SUCCESS)
    abortJob("MPI_Ialltoall of the row counts failed");
  waitFor(request, "exchange of row counts");
  statistics.countSeconds += secondsSince(start);
  int64_t local = p.local(int(rank));
  std::vector<int32_t> counts(size_t(p.ranks() * local));
  for (int s = 0; s < p.ranks(); ++s)
    for (int64_t e = 0; e < local; ++e)
      counts[size_t(s * local + e)] = recv[size_t(s * width + e)];
  return counts;
}

int64_t globalRows(int64_t planRows) {
  int64_t all = 0;
  MPI_Request request;
  if (MPI_Iallreduce(&planRows, &all, 1, MPI_INT64_T, MPI_SUM, comm, &request) != MPI_SUCCESS)
    abortJob("MPI_Iallreduce of the plan rows failed");
  waitFor(request, "sum of the ranks' plan rows");
  return all;
}

std::vector<RowBlocks> receivedBlocks(const Placement &p, int64_t rank, const std::vector<int32_t> &counts,
                                      int32_t *localOffsets) {
  int64_t local = p.local(int(rank));
  std::vector<RowBlocks> blocks(size_t(p.ranks()));
  int64_t next = 0;
  for (int64_t e = 0; e < local; ++e) {
    if (localOffsets)
      localOffsets[e] = int32_t(next);
    for (int s = 0; s < p.ranks(); ++s) {
      int32_t n = counts[size_t(s * local + e)];
      if (n > 0) {
        blocks[size_t(s)].first.push_back(int(next));
        blocks[size_t(s)].count.push_back(n);
      }
      next += n;
    }
  }
  if (localOffsets)
    localOffsets[local] = int32_t(next);
  return blocks;
}

std::vector<RowBlocks> ownerBlocks(const Placement &p, const int32_t *offsets) {
  std::vector<RowBlocks> blocks(size_t(p.ranks()));
  for (int d = 0; d < p.ranks(); ++d) {
    int n = offsets[p.bounds[size_t(d) + 1]] - offsets[p.bounds[size_t(d)]];
    if (n > 0) {
      blocks[size_t(d)].first.push_back(offsets[p.bounds[size_t(d)]]);
      blocks[size_t(d)].count.push_back(n);
    }
  }
  return blocks;
}

std::vector<int64_t> droppedRows(const std::vector<int32_t> &localOffsets, int64_t keep, const float *weights) {
  std::vector<int64_t> dropped, order;
  for (size_t e = 0; e + 1 < localOffsets.size(); ++e) {
    int64_t first = localOffsets[e], n = localOffsets[e + 1] - localOffsets[e];
    if (n <= keep)
      continue;
    order.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i)
      order[size_t(i)] = first + i;
    if (weights)
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return weights[size_t(a)] > weights[size_t(b)]; });
    dropped.insert(dropped.end(), order.begin() + keep, order.end());
  }
  return dropped;
}

} // namespace moe_ep
