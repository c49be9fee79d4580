//===- CpuTarget.cpp - the CPU the generated host code is tuned for -------===//

#include "moe/Tools/CpuTarget.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/Analysis/CGSCCPassManager.h"
#include "llvm/Analysis/LoopAnalysisManager.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/PassManager.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/CodeGen.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/Triple.h"

using namespace mlir;

std::unique_ptr<llvm::TargetMachine> moe::createCpuTargetMachine(llvm::StringRef cpu, std::string &error) {
  llvm::Triple triple(llvm::sys::getDefaultTargetTriple());
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return nullptr;
  std::string name = cpu.str(), features;
  if (cpu == "host") {
    name = llvm::sys::getHostCPUName().str();
    llvm::StringMap<bool> host = llvm::sys::getHostCPUFeatures();
    for (const auto &feature : host)
      features += (features.empty() ? "" : ",") + std::string(feature.getValue() ? "+" : "-") +
                  feature.getKey().str();
  }
  // LLVM accepts an unknown CPU name with a warning and then uses no features.
  std::unique_ptr<llvm::MCSubtargetInfo> generic(target->createMCSubtargetInfo(triple, "", ""));
  if (!generic || !generic->isCPUStringValid(name)) {
    error = "unknown CPU '" + name + "' for " + triple.str() + " (try host, x86-64, x86-64-v3, x86-64-v4)";
    return nullptr;
  }
  std::unique_ptr<llvm::TargetMachine> machine(target->createTargetMachine(
      triple, name, features, llvm::TargetOptions(), llvm::Reloc::PIC_, std::nullopt,
      llvm::CodeGenOptLevel::Aggressive));
  if (!machine) {
    error = "cannot create a target machine for CPU '" + name + "'";
    return nullptr;
  }
  return machine;
}

unsigned moe::preferredVectorBits(const llvm::TargetMachine &machine) {
  const llvm::MCSubtargetInfo *info = machine.getMCSubtargetInfo();
  if (info->checkFeatures("+avx512f"))
    return 512;
  if (info->checkFeatures("+avx2"))
    return 256;
  return 128;
}

bool moe::hasBf16DotProducts(const llvm::TargetMachine &machine) {
  return machine.getMCSubtargetInfo()->checkFeatures("+avx512bf16");
}

std::vector<std::string> moe::runtimeCheckableFeatures(const llvm::TargetMachine &machine) {
  if (!machine.getTargetTriple().isX86())
    return {};
  // Names both GCC's and Clang's __builtin_cpu_supports know.
  static const char *const kFeatures[] = {
      "popcnt",     "sse4.1",     "sse4.2",     "avx",        "avx2",         "fma",
      "f16c",       "bmi",        "bmi2",       "avx512f",    "avx512vl",     "avx512bw",
      "avx512dq",   "avx512cd",   "avx512vnni", "avx512bf16", "avx512vbmi",   "avx512ifma",
      "avx512vbmi2", "avx512bitalg", "avx512vpopcntdq"};
  std::vector<std::string> needed;
  const llvm::MCSubtargetInfo *info = machine.getMCSubtargetInfo();
  for (const char *feature : kFeatures)
    if (info->checkFeatures(std::string("+") + feature))
      needed.push_back(feature);
  return needed;
}

llvm::Error moe::optimizeHostModule(llvm::Module &module, llvm::TargetMachine *machine) {
  llvm::PipelineTuningOptions tuning;
  tuning.LoopUnrolling = false;
  tuning.LoopInterleaving = true;
  tuning.LoopVectorization = true;
  tuning.SLPVectorization = true;
  llvm::LoopAnalysisManager loops;
  llvm::FunctionAnalysisManager functions;
  llvm::CGSCCAnalysisManager sccs;
  llvm::ModuleAnalysisManager modules;
  llvm::PassBuilder builder(machine, tuning);
  builder.registerModuleAnalyses(modules);
  builder.registerCGSCCAnalyses(sccs);
  builder.registerFunctionAnalyses(functions);
  builder.registerLoopAnalyses(loops);
  builder.crossRegisterProxies(loops, functions, sccs, modules);
  builder.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3).run(module, modules);
  return llvm::Error::success();
}
