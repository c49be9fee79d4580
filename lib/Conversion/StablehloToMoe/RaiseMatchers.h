//===- RaiseMatchers.h - pieces of JAX MoE code matched in StableHLO -*- C++ -*-===//
//
// Shared by the layer matchers (RaiseMoeLayers.cpp, RaiseGShard.cpp): JAX
// idioms (splat constants through broadcasts, index wrapping, softmax,
// sigmoid, silu, one-hot), the recognised layer record and its moe.layer.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_CONVERSION_STABLEHLOTOLINALG_RAISEMATCHERS_H
#define MOE_CONVERSION_STABLEHLOTOLINALG_RAISEMATCHERS_H

#include "dialects/moe/MoeOps.h"
#include "dialects/stablehlo/StablehloDialect.h"
#include "Raising.h"

#include "mlir/IR/Builders.h"

#include <optional>
#include <string>

namespace mlir::moe::stablehlo_raise {
namespace shlo = mlir::moe::stablehlo;

/// Why a candidate did not match (the remark's text).
struct NoMatch {
  std::string why;
};

template <typename OpTy>
FailureOr<OpTy> def(Value v, NoMatch &fail, StringRef what) {
  if (auto op = v ? v.getDefiningOp<OpTy>() : OpTy())
    return op;
  fail.why = ("expected " + what + " to be '" + OpTy::getOperationName() + "'").str();
  return failure();
}

/// The scalar a splat constant (possibly broadcast or converted) holds.
std::optional<double> splatValue(Value v);

bool isSplat(Value v, double value);

/// `v` through element type conversions.
Value withoutConverts(Value v);

/// `v` through broadcast_in_dim ops that keep dimension 0 in place (a
/// per-row value spread over columns) and float conversions, down to a
/// rank-1 tensor (or, for a value of rank 3 or more, its leading dims:
/// [B, S] for [B, S, E]).
Value rowValue(Value v);

/// JAX's index normalisation `i < 0 ? i + n : i` stripped; `v` otherwise.
Value unwrapIndex(Value v);

/// `v` = x // k for a positive constant k (jnp's floor division, or a
/// plain division); returns x.
FailureOr<Value> floorDivided(Value v, int64_t k, NoMatch &fail);

/// The reduction is over its input's last dimension.
bool reducesLastDim(shlo::ReduceOp sum);

/// The body of a reduction/scatter is one `stablehlo.add` of its arguments.
bool isAddBody(Region &body);

/// Does `v` depend on a top-k through its operands (the values `v` is
/// computed from; not `v` itself being a top-k result)?
bool readsTopK(Value v);

/// A 1-D row gather `operand[indices]` (x[i] or x[i, :]) with indices
/// [n, 1]; returns the unwrapped index vector.
FailureOr<Value> rowGather(shlo::GatherOp gather, NoMatch &fail);

/// softmax(z) over the last dim of [T, E] as jax.nn.softmax writes it;
/// returns z.
FailureOr<Value> softmaxInput(Value probs, NoMatch &fail);

/// jax.nn.sigmoid(z): logistic(z) or 1 / (1 + exp(-z)); returns z.
Value sigmoidInput(Value v);

/// silu(g) as jax.nn.silu writes it (g * sigmoid(g)); returns g.
Value siluInput(Value v);

/// `a * b` with the factors in either order.
bool isProduct(Value v, function_ref<bool(Value, Value)> match);

/// jax.nn.gelu(approximate=True)'s tanh form; returns its input or null.
Value geluTanhInput(Value v);

/// jax.nn.gelu(approximate=False) (0.5 x erfc(-x / sqrt 2)); returns x or null.
Value geluErfInput(Value v);

/// jax.nn.relu (max(x, 0)); returns x or null.
Value reluInput(Value v);

/// Squared ReLU (r · r of r = max(x, 0)); returns x or null.
Value relu2Input(Value v);

/// A recognised layer: top-k routing and SwiGLU experts, weights in JAX's
/// layouts (router [H, E], w1/w3 [E, H, F], w2 [E, F, H]; a shared
/// expert's s1/s3 [H, Fs], s2 [Fs, H]).
struct RecognisedLayer {
  Value x, routerWeight, w1, w3, w2;
  // The router weight is [E, H] (x @ w.T) rather than [H, E].
  bool routerExpertsFirst = false;
  int64_t k = 0;
  bool normalize = false;
  // The renormalisation divides by the sum plus this (0: the sum alone).
  double normEpsilon = 0;
  // DeepSeek-V3 routing: sigmoid scores, a selection-only bias, top-k
  // within the topkGroups best of numGroups groups, weights scaled.
  bool sigmoid = false;
  Value selectionBias;
  // The router's own bias [E] (x @ wr + b), or null.
  Value routerBias;
  // The logits are the router's times this (a temperature: 1 / tau).
  double routerScale = 1;
  int64_t numGroups = 1, topkGroups = 1;
  double scale = 1.0;
  Value s1, s3, s2;
  // The experts' biases [E, F], [E, F], [E, H] (x @ W + b), each or null.
  Value b1, b3, b2;
  // The expert activation: swiglu uses w1 (gate) and w3 (up); a plain
  // activation (relu, gelu) only w1, with w3 null.
  Activation activation = Activation::swiglu;
  // Token-choice capacity (GShard/Switch): C rows per expert, padded,
  // overflow dropped in slot order; 0 is dropless.
  int64_t capacity = 0;
  // Expert-choice routing: each expert picks this many tokens; 0 is token choice.
  int64_t expertChoiceCapacity = 0;
  // MoE++ zero-computation experts after the FFN experts, one kind per
  // expert index ("zero", "copy", "constant"); constant expert c has
  // vector constantVectors[c] [H] and mix constantMixes[c] [H, 2] (x @ mix).
  SmallVector<std::string> extraExperts;
  SmallVector<Value> constantVectors, constantMixes;
  // bf16 or f16 when the program's router computes its logits in 16 bits.
  Type logitsType;
  /// bf16 or f16 when the top-k selects among scores computed (or rounded)
  /// in that type; null for f32.
  Type scoresType;
};

/// w / sum(w) over the last dim: returns w, or null. With `epsilon`, also
/// w / (sum(w) + c) for a constant c, which it sets (0 without one); with
/// `clampBelow` too, w / max(sum(w), c), c set there.
Value renormalisedInput(Value v, double *epsilon = nullptr, double *clampBelow = nullptr);

/// The gate weights `vals` of softmax top-k routing of `x`
/// (`vals, idx = top_k(softmax(x @ wr), k)`, optionally divided by their
/// sum); fills the routing fields of `layer` (and `layer.x`; a null `x`
/// accepts any router input) and returns the top-k op.
FailureOr<chlo::TopKOp> matchSoftmaxTopK(Value vals, Value x, RecognisedLayer &layer, NoMatch &fail);

/// DeepSeek-V3's grouped sigmoid routing of `x` (RaiseMoeLayers.cpp): the
/// weights `vals` taken from sigmoid scores at a top-k of the biased scores
/// within the best groups; fills `layer` like matchSoftmaxTopK.
FailureOr<chlo::TopKOp> matchGroupedSigmoidTopK(Value vals, Value x, RecognisedLayer &layer, NoMatch &fail);

/// Top-k routing whose selected weights are `vals`: softmax then top-k
/// (optionally renormalised), top-k of logits then softmax over the k
/// (the same weights renormalised), sigmoid of the top-k logits, or
/// DeepSeek-V3's grouped sigmoid. Fills `layer`; returns the top-k op.
FailureOr<chlo::TopKOp> topKRouting(Value vals, RecognisedLayer &layer, NoMatch &fail);

/// The 16-bit type `topk` selects among when its scores are computed in
/// bf16 or f16 (maybe widened just before it): equal rounded scores go to
/// the lower index (the layer's scores_type); null for f32 scores.
Type sixteenBitScores(chlo::TopKOp topk);

/// A shared expert swiglu(x @ s1, x @ s3) @ s2 of the layer's x: fills
/// s1, s3, s2 of `layer` (RaiseMoeLayers.cpp).
bool matchSharedExpert(Value v, RecognisedLayer &layer);

/// logits = x @ router_weight ([H, E], or [E, H] contracted on its
/// second dim), possibly converted to f32: fills x and the router of
/// `layer` (a null `x` accepts any).
LogicalResult routerLogits(Value logits, Value x, RecognisedLayer &layer, NoMatch &fail);

/// The number of experts the router scores.
int64_t routerExperts(const RecognisedLayer &layer);

/// Shapes and element types of one expert group over x (SwiGLU: w1 and w3).
LogicalResult checkLayerShapes(const RecognisedLayer &layer, NoMatch &fail);

/// `v` through a chain of broadcast_in_dim ops, with the result dimension
/// each source dimension lands on.
Value broadcastChainSource(Value v, SmallVectorImpl<int64_t> &dims);

/// x @ w over the hidden dim for every expert: dot_general(x [T, H],
/// w [E, H, F]) -> [T, E, F]; returns w.
Value perExpertProjection(Value v, Value x);

/// The ids of a one-hot encoding along the last dim: convert(compare EQ
/// (ids broadcast, iota along the last dim)) of shape [..., N] for ids
/// [...]; null otherwise.
Value oneHotIds(Value v);

/// Column j of a top-k result [S, K] as [S]: a reshape ([S, 1]) or a
/// slice [:, j:j+1] then reshape. Returns (the top-k result, j).
std::optional<std::pair<Value, int64_t>> topKColumn(Value v);

/// The terms of an add tree, zero splats dropped.
void addTerms(Value v, SmallVectorImpl<Value> &terms);

/// stablehlo.transpose of `v` by `perm` (`v` itself for the identity).
Value transposeOf(OpBuilder &b, Location loc, Value v, ArrayRef<int64_t> perm);

/// `v` is a splat of NaN.
bool isNaNSplat(Value v);

/// The top-k whose indices `v` are (through JAX's negative-index wrap,
/// converts and unit-dim reshapes), or null.
chlo::TopKOp topKOfIndices(Value v);

/// `pred` is JAX's range test of a fill-mode gather's indices `indices` into
/// a dim of `size`: (i >= 0 && i <= size - 1), and-reduced over the index
/// vector, broadcast to the result.
bool isInRangeTest(Value pred, Value indices, int64_t size);

/// stablehlo.reduce of `v` over its dim `dim` with add from 0.
Value sumOverDim(OpBuilder &b, Location loc, Value v, int64_t dim);

/// moe.layer for a matched layer, its weights brought to the moe layouts
/// (router [E, H]; up [E, 2F, H] = [gate; up]; down [E, H, F]).
Value buildLayer(OpBuilder &b, Location loc, const RecognisedLayer &m);

/// Builds `m`'s moe.layer before `original`'s first use site `at` and gives
/// it `original`'s uses (converted to its element type), or, with
/// `options.keepOriginals`, a moe.raising_check of the two.
void replaceWithLayer(Operation *at, Value original, RecognisedLayer m, const RaiseOptions &options);

/// Marks (during moe-raise-stablehlo only) a chlo.top_k a raised layer
/// computes: other readers of it are no unraised routing.
inline constexpr llvm::StringLiteral kRaisedSelection = "moe.raised_selection";

/// The dense gate [T, E] = sum over slots of one_hot(idx, E) * vals:
/// returns (vals, idx) as top_k results, or failure.
LogicalResult denseTopKGate(Value gate, Value &vals, Value &idx, NoMatch &fail);

/// The input of jnp.cumsum(v, axis=0) (a reduce_window adding a window of
/// all rows, padded before), or null.
Value cumsumRowsSource(Value v);

/// iota + sort(scores, iota) descending along the last dim (or ascending
/// on -scores: an argsort of the negation) + slices of its results to the
/// first k -> chlo.top_k (CanonicalizeSelections.cpp).
LogicalResult sortAsTopK(shlo::SortOp sort);

/// jnp.argmax(v, -1) as JAX writes it: a (value, iota) reduce over the last
/// dim from (-inf, 0) keeping the first maximum (CanonicalizeSelections.cpp).
bool isLastDimArgmax(shlo::ReduceOp reduce);

} // namespace mlir::moe::stablehlo_raise

#endif // MOE_CONVERSION_STABLEHLOTOLINALG_RAISEMATCHERS_H
