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

bool scalarIs(const ConstantLookup &constants, llvm::StringRef value, double want, double tolerance) {
  std::optional<std::vector<float>> v = constants.floats ? constants.floats(value) : std::nullopt;
  return v && v->size() == 1 && std::abs((*v)[0] - want) <= tolerance;
}

/// The ungated activation computing `value` from h: Relu(h), Gelu(h) (exact
/// or tanh), GELU's erf form 0.5 · h · (1 + Erf(h / √2)) in any order of its
/// products, or SiLU h · Sigmoid(h). Sets h.
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
  std::string half, onePlusErf, x;
  for (const std::string &f : factors) {
    const onnx::NodeProto *p = g.producer(f);
    if (scalarIs(constants, f, 0.5, 0.0))
      half = f;
    else if (p && p->op_type() == "Add")
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

} // namespace

std::optional<OwnExpertFfn> matchOwnExpertFfn(const GraphIndex &g, const ConstantLookup &constants,
                                              llvm::StringRef output, llvm::function_ref<bool(llvm::StringRef)> isInput,
                                              llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  llvm::SmallVector<const onnx::NodeProto *> found;
  OwnExpertFfn ffn;
  std::string act;
  LinearWeight down = biasedLinear(g, constants, output, ffn.downBias, act, found);
  if (down.empty())
    return std::nullopt;
  ffn.down = down.name;
  ffn.rows = down.rows;
  auto projection = [&](llvm::StringRef value, std::string &bias, llvm::SmallVector<const onnx::NodeProto *> &into) {
    std::string lhs;
    LinearWeight w = biasedLinear(g, constants, value, bias, lhs, into);
    return !w.empty() && isInput(lhs) && w.rows == down.rows ? w.name : std::string();
  };
  // Ungated: act(x W1 [+ b1]).
  std::string h;
  llvm::SmallVector<const onnx::NodeProto *> plainNodes;
  if (std::optional<PlainActivation> kind = plainActivation(g, constants, act, h, plainNodes)) {
    ffn.gate = projection(h, ffn.gateBias, plainNodes);
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
    std::string up = projection(inputOf(*product, side), upBias, upNodes);
    const onnx::NodeProto *activated = up.empty() ? nullptr : g.producer(inputOf(*product, 1 - side));
    if (!activated)
      continue;
    for (const std::string &in : activated->input()) {
      llvm::SmallVector<const onnx::NodeProto *> gateNodes, actNodes;
      std::string gateBias;
      std::string gate = projection(in, gateBias, gateNodes);
      GateActivation kind = GateActivation::silu;
      if (gate.empty() || matchGatedActivation(g, in, inputOf(*product, side), kind, actNodes) != product)
        continue;
      ffn.gate = gate;
      ffn.up = up;
      ffn.gateBias = gateBias;
      ffn.upBias = upBias;
      ffn.gated = kind;
      for (auto *list : {&found, &upNodes, &gateNodes, &actNodes})
        nodes.append(list->begin(), list->end());
      return ffn;
    }
  }
  return std::nullopt;
}

bool setOwnExperts(MoeBlock &block, const std::map<int64_t, OwnExpertFfn> &ffns, std::string &why) {
  const OwnExpertFfn &first = ffns.begin()->second;
  bool biased = !first.downBias.empty();
  for (auto &[e, ffn] : ffns) {
    bool sameForm = ffn.rows == first.rows && ffn.ungated == first.ungated &&
                    (ffn.ungated || ffn.gated == first.gated) && !ffn.downBias.empty() == biased &&
                    !ffn.gateBias.empty() == biased && (ffn.ungated || !ffn.upBias.empty() == biased);
    if (!sameForm) {
      why = "expert " + std::to_string(e) + "'s FFN differs in form from the others' (layout, activation or biases)";
      return false;
    }
    block.expertGate.push_back(ffn.gate);
    block.expertUp.push_back(ffn.up);
    block.expertDown.push_back(ffn.down);
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
