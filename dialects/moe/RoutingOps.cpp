//===- RoutingOps.cpp - verifiers of the routing ops ----------------------===//
//
// moe.fused_routing, group_mean, expand_groups, router, gating_residual,
// score, topk, threshold, expert_choice, renormalize, restrict_slots. Each
// constraint's label names its negative test in test/Dialect/Moe/.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoeOps.h"
#include "dialects/moe/OpVerification.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/STLExtras.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::verification;

// Routing ops
//===----------------------------------------------------------------------===//

LogicalResult FusedRoutingOp::verify() {
  Block &body = getBody().front();
  // fused_routing_c1: block arguments mirror the inputs.
  if (body.getArgumentTypes() != getInputs().getTypes())
    return emitOpError("body arguments must have the types of the inputs");
  // fused_routing_c2: the yield gives the results.
  auto yield = body.empty() ? YieldOp() : dyn_cast<YieldOp>(body.back());
  if (!yield || yield.getValues().getTypes() != getResultTypes())
    return emitOpError("body must end in a moe.yield of (weights, indices, logits)");
  // fused_routing_c3: exactly one router and one selection, and only routing
  // ops besides the scalar/tensor glue of arith and tensor.
  int routers = 0, selections = 0;
  for (Operation &op : body.without_terminator()) {
    if (isa<RouterOp>(op))
      ++routers;
    else if (isa<TopKOp, ThresholdOp, ExpertChoiceOp>(op))
      ++selections;
    else if (!isa<GatingResidualOp, ScoreOp, RenormalizeOp>(op) &&
             !isa<arith::ArithDialect, tensor::TensorDialect>(op.getDialect()))
      return op.emitOpError("cannot be part of a moe.fused_routing body");
  }
  if (routers != 1 || selections != 1)
    return emitOpError() << "body must hold one moe.router and one selection, got " << routers
                         << " and " << selections;
  return success();
}

/// Number of groups of `size` rows in `rows` rows (dynamic stays dynamic).
static int64_t groupsOf(int64_t rows, int64_t size) {
  return ShapedType::isDynamic(rows) ? rows : (rows + size - 1) / size;
}

LogicalResult GroupMeanOp::verify() {
  ShapeChecker check(*this);
  // group_mean_c1: group_size >= 1; result [ceil(T / S), H] of x's type.
  if (getGroupSize() < 1)
    return emitOpError() << "group_size must be at least 1, got " << getGroupSize();
  Type x = getX().getType(), out = getResult().getType();
  if (failed(check.rank("x", x, 2)) || failed(check.rank("result", out, 2)) ||
      failed(check.dim("result", out, 0, groupsOf(dimOf(getX(), 0), getGroupSize()),
                       "the number of groups")) ||
      failed(check.dim("result", out, 1, dimOf(getX(), 1), "the hidden size")) ||
      failed(check.sameElementType("result", out, "x", x)))
    return failure();
  return success();
}

LogicalResult ExpandGroupsOp::verify() {
  ShapeChecker check(*this);
  // expand_groups_c1: values [ceil(T / S), ...] -> [T, ...] of values' type.
  if (getGroupSize() < 1)
    return emitOpError() << "group_size must be at least 1, got " << getGroupSize();
  auto values = cast<RankedTensorType>(getValues().getType());
  auto out = cast<RankedTensorType>(getResult().getType());
  int64_t tokens = dimOf(getLike(), 0);
  if (values.getRank() < 1 || out.getRank() != values.getRank())
    return emitOpError() << "result " << out << " must have the rank of values " << values;
  if (failed(check.dim("values", values, 0, groupsOf(tokens, getGroupSize()), "the number of groups")) ||
      failed(check.dim("result", out, 0, tokens, "the number of tokens")) ||
      failed(check.sameElementType("result", out, "values", values)))
    return failure();
  for (int64_t d = 1; d < values.getRank(); ++d)
    if (failed(check.dim("result", out, d, values.getDimSize(d), "the values' dimension")))
      return failure();
  return success();
}

