//===- Passes.h - moe transformation passes ---------------------*- C++ -*-===//

#ifndef MOE_TRANSFORMS_PASSES_H
#define MOE_TRANSFORMS_PASSES_H

#include "mlir/Pass/Pass.h"

namespace mlir {
class RewritePatternSet;
namespace moe {

#define GEN_PASS_DECL
#include "moe/Transforms/Passes.h.inc"

/// Patterns that rewrite `moe.layer` into decomposed moe ops.
void populateMoeDecomposePatterns(RewritePatternSet &patterns);

#define GEN_PASS_REGISTRATION
#include "moe/Transforms/Passes.h.inc"

} // namespace moe
} // namespace mlir

#endif // MOE_TRANSFORMS_PASSES_H
