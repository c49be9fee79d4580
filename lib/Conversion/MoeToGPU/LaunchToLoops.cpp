//===- LaunchToLoops.cpp - GPU launches as host loops, for testing --------===//
//
// moe-map-to-gpu only builds kernels whose threads are independent (no
// barriers, no shared memory), so running the threads one after another on
// the host computes what the GPU computes. This lets the CPU test suite check
// the kernel bodies numerically.
//
//===----------------------------------------------------------------------===//

#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEGPULAUNCHTOLOOPS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

LogicalResult launchAsLoops(gpu::LaunchOp launch) {
  if (launch.getAsyncToken() || !launch.getAsyncDependencies().empty())
    return launch.emitOpError("is asynchronous; run moe-gpu-launch-to-loops before gpu-async-region");
  if (!launch.getWorkgroupAttributions().empty() || !launch.getPrivateAttributions().empty())
    return launch.emitOpError("uses workgroup or private memory, which host loops cannot model");
  WalkResult barrier = launch.walk([](gpu::BarrierOp) { return WalkResult::interrupt(); });
  if (barrier.wasInterrupted())
    return launch.emitOpError("has a barrier: its threads cannot run one after another");

  OpBuilder b(launch);
  Location loc = launch.getLoc();
  Value zero = arith::ConstantIndexOp::create(b, loc, 0), one = arith::ConstantIndexOp::create(b, loc, 1);
  gpu::KernelDim3 gridArgs = launch.getGridSizeOperandValues();
  gpu::KernelDim3 blockArgs = launch.getBlockSizeOperandValues();
  SmallVector<Value> bounds = {gridArgs.x, gridArgs.y, gridArgs.z, blockArgs.x, blockArgs.y, blockArgs.z};
  IRMapping map;
  gpu::KernelDim3 gridSize = launch.getGridSize(), blockSize = launch.getBlockSize();
  for (auto [arg, size] : llvm::zip(SmallVector<Value>{gridSize.x, gridSize.y, gridSize.z, blockSize.x,
                                                       blockSize.y, blockSize.z},
                                    bounds))
    map.map(arg, size);
  gpu::KernelDim3 blockIds = launch.getBlockIds(), threadIds = launch.getThreadIds();
  SmallVector<Value> ids = {blockIds.x, blockIds.y, blockIds.z, threadIds.x, threadIds.y, threadIds.z};

  // Six nested loops, outermost over blocks in x; the body in the innermost.
  for (auto [id, bound] : llvm::zip(ids, bounds)) {
    auto loop = scf::ForOp::create(b, loc, zero, bound, one);
    map.map(id, loop.getInductionVar());
    b.setInsertionPointToStart(loop.getBody());
  }
  for (Operation &op : launch.getBody().front().without_terminator())
    b.clone(op, map);
  launch.erase();
  return success();
}

struct MoeGpuLaunchToLoopsPass
    : mlir::moe::impl::MoeGpuLaunchToLoopsBase<MoeGpuLaunchToLoopsPass> {
  void runOnOperation() override {
    SmallVector<gpu::LaunchOp> launches;
    getOperation().walk([&](gpu::LaunchOp launch) { launches.push_back(launch); });
    for (gpu::LaunchOp launch : launches)
      if (failed(launchAsLoops(launch)))
        return signalPassFailure();
    bool failedOp = false;
    getOperation().walk([&](Operation *op) {
      OpBuilder b(op);
      if (auto alloc = dyn_cast<gpu::AllocOp>(op)) {
        if (alloc.getAsyncToken()) {
          failedOp = true;
          alloc.emitOpError("is asynchronous; run before gpu-async-region");
          return;
        }
        auto host = memref::AllocOp::create(b, alloc.getLoc(), alloc.getType(), alloc.getDynamicSizes(),
                                            alloc.getSymbolOperands(), IntegerAttr());
        alloc.getMemref().replaceAllUsesWith(host.getResult());
        alloc.erase();
      } else if (auto dealloc = dyn_cast<gpu::DeallocOp>(op)) {
        memref::DeallocOp::create(b, dealloc.getLoc(), dealloc.getMemref());
        dealloc.erase();
      } else if (auto copy = dyn_cast<gpu::MemcpyOp>(op)) {
        memref::CopyOp::create(b, copy.getLoc(), copy.getSrc(), copy.getDst());
        copy.erase();
      }
    });
    if (failedOp)
      signalPassFailure();
  }
};
} // namespace
