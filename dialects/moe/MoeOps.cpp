//===- MoeOps.cpp - moe op verifiers and helpers --------------------------===//
//
// Every constraint a verifier checks carries a label (`<op>_c<n>`) that also
// names its negative test in test/Dialect/Moe/invalid-*.mlir.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/STLExtras.h"
#include <cmath>

using namespace mlir;
using namespace mlir::moe;

//===----------------------------------------------------------------------===//
// Custom directive: an enum attribute written as a bare keyword
//===----------------------------------------------------------------------===//

template <typename EnumAttrT>
static ParseResult parseEnumKeyword(OpAsmParser &parser, EnumAttrT &attr) {
  using EnumT = decltype(std::declval<EnumAttrT>().getValue());
  SMLoc loc = parser.getCurrentLocation();
  StringRef keyword;
  if (parser.parseKeyword(&keyword))
    return failure();
  std::optional<EnumT> value = symbolizeEnum<EnumT>(keyword);
  if (!value)
    return parser.emitError(loc) << "unknown " << EnumAttrT::getMnemonic() << " '" << keyword
                                 << "'";
  attr = EnumAttrT::get(parser.getContext(), *value);
  return success();
}

template <typename EnumAttrT>
static void printEnumKeyword(OpAsmPrinter &printer, Operation *, EnumAttrT attr) {
  printer << stringifyEnum(attr.getValue());
}

#define GET_OP_CLASSES
#include "dialects/moe/MoeOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Shape-checking helpers
//===----------------------------------------------------------------------===//

namespace {
/// Checks the shapes of one op with uniform messages. Dynamic sizes match
/// anything: the checks that need them happen when the program runs.
class ShapeChecker {
public:
  explicit ShapeChecker(Operation *op) : op(op) {}

  LogicalResult rank(const Twine &name, Type type, int64_t expected) {
    auto tensor = cast<RankedTensorType>(type);
    if (tensor.getRank() != expected)
      return op->emitOpError() << name << " must have rank " << expected << ", got " << type;
    return success();
  }

  /// `name` dimension `dim` must equal `expected` (described as `what`).
  LogicalResult dim(const Twine &name, Type type, unsigned dim, int64_t expected,
                    const Twine &what) {
    int64_t actual = cast<RankedTensorType>(type).getDimSize(dim);
    if (ShapedType::isDynamic(actual) || ShapedType::isDynamic(expected) || actual == expected)
      return success();
    return op->emitOpError() << name << " dimension " << dim << " (" << actual
                             << ") must equal " << what << " (" << expected << ")";
  }

  LogicalResult sameShape(StringRef name, Type type, StringRef otherName, Type other) {
    auto a = cast<RankedTensorType>(type), b = cast<RankedTensorType>(other);
    if (a.getRank() != b.getRank())
      return op->emitOpError() << name << " " << type << " and " << otherName << " " << other
                               << " must have the same shape";
    for (unsigned d = 0; d < a.getRank(); ++d)
      if (failed(this->dim(name, type, d, b.getDimSize(d), otherName + " dimension " + Twine(d))))
        return failure();
    return success();
  }

