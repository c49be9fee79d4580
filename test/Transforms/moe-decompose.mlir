// RUN: moe-opt %s --moe-decompose --split-input-file | FileCheck %s

// Mixtral: top-2 on the logits, softmax over the picks, SwiGLU experts.
// CHECK-LABEL: func @mixtral
// CHECK-SAME: (%[[X:.+]]: tensor<?x64xbf16>, %[[WR:.+]]: tensor<8x64xbf16>, %[[UP:.+]]: tensor<8x256x64xbf16>, %[[DOWN:.+]]: tensor<8x64x128xbf16>)
// CHECK-NOT: moe.layer
// CHECK: %[[Z:.+]] = moe.router %[[X]], %[[WR]] : (tensor<?x64xbf16>, tensor<8x64xbf16>) -> tensor<?x8xf32>
// CHECK-NOT: moe.score
// CHECK: %[[W:.+]], %[[I:.+]] = moe.topk %[[Z]] k = 2 : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
// CHECK: %[[G:.+]] = moe.renormalize softmax %[[W]], %[[I]] :
// CHECK: %[[ROWS:.+]], %[[OFF:.+]], %[[SR:.+]], %[[SW:.+]] = moe.dispatch %[[I]], %[[G]] experts = 8 : (tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<?xi32>, tensor<9xi32>, tensor<?x2xi32>, tensor<?x2xf32>)
// CHECK: %[[XS:.+]] = moe.permute %[[X]], %[[ROWS]] : (tensor<?x64xbf16>, tensor<?xi32>) -> tensor<?x64xbf16>
// CHECK: %[[H:.+]] = moe.grouped_matmul %[[XS]], %[[UP]], %[[OFF]] : {{.*}} -> tensor<?x256xbf16>
// CHECK: %[[A:.+]] = moe.activation swiglu %[[H]] : tensor<?x256xbf16> -> tensor<?x128xbf16>
// CHECK: %[[O:.+]] = moe.grouped_matmul %[[A]], %[[DOWN]], %[[OFF]] : {{.*}} -> tensor<?x64xbf16>
// CHECK: %[[Y:.+]] = moe.combine %[[O]], %[[SR]], %[[SW]]
// CHECK: return %[[Y]], %[[Z]]
func.func @mixtral(%x: tensor<?x64xbf16>, %wr: tensor<8x64xbf16>, %up: tensor<8x256x64xbf16>,
                   %down: tensor<8x64x128xbf16>) -> (tensor<?x64xbf16>, tensor<?x8xf32>) {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score>}
    : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x256x64xbf16>, tensor<8x64x128xbf16>)
    -> (tensor<?x64xbf16>, tensor<?x8xf32>)
  return %y, %z : tensor<?x64xbf16>, tensor<?x8xf32>
}

// -----

