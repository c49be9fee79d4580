//===- MoeDialect.cpp - moe dialect registration --------------------------===//

#include "dialects/moe/MoeDialect.h"
#include "dialects/moe/MoeAttrs.h"
#include "dialects/moe/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/Interfaces/DestinationStyleOpInterface.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe;

#include "dialects/moe/MoeDialect.cpp.inc"

void MoeDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/moe/MoeOps.cpp.inc"
      >();
  registerAttributes();
}

/// Where each discardable attribute may sit: the op it marks (by name, so
/// the IR layer needs no upstream dialect) and, for linalg.generic, the
/// operand counts the GPU passes rely on (-1: any).
namespace {
struct AttributePlace {
  StringRef attr;
  /// The ops that may carry it, as the message names them.
  ArrayRef<StringRef> ops;
  StringRef opsText;
  int64_t inputs, inits;
};
} // namespace

bool mlir::moe::callsSharedFunction(Operation *op) {
  auto call = dyn_cast<func::CallOp>(op);
  if (!call)
    return false;
  auto callee = SymbolTable::lookupNearestSymbolFrom<func::FuncOp>(call, call.getCalleeAttr());
  return callee && !callee.isExternal() && callee->hasAttr(kSharedLayerAttrName);
}

bool mlir::moe::isRuntimeCheckCall(Operation *op) {
  auto call = dyn_cast<func::CallOp>(op);
  return call && call->hasAttr(kHostCallAttrName) && call.getCallee().starts_with("moeRuntimeCheck") &&
         call->getNumResults() == 0;
}

LogicalResult MoeDialect::verifyOperationAttribute(Operation *op, NamedAttribute attr) {
  static const StringRef loop[] = {"scf.for"}, generic[] = {"linalg.generic"},
                         call[] = {"func.call", "llvm.call"},
                         function[] = {"func.func", "llvm.func"};
  // A host call keeps its mark through func-to-llvm: the launch outlining
  // reads it after the conversion.
  static const AttributePlace places[] = {
      {kParallelLoopAttrName, loop, "an scf.for", -1, -1},
      {kGroupedGemmAttrName, generic, "a linalg.generic", 2, 1},
      {kRowScaleAttrName, generic, "a linalg.generic", 2, 1},
      {kRowExpertsAttrName, generic, "a linalg.generic", -1, 1},
      {kHostCallAttrName, call, "a func.call or llvm.call", -1, -1},
      {kSharedLayerAttrName, function, "a func.func or llvm.func", -1, -1},
  };
  StringRef name = attr.getName().getValue();
  const AttributePlace *place = llvm::find_if(places, [&](const AttributePlace &p) { return p.attr == name; });
  if (place == std::end(places))
    return op->emitOpError() << "has unknown moe attribute '" << name
                             << "' (moe.parallel, moe.grouped_gemm, moe.row_scale, moe.row_experts, "
                                "moe.host_call and moe.shared_layer are the dialect's discardable "
                                "attributes)";
  if (!isa<UnitAttr>(attr.getValue()))
    return op->emitOpError() << "'" << name << "' must be a unit attribute";
  if (!llvm::is_contained(place->ops, op->getName().getStringRef()))
    return op->emitOpError() << "cannot carry '" << name << "': it marks " << place->opsText;
  if (place->inputs < 0 && place->inits < 0)
    return success();
  auto dps = dyn_cast<DestinationStyleOpInterface>(op);
  if (!dps || (place->inputs >= 0 && dps.getNumDpsInputs() != place->inputs) ||
      (place->inits >= 0 && dps.getNumDpsInits() != place->inits)) {
    InFlightDiagnostic diag = op->emitOpError() << "with '" << name << "' must have ";
    if (place->inputs >= 0)
      diag << place->inputs << " inputs and ";
    return diag << place->inits << " output";
  }
  return success();
}
