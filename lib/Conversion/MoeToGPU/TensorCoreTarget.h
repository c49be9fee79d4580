//===- TensorCoreTarget.h - which kernel family builds each grouped GEMM -*- C++ -*-===//
//
// A kernel family (one file each: MmaSyncKernel.cpp, HopperKernel.cpp) says
// which matched grouped matmuls it can run and builds its device kernel or
// that kernel's CPU emulation (EmulatedKernels.cpp). A target lists the
// families a chip offers in order of preference; moe-tensor-core-gemm gives
// each matmul to the first family that supports it. A new kernel (int8/fp8
// weights, another architecture) is a new family in a new file and one
// entry in tensorCoreTarget.
//
//===----------------------------------------------------------------------===//

#ifndef LIB_CONVERSION_MOETOGPU_TENSORCORETARGET_H
#define LIB_CONVERSION_MOETOGPU_TENSORCORETARGET_H

#include "GroupedGemm.h"

#include "llvm/ADT/SmallVector.h"

namespace mlir::moe::gpu_gemm {

class KernelFamily {
public:
  virtual ~KernelFamily() = default;
  virtual llvm::StringRef name() const = 0;
  /// Whether the family's kernel runs `gemm` (element types, layouts,
  /// alignment).
  virtual bool supports(const GroupedGemm &gemm) const = 0;
  /// Replaces `gemm` (and the generics it absorbs) by the device kernel.
  virtual void build(const GroupedGemm &gemm) const = 0;
  /// Replaces `gemm` by the kernel's CPU emulation, for
  /// moe-gpu-launch-to-loops.
  virtual void buildEmulated(const GroupedGemm &gemm) const = 0;
};

/// mma.sync m16n8k16 with ldmatrix and cp.async (sm_80 and later).
const KernelFamily &mmaSyncFamily();
/// TMA + mbarrier + wgmma m64n128k16 (sm_90a).
const KernelFamily &hopperFamily();

/// The emulated forms of the families' kernels (EmulatedKernels.cpp).
void buildEmulatedMmaSync(const GroupedGemm &gemm);
void buildEmulatedHopper(const GroupedGemm &gemm);

struct TensorCoreTarget {
  /// In order of preference; the last supports every matched matmul.
  llvm::SmallVector<const KernelFamily *, 2> families;
  /// Build the kernels' CPU emulations instead of the kernels.
  bool emulate = false;
};

/// The families for the pass options: wgmma (sm_90a) first when asked for.
TensorCoreTarget tensorCoreTarget(bool wgmma, bool emulate);

} // namespace mlir::moe::gpu_gemm

#endif // LIB_CONVERSION_MOETOGPU_TENSORCORETARGET_H
