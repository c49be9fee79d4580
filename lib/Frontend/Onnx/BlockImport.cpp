//===- BlockImport.cpp - recognised MoE blocks as moe ops -----------------===//
//
// A block MoeBlocks.cpp found becomes one moe.layer (batched and per-expert
// loop forms; the loop form's weights stacked once into [E, ...] constants)
// or, for gpt-oss, ONNX Runtime's MoE computation (ExpertMixture.h).
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"
#include "ExpertMixture.h"
#include "moe/Utils/TensorBuilders.h"

#include "dialects/moe/MoeOps.h"
#include "mlir/AsmParser/AsmParser.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"

#include <cstring>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::onnx_import;

/// `x` (floats) times `scale`, computed in f32 and rounded to x's type.
static Value scaledBy(OpBuilder &b, Location loc, Value x, double scale) {
  Type element = cast<RankedTensorType>(x.getType()).getElementType();
  return *tensor_builders::elementwise(b, loc, x, element, [&](OpBuilder &nb, Location l, ValueRange v) {
    Value wide = tensor_builders::castScalar(nb, l, v[0], nb.getF32Type());
    Value c = arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(float(scale)));
    return tensor_builders::castScalar(nb, l, arith::MulFOp::create(nb, l, wide, c), element);
  });
}

