//===- moe-run.cpp - compile an MLIR file for the CPU and run a function --===//
//
// Parses an MLIR file (moe ops at either level, or upstream ops), lowers it
// with moe-cpu-pipeline, JIT-compiles it with the MLIR ExecutionEngine, feeds
// the chosen function .npy files or seeded random data, writes its results as
// .npy files, and reports compile and run time.
//
//===----------------------------------------------------------------------===//

#include "JitAddressSanitizer.h"
#include "moe/Tools/LoadModule.h"
#include "moe/Support/ArrayData.h"
#include "moe/Support/Compare.h"
#include "moe/Support/LauncherRank.h"
#include "moe/Support/Npy.h"
#include "moe/Support/ParseNumber.h"
#include "moe/Support/SystemMemory.h"
#include "moe/Tools/CpuTarget.h"
#include "moe/Tools/EntryFunction.h"
#include "moe/Tools/ExpertParallelOptions.h"
#include "moe/Tools/RaisingCheck.h"
#include "moe/Transforms/RoutingProfile.h"
#include "moe/InitAll.h"
#include "moe/Pipelines/Pipelines.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/ExecutionEngine/ExecutionEngine.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"


#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

/// libmoe_runtime: the first error the last call of the program recorded.
extern "C" const char *moeRuntimeTakeCallError(void);

using namespace mlir;
namespace cl = llvm::cl;
using npy::Array;
using npy::DType;

static cl::OptionCategory category("moe-run options");
static cl::opt<std::string> inputFile(cl::Positional, cl::desc("<input .mlir (moe or JAX StableHLO) or .onnx file>"), cl::Required,
                                      cl::cat(category));
static cl::opt<std::string> entryName("entry", cl::desc("Function to run (default: the only public one)"),
                                      cl::cat(category));
static cl::list<std::string> inputs(
    "input",
    cl::desc("Data for the next argument, in argument order: a .npy file, or 'random'. Give one "
             "per argument, or none to make them all random. For an imported ONNX model, "
             "NAME=SOURCE gives the graph input NAME"),
    cl::cat(category));
static cl::opt<uint64_t> seed("seed", cl::desc("Seed of the random arguments"), cl::init(0),
                              cl::cat(category));
static cl::opt<double> randomScale("random-scale",
                                   cl::desc("Random floats are uniform in [-scale, scale)"),
                                   cl::init(1.0), cl::cat(category));
static cl::opt<int64_t> dynamicSize(
    "dynamic-size", cl::desc("Size of every dynamic dimension of a random argument"), cl::init(-1),
    cl::cat(category));
static cl::opt<std::string> outputDir("output-dir",
                                      cl::desc("Write result_<i>.npy (and arg_<i>.npy) here"),
                                      cl::cat(category));
static cl::opt<bool> gpuEmulation(
    "gpu-emulation",
    cl::desc("Compile with moe-gpu-emulation-pipeline: the GPU program's kernels, their threads "
             "run one after another on the CPU (checks the GPU mapping without a GPU)"),
    cl::init(false), cl::cat(category));
static cl::opt<bool> emulateWgmma(
    "emulate-wgmma",
    cl::desc("With --gpu-emulation: the grouped GEMMs as the sm_90a wgmma kernels (TMA boxes, wgmma "
             "tiles and their epilogue) instead of the mma.sync ones"),
    cl::init(false), cl::cat(category));
// LLVM itself registers --threads in this process: ours is --num-threads.
static cl::opt<unsigned> threads(
    "num-threads",
    cl::desc("OpenMP threads of the compiled code (default: OMP_NUM_THREADS, else one per core); "
             "results are identical for any count"),
    cl::init(0), cl::cat(category));
static cl::opt<unsigned> vectorBits(
    "vector-bits",
    cl::desc("Vector register width (bits) the CPU contraction kernels are sized for: 512 or 256 "
             "(default: this machine's, 512 with AVX-512, else 256)"),
    cl::init(0), cl::cat(category));
