//===- ResourceLimits.h - the largest models the tools accept ----*- C++ -*-===//
//
// Policy, checked when a model is loaded (moe-run, moe-compile): every
// tensor or memref with a static shape holds at most kMaxTensorBytes, so no
// size or byte offset computed by the compiler or the generated code wraps
// int64. Whether the memory exists is checked where it is allocated:
// moe-run's inputs against the machine's memory, and every allocation of the
// JIT-compiled code (an error and exit status 1 when malloc fails).
// docs/design.md §2.2 lists every limit.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TOOLS_RESOURCELIMITS_H
#define MOE_TOOLS_RESOURCELIMITS_H

#include "mlir/IR/BuiltinOps.h"

#include <cstdint>

namespace mlir::moe {

/// 2^48 bytes (256 TiB): far above any real layer, far below int64.
inline constexpr int64_t kMaxTensorBytes = int64_t(1) << 48;

/// Fails after an error at the first value (op result or block argument)
/// whose static shape holds more than kMaxTensorBytes.
LogicalResult checkTensorSizes(ModuleOp module);

} // namespace mlir::moe

#endif // MOE_TOOLS_RESOURCELIMITS_H