  LogicalResult sameElementType(StringRef name, Type type, StringRef otherName, Type other) {
    if (getElementTypeOrSelf(type) != getElementTypeOrSelf(other))
      return op->emitOpError() << name << " element type " << getElementTypeOrSelf(type)
                               << " must equal " << otherName << " element type "
                               << getElementTypeOrSelf(other);
    return success();
  }

private:
  Operation *op;
};

int64_t dimOf(Value v, unsigned d) { return cast<RankedTensorType>(v.getType()).getDimSize(d); }

bool isGated(Activation act) { return act == Activation::swiglu || act == Activation::geglu; }

/// Checks the up/down weights of an FFN: `up` [..., U, H], `down` [..., H, F]
/// with U = 2F for gated activations and U = F otherwise. `lead` is the number
/// of leading expert dimensions (1 for a stacked group, 0 for one expert).
LogicalResult verifyFfnWeights(Operation *op, ShapeChecker &check, Activation act, Value up,
                               Value down, int64_t hidden, unsigned lead, StringRef upName,
                               StringRef downName) {
  if (failed(check.rank(upName, up.getType(), lead + 2)) ||
      failed(check.rank(downName, down.getType(), lead + 2)) ||
      failed(check.dim(upName, up.getType(), lead + 1, hidden, "the hidden size")) ||
      failed(check.dim(downName, down.getType(), lead, hidden, "the hidden size")))
    return failure();
  if (lead == 1 && failed(check.dim(downName, down.getType(), 0, dimOf(up, 0),
                                    upName + " dimension 0")))
    return failure();
  int64_t u = dimOf(up, lead), f = dimOf(down, lead + 1);
  int64_t expected = isGated(act) && !ShapedType::isDynamic(f) ? 2 * f : f;
  if (!ShapedType::isDynamic(u) && !ShapedType::isDynamic(expected) && u != expected)
    return op->emitOpError() << upName << " dimension " << lead << " (" << u << ") must be "
                             << (isGated(act) ? "twice " : "") << "the FFN width of "
                             << downName << " (" << f << ") for activation "
                             << stringifyActivation(act);
  return success();
}

int64_t countKind(ArrayAttr experts, ExpertKind kind) {
  int64_t n = 0;
  for (auto group : experts.getAsRange<ExpertGroupAttr>())
    if (group.getKind() == kind)
      n += group.getCount();
  return n;
}

/// Checks the results of a selection op: `weights` and `indices` are both
/// `[tokens, slots]`.
LogicalResult verifySelectionResults(ShapeChecker &check, Value weights, Value indices,
                                     int64_t tokens, int64_t slots, StringRef slotsWhat) {
  for (auto [name, v] : {std::pair<StringRef, Value>{"result weights", weights},
                         {"result indices", indices}})
    if (failed(check.rank(name, v.getType(), 2)) ||
        failed(check.dim(name, v.getType(), 0, tokens, "the number of tokens")) ||
        failed(check.dim(name, v.getType(), 1, slots, slotsWhat)))
      return failure();
  return success();
}

/// Checks the MoE++ constant-expert operands against the expert set: present
/// exactly when it has constant experts, `vectors [E_c, H]`, `mix [E_c, 2, H]`.
LogicalResult verifyConstantExperts(Operation *op, ShapeChecker &check, ArrayAttr experts,
                                    Value vectors, Value mix, int64_t hidden) {
  int64_t numConstant = countKind(experts, ExpertKind::constant);
  if (static_cast<bool>(vectors) != static_cast<bool>(mix))
    return op->emitOpError("constant needs both the vectors and the mixing weights");
  if (numConstant > 0 && !vectors)
    return op->emitOpError() << "the " << numConstant
                             << " constant experts need constant(vectors, mix) operands";
  if (numConstant == 0 && vectors)
    return op->emitOpError(
        "constant(vectors, mix) given but the expert set has no constant experts");
  if (!vectors)
    return success();
  Type v = vectors.getType(), m = mix.getType();
  if (failed(check.rank("constant vectors", v, 2)) ||
      failed(check.dim("constant vectors", v, 0, numConstant, "the number of constant experts")) ||
      failed(check.dim("constant vectors", v, 1, hidden, "the hidden size")) ||
      failed(check.rank("constant mix", m, 3)) ||
      failed(check.dim("constant mix", m, 0, numConstant, "the number of constant experts")) ||
      failed(check.dim("constant mix", m, 1, 2, "2 (the two mixing coefficients)")) ||
      failed(check.dim("constant mix", m, 2, hidden, "the hidden size")))
    return failure();
  return success();
}

/// Checks the selection pair (`weights`, `indices`) against each other.
LogicalResult verifySlots(ShapeChecker &check, Value weights, Value indices) {
  if (failed(check.rank("weights", weights.getType(), 2)))
    return failure();
  return check.sameShape("indices", indices.getType(), "weights", weights.getType());
}

} // namespace

//===----------------------------------------------------------------------===//
// LayerOp
//===----------------------------------------------------------------------===//

int64_t LayerOp::getNumExperts() { return expandExpertSet(getExperts()).size(); }

int64_t LayerOp::getNumFfnExperts() { return countKind(getExperts(), ExpertKind::ffn); }

int64_t LayerOp::getFirstExpertOfKind(ExpertKind kind) {
  SmallVector<ExpertKind> kinds = expandExpertSet(getExperts());
  auto it = llvm::find(kinds, kind);
  return it == kinds.end() ? -1 : it - kinds.begin();
}

