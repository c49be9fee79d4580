//===- EntryFunction.cpp - the function a tool runs or compiles -----------===//

#include "moe/Tools/EntryFunction.h"

#include "llvm/ADT/StringExtras.h"

using namespace mlir;

func::FuncOp mlir::moe::findEntryFunction(ModuleOp module, StringRef name, StringRef fileName,
                                          std::string &error) {
  SmallVector<std::string> publicNames;
  for (auto f : module.getOps<func::FuncOp>())
    if (!f.isExternal() && f.isPublic())
      publicNames.push_back(f.getName().str());
  if (!name.empty()) {
    auto entry = module.lookupSymbol<func::FuncOp>(name);
    if (entry && !entry.isExternal())
      return entry;
    error = ("no function @" + name + " in " + fileName + " (functions: " +
             llvm::join(publicNames, ", ") + ")")
                .str();
    return nullptr;
  }
  if (publicNames.size() == 1)
    return module.lookupSymbol<func::FuncOp>(publicNames.front());
  error = "pick the function to run with --entry (functions: " + llvm::join(publicNames, ", ") + ")";
  return nullptr;
}
