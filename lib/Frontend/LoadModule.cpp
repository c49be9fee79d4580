//===- LoadModule.cpp - one entry for every model format ------------------===//

#include "moe/Frontend/OnnxImport.h"

#include "mlir/Parser/Parser.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"

using namespace mlir;

OwningOpRef<ModuleOp> mlir::moe::loadModule(llvm::SourceMgr &sourceMgr, MLIRContext *context,
                                            OnnxImportOptions options) {
  const llvm::MemoryBuffer *buffer = sourceMgr.getMemoryBuffer(sourceMgr.getMainFileID());
  StringRef name = buffer->getBufferIdentifier();
  if (!name.ends_with(".onnx"))
    return parseSourceFile<ModuleOp>(sourceMgr, context);
  options.externalDataDir = llvm::sys::path::parent_path(name).str();
  return importOnnxModel(buffer->getBuffer(), name, context, options);
}

OwningOpRef<ModuleOp> mlir::moe::loadModuleFile(StringRef path, llvm::SourceMgr &sourceMgr, MLIRContext *context,
                                                std::string &error, OnnxImportOptions onnxOptions) {
  std::unique_ptr<llvm::MemoryBuffer> file = openInputFile(path, &error);
  if (!file)
    return nullptr;
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  return loadModule(sourceMgr, context, std::move(onnxOptions));
}
