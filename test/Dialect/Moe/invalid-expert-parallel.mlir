// Verifiers of the expert-parallel ops: one case per constraint.
// RUN: moe-opt %s -split-input-file -verify-diagnostics

func.func @ep_rank_c1_ranks() {
  // expected-error @+1 {{ranks must be between 1 and 65536, got 0}}
  %r = moe.ep_rank ranks = 0 : index
  return
}

// -----

func.func @all_to_all_c1_too_few_bounds(%xs: tensor<32x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{bounds must hold ranks + 1 entries for 1 to 65536 ranks, got 1}}
  %r, %l, %c = moe.all_to_all_dispatch %xs, %off bounds = [0] rank = 0
      : (tensor<32x64xf32>, tensor<9xi32>) -> (tensor<?x64xf32>, tensor<1xi32>, tensor<1x0xi32>)
  return
}

// -----

func.func @all_to_all_c1_start(%xs: tensor<32x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{bounds must start at expert 0, got 1}}
  %r, %l, %c = moe.all_to_all_dispatch %xs, %off bounds = [1, 4, 8] rank = 0
      : (tensor<32x64xf32>, tensor<9xi32>) -> (tensor<?x64xf32>, tensor<4xi32>, tensor<2x3xi32>)
  return
}

// -----

func.func @all_to_all_c1_decreasing(%xs: tensor<32x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{bounds must not decrease: rank 1 would own experts [5, 4)}}
  %r, %l, %c = moe.all_to_all_dispatch %xs, %off bounds = [0, 5, 4, 8] rank = 0
      : (tensor<32x64xf32>, tensor<9xi32>) -> (tensor<?x64xf32>, tensor<6xi32>, tensor<3x5xi32>)
  return
}

// -----

func.func @all_to_all_c2_rank(%xs: tensor<32x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{rank 2 is not one of the 2 ranks of bounds}}
  %r, %l, %c = moe.all_to_all_dispatch %xs, %off bounds = [0, 4, 8] rank = 2
      : (tensor<32x64xf32>, tensor<9xi32>) -> (tensor<?x64xf32>, tensor<5xi32>, tensor<2x4xi32>)
  return
}

// -----

func.func @all_to_all_c3_offsets(%xs: tensor<32x64xf32>, %off: tensor<5xi32>) {
  // expected-error @+1 {{offsets describe 4 experts, fewer than the 8 the bounds place}}
  %r, %l, %c = moe.all_to_all_dispatch %xs, %off bounds = [0, 4, 8] rank = 0
      : (tensor<32x64xf32>, tensor<5xi32>) -> (tensor<?x64xf32>, tensor<5xi32>, tensor<2x4xi32>)
  return
}

// -----

func.func @all_to_all_c4_local_offsets(%xs: tensor<32x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{local offsets dimension 0 (9) must equal this rank's experts + 1 (4)}}
  %r, %l, %c = moe.all_to_all_dispatch %xs, %off bounds = [0, 3, 8] rank = 0
      : (tensor<32x64xf32>, tensor<9xi32>) -> (tensor<?x64xf32>, tensor<9xi32>, tensor<2x3xi32>)
  return
}

// -----

func.func @all_to_all_c4_counts(%xs: tensor<32x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{counts dimension 0 (3) must equal the number of ranks (2)}}
  %r, %l, %c = moe.all_to_all_dispatch %xs, %off bounds = [0, 4, 8] rank = 1
      : (tensor<32x64xf32>, tensor<9xi32>) -> (tensor<?x64xf32>, tensor<5xi32>, tensor<3x4xi32>)
  return
}

// -----

func.func @all_to_all_c4_width(%xs: tensor<32x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{received dimension 1 (32) must equal the row width (64)}}
  %r, %l, %c = moe.all_to_all_dispatch %xs, %off bounds = [0, 4, 8] rank = 0
      : (tensor<32x64xf32>, tensor<9xi32>) -> (tensor<?x32xf32>, tensor<5xi32>, tensor<2x4xi32>)
  return
}

// -----

func.func @all_to_all_c5_counts(%ys: tensor<?x64xf32>, %c: tensor<2x3xi32>, %off: tensor<9xi32>, %n: index) {
  // expected-error @+1 {{counts dimension 1 (3) must equal this rank's experts (4)}}
  %b = moe.all_to_all_return %ys, %c, %off rows = %n bounds = [0, 4, 8] rank = 0
      : (tensor<?x64xf32>, tensor<2x3xi32>, tensor<9xi32>) -> tensor<32x64xf32>
  return
}

// -----

