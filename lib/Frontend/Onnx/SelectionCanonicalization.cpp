//===- SelectionCanonicalization.cpp - top-1 selections as TopK(1) --------===//
//
// Switch-style routing picks each token's expert with ArgMax and reads its
// weight with ReduceMax (PyTorch's `probs.max(-1)`, `torch.argmax`). The MoE
// block matchers read one selection, TopK; so ArgMax of router scores
// becomes TopK(scores, 1) and a ReduceMax of the same scores its values,
// each squeezed back to the rank the readers expect. ArgMax's first-maximum
// rule and TopK's lower-index-first ties pick the same expert.
//
// The squeeze of a top-1 selection then sits between the selection and the
// per-expert masks (`(idx == e)[:, None]`): it is moved below elementwise
// ops with scalar operands (Equal with the expert id, Cast) and cancelled by
// an Unsqueeze of the same axis, so the masks read the [T, 1] selection as
// they read a TopK's [T, k].
//
// The top-k scores read back by GatherElements at the TopK's own indices
// (`logits.gather(-1, idx)`) are the TopK's values. A TopK of the logits
// whose values nothing reads, with its indices gathering from the logits'
// softmax (along the same last axis) or sigmoid
// (`softmax(logits).gather(1, logits.topk(k).indices)`), selects from those
// scores instead: both keep the order of the logits (two logits that round
// to one probability become a tie, broken towards the lower index, a near
// tie the raising check treats as such), and the gather is then the TopK's
// values, softmax or sigmoid top-k.
//
// A softmax over the logits with every expert but a top-k's masked to -inf
// (`softmax(logits + full(-inf).scatter(1, idx, 0))`, or
// `logits.masked_fill(~keep, -inf)` with `keep` scattered from the ids) is
// the softmax over the picks scattered into a dense gate (exp(-inf) = 0);
// a column `gate[:, e:e+1]` of such a scattered gate is the sum of the
// row's weights at slots holding e (a top-k's ids are distinct): the forms
// the dense-mixture matcher reads.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"
#include "GraphCanonicalization.h"
#include "GraphEditor.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

/// What a squeeze of a top-1 selection removed: `source` with rank `rank`
/// lost the (non-negative) `axes`.
struct Squeezed {
  std::string source;
  llvm::SmallVector<int64_t> axes;
  int64_t rank;
};

class SelectionRewriter : public GraphEditor {
public:
  SelectionRewriter(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                    const llvm::StringMap<ValueFacts> &facts, llvm::StringMap<llvm::SmallVector<int64_t>> &made)
      : GraphEditor(graph, ctx, facts, made) {}

  int64_t run();

private:
  /// Router scores: a linear map of x (MatMul, Gemm, maybe plus a bias), or
  /// its softmax or sigmoid, through Casts. ArgMax is rewritten only there:
  /// its NaN rule is TopK's only where no NaN reaches it.
  bool isRouterScore(llvm::StringRef value) const {
    auto through = [&](llvm::StringRef v) {
      const onnx::NodeProto *p = producers.lookup(v);
      while (p && isStandardNode(*p) && (p->op_type() == "Cast" || p->op_type() == "Identity") && p->input_size())
        p = producers.lookup(p->input(0));
      return p;
    };
    const onnx::NodeProto *p = through(value);
    if (p && isStandardNode(*p) && (p->op_type() == "Softmax" || p->op_type() == "Sigmoid") && p->input_size())
      p = through(p->input(0));
    // A bias is an initializer or a Constant node.
    auto isConstant = [&](llvm::StringRef v) {
      const onnx::NodeProto *c = producers.lookup(v);
      return !c || c->op_type() == "Constant";
    };
    if (p && isStandardNode(*p) && p->op_type() == "Add" && p->input_size() == 2)
      for (int i = 0; i < 2; ++i)
        if (isConstant(p->input(1 - i))) {
          p = through(p->input(i));
          break;
        }
    return p && isStandardNode(*p) && (p->op_type() == "MatMul" || p->op_type() == "Gemm");
  }
  /// The last axis of ArgMax/ReduceMax `node` over `rank` dims, its only one.
  bool overLastAxis(const onnx::NodeProto &node, int64_t rank) const {
    if (node.op_type() == "ArgMax")
      return normalizedAxes({blocks::intAttr(node, "axis", 0)}, rank) == llvm::SmallVector<int64_t>{rank - 1};
    std::optional<llvm::SmallVector<int64_t>> a = axesOf(node);
    return a && normalizedAxes(*a, rank) == llvm::SmallVector<int64_t>{rank - 1};
  }
  void pairSelections();
  int64_t selectFromGatheredScores();
  std::string pickedValues(const onnx::NodeProto &gather) const;
  /// The TopK whose indices are `ids`, over `scores` along their last axis,
  /// largest first; null otherwise.
  const onnx::NodeProto *topKOf(llvm::StringRef ids, llvm::StringRef scores) const {
    const onnx::NodeProto *topk = producers.lookup(ids);
    const ValueFacts *in = topk ? factsOf(topk->input(0)) : nullptr;
    if (!topk || !isStandardNode(*topk) || topk->op_type() != "TopK" || topk->output_size() != 2 ||
        topk->output(1) != ids || (!scores.empty() && topk->input(0) != scores) || !in || in->rank != 2 ||
        blocks::intAttr(*topk, "largest", 1) != 1 ||
        normalizedAxes({blocks::intAttr(*topk, "axis", -1)}, 2) != llvm::SmallVector<int64_t>{1})
      return nullptr;
    return topk;
  }
  /// ScatterElements(data, ids, updates) along axis 1 with no reduction,
  /// `ids` the indices of a TopK over [T, E] (so the data is 2-D too); null
  /// otherwise.
  const onnx::NodeProto *scatterAtTopK(llvm::StringRef v, llvm::StringRef scores) const {
    const onnx::NodeProto *p = producers.lookup(v);
    if (!p || !isStandardNode(*p) || p->op_type() != "ScatterElements" || p->input_size() != 3 ||
        normalizedAxes({blocks::intAttr(*p, "axis", 0)}, 2) != llvm::SmallVector<int64_t>{1} ||
        blocks::stringAttr(*p, "reduction", "none") != "none" || !topKOf(p->input(1), scores))
      return nullptr;
    return p;
  }
  struct MaskedSoftmax {
    const onnx::NodeProto *topk = nullptr;
    std::string logits;
    int32_t dataType = 0;
    llvm::SmallVector<std::string> orphaned;
    /// The softmax over the picks it becomes, and the TopK's values and
    /// ids (named when found: the nodes move before it is emitted).
    std::string picks, values, ids;
  };
  bool maskedSoftmax(const onnx::NodeProto &softmax, MaskedSoftmax &m) const;
  void emitScatteredPicks(const onnx::NodeProto &softmax, const MaskedSoftmax &m);
  struct GateColumn {
    std::string ids, weights, gate;
    int64_t expert = 0;
    int32_t dataType = 0;
    /// Read by Gather of a scalar index: the column's axis is gone.
    bool squeezed = false;
  };
  bool scatteredGateColumn(const onnx::NodeProto &slice, GateColumn &c) const;
  void emitGateColumn(const onnx::NodeProto &slice, const GateColumn &c);
  struct OneHotGate {
    std::string ids, weights, scores;
    int32_t dataType = 0;
    /// Values only the one-hot gate read: dead once it is scattered.
    llvm::SmallVector<std::string> orphaned;
  };
  bool oneHotGate(const onnx::NodeProto &sum, OneHotGate &gate) const;
  void emitScatteredGate(const onnx::NodeProto &sum, const OneHotGate &gate);
  bool maskedProbs(const onnx::NodeProto &mul, OneHotGate &gate);
  const onnx::NodeProto *kthLargestOf(llvm::StringRef kth, llvm::StringRef scores) const;
  const onnx::NodeProto *thresholdTopK(llvm::StringRef cmp, llvm::StringRef scores, bool keepIfTrue,
                                       llvm::SmallVectorImpl<std::string> &orphaned) const;
  bool thresholdProbs(const onnx::NodeProto &node, OneHotGate &gate);
  bool renormalizedGate(const onnx::NodeProto &div, const llvm::DenseMap<const onnx::NodeProto *, OneHotGate> &masked,
                        OneHotGate &gate) const;
  void emitRenormalizedGate(const onnx::NodeProto &div, const OneHotGate &gate);
  void emitTopK(const onnx::NodeProto &argmax, const onnx::NodeProto *reduceMax);
  bool sink(onnx::NodeProto &node);

