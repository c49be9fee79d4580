// moe.layer verifier: one case per constraint (layer_c<n> in MoeOps.cpp).
// RUN: moe-opt %s -split-input-file -verify-diagnostics

// A valid layer, so that the file checks that valid input passes too.
func.func @valid(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>) {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c1_empty_set(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{expert set must not be empty}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

// Each group within bounds, but together more experts than any table is
// built for: an error before anything per expert is allocated.
func.func @layer_c1_too_many_experts(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>) {
  // expected-error @+1 {{experts must be at most 1048576, got 2097152}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 1048576>, #moe.group<zero, 1048576>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c1_no_ffn(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{expert set must hold exactly one ffn group, got 0}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<zero, 2>, #moe.group<copy, 2>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c1_two_ffn(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{expert set must hold exactly one ffn group, got 2}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 2>, #moe.group<ffn, 2>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c1_ffn_not_first(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{the ffn group must come first in the expert set}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<copy, 1>, #moe.group<ffn, 3>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_x_rank(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{x must have rank 2, got 'tensor<4x8x2xf32>'}}
  %y, %z = moe.layer %x3, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8x2xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c2_router_experts(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %wr5: tensor<5x8xf32>) {
  // expected-error @+1 {{router_weight dimension 0 (5) must equal the number of experts (4)}}
  %y, %z = moe.layer %x, %wr5 ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<5x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c2_router_hidden(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %h: tensor<16x8xf32>) {
  // expected-error @+1 {{router_weight dimension 1 (8) must equal the router hidden size (16)}}
  %y, %z = moe.layer %x, %wr hidden(%h) ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<16x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c2_router_hidden_in(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %h: tensor<8x6xf32>) {
  // expected-error @+1 {{router hidden weight dimension 1 (6) must equal the hidden size (8)}}
  %y, %z = moe.layer %x, %wr hidden(%h) ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<8x6xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c2_router_in(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %wr6: tensor<4x6xf32>) {
  // expected-error @+1 {{router_weight dimension 1 (6) must equal the hidden size (8)}}
  %y, %z = moe.layer %x, %wr6 ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x6xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c2_router_bias_size(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %b: tensor<5xf32>) {
  // expected-error @+1 {{router_bias dimension 0 (5) must equal the number of experts (4)}}
  %y, %z = moe.layer %x, %wr bias(%b) ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<5xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c2_router_bias_rank(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %b: tensor<1x4xf32>) {
  // expected-error @+1 {{router_bias must have rank 1, got 'tensor<1x4xf32>'}}
  %y, %z = moe.layer %x, %wr bias(%b) ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<1x4xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c11_up_bias_rows(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %bu: tensor<4x4xf32>, %bd: tensor<4x8xf32>) {
  // expected-error @+1 {{ffn up bias dimension 1 (4) must equal the up weight's rows (8)}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) ffn_bias(%bu, %bd) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>, tensor<4x4xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c11_down_bias_experts(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %bu: tensor<4x8xf32>, %bd: tensor<3x8xf32>) {
  // expected-error @+1 {{ffn down bias dimension 0 (3) must equal the number of ffn experts (4)}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) ffn_bias(%bu, %bd) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>, tensor<4x8xf32>, tensor<3x8xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c11_bias_type(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %bu: tensor<4x8xbf16>, %bd: tensor<4x8xf32>) {
  // expected-error @+1 {{ffn up bias element type 'bf16' must equal ffn up weight element type 'f32'}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) ffn_bias(%bu, %bd) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>, tensor<4x8xbf16>, tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c11_bias_pair(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %bu: tensor<4x8xf32>) {
  // expected-error @+1 {{ffn_bias needs both the up and the down bias}}
  %y, %z = "moe.layer"(%x, %wr, %up, %down, %bu) <{activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0>, routing = #moe.routing<scoring = softmax, k = 2>}>
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_bias_size(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %b: tensor<3xf32>) {
  // expected-error @+1 {{selection_bias dimension 0 (3) must equal the number of experts (4)}}
  %y, %z = moe.layer %x, %wr selection_bias(%b) ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<3xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_bias_threshold(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{selection_bias needs select = top_k}}
  %y, %z = moe.layer %x, %wr selection_bias(%b) ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = relu, select = threshold, k = 4>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c3_residual_pair(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %prev: tensor<4x4xf32>) {
  // expected-error @+1 {{residual needs both the previous logits and the residual weight}}
  %y, %z = "moe.layer"(%x, %wr, %prev, %up, %down) <{activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0>, routing = #moe.routing<scoring = softmax, k = 2>}>
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x4xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c3_residual_shape(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %prev: tensor<4x4xf32>, %g: tensor<4x3xf32>) {
  // expected-error @+1 {{residual weight dimension 1 (3) must equal the number of experts (4)}}
  %y, %z = moe.layer %x, %wr residual(%prev, %g) ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x4xf32>, tensor<4x3xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c3_prev_tokens(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %prev: tensor<2x4xf32>, %g: tensor<4x4xf32>) {
  // expected-error @+1 {{previous logits dimension 0 (2) must equal the number of tokens (4)}}
  %y, %z = moe.layer %x, %wr residual(%prev, %g) ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<2x4xf32>, tensor<4x4xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c4_no_ffn_weights(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{the ffn group needs ffn(up, down) weights}}
  %y, %z = moe.layer %x, %wr {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c4_glu_width(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %d8: tensor<4x8x8xf32>) {
  // expected-error @+1 {{ffn up weight dimension 1 (8) must be twice the FFN width of ffn down weight (8) for activation swiglu}}
  %y, %z = moe.layer %x, %wr ffn(%up, %d8) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x8xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c4_plain_width(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{ffn up weight dimension 1 (8) must be the FFN width of ffn down weight (4) for activation gelu}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<gelu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c4_ffn_count(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{ffn up weight dimension 0 (4) must equal the number of ffn experts (3)}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 3>, #moe.group<zero, 1>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c4_down_experts(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %d2: tensor<2x8x4xf32>) {
  // expected-error @+1 {{ffn down weight dimension 0 (2) must equal ffn up weight dimension 0 (4)}}
  %y, %z = moe.layer %x, %wr ffn(%up, %d2) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<2x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c4_down_hidden(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %d6: tensor<4x6x4xf32>) {
  // expected-error @+1 {{ffn down weight dimension 1 (6) must equal the hidden size (8)}}
  %y, %z = moe.layer %x, %wr ffn(%up, %d6) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x6x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c4_constant_missing(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %wr5: tensor<5x8xf32>) {
  // expected-error @+1 {{the 1 constant experts need constant(vectors, mix) operands}}
  %y, %z = moe.layer %x, %wr5 ffn(%up, %down) {experts = [#moe.group<ffn, 4>, #moe.group<constant, 1>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<5x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x5xf32>)
  return
}

// -----

func.func @layer_c4_constant_extra(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %v: tensor<1x8xf32>, %m: tensor<1x2x8xf32>) {
  // expected-error @+1 {{constant(vectors, mix) given but the expert set has no constant experts}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) constant(%v, %m) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>, tensor<1x8xf32>, tensor<1x2x8xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c4_constant_mix(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %wr5: tensor<5x8xf32>, %v: tensor<1x8xf32>, %m: tensor<1x3x8xf32>) {
  // expected-error @+1 {{constant mix dimension 1 (3) must equal 2 (the two mixing coefficients) (2)}}
  %y, %z = moe.layer %x, %wr5 ffn(%up, %down) constant(%v, %m) {experts = [#moe.group<ffn, 4>, #moe.group<constant, 1>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<5x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>, tensor<1x8xf32>, tensor<1x3x8xf32>) -> (tensor<4x8xf32>, tensor<4x5xf32>)
  return
}

// -----

func.func @layer_c4_constant_vectors(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %wr5: tensor<5x8xf32>, %v: tensor<2x8xf32>, %m: tensor<1x2x8xf32>) {
  // expected-error @+1 {{constant vectors dimension 0 (2) must equal the number of constant experts (1)}}
  %y, %z = moe.layer %x, %wr5 ffn(%up, %down) constant(%v, %m) {experts = [#moe.group<ffn, 4>, #moe.group<constant, 1>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<5x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>, tensor<2x8xf32>, tensor<1x2x8xf32>) -> (tensor<4x8xf32>, tensor<4x5xf32>)
  return
}

// -----

func.func @layer_c4_constant_pair(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %wr5: tensor<5x8xf32>, %v: tensor<1x8xf32>) {
  // expected-error @+1 {{constant needs both the vectors and the mixing weights}}
  %y, %z = "moe.layer"(%x, %wr5, %up, %down, %v) <{activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>, #moe.group<constant, 1>], operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0>, routing = #moe.routing<scoring = softmax, k = 2>}>
    : (tensor<4x8xf32>, tensor<5x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>, tensor<1x8xf32>) -> (tensor<4x8xf32>, tensor<4x5xf32>)
  return
}

// -----

func.func @layer_c8_shared_pair(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %su: tensor<8x8xf32>) {
  // expected-error @+1 {{shared needs both the up and the down weight}}
  %y, %z = "moe.layer"(%x, %wr, %up, %down, %su) <{activation = #moe.activation<swiglu>, experts = [#moe.group<ffn, 4>], operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0>, routing = #moe.routing<scoring = softmax, k = 2>}>
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>, tensor<8x8xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c8_gate_without_shared(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %g: tensor<1x8xf32>) {
  // expected-error @+1 {{shared_gate needs a shared expert}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) shared_gate(%g) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>, tensor<1x8xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c8_shared_width(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %su: tensor<6x8xf32>, %sd: tensor<8x4xf32>) {
  // expected-error @+1 {{shared up weight dimension 0 (6) must be twice the FFN width of shared down weight (4) for activation swiglu}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) shared(%su, %sd) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>, tensor<6x8xf32>, tensor<8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c8_shared_gate_shape(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %su: tensor<8x8xf32>, %sd: tensor<8x4xf32>, %g: tensor<2x8xf32>) {
  // expected-error @+1 {{shared_gate dimension 0 (2) must equal 1 (1)}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) shared(%su, %sd) shared_gate(%g) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>, tensor<8x8xf32>, tensor<8x4xf32>, tensor<2x8xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c5_k_too_large(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{routing k (5) must not exceed the number of experts (4)}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 5>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c6_groups_divide(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{num_groups (3) must divide the number of experts (4)}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = sigmoid, k = 2, num_groups = 3>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c6_k_kept_groups(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{routing k (3) exceeds the experts in the 1 kept groups (2)}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = sigmoid, k = 3, num_groups = 2, topk_groups = 1>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c7_expert_choice_capacity(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{expert-choice capacity (5) exceeds the number of tokens (4)}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, select = expert_choice, capacity = 5>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c9_capacity_expert_choice(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{#moe.capacity applies to token-choice selection; expert choice takes its capacity from #moe.routing}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, select = expert_choice, capacity = 2>, capacity = #moe.capacity<tokens = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c9_rectify_zero_experts(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %wr5: tensor<5x8xf32>) {
  // expected-error @+1 {{rectification needs an expert set of ffn experts only}}
  %y, %z = moe.layer %x, %wr5 ffn(%up, %down) {experts = [#moe.group<ffn, 4>, #moe.group<zero, 1>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>, capacity = #moe.capacity<tokens = 2, pad = true, rectify = fill_in>}
    : (tensor<4x8xf32>, tensor<5x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x5xf32>)
  return
}

// -----

func.func @layer_c9_placement_divides(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{experts_per_device (3) must divide the number of experts (4)}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>, capacity = #moe.capacity<tokens = 2, rectify = intra_device, experts_per_device = 3>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c9_fill_in_choice(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{fill_in rectification needs a (k+1)-th choice: k must be less than the number of experts}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 4>, capacity = #moe.capacity<tokens = 2, pad = true, rectify = fill_in>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c10_result_type(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{result y element type 'f16' must equal x element type 'f32'}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf16>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c10_result_shape(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{result y dimension 0 (2) must equal x dimension 0 (4)}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<2x8xf32>, tensor<4x4xf32>)
  return
}

// -----

func.func @layer_c10_logits(%x: tensor<4x8xf32>, %x3: tensor<4x8x2xf32>, %wr: tensor<4x8xf32>, %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>, %any: tensor<*xf32>) {
  // expected-error @+1 {{result logits dimension 1 (5) must equal the number of experts (4)}}
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x5xf32>)
  return
}

// -----

func.func @layer_c3_residual_grouped(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>, %prev: tensor<4x4xf32>, %g: tensor<4x4xf32>,
                                     %up: tensor<4x8x8xf32>, %down: tensor<4x8x4xf32>) {
  // expected-error @+1 {{a gating residual is per token; it cannot be used with group_size > 1}}
  %y, %z = moe.layer %x, %wr residual(%prev, %g) ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>, routing = #moe.routing<scoring = softmax, k = 2, group_size = 2>}
    : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x4xf32>, tensor<4x4xf32>, tensor<4x8x8xf32>, tensor<4x8x4xf32>) -> (tensor<4x8xf32>, tensor<4x4xf32>)
  return
}
