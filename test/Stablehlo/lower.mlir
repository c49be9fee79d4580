// moe-lower-stablehlo: each op family becomes linalg/tensor/scf/moe; what
// cannot be lowered is a located error.
// RUN: moe-opt %s -split-input-file -moe-lower-stablehlo -verify-diagnostics | FileCheck %s

// CHECK-LABEL: func @elementwise
func.func @elementwise(%a: tensor<4xf32>, %p: tensor<i1>) -> tensor<4xf32> {
  // CHECK: linalg.generic
  // CHECK: arith.addf
  %0 = stablehlo.add %a, %a : tensor<4xf32>
  // A 0-d predicate is read by every element.
  // CHECK: linalg.generic {indexing_maps = [#{{.*}}, #{{.*}}, #{{.*}}, #{{.*}}]
  // CHECK: arith.select
  %1 = stablehlo.select %p, %0, %a : (tensor<i1>, tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  // CHECK-NOT: stablehlo.
  return %1 : tensor<4xf32>
}

// -----

// CHECK-LABEL: func @dot_general_bf16
func.func @dot_general_bf16(%a: tensor<2x4x8xbf16>, %b: tensor<2x8x6xbf16>) -> tensor<2x4x6xbf16> {
  // bf16 products accumulate in f32, rounded once at the end.
  // CHECK: linalg.fill ins(%{{.*}} : f32)
  // CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "reduction"]
  // CHECK: arith.extf
  // CHECK: arith.mulf {{.*}} : f32
  // CHECK: arith.truncf {{.*}} : f32 to bf16
  %0 = stablehlo.dot_general %a, %b, batching_dims = [0] x [0], contracting_dims = [2] x [1] : (tensor<2x4x8xbf16>, tensor<2x8x6xbf16>) -> tensor<2x4x6xbf16>
  return %0 : tensor<2x4x6xbf16>
}

// -----

// Batch dims only (a per-row scaling written as a dot): the product is
// written, never added to the init (elementwise fusion would re-add it).
// CHECK-LABEL: func @dot_general_batch_only
// CHECK-NOT: linalg.fill
// CHECK: %[[E:.*]] = tensor.empty() : tensor<4x3x5xf32>
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel"]{{.*}} outs(%[[E]]
// CHECK-NEXT: ^bb0(%[[A:.*]]: f32, %[[G:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT: %[[P:.*]] = arith.mulf %[[A]], %[[G]] : f32
// CHECK-NEXT: linalg.yield %[[P]]
func.func @dot_general_batch_only(%a: tensor<4x3x5xf32>, %g: tensor<4x3xf32>) -> tensor<4x3x5xf32> {
  %0 = stablehlo.dot_general %a, %g, batching_dims = [0, 1] x [0, 1], contracting_dims = [] x [] : (tensor<4x3x5xf32>, tensor<4x3xf32>) -> tensor<4x3x5xf32>
  return %0 : tensor<4x3x5xf32>
}

// -----

// CHECK-LABEL: func @reduce
func.func @reduce(%a: tensor<4x8xf32>) -> tensor<4xf32> {
  // CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]
  // CHECK: arith.maximumf
  %init = stablehlo.constant dense<0xFF800000> : tensor<f32>
  %0 = stablehlo.reduce(%a init: %init) applies stablehlo.maximum across dimensions = [1] : (tensor<4x8xf32>, tensor<f32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

// CHECK-LABEL: func @shapes
func.func @shapes(%a: tensor<4x8xf32>, %i: tensor<i32>) -> (tensor<32xf32>, tensor<2x8xf32>, tensor<1x8xf32>) {
  // CHECK: tensor.collapse_shape
  %0 = stablehlo.reshape %a : (tensor<4x8xf32>) -> tensor<32xf32>
  // CHECK: tensor.extract_slice %{{.*}}[1, 0] [2, 8] [2, 1]
  %1 = stablehlo.slice %a [1:4:2, 0:8] : (tensor<4x8xf32>) -> tensor<2x8xf32>
  // Start indices are clamped into [0, dim - size].
  // CHECK: arith.maxsi
  // CHECK: arith.minsi
  // CHECK: tensor.extract_slice
  %2 = stablehlo.dynamic_slice %a, %i, %i, sizes = [1, 8] : (tensor<4x8xf32>, tensor<i32>, tensor<i32>) -> tensor<1x8xf32>
  return %0, %1, %2 : tensor<32xf32>, tensor<2x8xf32>, tensor<1x8xf32>
}

// -----

// CHECK-LABEL: func @scatter_add
func.func @scatter_add(%a: tensor<8x4xf32>, %idx: tensor<3x1xi32>, %u: tensor<3x4xf32>) -> tensor<8x4xf32> {
  // Updates apply in index order (deterministic), out-of-range ones skipped.
  // CHECK: scf.for
  // CHECK: scf.for
  // CHECK: scf.if
  // CHECK: arith.addf
  // CHECK: tensor.insert
  %0 = "stablehlo.scatter"(%a, %idx, %u) <{scatter_dimension_numbers = #stablehlo.scatter<update_window_dims = [1], inserted_window_dims = [0], scatter_dims_to_operand_dims = [0], index_vector_dim = 1>}> ({
  ^bb0(%x: tensor<f32>, %y: tensor<f32>):
    %s = stablehlo.add %x, %y : tensor<f32>
    stablehlo.return %s : tensor<f32>
  }) : (tensor<8x4xf32>, tensor<3x1xi32>, tensor<3x4xf32>) -> tensor<8x4xf32>
  return %0 : tensor<8x4xf32>
}

// -----

// CHECK-LABEL: func @top_k_and_ragged_dot
func.func @top_k_and_ragged_dot(%p: tensor<8x4xf32>, %x: tensor<16x8xf32>, %w: tensor<4x8x6xf32>, %s: tensor<4xi32>) -> (tensor<8x2xf32>, tensor<8x2xi32>, tensor<16x6xf32>) {
  // CHECK: moe.topk %{{.*}} k = 2 : (tensor<8x4xf32>) -> (tensor<8x2xf32>, tensor<8x2xi32>)
  %v, %i = chlo.top_k(%p, k = 2) : tensor<8x4xf32> -> (tensor<8x2xf32>, tensor<8x2xi32>)
  // rhs [g, k, n] goes to the moe weight layout [g, n, k]; sizes to offsets.
  // CHECK: linalg.transpose
  // CHECK: moe.grouped_matmul %{{.*}}, %{{.*}}, %{{.*}} : (tensor<16x8xf32>, tensor<4x6x8xf32>, tensor<5xi32>) -> tensor<16x6xf32>
  %r = "chlo.ragged_dot"(%x, %w, %s) {ragged_dot_dimension_numbers = #chlo.ragged_dot<lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [1], lhs_ragged_dimensions = [0], rhs_group_dimensions = [0]>} : (tensor<16x8xf32>, tensor<4x8x6xf32>, tensor<4xi32>) -> tensor<16x6xf32>
  return %v, %i, %r : tensor<8x2xf32>, tensor<8x2xi32>, tensor<16x6xf32>
}

// -----

// CHECK-LABEL: func @sort
func.func @sort(%k: tensor<16xi32>) -> tensor<16xi32> {
  // Positions by counting, inverted, then read: no data-dependent loops.
  // CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]
  // CHECK: arith.cmpi slt
  // CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "reduction"]
  // CHECK: linalg.generic
  // CHECK: tensor.extract
  // CHECK-NOT: scf.
  %iota = stablehlo.iota dim = 0 : tensor<16xi32>
  %0:2 = "stablehlo.sort"(%k, %iota) <{dimension = 0 : i64, is_stable = true}> ({
  ^bb0(%a: tensor<i32>, %b: tensor<i32>, %c: tensor<i32>, %d: tensor<i32>):
    %lt = stablehlo.compare LT, %a, %b, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  }) : (tensor<16xi32>, tensor<16xi32>) -> (tensor<16xi32>, tensor<16xi32>)
  return %0#1 : tensor<16xi32>
}

// -----

func.func @dynamic_shape(%a: tensor<?x8xf32>) -> tensor<?x8xf32> {
  // expected-error @+1 {{'stablehlo.exponential' operand 0 has the dynamic shape 'tensor<?x8xf32>'; only static shapes are supported}}
  %0 = stablehlo.exponential %a : tensor<?x8xf32>
  return %0 : tensor<?x8xf32>
}

// -----

// jax.export shape polymorphism reads a symbolic size: refused with the
// dynamic-shape error, not as an unknown op.
func.func @dimension_size_dynamic(%a: tensor<?x8xf32>) -> tensor<i32> {
  // expected-error @+1 {{'stablehlo.get_dimension_size' operand 0 has the dynamic shape 'tensor<?x8xf32>'; only static shapes are supported}}
  %0 = stablehlo.get_dimension_size %a, dim = 0 : (tensor<?x8xf32>) -> tensor<i32>
  return %0 : tensor<i32>
}

// -----

// A static size is a constant.
// CHECK-LABEL: func @dimension_size_static
// CHECK: %[[C:.*]] = arith.constant dense<16> : tensor<i32>
// CHECK: return %[[C]]
func.func @dimension_size_static(%a: tensor<16x8xf32>) -> tensor<i32> {
  %0 = stablehlo.get_dimension_size %a, dim = 0 : (tensor<16x8xf32>) -> tensor<i32>
  return %0 : tensor<i32>
}

// -----

func.func @unknown_custom_call(%a: tensor<4xf32>) -> tensor<4xf32> {
  // expected-error @+1 {{custom_call @tpu_custom_call is not supported}}
  %0 = stablehlo.custom_call @tpu_custom_call(%a) {backend_config = "opaque"} : (tensor<4xf32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

func.func @body_op_unsupported(%a: tensor<4x8xf32>) -> tensor<4xf32> {
  %init = stablehlo.constant dense<0.0> : tensor<f32>
  %0 = "stablehlo.reduce"(%a, %init) <{dimensions = array<i64: 1>}> ({
  ^bb0(%x: tensor<f32>, %y: tensor<f32>):
    // expected-error @+1 {{'stablehlo.iota' is not supported inside a reducer, comparator or scatter body}}
    %i = stablehlo.iota dim = 0 : tensor<1xf32>
    %s = stablehlo.add %x, %y : tensor<f32>
    stablehlo.return %s : tensor<f32>
  }) : (tensor<4x8xf32>, tensor<f32>) -> tensor<4xf32>
  return %0 : tensor<4xf32>
}

// -----

// A comparator may use a splat constant defined outside it (CSE shares the
// function's constants with the bodies they dominate), as JAX's float
// comparator does after CSE; TOTALORDER compares integer keys.
// CHECK-LABEL: func @comparator_outer_constant
// CHECK: arith.bitcast {{.*}} : f32 to i32
// CHECK: arith.cmpi slt
func.func @comparator_outer_constant(%a: tensor<8xf32>) -> tensor<8xf32> {
  %zero = stablehlo.constant dense<0.0> : tensor<f32>
  %0 = "stablehlo.sort"(%a) <{dimension = 0 : i64, is_stable = true}> ({
  ^bb0(%x: tensor<f32>, %y: tensor<f32>):
    %eq = stablehlo.compare EQ, %x, %zero, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    %cx = stablehlo.select %eq, %zero, %x : tensor<i1>, tensor<f32>
    %lt = stablehlo.compare LT, %cx, %y, TOTALORDER : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  }) : (tensor<8xf32>) -> tensor<8xf32>
  return %0 : tensor<8xf32>
}

// -----

func.func @comparator_outer_value(%a: tensor<8xf32>, %t: tensor<f32>) -> tensor<8xf32> {
  %0 = "stablehlo.sort"(%a) <{dimension = 0 : i64, is_stable = true}> ({
  ^bb0(%x: tensor<f32>, %y: tensor<f32>):
    // expected-error @+1 {{a reducer, comparator or scatter body may use only its arguments, values it computes and splat constants}}
    %lt = stablehlo.compare LT, %x, %t, FLOAT : (tensor<f32>, tensor<f32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  }) : (tensor<8xf32>) -> tensor<8xf32>
  return %0 : tensor<8xf32>
}

// -----

func.func @negative_padding(%a: tensor<4xf32>, %v: tensor<f32>) -> tensor<3xf32> {
  // expected-error @+1 {{negative padding (cropping) is not supported; slice first}}
  %0 = stablehlo.pad %a, %v, low = [-1], high = [0], interior = [0] : (tensor<4xf32>, tensor<f32>) -> tensor<3xf32>
  return %0 : tensor<3xf32>
}

// -----

// A loop: scf.while, its 0-d counter carried as an i32 scalar (compare and
// add as arith on the host), the other values as tensors.
// CHECK-LABEL: func @while_loop
// CHECK: %[[R:.*]]:2 = scf.while (%[[I:.*]] = %{{.*}}, %[[H:.*]] = %{{.*}}) : (i32, tensor<4xf32>) -> (i32, tensor<4xf32>)
// CHECK: %[[LT:.*]] = arith.cmpi slt, %[[I]], %{{.*}} : i32
// CHECK: scf.condition(%[[LT]]) %[[I]], %[[H]] : i32, tensor<4xf32>
// CHECK: } do {
// CHECK: ^bb0(%[[J:.*]]: i32, %[[G:.*]]: tensor<4xf32>):
// CHECK: %[[NEXT:.*]] = arith.addi %[[J]], %{{.*}} : i32
// CHECK: %[[D:.*]] = linalg.generic
// CHECK: scf.yield %[[NEXT]], %[[D]] : i32, tensor<4xf32>
// CHECK: return %[[R]]#1
func.func @while_loop(%x: tensor<4xf32>) -> tensor<4xf32> {
  %c0 = stablehlo.constant dense<0> : tensor<i32>
  %c1 = stablehlo.constant dense<1> : tensor<i32>
  %c3 = stablehlo.constant dense<3> : tensor<i32>
  %r:2 = stablehlo.while(%i = %c0, %h = %x) : tensor<i32>, tensor<4xf32>
  cond {
    %lt = stablehlo.compare LT, %i, %c3, SIGNED : (tensor<i32>, tensor<i32>) -> tensor<i1>
    stablehlo.return %lt : tensor<i1>
  } do {
    %next = stablehlo.add %i, %c1 : tensor<i32>
    %d = stablehlo.add %h, %h : tensor<4xf32>
    stablehlo.return %next, %d : tensor<i32>, tensor<4xf32>
  }
  return %r#1 : tensor<4xf32>
}

// -----

// stablehlo.case: an index outside the branches runs the last one.
// CHECK-LABEL: func @case_branches
// CHECK: %[[I:.*]] = tensor.extract %arg0[] : tensor<i32>
// CHECK: %[[OUT:.*]] = arith.ori
// CHECK: %[[SEL:.*]] = arith.select %[[OUT]], %{{.*}}, %[[I]] : i32
// CHECK: %[[IDX:.*]] = arith.index_cast %[[SEL]] : i32 to index
// CHECK: scf.index_switch %[[IDX]] -> tensor<4xf32>
// CHECK: case 0 {
// CHECK: scf.yield %arg1 : tensor<4xf32>
// CHECK: case 1 {
// CHECK: linalg.generic
// CHECK: default {
// CHECK: scf.yield %arg2 : tensor<4xf32>
func.func @case_branches(%i: tensor<i32>, %a: tensor<4xf32>, %b: tensor<4xf32>) -> tensor<4xf32> {
  %r = "stablehlo.case"(%i) ({
    stablehlo.return %a : tensor<4xf32>
  }, {
    %d = stablehlo.add %a, %b : tensor<4xf32>
    stablehlo.return %d : tensor<4xf32>
  }, {
    stablehlo.return %b : tensor<4xf32>
  }) : (tensor<i32>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

// CHECK-LABEL: func @if_branches
// CHECK: %[[P:.*]] = tensor.extract %arg0[] : tensor<i1>
// CHECK: scf.if %[[P]] -> (tensor<4xf32>) {
// CHECK: scf.yield %arg1
// CHECK: } else {
// CHECK: scf.yield %arg2
func.func @if_branches(%p: tensor<i1>, %a: tensor<4xf32>, %b: tensor<4xf32>) -> tensor<4xf32> {
  %r = "stablehlo.if"(%p) ({
    stablehlo.return %a : tensor<4xf32>
  }, {
    stablehlo.return %b : tensor<4xf32>
  }) : (tensor<i1>) -> tensor<4xf32>
  return %r : tensor<4xf32>
}

// -----

// Shifts by the bit width or more shift everything out (arith alone would
// leave them undefined).
// CHECK-LABEL: func @shifts
// CHECK: arith.cmpi uge
// CHECK: arith.shli
// CHECK: arith.select
// CHECK: arith.cmpi uge
// CHECK: arith.select
// CHECK: arith.shrsi
// CHECK: math.ctpop
func.func @shifts(%a: tensor<4xi32>, %s: tensor<4xi32>) -> (tensor<4xi32>, tensor<4xi32>, tensor<4xi32>) {
  %l = stablehlo.shift_left %a, %s : tensor<4xi32>
  %r = stablehlo.shift_right_arithmetic %a, %s : tensor<4xi32>
  %c = stablehlo.popcnt %a : tensor<4xi32>
  return %l, %r, %c : tensor<4xi32>, tensor<4xi32>, tensor<4xi32>
}

// -----

// Unsigned integers are refused with a located error (the pass fails).
func.func @unsigned_refused(%a: tensor<4xui32>) -> tensor<4xui32> {
  // expected-error @+1 {{'stablehlo.popcnt' uses the unsigned integer type 'tensor<4xui32>'; only signed integers, floats and booleans are supported}}
  %c = stablehlo.popcnt %a : tensor<4xui32>
  return %c : tensor<4xui32>
}
