//===- RaiseMoeLayers.cpp - dropless JAX MoE layers to moe.layer ----------===//
//
// The dropless MoE layer as MaxText and Mixtral ports write it in JAX:
//
//   probs = softmax(x @ wr); vals, idx = top_k(probs, k); [vals /= sum(vals)]
//   flat = idx.reshape(-1); order = argsort(flat); tok = order // k
//   xs = x[tok]; sizes = bincount(flat, length=E)
//   h = silu(ragged_dot(xs, w1, sizes)) * ragged_dot(xs, w3, sizes)
//   y = ragged_dot(h, w2, sizes) * vals.reshape(-1)[order][:, None]
//   out = zeros_like(x).at[tok].add(y)
//
// is matched backwards from the final scatter-add, after inlining and after
// ragged_dot's CPU expansion was raised, and replaced by one moe.layer
// (softmax top-k routing, a SwiGLU FFN group). Every link is checked,
// including the index wrapping JAX adds to x[i] (i < 0 ? i + n : i) and
// its floor division; a scatter-add that looks like a combine but differs
// somewhere stays as plain ops with a remark saying where.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

#include <cmath>
#include <tuple>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

/// jnp.take(..., mode="fill") of a row gather g: select(0 <= i <= n - 1,
/// g, fill) over g's indices i; returns g, or `v` unchanged.
Value withoutFillGuard(Value v) {
  auto select = v.getDefiningOp<shlo::SelectOp>();
  auto gather = select ? select.getOnTrue().getDefiningOp<shlo::GatherOp>() : nullptr;
  if (!gather || !splatValue(select.getOnFalse()))
    return v;
  Value pred = rowValue(select.getPred());
  auto all = pred ? pred.getDefiningOp<shlo::ReduceOp>() : nullptr;
  auto both = all && all.getInputs().size() == 1 ? all.getInputs()[0].getDefiningOp<shlo::AndOp>() : nullptr;
  auto lower = both ? both.getLhs().getDefiningOp<shlo::CompareOp>() : nullptr;
  auto upper = both ? both.getRhs().getDefiningOp<shlo::CompareOp>() : nullptr;
  int64_t rows = cast<RankedTensorType>(gather.getOperand().getType()).getDimSize(0);
  Value index = gather.getStartIndices();
  if (!lower || !upper || lower.getComparisonDirection() != shlo::ComparisonDirection::GE ||
      upper.getComparisonDirection() != shlo::ComparisonDirection::LE || lower.getLhs() != index ||
      upper.getLhs() != index || !isSplat(lower.getRhs(), 0) || !isSplat(upper.getRhs(), static_cast<double>(rows - 1)))
    return v;
  return gather.getResult();
}

/// h = silu(xs @ w1) * (xs @ w3) into `down` = ragged_dot(h, w2), all over
/// the same groups: fills the weights of `layer`; returns the gate
/// projection (its lhs are the experts' input rows, its group sizes the
/// layer's).
FailureOr<chlo::RaggedDotOp> matchGroupedFfn(chlo::RaggedDotOp down, RecognisedLayer &layer, NoMatch &fail) {
  Value sizes = down.getGroupSizes();
  layer.w2 = down.getRhs();
  auto glu = def<shlo::MulOp>(down.getLhs(), fail, "the down projection's input");
  if (failed(glu))
    return failure();
  chlo::RaggedDotOp gate, up;
  for (auto [a, b] : {std::pair{glu->getLhs(), glu->getRhs()}, std::pair{glu->getRhs(), glu->getLhs()}}) {
    Value g = siluInput(a);
    auto gOp = g ? g.getDefiningOp<chlo::RaggedDotOp>() : nullptr;
    auto uOp = b.getDefiningOp<chlo::RaggedDotOp>();
    if (gOp && uOp) {
      gate = gOp;
      up = uOp;
    }
  }
  if (!gate || gate.getLhs() != up.getLhs() || gate.getGroupSizes() != sizes || up.getGroupSizes() != sizes) {
    fail.why = "the expert activation is not silu(xs @ w1) * (xs @ w3) over the combine's groups";
    return failure();
  }
  layer.w1 = gate.getRhs();
  layer.w3 = up.getRhs();
  return gate;
}

