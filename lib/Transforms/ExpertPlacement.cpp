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
  if (name == "split")
    return PlacementPolicy::split;
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
  case PlacementPolicy::split:
    return "split";
  }
  return "";
}

SmallVector<int64_t> ExpertPlacement::slotsFor(int64_t rank) const {
  SmallVector<SmallVector<int64_t>> copies(experts);
  for (auto [slot, expert] : llvm::enumerate(order))
    copies[expert].push_back(int64_t(slot));
  SmallVector<int64_t> chosen(experts);
  for (int64_t e = 0; e < experts; ++e) {
    chosen[e] = copies[e][rank % int64_t(copies[e].size())];
    for (int64_t slot : copies[e])
      if (slot >= bounds[rank] && slot < bounds[rank + 1])
        chosen[e] = slot;
  }
  return chosen;
}

bool ExpertPlacement::isIdentity() const {
  if (slots() != experts)
    return false;
  for (auto [i, expert] : llvm::enumerate(order))
    if (expert != int64_t(i))
      return false;
  return true;
}

std::optional<ExpertPlacement> mlir::moe::placeExperts(int64_t experts, int64_t ranks, PlacementPolicy policy,
                                                       ArrayRef<double> loads, int64_t replicas, std::string &error) {
  if (ranks < 1) {
    error = "the number of ranks must be at least 1, got " + std::to_string(ranks);
    return std::nullopt;
  }
  if (policy == PlacementPolicy::split) {
    if (replicas != 0) {
      error = "placement=split puts every expert on every rank already: no replicas";
      return std::nullopt;
    }
    ExpertPlacement placement;
    placement.experts = experts;
    placement.split = true;
    placement.bounds.push_back(0);
    for (int64_t d = 0; d < ranks; ++d) {
      for (int64_t e = 0; e < experts; ++e)
        placement.order.push_back(e);
      placement.bounds.push_back(int64_t(placement.order.size()));
    }
    return placement;
  }
  if (replicas < 0 || (replicas > 0 && policy != PlacementPolicy::balanced)) {
    error = replicas < 0 ? "replicas must be at least 0, got " + std::to_string(replicas)
                         : std::string("replicated experts are placed by placement=balanced (on a routing profile)");
    return std::nullopt;
  }
  if (replicas > experts * (ranks - 1)) {
    error = std::to_string(replicas) + " replicas of " + std::to_string(experts) + " experts on " +
            std::to_string(ranks) + " ranks: at most one copy of an expert per rank, so at most " +
            std::to_string(experts * (ranks - 1)) + " replicas";
    return std::nullopt;
  }
  if (ranks > experts + replicas) {
    error = std::to_string(ranks) + " ranks for " + std::to_string(experts) + " FFN experts" +
            (replicas ? " and " + std::to_string(replicas) + " replicas" : std::string()) +
            ": a rank would own no expert; use at most " + std::to_string(experts + replicas) +
            " ranks, or replicate hot experts (placement=balanced with replicas), or split every expert over "
            "the ranks (placement=split)";
    return std::nullopt;
  }
  if (policy == PlacementPolicy::balanced && int64_t(loads.size()) != experts) {
    error = "placement=balanced needs one load per expert (" + std::to_string(experts) + "), got " +
            std::to_string(loads.size());
    return std::nullopt;
  }
  // owners[e]: the ranks of expert e's copies.
  SmallVector<SmallVector<int64_t>> owners(experts);
  switch (policy) {
  case PlacementPolicy::contiguous: {
    int64_t base = experts / ranks, extra = experts % ranks, e = 0;
    for (int64_t d = 0; d < ranks; ++d)
      for (int64_t i = 0; i < base + (d < extra ? 1 : 0); ++i)
        owners[e++].push_back(d);
    break;
  }
  case PlacementPolicy::roundRobin:
    for (int64_t e = 0; e < experts; ++e)
      owners[e].push_back(e % ranks);
    break;
  case PlacementPolicy::balanced: {
    SmallVector<int64_t> copies(experts, 1);
    for (int64_t r = 0; r < replicas; ++r) {
      int64_t best = -1;
      for (int64_t e = 0; e < experts; ++e)
        if (copies[e] < ranks && (best < 0 || loads[e] / double(copies[e]) > loads[best] / double(copies[best])))
          best = e;
      ++copies[best];
    }
    // Every copy, by load per copy (largest first; ties: lower expert).
    SmallVector<int64_t> byLoad;
    for (int64_t e = 0; e < experts; ++e)
      for (int64_t c = 0; c < copies[e]; ++c)
        byLoad.push_back(e);
    std::stable_sort(byLoad.begin(), byLoad.end(), [&](int64_t a, int64_t b) {
      return loads[a] / double(copies[a]) > loads[b] / double(copies[b]);
    });
    SmallVector<double> rankLoad(ranks, 0.0);
    SmallVector<int64_t> rankSlots(ranks, 0);
    for (int64_t e : byLoad) {
      int64_t best = -1;
      for (int64_t d = 0; d < ranks; ++d) {
        if (llvm::is_contained(owners[e], d))
          continue;
        bool better = best < 0 || (rankSlots[d] == 0 && rankSlots[best] != 0) ||
                      ((rankSlots[d] == 0) == (rankSlots[best] == 0) && rankLoad[d] < rankLoad[best]);
        if (better)
          best = d;
      }
      owners[e].push_back(best);
      rankLoad[best] += loads[e] / double(copies[e]);
      ++rankSlots[best];
    }
    break;
  }
  case PlacementPolicy::split: // placed above
    break;
  }
  ExpertPlacement placement;
  placement.experts = experts;
  placement.bounds.push_back(0);
  for (int64_t d = 0; d < ranks; ++d) {
    for (int64_t e = 0; e < experts; ++e)
      if (llvm::is_contained(owners[e], d))
        placement.order.push_back(e);
    placement.bounds.push_back(int64_t(placement.order.size()));
  }
  for (int64_t d = 0; d < ranks; ++d)
    if (placement.bounds[d + 1] == placement.bounds[d]) {
      error = "rank " + std::to_string(d) + " would own no expert";
      return std::nullopt;
    }
  return placement;
}
