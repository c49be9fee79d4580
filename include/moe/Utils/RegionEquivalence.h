//===- RegionEquivalence.h - same computation, other names -----*- C++ -*-===//
//
// Two regions compute the same thing when they hold the same ops with the
// same attributes and types, wired the same way; where the ops came from
// (locations) does not matter. Used to find repeated layers
// (moe-share-layers) and repeated kernels (moe-deduplicate-kernels).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_UTILS_REGIONEQUIVALENCE_H
#define MOE_UTILS_REGIONEQUIVALENCE_H

#include "mlir/IR/Region.h"
#include "llvm/ADT/Hashing.h"

namespace mlir::moe {

/// A hash of `region`'s ops (names, attributes, types), equal for
/// equivalent regions: a cheap filter before equivalentRegions.
llvm::hash_code hashRegionOps(Region &region);

/// Whether `a` and `b` hold equivalent ops (locations aside).
bool equivalentRegions(Region &a, Region &b);

} // namespace mlir::moe

#endif // MOE_UTILS_REGIONEQUIVALENCE_H