/// The grouped FFN into `down` (matchGroupedFfn) and its input rows,
/// xs = a[i] (or jnp.take(a, i, mode="fill"): sorted slots are in range):
/// the gather and its index i.
struct GatheredRows {
  shlo::GatherOp gather;
  Value index;
};
FailureOr<GatheredRows> groupedFfnInputRows(chlo::RaggedDotOp down, RecognisedLayer &layer, NoMatch &fail) {
  FailureOr<chlo::RaggedDotOp> gate = matchGroupedFfn(down, layer, fail);
  if (failed(gate))
    return failure();
  auto xs = def<shlo::GatherOp>(withoutFillGuard(gate->getLhs()), fail, "the experts' input rows");
  if (failed(xs))
    return failure();
  FailureOr<Value> index = rowGather(*xs, fail);
  if (failed(index))
    return failure();
  return GatheredRows{*xs, *index};
}

/// `v` = argsort(keys): result 1 of a stable ascending sort of (keys,
/// iota); returns keys.
FailureOr<Value> stableArgsortKeys(Value v, NoMatch &fail, const char *what) {
  auto sort = def<shlo::SortOp>(v, fail, what);
  if (failed(sort))
    return failure();
  auto payload = sort->getInputs().size() == 2 ? sort->getInputs()[1].getDefiningOp<shlo::IotaOp>() : nullptr;
  Block &cmp = sort->getComparator().front();
  auto lt = llvm::hasNItems(cmp, 2) ? dyn_cast<shlo::CompareOp>(cmp.front()) : nullptr;
  if (!payload || cast<OpResult>(v).getResultNumber() != 1 || !sort->getIsStable() || !lt ||
      lt.getComparisonDirection() != shlo::ComparisonDirection::LT || lt.getLhs() != cmp.getArgument(0) ||
      lt.getRhs() != cmp.getArgument(1)) {
    fail.why = std::string(what) + " is not a stable argsort";
    return failure();
  }
  return sort->getInputs()[0];
}

/// order = argsort(flat) with flat = idx.reshape(-1) of the routing's
/// top-k, and sizes = bincount(flat, length=E): the slots grouped by
/// expert and each group's size.
LogicalResult matchSlotGroups(Value order, Value sizes, chlo::TopKOp topk, RecognisedLayer &layer, NoMatch &fail) {
  FailureOr<Value> keys = stableArgsortKeys(order, fail, "the slot order");
  if (failed(keys))
    return failure();
  auto flat = def<shlo::ReshapeOp>(*keys, fail, "the sorted expert ids");
  if (failed(flat))
    return failure();
  if (flat->getOperand() != topk.getIndices()) {
    fail.why = "the sorted expert ids are not the top-k indices";
    return failure();
  }
  // sizes = bincount(flat, length=E): ones scatter-added into zeros.
  Value counts = sizes;
  if (auto convert = counts.getDefiningOp<shlo::ConvertOp>())
    counts = convert.getOperand();
  auto bincount = def<shlo::ScatterOp>(counts, fail, "the group sizes");
  if (failed(bincount))
    return failure();
  Value binIndex = bincount->getInputs().size() == 1 ? rowValue(bincount->getScatterIndices()) : nullptr;
  Value binned = binIndex ? unwrapIndex(binIndex) : nullptr;
  if (auto clip = binned ? binned.getDefiningOp<shlo::MaxOp>() : nullptr; clip && isSplat(clip.getLhs(), 0))
    binned = clip.getRhs();
  if (!binned || binned != flat->getResult() || !isSplat(bincount->getInputs()[0], 0) ||
      !isSplat(bincount->getUpdates()[0], 1) || !isAddBody(bincount->getUpdateComputation())) {
    fail.why = "the group sizes are not bincount of the expert ids";
    return failure();
  }
  if (cast<RankedTensorType>(sizes.getType()).getDimSize(0) != routerExperts(layer) ||
      failed(checkLayerShapes(layer, fail))) {
    if (fail.why.empty())
      fail.why = "the group sizes do not count the router's experts";
    return failure();
  }
  return success();
}

