//===- GroupedGemm.h - a grouped matmul the tensor-core kernels replace -*- C++ -*-===//
//
// The grouped matmul generic of the parallel form (kGroupedGemmAttrName)
// computes out[r, n] = sum_k lhs[r, k] * W[expert(r), n, k] in f32, one
// thread per output element. matchGroupedGemm reads its operands after
// bufferization, with the generics a kernel's epilogue can absorb: the GLU
// that reads the result's two halves, the scaling of each row by its
// combine weight, and the rounding to the operand type.
//
//===----------------------------------------------------------------------===//

#ifndef LIB_CONVERSION_MOETOGPU_GROUPEDGEMM_H
#define LIB_CONVERSION_MOETOGPU_GROUPEDGEMM_H

#include "mlir/Dialect/Linalg/IR/Linalg.h"

namespace mlir::moe::gpu_gemm {

/// The operands of one marked grouped matmul, after bufferization.
struct GroupedGemm {
  linalg::GenericOp op;
  Value lhs, rowExperts, out, weights, shared, offsets;
  /// The gated activation fused into the epilogue, or null; it writes `gluOut`.
  linalg::GenericOp glu;
  Value gluOut;
  /// The scaling of each f32 result row by its combine weight
  /// (kRowScaleAttrName) fused into the epilogue, or null; it reads
  /// `rowScales` [R] and writes `scaledOut`.
  linalg::GenericOp rowScale;
  Value rowScales, scaledOut;
  /// The rounding of the f32 result (scaled, GLU output or `out`) to the
  /// operand type fused into the epilogue, or null; it writes `roundedOut`.
  linalg::GenericOp rounding;
  Value roundedOut;

  /// The f32 buffer of the products (after the GLU), before any scaling.
  Value productOut() const { return glu ? gluOut : out; }
  /// The f32 buffer the epilogue computes into before any rounding.
  Value epilogueOut() const { return rowScale ? scaledOut : productOut(); }
  /// The last fused generic: the kernel takes its place.
  Operation *lastFused() const {
    for (linalg::GenericOp fused : {rounding, rowScale, glu, op})
      if (fused)
        return fused;
    return nullptr;
  }
};

/// The operands of `op` when it is a grouped matmul a tensor-core kernel
/// can run (bf16 or f16 operands of one type), or failure.
FailureOr<GroupedGemm> matchGroupedGemm(linalg::GenericOp op);

} // namespace mlir::moe::gpu_gemm

#endif // LIB_CONVERSION_MOETOGPU_GROUPEDGEMM_H
