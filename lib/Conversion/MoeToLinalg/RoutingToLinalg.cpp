//===- RoutingToLinalg.cpp - routing ops to linalg / scf ------------------===//
//
// moe.router, moe.gating_residual and moe.score become linalg ops; the
// selections (moe.topk, moe.threshold, moe.expert_choice) and moe.renormalize
// become scf loops over tokens that build their small results with
// tensor.insert, following docs/design.md section 5.1 step by step.
//
//===----------------------------------------------------------------------===//

#include "LoweringUtils.h"
#include "dialects/moe/MoeOps.h"
#include "moe/Conversion/MoeToLinalg.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::lowering;

namespace {

/// Runs `body(b, loc, t, state)` for every token row t in [0, tokens) and
/// returns the final state (tensors updated with tensor.insert).
SmallVector<Value> forEachToken(
    OpBuilder &b, Location loc, Value tokens, ValueRange state,
    function_ref<SmallVector<Value>(OpBuilder &, Location, Value, ValueRange)> body) {
  auto loop = scf::ForOp::create(b, loc, constIndex(b, loc, 0), tokens, constIndex(b, loc, 1),
                                 state, [&](OpBuilder &nb, Location nl, Value t, ValueRange iter) {
                                   scf::YieldOp::create(nb, nl, body(nb, nl, t, iter));
                                 });
  // Every caller's body writes only row t of its state.
  markParallel(loop);
  return llvm::to_vector_of<Value>(loop.getResults());
}

Value extract(OpBuilder &b, Location loc, Value tensor, ValueRange indices) {
  return tensor::ExtractOp::create(b, loc, tensor, indices);
}

Value insert(OpBuilder &b, Location loc, Value scalar, Value tensor, ValueRange indices) {
  return tensor::InsertOp::create(b, loc, scalar, tensor, indices);
}

/// Writes pick j of token t: the weight from `scores` at the pick (0 if
/// none) and the expert index (-1 if none).
SmallVector<Value> writePick(OpBuilder &b, Location loc, Value scores, Value t, Value j,
                             Value found, Value index, ValueRange outs) {
  Value safe = arith::SelectOp::create(b, loc, found, index, constIndex(b, loc, 0));
  Value w = arith::SelectOp::create(b, loc, found, extract(b, loc, scores, {t, safe}),
                                    constF32(b, loc, 0.0));
  Value i = arith::SelectOp::create(b, loc, found, indexToI32(b, loc, index),
                                    constI32(b, loc, -1));
  return {insert(b, loc, w, outs[0], {t, j}), insert(b, loc, i, outs[1], {t, j})};
}

/// Result tensors of a selection: weights 0 and indices -1 everywhere.
SmallVector<Value> emptySelection(OpBuilder &b, Location loc, Operation *op, Value tokens) {
  auto wType = cast<RankedTensorType>(op->getResult(0).getType());
  auto iType = cast<RankedTensorType>(op->getResult(1).getType());
  SmallVector<Value> dims = {tokens, constIndex(b, loc, wType.getDimSize(1))};
  return {zeros(b, loc, wType, dims), filled(b, loc, iType, dims, constI32(b, loc, -1))};
}

Value lowerGroupMean(PatternRewriter &b, GroupMeanOp op, ContractionForm form) {
  Location loc = op.getLoc();
  Value x = op.getX();
  auto type = cast<RankedTensorType>(op.getType());
  SmallVector<Value> xDims = dimsOf(b, loc, x);
  Value size = constIndex(b, loc, op.getGroupSize());
  Value one = constIndex(b, loc, 1), zero = constIndex(b, loc, 0);
  // G = ceil(T / S).
  Value groups = arith::DivUIOp::create(
      b, loc, arith::AddIOp::create(b, loc, xDims[0], arith::SubIOp::create(b, loc, size, one)), size);
  Value init = zeros(b, loc, type, {groups, xDims[1]});
  SmallVector<Value> out = forEachToken(
      b, loc, groups, ValueRange{init}, [&](OpBuilder &nb, Location nl, Value g, ValueRange st) {
        Value lo = arith::MulIOp::create(nb, nl, g, size);
        Value hi = arith::MinSIOp::create(nb, nl, arith::AddIOp::create(nb, nl, lo, size), xDims[0]);
        Value count = arith::SIToFPOp::create(
            nb, nl, nb.getF32Type(),
            arith::IndexCastOp::create(nb, nl, nb.getI64Type(), arith::SubIOp::create(nb, nl, hi, lo)));
        auto cols = scf::ForOp::create(
            nb, nl, zero, xDims[1], one, st, [&](OpBuilder &cb, Location cl, Value h, ValueRange acc) {
              auto sum = scf::ForOp::create(
                  cb, cl, lo, hi, one, ValueRange{constF32(cb, cl, 0.0)},
                  [&](OpBuilder &sb, Location sl, Value t, ValueRange s) {
                    Value v = toF32(sb, sl, extract(sb, sl, x, {t, h}));
                    scf::YieldOp::create(sb, sl, ValueRange{arith::AddFOp::create(sb, sl, s[0], v)});
                  });
              Value mean = fromF32(cb, cl, arith::DivFOp::create(cb, cl, sum.getResult(0), count),
                                   type.getElementType());
              scf::YieldOp::create(cb, cl, ValueRange{insert(cb, cl, mean, acc[0], {g, h})});
            });
        return llvm::to_vector_of<Value>(cols.getResults());
      });
  return out[0];
}
using LowerGroupMean = CastLowering<GroupMeanOp, lowerGroupMean>;

SmallVector<Value> lowerExpandGroups(PatternRewriter &b, ExpandGroupsOp op, ContractionForm) {
  Location loc = op.getLoc();
  Value values = op.getValues();
  auto type = cast<RankedTensorType>(op.getType());
  SmallVector<Value> dims = dimsOf(b, loc, values);
  dims[0] = dimsOf(b, loc, op.getLike())[0];
  Value init = zeros(b, loc, type, dims);
  Value size = constIndex(b, loc, op.getGroupSize());
  unsigned rank = type.getRank();
  auto result = linalg::GenericOp::create(
      b, loc, TypeRange{type}, ValueRange{}, ValueRange{init},
      ArrayRef<AffineMap>{b.getMultiDimIdentityMap(rank)},
      SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location nl, ValueRange) {
        SmallVector<Value> at;
        for (unsigned d = 0; d < rank; ++d)
          at.push_back(linalg::IndexOp::create(nb, nl, d));
        at[0] = arith::DivUIOp::create(nb, nl, at[0], size);
        linalg::YieldOp::create(nb, nl, ValueRange{extract(nb, nl, values, at)});
      });
  return llvm::to_vector(ValueRange(result.getResult(0)));
}
using LowerExpandGroups = FunctionLowering<ExpandGroupsOp, lowerExpandGroups>;

