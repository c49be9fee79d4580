//===- FlattenedRows.cpp - a router on [B, S, H] flattened after top-k ----===//
//
// Models often route tokens as [batch, seq, hidden] and flatten only the
// top-k weights and ids for the experts' loop:
//
//   w, idx = softmax(x3 @ Wr).topk(k)          # [B, S, k]
//   w, idx = w.reshape(-1, k), idx.reshape(-1, k)
//
// Every op on the way acts on each row (the last axis) alone, so the
// flattening commutes with all of them: Reshape(f(x3), [-1, n]) is
// f(Reshape(x3, [-1, H])), and the block matchers see the selection on
// [tokens, E] they read. A chain is rewritten when it holds a TopK and all
// of its values come from one [..., H] value x3 through ops of this list:
//
//   elementwise (broadcasting against values of rank <= 1 only), MatMul by
//   a 2-D matrix, Softmax / LogSoftmax / TopK / ArgMax / ArgMin over the
//   last axis, reductions over the last axis with keepdims.
//
// x3 flattened is the flattening of x3 the graph already has (the one the
// experts read), else x itself when x3 = Unsqueeze(x) or Reshape(x) of a
// 2-D x with the same rows, else a new Reshape.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"
#include "GraphCanonicalization.h"
#include "GraphEditor.h"

#include "llvm/ADT/DenseMap.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

bool isRowwiseUnary(llvm::StringRef op) {
  return isUnaryElementwiseOp(op) ||
         llvm::is_contained({"Identity", "Erf", "Gelu", "Softsign", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu",
                             "Selu", "Floor", "Ceil", "Round", "Sign", "IsNaN", "IsInf", "Mish", "Sin", "Cos"},
                            op);
}

bool isLastAxisOp(llvm::StringRef op) {
  return llvm::is_contained({"Softmax", "LogSoftmax", "TopK", "ArgMax", "ArgMin"}, op);
}

/// Ops that may act row by row (rowwise checks their operands and axes);
/// any other producer makes its value a leaf.
bool mayActByRow(llvm::StringRef op) {
  return isRowwiseUnary(op) || isBroadcastingOp(op) || op == "MatMul" || isLastAxisOp(op) || op.starts_with("Reduce");
}

class FlattenedRowsRewriter : public GraphEditor {
public:
  using GraphEditor::GraphEditor;

  int64_t run() {
    for (auto [i, node] : llvm::enumerate(graph.node()))
      position[&node] = static_cast<int64_t>(i);
    // The flattenings of each value, in graph order.
    llvm::SmallVector<const onnx::NodeProto *> flattenings;
    for (const onnx::NodeProto &node : graph.node())
      if (std::optional<std::string> v = flattened(node)) {
        flattenings.push_back(&node);
        flatteningsOf[*v].push_back(&node);
      }
    for (const onnx::NodeProto *reshape : flattenings) {
      if (replaced(*reshape))
        continue;
      std::string v = *flattened(*reshape);
      int64_t rank = factsOf(v)->rank;
      std::string leaf;
      bool selects = false;
      if (!rowwise(v, rank, 0, leaf, selects) || !selects)
        continue;
      at = reshape;
      pending.clear();
      std::string flat = twin(v, rank);
      pending.push_back(node("Identity", {flat}, reshape->output(0), reshape->name() + "/rows"));
      replace(*reshape, std::move(pending));
    }
    return commit();
  }

private:
  /// The value `node` flattens to [rows, n] when it is Reshape(v, [-1, n])
  /// or Flatten(v, rank - 1) of a v of rank >= 3 whose last size n is known.
  std::optional<std::string> flattened(const onnx::NodeProto &node) const {
    if (!isStandardNode(node) || node.input_size() < 1 || node.output_size() != 1)
      return std::nullopt;
    const ValueFacts *v = factsOf(node.input(0));
    if (!v || v->rank < 3 || static_cast<int64_t>(v->dims.size()) != v->rank || v->dims.back() < 1)
      return std::nullopt;
    if (node.op_type() == "Flatten" && blocks::intAttr(node, "axis", 1) == v->rank - 1)
      return node.input(0);
    if (node.op_type() != "Reshape" || node.input_size() != 2)
      return std::nullopt;
    // Any 2-D shape whose last size is v's: the first is then the product
    // of v's other sizes (a Reshape keeps the element count).
    std::optional<int64_t> last;
    if (std::optional<llvm::SmallVector<int64_t>> shape = ints(node.input(1)); shape && shape->size() == 2)
      last = (*shape)[1];
    else if (const ValueFacts *s = factsOf(node.input(1)); s && s->values.size() == 2)
      last = s->values[1];
    if (last != v->dims.back())
      return std::nullopt;
    return node.input(0);
  }

