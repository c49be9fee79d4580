//===- ShareBlocks.cpp - repeated blocks around shared layers compiled once ===//
//
// After moe-share-layers, an unrolled deep model calls one layer function per
// layer, but the code between the calls (attention, norms, the router's
// matmul, residual adds) is still there once per layer, and for the CPU it
// is most of what LLVM compiles. The calls of the most-called layer function
// cut the block into periods; the longest run of ops that every period (or
// almost every one) ends with, or starts with, is outlined per period, and
// the runs that compute the same thing become calls of one function.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoeDialect.h"
#include "moe/Transforms/Passes.h"
#include "moe/Transforms/SharedFunctions.h"
#include "moe/Utils/RegionEquivalence.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/OperationSupport.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/MapVector.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOESHAREBLOCKS
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// A run of ops that can move into a function: no memory effects (calls of
/// shared functions have none either).
bool canOutline(Operation *op) { return isMemoryEffectFree(op) || moe::callsSharedFunction(op); }

/// What an op computes, its operands aside: equal for the same op in two
/// layers. The full comparison of the outlined functions decides.
llvm::hash_code signature(Operation *op) {
  llvm::hash_code hash = OperationEquivalence::computeHash(op, OperationEquivalence::ignoreHashValue,
                                                           OperationEquivalence::ignoreHashValue,
                                                           OperationEquivalence::IgnoreLocations);
  for (Region &region : op->getRegions())
    hash = llvm::hash_combine(hash, moe::hashRegionOps(region));
  return hash;
}

/// A period of the block: the ops (constants aside) from one layer call to
/// the next.
struct Period {
  ArrayRef<Operation *> ops;
  ArrayRef<llvm::hash_code> signatures;
  /// Ops computed from values of earlier periods and constants alone (shape
  /// arithmetic, weight transposes): the importer may emit them in another
  /// place, or once for several layers. A run may step over them; they then
  /// stay in the caller, their results read by the run as inputs, and no
  /// path from the run passes through them.
  SmallVector<bool> invariant;
  /// Positions in `ops` of the ops matched with the reference period, in
  /// order from the call end.
  SmallVector<size_t> matched;
};

SmallVector<bool> invariantOps(ArrayRef<Operation *> ops) {
  llvm::SmallPtrSet<Operation *, 32> variant;
  Block *block = ops.empty() ? nullptr : ops.front()->getBlock();
  SmallVector<bool> invariant;
  for (Operation *op : ops) {
    bool readsPeriod = llvm::any_of(moe::usesFromOutside(op), [&](OpOperand *use) {
      Operation *def = use->get().getDefiningOp();
      Operation *owner = def ? block->findAncestorOpInBlock(*def) : nullptr;
      return owner && variant.contains(owner);
    });
    // Ops of the period that are not invariant, constants aside.
    bool isInvariant = !readsPeriod && !moe::callsSharedFunction(op);
    if (!isInvariant)
      variant.insert(op);
    invariant.push_back(isInvariant);
  }
  return invariant;
}

/// Matches `period`'s ops with `ref`'s from the call end, stepping over
/// invariant ops that have no counterpart; stops at the first other
/// difference or at an op that cannot move.
void matchWithReference(Period &period, const Period &ref, bool endsAtCall) {
  size_t n = period.ops.size(), m = ref.ops.size();
  auto at = [&](size_t k, size_t size) { return endsAtCall ? size - 1 - k : k; };
  for (size_t a = 0, b = 0; a < n && b < m;) {
    size_t i = at(a, n), j = at(b, m);
    if (!canOutline(period.ops[i]) || !canOutline(ref.ops[j]))
      return;
    if (period.signatures[i] == ref.signatures[j]) {
      period.matched.push_back(i);
      ++a, ++b;
    } else if (period.invariant[i]) {
      ++a;
    } else if (ref.invariant[j]) {
      ++b;
    } else {
      return;
    }
  }
}

