//===- TensorBuilders.cpp - tensor-level building blocks ----------------===//

#include "moe/Utils/TensorBuilders.h"

#include "moe/Utils/SizeEquality.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"

using namespace mlir;

namespace mlir::moe::tensor_builders {

namespace {

RankedTensorType rankedType(Value v) { return cast<RankedTensorType>(v.getType()); }

bool isFloat(Type t) { return isa<FloatType>(t); }

/// f32 for floats (the accumulation type), the type itself otherwise.
Type accumulatorType(Type element) {
  return isFloat(element) ? Type(Float32Type::get(element.getContext())) : element;
}

Value zeroOf(OpBuilder &b, Location loc, Type t) {
  return arith::ConstantOp::create(b, loc, b.getZeroAttr(t));
}

/// A tensor of `type` filled with `value`.
Value filled(OpBuilder &b, Location loc, RankedTensorType type, ValueRange dynamicSizes, Value value) {
  Value init = empty(b, loc, type, dynamicSizes);
  return linalg::FillOp::create(b, loc, value, init).getResult(0);
}

/// The dynamic sizes of `shape`, dimension d read from `sourceOf(d)`.
SmallVector<Value> dynamicSizes(OpBuilder &b, Location loc, ArrayRef<int64_t> shape,
                                function_ref<Value(int64_t)> sizeOf) {
  SmallVector<Value> sizes;
  for (auto [d, size] : llvm::enumerate(shape))
    if (ShapedType::isDynamic(size))
      sizes.push_back(sizeOf(d));
  return sizes;
}

} // namespace

Value dimSize(OpBuilder &b, Location loc, Value x, int64_t dim) {
  int64_t size = rankedType(x).getDimSize(dim);
  if (!ShapedType::isDynamic(size))
    return arith::ConstantIndexOp::create(b, loc, size);
  return tensor::DimOp::create(b, loc, x, dim);
}

Value empty(OpBuilder &b, Location loc, RankedTensorType type, ValueRange dynamicSizes) {
  return tensor::EmptyOp::create(b, loc, type.getShape(), type.getElementType(), dynamicSizes);
}

Value emptyLike(OpBuilder &b, Location loc, Value like, Type element) {
  RankedTensorType type = rankedType(like);
  SmallVector<Value> dynamic;
  for (int64_t d = 0; d < type.getRank(); ++d)
    if (type.isDynamicDim(d))
      dynamic.push_back(dimSize(b, loc, like, d));
  return tensor::EmptyOp::create(b, loc, type.getShape(), element, dynamic);
}

FailureOr<SmallVector<int64_t>> broadcastShape(ArrayRef<ArrayRef<int64_t>> shapes) {
  size_t rank = 0;
  for (ArrayRef<int64_t> s : shapes)
    rank = std::max(rank, s.size());
  SmallVector<int64_t> out(rank, 1);
  for (ArrayRef<int64_t> s : shapes) {
    for (size_t j = 0; j < s.size(); ++j) {
      int64_t &o = out[rank - s.size() + j];
      int64_t v = s[j];
      if (v == 1)
        continue;
      if (o == 1 || (ShapedType::isDynamic(o) && !ShapedType::isDynamic(v)))
        o = v;
      else if (!ShapedType::isDynamic(v) && !ShapedType::isDynamic(o) && o != v)
        return failure();
    }
  }
  return out;
}

FailureOr<Value> elementwise(OpBuilder &b, Location loc, ValueRange inputs, Type resultElement, ScalarFn fn,
                             BroadcastCheck check) {
  SmallVector<ArrayRef<int64_t>> shapes;
  for (Value v : inputs)
    shapes.push_back(rankedType(v).getShape());
  FailureOr<SmallVector<int64_t>> shape = broadcastShape(shapes);
  if (failed(shape))
    return failure();
  int64_t rank = shape->size();
  MLIRContext *ctx = b.getContext();
  auto dimOf = [&](unsigned i, int64_t d) -> int64_t {
    return d - (rank - static_cast<int64_t>(shapes[i].size()));
  };
  // A dynamic result size is read from the first operand dynamic there
  // (the reference). A dim where some operand's dynamic size is not
  // provably the reference's (or is against a static result size) is
  // "unproven": any of its dynamic sizes may be 1 at run time (a
  // broadcast), or, in a malformed model, another size.
  SmallVector<std::optional<unsigned>> reference(rank);
  SmallVector<SmallVector<bool>> unproven(inputs.size(), SmallVector<bool>(rank, false));
  SmallVector<bool> dimUnproven(rank, false);
  for (int64_t d = 0; d < rank; ++d) {
    for (auto [i, v] : llvm::enumerate(inputs)) {
      int64_t j = dimOf(i, d);
      if (j < 0 || !ShapedType::isDynamic(shapes[i][j]))
        continue;
      if (ShapedType::isDynamic((*shape)[d]) && !reference[d]) {
        reference[d] = i;
        continue;
      }
      if (ShapedType::isDynamic((*shape)[d]) &&
          provablySameSize(v, j, inputs[*reference[d]], dimOf(*reference[d], d)))
        continue;
      dimUnproven[d] = true;
    }
    // There every dynamic size may be 1, the reference's too.
    for (auto [i, v] : llvm::enumerate(inputs)) {
      int64_t j = dimOf(i, d);
      unproven[i][d] = dimUnproven[d] && j >= 0 && ShapedType::isDynamic(shapes[i][j]);
    }
  }
  // An unproven dim's size is the broadcast of the operands' run-time
  // sizes (the first that is not 1). When an operand has neither 1 nor
  // that size and the result has elements, the result is empty there
  // (nothing is read) and `check` reports it; a result another dim makes
  // empty reads nothing either way (an empty batch, whose sizes a
  // Reshape's -1 could not infer).
  Value one = arith::ConstantIndexOp::create(b, loc, 1), zero = arith::ConstantIndexOp::create(b, loc, 0);
  SmallVector<Value> raw(rank);
  SmallVector<SmallVector<Value>> operandSizes(rank);
  for (int64_t d = 0; d < rank; ++d) {
    if (!ShapedType::isDynamic((*shape)[d]))
      raw[d] = arith::ConstantIndexOp::create(b, loc, (*shape)[d]);
    if (!dimUnproven[d]) {
      if (ShapedType::isDynamic((*shape)[d]))
        raw[d] = dimSize(b, loc, inputs[*reference[d]], dimOf(*reference[d], d));
      continue;
    }
    for (auto [i, v] : llvm::enumerate(inputs)) {
      int64_t j = dimOf(i, d);
      if (j >= 0 && shapes[i][j] != 1)
        operandSizes[d].push_back(dimSize(b, loc, v, j));
    }
    Value size = raw[d] ? raw[d] : operandSizes[d].front();
    for (Value s : operandSizes[d]) {
      Value isOne = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, size, one);
      size = arith::SelectOp::create(b, loc, isOne, s, size);
    }
    raw[d] = size;
  }
  SmallVector<Value> sizes;
  for (int64_t d = 0; d < rank; ++d) {
    Value size = raw[d];
    if (dimUnproven[d]) {
      Value otherEmpty = arith::ConstantIntOp::create(b, loc, b.getI1Type(), 0);
      for (int64_t e = 0; e < rank; ++e)
        if (e != d)
          otherEmpty = arith::OrIOp::create(b, loc, otherEmpty,
                                            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, raw[e], zero));
      Value allFit = arith::ConstantIntOp::create(b, loc, b.getI1Type(), 1);
      for (Value s : operandSizes[d]) {
        if (check)
          check(b, loc, d, s, arith::SelectOp::create(b, loc, otherEmpty, s, size));
        Value fits = arith::OrIOp::create(b, loc, arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, s, one),
                                          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, s, size));
        allFit = arith::AndIOp::create(b, loc, allFit, fits);
      }
      size = arith::SelectOp::create(b, loc, arith::OrIOp::create(b, loc, allFit, otherEmpty), size, zero);
    }
    if (dimUnproven[d] || ShapedType::isDynamic((*shape)[d]))
      sizes.push_back(size);
  }
  // Operands read through maps (every size proven), and the others read
  // in the body, each unproven index clamped to the operand's last row
  // (index 0 for a run-time size 1, the loop index for a matching size).
  SmallVector<Value> mapped;
  SmallVector<AffineMap> maps;
  SmallVector<SmallVector<Value>> lastIndex(inputs.size());
  for (auto [i, v] : llvm::enumerate(inputs)) {
    ArrayRef<int64_t> s = shapes[i];
    if (llvm::is_contained(unproven[i], true)) {
      for (size_t j = 0; j < s.size(); ++j) {
        int64_t d = rank - s.size() + j;
        lastIndex[i].push_back(unproven[i][d] ? arith::SubIOp::create(b, loc, dimSize(b, loc, v, j),
                                                                       arith::ConstantIndexOp::create(b, loc, 1))
                                                    .getResult()
                                              : Value());
      }
      continue;
    }
    SmallVector<AffineExpr> exprs;
    for (size_t j = 0; j < s.size(); ++j) {
      int64_t d = rank - s.size() + j;
      bool broadcast = s[j] == 1 && (*shape)[d] != 1;
      exprs.push_back(broadcast ? getAffineConstantExpr(0, ctx) : getAffineDimExpr(d, ctx));
    }
    mapped.push_back(v);
    maps.push_back(AffineMap::get(rank, 0, exprs, ctx));
  }
  maps.push_back(b.getMultiDimIdentityMap(rank));
  // A static size an operand may contradict is dynamic in the result: it
  // is 0 when the operand does not broadcast.
  SmallVector<int64_t> resultShape(*shape);
  for (int64_t d = 0; d < rank; ++d)
    if (dimUnproven[d])
      resultShape[d] = ShapedType::kDynamic;
  auto resultType = RankedTensorType::get(resultShape, resultElement);
  Value init = empty(b, loc, resultType, sizes);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{resultType}, mapped, ValueRange{init}, maps,
      SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        SmallVector<Value> scalars;
        unsigned next = 0;
        for (auto [i, v] : llvm::enumerate(inputs)) {
          if (lastIndex[i].empty()) {
            scalars.push_back(args[next++]);
            continue;
          }
          ArrayRef<int64_t> s = shapes[i];
          SmallVector<Value> indices;
          for (size_t j = 0; j < s.size(); ++j) {
            int64_t d = rank - s.size() + j;
            if (s[j] == 1 && (*shape)[d] != 1) {
              indices.push_back(arith::ConstantIndexOp::create(nb, nl, 0));
              continue;
            }
            Value index = linalg::IndexOp::create(nb, nl, d);
            if (lastIndex[i][j])
              index = arith::MinSIOp::create(nb, nl, index, lastIndex[i][j]);
            indices.push_back(index);
          }
          scalars.push_back(tensor::ExtractOp::create(nb, nl, v, indices));
        }
        linalg::YieldOp::create(nb, nl, ValueRange{fn(nb, nl, scalars)});
      });
  return generic.getResult(0);
}

