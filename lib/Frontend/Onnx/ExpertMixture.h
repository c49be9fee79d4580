//===- ExpertMixture.h - an MoE layer in ONNX Runtime's MoE semantics -*- C++ -*-===//
//
// What a com.microsoft.MoE/QMoE node and the written-out gpt-oss block both
// become: routing on given logits, dispatch, two grouped matmuls (with
// biases), the activation, combine (ExpertMixture.cpp).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_FRONTEND_ONNX_EXPERTMIXTURE_H
#define MOE_FRONTEND_ONNX_EXPERTMIXTURE_H

#include "dialects/moe/MoeOps.h"
#include "mlir/IR/Builders.h"

#include <optional>

namespace mlir::moe::onnx_import {

/// ORT's SwiGLU parameters; alpha 1, beta 0 and no limit is moe.activation
/// swiglu (silu(gate) · up).
struct SwigluParams {
  float alpha = 1.0f, beta = 0.0f;
  std::optional<float> limit;
  /// swiglu_limit_after_activation: the limit clamps g · sigmoid(α g), not g.
  bool limitAfterActivation = false;

  bool isPlain() const { return alpha == 1.0f && beta == 0.0f && !limit; }

  /// min(g, L) · sigmoid(α min(g, L)) · (clamp(u, -L, L) + β) on the halves
  /// [gate; up] of `h` (min(g · sigmoid(α g), L) · ... with the limit after
  /// the activation), computed in f32 as ORT's kernels do.
  Value build(OpBuilder &b, Location loc, Value h, RankedTensorType resultType) const;
};

/// The layer's operands, already in the moe ops' layout and checked by the
/// caller (shapes agree, 1 <= k <= E).
struct ExpertMixture {
  /// Tokens [T, H] or [B, S, H]; router logits [..., E] (any float type).
  Value x, logits;
  /// [E, U, H] (gated: U = 2F rows [gate; up]) and [E, H, F]; biases
  /// [E, U] and [E, H], or null.
  Value up, upBias, down, downBias;
  Activation activation = Activation::relu;
  /// Replaces moe.activation swiglu when not plain.
  SwigluParams swiglu;
  int64_t k = 1;
  /// Softmax over all experts, top-k, renormalised (`normalize`) or not; or
  /// top-k of the logits and the softmax over the picks (`selectThenScore`).
  bool normalize = false, selectThenScore = false;
  /// Phi-3.5-MoE's SparseMixer top-2 instead, with this jitter epsilon.
  bool sparseMixer = false;
  float sparseMixerEps = 0.01f;
  /// QMoE's router_weights [T, E]: the mixing weights at the picks, or null.
  Value mixing;
};

/// Rows g0, u0, g1, u1, ... of `t` [E, 2F, ...] regrouped as [g0 g1 ...; u0
/// u1 ...] (interleaved SwiGLU weights, their biases, scales, zero points).
Value regroupInterleavedRows(OpBuilder &b, Location loc, Value t);

/// The mixture as moe ops; the result has x's shape and type.
Value buildExpertMixture(OpBuilder &b, Location loc, const ExpertMixture &m);

} // namespace mlir::moe::onnx_import

#endif // MOE_FRONTEND_ONNX_EXPERTMIXTURE_H
