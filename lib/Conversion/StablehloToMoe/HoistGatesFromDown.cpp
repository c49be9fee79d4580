//===- HoistGatesFromDown.cpp - the gate applied after the experts -------===//
//
// A three-operand einsum such as einsum('te,tef,efh->th', gate, h, w2)
// weights every expert's activations by its gate before the down
// projection, which then sums over the experts and the FFN width at once:
// y = sum_{e,f} (g[t,e] h[t,e,f]) w2[e,f,h]. The matchers read the layer
// the way moe.layer computes it, each expert's output weighted after its
// down projection: y = sum_e g[t,e] (sum_f h[t,e,f] w2[e,f,h]). This file
// rewrites the first into the second (tokens may be [T] or [B, S]). The two
// are equal up to the order of the sums (floating-point rounding), which is
// what the raise assumes of any spelling; only gates read from a top-k
// selection are rewritten, so other contractions keep their order.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"


using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

/// `p` = gate [tokens..., E] times h [tokens..., E, F] elementwise over the
/// gate's dims: a dot_general that batches all of the gate's dims with h's
/// leading ones and contracts nothing, or a multiply by the gate broadcast
/// along the last dim. Returns (gate, h).
std::optional<std::pair<Value, Value>> gatedActivations(Value p) {
  int64_t rank = cast<RankedTensorType>(p.getType()).getRank();
  auto leading = llvm::to_vector(llvm::seq<int64_t>(0, rank - 1));
  if (auto dot = p.getDefiningOp<shlo::DotGeneralOp>()) {
    shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
    if (!d.getLhsContractingDimensions().empty() || !d.getRhsContractingDimensions().empty() ||
        d.getLhsBatchingDimensions() != ArrayRef<int64_t>(leading) ||
        d.getRhsBatchingDimensions() != ArrayRef<int64_t>(leading))
      return std::nullopt;
    // The gate is the side with no other dims.
    for (auto [g, h] : {std::pair(dot.getLhs(), dot.getRhs()), std::pair(dot.getRhs(), dot.getLhs())})
      if (cast<RankedTensorType>(g.getType()).getRank() == rank - 1 &&
          cast<RankedTensorType>(h.getType()).getRank() == rank)
        return std::pair(g, h);
    return std::nullopt;
  }
  auto mul = p.getDefiningOp<shlo::MulOp>();
  if (!mul)
    return std::nullopt;
  for (auto [b, h] : {std::pair(mul.getLhs(), mul.getRhs()), std::pair(mul.getRhs(), mul.getLhs())}) {
    SmallVector<int64_t> dims;
    Value g = broadcastChainSource(b, dims);
    if (g != b && dims == leading && cast<RankedTensorType>(h.getType()) == cast<RankedTensorType>(p.getType()))
      return std::pair(g, h);
  }
  return std::nullopt;
}

/// y = dot_general(gate * h, w2) over (expert, ffn) -> dot_general(gate,
/// dot_general(h, w2) batched over the experts) over the experts.
LogicalResult hoistGate(shlo::DotGeneralOp down) {
  shlo::DotDimensionNumbersAttr d = down.getDotDimensionNumbers();
  Value p = down.getLhs(), w2 = down.getRhs();
  auto pType = cast<RankedTensorType>(p.getType());
  auto w2Type = cast<RankedTensorType>(w2.getType());
  int64_t rank = pType.getRank(), tokens = rank - 2;
  if (tokens < 1 || tokens > 2 || w2Type.getRank() != 3 || !d.getLhsBatchingDimensions().empty() ||
      d.getLhsContractingDimensions() != ArrayRef<int64_t>{rank - 2, rank - 1} ||
      d.getRhsContractingDimensions() != ArrayRef<int64_t>{0, 1})
    return failure();
  std::optional<std::pair<Value, Value>> gated = gatedActivations(p);
  if (!gated || !(isa_and_nonnull<chlo::TopKOp>(gated->first.getDefiningOp()) || readsTopK(gated->first)))
    return failure();
  auto [gate, h] = *gated;
  auto yType = cast<RankedTensorType>(down.getType());
  Type element = yType.getElementType();
  MLIRContext *ctx = down.getContext();
  OpBuilder b(down);
  Location loc = down.getLoc();
  // outputs[e, tokens..., H] = sum_f h[tokens..., e, f] w2[e, f, H].
  SmallVector<int64_t> outputsShape{w2Type.getDimSize(0)};
  for (int64_t t = 0; t < tokens; ++t)
    outputsShape.push_back(pType.getDimSize(t));
  outputsShape.push_back(w2Type.getDimSize(2));
  auto perExpert = shlo::DotDimensionNumbersAttr::get(ctx, /*lhsBatching=*/{rank - 2}, /*rhsBatching=*/{0},
                                                      /*lhsContracting=*/{rank - 1}, /*rhsContracting=*/{1});
  Value outputs = shlo::DotGeneralOp::create(b, loc, RankedTensorType::get(outputsShape, element), h, w2, perExpert,
                                             down.getPrecisionConfigAttr());
  // y[tokens..., H] = sum_e gate[tokens..., e] outputs[e, tokens..., H].
  auto tokenDims = llvm::to_vector(llvm::seq<int64_t>(0, tokens));
  auto outputsTokenDims = llvm::to_vector(llvm::seq<int64_t>(1, tokens + 1));
  auto overExperts = shlo::DotDimensionNumbersAttr::get(ctx, tokenDims, outputsTokenDims, /*lhsContracting=*/{tokens},
                                                        /*rhsContracting=*/{0});
  Value y = shlo::DotGeneralOp::create(b, loc, yType, gate, outputs, overExperts, down.getPrecisionConfigAttr());
  down.getResult().replaceAllUsesWith(y);
  down->erase();
  return success();
}

} // namespace

void mlir::moe::stablehlo_raise::hoistGatesFromDownProjections(Operation *root) {
  SmallVector<shlo::DotGeneralOp> dots;
  root->walk([&](shlo::DotGeneralOp dot) { dots.push_back(dot); });
  for (shlo::DotGeneralOp dot : dots)
    (void)hoistGate(dot);
}
