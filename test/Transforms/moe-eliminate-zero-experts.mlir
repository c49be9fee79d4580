// RUN: moe-opt %s --moe-eliminate-zero-experts --split-input-file | FileCheck %s

// MoE++: FFN experts 0-3, constant 4-5, copy 6, zero 7. Dispatch covers the
// FFN experts only; zero_compute reads the routing weights.
// CHECK-LABEL: func @moe_plus_plus
// CHECK-SAME: (%[[X:[^:]+]]: tensor<8x16xf32>, %[[I:[^:]+]]: tensor<8x2xi32>, %[[W:[^:]+]]: tensor<8x2xf32>
// CHECK: %[[FFN:.+]] = moe.restrict_slots %[[I]] experts = 4 : tensor<8x2xi32>
// CHECK: %[[ROWS:.+]], %[[OFF:.+]], %[[SR:.+]], %[[SW:.+]] = moe.dispatch %[[FFN]], %[[W]] experts = 4 : {{.*}} -> (tensor<16xi32>, tensor<5xi32>, tensor<8x2xi32>, tensor<8x2xf32>)
// CHECK: moe.grouped_matmul %{{.+}}, %{{.+}}, %[[OFF]]
// CHECK: %[[Y:.+]] = moe.combine %{{.+}}, %[[SR]], %[[SW]]
// CHECK: %[[ZC:.+]] = moe.zero_compute %[[X]], %[[I]], %[[W]] constant
// CHECK: arith.addf %[[Y]], %[[ZC]]
func.func @moe_plus_plus(%x: tensor<8x16xf32>, %i: tensor<8x2xi32>, %w: tensor<8x2xf32>, %up: tensor<4x16x16xf32>,
                         %down: tensor<4x16x8xf32>, %cv: tensor<2x16xf32>, %cm: tensor<2x2x16xf32>) -> tensor<8x16xf32> {
  %rows, %off, %sr, %sw = moe.dispatch %i, %w experts = 8
    : (tensor<8x2xi32>, tensor<8x2xf32>) -> (tensor<16xi32>, tensor<9xi32>, tensor<8x2xi32>, tensor<8x2xf32>)
  %xs = moe.permute %x, %rows : (tensor<8x16xf32>, tensor<16xi32>) -> tensor<16x16xf32>
  %h = moe.grouped_matmul %xs, %up, %off : (tensor<16x16xf32>, tensor<4x16x16xf32>, tensor<9xi32>) -> tensor<16x16xf32>
  %a = moe.activation swiglu %h : tensor<16x16xf32> -> tensor<16x8xf32>
  %o = moe.grouped_matmul %a, %down, %off : (tensor<16x8xf32>, tensor<4x16x8xf32>, tensor<9xi32>) -> tensor<16x16xf32>
  %y = moe.combine %o, %sr, %sw : (tensor<16x16xf32>, tensor<8x2xi32>, tensor<8x2xf32>) -> tensor<8x16xf32>
  %zc = moe.zero_compute %x, %i, %sw constant(%cv, %cm)
      experts = [#moe.group<ffn, 4>, #moe.group<constant, 2>, #moe.group<copy, 1>, #moe.group<zero, 1>]
    : (tensor<8x16xf32>, tensor<8x2xi32>, tensor<8x2xf32>, tensor<2x16xf32>, tensor<2x2x16xf32>) -> tensor<8x16xf32>
  %sum = arith.addf %y, %zc : tensor<8x16xf32>
  return %sum : tensor<8x16xf32>
}

// -----

// AdaMoE: only null experts besides the FFNs; their contribution (0) and its
// add disappear.
// CHECK-LABEL: func @adamoe_null_only
// CHECK: moe.restrict_slots %{{.+}} experts = 6
// CHECK: %[[Y:.+]] = moe.combine
// CHECK-NOT: moe.zero_compute
// CHECK-NOT: arith.addf
// CHECK: return %[[Y]]
func.func @adamoe_null_only(%x: tensor<8x16xf32>, %i: tensor<8x4xi32>, %w: tensor<8x4xf32>, %up: tensor<6x16x16xf32>,
                            %down: tensor<6x16x8xf32>) -> tensor<8x16xf32> {
  %rows, %off, %sr, %sw = moe.dispatch %i, %w experts = 8
    : (tensor<8x4xi32>, tensor<8x4xf32>) -> (tensor<32xi32>, tensor<9xi32>, tensor<8x4xi32>, tensor<8x4xf32>)
  %xs = moe.permute %x, %rows : (tensor<8x16xf32>, tensor<32xi32>) -> tensor<32x16xf32>
  %h = moe.grouped_matmul %xs, %up, %off : (tensor<32x16xf32>, tensor<6x16x16xf32>, tensor<9xi32>) -> tensor<32x16xf32>
  %a = moe.activation swiglu %h : tensor<32x16xf32> -> tensor<32x8xf32>
  %o = moe.grouped_matmul %a, %down, %off : (tensor<32x8xf32>, tensor<6x16x8xf32>, tensor<9xi32>) -> tensor<32x16xf32>
  %y = moe.combine %o, %sr, %sw : (tensor<32x16xf32>, tensor<8x4xi32>, tensor<8x4xf32>) -> tensor<8x16xf32>
  %zc = moe.zero_compute %x, %i, %sw experts = [#moe.group<ffn, 6>, #moe.group<null, 2>]
    : (tensor<8x16xf32>, tensor<8x4xi32>, tensor<8x4xf32>) -> tensor<8x16xf32>
  %sum = arith.addf %y, %zc : tensor<8x16xf32>
  return %sum : tensor<8x16xf32>
}

// -----

// Negative: with a capacity every expert counts in C and in who is dropped.
// CHECK-LABEL: func @capacity_left_alone
// CHECK-NOT: moe.restrict_slots
// CHECK: moe.dispatch %{{.+}} experts = 8 {capacity
func.func @capacity_left_alone(%x: tensor<8x16xf32>, %i: tensor<8x2xi32>, %w: tensor<8x2xf32>) -> tensor<8x16xf32> {
  %rows, %off, %sr, %sw = moe.dispatch %i, %w experts = 8 {capacity = #moe.capacity<tokens = 2, pad = true>}
    : (tensor<8x2xi32>, tensor<8x2xf32>) -> (tensor<16xi32>, tensor<9xi32>, tensor<8x2xi32>, tensor<8x2xf32>)
  %zc = moe.zero_compute %x, %i, %sw experts = [#moe.group<ffn, 6>, #moe.group<copy, 2>]
    : (tensor<8x16xf32>, tensor<8x2xi32>, tensor<8x2xf32>) -> tensor<8x16xf32>
  return %zc : tensor<8x16xf32>
}

// -----

// Negative: no zero-computation experts after the FFN group.
// CHECK-LABEL: func @ffn_only
// CHECK-NOT: moe.restrict_slots
// CHECK: moe.dispatch %{{.+}} experts = 4
func.func @ffn_only(%x: tensor<8x16xf32>, %i: tensor<8x2xi32>, %w: tensor<8x2xf32>) -> tensor<8x16xf32> {
  %rows, %off, %sr, %sw = moe.dispatch %i, %w experts = 4
    : (tensor<8x2xi32>, tensor<8x2xf32>) -> (tensor<16xi32>, tensor<5xi32>, tensor<8x2xi32>, tensor<8x2xf32>)
  %zc = moe.zero_compute %x, %i, %sw experts = [#moe.group<ffn, 4>]
    : (tensor<8x16xf32>, tensor<8x2xi32>, tensor<8x2xf32>) -> tensor<8x16xf32>
  return %zc : tensor<8x16xf32>
}

// -----

// Negative: the offsets feed something other than the FFN GEMMs (here they are
// returned), so their shape cannot change.
// CHECK-LABEL: func @offsets_escape
// CHECK-NOT: moe.restrict_slots
func.func @offsets_escape(%x: tensor<8x16xf32>, %i: tensor<8x2xi32>, %w: tensor<8x2xf32>) -> (tensor<8x16xf32>, tensor<9xi32>) {
  %rows, %off, %sr, %sw = moe.dispatch %i, %w experts = 8
    : (tensor<8x2xi32>, tensor<8x2xf32>) -> (tensor<16xi32>, tensor<9xi32>, tensor<8x2xi32>, tensor<8x2xf32>)
  %zc = moe.zero_compute %x, %i, %sw experts = [#moe.group<ffn, 6>, #moe.group<zero, 2>]
    : (tensor<8x16xf32>, tensor<8x2xi32>, tensor<8x2xf32>) -> tensor<8x16xf32>
  return %zc, %off : tensor<8x16xf32>, tensor<9xi32>
}
