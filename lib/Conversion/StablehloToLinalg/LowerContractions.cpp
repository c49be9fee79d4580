//===- LowerContractions.cpp - dot_general, ragged_dot, reduce, reduce_window ===//

#include "Lowerings.h"
#include "dialects/moe/MoeOps.h"
#include "dialects/stablehlo/StablehloDialect.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::stablehlo_lowering;
namespace shlo = mlir::moe::stablehlo;

static RankedTensorType typeOf(Value v) { return cast<RankedTensorType>(v.getType()); }

/// Floats narrower than f32 accumulate in f32 (as XLA does on CPU and GPU).
static Type accumulatorType(OpBuilder &b, Type element) {
  if (auto f = dyn_cast<FloatType>(element); f && f.getWidth() < 32)
    return b.getF32Type();
  return element;
}

static Value filledTensor(OpBuilder &b, Location loc, ArrayRef<int64_t> shape, Value value) {
  Value empty = tensor::EmptyOp::create(b, loc, shape, value.getType());
  return linalg::FillOp::create(b, loc, value, empty).getResult(0);
}

/// Loops: batch dims, lhs free dims, rhs free dims (the result's order),
/// then the contracting dims as reductions.
static Results lowerDotGeneral(OpBuilder &b, shlo::DotGeneralOp op) {
  Location loc = op.getLoc();
  auto lhs = typeOf(op.getLhs()), rhs = typeOf(op.getRhs()), result = typeOf(op.getResult());
  shlo::DotDimensionNumbersAttr dims = op.getDotDimensionNumbers();
  ArrayRef<int64_t> lb = dims.getLhsBatchingDimensions(), rb = dims.getRhsBatchingDimensions();
  ArrayRef<int64_t> lc = dims.getLhsContractingDimensions(), rc = dims.getRhsContractingDimensions();
  int64_t numParallel = result.getRank();
  int64_t numLoops = numParallel + static_cast<int64_t>(lc.size());
  SmallVector<AffineExpr> lhsExprs(lhs.getRank()), rhsExprs(rhs.getRank());
  int64_t loop = 0;
  for (auto [l, r] : llvm::zip(lb, rb)) {
    lhsExprs[l] = rhsExprs[r] = b.getAffineDimExpr(loop);
    ++loop;
  }
  for (int64_t d = 0; d < lhs.getRank(); ++d)
    if (!llvm::is_contained(lb, d) && !llvm::is_contained(lc, d))
      lhsExprs[d] = b.getAffineDimExpr(loop++);
  for (int64_t d = 0; d < rhs.getRank(); ++d)
    if (!llvm::is_contained(rb, d) && !llvm::is_contained(rc, d))
      rhsExprs[d] = b.getAffineDimExpr(loop++);
  for (auto [l, r] : llvm::zip(lc, rc)) {
    lhsExprs[l] = rhsExprs[r] = b.getAffineDimExpr(loop);
    ++loop;
  }
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineExpr> outExprs;
  for (int64_t d = 0; d < numParallel; ++d)
    outExprs.push_back(b.getAffineDimExpr(d));
  SmallVector<AffineMap> maps = {AffineMap::get(numLoops, 0, lhsExprs, ctx),
                                 AffineMap::get(numLoops, 0, rhsExprs, ctx),
                                 AffineMap::get(numLoops, 0, outExprs, ctx)};
  SmallVector<utils::IteratorType> iterators(numParallel, utils::IteratorType::parallel);
  iterators.append(lc.size(), utils::IteratorType::reduction);

  Type element = result.getElementType();
  Type acc = accumulatorType(b, element);
  Value zero = arith::ConstantOp::create(b, loc, acc, b.getZeroAttr(acc));
  // Without contracting dims the product is written, not added to a zero
  // init: upstream's elementwise fusion mis-fuses a parallel generic that
  // reads its init into a consumer with more loops.
  bool contracts = !lc.empty();
  Value init = contracts ? filledTensor(b, loc, result.getShape(), zero)
                         : Value(tensor::EmptyOp::create(b, loc, result.getShape(), acc));
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), ValueRange{op.getLhs(), op.getRhs()}, ValueRange{init}, maps, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value x = tensor_builders::castScalar(nb, nl, args[0], acc);
        Value y = tensor_builders::castScalar(nb, nl, args[1], acc);
        Value sum;
        if (!contracts)
          sum = isa<FloatType>(acc)    ? Value(arith::MulFOp::create(nb, nl, x, y))
                : acc.isInteger(1) ? Value(arith::AndIOp::create(nb, nl, x, y))
                                   : Value(arith::MulIOp::create(nb, nl, x, y));
        else if (isa<FloatType>(acc))
          sum = arith::AddFOp::create(nb, nl, args[2], arith::MulFOp::create(nb, nl, x, y));
        else if (acc.isInteger(1))
          sum = arith::OrIOp::create(nb, nl, args[2], arith::AndIOp::create(nb, nl, x, y));
        else
          sum = arith::AddIOp::create(nb, nl, args[2], arith::MulIOp::create(nb, nl, x, y));
        linalg::YieldOp::create(nb, nl, sum);
      });
  Value v = tensor_builders::castTensor(b, loc, generic.getResult(0), element);
  return SmallVector<Value>{v};
}

