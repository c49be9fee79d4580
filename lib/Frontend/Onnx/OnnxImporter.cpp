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

#include "ExpertMixture.h"
#include "MoeBlocks.h"

#include <cstdio>
#include "OnnxImporter.h"
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

#include <cmath>

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

InFlightDiagnostic NodeContext::error() const {
  return emitError(loc) << "node '" << node.name() << "' (" << node.op_type() << ", opset " << opset
                        << "): ";
}

//===----------------------------------------------------------------------===//
// Constants
//===----------------------------------------------------------------------===//

Type mlir::moe::onnx_import::elementTypeOf(MLIRContext *context, int32_t dataType) {
  Builder b(context);
  switch (dataType) {
  case onnx::TensorProto::FLOAT: return b.getF32Type();
  case onnx::TensorProto::FLOAT16: return b.getF16Type();
  case onnx::TensorProto::BFLOAT16: return b.getBF16Type();
  case onnx::TensorProto::DOUBLE: return b.getF64Type();
  case onnx::TensorProto::INT8:
  case onnx::TensorProto::UINT8: return b.getIntegerType(8);
  case onnx::TensorProto::INT16:
  case onnx::TensorProto::UINT16: return b.getIntegerType(16);
  case onnx::TensorProto::INT32:
  case onnx::TensorProto::UINT32: return b.getI32Type();
  case onnx::TensorProto::INT64:
  case onnx::TensorProto::UINT64: return b.getI64Type();
  case onnx::TensorProto::BOOL: return b.getI1Type();
  default: return Type();
  }
}

static int64_t byteWidth(Type element) {
  return element.isInteger(1) ? 1 : static_cast<int64_t>(element.getIntOrFloatBitWidth() / 8);
}

std::optional<SmallVector<int64_t>> ConstantTensor::asInts() const {
  Type element = type.getElementType();
  if (!isa<IntegerType>(element))
    return std::nullopt;
  int64_t width = byteWidth(element);
  SmallVector<int64_t> values;
  for (size_t i = 0; i + width <= bytes.size(); i += width) {
    int64_t v = 0;
    switch (width) {
    case 1: v = static_cast<int8_t>(bytes[i]); break;
    case 2: { int16_t x; memcpy(&x, bytes.data() + i, 2); v = x; break; }
    case 4: { int32_t x; memcpy(&x, bytes.data() + i, 4); v = x; break; }
    default: memcpy(&v, bytes.data() + i, 8); break;
    }
    values.push_back(v);
  }
  return values;
}

std::optional<std::vector<float>> ConstantTensor::asFloats() const {
  Type element = type.getElementType();
  std::vector<float> values;
  int64_t width = isa<FloatType>(element) ? byteWidth(element) : 0;
  for (size_t i = 0; width && i + width <= bytes.size(); i += width) {
    if (element.isF32()) {
      float x;
      memcpy(&x, bytes.data() + i, 4);
      values.push_back(x);
    } else if (element.isF64()) {
      double x;
      memcpy(&x, bytes.data() + i, 8);
      values.push_back(static_cast<float>(x));
    } else {
      uint16_t bits;
      memcpy(&bits, bytes.data() + i, 2);
      APFloat f(element.isBF16() ? APFloat::BFloat() : APFloat::IEEEhalf(), APInt(16, bits));
      values.push_back(f.convertToFloat());
    }
  }
  if (!width)
    return std::nullopt;
  return values;
}

namespace {

/// The flat index of the first NaN of a float constant.
std::optional<int64_t> firstNaN(const ConstantTensor &constant) {
  Type element = constant.type.getElementType();
  const char *data = constant.bytes.data();
  int64_t count = constant.type.getNumElements();
  for (int64_t i = 0; i < count; ++i) {
    bool nan = false;
    if (element.isF32()) {
      float v;
      memcpy(&v, data + 4 * i, 4);
      nan = std::isnan(v);
    } else if (element.isF64()) {
      double v;
      memcpy(&v, data + 8 * i, 8);
      nan = std::isnan(v);
    } else if (element.isF16() || element.isBF16()) {
      uint16_t bits;
      memcpy(&bits, data + 2 * i, 2);
      uint16_t exponent = element.isF16() ? 0x7C00 : 0x7F80;
      nan = (bits & exponent) == exponent && (bits & ~(exponent | 0x8000)) != 0;
    } else {
      return std::nullopt;
    }
    if (nan)
      return i;
  }
  return std::nullopt;
}

/// Imports one model.
class GraphImporter {
public:
  GraphImporter(MLIRContext *context, StringRef fileName, const OnnxImportOptions &options)
      : context(context), fileName(fileName.str()), options(options), builder(context),
        fileLoc(FileLineColLoc::get(context, fileName, 0, 0)) {
    addStandardConverters(converters);
    addIndexingConverters(converters);
    addMoeConverters(converters);
  }