static cl::opt<bool> bf16DotProducts(
    "bf16-dot-products",
    cl::desc("Contract bf16 by AVX512_BF16 dot products where this CPU has them (default); "
             "=false widens bf16 to f32 as on CPUs without them"),
    cl::init(true), cl::cat(category));
static cl::opt<bool> shareLayers(
    "share-layers",
    cl::desc("Compile identical MoE layers once, as calls of one shared function (default: on; "
             "--share-layers=false compiles every layer separately; results are identical)"),
    cl::init(true), cl::cat(category));
static cl::opt<bool> saveInputs("save-inputs",
                                cl::desc("Also write every argument as arg_<i>.npy"),
                                cl::init(false), cl::cat(category));
static cl::list<std::string> references(
    "reference",
    cl::desc("Expected data of the next result (.npy), in result order: prints the normwise relative "
             "error max|ours - ref| / max|ref| and exits 1 above the tolerance"),
    cl::cat(category));
static cl::opt<double> tolerance("tolerance",
                                 cl::desc("Largest relative error --reference accepts (default: 1e-5 "
                                          "f32/f64, 2e-3 f16, 8e-3 bf16, 0 integers)"),
                                 cl::init(-1.0), cl::cat(category));
static mlir::moe::ExpertParallelFlags expertParallelFlags(category);
static mlir::moe::RaisingFlags raisingFlags(category);
static cl::opt<std::string> routingProfile(
    "routing-profile",
    cl::desc("Write how many of the inputs' tokens each layer routes to each of its FFN experts, as a .npy "
             "([layers, E] int64; one row per moe.layer in program order; a 1-D concatenation when the "
             "layers' expert counts differ): the --expert-profile of a balanced expert placement"),
    cl::value_desc("loads.npy"), cl::cat(category));
static cl::opt<unsigned> repeat("repeat", cl::desc("Timed runs; the median is reported"),
                                cl::init(1), cl::cat(category));
static cl::opt<unsigned> warmup("warmup", cl::desc("Untimed runs before the timed ones"),
                                cl::init(0), cl::cat(category));

namespace {

/// Prints `error: ...` and returns the exit code 1.
int failWith(const llvm::Twine &message) {
  llvm::errs() << "moe-run: error: " << message << "\n";
  return 1;
}

/// The JIT-compiled code allocates through these: a failed allocation is an
/// error and exit status 1, not a null pointer the code would write through.
[[noreturn]] void outOfMemory(size_t bytes) {
  llvm::errs() << "moe-run: error: the compiled program ran out of memory allocating "
               << support::formatBytes(int64_t(std::min<size_t>(bytes, INT64_MAX))) << "\n";
  std::_Exit(1);
}

void *checkedMalloc(size_t bytes) {
  void *p = std::malloc(bytes);
  if (!p && bytes)
    outOfMemory(bytes);
  return p;
}

void *checkedAlignedAlloc(size_t alignment, size_t bytes) {
  void *p = std::aligned_alloc(alignment, bytes);
  if (!p && bytes)
    outOfMemory(bytes);
  return p;
}

double msSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

std::optional<DType> dtypeOf(Type type) {
  if (type.isF64()) return DType::f64;
  if (type.isF32()) return DType::f32;
  if (type.isF16()) return DType::f16;
  if (type.isBF16()) return DType::bf16;
  if (type.isInteger(64)) return DType::i64;
  if (type.isInteger(32)) return DType::i32;
  if (type.isInteger(8)) return DType::i8;
  return std::nullopt;
}

/// A strided memref descriptor as the C interface lays it out:
/// {allocated, aligned, offset, sizes[rank], strides[rank]}, all 8 bytes.
struct Descriptor {
  std::vector<int64_t> words;
  static size_t wordsFor(size_t rank) { return 3 + 2 * rank; }
};

Descriptor describe(Array &array) {
  Descriptor d;
  size_t rank = array.shape.size();
  d.words.resize(Descriptor::wordsFor(rank));
  uint8_t *ptr = array.bytes(); // null for an empty array, which nothing reads
  d.words[0] = reinterpret_cast<int64_t>(ptr);
  d.words[1] = reinterpret_cast<int64_t>(ptr);
  d.words[2] = 0;
  int64_t stride = 1;
  for (size_t i = rank; i-- > 0;) {
    d.words[3 + i] = array.shape[i];
    d.words[3 + rank + i] = stride;
    stride *= array.shape[i];
  }
  return d;
}

/// Copies a result out of its descriptor (any strides) into a C-order array.
Array readResult(const int64_t *words, size_t rank, DType type) {
  Array a;
  a.type = type;
  auto *base = reinterpret_cast<const uint8_t *>(words[1]);
  int64_t offset = words[2];
  a.shape.assign(words + 3, words + 3 + rank);
  const int64_t *strides = words + 3 + rank;
  size_t size = npy::elementSize(type);
  a.data.resize(size_t(a.numElements()) * size);
  SmallVector<int64_t> index(rank, 0);
  for (int64_t i = 0; i < a.numElements(); ++i) {
    int64_t at = offset;
    for (size_t d = 0; d < rank; ++d)
      at += index[d] * strides[d];
    std::memcpy(a.data.data() + i * size, base + at * size, size);
    for (size_t d = rank; d-- > 0;) {
      if (++index[d] < a.shape[d])
        break;
      index[d] = 0;
    }
  }
  return a;
}

std::string describeType(Type type) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << type;
  return s;
}