/// `x` cut to its first `size` elements along `dim` (a view).
static Value prefix(OpBuilder &b, Location loc, Value x, int64_t dim, Value size) {
  RankedTensorType type = rankedType(x);
  SmallVector<OpFoldResult> offsets(type.getRank(), b.getIndexAttr(0)), sizes, strides(type.getRank(), b.getIndexAttr(1));
  SmallVector<int64_t> shape(type.getShape());
  for (int64_t d = 0; d < type.getRank(); ++d)
    sizes.push_back(d == dim ? OpFoldResult(size)
                             : type.isDynamicDim(d) ? OpFoldResult(dimSize(b, loc, x, d)) : b.getIndexAttr(shape[d]));
  shape[dim] = ShapedType::kDynamic;
  return tensor::ExtractSliceOp::create(b, loc, RankedTensorType::get(shape, type.getElementType()), x, offsets,
                                        sizes, strides);
}

FailureOr<Value> matmul(OpBuilder &b, Location loc, Value lhs, Value rhs, BroadcastCheck check) {
  RankedTensorType lt = rankedType(lhs), rt = rankedType(rhs);
  if (lt.getRank() < 2 || rt.getRank() < 2)
    return failure();
  ArrayRef<int64_t> lb = lt.getShape().drop_back(2), rb = rt.getShape().drop_back(2);
  FailureOr<SmallVector<int64_t>> batch = broadcastShape({lb, rb});
  int64_t k1 = lt.getShape().back(), k2 = rt.getShape()[rt.getRank() - 2];
  if (failed(batch) || (!ShapedType::isDynamic(k1) && !ShapedType::isDynamic(k2) && k1 != k2))
    return failure();
  // Contracted sizes not provably equal: both operands cut to the smaller
  // (never a read past either), the mismatch passed to `check`.
  int64_t lk = lt.getRank() - 1, rk = rt.getRank() - 2;
  if ((ShapedType::isDynamic(k1) || ShapedType::isDynamic(k2)) && !provablySameSize(lhs, lk, rhs, rk)) {
    Value a = dimSize(b, loc, lhs, lk), c = dimSize(b, loc, rhs, rk);
    if (check) {
      // An empty result reads nothing: any K passes (an empty batch, whose
      // sizes a Reshape's -1 could not infer).
      Value zero = arith::ConstantIndexOp::create(b, loc, 0);
      Value empty = arith::ConstantIntOp::create(b, loc, b.getI1Type(), 0);
      auto orZero = [&](Value x, int64_t d) {
        empty = arith::OrIOp::create(b, loc, empty,
                                     arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, dimSize(b, loc, x, d), zero));
      };
      for (int64_t d = 0; d < lt.getRank() - 1; ++d)
        orZero(lhs, d);
      for (int64_t d = 0; d < rt.getRank(); ++d)
        if (d != rk)
          orZero(rhs, d);
      check(b, loc, rk, c, arith::SelectOp::create(b, loc, empty, c, a));
    }
    Value k = arith::MinSIOp::create(b, loc, a, c);
    lhs = prefix(b, loc, lhs, lk, k);
    rhs = prefix(b, loc, rhs, rk, k);
    lt = rankedType(lhs);
    rt = rankedType(rhs);
    lb = lt.getShape().drop_back(2);
    rb = rt.getShape().drop_back(2);
  }
  int64_t nb = batch->size();
  // Loops: batch..., m, n, k.
  MLIRContext *ctx = b.getContext();
  auto operandMap = [&](ArrayRef<int64_t> batchShape, AffineExpr row, AffineExpr col) {
    SmallVector<AffineExpr> exprs;
    for (size_t j = 0; j < batchShape.size(); ++j) {
      int64_t d = nb - batchShape.size() + j;
      bool broadcast = batchShape[j] == 1 && (*batch)[d] != 1;
      exprs.push_back(broadcast ? getAffineConstantExpr(0, ctx) : getAffineDimExpr(d, ctx));
    }
    exprs.push_back(row);
    exprs.push_back(col);
    return AffineMap::get(nb + 3, 0, exprs, ctx);
  };
  AffineExpr m = getAffineDimExpr(nb, ctx), n = getAffineDimExpr(nb + 1, ctx), k = getAffineDimExpr(nb + 2, ctx);
  SmallVector<AffineExpr> outExprs;
  for (int64_t d = 0; d < nb; ++d)
    outExprs.push_back(getAffineDimExpr(d, ctx));
  outExprs.push_back(m);
  outExprs.push_back(n);
  SmallVector<AffineMap> maps = {operandMap(lb, m, k), operandMap(rb, k, n),
                                 AffineMap::get(nb + 3, 0, outExprs, ctx)};

  SmallVector<int64_t> shape(*batch);
  shape.push_back(lt.getShape()[lt.getRank() - 2]);
  shape.push_back(rt.getShape().back());
  Type element = lt.getElementType();
  SmallVector<Value> sizes = dynamicSizes(b, loc, shape, [&](int64_t d) -> Value {
    if (d == nb)
      return dimSize(b, loc, lhs, lt.getRank() - 2);
    if (d == nb + 1)
      return dimSize(b, loc, rhs, rt.getRank() - 1);
    int64_t lj = d - (nb - static_cast<int64_t>(lb.size()));
    if (lj >= 0 && ShapedType::isDynamic(lb[lj]))
      return tensor::DimOp::create(b, loc, lhs, lj);
    return tensor::DimOp::create(b, loc, rhs, d - (nb - static_cast<int64_t>(rb.size())));
  });
  SmallVector<utils::IteratorType> iters(nb + 2, utils::IteratorType::parallel);
  iters.push_back(utils::IteratorType::reduction);
  return sumOfProducts(b, loc, {lhs, rhs}, maps, RankedTensorType::get(shape, element), sizes, iters);
}

