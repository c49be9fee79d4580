//===- Pipelines.h - registered moe pass pipelines --------------*- C++ -*-===//

#ifndef MOE_PIPELINES_PIPELINES_H
#define MOE_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"

namespace mlir {
class OpPassManager;
namespace moe {

/// Options of `moe-optimize`.
struct MoeOptimizeOptions : public PassPipelineOptions<MoeOptimizeOptions> {
  PassOptions::Option<bool> pruneMaskedExperts{
      *this, "prune-masked-experts",
      llvm::cl::desc("Remove experts a constant -inf selection bias rules out (exact)"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> mergeExperts{
      *this, "merge-experts",
      llvm::cl::desc("MEO: merge linear experts under grouped routing where it saves work (exact)"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> eliminateZeroExperts{
      *this, "eliminate-zero-experts",
      llvm::cl::desc("Keep zero-computation experts out of dispatch (exact)"), llvm::cl::init(true)};
  PassOptions::Option<bool> fuseExperts{
      *this, "fuse-experts",
      llvm::cl::desc("Fuse the activation and the combine into the grouped GEMMs"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> fuseRouting{
      *this, "fuse-routing",
      llvm::cl::desc("Group router, scoring, selection and renormalization into one op"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> foldSharedExpert{
      *this, "fold-shared-expert",
      llvm::cl::desc("Fold a shared expert shaped like a routed one into the routed GEMMs"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> canonicalize{
      *this, "canonicalize", llvm::cl::desc("Run the canonicalizer and CSE after the moe passes"),
      llvm::cl::init(true)};
  PassOptions::Option<int64_t> ranks{
      *this, "ranks",
      llvm::cl::desc("Expert parallelism over this many processes (moe-shard-experts, after the "
                     "layer-level passes); 0: none"),
      llvm::cl::init(0)};
  PassOptions::Option<std::string> placement{
      *this, "placement", llvm::cl::desc("With ranks: contiguous, round-robin, balanced or split"),
      llvm::cl::init("contiguous")};
  PassOptions::ListOption<double> expertLoads{
      *this, "expert-loads", llvm::cl::desc("With ranks: routed tokens per expert (placement=balanced)")};
  PassOptions::Option<int64_t> replicas{
      *this, "replicas", llvm::cl::desc("With ranks: extra copies of the hottest experts (placement=balanced)"),
      llvm::cl::init(0)};

  /// Only what `ranks` asks for: no optimisation (tools' --optimize=false).
  void disableOptimizations();
};

/// The default optimisation pipeline: prune masked experts, merge linear
/// experts (MEO) where exact and profitable, with `ranks` the layers'
/// expert-parallel form (moe-shard-experts), decompose, eliminate
/// zero-computation experts, fuse the routing and the expert epilogues,
/// fold the shared expert, canonicalize.
void buildMoeOptimizePipeline(OpPassManager &pm, const MoeOptimizeOptions &options);

/// Options of `moe-cpu-pipeline`.
struct MoeCpuPipelineOptions : public PassPipelineOptions<MoeCpuPipelineOptions> {
  PassOptions::Option<bool> outParams{
      *this, "out-params",
      llvm::cl::desc("Results become caller-allocated out-parameters (the artifact ABI of "
                     "moe-compile, as on the GPU) instead of returned buffers"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> openmp{
      *this, "openmp",
      llvm::cl::desc("Run the loops the lowering marks independent (contraction rows x columns, "
                     "per-token routing and dispatch) on OpenMP threads (the program then needs "
                     "libomp; OMP_NUM_THREADS sets the count)"),
      llvm::cl::init(true)};
  PassOptions::Option<unsigned> vectorBits{
      *this, "vector-bits",
      llvm::cl::desc("Vector register width the contraction kernels are sized for: 512 "
                     "(AVX-512) or less (256-bit tiles); moe-run and moe-compile pass the "
                     "width of the CPU they compile for"),
      llvm::cl::init(512)};
  PassOptions::Option<bool> bf16DotProducts{
      *this, "bf16-dot-products",
      llvm::cl::desc("bf16 x bf16 contractions by AVX512_BF16 dot products (vdpbf16ps); moe-run "
                     "and moe-compile pass whether the CPU they compile for has them"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> shareLayers{
      *this, "share-layers",
      llvm::cl::desc("Compile identical MoE layers once: each becomes a call of one shared "
                     "function (moe-share-layers)"),
      llvm::cl::init(true)};
};

/// moe (either level) -> LLVM dialect for the host CPU: decompose, lower to
/// linalg/scf, bufferize, deallocate, lower to loops and to LLVM. Functions
/// get C interfaces so moe-run and other hosts can call them.
void buildMoeCpuPipeline(OpPassManager &pm, const MoeCpuPipelineOptions &options = {});
/// Options of `moe-gpu-pipeline`.
struct MoeGpuPipelineOptions : public PassPipelineOptions<MoeGpuPipelineOptions> {
  PassOptions::Option<std::string> chip{
      *this, "chip", llvm::cl::desc("The GPU to compile for (sm_80, sm_90, sm_90a, ...)"),
      llvm::cl::init("sm_90")};
  PassOptions::Option<std::string> features{
      *this, "features",
      llvm::cl::desc("PTX features; the PTX version must know the chip (+ptx80 covers sm_90)"),
      llvm::cl::init("+ptx80")};
  PassOptions::Option<int> optLevel{*this, "opt-level",
                                    llvm::cl::desc("Optimisation level of the device code (0-3)"),
                                    llvm::cl::init(3)};
  PassOptions::Option<std::string> format{
      *this, "format",
      llvm::cl::desc("What the gpu.binary holds: bin (cubin through ptxas), isa (PTX text, "
                     "JIT-compiled by the driver), fatbin"),
      llvm::cl::init("bin")};
  PassOptions::Option<std::string> cacheDir{
      *this, "cache-dir",
      llvm::cl::desc("Directory of compiled kernels: a kernel compiled before (same IR, chip, "
                     "features, format, ptxas, compiler) is taken from it instead of running "
                     "LLVM and ptxas; new ones are stored (empty: no cache)"),
      llvm::cl::init("")};
  PassOptions::Option<int64_t> blockSize{
      *this, "block-size", llvm::cl::desc("Threads per block of the parallel-loop kernels"),
      llvm::cl::init(256)};
  PassOptions::Option<bool> wgmma{
      *this, "wgmma",
      llvm::cl::desc("Grouped GEMMs as Hopper kernels (TMA loads, mbarrier pipeline, wgmma) instead "
                     "of mma.sync; needs chip=sm_90a"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> shareLayers{
      *this, "share-layers",
      llvm::cl::desc("Compile identical MoE layers once: each becomes a call of one shared "
                     "function (moe-share-layers)"),
      llvm::cl::init(true)};
};

/// moe (either level) -> host LLVM dialect + gpu.binary: decompose, lower
/// with parallel contractions, bufferize with results as out-parameters,
/// turn independent loops into kernels (moe-parallelize-loops,
/// moe-map-to-gpu), outline and compile them with NVVM and ptxas. The host
/// code calls the mgpu* runtime functions (lib/Runtime/CudaRuntime.cpp).
void buildMoeGpuPipeline(OpPassManager &pm, const MoeGpuPipelineOptions &options);

/// What moe-gpu-pipeline builds before NVVM (the kernels as gpu.launch),
/// with every launch run as host loops and lowered for the CPU; results stay
/// return values. It checks the GPU mapping numerically on a machine
/// without a GPU (moe-run --gpu-emulation).
struct MoeGpuEmulationPipelineOptions : public PassPipelineOptions<MoeGpuEmulationPipelineOptions> {
  PassOptions::Option<bool> wgmma{
      *this, "wgmma",
      llvm::cl::desc("Emulate the sm_90a grouped GEMM kernels (moe-gpu-pipeline's wgmma option) instead "
                     "of the mma.sync ones"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> shareLayers{
      *this, "share-layers",
      llvm::cl::desc("Compile identical MoE layers once: each becomes a call of one shared "
                     "function (moe-share-layers)"),
      llvm::cl::init(true)};
};
void buildMoeGpuEmulationPipeline(OpPassManager &pm, const MoeGpuEmulationPipelineOptions &options = {});

/// A JAX StableHLO program -> moe + upstream tensor-level IR: one spelling
/// for top-k (moe-normalize-stablehlo), private helpers inlined and
/// dropped, MoE layers recognised (moe-raise-stablehlo), the rest lowered
/// (moe-lower-stablehlo), canonicalized. The tools run it on every input
/// that holds stablehlo or chlo ops.
struct MoeImportStablehloOptions : public PassPipelineOptions<MoeImportStablehloOptions> {
  PassOptions::Option<bool> keepOriginals{
      *this, "keep-originals",
      llvm::cl::desc("Keep the ops each recognised layer replaces, in a moe.raising_check with "
                     "the layer, for the raising check (--verify-raising) to choose"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> wrongForTesting{
      *this, "wrong-for-testing",
      llvm::cl::desc("Tests only: raise every layer with its renormalisation flipped"),
      llvm::cl::init(false)};
};
void buildMoeImportStablehloPipeline(OpPassManager &pm, const MoeImportStablehloOptions &options = {});

/// Registers `moe-import-stablehlo`, `moe-optimize`, `moe-cpu-pipeline`, `moe-gpu-pipeline` and
/// `moe-gpu-emulation-pipeline`.
void registerMoePipelines();
} // namespace moe
} // namespace mlir

#endif // MOE_PIPELINES_PIPELINES_H
