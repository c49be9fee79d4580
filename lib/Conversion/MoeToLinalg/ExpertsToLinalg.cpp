//===- ExpertsToLinalg.cpp - expert computation to linalg -----------------===//
//
// The FLOP-heavy ops become linalg.generic contractions accumulated in f32:
// moe.grouped_matmul is one contraction per expert over its dynamic row
// range; moe.activation, moe.zero_compute, moe.dense_ffn and
// moe.merge_experts are elementwise maps and reductions.
//
//===----------------------------------------------------------------------===//

#include "LoweringUtils.h"
#include "dialects/moe/MoeOps.h"
#include "moe/Conversion/MoeToLinalg.h"
#include "dialects/moe/MoeDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::lowering;

namespace {

Value get(OpBuilder &b, Location loc, Value tensor, ValueRange at) {
  return tensor::ExtractOp::create(b, loc, tensor, at);
}

/// A size or offset as an attribute when it is a constant, so slices keep
/// their static shapes.
OpFoldResult ofr(Value v) { return getAsOpFoldResult(v); }

/// The activation of an f32 [R, U] tensor: elementwise, or for gated kinds
/// act(columns [0, F)) * columns [F, 2F).
Value activate(OpBuilder &b, Location loc, Activation act, Value h) {
  StringRef name = stringifyActivation(act);
  if (!isGated(act))
    return mapF32(b, loc, h, [&](OpBuilder &nb, Location nl, Value v) {
      return applyActivation(nb, nl, name, v);
    });
  SmallVector<Value> dims = dimsOf(b, loc, h);
  auto type = cast<RankedTensorType>(h.getType());
  int64_t width = type.getDimSize(1);
  Value half = ShapedType::isDynamic(width)
                   ? arith::DivUIOp::create(b, loc, dims[1], constIndex(b, loc, 2)).getResult()
                   : constIndex(b, loc, width / 2);
  auto outType = RankedTensorType::get(
      {type.getDimSize(0), ShapedType::isDynamic(width) ? width : width / 2}, b.getF32Type());
  auto halfType = RankedTensorType::get(outType.getShape(), type.getElementType());
  SmallVector<OpFoldResult> sizes = {ofr(dims[0]), ofr(half)};
  SmallVector<OpFoldResult> strides = {b.getIndexAttr(1), b.getIndexAttr(1)};
  Value gate = tensor::ExtractSliceOp::create(
      b, loc, halfType, h, ArrayRef<OpFoldResult>{b.getIndexAttr(0), b.getIndexAttr(0)}, sizes, strides);
  Value up = tensor::ExtractSliceOp::create(
      b, loc, halfType, h, ArrayRef<OpFoldResult>{b.getIndexAttr(0), ofr(half)}, sizes, strides);
  Value init = zeros(b, loc, outType, {dims[0], half});
  AffineMap id = b.getMultiDimIdentityMap(2);
  return linalg::GenericOp::create(
             b, loc, TypeRange{outType}, ValueRange{gate, up}, ValueRange{init},
             ArrayRef<AffineMap>{id, id, id},
             SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel),
             [&](OpBuilder &nb, Location nl, ValueRange a) {
               Value g = applyActivation(nb, nl, name, toF32(nb, nl, a[0]));
               linalg::YieldOp::create(nb, nl,
                                       ValueRange{arith::MulFOp::create(nb, nl, g, toF32(nb, nl, a[1]))});
             })
      .getResult(0);
}