Value sumOfProducts(OpBuilder &b, Location loc, ValueRange inputs, ArrayRef<AffineMap> maps,
                    RankedTensorType resultType, ValueRange dynamicSizes,
                    ArrayRef<utils::IteratorType> iterators) {
  Type element = resultType.getElementType();
  Type acc = accumulatorType(element);
  auto accType = RankedTensorType::get(resultType.getShape(), acc);
  // Without a reduction the product is written, not added to the init:
  // upstream's elementwise fusion mis-fuses a parallel generic that reads its
  // init into a consumer with more loops (it re-adds it on every iteration).
  bool reduces = llvm::is_contained(iterators, utils::IteratorType::reduction);
  Value init = reduces ? filled(b, loc, accType, dynamicSizes, zeroOf(b, loc, acc))
                       : empty(b, loc, accType, dynamicSizes);
  Value product = linalg::GenericOp::create(
                      b, loc, TypeRange{accType}, inputs, ValueRange{init}, maps, iterators,
                      [&](OpBuilder &nb, Location nl, ValueRange args) {
                        Value term = castScalar(nb, nl, args[0], acc);
                        for (Value factor : args.drop_front().drop_back()) {
                          Value f = castScalar(nb, nl, factor, acc);
                          term = isFloat(acc) ? arith::MulFOp::create(nb, nl, term, f).getResult()
                                              : arith::MulIOp::create(nb, nl, term, f).getResult();
                        }
                        if (!reduces) {
                          linalg::YieldOp::create(nb, nl, ValueRange{term});
                          return;
                        }
                        Value sum = isFloat(acc) ? arith::AddFOp::create(nb, nl, args.back(), term).getResult()
                                                 : arith::AddIOp::create(nb, nl, args.back(), term).getResult();
                        linalg::YieldOp::create(nb, nl, ValueRange{sum});
                      })
                      .getResult(0);
  return acc == element ? product : castTensor(b, loc, product, element);
}

