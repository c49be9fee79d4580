//===- BatchedBlocks.cpp - the batched forms of an MoE block --------------===//
//
// Every slot's row through gathered expert weights, scaled and summed per
// token (transformers' export-friendly experts), and gpt-oss's form with
// expert biases and the clamped SwiGLU on alternate columns.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace mlir::moe::onnx_import::blocks {

/// Rows [T * k, H] reshaped to [T, k, H] and summed over the k slots (16-bit
/// rows maybe in f32 between Casts, PyTorch's sum): the sum's value (after
/// the Cast back), its nodes appended to `nodes`; empty when not so.
static std::string slotSum(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef rows, int64_t k,
                           llvm::SmallVector<const onnx::NodeProto *> &nodes) {
  const onnx::NodeProto *slots = g.onlyUser(rows, "Reshape");
  std::string summed;
  llvm::SmallVector<const onnx::NodeProto *> found;
  const onnx::NodeProto *combine =
      slots ? sumReading(g, outputOf(*slots, 0), /*onlyUser=*/true, summed, found) : nullptr;
  std::optional<llvm::SmallVector<int64_t>> slotShape = slots ? constants(inputOf(*slots, 1)) : std::nullopt;
  if (!combine || !hasAxis(*combine, constants, 1) || intAttr(*combine, "keepdims", 1) != 0 || !slotShape ||
      slotShape->size() != 3 || (*slotShape)[1] != k)
    return "";
  nodes.push_back(slots);
  nodes.append(found.begin(), found.end());
  return summed;
}

