//===- WeightedSums.cpp - sums over an axis however they are spelled ------===//
//
// A weighted sum over the slots (or experts) of a [T, k, H] value P with
// [T, k] weights w is written many ways in PyTorch, and the block matchers
// read one of them, ReduceSum(Unsqueeze(w, -1) * P, 1):
//
//   torch.einsum('tk,tkh->th', w, P)           Einsum (either operand order)
//   torch.bmm(w.unsqueeze(1), P).squeeze(1)    Squeeze(MatMul(Unsqueeze(w, 1), P), 1)
//   (w.unsqueeze(1) @ P).squeeze(1)            the same
//
// Each is sum_j w[t, j] P[t, j, h]: the same products, summed in another
// order (rounding only). w must be computed from a TopK's columns (routing
// weights): a row of activations times gathered weight matrices has the
// same shape and stays a matmul. A list of same-shaped values stacked and summed,
// torch.stack(list).sum(0), is ReduceSum(Concat_i(Unsqueeze(v_i, a), a),
// a), and is written as the Add chain v_0 + v_1 + ... that sum(list)
// gives.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"
#include "GraphCanonicalization.h"
#include "GraphEditor.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

/// "tk,tkh->th" or "tkh,tk->th" with any letters: the operand index of
/// the 2-D weights, or -1.
int weightedSumEquation(llvm::StringRef equation) {
  return blocks::einsumIs(equation, "tk,tkh->th") ? 0 : blocks::einsumIs(equation, "tkh,tk->th") ? 1 : -1;
}

class WeightedSumRewriter : public GraphEditor {
public:
  using GraphEditor::GraphEditor;

  int64_t run() {
    for (const onnx::NodeProto &n : graph.node()) {
      if (!isStandardNode(n) || n.output_size() != 1)
        continue;
      if (n.op_type() == "Einsum" && n.input_size() == 2) {
        int weights = weightedSumEquation(blocks::stringAttr(n, "equation", ""));
        if (weights >= 0 && isSlotWeights(n.input(weights)) && rankOf(n.input(1 - weights)) == 3)
          rewrite(n, n.input(weights), n.input(1 - weights));
      } else if (n.op_type() == "Squeeze" && axesOf(n) == llvm::SmallVector<int64_t>{1}) {
        // Squeeze(MatMul(Unsqueeze(w, 1), P), 1) with w [T, k], P [T, k, H].
        const onnx::NodeProto *mm = producerOf(n.input(0), "MatMul");
        const onnx::NodeProto *row = mm ? producerOf(mm->input(0), "Unsqueeze") : nullptr;
        if (row && rankOf(n.input(0)) == 3 && axesOf(*row) == llvm::SmallVector<int64_t>{1} &&
            isSlotWeights(row->input(0)) && rankOf(mm->input(1)) == 3)
          rewrite(n, row->input(0), mm->input(1));
      } else if (n.op_type() == "ReduceSum") {
        stackedSum(n);
      }
    }
    return commit();
  }

private:
  int64_t rankOf(llvm::StringRef v) const {
    const ValueFacts *f = factsOf(v);
    return f ? f->rank : -1;
  }

  /// A [T, k] value computed from a TopK's columns (its values, their
  /// softmax, renormalised, ...): routing weights. Other contractions of
  /// this shape (a row of activations times gathered weight matrices) stay
  /// the matmuls the expert matchers read.
  bool isSlotWeights(llvm::StringRef w) const {
    std::optional<TopKColumns> columns = rankOf(w) == 2 ? columnsOf(w) : std::nullopt;
    return columns && columns->begin == 0;
  }

  /// `at` (whose output is the sum) as ReduceSum(Unsqueeze(w, -1) * p, 1).
  void rewrite(const onnx::NodeProto &at, const std::string &w, const std::string &p) {
    std::string column = fresh(at.name() + "/weights"), products = fresh(at.name() + "/products");
    replace(at, {squeeze(w, {-1}, column, at.name() + "/unsqueeze", /*unsqueeze=*/true),
                 node("Mul", {column, p}, products, at.name() + "/mul"),
                 reduceSum(products, {1}, /*keepdims=*/false, at.output(0), at.name() + "/sum")});
  }

  /// ReduceSum(Concat_i(Unsqueeze(v_i, a), axis a), a) without keepdims,
  /// the Concat read only here: the Add chain of the v_i.
  void stackedSum(const onnx::NodeProto &sum) {
    std::optional<llvm::SmallVector<int64_t>> axes = axesOf(sum);
    const onnx::NodeProto *concat = producerOf(sum.input(0), "Concat");
    int64_t rank = rankOf(sum.input(0));
    if (!axes || axes->size() != 1 || !concat || concat->input_size() < 2 || rank < 0 ||
        blocks::intAttr(sum, "keepdims", 1) != 0 || !onlyRead(concat->output(0)))
      return;
    auto fromFront = [&](int64_t a) { return a < 0 ? a + rank : a; };
    int64_t axis = fromFront((*axes)[0]);
    if (fromFront(blocks::intAttr(*concat, "axis", 0)) != axis)
      return;
    llvm::SmallVector<std::string> values;
    for (const std::string &in : concat->input()) {
      const onnx::NodeProto *unsq = producerOf(in, "Unsqueeze");
      std::optional<llvm::SmallVector<int64_t>> a = unsq ? axesOf(*unsq) : std::nullopt;
      if (!a || a->size() != 1 || fromFront((*a)[0]) != axis)
        return;
      values.push_back(unsq->input(0));
    }
    std::vector<onnx::NodeProto> adds;
    std::string acc = values[0];
    for (size_t i = 1; i < values.size(); ++i) {
      std::string out = i + 1 == values.size() ? sum.output(0) : fresh(sum.name() + "/partial");
      adds.push_back(node("Add", {acc, values[i]}, out, sum.name() + "/add" + std::to_string(i)));
      acc = out;
    }
    replace(sum, std::move(adds));
  }
};

} // namespace

int64_t mlir::moe::onnx_import::canonicalizeWeightedSums(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                                         llvm::StringMap<ValueFacts> &facts,
                                                         llvm::StringMap<llvm::SmallVector<int64_t>> &made) {
  return runRewriter<WeightedSumRewriter>(graph, ctx, facts, made, /*minOpset=*/1);
}
