// RUN: moe-opt %s --moe-optimize | FileCheck %s
// RUN: moe-opt %s "--moe-optimize=eliminate-zero-experts=false" | FileCheck %s --check-prefix=NOELIM
// RUN: moe-opt %s "--moe-optimize=fuse-experts=false" | FileCheck %s --check-prefix=NOFUSE

// CHECK-LABEL: func @moe_plus_plus
// CHECK-NOT: moe.layer
// CHECK: moe.fused_routing
// CHECK: moe.yield
// CHECK: moe.restrict_slots %{{.+}} experts = 4
// CHECK: moe.dispatch %{{.+}} experts = 4
// CHECK: moe.grouped_matmul_act swiglu
// CHECK: moe.grouped_matmul_combine
// CHECK: moe.zero_compute
// NOELIM-LABEL: func @moe_plus_plus
// NOELIM-NOT: moe.restrict_slots
// NOELIM: moe.dispatch %{{.+}} experts = 8
// NOFUSE-LABEL: func @moe_plus_plus
// NOFUSE: moe.grouped_matmul %
// NOFUSE: moe.activation swiglu
// NOFUSE-NOT: moe.grouped_matmul_act
func.func @moe_plus_plus(%x: tensor<8x16xf32>, %wr: tensor<8x16xf32>, %up: tensor<4x16x16xf32>, %down: tensor<4x16x8xf32>,
                         %cv: tensor<2x16xf32>, %cm: tensor<2x2x16xf32>) -> tensor<8x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) constant(%cv, %cm) {
      experts = [#moe.group<ffn, 4>, #moe.group<constant, 2>, #moe.group<copy, 1>, #moe.group<zero, 1>],
      activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, normalize = computing, input_scale = 2.0>}
    : (tensor<8x16xf32>, tensor<8x16xf32>, tensor<4x16x16xf32>, tensor<4x16x8xf32>, tensor<2x16xf32>, tensor<2x2x16xf32>)
    -> (tensor<8x16xf32>, tensor<8x8xf32>)
  return %y : tensor<8x16xf32>
}

// -----

// MEO is applied automatically where it is exact (linear experts under grouped
// routing) and the cost model says it saves work.
// RUN: moe-opt %s --split-input-file --moe-optimize | FileCheck %s --check-prefix=MEO
// MEO-LABEL: func @meo_linear
// MEO: moe.compose_experts
// MEO: moe.merge_experts
// MEO-NOT: moe.dispatch
func.func @meo_linear(%x: tensor<512x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x64x16xf32>,
                      %down: tensor<4x16x64xf32>) -> tensor<512x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<linear>,
      routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score, group_size = 128>}
    : (tensor<512x16xf32>, tensor<4x16xf32>, tensor<4x64x16xf32>, tensor<4x16x64xf32>) -> (tensor<512x16xf32>, tensor<512x4xf32>)
  return %y : tensor<512x16xf32>
}
