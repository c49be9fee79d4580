//===- ExpertFfnMatching.cpp - one expert's FFN on its own weights --------===//
//
// The experts of hand-written MoE modules are small nn.Modules: a gated
// FFN (SwiGLU, GeGLU) or a plain one (Linear, ReLU/GELU/SiLU, Linear), with
// or without biases, exported as MatMul (+ Add of the bias) or Gemm with
// transB and C. Matched back from the expert's output to the rows it reads.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"

#include <cmath>
#include <map>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace mlir::moe::onnx_import::blocks {

namespace {

/// A constant 1-D float tensor (a bias).
bool isBiasConstant(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef value) {
  std::optional<llvm::SmallVector<int64_t>> shape = g.isConstant(value) ? constants.shape(value) : std::nullopt;
  return shape && shape->size() == 1;
}

/// lhs @ W [+ b] with constant W and b: MatMul, MatMul + Add(b), Gemm(lhs,
/// W[, b]) (transB: W as rows). Sets the weight, the bias ("" if none) and
/// the lhs; adds the nodes.
LinearWeight biasedLinear(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef value,
                          std::string &bias, std::string &lhs, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *n = g.producer(value);
  bias.clear();
  if (!n)
    return {};
  if (n->op_type() == "Gemm" && n->input_size() == 3) {
    if (intAttr(*n, "transA", 0) != 0 || floatAttr(*n, "alpha", 1.0f) != 1.0f || floatAttr(*n, "beta", 1.0f) != 1.0f ||
        !g.isConstant(inputOf(*n, 1)) || !isBiasConstant(g, constants, inputOf(*n, 2)))
      return {};
    nodes.push_back(n);
    bias = inputOf(*n, 2);
    lhs = inputOf(*n, 0);
    return {inputOf(*n, 1), intAttr(*n, "transB", 0) != 0};
  }
  std::string linear = value.str();
  const onnx::NodeProto *add = nullptr;
  if (n->op_type() == "Add")
    for (int side = 0; side < 2 && !add; ++side)
      if (isBiasConstant(g, constants, inputOf(*n, 1 - side))) {
        add = n;
        bias = inputOf(*n, 1 - side);
        linear = inputOf(*n, side);
      }
  llvm::SmallVector<const onnx::NodeProto *> found;
  LinearWeight w = linearOf(g, linear, nullptr, found);
  if (w.empty()) {
    bias.clear();
    return {};
  }
  lhs = inputOf(*found.front(), 0);
  nodes.append(found.begin(), found.end());
  if (add)
    nodes.push_back(add);
  return w;
}

/// lhs @ V with V one matrix of a constant stack S [E, a, b] at a constant
/// scalar i: Gather(S, i) or Transpose(Gather(S, i)) (`w[e].T` in a loop
/// over the experts). The view (rows = false: MatMul reads x @ V), or
/// nullopt; sets the lhs and adds the nodes.
std::optional<WeightView> stackedMatrixLinear(const GraphIndex &g, const ConstantLookup &constants,
                                              llvm::StringRef value, std::string &lhs,
                                              llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *mm = g.producer(value);
  if (!mm || mm->op_type() != "MatMul")
    return std::nullopt;
  const onnx::NodeProto *transpose = g.producer(inputOf(*mm, 1));
  bool transposed = transpose && transpose->op_type() == "Transpose";
  if (transposed) {
    llvm::SmallVector<int64_t> perm = intsAttr(*transpose, "perm");
    if (!perm.empty() && perm != llvm::SmallVector<int64_t>{1, 0})
      return std::nullopt;
  }
  const onnx::NodeProto *gather = g.producer(transposed ? inputOf(*transpose, 0) : inputOf(*mm, 1));
  std::optional<llvm::SmallVector<int64_t>> stack = gather ? constants.shape(inputOf(*gather, 0)) : std::nullopt;
  std::optional<llvm::SmallVector<int64_t>> index = gather ? constants(inputOf(*gather, 1)) : std::nullopt;
  std::optional<llvm::SmallVector<int64_t>> indexShape = gather ? constants.shape(inputOf(*gather, 1)) : std::nullopt;
  if (!gather || gather->op_type() != "Gather" || intAttr(*gather, "axis", 0) != 0 ||
      !g.isConstant(inputOf(*gather, 0)) || !stack || stack->size() != 3 || !index || index->size() != 1 ||
      !indexShape || !indexShape->empty())
    return std::nullopt;
  int64_t i = (*index)[0] < 0 ? (*index)[0] + (*stack)[0] : (*index)[0];
  if (i < 0 || i >= (*stack)[0])
    return std::nullopt;
  WeightView view;
  view.source = inputOf(*gather, 0);
  view.index = i;
  view.transposed = transposed;
  view.name = view.source + "[" + std::to_string(i) + "]" + (transposed ? ".T" : "");
  lhs = inputOf(*mm, 0);
  nodes.append({mm, gather});
  if (transposed)
    nodes.push_back(transpose);
  return view;
}

/// `whole` (a view or a constant) cut to [start, start + count) of its
/// output axis.
WeightView outputPart(const WeightView &whole, int64_t start, int64_t count) {
  WeightView part = whole;
  part.start = whole.start + start;
  part.count = count;
  part.name = whole.name + "[" + std::to_string(part.start) + ":" + std::to_string(part.start + count) + "]";
  return part;
}

bool scalarIs(const ConstantLookup &constants, llvm::StringRef value, double want, double tolerance) {
  std::optional<std::vector<float>> v = constants.floats ? constants.floats(value) : std::nullopt;
  return v && v->size() == 1 && std::abs((*v)[0] - want) <= tolerance;
}

} // namespace

