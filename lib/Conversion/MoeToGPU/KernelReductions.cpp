//===- KernelReductions.cpp - reductions inside moe-map-to-gpu's kernels --===//

#include "KernelReductions.h"
#include "ParallelLaunch.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

using namespace mlir;

namespace {

constexpr int64_t kWarpSize = 32;
// Shorter reductions leave most lanes idle; one thread does as well.
constexpr int64_t kMinWarpReductionSteps = 64;

/// The buffer a memref views, through subviews, casts and reshapes.
Value rootBuffer(Value memref) {
  while (auto view = memref.getDefiningOp<ViewLikeOpInterface>())
    memref = view.getViewSource();
  return memref;
}

bool isAllocation(Value buffer) {
  Operation *def = buffer.getDefiningOp();
  return def && isa<memref::AllocOp, memref::AllocaOp, gpu::AllocOp>(def);
}

/// Buffers that cannot overlap: different ones, one of them allocated by the
/// program (function arguments may alias each other).
bool disjoint(Value a, Value b) {
  Value rootA = rootBuffer(a), rootB = rootBuffer(b);
  return rootA != rootB && (isAllocation(rootA) || isAllocation(rootB));
}

Value accessedMemref(Operation *op) {
  if (auto load = dyn_cast<memref::LoadOp>(op))
    return load.getMemRef();
  return cast<memref::StoreOp>(op).getMemRef();
}

ValueRange accessedIndices(Operation *op) {
  if (auto load = dyn_cast<memref::LoadOp>(op))
    return load.getIndices();
  return cast<memref::StoreOp>(op).getIndices();
}

/// One element of one buffer.
struct Element {
  Value memref;
  SmallVector<Value> indices;

  bool isAccessedBy(Operation *op) const {
    return isa<memref::LoadOp, memref::StoreOp>(op) && accessedMemref(op) == memref &&
           llvm::equal(accessedIndices(op), indices);
  }
};

/// The loads and stores under `block`, or failure if it holds an operation
/// with other memory effects (a call, a copy, an allocation).
FailureOr<SmallVector<Operation *>> memoryAccesses(Block &block) {
  SmallVector<Operation *> accesses;
  WalkResult result = block.walk([&](Operation *op) {
    if (isa<memref::LoadOp, memref::StoreOp>(op)) {
      accesses.push_back(op);
      return WalkResult::advance();
    }
    if (op->hasTrait<OpTrait::HasRecursiveMemoryEffects>() || isMemoryEffectFree(op))
      return WalkResult::advance();
    return WalkResult::interrupt();
  });
  if (result.wasInterrupted())
    return failure();
  return accesses;
}

/// `access` cannot touch `element`: another buffer, or another constant
/// index of the same one.
bool missesElement(Operation *access, const Element &element) {
  if (accessedMemref(access) != element.memref)
    return disjoint(accessedMemref(access), element.memref);
  return llvm::any_of(llvm::zip(accessedIndices(access), element.indices), [](auto pair) {
    std::optional<int64_t> a = getConstantIntValue(std::get<0>(pair));
    std::optional<int64_t> b = getConstantIntValue(std::get<1>(pair));
    return a && b && *a != *b;
  });
}

/// `element` is read and written only by operations directly in `body`,
/// and no other access under it can reach the element.
bool isPrivateTo(const Element &element, Block &body, ArrayRef<Operation *> accesses) {
  return llvm::all_of(accesses, [&](Operation *access) {
    if (element.isAccessedBy(access))
      return access->getBlock() == &body;
    return missesElement(access, element);
  });
}

/// Keeps the first promotable accumulator of `loop` in a loop value.
/// Returns the new loop, or null if there was none.
scf::ForOp promoteOneAccumulator(scf::ForOp loop) {
  FailureOr<SmallVector<Operation *>> accesses = memoryAccesses(*loop.getBody());
  if (failed(accesses))
    return nullptr;
  for (Operation *access : *accesses) {
    auto store = dyn_cast<memref::StoreOp>(access);
    if (!store || store->getBlock() != loop.getBody() || !loop.isDefinedOutsideOfLoop(store.getMemRef()) ||
        !llvm::all_of(store.getIndices(), [&](Value i) { return loop.isDefinedOutsideOfLoop(i); }))
      continue;
    Element element{store.getMemRef(), llvm::to_vector(store.getIndices())};
    if (!isPrivateTo(element, *loop.getBody(), *accesses))
      continue;
    IRRewriter rewriter(loop.getContext());
    rewriter.setInsertionPoint(loop);
    Location loc = loop.getLoc();
    Value initial = memref::LoadOp::create(rewriter, loc, element.memref, element.indices);
    Block *oldBody = loop.getBody();
    auto yieldCurrent = [&](OpBuilder &, Location, ArrayRef<BlockArgument> args) -> SmallVector<Value> {
      // In program order: a load reads the last value stored.
      Value current = args.front();
      for (Operation &op : llvm::make_early_inc_range(*oldBody)) {
        if (!element.isAccessedBy(&op))
          continue;
        if (auto load = dyn_cast<memref::LoadOp>(op))
          load.replaceAllUsesWith(current);
        else
          current = cast<memref::StoreOp>(op).getValueToStore();
        op.erase();
      }
      return {current};
    };
    FailureOr<LoopLikeOpInterface> replaced =
        cast<LoopLikeOpInterface>(loop.getOperation())
            .replaceWithAdditionalYields(rewriter, initial, /*replaceInitOperandUsesInLoop=*/false, yieldCurrent);
    if (failed(replaced))
      return nullptr;
    auto promoted = cast<scf::ForOp>(replaced->getOperation());
    rewriter.setInsertionPointAfter(promoted);
    memref::StoreOp::create(rewriter, loc, promoted.getResults().back(), element.memref, element.indices);
    return promoted;
  }
  return nullptr;
}

/// A reduction loop as moe-map-to-gpu's warps run it: every step combines
/// the stored element with a value computed from the step alone.
struct ReductionLoop {
  scf::ForOp loop;
  memref::LoadOp load;   // of the accumulator
  Operation *combine;    // combine(load, term) or combine(term, load)
  memref::StoreOp store; // of the combination, to the same element
  int64_t lowerBound, upperBound, step;