LogicalResult RouterOp::verify() {
  ShapeChecker check(*this);
  Type x = getX().getType(), w = getWeight().getType(), z = getLogits().getType();
  // router_c1: x [T, H], weight [E, H] (or [E, R] after hidden [R, H]), logits [T, E].
  if (failed(check.rank("x", x, 2)) || failed(check.rank("weight", w, 2)) ||
      failed(check.rank("result", z, 2)))
    return failure();
  int64_t in = dimOf(getX(), 1);
  if (Value h = getHidden()) {
    if (failed(check.rank("hidden weight", h.getType(), 2)) ||
        failed(check.dim("hidden weight", h.getType(), 1, in, "the hidden size of x")))
      return failure();
    in = dimOf(h, 0);
  }
  if (failed(check.dim("weight", w, 1, in, getHidden() ? "the router hidden size" : "the hidden size of x")) ||
      failed(check.dim("result", z, 0, dimOf(getX(), 0), "the number of tokens")) ||
      failed(check.dim("result", z, 1, dimOf(getWeight(), 0), "the number of experts")))
    return failure();
  // router_c2: the bias has one entry per expert.
  if (Value bias = getBias())
    if (failed(check.rank("bias", bias.getType(), 1)) ||
        failed(check.dim("bias", bias.getType(), 0, dimOf(getWeight(), 0), "the number of experts")))
      return failure();
  return success();
}

LogicalResult GatingResidualOp::verify() {
  ShapeChecker check(*this);
  Type z = getLogits().getType();
  // gating_residual_c1: prev and result like logits [T, E]; weight [E, E].
  if (failed(check.rank("logits", z, 2)) ||
      failed(check.sameShape("prev", getPrev().getType(), "logits", z)) ||
      failed(check.sameShape("result", getResult().getType(), "logits", z)) ||
      failed(check.rank("weight", getWeight().getType(), 2)) ||
      failed(check.dim("weight", getWeight().getType(), 0, dimOf(getLogits(), 1),
                       "the number of experts")) ||
      failed(check.dim("weight", getWeight().getType(), 1, dimOf(getLogits(), 1),
                       "the number of experts")))
    return failure();
  return success();
}

LogicalResult ScoreOp::verify() {
  ShapeChecker check(*this);
  // score_c1: scores have the shape of the logits [T, E].
  if (failed(check.rank("logits", getLogits().getType(), 2)) ||
      failed(check.sameShape("result", getScores().getType(), "logits", getLogits().getType())))
    return failure();
  // score_c2: Gumbel parameters belong to gumbel_softmax, and are valid.
  if (getFunc() != ScoringFunc::gumbel_softmax) {
    if (getTauAttr() || getSamplesAttr() || getSeedAttr())
      return emitOpError("tau, samples and seed apply only to gumbel_softmax");
    return success();
  }
  if (FloatAttr tauAttr = getTauAttr()) {
    double tau = tauAttr.getValueAsDouble();
    if (!(tau > 0.0) || !std::isfinite(tau))
      return emitOpError() << "tau must be finite and positive, got " << tau;
  }
  if (auto samples = getSamples(); samples && *samples < 1)
    return emitOpError() << "samples must be at least 1, got " << *samples;
  return success();
}

LogicalResult TopKOp::verify() {
  ShapeChecker check(*this);
  Type s = getScores().getType();
  if (failed(check.rank("scores", s, 2)))
    return failure();
  int64_t experts = dimOf(getScores(), 1);
  if (Value bias = getBias())
    if (failed(check.rank("bias", bias.getType(), 1)) ||
        failed(check.dim("bias", bias.getType(), 0, experts, "the number of experts")))
      return failure();
  // topk_c1: 1 <= k <= E.
  int64_t k = getK();
  if (k < 1)
    return emitOpError() << "k must be at least 1, got " << k;
  if (!ShapedType::isDynamic(experts) && k > experts)
    return emitOpError() << "k (" << k << ") must not exceed the number of experts (" << experts
                         << ")";
  // topk_c2: equal groups, 1 <= topk_groups <= num_groups, enough experts kept.
  int64_t groups = getNumGroups(), kept = getTopkGroups();
  if (groups < 1 || kept < 1 || kept > groups)
    return emitOpError() << "needs 1 <= topk_groups <= num_groups, got topk_groups = " << kept
                         << ", num_groups = " << groups;
  if (!ShapedType::isDynamic(experts)) {
    if (experts % groups != 0)
      return emitOpError() << "num_groups (" << groups
                           << ") must divide the number of experts (" << experts << ")";
    if (k > kept * (experts / groups))
      return emitOpError() << "k (" << k << ") exceeds the experts in the " << kept
                           << " kept groups (" << kept * (experts / groups) << ")";
  }
  if (groups > 1 && getGroupScore() == GroupScore::top2_sum && !ShapedType::isDynamic(experts) &&
      experts / groups < 2)
    return emitOpError("group_score top2_sum needs at least 2 experts per group");
  // topk_c3: results [T, k].
  return verifySelectionResults(check, getWeights(), getIndices(), dimOf(getScores(), 0), k,
                                "k");
}

