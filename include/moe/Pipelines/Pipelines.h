//===- Pipelines.h - registered moe pass pipelines --------------*- C++ -*-===//

#ifndef MOE_PIPELINES_PIPELINES_H
#define MOE_PIPELINES_PIPELINES_H

namespace mlir {
class OpPassManager;
namespace moe {
/// moe (either level) -> LLVM dialect for the host CPU: decompose, lower to
/// linalg/scf, bufferize, deallocate, lower to loops and to LLVM. Functions
/// get C interfaces so moe-run and other hosts can call them.
void buildMoeCpuPipeline(OpPassManager &pm);
/// Registers `moe-cpu-pipeline`.
void registerMoePipelines();
} // namespace moe
} // namespace mlir

#endif // MOE_PIPELINES_PIPELINES_H
