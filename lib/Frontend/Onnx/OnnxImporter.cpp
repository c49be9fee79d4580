//===- OnnxImporter.cpp - ONNX models to MLIR -----------------------------===//
//
// Protobuf only (Debian's libonnx-dev classes): no checker, no shape
// inference, so IR versions newer than the library's and the com.microsoft
// ops parse. Result types are computed by the converters themselves.
// Weights are copied once, from the protobuf (or the memory-mapped external
// data file) into the MLIR resource blob; large ones stay out of the IR text
// as dense_resource constants.
//
//===----------------------------------------------------------------------===//

#include "GraphCanonicalization.h"
#include "GraphImporter.h"
#include "moe/Utils/TensorBuilders.h"
#include "moe/Frontend/OnnxImport.h"
#include "moe/Support/Npy.h"

#include "dialects/moe/MoeDialect.h"
#include "dialects/moe/MoeOps.h"
#include "mlir/AsmParser/AsmParser.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Tools/mlir-translate/Translation.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"

#include <cstring>
#include <cmath>
#include <cstdio>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::onnx_import;

//===----------------------------------------------------------------------===//
// Node context
//===----------------------------------------------------------------------===//

const onnx::AttributeProto *NodeContext::attr(StringRef name) const {
  for (const onnx::AttributeProto &a : node.attribute())
    if (a.name() == name)
      return &a;
  return nullptr;
}

int64_t NodeContext::intAttr(StringRef name, int64_t fallback) const {
  const onnx::AttributeProto *a = attr(name);
  return a ? a->i() : fallback;
}

float NodeContext::floatAttr(StringRef name, float fallback) const {
  const onnx::AttributeProto *a = attr(name);
  return a ? a->f() : fallback;
}

std::string NodeContext::stringAttr(StringRef name, StringRef fallback) const {
  const onnx::AttributeProto *a = attr(name);
  return a ? a->s() : fallback.str();
}

std::optional<SmallVector<int64_t>> NodeContext::intsAttr(StringRef name) const {
  const onnx::AttributeProto *a = attr(name);
  if (!a)
    return std::nullopt;
  return SmallVector<int64_t>(a->ints().begin(), a->ints().end());
}

LogicalResult NodeContext::expectInputs(unsigned n, bool floats) const {
  for (unsigned i = 0; i < n; ++i) {
    if (!input(i))
      return error() << "input " << i << " is required";
    if (floats && !isa<FloatType>(inputType(i).getElementType()))
      return error() << "input " << i << " must be a float tensor, got " << input(i).getType();
  }
  return success();
}

FailureOr<int64_t> NodeContext::normalizeAxis(int64_t axis, int64_t rank) const {
  if (axis < -rank || axis >= rank)
    return error() << "axis " << axis << " is out of range for rank " << rank, failure();
  return axis < 0 ? axis + rank : axis;
}

FailureOr<SmallVector<int64_t>> NodeContext::constantInts(unsigned i, StringRef what) const {
  const ConstantTensor *c = constantInput(i);
  std::optional<SmallVector<int64_t>> values = c ? c->asInts() : std::nullopt;
  // Or computed from static sizes (K = Shape(x)[-1] of a full sort).
  if (const ShapeVector *shape = !values && shapeInput ? shapeInput(i) : nullptr) {
    values.emplace();
    for (OpFoldResult e : shape->elements)
      if (std::optional<int64_t> v = getConstantIntValue(e))
        values->push_back(*v);
    if (values->size() != shape->elements.size())
      values.reset();
  }
  if (!values)
    return error() << what << " (input " << i << ") must be a constant integer tensor or computed from static tensor sizes", failure();
  return *values;
}

InFlightDiagnostic NodeContext::error() const {
  // An unnamed node goes by the name its location gives it (OpType#index).
  std::string name = node.name();
  if (auto named = dyn_cast<NameLoc>(loc); named && name.empty())
    name = named.getName().str();
  return emitError(loc) << "node '" << name << "' (" << node.op_type() << ", opset " << opset << "): ";
}

static std::string domainOf(StringRef domain) { return domain == "ai.onnx" ? "" : domain.str(); }

