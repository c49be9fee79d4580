//===- LowerStablehloPass.cpp - the moe-lower-stablehlo pass --------------===//

#include "Lowerings.h"
#include "dialects/moe/MoeDialect.h"
#include "dialects/stablehlo/StablehloDialect.h"
#include "moe/Conversion/Passes.h"
#include "moe/Utils/ScalarMath.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/Matchers.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOELOWERSTABLEHLO
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_lowering;
namespace shlo = mlir::moe::stablehlo;

namespace {

bool isStablehloOp(Operation *op) {
  return isa_and_nonnull<shlo::StablehloDialect, chlo::ChloDialect>(op->getDialect());
}

/// Shapes must be static: the lowering computes sizes, offsets and loop
/// bounds from them. Unsigned integers are refused: the scalar bodies use
/// signed arithmetic.
LogicalResult checkStaticShapes(Operation *op) {
  auto check = [&](Value v, StringRef what, unsigned i) -> LogicalResult {
    auto type = dyn_cast<RankedTensorType>(v.getType());
    if (type && !type.hasStaticShape())
      return op->emitError() << "'" << op->getName() << "' " << what << " " << i << " has the dynamic shape " << type
                             << "; only static shapes are supported (export with concrete shapes, e.g. without "
                                "jax.export shape polymorphism)";
    return success();
  };
  for (Value v : llvm::concat<Value>(op->getOperands(), op->getResults()))
    if (auto type = dyn_cast<RankedTensorType>(v.getType());
        type && isa<IntegerType>(type.getElementType()) && !type.getElementType().isSignlessInteger())
      return op->emitError() << "'" << op->getName() << "' uses the unsigned integer type " << type
                             << "; only signed integers, floats and booleans are supported (convert to a signed "
                                "type first)";
  for (auto [i, v] : llvm::enumerate(op->getOperands()))
    if (failed(check(v, "operand", i)))
      return failure();
  for (auto [i, v] : llvm::enumerate(op->getResults()))
    if (failed(check(v, "result", i)))
      return failure();
  return success();
}

Results lowerOp(OpBuilder &b, Operation *op) {
  if (isa<shlo::ConstantOp, shlo::IotaOp, shlo::GetDimensionSizeOp, shlo::BroadcastInDimOp, shlo::ReshapeOp, shlo::TransposeOp, shlo::SliceOp,
          shlo::DynamicSliceOp, shlo::DynamicUpdateSliceOp, shlo::ConcatenateOp, shlo::PadOp, shlo::ReverseOp>(op))
    return lowerShapeOp(b, op);
  if (isa<shlo::DotGeneralOp, chlo::RaggedDotOp, shlo::ReduceOp, shlo::ReduceWindowOp>(op))
    return lowerContraction(b, op);
  if (isa<shlo::GatherOp, shlo::ScatterOp, shlo::SortOp, chlo::TopKOp>(op))
    return lowerIndexing(b, op);
  if (auto call = dyn_cast<shlo::CustomCallOp>(op))
    return op->emitError() << "custom_call @" << call.getCallTargetName()
                           << " is not supported (the known targets, such as mhlo.topk, are rewritten by "
                              "moe-normalize-stablehlo)",
           failure();
  if (isa<shlo::CompositeOp>(op))
    return op->emitError("composites must be inlined first (moe-normalize-stablehlo, then inline)"), failure();
  Results r = lowerElementwise(b, op);
  if (failed(r))
    op->emitError() << "'" << op->getName() << "' has no lowering";
  return r;
}

/// A 0-d integer or float tensor: a loop counter or bound, carried as a scalar.
bool isScalarTensor(Type t) {
  auto type = dyn_cast<RankedTensorType>(t);
  return type && type.getRank() == 0 && type.getElementType().isIntOrFloat();
}

/// Rewrites `block` (a loop region whose scalarized arguments now have
/// scalar types) so that elementwise stablehlo ops on 0-d tensors computed
/// from those scalars and splat constants become scalar arith: the loop's
/// control (counter, bound, comparison) stays on the host, not in kernels
/// and buffers. Other users of such a value read it as a 0-d tensor again.
/// Returns the scalar of each value computed that way.
IRMapping scalarizeLoopControl(Block &block, ArrayRef<BlockArgument> scalarArgs) {
  IRMapping scalars;
  OpBuilder b = OpBuilder::atBlockBegin(&block);
  for (BlockArgument arg : scalarArgs) {
    auto tensorType = RankedTensorType::get({}, arg.getType());
    Value asTensor = tensor::FromElementsOp::create(b, arg.getLoc(), tensorType, ValueRange{arg});
    arg.replaceAllUsesExcept(asTensor, asTensor.getDefiningOp());
    scalars.map(asTensor, arg);
  }
  for (Operation &op : llvm::make_early_inc_range(block.without_terminator())) {
    if (!isStablehloOp(&op) || op.getNumResults() != 1 || !isScalarTensor(op.getResult(0).getType()))
      continue;
    SmallVector<Value> operands;
    b.setInsertionPoint(&op);
    for (Value v : op.getOperands()) {
      DenseElementsAttr dense;
      if (Value scalar = scalars.lookupOrNull(v))
        operands.push_back(scalar);
      else if (matchPattern(v, m_Constant(&dense)) && dense.isSplat() && isScalarTensor(v.getType()))
        operands.push_back(arith::ConstantOp::create(b, op.getLoc(), cast<TypedAttr>(dense.getSplatValue<Attribute>())));
      else
        break;
    }
    if (operands.size() != op.getNumOperands() || llvm::none_of(op.getOperands(), [&](Value v) {
          return scalars.contains(v);
        }))
      continue;
    Value scalar = emitScalarOp(b, op.getLoc(), &op, operands);
    if (!scalar)
      continue;
    Value asTensor = tensor::FromElementsOp::create(b, op.getLoc(), op.getResult(0).getType(), ValueRange{scalar});
    op.getResult(0).replaceAllUsesWith(asTensor);
    scalars.map(asTensor, scalar);
    op.erase();
  }
  return scalars;
}

/// stablehlo.while -> scf.while, inner loops first: the regions move over,
/// cond's tensor<i1> becomes scf.condition's flag, do's return an
/// scf.yield; 0-d loop values are carried as scalars
/// (scalarizeLoopControl). The stablehlo ops inside are then lowered with
/// the others.
void lowerWhileLoops(Operation *root) {
  SmallVector<shlo::WhileOp> loops;
  root->walk([&](shlo::WhileOp loop) { loops.push_back(loop); });
  for (shlo::WhileOp w : loops) {
    OpBuilder b(w);
    Location loc = w.getLoc();
    SmallVector<Value> inits;
    SmallVector<Type> types;
    for (Value v : w.getOperand()) {
      bool scalar = isScalarTensor(v.getType());
      inits.push_back(scalar ? extractScalar(b, loc, v) : v);
      types.push_back(scalar ? cast<RankedTensorType>(v.getType()).getElementType() : v.getType());
    }
    auto loop = scf::WhileOp::create(b, loc, types, inits);
    loop.getBefore().takeBody(w.getCond());
    loop.getAfter().takeBody(w.getBody());
    for (Block *block : {&loop.getBefore().front(), &loop.getAfter().front()}) {
      SmallVector<BlockArgument> scalarArgs;
      for (auto [arg, type] : llvm::zip(block->getArguments(), types))
        if (arg.getType() != type) {
          arg.setType(type);
          scalarArgs.push_back(arg);
        }
      IRMapping scalars = scalarizeLoopControl(*block, scalarArgs);
      auto ret = cast<shlo::ReturnOp>(block->getTerminator());
      b.setInsertionPoint(ret);
      auto scalarOf = [&](Value v) { return scalars.contains(v) ? scalars.lookup(v) : extractScalar(b, ret.getLoc(), v); };
      if (block == &loop.getBefore().front()) {
        scf::ConditionOp::create(b, ret.getLoc(), scalarOf(ret.getResults()[0]), block->getArguments());
      } else {
        SmallVector<Value> next;
        for (auto [v, type] : llvm::zip(ret.getResults(), types))
          next.push_back(v.getType() == type ? v : scalarOf(v));
        scf::YieldOp::create(b, ret.getLoc(), next);
      }
      ret.erase();
    }
    b.setInsertionPointAfter(loop);
    for (auto [result, old] : llvm::zip(loop.getResults(), w.getResults()))
      old.replaceAllUsesWith(result.getType() == old.getType()
                                 ? Value(result)
                                 : Value(tensor::FromElementsOp::create(b, loc, old.getType(), ValueRange{result})));
    w.erase();
  }
}

/// Moves `from`'s block into `to`, its stablehlo.return becoming scf.yield.
void moveBranch(Region &from, Region &to) {
  to.takeBody(from);
  Block &block = to.front();
  auto ret = cast<shlo::ReturnOp>(block.getTerminator());
  OpBuilder b(ret);
  scf::YieldOp::create(b, ret.getLoc(), ret.getResults());
  ret.erase();
}

/// stablehlo.case -> scf.index_switch (an index outside the branches runs
/// the last one); stablehlo.if -> scf.if. The stablehlo ops inside are
/// then lowered with the others.
void lowerBranches(Operation *root) {
  SmallVector<Operation *> branches;
  root->walk([&](Operation *op) {
    if (isa<shlo::CaseOp, shlo::IfOp>(op))
      branches.push_back(op);
  });
  for (Operation *op : branches) {
    OpBuilder b(op);
    Location loc = op->getLoc();
    Operation *lowered;
    if (auto c = dyn_cast<shlo::CaseOp>(op)) {
      int64_t n = c.getBranches().size();
      Value index = extractScalar(b, loc, c.getIndex());
      Type i32 = index.getType();
      Value outside = arith::OrIOp::create(
          b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, index, scalar::intConst(b, loc, i32, 0)),
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, index, scalar::intConst(b, loc, i32, n)));
      index = arith::SelectOp::create(b, loc, outside, scalar::intConst(b, loc, i32, n - 1), index);
      index = arith::IndexCastOp::create(b, loc, b.getIndexType(), index);
      auto cases = llvm::to_vector(llvm::seq<int64_t>(0, n - 1));
      auto sw = scf::IndexSwitchOp::create(b, loc, op->getResultTypes(), index, cases, n - 1);
      for (int64_t i = 0; i < n - 1; ++i)
        moveBranch(c.getBranches()[i], sw.getCaseRegions()[i]);
      moveBranch(c.getBranches()[n - 1], sw.getDefaultRegion());
      lowered = sw;
    } else {
      auto i = cast<shlo::IfOp>(op);
      Value pred = extractScalar(b, loc, i.getPred());
      auto ifOp = scf::IfOp::create(b, loc, op->getResultTypes(), pred, /*addThenBlock=*/false,
                                    /*addElseBlock=*/false);
      moveBranch(i.getTrueBranch(), ifOp.getThenRegion());
      moveBranch(i.getFalseBranch(), ifOp.getElseRegion());
      lowered = ifOp;
    }
    op->replaceAllUsesWith(lowered->getResults());
    op->erase();
  }
}

struct MoeLowerStablehloPass : public mlir::moe::impl::MoeLowerStablehloBase<MoeLowerStablehloPass> {
  void runOnOperation() override {
    lowerBranches(getOperation());
    lowerWhileLoops(getOperation());
    // Top-level stablehlo ops in program order; ops inside their bodies are
    // read by the lowering of the op that owns them.
    SmallVector<Operation *> ops;
    getOperation()->walk<WalkOrder::PreOrder>([&](Operation *op) {
      if (!isStablehloOp(op))
        return WalkResult::advance();
      ops.push_back(op);
      return WalkResult::skip();
    });
    bool failedAny = false;
    for (Operation *op : ops)
      if (failed(checkStaticShapes(op)))
        failedAny = true;
    if (failedAny)
      return signalPassFailure();
    for (Operation *op : ops) {
      OpBuilder b(op);
      Results results = lowerOp(b, op);
      if (failed(results))
        return signalPassFailure();
      op->replaceAllUsesWith(*results);
      op->erase();
    }
  }
};

} // namespace
