//===- StaticIfs.cpp - If nodes whose condition the shapes decide --------===//
//
// TorchScript guards some ops with an If on a property of static ranks:
// scatter_reduce_ exports `If(Size(Shape(out)) == 0, reshape to 1-D,
// identity)` (the 0-D case). Where the condition is known before import
// (ValueFacts: ranks, sizes and the small integer values computed from
// them), the If is the branch it takes: its nodes are inlined, their
// values renamed apart from the graph's, and the If's outputs are
// Identities of the branch's. An If the import cannot decide stays (and is
// an unsupported op).
//
//===----------------------------------------------------------------------===//

#include "GraphCanonicalization.h"
#include "GraphEditor.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

class StaticIfRewriter : public GraphEditor {
public:
  using GraphEditor::GraphEditor;

  int64_t run() {
    for (const onnx::NodeProto &n : graph.node()) {
      if (!isStandardNode(n) || n.op_type() != "If" || n.input_size() != 1)
        continue;
      std::optional<bool> taken = condition(n.input(0));
      const onnx::GraphProto *branch = taken ? branchOf(n, *taken ? "then_branch" : "else_branch") : nullptr;
      if (!branch || branch->output_size() != n.output_size() || branch->initializer_size() != 0 ||
          branch->sparse_initializer_size() != 0)
        continue;
      replace(n, inlined(n, *branch));
    }
    return commit();
  }

private:
  /// The one boolean (or integer) element of `v`, when known.
  std::optional<bool> condition(const std::string &v) const {
    const ValueFacts *f = factsOf(v);
    std::optional<llvm::SmallVector<int64_t>> known = f ? f->knownValues() : std::nullopt;
    if (!known)
      known = ints(v);
    if (!known || known->size() != 1)
      return std::nullopt;
    return (*known)[0] != 0;
  }

  static const onnx::GraphProto *branchOf(const onnx::NodeProto &n, llvm::StringRef name) {
    for (const onnx::AttributeProto &a : n.attribute())
      if (a.name() == name && a.type() == onnx::AttributeProto::GRAPH)
        return &a.g();
    return nullptr;
  }

  /// The branch's nodes with their values renamed fresh (outer values read
  /// as they are), then the If's outputs as Identities of the branch's.
  std::vector<onnx::NodeProto> inlined(const onnx::NodeProto &at, const onnx::GraphProto &branch) {
    llvm::StringMap<std::string> renamed;
    std::vector<onnx::NodeProto> nodes;
    for (const onnx::NodeProto &inner : branch.node()) {
      onnx::NodeProto copy = inner;
      for (int i = 0; i < copy.input_size(); ++i)
        if (auto it = renamed.find(copy.input(i)); it != renamed.end())
          copy.set_input(i, it->second);
      for (int i = 0; i < copy.output_size(); ++i) {
        if (copy.output(i).empty())
          continue;
        std::string name = fresh(at.name() + "/" + copy.output(i));
        renamed[copy.output(i)] = name;
        copy.set_output(i, name);
      }
      copy.set_name(fresh(at.name() + "/" + inner.name()));
      nodes.push_back(std::move(copy));
    }
    for (int i = 0; i < at.output_size(); ++i) {
      const std::string &out = branch.output(i).name();
      auto it = renamed.find(out);
      nodes.push_back(node("Identity", {it == renamed.end() ? out : it->second}, at.output(i),
                           fresh(at.name() + "/output")));
    }
    return nodes;
  }
};

} // namespace

int64_t mlir::moe::onnx_import::canonicalizeStaticIfs(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                                      llvm::StringMap<ValueFacts> &facts,
                                                      llvm::StringMap<llvm::SmallVector<int64_t>> &made) {
  // An If after another reads what that one's branch computes: a pass each.
  int64_t total = 0;
  for (int pass = 0; pass < 256; ++pass) {
    int64_t replaced = runRewriter<StaticIfRewriter>(graph, ctx, facts, made, /*minOpset=*/1);
    if (replaced == 0)
      break;
    total += replaced;
  }
  return total;
}
