// Verifiers of the routing ops: one case per constraint.
// RUN: moe-opt %s -split-input-file -verify-diagnostics

func.func @router_c1_rank(%x: tensor<4x8x2xf32>, %w: tensor<4x8xf32>) {
  // expected-error @+1 {{x must have rank 2, got 'tensor<4x8x2xf32>'}}
  %z = moe.router %x, %w : (tensor<4x8x2xf32>, tensor<4x8xf32>) -> tensor<4x4xf32>
  return
}

// -----

func.func @router_c1_hidden_size(%x: tensor<4x8xf32>, %w: tensor<4x6xf32>) {
  // expected-error @+1 {{weight dimension 1 (6) must equal the hidden size of x (8)}}
  %z = moe.router %x, %w : (tensor<4x8xf32>, tensor<4x6xf32>) -> tensor<4x4xf32>
  return
}

// -----

func.func @router_c1_two_layer_in(%x: tensor<4x8xf32>, %w: tensor<4x16xf32>, %h: tensor<16x6xf32>) {
  // expected-error @+1 {{hidden weight dimension 1 (6) must equal the hidden size of x (8)}}
  %z = moe.router %x, %w hidden(%h) : (tensor<4x8xf32>, tensor<4x16xf32>, tensor<16x6xf32>) -> tensor<4x4xf32>
  return
}

// -----

func.func @router_c1_two_layer_out(%x: tensor<4x8xf32>, %w: tensor<4x8xf32>, %h: tensor<16x8xf32>) {
  // expected-error @+1 {{weight dimension 1 (8) must equal the router hidden size (16)}}
  %z = moe.router %x, %w hidden(%h) : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x4xf32>
  return
}

// -----

func.func @router_c1_result(%x: tensor<4x8xf32>, %w: tensor<4x8xf32>) {
  // expected-error @+1 {{result dimension 1 (5) must equal the number of experts (4)}}
  %z = moe.router %x, %w : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x5xf32>
  return
}

// -----

func.func @router_c2_bias(%x: tensor<4x8xf32>, %w: tensor<4x8xf32>, %b: tensor<5xf32>) {
  // expected-error @+1 {{bias dimension 0 (5) must equal the number of experts (4)}}
  %z = moe.router %x, %w bias(%b) : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<5xf32>) -> tensor<4x4xf32>
  return
}

// -----

func.func @router_result_f32(%x: tensor<4x8xbf16>, %w: tensor<4x8xbf16>) {
  // expected-error @+1 {{result #0 must be ranked tensor of 32-bit float values}}
  %z = moe.router %x, %w : (tensor<4x8xbf16>, tensor<4x8xbf16>) -> tensor<4x4xbf16>
  return
}

// -----

func.func @gating_residual_c1_prev(%z: tensor<4x4xf32>, %p: tensor<2x4xf32>, %g: tensor<4x4xf32>) {
  // expected-error @+1 {{prev dimension 0 (2) must equal logits dimension 0 (4)}}
  %r = moe.gating_residual %z, %p, %g : (tensor<4x4xf32>, tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
  return
}

// -----

func.func @gating_residual_c1_weight(%z: tensor<4x4xf32>, %p: tensor<4x4xf32>, %g: tensor<4x3xf32>) {
  // expected-error @+1 {{weight dimension 1 (3) must equal the number of experts (4)}}
  %r = moe.gating_residual %z, %p, %g : (tensor<4x4xf32>, tensor<4x4xf32>, tensor<4x3xf32>) -> tensor<4x4xf32>
  return
}

// -----

func.func @score_c1_shape(%z: tensor<4x4xf32>) {
  // expected-error @+1 {{result dimension 1 (5) must equal logits dimension 1 (4)}}
  %s = moe.score softmax %z : tensor<4x4xf32> -> tensor<4x5xf32>
  return
}

// -----

func.func @score_c2_gumbel_attrs(%z: tensor<4x4xf32>) {
  // expected-error @+1 {{tau, samples and seed apply only to gumbel_softmax}}
  %s = moe.score sigmoid %z {tau = 0.5 : f64} : tensor<4x4xf32> -> tensor<4x4xf32>
  return
}

// -----

func.func @score_c2_tau(%z: tensor<4x4xf32>) {
  // expected-error @+1 {{tau must be finite and positive, got -1}}
  %s = moe.score gumbel_softmax %z {tau = -1.0 : f64} : tensor<4x4xf32> -> tensor<4x4xf32>
  return
}

// -----

func.func @score_c2_samples(%z: tensor<4x4xf32>) {
  // expected-error @+1 {{samples must be at least 1, got 0}}
  %s = moe.score gumbel_softmax %z {samples = 0 : i64} : tensor<4x4xf32> -> tensor<4x4xf32>
  return
}

// -----

func.func @score_unknown_function(%z: tensor<4x4xf32>) {
  // expected-error @+1 {{unknown scoring 'tanh'}}
  %s = moe.score tanh %z : tensor<4x4xf32> -> tensor<4x4xf32>
  return
}

// -----

func.func @topk_bias_size(%s: tensor<4x4xf32>, %b: tensor<3xf32>) {
  // expected-error @+1 {{bias dimension 0 (3) must equal the number of experts (4)}}
  %w, %i = moe.topk %s bias(%b) k = 2 : (tensor<4x4xf32>, tensor<3xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
  return
}

// -----

func.func @topk_c1_k_zero(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{k must be at least 1, got 0}}
  %w, %i = moe.topk %s k = 0 : (tensor<4x4xf32>) -> (tensor<4x0xf32>, tensor<4x0xi32>)
  return
}

// -----

func.func @topk_c1_k_too_large(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{k (5) must not exceed the number of experts (4)}}
  %w, %i = moe.topk %s k = 5 : (tensor<4x4xf32>) -> (tensor<4x5xf32>, tensor<4x5xi32>)
  return
}

