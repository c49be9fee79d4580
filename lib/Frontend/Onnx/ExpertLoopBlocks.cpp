//===- ExpertLoopBlocks.cpp - the per-expert loop form of an MoE block ----===//
//
// transformers' eager MixtralSparseMoeBlock as tracing unrolls it: per
// expert a mask (OneHot/Transpose or Equal), NonZero rows, the expert's
// FFN on the gathered tokens, and ScatterND add into the output.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"

#include <map>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace mlir::moe::onnx_import::blocks {

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
  for (int u : g.users(outputOf(*nz, 0))) {
    const onnx::NodeProto &gather = g.graph.node(u);
    std::optional<llvm::SmallVector<int64_t>> row = constants(gather.input_size() > 1 ? inputOf(gather, 1) : "");
    if (gather.op_type() != "Gather" || inputOf(gather, 0) != outputOf(*nz, 0) || intAttr(gather, "axis", 0) != 0 ||
        !row || row->size() != 1 || ((*row)[0] != 0 && (*row)[0] != 1) || !rows[(*row)[0]].empty())
      return std::nullopt;
    rows[(*row)[0]] = outputOf(gather, 0);
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
    if (n.op_type() == "OneHot" && inputOf(n, 0) == ids) {
      std::optional<llvm::SmallVector<int64_t>> depth = constants(inputOf(n, 1)), values = constants(inputOf(n, 2));
      const onnx::NodeProto *perm = g.onlyUser(outputOf(n, 0), "Transpose");
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
      for (int v : g.users(outputOf(*perm, 0))) {
        const onnx::NodeProto &pick = g.graph.node(v);
        std::optional<llvm::SmallVector<int64_t>> e = constants(pick.input_size() > 1 ? inputOf(pick, 1) : "");
        if (pick.op_type() != "Gather" || intAttr(pick, "axis", 0) != 0 || !e || e->size() != 1) {
          why = "the one-hot expert mask is read other than one expert at a time";
          return {};
        }
        nodes.push_back(&pick);
        if (!add((*e)[0], nonZeroRows(g, constants, outputOf(pick, 0), nodes), /*tokenFirst=*/false))
          return {};
      }
    } else if (n.op_type() == "Equal") {
      std::string other = inputOf(n, 0) == ids ? inputOf(n, 1) : inputOf(n, 0);
      std::optional<llvm::SmallVector<int64_t>> e = constants(other);
      if (!e || e->size() != 1)
        continue;
      nodes.push_back(&n);
      if (!add((*e)[0], nonZeroRows(g, constants, outputOf(n, 0), nodes), /*tokenFirst=*/true))
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
  std::map<int64_t, ExpertRows> masks = expertMasks(g, constants, outputOf(t, 1), experts, nodes, why);
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
    return inputOf(n, 0) == value ? inputOf(n, 1) : inputOf(n, 0);
  };
  llvm::DenseMap<const onnx::NodeProto *, int64_t> scatterOf;
  block.expertGate.resize(experts);
  block.expertUp.resize(experts);
  block.expertDown.resize(experts);
  for (auto &[e, rows] : masks) {
    std::string expert = "expert " + std::to_string(e) + ": ";
    // rows = x[token]; silu(rows W1) * (rows W3); then W2.
    const onnx::NodeProto *gatherX = g.userOfType(rows.token, "Gather");
    if (!gatherX || !block.isX(inputOf(*gatherX, 0)) || inputOf(*gatherX, 1) != rows.token || intAttr(*gatherX, "axis", 0) != 0)
      return fail(expert + "its tokens' rows of x are not gathered");
    nodes.push_back(gatherX);
    std::string xRows = outputOf(*gatherX, 0);
    llvm::SmallVector<const onnx::NodeProto *> projections;
    for (int u : g.users(xRows))
      projections.push_back(&g.graph.node(u));
    if (projections.size() != 2 ||
        llvm::any_of(projections, [&](const onnx::NodeProto *mm) {
          return mm->op_type() != "MatMul" || inputOf(*mm, 0) != xRows || !g.isConstant(inputOf(*mm, 1));
        }))
      return fail(expert + "its rows do not feed exactly two constant projections (gate, up)");
    const onnx::NodeProto *act = nullptr, *gateMM = nullptr, *upMM = nullptr;
    GateActivation kind = GateActivation::silu;
    for (int side = 0; side < 2 && !act; ++side) {
      act = matchGatedActivation(g, outputOf(*projections[side], 0), outputOf(*projections[1 - side], 0), kind, nodes);
      gateMM = projections[side];
      upMM = projections[1 - side];
    }
    if (!act)
      return fail(expert + "the activation is not SwiGLU or GeGLU (act(gate) * up)");
    if (e != masks.begin()->first && kind != block.activation)
      return fail(expert + "its activation differs from the other experts'");
    block.activation = kind;
    const onnx::NodeProto *downMM = g.onlyUser(outputOf(*act, 0), "MatMul");
    if (!downMM || inputOf(*downMM, 0) != outputOf(*act, 0) || !g.isConstant(inputOf(*downMM, 1)))
      return fail(expert + "the activation does not feed a constant down projection");
    nodes.append({gateMM, upMM, downMM});
    block.expertGate[e] = inputOf(*gateMM, 1);
    block.expertUp[e] = inputOf(*upMM, 1);
    block.expertDown[e] = inputOf(*downMM, 1);
    // Scaled by the slot weight w[token, slot] and added at the token.
    const onnx::NodeProto *scale = g.onlyUser(outputOf(*downMM, 0), "Mul");
    const onnx::NodeProto *weightCol = scale ? g.producer(other(*scale, outputOf(*downMM, 0))) : nullptr;
    const onnx::NodeProto *picked = weightCol && weightCol->op_type() == "Unsqueeze" &&
                                            hasAxis(*weightCol, constants, -1)
                                        ? g.producer(inputOf(*weightCol, 0))
                                        : nullptr;
    const onnx::NodeProto *pairs = picked && picked->op_type() == "GatherND" && inputOf(*picked, 0) == w &&
                                           intAttr(*picked, "batch_dims", 0) == 0
                                       ? g.producer(inputOf(*picked, 1))
                                       : nullptr;
    auto unsqueezedFrom = [&](llvm::StringRef value, llvm::StringRef from) -> const onnx::NodeProto * {
      const onnx::NodeProto *u = g.producer(value);
      return u && u->op_type() == "Unsqueeze" && inputOf(*u, 0) == from && hasAxis(*u, constants, -1) ? u : nullptr;
    };
    int64_t concatAxis = pairs ? intAttr(*pairs, "axis", 0) : 0;
    const onnx::NodeProto *tokCol = pairs && pairs->op_type() == "Concat" && pairs->input_size() == 2 &&
                                            (concatAxis == -1 || concatAxis == 1)
                                        ? unsqueezedFrom(inputOf(*pairs, 0), rows.token)
                                        : nullptr;
    const onnx::NodeProto *slotCol = tokCol ? unsqueezedFrom(inputOf(*pairs, 1), rows.slot) : nullptr;
    if (!slotCol)
      return fail(expert + "its rows are not scaled by their slot weights w[token, slot]");
    const onnx::NodeProto *scatter = g.onlyUser(outputOf(*scale, 0), "ScatterND");
    const onnx::NodeProto *where = scatter ? unsqueezedFrom(inputOf(*scatter, 1), rows.token) : nullptr;
    bool adds = scatter && llvm::any_of(scatter->attribute(), [](const onnx::AttributeProto &a) {
                  return a.name() == "reduction" && a.s() == "add";
                });
    if (!where || !adds || inputOf(*scatter, 2) != outputOf(*scale, 0))
      return fail(expert + "its weighted rows are not added at their tokens (ScatterND add)");
    nodes.append({scale, weightCol, picked, pairs, tokCol, slotCol, scatter, where});
    scatterOf[scatter] = e;
  }
  // The scatters chain every expert once, from zeros shaped like x.
  const onnx::NodeProto *first = nullptr;
  int starts = 0;
  for (auto &[scatter, e] : scatterOf)
    if (!g.producer(inputOf(*scatter, 0)) || g.producer(inputOf(*scatter, 0))->op_type() != "ScatterND") {
      first = scatter;
      ++starts;
    }
  const onnx::NodeProto *zeros = starts == 1 ? g.producer(inputOf(*first, 0)) : nullptr;
  const onnx::NodeProto *zerosShape = zeros ? g.producer(inputOf(*zeros, 0)) : nullptr;
  if (!zeros || zeros->op_type() != "ConstantOfShape" || !llvm::all_of(zeros->attribute(), isZeroValue) ||
      !zerosShape || zerosShape->op_type() != "Shape" || !block.isX(inputOf(*zerosShape, 0)))
    return fail("the experts' rows are not added into zeros shaped like x");
  nodes.append({zeros, zerosShape});
  const onnx::NodeProto *last = first;
  for (size_t visited = 1; visited < scatterOf.size(); ++visited) {
    const onnx::NodeProto *next = g.onlyUser(outputOf(*last, 0), "ScatterND");
    if (!next || inputOf(*next, 0) != outputOf(*last, 0) || !scatterOf.count(next))
      return fail("the experts' ScatterND adds do not form one chain");
    last = next;
  }
  block.output = outputOf(*last, 0);
  block.last = g.indexOf(last);
  return finishBlock(g, std::move(block), nodes, topk, why);
}

} // namespace mlir::moe::onnx_import::blocks
