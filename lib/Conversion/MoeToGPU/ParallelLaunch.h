//===- ParallelLaunch.h - kernels over a parallel loop's iterations -------===//
//
// The launches moe-map-to-gpu builds: a parallel loop's iteration space
// flattened to one index (innermost dimension fastest, so that consecutive
// threads touch consecutive elements), a fixed number of threads per
// iteration, and one-dimensional launches.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_CONVERSION_MOETOGPU_PARALLELLAUNCH_H
#define MOE_CONVERSION_MOETOGPU_PARALLELLAUNCH_H

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"

namespace mlir::moe {

/// A one-dimensional launch of `blocks` x `threads`, its body terminated.
gpu::LaunchOp createLaunch(OpBuilder &b, Location loc, Value blocks, Value threads);

/// Where the body of a loop's launch is built: `b` (left inside the guard
/// of the threads past the end) and `map` (the loop's induction variables)
/// belong to the thread's iteration; `lane` is the thread's number within
/// the iteration.
struct IterationThread {
  Value lane;
  IRMapping map;
};

/// Launches `threadsPerIteration` threads (dividing `blockSize`, so that no
/// iteration straddles blocks) per iteration of `loop`, `blockSize` threads
/// per block, before `loop`; at least one block, so that an empty iteration
/// space launches threads that exit.
IterationThread launchIterations(OpBuilder &b, scf::ParallelOp loop, int64_t blockSize,
                                 int64_t threadsPerIteration);

} // namespace mlir::moe

#endif // MOE_CONVERSION_MOETOGPU_PARALLELLAUNCH_H
