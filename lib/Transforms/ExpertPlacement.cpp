//===- ExpertPlacement.cpp - which rank owns which experts ----------------===//

#include "moe/Transforms/ExpertPlacement.h"

#include "llvm/ADT/STLExtras.h"

#include <algorithm>
#include <numeric>

using namespace mlir;
using namespace mlir::moe;

std::optional<PlacementPolicy> mlir::moe::parsePlacementPolicy(StringRef name) {
  if (name == "contiguous")
    return PlacementPolicy::contiguous;
  if (name == "round-robin")
    return PlacementPolicy::roundRobin;
  if (name == "balanced")
    return PlacementPolicy::balanced;
  return std::nullopt;
}

StringRef mlir::moe::placementPolicyName(PlacementPolicy policy) {
  switch (policy) {
  case PlacementPolicy::contiguous:
    return "contiguous";
  case PlacementPolicy::roundRobin:
    return "round-robin";
  case PlacementPolicy::balanced:
    return "balanced";
  }
  return "";
}

SmallVector<int64_t> ExpertPlacement::positions() const {
  SmallVector<int64_t> position(order.size());
  for (auto [i, expert] : llvm::enumerate(order))
    position[expert] = int64_t(i);
  return position;
}

bool ExpertPlacement::isIdentity() const {
  for (auto [i, expert] : llvm::enumerate(order))
    if (expert != int64_t(i))
      return false;
  return true;
}

std::optional<ExpertPlacement> mlir::moe::placeExperts(int64_t experts, int64_t ranks, PlacementPolicy policy,
                                                       ArrayRef<double> loads, std::string &error) {
  if (ranks < 1) {
    error = "the number of ranks must be at least 1, got " + std::to_string(ranks);
    return std::nullopt;
  }
  if (ranks > experts) {
    error = std::to_string(ranks) + " ranks for " + std::to_string(experts) +
            " FFN experts: a rank would own no expert (replicated experts are not supported yet); use at most " +
            std::to_string(experts) + " ranks";
    return std::nullopt;
  }
  if (policy == PlacementPolicy::balanced && int64_t(loads.size()) != experts) {
    error = "placement=balanced needs one load per expert (" + std::to_string(experts) + "), got " +
            std::to_string(loads.size());
    return std::nullopt;
  }
  // owner[e]: the rank of expert e.
  SmallVector<int64_t> owner(experts);
  switch (policy) {
  case PlacementPolicy::contiguous: {
    int64_t base = experts / ranks, extra = experts % ranks, e = 0;
    for (int64_t d = 0; d < ranks; ++d)
      for (int64_t i = 0; i < base + (d < extra ? 1 : 0); ++i)
        owner[e++] = d;
    break;
  }
  case PlacementPolicy::roundRobin:
    for (int64_t e = 0; e < experts; ++e)
      owner[e] = e % ranks;
    break;
  case PlacementPolicy::balanced: {
    SmallVector<int64_t> byLoad(experts);
    std::iota(byLoad.begin(), byLoad.end(), 0);
    std::stable_sort(byLoad.begin(), byLoad.end(), [&](int64_t a, int64_t b) { return loads[a] > loads[b]; });
    SmallVector<double> rankLoad(ranks, 0.0);
    SmallVector<int64_t> rankExperts(ranks, 0);
    for (int64_t e : byLoad) {
      // Every rank gets one expert before any gets a second: the first
      // `ranks` experts go to empty ranks whatever their loads.
      int64_t best = 0;
      for (int64_t d = 1; d < ranks; ++d) {
        bool emptier = rankExperts[d] == 0 && rankExperts[best] != 0;
        bool lighter = (rankExperts[d] == 0) == (rankExperts[best] == 0) && rankLoad[d] < rankLoad[best];
        if (emptier || lighter)
          best = d;
      }
      owner[e] = best;
      rankLoad[best] += loads[e];
      ++rankExperts[best];
    }
    break;
  }
  }
  ExpertPlacement placement;
  placement.bounds.push_back(0);
  for (int64_t d = 0; d < ranks; ++d) {
    for (int64_t e = 0; e < experts; ++e)
      if (owner[e] == d)
        placement.order.push_back(e);
    placement.bounds.push_back(int64_t(placement.order.size()));
  }
  return placement;
}
