//===- Pipelines.cpp - the registered moe pass pipelines ------------------===//

#include "moe/Pipelines/Pipelines.h"
#include "moe/Conversion/Passes.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Pipelines/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/ErrorHandling.h"

using namespace mlir;

/// Adds `pipeline` (upstream passes only) to `pm`.
static void addUpstream(OpPassManager &pm, StringRef name, StringRef pipeline) {
  // Every pass named ships in libMLIR; failing here means the build links a
  // different MLIR, and a silently shorter pipeline would be worse.
  if (failed(parsePassPipeline(pipeline, pm)))
    llvm::report_fatal_error(llvm::Twine(name) + ": an upstream pass is not registered");
}

/// Bufferized loops and memref code -> LLVM for the host CPU.
static void addCpuTail(OpPassManager &pm, StringRef name) {
  addUpstream(pm, name,
              "convert-linalg-to-loops,expand-strided-metadata,lower-affine,"
              // bf16 arithmetic in f32, and f32 -> bf16 as integer code:
              // otherwise LLVM calls __truncsfbf2, which the host's C runtime
              // may lack.
              "func.func(arith-emulate-unsupported-floats{source-types=bf16 target-type=f32},"
              "arith-expand{include-bf16}),"
              "convert-scf-to-cf,convert-math-to-llvm,convert-math-to-libm,"
              // Vector transfers of the contraction kernels: (masked) loads.
              "convert-vector-to-llvm{enable-x86vector},convert-to-llvm,reconcile-unrealized-casts,canonicalize");
}

/// moe -> bufferized linalg/scf, the start both targets share: inputs
/// read-only, decompose, lower (contractions parallel for the GPU), C
/// interfaces, elementwise fusion (CPU), one-shot bufferization. The upstream part is spelled as its
/// textual pipeline so that the same string reproduces it with mlir-opt.
static void addBufferizedLowering(OpPassManager &pm, StringRef name, bool parallelContractions,
                                  bool shareLayers, unsigned vectorBits = 512, bool bf16DotProducts = false,
                                  bool deviceExchanges = false) {
  using namespace mlir::moe;
  if (shareLayers) {
    pm.addPass(createMoeShareLayers());
    // The GPU mapping does not handle blocks calling layers yet (a block
    // returning a view of its layer's result is freed twice in emulation).
    if (!parallelContractions)
      pm.addPass(createMoeShareBlocks());
  }
  pm.addNestedPass<func::FuncOp>(createMoeReadOnlyArguments());
  pm.addPass(createMoeDecompose());
  ConvertMoeToLinalgOptions lowering;
  lowering.parallelContractions = parallelContractions;
  lowering.vectorBits = vectorBits;
  lowering.bf16DotProducts = bf16DotProducts;
  lowering.deviceExchanges = deviceExchanges;
  pm.addPass(createConvertMoeToLinalg(lowering));
  addUpstream(pm, name, "func.func(llvm-request-c-wrappers),func.func(convert-elementwise-to-linalg),canonicalize,cse");
  // Chains of elementwise ops (the non-MoE parts of an imported model) as
  // one loop nest each: fewer buffers and a fraction of the code LLVM
  // optimises. The GPU mapping reads the marked generics of the parallel
  // contractions as they are built, so it keeps them unfused.
  if (!parallelContractions) {
    pm.addNestedPass<func::FuncOp>(createMoeFillInitReads()); // makes that fusion exact
    addUpstream(pm, name, "linalg-fuse-elementwise-ops,canonicalize,cse");
  }
  pm.addNestedPass<func::FuncOp>(createMoeLocalizeEmptyTensors()); // after the last CSE
  pm.addNestedPass<func::FuncOp>(createMoeEmptyCollapses());
  addUpstream(pm, name,
              "one-shot-bufferize{bufferize-function-boundaries allow-return-allocs-from-loops "
              "function-boundary-type-conversion=identity-layout-map}");
}

