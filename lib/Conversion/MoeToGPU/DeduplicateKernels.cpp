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

/// The one kernel function of an outlined module, if that is all it holds.
gpu::GPUFuncOp soleKernel(gpu::GPUModuleOp module) {
  auto functions = module.getOps<gpu::GPUFuncOp>();
  if (!llvm::hasSingleElement(functions) ||
      !llvm::hasSingleElement(module.getBody()->without_terminator()))
    return {};
  return *functions.begin();
}

struct MoeDeduplicateKernelsPass : mlir::moe::impl::MoeDeduplicateKernelsBase<MoeDeduplicateKernelsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    // The kernel's own name follows the function it was outlined from: the
    // same kernel outlined from a shared layer and from its caller differs
    // only there. Compare under one name, restore the names after.
    StringAttr placeholder = StringAttr::get(ctx, "__moe_kernel");
    llvm::DenseMap<Operation *, StringAttr> originalNames;
    for (auto gpuModule : module.getOps<gpu::GPUModuleOp>())
      if (gpu::GPUFuncOp kernel = soleKernel(gpuModule)) {
        originalNames[kernel] = kernel.getNameAttr();
        kernel.setName(placeholder);
      }
    llvm::DenseMap<llvm::hash_code, SmallVector<gpu::GPUModuleOp>> kept;
    llvm::DenseMap<StringAttr, gpu::GPUModuleOp> replacement;
    SmallVector<gpu::GPUModuleOp> duplicates;
    for (auto gpuModule : module.getOps<gpu::GPUModuleOp>()) {
      SmallVector<gpu::GPUModuleOp> &candidates = kept[hashModule(gpuModule)];
      auto same = llvm::find_if(candidates, [&](gpu::GPUModuleOp k) { return sameKernels(k, gpuModule); });
      if (same == candidates.end()) {
        candidates.push_back(gpuModule);
        continue;
      }
      replacement[gpuModule.getNameAttr()] = *same;
      duplicates.push_back(gpuModule);
    }
    for (auto [kernel, name] : originalNames)
      cast<gpu::GPUFuncOp>(kernel).setName(name);
    if (duplicates.empty())
      return;
    module.walk([&](gpu::LaunchFuncOp launch) {
      SymbolRefAttr target = launch.getKernel();
      auto it = replacement.find(target.getRootReference());
      if (it == replacement.end())
        return;
      gpu::GPUModuleOp keptModule = it->second;
      // A sole kernel is launched by its own name; otherwise the names match.
      gpu::GPUFuncOp keptKernel = soleKernel(keptModule);
      SmallVector<FlatSymbolRefAttr> nested(target.getNestedReferences());
      if (keptKernel && nested.size() == 1)
        nested[0] = FlatSymbolRefAttr::get(keptKernel.getNameAttr());
      launch.setKernelAttr(SymbolRefAttr::get(keptModule.getNameAttr(), nested));
    });
    for (gpu::GPUModuleOp duplicate : duplicates)
      duplicate.erase();
  }
};

} // namespace