/// Row r's expert for the grouped matmul: the last e (experts in order, the
/// shared one as E_w) whose clamped range [offsets[e], offsets[e+1]) holds r,
/// or -1. The tiled CPU form overwrites ranges in the same order, so
/// both forms agree even on overlapping (malformed) offsets.
Value rowExperts(OpBuilder &b, Location loc, Value offsets, Value rows, int64_t staticRows,
                 Value numGroups) {
  auto type = RankedTensorType::get({staticRows}, b.getI32Type());
  Value init = filled(b, loc, type, {rows}, constI32(b, loc, -1));
  auto scanOp = linalg::GenericOp::create(
             b, loc, TypeRange{type}, ValueRange{}, ValueRange{init},
             ArrayRef<AffineMap>{b.getMultiDimIdentityMap(1)},
             ArrayRef<utils::IteratorType>{utils::IteratorType::parallel},
             [&](OpBuilder &nb, Location nl, ValueRange args) {
               Value r = linalg::IndexOp::create(nb, nl, 0);
               auto offsetAt = [&](OpBuilder &ob, Location ol, Value i) {
                 Value v = i32ToIndex(ob, ol, get(ob, ol, offsets, {i}));
                 v = arith::MaxSIOp::create(ob, ol, v, constIndex(ob, ol, 0));
                 return arith::MinSIOp::create(ob, ol, v, rows).getResult();
               };
               auto scan = scf::ForOp::create(
                   nb, nl, constIndex(nb, nl, 0), numGroups, constIndex(nb, nl, 1),
                   ValueRange{args[0]}, [&](OpBuilder &sb, Location sl, Value e, ValueRange found) {
                     Value lo = offsetAt(sb, sl, e);
                     Value hi = arith::MaxSIOp::create(
                         sb, sl, offsetAt(sb, sl, arith::AddIOp::create(sb, sl, e, constIndex(sb, sl, 1))),
                         lo);
                     Value in = arith::AndIOp::create(
                         sb, sl, arith::CmpIOp::create(sb, sl, arith::CmpIPredicate::sge, r, lo),
                         arith::CmpIOp::create(sb, sl, arith::CmpIPredicate::slt, r, hi));
                     scf::YieldOp::create(
                         sb, sl, ValueRange{arith::SelectOp::create(sb, sl, in, indexToI32(sb, sl, e), found[0])});
                   });
               linalg::YieldOp::create(nb, nl, scan.getResults());
             });
  scanOp->setAttr(kRowExpertsAttrName, b.getUnitAttr());
  return scanOp.getResult(0);
}

/// The grouped matmul as one generic over (row, column, k): each row reads
/// the weights of its expert (rowExperts), rows without one are 0.
Value groupedMatmulParallel(OpBuilder &b, Location loc, Value lhs, Value w, Value offsets,
                            Value shared) {
  auto lhsType = cast<RankedTensorType>(lhs.getType());
  auto wType = cast<RankedTensorType>(w.getType());
  SmallVector<Value> lhsDims = dimsOf(b, loc, lhs), wDims = dimsOf(b, loc, w);
  Value numGroups = shared ? arith::AddIOp::create(b, loc, wDims[0], constIndex(b, loc, 1)).getResult()
                           : wDims[0];
  Value experts = rowExperts(b, loc, offsets, lhsDims[0], lhsType.getDimSize(0), numGroups);
  auto outType = RankedTensorType::get({lhsType.getDimSize(0), wType.getDimSize(1)}, b.getF32Type());
  Value init = zeros(b, loc, outType, {lhsDims[0], wDims[1]});
  MLIRContext *ctx = b.getContext();
  AffineExpr r, n, k;
  bindDims(ctx, r, n, k);
  auto gemm = linalg::GenericOp::create(
             b, loc, TypeRange{outType}, ValueRange{lhs, experts}, ValueRange{init},
             ArrayRef<AffineMap>{AffineMap::get(3, 0, {r, k}, ctx), AffineMap::get(3, 0, {r}, ctx),
                                 AffineMap::get(3, 0, {r, n}, ctx)},
             {utils::IteratorType::parallel, utils::IteratorType::parallel,
              utils::IteratorType::reduction},
             [&](OpBuilder &nb, Location nl, ValueRange args) {
               using P = arith::CmpIPredicate;
               Value e = args[1];
               Value col = linalg::IndexOp::create(nb, nl, 1), kk = linalg::IndexOp::create(nb, nl, 2);
               Value routed = arith::AndIOp::create(
                   nb, nl, arith::CmpIOp::create(nb, nl, P::sge, e, constI32(nb, nl, 0)),
                   arith::CmpIOp::create(nb, nl, P::slt, e, indexToI32(nb, nl, wDims[0])));
               Value safe = arith::SelectOp::create(nb, nl, routed, i32ToIndex(nb, nl, e), constIndex(nb, nl, 0));
               Value wv = toF32(nb, nl, get(nb, nl, w, {safe, col, kk}));
               Value valid = routed;
               if (shared) {
                 Value isShared = arith::CmpIOp::create(nb, nl, P::eq, e, indexToI32(nb, nl, wDims[0]));
                 wv = arith::SelectOp::create(nb, nl, isShared, toF32(nb, nl, get(nb, nl, shared, {col, kk})), wv);
                 valid = arith::OrIOp::create(nb, nl, routed, isShared);
               }
               Value prod = arith::MulFOp::create(nb, nl, toF32(nb, nl, args[0]), wv);
               prod = arith::SelectOp::create(nb, nl, valid, prod, constF32(nb, nl, 0.0));
               linalg::YieldOp::create(nb, nl, ValueRange{arith::AddFOp::create(nb, nl, args[2], prod)});
             });
  // moe-tensor-core-gemm replaces this generic with a tensor-core kernel
  // after bufferization when the operands are bf16/f16.
  gemm->setAttr(kGroupedGemmAttrName, b.getUnitAttr());
  return gemm.getResult(0);
}

