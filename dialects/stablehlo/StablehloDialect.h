//===- StablehloDialect.h - the StableHLO and CHLO op subsets ---*- C++ -*-===//

#ifndef DIALECTS_STABLEHLO_STABLEHLODIALECT_H
#define DIALECTS_STABLEHLO_STABLEHLODIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/stablehlo/StablehloDialect.h.inc"
#include "dialects/stablehlo/StablehloEnums.h.inc"
#define GET_ATTRDEF_CLASSES
#include "dialects/stablehlo/StablehloAttrs.h.inc"
#define GET_OP_CLASSES
#include "dialects/stablehlo/StablehloOps.h.inc"

#include "dialects/stablehlo/ChloDialect.h.inc"
#include "dialects/stablehlo/ChloEnums.h.inc"
#define GET_ATTRDEF_CLASSES
#include "dialects/stablehlo/ChloAttrs.h.inc"
#define GET_OP_CLASSES
#include "dialects/stablehlo/ChloOps.h.inc"

#endif // DIALECTS_STABLEHLO_STABLEHLODIALECT_H
