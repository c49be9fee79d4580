//===- LowerIndexing.cpp - gather, scatter, sort and top_k ----------------===//

#include "Lowerings.h"
#include "dialects/moe/MoeOps.h"
#include "dialects/stablehlo/StablehloDialect.h"
#include "moe/Utils/ScalarMath.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_lowering;
namespace shlo = mlir::moe::stablehlo;

static RankedTensorType typeOf(Value v) { return cast<RankedTensorType>(v.getType()); }

static Value toIndex(OpBuilder &b, Location loc, Value v) {
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
}


/// The dims of `rank` not listed in `a` or `b`, in order.
static SmallVector<int64_t> remainingDims(int64_t rank, ArrayRef<int64_t> a, ArrayRef<int64_t> b = {}) {
  SmallVector<int64_t> dims;
  for (int64_t d = 0; d < rank; ++d)
    if (!llvm::is_contained(a, d) && !llvm::is_contained(b, d))
      dims.push_back(d);
  return dims;
}

/// Entry `k` of the index vector at batch position `batch` (the indices'
/// dims other than indexVectorDim, in order).
static Value indexVectorEntry(OpBuilder &b, Location loc, Value indices, int64_t indexVectorDim,
                              ArrayRef<Value> batch, int64_t k) {
  SmallVector<Value> position;
  int64_t rank = typeOf(indices).getRank();
  size_t next = 0;
  for (int64_t d = 0; d < rank; ++d)
    position.push_back(d == indexVectorDim ? scalar::constIndex(b, loc, k) : batch[next++]);
  return toIndex(b, loc, tensor::ExtractOp::create(b, loc, indices, position));
}

/// XLA gather, element by element: result index -> operand index.
static Results lowerGather(OpBuilder &b, shlo::GatherOp op) {
  Location loc = op.getLoc();
  shlo::GatherDimensionNumbersAttr dims = op.getDimensionNumbers();
  auto operand = typeOf(op.getOperand());
  auto result = typeOf(op.getResult());
  Value indices = op.getStartIndices();
  int64_t indexVectorDim = dims.getIndexVectorDim();
  SmallVector<int64_t> batchResultDims = remainingDims(result.getRank(), dims.getOffsetDims());
  SmallVector<int64_t> windowOperandDims =
      remainingDims(operand.getRank(), dims.getCollapsedSliceDims(), dims.getOperandBatchingDims());
  // The indices' dims other than the index vector dim, in order, are the
  // result's batch dims.
  SmallVector<int64_t> indicesBatchDims = remainingDims(typeOf(indices).getRank(), {indexVectorDim});
  Value v = buildParallelGeneric(b, loc, result, {}, {}, [&](OpBuilder &nb, Location nl, ValueRange) -> Value {
    SmallVector<Value> batch;
    for (int64_t d : batchResultDims)
      batch.push_back(linalg::IndexOp::create(nb, nl, d));
    SmallVector<Value> position(operand.getRank(), scalar::constIndex(nb, nl, 0));
    for (auto [k, o] : llvm::enumerate(dims.getStartIndexMap())) {
      Value start = indexVectorEntry(nb, nl, indices, indexVectorDim, batch, k);
      Value high = scalar::constIndex(nb, nl, operand.getDimSize(o) - op.getSliceSizes()[o]);
      position[o] = arith::MinSIOp::create(nb, nl, arith::MaxSIOp::create(nb, nl, start, scalar::constIndex(nb, nl, 0)), high);
    }
    for (auto [o, i] : llvm::zip(dims.getOperandBatchingDims(), dims.getStartIndicesBatchingDims())) {
      auto at = llvm::find(indicesBatchDims, i) - indicesBatchDims.begin();
      position[o] = batch[at];
    }
    for (auto [o, r] : llvm::zip(windowOperandDims, dims.getOffsetDims()))
      position[o] = arith::AddIOp::create(nb, nl, position[o], linalg::IndexOp::create(nb, nl, r));
    return tensor::ExtractOp::create(nb, nl, op.getOperand(), position);
  });
  return SmallVector<Value>{v};
}

