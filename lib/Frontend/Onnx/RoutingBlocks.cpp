//===- RoutingBlocks.cpp - the routing MoE blocks start with --------------===//
//
// Softmax top-k over a constant router (optionally renormalised), or
// DeepSeek-V3's sigmoid routing with a selection bias and group-limited
// top-k as transformers writes it.
//
//===----------------------------------------------------------------------===//

#include "BlockMatching.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe::onnx_import;

namespace mlir::moe::onnx_import::blocks {

/// `w / ReduceSum(w, -1, keepdims)` (for 16-bit w maybe summed in f32
/// between Casts), the sum optionally plus a positive constant (set in
/// `epsilon`: LFM2-MoE's 1e-6; one of at most 1e-15, transformers' `+ 1e-20`,
/// moves no f32 sum above 2e-8, and top-k routing weights sum to far more,
/// so it is left out), or clamped from below by at most `clampBound`
/// (Ernie 4.5's `clamp(min=norm_min)`, DeepSpeed's `clamp(min=finfo.eps)`:
/// the same wherever the picked weights sum to more; 1e-12 unless the
/// caller knows a larger least sum):
/// appends the nodes and returns the Div's output; nullopt when `w` is not
/// renormalised, an empty string when it is summed but not like this.
static std::optional<std::string> renormalised(const GraphIndex &g, const ConstantLookup &constants,
                                               const std::string &w,
                                               llvm::SmallVector<const onnx::NodeProto *> &nodes, double &epsilon,
                                               double clampBound = 1e-12) {
  epsilon = 0;
  // A 16-bit w may be summed in f32 and cast back (PyTorch's sum); the
  // layer divides in f32, which differs from the graph's 16-bit division
  // by its rounding only.
  std::string denominator;
  llvm::SmallVector<const onnx::NodeProto *> summed;
  const onnx::NodeProto *sum = sumReading(g, w, /*onlyUser=*/false, denominator, summed);
  if (!sum)
    return std::nullopt;
  const onnx::NodeProto *div = g.userOfType(w, "Div");
  // What keeps the denominator off 0: an Add of a tiny constant or a Clip.
  const onnx::NodeProto *guard = g.onlyUser(denominator, "Add");
  if (guard) {
    std::optional<float> c =
        scalarFloat(constants, inputOf(*guard, 0) == denominator ? inputOf(*guard, 1) : inputOf(*guard, 0));
    if (!c || !std::isfinite(*c) || *c < 0)
      return std::string();
    if (*c > 1e-15f)
      epsilon = *c;
    denominator = outputOf(*guard, 0);
  } else if ((guard = g.onlyUser(denominator, "Clip"))) {
    std::optional<float> low = scalarFloat(constants, inputOf(*guard, 1));
    if (inputOf(*guard, 0) != denominator || !low || double(*low) > clampBound || !inputOf(*guard, 2).empty())
      return std::string();
    denominator = outputOf(*guard, 0);
  }
  // A sum without its axis gets it back after the guard (torch's
  // `(g1 + g2).clamp(min=eps)[:, None]`, summed over slots).
  const onnx::NodeProto *restored = nullptr;
  if (intAttr(*sum, "keepdims", 1) == 0) {
    restored = g.onlyUser(denominator, "Unsqueeze");
    if (!restored || !hasAxis(*restored, constants, -1))
      return std::string();
    denominator = outputOf(*restored, 0);
  }
  // F.normalize expands the norm to w's shape before dividing, which the
  // division's broadcast does anyway: Expand(norm, Shape(w)), or to
  // [Shape(x)[:1], k] as the dynamo exporter writes it.
  const onnx::NodeProto *expand = g.onlyUser(denominator, "Expand");
  if (expand && inputOf(*expand, 0) != denominator)
    expand = nullptr;
  if (expand) {
    const onnx::NodeProto *target = g.producer(inputOf(*expand, 1));
    bool shapeOfW = target && target->op_type() == "Shape" && inputOf(*target, 0) == w && isWholeShape(*target);
    bool rowsAndSlots = false;
    if (target && target->op_type() == "Concat" && target->input_size() == 2) {
      const onnx::NodeProto *rows = g.producer(inputOf(*target, 0));
      std::optional<llvm::SmallVector<int64_t>> slots = constants(inputOf(*target, 1));
      // The slots: 1, or the k of the TopK whose values w are.
      const onnx::NodeProto *topk = g.producer(w);
      bool kOfW = topk && topk->op_type() == "TopK" && constants(inputOf(*topk, 1)) == slots;
      bool slotsOfW = slots && slots->size() == 1 && ((*slots)[0] == 1 || kOfW);
      rowsAndSlots = rows && rows->op_type() == "Shape" && intAttr(*rows, "start", 0) == 0 &&
                     intAttr(*rows, "end", 0) == 1 && slotsOfW;
    }
    if (!shapeOfW && !rowsAndSlots)
      return std::string();
    denominator = outputOf(*expand, 0);
  }
  if (!div || inputOf(*div, 0) != w || inputOf(*div, 1) != denominator || !hasAxis(*sum, constants, -1))
    return std::string();
  nodes.append(summed.begin(), summed.end());
  nodes.push_back(div);
  if (guard)
    nodes.push_back(guard);
  if (restored)
    nodes.push_back(restored);
  if (expand)
    nodes.push_back(expand);
  return outputOf(*div, 0);
}

static std::optional<std::pair<std::string, std::string>>
finishBiasedSelection(const GraphIndex &g, const ConstantLookup &constants, const onnx::NodeProto &t,
                      const onnx::NodeProto &scores, MoeBlock &block, MoeBlock::DeepSeekRouting routing,
                      llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why);

/// DeepSeek-V3's routing as transformers writes it, ending at TopK node `t`:
///
///   s = Sigmoid(logits); sb = s + bias                    (bias constant [E])
///   gs = ReduceSum(TopK(Reshape(sb, [-1, G, E / G]), 2).values, -1)
///   mask = ScatterElements(zeros, TopK(gs, topk_groups).indices, ones, axis 1)
///   t = TopK(Where([Cast](Not(Cast(Reshape(Expand(Unsqueeze(mask, -1), ..), [-1, E])))), -inf, sb), k)
///   w = GatherElements(s, t.indices, axis 1) [/ ReduceSum(w, -1)] [· scale]
///
/// or without groups t = TopK(s + bias, k), s a sigmoid or a softmax (Ernie
/// 4.5's selection on softmax scores plus `moe_statics`).
///
/// Returns the logits' value and the weights' (after the optional
/// renormalisation and scale); fills block.deepSeek, k and normalize.
static std::optional<std::pair<std::string, std::string>>
matchDeepSeekRouting(const GraphIndex &g, const ConstantLookup &constants, const onnx::NodeProto &t, MoeBlock &block,
                     llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why) {
  auto producer = [&](llvm::StringRef value, llvm::StringRef op) -> const onnx::NodeProto * {
    const onnx::NodeProto *n = g.producer(value);
    return n && n->op_type() == op ? n : nullptr;
  };
  auto other = [](const onnx::NodeProto &n, llvm::StringRef value) -> std::string {
    return inputOf(n, 0) == value ? inputOf(n, 1) : inputOf(n, 0);
  };
  const onnx::NodeProto *where = producer(inputOf(t, 0), "Where");
  // TorchScript casts the negated mask to bool once more.
  const onnx::NodeProto *boolCast = where ? producer(inputOf(*where, 0), "Cast") : nullptr;
  if (boolCast && intAttr(*boolCast, "to", 0) != onnx::TensorProto::BOOL)
    boolCast = nullptr;
  const onnx::NodeProto *notMask = where ? producer(boolCast ? inputOf(*boolCast, 0) : inputOf(*where, 0), "Not")
                                         : nullptr;
  std::optional<std::vector<float>> fill = where && constants.floats ? constants.floats(inputOf(*where, 1)) : std::nullopt;
  // Without groups the top-k reads the biased scores directly.
  const onnx::NodeProto *biased = where ? producer(inputOf(*where, 2), "Add") : producer(inputOf(t, 0), "Add");
  if (where && (!notMask || !fill || fill->size() != 1 || !std::isinf((*fill)[0]) || (*fill)[0] > 0))
    return std::nullopt;
  if (!biased)
    return std::nullopt;
  // Sigmoid scores (DeepSeek-V3), or a softmax over the last axis (Ernie
  // 4.5, ungrouped).
  const onnx::NodeProto *scores = nullptr;
  for (int side = 0; side < 2 && !scores; ++side) {
    const onnx::NodeProto *p = g.producer(inputOf(*biased, side));
    if (p && (p->op_type() == "Sigmoid" ||
              (!where && p->op_type() == "Softmax" && intAttr(*p, "axis", -1) == -1)))
      scores = p;
  }
  std::string bias = scores ? other(*biased, outputOf(*scores, 0)) : "";
  std::optional<llvm::SmallVector<int64_t>> biasShape = constants.shape(bias);
  if (!scores || !g.isConstant(bias) || !biasShape || biasShape->size() != 1)
    return std::nullopt;
  int64_t experts = (*biasShape)[0];
  MoeBlock::DeepSeekRouting routing;
  routing.selectionBias = bias;
  routing.softmaxScores = scores->op_type() == "Softmax";
  if (!where) {
    nodes.append({&t, biased, scores});
    return finishBiasedSelection(g, constants, t, *scores, block, routing, nodes, why);
  }
  // The group mask, back to the experts: Cast(Reshape(Expand(Unsqueeze(mask, -1))))
  const onnx::NodeProto *cast = producer(inputOf(*notMask, 0), "Cast");
  const onnx::NodeProto *flat = cast ? producer(inputOf(*cast, 0), "Reshape") : nullptr;
  const onnx::NodeProto *expand = flat ? producer(inputOf(*flat, 0), "Expand") : nullptr;
  const onnx::NodeProto *unsq = expand ? producer(inputOf(*expand, 0), "Unsqueeze") : nullptr;
  const onnx::NodeProto *scatter = unsq ? producer(inputOf(*unsq, 0), "ScatterElements") : nullptr;
  const onnx::NodeProto *groupTop = scatter ? producer(inputOf(*scatter, 1), "TopK") : nullptr;
  const onnx::NodeProto *groupScore = groupTop ? producer(inputOf(*groupTop, 0), "ReduceSum") : nullptr;
  const onnx::NodeProto *top2 = groupScore ? producer(inputOf(*groupScore, 0), "TopK") : nullptr;
  const onnx::NodeProto *grouped = top2 ? producer(inputOf(*top2, 0), "Reshape") : nullptr;
  std::optional<llvm::SmallVector<int64_t>> groupShape = grouped ? constants(inputOf(*grouped, 1)) : std::nullopt;
  std::optional<llvm::SmallVector<int64_t>> two = top2 ? constants(inputOf(*top2, 1)) : std::nullopt;
  std::optional<llvm::SmallVector<int64_t>> topkGroups = groupTop ? constants(inputOf(*groupTop, 1)) : std::nullopt;
  if (!grouped || inputOf(*grouped, 0) != outputOf(*biased, 0) || !hasAxis(*unsq, constants, -1) ||
      intAttr(*scatter, "axis", 0) != 1 || inputOf(*scatter, 1) != outputOf(*groupTop, 1) || !hasAxis(*groupScore, constants, -1) ||
      intAttr(*groupScore, "keepdims", 1) != 0 || inputOf(*groupScore, 0) != outputOf(*top2, 0) || !groupShape ||
      groupShape->size() != 3 || (*groupShape)[1] <= 0 || (*groupShape)[1] * (*groupShape)[2] != experts || !two ||
      two->size() != 1 || (*two)[0] != 2 || !topkGroups || topkGroups->size() != 1 ||
      intAttr(*top2, "largest", 1) != 1 || intAttr(*groupTop, "largest", 1) != 1 || intAttr(*top2, "axis", -1) != -1 ||
      intAttr(*groupTop, "axis", -1) != -1)
    return std::nullopt;
  routing.numGroups = (*groupShape)[1];
  routing.topkGroups = (*topkGroups)[0];
  nodes.append({&t, where, notMask, biased, scores, cast, flat, expand, unsq, scatter, groupTop, groupScore, top2,
                grouped});
  if (boolCast)
    nodes.push_back(boolCast);
  return finishBiasedSelection(g, constants, t, *scores, block, routing, nodes, why);
}

/// The weights of a selection on biased scores, from TopK `t`: the
/// unbiased `scores` at the picks, GatherElements(scores, t.indices, axis
/// -1) [/ their sum] [· scale]. Returns the logits' and the weights'
/// values; fills block.deepSeek, k and normalize.
static std::optional<std::pair<std::string, std::string>>
finishBiasedSelection(const GraphIndex &g, const ConstantLookup &constants, const onnx::NodeProto &t,
                      const onnx::NodeProto &scores, MoeBlock &block, MoeBlock::DeepSeekRouting routing,
                      llvm::SmallVector<const onnx::NodeProto *> &nodes, std::string &why) {
  auto other = [](const onnx::NodeProto &n, llvm::StringRef value) -> std::string {
    return inputOf(n, 0) == value ? inputOf(n, 1) : inputOf(n, 0);
  };
  const onnx::NodeProto *gather = g.userOfType(outputOf(t, 1), "GatherElements");
  std::optional<llvm::SmallVector<int64_t>> k = constants(inputOf(t, 1));
  int64_t gatherAxis = gather ? intAttr(*gather, "axis", 0) : 0;
  if (!gather || inputOf(*gather, 0) != outputOf(scores, 0) || inputOf(*gather, 1) != outputOf(t, 1) ||
      (gatherAxis != 1 && gatherAxis != -1) || !k || k->size() != 1 || intAttr(t, "largest", 1) != 1 ||
      intAttr(t, "axis", -1) != -1)
    return std::nullopt;
  block.k = (*k)[0];
  nodes.push_back(gather);
  std::string w = outputOf(*gather, 0);
  if (std::optional<std::string> divided = renormalised(g, constants, w, nodes, block.normEpsilon)) {
    if (divided->empty()) {
      why = "the weights of the selection on biased scores are summed but not divided by their sum (plus a "
            "non-negative constant, or clamped from below at 1e-12 at most)";
      return std::nullopt;
    }
    block.normalize = true;
    w = *divided;
  }
  if (const onnx::NodeProto *mul = g.onlyUser(w, "Mul")) {
    std::optional<std::vector<float>> scale = constants.floats ? constants.floats(other(*mul, w)) : std::nullopt;
    if (scale && scale->size() == 1 && (*scale)[0] > 0) {
      routing.scale = (*scale)[0];
      nodes.push_back(mul);
      w = outputOf(*mul, 0);
    }
  }
  block.deepSeek = routing;
  return std::make_pair(inputOf(scores, 0), w);
}

/// The routing every block form starts with, at TopK node `topk`:
/// TopK(Softmax(MatMul(x, Wr))) with Wr constant, the weights optionally
/// divided by their sum, or Softmax(TopK(MatMul(x, Wr)).values) (the picks'
/// softmax: the same weights renormalised). Fills the block's x, router, k and normalize and
/// `nodes`; returns the (renormalised) weights' value. On failure `why`
/// holds the reason, or is empty when this is not MoE routing at all.
std::optional<std::string> matchRouting(const GraphIndex &g, const ConstantLookup &constants, int topk,
                                        MoeBlock &block, llvm::SmallVector<const onnx::NodeProto *> &nodes,
                                        std::string &why) {
  const onnx::NodeProto &t = g.graph.node(topk);
  why.clear();
  // The scores top-k selects from: Softmax(logits), or Sigmoid(logits);
  // in a 16-bit model maybe computed in 16 bits and widened to f32.
  const onnx::NodeProto *scores = g.producer(inputOf(t, 0));
  const onnx::NodeProto *widened = nullptr;
  if (scores && scores->op_type() == "Cast" && intAttr(*scores, "to", 0) == onnx::TensorProto::FLOAT) {
    const onnx::NodeProto *computed = g.producer(inputOf(*scores, 0));
    if (computed && (computed->op_type() == "Softmax" || computed->op_type() == "Sigmoid") &&
        g.users(outputOf(*computed, 0)).size() == 1) {
      widened = scores;
      scores = computed;
    }
  }
  // Top-k of the log-softmax with the picks' exp: softmax top-k (log keeps
  // the order, and exp(log_softmax(z)) is softmax(z) up to rounding).
  const onnx::NodeProto *picksExp = nullptr;
  if (scores && scores->op_type() == "LogSoftmax" && !widened && t.output_size() == 2) {
    picksExp = g.onlyUser(outputOf(t, 0), "Exp");
    if (!picksExp) {
      why = "the top-k reads a log-softmax, but its values are not exponentiated (exp(top-k of log_softmax) is "
            "softmax top-k)";
      return std::nullopt;
    }
  }
  std::optional<std::pair<std::string, std::string>> deepSeek;
  llvm::SmallVector<const onnx::NodeProto *> deepSeekNodes;
  // Sigmoid scores: top-k of sigmoid(logits) (sigmoid keeps the order).
  const onnx::NodeProto *sigmoid = scores && scores->op_type() == "Sigmoid" ? scores : nullptr;
  if (!scores || (scores->op_type() != "Softmax" && !sigmoid && !picksExp)) {
    deepSeek = matchDeepSeekRouting(g, constants, t, block, deepSeekNodes, why);
    if (!deepSeek && !why.empty())
      return std::nullopt;
    scores = nullptr;
  }
  // Top-k of the logits, then the softmax over the picks (the same weights
  // as softmax top-k renormalised), or their sigmoid (top-k of sigmoid).
  const onnx::NodeProto *picksSoftmax =
      !scores && !deepSeek && t.output_size() == 2 ? g.onlyUser(outputOf(t, 0), "Softmax") : nullptr;
  const onnx::NodeProto *picksSigmoid = !scores && !deepSeek && !picksSoftmax && t.output_size() == 2
                                            ? g.onlyUser(outputOf(t, 0), "Sigmoid")
                                            : nullptr;
  if ((!scores && !deepSeek && !picksSoftmax && !picksSigmoid) || t.output_size() != 2)
    return std::nullopt;
  block.sigmoid = sigmoid || picksSigmoid;
  block.scoresRounded = widened != nullptr;
  llvm::SmallVector<const onnx::NodeProto *> routerNodes;
  llvm::SmallVector<const onnx::NodeProto *> castNodes;
  std::string logits = throughFloatCastProducer(
      g, deepSeek ? deepSeek->first : scores ? inputOf(*scores, 0) : inputOf(t, 0), castNodes);
  // A temperature (logits / tau): folded into the router's weight and bias,
  // a linear map as well.
  logits = unscaledLogits(g, constants, logits, block.routerScale, castNodes);
  block.routerWeight = biasedLinearOf(g, constants, logits, routerNodes, block.routerBias);
  if (block.routerWeight.empty()) {
    // A router scaled by a non-constant: say so (the other nodes are not a router at all).
    auto isRouter = [&](const std::string &v) {
      llvm::SmallVector<const onnx::NodeProto *> unused;
      std::string bias;
      return !biasedLinearOf(g, constants, v, unused, bias).empty();
    };
    if (const onnx::NodeProto *scaled = g.producer(logits);
        scaled && (scaled->op_type() == "Div" || scaled->op_type() == "Mul") &&
        (isRouter(inputOf(*scaled, 0)) || isRouter(inputOf(*scaled, 1))))
      why = "the router logits are scaled by something other than one constant (a temperature folds into the "
            "router only as a finite non-zero scalar constant)";
    return std::nullopt;
  }
  const onnx::NodeProto *router = routerNodes.front();
  // The bias's Add, if any, belongs to the block as well.
  nodes.append(routerNodes.begin() + 1, routerNodes.end());
  auto fail = [&](llvm::StringRef reason) -> std::optional<std::string> {
    why = reason.str();
    return std::nullopt;
  };
  block.x = inputOf(*router, 0);
  if (const onnx::NodeProto *widen = g.producer(block.x);
      widen && widen->op_type() == "Cast" && intAttr(*widen, "to", 0) == onnx::TensorProto::FLOAT &&
      g.users(block.x).size() == 1) {
    block.x = inputOf(*widen, 0);
    block.routerOnWidenedX = true;
    nodes.push_back(widen);
  }
  // transformers' routers reshape x [T, H] to [-1, H] again: the same
  // tensor when x itself comes from a Reshape to [*, H].
  // (Where the source's width is not known here, importing the layer
  // checks it against the router's.)
  if (const onnx::NodeProto *view = g.producer(block.x); view && view->op_type() == "Reshape") {
    const onnx::NodeProto *source = g.producer(inputOf(*view, 0));
    std::optional<llvm::SmallVector<int64_t>> viewShape = constants(inputOf(*view, 1));
    std::optional<llvm::SmallVector<int64_t>> sourceShape =
        source && source->op_type() == "Reshape" ? constants(inputOf(*source, 1)) : std::nullopt;
    bool sameWidth = sourceShape && sourceShape->size() == 2 && viewShape && viewShape->size() == 2 &&
                     (*viewShape)[1] == (*sourceShape)[1] &&
                     ((*viewShape)[0] == -1 || (*viewShape)[0] == (*sourceShape)[0]);
    bool rowsOfSource = !sourceShape && source && source->op_type() == "Reshape" && constants.rank &&
                        constants.rank(inputOf(*view, 0)) == 2 && viewShape && viewShape->size() == 2 &&
                        (*viewShape)[0] == -1;
    if (viewShape && viewShape->size() == 2 && (*viewShape)[1] > 0 && (sameWidth || rowsOfSource)) {
      block.xView = block.x;
      block.x = inputOf(*view, 0);
      nodes.push_back(view);
    }
  }
  // Reshapes of the same source to the same shape are x as well.
  if (const onnx::NodeProto *view = g.producer(block.x); view && view->op_type() == "Reshape") {
    std::optional<llvm::SmallVector<int64_t>> shape = constants(inputOf(*view, 1));
    for (int user : g.users(inputOf(*view, 0))) {
      const onnx::NodeProto &twin = g.graph.node(user);
      if (&twin != view && twin.op_type() == "Reshape" && inputOf(twin, 0) == inputOf(*view, 0) && shape &&
          constants(inputOf(twin, 1)) == shape && intAttr(twin, "allowzero", 0) == intAttr(*view, "allowzero", 0))
        block.xTwins.push_back(outputOf(twin, 0));
    }
  }
  nodes.append(castNodes.begin(), castNodes.end());
  if (deepSeek) {
    nodes.push_back(router);
    nodes.append(deepSeekNodes.begin(), deepSeekNodes.end());
    // A 16-bit model narrows the f32 weights back to its type.
    return throughFloatCastUser(g, deepSeek->second, nodes);
  }
  std::optional<llvm::SmallVector<int64_t>> k = constants(inputOf(t, 1));
  if (!k || k->size() != 1)
    return fail("K is not a constant");
  block.k = (*k)[0];
  if (picksSoftmax) {
    int64_t axis = intAttr(*picksSoftmax, "axis", -1);
    if (intAttr(t, "largest", 1) != 1 || intAttr(t, "axis", -1) != -1 || (axis != -1 && axis != 1))
      return fail("the top-k or the softmax over its picks is not over the last axis, largest first");
    nodes.append({router, &t, picksSoftmax});
    block.normalize = true;
    return throughFloatCastUser(g, outputOf(*picksSoftmax, 0), nodes);
  }
  std::string w = outputOf(t, 0);
  if (picksSigmoid) {
    if (intAttr(t, "largest", 1) != 1 || intAttr(t, "axis", -1) != -1)
      return fail("the top-k before the sigmoid is not over the last axis, largest first");
    nodes.append({router, &t, picksSigmoid});
    w = throughFloatCastUser(g, outputOf(*picksSigmoid, 0), nodes);
  } else {
    if (intAttr(t, "largest", 1) != 1 || intAttr(t, "sorted", 1) != 1 || intAttr(t, "axis", -1) != -1 ||
        (!sigmoid && intAttr(*scores, "axis", -1) != -1))
      return fail("the softmax or top-k is not over the last axis, largest first");
    nodes.append({router, scores, &t});
    if (widened)
      nodes.push_back(widened);
    if (picksExp) {
      nodes.push_back(picksExp);
      w = outputOf(*picksExp, 0);
    }
  }
  // The k largest of E softmax probabilities sum to at least k / E: a
  // clamp below half of that is never reached.
  double clampBound = 1e-12;
  if (std::optional<llvm::SmallVector<int64_t>> shape = constants.shape(block.routerWeight.name);
      shape && shape->size() == 2 && !block.sigmoid && block.k > 0) {
    int64_t experts = block.routerWeight.rows ? (*shape)[0] : (*shape)[1];
    if (experts > 0)
      clampBound = std::max(clampBound, 0.5 * double(block.k) / double(experts));
  }
  if (std::optional<std::string> divided = renormalised(g, constants, w, nodes, block.normEpsilon, clampBound)) {
    if (divided->empty())
      return fail("the top-k weights are summed but not divided by their sum (plus a non-negative constant, or "
                  "clamped from below by at most half the least sum of k of the softmax probabilities)");
    block.normalize = true;
    w = *divided;
  }
  // A 16-bit model narrows the f32 weights back to its type.
  return throughFloatCastUser(g, w, nodes);
}

} // namespace mlir::moe::onnx_import::blocks