FailureOr<Value> GraphImporter::lookup(StringRef name, Location loc) {
  auto it = values.find(name);
  if (it != values.end())
    return it->second;
  auto constant = constants.find(name);
  if (constant != constants.end())
    return values[name] = materialize(name, constant->second);
  return emitError(loc) << "uses '" << name << "', which no graph input, initializer or earlier node defines",
         failure();
}

/// A Constant node's value joins the constants: materialized where used,
/// and readable at compile time (shapes, axes).
LogicalResult GraphImporter::importConstant(const onnx::NodeProto &node, Location loc) {
  if (node.attribute_size() != 1 || node.output_size() != 1)
    return emitError(loc) << "Constant node '" << node.name() << "' must have one attribute and one output";
  const onnx::AttributeProto &attr = node.attribute(0);
  onnx::TensorProto tensor;
  if (attr.name() == "value") {
    tensor = attr.t();
  } else if (attr.name() == "value_float" || attr.name() == "value_floats") {
    tensor.set_data_type(onnx::TensorProto::FLOAT);
    if (attr.name() == "value_float")
      tensor.add_float_data(attr.f());
    else
      for (float f : attr.floats())
        tensor.add_float_data(f);
    if (attr.name() == "value_floats")
      tensor.add_dims(attr.floats_size());
  } else if (attr.name() == "value_int" || attr.name() == "value_ints") {
    tensor.set_data_type(onnx::TensorProto::INT64);
    if (attr.name() == "value_int")
      tensor.add_int64_data(attr.i());
    else
      for (int64_t i : attr.ints())
        tensor.add_int64_data(i);
    if (attr.name() == "value_ints")
      tensor.add_dims(attr.ints_size());
  } else {
    return emitError(loc) << "Constant node '" << node.name() << "': attribute '" << attr.name()
                          << "' is not supported (value, value_float(s), value_int(s) are)";
  }
  // The decoded bytes may point into `tensor`: keep it alive.
  auto kept = std::make_shared<onnx::TensorProto>(std::move(tensor));
  FailureOr<ConstantTensor> constant = decode(*kept, "Constant node '" + node.name() + "'");
  if (failed(constant))
    return failure();
  if (!constant->owned) {
    constant->owned = std::make_shared<std::vector<char>>(constant->bytes.begin(), constant->bytes.end());
    constant->bytes = ArrayRef<char>(constant->owned->data(), constant->owned->size());
  }
  constants[node.output(0)] = *constant;
  return success();
}

std::string GraphImporter::supportedOps() const {
  std::vector<std::string> names = {"Constant"};
  for (const OpConverter &c : converters)
    names.push_back(c.domain.empty() ? c.opType.str() : (c.domain + "." + c.opType).str());
  llvm::sort(names);
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return llvm::join(names, ", ");
}

