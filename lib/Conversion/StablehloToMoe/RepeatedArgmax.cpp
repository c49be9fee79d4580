//===- RepeatedArgmax.cpp - a top-k picked one argmax at a time -----------===//
//
// GShard, fairseq, DeepSpeed and Praxis pick a token's second expert with a
// second argmax over its scores with the first pick removed, and read each
// pick's score back through its one-hot:
//
//   i1 = argmax(g);  m1 = one_hot(i1)
//   i2 = argmax(g * (1 - m1))          (or argmax(where(m1, -inf, logits)))
//   g1 = sum(g * m1, -1);  g2 = einsum('se,se->s', g * (1 - m1), one_hot(i2))
//
// Once the first argmax is top_k(g, 1) (CanonicalizeSelections.cpp), the
// j-th argmax over the scores with picks 0..j-1 removed is column j of
// top_k(g, j + 1), and a pick's score read through its one-hot is that
// column of the top-k values: the selection the layer matchers read.
//
// Exact: removing picks keeps the other scores' order, and argmax's first
// maximum and top_k's lower-index-first ties agree. A removal by
// multiplication zeroes the pick, so it is taken only over scores that are
// never negative (softmax, sigmoid) and not NaN; should every remaining
// score underflow to 0, argmax could name a removed expert where top_k
// names another, both of score 0.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

#include "llvm/ADT/SmallBitVector.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

/// Column `column` of a top-k's indices.
struct Pick {
  chlo::TopKOp topk;
  int64_t column = 0;
};

/// `ids` = a top-k's indices [..., K] cut to column j along the last dim
/// (a slice, or the whole of a top-1) and reshaped to [...].
std::optional<Pick> pickOf(Value ids) {
  auto reshape = withoutConverts(ids).getDefiningOp<shlo::ReshapeOp>();
  if (!reshape)
    return std::nullopt;
  Value column = reshape.getOperand();
  auto columnType = cast<RankedTensorType>(column.getType());
  if (columnType.getRank() < 2 || columnType.getShape().back() != 1 ||
      reshape.getType().getShape() != columnType.getShape().drop_back())
    return std::nullopt;
  int64_t j = 0;
  if (auto slice = column.getDefiningOp<shlo::SliceOp>()) {
    if (slice.getOperand().getType().getShape().drop_back() != columnType.getShape().drop_back())
      return std::nullopt;
    j = slice.getStartIndices().back();
    column = slice.getOperand();
  }
  auto topk = column.getDefiningOp<chlo::TopKOp>();
  if (!topk || column != topk.getIndices())
    return std::nullopt;
  return Pick{topk, j};
}

/// The ids a boolean one-hot mask `pred` marks: the one-hot compare itself,
/// or a float one-hot tested `> 0`, `!= 0` or `== 1`.
Value maskIds(Value pred) {
  if (Value ids = oneHotIds(pred))
    return ids;
  auto test = pred.getDefiningOp<shlo::CompareOp>();
  if (!test)
    return nullptr;
  shlo::ComparisonDirection d = test.getComparisonDirection();
  bool set = ((d == shlo::ComparisonDirection::GT || d == shlo::ComparisonDirection::NE) && isSplat(test.getRhs(), 0)) ||
             (d == shlo::ComparisonDirection::EQ && isSplat(test.getRhs(), 1));
  return set ? oneHotIds(test.getLhs()) : nullptr;
}

/// Scores with some picks removed: multiplied by 1 - one_hot(pick), or set
/// to -inf (or the lowest float) where one_hot(pick) is set.
struct Removal {
  Value base;
  SmallVector<Pick> picks;
  bool byMultiplication = false, bySelect = false;
};

Removal removedPicks(Value v) {
  Removal r;
  while (true) {
    if (auto mul = v.getDefiningOp<shlo::MulOp>()) {
      std::optional<Pick> pick;
      Value rest;
      for (auto [keep, other] : {std::pair{mul.getLhs(), mul.getRhs()}, std::pair{mul.getRhs(), mul.getLhs()}}) {
        auto sub = keep.getDefiningOp<shlo::SubtractOp>();
        Value ids = sub && isSplat(sub.getLhs(), 1) ? oneHotIds(sub.getRhs()) : Value();
        if (ids && (pick = pickOf(ids))) {
          rest = other;
          break;
        }
      }
      if (pick) {
        r.picks.push_back(*pick);
        r.byMultiplication = true;
        v = rest;
        continue;
      }
    }
    if (auto select = v.getDefiningOp<shlo::SelectOp>()) {
      std::optional<double> fill = splatValue(select.getOnTrue());
      Value ids = fill && *fill <= -double(std::numeric_limits<float>::max()) ? maskIds(select.getPred()) : Value();
      if (std::optional<Pick> pick = ids ? pickOf(ids) : std::nullopt) {
        r.picks.push_back(*pick);
        r.bySelect = true;
        v = select.getOnFalse();
        continue;
      }
    }
    break;
  }
  r.base = v;
  return r;
}