  /// ArgMax nodes to rewrite, with the ReduceMax of the same scores (or
  /// null); each pair's second node is dropped when the first is reached.
  llvm::DenseMap<const onnx::NodeProto *, const onnx::NodeProto *> argmaxOf, reduceMaxOf;
  /// Masked softmaxes found, by node: columns of their gates read as the
  /// scattered gate's.
  llvm::DenseMap<const onnx::NodeProto *, MaskedSoftmax> maskedSoftmaxes;
  llvm::DenseSet<const onnx::NodeProto *> emitted;
  llvm::StringMap<Squeezed> squeezed;
  llvm::StringMap<std::string> renamed;
  google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
  /// Values made or orphaned here (squeezes, one-hot gates): their nodes
  /// go when nothing reads them.
  llvm::StringSet<> removable;
};

void SelectionRewriter::pairSelections() {
  if (ctx.opset < 10) // TopK's K is an attribute before opset 10
    return;
  llvm::StringMap<llvm::SmallVector<const onnx::NodeProto *, 1>> reduceMaxes;
  for (const onnx::NodeProto &node : graph.node())
    if (isStandardNode(node) && node.op_type() == "ReduceMax" && node.input_size() >= 1)
      reduceMaxes[node.input(0)].push_back(&node);
  for (const onnx::NodeProto &node : graph.node()) {
    if (!isStandardNode(node) || node.op_type() != "ArgMax" || node.input_size() != 1 || node.output_size() != 1 ||
        blocks::intAttr(node, "select_last_index", 0) != 0)
      continue;
    const ValueFacts *in = factsOf(node.input(0));
    if (!in || !isFloatType(in->dataType) || in->rank < 1 || static_cast<int64_t>(in->dims.size()) != in->rank ||
        in->dims.back() < 1 || !overLastAxis(node, in->rank) || !isRouterScore(node.input(0)))
      continue;
    argmaxOf[&node] = &node;
    for (const onnx::NodeProto *other : reduceMaxes.lookup(node.input(0)))
      if (other->output_size() == 1 &&
          blocks::intAttr(*other, "keepdims", 1) == blocks::intAttr(node, "keepdims", 1) &&
          overLastAxis(*other, in->rank) && !reduceMaxOf.count(other)) {
        reduceMaxOf[other] = &node;
        argmaxOf[&node] = other;
        break;
      }
  }
}

void SelectionRewriter::emitTopK(const onnx::NodeProto &argmax, const onnx::NodeProto *reduceMax) {
  const ValueFacts &in = *factsOf(argmax.input(0));
  bool keep = blocks::intAttr(argmax, "keepdims", 1) != 0;
  onnx::NodeProto topk;
  topk.set_op_type("TopK");
  topk.set_name(argmax.name() + "/as_topk");
  topk.add_input(argmax.input(0));
  topk.add_input(constant({1}, "moe_topk_one"));
  setIntAttribute(topk, "axis", -1);
  std::string values = reduceMax && keep ? reduceMax->output(0) : fresh(argmax.output(0) + "/top1_values");
  std::string indices = keep ? argmax.output(0) : fresh(argmax.output(0) + "/top1_indices");
  topk.add_output(values);
  topk.add_output(indices);
  *kept.Add() = std::move(topk);
  if (keep)
    return;
  llvm::SmallVector<int64_t> last = {in.rank - 1};
  squeezed[argmax.output(0)] = {indices, last, in.rank};
  removable.insert(argmax.output(0));
  *kept.Add() = squeeze(indices, {-1}, argmax.output(0), argmax.name() + "/squeeze");
  if (reduceMax) {
    squeezed[reduceMax->output(0)] = {values, last, in.rank};
    removable.insert(reduceMax->output(0));
    *kept.Add() = squeeze(values, {-1}, reduceMax->output(0), reduceMax->name() + "/squeeze");
  }
}