/// `logits[t, e] = round_b(logits[t, e]) + bias[e]` in f32, where `round_b`
/// rounds to the bias's element type (router_c2).
Value addRouterBias(OpBuilder &b, Location loc, Value logits, Value bias) {
  auto type = cast<RankedTensorType>(logits.getType());
  Type biasElement = cast<RankedTensorType>(bias.getType()).getElementType();
  MLIRContext *ctx = b.getContext();
  AffineMap rows = AffineMap::getMultiDimIdentityMap(2, ctx);
  AffineMap experts = AffineMap::get(2, 0, {getAffineDimExpr(1, ctx)}, ctx);
  Value init = zeros(b, loc, type, dimsOf(b, loc, logits));
  auto sum = linalg::GenericOp::create(
      b, loc, TypeRange{type}, ValueRange{logits, bias}, ValueRange{init},
      ArrayRef<AffineMap>{rows, experts, rows},
      SmallVector<utils::IteratorType>(2, utils::IteratorType::parallel),
      [&](OpBuilder &nb, Location nl, ValueRange a) {
        Value product = a[0];
        if (!biasElement.isF32())
          product = toF32(nb, nl, fromF32(nb, nl, product, biasElement));
        Value total = arith::AddFOp::create(nb, nl, product, toF32(nb, nl, a[1]));
        linalg::YieldOp::create(nb, nl, total);
      });
  return sum.getResult(0);
}