  Value term() {
    return combine->getOperand(0) == load.getResult() ? combine->getOperand(1) : combine->getOperand(0);
  }
};

/// The identity of an associative combiner whose lane order is free, or
/// null for other operations.
TypedAttr combinerIdentity(Operation *combine) {
  auto type = dyn_cast<FloatType>(combine->getResult(0).getType());
  if (!type)
    return {};
  const llvm::fltSemantics &semantics = type.getFloatSemantics();
  if (isa<arith::AddFOp>(combine))
    return FloatAttr::get(type, llvm::APFloat::getZero(semantics, /*Negative=*/true));
  if (isa<arith::MulFOp>(combine))
    return FloatAttr::get(type, llvm::APFloat::getOne(semantics));
  if (isa<arith::MaximumFOp>(combine))
    return FloatAttr::get(type, llvm::APFloat::getInf(semantics, /*Negative=*/true));
  if (isa<arith::MinimumFOp>(combine))
    return FloatAttr::get(type, llvm::APFloat::getInf(semantics, /*Negative=*/false));
  return {};
}

FailureOr<ReductionLoop> matchReductionLoop(scf::ForOp loop) {
  std::optional<int64_t> lb = getConstantIntValue(loop.getLowerBound());
  std::optional<int64_t> ub = getConstantIntValue(loop.getUpperBound());
  std::optional<int64_t> step = getConstantIntValue(loop.getStep());
  if (loop.getNumResults() != 0 || !lb || !ub || !step || *step <= 0 ||
      (*ub - *lb + *step - 1) / *step < kMinWarpReductionSteps)
    return failure();
  FailureOr<SmallVector<Operation *>> accesses = memoryAccesses(*loop.getBody());
  if (failed(accesses))
    return failure();
  SmallVector<memref::StoreOp> stores;
  for (Operation *access : *accesses)
    if (auto store = dyn_cast<memref::StoreOp>(access))
      stores.push_back(store);
  if (stores.size() != 1 || stores.front()->getBlock() != loop.getBody())
    return failure();
  memref::StoreOp store = stores.front();
  if (!store.getValueToStore().getType().isF32() || !loop.isDefinedOutsideOfLoop(store.getMemRef()) ||
      !llvm::all_of(store.getIndices(), [&](Value i) { return loop.isDefinedOutsideOfLoop(i); }))
    return failure();
  Element accumulator{store.getMemRef(), llvm::to_vector(store.getIndices())};
  Operation *combine = store.getValueToStore().getDefiningOp();
  if (!combine || combine->getBlock() != loop.getBody() || !combinerIdentity(combine) ||
      !combine->getResult(0).hasOneUse())
    return failure();
  memref::LoadOp load;
  bool contiguous = false;
  for (Operation *access : *accesses) {
    if (access == store)
      continue;
    if (accumulator.isAccessedBy(access)) {
      if (load || access->getBlock() != loop.getBody())
        return failure();
      load = cast<memref::LoadOp>(access);
      continue;
    }
    if (!disjoint(accessedMemref(access), accumulator.memref))
      return failure();
    ValueRange indices = accessedIndices(access);
    contiguous |= !indices.empty() && indices.back() == loop.getInductionVar();
  }
  // The term combined must not depend on the accumulator.
  if (!load || !contiguous || !load->hasOneUse() || *load->getUsers().begin() != combine ||
      combine->getOperand(0) == combine->getOperand(1))
    return failure();
  return ReductionLoop{loop, load, combine, store, *lb, *ub, *step};
}

/// combine(first, second) in the operand order of the loop's combination:
/// `first` where the accumulator was read.
Value combineLike(OpBuilder &b, ReductionLoop reduction, Value first, Value second) {
  IRMapping map;
  map.map(reduction.load.getResult(), first);
  map.map(reduction.term(), second);
  return b.clone(*reduction.combine, map)->getResult(0);
}

/// Lane `lane`'s partial result: steps lane, lane + 32, ... of the loop,
/// combined from the identity.
Value lanePartial(OpBuilder &b, ReductionLoop reduction, Value lane, IRMapping &outer) {
  Location loc = reduction.loop.getLoc();
  Value step = arith::ConstantIndexOp::create(b, loc, reduction.step);
  Value begin = arith::AddIOp::create(b, loc, arith::ConstantIndexOp::create(b, loc, reduction.lowerBound),
                                      arith::MulIOp::create(b, loc, lane, step));
  Value end = arith::ConstantIndexOp::create(b, loc, reduction.upperBound);
  Value stride = arith::ConstantIndexOp::create(b, loc, reduction.step * kWarpSize);
  Value identity = arith::ConstantOp::create(b, loc, combinerIdentity(reduction.combine));
  auto partial = scf::ForOp::create(b, loc, begin, end, stride, identity);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(partial.getBody());
  IRMapping map = outer;
  map.map(reduction.loop.getInductionVar(), partial.getInductionVar());
  for (Operation &op : reduction.loop.getBody()->without_terminator()) {
    if (&op == reduction.load || &op == reduction.combine || &op == reduction.store)
      continue;
    b.clone(op, map);
  }
  Value next = combineLike(b, reduction, partial.getRegionIterArgs().front(), map.lookupOrDefault(reduction.term()));
  scf::YieldOp::create(b, loc, next);
  return partial.getResult(0);
}

/// Lane 0's total after a butterfly of xor shuffles: at offset o, lane l
/// combines its value with lane l ^ o's. On the GPU every lane holds its own
/// partial; emulated, one thread computes the 32 partials and, at offset o,
/// lanes l < o take lane l + o's (the values lane 0's result depends on).
Value laneTotal(OpBuilder &b, ReductionLoop reduction, Value lane, bool emulate, IRMapping &outer) {
  Location loc = reduction.loop.getLoc();
  if (!emulate) {
    Value total = lanePartial(b, reduction, lane, outer);
    for (int32_t offset = kWarpSize / 2; offset > 0; offset /= 2) {
      auto shuffle = gpu::ShuffleOp::create(b, loc, total, offset, kWarpSize, gpu::ShuffleMode::XOR);
      total = combineLike(b, reduction, total, shuffle.getShuffleResult());
    }
    return total;
  }
  // Emulated, the kernel's threads are iterations of host loops: the lanes
  // stay values (32 loops), not a scratch array on a stack that grows with
  // every iteration.
  SmallVector<Value> partials;
  for (int64_t l = 0; l < kWarpSize; ++l)
    partials.push_back(lanePartial(b, reduction, arith::ConstantIndexOp::create(b, loc, l), outer));
  for (int64_t offset = kWarpSize / 2; offset > 0; offset /= 2)
    for (int64_t l = 0; l < offset; ++l)
      partials[l] = combineLike(b, reduction, partials[l], partials[l + offset]);
  return partials.front();
}

/// Runs `build` in lane 0 only (every lane when emulated: one thread per
/// iteration then).
void inLaneZero(OpBuilder &b, Location loc, Value lane, bool emulate, function_ref<void()> build) {
  if (emulate) {
    build();
    return;
  }
  Value first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, lane,
                                      arith::ConstantIndexOp::create(b, loc, 0));
  auto branch = scf::IfOp::create(b, loc, first, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&branch.getThenRegion().front());
  build();
}

} // namespace