LogicalResult GraphImporter::importNode(const onnx::NodeProto &node, size_t index) {
  Location loc = nodeLoc(node, index);
  std::string domain = domainOf(node.domain());
  auto opset = opsets.find(domain);
  int64_t version = opset == opsets.end() ? 1 : opset->second;
  const OpConverter *converter = nullptr;
  for (const OpConverter &c : converters)
    if (c.domain == domain && c.opType == node.op_type())
      converter = &c;
  if (!converter)
    return emitError(loc) << "node '" << node.name() << "': unsupported ONNX op '"
                          << (domain.empty() ? "" : domain + ".") << node.op_type() << "' (opset " << version
                          << "); supported: " << supportedOps();

  NodeContext ctx{node, builder, loc, {}, version, nullptr, nullptr};
  for (const std::string &name : node.input()) {
    if (name.empty()) {
      ctx.inputs.push_back(Value());
      continue;
    }
    FailureOr<Value> value = lookup(name, loc);
    if (failed(value))
      return failure();
    ctx.inputs.push_back(*value);
  }
  ctx.constantInput = [&](unsigned i) -> const ConstantTensor * {
    if (i >= static_cast<unsigned>(node.input_size()))
      return nullptr;
    auto it = constants.find(node.input(i));
    return it == constants.end() ? nullptr : &it->second;
  };
  ctx.shapeInput = [&](unsigned i) -> const ShapeVector * {
    if (i >= static_cast<unsigned>(node.input_size()) || node.input(i).empty())
      return nullptr;
    const std::string &name = node.input(i);
    auto known = shapes.find(name);
    if (known != shapes.end())
      return &known->second;
    // A small integer constant describes itself.
    auto constant = constants.find(name);
    if (constant == constants.end() || constant->second.type.getRank() > 1)
      return nullptr;
    std::optional<SmallVector<int64_t>> ints = constant->second.asInts();
    if (!ints)
      return nullptr;
    ShapeVector v;
    for (int64_t x : *ints)
      v.elements.push_back(builder.getIndexAttr(x));
    return &(shapes[name] = v);
  };
  FailureOr<SmallVector<Value>> results = converter->convert(ctx);
  if (failed(results))
    return failure();
  if (node.output_size() == 1)
    if (std::optional<ShapeVector> shape = propagateShapeVector(ctx))
      shapes[node.output(0)] = *shape;
  for (auto [i, name] : llvm::enumerate(node.output())) {
    if (name.empty())
      continue;
    if (i >= results->size() || !(*results)[i])
      return emitError(loc) << "node '" << node.name() << "' (" << node.op_type() << "): output " << i
                            << " ('" << name << "') is not supported";
    values[name] = (*results)[i];
    // An integer constant a converter built (a static Shape, a Range) is
    // known at compile time, like an initializer: Reshape may read it.
    DenseIntElementsAttr folded;
    if (matchPattern((*results)[i], m_Constant(&folded)) && !folded.getElementType().isInteger(1)) {
      ConstantTensor constant;
      constant.type = cast<RankedTensorType>(folded.getType());
      constant.owned = std::make_shared<std::vector<char>>();
      int64_t width = folded.getElementType().getIntOrFloatBitWidth() / 8;
      for (const APInt &v : folded.getValues<APInt>()) {
        uint64_t raw = v.getZExtValue();
        const char *bytes = reinterpret_cast<const char *>(&raw);
        constant.owned->insert(constant.owned->end(), bytes, bytes + width);
      }
      constant.bytes = ArrayRef<char>(constant.owned->data(), constant.owned->size());
      constants[name] = constant;
    }
  }
  return success();
}