void mlir::moe::buildMoeCpuPipeline(OpPassManager &pm, const MoeCpuPipelineOptions &options) {
  addBufferizedLowering(pm, "moe-cpu-pipeline", /*parallelContractions=*/false, options.shareLayers,
                        options.vectorBits, options.bf16DotProducts);
  if (options.outParams)
    pm.addPass(mlir::moe::createMoeResultsToOutParams());
  addUpstream(pm, "moe-cpu-pipeline", "buffer-deallocation-pipeline,convert-bufferization-to-memref");
  if (options.openmp) {
    // Marked loops that bufferized in place become scf.parallel, then
    // OpenMP worksharing loops. Each iteration writes its own elements with
    // a fixed reduction order: results do not depend on the thread count.
    addUpstream(pm, "moe-cpu-pipeline", "canonicalize");
    MoeParallelizeLoopsOptions parallelize;
    parallelize.parallelGenerics = true;
    pm.addNestedPass<func::FuncOp>(createMoeParallelizeLoops(parallelize));
    addUpstream(pm, "moe-cpu-pipeline", "convert-scf-to-openmp,canonicalize");
  }
  addCpuTail(pm, "moe-cpu-pipeline");
}

/// moe -> host functions whose every computation is a gpu.launch.
static void addGpuMapping(OpPassManager &pm, StringRef name, int64_t blockSize, bool outParams,
                          bool emulate, bool wgmma, bool shareLayers) {
  using namespace mlir::moe;
  // Emulated kernels run on host buffers: the exchanges stay MPI ones.
  addBufferizedLowering(pm, name, /*parallelContractions=*/true, shareLayers, /*vectorBits=*/512,
                        /*bf16DotProducts=*/false, /*deviceExchanges=*/!emulate);
  addUpstream(pm, name, "canonicalize,cse");
  // Results become out-parameters: the caller owns every buffer, the
  // function only allocates its scratch.
  if (outParams)
    pm.addPass(createMoeResultsToOutParams());
  MoeTensorCoreGemmOptions tensorCores;
  tensorCores.emulate = emulate;
  tensorCores.wgmma = wgmma;
  pm.addPass(createMoeTensorCoreGemm(tensorCores));
  addUpstream(pm, name, "func.func(convert-linalg-to-parallel-loops),canonicalize");
  pm.addNestedPass<func::FuncOp>(createMoeParallelizeLoops());
  MoeMapToGPUOptions mapping;
  mapping.blockSize = blockSize;
  mapping.emulate = emulate;
  pm.addNestedPass<func::FuncOp>(createMoeMapToGPU(mapping));
}

void mlir::moe::buildMoeGpuPipeline(OpPassManager &pm, const MoeGpuPipelineOptions &options) {
  addGpuMapping(pm, "moe-gpu-pipeline", options.blockSize, /*outParams=*/true, /*emulate=*/false,
                options.wgmma, options.shareLayers);
  addUpstream(pm, "moe-gpu-pipeline", "gpu-kernel-outlining,func.func(gpu-async-region)");
  pm.addPass(createMoeDeduplicateKernels());
  pm.addNestedPass<gpu::GPUModuleOp>(createMoeAlignWorkgroupBuffers());
  // Upstream's gpu-lower-to-nvvm-pipeline (its default options), spelled out
  // so that the kernels' compilation can go through the kernel cache.
  std::string target = (llvm::Twine("nvvm-attach-target{triple=nvptx64-nvidia-cuda chip=") + options.chip +
                        " features=" + options.features + " O=" + llvm::Twine(int(options.optLevel)) + "}")
                           .str();
  addUpstream(pm, "moe-gpu-pipeline",
              "convert-nvgpu-to-nvvm,gpu-kernel-outlining,convert-vector-to-scf,convert-scf-to-cf,"
              "convert-nvvm-to-llvm,convert-func-to-llvm,expand-strided-metadata," +
                  target +
                  ",lower-affine,convert-arith-to-llvm,convert-index-to-llvm{index-bitwidth=64},"
                  "canonicalize,cse,"
                  "gpu.module(strip-debuginfo,convert-gpu-to-nvvm{index-bitwidth=64},"
                  "llvm-optimize-for-nvvm-target,canonicalize,cse,reconcile-unrealized-casts),"
                  "gpu-to-llvm");
  MoeGpuModuleToBinaryOptions binaries;
  binaries.format = options.format;
  binaries.cacheDir = options.cacheDir;
  pm.addPass(createMoeGpuModuleToBinary(binaries));
  addUpstream(pm, "moe-gpu-pipeline",
              "convert-math-to-llvm,canonicalize,cse,reconcile-unrealized-casts");
}