  /// The 2-D value whose rows `v` holds in order: x of Unsqueeze(x) (no
  /// new last axis) or of Reshape(x) keeping the last size; "" otherwise.
  std::string sourceOf(llvm::StringRef v) const {
    const ValueFacts *vf = factsOf(v);
    if (!vf || vf->rank < 2 || static_cast<int64_t>(vf->dims.size()) != vf->rank || vf->dims.back() < 1)
      return "";
    const onnx::NodeProto *p = producerOf(v, "Unsqueeze");
    if (!p)
      p = producerOf(v, "Reshape");
    const ValueFacts *x = p ? factsOf(p->input(0)) : nullptr;
    if (!x || x->rank != 2 || static_cast<int64_t>(x->dims.size()) != 2 || x->dims[1] != vf->dims.back())
      return "";
    if (p->op_type() == "Unsqueeze") {
      std::optional<llvm::SmallVector<int64_t>> axes = axesOf(*p);
      std::optional<llvm::SmallVector<int64_t>> normal = axes ? normalizedAxes(*axes, vf->rank) : std::nullopt;
      if (!normal || llvm::is_contained(*normal, vf->rank - 1))
        return "";
    }
    return p->input(0);
  }

  /// `axis` (maybe from the back) is the last of `rank`.
  static bool isLastAxis(int64_t axis, int64_t rank) { return axis == -1 || axis == rank - 1; }

  /// `v` (rank `rank`) is computed row by row from one value, `leaf`;
  /// `selects` is set when a TopK is on the way.
  bool rowwise(const std::string &v, int64_t rank, int depth, std::string &leaf, bool &selects) const {
    const ValueFacts *f = factsOf(v);
    if (!f || f->rank != rank || depth > 16)
      return false;
    auto isLeaf = [&] {
      if (!leaf.empty())
        return leaf == v;
      leaf = v;
      return true;
    };
    const onnx::NodeProto *p = producers.lookup(v);
    if (!p || !isStandardNode(*p) || !sourceOf(v).empty() || !mayActByRow(p->op_type()))
      return isLeaf();
    llvm::StringRef op = p->op_type();
    auto operand = [&](const std::string &in) {
      const ValueFacts *fi = factsOf(in);
      if (!fi || fi->rank < 0)
        return false;
      return fi->rank <= 1 || rowwise(in, rank, depth + 1, leaf, selects);
    };
    if (isRowwiseUnary(op) || isBroadcastingOp(op)) {
      if (p->output_size() != 1)
        return false;
      for (const std::string &in : p->input())
        if (in.empty() || !operand(in))
          return false;
      return true;
    }
    if (op == "MatMul") {
      const ValueFacts *w = factsOf(p->input(1));
      return w && w->rank == 2 && rowwise(p->input(0), rank, depth + 1, leaf, selects);
    }
    if (isLastAxisOp(op)) {
      // Default axes: TopK's last; Softmax's last from opset 13, 1 before.
      int64_t defaultAxis = op == "TopK" ? -1 : op.ends_with("Softmax") ? (ctx.opset >= 13 ? -1 : 1) : 0;
      int64_t axis = blocks::intAttr(*p, "axis", defaultAxis);
      if (!isLastAxis(axis, rank) || ((op == "ArgMax" || op == "ArgMin") && blocks::intAttr(*p, "keepdims", 1) != 1))
        return false;
      if (op == "TopK") {
        const ValueFacts *k = factsOf(p->input(1));
        if (!k || k->rank != 1)
          return false;
        selects = true;
      }
      return rowwise(p->input(0), rank, depth + 1, leaf, selects);
    }
    // A reduction.
    std::optional<llvm::SmallVector<int64_t>> axes = axesOf(*p);
    std::optional<llvm::SmallVector<int64_t>> normal = axes ? normalizedAxes(*axes, rank) : std::nullopt;
    return normal && *normal == llvm::SmallVector<int64_t>{rank - 1} && blocks::intAttr(*p, "keepdims", 1) == 1 &&
           rowwise(p->input(0), rank, depth + 1, leaf, selects);
  }

