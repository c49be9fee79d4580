//===- ParallelizeLoops.cpp - marked scf.for loops to scf.parallel --------===//
//
// convert-moe-to-linalg marks the loops whose iterations write disjoint
// elements (moe.parallel, dialects/moe/MoeBase.td). After bufferization such a loop
// either updates buffers in place (no results left: safe to run in parallel)
// or was bufferized out of place (it still yields buffers: left sequential).
// Copies that cannot become a device memcpy become parallel copy loops.
//
//===----------------------------------------------------------------------===//

#include "CopyAsLoop.h"
#include "dialects/moe/MoeDialect.h"
#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
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

/// True when two index values are the same at run time: one value, equal
/// constants, or the same dimension of the same buffer (bufferization leaves
/// one memref.dim per use).
bool sameIndex(Value a, Value b) {
  if (a == b)
    return true;
  if (auto ca = getConstantIntValue(a))
    return ca == getConstantIntValue(b);
  auto da = a.getDefiningOp<memref::DimOp>(), db = b.getDefiningOp<memref::DimOp>();
  return da && db && da.getSource() == db.getSource() && sameIndex(da.getIndex(), db.getIndex());
}

/// How one loop touches the buffers it shares with another: whether every
/// access's leading `prefix` indices are the loop's leading induction
/// variables (the iteration touches only "its" rows), and what it writes.
struct Accesses {
  llvm::DenseMap<Value, bool> rowLocal;
  llvm::DenseSet<Value> written;
};

/// The allocation or argument a buffer is a view of (subview, cast,
/// reshape), and whether it is a view.
std::pair<Value, bool> viewedBuffer(Value buffer) {
  bool viewed = false;
  while (auto view = buffer.getDefiningOp<ViewLikeOpInterface>()) {
    buffer = view.getViewSource();
    viewed = true;
  }
  return {buffer, viewed};
}

/// Collects `loop`'s accesses with respect to its first `prefix` induction
/// variables. Accesses through a view count against the viewed buffer and
/// are never row-local (their indices are the view's). False when the body
/// has an effect other than loads and stores.
bool collectAccesses(scf::ParallelOp loop, unsigned prefix, Accesses &accesses) {
  ValueRange ivs = ValueRange(loop.getInductionVars()).take_front(prefix);
  WalkResult result = loop.getBody()->walk([&](Operation *op) {
    Value buffer;
    ValueRange indices;
    bool writes = false;
    if (auto load = dyn_cast<memref::LoadOp>(op)) {
      buffer = load.getMemRef();
      indices = load.getIndices();
    } else if (auto store = dyn_cast<memref::StoreOp>(op)) {
      buffer = store.getMemRef();
      indices = store.getIndices();
      writes = true;
    } else if (isa<memref::AllocaOp, memref::AllocOp, memref::DeallocOp>(op) || isMemoryEffectFree(op) ||
               op->hasTrait<OpTrait::HasRecursiveMemoryEffects>()) {
      return WalkResult::advance();
    } else {
      return WalkResult::interrupt(); // copies, calls: unknown accesses
    }
    auto [base, viewed] = viewedBuffer(buffer);
    if (writes)
      accesses.written.insert(base);
    bool local = !viewed && indices.size() >= ivs.size() && llvm::equal(indices.take_front(ivs.size()), ivs);
    auto [it, inserted] = accesses.rowLocal.try_emplace(base, local);
    if (!inserted)
      it->second &= local;
    return WalkResult::advance();
  });
  return !result.wasInterrupted();
}

/// Most iterations one thread may run sequentially when a loop's trailing
/// dimensions are serialised: a row of routing state (k slots, E scores).
constexpr int64_t kMaxSerializedTrips = 256;