/// One moe.layer for a block of plain ops (MoeBlocks.cpp): softmax over the
/// router logits, top-k, [renormalised], SwiGLU experts.
LogicalResult GraphImporter::importMoeBlock(const MoeBlock &block, Location loc) {
  if (block.gptOss)
    return importGptOssBlock(block, loc);
  if (!block.sparseMixerLogits.empty())
    return importSparseMixerBlock(block, loc);
  std::string gateUpName = block.gateUp, downName = block.down, upBiasName, downBiasName;
  if (failed(materializeWeightViews(block, loc)))
    return failure();
  if ((!block.expertDown.empty() || !block.gateStack.empty()) &&
      failed(stackExpertWeights(block, loc, gateUpName, downName, upBiasName, downBiasName)))
    return failure();
  FailureOr<Value> x = lookup(block.x, loc), router = lookup(block.routerWeight.name, loc),
                   up = lookup(gateUpName, loc), down = lookup(downName, loc);
  if (failed(x) || failed(router) || failed(up) || failed(down))
    return failure();
  // Tokens in several leading axes ([B, S, H]): one axis for the layer,
  // restored on its result (findMoeBlocks takes such x only for per-token
  // forms).
  Value tokensX = *x;
  SmallVector<ReassociationIndices> tokenAxes;
  if (auto given = cast<RankedTensorType>(x->getType()); given.getRank() > 2 && block.expertChoiceCapacity == 0) {
    tokenAxes = {llvm::to_vector(llvm::seq<int64_t>(0, given.getRank() - 1)), {given.getRank() - 1}};
    *x = tensor::CollapseShapeOp::create(builder, loc, *x, tokenAxes);
  }
  auto xType = cast<RankedTensorType>(x->getType());
  auto routerType = cast<RankedTensorType>(router->getType());
  auto upType = cast<RankedTensorType>(up->getType()), downType = cast<RankedTensorType>(down->getType());
  // Each expert's top-C tokens: the graph's TopK fails on fewer tokens than
  // C, and so does the run (the layer would otherwise pick them all).
  if (block.expertChoiceCapacity > 0 && xType.getRank() == 2) {
    if (!xType.isDynamicDim(0) && xType.getDimSize(0) < block.expertChoiceCapacity)
      return emitError(loc) << "MoE block: each expert picks " << block.expertChoiceCapacity << " of "
                            << xType.getDimSize(0) << " tokens";
    if (xType.isDynamicDim(0))
      checkTopKAtRunTime(builder, loc, block.expertChoiceCapacity, tensor::DimOp::create(builder, loc, *x, 0));
  }
  Type element = xType.getElementType();
  if (xType.getRank() != 2 || routerType.getRank() != 2 || upType.getRank() != 3 || downType.getRank() != 3)
    return emitError(loc) << "MoE block: expected x [tokens, hidden], a 2-D router and 3-D expert weights";
  bool gated = !block.ungated;
  int64_t hidden = xType.getDimSize(1), experts = upType.getDimSize(0),
          ffn = gated ? upType.getDimSize(1) / 2 : upType.getDimSize(1);
  ArrayRef<int64_t> routerShape = routerType.getShape();
  if (routerShape != (block.routerWeight.rows ? ArrayRef<int64_t>{experts, hidden} : ArrayRef<int64_t>{hidden, experts}) ||
      upType.getDimSize(2) != hidden ||
      (gated && upType.getDimSize(1) % 2 != 0) || downType.getShape() != ArrayRef<int64_t>{experts, hidden, ffn} ||
      routerType.getElementType() != (block.routerOnWidenedX ? builder.getF32Type() : element) ||
      upType.getElementType() != element ||
      downType.getElementType() != element || block.k < 1 || block.k > experts)
    return emitError(loc) << "MoE block: inconsistent shapes: x " << xType << ", router " << routerType
                          << ", gate/up " << upType << ", down " << downType << ", k = " << block.k;
  // A linear map's weight as rows [out, in]: as given, or x @ W's transposed.
  auto rows = [&](const LinearWeight &name, Value w) {
    return name.rows ? w : tensor_builders::transpose(builder, loc, w, {1, 0});
  };
  Value routerRows = rows(block.routerWeight, *router); // [E, H]
  Value routerBias; // [E], the router's element type
  if (!block.routerBias.empty()) {
    FailureOr<Value> bias = lookup(block.routerBias, loc);
    if (failed(bias))
      return failure();
    auto biasType = cast<RankedTensorType>(bias->getType());
    if (biasType.getNumElements() != experts || biasType.getElementType() != routerType.getElementType())
      return emitError(loc) << "MoE block: the router bias " << biasType << " is not " << experts << " values of "
                            << routerType.getElementType();
    routerBias = tensor_builders::reshape(builder, loc, *bias, {experts});
  }
  if (block.routerScale != 1) {
    routerRows = scaledBy(builder, loc, routerRows, block.routerScale);
    if (routerBias)
      routerBias = scaledBy(builder, loc, routerBias, block.routerScale);
  }
  Activation activation = block.activation == GateActivation::gelu ? Activation::geglu : Activation::swiglu;
  if (block.ungated)
    activation = *block.ungated == PlainActivation::relu        ? Activation::relu
                 : *block.ungated == PlainActivation::relu2     ? Activation::relu2
                 : *block.ungated == PlainActivation::gelu      ? Activation::gelu
                 : *block.ungated == PlainActivation::gelu_tanh ? Activation::gelu_tanh
                                                                : Activation::silu;
  // Experts with biases: the layer's ffn_bias ([E, U] and [E, H]).
  Value upBias, downBias;
  if (!upBiasName.empty()) {
    FailureOr<Value> up = lookup(upBiasName, loc), down = lookup(downBiasName, loc);
    if (failed(up) || failed(down))
      return failure();
    upBias = *up;
    downBias = *down;
  }
  bool sigmoid = (block.deepSeek && !block.deepSeek->softmaxScores) || block.sigmoid;
  std::string routing = "#moe.routing<scoring = " + std::string(sigmoid ? "sigmoid" : "softmax") +
                        ", k = " + std::to_string(block.k) + (block.normalize ? ", normalize = all" : "");
  if (block.normalize && block.normEpsilon > 0)
    routing += ", norm_epsilon = " + doubleLiteral(block.normEpsilon);
  if (block.expertChoiceCapacity > 0)
    routing += ", select = expert_choice, capacity = " + std::to_string(block.expertChoiceCapacity);
  // A 16-bit router's MatMul (and Gemm) writes 16-bit logits: the layer
  // rounds them as the graph does before scoring and selecting; scores
  // taken in the 16-bit type, then widened for the TopK, likewise.
  std::string sixteen = element.isBF16() ? "bf16" : element.isF16() ? "f16" : "";
  if (!sixteen.empty() && !block.routerOnWidenedX)
    routing += ", logits_type = " + sixteen;
  if (!sixteen.empty() && block.scoresRounded)
    routing += ", scores_type = " + sixteen;
  Value selectionBias;
  if (block.deepSeek) {
    routing += ", scale = " + doubleLiteral(block.deepSeek->scale) +
               ", num_groups = " + std::to_string(block.deepSeek->numGroups) +
               ", topk_groups = " + std::to_string(block.deepSeek->topkGroups);
    FailureOr<Value> bias = lookup(block.deepSeek->selectionBias, loc);
    if (failed(bias))
      return failure();
    if (cast<RankedTensorType>(bias->getType()).getShape() != ArrayRef<int64_t>{experts})
      return emitError(loc) << "MoE block: the selection bias " << bias->getType() << " is not [" << experts << "]";
    selectionBias = tensor_builders::castTensor(builder, loc, *bias, builder.getF32Type());
  }
  routing += ">";
  auto routingAttr = dyn_cast_or_null<RoutingAttr>(parseAttribute(routing, context));
  auto expertsAttr = dyn_cast_or_null<ArrayAttr>(
      parseAttribute("[#moe.group<ffn, " + std::to_string(experts) + ">]", context));
  if (!routingAttr || !expertsAttr)
    return emitError(loc) << "MoE block: internal error building the routing attributes";
  // The shared expert's weights, as the layer's [out, in] rows.
  Value sharedUp, sharedDown, sharedGate;
  if (!block.sharedDownProj.empty()) {
    FailureOr<Value> gateProj = lookup(block.sharedGateProj.name, loc), upProj = lookup(block.sharedUpProj.name, loc),
                     downProj = lookup(block.sharedDownProj.name, loc);
    if (failed(gateProj) || failed(upProj) || failed(downProj))
      return failure();
    Value gateRows = rows(block.sharedGateProj, *gateProj), upRows = rows(block.sharedUpProj, *upProj);
    sharedDown = rows(block.sharedDownProj, *downProj);
    if (!block.sharedGate.empty()) {
      FailureOr<Value> gate = lookup(block.sharedGate.name, loc);
      if (failed(gate))
        return failure();
      sharedGate = rows(block.sharedGate, *gate);
    }
    auto projType = cast<RankedTensorType>(gateRows.getType());
    int64_t sharedSize = projType.getDimSize(0);
    if (projType.getShape() != ArrayRef<int64_t>{sharedSize, hidden} || upRows.getType() != projType ||
        projType.getElementType() != element ||
        cast<RankedTensorType>(sharedDown.getType()).getShape() != ArrayRef<int64_t>{hidden, sharedSize} ||
        (sharedGate && cast<RankedTensorType>(sharedGate.getType()).getShape() != ArrayRef<int64_t>{1, hidden}))
      return emitError(loc) << "MoE block: inconsistent shared expert weights";
    sharedUp = tensor::ConcatOp::create(builder, loc, /*dim=*/0, ValueRange{gateRows, upRows});
  }
  auto layer = LayerOp::create(builder, loc, xType, RankedTensorType::get({xType.getDimSize(0), experts}, builder.getF32Type()),
                               *x, routerRows, Value(), routerBias, selectionBias, Value(), Value(), *up, *down, upBias, downBias, Value(), Value(),
                               sharedUp, sharedDown, sharedGate, expertsAttr,
                               ActivationAttr::get(context, activation), routingAttr, CapacityAttr());
  Value y = layer.getY();
  if (block.widenedOutput && !cast<RankedTensorType>(y.getType()).getElementType().isF32())
    y = arith::ExtFOp::create(builder, loc, cast<RankedTensorType>(y.getType()).clone(builder.getF32Type()), y);
  if (!tokenAxes.empty())
    y = tensor::ExpandShapeOp::create(builder, loc, tokensX.getType(), y, tokenAxes,
                                      tensor::getMixedSizes(builder, loc, tokensX));
  if (block.outputView < 0) {
    values[block.output] = y;
    return success();
  }
  return viewLikeSharedExpertInput(block, y, loc);
}

