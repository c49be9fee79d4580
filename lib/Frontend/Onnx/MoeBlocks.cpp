//===- MoeBlocks.cpp - MoE layers written out in plain ONNX ops -----------===//
//
// Finds the batched form of an MoE block that exporters emit for
// transformers' export-friendly experts (docs/onnx.md):
//
//   logits = MatMul(x, Wr);  p = Softmax(logits);  w, e = TopK(p, k)
//   [w = Div(w, ReduceSum(w, -1))]                       renormalisation
//   ids = Reshape(e, [-1]);  sw = Reshape(w, [-1])
//   rows = Reshape(Expand(Unsqueeze(x, 1), ...), ...)    x once per slot
//   h = Squeeze(MatMul(Gather(W13, ids), Unsqueeze(rows, -1)), -1)
//   g, u = Split(h);  a = Mul(Mul(g, Sigmoid(g)), u)    SwiGLU
//   o = Squeeze(MatMul(Gather(W2, ids), Unsqueeze(a, -1)), -1)
//   y = ReduceSum(Reshape(Mul(o, Unsqueeze(sw, -1)), [T, k, H]), 1)
//
// or, as index_add_ exports, rows = Gather(x, tok) and y = ScatterND(zeros,
// Unsqueeze(tok, -1), Mul(o, ..), add) with tok = each slot's token
// (Reshape(Expand(Unsqueeze(Range(0, T, 1), 1), ..), [-1])).
//
// with Wr, W13 [E, 2I, H] and W2 [E, H, I] constant, and the whole block
// one moe.layer. The per-expert loop that tracing unrolls (transformers'
// eager MixtralSparseMoeBlock) is recognised too:
//
//   mask_e = Gather(Transpose(OneHot(e, E, [0, 1]), [2, 1, 0]), e)  [k, T]
//            or Equal(e, e)                                         [T, k]
//   nz = NonZero(mask_e); tok, slot = Gather(nz, 0 / 1)   (order by form)
//   rows = Gather(x, tok); a = silu(rows W1_e) * (rows W3_e); o = a W2_e
//   acc = ScatterND(acc, Unsqueeze(tok, -1),
//                   Mul(o, Unsqueeze(GatherND(w, Concat(tok, slot)), -1)), add)
//
// for every expert e exactly once, from acc = ConstantOfShape(Shape(x)); a
// sigmoid-gated shared expert added to y (Qwen2-MoE) joins it as the
// layer's shared expert. torch.onnx's spellings are accepted (routers and
// projections as Gemm with transB, ids clamped to [0, E), weights gathered
// by GatherND), and gpt-oss's block (matchGptOssBlock: top-k of the logits,
// softmax over the picks, expert biases, the clamped SwiGLU on alternate
// columns) becomes ONNX Runtime's MoE computation (ExpertMixture.h). Everything is checked: a block that looks like MoE but
// differs anywhere (another activation, a value used outside the block, a
// weight that is not a constant) stays plain ops, with a remark saying why.
//
//===----------------------------------------------------------------------===//

#include "MoeBlocks.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringMap.h"

#include <cmath>
#include <map>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace {

/// Producers and consumers of the graph's values.
class GraphIndex {
public:
  GraphIndex(const onnx::GraphProto &graph, const std::function<bool(llvm::StringRef)> &isConstant)
      : graph(graph), isConstant(isConstant) {
    for (int i = 0; i < graph.node_size(); ++i) {
      indices[&graph.node(i)] = i;
      for (const std::string &out : graph.node(i).output())
        producers[out] = i;
      for (const std::string &in : graph.node(i).input())
        consumers[in].push_back(i);
    }
    for (const onnx::ValueInfoProto &out : graph.output())
      graphOutputs.insert(out.name());
  }

  const onnx::NodeProto *producer(llvm::StringRef value) const {
    auto it = producers.find(value);
    return it == producers.end() ? nullptr : &graph.node(it->second);
  }
  llvm::ArrayRef<int> users(llvm::StringRef value) const {
    auto it = consumers.find(value);
    return it == consumers.end() ? llvm::ArrayRef<int>() : llvm::ArrayRef<int>(it->second);
  }
  /// The only node using `value` if it has that op type.
  const onnx::NodeProto *onlyUser(llvm::StringRef value, llvm::StringRef opType) const {
    llvm::ArrayRef<int> u = users(value);
    if (u.size() != 1 || graph.node(u[0]).op_type() != opType)
      return nullptr;
    return &graph.node(u[0]);
  }
  /// The user of `value` with op type `opType` (there must be exactly one).
  const onnx::NodeProto *userOfType(llvm::StringRef value, llvm::StringRef opType) const {
    const onnx::NodeProto *found = nullptr;
    for (int i : users(value))
      if (graph.node(i).op_type() == opType) {
        if (found)
          return nullptr;
        found = &graph.node(i);
      }
    return found;
  }
  /// Protobuf keeps nodes apart in memory: the index is looked up.
  int indexOf(const onnx::NodeProto *node) const { return indices.lookup(node); }
  /// The node's name, or its op type and index when it has none.
  std::string describe(int i) const {
    const onnx::NodeProto &n = graph.node(i);
    return n.name().empty() ? n.op_type() + " #" + std::to_string(i) : n.name();
  }

  const onnx::GraphProto &graph;
  std::function<bool(llvm::StringRef)> isConstant;
  llvm::StringSet<> graphOutputs;

private:
  llvm::StringMap<int> producers;
  llvm::StringMap<llvm::SmallVector<int>> consumers;
  llvm::DenseMap<const onnx::NodeProto *, int> indices;
};

int64_t intAttr(const onnx::NodeProto &node, llvm::StringRef name, int64_t fallback) {
  for (const onnx::AttributeProto &a : node.attribute())
    if (a.name() == name)
      return a.i();
  return fallback;
}

/// A single-axis op (Squeeze/Unsqueeze/ReduceSum) on axis `axis`, given as
/// a constant input or attribute.
bool hasAxis(const onnx::NodeProto &node, const ConstantLookup &constants, int64_t axis) {
  std::optional<llvm::SmallVector<int64_t>> axes;
  if (node.input_size() > 1)
    axes = constants(node.input(1));
  else
    for (const onnx::AttributeProto &a : node.attribute())
      if (a.name() == "axes")
        axes = llvm::SmallVector<int64_t>(a.ints().begin(), a.ints().end());
  return axes && axes->size() == 1 && (*axes)[0] == axis;
}

float floatAttr(const onnx::NodeProto &node, llvm::StringRef name, float fallback) {
  for (const onnx::AttributeProto &a : node.attribute())
    if (a.name() == name)
      return a.f();
  return fallback;
}

/// The constant weight of the linear map computing `value` from the block's
/// x (from anything when `ofX` is null): MatMul(x, W), or Gemm(x, W)
/// without bias, scaling or transA (transB = 1: W as rows). Empty if neither.
LinearWeight linearOf(const GraphIndex &g, llvm::StringRef value, const MoeBlock *ofX,
                      llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *mm = g.producer(value);
  if (!mm || mm->input_size() != 2 || (ofX && !ofX->isX(mm->input(0))) || !g.isConstant(mm->input(1)))
    return {};
  bool rows = false;
  if (mm->op_type() == "Gemm") {
    if (intAttr(*mm, "transA", 0) != 0 || floatAttr(*mm, "alpha", 1.0f) != 1.0f)
      return {};
    rows = intAttr(*mm, "transB", 0) != 0;
  } else if (mm->op_type() != "MatMul") {
    return {};
  }
  nodes.push_back(mm);
  return {mm->input(1), rows};
}

