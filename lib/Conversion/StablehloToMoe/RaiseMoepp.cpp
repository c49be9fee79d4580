//===- RaiseMoepp.cpp - MoE++ layers (zero/copy/constant experts) ---------===//
//
// MoE++ written densely in JAX: softmax top-k over N FFN experts followed
// by zero-computation experts, every FFN expert computed and weighted by
// the top-k gate, the others added per kind:
//
//   gate = sum_k one_hot(idx_k, E) * vals_k                        [T, E]
//   ffn  = einsum("tef,efh->teh", act(einsum("th,ehf->tef", x, w1)), w2)
//   out  = einsum("teh,te->th", ffn, gate[:, :N])
//        + gate[:, c:c+1] * x                                      (copy expert c)
//        + gate[:, c:c+1] * (a[:, :1] * x + a[:, 1:] * v_c)        (constant expert c,
//                                                                   a = softmax(x @ mix_c))
//   (a zero expert contributes nothing and appears nowhere)
//
// becomes one moe.layer whose expert set is the FFN group followed by the
// zero/copy/constant experts in index order.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "Raising.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_raise;

namespace {

/// Columns [begin, end) of a [T, N] tensor: (the tensor, begin, end).
std::optional<std::tuple<Value, int64_t, int64_t>> columns(Value v) {
  auto slice = v.getDefiningOp<shlo::SliceOp>();
  if (!slice)
    return std::nullopt;
  auto type = cast<RankedTensorType>(slice.getOperand().getType());
  if (type.getRank() != 2 || slice.getStartIndices()[0] != 0 || slice.getLimitIndices()[0] != type.getDimSize(0) ||
      slice.getStrides()[1] != 1)
    return std::nullopt;
  return std::tuple{slice.getOperand(), slice.getStartIndices()[1], slice.getLimitIndices()[1]};
}

/// A per-row scalar column broadcast over the hidden size: (the [T, N]
/// tensor, column) of `bcast(t[:, c:c+1])`.
std::optional<std::pair<Value, int64_t>> rowColumn(Value v) {
  SmallVector<int64_t> dims;
  Value source = broadcastChainSource(v, dims);
  auto cols = columns(source);
  if (!cols || dims != SmallVector<int64_t>{0, 1} || std::get<2>(*cols) != std::get<1>(*cols) + 1)
    return std::nullopt;
  return std::pair{std::get<0>(*cols), std::get<1>(*cols)};
}

/// a[:, :1] * x + a[:, 1:] * v with a = softmax(x @ mix): returns (v, mix).
std::optional<std::pair<Value, Value>> constantExpert(Value v, Value x, NoMatch &fail) {
  auto sum = v.getDefiningOp<shlo::AddOp>();
  if (!sum)
    return std::nullopt;
  Value mixProbs, vector;
  for (auto [first, second] : {std::pair{sum.getLhs(), sum.getRhs()}, std::pair{sum.getRhs(), sum.getLhs()}}) {
    Value probsA, probsB, vec;
    bool scaledX = isProduct(first, [&](Value a, Value b) {
      auto col = rowColumn(a);
      if (!col || col->second != 0 || b != x)
        return false;
      probsA = col->first;
      return true;
    });
    bool scaledV = isProduct(second, [&](Value a, Value b) {
      auto col = rowColumn(a);
      SmallVector<int64_t> dims;
      Value source = broadcastChainSource(b, dims);
      if (!col || col->second != 1 || dims != SmallVector<int64_t>{1})
        return false;
      probsB = col->first;
      vec = source;
      return true;
    });
    if (scaledX && scaledV && probsA == probsB) {
      mixProbs = probsA;
      vector = vec;
    }
  }
  if (!mixProbs)
    return std::nullopt;
  FailureOr<Value> logits = softmaxInput(mixProbs, fail);
  auto dot = succeeded(logits) ? logits->getDefiningOp<shlo::DotGeneralOp>() : nullptr;
  if (!dot || dot.getLhs() != x || cast<RankedTensorType>(dot.getType()).getDimSize(1) != 2)
    return std::nullopt;
  return std::pair{vector, dot.getRhs()};
}

FailureOr<RecognisedLayer> matchMoepp(Value root, NoMatch &fail) {
  RecognisedLayer layer;
  SmallVector<Value> terms;
  addTerms(root, terms);
  // The routed FFN term: einsum("teh,te->th", ffn, gate[:, :N]).
  shlo::DotGeneralOp routed;
  for (Value t : terms)
    if (auto dot = t.getDefiningOp<shlo::DotGeneralOp>()) {
      shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
      if (d.getLhsBatchingDimensions() == ArrayRef<int64_t>{0} && d.getRhsBatchingDimensions() == ArrayRef<int64_t>{0} &&
          d.getLhsContractingDimensions() == ArrayRef<int64_t>{1} && d.getRhsContractingDimensions() == ArrayRef<int64_t>{1})
        routed = dot;
    }
  auto gateCols = routed ? columns(routed.getRhs()) : std::nullopt;
  if (!routed || !gateCols || std::get<1>(*gateCols) != 0) {
    fail.why = "no term weights the FFN experts' outputs by the first gate columns";
    return failure();
  }
  Value gate = std::get<0>(*gateCols);
  int64_t numFfn = std::get<2>(*gateCols);
  // ffn = transpose(einsum("efh,tef->eht", w2, h), [2, 0, 1])
  auto back = routed.getLhs().getDefiningOp<shlo::TransposeOp>();
  auto down = back ? back.getOperand().getDefiningOp<shlo::DotGeneralOp>() : nullptr;
  if (!back || back.getPermutation() != ArrayRef<int64_t>{2, 0, 1} || !down ||
      down.getDotDimensionNumbers().getLhsBatchingDimensions() != ArrayRef<int64_t>{0} ||
      down.getDotDimensionNumbers().getRhsBatchingDimensions() != ArrayRef<int64_t>{1} ||
      down.getDotDimensionNumbers().getLhsContractingDimensions() != ArrayRef<int64_t>{1} ||
      down.getDotDimensionNumbers().getRhsContractingDimensions() != ArrayRef<int64_t>{2}) {
    fail.why = "the FFN experts' outputs are not einsum('tef,efh->teh', h, w2)";
    return failure();
  }
  layer.w2 = down.getLhs();
  Value h = down.getRhs(), pre;
  if ((pre = geluTanhInput(h))) {
    layer.activation = Activation::gelu_tanh;
  } else if (auto relu = h.getDefiningOp<shlo::MaxOp>(); relu && isSplat(relu.getRhs(), 0)) {
    pre = relu.getLhs();
    layer.activation = Activation::relu;
  }
  auto up = pre ? pre.getDefiningOp<shlo::DotGeneralOp>() : nullptr;
  if (!up) {
    fail.why = "the FFN activation is not tanh-GELU or relu of the experts' up projection";
    return failure();
  }
  layer.x = up.getLhs();
  layer.w1 = perExpertProjection(pre, layer.x);
  if (!layer.w1) {
    fail.why = "the FFN experts' up projection is not einsum('th,ehf->tef', x, w1)";
    return failure();
  }
  // Routing: the dense gate of softmax top-k.
  Value vals, idx;
  if (failed(denseTopKGate(gate, vals, idx, fail)))
    return failure();
  FailureOr<chlo::TopKOp> topk = matchSoftmaxTopK(vals, layer.x, layer, fail);
  if (failed(topk))
    return failure();
  if (idx != topk->getIndices()) {
    fail.why = "the gate's expert ids are not the top-k indices of its weights";
    return failure();
  }
  int64_t total = cast<RankedTensorType>(gate.getType()).getDimSize(1);
  // The other terms: copy and constant experts at their gate columns.
  layer.extraExperts.assign(total - numFfn, "zero");
  SmallVector<std::pair<int64_t, std::pair<Value, Value>>> constants;
  for (Value t : terms) {
    if (t == routed.getResult())
      continue;
    std::optional<std::pair<Value, int64_t>> col;
    Value payload;
    if (!isProduct(t, [&](Value a, Value b) {
          col = rowColumn(a);
          payload = b;
          return col && col->first == gate && col->second >= numFfn;
        })) {
      fail.why = "a term is not a gate column times a copy or constant expert";
      return failure();
    }
    std::string &kind = layer.extraExperts[col->second - numFfn];
    if (kind != "zero") {
      fail.why = "two terms use one gate column";
      return failure();
    }
    if (payload == layer.x) {
      kind = "copy";
    } else if (auto constant = constantExpert(payload, layer.x, fail)) {
      kind = "constant";
      constants.push_back({col->second, *constant});
    } else {
      fail.why = "a term's expert is neither x (copy) nor a constant expert";
      return failure();
    }
  }
  llvm::sort(constants, [](auto &a, auto &b) { return a.first < b.first; });
  for (auto &[column, vm] : constants) {
    layer.constantVectors.push_back(vm.first);
    layer.constantMixes.push_back(vm.second);
  }
  if (failed(checkLayerShapes(layer, fail)))
    return failure();
  return layer;
}

} // namespace

