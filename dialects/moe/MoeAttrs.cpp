//===- MoeAttrs.cpp - moe enums and attributes ----------------------------===//

#include "dialects/moe/MoeAttrs.h"
#include "dialects/moe/MoeDialect.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/APFloat.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include <cstdlib>
#include "llvm/ADT/TypeSwitch.h"
#include <cmath>

using namespace mlir;
using namespace mlir::moe;

#include "dialects/moe/MoeEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/moe/MoeAttrs.cpp.inc"

void MoeDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/moe/MoeAttrs.cpp.inc"
      >();
}

FailureOr<ExpertKind> mlir::moe::parseExpertKind(AsmParser &parser) {
  SMLoc loc = parser.getCurrentLocation();
  StringRef keyword;
  if (parser.parseKeyword(&keyword))
    return failure();
  if (std::optional<ExpertKind> kind = symbolizeExpertKind(keyword))
    return *kind;
  return parser.emitError(loc) << "unknown expert kind '" << keyword
                               << "'; expected one of ffn, zero, copy, constant, null";
}

FailureOr<APFloat> mlir::moe::parseDoubleParameter(AsmParser &parser) {
  double value;
  if (parser.parseFloat(value))
    return failure();
  return APFloat(value);
}

void mlir::moe::printDoubleParameter(AsmPrinter &printer, const APFloat &value) {
  printer << doubleLiteral(value.convertToDouble());
}

std::string mlir::moe::doubleLiteral(double v) {
  // The fewest significant digits that read back to the same double, with a
  // '.' kept so the value reads as a float to a person too.
  std::string text;
  for (int digits = 1; digits <= 17; ++digits) {
    text = llvm::formatv("{0}", llvm::format("%.*g", digits, v)).str();
    if (std::strtod(text.c_str(), nullptr) == v)
      break;
  }
  // MLIR float literals need a '.' before any exponent: 1e-07 -> 1.0e-07.
  if (std::isfinite(v) && text.find('.') == std::string::npos)
    text.insert(std::min(text.find('e'), text.size()), ".0");
  return text;
}

int64_t mlir::moe::countExperts(ArrayAttr experts) {
  int64_t count = 0;
  for (auto group : experts.getAsRange<ExpertGroupAttr>())
    count += group.getCount(); // each group holds at most kMaxExperts
  return count;
}

SmallVector<ExpertKind> mlir::moe::expandExpertSet(ArrayAttr experts) {
  SmallVector<ExpertKind> kinds;
  for (auto group : experts.getAsRange<ExpertGroupAttr>())
    kinds.append(group.getCount(), group.getKind());
  return kinds;
}

LogicalResult ExpertGroupAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                      ExpertKind kind, int64_t count) {
  if (count < 1)
    return emitError() << "expert group '" << stringifyExpertKind(kind)
                       << "' must hold at least one expert, got " << count;
  // group_c2: a count any table of experts can be built for.
  if (count > kMaxExperts)
    return emitError() << "expert group '" << stringifyExpertKind(kind) << "' holds " << count
                       << " experts; at most " << kMaxExperts << " are supported";
  return success();
}

