//===- ExpertMixture.cpp - an MoE layer in ONNX Runtime's MoE semantics ---===//
//
//   p = softmax(logits); w, e = top-k(p); [w /= Σ w]     (or top-k of the
//   logits and the softmax over the picks; or SparseMixer)
//   dispatch; permute; h = grouped_matmul(fc1) [+ bias]; a = activation(h)
//   y = grouped_matmul(fc2) [+ bias]; out = combine(y, w)
//
// which moe-optimize then fuses like any decomposed layer.
//
//===----------------------------------------------------------------------===//

#include "ExpertMixture.h"
#include "moe/Transforms/RoutedExperts.h"

#include "moe/Utils/ScalarMath.h"
#include "moe/Utils/TensorBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cstring>
#include <limits>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::onnx_import;
namespace tb = mlir::moe::tensor_builders;

Value SwigluParams::build(OpBuilder &b, Location loc, Value h, RankedTensorType resultType) const {
  int64_t rows = resultType.getDimSize(0), ffn = resultType.getDimSize(1);
  SmallVector<Value> dynamic;
  if (ShapedType::isDynamic(rows))
    dynamic.push_back(tb::dimSize(b, loc, h, 0));
  SmallVector<OpFoldResult> sizes = {ShapedType::isDynamic(rows) ? OpFoldResult(dynamic[0])
                                                                : OpFoldResult(b.getIndexAttr(rows)),
                                     b.getIndexAttr(ffn)};
  SmallVector<OpFoldResult> unit = {b.getIndexAttr(1), b.getIndexAttr(1)};
  auto half = [&](int64_t column) {
    return tensor::ExtractSliceOp::create(b, loc, resultType, h,
                                          ArrayRef<OpFoldResult>{b.getIndexAttr(0), b.getIndexAttr(column)},
                                          sizes, unit)
        .getResult();
  };
  Type element = resultType.getElementType();
  return *tb::elementwise(b, loc, {half(0), half(ffn)}, element, [&](OpBuilder &nb, Location nl, ValueRange v) {
    auto f32 = [&](double c) { return scalar::constF32(nb, nl, c); };
    Value g = tb::castScalar(nb, nl, v[0], nb.getF32Type());
    Value u = tb::castScalar(nb, nl, v[1], nb.getF32Type());
    if (limit) {
      if (!limitAfterActivation)
        g = arith::MinimumFOp::create(nb, nl, g, f32(*limit));
      u = arith::MaximumFOp::create(nb, nl, arith::MinimumFOp::create(nb, nl, u, f32(*limit)), f32(-*limit));
    }
    Value sigmoid = scalar::sigmoid(nb, nl, arith::MulFOp::create(nb, nl, f32(alpha), g));
    Value activated = arith::MulFOp::create(nb, nl, g, sigmoid);
    if (limit && limitAfterActivation)
      activated = arith::MinimumFOp::create(nb, nl, activated, f32(*limit));
    Value out = arith::MulFOp::create(nb, nl, activated, arith::AddFOp::create(nb, nl, u, f32(beta)));
    return tb::castScalar(nb, nl, out, element);
  });
}

namespace {

/// values[t, ids[t, j]] as [T, k] f32 (values [T, E] f32, ids [T, k] i32).
Value gatherPerToken(OpBuilder &b, Location loc, Value values, Value ids) {
  auto idsType = cast<RankedTensorType>(ids.getType());
  auto resultType = RankedTensorType::get(idsType.getShape(), b.getF32Type());
  SmallVector<Value> dynamic;
  if (idsType.isDynamicDim(0))
    dynamic.push_back(tb::dimSize(b, loc, ids, 0));
  return linalg::GenericOp::create(
             b, loc, TypeRange{resultType}, ValueRange{ids}, ValueRange{tb::empty(b, loc, resultType, dynamic)},
             ArrayRef<AffineMap>{b.getMultiDimIdentityMap(2), b.getMultiDimIdentityMap(2)},
             SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel),
             [&](OpBuilder &nb, Location nl, ValueRange v) {
               Value e = arith::IndexCastOp::create(nb, nl, nb.getIndexType(), v[0]);
               Value t = linalg::IndexOp::create(nb, nl, 0);
               linalg::YieldOp::create(nb, nl,
                                       ValueRange{tensor::ExtractOp::create(nb, nl, values, ValueRange{t, e}).getResult()});
             })
      .getResult(0);
}