/// The graph adds the shared expert, computed on the tensor x is a view of,
/// to the routed output viewed by its own Reshape; the layer added it to
/// x's rows. The same Reshape of the layer's result is that sum when the
/// view has the shared expert input's shape: equal sizes are checked here
/// where they are static, at run time otherwise (the call fails, naming
/// both, when they differ).
LogicalResult GraphImporter::viewLikeSharedExpertInput(const MoeBlock &block, Value y, Location loc) {
  values[block.routedOutput] = y;
  const onnx::NodeProto &view = model.graph().node(block.outputView);
  if (failed(importNode(view, block.outputView)))
    return failure();
  Value viewed = values.lookup(view.output(0));
  FailureOr<Value> tokens = lookup(block.sharedTokens, loc);
  if (!viewed || failed(tokens))
    return failure();
  auto viewedType = cast<RankedTensorType>(viewed.getType()), tokensType = cast<RankedTensorType>(tokens->getType());
  auto mismatch = [&] {
    return emitError(loc) << "MoE block: the routed output is viewed as " << viewedType
                          << " before the shared expert's output " << tokensType << " is added";
  };
  if (viewedType.getRank() != tokensType.getRank())
    return mismatch();
  for (int64_t d = 0; d < viewedType.getRank(); ++d) {
    if (!viewedType.isDynamicDim(d) && !tokensType.isDynamicDim(d)) {
      if (viewedType.getDimSize(d) != tokensType.getDimSize(d))
        return mismatch();
      continue;
    }
    checkSameSizeAtRunTime(builder, loc, d, tensor::DimOp::create(builder, loc, viewed, d),
                           tensor::DimOp::create(builder, loc, *tokens, d));
  }
  values[block.output] = viewed;
  return success();
}