// -----

func.func @topk_c2_groups_order(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{needs 1 <= topk_groups <= num_groups, got topk_groups = 3, num_groups = 2}}
  %w, %i = moe.topk %s k = 2 {num_groups = 2 : i64, topk_groups = 3 : i64} : (tensor<4x4xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
  return
}

// -----

func.func @topk_c2_groups_divide(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{num_groups (3) must divide the number of experts (4)}}
  %w, %i = moe.topk %s k = 2 {num_groups = 3 : i64} : (tensor<4x4xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
  return
}

// -----

func.func @topk_c2_kept_groups(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{k (3) exceeds the experts in the 1 kept groups (2)}}
  %w, %i = moe.topk %s k = 3 {num_groups = 2 : i64} : (tensor<4x4xf32>) -> (tensor<4x3xf32>, tensor<4x3xi32>)
  return
}

// -----

func.func @topk_c2_top2_sum(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{group_score top2_sum needs at least 2 experts per group}}
  %w, %i = moe.topk %s k = 2 {num_groups = 4 : i64, topk_groups = 2 : i64} : (tensor<4x4xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
  return
}

// -----

func.func @topk_c3_result(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{result weights dimension 1 (3) must equal k (2)}}
  %w, %i = moe.topk %s k = 2 : (tensor<4x4xf32>) -> (tensor<4x3xf32>, tensor<4x2xi32>)
  return
}

// -----

func.func @topk_c3_indices_tokens(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{result indices dimension 0 (2) must equal the number of tokens (4)}}
  %w, %i = moe.topk %s k = 2 : (tensor<4x4xf32>) -> (tensor<4x2xf32>, tensor<2x2xi32>)
  return
}

// -----

func.func @topk_indices_i32(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{result #1 must be ranked tensor of 32-bit signless integer values}}
  %w, %i = moe.topk %s k = 2 : (tensor<4x4xf32>) -> (tensor<4x2xf32>, tensor<4x2xi64>)
  return
}

// -----

func.func @threshold_c1_max_k(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{max_k (5) must be between 1 and the number of experts (4)}}
  %w, %i = moe.threshold %s max_k = 5 : (tensor<4x4xf32>) -> (tensor<4x5xf32>, tensor<4x5xi32>)
  return
}

// -----

func.func @threshold_c2_finite(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{threshold must be finite}}
  %w, %i = moe.threshold %s max_k = 4 {threshold = 0x7FF8000000000000 : f64} : (tensor<4x4xf32>) -> (tensor<4x4xf32>, tensor<4x4xi32>)
  return
}

// -----

func.func @threshold_c3_result(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{result weights dimension 1 (2) must equal max_k (4)}}
  %w, %i = moe.threshold %s max_k = 4 : (tensor<4x4xf32>) -> (tensor<4x2xf32>, tensor<4x4xi32>)
  return
}

// -----

func.func @expert_choice_c1_capacity(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{capacity must be at least 1, got 0}}
  %w, %i = moe.expert_choice %s capacity = 0 : (tensor<4x4xf32>) -> (tensor<4x4xf32>, tensor<4x4xi32>)
  return
}

// -----

func.func @expert_choice_c1_capacity_tokens(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{capacity (5) exceeds the number of tokens (4)}}
  %w, %i = moe.expert_choice %s capacity = 5 : (tensor<4x4xf32>) -> (tensor<4x4xf32>, tensor<4x4xi32>)
  return
}

// -----

