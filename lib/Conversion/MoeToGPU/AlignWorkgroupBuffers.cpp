//===- AlignWorkgroupBuffers.cpp - 16-byte aligned shared memory ----------===//
//
// The NVVM lowering turns each workgroup attribution into a shared global
// aligned to `llvm.align` when the attribution has one, else to its element
// size. The tensor-core GEMM reads its tiles with ldmatrix and fills them with
// 16-byte cp.async, both of which need 16-byte aligned shared addresses.
//
//===----------------------------------------------------------------------===//

#include "moe/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "llvm/Support/MathExtras.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEALIGNWORKGROUPBUFFERS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {
struct MoeAlignWorkgroupBuffersPass
    : mlir::moe::impl::MoeAlignWorkgroupBuffersBase<MoeAlignWorkgroupBuffersPass> {
  using MoeAlignWorkgroupBuffersBase::MoeAlignWorkgroupBuffersBase;

  void runOnOperation() override {
    if (alignment <= 0 || !llvm::isPowerOf2_64(static_cast<uint64_t>(alignment))) {
      getOperation().emitError("moe-align-workgroup-buffers: alignment must be a power of two, got ")
          << static_cast<int64_t>(alignment);
      return signalPassFailure();
    }
    StringRef name = LLVM::LLVMDialect::getAlignAttrName();
    getOperation().walk([&](gpu::GPUFuncOp func) {
      for (unsigned i = 0, e = func.getNumWorkgroupAttributions(); i < e; ++i)
        if (!func.getWorkgroupAttributionAttr(i, name))
          func.setWorkgroupAttributionAttr(
              i, StringAttr::get(func.getContext(), name),
              IntegerAttr::get(IntegerType::get(func.getContext(), 64), alignment));
    });
  }
};
} // namespace
