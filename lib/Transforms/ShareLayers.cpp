//===- ShareLayers.cpp - identical MoE layers compiled once ---------------===//
//
// A deep model repeats one layer shape many times with different weights.
// Each layer's moe ops are gathered into a cluster; clusters that compute the
// same thing (same ops, attributes and types; their weights are arguments)
// become calls of one private function, so the lowering, LLVM and ptxas see
// each distinct layer once.
//
//===----------------------------------------------------------------------===//

#include "dialects/moe/MoeDialect.h"
#include "dialects/moe/MoeOps.h"
#include "moe/Transforms/Passes.h"
#include "moe/Transforms/SharedFunctions.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/DestinationStyleOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/EquivalenceClasses.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOESHARELAYERS
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

bool isMoeOp(Operation *op) { return isa<moe::MoeDialect>(op->getDialect()); }

/// The op of `block` that contains `op` (or null).
Operation *ancestorIn(Block *block, Operation *op) { return block->findAncestorOpInBlock(*op); }

SmallVector<Value> valuesRead(Operation *op) {
  return llvm::map_to_vector(moe::usesFromOutside(op), [](OpOperand *use) { return use->get(); });
}

/// Adds to `members` every op of the block lying on a path between two of
/// them: the outlined call must not need a value computed from its own results.
void closeUnderPaths(Block *block, llvm::SmallPtrSetImpl<Operation *> &members) {
  Operation *first = nullptr, *last = nullptr;
  for (Operation *op : members) {
    if (!first || op->isBeforeInBlock(first))
      first = op;
    if (!last || last->isBeforeInBlock(op))
      last = op;
  }
  // Forward: ops between first and last that read (transitively) from the cluster.
  llvm::SmallPtrSet<Operation *, 32> reads;
  for (Operation *op = first; op != last; op = op->getNextNode()) {
    if (members.contains(op))
      continue;
    for (Value v : valuesRead(op)) {
      Operation *def = v.getDefiningOp() ? ancestorIn(block, v.getDefiningOp()) : nullptr;
      if (def && (members.contains(def) || reads.contains(def))) {
        reads.insert(op);
        break;
      }
    }
  }
  // Backward: of those, the ones whose results reach a member.
  SmallVector<Operation *> onPaths;
  llvm::SmallPtrSet<Operation *, 32> feeds;
  for (Operation *op = last; op != first; op = op->getPrevNode()) {
    if (members.contains(op))
      continue;
    bool feedsCluster = llvm::any_of(op->getUsers(), [&](Operation *user) {
      Operation *owner = ancestorIn(block, user);
      return owner && (members.contains(owner) || feeds.contains(owner));
    });
    if (!feedsCluster)
      continue;
    feeds.insert(op);
    if (reads.contains(op))
      onPaths.push_back(op);
  }
  members.insert(onPaths.begin(), onPaths.end());
}

/// Whether `use` passes a layer's input from one layer to the next (token
/// rows, the previous layer's logits) rather than a value inside a layer:
/// layers chained without other ops between them stay separate clusters.
bool startsLayer(OpOperand &use) {
  Operation *user = use.getOwner();
  unsigned i = use.getOperandNumber();
  if (isa<moe::LayerOp, moe::FusedRoutingOp>(user) || isa_and_nonnull<moe::LayerOp>(use.get().getDefiningOp()))
    return true;
  if (isa<moe::RouterOp, moe::GroupMeanOp, moe::PermuteOp, moe::ZeroComputeOp>(user))
    return i == 0;
  if (auto ffn = dyn_cast<moe::DenseFfnOp>(user))
    return use.get() == ffn.getX();
  if (auto residual = dyn_cast<moe::GatingResidualOp>(user))
    return use.get() == residual.getPrev();
  if (auto expand = dyn_cast<moe::ExpandGroupsOp>(user))
    return use.get() == expand.getLike();
  return false;
}