// DeepSeek-V3: sigmoid scores, biased grouped top-k, renormalized and scaled,
// plus a shared expert on the unscaled input.
// CHECK-LABEL: func @deepseek_v3
// CHECK-SAME: (%[[X:[^:]+]]: tensor<16x32xf32>, %[[WR:[^:]+]]: tensor<64x32xf32>, %[[B:[^:]+]]: tensor<64xf32>
// CHECK: %[[Z:.+]] = moe.router %[[X]], %[[WR]]
// CHECK: %[[S:.+]] = moe.score sigmoid %[[Z]] : tensor<16x64xf32> -> tensor<16x64xf32>
// CHECK: %[[W:.+]], %[[I:.+]] = moe.topk %[[S]] bias(%[[B]]) k = 8 {num_groups = 8 : i64, topk_groups = 4 : i64}
// CHECK: %[[G:.+]] = moe.renormalize sum %[[W]], %[[I]] {scale = 2.500000e+00 : f64}
// CHECK: moe.dispatch %[[I]], %[[G]] experts = 64 : {{.*}} -> (tensor<128xi32>, tensor<65xi32>, tensor<16x8xi32>, tensor<16x8xf32>)
// CHECK: %[[Y:.+]] = moe.combine
// CHECK: %[[SH:.+]] = moe.dense_ffn swiglu %[[X]]
// CHECK: %[[SUM:.+]] = arith.addf %[[Y]], %[[SH]] : tensor<16x32xf32>
// CHECK: return %[[SUM]]
func.func @deepseek_v3(%x: tensor<16x32xf32>, %wr: tensor<64x32xf32>, %bias: tensor<64xf32>,
                       %up: tensor<64x32x32xf32>, %down: tensor<64x32x16xf32>,
                       %su: tensor<64x32xf32>, %sd: tensor<32x32xf32>) -> tensor<16x32xf32> {
  %y, %z = moe.layer %x, %wr selection_bias(%bias) ffn(%up, %down) shared(%su, %sd) {
      experts = [#moe.group<ffn, 64>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = sigmoid, k = 8, normalize = all, scale = 2.5,
                             num_groups = 8, topk_groups = 4>}
    : (tensor<16x32xf32>, tensor<64x32xf32>, tensor<64xf32>, tensor<64x32x32xf32>,
       tensor<64x32x16xf32>, tensor<64x32xf32>, tensor<32x32xf32>) -> (tensor<16x32xf32>, tensor<16x64xf32>)
  return %y : tensor<16x32xf32>
}

// -----

// LFM2-MoE: sigmoid top-4 with a selection bias, the picks divided by their
// sum + 1e-6: the renormalisation carries the epsilon.
// CHECK-LABEL: func @lfm2_norm_epsilon
// CHECK: %[[W:.+]], %[[I:.+]] = moe.topk %{{.+}} bias(%{{.+}}) k = 4
// CHECK: moe.renormalize sum %[[W]], %[[I]] {epsilon = 9.9999999999999995E-7 : f64}
func.func @lfm2_norm_epsilon(%x: tensor<16x32xf32>, %wr: tensor<8x32xf32>, %bias: tensor<8xf32>,
                             %up: tensor<8x32x32xf32>, %down: tensor<8x32x16xf32>) -> tensor<16x32xf32> {
  %y, %z = moe.layer %x, %wr selection_bias(%bias) ffn(%up, %down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = sigmoid, k = 4, normalize = all, norm_epsilon = 1.0e-06>}
    : (tensor<16x32xf32>, tensor<8x32xf32>, tensor<8xf32>, tensor<8x32x32xf32>, tensor<8x32x16xf32>)
    -> (tensor<16x32xf32>, tensor<16x8xf32>)
  return %y : tensor<16x32xf32>
}

// -----

// Qwen2-MoE: softmax then top-4 without renormalization; gated shared expert.
// CHECK-LABEL: func @qwen2_moe
// CHECK: %[[S:.+]] = moe.score softmax
// CHECK: %[[W:.+]], %[[I:.+]] = moe.topk %[[S]] k = 4
// CHECK-NOT: moe.renormalize
// CHECK: moe.dispatch %[[I]], %[[W]] experts = 8
// CHECK: moe.dense_ffn swiglu %{{[^,]+}}, %{{[^,]+}}, %{{[^ ]+}} gate(%{{[^)]+}})
// CHECK: arith.addf
func.func @qwen2_moe(%x: tensor<4x16xf32>, %wr: tensor<8x16xf32>, %up: tensor<8x16x16xf32>,
                     %down: tensor<8x16x8xf32>, %su: tensor<32x16xf32>, %sd: tensor<16x16xf32>,
                     %sg: tensor<1x16xf32>) -> tensor<4x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) shared(%su, %sd) shared_gate(%sg) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 4>}
    : (tensor<4x16xf32>, tensor<8x16xf32>, tensor<8x16x16xf32>, tensor<8x16x8xf32>, tensor<32x16xf32>,
       tensor<16x16xf32>, tensor<1x16xf32>) -> (tensor<4x16xf32>, tensor<4x8xf32>)
  return %y : tensor<4x16xf32>
}