Value reduceAxis(OpBuilder &b, Location loc, Value x, int64_t axis, Reduction kind) {
  RankedTensorType type = rankedType(x);
  int64_t rank = type.getRank();
  Type element = type.getElementType();
  Type acc = accumulatorType(element);
  SmallVector<int64_t> shape(type.getShape());
  shape[axis] = 1;
  auto accType = RankedTensorType::get(shape, acc);
  SmallVector<Value> sizes = dynamicSizes(b, loc, shape, [&](int64_t d) { return dimSize(b, loc, x, d); });
  Value start;
  bool max = kind == Reduction::Max;
  if (max || kind == Reduction::Min) {
    double inf = std::numeric_limits<double>::infinity();
    unsigned width = acc.getIntOrFloatBitWidth();
    start = isFloat(acc) ? arith::ConstantOp::create(b, loc, b.getFloatAttr(acc, max ? -inf : inf)).getResult()
                         : arith::ConstantOp::create(b, loc,
                                                     b.getIntegerAttr(acc, max ? APInt::getSignedMinValue(width)
                                                                               : APInt::getSignedMaxValue(width)))
                               .getResult();
  } else if (kind == Reduction::Prod) {
    start = isFloat(acc) ? arith::ConstantOp::create(b, loc, b.getFloatAttr(acc, 1.0)).getResult()
                         : arith::ConstantOp::create(b, loc, b.getIntegerAttr(acc, 1)).getResult();
  } else {
    start = zeroOf(b, loc, acc);
  }
  Value init = filled(b, loc, accType, sizes, start);
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineExpr> outExprs;
  SmallVector<utils::IteratorType> iters;
  for (int64_t d = 0; d < rank; ++d) {
    outExprs.push_back(d == axis ? getAffineConstantExpr(0, ctx) : getAffineDimExpr(d, ctx));
    iters.push_back(d == axis ? utils::IteratorType::reduction : utils::IteratorType::parallel);
  }
  Value reduced =
      linalg::GenericOp::create(
          b, loc, TypeRange{accType}, ValueRange{x}, ValueRange{init},
          ArrayRef<AffineMap>{b.getMultiDimIdentityMap(rank), AffineMap::get(rank, 0, outExprs, ctx)}, iters,
          [&](OpBuilder &nb, Location nl, ValueRange args) {
            Value v = castScalar(nb, nl, args[0], acc);
            Value r;
            if (kind == Reduction::Max)
              r = isFloat(acc) ? arith::MaximumFOp::create(nb, nl, args[1], v).getResult()
                               : arith::MaxSIOp::create(nb, nl, args[1], v).getResult();
            else if (kind == Reduction::Min)
              r = isFloat(acc) ? arith::MinimumFOp::create(nb, nl, args[1], v).getResult()
                               : arith::MinSIOp::create(nb, nl, args[1], v).getResult();
            else if (kind == Reduction::Prod)
              r = isFloat(acc) ? arith::MulFOp::create(nb, nl, args[1], v).getResult()
                               : arith::MulIOp::create(nb, nl, args[1], v).getResult();
            else
              r = isFloat(acc) ? arith::AddFOp::create(nb, nl, args[1], v).getResult()
                               : arith::AddIOp::create(nb, nl, args[1], v).getResult();
            linalg::YieldOp::create(nb, nl, ValueRange{r});
          })
          .getResult(0);
  if (kind == Reduction::Mean) {
    Value count = arith::IndexCastOp::create(b, loc, b.getI64Type(), dimSize(b, loc, x, axis));
    reduced = *elementwise(b, loc, ValueRange{reduced}, acc, [&](OpBuilder &nb, Location nl, ValueRange a) {
      Value n = castScalar(nb, nl, count, acc);
      return isFloat(acc) ? arith::DivFOp::create(nb, nl, a[0], n).getResult()
                          : arith::DivSIOp::create(nb, nl, a[0], n).getResult();
    });
  }
  return acc == element ? reduced : castTensor(b, loc, reduced, element);
}

