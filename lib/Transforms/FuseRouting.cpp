//===- FuseRouting.cpp - one moe.fused_routing per routing chain ----------===//

#include "dialects/moe/MoeOps.h"
#include "moe/Transforms/Passes.h"

#include "mlir/IR/IRMapping.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEROUTING
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

/// The ops of one routing chain, in program order, and its three outputs.
struct RoutingChain {
  SmallVector<Operation *> ops;
  Value weights, indices, logits;
};

bool onlyUsedBy(Value v, Operation *user) {
  return llvm::all_of(v.getUsers(), [&](Operation *u) { return u == user; });
}

/// The chain that ends in `selection`, if it can be fused.
std::optional<RoutingChain> chainOf(Operation *selection) {
  RoutingChain chain;
  Value scores = selection->getOperand(0);
  auto score = scores.getDefiningOp<ScoreOp>();
  if (score && !onlyUsedBy(scores, selection))
    return std::nullopt;
  chain.logits = score ? score.getLogits() : scores;
  auto residual = chain.logits.getDefiningOp<GatingResidualOp>();
  Value routerOut = residual ? residual.getLogits() : chain.logits;
  auto router = routerOut.getDefiningOp<RouterOp>();
  if (!router || (residual && !onlyUsedBy(routerOut, residual)) ||
      router->getBlock() != selection->getBlock())
    return std::nullopt;
  chain.ops.push_back(router);
  if (residual)
    chain.ops.push_back(residual);
  if (score)
    chain.ops.push_back(score);
  chain.ops.push_back(selection);
  chain.weights = selection->getResult(0);
  chain.indices = selection->getResult(1);
  // A renormalization of exactly these slots joins the chain.
  if (chain.weights.hasOneUse())
    if (auto renorm = dyn_cast<RenormalizeOp>(*chain.weights.getUsers().begin());
        renorm && renorm.getIndices() == chain.indices && renorm->getBlock() == selection->getBlock()) {
      chain.ops.push_back(renorm);
      chain.weights = renorm.getResult();
    }
  return chain;
}

/// Moves `chain` into a moe.fused_routing placed at its last op.
void fuse(RoutingChain &chain) {
  Operation *last = chain.ops.back();
  llvm::SetVector<Value> inputs;
  llvm::SmallPtrSet<Operation *, 8> inChain(chain.ops.begin(), chain.ops.end());
  for (Operation *op : chain.ops)
    for (Value operand : op->getOperands())
      if (!inChain.contains(operand.getDefiningOp()))
        inputs.insert(operand);

  OpBuilder b(last);
  b.setInsertionPointAfter(last);
  SmallVector<Type> resultTypes = {chain.weights.getType(), chain.indices.getType(),
                                   chain.logits.getType()};
  auto fused = FusedRoutingOp::create(b, last->getLoc(), resultTypes, inputs.getArrayRef());
  Block *body = b.createBlock(&fused.getBody());
  IRMapping mapping;
  for (Value input : inputs)
    mapping.map(input, body->addArgument(input.getType(), input.getLoc()));
  for (Operation *op : chain.ops)
    b.clone(*op, mapping);
  YieldOp::create(b, last->getLoc(),
                  ValueRange{mapping.lookup(chain.weights), mapping.lookup(chain.indices),
                             mapping.lookup(chain.logits)});

  chain.weights.replaceAllUsesWith(fused.getWeights());
  chain.indices.replaceUsesWithIf(fused.getIndices(), [&](OpOperand &use) {
    return !inChain.contains(use.getOwner());
  });
  chain.logits.replaceUsesWithIf(fused.getLogits(), [&](OpOperand &use) {
    return !inChain.contains(use.getOwner());
  });
  for (Operation *op : llvm::reverse(chain.ops))
    op->erase();
}

/// Every use of the chain's outputs outside it comes after its last op, so
/// the fused op can take its place.
bool usesFollow(const RoutingChain &chain) {
  Operation *last = chain.ops.back();
  llvm::SmallPtrSet<Operation *, 8> inChain(chain.ops.begin(), chain.ops.end());
  for (Value v : {chain.weights, chain.indices, chain.logits})
    for (Operation *user : v.getUsers())
      if (!inChain.contains(user) &&
          (user->getBlock() != last->getBlock() || user->isBeforeInBlock(last)))
        return false;
  return true;
}

struct MoeFuseRoutingPass : mlir::moe::impl::MoeFuseRoutingBase<MoeFuseRoutingPass> {
  void runOnOperation() override {
    SmallVector<Operation *> selections;
    getOperation()->walk([&](Operation *op) {
      if (isa<TopKOp, ThresholdOp, ExpertChoiceOp>(op) && !op->getParentOfType<FusedRoutingOp>())
        selections.push_back(op);
    });
    for (Operation *selection : selections)
      if (std::optional<RoutingChain> chain = chainOf(selection); chain && usesFollow(*chain))
        fuse(*chain);
  }
};
} // namespace
