//===- moe-compile.cpp - ahead-of-time compilation to a shared library -----===//
//
// Compiles one function of an MLIR file (moe ops and upstream ops) into a
// self-contained shared library: the host code as a native object, the
// kernels (GPU target) as cubins embedded in it, and a small C API
// (tools/moe-compile/ArtifactWrapper.h). The library needs only
// libmoe_runtime.so at run time: no LLVM, MLIR or CUDA toolkit. moe-exec
// loads and runs it.
//
//===----------------------------------------------------------------------===//

#include "ArtifactWrapper.h"
#include "CompileReport.h"
#include "moe/Tools/LoadModule.h"
#include "moe/Tools/EntryFunction.h"
#include "moe/Tools/CpuTarget.h"
#include "moe/InitAll.h"
#include "moe/Tools/CudaToolkit.h"
#include "moe/Pipelines/Pipelines.h"
#include "moe/Utils/CompileCache.h"
#include "moe/Tools/ExpertParallelOptions.h"
#include "moe/Tools/RaisingCheck.h"

#include "dialects/moe/MoeDialect.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/ThreadPool.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Host.h"

#include <chrono>
#include <cmath>
#include <functional>

using namespace mlir;
namespace cl = llvm::cl;

static cl::OptionCategory category("moe-compile options");
static cl::opt<std::string> inputFile(cl::Positional, cl::desc("<input .mlir (moe or JAX StableHLO) or .onnx file>"), cl::Required,
                                      cl::cat(category));
static cl::opt<std::string> outputFile("o", cl::desc("The shared library to write (lib<name>.so); "
                                                     "its C header goes next to it (.h)"),
                                       cl::value_desc("path"), cl::Required, cl::cat(category));
static cl::opt<std::string> entryName("entry", cl::desc("Function to compile (default: the only public one)"),
                                      cl::cat(category));
static cl::opt<std::string> target("target", cl::desc("cpu (the host) or gpu (NVIDIA, through ptxas)"),
                                   cl::init("cpu"), cl::cat(category));
static cl::opt<std::string> cpu("cpu",
                                cl::desc("CPU the host code is compiled for: host (this machine, every feature it "
                                         "has; the default) or an LLVM CPU name such as x86-64-v3 or x86-64-v4 "
                                         "for an artifact that runs on other machines. The artifact refuses to "
                                         "run on a CPU that lacks the features it was compiled for"),
                                cl::init("host"), cl::cat(category));
static cl::opt<std::string> chip("chip", cl::desc("GPU to compile for (sm_80, sm_90, ...)"),
                                 cl::init("sm_90"), cl::cat(category));
static cl::opt<std::string> features("features", cl::desc("PTX features of the GPU code"),
                                     cl::init("+ptx80"), cl::cat(category));
static cl::opt<std::string> gpuFormat("gpu-format",
                                      cl::desc("bin (cubin), isa (PTX, JIT-compiled by the driver) or fatbin"),
                                      cl::init("bin"), cl::cat(category));
static cl::opt<bool> wgmma("wgmma",
                           cl::desc("Hopper tensor-core kernels for the grouped GEMMs (TMA loads, "
                                    "mbarrier pipeline, wgmma); needs --chip=sm_90a"),
                           cl::init(false), cl::cat(category));
static cl::opt<bool> optimize("optimize", cl::desc("Run moe-optimize before lowering"), cl::init(true),
                              cl::cat(category));
static cl::opt<bool> shareLayers(
    "share-layers",
    cl::desc("Compile identical MoE layers once, as calls of one shared function (default: on; "
             "--share-layers=false compiles every layer separately; results are identical)"),
    cl::init(true), cl::cat(category));
static cl::opt<int64_t> weightsAsInputs(
    "weights-as-inputs",
    cl::desc("ONNX: float and 8-bit integer (quantised weight) initializers of at least this many bytes "
             "become inputs of the artifact (after the graph inputs) instead of data compiled into it; 0 "
             "makes every one an input (default: none)"),
    cl::init(-1), cl::cat(category));
static cl::opt<std::string> weightsDir("weights-dir",
                                       cl::desc("ONNX: write the initializers made inputs here as <name>.npy"),
                                       cl::cat(category));
