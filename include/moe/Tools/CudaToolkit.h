//===- CudaToolkit.h - where the tools find ptxas and libdevice -*- C++ -*-===//

#ifndef MOE_TOOLS_CUDATOOLKIT_H
#define MOE_TOOLS_CUDATOOLKIT_H

namespace mlir::moe {
/// When no CUDA_ROOT / CUDA_HOME / CUDA_PATH is set and /usr/local/cuda holds
/// ptxas, points CUDA_HOME there: gpu-module-to-binary finds ptxas and
/// libdevice (the math functions of the kernels) through these variables.
void setDefaultCudaToolkitPath();
} // namespace mlir::moe

#endif // MOE_TOOLS_CUDATOOLKIT_H
