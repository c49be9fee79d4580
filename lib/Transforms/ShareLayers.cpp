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
#include "moe/Utils/RegionEquivalence.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/DestinationStyleOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Transforms/RegionUtils.h"
#include "llvm/ADT/EquivalenceClasses.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOESHARELAYERS
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// Constants this small are copied into the shared function (their values
/// take part in the comparison); larger ones (weights) become arguments.
constexpr int64_t kInlinedConstantElements = 16;

bool isInlinedConstant(Value v) {
  Attribute value;
  if (!matchPattern(v, m_Constant(&value)))
    return false;
  if (auto elements = dyn_cast<ElementsAttr>(value))
    return elements.isSplat() || elements.getNumElements() <= kInlinedConstantElements;
  return true; // scalars
}

bool isMoeOp(Operation *op) { return isa<moe::MoeDialect>(op->getDialect()); }

/// One layer: ops of one block, in block order, closed under paths between
/// them (an op that both reads from and feeds the cluster belongs to it).
struct Cluster {
  SmallVector<Operation *> ops;
  /// One use of each input inside the cluster: replacing an earlier cluster
  /// by a call changes the values a later one reads, not its ops.
  SmallVector<OpOperand *> inputs;
  SmallVector<Value> outputs;
  SmallVector<Value> inlinedConstants;
  func::FuncOp function;
};

/// The op of `block` that contains `op` (or null).
Operation *ancestorIn(Block *block, Operation *op) { return block->findAncestorOpInBlock(*op); }

/// The uses by which `op` (or an op nested in it) reads a value defined
/// outside it: operands and captures.
SmallVector<OpOperand *> usesFromOutside(Operation *op) {
  SmallVector<OpOperand *> uses;
  op->walk([&](Operation *inner) {
    for (OpOperand &use : inner->getOpOperands())
      if (inner == op || !op->isAncestor(use.get().getParentRegion()->getParentOp()))
        uses.push_back(&use);
  });
  return uses;
}

