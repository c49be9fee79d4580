//===- SlotSums.cpp - a sum over a top-k's slots written one term per slot -===//
//
// Hand-written routing often sums over a token's k picks one term per pick:
//
//   gate = w1[:, None] * one_hot(i1) + w2[:, None] * one_hot(i2)
//   d    = g1 + g2
//
// with i_j, w_j, g_j column j of a TopK's indices or values (Slice, Gather
// of a constant index, Squeeze/Unsqueeze of one). When the K terms are one
// expression with column j in term j, the sum is one ReduceSum over a slot
// axis of that expression computed on columns 0..K-1 together: the forms
// the gate matchers read (SelectionCanonicalization.cpp reads the first as
// a scattered gate, RoutingBlocks.cpp the second as a renormalisation).
//
// The lifted expression carries the slot axis at a fixed distance from the
// last axis; an operand shared by every term that reaches over that axis
// is unsqueezed there, so ONNX broadcasting lines it up as before. The
// additions are the same ones, in the same order for two terms; three or
// more are taken only as ((t0 + t1) + t2) + ... in column order.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"
#include "GraphCanonicalization.h"
#include "GraphEditor.h"

#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/StringExtras.h"

#include <map>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

/// How one value of the terms is computed with the slot axis: the same
/// value in every term (shared), column j of one TopK output in term j
/// (leaf), or one op over such values (node); `slot` counts the slot axis
/// from the end (-1: last) in the lifted value.
struct Plan {
  enum Kind { Shared, Leaf, Node } kind = Shared;
  int64_t slot = 0;
  /// A leaf's columns (a TopK output or a value computed from one) and
  /// form.
  std::string source;
  bool squeezedLeaf = false;
};

class SlotSumRewriter : public GraphEditor {
public:
  using GraphEditor::GraphEditor;

  int64_t run();

private:
  /// The terms of an Add chain ending at `add`, left-deep, inner Adds read
  /// only by the chain.
  llvm::SmallVector<std::string> termsOf(const onnx::NodeProto &add,
                                         llvm::SmallVectorImpl<const onnx::NodeProto *> &chain) const;
  std::optional<Plan> plan(llvm::ArrayRef<std::string> values);
  std::string emit(llvm::ArrayRef<std::string> values, std::vector<onnx::NodeProto> &out, llvm::StringRef name);
  static std::string key(llvm::ArrayRef<std::string> values) { return llvm::join(values, "\x1f"); }

  /// The candidate's term count.
  int64_t terms = 0;
  std::map<std::string, Plan> plans;
  std::map<std::string, std::string> emitted;
};

llvm::SmallVector<std::string> SlotSumRewriter::termsOf(const onnx::NodeProto &add,
                                                       llvm::SmallVectorImpl<const onnx::NodeProto *> &chain) const {
  chain.push_back(&add);
  llvm::SmallVector<std::string> terms;
  if (const onnx::NodeProto *inner = producerOf(add.input(0), "Add");
      inner && inner->input_size() == 2 && onlyRead(add.input(0)))
    terms = termsOf(*inner, chain);
  else
    terms.push_back(add.input(0));
  terms.push_back(add.input(1));
  return terms;
}

