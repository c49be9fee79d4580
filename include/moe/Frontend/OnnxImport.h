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

namespace llvm {
class SourceMgr;
} // namespace llvm

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
};

/// Imports the serialized ModelProto in `bytes`; `fileName` names it in
/// diagnostics. Returns null after emitting an error.
OwningOpRef<ModuleOp> importOnnxModel(llvm::StringRef bytes, llvm::StringRef fileName,
                                      MLIRContext *context, const OnnxImportOptions &options);

/// The module in `sourceMgr`'s main buffer: an ONNX model (imported) when
/// its name ends in `.onnx`, MLIR text or bytecode (parsed) otherwise; a
/// parsed JAX StableHLO program is run through moe-import-stablehlo. The
/// tools that take a model (moe-run, moe-compile) read their input with it.
OwningOpRef<ModuleOp> loadModule(llvm::SourceMgr &sourceMgr, MLIRContext *context,
                                 OnnxImportOptions onnxOptions = {});

/// Reads the file at `path` into `sourceMgr` and loads it as loadModule
/// does. A file that cannot be read sets `error`; a model that does not
/// load has its diagnostics reported through the context (error empty).
OwningOpRef<ModuleOp> loadModuleFile(llvm::StringRef path, llvm::SourceMgr &sourceMgr, MLIRContext *context,
                                     std::string &error, OnnxImportOptions onnxOptions = {});

/// Registers the `--import-onnx` translation (moe-translate).
void registerOnnxImportTranslation();

} // namespace mlir::moe

#endif // MOE_FRONTEND_ONNXIMPORT_H
