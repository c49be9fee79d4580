//===- MoeOps.h - moe operations --------------------------------*- C++ -*-===//

#ifndef DIALECTS_MOE_MOEOPS_H
#define DIALECTS_MOE_MOEOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/moe/MoeAttrs.h"
#include "dialects/moe/MoeDialect.h"

#define GET_OP_CLASSES
#include "dialects/moe/MoeOps.h.inc"

#endif // DIALECTS_MOE_MOEOPS_H