/// Unsqueeze(Squeeze(a, axes), axes) is a (so is Reshape(Squeeze(a, 1),
/// [-1, 1]) of a [T, 1] a); an elementwise op with one
/// squeezed operand and scalar others runs on the unsqueezed operand and is
/// squeezed after. Returns true when `node` was consumed.
bool SelectionRewriter::sink(onnx::NodeProto &node) {
  llvm::StringRef op = node.op_type();
  if (!isStandardNode(node) || node.output_size() != 1 || node.output(0).empty())
    return false;
  if (op == "Unsqueeze" && node.input_size() >= 1) {
    auto it = squeezed.find(node.input(0));
    std::optional<llvm::SmallVector<int64_t>> a = axesOf(node);
    if (it == squeezed.end() || !a || normalizedAxes(*a, it->second.rank) != it->second.axes ||
        graphOutputs.contains(node.output(0)))
      return false;
    renamed[node.output(0)] = it->second.source;
    return true;
  }
  // v.view(-1, 1) of a [T] column squeezed from [T, 1]: that column.
  if (op == "Reshape" && node.input_size() == 2) {
    auto it = squeezed.find(node.input(0));
    std::optional<llvm::SmallVector<int64_t>> target = ints(node.input(1));
    if (it == squeezed.end() || it->second.rank != 2 || it->second.axes != llvm::SmallVector<int64_t>{1} ||
        target != llvm::SmallVector<int64_t>{-1, 1} || graphOutputs.contains(node.output(0)))
      return false;
    renamed[node.output(0)] = it->second.source;
    return true;
  }
  bool unary = op == "Cast" || op == "Not" || op == "Neg";
  bool binary = llvm::is_contained({"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Mul", "Add", "Sub",
                                    "Div"},
                                   op);
  if ((unary && node.input_size() != 1) || (binary && node.input_size() != 2) || (!unary && !binary))
    return false;
  int at = -1;
  for (int i = 0; i < node.input_size(); ++i) {
    if (squeezed.count(node.input(i))) {
      if (at >= 0)
        return false;
      at = i;
      continue;
    }
    // A scalar broadcasts the same way against either shape.
    const ValueFacts *f = factsOf(node.input(i));
    if (!f || !(f->rank == 0 || (f->rank == 1 && f->dims.size() == 1 && f->dims[0] == 1)))
      return false;
  }
  if (at < 0)
    return false;
  Squeezed from = squeezed.lookup(node.input(at));
  std::string out = node.output(0), wide = fresh(out + "/unsqueezed");
  node.set_input(at, from.source);
  node.set_output(0, wide);
  llvm::SmallVector<int64_t> axes(from.axes);
  *kept.Add() = std::move(node);
  *kept.Add() = squeeze(wide, axes, out, out + "/squeeze");
  squeezed[out] = {wide, axes, from.rank};
  removable.insert(out);
  return true;
}

/// TopK(logits) whose values nothing reads and whose indices a
/// GatherElements reads Softmax(logits) (last axis) or Sigmoid(logits) at,
/// along the TopK's last axis: the TopK reads those scores. The number of
/// TopKs changed.
int64_t SelectionRewriter::selectFromGatheredScores() {
  // (TopK, the scores' node) pairs; each score node then moves in front of
  // its TopK (it reads only the TopK's old input, defined earlier).
  llvm::SmallVector<std::pair<const onnx::NodeProto *, const onnx::NodeProto *>> moved;
  for (onnx::NodeProto &topk : *graph.mutable_node()) {
    if (!isStandardNode(topk) || topk.op_type() != "TopK" || topk.output_size() != 2 || topk.input_size() < 1 ||
        (!topk.output(0).empty() && (readers.lookup(topk.output(0)) || graphOutputs.contains(topk.output(0)))))
      continue;
    const ValueFacts *in = factsOf(topk.input(0));
    auto alongLast = [&](const onnx::NodeProto &n, int64_t axisByDefault) {
      return normalizedAxes({blocks::intAttr(n, "axis", axisByDefault)}, in->rank) ==
             llvm::SmallVector<int64_t>{in->rank - 1};
    };
    if (!in || in->rank < 1 || !isFloatType(in->dataType) || !alongLast(topk, -1) ||
        blocks::intAttr(topk, "largest", 1) != 1)
      continue;
    const onnx::NodeProto *scores = nullptr;
    for (const onnx::NodeProto &gather : graph.node()) {
      if (!isStandardNode(gather) || gather.op_type() != "GatherElements" || gather.input_size() != 2 ||
          gather.input(1) != topk.output(1) || !alongLast(gather, 0))
        continue;
      const onnx::NodeProto *f = producers.lookup(gather.input(0));
      bool monotone = f && isStandardNode(*f) && f->input_size() == 1 && f->input(0) == topk.input(0) &&
                      (f->op_type() == "Sigmoid" || (f->op_type() == "Softmax" && alongLast(*f, -1)));
      if (monotone) {
        scores = f;
        break;
      }
    }
    if (!scores)
      continue;
    readers[topk.input(0)]--;
    readers[scores->output(0)]++;
    topk.set_input(0, scores->output(0));
    moved.push_back({&topk, scores});
  }
  auto &nodes = *graph.mutable_node();
  auto indexOf = [&](const onnx::NodeProto *n) {
    for (int i = 0; i < nodes.size(); ++i)
      if (&nodes.Get(i) == n)
        return i;
    return -1;
  };
  // Swapping elements swaps pointers: every node keeps its address.
  for (auto [topk, scores] : moved)
    for (int at = indexOf(scores), to = indexOf(topk); at > to; --at)
      nodes.SwapElements(at, at - 1);
  return static_cast<int64_t>(moved.size());
}

/// GatherElements(s, TopK(s).indices) along the TopK's axis is its values
/// (`logits.gather(-1, logits.topk(k).indices)`): the TopK's values output,
/// or "".
std::string SelectionRewriter::pickedValues(const onnx::NodeProto &gather) const {
  if (!isStandardNode(gather) || gather.op_type() != "GatherElements" || gather.input_size() != 2 ||
      gather.output_size() != 1 || graphOutputs.contains(gather.output(0)))
    return "";
  const onnx::NodeProto *topk = producers.lookup(gather.input(1));
  const ValueFacts *in = topk ? factsOf(gather.input(0)) : nullptr;
  if (!topk || !isStandardNode(*topk) || topk->op_type() != "TopK" || topk->output_size() != 2 ||
      topk->output(1) != gather.input(1) || topk->input(0) != gather.input(0) || topk->output(0).empty() || !in ||
      in->rank < 1)
    return "";
  std::optional<llvm::SmallVector<int64_t>> along = normalizedAxes({blocks::intAttr(gather, "axis", 0)}, in->rank),
                                            topkAxis = normalizedAxes({blocks::intAttr(*topk, "axis", -1)}, in->rank);
  return along && along == topkAxis ? topk->output(0) : "";
}