  /// `v` (checked by rowwise) flattened to [rows, n]; new nodes go to
  /// `pending`.
  std::string twin(const std::string &v, int64_t rank) {
    if (auto it = twins.find(v); it != twins.end())
      return it->second;
    const ValueFacts *f = factsOf(v);
    if (!f || f->rank != rank)
      return v; // rank <= 1: broadcast along the last axis as before
    const onnx::NodeProto *p = producers.lookup(v);
    std::string source = sourceOf(v);
    if (!source.empty() || !p || !isStandardNode(*p) || !mayActByRow(p->op_type()))
      return twins[v] = flattenedLeaf(v, source, f->dims.back());
    onnx::NodeProto copy = *p;
    copy.set_name(p->name().empty() ? p->output(0) + "/flat" : p->name() + "/flat");
    for (int i = 0; i < copy.input_size(); ++i) {
      if (copy.input(i).empty())
        continue;
      bool axesInput = i == 1 && llvm::StringRef(p->op_type()).starts_with("Reduce");
      bool matrixOrK = i == 1 && (p->op_type() == "MatMul" || p->op_type() == "TopK");
      if (!axesInput && !matrixOrK)
        copy.set_input(i, twin(p->input(i), rank));
    }
    if (llvm::StringRef(p->op_type()).starts_with("Reduce")) {
      bool inInput = copy.input_size() > 1 && !copy.input(1).empty();
      if (inInput)
        copy.set_input(1, constant({-1}, "moe_flat_axes"));
      else
        for (onnx::AttributeProto &a : *copy.mutable_attribute())
          if (a.name() == "axes") {
            a.clear_ints();
            a.add_ints(-1);
          }
    } else if (isLastAxisOp(p->op_type())) {
      setIntAttribute(copy, "axis", -1);
    }
    for (int i = 0; i < copy.output_size(); ++i)
      if (!p->output(i).empty()) {
        std::string out = fresh(p->output(i) + "_flat");
        copy.set_output(i, out);
        twins[p->output(i)] = out;
      }
    pending.push_back(std::move(copy));
    return twins[v];
  }

  /// The leaf `v` [..., n] flattened: an existing flattening that comes
  /// before the node being rewritten (the one the experts read), else its
  /// 2-D `source` or a new Reshape, which the later flattenings of `v` then
  /// read too.
  std::string flattenedLeaf(const std::string &v, const std::string &source, int64_t n) {
    for (const onnx::NodeProto *r : flatteningsOf.lookup(v))
      if (position.lookup(r) < position.lookup(at) && !replaced(*r))
        return r->output(0);
    std::string out = source;
    if (out.empty()) {
      out = fresh(v + "_rows");
      pending.push_back(node("Reshape", {v, constant({-1, n}, "moe_flat_rows")}, out, out));
    }
    for (const onnx::NodeProto *r : flatteningsOf.lookup(v))
      if (r != at && position.lookup(r) > position.lookup(at) && !replaced(*r))
        replace(*r, {node("Identity", {out}, r->output(0), r->name() + "/rows")});
    return out;
  }

  llvm::DenseMap<const onnx::NodeProto *, int64_t> position;
  llvm::StringMap<llvm::SmallVector<const onnx::NodeProto *>> flatteningsOf;
  llvm::StringMap<std::string> twins;
  const onnx::NodeProto *at = nullptr;
  std::vector<onnx::NodeProto> pending;
};

} // namespace

int64_t mlir::moe::onnx_import::canonicalizeFlattenedRows(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                                          llvm::StringMap<ValueFacts> &facts,
                                                          llvm::StringMap<llvm::SmallVector<int64_t>> &made) {
  return runRewriter<FlattenedRowsRewriter>(graph, ctx, facts, made, /*minOpset=*/1);
}