/// ragged_dot (grouped-matmul mode) is moe.grouped_matmul: rhs [g, k, n]
/// transposed to the moe weight layout [g, n, k], group sizes turned into
/// row offsets [0, s0, s0+s1, ...].
static Results lowerRaggedDot(OpBuilder &b, chlo::RaggedDotOp op) {
  Location loc = op.getLoc();
  auto lhs = typeOf(op.getLhs()), rhs = typeOf(op.getRhs());
  Type element = lhs.getElementType();
  if (element != rhs.getElementType() || !(element.isF32() || element.isF16() || element.isBF16()) ||
      typeOf(op.getResult()).getElementType() != element)
    return op.emitError("ragged_dot is supported on f32, f16 and bf16 operands of one type, with a result of that "
                        "type"),
           failure();
  int64_t groups = rhs.getDimSize(0);
  Value sizes = tensor_builders::castTensor(b, loc, op.getGroupSizes(), b.getI32Type());
  // offsets[i] = sum(sizes[:i]) for i in [0, groups]: a reduction over j < i.
  auto offsetsType = RankedTensorType::get({groups + 1}, b.getI32Type());
  Value zero = arith::ConstantOp::create(b, loc, b.getI32Type(), b.getI32IntegerAttr(0));
  Value init = filledTensor(b, loc, offsetsType.getShape(), zero);
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineMap> maps = {AffineMap::get(2, 0, {b.getAffineDimExpr(1)}, ctx),
                                 AffineMap::get(2, 0, {b.getAffineDimExpr(0)}, ctx)};
  auto prefix = linalg::GenericOp::create(
      b, loc, offsetsType, ValueRange{sizes}, ValueRange{init}, maps,
      {utils::IteratorType::parallel, utils::IteratorType::reduction},
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value i = linalg::IndexOp::create(nb, nl, 0), j = linalg::IndexOp::create(nb, nl, 1);
        Value before = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ult, j, i);
        Value added = arith::AddIOp::create(nb, nl, args[1], args[0]);
        linalg::YieldOp::create(nb, nl, Value(arith::SelectOp::create(nb, nl, before, added, args[1])));
      });
  // The reduction over j runs over the group-size input's extent: groups
  // entries, while i covers groups + 1 offsets.
  Value weights = tensor_builders::transpose(b, loc, op.getRhs(), {0, 2, 1});
  Value v = moe::GroupedMatmulOp::create(b, loc, op.getResult().getType(), op.getLhs(), weights,
                                         prefix.getResult(0), Value());
  return SmallVector<Value>{v};
}

/// linalg.generic over the inputs' dims, the kept dims parallel and the
/// reduced ones reductions; the body runs the reducer on scalars.
static Results lowerReduce(OpBuilder &b, shlo::ReduceOp op) {
  Location loc = op.getLoc();
  auto inputType = typeOf(op.getInputs()[0]);
  int64_t rank = inputType.getRank();
  SmallVector<AffineExpr> kept;
  SmallVector<utils::IteratorType> iterators;
  for (int64_t d = 0; d < rank; ++d) {
    bool reduced = llvm::is_contained(op.getDimensions(), d);
    iterators.push_back(reduced ? utils::IteratorType::reduction : utils::IteratorType::parallel);
    if (!reduced)
      kept.push_back(b.getAffineDimExpr(d));
  }
  size_t n = op.getInputs().size();
  SmallVector<Value> inits;
  SmallVector<Type> types;
  for (size_t i = 0; i < n; ++i) {
    auto resultType = typeOf(op.getResult(i));
    inits.push_back(filledTensor(b, loc, resultType.getShape(), extractScalar(b, loc, op.getInitValues()[i])));
    types.push_back(resultType);
  }
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineMap> maps(n, b.getMultiDimIdentityMap(rank));
  maps.append(n, AffineMap::get(rank, 0, kept, ctx));
  bool bodyFailed = false;
  auto generic = linalg::GenericOp::create(
      b, loc, types, op.getInputs(), inits, maps, iterators, [&](OpBuilder &nb, Location nl, ValueRange args) {
        // The reducer takes the accumulators first, then the elements.
        SmallVector<Value> reducerArgs(args.drop_front(n));
        reducerArgs.append(args.begin(), args.begin() + n);
        FailureOr<SmallVector<Value>> r = emitScalarBody(nb, nl, op.getBody(), reducerArgs);
        if (failed(r)) {
          bodyFailed = true;
          linalg::YieldOp::create(nb, nl, args.drop_front(n));
          return;
        }
        linalg::YieldOp::create(nb, nl, *r);
      });
  if (bodyFailed)
    return failure();
  return SmallVector<Value>(generic.getResults());
}