/// The run length that covers the most ops in at least two periods (the
/// longer one on a tie), and that coverage.
std::pair<size_t, size_t> bestRun(ArrayRef<Period> periods) {
  size_t bestLength = 0, bestCovered = 0;
  for (const Period &candidate : periods) {
    size_t length = candidate.matched.size();
    size_t count = llvm::count_if(periods, [&](const Period &p) { return p.matched.size() >= length; });
    size_t covered = length * count;
    if (count >= 2 && (covered > bestCovered || (covered == bestCovered && length > bestLength))) {
      bestLength = length;
      bestCovered = covered;
    }
  }
  return {bestLength, bestCovered};
}

/// The runs of `block` to outline: one per period, all of one length, from
/// the side (before or after each call) that covers more ops.
std::vector<moe::OutlineCandidate> findRepeatedRuns(Block &block) {
  // The ops the runs are made of: constants are read, not moved.
  SmallVector<Operation *> body;
  for (Operation &op : block.without_terminator())
    if (!op.hasTrait<OpTrait::ConstantLike>())
      body.push_back(&op);
  // Anchors: the calls of the most-called shared function.
  llvm::MapVector<StringAttr, SmallVector<size_t>> callsOf;
  for (auto [i, op] : llvm::enumerate(body))
    if (moe::callsSharedFunction(op))
      callsOf[cast<func::CallOp>(op).getCalleeAttr().getAttr()].push_back(i);
  SmallVector<size_t> anchors;
  for (auto &[callee, positions] : callsOf)
    if (positions.size() > anchors.size())
      anchors = positions;
  if (anchors.size() < 2)
    return {};
  SmallVector<llvm::hash_code> signatures = llvm::map_to_vector(body, signature);
  ArrayRef<Operation *> all(body);
  ArrayRef<llvm::hash_code> allSignatures(signatures);

  std::vector<moe::OutlineCandidate> runs;
  size_t bestCovered = 0;
  for (bool endsAtCall : {true, false}) {
    // Periods ending at a call: (previous call, this call]; starting at one:
    // [this call, next call).
    SmallVector<Period> periods;
    for (auto [k, at] : llvm::enumerate(anchors)) {
      size_t begin = endsAtCall ? (k == 0 ? 0 : anchors[k - 1] + 1) : at;
      size_t end = endsAtCall ? at + 1 : (k + 1 < anchors.size() ? anchors[k + 1] : body.size());
      Period &p = periods.emplace_back();
      p.ops = all.slice(begin, end - begin);
      p.signatures = allSignatures.slice(begin, end - begin);
      p.invariant = invariantOps(p.ops);
    }
    // The reference is a period from the middle: the first and the last
    // hold the model's prologue and epilogue.
    const Period ref = periods[periods.size() / 2];
    for (Period &p : periods)
      matchWithReference(p, ref, endsAtCall);
    auto [length, covered] = bestRun(periods);
    // A run of the call alone has nothing to share beyond the call.
    if (length < 2 || covered <= bestCovered)
      continue;
    bestCovered = covered;
    runs.clear();
    for (const Period &p : periods) {
      if (p.matched.size() < length)
        continue;
      moe::OutlineCandidate &run = runs.emplace_back();
      for (size_t i : ArrayRef<size_t>(p.matched).take_front(length))
        run.ops.push_back(p.ops[i]);
      llvm::sort(run.ops, [](Operation *x, Operation *y) { return x->isBeforeInBlock(y); });
    }
  }
  for (moe::OutlineCandidate &run : runs)
    moe::describeBoundary(run, &block);
  return runs;
}

struct MoeShareBlocksPass : mlir::moe::impl::MoeShareBlocksBase<MoeShareBlocksPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SymbolTable symbols(module);
    std::vector<moe::OutlineCandidate> runs;
    for (func::FuncOp function : llvm::to_vector(module.getOps<func::FuncOp>())) {
      if (function->hasAttr(moe::kSharedLayerAttrName))
        continue;
      for (Block &block : function.getFunctionBody())
        for (moe::OutlineCandidate &run : findRepeatedRuns(block)) {
          run.parent = function;
          runs.push_back(std::move(run));
        }
    }
    auto [shared, calls] = moe::shareEqualCandidates(runs, symbols, "_block");
    sharedFunctions += shared;
    sharedCalls += calls;
  }
};

} // namespace
