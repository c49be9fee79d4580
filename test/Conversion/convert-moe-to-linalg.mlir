// RUN: moe-opt %s --convert-moe-to-linalg --split-input-file | FileCheck %s
// RUN: moe-opt %s --convert-moe-to-linalg=parallel-contractions --split-input-file \
// RUN:   | FileCheck %s --check-prefix=PAR
// RUN: moe-opt %s --convert-moe-to-linalg=vector-bits=256 --split-input-file | FileCheck %s --check-prefix=V256
// RUN: moe-opt %s --convert-moe-to-linalg=device-exchanges --split-input-file | FileCheck %s --check-prefix=DEV
// Each moe op lowers to upstream ops only; numerics are checked in test/Numerical.

// Contractions: parallel blocks of 64 rows x a column panel; register tiles
// of 4 x 6 outputs whose vector accumulators take vector.fma along k (16
// lanes with 512-bit vectors; 3 x 4 tiles of 8 lanes with 256-bit ones),
// summed across the lanes at the end. K = 64 is whole vectors: no masked read.
// CHECK-LABEL: func @router
// Parallel form (the GPU's): one generic, m and n parallel, k a reduction.
// PAR-LABEL: func @router
// PAR-NOT: scf.for
// PAR: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction"]
// PAR-NOT: scf.for
// PAR: return
// CHECK: scf.for {{.*}} step %c64
// CHECK: scf.for {{.*}} step %c4
// CHECK: scf.for {{.*}} step %c6
// CHECK: vector.transfer_read {{.*}} {in_bounds = [true]} : tensor<?x64xbf16>, vector<16xbf16>
// CHECK: arith.extf {{.*}} : vector<16xbf16> to vector<16xf32>
// CHECK: vector.fma {{.*}} : vector<16xf32>
// CHECK-NOT: {{%cst[_0-9]*}} : tensor<?x64xbf16>, vector<16xbf16>
// CHECK: vector.reduction <add>, {{.*}} fastmath<reassoc> : vector<16xf32> into f32
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
// V256-LABEL: func @router
// V256: scf.for {{.*}} step %c3
// V256: scf.for {{.*}} step %c4
// V256: vector.fma {{.*}} : vector<8xf32>
// V256: vector.reduction <add>, {{.*}} : vector<8xf32> into f32
func.func @router(%x: tensor<?x64xbf16>, %w: tensor<8x64xbf16>) -> tensor<?x8xf32> {
  %z = moe.router %x, %w : (tensor<?x64xbf16>, tensor<8x64xbf16>) -> tensor<?x8xf32>
  return %z : tensor<?x8xf32>
}

// -----

// K = 20: one whole vector, then a masked partial one (no in_bounds: padding 0).
// CHECK-LABEL: func @router_odd_k
// CHECK: vector.transfer_read {{.*}} {in_bounds = [true]} : tensor<4x20xf32>, vector<16xf32>
// CHECK: vector.transfer_read %arg0[{{.*}}], %{{[a-z_0-9]+}} : tensor<4x20xf32>, vector<16xf32>
func.func @router_odd_k(%x: tensor<4x20xf32>, %w: tensor<8x20xf32>) -> tensor<4x8xf32> {
  %z = moe.router %x, %w : (tensor<4x20xf32>, tensor<8x20xf32>) -> tensor<4x8xf32>
  return %z : tensor<4x8xf32>
}

// -----

// CHECK-LABEL: func @router_two_layers
// CHECK: math.tanh
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @router_two_layers(%x: tensor<4x16xf32>, %w: tensor<8x32xf32>, %h: tensor<32x16xf32>) -> tensor<4x8xf32> {
  %z = moe.router %x, %w hidden(%h) : (tensor<4x16xf32>, tensor<8x32xf32>, tensor<32x16xf32>) -> tensor<4x8xf32>
  return %z : tensor<4x8xf32>
}

// -----

// CHECK-LABEL: func @gating_residual
// CHECK: scf.for
// CHECK: arith.addf {{.*}} : tensor<4x8xf32>
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @gating_residual(%z: tensor<4x8xf32>, %p: tensor<4x8xf32>, %g: tensor<8x8xf32>) -> tensor<4x8xf32> {
  %r = moe.gating_residual %z, %p, %g : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
  return %r : tensor<4x8xf32>
}

