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
// (`logits.gather(-1, idx)`) are the TopK's values.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"
#include "GraphCanonicalization.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"

#include <algorithm>
#include <string>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

bool isStandard(const onnx::NodeProto &node) { return node.domain().empty() || node.domain() == "ai.onnx"; }

bool isFloat(int32_t t) {
  return t == onnx::TensorProto::FLOAT || t == onnx::TensorProto::FLOAT16 || t == onnx::TensorProto::BFLOAT16;
}

/// `axes` made non-negative for rank `rank`, sorted; nullopt when one is
/// out of range or repeated.
std::optional<llvm::SmallVector<int64_t>> normalized(llvm::ArrayRef<int64_t> axes, int64_t rank) {
  llvm::SmallVector<int64_t> out;
  for (int64_t a : axes) {
    if (a < -rank || a >= rank)
      return std::nullopt;
    out.push_back(a < 0 ? a + rank : a);
  }
  llvm::sort(out);
  if (std::adjacent_find(out.begin(), out.end()) != out.end())
    return std::nullopt;
  return out;
}

/// What a squeeze of a top-1 selection removed: `source` with rank `rank`
/// lost the (non-negative) `axes`.
struct Squeezed {
  std::string source;
  llvm::SmallVector<int64_t> axes;
  int64_t rank;
};

class SelectionRewriter {
public:
  SelectionRewriter(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                    const llvm::StringMap<ValueFacts> &facts, llvm::StringMap<llvm::SmallVector<int64_t>> &made)
      : graph(graph), ctx(ctx), facts(facts), made(made) {
    for (const onnx::TensorProto &init : graph.initializer())
      taken.insert(init.name());
    for (const onnx::ValueInfoProto &v : graph.input())
      taken.insert(v.name());
    for (const onnx::ValueInfoProto &v : graph.output()) {
      taken.insert(v.name());
      graphOutputs.insert(v.name());
    }
    for (const onnx::NodeProto &node : graph.node()) {
      for (const std::string &v : node.output())
        if (!v.empty()) {
          taken.insert(v);
          producers[v] = &node;
        }
      for (const std::string &v : node.input()) {
        taken.insert(v);
        ++readers[v];
      }
    }
  }

