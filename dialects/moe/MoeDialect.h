//===- MoeDialect.h - moe dialect declaration -------------------*- C++ -*-===//

#ifndef DIALECTS_MOE_MOEDIALECT_H
#define DIALECTS_MOE_MOEDIALECT_H

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/Operation.h"

#include "dialects/moe/MoeDialect.h.inc"

namespace mlir::moe {
/// The names of the dialect's discardable attributes (MoeBase.td says what
/// each marks; MoeDialect::verifyOperationAttribute checks where they sit).
inline constexpr llvm::StringLiteral kParallelLoopAttrName = MoeDialect::ParallelAttrHelper::getNameStr();
inline constexpr llvm::StringLiteral kGroupedGemmAttrName = MoeDialect::GroupedGemmAttrHelper::getNameStr();
inline constexpr llvm::StringLiteral kRowScaleAttrName = MoeDialect::RowScaleAttrHelper::getNameStr();
inline constexpr llvm::StringLiteral kRowExpertsAttrName = MoeDialect::RowExpertsAttrHelper::getNameStr();
inline constexpr llvm::StringLiteral kHostCallAttrName = MoeDialect::HostCallAttrHelper::getNameStr();
inline constexpr llvm::StringLiteral kSharedLayerAttrName = MoeDialect::SharedLayerAttrHelper::getNameStr();

/// Whether `op` calls a function marked `moe.shared_layer` (made by
/// moe-share-layers or moe-share-blocks): a call with the effects of the
/// tensor ops it replaced (none), whose work the function does itself.
bool callsSharedFunction(Operation *op);

/// Whether `op` is a host call of a run-time size check (moeRuntimeCheck*
/// in the runtime): it records the call's first error and nothing else, so
/// it may move, and it dies with the values it checks.
bool isRuntimeCheckCall(Operation *op);
} // namespace mlir::moe

#endif // DIALECTS_MOE_MOEDIALECT_H
