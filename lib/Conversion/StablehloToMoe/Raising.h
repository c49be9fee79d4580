//===- Raising.h - MoE computations recognised in StableHLO ----*- C++ -*-===//

#ifndef MOE_CONVERSION_STABLEHLOTOLINALG_RAISING_H
#define MOE_CONVERSION_STABLEHLOTOLINALG_RAISING_H

#include "mlir/IR/Location.h"
#include "mlir/IR/Operation.h"
#include "llvm/ADT/DenseSet.h"

namespace mlir::moe::stablehlo_raise {

/// How a recognised layer replaces the ops it was recognised in.
struct RaiseOptions {
  /// Keep those ops: the layer's uses read a moe.raising_check of both, for
  /// the raising check to decide (--verify-raising).
  bool keepOriginals = false;
  /// Tests only: build every layer with its renormalisation flipped, a
  /// deliberately wrong matcher for the raising check to catch.
  bool wrongForTesting = false;
};

/// Rewrites the other spellings of a selection into chlo.top_k: argsort
/// cut to k (sortAsTopK), jnp.argmax / jnp.max of router scores (top-1),
/// take_along_axis of the scores by the top-k indices (its values), a
/// column of jnp.sort of router scores (the k-th largest), and the
/// fill-mode NaN mask around any gather at top-k indices (never out of
/// range) dropped (CanonicalizeSelections.cpp).
void canonicalizeSelections(Operation *root);

/// Drops stablehlo.abs of values known non-negative (DBRX's L1-normalised
/// top-k probabilities), after the selections are top_ks
/// (NonNegativeAbs.cpp).
void dropAbsOfNonNegative(Operation *root);

/// Rewrites a top-k picked one argmax at a time (GShard's second expert:
/// argmax of the scores with the first pick removed) into one chlo.top_k,
/// and a pick's score read through its one-hot into the top-k's values
/// (RepeatedArgmax.cpp).
void canonicalizeRepeatedArgmax(Operation *root);

/// Rewrites a stack of same-shaped terms summed over the stacking dim
/// (jnp.stack(terms).sum(0)) as the terms' Add chain (StackedSums.cpp).
void unstackSums(Operation *root);

/// Rewrites the experts' outputs selected into the (token, slot) cells
/// their top-k ids name (one select per expert over zeros), weighted by the
/// top-k weights and summed over the slots, as the loop over the experts
/// weighting each output by its gate column (SlotCellSelects.cpp).
void rewriteSlotCellSelects(Operation *root);

/// Rewrites a sum over a top-k's slots written term by term (one term per
/// column of the top-k's results) into one reduction over a slot dimension
/// (SlotSums.cpp).
void liftSlotSums(Operation *root);

/// Rewrites a gate applied to the experts' activations before a down
/// projection that sums over (expert, ffn) at once (a three-operand einsum)
/// into the down projection per expert, then the gate-weighted sum over the
/// experts; only for gates read from a top-k (HoistGatesFromDown.cpp).
void hoistGatesFromDownProjections(Operation *root);

/// Unrolls every lax.fori_loop / lax.scan over the experts (a counted
/// stablehlo.while whose trip count is the expert count of a top-k computed
/// outside and read inside), folding the index arithmetic on its counter
/// (UnrollExpertLoops.cpp); returns how many.
unsigned unrollExpertLoops(Operation *root);

/// Rewrites gathers of whole slices into the form plain indexing gives:
/// index components of dims taken whole dropped, indexed unit dims that a
/// reshape drops collapsed (jax.vmap's `w[e]`; CanonicalizeGathers.cpp).
void canonicalizeGathers(Operation *root);

/// Rewrites decode-style dispatch over flattened (token, slot) rows (x[tok]
/// with tok = repeat(arange(T), k), w[idx.reshape(-1)], segment_sum back to
/// the tokens, or a reshape to [T, k, H]) into the same ops on [T, k, ...]
/// values, summed over the slots (UnflattenSlotPairs.cpp).
void unflattenSlotPairs(Operation *root);

/// Rewrites contractions into the form the expert matchers read, exactly:
/// a batch dim made only by broadcasting one operand (`torch.bmm` of
/// `x.expand(E, T, H)`) becomes a free dim of the other, and a strided
/// slice of a projection's output features (interleaved gate/up) slices
/// the weight instead (CanonicalizeContractions.cpp).
void canonicalizeContractions(Operation *root);

/// Replaces every dot_general that is JAX's CPU expansion of ragged_dot by
/// chlo.ragged_dot (RaiseRaggedDot.cpp); returns how many.
unsigned raiseRaggedDots(Operation *root);

/// Replaces every dropless MoE layer under `root` (softmax top-k, argsort
/// dispatch, SwiGLU ragged_dot experts, scatter-add combine) by a
/// moe.layer; near misses get a remark. The replaced ops are left dead.
/// Returns how many layers were raised.
unsigned raiseDroplessLayers(Operation *root, const RaiseOptions &options);

/// Replaces every dense top-k-masked mixture (all experts computed, their
/// SwiGLU outputs weighted by a one-hot top-k gate) by a moe.layer, which
/// computes only the selected experts; near misses get a remark.
unsigned raiseDenseMixtures(Operation *root, const RaiseOptions &options);

/// Replaces every GShard/Switch layer (one-hot dispatch and combine masks
/// with capacity, einsum dispatch, relu/gelu experts, einsum combine) by a
/// moe.layer with capacity (drop = slot_position, padded); near misses get
/// a remark (RaiseGShard.cpp).
unsigned raiseGShardLayers(Operation *root, const RaiseOptions &options);

/// Replaces every expert-choice layer (each expert's top-C tokens of the
/// transposed softmax scores gathered, its FFN on them weighted by its
/// scores, scatter-added back) by a moe.layer with select = expert_choice
/// (RaiseExpertChoice.cpp).
unsigned raiseExpertChoiceLayers(Operation *root, const RaiseOptions &options);

/// Replaces every MoE++ mixture (dense FFN experts weighted by a top-k
/// gate, plus copy and constant experts at the gate's later columns) by a
/// moe.layer with zero/copy/constant expert groups (RaiseMoepp.cpp).
unsigned raiseMoeppLayers(Operation *root, const RaiseOptions &options);

/// Replaces every gate-weighted sum of expert FFNs in the spellings JAX
/// code uses (einsum over experts, a sum over an expert axis, a loop over
/// experts with where-masks; stacked, vmapped, fused or separate expert
/// weights; one-hot, scattered or masked-softmax gates) by a moe.layer;
/// candidates reading a top-k that do not match get a remark
/// (RaiseExpertMixtures.cpp).
unsigned raiseExpertMixtures(Operation *root, const RaiseOptions &options);

/// A remark for every routing no layer form took: a top-k over [tokens,
/// experts] (at most 1024 experts: a vocabulary's top-k is no routing)
/// still read by plain ops, unless a near-miss remark (at a location in
/// `remarked`) already explained the ops reading it.
void remarkUnraisedRouting(Operation *root, const DenseSet<Location> &remarked);

} // namespace mlir::moe::stablehlo_raise

#endif // MOE_CONVERSION_STABLEHLOTOLINALG_RAISING_H
