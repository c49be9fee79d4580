//===- LoweringUtils.cpp - helpers shared by the moe CPU lowerings --------===//

#include "LoweringUtils.h"
#include "dialects/moe/MoeDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AffineMap.h"
#include <limits>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::lowering;

Value lowering::indexToI32(OpBuilder &b, Location loc, Value index) {
  return arith::IndexCastOp::create(b, loc, b.getI32Type(), index);
}

Value lowering::i32ToIndex(OpBuilder &b, Location loc, Value i32) {
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), i32);
}

Value lowering::nanToNegInf(OpBuilder &b, Location loc, Value x) {
  Value isNan = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO, x, x);
  return arith::SelectOp::create(b, loc, isNan,
                                 constF32(b, loc, -std::numeric_limits<double>::infinity()), x);
}

Value lowering::ranksBefore(OpBuilder &b, Location loc, Value av, Value ai, Value bv, Value bi) {
  Value aNan = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO, av, av);
  Value bNan = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO, bv, bv);
  Value aNumber = arith::XOrIOp::create(b, loc, aNan,
                                        arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
  Value greater = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, av, bv);
  Value equal = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, av, bv);
  Value bothNan = arith::AndIOp::create(b, loc, aNan, bNan);
  Value tie = arith::OrIOp::create(b, loc, equal, bothNan);
  Value lowerIndex = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, ai, bi);
  Value numberBeforeNan = arith::AndIOp::create(b, loc, aNumber, bNan);
  Value tieBreak = arith::AndIOp::create(b, loc, tie, lowerIndex);
  return arith::OrIOp::create(b, loc,
                              arith::OrIOp::create(b, loc, numberBeforeNan, greater), tieBreak);
}

SmallVector<Value> lowering::dimsOf(OpBuilder &b, Location loc, Value tensor) {
  auto type = cast<RankedTensorType>(tensor.getType());
  SmallVector<Value> dims;
  for (int64_t d = 0; d < type.getRank(); ++d)
    dims.push_back(type.isDynamicDim(d) ? tensor::DimOp::create(b, loc, tensor, d).getResult()
                                        : constIndex(b, loc, type.getDimSize(d)));
  return dims;
}

Value lowering::filled(OpBuilder &b, Location loc, RankedTensorType type, ValueRange dims,
                       Value scalar) {
  SmallVector<Value> dynamic;
  for (int64_t d = 0; d < type.getRank(); ++d)
    if (type.isDynamicDim(d))
      dynamic.push_back(dims[d]);
  Value empty = tensor::EmptyOp::create(b, loc, type, dynamic);
  return linalg::FillOp::create(b, loc, scalar, empty).getResult(0);
}

Value lowering::zeros(OpBuilder &b, Location loc, RankedTensorType type, ValueRange dims) {
  Type element = type.getElementType();
  Value zero = arith::ConstantOp::create(b, loc, b.getZeroAttr(element));
  return filled(b, loc, type, dims, zero);
}

/// A linalg.generic over all dimensions of `out` that are parallel, reading
/// `inputs` with identity maps.
static Value elementwise(OpBuilder &b, Location loc, ValueRange inputs, Value out,
                         function_ref<Value(OpBuilder &, Location, ValueRange)> body) {
  auto type = cast<RankedTensorType>(out.getType());
  AffineMap id = b.getMultiDimIdentityMap(type.getRank());
  SmallVector<AffineMap> maps(inputs.size() + 1, id);
  SmallVector<utils::IteratorType> iters(type.getRank(), utils::IteratorType::parallel);
  auto op = linalg::GenericOp::create(
      b, loc, TypeRange{type}, inputs, ValueRange{out}, maps, iters,
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(nb, nl, body(nb, nl, args.drop_back()));
      });
  return op.getResult(0);
}

Value lowering::castElements(OpBuilder &b, Location loc, Value tensor, Type elementType) {
  auto type = cast<RankedTensorType>(tensor.getType());
  if (type.getElementType() == elementType)
    return tensor;
  auto outType = RankedTensorType::get(type.getShape(), elementType);
  SmallVector<Value> dims = dimsOf(b, loc, tensor);
  Value init = zeros(b, loc, outType, dims);
  return elementwise(b, loc, tensor, init, [&](OpBuilder &nb, Location nl, ValueRange a) {
    if (a[0].getType().getIntOrFloatBitWidth() > elementType.getIntOrFloatBitWidth())
      return arith::TruncFOp::create(nb, nl, elementType, a[0]).getResult();
    return arith::ExtFOp::create(nb, nl, elementType, a[0]).getResult();
  });
}

