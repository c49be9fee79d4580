// RUN: moe-opt %s --moe-share-layers --split-input-file | FileCheck %s

// Three equal layers with different weights become three calls of one
// shared function; the layer that selects k = 1 stays inline.
// CHECK-LABEL: func.func @stack
// CHECK-SAME: (%[[X:[^:]+]]: tensor<8x32xf32>, %[[R0:[^:]+]]: tensor<4x32xf32>, %[[U0:[^:]+]]: tensor<4x128x32xf32>, %[[D0:[^:]+]]: tensor<4x32x64xf32>, %[[R1:[^:]+]]: tensor<4x32xf32>, %[[U1:[^:]+]]: tensor<4x128x32xf32>, %[[D1:[^:]+]]: tensor<4x32x64xf32>, %[[R2:[^:]+]]: tensor<4x32xf32>, %[[U2:[^:]+]]: tensor<4x128x32xf32>, %[[D2:[^:]+]]: tensor<4x32x64xf32>, %[[R3:[^:]+]]: tensor<4x32xf32>, %[[U3:[^:]+]]: tensor<4x128x32xf32>, %[[D3:[^:]+]]: tensor<4x32x64xf32>)
// CHECK: %[[Y0:.+]] = call @stack_layer(%[[X]], %[[R0]], %[[U0]], %[[D0]])
// CHECK: %[[H0:.+]] = arith.addf %[[X]], %[[Y0]]
// CHECK: %[[Y1:.+]] = call @stack_layer(%[[H0]], %[[R1]], %[[U1]], %[[D1]])
// CHECK: %[[H1:.+]] = arith.addf %[[H0]], %[[Y1]]
// CHECK: %[[Y2:.+]], %{{.+}} = moe.layer %[[H1]], %[[R2]] ffn(%[[U2]], %[[D2]]) {{.*}}scoring = softmax>
// CHECK: %[[H2:.+]] = arith.addf %[[H1]], %[[Y2]]
// CHECK: %[[Y3:.+]] = call @stack_layer(%[[H2]], %[[R3]], %[[U3]], %[[D3]])
// CHECK: func.func private @stack_layer(%[[A:[^:]+]]: tensor<8x32xf32>, %[[B:[^:]+]]: tensor<4x32xf32>, %[[C:[^:]+]]: tensor<4x128x32xf32>, %[[D:[^:]+]]: tensor<4x32x64xf32>) -> tensor<8x32xf32> attributes {moe.shared_layer, passthrough = ["noinline"]}
// CHECK-NEXT: %[[Y:.+]], %{{.+}} = moe.layer %[[A]], %[[B]] ffn(%[[C]], %[[D]]) {{.*}}k = 2
// CHECK-NEXT: return %[[Y]]
// CHECK-NOT: func.func
func.func @stack(%x: tensor<8x32xf32>, %wr0: tensor<4x32xf32>, %u0: tensor<4x128x32xf32>, %d0: tensor<4x32x64xf32>,
                 %wr1: tensor<4x32xf32>, %u1: tensor<4x128x32xf32>, %d1: tensor<4x32x64xf32>,
                 %wr2: tensor<4x32xf32>, %u2: tensor<4x128x32xf32>, %d2: tensor<4x32x64xf32>,
                 %wr3: tensor<4x32xf32>, %u3: tensor<4x128x32xf32>, %d3: tensor<4x32x64xf32>) -> tensor<8x32xf32> {
  %y0, %l0 = moe.layer %x, %wr0 ffn(%u0, %d0) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %h0 = arith.addf %x, %y0 : tensor<8x32xf32>
  %y1, %l1 = moe.layer %h0, %wr1 ffn(%u1, %d1) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %h1 = arith.addf %h0, %y1 : tensor<8x32xf32>
  %y2, %l2 = moe.layer %h1, %wr2 ffn(%u2, %d2) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 1>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %h2 = arith.addf %h1, %y2 : tensor<8x32xf32>
  %y3, %l3 = moe.layer %h2, %wr3 ffn(%u3, %d3) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %h3 = arith.addf %h2, %y3 : tensor<8x32xf32>
  return %h3 : tensor<8x32xf32>
}

// -----

