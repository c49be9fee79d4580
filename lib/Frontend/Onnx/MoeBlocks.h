//===- MoeBlocks.h - MoE layers written out in plain ONNX ops ---*- C++ -*-===//

#ifndef MOE_FRONTEND_ONNX_MOEBLOCKS_H
#define MOE_FRONTEND_ONNX_MOEBLOCKS_H

#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/StringSet.h"

#include <onnx/onnx_pb.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace mlir::moe::onnx_import {

/// What the matcher may ask about the graph's constants.
struct ConstantLookup {
  /// The integer values of a constant, if it is one.
  std::function<std::optional<llvm::SmallVector<int64_t>>(llvm::StringRef)> ints;
  std::function<bool(llvm::StringRef)> isConstant;
  /// The shape of a constant, if it is one.
  std::function<std::optional<llvm::SmallVector<int64_t>>(llvm::StringRef)> shape;
  /// The values of a float constant, if it is one.
  std::function<std::optional<std::vector<float>>(llvm::StringRef)> floats;
  /// The rank of any value, when the importer could infer it (else -1).
  std::function<int64_t(llvm::StringRef)> rank;
  std::optional<llvm::SmallVector<int64_t>> operator()(llvm::StringRef name) const { return ints(name); }
};

/// The gate's activation of a matched block: SwiGLU or GeGLU (exact GELU).
enum class GateActivation { silu, gelu };

/// An ungated expert's activation: ReLU, GELU (erf or tanh), SiLU.
enum class PlainActivation { relu, relu2, gelu, gelu_tanh, silu };

/// A constant weight W of a linear map of x: x @ W (MatMul, Gemm) is
/// [in, out]; Gemm with transB = 1 (torch's Linear, exported) reads it as
/// rows [out, in].
struct LinearWeight {
  std::string name;
  bool rows = false;
  bool empty() const { return name.empty(); }
};

/// An expert's matrix that is a view of a constant: the slice `index` of a
/// stack [E, a, b] (the constant itself, 2-D, when index < 0), maybe
/// transposed, then the part [start, start + count) of its output axis
/// (axis 1 of x @ W's [in, out], axis 0 of rows; count < 0: all of it).
/// Loops over stacked parameters (`w1[e].T`) and gate/up fused in one
/// matrix (read back by Slices) give such views, and a fused projection's
/// bias [2I] its halves (a 1-D source: the part [start, start + count));
/// the import materialises each under `name` before stacking the experts'
/// weights.
struct WeightView {
  std::string name, source;
  int64_t index = -1;
  bool transposed = false, rows = false;
  int64_t start = 0, count = -1;
};

