//===- TensorCoreGemmPass.cpp - grouped bf16/f16 GEMMs on tensor cores ----===//
//
// moe-tensor-core-gemm: every grouped matmul of the parallel form with bf16
// or f16 operands (GroupedGemm.h) becomes one tiled tensor-core kernel of
// the first kernel family of the target that supports it
// (TensorCoreTarget.h); other matmuls are left to the generic mapping.
//
//===----------------------------------------------------------------------===//

#include "GroupedGemm.h"
#include "TensorCoreTarget.h"
#include "moe/Conversion/Passes.h"

#include "dialects/moe/MoeDialect.h"

// The dialects the kernels are built in (the pass's dependent dialects).
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOETENSORCOREGEMM
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe::gpu_gemm;

TensorCoreTarget mlir::moe::gpu_gemm::tensorCoreTarget(bool wgmma, bool emulate) {
  TensorCoreTarget target;
  if (wgmma)
    target.families.push_back(&hopperFamily());
  target.families.push_back(&mmaSyncFamily());
  target.emulate = emulate;
  return target;
}

namespace {
struct MoeTensorCoreGemmPass : mlir::moe::impl::MoeTensorCoreGemmBase<MoeTensorCoreGemmPass> {
  using MoeTensorCoreGemmBase::MoeTensorCoreGemmBase;

  void runOnOperation() override {
    SmallVector<GroupedGemm> gemms;
    getOperation().walk([&](linalg::GenericOp op) {
      if (!op->hasAttr(moe::kGroupedGemmAttrName))
        return;
      FailureOr<GroupedGemm> gemm = matchGroupedGemm(op);
      if (succeeded(gemm))
        gemms.push_back(*gemm);
    });
    TensorCoreTarget target = tensorCoreTarget(wgmma, emulate);
    for (const GroupedGemm &gemm : gemms) {
      for (const KernelFamily *family : target.families) {
        if (!family->supports(gemm))
          continue;
        if (target.emulate)
          family->buildEmulated(gemm);
        else
          family->build(gemm);
        break;
      }
    }
  }
};
} // namespace