LogicalResult ThresholdOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.rank("scores", getScores().getType(), 2)))
    return failure();
  int64_t experts = dimOf(getScores(), 1), maxK = getMaxK();
  // threshold_c1: 1 <= max_k <= E.
  if (maxK < 1 || (!ShapedType::isDynamic(experts) && maxK > experts))
    return emitOpError() << "max_k (" << maxK << ") must be between 1 and the number of experts ("
                         << experts << ")";
  // threshold_c2: a finite threshold.
  if (!std::isfinite(getThreshold().convertToDouble()))
    return emitOpError("threshold must be finite");
  // threshold_c3: results [T, max_k].
  return verifySelectionResults(check, getWeights(), getIndices(), dimOf(getScores(), 0), maxK,
                                "max_k");
}

LogicalResult ExpertChoiceOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.rank("scores", getScores().getType(), 2)))
    return failure();
  int64_t tokens = dimOf(getScores(), 0), experts = dimOf(getScores(), 1);
  // expert_choice_c1: 1 <= capacity <= T.
  int64_t capacity = getCapacity();
  if (capacity < 1)
    return emitOpError() << "capacity must be at least 1, got " << capacity;
  if (!ShapedType::isDynamic(tokens) && capacity > tokens)
    return emitOpError() << "capacity (" << capacity << ") exceeds the number of tokens ("
                         << tokens << ")";
  // expert_choice_c2: 1 <= token_k <= E.
  std::optional<uint64_t> tokenK = getTokenK();
  if (tokenK && (*tokenK < 1 || (!ShapedType::isDynamic(experts) &&
                                 static_cast<int64_t>(*tokenK) > experts)))
    return emitOpError() << "token_k (" << static_cast<int64_t>(*tokenK)
                         << ") must be between 1 and the number of experts (" << experts << ")";
  // expert_choice_c3: results [T, token_k] or [T, E].
  int64_t slots = tokenK ? static_cast<int64_t>(*tokenK) : experts;
  return verifySelectionResults(check, getWeights(), getIndices(), tokens, slots,
                                tokenK ? "token_k" : "the number of experts");
}

LogicalResult RenormalizeOp::verify() {
  ShapeChecker check(*this);
  // renormalize_c1: weights, indices and result share one [T, K] shape.
  if (failed(verifySlots(check, getWeights(), getIndices())) ||
      failed(check.sameShape("result", getResult().getType(), "weights", getWeights().getType())))
    return failure();
  // renormalize_c2: skipped experts are expert indices.
  for (int64_t e : getSkip())
    if (e < 0)
      return emitOpError() << "skip holds expert indices, got " << e;
  // renormalize_c3: the denominator is taken over a prefix of the slots.
  int64_t slots = dimOf(getWeights(), 1), denom = getDenominatorSlots();
  if (denom < 0 || (!ShapedType::isDynamic(slots) && denom > slots))
    return emitOpError() << "denominator_slots (" << denom << ") must be between 0 and the "
                         << "number of slots (" << slots << ")";
  // renormalize_c4: a finite positive scale.
  double scale = getScale().convertToDouble();
  if (!(scale > 0.0) || !std::isfinite(scale))
    return emitOpError() << "scale must be finite and positive, got " << scale;
  // renormalize_c5: the sum's epsilon is finite and non-negative.
  double epsilon = getEpsilon().convertToDouble();
  if (!(epsilon >= 0.0) || !std::isfinite(epsilon))
    return emitOpError() << "epsilon must be finite and non-negative, got " << epsilon;
  if (epsilon != 0.0 && getMode() != RenormMode::sum)
    return emitOpError("epsilon applies to the sum renormalisation only");
  return success();
}

LogicalResult RestrictSlotsOp::verify() {
  ShapeChecker check(*this);
  // restrict_slots_c1: [T, K] slots and at least one expert kept.
  if (failed(check.rank("indices", getIndices().getType(), 2)))
    return failure();
  if (failed(verifyExpertCount(*this, getNumExpertsAttr().getInt())))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