Value lowering::castToType(OpBuilder &b, Location loc, Value value, Type type) {
  auto target = cast<RankedTensorType>(type);
  value = castElements(b, loc, value, target.getElementType());
  if (value.getType() != type)
    value = tensor::CastOp::create(b, loc, type, value);
  return value;
}

Value lowering::reduceOverSlots(OpBuilder &b, Location loc, ArrayRef<int64_t> shape,
                                ValueRange dims, Value a, Value bTensor,
                                function_ref<Value(OpBuilder &, Location, Value, Value, Value)> term) {
  MLIRContext *ctx = b.getContext();
  auto accType = RankedTensorType::get(shape, b.getF32Type());
  Value init = zeros(b, loc, accType, dims);
  AffineExpr t, h, k;
  bindDims(ctx, t, h, k);
  auto slotMap = AffineMap::get(3, 0, {t, k}, ctx);
  SmallVector<Value> inputs = {a};
  SmallVector<AffineMap> maps = {slotMap};
  if (bTensor) {
    inputs.push_back(bTensor);
    maps.push_back(slotMap);
  }
  maps.push_back(AffineMap::get(3, 0, {t, h}, ctx));
  return linalg::GenericOp::create(
             b, loc, TypeRange{accType}, inputs, ValueRange{init}, maps,
             ArrayRef<utils::IteratorType>{utils::IteratorType::parallel,
                                           utils::IteratorType::parallel,
                                           utils::IteratorType::reduction},
             [&](OpBuilder &nb, Location nl, ValueRange args) {
               Value bValue = bTensor ? args[1] : Value();
               linalg::YieldOp::create(nb, nl, ValueRange{term(nb, nl, args[0], bValue, args.back())});
             })
      .getResult(0);
}

Value lowering::combineSlots(OpBuilder &b, Location loc, Value rows, Value slotRow,
                             Value slotWeight, ArrayRef<int64_t> shape) {
  SmallVector<Value> dims = {dimsOf(b, loc, slotRow)[0], dimsOf(b, loc, rows)[1]};
  Value numRows = indexToI32(b, loc, dimsOf(b, loc, rows)[0]);
  return reduceOverSlots(
      b, loc, shape, dims, slotRow, slotWeight,
      [&](OpBuilder &nb, Location nl, Value row, Value weight, Value sum) -> Value {
        // A row outside [0, R) is an empty slot, never read.
        Value valid = arith::AndIOp::create(
            nb, nl, arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, row, constI32(nb, nl, 0)),
            arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, row, numRows));
        Value safe = arith::SelectOp::create(nb, nl, valid, i32ToIndex(nb, nl, row),
                                             constIndex(nb, nl, 0));
        Value v = toF32(nb, nl, tensor::ExtractOp::create(
                                    nb, nl, rows, ValueRange{safe, linalg::IndexOp::create(nb, nl, 1)}));
        Value term = weight ? arith::MulFOp::create(nb, nl, weight, v).getResult() : v;
        Value next = arith::AddFOp::create(nb, nl, sum, term);
        return arith::SelectOp::create(nb, nl, valid, next, sum);
      });
}

