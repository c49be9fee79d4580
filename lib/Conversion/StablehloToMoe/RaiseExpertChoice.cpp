//===- RaiseExpertChoice.cpp - expert-choice routing to moe.layer ---------===//
//
// Expert-choice routing (Zhou et al. 2022) as JAX code writes it: each
// expert takes the C tokens it scores highest,
//
//   g, tok = lax.top_k(softmax(x @ wr).T, C)          [E, C] each (or sigmoid)
//   xs     = x[tok]                                   [E, C, H]
//   o      = experts(xs) * g[..., None]               einsum('ech,ehf->ecf', ...)
//   y      = zeros_like(x).at[tok.reshape(-1)].add(o.reshape(-1, H))
//
// which is moe.layer with select = expert_choice, capacity = C: token t
// gets sum over the experts e that picked it of p[t, e] * expert_e(x_t).
// lax.top_k breaks ties to the lower token index, as moe.expert_choice
// does. Every link is checked; a candidate (a scatter-add of per-expert
// rows at top-k token ids) that differs gets a remark.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

/// A per-expert matmul over [E, C, *]: dot_general batching dim 0 with dim
/// 0, contracting dim 2 of the rows with dim 1 of the weights [E, K, N].
bool isExpertDot(shlo::DotGeneralOp dot) {
  shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
  return d.getLhsBatchingDimensions() == ArrayRef<int64_t>{0} && d.getRhsBatchingDimensions() == ArrayRef<int64_t>{0} &&
         d.getLhsContractingDimensions() == ArrayRef<int64_t>{2} &&
         d.getRhsContractingDimensions() == ArrayRef<int64_t>{1};
}

/// The weights of a per-expert matmul of `rows`, or null.
Value expertWeights(Value v, Value rows) {
  auto dot = v.getDefiningOp<shlo::DotGeneralOp>();
  return dot && isExpertDot(dot) && dot.getLhs() == rows ? dot.getRhs() : Value();
}

/// `v` through reshapes, broadcasts and converts that keep its elements'
/// order (a flattening or an added unit dim).
Value throughReshapes(Value v) {
  while (true) {
    if (auto r = v.getDefiningOp<shlo::ReshapeOp>())
      v = r.getOperand();
    else if (auto b = v.getDefiningOp<shlo::BroadcastInDimOp>();
             b && cast<RankedTensorType>(b.getOperand().getType()).getNumElements() ==
                      cast<RankedTensorType>(b.getType()).getNumElements())
      v = b.getOperand();
    else
      return v;
  }
}

/// The experts' FFN of `rows` [E, C, H] whose output is `out` [E, C, H]:
/// fills w1 (w3), w2 and the activation of `layer`.
LogicalResult matchExperts(Value out, Value rows, RecognisedLayer &layer, NoMatch &fail) {
  auto down = out.getDefiningOp<shlo::DotGeneralOp>();
  if (!down || !isExpertDot(down)) {
    fail.why = "the expert outputs are not a per-expert matmul";
    return failure();
  }
  layer.w2 = down.getRhs();
  Value h = down.getLhs();
  // Gated: act(rows @ w1) * (rows @ w3).
  if (auto mul = h.getDefiningOp<shlo::MulOp>()) {
    for (auto [a, b] : {std::pair{mul.getLhs(), mul.getRhs()}, std::pair{mul.getRhs(), mul.getLhs()}}) {
      Value up = expertWeights(b, rows);
      if (!up)
        continue;
      for (auto [input, activation] : {std::pair{siluInput(a), Activation::swiglu},
                                       std::pair{geluErfInput(a), Activation::geglu},
                                       std::pair{geluTanhInput(a), Activation::geglu_tanh}})
        if (Value gate = input ? expertWeights(input, rows) : Value()) {
          layer.w1 = gate;
          layer.w3 = up;
          layer.activation = activation;
          return success();
        }
    }
  }
  for (auto [input, activation] : {std::pair{reluInput(h), Activation::relu}, std::pair{relu2Input(h), Activation::relu2},
                                   std::pair{geluErfInput(h), Activation::gelu},
                                   std::pair{geluTanhInput(h), Activation::gelu_tanh},
                                   std::pair{siluInput(h), Activation::silu}})
    if (Value w = input ? expertWeights(input, rows) : Value()) {
      layer.w1 = w;
      layer.w3 = nullptr;
      layer.activation = activation;
      return success();
    }
  fail.why = "the experts are not an activation (silu/gelu GLU, relu, relu², gelu, silu) of per-expert matmuls of the "
             "picked tokens";
  return failure();
}