OwningOpRef<ModuleOp> GraphImporter::run(StringRef bytes) {
  if (bytes.size() > static_cast<size_t>(INT32_MAX) ||
      !model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    error() << "is not a valid ONNX model: the protobuf does not parse (truncated or not an ONNX file)";
    return nullptr;
  }
  if (!model.has_graph()) {
    error() << "is not a valid ONNX model: it has no graph";
    return nullptr;
  }
  // 14 is what the onnx package (1.23) writes by default; the versions since
  // 11 add element types, which are refused one by one where they occur.
  constexpr int64_t kNewestIrVersion = 14;
  if (model.ir_version() < 3 || model.ir_version() > kNewestIrVersion) {
    error() << "has IR version " << model.ir_version() << "; the importer reads IR versions 3 to "
            << kNewestIrVersion;
    return nullptr;
  }
  for (const onnx::OperatorSetIdProto &opset : model.opset_import())
    opsets[domainOf(opset.domain())] = opset.version();
  // The default domain's opset decides how nodes read their attributes and
  // inputs: without one, or with one no ONNX release has, nothing is sound.
  auto defaultOpset = opsets.find("");
  if (defaultOpset == opsets.end()) {
    error() << "imports no opset of the default ONNX domain (opset_import needs one)";
    return nullptr;
  }
  if (defaultOpset->second < 1 || defaultOpset->second > kMaxDefaultOpset) {
    error() << "imports default-domain opset " << defaultOpset->second << "; the importer reads opsets 1 to "
            << kMaxDefaultOpset;
    return nullptr;
  }
  const onnx::GraphProto &graph = model.graph();
  // Every value has one producer: a second node writing a name would make
  // its readers ambiguous.
  llvm::StringMap<std::string> producers;
  for (const onnx::TensorProto &init : graph.initializer())
    producers.try_emplace(init.name(), "initializer '" + init.name() + "'");
  for (auto [i, node] : llvm::enumerate(graph.node())) {
    std::string name = nodeName(node, i);
    for (const std::string &output : node.output()) {
      if (output.empty())
        continue;
      auto [it, inserted] = producers.try_emplace(output, "node '" + name + "'");
      if (!inserted) {
        error() << "value '" << output << "' is produced twice: by " << it->second << " and by node '" << name
                << "'";
        return nullptr;
      }
    }
  }

  for (const onnx::TensorProto &init : graph.initializer()) {
    FailureOr<ConstantTensor> constant = decode(init, "initializer '" + init.name() + "'");
    if (failed(constant))
      return nullptr;
    // A NaN weight poisons every output it reaches: refuse it here, named,
    // rather than return NaNs later.
    if (std::optional<int64_t> nan = firstNaN(*constant)) {
      error() << "initializer '" << init.name() << "' " << constant->type << " holds NaN (first at flat index "
              << *nan << ")";
      return nullptr;
    }
    constants[init.name()] = *constant;
  }

  auto module = ModuleOp::create(fileLoc);
  builder.setInsertionPointToEnd(module.getBody());
  // Inputs that are initializers (IR < 4 lists them) are constants.
  SmallVector<Type> argTypes;
  SmallVector<std::string> argNames;
  for (const onnx::ValueInfoProto &input : graph.input()) {
    if (constants.count(input.name()))
      continue;
    FailureOr<RankedTensorType> type = typeOf(input);
    if (failed(type))
      return nullptr;
    argTypes.push_back(*type);
    argNames.push_back(input.name());
  }
  auto func = func::FuncOp::create(builder, fileLoc, options.functionName,
                                   builder.getFunctionType(argTypes, {}));
  function = func;
  entry = func.addEntryBlock();
  for (auto [i, name] : llvm::enumerate(argNames)) {
    values[name] = entry->getArgument(i);
    func.setArgAttr(i, "onnx.name", builder.getStringAttr(name));
  }
  builder.setInsertionPointToEnd(entry);
  // Constant nodes first (they have no inputs): the block matcher reads them.
  for (auto [i, node] : llvm::enumerate(graph.node()))
    if (domainOf(node.domain()).empty() && node.op_type() == "Constant" && failed(importConstant(node, nodeLoc(node, i))))
      return nullptr;
  // One spelling per meaning before the block matchers read the graph.
  auto constantInts = [&](StringRef name) -> std::optional<SmallVector<int64_t>> {
    auto it = constants.find(name);
    return it == constants.end() ? std::nullopt : it->second.asInts();
  };
  auto uniformValue = [&](StringRef name) -> std::optional<double> {
    auto it = constants.find(name);
    if (it == constants.end() || it->second.type.getNumElements() < 1)
      return std::nullopt;
    const ConstantTensor &c = it->second;
    size_t count = static_cast<size_t>(c.type.getNumElements()), width = c.bytes.size() / count;
    if (width == 0 || width * count != c.bytes.size())
      return std::nullopt;
    for (size_t at = width; at < c.bytes.size(); at += width)
      if (std::memcmp(c.bytes.data(), c.bytes.data() + at, width) != 0)
        return std::nullopt;
    ConstantTensor first{RankedTensorType::get({1}, c.type.getElementType()), c.bytes.take_front(width), nullptr};
    if (std::optional<std::vector<float>> f = first.asFloats())
      return double((*f)[0]);
    if (std::optional<SmallVector<int64_t>> i = first.asInts())
      return double((*i)[0]);
    return std::nullopt;
  };
  // Yes/no attributes hold 0 or 1: any other value has no meaning the
  // runtimes agree on (onnxruntime reads TopK's largest = -1 as smallest).
  for (auto [i, node] : llvm::enumerate(graph.node())) {
    if (!domainOf(node.domain()).empty())
      continue;
    for (const onnx::AttributeProto &a : node.attribute()) {
      bool flag = llvm::is_contained({"keepdims", "largest", "sorted", "noop_with_empty_axes", "transA", "transB",
                                      "allowzero", "select_last_index", "exclusive", "reverse"},
                                     a.name());
      if (flag && a.type() == onnx::AttributeProto::INT && a.i() != 0 && a.i() != 1) {
        emitError(nodeLoc(node, i)) << "node '" << node.name() << "' (" << node.op_type() << "): attribute '"
                                    << a.name() << "' must be 0 or 1, got " << a.i();
        return nullptr;
      }
    }
  }
  llvm::StringMap<ValueFacts> facts;
  int modelInitializers = graph.initializer_size();
  canonicalizeGraph(*model.mutable_graph(), CanonicalizationContext{opsets.lookup(""), constantInts, uniformValue},
                    facts);
  // The canonicalisation's own constants (TopK's K, Squeeze's axes), added
  // after the model's.
  for (int i = modelInitializers; i < graph.initializer_size(); ++i) {
    const onnx::TensorProto &init = graph.initializer(i);
    FailureOr<ConstantTensor> constant = decode(init, "initializer '" + init.name() + "'");
    if (failed(constant))
      return nullptr;
    constants[init.name()] = *constant;
  }
  // Constant nodes the canonicalisation brought in (a static If's branch).
  for (auto [i, node] : llvm::enumerate(graph.node()))
    if (domainOf(node.domain()).empty() && node.op_type() == "Constant" && node.output_size() == 1 &&
        !constants.count(node.output(0)) && failed(importConstant(node, nodeLoc(node, i))))
      return nullptr;
  // MoE blocks written out in plain ops become one moe.layer each.
  ConstantLookup lookupConstant{
      // Constants, and integers computed from static sizes.
      [&](StringRef name) -> std::optional<SmallVector<int64_t>> {
        if (auto it = constants.find(name); it != constants.end())
          return it->second.asInts();
        auto known = facts.find(name);
        return known == facts.end() ? std::nullopt : known->second.knownValues();
      },
      [&](StringRef name) { return constants.count(name) > 0; },
      [&](StringRef name) -> std::optional<SmallVector<int64_t>> {
        auto it = constants.find(name);
        if (it == constants.end())
          return std::nullopt;
        return SmallVector<int64_t>(it->second.type.getShape());
      },
      [&](StringRef name) -> std::optional<std::vector<float>> {
        auto it = constants.find(name);
        return it == constants.end() ? std::nullopt : it->second.asFloats();
      },
      [&](StringRef name) -> int64_t {
        auto it = facts.find(name);
        return it == facts.end() ? -1 : it->second.rank;
      }};
  std::vector<std::pair<int, std::string>> nearMisses;
  std::vector<MoeBlock> blocks = findMoeBlocks(graph, lookupConstant, nearMisses);
  for (auto [index, why] : nearMisses)
    emitRemark(nodeLoc(graph.node(index), index))
        << "MoE-like routing at " << graph.node(index).op_type() << " '" << graph.node(index).name() << "' is left as plain ops: " << why;
  if (options.wrongRaisingForTesting)
    for (MoeBlock &block : blocks)
      block.normalize = !block.normalize;
  llvm::DenseMap<int, const MoeBlock *> blockEndingAt, blockOf;
  for (const MoeBlock &block : blocks) {
    blockEndingAt[block.last] = &block;
    for (int node : block.nodes)
      blockOf[node] = &block;
  }
  // With keepRaisedOriginals a block's own nodes are imported as well; a
  // block whose nodes do not import as plain ops keeps only its layer.
  llvm::DenseSet<const MoeBlock *> notPlain;
  auto importPlain = [&](const MoeBlock &block, int index) {
    if (notPlain.contains(&block))
      return;
    std::string why;
    LogicalResult imported = success();
    {
      ScopedDiagnosticHandler capture(context, [&](Diagnostic &diag) {
        if (diag.getSeverity() == DiagnosticSeverity::Error && why.empty())
          why = diag.str();
        return success();
      });
      imported = importNode(graph.node(index), index);
    }
    if (failed(imported)) {
      notPlain.insert(&block);
      emitRemark(nodeLoc(graph.node(block.anchor), block.anchor))
          << "the raising check cannot compare this MoE block with its own ops: " << why;
    }
  };
  for (auto [i, node] : llvm::enumerate(graph.node())) {
    int index = static_cast<int>(i);
    if (auto it = blockEndingAt.find(index); it != blockEndingAt.end()) {
      const MoeBlock &block = *it->second;
      Location loc = nodeLoc(graph.node(block.anchor), block.anchor);
      Value plain;
      if (options.keepRaisedOriginals) {
        importPlain(block, index);
        if (!notPlain.contains(&block))
          plain = values.lookup(block.output);
      }
      if (failed(importMoeBlock(block, loc)))
        return nullptr;
      if (plain)
        values[block.output] = checkedRaise(values[block.output], plain, loc);
      continue;
    }
    if (domainOf(node.domain()).empty() && node.op_type() == "Constant")
      continue;
    if (auto it = blockOf.find(index); it != blockOf.end()) {
      if (options.keepRaisedOriginals)
        importPlain(*it->second, index);
      continue;
    }
    if (failed(importNode(node, i)))
      return nullptr;
  }

  SmallVector<Value> results;
  for (const onnx::ValueInfoProto &output : graph.output()) {
    FailureOr<Value> value = lookup(output.name(), fileLoc);
    if (failed(value))
      return nullptr;
    results.push_back(*value);
  }
  builder.setInsertionPointToEnd(entry);
  func::ReturnOp::create(builder, fileLoc, results);
  // Weights made arguments were appended while importing.
  func.setType(builder.getFunctionType(func.getArgumentTypes(), ValueRange(results).getTypes()));
  for (auto [i, output] : llvm::enumerate(graph.output()))
    func.setResultAttr(i, "onnx.name", builder.getStringAttr(output.name()));
  if (failed(verify(module)))
    return nullptr;
  return module;
}