func.func @expert_choice_c2_token_k(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{token_k (5) must be between 1 and the number of experts (4)}}
  %w, %i = moe.expert_choice %s capacity = 2 {token_k = 5 : i64} : (tensor<4x4xf32>) -> (tensor<4x5xf32>, tensor<4x5xi32>)
  return
}

// -----

func.func @expert_choice_c3_slots(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{result weights dimension 1 (2) must equal the number of experts (4)}}
  %w, %i = moe.expert_choice %s capacity = 2 : (tensor<4x4xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
  return
}

// -----

func.func @expert_choice_c3_token_k_slots(%s: tensor<4x4xf32>) {
  // expected-error @+1 {{result indices dimension 1 (4) must equal token_k (2)}}
  %w, %i = moe.expert_choice %s capacity = 2 {token_k = 2 : i64} : (tensor<4x4xf32>) -> (tensor<4x2xf32>, tensor<4x4xi32>)
  return
}

// -----

func.func @renormalize_c1_shape(%w: tensor<4x2xf32>, %i: tensor<4x3xi32>) {
  // expected-error @+1 {{indices dimension 1 (3) must equal weights dimension 1 (2)}}
  %r = moe.renormalize sum %w, %i : (tensor<4x2xf32>, tensor<4x3xi32>) -> tensor<4x2xf32>
  return
}

// -----

func.func @renormalize_c2_skip(%w: tensor<4x2xf32>, %i: tensor<4x2xi32>) {
  // expected-error @+1 {{skip holds expert indices, got -1}}
  %r = moe.renormalize sum %w, %i {skip = array<i64: -1>} : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x2xf32>
  return
}

// -----

func.func @renormalize_c3_denominator(%w: tensor<4x2xf32>, %i: tensor<4x2xi32>) {
  // expected-error @+1 {{denominator_slots (3) must be between 0 and the number of slots (2)}}
  %r = moe.renormalize sum %w, %i {denominator_slots = 3 : i64} : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x2xf32>
  return
}

// -----

func.func @renormalize_c4_scale(%w: tensor<4x2xf32>, %i: tensor<4x2xi32>) {
  // expected-error @+1 {{scale must be finite and positive, got 0}}
  %r = moe.renormalize softmax %w, %i {scale = 0.0 : f64} : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x2xf32>
  return
}

// -----

func.func @renormalize_c5_epsilon(%w: tensor<4x2xf32>, %i: tensor<4x2xi32>) {
  // expected-error @+1 {{epsilon must be finite and non-negative, got -5.000000e-01}}
  %r = moe.renormalize sum %w, %i {epsilon = -0.5 : f64} : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x2xf32>
  return
}

// -----

func.func @renormalize_c5_epsilon_softmax(%w: tensor<4x2xf32>, %i: tensor<4x2xi32>) {
  // expected-error @+1 {{epsilon applies to the sum renormalisation only}}
  %r = moe.renormalize softmax %w, %i {epsilon = 1.0e-06 : f64} : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x2xf32>
  return
}

// -----

func.func @renormalize_unknown_mode(%w: tensor<4x2xf32>, %i: tensor<4x2xi32>) {
  // expected-error @+1 {{unknown renorm 'max'}}
  %r = moe.renormalize max %w, %i : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x2xf32>
  return
}

// -----

func.func @renormalize_c1_rank(%w: tensor<4x2xf32>, %i: tensor<4xi32>) {
  // expected-error @+1 {{indices 'tensor<4xi32>' and weights 'tensor<4x2xf32>' must have the same shape}}
  %r = moe.renormalize sum %w, %i : (tensor<4x2xf32>, tensor<4xi32>) -> tensor<4x2xf32>
  return
}

// -----

func.func @group_mean_c1_groups(%x: tensor<10x8xf32>) {
  // expected-error @+1 {{result dimension 0 (2) must equal the number of groups (3)}}
  %m = moe.group_mean %x group_size = 4 : tensor<10x8xf32> -> tensor<2x8xf32>
  return
}

// -----

func.func @group_mean_c1_size(%x: tensor<10x8xf32>) {
  // expected-error @+1 {{group_size must be at least 1, got 0}}
  %m = moe.group_mean %x group_size = 0 : tensor<10x8xf32> -> tensor<10x8xf32>
  return
}

// -----

func.func @expand_groups_c1_groups(%w: tensor<2x2xf32>, %x: tensor<10x8xf32>) {
  // expected-error @+1 {{values dimension 0 (2) must equal the number of groups (3)}}
  %e = moe.expand_groups %w to %x group_size = 4 : (tensor<2x2xf32>, tensor<10x8xf32>) -> tensor<10x2xf32>
  return
}

// -----

