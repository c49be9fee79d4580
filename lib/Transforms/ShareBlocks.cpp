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
/// shared functions have none either), or a run-time check.
bool canOutline(Operation *op) {
  return isMemoryEffectFree(op) || moe::callsSharedFunction(op) || moe::isRuntimeCheckCall(op);
}

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
  /// Positions of the ops matched with the reference period, in order from
  /// the call (which comes first): in `ops` while matching, in the block's
  /// body after.
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
    // The layer call is the period's own work, whatever it reads.
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

/// Body positions of the first `n` ops matched after the call (the call is
/// matched first).
ArrayRef<size_t> matchedBeyondCall(const Period &p, size_t n) { return ArrayRef<size_t>(p.matched).slice(1, n); }

/// The runs of `block` to outline: each a layer call with the B ops matched
/// before it and the F ops matched after it, one (B, F) for all, chosen to
/// cover the most ops in at least two layers.
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
  size_t layers = anchors.size();
  if (layers < 2)
    return {};
  SmallVector<llvm::hash_code> signatures = llvm::map_to_vector(body, signature);
  ArrayRef<Operation *> all(body);
  ArrayRef<llvm::hash_code> allSignatures(signatures);

  // Per layer, the period ending at its call ((previous call, call]) and the
  // one starting at it ([call, next call)), each matched from the call with
  // the period of a layer from the middle (the first holds the model's
  // prologue, the last its epilogue). Positions become body positions.
  SmallVector<Period> before, after;
  for (bool endsAtCall : {true, false}) {
    SmallVector<Period> &periods = endsAtCall ? before : after;
    SmallVector<size_t> begins;
    for (auto [k, at] : llvm::enumerate(anchors)) {
      size_t begin = endsAtCall ? (k == 0 ? 0 : anchors[k - 1] + 1) : at;
      size_t end = endsAtCall ? at + 1 : (k + 1 < layers ? anchors[k + 1] : body.size());
      Period &p = periods.emplace_back();
      p.ops = all.slice(begin, end - begin);
      p.signatures = allSignatures.slice(begin, end - begin);
      p.invariant = invariantOps(p.ops);
      begins.push_back(begin);
    }
    const Period ref = periods[layers / 2];
    for (auto [p, begin] : llvm::zip(periods, begins)) {
      matchWithReference(p, ref, endsAtCall);
      for (size_t &i : p.matched)
        i += begin;
    }
  }
  // A layer takes part in (B, F) when B ops before its call and F after it
  // matched, and its run does not reach into the previous layer's run.
  auto participants = [&](size_t b, size_t f) {
    SmallVector<size_t> chosen;
    for (size_t k = 0; k < layers; ++k) {
      if (before[k].matched.size() < b + 1 || after[k].matched.size() < f + 1)
        continue;
      if (!chosen.empty() && chosen.back() + 1 == k && b > 0 && f > 0 &&
          llvm::max_element(matchedBeyondCall(after[k - 1], f))[0] >=
              llvm::min_element(matchedBeyondCall(before[k], b))[0])
        continue;
      chosen.push_back(k);
    }
    return chosen;
  };
  SmallVector<size_t> lengthsBefore = {0}, lengthsAfter = {0};
  for (size_t k = 0; k < layers; ++k) {
    if (!before[k].matched.empty())
      lengthsBefore.push_back(before[k].matched.size() - 1);
    if (!after[k].matched.empty())
      lengthsAfter.push_back(after[k].matched.size() - 1);
  }
  llvm::sort(lengthsBefore);
  lengthsBefore.erase(llvm::unique(lengthsBefore), lengthsBefore.end());
  llvm::sort(lengthsAfter);
  lengthsAfter.erase(llvm::unique(lengthsAfter), lengthsAfter.end());
  size_t bestB = 0, bestF = 0, bestCovered = 0;
  for (size_t b : lengthsBefore)
    for (size_t f : lengthsAfter) {
      // A run of the call alone has nothing to share beyond the call.
      if (b + f == 0)
        continue;
      size_t count = participants(b, f).size();
      size_t covered = count * (b + 1 + f);
      if (count >= 2 && (covered > bestCovered || (covered == bestCovered && b + f > bestB + bestF))) {
        bestB = b;
        bestF = f;
        bestCovered = covered;
      }
    }
  if (bestCovered == 0)
    return {};
  std::vector<moe::OutlineCandidate> runs;
  for (size_t k : participants(bestB, bestF)) {
    moe::OutlineCandidate &run = runs.emplace_back();
    run.ops.push_back(body[anchors[k]]);
    for (size_t i : matchedBeyondCall(before[k], bestB))
      run.ops.push_back(body[i]);
    for (size_t i : matchedBeyondCall(after[k], bestF))
      run.ops.push_back(body[i]);
    llvm::sort(run.ops, [](Operation *x, Operation *y) { return x->isBeforeInBlock(y); });
    moe::describeBoundary(run, &block);
  }
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