/// The ungated activation computing `value` from h: Relu(h), its square
/// (Mul(r, r) or Pow(r, 2) of r = Relu(h)), Gelu(h) (exact or tanh), GELU's
/// erf form 0.5 · h · (1 + Erf(h / √2)) in any order of its products, or
/// SiLU h · Sigmoid(h). Sets h.
std::optional<PlainActivation> plainActivation(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef value,
                                          std::string &h, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *n = g.producer(value);
  if (!n)
    return std::nullopt;
  auto other = [](const onnx::NodeProto &m, llvm::StringRef v) { return inputOf(m, 0) == v ? inputOf(m, 1) : inputOf(m, 0); };
  if (n->op_type() == "Relu" || n->op_type() == "Gelu") {
    h = inputOf(*n, 0);
    nodes.push_back(n);
    if (n->op_type() == "Relu")
      return PlainActivation::relu;
    for (const onnx::AttributeProto &a : n->attribute())
      if (a.name() == "approximate" && a.s() == "tanh")
        return PlainActivation::gelu_tanh;
    return PlainActivation::gelu;
  }
  // Squared ReLU: Relu(h) times itself, or to the power 2.
  if ((n->op_type() == "Mul" && inputOf(*n, 0) == inputOf(*n, 1)) ||
      (n->op_type() == "Pow" && scalarIs(constants, inputOf(*n, 1), 2.0, 0.0)))
    if (const onnx::NodeProto *relu = g.producer(inputOf(*n, 0)); relu && relu->op_type() == "Relu") {
      h = inputOf(*relu, 0);
      nodes.append({n, relu});
      return PlainActivation::relu2;
    }
  if (n->op_type() != "Mul")
    return std::nullopt;
  // SiLU: Mul(h, Sigmoid(h)).
  for (int side = 0; side < 2; ++side) {
    const onnx::NodeProto *sigmoid = g.producer(inputOf(*n, 1 - side));
    if (sigmoid && sigmoid->op_type() == "Sigmoid" && inputOf(*sigmoid, 0) == inputOf(*n, side)) {
      h = inputOf(*n, side);
      nodes.append({n, sigmoid});
      return PlainActivation::silu;
    }
  }
  // GELU (erf): the product of 0.5, h and 1 + Erf(h / √2), as two Muls.
  llvm::SmallVector<std::string> factors;
  llvm::SmallVector<const onnx::NodeProto *> found = {n};
  for (const std::string &in : n->input()) {
    const onnx::NodeProto *inner = g.producer(in);
    if (inner && inner->op_type() == "Mul" && g.users(in).size() == 1) {
      found.push_back(inner);
      factors.append({inputOf(*inner, 0), inputOf(*inner, 1)});
    } else {
      factors.push_back(in);
    }
  }
  if (factors.size() != 3)
    return std::nullopt;
  // 1 + Erf(.) is an Add of 1 and an Erf; x may be an Add too (a bias).
  auto isOnePlusErf = [&](const onnx::NodeProto *p) {
    if (!p || p->op_type() != "Add")
      return false;
    for (int side = 0; side < 2; ++side) {
      const onnx::NodeProto *erf = g.producer(inputOf(*p, side));
      if (erf && erf->op_type() == "Erf" && scalarIs(constants, inputOf(*p, 1 - side), 1.0, 0.0))
        return true;
    }
    return false;
  };
  std::string half, onePlusErf, x;
  for (const std::string &f : factors) {
    if (scalarIs(constants, f, 0.5, 0.0) && half.empty())
      half = f;
    else if (isOnePlusErf(g.producer(f)) && onePlusErf.empty())
      onePlusErf = f;
    else
      x = f;
  }
  const onnx::NodeProto *add = onePlusErf.empty() ? nullptr : g.producer(onePlusErf);
  const onnx::NodeProto *erf = nullptr;
  for (int side = 0; add && side < 2 && !erf; ++side)
    if (scalarIs(constants, inputOf(*add, 1 - side), 1.0, 0.0))
      erf = g.producer(inputOf(*add, side));
  const onnx::NodeProto *scaled = erf && erf->op_type() == "Erf" ? g.producer(inputOf(*erf, 0)) : nullptr;
  // √2 and 1/√2 as a 16-bit graph holds them (f16 and bf16 round both to
  // these values): GELU up to that rounding, as the rest of such a graph.
  constexpr double kRoot2In16Bits = 1.4140625, kHalfRoot2In16Bits = 0.70703125;
  auto isRoot2 = [&](llvm::StringRef v) {
    return scalarIs(constants, v, M_SQRT2, 1e-5) || scalarIs(constants, v, kRoot2In16Bits, 0.0);
  };
  auto isHalfRoot2 = [&](llvm::StringRef v) {
    return scalarIs(constants, v, M_SQRT1_2, 1e-6) || scalarIs(constants, v, kHalfRoot2In16Bits, 0.0);
  };
  bool byRoot2 = scaled && ((scaled->op_type() == "Div" && isRoot2(inputOf(*scaled, 1))) ||
                            (scaled->op_type() == "Mul" && isHalfRoot2(other(*scaled, x))));
  if (half.empty() || x.empty() || !byRoot2 || inputOf(*scaled, 0) != x)
    return std::nullopt;
  found.append({add, erf, scaled});
  nodes.append(found.begin(), found.end());
  h = x;
  return PlainActivation::gelu;
}

