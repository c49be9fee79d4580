//===- FuzzStablehlo.cpp - fuzz target: the StableHLO text importer -------===//
//
// Input: StableHLO text as JAX exports it (seeds: test/Stablehlo). Parse,
// moe-import-stablehlo (normalise, raise MoE layers, lower the rest),
// moe-optimize, lower for the CPU. Inputs without StableHLO ops are left to
// the moe IR target.
//
//===----------------------------------------------------------------------===//

#include "FuzzModule.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mlir::moe::fuzz::fuzzMlirText(data, size, /*requireStablehlo=*/true);
  return 0;
}