/// The dense gate of a top-k written with one-hot rows,
/// ReduceSum(Cast(OneHot(ids, E)) * Unsqueeze(w, -1), axis 1) (TorchScript)
/// or with Equal(Unsqueeze(ids, -1), arange(E)) (dynamo): the scattered gate
/// ScatterElements(zeros [T, E], ids, w, axis 1), exact because a TopK's ids
/// are distinct in each row. Fills the gate's parts; false when not one.
bool SelectionRewriter::oneHotGate(const onnx::NodeProto &sum, OneHotGate &gate) const {
  auto producer = [&](llvm::StringRef v, llvm::StringRef op) -> const onnx::NodeProto * {
    const onnx::NodeProto *p = producers.lookup(v);
    return p && isStandardNode(*p) && p->op_type() == op ? p : nullptr;
  };
  auto onlyRead = [&](llvm::StringRef v) { return readers.lookup(v) == 1 && !graphOutputs.contains(v); };
  std::optional<llvm::SmallVector<int64_t>> axes = axesOf(sum);
  if (!isStandardNode(sum) || sum.op_type() != "ReduceSum" || sum.output_size() != 1 || !axes ||
      normalizedAxes(*axes, 3) != llvm::SmallVector<int64_t>{1} || blocks::intAttr(sum, "keepdims", 1) != 0)
    return false;
  const onnx::NodeProto *mul = producer(sum.input(0), "Mul");
  if (!mul || mul->input_size() != 2 || !onlyRead(mul->output(0)))
    return false;
  for (int side = 0; side < 2; ++side) {
    const onnx::NodeProto *unsq = producer(mul->input(1 - side), "Unsqueeze");
    std::optional<llvm::SmallVector<int64_t>> unsqAxes = unsq ? axesOf(*unsq) : std::nullopt;
    if (!unsq || !unsqAxes || normalizedAxes(*unsqAxes, 3) != llvm::SmallVector<int64_t>{2} ||
        !onlyRead(unsq->output(0)))
      continue;
    // The mask through its Casts to the weights' float type.
    llvm::SmallVector<std::string> chain = {mul->output(0), unsq->output(0)};
    std::string mask = mul->input(side);
    const onnx::NodeProto *p = producers.lookup(mask);
    while (p && isStandardNode(*p) && p->op_type() == "Cast" && onlyRead(p->output(0))) {
      chain.push_back(p->output(0));
      mask = p->input(0);
      p = producers.lookup(mask);
    }
    if (!p || !isStandardNode(*p) || !onlyRead(mask))
      continue;
    std::string ids;
    int64_t experts = -1;
    if (p->op_type() == "OneHot" && p->input_size() == 3 && blocks::intAttr(*p, "axis", -1) == -1) {
      std::optional<llvm::SmallVector<int64_t>> depth = ints(p->input(1)), values = ints(p->input(2));
      if (depth && depth->size() == 1 && values && *values == llvm::SmallVector<int64_t>{0, 1}) {
        ids = p->input(0);
        experts = (*depth)[0];
      }
    } else if (p->op_type() == "Equal" && p->input_size() == 2) {
      for (int at = 0; at < 2 && ids.empty(); ++at) {
        const onnx::NodeProto *col = producer(p->input(at), "Unsqueeze");
        std::optional<llvm::SmallVector<int64_t>> colAxes = col ? axesOf(*col) : std::nullopt;
        std::optional<llvm::SmallVector<int64_t>> range = ints(p->input(1 - at));
        bool arange = range && !range->empty();
        for (int64_t i = 0; arange && i < static_cast<int64_t>(range->size()); ++i)
          arange = (*range)[i] == i;
        if (col && colAxes && normalizedAxes(*colAxes, 3) == llvm::SmallVector<int64_t>{2} && arange &&
            onlyRead(col->output(0))) {
          chain.push_back(col->output(0));
          ids = col->input(0);
          experts = static_cast<int64_t>(range->size());
        }
      }
    }
    const onnx::NodeProto *topk = ids.empty() ? nullptr : producer(ids, "TopK");
    const ValueFacts *scores = topk ? factsOf(topk->input(0)) : nullptr;
    const ValueFacts *weights = factsOf(unsq->input(0));
    if (!topk || topk->output(1) != ids || !scores || scores->rank != 2 || scores->dims.size() != 2 ||
        scores->dims[1] != experts || !weights || !isFloatType(weights->dataType) || weights->rank != 2 ||
        !llvm::is_contained({-1, 1}, blocks::intAttr(*topk, "axis", -1)))
      continue;
    chain.push_back(mask);
    gate = {ids, unsq->input(0), topk->input(0), weights->dataType, chain};
    return true;
  }
  return false;
}

void SelectionRewriter::emitScatteredGate(const onnx::NodeProto &sum, const OneHotGate &gate) {
  std::string shape = fresh(sum.output(0) + "/scores_shape"), zeros = fresh(sum.output(0) + "/zeros");
  onnx::NodeProto shapeOf;
  shapeOf.set_op_type("Shape");
  shapeOf.set_name(sum.name() + "/scores_shape");
  shapeOf.add_input(gate.scores);
  shapeOf.add_output(shape);
  onnx::NodeProto fill;
  fill.set_op_type("ConstantOfShape");
  fill.set_name(sum.name() + "/zeros");
  fill.add_input(shape);
  fill.add_output(zeros);
  onnx::AttributeProto *value = fill.add_attribute();
  value->set_name("value");
  value->set_type(onnx::AttributeProto::TENSOR);
  value->mutable_t()->set_data_type(gate.dataType);
  value->mutable_t()->add_dims(1);
  // Zero in any float encoding: all bytes 0.
  value->mutable_t()->set_raw_data(std::string(gate.dataType == onnx::TensorProto::FLOAT ? 4 : 2, '\0'));
  onnx::NodeProto scatter;
  scatter.set_op_type("ScatterElements");
  scatter.set_name(sum.name() + "/as_scatter");
  scatter.add_input(zeros);
  scatter.add_input(gate.ids);
  scatter.add_input(gate.weights);
  scatter.add_output(sum.output(0));
  setIntAttribute(scatter, "axis", 1);
  *kept.Add() = std::move(shapeOf);
  *kept.Add() = std::move(fill);
  *kept.Add() = std::move(scatter);
  for (const std::string &v : gate.orphaned)
    removable.insert(v);
}