// -----

// MoE++: two-layer router, gating residual, zero expert left out of the
// renormalization, expert input scaled by k, copy and constant experts added.
// CHECK-LABEL: func @moe_plus_plus
// CHECK-SAME: (%[[X:[^:]+]]: tensor<8x16xf32>, %[[W2:[^:]+]]: tensor<8x64xf32>, %[[W1:[^:]+]]: tensor<64x16xf32>, %[[PREV:[^:]+]]: tensor<8x8xf32>, %[[GR:[^:]+]]: tensor<8x8xf32>
// CHECK-DAG: %[[TWO:.+]] = arith.constant 2.000000e+00 : f32
// CHECK-DAG: %[[Z0:.+]] = moe.router %[[X]], %[[W2]] hidden(%[[W1]])
// CHECK: %[[Z:.+]] = moe.gating_residual %[[Z0]], %[[PREV]], %[[GR]]
// CHECK: %[[S:.+]] = moe.score softmax %[[Z]]
// CHECK: %[[W:.+]], %[[I:.+]] = moe.topk %[[S]] k = 2
// CHECK: %[[G:.+]] = moe.renormalize sum %[[W]], %[[I]] {skip = array<i64: 7>}
// CHECK: %[[SPLAT:.+]] = tensor.splat %[[TWO]] : tensor<8x16xf32>
// CHECK: %[[XIN:.+]] = arith.mulf %[[X]], %[[SPLAT]]
// CHECK: %{{.+}}, %{{.+}}, %{{.+}}, %[[SW:.+]] = moe.dispatch %[[I]], %[[G]] experts = 8
// CHECK: moe.permute %[[XIN]]
// CHECK: %[[Y:.+]] = moe.combine
// CHECK: %[[ZC:.+]] = moe.zero_compute %[[XIN]], %[[I]], %[[SW]] constant(%{{[^,]+}}, %{{[^)]+}}) experts = [#moe.group<ffn, 4>, #moe.group<constant, 2>, #moe.group<copy, 1>, #moe.group<zero, 1>]
// CHECK: %[[SUM:.+]] = arith.addf %[[Y]], %[[ZC]]
// CHECK: return %[[SUM]], %[[Z]]
func.func @moe_plus_plus(%x: tensor<8x16xf32>, %w2: tensor<8x64xf32>, %w1: tensor<64x16xf32>,
                         %prev: tensor<8x8xf32>, %g: tensor<8x8xf32>, %up: tensor<4x64x16xf32>,
                         %down: tensor<4x16x32xf32>, %cv: tensor<2x16xf32>,
                         %cm: tensor<2x2x16xf32>) -> (tensor<8x16xf32>, tensor<8x8xf32>) {
  %y, %z = moe.layer %x, %w2 hidden(%w1) residual(%prev, %g) ffn(%up, %down) constant(%cv, %cm) {
      experts = [#moe.group<ffn, 4>, #moe.group<constant, 2>, #moe.group<copy, 1>, #moe.group<zero, 1>],
      activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, normalize = computing, input_scale = 2.0>}
    : (tensor<8x16xf32>, tensor<8x64xf32>, tensor<64x16xf32>, tensor<8x8xf32>, tensor<8x8xf32>,
       tensor<4x64x16xf32>, tensor<4x16x32xf32>, tensor<2x16xf32>, tensor<2x2x16xf32>)
    -> (tensor<8x16xf32>, tensor<8x8xf32>)
  return %y, %z : tensor<8x16xf32>, tensor<8x8xf32>
}

// -----

// AdaMoE: null experts are left out of the renormalization; their (zero)
// contribution is a moe.zero_compute that carries the expert set.
// CHECK-LABEL: func @adamoe_null_experts
// CHECK: moe.topk %{{.+}} k = 4
// CHECK: moe.renormalize sum %{{[^,]+}}, %{{[^ ]+}} {skip = array<i64: 6, 7>}
// CHECK: moe.dispatch %{{.+}} experts = 8
// CHECK: moe.zero_compute {{.*}} experts = [#moe.group<ffn, 6>, #moe.group<null, 2>]
// CHECK: return
func.func @adamoe_null_experts(%x: tensor<8x16xf32>, %wr: tensor<8x16xf32>, %up: tensor<6x16x16xf32>,
                               %down: tensor<6x16x8xf32>) -> tensor<8x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 6>, #moe.group<null, 2>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 4, normalize = computing>}
    : (tensor<8x16xf32>, tensor<8x16xf32>, tensor<6x16x16xf32>, tensor<6x16x8xf32>)
    -> (tensor<8x16xf32>, tensor<8x8xf32>)
  return %y : tensor<8x16xf32>
}

