//===- NonNegativeAbs.cpp - abs of routing probabilities dropped ---------===//
//
// DBRX renormalises its top-k weights by their L1 norm; JAX writes
// jnp.linalg.norm(w, ord=1) and jnp.abs(w).sum() as a sum of stablehlo.abs.
// The weights are probabilities, and abs(v) = v for v >= 0 (NaN stays
// NaN), so the sum is the renormalisation the layer matchers read. v is
// known non-negative from what computes it: constants >= 0, exp, logistic,
// abs, sqrt; the values of a top_k, broadcasts, reshapes, transposes,
// slices and float converts of such a value; sums, products, quotients of
// such values, a maximum with one such operand; add/max reductions of such
// values from a non-negative start.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

#include "mlir/IR/TypeUtilities.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

bool nonNegative(Value v, int depth) {
  Operation *op = v.getDefiningOp();
  if (!op || depth > 12)
    return false;
  if (std::optional<double> splat = splatValue(v))
    return *splat >= 0;
  auto operand = [&](unsigned i) { return i < op->getNumOperands() && nonNegative(op->getOperand(i), depth + 1); };
  if (isa<shlo::ExpOp, shlo::LogisticOp, shlo::AbsOp, shlo::SqrtOp>(op))
    return true;
  if (auto top = dyn_cast<chlo::TopKOp>(op))
    return v == top.getValues() && operand(0);
  if (isa<shlo::BroadcastInDimOp, shlo::ReshapeOp, shlo::TransposeOp, shlo::SliceOp>(op))
    return operand(0);
  if (auto convert = dyn_cast<shlo::ConvertOp>(op))
    return isa<FloatType>(getElementTypeOrSelf(convert.getType())) && operand(0);
  if (isa<shlo::AddOp, shlo::MulOp, shlo::DivOp>(op))
    return operand(0) && operand(1);
  if (isa<shlo::MaxOp>(op))
    return operand(0) || operand(1);
  if (auto reduce = dyn_cast<shlo::ReduceOp>(op)) {
    Block &body = reduce.getBody().front();
    Operation *combine = body.getTerminator()->getNumOperands() == 1
                             ? body.getTerminator()->getOperand(0).getDefiningOp()
                             : nullptr;
    std::optional<double> init =
        reduce.getInitValues().size() == 1 ? splatValue(reduce.getInitValues()[0]) : std::nullopt;
    return combine && isa<shlo::AddOp, shlo::MaxOp>(combine) && init && *init >= 0 && operand(0);
  }
  return false;
}

} // namespace

void mlir::moe::stablehlo_raise::dropAbsOfNonNegative(Operation *root) {
  SmallVector<shlo::AbsOp> absolutes;
  root->walk([&](shlo::AbsOp abs) { absolutes.push_back(abs); });
  for (shlo::AbsOp abs : absolutes)
    if (nonNegative(abs.getOperand(), 0)) {
      abs.getResult().replaceAllUsesWith(abs.getOperand());
      abs->erase();
    }
}
