// Verifiers of the expert computation ops: one case per constraint.
// RUN: moe-opt %s -split-input-file -verify-diagnostics

func.func @grouped_matmul_c1_reduction(%xs: tensor<32x64xf32>, %w: tensor<8x256x32xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{weights dimension 2 (32) must equal the lhs reduction size (64)}}
  %h = moe.grouped_matmul %xs, %w, %off : (tensor<32x64xf32>, tensor<8x256x32xf32>, tensor<9xi32>) -> tensor<32x256xf32>
  return
}

// -----

func.func @grouped_matmul_c1_offsets(%xs: tensor<32x64xf32>, %w: tensor<8x256x64xf32>, %off: tensor<8xi32>) {
  // expected-error @+1 {{offsets (8 entries) must describe at least the 8 experts of the weights (9 entries)}}
  %h = moe.grouped_matmul %xs, %w, %off : (tensor<32x64xf32>, tensor<8x256x64xf32>, tensor<8xi32>) -> tensor<32x256xf32>
  return
}

// -----

func.func @grouped_matmul_c1_output(%xs: tensor<32x64xf32>, %w: tensor<8x256x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{result dimension 1 (128) must equal the weights' output size (256)}}
  %h = moe.grouped_matmul %xs, %w, %off : (tensor<32x64xf32>, tensor<8x256x64xf32>, tensor<9xi32>) -> tensor<32x128xf32>
  return
}

// -----

func.func @grouped_matmul_c1_weights_rank(%xs: tensor<32x64xf32>, %w: tensor<256x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{weights must have rank 3, got 'tensor<256x64xf32>'}}
  %h = moe.grouped_matmul %xs, %w, %off : (tensor<32x64xf32>, tensor<256x64xf32>, tensor<9xi32>) -> tensor<32x256xf32>
  return
}

// -----

// f32 (the accumulators) or the activations' type; never another.
func.func @grouped_matmul_c2_element_type(%xs: tensor<32x64xbf16>, %w: tensor<8x256x64xbf16>, %off: tensor<9xi32>) {
  // expected-error @+1 {{result element type 'f16' must equal lhs element type 'bf16'}}
  %h = moe.grouped_matmul %xs, %w, %off : (tensor<32x64xbf16>, tensor<8x256x64xbf16>, tensor<9xi32>) -> tensor<32x256xf16>
  return
}

// -----

func.func @activation_c1_odd_width(%h: tensor<32x7xf32>) {
  // expected-error @+1 {{swiglu needs an even input width ([gate; up]), got 7}}
  %a = moe.activation swiglu %h : tensor<32x7xf32> -> tensor<32x3xf32>
  return
}

// -----

func.func @activation_c1_glu_width(%h: tensor<32x8xf32>) {
  // expected-error @+1 {{result dimension 1 (8) must equal half the input width (4)}}
  %a = moe.activation geglu %h : tensor<32x8xf32> -> tensor<32x8xf32>
  return
}

// -----

func.func @activation_c1_glu_tanh_width(%h: tensor<32x8xf32>) {
  // expected-error @+1 {{result dimension 1 (8) must equal half the input width (4)}}
  %a = moe.activation geglu_tanh %h : tensor<32x8xf32> -> tensor<32x8xf32>
  return
}

// -----

func.func @activation_elementwise_width(%h: tensor<32x8xf32>) {
  // expected-error @+1 {{result dimension 1 (4) must equal the input width (8)}}
  %a = moe.activation gelu %h : tensor<32x8xf32> -> tensor<32x4xf32>
  return
}

// -----

func.func @activation_relu2_elementwise_width(%h: tensor<32x8xf32>) {
  // expected-error @+1 {{result dimension 1 (4) must equal the input width (8)}}
  %a = moe.activation relu2 %h : tensor<32x8xf32> -> tensor<32x4xf32>
  return
}

// -----

func.func @activation_element_type(%h: tensor<32x8xf32>) {
  // expected-error @+1 {{result element type 'f16' must equal input element type 'f32'}}
  %a = moe.activation relu %h : tensor<32x8xf32> -> tensor<32x8xf16>
  return
}

// -----

func.func @activation_unknown(%h: tensor<32x8xf32>) {
  // expected-error @+1 {{unknown activation 'tanh'}}
  %a = moe.activation tanh %h : tensor<32x8xf32> -> tensor<32x8xf32>
  return
}

// -----