static cl::opt<std::string> cacheDir(
    "cache-dir",
    cl::desc("Directory of compiled code reused across compiles: whole programs (their object, "
             "keyed by the imported IR and every option) and GPU kernels (keyed by their IR, chip, "
             "features, format and ptxas), both also by this compiler's own executable. "
             "Default: $MOE_CACHE_DIR, else $XDG_CACHE_HOME/moe-compiler, else "
             "~/.cache/moe-compiler; an empty MOE_CACHE_DIR turns it off"),
    cl::value_desc("dir"), cl::cat(category));
static cl::opt<bool> noCache("no-cache", cl::desc("Compile everything, read and write no cache"),
                             cl::init(false), cl::cat(category));
static cl::opt<unsigned> jobs(
    "jobs",
    cl::desc("Threads for the compilation (functions lowered and GPU kernels compiled in "
             "parallel); 0: one per core (default), 1: none"),
    cl::init(0), cl::cat(category));
static cl::opt<bool> keepTemps("keep-temps",
                               cl::desc("Keep the object and the C wrapper next to the output"),
                               cl::init(false), cl::cat(category));

static mlir::moe::ExpertParallelFlags expertParallelFlags(category);
static mlir::moe::RaisingFlags raisingFlags(category);

static cl::opt<std::string> reportFile(
    "report",
    cl::desc("Write what was compiled as JSON to this file, also when compilation fails: the "
             "diagnostics with their locations, the signature, the recognised MoE layers, the cost "
             "model's table and the timings (schema: docs/python.md)"),
    cl::value_desc("file.json"), cl::cat(category));
static cl::opt<int64_t> costTokens("cost-tokens",
                                   cl::desc("Token count the --report cost table assumes where the "
                                            "token dimension is dynamic (default 256)"),
                                   cl::init(256), cl::cat(category));

/// What --report writes.
static artifact::CompileReport report;

static int failWith(const llvm::Twine &message) {
  llvm::errs() << "moe-compile: error: " << message << "\n";
  report.error(message.str());
  return 1;
}

static double msSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

/// The buffer a tensor (or memref) argument or result becomes.
static std::optional<artifact::BufferSignature> bufferOf(Type type, std::string name) {
  auto shaped = dyn_cast<ShapedType>(type);
  if (!shaped || !shaped.hasRank() || !isa<RankedTensorType, MemRefType>(type))
    return std::nullopt;
  Type element = shaped.getElementType();
  std::string dtype;
  llvm::raw_string_ostream os(dtype);
  element.print(os);
  std::optional<npy::DType> known = npy::fromMlirName(dtype);
  if (!known)
    return std::nullopt;
  artifact::BufferSignature spec;
  spec.name = std::move(name);
  spec.type = *known;
  for (int64_t d : shaped.getShape())
    spec.shape.push_back(ShapedType::isDynamic(d) ? -1 : d);
  return spec;
}

/// What the lowering made of the program's layers: shared layer functions
/// (moe-share-layers), the shared blocks around them that call them
/// (moe-share-blocks), and GPU kernels.
static std::string loweredSummary(ModuleOp module) {
  // Calls made by each function (C-interface wrappers aside: they forward
  // the call of the function they wrap).
  llvm::StringMap<SmallVector<StringRef>> callees;
  module.walk([&](LLVM::CallOp call) {
    auto caller = call->getParentOfType<LLVM::LLVMFuncOp>();
    if (std::optional<StringRef> callee = call.getCallee(); callee && !caller.getName().starts_with("_mlir_ciface_"))
      callees[caller.getName()].push_back(*callee);
  });
  llvm::StringSet<> shared;
  for (auto function : module.getOps<LLVM::LLVMFuncOp>())
    if (function->hasAttr(mlir::moe::kSharedLayerAttrName) && !function.getName().starts_with("_mlir_ciface_"))
      shared.insert(function.getName());
  // A block calls a shared function; a layer does not.
  auto isBlock = [&](StringRef function) {
    return llvm::any_of(callees.lookup(function), [&](StringRef callee) { return shared.contains(callee); });
  };
  // Layers run per call of `function`.
  std::function<unsigned(StringRef)> layersRun = [&](StringRef function) {
    unsigned layers = 0;
    for (StringRef callee : callees.lookup(function))
      if (shared.contains(callee))
        layers += isBlock(callee) ? layersRun(callee) : 1;
    return layers;
  };
  unsigned layerFunctions = 0, blockFunctions = 0, layerCalls = 0, blockCalls = 0;
  for (const auto &function : shared)
    ++(isBlock(function.getKey()) ? blockFunctions : layerFunctions);
  for (auto function : module.getOps<LLVM::LLVMFuncOp>()) {
    StringRef name = function.getName();
    if (shared.contains(name) || name.starts_with("_mlir_ciface_"))
      continue;
    layerCalls += layersRun(name);
    blockCalls += llvm::count_if(callees.lookup(name),
                                 [&](StringRef callee) { return shared.contains(callee) && isBlock(callee); });
  }
  auto binaries = module.getOps<gpu::BinaryOp>();
  unsigned kernels = std::distance(binaries.begin(), binaries.end());
  report.sharedFunctions = layerFunctions;
  report.layerCalls = layerCalls;
  report.blockFunctions = blockFunctions;
  report.blockCalls = blockCalls;
  report.gpuKernels = kernels;
  SmallVector<std::string> parts;
  auto plural = [](unsigned n, StringRef word) { return llvm::formatv("{0} {1}{2}", n, word, n == 1 ? "" : "s").str(); };
  if (layerFunctions)
    parts.push_back(plural(layerCalls, "layer") + " as calls of " + plural(layerFunctions, "shared function"));
  if (blockFunctions)
    parts.push_back(plural(blockCalls, "block") + " around them as calls of " + plural(blockFunctions, "shared function"));
  if (kernels)
    parts.push_back(plural(kernels, "distinct GPU kernel"));
  return parts.empty() ? "" : " (" + llvm::join(parts, ", ") + ")";
}

