// convert-moe-to-linalg{bf16-dot-products}: bf16 x bf16 contractions take
// AVX512_BF16 dot products (x86vector.avx512.dot: 32 bf16 values of a row
// and of a weight row per step, two products per f32 lane, no widening);
// f32 contractions, mixed element types and 256-bit kernels keep vector.fma.
// Numbers: test/Numerical (tile_edges.py bf16_odd, shapes.py) on a CPU with
// AVX512_BF16.
// RUN: moe-opt %s --convert-moe-to-linalg=bf16-dot-products=true --split-input-file | FileCheck %s
// RUN: moe-opt %s --convert-moe-to-linalg="bf16-dot-products=true vector-bits=256" --split-input-file \
// RUN:   | FileCheck %s --check-prefix=V256

// K = 64: two whole steps of 32 values.
// CHECK-LABEL: func @router_bf16
// CHECK: scf.for {{.*}} step %c32
// CHECK: vector.transfer_read {{.*}} {in_bounds = [true]} : tensor<?x64xbf16>, vector<32xbf16>
// CHECK-NOT: arith.extf
// CHECK: x86vector.avx512.dot {{.*}} : vector<32xbf16> -> vector<16xf32>
// CHECK-NOT: vector.fma
// CHECK: vector.reduction <add>, {{.*}} : vector<16xf32> into f32
// V256-LABEL: func @router_bf16
// V256-NOT: x86vector
// V256: vector.fma {{.*}} : vector<8xf32>
func.func @router_bf16(%x: tensor<?x64xbf16>, %w: tensor<8x64xbf16>) -> tensor<?x8xf32> {
  %z = moe.router %x, %w : (tensor<?x64xbf16>, tensor<8x64xbf16>) -> tensor<?x8xf32>
  return %z : tensor<?x8xf32>
}

// -----

// K = 40: one whole step, then a masked partial one of 32 (padding 0).
// CHECK-LABEL: func @grouped_matmul_bf16_odd_k
// CHECK: vector.transfer_read {{.*}} {in_bounds = [true]} : tensor<32x40xbf16>, vector<32xbf16>
// CHECK: x86vector.avx512.dot
// CHECK: vector.transfer_read {{.*}}, %{{[[:alnum:]_]+}} : tensor<32x40xbf16>, vector<32xbf16>
// CHECK: x86vector.avx512.dot
func.func @grouped_matmul_bf16_odd_k(%x: tensor<32x40xbf16>, %w: tensor<4x16x40xbf16>, %o: tensor<5xi32>) -> tensor<32x16xbf16> {
  %h = moe.grouped_matmul %x, %w, %o : (tensor<32x40xbf16>, tensor<4x16x40xbf16>, tensor<5xi32>) -> tensor<32x16xbf16>
  return %h : tensor<32x16xbf16>
}

// -----

// f32 keeps vector.fma.
// CHECK-LABEL: func @router_f32
// CHECK-NOT: x86vector
// CHECK: vector.fma {{.*}} : vector<16xf32>
func.func @router_f32(%x: tensor<?x64xf32>, %w: tensor<8x64xf32>) -> tensor<?x8xf32> {
  %z = moe.router %x, %w : (tensor<?x64xf32>, tensor<8x64xf32>) -> tensor<?x8xf32>
  return %z : tensor<?x8xf32>
}

// -----

// bf16 tokens with an f32 router (mixed precision) widen as before.
// CHECK-LABEL: func @router_mixed
// CHECK-NOT: x86vector
// CHECK: arith.extf {{.*}} : vector<16xbf16> to vector<16xf32>
// CHECK: vector.fma {{.*}} : vector<16xf32>
func.func @router_mixed(%x: tensor<?x64xbf16>, %w: tensor<8x64xf32>) -> tensor<?x8xf32> {
  %z = moe.router %x, %w : (tensor<?x64xbf16>, tensor<8x64xf32>) -> tensor<?x8xf32>
  return %z : tensor<?x8xf32>
}