/// One matched block: the nodes it replaces (imported as one moe.layer at
/// `last`, the node computing `output`) and its operands by ONNX name.
struct MoeBlock {
  int anchor = -1, last = -1;
  llvm::DenseSet<int> nodes;
  std::string x, gateUp, down, output;
  /// x reshaped to its own shape ([T, H] to [-1, H]: what the router reads
  /// in transformers' exports); empty if the router reads x itself.
  std::string xView;
  LinearWeight routerWeight;
  /// The router's bias (a constant of E values; Linear(H, E) with its
  /// default bias), or empty.
  std::string routerBias;
  /// The logits are the router's times this (a temperature, logits / tau:
  /// 1 / tau), folded into its weights and bias.
  double routerScale = 1;
  /// A shared expert added to the output: gate/up [H, S], down [S, H] as
  /// x @ W weights (or those as rows), and its sigmoid gate [H, 1]
  /// (Qwen2-MoE; empty when ungated, as DeepSeek-V3's); empty if none.
  LinearWeight sharedGateProj, sharedUpProj, sharedDownProj, sharedGate;
  /// When the routed output is viewed back to the shape of the tensor x is
  /// a view of before the shared expert (reading that tensor,
  /// `sharedTokens`) is added: the view's node, and the routed output it
  /// reads (the layer's result, shared expert included, is viewed the
  /// same way). -1 and empty otherwise.
  int outputView = -1;
  std::string routedOutput, sharedTokens;
  /// The per-expert loop form: expert e's x @ W weights, gate and up
  /// [H, I], down [I, H] (then gateUp and down are empty).
  std::vector<std::string> expertGate, expertUp, expertDown;
  /// Expert matrices above that are views of constants (by name).
  std::vector<WeightView> weightViews;
  /// Ungated experts, act(x W1 [+ b1]) W2 [+ b2]: W1 where the gate
  /// weights go (expertGate, gateStack), no up weights.
  std::optional<PlainActivation> ungated;
  /// Per-expert biases (1-D constants) of the gate, up and down
  /// projections, or empty (the layer's ffn_bias).
  std::vector<std::string> expertGateBias, expertUpBias, expertDownBias;
  /// Separate gate, up and down stacks [E, ., .] (each expert's matrix a
  /// slice; then gateUp and down are empty).
  std::string gateStack, upStack, downStack;
  /// The per-expert (or stacked) weights are rows [out, in] (Gemm with
  /// transB = 1, how the dynamo exporter writes nn.Linear), not x @ W's
  /// [in, out].
  bool expertRows = false;
  int64_t k = 1;
  /// Expert-choice routing: each expert takes this many tokens (0: token
  /// choice, k experts per token).
  int64_t expertChoiceCapacity = 0;
  bool normalize = false;
  /// The renormalisation divides by the sum plus this (0: the sum alone).
  double normEpsilon = 0;
  /// Sigmoid scores (Llama-4 style; top-k of sigmoid(logits), or the
  /// sigmoid of the top-k logits) instead of the softmax.
  bool sigmoid = false;
  /// The scores are computed in the model's 16-bit type and widened
  /// before the TopK (Softmax/Sigmoid, then a Cast to f32): the layer
  /// rounds them the same way (routing scores_type).
  bool scoresRounded = false;
  /// The router multiplies x widened to f32 by f32 weights (DeepSeek-V3's
  /// `F.linear(x.float(), w.float())` in a 16-bit model): the layer's
  /// router takes the f32 weights with the 16-bit x, the logits in f32.
  bool routerOnWidenedX = false;
  /// A 16-bit block's weighted slots summed in f32 and left there (the
  /// dynamo exporter's sum of a 16-bit tensor): the layer's 16-bit result
  /// is widened to the f32 output.
  bool widenedOutput = false;
  GateActivation activation = GateActivation::silu;
  /// DeepSeek-V3's routing (matchDeepSeekRouting): sigmoid (or softmax)
  /// scores, the selection bias (a constant [E]), top-k within the best `topkGroups` of
  /// `numGroups` groups (ranked by the sum of their top 2 biased scores),
  /// weights scaled by `scale`.
  struct DeepSeekRouting {
    std::string selectionBias;
    /// Softmax scores (Ernie 4.5, no groups) instead of the sigmoid.
    bool softmaxScores = false;
    int64_t numGroups = 1, topkGroups = 1;
    float scale = 1.0f;
  };
  std::optional<DeepSeekRouting> deepSeek;
  /// The gpt-oss form: routing on `logits` (top-k, then the softmax over the
  /// picks), x @ W experts with biases, gateUp W13 [E, H, 2F] with gate and
  /// up in alternate columns, down W2 [E, F, H], and the clamped SwiGLU
  /// min(g, L) · sigmoid(α min(g, L)) · (clamp(u, -L, L) + β).
  struct GptOss {
    std::string logits, upBias, downBias;
    float alpha = 1.0f, beta = 0.0f;
    std::optional<float> limit;
  };
  std::optional<GptOss> gptOss;
  /// Phi-3.5-MoE's SparseMixer top-2 on these logits (kept as plain ops)
  /// with this jitter epsilon, the block computed as ONNX Runtime's MoE
  /// with use_sparse_mixer; empty logits otherwise.
  std::string sparseMixerLogits;
  float sparseMixerEps = 0.01f;

  /// Other reshapes of x's source to x's shape (TorchScript views x again
  /// where the experts read it: x.view(-1, x.shape[-1])).
  std::vector<std::string> xTwins;

  /// x, its view, or a twin.
  bool isX(llvm::StringRef value) const {
    return value == x || (!xView.empty() && value == xView) || llvm::is_contained(xTwins, value);
  }
};

/// The MoE blocks of `graph` (MoeBlocks.cpp has the pattern). Near misses
/// (softmax top-k routing whose block differs somewhere) are listed as
/// (TopK node index, reason) and stay plain ops.
std::vector<MoeBlock> findMoeBlocks(const onnx::GraphProto &graph, const ConstantLookup &constants,
                                    std::vector<std::pair<int, std::string>> &nearMisses);

} // namespace mlir::moe::onnx_import

#endif // MOE_FRONTEND_ONNX_MOEBLOCKS_H