std::optional<Plan> SlotSumRewriter::plan(llvm::ArrayRef<std::string> values) {
  std::string k = key(values);
  if (auto it = plans.find(k); it != plans.end())
    return it->second;
  std::optional<Plan> result;
  auto done = [&](std::optional<Plan> p) {
    if (p)
      plans[k] = *p;
    return p;
  };
  if (llvm::all_equal(values) ||
      llvm::all_of(llvm::drop_begin(values), [&](const std::string &v) { return sameConstant(values[0], v); }))
    return done(Plan{Plan::Shared, 0});
  // Column j of one TopK output in term j.
  if (std::optional<TopKColumn> first = columnOf(values[0]); first && first->column() == 0) {
    bool leaf = true;
    for (int64_t t = 1; leaf && t < terms; ++t) {
      std::optional<TopKColumn> c = columnOf(values[t]);
      leaf = c && c->of.source == first->of.source && c->column() == t && c->squeezed == first->squeezed;
    }
    std::optional<TopKColumns> all = columnsOf(first->of.source);
    if (leaf && all && all->width >= terms) {
      return done(Plan{Plan::Leaf, first->squeezed ? -1 : -2, first->of.source, first->squeezed});
    }
  }
  // One op over such values.
  llvm::SmallVector<const onnx::NodeProto *> nodes;
  for (const std::string &v : values) {
    const onnx::NodeProto *p = producers.lookup(v);
    if (!p || !isStandardNode(*p) || p->output_size() != 1)
      return std::nullopt;
    nodes.push_back(p);
  }
  const onnx::NodeProto &n0 = *nodes[0];
  std::string attrs0;
  for (const onnx::AttributeProto &a : n0.attribute())
    attrs0 += a.SerializeAsString();
  for (const onnx::NodeProto *n : nodes) {
    std::string attrs;
    for (const onnx::AttributeProto &a : n->attribute())
      attrs += a.SerializeAsString();
    if (n->op_type() != n0.op_type() || n->input_size() != n0.input_size() || attrs != attrs0)
      return std::nullopt;
  }
  llvm::StringRef op = n0.op_type();
  llvm::SmallVector<Plan> inputs;
  for (int i = 0; i < n0.input_size(); ++i) {
    llvm::SmallVector<std::string> column;
    for (const onnx::NodeProto *n : nodes)
      column.push_back(n->input(i));
    std::optional<Plan> p = plan(column);
    if (!p)
      return std::nullopt;
    inputs.push_back(*p);
  }
  if (llvm::all_of(inputs, [](const Plan &p) { return p.kind == Plan::Shared; }))
    return done(Plan{Plan::Shared, 0});
  const ValueFacts *out = factsOf(values[0]);
  if (!out || out->rank < 0)
    return std::nullopt;
  // Only input 0 may carry the slot for the ops that are not broadcasting
  // elementwise ones.
  bool onlyFirst = llvm::all_of(llvm::drop_begin(inputs), [](const Plan &p) { return p.kind == Plan::Shared; });
  if (isBroadcastingOp(op)) {
    std::optional<int64_t> slot;
    for (auto [i, p] : llvm::enumerate(inputs)) {
      if (p.kind != Plan::Shared) {
        if (slot && *slot != p.slot)
          return std::nullopt;
        slot = p.slot;
        continue;
      }
      const ValueFacts *f = factsOf(n0.input(i));
      if (!f || f->rank < 0)
        return std::nullopt;
    }
    return done(Plan{Plan::Node, *slot});
  }
  if (isUnaryElementwiseOp(op) && onlyFirst)
    return done(Plan{Plan::Node, inputs[0].slot});
  if (op == "Unsqueeze" && onlyFirst) {
    std::optional<llvm::SmallVector<int64_t>> axes = axesOf(n0);
    std::optional<llvm::SmallVector<int64_t>> p = axes ? normalizedAxes(*axes, out->rank) : std::nullopt;
    if (!p || p->size() != 1)
      return std::nullopt;
    // The slot sits after `before` of the input's own axes; an axis
    // inserted at or after it goes after the slot.
    int64_t inRank = out->rank - 1, before = inRank + 1 + inputs[0].slot;
    return done(Plan{Plan::Node, (*p)[0] >= before ? inputs[0].slot - 1 : inputs[0].slot});
  }
  if (op == "OneHot" && onlyFirst && blocks::intAttr(n0, "axis", -1) == -1)
    return done(Plan{Plan::Node, inputs[0].slot - 1});
  return std::nullopt;
}