/// The block's output plus a Qwen2-MoE shared expert:
///   Add(y, Mul(Sigmoid(x Wg), (silu(x Wgate) * (x Wup)) Wdown)).
/// Extends `block` and `nodes` when it matches; leaves them otherwise (the
/// shared expert then stays plain ops, still correct).
void matchSharedExpert(const GraphIndex &g, MoeBlock &block, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *add = g.onlyUser(block.output, "Add");
  if (!add)
    return;
  llvm::SmallVector<const onnx::NodeProto *> found = {add};
  std::string other = add->input(0) == block.output ? add->input(1) : add->input(0);
  const onnx::NodeProto *weighted = g.producer(other);
  if (!weighted || weighted->op_type() != "Mul" || g.users(other).size() != 1)
    return;
  found.push_back(weighted);
  // One factor is the sigmoid gate, the other the shared expert's output.
  LinearWeight gate, down;
  for (int side = 0; side < 2 && gate.empty(); ++side) {
    const onnx::NodeProto *sigmoid = g.producer(weighted->input(side));
    if (!sigmoid || sigmoid->op_type() != "Sigmoid")
      continue;
    llvm::SmallVector<const onnx::NodeProto *> gateNodes = {sigmoid};
    LinearWeight w = linearOf(g, sigmoid->input(0), &block, gateNodes);
    LinearWeight out = linearOf(g, weighted->input(1 - side), nullptr, gateNodes);
    if (w.empty() || out.empty())
      continue;
    gate = w;
    down = out;
    found.append(gateNodes.begin(), gateNodes.end());
  }
  if (gate.empty())
    return;
  // (silu(x Wgate) * (x Wup)): Mul(Mul(g, Sigmoid(g)), u).
  const onnx::NodeProto *act = g.producer(found.back()->input(0));
  if (!act || act->op_type() != "Mul")
    return;
  found.push_back(act);
  for (int side = 0; side < 2; ++side) {
    const onnx::NodeProto *silu = g.producer(act->input(side));
    if (!silu || silu->op_type() != "Mul")
      continue;
    const onnx::NodeProto *sig = nullptr;
    std::string pre;
    for (int j = 0; j < 2 && !sig; ++j) {
      const onnx::NodeProto *s = g.producer(silu->input(j));
      if (s && s->op_type() == "Sigmoid" && s->input(0) == silu->input(1 - j)) {
        sig = s;
        pre = silu->input(1 - j);
      }
    }
    if (!sig)
      continue;
    llvm::SmallVector<const onnx::NodeProto *> expertNodes = {silu, sig};
    LinearWeight gateProj = linearOf(g, pre, &block, expertNodes);
    LinearWeight upProj = linearOf(g, act->input(1 - side), &block, expertNodes);
    if (gateProj.empty() || upProj.empty())
      continue;
    found.append(expertNodes.begin(), expertNodes.end());
    nodes.append(found.begin(), found.end());
    block.sharedGateProj = gateProj;
    block.sharedUpProj = upProj;
    block.sharedDownProj = down;
    block.sharedGate = gate;
    block.output = add->output(0);
    block.last = g.indexOf(add);
    return;
  }
}

/// The gated activation act(gate) * up: SwiGLU, Mul(Mul(g, Sigmoid(g)), u),
/// or GeGLU, Mul(Gelu(g), u) with the exact (erf) Gelu; either operand
/// order. Returns the product node and sets `kind`; adds the nodes.
const onnx::NodeProto *matchGatedActivation(const GraphIndex &g, llvm::StringRef gate, llvm::StringRef up,
                                            GateActivation &kind,
                                            llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  auto other = [](const onnx::NodeProto &n, llvm::StringRef value) {
    return n.input(0) == value ? n.input(1) : n.input(0);
  };
  const onnx::NodeProto *activated = nullptr;
  llvm::SmallVector<const onnx::NodeProto *> found;
  if (const onnx::NodeProto *gelu = g.onlyUser(gate, "Gelu")) {
    bool exact = llvm::none_of(gelu->attribute(), [](const onnx::AttributeProto &a) {
      return a.name() == "approximate" && a.s() != "none";
    });
    if (!exact)
      return nullptr;
    activated = gelu;
    found = {gelu};
    kind = GateActivation::gelu;
  } else {
    const onnx::NodeProto *sigmoid = g.userOfType(gate, "Sigmoid");
    const onnx::NodeProto *mul = g.userOfType(gate, "Mul");
    if (!sigmoid || !mul || g.users(gate).size() != 2 || other(*mul, gate) != sigmoid->output(0))
      return nullptr;
    activated = mul;
    found = {sigmoid, mul};
    kind = GateActivation::silu;
  }
  const onnx::NodeProto *product = g.onlyUser(activated->output(0), "Mul");
  if (!product || other(*product, activated->output(0)) != up || g.users(up).size() != 1)
    return nullptr;
  found.push_back(product);
  nodes.append(found.begin(), found.end());
  return product;
}

/// A ConstantOfShape attribute that leaves the fill 0 (absent: 0.0).
bool isZeroValue(const onnx::AttributeProto &a) {
  if (a.name() != "value")
    return true;
  const onnx::TensorProto &t = a.t();
  auto zero = [](const auto &field) { return llvm::all_of(field, [](auto v) { return v == 0; }); };
  return t.raw_data().find_first_not_of('\0') == std::string::npos && zero(t.float_data()) &&
         zero(t.int32_data()) && zero(t.int64_data()) && zero(t.double_data());
}

/// DeepSeek-V3's routing as transformers writes it, ending at TopK node `t`:
///
///   s = Sigmoid(logits); sb = s + bias                    (bias constant [E])
///   gs = ReduceSum(TopK(Reshape(sb, [-1, G, E / G]), 2).values, -1)
///   mask = ScatterElements(zeros, TopK(gs, topk_groups).indices, ones, axis 1)
///   t = TopK(Where(Not(Cast(Reshape(Expand(Unsqueeze(mask, -1), ..), [-1, E]))), -inf, sb), k)
///   w = GatherElements(s, t.indices, axis 1) [/ ReduceSum(w, -1)] [· scale]
///
/// Returns the logits' value and the weights' (after the optional
/// renormalisation and scale); fills block.deepSeek, k and normalize.
std::optional<std::pair<std::string, std::string>>
matchDeepSeekRouting(const GraphIndex &g, const ConstantLookup &constants, const onnx::NodeProto &t, MoeBlock &block,
                     llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  auto producer = [&](llvm::StringRef value, llvm::StringRef op) -> const onnx::NodeProto * {
    const onnx::NodeProto *n = g.producer(value);
    return n && n->op_type() == op ? n : nullptr;
  };
  auto other = [](const onnx::NodeProto &n, llvm::StringRef value) -> std::string {
    return n.input(0) == value ? n.input(1) : n.input(0);
  };
  const onnx::NodeProto *where = producer(t.input(0), "Where");
  const onnx::NodeProto *notMask = where ? producer(where->input(0), "Not") : nullptr;
  std::optional<std::vector<float>> fill = where && constants.floats ? constants.floats(where->input(1)) : std::nullopt;
  const onnx::NodeProto *biased = where ? producer(where->input(2), "Add") : nullptr;
  if (!notMask || !fill || fill->size() != 1 || !std::isinf((*fill)[0]) || (*fill)[0] > 0 || !biased)
    return std::nullopt;
  const onnx::NodeProto *sigmoid = producer(biased->input(0), "Sigmoid");
  if (!sigmoid)
    sigmoid = producer(biased->input(1), "Sigmoid");
  std::string bias = sigmoid ? other(*biased, sigmoid->output(0)) : "";
  std::optional<llvm::SmallVector<int64_t>> biasShape = constants.shape(bias);
  if (!sigmoid || !g.isConstant(bias) || !biasShape || biasShape->size() != 1)
    return std::nullopt;
  int64_t experts = (*biasShape)[0];
  // The group mask, back to the experts: Cast(Reshape(Expand(Unsqueeze(mask, -1))))
  const onnx::NodeProto *cast = producer(notMask->input(0), "Cast");
  const onnx::NodeProto *flat = cast ? producer(cast->input(0), "Reshape") : nullptr;
  const onnx::NodeProto *expand = flat ? producer(flat->input(0), "Expand") : nullptr;
  const onnx::NodeProto *unsq = expand ? producer(expand->input(0), "Unsqueeze") : nullptr;
  const onnx::NodeProto *scatter = unsq ? producer(unsq->input(0), "ScatterElements") : nullptr;
  const onnx::NodeProto *groupTop = scatter ? producer(scatter->input(1), "TopK") : nullptr;
  const onnx::NodeProto *groupScore = groupTop ? producer(groupTop->input(0), "ReduceSum") : nullptr;
  const onnx::NodeProto *top2 = groupScore ? producer(groupScore->input(0), "TopK") : nullptr;
  const onnx::NodeProto *grouped = top2 ? producer(top2->input(0), "Reshape") : nullptr;
  std::optional<llvm::SmallVector<int64_t>> groupShape = grouped ? constants(grouped->input(1)) : std::nullopt;
  std::optional<llvm::SmallVector<int64_t>> two = top2 ? constants(top2->input(1)) : std::nullopt;
  std::optional<llvm::SmallVector<int64_t>> topkGroups = groupTop ? constants(groupTop->input(1)) : std::nullopt;
  if (!grouped || grouped->input(0) != biased->output(0) || !hasAxis(*unsq, constants, -1) ||
      intAttr(*scatter, "axis", 0) != 1 || scatter->input(1) != groupTop->output(1) || !hasAxis(*groupScore, constants, -1) ||
      intAttr(*groupScore, "keepdims", 1) != 0 || groupScore->input(0) != top2->output(0) || !groupShape ||
      groupShape->size() != 3 || (*groupShape)[1] <= 0 || (*groupShape)[1] * (*groupShape)[2] != experts || !two ||
      two->size() != 1 || (*two)[0] != 2 || !topkGroups || topkGroups->size() != 1 ||
      intAttr(*top2, "largest", 1) != 1 || intAttr(*groupTop, "largest", 1) != 1 || intAttr(*top2, "axis", -1) != -1 ||
      intAttr(*groupTop, "axis", -1) != -1)
    return std::nullopt;
  // The weights: unbiased scores at the picks.
  const onnx::NodeProto *gather = g.userOfType(t.output(1), "GatherElements");
  std::optional<llvm::SmallVector<int64_t>> k = constants(t.input(1));
  if (!gather || gather->input(0) != sigmoid->output(0) || gather->input(1) != t.output(1) ||
      intAttr(*gather, "axis", 0) != 1 || !k || k->size() != 1 || intAttr(t, "largest", 1) != 1 ||
      intAttr(t, "axis", -1) != -1)
    return std::nullopt;
  MoeBlock::DeepSeekRouting routing;
  routing.selectionBias = bias;
  routing.numGroups = (*groupShape)[1];
  routing.topkGroups = (*topkGroups)[0];
  block.k = (*k)[0];
  nodes.append({&t, where, notMask, biased, sigmoid, cast, flat, expand, unsq, scatter, groupTop, groupScore, top2,
                grouped, gather});
  std::string w = gather->output(0);
  if (const onnx::NodeProto *sum = g.userOfType(w, "ReduceSum")) {
    const onnx::NodeProto *div = g.userOfType(w, "Div");
    if (!div || div->input(0) != w || div->input(1) != sum->output(0) || !hasAxis(*sum, constants, -1) ||
        intAttr(*sum, "keepdims", 1) != 1)
      return std::nullopt;
    block.normalize = true;
    nodes.append({sum, div});
    w = div->output(0);
  }
  if (const onnx::NodeProto *mul = g.onlyUser(w, "Mul")) {
    std::optional<std::vector<float>> scale = constants.floats ? constants.floats(other(*mul, w)) : std::nullopt;
    if (scale && scale->size() == 1 && (*scale)[0] > 0) {
      routing.scale = (*scale)[0];
      nodes.push_back(mul);
      w = mul->output(0);
    }
  }
  block.deepSeek = routing;
  return std::make_pair(sigmoid->input(0), w);
}

