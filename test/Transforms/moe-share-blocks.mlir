// RUN: moe-opt %s --moe-share-layers --moe-share-blocks --split-input-file | FileCheck %s

// Layers joined by residual adds: each period (a layer call and the add
// after it) becomes a call of one block function, which calls the layer.
// CHECK-LABEL: func.func @residual
// CHECK-SAME: (%[[X:[^:]+]]: tensor<8x32xf32>, %[[R0:[^:]+]]: tensor<4x32xf32>, %[[U0:[^:]+]]: tensor<4x128x32xf32>, %[[D0:[^:]+]]: tensor<4x32x64xf32>, %[[R1:[^:]+]]: tensor<4x32xf32>, %[[U1:[^:]+]]: tensor<4x128x32xf32>, %[[D1:[^:]+]]: tensor<4x32x64xf32>, %[[R2:[^:]+]]: tensor<4x32xf32>, %[[U2:[^:]+]]: tensor<4x128x32xf32>, %[[D2:[^:]+]]: tensor<4x32x64xf32>)
// CHECK-NEXT: %[[H0:.+]] = call @residual_block(%[[X]], %[[R0]], %[[U0]], %[[D0]])
// CHECK-NEXT: %[[H1:.+]] = call @residual_block(%[[H0]], %[[R1]], %[[U1]], %[[D1]])
// CHECK-NEXT: %[[H2:.+]] = call @residual_block(%[[H1]], %[[R2]], %[[U2]], %[[D2]])
// CHECK-NEXT: return %[[H2]]
// CHECK: func.func private @residual_block(%[[A:[^:]+]]: tensor<8x32xf32>, %[[B:[^:]+]]: tensor<4x32xf32>, %[[C:[^:]+]]: tensor<4x128x32xf32>, %[[D:[^:]+]]: tensor<4x32x64xf32>) -> tensor<8x32xf32> attributes {moe.shared_layer, passthrough = ["noinline"]}
// CHECK-NEXT: %[[Y:.+]] = call @residual_layer(%[[A]], %[[B]], %[[C]], %[[D]])
// CHECK-NEXT: %[[H:.+]] = arith.addf %[[A]], %[[Y]]
// CHECK-NEXT: return %[[H]]
// CHECK: func.func private @residual_layer(
// CHECK-NOT: func.func
func.func @residual(%x: tensor<8x32xf32>, %wr0: tensor<4x32xf32>, %u0: tensor<4x128x32xf32>, %d0: tensor<4x32x64xf32>, %wr1: tensor<4x32xf32>, %u1: tensor<4x128x32xf32>, %d1: tensor<4x32x64xf32>, %wr2: tensor<4x32xf32>, %u2: tensor<4x128x32xf32>, %d2: tensor<4x32x64xf32>) -> tensor<8x32xf32> {
  %y0, %l_y0 = moe.layer %x, %wr0 ffn(%u0, %d0) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %h0 = arith.addf %x, %y0 : tensor<8x32xf32>
  %y1, %l_y1 = moe.layer %h0, %wr1 ffn(%u1, %d1) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %h1 = arith.addf %h0, %y1 : tensor<8x32xf32>
  %y2, %l_y2 = moe.layer %h1, %wr2 ffn(%u2, %d2) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %h2 = arith.addf %h1, %y2 : tensor<8x32xf32>
  return %h2 : tensor<8x32xf32>
}

// -----

