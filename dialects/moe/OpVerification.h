//===- OpVerification.h - what the moe op verifiers share -------*- C++ -*-===//
//
// Uniform shape checks and the constraints several ops have in common
// (FFN weight shapes, selection results, constant experts, slots). Private
// to dialects/moe: the verifiers in MoeOps.cpp, RoutingOps.cpp and
// ExpertOps.cpp use them.
//
//===----------------------------------------------------------------------===//

#ifndef DIALECTS_MOE_OPVERIFICATION_H
#define DIALECTS_MOE_OPVERIFICATION_H

#include "dialects/moe/MoeOps.h"

#include "mlir/IR/TypeUtilities.h"

namespace mlir::moe::verification {

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

int64_t dimOf(Value v, unsigned d);

/// Checks the up/down weights of an FFN: `up` [..., U, H], `down` [..., H, F]
/// with U = 2F for gated activations and U = F otherwise. `lead` is the number
/// of leading expert dimensions (1 for a stacked group, 0 for one expert).
LogicalResult verifyFfnWeights(Operation *op, ShapeChecker &check, Activation act, Value up,
                               Value down, int64_t hidden, unsigned lead, StringRef upName,
                               StringRef downName);

int64_t countKind(ArrayAttr experts, ExpertKind kind);

/// Checks the results of a selection op: `weights` and `indices` are both
/// `[tokens, slots]`.
LogicalResult verifySelectionResults(ShapeChecker &check, Value weights, Value indices,
                                     int64_t tokens, int64_t slots, StringRef slotsWhat);

/// Checks the MoE++ constant-expert operands against the expert set: present
/// exactly when it has constant experts, `vectors [E_c, H]`, `mix [E_c, 2, H]`.
LogicalResult verifyConstantExperts(Operation *op, ShapeChecker &check, ArrayAttr experts,
                                    Value vectors, Value mix, int64_t hidden);

/// Checks the selection pair (`weights`, `indices`) against each other.
/// An expert count (a `num_experts` attribute, an expert set's size) in
/// [1, kMaxExperts].
LogicalResult verifyExpertCount(Operation *op, int64_t experts);

LogicalResult verifySlots(ShapeChecker &check, Value weights, Value indices);

} // namespace mlir::moe::verification

#endif // DIALECTS_MOE_OPVERIFICATION_H
