//===- KernelReductions.h - reductions inside moe-map-to-gpu's kernels ----===//
//
// Lowered linalg reductions read and write their accumulator in memory on
// every step (`load acc; acc + f(k); store acc`). On a GPU that is a
// dependent global-memory round trip per step, and one thread walking a
// long reduction alone leaves the machine idle when there are few outputs
// (a router's logits at one token). These two rewrites fix both.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_CONVERSION_MOETOGPU_KERNELREDUCTIONS_H
#define MOE_CONVERSION_MOETOGPU_KERNELREDUCTIONS_H

#include "mlir/Dialect/SCF/IR/SCF.h"

namespace mlir::moe {

/// In every sequential loop under `root`, an element that the loop reads and
/// writes at indices it does not change, and that nothing else in the loop
/// can reach, becomes a loop value: one load before the loop, one store
/// after it. Exact: the same operations in the same order.
void promoteLoopAccumulators(Operation *root);

/// Launches `loop` with a warp of 32 threads per iteration when each
/// iteration is a long reduction (a constant trip count of at least 64) of
/// one f32 element, by an associative combiner (addf, mulf, maximumf,
/// minimumf, maxnumf, minnumf), over values read along the buffers'
/// contiguous dimension: lane l reduces steps l, l + 32, ... into a
/// register, the lanes are combined by a butterfly of shuffles, and lane 0
/// combines the total with the stored value and runs the rest of the
/// iteration. Floating-point additions and products are then done in
/// another order (the max and min combiners give the same bits). With
/// `emulate` each iteration is one thread that runs the 32 lanes one after
/// another and combines them in the butterfly's order, for
/// moe-gpu-launch-to-loops: the same results as the GPU kernel, bit for
/// bit. Returns false, changing nothing, when `loop` is not of that form or
/// `blockSize` is not a multiple of 32.
bool launchWarpReduction(scf::ParallelOp loop, int64_t blockSize, bool emulate);

} // namespace mlir::moe

#endif // MOE_CONVERSION_MOETOGPU_KERNELREDUCTIONS_H
