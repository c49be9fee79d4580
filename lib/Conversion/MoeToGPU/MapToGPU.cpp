//===- MapToGPU.cpp - place the computations of a host function on the GPU -===//
//
// After bufferization a host function mixes three kinds of operations:
// buffer management and size arithmetic (stays on the host), parallel loops
// (one kernel each, a thread per iteration) and everything else that touches
// memory (a single-thread kernel). The program's buffers live in device
// memory, so nothing that reads or writes them may stay on the host.
//
//===----------------------------------------------------------------------===//

#include "CopyAsLoop.h"
#include "KernelReductions.h"
#include "ParallelLaunch.h"
#include "dialects/moe/MoeDialect.h"
#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
#include "mlir/Transforms/RegionUtils.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEMAPTOGPU
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// Operations that touch no program memory: they may run on the host.
bool runsOnHost(Operation *op) {
  if (op->hasTrait<OpTrait::IsTerminator>() || op->hasAttr(moe::kHostCallAttrName))
    return true;
  if (isa<memref::AllocOp, memref::DeallocOp, memref::CopyOp, memref::GetGlobalOp,
          memref::SubViewOp, memref::ExpandShapeOp, memref::CollapseShapeOp,
          memref::ReinterpretCastOp, memref::CastOp, memref::DimOp>(op))
    return true;
  // Scalar arithmetic (sizes, offsets): no regions, no memory effects.
  return op->getNumRegions() == 0 && isMemoryEffectFree(op) &&
         llvm::none_of(op->getResultTypes(), llvm::IsaPred<BaseMemRefType>);
}

/// A call of a function of this module, mapped as a function of its own (a
/// shared layer or block, an expert-parallel rank's program): it launches
/// its kernels itself, and a buffer it returns is the caller's to free.
bool callsMappedFunction(Operation *op) {
  auto call = dyn_cast<func::CallOp>(op);
  if (!call || call->hasAttr(moe::kHostCallAttrName))
    return false;
  auto callee = SymbolTable::lookupNearestSymbolFrom<func::FuncOp>(call, call.getCalleeAttr());
  return callee && !callee.isExternal();
}

/// Work that already has its own launches: a kernel (moe-tensor-core-gemm)
/// or a call of a mapped function. Either stays in place on the host.
bool launchesItself(Operation *op) { return isa<gpu::LaunchOp>(op) || callsMappedFunction(op); }

/// Host operations whose place in the order matters.
bool isOrdered(Operation *op) { return isa<memref::CopyOp, memref::DeallocOp>(op); }

/// A sequential loop that stays on the host and launches kernels each
/// iteration: no results, and parallel work directly in its body (a loop of
/// scalar work runs better as one single-thread kernel than as a launch per
/// iteration).
bool isHostLoop(Operation *op) {
  auto loop = dyn_cast<scf::ForOp>(op);
  return loop && loop.getNumResults() == 0 &&
         llvm::any_of(loop.getBody()->getOperations(), llvm::IsaPred<scf::ParallelOp>);
}

/// A loop over values (scf.while: a jax.lax.scan over layers) whose values
/// are scalars and buffers: it stays on the host, its condition computed
/// there, its body launching kernels each iteration.
bool isHostWhile(Operation *op) {
  auto loop = dyn_cast<scf::WhileOp>(op);
  return loop && llvm::all_of(loop->getResultTypes(), [](Type t) {
           return t.isIntOrIndexOrFloat() || isa<BaseMemRefType>(t);
         });
}

/// A branch on host values whose results are scalars and buffers (the
/// choice of an expert-parallel program's rank): it stays on the host, each
/// branch launching its own kernels.
bool isHostBranch(Operation *op) {
  auto branch = dyn_cast<scf::IfOp>(op);
  return branch && llvm::all_of(branch->getResultTypes(), [](Type t) {
           return t.isIntOrIndexOrFloat() || isa<BaseMemRefType>(t);
         });
}

/// One kernel for `loop`: thread i of the flattened iteration space runs
/// iteration i (innermost dimension fastest).
void launchParallel(scf::ParallelOp loop, int64_t blockSize) {
  OpBuilder b(loop);
  moe::IterationThread thread = moe::launchIterations(b, loop, blockSize, /*threadsPerIteration=*/1);
  for (Operation &op : loop.getBody()->without_terminator())
    b.clone(op, thread.map);
  loop.erase();
}

/// One single-thread kernel running `ops` in order.
void launchSerial(ArrayRef<Operation *> ops) {
  Location loc = ops.front()->getLoc();
  OpBuilder b(ops.front());
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  gpu::LaunchOp launch = moe::createLaunch(b, loc, one, one);
  Block &body = launch.getBody().front();
  for (Operation *op : ops)
    op->moveBefore(body.getTerminator());
}

