//===- CostReport.h - FLOPs, bytes and tokens per expert of moe ops -*- C++ -*-===//
//
// The static cost model behind moe-cost-report (its routing assumption is in
// the pass description, Passes.td), as data: moe-cost-report prints it,
// moe-compile --report writes it as JSON.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TRANSFORMS_COSTREPORT_H
#define MOE_TRANSFORMS_COSTREPORT_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Support/LLVM.h"

#include <string>
#include <vector>

namespace mlir::moe {

struct OpCost {
  double gemmFlops = 0, otherFlops = 0, weightBytes = 0, activationBytes = 0;
  /// Bytes this rank sends to other ranks (expert-parallel exchanges).
  double networkBytes = 0;
};

struct CostRow {
  std::string op;
  int64_t line = 0; // 0: no file location
  OpCost cost;
};

/// What a dispatch is expected to hold under the routing assumption.
struct DispatchEstimate {
  int64_t line = 0;
  double filledSlots = 0;
  int64_t experts = 0;
  double selectionExperts = 0, rowsPerExpert = 0;
};

struct CostTable {
  bool decomposed = false; // moe.layer ops costed as their decomposition
  std::vector<CostRow> rows; // one per moe op; empty: `func` has none
  OpCost total;
  std::vector<DispatchEstimate> dispatches;
};

/// The cost of every moe op of `func`, a dynamic token count taken as
/// `tokens` (> 0). Fails, with an error on the op, where a dynamic size is
/// needed and `tokens` is not positive. Leaves `func` unchanged.
FailureOr<CostTable> computeCostTable(func::FuncOp func, int64_t tokens);

} // namespace mlir::moe

#endif // MOE_TRANSFORMS_COSTREPORT_H