FailureOr<RecognisedLayer> matchDropless(shlo::ScatterOp combine, NoMatch &fail) {
  RecognisedLayer layer;
  // out = zeros[T, H].at[tok].add(y * w[:, None])
  shlo::ScatterDimensionNumbersAttr sd = combine.getScatterDimensionNumbers();
  if (combine.getInputs().size() != 1 || !isSplat(combine.getInputs()[0], 0) || !isAddBody(combine.getUpdateComputation()) ||
      sd.getUpdateWindowDims() != ArrayRef<int64_t>{1} || sd.getInsertedWindowDims() != ArrayRef<int64_t>{0} ||
      sd.getScatterDimsToOperandDims() != ArrayRef<int64_t>{0} || sd.getIndexVectorDim() != 1 ||
      cast<RankedTensorType>(combine.getInputs()[0].getType()).getRank() != 2) {
    fail.why = "not a row scatter-add into zeros";
    return failure();
  }
  Value tokIndex = rowValue(combine.getScatterIndices());
  if (!tokIndex) {
    fail.why = "the combine indices are not one token per row";
    return failure();
  }
  Value tok = unwrapIndex(tokIndex);
  auto weighted = def<shlo::MulOp>(combine.getUpdates()[0], fail, "the combined rows");
  if (failed(weighted))
    return failure();
  Value y = weighted->getLhs(), rowWeights = rowValue(weighted->getRhs());
  auto down = y.getDefiningOp<chlo::RaggedDotOp>();
  if (!down || !rowWeights) {
    fail.why = "the combined rows are not a ragged_dot scaled per row";
    return failure();
  }
  // xs = x[tok]
  FailureOr<GatheredRows> xs = groupedFfnInputRows(down, layer, fail);
  if (failed(xs))
    return failure();
  if (xs->index != tok) {
    fail.why = "the rows gathered for the experts are not the rows combined";
    return failure();
  }
  layer.x = xs->gather.getOperand();
  // The routing: vals, idx = top_k(softmax(x @ wr), k).
  auto w = def<shlo::GatherOp>(rowWeights, fail, "the per-row combine weight");
  if (failed(w))
    return failure();
  FailureOr<Value> order = rowGather(*w, fail);
  if (failed(order))
    return failure();
  auto flatVals = def<shlo::ReshapeOp>(w->getOperand(), fail, "the flattened gate weights");
  if (failed(flatVals))
    return failure();
  FailureOr<chlo::TopKOp> routed = matchSoftmaxTopK(flatVals->getOperand(), layer.x, layer, fail);
  if (failed(routed))
    return failure();
  // tok = order // k.
  FailureOr<Value> slot = floorDivided(tok, layer.k, fail);
  if (failed(slot))
    return failure();
  if (*slot != *order) {
    fail.why = "the token index is not the sorted slot // k";
    return failure();
  }
  if (failed(matchSlotGroups(*order, down.getGroupSizes(), *routed, layer, fail)))
    return failure();
  return layer;
}

/// jnp.repeat(x, k, axis=0): x broadcast to [T, k, H] and reshaped to
/// [T k, H]; returns x, or null.
Value repeatedRows(Value v, int64_t k) {
  auto reshape = v.getDefiningOp<shlo::ReshapeOp>();
  auto spread = reshape ? reshape.getOperand().getDefiningOp<shlo::BroadcastInDimOp>() : nullptr;
  if (!spread || spread.getBroadcastDimensions() != ArrayRef<int64_t>{0, 2} ||
      cast<RankedTensorType>(spread.getType()).getDimSize(1) != k)
    return nullptr;
  return spread.getOperand();
}

/// The rows [T, k, H] and weights [T, k] of a per-token sum over slots:
/// einsum('tkh,tk->th') as a dot_general (batch t, contract k), or
/// (rows * w[..., None]).sum(1) as a reduce of a product.
std::optional<std::pair<Value, Value>> slotSumOperands(Operation *combine) {
  auto isSlotRows = [](Value r) { return cast<RankedTensorType>(r.getType()).getRank() == 3; };
  auto isSlotWeights = [](Value w) { return cast<RankedTensorType>(w.getType()).getRank() == 2; };
  if (auto dot = dyn_cast<shlo::DotGeneralOp>(combine)) {
    shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
    for (auto [r, w, rb, wb, rc, wc] :
         {std::tuple(dot.getLhs(), dot.getRhs(), d.getLhsBatchingDimensions(), d.getRhsBatchingDimensions(),
                     d.getLhsContractingDimensions(), d.getRhsContractingDimensions()),
          std::tuple(dot.getRhs(), dot.getLhs(), d.getRhsBatchingDimensions(), d.getLhsBatchingDimensions(),
                     d.getRhsContractingDimensions(), d.getLhsContractingDimensions())})
      if (isSlotRows(r) && isSlotWeights(w) && rb == ArrayRef<int64_t>{0} && wb == ArrayRef<int64_t>{0} &&
          rc == ArrayRef<int64_t>{1} && wc == ArrayRef<int64_t>{1})
        return std::pair(withoutConverts(r), w);
    return std::nullopt;
  }
  auto sum = dyn_cast<shlo::ReduceOp>(combine);
  if (!sum || sum.getInputs().size() != 1 || sum.getDimensions() != ArrayRef<int64_t>{1} ||
      !isAddBody(sum.getBody()))
    return std::nullopt;
  auto mul = sum.getInputs()[0].getDefiningOp<shlo::MulOp>();
  for (auto [r, b] : mul ? SmallVector<std::pair<Value, Value>>{{mul.getLhs(), mul.getRhs()}, {mul.getRhs(), mul.getLhs()}}
                         : SmallVector<std::pair<Value, Value>>{}) {
    SmallVector<int64_t> dims;
    Value w = broadcastChainSource(b, dims);
    if (isSlotRows(r) && isSlotWeights(w) && dims == SmallVector<int64_t>{0, 1})
      return std::pair(withoutConverts(r), w);
  }
  return std::nullopt;
}

