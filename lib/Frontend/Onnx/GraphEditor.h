//===- GraphEditor.h - reading and rewriting an ONNX graph -------*- C++ -*-===//
//
// The graph canonicalisations (SelectionCanonicalization.cpp,
// RepeatedArgMax.cpp, SlotSums.cpp) read an ONNX graph by value name (who
// produces a value, how many nodes read it, what constant it holds) and add
// nodes and int64 constants under names no other value has. GraphEditor is
// that index over one graph as it stands when it is built.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_FRONTEND_ONNX_GRAPHEDITOR_H
#define MOE_FRONTEND_ONNX_GRAPHEDITOR_H

#include "GraphCanonicalization.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mlir::moe::onnx_import {

/// A node of the default ONNX domain.
inline bool isStandardNode(const onnx::NodeProto &node) {
  return node.domain().empty() || node.domain() == "ai.onnx";
}

/// An ONNX float element type (f32, f16, bf16).
inline bool isFloatType(int32_t t) {
  return t == onnx::TensorProto::FLOAT || t == onnx::TensorProto::FLOAT16 || t == onnx::TensorProto::BFLOAT16;
}

/// The one element of a scalar (or one-element) tensor, as a double.
std::optional<double> scalarOf(const onnx::TensorProto &t);

/// `axes` made non-negative for rank `rank`, sorted; nullopt when one is
/// out of range or repeated.
std::optional<llvm::SmallVector<int64_t>> normalizedAxes(llvm::ArrayRef<int64_t> axes, int64_t rank);

/// Columns [begin, begin + width) along the last axis of `source`: output
/// `output` (0 values, 1 indices) of a TopK along its last axis, or (output
/// -1) a value computed elementwise from such columns, one per slot (the
/// weights renormalised, a softmax over the picks).
struct TopKColumns {
  const onnx::NodeProto *topk = nullptr;
  int output = 0;
  std::string source;
  int64_t begin = 0, width = 0;
};

/// One column of a TopK output: [..., 1] as sliced (kept), or with that
/// axis gone (squeezed: Squeeze, Gather of a scalar index).
struct TopKColumn {
  TopKColumns of;
  bool squeezed = false;
  int64_t column() const { return of.begin; }
};

/// Sets (or adds) integer attribute `name` of `n`.
void setIntAttribute(onnx::NodeProto &n, llvm::StringRef name, int64_t value);

class GraphEditor {
public:
  GraphEditor(onnx::GraphProto &graph, const CanonicalizationContext &ctx, const llvm::StringMap<ValueFacts> &facts,
              llvm::StringMap<llvm::SmallVector<int64_t>> &made);

  /// The integer values of a constant (one this editor made included).
  std::optional<llvm::SmallVector<int64_t>> ints(llvm::StringRef name) const {
    if (auto it = made.find(name); it != made.end())
      return it->second;
    return ctx.ints(name);
  }
  const ValueFacts *factsOf(llvm::StringRef name) const {
    auto it = facts.find(name);
    return it == facts.end() ? nullptr : &it->second;
  }
  /// The standard-domain node producing `v` when its op is `op`; null otherwise.
  const onnx::NodeProto *producerOf(llvm::StringRef v, llvm::StringRef op) const {
    const onnx::NodeProto *p = producers.lookup(v);
    return p && isStandardNode(*p) && p->op_type() == op ? p : nullptr;
  }
  /// `v` is read by one node and is not a graph output.
  bool onlyRead(llvm::StringRef v) const { return readers.lookup(v) == 1 && !graphOutputs.contains(v); }
  /// The axes of a Squeeze, Unsqueeze or reduction (attribute before opset
  /// 13/18, input 1 after).
  std::optional<llvm::SmallVector<int64_t>> axesOf(const onnx::NodeProto &node) const;
  /// A name no value of the graph has, from `base`.
  std::string fresh(llvm::StringRef base);
  /// A new int64 1-D initializer holding `values`.
  std::string constant(llvm::ArrayRef<int64_t> values, llvm::StringRef base);
  /// A node `op`(inputs) -> `out` named `name`.
  static onnx::NodeProto node(llvm::StringRef op, llvm::ArrayRef<std::string> inputs, const std::string &out,
                              llvm::StringRef name);
  /// Squeeze or Unsqueeze(`in`, `axes`) -> `out`, in the opset's spelling.
  onnx::NodeProto squeeze(const std::string &in, llvm::ArrayRef<int64_t> axes, const std::string &out,
                          llvm::StringRef name, bool unsqueeze = false);
  /// Slice(`in`, [begin], [end]) along the last axis -> `out`.
  onnx::NodeProto lastAxisSlice(const std::string &in, int64_t begin, int64_t end, const std::string &out,
                                llvm::StringRef name);
  /// ReduceSum(`in`, `axes`, keepdims) -> `out`, in the opset's spelling.
  onnx::NodeProto reduceSum(const std::string &in, llvm::ArrayRef<int64_t> axes, bool keepdims,
                            const std::string &out, llvm::StringRef name);
  /// What `v` is of a TopK over the last axis: the output itself, a value
  /// computed from all its columns elementwise (within `depth` ops), or
  /// last-axis Slices of either (step 1).
  std::optional<TopKColumns> columnsOf(llvm::StringRef v, int depth = 6) const;
  /// `v` as one column of a TopK output: kept (columnsOf, width 1, or an
  /// Unsqueeze(-1) of a squeezed one) or squeezed (Squeeze(-1) of a kept
  /// one, or Gather of a scalar constant index along the last axis).
  std::optional<TopKColumn> columnOf(llvm::StringRef v) const;
  /// `a` and `b` are constants (initializers or Constant nodes) with the
  /// same type, shape and elements.
  bool sameConstant(llvm::StringRef a, llvm::StringRef b) const;
  /// The value every element of `v` holds when `v` is a fill: a constant
  /// of one value (an initializer or Constant node, maybe broadcast by
  /// Expand), or ConstantOfShape (its value; absent: 0).
  std::optional<double> fillValue(llvm::StringRef v) const;
  /// `v` and the values a fill is computed from (Expand, ConstantOfShape,
  /// Shape): dead with the fill, unless read elsewhere (the removal checks).
  void fillValues(llvm::StringRef v, llvm::SmallVectorImpl<std::string> &out) const;