/// Native object code for the host module.
static LogicalResult emitObject(ModuleOp module, StringRef path, llvm::TargetMachine *machine) {
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule = translateModuleToLLVMIR(module, llvmContext);
  if (!llvmModule)
    return module.emitError("translation to LLVM IR failed");
  llvmModule->setTargetTriple(machine->getTargetTriple());
  llvmModule->setDataLayout(machine->createDataLayout());
  if (llvm::Error err = mlir::moe::optimizeHostModule(*llvmModule, machine))
    return module.emitError("LLVM optimisation failed: ") << llvm::toString(std::move(err));
  std::error_code ec;
  llvm::ToolOutputFile out(path, ec, llvm::sys::fs::OF_None);
  if (ec)
    return module.emitError("cannot write ") << path << ": " << ec.message();
  llvm::legacy::PassManager codegen;
  if (machine->addPassesToEmitFile(codegen, out.os(), nullptr, llvm::CodeGenFileType::ObjectFile))
    return module.emitError("the host target cannot emit object files");
  codegen.run(*llvmModule);
  out.keep();
  return success();
}

/// A runtime library (libmoe_runtime.so, libmoe_ep_runtime.so): next to an
/// installed moe-compile (bin/../lib, as the Python package lays them out),
/// else where this build made it.
static std::string siblingLibrary(llvm::StringRef name, llvm::StringRef built) {
  std::string exe = llvm::sys::fs::getMainExecutable(nullptr, reinterpret_cast<void *>(&siblingLibrary));
  llvm::SmallString<256> installed(llvm::sys::path::parent_path(llvm::sys::path::parent_path(exe)));
  llvm::sys::path::append(installed, "lib", name);
  return !exe.empty() && llvm::sys::fs::exists(installed) ? installed.str().str() : built.str();
}
static std::string runtimeLibrary() { return siblingLibrary("libmoe_runtime.so", MOE_RUNTIME_LIBRARY); }

static bool writeText(StringRef path, StringRef text, std::string &error) {
  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec);
  if (ec) {
    error = (path + ": " + ec.message()).str();
    return false;
  }
  os << text;
  return true;
}

static int compile();

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "moe-compile: compile an MLIR function, a JAX StableHLO program or an ONNX model to a shared library "
      "(an artifact)\n\n"
      "  moe-compile layer.mlir --target=gpu --chip=sm_90 -o out/liblayer.so\n"
      "  moe-compile model.onnx --target=cpu --weights-as-inputs=1048576 --weights-dir=out/w -o out/libm.so\n\n"
      "writes out/liblayer.so, out/liblayer.h and out/libmoe_runtime.so. Results become\n"
      "out-parameters: the caller allocates every buffer. Run it with moe-exec.\n");
  int rc = compile();
  if (!reportFile.empty()) {
    std::string error;
    if (!writeText(reportFile, report.json(rc == 0), error)) {
      llvm::errs() << "moe-compile: error: --report: " << error << "\n";
      return 1;
    }
  }
  return rc;
}