/// The scatter-add `combine` of per-expert rows into zeros [T, H] at the
/// tokens an expert-choice top-k picked.
FailureOr<RecognisedLayer> matchExpertChoice(shlo::ScatterOp combine, NoMatch &fail) {
  RecognisedLayer layer;
  if (!isSplat(combine.getInputs()[0], 0)) {
    fail.why = "the combine does not add into zeros";
    return failure();
  }
  // The token ids: the top-k's indices [E, C], flattened.
  Value ids = throughReshapes(unwrapIndex(throughReshapes(combine.getScatterIndices())));
  auto topk = ids.getDefiningOp<chlo::TopKOp>();
  if (!topk || ids != topk.getIndices()) {
    fail.why = "the rows are not added at the token ids of a top-k";
    return failure();
  }
  // Over the transposed scores [T, E] -> [E, T]: each expert's top-C tokens.
  auto scoresT = topk.getOperand().getDefiningOp<shlo::TransposeOp>();
  if (!scoresT || scoresT.getPermutation() != ArrayRef<int64_t>{1, 0}) {
    fail.why = "the top-k is not over the transposed [tokens, experts] scores (each expert's tokens)";
    return failure();
  }
  // Softmax scores, or sigmoid ones (each expert scored on its own).
  Value logits = sigmoidInput(scoresT.getOperand());
  layer.sigmoid = bool(logits);
  if (!logits) {
    FailureOr<Value> softmaxLogits = softmaxInput(scoresT.getOperand(), fail);
    if (failed(softmaxLogits))
      return failure();
    logits = *softmaxLogits;
  }
  // The updates: o [E, C, H] flattened, o = experts(xs) * g[..., None].
  Value o = throughReshapes(combine.getUpdates()[0]);
  Value expertOut;
  isProduct(o, [&](Value a, Value b) {
    SmallVector<int64_t> dims;
    if (broadcastChainSource(b, dims) != topk.getValues() || dims != SmallVector<int64_t>{0, 1})
      return false;
    expertOut = a;
    return true;
  });
  if (!expertOut) {
    fail.why = "the expert outputs are not weighted by the top-k's scores (each row by its expert's pick)";
    return failure();
  }
  // xs = x[tok]: a row gather at the same ids.
  auto gathered = [&](Value rows) -> Value {
    auto gather = rows.getDefiningOp<shlo::GatherOp>();
    auto rowsType = cast<RankedTensorType>(rows.getType());
    if (!gather || rowsType.getRank() != 3)
      return nullptr;
    shlo::GatherDimensionNumbersAttr d = gather.getDimensionNumbers();
    auto xType = cast<RankedTensorType>(gather.getOperand().getType());
    if (xType.getRank() != 2 || d.getOffsetDims() != ArrayRef<int64_t>{2} ||
        d.getCollapsedSliceDims() != ArrayRef<int64_t>{0} || d.getStartIndexMap() != ArrayRef<int64_t>{0} ||
        gather.getSliceSizes() != ArrayRef<int64_t>{1, xType.getDimSize(1)} ||
        throughReshapes(unwrapIndex(throughReshapes(gather.getStartIndices()))) != topk.getIndices())
      return nullptr;
    return gather.getOperand();
  };
  // xs: the gathered rows among the values the experts' output is computed from.
  Value xs;
  SmallVector<Value> work = {expertOut};
  llvm::DenseSet<Value> seen;
  while (!work.empty() && !xs) {
    Value v = work.pop_back_val();
    if (!seen.insert(v).second || !v.getDefiningOp())
      continue;
    if (gathered(v)) {
      xs = v;
      break;
    }
    for (Value operand : v.getDefiningOp()->getOperands())
      work.push_back(operand);
  }
  if (!xs) {
    fail.why = "the experts do not read the picked tokens x[tok]";
    return failure();
  }
  layer.x = gathered(xs);
  if (failed(matchExperts(expertOut, xs, layer, fail)))
    return failure();
  if (failed(routerLogits(logits, layer.x, layer, fail)))
    return failure();
  auto scoresType = cast<RankedTensorType>(topk.getOperand().getType());
  layer.k = 1;
  layer.expertChoiceCapacity = topk.getK();
  if (scoresType.getDimSize(0) != routerExperts(layer) || ShapedType::isDynamic(scoresType.getDimSize(1))) {
    fail.why = "the top-k's scores are not [experts, tokens] of a static token count";
    return failure();
  }
  if (failed(checkLayerShapes(layer, fail)))
    return failure();
  return layer;
}

} // namespace

unsigned mlir::moe::stablehlo_raise::raiseExpertChoiceLayers(Operation *root, const RaiseOptions &options) {
  SmallVector<shlo::ScatterOp> combines;
  root->walk([&](shlo::ScatterOp scatter) {
    // Candidates: a scatter-add of rows at ids computed from a top-k.
    if (scatter.getInputs().size() == 1 && isAddBody(scatter.getUpdateComputation()) &&
        cast<RankedTensorType>(scatter.getType(0)).getRank() == 2 && readsTopK(scatter.getScatterIndices()))
      combines.push_back(scatter);
  });
  unsigned raised = 0;
  for (shlo::ScatterOp combine : combines) {
    NoMatch fail;
    FailureOr<RecognisedLayer> layer = matchExpertChoice(combine, fail);
    if (failed(layer)) {
      // Only candidates whose top-k picks tokens for experts (over [E, T]).
      Value ids = throughReshapes(unwrapIndex(throughReshapes(combine.getScatterIndices())));
      auto topk = ids.getDefiningOp<chlo::TopKOp>();
      if (topk && topk.getOperand().getDefiningOp<shlo::TransposeOp>())
        emitRemark(combine.getLoc()) << "expert-choice combine not raised to moe.layer: " << fail.why
                                     << "; it stays as plain ops";
      continue;
    }
    replaceWithLayer(combine, combine.getResult(0), *layer, options);
    ++raised;
  }
  return raised;
}
