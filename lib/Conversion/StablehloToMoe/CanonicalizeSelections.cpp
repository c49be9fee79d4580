//===- CanonicalizeSelections.cpp - argmax/argsort selections as top_k ----===//
//
// Routing code selects experts with lax.top_k, but also with jnp.argmax
// (Switch, top-1), an argsort cut to its first k, and reads the selected
// scores back with jnp.max or take_along_axis, or thresholds the scores at
// the k-th largest taken from a full jnp.sort. Each becomes chlo.top_k, the
// one selection the layer matchers read. Every rewrite is exact: a stable
// descending sort, argmax's first-maximum rule and top_k's lower-index-first
// ties pick the same indices.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

/// `v` is `arg` as JAX's sort comparators read a float key: -0.0 made +0.0
/// (select(k == 0, 0, k)) and every NaN made one NaN (select(k != k, NaN, k)).
bool isCanonicalKeyOf(Value v, Value arg) {
  while (v != arg) {
    auto select = v.getDefiningOp<shlo::SelectOp>();
    auto test = select ? select.getPred().getDefiningOp<shlo::CompareOp>() : nullptr;
    if (!test)
      return false;
    // The tests read the key or the argument itself (same value there).
    Value k = select.getOnFalse();
    auto isKey = [&](Value t) { return t == k || t == arg; };
    bool zero = test.getComparisonDirection() == shlo::ComparisonDirection::EQ && isKey(test.getLhs()) &&
                isSplat(test.getRhs(), 0) && isSplat(select.getOnTrue(), 0);
    bool nan = test.getComparisonDirection() == shlo::ComparisonDirection::NE && isKey(test.getLhs()) &&
               test.getRhs() == test.getLhs() && isNaNSplat(select.getOnTrue());
    if (!zero && !nan)
      return false;
    v = k;
  }
  return true;
}

/// The order a sort comparator imposes on its first input: GT (descending)
/// or LT (ascending) of the first key against the second, nothing else.
std::optional<shlo::ComparisonDirection> sortDirection(Region &comparator) {
  Block &block = comparator.front();
  Operation *ret = block.getTerminator();
  auto compare = ret->getNumOperands() == 1 ? ret->getOperand(0).getDefiningOp<shlo::CompareOp>() : nullptr;
  // A TOTALORDER compare is taken as top_k's order: chlo.top_k's own
  // expansion (JAX's composite) sorts so.
  if (!compare || block.getNumArguments() < 2 || !isCanonicalKeyOf(compare.getLhs(), block.getArgument(0)) ||
      !isCanonicalKeyOf(compare.getRhs(), block.getArgument(1)))
    return std::nullopt;
  shlo::ComparisonDirection d = compare.getComparisonDirection();
  if (d != shlo::ComparisonDirection::GT && d != shlo::ComparisonDirection::LT)
    return std::nullopt;
  return d;
}

bool isIotaAlong(Value v, int64_t dim) {
  auto iota = v.getDefiningOp<shlo::IotaOp>();
  return iota && static_cast<int64_t>(iota.getIotaDimension()) == dim &&
         isa<IntegerType>(cast<RankedTensorType>(iota.getType()).getElementType());
}

/// chlo.top_k of `scores` with its results shaped and typed as `values`
/// and `indices` want (a reshape drops argmax's unit dim; indices convert to
/// the wanted integer type).
struct TopKResults {
  Value values, indices;
};
TopKResults buildTopK(OpBuilder &b, Location loc, Value scores, int64_t k, Type valuesType, Type indicesType) {
  auto type = cast<RankedTensorType>(scores.getType());
  SmallVector<int64_t> shape(type.getShape());
  shape.back() = k;
  auto topk = chlo::TopKOp::create(b, loc, RankedTensorType::get(shape, type.getElementType()),
                                   RankedTensorType::get(shape, b.getI32Type()), scores, b.getI64IntegerAttr(k));
  auto shaped = [&](Value v, Type want) -> Value {
    auto wantType = cast<RankedTensorType>(want);
    auto have = cast<RankedTensorType>(v.getType());
    if (have.getElementType() != wantType.getElementType())
      v = shlo::ConvertOp::create(b, loc, have.clone(wantType.getElementType()), v);
    if (have.getShape() != wantType.getShape())
      v = shlo::ReshapeOp::create(b, loc, wantType, v);
    return v;
  };
  return {shaped(topk.getValues(), valuesType), shaped(topk.getIndices(), indicesType)};
}