std::string SlotSumRewriter::emit(llvm::ArrayRef<std::string> values, std::vector<onnx::NodeProto> &out,
                                  llvm::StringRef name) {
  std::string k = key(values);
  if (auto it = emitted.find(k); it != emitted.end())
    return it->second;
  const Plan &p = plans.at(k);
  std::string result;
  if (p.kind == Plan::Shared) {
    result = values[0];
  } else if (p.kind == Plan::Leaf) {
    // Columns 0..K-1 together, with the axis a kept column has.
    std::string all = p.source;
    std::optional<TopKColumns> whole = columnsOf(all);
    if (whole->width != terms) {
      std::string cut = fresh(all + "/slots");
      out.push_back(lastAxisSlice(all, 0, terms, cut, name.str() + "/slots"));
      all = cut;
    }
    if (!p.squeezedLeaf) {
      std::string kept = fresh(all + "/slots_kept");
      out.push_back(squeeze(all, {-1}, kept, name.str() + "/slots_kept", /*unsqueeze=*/true));
      all = kept;
    }
    result = all;
  } else {
    const onnx::NodeProto &n0 = *producers.lookup(values[0]);
    llvm::SmallVector<const onnx::NodeProto *> nodes;
    for (const std::string &v : values)
      nodes.push_back(producers.lookup(v));
    llvm::SmallVector<std::string> data;
    for (const onnx::NodeProto *n : nodes)
      data.push_back(n->input(0));
    onnx::NodeProto lifted = n0;
    lifted.set_name(n0.name() + "/over_slots");
    lifted.clear_input();
    for (int i = 0; i < n0.input_size(); ++i) {
      llvm::SmallVector<std::string> column;
      for (const onnx::NodeProto *n : nodes)
        column.push_back(n->input(i));
      const Plan &in = plans.at(key(column));
      std::string v = emit(column, out, name);
      if (in.kind == Plan::Shared && isBroadcastingOp(n0.op_type()) && !v.empty()) {
        // A shared operand reaching over the slot's position gets its axis.
        int64_t rank = factsOf(v)->rank;
        if (rank > -p.slot - 1) {
          std::string widened = fresh(v + "/slot_axis");
          out.push_back(squeeze(v, {p.slot}, widened, lifted.name() + "/slot_axis", /*unsqueeze=*/true));
          v = widened;
        }
      }
      if (n0.op_type() == "Unsqueeze" && i == 1) {
        // The axis in the lifted value: past the slot when it comes at or
        // after the input axes before the slot.
        int64_t outRank = factsOf(values[0])->rank;
        int64_t axis = normalizedAxes(*axesOf(n0), outRank)->front();
        int64_t before = outRank + plans.at(key(data)).slot;
        v = constant({axis >= before ? axis + 1 : axis}, "moe_unsqueeze_axes");
      }
      lifted.add_input(v);
    }
    result = fresh(values[0] + "/over_slots");
    lifted.set_output(0, result);
    out.push_back(std::move(lifted));
  }
  emitted[k] = result;
  return result;
}

int64_t SlotSumRewriter::run() {
  llvm::DenseSet<const onnx::NodeProto *> inChains;
  // Outermost first: a chain's inner Adds are part of it.
  for (const onnx::NodeProto &add : llvm::reverse(graph.node())) {
    if (!isStandardNode(add) || add.op_type() != "Add" || add.input_size() != 2 || add.output_size() != 1 ||
        inChains.contains(&add))
      continue;
    llvm::SmallVector<const onnx::NodeProto *> chain;
    llvm::SmallVector<std::string> values = termsOf(add, chain);
    llvm::SmallVector<llvm::SmallVector<std::string>> orders = {values};
    if (values.size() == 2)
      orders.push_back({values[1], values[0]});
    for (llvm::ArrayRef<std::string> order : orders) {
      terms = static_cast<int64_t>(order.size());
      plans.clear();
      emitted.clear();
      std::optional<Plan> p = plan(order);
      const ValueFacts *sum = factsOf(add.output(0));
      if (!p || p->kind == Plan::Shared || !sum || sum->rank < 0)
        continue;
      std::vector<onnx::NodeProto> nodes;
      std::string name = add.name().empty() ? add.output(0) : add.name();
      std::string lifted = emit(order, nodes, name);
      nodes.push_back(reduceSum(lifted, {p->slot}, /*keepdims=*/false, add.output(0), name + "/over_slots"));
      replace(add, std::move(nodes));
      // The chain's inner Adds go with it.
      for (const onnx::NodeProto *n : llvm::drop_begin(chain)) {
        inChains.insert(n);
        replace(*n, {});
      }
      break;
    }
  }
  return commit();
}

} // namespace

int64_t mlir::moe::onnx_import::canonicalizeSlotSums(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                                     llvm::StringMap<ValueFacts> &facts,
                                                     llvm::StringMap<llvm::SmallVector<int64_t>> &made) {
  return runRewriter<SlotSumRewriter>(graph, ctx, facts, made, /*minOpset=*/13);
}