  /// Puts `nodes` where `at` is and drops `at` when the edit is committed;
  /// what it read may then be orphaned.
  void replace(const onnx::NodeProto &at, std::vector<onnx::NodeProto> nodes) {
    replacements[&at] = std::move(nodes);
    for (const std::string &in : at.input())
      orphans.insert(in);
  }
  bool replaced(const onnx::NodeProto &at) const { return replacements.count(&at); }
  /// Applies the replacements in graph order and removes the nodes they
  /// orphaned (removeOrphans); returns the number of replaced nodes.
  int64_t commit();

protected:
  /// The axes of a Squeeze/Unsqueeze/reduction: an input from opset 13, an
  /// attribute before.
  void addAxes(onnx::NodeProto &n, llvm::ArrayRef<int64_t> axes, llvm::StringRef base);

  onnx::GraphProto &graph;
  const CanonicalizationContext &ctx;
  const llvm::StringMap<ValueFacts> &facts;
  llvm::StringMap<llvm::SmallVector<int64_t>> &made;
  llvm::StringSet<> taken, graphOutputs;
  llvm::StringMap<const onnx::NodeProto *> producers;
  llvm::StringMap<int> readers;
  llvm::StringMap<const onnx::TensorProto *> initializers;
  std::map<const onnx::NodeProto *, std::vector<onnx::NodeProto>> replacements;
  llvm::StringSet<> orphans;
};

/// inferValueFacts with the constants in `made` known too.
llvm::StringMap<ValueFacts> inferValueFactsWith(const onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                                const llvm::StringMap<llvm::SmallVector<int64_t>> &made);

/// Runs one rewrite over `graph` from opset `minOpset` on: `Rewriter`
/// (a GraphEditor with run() returning its rewrite count) over the graph as
/// it stands; `facts` are inferred again when it rewrote something.
template <typename Rewriter>
int64_t runRewriter(onnx::GraphProto &graph, const CanonicalizationContext &ctx, llvm::StringMap<ValueFacts> &facts,
                    llvm::StringMap<llvm::SmallVector<int64_t>> &made, int64_t minOpset) {
  if (ctx.opset < minOpset)
    return 0;
  int64_t rewrites = Rewriter(graph, ctx, facts, made).run();
  if (rewrites)
    facts = inferValueFactsWith(graph, ctx, made);
  return rewrites;
}

/// Removes the nodes that produce only values in `candidates` that nothing
/// reads (and no graph output is), then those their inputs leave unread, and
/// so on: what a rewrite orphaned. Returns the number removed.
int64_t removeOrphans(onnx::GraphProto &graph, llvm::StringSet<> candidates);

} // namespace mlir::moe::onnx_import

#endif // MOE_FRONTEND_ONNX_GRAPHEDITOR_H
