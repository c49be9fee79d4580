//===- ParallelizeLoops.cpp - marked scf.for loops to scf.parallel --------===//
//
// convert-moe-to-linalg marks the loops whose iterations write disjoint
// elements (moe/Conversion/ParallelLoops.h). After bufferization such a loop
// either updates buffers in place (no results left: safe to run in parallel)
// or was bufferized out of place (it still yields buffers: left sequential).
// Copies that cannot become a device memcpy become parallel copy loops.
//
//===----------------------------------------------------------------------===//

#include "CopyAsLoop.h"
#include "moe/Conversion/ParallelLoops.h"
#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/SmallPtrSet.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEPARALLELIZELOOPS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// The marked loop as an scf.parallel with the same body.
void convertToParallel(scf::ForOp loop) {
  OpBuilder b(loop);
  auto parallel = scf::ParallelOp::create(b, loop.getLoc(), ValueRange{loop.getLowerBound()},
                                          ValueRange{loop.getUpperBound()},
                                          ValueRange{loop.getStep()});
  loop.getInductionVar().replaceAllUsesWith(parallel.getInductionVars()[0]);
  Block &from = *loop.getBody();
  from.getTerminator()->erase();
  Block &to = *parallel.getBody();
  to.getOperations().splice(to.getTerminator()->getIterator(), from.getOperations());
  loop.erase();
}

/// True when `value` is defined outside `op` (so it may bound a loop that
/// replaces `op`).
bool definedOutside(Value value, Operation *op) {
  return !op->isAncestor(value.getParentBlock()->getParentOp());
}

/// Merges `outer` with the parallel loop its body consists of, when that
/// loop's bounds do not depend on `outer`. Returns the merged loop or null.
scf::ParallelOp mergeWithInner(scf::ParallelOp outer) {
  Block &body = *outer.getBody();
  if (!outer.getInitVals().empty() || body.getOperations().size() != 2)
    return nullptr;
  auto inner = dyn_cast<scf::ParallelOp>(body.front());
  if (!inner || !inner.getInitVals().empty())
    return nullptr;
  for (Value bound : inner->getOperands())
    if (!definedOutside(bound, outer))
      return nullptr;
  SmallVector<Value> lbs = llvm::to_vector(outer.getLowerBound());
  SmallVector<Value> ubs = llvm::to_vector(outer.getUpperBound());
  SmallVector<Value> steps = llvm::to_vector(outer.getStep());
  llvm::append_range(lbs, inner.getLowerBound());
  llvm::append_range(ubs, inner.getUpperBound());
  llvm::append_range(steps, inner.getStep());
  OpBuilder b(outer);
  auto merged = scf::ParallelOp::create(b, outer.getLoc(), ValueRange(lbs), ValueRange(ubs),
                                        ValueRange(steps));
  Block &mergedBody = *merged.getBody();
  unsigned outerLoops = outer.getNumLoops();
  for (unsigned d = 0; d < outerLoops; ++d)
    outer.getBody()->getArgument(d).replaceAllUsesWith(mergedBody.getArgument(d));
  for (unsigned d = 0, e = inner.getNumLoops(); d < e; ++d)
    inner.getBody()->getArgument(d).replaceAllUsesWith(mergedBody.getArgument(outerLoops + d));
  Block &innerBody = *inner.getBody();
  innerBody.getTerminator()->erase();
  mergedBody.getOperations().splice(mergedBody.getTerminator()->getIterator(),
                                    innerBody.getOperations());
  outer.erase();
  return merged;
}

/// Moves each top-level allocation up to just after its last operand, so
/// that loops separated only by allocations become adjacent and
/// scf-parallel-loop-fusion can merge them (a fill with the loop that
/// accumulates into the same buffer, per-token steps of the routing).
void hoistAllocations(func::FuncOp func) {
  if (func.getBody().empty())
    return;
  Block &block = func.getBody().front();
  llvm::SmallPtrSet<Operation *, 16> hoisted;
  for (Operation &op : llvm::make_early_inc_range(block)) {
    auto alloc = dyn_cast<memref::AllocOp>(op);
    if (!alloc)
      continue;
    Operation *after = nullptr;
    for (Value operand : alloc->getOperands())
      if (Operation *def = operand.getDefiningOp())
        if (def->getBlock() == &block && (!after || after->isBeforeInBlock(def)))
          after = def;
    // After the allocations already moved to the same place: order is kept.
    Operation *next = after ? after->getNextNode() : &block.front();
    while (next && hoisted.contains(next))
      next = next->getNextNode();
    if (next != alloc)
      alloc->moveBefore(next);
    hoisted.insert(alloc);
  }
}