// -----

// Softmax: row max (NaN read as -inf), count of +inf, sum of exp, then the select chain.
// CHECK-LABEL: func @score_softmax
// CHECK: arith.maximumf
// CHECK: math.exp
// CHECK: arith.select
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @score_softmax(%z: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %s = moe.score softmax %z : tensor<4x8xf32> -> tensor<4x8xf32>
  return %s : tensor<4x8xf32>
}

// -----

// Gumbel noise: splitmix64 on i64 inside a loop over the samples.
// CHECK-LABEL: func @score_gumbel
// CHECK: scf.for
// CHECK: arith.shrui
// CHECK: math.log
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @score_gumbel(%z: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %s = moe.score gumbel_softmax %z {tau = 0.5 : f64, samples = 4 : i64, seed = 1 : i64} : tensor<4x8xf32> -> tensor<4x8xf32>
  return %s : tensor<4x8xf32>
}

// -----

// Top-k: a loop over tokens, k picks, a scan over experts.
// CHECK-LABEL: func @topk_grouped
// The token loop is marked independent for moe-parallelize-loops.
// PAR-LABEL: func @topk_grouped
// PAR: } {moe.parallel}
// CHECK: scf.for
// CHECK: scf.for
// CHECK: tensor.insert
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @topk_grouped(%s: tensor<?x16xf32>, %b: tensor<16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>) {
  %w, %i = moe.topk %s bias(%b) k = 4 {num_groups = 4 : i64, topk_groups = 2 : i64}
    : (tensor<?x16xf32>, tensor<16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>)
  return %w, %i : tensor<?x4xf32>, tensor<?x4xi32>
}

// -----

// CHECK-LABEL: func @threshold
// CHECK: arith.cmpf ogt
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @threshold(%s: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xi32>) {
  %w, %i = moe.threshold %s max_k = 8 : (tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xi32>)
  return %w, %i : tensor<4x8xf32>, tensor<4x8xi32>
}

// -----

// CHECK-LABEL: func @expert_choice
// CHECK: scf.if
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @expert_choice(%s: tensor<8x4xf32>) -> (tensor<8x2xf32>, tensor<8x2xi32>) {
  %w, %i = moe.expert_choice %s capacity = 3 {token_k = 2 : i64} : (tensor<8x4xf32>) -> (tensor<8x2xf32>, tensor<8x2xi32>)
  return %w, %i : tensor<8x2xf32>, tensor<8x2xi32>
}

// -----

// CHECK-LABEL: func @renormalize
// CHECK: arith.cmpi ne
// CHECK: arith.divf
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @renormalize(%w: tensor<4x2xf32>, %i: tensor<4x2xi32>) -> tensor<4x2xf32> {
  %r = moe.renormalize sum %w, %i {skip = array<i64: 7>, scale = 2.0 : f64} : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x2xf32>
  return %r : tensor<4x2xf32>
}

// -----

