//===- CpuTarget.cpp - the CPU the generated host code is tuned for -------===//

#include "moe/Tools/CpuTarget.h"

#include "llvm/ADT/SCCIterator.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Analysis/CGSCCPassManager.h"
#include "llvm/Analysis/LoopAnalysisManager.h"
#include "llvm/IR/CFG.h"
#include "llvm/IR/InstIterator.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/PassManager.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Passes/StandardInstrumentations.h"
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

namespace {

/// A function passing more call arguments than this (a call per layer with
/// every buffer's pointers and sizes) is compiled without optimisation.
constexpr unsigned kDispatcherCallArguments = 400;

bool hasLoop(llvm::Function &function) {
  for (auto scc = llvm::scc_begin(&function); !scc.isAtEnd(); ++scc)
    if (scc.hasCycle())
      return true;
  return false;
}

unsigned callArguments(llvm::Function &function) {
  unsigned arguments = 0;
  for (llvm::Instruction &instruction : llvm::instructions(function))
    if (auto *call = llvm::dyn_cast<llvm::CallBase>(&instruction))
      if (llvm::Function *callee = call->getCalledFunction(); !callee || !callee->isIntrinsic())
        arguments += call->arg_size();
  return arguments;
}

/// A deep model's entry function and its C wrapper are mostly calls (one
/// per layer, each passing every buffer as pointers and sizes), run once per
/// forward pass: optimising and scheduling them cost more than the layers'
/// code (the post-RA scheduler is quadratic in a block's length: 0.75 s of
/// 1.5 s for 61 DeepSeek-V3 layers), and their run time is that of the
/// calls. A function with a loop keeps its optimisation: the loop may be
/// real work (an imported model's embedding or output projection).
void leaveDispatchersUnoptimized(llvm::Module &module) {
  for (llvm::Function &function : module)
    if (!function.isDeclaration() && callArguments(function) > kDispatcherCallArguments && !hasLoop(function)) {
      function.addFnAttr(llvm::Attribute::OptimizeNone);
      function.addFnAttr(llvm::Attribute::NoInline);
    }
}

} // namespace

llvm::Error moe::optimizeHostModule(llvm::Module &module, llvm::TargetMachine *machine) {
  leaveDispatchersUnoptimized(module);
  llvm::PipelineTuningOptions tuning;
  tuning.LoopUnrolling = false;
  tuning.LoopInterleaving = true;
  tuning.LoopVectorization = true;
  tuning.SLPVectorization = true;
  llvm::LoopAnalysisManager loops;
  llvm::FunctionAnalysisManager functions;
  llvm::CGSCCAnalysisManager sccs;
  llvm::ModuleAnalysisManager modules;
  // The new pass manager skips a pass only when an instrumentation says so:
  // optnone functions (above), and CalledValuePropagation, which only
  // annotates indirect calls (the host code has none of its own) and is
  // quadratic in the arguments of a call with thousands of them (0.3 s for a
  // 61-layer entry function).
  llvm::PassInstrumentationCallbacks instrumentation;
  llvm::OptNoneInstrumentation optNone(/*DebugLogging=*/false);
  optNone.registerCallbacks(instrumentation);
  instrumentation.registerShouldRunOptionalPassCallback(
      [](llvm::StringRef pass, llvm::Any) { return pass != "CalledValuePropagationPass"; });
  llvm::PassBuilder builder(machine, tuning, std::nullopt, &instrumentation);
  builder.registerModuleAnalyses(modules);
  builder.registerCGSCCAnalyses(sccs);
  builder.registerFunctionAnalyses(functions);
  builder.registerLoopAnalyses(loops);
  builder.crossRegisterProxies(loops, functions, sccs, modules);
  builder.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3).run(module, modules);
  return llvm::Error::success();
}