/// The grouped matmul in f32: rows [offsets[e], offsets[e+1]) of `lhs` times
/// expert e of `w` (and, with `shared`, rows of expert E_w times `shared`);
/// other rows 0. On the CPU: one tiled kernel over (column panel, expert)
/// pairs writing the rows in place. Quantised weights (a moe.dequantize all
/// of whose users are grouped matmuls) are dequantised in the kernel's
/// loads, or else one expert at a time, only for experts with rows.
Value groupedMatmulF32(OpBuilder &b, Location loc, Value lhs, Value w, Value offsets,
                       Value shared, ContractionForm form) {
  if (form == ContractionForm::Parallel)
    return groupedMatmulParallel(b, loc, lhs, w, offsets, shared);
  auto wType = cast<RankedTensorType>(w.getType());
  auto quantized = w.getDefiningOp<DequantizeOp>();
  if (quantized && !isDequantizedPerExpert(quantized))
    quantized = nullptr;
  // Regrouped interleaved gate/up rows are read where they are stored.
  Value interleaved = quantized ? Value() : interleavedRowsSource(w);
  if (interleaved)
    w = interleaved;
  SmallVector<Value> lhsDims = dimsOf(b, loc, lhs),
                     wDims = quantized ? dequantizedDims(b, loc, quantized) : dimsOf(b, loc, w);
  Value rows = lhsDims[0];
  auto accType = RankedTensorType::get(
      {cast<RankedTensorType>(lhs.getType()).getDimSize(0), wType.getDimSize(1)}, b.getF32Type());
  Value acc = zeros(b, loc, accType, {rows, wDims[1]});
  auto weightType = RankedTensorType::get({wType.getDimSize(1), wType.getDimSize(2)},
                                          wType.getElementType());
  Value one = constIndex(b, loc, 1);

  // Rows [offsets[e], offsets[e+1]) of lhs, clamped to its rows.
  auto rowsOf = [&](OpBuilder &nb, Location nl, Value e) -> std::pair<Value, Value> {
    auto offsetAt = [&](Value i) {
      Value v = i32ToIndex(nb, nl, get(nb, nl, offsets, {i}));
      v = arith::MaxSIOp::create(nb, nl, v, constIndex(nb, nl, 0));
      return arith::MinSIOp::create(nb, nl, v, rows).getResult();
    };
    Value lo = offsetAt(e);
    Value hi = arith::MaxSIOp::create(nb, nl, offsetAt(arith::AddIOp::create(nb, nl, e, one)), lo);
    return {lo, hi};
  };
  auto plainWeights = [](Value weights) {
    return [weights](OpBuilder &, Location, Value) { return WeightSource{weights, nullptr, nullptr}; };
  };

  if (!quantized || canDequantizeInKernel(quantized, form)) {
    auto expertWeights = [&](OpBuilder &nb, Location nl, Value e) {
      if (quantized)
        return WeightSource{nullptr, quantized, e};
      Value we = tensor::ExtractSliceOp::create(
          nb, nl, weightType, w, ArrayRef<OpFoldResult>{e, nb.getIndexAttr(0), nb.getIndexAttr(0)},
          ArrayRef<OpFoldResult>{nb.getIndexAttr(1), ofr(wDims[1]), ofr(wDims[2])},
          ArrayRef<OpFoldResult>{nb.getIndexAttr(1), nb.getIndexAttr(1), nb.getIndexAttr(1)});
      return WeightSource{we, nullptr, nullptr, bool(interleaved)};
    };
    acc = tiledGroupedLinearF32(b, loc, lhs, acc, wDims[0], quantized ? Value() : w, quantized, rowsOf,
                                expertWeights, form);
  } else {
    // One expert's float copy at a time, only for experts with rows.
    auto loop = scf::ForOp::create(
        b, loc, constIndex(b, loc, 0), wDims[0], one, ValueRange{acc},
        [&](OpBuilder &nb, Location nl, Value e, ValueRange iter) {
          Value lo = get(nb, nl, offsets, {e});
          Value hi = get(nb, nl, offsets, {arith::AddIOp::create(nb, nl, e, one).getResult()});
          Value hasRows = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sgt, hi, lo);
          auto ifRows = scf::IfOp::create(
              nb, nl, hasRows,
              [&](OpBuilder &tb, Location tl) {
                Value copy = dequantizeExpert(tb, tl, quantized, e);
                Value updated = tiledGroupedLinearF32(
                    tb, tl, lhs, iter[0], one, copy, nullptr,
                    [&](OpBuilder &rb, Location rl, Value) { return rowsOf(rb, rl, e); }, plainWeights(copy), form);
                scf::YieldOp::create(tb, tl, updated);
              },
              [&](OpBuilder &eb, Location el) { scf::YieldOp::create(eb, el, iter[0]); });
          scf::YieldOp::create(nb, nl, ifRows.getResults());
        });
    acc = loop.getResult(0);
  }
  if (shared)
    acc = tiledGroupedLinearF32(
        b, loc, lhs, acc, one, shared, nullptr,
        [&](OpBuilder &rb, Location rl, Value) { return rowsOf(rb, rl, wDims[0]); }, plainWeights(shared), form);
  return acc;
}

