//===- NormalizeStablehlo.cpp - one spelling for top_k; composites called -===//
//
// JAX spells top-k four ways (see the pass description); recognising MoE
// routing and lowering both want one. Composites other than top_k become
// calls of their decompositions, which `inline` then removes.
//
//===----------------------------------------------------------------------===//

#include "RaiseMatchers.h"
#include "dialects/stablehlo/StablehloDialect.h"
#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Matchers.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOENORMALIZESTABLEHLO
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;
namespace shlo = mlir::moe::stablehlo;

namespace {

/// k of a top-k given as {k = .., largest = ..}; failure when largest is
/// false (a bottom-k) or k is missing.
FailureOr<int64_t> topKFromAttributes(Operation *op, DictionaryAttr attrs) {
  auto k = attrs ? dyn_cast_or_null<IntegerAttr>(attrs.get("k")) : nullptr;
  if (!k)
    return op->emitError("top_k without an integer 'k' attribute"), failure();
  if (auto largest = dyn_cast_or_null<BoolAttr>(attrs.get("largest")); largest && !largest.getValue())
    return op->emitError("top_k with largest = false is not supported"), failure();
  return k.getInt();
}

void replaceWithTopK(Operation *op, Value operand, int64_t k) {
  OpBuilder b(op);
  auto topk = chlo::TopKOp::create(b, op->getLoc(), op->getResultTypes(), operand, b.getI64IntegerAttr(k));
  op->replaceAllUsesWith(topk->getResults());
  op->erase();
}

/// The ragged_dot dimension numbers of a `chlo.ragged_dot` composite:
/// `ragged_dot_dimension_numbers` lists six dense arrays (lhs/rhs batching,
/// lhs/rhs contracting, lhs ragged, rhs group dims). Null when absent or
/// malformed; the composite is then called like any other.
chlo::RaggedDotDimensionNumbersAttr raggedDotDims(MLIRContext *ctx, DictionaryAttr attrs) {
  auto list = attrs ? dyn_cast_or_null<ArrayAttr>(attrs.get("ragged_dot_dimension_numbers")) : nullptr;
  if (!list || list.size() != 6)
    return nullptr;
  SmallVector<SmallVector<int64_t>> dims;
  for (Attribute a : list) {
    auto dense = dyn_cast<DenseIntElementsAttr>(a);
    if (!dense)
      return nullptr;
    dims.emplace_back(llvm::map_range(dense.getValues<APInt>(), [](const APInt &v) { return v.getSExtValue(); }));
  }
  return chlo::RaggedDotDimensionNumbersAttr::get(ctx, dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]);
}

/// The comparator function an ApproxTopK custom call names: GT selects the
/// largest (approx_max_k), LT the smallest (approx_min_k).
std::optional<shlo::ComparisonDirection> approxTopKDirection(Operation *call) {
  auto called = dyn_cast_or_null<ArrayAttr>(call->getAttr("called_computations"));
  auto name = called && called.size() == 1 ? dyn_cast<FlatSymbolRefAttr>(called[0]) : nullptr;
  auto fn = name ? SymbolTable::lookupNearestSymbolFrom<func::FuncOp>(call, name) : nullptr;
  if (!fn || fn.getBody().empty() || !llvm::hasNItems(fn.getBody().front(), 2))
    return std::nullopt;
  auto compare = dyn_cast<shlo::CompareOp>(fn.getBody().front().front());
  Block &block = fn.getBody().front();
  if (!compare || compare.getLhs() != block.getArgument(0) || compare.getRhs() != block.getArgument(1))
    return std::nullopt;
  return compare.getComparisonDirection();
}

/// custom_call @ApproxTopK (lax.approx_max_k / approx_min_k on CPU and
/// GPU): the exact top-k meets any recall target, so it becomes chlo.top_k
/// of the values (negated for a min-k). Only the aggregated form (k
/// results along the last dimension) is rewritten.
LogicalResult normalizeApproxTopK(shlo::CustomCallOp call) {
  auto config = dyn_cast_or_null<DictionaryAttr>(call->getAttr("mhlo.backend_config"));
  auto k = config ? dyn_cast_or_null<IntegerAttr>(config.get("top_k")) : nullptr;
  auto dim = config ? dyn_cast_or_null<IntegerAttr>(config.get("reduction_dim")) : nullptr;
  auto aggregate = config ? dyn_cast_or_null<BoolAttr>(config.get("aggregate_to_topk")) : nullptr;
  std::optional<shlo::ComparisonDirection> direction = approxTopKDirection(call);
  if (!k || !dim || !aggregate || !aggregate.getValue() || !direction || call.getInputs().empty() ||
      call->getNumResults() != 2)
    return call.emitError("custom_call @ApproxTopK in a form other than lax.approx_max_k/approx_min_k "
                          "(aggregated, one comparator) is not supported");
  Value values = call.getInputs()[0];
  auto type = cast<RankedTensorType>(values.getType());
  if (dim.getInt() != type.getRank() - 1 || !isa<FloatType>(type.getElementType()))
    return call.emitError("custom_call @ApproxTopK is supported along the last dimension of a float tensor");
  bool smallest = *direction == shlo::ComparisonDirection::LT;
  if (!smallest && *direction != shlo::ComparisonDirection::GT)
    return call.emitError("custom_call @ApproxTopK's comparator is neither GT nor LT");
  OpBuilder b(call);
  Location loc = call.getLoc();
  if (smallest)
    values = shlo::NegOp::create(b, loc, type, values);
  auto topk = chlo::TopKOp::create(b, loc, call->getResultTypes(), values, b.getI64IntegerAttr(k.getInt()));
  Value selected = topk.getValues();
  if (smallest)
    selected = shlo::NegOp::create(b, loc, selected.getType(), selected);
  call->getResult(0).replaceAllUsesWith(selected);
  call->getResult(1).replaceAllUsesWith(topk.getIndices());
  call->erase();
  return success();
}