/// XLA scatter as a sequential loop nest over the update elements, in
/// index order (deterministic); updates landing outside the operand are
/// skipped.
static Results lowerScatter(OpBuilder &b, shlo::ScatterOp op) {
  Location loc = op.getLoc();
  shlo::ScatterDimensionNumbersAttr dims = op.getScatterDimensionNumbers();
  size_t n = op.getInputs().size();
  auto operand = typeOf(op.getInputs()[0]);
  auto update = typeOf(op.getUpdates()[0]);
  Value indices = op.getScatterIndices();
  int64_t indexVectorDim = dims.getIndexVectorDim();
  SmallVector<int64_t> updateScatterDims = remainingDims(update.getRank(), dims.getUpdateWindowDims());
  SmallVector<int64_t> windowOperandDims =
      remainingDims(operand.getRank(), dims.getInsertedWindowDims(), dims.getInputBatchingDims());
  SmallVector<int64_t> indicesBatchDims = remainingDims(typeOf(indices).getRank(), {indexVectorDim});

  SmallVector<Value> lbs, ubs, steps;
  for (int64_t s : update.getShape()) {
    lbs.push_back(scalar::constIndex(b, loc, 0));
    ubs.push_back(scalar::constIndex(b, loc, s));
    steps.push_back(scalar::constIndex(b, loc, 1));
  }
  bool bodyFailed = false;
  scf::LoopNest nest = scf::buildLoopNest(
      b, loc, lbs, ubs, steps, op.getInputs(),
      [&](OpBuilder &nb, Location nl, ValueRange u, ValueRange current) -> scf::ValueVector {
        SmallVector<Value> batch;
        for (int64_t d : updateScatterDims)
          batch.push_back(u[d]);
        SmallVector<Value> position(operand.getRank(), scalar::constIndex(nb, nl, 0));
        for (auto [k, o] : llvm::enumerate(dims.getScatterDimsToOperandDims()))
          position[o] = indexVectorEntry(nb, nl, indices, indexVectorDim, batch, k);
        for (auto [o, i] : llvm::zip(dims.getInputBatchingDims(), dims.getScatterIndicesBatchingDims())) {
          auto at = llvm::find(indicesBatchDims, i) - indicesBatchDims.begin();
          position[o] = batch[at];
        }
        for (auto [o, w] : llvm::zip(windowOperandDims, dims.getUpdateWindowDims()))
          position[o] = arith::AddIOp::create(nb, nl, position[o], u[w]);
        Value inBounds = arith::ConstantOp::create(nb, nl, nb.getBoolAttr(true));
        for (auto [d, p] : llvm::enumerate(position)) {
          Value low = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, p, scalar::constIndex(nb, nl, 0));
          Value high = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, p,
                                             scalar::constIndex(nb, nl, operand.getDimSize(d)));
          inBounds = arith::AndIOp::create(nb, nl, inBounds, arith::AndIOp::create(nb, nl, low, high));
        }
        auto ifOp = scf::IfOp::create(
            nb, nl, inBounds,
            [&](OpBuilder &tb, Location tl) {
              SmallVector<Value> args;
              for (Value t : current)
                args.push_back(tensor::ExtractOp::create(tb, tl, t, position));
              for (Value upd : op.getUpdates())
                args.push_back(tensor::ExtractOp::create(tb, tl, upd, u));
              FailureOr<SmallVector<Value>> combined = emitScalarBody(tb, tl, op.getUpdateComputation(), args);
              if (failed(combined)) {
                bodyFailed = true;
                scf::YieldOp::create(tb, tl, current);
                return;
              }
              SmallVector<Value> written;
              for (size_t i = 0; i < n; ++i)
                written.push_back(tensor::InsertOp::create(tb, tl, (*combined)[i], current[i], position));
              scf::YieldOp::create(tb, tl, written);
            },
            [&](OpBuilder &eb, Location el) { scf::YieldOp::create(eb, el, current); });
        return scf::ValueVector(ifOp.getResults().begin(), ifOp.getResults().end());
      });
  if (bodyFailed)
    return failure();
  return SmallVector<Value>(nest.results);
}

