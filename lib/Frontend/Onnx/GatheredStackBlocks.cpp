//===- GatheredStackBlocks.cpp - the routed experts' weights gathered -----===//
//
// Decode-style MoE code (gpt-fast's MOEFeedForward and its ports) gathers
// the routed experts' weights per token and contracts them with einsums:
//
//   w, ids = routing (matchRouting)
//   G(W)   = Gather(W, ids, axis 0) or GatherND(W, Unsqueeze(ids, -1))     W [E, a, b]
//   h      = Einsum("td,tk..->tk.", x, G(Wg)) (d contracted with a or b)
//   a      = act(h) * Einsum(x, G(Wu))
//   o      = Einsum("tkh,tk..->tk.", a, G(Wd))
//   y      = Einsum("tkd,tk->td", o, w)                     (either order)
//            or ReduceSum(o * Unsqueeze(w, -1), 1)
//
// Each step is checked by its einsum labels, not by letters. The layer
// takes the three stacks as they are (BlockImport stacks gate and up).
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace mlir::moe::onnx_import::blocks {

namespace {

/// An einsum equation "a,b->c" as its labels; nullopt for other forms
/// (ellipses, more operands, no output).
struct Labels {
  std::string lhs, rhs, out;
};
std::optional<Labels> einsumLabels(const onnx::NodeProto &n) {
  std::string eq;
  for (const onnx::AttributeProto &a : n.attribute())
    if (a.name() == "equation")
      eq = a.s();
  eq.erase(std::remove(eq.begin(), eq.end(), ' '), eq.end());
  size_t comma = eq.find(','), arrow = eq.find("->");
  if (n.op_type() != "Einsum" || n.input_size() != 2 || comma == std::string::npos || arrow == std::string::npos ||
      comma > arrow || eq.find('.') != std::string::npos)
    return std::nullopt;
  return Labels{eq.substr(0, comma), eq.substr(comma + 1, arrow - comma - 1), eq.substr(arrow + 2)};
}

/// The constant stack W a value gathers per (token, slot) by `ids`.
std::string gatheredStack(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef value,
                          llvm::StringRef ids, llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *gather = g.producer(value);
  if (!gather)
    return "";
  bool byIds = gather->op_type() == "Gather" && intAttr(*gather, "axis", 0) == 0 && inputOf(*gather, 1) == ids;
  const onnx::NodeProto *column = nullptr;
  if (gather->op_type() == "GatherND" && intAttr(*gather, "batch_dims", 0) == 0) {
    column = g.producer(inputOf(*gather, 1));
    byIds = column && column->op_type() == "Unsqueeze" && inputOf(*column, 0) == ids &&
            (hasAxis(*column, constants, -1) || hasAxis(*column, constants, 2));
  }
  std::optional<llvm::SmallVector<int64_t>> shape = byIds ? constants.shape(inputOf(*gather, 0)) : std::nullopt;
  if (!byIds || !g.isConstant(inputOf(*gather, 0)) || !shape || shape->size() != 3)
    return "";
  nodes.push_back(gather);
  if (column)
    nodes.push_back(column);
  return inputOf(*gather, 0);
}

/// One gathered projection: Einsum(a, G(W)) with a [t, (k,) in] and the
/// result [t, k, out]. Sets the stack and whether W is [E, out, in] (rows).
struct Projection {
  std::string stack;
  bool rows = false;
};
std::optional<Projection> gatheredProjection(const GraphIndex &g, const ConstantLookup &constants,
                                             const onnx::NodeProto &einsum, llvm::StringRef a, llvm::StringRef ids,
                                             llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  std::optional<Labels> l = einsumLabels(einsum);
  if (!l || inputOf(einsum, 0) != a)
    return std::nullopt;
  // a: t d (x) or t k h (an activation); weights: t k p q; out: t k r.
  const std::string &in = l->lhs, &w = l->rhs, &out = l->out;
  if ((in.size() != 2 && in.size() != 3) || w.size() != 4 || out.size() != 3 || in[0] != w[0] || w[0] != out[0] ||
      w[1] != out[1] || (in.size() == 3 && in[1] != w[1]) || (in.size() == 2 && in.find(w[1]) != std::string::npos))
    return std::nullopt;
  char contracted = in.back();
  if (out.find(contracted) != std::string::npos || (w[2] != contracted && w[3] != contracted))
    return std::nullopt;
  char produced = w[2] == contracted ? w[3] : w[2];
  if (out[2] != produced || produced == contracted)
    return std::nullopt;
  llvm::SmallVector<const onnx::NodeProto *> found = {&einsum};
  std::string stack = gatheredStack(g, constants, inputOf(einsum, 1), ids, found);
  if (stack.empty())
    return std::nullopt;
  nodes.append(found.begin(), found.end());
  return Projection{stack, w[3] == contracted};
}

} // namespace

std::optional<MoeBlock> matchGatheredStackBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                                std::string &why) {
  const onnx::NodeProto &t = g.graph.node(topk);
  MoeBlock block;
  llvm::SmallVector<const onnx::NodeProto *> nodes;
  std::optional<std::string> routed = matchRouting(g, constants, topk, block, nodes, why);
  if (!routed)
    return std::nullopt;
  std::string ids = outputOf(t, 1);
  auto fail = [&](const std::string &reason) -> std::optional<MoeBlock> {
    why = reason;
    return std::nullopt;
  };
  // The up projections: einsums of x with stacks gathered by the ids.
  llvm::SmallVector<std::pair<const onnx::NodeProto *, Projection>> ups;
  for (int u : g.users(block.x)) {
    const onnx::NodeProto &n = g.graph.node(u);
    if (n.op_type() != "Einsum")
      continue;
    llvm::SmallVector<const onnx::NodeProto *> found;
    if (std::optional<Projection> p = gatheredProjection(g, constants, n, block.x, ids, found)) {
      nodes.append(found.begin(), found.end());
      ups.push_back({&n, *p});
    }
  }
  if (ups.empty())
    return std::nullopt; // the ids gather no weights for einsums of x: not this form
  if (ups.size() != 2)
    return fail("the gathered expert weights feed " + std::to_string(ups.size()) +
                " einsums of x, not a gate and an up projection");
  // act(gate) * up, either way round.
  const onnx::NodeProto *act = nullptr;
  GateActivation kind = GateActivation::silu;
  Projection gate, up;
  for (int side = 0; side < 2 && !act; ++side) {
    act = matchGatedActivation(g, outputOf(*ups[side].first, 0), outputOf(*ups[1 - side].first, 0), kind, nodes);
    gate = ups[side].second;
    up = ups[1 - side].second;
  }
  if (!act)
    return fail("the activation is not SwiGLU or GeGLU (act(gate) * up)");
  const onnx::NodeProto *downEinsum = g.onlyUser(outputOf(*act, 0), "Einsum");
  std::optional<Projection> down =
      downEinsum ? gatheredProjection(g, constants, *downEinsum, outputOf(*act, 0), ids, nodes) : std::nullopt;
  if (!down)
    return fail("the activation does not feed an einsum with the gathered down weights");
  if (gate.rows != up.rows || gate.rows != down->rows)
    return fail("the gate, up and down stacks are laid out differently");
  // y = Einsum("tkd,tk->td", o, w): the slots weighted and summed.
  const onnx::NodeProto *combine = g.onlyUser(outputOf(*downEinsum, 0), "Einsum");
  std::optional<Labels> l = combine ? einsumLabels(*combine) : std::nullopt;
  bool oFirst = combine && inputOf(*combine, 0) == outputOf(*downEinsum, 0);
  std::string weights = combine ? inputOf(*combine, oFirst ? 1 : 0) : "";
  const std::string *o = l ? (oFirst ? &l->lhs : &l->rhs) : nullptr, *wl = l ? (oFirst ? &l->rhs : &l->lhs) : nullptr;
  bool einsumCombine = l && weights == *routed && o->size() == 3 && wl->size() == 2 && l->out.size() == 2 &&
                       (*wl)[0] == (*o)[0] && (*wl)[1] == (*o)[1] && l->out[0] == (*o)[0] && l->out[1] == (*o)[2] &&
                       (*o)[1] != (*o)[2];
  // Or ReduceSum(o * Unsqueeze(w, -1), 1) (`(o * w[..., None]).sum(1)`).
  if (!einsumCombine) {
    const onnx::NodeProto *mul = g.onlyUser(outputOf(*downEinsum, 0), "Mul");
    const onnx::NodeProto *unsq = nullptr;
    for (int side = 0; mul && side < 2 && !unsq; ++side)
      if (inputOf(*mul, side) == outputOf(*downEinsum, 0))
        if (const onnx::NodeProto *p = g.producer(inputOf(*mul, 1 - side));
            p && p->op_type() == "Unsqueeze" && inputOf(*p, 0) == *routed && hasAxis(*p, constants, -1))
          unsq = p;
    combine = unsq ? g.onlyUser(outputOf(*mul, 0), "ReduceSum") : nullptr;
    if (!combine || !hasAxis(*combine, constants, 1) || intAttr(*combine, "keepdims", 1) != 0)
      return fail("the experts' outputs are not summed over the slots weighted by the routing weights");
    nodes.append({unsq, mul});
  }
  nodes.push_back(combine);
  block.gateStack = gate.stack;
  block.upStack = up.stack;
  block.downStack = down->stack;
  block.expertRows = gate.rows;
  block.activation = kind;
  block.output = outputOf(*combine, 0);
  block.last = g.indexOf(combine);
  return finishBlock(g, std::move(block), nodes, topk, why);
}

} // namespace mlir::moe::onnx_import::blocks
