//===- FuzzOnnx.cpp - fuzz target: the ONNX importer ----------------------===//
//
// Input: a serialized ModelProto (seeds: test/Onnx). Import (external data
// resolves against a directory that does not exist), then moe-optimize and
// the CPU lowering of what was imported.
//
//===----------------------------------------------------------------------===//

#include "FuzzModule.h"

#include "moe/Frontend/OnnxImport.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > mlir::moe::fuzz::kMaxInputBytes)
    return 0;
  std::unique_ptr<mlir::MLIRContext> context = mlir::moe::fuzz::makeQuietContext();
  mlir::moe::OnnxImportOptions options;
  options.externalDataDir = "/nonexistent/moe-fuzz";
  mlir::OwningOpRef<mlir::ModuleOp> module = mlir::moe::importOnnxModel(
      llvm::StringRef(reinterpret_cast<const char *>(data), size), "fuzz.onnx", context.get(), options);
  if (module)
    mlir::moe::fuzz::optimizeAndLower(*module);
  return 0;
}