Value lowerGroupedMatmul(PatternRewriter &b, GroupedMatmulOp op, ContractionForm form) {
  return groupedMatmulF32(b, op.getLoc(), op.getLhs(), op.getWeights(), op.getOffsets(), op.getShared(), form);
}
using LowerGroupedMatmul = CastLowering<GroupedMatmulOp, lowerGroupedMatmul>;

Value lowerGroupedMatmulAct(PatternRewriter &b, GroupedMatmulActOp op, ContractionForm form) {
  Location loc = op.getLoc();
  Value acc = groupedMatmulF32(b, loc, op.getLhs(), op.getWeights(), op.getOffsets(), op.getShared(), form);
  return activate(b, loc, op.getKind(), acc);
}
using LowerGroupedMatmulAct = CastLowering<GroupedMatmulActOp, lowerGroupedMatmulAct>;

Value lowerGroupedMatmulCombine(PatternRewriter &b, GroupedMatmulCombineOp op, ContractionForm form) {
  Location loc = op.getLoc();
  auto type = cast<RankedTensorType>(op.getType());
  Value rows = groupedMatmulF32(b, loc, op.getLhs(), op.getWeights(), op.getOffsets(), op.getShared(), form);
  Type element = cast<RankedTensorType>(op.getLhs().getType()).getElementType();
  if (form != ContractionForm::Parallel || !(element.isBF16() || element.isF16())) {
    Value acc = combineSlots(b, loc, rows, op.getSlotRow(), op.getSlotWeight(), type.getShape());
    return acc;
  }
  // For the tensor-core GEMM: the weights scale the rows in its epilogue
  // (moe.row_scale), the combine sums them. The same f32 products and the
  // same slot-order sums: the result is bit-identical.
  auto rowsType = cast<RankedTensorType>(rows.getType());
  Value numRows = tensor::DimOp::create(b, loc, rows, 0);
  Value weights = slotWeightsByRow(b, loc, op.getSlotRow(), op.getSlotWeight(), numRows,
                                   rowsType.getDimSize(0));
  MLIRContext *ctx = b.getContext();
  AffineExpr r, n;
  bindDims(ctx, r, n);
  auto scale = linalg::GenericOp::create(
      b, loc, TypeRange{rowsType}, ValueRange{rows, weights},
      ValueRange{zeros(b, loc, rowsType, dimsOf(b, loc, rows))},
      ArrayRef<AffineMap>{AffineMap::get(2, 0, {r, n}, ctx), AffineMap::get(2, 0, {r}, ctx),
                          AffineMap::get(2, 0, {r, n}, ctx)},
      ArrayRef<utils::IteratorType>{utils::IteratorType::parallel, utils::IteratorType::parallel},
      [&](OpBuilder &nb, Location nl, ValueRange args) {
        linalg::YieldOp::create(nb, nl, ValueRange{arith::MulFOp::create(nb, nl, args[1], args[0]).getResult()});
      });
  scale->setAttr(kRowScaleAttrName, b.getUnitAttr());
  Value acc = combineSlots(b, loc, scale.getResult(0), op.getSlotRow(), Value(), type.getShape());
  return acc;
}
using LowerGroupedMatmulCombine = CastLowering<GroupedMatmulCombineOp, lowerGroupedMatmulCombine>;

