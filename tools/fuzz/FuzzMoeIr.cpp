//===- FuzzMoeIr.cpp - fuzz target: moe IR through moe-optimize -----------===//
//
// Input: MLIR text (seeds: the moe-dialect tests). Parse, verify,
// moe-optimize, lower for the CPU.
//
//===----------------------------------------------------------------------===//

#include "FuzzModule.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mlir::moe::fuzz::fuzzMlirText(data, size, /*requireStablehlo=*/false);
  return 0;
}