Value lowerRouter(PatternRewriter &b, RouterOp op, ContractionForm form) {
  Location loc = op.getLoc();
  Value input = op.getX();
  if (Value hidden = op.getHidden())
    input = mapF32(b, loc, linearF32(b, loc, input, hidden, form),
                   [](OpBuilder &nb, Location nl, Value v) {
                     return math::TanhOp::create(nb, nl, v).getResult();
                   });
  Value logits = linearF32(b, loc, input, op.getWeight(), form);
  if (Value bias = op.getBias())
    logits = addRouterBias(b, loc, logits, bias);
  return logits;
}
using LowerRouter = CastLowering<RouterOp, lowerRouter>;

Value lowerGatingResidual(PatternRewriter &b, GatingResidualOp op, ContractionForm form) {
  Location loc = op.getLoc();
  Value residual = castToType(b, loc, linearF32(b, loc, op.getPrev(), op.getWeight(), form),
                          op.getLogits().getType());
  Value sum = arith::AddFOp::create(b, loc, op.getLogits(), residual);
  return sum;
}
using LowerGatingResidual = CastLowering<GatingResidualOp, lowerGatingResidual>;

/// splitmix64 on i64 values (wrapping arithmetic), design.md 5.1.
Value splitmix64(OpBuilder &b, Location loc, Value x) {
  auto c = [&](uint64_t v) {
    return arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(static_cast<int64_t>(v)));
  };
  auto mix = [&](Value v, unsigned shift, uint64_t mul) {
    Value shifted = arith::ShRUIOp::create(b, loc, v, c(shift));
    return arith::MulIOp::create(b, loc, arith::XOrIOp::create(b, loc, v, shifted), c(mul));
  };
  x = arith::AddIOp::create(b, loc, x, c(0x9E3779B97F4A7C15ULL));
  x = mix(x, 30, 0xBF58476D1CE4E5B9ULL);
  x = mix(x, 27, 0x94D049BB133111EBULL);
  return arith::XOrIOp::create(b, loc, x, arith::ShRUIOp::create(b, loc, x, c(31)));
}

/// Gumbel-softmax averaged over samples: (1/M) Σ_m softmax((z + g_m) / tau).
Value gumbelSoftmax(OpBuilder &b, Location loc, Value logits, double tau, int64_t samples,
                    int64_t seed) {
  auto type = cast<RankedTensorType>(logits.getType());
  SmallVector<Value> dims = dimsOf(b, loc, logits);
  Value init = zeros(b, loc, type, dims);
  auto loop = scf::ForOp::create(
      b, loc, constIndex(b, loc, 0), constIndex(b, loc, samples), constIndex(b, loc, 1),
      ValueRange{init}, [&](OpBuilder &nb, Location nl, Value m, ValueRange acc) {
        Value m64 = arith::IndexCastOp::create(nb, nl, nb.getI64Type(), m);
        Value noisy = mapF32(nb, nl, logits, [&](OpBuilder &eb, Location el, Value z) {
          auto i64 = [&](Value index) {
            return arith::IndexCastOp::create(eb, el, eb.getI64Type(), index).getResult();
          };
          auto c = [&](int64_t v) {
            return arith::ConstantOp::create(eb, el, eb.getI64IntegerAttr(v)).getResult();
          };
          Value t = i64(linalg::IndexOp::create(eb, el, 0));
          Value e = i64(linalg::IndexOp::create(eb, el, 1));
          Value counter = arith::OrIOp::create(
              eb, el,
              arith::OrIOp::create(eb, el, arith::ShLIOp::create(eb, el, m64, c(40)),
                                   arith::ShLIOp::create(eb, el, t, c(16))),
              e);
          Value r = splitmix64(eb, el, arith::XOrIOp::create(eb, el, c(seed),
                                                             splitmix64(eb, el, counter)));
          Value top53 = arith::UIToFPOp::create(eb, el, eb.getF64Type(),
                                                arith::ShRUIOp::create(eb, el, r, c(11)));
          auto f64 = [&](double v) {
            return arith::ConstantOp::create(eb, el, eb.getF64FloatAttr(v)).getResult();
          };
          Value u = arith::MulFOp::create(eb, el, arith::AddFOp::create(eb, el, top53, f64(0.5)),
                                          f64(1.0 / 9007199254740992.0));
          Value g = arith::NegFOp::create(
              eb, el,
              math::LogOp::create(eb, el, arith::NegFOp::create(eb, el, math::LogOp::create(eb, el, u))));
          Value g32 = arith::TruncFOp::create(eb, el, eb.getF32Type(), g);
          return arith::DivFOp::create(eb, el, arith::AddFOp::create(eb, el, z, g32),
                                       constF32(eb, el, tau))
              .getResult();
        });
        Value probs = rowSoftmax(nb, nl, noisy);
        scf::YieldOp::create(nb, nl, ValueRange{arith::AddFOp::create(nb, nl, acc[0], probs)});
      });
  Value inv = constF32(b, loc, 1.0 / static_cast<double>(samples));
  return mapF32(b, loc, loop.getResult(0), [&](OpBuilder &nb, Location nl, Value v) {
    return arith::MulFOp::create(nb, nl, v, inv).getResult();
  });
}

