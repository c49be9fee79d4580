//===- MoeToLinalg.h - lowering moe ops to upstream dialects ----*- C++ -*-===//

#ifndef MOE_CONVERSION_MOETOLINALG_H
#define MOE_CONVERSION_MOETOLINALG_H

namespace mlir {
class RewritePatternSet;
namespace moe {
/// How the lowerings emit contractions (matmuls, grouped matmuls).
enum class ContractionForm {
  /// Cache-tiled loops around a vector micro-kernel, one nest per expert,
  /// sized for 512-bit vector registers (32 of them: AVX-512).
  VectorTiles512,
  /// VectorTiles512 whose bf16 x bf16 contractions take two products per
  /// f32 lane in one instruction (AVX512_BF16's vdpbf16ps).
  VectorTiles512Bf16Dot,
  /// The same sized for 256-bit registers (16 of them: AVX2).
  VectorTiles256,
  /// One parallel linalg.generic per contraction, grouped matmuls gathering
  /// each row's expert weights: every output element is independent, the
  /// form the GPU pipeline maps to threads.
  Parallel,
};

/// moe.group_mean, expand_groups, router, gating_residual, score, topk,
/// threshold, expert_choice, renormalize.
void populateMoeRoutingToLinalgPatterns(RewritePatternSet &patterns, ContractionForm form);
/// moe.restrict_slots, dispatch, permute, combine.
void populateMoeDispatchToLinalgPatterns(RewritePatternSet &patterns);
/// moe.grouped_matmul (and its fused forms), activation, zero_compute,
/// dense_ffn, dense_gates, compose_experts, merge_experts.
void populateMoeExpertsToLinalgPatterns(RewritePatternSet &patterns, ContractionForm form);
/// moe.dequantize as one elementwise generic.
void populateMoeDequantizeToLinalgPatterns(RewritePatternSet &patterns);
/// moe.ep_rank, all_to_all_dispatch, all_to_all_return, all_gather_columns
/// as host calls of the expert-parallel runtime: its MPI entry points on host
/// buffers, or with `deviceExchanges` its NCCL ones on device buffers.
void populateMoeExpertParallelToCallsPatterns(RewritePatternSet &patterns, bool deviceExchanges);
} // namespace moe
} // namespace mlir

#endif // MOE_CONVERSION_MOETOLINALG_H
