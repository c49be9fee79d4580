// RUN: moe-opt %s --moe-merge-experts --split-input-file | FileCheck %s
// RUN: moe-opt %s "--moe-merge-experts=approximate=true" --split-input-file | FileCheck %s --check-prefix=APPROX

// Linear experts, 512 tokens sharing routing in groups of 128: exact merge of
// down·up per expert, mixed by the group's gates, one GEMM per group.
// CHECK-LABEL: func @linear_experts
// CHECK-SAME: (%[[X:[^:]+]]: tensor<512x16xf32>, %[[WR:[^:]+]]: tensor<4x16xf32>, %[[UP:[^:]+]]: tensor<4x64x16xf32>, %[[DOWN:[^:]+]]: tensor<4x16x64xf32>)
// CHECK: %[[M:.+]] = moe.group_mean %[[X]] group_size = 128
// CHECK: %[[Z:.+]] = moe.router %[[M]], %[[WR]]
// CHECK: %[[W:.+]], %[[I:.+]] = moe.topk %[[Z]] k = 2
// CHECK: %[[G:.+]] = moe.renormalize softmax %[[W]], %[[I]]
// CHECK: %[[GATES:.+]] = moe.dense_gates %[[G]], %[[I]] experts = 4 : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x4xf32>
// CHECK: %[[OFF:.+]] = tensor.generate
// CHECK: %[[P:.+]] = moe.compose_experts %[[DOWN]], %[[UP]] : (tensor<4x16x64xf32>, tensor<4x64x16xf32>) -> tensor<4x16x16xf32>
// CHECK: %[[MERGED:.+]] = moe.merge_experts %[[P]], %[[GATES]] : (tensor<4x16x16xf32>, tensor<4x4xf32>) -> tensor<4x16x16xf32>
// CHECK: %[[Y:.+]] = moe.grouped_matmul %[[X]], %[[MERGED]], %[[OFF]] : (tensor<512x16xf32>, tensor<4x16x16xf32>, tensor<5xi32>) -> tensor<512x16xf32>
// CHECK: %[[ZT:.+]] = moe.expand_groups %[[Z]] to %[[X]] group_size = 128
// CHECK: return %[[Y]], %[[ZT]]
func.func @linear_experts(%x: tensor<512x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x64x16xf32>,
                          %down: tensor<4x16x64xf32>) -> (tensor<512x16xf32>, tensor<512x4xf32>) {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<linear>,
      routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score, group_size = 128>}
    : (tensor<512x16xf32>, tensor<4x16xf32>, tensor<4x64x16xf32>, tensor<4x16x64xf32>) -> (tensor<512x16xf32>, tensor<512x4xf32>)
  return %y, %z : tensor<512x16xf32>, tensor<512x4xf32>
}

// -----

// Non-linear experts: merged only under approximate=true (up and down mixed
// separately, then the usual activation).
// CHECK-LABEL: func @swiglu_experts
// CHECK: moe.layer
// APPROX-LABEL: func @swiglu_experts
// APPROX-NOT: moe.compose_experts
// APPROX: %[[U:.+]] = moe.merge_experts %{{.+}}, %{{.+}} : (tensor<4x128x16xf32>, tensor<4x4xf32>) -> tensor<4x128x16xf32>
// APPROX: %[[D:.+]] = moe.merge_experts %{{.+}}, %{{.+}} : (tensor<4x16x64xf32>, tensor<4x4xf32>) -> tensor<4x16x64xf32>
// APPROX: %[[H:.+]] = moe.grouped_matmul %{{.+}}, %[[U]], %{{.+}}
// APPROX: %[[A:.+]] = moe.activation swiglu %[[H]]
// APPROX: moe.grouped_matmul %[[A]], %[[D]], %{{.+}}
func.func @swiglu_experts(%x: tensor<512x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x128x16xf32>,
                          %down: tensor<4x16x64xf32>) -> tensor<512x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2, group_size = 128>}
    : (tensor<512x16xf32>, tensor<4x16xf32>, tensor<4x128x16xf32>, tensor<4x16x64xf32>) -> (tensor<512x16xf32>, tensor<512x4xf32>)
  return %y : tensor<512x16xf32>
}

// -----

// Negative: per-token routing (group_size 1): no group shares its gates.
// CHECK-LABEL: func @per_token_routing
// CHECK: moe.layer
// CHECK-NOT: moe.merge_experts
func.func @per_token_routing(%x: tensor<512x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x64x16xf32>,
                             %down: tensor<4x16x64xf32>) -> tensor<512x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<linear>,
      routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<512x16xf32>, tensor<4x16xf32>, tensor<4x64x16xf32>, tensor<4x16x64xf32>) -> (tensor<512x16xf32>, tensor<512x4xf32>)
  return %y : tensor<512x16xf32>
}

// -----

// Negative: the cost model. Groups of 2 tokens with a wide hidden size: merging
// (H x H per group and per expert) costs more than running k experts per token.
// CHECK-LABEL: func @unprofitable
// CHECK: moe.layer
// CHECK-NOT: moe.merge_experts
func.func @unprofitable(%x: tensor<8x256xf32>, %wr: tensor<8x256xf32>, %up: tensor<8x16x256xf32>,
                        %down: tensor<8x256x16xf32>) -> tensor<8x256xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 8>], activation = #moe.activation<linear>,
      routing = #moe.routing<scoring = softmax, k = 2, group_size = 2>}
    : (tensor<8x256xf32>, tensor<8x256xf32>, tensor<8x16x256xf32>, tensor<8x256x16xf32>) -> (tensor<8x256xf32>, tensor<8x8xf32>)
  return %y : tensor<8x256xf32>
}

// -----

// Negative: zero-computation experts are not merged.
// CHECK-LABEL: func @zero_computation
// CHECK: moe.layer
// CHECK-NOT: moe.merge_experts
func.func @zero_computation(%x: tensor<512x16xf32>, %wr: tensor<5x16xf32>, %up: tensor<4x64x16xf32>,
                            %down: tensor<4x16x64xf32>) -> tensor<512x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>, #moe.group<copy, 1>], activation = #moe.activation<linear>,
      routing = #moe.routing<scoring = softmax, k = 2, group_size = 128>}
    : (tensor<512x16xf32>, tensor<5x16xf32>, tensor<4x64x16xf32>, tensor<4x16x64xf32>) -> (tensor<512x16xf32>, tensor<512x5xf32>)
  return %y : tensor<512x16xf32>
}

// -----

// Negative: experts with biases are not merged (a merged expert would weight
// the biases by the gates too).
// CHECK-LABEL: func @expert_biases
// CHECK: moe.layer
// CHECK-NOT: moe.merge_experts
// APPROX-LABEL: func @expert_biases
// APPROX: moe.layer
// APPROX-NOT: moe.merge_experts
func.func @expert_biases(%x: tensor<512x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x64x16xf32>,
                         %down: tensor<4x16x64xf32>, %bu: tensor<4x64xf32>, %bd: tensor<4x16xf32>) -> tensor<512x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) ffn_bias(%bu, %bd) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<linear>,
      routing = #moe.routing<scoring = softmax, k = 2, group_size = 128>}
    : (tensor<512x16xf32>, tensor<4x16xf32>, tensor<4x64x16xf32>, tensor<4x16x64xf32>, tensor<4x64xf32>, tensor<4x16xf32>) -> (tensor<512x16xf32>, tensor<512x4xf32>)
  return %y : tensor<512x16xf32>
}
