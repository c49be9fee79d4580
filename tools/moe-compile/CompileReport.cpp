//===- CompileReport.cpp - what moe-compile did, as JSON -----------------===//

#include "CompileReport.h"

#include "dialects/moe/MoeOps.h"

#include "mlir/IR/Location.h"
#include "llvm/Support/raw_ostream.h"

using namespace artifact;
using namespace mlir;
namespace json = llvm::json;

/// The first file location inside `loc` (name and fused locations wrap them).
static std::optional<FileLineColLoc> fileLocationOf(Location loc) {
  std::optional<FileLineColLoc> found;
  loc->walk([&](Location inner) {
    if (auto file = dyn_cast<FileLineColLoc>(inner)) {
      found = file;
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  return found;
}

/// The innermost name in `loc` (an ONNX node's name), empty if none.
static std::string nameOf(Location loc) {
  std::string name;
  loc->walk([&](Location inner) {
    if (auto named = dyn_cast<NameLoc>(inner))
      name = named.getName().str();
    return WalkResult::advance();
  });
  return name;
}

static json::Value locationJson(const std::string &file, unsigned line, unsigned column, const std::string &name) {
  if (file.empty() && name.empty())
    return nullptr;
  json::Object out{{"file", file}, {"line", line}, {"column", column}};
  if (!name.empty())
    out["name"] = name;
  return out;
}

static json::Value locationJson(Location loc) {
  std::optional<FileLineColLoc> file = fileLocationOf(loc);
  return file ? locationJson(file->getFilename().str(), file->getLine(), file->getColumn(), nameOf(loc))
              : locationJson("", 0, 0, nameOf(loc));
}

template <typename T> static std::string text(T printable) {
  std::string out;
  llvm::raw_string_ostream os(out);
  os << printable;
  return out;
}

static json::Value describeLayer(moe::LayerOp layer) {
  json::Array experts;
  for (auto group : layer.getExperts().getAsRange<moe::ExpertGroupAttr>())
    experts.push_back(json::Object{{"kind", moe::stringifyExpertKind(group.getKind()).str()},
                                   {"count", group.getCount()}});
  moe::RoutingAttr r = layer.getRoutingAttr();
  json::Object routing{{"scoring", moe::stringifyScoringFunc(r.getScoring()).str()},
                       {"select", moe::stringifySelectMode(r.getSelect()).str()},
                       {"k", r.getK()},
                       {"order", moe::stringifyScoreOrder(r.getOrder()).str()},
                       {"normalize", moe::stringifyNormalizeMode(r.getNormalize()).str()},
                       {"scale", r.getScale().convertToDouble()},
                       {"num_groups", r.getNumGroups()},
                       {"topk_groups", r.getTopkGroups()},
                       {"group_size", r.getGroupSize()},
                       {"text", text(r)}};
  auto x = layer.getX().getType();
  json::Object out{{"experts", std::move(experts)},
                   {"routing", std::move(routing)},
                   {"activation", moe::stringifyActivation(layer.getActivation()).str()},
                   {"hidden", x.getDimSize(1)},
                   {"dtype", text(x.getElementType())},
                   {"shared_expert", bool(layer.getSharedUp())},
                   {"capacity", layer.getCapacityAttr() ? json::Value(text(layer.getCapacityAttr()))
                                                        : json::Value(nullptr)}};
  out["location"] = locationJson(layer.getLoc());
  return out;
}

void CompileReport::describeProgram(ModuleOp module) {
  module.walk([&](Operation *op) {
    if (isa<ModuleOp, func::FuncOp, func::ReturnOp>(op))
      return;
    if (auto layer = dyn_cast<moe::LayerOp>(op))
      layers.push_back(describeLayer(layer));
    else if (isa<moe::MoeDialect>(op->getDialect()))
      ++moeOps[op->getName().getStringRef().str()];
    else if (!isa_and_nonnull<moe::MoeDialect>(op->getParentOp()->getDialect()))
      ++plainOps; // ops inside a moe op's region are part of it
  });
}

static json::Value toJson(const ReportedDiagnostic &d) {
  json::Object out{{"severity", d.severity}, {"message", d.message}};
  out["location"] = locationJson(d.file, d.line, d.column, d.name);
  json::Array notes;
  for (const ReportedDiagnostic &n : d.notes)
    notes.push_back(toJson(n));
  out["notes"] = std::move(notes);
  return out;
}

static json::Value toJson(const BufferSignature &b) {
  json::Array shape;
  for (int64_t d : b.shape)
    shape.push_back(d < 0 ? json::Value(nullptr) : json::Value(d));
  return json::Object{{"name", b.name}, {"dtype", npy::mlirName(b.type)}, {"shape", std::move(shape)}};
}

static json::Value toJson(const moe::OpCost &c) {
  return json::Object{{"gemm_flops", c.gemmFlops},
                      {"other_flops", c.otherFlops},
                      {"weight_bytes", c.weightBytes},
                      {"activation_bytes", c.activationBytes}};
}

std::string CompileReport::json(bool ok) const {
  json::Object out{{"ok", ok}};
  json::Array diags;
  for (const ReportedDiagnostic &d : diagnostics)
    diags.push_back(toJson(d));
  out["diagnostics"] = std::move(diags);
  if (signature) {
    json::Array inputs, outputs;
    for (const BufferSignature &b : signature->inputs)
      inputs.push_back(toJson(b));
    for (const BufferSignature &b : signature->outputs)
      outputs.push_back(toJson(b));
    out["entry"] = signature->entry;
    out["target"] = signature->target;
    out["inputs"] = std::move(inputs);
    out["outputs"] = std::move(outputs);
  }
  out["layers"] = json::Array(layers);
  json::Object ops;
  for (const auto &[name, count] : moeOps)
    ops[name] = count;
  out["moe_ops"] = std::move(ops);
  out["plain_ops"] = plainOps;
  if (cost) {
    json::Array rows, dispatches;
    for (const moe::CostRow &row : cost->rows) {
      json::Object r{{"op", row.op}, {"line", row.line}};
      r["cost"] = toJson(row.cost);
      rows.push_back(std::move(r));
    }
    for (const moe::DispatchEstimate &d : cost->dispatches)
      dispatches.push_back(json::Object{{"line", d.line},
                                        {"filled_slots", d.filledSlots},
                                        {"experts", d.experts},
                                        {"selection_experts", d.selectionExperts},
                                        {"rows_per_expert", d.rowsPerExpert}});
    out["cost"] = json::Object{{"tokens", costTokens},
                               {"total", toJson(cost->total)},
                               {"ops", std::move(rows)},
                               {"dispatches", std::move(dispatches)}};
  } else {
    out["cost"] = nullptr;
  }
  if (!costError.empty())
    out["cost_error"] = costError;
  out["lowering"] = json::Object{{"shared_functions", sharedFunctions},
                                 {"layer_calls", layerCalls},
                                 {"block_functions", blockFunctions},
                                 {"block_calls", blockCalls},
                                 {"gpu_kernels", gpuKernels},
                                 {"from_cache", fromCache}};
  if (raising)
    out["raising_check"] = json::Object{{"kept", int64_t(raising->kept)},
                                        {"refused", int64_t(raising->refused)},
                                        {"not_checked", int64_t(raising->unchecked)},
                                        {"ms", raising->milliseconds}};
  json::Object timings;
  for (const auto &[step, ms] : timingsMs)
    timings[step] = ms;
  out["timings_ms"] = std::move(timings);
  if (!library.empty()) {
    out["library"] = library;
    out["header"] = header;
  }
  std::string textOut;
  llvm::raw_string_ostream os(textOut);
  os << llvm::formatv("{0:2}", json::Value(std::move(out))) << "\n";
  return textOut;
}

static ReportedDiagnostic record(Diagnostic &diag) {
  ReportedDiagnostic d;
  switch (diag.getSeverity()) {
  case DiagnosticSeverity::Error: d.severity = "error"; break;
  case DiagnosticSeverity::Warning: d.severity = "warning"; break;
  case DiagnosticSeverity::Remark: d.severity = "remark"; break;
  case DiagnosticSeverity::Note: d.severity = "note"; break;
  }
  d.message = diag.str();
  if (auto file = fileLocationOf(diag.getLocation())) {
    d.file = file->getFilename().str();
    d.line = file->getLine();
    d.column = file->getColumn();
  }
  d.name = nameOf(diag.getLocation());
  for (Diagnostic &note : diag.getNotes())
    d.notes.push_back(record(note));
  return d;
}

DiagnosticRecorder::DiagnosticRecorder(MLIRContext *context, CompileReport &report) : context(context) {
  id = context->getDiagEngine().registerHandler([&report](Diagnostic &diag) {
    report.diagnostics.push_back(record(diag));
    return failure(); // the printing handler sees it too
  });
}

DiagnosticRecorder::~DiagnosticRecorder() { context->getDiagEngine().eraseHandler(id); }