void mlir::moe::buildMoeGpuEmulationPipeline(OpPassManager &pm,
                                             const MoeGpuEmulationPipelineOptions &options) {
  addGpuMapping(pm, "moe-gpu-emulation-pipeline", /*blockSize=*/256, /*outParams=*/false,
                /*emulate=*/true, options.wgmma, options.shareLayers);
  pm.addNestedPass<func::FuncOp>(createMoeGpuLaunchToLoops());
  addCpuTail(pm, "moe-gpu-emulation-pipeline");
}

void mlir::moe::buildMoeOptimizePipeline(OpPassManager &pm, const MoeOptimizeOptions &options) {
  if (options.pruneMaskedExperts)
    pm.addPass(createMoePruneMaskedExperts());
  if (options.mergeExperts)
    pm.addPass(createMoeMergeExperts()); // exact only: approximate stays off
  if (options.ranks > 0) {
    MoeShardExpertsOptions sharding;
    sharding.ranks = options.ranks;
    sharding.placement = options.placement;
    sharding.expertLoads.assign(options.expertLoads.begin(), options.expertLoads.end());
    sharding.replicas = options.replicas;
    pm.addPass(createMoeShardExperts(sharding));
  }
  pm.addPass(createMoeDecompose());
  if (options.eliminateZeroExperts)
    pm.addPass(createMoeEliminateZeroExperts());
  if (options.fuseRouting)
    pm.addPass(createMoeFuseRouting());
  if (options.fuseExperts)
    pm.addPass(createMoeFuseExperts());
  if (options.fuseExperts && options.foldSharedExpert)
    pm.addPass(createMoeFoldSharedExpert());
  if (options.canonicalize) {
    pm.addPass(createCanonicalizerPass());
    pm.addPass(createCSEPass());
  }
}

void mlir::moe::MoeOptimizeOptions::disableOptimizations() {
  pruneMaskedExperts = false;
  mergeExperts = false;
  eliminateZeroExperts = false;
  fuseExperts = false;
  fuseRouting = false;
  foldSharedExpert = false;
  canonicalize = false;
}

void mlir::moe::buildMoeImportStablehloPipeline(OpPassManager &pm, const MoeImportStablehloOptions &options) {
  pm.addPass(createMoeNormalizeStablehlo());
  // CSE lets the matchers compare values: JAX recomputes one_hot, slices...
  addUpstream(pm, "moe-import-stablehlo", "inline,symbol-dce,cse");
  MoeRaiseStablehloOptions raise;
  raise.keepOriginals = options.keepOriginals;
  raise.wrongForTesting = options.wrongForTesting;
  pm.addPass(createMoeRaiseStablehlo(raise));
  pm.addPass(createCanonicalizerPass()); // drops what a raised layer replaced
  pm.addPass(createMoeLowerStablehlo());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void mlir::moe::registerMoePipelines() {
  PassPipelineRegistration<MoeImportStablehloOptions>(
      "moe-import-stablehlo",
      "Turns a JAX StableHLO program into moe and upstream tensor-level IR: top-k spellings "
      "unified, helpers inlined, MoE layers recognised, everything else lowered to linalg/tensor",
      buildMoeImportStablehloPipeline);
  PassPipelineRegistration<MoeOptimizeOptions>(
      "moe-optimize",
      "The default moe optimisation pipeline: prune masked experts, merge linear experts (MEO), "
      "decompose, eliminate "
      "zero-computation experts, "
      "fuse the routing and the expert epilogues, fold the shared expert, canonicalize",
      buildMoeOptimizePipeline);
  PassPipelineRegistration<MoeCpuPipelineOptions>("moe-cpu-pipeline",
                             "Lowers moe programs to the LLVM dialect for the host CPU",
                             buildMoeCpuPipeline);
  PassPipelineRegistration<MoeGpuPipelineOptions>(
      "moe-gpu-pipeline",
      "Lowers moe programs to NVIDIA GPU kernels (a gpu.binary per kernel, cubin through ptxas) "
      "and host LLVM code that launches them through the mgpu* runtime functions",
      buildMoeGpuPipeline);
  PassPipelineRegistration<MoeGpuEmulationPipelineOptions>(
      "moe-gpu-emulation-pipeline",
      "The GPU program (moe-gpu-pipeline's kernels, threads run one after another) lowered for the "
      "host CPU: checks the GPU mapping numerically without a GPU (moe-run --gpu-emulation)",
      buildMoeGpuEmulationPipeline);
}