/// The routing every block form starts with, at TopK node `topk`:
/// TopK(Softmax(MatMul(x, Wr))) with Wr constant, the weights optionally
/// divided by their sum. Fills the block's x, router, k and normalize and
/// `nodes`; returns the (renormalised) weights' value. On failure `why`
/// holds the reason, or is empty when this is not MoE routing at all.
std::optional<std::string> matchRouting(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                        MoeBlock &block, llvm::SmallVector<const onnx::NodeProto *> &nodes,
                                        std::string &why) {
  const onnx::NodeProto &t = g.graph.node(topk);
  why.clear();
  const onnx::NodeProto *softmax = g.producer(t.input(0));
  std::optional<std::pair<std::string, std::string>> deepSeek;
  llvm::SmallVector<const onnx::NodeProto *> deepSeekNodes;
  if (!softmax || softmax->op_type() != "Softmax") {
    deepSeek = matchDeepSeekRouting(g, constants, t, block, deepSeekNodes);
    softmax = nullptr;
  }
  if ((!softmax && !deepSeek) || t.output_size() != 2)
    return std::nullopt;
  llvm::SmallVector<const onnx::NodeProto *> routerNodes;
  block.routerWeight = linearOf(g, deepSeek ? deepSeek->first : softmax->input(0), nullptr, routerNodes);
  if (block.routerWeight.empty())
    return std::nullopt;
  const onnx::NodeProto *router = routerNodes.front();
  auto fail = [&](llvm::StringRef reason) -> std::optional<std::string> {
    why = reason.str();
    return std::nullopt;
  };
  block.x = router->input(0);
  // transformers' routers reshape x [T, H] to [-1, H] again: the same
  // tensor when x itself comes from a Reshape to [*, H].
  if (const onnx::NodeProto *view = g.producer(block.x); view && view->op_type() == "Reshape") {
    const onnx::NodeProto *source = g.producer(view->input(0));
    std::optional<llvm::SmallVector<int64_t>> viewShape = constants(view->input(1));
    std::optional<llvm::SmallVector<int64_t>> sourceShape =
        source && source->op_type() == "Reshape" ? constants(source->input(1)) : std::nullopt;
    if (viewShape && sourceShape && viewShape->size() == 2 && sourceShape->size() == 2 &&
        (*viewShape)[1] > 0 && (*viewShape)[1] == (*sourceShape)[1] && ((*viewShape)[0] == -1 || (*viewShape)[0] == (*sourceShape)[0])) {
      block.xView = block.x;
      block.x = view->input(0);
      nodes.push_back(view);
    }
  }
  if (deepSeek) {
    nodes.push_back(router);
    nodes.append(deepSeekNodes.begin(), deepSeekNodes.end());
    return deepSeek->second;
  }
  std::optional<llvm::SmallVector<int64_t>> k = constants(t.input(1));
  if (!k || k->size() != 1)
    return fail("K is not a constant");
  block.k = (*k)[0];
  if (intAttr(t, "largest", 1) != 1 || intAttr(t, "sorted", 1) != 1 || intAttr(*softmax, "axis", -1) != -1 ||
      intAttr(t, "axis", -1) != -1)
    return fail("the softmax or top-k is not over the last axis, largest first");
  nodes.append({router, softmax, &t});
  std::string w = t.output(0);
  if (const onnx::NodeProto *sum = g.userOfType(w, "ReduceSum")) {
    const onnx::NodeProto *div = g.userOfType(w, "Div");
    if (!div || div->input(0) != w || div->input(1) != sum->output(0) || !hasAxis(*sum, constants, -1) ||
        intAttr(*sum, "keepdims", 1) != 1)
      return fail("the top-k weights are summed but not divided by their sum");
    block.normalize = true;
    nodes.append({sum, div});
    w = div->output(0);
  }
  return w;
}

/// Adds to `block` the nodes whose results only it reads (the Shape of the
/// ids, Concat of sizes: nothing else needs them once it is replaced), then
/// checks that nothing but its output leaves it.
std::optional<MoeBlock> finishBlock(const GraphIndex &g, MoeBlock block,
                                    llvm::ArrayRef<const onnx::NodeProto *> nodes, int topk, std::string &why) {
  auto fail = [&](const std::string &reason) -> std::optional<MoeBlock> {
    why = reason;
    return std::nullopt;
  };
  for (const onnx::NodeProto *n : nodes)
    block.nodes.insert(g.indexOf(n));
  // The layer's operands stay outside, even where only the block reads them.
  llvm::StringSet<> operands = {block.x,
                                block.gateUp,
                                block.down,
                                block.routerWeight.name,
                                block.sharedGateProj.name,
                                block.sharedUpProj.name,
                                block.sharedDownProj.name,
                                block.sharedGate.name};
  if (block.gptOss)
    for (const std::string *name : {&block.gptOss->logits, &block.gptOss->upBias, &block.gptOss->downBias})
      operands.insert(*name);
  if (block.deepSeek)
    operands.insert(block.deepSeek->selectionBias);
  for (const std::vector<std::string> *names : {&block.expertGate, &block.expertUp, &block.expertDown})
    for (const std::string &name : *names)
      operands.insert(name);
  for (bool grew = true; grew;) {
    grew = false;
    for (int i = 0; i < g.graph.node_size(); ++i) {
      const onnx::NodeProto &n = g.graph.node(i);
      if (block.nodes.contains(i) || n.output_size() == 0)
        continue;
      bool servesBlock = llvm::all_of(n.output(), [&](const std::string &out) {
        return !g.graphOutputs.contains(out) && !operands.contains(out) && !g.users(out).empty() &&
               llvm::all_of(g.users(out), [&](int u) { return block.nodes.contains(u); });
      });
      if (servesBlock) {
        block.nodes.insert(i);
        grew = true;
      }
    }
  }
  for (int i : block.nodes)
    for (const std::string &out : g.graph.node(i).output()) {
      if (out == block.output)
        continue;
      if (g.graphOutputs.contains(out))
        return fail("'" + out + "' inside the block is a graph output");
      for (int u : g.users(out))
        if (!block.nodes.contains(u))
          return fail("'" + out + "' inside the block is also used by node '" + g.describe(u) + "'");
    }
  for (int i : block.nodes)
    if (i > block.last)
      return fail("a node of the block comes after its result");
  block.anchor = topk;
  return block;
}