/// Softmax(logits + M) with M = ScatterElements(-inf fill, ids, 0 fill) or
/// Softmax(Where(keep, logits, -inf)) / Softmax(Where(Not(keep), -inf,
/// logits)) with keep = ScatterElements(false fill, ids, true fill), the
/// ids a TopK's of the same logits along the softmax's axis.
bool SelectionRewriter::maskedSoftmax(const onnx::NodeProto &softmax, MaskedSoftmax &m) const {
  auto onlyRead = [&](llvm::StringRef v) { return readers.lookup(v) == 1 && !graphOutputs.contains(v); };
  // The logits are [T, E] (the TopK's input: topKOf checks), so is the
  // masked softmax.
  if (!isStandardNode(softmax) || softmax.op_type() != "Softmax" || softmax.input_size() != 1 ||
      softmax.output_size() != 1 ||
      normalizedAxes({blocks::intAttr(softmax, "axis", ctx.opset >= 13 ? -1 : 1)}, 2) != llvm::SmallVector<int64_t>{1} ||
      !onlyRead(softmax.input(0)))
    return false;
  const onnx::NodeProto *masked = producers.lookup(softmax.input(0));
  if (!masked || !isStandardNode(*masked))
    return false;
  auto isNegInf = [&](llvm::StringRef v) {
    std::optional<double> f = fillValue(v);
    return f && std::isinf(*f) && *f < 0;
  };
  auto isValue = [&](llvm::StringRef v, double want) {
    std::optional<double> f = fillValue(v);
    return f && *f == want;
  };
  if (masked->op_type() == "Add" && masked->input_size() == 2) {
    for (int side = 0; side < 2; ++side) {
      const onnx::NodeProto *mask = scatterAtTopK(masked->input(1 - side), masked->input(side));
      const ValueFacts *logits = factsOf(masked->input(side));
      if (!mask || !onlyRead(mask->output(0)) || !isNegInf(mask->input(0)) || !isValue(mask->input(2), 0.0) ||
          !logits || !isFloatType(logits->dataType))
        continue;
      m = {producers.lookup(mask->input(1)), masked->input(side), logits->dataType,
           {softmax.input(0), mask->output(0)}};
      fillValues(mask->input(0), m.orphaned);
      fillValues(mask->input(2), m.orphaned);
      return true;
    }
    return false;
  }
  if (masked->op_type() != "Where" || masked->input_size() != 3)
    return false;
  // Where(logits >= kth, logits, -inf), or Where(logits < kth, -inf,
  // logits) (masked_fill), kth the logits' k-th largest.
  for (int side = 1; side <= 2; ++side) {
    std::string logits = masked->input(3 - side);
    const ValueFacts *logitFacts = factsOf(logits);
    llvm::SmallVector<std::string> orphaned = {softmax.input(0)};
    const onnx::NodeProto *topk =
        isNegInf(masked->input(side)) ? thresholdTopK(masked->input(0), logits, side == 2, orphaned) : nullptr;
    if (!topk || !logitFacts || !isFloatType(logitFacts->dataType))
      continue;
    m = {topk, logits, logitFacts->dataType, orphaned};
    fillValues(masked->input(side), m.orphaned);
    return true;
  }
  // Where(keep, logits, -inf), or Where(Not(keep), -inf, logits).
  std::string keep = masked->input(0), logits = masked->input(1), negInf = masked->input(2);
  llvm::SmallVector<std::string> orphaned = {softmax.input(0)};
  if (const onnx::NodeProto *negate = producers.lookup(keep);
      negate && isStandardNode(*negate) && negate->op_type() == "Not" && onlyRead(keep)) {
    orphaned.push_back(keep);
    keep = negate->input(0);
    std::swap(logits, negInf);
  }
  const onnx::NodeProto *scatter = scatterAtTopK(keep, logits);
  const ValueFacts *logitFacts = factsOf(logits);
  if (!scatter || !onlyRead(keep) || !isNegInf(negInf) || !isValue(scatter->input(0), 0.0) ||
      !isValue(scatter->input(2), 1.0) || !logitFacts || !isFloatType(logitFacts->dataType))
    return false;
  orphaned.push_back(keep);
  fillValues(negInf, orphaned);
  fillValues(scatter->input(0), orphaned);
  fillValues(scatter->input(2), orphaned);
  m = {producers.lookup(scatter->input(1)), logits, logitFacts->dataType, orphaned};
  return true;
}

/// The masked softmax as ScatterElements(zeros like the logits, ids,
/// Softmax(the TopK's values), axis 1).
void SelectionRewriter::emitScatteredPicks(const onnx::NodeProto &softmax, const MaskedSoftmax &m) {
  onnx::NodeProto picks;
  picks.set_op_type("Softmax");
  picks.set_name(softmax.name() + "/over_picks");
  picks.add_input(m.values);
  picks.add_output(m.picks);
  setIntAttribute(picks, "axis", -1);
  std::string weights = picks.output(0);
  *kept.Add() = std::move(picks);
  OneHotGate gate{m.ids, weights, m.logits, m.dataType, m.orphaned};
  emitScatteredGate(softmax, gate);
}

