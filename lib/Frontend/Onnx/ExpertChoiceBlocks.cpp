//===- ExpertChoiceBlocks.cpp - expert-choice routing as PyTorch writes it -===//
//
// Expert-choice routing (Zhou et al. 2022): each expert takes the C tokens
// it scores highest, in a loop over the experts:
//
//   s      = Softmax(x Wr) [T, E]                 (or Sigmoid)
//   g, tok = TopK(Transpose(s, [1, 0]), C)        [E, C] each
//   per expert e:
//     rows = x[tok[e]]                            Gather(x, Gather(tok, e))
//     y    = y.index_add_(0, tok[e], g[e][:, None] * FFN_e(rows))
//
// starting from zeros shaped like x. It is moe.layer with select =
// expert_choice, capacity = C: token t gets the sum over the experts that
// picked it of s[t, e] FFN_e(x_t), the experts in order (the layer's slot
// order); TopK breaks ties to the lower token index, as moe.expert_choice.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace mlir::moe::onnx_import::blocks {

namespace {

/// Gather(v, e) along axis 0 with a scalar constant e: row e of v.
std::map<int64_t, const onnx::NodeProto *> rowsByExpert(const GraphIndex &g, const ConstantLookup &constants,
                                                        llvm::StringRef v) {
  std::map<int64_t, const onnx::NodeProto *> rows;
  for (int u : g.users(v)) {
    const onnx::NodeProto &gather = g.graph.node(u);
    if (gather.op_type() != "Gather" || inputOf(gather, 0) != v || intAttr(gather, "axis", 0) != 0)
      continue;
    std::optional<llvm::SmallVector<int64_t>> e = constants(inputOf(gather, 1));
    std::optional<llvm::SmallVector<int64_t>> shape = constants.shape(inputOf(gather, 1));
    if (e && e->size() == 1 && shape && shape->empty())
      rows.emplace((*e)[0], &gather);
  }
  return rows;
}

} // namespace