unsigned mlir::moe::stablehlo_raise::raiseMoeppLayers(Operation *root, const RaiseOptions &options) {
  // Candidates: the roots of add trees that contain a gate-weighted FFN term.
  SmallVector<Value> roots;
  root->walk([&](shlo::AddOp add) {
    if (llvm::any_of(add->getUsers(), [](Operation *u) { return isa<shlo::AddOp>(u); }))
      return;
    SmallVector<Value> terms;
    addTerms(add.getResult(), terms);
    bool hasRouted = llvm::any_of(terms, [](Value t) {
      auto dot = t.getDefiningOp<shlo::DotGeneralOp>();
      return dot && columns(dot.getRhs()) && cast<RankedTensorType>(dot.getLhs().getType()).getRank() == 3;
    });
    if (hasRouted)
      roots.push_back(add.getResult());
  });
  unsigned raised = 0;
  for (Value sum : roots) {
    NoMatch fail;
    FailureOr<RecognisedLayer> layer = matchMoepp(sum, fail);
    if (failed(layer)) {
      emitRemark(sum.getLoc()) << "MoE++-style mixture not raised to moe.layer: " << fail.why
                               << "; it stays as plain ops";
      continue;
    }
    replaceWithLayer(sum.getDefiningOp(), sum, *layer, options);
    ++raised;
  }
  return raised;
}