/// A scatter body that keeps the update (`.at[i].set(u)`).
bool isSetBody(Region &body) {
  Block &block = body.front();
  return block.getNumArguments() == 2 && llvm::hasSingleElement(block) &&
         block.getTerminator()->getNumOperands() == 1 && block.getTerminator()->getOperand(0) == block.getArgument(1);
}

/// MaxText's dropless layer (permute / unpermute around ragged_dot):
///   order = argsort(idx.reshape(-1)); xs = repeat(x, k)[order]
///   (or x[order // k]); o = ffn(xs) over bincount groups
///   y = einsum('tkh,tk->th', o[argsort(order)].reshape(T, k, H), w)
/// matched backwards from the final sum over slots. The rows may also go
/// back by zeros.at[order].set(o), the sum be (rows * w[..., None]).sum(1).
FailureOr<RecognisedLayer> matchUnpermuted(Operation *combine, NoMatch &fail) {
  RecognisedLayer layer;
  std::optional<std::pair<Value, Value>> operands = slotSumOperands(combine);
  if (!operands) {
    fail.why = "not a sum over slots of the rows weighted by [T, k] weights";
    return failure();
  }
  auto [rows, weights] = *operands;
  auto perSlot = def<shlo::ReshapeOp>(rows, fail, "the rows per slot");
  if (failed(perSlot))
    return failure();
  // The rows in slot order: o[argsort(order)], or zeros.at[order].set(o).
  Value unsorted = withoutFillGuard(perSlot->getOperand()), sorted;
  FailureOr<Value> order = failure();
  if (auto put = unsorted.getDefiningOp<shlo::ScatterOp>()) {
    shlo::ScatterDimensionNumbersAttr sd = put.getScatterDimensionNumbers();
    Value at = put.getInputs().size() == 1 ? rowValue(put.getScatterIndices()) : Value();
    if (!at || !isSplat(put.getInputs()[0], 0) || !isSetBody(put.getUpdateComputation()) ||
        sd.getUpdateWindowDims() != ArrayRef<int64_t>{1} || sd.getInsertedWindowDims() != ArrayRef<int64_t>{0} ||
        sd.getScatterDimsToOperandDims() != ArrayRef<int64_t>{0}) {
      fail.why = "the rows are not put back by a row scatter into zeros";
      return failure();
    }
    order = unwrapIndex(at);
    sorted = put.getUpdates()[0];
  } else {
    auto gathered = def<shlo::GatherOp>(unsorted, fail, "the unsorted rows");
    if (failed(gathered))
      return failure();
    FailureOr<Value> inverse = rowGather(*gathered, fail);
    if (failed(inverse))
      return failure();
    order = stableArgsortKeys(unwrapIndex(*inverse), fail, "the unsort order");
    if (failed(order))
      return failure();
    sorted = gathered->getOperand();
  }
  if (!order->getDefiningOp<shlo::SortOp>()) {
    fail.why = "the rows are not put back by argsort of the slot order (its inverse)";
    return failure();
  }
  auto down = sorted.getDefiningOp<chlo::RaggedDotOp>();
  if (!down) {
    fail.why = "the unsorted rows are not a ragged_dot";
    return failure();
  }
  // The routing first: it fills `layer` afresh.
  FailureOr<chlo::TopKOp> routed = topKRouting(withoutConverts(weights), layer, fail);
  if (failed(routed))
    return failure();
  // xs = repeat(x, k)[order] or x[order // k].
  FailureOr<GatheredRows> xs = groupedFfnInputRows(down, layer, fail);
  if (failed(xs))
    return failure();
  Value slotIndex = unwrapIndex(xs->index);
  Value x = repeatedRows(xs->gather.getOperand(), layer.k);
  if (x && slotIndex == *order) {
    // xs = repeat(x, k)[order]
  } else if (FailureOr<Value> slot = floorDivided(slotIndex, layer.k, fail); succeeded(slot) && *slot == *order) {
    x = xs->gather.getOperand();
  } else {
    fail.why = "the experts' input rows are not the sorted slots' tokens (repeat(x, k)[order] or x[order // k])";
    return failure();
  }
  if (x != layer.x) {
    fail.why = "the experts' input rows are not the router's input";
    return failure();
  }
  if (failed(matchSlotGroups(*order, down.getGroupSizes(), *routed, layer, fail)))
    return failure();
  return layer;
}

