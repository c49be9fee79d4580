//===- OpVerification.cpp - what the moe op verifiers share ---------------===//

#include "dialects/moe/OpVerification.h"

using namespace mlir;
using namespace mlir::moe;

namespace mlir::moe::verification {

int64_t dimOf(Value v, unsigned d) { return cast<RankedTensorType>(v.getType()).getDimSize(d); }

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

LogicalResult verifyExpertCount(Operation *op, int64_t experts) {
  if (experts < 1)
    return op->emitOpError() << "experts must be at least 1, got " << experts;
  if (experts > kMaxExperts)
    return op->emitOpError() << "experts must be at most " << kMaxExperts << ", got " << experts;
  return success();
}

} // namespace mlir::moe::verification