// -----

// ReMoE: ReLU scores, every positive expert selected (up to all E).
// CHECK-LABEL: func @remoe_relu
// CHECK: %[[R:.+]] = moe.score relu
// CHECK: %[[W:.+]], %[[I:.+]] = moe.threshold %[[R]] max_k = 4 : (tensor<8x4xf32>) -> (tensor<8x4xf32>, tensor<8x4xi32>)
// CHECK-NOT: moe.renormalize
// CHECK: moe.dispatch %[[I]], %[[W]] experts = 4 : {{.*}} -> (tensor<32xi32>
func.func @remoe_relu(%x: tensor<8x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x8x16xf32>,
                      %down: tensor<4x16x8xf32>) -> tensor<8x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<relu>,
      routing = #moe.routing<scoring = relu, select = threshold, k = 4>}
    : (tensor<8x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>)
    -> (tensor<8x16xf32>, tensor<8x4xf32>)
  return %y : tensor<8x16xf32>
}

// -----

// GG MoE: Gumbel-softmax scores averaged over samples, dense (k = E).
// CHECK-LABEL: func @gg_moe_dense
// CHECK: moe.score gumbel_softmax %{{.+}} {samples = 10 : i64, seed = 7 : i64, tau = 5.000000e-01 : f64}
// CHECK: moe.topk %{{.+}} k = 4
func.func @gg_moe_dense(%x: tensor<8x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x8x16xf32>,
                        %down: tensor<4x16x8xf32>) -> tensor<8x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<relu>,
      routing = #moe.routing<scoring = gumbel_softmax, k = 4, tau = 0.5, samples = 10, seed = 7>}
    : (tensor<8x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>)
    -> (tensor<8x16xf32>, tensor<8x4xf32>)
  return %y : tensor<8x16xf32>
}

// -----

// Expert choice: each expert picks 4 tokens; E slots per token.
// CHECK-LABEL: func @expert_choice
// CHECK: moe.expert_choice %{{.+}} capacity = 4 : (tensor<8x4xf32>) -> (tensor<8x4xf32>, tensor<8x4xi32>)
// Bidirectional: token top-2 intersected with expert top-4.
// CHECK: moe.expert_choice %{{.+}} capacity = 4 {token_k = 2 : i64} : (tensor<8x4xf32>) -> (tensor<8x2xf32>, tensor<8x2xi32>)
func.func @expert_choice(%x: tensor<8x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x8x16xf32>,
                         %down: tensor<4x16x8xf32>) -> (tensor<8x16xf32>, tensor<8x16xf32>) {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<gelu>,
      routing = #moe.routing<scoring = softmax, select = expert_choice, capacity = 4>}
    : (tensor<8x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>)
    -> (tensor<8x16xf32>, tensor<8x4xf32>)
  %y2, %z2 = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<gelu>,
      routing = #moe.routing<scoring = softmax, select = bidirectional, k = 2, capacity = 4>}
    : (tensor<8x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>)
    -> (tensor<8x16xf32>, tensor<8x4xf32>)
  return %y, %y2 : tensor<8x16xf32>, tensor<8x16xf32>
}

