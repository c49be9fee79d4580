//===- RoutedExperts.h - the expert half of a decomposed MoE layer -*- C++ -*-===//
//
// Given a routing (per-token slot weights and expert ids), the dispatch
// plan, the permutation into expert order, the two grouped matmuls around
// the activation, and the combine back into token order (docs/design.md 6,
// steps 3-6). moe-decompose builds a moe.layer's experts with it, and the
// ONNX Runtime MoE/QMoE converter builds its layers with it, so the
// decomposition exists once.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TRANSFORMS_ROUTEDEXPERTS_H
#define MOE_TRANSFORMS_ROUTEDEXPERTS_H

#include "dialects/moe/MoeOps.h"
#include "moe/Transforms/ExpertPlacement.h"

#include <functional>
#include <vector>

namespace mlir {
class OpBuilder;
namespace moe {

struct RoutedExperts {
  /// Expert input [T, H]; the slot weights [T, S] (f32) and expert ids
  /// [T, S] (i32) of each token.
  Value tokens, weights, indices;
  /// The router logits when capacity rectification reads them, else null.
  Value rectifyLogits;
  /// [E, U, H] (gated: U = 2F rows [gate; up]) and [E, H, F]: the weights
  /// of the FFN experts.
  Value up, down;
  /// Per-expert biases [E, U] and [E, H], or null.
  Value upBias, downBias;
  /// Number of experts the ids range over (FFN experts first; more when
  /// the layer has zero-computation experts).
  int64_t numExperts = 0, k = 1;
  CapacityAttr capacity;
  Activation activation = Activation::relu;
  /// When set, builds the activation of the up projection `h` instead of
  /// moe.activation (e.g. ONNX Runtime's parameterised SwiGLU).
  std::function<Value(OpBuilder &, Location, Value h, RankedTensorType result)> activate;
  /// Expert parallelism (moe-shard-experts): the FFN experts' placement
  /// over the ranks and the rank this code runs on. The rows go to their
  /// experts' ranks and back around the grouped matmuls, which run on this
  /// rank's experts only, with their biases (split: this rank's block of
  /// every expert, no biases).
  const ExpertPlacement *placement = nullptr;
  int64_t rank = 0;
};

struct RoutedExpertsResult {
  /// The combined expert output [T, H], in the tokens' element type.
  Value y;
  /// The combine weight of each slot [T, K] (0 where dropped).
  Value slotWeight;
};

/// Emits dispatch, permute, up matmul, activation, down matmul and combine.
RoutedExpertsResult buildRoutedExperts(OpBuilder &b, Location loc, const RoutedExperts &r);

/// The same under a split placement (MoEShard, lib/Transforms/SplitExperts.cpp):
/// every rank computes a block of every expert; bit-identical results.
RoutedExpertsResult buildSplitExperts(OpBuilder &b, Location loc, const RoutedExperts &r);

/// A constant `weights` (dense, not splat, or dense_resource) rebuilt as a
/// constant of `resultType` from the bytes `select` picks out of its raw
/// data (`keySuffix` names a resource's copy): each rank's code then holds
/// only its share. Null when `weights` is no such constant.
Value constantFromBytes(OpBuilder &b, Location loc, Value weights, RankedTensorType resultType, StringRef keySuffix,
                        function_ref<std::vector<char>(ArrayRef<char> data, int64_t elementBytes)> select);

/// Each row's priority under a global capacity (0 for padding), of which the
/// owner of an expert keeps the `C` highest, ties to the earlier row: its
/// gate weight (`drop = probs`), or minus the slot it fills among each
/// copy's `slotsPerCopy` slots (`slot_position`: every token's first choice
/// before any second choice). Null for `drop = position` (token order).
Value planRowPriorities(OpBuilder &b, Location loc, DispatchOp plan, DropPolicy drop, int64_t slotsPerCopy);

} // namespace moe
} // namespace mlir

#endif // MOE_TRANSFORMS_ROUTEDEXPERTS_H