Value lowerActivation(PatternRewriter &b, ActivationOp op, ContractionForm form) {
  Location loc = op.getLoc();
  return activate(b, loc, op.getKind(), op.getInput());
}
using LowerActivation = CastLowering<ActivationOp, lowerActivation>;

Value lowerZeroCompute(PatternRewriter &b, ZeroComputeOp op, ContractionForm form) {
  Location loc = op.getLoc();
  Value x = op.getX(), indices = op.getIndices(), weights = op.getWeights();
  Value vectors = op.getConstantVectors();
  // Per expert: its kind and, for constant experts, which one it is.
  SmallVector<ExpertKind> kinds = expandExpertSet(op.getExperts());
  SmallVector<int32_t> kindCodes, constantSlot;
  int32_t nextConstant = 0;
  for (ExpertKind kind : kinds) {
    kindCodes.push_back(static_cast<int32_t>(kind));
    constantSlot.push_back(kind == ExpertKind::constant ? nextConstant++ : 0);
  }
  auto tableType = RankedTensorType::get({static_cast<int64_t>(kinds.size())}, b.getI32Type());
  Value kindTable = arith::ConstantOp::create(
      b, loc, DenseIntElementsAttr::get(tableType, ArrayRef<int32_t>(kindCodes)));
  Value constantTable = arith::ConstantOp::create(
      b, loc, DenseIntElementsAttr::get(tableType, ArrayRef<int32_t>(constantSlot)));
  int32_t numExperts = static_cast<int32_t>(kinds.size());

  // Mixing logits of every constant expert: [T, 2 E_c] = x · mix^T.
  Value mixLogits;
  if (vectors) {
    auto mixType = cast<RankedTensorType>(op.getConstantMix().getType());
    int64_t ec = mixType.getDimSize(0);
    auto flatType = RankedTensorType::get(
        {ShapedType::isDynamic(ec) ? ec : 2 * ec, mixType.getDimSize(2)}, mixType.getElementType());
    Value flat = tensor::CollapseShapeOp::create(b, loc, flatType, op.getConstantMix(),
                                                 ArrayRef<ReassociationIndices>{{0, 1}, {2}});
    mixLogits = linearF32(b, loc, x, flat, form);
  }

  auto type = cast<RankedTensorType>(op.getType());
  SmallVector<Value> xDims = dimsOf(b, loc, x);
  Value acc = reduceOverSlots(
      b, loc, type.getShape(), xDims, indices, weights,
      [&](OpBuilder &nb, Location nl, Value e, Value w, Value sum) -> Value {
        using P = arith::CmpIPredicate;
        Value valid = arith::AndIOp::create(
            nb, nl, arith::CmpIOp::create(nb, nl, P::sge, e, constI32(nb, nl, 0)),
            arith::CmpIOp::create(nb, nl, P::slt, e, constI32(nb, nl, numExperts)));
        Value safe = arith::SelectOp::create(nb, nl, valid, i32ToIndex(nb, nl, e), constIndex(nb, nl, 0));
        Value kind = get(nb, nl, kindTable, {safe});
        Value ti = linalg::IndexOp::create(nb, nl, 0), hi = linalg::IndexOp::create(nb, nl, 1);
        Value xv = toF32(nb, nl, get(nb, nl, x, {ti, hi}));
        auto isKind = [&](ExpertKind kk) {
          return arith::AndIOp::create(
              nb, nl, valid,
              arith::CmpIOp::create(nb, nl, P::eq, kind, constI32(nb, nl, static_cast<int32_t>(kk))));
        };
        Value zero = constF32(nb, nl, 0.0);
        Value contribution = arith::SelectOp::create(nb, nl, isKind(ExpertKind::copy),
                                                     arith::MulFOp::create(nb, nl, w, xv), zero);
        if (vectors) {
          Value c = i32ToIndex(nb, nl, get(nb, nl, constantTable, {safe}));
          Value c2 = arith::MulIOp::create(nb, nl, c, constIndex(nb, nl, 2));
          Value l0 = get(nb, nl, mixLogits, {ti, c2});
          Value l1 = get(nb, nl, mixLogits, {ti, arith::AddIOp::create(nb, nl, c2, constIndex(nb, nl, 1))});
          Value m = arith::MaximumFOp::create(nb, nl, l0, l1);
          Value e0 = math::ExpOp::create(nb, nl, arith::SubFOp::create(nb, nl, l0, m));
          Value e1 = math::ExpOp::create(nb, nl, arith::SubFOp::create(nb, nl, l1, m));
          Value s = arith::AddFOp::create(nb, nl, e0, e1);
          Value a1 = arith::DivFOp::create(nb, nl, e0, s), a2 = arith::DivFOp::create(nb, nl, e1, s);
          Value v = toF32(nb, nl, get(nb, nl, vectors, {c, hi}));
          Value mixed = arith::AddFOp::create(nb, nl, arith::MulFOp::create(nb, nl, a1, xv),
                                              arith::MulFOp::create(nb, nl, a2, v));
          contribution = arith::SelectOp::create(nb, nl, isKind(ExpertKind::constant),
                                                 arith::MulFOp::create(nb, nl, w, mixed), contribution);
        }
        return arith::AddFOp::create(nb, nl, sum, contribution);
      });
  return acc;
}
using LowerZeroCompute = CastLowering<ZeroComputeOp, lowerZeroCompute>;

