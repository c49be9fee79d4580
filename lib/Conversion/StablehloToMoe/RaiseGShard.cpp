//===- RaiseGShard.cpp - GShard/Switch einsum dispatch to moe.layer -------===//
//
// GShard and Switch layers as MaxText (generate_masks) and Praxis write
// them: for each slot j of a softmax top-k,
//
//   onehot_j   = one_hot(idx[:, j], E)                               [S, E]
//   position_j = cumsum(onehot_j, axis=0) - 1 + filled_j             (filled: earlier slots' counts)
//   keep_j     = (position_j < C) & (onehot_j > 0)
//   mask_j     = one_hot(idx[:, j]) x one_hot(sum(keep_j ? position_j : 0), C) x any(keep_j)
//   dispatch  += mask_j;  combine += mask_j * vals[:, j]
//
// then einsum("sm,sec->ecm", x, dispatch), the experts on [E, C, M], and
// einsum("ecm,sec->sm", y, combine). Slot j of token s is kept when fewer
// than C earlier slots (all first choices before any second choice) chose
// its expert: moe's capacity with drop = slot_position, padded rows.
// Every link is checked; a candidate that differs gets a remark.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

/// Factors of a multiply tree, each through its broadcasts and converts
/// (with the result dimensions the source lands on).
void factors(Value v, SmallVectorImpl<std::pair<Value, SmallVector<int64_t>>> &out) {
  if (auto mul = v.getDefiningOp<shlo::MulOp>()) {
    factors(mul.getLhs(), out);
    factors(mul.getRhs(), out);
    return;
  }
  // Broadcasts compose; converts (i1 -> f32 flags) are looked through.
  SmallVector<int64_t> dims;
  for (int64_t d = 0; d < cast<RankedTensorType>(v.getType()).getRank(); ++d)
    dims.push_back(d);
  while (true) {
    if (auto b = v.getDefiningOp<shlo::BroadcastInDimOp>()) {
      SmallVector<int64_t> composed;
      for (int64_t d : b.getBroadcastDimensions())
        composed.push_back(dims[d]);
      dims = composed;
      v = b.getOperand();
    } else if (auto c = v.getDefiningOp<shlo::ConvertOp>()) {
      v = c.getOperand();
    } else {
      break;
    }
  }
  out.push_back({v, dims});
}

/// One slot's mask, checked: returns the slot's expert ids column (the
/// top-k indices, slot j) and sets C and the slot's count chain.
struct SlotMask {
  Value topkIndices;
  int64_t slot = 0;
  Value onehot;  // [S, E] integer one-hot of the slot's experts
  Value filled;  // [E] slots of earlier columns per expert (zeros for the first)
};

