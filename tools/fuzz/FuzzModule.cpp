//===- FuzzModule.cpp - what the MLIR-level fuzz targets share ------------===//

#include "FuzzModule.h"

#include "moe/InitAll.h"
#include "moe/Pipelines/Pipelines.h"
#include "moe/Tools/LoadModule.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

using namespace mlir;

std::unique_ptr<MLIRContext> mlir::moe::fuzz::makeQuietContext() {
  static DialectRegistry *registry = [] {
    auto *r = new DialectRegistry();
    moe::registerAllMoeDialects(*r);
    moe::registerAllMoePasses(); // the pipelines name upstream passes by their registered names
    return r;
  }();
  auto context = std::make_unique<MLIRContext>(*registry, MLIRContext::Threading::DISABLED);
  context->getDiagEngine().registerHandler([](Diagnostic &) { return success(); });
  return context;
}

void mlir::moe::fuzz::optimizeAndLower(ModuleOp module) {
  PassManager pm(module->getContext());
  moe::buildMoeOptimizePipeline(pm, moe::MoeOptimizeOptions());
  moe::buildMoeCpuPipeline(pm);
  (void)pm.run(module);
}

void mlir::moe::fuzz::fuzzMlirText(const uint8_t *data, size_t size, bool requireStablehlo) {
  if (size > kMaxInputBytes)
    return;
  llvm::StringRef text(reinterpret_cast<const char *>(data), size);
  if (requireStablehlo && !text.contains("stablehlo."))
    return;
  std::unique_ptr<MLIRContext> context = makeQuietContext();
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(llvm::MemoryBuffer::getMemBufferCopy(text, "fuzz.mlir"), llvm::SMLoc());
  OwningOpRef<ModuleOp> module = moe::loadModule(sourceMgr, context.get());
  if (module)
    optimizeAndLower(*module);
}
