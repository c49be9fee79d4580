// RUN: moe-opt %s --moe-tensor-core-gemm | FileCheck %s

// A marked generic whose row experts no marked scan wrote (the offsets are
// unknown) is left as it is: it still computes the right result, one thread
// per element.
// CHECK-LABEL: func.func @no_row_experts_scan
// CHECK-NOT: gpu.launch
// CHECK: linalg.generic {{.*}} attrs = {moe.grouped_gemm}
#lhs = affine_map<(r, n, k) -> (r, k)>
#row = affine_map<(r, n, k) -> (r)>
#out = affine_map<(r, n, k) -> (r, n)>
func.func @no_row_experts_scan(%x: memref<8x16xbf16>, %experts: memref<8xi32>, %w: memref<2x4x16xbf16>,
                               %out: memref<8x4xf32>) {
  linalg.generic {indexing_maps = [#lhs, #row, #out], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%x, %experts : memref<8x16xbf16>, memref<8xi32>) outs(%out : memref<8x4xf32>) attrs = {moe.grouped_gemm} {
  ^bb0(%a: bf16, %e: i32, %acc: f32):
    %n = linalg.index 1 : index
    %k = linalg.index 2 : index
    %ei = arith.index_cast %e : i32 to index
    %wv = memref.load %w[%ei, %n, %k] : memref<2x4x16xbf16>
    %wf = arith.extf %wv : bf16 to f32
    %af = arith.extf %a : bf16 to f32
    %p = arith.mulf %af, %wf : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}