Value lowerDenseFfn(PatternRewriter &b, DenseFfnOp op, ContractionForm form) {
  Location loc = op.getLoc();
  Value x = op.getX();
  Value hidden = activate(b, loc, op.getKind(), linearF32(b, loc, x, op.getUp(), form));
  Value out = linearF32(b, loc, hidden, op.getDown(), form);
  if (Value gate = op.getGate()) {
    // Each row times sigmoid(gate · x_t).
    Value g = linearF32(b, loc, x, gate, form);
    MLIRContext *ctx = b.getContext();
    AffineExpr t, h;
    bindDims(ctx, t, h);
    auto outType = cast<RankedTensorType>(out.getType());
    Value init = zeros(b, loc, outType, dimsOf(b, loc, out));
    out = linalg::GenericOp::create(
              b, loc, TypeRange{outType}, ValueRange{out, g}, ValueRange{init},
              ArrayRef<AffineMap>{AffineMap::get(2, 0, {t, h}, ctx),
                                  AffineMap::get(2, 0, {t, b.getAffineConstantExpr(0)}, ctx),
                                  AffineMap::get(2, 0, {t, h}, ctx)},
              SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel),
              [&](OpBuilder &nb, Location nl, ValueRange a) {
                Value sig = scalar::sigmoid(nb, nl, a[1]);
                linalg::YieldOp::create(nb, nl, ValueRange{arith::MulFOp::create(nb, nl, a[0], sig)});
              })
              .getResult(0);
  }
  return out;
}
using LowerDenseFfn = CastLowering<DenseFfnOp, lowerDenseFfn>;

