//===- LayerRouting.h - the routing half of a moe.layer ---------*- C++ -*-===//
//
// moe-decompose and moe-merge-experts build a layer's routing the same way;
// this is that shared piece (docs/design.md 6, steps 1-2).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TRANSFORMS_LAYERROUTING_H
#define MOE_TRANSFORMS_LAYERROUTING_H

#include "dialects/moe/MoeOps.h"

namespace mlir {
class OpBuilder;
namespace moe {

/// A layer's routing, one row per routing group (per token when
/// group_size = 1): the gate weights and expert indices of the selected
/// slots, and the post-residual logits.
struct LayerRouting {
  Value weights, indices, logits;
};

/// Emits the router, scoring, selection and renormalization of `layer`
/// before it.
LayerRouting buildLayerRouting(OpBuilder &builder, LayerOp layer);

/// A ranked tensor type: the shorthand both layer rewrites build with.
inline RankedTensorType tensorOf(ArrayRef<int64_t> shape, Type element) {
  return RankedTensorType::get(shape, element);
}

/// moe.score with the Gumbel parameters of `routing` when it needs them.
Value createScore(OpBuilder &builder, Location loc, RoutingAttr routing, Value logits);

} // namespace moe
} // namespace mlir

#endif // MOE_TRANSFORMS_LAYERROUTING_H
