//===- MoeOps.cpp - ONNX Runtime's com.microsoft.MoE and QMoE to moe ops --===//
//
// ORT's MoE takes the router logits as an input (`router_probs`), so the
// node becomes the decomposed routing and expert ops from the scoring on:
//
//   p = softmax(logits); w, e = top-k(p); [w /= Σ w]; dispatch; permute;
//   h = grouped_matmul(fc1); a = activation(h); y = grouped_matmul(fc2);
//   out = combine(y, w)
//
// which moe-optimize then fuses like any decomposed layer. Weight layouts:
// fc1 [E, U, H] and fc2 [E, H, I] (the legacy [E, H, U] / [E, I, H] are
// transposed); SwiGLU's interleaved fc1 rows (swiglu_fusion = 1: gate and
// up alternate) are regrouped into [gate; up], as moe.activation expects
// (packed QMoE weights that are arguments are read so by moe.dequantize's
// interleaved_rows instead).
// gpt-oss's SwiGLU (activation_alpha, activation_beta, swiglu_limit:
// min(g, L) · sigmoid(α min(g, L)) · (clamp(u, -L, L) + β)) is elementwise
// code on the two halves instead of moe.activation.
//
// QMoE is the same node with uint8-packed 8/4/2-bit weights [E, out, in /
// (8 / bits)] and scales per output row [E, out] or per block [E, out, in /
// block_size]: they stay packed in the program as moe.dequantize ((q - z) *
// scale, z = 2^(bits-1) (ORT's symmetric default) or the given zero points;
// values low bits first), which the grouped matmuls read.
//
//===----------------------------------------------------------------------===//

#include "ExpertMixture.h"
#include "OnnxImporter.h"
#include "moe/Utils/TensorBuilders.h"

#include "dialects/moe/MoeOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <map>


using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::onnx_import;