/// take_along_axis(scores, idx, axis=-1) as JAX gathers it (a batched
/// gather, the out-of-range lanes set to NaN); returns scores and the
/// top-k op whose indices are read.
FailureOr<std::pair<Value, chlo::TopKOp>> takeAlongLastAxis(Value v, NoMatch &fail) {
  if (auto select = v.getDefiningOp<shlo::SelectOp>(); select && splatValue(select.getOnFalse()) &&
                                                         std::isnan(*splatValue(select.getOnFalse())))
    v = select.getOnTrue();
  auto gather = v.getDefiningOp<shlo::GatherOp>();
  if (!gather) {
    fail.why = "the routing weights are not the scores taken at the selected experts";
    return failure();
  }
  shlo::GatherDimensionNumbersAttr d = gather.getDimensionNumbers();
  auto reshape = gather.getStartIndices().getDefiningOp<shlo::ReshapeOp>();
  Value ids = reshape ? unwrapIndex(reshape.getOperand()) : nullptr;
  auto topk = ids ? ids.getDefiningOp<chlo::TopKOp>() : nullptr;
  if (d.getOperandBatchingDims() != ArrayRef<int64_t>{0} || d.getStartIndicesBatchingDims() != ArrayRef<int64_t>{0} ||
      d.getStartIndexMap() != ArrayRef<int64_t>{1} || d.getCollapsedSliceDims() != ArrayRef<int64_t>{1} ||
      !d.getOffsetDims().empty() || d.getIndexVectorDim() != 2 || !topk || ids != topk.getIndices()) {
    fail.why = "the routing weights are not take_along_axis(scores, top-k indices)";
    return failure();
  }
  return std::pair<Value, chlo::TopKOp>{gather.getOperand(), topk};
}

} // namespace