// A pre-norm stack with a prologue (tanh) and an epilogue (exp): each run
// is the norm before a layer call, the call and the residual add after it,
// the first layer's too. The norm scale, computed once among the first
// layer's ops from the arguments alone, is stepped over: it stays in the
// caller and every block reads it.
// CHECK-LABEL: func.func @prenorm
// CHECK-SAME: (%[[X:[^:]+]]: tensor<8x32xf32>, %[[G:[^:]+]]: tensor<8x32xf32>
// CHECK-NEXT: %[[E:.+]] = math.tanh %[[X]]
// CHECK-NEXT: %[[S:.+]] = arith.mulf %[[G]], %[[G]]
// CHECK-NEXT: %[[H0:.+]] = call @prenorm_block(%[[E]], %[[S]],
// CHECK-NEXT: %[[H1:.+]] = call @prenorm_block(%[[H0]], %[[S]],
// CHECK-NEXT: %[[H2:.+]] = call @prenorm_block(%[[H1]], %[[S]],
// CHECK-NEXT: math.exp %[[H2]]
// CHECK: func.func private @prenorm_block(%[[A:[^:]+]]: tensor<8x32xf32>, %[[SC:[^:]+]]: tensor<8x32xf32>
// CHECK-NEXT: %[[SQ:.+]] = arith.mulf %[[A]], %[[A]]
// CHECK-NEXT: %[[N:.+]] = arith.mulf %[[SQ]], %[[SC]]
// CHECK-NEXT: %[[Y:.+]] = call @prenorm_layer(%[[N]],
// CHECK-NEXT: %[[H:.+]] = arith.addf %[[A]], %[[Y]]
// CHECK-NEXT: return %[[H]]
func.func @prenorm(%x: tensor<8x32xf32>, %g: tensor<8x32xf32>, %wr0: tensor<4x32xf32>, %u0: tensor<4x128x32xf32>, %d0: tensor<4x32x64xf32>, %wr1: tensor<4x32xf32>, %u1: tensor<4x128x32xf32>, %d1: tensor<4x32x64xf32>, %wr2: tensor<4x32xf32>, %u2: tensor<4x128x32xf32>, %d2: tensor<4x32x64xf32>) -> tensor<8x32xf32> {
  %e = math.tanh %x : tensor<8x32xf32>
  %s = arith.mulf %g, %g : tensor<8x32xf32>
  %sq0 = arith.mulf %e, %e : tensor<8x32xf32>
  %n0 = arith.mulf %sq0, %s : tensor<8x32xf32>
  %y0, %l_y0 = moe.layer %n0, %wr0 ffn(%u0, %d0) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %h0 = arith.addf %e, %y0 : tensor<8x32xf32>
  %sq1 = arith.mulf %h0, %h0 : tensor<8x32xf32>
  %n1 = arith.mulf %sq1, %s : tensor<8x32xf32>
  %y1, %l_y1 = moe.layer %n1, %wr1 ffn(%u1, %d1) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %h1 = arith.addf %h0, %y1 : tensor<8x32xf32>
  %sq2 = arith.mulf %h1, %h1 : tensor<8x32xf32>
  %n2 = arith.mulf %sq2, %s : tensor<8x32xf32>
  %y2, %l_y2 = moe.layer %n2, %wr2 ffn(%u2, %d2) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %h2 = arith.addf %h1, %y2 : tensor<8x32xf32>
  %out = math.exp %h2 : tensor<8x32xf32>
  return %out : tensor<8x32xf32>
}

// -----

