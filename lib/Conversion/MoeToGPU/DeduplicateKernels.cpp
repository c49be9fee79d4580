//===- DeduplicateKernels.cpp - one gpu.module per distinct kernel --------===//

#include "moe/Conversion/Passes.h"
#include "moe/Utils/RegionEquivalence.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEDEDUPLICATEKERNELS
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// The module's attributes other than its name (targets, ...).
SmallVector<NamedAttribute> attributesButName(gpu::GPUModuleOp module) {
  SmallVector<NamedAttribute> kept;
  for (NamedAttribute attr : module->getAttrs())
    if (attr.getName() != SymbolTable::getSymbolAttrName())
      kept.push_back(attr);
  return kept;
}

llvm::hash_code hashModule(gpu::GPUModuleOp module) {
  return llvm::hash_combine(llvm::hash_combine_range(attributesButName(module)),
                            moe::hashRegionOps(module.getBodyRegion()));
}

bool sameKernels(gpu::GPUModuleOp a, gpu::GPUModuleOp b) {
  return attributesButName(a) == attributesButName(b) &&
         moe::equivalentRegions(a.getBodyRegion(), b.getBodyRegion());
}

struct MoeDeduplicateKernelsPass : mlir::moe::impl::MoeDeduplicateKernelsBase<MoeDeduplicateKernelsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    llvm::DenseMap<llvm::hash_code, SmallVector<gpu::GPUModuleOp>> kept;
    llvm::DenseMap<StringAttr, StringAttr> replacement;
    SmallVector<gpu::GPUModuleOp> duplicates;
    for (auto gpuModule : module.getOps<gpu::GPUModuleOp>()) {
      SmallVector<gpu::GPUModuleOp> &candidates = kept[hashModule(gpuModule)];
      auto same = llvm::find_if(candidates, [&](gpu::GPUModuleOp k) { return sameKernels(k, gpuModule); });
      if (same == candidates.end()) {
        candidates.push_back(gpuModule);
        continue;
      }
      replacement[gpuModule.getNameAttr()] = same->getNameAttr();
      duplicates.push_back(gpuModule);
    }
    if (duplicates.empty())
      return;
    module.walk([&](gpu::LaunchFuncOp launch) {
      SymbolRefAttr kernel = launch.getKernel();
      auto it = replacement.find(kernel.getRootReference());
      if (it != replacement.end())
        launch.setKernelAttr(SymbolRefAttr::get(it->second, kernel.getNestedReferences()));
    });
    for (gpu::GPUModuleOp duplicate : duplicates)
      duplicate.erase();
  }
};

} // namespace