/// True when running `loop`'s dimensions from `keep` on sequentially costs
/// little: its body is straight-line code (a fill, an elementwise step) and
/// those dimensions have at most kMaxSerializedTrips static iterations.
bool isCheapToSerialize(scf::ParallelOp loop, unsigned keep) {
  int64_t trips = 1;
  for (unsigned d = keep, e = loop.getNumLoops(); d < e; ++d) {
    std::optional<int64_t> lb = getConstantIntValue(loop.getLowerBound()[d]);
    std::optional<int64_t> ub = getConstantIntValue(loop.getUpperBound()[d]);
    std::optional<int64_t> step = getConstantIntValue(loop.getStep()[d]);
    if (!lb || !ub || !step || *step <= 0)
      return false;
    trips *= std::max<int64_t>(0, (*ub - *lb + *step - 1) / *step);
    if (trips > kMaxSerializedTrips)
      return false;
  }
  return llvm::none_of(loop.getBody()->without_terminator(),
                       [](Operation &op) { return op.getNumRegions() > 0; });
}

/// `loop` restricted to its first `keep` dimensions, the others run as
/// sequential scf.for loops inside (same order of the iterations' effects
/// within one kept iteration).
scf::ParallelOp serializeTrailingDims(scf::ParallelOp loop, unsigned keep) {
  if (loop.getNumLoops() == keep)
    return loop;
  OpBuilder b(loop);
  Location loc = loop.getLoc();
  auto outer = scf::ParallelOp::create(b, loc, loop.getLowerBound().take_front(keep),
                                       loop.getUpperBound().take_front(keep),
                                       loop.getStep().take_front(keep));
  IRMapping map;
  map.map(ValueRange(loop.getInductionVars()).take_front(keep), ValueRange(outer.getInductionVars()));
  b.setInsertionPoint(outer.getBody()->getTerminator());
  for (unsigned d = keep, e = loop.getNumLoops(); d < e; ++d) {
    auto inner = scf::ForOp::create(b, loc, loop.getLowerBound()[d], loop.getUpperBound()[d],
                                    loop.getStep()[d]);
    map.map(loop.getInductionVars()[d], inner.getInductionVar());
    b.setInsertionPoint(inner.getBody()->getTerminator());
  }
  for (Operation &op : loop.getBody()->without_terminator())
    b.clone(op, map);
  loop.erase();
  return outer;
}

/// Fuses `second` into `first` (adjacent) when it is exact. The loops must
/// agree on their leading dimensions (the shorter loop's all); every buffer
/// one writes and the other touches must be accessed, in both, only in the
/// rows of the iteration's own leading indices. Then iteration i of the
/// fused loop runs first's iteration i, then second's, and no other
/// iteration sees those rows. The longer loop's extra dimensions become
/// sequential loops inside, only when its body is straight-line (a fill
/// with the per-token loop that writes the same rows; a T x E router stays
/// parallel). (Upstream's scf-parallel-loop-fusion, tried first, fused the
/// dispatch plan's scattered row writes with the fill of those rows, which
/// gave wrong results for top-1 routing; this rule is stricter.)
scf::ParallelOp fuseIfIndependent(scf::ParallelOp first, scf::ParallelOp second) {
  if (first->getNextNode() != second.getOperation() || !first.getInitVals().empty() ||
      !second.getInitVals().empty())
    return {};
  unsigned prefix = std::min(first.getNumLoops(), second.getNumLoops());
  for (unsigned d = 0; d < prefix; ++d)
    if (!sameIndex(first.getLowerBound()[d], second.getLowerBound()[d]) ||
        !sameIndex(first.getUpperBound()[d], second.getUpperBound()[d]) ||
        !sameIndex(first.getStep()[d], second.getStep()[d]))
      return {};
  if ((first.getNumLoops() > prefix && !isCheapToSerialize(first, prefix)) ||
      (second.getNumLoops() > prefix && !isCheapToSerialize(second, prefix)))
    return {};
  Accesses firstAccess, secondAccess;
  if (!collectAccesses(first, prefix, firstAccess) || !collectAccesses(second, prefix, secondAccess))
    return {};
  for (auto [buffer, firstLocal] : firstAccess.rowLocal) {
    auto other = secondAccess.rowLocal.find(buffer);
    if (other == secondAccess.rowLocal.end())
      continue;
    bool writtenByEither =
        firstAccess.written.contains(buffer) || secondAccess.written.contains(buffer);
    // Buffers are distinct allocations or arguments here; a shared one must
    // be touched row by row in both loops.
    if (writtenByEither && !(firstLocal && other->second))
      return {};
  }
  first = serializeTrailingDims(first, prefix);
  second = serializeTrailingDims(second, prefix);
  IRMapping map;
  map.map(second.getInductionVars(), first.getInductionVars());
  OpBuilder b(first.getBody()->getTerminator());
  for (Operation &op : second.getBody()->without_terminator())
    b.clone(op, map);
  second.erase();
  return first;
}

