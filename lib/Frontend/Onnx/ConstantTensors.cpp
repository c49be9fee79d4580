//===- ConstantTensors.cpp - ONNX initializers and constants as IR --------===//
//
// Every declared size is checked against the bytes present before anything
// is allocated; external data is read from the memory-mapped file next to
// the model. Weights are copied once into the MLIR resource blob.
//
//===----------------------------------------------------------------------===//

#include "GraphImporter.h"
#include "moe/Support/Npy.h"
#include "moe/Support/ParseNumber.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <cmath>
#include <cstring>

using namespace mlir;
using namespace mlir::moe;
using namespace mlir::moe::onnx_import;

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

int64_t mlir::moe::onnx_import::byteWidth(Type element) {
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

FailureOr<TypedAttr> mlir::moe::onnx_import::constantOfShapeFill(NodeContext &ctx) {
  OpBuilder &b = ctx.b;
  const onnx::AttributeProto *attr = ctx.attr("value");
  if (!attr)
    return TypedAttr(b.getF32FloatAttr(0.0f));
  const onnx::TensorProto &t = attr->t();
  Type element = elementTypeOf(b.getContext(), t.data_type());
  if (!element || element.isInteger(4) || element.isUnsignedInteger(4))
    return ctx.error() << "unsupported value type", failure();
  const std::string &raw = t.raw_data();
  int64_t width = byteWidth(element);
  if (!raw.empty() && static_cast<int64_t>(raw.size()) < width)
    return ctx.error() << "the value attribute holds " << raw.size() << " bytes; " << element << " needs " << width,
           failure();
  if (auto floatType = dyn_cast<FloatType>(element)) {
    if (raw.empty()) {
      double v = t.double_data_size() ? t.double_data(0) : t.float_data_size() ? t.float_data(0) : 0.0;
      if (!t.float_data_size() && t.int32_data_size() && width == 2) {
        // f16/bf16 values in int32_data hold their bits.
        APInt bits(16, static_cast<uint64_t>(t.int32_data(0)) & 0xffff);
        return TypedAttr(FloatAttr::get(element, APFloat(floatType.getFloatSemantics(), bits)));
      }
      return TypedAttr(b.getFloatAttr(element, v));
    }
    uint64_t bits = 0;
    memcpy(&bits, raw.data(), width);
    return TypedAttr(
        FloatAttr::get(element, APFloat(floatType.getFloatSemantics(), APInt(width * 8, bits))));
  }
  int64_t v = t.int64_data_size() ? t.int64_data(0) : t.int32_data_size() ? t.int32_data(0) : 0;
  if (!raw.empty()) {
    uint64_t bits = 0;
    memcpy(&bits, raw.data(), width);
    v = element.isUnsignedInteger() || element.isInteger(1) ? static_cast<int64_t>(bits)
                                                             : APInt(width * 8, bits).getSExtValue();
  }
  return TypedAttr(b.getIntegerAttr(element, v));
}

std::optional<int64_t> mlir::moe::onnx_import::firstNaN(const ConstantTensor &constant) {
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
  for (const onnx::TensorShapeProto::Dimension &dim : tensor.shape().dim()) {
    if (dim.has_dim_value() && dim.dim_value() < 0)
      return error() << "graph value '" << info.name() << "' has a negative dimension " << dim.dim_value()
                     << " (a dynamic one is a dim_param or no value)",
             failure();
    shape.push_back(dim.has_dim_value() ? dim.dim_value() : ShapedType::kDynamic);
  }
  return RankedTensorType::get(shape, element);
}

FailureOr<ArrayRef<char>> GraphImporter::externalBytes(const onnx::TensorProto &tensor, StringRef what,
                                                       int64_t size) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (const onnx::StringStringEntryProto &entry : tensor.external_data()) {
    if (entry.key() == "location") {
      location = entry.value();
      continue;
    }
    if (entry.key() != "offset" && entry.key() != "length")
      continue;
    std::optional<int64_t> number = support::parseInt64(entry.value());
    if (!number || *number < 0)
      return error() << what << ": external data " << entry.key() << " '" << entry.value()
                     << "' is not a non-negative integer",
             failure();
    (entry.key() == "offset" ? offset : length) = *number;
  }
  if (location.empty() || llvm::sys::path::is_absolute(location) || StringRef(location).contains(".."))
    return error() << what << ": external data location '" << location
                   << "' must be a relative path inside the model's directory",
           failure();
  SmallString<256> path(options.externalDataDir);
  llvm::sys::path::append(path, location);
  auto &file = externalFiles[path];
  if (!file) {
    // Only a regular file has a size to check against: a FIFO or a device
    // (a symlink to /dev/zero) would block or never end.
    llvm::sys::fs::file_status status;
    if (!llvm::sys::fs::status(path, status) && status.type() != llvm::sys::fs::file_type::regular_file)
      return error() << what << ": external data '" << path << "' is not a regular file", failure();
    // Read, not mapped: a mapped file that shrinks later would be a SIGBUS
    // on first touch; the bytes are copied into constants anyway.
    auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false, /*RequiresNullTerminator=*/false,
                                              /*IsVolatile=*/true);
    if (!buffer)
      return error() << what << ": cannot open external data file '" << path
                     << "': " << buffer.getError().message(),
             failure();
    file = std::move(*buffer);
  }
  if (length < 0)
    length = size;
  int64_t fileSize = static_cast<int64_t>(file->getBufferSize());
  if (length != size || offset > fileSize || length > fileSize - offset)
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
  // The declared dims are checked for overflow here and against the bytes
  // present below, before anything is allocated for them.
  std::optional<int64_t> bytes = support::byteSize(std::vector<int64_t>(shape.begin(), shape.end()), byteWidth(element));
  if (!bytes)
    return error() << what << ": dims [" << llvm::make_range(shape.begin(), shape.end())
                   << "] are too large", failure();
  ConstantTensor constant;
  constant.type = RankedTensorType::get(shape, element);
  int64_t count = constant.type.getNumElements();
  int64_t size = *bytes;
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
  // Typed fields: their value count is checked before the bytes are
  // allocated; each value's low bytes (little-endian) are the element's.
  auto withField = [&](auto fn) {
    switch (tensor.data_type()) {
    case onnx::TensorProto::FLOAT: return fn(tensor.float_data());
    case onnx::TensorProto::DOUBLE: return fn(tensor.double_data());
    case onnx::TensorProto::INT64: return fn(tensor.int64_data());
    case onnx::TensorProto::UINT32:
    case onnx::TensorProto::UINT64: return fn(tensor.uint64_data());
    default: return fn(tensor.int32_data()); // every narrower type, f16/bf16 as bit patterns
    }
  };
  int64_t available = withField([](const auto &field) { return static_cast<int64_t>(field.size()); });
  if (available != count)
    return error() << what << ": holds " << available << " values, its shape needs " << count, failure();
  auto owned = std::make_shared<std::vector<char>>(size);
  int64_t width = byteWidth(element);
  withField([&](const auto &field) {
    for (int64_t i = 0; i < count; ++i) {
      auto v = field.Get(i);
      memcpy(owned->data() + i * width, &v, width);
    }
    return int64_t(0);
  });
  constant.owned = owned;
  constant.bytes = ArrayRef<char>(owned->data(), owned->size());
  return constant;
}

/// Small or integer constants are dense attributes (readable, foldable);
/// weights are resources, copied once into the blob.
Value GraphImporter::materialize(StringRef name, const ConstantTensor &constant) {
  // Weights: floats, and the 8-bit packs of quantised ones (QMoE, QLinear*);
  // wider integers are indices and sizes, which stay constants.
  Type elementType = constant.type.getElementType();
  bool weightType = isa<FloatType>(elementType) || elementType.isInteger(8);
  if (options.weightsAsInputsMinBytes >= 0 && weightType &&
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
    array.type = element.isF64()          ? npy::DType::f64
                 : element.isF16()        ? npy::DType::f16
                 : element.isBF16()       ? npy::DType::bf16
                 : element.isInteger(8)   ? npy::DType::i8
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
