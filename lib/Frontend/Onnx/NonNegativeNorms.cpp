//===- NonNegativeNorms.cpp - L1 norms of routing weights as sums --------===//
//
// DBRX renormalises its top-k weights by their L1 norm, which PyTorch
// writes as torch.norm(w, p=1), F.normalize(w, p=1) or w.abs().sum():
// ReduceL1 or ReduceSum(Abs). Routing weights are probabilities, so for
// them these are the plain sum the block matchers read:
//
//   ReduceL1(v) = ReduceSum(v),  Abs(v) = v      for v >= 0 (or NaN)
//
// v is known non-negative from what computes it: softmax, sigmoid, exp,
// relu, abs, sqrt and softplus; the values of a TopK, gathers, slices and
// reshapes of such a value; sums, products, quotients, maxima and
// reductions of such values; a Clip from a non-negative bound.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"
#include "GraphCanonicalization.h"
#include "GraphEditor.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

class NonNegativeNormRewriter : public GraphEditor {
public:
  using GraphEditor::GraphEditor;

  int64_t run() {
    for (const onnx::NodeProto &n : graph.node()) {
      if (!isStandardNode(n) || (n.op_type() != "Abs" && n.op_type() != "ReduceL1") || n.input_size() < 1 ||
          n.output_size() != 1 || !nonNegative(n.input(0), 0))
        continue;
      if (n.op_type() == "Abs") {
        replace(n, {node("Identity", {n.input(0)}, n.output(0), n.name() + "/non_negative")});
      } else if (n.op_type() == "ReduceL1") {
        onnx::NodeProto sum = n;
        sum.set_op_type("ReduceSum");
        // ReduceSum takes its axes as an input from opset 13, ReduceL1 from 18.
        std::optional<llvm::SmallVector<int64_t>> axes = axesOf(n);
        bool axesAttr = !blocks::intsAttr(n, "axes").empty();
        if (axesAttr && ctx.opset >= 13) {
          auto *attrs = sum.mutable_attribute();
          for (int i = attrs->size() - 1; i >= 0; --i)
            if (attrs->Get(i).name() == "axes")
              attrs->DeleteSubrange(i, 1);
          addAxes(sum, *axes, "moe_l1_axes");
        }
        replace(n, {sum});
      }
    }
    return commit();
  }

private:
  /// `v` is known >= 0 (or NaN) from the ops computing it.
  bool nonNegative(const std::string &v, int depth) const {
    const onnx::NodeProto *p = producers.lookup(v);
    if (!p || !isStandardNode(*p) || depth > 8)
      return false;
    llvm::StringRef op = p->op_type();
    auto input = [&](int i) {
      return p->input_size() > i && !p->input(i).empty() && nonNegative(p->input(i), depth + 1);
    };
    if (llvm::is_contained({"Softmax", "Sigmoid", "Exp", "Relu", "Abs", "Sqrt", "Softplus"}, op))
      return true;
    if (op == "TopK")
      return v == p->output(0) && input(0);
    if (llvm::is_contained({"Gather", "GatherElements", "GatherND", "Slice", "Reshape", "Squeeze", "Unsqueeze",
                            "Flatten", "Expand", "Transpose", "Identity", "Cast", "ReduceSum", "ReduceMax",
                            "ReduceMean", "ReduceMin"},
                           op))
      return input(0);
    if (llvm::is_contained({"Mul", "Div", "Add"}, op))
      return input(0) && input(1);
    if (op == "Max") {
      for (int i = 0; i < p->input_size(); ++i)
        if (input(i))
          return true;
      return false;
    }
    if (op == "Clip") {
      std::optional<double> low = p->input_size() > 1 && !p->input(1).empty() ? fillValue(p->input(1)) : std::nullopt;
      return (low && *low >= 0) || input(0);
    }
    return false;
  }
};

} // namespace

int64_t mlir::moe::onnx_import::canonicalizeNonNegativeNorms(onnx::GraphProto &graph,
                                                             const CanonicalizationContext &ctx,
                                                             llvm::StringMap<ValueFacts> &facts,
                                                             llvm::StringMap<llvm::SmallVector<int64_t>> &made) {
  return runRewriter<NonNegativeNormRewriter>(graph, ctx, facts, made, /*minOpset=*/1);
}
