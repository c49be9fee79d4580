//===- RegionEquivalence.cpp - same computation, other names --------------===//

#include "moe/Utils/RegionEquivalence.h"

#include "mlir/IR/Operation.h"
#include "mlir/IR/OperationSupport.h"

using namespace mlir;

llvm::hash_code moe::hashRegionOps(Region &region) {
  llvm::hash_code hash = llvm::hash_value(region.getBlocks().size());
  region.walk([&](Operation *op) {
    hash = llvm::hash_combine(hash, OperationEquivalence::computeHash(
                                        op, OperationEquivalence::ignoreHashValue,
                                        OperationEquivalence::ignoreHashValue,
                                        OperationEquivalence::IgnoreLocations));
  });
  return hash;
}

bool moe::equivalentRegions(Region &a, Region &b) {
  return OperationEquivalence::isRegionEquivalentTo(&a, &b, OperationEquivalence::IgnoreLocations);
}