// Layers that differ in one attribute (the activation) share nothing, and a
// layer without an equal is not outlined.
// CHECK-LABEL: func.func @different_activation
// CHECK-NOT: call
// CHECK: moe.layer {{.*}}swiglu
// CHECK: moe.layer {{.*}}geglu
// CHECK-NOT: func.func private
func.func @different_activation(%x: tensor<8x32xf32>, %wr: tensor<4x32xf32>, %u: tensor<4x128x32xf32>, %d: tensor<4x32x64xf32>) -> tensor<8x32xf32> {
  %y0, %l0 = moe.layer %x, %wr ffn(%u, %d) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %y1, %l1 = moe.layer %y0, %wr ffn(%u, %d) {activation = #moe.activation<geglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  return %y1 : tensor<8x32xf32>
}

// -----

// Small constants (splats) are part of the computation: layers whose
// selection biases are different splats are not equal. Large constants are
// arguments: layers that differ only in them are.
// CHECK-LABEL: func.func @constants
// CHECK-DAG: %[[BIG0:.+]] = arith.constant dense<[0.{{.*}}]> : tensor<32xf32>
// CHECK-DAG: %[[BIG1:.+]] = arith.constant dense<[1.{{.*}}]> : tensor<32xf32>
// CHECK: moe.layer {{.*}}selection_bias(%{{.+}})
// CHECK: moe.layer {{.*}}selection_bias(%{{.+}})
// CHECK: call @constants_layer(%{{.+}}, %{{.+}}, %[[BIG0]], %{{.+}}, %{{.+}})
// CHECK: call @constants_layer(%{{.+}}, %{{.+}}, %[[BIG1]], %{{.+}}, %{{.+}})
// CHECK: func.func private @constants_layer(
// CHECK-SAME: %{{.+}}: tensor<32xf32>,
// CHECK-NOT: arith.constant
// CHECK: moe.layer
func.func @constants(%x: tensor<8x32xf32>, %wr: tensor<32x32xf32>, %u: tensor<32x128x32xf32>, %d: tensor<32x32x64xf32>) -> tensor<8x32xf32> {
  %zero = arith.constant dense<0.0> : tensor<32xf32>
  %half = arith.constant dense<0.5> : tensor<32xf32>
  %big0 = arith.constant dense<[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 27.0, 28.0, 29.0, 30.0, 31.0]> : tensor<32xf32>
  %big1 = arith.constant dense<[1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 27.0, 28.0, 29.0, 30.0, 31.0]> : tensor<32xf32>
  %y0, %l0 = moe.layer %x, %wr selection_bias(%zero) ffn(%u, %d) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 32>], routing = #moe.routing<scoring = sigmoid, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<32x32xf32>, tensor<32xf32>, tensor<32x128x32xf32>, tensor<32x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x32xf32>)
  %y1, %l1 = moe.layer %y0, %wr selection_bias(%half) ffn(%u, %d) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 32>], routing = #moe.routing<scoring = sigmoid, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<32x32xf32>, tensor<32xf32>, tensor<32x128x32xf32>, tensor<32x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x32xf32>)
  %y2, %l2 = moe.layer %y1, %wr selection_bias(%big0) ffn(%u, %d) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 32>], routing = #moe.routing<scoring = sigmoid, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<32x32xf32>, tensor<32xf32>, tensor<32x128x32xf32>, tensor<32x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x32xf32>)
  %y3, %l3 = moe.layer %y2, %wr selection_bias(%big1) ffn(%u, %d) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 32>], routing = #moe.routing<scoring = sigmoid, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<32x32xf32>, tensor<32xf32>, tensor<32x128x32xf32>, tensor<32x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x32xf32>)
  return %y3 : tensor<8x32xf32>
}

// -----

// Decomposed layers: an op on a path between two moe ops of a layer (the
// squared logits) belongs to the layer; an input computed between the
// layer's ops (the negated weights) moves above the call.
// CHECK-LABEL: func.func @decomposed
// CHECK-SAME: (%[[X:[^:]+]]: tensor<8x32xf32>, %[[W0:[^:]+]]: tensor<4x32xf32>, %[[W1:[^:]+]]: tensor<4x32xf32>, %[[A:[^:]+]]: tensor<8x2xf32>, %[[B:[^:]+]]: tensor<8x2xf32>)
// CHECK: %[[N0:.+]] = arith.negf %[[A]]
// CHECK: %[[R0:.+]] = call @decomposed_layer(%[[X]], %[[W0]], %[[N0]])
// CHECK: %[[N1:.+]] = arith.negf %[[B]]
// CHECK: %[[R1:.+]] = call @decomposed_layer(%[[X]], %[[W1]], %[[N1]])
// CHECK: return %[[R0]], %[[R1]]
// CHECK: func.func private @decomposed_layer
// CHECK: moe.router
// CHECK: moe.score
// CHECK: arith.mulf
// CHECK: moe.topk
// CHECK: moe.renormalize
func.func @decomposed(%x: tensor<8x32xf32>, %w0: tensor<4x32xf32>, %w1: tensor<4x32xf32>, %a: tensor<8x2xf32>, %b: tensor<8x2xf32>) -> (tensor<8x2xf32>, tensor<8x2xf32>) {
  %l0 = moe.router %x, %w0 : (tensor<8x32xf32>, tensor<4x32xf32>) -> tensor<8x4xf32>
  %s0 = moe.score softmax %l0 : tensor<8x4xf32> -> tensor<8x4xf32>
  %m0 = arith.mulf %s0, %s0 : tensor<8x4xf32>
  %t0, %i0 = moe.topk %m0 k = 2 : (tensor<8x4xf32>) -> (tensor<8x2xf32>, tensor<8x2xi32>)
  %n0 = arith.negf %a : tensor<8x2xf32>
  %r0 = moe.renormalize sum %n0, %i0 : (tensor<8x2xf32>, tensor<8x2xi32>) -> tensor<8x2xf32>
  %l1 = moe.router %x, %w1 : (tensor<8x32xf32>, tensor<4x32xf32>) -> tensor<8x4xf32>
  %s1 = moe.score softmax %l1 : tensor<8x4xf32> -> tensor<8x4xf32>
  %m1 = arith.mulf %s1, %s1 : tensor<8x4xf32>
  %t1, %i1 = moe.topk %m1 k = 2 : (tensor<8x4xf32>) -> (tensor<8x2xf32>, tensor<8x2xi32>)
  %n1 = arith.negf %b : tensor<8x2xf32>
  %r1 = moe.renormalize sum %n1, %i1 : (tensor<8x2xf32>, tensor<8x2xi32>) -> tensor<8x2xf32>
  return %r0, %r1 : tensor<8x2xf32>, tensor<8x2xf32>
}
