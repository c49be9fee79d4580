//===- MoeOps.td - moe operations ---------------------------*- tablegen -*-===//
//
// Ops are grouped under banners: the layer, routing, dispatch/combine, and
// expert computation. The math of each op is specified in docs/design.md.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_OPS_TD
#define MOE_OPS_TD

include "dialects/moe/MoeAttrs.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/OpAsmInterface.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"

//===----------------------------------------------------------------------===//
// Layer
//===----------------------------------------------------------------------===//

def Moe_LayerOp : Moe_Op<"layer", [Pure, AttrSizedOperandSegments]> {
  let summary = "one whole Mixture-of-Experts layer";
  let description = [{
    Computes `y = Σ_slots w · E_e(s · x) + shared(x)` for every token row of
    `x`, where the slots, their experts `e` and gate weights `w` come from
    routing `x` with `router_weight` as `routing` says, `s` is the routing's
    `input_scale`, and `E_e` is expert `e` of the expert set `experts`.

    Operands:
    * `x`: `[T, H]` tokens; `router_weight`: `[E, H]` (or `[E, R]` with a
      two-layer `hidden` router `[R, H]`, z = W tanh(W_h x), MoE++);
    * `router_bias`: `[E]`, added to the router's logits (a router written
      as a linear layer with a bias; see `moe.router` for its rounding);
    * `selection_bias`: `[E]`, added to scores for selection only (DeepSeek-V3);
    * `residual(prev_logits, residual_weight)`: `[T, E]`, `[E, E]`: MoE++
      gating residual, z += prev G^T;
    * `ffn(up, down)`: the FFN group's weights `[E_ffn, U, H]`, `[E_ffn, H, F]`
      with `U = 2F` for GLU activations and `U = F` otherwise;
    * `ffn_bias(up_bias, down_bias)`: the FFN experts' biases `[E_ffn, U]`,
      `[E_ffn, H]`, added to their up and down projections (experts written
      as linear layers with biases);
    * `constant(vectors, mix)`: `[E_c, H]`, `[E_c, 2, H]` for MoE++ constant
      experts;
    * `shared(up, down)`: an always-on expert `[U_s, H]`, `[H, F_s]`, with an
      optional sigmoid `shared_gate` `[1, H]` (Qwen2-MoE).

    Results: `y` `[T, H]` and the post-residual router logits `[T, E]`, which
    feed the next layer's `residual(...)`.

    Example (Mixtral-8x7B):
    ```mlir
    %y, %logits = moe.layer %x, %wr ffn(%w13, %w2) {
        experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
        routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score>}
      : (tensor<?x4096xbf16>, tensor<8x4096xbf16>, tensor<8x28672x4096xbf16>,
         tensor<8x4096x14336xbf16>) -> (tensor<?x4096xbf16>, tensor<?x8xf32>)
    ```
  }];
  let arguments = (ins
    Moe_FloatTensor:$x,
    Moe_FloatTensor:$router_weight,
    Optional<Moe_FloatTensor>:$router_hidden,
    Optional<Moe_FloatTensor>:$router_bias,
    Optional<Moe_F32Tensor>:$selection_bias,
    Optional<Moe_F32Tensor>:$prev_logits,
    Optional<Moe_FloatTensor>:$residual_weight,
    Optional<Moe_FloatTensor>:$ffn_up,
    Optional<Moe_FloatTensor>:$ffn_down,
    Optional<Moe_FloatTensor>:$ffn_up_bias,
    Optional<Moe_FloatTensor>:$ffn_down_bias,
    Optional<Moe_FloatTensor>:$constant_vectors,
    Optional<Moe_FloatTensor>:$constant_mix,
    Optional<Moe_FloatTensor>:$shared_up,
    Optional<Moe_FloatTensor>:$shared_down,
    Optional<Moe_FloatTensor>:$shared_gate,
    Moe_ExpertSetAttr:$experts,
    Moe_ActivationAttr:$activation,
    Moe_RoutingAttr:$routing,
    OptionalAttr<Moe_CapacityAttr>:$capacity
  );
  let results = (outs Moe_FloatTensor:$y, Moe_F32Tensor:$logits);
  let assemblyFormat = [{
    $x `,` $router_weight
    (`hidden` `(` $router_hidden^ `)`)?
    (`bias` `(` $router_bias^ `)`)?
    (`selection_bias` `(` $selection_bias^ `)`)?
    (`residual` `(` $prev_logits^ `,` $residual_weight `)`)?
    (`ffn` `(` $ffn_up^ `,` $ffn_down `)`)?
    (`ffn_bias` `(` $ffn_up_bias^ `,` $ffn_down_bias `)`)?
    (`constant` `(` $constant_vectors^ `,` $constant_mix `)`)?
    (`shared` `(` $shared_up^ `,` $shared_down `)`)?
    (`shared_gate` `(` $shared_gate^ `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Total number of experts (all groups).
    int64_t getNumExperts();
    /// Number of FFN experts and the index of the first one.
    int64_t getNumFfnExperts();
    int64_t getFirstExpertOfKind(ExpertKind kind);
  }];
}

//===----------------------------------------------------------------------===//
// Routing
//===----------------------------------------------------------------------===//

def Moe_FusedRoutingOp : Moe_Op<"fused_routing", [IsolatedFromAbove, Pure]> {
  let summary = "router projection, scoring, selection and renormalization as one unit";
  let description = [{
    A fusion group: its region holds one `moe.router`, optionally a
    `moe.gating_residual` and a `moe.score`, one selection (`moe.topk`,
    `moe.threshold` or `moe.expert_choice`) and optionally a
    `moe.renormalize`, and yields the gate weights, the expert indices and the
    post-residual logits. It computes exactly what its body computes; it
    marks the boundary of one kernel: one pass over each token's logits,
    which never leave registers or shared memory. `moe-fuse-routing` forms
    it; the CPU lowering inlines it.

    ```mlir
    %w, %i, %z = moe.fused_routing(%x, %wr) : (tensor<?x64xf32>, tensor<8x64xf32>)
        -> (tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>) {
    ^bb0(%a: tensor<?x64xf32>, %b: tensor<8x64xf32>):
      %logits = moe.router %a, %b : (tensor<?x64xf32>, tensor<8x64xf32>) -> tensor<?x8xf32>
      %w0, %i0 = moe.topk %logits k = 2 : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
      %g = moe.renormalize softmax %w0, %i0 : (tensor<?x2xf32>, tensor<?x2xi32>) -> tensor<?x2xf32>
      moe.yield %g, %i0, %logits : tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
    }
    ```
  }];
  let arguments = (ins Variadic<AnyRankedTensor>:$inputs);
  let results = (outs Moe_F32Tensor:$weights, Moe_IndexTensor:$indices, Moe_F32Tensor:$logits);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    `(` $inputs `)` attr-dict `:` functional-type($inputs, results) $body
  }];
  let hasVerifier = 1;
}

def Moe_YieldOp : Moe_Op<"yield", [Pure, Terminator, ReturnLike, HasParent<"FusedRoutingOp">]> {
  let summary = "yields the results of a moe.fused_routing body";
  let description = [{
    ```mlir
    moe.yield %weights, %indices, %logits : tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
    ```
  }];
  let arguments = (ins Variadic<AnyRankedTensor>:$values);
  let assemblyFormat = "$values attr-dict `:` type($values)";
}

def Moe_GroupMeanOp : Moe_Op<"group_mean", [Pure]> {
  let summary = "mean of each group of consecutive token rows";
  let description = [{
    `out[g] = mean(x[g·S : min((g+1)·S, T)])` for the `G = ceil(T / S)`
    groups of `S = group_size` consecutive rows (the last may be shorter),
    computed in f32. MEO's sequence-level router sees these means.

    ```mlir
    %xm = moe.group_mean %x group_size = 128 : tensor<512x64xbf16> -> tensor<4x64xbf16>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$x, I64Attr:$group_size);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $x `group_size` `=` $group_size attr-dict `:` type($x) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Moe_ExpandGroupsOp : Moe_Op<"expand_groups", [Pure]> {
  let summary = "gives every token row its group's row";
  let description = [{
    `out[t] = values[floor(t / S)]` for the `T` rows of `like` (only its
    size is read): the inverse of grouping, for selections, weights and
    logits computed once per group.

    ```mlir
    %wt = moe.expand_groups %w to %x group_size = 128
        : (tensor<4x2xf32>, tensor<512x64xbf16>) -> tensor<512x2xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$values, Moe_FloatTensor:$like, I64Attr:$group_size);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $values `to` $like `group_size` `=` $group_size attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_RouterOp : Moe_Op<"router", [Pure, AttrSizedOperandSegments]> {
  let summary = "router projection: token rows to expert logits";
  let description = [{
    `logits[t, e] = Σ_h x[t, h] · W[e, h]`, accumulated in f32. With a
    `hidden` weight `W_h` `[R, H]` the router has two layers (MoE++):
    `logits = W · tanh(W_h · x)` and `W` is `[E, R]`.

    With a `bias` `[E]` the logits are `x·W + bias`, as a linear layer
    computes them in the bias's element type: the product is rounded to that
    type first (nothing happens for f32) and the sum is taken in f32, so a
    bf16 `x @ W + b` is reproduced exactly once the layer's `logits_type`
    rounds the sum.

    ```mlir
    %z = moe.router %x, %wr : (tensor<?x4096xbf16>, tensor<8x4096xbf16>) -> tensor<?x8xf32>
    %zb = moe.router %x, %wr bias(%b)
        : (tensor<?x4096xf32>, tensor<8x4096xf32>, tensor<8xf32>) -> tensor<?x8xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$x, Moe_FloatTensor:$weight,
                       Optional<Moe_FloatTensor>:$hidden,
                       Optional<Moe_FloatTensor>:$bias);
  let results = (outs Moe_F32Tensor:$logits);
  let assemblyFormat = [{
    $x `,` $weight (`hidden` `(` $hidden^ `)`)? (`bias` `(` $bias^ `)`)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_GatingResidualOp : Moe_Op<"gating_residual", [Pure]> {
  let summary = "adds the previous layer's routing logits (MoE++ gating residual)";
  let description = [{
    `out[t, e] = logits[t, e] + Σ_j prev[t, j] · G[e, j]`.

    ```mlir
    %z2 = moe.gating_residual %z, %prev, %g
        : (tensor<?x12xf32>, tensor<?x12xf32>, tensor<12x12xf32>) -> tensor<?x12xf32>
    ```
  }];
  let arguments = (ins Moe_F32Tensor:$logits, Moe_F32Tensor:$prev,
                       Moe_FloatTensor:$weight);
  let results = (outs Moe_F32Tensor:$result);
  let assemblyFormat = [{
    $logits `,` $prev `,` $weight attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_ScoreOp : Moe_Op<"score", [Pure]> {
  let summary = "router scoring function applied to each token's logits";
  let description = [{
    Row-wise over experts: `softmax`, `sigmoid`, `relu` (ReMoE) or
    `gumbel_softmax`, the GG-MoE inference form: the mean over `samples` draws
    of `softmax((z + g_m) / tau)` with Gumbel noise `g_m` from a counter-based
    generator keyed by `seed` (docs/design.md gives the generator).

    ```mlir
    %p = moe.score softmax %z : tensor<?x8xf32> -> tensor<?x8xf32>
    %q = moe.score gumbel_softmax %z {tau = 5.000000e-01 : f64, samples = 10 : i64}
        : tensor<?x8xf32> -> tensor<?x8xf32>
    ```
  }];
  let arguments = (ins Moe_ScoringFuncAttr:$func, Moe_F32Tensor:$logits,
                       OptionalAttr<F64Attr>:$tau,
                       OptionalAttr<I64Attr>:$samples,
                       OptionalAttr<I64Attr>:$seed);
  let results = (outs Moe_F32Tensor:$scores);
  let assemblyFormat = [{
    custom<EnumKeyword>($func) $logits attr-dict `:` type($logits) `->` type($scores)
  }];
  let hasVerifier = 1;
}

def Moe_TopKOp : Moe_Op<"topk", [Pure]> {
  let summary = "top-k expert selection per token, optionally grouped and biased";
  let description = [{
    For each token picks the `k` experts with the highest `scores + bias`
    (bias is for selection only) in descending order, ties broken by the
    lowest expert index. `weights` holds the unbiased scores of the picks.
    With `num_groups > 1` the experts form `num_groups` equal groups; only the
    `topk_groups` groups with the highest group score (`max` or `top2_sum` of
    biased scores) are eligible (DeepSeek-V3).

    ```mlir
    %w, %i = moe.topk %p k = 2 : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
    %w8, %i8 = moe.topk %s bias(%b) k = 8 {num_groups = 8 : i64, topk_groups = 4 : i64}
        : (tensor<?x256xf32>, tensor<256xf32>) -> (tensor<?x8xf32>, tensor<?x8xi32>)
    ```
  }];
  let arguments = (ins Moe_F32Tensor:$scores, Optional<Moe_F32Tensor>:$bias,
                       I64Attr:$k,
                       DefaultValuedAttr<I64Attr, "1">:$num_groups,
                       DefaultValuedAttr<I64Attr, "1">:$topk_groups,
                       DefaultValuedAttr<Moe_GroupScoreAttr,
                                         "::mlir::moe::GroupScore::top2_sum">:$group_score);
  let results = (outs Moe_F32Tensor:$weights, Moe_IndexTensor:$indices);
  let assemblyFormat = [{
    $scores (`bias` `(` $bias^ `)`)? `k` `=` $k attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_ThresholdOp : Moe_Op<"threshold", [Pure]> {
  let summary = "selects every expert whose score exceeds a threshold";
  let description = [{
    A variable number of experts per token (ReMoE: `relu` scores, threshold 0).
    The experts with `score > threshold` fill the `max_k` slots in descending
    score order (ties: lowest index); unused slots hold index -1 and weight 0.
    With `max_k = E` no selection is ever cut off.

    ```mlir
    %w, %i = moe.threshold %r max_k = 8 : (tensor<?x8xf32>) -> (tensor<?x8xf32>, tensor<?x8xi32>)
    ```
  }];
  let arguments = (ins Moe_F32Tensor:$scores, I64Attr:$max_k,
                       DefaultValuedAttr<F64Attr, "0.0">:$threshold);
  let results = (outs Moe_F32Tensor:$weights, Moe_IndexTensor:$indices);
  let assemblyFormat = [{
    $scores `max_k` `=` $max_k attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_ExpertChoiceOp : Moe_Op<"expert_choice", [Pure]> {
  let summary = "expert-choice (or bidirectional) selection with capacity";
  let description = [{
    Each expert picks the `capacity` tokens with the highest scores (ties:
    lowest token index). Without `token_k`, slot `e` of token `t` holds expert
    `e` when `e` picked `t` (else -1, weight 0): `E` slots per token. With
    `token_k` (bidirectional selection, Expert-Token Resonance), token `t`
    keeps its top-`token_k` experts that also picked it, in descending score
    order, in `token_k` slots.

    ```mlir
    %w, %i = moe.expert_choice %p capacity = 4 : (tensor<16x8xf32>) -> (tensor<16x8xf32>, tensor<16x8xi32>)
    ```
  }];
  let arguments = (ins Moe_F32Tensor:$scores, I64Attr:$capacity,
                       OptionalAttr<I64Attr>:$token_k);
  let results = (outs Moe_F32Tensor:$weights, Moe_IndexTensor:$indices);
  let assemblyFormat = [{
    $scores `capacity` `=` $capacity attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_RenormalizeOp : Moe_Op<"renormalize", [Pure]> {
  let summary = "renormalizes the gate weights of each token's selected slots";
  let description = [{
    Slots whose expert is in `skip` (and empty slots, index -1) get weight 0
    and are left out. Over the remaining slots, `sum` computes `w / s` with
    `s = Σ w + epsilon` (`s = 1` when `s` is 0), `softmax` computes the
    softmax of `w`.
    With `denominator_slots = n > 0` only the first `n` slots form the
    denominator and every slot is divided by it (Rectify-Router fill-in: the
    `(k+1)`-th choice is weighted relative to the first `k`). The result is
    multiplied by `scale` (DeepSeek's routed scaling factor).

    ```mlir
    %g = moe.renormalize softmax %w, %i : (tensor<?x2xf32>, tensor<?x2xi32>) -> tensor<?x2xf32>
    %h = moe.renormalize sum %w, %i {skip = array<i64: 11>}
        : (tensor<?x2xf32>, tensor<?x2xi32>) -> tensor<?x2xf32>
    ```
  }];
  let arguments = (ins Moe_RenormModeAttr:$mode, Moe_F32Tensor:$weights,
                       Moe_IndexTensor:$indices,
                       DefaultValuedAttr<DenseI64ArrayAttr, "{}">:$skip,
                       DefaultValuedAttr<F64Attr, "1.0">:$scale,
                       DefaultValuedAttr<I64Attr, "0">:$denominator_slots,
                       DefaultValuedAttr<F64Attr, "0.0">:$epsilon);
  let results = (outs Moe_F32Tensor:$result);
  let assemblyFormat = [{
    custom<EnumKeyword>($mode) $weights `,` $indices attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
}

def Moe_RestrictSlotsOp : Moe_Op<"restrict_slots", [Pure, AllTypesMatch<["indices", "result"]>]> {
  let summary = "empties the slots that name an expert outside [0, experts)";
  let description = [{
    `out[t, k] = indices[t, k]` when `0 <= indices[t, k] < experts`, else -1.
    Zero-computation elimination uses it to keep the slots of zero, copy,
    constant and null experts (numbered after the FFN experts) out of dispatch.

    ```mlir
    %ffn = moe.restrict_slots %i experts = 8 : tensor<?x2xi32>
    ```
  }];
  let arguments = (ins Moe_IndexTensor:$indices, I64Attr:$num_experts);
  let results = (outs Moe_IndexTensor:$result);
  let assemblyFormat = [{
    $indices `experts` `=` $num_experts attr-dict `:` type($indices)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Dispatch and combine
//===----------------------------------------------------------------------===//

def Moe_DispatchOp : Moe_Op<"dispatch", [Pure, AttrSizedOperandSegments]> {
  let summary = "plans the grouping of selected tokens by expert";
  let description = [{
    Turns token-major selections (`indices`, `weights`, `[T, K]`) into an
    expert-major plan of `R` rows:
    * `row_token` `[R]`: the token of each grouped row (-1: padding);
    * `expert_offsets` `[E + 1]`: rows of expert `e` are
      `[offsets[e], offsets[e+1])`;
    * `slot_row` `[T, K]`: the row of each slot (-1: empty or dropped);
    * `slot_weight` `[T, K]`: the combine weight of each slot (0 when dropped;
      rectified slots carry the Rectify-Router weight).
    Rows of an expert are in token order. Dropless (no `capacity`): `R = T·K`
    and the rows past `offsets[E]` are padding. With `capacity` (C per expert)
    and `pad = true`: `R = E·C`, expert `e` owns rows `[e·C, (e+1)·C)`; without
    `pad`: `R = T·K`, compacted. `fill_in` rectification reads a `(k+1)`-th
    selection column; `intra_device` needs the router `logits`.
    With `shared(weight)` (`[T, 1]`, dropless only) every token also has an
    always-selected slot, appended as column `K`, on expert `E` (the shared
    expert folded into the routed computation) with that weight: the results
    have `K + 1` slot columns, `E + 2` offsets and `T·(K+1)` rows.

    ```mlir
    %rows, %offsets, %slot_row, %slot_w = moe.dispatch %i, %w experts = 8
        : (tensor<16x2xi32>, tensor<16x2xf32>)
        -> (tensor<32xi32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
    ```
  }];
  let arguments = (ins Moe_IndexTensor:$indices, Moe_F32Tensor:$weights,
                       Optional<Moe_F32Tensor>:$logits,
                       Optional<Moe_F32Tensor>:$shared_weight,
                       I64Attr:$num_experts,
                       OptionalAttr<Moe_CapacityAttr>:$capacity);
  let results = (outs Moe_IndexTensor:$row_token, Moe_IndexTensor:$expert_offsets,
                      Moe_IndexTensor:$slot_row, Moe_F32Tensor:$slot_weight);
  let assemblyFormat = [{
    $indices `,` $weights (`logits` `(` $logits^ `)`)? (`shared` `(` $shared_weight^ `)`)?
    `experts` `=` $num_experts
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_PermuteOp : Moe_Op<"permute", [Pure]> {
  let summary = "gathers token rows into expert-grouped order";
  let description = [{
    `out[r] = x[row_token[r]]`, and a zero row where `row_token[r] = -1`.

    ```mlir
    %xs = moe.permute %x, %rows : (tensor<16x64xf32>, tensor<32xi32>) -> tensor<32x64xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$x, Moe_IndexTensor:$row_token);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $x `,` $row_token attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_CombineOp : Moe_Op<"combine", [Pure]> {
  let summary = "weighted scatter of expert outputs back to token order";
  let description = [{
    `y[t] = Σ_k slot_weight[t, k] · rows[slot_row[t, k]]` over the slots with
    `slot_row >= 0`, summed in slot order (deterministic). The result has
    the rows' element type; f32 rows (unrounded GEMM results) may be
    summed into a bf16/f16 result, rounded once.

    ```mlir
    %y = moe.combine %o, %slot_row, %slot_w
        : (tensor<32x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x64xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$rows, Moe_IndexTensor:$slot_row,
                       Moe_F32Tensor:$slot_weight);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $rows `,` $slot_row `,` $slot_weight attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Expert computation
//===----------------------------------------------------------------------===//

def Moe_GroupedMatmulOp : Moe_Op<"grouped_matmul", [Pure]> {
  let summary = "one matmul per expert over its group of rows";
  let description = [{
    For `e < E_w` (the weights' expert count) and rows `r` in
    `[offsets[e], offsets[e+1])`: `out[r, n] = Σ_k lhs[r, k] · W[e, n, k]`,
    accumulated in f32 and rounded to the result's element type: that of
    `lhs`, or f32 to keep the accumulators. With `shared` (`[N, K]`, a shared expert folded into
    the routed computation) rows `[offsets[E_w], offsets[E_w+1])` use it as
    expert `E_w`. Every other row is 0, so `offsets` may describe more
    experts than `W` holds (zero-computation experts after the FFN group).

    ```mlir
    %h = moe.grouped_matmul %xs, %w13, %offsets
        : (tensor<32x64xf32>, tensor<8x256x64xf32>, tensor<9xi32>) -> tensor<32x256xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$lhs, Moe_FloatTensor:$weights,
                       Moe_IndexTensor:$offsets, Optional<Moe_FloatTensor>:$shared);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $weights `,` $offsets (`shared` `(` $shared^ `)`)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_GroupedMatmulActOp : Moe_Op<"grouped_matmul_act", [Pure]> {
  let summary = "grouped matmul with the activation fused into its epilogue";
  let description = [{
    `activation(kind, grouped_matmul(lhs, W, offsets))`, with the matmul's f32
    accumulators fed straight to the activation instead of being rounded to
    the element type first (so with f32 it is the unfused result exactly,
    with bf16/f16 it skips one rounding). `moe-fuse-experts` forms it from
    the gate/up GEMM and the GLU. `shared` is the shared expert's weight, as
    for `moe.grouped_matmul`.

    ```mlir
    %a = moe.grouped_matmul_act swiglu %xs, %w13, %offsets
        : (tensor<32x64xbf16>, tensor<8x256x64xbf16>, tensor<9xi32>) -> tensor<32x128xbf16>
    ```
  }];
  let arguments = (ins Moe_ActivationAttr:$kind, Moe_FloatTensor:$lhs, Moe_FloatTensor:$weights,
                       Moe_IndexTensor:$offsets, Optional<Moe_FloatTensor>:$shared);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    custom<EnumKeyword>($kind) $lhs `,` $weights `,` $offsets (`shared` `(` $shared^ `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_GroupedMatmulCombineOp : Moe_Op<"grouped_matmul_combine", [Pure]> {
  let summary = "grouped matmul with the weighted combine fused into its epilogue";
  let description = [{
    `combine(grouped_matmul(lhs, W, offsets), slot_row, slot_weight)`, with
    each row's f32 result scaled by its slot weight and summed into its
    token's output in slot order, never rounded to the element type in
    between. `moe-fuse-experts` forms it from the down GEMM and the combine.
    `shared` is the shared expert's weight, as for `moe.grouped_matmul`.

    ```mlir
    %y = moe.grouped_matmul_combine %a, %w2, %offsets, %slot_row, %slot_w
        : (tensor<32x128xbf16>, tensor<8x64x128xbf16>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
        -> tensor<16x64xbf16>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$lhs, Moe_FloatTensor:$weights, Moe_IndexTensor:$offsets,
                       Moe_IndexTensor:$slot_row, Moe_F32Tensor:$slot_weight,
                       Optional<Moe_FloatTensor>:$shared);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $lhs `,` $weights `,` $offsets `,` $slot_row `,` $slot_weight (`shared` `(` $shared^ `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_DequantizeOp : Moe_Op<"dequantize", [Pure]> {
  let summary = "expert weights stored as packed 2/4/8-bit integers";
  let description = [{
    Quantised expert weights in the program: `packed` `[E, N, K · bits / 8]`
    holds each row's `K` unsigned `bits`-bit values, `8 / bits` per byte,
    low bits first (ONNX Runtime's QMoE layout). With `block_size = 0` one
    scale per row, `scales` `[E, N]`; otherwise one per block of
    `block_size` consecutive values of a row, `scales` `[E, N, K /
    block_size]`. `zero_points` (unsigned, one byte each) has the scales'
    shape; absent, every zero point is `2^(bits-1)` (symmetric). The result is

    `w[e, n, k] = (q[e, n, k] - z[e, n, b]) · s[e, n, b]`, `b = k / block_size`

    computed in f32 and rounded to the result's element type.

    With `interleaved_rows` the rows are stored gate and up alternating
    (ONNX Runtime's `swiglu_fusion = 1`): result row `n < N / 2` reads stored
    row `2n` and row `N / 2 + n` reads stored row `2n + 1` of `packed`,
    `scales` and `zero_points` alike, so the result is `[gate; up]` as
    `moe.activation` expects without a copy of the weights that regroups
    them (weights given as arguments are read in place).

    The grouped matmuls read their weights through it: on the CPU the
    lowering dequantises one expert at a time inside the matmul's loop over
    experts (skipping experts without rows), so the float weights of the
    whole layer never exist; elsewhere it is an elementwise kernel.

    ```mlir
    %w13 = moe.dequantize %q, %s zero_points(%z) {bits = 4, block_size = 32}
        : (tensor<8x256x32xi8>, tensor<8x256x2xf32>, tensor<8x256x2xi8>) -> tensor<8x256x64xbf16>
    ```
  }];
  let arguments = (ins RankedTensorOf<[I8]>:$packed, Moe_FloatTensor:$scales,
                       Optional<RankedTensorOf<[I8]>>:$zero_points, I64Attr:$bits,
                       DefaultValuedAttr<I64Attr, "0">:$block_size, UnitAttr:$interleaved_rows);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $packed `,` $scales (`zero_points` `(` $zero_points^ `)`)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Values per byte of `packed`.
    int64_t getValuesPerByte() { return 8 / getBits(); }
  }];
}

def Moe_ActivationOp : Moe_Op<"activation", [Pure]> {
  let summary = "expert activation, gated (GLU) or elementwise";
  let description = [{
    For `swiglu`/`geglu` the input's last dimension `2F` holds `[gate; up]`
    and the result is `act(gate) · up`, `F` wide; `gelu` (exact, erf form),
    `gelu_tanh`, `relu`, `relu2` (`relu(x)²`), `silu` and `linear` act
    elementwise.

    ```mlir
    %a = moe.activation swiglu %h : tensor<32x256xf32> -> tensor<32x128xf32>
    ```
  }];
  let arguments = (ins Moe_ActivationAttr:$kind, Moe_FloatTensor:$input);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    custom<EnumKeyword>($kind) $input attr-dict `:` type($input) `->` type($result)
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Moe_ZeroComputeOp : Moe_Op<"zero_compute", [Pure, AttrSizedOperandSegments]> {
  let summary = "contribution of the zero-computation experts a token selected";
  let description = [{
    `out[t] = Σ_k w[t, k] · E_{i[t,k]}(x[t])` over the slots whose expert is a
    zero-computation expert of `experts`: zero and null give 0, copy gives
    `x`, constant expert `c` gives `a1 · x + a2 · v_c` with
    `[a1, a2] = softmax(mix_c · x)`. Other slots contribute nothing.

    ```mlir
    %zc = moe.zero_compute %x, %i, %w constant(%v, %mix)
        experts = [#moe.group<ffn, 8>, #moe.group<constant, 2>, #moe.group<copy, 1>, #moe.group<zero, 1>]
        : (tensor<16x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>, tensor<2x64xf32>, tensor<2x2x64xf32>)
        -> tensor<16x64xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$x, Moe_IndexTensor:$indices,
                       Moe_F32Tensor:$weights,
                       Optional<Moe_FloatTensor>:$constant_vectors,
                       Optional<Moe_FloatTensor>:$constant_mix,
                       Moe_ExpertSetAttr:$experts);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $x `,` $indices `,` $weights (`constant` `(` $constant_vectors^ `,` $constant_mix `)`)?
    `experts` `=` $experts attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_DenseFfnOp : Moe_Op<"dense_ffn", [Pure]> {
  let summary = "a feed-forward expert applied to every token (shared expert)";
  let description = [{
    `out = down · act(up · x)`, and with a `gate` `[1, H]`:
    `out · sigmoid(gate · x)` per token (Qwen2-MoE's shared-expert gate).

    ```mlir
    %s = moe.dense_ffn swiglu %x, %su, %sd
        : (tensor<16x64xf32>, tensor<256x64xf32>, tensor<64x128xf32>) -> tensor<16x64xf32>
    ```
  }];
  let arguments = (ins Moe_ActivationAttr:$kind, Moe_FloatTensor:$x,
                       Moe_FloatTensor:$up, Moe_FloatTensor:$down,
                       Optional<Moe_FloatTensor>:$gate);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    custom<EnumKeyword>($kind) $x `,` $up `,` $down (`gate` `(` $gate^ `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_DenseGatesOp : Moe_Op<"dense_gates", [Pure]> {
  let summary = "scatters selected slots into a dense [rows, experts] gate matrix";
  let description = [{
    `out[g, e] = Σ_k weights[g, k]` over the slots with `indices[g, k] = e`;
    empty slots (-1) add nothing. The gates `moe.merge_experts` mixes by.

    ```mlir
    %g = moe.dense_gates %w, %i experts = 8 : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x8xf32>
    ```
  }];
  let arguments = (ins Moe_F32Tensor:$weights, Moe_IndexTensor:$indices, I64Attr:$num_experts);
  let results = (outs Moe_F32Tensor:$result);
  let assemblyFormat = [{
    $weights `,` $indices `experts` `=` $num_experts attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_ComposeExpertsOp : Moe_Op<"compose_experts", [Pure]> {
  let summary = "the single linear map of each linear FFN expert: down · up";
  let description = [{
    `out[e] = down[e] · up[e]` (`[H, F] · [F, H] -> [H, H]`), accumulated and
    returned in f32. An FFN expert with the `linear` activation is this one
    map, which MEO merges exactly (merging `up` and `down` separately would
    not be exact).

    ```mlir
    %p = moe.compose_experts %down, %up : (tensor<8x64x32xbf16>, tensor<8x32x64xbf16>) -> tensor<8x64x64xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$down, Moe_FloatTensor:$up);
  let results = (outs Moe_F32Tensor:$result);
  let assemblyFormat = [{
    $down `,` $up attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_MergeExpertsOp : Moe_Op<"merge_experts", [Pure]> {
  let summary = "gate-weighted sum of expert weights (MEO, Lory)";
  let description = [{
    `out[g] = Σ_e gates[g, e] · W[e]` for each group `g` (a sequence, a task,
    or a token). Feeding the result to `moe.grouped_matmul` with one row range
    per group computes the merged expert once per group.

    ```mlir
    %wm = moe.merge_experts %w, %gates
        : (tensor<8x64x64xf32>, tensor<4x8xf32>) -> tensor<4x64x64xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$weights, Moe_F32Tensor:$gates);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $weights `,` $gates attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Expert parallelism: the exchange of grouped rows between ranks
//===----------------------------------------------------------------------===//

def Moe_EpRankOp : Moe_Op<"ep_rank", [MemoryEffects<[MemRead]>]> {
  let summary = "this process's rank in an expert-parallel run of `ranks` processes";
  let description = [{
    The rank (0 to `ranks - 1`) of this process among the processes that
    run the program together (MPI's `COMM_WORLD` on the CPU). When the run
    has another number of processes the result is -1 and the call that
    runs the program fails with a message that says both numbers.
    `moe-shard-experts` dispatches a program's entry to its per-rank
    function on it.

    ```mlir
    %rank = moe.ep_rank ranks = 4 : index
    ```
  }];
  let arguments = (ins I64Attr:$ranks);
  let results = (outs Index:$rank);
  let assemblyFormat = "`ranks` `=` $ranks attr-dict `:` type($rank)";
  let hasVerifier = 1;
}

def Moe_AllToAllDispatchOp : Moe_Op<"all_to_all_dispatch", [MemoryEffects<[MemRead, MemWrite]>]> {
  let summary = "sends expert-grouped rows to the ranks that own the experts";
  let description = [{
    `rows` `[R, H]` are this rank's token rows grouped by expert, expert `e`
    owning rows `[offsets[e], offsets[e+1])` (a `moe.dispatch` plan over the
    experts relabelled so that each rank's experts are consecutive).
    `bounds` (`ranks + 1` entries) gives each rank's experts: rank `d` owns
    experts `[bounds[d], bounds[d+1])`; experts at or past `bounds[ranks]`
    (zero-computation experts) are never sent. Every rank calls it
    together; each sends every other rank its rows for that rank's experts
    and receives the rows of its own experts from all ranks.

    Results: `received` `[?, H]`, grouped by local expert and, within an
    expert, by source rank, so that a rank holding consecutive tokens keeps
    the single-process order of every expert's rows; `local_offsets`
    (`bounds[rank+1] - bounds[rank] + 1` entries) bounds each local
    expert's rows in `received`; `counts` `[ranks, local experts]` holds
    the rows each source rank sent for each local expert, which
    `moe.all_to_all_return` needs to send results back.

    With `capacity` (with the layer's `k` and `experts`) the capacity is
    global: `C` follows from the token count of all ranks (every rank's
    plan holds `k` rows per token), and each local expert keeps `C` of the
    rows it receives, in global token order: the first `C`
    (`drop = position`), or, with `row_weights` (`[R]`, each row's
    priority), the `C` highest priorities, ties to the earlier row: the
    rows' gate weights for `drop = probs`, minus their slot indices for
    `drop = slot_position` (every token's first choice before any second
    choice). The others arrive as zero rows, whose results are zero.

    ```mlir
    %recv, %loff, %counts = moe.all_to_all_dispatch %xs, %offsets
        bounds = [0, 4, 8] rank = 0
        : (tensor<32x64xf32>, tensor<9xi32>) -> (tensor<?x64xf32>, tensor<5xi32>, tensor<2x4xi32>)
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$rows, Moe_IndexTensor:$offsets,
                       Optional<Moe_F32Tensor>:$row_weights,
                       DenseI64ArrayAttr:$bounds, I64Attr:$rank,
                       OptionalAttr<Moe_CapacityAttr>:$capacity, OptionalAttr<I64Attr>:$k,
                       OptionalAttr<I64Attr>:$experts);
  let results = (outs Moe_FloatTensor:$received, Moe_IndexTensor:$local_offsets,
                      Moe_IndexTensor:$counts);
  let assemblyFormat = [{
    $rows `,` $offsets (`weights` `(` $row_weights^ `)`)? `bounds` `=` $bounds `rank` `=` $rank
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_AllToAllReturnOp : Moe_Op<"all_to_all_return", [MemoryEffects<[MemRead, MemWrite]>]> {
  let summary = "sends expert results back to the ranks whose tokens they are";
  let description = [{
    The inverse exchange of `moe.all_to_all_dispatch`: `rows` are the
    local experts' results in the layout of its `received` (by local
    expert, then source rank), `counts` its `counts`, and `offsets` `[E+1]`
    and `bounds` the same as its own, `plan_rows` the `R` of the rows it
    sent. The result `[R, H]` has this rank's rows back in the expert-grouped layout `offsets` describes: row
    `offsets[e] + i` is the result of the `i`-th row this rank sent to
    expert `e`; rows of experts at or past `bounds[ranks]` are zero.

    ```mlir
    %back = moe.all_to_all_return %ys, %counts, %offsets rows = %c32 bounds = [0, 4, 8] rank = 0
        : (tensor<?x64xf32>, tensor<2x4xi32>, tensor<9xi32>) -> tensor<32x64xf32>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$rows, Moe_IndexTensor:$counts, Moe_IndexTensor:$offsets,
                       Index:$plan_rows, DenseI64ArrayAttr:$bounds, I64Attr:$rank);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $rows `,` $counts `,` $offsets `rows` `=` $plan_rows `bounds` `=` $bounds `rank` `=` $rank
    attr-dict `:` `(` type($rows) `,` type($counts) `,` type($offsets) `)` `->` type($result)
  }];
  let hasVerifier = 1;
}

def Moe_AllGatherColumnsOp : Moe_Op<"all_gather_columns", [MemoryEffects<[MemRead, MemWrite]>]> {
  let summary = "joins every rank's column block of the same rows";
  let description = [{
    The exchange of a layer whose every expert is split over the ranks by
    columns (`moe-shard-experts` with `placement = split`, MoEShard): every
    rank holds the same rows (`[R, W]`, `R` the same on every rank), its
    own block of `W` columns of them; the result `[R, ranks * W]` is every
    rank's block side by side, rank `d`'s at columns `[d * W, (d + 1) * W)`.
    Every rank calls it together with the same `R` and `W`.

    ```mlir
    %a = moe.all_gather_columns %a_rank ranks = 4 rank = 1
        : (tensor<?x16xbf16>) -> tensor<?x64xbf16>
    ```
  }];
  let arguments = (ins Moe_FloatTensor:$input, I64Attr:$ranks, I64Attr:$rank);
  let results = (outs Moe_FloatTensor:$result);
  let assemblyFormat = [{
    $input `ranks` `=` $ranks `rank` `=` $rank attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Front ends: a recognised layer held next to the ops it was recognised in
//===----------------------------------------------------------------------===//

def Moe_RaisingCheckOp : Moe_Op<"raising_check", [Pure, AllTypesMatch<["raised", "original", "result"]>]> {
  let summary = "a value computed both by a raised MoE layer and by the ops it was recognised in";
  let description = [{
    What a front end writes for a recognised MoE layer when its raising is
    to be checked (`--verify-raising`): `raised` is the layer's result as moe
    ops compute it, `original` the same value as the imported program's own
    ops compute it. The raising check (lib/Tools/RaisingCheck.cpp) runs both
    on random inputs on the CPU and replaces this op by `raised` when they
    agree, by `original` (the raise refused, with a remark) when they do not.
    An unchecked one lowers to `original`: the program's own ops define the
    value.

    ```mlir
    %y = moe.raising_check %layer, %plain : tensor<16x64xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$raised, AnyRankedTensor:$original);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$raised `,` $original attr-dict `:` type($result)";
}

#endif // MOE_OPS_TD