SmallVector<Value> lowerDenseGates(PatternRewriter &b, DenseGatesOp op, ContractionForm) {
  Location loc = op.getLoc();
  auto type = cast<RankedTensorType>(op.getType());
  Value rows = dimsOf(b, loc, op.getWeights())[0];
  Value init = zeros(b, loc, type, {rows, constIndex(b, loc, op.getNumExperts())});
  MLIRContext *ctx = b.getContext();
  AffineExpr g, e, k;
  bindDims(ctx, g, e, k);
  auto slotMap = AffineMap::get(3, 0, {g, k}, ctx);
  auto result = linalg::GenericOp::create(
      b, loc, TypeRange{type}, ValueRange{op.getWeights(), op.getIndices()}, ValueRange{init},
      ArrayRef<AffineMap>{slotMap, slotMap, AffineMap::get(3, 0, {g, e}, ctx)},
      ArrayRef<utils::IteratorType>{utils::IteratorType::parallel, utils::IteratorType::parallel,
                                    utils::IteratorType::reduction},
      [&](OpBuilder &nb, Location nl, ValueRange a) {
        Value expert = indexToI32(nb, nl, linalg::IndexOp::create(nb, nl, 1));
        Value mine = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq, a[1], expert);
        Value sum = arith::AddFOp::create(nb, nl, a[2], a[0]);
        linalg::YieldOp::create(nb, nl, ValueRange{arith::SelectOp::create(nb, nl, mine, sum, a[2])});
      });
  return llvm::to_vector(ValueRange(result.getResult(0)));
}
using LowerDenseGates = FunctionLowering<DenseGatesOp, lowerDenseGates>;