std::optional<std::pair<int64_t, int64_t>> lastAxisSlice(const ConstantLookup &constants, const onnx::NodeProto *slice,
                                                         llvm::StringRef h, int64_t width) {
  if (!slice || slice->op_type() != "Slice" || inputOf(*slice, 0) != h || slice->input_size() < 4)
    return std::nullopt;
  std::optional<llvm::SmallVector<int64_t>> starts = constants(inputOf(*slice, 1)), ends = constants(inputOf(*slice, 2)),
                                            axes = constants(inputOf(*slice, 3));
  std::optional<llvm::SmallVector<int64_t>> steps = slice->input_size() < 5 || inputOf(*slice, 4).empty()
                                                        ? llvm::SmallVector<int64_t>{1}
                                                        : constants(inputOf(*slice, 4));
  if (!starts || !ends || !axes || starts->size() != 1 || ends->size() != 1 || axes->size() != 1 ||
      ((*axes)[0] != -1 && (*axes)[0] != 1) || steps != llvm::SmallVector<int64_t>{1} || (*starts)[0] < 0)
    return std::nullopt;
  return std::make_pair((*starts)[0], std::min((*ends)[0], width));
}

std::optional<OwnExpertFfn> matchOwnExpertFfn(const GraphIndex &g, const ConstantLookup &constants,
                                              llvm::StringRef output, llvm::function_ref<bool(llvm::StringRef)> isInput,
                                              llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  llvm::SmallVector<const onnx::NodeProto *> found;
  OwnExpertFfn ffn;
  std::string act;
  // A projection's weight: a constant, or a view of one (its bias then
  // none); the view goes to `views`.
  auto weightOf = [&](llvm::StringRef value, std::string &bias, std::string &lhs,
                      llvm::SmallVector<const onnx::NodeProto *> &into,
                      std::vector<WeightView> &views) -> LinearWeight {
    LinearWeight w = biasedLinear(g, constants, value, bias, lhs, into);
    if (!w.empty())
      return w;
    std::optional<WeightView> view = stackedMatrixLinear(g, constants, value, lhs, into);
    if (!view)
      return {};
    bias.clear();
    views.push_back(*view);
    return {view->name, false};
  };
  LinearWeight down = weightOf(output, ffn.downBias, act, found, ffn.views);
  if (down.empty())
    return std::nullopt;
  ffn.down = down.name;
  ffn.rows = down.rows;
  auto projection = [&](llvm::StringRef value, std::string &bias, llvm::SmallVector<const onnx::NodeProto *> &into,
                        std::vector<WeightView> &views) {
    std::string lhs;
    LinearWeight w = weightOf(value, bias, lhs, into, views);
    return !w.empty() && isInput(lhs) && w.rows == down.rows ? w.name : std::string();
  };
  // Ungated: act(x W1 [+ b1]).
  std::string h;
  llvm::SmallVector<const onnx::NodeProto *> plainNodes;
  if (std::optional<PlainActivation> kind = plainActivation(g, constants, act, h, plainNodes)) {
    ffn.gate = projection(h, ffn.gateBias, plainNodes, ffn.views);
    if (!ffn.gate.empty()) {
      ffn.ungated = *kind;
      nodes.append(found.begin(), found.end());
      nodes.append(plainNodes.begin(), plainNodes.end());
      return ffn;
    }
  }
  // Gated: act(x Wg [+ bg]) * (x Wu [+ bu]).
  const onnx::NodeProto *product = g.producer(act);
  if (!product || product->op_type() != "Mul")
    return std::nullopt;
  for (int side = 0; side < 2; ++side) {
    llvm::SmallVector<const onnx::NodeProto *> upNodes;
    std::string upBias;
    std::vector<WeightView> views = ffn.views;
    std::string up = projection(inputOf(*product, side), upBias, upNodes, views);
    const onnx::NodeProto *activated = up.empty() ? nullptr : g.producer(inputOf(*product, 1 - side));
    if (!activated)
      continue;
    for (const std::string &in : activated->input()) {
      llvm::SmallVector<const onnx::NodeProto *> gateNodes, actNodes;
      std::string gateBias;
      std::vector<WeightView> gateViews = views;
      std::string gate = projection(in, gateBias, gateNodes, gateViews);
      GateActivation kind = GateActivation::silu;
      if (gate.empty() || matchGatedActivation(g, in, inputOf(*product, side), kind, actNodes) != product)
        continue;
      ffn.gate = gate;
      ffn.up = up;
      ffn.gateBias = gateBias;
      ffn.upBias = upBias;
      ffn.gated = kind;
      ffn.views = std::move(gateViews);
      for (auto *list : {&found, &upNodes, &gateNodes, &actNodes})
        nodes.append(list->begin(), list->end());
      return ffn;
    }
  }
  // Gate and up fused in one weight W [in, 2I] (or rows [2I, in]): act(h[:,
  // :I]) * h[:, I:] (or the halves the other way round) with h = lhs @ W,
  // the halves Slices of h or the two parts of its Split (torch.chunk).
  for (int side = 0; side < 2; ++side) {
    const onnx::NodeProto *upNode = g.producer(inputOf(*product, side));
    const onnx::NodeProto *activated = g.producer(inputOf(*product, 1 - side));
    if (!upNode || (upNode->op_type() != "Slice" && upNode->op_type() != "Split") || !activated)
      continue;
    std::string hValue = inputOf(*upNode, 0), bias, lhs;
    llvm::SmallVector<const onnx::NodeProto *> fusedNodes;
    std::vector<WeightView> views = ffn.views;
    LinearWeight w = weightOf(hValue, bias, lhs, fusedNodes, views);
    bool viewed = views.size() > ffn.views.size();
    int64_t width = -1;
    if (viewed) {
      std::optional<llvm::SmallVector<int64_t>> stack = constants.shape(views.back().source);
      width = stack ? (*stack)[views.back().transposed ? 1 : 2] : -1;
    } else if (std::optional<llvm::SmallVector<int64_t>> shape = w.empty() ? std::nullopt : constants.shape(w.name);
               shape && shape->size() == 2) {
      width = (*shape)[w.rows ? 0 : 1];
    }
    // A bias of the fused projection is cut the same way.
    std::optional<llvm::SmallVector<int64_t>> biasShape = bias.empty() ? std::nullopt : constants.shape(bias);
    if (w.empty() || !isInput(lhs) || w.rows != down.rows || width <= 0 || width % 2 != 0 ||
        (!bias.empty() && biasShape != llvm::SmallVector<int64_t>{width}))
      continue;
    int64_t half = width / 2;
    // Which part of h a value is: 0 for [0, I), 1 for [I, 2I), else -1.
    auto partOf = [&](llvm::StringRef value, const onnx::NodeProto *n) -> int {
      if (!n || inputOf(*n, 0) != hValue)
        return -1;
      if (n->op_type() == "Slice") {
        std::optional<std::pair<int64_t, int64_t>> range = lastAxisSlice(constants, n, hValue, width);
        using Range = std::pair<int64_t, int64_t>;
        return !range ? -1 : *range == Range(0, half) ? 0 : *range == Range(half, width) ? 1 : -1;
      }
      int64_t axis = intAttr(*n, "axis", 0);
      std::optional<llvm::SmallVector<int64_t>> sizes =
          n->input_size() > 1 && !inputOf(*n, 1).empty() ? constants(inputOf(*n, 1)) : std::nullopt;
      bool halves = n->input_size() > 1 && !inputOf(*n, 1).empty() ? sizes && *sizes == llvm::SmallVector<int64_t>{half, half}
                                                                     : intAttr(*n, "num_outputs", 2) == 2;
      if (n->op_type() != "Split" || (axis != -1 && axis != 1) || n->output_size() != 2 || !halves)
        return -1;
      return outputOf(*n, 0) == value ? 0 : outputOf(*n, 1) == value ? 1 : -1;
    };
    // Either half may be the gate (`u, g = h.chunk(2)` too).
    int upPart = partOf(inputOf(*product, side), upNode);
    if (upPart < 0)
      continue;
    for (const std::string &in : activated->input()) {
      const onnx::NodeProto *gateNode = g.producer(in);
      GateActivation kind = GateActivation::silu;
      llvm::SmallVector<const onnx::NodeProto *> gateActNodes;
      if (partOf(in, gateNode) != 1 - upPart || gateNode->op_type() != upNode->op_type() ||
          matchGatedActivation(g, in, inputOf(*product, side), kind, gateActNodes) != product)
        continue;
      WeightView whole = viewed ? views.back() : WeightView{w.name, w.name, -1, false, w.rows, 0, -1};
      whole.rows = w.rows;
      if (viewed)
        views.pop_back();
      // The gate's and the up's halves of `of` (a weight or its bias) as
      // views; sets their names.
      auto cut = [&](const WeightView &of, std::string &gateName, std::string &upName) {
        views.push_back(outputPart(of, upPart == 1 ? 0 : half, half));
        gateName = views.back().name;
        views.push_back(outputPart(of, upPart == 1 ? half : 0, half));
        upName = views.back().name;
      };
      cut(whole, ffn.gate, ffn.up);
      if (!bias.empty())
        cut(WeightView{bias, bias, -1, false, false, 0, -1}, ffn.gateBias, ffn.upBias);
      ffn.gated = kind;
      ffn.views = std::move(views);
      for (auto *list : {&found, &fusedNodes, &gateActNodes})
        nodes.append(list->begin(), list->end());
      nodes.push_back(upNode);
      if (gateNode != upNode)
        nodes.push_back(gateNode);
      return ffn;
    }
  }
  return std::nullopt;
}

