//===- SlotCellSelects.cpp - experts' outputs selected into slot cells ----===//
//
// JAX code can write each expert's output into the (token, slot) cells its
// top-k ids name, one jnp.where per expert over a zero [T, k, H] buffer,
// and weight the cells by the top-k weights afterwards:
//
//   cells = zeros([T, k, H])
//   for e in range(E): cells = where((idx == e)[..., None], out_e[:, None, :], cells)
//   y = einsum('tkh,tk->th', cells, w)
//
// With every expert 0..E-1 of a top-k over E scores writing, each cell is
// written exactly once, by the expert its id names (the comparisons with
// distinct experts are disjoint). So
//
//   y = sum_e out_e * sum_j where(idx[:, j] == e, w[:, j], 0)
//
// the loop over the experts that the mixture matchers read (the products
// the same, the sum in another order).
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

#include "llvm/ADT/SmallBitVector.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

/// One link of the chain: where(ids == expert, value broadcast over the
/// slots, rest).
struct CellWrite {
  int64_t expert;
  Value value; // [T, H]
  Value test;  // ids == expert, [T, k]
};

/// The source of broadcast chain `v` when it maps its dims onto `want`.
Value broadcastFrom(Value v, ArrayRef<int64_t> want) {
  SmallVector<int64_t> dims;
  Value source = broadcastChainSource(v, dims);
  return source && ArrayRef<int64_t>(dims) == want ? source : Value();
}

/// `y` = dot_general(cells [T, k, H], w [T, k]) batching T and contracting
/// k (either operand order): the writes of the chain, the ids and w, or
/// failure.
LogicalResult matchCells(shlo::DotGeneralOp dot, SmallVectorImpl<CellWrite> &writes, Value &ids, Value &w) {
  auto dims = dot.getDotDimensionNumbers();
  auto lhsType = dyn_cast<RankedTensorType>(dot.getLhs().getType());
  auto rhsType = dyn_cast<RankedTensorType>(dot.getRhs().getType());
  if (!lhsType || !rhsType || dims.getLhsBatchingDimensions() != ArrayRef<int64_t>{0} ||
      dims.getRhsBatchingDimensions() != ArrayRef<int64_t>{0} ||
      dims.getLhsContractingDimensions() != ArrayRef<int64_t>{1} ||
      dims.getRhsContractingDimensions() != ArrayRef<int64_t>{1})
    return failure();
  Value cells;
  if (lhsType.getRank() == 3 && rhsType.getRank() == 2) {
    cells = dot.getLhs();
    w = dot.getRhs();
  } else if (lhsType.getRank() == 2 && rhsType.getRank() == 3) {
    cells = dot.getRhs();
    w = dot.getLhs();
  } else {
    return failure();
  }
  // The chain, from its last write back to the zeros.
  while (auto select = cells.getDefiningOp<shlo::SelectOp>()) {
    Value test = broadcastFrom(select.getPred(), {0, 1});
    auto compare = test ? test.getDefiningOp<shlo::CompareOp>() : nullptr;
    std::optional<double> expert = compare ? splatValue(compare.getRhs()) : std::nullopt;
    Value value = broadcastFrom(select.getOnTrue(), {0, 2});
    if (!compare || compare.getComparisonDirection() != shlo::ComparisonDirection::EQ || !expert || !value ||
        (ids && compare.getLhs() != ids))
      return failure();
    ids = compare.getLhs();
    writes.push_back({static_cast<int64_t>(*expert), value, test});
    cells = select.getOnFalse();
  }
  return success(!writes.empty() && isSplat(cells, 0));
}

void rewrite(shlo::DotGeneralOp dot) {
  SmallVector<CellWrite> writes;
  Value ids, w;
  if (failed(matchCells(dot, writes, ids, w)))
    return;
  // Every expert of the top-k's scores writes, once.
  chlo::TopKOp topk = topKOfIndices(ids);
  auto scores = topk ? dyn_cast<RankedTensorType>(topk.getOperand().getType()) : nullptr;
  auto wType = cast<RankedTensorType>(w.getType());
  auto yType = dyn_cast<RankedTensorType>(dot.getType());
  if (!scores || !scores.hasStaticShape() || !yType || !yType.hasStaticShape() || !wType.hasStaticShape())
    return;
  int64_t experts = scores.getShape().back();
  llvm::SmallBitVector seen(experts);
  for (const CellWrite &write : writes) {
    if (write.expert < 0 || write.expert >= experts || seen.test(write.expert) ||
        write.value.getType() != yType)
      return;
    seen.set(write.expert);
  }
  if (!seen.all())
    return;
  OpBuilder b(dot);
  Location loc = dot.getLoc();
  Value zeros =
      shlo::ConstantOp::create(b, loc, wType, DenseElementsAttr::get(wType, b.getZeroAttr(wType.getElementType())));
  Value sum;
  // In expert order, as the loop over the experts adds them.
  llvm::sort(writes, [](const CellWrite &a, const CellWrite &b) { return a.expert < b.expert; });
  for (const CellWrite &write : writes) {
    Value masked = shlo::SelectOp::create(b, loc, wType, write.test, w, zeros);
    Value weight = sumOverDim(b, loc, masked, 1); // [T]
    Value column = shlo::BroadcastInDimOp::create(b, loc, yType, weight, b.getDenseI64ArrayAttr({0}));
    Value term = shlo::MulOp::create(b, loc, yType, column, write.value);
    sum = sum ? shlo::AddOp::create(b, loc, yType, sum, term).getResult() : term;
  }
  dot.getResult().replaceAllUsesWith(sum);
  dot->erase();
}

} // namespace

void mlir::moe::stablehlo_raise::rewriteSlotCellSelects(Operation *root) {
  SmallVector<shlo::DotGeneralOp> dots;
  root->walk([&](shlo::DotGeneralOp dot) { dots.push_back(dot); });
  for (shlo::DotGeneralOp dot : dots)
    rewrite(dot);
}