Value lowerScore(PatternRewriter &b, ScoreOp op, ContractionForm form) {
  Location loc = op.getLoc();
  Value z = op.getLogits(), result;
  switch (op.getFunc()) {
  case ScoringFunc::softmax:
    result = rowSoftmax(b, loc, z);
    break;
  case ScoringFunc::sigmoid:
    result = mapF32(b, loc, z, [](OpBuilder &nb, Location nl, Value v) {
      Value s = scalar::sigmoid(nb, nl, v);
      Value isNan = arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::UNO, v, v);
      return arith::SelectOp::create(nb, nl, isNan, constF32(nb, nl, 0.0), s).getResult();
    });
    break;
  case ScoringFunc::relu:
    // NaN > 0 is false, so NaN maps to 0.
    result = mapF32(b, loc, z, [](OpBuilder &nb, Location nl, Value v) {
      Value positive = arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OGT, v,
                                             constF32(nb, nl, 0.0));
      return arith::SelectOp::create(nb, nl, positive, v, constF32(nb, nl, 0.0)).getResult();
    });
    break;
  case ScoringFunc::gumbel_softmax:
    result = gumbelSoftmax(b, loc, z, op.getTau() ? op.getTau()->convertToDouble() : 1.0,
                           op.getSamples().value_or(1), op.getSeed().value_or(0));
    break;
  }
  return result;
}
using LowerScore = CastLowering<ScoreOp, lowerScore>;

struct LowerTopK : OpRewritePattern<TopKOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(TopKOp op, PatternRewriter &b) const override {
    Location loc = op.getLoc();
    Value scores = op.getScores(), bias = op.getBias();
    SmallVector<Value> dims = dimsOf(b, loc, scores);
    Value experts = dims[1];
    int64_t groups = op.getNumGroups();
    auto biased = [&](OpBuilder &nb, Location nl, Value t, Value e) {
      Value v = extract(nb, nl, scores, {t, e});
      return bias ? arith::AddFOp::create(nb, nl, v, extract(nb, nl, bias, {e})).getResult() : v;
    };
    SmallVector<Value> outs = forEachToken(
        b, loc, dims[0], emptySelection(b, loc, op, dims[0]),
        [&](OpBuilder &nb, Location nl, Value t, ValueRange state) {
          // Grouped selection: keep the topk_groups best groups.
          Value kept;
          Value groupSize;
          if (groups > 1) {
            groupSize = arith::DivUIOp::create(nb, nl, experts, constIndex(nb, nl, groups));
            kept = keptGroups(nb, nl, op, t, groupSize, biased);
          }
          auto eligible = [&](OpBuilder &eb, Location el, Value e) -> Value {
            if (!kept)
              return arith::ConstantOp::create(eb, el, eb.getBoolAttr(true));
            return extract(eb, el, kept, {arith::DivUIOp::create(eb, el, e, groupSize)});
          };
          return topKScan(
              nb, nl, constIndex(nb, nl, op.getK()), experts,
              [&](OpBuilder &eb, Location el, Value e) { return biased(eb, el, t, e); }, eligible,
              state,
              [&](OpBuilder &wb, Location wl, Value j, Value found, Value index, Value,
                  ValueRange outs) { return writePick(wb, wl, scores, t, j, found, index, outs); });
        });
    b.replaceOp(op, outs);
    return success();
  }

