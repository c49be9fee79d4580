//===- RoutedExperts.cpp - the expert half of a decomposed MoE layer ------===//

#include "moe/Transforms/RoutedExperts.h"
#include "moe/Utils/ScalarMath.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;
using namespace mlir::moe;
namespace tb = mlir::moe::tensor_builders;
namespace scalar = mlir::moe::scalar;

/// Rows of the dispatch plan: E * C when padded to capacity, else T * S.
static int64_t planRows(CapacityAttr cap, int64_t tokens, int64_t slots, int64_t k, int64_t experts) {
  if (!cap || !cap.getPad())
    return ShapedType::isDynamic(tokens) ? ShapedType::kDynamic : tokens * slots;
  int64_t c = cap.perExpert(tokens, k, experts);
  return ShapedType::isDynamic(c) ? c : experts * c;
}

/// A bias is one more column of the weights, met by a column of ones in the
/// left operand: exact (the f32 accumulation adds bias · 1), and no new op.
static std::pair<Value, Value> withBias(OpBuilder &b, Location loc, Value lhs, Value weights, Value bias) {
  if (!bias)
    return {lhs, weights};
  auto lhsType = cast<RankedTensorType>(lhs.getType());
  Type element = lhsType.getElementType();
  auto onesType = RankedTensorType::get({lhsType.getDimSize(0), 1}, element);
  SmallVector<Value> dynamic;
  if (lhsType.isDynamicDim(0))
    dynamic.push_back(tb::dimSize(b, loc, lhs, 0));
  Value one = scalar::floatConst(b, loc, element, 1.0);
  Value ones = linalg::FillOp::create(b, loc, one, tb::empty(b, loc, onesType, dynamic)).getResult(0);
  auto biasType = cast<RankedTensorType>(bias.getType());
  Value column = tb::reshape(b, loc, bias, {biasType.getDimSize(0), biasType.getDimSize(1), 1});
  return {tensor::ConcatOp::create(b, loc, /*dim=*/1, ValueRange{lhs, ones}),
          tensor::ConcatOp::create(b, loc, /*dim=*/2, ValueRange{weights, column})};
}

RoutedExpertsResult mlir::moe::buildRoutedExperts(OpBuilder &b, Location loc, const RoutedExperts &r) {
  auto tokensType = cast<RankedTensorType>(r.tokens.getType());
  int64_t tokens = tokensType.getDimSize(0), hidden = tokensType.getDimSize(1);
  Type element = tokensType.getElementType();
  auto indicesType = cast<RankedTensorType>(r.indices.getType());
  int64_t slots = indicesType.getDimSize(1);
  int64_t rows = planRows(r.capacity, tokens, slots, r.k, r.numExperts);
  auto rowsOf = [&](int64_t columns) { return RankedTensorType::get({rows, columns}, element); };

  auto plan = DispatchOp::create(
      b, loc, RankedTensorType::get({rows}, b.getI32Type()),
      RankedTensorType::get({r.numExperts + 1}, b.getI32Type()), indicesType, r.weights.getType(),
      r.indices, r.weights, r.rectifyLogits, /*shared_weight=*/Value(), r.numExperts, r.capacity);
  Value grouped = PermuteOp::create(b, loc, rowsOf(hidden), r.tokens, plan.getRowToken());

  int64_t upRows = cast<RankedTensorType>(r.up.getType()).getDimSize(1);
  int64_t ffn = cast<RankedTensorType>(r.down.getType()).getDimSize(2);
  auto [upLhs, upWeights] = withBias(b, loc, grouped, r.up, r.upBias);
  Value h = GroupedMatmulOp::create(b, loc, rowsOf(upRows), upLhs, upWeights, plan.getExpertOffsets(),
                                    /*shared=*/Value());
  Value act = r.activate ? r.activate(b, loc, h, rowsOf(ffn))
                         : ActivationOp::create(b, loc, rowsOf(ffn), r.activation, h).getResult();
  auto [downLhs, downWeights] = withBias(b, loc, act, r.down, r.downBias);
  Value down = GroupedMatmulOp::create(b, loc, rowsOf(hidden), downLhs, downWeights, plan.getExpertOffsets(),
                                       /*shared=*/Value());
  Value y = CombineOp::create(b, loc, tokensType, down, plan.getSlotRow(), plan.getSlotWeight());
  return {y, plan};
}
