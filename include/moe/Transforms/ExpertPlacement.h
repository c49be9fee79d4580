//===- ExpertPlacement.h - which rank owns which experts -------*- C++ -*-===//
//
// The placement of one layer's FFN experts over the ranks of an
// expert-parallel program (moe-shard-experts): contiguous, round-robin, or
// balanced on a measured routing profile. Experts are renumbered so that
// every rank owns a run of consecutive numbers, which is what the exchange
// ops (bounds) and the per-expert row groups of moe.dispatch need.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TRANSFORMS_EXPERTPLACEMENT_H
#define MOE_TRANSFORMS_EXPERTPLACEMENT_H

#include "mlir/Support/LLVM.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"

#include <optional>
#include <string>

namespace mlir::moe {

enum class PlacementPolicy { contiguous, roundRobin, balanced };

std::optional<PlacementPolicy> parsePlacementPolicy(StringRef name);
StringRef placementPolicyName(PlacementPolicy policy);

/// Rank d owns experts order[bounds[d]] .. order[bounds[d+1] - 1]; within a
/// rank, experts are in increasing order.
struct ExpertPlacement {
  SmallVector<int64_t> order;
  SmallVector<int64_t> bounds;

  int64_t ranks() const { return int64_t(bounds.size()) - 1; }
  /// The renumbered position of each expert (the inverse of `order`).
  SmallVector<int64_t> positions() const;
  bool isIdentity() const;
  /// The experts of `rank`, in increasing order.
  ArrayRef<int64_t> expertsOf(int64_t rank) const {
    return ArrayRef<int64_t>(order).slice(bounds[rank], bounds[rank + 1] - bounds[rank]);
  }
};

/// Places `experts` experts on `ranks` ranks. `loads` (empty, or one value
/// per expert) drives `balanced`: largest load first, each to the rank
/// with the least load so far (ties: the lower rank). Fails, saying why in
/// `error`, when a rank would own no expert.
std::optional<ExpertPlacement> placeExperts(int64_t experts, int64_t ranks, PlacementPolicy policy,
                                            ArrayRef<double> loads, std::string &error);

} // namespace mlir::moe

#endif // MOE_TRANSFORMS_EXPERTPLACEMENT_H