Value lowering::slotWeightsByRow(OpBuilder &b, Location loc, Value slotRow, Value slotWeight,
                                 Value rows, int64_t staticRows) {
  // Rows no slot fills are never read: no zero fill (one kernel less).
  auto type = RankedTensorType::get({staticRows}, b.getF32Type());
  Value init = tensor::EmptyOp::create(b, loc, type, ShapedType::isDynamic(staticRows) ? ValueRange{rows}
                                                                                       : ValueRange{})
                   .getResult();
  SmallVector<Value> slotDims = dimsOf(b, loc, slotRow);
  Value zero = constIndex(b, loc, 0), one = constIndex(b, loc, 1);
  auto tokens = scf::ForOp::create(
      b, loc, zero, slotDims[0], one, ValueRange{init},
      [&](OpBuilder &tb, Location tl, Value t, ValueRange state) {
        auto slots = scf::ForOp::create(
            tb, tl, zero, slotDims[1], one, state, [&](OpBuilder &sb, Location sl, Value k, ValueRange inner) {
              Value row = tensor::ExtractOp::create(sb, sl, slotRow, ValueRange{t, k});
              Value filled = arith::CmpIOp::create(sb, sl, arith::CmpIPredicate::sge, row, constI32(sb, sl, 0));
              auto write = scf::IfOp::create(
                  sb, sl, filled,
                  [&](OpBuilder &ib, Location il) {
                    Value w = tensor::ExtractOp::create(ib, il, slotWeight, ValueRange{t, k});
                    Value updated = tensor::InsertOp::create(ib, il, w, inner[0], ValueRange{i32ToIndex(ib, il, row)});
                    scf::YieldOp::create(ib, il, updated);
                  },
                  [&](OpBuilder &ib, Location il) { scf::YieldOp::create(ib, il, inner[0]); });
              scf::YieldOp::create(sb, sl, write.getResults());
            });
        scf::YieldOp::create(tb, tl, slots.getResults());
      });
  markParallel(tokens); // token t writes the rows of its own slots
  return tokens.getResult(0);
}

void lowering::markParallel(Operation *loop) {
  loop->setAttr(kParallelLoopAttrName, UnitAttr::get(loop->getContext()));
}

/// out[m, n] = Σ_k a[m, k] · w[n, k] as one generic: m and n parallel.
static Value linearParallel(OpBuilder &b, Location loc, Value a, Value w) {
  auto aType = cast<RankedTensorType>(a.getType());
  auto wType = cast<RankedTensorType>(w.getType());
  auto outType = RankedTensorType::get({aType.getDimSize(0), wType.getDimSize(0)}, b.getF32Type());
  Value init = zeros(b, loc, outType, {dimsOf(b, loc, a)[0], dimsOf(b, loc, w)[0]});
  MLIRContext *ctx = b.getContext();
  AffineExpr m, n, k;
  bindDims(ctx, m, n, k);
  return linalg::GenericOp::create(
             b, loc, TypeRange{outType}, ValueRange{a, w}, ValueRange{init},
             ArrayRef<AffineMap>{AffineMap::get(3, 0, {m, k}, ctx), AffineMap::get(3, 0, {n, k}, ctx),
                                 AffineMap::get(3, 0, {m, n}, ctx)},
             {utils::IteratorType::parallel, utils::IteratorType::parallel,
              utils::IteratorType::reduction},
             [&](OpBuilder &nb, Location nl, ValueRange args) {
               Value prod = arith::MulFOp::create(nb, nl, toF32(nb, nl, args[0]), toF32(nb, nl, args[1]));
               linalg::YieldOp::create(nb, nl, ValueRange{arith::AddFOp::create(nb, nl, args[2], prod)});
             })
      .getResult(0);
}

Value lowering::linearF32(OpBuilder &b, Location loc, Value a, Value w, ContractionForm form) {
  if (form == ContractionForm::Parallel)
    return linearParallel(b, loc, a, w);
  return tiledLinearF32(b, loc, a, WeightSource{w, nullptr, nullptr}, form);
}

Value lowering::mapF32(OpBuilder &b, Location loc, Value input,
                       function_ref<Value(OpBuilder &, Location, Value)> fn) {
  auto type = cast<RankedTensorType>(input.getType());
  auto outType = RankedTensorType::get(type.getShape(), b.getF32Type());
  Value init = zeros(b, loc, outType, dimsOf(b, loc, input));
  return elementwise(b, loc, input, init, [&](OpBuilder &nb, Location nl, ValueRange a) {
    return fn(nb, nl, toF32(nb, nl, a[0]));
  });
}

