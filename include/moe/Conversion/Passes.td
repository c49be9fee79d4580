//===- Passes.td - moe conversion passes --------------------*- tablegen -*-===//

#ifndef MOE_CONVERSION_PASSES_TD
#define MOE_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// Lowering to upstream dialects
//===----------------------------------------------------------------------===//

def MoeNormalizeStablehlo : Pass<"moe-normalize-stablehlo", "::mlir::ModuleOp"> {
  let summary = "Rewrites JAX's other spellings of top_k, ragged_dot and square into one each";
  let description = [{
    JAX writes top-k as `chlo.top_k`, as `stablehlo.composite "chlo.top_k"`
    (after `jax.export` serialisation), as `stablehlo.custom_call @mhlo.topk`
    or expanded into iota + sort (descending, stable) + slices. All four
    become one `chlo.top_k`; `stablehlo.composite "chlo.ragged_dot"` and
    `custom_call @chlo.ragged_dot` become `chlo.ragged_dot`. Any other
    composite becomes a `func.call` of its decomposition, which the
    `inline` pass then inlines. `chlo.square` (JAX's `lax.square`)
    becomes `stablehlo.multiply %x, %x`. Runs first in `moe-import-stablehlo`.
  }];
  let dependentDialects = ["::mlir::func::FuncDialect", "::mlir::moe::chlo::ChloDialect",
                           "::mlir::moe::stablehlo::StablehloDialect"];
}

def MoeRaiseStablehlo : Pass<"moe-raise-stablehlo", "::mlir::ModuleOp"> {
  let summary = "Recognises MoE computations in inlined StableHLO and rebuilds them as chlo/moe ops";
  let description = [{
    Runs after `inline` (patterns span JAX's private helpers such as
    `@cumsum`). JAX's CPU expansion of `lax.ragged_dot` (the lhs broadcast
    over groups, masked to each group's rows by comparing an iota with the
    exclusive and inclusive cumulative group sizes, then one dot_general
    contracting groups and features) becomes `chlo.ragged_dot` again, so it
    runs as a grouped GEMM (`moe.grouped_matmul`) instead of G dense ones.
    A masked dot_general that differs from the expansion stays as it is.

    Then each dropless MoE layer (softmax top-k routing, a stable argsort of
    the expert ids, rows gathered by slot // k, bincount group sizes,
    SwiGLU experts as three ragged_dots, rows weighted by their gate and
    scatter-added back) becomes one `moe.layer` with the weights transposed
    to moe's layouts. So does a dense top-k-masked mixture (all experts
    computed, SwiGLU outputs weighted by a one-hot top-k gate, contracted
    with the down weights), which then computes only the selected experts,
    and so does a GShard/Switch layer (one-hot dispatch and combine masks
    with capacity, einsum dispatch, relu/GELU experts), with
    `#moe.capacity<tokens = C, drop = slot_position, pad = true>`, and a
    MoE++ mixture (dense FFN experts plus copy and constant experts at later
    gate columns; unread columns are zero experts).
    A candidate that differs anywhere gets a remark naming the difference
    and stays plain ops.

    With `keep-originals` the ops a layer was recognised in stay: the
    layer's uses read `moe.raising_check %layer, %original`, for the raising
    check (`--verify-raising`) to keep one of the two.
  }];
  let options = [
    Option<"keepOriginals", "keep-originals", "bool", /*default=*/"false",
           "Keep the recognised ops next to each layer in a moe.raising_check">,
    Option<"wrongForTesting", "wrong-for-testing", "bool", /*default=*/"false",
           "Tests only: flip every raised layer's renormalisation (a wrong matcher)">,
  ];
  let dependentDialects = ["::mlir::moe::chlo::ChloDialect", "::mlir::moe::MoeDialect"];
}