SmallVector<Value> lowerComposeExperts(PatternRewriter &b, ComposeExpertsOp op, ContractionForm) {
  Location loc = op.getLoc();
  auto type = cast<RankedTensorType>(op.getType());
  SmallVector<Value> dDims = dimsOf(b, loc, op.getDown()), uDims = dimsOf(b, loc, op.getUp());
  Value init = zeros(b, loc, type, {dDims[0], dDims[1], uDims[2]});
  MLIRContext *ctx = b.getContext();
  AffineExpr e, i, j, f;
  bindDims(ctx, e, i, j, f);
  auto result = linalg::GenericOp::create(
      b, loc, TypeRange{type}, ValueRange{op.getDown(), op.getUp()}, ValueRange{init},
      ArrayRef<AffineMap>{AffineMap::get(4, 0, {e, i, f}, ctx), AffineMap::get(4, 0, {e, f, j}, ctx),
                          AffineMap::get(4, 0, {e, i, j}, ctx)},
      ArrayRef<utils::IteratorType>{utils::IteratorType::parallel, utils::IteratorType::parallel,
                                    utils::IteratorType::parallel, utils::IteratorType::reduction},
      [&](OpBuilder &nb, Location nl, ValueRange a) {
        Value prod = arith::MulFOp::create(nb, nl, toF32(nb, nl, a[0]), toF32(nb, nl, a[1]));
        linalg::YieldOp::create(nb, nl, ValueRange{arith::AddFOp::create(nb, nl, a[2], prod)});
      });
  return llvm::to_vector(ValueRange(result.getResult(0)));
}
using LowerComposeExperts = FunctionLowering<ComposeExpertsOp, lowerComposeExperts>;

Value lowerMergeExperts(PatternRewriter &b, MergeExpertsOp op, ContractionForm form) {
  Location loc = op.getLoc();
  Value w = op.getWeights(), gates = op.getGates();
  auto wType = cast<RankedTensorType>(w.getType());
  int64_t rank = wType.getRank();
  // Loops: g, then the weight dims after the first, then e (reduction).
  MLIRContext *ctx = b.getContext();
  unsigned numLoops = rank + 1;
  AffineExpr g = b.getAffineDimExpr(0), e = b.getAffineDimExpr(numLoops - 1);
  SmallVector<AffineExpr> wExprs = {e}, outExprs = {g};
  for (int64_t d = 1; d < rank; ++d) {
    wExprs.push_back(b.getAffineDimExpr(d));
    outExprs.push_back(b.getAffineDimExpr(d));
  }
  SmallVector<Value> wDims = dimsOf(b, loc, w);
  SmallVector<Value> outDims = {dimsOf(b, loc, gates)[0]};
  outDims.append(wDims.begin() + 1, wDims.end());
  auto outType = cast<RankedTensorType>(op.getType());
  auto accType = RankedTensorType::get(outType.getShape(), b.getF32Type());
  Value init = zeros(b, loc, accType, outDims);
  SmallVector<utils::IteratorType> iters(numLoops, utils::IteratorType::parallel);
  iters.back() = utils::IteratorType::reduction;
  auto acc = linalg::GenericOp::create(
      b, loc, TypeRange{accType}, ValueRange{gates, w}, ValueRange{init},
      ArrayRef<AffineMap>{AffineMap::get(numLoops, 0, {g, e}, ctx),
                          AffineMap::get(numLoops, 0, wExprs, ctx),
                          AffineMap::get(numLoops, 0, outExprs, ctx)},
      iters, [&](OpBuilder &nb, Location nl, ValueRange a) {
        Value term = arith::MulFOp::create(nb, nl, a[0], toF32(nb, nl, a[1]));
        linalg::YieldOp::create(nb, nl, ValueRange{arith::AddFOp::create(nb, nl, a[2], term)});
      });
  return acc.getResult(0);
}
using LowerMergeExperts = CastLowering<MergeExpertsOp, lowerMergeExperts>;

} // namespace

void mlir::moe::populateMoeExpertsToLinalgPatterns(RewritePatternSet &patterns,
                                                   ContractionForm form) {
  patterns.add<LowerActivation, LowerDenseGates, LowerComposeExperts, LowerMergeExperts>(
      patterns.getContext());
  patterns.add<LowerGroupedMatmul, LowerGroupedMatmulAct, LowerGroupedMatmulCombine,
               LowerZeroCompute, LowerDenseFfn>(patterns.getContext(), form);
}
