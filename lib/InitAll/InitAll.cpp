//===- InitAll.cpp - register everything moe tools need -------------------===//

#include "moe/InitAll.h"
#include "dialects/moe/MoeDialect.h"
#include "dialects/stablehlo/StablehloDialect.h"
#include "moe/Conversion/Passes.h"
#include "moe/Pipelines/Pipelines.h"
#include "moe/Transforms/Passes.h"

#include "mlir/IR/DialectRegistry.h"

#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"

void mlir::moe::registerAllMoeDialects(DialectRegistry &registry) {
  registerAllDialects(registry);
  registerAllExtensions(registry);
  // gpu-module-to-binary translates kernels to LLVM IR inside the pass.
  registerAllToLLVMIRTranslations(registry);
  registry.insert<MoeDialect, stablehlo::StablehloDialect, chlo::ChloDialect>();
}

void mlir::moe::registerAllMoePasses() {
  registerAllPasses();
  registerMoePasses();
  registerMoeConversionPasses();
  registerMoePipelines();
}