  OwningOpRef<ModuleOp> run(StringRef bytes);

private:
  InFlightDiagnostic error() { return emitError(fileLoc); }
  Location nodeLoc(const onnx::NodeProto &node, size_t index) {
    std::string name = node.name().empty() ? node.op_type() + "#" + std::to_string(index) : node.name();
    return NameLoc::get(StringAttr::get(context, name), fileLoc);
  }

  FailureOr<RankedTensorType> typeOf(const onnx::ValueInfoProto &info);
  FailureOr<ConstantTensor> decode(const onnx::TensorProto &tensor, StringRef what);
  FailureOr<ArrayRef<char>> externalBytes(const onnx::TensorProto &tensor, StringRef what, int64_t size);
  Value materialize(StringRef name, const ConstantTensor &constant);
  Value weightArgument(StringRef name, const ConstantTensor &constant);
  FailureOr<Value> lookup(StringRef name, Location loc);
  LogicalResult importNode(const onnx::NodeProto &node, size_t index);
  LogicalResult importConstant(const onnx::NodeProto &node, Location loc);
  LogicalResult importMoeBlock(const MoeBlock &block, Location loc);
  LogicalResult importGptOssBlock(const MoeBlock &block, Location loc);
  LogicalResult stackExpertWeights(const MoeBlock &block, Location loc, std::string &gateUp, std::string &down);
  std::string supportedOps() const;

  MLIRContext *context;
  std::string fileName;
  const OnnxImportOptions &options;
  OpBuilder builder;
  Location fileLoc;
  onnx::ModelProto model;
  std::vector<OpConverter> converters;
  llvm::StringMap<int64_t> opsets;
  llvm::StringMap<Value> values;
  llvm::StringMap<ConstantTensor> constants;
  llvm::StringMap<ShapeVector> shapes;
  llvm::StringMap<std::unique_ptr<llvm::MemoryBuffer>> externalFiles;
  Block *entry = nullptr;
  func::FuncOp function;
  Operation *lastConstant = nullptr;
};

std::string domainOf(StringRef domain) { return domain == "ai.onnx" ? "" : domain.str(); }

FailureOr<RankedTensorType> GraphImporter::typeOf(const onnx::ValueInfoProto &info) {
  if (!info.type().has_tensor_type())
    return error() << "graph value '" << info.name() << "' is not a tensor", failure();
  const onnx::TypeProto::Tensor &tensor = info.type().tensor_type();
  Type element = elementTypeOf(context, tensor.elem_type());
  if (!element)
    return error() << "graph value '" << info.name() << "' has an unsupported element type (ONNX data type "
                   << tensor.elem_type() << ")",
           failure();
  if (!tensor.has_shape())
    return error() << "graph value '" << info.name() << "' has no shape; give its rank and sizes",
           failure();
  SmallVector<int64_t> shape;
  for (const onnx::TensorShapeProto::Dimension &dim : tensor.shape().dim())
    shape.push_back(dim.has_dim_value() && dim.dim_value() >= 0 ? dim.dim_value() : ShapedType::kDynamic);
  return RankedTensorType::get(shape, element);
}

FailureOr<ArrayRef<char>> GraphImporter::externalBytes(const onnx::TensorProto &tensor, StringRef what,
                                                       int64_t size) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (const onnx::StringStringEntryProto &entry : tensor.external_data()) {
    if (entry.key() == "location")
      location = entry.value();
    else if (entry.key() == "offset")
      offset = std::stoll(entry.value());
    else if (entry.key() == "length")
      length = std::stoll(entry.value());
  }
  if (location.empty() || llvm::sys::path::is_absolute(location) || StringRef(location).contains(".."))
    return error() << what << ": external data location '" << location
                   << "' must be a relative path inside the model's directory",
           failure();
  SmallString<256> path(options.externalDataDir);
  llvm::sys::path::append(path, location);
  auto &file = externalFiles[path];
  if (!file) {
    auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false, /*RequiresNullTerminator=*/false);
    if (!buffer)
      return error() << what << ": cannot open external data file '" << path
                     << "': " << buffer.getError().message(),
             failure();
    file = std::move(*buffer);
  }
  if (length < 0)
    length = size;
  if (length != size || offset < 0 || offset + length > static_cast<int64_t>(file->getBufferSize()))
    return error() << what << ": external data '" << path << "' (offset " << offset << ", length " << length
                   << ") does not hold the " << size << " bytes of the tensor (file size "
                   << file->getBufferSize() << ")",
           failure();
  return ArrayRef<char>(file->getBufferStart() + offset, length);
}

