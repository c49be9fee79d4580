// RUN: moe-opt %s --split-input-file --convert-moe-to-linalg=parallel-contractions \
// RUN:   --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" \
// RUN:   --moe-tensor-core-gemm | FileCheck %s
// RUN: moe-opt %s --split-input-file --convert-moe-to-linalg=parallel-contractions \
// RUN:   --one-shot-bufferize="bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map" \
// RUN:   --moe-tensor-core-gemm=emulate | FileCheck %s --check-prefix=EMU

// A bf16 grouped matmul: one launch of 128 threads per 64 x 64 tile with two
// double-buffered shared tiles (2 stages, rows padded to 40). K = 72 is a
// multiple of 8, so the tiles are filled by 16-byte cp.async (zero-filled
// outside the matrices and the expert's rows): a prologue for the first K
// step, then each step prefetches the next into the other stage, waits for
// all but the newest group, and multiplies between barriers (ldmatrix x4 for
// A, x2 for B, 2 x 4 bf16 mma.sync per k-step of 16); after a row group's K
// loop every copy is waited for. The kernel writes every element (rows of no
// expert as 0), rounded to bf16 in the epilogue: the f32 result, its zero
// fill and the rounding generic are gone. Row tiles never straddle experts:
// rows / 64 + 4 experts + 2 row-tile blocks, each finding its rows by a
// binary search over the offsets.
// CHECK-LABEL: func.func @bf16
// CHECK-NOT: memref<?x80xf32>
// CHECK: linalg.generic {{.*}} attrs = {moe.row_experts}
// CHECK-NOT: linalg.fill {{.*}}memref<?x80xbf16>
// CHECK-NOT: moe.grouped_gemm
// CHECK: %[[RANGES:.*]] = arith.addi %{{.*}}, %c2 : index
// CHECK: %[[TILES:.*]] = arith.divui %{{.*}}, %c64
// CHECK: %[[BLOCKS:.*]] = arith.addi %[[TILES]], %[[RANGES]]
// CHECK: gpu.launch blocks({{.*}}) in ({{.*}}, {{.*}} = %[[BLOCKS]], {{.*}}) threads({{.*}}) in ({{.*}} = %c128{{.*}}) workgroup(%[[A:.*]] : memref<2x64x40xbf16, #gpu.address_space<workgroup>>, %[[B:.*]] : memref<2x64x40xbf16, #gpu.address_space<workgroup>>)
// CHECK: scf.while
// CHECK: arith.cmpi ule
// CHECK: scf.if {{.*}} -> (f32, f32
// CHECK: nvgpu.device_async_copy %{{.*}}, %[[A]][%c0{{.*}}], 8, %{{.*}} {bypassL1}
// CHECK: nvgpu.device_async_copy %{{.*}}, %[[B]][%c0{{.*}}], 8, %{{.*}} {bypassL1}
// CHECK: %[[PROLOGUE:.*]] = nvgpu.device_async_create_group
// CHECK: scf.for %{{.*}} = %{{.*}} to %{{.*}} step %c32
// CHECK: nvgpu.device_async_copy
// CHECK: %[[GROUP:.*]] = nvgpu.device_async_create_group
// CHECK: nvgpu.device_async_wait %[[GROUP]] {numGroups = 1 : i32}
// CHECK: gpu.barrier
// CHECK: nvgpu.ldmatrix %[[A]][{{.*}}, {{.*}}, {{.*}}] {numTiles = 4 : i32, transpose = false} {{.*}} -> vector<4x2xbf16>
// CHECK: nvgpu.ldmatrix %[[B]][{{.*}}, {{.*}}, {{.*}}] {numTiles = 2 : i32, transpose = false} {{.*}} -> vector<2x2xbf16>
// CHECK: vector.bitcast {{.*}} : vector<2xbf16> to vector<1xi32>
// CHECK: nvvm.mma.sync {{.*}}multiplicandAPtxType = #nvvm.mma_type<bf16>{{.*}}shape = #nvvm.shape<m = 16, n = 8, k = 16>
// CHECK: gpu.barrier
// CHECK: nvgpu.device_async_wait %[[PROLOGUE]] {numGroups = 0 : i32}
// CHECK: %[[R:.*]] = arith.truncf %{{.*}} : f32 to bf16
// CHECK: memref.store %[[R]], %{{.*}} : memref<?x80xbf16>
// CHECK: gpu.terminator
// CHECK-NOT: linalg.generic
// CHECK-NOT: memref<?x80xf32>
// The emulated kernel: one thread per block, its tiles allocated once
// before the launch (the blocks run in turn), the staging run for each of
// the 128 thread ids, products as scalar loops.
// EMU-LABEL: func.func @bf16
// EMU-NOT: moe.grouped_gemm
// EMU: memref.alloc() : memref<64x40xbf16>
// EMU: gpu.launch {{.*}} threads({{.*}}) in ({{.*}} = %c1{{.*}}, {{.*}} = %c1{{.*}}, {{.*}} = %c1{{.*}}) {
// EMU-NOT: memref.alloca
// EMU: scf.while
// EMU: scf.for %{{.*}} = %{{.*}} to %c128
// EMU-NOT: gpu.barrier
// EMU-NOT: nvvm.mma.sync
// EMU: arith.mulf
// EMU: gpu.terminator
func.func @bf16(%x: tensor<?x72xbf16>, %w: tensor<4x80x72xbf16>, %off: tensor<5xi32>) -> tensor<?x80xbf16> {
  %y = moe.grouped_matmul %x, %w, %off : (tensor<?x72xbf16>, tensor<4x80x72xbf16>, tensor<5xi32>) -> tensor<?x80xbf16>
  return %y : tensor<?x80xbf16>
}

