// Attribute verifiers and parse errors: each case is one constraint.
// RUN: moe-opt %s -split-input-file -verify-diagnostics

// expected-error @+1 {{expert group 'ffn' must hold at least one expert, got 0}}
func.func @group_c1_empty() attributes {e = #moe.group<ffn, 0>} { return }

// -----

// A count no per-expert table could hold is an error, not an allocation.
// expected-error @+1 {{expert group 'ffn' holds 99999999999 experts; at most 1048576 are supported}}
func.func @group_c2_huge() attributes {e = #moe.group<ffn, 99999999999>} { return }

// -----

// expected-error @+2 {{unknown expert kind 'foo'; expected one of ffn, zero, copy, constant, null}}
// expected-error @+1 {{failed to parse Moe_ExpertGroupAttr parameter 'kind'}}
func.func @group_unknown_kind() attributes {e = #moe.group<foo, 2>} { return }

// -----

// expected-error @+1 {{routing k must be at least 1, got 0}}
func.func @routing_c1_k() attributes {r = #moe.routing<scoring = softmax, k = 0>} { return }

// -----

// expected-error @+1 {{routing scale must be finite and positive, got 0}}
func.func @routing_c2_scale() attributes {r = #moe.routing<scoring = sigmoid, scale = 0.0>} { return }

// -----

// expected-error @+1 {{routing input_scale must be finite and positive, got -2}}
func.func @routing_c2_input_scale() attributes {r = #moe.routing<scoring = softmax, input_scale = -2.0>} { return }

// -----

// expected-error @+1 {{routing needs 1 <= topk_groups <= num_groups, got topk_groups = 5, num_groups = 4}}
func.func @routing_c3_groups() attributes {r = #moe.routing<scoring = sigmoid, num_groups = 4, topk_groups = 5>} { return }

// -----

// expected-error @+1 {{grouped selection (num_groups > 1) needs select = top_k}}
func.func @routing_c3_grouped_threshold() attributes {r = #moe.routing<scoring = relu, select = threshold, num_groups = 2>} { return }

// -----

// expected-error @+1 {{order = select_then_score needs scoring = softmax and select = top_k}}
func.func @routing_c4_order() attributes {r = #moe.routing<scoring = sigmoid, order = select_then_score>} { return }

// -----

// expected-error @+1 {{select = expert_choice needs a capacity of at least 1 token per expert}}
func.func @routing_c5_no_capacity() attributes {r = #moe.routing<scoring = softmax, select = expert_choice>} { return }

// -----

// expected-error @+1 {{routing capacity applies only to expert_choice and bidirectional selection; use #moe.capacity for token-choice capacity}}
func.func @routing_c5_capacity_top_k() attributes {r = #moe.routing<scoring = softmax, capacity = 4>} { return }

// -----

// expected-error @+1 {{gumbel_softmax tau must be finite and positive, got 0}}
func.func @routing_c6_tau() attributes {r = #moe.routing<scoring = gumbel_softmax, tau = 0.0>} { return }

// -----

// expected-error @+1 {{gumbel_softmax samples must be at least 1, got 0}}
func.func @routing_c6_samples() attributes {r = #moe.routing<scoring = gumbel_softmax, samples = 0>} { return }

// -----

// expected-error @+1 {{tau, samples and seed apply only to scoring = gumbel_softmax}}
func.func @routing_c6_seed_softmax() attributes {r = #moe.routing<scoring = softmax, seed = 3>} { return }

// -----

// expected-error @+1 {{routing threshold applies only to select = threshold}}
func.func @routing_c7_threshold() attributes {r = #moe.routing<scoring = relu, threshold = 0.5>} { return }

// -----

// expected-error @+1 {{routing threshold must be finite, got INF}}
func.func @routing_c7_threshold_inf() attributes {r = #moe.routing<scoring = relu, select = threshold, threshold = 0x7FF0000000000000>} { return }

// -----

// expected-error @+1 {{capacity factor and tokens must be non-negative}}
func.func @capacity_c1_negative() attributes {c = #moe.capacity<factor = -1.0>} { return }

// -----

// expected-error @+1 {{capacity needs exactly one of factor > 0 or tokens > 0}}
func.func @capacity_c1_neither() attributes {c = #moe.capacity<pad = true>} { return }

// -----

// expected-error @+1 {{capacity needs exactly one of factor > 0 or tokens > 0}}
func.func @capacity_c1_both() attributes {c = #moe.capacity<factor = 1.0, tokens = 4>} { return }

// -----

// expected-error @+1 {{rectify = intra_device needs experts_per_device >= 1}}
func.func @capacity_c2_placement() attributes {c = #moe.capacity<tokens = 4, rectify = intra_device>} { return }

// -----

// expected-error @+1 {{experts_per_device applies only to intra_device rectification}}
func.func @capacity_c2_placement_unused() attributes {c = #moe.capacity<tokens = 4, experts_per_device = 2>} { return }

// -----

// expected-error @+1 {{rectify = fill_in needs pad = true}}
func.func @capacity_c3_fill_in_pad() attributes {c = #moe.capacity<tokens = 4, rectify = fill_in>} { return }

// -----

// expected-error @+1 {{routing group_size must be at least 1, got 0}}
func.func @routing_c8_group_size() attributes {r = #moe.routing<scoring = softmax, group_size = 0>} { return }

// -----

// expected-error @+1 {{group_size > 1 needs token-choice selection (top_k or threshold)}}
func.func @routing_c8_group_expert_choice() attributes {r = #moe.routing<scoring = softmax, select = expert_choice, capacity = 2, group_size = 4>} { return }

// -----

// expected-error @+1 {{routing logits_type must be bf16 or f16, got 'f64'}}
func.func @routing_c9_logits_type() attributes {r = #moe.routing<scoring = softmax, logits_type = f64>} { return }

// -----

// expected-error @+1 {{routing scores_type must be bf16 or f16, got 'f32'}}
func.func @routing_c10_scores_type() attributes {r = #moe.routing<scoring = softmax, scores_type = f32>} { return }

// -----

// expected-error @+1 {{routing scores_type needs order = score_then_select}}
func.func @routing_c10_scores_after_selection() attributes {r = #moe.routing<scoring = softmax, k = 2, order = select_then_score, scores_type = bf16>} { return }

// -----

// expected-error @+1 {{routing norm_epsilon must be finite and non-negative, got -1.000000e-06}}
func.func @routing_c11_negative_epsilon() attributes {r = #moe.routing<scoring = sigmoid, k = 2, normalize = all, norm_epsilon = -1.0e-06>} { return }

// -----

// expected-error @+1 {{routing norm_epsilon applies only with normalize = all or computing}}
func.func @routing_c11_epsilon_without_normalize() attributes {r = #moe.routing<scoring = sigmoid, k = 2, norm_epsilon = 1.0e-06>} { return }
