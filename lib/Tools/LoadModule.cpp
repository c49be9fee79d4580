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
static LogicalResult importStablehloIfPresent(ModuleOp module, const moe::RaisingOptions &raising) {
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
  moe::MoeImportStablehloOptions options;
  options.keepOriginals = raising.verify;
  options.wrongForTesting = raising.wrongForTesting;
  moe::buildMoeImportStablehloPipeline(pm, options);
  return pm.run(module);
}

/// The recognised layers checked against the ops they were recognised in.
static LogicalResult checkRaising(ModuleOp module, const moe::RaisingOptions &raising) {
  if (!raising.verify)
    return success();
  moe::RaisingCheckSummary summary = moe::checkRaisedLayers(module, raising.strict);
  if (raising.summary)
    *raising.summary = summary;
  return failure(raising.strict && summary.refused > 0);
}

/// After a failed parse: a shape-polymorphic export (jax.export with
/// symbolic sizes) uses dynamic ops the importer does not define; say that
/// rather than leave only the parser's "unknown op".
static void explainDynamicShapes(llvm::SourceMgr &sourceMgr, MLIRContext *context) {
  const llvm::MemoryBuffer *buffer = sourceMgr.getMemoryBuffer(sourceMgr.getMainFileID());
  StringRef text = buffer->getBuffer();
  size_t at = std::min(text.find("stablehlo.dynamic_broadcast_in_dim"),
                       std::min(text.find("stablehlo.dynamic_reshape"), text.find("stablehlo.dynamic_iota")));
  if (at == StringRef::npos)
    return;
  auto [line, column] = sourceMgr.getLineAndColumn(llvm::SMLoc::getFromPointer(text.data() + at));
  emitError(FileLineColLoc::get(context, buffer->getBufferIdentifier(), line, column))
      << "the program has dynamic shapes (a shape-polymorphic jax.export); only static shapes are supported "
         "(export with concrete shapes, e.g. without jax.export shape polymorphism)";
}

OwningOpRef<ModuleOp> mlir::moe::loadModule(llvm::SourceMgr &sourceMgr, MLIRContext *context,
                                            OnnxImportOptions options, RaisingOptions raising) {
  const llvm::MemoryBuffer *buffer = sourceMgr.getMemoryBuffer(sourceMgr.getMainFileID());
  StringRef name = buffer->getBufferIdentifier();
  if (!name.ends_with(".onnx")) {
    if (failed(checkParserHazards(sourceMgr, context)))
      return nullptr;
    OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, context);
    if (!module)
      explainDynamicShapes(sourceMgr, context);
    if (!module || failed(checkTensorSizes(*module)) || failed(importStablehloIfPresent(*module, raising)))
      return nullptr;
    if (failed(checkRaising(*module, raising)))
      return nullptr;
    return module;
  }
  options.externalDataDir = llvm::sys::path::parent_path(name).str();
  options.keepRaisedOriginals = raising.verify;
  options.wrongRaisingForTesting = raising.wrongForTesting;
  OwningOpRef<ModuleOp> module = importOnnxModel(buffer->getBuffer(), name, context, options);
  if (!module || failed(checkTensorSizes(*module)))
    return nullptr;
  if (failed(checkRaising(*module, raising)))
    return nullptr;
  return module;
}

OwningOpRef<ModuleOp> mlir::moe::loadModuleFile(StringRef path, llvm::SourceMgr &sourceMgr, MLIRContext *context,
                                                std::string &error, OnnxImportOptions onnxOptions,
                                                RaisingOptions raising) {
  std::unique_ptr<llvm::MemoryBuffer> file = openInputFile(path, &error);
  if (!file)
    return nullptr;
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  return loadModule(sourceMgr, context, std::move(onnxOptions), raising);
}
