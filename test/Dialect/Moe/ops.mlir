// Every op and attribute form: parse -> print -> parse, in the custom and the
// generic form.
// RUN: moe-opt %s | moe-opt | FileCheck %s
// RUN: moe-opt %s --mlir-print-op-generic | moe-opt | FileCheck %s

// CHECK-LABEL: func @layer_mixtral
// CHECK: moe.layer %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} ffn(%{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 8>], routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score>}
func.func @layer_mixtral(%x: tensor<?x64xbf16>, %wr: tensor<8x64xbf16>, %up: tensor<8x256x64xbf16>,
                         %down: tensor<8x64x128xbf16>) -> (tensor<?x64xbf16>, tensor<?x8xf32>) {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score>}
    : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8x256x64xbf16>, tensor<8x64x128xbf16>)
    -> (tensor<?x64xbf16>, tensor<?x8xf32>)
  return %y, %z : tensor<?x64xbf16>, tensor<?x8xf32>
}

// CHECK-LABEL: func @layer_deepseek
// CHECK: moe.layer %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} selection_bias(%{{[[:alnum:]_]+}}) ffn(%{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}) shared(%{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}})
// CHECK-SAME: routing = #moe.routing<scoring = sigmoid, k = 8, normalize = all, scale = 2.5, num_groups = 8, topk_groups = 4>
func.func @layer_deepseek(%x: tensor<16x32xf32>, %wr: tensor<64x32xf32>, %bias: tensor<64xf32>,
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

// CHECK-LABEL: func @layer_router_bias
// CHECK: moe.layer %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} bias(%{{[[:alnum:]_]+}}) ffn(
func.func @layer_router_bias(%x: tensor<8x16xbf16>, %wr: tensor<4x16xbf16>, %b: tensor<4xbf16>,
                             %up: tensor<4x8x16xbf16>, %down: tensor<4x16x8xbf16>) -> tensor<8x16xbf16> {
  %y, %z = moe.layer %x, %wr bias(%b) ffn(%up, %down) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<gelu>,
      routing = #moe.routing<scoring = softmax, k = 2, logits_type = bf16>}
    : (tensor<8x16xbf16>, tensor<4x16xbf16>, tensor<4xbf16>, tensor<4x8x16xbf16>, tensor<4x16x8xbf16>)
    -> (tensor<8x16xbf16>, tensor<8x4xf32>)
  return %y : tensor<8x16xbf16>
}

// CHECK-LABEL: func @layer_expert_biases
// CHECK: moe.layer %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} ffn(%{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}) ffn_bias(%{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}) {
func.func @layer_expert_biases(%x: tensor<8x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x8x16xf32>,
                               %down: tensor<4x16x8xf32>, %bu: tensor<4x8xf32>, %bd: tensor<4x16xf32>) -> tensor<8x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) ffn_bias(%bu, %bd) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<relu>,
      routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<8x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>, tensor<4x8xf32>, tensor<4x16xf32>)
    -> (tensor<8x16xf32>, tensor<8x4xf32>)
  return %y : tensor<8x16xf32>
}

