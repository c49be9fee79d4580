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

#include "Raising.h"
#include "dialects/moe/MoeOps.h"
#include "dialects/stablehlo/StablehloDialect.h"

#include "mlir/AsmParser/AsmParser.h"
#include <cmath>
#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mlir::moe;
namespace shlo = mlir::moe::stablehlo;

namespace {

/// Why a candidate did not match (the remark's text).
struct NoMatch {
  std::string why;
};

template <typename OpTy>
FailureOr<OpTy> def(Value v, NoMatch &fail, StringRef what) {
  if (auto op = v ? v.getDefiningOp<OpTy>() : OpTy())
    return op;
  fail.why = ("expected " + what + " to be '" + OpTy::getOperationName() + "'").str();
  return failure();
}

/// The scalar a splat constant (possibly broadcast or converted) holds.
std::optional<double> splatValue(Value v) {
  while (true) {
    if (auto b = v.getDefiningOp<shlo::BroadcastInDimOp>())
      v = b.getOperand();
    else if (auto c = v.getDefiningOp<shlo::ConvertOp>())
      v = c.getOperand();
    else
      break;
  }
  auto constant = v.getDefiningOp<shlo::ConstantOp>();
  auto dense = constant ? dyn_cast<DenseElementsAttr>(constant.getValue()) : nullptr;
  if (!dense || !dense.isSplat())
    return std::nullopt;
  Attribute e = dense.getSplatValue<Attribute>();
  if (auto f = dyn_cast<FloatAttr>(e))
    return f.getValueAsDouble();
  if (auto i = dyn_cast<IntegerAttr>(e))
    return static_cast<double>(i.getValue().getSExtValue());
  return std::nullopt;
}

bool isSplat(Value v, double value) {
  std::optional<double> s = splatValue(v);
  return s && *s == value;
}

/// `v` through broadcast_in_dim ops that keep dimension 0 in place (a
/// per-row value spread over columns), down to a rank-1 tensor.
Value rowValue(Value v) {
  while (auto b = v.getDefiningOp<shlo::BroadcastInDimOp>()) {
    ArrayRef<int64_t> dims = b.getBroadcastDimensions();
    if (dims.empty() || dims[0] != 0)
      return nullptr;
    v = b.getOperand();
  }
  return cast<RankedTensorType>(v.getType()).getRank() == 1 ? v : nullptr;
}

/// JAX's index normalisation `i < 0 ? i + n : i` stripped; `v` otherwise.
Value unwrapIndex(Value v) {
  auto select = v.getDefiningOp<shlo::SelectOp>();
  if (!select)
    return v;
  auto negative = select.getPred().getDefiningOp<shlo::CompareOp>();
  auto shifted = select.getOnTrue().getDefiningOp<shlo::AddOp>();
  Value i = select.getOnFalse();
  if (!negative || negative.getComparisonDirection() != shlo::ComparisonDirection::LT ||
      negative.getLhs() != i || !isSplat(negative.getRhs(), 0) || !shifted || shifted.getLhs() != i)
    return v;
  return i;
}

/// `v` = x // k for a positive constant k (jnp's floor division, or a
/// plain division); returns x.
FailureOr<Value> floorDivided(Value v, int64_t k, NoMatch &fail) {
  auto isK = [&](Value c) { return isSplat(c, static_cast<double>(k)); };
  if (auto div = v.getDefiningOp<shlo::DivOp>(); div && isK(div.getRhs()))
    return div.getLhs();
  // select(sign(x) != sign(k) && x % k != 0, x / k - 1, x / k)
  auto select = v.getDefiningOp<shlo::SelectOp>();
  auto quotient = select ? select.getOnFalse().getDefiningOp<shlo::DivOp>() : nullptr;
  auto minusOne = select ? select.getOnTrue().getDefiningOp<shlo::SubtractOp>() : nullptr;
  auto cond = select ? select.getPred().getDefiningOp<shlo::AndOp>() : nullptr;
  if (!quotient || !isK(quotient.getRhs()) || !minusOne || minusOne.getLhs() != quotient.getResult() ||
      !isSplat(minusOne.getRhs(), 1) || !cond) {
    fail.why = "the token index is not slot // " + std::to_string(k);
    return failure();
  }
  Value x = quotient.getLhs();
  auto signs = cond.getLhs().getDefiningOp<shlo::CompareOp>();
  auto rest = cond.getRhs().getDefiningOp<shlo::CompareOp>();
  auto xSign = signs ? signs.getLhs().getDefiningOp<shlo::SignOp>() : nullptr;
  auto rem = rest ? rest.getLhs().getDefiningOp<shlo::RemOp>() : nullptr;
  if (!signs || signs.getComparisonDirection() != shlo::ComparisonDirection::NE || !xSign ||
      xSign.getOperand() != x || !rest || rest.getComparisonDirection() != shlo::ComparisonDirection::NE || !rem ||
      rem.getLhs() != x || !isK(rem.getRhs()) || !isSplat(rest.getRhs(), 0)) {
    fail.why = "the token index's floor division is not jnp's";
    return failure();
  }
  return x;
}

/// The body of a reduction/scatter is one `stablehlo.add` of its arguments.
bool isAddBody(Region &body) {
  Block &block = body.front();
  if (block.getNumArguments() != 2 || !llvm::hasNItems(block, 2))
    return false;
  auto add = dyn_cast<shlo::AddOp>(block.front());
  return add && add.getLhs() == block.getArgument(0) && add.getRhs() == block.getArgument(1) &&
         block.getTerminator()->getOperand(0) == add.getResult();
}

/// A 1-D row gather `operand[indices]` (x[i] or x[i, :]) with indices
/// [n, 1]; returns the unwrapped index vector.
FailureOr<Value> rowGather(shlo::GatherOp gather, NoMatch &fail) {
  shlo::GatherDimensionNumbersAttr dims = gather.getDimensionNumbers();
  auto operand = cast<RankedTensorType>(gather.getOperand().getType());
  SmallVector<int64_t> slice = {1};
  SmallVector<int64_t> offsets;
  for (int64_t d = 1; d < operand.getRank(); ++d) {
    slice.push_back(operand.getDimSize(d));
    offsets.push_back(d);
  }
  Value index = rowValue(gather.getStartIndices());
  if (dims.getCollapsedSliceDims() != ArrayRef<int64_t>{0} || dims.getStartIndexMap() != ArrayRef<int64_t>{0} ||
      dims.getIndexVectorDim() != 1 || dims.getOffsetDims() != ArrayRef<int64_t>(offsets) ||
      gather.getSliceSizes() != ArrayRef<int64_t>(slice) || !dims.getOperandBatchingDims().empty() || !index) {
    fail.why = "a gather is not a row gather x[i]";
    return failure();
  }
  return unwrapIndex(index);
}

/// softmax(z) over the last dim of [T, E] as jax.nn.softmax writes it;
/// returns z.
FailureOr<Value> softmaxInput(Value probs, NoMatch &fail) {
  auto div = def<shlo::DivOp>(probs, fail, "the top-k scores");
  if (failed(div))
    return failure();
  auto exp = def<shlo::ExpOp>(div->getLhs(), fail, "the softmax numerator");
  Value sumRow = rowValue(div->getRhs());
  auto sum = sumRow ? sumRow.getDefiningOp<shlo::ReduceOp>() : nullptr;
  if (failed(exp) || !sum || sum.getInputs().size() != 1 || sum.getInputs()[0] != exp->getResult() ||
      sum.getDimensions() != ArrayRef<int64_t>{1} || !isAddBody(sum.getBody())) {
    fail.why = "the top-k scores are not a softmax over the experts";
    return failure();
  }
  auto shifted = def<shlo::SubtractOp>(exp->getOperand(), fail, "the softmax exponent");
  if (failed(shifted))
    return failure();
  // The shift (the row max, for stability) cancels: any per-row value works.
  if (!rowValue(shifted->getRhs())) {
    fail.why = "the softmax shift is not a per-row value";
    return failure();
  }
  return shifted->getLhs();
}

/// jax.nn.sigmoid(z): logistic(z) or 1 / (1 + exp(-z)); returns z.
Value sigmoidInput(Value v) {
  if (auto logistic = v.getDefiningOp<shlo::LogisticOp>())
    return logistic.getOperand();
  auto recip = v.getDefiningOp<shlo::DivOp>();
  auto denom = recip ? recip.getRhs().getDefiningOp<shlo::AddOp>() : nullptr;
  if (!recip || !isSplat(recip.getLhs(), 1) || !denom)
    return nullptr;
  Value e = isSplat(denom.getLhs(), 1) ? denom.getRhs() : (isSplat(denom.getRhs(), 1) ? denom.getLhs() : nullptr);
  auto exp = e ? e.getDefiningOp<shlo::ExpOp>() : nullptr;
  auto neg = exp ? exp.getOperand().getDefiningOp<shlo::NegOp>() : nullptr;
  return neg ? neg.getOperand() : nullptr;
}

/// silu(g) as jax.nn.silu writes it (g * sigmoid(g)); returns g.
Value siluInput(Value v) {
  auto mul = v.getDefiningOp<shlo::MulOp>();
  if (!mul)
    return nullptr;
  Value g = mul.getLhs();
  return sigmoidInput(mul.getRhs()) == g ? g : nullptr;
}

/// A recognised layer: top-k routing and SwiGLU experts, weights in JAX's
/// layouts (router [H, E], w1/w3 [E, H, F], w2 [E, F, H]; a shared
/// expert's s1/s3 [H, Fs], s2 [Fs, H]).
struct RecognisedLayer {
  Value x, routerWeight, w1, w3, w2;
  int64_t k = 0;
  bool normalize = false;
  // DeepSeek-V3 routing: sigmoid scores, a selection-only bias, top-k
  // within the topkGroups best of numGroups groups, weights scaled.
  bool sigmoid = false;
  Value selectionBias;
  int64_t numGroups = 1, topkGroups = 1;
  double scale = 1.0;
  Value s1, s3, s2;
};


/// The gate weights `vals` of softmax top-k routing of `x`
/// (`vals, idx = top_k(softmax(x @ wr), k)`, optionally divided by their
/// sum); fills the routing fields of `layer` and returns the top-k op.
FailureOr<chlo::TopKOp> matchSoftmaxTopK(Value vals, Value x, RecognisedLayer &layer, NoMatch &fail) {
  if (auto div = vals.getDefiningOp<shlo::DivOp>()) {
    Value sumRow = rowValue(div.getRhs());
    auto sum = sumRow ? sumRow.getDefiningOp<shlo::ReduceOp>() : nullptr;
    if (!sum || sum.getInputs()[0] != div.getLhs() || sum.getDimensions() != ArrayRef<int64_t>{1} ||
        !isAddBody(sum.getBody())) {
      fail.why = "the gate weights are divided by something other than their sum";
      return failure();
    }
    layer.normalize = true;
    vals = div.getLhs();
  }
  auto topk = vals.getDefiningOp<chlo::TopKOp>();
  if (!topk || vals != topk.getValues()) {
    fail.why = "the gate weights are not top-k values";
    return failure();
  }
  layer.k = topk.getK();
  FailureOr<Value> logits = softmaxInput(topk.getOperand(), fail);
  if (failed(logits))
    return failure();
  Value z = *logits;
  if (auto widened = z.getDefiningOp<shlo::ConvertOp>()) // logits.astype(f32)
    z = widened.getOperand();
  auto router = def<shlo::DotGeneralOp>(z, fail, "the router logits");
  if (failed(router))
    return failure();
  shlo::DotDimensionNumbersAttr rd = router->getDotDimensionNumbers();
  if (router->getLhs() != x || !rd.getLhsBatchingDimensions().empty() ||
      rd.getLhsContractingDimensions() != ArrayRef<int64_t>{1} ||
      rd.getRhsContractingDimensions() != ArrayRef<int64_t>{0}) {
    fail.why = "the router logits are not x @ router_weight of the same x";
    return failure();
  }
  layer.routerWeight = router->getRhs();
  return topk;
}

/// Shapes and element types of one SwiGLU expert group over x.
LogicalResult checkLayerShapes(const RecognisedLayer &layer, NoMatch &fail) {
  auto xT = cast<RankedTensorType>(layer.x.getType());
  auto wrT = cast<RankedTensorType>(layer.routerWeight.getType());
  auto w1T = cast<RankedTensorType>(layer.w1.getType()), w3T = cast<RankedTensorType>(layer.w3.getType());
  auto w2T = cast<RankedTensorType>(layer.w2.getType());
  int64_t hidden = xT.getDimSize(1), experts = wrT.getDimSize(1);
  Type element = xT.getElementType();
  if (xT.getRank() != 2 || wrT.getRank() != 2 || w1T != w3T || w1T.getRank() != 3 ||
      w1T.getDimSize(0) != experts || w1T.getDimSize(1) != hidden ||
      w2T.getShape() != ArrayRef<int64_t>{experts, w1T.getDimSize(2), hidden} ||
      !(element.isF32() || element.isF16() || element.isBF16()) || wrT.getElementType() != element ||
      w1T.getElementType() != element || w2T.getElementType() != element) {
    fail.why = "the weights' shapes or element types do not form one expert group";
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
  Value sizes = down.getGroupSizes();
  layer.w2 = down.getRhs();
  // h = silu(xs @ w1) * (xs @ w3), all over the same groups.
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
  // xs = x[tok]
  auto xs = def<shlo::GatherOp>(gate.getLhs(), fail, "the experts' input rows");
  if (failed(xs))
    return failure();
  FailureOr<Value> xsIndex = rowGather(*xs, fail);
  if (failed(xsIndex))
    return failure();
  if (*xsIndex != tok) {
    fail.why = "the rows gathered for the experts are not the rows combined";
    return failure();
  }
  layer.x = xs->getOperand();
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
  chlo::TopKOp topk = *routed;
  // order = argsort(flat): a stable ascending sort of (flat, iota), and
  // flat = idx.reshape(-1); tok = order // k.
  auto sort = def<shlo::SortOp>(*order, fail, "the slot order");
  if (failed(sort))
    return failure();
  auto payload = sort->getInputs().size() == 2 ? sort->getInputs()[1].getDefiningOp<shlo::IotaOp>() : nullptr;
  Block &cmp = sort->getComparator().front();
  auto lt = llvm::hasNItems(cmp, 2) ? dyn_cast<shlo::CompareOp>(cmp.front()) : nullptr;
  if (!payload || cast<OpResult>(*order).getResultNumber() != 1 || !sort->getIsStable() || !lt ||
      lt.getComparisonDirection() != shlo::ComparisonDirection::LT || lt.getLhs() != cmp.getArgument(0) ||
      lt.getRhs() != cmp.getArgument(1)) {
    fail.why = "the slot order is not a stable argsort";
    return failure();
  }
  auto flat = def<shlo::ReshapeOp>(sort->getInputs()[0], fail, "the sorted expert ids");
  if (failed(flat))
    return failure();
  if (flat->getOperand() != topk.getIndices()) {
    fail.why = "the sorted expert ids are not the top-k indices";
    return failure();
  }
  FailureOr<Value> slot = floorDivided(tok, layer.k, fail);
  if (failed(slot))
    return failure();
  if (*slot != *order) {
    fail.why = "the token index is not the sorted slot // k";
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
  if (cast<RankedTensorType>(sizes.getType()).getDimSize(0) !=
          cast<RankedTensorType>(layer.routerWeight.getType()).getDimSize(1) ||
      failed(checkLayerShapes(layer, fail))) {
    if (fail.why.empty())
      fail.why = "the group sizes do not count the router's experts";
    return failure();
  }
  return layer;
}

/// `v` through a chain of broadcast_in_dim ops, with the result dimension
/// each source dimension lands on.
Value broadcastChainSource(Value v, SmallVectorImpl<int64_t> &dims) {
  dims.clear();
  for (int64_t d = 0; d < cast<RankedTensorType>(v.getType()).getRank(); ++d)
    dims.push_back(d);
  while (auto b = v.getDefiningOp<shlo::BroadcastInDimOp>()) {
    SmallVector<int64_t> composed;
    for (int64_t d : b.getBroadcastDimensions())
      composed.push_back(dims[d]);
    dims = composed;
    v = b.getOperand();
  }
  return v;
}

/// x @ w over the hidden dim for every expert: dot_general(x [T, H],
/// w [E, H, F]) -> [T, E, F]; returns w.
Value perExpertProjection(Value v, Value x) {
  auto dot = v.getDefiningOp<shlo::DotGeneralOp>();
  if (!dot || dot.getLhs() != x)
    return nullptr;
  shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
  if (!d.getLhsBatchingDimensions().empty() || d.getLhsContractingDimensions() != ArrayRef<int64_t>{1} ||
      d.getRhsContractingDimensions() != ArrayRef<int64_t>{1})
    return nullptr;
  return dot.getRhs();
}

/// The ids of a one-hot encoding: convert(compare EQ (ids broadcast,
/// iota along the last dim)) of shape [T, K, N]; null otherwise.
Value oneHotIds(Value v) {
  if (auto convert = v.getDefiningOp<shlo::ConvertOp>())
    v = convert.getOperand();
  auto eq = v.getDefiningOp<shlo::CompareOp>();
  if (!eq || eq.getComparisonDirection() != shlo::ComparisonDirection::EQ)
    return nullptr;
  SmallVector<int64_t> idDims, iotaDims;
  Value ids = broadcastChainSource(eq.getLhs(), idDims);
  auto iota = broadcastChainSource(eq.getRhs(), iotaDims).getDefiningOp<shlo::IotaOp>();
  if (!iota || iotaDims[iota.getIotaDimension()] != 2 || idDims != SmallVector<int64_t>{0, 1})
    return nullptr;
  return ids;
}

/// The dense gate [T, E] = sum over slots of one_hot(idx, E) * vals:
/// returns (vals, idx) as top_k results, or failure.
LogicalResult denseGate(Value gate, Value &vals, Value &idx, NoMatch &fail) {
  if (auto convert = gate.getDefiningOp<shlo::ConvertOp>())
    gate = convert.getOperand();
  auto sum = gate.getDefiningOp<shlo::ReduceOp>();
  auto product = sum && sum.getInputs().size() == 1 ? sum.getInputs()[0].getDefiningOp<shlo::MulOp>() : nullptr;
  if (!product || sum.getDimensions() != ArrayRef<int64_t>{1} || !isAddBody(sum.getBody())) {
    fail.why = "the expert gate is not a sum over slots of one_hot(idx) * weights";
    return failure();
  }
  for (auto [a, b] : {std::pair{product.getLhs(), product.getRhs()}, std::pair{product.getRhs(), product.getLhs()}}) {
    // a = one_hot(idx, E) : [T, K, E]; b = vals broadcast over E.
    SmallVector<int64_t> valDims;
    Value ids = oneHotIds(a);
    Value weights = broadcastChainSource(b, valDims);
    if (!ids || valDims != SmallVector<int64_t>{0, 1})
      continue;
    vals = weights;
    idx = ids;
    return success();
  }
  fail.why = "the expert gate is not a sum over slots of one_hot(idx) * weights";
  return failure();
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

/// DeepSeek-V3 routing of `x` (the HF reference, written in JAX):
///   scores = sigmoid(x @ wr); biased = scores + bias
///   group_score = top_k(biased.reshape(T, G, E/G), 2).values.sum(-1)
///   groups = top_k(group_score, TG).indices
///   mask = repeat(one_hot(groups, G).sum(1), E/G)
///   idx = top_k(where(mask > 0, biased, -inf), k).indices
///   w = take_along_axis(scores, idx); w = w / w.sum(-1) * scale
/// `vals` is w; fills `layer` and returns the final top-k.
FailureOr<chlo::TopKOp> matchGroupedSigmoidTopK(Value vals, Value x, RecognisedLayer &layer, NoMatch &fail) {
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
  auto router = z ? z.getDefiningOp<shlo::DotGeneralOp>() : nullptr;
  if (!router || router.getLhs() != x || router.getDotDimensionNumbers().getLhsContractingDimensions() !=
                                              ArrayRef<int64_t>{1}) {
    fail.why = "the routing scores are not sigmoid(x @ router_weight)";
    return failure();
  }
  layer.sigmoid = true;
  layer.routerWeight = router.getRhs();
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

/// The shared expert added to the routed output: swiglu(x @ s1, x @ s3) @ s2.
bool matchSharedExpert(Value v, RecognisedLayer &layer) {
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
  if (failed(denseGate(gate, vals, idx, fail)))
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

/// moe.layer for a matched layer, its weights brought to the moe layouts
/// (router [E, H]; up [E, 2F, H] = [gate; up]; down [E, H, F]).
Value buildLayer(OpBuilder &b, Location loc, const RecognisedLayer &m) {
  MLIRContext *ctx = b.getContext();
  auto transposed = [&](Value v, ArrayRef<int64_t> perm) -> Value {
    auto type = cast<RankedTensorType>(v.getType());
    SmallVector<int64_t> shape;
    for (int64_t p : perm)
      shape.push_back(type.getDimSize(p));
    return shlo::TransposeOp::create(b, loc, RankedTensorType::get(shape, type.getElementType()), v,
                                     b.getDenseI64ArrayAttr(perm));
  };
  Value router = transposed(m.routerWeight, {1, 0});
  Value gate = transposed(m.w1, {0, 2, 1}), up = transposed(m.w3, {0, 2, 1});
  auto gateType = cast<RankedTensorType>(gate.getType());
  auto upType = RankedTensorType::get({gateType.getDimSize(0), 2 * gateType.getDimSize(1), gateType.getDimSize(2)},
                                      gateType.getElementType());
  Value gateUp = shlo::ConcatenateOp::create(b, loc, upType, ValueRange{gate, up}, b.getI64IntegerAttr(1));
  Value down = transposed(m.w2, {0, 2, 1});
  int64_t experts = gateType.getDimSize(0);
  std::string routingText = std::string("#moe.routing<scoring = ") + (m.sigmoid ? "sigmoid" : "softmax") +
                            ", k = " + std::to_string(m.k) + (m.normalize ? ", normalize = all" : "");
  if (m.scale != 1.0)
    routingText += ", scale = " + std::to_string(m.scale);
  if (m.numGroups > 1)
    routingText += ", num_groups = " + std::to_string(m.numGroups) + ", topk_groups = " + std::to_string(m.topkGroups);
  auto routing = cast<RoutingAttr>(parseAttribute(routingText + ">", ctx));
  auto group = parseAttribute("#moe.group<ffn, " + std::to_string(experts) + ">", ctx);
  Value bias = m.selectionBias;
  if (bias && !cast<RankedTensorType>(bias.getType()).getElementType().isF32())
    bias = shlo::ConvertOp::create(b, loc, RankedTensorType::get(cast<RankedTensorType>(bias.getType()).getShape(),
                                                                 b.getF32Type()),
                                   bias);
  Value sharedUp, sharedDown;
  if (m.s2) {
    Value s1 = transposed(m.s1, {1, 0}), s3 = transposed(m.s3, {1, 0});
    auto s1Type = cast<RankedTensorType>(s1.getType());
    auto upType = RankedTensorType::get({2 * s1Type.getDimSize(0), s1Type.getDimSize(1)}, s1Type.getElementType());
    sharedUp = shlo::ConcatenateOp::create(b, loc, upType, ValueRange{s1, s3}, b.getI64IntegerAttr(0));
    sharedDown = transposed(m.s2, {1, 0});
  }
  auto xType = cast<RankedTensorType>(m.x.getType());
  auto layer = LayerOp::create(b, loc, xType, RankedTensorType::get({xType.getDimSize(0), experts}, b.getF32Type()),
                               m.x, router, Value(), bias, Value(), Value(), gateUp, down, Value(), Value(),
                               sharedUp, sharedDown, Value(), b.getArrayAttr({group}),
                               ActivationAttr::get(ctx, Activation::swiglu), routing, CapacityAttr());
  return layer.getY();
}

} // namespace

unsigned mlir::moe::stablehlo_raise::raiseDenseMixtures(Operation *root) {
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
    OpBuilder b(replaced);
    Value y = buildLayer(b, down.getLoc(), *layer);
    if (y.getType() != replaced->getResult(0).getType())
      y = shlo::ConvertOp::create(b, down.getLoc(), replaced->getResult(0).getType(), y);
    replaced->getResult(0).replaceAllUsesWith(y);
    ++raised;
  }
  return raised;
}

unsigned mlir::moe::stablehlo_raise::raiseDroplessLayers(Operation *root) {
  SmallVector<shlo::ScatterOp> combines;
  root->walk([&](shlo::ScatterOp s) { combines.push_back(s); });
  unsigned raised = 0;
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
    OpBuilder b(combine);
    combine.getResult(0).replaceAllUsesWith(buildLayer(b, combine.getLoc(), *layer));
    ++raised;
  }
  return raised;
}