// -----

// Switch/GShard capacity: C = ceil(8 * 2 / 4 * 1.25) = 5 rows per expert.
// CHECK-LABEL: func @capacity_padded
// CHECK: moe.dispatch %{{.+}} experts = 4 {capacity = #moe.capacity<factor = 1.25, pad = true>} : {{.*}} -> (tensor<20xi32>, tensor<5xi32>, tensor<8x2xi32>, tensor<8x2xf32>)
// CHECK: moe.permute {{.*}} -> tensor<20x16xf32>
func.func @capacity_padded(%x: tensor<8x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x8x16xf32>,
                           %down: tensor<4x16x8xf32>) -> tensor<8x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<relu>,
      routing = #moe.routing<scoring = softmax, k = 2>,
      capacity = #moe.capacity<factor = 1.25, pad = true>}
    : (tensor<8x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>)
    -> (tensor<8x16xf32>, tensor<8x4xf32>)
  return %y : tensor<8x16xf32>
}

// -----

// Rectify-Router: fill-in selects a (k+1)-th choice weighted against the first k;
// intra-device rectification reads the logits.
// CHECK-LABEL: func @rectify_router
// CHECK: %[[Z:.+]] = moe.router
// CHECK: %[[W:.+]], %[[I:.+]] = moe.topk %{{.+}} k = 2 : (tensor<8x4xf32>) -> (tensor<8x2xf32>, tensor<8x2xi32>)
// CHECK: %[[G:.+]] = moe.renormalize sum %[[W]], %[[I]] {denominator_slots = 1 : i64}
// CHECK: moe.dispatch %[[I]], %[[G]] logits(%[[Z]]) experts = 4 {capacity = #moe.capacity<tokens = 3, pad = true, rectify = both, experts_per_device = 2>} : {{.*}} -> (tensor<12xi32>
func.func @rectify_router(%x: tensor<8x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x8x16xf32>,
                          %down: tensor<4x16x8xf32>) -> tensor<8x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<relu>,
      routing = #moe.routing<scoring = softmax, k = 1, normalize = all>,
      capacity = #moe.capacity<tokens = 3, pad = true, rectify = both, experts_per_device = 2>}
    : (tensor<8x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>)
    -> (tensor<8x16xf32>, tensor<8x4xf32>)
  return %y : tensor<8x16xf32>
}

// -----

// A routed scaling factor without renormalization multiplies the weights.
// With a dynamic token count, the splat takes its size from tensor.dim.
// CHECK-LABEL: func @scale_without_normalize
// CHECK-DAG: %[[C:.+]] = arith.constant 1.500000e+00 : f32
// CHECK-DAG: %[[W:.+]], %[[I:.+]] = moe.topk
// CHECK: %[[D:.+]] = tensor.dim %[[W]], %{{.+}} : tensor<?x2xf32>
// CHECK: %[[SPLAT:.+]] = tensor.splat %[[C]][%[[D]]] : tensor<?x2xf32>
// CHECK: %[[G:.+]] = arith.mulf %[[W]], %[[SPLAT]]
// CHECK: moe.dispatch %[[I]], %[[G]]
func.func @scale_without_normalize(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x8x16xf32>,
                                   %down: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<relu>,
      routing = #moe.routing<scoring = sigmoid, k = 2, scale = 1.5>}
    : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>)
    -> (tensor<?x16xf32>, tensor<?x4xf32>)
  return %y : tensor<?x16xf32>
}

// -----

// Negative: a function with no moe.layer is left as it is.
// CHECK-LABEL: func @no_layer
// CHECK-NEXT: %[[S:.+]] = moe.score softmax %{{.+}}
// CHECK-NEXT: return %[[S]]
func.func @no_layer(%z: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %s = moe.score softmax %z : tensor<4x8xf32> -> tensor<4x8xf32>
  return %s : tensor<4x8xf32>
}

