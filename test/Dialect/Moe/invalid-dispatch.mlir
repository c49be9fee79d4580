// Verifiers of moe.dispatch, moe.permute and moe.combine: one case per constraint.
// RUN: moe-opt %s -split-input-file -verify-diagnostics

func.func @dispatch_slots_shape(%i: tensor<16x2xi32>, %w: tensor<16x3xf32>) {
  // expected-error @+1 {{indices dimension 1 (2) must equal weights dimension 1 (3)}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w experts = 8
    : (tensor<16x2xi32>, tensor<16x3xf32>) -> (tensor<32xi32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  return
}

// -----

func.func @dispatch_c1_experts(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{experts must be at least 1, got 0}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w experts = 0
    : (tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32xi32>, tensor<1xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  return
}

// -----

// The largest i64: experts + 1 (the offsets' size) would wrap.
func.func @dispatch_c1_experts_huge(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{experts must be at most 1048576, got 9223372036854775807}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w experts = 9223372036854775807
    : (tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32xi32>, tensor<1xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  return
}

// -----

func.func @dispatch_c1_experts_negative(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{experts must be at least 1, got -1}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w experts = -1
    : (tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32xi32>, tensor<1xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  return
}

// -----

func.func @dispatch_c2_fill_in_column(%i: tensor<16x1xi32>, %w: tensor<16x1xf32>) {
  // expected-error @+1 {{fill_in rectification needs a (k+1)-th selection column}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w experts = 8 {capacity = #moe.capacity<tokens = 2, pad = true, rectify = fill_in>}
    : (tensor<16x1xi32>, tensor<16x1xf32>) -> (tensor<16xi32>, tensor<9xi32>, tensor<16x1xi32>, tensor<16x1xf32>)
  return
}

// -----

func.func @dispatch_c2_intra_logits(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{intra_device rectification needs the router logits}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w experts = 8 {capacity = #moe.capacity<tokens = 2, rectify = intra_device, experts_per_device = 4>}
    : (tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32xi32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  return
}

// -----

func.func @dispatch_c2_placement(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>, %z: tensor<16x8xf32>) {
  // expected-error @+1 {{experts_per_device (3) must divide the number of experts (8)}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w logits(%z) experts = 8 {capacity = #moe.capacity<tokens = 2, rectify = intra_device, experts_per_device = 3>}
    : (tensor<16x2xi32>, tensor<16x2xf32>, tensor<16x8xf32>) -> (tensor<32xi32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  return
}

// -----

func.func @dispatch_c2_logits_shape(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>, %z: tensor<16x4xf32>) {
  // expected-error @+1 {{logits dimension 1 (4) must equal the number of experts (8)}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w logits(%z) experts = 8 {capacity = #moe.capacity<tokens = 2, rectify = intra_device, experts_per_device = 4>}
    : (tensor<16x2xi32>, tensor<16x2xf32>, tensor<16x4xf32>) -> (tensor<32xi32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  return
}

// -----

func.func @dispatch_c3_dropless_rows(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{result row_token dimension 0 (16) must equal tokens x slots (32)}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w experts = 8
    : (tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<16xi32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  return
}

// -----

func.func @dispatch_c3_padded_rows(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // C = ceil(16 * 2 / 8 * 1.5) = 6, so 8 experts own 48 rows.
  // expected-error @+1 {{result row_token dimension 0 (32) must equal experts x capacity (48)}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w experts = 8 {capacity = #moe.capacity<factor = 1.5, pad = true>}
    : (tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32xi32>, tensor<9xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  return
}

// -----

func.func @dispatch_c3_offsets(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{result expert_offsets dimension 0 (8) must equal the number of planned experts + 1 (9)}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w experts = 8
    : (tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32xi32>, tensor<8xi32>, tensor<16x2xi32>, tensor<16x2xf32>)
  return
}

// -----

func.func @dispatch_c3_slot_row(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>) {
  // expected-error @+1 {{result slot_row dimension 1 (1) must equal the number of planned slots (2)}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w experts = 8
    : (tensor<16x2xi32>, tensor<16x2xf32>) -> (tensor<32xi32>, tensor<9xi32>, tensor<16x1xi32>, tensor<16x2xf32>)
  return
}

// -----

func.func @permute_c1_rows(%x: tensor<16x64xf32>, %rows: tensor<32xi32>) {
  // expected-error @+1 {{result dimension 0 (16) must equal the number of rows (32)}}
  %xs = moe.permute %x, %rows : (tensor<16x64xf32>, tensor<32xi32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @permute_c1_hidden(%x: tensor<16x64xf32>, %rows: tensor<32xi32>) {
  // expected-error @+1 {{result dimension 1 (32) must equal the hidden size (64)}}
  %xs = moe.permute %x, %rows : (tensor<16x64xf32>, tensor<32xi32>) -> tensor<32x32xf32>
  return
}

// -----

func.func @permute_c1_element_type(%x: tensor<16x64xf32>, %rows: tensor<32xi32>) {
  // expected-error @+1 {{result element type 'bf16' must equal x element type 'f32'}}
  %xs = moe.permute %x, %rows : (tensor<16x64xf32>, tensor<32xi32>) -> tensor<32x64xbf16>
  return
}

// -----

func.func @permute_c1_row_rank(%x: tensor<16x64xf32>, %rows: tensor<32x1xi32>) {
  // expected-error @+1 {{row_token must have rank 1, got 'tensor<32x1xi32>'}}
  %xs = moe.permute %x, %rows : (tensor<16x64xf32>, tensor<32x1xi32>) -> tensor<32x64xf32>
  return
}

// -----

func.func @combine_c1_slots(%o: tensor<32x64xf32>, %sr: tensor<16x2xi32>, %sw: tensor<16x3xf32>) {
  // expected-error @+1 {{slot_weight dimension 1 (3) must equal slot_row dimension 1 (2)}}
  %y = moe.combine %o, %sr, %sw : (tensor<32x64xf32>, tensor<16x2xi32>, tensor<16x3xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @combine_c1_tokens(%o: tensor<32x64xf32>, %sr: tensor<16x2xi32>, %sw: tensor<16x2xf32>) {
  // expected-error @+1 {{result dimension 0 (8) must equal the number of tokens (16)}}
  %y = moe.combine %o, %sr, %sw : (tensor<32x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<8x64xf32>
  return
}

// -----

func.func @combine_c1_hidden(%o: tensor<32x64xf32>, %sr: tensor<16x2xi32>, %sw: tensor<16x2xf32>) {
  // expected-error @+1 {{result dimension 1 (32) must equal the hidden size (64)}}
  %y = moe.combine %o, %sr, %sw : (tensor<32x64xf32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x32xf32>
  return
}

// -----

func.func @combine_c1_element_type(%o: tensor<32x64xbf16>, %sr: tensor<16x2xi32>, %sw: tensor<16x2xf32>) {
  // expected-error @+1 {{result element type 'f32' must equal rows element type 'bf16'}}
  %y = moe.combine %o, %sr, %sw : (tensor<32x64xbf16>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @restrict_slots_c1_experts(%i: tensor<4x2xi32>) {
  // expected-error @+1 {{experts must be at least 1, got 0}}
  %r = moe.restrict_slots %i experts = 0 : tensor<4x2xi32>
  return
}

// -----

func.func @restrict_slots_c1_rank(%i: tensor<8xi32>) {
  // expected-error @+1 {{indices must have rank 2, got 'tensor<8xi32>'}}
  %r = moe.restrict_slots %i experts = 4 : tensor<8xi32>
  return
}

// -----

func.func @dispatch_c4_shared_capacity(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>, %s: tensor<16x1xf32>) {
  // expected-error @+1 {{a shared slot needs dropless dispatch (no capacity)}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w shared(%s) experts = 8 {capacity = #moe.capacity<tokens = 4, pad = true>}
    : (tensor<16x2xi32>, tensor<16x2xf32>, tensor<16x1xf32>) -> (tensor<32xi32>, tensor<10xi32>, tensor<16x3xi32>, tensor<16x3xf32>)
  return
}

// -----

func.func @dispatch_c4_shared_shape(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>, %s: tensor<16x2xf32>) {
  // expected-error @+1 {{shared weight dimension 1 (2) must equal 1 (1)}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w shared(%s) experts = 8
    : (tensor<16x2xi32>, tensor<16x2xf32>, tensor<16x2xf32>) -> (tensor<48xi32>, tensor<10xi32>, tensor<16x3xi32>, tensor<16x3xf32>)
  return
}

// -----

func.func @dispatch_c4_shared_slots(%i: tensor<16x2xi32>, %w: tensor<16x2xf32>, %s: tensor<16x1xf32>) {
  // expected-error @+1 {{result row_token dimension 0 (32) must equal tokens x slots (48)}}
  %r, %o, %sr, %sw = moe.dispatch %i, %w shared(%s) experts = 8
    : (tensor<16x2xi32>, tensor<16x2xf32>, tensor<16x1xf32>) -> (tensor<32xi32>, tensor<10xi32>, tensor<16x3xi32>, tensor<16x3xf32>)
  return
}
