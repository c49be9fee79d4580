//===- CompileReport.h - what moe-compile did, as JSON ----------*- C++ -*-===//
//
// `moe-compile --report=FILE` writes one JSON object, also when compilation
// fails: the diagnostics (located where the input gives a location), the
// artifact's signature, the MoE layers and other moe ops the importer
// recognised, the cost model's table, what the lowering shared and how long
// each step took. The Python package (python/moe_compiler) reads it; its
// schema is documented in docs/python.md.
//
//===----------------------------------------------------------------------===//

#ifndef TOOLS_MOE_COMPILE_COMPILEREPORT_H
#define TOOLS_MOE_COMPILE_COMPILEREPORT_H

#include "moe/Support/ArtifactSignature.h"
#include "moe/Transforms/CostReport.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/Support/JSON.h"

#include <map>
#include <optional>
#include <string>
#include "moe/Tools/RaisingCheck.h"

#include <vector>

namespace artifact {

struct ReportedDiagnostic {
  std::string severity, message, file, name; // name: an ONNX node's
  unsigned line = 0, column = 0;
  std::vector<ReportedDiagnostic> notes;
};

struct CompileReport {
  std::vector<ReportedDiagnostic> diagnostics;
  std::optional<Signature> signature;
  /// One object per moe.layer: experts, routing, activation, location.
  std::vector<llvm::json::Value> layers;
  std::map<std::string, int64_t> moeOps; // moe ops other than moe.layer
  int64_t plainOps = 0;                  // ops of other dialects in the functions
  std::optional<mlir::moe::CostTable> cost;
  int64_t costTokens = 0;
  std::string costError;
  int64_t sharedFunctions = 0, layerCalls = 0, blockFunctions = 0, blockCalls = 0, gpuKernels = 0;
  bool fromCache = false;
  /// What --verify-raising did (kept, refused, not checked), when it ran.
  std::optional<mlir::moe::RaisingCheckSummary> raising;
  std::vector<std::pair<std::string, double>> timingsMs;
  std::string library, header;

  /// Records what the importer made of `module` (before any pass).
  void describeProgram(mlir::ModuleOp module);
  /// Records a tool-level error (no location).
  void error(const std::string &message) { diagnostics.push_back({"error", message, "", "", 0, 0, {}}); }
  /// The report as JSON text; `ok` is the tool's verdict.
  std::string json(bool ok) const;
};

/// Records every diagnostic of `context` into `report` while it lives, then
/// lets the handlers registered before it (the printing one) see it too.
class DiagnosticRecorder {
public:
  DiagnosticRecorder(mlir::MLIRContext *context, CompileReport &report);
  ~DiagnosticRecorder();

private:
  mlir::MLIRContext *context;
  mlir::DiagnosticEngine::HandlerID id;
};

} // namespace artifact

#endif // TOOLS_MOE_COMPILE_COMPILEREPORT_H