Value lowering::softmaxEntry(OpBuilder &b, Location loc, Value v, Value mx, Value expSum,
                             Value infCount, Value size) {
  double inf = std::numeric_limits<double>::infinity();
  auto equals = [&](Value x, double c) {
    return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, x, constF32(b, loc, c));
  };
  Value one = constF32(b, loc, 1.0);
  // Finite maximum: the usual softmax.
  Value normal = arith::DivFOp::create(
      b, loc, math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, v, mx)), expSum);
  // A +inf maximum: the +inf entries share the mass.
  Value infShare = arith::SelectOp::create(b, loc, equals(v, inf),
                                           arith::DivFOp::create(b, loc, one, infCount),
                                           constF32(b, loc, 0.0));
  // All -inf: uniform.
  Value uniform = arith::DivFOp::create(b, loc, one, size);
  Value r = arith::SelectOp::create(b, loc, equals(mx, -inf), uniform, normal);
  return arith::SelectOp::create(b, loc, equals(mx, inf), infShare, r);
}

Value lowering::rowSoftmax(OpBuilder &b, Location loc, Value logits) {
  MLIRContext *ctx = b.getContext();
  auto type = cast<RankedTensorType>(logits.getType());
  SmallVector<Value> dims = dimsOf(b, loc, logits);
  auto rowType = RankedTensorType::get({type.getDimSize(0)}, b.getF32Type());
  AffineExpr t, e;
  bindDims(ctx, t, e);
  auto full = AffineMap::get(2, 0, {t, e}, ctx);
  auto row = AffineMap::get(2, 0, {t}, ctx);
  SmallVector<utils::IteratorType> reduce = {utils::IteratorType::parallel,
                                             utils::IteratorType::reduction};
  double inf = std::numeric_limits<double>::infinity();

  // Row maximum with NaN read as -inf, and the count of +inf entries.
  Value maxInit = filled(b, loc, rowType, {dims[0]}, constF32(b, loc, -inf));
  Value rowMax =
      linalg::GenericOp::create(
          b, loc, TypeRange{rowType}, ValueRange{logits}, ValueRange{maxInit},
          ArrayRef<AffineMap>{full, row}, reduce,
          [&](OpBuilder &nb, Location nl, ValueRange a) {
            Value v = nanToNegInf(nb, nl, a[0]);
            linalg::YieldOp::create(nb, nl, ValueRange{arith::MaximumFOp::create(nb, nl, v, a[1])});
          })
          .getResult(0);
  Value countInit = zeros(b, loc, rowType, {dims[0]});
  Value infCount =
      linalg::GenericOp::create(
          b, loc, TypeRange{rowType}, ValueRange{logits}, ValueRange{countInit},
          ArrayRef<AffineMap>{full, row}, reduce,
          [&](OpBuilder &nb, Location nl, ValueRange a) {
            Value isInf = arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OEQ, a[0],
                                                constF32(nb, nl, inf));
            Value one = arith::SelectOp::create(nb, nl, isInf, constF32(nb, nl, 1.0),
                                                constF32(nb, nl, 0.0));
            linalg::YieldOp::create(nb, nl, ValueRange{arith::AddFOp::create(nb, nl, a[1], one)});
          })
          .getResult(0);
  // Σ exp(z - max) over the row (only used when the max is finite).
  Value sumInit = zeros(b, loc, rowType, {dims[0]});
  Value expSum =
      linalg::GenericOp::create(
          b, loc, TypeRange{rowType}, ValueRange{logits, rowMax}, ValueRange{sumInit},
          ArrayRef<AffineMap>{full, row, row}, reduce,
          [&](OpBuilder &nb, Location nl, ValueRange a) {
            Value v = nanToNegInf(nb, nl, a[0]);
            Value ex = math::ExpOp::create(nb, nl, arith::SubFOp::create(nb, nl, v, a[1]));
            linalg::YieldOp::create(nb, nl, ValueRange{arith::AddFOp::create(nb, nl, a[2], ex)});
          })
          .getResult(0);
  auto outType = RankedTensorType::get(type.getShape(), b.getF32Type());
  Value out = zeros(b, loc, outType, dims);
  Value width = arith::SIToFPOp::create(
      b, loc, b.getF32Type(), arith::IndexCastOp::create(b, loc, b.getI64Type(), dims[1]));
  return linalg::GenericOp::create(
             b, loc, TypeRange{outType}, ValueRange{logits, rowMax, infCount, expSum},
             ValueRange{out}, ArrayRef<AffineMap>{full, row, row, row, full},
             SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel),
             [&](OpBuilder &nb, Location nl, ValueRange a) {
               Value r = softmaxEntry(nb, nl, nanToNegInf(nb, nl, a[0]), a[1], a[3], a[2], width);
               linalg::YieldOp::create(nb, nl, ValueRange{r});
             })
      .getResult(0);
}