// -----

// f16 operands go to the mma as vector<2xf16> pairs; a shared expert's
// weights are copied for the last row group.
// CHECK-LABEL: func.func @f16_shared
// CHECK: gpu.launch
// CHECK: scf.if %{{.*}} -> (!nvgpu.device.async.token)
// CHECK: nvgpu.device_async_copy %{{.*}} : memref<32x48xf16> to
// CHECK: nvgpu.device_async_copy %{{.*}} : memref<3x32x48xf16> to
// CHECK: nvvm.mma.sync {{.*}}shape = #nvvm.shape<m = 16, n = 8, k = 16>} : (vector<2xf16>, vector<2xf16>, f32)
// EMU-LABEL: func.func @f16_shared
// EMU: gpu.launch
func.func @f16_shared(%x: tensor<20x48xf16>, %w: tensor<3x32x48xf16>, %off: tensor<5xi32>,
                      %s: tensor<32x48xf16>) -> tensor<20x32xf16> {
  %y = moe.grouped_matmul %x, %w, %off shared(%s)
      : (tensor<20x48xf16>, tensor<3x32x48xf16>, tensor<5xi32>, tensor<32x48xf16>) -> tensor<20x32xf16>
  return %y : tensor<20x32xf16>
}

// -----

// f32 grouped matmuls keep the one-thread-per-element generic.
// CHECK-LABEL: func.func @f32_stays
// CHECK-NOT: gpu.launch
// CHECK: linalg.generic {{.*}} attrs = {moe.grouped_gemm}
// EMU-LABEL: func.func @f32_stays
// EMU-NOT: gpu.launch
func.func @f32_stays(%x: tensor<?x16xf32>, %w: tensor<2x8x16xf32>, %off: tensor<3xi32>) -> tensor<?x8xf32> {
  %y = moe.grouped_matmul %x, %w, %off : (tensor<?x16xf32>, tensor<2x8x16xf32>, tensor<3xi32>) -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// A gated activation on the f32 result moves into the epilogue: 32 output
// columns per block (grid x = ceil(40 / 32)), the activation computed on each
// thread's gate and up accumulators, rounded to bf16 and stored into the
// [R, 40] result; the f32 [R, 80] and [R, 40] intermediates are gone.
// CHECK-LABEL: func.func @swiglu_epilogue
// CHECK-NOT: xf32>
// CHECK: %[[OUT:.*]] = memref.alloc(%{{.*}}) {{.*}} : memref<?x40xbf16>
// CHECK-NOT: linalg.fill {{.*}}outs(%[[OUT]]
// CHECK: %[[C31:.*]] = arith.constant 31 : index
// CHECK: arith.addi %{{.*}}, %[[C31]]
// CHECK: gpu.launch
// CHECK: nvvm.mma.sync
// CHECK: math.exp
// CHECK: arith.mulf
// CHECK: %[[R:.*]] = arith.truncf
// CHECK: memref.store %[[R]], %[[OUT]]
// CHECK: gpu.terminator
// CHECK-NOT: memref<?x80xf32>
// CHECK-NOT: memref<?x40xf32>
// EMU-LABEL: func.func @swiglu_epilogue
// EMU: gpu.launch
// EMU: math.exp
func.func @swiglu_epilogue(%x: tensor<?x72xbf16>, %w: tensor<4x80x72xbf16>, %off: tensor<5xi32>) -> tensor<?x40xbf16> {
  %y = moe.grouped_matmul_act swiglu %x, %w, %off
      : (tensor<?x72xbf16>, tensor<4x80x72xbf16>, tensor<5xi32>) -> tensor<?x40xbf16>
  return %y : tensor<?x40xbf16>
}

// -----

// An elementwise activation reads the whole result: it stays a separate
// kernel after the plain tensor-core GEMM.
// CHECK-LABEL: func.func @gelu_stays
// CHECK: memref.alloc(%{{.*}}) {{.*}} : memref<?x80xf32>
// CHECK: gpu.launch
// CHECK: gpu.terminator
// CHECK: linalg.generic
// CHECK: math.erf
func.func @gelu_stays(%x: tensor<?x72xbf16>, %w: tensor<4x80x72xbf16>, %off: tensor<5xi32>) -> tensor<?x80xbf16> {
  %y = moe.grouped_matmul_act gelu %x, %w, %off
      : (tensor<?x72xbf16>, tensor<4x80x72xbf16>, tensor<5xi32>) -> tensor<?x80xbf16>
  return %y : tensor<?x80xbf16>
}

// -----

// The down GEMM with the combine: the epilogue scales each row by its
// slot's combine weight (the moe.row_scale generic, fused: the unscaled f32
// buffer is gone), the combine sums the scaled rows per token in slot
// order. It reads f32 rows (summed before any rounding), so the kernel
// stores f32 and the rounding stays after the combine.
// CHECK-LABEL: func.func @combine_keeps_f32
// CHECK: } {moe.parallel}
// CHECK: %[[ROWS:.*]] = memref.alloc(%{{.*}}) {{.*}} : memref<?x80xf32>
// CHECK-NOT: memref<?x80xf32>
// CHECK: gpu.launch
// CHECK: %[[W:.*]] = memref.load %{{.*}}[%{{.*}}] : memref<?xf32>
// CHECK-NEXT: %[[SCALED:.*]] = arith.mulf %[[W]], %{{.*}} : f32
// CHECK-NEXT: memref.store %[[SCALED]], %[[ROWS]]
// CHECK: gpu.terminator
// CHECK-NOT: moe.row_scale
// CHECK: linalg.generic
// CHECK: memref.load %[[ROWS]]
// CHECK-NOT: arith.mulf
// CHECK: arith.truncf
// EMU-LABEL: func.func @combine_keeps_f32
// EMU: gpu.launch
func.func @combine_keeps_f32(%x: tensor<?x72xbf16>, %w: tensor<4x80x72xbf16>, %off: tensor<5xi32>,
                             %rows: tensor<?x2xi32>, %gates: tensor<?x2xf32>) -> tensor<?x80xbf16> {
  %y = moe.grouped_matmul_combine %x, %w, %off, %rows, %gates
      : (tensor<?x72xbf16>, tensor<4x80x72xbf16>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x80xbf16>
  return %y : tensor<?x80xbf16>
}

// -----

// K = 36 is not a multiple of 8: the tiles are staged element by element
// (synchronously, one stage), no cp.async.
// CHECK-LABEL: func.func @odd_depth
// CHECK: gpu.launch {{.*}} workgroup(%[[A:.*]] : memref<64x40xbf16, #gpu.address_space<workgroup>>,
// CHECK-NOT: nvgpu.device_async_copy
// CHECK: memref.load %{{.*}} : memref<?x36xbf16>
// CHECK: memref.store %{{.*}}, %[[A]]
// CHECK: nvgpu.ldmatrix %[[A]][{{[^,]*}}, {{[^,]*}}] {numTiles = 4
// EMU-LABEL: func.func @odd_depth
// EMU: gpu.launch
func.func @odd_depth(%x: tensor<?x36xbf16>, %w: tensor<4x80x36xbf16>, %off: tensor<5xi32>) -> tensor<?x80xbf16> {
  %y = moe.grouped_matmul %x, %w, %off : (tensor<?x36xbf16>, tensor<4x80x36xbf16>, tensor<5xi32>) -> tensor<?x80xbf16>
  return %y : tensor<?x80xbf16>
}