/// Slice(gate, [e], [e + 1], axis 1) or Gather(gate, e, axis 1) of gate =
/// ScatterElements(zeros, ids, w, axis 1), the ids a TopK's.
bool SelectionRewriter::scatteredGateColumn(const onnx::NodeProto &slice, GateColumn &c) const {
  if (isStandardNode(slice) && slice.op_type() == "Gather" && slice.input_size() == 2 && slice.output_size() == 1 &&
      ctx.opset >= 10) {
    // As the Slice of that column, squeezed.
    const ValueFacts *index = factsOf(slice.input(1));
    std::optional<llvm::SmallVector<int64_t>> e = ints(slice.input(1));
    const onnx::NodeProto *gate = scatterAtTopK(slice.input(0), "");
    const ValueFacts *w = gate ? factsOf(gate->input(2)) : nullptr;
    if (!index || index->rank != 0 || !e || e->size() != 1 || (*e)[0] < 0 ||
        normalizedAxes({blocks::intAttr(slice, "axis", 0)}, 2) != llvm::SmallVector<int64_t>{1} || !w ||
        !isFloatType(w->dataType) || w->rank != 2 || fillValue(gate->input(0)) != std::optional<double>(0.0))
      return false;
    c = {gate->input(1), gate->input(2), slice.input(0), (*e)[0], w->dataType, /*squeezed=*/true};
    return true;
  }
  if (!isStandardNode(slice) || slice.op_type() != "Slice" || slice.input_size() < 4 || slice.output_size() != 1 ||
      ctx.opset < 10)
    return false;
  const onnx::NodeProto *gate = scatterAtTopK(slice.input(0), "");
  // Or a masked softmax, which becomes a scattered gate of its picks.
  const MaskedSoftmax *masked = nullptr;
  if (const onnx::NodeProto *p = producers.lookup(slice.input(0)); !gate && p)
    if (auto it = maskedSoftmaxes.find(p); it != maskedSoftmaxes.end())
      masked = &it->second;
  std::optional<llvm::SmallVector<int64_t>> starts = ints(slice.input(1)), ends = ints(slice.input(2)),
                                            axes = ints(slice.input(3));
  std::optional<llvm::SmallVector<int64_t>> steps =
      slice.input_size() > 4 && !slice.input(4).empty() ? ints(slice.input(4)) : llvm::SmallVector<int64_t>{1};
  // A column past the ids' experts holds zeros either way (Equal is false).
  if ((!gate && !masked) || !starts || !ends || !axes || !steps || starts->size() != 1 || ends->size() != 1 ||
      normalizedAxes(*axes, 2) != llvm::SmallVector<int64_t>{1} || *steps != llvm::SmallVector<int64_t>{1} ||
      (*starts)[0] < 0 || (*ends)[0] != (*starts)[0] + 1)
    return false;
  if (masked) {
    c = {masked->ids, masked->picks, slice.input(0), (*starts)[0], masked->dataType};
    return true;
  }
  const ValueFacts *w = factsOf(gate->input(2));
  if (!w || !isFloatType(w->dataType) || w->rank != 2 || fillValue(gate->input(0)) != std::optional<double>(0.0))
    return false;
  c = {gate->input(1), gate->input(2), slice.input(0), (*starts)[0], w->dataType};
  return true;
}

/// The column as ReduceSum(w * Cast(Equal(ids, e)), -1, keepdims) (and a
/// Squeeze, which an Unsqueeze of the same axis cancels, for a Gather).
void SelectionRewriter::emitGateColumn(const onnx::NodeProto &slice, const GateColumn &c) {
  std::string out = slice.output(0), base = slice.name().empty() ? out : slice.name();
  if (c.squeezed)
    out = fresh(out + "/kept");
  auto node = [&](llvm::StringRef op, std::initializer_list<std::string> inputs, llvm::StringRef suffix) {
    onnx::NodeProto n;
    n.set_op_type(op.str());
    n.set_name(base + "/" + suffix.str());
    for (const std::string &in : inputs)
      n.add_input(in);
    n.add_output(fresh(out + "/" + suffix.str()));
    return n;
  };
  onnx::NodeProto equal = node("Equal", {c.ids, constant({c.expert}, "moe_expert_id")}, "is_expert");
  onnx::NodeProto cast = node("Cast", {equal.output(0)}, "mask");
  setIntAttribute(cast, "to", c.dataType);
  onnx::NodeProto mul = node("Mul", {c.weights, cast.output(0)}, "weighted");
  onnx::NodeProto sum;
  sum.set_op_type("ReduceSum");
  sum.set_name(base + "/column");
  sum.add_input(mul.output(0));
  if (ctx.opset >= 13) {
    sum.add_input(constant({-1}, "moe_last_axis"));
  } else {
    onnx::AttributeProto *a = sum.add_attribute();
    a->set_name("axes");
    a->set_type(onnx::AttributeProto::INTS);
    a->add_ints(-1);
  }
  sum.add_output(out);
  setIntAttribute(sum, "keepdims", 1);
  *kept.Add() = std::move(equal);
  *kept.Add() = std::move(cast);
  *kept.Add() = std::move(mul);
  *kept.Add() = std::move(sum);
  removable.insert(c.gate);
  if (c.squeezed) {
    squeezed[slice.output(0)] = {out, {1}, 2};
    removable.insert(slice.output(0));
    *kept.Add() = squeeze(out, {-1}, slice.output(0), base + "/squeeze");
  }
}

/// s * ScatterElements(zeros, ids, ones, axis -1), the ids a TopK's of s
/// (`probs * zeros_like(probs).scatter(-1, idx, 1.0)`): the TopK's values
/// scattered, as s is 1 times its values at its picks and 0 times the rest
/// (finite scores). Names the TopK's values if nothing did.
bool SelectionRewriter::maskedProbs(const onnx::NodeProto &mul, OneHotGate &gate) {
  if (!isStandardNode(mul) || mul.op_type() != "Mul" || mul.input_size() != 2 || mul.output_size() != 1)
    return false;
  for (int side = 0; side < 2; ++side) {
    const std::string &scores = mul.input(side), &mask = mul.input(1 - side);
    const onnx::NodeProto *scatter = scatterAtTopK(mask, scores);
    const ValueFacts *f = factsOf(scores);
    if (!scatter || !onlyRead(mask) || fillValue(scatter->input(0)) != std::optional<double>(0.0) ||
        fillValue(scatter->input(2)) != std::optional<double>(1.0) || !f || !isFloatType(f->dataType))
      continue;
    auto *topk = const_cast<onnx::NodeProto *>(producers.lookup(scatter->input(1)));
    if (topk->output(0).empty())
      topk->set_output(0, fresh(topk->output(1) + "/values"));
    gate = {topk->output(1), topk->output(0), scores, f->dataType, {mask}};
    fillValues(scatter->input(0), gate.orphaned);
    fillValues(scatter->input(2), gate.orphaned);
    return true;
  }
  return false;
}