/// Checks the routing configuration against the expert count and token count.
static LogicalResult verifyRoutingFits(Operation *op, RoutingAttr routing, int64_t numExperts,
                                       int64_t tokens) {
  int64_t k = routing.getK();
  // layer_c5: k selections out of E experts.
  if (routing.getSelect() != SelectMode::expert_choice && k > numExperts)
    return op->emitOpError() << "routing k (" << k << ") must not exceed the number of experts ("
                             << numExperts << ")";
  // layer_c6: grouped top-k needs equal groups with enough experts to pick from.
  int64_t groups = routing.getNumGroups();
  if (numExperts % groups != 0)
    return op->emitOpError() << "num_groups (" << groups << ") must divide the number of experts ("
                             << numExperts << ")";
  if (k > routing.getTopkGroups() * (numExperts / groups))
    return op->emitOpError() << "routing k (" << k << ") exceeds the experts in the "
                             << routing.getTopkGroups() << " kept groups ("
                             << routing.getTopkGroups() * (numExperts / groups) << ")";
  // layer_c7: an expert cannot pick more tokens than there are.
  if (routing.getCapacity() > 0 && !ShapedType::isDynamic(tokens) &&
      routing.getCapacity() > tokens)
    return op->emitOpError() << "expert-choice capacity (" << routing.getCapacity()
                             << ") exceeds the number of tokens (" << tokens << ")";
  return success();
}

