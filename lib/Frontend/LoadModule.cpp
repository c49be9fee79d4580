//===- LoadModule.cpp - one entry for every model format ------------------===//

#include "moe/Frontend/OnnxImport.h"

#include "mlir/Parser/Parser.h"
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