/// DeepSeek-V3 routing of `x` (the HF reference, written in JAX):
///   scores = sigmoid(x @ wr); biased = scores + bias
///   group_score = top_k(biased.reshape(T, G, E/G), 2).values.sum(-1)
///   groups = top_k(group_score, TG).indices
///   mask = repeat(one_hot(groups, G).sum(1), E/G)
///   idx = top_k(where(mask > 0, biased, -inf), k).indices
///   w = take_along_axis(scores, idx); w = w / w.sum(-1) * scale
/// `vals` is w; fills `layer` and returns the final top-k.
FailureOr<chlo::TopKOp> mlir::moe::stablehlo_raise::matchGroupedSigmoidTopK(Value vals, Value x, RecognisedLayer &layer, NoMatch &fail) {
  if (auto mul = vals.getDefiningOp<shlo::MulOp>()) {
    for (auto [v, c] : {std::pair{mul.getLhs(), mul.getRhs()}, std::pair{mul.getRhs(), mul.getLhs()}})
      if (std::optional<double> scale = splatValue(c)) {
        layer.scale = *scale;
        vals = v;
      }
  }
  if (auto div = vals.getDefiningOp<shlo::DivOp>()) {
    Value sumRow = rowValue(div.getRhs());
    auto sum = sumRow ? sumRow.getDefiningOp<shlo::ReduceOp>() : nullptr;
    if (sum && sum.getInputs()[0] == div.getLhs() && sum.getDimensions() == ArrayRef<int64_t>{1} &&
        isAddBody(sum.getBody())) {
      layer.normalize = true;
      vals = div.getLhs();
    }
  }
  FailureOr<std::pair<Value, chlo::TopKOp>> taken = takeAlongLastAxis(vals, fail);
  if (failed(taken))
    return failure();
  auto [scores, topk] = *taken;
  layer.k = topk.getK();
  Value z = sigmoidInput(scores);
  if (!z || failed(routerLogits(z, x, layer, fail))) {
    fail.why = "the routing scores are not sigmoid(x @ router_weight)";
    return failure();
  }
  layer.sigmoid = true;
  // The selection input: biased scores, masked to the best groups.
  Value selected = topk.getOperand();
  Value biased = selected;
  if (auto masked = selected.getDefiningOp<shlo::SelectOp>()) {
    std::optional<double> fill = splatValue(masked.getOnFalse());
    auto positive = masked.getPred().getDefiningOp<shlo::CompareOp>();
    if (!fill || !std::isinf(*fill) || *fill > 0 || !positive ||
        positive.getComparisonDirection() != shlo::ComparisonDirection::GT || !isSplat(positive.getRhs(), 0)) {
      fail.why = "the selection is masked by something other than the chosen groups";
      return failure();
    }
    biased = masked.getOnTrue();
    // mask = repeat(one_hot(groups, G).sum(1), E / G)
    auto repeat = positive.getLhs().getDefiningOp<shlo::ReshapeOp>();
    SmallVector<int64_t> dims;
    Value groupMask = repeat ? broadcastChainSource(repeat.getOperand(), dims) : nullptr;
    auto count = groupMask ? groupMask.getDefiningOp<shlo::ReduceOp>() : nullptr;
    Value groupIds = count && count.getDimensions() == ArrayRef<int64_t>{1} && isAddBody(count.getBody())
                         ? oneHotIds(count.getInputs()[0])
                         : nullptr;
    auto groupTopK = groupIds ? groupIds.getDefiningOp<chlo::TopKOp>() : nullptr;
    if (dims != SmallVector<int64_t>{0, 1} || !groupTopK || groupIds != groupTopK.getIndices()) {
      fail.why = "the expert mask is not the repeated one-hot of the top groups";
      return failure();
    }
    // group_score = top_k(biased.reshape(T, G, E/G), 2).values.sum(-1)
    auto groupSum = groupTopK.getOperand().getDefiningOp<shlo::ReduceOp>();
    auto top2 = groupSum ? groupSum.getInputs()[0].getDefiningOp<chlo::TopKOp>() : nullptr;
    auto grouped = top2 ? top2.getOperand().getDefiningOp<shlo::ReshapeOp>() : nullptr;
    if (!groupSum || groupSum.getDimensions() != ArrayRef<int64_t>{2} || !isAddBody(groupSum.getBody()) || !top2 ||
        top2.getK() != 2 || groupSum.getInputs()[0] != top2.getValues() || !grouped ||
        grouped.getOperand() != biased) {
      fail.why = "the group score is not the sum of each group's top two biased scores";
      return failure();
    }
    layer.numGroups = cast<RankedTensorType>(grouped.getType()).getDimSize(1);
    layer.topkGroups = groupTopK.getK();
  }
  // biased = scores + bias (a selection-only bias [E]).
  auto add = biased.getDefiningOp<shlo::AddOp>();
  if (add) {
    for (auto [a, b] : {std::pair{add.getLhs(), add.getRhs()}, std::pair{add.getRhs(), add.getLhs()}}) {
      SmallVector<int64_t> dims;
      Value bias = broadcastChainSource(b, dims);
      if (a == scores && cast<RankedTensorType>(bias.getType()).getRank() == 1 && dims == SmallVector<int64_t>{1})
        layer.selectionBias = bias;
    }
  }
  if (biased != scores && !layer.selectionBias) {
    fail.why = "the selection scores are not the routing scores plus a per-expert bias";
    return failure();
  }
  return topk;
}

namespace {

} // namespace