// Runs that match op for op but scale by different constants are different
// computations: two block functions, named in order of first call.
// CHECK-LABEL: func.func @two_kinds
// CHECK: call @two_kinds_block(
// CHECK-NEXT: call @two_kinds_block(
// CHECK-NEXT: call @two_kinds_block_1(
// CHECK-NEXT: call @two_kinds_block_1(
// CHECK-DAG: func.func private @two_kinds_block(
// CHECK-DAG: arith.constant 5.000000e-01
// CHECK-DAG: func.func private @two_kinds_block_1(
// CHECK-DAG: arith.constant 2.500000e-01
func.func @two_kinds(%x: tensor<8x32xf32>, %wr0: tensor<4x32xf32>, %u0: tensor<4x128x32xf32>, %d0: tensor<4x32x64xf32>, %wr1: tensor<4x32xf32>, %u1: tensor<4x128x32xf32>, %d1: tensor<4x32x64xf32>, %wr2: tensor<4x32xf32>, %u2: tensor<4x128x32xf32>, %d2: tensor<4x32x64xf32>, %wr3: tensor<4x32xf32>, %u3: tensor<4x128x32xf32>, %d3: tensor<4x32x64xf32>) -> tensor<8x32xf32> {
  %half = arith.constant 0.5 : f32
  %quarter = arith.constant 0.25 : f32
  %y0, %l_y0 = moe.layer %x, %wr0 ffn(%u0, %d0) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %c0 = tensor.splat %half : tensor<8x32xf32>
  %z0 = arith.mulf %y0, %c0 : tensor<8x32xf32>
  %h0 = arith.addf %x, %z0 : tensor<8x32xf32>
  %y1, %l_y1 = moe.layer %h0, %wr1 ffn(%u1, %d1) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %c1 = tensor.splat %half : tensor<8x32xf32>
  %z1 = arith.mulf %y1, %c1 : tensor<8x32xf32>
  %h1 = arith.addf %h0, %z1 : tensor<8x32xf32>
  %y2, %l_y2 = moe.layer %h1, %wr2 ffn(%u2, %d2) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %c2 = tensor.splat %quarter : tensor<8x32xf32>
  %z2 = arith.mulf %y2, %c2 : tensor<8x32xf32>
  %h2 = arith.addf %h1, %z2 : tensor<8x32xf32>
  %y3, %l_y3 = moe.layer %h2, %wr3 ffn(%u3, %d3) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %c3 = tensor.splat %quarter : tensor<8x32xf32>
  %z3 = arith.mulf %y3, %c3 : tensor<8x32xf32>
  %h3 = arith.addf %h2, %z3 : tensor<8x32xf32>
  return %h3 : tensor<8x32xf32>
}

// -----

// An op with memory effects (a call of an external function) between the
// layers ends every run at the layer call: nothing besides the layers is
// shared.
// CHECK-LABEL: func.func @effects
// CHECK-NOT: _block
// CHECK: call @effects_layer(
// CHECK-NEXT: call @observe(
// CHECK-NEXT: call @effects_layer(
// CHECK-NOT: func.func private @effects_block
func.func private @observe(tensor<8x32xf32>) -> tensor<8x32xf32>
func.func @effects(%x: tensor<8x32xf32>, %wr0: tensor<4x32xf32>, %u0: tensor<4x128x32xf32>, %d0: tensor<4x32x64xf32>, %wr1: tensor<4x32xf32>, %u1: tensor<4x128x32xf32>, %d1: tensor<4x32x64xf32>, %wr2: tensor<4x32xf32>, %u2: tensor<4x128x32xf32>, %d2: tensor<4x32x64xf32>) -> tensor<8x32xf32> {
  %y0, %l_y0 = moe.layer %x, %wr0 ffn(%u0, %d0) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %h0 = func.call @observe(%y0) : (tensor<8x32xf32>) -> tensor<8x32xf32>
  %y1, %l_y1 = moe.layer %h0, %wr1 ffn(%u1, %d1) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %h1 = func.call @observe(%y1) : (tensor<8x32xf32>) -> tensor<8x32xf32>
  %y2, %l_y2 = moe.layer %h1, %wr2 ffn(%u2, %d2) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %h2 = func.call @observe(%y2) : (tensor<8x32xf32>) -> tensor<8x32xf32>
  return %h2 : tensor<8x32xf32>
}

// -----

// One layer: nothing to share.
// CHECK-LABEL: func.func @single
// CHECK-NOT: call
// CHECK: moe.layer
// CHECK-NOT: func.func private
func.func @single(%x: tensor<8x32xf32>, %wr0: tensor<4x32xf32>, %u0: tensor<4x128x32xf32>, %d0: tensor<4x32x64xf32>) -> tensor<8x32xf32> {
  %y0, %l_y0 = moe.layer %x, %wr0 ffn(%u0, %d0) {activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], routing = #moe.routing<scoring = softmax, k = 2, normalize = all>} : (tensor<8x32xf32>, tensor<4x32xf32>, tensor<4x128x32xf32>, tensor<4x32x64xf32>) -> (tensor<8x32xf32>, tensor<8x4xf32>)
  %h0 = arith.addf %x, %y0 : tensor<8x32xf32>
  return %h0 : tensor<8x32xf32>
}
