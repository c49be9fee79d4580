// RUN: moe-opt %s --moe-fuse-experts --split-input-file | FileCheck %s

// The Mixtral expert computation: the GLU joins the gate/up GEMM, the combine
// joins the down GEMM.
// CHECK-LABEL: func @expert_ffn
// CHECK-SAME: (%[[XS:[^:]+]]: tensor<32x64xbf16>, %[[UP:[^:]+]]: tensor<8x256x64xbf16>, %[[DOWN:[^:]+]]: tensor<8x64x128xbf16>, %[[OFF:[^:]+]]: tensor<9xi32>, %[[SR:[^:]+]]: tensor<16x2xi32>, %[[SW:[^:]+]]: tensor<16x2xf32>)
// CHECK-NEXT: %[[A:.+]] = moe.grouped_matmul_act swiglu %[[XS]], %[[UP]], %[[OFF]]
// CHECK-NEXT: %[[Y:.+]] = moe.grouped_matmul_combine %[[A]], %[[DOWN]], %[[OFF]], %[[SR]], %[[SW]]
// CHECK-NEXT: return %[[Y]]
func.func @expert_ffn(%xs: tensor<32x64xbf16>, %up: tensor<8x256x64xbf16>, %down: tensor<8x64x128xbf16>,
                      %off: tensor<9xi32>, %sr: tensor<16x2xi32>, %sw: tensor<16x2xf32>) -> tensor<16x64xbf16> {
  %h = moe.grouped_matmul %xs, %up, %off : (tensor<32x64xbf16>, tensor<8x256x64xbf16>, tensor<9xi32>) -> tensor<32x256xbf16>
  %a = moe.activation swiglu %h : tensor<32x256xbf16> -> tensor<32x128xbf16>
  %o = moe.grouped_matmul %a, %down, %off : (tensor<32x128xbf16>, tensor<8x64x128xbf16>, tensor<9xi32>) -> tensor<32x64xbf16>
  %y = moe.combine %o, %sr, %sw : (tensor<32x64xbf16>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x64xbf16>
  return %y : tensor<16x64xbf16>
}

// -----

// Negative: a GEMM result with a second user stays unfused (its value is needed).
// CHECK-LABEL: func @shared_result
// CHECK: moe.grouped_matmul %
// CHECK: moe.activation relu
// CHECK-NOT: moe.grouped_matmul_act
func.func @shared_result(%xs: tensor<32x64xf32>, %up: tensor<8x128x64xf32>, %off: tensor<9xi32>) -> (tensor<32x128xf32>, tensor<32x128xf32>) {
  %h = moe.grouped_matmul %xs, %up, %off : (tensor<32x64xf32>, tensor<8x128x64xf32>, tensor<9xi32>) -> tensor<32x128xf32>
  %a = moe.activation relu %h : tensor<32x128xf32> -> tensor<32x128xf32>
  return %h, %a : tensor<32x128xf32>, tensor<32x128xf32>
}

// -----

// Negative: an activation or combine not fed by a grouped GEMM is left alone.
// CHECK-LABEL: func @not_after_gemm
// CHECK: moe.activation gelu
// CHECK: moe.combine
func.func @not_after_gemm(%h: tensor<32x64xf32>, %sr: tensor<16x2xi32>, %sw: tensor<16x2xf32>) -> tensor<16x64xf32> {
  %a = moe.activation gelu %h : tensor<32x64xf32> -> tensor<32x64xf32>
  %y = moe.combine %a, %sr, %sw : (tensor<32x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}