/// One expert's rows in the per-expert loop form: the (token, slot) lists
/// NonZero gives for its mask.
struct ExpertRows {
  std::string token, slot;
};

/// NonZero(mask) split into its two rows by Gather(nz, 0) and Gather(nz, 1)
/// (axis 0): (first, second), or nullopt.
std::optional<std::pair<std::string, std::string>>
nonZeroRows(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef mask,
            llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *nz = g.onlyUser(mask, "NonZero");
  if (!nz)
    return std::nullopt;
  std::string rows[2];
  for (int u : g.users(nz->output(0))) {
    const onnx::NodeProto &gather = g.graph.node(u);
    std::optional<llvm::SmallVector<int64_t>> row = constants(gather.input_size() > 1 ? gather.input(1) : "");
    if (gather.op_type() != "Gather" || gather.input(0) != nz->output(0) || intAttr(gather, "axis", 0) != 0 ||
        !row || row->size() != 1 || ((*row)[0] != 0 && (*row)[0] != 1) || !rows[(*row)[0]].empty())
      return std::nullopt;
    rows[(*row)[0]] = gather.output(0);
    nodes.push_back(&gather);
  }
  if (rows[0].empty() || rows[1].empty())
    return std::nullopt;
  nodes.push_back(nz);
  return std::make_pair(rows[0], rows[1]);
}

/// The per-expert masks of the loop form, by expert id: OneHot(ids) ->
/// Transpose([2, 1, 0]) -> Gather(e) (NonZero rows: slot, token) or
/// Equal(ids, e) (token, slot). Empty when neither form is there.
std::map<int64_t, ExpertRows> expertMasks(const GraphIndex &g, const ConstantLookup &constants,
                                          llvm::StringRef ids, int64_t experts,
                                          llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why) {
  std::map<int64_t, ExpertRows> masks;
  auto add = [&](int64_t e, std::optional<std::pair<std::string, std::string>> rows, bool tokenFirst) {
    if (!rows || e < 0 || e >= experts || masks.count(e)) {
      why = "expert " + std::to_string(e) + "'s mask is not NonZero's (token, slot) lists of one expert";
      return false;
    }
    masks[e] = tokenFirst ? ExpertRows{rows->first, rows->second} : ExpertRows{rows->second, rows->first};
    return true;
  };
  for (int u : g.users(ids)) {
    const onnx::NodeProto &n = g.graph.node(u);
    if (n.op_type() == "OneHot" && n.input(0) == ids) {
      std::optional<llvm::SmallVector<int64_t>> depth = constants(n.input(1)), values = constants(n.input(2));
      const onnx::NodeProto *perm = g.onlyUser(n.output(0), "Transpose");
      llvm::SmallVector<int64_t> order;
      if (perm)
        for (const onnx::AttributeProto &a : perm->attribute())
          if (a.name() == "perm")
            order.assign(a.ints().begin(), a.ints().end());
      if (!depth || depth->size() != 1 || (*depth)[0] != experts || !values || values->size() != 2 ||
          (*values)[0] != 0 || (*values)[1] == 0 || intAttr(n, "axis", -1) != -1 || !perm ||
          order != llvm::SmallVector<int64_t>{2, 1, 0}) {
        why = "the one-hot expert mask is not one_hot(ids, E).permute(2, 1, 0)";
        return {};
      }
      nodes.append({&n, perm});
      for (int v : g.users(perm->output(0))) {
        const onnx::NodeProto &pick = g.graph.node(v);
        std::optional<llvm::SmallVector<int64_t>> e = constants(pick.input_size() > 1 ? pick.input(1) : "");
        if (pick.op_type() != "Gather" || intAttr(pick, "axis", 0) != 0 || !e || e->size() != 1) {
          why = "the one-hot expert mask is read other than one expert at a time";
          return {};
        }
        nodes.push_back(&pick);
        if (!add((*e)[0], nonZeroRows(g, constants, pick.output(0), nodes), /*tokenFirst=*/false))
          return {};
      }
    } else if (n.op_type() == "Equal") {
      std::string other = n.input(0) == ids ? n.input(1) : n.input(0);
      std::optional<llvm::SmallVector<int64_t>> e = constants(other);
      if (!e || e->size() != 1)
        continue;
      nodes.push_back(&n);
      if (!add((*e)[0], nonZeroRows(g, constants, n.output(0), nodes), /*tokenFirst=*/true))
        return {};
    }
  }
  return masks;
}