// -----

// MEO sequence-level gating: route the mean of each group of 8 tokens, then
// expand the selection, the weights and the logits to every token.
// CHECK-LABEL: func @group_routing
// CHECK-SAME: (%[[X:[^:]+]]: tensor<32x16xf32>
// CHECK: %[[M:.+]] = moe.group_mean %[[X]] group_size = 8 : tensor<32x16xf32> -> tensor<4x16xf32>
// CHECK: %[[Z:.+]] = moe.router %[[M]], %{{.+}} -> tensor<4x4xf32>
// CHECK: %[[W:.+]], %[[I:.+]] = moe.topk %[[Z]] k = 2 : (tensor<4x4xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
// CHECK-DAG: %[[WT:.+]] = moe.expand_groups %{{.+}} to %[[X]] group_size = 8 : (tensor<4x2xf32>, tensor<32x16xf32>) -> tensor<32x2xf32>
// CHECK-DAG: %[[IT:.+]] = moe.expand_groups %[[I]] to %[[X]] group_size = 8 : (tensor<4x2xi32>, tensor<32x16xf32>) -> tensor<32x2xi32>
// CHECK-DAG: %[[ZT:.+]] = moe.expand_groups %[[Z]] to %[[X]] group_size = 8 : (tensor<4x4xf32>, tensor<32x16xf32>) -> tensor<32x4xf32>
// CHECK: moe.dispatch %[[IT]], %[[WT]] experts = 4
// CHECK: return %{{.+}}, %[[ZT]]
func.func @group_routing(%x: tensor<32x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x8x16xf32>,
                         %down: tensor<4x16x8xf32>) -> (tensor<32x16xf32>, tensor<32x4xf32>) {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<linear>,
      routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score, group_size = 8>}
    : (tensor<32x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>) -> (tensor<32x16xf32>, tensor<32x4xf32>)
  return %y, %z : tensor<32x16xf32>, tensor<32x4xf32>
}

// -----

// A bf16 program's router: the f32 logits rounded to bf16 and widened back
// before the selection (and as the layer's logits).
// CHECK-LABEL: func @bf16_logits
// CHECK: %[[Z:.+]] = moe.router
// CHECK: %[[N:.+]] = arith.truncf %[[Z]] : tensor<?x8xf32> to tensor<?x8xbf16>
// CHECK: %[[R:.+]] = arith.extf %[[N]] : tensor<?x8xbf16> to tensor<?x8xf32>
// CHECK: moe.score softmax %[[R]]
// CHECK: moe.topk
// CHECK: return %{{.+}}, %[[R]]
func.func @bf16_logits(%x: tensor<?x64xbf16>, %wr: tensor<8x64xbf16>, %up: tensor<8x256x64xbf16>,
                       %down: tensor<8x64x128xbf16>) -> (tensor<?x64xbf16>, tensor<?x8xf32>) {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, normalize = all, logits_type = bf16>}
    : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x256x64xbf16>, tensor<8x64x128xbf16>)
    -> (tensor<?x64xbf16>, tensor<?x8xf32>)
  return %y, %z : tensor<?x64xbf16>, tensor<?x8xf32>
}

// -----