/// gpt-oss's block (MoeBlocks.cpp) as ONNX Runtime's MoE computes it: its
/// x @ W weights and biases as the moe ops' rows (W13 [E, H, 2F] transposed
/// to [E, 2F, H] and its alternate gate/up rows regrouped), top-k of the
/// logits then the softmax over the picks, the clamped SwiGLU.
LogicalResult GraphImporter::importGptOssBlock(const MoeBlock &block, Location loc) {
  const MoeBlock::GptOss &oss = *block.gptOss;
  FailureOr<Value> x = lookup(block.x, loc), logits = lookup(oss.logits, loc), w13 = lookup(block.gateUp, loc),
                   b13 = lookup(oss.upBias, loc), w2 = lookup(block.down, loc), b2 = lookup(oss.downBias, loc);
  if (failed(x) || failed(logits) || failed(w13) || failed(b13) || failed(w2) || failed(b2))
    return failure();
  auto xType = cast<RankedTensorType>(x->getType());
  auto type = [](Value v) { return cast<RankedTensorType>(v.getType()); };
  Type element = xType.getElementType();
  int64_t hidden = xType.getShape().back(), experts = type(*w13).getDimSize(0), ffn = type(*w13).getDimSize(2) / 2;
  if (xType.getRank() != 2 || type(*w13).getRank() != 3 ||
      type(*w13).getShape() != ArrayRef<int64_t>{experts, hidden, 2 * ffn} ||
      type(*b13).getShape() != ArrayRef<int64_t>{experts, 2 * ffn} ||
      type(*w2).getShape() != ArrayRef<int64_t>{experts, ffn, hidden} ||
      type(*b2).getShape() != ArrayRef<int64_t>{experts, hidden} || type(*logits).getRank() != 2 ||
      type(*logits).getDimSize(1) != experts || type(*w13).getElementType() != element ||
      type(*w2).getElementType() != element || type(*b13).getElementType() != element ||
      type(*b2).getElementType() != element || block.k < 1 || block.k > experts)
    return emitError(loc) << "gpt-oss MoE block: inconsistent shapes: x " << xType << ", logits " << type(*logits)
                          << ", W13 " << type(*w13) << ", b13 " << type(*b13) << ", W2 " << type(*w2) << ", b2 "
                          << type(*b2) << ", k = " << block.k;
  namespace tb = tensor_builders;
  ExpertMixture mixture;
  mixture.x = *x;
  mixture.logits = *logits;
  mixture.up = regroupInterleavedRows(builder, loc, tb::transpose(builder, loc, *w13, {0, 2, 1}));
  mixture.upBias = regroupInterleavedRows(builder, loc, *b13);
  mixture.down = tb::transpose(builder, loc, *w2, {0, 2, 1});
  mixture.downBias = *b2;
  mixture.activation = Activation::swiglu;
  mixture.swiglu.alpha = oss.alpha;
  mixture.swiglu.beta = oss.beta;
  mixture.swiglu.limit = oss.limit;
  mixture.k = block.k;
  mixture.selectThenScore = true;
  values[block.output] = buildExpertMixture(builder, loc, mixture);
  return success();
}

