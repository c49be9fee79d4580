//===- ParallelLoops.h - the contract between lowering and GPU mapping -*- C++ -*-===//
//
// convert-moe-to-linalg builds its sequential-looking loops with scf.for over
// tensors. Where the lowering knows that the iterations write disjoint
// elements (one token row, one expert column), it puts this unit attribute on
// the loop; after bufferization `moe-parallelize-loops` turns exactly these
// loops into scf.parallel, so the GPU pipeline can map them to threads.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_CONVERSION_PARALLELLOOPS_H
#define MOE_CONVERSION_PARALLELLOOPS_H

#include "llvm/ADT/StringRef.h"

namespace mlir::moe {
inline constexpr llvm::StringLiteral kParallelLoopAttrName = "moe.parallel";
/// On the linalg.generic of a grouped matmul in the parallel form: ins
/// (lhs [R, K], row experts [R] i32), outs (f32 [R, N]); the body loads the
/// expert weights [E, N, K] (and a shared expert's [N, K]) it captures.
inline constexpr llvm::StringLiteral kGroupedGemmAttrName = "moe.grouped_gemm";
/// On the linalg.generic that scales each row of a grouped matmul's f32
/// result by its slot's combine weight (ins: result [R, N], weights [R]):
/// moe-tensor-core-gemm applies it in the GEMM epilogue.
inline constexpr llvm::StringLiteral kRowScaleAttrName = "moe.row_scale";
/// Marks a host-runtime call a kernel builder emitted before its launch (a
/// TMA descriptor): moe-map-to-gpu leaves it on the host.
inline constexpr llvm::StringLiteral kHostCallAttrName = "moe.host_call";
/// On the linalg.generic that finds each grouped-matmul row's expert; its
/// body loads the row groups' offsets [G+1] it captures.
inline constexpr llvm::StringLiteral kRowExpertsAttrName = "moe.row_experts";
} // namespace mlir::moe

#endif // MOE_CONVERSION_PARALLELLOOPS_H