private:
  /// For token t: a [G] i1 tensor, true for the groups kept. A group's score
  /// is its best biased score (max) or the sum of its best two (top2_sum); a
  /// group is kept when fewer than topk_groups groups rank before it.
  static Value keptGroups(OpBuilder &b, Location loc, TopKOp op, Value t, Value groupSize,
                          function_ref<Value(OpBuilder &, Location, Value, Value)> biased) {
    int64_t groups = op.getNumGroups();
    Value zero = constIndex(b, loc, 0), one = constIndex(b, loc, 1);
    Value numGroups = constIndex(b, loc, groups);
    int64_t picks = op.getGroupScore() == GroupScore::max ? 1 : 2;
    auto scoreType = RankedTensorType::get({groups}, b.getF32Type());
    Value scoreInit = zeros(b, loc, scoreType, {numGroups});
    auto scoreLoop = scf::ForOp::create(
        b, loc, zero, numGroups, one, ValueRange{scoreInit},
        [&](OpBuilder &nb, Location nl, Value g, ValueRange iter) {
          Value base = arith::MulIOp::create(nb, nl, g, groupSize);
          SmallVector<Value> sum = topKScan(
              nb, nl, constIndex(nb, nl, picks), groupSize,
              [&](OpBuilder &eb, Location el, Value c) {
                return biased(eb, el, t, arith::AddIOp::create(eb, el, base, c));
              },
              [&](OpBuilder &eb, Location el, Value) -> Value {
                return arith::ConstantOp::create(eb, el, eb.getBoolAttr(true));
              },
              ValueRange{constF32(nb, nl, 0.0)},
              [&](OpBuilder &wb, Location wl, Value, Value, Value, Value value, ValueRange acc) {
                return SmallVector<Value>{arith::AddFOp::create(wb, wl, acc[0], value)};
              });
          scf::YieldOp::create(nb, nl, ValueRange{insert(nb, nl, sum[0], iter[0], {g})});
        });
    Value scoresOfGroups = scoreLoop.getResult(0);
    auto keptType = RankedTensorType::get({groups}, b.getI1Type());
    Value keptInit = filled(b, loc, keptType, {numGroups},
                            arith::ConstantOp::create(b, loc, b.getBoolAttr(false)));
    auto keptLoop = scf::ForOp::create(
        b, loc, zero, numGroups, one, ValueRange{keptInit},
        [&](OpBuilder &nb, Location nl, Value g, ValueRange iter) {
          Value gs = extract(nb, nl, scoresOfGroups, {g});
          auto count = scf::ForOp::create(
              nb, nl, zero, numGroups, one, ValueRange{constIndex(nb, nl, 0)},
              [&](OpBuilder &cb, Location cl, Value h, ValueRange n) {
                Value before = ranksBefore(cb, cl, extract(cb, cl, scoresOfGroups, {h}), h, gs, g);
                Value inc = arith::SelectOp::create(cb, cl, before, constIndex(cb, cl, 1),
                                                    constIndex(cb, cl, 0));
                scf::YieldOp::create(cb, cl, ValueRange{arith::AddIOp::create(cb, cl, n[0], inc)});
              });
          Value keep = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, count.getResult(0),
                                             constIndex(nb, nl, op.getTopkGroups()));
          scf::YieldOp::create(nb, nl, ValueRange{insert(nb, nl, keep, iter[0], {g})});
        });
    return keptLoop.getResult(0);
  }
};

