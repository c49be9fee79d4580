//===- DecomposeLayer.h - a moe.layer as decomposed moe ops -----*- C++ -*-===//
//
// The whole decomposition of one layer (routing, dispatch, experts,
// zero-computation experts, shared expert), which moe-decompose applies to
// every layer and moe-shard-experts applies with an expert placement.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TRANSFORMS_DECOMPOSELAYER_H
#define MOE_TRANSFORMS_DECOMPOSELAYER_H

#include "dialects/moe/MoeOps.h"
#include "moe/Transforms/ExpertPlacement.h"

namespace mlir {
class OpBuilder;
namespace moe {

/// The values that replace a layer's two results.
struct DecomposedLayer {
  Value y, logits;
};

/// Emits `layer`'s decomposition before it. With a `placement`, the FFN
/// experts are those of `rank` and the rows travel through the exchange
/// ops (the layer must have no capacity).
DecomposedLayer buildDecomposedLayer(OpBuilder &builder, LayerOp layer,
                                     const ExpertPlacement *placement = nullptr, int64_t rank = 0);

} // namespace moe
} // namespace mlir

#endif // MOE_TRANSFORMS_DECOMPOSELAYER_H