/// Is `scores` what a router produces (logits x @ w, or their softmax or
/// sigmoid)? argmax is rewritten only there: its NaN rule (the first NaN
/// wins) is top_k's only where no NaN reaches it.
bool isRouterScore(Value scores) {
  NoMatch quiet;
  Value v = withoutConverts(scores);
  if (FailureOr<Value> logits = softmaxInput(v, quiet); succeeded(logits))
    v = withoutConverts(*logits);
  else if (Value logits = sigmoidInput(v))
    v = withoutConverts(logits);
  return static_cast<bool>(v.getDefiningOp<shlo::DotGeneralOp>());
}

/// The body of jnp.argmax's two-input reduce: the value operand wins when
/// it is greater or NaN, the index operand also on equal values with the
/// smaller index. Block arguments: (value, index) of the accumulator, then
/// of the element.
bool isArgmaxBody(Region &body) {
  Block &block = body.front();
  if (block.getNumArguments() != 4)
    return false;
  Value a = block.getArgument(0), ai = block.getArgument(1), b = block.getArgument(2), bi = block.getArgument(3);
  auto compares = [](Value v, shlo::ComparisonDirection d, Value l, Value r) {
    auto c = v.getDefiningOp<shlo::CompareOp>();
    return c && c.getComparisonDirection() == d && c.getLhs() == l && c.getRhs() == r;
  };
  auto isOr = [](Value v, function_ref<bool(Value)> p, function_ref<bool(Value)> q) {
    auto o = v.getDefiningOp<shlo::OrOp>();
    return o && ((p(o.getLhs()) && q(o.getRhs())) || (q(o.getLhs()) && p(o.getRhs())));
  };
  auto valueWins = [&](Value v) {
    return isOr(
        v, [&](Value c) { return compares(c, shlo::ComparisonDirection::GT, a, b); },
        [&](Value c) { return compares(c, shlo::ComparisonDirection::NE, a, a); });
  };
  auto tieToSmaller = [&](Value v) {
    auto both = v.getDefiningOp<shlo::AndOp>();
    return both && compares(both.getLhs(), shlo::ComparisonDirection::EQ, a, b) &&
           compares(both.getRhs(), shlo::ComparisonDirection::LT, ai, bi);
  };
  Operation *ret = block.getTerminator();
  if (ret->getNumOperands() != 2)
    return false;
  auto valueSelect = ret->getOperand(0).getDefiningOp<shlo::SelectOp>();
  auto indexSelect = ret->getOperand(1).getDefiningOp<shlo::SelectOp>();
  return valueSelect && indexSelect && valueWins(valueSelect.getPred()) && valueSelect.getOnTrue() == a &&
         valueSelect.getOnFalse() == b && indexSelect.getOnTrue() == ai && indexSelect.getOnFalse() == bi &&
         isOr(indexSelect.getPred(), valueWins, tieToSmaller);
}

/// jnp.max(scores, -1): a one-input max reduce from -inf over the last dim.
bool isRowMax(shlo::ReduceOp reduce, Value scores) {
  if (reduce.getInputs().size() != 1 || reduce.getInputs()[0] != scores || !reducesLastDim(reduce) ||
      !isSplat(reduce.getInitValues()[0], -std::numeric_limits<double>::infinity()))
    return false;
  Block &block = reduce.getBody().front();
  auto max = dyn_cast<shlo::MaxOp>(block.front());
  return max && block.getTerminator()->getOperand(0) == max.getResult();
}

} // namespace