/// Phi-3.5-MoE's SparseMixer top-2 routing (use_sparse_mixer, inference),
/// on the logits [T, E]: twice, the largest remaining logit m is picked, the
/// logits s with (m - s) / max(|s|, m) > 2 eps are masked (-inf; the picked
/// ones stay masked), and the pick's weight is its softmax over the rest
/// (no renormalisation); eps is the router's jitter (Phi-3.5-MoE's 0.01).
/// Returns (weights [T, 2] f32, ids [T, 2] i32).
std::pair<Value, Value> sparseMixerTop2(OpBuilder &b, Location loc, Value logits, float eps) {
  auto logitsType = cast<RankedTensorType>(logits.getType());
  int64_t tokens = logitsType.getDimSize(0);
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  auto columnType = [&](Type element) { return RankedTensorType::get({tokens, 1}, element); };
  MLIRContext *ctx = b.getContext();
  float negInf = -std::numeric_limits<float>::infinity();
  // candidates[t, e], or -inf where e is ids[t] (ids [T, 1]).
  auto withoutPicked = [&](Value candidates, Value ids) {
    SmallVector<Value> dynamic;
    if (ShapedType::isDynamic(tokens))
      dynamic.push_back(tb::dimSize(b, loc, candidates, 0));
    AffineExpr t, e;
    bindDims(ctx, t, e);
    return linalg::GenericOp::create(
               b, loc, TypeRange{logitsType}, ValueRange{candidates, ids}, ValueRange{tb::empty(b, loc, logitsType, dynamic)},
               ArrayRef<AffineMap>{AffineMap::get(2, 0, {t, e}, ctx), AffineMap::get(2, 0, {t, getAffineConstantExpr(0, ctx)}, ctx),
                                   AffineMap::get(2, 0, {t, e}, ctx)},
               SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel),
               [&](OpBuilder &nb, Location nl, ValueRange v) {
                 Value e = arith::IndexCastOp::create(nb, nl, i32, linalg::IndexOp::create(nb, nl, 1));
                 Value picked = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::eq, e, v[1]);
                 Value inf = arith::ConstantOp::create(nb, nl, nb.getF32FloatAttr(negInf));
                 linalg::YieldOp::create(nb, nl, ValueRange{arith::SelectOp::create(nb, nl, picked, inf, v[0]).getResult()});
               })
        .getResult(0);
  };
  auto round = [&](Value candidates) -> std::pair<Value, Value> {
    auto top = TopKOp::create(b, loc, columnType(f32), columnType(i32), candidates, Value(), b.getI64IntegerAttr(1));
    Value masked = *tb::elementwise(b, loc, {logits, top.getWeights(), candidates}, f32,
                                    [&](OpBuilder &nb, Location nl, ValueRange v) -> Value {
                                      Value factor = arith::MaximumFOp::create(nb, nl, math::AbsFOp::create(nb, nl, v[0]), v[1]);
                                      Value ratio = arith::DivFOp::create(nb, nl, arith::SubFOp::create(nb, nl, v[1], v[0]), factor);
                                      Value far = arith::CmpFOp::create(
                                          nb, nl, arith::CmpFPredicate::OGT, ratio,
                                          arith::ConstantOp::create(nb, nl, nb.getF32FloatAttr(2 * eps)));
                                      Value inf = arith::ConstantOp::create(nb, nl, nb.getF32FloatAttr(negInf));
                                      return arith::SelectOp::create(nb, nl, far, inf, v[2]);
                                    });
    Value probs = ScoreOp::create(b, loc, logitsType, ScoringFuncAttr::get(ctx, ScoringFunc::softmax), masked,
                                  FloatAttr(), IntegerAttr(), IntegerAttr());
    return {gatherPerToken(b, loc, probs, top.getIndices()), top.getIndices()};
  };
  auto [w1, ids1] = round(logits);
  auto [w2, ids2] = round(withoutPicked(logits, ids1));
  return {tensor::ConcatOp::create(b, loc, /*dim=*/1, ValueRange{w1, w2}),
          tensor::ConcatOp::create(b, loc, /*dim=*/1, ValueRange{ids1, ids2})};
}

/// The rows of constant `t` [E, 2n, ...] regrouped at import (each row's
/// bytes copied once), or null when `t` is no constant with its bytes at
/// hand.
Value regroupedConstant(OpBuilder &b, Location loc, Value t) {
  auto type = cast<RankedTensorType>(t.getType());
  if (!type.hasStaticShape())
    return nullptr;
  int64_t experts = type.getDimSize(0), rows = type.getDimSize(1), half = rows / 2;
  int64_t rowElements = type.getNumElements() / (experts * rows);
  return constantFromBytes(b, loc, t, type, "_regrouped", [&](ArrayRef<char> data, int64_t elementBytes) {
    int64_t rowBytes = rowElements * elementBytes;
    std::vector<char> regrouped(data.size());
    for (int64_t e = 0; e < experts; ++e)
      for (int64_t r = 0; r < rows; ++r)
        memcpy(regrouped.data() + (e * rows + (r % 2) * half + r / 2) * rowBytes,
               data.data() + (e * rows + r) * rowBytes, rowBytes);
    return regrouped;
  });
}

} // namespace