/// The tensor `op` transforms when it has one (constants and destinations
/// aside): a reshape, a cast, a scaling. Ops that combine two tensors (a
/// residual add, a router matmul of activations and weights) are where
/// one layer's values meet another's, and are not looked through.
Value soleTensorInput(Operation *op) {
  SmallVector<Value> operands;
  if (auto dps = dyn_cast<DestinationStyleOpInterface>(op))
    llvm::append_range(operands, dps.getDpsInputs());
  else
    llvm::append_range(operands, op->getOperands());
  Value sole;
  for (Value operand : operands) {
    if (!isa<TensorType>(operand.getType()) || matchPattern(operand, m_Constant()) || operand == sole)
      continue;
    if (sole)
      return Value();
    sole = operand;
  }
  return sole;
}

/// The moe ops of `block` that compute `v`, directly or through ops that
/// transform one tensor (a reshape or a scaling between two moe ops of one
/// layer); a whole `moe.layer` is a layer of its own.
SmallVector<Operation *> moeProducers(Block *block, Value v) {
  constexpr unsigned kMaxOpsBetween = 16;
  SmallVector<Operation *> found, work;
  llvm::SmallPtrSet<Operation *, 16> seen;
  auto visit = [&](Value value) {
    Operation *def = value.getDefiningOp();
    if (def && def->getBlock() == block && seen.insert(def).second)
      work.push_back(def);
  };
  visit(v);
  while (!work.empty() && seen.size() <= kMaxOpsBetween) {
    Operation *op = work.pop_back_val();
    if (isMoeOp(op)) {
      if (!isa<moe::LayerOp>(op))
        found.push_back(op);
      continue;
    }
    if (!isMemoryEffectFree(op))
      continue;
    if (Value input = soleTensorInput(op))
      visit(input);
  }
  return found;
}

/// The layers of `block`: moe ops connected by values, closed under paths
/// (an op that both reads from and feeds a layer belongs to it).
std::vector<moe::OutlineCandidate> findClusters(Block *block) {
  llvm::EquivalenceClasses<Operation *> classes;
  for (Operation &op : *block) {
    if (!isMoeOp(&op))
      continue;
    classes.insert(&op);
    for (OpOperand &use : op.getOpOperands())
      if (!startsLayer(use))
        for (Operation *producer : moeProducers(block, use.get()))
          classes.unionSets(&op, producer);
  }
  // Closing one class can pull in a moe op of another: merge and close
  // again until every closed class holds only its own moe ops.
  std::vector<llvm::SmallPtrSet<Operation *, 32>> closed;
  while (true) {
    closed.clear();
    SmallVector<std::pair<Operation *, Operation *>> merges;
    for (const auto *entry : classes) {
      if (!entry->isLeader())
        continue;
      llvm::SmallPtrSet<Operation *, 32> &members =
          closed.emplace_back(classes.member_begin(*entry), classes.member_end());
      closeUnderPaths(block, members);
      for (Operation *op : members)
        if (isMoeOp(op) && !classes.isEquivalent(op, entry->getData()))
          merges.push_back({op, entry->getData()});
    }
    if (merges.empty())
      break;
    for (auto [a, b] : merges)
      classes.unionSets(a, b);
  }
  std::vector<moe::OutlineCandidate> clusters;
  for (llvm::SmallPtrSet<Operation *, 32> &members : closed) {
    moe::OutlineCandidate cluster;
    cluster.ops.assign(members.begin(), members.end());
    llvm::sort(cluster.ops, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
    // Moving the call (and its inputs' producers) needs ops without effects.
    if (llvm::any_of(cluster.ops, [](Operation *op) { return !isMemoryEffectFree(op); }))
      continue;
    moe::describeBoundary(cluster, block);
    clusters.push_back(std::move(cluster));
  }
  return clusters;
}

struct MoeShareLayersPass : mlir::moe::impl::MoeShareLayersBase<MoeShareLayersPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SymbolTable symbols(module);
    SmallVector<func::FuncOp> functions(module.getOps<func::FuncOp>());
    std::vector<moe::OutlineCandidate> clusters;
    for (func::FuncOp function : functions)
      for (Block &block : function.getFunctionBody())
        for (moe::OutlineCandidate &cluster : findClusters(&block)) {
          cluster.parent = function;
          clusters.push_back(std::move(cluster));
        }
    auto [shared, calls] = moe::shareEqualCandidates(clusters, symbols, "_layer");
    sharedFunctions += shared;
    sharedCalls += calls;
  }
};

} // namespace
