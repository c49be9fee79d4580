//===- ParallelLaunch.h - kernels over a parallel loop's iterations -------===//
//
// The pieces moe-map-to-gpu's kernels share: a parallel loop's iteration
// space flattened to one index (innermost dimension fastest, so that
// consecutive threads touch consecutive elements), and a one-dimensional
// launch.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_CONVERSION_MOETOGPU_PARALLELLAUNCH_H
#define MOE_CONVERSION_MOETOGPU_PARALLELLAUNCH_H

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"

namespace mlir::moe {

/// ceil(a / d) for non-negative indices.
Value ceilDiv(OpBuilder &b, Location loc, Value a, Value d);

/// A one-dimensional launch of `blocks` x `threads`, its body terminated.
gpu::LaunchOp createLaunch(OpBuilder &b, Location loc, Value blocks, Value threads);

/// A parallel loop's trip count per dimension and their product.
struct FlatIterations {
  SmallVector<Value> counts;
  Value total;
};
FlatIterations flattenIterations(OpBuilder &b, scf::ParallelOp loop);

/// Maps the loop's induction variables to the iteration numbered `index`.
void mapIteration(OpBuilder &b, scf::ParallelOp loop, const FlatIterations &space, Value index,
                  IRMapping &map);

} // namespace mlir::moe

#endif // MOE_CONVERSION_MOETOGPU_PARALLELLAUNCH_H