FailureOr<ConstantTensor> GraphImporter::decode(const onnx::TensorProto &tensor, StringRef what) {
  Type element = elementTypeOf(context, tensor.data_type());
  if (!element)
    return error() << what << ": unsupported element type (ONNX data type " << tensor.data_type() << ")",
           failure();
  SmallVector<int64_t> shape(tensor.dims().begin(), tensor.dims().end());
  if (llvm::any_of(shape, [](int64_t d) { return d < 0; }))
    return error() << what << ": negative dimension", failure();
  ConstantTensor constant;
  constant.type = RankedTensorType::get(shape, element);
  int64_t count = constant.type.getNumElements();
  int64_t size = count * byteWidth(element);
  if (tensor.data_location() == onnx::TensorProto::EXTERNAL) {
    FailureOr<ArrayRef<char>> bytes = externalBytes(tensor, what, size);
    if (failed(bytes))
      return failure();
    constant.bytes = *bytes;
    return constant;
  }
  if (tensor.has_raw_data()) {
    if (static_cast<int64_t>(tensor.raw_data().size()) != size)
      return error() << what << ": raw data has " << tensor.raw_data().size() << " bytes, the type "
                     << constant.type << " needs " << size,
             failure();
    constant.bytes = ArrayRef<char>(tensor.raw_data().data(), size);
    return constant;
  }
  // Typed fields: decoded into owned bytes.
  auto owned = std::make_shared<std::vector<char>>(size);
  auto put = [&](int64_t i, const void *src) { memcpy(owned->data() + i * byteWidth(element), src, byteWidth(element)); };
  int64_t available = 0;
  // Each value's low bytes (little-endian) are the element's.
  auto copyAll = [&](const auto &field) {
    available = field.size();
    for (int64_t i = 0; i < std::min(available, count); ++i) {
      auto v = field.Get(i);
      put(i, &v);
    }
  };
  switch (tensor.data_type()) {
  case onnx::TensorProto::FLOAT: copyAll(tensor.float_data()); break;
  case onnx::TensorProto::DOUBLE: copyAll(tensor.double_data()); break;
  case onnx::TensorProto::INT64: copyAll(tensor.int64_data()); break;
  case onnx::TensorProto::UINT32:
  case onnx::TensorProto::UINT64: copyAll(tensor.uint64_data()); break;
  default: copyAll(tensor.int32_data()); break; // every narrower type, f16/bf16 as bit patterns
  }
  if (available != count)
    return error() << what << ": holds " << available << " values, its shape needs " << count, failure();
  constant.owned = owned;
  constant.bytes = ArrayRef<char>(owned->data(), owned->size());
  return constant;
}

/// Small or integer constants are dense attributes (readable, foldable);
/// weights are resources, copied once into the blob.
Value GraphImporter::materialize(StringRef name, const ConstantTensor &constant) {
  if (options.weightsAsInputsMinBytes >= 0 && isa<FloatType>(constant.type.getElementType()) &&
      static_cast<int64_t>(constant.bytes.size()) >= options.weightsAsInputsMinBytes)
    return weightArgument(name, constant);
  OpBuilder::InsertionGuard guard(builder);
  if (lastConstant)
    builder.setInsertionPointAfter(lastConstant);
  else
    builder.setInsertionPointToStart(entry);
  Type element = constant.type.getElementType();
  ElementsAttr attr;
  if (element.isInteger(1)) {
    SmallVector<bool> bits(constant.bytes.begin(), constant.bytes.end());
    attr = DenseElementsAttr::get(constant.type, ArrayRef<bool>(bits));
  } else if (constant.type.getNumElements() <= 64 || isa<IntegerType>(element)) {
    attr = DenseElementsAttr::getFromRawBuffer(constant.type, constant.bytes);
  } else {
    std::string blobName = name.str();
    for (char &c : blobName)
      if (!llvm::isAlnum(c) && c != '_' && c != '.')
        c = '_';
    attr = DenseResourceElementsAttr::get(
        constant.type, blobName,
        HeapAsmResourceBlob::allocateAndCopyWithAlign(constant.bytes, alignof(uint64_t)));
  }
  auto op = arith::ConstantOp::create(builder, NameLoc::get(StringAttr::get(context, name), fileLoc),
                                      cast<TypedAttr>(attr));
  lastConstant = op;
  return op;
}