/// The logits a router score is the softmax or sigmoid of; the value itself
/// otherwise. Either keeps each row's order.
Value orderSource(Value v) {
  NoMatch quiet;
  v = withoutConverts(v);
  if (FailureOr<Value> logits = softmaxInput(v, quiet); succeeded(logits))
    return withoutConverts(*logits);
  if (Value logits = sigmoidInput(v))
    return withoutConverts(logits);
  return v;
}

bool neverNegative(Value scores) {
  NoMatch quiet;
  Value v = withoutConverts(scores);
  return succeeded(softmaxInput(v, quiet)) || sigmoidInput(v);
}

Value columns(OpBuilder &b, Location loc, Value v, int64_t begin, int64_t end) {
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<int64_t> starts(type.getRank(), 0), limits(type.getShape()), strides(type.getRank(), 1);
  starts.back() = begin;
  limits.back() = end;
  SmallVector<int64_t> shape(type.getShape());
  shape.back() = end - begin;
  return shlo::SliceOp::create(b, loc, RankedTensorType::get(shape, type.getElementType()), v,
                               b.getDenseI64ArrayAttr(starts), b.getDenseI64ArrayAttr(limits),
                               b.getDenseI64ArrayAttr(strides));
}

/// Column j of `v` shaped and typed as `want` ([..., 1] reshaped, converted).
Value columnAs(OpBuilder &b, Location loc, Value v, int64_t j, Type want) {
  Value c = columns(b, loc, v, j, j + 1);
  auto wantType = cast<RankedTensorType>(want);
  auto have = cast<RankedTensorType>(c.getType());
  if (have.getShape() != wantType.getShape())
    c = shlo::ReshapeOp::create(b, loc, have.clone(wantType.getShape()), c);
  if (have.getElementType() != wantType.getElementType())
    c = shlo::ConvertOp::create(b, loc, wantType, c);
  return c;
}

/// argmax(scores with picks 0..k-1 of top_k(s, k) removed) -> column k of
/// top_k(s, k + 1); the top-k's own readers read its first k columns.
LogicalResult repeatedArgmaxAsTopK(shlo::ReduceOp reduce) {
  if (!isLastDimArgmax(reduce) || !reduce.getResult(0).use_empty())
    return failure();
  Removal removal = removedPicks(reduce.getInputs()[0]);
  if (removal.picks.empty())
    return failure();
  chlo::TopKOp topk = removal.picks.front().topk;
  auto valuesType = cast<RankedTensorType>(topk.getValues().getType());
  auto indicesType = cast<RankedTensorType>(topk.getIndices().getType());
  int64_t k = valuesType.getShape().back();
  llvm::SmallBitVector removed(k);
  for (const Pick &p : removal.picks) {
    if (p.topk != topk || removed.test(p.column))
      return failure();
    removed.set(p.column);
  }
  Value scores = topk.getOperand();
  if (!removed.all() || orderSource(removal.base) != orderSource(scores) ||
      (removal.byMultiplication && !neverNegative(removal.base)))
    return failure();
  auto scoresType = cast<RankedTensorType>(scores.getType());
  if (scoresType.getShape().back() <= k)
    return failure();
  OpBuilder b(topk);
  Location loc = topk.getLoc();
  SmallVector<int64_t> shape(valuesType.getShape());
  shape.back() = k + 1;
  auto wider = chlo::TopKOp::create(b, loc, valuesType.clone(shape), indicesType.clone(shape), scores,
                                    b.getI64IntegerAttr(k + 1));
  // Column slices of the old results slice the wider ones (a column stays
  // one slice of a top-k); other readers read its first k columns.
  for (auto [from, to] : {std::pair{topk.getValues(), wider.getValues()},
                          std::pair{topk.getIndices(), wider.getIndices()}}) {
    for (OpOperand &use : llvm::make_early_inc_range(from.getUses())) {
      auto slice = dyn_cast<shlo::SliceOp>(use.getOwner());
      if (!slice || slice.getType().getShape().drop_back() != valuesType.getShape().drop_back() ||
          slice.getStrides().back() != 1)
        continue;
      OpBuilder at(slice);
      slice.getResult().replaceAllUsesWith(
          columns(at, slice.getLoc(), to, slice.getStartIndices().back(), slice.getLimitIndices().back()));
      slice->erase();
    }
    if (!from.use_empty())
      from.replaceAllUsesWith(columns(b, loc, to, 0, k));
  }
  reduce.getResult(1).replaceAllUsesWith(columnAs(b, loc, wider.getIndices(), k, reduce.getResult(1).getType()));
  reduce->erase();
  topk->erase();
  return success();
}