// Capacity: ceil(T * k / E * factor) at run time, then the slot loops.
// CHECK-LABEL: func @dispatch_capacity
// CHECK: math.ceil
// CHECK: scf.for
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @dispatch_capacity(%i: tensor<?x2xi32>, %w: tensor<?x2xf32>) -> (tensor<?xi32>, tensor<9xi32>, tensor<?x2xi32>, tensor<?x2xf32>) {
  %r, %o, %sr, %sw = moe.dispatch %i, %w experts = 8 {capacity = #moe.capacity<factor = 1.25, pad = true>}
    : (tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<?xi32>, tensor<9xi32>, tensor<?x2xi32>, tensor<?x2xf32>)
  return %r, %o, %sr, %sw : tensor<?xi32>, tensor<9xi32>, tensor<?x2xi32>, tensor<?x2xf32>
}

// -----

// Permute is a gather; combine a reduction over the slots.
// CHECK-LABEL: func @permute_combine
// CHECK: linalg.generic
// CHECK: tensor.extract
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction"]
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @permute_combine(%x: tensor<16x8xbf16>, %rows: tensor<32xi32>, %sr: tensor<16x2xi32>, %sw: tensor<16x2xf32>) -> tensor<16x8xbf16> {
  %xs = moe.permute %x, %rows : (tensor<16x8xbf16>, tensor<32xi32>) -> tensor<32x8xbf16>
  %y = moe.combine %xs, %sr, %sw : (tensor<32x8xbf16>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x8xbf16>
  return %y : tensor<16x8xbf16>
}

// -----

// One tiled kernel over (column panel, expert) pairs, each writing its
// expert's rows of the result in place (no per-expert result to copy).
// CHECK-LABEL: func @grouped_matmul
// Parallel form: each row's expert from the offsets, then one generic over
// (row, column, k) reading that expert's weights.
// PAR-LABEL: func @grouped_matmul
// PAR: linalg.generic {{.*}}iterator_types = ["parallel"]
// PAR: scf.for
// PAR: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction"]
// PAR: tensor.extract
// CHECK: scf.for {{.*}} step %c{{[0-9]+}} iter_args
// CHECK: scf.for {{.*}} step %c1{{[_0-9]*}} iter_args
// CHECK: tensor.extract_slice %{{.*}}[%{{.*}}, 0, 0] [1, 16, 8] [1, 1, 1] : tensor<4x16x8xbf16> to tensor<16x8xbf16>
// CHECK: scf.for {{.*}} step %c64 iter_args
// CHECK: vector.fma
// CHECK-NOT: tensor.insert_slice
// CHECK: } {moe.parallel}
// CHECK: } {moe.parallel}
// CHECK: arith.truncf {{.*}} f32 to bf16
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @grouped_matmul(%x: tensor<32x8xbf16>, %w: tensor<4x16x8xbf16>, %o: tensor<5xi32>) -> tensor<32x16xbf16> {
  %h = moe.grouped_matmul %x, %w, %o : (tensor<32x8xbf16>, tensor<4x16x8xbf16>, tensor<5xi32>) -> tensor<32x16xbf16>
  return %h : tensor<32x16xbf16>
}

// -----

// CHECK-LABEL: func @activation_geglu
// CHECK: tensor.extract_slice {{.*}}[0, 0] [32, 8]
// CHECK: tensor.extract_slice {{.*}}[0, 8] [32, 8]
// CHECK: math.erf
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @activation_geglu(%h: tensor<32x16xf32>) -> tensor<32x8xf32> {
  %a = moe.activation geglu %h : tensor<32x16xf32> -> tensor<32x8xf32>
  return %a : tensor<32x8xf32>
}

// -----

// CHECK-LABEL: func @activation_geglu_tanh
// CHECK: tensor.extract_slice {{.*}}[0, 0] [32, 8]
// CHECK: tensor.extract_slice {{.*}}[0, 8] [32, 8]
// CHECK: math.tanh
// CHECK-NOT: math.erf
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @activation_geglu_tanh(%h: tensor<32x16xf32>) -> tensor<32x8xf32> {
  %a = moe.activation geglu_tanh %h : tensor<32x16xf32> -> tensor<32x8xf32>
  return %a : tensor<32x8xf32>
}

// -----

// CHECK-LABEL: func @zero_compute
// CHECK: arith.constant dense<[0, 0, 3, 2, 1]> : tensor<5xi32>
// CHECK: tensor.collapse_shape
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @zero_compute(%x: tensor<4x8xf32>, %i: tensor<4x2xi32>, %w: tensor<4x2xf32>, %v: tensor<1x8xf32>, %m: tensor<1x2x8xf32>) -> tensor<4x8xf32> {
  %zc = moe.zero_compute %x, %i, %w constant(%v, %m) experts = [#moe.group<ffn, 2>, #moe.group<constant, 1>, #moe.group<copy, 1>, #moe.group<zero, 1>]
    : (tensor<4x8xf32>, tensor<4x2xi32>, tensor<4x2xf32>, tensor<1x8xf32>, tensor<1x2x8xf32>) -> tensor<4x8xf32>
  return %zc : tensor<4x8xf32>
}

// -----

// CHECK-LABEL: func @dense_ffn_gated
// CHECK: math.exp
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @dense_ffn_gated(%x: tensor<4x8xf32>, %u: tensor<16x8xf32>, %d: tensor<8x8xf32>, %g: tensor<1x8xf32>) -> tensor<4x8xf32> {
  %s = moe.dense_ffn swiglu %x, %u, %d gate(%g) : (tensor<4x8xf32>, tensor<16x8xf32>, tensor<8x8xf32>, tensor<1x8xf32>) -> tensor<4x8xf32>
  return %s : tensor<4x8xf32>
}

// -----

// CHECK-LABEL: func @merge_experts
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "reduction"]
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @merge_experts(%w: tensor<6x4x8xf32>, %g: tensor<2x6xf32>) -> tensor<2x4x8xf32> {
  %m = moe.merge_experts %w, %g : (tensor<6x4x8xf32>, tensor<2x6xf32>) -> tensor<2x4x8xf32>
  return %m : tensor<2x4x8xf32>
}

// -----

// A whole layer is decomposed first, then lowered.
// CHECK-LABEL: func @layer
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
// CHECK: return
func.func @layer(%x: tensor<?x16xf32>, %wr: tensor<4x16xf32>, %up: tensor<4x16x16xf32>, %down: tensor<4x16x8xf32>) -> tensor<?x16xf32> {
  %y, %z = moe.layer %x, %wr ffn(%up, %down) {experts = [#moe.group<ffn, 4>], activation = #moe.activation<swiglu>,
      routing = #moe.routing<scoring = softmax, k = 2>}
    : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x16x16xf32>, tensor<4x16x8xf32>) -> (tensor<?x16xf32>, tensor<?x4xf32>)
  return %y : tensor<?x16xf32>
}

// -----

// Negative: code without moe ops is left alone.
// CHECK-LABEL: func @no_moe
// CHECK-NEXT: arith.addf
// CHECK-NEXT: return
func.func @no_moe(%a: tensor<4xf32>) -> tensor<4xf32> {
  %b = arith.addf %a, %a : tensor<4xf32>
  return %b : tensor<4xf32>
}

// -----

// The fused GEMMs keep the f32 accumulators: the activation and the combine
// read them before the one truncation to bf16.
// CHECK-LABEL: func @fused_gemms
// CHECK: scf.for
// CHECK-NOT: arith.truncf
// CHECK: arith.mulf
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "reduction"]
// CHECK: arith.truncf {{.*}} f32 to bf16
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
// The parallel form (GPU) of the bf16 down GEMM with the combine: each
// slot's weight is scattered to its row (a loop over tokens marked
// parallel), a moe.row_scale generic multiplies the f32 rows by it (for the
// tensor-core epilogue), and the combine sums the scaled rows unweighted.
// PAR-LABEL: func @fused_gemms
// PAR: attrs = {moe.grouped_gemm}
// PAR: attrs = {moe.grouped_gemm}
// PAR: scf.for {{.*}} -> (tensor<32xf32>)
// PAR: tensor.insert %{{.*}} into %{{.*}}[%{{.*}}] : tensor<32xf32>
// PAR: } {moe.parallel}
// PAR: %[[SCALED:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<32x8xf32>, tensor<32xf32>) {{.*}} attrs = {moe.row_scale}
// PAR: linalg.generic {{.*}} ins(%{{.*}} : tensor<16x2xi32>)
// PAR-NOT: arith.mulf
// PAR: arith.truncf {{.*}} f32 to bf16
func.func @fused_gemms(%xs: tensor<32x8xbf16>, %up: tensor<4x32x8xbf16>, %down: tensor<4x8x16xbf16>, %off: tensor<5xi32>,
                       %sr: tensor<16x2xi32>, %sw: tensor<16x2xf32>) -> tensor<16x8xbf16> {
  %a = moe.grouped_matmul_act swiglu %xs, %up, %off : (tensor<32x8xbf16>, tensor<4x32x8xbf16>, tensor<5xi32>) -> tensor<32x16xbf16>
  %y = moe.grouped_matmul_combine %a, %down, %off, %sr, %sw
    : (tensor<32x16xbf16>, tensor<4x8x16xbf16>, tensor<5xi32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x8xbf16>
  return %y : tensor<16x8xbf16>
}

// -----

// f32 operands keep the SIMT GEMM: the combine applies the weights itself
// (an extra scaling pass over the rows would cost a full [R, N] round trip).
// PAR-LABEL: func @combine_f32_weighted
// PAR-NOT: moe.row_scale
// PAR: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<16x2xi32>, tensor<16x2xf32>)
// PAR: arith.mulf
func.func @combine_f32_weighted(%a: tensor<32x16xf32>, %down: tensor<4x8x16xf32>, %off: tensor<5xi32>,
                                %sr: tensor<16x2xi32>, %sw: tensor<16x2xf32>) -> tensor<16x8xf32> {
  %y = moe.grouped_matmul_combine %a, %down, %off, %sr, %sw
    : (tensor<32x16xf32>, tensor<4x8x16xf32>, tensor<5xi32>, tensor<16x2xi32>, tensor<16x2xf32>) -> tensor<16x8xf32>
  return %y : tensor<16x8xf32>
}

// -----

// Grouped routing: a mean per group, then each token reads its group's row.
// CHECK-LABEL: func @group_ops
// CHECK: arith.divf
// CHECK: linalg.generic
// CHECK: arith.divui
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @group_ops(%x: tensor<10x8xf32>, %w: tensor<3x2xf32>) -> (tensor<3x8xf32>, tensor<10x2xf32>) {
  %m = moe.group_mean %x group_size = 4 : tensor<10x8xf32> -> tensor<3x8xf32>
  %e = moe.expand_groups %w to %x group_size = 4 : (tensor<3x2xf32>, tensor<10x8xf32>) -> tensor<10x2xf32>
  return %m, %e : tensor<3x8xf32>, tensor<10x2xf32>
}

// -----

// MEO's gates and composed maps.
// CHECK-LABEL: func @meo_ops
// CHECK: arith.cmpi eq
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel", "reduction"]
// CHECK-NOT: {{moe\.[a-z_]+[ "(]}}
func.func @meo_ops(%w: tensor<4x2xf32>, %i: tensor<4x2xi32>, %down: tensor<8x16x32xbf16>, %up: tensor<8x32x16xbf16>)
    -> (tensor<4x8xf32>, tensor<8x16x16xf32>) {
  %g = moe.dense_gates %w, %i experts = 8 : (tensor<4x2xf32>, tensor<4x2xi32>) -> tensor<4x8xf32>
  %p = moe.compose_experts %down, %up : (tensor<8x16x32xbf16>, tensor<8x32x16xbf16>) -> tensor<8x16x16xf32>
  return %g, %p : tensor<4x8xf32>, tensor<8x16x16xf32>
}

// -----

// Quantised weights read only by grouped matmuls: the CPU form never
// dequantises the whole [4, 16, 32] tensor: with blocks of 8 values, into
// one expert's float copy for 16-lane vectors (expert by expert, only for
// experts with rows: scf.if), in the kernel's loads for 8-lane ones (4
// packed bytes split into 8 values, no copy); the
// parallel form dequantises all of it in one elementwise generic the GEMM
// then reads.
// CHECK-LABEL: func @dequantize_in_grouped_matmul
// CHECK-NOT: moe.dequantize
// CHECK-NOT: tensor<4x16x32xf32>
// CHECK: scf.for
// CHECK: scf.if
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel"]
// CHECK: arith.shrui
// CHECK-NOT: tensor<4x16x32xf32>
// CHECK: return
// V256-LABEL: func @dequantize_in_grouped_matmul
// V256-NOT: linalg.generic
// V256: vector.transfer_read {{.*}} : tensor<4x16x16xi8>, vector<4xi8>
// V256: vector.interleave {{.*}} : vector<4xi8> -> vector<8xi8>
// V256: vector.fma {{.*}} : vector<8xf32>
// V256: return
// PAR-LABEL: func @dequantize_in_grouped_matmul
// PAR: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel"]
// PAR: arith.shrui
// PAR: -> tensor<4x16x32xf32>
// PAR-NOT: moe.dequantize
func.func @dequantize_in_grouped_matmul(%q: tensor<4x16x16xi8>, %s: tensor<4x16x4xf32>, %z: tensor<4x16x4xi8>,
                                        %xs: tensor<?x32xf32>, %off: tensor<5xi32>) -> tensor<?x16xf32> {
  %w = moe.dequantize %q, %s zero_points(%z) {bits = 4, block_size = 8}
      : (tensor<4x16x16xi8>, tensor<4x16x4xf32>, tensor<4x16x4xi8>) -> tensor<4x16x32xf32>
  %h = moe.grouped_matmul %xs, %w, %off : (tensor<?x32xf32>, tensor<4x16x32xf32>, tensor<5xi32>) -> tensor<?x16xf32>
  return %h : tensor<?x16xf32>
}

// -----

// Blocks of whole 16-lane vectors: dequantised in the kernel's loads (8
// packed bytes split into 16 values, centred on the zero point, scaled, and
// rounded to bf16 as the op's result is), no float copy of any expert.
// CHECK-LABEL: func @dequantize_in_kernel
// CHECK-NOT: linalg.generic
// CHECK: vector.transfer_read {{.*}} : tensor<4x16x16xi8>, vector<8xi8>
// CHECK: vector.interleave {{.*}} : vector<8xi8> -> vector<16xi8>
// CHECK: arith.extui {{.*}} : vector<16xi8> to vector<16xi32>
// CHECK: arith.truncf {{.*}} : vector<16xf32> to vector<16xbf16>
// CHECK: vector.fma {{.*}} : vector<16xf32>
// CHECK-NOT: tensor<4x16x32xbf16>
// CHECK: return
func.func @dequantize_in_kernel(%q: tensor<4x16x16xi8>, %s: tensor<4x16x2xf32>, %z: tensor<4x16x2xi8>,
                                %xs: tensor<?x32xbf16>, %off: tensor<5xi32>) -> tensor<?x16xbf16> {
  %w = moe.dequantize %q, %s zero_points(%z) {bits = 4, block_size = 16}
      : (tensor<4x16x16xi8>, tensor<4x16x2xf32>, tensor<4x16x2xi8>) -> tensor<4x16x32xbf16>
  %h = moe.grouped_matmul %xs, %w, %off : (tensor<?x32xbf16>, tensor<4x16x32xbf16>, tensor<5xi32>) -> tensor<?x16xbf16>
  return %h : tensor<?x16xbf16>
}

// -----

// Another user of the float weights: dequantised once, as a whole.
// CHECK-LABEL: func @dequantize_shared_use
// CHECK: linalg.generic {{.*}}iterator_types = ["parallel", "parallel", "parallel"]
// CHECK: -> tensor<4x16x32xf32>
// CHECK-NOT: moe.dequantize
// PAR-LABEL: func @dequantize_shared_use
func.func @dequantize_shared_use(%q: tensor<4x16x32xi8>, %s: tensor<4x16xf32>, %xs: tensor<?x32xf32>,
                                 %off: tensor<5xi32>) -> (tensor<?x16xf32>, tensor<4x16x32xf32>) {
  %w = moe.dequantize %q, %s {bits = 8} : (tensor<4x16x32xi8>, tensor<4x16xf32>) -> tensor<4x16x32xf32>
  %h = moe.grouped_matmul %xs, %w, %off : (tensor<?x32xf32>, tensor<4x16x32xf32>, tensor<5xi32>) -> tensor<?x16xf32>
  return %h, %w : tensor<?x16xf32>, tensor<4x16x32xf32>
}

// -----

// The exchange ops: host calls of the expert-parallel runtime on descriptors
// of the operands' buffers; the counts' sum sizes the received rows. With
// device-exchanges the NCCL entry points on device buffers (moeEpGpu*); the
// rank is MPI's in both.
// CHECK-DAG: func.func private @moeEpRank(i64) -> i64 attributes {llvm.emit_c_interface}
// CHECK-DAG: func.func private @moeEpExchangeCounts(memref<?xi32, strided<[?], offset: ?>>, memref<?xi64, strided<[?], offset: ?>>, i64, memref<?x?xi32, strided<[?, ?], offset: ?>>) -> i64 attributes {llvm.emit_c_interface}
// CHECK-DAG: func.func private @moeEpDispatchRows_bf16(
// CHECK-DAG: func.func private @moeEpReturnRows_f32(
// CHECK-LABEL: func.func @expert_parallel
// CHECK: %[[RANK:.+]] = call @moeEpRank(%{{.+}}) {moe.host_call} : (i64) -> i64
// CHECK: arith.index_cast %[[RANK]] : i64 to index
// CHECK: bufferization.to_buffer %{{.+}} read_only : tensor<32x64xbf16>
// CHECK: %[[COUNTS:.+]] = memref.alloc() : memref<2x4xi32>
// CHECK: %[[TOTAL:.+]] = call @moeEpExchangeCounts({{.*}}) {moe.host_call}
// CHECK: %[[N:.+]] = arith.index_cast %[[TOTAL]] : i64 to index
// CHECK: memref.alloc(%[[N]]) : memref<?x64xbf16>
// CHECK: call @moeEpDispatchRows_bf16({{.*}}) {moe.host_call}
// CHECK: bufferization.to_tensor {{.+}} restrict writable
// CHECK: call @moeEpReturnRows_f32({{.*}}) {moe.host_call}
// DEV-LABEL: func.func @expert_parallel
// DEV: call @moeEpRank(
// DEV: call @moeEpGpuExchangeCounts({{.*}}) {moe.host_call}
// DEV: call @moeEpGpuDispatchRows_bf16({{.*}}) {moe.host_call}
// DEV: call @moeEpGpuReturnRows_f32({{.*}}) {moe.host_call}
func.func @expert_parallel(%xs: tensor<32x64xbf16>, %off: tensor<9xi32>, %w: tensor<4x64x64xbf16>)
    -> (index, tensor<32x64xf32>) {
  %rank = moe.ep_rank ranks = 2 : index
  %recv, %loff, %counts = moe.all_to_all_dispatch %xs, %off bounds = [0, 4, 8] rank = 1
      : (tensor<32x64xbf16>, tensor<9xi32>) -> (tensor<?x64xbf16>, tensor<5xi32>, tensor<2x4xi32>)
  %o = moe.grouped_matmul %recv, %w, %loff : (tensor<?x64xbf16>, tensor<4x64x64xbf16>, tensor<5xi32>) -> tensor<?x64xf32>
  %c32 = arith.constant 32 : index
  %back = moe.all_to_all_return %o, %counts, %off rows = %c32 bounds = [0, 4, 8] rank = 1
      : (tensor<?x64xf32>, tensor<2x4xi32>, tensor<9xi32>) -> tensor<32x64xf32>
  return %rank, %back : index, tensor<32x64xf32>
}

// -----

// A global capacity: C from all ranks' plan rows (ceil(T * k / E * factor)),
// their sum a host call of its own (no device memory read on the host),
// passed to the rows' exchange, which zeroes each expert's rows past it.
// CHECK-LABEL: func.func @expert_parallel_capacity
// CHECK: call @moeEpExchangeCounts(
// CHECK: %[[ROWS:.+]] = arith.index_cast %{{.+}} : index to i64
// CHECK: %[[ALL:.+]] = call @moeEpGlobalRows(%[[ROWS]]) {moe.host_call} : (i64) -> i64
// CHECK: arith.divsi %[[ALL]]
// CHECK: math.ceil
// CHECK: %[[KEEP:.+]] = arith.fptosi
// CHECK: call @moeEpDispatchRows_f32({{.*}}, %[[KEEP]], %{{.+}}, %{{.+}})
// DEV-LABEL: func.func @expert_parallel_capacity
// DEV: call @moeEpGpuExchangeCounts(
// DEV: call @moeEpGlobalRows(
// DEV: call @moeEpGpuDispatchRows_f32(
func.func @expert_parallel_capacity(%xs: tensor<32x64xf32>, %off: tensor<9xi32>) -> tensor<?x64xf32> {
  %recv, %loff, %counts = moe.all_to_all_dispatch %xs, %off bounds = [0, 4, 8] rank = 1
      {capacity = #moe.capacity<factor = 1.25, drop = position>, k = 2 : i64, experts = 8 : i64}
      : (tensor<32x64xf32>, tensor<9xi32>) -> (tensor<?x64xf32>, tensor<5xi32>, tensor<2x4xi32>)
  return %recv : tensor<?x64xf32>
}

// -----

// A raise nobody checked lowers to the ops it was recognised in.
// CHECK-LABEL: func @raising_check_unchecked
// CHECK-SAME: (%[[LAYER:.*]]: tensor<16x64xf32>, %[[PLAIN:.*]]: tensor<16x64xf32>)
// CHECK-NOT: moe.raising_check
// CHECK: return %[[PLAIN]]
func.func @raising_check_unchecked(%layer: tensor<16x64xf32>, %plain: tensor<16x64xf32>) -> tensor<16x64xf32> {
  %y = moe.raising_check %layer, %plain : tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}

// -----

// Gate/up rows stored interleaved (ONNX Runtime's swiglu_fusion = 1) and
// regrouped by reshapes around a transpose: the kernel reads each expert's
// rows from the stored weights (row n from stored row 2 (n mod 8) + n div 8),
// not from the transposed copy, which nothing reads any more.
// CHECK-LABEL: func @interleaved_rows_read_in_place
// CHECK-SAME: %[[W:[a-z0-9]+]]: tensor<4x16x32xf32>
// CHECK: %[[T:.*]] = linalg.transpose
// CHECK: %[[G:.*]] = tensor.collapse_shape %[[T]]
// CHECK-NOT: %[[G]]
// CHECK: tensor.extract_slice %[[W]]
// CHECK-NOT: %[[G]]
// CHECK: arith.remui
// CHECK-NOT: %[[G]]
// CHECK: vector.transfer_read
// CHECK-NOT: %[[G]]
// CHECK: return
func.func @interleaved_rows_read_in_place(%xs: tensor<?x32xf32>, %w: tensor<4x16x32xf32>, %off: tensor<5xi32>)
    -> tensor<?x16xf32> {
  %flat = tensor.collapse_shape %w [[0, 1, 2]] : tensor<4x16x32xf32> into tensor<2048xf32>
  %pairs = tensor.expand_shape %flat [[0, 1, 2, 3]] output_shape [4, 8, 2, 32]
      : tensor<2048xf32> into tensor<4x8x2x32xf32>
  %init = tensor.empty() : tensor<4x2x8x32xf32>
  %t = linalg.transpose ins(%pairs : tensor<4x8x2x32xf32>) outs(%init : tensor<4x2x8x32xf32>) permutation = [0, 2, 1, 3]
  %g = tensor.collapse_shape %t [[0], [1, 2], [3]] : tensor<4x2x8x32xf32> into tensor<4x16x32xf32>
  %h = moe.grouped_matmul %xs, %g, %off : (tensor<?x32xf32>, tensor<4x16x32xf32>, tensor<5xi32>) -> tensor<?x16xf32>
  return %h : tensor<?x16xf32>
}

// -----

// The opposite regrouping ([gate; up] rows interleaved: split [E, 2, F, K])
// is not a read of interleaved rows: the kernel reads the transposed copy.
// CHECK-LABEL: func @concatenated_rows_interleaved_kept
// CHECK: %[[T:.*]] = linalg.transpose
// CHECK: %[[G:.*]] = tensor.collapse_shape %[[T]]
// CHECK: tensor.extract_slice %[[G]]
func.func @concatenated_rows_interleaved_kept(%xs: tensor<?x32xf32>, %w: tensor<4x16x32xf32>, %off: tensor<5xi32>)
    -> tensor<?x16xf32> {
  %halves = tensor.expand_shape %w [[0], [1, 2], [3]] output_shape [4, 2, 8, 32]
      : tensor<4x16x32xf32> into tensor<4x2x8x32xf32>
  %init = tensor.empty() : tensor<4x8x2x32xf32>
  %t = linalg.transpose ins(%halves : tensor<4x2x8x32xf32>) outs(%init : tensor<4x8x2x32xf32>) permutation = [0, 2, 1, 3]
  %g = tensor.collapse_shape %t [[0], [1, 2], [3]] : tensor<4x8x2x32xf32> into tensor<4x16x32xf32>
  %h = moe.grouped_matmul %xs, %g, %off : (tensor<?x32xf32>, tensor<4x16x32xf32>, tensor<5xi32>) -> tensor<?x16xf32>
  return %h : tensor<?x16xf32>
}
