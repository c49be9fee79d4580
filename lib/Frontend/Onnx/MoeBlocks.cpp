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
// columns) becomes ONNX Runtime's MoE computation (ExpertMixture.h).
// Hand-written modules add two forms: every expert on every token weighted
// by gate columns or a scattered gate (matchDenseMixtureBlock), and the
// routed experts' weights gathered per token for einsums
// (matchGatheredStackBlock), and vLLM's reference loop over flat slot rows
// (matchFlatSlotLoopBlock). Everything is checked: a block that looks like MoE but
// differs anywhere (another activation, a value used outside the block, a
// weight that is not a constant) stays plain ops, with a remark saying why.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"

using namespace mlir;
using namespace mlir::moe::onnx_import;
using namespace mlir::moe::onnx_import::blocks;


/// A TopK whose indices select experts: they build a one-hot mask (OneHot,
/// or Equal with expert ids), or gather from a 3-D constant (stacked expert
/// weights: Gather, GatherND), maybe through reshapes, casts and a Concat
/// with other slots' ids. Its routing not matching is then a near miss
/// worth a remark.
static bool selectsExperts(const GraphIndex &g, const ConstantLookup &constants, const onnx::NodeProto &topk) {
  auto picks = [&](llvm::StringRef ids, int depth, auto &self) -> bool {
    for (int u : g.users(ids)) {
      const onnx::NodeProto &n = g.graph.node(u);
      llvm::StringRef op = n.op_type();
      std::optional<llvm::SmallVector<int64_t>> shape =
          op == "Gather" || op == "GatherND" ? constants.shape(inputOf(n, 0)) : std::nullopt;
      std::string other = inputOf(n, 0) == ids ? inputOf(n, 1) : inputOf(n, 0);
      bool idsCompared = op == "Equal" && (constants.isConstant(other) || constants(other));
      if (op == "OneHot" || idsCompared || (shape && shape->size() == 3 && inputOf(n, 1) == ids))
        return true;
      // Slots' ids joined (Concat: SparseMixer's, GShard's two picks) count
      // too, and one slot's column (idx[:, j]: a Gather or Slice of them).
      bool layout = llvm::is_contained({"Reshape", "Unsqueeze", "Squeeze", "Flatten", "Cast", "Gather", "Slice"}, op) &&
                    inputOf(n, 0) == ids;
      if (depth < 4 && (layout || op == "Concat") && self(outputOf(n, 0), depth + 1, self))
        return true;
    }
    return false;
  };
  return picks(outputOf(topk, 1), 0, picks);
}

std::vector<MoeBlock> mlir::moe::onnx_import::findMoeBlocks(const onnx::GraphProto &graph,
                                                            const ConstantLookup &constants,
                                                            std::vector<std::pair<int, std::string>> &nearMisses) {
  GraphIndex index(graph, [&](llvm::StringRef name) { return constants.isConstant(name); });
  std::vector<MoeBlock> blocks;
  for (int i = 0; i < graph.node_size(); ++i) {
    bool defaultDomain = graph.node(i).domain().empty() || graph.node(i).domain() == "ai.onnx";
    // Experts selected by an ArgMax the canonicalisation left (not over
    // the last axis of router scores, ties to the last, or GShard's second
    // ArgMax of the masked logits) feeding a one-hot mask.
    auto selectsByMask = [&](llvm::StringRef ids, auto &self, int depth) -> bool {
      return llvm::any_of(index.users(ids), [&](int u) {
        llvm::StringRef op = graph.node(u).op_type();
        // Through an Unsqueeze (the dynamo exporter's one_hot compares
        // ids[..., None] with an arange).
        return op == "OneHot" || op == "Equal" ||
               (op == "Unsqueeze" && depth == 0 && self(outputOf(graph.node(u), 0), self, 1));
      });
    };
    if (defaultDomain && graph.node(i).op_type() == "ArgMax" &&
        selectsByMask(outputOf(graph.node(i), 0), selectsByMask, 0))
      nearMisses.push_back({i, "experts selected by ArgMax into a one-hot mask: only an ArgMax over the last axis of "
                               "router scores (a linear map of x, its softmax or sigmoid), ties to the first, reads "
                               "as TopK(1); it runs as plain ops"});
    if (graph.node(i).op_type() != "TopK" || !defaultDomain)
      continue;
    std::string why, whyLoop, whyGptOss, whyDense, whyGathered, whyChoice, whyFlat;
    // Tokens in several leading axes ([B, S, H]) are one axis to the
    // layer, except where a selection runs across tokens (expert choice)
    // or the block's own logits are read (gpt-oss, SparseMixer).
    auto accept = [&](MoeBlock block) {
      int64_t rank = constants.rank ? constants.rank(block.x) : -1;
      bool perToken = block.expertChoiceCapacity == 0 && !block.gptOss && block.sparseMixerLogits.empty();
      if (rank < 0 || rank == 2 || (rank > 2 && perToken))
        blocks.push_back(std::move(block));
      else
        nearMisses.push_back({i, "x has rank " + std::to_string(rank) +
                                     (rank < 2 ? "" : "; this form reads x as [tokens, hidden] only")});
    };
    if (std::optional<MoeBlock> choice = matchExpertChoiceBlock(index, constants, i, whyChoice))
      accept(std::move(*choice));
    else if (!whyChoice.empty())
      nearMisses.push_back({i, whyChoice});
    else if (std::optional<MoeBlock> block = matchBlock(index, constants, i, why))
      accept(std::move(*block));
    else if (std::optional<MoeBlock> loop = matchPerExpertBlock(index, constants, i, whyLoop))
      accept(std::move(*loop));
    else if (std::optional<MoeBlock> oss = matchGptOssBlock(index, constants, i, whyGptOss))
      accept(std::move(*oss));
    else if (std::optional<MoeBlock> dense = matchDenseMixtureBlock(index, constants, i, whyDense))
      accept(std::move(*dense));
    else if (std::optional<MoeBlock> gathered = matchGatheredStackBlock(index, constants, i, whyGathered))
      accept(std::move(*gathered));
    else if (std::optional<MoeBlock> flat = matchFlatSlotLoopBlock(index, constants, i, whyFlat))
      accept(std::move(*flat));
    else if (!whyFlat.empty() || !whyLoop.empty() || !why.empty() || !whyGptOss.empty() || !whyDense.empty() ||
             !whyGathered.empty())
      nearMisses.push_back({i, !whyFlat.empty()       ? whyFlat
                               : !whyGathered.empty() ? whyGathered
                               : !whyDense.empty()  ? whyDense
                               : !whyLoop.empty()   ? whyLoop
                               : !why.empty()       ? why
                                                    : whyGptOss});
    else if (selectsExperts(index, constants, graph.node(i)))
      nearMisses.push_back({i, "its indices pick experts (a one-hot mask, a slot's column or stacked weights), "
                               "but no MoE block form reads them: either the scores in front of it are not a "
                               "routing (softmax or sigmoid of x Wr, DeepSeek-V3's biased group-limited top-k) or "
                               "the experts are chosen and combined in a way docs/onnx.md does not list"});
  }
  return blocks;
}
