//===- CudaToolkit.cpp - where the tools find ptxas and libdevice ---------===//

#include "moe/Tools/CudaToolkit.h"

#include "llvm/Support/FileSystem.h"

#include <cstdlib>

void mlir::moe::setDefaultCudaToolkitPath() {
  for (const char *name : {"CUDA_ROOT", "CUDA_HOME", "CUDA_PATH"})
    if (const char *value = std::getenv(name); value && *value)
      return;
  if (llvm::sys::fs::exists("/usr/local/cuda/bin/ptxas"))
    ::setenv("CUDA_HOME", "/usr/local/cuda", /*overwrite=*/0);
}