std::optional<MoeBlock> matchExpertChoiceBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                               std::string &why) {
  why.clear();
  const onnx::NodeProto &t = g.graph.node(topk);
  // The anchor: a top-C along the tokens of the transposed [T, E] scores.
  const onnx::NodeProto *transpose = g.producer(inputOf(t, 0));
  const onnx::NodeProto *scores =
      transpose && transpose->op_type() == "Transpose" && intsAttr(*transpose, "perm") == llvm::SmallVector<int64_t>{1, 0}
          ? g.producer(inputOf(*transpose, 0))
          : nullptr;
  if (!scores || (scores->op_type() != "Softmax" && scores->op_type() != "Sigmoid") || t.output_size() != 2)
    return std::nullopt;
  MoeBlock block;
  llvm::SmallVector<const onnx::NodeProto *> nodes = {&t, transpose, scores}, routerNodes;
  llvm::SmallVector<const onnx::NodeProto *> scaleNodes;
  std::string logits = unscaledLogits(g, constants, inputOf(*scores, 0), block.routerScale, scaleNodes);
  block.routerWeight = biasedLinearOf(g, constants, logits, routerNodes, block.routerBias);
  if (block.routerWeight.empty())
    return std::nullopt;
  block.x = inputOf(*routerNodes.front(), 0);
  nodes.append(routerNodes.begin(), routerNodes.end());
  nodes.append(scaleNodes.begin(), scaleNodes.end());
  std::optional<llvm::SmallVector<int64_t>> routerShape = constants.shape(block.routerWeight.name);
  int64_t experts = routerShape && routerShape->size() == 2 ? (*routerShape)[block.routerWeight.rows ? 0 : 1] : 0;
  int64_t softmaxAxis = intAttr(*scores, "axis", -1);
  std::optional<llvm::SmallVector<int64_t>> k = constants(inputOf(t, 1));
  auto fail = [&](const std::string &reason) -> std::optional<MoeBlock> {
    why = "expert-choice routing (each expert's top tokens): " + reason;
    return std::nullopt;
  };
  if (!experts || !k || k->size() != 1 || (*k)[0] < 1)
    return fail("the router's expert count or the tokens per expert (K) is not a constant");
  if (intAttr(t, "largest", 1) != 1 || intAttr(t, "axis", -1) != -1 ||
      (scores->op_type() == "Softmax" && softmaxAxis != -1 && softmaxAxis != 1))
    return fail("the scores are not taken over the experts, or the top-k is not largest first along the tokens");
  block.sigmoid = scores->op_type() == "Sigmoid";
  block.expertChoiceCapacity = (*k)[0];
  // Per expert: its tokens tok[e] and their weights g[e].
  std::map<int64_t, const onnx::NodeProto *> tokens = rowsByExpert(g, constants, outputOf(t, 1));
  std::map<int64_t, const onnx::NodeProto *> weights = rowsByExpert(g, constants, outputOf(t, 0));
  auto everyExpert = [&](const std::map<int64_t, const onnx::NodeProto *> &rows) {
    return static_cast<int64_t>(rows.size()) == experts && rows.begin()->first == 0 &&
           rows.rbegin()->first == experts - 1;
  };
  if (!everyExpert(tokens))
    return fail("the loop does not read the tokens of each of the " + std::to_string(experts) +
                " experts once (tok[e])");
  if (!everyExpert(weights))
    return fail("the experts' rows are not weighted by their picks' scores as the top-k gives them (g[e])");
  std::map<int64_t, Accumulation> steps;
  std::map<int64_t, OwnExpertFfn> own;
  for (int64_t e = 0; e < experts; ++e) {
    std::string expert = "expert " + std::to_string(e) + ": ";
    std::string token = outputOf(*tokens[e], 0), weight = outputOf(*weights[e], 0);
    nodes.append({tokens[e], weights[e]});
    std::string xRows = gatheredRows(g, constants, block, token, nodes);
    if (xRows.empty())
      return fail(expert + "its tokens' rows of x are not gathered");
    std::string o;
    std::optional<OwnExpertFfn> ffn = ownExpertOnRows(g, constants, xRows, o, nodes);
    if (!ffn)
      return fail(expert + "its rows do not feed an FFN (gated SwiGLU/GeGLU, or ReLU/GELU/SiLU) on its own constant "
                           "weights");
    own[e] = *ffn;
    // FFN_e(rows) * g[e][:, None].
    const onnx::NodeProto *scale = g.onlyUser(o, "Mul");
    std::string column = scale ? (inputOf(*scale, 0) == o ? inputOf(*scale, 1) : inputOf(*scale, 0)) : "";
    const onnx::NodeProto *unsqueeze = g.producer(column);
    if (!scale || !unsqueeze || unsqueeze->op_type() != "Unsqueeze" || inputOf(*unsqueeze, 0) != weight ||
        (!hasAxis(*unsqueeze, constants, -1) && !hasAxis(*unsqueeze, constants, 1)))
      return fail(expert + "its rows are not scaled by its tokens' scores g[e][:, None]");
    nodes.append({scale, unsqueeze});
    std::optional<Accumulation> step = accumulation(g, constants, outputOf(*scale, 0), token, nodes);
    // Experts choose their tokens: two may pick one, so rows must add.
    if (!step || step->assigns)
      return fail(expert + "its weighted rows are not added at its tokens (index_add_, scatter_add_, index_put_)");
    steps[e] = *step;
  }
  std::optional<std::string> acc = accumulationChain(g, constants, block, steps, nodes, why);
  if (!acc)
    return fail(why);
  if (!setOwnExperts(block, own, why))
    return fail(why);
  block.output = *acc;
  block.last = g.indexOf(g.producer(*acc));
  return finishBlock(g, std::move(block), nodes, topk, why);
}

} // namespace mlir::moe::onnx_import::blocks