Value mlir::moe::onnx_import::regroupInterleavedRows(OpBuilder &b, Location loc, Value t) {
  // Constant weights are regrouped once here, not on every call.
  if (Value folded = regroupedConstant(b, loc, t))
    return folded;
  auto type = cast<RankedTensorType>(t.getType());
  SmallVector<int64_t> split = {type.getDimSize(0), type.getDimSize(1) / 2, 2}, perm = {0, 2, 1};
  for (int64_t d = 2; d < type.getRank(); ++d) {
    split.push_back(type.getDimSize(d));
    perm.push_back(d + 1);
  }
  return tb::reshape(b, loc, tb::transpose(b, loc, tb::reshape(b, loc, t, split), perm), type.getShape());
}

Value mlir::moe::onnx_import::buildExpertMixture(OpBuilder &b, Location loc, const ExpertMixture &m) {
  auto xType = cast<RankedTensorType>(m.x.getType());
  auto upType = cast<RankedTensorType>(m.up.getType());
  int64_t hidden = xType.getShape().back(), experts = upType.getDimSize(0), k = m.k;
  // Tokens [T, H] and logits [T, E] in f32.
  Value x = m.x, logits = m.logits;
  Value tokens = xType.getRank() == 2 ? x : tb::reshape(b, loc, x, {ShapedType::kDynamic, hidden});
  if (cast<RankedTensorType>(logits.getType()).getRank() != 2)
    logits = tb::reshape(b, loc, logits, {ShapedType::kDynamic, experts});
  logits = tb::castTensor(b, loc, logits, b.getF32Type());

  int64_t numTokens = cast<RankedTensorType>(tokens.getType()).getDimSize(0);
  auto f32 = b.getF32Type();
  auto i32 = b.getI32Type();
  auto scoresType = RankedTensorType::get({numTokens, experts}, f32);
  auto slotsType = RankedTensorType::get({numTokens, k}, f32);
  auto slotIdsType = RankedTensorType::get({numTokens, k}, i32);
  Value weights, ids;
  if (m.sparseMixer) {
    std::tie(weights, ids) = sparseMixerTop2(b, loc, logits, m.sparseMixerEps);
  } else if (m.selectThenScore) {
    auto topk = TopKOp::create(b, loc, slotsType, slotIdsType, logits, Value(), b.getI64IntegerAttr(k));
    ids = topk.getIndices();
    weights = RenormalizeOp::create(b, loc, slotsType, RenormModeAttr::get(b.getContext(), RenormMode::softmax),
                                    topk.getWeights(), ids, b.getDenseI64ArrayAttr({}), b.getF64FloatAttr(1.0),
                                    b.getI64IntegerAttr(0), b.getF64FloatAttr(0.0));
  } else {
    Value scores = ScoreOp::create(b, loc, scoresType, ScoringFuncAttr::get(b.getContext(), ScoringFunc::softmax),
                                   logits, FloatAttr(), IntegerAttr(), IntegerAttr());
    auto topk = TopKOp::create(b, loc, slotsType, slotIdsType, scores, Value(), b.getI64IntegerAttr(k));
    weights = topk.getWeights();
    ids = topk.getIndices();
    // QMoE's router_weights: the logits only choose.
    if (m.mixing)
      weights = gatherPerToken(b, loc, tb::castTensor(b, loc, m.mixing, f32), ids);
    if (m.normalize)
      weights = RenormalizeOp::create(b, loc, slotsType, RenormModeAttr::get(b.getContext(), RenormMode::sum),
                                      weights, ids, b.getDenseI64ArrayAttr({}), b.getF64FloatAttr(1.0),
                                      b.getI64IntegerAttr(0), b.getF64FloatAttr(0.0));
  }
  RoutedExperts routed;
  routed.tokens = tokens;
  routed.weights = weights;
  routed.indices = ids;
  routed.up = m.up;
  routed.upBias = m.upBias;
  routed.down = m.down;
  routed.downBias = m.downBias;
  routed.numExperts = experts;
  routed.k = k;
  routed.activation = m.activation;
  if (m.activation == Activation::swiglu && !m.swiglu.isPlain())
    routed.activate = [&](OpBuilder &nb, Location nl, Value h, RankedTensorType type) {
      return m.swiglu.build(nb, nl, h, type);
    };
  Value out = buildRoutedExperts(b, loc, routed).y;
  if (xType.getRank() == 3)
    out = tb::reshapeLike(b, loc, out, x);
  return out;
}