/// A batched block routed by Phi-3.5-MoE's SparseMixer as ONNX Runtime's
/// MoE with use_sparse_mixer computes it: the logits as the graph computes
/// them, gate/up rows [E, 2F, H] and down rows [E, H, F], SwiGLU or GeGLU.
LogicalResult GraphImporter::importSparseMixerBlock(const MoeBlock &block, Location loc) {
  FailureOr<Value> x = lookup(block.x, loc), logits = lookup(block.sparseMixerLogits, loc),
                   up = lookup(block.gateUp, loc), down = lookup(block.down, loc);
  if (failed(x) || failed(logits) || failed(up) || failed(down))
    return failure();
  auto type = [](Value v) { return cast<RankedTensorType>(v.getType()); };
  Type element = type(*x).getElementType();
  int64_t hidden = type(*x).getShape().back(), experts = type(*up).getDimSize(0), ffn = type(*up).getDimSize(1) / 2;
  if (type(*x).getRank() != 2 || type(*up).getShape() != ArrayRef<int64_t>{experts, 2 * ffn, hidden} ||
      type(*down).getShape() != ArrayRef<int64_t>{experts, hidden, ffn} || type(*logits).getRank() != 2 ||
      type(*logits).getDimSize(1) != experts || type(*up).getElementType() != element ||
      type(*down).getElementType() != element || experts < 2)
    return emitError(loc) << "SparseMixer MoE block: inconsistent shapes: x " << type(*x) << ", logits "
                          << type(*logits) << ", gate/up " << type(*up) << ", down " << type(*down);
  ExpertMixture mixture;
  mixture.x = *x;
  mixture.logits = *logits;
  mixture.up = *up;
  mixture.down = *down;
  mixture.activation = block.activation == GateActivation::gelu ? Activation::geglu : Activation::swiglu;
  mixture.k = 2;
  mixture.sparseMixer = true;
  mixture.sparseMixerEps = block.sparseMixerEps;
  values[block.output] = buildExpertMixture(builder, loc, mixture);
  return success();
}

/// The block's weight views (MoeBlock::weightViews) as constants of their
/// own, each once: one matrix of a stack, maybe transposed, maybe cut along
/// its output axis.
LogicalResult GraphImporter::materializeWeightViews(const MoeBlock &block, Location loc) {
  for (const WeightView &view : block.weightViews) {
    if (constants.count(view.name))
      continue;
    auto it = constants.find(view.source);
    int64_t rank = view.index < 0 ? (it != constants.end() && it->second.type.getRank() == 1 ? 1 : 2) : 3;
    if (it == constants.end() || it->second.type.getRank() != rank ||
        (view.index >= 0 && view.index >= it->second.type.getDimSize(0)))
      return emitError(loc) << "MoE block: the expert weight '" << view.source << "' is not a constant of rank "
                            << rank << (view.index >= 0 ? " with the indexed matrix" : "");
    const ConstantTensor &source = it->second;
    Type element = source.type.getElementType();
    int64_t width = byteWidth(element);
    if (source.type.getRank() == 1 && view.index < 0 && !view.transposed) {
      // A bias [n]: its part [start, start + count).
      int64_t n = source.type.getDimSize(0), count = view.count < 0 ? n - view.start : view.count;
      if (view.start < 0 || count < 0 || view.start + count > n)
        return emitError(loc) << "MoE block: the part [" << view.start << ", " << view.start + count
                              << ") of the expert bias '" << view.source << "' is out of its " << n;
      ConstantTensor constant;
      constant.type = RankedTensorType::get({count}, element);
      constant.owned = std::make_shared<std::vector<char>>(source.bytes.begin() + view.start * width,
                                                           source.bytes.begin() + (view.start + count) * width);
      constant.bytes = ArrayRef<char>(constant.owned->data(), constant.owned->size());
      constants[view.name] = constant;
      continue;
    }
    int64_t a = source.type.getDimSize(rank - 2), b = source.type.getDimSize(rank - 1);
    const char *matrix = source.bytes.data() + std::max<int64_t>(view.index, 0) * a * b * width;
    // The matrix as used: [rows, cols] after the transpose.
    int64_t rowsOf = view.transposed ? b : a, colsOf = view.transposed ? a : b;
    int64_t outAxisSize = view.rows ? rowsOf : colsOf;
    int64_t count = view.count < 0 ? outAxisSize - view.start : view.count;
    if (view.start < 0 || count < 0 || view.start + count > outAxisSize)
      return emitError(loc) << "MoE block: the part [" << view.start << ", " << view.start + count
                            << ") of the expert weight '" << view.source << "' is out of its " << outAxisSize;
    int64_t outRows = view.rows ? count : rowsOf, outCols = view.rows ? colsOf : count;
    auto data = std::make_shared<std::vector<char>>(outRows * outCols * width);
    for (int64_t r = 0; r < outRows; ++r)
      for (int64_t c = 0; c < outCols; ++c) {
        int64_t row = view.rows ? r + view.start : r, col = view.rows ? c : c + view.start;
        int64_t at = view.transposed ? col * b + row : row * b + col;
        memcpy(data->data() + (r * outCols + c) * width, matrix + at * width, width);
      }
    ConstantTensor constant;
    constant.type = RankedTensorType::get({outRows, outCols}, element);
    constant.owned = std::move(data);
    constant.bytes = ArrayRef<char>(constant.owned->data(), constant.owned->size());
    constants[view.name] = constant;
  }
  return success();
}