SmallVector<Value> lowerThreshold(PatternRewriter &b, ThresholdOp op, ContractionForm) {
  Location loc = op.getLoc();
  Value scores = op.getScores();
  SmallVector<Value> dims = dimsOf(b, loc, scores);
  Value threshold = constF32(b, loc, op.getThreshold().convertToDouble());
  SmallVector<Value> outs = forEachToken(
      b, loc, dims[0], emptySelection(b, loc, op, dims[0]),
      [&](OpBuilder &nb, Location nl, Value t, ValueRange state) {
        return topKScan(
            nb, nl, constIndex(nb, nl, op.getMaxK()), dims[1],
            [&](OpBuilder &eb, Location el, Value e) { return extract(eb, el, scores, {t, e}); },
            [&](OpBuilder &eb, Location el, Value e) -> Value {
              return arith::CmpFOp::create(eb, el, arith::CmpFPredicate::OGT,
                                           extract(eb, el, scores, {t, e}), threshold);
            },
            state,
            [&](OpBuilder &wb, Location wl, Value j, Value found, Value index, Value,
                ValueRange outs) { return writePick(wb, wl, scores, t, j, found, index, outs); });
      });
  return llvm::to_vector(ValueRange(outs));
}
using LowerThreshold = FunctionLowering<ThresholdOp, lowerThreshold>;

SmallVector<Value> lowerExpertChoice(PatternRewriter &b, ExpertChoiceOp op, ContractionForm) {
  Location loc = op.getLoc();
  Value scores = op.getScores();
  SmallVector<Value> dims = dimsOf(b, loc, scores);
  Value zero = constIndex(b, loc, 0), one = constIndex(b, loc, 1);
  Value trueValue = arith::ConstantOp::create(b, loc, b.getBoolAttr(true));
  // picked[t, e]: expert e chose token t among its top-capacity.
  auto pickedType = RankedTensorType::get(
      cast<RankedTensorType>(scores.getType()).getShape(), b.getI1Type());
  Value pickedInit = filled(b, loc, pickedType, dims,
                            arith::ConstantOp::create(b, loc, b.getBoolAttr(false)));
  auto perExpert = scf::ForOp::create(
      b, loc, zero, dims[1], one, ValueRange{pickedInit},
      [&](OpBuilder &nb, Location nl, Value e, ValueRange iter) {
        SmallVector<Value> next = topKScan(
            nb, nl, constIndex(nb, nl, op.getCapacity()), dims[0],
            [&](OpBuilder &eb, Location el, Value t) { return extract(eb, el, scores, {t, e}); },
            [&](OpBuilder &eb, Location el, Value) -> Value {
              return arith::ConstantOp::create(eb, el, eb.getBoolAttr(true));
            },
            iter,
            [&](OpBuilder &wb, Location wl, Value, Value found, Value t, Value, ValueRange st) {
              auto ifOp = scf::IfOp::create(
                  wb, wl, found,
                  [&](OpBuilder &tb, Location tl) {
                    scf::YieldOp::create(tb, tl, insert(tb, tl, trueValue, st[0], {t, e}));
                  },
                  [&](OpBuilder &eb, Location el) { scf::YieldOp::create(eb, el, st[0]); });
              return SmallVector<Value>{ifOp.getResult(0)};
            });
        scf::YieldOp::create(nb, nl, next);
      });
  markParallel(perExpert); // expert e writes column e only
  Value picked = perExpert.getResult(0);

  std::optional<uint64_t> tokenK = op.getTokenK();
  SmallVector<Value> outs = forEachToken(
      b, loc, dims[0], emptySelection(b, loc, op, dims[0]),
      [&](OpBuilder &nb, Location nl, Value t, ValueRange state) -> SmallVector<Value> {
        if (!tokenK) {
          // Slot e holds expert e when e picked the token.
          auto slots = scf::ForOp::create(
              nb, nl, zero, dims[1], one, state,
              [&](OpBuilder &sb, Location sl, Value e, ValueRange outs) {
                Value p = extract(sb, sl, picked, {t, e});
                SmallVector<Value> next = writePick(sb, sl, scores, t, e, p, e, outs);
                scf::YieldOp::create(sb, sl, next);
              });
          return llvm::to_vector_of<Value>(slots.getResults());
        }
        // Bidirectional: the token's top-token_k that also picked it, compacted.
        SmallVector<Value> init = llvm::to_vector(state);
        init.push_back(constIndex(nb, nl, 0));
        SmallVector<Value> res = topKScan(
            nb, nl, constIndex(nb, nl, *tokenK), dims[1],
            [&](OpBuilder &eb, Location el, Value e) { return extract(eb, el, scores, {t, e}); },
            [&](OpBuilder &eb, Location el, Value) -> Value {
              return arith::ConstantOp::create(eb, el, eb.getBoolAttr(true));
            },
            init,
            [&](OpBuilder &wb, Location wl, Value, Value found, Value e, Value,
                ValueRange st) -> SmallVector<Value> {
              Value safe = arith::SelectOp::create(wb, wl, found, e, constIndex(wb, wl, 0));
              Value keep = arith::AndIOp::create(wb, wl, found, extract(wb, wl, picked, {t, safe}));
              auto ifOp = scf::IfOp::create(
                  wb, wl, keep,
                  [&](OpBuilder &tb, Location tl) {
                    SmallVector<Value> written =
                        writePick(tb, tl, scores, t, st[2], keep, safe, st.take_front(2));
                    written.push_back(arith::AddIOp::create(tb, tl, st[2], constIndex(tb, tl, 1)));
                    scf::YieldOp::create(tb, tl, written);
                  },
                  [&](OpBuilder &eb, Location el) { scf::YieldOp::create(eb, el, st); });
              return llvm::to_vector_of<Value>(ifOp.getResults());
            });
        res.pop_back();
        return res;
      });
  return llvm::to_vector(ValueRange(outs));
}
using LowerExpertChoice = FunctionLowering<ExpertChoiceOp, lowerExpertChoice>;