Value castScalar(OpBuilder &b, Location loc, Value v, Type to) {
  Type from = v.getType();
  if (from == to)
    return v;
  auto fromFloat = dyn_cast<FloatType>(from), toFloat = dyn_cast<FloatType>(to);
  if (fromFloat && toFloat) {
    if (fromFloat.getWidth() < toFloat.getWidth())
      return arith::ExtFOp::create(b, loc, to, v);
    if (fromFloat.getWidth() > toFloat.getWidth())
      return arith::TruncFOp::create(b, loc, to, v);
    // bf16 <-> f16: through f32.
    return arith::TruncFOp::create(b, loc, to, arith::ExtFOp::create(b, loc, b.getF32Type(), v));
  }
  // Integers and 16-bit floats convert through f32: the CPU tail expands
  // f32 <-> bf16 as integer code, while LLVM would call compiler-rt helpers
  // (__truncsfbf2, ...) for direct int <-> bf16 conversions.
  if (toFloat && toFloat.getWidth() < 32)
    return castScalar(b, loc, castScalar(b, loc, v, b.getF32Type()), to);
  if (fromFloat && fromFloat.getWidth() < 32 && !toFloat)
    return castScalar(b, loc, castScalar(b, loc, v, b.getF32Type()), to);
  if (toFloat)
    return from.isInteger(1) ? arith::UIToFPOp::create(b, loc, to, v).getResult()
                             : arith::SIToFPOp::create(b, loc, to, v).getResult();
  if (fromFloat) {
    if (to.isInteger(1))
      return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, v, zeroOf(b, loc, from));
    return arith::FPToSIOp::create(b, loc, to, v);
  }
  unsigned fw = from.getIntOrFloatBitWidth(), tw = to.getIntOrFloatBitWidth();
  if (to.isInteger(1))
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, v, zeroOf(b, loc, from));
  if (fw < tw)
    return from.isInteger(1) ? arith::ExtUIOp::create(b, loc, to, v).getResult()
                             : arith::ExtSIOp::create(b, loc, to, v).getResult();
  if (fw > tw)
    return arith::TruncIOp::create(b, loc, to, v);
  return arith::BitcastOp::create(b, loc, to, v);
}

