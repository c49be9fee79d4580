//===- ParallelLoops.h - the contract between lowering and GPU mapping -*- C++ -*-===//
//
// convert-moe-to-linalg builds its sequential-looking loops with scf.for over
// tensors. Where the lowering knows that the iterations write disjoint
// elements (one token row, one expert column), it puts this unit attribute on
// the loop; after bufferization `moe-parallelize-loops` turns exactly these
// loops into scf.parallel, so the GPU pipeline can map them to threads.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_CONVERSION_PARALLELLOOPS_H
#define MOE_CONVERSION_PARALLELLOOPS_H

#include "llvm/ADT/StringRef.h"

namespace mlir::moe {
inline constexpr llvm::StringLiteral kParallelLoopAttrName = "moe.parallel";
} // namespace mlir::moe

#endif // MOE_CONVERSION_PARALLELLOOPS_H