/// Inside kernels: scratch buffers live on the thread's stack, constant
/// globals are read from the device module's copy.
LogicalResult fixKernelBody(gpu::LaunchOp launch) {
  bool failed = false;
  launch.walk([&](memref::AllocOp alloc) {
    if (!alloc.getType().hasStaticShape()) {
      // Its size comes from data the kernel reads (ONNX NonZero run as
      // plain ops): the host would need it back before allocating.
      alloc.emitOpError("of dynamic size inside a GPU kernel is not supported (a size computed from the "
                        "program's data, such as ONNX NonZero's or an expert-parallel split placement's row "
                        "count, runs on the CPU target only)");
      failed = true;
      return;
    }
    OpBuilder b(alloc);
    auto alloca = memref::AllocaOp::create(b, alloc.getLoc(), alloc.getType(), ValueRange{},
                                           alloc.getAlignmentAttr());
    alloc.replaceAllUsesWith(alloca.getResult());
    alloc.erase();
  });
  launch.walk([&](memref::DeallocOp dealloc) { dealloc.erase(); });
  moe::promoteLoopAccumulators(launch);
  // A copy that had to join a kernel: a loop of loads and stores.
  SmallVector<memref::CopyOp> copies;
  launch.walk([&](memref::CopyOp copy) { copies.push_back(copy); });
  for (memref::CopyOp copy : copies)
    moe::copyAsLoop(copy);
  // Globals used inside: a copy of memref.get_global at the kernel's start.
  Block &body = launch.getBody().front();
  launch.walk([&](Operation *op) {
    for (OpOperand &use : op->getOpOperands()) {
      auto global = use.get().getDefiningOp<memref::GetGlobalOp>();
      if (!global || launch->isAncestor(global))
        continue;
      OpBuilder b(&body, body.begin());
      use.set(b.clone(*global)->getResult(0));
    }
  });
  return failure(failed);
}

/// Maps the operations of `block` (a function body or a host loop's body).
class BlockMapper {
public:
  BlockMapper(int64_t blockSize, bool emulate) : blockSize(blockSize), emulate(emulate) {}

  LogicalResult map(Block &block) {
    // Device operations: those that touch memory, and everything computed
    // from their results. A host loop is mapped recursively.
    llvm::DenseSet<Operation *> device;
    SmallVector<Block *> hostLoops;
    for (Operation &op : block) {
      // Values used by the op or inside its regions (a loop body).
      llvm::SetVector<Value> used(op.getOperands().begin(), op.getOperands().end());
      getUsedValuesDefinedAbove(op.getRegions(), used);
      bool usesDevice = llvm::any_of(used, [&](Value v) {
        Operation *def = v.getDefiningOp();
        return def && device.contains(def);
      });
      if (launchesItself(&op))
        continue;
      if (!usesDevice && isHostLoop(&op)) {
        hostLoops.push_back(cast<scf::ForOp>(op).getBody());
      } else if (!usesDevice && isHostBranch(&op)) {
        auto branch = cast<scf::IfOp>(op);
        hostLoops.push_back(&branch.getThenRegion().front());
        if (!branch.getElseRegion().empty())
          hostLoops.push_back(&branch.getElseRegion().front());
      } else if (isHostWhile(&op)) {
        auto loop = cast<scf::WhileOp>(op);
        hostLoops.append({&loop.getBefore().front(), &loop.getAfter().front()});
      } else if (usesDevice || !runsOnHost(&op)) {
        device.insert(&op);
      }
    }
    for (Operation &op : block)
      if (op.hasTrait<OpTrait::IsTerminator>() && device.contains(&op))
        return op.emitOpError("returns a value computed on the GPU; return buffers instead "
                              "(buffer-results-to-out-params)");

    SmallVector<SmallVector<Operation *>> kernels;
    if (failed(groupKernels(block, device, kernels)))
      return failure();
    for (ArrayRef<Operation *> ops : kernels) {
      // A loop with reductions runs in one thread: its result is one value.
      auto loop = dyn_cast<scf::ParallelOp>(ops.front());
      if (ops.size() != 1 || !loop || !loop.getInitVals().empty())
        launchSerial(ops);
      else if (!moe::launchWarpReduction(loop, blockSize, emulate))
        launchParallel(loop, blockSize);
    }
    for (Operation &op : block)
      if (auto launch = dyn_cast<gpu::LaunchOp>(op))
        if (failed(fixKernelBody(launch)))
          return failure();
    for (Block *body : hostLoops)
      if (failed(map(*body)))
        return failure();
    return placeBuffers(block);
  }

private:
  /// Kernels: maximal runs of device operations closed under SSA uses.
  /// Host operations inside a run move before it; ordered ones (copies,
  /// deallocations) join it.
  LogicalResult groupKernels(Block &block, llvm::DenseSet<Operation *> &device,
                             SmallVector<SmallVector<Operation *>> &kernels) {
    for (Operation *op = &block.front(); op;) {
      if (!device.contains(op)) {
        op = op->getNextNode();
        continue;
      }
      SmallVector<Operation *> members = {op};
      SmallVector<Operation *> hostInRange;
      Operation *last = op;
      auto extendTo = [&](Operation *member) {
        for (Value result : member->getResults())
          for (Operation *user : result.getUsers()) {
            Operation *top = block.findAncestorOpInBlock(*user);
            if (top && last->isBeforeInBlock(top))
              last = top;
          }
      };
      extendTo(op);
      Operation *cursor = op->getNextNode();
      while (cursor && (cursor == last || cursor->isBeforeInBlock(last))) {
        if (device.contains(cursor) || isOrdered(cursor)) {
          members.push_back(cursor);
          extendTo(cursor);
        } else {
          hostInRange.push_back(cursor);
        }
        cursor = cursor->getNextNode();
      }
      for (Operation *host : hostInRange) {
        if (host->hasTrait<OpTrait::IsTerminator>())
          return host->emitOpError("uses a value computed on the GPU");
        // Moving a kernel would reorder it with its producers.
        if (launchesItself(host))
          return host->emitOpError("lies between operations that must share one kernel");
        host->moveBefore(op);
      }
      kernels.push_back(std::move(members));
      op = cursor;
    }
    return success();
  }