/// The top-k's scores read at pick j through its one-hot: sum(r *
/// one_hot(i_j), -1) or einsum('...e,...e->...'), r the scores themselves
/// or with other picks removed by multiplication -> column j of the values.
LogicalResult pickedScoreAsTopKValue(Operation *op) {
  SmallVector<std::pair<Value, Value>, 2> factors;
  if (auto dot = dyn_cast<shlo::DotGeneralOp>(op)) {
    auto type = cast<RankedTensorType>(dot.getLhs().getType());
    SmallVector<int64_t> leading = llvm::to_vector(llvm::seq<int64_t>(0, type.getRank() - 1));
    shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
    if (dot.getRhs().getType() != type || d.getLhsBatchingDimensions() != ArrayRef<int64_t>(leading) ||
        d.getRhsBatchingDimensions() != ArrayRef<int64_t>(leading) ||
        d.getLhsContractingDimensions() != ArrayRef<int64_t>{type.getRank() - 1} ||
        d.getRhsContractingDimensions() != ArrayRef<int64_t>{type.getRank() - 1})
      return failure();
    factors = {{dot.getLhs(), dot.getRhs()}, {dot.getRhs(), dot.getLhs()}};
  } else if (auto sum = dyn_cast<shlo::ReduceOp>(op)) {
    auto mul = sum.getInputs().size() == 1 ? sum.getInputs()[0].getDefiningOp<shlo::MulOp>() : nullptr;
    if (!mul || !reducesLastDim(sum) || !isAddBody(sum.getBody()) || !isSplat(sum.getInitValues()[0], 0))
      return failure();
    factors = {{mul.getLhs(), mul.getRhs()}, {mul.getRhs(), mul.getLhs()}};
  } else {
    return failure();
  }
  for (auto [scores, mask] : factors) {
    Value ids = oneHotIds(mask);
    std::optional<Pick> pick = ids ? pickOf(ids) : std::nullopt;
    if (!pick)
      continue;
    // A pick removed by select reads -inf * 0 = NaN elsewhere, not 0.
    Removal removal = removedPicks(scores);
    if (removal.base != pick->topk.getOperand() || removal.bySelect ||
        (!removal.picks.empty() && !neverNegative(removal.base)) ||
        llvm::any_of(removal.picks,
                     [&](const Pick &p) { return p.topk != pick->topk || p.column == pick->column; }))
      continue;
    OpBuilder b(op);
    op->getResult(0).replaceAllUsesWith(
        columnAs(b, op->getLoc(), pick->topk.getValues(), pick->column, op->getResult(0).getType()));
    op->erase();
    return success();
  }
  return failure();
}

} // namespace

void mlir::moe::stablehlo_raise::canonicalizeRepeatedArgmax(Operation *root) {
  // In program order: the second argmax widens the top-k before the third
  // reads it.
  SmallVector<shlo::ReduceOp> reduces;
  root->walk([&](shlo::ReduceOp reduce) { reduces.push_back(reduce); });
  bool widened = false;
  for (shlo::ReduceOp reduce : reduces)
    widened |= succeeded(repeatedArgmaxAsTopK(reduce));
  if (!widened)
    return;
  SmallVector<Operation *> reads;
  root->walk([&](Operation *op) {
    if (isa<shlo::DotGeneralOp, shlo::ReduceOp>(op))
      reads.push_back(op);
  });
  for (Operation *op : reads)
    (void)pickedScoreAsTopKValue(op);
}