/// The TopK(scores, k) along the last axis whose k-th largest values `kth`
/// is, as a [T, 1] column: the last column of its values (Slice, or Gather
/// and Unsqueeze) or their ReduceMin over that axis; null otherwise.
const onnx::NodeProto *SelectionRewriter::kthLargestOf(llvm::StringRef kth, llvm::StringRef scores) const {
  const onnx::NodeProto *topk = nullptr;
  if (const onnx::NodeProto *min = producerOf(kth, "ReduceMin")) {
    std::optional<llvm::SmallVector<int64_t>> axes = axesOf(*min);
    const onnx::NodeProto *p = producers.lookup(min->input(0));
    if (axes && normalizedAxes(*axes, 2) == llvm::SmallVector<int64_t>{1} && blocks::intAttr(*min, "keepdims", 1) &&
        p && p->op_type() == "TopK" && p->output(0) == min->input(0))
      topk = p;
  } else if (std::optional<TopKColumn> c = columnOf(kth);
             c && !c->squeezed && c->of.output == 0 && c->of.source == c->of.topk->output(0)) {
    std::optional<llvm::SmallVector<int64_t>> k = ints(c->of.topk->input(1));
    if (k && k->size() == 1 && c->column() == (*k)[0] - 1)
      topk = c->of.topk;
  }
  return topk && topKOf(topk->output(1), scores) ? topk : nullptr;
}

/// The TopK(scores, k) when `cmp` (read only here) compares the scores
/// with their k-th largest `kth` (kthLargestOf) so that it is true where
/// they are kept (`keepIfTrue`: scores >= kth, kth <= scores) or where they
/// are dropped (scores < kth, kth > scores); null otherwise. Adds what
/// only the comparison read to `orphaned`.
const onnx::NodeProto *SelectionRewriter::thresholdTopK(llvm::StringRef cmp, llvm::StringRef scores, bool keepIfTrue,
                                                        llvm::SmallVectorImpl<std::string> &orphaned) const {
  const onnx::NodeProto *compare = onlyRead(cmp) ? producers.lookup(cmp) : nullptr;
  if (!compare || !isStandardNode(*compare) || compare->input_size() != 2)
    return nullptr;
  const std::string &op = compare->op_type();
  int scoresSide = op == "GreaterOrEqual" || op == "Less" ? 0 : op == "LessOrEqual" || op == "Greater" ? 1 : -1;
  bool keeps = op == "GreaterOrEqual" || op == "LessOrEqual";
  if (scoresSide < 0 || keeps != keepIfTrue)
    return nullptr;
  // Both sides widened to f32 (16-bit scores compared in f32) compare as
  // they are: widening is exact.
  llvm::SmallVector<std::string> read = {cmp.str()};
  auto unwidened = [&](const std::string &v) -> std::string {
    const onnx::NodeProto *cast = producerOf(v, "Cast");
    const ValueFacts *from = cast ? factsOf(cast->input(0)) : nullptr;
    if (!cast || !from || !isFloatType(from->dataType) || !onlyRead(v) ||
        blocks::intAttr(*cast, "to", 0) != onnx::TensorProto::FLOAT)
      return v;
    read.push_back(v);
    return cast->input(0);
  };
  std::string compared = unwidened(compare->input(scoresSide));
  std::string kth = unwidened(compare->input(1 - scoresSide));
  const onnx::NodeProto *topk = compared == scores ? kthLargestOf(kth, scores) : nullptr;
  if (topk) {
    read.push_back(kth);
    orphaned.append(read.begin(), read.end());
  }
  return topk;
}

/// The scores kept where they reach their k-th largest, zeros elsewhere:
/// Where(scores >= kth, scores, 0), Where(scores < kth, 0, scores) (PyTorch's
/// masked_fill) or scores * Cast(scores >= kth), kth the k-th largest of a
/// TopK of the scores (kthLargestOf). Without ties that is the TopK's
/// values scattered into zeros at its ids; a tie with the k-th keeps more
/// than k, which the raising check (docs/raising-check.md) catches.
bool SelectionRewriter::thresholdProbs(const onnx::NodeProto &node, OneHotGate &gate) {
  if (!isStandardNode(node) || node.output_size() != 1)
    return false;
  // The comparison `cmp` keeps the scores where it is true (`keepIfTrue`).
  std::string scores, cmp, zero, cast;
  bool keepIfTrue = true;
  if (node.op_type() == "Where" && node.input_size() == 3) {
    cmp = node.input(0);
    for (int side = 1; side <= 2; ++side)
      if (fillValue(node.input(side)) == std::optional<double>(0.0)) {
        zero = node.input(side);
        scores = node.input(3 - side);
        keepIfTrue = side == 2;
      }
  } else if (node.op_type() == "Mul" && node.input_size() == 2) {
    for (int side = 0; side < 2 && cmp.empty(); ++side)
      if (const onnx::NodeProto *c = producerOf(node.input(side), "Cast"); c && onlyRead(node.input(side))) {
        cast = node.input(side);
        cmp = c->input(0);
        scores = node.input(1 - side);
      }
  }
  const ValueFacts *f = factsOf(scores);
  llvm::SmallVector<std::string> orphaned;
  const onnx::NodeProto *topk = cmp.empty() ? nullptr : thresholdTopK(cmp, scores, keepIfTrue, orphaned);
  if (!topk || !f || !isFloatType(f->dataType))
    return false;
  gate = {topk->output(1), topk->output(0), scores, f->dataType, orphaned};
  if (!cast.empty())
    gate.orphaned.push_back(cast);
  if (!zero.empty())
    fillValues(zero, gate.orphaned);
  return true;
}

