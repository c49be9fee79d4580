//===- FuzzModule.h - what the MLIR-level fuzz targets share ----*- C++ -*-===//
//
// A fuzz input that became a module (parsed text, imported ONNX) goes on
// through what moe-run does with it: the default moe-optimize pipeline, then
// the CPU lowering to the LLVM dialect. Every failure must be a diagnostic;
// a crash, a sanitizer report or a hang is a finding.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TOOLS_FUZZ_FUZZMODULE_H
#define MOE_TOOLS_FUZZ_FUZZMODULE_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"

#include <cstddef>
#include <cstdint>
#include <memory>

namespace mlir::moe::fuzz {

/// Inputs larger than this are skipped: the fuzzer's time goes to structure,
/// not to size (sizes a file claims are what the targets must bound).
constexpr size_t kMaxInputBytes = 1 << 20;

/// A single-threaded context with every dialect the tools load, whose
/// diagnostics are dropped.
std::unique_ptr<mlir::MLIRContext> makeQuietContext();

/// Runs moe-optimize, then the CPU pipeline, on `module`.
void optimizeAndLower(mlir::ModuleOp module);

/// Parses `data` as MLIR text (the tools' loader: hazard scan, parse,
/// verify, StableHLO import when it holds StableHLO) and, when it loads and
/// `requireStablehlo` is false or it held StableHLO, optimizes and lowers it.
void fuzzMlirText(const uint8_t *data, size_t size, bool requireStablehlo);

} // namespace mlir::moe::fuzz

#endif // MOE_TOOLS_FUZZ_FUZZMODULE_H