// An f16 program that also scores in f16: the softmax's f32 scores rounded
// to f16 and widened back before the top-k (the weights are the rounded
// scores); the layer's logits are the rounded logits, not the scores.
// CHECK-LABEL: func @f16_scores
// CHECK: %[[Z:.+]] = moe.router
// CHECK: %[[N:.+]] = arith.truncf %[[Z]] : tensor<?x8xf32> to tensor<?x8xf16>
// CHECK: %[[R:.+]] = arith.extf %[[N]] : tensor<?x8xf16> to tensor<?x8xf32>
// CHECK: %[[S:.+]] = moe.score softmax %[[R]]
// CHECK: %[[SN:.+]] = arith.truncf %[[S]] : tensor<?x8xf32> to tensor<?x8xf16>
// CHECK: %[[SR:.+]] = arith.extf %[[SN]] : tensor<?x8xf16> to tensor<?x8xf32>
// CHECK: moe.topk %[[SR]]
// CHECK: return %{{.+}}, %[[R]]
func.func @f16_scores(%x: tensor<?x64xf16>, %wr: tensor<8x64xf16>, %up: tensor<8x256x64xf16>,
                      %down: tensor<8x64x128xf16>) -> (tensor<?x64xf16>, tensor<?x8xf32>) {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, logits_type = f16, scores_type = f16>}
    : (tensor<?x64xf16>, tensor<8x64xf16>, tensor<8x256x64xf16>, tensor<8x64x128xf16>)
    -> (tensor<?x64xf16>, tensor<?x8xf32>)
  return %y, %z : tensor<?x64xf16>, tensor<?x8xf32>
}

// -----

// A router with its own bias: moe.router adds it (before the logits are
// rounded), and the layer's logits include it.
// CHECK-LABEL: func @router_bias
// CHECK: %[[Z:.+]] = moe.router %{{.+}}, %{{.+}} bias(%{{.+}}) : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8xbf16>) -> tensor<?x8xf32>
// CHECK: %[[N:.+]] = arith.truncf %[[Z]]
// CHECK: %[[R:.+]] = arith.extf %[[N]]
// CHECK: moe.topk %[[R]]
// CHECK: return %{{.+}}, %[[R]]
func.func @router_bias(%x: tensor<?x64xbf16>, %wr: tensor<8x64xbf16>, %b: tensor<8xbf16>, %up: tensor<8x256x64xbf16>,
                       %down: tensor<8x64x128xbf16>) -> (tensor<?x64xbf16>, tensor<?x8xf32>) {
  %y, %z = moe.layer %x, %wr bias(%b) ffn(%up, %down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score, logits_type = bf16>}
    : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8xbf16>, tensor<8x256x64xbf16>, tensor<8x64x128xbf16>)
    -> (tensor<?x64xbf16>, tensor<?x8xf32>)
  return %y, %z : tensor<?x64xbf16>, tensor<?x8xf32>
}

// -----

// Experts with biases: each bias is one more weight column, met by a column
// of ones in the rows (exact: the f32 accumulation adds bias * 1).
// CHECK-LABEL: func @expert_biases
// CHECK: %[[ONES:.+]] = linalg.fill
// CHECK: %[[ROWS:.+]] = tensor.concat dim(1) %{{.+}}, %[[ONES]] : (tensor<?x16xf32>, tensor<?x1xf32>) -> tensor<?x17xf32>
// CHECK: %[[UP:.+]] = tensor.concat dim(2) %arg2, %{{.+}} : (tensor<4x8x16xf32>, tensor<4x8x1xf32>) -> tensor<4x8x17xf32>
// CHECK: moe.grouped_matmul %[[ROWS]], %[[UP]]
// CHECK: moe.activation relu
// CHECK: tensor.concat dim(2) %arg3, %{{.+}} : (tensor<4x16x8xf32>, tensor<4x16x1xf32>) -> tensor<4x16x9xf32>
// CHECK: moe.grouped_matmul
// CHECK: moe.combine
func.func @expert_biases(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x8x16xf32>, %down: tensor<4x16x8xf32>,
                         %bu: tensor<4x8xf32>, %bd: tensor<4x16xf32>) -> tensor<?x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) ffn_bias(%bu, %bd) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<relu>,
      routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>, tensor<4x8xf32>, tensor<4x16xf32>)
    -> (tensor<?x16xf32>, tensor<?x4xf32>)
  return %y : tensor<?x16xf32>
}