FailureOr<SlotMask> matchSlotMask(Value mask, int64_t &capacity, NoMatch &fail) {
  SmallVector<std::pair<Value, SmallVector<int64_t>>> parts;
  factors(mask, parts);
  Value expertIds, positionOneHot, anyKept;
  for (auto &[v, dims] : parts) {
    if (dims == SmallVector<int64_t>{0, 1} && oneHotIds(v))
      expertIds = oneHotIds(v);
    else if (dims == SmallVector<int64_t>{0, 2} && oneHotIds(v))
      positionOneHot = v;
    else if (dims == SmallVector<int64_t>{0})
      anyKept = v;
  }
  if (parts.size() != 3 || !expertIds || !positionOneHot || !anyKept) {
    fail.why = "a dispatch mask is not one_hot(expert) x one_hot(position) x kept";
    return failure();
  }
  std::optional<std::pair<Value, int64_t>> column = topKColumn(expertIds);
  if (!column) {
    fail.why = "a dispatch mask's experts are not a column of the top-k indices";
    return failure();
  }
  SlotMask slot{column->first, column->second, nullptr, nullptr};
  capacity = cast<RankedTensorType>(positionOneHot.getType()).getDimSize(1);
  // kept = any(keep), position = sum(keep ? position : 0), over experts.
  if (auto convert = anyKept.getDefiningOp<shlo::ConvertOp>())
    anyKept = convert.getOperand();
  auto any = anyKept.getDefiningOp<shlo::ReduceOp>();
  auto pos = oneHotIds(positionOneHot).getDefiningOp<shlo::ReduceOp>();
  auto chosen = pos ? pos.getInputs()[0].getDefiningOp<shlo::SelectOp>() : nullptr;
  if (!any || !pos || !chosen || any.getDimensions() != ArrayRef<int64_t>{1} ||
      pos.getDimensions() != ArrayRef<int64_t>{1} || !isAddBody(pos.getBody()) ||
      chosen.getPred() != any.getInputs()[0] || !isSplat(chosen.getOnFalse(), 0)) {
    fail.why = "a slot's row is not the position its expert gave it";
    return failure();
  }
  Block &orBody = any.getBody().front();
  if (!llvm::hasNItems(orBody, 2) || !isa<shlo::OrOp>(orBody.front())) {
    fail.why = "a slot's kept flag is not any(keep)";
    return failure();
  }
  // keep = (position < C) & (onehot > 0)
  auto keep = chosen.getPred().getDefiningOp<shlo::AndOp>();
  Value position = chosen.getOnTrue();
  auto below = keep ? keep.getLhs().getDefiningOp<shlo::CompareOp>() : nullptr;
  auto isMine = keep ? keep.getRhs().getDefiningOp<shlo::CompareOp>() : nullptr;
  if (!below || !isMine || below.getComparisonDirection() != shlo::ComparisonDirection::LT ||
      below.getLhs() != position || !isSplat(below.getRhs(), static_cast<double>(capacity)) ||
      isMine.getComparisonDirection() != shlo::ComparisonDirection::GT || !isSplat(isMine.getRhs(), 0)) {
    fail.why = "a slot is not kept by position < capacity";
    return failure();
  }
  slot.onehot = isMine.getLhs();
  if (oneHotIds(slot.onehot) != expertIds) {
    fail.why = "a slot's positions count another one-hot than its experts";
    return failure();
  }
  // position = cumsum(onehot, 0) - 1 + filled[None, :]
  auto plusFilled = position.getDefiningOp<shlo::AddOp>();
  auto minusOne = plusFilled ? plusFilled.getLhs().getDefiningOp<shlo::SubtractOp>() : nullptr;
  // filled [E] broadcast over the rows (kept as the [E] value: the first
  // slot's is a zero splat broadcast to [E]).
  Value filled = plusFilled ? plusFilled.getRhs() : nullptr;
  SmallVector<int64_t> filledDims = {0, 1};
  while (auto b = filled ? filled.getDefiningOp<shlo::BroadcastInDimOp>() : nullptr) {
    if (cast<RankedTensorType>(b.getOperand().getType()).getRank() == 0)
      break;
    SmallVector<int64_t> composed;
    for (int64_t d : b.getBroadcastDimensions())
      composed.push_back(filledDims[d]);
    filledDims = composed;
    filled = b.getOperand();
  }
  if (!minusOne || !isSplat(minusOne.getRhs(), 1) || cumsumRowsSource(minusOne.getLhs()) != slot.onehot ||
      filledDims != SmallVector<int64_t>{1}) {
    fail.why = "a slot's positions are not cumsum(one_hot) - 1 + earlier counts";
    return failure();
  }
  slot.filled = filled;
  return slot;
}