/// Counts per layer of the tokens routed to each FFN expert (ids past them
/// are zero-computation experts, -1 an empty slot), written as int64
/// [layers, E], or concatenated when the layers' E differ.
bool writeRoutingProfile(const std::vector<Array> &routings, ArrayRef<int64_t> experts, const std::string &path,
                         std::string &error) {
  std::vector<int64_t> counts;
  for (auto [routing, e] : llvm::zip_equal(routings, experts)) {
    std::vector<int64_t> layer(size_t(e), 0);
    for (int64_t i = 0; i < routing.numElements(); ++i) {
      int64_t id = int64_t(npy::elementAt(routing, i));
      if (id >= 0 && id < e)
        ++layer[size_t(id)];
    }
    counts.insert(counts.end(), layer.begin(), layer.end());
  }
  bool uniform = llvm::all_equal(experts);
  Array profile;
  profile.type = DType::i64;
  profile.shape = uniform ? std::vector<int64_t>{int64_t(experts.size()), experts.front()}
                          : std::vector<int64_t>{int64_t(counts.size())};
  profile.data.resize(counts.size() * sizeof(int64_t));
  std::memcpy(profile.data.data(), counts.data(), profile.data.size());
  if (!npy::write(path, profile, error))
    return false;
  llvm::outs() << "[moe-run] routing profile of " << experts.size() << " layers -> " << path << "\n";
  return true;
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "moe-run: compile an MLIR file with moe-cpu-pipeline and run one of its functions\n\n"
      "  moe-run layer.mlir --input x.npy --input w.npy ... --output-dir out/\n"
      "  moe-run model.onnx --input x=x.npy --output-dir out/   (ONNX: inputs by graph name)\n"
      "  moe-run jax_layer.mlir --input x.npy ...               (JAX StableHLO text: imported first)\n"
      "  moe-run layer.mlir --seed 7 --dynamic-size 128 --repeat 10 --warmup 2\n\n"
      "Arrays are .npy files (f64, f32, f16, bf16 as uint16 bits, i64, i32), C order.\n");
  if (emulateWgmma && !gpuEmulation)
    return failWith("--emulate-wgmma applies to --gpu-emulation only");
  mlir::moe::MoeOptimizeOptions expertParallel;
  expertParallel.disableOptimizations();
  if (std::string error; !expertParallelFlags.apply(expertParallel, error))
    return failWith(error);
  if (expertParallelFlags.ranks > 0 && gpuEmulation && expertParallelFlags.placement == "split")
    return failWith("--placement=split is CPU-only so far (its GPU program would read a row count from device "
                    "memory on the host); run it without --gpu-emulation");
  if (expertParallelFlags.ranks > 0 && std::string(MOE_EP_RUNTIME_LIBRARY).empty())
    return failWith("--ranks: libmoe_ep_runtime.so was not built (the build found no MPI; install libopenmpi-dev)");
  if (std::optional<std::string> rank = support::launcherRank()) {
    for (std::string &path : inputs)
      path = support::withRank(path, *rank);
    for (std::string &path : references)
      path = support::withRank(path, *rank);
    outputDir.setValue(support::withRank(outputDir, *rank));
  }
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();

  DialectRegistry registry;
  mlir::moe::registerAllMoeDialects(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  mlir::moe::registerAllMoePasses();
  MLIRContext context(registry);
  context.loadAllAvailableDialects();

  // Parse. Errors are printed with their location by the source manager.
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler handler(sourceMgr, &context);
  auto start = std::chrono::steady_clock::now();
  // MLIR, or an ONNX model (imported).
  std::string errorMessage;
  mlir::moe::RaisingCheckSummary raisingSummary;
  OwningOpRef<ModuleOp> module = mlir::moe::loadModuleFile(
      inputFile, sourceMgr, &context, errorMessage, {},
      raisingFlags.options(&raisingSummary));
  if (!module)
    return errorMessage.empty() ? 1 : failWith(errorMessage);
  if (std::string line = mlir::moe::RaisingFlags::describe(raisingSummary); !line.empty())
    llvm::outs() << "[moe-run] " << line << "\n";

  // The entry function and its signature.
  std::string entryError;
  func::FuncOp entry = mlir::moe::findEntryFunction(*module, entryName, inputFile, entryError);
  if (!entry)
    return failWith(entryError);
  std::string name = entry.getName().str();
  // With --routing-profile the program also returns each layer's routing.
  unsigned userResults = entry.getNumResults();
  SmallVector<int64_t> profiledExperts;
  if (!routingProfile.empty()) {
    if (expertParallelFlags.ranks > 0)
      return failWith("--routing-profile measures one process's routing: run it without --ranks");
    FailureOr<SmallVector<int64_t>> experts = mlir::moe::appendRoutingResults(entry);
    if (failed(experts))
      return 1;
    if (experts->empty())
      return failWith("--routing-profile: @" + name + " has no moe.layer (no recognised MoE layer to profile)");
    profiledExperts = std::move(*experts);
  }
  FunctionType signature = entry.getFunctionType();
  auto checkType = [&](Type t, StringRef what, unsigned i) -> std::optional<std::string> {
    auto tensor = dyn_cast<RankedTensorType>(t);
    if (!tensor || !dtypeOf(tensor.getElementType()))
      return (what + " " + llvm::Twine(i) + " of @" + name + " has type " + describeType(t) +
              "; moe-run takes ranked tensors of f64, f32, f16, bf16, i64, i32 or i8")
          .str();
    return std::nullopt;
  };
  for (auto [i, t] : llvm::enumerate(signature.getInputs()))
    if (auto err = checkType(t, "argument", i))
      return failWith(*err);
  for (auto [i, t] : llvm::enumerate(signature.getResults()))
    if (auto err = checkType(t, "result", i))
      return failWith(*err);
  if (!references.empty() && references.size() != userResults)
    return failWith("@" + entry.getName() + " has " + Twine(userResults) + " results, got " +
                    Twine(references.size()) + " --reference");

  // Arguments: files or random data, checked against the signature. Inputs
  // are given in argument order, or all as NAME=SOURCE with the names an
  // imported model's arguments carry (onnx.name).
  size_t numArgs = signature.getNumInputs();
  std::vector<std::string> sources(inputs.begin(), inputs.end());
  auto argName = [&](size_t i) {
    auto attr = entry.getArgAttrOfType<StringAttr>(i, "onnx.name");
    return attr ? attr.getValue().str() : std::string();
  };
  auto namedArg = [&](StringRef input) -> std::optional<size_t> {
    auto [key, value] = input.split('=');
    for (size_t i = 0; i < numArgs && !value.empty(); ++i)
      if (argName(i) == key)
        return i;
    return std::nullopt;
  };
  size_t named = llvm::count_if(inputs, [&](const std::string &in) { return namedArg(in).has_value(); });
  if (named && named != inputs.size())
    return failWith("give every --input as NAME=SOURCE (the graph's input names) or none");
  if (named) {
    sources.assign(numArgs, "");
    for (const std::string &in : inputs)
      sources[*namedArg(in)] = StringRef(in).split('=').second.str();
    for (size_t i = 0; i < numArgs; ++i)
      if (sources[i].empty())
        return failWith("no --input " + argName(i) + "=... for argument " + llvm::Twine(i) + " of @" + name);
  }
  if (!sources.empty() && sources.size() != numArgs)
    return failWith("@" + name + " takes " + llvm::Twine(numArgs) + " arguments, got " +
                    llvm::Twine(sources.size()) + " --input");
  std::vector<Array> args;
  int64_t inputBytes = 0;
  for (size_t i = 0; i < numArgs; ++i) {
    auto type = cast<RankedTensorType>(signature.getInput(i));
    DType dtype = *dtypeOf(type.getElementType());
    std::string source = sources.empty() ? "random" : sources[i];
    if (source == "random") {
      SmallVector<int64_t> shape;
      for (int64_t d : type.getShape()) {
        if (ShapedType::isDynamic(d) && dynamicSize < 0)
          return failWith("argument " + llvm::Twine(i) + " of @" + name + " (" +
                          describeType(type) +
                          ") has a dynamic dimension: give --dynamic-size or a .npy file");
        shape.push_back(ShapedType::isDynamic(d) ? dynamicSize : d);
      }
      std::vector<int64_t> dims(shape.begin(), shape.end());
      std::optional<int64_t> bytes = support::byteSize(dims, int64_t(npy::elementSize(dtype)));
      std::string error;
      std::string what = "random argument " + std::to_string(i) + " of shape " + npy::shapeString(dims);
      if (!bytes)
        return failWith(what + " is too large");
      inputBytes += *bytes;
      if (!support::fitsInMemory(inputBytes, what + " (with the arguments before it)", error))
        return failWith(error);
      args.push_back(npy::randomArray(dtype, dims, seed * 1000003ULL + i, randomScale));
      continue;
    }
    auto array = std::make_optional<Array>();
    // Mapped: an expert-parallel rank loads only the weights it reads.
    if (std::string error; !npy::map(source, *array, error))
      return failWith(error);
    if (array->type != dtype)
      return failWith("argument " + llvm::Twine(i) + " of @" + name + " is " + describeType(type) +
                      " but " + source + " holds " + npy::name(array->type) + " data (want " +
                      npy::descr(dtype) + ")");
    bool shapeOk = array->shape.size() == size_t(type.getRank());
    for (size_t d = 0; shapeOk && d < array->shape.size(); ++d)
      shapeOk = type.isDynamicDim(d) || type.getDimSize(d) == array->shape[d];
    if (!shapeOk)
      return failWith("argument " + llvm::Twine(i) + " of @" + name + " is " + describeType(type) +
                      " but " + source + " has shape " + npy::shapeString(array->shape));
    args.push_back(std::move(*array));
  }

  double parseAndLoadMs = msSince(start);

  // Lower and JIT-compile (lookup forces code generation, so it is timed here
  // rather than in the first run).
  auto lowerStart = std::chrono::steady_clock::now();
  if (vectorBits != 0 && vectorBits != 256 && vectorBits != 512)
    return failWith("--vector-bits must be 512 or 256, not " + llvm::Twine(unsigned(vectorBits)));
  // Tuned for this machine's CPU: the kernels' tiles fit its vector registers.
  std::string targetError;
  std::unique_ptr<llvm::TargetMachine> machine = mlir::moe::createCpuTargetMachine("host", targetError);
  if (!machine)
    return failWith("JIT compilation failed: " + targetError);
  PassManager pm(&context);
  if (expertParallelFlags.ranks > 0)
    mlir::moe::buildMoeOptimizePipeline(pm, expertParallel);
  if (gpuEmulation) {
    mlir::moe::MoeGpuEmulationPipelineOptions options;
    options.wgmma = emulateWgmma;
    options.shareLayers = shareLayers;
    mlir::moe::buildMoeGpuEmulationPipeline(pm, options);
  }
  else {
    mlir::moe::MoeCpuPipelineOptions options;
    options.vectorBits = vectorBits ? unsigned(vectorBits) : mlir::moe::preferredVectorBits(*machine);
    options.bf16DotProducts = bf16DotProducts && mlir::moe::hasBf16DotProducts(*machine);
    options.shareLayers = shareLayers;
    mlir::moe::buildMoeCpuPipeline(pm, options);
  }
  if (failed(pm.run(*module)))
    return failWith("lowering " + inputFile + " failed (see the errors above)");
  double lowerMs = msSince(lowerStart);
  auto jitStart = std::chrono::steady_clock::now();
  ExecutionEngineOptions options;
  // options.transformer is a function_ref: the function must outlive create().
  std::function<llvm::Error(llvm::Module *)> transform = [&](llvm::Module *m) -> llvm::Error {
    if (llvm::Error error = mlir::moe::optimizeHostModule(*m, machine.get()))
      return error;
    if (moe_run::builtWithAddressSanitizer())
      moe_run::instrumentWithAddressSanitizer(*m);
    return llvm::Error::success();
  };
  options.transformer = transform;
  options.jitCodeGenOptLevel = llvm::CodeGenOptLevel::Aggressive;
  // The threaded CPU code calls libomp, which reads OMP_NUM_THREADS when its
  // first parallel region starts.
  if (threads > 0)
    setenv("OMP_NUM_THREADS", std::to_string(threads).c_str(), /*overwrite=*/1);
  std::string runnerUtils = MOE_C_RUNNER_UTILS, openmp = MOE_OPENMP_LIBRARY;
  SmallVector<StringRef> libs = {runnerUtils, openmp};
  std::string expertParallelRuntime = MOE_EP_RUNTIME_LIBRARY;
  if (expertParallelFlags.ranks > 0)
    libs.push_back(expertParallelRuntime);
  options.sharedLibPaths = libs;
  auto engine = ExecutionEngine::create(*module, options, mlir::moe::createCpuTargetMachine("host", targetError));
  if (!engine)
    return failWith("JIT compilation failed: " + llvm::toString(engine.takeError()));
  (*engine)->registerSymbols([](llvm::orc::MangleAndInterner interner) {
    llvm::orc::SymbolMap symbols;
    symbols[interner("malloc")] = {llvm::orc::ExecutorAddr::fromPtr(&checkedMalloc), llvm::JITSymbolFlags::Exported};
    symbols[interner("aligned_alloc")] = {llvm::orc::ExecutorAddr::fromPtr(&checkedAlignedAlloc),
                                          llvm::JITSymbolFlags::Exported};
    return symbols;
  });
  if (auto fn = (*engine)->lookupPacked("_mlir_ciface_" + name); !fn)
    return failWith("JIT compilation failed: " + llvm::toString(fn.takeError()));
  double jitMs = msSince(jitStart);
  llvm::outs() << llvm::format("[moe-run] parse and load inputs %.1f ms\n", parseAndLoadMs);
  llvm::outs() << llvm::format("[moe-run] compile %.1f ms (lowering %.1f ms, JIT %.1f ms)\n",
                               lowerMs + jitMs, lowerMs, jitMs);

  // Call _mlir_ciface_<name>(results*, arg descriptors*...).
  std::vector<Descriptor> argDescs;
  for (Array &a : args)
    argDescs.push_back(describe(a));
  size_t resultWords = 0;
  for (Type t : signature.getResults())
    resultWords += Descriptor::wordsFor(cast<RankedTensorType>(t).getRank());
  std::vector<int64_t> resultWordsBuf(std::max<size_t>(resultWords, 1), 0);
  std::vector<void *> argPtrs;
  void *resultPtr = resultWordsBuf.data();
  std::vector<void *> descPtrs;
  for (Descriptor &d : argDescs)
    descPtrs.push_back(d.words.data());
  SmallVector<void *> packed;
  if (signature.getNumResults() > 0)
    packed.push_back(&resultPtr);
  for (void *&p : descPtrs)
    packed.push_back(&p);

  // Each result buffer the program allocated is freed once: a function may
  // return one value twice, or return an argument (moe-run's own buffer).
  auto freeResults = [&]() {
    llvm::SmallPtrSet<void *, 8> freed;
    for (Array &a : args)
      freed.insert(a.bytes());
    size_t at = 0;
    for (Type t : signature.getResults()) {
      void *allocated = reinterpret_cast<void *>(resultWordsBuf[at]);
      if (freed.insert(allocated).second)
        std::free(allocated);
      at += Descriptor::wordsFor(cast<RankedTensorType>(t).getRank());
    }
  };
  std::vector<double> times;
  unsigned runs = warmup + std::max(1u, unsigned(repeat));
  for (unsigned r = 0; r < runs; ++r) {
    if (r > 0)
      freeResults();
    auto runStart = std::chrono::steady_clock::now();
    if (llvm::Error err = (*engine)->invokePacked("_mlir_ciface_" + name, packed))
      return failWith("running @" + name + " failed: " + llvm::toString(std::move(err)));
    // What the run itself refused: a size only it knows (an ONNX TopK's K
    // against its axis), the expert-parallel runtime's exchanges.
    if (const char *refused = moeRuntimeTakeCallError())
      return failWith("running @" + name + " failed: " + refused);
    if (r >= warmup)
      times.push_back(msSince(runStart));
  }
  std::sort(times.begin(), times.end());
  llvm::outs() << llvm::format("[moe-run] run %.3f ms (median of %zu, %u warm-up)\n",
                               times[times.size() / 2], times.size(), unsigned(warmup));

  // Results.
  if (!outputDir.empty())
    if (std::error_code ec = llvm::sys::fs::create_directories(outputDir))
      return failWith("cannot create " + outputDir + ": " + ec.message());
  int status = 0;
  size_t at = 0;
  std::vector<Array> routings;
  for (auto [i, t] : llvm::enumerate(signature.getResults())) {
    auto type = cast<RankedTensorType>(t);
    Array out = readResult(resultWordsBuf.data() + at, type.getRank(), *dtypeOf(type.getElementType()));
    at += Descriptor::wordsFor(type.getRank());
    if (i >= userResults) {
      routings.push_back(std::move(out));
      continue;
    }
    llvm::outs() << "[moe-run] result " << i << ": " << npy::name(out.type) << " "
                 << npy::shapeString(out.shape);
    if (!outputDir.empty()) {
      SmallString<128> path(outputDir);
      llvm::sys::path::append(path, "result_" + std::to_string(i) + ".npy");
      if (std::string error; !npy::write(path.str().str(), out, error))
        return failWith(error);
      llvm::outs() << " -> " << path;
    }
    llvm::outs() << "\n";
    if (references.empty())
      continue;
    Array ref;
    npy::Comparison c;
    if (std::string error; !npy::read(references[i], ref, error) || !npy::compare(out, ref, tolerance, c, error))
      return failWith("result " + Twine(i) + " vs " + references[i] + ": " + error);
    llvm::outs() << "[moe-run] result " << i << " vs " << references[i] << ": " << npy::describe(c) << "\n";
    status |= c.ok() ? 0 : 1;
  }
  freeResults();
  if (saveInputs && !outputDir.empty())
    for (auto [i, a] : llvm::enumerate(args)) {
      SmallString<128> path(outputDir);
      llvm::sys::path::append(path, "arg_" + std::to_string(i) + ".npy");
      if (std::string error; !npy::write(path.str().str(), a, error))
        return failWith(error);
    }
  if (!routingProfile.empty())
    if (std::string error; !writeRoutingProfile(routings, profiledExperts, routingProfile, error))
      return failWith("--routing-profile: " + error);
  return status;
}