Value lowering::applyActivation(OpBuilder &b, Location loc, StringRef name, Value x) {
  if (name == "relu")
    return arith::MaximumFOp::create(b, loc, x, constF32(b, loc, 0.0));
  if (name == "relu2") {
    Value r = arith::MaximumFOp::create(b, loc, x, constF32(b, loc, 0.0));
    return arith::MulFOp::create(b, loc, r, r);
  }
  if (name == "linear")
    return x;
  if (name == "silu" || name == "swiglu")
    return scalar::silu(b, loc, x);
  if (name == "gelu_tanh" || name == "geglu_tanh")
    return scalar::geluTanh(b, loc, x);
  // gelu / geglu: the exact (erf) form.
  return scalar::geluErf(b, loc, x);
}

SmallVector<Value> lowering::topKScan(
    OpBuilder &b, Location loc, Value k, Value numCandidates,
    function_ref<Value(OpBuilder &, Location, Value)> valueOf,
    function_ref<Value(OpBuilder &, Location, Value)> eligible, ValueRange state,
    function_ref<SmallVector<Value>(OpBuilder &, Location, Value, Value, Value, Value, ValueRange)>
        write) {
  Value zero = constIndex(b, loc, 0), one = constIndex(b, loc, 1);
  Value none = constIndex(b, loc, -1);
  SmallVector<Value> init = {constF32(b, loc, 0.0), none};
  llvm::append_range(init, state);
  auto picks = scf::ForOp::create(
      b, loc, zero, k, one, init,
      [&](OpBuilder &b1, Location l1, Value j, ValueRange iter) {
        Value prevValue = iter[0], prevIndex = iter[1];
        // Pick j follows pick j-1; once a pick finds nothing, none follows.
        Value isFirst = arith::CmpIOp::create(b1, l1, arith::CmpIPredicate::eq, j, zero);
        Value prevFound = arith::CmpIOp::create(b1, l1, arith::CmpIPredicate::sge, prevIndex, zero);
        // The first-ranked eligible candidate after the previous pick.
        auto scan = scf::ForOp::create(
            b1, l1, zero, numCandidates, one,
            ValueRange{constF32(b1, l1, 0.0), constIndex(b1, l1, -1)},
            [&](OpBuilder &b2, Location l2, Value c, ValueRange best) {
              Value v = valueOf(b2, l2, c);
              Value afterPrev = arith::OrIOp::create(
                  b2, l2, isFirst,
                  arith::AndIOp::create(b2, l2, prevFound,
                                        ranksBefore(b2, l2, prevValue, prevIndex, v, c)));
              Value noBest = arith::CmpIOp::create(b2, l2, arith::CmpIPredicate::slt, best[1],
                                                   constIndex(b2, l2, 0));
              Value better = arith::OrIOp::create(
                  b2, l2, noBest, ranksBefore(b2, l2, v, c, best[0], best[1]));
              Value take = arith::AndIOp::create(
                  b2, l2, arith::AndIOp::create(b2, l2, eligible(b2, l2, c), afterPrev), better);
              Value nv = arith::SelectOp::create(b2, l2, take, v, best[0]);
              Value ni = arith::SelectOp::create(b2, l2, take, c, best[1]);
              scf::YieldOp::create(b2, l2, ValueRange{nv, ni});
            });
        Value bestValue = scan.getResult(0), bestIndex = scan.getResult(1);
        Value found = arith::CmpIOp::create(b1, l1, arith::CmpIPredicate::sge, bestIndex,
                                            constIndex(b1, l1, 0));
        SmallVector<Value> next = write(b1, l1, j, found, bestIndex, bestValue, iter.drop_front(2));
        SmallVector<Value> yielded = {bestValue, bestIndex};
        llvm::append_range(yielded, next);
        scf::YieldOp::create(b1, l1, yielded);
      });
  return llvm::to_vector_of<Value>(picks.getResults().drop_front(2));
}
