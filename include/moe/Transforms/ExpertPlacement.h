//===- ExpertPlacement.h - which rank owns which experts -------*- C++ -*-===//
//
// The placement of one layer's FFN experts over the ranks of an
// expert-parallel program (moe-shard-experts): contiguous, round-robin, or
// balanced on a measured routing profile, with replicas of the hottest
// experts (DeepSeek's EPLB "redundant experts") on more than one rank; or
// split: every expert on every rank, each rank computing a block of its
// columns (MoEShard). Each copy of an expert is a slot; slots are numbered so that every rank
// owns a run of consecutive numbers, which is what the exchange ops
// (bounds) and the per-expert row groups of moe.dispatch need.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TRANSFORMS_EXPERTPLACEMENT_H
#define MOE_TRANSFORMS_EXPERTPLACEMENT_H

#include "mlir/Support/LLVM.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"

#include <algorithm>
#include <optional>
#include <string>

namespace mlir::moe {

enum class PlacementPolicy { contiguous, roundRobin, balanced, split };

std::optional<PlacementPolicy> parsePlacementPolicy(StringRef name);
StringRef placementPolicyName(PlacementPolicy policy);

/// Rank d owns slots [bounds[d], bounds[d+1]); slot i holds expert
/// order[i]. Within a rank, experts are in increasing order; an expert has
/// at most one slot per rank. Split: rank d's slots are all experts, each
/// one's d-th block of columns.
struct ExpertPlacement {
  SmallVector<int64_t> order;
  SmallVector<int64_t> bounds;
  int64_t experts = 0;
  bool split = false;

  int64_t ranks() const { return int64_t(bounds.size()) - 1; }
  int64_t slots() const { return int64_t(order.size()); }
  /// The slot that tokens of `rank` use for each expert: the expert's copy
  /// on `rank` when it has one, else copy `rank mod copies`.
  SmallVector<int64_t> slotsFor(int64_t rank) const;
  /// One slot per expert, slot e holding expert e.
  bool isIdentity() const;
  /// Split: every rank's block of `extent` columns is ceil(extent / ranks)
  /// wide; rank `rank` computes [start, end) of them (the last block may be
  /// short or empty).
  int64_t splitWidth(int64_t extent) const { return (extent + ranks() - 1) / ranks(); }
  std::pair<int64_t, int64_t> splitBlock(int64_t extent, int64_t rank) const {
    int64_t start = std::min(extent, rank * splitWidth(extent));
    return {start, std::min(extent, start + splitWidth(extent))};
  }
  /// The experts of `rank`'s slots, in increasing order.
  ArrayRef<int64_t> expertsOf(int64_t rank) const {
    return ArrayRef<int64_t>(order).slice(bounds[rank], bounds[rank + 1] - bounds[rank]);
  }
};

/// Places `experts` experts on `ranks` ranks, with `replicas` extra copies
/// (placement=balanced only); split puts every expert on every rank. `loads` (empty, or one value per expert)
/// drives `balanced`: each replica goes to the expert with the most load
/// per copy; then copies, largest load per copy first, each to a rank
/// without a copy of that expert: an empty one while there is one, else
/// the one with the least load so far (ties: the lower rank). Fails,
/// saying why in `error`, when a rank would own no expert.
std::optional<ExpertPlacement> placeExperts(int64_t experts, int64_t ranks, PlacementPolicy policy,
                                            ArrayRef<double> loads, int64_t replicas, std::string &error);

} // namespace mlir::moe

#endif // MOE_TRANSFORMS_EXPERTPLACEMENT_H