/// The shared expert added to the routed output: swiglu(x @ s1, x @ s3) @ s2,
/// when the routed experts are SwiGLU too (the layer's shared expert has
/// their activation; another one stays plain ops).
bool mlir::moe::stablehlo_raise::matchSharedExpert(Value v, RecognisedLayer &layer) {
  if (layer.activation != Activation::swiglu)
    return false;
  auto down = v.getDefiningOp<shlo::DotGeneralOp>();
  if (!down || down.getDotDimensionNumbers().getLhsContractingDimensions() != ArrayRef<int64_t>{1} ||
      down.getDotDimensionNumbers().getRhsContractingDimensions() != ArrayRef<int64_t>{0})
    return false;
  auto glu = down.getLhs().getDefiningOp<shlo::MulOp>();
  if (!glu)
    return false;
  auto projection = [&](Value p) -> Value {
    auto dot = p ? p.getDefiningOp<shlo::DotGeneralOp>() : nullptr;
    if (!dot || dot.getLhs() != layer.x || dot.getDotDimensionNumbers().getLhsContractingDimensions() !=
                                               ArrayRef<int64_t>{1} ||
        dot.getDotDimensionNumbers().getRhsContractingDimensions() != ArrayRef<int64_t>{0})
      return nullptr;
    return dot.getRhs();
  };
  for (auto [a, b] : {std::pair{glu.getLhs(), glu.getRhs()}, std::pair{glu.getRhs(), glu.getLhs()}}) {
    Value s1 = projection(siluInput(a)), s3 = projection(b);
    if (s1 && s3 && s1.getType() == s3.getType()) {
      layer.s1 = s1;
      layer.s3 = s3;
      layer.s2 = down.getRhs();
      return true;
    }
  }
  return false;
}

namespace {

/// A dense top-k-masked mixture: every expert computed for every token and
/// weighted by a gate that is zero off the top-k (JAX code that avoids
/// dispatch):
///   h = silu(x @ w1[e]) * (x @ w3[e])             [T, E, F]
///   out = einsum("tef,efh->th", h * gate[..., None], w2)
/// with gate = sum_k one_hot(idx_k) * vals_k from softmax top-k routing.
FailureOr<RecognisedLayer> matchDenseMixture(shlo::DotGeneralOp out, NoMatch &fail) {
  RecognisedLayer layer;
  shlo::DotDimensionNumbersAttr d = out.getDotDimensionNumbers();
  if (!d.getLhsBatchingDimensions().empty() || d.getLhsContractingDimensions() != ArrayRef<int64_t>{1, 2} ||
      d.getRhsContractingDimensions() != ArrayRef<int64_t>{0, 1}) {
    fail.why = "not an expert down projection";
    return failure();
  }
  layer.w2 = out.getRhs();
  // scaled = h * gate[..., None], as a batched dot_general or a multiply.
  Value h, gate;
  if (auto scale = out.getLhs().getDefiningOp<shlo::DotGeneralOp>()) {
    shlo::DotDimensionNumbersAttr sd = scale.getDotDimensionNumbers();
    if (sd.getLhsBatchingDimensions() == ArrayRef<int64_t>{0, 1} &&
        sd.getRhsBatchingDimensions() == ArrayRef<int64_t>{0, 1} && sd.getLhsContractingDimensions().empty()) {
      h = scale.getLhs();
      gate = scale.getRhs();
    }
  } else if (auto mul = out.getLhs().getDefiningOp<shlo::MulOp>()) {
    SmallVector<int64_t> dims;
    for (auto [a, b] : {std::pair{mul.getLhs(), mul.getRhs()}, std::pair{mul.getRhs(), mul.getLhs()}}) {
      Value source = broadcastChainSource(b, dims);
      if (source != b && dims == SmallVector<int64_t>{0, 1}) {
        h = a;
        gate = source;
      }
    }
  }
  if (!h) {
    fail.why = "the expert outputs are not scaled by a [tokens, experts] gate";
    return failure();
  }
  Value vals, idx;
  if (failed(denseTopKGate(gate, vals, idx, fail)))
    return failure();
  auto glu = def<shlo::MulOp>(h, fail, "the expert activation");
  if (failed(glu))
    return failure();
  for (auto [a, b] : {std::pair{glu->getLhs(), glu->getRhs()}, std::pair{glu->getRhs(), glu->getLhs()}}) {
    Value g = siluInput(a);
    auto gateDot = g ? g.getDefiningOp<shlo::DotGeneralOp>() : nullptr;
    if (!gateDot)
      continue;
    layer.x = gateDot.getLhs();
    layer.w1 = perExpertProjection(g, layer.x);
    layer.w3 = perExpertProjection(b, layer.x);
    if (layer.w1 && layer.w3)
      break;
  }
  if (!layer.w1 || !layer.w3) {
    fail.why = "the expert activation is not silu(x @ w1) * (x @ w3) for every expert";
    return failure();
  }
  NoMatch softmaxFail;
  FailureOr<chlo::TopKOp> routed = matchSoftmaxTopK(vals, layer.x, layer, softmaxFail);
  if (failed(routed)) {
    routed = matchGroupedSigmoidTopK(vals, layer.x, layer, fail);
    if (failed(routed)) {
      fail.why = softmaxFail.why + " (softmax routing), and " + fail.why + " (sigmoid group routing)";
      return failure();
    }
  }
  if (idx != routed->getIndices()) {
    fail.why = "the gate's expert ids are not the top-k indices of its weights";
    return failure();
  }
  if (failed(checkLayerShapes(layer, fail)))
    return failure();
  return layer;
}

} // namespace