void mlir::moe::promoteLoopAccumulators(Operation *root) {
  SmallVector<scf::ForOp> loops;
  root->walk([&](scf::ForOp loop) { loops.push_back(loop); }); // inner loops first
  for (scf::ForOp loop : loops)
    while (loop)
      loop = promoteOneAccumulator(loop);
}

bool mlir::moe::launchWarpReduction(scf::ParallelOp loop, int64_t blockSize, bool emulate) {
  if (blockSize % kWarpSize != 0 || !loop.getInitVals().empty())
    return false;
  // The iteration: operations before the reduction (scalar work, reads, the
  // accumulator's initial store), the reduction, anything after it.
  Block *body = loop.getBody();
  auto loops = body->getOps<scf::ForOp>();
  if (loops.empty())
    return false;
  FailureOr<ReductionLoop> reduction = matchReductionLoop(*loops.begin());
  if (failed(reduction))
    return false;
  Element accumulator{reduction->store.getMemRef(), llvm::to_vector(reduction->store.getIndices())};
  for (Operation &op : body->without_terminator()) {
    if (&op == reduction->loop)
      break;
    if (auto load = dyn_cast<memref::LoadOp>(op); load && disjoint(load.getMemRef(), accumulator.memref))
      continue;
    if (isa<memref::StoreOp>(op) && accumulator.isAccessedBy(&op))
      continue;
    if (op.getNumRegions() != 0 || !isMemoryEffectFree(&op))
      return false;
  }

  Location loc = loop.getLoc();
  OpBuilder b(loop);
  // Whole warps are in or out: blocks hold whole warps and iterations.
  IterationThread thread = launchIterations(b, loop, blockSize, emulate ? 1 : kWarpSize);
  Value lane = thread.lane;
  IRMapping &map = thread.map;
  auto op = body->begin();
  for (; &*op != reduction->loop; ++op) {
    if (isa<memref::StoreOp>(*op))
      inLaneZero(b, loc, lane, emulate, [&] { b.clone(*op, map); });
    else
      b.clone(*op, map);
  }
  Value laneSum = laneTotal(b, *reduction, lane, emulate, map);
  inLaneZero(b, loc, lane, emulate, [&] {
    Value stored = b.clone(*reduction->load, map)->getResult(0);
    map.map(reduction->store.getValueToStore(), combineLike(b, *reduction, stored, laneSum));
    b.clone(*reduction->store, map);
    for (++op; op != body->end() && !op->hasTrait<OpTrait::IsTerminator>(); ++op)
      b.clone(*op, map);
  });
  loop.erase();
  return true;
}
