//===- MoeOps.cpp - moe op verifiers and helpers --------------------------===//
//
// The ops' generated classes, their custom directive, and the verifier of
// moe.layer; the decomposed ops' verifiers are in RoutingOps.cpp and
// ExpertOps.cpp. Every constraint a verifier checks carries a label
// (`<op>_c<n>`) that also names its negative test in
// test/Dialect/Moe/invalid-*.mlir.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoeOps.h"
#include "dialects/moe/OpVerification.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/STLExtras.h"
#include <cmath>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::verification;

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
// LayerOp
//===----------------------------------------------------------------------===//

int64_t LayerOp::getNumExperts() { return countExperts(getExperts()); }

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

  // layer_c1: at most kMaxExperts experts in all groups together.
  int64_t numExperts = getNumExperts();
  if (failed(verifyExpertCount(*this, numExperts)))
    return failure();
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

  if (Value bias = getRouterBias())
    if (failed(check.rank("router_bias", bias.getType(), 1)) ||
        failed(check.dim("router_bias", bias.getType(), 0, numExperts, "the number of experts")))
      return failure();

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
  // layer_c11: expert biases come as a pair, one row per FFN expert.
  if (static_cast<bool>(getFfnUpBias()) != static_cast<bool>(getFfnDownBias()))
    return emitOpError("ffn_bias needs both the up and the down bias");
  if (Value upBias = getFfnUpBias()) {
    Type downBias = getFfnDownBias().getType();
    if (failed(check.rank("ffn up bias", upBias.getType(), 2)) ||
        failed(check.dim("ffn up bias", upBias.getType(), 0, getNumFfnExperts(), "the number of ffn experts")) ||
        failed(check.dim("ffn up bias", upBias.getType(), 1, dimOf(getFfnUp(), 1), "the up weight's rows")) ||
        failed(check.rank("ffn down bias", downBias, 2)) ||
        failed(check.dim("ffn down bias", downBias, 0, getNumFfnExperts(), "the number of ffn experts")) ||
        failed(check.dim("ffn down bias", downBias, 1, hidden, "the hidden size")) ||
        failed(check.sameElementType("ffn up bias", upBias.getType(), "ffn up weight", getFfnUp().getType())) ||
        failed(check.sameElementType("ffn down bias", downBias, "ffn down weight", getFfnDown().getType())))
      return failure();
  }

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
