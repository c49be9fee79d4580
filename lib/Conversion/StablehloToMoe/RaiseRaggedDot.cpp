//===- RaiseRaggedDot.cpp - JAX's masked-dense ragged_dot back to chlo ----===//
//
// On the CPU JAX expands lax.ragged_dot(lhs [M, K], rhs [G, K, N], sizes [G])
// into (jax/_src/lax/lax.py, _ragged_dot_general_impl):
//
//   incl = cumsum(sizes)                  reduce_window add, window G, pad [G-1, 0]
//   excl = concatenate(zeros[0:1], incl[0:G-1])
//   rows = iota dim 1 : [G, M, K]
//   mask = and(compare LE (bcast(excl), rows), compare LT (rows, bcast(incl)))
//   out  = dot_general(select(mask, bcast(lhs) : [G, M, K], 0), rhs,
//                      contracting_dims = [2, 0] x [1, 0])
//
// which is exactly the grouped matmul: every piece is checked before the
// dot_general is replaced.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"
#include "dialects/stablehlo/StablehloDialect.h"

#include "mlir/IR/Matchers.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

/// `v` broadcast along dim `dim` only (operand rank 1 into `dim`), or null.
Value broadcastSource(Value v, ArrayRef<int64_t> dims) {
  auto bcast = v.getDefiningOp<shlo::BroadcastInDimOp>();
  if (!bcast || bcast.getBroadcastDimensions() != dims)
    return nullptr;
  return bcast.getOperand();
}

/// Whether `excl` is [0, incl[0], ..., incl[G-2]].
bool isExclusiveOf(Value excl, Value incl) {
  auto concat = excl.getDefiningOp<shlo::ConcatenateOp>();
  if (!concat || concat.getInputs().size() != 2 || concat.getDimension() != 0)
    return false;
  auto head = concat.getInputs()[0].getDefiningOp<shlo::SliceOp>();
  auto tail = concat.getInputs()[1].getDefiningOp<shlo::SliceOp>();
  if (!head || !tail || !isSplat(head.getOperand(), 0) || tail.getOperand() != incl)
    return false;
  int64_t n = cast<RankedTensorType>(incl.getType()).getDimSize(0);
  return head.getStartIndices() == ArrayRef<int64_t>{0} && head.getLimitIndices() == ArrayRef<int64_t>{1} &&
         tail.getStartIndices() == ArrayRef<int64_t>{0} && tail.getLimitIndices() == ArrayRef<int64_t>{n - 1} &&
         tail.getStrides() == ArrayRef<int64_t>{1};
}

shlo::CompareOp signedCompare(Value v, shlo::ComparisonDirection dir) {
  auto compare = v.getDefiningOp<shlo::CompareOp>();
  if (!compare || compare.getComparisonDirection() != dir ||
      compare.getCompareType().value_or(shlo::ComparisonType::SIGNED) != shlo::ComparisonType::SIGNED)
    return nullptr;
  return compare;
}

/// The group sizes of a row mask `excl[g] <= row < incl[g]` over
/// [G, M, K], rows an iota along dim 1; null if `mask` is not one.
Value groupSizesOfMask(Value mask) {
  auto both = mask.getDefiningOp<shlo::AndOp>();
  if (!both)
    return nullptr;
  shlo::CompareOp lower = signedCompare(both.getLhs(), shlo::ComparisonDirection::LE);
  shlo::CompareOp upper = signedCompare(both.getRhs(), shlo::ComparisonDirection::LT);
  if (!lower || !upper || lower.getRhs() != upper.getLhs())
    return nullptr;
  auto rows = lower.getRhs().getDefiningOp<shlo::IotaOp>();
  if (!rows || rows.getIotaDimension() != 1)
    return nullptr;
  Value excl = broadcastSource(lower.getLhs(), {0}), incl = broadcastSource(upper.getRhs(), {0});
  if (!excl || !incl || !isExclusiveOf(excl, incl))
    return nullptr;
  return cumsumRowsSource(incl);
}

/// The chlo.ragged_dot a masked-dense dot_general computes, built before
/// it, or null.
Value raiseMaskedDot(shlo::DotGeneralOp dot) {
  shlo::DotDimensionNumbersAttr dims = dot.getDotDimensionNumbers();
  auto rhsType = cast<RankedTensorType>(dot.getRhs().getType());
  if (!dims.getLhsBatchingDimensions().empty() || rhsType.getRank() != 3)
    return nullptr;
  SmallVector<std::pair<int64_t, int64_t>> pairs;
  for (auto [l, r] : llvm::zip(dims.getLhsContractingDimensions(), dims.getRhsContractingDimensions()))
    pairs.push_back({l, r});
  llvm::sort(pairs);
  if (pairs != SmallVector<std::pair<int64_t, int64_t>>{{0, 0}, {2, 1}})
    return nullptr;
  auto select = dot.getLhs().getDefiningOp<shlo::SelectOp>();
  if (!select || !isSplat(select.getOnFalse(), 0))
    return nullptr;
  Value lhs = broadcastSource(select.getOnTrue(), {1, 2});
  Value sizes = groupSizesOfMask(select.getPred());
  if (!lhs || !sizes)
    return nullptr;
  auto sizesType = cast<RankedTensorType>(sizes.getType());
  if (sizesType.getDimSize(0) != rhsType.getDimSize(0))
    return nullptr;
  OpBuilder b(dot);
  MLIRContext *ctx = b.getContext();
  auto raggedDims = chlo::RaggedDotDimensionNumbersAttr::get(ctx, {}, {}, {1}, {1}, {0}, {0});
  return chlo::RaggedDotOp::create(b, dot.getLoc(), dot.getType(), lhs, dot.getRhs(), sizes, raggedDims, nullptr);
}

} // namespace

unsigned mlir::moe::stablehlo_raise::raiseRaggedDots(Operation *root) {
  SmallVector<shlo::DotGeneralOp> dots;
  root->walk([&](shlo::DotGeneralOp dot) { dots.push_back(dot); });
  unsigned raised = 0;
  for (shlo::DotGeneralOp dot : dots)
    if (Value ragged = raiseMaskedDot(dot)) {
      dot.getResult().replaceAllUsesWith(ragged);
      dot->erase();
      ++raised;
    }
  return raised;
}
