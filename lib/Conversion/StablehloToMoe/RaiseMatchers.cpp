//===- RaiseMatchers.cpp - pieces of JAX MoE code matched in StableHLO ----===//

#include "RaiseMatchers.h"

#include "mlir/Analysis/SliceAnalysis.h"
#include "mlir/AsmParser/AsmParser.h"

#include <cmath>

using namespace mlir;
using namespace mlir::moe;

namespace mlir::moe::stablehlo_raise {

/// The scalar a splat constant (possibly broadcast or converted) holds.
std::optional<double> splatValue(Value v) {
  while (true) {
    if (auto b = v.getDefiningOp<shlo::BroadcastInDimOp>())
      v = b.getOperand();
    else if (auto c = v.getDefiningOp<shlo::ConvertOp>())
      v = c.getOperand();
    else
      break;
  }
  auto constant = v.getDefiningOp<shlo::ConstantOp>();
  auto dense = constant ? dyn_cast<DenseElementsAttr>(constant.getValue()) : nullptr;
  if (!dense || !dense.isSplat())
    return std::nullopt;
  Attribute e = dense.getSplatValue<Attribute>();
  if (auto f = dyn_cast<FloatAttr>(e))
    return f.getValueAsDouble();
  if (auto i = dyn_cast<IntegerAttr>(e))
    return static_cast<double>(i.getValue().getSExtValue());
  return std::nullopt;
}

bool isSplat(Value v, double value) {
  std::optional<double> s = splatValue(v);
  return s && *s == value;
}

/// `v` through element type conversions.
Value withoutConverts(Value v) {
  while (auto convert = v.getDefiningOp<shlo::ConvertOp>())
    v = convert.getOperand();
  return v;
}

/// `v` through broadcast_in_dim ops that keep dimension 0 in place (a
/// per-row value spread over columns), down to a rank-1 tensor.
Value rowValue(Value v) {
  int64_t rank = cast<RankedTensorType>(v.getType()).getRank();
  while (true) {
    if (auto c = v.getDefiningOp<shlo::ConvertOp>(); c && isa<FloatType>(cast<RankedTensorType>(c.getType()).getElementType())) {
      v = c.getOperand(); // a 16-bit row computed in f32
      continue;
    }
    auto b = v.getDefiningOp<shlo::BroadcastInDimOp>();
    if (!b)
      break;
    ArrayRef<int64_t> dims = b.getBroadcastDimensions();
    if (dims.empty() || dims[0] != 0)
      return nullptr;
    v = b.getOperand();
  }
  // [T] for rows of [T, E]; [B, S] for rows of [B, S, E] (leading dims kept).
  int64_t got = cast<RankedTensorType>(v.getType()).getRank();
  return got == 1 || (rank > 2 && got == rank - 1) ? v : nullptr;
}

bool reducesLastDim(shlo::ReduceOp sum) {
  int64_t rank = cast<RankedTensorType>(sum.getInputs()[0].getType()).getRank();
  return sum.getDimensions() == ArrayRef<int64_t>{rank - 1};
}

/// JAX's index normalisation `i < 0 ? i + n : i` stripped; `v` otherwise.
Value unwrapIndex(Value v) {
  auto select = v.getDefiningOp<shlo::SelectOp>();
  if (!select)
    return v;
  auto negative = select.getPred().getDefiningOp<shlo::CompareOp>();
  auto shifted = select.getOnTrue().getDefiningOp<shlo::AddOp>();
  Value i = select.getOnFalse();
  if (!negative || negative.getComparisonDirection() != shlo::ComparisonDirection::LT ||
      negative.getLhs() != i || !isSplat(negative.getRhs(), 0) || !shifted || shifted.getLhs() != i)
    return v;
  return i;
}

/// `v` = x // k for a positive constant k (jnp's floor division, or a
/// plain division); returns x.
FailureOr<Value> floorDivided(Value v, int64_t k, NoMatch &fail) {
  auto isK = [&](Value c) { return isSplat(c, static_cast<double>(k)); };
  if (auto div = v.getDefiningOp<shlo::DivOp>(); div && isK(div.getRhs()))
    return div.getLhs();
  // select(sign(x) != sign(k) && x % k != 0, x / k - 1, x / k)
  auto select = v.getDefiningOp<shlo::SelectOp>();
  auto quotient = select ? select.getOnFalse().getDefiningOp<shlo::DivOp>() : nullptr;
  auto minusOne = select ? select.getOnTrue().getDefiningOp<shlo::SubtractOp>() : nullptr;
  auto cond = select ? select.getPred().getDefiningOp<shlo::AndOp>() : nullptr;
  if (!quotient || !isK(quotient.getRhs()) || !minusOne || minusOne.getLhs() != quotient.getResult() ||
      !isSplat(minusOne.getRhs(), 1) || !cond) {
    fail.why = "the token index is not slot // " + std::to_string(k);
    return failure();
  }
  Value x = quotient.getLhs();
  auto signs = cond.getLhs().getDefiningOp<shlo::CompareOp>();
  auto rest = cond.getRhs().getDefiningOp<shlo::CompareOp>();
  auto xSign = signs ? signs.getLhs().getDefiningOp<shlo::SignOp>() : nullptr;
  auto rem = rest ? rest.getLhs().getDefiningOp<shlo::RemOp>() : nullptr;
  if (!signs || signs.getComparisonDirection() != shlo::ComparisonDirection::NE || !xSign ||
      xSign.getOperand() != x || !rest || rest.getComparisonDirection() != shlo::ComparisonDirection::NE || !rem ||
      rem.getLhs() != x || !isK(rem.getRhs()) || !isSplat(rest.getRhs(), 0)) {
    fail.why = "the token index's floor division is not jnp's";
    return failure();
  }
  return x;
}

bool readsTopK(Value v) {
  SetVector<Operation *> slice;
  BackwardSliceOptions options;
  options.omitUsesFromAbove = false;
  (void)getBackwardSlice(v, &slice, options);
  return llvm::any_of(slice, [](Operation *op) { return isa<chlo::TopKOp>(op); });
}

/// The body of a reduction/scatter is one `stablehlo.add` of its arguments.
bool isAddBody(Region &body) {
  Block &block = body.front();
  if (block.getNumArguments() != 2 || !llvm::hasNItems(block, 2))
    return false;
  auto add = dyn_cast<shlo::AddOp>(block.front());
  return add && add.getLhs() == block.getArgument(0) && add.getRhs() == block.getArgument(1) &&
         block.getTerminator()->getNumOperands() == 1 && block.getTerminator()->getOperand(0) == add.getResult();
}

/// A 1-D row gather `operand[indices]` (x[i] or x[i, :]) with indices
/// [n, 1]; returns the unwrapped index vector.
FailureOr<Value> rowGather(shlo::GatherOp gather, NoMatch &fail) {
  shlo::GatherDimensionNumbersAttr dims = gather.getDimensionNumbers();
  auto operand = cast<RankedTensorType>(gather.getOperand().getType());
  SmallVector<int64_t> slice = {1};
  SmallVector<int64_t> offsets;
  for (int64_t d = 1; d < operand.getRank(); ++d) {
    slice.push_back(operand.getDimSize(d));
    offsets.push_back(d);
  }
  Value index = rowValue(gather.getStartIndices());
  if (dims.getCollapsedSliceDims() != ArrayRef<int64_t>{0} || dims.getStartIndexMap() != ArrayRef<int64_t>{0} ||
      dims.getIndexVectorDim() != 1 || dims.getOffsetDims() != ArrayRef<int64_t>(offsets) ||
      gather.getSliceSizes() != ArrayRef<int64_t>(slice) || !dims.getOperandBatchingDims().empty() || !index) {
    fail.why = "a gather is not a row gather x[i]";
    return failure();
  }
  return unwrapIndex(index);
}

/// softmax(z) over the last dim of [T, E] as jax.nn.softmax writes it;
/// returns z.
FailureOr<Value> softmaxInput(Value probs, NoMatch &fail) {
  auto div = def<shlo::DivOp>(probs, fail, "the top-k scores");
  if (failed(div))
    return failure();
  auto exp = def<shlo::ExpOp>(div->getLhs(), fail, "the softmax numerator");
  Value sumRow = rowValue(div->getRhs());
  auto sum = sumRow ? sumRow.getDefiningOp<shlo::ReduceOp>() : nullptr;
  if (failed(exp) || !sum || sum.getInputs().size() != 1 || withoutConverts(sum.getInputs()[0]) != exp->getResult() ||
      !reducesLastDim(sum) || !isAddBody(sum.getBody())) {
    fail.why = "the top-k scores are not a softmax over the experts";
    return failure();
  }
  auto shifted = def<shlo::SubtractOp>(exp->getOperand(), fail, "the softmax exponent");
  if (failed(shifted))
    return failure();
  // The shift (the row max, for stability) cancels: any per-row value works.
  if (!rowValue(shifted->getRhs())) {
    fail.why = "the softmax shift is not a per-row value";
    return failure();
  }
  return shifted->getLhs();
}

/// jax.nn.log_softmax(z) over the last dim (shifted - log(sum(exp(shifted)))
/// with shifted = z - a per-row value); returns z or null.
static Value logSoftmaxInput(Value v) {
  auto difference = v.getDefiningOp<shlo::SubtractOp>();
  // The log is taken of the kept-dims sum [T, 1], then broadcast.
  SmallVector<int64_t> dims;
  Value logRow = difference ? broadcastChainSource(difference.getRhs(), dims) : Value();
  auto log = logRow && !dims.empty() && dims[0] == 0 ? logRow.getDefiningOp<shlo::LogOp>() : nullptr;
  Value sumRow = log ? rowValue(log.getOperand()) : Value();
  auto sum = sumRow ? sumRow.getDefiningOp<shlo::ReduceOp>() : nullptr;
  auto exp = sum && sum.getInputs().size() == 1 ? withoutConverts(sum.getInputs()[0]).getDefiningOp<shlo::ExpOp>()
                                                : nullptr;
  if (!exp || exp.getOperand() != difference.getLhs() || !reducesLastDim(sum) || !isAddBody(sum.getBody()))
    return nullptr;
  auto shifted = difference.getLhs().getDefiningOp<shlo::SubtractOp>();
  return shifted && rowValue(shifted.getRhs()) ? shifted.getLhs() : nullptr;
}

/// jax.nn.sigmoid(z): logistic(z) or 1 / (1 + exp(-z)); returns z.
Value sigmoidInput(Value v) {
  if (auto logistic = v.getDefiningOp<shlo::LogisticOp>())
    return logistic.getOperand();
  auto recip = v.getDefiningOp<shlo::DivOp>();
  auto denom = recip ? recip.getRhs().getDefiningOp<shlo::AddOp>() : nullptr;
  if (!recip || !isSplat(recip.getLhs(), 1) || !denom)
    return nullptr;
  Value e = isSplat(denom.getLhs(), 1) ? denom.getRhs() : (isSplat(denom.getRhs(), 1) ? denom.getLhs() : nullptr);
  auto exp = e ? e.getDefiningOp<shlo::ExpOp>() : nullptr;
  auto neg = exp ? exp.getOperand().getDefiningOp<shlo::NegOp>() : nullptr;
  return neg ? neg.getOperand() : nullptr;
}

/// silu(g) as jax.nn.silu writes it (g * sigmoid(g)); returns g.
Value siluInput(Value v) {
  auto mul = v.getDefiningOp<shlo::MulOp>();
  if (!mul)
    return nullptr;
  Value g = mul.getLhs();
  return sigmoidInput(mul.getRhs()) == g ? g : nullptr;
}

/// `a * b` with the factors in either order.
bool isProduct(Value v, function_ref<bool(Value, Value)> match) {
  auto mul = v.getDefiningOp<shlo::MulOp>();
  return mul && (match(mul.getLhs(), mul.getRhs()) || match(mul.getRhs(), mul.getLhs()));
}

/// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) as jax.nn.gelu(approximate=True)
/// writes it; returns x.
Value geluTanhInput(Value v) {
  auto near = [](Value c, double value) {
    std::optional<double> s = splatValue(c);
    return s && std::abs(*s - value) < 1e-6 * std::max(1.0, std::abs(value));
  };
  Value x;
  bool ok = isProduct(v, [&](Value a, Value halfTerm) {
    return isProduct(halfTerm, [&](Value half, Value onePlus) {
      auto add = onePlus.getDefiningOp<shlo::AddOp>();
      if (!near(half, 0.5) || !add)
        return false;
      Value t = near(add.getLhs(), 1.0) ? add.getRhs() : (near(add.getRhs(), 1.0) ? add.getLhs() : nullptr);
      auto tanh = t ? t.getDefiningOp<shlo::TanhOp>() : nullptr;
      return tanh && isProduct(tanh.getOperand(), [&](Value c, Value inner) {
               auto sum = inner.getDefiningOp<shlo::AddOp>();
               if (!near(c, 0.7978845608) || !sum || sum.getLhs() != a)
                 return false;
               return isProduct(sum.getRhs(), [&](Value k, Value cube) {
                 return near(k, 0.044715) && isProduct(cube, [&](Value sq, Value y) {
                          return y == a && isProduct(sq, [&](Value p, Value q) { return p == a && q == a; });
                        });
               });
             }) &&
             (x = a, true);
    });
  });
  return ok ? x : nullptr;
}

/// 0.5 x * erfc(-x / sqrt 2) as jax.nn.gelu(approximate=False) writes it;
/// returns x.
Value geluErfInput(Value v) {
  auto mul = v.getDefiningOp<shlo::MulOp>();
  auto half = mul ? mul.getLhs().getDefiningOp<shlo::MulOp>() : nullptr;
  auto erfc = mul ? mul.getRhs().getDefiningOp<chlo::ErfcOp>() : nullptr;
  auto scaled = erfc ? erfc.getOperand().getDefiningOp<shlo::MulOp>() : nullptr;
  auto neg = scaled ? scaled.getLhs().getDefiningOp<shlo::NegOp>() : nullptr;
  if (half && isSplat(half.getLhs(), 0.5) && neg && neg.getOperand() == half.getRhs() &&
      splatValue(scaled.getRhs()) && std::abs(*splatValue(scaled.getRhs()) - 0.70710678118) < 1e-6)
    return half.getRhs();
  return nullptr;
}

/// max(x, 0) in either order; returns x.
Value reluInput(Value v) {
  auto max = v.getDefiningOp<shlo::MaxOp>();
  if (!max)
    return nullptr;
  if (isSplat(max.getRhs(), 0))
    return max.getLhs();
  return isSplat(max.getLhs(), 0) ? max.getRhs() : nullptr;
}

/// relu(x)^2 as jnp.square(jax.nn.relu(x)) or `** 2` write it (r · r of
/// r = max(x, 0)); returns x.
Value relu2Input(Value v) {
  auto mul = v.getDefiningOp<shlo::MulOp>();
  return mul && mul.getLhs() == mul.getRhs() ? reluInput(mul.getLhs()) : nullptr;
}

/// `sum + c` or `max(sum, c)` (c a splat) under `v`'s broadcasts: the
/// sum's row, c, and whether it is the max.
struct GuardedRow {
  Value row;
  double constant = 0;
  bool clamped = false;
};
static GuardedRow guardedRow(Value v) {
  while (true) {
    if (auto c = v.getDefiningOp<shlo::ConvertOp>())
      v = c.getOperand();
    else if (auto b = v.getDefiningOp<shlo::BroadcastInDimOp>())
      v = b.getOperand();
    else if (auto r = v.getDefiningOp<shlo::ReshapeOp>())
      v = r.getOperand();
    else
      break;
  }
  Operation *guard = v.getDefiningOp();
  if (!isa_and_nonnull<shlo::AddOp, shlo::MaxOp>(guard))
    return {};
  for (auto [row, constant] : {std::pair(guard->getOperand(0), guard->getOperand(1)),
                               std::pair(guard->getOperand(1), guard->getOperand(0))})
    if (std::optional<double> c = splatValue(constant)) {
      Value sumRow = rowValue(row);
      if (!sumRow)
        if (auto r = row.getDefiningOp<shlo::ReshapeOp>()) // keepdims: [T] -> [T, 1]
          sumRow = rowValue(r.getOperand());
      if (!sumRow && withoutConverts(row).getDefiningOp<shlo::ReduceOp>()) // [B, S] sums of [B, S, K]
        sumRow = row;
      return {sumRow, *c, isa<shlo::MaxOp>(guard)};
    }
  return {};
}

Value renormalisedInput(Value v, double *epsilon, double *clampBelow) {
  auto div = v.getDefiningOp<shlo::DivOp>();
  Value sumRow = div ? rowValue(div.getRhs()) : Value();
  if (epsilon)
    *epsilon = 0;
  if (clampBelow)
    *clampBelow = 0;
  // 16-bit sums are taken in f32.
  auto sumOf = [](Value row) { return row ? withoutConverts(row).getDefiningOp<shlo::ReduceOp>() : nullptr; };
  // The row may be the sum plus epsilon, or clamped from below, broadcast
  // once ([T] -> [T, K]).
  if (div && !sumOf(sumRow) && epsilon) {
    GuardedRow guarded = guardedRow(div.getRhs());
    if (guarded.clamped && !clampBelow)
      return nullptr;
    sumRow = guarded.row;
    *(guarded.clamped ? clampBelow : epsilon) = guarded.constant;
  }
  auto sum = sumOf(sumRow);
  if (!sum || withoutConverts(sum.getInputs()[0]) != div.getLhs() || !reducesLastDim(sum) ||
      !isAddBody(sum.getBody()))
    return nullptr;
  return div.getLhs();
}

Type sixteenBitScores(chlo::TopKOp topk) {
  auto sixteen = [](Value v) {
    Type element = cast<RankedTensorType>(v.getType()).getElementType();
    return element.isBF16() || element.isF16() ? element : Type();
  };
  Value scores = topk.getOperand();
  if (Type own = sixteen(scores))
    return own; // 16-bit scores, or f32 ones rounded to 16 bits
  auto widened = scores.getDefiningOp<shlo::ConvertOp>();
  return widened ? sixteen(widened.getOperand()) : Type();
}

/// The gate weights `vals` of softmax top-k routing of `x`
/// (`vals, idx = top_k(softmax(x @ wr), k)`, optionally divided by their
/// sum); fills the routing fields of `layer` and returns the top-k op.
FailureOr<chlo::TopKOp> matchSoftmaxTopK(Value vals, Value x, RecognisedLayer &layer, NoMatch &fail) {
  double epsilon = 0, clampBelow = 0;
  if (vals.getDefiningOp<shlo::DivOp>()) {
    Value numerator = renormalisedInput(vals, &epsilon, &clampBelow);
    if (!numerator) {
      fail.why = "the gate weights are divided by something other than their sum";
      return failure();
    }
    layer.normalize = true;
    vals = numerator;
  }
  // exp of the top-k of log_softmax(z): softmax top-k (log keeps the order,
  // exp(log_softmax(z)) is softmax(z) up to rounding).
  bool logSoftmaxPicks = false;
  if (auto exp = vals.getDefiningOp<shlo::ExpOp>(); exp && exp.getOperand().getDefiningOp<chlo::TopKOp>()) {
    vals = exp.getOperand();
    logSoftmaxPicks = true;
  }
  auto topk = vals.getDefiningOp<chlo::TopKOp>();
  if (!topk || vals != topk.getValues()) {
    fail.why = "the gate weights are not top-k values";
    return failure();
  }
  layer.k = topk.getK();
  layer.scoresType = sixteenBitScores(topk);
  // sum + eps (DeepSeek's 1e-20 against a zero sum): the k largest of E
  // softmax probabilities sum to at least k / E, so an eps below 2^-26 of
  // that is lost in the f32 sum (the sum's half ulp is larger): exactly
  // the sum alone. A larger one (LFM2-MoE's 1e-6) is the routing's
  // norm_epsilon.
  if (epsilon != 0) {
    int64_t experts = cast<RankedTensorType>(topk.getOperand().getType()).getShape().back();
    double bound = double(layer.k) / double(experts) * std::ldexp(1.0, -26);
    if (!(epsilon > 0) || !std::isfinite(epsilon)) {
      fail.why = "the gate weights are divided by their sum plus " + std::to_string(epsilon) +
                 ", which is not a positive constant";
      return failure();
    }
    if (epsilon > bound)
      layer.normEpsilon = epsilon;
  }
  // max(sum, c) (torch's clamp(min=finfo.eps)) is the sum wherever the sum
  // is at least c: always, for c up to half of k / E (the least the k
  // largest softmax probabilities sum to, with room for rounding).
  if (clampBelow != 0) {
    int64_t experts = cast<RankedTensorType>(topk.getOperand().getType()).getShape().back();
    if (!(clampBelow > 0) || clampBelow > 0.5 * double(layer.k) / double(experts)) {
      fail.why = "the gate weights are divided by their sum clamped from below by " + std::to_string(clampBelow) +
                 ", which the sum can fall under";
      return failure();
    }
  }
  // An f32 softmax rounded to the 16-bit scores (probs.astype(bf16)):
  // what scores_type means.
  Value scores = topk.getOperand();
  if (auto narrowed = scores.getDefiningOp<shlo::ConvertOp>();
      narrowed && layer.scoresType &&
      cast<RankedTensorType>(narrowed.getOperand().getType()).getElementType().isF32())
    scores = narrowed.getOperand();
  FailureOr<Value> logits = failure();
  if (logSoftmaxPicks) {
    if (Value z = logSoftmaxInput(scores))
      logits = z;
    else
      fail.why = "the top-k values are exponentiated, but the top-k scores are not a log_softmax over the experts";
  } else {
    logits = softmaxInput(scores, fail);
  }
  if (failed(logits))
    return failure();
  if (failed(routerLogits(*logits, x, layer, fail)))
    return failure();
  return topk;
}

/// The bias vector added to the logits `z` [..., E]: a value with E elements
/// along z's last dim and size 1 elsewhere, broadcast (and reshaped) to z's
/// shape (`x @ w + b`, Flax's `y + b.reshape(1, E)`); null if `v` is not one.
static Value routerBiasOf(Value v, RankedTensorType z) {
  int64_t experts = z.getShape().back();
  SmallVector<int64_t> dims;
  Value bias = broadcastChainSource(v, dims);
  if (bias == v)
    return Value();
  auto type = cast<RankedTensorType>(bias.getType());
  for (auto [d, size] : llvm::enumerate(type.getShape()))
    if (size != (dims[d] == z.getRank() - 1 ? experts : 1))
      return Value();
  if (type.getNumElements() != experts)
    return Value();
  while (auto reshape = bias.getDefiningOp<shlo::ReshapeOp>())
    bias = reshape.getOperand();
  return cast<RankedTensorType>(bias.getType()).getNumElements() == experts ? bias : Value();
}

LogicalResult routerLogits(Value z, Value x, RecognisedLayer &layer, NoMatch &fail) {
  if (auto widened = z.getDefiningOp<shlo::ConvertOp>()) // logits.astype(f32)
    z = widened.getOperand();
  // A temperature, logits / tau or logits * c (a finite non-zero splat):
  // buildLayer folds it into the router's weight and bias.
  layer.routerScale = 1;
  if (Operation *scaled = z.getDefiningOp(); isa_and_nonnull<shlo::DivOp, shlo::MulOp>(scaled)) {
    bool divides = isa<shlo::DivOp>(scaled);
    for (int side : divides ? SmallVector<int>{1} : SmallVector<int>{1, 0}) {
      std::optional<double> c = splatValue(scaled->getOperand(side));
      if (!c || !std::isfinite(*c) || *c == 0)
        continue;
      layer.routerScale = divides ? 1.0 / *c : *c;
      z = scaled->getOperand(1 - side);
      if (auto widened = z.getDefiningOp<shlo::ConvertOp>())
        z = widened.getOperand();
      break;
    }
  }
  // x @ w + b: the bias is added in the product's type (a product widened
  // first would be rounded where the sum is not: not moe.router's meaning).
  layer.routerBias = Value();
  if (auto biased = z.getDefiningOp<shlo::AddOp>()) {
    auto zType = cast<RankedTensorType>(z.getType());
    bool widenedProduct = false;
    for (auto [product, other] : {std::pair(biased.getLhs(), biased.getRhs()), std::pair(biased.getRhs(), biased.getLhs())}) {
      Value bias = routerBiasOf(other, zType);
      if (!bias)
        continue;
      auto widened = product.getDefiningOp<shlo::ConvertOp>();
      widenedProduct |= widened && widened.getOperand().getDefiningOp<shlo::DotGeneralOp>();
      if (!product.getDefiningOp<shlo::DotGeneralOp>())
        continue;
      layer.routerBias = bias;
      z = product;
      break;
    }
    if (!layer.routerBias) {
      fail.why = widenedProduct ? "the router's bias is added after its 16-bit product is widened, which moe.router "
                                  "does not compute (it adds the bias in the product's type)"
                                : "the router logits are x @ router_weight plus something other than a bias of one "
                                  "value per expert";
      return failure();
    }
  }
  auto router = z.getDefiningOp<shlo::DotGeneralOp>();
  shlo::DotDimensionNumbersAttr rd = router ? router.getDotDimensionNumbers() : nullptr;
  // x [T, H] or [B, S, H], contracted on its last dim.
  int64_t xRank = router ? cast<RankedTensorType>(router.getLhs().getType()).getRank() : 0;
  if (!router || (x && router.getLhs() != x) || !rd.getLhsBatchingDimensions().empty() || xRank < 2 || xRank > 3 ||
      rd.getLhsContractingDimensions() != ArrayRef<int64_t>{xRank - 1} || rd.getRhsContractingDimensions().size() != 1 ||
      cast<RankedTensorType>(router.getRhs().getType()).getRank() != 2) {
    fail.why = "the router logits are not x @ router_weight of the layer's x";
    return failure();
  }
  layer.x = router.getLhs();
  layer.routerWeight = router.getRhs();
  // Logits computed in 16 bits are rounded there before anything selects.
  Type logitsElement = cast<RankedTensorType>(router.getType()).getElementType();
  layer.logitsType = logitsElement.isBF16() || logitsElement.isF16() ? logitsElement : Type();
  // x @ w.T of a [E, H] weight (PyTorch's Linear layout).
  layer.routerExpertsFirst = rd.getRhsContractingDimensions()[0] == 1;
  return success();
}

int64_t routerExperts(const RecognisedLayer &layer) {
  return cast<RankedTensorType>(layer.routerWeight.getType()).getDimSize(layer.routerExpertsFirst ? 0 : 1);
}

/// Shapes and element types of one expert group over x (SwiGLU: w1 and w3).
LogicalResult checkLayerShapes(const RecognisedLayer &layer, NoMatch &fail) {
  auto xT = cast<RankedTensorType>(layer.x.getType());
  auto wrT = cast<RankedTensorType>(layer.routerWeight.getType());
  int64_t routerHidden = wrT.getDimSize(layer.routerExpertsFirst ? 1 : 0);
  auto w1T = cast<RankedTensorType>(layer.w1.getType());
  auto w2T = cast<RankedTensorType>(layer.w2.getType());
  // The router scores every expert; the FFN weights hold the FFN ones.
  int64_t hidden = xT.getDimSize(1), experts = routerExperts(layer) - static_cast<int64_t>(layer.extraExperts.size());
  Type element = xT.getElementType();
  bool glu = isGated(layer.activation);
  if (xT.getRank() != 2 || wrT.getRank() != 2 || routerHidden != hidden || glu != static_cast<bool>(layer.w3) ||
      (glu && layer.w3.getType() != w1T) || w1T.getRank() != 3 || w1T.getDimSize(0) != experts ||
      w1T.getDimSize(1) != hidden || w2T.getShape() != ArrayRef<int64_t>{experts, w1T.getDimSize(2), hidden} ||
      !(element.isF32() || element.isF16() || element.isBF16()) ||
      (wrT.getElementType() != element && !wrT.getElementType().isF32()) ||
      w1T.getElementType() != element || w2T.getElementType() != element) {
    fail.why = "the weights' shapes or element types do not form one expert group";
    return failure();
  }
  return success();
}

/// `v` through a chain of broadcast_in_dim ops, with the result dimension
/// each source dimension lands on.
Value broadcastChainSource(Value v, SmallVectorImpl<int64_t> &dims) {
  dims.clear();
  for (int64_t d = 0; d < cast<RankedTensorType>(v.getType()).getRank(); ++d)
    dims.push_back(d);
  while (auto b = v.getDefiningOp<shlo::BroadcastInDimOp>()) {
    SmallVector<int64_t> composed;
    for (int64_t d : b.getBroadcastDimensions())
      composed.push_back(dims[d]);
    dims = composed;
    v = b.getOperand();
  }
  return v;
}

/// x @ w over the hidden dim for every expert: dot_general(x [T, H],
/// w [E, H, F]) -> [T, E, F]; returns w.
Value perExpertProjection(Value v, Value x) {
  auto dot = v.getDefiningOp<shlo::DotGeneralOp>();
  if (!dot || dot.getLhs() != x)
    return nullptr;
  shlo::DotDimensionNumbersAttr d = dot.getDotDimensionNumbers();
  if (!d.getLhsBatchingDimensions().empty() || d.getLhsContractingDimensions() != ArrayRef<int64_t>{1} ||
      d.getRhsContractingDimensions() != ArrayRef<int64_t>{1})
    return nullptr;
  return dot.getRhs();
}

/// The ids of a one-hot encoding along the last dim: convert(compare EQ
/// (ids broadcast, iota along the last dim)) of shape [..., N] for ids
/// [...]; null otherwise.
Value oneHotIds(Value v) {
  if (auto convert = v.getDefiningOp<shlo::ConvertOp>())
    v = convert.getOperand();
  auto eq = v.getDefiningOp<shlo::CompareOp>();
  if (!eq || eq.getComparisonDirection() != shlo::ComparisonDirection::EQ)
    return nullptr;
  int64_t last = cast<RankedTensorType>(eq.getType()).getRank() - 1;
  SmallVector<int64_t> idDims, iotaDims, leading;
  for (int64_t d = 0; d < last; ++d)
    leading.push_back(d);
  Value ids = broadcastChainSource(eq.getLhs(), idDims);
  auto iota = broadcastChainSource(eq.getRhs(), iotaDims).getDefiningOp<shlo::IotaOp>();
  if (!iota || iotaDims[iota.getIotaDimension()] != last || idDims != leading)
    return nullptr;
  return ids;
}

/// Column j of a top-k result [S, K] as [S]: a reshape ([S, 1]) or a
/// slice [:, j:j+1] then reshape. Returns (the top-k result, j).
std::optional<std::pair<Value, int64_t>> topKColumn(Value v) {
  auto reshape = v.getDefiningOp<shlo::ReshapeOp>();
  if (!reshape)
    return std::nullopt;
  Value column = reshape.getOperand();
  int64_t j = 0;
  if (auto slice = column.getDefiningOp<shlo::SliceOp>()) {
    auto type = cast<RankedTensorType>(slice.getOperand().getType());
    if (type.getRank() != 2 || slice.getStartIndices()[0] != 0 || slice.getLimitIndices()[0] != type.getDimSize(0) ||
        slice.getLimitIndices()[1] != slice.getStartIndices()[1] + 1 || slice.getStrides()[1] != 1)
      return std::nullopt;
    j = slice.getStartIndices()[1];
    column = slice.getOperand();
  } else if (cast<RankedTensorType>(column.getType()).getRank() != 2 ||
             cast<RankedTensorType>(column.getType()).getDimSize(1) != 1) {
    return std::nullopt;
  }
  if (!column.getDefiningOp<chlo::TopKOp>())
    return std::nullopt;
  return std::pair{column, j};
}

/// The terms of an add tree, zero splats dropped.
void addTerms(Value v, SmallVectorImpl<Value> &terms) {
  if (auto add = v.getDefiningOp<shlo::AddOp>()) {
    addTerms(add.getLhs(), terms);
    addTerms(add.getRhs(), terms);
  } else if (!isSplat(v, 0)) {
    terms.push_back(v);
  }
}

Value transposeOf(OpBuilder &b, Location loc, Value v, ArrayRef<int64_t> perm) {
  if (llvm::equal(perm, llvm::seq<int64_t>(0, perm.size())))
    return v;
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<int64_t> shape;
  for (int64_t p : perm)
    shape.push_back(type.getDimSize(p));
  return shlo::TransposeOp::create(b, loc, RankedTensorType::get(shape, type.getElementType()), v,
                                   b.getDenseI64ArrayAttr(perm));
}

Value sumOverDim(OpBuilder &b, Location loc, Value v, int64_t dim) {
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<int64_t> shape(type.getShape());
  shape.erase(shape.begin() + dim);
  Type element = type.getElementType();
  auto scalar = RankedTensorType::get({}, element);
  Value zero = shlo::ConstantOp::create(b, loc, scalar, DenseElementsAttr::get(scalar, b.getZeroAttr(element)));
  auto reduce = shlo::ReduceOp::create(b, loc, TypeRange{RankedTensorType::get(shape, element)}, ValueRange{v},
                                       ValueRange{zero}, b.getDenseI64ArrayAttr({dim}));
  Block *body = new Block();
  reduce.getBody().push_back(body);
  Value lhs = body->addArgument(scalar, loc), rhs = body->addArgument(scalar, loc);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(body);
  Value sum = shlo::AddOp::create(b, loc, scalar, lhs, rhs);
  shlo::ReturnOp::create(b, loc, ValueRange{sum});
  return reduce.getResult(0);
}

/// moe.layer for a matched layer, its weights brought to the moe layouts
/// (router [E, H]; up [E, 2F, H] = [gate; up]; down [E, H, F]).
Value buildLayer(OpBuilder &b, Location loc, const RecognisedLayer &m) {
  MLIRContext *ctx = b.getContext();
  auto transposed = [&](Value v, ArrayRef<int64_t> perm) { return transposeOf(b, loc, v, perm); };
  Value router = m.routerExpertsFirst ? m.routerWeight : transposed(m.routerWeight, {1, 0});
  Value routerBias = m.routerBias;
  if (auto biasType = routerBias ? cast<RankedTensorType>(routerBias.getType()) : RankedTensorType(); biasType && biasType.getRank() != 1)
    routerBias = shlo::ReshapeOp::create(b, loc, RankedTensorType::get({biasType.getNumElements()}, biasType.getElementType()), routerBias);
  // The logits' scale (a temperature) is the router's: times it in f32,
  // rounded back to the router's type.
  auto scaled = [&](Value v) -> Value {
    auto type = cast<RankedTensorType>(v.getType());
    auto wide = RankedTensorType::get(type.getShape(), b.getF32Type());
    Value f32 = type == wide ? v : shlo::ConvertOp::create(b, loc, wide, v).getResult();
    Value c = shlo::ConstantOp::create(b, loc, wide, DenseElementsAttr::get(wide, b.getF32FloatAttr(float(m.routerScale))));
    Value product = shlo::MulOp::create(b, loc, wide, f32, c);
    return type == wide ? product : shlo::ConvertOp::create(b, loc, type, product).getResult();
  };
  if (m.routerScale != 1) {
    router = scaled(router);
    if (routerBias)
      routerBias = scaled(routerBias);
  }
  // The up projection: [gate; up] for SwiGLU, w1 alone otherwise.
  Value gate = transposed(m.w1, {0, 2, 1});
  auto gateType = cast<RankedTensorType>(gate.getType());
  Value gateUp = gate;
  if (m.w3) {
    auto upType = RankedTensorType::get({gateType.getDimSize(0), 2 * gateType.getDimSize(1),
                                         gateType.getDimSize(2)},
                                        gateType.getElementType());
    gateUp = shlo::ConcatenateOp::create(b, loc, upType, ValueRange{gate, transposed(m.w3, {0, 2, 1})},
                                         b.getI64IntegerAttr(1));
  }
  Value down = transposed(m.w2, {0, 2, 1});
  int64_t experts = gateType.getDimSize(0);
  // Expert biases [gate; up] and down, zeros where a projection has none.
  Value upBias, downBias;
  if (m.b1 || m.b3 || m.b2) {
    Type element = gateType.getElementType();
    auto zeros = [&](int64_t n) -> Value {
      auto type = RankedTensorType::get({experts, n}, element);
      return shlo::ConstantOp::create(b, loc, type, DenseElementsAttr::get(type, b.getZeroAttr(element)));
    };
    int64_t ffn = gateType.getDimSize(1), hidden = gateType.getDimSize(2);
    upBias = m.b1 ? m.b1 : zeros(ffn);
    if (m.w3)
      upBias = shlo::ConcatenateOp::create(b, loc, RankedTensorType::get({experts, 2 * ffn}, element),
                                           ValueRange{upBias, m.b3 ? m.b3 : zeros(ffn)}, b.getI64IntegerAttr(1));
    downBias = m.b2 ? m.b2 : zeros(hidden);
  }
  std::string routingText = std::string("#moe.routing<scoring = ") + (m.sigmoid ? "sigmoid" : "softmax") +
                            ", k = " + std::to_string(m.k) + (m.normalize ? ", normalize = all" : "");
  if (m.normalize && m.normEpsilon > 0)
    routingText += ", norm_epsilon = " + doubleLiteral(m.normEpsilon);
  if (m.scale != 1.0)
    routingText += ", scale = " + doubleLiteral(m.scale);
  if (m.numGroups > 1)
    routingText += ", num_groups = " + std::to_string(m.numGroups) + ", topk_groups = " + std::to_string(m.topkGroups);
  if (m.logitsType)
    routingText += m.logitsType.isBF16() ? ", logits_type = bf16" : ", logits_type = f16";
  if (m.scoresType)
    routingText += m.scoresType.isBF16() ? ", scores_type = bf16" : ", scores_type = f16";
  if (m.expertChoiceCapacity > 0)
    routingText += ", select = expert_choice, capacity = " + std::to_string(m.expertChoiceCapacity);
  auto routing = cast<RoutingAttr>(parseAttribute(routingText + ">", ctx));
  // The expert set: the FFN group, then runs of zero-computation experts.
  SmallVector<Attribute> groups = {parseAttribute("#moe.group<ffn, " + std::to_string(experts) + ">", ctx)};
  for (size_t i = 0; i < m.extraExperts.size();) {
    size_t j = i;
    while (j < m.extraExperts.size() && m.extraExperts[j] == m.extraExperts[i])
      ++j;
    groups.push_back(parseAttribute("#moe.group<" + m.extraExperts[i] + ", " + std::to_string(j - i) + ">", ctx));
    i = j;
  }
  // Constant experts: vectors [E_c, H]; mixes [E_c, 2, H] (x @ mix -> mix^T).
  Value constantVectors, constantMixes;
  if (!m.constantVectors.empty()) {
    auto hType = cast<RankedTensorType>(m.constantVectors[0].getType());
    int64_t count = m.constantVectors.size(), hidden = hType.getDimSize(0);
    SmallVector<Value> rows, mixes;
    for (auto [v, mix] : llvm::zip(m.constantVectors, m.constantMixes)) {
      rows.push_back(shlo::ReshapeOp::create(b, loc, RankedTensorType::get({1, hidden}, hType.getElementType()), v));
      mixes.push_back(shlo::ReshapeOp::create(b, loc, RankedTensorType::get({1, 2, hidden}, hType.getElementType()),
                                              transposed(mix, {1, 0})));
    }
    constantVectors = shlo::ConcatenateOp::create(
        b, loc, RankedTensorType::get({count, hidden}, hType.getElementType()), rows, b.getI64IntegerAttr(0));
    constantMixes = shlo::ConcatenateOp::create(
        b, loc, RankedTensorType::get({count, 2, hidden}, hType.getElementType()), mixes, b.getI64IntegerAttr(0));
  }
  Value bias = m.selectionBias;
  if (bias && !cast<RankedTensorType>(bias.getType()).getElementType().isF32())
    bias = shlo::ConvertOp::create(b, loc, RankedTensorType::get(cast<RankedTensorType>(bias.getType()).getShape(),
                                                                 b.getF32Type()),
                                   bias);
  Value sharedUp, sharedDown;
  if (m.s2) {
    Value s1 = transposed(m.s1, {1, 0}), s3 = transposed(m.s3, {1, 0});
    auto s1Type = cast<RankedTensorType>(s1.getType());
    auto upType = RankedTensorType::get({2 * s1Type.getDimSize(0), s1Type.getDimSize(1)}, s1Type.getElementType());
    sharedUp = shlo::ConcatenateOp::create(b, loc, upType, ValueRange{s1, s3}, b.getI64IntegerAttr(0));
    sharedDown = transposed(m.s2, {1, 0});
  }
  CapacityAttr capacity;
  if (m.capacity > 0)
    capacity = cast<CapacityAttr>(parseAttribute(
        "#moe.capacity<tokens = " + std::to_string(m.capacity) + ", drop = slot_position, pad = true>", ctx));
  auto xType = cast<RankedTensorType>(m.x.getType());
  int64_t routed = experts + static_cast<int64_t>(m.extraExperts.size());
  auto layer = LayerOp::create(b, loc, xType, RankedTensorType::get({xType.getDimSize(0), routed}, b.getF32Type()),
                               m.x, router, Value(), routerBias, bias, Value(), Value(), gateUp, down, upBias, downBias, constantVectors,
                               constantMixes, sharedUp, sharedDown, Value(), b.getArrayAttr(groups),
                               ActivationAttr::get(ctx, m.activation), routing, capacity);
  return layer.getY();
}

/// The dense gate [T, E] = sum over slots of one_hot(idx, E) * vals:
/// returns (vals, idx) as top_k results, or failure.
LogicalResult denseTopKGate(Value gate, Value &vals, Value &idx, NoMatch &fail) {
  if (auto convert = gate.getDefiningOp<shlo::ConvertOp>())
    gate = convert.getOperand();
  auto sum = gate.getDefiningOp<shlo::ReduceOp>();
  // A 16-bit product may be summed in f32: each (token, expert) has one
  // non-zero slot (top-k ids differ), so the sum is exact in either type.
  auto product =
      sum && sum.getInputs().size() == 1 ? withoutConverts(sum.getInputs()[0]).getDefiningOp<shlo::MulOp>() : nullptr;
  // [..., K, E] summed over the slots (the second last dim).
  int64_t rank = product ? cast<RankedTensorType>(product.getType()).getRank() : 0;
  if (!product || rank < 3 || sum.getDimensions() != ArrayRef<int64_t>{rank - 2} || !isAddBody(sum.getBody())) {
    fail.why = "the expert gate is not a sum over slots of one_hot(idx) * weights";
    return failure();
  }
  SmallVector<int64_t> leading = llvm::to_vector(llvm::seq<int64_t>(0, rank - 1));
  for (auto [a, b] : {std::pair{product.getLhs(), product.getRhs()}, std::pair{product.getRhs(), product.getLhs()}}) {
    // a = one_hot(idx, E) : [T, K, E]; b = vals broadcast over E.
    SmallVector<int64_t> valDims;
    Value ids = oneHotIds(a);
    Value weights = broadcastChainSource(b, valDims);
    // vals reshaped to [T, K, 1] first (a slot sum's lifted w[:, j:j+1]),
    // then broadcast over E: the same as vals broadcast along [T, K].
    if (auto reshape = weights.getDefiningOp<shlo::ReshapeOp>()) {
      ArrayRef<int64_t> from = reshape.getOperand().getType().getShape(), to = reshape.getType().getShape();
      SmallVector<int64_t> all = llvm::to_vector(llvm::seq<int64_t>(0, rank));
      if (to.size() == from.size() + 1 && to.back() == 1 && to.drop_back() == from && valDims == all) {
        weights = reshape.getOperand();
        valDims = leading;
      }
    }
    if (!ids || valDims != leading)
      continue;
    vals = weights;
    idx = ids;
    return success();
  }
  fail.why = "the expert gate is not a sum over slots of one_hot(idx) * weights";
  return failure();
}

/// The input of jnp.cumsum(v, axis=0) (a reduce_window adding a window of
/// all rows, padded before), or null.
Value cumsumRowsSource(Value v) {
  auto window = v.getDefiningOp<shlo::ReduceWindowOp>();
  if (!window || window.getInputs().size() != 1 || !isSplat(window.getInitValues()[0], 0) ||
      !isAddBody(window.getBody()) || !window.getPadding())
    return nullptr;
  auto type = cast<RankedTensorType>(window.getInputs()[0].getType());
  if (!type.hasStaticShape() || type.getRank() < 1)
    return nullptr;
  SmallVector<int64_t> size(type.getRank(), 1), padding(2 * type.getRank(), 0);
  size[0] = type.getDimSize(0);
  padding[0] = size[0] - 1;
  auto ones = [](std::optional<ArrayRef<int64_t>> a) {
    return !a || llvm::all_of(*a, [](int64_t x) { return x == 1; });
  };
  if (window.getWindowDimensions() != ArrayRef<int64_t>(size) ||
      SmallVector<int64_t>(window.getPadding()->getValues<int64_t>()) != padding ||
      !ones(window.getWindowStrides()) || !ones(window.getBaseDilations()) || !ones(window.getWindowDilations()))
    return nullptr;
  return window.getInputs()[0];
}

void replaceWithLayer(Operation *at, Value original, RecognisedLayer m, const RaiseOptions &options) {
  if (options.wrongForTesting)
    m.normalize = !m.normalize;
  OpBuilder b(at);
  Location loc = original.getLoc();
  Value y = buildLayer(b, loc, m);
  auto yType = cast<RankedTensorType>(y.getType());
  auto want = cast<RankedTensorType>(original.getType());
  if (yType.getShape() != want.getShape()) // rows of x [B, S, H] back to [B, S, H]
    y = shlo::ReshapeOp::create(b, loc, RankedTensorType::get(want.getShape(), yType.getElementType()), y);
  if (y.getType() != original.getType())
    y = shlo::ConvertOp::create(b, loc, original.getType(), y);
  // The layer's selection may still be read by other code (a load-balancing
  // loss): it was raised all the same, which the final remarks must know.
  SetVector<Operation *> slice;
  BackwardSliceOptions sliceOptions;
  sliceOptions.omitUsesFromAbove = false;
  (void)getBackwardSlice(original, &slice, sliceOptions);
  for (Operation *op : slice)
    if (isa<chlo::TopKOp>(op))
      op->setAttr(kRaisedSelection, UnitAttr::get(op->getContext()));
  if (!options.keepOriginals) {
    original.replaceAllUsesWith(y);
    return;
  }
  // `at` computes `original` or comes after it; the layer was built before it.
  b.setInsertionPointAfter(at);
  Value checked = RaisingCheckOp::create(b, loc, y.getType(), y, original);
  original.replaceAllUsesExcept(checked, checked.getDefiningOp());
}

bool isNaNSplat(Value v) {
  std::optional<double> value = splatValue(v);
  return value && std::isnan(*value);
}

/// The top-k whose indices `v` are (through JAX's negative-index wrap,
/// converts and unit-dim reshapes), or null.
chlo::TopKOp topKOfIndices(Value v) {
  while (true) {
    v = unwrapIndex(v);
    if (auto topk = v.getDefiningOp<chlo::TopKOp>())
      return v == topk.getIndices() ? topk : nullptr;
    Operation *op = v.getDefiningOp();
    if (!op || !isa<shlo::ConvertOp, shlo::ReshapeOp, shlo::BroadcastInDimOp>(op))
      return nullptr;
    auto from = cast<RankedTensorType>(op->getOperand(0).getType());
    if (from.getNumElements() != cast<RankedTensorType>(v.getType()).getNumElements())
      return nullptr;
    v = op->getOperand(0);
  }
}

/// `pred` is JAX's range test of a fill-mode gather's indices `indices` into
/// a dim of `size`: (i >= 0 && i <= size - 1), and-reduced over the index
/// vector, broadcast to the result.
bool isInRangeTest(Value pred, Value indices, int64_t size) {
  SmallVector<int64_t> dims;
  Value test = broadcastChainSource(pred, dims);
  if (auto all = test.getDefiningOp<shlo::ReduceOp>();
      all && all.getInputs().size() == 1 && splatValue(all.getInitValues()[0]).value_or(0) != 0) { // true
    Block &body = all.getBody().front();
    if (!isa<shlo::AndOp>(body.front()))
      return false;
    test = all.getInputs()[0];
  }
  auto both = test.getDefiningOp<shlo::AndOp>();
  auto compares = [&](Value v, shlo::ComparisonDirection d, double bound) {
    auto c = v.getDefiningOp<shlo::CompareOp>();
    return c && c.getComparisonDirection() == d && c.getLhs() == indices && isSplat(c.getRhs(), bound);
  };
  return both && compares(both.getLhs(), shlo::ComparisonDirection::GE, 0) &&
         compares(both.getRhs(), shlo::ComparisonDirection::LE, static_cast<double>(size - 1));
}

} // namespace mlir::moe::stablehlo_raise