static int compile() {
  if (target != "cpu" && target != "gpu")
    return failWith("--target must be cpu or gpu, not '" + target + "'");
  if (wgmma && (target != "gpu" || chip != "sm_90a"))
    return failWith("--wgmma needs --target=gpu --chip=sm_90a (wgmma and its TMA loads are sm_90a "
                    "instructions), got --target=" + target + " --chip=" + chip);
  if (!llvm::StringRef(outputFile).ends_with(".so"))
    return failWith("-o must name a shared library (.so), got '" + outputFile + "'");
  if (expertParallelFlags.ranks > 0 && target == "gpu" && expertParallelFlags.placement == "split")
    return failWith("--placement=split is CPU-only so far (its GPU program would read a row count from device "
                    "memory on the host); place whole experts on the GPU ranks (contiguous, round-robin, "
                    "balanced)");
  mlir::moe::MoeOptimizeOptions optimizations;
  if (!optimize)
    optimizations.disableOptimizations();
  if (std::string flagError; !expertParallelFlags.apply(optimizations, flagError))
    return failWith(flagError);
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  std::string targetError;
  std::unique_ptr<llvm::TargetMachine> machine = mlir::moe::createCpuTargetMachine(cpu, targetError);
  if (!machine)
    return failWith("--cpu: " + targetError);
  mlir::moe::setDefaultCudaToolkitPath();
  mlir::moe::CompileCache cache(noCache ? ""
                                        : cacheDir.getNumOccurrences() ? cacheDir.getValue()
                                                                       : mlir::moe::CompileCache::defaultDirectory());

  DialectRegistry registry;
  mlir::moe::registerAllMoeDialects(registry);
  mlir::moe::registerAllMoePasses();
  MLIRContext context(registry, MLIRContext::Threading::DISABLED);
  std::unique_ptr<llvm::DefaultThreadPool> threadPool;
  if (jobs != 1) {
    threadPool = std::make_unique<llvm::DefaultThreadPool>(llvm::hardware_concurrency(jobs));
    context.setThreadPool(*threadPool);
  }
  context.loadAllAvailableDialects();
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler handler(sourceMgr, &context);
  artifact::DiagnosticRecorder recorder(&context, report);
  auto start = std::chrono::steady_clock::now();
  // MLIR, or an ONNX model (imported).
  mlir::moe::OnnxImportOptions onnxOptions;
  onnxOptions.weightsAsInputsMinBytes = weightsAsInputs;
  onnxOptions.weightsDir = weightsDir;
  std::string error;
  mlir::moe::RaisingCheckSummary raisingSummary;
  OwningOpRef<ModuleOp> module =
      mlir::moe::loadModuleFile(inputFile, sourceMgr, &context, error, onnxOptions,
                                raisingFlags.options(&raisingSummary));
  if (!module)
    return error.empty() ? 1 : failWith(error);
  if (raisingFlags.verify)
    report.raising = raisingSummary;
  if (std::string line = mlir::moe::RaisingFlags::describe(raisingSummary); !line.empty())
    llvm::outs() << "[moe-compile] " << line << "\n";
  func::FuncOp entry = mlir::moe::findEntryFunction(*module, entryName, inputFile, error);
  if (!entry)
    return failWith(error);
  artifact::Signature spec;
  spec.entry = entry.getName().str();
  spec.gpu = target == "gpu";
  spec.target = spec.gpu ? "gpu " + chip : "cpu";
  FunctionType type = entry.getFunctionType();
  // An imported ONNX model names its inputs (graph inputs, then weights).
  auto inputName = [&](unsigned i) {
    auto name = entry.getArgAttrOfType<StringAttr>(i, "onnx.name");
    if (!name)
      return "arg" + std::to_string(i);
    std::string text = name.getValue().str();
    for (char &c : text)
      if (!llvm::isAlnum(c) && !llvm::StringRef("_.:/-").contains(c))
        c = '_';
    return text;
  };
  for (auto [i, t] : llvm::enumerate(type.getInputs())) {
    auto buffer = bufferOf(t, inputName(i));
    if (!buffer)
      return failWith("argument " + llvm::Twine(i) + " of @" + spec.entry +
                      " is not a ranked tensor of f64, f32, f16, bf16, i64, i32 or i8");
    spec.inputs.push_back(*buffer);
  }
  for (auto [i, t] : llvm::enumerate(type.getResults())) {
    auto buffer = bufferOf(t, "result" + std::to_string(i));
    if (!buffer)
      return failWith("result " + llvm::Twine(i) + " of @" + spec.entry +
                      " is not a ranked tensor of f64, f32, f16, bf16, i64, i32 or i8");
    spec.outputs.push_back(*buffer);
  }
  // Other public functions would need wrappers of their own: compile only the entry.
  for (auto f : llvm::make_early_inc_range(module->getOps<func::FuncOp>()))
    if (f != entry && f.isPublic() && !f.isExternal())
      f.setPrivate();
  report.signature = spec;
  report.timingsMs.push_back({"import", msSince(start)});
  llvm::outs() << "[moe-compile] parsed @" << spec.entry << " in " << llvm::format("%.1f", msSince(start))
               << " ms\n";
  if (!reportFile.empty()) {
    report.describeProgram(*module);
    bool dynamic = llvm::any_of(type.getInputs(), [](Type t) {
      auto shaped = dyn_cast<ShapedType>(t);
      return shaped && !shaped.hasStaticShape();
    });
    report.costTokens = dynamic ? costTokens.getValue() : 0;
    // Failure to cost (a size the model cannot bound) is reported, not fatal.
    ScopedDiagnosticHandler quiet(&context, [&](Diagnostic &diag) {
      report.costError = diag.str();
      return success();
    });
    if (FailureOr<mlir::moe::CostTable> table = mlir::moe::computeCostTable(entry, report.costTokens);
        succeeded(table))
      report.cost = std::move(*table);
  }

  start = std::chrono::steady_clock::now();
  // The whole program's object, when this program was compiled before with
  // these options: no lowering, LLVM or ptxas at all. (The key prints the
  // whole module, weights included: only with a cache.)
  std::string programKey;
  std::optional<std::string> programObject;
  if (cache.enabled()) {
    programKey = mlir::moe::CompileCache::key(
        {"program", spec.target, chip, features, gpuFormat, wgmma ? "wgmma" : "", optimize ? "optimize" : "",
         shareLayers ? "share-layers" : "", machine->getTargetTriple().str(), machine->getTargetCPU(),
         machine->getTargetFeatureString(), "ranks=" + std::to_string(expertParallelFlags.ranks),
         expertParallelFlags.placement, expertParallelFlags.expertProfile,
         "replicas=" + std::to_string(expertParallelFlags.replicas)},
        [&](llvm::raw_ostream &os) { module->print(os, OpPrintingFlags().printGenericOpForm()); });
    programObject = cache.lookup("program-object", programKey);
  }
  PassManager pm(&context);
  if (optimize || expertParallelFlags.ranks > 0)
    mlir::moe::buildMoeOptimizePipeline(pm, optimizations);
  if (spec.gpu) {
    mlir::moe::MoeGpuPipelineOptions options;
    options.chip = chip;
    options.features = features;
    options.format = gpuFormat;
    options.wgmma = wgmma;
    options.shareLayers = shareLayers;
    options.cacheDir = cache.path();
    mlir::moe::buildMoeGpuPipeline(pm, options);
  } else {
    mlir::moe::MoeCpuPipelineOptions options;
    options.outParams = true;
    options.vectorBits = mlir::moe::preferredVectorBits(*machine);
    options.bf16DotProducts = mlir::moe::hasBf16DotProducts(*machine);
    options.shareLayers = shareLayers;
    mlir::moe::buildMoeCpuPipeline(pm, options);
  }
  report.fromCache = programObject.has_value();
  if (programObject)
    llvm::outs() << "[moe-compile] program for " << spec.target << " from the cache in "
                 << llvm::format("%.1f", msSince(start)) << " ms\n";
  else if (failed(pm.run(*module)))
    return failWith("lowering failed (see the errors above)");
  else
    llvm::outs() << "[moe-compile] lowered for " << spec.target << " in "
                 << llvm::format("%.1f", msSince(start)) << " ms" << loweredSummary(*module) << "\n";
  report.timingsMs.push_back({"lower", msSince(start)});

  // Artifacts: the object, the C wrapper, then one link.
  start = std::chrono::steady_clock::now();
  llvm::SmallString<128> outDir(outputFile);
  llvm::sys::path::remove_filename(outDir);
  if (outDir.empty())
    outDir = ".";
  if (std::error_code ec = llvm::sys::fs::create_directories(outDir))
    return failWith("cannot create " + outDir + ": " + ec.message());
  llvm::SmallString<128> base(outputFile);
  llvm::sys::path::replace_extension(base, "");
  std::string object = (base + ".o").str(), wrapper = (base + ".wrapper.c").str(),
              header = (base + ".h").str();
  if (programObject) {
    if (!writeText(object, *programObject, error))
      return failWith(error);
  } else {
    if (failed(emitObject(*module, object, machine.get())))
      return 1;
    if (cache.enabled())
      if (auto bytes = llvm::MemoryBuffer::getFile(object, /*IsText=*/false, /*RequiresNullTerminator=*/false))
        cache.store("program-object", programKey, (*bytes)->getBuffer());
  }
  if (!writeText(wrapper, artifact::wrapperSource(spec, mlir::moe::runtimeCheckableFeatures(*machine)), error) ||
      !writeText(header, artifact::headerSource(spec, llvm::sys::path::filename(outputFile).str()), error))
    return failWith(error);
  llvm::SmallString<128> runtimeCopy(outDir);
  llvm::sys::path::append(runtimeCopy, "libmoe_runtime.so");
  std::string runtime = runtimeLibrary();
  if (!llvm::sys::fs::equivalent(runtime, runtimeCopy))
    if (std::error_code ec = llvm::sys::fs::copy_file(runtime, runtimeCopy))
      return failWith("cannot copy the runtime to " + runtimeCopy + ": " + ec.message());
  // A CPU artifact's threads run on libomp: copied next to it as the runtime is.
  if (!spec.gpu) {
    llvm::SmallString<128> openmpCopy(outDir);
    llvm::sys::path::append(openmpCopy, "libomp.so.5");
    if (!llvm::sys::fs::equivalent(MOE_OPENMP_LIBRARY, openmpCopy))
      if (std::error_code ec = llvm::sys::fs::copy_file(MOE_OPENMP_LIBRARY, openmpCopy))
        return failWith("cannot copy libomp to " + openmpCopy + ": " + ec.message());
  }
  auto cc = llvm::sys::findProgramByName("cc");
  if (!cc)
    return failWith("no C compiler (cc) on PATH to link the artifact");
  std::string libDir = ("-L" + outDir).str();
  // The wrapper only checks and marshals the buffers once per call: -O0
  // (optimising its one function with a descriptor per buffer took 3 s for a
  // 61-layer model's 368 buffers).
  llvm::SmallVector<llvm::StringRef> args = {*cc, "-shared", "-fPIC", "-O0", "-o", outputFile, object,
                                             wrapper, libDir, "-lmoe_runtime", "-lm",
                                             "-Wl,-rpath,$ORIGIN"};
  if (!spec.gpu)
    args.push_back("-l:libomp.so.5");
  // Expert-parallel artifacts call MPI through libmoe_ep_runtime, copied next to them.
  if (expertParallelFlags.ranks > 0) {
    llvm::SmallString<128> epCopy(outDir);
    llvm::sys::path::append(epCopy, "libmoe_ep_runtime.so");
    std::string ep = siblingLibrary("libmoe_ep_runtime.so", MOE_EP_RUNTIME_LIBRARY);
    if (ep.empty() || !llvm::sys::fs::exists(ep))
      return failWith("--ranks: libmoe_ep_runtime.so was not built (the build found no MPI; install libopenmpi-dev)");
    if (!llvm::sys::fs::equivalent(ep, epCopy))
      if (std::error_code ec = llvm::sys::fs::copy_file(ep, epCopy))
        return failWith("cannot copy the expert-parallel runtime to " + epCopy + ": " + ec.message());
    args.push_back("-lmoe_ep_runtime");
  }
  std::string linkError;
  if (llvm::sys::ExecuteAndWait(*cc, args, std::nullopt, {}, 0, 0, &linkError) != 0)
    return failWith("linking " + outputFile + " failed " + linkError);
  if (!keepTemps) {
    llvm::sys::fs::remove(object);
    llvm::sys::fs::remove(wrapper);
  }
  report.timingsMs.push_back({"emit_and_link", msSince(start)});
  report.library = outputFile;
  report.header = header;
  llvm::outs() << "[moe-compile] wrote " << outputFile << " and " << header << " in "
               << llvm::format("%.1f", msSince(start)) << " ms"
               << (programObject ? " (program from the cache)" : "") << "\n";
  if (cache.enabled() && (cache.rejected || cache.storeFailures))
    llvm::errs() << "moe-compile: warning: cache " << cache.path() << ": " << cache.rejected
                 << " corrupted entries rebuilt, " << cache.storeFailures << " entries not written\n";
  return 0;
}