/// Matches the per-expert loop form anchored at TopK node `topk` (see the
/// top of the file). `why` is empty when there are no per-expert masks.
std::optional<MoeBlock> matchPerExpertBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                            std::string &why) {
  const onnx::NodeProto &t = g.graph.node(topk);
  MoeBlock block;
  llvm::SmallVector<const onnx::NodeProto *> nodes;
  std::optional<std::string> routed = matchRouting(g, constants, topk, block, nodes, why);
  std::optional<llvm::SmallVector<int64_t>> routerShape = routed ? constants.shape(block.routerWeight.name)
                                                                 : std::nullopt;
  if (!routed || !routerShape || routerShape->size() != 2)
    return std::nullopt;
  int64_t experts = (*routerShape)[block.routerWeight.rows ? 0 : 1];
  std::map<int64_t, ExpertRows> masks = expertMasks(g, constants, t.output(1), experts, nodes, why);
  if (masks.empty())
    return std::nullopt;
  auto fail = [&](const std::string &reason) -> std::optional<MoeBlock> {
    why = reason;
    return std::nullopt;
  };
  if (static_cast<int64_t>(masks.size()) != experts)
    return fail("the per-expert loop covers " + std::to_string(masks.size()) + " of the router's " +
                std::to_string(experts) + " experts");
  std::string w = *routed;
  auto other = [](const onnx::NodeProto &n, llvm::StringRef value) {
    return n.input(0) == value ? n.input(1) : n.input(0);
  };
  llvm::DenseMap<const onnx::NodeProto *, int64_t> scatterOf;
  block.expertGate.resize(experts);
  block.expertUp.resize(experts);
  block.expertDown.resize(experts);
  for (auto &[e, rows] : masks) {
    std::string expert = "expert " + std::to_string(e) + ": ";
    // rows = x[token]; silu(rows W1) * (rows W3); then W2.
    const onnx::NodeProto *gatherX = g.userOfType(rows.token, "Gather");
    if (!gatherX || !block.isX(gatherX->input(0)) || gatherX->input(1) != rows.token || intAttr(*gatherX, "axis", 0) != 0)
      return fail(expert + "its tokens' rows of x are not gathered");
    nodes.push_back(gatherX);
    std::string xRows = gatherX->output(0);
    llvm::SmallVector<const onnx::NodeProto *> projections;
    for (int u : g.users(xRows))
      projections.push_back(&g.graph.node(u));
    if (projections.size() != 2 ||
        llvm::any_of(projections, [&](const onnx::NodeProto *mm) {
          return mm->op_type() != "MatMul" || mm->input(0) != xRows || !g.isConstant(mm->input(1));
        }))
      return fail(expert + "its rows do not feed exactly two constant projections (gate, up)");
    const onnx::NodeProto *act = nullptr, *gateMM = nullptr, *upMM = nullptr;
    GateActivation kind = GateActivation::silu;
    for (int side = 0; side < 2 && !act; ++side) {
      act = matchGatedActivation(g, projections[side]->output(0), projections[1 - side]->output(0), kind, nodes);
      gateMM = projections[side];
      upMM = projections[1 - side];
    }
    if (!act)
      return fail(expert + "the activation is not SwiGLU or GeGLU (act(gate) * up)");
    if (e != masks.begin()->first && kind != block.activation)
      return fail(expert + "its activation differs from the other experts'");
    block.activation = kind;
    const onnx::NodeProto *downMM = g.onlyUser(act->output(0), "MatMul");
    if (!downMM || downMM->input(0) != act->output(0) || !g.isConstant(downMM->input(1)))
      return fail(expert + "the activation does not feed a constant down projection");
    nodes.append({gateMM, upMM, downMM});
    block.expertGate[e] = gateMM->input(1);
    block.expertUp[e] = upMM->input(1);
    block.expertDown[e] = downMM->input(1);
    // Scaled by the slot weight w[token, slot] and added at the token.
    const onnx::NodeProto *scale = g.onlyUser(downMM->output(0), "Mul");
    const onnx::NodeProto *weightCol = scale ? g.producer(other(*scale, downMM->output(0))) : nullptr;
    const onnx::NodeProto *picked = weightCol && weightCol->op_type() == "Unsqueeze" &&
                                            hasAxis(*weightCol, constants, -1)
                                        ? g.producer(weightCol->input(0))
                                        : nullptr;
    const onnx::NodeProto *pairs = picked && picked->op_type() == "GatherND" && picked->input(0) == w &&
                                           intAttr(*picked, "batch_dims", 0) == 0
                                       ? g.producer(picked->input(1))
                                       : nullptr;
    auto unsqueezedFrom = [&](llvm::StringRef value, llvm::StringRef from) -> const onnx::NodeProto * {
      const onnx::NodeProto *u = g.producer(value);
      return u && u->op_type() == "Unsqueeze" && u->input(0) == from && hasAxis(*u, constants, -1) ? u : nullptr;
    };
    int64_t concatAxis = pairs ? intAttr(*pairs, "axis", 0) : 0;
    const onnx::NodeProto *tokCol = pairs && pairs->op_type() == "Concat" && pairs->input_size() == 2 &&
                                            (concatAxis == -1 || concatAxis == 1)
                                        ? unsqueezedFrom(pairs->input(0), rows.token)
                                        : nullptr;
    const onnx::NodeProto *slotCol = tokCol ? unsqueezedFrom(pairs->input(1), rows.slot) : nullptr;
    if (!slotCol)
      return fail(expert + "its rows are not scaled by their slot weights w[token, slot]");
    const onnx::NodeProto *scatter = g.onlyUser(scale->output(0), "ScatterND");
    const onnx::NodeProto *where = scatter ? unsqueezedFrom(scatter->input(1), rows.token) : nullptr;
    bool adds = scatter && llvm::any_of(scatter->attribute(), [](const onnx::AttributeProto &a) {
                  return a.name() == "reduction" && a.s() == "add";
                });
    if (!where || !adds || scatter->input(2) != scale->output(0))
      return fail(expert + "its weighted rows are not added at their tokens (ScatterND add)");
    nodes.append({scale, weightCol, picked, pairs, tokCol, slotCol, scatter, where});
    scatterOf[scatter] = e;
  }
  // The scatters chain every expert once, from zeros shaped like x.
  const onnx::NodeProto *first = nullptr;
  int starts = 0;
  for (auto &[scatter, e] : scatterOf)
    if (!g.producer(scatter->input(0)) || g.producer(scatter->input(0))->op_type() != "ScatterND") {
      first = scatter;
      ++starts;
    }
  const onnx::NodeProto *zeros = starts == 1 ? g.producer(first->input(0)) : nullptr;
  const onnx::NodeProto *zerosShape = zeros ? g.producer(zeros->input(0)) : nullptr;
  if (!zeros || zeros->op_type() != "ConstantOfShape" || !llvm::all_of(zeros->attribute(), isZeroValue) ||
      !zerosShape || zerosShape->op_type() != "Shape" || !block.isX(zerosShape->input(0)))
    return fail("the experts' rows are not added into zeros shaped like x");
  nodes.append({zeros, zerosShape});
  const onnx::NodeProto *last = first;
  for (size_t visited = 1; visited < scatterOf.size(); ++visited) {
    const onnx::NodeProto *next = g.onlyUser(last->output(0), "ScatterND");
    if (!next || next->input(0) != last->output(0) || !scatterOf.count(next))
      return fail("the experts' ScatterND adds do not form one chain");
    last = next;
  }
  block.output = last->output(0);
  block.last = g.indexOf(last);
  return finishBlock(g, std::move(block), nodes, topk, why);
}

/// The per-slot operands of the batched forms: the gate weights `w` [T, k]
/// flattened and unsqueezed to scale each slot's row, and the expert ids
/// flattened (`ids`), after transformers' Clip into [0, E) if there is one.
struct SlotOperands {
  const onnx::NodeProto *scale = nullptr, *clip = nullptr;
  std::string ids;
};
std::optional<SlotOperands> matchSlotOperands(const GraphIndex &g, const ConstantLookup &constants,
                                              llvm::StringRef w, llvm::StringRef expertIds,
                                              llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why) {
  const onnx::NodeProto *flatW = g.onlyUser(w, "Reshape");
  const onnx::NodeProto *unsqW = flatW ? g.onlyUser(flatW->output(0), "Unsqueeze") : nullptr;
  if (!flatW || !unsqW || !hasAxis(*unsqW, constants, -1)) {
    why = "the gate weights do not feed a per-slot scale";
    return std::nullopt;
  }
  const onnx::NodeProto *flatIds = g.userOfType(expertIds, "Reshape");
  if (!flatIds) {
    why = "the expert ids are not flattened per slot";
    return std::nullopt;
  }
  nodes.append({flatW, unsqW, flatIds});
  SlotOperands slots{unsqW, g.onlyUser(flatIds->output(0), "Clip"), flatIds->output(0)};
  if (slots.clip) {
    nodes.push_back(slots.clip);
    slots.ids = slots.clip->output(0);
  }
  return slots;
}

/// True unless `clip` (on the expert ids) narrows them below [0, E), E the
/// experts of `weights`: then it is not the no-op transformers writes.
bool clipKeepsExperts(const ConstantLookup &constants, const onnx::NodeProto *clip, llvm::StringRef weights) {
  if (!clip)
    return true;
  std::optional<llvm::SmallVector<int64_t>> shape = constants.shape(weights);
  std::optional<llvm::SmallVector<int64_t>> lo = clip->input_size() > 1 ? constants(clip->input(1)) : std::nullopt;
  std::optional<llvm::SmallVector<int64_t>> hi = clip->input_size() > 2 ? constants(clip->input(2)) : std::nullopt;
  return shape && !shape->empty() && lo && lo->size() == 1 && (*lo)[0] <= 0 && hi && hi->size() == 1 &&
         (*hi)[0] >= (*shape)[0] - 1;
}