/// The buffers `loop` reads or writes, and whether every such access indexes
/// exactly with the loop's induction variables (in order). False when the
/// body has an effect other than loads and stores.
bool collectAccesses(scf::ParallelOp loop, llvm::DenseMap<Value, bool> &identity,
                     llvm::DenseSet<Value> &written) {
  ValueRange ivs = loop.getInductionVars();
  WalkResult result = loop.getBody()->walk([&](Operation *op) {
    Value buffer;
    ValueRange indices;
    if (auto load = dyn_cast<memref::LoadOp>(op)) {
      buffer = load.getMemRef();
      indices = load.getIndices();
    } else if (auto store = dyn_cast<memref::StoreOp>(op)) {
      buffer = store.getMemRef();
      indices = store.getIndices();
      written.insert(buffer);
    } else if (isa<memref::AllocaOp, memref::AllocOp, memref::DeallocOp>(op) || isMemoryEffectFree(op) ||
               op->hasTrait<OpTrait::HasRecursiveMemoryEffects>()) {
      return WalkResult::advance();
    } else {
      return WalkResult::interrupt(); // copies, calls: unknown accesses
    }
    bool same = indices.size() == ivs.size() && llvm::equal(indices, ivs);
    auto [it, inserted] = identity.try_emplace(buffer, same);
    if (!inserted)
      it->second &= same;
    return WalkResult::advance();
  });
  return !result.wasInterrupted();
}

/// Fuses `second` into `first` (adjacent, same bounds) when it is exact:
/// every buffer one loop writes and the other touches is accessed only at
/// the iteration's own element, in both loops. (Upstream's
/// scf-parallel-loop-fusion, tried first, fused the dispatch plan's
/// scattered row writes with the fill of those rows, which gave wrong
/// results for top-1 routing; this rule is stricter.)
bool fuseIfIndependent(scf::ParallelOp first, scf::ParallelOp second) {
  if (first->getNextNode() != second.getOperation() || !first.getInitVals().empty() ||
      !second.getInitVals().empty() || first.getLowerBound() != second.getLowerBound() ||
      first.getUpperBound() != second.getUpperBound() || first.getStep() != second.getStep())
    return false;
  llvm::DenseMap<Value, bool> firstAccess, secondAccess;
  llvm::DenseSet<Value> firstWritten, secondWritten;
  if (!collectAccesses(first, firstAccess, firstWritten) ||
      !collectAccesses(second, secondAccess, secondWritten))
    return false;
  for (auto [buffer, firstIdentity] : firstAccess) {
    auto other = secondAccess.find(buffer);
    if (other == secondAccess.end())
      continue;
    bool writtenByEither = firstWritten.contains(buffer) || secondWritten.contains(buffer);
    // Buffers are distinct allocations or arguments here; a shared one must
    // be touched element by element in both loops.
    if (writtenByEither && !(firstIdentity && other->second))
      return false;
  }
  IRMapping map;
  map.map(second.getInductionVars(), first.getInductionVars());
  OpBuilder b(first.getBody()->getTerminator());
  for (Operation &op : second.getBody()->without_terminator())
    b.clone(op, map);
  second.erase();
  return true;
}

/// Fuses adjacent top-level parallel loops over the same space, so that a
/// fill and the loop accumulating into it, or per-token steps, become one
/// kernel.
void fuseAdjacentLoops(func::FuncOp func) {
  if (func.getBody().empty())
    return;
  for (Operation *op = &func.getBody().front().front(); op;) {
    auto first = dyn_cast<scf::ParallelOp>(op);
    auto second = first ? dyn_cast_or_null<scf::ParallelOp>(op->getNextNode()) : nullptr;
    if (second && fuseIfIndependent(first, second))
      continue; // try the new neighbour
    op = op->getNextNode();
  }
}

struct MoeParallelizeLoopsPass
    : mlir::moe::impl::MoeParallelizeLoopsBase<MoeParallelizeLoopsPass> {
  void runOnOperation() override {
    // Post-order: inner loops convert before the loops around them.
    SmallVector<scf::ForOp> marked;
    getOperation().walk([&](scf::ForOp loop) {
      if (loop->hasAttr(moe::kParallelLoopAttrName))
        marked.push_back(loop);
    });
    for (scf::ForOp loop : marked) {
      loop->removeAttr(moe::kParallelLoopAttrName);
      if (loop.getNumResults() == 0)
        convertToParallel(loop);
    }
    // Only a top-level copy between contiguous buffers can be a device memcpy.
    func::FuncOp func = getOperation();
    func.walk([&](memref::CopyOp copy) {
      bool topLevel = copy->getParentOp() == func.getOperation();
      if (!topLevel || !moe::hasIdentityLayout(copy.getSource()) ||
          !moe::hasIdentityLayout(copy.getTarget()))
        moe::copyAsLoop(copy);
    });
    hoistAllocations(func);
    // Outermost first: a merged loop may merge again with its new body.
    SmallVector<scf::ParallelOp> outermost;
    getOperation().walk<WalkOrder::PreOrder>([&](scf::ParallelOp loop) {
      outermost.push_back(loop);
      return WalkResult::skip();
    });
    for (scf::ParallelOp loop : outermost)
      while (scf::ParallelOp merged = mergeWithInner(loop))
        loop = merged;
    fuseAdjacentLoops(func);
  }
};
} // namespace
