//===- CachedModuleToBinary.cpp - gpu.module -> gpu.binary, cached --------===//

#include "moe/Conversion/Passes.h"
#include "moe/Utils/CompileCache.h"

#include "mlir/AsmParser/AsmParser.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/IR/Threading.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <cstdlib>

extern "C" void LLVMInitializeNVPTXTargetInfo();
extern "C" void LLVMInitializeNVPTXTargetMC();

namespace mlir::moe {
#define GEN_PASS_DEF_MOEGPUMODULETOBINARY
#include "moe/Conversion/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;

namespace {

/// The ptxas a compile would run: its path, size and modification time.
std::string ptxasIdentity() {
  for (const char *name : {"CUDA_ROOT", "CUDA_HOME", "CUDA_PATH"}) {
    const char *root = std::getenv(name);
    if (!root || !*root)
      continue;
    llvm::SmallString<128> path(root);
    llvm::sys::path::append(path, "bin", "ptxas");
    llvm::sys::fs::file_status status;
    if (llvm::sys::fs::status(path, status))
      continue;
    return (path + " " + llvm::Twine(status.getSize()) + " " +
            llvm::Twine(status.getLastModificationTime().time_since_epoch().count()))
        .str();
  }
  return "ptxas on PATH";
}

/// What determines a module's binary, without its symbol name (the name of
/// the module is not in the cubin; the same kernel in another program hits).
std::string moduleKey(gpu::GPUModuleOp module, StringRef format, StringRef ptxas) {
  std::string targets;
  llvm::raw_string_ostream targetsOs(targets);
  if (ArrayAttr attr = module.getTargetsAttr())
    attr.print(targetsOs);
  return moe::CompileCache::key({"gpu.module", format, ptxas, targets}, [&](llvm::raw_ostream &os) {
    OpPrintingFlags flags;
    flags.printGenericOpForm();
    for (Operation &op : module.getBody()->getOperations())
      op.print(os, flags);
  });
}

/// LLVM's NVPTX back end knows the chip: an unknown one would make it fall
/// back to the oldest processor and fail inside instruction selection.
/// Called before the modules compile on several threads: LLVM's target
/// registration is not thread-safe.
bool isKnownChip(NVVM::NVVMTargetAttr target) {
  static const bool registered = [] {
    LLVMInitializeNVPTXTargetInfo();
    LLVMInitializeNVPTXTargetMC();
    return true;
  }();
  (void)registered;
  std::string error;
  llvm::Triple triple(target.getTriple());
  const llvm::Target *nvptx = llvm::TargetRegistry::lookupTarget(triple, error);
  if (!nvptx)
    return true; // no NVPTX back end: compiling reports that
  // Asked about a known chip, so that LLVM prints no warning of its own.
  std::unique_ptr<llvm::MCSubtargetInfo> info(nvptx->createMCSubtargetInfo(triple, "sm_80", ""));
  return info && info->isCPUStringValid(target.getChip());
}

/// An error for the first NVVM target of `module` whose chip LLVM does not know.
LogicalResult checkChips(ModuleOp module) {
  llvm::DenseSet<Attribute> checked; // every kernel module names the same target
  for (auto gpuModule : module.getOps<gpu::GPUModuleOp>()) {
    if (!gpuModule.getTargetsAttr())
      continue;
    for (Attribute attr : gpuModule.getTargetsAttr()) {
      auto nvvm = dyn_cast<NVVM::NVVMTargetAttr>(attr);
      if (nvvm && checked.insert(attr).second && !isKnownChip(nvvm))
        return module.emitError("unknown NVIDIA chip '")
               << nvvm.getChip() << "' (expected an LLVM NVPTX processor such as sm_80, sm_90 or sm_90a)";
    }
  }
  return success();
}

/// The objects of `module`, one per target it names.
LogicalResult compileModule(gpu::GPUModuleOp module, const gpu::TargetOptions &options,
                            SmallVector<Attribute> &objects) {
  if (!module.getTargetsAttr())
    return module.emitError("the module has no target attributes");
  for (Attribute attr : module.getTargetsAttr()) {
    auto target = dyn_cast<gpu::TargetAttrInterface>(attr);
    if (!target)
      return module.emitError("target ") << attr << " cannot compile a module";
    std::optional<SmallVector<char, 0>> serialized = target.serializeToObject(module, options);
    if (!serialized)
      return module.emitError("compiling the module for ") << attr << " failed";
    Attribute object = target.createObject(module, *serialized, options);
    if (!object)
      return module.emitError("packaging the module compiled for ") << attr << " failed";
    objects.push_back(object);
  }
  return success();
}

/// `binary`'s objects without the compile-time measurements upstream
/// records in their properties: the same kernel, compiled now or taken from
/// the cache, gives the same program text.
void dropTimings(gpu::BinaryOp binary) {
  SmallVector<Attribute> objects;
  for (Attribute attr : binary.getObjectsAttr()) {
    auto object = dyn_cast<gpu::ObjectAttr>(attr);
    DictionaryAttr properties = object ? object.getProperties() : DictionaryAttr();
    if (!properties) {
      objects.push_back(attr);
      continue;
    }
    SmallVector<NamedAttribute> kept;
    for (NamedAttribute entry : properties)
      if (!entry.getName().getValue().ends_with("TimeInMs"))
        kept.push_back(entry);
    DictionaryAttr keptProperties = kept.empty() ? DictionaryAttr() : DictionaryAttr::get(binary.getContext(), kept);
    objects.push_back(gpu::ObjectAttr::get(binary.getContext(), object.getTarget(), object.getFormat(),
                                           object.getObject(), keptProperties, object.getKernels()));
  }
  binary.setObjectsAttr(ArrayAttr::get(binary.getContext(), objects));
}

struct MoeGpuModuleToBinaryPass
    : mlir::moe::impl::MoeGpuModuleToBinaryBase<MoeGpuModuleToBinaryPass> {
  using MoeGpuModuleToBinaryBase::MoeGpuModuleToBinaryBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    std::optional<gpu::CompilationTarget> target =
        llvm::StringSwitch<std::optional<gpu::CompilationTarget>>(format)
            .Case("bin", gpu::CompilationTarget::Binary)
            .Case("isa", gpu::CompilationTarget::Assembly)
            .Case("fatbin", gpu::CompilationTarget::Fatbin)
            .Default(std::nullopt);
    if (!target) {
      module.emitError() << "moe-gpu-module-to-binary: format must be bin, isa or fatbin, not '" << format
                         << "'";
      return signalPassFailure();
    }
    if (failed(checkChips(module)))
      return signalPassFailure();
    moe::CompileCache cache(cacheDir);
    SmallVector<std::pair<std::string, std::string>> missed; // symbol, key
    if (cache.enabled()) {
      std::string ptxas = ptxasIdentity();
      OpBuilder builder(&getContext());
      for (auto gpuModule : llvm::make_early_inc_range(module.getOps<gpu::GPUModuleOp>())) {
        std::string key = moduleKey(gpuModule, format, ptxas);
        std::optional<std::string> stored = cache.lookup("gpu-binary", key);
        auto objects = stored ? dyn_cast_or_null<ArrayAttr>(parseAttribute(*stored, &getContext())) : ArrayAttr();
        if (!objects) {
          missed.push_back({gpuModule.getName().str(), key});
          continue;
        }
        builder.setInsertionPoint(gpuModule);
        gpu::BinaryOp::create(builder, gpuModule.getLoc(), gpuModule.getName(),
                              gpuModule.getOffloadingHandlerAttr(), objects);
        gpuModule.erase();
        ++cacheHits;
      }
    }
    // The rest, as gpu-module-to-binary compiles them, on the context's
    // threads: each kernel is translated in its own LLVM context and
    // assembled by its own ptxas process. The program changes only after.
    SymbolTable symbols(module);
    gpu::TargetOptions options({}, {}, {}, {}, *target, [&]() -> SymbolTable * { return &symbols; });
    SmallVector<gpu::GPUModuleOp> pending(module.getOps<gpu::GPUModuleOp>());
    SmallVector<SmallVector<Attribute>> objects(pending.size());
    if (failed(failableParallelForEachN(&getContext(), 0, pending.size(), [&](size_t i) {
          return compileModule(pending[i], options, objects[i]);
        })))
      return signalPassFailure();
    OpBuilder builder(&getContext());
    for (auto [gpuModule, moduleObjects] : llvm::zip(pending, objects)) {
      builder.setInsertionPointAfter(gpuModule);
      gpu::BinaryOp::create(builder, gpuModule.getLoc(), gpuModule.getName(), gpuModule.getOffloadingHandlerAttr(),
                            builder.getArrayAttr(moduleObjects));
      gpuModule.erase();
    }
    for (auto binary : module.getOps<gpu::BinaryOp>())
      dropTimings(binary);
    for (auto &[name, key] : missed) {
      auto binary = module.lookupSymbol<gpu::BinaryOp>(name);
      if (!binary)
        continue;
      std::string text;
      llvm::raw_string_ostream os(text);
      binary.getObjectsAttr().print(os);
      cache.store("gpu-binary", key, text);
      ++compiled;
    }
    if (cache.enabled())
      // On the location only: the module itself is not part of the message.
      emitRemark(module.getLoc()) << "kernel cache " << cache.path() << ": " << cache.hits << " kernels reused, "
                          << missed.size() << " compiled"
                          << (cache.rejected ? " (" + llvm::Twine(cache.rejected) + " corrupted entries rebuilt)"
                                             : llvm::Twine(""))
                          << (cache.storeFailures ? ", " + llvm::Twine(cache.storeFailures) + " not stored"
                                                  : llvm::Twine(""));
  }
};

} // namespace
