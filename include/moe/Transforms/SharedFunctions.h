//===- SharedFunctions.h - equal op groups as calls of one function -*- C++ -*-===//
//
// moe-share-layers (each MoE layer) and moe-share-blocks (each repeated
// transformer block around it) both find groups of ops in a block, outline
// each as a private function, and replace the groups that compute the same
// thing by calls of one function: the later passes see each distinct
// computation once.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TRANSFORMS_SHAREDFUNCTIONS_H
#define MOE_TRANSFORMS_SHAREDFUNCTIONS_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/ADT/SmallPtrSet.h"

#include <vector>

namespace mlir::moe {

/// Ops of one block to replace by a call, in block order. No value computed
/// from the group's results may feed the group (no path leaves and re-enters
/// it): the call takes the place of the first op.
struct OutlineCandidate {
  SmallVector<Operation *> ops;
  /// One use of each input inside the group: replacing an earlier group by
  /// a call changes the values a later one reads, not its ops.
  SmallVector<OpOperand *> inputs;
  SmallVector<Value> outputs;
  /// Small constants copied into the function (their values take part in
  /// the comparison); larger ones (weights) become arguments.
  SmallVector<Value> inlinedConstants;
  /// Empty or filled tensors the ops write into, copied into the function
  /// (in block order) instead of passed to it.
  SmallVector<Operation *> freshTensors;
  /// The function holding the ops, and the outlined copy of them.
  func::FuncOp parent, function;
};

/// The uses by which `op` (or an op nested in it) reads a value defined
/// outside it: operands and captures.
SmallVector<OpOperand *> usesFromOutside(Operation *op);

/// Fills `candidate`'s inputs, outputs and inlined constants from its ops.
void describeBoundary(OutlineCandidate &candidate, Block *block);

/// Outlines every candidate (next to `parent`, named `<parent><suffix>`),
/// groups equal computations and replaces each group of two or more by calls
/// of one function marked `moe.shared_layer`; the others stay inline.
/// Returns the number of shared functions and of calls made.
std::pair<unsigned, unsigned> shareEqualCandidates(std::vector<OutlineCandidate> &candidates,
                                                   SymbolTable &symbols, StringRef suffix);

} // namespace mlir::moe

#endif // MOE_TRANSFORMS_SHAREDFUNCTIONS_H
