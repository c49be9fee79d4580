//===- LoadModule.cpp - one entry for every model format ------------------===//

#include "moe/Tools/LoadModule.h"
#include "dialects/stablehlo/StablehloDialect.h"
#include "moe/Pipelines/Pipelines.h"
#include "moe/Tools/ParserHazards.h"
#include "moe/Tools/ResourceLimits.h"

#include "mlir/Pass/PassManager.h"

#include "mlir/Parser/Parser.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"

using namespace mlir;

/// A JAX program (stablehlo/chlo ops) goes through moe-import-stablehlo so
/// that the tools take StableHLO text as they take moe IR.
static LogicalResult importStablehloIfPresent(ModuleOp module) {
  bool hasStablehlo = module
                          ->walk([](Operation *op) {
                            return isa_and_nonnull<moe::stablehlo::StablehloDialect, moe::chlo::ChloDialect>(op->getDialect())
                                       ? WalkResult::interrupt()
                                       : WalkResult::advance();
                          })
                          .wasInterrupted();
  if (!hasStablehlo)
    return success();
  PassManager pm(module->getContext());
  moe::buildMoeImportStablehloPipeline(pm);
  return pm.run(module);
}

OwningOpRef<ModuleOp> mlir::moe::loadModule(llvm::SourceMgr &sourceMgr, MLIRContext *context,
                                            OnnxImportOptions options) {
  const llvm::MemoryBuffer *buffer = sourceMgr.getMemoryBuffer(sourceMgr.getMainFileID());
  StringRef name = buffer->getBufferIdentifier();
  if (!name.ends_with(".onnx")) {
    if (failed(checkParserHazards(sourceMgr, context)))
      return nullptr;
    OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, context);
    if (!module || failed(checkTensorSizes(*module)) || failed(importStablehloIfPresent(*module)))
      return nullptr;
    return module;
  }
  options.externalDataDir = llvm::sys::path::parent_path(name).str();
  OwningOpRef<ModuleOp> module = importOnnxModel(buffer->getBuffer(), name, context, options);
  if (!module || failed(checkTensorSizes(*module)))
    return nullptr;
  return module;
}

OwningOpRef<ModuleOp> mlir::moe::loadModuleFile(StringRef path, llvm::SourceMgr &sourceMgr, MLIRContext *context,
                                                std::string &error, OnnxImportOptions onnxOptions) {
  std::unique_ptr<llvm::MemoryBuffer> file = openInputFile(path, &error);
  if (!file)
    return nullptr;
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  return loadModule(sourceMgr, context, std::move(onnxOptions));
}