/// Fuses adjacent top-level parallel loops over the same space, so that a
/// fill and the loop accumulating into it, or per-token steps, become one
/// kernel.
void fuseAdjacentLoops(func::FuncOp func) {
  if (func.getBody().empty())
    return;
  for (Operation *op = &func.getBody().front().front(); op;) {
    auto first = dyn_cast<scf::ParallelOp>(op);
    // Side-effect-free scalar code between two loops (a memref.dim that
    // bufferization left per use) moves above the first: a loop has no
    // results, so it cannot depend on it.
    if (first) {
      SmallVector<Operation *> between;
      Operation *next = first->getNextNode();
      for (; next && isMemoryEffectFree(next) && next->getNumRegions() == 0 &&
             !next->hasTrait<OpTrait::IsTerminator>();
           next = next->getNextNode())
        between.push_back(next);
      if (isa_and_nonnull<scf::ParallelOp>(next))
        for (Operation *scalar : between)
          scalar->moveBefore(first);
    }
    auto second = first ? dyn_cast_or_null<scf::ParallelOp>(op->getNextNode()) : nullptr;
    if (scf::ParallelOp fused = second ? fuseIfIndependent(first, second) : nullptr) {
      op = fused; // try the new neighbour
      continue;
    }
    op = op->getNextNode();
  }
}

/// True when `op`'s leading dimension is parallel (its loop is the outermost)
/// and no two iterations over its parallel dimensions write one element:
/// every output's indexing map reads each of them.
bool writesDisjointElements(linalg::GenericOp op) {
  if (op.getNumLoops() == 0 || !linalg::isParallelIterator(op.getIteratorTypesArray().front()))
    return false;
  SmallVector<unsigned> parallelDims;
  op.getParallelDims(parallelDims);
  for (OpOperand &out : op.getDpsInitsMutable()) {
    AffineMap map = op.getMatchingIndexingMap(&out);
    for (unsigned d : parallelDims)
      if (!map.isFunctionOfDim(d))
        return false;
  }
  return true;
}

/// The function's top-level generics on buffers as parallel loops over
/// their parallel dimensions (reductions sequential inside, in order).
void parallelizeTopLevelGenerics(func::FuncOp func) {
  if (func.getBody().empty())
    return;
  SmallVector<linalg::GenericOp> generics;
  for (Operation &op : func.getBody().front())
    if (auto generic = dyn_cast<linalg::GenericOp>(op);
        generic && generic.hasPureBufferSemantics() && writesDisjointElements(generic))
      generics.push_back(generic);
  IRRewriter rewriter(func.getContext());
  for (linalg::GenericOp generic : generics) {
    rewriter.setInsertionPoint(generic);
    if (succeeded(linalg::linalgOpToParallelLoops(rewriter, generic)))
      rewriter.eraseOp(generic);
  }
}

struct MoeParallelizeLoopsPass
    : mlir::moe::impl::MoeParallelizeLoopsBase<MoeParallelizeLoopsPass> {
  using MoeParallelizeLoopsBase::MoeParallelizeLoopsBase;
  void runOnOperation() override {
    if (parallelGenerics)
      parallelizeTopLevelGenerics(getOperation());
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