/// Each result element folds its window: loops over the result and window
/// positions, operand elements read with tensor.extract, padding (and
/// positions outside the operand) contributing the init value.
static Results lowerReduceWindow(OpBuilder &b, shlo::ReduceWindowOp op) {
  Location loc = op.getLoc();
  if (op.getInputs().size() != 1)
    return op.emitError("reduce_window with several inputs is not supported"), failure();
  auto inputType = typeOf(op.getInputs()[0]);
  auto resultType = typeOf(op.getResult(0));
  int64_t rank = inputType.getRank();
  auto ones = SmallVector<int64_t>(rank, 1);
  ArrayRef<int64_t> window = op.getWindowDimensions();
  SmallVector<int64_t> strides(op.getWindowStrides().value_or(ones));
  SmallVector<int64_t> dilations(op.getWindowDilations().value_or(ones));
  if (op.getBaseDilations() && llvm::any_of(*op.getBaseDilations(), [](int64_t d) { return d != 1; }))
    return op.emitError("reduce_window with base dilations is not supported"), failure();
  SmallVector<int64_t> padLow(rank, 0);
  if (auto padding = op.getPadding())
    for (int64_t d = 0; d < rank; ++d)
      padLow[d] = padding->getValues<int64_t>()[{static_cast<uint64_t>(d), 0}];

  Value init = extractScalar(b, loc, op.getInitValues()[0]);
  Value filled = filledTensor(b, loc, resultType.getShape(), init);
  // Loops: result dims (parallel), then window dims (reduction). The
  // window tensor only gives the window loops their extent.
  Value windowShape = tensor::EmptyOp::create(b, loc, window, b.getI1Type());
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineExpr> resultExprs, windowExprs;
  for (int64_t d = 0; d < rank; ++d) {
    resultExprs.push_back(b.getAffineDimExpr(d));
    windowExprs.push_back(b.getAffineDimExpr(rank + d));
  }
  SmallVector<AffineMap> maps = {AffineMap::get(2 * rank, 0, windowExprs, ctx),
                                 AffineMap::get(2 * rank, 0, resultExprs, ctx)};
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  iterators.append(rank, utils::IteratorType::reduction);
  Value input = op.getInputs()[0];
  bool bodyFailed = false;
  auto generic = linalg::GenericOp::create(
      b, loc, resultType, ValueRange{windowShape}, ValueRange{filled}, maps, iterators,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        Value inBounds = arith::ConstantOp::create(nb, nl, nb.getBoolAttr(true));
        SmallVector<Value> indices;
        for (int64_t d = 0; d < rank; ++d) {
          Value out = linalg::IndexOp::create(nb, nl, d), w = linalg::IndexOp::create(nb, nl, rank + d);
          Value pos = arith::AddIOp::create(
              nb, nl, arith::MulIOp::create(nb, nl, out, arith::ConstantIndexOp::create(nb, nl, strides[d])),
              arith::MulIOp::create(nb, nl, w, arith::ConstantIndexOp::create(nb, nl, dilations[d])));
          pos = arith::SubIOp::create(nb, nl, pos, arith::ConstantIndexOp::create(nb, nl, padLow[d]));
          Value low = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, pos,
                                            arith::ConstantIndexOp::create(nb, nl, 0));
          Value high = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, pos,
                                             arith::ConstantIndexOp::create(nb, nl, inputType.getDimSize(d)));
          inBounds = arith::AndIOp::create(nb, nl, inBounds, arith::AndIOp::create(nb, nl, low, high));
          // A clamped position keeps the read inside the tensor; its value
          // is replaced by init when out of bounds.
          Value clamped = arith::MaxSIOp::create(nb, nl, pos, arith::ConstantIndexOp::create(nb, nl, 0));
          clamped = arith::MinSIOp::create(nb, nl, clamped,
                                           arith::ConstantIndexOp::create(nb, nl, inputType.getDimSize(d) - 1));
          indices.push_back(clamped);
        }
        Value element = tensor::ExtractOp::create(nb, nl, input, indices);
        element = arith::SelectOp::create(nb, nl, inBounds, element, init);
        FailureOr<SmallVector<Value>> r = emitScalarBody(nb, nl, op.getBody(), {args[1], element});
        if (failed(r)) {
          bodyFailed = true;
          linalg::YieldOp::create(nb, nl, args[1]);
          return;
        }
        linalg::YieldOp::create(nb, nl, *r);
      });
  if (bodyFailed)
    return failure();
  return SmallVector<Value>{generic.getResult(0)};
}

Results stablehlo_lowering::lowerContraction(OpBuilder &b, Operation *op) {
  return llvm::TypeSwitch<Operation *, Results>(op)
      .Case([&](shlo::DotGeneralOp o) { return lowerDotGeneral(b, o); })
      .Case([&](chlo::RaggedDotOp o) { return lowerRaggedDot(b, o); })
      .Case([&](shlo::ReduceOp o) { return lowerReduce(b, o); })
      .Case([&](shlo::ReduceWindowOp o) { return lowerReduceWindow(b, o); })
      .Default([](Operation *) -> Results { return failure(); });
}
