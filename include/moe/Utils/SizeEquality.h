//===- SizeEquality.h - dynamic sizes known equal at compile time -*- C++ -*-===//
//
// Whether two dynamic tensor sizes are the same run-time value, proven from
// how the IR computes them: a destination-style op's result has its init's
// sizes, tensor.empty has its size operands, tensor.dim names the size it
// reads. Broadcasting code reads operands through identity maps only where
// this holds; elsewhere a size may be 1 (a broadcast) or wrong.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_UTILS_SIZEEQUALITY_H
#define MOE_UTILS_SIZEEQUALITY_H

#include "mlir/IR/Value.h"

namespace mlir::moe {

/// True when dimension `da` of tensor `a` and dimension `db` of tensor `b`
/// are provably the same size (both static and equal, or traced to the
/// same source); false when unknown.
bool provablySameSize(Value a, int64_t da, Value b, int64_t db);

} // namespace mlir::moe

#endif // MOE_UTILS_SIZEEQUALITY_H