/// Matches the batched block anchored at TopK node `topk`. On failure
/// returns the reason in `why` (empty when the anchor itself does not
/// match: not MoE).
std::optional<MoeBlock> matchBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                   std::string &why) {
  const onnx::NodeProto &t = g.graph.node(topk);
  MoeBlock block;
  llvm::SmallVector<const onnx::NodeProto *> nodes;
  std::optional<std::string> routed = matchRouting(g, constants, topk, block, nodes, why);
  if (!routed)
    return std::nullopt;
  std::string w = *routed;
  auto fail = [&](llvm::StringRef reason) -> std::optional<MoeBlock> {
    why = reason.str();
    return std::nullopt;
  };
  // Gate weights per slot; expert ids, and the two gathered expert
  // weights: Gather(W, ids) or, as torch exports W[ids], GatherND(W,
  // Unsqueeze(ids, -1)).
  std::optional<SlotOperands> perSlot = matchSlotOperands(g, constants, w, t.output(1), nodes, why);
  if (!perSlot)
    return std::nullopt;
  const onnx::NodeProto *unsqW = perSlot->scale, *clip = perSlot->clip;
  std::string ids = perSlot->ids;
  const onnx::NodeProto *gather13 = nullptr, *gather2 = nullptr;
  auto addGather = [&](const onnx::NodeProto &n, llvm::StringRef index) {
    bool isGather = (n.op_type() == "Gather" && intAttr(n, "axis", 0) == 0) ||
                    (n.op_type() == "GatherND" && intAttr(n, "batch_dims", 0) == 0);
    if (!isGather || n.input(1) != index || !g.isConstant(n.input(0)) || (gather13 && gather2))
      return false;
    (gather13 ? gather2 : gather13) = &n;
    return true;
  };
  for (int i : g.users(ids)) {
    const onnx::NodeProto &n = g.graph.node(i);
    bool ok = n.op_type() == "Unsqueeze" ? hasAxis(n, constants, -1) : addGather(n, ids);
    if (n.op_type() == "Unsqueeze" && ok) {
      nodes.push_back(&n);
      for (int j : g.users(n.output(0)))
        ok = ok && g.graph.node(j).op_type() == "GatherND" && addGather(g.graph.node(j), n.output(0));
    }
    if (!ok)
      return fail("the expert ids index something other than constant expert weights");
  }
  if (!gather13 || !gather2)
    return fail("two gathered expert weights (gate/up and down) are expected");
  if (!clipKeepsExperts(constants, clip, gather13->input(0)))
    return fail("the expert ids are clipped to a range narrower than the experts");

  // gate/up GEMM on the slot rows: Squeeze(MatMul(W13[ids], Unsqueeze(rows, -1)), -1).
  auto gemmOf = [&](const onnx::NodeProto *gather) -> const onnx::NodeProto * {
    const onnx::NodeProto *mm = g.onlyUser(gather->output(0), "MatMul");
    return mm && mm->input(0) == gather->output(0) ? mm : nullptr;
  };
  const onnx::NodeProto *mm13 = gemmOf(gather13), *mm2 = gemmOf(gather2);
  if (!mm13 || !mm2)
    return fail("the gathered weights do not feed batched MatMuls");
  // Which gather is gate/up: the one whose MatMul reads the slot rows.
  // Each slot's token: Reshape(Expand(Unsqueeze(Range(0, T, 1), [1]), ..), [-1])
  // with T = Shape(x)[0]: row t * k + j -> t.
  auto isSlotTokens = [&](llvm::StringRef value, llvm::SmallVector<const onnx::NodeProto *> &chain) {
    const onnx::NodeProto *flat = g.producer(value);
    const onnx::NodeProto *expand = flat && flat->op_type() == "Reshape" ? g.producer(flat->input(0)) : nullptr;
    const onnx::NodeProto *unsq = expand && expand->op_type() == "Expand" ? g.producer(expand->input(0)) : nullptr;
    const onnx::NodeProto *range = unsq && unsq->op_type() == "Unsqueeze" ? g.producer(unsq->input(0)) : nullptr;
    if (!range || range->op_type() != "Range" || !hasAxis(*unsq, constants, 1))
      return false;
    std::optional<llvm::SmallVector<int64_t>> start = constants(range->input(0)), step = constants(range->input(2)),
                                              flatShape = constants(flat->input(1));
    const onnx::NodeProto *count = g.producer(range->input(1));
    const onnx::NodeProto *shape = count && count->op_type() == "Gather" ? g.producer(count->input(0)) : nullptr;
    std::optional<llvm::SmallVector<int64_t>> dim = count ? constants(count->input(1)) : std::nullopt;
    if (!start || (*start)[0] != 0 || !step || (*step)[0] != 1 || !flatShape || flatShape->size() != 1 ||
        (*flatShape)[0] != -1 || !shape || shape->op_type() != "Shape" || !block.isX(shape->input(0)) || !dim ||
        (*dim)[0] != 0)
      return false;
    chain.append({flat, expand, unsq, range, count, shape});
    return true;
  };
  std::string slotTokens;
  auto isRowsOfX = [&](const onnx::NodeProto *mm, llvm::SmallVector<const onnx::NodeProto *> &chain) {
    const onnx::NodeProto *unsqRows = g.producer(mm->input(1));
    if (!unsqRows || unsqRows->op_type() != "Unsqueeze" || !hasAxis(*unsqRows, constants, -1))
      return false;
    // x[token of each slot] (transformers' batched experts).
    if (const onnx::NodeProto *gather = g.producer(unsqRows->input(0));
        gather && gather->op_type() == "Gather" && block.isX(gather->input(0)) && intAttr(*gather, "axis", 0) == 0) {
      llvm::SmallVector<const onnx::NodeProto *> tokenChain;
      if (!isSlotTokens(gather->input(1), tokenChain))
        return false;
      slotTokens = gather->input(1);
      chain.append({unsqRows, gather});
      chain.append(tokenChain.begin(), tokenChain.end());
      return true;
    }
    // x repeated k times: Reshape(Expand(Unsqueeze(x, 1), ..), ..).
    const onnx::NodeProto *reshape = g.producer(unsqRows->input(0));
    const onnx::NodeProto *expand = reshape ? g.producer(reshape->input(0)) : nullptr;
    const onnx::NodeProto *unsqX = expand ? g.producer(expand->input(0)) : nullptr;
    if (!reshape || reshape->op_type() != "Reshape" || !expand || expand->op_type() != "Expand" || !unsqX ||
        unsqX->op_type() != "Unsqueeze" || !block.isX(unsqX->input(0)) || !hasAxis(*unsqX, constants, 1))
      return false;
    chain.append({unsqRows, reshape, expand, unsqX});
    return true;
  };
  llvm::SmallVector<const onnx::NodeProto *> rowsChain;
  if (!isRowsOfX(mm13, rowsChain)) {
    std::swap(gather13, gather2);
    std::swap(mm13, mm2);
    if (!isRowsOfX(mm13, rowsChain))
      return fail("no expert GEMM reads the token rows (x repeated once per slot)");
  }
  block.gateUp = gather13->input(0);
  block.down = gather2->input(0);
  nodes.append({gather13, gather2, mm13, mm2});
  nodes.append(rowsChain.begin(), rowsChain.end());

  const onnx::NodeProto *squeezeH = g.onlyUser(mm13->output(0), "Squeeze");
  const onnx::NodeProto *split = squeezeH ? g.onlyUser(squeezeH->output(0), "Split") : nullptr;
  // h is [slots, 2I]: its last axis is -1 or 1.
  if (!squeezeH || !hasAxis(*squeezeH, constants, -1) || !split || split->output_size() != 2 ||
      (intAttr(*split, "axis", 0) != -1 && intAttr(*split, "axis", 0) != 1))
    return fail("the gate/up result is not split in two halves along the last axis");
  if (split->input_size() > 1) {
    std::optional<llvm::SmallVector<int64_t>> parts = constants(split->input(1));
    if (!parts || parts->size() != 2 || (*parts)[0] != (*parts)[1])
      return fail("the gate/up split is not into two equal halves");
  }
  nodes.append({squeezeH, split});
  const onnx::NodeProto *mulU =
      matchGatedActivation(g, split->output(0), split->output(1), block.activation, nodes);
  if (!mulU)
    return fail("the activation is not SwiGLU or GeGLU (act(gate) * up)");
  const onnx::NodeProto *unsqA = g.onlyUser(mulU->output(0), "Unsqueeze");
  if (!unsqA || !hasAxis(*unsqA, constants, -1) || mm2->input(1) != unsqA->output(0))
    return fail("the activation does not feed the down GEMM");
  nodes.push_back(unsqA);

  // Down GEMM, scaled by the gate weights, summed over each token's slots.
  const onnx::NodeProto *squeezeO = g.onlyUser(mm2->output(0), "Squeeze");
  const onnx::NodeProto *scale = squeezeO ? g.onlyUser(squeezeO->output(0), "Mul") : nullptr;
  if (!squeezeO || !hasAxis(*squeezeO, constants, -1) || !scale ||
      !llvm::is_contained(scale->input(), unsqW->output(0)))
    return fail("the down GEMM's rows are not scaled by their gate weights");
  nodes.append({squeezeO, scale});
  // Summed per token: ReduceSum over the slots of [T, k, H], or added into
  // zeros at each slot's token (ScatterND add, index_add_ exported).
  if (const onnx::NodeProto *scatter = g.onlyUser(scale->output(0), "ScatterND")) {
    const onnx::NodeProto *where = g.producer(scatter->input(1));
    const onnx::NodeProto *zeros = g.producer(scatter->input(0));
    const onnx::NodeProto *zerosShape = zeros ? g.producer(zeros->input(0)) : nullptr;
    llvm::SmallVector<const onnx::NodeProto *> tokenChain;
    bool zeroFill = zeros && zeros->op_type() == "ConstantOfShape" && zerosShape &&
                    zerosShape->op_type() == "Shape" && block.isX(zerosShape->input(0)) &&
                    llvm::all_of(zeros->attribute(), isZeroValue);
    if (scatter->input(2) != scale->output(0) ||
        [&] {
          for (const onnx::AttributeProto &a : scatter->attribute())
            if (a.name() == "reduction")
              return a.s() != "add";
          return true;
        }() ||
        !where || where->op_type() != "Unsqueeze" || !hasAxis(*where, constants, -1) || !zeroFill ||
        !(where->input(0) == slotTokens || isSlotTokens(where->input(0), tokenChain)))
      return fail("the weighted rows are not added at their tokens into zeros");
    nodes.append({scatter, where, zeros, zerosShape});
    nodes.append(tokenChain.begin(), tokenChain.end());
    block.output = scatter->output(0);
    block.last = g.indexOf(scatter);
  } else {
    const onnx::NodeProto *slots = g.onlyUser(scale->output(0), "Reshape");
    const onnx::NodeProto *combine = slots ? g.onlyUser(slots->output(0), "ReduceSum") : nullptr;
    std::optional<llvm::SmallVector<int64_t>> slotShape = slots ? constants(slots->input(1)) : std::nullopt;
    if (!combine || !hasAxis(*combine, constants, 1) || intAttr(*combine, "keepdims", 1) != 0 || !slotShape ||
        slotShape->size() != 3 || (*slotShape)[1] != block.k)
      return fail("the weighted rows are not summed per token over the k slots");
    nodes.append({slots, combine});
    block.output = combine->output(0);
    block.last = g.indexOf(combine);
  }
  matchSharedExpert(g, block, nodes);
  return finishBlock(g, std::move(block), nodes, topk, why);
}