bool mlir::moe::stablehlo_raise::isLastDimArgmax(shlo::ReduceOp reduce) {
  if (reduce.getInputs().size() != 2)
    return false;
  auto type = cast<RankedTensorType>(reduce.getInputs()[0].getType());
  return isa<FloatType>(type.getElementType()) && reducesLastDim(reduce) &&
         isIotaAlong(reduce.getInputs()[1], type.getRank() - 1) &&
         isSplat(reduce.getInitValues()[0], -std::numeric_limits<double>::infinity()) &&
         isSplat(reduce.getInitValues()[1], 0) && isArgmaxBody(reduce.getBody());
}

namespace {

/// jnp.argmax(scores, -1) of router scores -> top_k(scores, 1).indices;
/// jnp.max of the same scores -> its values.
LogicalResult argmaxAsTopK(shlo::ReduceOp reduce) {
  if (!isLastDimArgmax(reduce) || !isRouterScore(reduce.getInputs()[0]))
    return failure();
  Value scores = reduce.getInputs()[0];
  OpBuilder b(reduce);
  b.setInsertionPointAfterValue(scores); // before any jnp.max of the scores
  TopKResults top = buildTopK(b, reduce.getLoc(), scores, 1, reduce.getResult(0).getType(),
                              reduce.getResult(1).getType());
  reduce.getResult(0).replaceAllUsesWith(top.values);
  reduce.getResult(1).replaceAllUsesWith(top.indices);
  for (Operation *user : llvm::make_early_inc_range(scores.getUsers()))
    if (auto max = dyn_cast<shlo::ReduceOp>(user); max && max != reduce && isRowMax(max, scores))
      max.getResult(0).replaceAllUsesWith(top.values); // left dead: the caller walks the reduces
  reduce->erase();
  return success();
}

/// select(in range, gather(v, top-k indices), NaN): JAX's fill mode
/// (jnp.take, take_along_axis) around a gather whose indices are top-k
/// indices, which are always in range (v has at least the top-k's E
/// rows) -> the gather.
LogicalResult dropFillOfTopKGather(shlo::SelectOp select) {
  auto gather = select.getOnTrue().getDefiningOp<shlo::GatherOp>();
  if (!gather || !isNaNSplat(select.getOnFalse()) || !topKOfIndices(gather.getStartIndices()))
    return failure();
  ArrayRef<int64_t> map = gather.getDimensionNumbers().getStartIndexMap();
  if (map.size() != 1)
    return failure();
  int64_t size = cast<RankedTensorType>(gather.getOperand().getType()).getDimSize(map[0]);
  chlo::TopKOp topk = topKOfIndices(gather.getStartIndices());
  if (ShapedType::isDynamic(size) || !isInRangeTest(select.getPred(), gather.getStartIndices(), size) ||
      cast<RankedTensorType>(topk.getOperand().getType()).getShape().back() > size)
    return failure();
  select.getResult().replaceAllUsesWith(gather.getResult());
  select->erase();
  return success();
}

/// The logits `scores` is softmax or sigmoid of (an order-preserving map
/// of each row), or null.
Value monotoneScoreInput(Value scores) {
  NoMatch quiet;
  if (FailureOr<Value> logits = softmaxInput(scores, quiet); succeeded(logits))
    return *logits;
  return sigmoidInput(scores);
}

/// take_along_axis(scores, top_k(scores).indices, -1): a gather of one
/// element per (leading index, slot) -> top_k's values. Also with the
/// top-k taken of the logits that `scores` is the softmax or sigmoid of:
/// both keep each row's order, so the selection is top_k(scores)'s, which
/// then replaces it (the indices' other users read it too). Only a tie
/// that rounding creates (two logits a few ulps apart, equal scores) can
/// pick the other of two equally weighted experts.
LogicalResult takeAlongAsTopKValues(shlo::GatherOp gather) {
  Value scores = gather.getOperand();
  auto type = cast<RankedTensorType>(scores.getType());
  int64_t rank = type.getRank();
  chlo::TopKOp topk = topKOfIndices(gather.getStartIndices());
  if (!topk || gather.getType() != topk.getValues().getType())
    return failure();
  bool ofLogits = topk.getOperand() != scores;
  if (ofLogits && (topk.getOperand() != monotoneScoreInput(scores) || !isRouterScore(scores)))
    return failure();
  shlo::GatherDimensionNumbersAttr d = gather.getDimensionNumbers();
  auto leading = llvm::to_vector(llvm::seq<int64_t>(0, rank - 1));
  if (d.getOperandBatchingDims() != ArrayRef<int64_t>(leading) ||
      d.getStartIndicesBatchingDims() != ArrayRef<int64_t>(leading) ||
      d.getStartIndexMap() != ArrayRef<int64_t>{rank - 1} || d.getCollapsedSliceDims() != ArrayRef<int64_t>{rank - 1} ||
      !d.getOffsetDims().empty() || llvm::any_of(gather.getSliceSizes(), [](int64_t s) { return s != 1; }))
    return failure();
  if (ofLogits) {
    OpBuilder b(topk);
    b.setInsertionPointAfterValue(scores);
    auto selection = chlo::TopKOp::create(b, topk.getLoc(), topk.getValues().getType(), topk.getIndices().getType(),
                                          scores, topk.getKAttr());
    topk.getIndices().replaceAllUsesWith(selection.getIndices());
    topk = selection;
  }
  gather.getResult().replaceAllUsesWith(topk.getValues());
  gather->erase();
  return success();
}

/// jnp.sort(scores)[..., c:c+1] of router scores, the j-th largest score
/// of each row (j = E - c ascending, c + 1 descending) -> top_k(scores,
/// j).values[..., j-1:j]: the same value (a threshold `scores >= kth`).
LogicalResult sortedColumnAsTopK(shlo::SortOp sort) {
  if (sort.getInputs().size() != 1)
    return failure();
  Value scores = sort.getInputs()[0];
  auto type = cast<RankedTensorType>(scores.getType());
  int64_t rank = type.getRank(), last = rank - 1;
  auto dimension = static_cast<int64_t>(sort.getDimension());
  std::optional<shlo::ComparisonDirection> direction = sortDirection(sort.getComparator());
  if ((dimension < 0 ? dimension + rank : dimension) != last || !direction || !type.hasStaticShape() ||
      !isRouterScore(scores) || sort->use_empty())
    return failure();
  int64_t size = type.getDimSize(last);
  SmallVector<std::pair<shlo::SliceOp, int64_t>> columns;
  for (Operation *user : sort->getUsers()) {
    auto slice = dyn_cast<shlo::SliceOp>(user);
    if (!slice)
      return failure();
    for (int64_t d = 0; d < last; ++d)
      if (slice.getStartIndices()[d] != 0 || slice.getLimitIndices()[d] != type.getDimSize(d))
        return failure();
    int64_t c = slice.getStartIndices()[last];
    if (slice.getLimitIndices()[last] != c + 1)
      return failure();
    columns.push_back({slice, *direction == shlo::ComparisonDirection::LT ? size - c : c + 1});
  }
  OpBuilder b(sort);
  Location loc = sort.getLoc();
  for (auto [slice, j] : columns) {
    b.setInsertionPoint(slice);
    SmallVector<int64_t> shape(type.getShape());
    shape.back() = j;
    TopKResults top = buildTopK(b, loc, scores, j, RankedTensorType::get(shape, type.getElementType()),
                                RankedTensorType::get(shape, b.getI32Type()));
    SmallVector<int64_t> starts(rank, 0), limits(type.getShape()), strides(rank, 1);
    starts[last] = j - 1;
    limits[last] = j;
    auto kth = shlo::SliceOp::create(b, loc, slice.getType(), top.values, b.getDenseI64ArrayAttr(starts),
                                     b.getDenseI64ArrayAttr(limits), b.getDenseI64ArrayAttr(strides));
    slice.getResult().replaceAllUsesWith(kth.getResult());
    slice->erase();
  }
  sort->erase();
  return success();
}

} // namespace