func.func @all_to_all_c5_element_type(%ys: tensor<?x64xf32>, %c: tensor<2x4xi32>, %off: tensor<9xi32>, %n: index) {
  // expected-error @+1 {{result element type 'bf16' must equal rows element type 'f32'}}
  %b = moe.all_to_all_return %ys, %c, %off rows = %n bounds = [0, 4, 8] rank = 0
      : (tensor<?x64xf32>, tensor<2x4xi32>, tensor<9xi32>) -> tensor<32x64xbf16>
  return
}

// -----

func.func @all_to_all_c6_drop(%xs: tensor<32x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{a global capacity keeps C rows of each expert, with no rectify}}
  %r, %l, %c = moe.all_to_all_dispatch %xs, %off bounds = [0, 4, 8] rank = 0
      {capacity = #moe.capacity<factor = 1.0, drop = position, pad = true, rectify = fill_in>, k = 2 : i64, experts = 8 : i64}
      : (tensor<32x64xf32>, tensor<9xi32>) -> (tensor<?x64xf32>, tensor<5xi32>, tensor<2x4xi32>)
  return
}

// -----

func.func @all_to_all_c6_k(%xs: tensor<32x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{a capacity needs k >= 1 and experts >= the 8 placed}}
  %r, %l, %c = moe.all_to_all_dispatch %xs, %off bounds = [0, 4, 8] rank = 0
      {capacity = #moe.capacity<factor = 1.0, drop = position>, experts = 8 : i64}
      : (tensor<32x64xf32>, tensor<9xi32>) -> (tensor<?x64xf32>, tensor<5xi32>, tensor<2x4xi32>)
  return
}

// -----

func.func @all_to_all_c6_orphan(%xs: tensor<32x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{k, experts and row priorities go with a capacity}}
  %r, %l, %c = moe.all_to_all_dispatch %xs, %off bounds = [0, 4, 8] rank = 0 {k = 2 : i64}
      : (tensor<32x64xf32>, tensor<9xi32>) -> (tensor<?x64xf32>, tensor<5xi32>, tensor<2x4xi32>)
  return
}

// -----

func.func @all_to_all_c6_probs_weights(%xs: tensor<32x64xf32>, %off: tensor<9xi32>) {
  // expected-error @+1 {{drop = probs and slot_position need the rows' priorities}}
  %r, %l, %c = moe.all_to_all_dispatch %xs, %off bounds = [0, 4, 8] rank = 0
      {capacity = #moe.capacity<factor = 1.0, drop = probs>, k = 2 : i64, experts = 8 : i64}
      : (tensor<32x64xf32>, tensor<9xi32>) -> (tensor<?x64xf32>, tensor<5xi32>, tensor<2x4xi32>)
  return
}

// -----

func.func @all_to_all_c6_weights_rows(%xs: tensor<32x64xf32>, %off: tensor<9xi32>, %w: tensor<16xf32>) {
  // expected-error @+1 {{row weights dimension 0 (16) must equal the number of rows (32)}}
  %r, %l, %c = moe.all_to_all_dispatch %xs, %off weights(%w) bounds = [0, 4, 8] rank = 0
      {capacity = #moe.capacity<factor = 1.0, drop = probs>, k = 2 : i64, experts = 8 : i64}
      : (tensor<32x64xf32>, tensor<9xi32>, tensor<16xf32>) -> (tensor<?x64xf32>, tensor<5xi32>, tensor<2x4xi32>)
  return
}

// -----

func.func @all_gather_c1_rank(%a: tensor<?x16xf32>) {
  // expected-error @+1 {{rank 4 is not one of the 4 ranks}}
  %g = moe.all_gather_columns %a ranks = 4 rank = 4 : (tensor<?x16xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @all_gather_c1_ranks(%a: tensor<?x16xf32>) {
  // expected-error @+1 {{ranks must be between 1 and 65536, got 0}}
  %g = moe.all_gather_columns %a ranks = 0 rank = 0 : (tensor<?x16xf32>) -> tensor<?x64xf32>
  return
}

// -----

func.func @all_gather_c2_columns(%a: tensor<?x16xf32>) {
  // expected-error @+1 {{result dimension 1 (48) must equal ranks x the input's columns (64)}}
  %g = moe.all_gather_columns %a ranks = 4 rank = 1 : (tensor<?x16xf32>) -> tensor<?x48xf32>
  return
}

// -----

func.func @all_gather_c2_rows(%a: tensor<8x16xf32>) {
  // expected-error @+1 {{result dimension 0 (9) must equal the input's rows (8)}}
  %g = moe.all_gather_columns %a ranks = 2 rank = 1 : (tensor<8x16xf32>) -> tensor<9x32xf32>
  return
}

// -----

func.func @all_gather_c2_element_type(%a: tensor<8x16xf32>) {
  // expected-error @+1 {{result element type 'bf16' must equal input element type 'f32'}}
  %g = moe.all_gather_columns %a ranks = 2 rank = 1 : (tensor<8x16xf32>) -> tensor<8x32xbf16>
  return
}
