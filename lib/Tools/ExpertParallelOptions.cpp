//===- ExpertParallelOptions.cpp - --ranks and friends --------------------===//

#include "moe/Tools/ExpertParallelOptions.h"
#include "moe/Support/ArrayData.h"
#include "moe/Support/Npy.h"

#include <cmath>

bool mlir::moe::setExpertParallelOptions(int64_t ranks, const std::string &placement, bool placementGiven,
                                         const std::string &profile, int64_t replicas,
                                         MoeOptimizeOptions &options, std::string &error) {
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
  options.ranks = ranks;
  options.placement = placement;
  options.expertLoads = loads;
  options.replicas = replicas;
  return true;
}