  /// Host buffers become device buffers, freed at the end of the block;
  /// host copies become device memcpys.
  LogicalResult placeBuffers(Block &block) {
    SmallVector<Value> toFree;
    for (Operation &op : llvm::make_early_inc_range(block)) {
      OpBuilder b(&op);
      if (auto alloc = dyn_cast<memref::AllocOp>(op)) {
        auto gpuAlloc = gpu::AllocOp::create(b, alloc.getLoc(), alloc.getType(), Type(), ValueRange{},
                                             alloc.getDynamicSizes(), alloc.getSymbolOperands(),
                                             /*hostShared=*/false);
        alloc.replaceAllUsesWith(gpuAlloc.getMemref());
        alloc.erase();
        toFree.push_back(gpuAlloc.getMemref());
      } else if (auto dealloc = dyn_cast<memref::DeallocOp>(op)) {
        gpu::DeallocOp::create(b, dealloc.getLoc(), Type(), ValueRange{}, dealloc.getMemref());
        llvm::erase(toFree, dealloc.getMemref());
        dealloc.erase();
      } else if (callsMappedFunction(&op) || isHostBranch(&op)) {
        // A function whose result shape it alone knows returns its buffer
        // (moe-results-to-out-params), and so does a branch calling one:
        // the caller frees it.
        for (Value result : op.getResults())
          if (isa<BaseMemRefType>(result.getType()))
            toFree.push_back(result);
      } else if (auto copy = dyn_cast<memref::CopyOp>(op)) {
        if (!moe::hasIdentityLayout(copy.getSource()) || !moe::hasIdentityLayout(copy.getTarget()))
          return copy.emitOpError("between strided buffers cannot be a GPU memcpy (run "
                                  "moe-parallelize-loops first)");
        gpu::MemcpyOp::create(b, copy.getLoc(), Type(), ValueRange{}, copy.getTarget(),
                              copy.getSource());
        copy.erase();
      }
    }
    // A returned buffer, or a view of one (a reshape of the result), is the
    // caller's to free.
    Operation *terminator = block.getTerminator();
    llvm::DenseSet<Value> returned;
    for (Value v : terminator->getOperands()) {
      while (v && returned.insert(v).second) {
        auto view = v.getDefiningOp<ViewLikeOpInterface>();
        v = view ? view.getViewSource() : Value();
      }
    }
    OpBuilder b(terminator);
    for (Value buffer : toFree)
      if (!returned.contains(buffer))
        gpu::DeallocOp::create(b, terminator->getLoc(), Type(), ValueRange{}, buffer);
    return success();
  }

  int64_t blockSize;
  bool emulate;
};

struct MoeMapToGPUPass : mlir::moe::impl::MoeMapToGPUBase<MoeMapToGPUPass> {
  using MoeMapToGPUBase::MoeMapToGPUBase;

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    if (func.isExternal())
      return;
    if (blockSize <= 0 || blockSize > 1024) {
      func.emitError("moe-map-to-gpu: block-size must be in [1, 1024], got ")
          << static_cast<int64_t>(blockSize);
      return signalPassFailure();
    }
    if (func.getBody().getBlocks().size() != 1) {
      func.emitError("moe-map-to-gpu: expected a single-block function (run before scf-to-cf)");
      return signalPassFailure();
    }
    if (failed(BlockMapper(blockSize, emulate).map(func.getBody().front())))
      signalPassFailure();
  }
};
} // namespace
