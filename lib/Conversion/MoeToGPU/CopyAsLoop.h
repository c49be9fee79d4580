//===- CopyAsLoop.h - memref.copy as explicit loads and stores --*- C++ -*-===//
//
// On the GPU only a top-level copy between contiguous buffers is a memcpy;
// any other copy (strided, or inside a kernel) becomes a parallel loop of
// loads and stores, which a kernel runs like any other loop.
//
//===----------------------------------------------------------------------===//

#ifndef LIB_CONVERSION_MOETOGPU_COPYASLOOP_H
#define LIB_CONVERSION_MOETOGPU_COPYASLOOP_H

#include "mlir/Dialect/MemRef/IR/MemRef.h"

namespace mlir::moe {
/// True when `memref` is laid out contiguously (identity layout): only a
/// copy between two such buffers can be a device memcpy.
bool hasIdentityLayout(Value memref);
/// Replaces `copy` with an scf.parallel over its elements.
void copyAsLoop(memref::CopyOp copy);
} // namespace mlir::moe

#endif // LIB_CONVERSION_MOETOGPU_COPYASLOOP_H