unsigned mlir::moe::stablehlo_raise::raiseDenseMixtures(Operation *root, const RaiseOptions &options) {
  SmallVector<shlo::DotGeneralOp> downs;
  root->walk([&](shlo::DotGeneralOp dot) {
    // Candidates: contractions over (experts, ffn) of a [T, E, F] tensor.
    auto lhs = cast<RankedTensorType>(dot.getLhs().getType());
    if (lhs.getRank() == 3 && dot.getDotDimensionNumbers().getLhsContractingDimensions() == ArrayRef<int64_t>{1, 2})
      downs.push_back(dot);
  });
  unsigned raised = 0;
  for (shlo::DotGeneralOp down : downs) {
    NoMatch fail;
    FailureOr<RecognisedLayer> layer = matchDenseMixture(down, fail);
    if (failed(layer)) {
      emitRemark(down.getLoc()) << "dense expert mixture not raised to moe.layer: " << fail.why
                                << "; it stays as plain ops";
      continue;
    }
    // routed + shared: the layer takes the shared expert and replaces the sum.
    Operation *replaced = down;
    if (down->hasOneUse())
      if (auto sum = dyn_cast<shlo::AddOp>(*down->getUsers().begin())) {
        Value other = sum.getLhs() == down.getResult() ? sum.getRhs() : sum.getLhs();
        if (matchSharedExpert(other, *layer))
          replaced = sum;
      }
    replaceWithLayer(replaced, replaced->getResult(0), *layer, options);
    ++raised;
  }
  return raised;
}

unsigned mlir::moe::stablehlo_raise::raiseDroplessLayers(Operation *root, const RaiseOptions &options) {
  SmallVector<shlo::ScatterOp> combines;
  root->walk([&](shlo::ScatterOp s) { combines.push_back(s); });
  unsigned raised = 0;
  // MaxText's unpermute: a sum over slots of ragged_dot rows put back in
  // token order.
  SmallVector<Operation *> unpermutes;
  root->walk([&](Operation *op) {
    std::optional<std::pair<Value, Value>> operands = slotSumOperands(op);
    auto reshape = operands ? operands->first.getDefiningOp<shlo::ReshapeOp>() : nullptr;
    Operation *back = reshape ? withoutFillGuard(reshape.getOperand()).getDefiningOp() : nullptr;
    Value source = isa_and_nonnull<shlo::GatherOp>(back)    ? back->getOperand(0)
                   : isa_and_nonnull<shlo::ScatterOp>(back) ? cast<shlo::ScatterOp>(back).getUpdates()[0]
                                                            : Value();
    if (source && source.getDefiningOp<chlo::RaggedDotOp>())
      unpermutes.push_back(op);
  });
  for (Operation *combine : unpermutes) {
    NoMatch fail;
    FailureOr<RecognisedLayer> layer = matchUnpermuted(combine, fail);
    if (failed(layer)) {
      emitRemark(combine->getLoc()) << "MoE combine not raised to moe.layer: " << fail.why
                                   << "; it stays as plain ops";
      continue;
    }
    replaceWithLayer(combine, combine->getResult(0), *layer, options);
    ++raised;
  }
  for (shlo::ScatterOp combine : combines) {
    // Only scatter-adds of weighted ragged_dot rows are candidates; others
    // (bincount, plain .at[].add) are not MoE combines.
    auto weighted = combine.getUpdates().size() == 1 ? combine.getUpdates()[0].getDefiningOp<shlo::MulOp>() : nullptr;
    if (!weighted || !(weighted.getLhs().getDefiningOp<chlo::RaggedDotOp>()))
      continue;
    NoMatch fail;
    FailureOr<RecognisedLayer> layer = matchDropless(combine, fail);
    if (failed(layer)) {
      emitRemark(combine.getLoc()) << "MoE combine not raised to moe.layer: " << fail.why
                                   << "; it stays as plain ops";
      continue;
    }
    replaceWithLayer(combine, combine.getResult(0), *layer, options);
    ++raised;
  }
  return raised;
}