bool setOwnExperts(MoeBlock &block, const std::map<int64_t, OwnExpertFfn> &ffns, std::string &why) {
  const OwnExpertFfn &first = ffns.begin()->second;
  // A bias one projection lacks is zeros (BlockImport fills them), so some
  // biased projections make the whole layer biased.
  bool biased = llvm::any_of(ffns, [](const auto &entry) {
    const OwnExpertFfn &f = entry.second;
    return !f.downBias.empty() || !f.gateBias.empty() || !f.upBias.empty();
  });
  for (auto &[e, ffn] : ffns) {
    bool sameForm = ffn.rows == first.rows && ffn.ungated == first.ungated && (ffn.ungated || ffn.gated == first.gated);
    if (!sameForm) {
      why = "expert " + std::to_string(e) + "'s FFN differs in form from the others' (layout or activation)";
      return false;
    }
    block.expertGate.push_back(ffn.gate);
    block.expertUp.push_back(ffn.up);
    block.expertDown.push_back(ffn.down);
    block.weightViews.insert(block.weightViews.end(), ffn.views.begin(), ffn.views.end());
    if (biased) {
      block.expertGateBias.push_back(ffn.gateBias);
      block.expertUpBias.push_back(ffn.upBias);
      block.expertDownBias.push_back(ffn.downBias);
    }
  }
  block.expertRows = first.rows;
  block.ungated = first.ungated;
  block.activation = first.gated;
  return true;
}

} // namespace mlir::moe::onnx_import::blocks
