//===- InitAll.cpp - register everything moe tools need -------------------===//

#include "moe/InitAll.h"
#include "dialects/moe/MoeDialect.h"
#include "moe/Conversion/Passes.h"
#include "moe/Pipelines/Pipelines.h"
#include "moe/Transforms/Passes.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"

void mlir::moe::registerAllMoeDialects(DialectRegistry &registry) {
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registry.insert<MoeDialect>();
}

void mlir::moe::registerAllMoePasses() {
  registerAllPasses();
  registerMoePasses();
  registerMoeConversionPasses();
  registerMoePipelines();
}
