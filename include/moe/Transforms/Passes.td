//===- Passes.td - moe transformation passes ----------------*- tablegen -*-===//
//
// Passes are grouped under banners and kept alphabetical within a group.
// Every pass is prefixed `moe-`.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TRANSFORMS_PASSES_TD
#define MOE_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// Analysis
//===----------------------------------------------------------------------===//

def MoeCostReport : Pass<"moe-cost-report", "::mlir::ModuleOp"> {
  let summary = "Prints FLOPs, bytes and expected tokens per expert for every moe op";
  let description = [{
    A table per function with moe ops: for each op, the contraction FLOPs
    (2 per multiply-add: exact for a given token count), other arithmetic,
    the bytes of weights read and of activations read and written; then the
    totals and, for each dispatch, the expected tokens per expert. A function
    with `moe.layer` ops is reported as its decomposition (the IR is left
    unchanged). Run it before and after a pipeline to see what the pipeline
    saves: `moe-opt --moe-cost-report --moe-optimize --moe-cost-report`.

    Routing assumption: every filled slot picks uniformly among the experts
    its selection ranges over; threshold selection fills all its slots (an
    upper bound); an expert with a capacity keeps min(expected, C) tokens and
    computes C rows when padded. Expected weight bytes count an expert only
    when it computes a row: with T tokens each picking k distinct experts out
    of E, an expert is used with probability 1 - (1 - k/E)^T (always, when
    padded to capacity).
  }];
  let options = [
    Option<"tokens", "tokens", "int64_t", /*default=*/"0",
           "Token count to assume where the token dimension is dynamic">
  ];
}

//===----------------------------------------------------------------------===//
// Decomposition
//===----------------------------------------------------------------------===//

