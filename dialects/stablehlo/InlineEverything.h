//===- InlineEverything.h - inlining legality for stablehlo/chlo -*- C++ -*-===//

#ifndef DIALECTS_STABLEHLO_INLINEEVERYTHING_H
#define DIALECTS_STABLEHLO_INLINEEVERYTHING_H

#include "mlir/Transforms/InliningUtils.h"

namespace mlir::moe::stablehlo {
/// JAX programs call private helpers (@cumsum, @_where, @argsort): every op
/// of these dialects may be inlined so that patterns can be matched across
/// the calls.
struct InlineEverything : public DialectInlinerInterface {
  using DialectInlinerInterface::DialectInlinerInterface;
  bool isLegalToInline(Operation *, Operation *, bool) const final { return true; }
  bool isLegalToInline(Region *, Region *, bool, IRMapping &) const final { return true; }
  bool isLegalToInline(Operation *, Region *, bool, IRMapping &) const final { return true; }
};
} // namespace mlir::moe::stablehlo

#endif // DIALECTS_STABLEHLO_INLINEEVERYTHING_H
