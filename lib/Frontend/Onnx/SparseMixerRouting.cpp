//===- SparseMixerRouting.cpp - Phi-3.5-MoE's SparseMixer routing ---------===//
//
// transformers' `sparsemixer` (PhiMoE, inference) as torch.onnx writes it,
// after the canonicalisation has read the first `scores.max(-1)` as
// TopK(logits, 1):
//
//   v1, i1 = TopK(logits, 1)
//   w1 = GatherElements(Softmax(Where(far(v1), -inf, logits)), i1)
//   s  = ScatterElements(logits, i1, -inf)                  (the pick masked)
//   v2, i2 = ReduceMax(s), ArgMax(s)                        (keepdims)
//   w2 = GatherElements(Softmax(Where(far(v2), -inf, s)), i2)
//   w, ids = Concat(w1, w2), Concat(i1, i2)
//
// with far(v) = (v - logits) / Max(Abs(logits), v) > 2 eps. The layer
// computes it as ONNX Runtime's MoE with use_sparse_mixer does
// (ExpertMixture.h: the same comparisons and softmaxes, ties to the lower
// index as ArgMax's first maximum).
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"

#include <cmath>
#include <cstring>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace mlir::moe::onnx_import::blocks {

namespace {

class SparseMixerMatcher {
public:
  SparseMixerMatcher(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef logits,
                     llvm::SmallVector<const onnx::NodeProto *> &nodes)
      : g(g), constants(constants), logits(logits.str()), nodes(nodes) {}

  /// One round on `candidates` (the logits, then with the first pick
  /// masked) whose maximum is `best` at `pick`: the pick's weight.
  std::optional<std::string> round(llvm::StringRef candidates, llvm::StringRef best, llvm::StringRef pick) {
    // Where(Greater(Div(Sub(best, logits), Max(Abs(logits), best)), 2 eps), -inf, candidates)
    for (int u : g.users(candidates)) {
      const onnx::NodeProto &where = g.graph.node(u);
      if (where.op_type() != "Where" || inputOf(where, 2) != candidates || !isScalar(inputOf(where, 1), -INFINITY))
        continue;
      const onnx::NodeProto *greater = producer(inputOf(where, 0), "Greater");
      const onnx::NodeProto *div = greater ? producer(inputOf(*greater, 0), "Div") : nullptr;
      const onnx::NodeProto *sub = div ? producer(inputOf(*div, 0), "Sub") : nullptr;
      const onnx::NodeProto *max = div ? producer(inputOf(*div, 1), "Max") : nullptr;
      if (!greater || !div || !sub || !max || inputOf(*sub, 0) != best || inputOf(*sub, 1) != logits ||
          max->input_size() != 2)
        continue;
      std::optional<float> twiceEps = scalarFloat(constants, inputOf(*greater, 1));
      const onnx::NodeProto *abs = nullptr;
      for (int side = 0; side < 2 && !abs; ++side)
        if (inputOf(*max, 1 - side) == best)
          abs = producer(inputOf(*max, side), "Abs");
      if (!twiceEps || !abs || inputOf(*abs, 0) != logits)
        continue;
      const onnx::NodeProto *softmax = g.onlyUser(outputOf(where, 0), "Softmax");
      const onnx::NodeProto *gather = softmax ? g.onlyUser(outputOf(*softmax, 0), "GatherElements") : nullptr;
      if (!softmax || !lastAxis(*softmax, "axis") || !gather || inputOf(*gather, 1) != pick ||
          !lastAxis(*gather, "axis"))
        continue;
      if (eps && std::fabs(*eps - *twiceEps / 2) > 1e-7f)
        return std::nullopt;
      eps = *twiceEps / 2;
      nodes.append({&where, greater, div, sub, max, abs, softmax, gather});
      return outputOf(*gather, 0);
    }
    return std::nullopt;
  }

  /// The maximum and its index of `s` along the last axis with keepdims:
  /// ReduceMax and ArgMax (first maximum), or TopK(s, 1).
  std::optional<std::pair<std::string, std::string>> best(llvm::StringRef s) {
    const onnx::NodeProto *reduceMax = nullptr, *argMax = nullptr;
    for (int u : g.users(s)) {
      const onnx::NodeProto &n = g.graph.node(u);
      if (n.op_type() == "TopK" && isScalarInt(inputOf(n, 1), 1) && intAttr(n, "largest", 1) == 1 &&
          lastAxis(n, "axis")) {
        nodes.push_back(&n);
        return std::make_pair(outputOf(n, 0), outputOf(n, 1));
      }
      if (n.op_type() == "ReduceMax" && intAttr(n, "keepdims", 1) == 1 && hasAxis(n, constants, -1))
        reduceMax = &n;
      if (n.op_type() == "ArgMax" && intAttr(n, "keepdims", 1) == 1 && intAttr(n, "select_last_index", 0) == 0 &&
          lastAxis(n, "axis"))
        argMax = &n;
    }
    if (!reduceMax || !argMax)
      return std::nullopt;
    nodes.append({reduceMax, argMax});
    return std::make_pair(outputOf(*reduceMax, 0), outputOf(*argMax, 0));
  }