/// Matches gpt-oss's block (transformers' GptOssExperts, batched_mm)
/// anchored at TopK node `topk`:
///
///   w, e = TopK(logits, k); w = Softmax(w)                (picks, then softmax)
///   rows = Reshape(Expand(Unsqueeze(x, 1), ..), [-1, H])
///   h = Squeeze(MatMul(Unsqueeze(rows, 1), W13[ids]), 1) + b13[ids]
///   g, u = Slice(h, 0::2), Slice(h, 1::2) along the last axis
///   a = (Clip(u, -L, L) + β) · (g' · Sigmoid(g' · α)), g' = Clip(g, max = L)
///   o = Squeeze(MatMul(Unsqueeze(a, 1), W2[ids]), 1) + b2[ids]
///   y = ReduceSum(Reshape(o · Unsqueeze(Reshape(w, [-1]), -1), [-1, k, H]), 1)
///
/// with W[ids] as in matchBlock and an Unsqueeze/Squeeze pair allowed after
/// each bias. The logits stay outside (any computation of them).
std::optional<MoeBlock> matchGptOssBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                         std::string &why) {
  const onnx::NodeProto &t = g.graph.node(topk);
  why.clear();
  MoeBlock block;
  MoeBlock::GptOss oss;
  llvm::SmallVector<const onnx::NodeProto *> nodes = {&t};
  const onnx::NodeProto *softmax = g.onlyUser(t.output(0), "Softmax");
  std::optional<llvm::SmallVector<int64_t>> k = constants(t.input(1));
  if (!softmax || t.output_size() != 2 || !k || k->size() != 1 || intAttr(t, "largest", 1) != 1 ||
      intAttr(t, "sorted", 1) != 1 || intAttr(t, "axis", -1) != -1)
    return std::nullopt;
  auto fail = [&](llvm::StringRef reason) -> std::optional<MoeBlock> {
    why = reason.str();
    return std::nullopt;
  };
  // Rank-2 picks [T, k]: the softmax is over axis 1 = -1.
  if (intAttr(*softmax, "axis", -1) != -1 && intAttr(*softmax, "axis", -1) != 1)
    return fail("the softmax over the picks is not over the last axis");
  block.k = (*k)[0];
  oss.logits = t.input(0);
  nodes.push_back(softmax);
  auto scalar = [&](llvm::StringRef name) -> std::optional<float> {
    std::optional<std::vector<float>> v = constants.floats ? constants.floats(name) : std::nullopt;
    return v && v->size() == 1 ? std::optional<float>((*v)[0]) : std::nullopt;
  };
  auto otherOperand = [](const onnx::NodeProto &n, llvm::StringRef value) -> std::string {
    return n.input(0) == value ? n.input(1) : n.input(0);
  };
  // Gate weights per slot; expert ids -> the four gathered expert tensors
  // (weights rank 3, biases rank 2).
  std::optional<SlotOperands> perSlot =
      matchSlotOperands(g, constants, softmax->output(0), t.output(1), nodes, why);
  if (!perSlot)
    return std::nullopt;
  const onnx::NodeProto *unsqW = perSlot->scale, *clip = perSlot->clip;
  std::string ids = perSlot->ids;
  llvm::SmallVector<const onnx::NodeProto *> weightGathers, biasGathers;
  for (int i : g.users(ids)) {
    const onnx::NodeProto &n = g.graph.node(i);
    llvm::SmallVector<const onnx::NodeProto *> gathers;
    if (n.op_type() == "Unsqueeze" && hasAxis(n, constants, -1)) {
      nodes.push_back(&n);
      for (int j : g.users(n.output(0)))
        gathers.push_back(&g.graph.node(j));
    } else {
      gathers.push_back(&n);
    }
    for (const onnx::NodeProto *gather : gathers) {
      bool isGather = (gather->op_type() == "Gather" && intAttr(*gather, "axis", 0) == 0 && gather->input(1) == ids) ||
                      (gather->op_type() == "GatherND" && intAttr(*gather, "batch_dims", 0) == 0);
      std::optional<llvm::SmallVector<int64_t>> shape =
          isGather && g.isConstant(gather->input(0)) ? constants.shape(gather->input(0)) : std::nullopt;
      if (!shape || (shape->size() != 3 && shape->size() != 2))
        return fail("the expert ids index something other than constant expert weights and biases");
      (shape->size() == 3 ? weightGathers : biasGathers).push_back(gather);
    }
  }
  if (weightGathers.size() != 2 || biasGathers.size() != 2)
    return fail("two gathered expert weights and two biases are expected");
  nodes.append(weightGathers.begin(), weightGathers.end());
  nodes.append(biasGathers.begin(), biasGathers.end());
  // x @ W[ids] + b[ids] on `lhs` rows [S, in]: Squeeze(MatMul(Unsqueeze(lhs, 1),
  // W[ids]), 1) + b[ids], optionally Unsqueeze(1)/Squeeze(1) after. Returns
  // the result value and the weight's and bias's gathers, or empty.
  auto expertLinear = [&](const onnx::NodeProto *gatherW, std::string &lhs, const onnx::NodeProto *&gatherB,
                          llvm::SmallVector<const onnx::NodeProto *> &chain) -> std::string {
    const onnx::NodeProto *mm = g.onlyUser(gatherW->output(0), "MatMul");
    const onnx::NodeProto *unsq = mm && mm->input(1) == gatherW->output(0) ? g.producer(mm->input(0)) : nullptr;
    const onnx::NodeProto *sq = mm ? g.onlyUser(mm->output(0), "Squeeze") : nullptr;
    const onnx::NodeProto *add = sq ? g.onlyUser(sq->output(0), "Add") : nullptr;
    if (!unsq || unsq->op_type() != "Unsqueeze" || !hasAxis(*unsq, constants, 1) || !hasAxis(*sq, constants, 1) || !add)
      return "";
    std::string bias = otherOperand(*add, sq->output(0));
    gatherB = nullptr;
    for (const onnx::NodeProto *b : biasGathers)
      if (b->output(0) == bias)
        gatherB = b;
    if (!gatherB)
      return "";
    lhs = unsq->input(0);
    chain.append({mm, unsq, sq, add});
    std::string out = add->output(0);
    if (const onnx::NodeProto *u2 = g.onlyUser(out, "Unsqueeze"); u2 && hasAxis(*u2, constants, 1))
      if (const onnx::NodeProto *s2 = g.onlyUser(u2->output(0), "Squeeze"); s2 && hasAxis(*s2, constants, 1)) {
        chain.append({u2, s2});
        out = s2->output(0);
      }
    return out;
  };
  // Which weight is gate/up: the one whose GEMM reads x repeated per slot.
  const onnx::NodeProto *gather13 = nullptr, *gather2 = nullptr, *bias13 = nullptr, *bias2 = nullptr;
  std::string h, rowsValue;
  for (int first = 0; first < 2 && h.empty(); ++first) {
    llvm::SmallVector<const onnx::NodeProto *> chain;
    std::string lhs;
    const onnx::NodeProto *bias = nullptr;
    std::string out = expertLinear(weightGathers[first], lhs, bias, chain);
    const onnx::NodeProto *reshape = out.empty() ? nullptr : g.producer(lhs);
    const onnx::NodeProto *expand = reshape && reshape->op_type() == "Reshape" ? g.producer(reshape->input(0)) : nullptr;
    const onnx::NodeProto *unsqX = expand && expand->op_type() == "Expand" ? g.producer(expand->input(0)) : nullptr;
    if (!unsqX || unsqX->op_type() != "Unsqueeze" || !hasAxis(*unsqX, constants, 1))
      continue;
    block.x = unsqX->input(0);
    chain.append({reshape, expand, unsqX});
    nodes.append(chain.begin(), chain.end());
    gather13 = weightGathers[first];
    gather2 = weightGathers[1 - first];
    bias13 = bias;
    h = out;
  }
  if (h.empty())
    return fail("no expert GEMM with bias reads the token rows (x repeated once per slot)");
  // Gate and up: alternate columns of h.
  const onnx::NodeProto *gateSlice = nullptr, *upSlice = nullptr;
  for (int i : g.users(h)) {
    const onnx::NodeProto &n = g.graph.node(i);
    std::optional<llvm::SmallVector<int64_t>> start = n.input_size() == 5 ? constants(n.input(1)) : std::nullopt,
                                              end = start ? constants(n.input(2)) : std::nullopt,
                                              axes = start ? constants(n.input(3)) : std::nullopt,
                                              steps = start ? constants(n.input(4)) : std::nullopt;
    if (n.op_type() != "Slice" || !start || !end || !axes || !steps || start->size() != 1 ||
        (*end)[0] < (int64_t{1} << 31) || ((*axes)[0] != 1 && (*axes)[0] != -1) || (*steps)[0] != 2 ||
        (*start)[0] > 1)
      return fail("the gate/up result is not split into alternate columns");
    ((*start)[0] == 0 ? gateSlice : upSlice) = &n;
  }
  if (!gateSlice || !upSlice)
    return fail("the gate/up result is not split into alternate columns");
  nodes.append({gateSlice, upSlice});
  // Clamps: gate to at most L, up to [-L, L] (both or neither).
  std::string gate = gateSlice->output(0), up = upSlice->output(0);
  const onnx::NodeProto *gateClip = g.onlyUser(gate, "Clip"), *upClip = g.onlyUser(up, "Clip");
  if (gateClip || upClip) {
    auto bound = [&](const onnx::NodeProto *clip, int input) {
      return clip && clip->input_size() == 3 && !clip->input(input).empty() ? scalar(clip->input(input))
                                                                             : std::nullopt;
    };
    std::optional<float> gateMax = bound(gateClip, 2), upMin = bound(upClip, 1), upMax = bound(upClip, 2);
    float limit = gateMax.value_or(0.0f);
    if (!gateMax || bound(gateClip, 1) || upMin != -limit || upMax != limit || !(limit > 0))
      return fail("the gate and up clamps are not min(g, L) and clamp(u, -L, L)");
    oss.limit = limit;
    nodes.append({gateClip, upClip});
    gate = gateClip->output(0);
    up = upClip->output(0);
  }
  // glu = g · Sigmoid(g · α); a = (u + β) · glu.
  const onnx::NodeProto *scaled = nullptr, *glu = nullptr;
  for (int i : g.users(gate)) {
    const onnx::NodeProto &n = g.graph.node(i);
    if (n.op_type() != "Mul")
      return fail("the gate is not g · sigmoid(α g)");
    const onnx::NodeProto *sig = g.producer(otherOperand(n, gate));
    if (sig && sig->op_type() == "Sigmoid")
      glu = &n;
    else
      scaled = &n;
  }
  const onnx::NodeProto *sigmoid = glu ? g.producer(otherOperand(*glu, gate)) : nullptr;
  std::optional<float> alpha = scaled ? scalar(otherOperand(*scaled, gate)) : std::nullopt;
  if (!glu || !scaled || !alpha || sigmoid->input(0) != scaled->output(0))
    return fail("the gate is not g · sigmoid(α g)");
  oss.alpha = *alpha;
  const onnx::NodeProto *addBeta = g.onlyUser(up, "Add");
  std::optional<float> beta = addBeta ? scalar(otherOperand(*addBeta, up)) : std::nullopt;
  const onnx::NodeProto *product = addBeta ? g.onlyUser(addBeta->output(0), "Mul") : nullptr;
  if (!beta || !product || otherOperand(*product, addBeta->output(0)) != glu->output(0))
    return fail("the activation is not (u + β) · glu");
  oss.beta = *beta;
  nodes.append({scaled, sigmoid, glu, addBeta, product});
  // Down GEMM with bias on the activation.
  llvm::SmallVector<const onnx::NodeProto *> chain;
  std::string lhs;
  std::string o = expertLinear(gather2, lhs, bias2, chain);
  if (o.empty() || lhs != product->output(0) || bias2 == bias13)
    return fail("the activation does not feed the down GEMM with its bias");
  nodes.append(chain.begin(), chain.end());
  // Scaled by the gate weights, summed over each token's k slots.
  const onnx::NodeProto *scale = g.onlyUser(o, "Mul");
  const onnx::NodeProto *slots = scale ? g.onlyUser(scale->output(0), "Reshape") : nullptr;
  const onnx::NodeProto *combine = slots ? g.onlyUser(slots->output(0), "ReduceSum") : nullptr;
  std::optional<llvm::SmallVector<int64_t>> slotShape = slots ? constants(slots->input(1)) : std::nullopt;
  if (!scale || otherOperand(*scale, o) != unsqW->output(0) || !combine || !hasAxis(*combine, constants, 1) ||
      intAttr(*combine, "keepdims", 1) != 0 || !slotShape || slotShape->size() != 3 || (*slotShape)[1] != block.k)
    return fail("the weighted rows are not summed per token over the k slots");
  nodes.append({scale, slots, combine});
  block.gateUp = gather13->input(0);
  block.down = gather2->input(0);
  oss.upBias = bias13->input(0);
  oss.downBias = bias2->input(0);
  block.gptOss = oss;
  block.output = combine->output(0);
  block.last = g.indexOf(combine);
  if (!clipKeepsExperts(constants, clip, block.gateUp))
    return fail("the expert ids are clipped to a range narrower than the experts");
  return finishBlock(g, std::move(block), nodes, topk, why);
}

} // namespace