LogicalResult mlir::moe::stablehlo_raise::sortAsTopK(shlo::SortOp sort) {
  if (sort.getInputs().size() != 2)
    return failure();
  auto type = cast<RankedTensorType>(sort.getInputs()[0].getType());
  int64_t rank = type.getRank();
  auto dimension = static_cast<int64_t>(sort.getDimension());
  int64_t dim = dimension < 0 ? dimension + rank : dimension;
  std::optional<shlo::ComparisonDirection> direction = sortDirection(sort.getComparator());
  if (dim != rank - 1 || !direction || !isIotaAlong(sort.getInputs()[1], dim) ||
      !cast<RankedTensorType>(sort.getInputs()[1].getType()).getElementType().isInteger(32))
    return failure();
  // Ascending on -scores is descending on scores.
  Value scores = sort.getInputs()[0];
  bool negated = *direction == shlo::ComparisonDirection::LT;
  if (negated) {
    auto neg = scores.getDefiningOp<shlo::NegOp>();
    if (!neg)
      return failure();
    scores = neg.getOperand();
  }
  // Every use is a slice keeping the leading dims and [0, k) of the last.
  int64_t k = -1;
  SmallVector<shlo::SliceOp> slices;
  for (Operation *user : sort->getUsers()) {
    auto slice = dyn_cast<shlo::SliceOp>(user);
    if (!slice)
      return failure();
    for (int64_t d = 0; d < rank; ++d) {
      bool full = d < rank - 1 ? slice.getLimitIndices()[d] == type.getDimSize(d) : true;
      if (slice.getStartIndices()[d] != 0 || slice.getStrides()[d] != 1 || !full)
        return failure();
    }
    int64_t sliceK = slice.getLimitIndices()[rank - 1];
    if (k >= 0 && sliceK != k)
      return failure();
    k = sliceK;
    slices.push_back(slice);
  }
  if (k < 0)
    return failure();
  OpBuilder b(sort);
  SmallVector<int64_t> shape(type.getShape());
  shape.back() = k;
  TopKResults top = buildTopK(b, sort.getLoc(), scores, k, RankedTensorType::get(shape, type.getElementType()),
                              RankedTensorType::get(shape, b.getI32Type()));
  Value values = negated ? shlo::NegOp::create(b, sort.getLoc(), top.values.getType(), top.values) : top.values;
  for (shlo::SliceOp slice : slices) {
    unsigned which = cast<OpResult>(slice.getOperand()).getResultNumber();
    slice.getResult().replaceAllUsesWith(which == 0 ? values : top.indices);
    slice->erase();
  }
  sort->erase();
  return success();
}

void mlir::moe::stablehlo_raise::canonicalizeSelections(Operation *root) {
  SmallVector<Operation *> ops;
  root->walk([&](Operation *op) {
    if (isa<shlo::SortOp, shlo::ReduceOp>(op))
      ops.push_back(op);
  });
  for (Operation *op : ops) {
    if (auto sort = dyn_cast<shlo::SortOp>(op))
      (void)(succeeded(sortAsTopK(sort)) || succeeded(sortedColumnAsTopK(sort)));
    else
      (void)argmaxAsTopK(cast<shlo::ReduceOp>(op));
  }
  // The gathers read the new top_ks' indices.
  SmallVector<shlo::SelectOp> selects;
  root->walk([&](shlo::SelectOp select) { selects.push_back(select); });
  for (shlo::SelectOp select : selects)
    (void)dropFillOfTopKGather(select);
  SmallVector<shlo::GatherOp> gathers;
  root->walk([&](shlo::GatherOp gather) { gathers.push_back(gather); });
  for (shlo::GatherOp gather : gathers)
    (void)takeAlongAsTopKValues(gather);
}