struct MoeNormalizeStablehloPass : public mlir::moe::impl::MoeNormalizeStablehloBase<MoeNormalizeStablehloPass> {
  void runOnOperation() override {
    bool failedAny = false;
    SmallVector<Operation *> ops;
    getOperation()->walk([&](Operation *op) {
      if (isa<shlo::CompositeOp, shlo::CustomCallOp, shlo::SortOp, chlo::SquareOp, shlo::OptimizationBarrierOp>(op))
        ops.push_back(op);
    });
    SetVector<func::FuncOp> comparators;
    for (Operation *op : ops) {
      if (auto barrier = dyn_cast<shlo::OptimizationBarrierOp>(op)) {
        barrier->replaceAllUsesWith(barrier.getOperand());
        barrier->erase();
        continue;
      }
      if (auto square = dyn_cast<chlo::SquareOp>(op)) {
        OpBuilder b(op);
        auto product = shlo::MulOp::create(b, op->getLoc(), square.getType(), square.getOperand(), square.getOperand());
        op->replaceAllUsesWith(product->getResults());
        op->erase();
        continue;
      }
      if (auto composite = dyn_cast<shlo::CompositeOp>(op)) {
        if (composite.getName() == "chlo.top_k") {
          FailureOr<int64_t> k = topKFromAttributes(op, composite.getCompositeAttributes());
          if (failed(k)) {
            failedAny = true;
            continue;
          }
          replaceWithTopK(op, composite.getInputs()[0], *k);
          continue;
        }
        OpBuilder b(op);
        if (composite.getName() == "chlo.ragged_dot" && composite.getInputs().size() == 3) {
          auto dims = raggedDotDims(b.getContext(), composite.getCompositeAttributes());
          // Only the grouped-matmul mode becomes chlo.ragged_dot; other
          // modes keep their decomposition.
          auto lhsType = cast<RankedTensorType>(composite.getInputs()[0].getType());
          auto rhsType = cast<RankedTensorType>(composite.getInputs()[1].getType());
          if (dims && lhsType.getRank() == 2 && rhsType.getRank() == 3 && dims.getLhsBatchingDimensions().empty() &&
              dims.getRhsBatchingDimensions().empty() && dims.getLhsContractingDimensions() == ArrayRef<int64_t>{1} &&
              dims.getRhsContractingDimensions() == ArrayRef<int64_t>{1} &&
              dims.getLhsRaggedDimensions() == ArrayRef<int64_t>{0} &&
              dims.getRhsGroupDimensions() == ArrayRef<int64_t>{0}) {
            auto ragged = chlo::RaggedDotOp::create(b, op->getLoc(), op->getResultTypes()[0], composite.getInputs()[0],
                                                    composite.getInputs()[1], composite.getInputs()[2], dims, nullptr);
            op->replaceAllUsesWith(ragged->getResults());
            op->erase();
            continue;
          }
        }
        auto call = func::CallOp::create(b, op->getLoc(), composite.getDecompositionAttr(), op->getResultTypes(),
                                         composite.getInputs());
        op->replaceAllUsesWith(call->getResults());
        op->erase();
      } else if (auto customCall = dyn_cast<shlo::CustomCallOp>(op)) {
        if (customCall.getCallTargetName() == "ApproxTopK") {
          auto called = dyn_cast_or_null<ArrayAttr>(op->getAttr("called_computations"));
          auto name = called && called.size() == 1 ? dyn_cast<FlatSymbolRefAttr>(called[0]) : nullptr;
          if (auto fn = name ? SymbolTable::lookupNearestSymbolFrom<func::FuncOp>(op, name) : nullptr)
            comparators.insert(fn);
          if (failed(normalizeApproxTopK(customCall)))
            failedAny = true;
          continue;
        }
        if (customCall.getCallTargetName() != "mhlo.topk")
          continue;
        FailureOr<int64_t> k =
            topKFromAttributes(op, dyn_cast_or_null<DictionaryAttr>(op->getAttr("mhlo.attributes")));
        if (failed(k)) {
          failedAny = true;
          continue;
        }
        replaceWithTopK(op, customCall.getInputs()[0], *k);
      } else {
        (void)stablehlo_raise::sortAsTopK(cast<shlo::SortOp>(op));
      }
    }
    // The comparators were only ever called by the custom calls (their
    // stablehlo.return is no func terminator the lowering knows).
    for (func::FuncOp fn : comparators)
      if (fn && SymbolTable::symbolKnownUseEmpty(fn, getOperation()))
        fn.erase();
    if (failedAny)
      signalPassFailure();
  }
};

} // namespace