LogicalResult RoutingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                  ScoringFunc scoring, SelectMode select, int64_t k,
                                  ScoreOrder order, NormalizeMode normalize, APFloat scaleF,
                                  int64_t numGroups, int64_t topkGroups, GroupScore groupScore,
                                  APFloat thresholdF, int64_t capacity, APFloat tauF,
                                  int64_t samples, int64_t seed, APFloat inputScaleF,
                                  int64_t groupSize, Type logitsType, Type scoresType, APFloat normEpsilonF) {
  double scale = scaleF.convertToDouble(), threshold = thresholdF.convertToDouble();
  double tau = tauF.convertToDouble(), inputScale = inputScaleF.convertToDouble();
  // routing_c1: at least one selection per token.
  if (k < 1)
    return emitError() << "routing k must be at least 1, got " << k;
  // routing_c2: routed scaling and input scaling are finite and positive.
  if (!(scale > 0.0) || !std::isfinite(scale))
    return emitError() << "routing scale must be finite and positive, got " << scale;
  if (!(inputScale > 0.0) || !std::isfinite(inputScale))
    return emitError() << "routing input_scale must be finite and positive, got " << inputScale;
  // routing_c3: grouped top-k keeps between 1 and num_groups groups.
  if (numGroups < 1 || topkGroups < 1 || topkGroups > numGroups)
    return emitError() << "routing needs 1 <= topk_groups <= num_groups, got topk_groups = "
                       << topkGroups << ", num_groups = " << numGroups;
  if (numGroups > 1 && select != SelectMode::top_k)
    return emitError() << "grouped selection (num_groups > 1) needs select = top_k";
  // routing_c4: scoring after selection is the softmax over the k picks.
  if (order == ScoreOrder::select_then_score &&
      (scoring != ScoringFunc::softmax || select != SelectMode::top_k))
    return emitError() << "order = select_then_score needs scoring = softmax and select = top_k";
  // routing_c5: expert choice needs a capacity; nothing else takes one here.
  bool expertChoice = select == SelectMode::expert_choice || select == SelectMode::bidirectional;
  if (expertChoice && capacity < 1)
    return emitError() << "select = " << stringifySelectMode(select)
                       << " needs a capacity of at least 1 token per expert";
  if (!expertChoice && capacity != 0)
    return emitError() << "routing capacity applies only to expert_choice and bidirectional "
                          "selection; use #moe.capacity for token-choice capacity";
  // routing_c6: Gumbel parameters belong to gumbel_softmax.
  if (scoring == ScoringFunc::gumbel_softmax) {
    if (!(tau > 0.0) || !std::isfinite(tau))
      return emitError() << "gumbel_softmax tau must be finite and positive, got " << tau;
    if (samples < 1)
      return emitError() << "gumbel_softmax samples must be at least 1, got " << samples;
  } else if (tau != 1.0 || samples != 1 || seed != 0) {
    return emitError() << "tau, samples and seed apply only to scoring = gumbel_softmax";
  }
  // routing_c7: a threshold is only read by threshold selection.
  if (threshold != 0.0 && select != SelectMode::threshold)
    return emitError() << "routing threshold applies only to select = threshold";
  if (!std::isfinite(threshold))
    return emitError() << "routing threshold must be finite, got " << threshold;
  // routing_c8: token groups share a token-choice routing.
  if (groupSize < 1)
    return emitError() << "routing group_size must be at least 1, got " << groupSize;
  if (groupSize > 1 && expertChoice)
    return emitError() << "group_size > 1 needs token-choice selection (top_k or threshold)";
  // routing_c9: logits are rounded to a 16-bit float type, if at all.
  if (logitsType && !logitsType.isBF16() && !logitsType.isF16())
    return emitError() << "routing logits_type must be bf16 or f16, got " << logitsType;
  // routing_c10: scores are rounded to a 16-bit float type, if at all, and
  // only where they are computed before the selection.
  if (scoresType && !scoresType.isBF16() && !scoresType.isF16())
    return emitError() << "routing scores_type must be bf16 or f16, got " << scoresType;
  if (scoresType && order == ScoreOrder::select_then_score)
    return emitError() << "routing scores_type needs order = score_then_select (select_then_score scores "
                          "the picks after selecting)";
  // routing_c11: a renormalisation's epsilon is finite, non-negative, and
  // belongs to a renormalisation by the sum.
  double normEpsilon = normEpsilonF.convertToDouble();
  if (!(normEpsilon >= 0.0) || !std::isfinite(normEpsilon))
    return emitError() << "routing norm_epsilon must be finite and non-negative, got " << normEpsilon;
  if (normEpsilon != 0.0 && normalize == NormalizeMode::none)
    return emitError() << "routing norm_epsilon applies only with normalize = all or computing";
  return success();
}

int64_t CapacityAttr::perExpert(int64_t tokens, int64_t k, int64_t experts) const {
  if (getTokens() > 0)
    return getTokens();
  if (ShapedType::isDynamic(tokens) || ShapedType::isDynamic(k))
    return ShapedType::kDynamic;
  return static_cast<int64_t>(
      std::ceil(static_cast<double>(tokens) * k / experts * getFactor().convertToDouble()));
}

LogicalResult CapacityAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                                   APFloat factorF, int64_t tokens, DropPolicy drop, bool pad, Rectify rectify,
                                   int64_t expertsPerDevice) {
  double factor = factorF.convertToDouble();
  // capacity_c1: exactly one way of giving the capacity.
  if (factor < 0.0 || !std::isfinite(factor) || tokens < 0)
    return emitError() << "capacity factor and tokens must be non-negative";
  if ((factor > 0.0) == (tokens > 0))
    return emitError() << "capacity needs exactly one of factor > 0 or tokens > 0";
  // capacity_c2: intra-device rectification needs the expert placement.
  bool intra = mlir::moe::rectifiesIntraDevice(rectify);
  if (intra && expertsPerDevice < 1)
    return emitError() << "rectify = " << stringifyRectify(rectify)
                       << " needs experts_per_device >= 1";
  if (!intra && expertsPerDevice != 0)
    return emitError() << "experts_per_device applies only to intra_device rectification";
  // capacity_c3: fill-in rectification fills pad rows, so there must be some.
  bool fillIn = mlir::moe::fillsIn(rectify);
  if (fillIn && !pad)
    return emitError() << "rectify = " << stringifyRectify(rectify) << " needs pad = true";
  return success();
}