/// A weight as a function argument (and, with a weights directory, its
/// data as <name>.npy for the caller to pass).
Value GraphImporter::weightArgument(StringRef name, const ConstantTensor &constant) {
  unsigned index = function.getNumArguments();
  Location loc = NameLoc::get(StringAttr::get(context, name), fileLoc);
  (void)function.insertArgument(index, constant.type,
                                builder.getDictionaryAttr(builder.getNamedAttr("onnx.name", builder.getStringAttr(name))),
                                loc);
  if (!options.weightsDir.empty()) {
    Type element = constant.type.getElementType();
    npy::Array array;
    array.type = element.isF64()   ? npy::DType::f64
                 : element.isF16() ? npy::DType::f16
                 : element.isBF16() ? npy::DType::bf16
                                    : npy::DType::f32;
    array.shape.assign(constant.type.getShape().begin(), constant.type.getShape().end());
    array.data.assign(constant.bytes.begin(), constant.bytes.end());
    std::string file = name.str();
    for (char &c : file)
      if (!llvm::isAlnum(c) && c != '_' && c != '.' && c != '-')
        c = '_';
    SmallString<256> path(options.weightsDir);
    llvm::sys::path::append(path, file + ".npy");
    std::string error;
    if (llvm::sys::fs::create_directories(options.weightsDir) || !npy::write(path.str().str(), array, error))
      emitWarning(loc) << "cannot write weight '" << name << "' to " << path << ": " << error;
  }
  return function.getArgument(index);
}

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

