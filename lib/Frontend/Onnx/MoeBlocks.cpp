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
// one moe.layer; a sigmoid-gated shared expert added to y (Qwen2-MoE) joins
// it as the layer's shared expert. Everything is checked: a block that looks like MoE but
// differs anywhere (another activation, a value used outside the block, a
// weight that is not a constant) stays plain ops, with a remark saying why.
//
//===----------------------------------------------------------------------===//

#include "MoeBlocks.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringMap.h"

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

/// x @ W with W constant: W's name, or empty.
std::string constantMatMulOf(const GraphIndex &g, llvm::StringRef value, llvm::StringRef x,
                             llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *mm = g.producer(value);
  if (!mm || mm->op_type() != "MatMul" || mm->input(0) != x || !g.isConstant(mm->input(1)))
    return "";
  nodes.push_back(mm);
  return mm->input(1);
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
  std::string gate, down;
  for (int side = 0; side < 2 && gate.empty(); ++side) {
    const onnx::NodeProto *sigmoid = g.producer(weighted->input(side));
    if (!sigmoid || sigmoid->op_type() != "Sigmoid")
      continue;
    llvm::SmallVector<const onnx::NodeProto *> gateNodes = {sigmoid};
    std::string w = constantMatMulOf(g, sigmoid->input(0), block.x, gateNodes);
    const onnx::NodeProto *out = g.producer(weighted->input(1 - side));
    if (w.empty() || !out || out->op_type() != "MatMul" || !g.isConstant(out->input(1)))
      continue;
    gate = w;
    down = out->input(1);
    found.append(gateNodes.begin(), gateNodes.end());
    found.push_back(out);
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
    std::string gateProj = constantMatMulOf(g, pre, block.x, expertNodes);
    std::string upProj = constantMatMulOf(g, act->input(1 - side), block.x, expertNodes);
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

/// A ConstantOfShape attribute that leaves the fill 0 (absent: 0.0).
bool isZeroValue(const onnx::AttributeProto &a) {
  if (a.name() != "value")
    return true;
  const onnx::TensorProto &t = a.t();
  auto zero = [](const auto &field) { return llvm::all_of(field, [](auto v) { return v == 0; }); };
  return t.raw_data().find_first_not_of('\0') == std::string::npos && zero(t.float_data()) &&
         zero(t.int32_data()) && zero(t.int64_data()) && zero(t.double_data());
}

/// Matches the block anchored at TopK node `topk`. On failure returns the
/// reason in `why` (empty when the anchor itself does not match: not MoE).
std::optional<MoeBlock> matchBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                   std::string &why) {
  const onnx::NodeProto &t = g.graph.node(topk);
  why.clear();
  // Anchor: TopK(Softmax(MatMul(x, Wr))), Wr constant.
  const onnx::NodeProto *softmax = g.producer(t.input(0));
  if (!softmax || softmax->op_type() != "Softmax" || t.output_size() != 2)
    return std::nullopt;
  const onnx::NodeProto *router = g.producer(softmax->input(0));
  if (!router || router->op_type() != "MatMul" || !g.isConstant(router->input(1)))
    return std::nullopt;
  MoeBlock block;
  auto fail = [&](llvm::StringRef reason) -> std::optional<MoeBlock> {
    why = reason.str();
    return std::nullopt;
  };
  block.x = router->input(0);
  block.routerWeight = router->input(1);
  std::optional<llvm::SmallVector<int64_t>> k = constants(t.input(1));
  if (!k || k->size() != 1)
    return fail("K is not a constant");
  block.k = (*k)[0];
  if (intAttr(t, "largest", 1) != 1 || intAttr(t, "sorted", 1) != 1 || intAttr(*softmax, "axis", -1) != -1 ||
      intAttr(t, "axis", -1) != -1)
    return fail("the softmax or top-k is not over the last axis, largest first");
  llvm::SmallVector<const onnx::NodeProto *> nodes = {router, softmax, &t};

  // Gate weights, optionally renormalised, flattened per slot.
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
  const onnx::NodeProto *flatW = g.onlyUser(w, "Reshape");
  const onnx::NodeProto *unsqW = flatW ? g.onlyUser(flatW->output(0), "Unsqueeze") : nullptr;
  if (!flatW || !unsqW || !hasAxis(*unsqW, constants, -1))
    return fail("the gate weights do not feed a per-slot scale");
  nodes.append({flatW, unsqW});

  // Expert ids, and the two gathered expert weights.
  const onnx::NodeProto *flatIds = g.userOfType(t.output(1), "Reshape");
  if (!flatIds)
    return fail("the expert ids are not flattened per slot");
  nodes.push_back(flatIds);
  const onnx::NodeProto *gather13 = nullptr, *gather2 = nullptr;
  for (int i : g.users(flatIds->output(0))) {
    const onnx::NodeProto &n = g.graph.node(i);
    if (n.op_type() != "Gather" || intAttr(n, "axis", 0) != 0 || n.input(1) != flatIds->output(0) ||
        !g.isConstant(n.input(0)))
      return fail("the expert ids index something other than constant expert weights");
    (gather13 ? gather2 : gather13) = &n;
  }
  if (!gather13 || !gather2)
    return fail("two gathered expert weights (gate/up and down) are expected");

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
        (*flatShape)[0] != -1 || !shape || shape->op_type() != "Shape" || shape->input(0) != block.x || !dim ||
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
        gather && gather->op_type() == "Gather" && gather->input(0) == block.x && intAttr(*gather, "axis", 0) == 0) {
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
        unsqX->op_type() != "Unsqueeze" || unsqX->input(0) != block.x || !hasAxis(*unsqX, constants, 1))
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
  if (!squeezeH || !hasAxis(*squeezeH, constants, -1) || !split || split->output_size() != 2 ||
      intAttr(*split, "axis", 0) != -1)
    return fail("the gate/up result is not split in two halves along the last axis");
  if (split->input_size() > 1) {
    std::optional<llvm::SmallVector<int64_t>> parts = constants(split->input(1));
    if (!parts || parts->size() != 2 || (*parts)[0] != (*parts)[1])
      return fail("the gate/up split is not into two equal halves");
  }
  nodes.append({squeezeH, split});
  // SwiGLU: Mul(Mul(g, Sigmoid(g)), u) (either operand order).
  std::string gate = split->output(0), up = split->output(1);
  const onnx::NodeProto *sigmoid = g.userOfType(gate, "Sigmoid");
  const onnx::NodeProto *mulG = g.userOfType(gate, "Mul");
  if (!sigmoid || !mulG || g.users(gate).size() != 2 ||
      !llvm::is_contained(mulG->input(), sigmoid->output(0)))
    return fail("the activation is not SwiGLU (gate * sigmoid(gate) * up)");
  const onnx::NodeProto *mulU = g.onlyUser(mulG->output(0), "Mul");
  if (!mulU || !llvm::is_contained(mulU->input(), up) || g.users(up).size() != 1)
    return fail("the activation is not SwiGLU (gate * sigmoid(gate) * up)");
  nodes.append({sigmoid, mulG, mulU});
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
                    zerosShape->op_type() == "Shape" && zerosShape->input(0) == block.x &&
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

  // Nodes whose results only the block reads (the Shape of the ids, Concat
  // of sizes) go with it: nothing else needs them once it is replaced. Then
  // nothing but the output may leave the block.
  for (const onnx::NodeProto *n : nodes)
    block.nodes.insert(g.indexOf(n));
  for (bool grew = true; grew;) {
    grew = false;
    for (int i = 0; i < g.graph.node_size(); ++i) {
      const onnx::NodeProto &n = g.graph.node(i);
      if (block.nodes.contains(i) || n.output_size() == 0)
        continue;
      bool servesBlock = llvm::all_of(n.output(), [&](const std::string &out) {
        return !g.graphOutputs.contains(out) && !g.users(out).empty() &&
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

} // namespace

std::vector<MoeBlock> mlir::moe::onnx_import::findMoeBlocks(const onnx::GraphProto &graph,
                                                            const ConstantLookup &constants,
                                                            std::vector<std::pair<int, std::string>> &nearMisses) {
  GraphIndex index(graph, [&](llvm::StringRef name) { return constants.isConstant(name); });
  std::vector<MoeBlock> blocks;
  for (int i = 0; i < graph.node_size(); ++i) {
    if (graph.node(i).op_type() != "TopK" || !(graph.node(i).domain().empty() || graph.node(i).domain() == "ai.onnx"))
      continue;
    std::string why;
    if (std::optional<MoeBlock> block = matchBlock(index, constants, i, why))
      blocks.push_back(std::move(*block));
    else if (!why.empty())
      nearMisses.push_back({i, why});
  }
  return blocks;
}