def MoeDecompose : Pass<"moe-decompose"> {
  let summary = "Splits moe.layer into routing, dispatch, expert and combine ops";
  let description = [{
    `moe.layer` says what a layer computes; the optimisation passes and the
    lowerings work on its parts. This pass is the only bridge between the two
    levels: every `moe.layer` becomes

      router -> [gating_residual] -> score -> selection -> [renormalize]
        -> dispatch -> permute -> grouped_matmul -> activation -> grouped_matmul
        -> combine [+ zero_compute] [+ dense_ffn (shared)]

    with the same results. Zero-computation experts still take part in
    dispatch (their rows compute nothing in the FFN GEMMs): removing them is
    the job of the zero-computation elimination pass.

    Example:
    ```mlir
    %y, %z = moe.layer %x, %wr ffn(%up, %down) {
        experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
        routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score>} : ...
    // becomes
    %z = moe.router %x, %wr : ...
    %w, %i = moe.topk %z k = 2 : ...
    %g = moe.renormalize softmax %w, %i : ...
    %rows, %offsets, %slot_row, %slot_w = moe.dispatch %i, %g experts = 8 : ...
    ...
    %y = moe.combine %o, %slot_row, %slot_w : ...
    ```
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::tensor::TensorDialect"];
}

//===----------------------------------------------------------------------===//
// Optimisation
//===----------------------------------------------------------------------===//

def MoeEliminateZeroExperts : Pass<"moe-eliminate-zero-experts"> {
  let summary = "Keeps zero-computation experts out of dispatch and the expert GEMMs";
  let description = [{
    Zero, copy, constant (MoE++) and null (AdaMoE) experts need no weights and
    no GEMM, yet after `moe-decompose` their slots still go through
    `moe.dispatch` and `moe.permute` with everyone else's. This pass keeps
    them out: the dispatch plan is built over the FFN experts only (slots on
    other experts are emptied by `moe.restrict_slots`), and
    `moe.zero_compute` reads the routing weights directly. With only zero and
    null experts left, their contribution is 0 and disappears with its add.

    Exact: the FFN experts come first, so their rows, offsets and combine
    order are unchanged, and the zero-computation contribution is the same
    sum. It applies to dropless dispatch only: with a capacity, every expert
    counts in `C = ceil(T k / E factor)` and in who is dropped, so removing
    experts would change the answer (left alone, with a remark under
    `-debug`).

    ```mlir
    %r, %o, %sr, %sw = moe.dispatch %i, %w experts = 12 ...
    %zc = moe.zero_compute %x, %i, %sw ... experts = [ffn 8, constant 2, copy 1, zero 1]
    // becomes
    %ffn = moe.restrict_slots %i experts = 8
    %r, %o, %sr, %sw = moe.dispatch %ffn, %w experts = 8 ...
    %zc = moe.zero_compute %x, %i, %w ... experts = [ffn 8, constant 2, copy 1, zero 1]
    ```
  }];
}

def MoeFuseExperts : Pass<"moe-fuse-experts"> {
  let summary = "Fuses the expert activation and the combine into the grouped GEMMs";
  let description = [{
    Two rewrites on the decomposed expert computation, each of which removes
    an intermediate tensor that a GPU kernel would otherwise write to memory
    and read back:

    * `moe.activation(moe.grouped_matmul(x, W_up))` becomes
      `moe.grouped_matmul_act`: the GLU (or elementwise activation) runs in
      the gate/up GEMM's epilogue, on its f32 accumulators;
    * `moe.combine(moe.grouped_matmul(a, W_down))` becomes
      `moe.grouped_matmul_combine`: each row is scaled by its slot's gate
      weight and summed into its token's output in the down GEMM's epilogue.

    Each applies only when the GEMM result has no other user. In f32 the
    fused program computes exactly what the unfused one did; with bf16/f16
    activations it skips rounding the intermediate to the element type, so
    it is at least as accurate (the difference is that one rounding).
  }];
}

def MoeFoldSharedExpert : Pass<"moe-fold-shared-expert"> {
  let summary = "Folds the shared expert into the routed expert GEMMs";
  let description = [{
    A shared (always-on) expert with the routed experts' shapes and
    activation becomes expert `E` of the routed computation: `moe.dispatch`
    gets a shared slot for every token (weight 1, or Qwen2-MoE's
    `sigmoid(gate · x)`), and the fused grouped GEMMs take the shared weights
    as that extra expert (`shared(...)`), so no weights are copied. The
    `moe.dense_ffn` and its add disappear: one GEMM pair instead of two.

    Runs on the fused expert chain (after `moe-fuse-experts`): dropless
    `moe.dispatch` -> `moe.permute` -> `moe.grouped_matmul_act` ->
    `moe.grouped_matmul_combine`, plus `moe.dense_ffn` on the same input.
    Exact up to f32 summation order: the shared output is added inside the
    combine's sum instead of after it.
  }];
}

def MoePruneMaskedExperts : Pass<"moe-prune-masked-experts"> {
  let summary = "Removes experts a constant selection bias of -inf rules out, with their weights";
  let description = [{
    An expert whose selection bias is a constant -inf can never be selected
    while k others are selectable (a masked or pruned expert). The layer is
    rewritten without it: its router row, its bias entry and its FFN weights
    are sliced away, so its weights are never read and its logit never
    computed.

    Applies when the result is provably the same function: a `moe.layer` of
    FFN experts with a constant `selection_bias`, top-k selection on scores
    that are never NaN (score_then_select), at least k unmasked experts, no
    capacity (C depends on E), no groups, no gating residual, and a logits
    result nobody reads (it has a column per expert). The selection and the
    weights must not depend on the removed experts: sigmoid or relu scores;
    or softmax scores renormalized over the selection (`normalize = all` or
    `computing`, where the softmax denominator cancels) with the same bias on
    every kept expert (a pure mask; removing experts scales every probability
    by one factor, which reorders p + b when b differs).

    Weights are slices of the originals: a view when the kept experts are
    one contiguous run; otherwise the runs are joined with `tensor.concat`,
    a copy of the kept weights on every call, done only with
    `copy-weights=true`.
  }];
  let options = [
    Option<"copyWeights", "copy-weights", "bool", /*default=*/"false",
           "Also prune when the kept experts are not one contiguous run (copies their weights)">
  ];
  let dependentDialects = ["::mlir::tensor::TensorDialect"];
}

def MoeFuseRouting : Pass<"moe-fuse-routing"> {
  let summary = "Groups router, scoring, selection and renormalization into one moe.fused_routing";
  let description = [{
    The routing of a layer is a chain of small ops over each token's logits:
    `moe.router` [`moe.gating_residual`] [`moe.score`] `moe.topk` |
    `moe.threshold` | `moe.expert_choice` [`moe.renormalize`]. Run as separate
    kernels, the `[T, E]` logits and scores go to memory and back between
    them. This pass moves each such chain into one `moe.fused_routing`, the
    boundary of one routing kernel. Exact: the body is the same ops.

    A chain is fused when its intermediate values (the scores, the
    unnormalized weights) have no users outside it; the logits, weights and
    indices become the fused op's results.
  }];
}

def MoeMergeExperts : Pass<"moe-merge-experts"> {
  let summary = "Merges the experts a token group selected into one (MEO)";
  let description = [{
    Merging Experts into One: when every token of a group shares the group's
    routing (`#moe.routing` `group_size > 1`, MEO's sequence-level gating),
    the selected experts' weights are mixed by the gates once per group and
    each token runs one expert instead of k.

    * Linear experts (activation `linear`): each expert is the one map
      `down · up` (`moe.compose_experts`), so `Σ_j g_j D_j U_j x` equals
      `(Σ_j g_j D_j U_j) x` and the rewrite is exact (up to f32 rounding).
      Applied automatically where the cost model says it saves work.
    * Non-linear experts: `Σ_j g_j D_j act(U_j x)` is not
      `(Σ g D) act((Σ g U) x)`. That merge (Lory-style) changes the function,
      so it runs only with `approximate=true`;
      `test/Numerical/merge_experts_pass.py` measures the difference.

    Cost-model guard, per layer with T tokens in G groups, E experts, top-k,
    hidden H, FFN width F (U = 2F for gated activations): the unmerged
    experts cost 2·T·k·(U·H + H·F) FLOPs; the exact merge costs
    2·E·H·F·H (compose) + 2·G·E·H·H (merge) + 2·T·H·H (apply), the
    approximate one 2·G·E·(U·H + H·F) + 2·T·(U·H + H·F). The rewrite is
    applied only when the merge costs less. A dynamic token count is taken
    as one group. Not applied with zero-computation experts, a capacity or
    an input scale.
  }];
  let options = [
    Option<"approximate", "approximate", "bool", /*default=*/"false",
           "Also merge non-linear experts (changes the layer's function)">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::tensor::TensorDialect"];
}

//===----------------------------------------------------------------------===//
// Compile scale
//===----------------------------------------------------------------------===//

def MoeShareLayers : Pass<"moe-share-layers", "::mlir::ModuleOp"> {
  let summary = "Makes identical MoE layers calls of one shared function";
  let description = [{
    Deep models repeat one layer shape with different weights (DeepSeek-V3:
    58 MoE layers of one shape). Lowered one by one, every layer's kernels are
    generated, optimised and assembled again. This pass groups each layer's
    moe ops (ops connected by values, plus any op on a path between two of
    them) into a cluster and compares the clusters: those that compute the
    same thing (same ops, attributes and types; weights and other inputs are
    arguments, constants of at most 16 elements or splats are part of the
    comparison) become calls of one private function marked
    `moe.shared_layer`, so the later passes see each distinct layer once.
    A cluster without an equal stays inline. Exact: the function holds the
    same ops.

    ```mlir
    %y0, %l0 = moe.layer %x, %wr0 ffn(%up0, %down0) {...}
    %y1, %l1 = moe.layer %y0, %wr1 ffn(%up1, %down1) {...}
    // becomes
    %y0 = call @main_layer(%x, %wr0, %up0, %down0)
    %y1 = call @main_layer(%y0, %wr1, %up1, %down1)
    ```
  }];
  let statistics = [
    Statistic<"sharedFunctions", "shared-functions", "Distinct layers outlined">,
    Statistic<"sharedCalls", "shared-calls", "Layers replaced by a call">
  ];
  let dependentDialects = ["::mlir::func::FuncDialect"];
}

def MoeShareBlocks : Pass<"moe-share-blocks", "::mlir::ModuleOp"> {
  let summary = "Makes the repeated code around shared layers calls of one function";
  let description = [{
    Runs after `moe-share-layers`. An unrolled model calls the shared layer
    function once per layer, but the code between two calls (attention,
    norms, the router's matmul, residual adds) is still there once per
    layer. The calls of the most-called shared function are the anchors.
    For each, the ops before it (back to the previous call) and after it
    (up to the next) are matched op by op, from the call outwards, with
    those of a layer from the middle of the model (the first holds the
    model's prologue, the last its epilogue). A run is a call with the B
    matched ops before it and the F after it; the pass takes the (B, F)
    that covers the most ops in at least two layers, leaving out a layer
    whose run would reach into its predecessor's. Ops computed from values
    before the period alone (shape arithmetic) are stepped over where the
    other layer has no counterpart: they stay in the caller. Each run is
    outlined and the runs that compute the same thing (compared as
    `moe-share-layers` compares layers; constants are read, not moved;
    empty or filled destination tensors are copied in) become calls of one
    private function marked `moe.shared_layer`. Ops with memory effects end
    a run. Exact: the function holds the same ops in the same order.

    ```mlir
    %y0 = call @main_layer(%x, %w0 ...)
    %h0 = arith.addf %x, %y0 : tensor<64x7168xbf16>
    %y1 = call @main_layer(%h0, %w1 ...)
    %h1 = arith.addf %h0, %y1 : tensor<64x7168xbf16>
    // becomes
    %h0 = call @main_block(%x, %w0 ...)
    %h1 = call @main_block(%h0, %w1 ...)
    ```
  }];
  let statistics = [
    Statistic<"sharedFunctions", "shared-functions", "Distinct blocks outlined">,
    Statistic<"sharedCalls", "shared-calls", "Blocks replaced by a call">
  ];
  let dependentDialects = ["::mlir::func::FuncDialect"];
}

//===----------------------------------------------------------------------===//
// Expert parallelism
//===----------------------------------------------------------------------===//

def MoeShardExperts : Pass<"moe-shard-experts", "::mlir::ModuleOp"> {
  let summary = "Turns a program into its expert-parallel form for `ranks` processes";
  let description = [{
    Every process (rank) runs the program on its own tokens and holds only
    its share of each layer's experts. Each public function with
    `moe.layer` ops gets one private copy per rank, `@f__rank<r>`, in which
    every layer routes its own tokens, sends each selected token row to the
    rank that owns its expert (`moe.all_to_all_dispatch`), runs the grouped
    GEMMs of its local experts on the rows it receives, sends the results
    back (`moe.all_to_all_return`) and combines them in slot order. The
    function itself becomes a dispatch on `moe.ep_rank`, so the program
    keeps its signature and one artifact serves every rank.

    Exact: every expert sees its rows in the single-process order (ranks
    hold consecutive tokens; received rows are grouped by expert, then by
    source rank), the same kernels compute each row, and the combine sums
    each token's slots in slot order, so the ranks' outputs are the
    single-process output of their tokens, bit for bit.

    Placement (`placement`): `contiguous` (rank d owns a run of consecutive
    experts; the first E mod N ranks one more), `round-robin` (expert e on
    rank e mod N), or `balanced`: greedy largest-first on `expert-loads`, a
    measured number of routed tokens per expert (E values, used for every
    layer, or one row of E per layer in order), so that each rank's
    expected rows are as even as the experts allow. Zero-computation
    experts are computed where their tokens are and never sent; shared
    experts run on every rank on its own tokens. With `replicas=R` (and
    `balanced`) the R copies go to the experts with the most load per
    copy (DeepSeek's EPLB "redundant experts"): a rank uses its own copy of
    an expert when it has one, else copy `rank mod copies`; results are
    unchanged (every copy computes a row the same way). Each layer gets a remark
    with its placement, each rank's expected share of the routed rows and
    the bytes a token row moves.

    A capacity stays global: each expert's owner receives the expert's
    rows of every rank in global token order (with their weights for
    `drop = probs`) and keeps `C` of them as one process would, `C`
    computed from all ranks' tokens (`position` or `probs`, no
    rectification, no zero-computation experts, no replicas; other
    capacities are a clear error). Not yet: GPU targets.

    `placement = split` (MoEShard, for few, large experts) gives every rank
    a block of every expert instead: each token row goes to every rank
    (the slots copied once per rank), rank `d` computes block `d` of the
    FFN width of every row (its gate and up rows), `moe.all_gather_columns`
    joins the activations, rank `d` computes block `d` of the hidden width
    (its rows of the down projection) over the whole FFN width, and the
    blocks go back to the rows' ranks. No dot product is split, so this is
    exact too (MoEShard's partial sums of the down projection would not
    be). Blocks are `ceil(F / N)` and `ceil(H / N)` wide, the last padded
    with zero weights; any number of ranks, no replicas.

    ```mlir
    %y, %l = moe.layer %x, %wr ffn(%up, %down) {...}
    // with ranks=2, in @f__rank0:
    %recv, %loff, %counts = moe.all_to_all_dispatch %xs, %offsets bounds = [0, 4, 8] rank = 0 ...
    %h = moe.grouped_matmul %recv, %up_rank0, %loff ...
    %back = moe.all_to_all_return %o, %counts, %offsets rows = %n bounds = [0, 4, 8] rank = 0 ...
    ```
  }];
  let options = [
    Option<"ranks", "ranks", "int64_t", /*default=*/"1", "Number of processes (MPI ranks)">,
    Option<"placement", "placement", "std::string", /*default=*/"\"contiguous\"",
           "Expert placement: contiguous, round-robin, balanced or split (every expert on every rank)">,
    ListOption<"expertLoads", "expert-loads", "double",
               "Routed tokens per expert (E values, or E per layer) for placement=balanced">,
    Option<"replicas", "replicas", "int64_t", /*default=*/"0",
           "Extra copies of the hottest experts per layer (placement=balanced)">
  ];
  let dependentDialects = ["::mlir::func::FuncDialect", "::mlir::scf::SCFDialect",
                           "::mlir::tensor::TensorDialect", "::mlir::linalg::LinalgDialect"];
}

#endif // MOE_TRANSFORMS_PASSES_TD