def MoeLowerStablehlo : Pass<"moe-lower-stablehlo", "::mlir::ModuleOp"> {
  let summary = "Lowers stablehlo and chlo ops to linalg, tensor, arith, math, scf and moe";
  let description = [{
    Every op of the StableHLO subset becomes upstream tensor-level IR:
    elementwise ops, broadcasts and contractions `linalg.generic` (f32
    accumulation for narrower floats), reductions and windows
    `linalg.generic` reductions running the reducer body on scalars, shape
    ops `tensor` slices and reshapes, gather a `linalg.generic` reading with
    `tensor.extract`, scatter an in-order `scf.for` nest (deterministic),
    sort a stable rank-and-permute in `linalg.generic`, `chlo.top_k`
    `moe.topk` and `chlo.ragged_dot` `moe.grouped_matmul`, `while` an
    `scf.while` whose 0-d loop values (counters, bounds) are scalars and
    whose elementwise arithmetic on them is scalar `arith`. Shapes must be
    static; an unsupported op or a dynamic shape is a located error.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect", "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect", "::mlir::moe::MoeDialect"
  ];
}

def ConvertMoeToLinalg : Pass<"convert-moe-to-linalg", "::mlir::ModuleOp"> {
  let summary = "Lowers every moe op to linalg, tensor, arith, math, scf and vector";
  let description = [{
    The executable meaning of the dialect: after this pass a program has no
    moe op left and runs through the upstream bufferization and LLVM
    lowering (`moe-cpu-pipeline`). `moe.layer` is first decomposed (as
    `moe-decompose` does); every decomposed op then has its own lowering, so a
    program can be run at any point of the moe pipeline and compared.

    Contractions (router, grouped matmuls, dense FFN, merges) become
    cache-tiled `scf.for` nests around a register tile of `vector.fma`
    dot products accumulating in f32 (sized by `vector-bits`; quantised
    weights dequantised in the kernel's loads), or with
    `parallel-contractions` one `linalg.generic` each; selections and the dispatch plan,
    which are sequential over tokens, become `scf.for` loops building their
    small results with `tensor.insert`. An op that cannot be lowered is a
    located error, and the pass fails.

    Loops whose iterations write disjoint elements (one token row, one
    expert column) carry the unit attribute `moe.parallel`, which
    `moe-parallelize-loops` reads after bufferization.

    With `parallel-contractions`, a bf16/f16 `moe.grouped_matmul_combine`
    scales its f32 rows by their slots' combine weights in a generic marked
    `moe.row_scale` (the weights scattered into row order by a parallel loop
    over tokens) and the combine sums the scaled rows: the same products and
    slot-order sums (bit-identical), with the scaling left for the
    tensor-core GEMM's epilogue.
  }];
  let options = [
    Option<"parallelContractions", "parallel-contractions", "bool", /*default=*/"false",
           "Emit every contraction as one parallel linalg.generic (grouped "
           "matmuls gather each row's expert weights) instead of tiled vector "
           "kernels: the form the GPU pipeline maps to threads">,
    Option<"vectorBits", "vector-bits", "unsigned", /*default=*/"512",
           "Vector register width (bits) the CPU contraction kernels are sized "
           "for: 512 (AVX-512) or less (AVX2 and narrower: 256-bit tiles)">,
    Option<"bf16DotProducts", "bf16-dot-products", "bool", /*default=*/"false",
           "With 512-bit kernels, contract bf16 activations with bf16 weights "
           "by AVX512_BF16 dot products (x86vector.avx512.dot: two products "
           "per f32 lane) instead of widening both to f32">,
    Option<"deviceExchanges", "device-exchanges", "bool", /*default=*/"false",
           "The expert-parallel exchanges move device buffers: call the "
           "runtime's NCCL entry points (moeEpGpu*) instead of the MPI ones "
           "on host buffers (the GPU pipeline; its emulation keeps host buffers)">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect", "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect", "::mlir::vector::VectorDialect",
    "::mlir::x86vector::X86VectorDialect",
    "::mlir::bufferization::BufferizationDialect", "::mlir::memref::MemRefDialect",
    "::mlir::func::FuncDialect"
  ];
}

def MoeReadOnlyArguments : Pass<"moe-read-only-arguments", "::mlir::func::FuncOp"> {
  let summary = "Marks the tensor arguments of public functions read-only for bufferization";
  let description = [{
    One-shot bufferization may write a result into the buffer of a tensor
    argument (`%y = math.tanh %x` overwrites %x). For a function that callers
    run on their own inputs, again and again (moe-run, moe-exec, a serving
    system), that would corrupt the inputs. This pass puts
    `bufferization.writable = false` on every tensor argument of public
    functions with a body; bufferization then copies where it would have
    written in place. Both CPU and GPU pipelines run it first.

    Example:

    ```mlir
    func.func @f(%x: tensor<4xf32>) -> tensor<4xf32>
    // becomes
    func.func @f(%x: tensor<4xf32> {bufferization.writable = false}) -> tensor<4xf32>
    ```
  }];
}

def MoeFillInitReads : Pass<"moe-fill-init-reads", "::mlir::func::FuncOp"> {
  let summary = "All-parallel linalg.generic ops read the value of a filled init, not the init";
  let description = [{
    Upstream `linalg-fuse-elementwise-ops` fuses an all-parallel producer
    into a consumer with more loops even when the producer's payload reads
    its init (`out + x` on a zero fill); the fused op then re-adds the init
    on every iteration of the consumer's extra loops, a wrong result. For an
    init that is a `linalg.fill`, this pass makes the payload read the
    fill's scalar instead and the init the fill's (unread) destination, so
    the fusion is exact. The CPU pipeline runs it before that fusion (the
    GPU pipeline does not fuse).

    Example:

    ```mlir
    %z = linalg.fill ins(%c0 : f32) outs(%e : tensor<4x8xf32>) -> tensor<4x8xf32>
    %y = linalg.generic {... iterator_types = ["parallel", "parallel"]}
        ins(%a : tensor<4x8xf32>) outs(%z : tensor<4x8xf32>) {
    ^bb0(%in: f32, %out: f32):
      %s = arith.addf %out, %in : f32
      linalg.yield %s : f32
    } -> tensor<4x8xf32>
    // becomes: outs(%e ...) and %s = arith.addf %c0, %in : f32
    ```
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect"];
}

def MoeLocalizeEmptyTensors : Pass<"moe-localize-empty-tensors", "::mlir::func::FuncOp"> {
  let summary = "A tensor.empty used inside a nested region gets a copy there";
  let description = [{
    CSE merges identical `tensor.empty` ops of sibling regions (the branches
    of an `scf.index_switch` or `scf.if` from `stablehlo.case`, a loop body)
    into one dominating op. One-shot bufferization gives all its uses one
    buffer and misses the conflict when a branch's result lives in that
    buffer while a later op outside writes it, so the branch's result was
    overwritten (a wrong answer). This pass gives each use in another region
    its own `tensor.empty` next to it. Both pipelines run it right before
    bufferization.

    Example:

    ```mlir
    %e = tensor.empty() : tensor<4xf32>
    %r = scf.if %p -> (tensor<4xf32>) {
      %a = linalg.generic ... outs(%e : tensor<4xf32>) ...
      scf.yield %a : tensor<4xf32>
    } else { ... }
    %b = linalg.generic ... outs(%e : tensor<4xf32>) ...
    // becomes: the generic inside the branch writes a tensor.empty of its own.
    ```
  }];
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
}

def MoeEmptyCollapses : Pass<"moe-empty-collapses", "::mlir::func::FuncOp"> {
  let summary = "A tensor.collapse_shape of a tensor with no elements becomes a tensor.empty";
  let description = [{
    A graph with an empty tensor (an index list sliced to nothing, a
    broadcast to a size-0 dim) can leave `tensor.collapse_shape` of a
    source whose static size 0 shares a group with dynamic sizes. One-shot
    bufferization types the buffer's collapse as static 0 in that group,
    which `memref.collapse_shape` rejects (a dynamic group must collapse to
    a dynamic size), and the lowering failed. Such a tensor has no
    elements, so its collapse is a `tensor.empty` of the result's sizes
    (0 for the groups holding the 0), cast to the result type. Both
    pipelines run it right before bufferization.

    Example:

    ```mlir
    %c = tensor.collapse_shape %t [[0, 1, 2]] : tensor<?x?x0xi64> into tensor<?xi64>
    // becomes
    %e = tensor.empty() : tensor<0xi64>
    %c = tensor.cast %e : tensor<0xi64> to tensor<?xi64>
    ```
  }];
  let dependentDialects = ["::mlir::tensor::TensorDialect", "::mlir::arith::ArithDialect"];
}

def MoeResultsToOutParams : Pass<"moe-results-to-out-params", "::mlir::ModuleOp"> {
  let summary = "Buffer results become caller-allocated out-parameters where their shapes allow";
  let description = [{
    Upstream `buffer-results-to-out-params` (every function, public ones
    included, static allocations hoisted to the callers) for the functions
    whose results it can convert: public functions (the artifact ABI: an
    entry with a dynamically shaped result is an error, as upstream) and
    private functions whose results all have static shapes. A private
    function with a dynamically shaped result (a layer shared by
    moe-share-layers in a dynamic-batch model) keeps returning its buffers;
    its callers free them.

    A public function's copy of a dynamically shaped result into its
    out-parameter (sized by the caller; an artifact sizes every dynamic
    dimension as its one token count) first calls
    `moeRuntimeCheckOutputDim(output, dim, got, want)` for each dynamic
    dimension (libmoe_runtime records the first pair that differs; the
    artifact call then fails with it) and copies only the part both hold:
    never past the caller's buffer.

    Example:

    ```mlir
    func.func private @layer(%x: memref<8x32xf32>) -> memref<8x32xf32>
    // becomes
    func.func private @layer(%x: memref<8x32xf32>, %out: memref<8x32xf32>)
    ```
  }];
  let dependentDialects = ["::mlir::memref::MemRefDialect", "::mlir::arith::ArithDialect",
                           "::mlir::func::FuncDialect"];
}

//===----------------------------------------------------------------------===//
// GPU mapping (after bufferization)
//===----------------------------------------------------------------------===//

def MoeParallelizeLoops : Pass<"moe-parallelize-loops", "::mlir::func::FuncOp"> {
  let summary = "Turns the loops convert-moe-to-linalg marked independent into scf.parallel";
  let description = [{
    Runs on bufferized code. An `scf.for` with the `moe.parallel` attribute
    becomes an `scf.parallel` when bufferization kept it in place: it has no
    results left (each iteration writes its own elements of buffers defined
    outside). A marked loop with results was bufferized out of place and
    stays sequential. A parallel loop whose body is exactly another parallel
    loop with bounds defined outside is merged with it into one
    multi-dimensional loop, so that the GPU mapping sees the whole
    iteration space (token × column, not token alone).

    Allocations then move up to their operands, and adjacent top-level
    parallel loops fuse when they agree on their leading dimensions and every
    buffer one writes and the other touches is accessed, in both, only in the
    rows of the iteration's own leading indices (a fill and the loop
    accumulating into it; a T x K fill, the top-k and the renormalisation of
    each token): fewer kernels. An access through a view (a subview, a
    reshape) counts against the viewed buffer and is never row-local. The
    longer loop's extra dimensions then run
    sequentially inside, only when its body is straight-line with at most
    256 static iterations there.

    A `memref.copy` that is not a top-level copy between contiguous
    buffers (a strided copy, or one inside a loop) becomes a parallel loop
    of loads and stores: only the others can be a device memcpy.

    With `parallel-generics` (the CPU pipeline), every top-level
    `linalg.generic` whose outputs each index all of its parallel
    dimensions (so that no two iterations of them write one element) becomes
    an `scf.parallel` over those dimensions with its reductions as
    sequential loops inside, in their order: the permutation's row gather,
    a gated activation, the slot combine, the elementwise chains of an
    imported model run on every thread, with the same result for any thread
    count. Generics inside loops stay as they are.

    Example:

    ```mlir
    scf.for %t = %c0 to %n step %c1 {
      memref.store %v, %buf[%t] : memref<?xf32>
    } {moe.parallel}
    // becomes
    scf.parallel (%t) = (%c0) to (%n) step (%c1) {
      memref.store %v, %buf[%t] : memref<?xf32>
    }
    ```
  }];
  let options = [
    Option<"parallelGenerics", "parallel-generics", "bool", /*default=*/"false",
           "Also run each top-level linalg.generic as an scf.parallel over its parallel dimensions (the CPU pipeline; the GPU mapping reads the generics themselves)">
  ];
  let dependentDialects = ["::mlir::scf::SCFDialect", "::mlir::arith::ArithDialect",
                           "::mlir::memref::MemRefDialect", "::mlir::linalg::LinalgDialect"];
}

def MoeTensorCoreGemm : Pass<"moe-tensor-core-gemm", "::mlir::ModuleOp"> {
  let summary = "Runs bf16/f16 grouped matmuls on tensor cores (mma.sync on sm_80+, or TMA + wgmma on sm_90a)";
  let description = [{
    Runs on bufferized code, before the loops are mapped. Each grouped
    matmul that `convert-moe-to-linalg{parallel-contractions}` built (a
    `linalg.generic` with the `moe.grouped_gemm` attribute) whose operands
    are both bf16 or both f16 becomes one `gpu.launch`: 64 x 64 output tiles
    per block, four warps of 32 x 32, K in steps of 32 staged in shared
    memory (rows padded against bank conflicts; with K a multiple of 8 by
    16-byte `nvgpu.device_async_copy` into two stages, the next K step
    loading while the current one multiplies), fragments loaded with
    `nvgpu.ldmatrix`, products by `nvvm.mma.sync` m16n8k16 with f32
    accumulators in registers. A block visits only the experts whose row
    range meets its rows, so an expert with no tokens costs no weight reads.
    f32 grouped matmuls keep the one-thread-per-element form.

    A gated activation that is the only reader of the result (the GLU
    generic of `moe.grouped_matmul_act`: `act(h[:, :F]) * h[:, F:]` into an
    f32 buffer) is applied in the epilogue: each warp stages 16 gate and the
    same 16 up weight rows, the activation's scalar body is cloned onto each
    thread's (gate, up) accumulator pairs, and the `[R, 2F]` intermediate
    disappears. When the f32 result (or the activation's) is read only by an
    elementwise `arith.truncf` generic, the epilogue stores the rounded
    value and the f32 buffer disappears too. A `moe.row_scale` generic on
    the result (the combine weights of `moe.grouped_matmul_combine`) is
    applied in the epilogue as well: each row times its weight.

    With `emulate` the same tiling, staging and epilogue are built for one
    thread per block with the products as scalar loops, so that
    `moe-gpu-launch-to-loops` can run the kernel on the CPU (the
    `moe-gpu-emulation-pipeline` uses it).

    With `wgmma` (sm_90a only; needs K a multiple of 8 and contiguous
    operands, otherwise the mma.sync kernel is built) the Hopper form is
    built instead: one warpgroup per block computes a 64 x 128 tile (with
    the GLU: 64 gate and the same 64 up columns); thread 0 issues TMA loads
    of 64 x 64 boxes (128-byte swizzle) into four shared stages, each with
    an mbarrier counting the bytes; `nvvm.wgmma.mma_async` m64n128k16 reads
    both operands from shared memory through matrix descriptors; after each
    expert's K loop the accumulators go through shared memory to the same
    fused epilogue, masked to that expert's rows. The host creates the TMA
    descriptors before the launch (`moeTensorMapCreateBF16`/`F16`, in the
    moe runtime), so the pass runs on the module to declare them. With
    `emulate` too, the Hopper kernel is built for one thread per block: the
    TMA boxes as copies into plain tiles, scalar products, the accumulators
    through wgmma's fragment layout into the same epilogue.

    Example (the kernel that replaces the generic, abridged):

    ```mlir
    gpu.launch blocks(%bx, %by, %bz) in (%gx = %ntiles, %gy = %mtiles, %gz = %c1)
               threads(%tx, %ty, %tz) in (%sx = %c128, %sy = %c1, %sz = %c1)
               workgroup(%a : memref<64x40xbf16, #gpu.address_space<workgroup>>,
                         %w : memref<64x40xbf16, #gpu.address_space<workgroup>>) {
      %acc = scf.for %e = %c0 to %groups step %c1 iter_args(...) {
        ... gpu.barrier, stage, gpu.barrier, nvgpu.ldmatrix, nvvm.mma.sync ...
      }
      ... memref.store of the accumulators ...
    }
    ```
  }];
  let options = [
    Option<"emulate", "emulate", "bool", /*default=*/"false",
           "Build the kernel for moe-gpu-launch-to-loops (one thread per block, scalar products)">,
    Option<"wgmma", "wgmma", "bool", /*default=*/"false",
           "Build the sm_90a kernel (TMA loads into a 4-stage mbarrier pipeline, wgmma m64n128k16); "
           "the module must be compiled for sm_90a">
  ];
  let dependentDialects = ["::mlir::gpu::GPUDialect", "::mlir::nvgpu::NVGPUDialect",
                           "::mlir::NVVM::NVVMDialect", "::mlir::LLVM::LLVMDialect",
                           "::mlir::vector::VectorDialect", "::mlir::memref::MemRefDialect",
                           "::mlir::arith::ArithDialect", "::mlir::scf::SCFDialect",
                           "::mlir::func::FuncDialect"];
}

def MoeAlignWorkgroupBuffers : Pass<"moe-align-workgroup-buffers", "::mlir::gpu::GPUModuleOp"> {
  let summary = "Aligns the shared-memory buffers of outlined kernels for vector access";
  let description = [{
    Runs after `gpu-kernel-outlining`. Every workgroup attribution of every
    `gpu.func` without an `llvm.align` attribute gets `llvm.align =
    alignment` (16 by default). The NVVM lowering otherwise aligns a buffer
    only to its element size (2 bytes for bf16), while `ldmatrix` and
    16-byte `cp.async` need 16-byte aligned shared addresses.

    ```mlir
    gpu.func @k() workgroup(%tile : memref<64x40xbf16, #gpu.address_space<workgroup>>) kernel
    // becomes
    gpu.func @k() workgroup(%tile : memref<64x40xbf16, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}) kernel
    ```
  }];
  let options = [
    Option<"alignment", "alignment", "int64_t", /*default=*/"16",
           "byte alignment of every workgroup buffer (a power of two)">,
  ];
}

def MoeMapToGPU : Pass<"moe-map-to-gpu", "::mlir::func::FuncOp"> {
  let summary = "Places every computation of a bufferized host function on the GPU";
  let description = [{
    After this pass the host function only allocates device memory, computes
    sizes and launches: no memory of the program is touched on the host.

    - Each top-level `scf.parallel` without reductions becomes one
      `gpu.launch` over its flattened iteration space, `block-size` threads
      per block, the innermost dimension fastest (consecutive threads touch
      consecutive elements). Threads past the end do nothing.
    - An iteration that is a long reduction of one f32 element (a constant
      trip count of at least 64, an addf, mulf, maximumf or minimumf
      combiner, values read along the buffers' last dimension: a router's
      logits) gets a warp of 32 threads instead of one: each lane reduces
      every 32nd step in a register, a butterfly of `gpu.shuffle xor`
      combines the lanes, and lane 0 adds the total to the stored value and
      runs the rest of the iteration. Sums and products are then rounded in
      another order than the loop's (max and min are exact).
    - Any other computation (sequential `scf.for`, a parallel loop with
      reductions, loads and stores) becomes a single-thread launch.
    - Inside the kernels, an element that a sequential loop reads and writes
      at indices the loop does not change (the accumulator of a lowered
      reduction), and that nothing else in the loop can reach, is kept in a
      register across the loop: loaded once before it and stored once after.
    - A sequential `scf.for` without results that has parallel loops in its
      body (Gumbel samples, for example) stays on the host and its body is
      mapped the same way: it launches kernels every iteration. So does an
      `scf.while` whose loop values are scalars and buffers (a
      `jax.lax.scan` over layers): its condition and its body's scalar
      arithmetic run on the host. Operations that pass SSA values to
      each other share one launch, so no value ever flows from device to
      host; a copy or deallocation between them joins the launch (a copy
      inside a kernel becomes a loop).
    - `memref.alloc` in host code becomes `gpu.alloc` (freed with
      `gpu.dealloc` before the function returns); inside kernels, a
      static-size scratch `memref.alloc` becomes `memref.alloca`.
    - `memref.copy` in host code becomes `gpu.memcpy`; constant globals are
      read inside the kernels that use them (kernel outlining copies them to
      the device module).
    - A `gpu.launch` that exists already (`moe-tensor-core-gemm`) stays a
      kernel of its own; a buffer the function returns, or a view of one,
      is not freed.

    Errors (located): a dynamic-size allocation inside a kernel, a copy
    between strided buffers (moe-parallelize-loops turns those into loops
    first), a value computed on the device that the function returns.
  }];
  let options = [
    Option<"blockSize", "block-size", "int64_t", /*default=*/"256",
           "Threads per block for the parallel loops">,
    Option<"emulate", "emulate", "bool", /*default=*/"false",
           "Build warp reductions for moe-gpu-launch-to-loops: a thread per iteration running the "
           "32 lanes one after another, combined in the order of the GPU's shuffles">
  ];
  let dependentDialects = ["::mlir::gpu::GPUDialect", "::mlir::memref::MemRefDialect",
                           "::mlir::arith::ArithDialect", "::mlir::scf::SCFDialect"];
}

def MoeDeduplicateKernels : Pass<"moe-deduplicate-kernels", "::mlir::ModuleOp"> {
  let summary = "Makes launches of identical outlined kernels launch one of them";
  let description = [{
    `gpu-kernel-outlining` makes a `gpu.module` per launch, so the same
    computation at many places of a program (a residual add after every
    layer of a deep model) becomes as many kernels, each compiled by LLVM
    and ptxas. This pass compares the outlined modules (same ops, attributes
    and types, locations aside; a module holding one kernel is compared
    without that kernel's name, which follows the function it was outlined
    from) and points the launches of each duplicate at the first equal
    module, then erases the duplicates. Exact: the kernels are the same code.

    Example:

    ```mlir
    gpu.launch_func @main_kernel::@main_kernel ...
    gpu.launch_func @main_kernel_0::@main_kernel ...   // same body
    // becomes
    gpu.launch_func @main_kernel::@main_kernel ...
    gpu.launch_func @main_kernel::@main_kernel ...
    ```
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

def MoeGpuModuleToBinary : Pass<"moe-gpu-module-to-binary", "::mlir::ModuleOp"> {
  let summary = "Compiles every gpu.module to a gpu.binary, reusing kernels compiled before";
  let description = [{
    Upstream `gpu-module-to-binary` (NVVM -> PTX -> ptxas) with a kernel
    cache: each `gpu.module` is keyed by a hash of its body and target
    (chip, features, optimisation level), the output format, the ptxas it
    would run (path, size, date) and the compiler's own executable. A key
    found in `cache-dir` becomes its stored `gpu.binary` without running
    LLVM or ptxas; the others are compiled as upstream does (in parallel on
    the context's threads, one LLVM context and one ptxas process per
    kernel) and stored.
    Entries are written atomically and checksummed (a corrupted one is
    rebuilt). The objects keep no compile-time measurements (upstream's
    `*TimeInMs` properties), so that the output is the same program text
    whether a kernel was compiled or reused. With a cache, a remark on the
    module says how many kernels
    were reused and compiled. Without `cache-dir` it is
    `gpu-module-to-binary`.

    Example:

    ```mlir
    gpu.module @k [#nvvm.target<chip = "sm_90">] { llvm.func @k() ... }
    // becomes
    gpu.binary @k [#gpu.object<#nvvm.target<chip = "sm_90">, bin = "...">]
    ```
  }];
  let options = [
    Option<"format", "format", "std::string", /*default=*/"\"bin\"",
           "What the gpu.binary holds: bin (cubin), isa (PTX), fatbin">,
    Option<"cacheDir", "cache-dir", "std::string", /*default=*/"",
           "Directory of compiled kernels (empty: no cache)">
  ];
  let statistics = [
    Statistic<"cacheHits", "cache-hits", "Kernels taken from the cache">,
    Statistic<"compiled", "compiled", "Kernels compiled (and stored)">
  ];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

def MoeGpuLaunchToLoops : Pass<"moe-gpu-launch-to-loops", "::mlir::func::FuncOp"> {
  let summary = "Runs GPU launches as host loops: the GPU program, checkable on a CPU";
  let description = [{
    For testing the GPU mapping without a GPU. Every `gpu.launch` becomes
    loops over its blocks and threads (block ids, thread ids and sizes
    substituted), `gpu.alloc` / `gpu.dealloc` / `gpu.memcpy` become their
    memref forms. The kernels moe-map-to-gpu builds use no shared memory
    and no barriers, so running their threads one after another computes
    what the GPU computes; `moe-gpu-emulation-pipeline` then lowers the
    result with the CPU tail and moe-run (`--gpu-emulation`) executes it, so
    the numerical tests check every kernel body. A launch with a barrier or
    workgroup memory is an error.

    Example:

    ```mlir
    gpu.launch blocks(%bx, %by, %bz) in (%gx = %n, %gy = %c1, %gz = %c1)
               threads(%tx, %ty, %tz) in (%sx = %c256, %sy = %c1, %sz = %c1) {
      ...
      gpu.terminator
    }
    // becomes
    scf.for %bx = %c0 to %n step %c1 {
      scf.for ... {   // by, bz, tx, ty, tz
        ...
      }
    }
    ```
  }];
  let dependentDialects = ["::mlir::scf::SCFDialect", "::mlir::memref::MemRefDialect",
                           "::mlir::arith::ArithDialect"];
}

#endif // MOE_CONVERSION_PASSES_TD