OwningOpRef<ModuleOp> mlir::moe::importOnnxModel(StringRef bytes, StringRef fileName, MLIRContext *context,
                                                 const OnnxImportOptions &options) {
  // Every dialect a converter may build (scf: the scatter loops).
  context->loadDialect<func::FuncDialect, arith::ArithDialect, linalg::LinalgDialect, math::MathDialect,
                       scf::SCFDialect, tensor::TensorDialect, moe::MoeDialect>();
  return GraphImporter(context, fileName, options).run(bytes);
}

void mlir::moe::registerOnnxImportTranslation() {
  static llvm::cl::opt<std::string> functionName(
      "onnx-function-name", llvm::cl::desc("Name of the function built for an ONNX graph"),
      llvm::cl::init("main_graph"));
  static llvm::cl::opt<int64_t> weightsAsInputs(
      "onnx-weights-as-inputs",
      llvm::cl::desc("Float and 8-bit integer (quantised) initializers of at least this many bytes become "
                     "function arguments (after the graph inputs) instead of constants (default: never)"),
      llvm::cl::init(-1));
  static llvm::cl::opt<std::string> weightsDir(
      "onnx-weights-dir", llvm::cl::desc("Write the initializers made arguments here as <name>.npy"));
  static llvm::cl::opt<bool> keepRaisedOriginals(
      "onnx-keep-raised-originals",
      llvm::cl::desc("Import each recognised MoE block's own nodes too, in a moe.raising_check with its "
                     "moe.layer (what --verify-raising checks)"),
      llvm::cl::init(false));
  static llvm::cl::opt<bool> wrongRaising("onnx-wrong-raising-for-testing",
                                          llvm::cl::desc("Tests only: flip every recognised layer's renormalisation"),
                                          llvm::cl::init(false), llvm::cl::Hidden);
  TranslateToMLIRRegistration registration(
      "import-onnx", "Import an ONNX model (.onnx; external data next to it) into moe/upstream MLIR",
      [](llvm::SourceMgr &sourceMgr, MLIRContext *context) -> OwningOpRef<Operation *> {
        const llvm::MemoryBuffer *buffer = sourceMgr.getMemoryBuffer(sourceMgr.getMainFileID());
        OnnxImportOptions options;
        options.functionName = functionName;
        options.weightsAsInputsMinBytes = weightsAsInputs;
        options.weightsDir = weightsDir;
        options.keepRaisedOriginals = keepRaisedOriginals;
        options.wrongRaisingForTesting = wrongRaising;
        StringRef name = buffer->getBufferIdentifier();
        options.externalDataDir = llvm::sys::path::parent_path(name).str();
        return importOnnxModel(buffer->getBuffer(), name, context, options);
      },
      [](DialectRegistry &registry) {
        registry.insert<func::FuncDialect, arith::ArithDialect, linalg::LinalgDialect, math::MathDialect,
                        scf::SCFDialect, tensor::TensorDialect, moe::MoeDialect>();
      });
}