Value castTensor(OpBuilder &b, Location loc, Value x, Type element) {
  if (rankedType(x).getElementType() == element)
    return x;
  return *elementwise(b, loc, ValueRange{x}, element, [&](OpBuilder &nb, Location nl, ValueRange a) {
    return castScalar(nb, nl, a[0], element);
  });
}

Value transpose(OpBuilder &b, Location loc, Value x, ArrayRef<int64_t> perm) {
  RankedTensorType type = rankedType(x);
  SmallVector<int64_t> shape;
  for (int64_t p : perm)
    shape.push_back(type.getDimSize(p));
  auto resultType = RankedTensorType::get(shape, type.getElementType());
  SmallVector<Value> sizes = dynamicSizes(b, loc, shape, [&](int64_t d) { return dimSize(b, loc, x, perm[d]); });
  Value init = empty(b, loc, resultType, sizes);
  return linalg::TransposeOp::create(b, loc, x, init, perm).getResult()[0];
}

/// `x` collapsed to 1-D, then expanded to `shape` whose sizes are `sizes`:
/// reassociations every pipeline bufferizes and lowers (tensor.reshape with
/// a dynamic shape operand does not reach LLVM on the CPU).
static Value reshapeThroughFlat(OpBuilder &b, Location loc, Value x, ArrayRef<int64_t> shape,
                                ArrayRef<OpFoldResult> sizes) {
  RankedTensorType type = rankedType(x);
  if (type.getShape() == shape)
    return x;
  Value flat = x;
  auto flatType = RankedTensorType::get({type.getRank() == 0 ? 1 : ShapedType::kDynamic}, type.getElementType());
  if (type.getRank() == 0) // a scalar: [1]
    flat = tensor::ExpandShapeOp::create(b, loc, flatType, x, ArrayRef<ReassociationIndices>{},
                                         ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
  else if (type.getRank() != 1) {
    ReassociationIndices all = llvm::to_vector(llvm::seq<int64_t>(0, type.getRank()));
    flat = tensor::CollapseShapeOp::create(b, loc, x, ArrayRef<ReassociationIndices>{all});
  }
  if (shape.empty()) // to a scalar
    return tensor::CollapseShapeOp::create(b, loc, RankedTensorType::get({}, type.getElementType()), flat,
                                           ArrayRef<ReassociationIndices>{});
  if (shape.size() == 1)
    return cast<RankedTensorType>(flat.getType()).getShape() == shape
               ? flat
               : tensor::CastOp::create(b, loc, RankedTensorType::get(shape, type.getElementType()), flat).getResult();
  auto resultType = RankedTensorType::get(shape, type.getElementType());
  if (llvm::count_if(shape, ShapedType::isDynamic) <= 1) {
    // expand_shape wants the flat size static exactly when every target
    // size is: a static input to a dynamic target (or the reverse) goes
    // through a cast.
    int64_t total = 1;
    for (int64_t s : shape)
      total = ShapedType::isDynamic(s) || ShapedType::isDynamic(total) ? ShapedType::kDynamic : total * s;
    if (cast<RankedTensorType>(flat.getType()).getDimSize(0) != total)
      flat = tensor::CastOp::create(b, loc, RankedTensorType::get({total}, type.getElementType()), flat);
    ReassociationIndices all = llvm::to_vector(llvm::seq<int64_t>(0, shape.size()));
    return tensor::ExpandShapeOp::create(b, loc, resultType, flat, ArrayRef<ReassociationIndices>{all}, sizes);
  }
  // Several dynamic sizes in one expanded group crash upstream's
  // expand-strided-metadata (LLVM 22): gather from the flat tensor instead.
  SmallVector<Value> sizeValues, dynamic;
  for (auto [d, size] : llvm::enumerate(sizes)) {
    sizeValues.push_back(getValueOrCreateConstantIndexOp(b, loc, size));
    if (ShapedType::isDynamic(shape[d]))
      dynamic.push_back(sizeValues.back());
  }
  Value init = empty(b, loc, resultType, dynamic);
  return linalg::GenericOp::create(
             b, loc, TypeRange{resultType}, ValueRange{}, ValueRange{init},
             ArrayRef<AffineMap>{b.getMultiDimIdentityMap(shape.size())},
             SmallVector<utils::IteratorType>(shape.size(), utils::IteratorType::parallel),
             [&](OpBuilder &nb, Location nl, ValueRange) {
               Value linear = arith::ConstantIndexOp::create(nb, nl, 0);
               for (size_t d = 0; d < shape.size(); ++d)
                 linear = arith::AddIOp::create(nb, nl, arith::MulIOp::create(nb, nl, linear, sizeValues[d]),
                                                linalg::IndexOp::create(nb, nl, d));
               linalg::YieldOp::create(nb, nl, ValueRange{tensor::ExtractOp::create(nb, nl, flat, linear)});
             })
      .getResult(0);
}

Value reshape(OpBuilder &b, Location loc, Value x, ArrayRef<int64_t> shape) {
  RankedTensorType type = rankedType(x);
  assert(llvm::count_if(shape, ShapedType::isDynamic) <= 1 &&
         "reshape infers one dynamic size; use reshapeToSizes for more");
  int64_t known = 1;
  for (int64_t s : shape)
    if (!ShapedType::isDynamic(s))
      known *= s;
  Value total = arith::ConstantIndexOp::create(b, loc, 1);
  for (int64_t d = 0; d < type.getRank(); ++d)
    total = arith::MulIOp::create(b, loc, total, dimSize(b, loc, x, d));
  // With a known size of 0 the inferred one is 0 too (the tensor is empty),
  // never a division by 0.
  SmallVector<OpFoldResult> sizes;
  for (int64_t s : shape)
    sizes.push_back(!ShapedType::isDynamic(s) ? OpFoldResult(b.getIndexAttr(s))
                    : known == 0              ? OpFoldResult(b.getIndexAttr(0))
                                              : OpFoldResult(arith::DivUIOp::create(
                                                                 b, loc, total, arith::ConstantIndexOp::create(b, loc, known))
                                                                 .getResult()));
  return reshapeThroughFlat(b, loc, x, shape, sizes);
}

Value reshapeToSizes(OpBuilder &b, Location loc, Value x, ArrayRef<OpFoldResult> sizes) {
  SmallVector<int64_t> shape;
  for (OpFoldResult size : sizes)
    shape.push_back(getConstantIntValue(size).value_or(ShapedType::kDynamic));
  return reshapeThroughFlat(b, loc, x, shape, sizes);
}

SmallVector<OpFoldResult> sizesOf(OpBuilder &b, Location loc, Value x) {
  RankedTensorType type = rankedType(x);
  SmallVector<OpFoldResult> sizes;
  for (int64_t d = 0; d < type.getRank(); ++d)
    sizes.push_back(type.isDynamicDim(d) ? OpFoldResult(dimSize(b, loc, x, d))
                                         : OpFoldResult(b.getIndexAttr(type.getDimSize(d))));
  return sizes;
}

Value reshapeLike(OpBuilder &b, Location loc, Value x, Value like) {
  return reshapeThroughFlat(b, loc, x, rankedType(like).getShape(), sizesOf(b, loc, like));
}

} // namespace mlir::moe::tensor_builders