  int64_t run();

private:
  std::optional<llvm::SmallVector<int64_t>> ints(llvm::StringRef name) const {
    if (auto it = made.find(name); it != made.end())
      return it->second;
    return ctx.ints(name);
  }
  const ValueFacts *factsOf(llvm::StringRef name) const {
    auto it = facts.find(name);
    return it == facts.end() ? nullptr : &it->second;
  }
  /// The axes of a Squeeze, Unsqueeze or reduction (attribute before opset
  /// 13/18, input 1 after).
  std::optional<llvm::SmallVector<int64_t>> axesOf(const onnx::NodeProto &node) const {
    if (llvm::SmallVector<int64_t> a = blocks::intsAttr(node, "axes"); !a.empty())
      return a;
    if (node.input_size() > 1 && !node.input(1).empty())
      return ints(node.input(1));
    return std::nullopt;
  }
  std::string fresh(llvm::StringRef base) {
    std::string name = base.str();
    for (int i = 0; !taken.insert(name).second; ++i)
      name = base.str() + "_" + std::to_string(i);
    return name;
  }
  /// A new int64 1-D initializer holding `values`.
  std::string constant(llvm::ArrayRef<int64_t> values, llvm::StringRef base) {
    std::string name = fresh(base);
    onnx::TensorProto *t = graph.add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(values.size()));
    for (int64_t v : values)
      t->add_int64_data(v);
    made[name] = llvm::SmallVector<int64_t>(values);
    return name;
  }
  /// Squeeze(`in`, `axes`) -> `out`, in the opset's spelling.
  onnx::NodeProto squeeze(const std::string &in, llvm::ArrayRef<int64_t> axes, const std::string &out,
                          llvm::StringRef name) {
    onnx::NodeProto node;
    node.set_op_type("Squeeze");
    node.set_name(name.str());
    node.add_input(in);
    if (ctx.opset >= 13) {
      node.add_input(constant(axes, "moe_squeeze_axes"));
    } else {
      onnx::AttributeProto *a = node.add_attribute();
      a->set_name("axes");
      a->set_type(onnx::AttributeProto::INTS);
      for (int64_t x : axes)
        a->add_ints(x);
    }
    node.add_output(out);
    return node;
  }
  /// Router scores: a linear map of x (MatMul, Gemm, maybe plus a bias), or
  /// its softmax or sigmoid, through Casts. ArgMax is rewritten only there:
  /// its NaN rule is TopK's only where no NaN reaches it.
  bool isRouterScore(llvm::StringRef value) const {
    auto through = [&](llvm::StringRef v) {
      const onnx::NodeProto *p = producers.lookup(v);
      while (p && isStandard(*p) && (p->op_type() == "Cast" || p->op_type() == "Identity") && p->input_size())
        p = producers.lookup(p->input(0));
      return p;
    };
    const onnx::NodeProto *p = through(value);
    if (p && isStandard(*p) && (p->op_type() == "Softmax" || p->op_type() == "Sigmoid") && p->input_size())
      p = through(p->input(0));
    // A bias is an initializer or a Constant node.
    auto isConstant = [&](llvm::StringRef v) {
      const onnx::NodeProto *c = producers.lookup(v);
      return !c || c->op_type() == "Constant";
    };
    if (p && isStandard(*p) && p->op_type() == "Add" && p->input_size() == 2)
      for (int i = 0; i < 2; ++i)
        if (isConstant(p->input(1 - i))) {
          p = through(p->input(i));
          break;
        }
    return p && isStandard(*p) && (p->op_type() == "MatMul" || p->op_type() == "Gemm");
  }
  /// The last axis of ArgMax/ReduceMax `node` over `rank` dims, its only one.
  bool overLastAxis(const onnx::NodeProto &node, int64_t rank) const {
    if (node.op_type() == "ArgMax")
      return normalized({blocks::intAttr(node, "axis", 0)}, rank) == llvm::SmallVector<int64_t>{rank - 1};
    std::optional<llvm::SmallVector<int64_t>> a = axesOf(node);
    return a && normalized(*a, rank) == llvm::SmallVector<int64_t>{rank - 1};
  }
  void pairSelections();
  std::string pickedValues(const onnx::NodeProto &gather) const;
  struct OneHotGate {
    std::string ids, weights, scores;
    int32_t dataType = 0;
    /// Values only the one-hot gate read: dead once it is scattered.
    llvm::SmallVector<std::string> orphaned;
  };
  bool oneHotGate(const onnx::NodeProto &sum, OneHotGate &gate) const;
  void emitScatteredGate(const onnx::NodeProto &sum, const OneHotGate &gate);
  void emitTopK(const onnx::NodeProto &argmax, const onnx::NodeProto *reduceMax);
  bool sink(onnx::NodeProto &node);

  onnx::GraphProto &graph;
  const CanonicalizationContext &ctx;
  const llvm::StringMap<ValueFacts> &facts;
  llvm::StringMap<llvm::SmallVector<int64_t>> &made;
  llvm::StringSet<> taken, graphOutputs;
  llvm::StringMap<const onnx::NodeProto *> producers;
  llvm::StringMap<int> readers;
  /// ArgMax nodes to rewrite, with the ReduceMax of the same scores (or
  /// null); each pair's second node is dropped when the first is reached.
  llvm::DenseMap<const onnx::NodeProto *, const onnx::NodeProto *> argmaxOf, reduceMaxOf;
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
    if (isStandard(node) && node.op_type() == "ReduceMax" && node.input_size() >= 1)
      reduceMaxes[node.input(0)].push_back(&node);
  for (const onnx::NodeProto &node : graph.node()) {
    if (!isStandard(node) || node.op_type() != "ArgMax" || node.input_size() != 1 || node.output_size() != 1 ||
        blocks::intAttr(node, "select_last_index", 0) != 0)
      continue;
    const ValueFacts *in = factsOf(node.input(0));
    if (!in || !isFloat(in->dataType) || in->rank < 1 || static_cast<int64_t>(in->dims.size()) != in->rank ||
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
  onnx::AttributeProto *axis = topk.add_attribute();
  axis->set_name("axis");
  axis->set_type(onnx::AttributeProto::INT);
  axis->set_i(-1);
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

/// Unsqueeze(Squeeze(a, axes), axes) is a; an elementwise op with one
/// squeezed operand and scalar others runs on the unsqueezed operand and is
/// squeezed after. Returns true when `node` was consumed.
bool SelectionRewriter::sink(onnx::NodeProto &node) {
  llvm::StringRef op = node.op_type();
  if (!isStandard(node) || node.output_size() != 1 || node.output(0).empty())
    return false;
  if (op == "Unsqueeze" && node.input_size() >= 1) {
    auto it = squeezed.find(node.input(0));
    std::optional<llvm::SmallVector<int64_t>> a = axesOf(node);
    if (it == squeezed.end() || !a || normalized(*a, it->second.rank) != it->second.axes ||
        graphOutputs.contains(node.output(0)))
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

/// GatherElements(s, TopK(s).indices) along the TopK's axis is its values
/// (`logits.gather(-1, logits.topk(k).indices)`): the TopK's values output,
/// or "".
std::string SelectionRewriter::pickedValues(const onnx::NodeProto &gather) const {
  if (!isStandard(gather) || gather.op_type() != "GatherElements" || gather.input_size() != 2 ||
      gather.output_size() != 1 || graphOutputs.contains(gather.output(0)))
    return "";
  const onnx::NodeProto *topk = producers.lookup(gather.input(1));
  const ValueFacts *in = topk ? factsOf(gather.input(0)) : nullptr;
  if (!topk || !isStandard(*topk) || topk->op_type() != "TopK" || topk->output_size() != 2 ||
      topk->output(1) != gather.input(1) || topk->input(0) != gather.input(0) || topk->output(0).empty() || !in ||
      in->rank < 1)
    return "";
  std::optional<llvm::SmallVector<int64_t>> along = normalized({blocks::intAttr(gather, "axis", 0)}, in->rank),
                                            topkAxis = normalized({blocks::intAttr(*topk, "axis", -1)}, in->rank);
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
    return p && isStandard(*p) && p->op_type() == op ? p : nullptr;
  };
  auto onlyRead = [&](llvm::StringRef v) { return readers.lookup(v) == 1 && !graphOutputs.contains(v); };
  std::optional<llvm::SmallVector<int64_t>> axes = axesOf(sum);
  if (!isStandard(sum) || sum.op_type() != "ReduceSum" || sum.output_size() != 1 || !axes ||
      normalized(*axes, 3) != llvm::SmallVector<int64_t>{1} || blocks::intAttr(sum, "keepdims", 1) != 0)
    return false;
  const onnx::NodeProto *mul = producer(sum.input(0), "Mul");
  if (!mul || mul->input_size() != 2 || !onlyRead(mul->output(0)))
    return false;
  for (int side = 0; side < 2; ++side) {
    const onnx::NodeProto *unsq = producer(mul->input(1 - side), "Unsqueeze");
    std::optional<llvm::SmallVector<int64_t>> unsqAxes = unsq ? axesOf(*unsq) : std::nullopt;
    if (!unsq || !unsqAxes || normalized(*unsqAxes, 3) != llvm::SmallVector<int64_t>{2} ||
        !onlyRead(unsq->output(0)))
      continue;
    // The mask through its Casts to the weights' float type.
    llvm::SmallVector<std::string> chain = {mul->output(0), unsq->output(0)};
    std::string mask = mul->input(side);
    const onnx::NodeProto *p = producers.lookup(mask);
    while (p && isStandard(*p) && p->op_type() == "Cast" && onlyRead(p->output(0))) {
      chain.push_back(p->output(0));
      mask = p->input(0);
      p = producers.lookup(mask);
    }
    if (!p || !isStandard(*p) || !onlyRead(mask))
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
        if (col && colAxes && normalized(*colAxes, 3) == llvm::SmallVector<int64_t>{2} && arange &&
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
        scores->dims[1] != experts || !weights || !isFloat(weights->dataType) || weights->rank != 2 ||
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
  onnx::AttributeProto *axis = scatter.add_attribute();
  axis->set_name("axis");
  axis->set_type(onnx::AttributeProto::INT);
  axis->set_i(1);
  *kept.Add() = std::move(shapeOf);
  *kept.Add() = std::move(fill);
  *kept.Add() = std::move(scatter);
  for (const std::string &v : gate.orphaned)
    removable.insert(v);
}

int64_t SelectionRewriter::run() {
  pairSelections();
  // Found before the loop below moves nodes (and their producers) away.
  llvm::DenseMap<const onnx::NodeProto *, std::string> picked;
  llvm::DenseMap<const onnx::NodeProto *, OneHotGate> gates;
  for (const onnx::NodeProto &node : graph.node()) {
    if (std::string values = pickedValues(node); !values.empty())
      picked[&node] = values;
    if (OneHotGate gate; oneHotGate(node, gate))
      gates[&node] = gate;
  }
  int64_t rewrites = static_cast<int64_t>(argmaxOf.size() + picked.size() + gates.size());
  if (rewrites == 0)
    return 0;
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
  return rewrites;
}

} // namespace

int64_t mlir::moe::onnx_import::canonicalizeSelections(onnx::GraphProto &graph, const CanonicalizationContext &ctx,
                                                       const llvm::StringMap<ValueFacts> &facts,
                                                       llvm::StringMap<llvm::SmallVector<int64_t>> &made) {
  return SelectionRewriter(graph, ctx, facts, made).run();
}
