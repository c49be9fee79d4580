//===- OnnxImport.h - ONNX models to MLIR -----------------------*- C++ -*-===//
//
// Reads an ONNX model (protobuf, IR versions 7-10, weights inline or in
// external data files) and builds one func.func: graph inputs are its
// arguments, initializers become constants, MoE nodes become `moe` ops and
// the rest of the graph upstream tensor-level ops (linalg/tensor/arith/math).
// docs/onnx.md lists what is supported.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_FRONTEND_ONNXIMPORT_H
#define MOE_FRONTEND_ONNXIMPORT_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/ADT/StringRef.h"

namespace mlir::moe {

struct OnnxImportOptions {
  /// Directory that external-data locations are relative to (the model's).
  std::string externalDataDir;
  /// Name of the function built for the graph.
  std::string functionName = "main_graph";
  /// Float initializers of at least this many bytes become function
  /// arguments (after the graph inputs, named by `onnx.name`) instead of
  /// constants, so that a compiled artifact does not carry the weights;
  /// negative: never.
  int64_t weightsAsInputsMinBytes = -1;
  /// Where such initializers are written as <name>.npy (empty: not written).
  std::string weightsDir;
  /// Recognised MoE blocks also keep their own nodes, imported as plain
  /// ops: the block's output is a moe.raising_check of the layer and of
  /// them, for the raising check (--verify-raising) to choose.
  bool keepRaisedOriginals = false;
  /// Tests only: every recognised block's layer is built with its
  /// renormalisation flipped (a deliberately wrong matcher).
  bool wrongRaisingForTesting = false;
};

/// Imports the serialized ModelProto in `bytes`; `fileName` names it in
/// diagnostics. Returns null after emitting an error.
OwningOpRef<ModuleOp> importOnnxModel(llvm::StringRef bytes, llvm::StringRef fileName,
                                      MLIRContext *context, const OnnxImportOptions &options);

/// Registers the `--import-onnx` translation (moe-translate).
void registerOnnxImportTranslation();

} // namespace mlir::moe

#endif // MOE_FRONTEND_ONNXIMPORT_H
