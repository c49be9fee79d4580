//===- SharedFunctions.cpp - equal op groups as calls of one function -----===//

#include "moe/Transforms/SharedFunctions.h"

#include "dialects/moe/MoeDialect.h"
#include "moe/Utils/RegionEquivalence.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringMap.h"

using namespace mlir;

namespace {

/// Constants this small are copied into the shared function.
constexpr int64_t kInlinedConstantElements = 16;

bool isInlinedConstant(Value v) {
  Attribute value;
  if (!matchPattern(v, m_Constant(&value)))
    return false;
  if (auto elements = dyn_cast<ElementsAttr>(value))
    return elements.isSplat() || elements.getNumElements() <= kInlinedConstantElements;
  return true; // scalars
}

SmallVector<Value> inputValues(const moe::OutlineCandidate &candidate) {
  return llvm::map_to_vector(candidate.inputs, [](OpOperand *use) { return use->get(); });
}

/// The candidate as a private function of its inputs (not yet called).
func::FuncOp outline(moe::OutlineCandidate &candidate, SymbolTable &symbols, StringRef suffix) {
  func::FuncOp parent = candidate.parent;
  MLIRContext *ctx = parent.getContext();
  Location loc = candidate.ops.front()->getLoc();
  SmallVector<Value> inputs = inputValues(candidate);
  auto type = FunctionType::get(ctx, ValueRange(inputs).getTypes(), ValueRange(candidate.outputs).getTypes());
  OpBuilder builder(ctx);
  auto function = func::FuncOp::create(builder, loc, (parent.getName() + suffix).str(), type);
  function.setPrivate();
  Block *entry = function.addEntryBlock();
  IRMapping mapping;
  mapping.map(inputs, entry->getArguments());
  builder.setInsertionPointToStart(entry);
  for (Value constant : candidate.inlinedConstants)
    builder.clone(*constant.getDefiningOp(), mapping);
  for (Operation *op : candidate.freshTensors)
    builder.clone(*op, mapping);
  for (Operation *op : candidate.ops)
    builder.clone(*op, mapping);
  SmallVector<Value> results;
  for (Value v : candidate.outputs)
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

/// Moves the ops computing `values` (and what they read) that sit after
/// `first` to just above it, keeping their order; all or nothing. Upstream's
/// moveValueDefinitions also asks for speculatable ops, which linalg ops on
/// tensors are not, though moving them within straight-line code is safe.
LogicalResult moveDefinitionsAbove(ArrayRef<Value> values, Operation *first,
                                   const llvm::SmallPtrSetImpl<Operation *> &members) {
  Block *block = first->getBlock();
  llvm::SetVector<Operation *> slice;
  SmallVector<Operation *> work;
  auto visit = [&](Value v) {
    Operation *def = v.getDefiningOp() ? block->findAncestorOpInBlock(*v.getDefiningOp()) : nullptr;
    if (def && (def == first || first->isBeforeInBlock(def)) && slice.insert(def))
      work.push_back(def);
  };
  for (Value v : values)
    visit(v);
  while (!work.empty())
    for (OpOperand *use : moe::usesFromOutside(work.pop_back_val()))
      visit(use->get());
  if (llvm::any_of(slice, [&](Operation *op) { return members.contains(op) || !isMemoryEffectFree(op); }))
    return failure();
  SmallVector<Operation *> ordered(slice.begin(), slice.end());
  llvm::sort(ordered, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
  for (Operation *op : ordered)
    op->moveBefore(first);
  return success();
}

/// Replaces the candidate's ops by a call of `function`.
LogicalResult callInstead(moe::OutlineCandidate &candidate, func::FuncOp function) {
  Operation *first = candidate.ops.front();
  IRRewriter rewriter(first->getContext());
  // Inputs computed between the group's ops move above it; no path leaves
  // and re-enters the group, so none of them depends on it.
  SmallVector<Value> inputs = inputValues(candidate);
  llvm::SmallPtrSet<Operation *, 32> members(candidate.ops.begin(), candidate.ops.end());
  if (failed(moveDefinitionsAbove(inputs, first, members)))
    return failure();
  rewriter.setInsertionPoint(first);
  auto call = func::CallOp::create(rewriter, first->getLoc(), function, inputs);
  for (auto [output, result] : llvm::zip(candidate.outputs, call.getResults()))
    rewriter.replaceAllUsesWith(output, result);
  for (Operation *op : llvm::reverse(candidate.ops))
    rewriter.eraseOp(op);
  return success();
}

} // namespace

SmallVector<OpOperand *> moe::usesFromOutside(Operation *op) {
  SmallVector<OpOperand *> uses;
  op->walk([&](Operation *inner) {
    for (OpOperand &use : inner->getOpOperands())
      if (inner == op || !op->isAncestor(use.get().getParentRegion()->getParentOp()))
        uses.push_back(&use);
  });
  return uses;
}

/// Ops that only make a fresh tensor for a destination (an empty tensor, a
/// fill of one): copied into the function rather than passed to it, so that
/// the function writes into a tensor of its own (bufferization would
/// otherwise write through, or copy, the caller's buffer).
static bool makesFreshTensor(Operation *op) { return isa<tensor::EmptyOp, linalg::FillOp>(op); }

void moe::describeBoundary(OutlineCandidate &candidate, Block *block) {
  llvm::SmallPtrSet<Operation *, 32> members(candidate.ops.begin(), candidate.ops.end());
  auto isMember = [&](Operation *op) {
    Operation *owner = op ? block->findAncestorOpInBlock(*op) : nullptr;
    return owner && members.contains(owner);
  };
  llvm::SetVector<Value> inputs, constants;
  llvm::SetVector<Operation *> fresh;
  SmallVector<OpOperand *> uses;
  for (Operation *op : candidate.ops)
    llvm::append_range(uses, usesFromOutside(op));
  // In order of use: the function's arguments follow the ops.
  for (size_t next = 0; next < uses.size(); ++next) {
    OpOperand *use = uses[next];
    Value v = use->get();
    Operation *def = v.getDefiningOp();
    if (isMember(def))
      continue;
    if (isInlinedConstant(v)) {
      constants.insert(v);
    } else if (def && def->getBlock() == block && makesFreshTensor(def)) {
      if (fresh.insert(def))
        llvm::append_range(uses, usesFromOutside(def));
    } else if (inputs.insert(v)) {
      candidate.inputs.push_back(use);
    }
  }
  for (Operation *op : candidate.ops)
    for (Value result : op->getResults())
      if (llvm::any_of(result.getUsers(), [&](Operation *user) { return !isMember(user); }))
        candidate.outputs.push_back(result);
  candidate.inlinedConstants.assign(constants.begin(), constants.end());
  candidate.freshTensors.assign(fresh.begin(), fresh.end());
  llvm::sort(candidate.freshTensors, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
}

std::pair<unsigned, unsigned> moe::shareEqualCandidates(std::vector<OutlineCandidate> &candidates,
                                                        SymbolTable &symbols, StringRef suffix) {
  for (OutlineCandidate &candidate : candidates)
    candidate.function = outline(candidate, symbols, suffix);
  // Group equal computations; a group of one stays where it is.
  SmallVector<SmallVector<OutlineCandidate *>> groups;
  llvm::DenseMap<llvm::hash_code, SmallVector<unsigned>> byHash;
  for (OutlineCandidate &candidate : candidates) {
    SmallVector<unsigned> &similar = byHash[hashBody(candidate.function)];
    auto same = llvm::find_if(
        similar, [&](unsigned g) { return sameComputation(groups[g].front()->function, candidate.function); });
    if (same != similar.end()) {
      groups[*same].push_back(&candidate);
      continue;
    }
    similar.push_back(groups.size());
    groups.push_back({&candidate});
  }
  SmallVector<func::FuncOp> kept;
  unsigned calls = 0;
  for (SmallVector<OutlineCandidate *> &group : groups) {
    func::FuncOp shared = group.front()->function;
    unsigned groupCalls = 0;
    if (group.size() > 1)
      for (OutlineCandidate *candidate : group)
        groupCalls += succeeded(callInstead(*candidate, shared));
    for (OutlineCandidate *candidate : llvm::drop_begin(group))
      symbols.erase(candidate->function);
    if (groupCalls == 0) {
      symbols.erase(shared);
      continue;
    }
    MLIRContext *ctx = shared.getContext();
    shared->setAttr(kSharedLayerAttrName, UnitAttr::get(ctx));
    // LLVM would inline a small shared function (or one with a single
    // caller) at every call: the code it exists to hold once. func-to-llvm
    // passes the attribute on to the llvm.func.
    shared->setAttr("passthrough", ArrayAttr::get(ctx, {StringAttr::get(ctx, "noinline")}));
    kept.push_back(shared);
    calls += groupCalls;
  }
  // Names by order of first call, now that the unshared copies are gone.
  llvm::StringMap<unsigned> perParent;
  for (func::FuncOp shared : kept) {
    StringRef parent = shared.getName().take_front(shared.getName().rfind(suffix));
    unsigned n = perParent[parent]++;
    std::string name = (parent + suffix + (n ? "_" + std::to_string(n) : "")).str();
    if (name != shared.getName() && !symbols.lookup(name))
      (void)symbols.rename(shared, StringAttr::get(shared.getContext(), name));
  }
  return {kept.size(), calls};
}
