//===- Pipelines.cpp - the registered moe pass pipelines ------------------===//

#include "moe/Pipelines/Pipelines.h"
#include "moe/Conversion/Passes.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/ErrorHandling.h"

using namespace mlir;

void mlir::moe::buildMoeCpuPipeline(OpPassManager &pm) {
  pm.addPass(createMoeDecompose());
  pm.addPass(createConvertMoeToLinalg());
  // The upstream half, spelled as its textual pipeline so that the same string
  // reproduces it with mlir-opt.
  LogicalResult parsed = parsePassPipeline(
      "func.func(llvm-request-c-wrappers),"
      "func.func(convert-elementwise-to-linalg),canonicalize,cse,"
      "one-shot-bufferize{bufferize-function-boundaries allow-return-allocs-from-loops "
      "function-boundary-type-conversion=identity-layout-map},"
      "buffer-deallocation-pipeline,convert-bufferization-to-memref,"
      "convert-linalg-to-loops,expand-strided-metadata,lower-affine,"
      "convert-scf-to-cf,convert-math-to-llvm,convert-math-to-libm,"
      "convert-to-llvm,reconcile-unrealized-casts,canonicalize",
      pm);
  // Every pass named above ships in libMLIR; failing here means the build
  // links a different MLIR, and a silently shorter pipeline would be worse.
  if (failed(parsed))
    llvm::report_fatal_error("moe-cpu-pipeline: an upstream pass is not registered");
}

void mlir::moe::buildMoeOptimizePipeline(OpPassManager &pm, const MoeOptimizeOptions &options) {
  if (options.pruneMaskedExperts)
    pm.addPass(createMoePruneMaskedExperts());
  if (options.mergeExperts)
    pm.addPass(createMoeMergeExperts()); // exact only: approximate stays off
  pm.addPass(createMoeDecompose());
  if (options.eliminateZeroExperts)
    pm.addPass(createMoeEliminateZeroExperts());
  if (options.fuseRouting)
    pm.addPass(createMoeFuseRouting());
  if (options.fuseExperts)
    pm.addPass(createMoeFuseExperts());
  if (options.fuseExperts && options.foldSharedExpert)
    pm.addPass(createMoeFoldSharedExpert());
  if (options.canonicalize) {
    pm.addPass(createCanonicalizerPass());
    pm.addPass(createCSEPass());
  }
}

void mlir::moe::registerMoePipelines() {
  PassPipelineRegistration<MoeOptimizeOptions>(
      "moe-optimize",
      "The default moe optimisation pipeline: prune masked experts, merge linear experts (MEO), "
      "decompose, eliminate "
      "zero-computation experts, "
      "fuse the routing and the expert epilogues, fold the shared expert, canonicalize",
      buildMoeOptimizePipeline);
  PassPipelineRegistration<>("moe-cpu-pipeline",
                             "Lowers moe programs to the LLVM dialect for the host CPU",
                             buildMoeCpuPipeline);
}
