//===- InitAll.h - register everything moe tools need -----------*- C++ -*-===//

#ifndef MOE_INITALL_H
#define MOE_INITALL_H

namespace mlir {
class DialectRegistry;
namespace moe {
/// Adds the moe dialect and the upstream dialects the moe tools work with.
void registerAllMoeDialects(DialectRegistry &registry);
/// Registers the moe passes (and pipelines) with the global pass registry.
void registerAllMoePasses();
/// When no CUDA_ROOT / CUDA_HOME / CUDA_PATH is set and /usr/local/cuda holds
/// ptxas, points CUDA_HOME there: gpu-module-to-binary finds ptxas and
/// libdevice (the math functions of the kernels) through these variables.
void setDefaultCudaToolkitPath();
} // namespace moe
} // namespace mlir

#endif // MOE_INITALL_H