func.func @zero_compute_too_many_experts(%x: tensor<4x8xf32>, %i: tensor<4x2xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{experts must be at most 1048576, got 2097152}}
  %zc = moe.zero_compute %x, %i, %w experts = [#moe.group<ffn, 1048576>, #moe.group<zero, 1048576>]
    : (tensor<4x8xf32>, tensor<4x2xi32>, tensor<4x2xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @zero_compute_c1_missing_constants(%x: tensor<4x8xf32>, %i: tensor<4x2xi32>, %w: tensor<4x2xf32>) {
  // expected-error @+1 {{the 1 constant experts need constant(vectors, mix) operands}}
  %zc = moe.zero_compute %x, %i, %w experts = [#moe.group<ffn, 4>, #moe.group<constant, 1>]
    : (tensor<4x8xf32>, tensor<4x2xi32>, tensor<4x2xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @zero_compute_c1_extra_constants(%x: tensor<4x8xf32>, %i: tensor<4x2xi32>, %w: tensor<4x2xf32>,
                                           %v: tensor<1x8xf32>, %m: tensor<1x2x8xf32>) {
  // expected-error @+1 {{constant(vectors, mix) given but the expert set has no constant experts}}
  %zc = moe.zero_compute %x, %i, %w constant(%v, %m) experts = [#moe.group<ffn, 4>, #moe.group<copy, 1>]
    : (tensor<4x8xf32>, tensor<4x2xi32>, tensor<4x2xf32>, tensor<1x8xf32>, tensor<1x2x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @zero_compute_c1_pair(%x: tensor<4x8xf32>, %i: tensor<4x2xi32>, %w: tensor<4x2xf32>, %v: tensor<1x8xf32>) {
  // expected-error @+1 {{constant needs both the vectors and the mixing weights}}
  %zc = "moe.zero_compute"(%x, %i, %w, %v) <{experts = [#moe.group<ffn, 4>, #moe.group<constant, 1>],
                                              operandSegmentSizes = array<i32: 1, 1, 1, 1, 0>}>
    : (tensor<4x8xf32>, tensor<4x2xi32>, tensor<4x2xf32>, tensor<1x8xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @zero_compute_c1_mix_shape(%x: tensor<4x8xf32>, %i: tensor<4x2xi32>, %w: tensor<4x2xf32>,
                                     %v: tensor<1x8xf32>, %m: tensor<1x2x4xf32>) {
  // expected-error @+1 {{constant mix dimension 2 (4) must equal the hidden size (8)}}
  %zc = moe.zero_compute %x, %i, %w constant(%v, %m) experts = [#moe.group<ffn, 4>, #moe.group<constant, 1>]
    : (tensor<4x8xf32>, tensor<4x2xi32>, tensor<4x2xf32>, tensor<1x8xf32>, tensor<1x2x4xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @zero_compute_tokens(%x: tensor<4x8xf32>, %i: tensor<2x2xi32>, %w: tensor<2x2xf32>) {
  // expected-error @+1 {{indices dimension 0 (2) must equal the number of tokens (4)}}
  %zc = moe.zero_compute %x, %i, %w experts = [#moe.group<ffn, 4>, #moe.group<copy, 1>]
    : (tensor<4x8xf32>, tensor<2x2xi32>, tensor<2x2xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @dense_ffn_c1_glu_width(%x: tensor<4x8xf32>, %u: tensor<6x8xf32>, %d: tensor<8x4xf32>) {
  // expected-error @+1 {{up weight dimension 0 (6) must be twice the FFN width of down weight (4) for activation swiglu}}
  %s = moe.dense_ffn swiglu %x, %u, %d : (tensor<4x8xf32>, tensor<6x8xf32>, tensor<8x4xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @dense_ffn_c1_down_hidden(%x: tensor<4x8xf32>, %u: tensor<4x8xf32>, %d: tensor<6x4xf32>) {
  // expected-error @+1 {{down weight dimension 0 (6) must equal the hidden size (8)}}
  %s = moe.dense_ffn relu %x, %u, %d : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<6x4xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @dense_ffn_c1_result(%x: tensor<4x8xf32>, %u: tensor<4x8xf32>, %d: tensor<8x4xf32>) {
  // expected-error @+1 {{result element type 'bf16' must equal x element type 'f32'}}
  %s = moe.dense_ffn relu %x, %u, %d : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<8x4xf32>) -> tensor<4x8xbf16>
  return
}

// -----

func.func @dense_ffn_c2_gate(%x: tensor<4x8xf32>, %u: tensor<4x8xf32>, %d: tensor<8x4xf32>, %g: tensor<1x4xf32>) {
  // expected-error @+1 {{gate dimension 1 (4) must equal the hidden size (8)}}
  %s = moe.dense_ffn relu %x, %u, %d gate(%g) : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<8x4xf32>, tensor<1x4xf32>) -> tensor<4x8xf32>
  return
}

// -----

func.func @merge_experts_c1_rank(%w: tensor<8xf32>, %g: tensor<4x8xf32>) {
  // expected-error @+1 {{weights must have rank >= 2 (experts first), got 'tensor<8xf32>'}}
  %m = moe.merge_experts %w, %g : (tensor<8xf32>, tensor<4x8xf32>) -> tensor<4xf32>
  return
}

// -----

func.func @merge_experts_c1_gates(%w: tensor<8x64x64xf32>, %g: tensor<4x6xf32>) {
  // expected-error @+1 {{gates dimension 1 (6) must equal the number of experts (8)}}
  %m = moe.merge_experts %w, %g : (tensor<8x64x64xf32>, tensor<4x6xf32>) -> tensor<4x64x64xf32>
  return
}

// -----

func.func @merge_experts_c1_groups(%w: tensor<8x64x64xf32>, %g: tensor<4x8xf32>) {
  // expected-error @+1 {{result dimension 0 (2) must equal the number of groups (4)}}
  %m = moe.merge_experts %w, %g : (tensor<8x64x64xf32>, tensor<4x8xf32>) -> tensor<2x64x64xf32>
  return
}

// -----

func.func @merge_experts_c1_weight_dims(%w: tensor<8x64x64xf32>, %g: tensor<4x8xf32>) {
  // expected-error @+1 {{result dimension 2 (32) must equal the weights' dimension (64)}}
  %m = moe.merge_experts %w, %g : (tensor<8x64x64xf32>, tensor<4x8xf32>) -> tensor<4x64x32xf32>
  return
}

// -----

func.func @grouped_matmul_act_c1_odd(%xs: tensor<32x64xf32>, %w: tensor<8x255x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{swiglu needs an even weights' output size ([gate; up]), got 255}}
  %a = moe.grouped_matmul_act swiglu %xs, %w, %off : (tensor<32x64xf32>, tensor<8x255x64xf32>, tensor<9xi32>) -> tensor<32x127xf32>
  return
}

// -----

func.func @grouped_matmul_act_c1_glu_width(%xs: tensor<32x64xf32>, %w: tensor<8x256x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{result dimension 1 (256) must equal half the weights' output size (128)}}
  %a = moe.grouped_matmul_act geglu %xs, %w, %off : (tensor<32x64xf32>, tensor<8x256x64xf32>, tensor<9xi32>) -> tensor<32x256xf32>
  return
}

// -----

func.func @grouped_matmul_act_c1_width(%xs: tensor<32x64xf32>, %w: tensor<8x256x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{result dimension 1 (128) must equal the weights' output size (256)}}
  %a = moe.grouped_matmul_act relu %xs, %w, %off : (tensor<32x64xf32>, tensor<8x256x64xf32>, tensor<9xi32>) -> tensor<32x128xf32>
  return
}

// -----

func.func @grouped_matmul_act_c1_offsets(%xs: tensor<32x64xf32>, %w: tensor<8x256x64xf32>, %off: tensor<4xi32>) {
  // expected-error @+1 {{offsets (4 entries) must describe at least the 8 experts of the weights (9 entries)}}
  %a = moe.grouped_matmul_act relu %xs, %w, %off : (tensor<32x64xf32>, tensor<8x256x64xf32>, tensor<4xi32>) -> tensor<32x256xf32>
  return
}

// -----

func.func @grouped_matmul_combine_c1_tokens(%a: tensor<32x128xf32>, %w: tensor<8x64x128xf32>, %off: tensor<9xi32>,
                                            %sr: tensor<16x2xi32>, %sw: tensor<16x2xf32>) {
  // expected-error @+1 {{result dimension 0 (8) must equal the number of tokens (16)}}
  %y = moe.grouped_matmul_combine %a, %w, %off, %sr, %sw
    : (tensor<32x128xf32>, tensor<8x64x128xf32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<8x64xf32>
  return
}

// -----

func.func @grouped_matmul_combine_c1_slots(%a: tensor<32x128xf32>, %w: tensor<8x64x128xf32>, %off: tensor<9xi32>,
                                           %sr: tensor<16x2xi32>, %sw: tensor<16x3xf32>) {
  // expected-error @+1 {{slot_weight dimension 1 (3) must equal slot_row dimension 1 (2)}}
  %y = moe.grouped_matmul_combine %a, %w, %off, %sr, %sw
    : (tensor<32x128xf32>, tensor<8x64x128xf32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x3xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @grouped_matmul_combine_c1_type(%a: tensor<32x128xbf16>, %w: tensor<8x64x128xbf16>, %off: tensor<9xi32>,
                                          %sr: tensor<16x2xi32>, %sw: tensor<16x2xf32>) {
  // expected-error @+1 {{result element type 'f32' must equal lhs element type 'bf16'}}
  %y = moe.grouped_matmul_combine %a, %w, %off, %sr, %sw
    : (tensor<32x128xbf16>, tensor<8x64x128xbf16>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @dense_gates_c1_experts(%w: tensor<4x2xf32>, %i: tensor<4x2xi32>) {
  // expected-error @+1 {{experts must be at least 1, got 0}}
  %g = moe.dense_gates %w, %i experts = 0 : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x0xf32>
  return
}

// -----

func.func @dense_gates_c1_width(%w: tensor<4x2xf32>, %i: tensor<4x2xi32>) {
  // expected-error @+1 {{result dimension 1 (6) must equal the number of experts (8)}}
  %g = moe.dense_gates %w, %i experts = 8 : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x6xf32>
  return
}

// -----

func.func @compose_experts_c1_width(%down: tensor<8x64x32xf32>, %up: tensor<8x16x64xf32>) {
  // expected-error @+1 {{up dimension 1 (16) must equal the down weight's FFN width (32)}}
  %p = moe.compose_experts %down, %up : (tensor<8x64x32xf32>, tensor<8x16x64xf32>) -> tensor<8x64x64xf32>
  return
}

// -----

func.func @compose_experts_c1_result(%down: tensor<8x64x32xf32>, %up: tensor<8x32x48xf32>) {
  // expected-error @+1 {{result dimension 2 (64) must equal the up weight's input size (48)}}
  %p = moe.compose_experts %down, %up : (tensor<8x64x32xf32>, tensor<8x32x48xf32>) -> tensor<8x64x64xf32>
  return
}

// -----

func.func @grouped_matmul_c3_shared_shape(%xs: tensor<32x64xf32>, %w: tensor<8x256x64xf32>, %off: tensor<10xi32>, %s: tensor<128x64xf32>) {
  // expected-error @+1 {{shared dimension 0 (128) must equal the weights' output size (256)}}
  %h = moe.grouped_matmul %xs, %w, %off shared(%s) : (tensor<32x64xf32>, tensor<8x256x64xf32>, tensor<10xi32>, tensor<128x64xf32>) -> tensor<32x256xf32>
  return
}

// -----

func.func @grouped_matmul_c3_shared_offsets(%xs: tensor<32x64xf32>, %w: tensor<8x256x64xf32>, %off: tensor<9xi32>, %s: tensor<256x64xf32>) {
  // expected-error @+1 {{offsets (9 entries) must describe at least the 9 experts of the weights (10 entries)}}
  %h = moe.grouped_matmul %xs, %w, %off shared(%s) : (tensor<32x64xf32>, tensor<8x256x64xf32>, tensor<9xi32>, tensor<256x64xf32>) -> tensor<32x256xf32>
  return
}

// -----

func.func @dequantize_c1_bits(%q: tensor<8x256x32xi8>, %s: tensor<8x256xf32>) {
  // expected-error @+1 {{bits must be 2, 4 or 8, got 3}}
  %w = moe.dequantize %q, %s {bits = 3} : (tensor<8x256x32xi8>, tensor<8x256xf32>) -> tensor<8x256x64xf32>
  return
}

// -----

func.func @dequantize_c1_block_size(%q: tensor<8x256x32xi8>, %s: tensor<8x256xf32>) {
  // expected-error @+1 {{block_size must be 0 (one scale per row) or positive, got -32}}
  %w = moe.dequantize %q, %s {bits = 4, block_size = -32} : (tensor<8x256x32xi8>, tensor<8x256xf32>) -> tensor<8x256x64xf32>
  return
}

// -----

func.func @dequantize_c2_row_length(%q: tensor<8x256x32xi8>, %s: tensor<8x256xf32>) {
  // expected-error @+1 {{result row length (32) must be the packed row's 32 bytes times 2 values per byte (4 bits)}}
  %w = moe.dequantize %q, %s {bits = 4} : (tensor<8x256x32xi8>, tensor<8x256xf32>) -> tensor<8x256x32xf32>
  return
}

// -----

func.func @dequantize_c2_rows(%q: tensor<8x256x32xi8>, %s: tensor<8x256xf32>) {
  // expected-error @+1 {{result dimension 1 (128) must equal the packed rows (256)}}
  %w = moe.dequantize %q, %s {bits = 8} : (tensor<8x256x32xi8>, tensor<8x256xf32>) -> tensor<8x128x32xf32>
  return
}

// -----

func.func @dequantize_c5_interleaved_odd_rows(%q: tensor<8x255x32xi8>, %s: tensor<8x255xf32>) {
  // expected-error @+1 {{interleaved_rows needs an even row count, got 255}}
  %w = moe.dequantize %q, %s {bits = 4, interleaved_rows} : (tensor<8x255x32xi8>, tensor<8x255xf32>) -> tensor<8x255x64xf32>
  return
}

// -----

func.func @dequantize_c2_rank(%q: tensor<256x32xi8>, %s: tensor<8x256xf32>) {
  // expected-error @+1 {{packed must have rank 3, got 'tensor<256x32xi8>'}}
  %w = moe.dequantize %q, %s {bits = 8} : (tensor<256x32xi8>, tensor<8x256xf32>) -> tensor<8x256x32xf32>
  return
}

// -----

func.func @dequantize_c3_per_row(%q: tensor<8x256x32xi8>, %s: tensor<8x256x2xf32>) {
  // expected-error @+1 {{scales must have rank 2, got 'tensor<8x256x2xf32>'}}
  %w = moe.dequantize %q, %s {bits = 4} : (tensor<8x256x32xi8>, tensor<8x256x2xf32>) -> tensor<8x256x64xf32>
  return
}

// -----

func.func @dequantize_c3_blocks(%q: tensor<8x256x32xi8>, %s: tensor<8x256x4xf32>) {
  // expected-error @+1 {{scales dimension 2 (4) must equal the blocks per row (2)}}
  %w = moe.dequantize %q, %s {bits = 4, block_size = 32} : (tensor<8x256x32xi8>, tensor<8x256x4xf32>) -> tensor<8x256x64xf32>
  return
}

// -----

func.func @dequantize_c3_divides(%q: tensor<8x256x32xi8>, %s: tensor<8x256x2xf32>) {
  // expected-error @+1 {{block_size 48 must divide the row length 64}}
  %w = moe.dequantize %q, %s {bits = 4, block_size = 48} : (tensor<8x256x32xi8>, tensor<8x256x2xf32>) -> tensor<8x256x64xf32>
  return
}

// -----

func.func @dequantize_c3_scale_rows(%q: tensor<8x256x32xi8>, %s: tensor<8x128xf32>) {
  // expected-error @+1 {{scales dimension 1 (128) must equal the rows (256)}}
  %w = moe.dequantize %q, %s {bits = 4} : (tensor<8x256x32xi8>, tensor<8x128xf32>) -> tensor<8x256x64xf32>
  return
}

// -----

func.func @dequantize_c4_zero_points(%q: tensor<8x256x32xi8>, %s: tensor<8x256x2xf32>, %z: tensor<8x256x1xi8>) {
  // expected-error @+1 {{zero_points dimension 2 (1) must equal scales dimension 2 (2)}}
  %w = moe.dequantize %q, %s zero_points(%z) {bits = 4, block_size = 32}
      : (tensor<8x256x32xi8>, tensor<8x256x2xf32>, tensor<8x256x1xi8>) -> tensor<8x256x64xf32>
  return
}

// -----

func.func @dequantize_packed_type(%q: tensor<8x256x32xi32>, %s: tensor<8x256xf32>) {
  // expected-error @+1 {{operand #0 must be ranked tensor of 8-bit signless integer values}}
  %w = moe.dequantize %q, %s {bits = 8} : (tensor<8x256x32xi32>, tensor<8x256xf32>) -> tensor<8x256x32xf32>
  return
}