namespace {


/// Where the operands of a MoE or QMoE node are.
struct MoeLayout {
  bool quantized;
  unsigned fc1, fc1Scales, fc1Bias, fc2, fc2Scales, fc2Bias, fc3, fc3Scales, fc3Bias;
  unsigned fc1ZeroPoints, fc2ZeroPoints, fc3ZeroPoints;
};
constexpr unsigned Input = 0, RouterProbs = 1, None = ~0u;
constexpr MoeLayout kMoe = {false, 2, None, 3, 4, None, 5, 6, None, 7, None, None, None};
constexpr MoeLayout kQMoe = {true, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
// QMoE's inputs from router_weights (14) on: separate mixing weights and
// the fp4/fp8 scales.
constexpr unsigned QMoeRouterWeights = 14;

/// Weights [E, rows, cols] in the layout the moe ops use ([E, out, in]):
/// transposed when given as [E, in, out].
FailureOr<Value> expertWeights(NodeContext &ctx, unsigned index, StringRef name, int64_t inSize) {
  Value w = ctx.input(index);
  if (!w)
    return ctx.error() << name << " is required", failure();
  RankedTensorType type = ctx.inputType(index);
  if (type.getRank() != 3)
    return ctx.error() << name << " must be [experts, out, in], got " << type, failure();
  if (type.getDimSize(2) == inSize)
    return w;
  if (type.getDimSize(1) == inSize) // legacy [E, in, out]
    return tb::transpose(ctx.b, ctx.loc, w, {0, 2, 1});
  return ctx.error() << name << " " << type << " has no dimension of the input size " << inSize, failure();
}

/// Expert weights [E, rows, in] as a node gives them: floats, or QMoE's
/// packed integers with their scales and zero points, which stay packed in
/// the program (moe.dequantize). Rearranging rows (fc1 and fc3
/// concatenated, interleaved SwiGLU rows regrouped) applies to every part
/// alike: scales and zero points are per row (or per block of a row).
struct ExpertWeights {
  Value floats;
  Value packed, scales, zeroPoints;
  int64_t bits = 0, blockSize = 0;
  Type element;
  /// Rows stored gate and up alternating, read so by the dequantize.
  bool interleavedRows = false;

  bool quantized() const { return !floats; }
  /// The same weights with `rows` applied to each row-indexed part.
  ExpertWeights mapRows(function_ref<Value(Value)> rows) const {
    ExpertWeights w = *this;
    for (Value *part : {&w.floats, &w.packed, &w.scales, &w.zeroPoints})
      if (*part)
        *part = rows(*part);
    return w;
  }
  /// The float weights [E, rows, in] the grouped matmul reads.
  Value value(OpBuilder &b, Location loc) const {
    if (!quantized())
      return floats;
    auto packedType = cast<RankedTensorType>(packed.getType());
    auto type = RankedTensorType::get(
        {packedType.getDimSize(0), packedType.getDimSize(1), packedType.getDimSize(2) * (8 / bits)}, element);
    return DequantizeOp::create(b, loc, type, packed, scales, zeroPoints, b.getI64IntegerAttr(bits),
                                b.getI64IntegerAttr(blockSize), interleavedRows ? b.getUnitAttr() : UnitAttr());
  }
  int64_t rows() const { return cast<RankedTensorType>((floats ? floats : packed).getType()).getDimSize(1); }
  int64_t experts() const { return cast<RankedTensorType>((floats ? floats : packed).getType()).getDimSize(0); }
};

/// Parts a and b of the same kind of weights, rows of b after those of a.
ExpertWeights concatRows(OpBuilder &b, Location loc, const ExpertWeights &first, const ExpertWeights &second) {
  ExpertWeights w = first;
  for (auto [part, other] : llvm::zip(SmallVector<Value *>{&w.floats, &w.packed, &w.scales, &w.zeroPoints},
                                      SmallVector<Value>{second.floats, second.packed, second.scales,
                                                         second.zeroPoints}))
    if (*part)
      *part = tensor::ConcatOp::create(b, loc, /*dim=*/1, ValueRange{*part, other});
  return w;
}

/// ORT's zero points, `bits`-bit values packed along their last dimension
/// like the weights, one byte per value as moe.dequantize reads them
/// (`shape`, the scales' shape).
Value unpackZeroPoints(OpBuilder &b, Location loc, Value packed, ArrayRef<int64_t> shape, int64_t bits) {
  int64_t pack = 8 / bits, rank = static_cast<int64_t>(shape.size());
  auto i8 = b.getIntegerType(8);
  auto type = RankedTensorType::get(shape, i8);
  Value init = tensor::EmptyOp::create(b, loc, shape, i8);
  auto generic = linalg::GenericOp::create(
      b, loc, type, ValueRange{}, ValueRange{init}, ArrayRef<AffineMap>{b.getMultiDimIdentityMap(rank)},
      SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel), [&](OpBuilder &nb, Location nl, ValueRange) {
        SmallVector<Value> at;
        for (int64_t d = 0; d < rank; ++d)
          at.push_back(linalg::IndexOp::create(nb, nl, d));
        Value i = at.back();
        auto index = [&](int64_t v) { return arith::ConstantIndexOp::create(nb, nl, v); };
        at.back() = arith::DivUIOp::create(nb, nl, i, index(pack));
        Value byte = tensor::ExtractOp::create(nb, nl, packed, at);
        Value shift = arith::IndexCastOp::create(
            nb, nl, i8, arith::MulIOp::create(nb, nl, arith::RemUIOp::create(nb, nl, i, index(pack)), index(bits)));
        Value mask = arith::ConstantOp::create(nb, nl, i8, nb.getIntegerAttr(i8, (1 << bits) - 1));
        linalg::YieldOp::create(nb, nl, ValueRange{arith::AndIOp::create(
                                            nb, nl, arith::ShRUIOp::create(nb, nl, byte, shift), mask)
                                            .getResult()});
      });
  return generic.getResult(0);
}

/// QMoE weights: `q` [E, out, in / pack] of packed `bits`-bit values, their
/// scales per row or per block, and zero points if given (checked here,
/// dequantised by moe.dequantize).
FailureOr<ExpertWeights> quantizedWeights(NodeContext &ctx, unsigned weightIndex, unsigned scaleIndex,
                                          unsigned zeroIndex, StringRef name, int64_t inSize, int64_t bits,
                                          int64_t blockSize, Type element) {
  Value q = ctx.input(weightIndex), scale = ctx.input(scaleIndex), zero = ctx.input(zeroIndex);
  if (!q || !scale)
    return ctx.error() << name << " and its scales are required", failure();
  RankedTensorType qType = ctx.inputType(weightIndex), sType = ctx.inputType(scaleIndex);
  int64_t pack = 8 / bits;
  if (qType.getRank() != 3 || !qType.getElementType().isInteger(8) || !qType.hasStaticShape() ||
      qType.getDimSize(2) * pack != inSize)
    return ctx.error() << name << " must be uint8 [experts, out, " << inSize << " / " << pack << "] (" << bits
                       << "-bit values packed), got " << qType,
           failure();
  int64_t experts = qType.getDimSize(0), rows = qType.getDimSize(1);
  bool blockwise = sType.getRank() == 3;
  SmallVector<int64_t> expected = {experts, rows};
  if (blockwise)
    expected.push_back(blockSize > 0 ? inSize / blockSize : -1);
  if (!isa<FloatType>(sType.getElementType()) || sType.getShape() != ArrayRef<int64_t>(expected) ||
      (blockwise && (blockSize <= 0 || inSize % blockSize != 0)))
    return ctx.error() << name << " scales must be [" << experts << ", " << rows
                       << "] or, with block_size, [" << experts << ", " << rows << ", " << inSize
                       << " / block_size], got " << sType << " (block_size " << blockSize << ")",
           failure();
  ExpertWeights w;
  w.packed = q;
  w.scales = scale;
  w.bits = bits;
  w.blockSize = blockwise ? blockSize : 0;
  w.element = element;
  // Zero points: packed like the weights along their last dimension, one
  // per scale: [E, ceil(out / pack)] or [E, out, ceil(blocks / pack)].
  if (zero) {
    RankedTensorType zType = ctx.inputType(zeroIndex);
    SmallVector<int64_t> zShape = {experts, blockwise ? rows : (rows + pack - 1) / pack};
    if (blockwise)
      zShape.push_back((expected[2] + pack - 1) / pack);
    if (!zType.getElementType().isInteger(8) || zType.getShape() != ArrayRef<int64_t>(zShape))
      return ctx.error() << name << " zero points must be uint8 " << RankedTensorType::get(zShape, zType.getElementType())
                         << " (" << bits << "-bit values packed like the weights, one per scale), got " << zType,
             failure();
    w.zeroPoints = unpackZeroPoints(ctx.b, ctx.loc, zero, expected, bits);
  }
  return w;
}

Results convertMoeNode(NodeContext &ctx, const MoeLayout &layout) {
  OpBuilder &b = ctx.b;
  Location loc = ctx.loc;
  Value x = ctx.input(Input), logits = ctx.input(RouterProbs);
  if (!x || !logits)
    return ctx.error() << "input and router_probs are required", failure();
  RankedTensorType xType = ctx.inputType(Input);
  Type element = xType.getElementType();
  if (!element.isF32() && !element.isF16() && !element.isBF16())
    return ctx.error() << "input must be f32, f16 or bf16, got " << xType, failure();
  if (xType.getRank() != 2 && xType.getRank() != 3)
    return ctx.error() << "input must be [tokens, hidden] or [batch, sequence, hidden], got " << xType,
           failure();
  int64_t hidden = xType.getShape().back();
  if (ShapedType::isDynamic(hidden))
    return ctx.error() << "the hidden size of input must be static", failure();

  // Unsupported features are errors at the node, never silently dropped.
  bool sparseMixer = ctx.intAttr("use_sparse_mixer", 0) != 0;
  if (sparseMixer && ctx.input(QMoeRouterWeights) && ctx.node.op_type() == "QMoE")
    return ctx.error() << "use_sparse_mixer with router_weights is not supported", failure();
  if (sparseMixer && (ctx.intAttr("k", 1) != 2 || ctx.intAttr("normalize_routing_weights", 0) != 0))
    return ctx.error() << "use_sparse_mixer (Phi-3.5-MoE's SparseMixer) needs k = 2 and "
                          "normalize_routing_weights = 0, got k = "
                       << ctx.intAttr("k", 1) << ", normalize_routing_weights = "
                       << ctx.intAttr("normalize_routing_weights", 0),
           failure();
  std::string activation = ctx.stringAttr("activation_type", "relu");
  SwigluParams swiglu{ctx.floatAttr("activation_alpha", 1.0f), ctx.floatAttr("activation_beta", 0.0f),
                      ctx.attr("swiglu_limit") ? std::optional<float>(ctx.floatAttr("swiglu_limit", 0.0f))
                                               : std::nullopt,
                      ctx.intAttr("swiglu_limit_after_activation", 0) != 0};
  if (activation != "swiglu" && (!swiglu.isPlain() || swiglu.limitAfterActivation))
    return ctx.error() << "activation_alpha, activation_beta and swiglu_limit(_after_activation) apply to swiglu only, not '"
                       << activation << "'",
           failure();
  if (swiglu.limit && !(*swiglu.limit > 0.0f))
    return ctx.error() << "swiglu_limit must be positive, got " << *swiglu.limit, failure();
  std::optional<Activation> kind = llvm::StringSwitch<std::optional<Activation>>(activation)
                                       .Case("relu", Activation::relu)
                                       // ORT's MoE gelu is the tanh approximation.
                                       .Case("gelu", Activation::gelu_tanh)
                                       .Case("silu", Activation::silu)
                                       .Case("swiglu", Activation::swiglu)
                                       .Case("identity", Activation::linear)
                                       .Default(std::nullopt);
  if (!kind)
    return ctx.error() << "activation_type '" << activation
                       << "' is not one of relu, gelu, silu, swiglu, identity",
           failure();
  // ORT's Mixtral tooling writes silu experts with fc3: silu(fc1 · x) *
  // (fc3 · x), SwiGLU whose gate and up weights are separate inputs.
  bool siluWithFc3 = *kind == Activation::silu && ctx.input(layout.fc3);
  if (siluWithFc3)
    kind = Activation::swiglu;
  bool gated = *kind == Activation::swiglu;
  int64_t fusion = siluWithFc3 ? 0 : ctx.intAttr("swiglu_fusion", 0);
  if (gated && (fusion < 0 || fusion > 2))
    return ctx.error() << "swiglu_fusion must be 0, 1 or 2, got " << fusion, failure();
  // QMoE: the quantisation this importer reads (ORT's defaults).
  // Widths: expert_weight_bits, or per weight fcN_expert_weight_bits.
  int64_t bits = ctx.intAttr("expert_weight_bits", 4), blockSize = ctx.intAttr("block_size", 0);
  std::map<unsigned, int64_t> fcBits;
  if (layout.quantized) {
    for (auto [fc, attr] : {std::pair<unsigned, StringRef>{layout.fc1, "fc1_expert_weight_bits"},
                            {layout.fc2, "fc2_expert_weight_bits"},
                            {layout.fc3, "fc3_expert_weight_bits"}}) {
      fcBits[fc] = ctx.intAttr(attr, bits);
      if (fcBits[fc] != 2 && fcBits[fc] != 4 && fcBits[fc] != 8)
        return ctx.error() << (ctx.attr(attr) ? attr : StringRef("expert_weight_bits")) << " must be 2, 4 or 8, got "
                           << fcBits[fc],
               failure();
    }
    // fc1 and fc3 are concatenated packed: one width.
    if (ctx.input(layout.fc3) && fcBits[layout.fc3] != fcBits[layout.fc1])
      return ctx.error() << "fc3_experts_weights has " << fcBits[layout.fc3] << "-bit values and fc1 "
                         << fcBits[layout.fc1] << "-bit ones (they are concatenated: one width is supported)",
             failure();
    std::string quantType = ctx.stringAttr("quant_type", "int");
    if (quantType != "int")
      return ctx.error() << "quant_type '" << quantType << "' is not supported (only int)", failure();
    if (ctx.intAttr("weights_prepacked", 0) == 1)
      return ctx.error() << "weights_prepacked = 1 (an execution provider's packing) is not supported", failure();
  }
  // Expert weights [E, out, in]: floats, or quantised (kept packed).
  auto weightsOf = [&](unsigned index, unsigned scales, unsigned zeroPoints, StringRef name,
                       int64_t inSize) -> FailureOr<ExpertWeights> {
    if (layout.quantized)
      return quantizedWeights(ctx, index, scales, zeroPoints, name, inSize, fcBits[index], blockSize, element);
    FailureOr<Value> w = expertWeights(ctx, index, name, inSize);
    if (failed(w))
      return failure();
    ExpertWeights floats;
    floats.floats = *w;
    floats.element = cast<RankedTensorType>(w->getType()).getElementType();
    return floats;
  };
  unsigned Fc1 = layout.fc1, Fc1Bias = layout.fc1Bias, Fc2 = layout.fc2, Fc2Bias = layout.fc2Bias,
           Fc3 = layout.fc3, Fc3Bias = layout.fc3Bias;
  if (ctx.input(Fc3) && !(gated && fusion == 0))
    return ctx.error() << "fc3_experts_weights is only used by silu, and by swiglu with swiglu_fusion = 0",
           failure();

  // Weights: fc1 [E, U, H], fc2 [E, H, F].
  FailureOr<ExpertWeights> fc1 = weightsOf(Fc1, layout.fc1Scales, layout.fc1ZeroPoints, "fc1_experts_weights", hidden);
  if (failed(fc1))
    return failure();
  ExpertWeights upParts = *fc1;
  if (gated && fusion == 0) {
    FailureOr<ExpertWeights> fc3 = weightsOf(Fc3, layout.fc3Scales, layout.fc3ZeroPoints,
                                             "fc3_experts_weights (swiglu_fusion = 0)", hidden);
    if (failed(fc3))
      return failure();
    upParts = concatRows(b, loc, upParts, *fc3);
  }
  int64_t experts = upParts.experts(), upRows = upParts.rows();
  // Biases [E, rows], checked against their weights.
  auto biasOf = [&](unsigned index, StringRef name, int64_t rows) -> FailureOr<Value> {
    Value bias = ctx.input(index);
    if (!bias)
      return Value();
    RankedTensorType type = ctx.inputType(index);
    if (type.getShape() != ArrayRef<int64_t>{experts, rows} || type.getElementType() != element)
      return ctx.error() << name << " must be " << RankedTensorType::get({experts, rows}, element) << ", got " << type,
             failure();
    return bias;
  };
  FailureOr<Value> upBias = biasOf(Fc1Bias, "fc1_experts_bias", gated && fusion == 0 ? upRows / 2 : upRows);
  if (failed(upBias))
    return failure();
  if (gated && fusion == 0 && *upBias) {
    FailureOr<Value> fc3Bias = biasOf(Fc3Bias, "fc3_experts_bias", upRows / 2);
    if (failed(fc3Bias))
      return failure();
    if (!*fc3Bias)
      return ctx.error() << "fc1_experts_bias without fc3_experts_bias", failure();
    upBias = tensor::ConcatOp::create(b, loc, /*dim=*/1, ValueRange{*upBias, *fc3Bias}).getResult();
  }
  if (gated && fusion == 1) {
    // Rows g0, u0, g1, u1, ... -> [g0 g1 ...; u0 u1 ...] (the bias, scales
    // and zero points alike).
    if (upRows % 2 != 0)
      return ctx.error() << "interleaved swiglu fc1 needs an even row count, got " << upRows, failure();
    auto regroup = [&](Value t) { return regroupInterleavedRows(b, loc, t); };
    // Packed weights that are arguments stay as given: the dequantize reads
    // their rows interleaved, so no call copies them. Constants are
    // regrouped once, here.
    if (upParts.quantized() && !upParts.packed.getDefiningOp<arith::ConstantOp>())
      upParts.interleavedRows = true;
    else
      upParts = upParts.mapRows(regroup);
    if (*upBias)
      upBias = regroup(*upBias);
  }
  Value up = upParts.value(b, loc);
  int64_t ffn = gated ? upRows / 2 : upRows;
  FailureOr<ExpertWeights> downParts = weightsOf(Fc2, layout.fc2Scales, layout.fc2ZeroPoints, "fc2_experts_weights", ffn);
  if (failed(downParts))
    return failure();
  FailureOr<Value> down = downParts->value(b, loc);
  auto downType = cast<RankedTensorType>(down->getType());
  if (downType.getDimSize(0) != experts || downType.getDimSize(1) != hidden)
    return ctx.error() << "fc2_experts_weights " << downType << " does not match " << experts << " experts, hidden "
                       << hidden << " and FFN size " << ffn,
           failure();
  if (cast<RankedTensorType>(up.getType()).getElementType() != element || downType.getElementType() != element)
    return ctx.error() << "expert weights must have the input's element type " << element, failure();
  FailureOr<Value> downBias = biasOf(Fc2Bias, "fc2_experts_bias", hidden);
  if (failed(downBias))
    return failure();

  RankedTensorType logitsType = ctx.inputType(RouterProbs);
  if (logitsType.getShape().back() != experts)
    return ctx.error() << "router_probs " << logitsType << " must have " << experts << " experts (fc1 has "
                       << experts << ")",
           failure();
  int64_t k = ctx.intAttr("k", 1);
  if (k < 1 || k > experts)
    return ctx.error() << "k = " << k << " is out of range [1, " << experts << "]", failure();
  ExpertMixture mixture;
  mixture.x = x;
  mixture.logits = logits;
  mixture.up = up;
  mixture.upBias = *upBias;
  mixture.down = *down;
  mixture.downBias = *downBias;
  mixture.activation = *kind;
  mixture.swiglu = swiglu;
  mixture.k = k;
  mixture.normalize = ctx.intAttr("normalize_routing_weights", 0) != 0;
  mixture.sparseMixer = sparseMixer;
  // QMoE's router_weights: the logits only choose; the mixing weights are
  // router_weights at the chosen experts (renormalised if asked).
  if (Value mixing = layout.quantized ? ctx.input(QMoeRouterWeights) : Value()) {
    auto mixingType = cast<RankedTensorType>(mixing.getType());
    if (mixingType.getRank() != 2 || mixingType.getDimSize(1) != experts ||
        !isa<FloatType>(mixingType.getElementType()))
      return ctx.error() << "router_weights must be [tokens, " << experts << "] floats, got " << mixingType,
             failure();
    mixture.mixing = mixing;
  }
  return SmallVector<Value>{buildExpertMixture(b, loc, mixture)};
}

Results convertMoe(NodeContext &ctx) { return convertMoeNode(ctx, kMoe); }
Results convertQMoe(NodeContext &ctx) { return convertMoeNode(ctx, kQMoe); }

} // namespace

void mlir::moe::onnx_import::addMoeConverters(std::vector<OpConverter> &converters) {
  converters.push_back({"com.microsoft", "MoE", convertMoe});
  converters.push_back({"com.microsoft", "QMoE", convertQMoe});
}
