//===- MoeAttrs.h - moe enums and attributes --------------------*- C++ -*-===//

#ifndef DIALECTS_MOE_MOEATTRS_H
#define DIALECTS_MOE_MOEATTRS_H

#include "mlir/IR/Attributes.h"
#include "llvm/ADT/APFloat.h"
#include <string>
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectImplementation.h"

#include "dialects/moe/MoeEnums.h.inc"

namespace mlir::moe {
/// Parser and printer of the `double` parameters of moe attributes: the
/// shortest decimal form that reads back to the same value.
FailureOr<llvm::APFloat> parseDoubleParameter(AsmParser &parser);
void printDoubleParameter(AsmPrinter &printer, const llvm::APFloat &value);
/// `v` as an MLIR float literal that reads back to the same double (always
/// with a '.': attribute text built for parseAttribute).
std::string doubleLiteral(double v);
/// Parses an expert kind keyword (ffn, zero, copy, constant, null).
FailureOr<ExpertKind> parseExpertKind(AsmParser &parser);

/// Rectify-Router modes that fill pad rows / move dropped slots on-device.
inline bool fillsIn(Rectify r) { return r == Rectify::fill_in || r == Rectify::both; }
inline bool rectifiesIntraDevice(Rectify r) {
  return r == Rectify::intra_device || r == Rectify::both;
}

/// Gated activations (act(gate) * up) read an up projection [gate; up]
/// twice the FFN width.
inline bool isGated(Activation act) {
  return act == Activation::swiglu || act == Activation::geglu || act == Activation::geglu_tanh;
}

/// True for the experts that need no weights and no GEMM.
inline bool isZeroComputation(ExpertKind kind) { return kind != ExpertKind::ffn; }
} // namespace mlir::moe

#define GET_ATTRDEF_CLASSES
#include "dialects/moe/MoeAttrs.h.inc"

namespace mlir::moe {
/// The most experts a layer or op may have (PEER-style layers route over a
/// million). Counts are checked against it before anything per expert is
/// built, so an absurd count is a verifier error, not an allocation.
inline constexpr int64_t kMaxExperts = int64_t(1) << 20;

/// The number of experts of an expert set (`experts = [#moe.group<...>, ...]`)
/// without expanding it.
int64_t countExperts(ArrayAttr experts);

/// Flattens an expert set (`experts = [#moe.group<...>, ...]`) into one kind
/// per expert, in expert-index order.
SmallVector<ExpertKind> expandExpertSet(ArrayAttr experts);
} // namespace mlir::moe

#endif // DIALECTS_MOE_MOEATTRS_H
