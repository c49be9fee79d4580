//===- ExpertParallelOptions.cpp - --ranks and friends --------------------===//

#include "moe/Tools/ExpertParallelOptions.h"
#include "moe/Support/ArrayData.h"
#include "moe/Support/Npy.h"

#include <cmath>

namespace cl = llvm::cl;

mlir::moe::ExpertParallelFlags::ExpertParallelFlags(cl::OptionCategory &category)
    : ranks("ranks",
            cl::desc("Expert parallelism: N processes (MPI ranks, `mpirun -np N`), each running the program on "
                     "its own tokens and holding its share of every layer's experts; rows travel between ranks "
                     "with MPI all-to-all (CPU only; docs/expert-parallel.md). Under mpirun, %r in the paths of "
                     "the runners' --input, --reference and --output-dir is the rank. 0: one process (default)"),
            cl::init(0), cl::cat(category)),
      placement("placement",
                cl::desc("With --ranks, which rank computes what: contiguous (default), round-robin, or balanced "
                         "(needs --expert-profile) place whole experts; split gives every rank a block of every "
                         "expert (MoEShard: for few, large experts; FFN and hidden widths split evenly)"),
                cl::init("contiguous"), cl::cat(category)),
      expertProfile("expert-profile",
                    cl::desc("With --ranks: a .npy of routed tokens per expert, [E] for every layer or [L, E] one "
                             "row per layer (moe-run --routing-profile writes it), that --placement=balanced "
                             "balances and the placement remarks report"),
                    cl::value_desc("loads.npy"), cl::cat(category)),
      replicas("replicas",
               cl::desc("With --ranks and --placement=balanced: extra copies of the hottest experts of each "
                        "layer, on other ranks (results unchanged)"),
               cl::init(0), cl::cat(category)) {}

bool mlir::moe::ExpertParallelFlags::apply(MoeOptimizeOptions &options, std::string &error) const {
  const std::string &profile = expertProfile;
  bool placementGiven = placement.getNumOccurrences() > 0;
  if (ranks < 0 || ranks > (1 << 16)) {
    error = "--ranks must be between 0 and 65536, got " + std::to_string(ranks);
    return false;
  }
  if (ranks == 0 && (placementGiven || !profile.empty() || replicas != 0)) {
    error = "--placement, --expert-profile and --replicas need --ranks";
    return false;
  }
  std::vector<double> loads;
  if (!profile.empty()) {
    npy::Array array;
    if (!npy::read(profile, array, error)) {
      error = "--expert-profile: " + error;
      return false;
    }
    if (array.shape.empty() || array.shape.size() > 2 || array.numElements() == 0) {
      error = "--expert-profile: " + profile + " must hold [E] or [layers, E] loads, got shape " +
              npy::shapeString(array.shape);
      return false;
    }
    for (int64_t i = 0; i < array.numElements(); ++i) {
      double load = npy::elementAt(array, i);
      if (!std::isfinite(load) || load < 0) {
        error = "--expert-profile: load " + std::to_string(i) + " is " + std::to_string(load) +
                "; loads are token counts (finite, at least 0)";
        return false;
      }
      loads.push_back(load);
    }
  }
  options.ranks = ranks.getValue();
  options.placement = placement.getValue();
  options.expertLoads = loads;
  options.replicas = replicas.getValue();
  return true;
}