SmallVector<Value> valuesRead(Operation *op) {
  return llvm::map_to_vector(usesFromOutside(op), [](OpOperand *use) { return use->get(); });
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

/// The layers of `block`: moe ops connected by values, closed under paths.
std::vector<Cluster> findClusters(Block *block) {
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
  std::vector<Cluster> clusters;
  for (llvm::SmallPtrSet<Operation *, 32> &members : closed) {
    Cluster cluster;
    cluster.ops.assign(members.begin(), members.end());
    llvm::sort(cluster.ops, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
    // Moving the call (and its inputs' producers) needs ops without effects.
    if (llvm::any_of(cluster.ops, [](Operation *op) { return !isMemoryEffectFree(op); }))
      continue;
    llvm::SetVector<Value> inputs, constants;
    for (Operation *op : cluster.ops)
      for (OpOperand *use : usesFromOutside(op)) {
        Value v = use->get();
        Operation *def = v.getDefiningOp() ? ancestorIn(block, v.getDefiningOp()) : nullptr;
        if (def && members.contains(def))
          continue;
        if (isInlinedConstant(v))
          constants.insert(v);
        else if (inputs.insert(v))
          cluster.inputs.push_back(use);
      }
    for (Operation *op : cluster.ops)
      for (Value result : op->getResults())
        if (llvm::any_of(result.getUsers(), [&](Operation *user) {
              Operation *owner = ancestorIn(block, user);
              return !owner || !members.contains(owner);
            }))
          cluster.outputs.push_back(result);
    cluster.inlinedConstants.assign(constants.begin(), constants.end());
    clusters.push_back(std::move(cluster));
  }
  return clusters;
}

SmallVector<Value> inputValues(const Cluster &cluster) {
  return llvm::map_to_vector(cluster.inputs, [](OpOperand *use) { return use->get(); });
}

/// The cluster as a private function of its inputs (not yet called).
func::FuncOp outline(Cluster &cluster, func::FuncOp parent, SymbolTable &symbols) {
  MLIRContext *ctx = parent.getContext();
  Location loc = cluster.ops.front()->getLoc();
  SmallVector<Value> inputs = inputValues(cluster);
  auto type = FunctionType::get(ctx, ValueRange(inputs).getTypes(), ValueRange(cluster.outputs).getTypes());
  OpBuilder builder(ctx);
  auto function = func::FuncOp::create(builder, loc, (parent.getName() + "_layer").str(), type);
  function.setPrivate();
  Block *entry = function.addEntryBlock();
  IRMapping mapping;
  mapping.map(inputs, entry->getArguments());
  builder.setInsertionPointToStart(entry);
  for (Value constant : cluster.inlinedConstants)
    builder.clone(*constant.getDefiningOp(), mapping);
  for (Operation *op : cluster.ops)
    builder.clone(*op, mapping);
  SmallVector<Value> results;
  for (Value v : cluster.outputs)
    results.push_back(mapping.lookup(v));
  func::ReturnOp::create(builder, loc, results);
  symbols.insert(function, std::next(Block::iterator(parent)));
  return function;
}

llvm::hash_code hashBody(func::FuncOp function) {
  return llvm::hash_combine(hash_value(function.getFunctionType()), moe::hashRegionOps(function.getBody()));
}

bool sameComputation(func::FuncOp a, func::FuncOp b) {
  return a.getFunctionType() == b.getFunctionType() && moe::equivalentRegions(a.getBody(), b.getBody());
}

/// Replaces the cluster's ops by a call of `function`.
LogicalResult callInstead(Cluster &cluster, func::FuncOp function) {
  Operation *first = cluster.ops.front();
  IRRewriter rewriter(first->getContext());
  // Inputs computed between the cluster's ops move above it; convexity
  // guarantees that none of them depends on the cluster.
  SmallVector<Value> inputs = inputValues(cluster), late;
  for (Value v : inputs)
    if (Operation *def = v.getDefiningOp(); def && def->getBlock() == first->getBlock() &&
                                            first->isBeforeInBlock(def))
      late.push_back(v);
  if (!late.empty() && failed(moveValueDefinitions(rewriter, late, first)))
    return failure();
  rewriter.setInsertionPoint(first);
  auto call = func::CallOp::create(rewriter, first->getLoc(), function, inputs);
  for (auto [output, result] : llvm::zip(cluster.outputs, call.getResults()))
    rewriter.replaceAllUsesWith(output, result);
  for (Operation *op : llvm::reverse(cluster.ops))
    rewriter.eraseOp(op);
  return success();
}

struct MoeShareLayersPass : mlir::moe::impl::MoeShareLayersBase<MoeShareLayersPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SymbolTable symbols(module);
    SmallVector<func::FuncOp> functions(module.getOps<func::FuncOp>());
    std::vector<Cluster> clusters;
    for (func::FuncOp function : functions)
      for (Block &block : function.getFunctionBody())
        for (Cluster &cluster : findClusters(&block)) {
          cluster.function = outline(cluster, function, symbols);
          clusters.push_back(std::move(cluster));
        }
    // Group equal computations; a group of one stays where it is.
    SmallVector<SmallVector<Cluster *>> groups;
    llvm::DenseMap<llvm::hash_code, SmallVector<unsigned>> byHash;
    for (Cluster &cluster : clusters) {
      SmallVector<unsigned> &candidates = byHash[hashBody(cluster.function)];
      auto same = llvm::find_if(candidates, [&](unsigned g) {
        return sameComputation(groups[g].front()->function, cluster.function);
      });
      if (same != candidates.end()) {
        groups[*same].push_back(&cluster);
        continue;
      }
      candidates.push_back(groups.size());
      groups.push_back({&cluster});
    }
    SmallVector<func::FuncOp> kept;
    for (SmallVector<Cluster *> &group : groups) {
      func::FuncOp shared = group.front()->function;
      unsigned calls = 0;
      if (group.size() > 1)
        for (Cluster *cluster : group)
          calls += succeeded(callInstead(*cluster, shared));
      for (Cluster *cluster : llvm::drop_begin(group))
        symbols.erase(cluster->function);
      if (calls == 0) {
        symbols.erase(shared);
        continue;
      }
      shared->setAttr(moe::kSharedLayerAttrName, UnitAttr::get(&getContext()));
      kept.push_back(shared);
      ++sharedFunctions;
      sharedCalls += calls;
    }
    // Names by order of first call, now that the candidates are gone.
    llvm::StringMap<unsigned> perParent;
    for (func::FuncOp shared : kept) {
      StringRef parent = shared.getName().take_front(shared.getName().rfind("_layer"));
      unsigned n = perParent[parent]++;
      std::string name = (parent + "_layer" + (n ? "_" + std::to_string(n) : "")).str();
      if (name != shared.getName() && !symbols.lookup(name) &&
          failed(symbols.rename(shared, StringAttr::get(&getContext(), name))))
        return signalPassFailure();
    }
  }
};

} // namespace