/// g / ReduceSum(g, -1, keepdims) of a masked-probabilities gate g (read
/// by those two only): the renormalised values scattered. The sum over
/// the experts adds the picks and zeros, the same values in expert order
/// rather than rank order (for k > 2, rounding).
bool SelectionRewriter::renormalizedGate(const onnx::NodeProto &div,
                                         const llvm::DenseMap<const onnx::NodeProto *, OneHotGate> &masked,
                                         OneHotGate &gate) const {
  if (!isStandardNode(div) || div.op_type() != "Div" || div.input_size() != 2 || div.output_size() != 1)
    return false;
  const onnx::NodeProto *mul = producers.lookup(div.input(0));
  const onnx::NodeProto *sum = producerOf(div.input(1), "ReduceSum");
  auto it = mul ? masked.find(mul) : masked.end();
  std::optional<llvm::SmallVector<int64_t>> axes = sum ? axesOf(*sum) : std::nullopt;
  if (it == masked.end() || !sum || sum->input(0) != div.input(0) || !axes ||
      normalizedAxes(*axes, 2) != llvm::SmallVector<int64_t>{1} || blocks::intAttr(*sum, "keepdims", 1) != 1 ||
      readers.lookup(div.input(0)) != 2 || !onlyRead(div.input(1)) || graphOutputs.contains(div.input(0)))
    return false;
  gate = it->second;
  gate.orphaned.append({div.input(0), div.input(1)});
  return true;
}

void SelectionRewriter::emitRenormalizedGate(const onnx::NodeProto &div, const OneHotGate &gate) {
  std::string base = div.name().empty() ? div.output(0) : div.name();
  std::string total = fresh(div.output(0) + "/picks_sum"), weights = fresh(div.output(0) + "/renormalized");
  *kept.Add() = reduceSum(gate.weights, {-1}, /*keepdims=*/true, total, base + "/picks_sum");
  *kept.Add() = node("Div", {gate.weights, total}, weights, base + "/renormalized");
  OneHotGate renormalized = gate;
  renormalized.weights = weights;
  emitScatteredGate(div, renormalized);
}

int64_t SelectionRewriter::run() {
  int64_t reselected = selectFromGatheredScores();
  pairSelections();
  // Found before the loop below moves nodes (and their producers) away.
  llvm::DenseMap<const onnx::NodeProto *, std::string> picked;
  llvm::DenseMap<const onnx::NodeProto *, OneHotGate> gates;
  llvm::DenseMap<const onnx::NodeProto *, GateColumn> columns;
  llvm::DenseMap<const onnx::NodeProto *, OneHotGate> maskedGates, renormalizedGates;
  // In graph order: a masked softmax is known before the columns of it.
  for (const onnx::NodeProto &node : graph.node()) {
    if (std::string values = pickedValues(node); !values.empty())
      picked[&node] = values;
    if (OneHotGate gate; oneHotGate(node, gate))
      gates[&node] = gate;
    if (OneHotGate gate; maskedProbs(node, gate) || thresholdProbs(node, gate))
      maskedGates[&node] = gate;
    if (OneHotGate gate; renormalizedGate(node, maskedGates, gate))
      renormalizedGates[&node] = gate;
    if (MaskedSoftmax m; maskedSoftmax(node, m)) {
      m.picks = fresh(node.output(0) + "/picks");
      // A TopK whose values nothing read gets them named: the picks'
      // softmax reads them.
      if (m.topk->output(0).empty())
        const_cast<onnx::NodeProto *>(m.topk)->set_output(0, fresh(m.topk->output(1) + "/values"));
      m.values = m.topk->output(0);
      m.ids = m.topk->output(1);
      maskedSoftmaxes[&node] = m;
    }
    if (GateColumn c; scatteredGateColumn(node, c))
      columns[&node] = c;
  }
  int64_t rewrites = static_cast<int64_t>(argmaxOf.size() + picked.size() + gates.size() + maskedSoftmaxes.size() +
                                          maskedGates.size() + renormalizedGates.size() +
                                          columns.size());
  if (rewrites == 0)
    return reselected;
  for (onnx::NodeProto &node : *graph.mutable_node()) {
    for (std::string &in : *node.mutable_input())
      if (auto it = renamed.find(in); it != renamed.end())
        in = it->second;
    if (auto it = picked.find(&node); it != picked.end()) {
      renamed[node.output(0)] = it->second;
      continue;
    }
    if (auto it = gates.find(&node); it != gates.end()) {
      emitScatteredGate(node, it->second);
      continue;
    }
    if (auto it = maskedGates.find(&node); it != maskedGates.end()) {
      emitScatteredGate(node, it->second);
      continue;
    }
    if (auto it = renormalizedGates.find(&node); it != renormalizedGates.end()) {
      emitRenormalizedGate(node, it->second);
      continue;
    }
    if (auto it = maskedSoftmaxes.find(&node); it != maskedSoftmaxes.end()) {
      emitScatteredPicks(node, it->second);
      continue;
    }
    if (auto it = columns.find(&node); it != columns.end()) {
      emitGateColumn(node, it->second);
      continue;
    }
    // The first of an ArgMax/ReduceMax pair emits the TopK; the second goes.
    const onnx::NodeProto *argmax = argmaxOf.count(&node) ? &node : reduceMaxOf.lookup(&node);
    if (argmax) {
      if (emitted.insert(argmax).second) {
        const onnx::NodeProto *partner = argmaxOf.lookup(argmax);
        emitTopK(*argmax, partner == argmax ? nullptr : partner);
      }
      continue;
    }
    if (sink(node))
      continue;
    *kept.Add() = std::move(node);
  }
  // Nodes made or orphaned here that nothing reads any more go (each pass
  // frees the ones above).
  for (bool changed = true; changed;) {
    changed = false;
    llvm::StringSet<> read;
    for (const onnx::NodeProto &node : kept)
      for (const std::string &in : node.input())
        read.insert(in);
    google::protobuf::RepeatedPtrField<onnx::NodeProto> live;
    for (onnx::NodeProto &node : kept) {
      bool dead = node.output_size() > 0 && llvm::all_of(node.output(), [&](const std::string &out) {
        return out.empty() || (removable.contains(out) && !read.contains(out) && !graphOutputs.contains(out));
      });
      changed |= dead;
      if (!dead)
        *live.Add() = std::move(node);
    }
    kept.Swap(&live);
  }
  graph.mutable_node()->Swap(&kept);
  return rewrites + reselected;
}

} // namespace

int64_t mlir::moe::onnx_import::canonicalizeSelections(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                                       const llvm::StringMap<ValueFacts> &facts,
                                                       llvm::StringMap<llvm::SmallVector<int64_t>> &made) {
  return SelectionRewriter(graph, ctx, facts, made).run();
}