/// One moe.layer for a block of plain ops (MoeBlocks.cpp): softmax over the
/// router logits, top-k, [renormalised], SwiGLU experts.
LogicalResult GraphImporter::importMoeBlock(const MoeBlock &block, Location loc) {
  if (block.gptOss)
    return importGptOssBlock(block, loc);
  std::string gateUpName = block.gateUp, downName = block.down;
  if (!block.expertDown.empty() && failed(stackExpertWeights(block, loc, gateUpName, downName)))
    return failure();
  FailureOr<Value> x = lookup(block.x, loc), router = lookup(block.routerWeight.name, loc),
                   up = lookup(gateUpName, loc), down = lookup(downName, loc);
  if (failed(x) || failed(router) || failed(up) || failed(down))
    return failure();
  auto xType = cast<RankedTensorType>(x->getType());
  auto routerType = cast<RankedTensorType>(router->getType());
  auto upType = cast<RankedTensorType>(up->getType()), downType = cast<RankedTensorType>(down->getType());
  Type element = xType.getElementType();
  if (xType.getRank() != 2 || routerType.getRank() != 2 || upType.getRank() != 3 || downType.getRank() != 3)
    return emitError(loc) << "MoE block: expected x [tokens, hidden], a 2-D router and 3-D expert weights";
  int64_t hidden = xType.getDimSize(1), experts = upType.getDimSize(0), ffn = upType.getDimSize(1) / 2;
  ArrayRef<int64_t> routerShape = routerType.getShape();
  if (routerShape != (block.routerWeight.rows ? ArrayRef<int64_t>{experts, hidden} : ArrayRef<int64_t>{hidden, experts}) ||
      upType.getDimSize(2) != hidden ||
      upType.getDimSize(1) % 2 != 0 || downType.getShape() != ArrayRef<int64_t>{experts, hidden, ffn} ||
      routerType.getElementType() != element || upType.getElementType() != element ||
      downType.getElementType() != element || block.k < 1 || block.k > experts)
    return emitError(loc) << "MoE block: inconsistent shapes: x " << xType << ", router " << routerType
                          << ", gate/up " << upType << ", down " << downType << ", k = " << block.k;
  // A linear map's weight as rows [out, in]: as given, or x @ W's transposed.
  auto rows = [&](const LinearWeight &name, Value w) {
    return name.rows ? w : tensor_builders::transpose(builder, loc, w, {1, 0});
  };
  Value routerRows = rows(block.routerWeight, *router); // [E, H]
  std::string routing = "#moe.routing<scoring = " + std::string(block.deepSeek ? "sigmoid" : "softmax") +
                        ", k = " + std::to_string(block.k) + (block.normalize ? ", normalize = all" : "");
  Value selectionBias;
  if (block.deepSeek) {
    char scale[32];
    std::snprintf(scale, sizeof(scale), "%.9g", block.deepSeek->scale);
    routing += ", scale = " + std::string(scale) + ", num_groups = " + std::to_string(block.deepSeek->numGroups) +
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
                     downProj = lookup(block.sharedDownProj.name, loc), gate = lookup(block.sharedGate.name, loc);
    if (failed(gateProj) || failed(upProj) || failed(downProj) || failed(gate))
      return failure();
    Value gateRows = rows(block.sharedGateProj, *gateProj), upRows = rows(block.sharedUpProj, *upProj);
    sharedDown = rows(block.sharedDownProj, *downProj);
    sharedGate = rows(block.sharedGate, *gate);
    auto projType = cast<RankedTensorType>(gateRows.getType());
    int64_t sharedSize = projType.getDimSize(0);
    if (projType.getShape() != ArrayRef<int64_t>{sharedSize, hidden} || upRows.getType() != projType ||
        cast<RankedTensorType>(sharedDown.getType()).getShape() != ArrayRef<int64_t>{hidden, sharedSize} ||
        cast<RankedTensorType>(sharedGate.getType()).getShape() != ArrayRef<int64_t>{1, hidden})
      return emitError(loc) << "MoE block: inconsistent shared expert weights";
    sharedUp = tensor::ConcatOp::create(builder, loc, /*dim=*/0, ValueRange{gateRows, upRows});
  }
  auto layer = LayerOp::create(builder, loc, xType, RankedTensorType::get({xType.getDimSize(0), experts}, builder.getF32Type()),
                               *x, routerRows, Value(), selectionBias, Value(), Value(), *up, *down, Value(), Value(),
                               sharedUp, sharedDown, sharedGate, expertsAttr,
                               ActivationAttr::get(context, block.activation == GateActivation::gelu
                                                                ? Activation::geglu
                                                                : Activation::swiglu),
                               routingAttr, CapacityAttr());
  values[block.output] = layer.getY();
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

/// The per-expert x @ W weights of a loop-form block stacked as moe.layer
/// takes them, once at import: gate/up rows [E, 2I, H] (each expert's gate
/// then up, transposed) and down rows [E, H, I]. They become constants named
/// after the block's output; `gateUp` and `down` get their names.
LogicalResult GraphImporter::stackExpertWeights(const MoeBlock &block, Location loc, std::string &gateUp,
                                                std::string &down) {
  int64_t experts = static_cast<int64_t>(block.expertDown.size());
  auto find = [&](const std::string &name) -> const ConstantTensor * {
    auto it = constants.find(name);
    return it == constants.end() ? nullptr : &it->second;
  };
  const ConstantTensor *first = find(block.expertGate[0]);
  if (!first || first->type.getRank() != 2)
    return emitError(loc) << "MoE block: expert 0's gate weight '" << block.expertGate[0]
                          << "' is not a 2-D constant";
  int64_t hidden = first->type.getDimSize(0), ffn = first->type.getDimSize(1);
  Type element = first->type.getElementType();
  int64_t width = byteWidth(element);
  auto gateUpData = std::make_shared<std::vector<char>>(experts * 2 * ffn * hidden * width);
  auto downData = std::make_shared<std::vector<char>>(experts * hidden * ffn * width);
  // dst[e][rowBase + r][c] = src[c][r]: a [rows, cols] matrix transposed.
  auto transposeInto = [&](const ConstantTensor &src, std::vector<char> &dst, int64_t offset, int64_t rows,
                           int64_t cols) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        memcpy(dst.data() + (offset + r * cols + c) * width, src.bytes.data() + (c * rows + r) * width, width);
  };
  for (int64_t e = 0; e < experts; ++e) {
    const ConstantTensor *gate = find(block.expertGate[e]), *up = find(block.expertUp[e]),
                         *downW = find(block.expertDown[e]);
    auto projType = RankedTensorType::get({hidden, ffn}, element);
    if (!gate || !up || !downW || gate->type != projType || up->type != projType ||
        downW->type != RankedTensorType::get({ffn, hidden}, element))
      return emitError(loc) << "MoE block: expert " << e << "'s weights are not gate and up " << projType
                            << " and down " << RankedTensorType::get({ffn, hidden}, element) << " constants";
    transposeInto(*gate, *gateUpData, e * 2 * ffn * hidden, ffn, hidden);
    transposeInto(*up, *gateUpData, (e * 2 + 1) * ffn * hidden, ffn, hidden);
    transposeInto(*downW, *downData, e * hidden * ffn, hidden, ffn);
  }
  auto stacked = [&](const std::string &name, ArrayRef<int64_t> shape, std::shared_ptr<std::vector<char>> data) {
    ConstantTensor constant;
    constant.type = RankedTensorType::get(shape, element);
    constant.owned = std::move(data);
    constant.bytes = ArrayRef<char>(constant.owned->data(), constant.owned->size());
    constants[name] = constant;
    return name;
  };
  gateUp = stacked(block.output + ".experts_gate_up", {experts, 2 * ffn, hidden}, gateUpData);
  down = stacked(block.output + ".experts_down", {experts, hidden, ffn}, downData);
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
  if (model.ir_version() < 3 || model.ir_version() > 11) {
    error() << "has IR version " << model.ir_version() << "; the importer reads IR versions 3 to 11";
    return nullptr;
  }
  for (const onnx::OperatorSetIdProto &opset : model.opset_import())
    opsets[domainOf(opset.domain())] = opset.version();
  const onnx::GraphProto &graph = model.graph();

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
  // MoE blocks written out in plain ops become one moe.layer each.
  ConstantLookup lookupConstant{
      [&](StringRef name) -> std::optional<SmallVector<int64_t>> {
        auto it = constants.find(name);
        return it == constants.end() ? std::nullopt : it->second.asInts();
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
      }};
  std::vector<std::pair<int, std::string>> nearMisses;
  std::vector<MoeBlock> blocks = findMoeBlocks(graph, lookupConstant, nearMisses);
  for (auto [index, why] : nearMisses)
    emitRemark(nodeLoc(graph.node(index), index))
        << "MoE-like routing at TopK '" << graph.node(index).name() << "' is left as plain ops: " << why;
  llvm::DenseMap<int, const MoeBlock *> blockEndingAt;
  llvm::DenseSet<int> inBlock;
  for (const MoeBlock &block : blocks) {
    blockEndingAt[block.last] = &block;
    inBlock.insert(block.nodes.begin(), block.nodes.end());
  }
  for (auto [i, node] : llvm::enumerate(graph.node())) {
    int index = static_cast<int>(i);
    if (auto it = blockEndingAt.find(index); it != blockEndingAt.end()) {
      if (failed(importMoeBlock(*it->second, nodeLoc(graph.node(it->second->anchor), it->second->anchor))))
        return nullptr;
      continue;
    }
    if (inBlock.contains(index) || (domainOf(node.domain()).empty() && node.op_type() == "Constant"))
      continue;
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

} // namespace

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
      llvm::cl::desc("Float initializers of at least this many bytes become function arguments "
                     "(after the graph inputs) instead of constants (default: never)"),
      llvm::cl::init(-1));
  static llvm::cl::opt<std::string> weightsDir(
      "onnx-weights-dir", llvm::cl::desc("Write the initializers made arguments here as <name>.npy"));
  TranslateToMLIRRegistration registration(
      "import-onnx", "Import an ONNX model (.onnx; external data next to it) into moe/upstream MLIR",
      [](llvm::SourceMgr &sourceMgr, MLIRContext *context) -> OwningOpRef<Operation *> {
        const llvm::MemoryBuffer *buffer = sourceMgr.getMemoryBuffer(sourceMgr.getMainFileID());
        OnnxImportOptions options;
        options.functionName = functionName;
        options.weightsAsInputsMinBytes = weightsAsInputs;
        options.weightsDir = weightsDir;
        StringRef name = buffer->getBufferIdentifier();
        options.externalDataDir = llvm::sys::path::parent_path(name).str();
        return importOnnxModel(buffer->getBuffer(), name, context, options);
      },
      [](DialectRegistry &registry) {
        registry.insert<func::FuncDialect, arith::ArithDialect, linalg::LinalgDialect, math::MathDialect,
                        scf::SCFDialect, tensor::TensorDialect, moe::MoeDialect>();
      });
}