std::vector<MoeBlock> mlir::moe::onnx_import::findMoeBlocks(const onnx::GraphProto &graph,
                                                            const ConstantLookup &constants,
                                                            std::vector<std::pair<int, std::string>> &nearMisses) {
  GraphIndex index(graph, [&](llvm::StringRef name) { return constants.isConstant(name); });
  std::vector<MoeBlock> blocks;
  for (int i = 0; i < graph.node_size(); ++i) {
    if (graph.node(i).op_type() != "TopK" || !(graph.node(i).domain().empty() || graph.node(i).domain() == "ai.onnx"))
      continue;
    std::string why, whyLoop, whyGptOss;
    if (std::optional<MoeBlock> block = matchBlock(index, constants, i, why))
      blocks.push_back(std::move(*block));
    else if (std::optional<MoeBlock> loop = matchPerExpertBlock(index, constants, i, whyLoop))
      blocks.push_back(std::move(*loop));
    else if (std::optional<MoeBlock> oss = matchGptOssBlock(index, constants, i, whyGptOss))
      blocks.push_back(std::move(*oss));
    else if (!whyLoop.empty() || !why.empty() || !whyGptOss.empty())
      nearMisses.push_back({i, !whyLoop.empty() ? whyLoop : !why.empty() ? why : whyGptOss});
  }
  return blocks;
}