/// A stable sort without data-dependent control flow: element i lands at
/// position #{j : j before i}, where j is before i when the comparator
/// says so or when neither is before the other and j < i. A second
/// reduction inverts the positions into source indices, and each input is
/// read through them. O(L^2) comparisons along the sorted dimension.
static Results lowerSort(OpBuilder &b, shlo::SortOp op) {
  Location loc = op.getLoc();
  size_t n = op.getInputs().size();
  auto type = typeOf(op.getInputs()[0]);
  int64_t rank = type.getRank();
  auto dimension = static_cast<int64_t>(op.getDimension());
  int64_t dim = dimension < 0 ? dimension + rank : dimension;
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineExpr> own, other;
  for (int64_t d = 0; d < rank; ++d) {
    own.push_back(b.getAffineDimExpr(d));
    other.push_back(d == dim ? b.getAffineDimExpr(rank) : b.getAffineDimExpr(d));
  }
  AffineMap ownMap = AffineMap::get(rank + 1, 0, own, ctx), otherMap = AffineMap::get(rank + 1, 0, other, ctx);
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  Type i64 = b.getI64Type();
  Value zero = arith::ConstantOp::create(b, loc, i64, b.getI64IntegerAttr(0));
  Value zeros = linalg::FillOp::create(b, loc, zero, Value(tensor::EmptyOp::create(b, loc, type.getShape(), i64)))
                    .getResult(0);

  SmallVector<Value> inputs(op.getInputs());
  inputs.append(op.getInputs().begin(), op.getInputs().end());
  SmallVector<AffineMap> maps(n, ownMap);
  maps.append(n, otherMap);
  maps.push_back(ownMap);
  bool bodyFailed = false;
  auto positions = linalg::GenericOp::create(
      b, loc, zeros.getType(), inputs, ValueRange{zeros}, maps, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        ValueRange mine = args.take_front(n), theirs = args.slice(n, n);
        // The comparator's arguments interleave lhs and rhs per input.
        auto compare = [&](ValueRange lhs, ValueRange rhs) -> Value {
          SmallVector<Value> cmpArgs;
          for (size_t k = 0; k < n; ++k) {
            cmpArgs.push_back(lhs[k]);
            cmpArgs.push_back(rhs[k]);
          }
          FailureOr<SmallVector<Value>> r = emitScalarBody(nb, nl, op.getComparator(), cmpArgs);
          if (failed(r)) {
            bodyFailed = true;
            return arith::ConstantOp::create(nb, nl, nb.getBoolAttr(false));
          }
          return tensor_builders::castScalar(nb, nl, (*r)[0], nb.getI1Type());
        };
        Value theirsFirst = compare(theirs, mine);
        Value mineFirst = compare(mine, theirs);
        Value j = linalg::IndexOp::create(nb, nl, rank), i = linalg::IndexOp::create(nb, nl, dim);
        Value earlier = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ult, j, i);
        Value tieBefore = arith::AndIOp::create(
            nb, nl, earlier,
            arith::XOrIOp::create(nb, nl, mineFirst, arith::ConstantOp::create(nb, nl, nb.getBoolAttr(true))));
        Value before = arith::OrIOp::create(nb, nl, theirsFirst, tieBefore);
        Value one = arith::ExtUIOp::create(nb, nl, i64, before);
        linalg::YieldOp::create(nb, nl, Value(arith::AddIOp::create(nb, nl, args.back(), one)));
      });
  if (bodyFailed)
    return failure();

  // source[p] = the i whose position is p.
  auto sources = linalg::GenericOp::create(
      b, loc, zeros.getType(), ValueRange{positions.getResult(0)}, ValueRange{zeros}, {otherMap, ownMap}, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value p = arith::IndexCastOp::create(nb, nl, i64, linalg::IndexOp::create(nb, nl, dim));
        Value i = arith::IndexCastOp::create(nb, nl, i64, linalg::IndexOp::create(nb, nl, rank));
        Value hit = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq, args[0], p);
        Value add = arith::SelectOp::create(nb, nl, hit, i, arith::ConstantOp::create(nb, nl, i64, nb.getI64IntegerAttr(0)));
        linalg::YieldOp::create(nb, nl, Value(arith::AddIOp::create(nb, nl, args[1], add)));
      });

  SmallVector<Value> results;
  for (Value input : op.getInputs()) {
    Value sorted = buildParallelGeneric(
        b, loc, typeOf(input), ValueRange{sources.getResult(0)}, {b.getMultiDimIdentityMap(rank)},
        [&](OpBuilder &nb, Location nl, ValueRange args) -> Value {
          SmallVector<Value> position;
          for (int64_t d = 0; d < rank; ++d)
            position.push_back(d == dim ? toIndex(nb, nl, args[0]) : Value(linalg::IndexOp::create(nb, nl, d)));
          return tensor::ExtractOp::create(nb, nl, input, position);
        });
    results.push_back(sorted);
  }
  return results;
}

/// chlo.top_k is moe.topk on [rows, last dim] f32 scores (stable: ties
/// keep the lower index first).
static Results lowerTopK(OpBuilder &b, chlo::TopKOp op) {
  Location loc = op.getLoc();
  auto type = typeOf(op.getOperand());
  if (!isa<FloatType>(type.getElementType()) || type.getElementType().getIntOrFloatBitWidth() > 32)
    return op.emitError("top_k is supported on f32, f16 and bf16 operands"), failure();
  int64_t last = type.getShape().back();
  int64_t rows = type.getNumElements() / std::max<int64_t>(last, 1);
  int64_t k = op.getK();
  Value scores = tensor_builders::reshape(b, loc, op.getOperand(), {rows, last});
  scores = tensor_builders::castTensor(b, loc, scores, b.getF32Type());
  auto weightsType = RankedTensorType::get({rows, k}, b.getF32Type());
  auto indicesType = RankedTensorType::get({rows, k}, b.getI32Type());
  auto topk = moe::TopKOp::create(b, loc, TypeRange{weightsType, indicesType}, scores, Value(), b.getI64IntegerAttr(k),
                                  nullptr, nullptr, nullptr);
  auto valuesType = typeOf(op.getValues());
  Value values = tensor_builders::castTensor(b, loc, topk.getWeights(), valuesType.getElementType());
  values = tensor_builders::reshape(b, loc, values, valuesType.getShape());
  Value indices = tensor_builders::reshape(b, loc, topk.getIndices(), typeOf(op.getIndices()).getShape());
  return SmallVector<Value>{values, indices};
}

Results stablehlo_lowering::lowerIndexing(OpBuilder &b, Operation *op) {
  return llvm::TypeSwitch<Operation *, Results>(op)
      .Case([&](shlo::GatherOp o) { return lowerGather(b, o); })
      .Case([&](shlo::ScatterOp o) { return lowerScatter(b, o); })
      .Case([&](shlo::SortOp o) { return lowerSort(b, o); })
      .Case([&](chlo::TopKOp o) { return lowerTopK(b, o); })
      .Default([](Operation *) -> Results { return failure(); });
}
