//===- StablehloDialect.cpp - registration of the stablehlo and chlo dialects ===//

#include "dialects/stablehlo/StablehloDialect.h"
#include "dialects/stablehlo/AssemblyDirectives.h"
#include "dialects/stablehlo/InlineEverything.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe;

#include "dialects/stablehlo/StablehloDialect.cpp.inc"
#include "dialects/stablehlo/StablehloEnums.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "dialects/stablehlo/StablehloAttrs.cpp.inc"



void stablehlo::StablehloDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/stablehlo/StablehloOps.cpp.inc"
      >();
  registerAttributes();
  addInterfaces<InlineEverything>();
}

void stablehlo::StablehloDialect::registerAttributes() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/stablehlo/StablehloAttrs.cpp.inc"
      >();
}