func.func @expand_groups_c1_tokens(%w: tensor<3x2xf32>, %x: tensor<10x8xf32>) {
  // expected-error @+1 {{result dimension 0 (12) must equal the number of tokens (10)}}
  %e = moe.expand_groups %w to %x group_size = 4 : (tensor<3x2xf32>, tensor<10x8xf32>) -> tensor<12x2xf32>
  return
}

// -----

func.func @expand_groups_c1_rank(%w: tensor<3x2xf32>, %x: tensor<10x8xf32>) {
  // expected-error @+1 {{result 'tensor<10xf32>' must have the rank of values 'tensor<3x2xf32>'}}
  %e = moe.expand_groups %w to %x group_size = 4 : (tensor<3x2xf32>, tensor<10x8xf32>) -> tensor<10xf32>
  return
}

// -----

func.func @expand_groups_c1_type(%w: tensor<3x2xf32>, %x: tensor<10x8xf32>) {
  // expected-error @+1 {{result element type 'i32' must equal values element type 'f32'}}
  %e = moe.expand_groups %w to %x group_size = 4 : (tensor<3x2xf32>, tensor<10x8xf32>) -> tensor<10x2xi32>
  return
}

// -----

func.func @fused_routing_c1_args(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>) {
  // expected-error @+1 {{body arguments must have the types of the inputs}}
  %w, %i, %z = moe.fused_routing(%x, %wr) : (tensor<4x8xf32>, tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>, tensor<4x4xf32>) {
  ^bb0(%a: tensor<4x8xf32>):
    %logits = moe.router %a, %a : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x4xf32>
    %w0, %i0 = moe.topk %logits k = 2 : (tensor<4x4xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
    moe.yield %w0, %i0, %logits : tensor<4x2xf32>, tensor<4x2xi32>, tensor<4x4xf32>
  }
  return
}

// -----

func.func @fused_routing_c2_yield(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>) {
  // expected-error @+1 {{body must end in a moe.yield of (weights, indices, logits)}}
  %w, %i, %z = moe.fused_routing(%x, %wr) : (tensor<4x8xf32>, tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>, tensor<4x4xf32>) {
  ^bb0(%a: tensor<4x8xf32>, %b: tensor<4x8xf32>):
    %logits = moe.router %a, %b : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x4xf32>
    %w0, %i0 = moe.topk %logits k = 2 : (tensor<4x4xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
    moe.yield %w0, %i0 : tensor<4x2xf32>, tensor<4x2xi32>
  }
  return
}

// -----

// An empty body (found by fuzzing: the verifier read its missing terminator).
func.func @fused_routing_c2_empty_body(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>) {
  // expected-error @+1 {{body must end in a moe.yield of (weights, indices, logits)}}
  %w, %i, %z = moe.fused_routing(%x, %wr) : (tensor<4x8xf32>, tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>, tensor<4x4xf32>) {
  ^bb0(%a: tensor<4x8xf32>, %b: tensor<4x8xf32>):
  }
  return
}

// -----

func.func @fused_routing_c3_foreign_op(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>) {
  %w, %i, %z = moe.fused_routing(%x, %wr) : (tensor<4x8xf32>, tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>, tensor<4x4xf32>) {
  ^bb0(%a: tensor<4x8xf32>, %b: tensor<4x8xf32>):
    %logits = moe.router %a, %b : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x4xf32>
    // expected-error @+1 {{'moe.activation' op cannot be part of a moe.fused_routing body}}
    %p = moe.activation relu %logits : tensor<4x4xf32> -> tensor<4x4xf32>
    %w0, %i0 = moe.topk %logits k = 2 : (tensor<4x4xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
    moe.yield %w0, %i0, %logits : tensor<4x2xf32>, tensor<4x2xi32>, tensor<4x4xf32>
  }
  return
}

// -----

func.func @fused_routing_c3_two_selections(%x: tensor<4x8xf32>, %wr: tensor<4x8xf32>) {
  // expected-error @+1 {{body must hold one moe.router and one selection, got 1 and 2}}
  %w, %i, %z = moe.fused_routing(%x, %wr) : (tensor<4x8xf32>, tensor<4x8xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>, tensor<4x4xf32>) {
  ^bb0(%a: tensor<4x8xf32>, %b: tensor<4x8xf32>):
    %logits = moe.router %a, %b : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x4xf32>
    %w0, %i0 = moe.topk %logits k = 2 : (tensor<4x4xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
    %w1, %i1 = moe.topk %logits k = 2 : (tensor<4x4xf32>) -> (tensor<4x2xf32>, tensor<4x2xi32>)
    moe.yield %w0, %i0, %logits : tensor<4x2xf32>, tensor<4x2xi32>, tensor<4x4xf32>
  }
  return
}