FailureOr<RecognisedLayer> matchGShard(shlo::DotGeneralOp out, NoMatch &fail) {
  RecognisedLayer layer;
  // out = einsum("sec,ecm->sm", combine, y)
  auto ye = def<shlo::DotGeneralOp>(out.getRhs(), fail, "the expert outputs");
  if (failed(ye))
    return failure();
  auto expertDot = [](shlo::DotGeneralOp dot) {
    shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
    return d.getLhsBatchingDimensions() == ArrayRef<int64_t>{0} &&
           d.getRhsBatchingDimensions() == ArrayRef<int64_t>{0} &&
           d.getLhsContractingDimensions() == ArrayRef<int64_t>{2} &&
           d.getRhsContractingDimensions() == ArrayRef<int64_t>{1};
  };
  if (!expertDot(*ye)) {
    fail.why = "the expert outputs are not a per-expert matmul";
    return failure();
  }
  layer.w2 = ye->getRhs();
  // h = act(einsum("ecm,emh->ech", xe, wi)): relu or GELU (erf).
  Value h = ye->getLhs(), pre;
  if (auto relu = h.getDefiningOp<shlo::MaxOp>()) {
    for (auto [a, b] : {std::pair{relu.getLhs(), relu.getRhs()}, std::pair{relu.getRhs(), relu.getLhs()}})
      if (isSplat(b, 0)) {
        pre = a;
        layer.activation = Activation::relu;
      }
  } else if ((pre = geluErfInput(h))) {
    layer.activation = Activation::gelu;
  }
  auto up = pre ? pre.getDefiningOp<shlo::DotGeneralOp>() : nullptr;
  if (!up || !expertDot(up)) {
    fail.why = "the expert activation is not relu or gelu of a per-expert matmul";
    return failure();
  }
  layer.w1 = up.getRhs();
  // xe = einsum("sm,sec->ecm", x, dispatch)
  auto xe = def<shlo::DotGeneralOp>(up.getLhs(), fail, "the dispatched tokens");
  if (failed(xe))
    return failure();
  shlo::DotDimensionNumbersAttr dd = xe->getDotDimensionNumbers();
  if (!dd.getLhsBatchingDimensions().empty() || dd.getLhsContractingDimensions() != ArrayRef<int64_t>{0} ||
      dd.getRhsContractingDimensions() != ArrayRef<int64_t>{0} ||
      cast<RankedTensorType>(xe->getLhs().getType()).getRank() != 3) {
    fail.why = "the dispatched tokens are not einsum('sec,sm->ecm')";
    return failure();
  }
  layer.x = xe->getRhs();
  // dispatch = sum of masks; combine = sum of masks * vals[:, j].
  SmallVector<Value> dispatchTerms, combineTerms;
  addTerms(xe->getLhs(), dispatchTerms);
  addTerms(out.getLhs(), combineTerms);
  if (dispatchTerms.empty() || dispatchTerms.size() != combineTerms.size()) {
    fail.why = "the dispatch and combine masks do not pair up";
    return failure();
  }
  Value topkValues;
  int64_t capacity = -1;
  Value filledBefore; // the running count chain
  for (auto [slotIndex, mask] : llvm::enumerate(dispatchTerms)) {
    int64_t c = 0;
    FailureOr<SlotMask> slot = matchSlotMask(mask, c, fail);
    if (failed(slot))
      return failure();
    if ((capacity >= 0 && c != capacity) || slot->slot != static_cast<int64_t>(slotIndex)) {
      fail.why = "the slots' masks differ in capacity or are out of order";
      return failure();
    }
    capacity = c;
    // filled_0 = 0; filled_j = filled_{j-1} + sum(onehot_{j-1}, 0)
    if (slotIndex == 0 ? !isSplat(slot->filled, 0) : !filledBefore || slot->filled != filledBefore) {
      fail.why = "a slot's positions do not continue the earlier slots' counts";
      return failure();
    }
    // The next slot's filled: this one's plus this slot's counts.
    filledBefore = nullptr;
    for (Operation *user : slot->filled.getUsers())
      if (auto add = dyn_cast<shlo::AddOp>(user))
        if (auto count = add.getRhs().getDefiningOp<shlo::ReduceOp>();
            count && count.getInputs()[0] == slot->onehot && count.getDimensions() == ArrayRef<int64_t>{0} &&
            add.getLhs() == slot->filled)
          filledBefore = add.getResult();
    // combine term: mask * vals[:, j]
    auto weighted = combineTerms[slotIndex].getDefiningOp<shlo::MulOp>();
    SmallVector<int64_t> dims;
    Value vals = weighted && weighted.getLhs() == mask ? broadcastChainSource(weighted.getRhs(), dims) : nullptr;
    std::optional<std::pair<Value, int64_t>> column = vals ? topKColumn(vals) : std::nullopt;
    auto topk = slot->topkIndices.getDefiningOp<chlo::TopKOp>();
    if (!column || dims != SmallVector<int64_t>{0} || column->second != slot->slot ||
        column->first != topk.getValues() || slot->topkIndices != topk.getIndices()) {
      fail.why = "a combine mask is not its dispatch mask times the slot's gate weight";
      return failure();
    }
    topkValues = column->first;
  }
  FailureOr<chlo::TopKOp> routed = matchSoftmaxTopK(topkValues, layer.x, layer, fail);
  if (failed(routed))
    return failure();
  if (layer.k != static_cast<int64_t>(dispatchTerms.size())) {
    fail.why = "not every top-k slot is dispatched";
    return failure();
  }
  layer.capacity = capacity;
  if (failed(checkLayerShapes(layer, fail)))
    return failure();
  return layer;
}

} // namespace

unsigned mlir::moe::stablehlo_raise::raiseGShardLayers(Operation *root, const RaiseOptions &options) {
  SmallVector<shlo::DotGeneralOp> combines;
  root->walk([&](shlo::DotGeneralOp dot) {
    // Candidates: einsum("sec,ecm->sm") of a [S, E, C] mask and [E, C, M].
    shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
    if (cast<RankedTensorType>(dot.getLhs().getType()).getRank() == 3 &&
        cast<RankedTensorType>(dot.getRhs().getType()).getRank() == 3 && d.getLhsBatchingDimensions().empty() &&
        d.getLhsContractingDimensions() == ArrayRef<int64_t>{2, 1} &&
        d.getRhsContractingDimensions() == ArrayRef<int64_t>{1, 0})
      combines.push_back(dot);
  });
  unsigned raised = 0;
  for (shlo::DotGeneralOp combine : combines) {
    NoMatch fail;
    FailureOr<RecognisedLayer> layer = matchGShard(combine, fail);
    if (failed(layer)) {
      emitRemark(combine.getLoc()) << "GShard-style combine not raised to moe.layer: " << fail.why
                                   << "; it stays as plain ops";
      continue;
    }
    replaceWithLayer(combine, combine.getResult(), *layer, options);
    ++raised;
  }
  return raised;
}