SmallVector<Value> lowerRenormalize(PatternRewriter &b, RenormalizeOp op, ContractionForm) {
  Location loc = op.getLoc();
  Value weights = op.getWeights(), indices = op.getIndices();
  SmallVector<Value> dims = dimsOf(b, loc, weights);
  Value zero = constIndex(b, loc, 0), one = constIndex(b, loc, 1);
  int64_t slots = cast<RankedTensorType>(weights.getType()).getDimSize(1);
  int64_t denominatorSlots = op.getDenominatorSlots() > 0 ? op.getDenominatorSlots() : slots;
  SmallVector<int64_t> skip = llvm::to_vector(op.getSkip());
  bool softmax = op.getMode() == RenormMode::softmax;
  double scale = op.getScale().convertToDouble();
  double inf = std::numeric_limits<double>::infinity();

  // A slot counts when it names an expert that is not skipped.
  auto counted = [&](OpBuilder &nb, Location nl, Value t, Value j) {
    Value e = extract(nb, nl, indices, {t, j});
    Value ok = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::sge, e, constI32(nb, nl, 0));
    for (int64_t s : skip)
      ok = arith::AndIOp::create(
          nb, nl, ok,
          arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::ne, e, constI32(nb, nl, s)));
    return ok;
  };
  auto inDenominator = [&](OpBuilder &nb, Location nl, Value t, Value j) {
    Value prefix = arith::CmpIOp::create(nb, nl, arith::CmpIPredicate::slt, j,
                                         constIndex(nb, nl, denominatorSlots));
    return arith::AndIOp::create(nb, nl, prefix, counted(nb, nl, t, j)).getResult();
  };
  auto weightOf = [&](OpBuilder &nb, Location nl, Value t, Value j) {
    Value w = extract(nb, nl, weights, {t, j});
    return softmax ? nanToNegInf(nb, nl, w) : w;
  };
  // Folds `step(acc, w)` over the denominator slots of token t.
  auto reduce = [&](OpBuilder &nb, Location nl, Value t, Value init,
                    function_ref<Value(OpBuilder &, Location, Value, Value)> step) {
    auto loop = scf::ForOp::create(
        nb, nl, zero, constIndex(nb, nl, slots), one, ValueRange{init},
        [&](OpBuilder &rb, Location rl, Value j, ValueRange acc) {
          Value next = arith::SelectOp::create(rb, rl, inDenominator(rb, rl, t, j),
                                               step(rb, rl, acc[0], weightOf(rb, rl, t, j)),
                                               acc[0]);
          scf::YieldOp::create(rb, rl, ValueRange{next});
        });
    return loop.getResult(0);
  };

  Value init = zeros(b, loc, cast<RankedTensorType>(op.getType()), dims);
  SmallVector<Value> out = forEachToken(
      b, loc, dims[0], ValueRange{init},
      [&](OpBuilder &nb, Location nl, Value t, ValueRange state) -> SmallVector<Value> {
        auto add = [](OpBuilder &rb, Location rl, Value a, Value w) {
          return arith::AddFOp::create(rb, rl, a, w).getResult();
        };
        Value count = reduce(nb, nl, t, constF32(nb, nl, 0.0),
                             [](OpBuilder &rb, Location rl, Value a, Value) {
                               return arith::AddFOp::create(rb, rl, a, constF32(rb, rl, 1.0))
                                   .getResult();
                             });
        Value mx, infCount, denom;
        if (softmax) {
          mx = reduce(nb, nl, t, constF32(nb, nl, -inf), [](OpBuilder &rb, Location rl, Value a,
                                                            Value w) {
            return arith::MaximumFOp::create(rb, rl, a, w).getResult();
          });
          infCount = reduce(nb, nl, t, constF32(nb, nl, 0.0),
                            [&](OpBuilder &rb, Location rl, Value a, Value w) {
                              Value isInf = arith::CmpFOp::create(
                                  rb, rl, arith::CmpFPredicate::OEQ, w, constF32(rb, rl, inf));
                              return arith::SelectOp::create(
                                         rb, rl, isInf,
                                         arith::AddFOp::create(rb, rl, a, constF32(rb, rl, 1.0)), a)
                                  .getResult();
                            });
          denom = reduce(nb, nl, t, constF32(nb, nl, 0.0),
                         [&](OpBuilder &rb, Location rl, Value a, Value w) {
                           Value ex = math::ExpOp::create(rb, rl, arith::SubFOp::create(rb, rl, w, mx));
                           return arith::AddFOp::create(rb, rl, a, ex).getResult();
                         });
        } else {
          Value sum = reduce(nb, nl, t, constF32(nb, nl, 0.0), add);
          if (double epsilon = op.getEpsilon().convertToDouble(); epsilon != 0.0)
            sum = arith::AddFOp::create(nb, nl, sum, constF32(nb, nl, epsilon));
          Value isZero = arith::CmpFOp::create(nb, nl, arith::CmpFPredicate::OEQ, sum,
                                               constF32(nb, nl, 0.0));
          denom = arith::SelectOp::create(nb, nl, isZero, constF32(nb, nl, 1.0), sum);
        }
        auto perSlot = scf::ForOp::create(
            nb, nl, zero, constIndex(nb, nl, slots), one, state,
            [&](OpBuilder &sb, Location sl, Value j, ValueRange outs) {
              Value w = weightOf(sb, sl, t, j);
              Value value;
              if (softmax) {
                value = softmaxEntry(sb, sl, w, mx, denom, infCount, count);
                // No counted slot at all: every weight is 0.
                Value none = arith::CmpFOp::create(sb, sl, arith::CmpFPredicate::OEQ, count,
                                                   constF32(sb, sl, 0.0));
                value = arith::SelectOp::create(sb, sl, none, constF32(sb, sl, 0.0), value);
              } else {
                value = arith::DivFOp::create(sb, sl, w, denom);
              }
              value = arith::MulFOp::create(sb, sl, value, constF32(sb, sl, scale));
              value = arith::SelectOp::create(sb, sl, counted(sb, sl, t, j), value,
                                              constF32(sb, sl, 0.0));
              scf::YieldOp::create(sb, sl, ValueRange{insert(sb, sl, value, outs[0], {t, j})});
            });
        return llvm::to_vector_of<Value>(perSlot.getResults());
      });
  return llvm::to_vector(ValueRange(out));
}
using LowerRenormalize = FunctionLowering<RenormalizeOp, lowerRenormalize>;

} // namespace

void mlir::moe::populateMoeRoutingToLinalgPatterns(RewritePatternSet &patterns,
                                                   ContractionForm form) {
  patterns.add<LowerGroupMean, LowerExpandGroups, LowerScore, LowerTopK, LowerThreshold,
               LowerExpertChoice, LowerRenormalize>(patterns.getContext());
  patterns.add<LowerRouter, LowerGatingResidual>(patterns.getContext(), form);
}