  /// ScatterElements(logits, pick, -inf filled to pick's shape) on the last
  /// axis: the logits without the first pick.
  std::optional<std::string> withoutPick(llvm::StringRef pick) {
    for (int u : g.users(pick)) {
      const onnx::NodeProto &scatter = g.graph.node(u);
      if (scatter.op_type() != "ScatterElements" || inputOf(scatter, 0) != logits || inputOf(scatter, 1) != pick ||
          !lastAxis(scatter, "axis") || stringAttr(scatter, "reduction", "none") != "none")
        continue;
      const onnx::NodeProto *fill = producer(inputOf(scatter, 2), "ConstantOfShape");
      const onnx::NodeProto *shape = fill ? producer(inputOf(*fill, 0), "Shape") : nullptr;
      if (!shape || inputOf(*shape, 0) != pick ||
          !llvm::any_of(fill->attribute(), [](const onnx::AttributeProto &a) {
            return a.name() == "value" && isNegativeInfinity(a.t());
          }))
        continue;
      nodes.append({&scatter, fill, shape});
      return outputOf(scatter, 0);
    }
    return std::nullopt;
  }

  std::optional<float> eps;

private:
  const onnx::NodeProto *producer(llvm::StringRef value, llvm::StringRef op) const {
    const onnx::NodeProto *n = g.producer(value);
    return n && n->op_type() == op ? n : nullptr;
  }
  bool isScalar(llvm::StringRef value, float want) const {
    std::optional<float> v = scalarFloat(constants, value);
    return v && (*v == want);
  }
  bool isScalarInt(llvm::StringRef value, int64_t want) const {
    std::optional<llvm::SmallVector<int64_t>> v = constants(value);
    return v && v->size() == 1 && (*v)[0] == want;
  }
  /// The node's `name` axis is the logits' last ([T, E]: -1 or 1).
  bool lastAxis(const onnx::NodeProto &n, llvm::StringRef name) const {
    int64_t axis = intAttr(n, name, -1);
    return axis == -1 || axis == 1;
  }
  static bool isNegativeInfinity(const onnx::TensorProto &t) {
    float v;
    if (t.data_type() != onnx::TensorProto::FLOAT)
      return false;
    if (t.float_data_size() == 1)
      v = t.float_data(0);
    else if (t.raw_data().size() == sizeof(float))
      std::memcpy(&v, t.raw_data().data(), sizeof(float));
    else
      return false;
    return std::isinf(v) && v < 0;
  }

  const GraphIndex &g;
  const ConstantLookup &constants;
  std::string logits;
  llvm::SmallVector<const onnx::NodeProto *> &nodes;
};

} // namespace

std::optional<SparseMixerRouting> matchSparseMixerRouting(const GraphIndex &g, const ConstantLookup &constants,
                                                          int topk, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto &t = g.graph.node(topk);
  std::optional<llvm::SmallVector<int64_t>> k = constants(inputOf(t, 1));
  int64_t axis = intAttr(t, "axis", -1);
  if (!k || *k != llvm::SmallVector<int64_t>{1} || intAttr(t, "largest", 1) != 1 || (axis != -1 && axis != 1) ||
      (constants.rank && constants.rank(inputOf(t, 0)) != 2))
    return std::nullopt;
  llvm::SmallVector<const onnx::NodeProto *> found = {&t};
  SparseMixerMatcher m(g, constants, inputOf(t, 0), found);
  std::string v1 = outputOf(t, 0), i1 = outputOf(t, 1);
  std::optional<std::string> w1 = m.round(inputOf(t, 0), v1, i1);
  std::optional<std::string> masked = w1 ? m.withoutPick(i1) : std::nullopt;
  std::optional<std::pair<std::string, std::string>> second = masked ? m.best(*masked) : std::nullopt;
  std::optional<std::string> w2 = second ? m.round(*masked, second->first, second->second) : std::nullopt;
  if (!w2)
    return std::nullopt;
  // Both picks joined in slot order.
  auto joined = [&](llvm::StringRef a, llvm::StringRef b) -> const onnx::NodeProto * {
    const onnx::NodeProto *concat = g.userOfType(a, "Concat");
    int64_t at = concat ? intAttr(*concat, "axis", 0) : 0;
    return concat && concat->input_size() == 2 && inputOf(*concat, 0) == a && inputOf(*concat, 1) == b &&
                   (at == -1 || at == 1)
               ? concat
               : nullptr;
  };
  const onnx::NodeProto *weights = joined(*w1, *w2), *ids = joined(i1, second->second);
  if (!weights || !ids)
    return std::nullopt;
  found.append({weights, ids});
  nodes.append(found.begin(), found.end());
  return SparseMixerRouting{inputOf(t, 0), outputOf(*weights, 0), outputOf(*ids, 0), *m.eps};
}

} // namespace mlir::moe::onnx_import::blocks
