// RUN: moe-opt %s --moe-fold-shared-expert --split-input-file | FileCheck %s

// DeepSeek-style: one shared expert shaped like a routed one. It becomes
// expert 8 of the routed GEMMs, with a weight-1 slot for every token.
// CHECK-LABEL: func @ungated
// CHECK-SAME: (%[[X:[^:]+]]: tensor<16x32xf32>, %[[I:[^:]+]]: tensor<16x2xi32>, %[[W:[^:]+]]: tensor<16x2xf32>, %[[UP:[^:]+]]: tensor<8x32x32xf32>, %[[DOWN:[^:]+]]: tensor<8x32x16xf32>, %[[SU:[^:]+]]: tensor<32x32xf32>, %[[SD:[^:]+]]: tensor<32x16xf32>)
// CHECK: %[[ONE:.+]] = arith.constant 1.000000e+00 : f32
// CHECK: %[[SW:.+]] = tensor.splat %[[ONE]] : tensor<16x1xf32>
// CHECK: %[[R:.+]], %[[OFF:.+]], %[[SR:.+]], %[[SLW:.+]] = moe.dispatch %[[I]], %[[W]] shared(%[[SW]]) experts = 8 : {{.*}} -> (tensor<48xi32>, tensor<10xi32>, tensor<16x3xi32>, tensor<16x3xf32>)
// CHECK: %[[XS:.+]] = moe.permute %[[X]], %[[R]]
// CHECK: %[[A:.+]] = moe.grouped_matmul_act swiglu %[[XS]], %[[UP]], %[[OFF]] shared(%[[SU]])
// CHECK: %[[Y:.+]] = moe.grouped_matmul_combine %[[A]], %[[DOWN]], %[[OFF]], %[[SR]], %[[SLW]] shared(%[[SD]])
// CHECK-NOT: moe.dense_ffn
// CHECK-NOT: arith.addf
// CHECK: return %[[Y]]
func.func @ungated(%x: tensor<16x32xf32>, %i: tensor<16x2xi32>, %w: tensor<16x2xf32>, %up: tensor<8x32x32xf32>,
                   %down: tensor<8x32x16xf32>, %su: tensor<32x32xf32>, %sd: tensor<32x16xf32>) -> tensor<16x32xf32> {
  %rows, %off, %sr, %sw = moe.dispatch %i, %w experts = 8
    : (tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32xi32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  %xs = moe.permute %x, %rows : (tensor<16x32xf32>, tensor<32xi32>) -> tensor<32x32xf32>
  %a = moe.grouped_matmul_act swiglu %xs, %up, %off : (tensor<32x32xf32>, tensor<8x32x32xf32>, tensor<9xi32>) -> tensor<32x16xf32>
  %y = moe.grouped_matmul_combine %a, %down, %off, %sr, %sw
    : (tensor<32x16xf32>, tensor<8x32x16xf32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x32xf32>
  %s = moe.dense_ffn swiglu %x, %su, %sd : (tensor<16x32xf32>, tensor<32x32xf32>, tensor<32x16xf32>) -> tensor<16x32xf32>
  %sum = arith.addf %y, %s : tensor<16x32xf32>
  return %sum : tensor<16x32xf32>
}

// -----

// Qwen2-MoE-style gate: the shared slot's weight is sigmoid(gate . x).
// CHECK-LABEL: func @gated
// CHECK: %[[L:.+]] = moe.router %{{.+}}, %{{.+}} : (tensor<?x32xf32>, tensor<1x32xf32>) -> tensor<?x1xf32>
// CHECK: %[[G:.+]] = moe.score sigmoid %[[L]] : tensor<?x1xf32> -> tensor<?x1xf32>
// CHECK: moe.dispatch %{{.+}}, %{{.+}} shared(%[[G]]) experts = 8
// CHECK-NOT: moe.dense_ffn
func.func @gated(%x: tensor<?x32xf32>, %i: tensor<?x2xi32>, %w: tensor<?x2xf32>, %up: tensor<8x32x32xf32>,
                 %down: tensor<8x32x16xf32>, %su: tensor<32x32xf32>, %sd: tensor<32x16xf32>, %g: tensor<1x32xf32>) -> tensor<?x32xf32> {
  %rows, %off, %sr, %sw = moe.dispatch %i, %w experts = 8
    : (tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<?xi32>, tensor<9xi32>, tensor<?x2xi32>, tensor<?x2xf32>)
  %xs = moe.permute %x, %rows : (tensor<?x32xf32>, tensor<?xi32>) -> tensor<?x32xf32>
  %a = moe.grouped_matmul_act swiglu %xs, %up, %off : (tensor<?x32xf32>, tensor<8x32x32xf32>, tensor<9xi32>) -> tensor<?x16xf32>
  %y = moe.grouped_matmul_combine %a, %down, %off, %sr, %sw
    : (tensor<?x16xf32>, tensor<8x32x16xf32>, tensor<9xi32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x32xf32>
  %s = moe.dense_ffn swiglu %x, %su, %sd gate(%g) : (tensor<?x32xf32>, tensor<32x32xf32>, tensor<32x16xf32>, tensor<1x32xf32>) -> tensor<?x32xf32>
  %sum = arith.addf %y, %s : tensor<?x32xf32>
  return %sum : tensor<?x32xf32>
}

// -----

// Negative: a shared expert wider than the routed ones (Qwen2-MoE's is 4x).
// CHECK-LABEL: func @wider_shared
// CHECK: moe.dense_ffn
// CHECK: arith.addf
func.func @wider_shared(%x: tensor<16x32xf32>, %i: tensor<16x2xi32>, %w: tensor<16x2xf32>, %up: tensor<8x32x32xf32>,
                        %down: tensor<8x32x16xf32>, %su: tensor<128x32xf32>, %sd: tensor<32x64xf32>) -> tensor<16x32xf32> {
  %rows, %off, %sr, %sw = moe.dispatch %i, %w experts = 8
    : (tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32xi32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  %xs = moe.permute %x, %rows : (tensor<16x32xf32>, tensor<32xi32>) -> tensor<32x32xf32>
  %a = moe.grouped_matmul_act swiglu %xs, %up, %off : (tensor<32x32xf32>, tensor<8x32x32xf32>, tensor<9xi32>) -> tensor<32x16xf32>
  %y = moe.grouped_matmul_combine %a, %down, %off, %sr, %sw
    : (tensor<32x16xf32>, tensor<8x32x16xf32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x32xf32>
  %s = moe.dense_ffn swiglu %x, %su, %sd : (tensor<16x32xf32>, tensor<128x32xf32>, tensor<32x64xf32>) -> tensor<16x32xf32>
  %sum = arith.addf %y, %s : tensor<16x32xf32>
  return %sum : tensor<16x32xf32>
}

// -----

// Negative: with a capacity the shared slot would compete for rows.
// CHECK-LABEL: func @capacity
// CHECK: moe.dense_ffn
func.func @capacity(%x: tensor<16x32xf32>, %i: tensor<16x2xi32>, %w: tensor<16x2xf32>, %up: tensor<8x32x32xf32>,
                    %down: tensor<8x32x16xf32>, %su: tensor<32x32xf32>, %sd: tensor<32x16xf32>) -> tensor<16x32xf32> {
  %rows, %off, %sr, %sw = moe.dispatch %i, %w experts = 8 {capacity = #moe.capacity<tokens = 4, pad = true>}
    : (tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32xi32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  %xs = moe.permute %x, %rows : (tensor<16x32xf32>, tensor<32xi32>) -> tensor<32x32xf32>
  %a = moe.grouped_matmul_act swiglu %xs, %up, %off : (tensor<32x32xf32>, tensor<8x32x32xf32>, tensor<9xi32>) -> tensor<32x16xf32>
  %y = moe.grouped_matmul_combine %a, %down, %off, %sr, %sw
    : (tensor<32x16xf32>, tensor<8x32x16xf32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x32xf32>
  %s = moe.dense_ffn swiglu %x, %su, %sd : (tensor<16x32xf32>, tensor<32x32xf32>, tensor<32x16xf32>) -> tensor<16x32xf32>
  %sum = arith.addf %y, %s : tensor<16x32xf32>
  return %sum : tensor<16x32xf32>
}
