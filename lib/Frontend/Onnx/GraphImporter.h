//===- GraphImporter.h - the state of one ONNX model's import ---*- C++ -*-===//
//
// One GraphImporter imports one model: OnnxImporter.cpp walks the graph and
// converts its nodes, ConstantTensors.cpp decodes initializers and constants
// (inline, raw or external data) and materialises them, BlockImport.cpp
// builds the MoE blocks MoeBlocks.cpp recognised.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_FRONTEND_ONNX_GRAPHIMPORTER_H
#define MOE_FRONTEND_ONNX_GRAPHIMPORTER_H

#include "MoeBlocks.h"
#include "OnnxImporter.h"
#include "moe/Frontend/OnnxImport.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/MemoryBuffer.h"

namespace mlir::moe::onnx_import {

/// The newest default-domain opset the importer reads (ONNX 1.19 defines
/// 24); a model claiming a later one is refused, not guessed at.
inline constexpr int64_t kMaxDefaultOpset = 25;

/// Bytes per element of `element` (integers and floats).
int64_t byteWidth(Type element);

/// The flat index of the first NaN of a float constant.
std::optional<int64_t> firstNaN(const ConstantTensor &constant);

/// Imports one model.
class GraphImporter {
public:
  GraphImporter(MLIRContext *context, StringRef fileName, const OnnxImportOptions &options)
      : context(context), fileName(fileName.str()), options(options), builder(context),
        fileLoc(FileLineColLoc::get(context, fileName, 0, 0)) {
    addElementwiseConverters(converters);
    addStandardConverters(converters);
    addIndexingConverters(converters);
    addScatterConverters(converters);
    addNonZeroConverter(converters);
    addConvolutionConverter(converters);
    addMoeConverters(converters);
  }

  OwningOpRef<ModuleOp> run(StringRef bytes);

private:
  InFlightDiagnostic error() { return emitError(fileLoc); }
  /// The node's name, or "OpType#index" for an unnamed one.
  static std::string nodeName(const onnx::NodeProto &node, size_t index) {
    return node.name().empty() ? node.op_type() + "#" + std::to_string(index) : node.name();
  }
  Location nodeLoc(const onnx::NodeProto &node, size_t index) {
    return NameLoc::get(StringAttr::get(context, nodeName(node, index)), fileLoc);
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
  LogicalResult viewLikeSharedExpertInput(const MoeBlock &block, Value y, Location loc);
  LogicalResult importGptOssBlock(const MoeBlock &block, Location loc);
  LogicalResult importSparseMixerBlock(const MoeBlock &block, Location loc);
  Value checkedRaise(Value raised, Value plain, Location loc);
  LogicalResult stackExpertWeights(const MoeBlock &block, Location loc, std::string &gateUp, std::string &down,
                                   std::string &upBias, std::string &downBias);
  LogicalResult materializeWeightViews(const MoeBlock &block, Location loc);
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

} // namespace mlir::moe::onnx_import

#endif // MOE_FRONTEND_ONNX_GRAPHIMPORTER_H
