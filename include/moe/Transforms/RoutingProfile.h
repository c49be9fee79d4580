//===- RoutingProfile.h - the experts each layer's tokens pick --*- C++ -*-===//
//
// moe-run --routing-profile measures which experts the tokens of sample
// inputs pick in each layer (the loads moe-shard-experts balances): the
// program is given one more result per layer, that layer's routing.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TRANSFORMS_ROUTINGPROFILE_H
#define MOE_TRANSFORMS_ROUTINGPROFILE_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Support/LLVM.h"

namespace mlir::moe {

/// Appends to `function`'s results, for each of its moe.layer ops in
/// order, the expert ids its routing selects (i32 [rows, k]; -1 for an
/// empty slot), and returns each layer's number of FFN experts. Fails,
/// with an error on the op, for a layer inside a region (a loop body),
/// whose ids have no single value to return.
FailureOr<SmallVector<int64_t>> appendRoutingResults(func::FuncOp function);

} // namespace mlir::moe

#endif // MOE_TRANSFORMS_ROUTINGPROFILE_H