/// The experts' weights of a loop-form or gathered-stack block stacked as
/// moe.layer takes them, once at import: gate/up rows [E, 2I, H] (each
/// expert's gate then up) and down rows [E, H, I]. Each expert's matrix is
/// its own 2-D constant (expertGate/Up/Down) or its slice of a 3-D stack
/// (gateStack/upStack/downStack), as x @ W's [in, out] or as rows [out, in]
/// (expertRows); ungated experts have no up rows. Per-expert biases stack
/// the same way ([E, U], [E, H]). They become constants named after the
/// block's output; `gateUp`, `down` and the bias names get their names.
LogicalResult GraphImporter::stackExpertWeights(const MoeBlock &block, Location loc, std::string &gateUp,
                                                std::string &down, std::string &upBiasName,
                                                std::string &downBiasName) {
  bool fromStacks = !block.gateStack.empty();
  auto find = [&](const std::string &name) -> const ConstantTensor * {
    auto it = constants.find(name);
    return it == constants.end() ? nullptr : &it->second;
  };
  // Expert e's matrix of one projection: its bytes and [rows, cols].
  struct Matrix {
    const char *bytes = nullptr;
    RankedTensorType type;
  };
  auto matrix = [&](const std::vector<std::string> &perExpert, const std::string &stack, int64_t e) -> Matrix {
    const ConstantTensor *c = find(fromStacks ? stack : perExpert[e]);
    if (!c || c->type.getRank() != (fromStacks ? 3 : 2) || (fromStacks && e >= c->type.getDimSize(0)))
      return {};
    if (!fromStacks)
      return {c->bytes.data(), c->type};
    auto type = RankedTensorType::get({c->type.getDimSize(1), c->type.getDimSize(2)}, c->type.getElementType());
    return {c->bytes.data() + e * type.getNumElements() * byteWidth(type.getElementType()), type};
  };
  const ConstantTensor *probe = find(fromStacks ? block.downStack : block.expertDown.front());
  int64_t experts = fromStacks ? (probe && probe->type.getRank() == 3 ? probe->type.getDimSize(0) : 0)
                               : static_cast<int64_t>(block.expertDown.size());
  Matrix first = experts ? matrix(block.expertGate, block.gateStack, 0) : Matrix();
  if (!first.bytes)
    return emitError(loc) << "MoE block: the experts' gate weights ('"
                          << (fromStacks ? block.gateStack : block.expertGate[0]) << "') are not constants of "
                          << (fromStacks ? "rank 3" : "rank 2");
  // x @ W's [in, out], or rows [out, in] (block.expertRows).
  bool rows = block.expertRows;
  int64_t hidden = first.type.getDimSize(rows ? 1 : 0), ffn = first.type.getDimSize(rows ? 0 : 1);
  Type element = first.type.getElementType();
  int64_t width = byteWidth(element);
  // Gated: [gate; up] rows per expert; ungated: W1's rows alone.
  int64_t upRows = block.ungated ? ffn : 2 * ffn;
  auto gateUpData = std::make_shared<std::vector<char>>(experts * upRows * hidden * width);
  auto downData = std::make_shared<std::vector<char>>(experts * hidden * ffn * width);
  // dst[offset + r][c] = src[c][r] (a [cols, rows] matrix transposed), or
  // src[r][c] as it is when the weights are rows already.
  auto transposeInto = [&](const char *src, std::vector<char> &dst, int64_t offset, int64_t dstRows, int64_t cols) {
    if (rows) {
      memcpy(dst.data() + offset * width, src, dstRows * cols * width);
      return;
    }
    for (int64_t r = 0; r < dstRows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        memcpy(dst.data() + (offset + r * cols + c) * width, src + (c * dstRows + r) * width, width);
  };
  auto projType = rows ? RankedTensorType::get({ffn, hidden}, element) : RankedTensorType::get({hidden, ffn}, element);
  auto downType = rows ? RankedTensorType::get({hidden, ffn}, element) : RankedTensorType::get({ffn, hidden}, element);
  for (int64_t e = 0; e < experts; ++e) {
    Matrix gate = matrix(block.expertGate, block.gateStack, e),
           up = block.ungated ? gate : matrix(block.expertUp, block.upStack, e),
           downW = matrix(block.expertDown, block.downStack, e);
    if (!gate.bytes || !up.bytes || !downW.bytes || gate.type != projType || up.type != projType ||
        downW.type != downType)
      return emitError(loc) << "MoE block: expert " << e << "'s weights are not " << (block.ungated ? "" : "gate and ")
                            << "up " << projType << " and down " << downType << " constants";
    transposeInto(gate.bytes, *gateUpData, e * upRows * hidden, ffn, hidden);
    if (!block.ungated)
      transposeInto(up.bytes, *gateUpData, (e * 2 + 1) * ffn * hidden, ffn, hidden);
    transposeInto(downW.bytes, *downData, e * hidden * ffn, hidden, ffn);
  }
  auto stacked = [&](const std::string &name, ArrayRef<int64_t> shape, std::shared_ptr<std::vector<char>> data) {
    ConstantTensor constant;
    constant.type = RankedTensorType::get(shape, element);
    constant.owned = std::move(data);
    constant.bytes = ArrayRef<char>(constant.owned->data(), constant.owned->size());
    constants[name] = constant;
    return name;
  };
  gateUp = stacked(block.output + ".experts_gate_up", {experts, upRows, hidden}, gateUpData);
  down = stacked(block.output + ".experts_down", {experts, hidden, ffn}, downData);
  if (block.expertDownBias.empty())
    return success();
  // Biases as the moe ops' [E, U] ([gate; up]) and [E, H].
  auto upBiasData = std::make_shared<std::vector<char>>(experts * upRows * width);
  auto downBiasData = std::make_shared<std::vector<char>>(experts * hidden * width);
  // A projection without a bias (an empty name) adds zeros: the buffers
  // start zeroed.
  for (int64_t e = 0; e < experts; ++e) {
    auto biasOf = [&](int64_t n) { return RankedTensorType::get({n}, element); };
    auto copy = [&](const std::string &name, int64_t size, char *to) {
      if (name.empty())
        return true;
      const ConstantTensor *bias = find(name);
      if (!bias || bias->type != biasOf(size))
        return false;
      memcpy(to, bias->bytes.data(), size * width);
      return true;
    };
    if (!copy(block.expertGateBias[e], ffn, upBiasData->data() + e * upRows * width) ||
        (!block.ungated && !copy(block.expertUpBias[e], ffn, upBiasData->data() + (e * upRows + ffn) * width)) ||
        !copy(block.expertDownBias[e], hidden, downBiasData->data() + e * hidden * width))
      return emitError(loc) << "MoE block: expert " << e << "'s biases are not " << biasOf(ffn) << " and "
                            << biasOf(hidden) << " constants";
  }
  upBiasName = stacked(block.output + ".experts_up_bias", {experts, upRows}, upBiasData);
  downBiasName = stacked(block.output + ".experts_down_bias", {experts, hidden}, downBiasData);
  return success();
}

/// The block's layer next to its own nodes' result, for the raising check;
/// the layer alone when the two cannot be one type.
Value GraphImporter::checkedRaise(Value raised, Value plain, Location loc) {
  if (plain.getType() != raised.getType() && tensor::CastOp::areCastCompatible(plain.getType(), raised.getType()))
    plain = tensor::CastOp::create(builder, loc, raised.getType(), plain);
  if (plain.getType() != raised.getType()) {
    emitRemark(loc) << "the raising check cannot compare this MoE block with its own ops: they compute "
                    << plain.getType() << ", the layer " << raised.getType();
    return raised;
  }
  return RaisingCheckOp::create(builder, loc, raised.getType(), raised, plain);
}
