// The dialect's discardable attributes (the CPU lowering's contract with the
// GPU passes) sit only where the GPU passes read them.
// RUN: moe-opt %s -split-input-file -verify-diagnostics | FileCheck %s

// Each attribute where it belongs verifies.
// CHECK-LABEL: func.func @valid_places
// CHECK: } {moe.parallel}
// CHECK: attrs = {moe.row_experts}
// CHECK: attrs = {moe.grouped_gemm}
// CHECK: attrs = {moe.row_scale}
// CHECK: call @host() {moe.host_call}
func.func private @host()
func.func @valid_places(%a: tensor<4x8xf32>, %w: tensor<4xf32>, %e: tensor<4xi32>) -> tensor<4x8xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  scf.for %i = %c0 to %c4 step %c1 {
  } {moe.parallel}
  %experts = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      outs(%e : tensor<4xi32>) attrs = {moe.row_experts} {
  ^bb0(%out: i32):
    linalg.yield %out : i32
  } -> tensor<4xi32>
  %gemm = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0, d1)>],
                          iterator_types = ["parallel", "parallel"]}
      ins(%a, %experts : tensor<4x8xf32>, tensor<4xi32>) outs(%a : tensor<4x8xf32>) attrs = {moe.grouped_gemm} {
  ^bb0(%x: f32, %id: i32, %out: f32):
    linalg.yield %x : f32
  } -> tensor<4x8xf32>
  %scaled = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0, d1)>],
                            iterator_types = ["parallel", "parallel"]}
      ins(%gemm, %w : tensor<4x8xf32>, tensor<4xf32>) outs(%a : tensor<4x8xf32>) attrs = {moe.row_scale} {
  ^bb0(%x: f32, %s: f32, %out: f32):
    %m = arith.mulf %x, %s : f32
    linalg.yield %m : f32
  } -> tensor<4x8xf32>
  func.call @host() {moe.host_call} : () -> ()
  return %scaled : tensor<4x8xf32>
}
// CHECK: func.func private @shared() attributes {moe.shared_layer}
func.func private @shared() attributes {moe.shared_layer} {
  return
}

// -----

func.func @unknown_attribute() {
  // expected-error @+1 {{'func.return' op has unknown moe attribute 'moe.parallelize'}}
  return {moe.parallelize}
}

// -----

func.func @not_unit(%n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  // expected-error @+1 {{'scf.for' op 'moe.parallel' must be a unit attribute}}
  scf.for %i = %c0 to %n step %c1 {
  } {moe.parallel = 1 : i64}
  return
}

// -----

func.func @parallel_on_while() {
  // expected-error @+1 {{'scf.execute_region' op cannot carry 'moe.parallel': it marks an scf.for}}
  scf.execute_region {
    scf.yield
  } {moe.parallel}
  return
}

// -----

func.func @grouped_gemm_one_input(%a: tensor<4x8xf32>) -> tensor<4x8xf32> {
  // expected-error @+1 {{'linalg.generic' op with 'moe.grouped_gemm' must have 2 inputs and 1 output}}
  %r = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>],
                       iterator_types = ["parallel", "parallel"]}
      ins(%a : tensor<4x8xf32>) outs(%a : tensor<4x8xf32>) attrs = {moe.grouped_gemm} {
  ^bb0(%x: f32, %out: f32):
    linalg.yield %x : f32
  } -> tensor<4x8xf32>
  return %r : tensor<4x8xf32>
}

// -----

func.func @row_scale_on_matmul(%a: tensor<4x4xf32>) -> tensor<4x4xf32> {
  // expected-error @+1 {{'linalg.matmul' op cannot carry 'moe.row_scale': it marks a linalg.generic}}
  %r = linalg.matmul {moe.row_scale} ins(%a, %a : tensor<4x4xf32>, tensor<4x4xf32>) outs(%a : tensor<4x4xf32>) -> tensor<4x4xf32>
  return %r : tensor<4x4xf32>
}

// -----

func.func @row_experts_two_outputs(%e: tensor<4xi32>) -> (tensor<4xi32>, tensor<4xi32>) {
  // expected-error @+1 {{'linalg.generic' op with 'moe.row_experts' must have 1 output}}
  %r:2 = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
      outs(%e, %e : tensor<4xi32>, tensor<4xi32>) attrs = {moe.row_experts} {
  ^bb0(%a: i32, %b: i32):
    linalg.yield %a, %b : i32, i32
  } -> (tensor<4xi32>, tensor<4xi32>)
  return %r#0, %r#1 : tensor<4xi32>, tensor<4xi32>
}

// -----

func.func @host_call_on_return() {
  // expected-error @+1 {{'func.return' op cannot carry 'moe.host_call': it marks a func.call or llvm.call}}
  return {moe.host_call}
}

// -----

func.func @shared_layer_on_return() {
  // expected-error @+1 {{'func.return' op cannot carry 'moe.shared_layer': it marks a func.func or llvm.func}}
  return {moe.shared_layer}
}
