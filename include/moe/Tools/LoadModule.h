//===- LoadModule.h - one entry for every model format ----------*- C++ -*-===//
//
// What the tools that take a model (moe-run, moe-compile) read their input
// with: format detection, the ONNX importer, the MLIR parser and the
// StableHLO import pipeline. It sits above the front ends and the pipelines
// so that neither has to know the other.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TOOLS_LOADMODULE_H
#define MOE_TOOLS_LOADMODULE_H

#include "moe/Frontend/OnnxImport.h"
#include "moe/Tools/RaisingCheck.h"

namespace llvm {
class SourceMgr;
} // namespace llvm

namespace mlir::moe {

/// The module in `sourceMgr`'s main buffer: an ONNX model (imported) when
/// its name ends in `.onnx`, MLIR text or bytecode (parsed) otherwise; a
/// parsed JAX StableHLO program is run through moe-import-stablehlo. The
/// tools that take a model (moe-run, moe-compile) read their input with it.
OwningOpRef<ModuleOp> loadModule(llvm::SourceMgr &sourceMgr, MLIRContext *context,
                                 OnnxImportOptions onnxOptions = {}, RaisingOptions raising = {});

/// Reads the file at `path` into `sourceMgr` and loads it as loadModule
/// does. A file that cannot be read sets `error`; a model that does not
/// load has its diagnostics reported through the context (error empty).
OwningOpRef<ModuleOp> loadModuleFile(llvm::StringRef path, llvm::SourceMgr &sourceMgr, MLIRContext *context,
                                     std::string &error, OnnxImportOptions onnxOptions = {},
                                     RaisingOptions raising = {});

} // namespace mlir::moe

#endif // MOE_TOOLS_LOADMODULE_H