LogicalResult LayerOp::verify() {
  ShapeChecker check(*this);
  ArrayAttr experts = getExperts();
  // layer_c1: a non-empty expert set with exactly one FFN group.
  if (experts.empty())
    return emitOpError("expert set must not be empty");
  int64_t ffnGroups = llvm::count_if(experts.getAsRange<ExpertGroupAttr>(), [](auto g) {
    return g.getKind() == ExpertKind::ffn;
  });
  if (ffnGroups != 1)
    return emitOpError() << "expert set must hold exactly one ffn group, got " << ffnGroups;
  // FFN experts come first, so their indices are the FFN weights' indices.
  if (cast<ExpertGroupAttr>(experts[0]).getKind() != ExpertKind::ffn)
    return emitOpError("the ffn group must come first in the expert set");

  int64_t numExperts = getNumExperts();
  Type xType = getX().getType();
  if (failed(check.rank("x", xType, 2)))
    return failure();
  int64_t tokens = dimOf(getX(), 0), hidden = dimOf(getX(), 1);

  // layer_c2: router weights [E, H], or [E, R] after a hidden layer [R, H].
  Type rw = getRouterWeight().getType();
  if (failed(check.rank("router_weight", rw, 2)) ||
      failed(check.dim("router_weight", rw, 0, numExperts, "the number of experts")))
    return failure();
  if (Value h = getRouterHidden()) {
    if (failed(check.rank("router hidden weight", h.getType(), 2)) ||
        failed(check.dim("router hidden weight", h.getType(), 1, hidden, "the hidden size")) ||
        failed(check.dim("router_weight", rw, 1, dimOf(h, 0), "the router hidden size")))
      return failure();
  } else if (failed(check.dim("router_weight", rw, 1, hidden, "the hidden size"))) {
    return failure();
  }

  RoutingAttr routing = getRouting();
  if (Value bias = getSelectionBias()) {
    if (failed(check.rank("selection_bias", bias.getType(), 1)) ||
        failed(check.dim("selection_bias", bias.getType(), 0, numExperts,
                         "the number of experts")))
      return failure();
    if (routing.getSelect() != SelectMode::top_k)
      return emitOpError("selection_bias needs select = top_k");
  }

  // layer_c3: the gating residual comes as a pair.
  if (static_cast<bool>(getPrevLogits()) != static_cast<bool>(getResidualWeight()))
    return emitOpError("residual needs both the previous logits and the residual weight");
  if (getPrevLogits() && routing.getGroupSize() > 1)
    return emitOpError("a gating residual is per token; it cannot be used with group_size > 1");
  if (Value prev = getPrevLogits()) {
    Type g = getResidualWeight().getType();
    if (failed(check.rank("previous logits", prev.getType(), 2)) ||
        failed(check.dim("previous logits", prev.getType(), 0, tokens, "the number of tokens")) ||
        failed(check.dim("previous logits", prev.getType(), 1, numExperts,
                         "the number of experts")) ||
        failed(check.rank("residual weight", g, 2)) ||
        failed(check.dim("residual weight", g, 0, numExperts, "the number of experts")) ||
        failed(check.dim("residual weight", g, 1, numExperts, "the number of experts")))
      return failure();
  }

  // layer_c4: FFN weights for the FFN group; constants iff constant experts.
  if (!getFfnUp() || !getFfnDown())
    return emitOpError("the ffn group needs ffn(up, down) weights");
  if (failed(verifyFfnWeights(*this, check, getActivation(), getFfnUp(), getFfnDown(), hidden,
                              /*lead=*/1, "ffn up weight", "ffn down weight")) ||
      failed(check.dim("ffn up weight", getFfnUp().getType(), 0, getNumFfnExperts(),
                       "the number of ffn experts")))
    return failure();

  if (failed(verifyConstantExperts(*this, check, experts, getConstantVectors(), getConstantMix(),
                                   hidden)))
    return failure();

  // layer_c8: a shared expert comes as a pair; its gate needs it.
  if (static_cast<bool>(getSharedUp()) != static_cast<bool>(getSharedDown()))
    return emitOpError("shared needs both the up and the down weight");
  if (getSharedGate() && !getSharedUp())
    return emitOpError("shared_gate needs a shared expert");
  if (getSharedUp() &&
      failed(verifyFfnWeights(*this, check, getActivation(), getSharedUp(), getSharedDown(),
                              hidden, /*lead=*/0, "shared up weight", "shared down weight")))
    return failure();
  if (Value gate = getSharedGate())
    if (failed(check.rank("shared_gate", gate.getType(), 2)) ||
        failed(check.dim("shared_gate", gate.getType(), 0, 1, "1")) ||
        failed(check.dim("shared_gate", gate.getType(), 1, hidden, "the hidden size")))
      return failure();

  if (failed(verifyRoutingFits(*this, routing, numExperts, tokens)))
    return failure();

  // layer_c9: token-choice capacity, and the placement it rectifies on.
  if (CapacityAttr cap = getCapacityAttr()) {
    if (routing.getSelect() == SelectMode::expert_choice ||
        routing.getSelect() == SelectMode::bidirectional)
      return emitOpError("#moe.capacity applies to token-choice selection; expert choice takes "
                         "its capacity from #moe.routing");
    if (cap.getRectify() != Rectify::none && numExperts != getNumFfnExperts())
      return emitOpError("rectification needs an expert set of ffn experts only");
    if (cap.getExpertsPerDevice() > 0 && numExperts % cap.getExpertsPerDevice() != 0)
      return emitOpError() << "experts_per_device (" << cap.getExpertsPerDevice()
                           << ") must divide the number of experts (" << numExperts << ")";
    if (cap.fillsIn() && routing.getK() + 1 > numExperts)
      return emitOpError("fill_in rectification needs a (k+1)-th choice: k must be less than "
                         "the number of experts");
  }

  // layer_c10: results.
  if (failed(check.sameShape("result y", getY().getType(), "x", xType)) ||
      failed(check.sameElementType("result y", getY().getType(), "x", xType)) ||
      failed(check.rank("result logits", getLogits().getType(), 2)) ||
      failed(check.dim("result logits", getLogits().getType(), 0, tokens, "the number of tokens")) ||
      failed(check.dim("result logits", getLogits().getType(), 1, numExperts,
                       "the number of experts")))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// Routing ops
//===----------------------------------------------------------------------===//

LogicalResult FusedRoutingOp::verify() {
  Block &body = getBody().front();
  // fused_routing_c1: block arguments mirror the inputs.
  if (body.getArgumentTypes() != getInputs().getTypes())
    return emitOpError("body arguments must have the types of the inputs");
  // fused_routing_c2: the yield gives the results.
  auto yield = dyn_cast<YieldOp>(body.getTerminator());
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
  return success();
}

LogicalResult RestrictSlotsOp::verify() {
  ShapeChecker check(*this);
  // restrict_slots_c1: [T, K] slots and at least one expert kept.
  if (failed(check.rank("indices", getIndices().getType(), 2)))
    return failure();
  if (getNumExperts() < 1)
    return emitOpError() << "experts must be at least 1, got " << getNumExperts();
  return success();
}

//===----------------------------------------------------------------------===//
// Dispatch and combine
//===----------------------------------------------------------------------===//

LogicalResult DispatchOp::verify() {
  ShapeChecker check(*this);
  if (failed(verifySlots(check, getWeights(), getIndices())))
    return failure();
  int64_t tokens = dimOf(getIndices(), 0), slots = dimOf(getIndices(), 1);
  int64_t experts = getNumExperts();
  // dispatch_c1: at least one expert.
  if (experts < 1)
    return emitOpError() << "experts must be at least 1, got " << experts;
  CapacityAttr cap = getCapacityAttr();
  bool fillIn = cap && cap.fillsIn();
  bool intra = cap && cap.rectifiesIntraDevice();
  // dispatch_c2: fill-in reads a (k+1)-th column; intra-device needs logits
  // and a placement that divides the experts.
  if (fillIn && !ShapedType::isDynamic(slots) && slots < 2)
    return emitOpError("fill_in rectification needs a (k+1)-th selection column");
  if (intra && !getLogits())
    return emitOpError("intra_device rectification needs the router logits");
  if (intra && experts % cap.getExpertsPerDevice() != 0)
    return emitOpError() << "experts_per_device (" << cap.getExpertsPerDevice()
                         << ") must divide the number of experts (" << experts << ")";
  if (Value logits = getLogits())
    if (failed(check.rank("logits", logits.getType(), 2)) ||
        failed(check.dim("logits", logits.getType(), 0, tokens, "the number of tokens")) ||
        failed(check.dim("logits", logits.getType(), 1, experts, "the number of experts")))
      return failure();
  // dispatch_c4: a shared slot: dropless, one weight per token, one more
  // expert and one more slot column.
  int64_t plannedExperts = experts, plannedSlots = slots;
  if (Value shared = getSharedWeight()) {
    if (cap)
      return emitOpError("a shared slot needs dropless dispatch (no capacity)");
    if (failed(check.rank("shared weight", shared.getType(), 2)) ||
        failed(check.dim("shared weight", shared.getType(), 0, tokens, "the number of tokens")) ||
        failed(check.dim("shared weight", shared.getType(), 1, 1, "1")))
      return failure();
    plannedExperts = experts + 1;
    plannedSlots = ShapedType::isDynamic(slots) ? slots : slots + 1;
  }

  // dispatch_c3: result shapes. R = E * C when padded to capacity, else T * K.
  int64_t rows = ShapedType::isDynamic(tokens) || ShapedType::isDynamic(plannedSlots)
                     ? ShapedType::kDynamic
                     : tokens * plannedSlots;
  if (cap && cap.getPad()) {
    int64_t k = ShapedType::isDynamic(slots) ? slots : slots - (fillIn ? 1 : 0);
    int64_t c = cap.perExpert(tokens, k, experts);
    rows = ShapedType::isDynamic(c) ? c : experts * c;
  }
  if (failed(check.rank("result row_token", getRowToken().getType(), 1)) ||
      failed(check.dim("result row_token", getRowToken().getType(), 0, rows,
                       cap && cap.getPad() ? "experts x capacity" : "tokens x slots")) ||
      failed(check.rank("result expert_offsets", getExpertOffsets().getType(), 1)) ||
      failed(check.dim("result expert_offsets", getExpertOffsets().getType(), 0, plannedExperts + 1,
                       "the number of planned experts + 1")))
    return failure();
  for (auto [name, v] : {std::pair<StringRef, Value>{"result slot_row", getSlotRow()},
                         {"result slot_weight", getSlotWeight()}})
    if (failed(check.rank(name, v.getType(), 2)) ||
        failed(check.dim(name, v.getType(), 0, tokens, "the number of tokens")) ||
        failed(check.dim(name, v.getType(), 1, plannedSlots, "the number of planned slots")))
      return failure();
  return success();
}

LogicalResult PermuteOp::verify() {
  ShapeChecker check(*this);
  // permute_c1: x [T, H], row_token [R], result [R, H] of x's element type.
  if (failed(check.rank("x", getX().getType(), 2)) ||
      failed(check.rank("row_token", getRowToken().getType(), 1)) ||
      failed(check.rank("result", getResult().getType(), 2)) ||
      failed(check.dim("result", getResult().getType(), 0, dimOf(getRowToken(), 0),
                       "the number of rows")) ||
      failed(check.dim("result", getResult().getType(), 1, dimOf(getX(), 1), "the hidden size")) ||
      failed(check.sameElementType("result", getResult().getType(), "x", getX().getType())))
    return failure();
  return success();
}

LogicalResult CombineOp::verify() {
  ShapeChecker check(*this);
  // combine_c1: rows [R, H], slots [T, K], result [T, H] of rows' element type.
  if (failed(check.rank("rows", getRows().getType(), 2)) ||
      failed(check.rank("slot_row", getSlotRow().getType(), 2)) ||
      failed(check.sameShape("slot_weight", getSlotWeight().getType(), "slot_row",
                             getSlotRow().getType())) ||
      failed(check.rank("result", getResult().getType(), 2)) ||
      failed(check.dim("result", getResult().getType(), 0, dimOf(getSlotRow(), 0),
                       "the number of tokens")) ||
      failed(check.dim("result", getResult().getType(), 1, dimOf(getRows(), 1),
                       "the hidden size")) ||
      failed(check.sameElementType("result", getResult().getType(), "rows", getRows().getType())))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// Expert computation
//===----------------------------------------------------------------------===//

/// The operands of a grouped matmul: lhs [R, K], weights [E, N, K] and
/// offsets with at least E + 1 entries.
static LogicalResult verifyGroupedOperands(Operation *op, ShapeChecker &check, Value lhs,
                                           Value weights, Value offsets, Value shared) {
  if (failed(check.rank("lhs", lhs.getType(), 2)) ||
      failed(check.rank("weights", weights.getType(), 3)) ||
      failed(check.rank("offsets", offsets.getType(), 1)) ||
      failed(check.dim("weights", weights.getType(), 2, dimOf(lhs, 1), "the lhs reduction size")))
    return failure();
  int64_t groups = dimOf(offsets, 0), experts = dimOf(weights, 0);
  // grouped_matmul_c3: a shared expert [N, K] is expert E_w.
  if (shared) {
    if (failed(check.rank("shared", shared.getType(), 2)) ||
        failed(check.dim("shared", shared.getType(), 0, dimOf(weights, 1), "the weights' output size")) ||
        failed(check.dim("shared", shared.getType(), 1, dimOf(weights, 2), "the lhs reduction size")))
      return failure();
    if (!ShapedType::isDynamic(experts))
      ++experts;
  }
  if (!ShapedType::isDynamic(groups) && !ShapedType::isDynamic(experts) && groups < experts + 1)
    return op->emitOpError() << "offsets (" << groups << " entries) must describe at least the "
                             << experts << " experts of the weights (" << experts + 1
                             << " entries)";
  return success();
}

LogicalResult GroupedMatmulOp::verify() {
  ShapeChecker check(*this);
  Type result = getResult().getType();
  // grouped_matmul_c1: lhs [R, K], weights [E, N, K], offsets [>= E + 1], result [R, N].
  if (failed(verifyGroupedOperands(*this, check, getLhs(), getWeights(), getOffsets(), getShared())) ||
      failed(check.rank("result", result, 2)) ||
      failed(check.dim("result", result, 0, dimOf(getLhs(), 0), "the number of rows")) ||
      failed(check.dim("result", result, 1, dimOf(getWeights(), 1), "the weights' output size")))
    return failure();
  // grouped_matmul_c2: the result keeps the activations' element type.
  return check.sameElementType("result", result, "lhs", getLhs().getType());
}

LogicalResult GroupedMatmulActOp::verify() {
  ShapeChecker check(*this);
  Type result = getResult().getType();
  // grouped_matmul_act_c1: as grouped_matmul, and the activation's width rule.
  if (failed(verifyGroupedOperands(*this, check, getLhs(), getWeights(), getOffsets(), getShared())) ||
      failed(check.rank("result", result, 2)) ||
      failed(check.dim("result", result, 0, dimOf(getLhs(), 0), "the number of rows")) ||
      failed(check.sameElementType("result", result, "lhs", getLhs().getType())))
    return failure();
  int64_t width = dimOf(getWeights(), 1);
  if (!isGated(getKind()))
    return check.dim("result", result, 1, width, "the weights' output size");
  if (!ShapedType::isDynamic(width) && width % 2 != 0)
    return emitOpError() << stringifyActivation(getKind())
                         << " needs an even weights' output size ([gate; up]), got " << width;
  return check.dim("result", result, 1, ShapedType::isDynamic(width) ? width : width / 2,
                   "half the weights' output size");
}

LogicalResult GroupedMatmulCombineOp::verify() {
  ShapeChecker check(*this);
  Type result = getResult().getType();
  // grouped_matmul_combine_c1: as grouped_matmul; slots [T, K]; result [T, N].
  if (failed(verifyGroupedOperands(*this, check, getLhs(), getWeights(), getOffsets(), getShared())) ||
      failed(check.rank("slot_row", getSlotRow().getType(), 2)) ||
      failed(check.sameShape("slot_weight", getSlotWeight().getType(), "slot_row",
                             getSlotRow().getType())) ||
      failed(check.rank("result", result, 2)) ||
      failed(check.dim("result", result, 0, dimOf(getSlotRow(), 0), "the number of tokens")) ||
      failed(check.dim("result", result, 1, dimOf(getWeights(), 1), "the weights' output size")))
    return failure();
  return check.sameElementType("result", result, "lhs", getLhs().getType());
}

LogicalResult DequantizeOp::verify() {
  ShapeChecker check(*this);
  int64_t bits = getBitsAttr().getInt(), blockSize = getBlockSizeAttr().getInt();
  // dequantize_c1: 2, 4 or 8 bits; block_size >= 0.
  if (bits != 2 && bits != 4 && bits != 8)
    return emitOpError() << "bits must be 2, 4 or 8, got " << bits;
  if (blockSize < 0)
    return emitOpError() << "block_size must be 0 (one scale per row) or positive, got " << blockSize;
  // dequantize_c2: packed [E, N, K / (8 / bits)], result [E, N, K].
  Type packed = getPacked().getType(), result = getResult().getType();
  if (failed(check.rank("packed", packed, 3)) || failed(check.rank("result", result, 3)) ||
      failed(check.dim("result", result, 0, dimOf(getPacked(), 0), "the packed experts")) ||
      failed(check.dim("result", result, 1, dimOf(getPacked(), 1), "the packed rows")))
    return failure();
  int64_t bytes = dimOf(getPacked(), 2), k = dimOf(getResult(), 2);
  if (!ShapedType::isDynamic(bytes) && !ShapedType::isDynamic(k) && k != bytes * getValuesPerByte())
    return emitOpError() << "result row length (" << k << ") must be the packed row's " << bytes << " bytes times "
                         << getValuesPerByte() << " values per byte (" << bits << " bits)";
  // dequantize_c3: scales [E, N] per row or [E, N, K / block_size] per block.
  Type scales = getScales().getType();
  if (failed(check.rank("scales", scales, blockSize == 0 ? 2 : 3)) ||
      failed(check.dim("scales", scales, 0, dimOf(getResult(), 0), "the experts")) ||
      failed(check.dim("scales", scales, 1, dimOf(getResult(), 1), "the rows")))
    return failure();
  if (blockSize > 0) {
    if (!ShapedType::isDynamic(k) && k % blockSize != 0)
      return emitOpError() << "block_size " << blockSize << " must divide the row length " << k;
    if (failed(check.dim("scales", scales, 2, ShapedType::isDynamic(k) ? k : k / blockSize,
                         "the blocks per row")))
      return failure();
  }
  // dequantize_c4: one zero point per scale.
  if (Value zeroPoints = getZeroPoints())
    return check.sameShape("zero_points", zeroPoints.getType(), "scales", scales);
  return success();
}

LogicalResult ActivationOp::verify() {
  ShapeChecker check(*this);
  Type in = getInput().getType(), out = getResult().getType();
  if (failed(check.rank("input", in, 2)) || failed(check.rank("result", out, 2)) ||
      failed(check.sameElementType("result", out, "input", in)) ||
      failed(check.dim("result", out, 0, dimOf(getInput(), 0), "the number of rows")))
    return failure();
  int64_t width = dimOf(getInput(), 1);
  if (!isGated(getKind()))
    return check.dim("result", out, 1, width, "the input width");
  // activation_c1: a gated activation halves an even width.
  if (!ShapedType::isDynamic(width) && width % 2 != 0)
    return emitOpError() << stringifyActivation(getKind())
                         << " needs an even input width ([gate; up]), got " << width;
  return check.dim("result", out, 1, ShapedType::isDynamic(width) ? width : width / 2,
                   "half the input width");
}

LogicalResult ZeroComputeOp::verify() {
  ShapeChecker check(*this);
  Type x = getX().getType();
  if (failed(check.rank("x", x, 2)) || failed(verifySlots(check, getWeights(), getIndices())) ||
      failed(check.dim("indices", getIndices().getType(), 0, dimOf(getX(), 0),
                       "the number of tokens")) ||
      failed(check.sameShape("result", getResult().getType(), "x", x)) ||
      failed(check.sameElementType("result", getResult().getType(), "x", x)))
    return failure();
  // zero_compute_c1: constant operands iff the set has constant experts.
  return verifyConstantExperts(*this, check, getExperts(), getConstantVectors(),
                               getConstantMix(), dimOf(getX(), 1));
}

LogicalResult DenseFfnOp::verify() {
  ShapeChecker check(*this);
  Type x = getX().getType();
  // dense_ffn_c1: x [T, H]; up [U, H], down [H, F]; result like x.
  if (failed(check.rank("x", x, 2)) ||
      failed(verifyFfnWeights(*this, check, getKind(), getUp(), getDown(), dimOf(getX(), 1),
                              /*lead=*/0, "up weight", "down weight")) ||
      failed(check.sameShape("result", getResult().getType(), "x", x)) ||
      failed(check.sameElementType("result", getResult().getType(), "x", x)))
    return failure();
  // dense_ffn_c2: the gate is one row [1, H].
  if (Value gate = getGate())
    if (failed(check.rank("gate", gate.getType(), 2)) ||
        failed(check.dim("gate", gate.getType(), 0, 1, "1")) ||
        failed(check.dim("gate", gate.getType(), 1, dimOf(getX(), 1), "the hidden size")))
      return failure();
  return success();
}

LogicalResult DenseGatesOp::verify() {
  ShapeChecker check(*this);
  // dense_gates_c1: slots [G, K] -> [G, E], E >= 1.
  if (getNumExperts() < 1)
    return emitOpError() << "experts must be at least 1, got " << getNumExperts();
  if (failed(verifySlots(check, getWeights(), getIndices())) ||
      failed(check.rank("result", getResult().getType(), 2)) ||
      failed(check.dim("result", getResult().getType(), 0, dimOf(getWeights(), 0), "the number of rows")) ||
      failed(check.dim("result", getResult().getType(), 1, getNumExperts(), "the number of experts")))
    return failure();
  return success();
}

LogicalResult ComposeExpertsOp::verify() {
  ShapeChecker check(*this);
  Type down = getDown().getType(), up = getUp().getType(), out = getResult().getType();
  // compose_experts_c1: down [E, H, F], up [E, F, H'], result [E, H, H'].
  if (failed(check.rank("down", down, 3)) || failed(check.rank("up", up, 3)) ||
      failed(check.dim("up", up, 0, dimOf(getDown(), 0), "the number of experts")) ||
      failed(check.dim("up", up, 1, dimOf(getDown(), 2), "the down weight's FFN width")) ||
      failed(check.rank("result", out, 3)) ||
      failed(check.dim("result", out, 0, dimOf(getDown(), 0), "the number of experts")) ||
      failed(check.dim("result", out, 1, dimOf(getDown(), 1), "the down weight's output size")) ||
      failed(check.dim("result", out, 2, dimOf(getUp(), 2), "the up weight's input size")))
    return failure();
  return success();
}

LogicalResult MergeExpertsOp::verify() {
  ShapeChecker check(*this);
  auto w = cast<RankedTensorType>(getWeights().getType());
  auto out = cast<RankedTensorType>(getResult().getType());
  // merge_experts_c1: weights [E, ...], gates [G, E], result [G, ...].
  if (w.getRank() < 2)
    return emitOpError() << "weights must have rank >= 2 (experts first), got " << w;
  if (failed(check.rank("gates", getGates().getType(), 2)) ||
      failed(check.dim("gates", getGates().getType(), 1, w.getDimSize(0),
                       "the number of experts")) ||
      failed(check.rank("result", out, w.getRank())) ||
      failed(check.dim("result", out, 0, dimOf(getGates(), 0), "the number of groups")) ||
      failed(check.sameElementType("result", out, "weights", w)))
    return failure();
  for (unsigned d = 1; d < w.getRank(); ++d)
    if (failed(check.dim("result", out, d, w.getDimSize(d), "the weights' dimension")))
      return failure();
  return success();
}