// CHECK-LABEL: func @layer_moe_plus_plus
// CHECK: moe.layer %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} hidden(%{{[[:alnum:]_]+}}) residual(%{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}) ffn(%{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}) constant(%{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}})
// CHECK-SAME: experts = [#moe.group<ffn, 4>, #moe.group<constant, 2>, #moe.group<copy, 1>, #moe.group<zero, 1>]
// CHECK-SAME: routing = #moe.routing<scoring = softmax, k = 2, normalize = computing, input_scale = 2.0>
func.func @layer_moe_plus_plus(%x: tensor<8x16xf32>, %w2: tensor<8x64xf32>, %w1: tensor<64x16xf32>,
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

// CHECK-LABEL: func @layer_capacity_qwen
// CHECK: moe.layer {{.*}} shared(%{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}) shared_gate(%{{[[:alnum:]_]+}})
// CHECK-SAME: capacity = #moe.capacity<factor = 1.25, drop = position, pad = true>
// CHECK-SAME: experts = [#moe.group<ffn, 6>, #moe.group<null, 2>]
func.func @layer_capacity_qwen(%x: tensor<8x16xf16>, %wr: tensor<8x16xf16>, %up: tensor<6x8x16xf16>,
                               %down: tensor<6x16x8xf16>, %su: tensor<8x16xf16>, %sd: tensor<16x8xf16>,
                               %sg: tensor<1x16xf16>) -> tensor<8x16xf16> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) shared(%su, %sd) shared_gate(%sg) {
      experts = [#moe.group<ffn, 6>, #moe.group<null, 2>], activation = #moe.activation<gelu>,
      routing = #moe.routing<scoring = softmax, k = 4>,
      capacity = #moe.capacity<factor = 1.25, drop = position, pad = true>}
    : (tensor<8x16xf16>, tensor<8x16xf16>, tensor<6x8x16xf16>, tensor<6x16x8xf16>, tensor<8x16xf16>,
       tensor<16x8xf16>, tensor<1x16xf16>) -> (tensor<8x16xf16>, tensor<8x8xf32>)
  return %y : tensor<8x16xf16>
}

// CHECK-LABEL: func @layer_selection_modes
// CHECK: #moe.routing<scoring = relu, select = threshold, k = 4>
// CHECK: #moe.routing<scoring = gumbel_softmax, k = 4, tau = 0.5, samples = 10, seed = 7>
// CHECK: #moe.routing<scoring = softmax, select = expert_choice, capacity = 4>
// CHECK: #moe.routing<scoring = softmax, select = bidirectional, k = 2, capacity = 4>
// CHECK: #moe.capacity<tokens = 4, pad = true, rectify = both, experts_per_device = 2>
func.func @layer_selection_modes(%x: tensor<8x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x8x16xf32>,
                                 %down: tensor<4x16x8xf32>, %z: tensor<8x4xf32>) {
  %y0, %z0 = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<relu>,
      routing = #moe.routing<scoring = relu, select = threshold, k = 4>}
    : (tensor<8x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>)
    -> (tensor<8x16xf32>, tensor<8x4xf32>)
  %y1, %z1 = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<silu>,
      routing = #moe.routing<scoring = gumbel_softmax, k = 4, tau = 0.5, samples = 10, seed = 7>}
    : (tensor<8x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>)
    -> (tensor<8x16xf32>, tensor<8x4xf32>)
  %y2, %z2 = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<linear>,
      routing = #moe.routing<scoring = softmax, select = expert_choice, capacity = 4>}
    : (tensor<8x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>)
    -> (tensor<8x16xf32>, tensor<8x4xf32>)
  %y3, %z3 = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<gelu>,
      routing = #moe.routing<scoring = softmax, select = bidirectional, k = 2, capacity = 4>}
    : (tensor<8x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>)
    -> (tensor<8x16xf32>, tensor<8x4xf32>)
  %y4, %z4 = moe.layer %x, %wr ffn(%up, %down) {
      experts = [#moe.group<ffn, 4>], activation = #moe.activation<relu>,
      routing = #moe.routing<scoring = softmax, k = 1>,
      capacity = #moe.capacity<tokens = 4, pad = true, rectify = both, experts_per_device = 2>}
    : (tensor<8x16xf32>, tensor<4x16xf32>, tensor<4x8x16xf32>, tensor<4x16x8xf32>)
    -> (tensor<8x16xf32>, tensor<8x4xf32>)
  return
}

// CHECK-LABEL: func @routing_ops
// CHECK: moe.router %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} : (tensor<?x64xbf16>, tensor<8x64xbf16>) -> tensor<?x8xf32>
// CHECK: moe.router %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} hidden(%{{[[:alnum:]_]+}}) : (tensor<?x64xbf16>, tensor<8x32xf32>, tensor<32x64xf32>) -> tensor<?x8xf32>
// CHECK: moe.router %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} bias(%{{[[:alnum:]_]+}}) : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8xf32>) -> tensor<?x8xf32>
// CHECK: moe.gating_residual
// CHECK: moe.score softmax %{{[[:alnum:]_]+}} : tensor<?x8xf32> -> tensor<?x8xf32>
// CHECK: moe.score sigmoid
// CHECK: moe.score relu
// CHECK: moe.score gumbel_softmax %{{[[:alnum:]_]+}} {samples = 10 : i64, seed = 3 : i64, tau = 5.000000e-01 : f64}
// CHECK: moe.topk %{{[[:alnum:]_]+}} k = 2 : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
// CHECK: moe.topk %{{[[:alnum:]_]+}} bias(%{{[[:alnum:]_]+}}) k = 4 {group_score = #moe.group_score<max>, num_groups = 4 : i64, topk_groups = 2 : i64}
// CHECK: moe.threshold %{{[[:alnum:]_]+}} max_k = 8 {threshold = 1.000000e-01 : f64}
// CHECK: moe.expert_choice %{{[[:alnum:]_]+}} capacity = 2 :
// CHECK: moe.expert_choice %{{[[:alnum:]_]+}} capacity = 2 {token_k = 2 : i64}
// CHECK: moe.renormalize sum %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} {denominator_slots = 1 : i64, scale = 2.500000e+00 : f64, skip = array<i64: 7>}
// CHECK: moe.renormalize softmax
func.func @routing_ops(%x: tensor<?x64xbf16>, %wr: tensor<8x64xbf16>, %w2: tensor<8x32xf32>,
                       %w1: tensor<32x64xf32>, %prev: tensor<?x8xf32>, %g: tensor<8x8xf32>,
                       %bias: tensor<8xf32>) {
  %z = moe.router %x, %wr : (tensor<?x64xbf16>, tensor<8x64xbf16>) -> tensor<?x8xf32>
  %z2 = moe.router %x, %w2 hidden(%w1) : (tensor<?x64xbf16>, tensor<8x32xf32>, tensor<32x64xf32>) -> tensor<?x8xf32>
  %z3 = moe.router %x, %wr bias(%bias) : (tensor<?x64xbf16>, tensor<8x64xbf16>, tensor<8xf32>) -> tensor<?x8xf32>
  %zr = moe.gating_residual %z, %prev, %g : (tensor<?x8xf32>, tensor<?x8xf32>, tensor<8x8xf32>) -> tensor<?x8xf32>
  %p = moe.score softmax %zr : tensor<?x8xf32> -> tensor<?x8xf32>
  %s = moe.score sigmoid %zr : tensor<?x8xf32> -> tensor<?x8xf32>
  %r = moe.score relu %zr : tensor<?x8xf32> -> tensor<?x8xf32>
  %q = moe.score gumbel_softmax %zr {tau = 0.5 : f64, samples = 10 : i64, seed = 3 : i64} : tensor<?x8xf32> -> tensor<?x8xf32>
  %w, %i = moe.topk %p k = 2 : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  %wg, %ig = moe.topk %s bias(%bias) k = 4 {num_groups = 4 : i64, topk_groups = 2 : i64,
                                            group_score = #moe.group_score<max>}
    : (tensor<?x8xf32>, tensor<8xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>)
  %wt, %it = moe.threshold %r max_k = 8 {threshold = 0.1 : f64} : (tensor<?x8xf32>) -> (tensor<?x8xf32>, tensor<?x8xi32>)
  %we, %ie = moe.expert_choice %p capacity = 2 : (tensor<?x8xf32>) -> (tensor<?x8xf32>, tensor<?x8xi32>)
  %wb, %ib = moe.expert_choice %p capacity = 2 {token_k = 2 : i64} : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  %n = moe.renormalize sum %w, %i {skip = array<i64: 7>, scale = 2.5 : f64, denominator_slots = 1 : i64}
    : (tensor<?x2xf32>, tensor<?x2xi32>) -> tensor<?x2xf32>
  %m = moe.renormalize softmax %w, %i : (tensor<?x2xf32>, tensor<?x2xi32>) -> tensor<?x2xf32>
  return
}

// CHECK-LABEL: func @group_ops
// CHECK-SAME: #moe.routing<scoring = softmax, k = 2, group_size = 128>
// CHECK: moe.group_mean %{{[[:alnum:]_]+}} group_size = 128 : tensor<512x64xbf16> -> tensor<4x64xbf16>
// CHECK: moe.expand_groups %{{[[:alnum:]_]+}} to %{{[[:alnum:]_]+}} group_size = 128 : (tensor<4x2xi32>, tensor<512x64xbf16>) -> tensor<512x2xi32>
func.func @group_ops(%x: tensor<512x64xbf16>, %i: tensor<4x2xi32>) -> tensor<512x2xi32>
    attributes {r = #moe.routing<scoring = softmax, k = 2, group_size = 128>} {
  %m = moe.group_mean %x group_size = 128 : tensor<512x64xbf16> -> tensor<4x64xbf16>
  %e = moe.expand_groups %i to %x group_size = 128 : (tensor<4x2xi32>, tensor<512x64xbf16>) -> tensor<512x2xi32>
  return %e : tensor<512x2xi32>
}

// CHECK-LABEL: func @shared_slot
// CHECK: moe.dispatch %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} shared(%{{[[:alnum:]_]+}}) experts = 8 : (tensor<16x2xi32>, tensor<16x2xf32>, tensor<16x1xf32>) -> (tensor<48xi32>, tensor<10xi32>, tensor<16x3xi32>, tensor<16x3xf32>)
// CHECK: moe.grouped_matmul_act swiglu %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} shared(%{{[[:alnum:]_]+}})
// CHECK: moe.grouped_matmul_combine {{.*}} shared(%{{[[:alnum:]_]+}})
func.func @shared_slot(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>, %s: tensor<16x1xf32>, %x: tensor<16x64xf32>,
                       %up: tensor<8x256x64xf32>, %su: tensor<256x64xf32>, %down: tensor<8x64x128xf32>,
                       %sd: tensor<64x128xf32>) -> tensor<16x64xf32> {
  %rows, %off, %sr, %sw = moe.dispatch %i, %w shared(%s) experts = 8
    : (tensor<16x2xi32>, tensor<16x2xf32>, tensor<16x1xf32>) -> (tensor<48xi32>, tensor<10xi32>, tensor<16x3xi32>, tensor<16x3xf32>)
  %xs = moe.permute %x, %rows : (tensor<16x64xf32>, tensor<48xi32>) -> tensor<48x64xf32>
  %a = moe.grouped_matmul_act swiglu %xs, %up, %off shared(%su)
    : (tensor<48x64xf32>, tensor<8x256x64xf32>, tensor<10xi32>, tensor<256x64xf32>) -> tensor<48x128xf32>
  %y = moe.grouped_matmul_combine %a, %down, %off, %sr, %sw shared(%sd)
    : (tensor<48x128xf32>, tensor<8x64x128xf32>, tensor<10xi32>, tensor<16x3xi32>, tensor<16x3xf32>, tensor<64x128xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}

// CHECK-LABEL: func @fused_routing
// CHECK: moe.fused_routing(%{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}) : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>)
// CHECK: moe.yield
func.func @fused_routing(%x: tensor<?x64xf32>, %wr: tensor<8x64xf32>) -> tensor<?x2xi32> {
  %w, %i, %z = moe.fused_routing(%x, %wr) : (tensor<?x64xf32>, tensor<8x64xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>) {
  ^bb0(%a: tensor<?x64xf32>, %b: tensor<8x64xf32>):
    %logits = moe.router %a, %b : (tensor<?x64xf32>, tensor<8x64xf32>) -> tensor<?x8xf32>
    %w0, %i0 = moe.topk %logits k = 2 : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
    %g = moe.renormalize softmax %w0, %i0 : (tensor<?x2xf32>, tensor<?x2xi32>) -> tensor<?x2xf32>
    moe.yield %g, %i0, %logits : tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  }
  return %i : tensor<?x2xi32>
}

// CHECK-LABEL: func @meo_ops
// CHECK: moe.dense_gates %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} experts = 8 : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x8xf32>
// CHECK: moe.compose_experts %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} : (tensor<8x64x32xbf16>, tensor<8x32x64xbf16>) -> tensor<8x64x64xf32>
func.func @meo_ops(%w: tensor<4x2xf32>, %i: tensor<4x2xi32>, %down: tensor<8x64x32xbf16>, %up: tensor<8x32x64xbf16>) {
  %g = moe.dense_gates %w, %i experts = 8 : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x8xf32>
  %p = moe.compose_experts %down, %up : (tensor<8x64x32xbf16>, tensor<8x32x64xbf16>) -> tensor<8x64x64xf32>
  return
}

// CHECK-LABEL: func @fused_expert_ops
// CHECK: moe.grouped_matmul_act swiglu %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} : (tensor<32x64xbf16>, tensor<8x256x64xbf16>, tensor<9xi32>) -> tensor<32x128xbf16>
// CHECK: moe.grouped_matmul_act gelu
// CHECK: moe.grouped_matmul_combine %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} : (tensor<32x128xbf16>, tensor<8x64x128xbf16>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x64xbf16>
func.func @fused_expert_ops(%xs: tensor<32x64xbf16>, %w13: tensor<8x256x64xbf16>, %w2: tensor<8x64x128xbf16>,
                            %off: tensor<9xi32>, %sr: tensor<16x2xi32>, %sw: tensor<16x2xf32>) -> tensor<16x64xbf16> {
  %a = moe.grouped_matmul_act swiglu %xs, %w13, %off : (tensor<32x64xbf16>, tensor<8x256x64xbf16>, tensor<9xi32>) -> tensor<32x128xbf16>
  %g = moe.grouped_matmul_act gelu %xs, %w13, %off : (tensor<32x64xbf16>, tensor<8x256x64xbf16>, tensor<9xi32>) -> tensor<32x256xbf16>
  %y = moe.grouped_matmul_combine %a, %w2, %off, %sr, %sw
    : (tensor<32x128xbf16>, tensor<8x64x128xbf16>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x64xbf16>
  return %y : tensor<16x64xbf16>
}

// CHECK-LABEL: func @restrict_slots
// CHECK: moe.restrict_slots %{{[[:alnum:]_]+}} experts = 8 : tensor<?x2xi32>
func.func @restrict_slots(%i: tensor<?x2xi32>) -> tensor<?x2xi32> {
  %r = moe.restrict_slots %i experts = 8 : tensor<?x2xi32>
  return %r : tensor<?x2xi32>
}

// CHECK-LABEL: func @dispatch_ops
// CHECK: moe.dispatch %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} experts = 8 : (tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32xi32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
// CHECK: moe.dispatch %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} experts = 8 {capacity = #moe.capacity<factor = 1.0, pad = true>}
// CHECK: moe.dispatch %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} logits(%{{[[:alnum:]_]+}}) experts = 8 {capacity = #moe.capacity<tokens = 3, pad = true, rectify = intra_device, experts_per_device = 4>}
// CHECK: moe.permute
// CHECK: moe.combine
func.func @dispatch_ops(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>, %z: tensor<16x8xf32>,
                        %x: tensor<16x64xf32>) -> tensor<16x64xf32> {
  %rows, %off, %sr, %sw = moe.dispatch %i, %w experts = 8
    : (tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32xi32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  %rows1, %off1, %sr1, %sw1 = moe.dispatch %i, %w experts = 8 {capacity = #moe.capacity<factor = 1.0, pad = true>}
    : (tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32xi32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  %rows2, %off2, %sr2, %sw2 = moe.dispatch %i, %w logits(%z) experts = 8
      {capacity = #moe.capacity<tokens = 3, pad = true, rectify = intra_device, experts_per_device = 4>}
    : (tensor<16x2xi32>, tensor<16x2xf32>, tensor<16x8xf32>) -> (tensor<24xi32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  %xs = moe.permute %x, %rows : (tensor<16x64xf32>, tensor<32xi32>) -> tensor<32x64xf32>
  %y = moe.combine %xs, %sr, %sw : (tensor<32x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}

// CHECK-LABEL: func @expert_ops
// CHECK: moe.grouped_matmul %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} : (tensor<32x64xbf16>, tensor<8x256x64xbf16>, tensor<9xi32>) -> tensor<32x256xbf16>
// CHECK: moe.activation swiglu %{{[[:alnum:]_]+}} : tensor<32x256xbf16> -> tensor<32x128xbf16>
// CHECK: moe.activation geglu
// CHECK: moe.activation geglu_tanh %{{[[:alnum:]_]+}} : tensor<32x256xbf16> -> tensor<32x128xbf16>
// CHECK: moe.activation gelu
// CHECK: moe.zero_compute %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} constant(%{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}) experts = [#moe.group<ffn, 6>, #moe.group<constant, 1>, #moe.group<copy, 1>]
// CHECK: moe.zero_compute %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} experts = [#moe.group<ffn, 6>, #moe.group<copy, 1>, #moe.group<zero, 1>]
// CHECK: moe.dense_ffn swiglu %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} gate(%{{[[:alnum:]_]+}})
// CHECK: moe.dense_ffn relu
// CHECK: moe.merge_experts
func.func @expert_ops(%xs: tensor<32x64xbf16>, %w: tensor<8x256x64xbf16>, %off: tensor<9xi32>,
                      %x: tensor<16x64xf32>, %i: tensor<16x2xi32>, %g: tensor<16x2xf32>,
                      %cv: tensor<1x64xf32>, %cm: tensor<1x2x64xf32>, %su: tensor<256x64xf32>,
                      %sd: tensor<64x128xf32>, %sg: tensor<1x64xf32>, %ru: tensor<128x64xf32>,
                      %lin: tensor<8x64x64xf32>, %gates: tensor<4x8xf32>) {
  %h = moe.grouped_matmul %xs, %w, %off : (tensor<32x64xbf16>, tensor<8x256x64xbf16>, tensor<9xi32>) -> tensor<32x256xbf16>
  %a = moe.activation swiglu %h : tensor<32x256xbf16> -> tensor<32x128xbf16>
  %b = moe.activation geglu %h : tensor<32x256xbf16> -> tensor<32x128xbf16>
  %bt = moe.activation geglu_tanh %h : tensor<32x256xbf16> -> tensor<32x128xbf16>
  %c = moe.activation gelu %h : tensor<32x256xbf16> -> tensor<32x256xbf16>
  %zc = moe.zero_compute %x, %i, %g constant(%cv, %cm)
      experts = [#moe.group<ffn, 6>, #moe.group<constant, 1>, #moe.group<copy, 1>]
    : (tensor<16x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>, tensor<1x64xf32>, tensor<1x2x64xf32>) -> tensor<16x64xf32>
  %zc2 = moe.zero_compute %x, %i, %g experts = [#moe.group<ffn, 6>, #moe.group<copy, 1>, #moe.group<zero, 1>]
    : (tensor<16x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x64xf32>
  %s = moe.dense_ffn swiglu %x, %su, %sd gate(%sg)
    : (tensor<16x64xf32>, tensor<256x64xf32>, tensor<64x128xf32>, tensor<1x64xf32>) -> tensor<16x64xf32>
  %r = moe.dense_ffn relu %x, %ru, %sd : (tensor<16x64xf32>, tensor<128x64xf32>, tensor<64x128xf32>) -> tensor<16x64xf32>
  %m = moe.merge_experts %lin, %gates : (tensor<8x64x64xf32>, tensor<4x8xf32>) -> tensor<4x64x64xf32>
  return
}

// CHECK-LABEL: func.func @dequantize
// CHECK: moe.dequantize %{{.*}}, %{{.*}} {bits = 8 : i64} : (tensor<4x16x8xi8>, tensor<4x16xf32>) -> tensor<4x16x8xf32>
// CHECK: moe.dequantize %{{.*}}, %{{.*}} zero_points(%{{.*}}) {bits = 4 : i64, block_size = 4 : i64, interleaved_rows} : (tensor<4x16x4xi8>, tensor<4x16x2xbf16>, tensor<4x16x2xi8>) -> tensor<4x16x8xbf16>
// CHECK: moe.grouped_matmul
func.func @dequantize(%q8: tensor<4x16x8xi8>, %s8: tensor<4x16xf32>, %q4: tensor<4x16x4xi8>,
                      %s4: tensor<4x16x2xbf16>, %z4: tensor<4x16x2xi8>, %xs: tensor<10x8xbf16>, %off: tensor<5xi32>)
    -> (tensor<4x16x8xf32>, tensor<10x16xbf16>) {
  %w8 = moe.dequantize %q8, %s8 {bits = 8} : (tensor<4x16x8xi8>, tensor<4x16xf32>) -> tensor<4x16x8xf32>
  %w4 = moe.dequantize %q4, %s4 zero_points(%z4) {bits = 4, block_size = 4, interleaved_rows}
      : (tensor<4x16x4xi8>, tensor<4x16x2xbf16>, tensor<4x16x2xi8>) -> tensor<4x16x8xbf16>
  %h = moe.grouped_matmul %xs, %w4, %off : (tensor<10x8xbf16>, tensor<4x16x8xbf16>, tensor<5xi32>) -> tensor<10x16xbf16>
  return %w8, %h : tensor<4x16x8xf32>, tensor<10x16xbf16>
}

// CHECK-LABEL: func @expert_parallel
// CHECK: moe.ep_rank ranks = 2 : index
// CHECK: moe.all_to_all_dispatch %{{.*}}, %{{.*}} bounds = [0, 4, 8] rank = 1 : (tensor<32x64xbf16>, tensor<9xi32>) -> (tensor<?x64xbf16>, tensor<5xi32>, tensor<2x4xi32>)
// CHECK: moe.grouped_matmul {{.*}} -> tensor<?x64xf32>
// CHECK: moe.all_to_all_return %{{.*}}, %{{.*}}, %{{.*}} rows = %{{.*}} bounds = [0, 4, 8] rank = 1 : (tensor<?x64xf32>, tensor<2x4xi32>, tensor<9xi32>) -> tensor<32x64xf32>
// CHECK: moe.combine {{.*}} -> tensor<16x64xbf16>
func.func @expert_parallel(%xs: tensor<32x64xbf16>, %off: tensor<9xi32>, %w: tensor<4x64x64xbf16>,
                           %sr: tensor<16x2xi32>, %sw: tensor<16x2xf32>) -> (index, tensor<16x64xbf16>) {
  %rank = moe.ep_rank ranks = 2 : index
  %recv, %loff, %counts = moe.all_to_all_dispatch %xs, %off bounds = [0, 4, 8] rank = 1
      : (tensor<32x64xbf16>, tensor<9xi32>) -> (tensor<?x64xbf16>, tensor<5xi32>, tensor<2x4xi32>)
  %o = moe.grouped_matmul %recv, %w, %loff : (tensor<?x64xbf16>, tensor<4x64x64xbf16>, tensor<5xi32>) -> tensor<?x64xf32>
  %c32 = arith.constant 32 : index
  %back = moe.all_to_all_return %o, %counts, %off rows = %c32 bounds = [0, 4, 8] rank = 1
      : (tensor<?x64xf32>, tensor<2x4xi32>, tensor<9xi32>) -> tensor<32x64xf32>
  %y = moe.combine %back, %sr, %sw : (tensor<32x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x64xbf16>
  return %rank, %y : index, tensor<16x64xbf16>
}

// CHECK-LABEL: func @all_gather_columns
// CHECK: moe.all_gather_columns %{{.*}} ranks = 4 rank = 1 : (tensor<?x16xbf16>) -> tensor<?x64xbf16>
func.func @all_gather_columns(%a: tensor<?x16xbf16>) -> tensor<?x64xbf16> {
  %g = moe.all_gather_columns %a ranks = 4 rank = 1 : (tensor<?x16xbf16>) -> tensor<?x64xbf16>
  return %g : tensor<?x64xbf16>
}

// CHECK-LABEL: func @raising_check
// CHECK: moe.raising_check %{{[[:alnum:]_]+}}, %{{[[:alnum:]_]+}} : tensor<?x64xbf16>
func.func @raising_check(%layer: tensor<?x64xbf16>, %plain: tensor<?x64xbf16>) -> tensor<?x64xbf16> {
  %y = moe.raising_check %layer, %plain : tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}