/// Matches the batched block anchored at TopK node `topk`. On failure
/// returns the reason in `why` (empty when the anchor itself does not
/// match: not MoE).
std::optional<MoeBlock> matchBlock(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                   std::string &why) {
  const onnx::NodeProto &t = g.graph.node(topk);
  MoeBlock block;
  llvm::SmallVector<const onnx::NodeProto *> nodes;
  auto fail = [&](llvm::StringRef reason) -> std::optional<MoeBlock> {
    why = reason.str();
    return std::nullopt;
  };
  std::optional<std::string> routed;
  std::string slotIds = outputOf(t, 1);
  if (std::optional<SparseMixerRouting> mixer = matchSparseMixerRouting(g, constants, topk, nodes)) {
    // The layer reads the logits as computed: the router stays plain ops.
    llvm::SmallVector<const onnx::NodeProto *> routerNodes;
    std::string routerBias;
    if (biasedLinearOf(g, constants, mixer->logits, routerNodes, routerBias).empty())
      return fail("SparseMixer routing on logits that are no linear map of x");
    block.x = inputOf(*routerNodes.front(), 0);
    block.sparseMixerLogits = mixer->logits;
    block.sparseMixerEps = mixer->eps;
    block.k = 2;
    routed = mixer->weights;
    slotIds = mixer->ids;
  } else {
    routed = matchRouting(g, constants, topk, block, nodes, why);
  }
  if (!routed)
    return std::nullopt;
  std::string w = *routed;
  // Gate weights per slot; expert ids, and the two gathered expert
  // weights: Gather(W, ids) or, as torch exports W[ids], GatherND(W,
  // Unsqueeze(ids, -1)).
  std::optional<SlotOperands> perSlot = matchSlotOperands(g, constants, w, slotIds, nodes, why);
  if (!perSlot)
    return std::nullopt;
  const onnx::NodeProto *unsqW = perSlot->scale, *clip = perSlot->clip;
  std::string ids = perSlot->ids;
  const onnx::NodeProto *gather13 = nullptr, *gather2 = nullptr;
  auto addGather = [&](const onnx::NodeProto &n, llvm::StringRef index) {
    bool isGather = (n.op_type() == "Gather" && intAttr(n, "axis", 0) == 0) ||
                    (n.op_type() == "GatherND" && intAttr(n, "batch_dims", 0) == 0);
    if (!isGather || inputOf(n, 1) != index || !g.isConstant(inputOf(n, 0)) || (gather13 && gather2))
      return false;
    (gather13 ? gather2 : gather13) = &n;
    return true;
  };
  // More stacks gathered by the ids than the two weights (their biases
  // too): gpt-oss's form, not this one.
  int64_t constantGathers = 0;
  auto countGathers = [&](llvm::StringRef index) {
    for (int i : g.users(index)) {
      const onnx::NodeProto &n = g.graph.node(i);
      constantGathers += (n.op_type() == "Gather" || n.op_type() == "GatherND") && g.isConstant(inputOf(n, 0));
    }
  };
  countGathers(ids);
  for (int i : g.users(ids))
    if (g.graph.node(i).op_type() == "Unsqueeze")
      countGathers(outputOf(g.graph.node(i), 0));
  if (constantGathers > 2) {
    why.clear();
    return std::nullopt;
  }
  for (int i : g.users(ids)) {
    const onnx::NodeProto &n = g.graph.node(i);
    bool ok = n.op_type() == "Unsqueeze" ? hasAxis(n, constants, -1) : addGather(n, ids);
    if (n.op_type() == "Unsqueeze" && ok) {
      nodes.push_back(&n);
      for (int j : g.users(outputOf(n, 0)))
        ok = ok && g.graph.node(j).op_type() == "GatherND" && addGather(g.graph.node(j), outputOf(n, 0));
    }
    if (!ok)
      return fail("the expert ids index something other than constant expert weights");
  }
  if (!gather13 || !gather2)
    return fail("two gathered expert weights (gate/up and down) are expected");
  if (!clipKeepsExperts(constants, clip, inputOf(*gather13, 0)))
    return fail("the expert ids are clipped to a range narrower than the experts");

  // gate/up GEMM on the slot rows: Squeeze(MatMul(W13[ids], Unsqueeze(rows, -1)), -1).
  auto gemmOf = [&](const onnx::NodeProto *gather) -> const onnx::NodeProto * {
    const onnx::NodeProto *mm = g.onlyUser(outputOf(*gather, 0), "MatMul");
    return mm && inputOf(*mm, 0) == outputOf(*gather, 0) ? mm : nullptr;
  };
  const onnx::NodeProto *mm13 = gemmOf(gather13), *mm2 = gemmOf(gather2);
  if (!mm13 || !mm2)
    return fail("the gathered weights do not feed batched MatMuls");
  // Which gather is gate/up: the one whose MatMul reads the slot rows.
  // Each slot's token: Reshape(Expand(Unsqueeze(Range(0, T, 1), [1]), ..), [-1])
  // with T = Shape(x)[0]: row t * k + j -> t.
  auto isSlotTokens = [&](llvm::StringRef value, llvm::SmallVector<const onnx::NodeProto *> &chain) {
    const onnx::NodeProto *flat = g.producer(value);
    const onnx::NodeProto *expand = flat && flat->op_type() == "Reshape" ? g.producer(inputOf(*flat, 0)) : nullptr;
    const onnx::NodeProto *unsq = expand && expand->op_type() == "Expand" ? g.producer(inputOf(*expand, 0)) : nullptr;
    const onnx::NodeProto *range = unsq && unsq->op_type() == "Unsqueeze" ? g.producer(inputOf(*unsq, 0)) : nullptr;
    if (!range || range->op_type() != "Range" || !hasAxis(*unsq, constants, 1))
      return false;
    std::optional<llvm::SmallVector<int64_t>> start = constants(inputOf(*range, 0)), step = constants(inputOf(*range, 2)),
                                              flatShape = constants(inputOf(*flat, 1));
    const onnx::NodeProto *count = g.producer(inputOf(*range, 1));
    const onnx::NodeProto *shape = count && count->op_type() == "Gather" ? g.producer(inputOf(*count, 0)) : nullptr;
    std::optional<llvm::SmallVector<int64_t>> dim = count ? constants(inputOf(*count, 1)) : std::nullopt;
    if (!start || (*start)[0] != 0 || !step || (*step)[0] != 1 || !flatShape || flatShape->size() != 1 ||
        (*flatShape)[0] != -1 || !shape || shape->op_type() != "Shape" || !block.isX(inputOf(*shape, 0)) || !dim ||
        (*dim)[0] != 0)
      return false;
    chain.append({flat, expand, unsq, range, count, shape});
    return true;
  };
  std::string slotTokens;
  auto isRowsOfX = [&](const onnx::NodeProto *mm, llvm::SmallVector<const onnx::NodeProto *> &chain) {
    const onnx::NodeProto *unsqRows = g.producer(inputOf(*mm, 1));
    if (!unsqRows || unsqRows->op_type() != "Unsqueeze" || !hasAxis(*unsqRows, constants, -1))
      return false;
    // x[token of each slot] (transformers' batched experts).
    if (const onnx::NodeProto *gather = g.producer(inputOf(*unsqRows, 0));
        gather && gather->op_type() == "Gather" && block.isX(inputOf(*gather, 0)) && intAttr(*gather, "axis", 0) == 0) {
      llvm::SmallVector<const onnx::NodeProto *> tokenChain;
      if (!isSlotTokens(inputOf(*gather, 1), tokenChain))
        return false;
      slotTokens = inputOf(*gather, 1);
      chain.append({unsqRows, gather});
      chain.append(tokenChain.begin(), tokenChain.end());
      return true;
    }
    // x repeated k times: Reshape(Expand(Unsqueeze(x, 1), ..), ..).
    const onnx::NodeProto *reshape = g.producer(inputOf(*unsqRows, 0));
    const onnx::NodeProto *expand = reshape ? g.producer(inputOf(*reshape, 0)) : nullptr;
    const onnx::NodeProto *unsqX = expand ? g.producer(inputOf(*expand, 0)) : nullptr;
    if (!reshape || reshape->op_type() != "Reshape" || !expand || expand->op_type() != "Expand" || !unsqX ||
        unsqX->op_type() != "Unsqueeze" || !block.isX(inputOf(*unsqX, 0)) || !hasAxis(*unsqX, constants, 1))
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
  block.gateUp = inputOf(*gather13, 0);
  block.down = inputOf(*gather2, 0);
  nodes.append({gather13, gather2, mm13, mm2});
  nodes.append(rowsChain.begin(), rowsChain.end());

  const onnx::NodeProto *squeezeH = g.onlyUser(outputOf(*mm13, 0), "Squeeze");
  const onnx::NodeProto *split = squeezeH ? g.onlyUser(outputOf(*squeezeH, 0), "Split") : nullptr;
  // Non-gated experts (transformers' has_gate = False): act(h) feeds the
  // down GEMM.
  const onnx::NodeProto *unsqA = g.producer(inputOf(*mm2, 1));
  std::string h;
  llvm::SmallVector<const onnx::NodeProto *> actNodes;
  std::optional<PlainActivation> plain =
      squeezeH && !split && unsqA && unsqA->op_type() == "Unsqueeze" && hasAxis(*unsqA, constants, -1)
          ? plainActivation(g, constants, inputOf(*unsqA, 0), h, actNodes)
          : std::nullopt;
  if (plain && hasAxis(*squeezeH, constants, -1) && h == outputOf(*squeezeH, 0)) {
    block.ungated = *plain;
    nodes.append({squeezeH, unsqA});
    nodes.append(actNodes.begin(), actNodes.end());
  } else {
    // h is [slots, 2I]: its last axis is -1 or 1.
    if (!squeezeH || !hasAxis(*squeezeH, constants, -1) || !split || split->output_size() != 2 ||
        (intAttr(*split, "axis", 0) != -1 && intAttr(*split, "axis", 0) != 1))
      return fail("the gate/up result is not split in two halves along the last axis");
    if (split->input_size() > 1) {
      std::optional<llvm::SmallVector<int64_t>> parts = constants(inputOf(*split, 1));
      if (!parts || parts->size() != 2 || (*parts)[0] != (*parts)[1])
        return fail("the gate/up split is not into two equal halves");
    }
    nodes.append({squeezeH, split});
    const onnx::NodeProto *mulU =
        matchGatedActivation(g, outputOf(*split, 0), outputOf(*split, 1), block.activation, nodes);
    if (!mulU)
      return fail("the activation is not SwiGLU or GeGLU (act(gate) * up)");
    unsqA = g.onlyUser(outputOf(*mulU, 0), "Unsqueeze");
    if (!unsqA || !hasAxis(*unsqA, constants, -1) || inputOf(*mm2, 1) != outputOf(*unsqA, 0))
      return fail("the activation does not feed the down GEMM");
    nodes.push_back(unsqA);
  }

  // Down GEMM, scaled by the gate weights, summed over each token's slots.
  const onnx::NodeProto *squeezeO = g.onlyUser(outputOf(*mm2, 0), "Squeeze");
  const onnx::NodeProto *scale =
      squeezeO ? g.onlyUser(throughFloatCastUser(g, outputOf(*squeezeO, 0), nodes), "Mul") : nullptr;
  if (!squeezeO || !hasAxis(*squeezeO, constants, -1) || !scale ||
      !llvm::is_contained(scale->input(), outputOf(*unsqW, 0)))
    return fail("the down GEMM's rows are not scaled by their gate weights");
  nodes.append({squeezeO, scale});
  // Summed per token: ReduceSum over the slots of [T, k, H], or added into
  // zeros at each slot's token (ScatterND add, index_add_ exported).
  if (const onnx::NodeProto *scatter = g.onlyUser(outputOf(*scale, 0), "ScatterND")) {
    const onnx::NodeProto *where = g.producer(inputOf(*scatter, 1));
    const onnx::NodeProto *zeros = g.producer(inputOf(*scatter, 0));
    const onnx::NodeProto *zerosShape = zeros ? g.producer(inputOf(*zeros, 0)) : nullptr;
    llvm::SmallVector<const onnx::NodeProto *> tokenChain;
    bool zeroFill = zeros && zeros->op_type() == "ConstantOfShape" && zerosShape &&
                    zerosShape->op_type() == "Shape" && block.isX(inputOf(*zerosShape, 0)) &&
                    llvm::all_of(zeros->attribute(), isZeroValue);
    if (inputOf(*scatter, 2) != outputOf(*scale, 0) ||
        [&] {
          for (const onnx::AttributeProto &a : scatter->attribute())
            if (a.name() == "reduction")
              return a.s() != "add";
          return true;
        }() ||
        !where || where->op_type() != "Unsqueeze" || !hasAxis(*where, constants, -1) || !zeroFill ||
        !(inputOf(*where, 0) == slotTokens || isSlotTokens(inputOf(*where, 0), tokenChain)))
      return fail("the weighted rows are not added at their tokens into zeros");
    nodes.append({scatter, where, zeros, zerosShape});
    nodes.append(tokenChain.begin(), tokenChain.end());
    block.output = throughFloatCastUser(g, outputOf(*scatter, 0), nodes);
    block.last = g.indexOf(g.producer(block.output));
  } else {
    std::string summed = slotSum(g, constants, outputOf(*scale, 0), block.k, nodes);
    if (summed.empty())
      return fail("the weighted rows are not summed per token over the k slots");
    block.output = throughFloatCastUser(g, summed, nodes);
    block.last = g.indexOf(g.producer(block.output));
  }
  matchSharedExpert(g, block, nodes);
  return finishBlock(g, std::move(block), nodes, topk, why);
}

const onnx::NodeProto *matchGptOssActivation(const GraphIndex &g, const ConstantLookup &constants, llvm::StringRef h,
                                             MoeBlock::GptOss &oss, llvm::SmallVector<const onnx::NodeProto *> &nodes,
                                             std::string &why) {
  auto fail = [&](llvm::StringRef reason) -> const onnx::NodeProto * {
    why = reason.str();
    return nullptr;
  };
  auto scalar = [&](llvm::StringRef name) -> std::optional<float> {
    std::optional<std::vector<float>> v = constants.floats ? constants.floats(name) : std::nullopt;
    return v && v->size() == 1 ? std::optional<float>((*v)[0]) : std::nullopt;
  };
  auto otherOperand = [](const onnx::NodeProto &n, llvm::StringRef value) -> std::string {
    return inputOf(n, 0) == value ? inputOf(n, 1) : inputOf(n, 0);
  };
  // Gate and up: alternate columns of h.
  const onnx::NodeProto *gateSlice = nullptr, *upSlice = nullptr;
  for (int i : g.users(h)) {
    const onnx::NodeProto &n = g.graph.node(i);
    std::optional<llvm::SmallVector<int64_t>> start = n.input_size() == 5 ? constants(inputOf(n, 1)) : std::nullopt,
                                              end = start ? constants(inputOf(n, 2)) : std::nullopt,
                                              axes = start ? constants(inputOf(n, 3)) : std::nullopt,
                                              steps = start ? constants(inputOf(n, 4)) : std::nullopt;
    if (n.op_type() != "Slice" || !start || !end || !axes || !steps || start->size() != 1 ||
        (*end)[0] < (int64_t{1} << 31) || ((*axes)[0] != 1 && (*axes)[0] != -1) || (*steps)[0] != 2 ||
        (*start)[0] > 1)
      return fail("the gate/up result is not split into alternate columns");
    ((*start)[0] == 0 ? gateSlice : upSlice) = &n;
  }
  if (!gateSlice || !upSlice)
    return fail("the gate/up result is not split into alternate columns");
  nodes.append({gateSlice, upSlice});
  // Clamps: gate to at most L (Clip with no lower bound, or Min, as the
  // f16 export writes it), up to [-L, L] (both or neither).
  std::string gate = outputOf(*gateSlice, 0), up = outputOf(*upSlice, 0);
  const onnx::NodeProto *gateClip = g.onlyUser(gate, "Clip"), *upClip = g.onlyUser(up, "Clip");
  const onnx::NodeProto *gateMin = gateClip ? nullptr : g.onlyUser(gate, "Min");
  if (gateMin && gateMin->input_size() != 2)
    gateMin = nullptr;
  if (gateMin)
    gateClip = gateMin;
  if (gateClip || upClip) {
    auto bound = [&](const onnx::NodeProto *clip, int input) {
      return clip && clip->input_size() == 3 && !inputOf(*clip, input).empty() ? scalar(inputOf(*clip, input))
                                                                             : std::nullopt;
    };
    std::optional<float> gateMax = gateMin ? scalar(otherOperand(*gateMin, gate)) : bound(gateClip, 2);
    std::optional<float> upMin = bound(upClip, 1), upMax = bound(upClip, 2);
    float limit = gateMax.value_or(0.0f);
    if (!gateMax || bound(gateClip, 1) || upMin != -limit || upMax != limit || !(limit > 0))
      return fail("the gate and up clamps are not min(g, L) and clamp(u, -L, L)");
    oss.limit = limit;
    nodes.append({gateClip, upClip});
    gate = outputOf(*gateClip, 0);
    up = outputOf(*upClip, 0);
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
  if (!glu || !scaled || !alpha || inputOf(*sigmoid, 0) != outputOf(*scaled, 0))
    return fail("the gate is not g · sigmoid(α g)");
  oss.alpha = *alpha;
  const onnx::NodeProto *addBeta = g.onlyUser(up, "Add");
  std::optional<float> beta = addBeta ? scalar(otherOperand(*addBeta, up)) : std::nullopt;
  const onnx::NodeProto *product = addBeta ? g.onlyUser(outputOf(*addBeta, 0), "Mul") : nullptr;
  if (!beta || !product || otherOperand(*product, outputOf(*addBeta, 0)) != outputOf(*glu, 0))
    return fail("the activation is not (u + β) · glu");
  oss.beta = *beta;
  nodes.append({scaled, sigmoid, glu, addBeta, product});
  return product;
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
  const onnx::NodeProto *softmax = g.onlyUser(outputOf(t, 0), "Softmax");
  std::optional<llvm::SmallVector<int64_t>> k = constants(inputOf(t, 1));
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
  oss.logits = inputOf(t, 0);
  nodes.push_back(softmax);
  auto otherOperand = [](const onnx::NodeProto &n, llvm::StringRef value) -> std::string {
    return inputOf(n, 0) == value ? inputOf(n, 1) : inputOf(n, 0);
  };
  // Gate weights per slot; expert ids -> the four gathered expert tensors
  // (weights rank 3, biases rank 2).
  std::optional<SlotOperands> perSlot =
      matchSlotOperands(g, constants, outputOf(*softmax, 0), outputOf(t, 1), nodes, why);
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
      for (int j : g.users(outputOf(n, 0)))
        gathers.push_back(&g.graph.node(j));
    } else {
      gathers.push_back(&n);
    }
    for (const onnx::NodeProto *gather : gathers) {
      bool isGather = (gather->op_type() == "Gather" && intAttr(*gather, "axis", 0) == 0 && inputOf(*gather, 1) == ids) ||
                      (gather->op_type() == "GatherND" && intAttr(*gather, "batch_dims", 0) == 0);
      std::optional<llvm::SmallVector<int64_t>> shape =
          isGather && g.isConstant(inputOf(*gather, 0)) ? constants.shape(inputOf(*gather, 0)) : std::nullopt;
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
    const onnx::NodeProto *mm = g.onlyUser(outputOf(*gatherW, 0), "MatMul");
    const onnx::NodeProto *unsq = mm && inputOf(*mm, 1) == outputOf(*gatherW, 0) ? g.producer(inputOf(*mm, 0)) : nullptr;
    const onnx::NodeProto *sq = mm ? g.onlyUser(outputOf(*mm, 0), "Squeeze") : nullptr;
    const onnx::NodeProto *add = sq ? g.onlyUser(outputOf(*sq, 0), "Add") : nullptr;
    if (!unsq || unsq->op_type() != "Unsqueeze" || !hasAxis(*unsq, constants, 1) || !hasAxis(*sq, constants, 1) || !add)
      return "";
    std::string bias = otherOperand(*add, outputOf(*sq, 0));
    gatherB = nullptr;
    for (const onnx::NodeProto *b : biasGathers)
      if (outputOf(*b, 0) == bias)
        gatherB = b;
    if (!gatherB)
      return "";
    lhs = inputOf(*unsq, 0);
    chain.append({mm, unsq, sq, add});
    std::string out = outputOf(*add, 0);
    if (const onnx::NodeProto *u2 = g.onlyUser(out, "Unsqueeze"); u2 && hasAxis(*u2, constants, 1))
      if (const onnx::NodeProto *s2 = g.onlyUser(outputOf(*u2, 0), "Squeeze"); s2 && hasAxis(*s2, constants, 1)) {
        chain.append({u2, s2});
        out = outputOf(*s2, 0);
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
    const onnx::NodeProto *expand = reshape && reshape->op_type() == "Reshape" ? g.producer(inputOf(*reshape, 0)) : nullptr;
    const onnx::NodeProto *unsqX = expand && expand->op_type() == "Expand" ? g.producer(inputOf(*expand, 0)) : nullptr;
    if (!unsqX || unsqX->op_type() != "Unsqueeze" || !hasAxis(*unsqX, constants, 1))
      continue;
    block.x = inputOf(*unsqX, 0);
    chain.append({reshape, expand, unsqX});
    nodes.append(chain.begin(), chain.end());
    gather13 = weightGathers[first];
    gather2 = weightGathers[1 - first];
    bias13 = bias;
    h = out;
  }
  if (h.empty())
    return fail("no expert GEMM with bias reads the token rows (x repeated once per slot)");
  const onnx::NodeProto *product = matchGptOssActivation(g, constants, h, oss, nodes, why);
  if (!product)
    return std::nullopt;
  // Down GEMM with bias on the activation.
  llvm::SmallVector<const onnx::NodeProto *> chain;
  std::string lhs;
  std::string o = expertLinear(gather2, lhs, bias2, chain);
  if (o.empty() || lhs != outputOf(*product, 0) || bias2 == bias13)
    return fail("the activation does not feed the down GEMM with its bias");
  nodes.append(chain.begin(), chain.end());
  // Scaled by the gate weights, summed over each token's k slots.
  const onnx::NodeProto *scale = g.onlyUser(o, "Mul");
  std::string summed = scale && otherOperand(*scale, o) == outputOf(*unsqW, 0)
                           ? slotSum(g, constants, outputOf(*scale, 0), block.k, nodes)
                           : std::string();
  if (summed.empty())
    return fail("the weighted rows are not summed per token over the k slots");
  nodes.push_back(scale);
  block.gateUp = inputOf(*gather13, 0);
  block.down = inputOf(*gather2, 0);
  oss.upBias = inputOf(*bias13, 0);
  oss.downBias = inputOf(*bias2, 0);
  block.gptOss = oss;
  block.output = summed;
  block.last = g.indexOf(g.producer(summed));
  if (!clipKeepsExperts(constants, clip, block.gateUp))
    return fail("the expert ids are clipped to a range narrower than the experts");
  return finishBlock(g, std::move(block), nodes, topk, why);
}

} // namespace mlir::moe::onnx_import::blocks
