//===- EntryFunction.h - the function a tool runs or compiles ---*- C++ -*-===//

#ifndef MOE_TOOLS_ENTRYFUNCTION_H
#define MOE_TOOLS_ENTRYFUNCTION_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace mlir::moe {
/// The function named `name`, or with an empty name the module's only public
/// function with a body. On failure `error` says what exists to choose from.
func::FuncOp findEntryFunction(ModuleOp module, StringRef name, StringRef fileName,
                               std::string &error);
} // namespace mlir::moe

#endif // MOE_TOOLS_ENTRYFUNCTION_H
