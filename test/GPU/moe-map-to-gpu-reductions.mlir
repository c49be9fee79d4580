// RUN: moe-opt %s --moe-map-to-gpu --split-input-file | FileCheck %s
// RUN: moe-opt %s --moe-map-to-gpu=emulate --split-input-file | FileCheck %s --check-prefix=EMU

// A router's logits: each (token, expert) iteration reduces 256 products
// read along the last dimension into an f32 element. It gets a warp: lane l
// sums steps l, l + 32, ... from -0.0 in a register, five xor shuffles
// combine the lanes, lane 0 adds the total to the stored value.
// CHECK-LABEL: func.func @router_logits
// CHECK: %[[THREADS:.*]] = arith.muli %[[ITEMS:.*]], %c32 : index
// CHECK: gpu.launch
// CHECK: %[[ID:.*]] = arith.addi
// CHECK: %[[ITEM:.*]] = arith.divui %[[ID]], %c32
// CHECK: %[[LANE:.*]] = arith.remui %[[ID]], %c32
// CHECK: arith.cmpi ult, %[[ITEM]], %[[ITEMS]]
// CHECK: %[[OFFSET:.*]] = arith.muli %[[LANE]], %c1
// CHECK: %[[BEGIN:.*]] = arith.addi %c0{{.*}}, %[[OFFSET]]
// CHECK: %[[PART:.*]] = scf.for %{{.*}} = %[[BEGIN]] to %c256{{.*}} step %c32{{.*}} iter_args(%[[ACC:.*]] = %cst{{.*}}) -> (f32)
// CHECK: arith.mulf
// CHECK: arith.addf %[[ACC]]
// CHECK: gpu.shuffle xor %[[PART]], %c16_i32, %c32_i32 : f32
// CHECK: gpu.shuffle xor %{{.*}}, %c8_i32
// CHECK: gpu.shuffle xor %{{.*}}, %c4_i32
// CHECK: gpu.shuffle xor %{{.*}}, %c2_i32
// CHECK: %[[SH:.*]], %{{.*}} = gpu.shuffle xor %{{.*}}, %c1_i32
// CHECK: %[[TOTAL:.*]] = arith.addf %{{.*}}, %[[SH]]
// CHECK: %[[FIRST:.*]] = arith.cmpi eq, %[[LANE]], %c0
// CHECK: scf.if %[[FIRST]]
// CHECK: %[[OLD:.*]] = memref.load
// CHECK: %[[NEW:.*]] = arith.addf %[[OLD]], %[[TOTAL]]
// CHECK: memref.store %[[NEW]]
// Emulated: one thread per iteration, the 32 lanes as 32 loops, combined
// pairwise at offsets 16, 8, 4, 2, 1 (lane 0's operands in the shuffles).
// EMU-LABEL: func.func @router_logits
// EMU-NOT: gpu.shuffle
// EMU-COUNT-32: scf.for %{{.*}} = %{{.*}} to %c256{{.*}} step %c32{{.*}} iter_args
// EMU-COUNT-31: arith.addf
// EMU: memref.load
// EMU-NEXT: arith.addf
// EMU-NEXT: memref.store
// EMU-NOT: scf.if
// EMU: gpu.terminator
func.func @router_logits(%x: memref<?x256xbf16>, %w: memref<8x256xbf16>, %out: memref<?x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c256 = arith.constant 256 : index
  %zero = arith.constant 0.0 : f32
  %t = memref.dim %x, %c0 : memref<?x256xbf16>
  %acc = memref.alloc(%t) : memref<?x8xf32>
  scf.parallel (%i, %e) = (%c0, %c0) to (%t, %c8) step (%c1, %c1) {
    memref.store %zero, %acc[%i, %e] : memref<?x8xf32>
    scf.for %k = %c0 to %c256 step %c1 {
      %a = memref.load %x[%i, %k] : memref<?x256xbf16>
      %b = memref.load %w[%e, %k] : memref<8x256xbf16>
      %s = memref.load %acc[%i, %e] : memref<?x8xf32>
      %af = arith.extf %a : bf16 to f32
      %bf = arith.extf %b : bf16 to f32
      %p = arith.mulf %af, %bf : f32
      %n = arith.addf %s, %p : f32
      memref.store %n, %acc[%i, %e] : memref<?x8xf32>
    }
  }
  memref.copy %acc, %out : memref<?x8xf32> to memref<?x8xf32>
  return
}

// -----

// A row maximum (the softmax's first pass) with work after the reduction:
// maximumf's identity is -inf; the initial store and the rest of the
// iteration run in lane 0 alone.
// CHECK-LABEL: func.func @row_max_then_more
// CHECK: memref.store %{{.*}}, %[[M:.*]][%{{.*}}] : memref<?xf32>
// CHECK: scf.for {{.*}} iter_args(%{{.*}} = %cst{{.*}}) -> (f32)
// CHECK: arith.maximumf
// CHECK-COUNT-5: gpu.shuffle xor
// CHECK: scf.if
// CHECK: memref.load %[[M]]
// CHECK: arith.maximumf
// CHECK: memref.store
// CHECK: memref.store %{{.*}}, %{{.*}}[%{{.*}}] : memref<?xi32>
func.func @row_max_then_more(%x: memref<?x128xf32>, %out: memref<?xf32>, %flag: memref<?xi32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c128 = arith.constant 128 : index
  %ninf = arith.constant 0xFF800000 : f32
  %one = arith.constant 1 : i32
  %t = memref.dim %x, %c0 : memref<?x128xf32>
  %m = memref.alloc(%t) : memref<?xf32>
  scf.parallel (%i) = (%c0) to (%t) step (%c1) {
    memref.store %ninf, %m[%i] : memref<?xf32>
    scf.for %k = %c0 to %c128 step %c1 {
      %v = memref.load %x[%i, %k] : memref<?x128xf32>
      %s = memref.load %m[%i] : memref<?xf32>
      %n = arith.maximumf %v, %s : f32
      memref.store %n, %m[%i] : memref<?xf32>
    }
    memref.store %one, %flag[%i] : memref<?xi32>
  }
  memref.copy %m, %out : memref<?xf32> to memref<?xf32>
  return
}

// -----

// Not warp reductions: 32 steps (too short), a bf16 accumulator, a
// subtraction (not associative), terms read across rows (not along the
// last dimension), an accumulator that is a function argument while the
// terms come from another argument (they may alias). Each stays a thread per
// iteration; the short loop's accumulator, private to it, is kept in a
// register (loaded once before the loop, stored once after).
// CHECK-LABEL: func.func @short
// CHECK-NOT: gpu.shuffle
// CHECK: memref.load %[[ACC:.*]]{{\[}}%[[I:.*]]] : memref<?xf32>
// CHECK: %[[SUM:.*]] = scf.for {{.*}} iter_args(%[[R:.*]] = %{{.*}}) -> (f32)
// CHECK-NOT: memref.store
// CHECK: arith.addf %[[R]]
// CHECK: scf.yield
// CHECK: memref.store %[[SUM]], %[[ACC]][%[[I]]]
// CHECK-LABEL: func.func @bf16_accumulator
// CHECK-NOT: gpu.shuffle
// CHECK-LABEL: func.func @subtraction
// CHECK-NOT: gpu.shuffle
// CHECK-LABEL: func.func @across_rows
// CHECK-NOT: gpu.shuffle
// CHECK-LABEL: func.func @may_alias
// CHECK-NOT: gpu.shuffle
// CHECK-NOT: iter_args
// CHECK: return
func.func @short(%x: memref<?x32xf32>, %out: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c32 = arith.constant 32 : index
  %t = memref.dim %x, %c0 : memref<?x32xf32>
  %acc = memref.alloc(%t) : memref<?xf32>
  scf.parallel (%i) = (%c0) to (%t) step (%c1) {
    scf.for %k = %c0 to %c32 step %c1 {
      %v = memref.load %x[%i, %k] : memref<?x32xf32>
      %s = memref.load %acc[%i] : memref<?xf32>
      %n = arith.addf %s, %v : f32
      memref.store %n, %acc[%i] : memref<?xf32>
    }
  }
  memref.copy %acc, %out : memref<?xf32> to memref<?xf32>
  return
}
func.func @bf16_accumulator(%x: memref<?x256xbf16>, %out: memref<?xbf16>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c256 = arith.constant 256 : index
  %t = memref.dim %x, %c0 : memref<?x256xbf16>
  %acc = memref.alloc(%t) : memref<?xbf16>
  scf.parallel (%i) = (%c0) to (%t) step (%c1) {
    scf.for %k = %c0 to %c256 step %c1 {
      %v = memref.load %x[%i, %k] : memref<?x256xbf16>
      %s = memref.load %acc[%i] : memref<?xbf16>
      %n = arith.addf %s, %v : bf16
      memref.store %n, %acc[%i] : memref<?xbf16>
    }
  }
  memref.copy %acc, %out : memref<?xbf16> to memref<?xbf16>
  return
}
func.func @subtraction(%x: memref<?x256xf32>, %out: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c256 = arith.constant 256 : index
  %t = memref.dim %x, %c0 : memref<?x256xf32>
  %acc = memref.alloc(%t) : memref<?xf32>
  scf.parallel (%i) = (%c0) to (%t) step (%c1) {
    scf.for %k = %c0 to %c256 step %c1 {
      %v = memref.load %x[%i, %k] : memref<?x256xf32>
      %s = memref.load %acc[%i] : memref<?xf32>
      %n = arith.subf %s, %v : f32
      memref.store %n, %acc[%i] : memref<?xf32>
    }
  }
  memref.copy %acc, %out : memref<?xf32> to memref<?xf32>
  return
}
func.func @across_rows(%x: memref<256x?xf32>, %out: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c256 = arith.constant 256 : index
  %t = memref.dim %x, %c1 : memref<256x?xf32>
  %acc = memref.alloc(%t) : memref<?xf32>
  scf.parallel (%i) = (%c0) to (%t) step (%c1) {
    scf.for %k = %c0 to %c256 step %c1 {
      %v = memref.load %x[%k, %i] : memref<256x?xf32>
      %s = memref.load %acc[%i] : memref<?xf32>
      %n = arith.addf %s, %v : f32
      memref.store %n, %acc[%i] : memref<?xf32>
    }
  }
  memref.copy %acc, %out : memref<?xf32> to memref<?xf32>
  return
}
func.func @may_alias(%x: memref<?x256xf32>, %acc: memref<?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c256 = arith.constant 256 : index
  %t = memref.dim %x, %c0 : memref<?x256xf32>
  scf.parallel (%i) = (%c0) to (%t) step (%c1) {
    scf.for %k = %c0 to %c256 step %c1 {
      %v = memref.load %x[%i, %k] : memref<?x256xf32>
      %s = memref.load %acc[%i] : memref<?xf32>
      %n = arith.addf %s, %v : f32
      memref.store %n, %acc[%i] : memref<?xf32>
    }
  }
  return
}

// -----

// Register promotion in a single-thread kernel: the two accumulators of
// the first loop (other constant indices of one buffer) become loop values;
// in the second, a store at the loop's index may reach the accumulated
// element, which stays in memory.
// CHECK-LABEL: func.func @two_accumulators
// CHECK: gpu.launch
// CHECK: %[[R:.*]]:2 = scf.for {{.*}} iter_args(%{{.*}} = %{{.*}}, %{{.*}} = %{{.*}}) -> (f32, f32)
// CHECK: arith.addf
// CHECK: arith.maximumf
// CHECK: scf.yield
// CHECK: memref.store %[[R]]#{{[01]}}
// CHECK: memref.store %[[R]]#{{[01]}}
// CHECK: gpu.launch
// CHECK: scf.for
// CHECK-NOT: iter_args
// CHECK: memref.load %{{.*}}[%c0{{.*}}]
// CHECK: memref.store %{{.*}}, %{{.*}}[%arg{{.*}}]
// CHECK: memref.store %{{.*}}, %{{.*}}[%c0{{.*}}]
func.func @two_accumulators(%x: memref<64xf32>, %out: memref<2xf32>, %other: memref<64xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  %sums = memref.alloc() : memref<2xf32>
  %shared = memref.alloc() : memref<64xf32>
  scf.for %k = %c0 to %c64 step %c1 {
    %v = memref.load %x[%k] : memref<64xf32>
    %s0 = memref.load %sums[%c0] : memref<2xf32>
    %n0 = arith.addf %s0, %v : f32
    memref.store %n0, %sums[%c0] : memref<2xf32>
    %s1 = memref.load %sums[%c1] : memref<2xf32>
    %n1 = arith.maximumf %s1, %v : f32
    memref.store %n1, %sums[%c1] : memref<2xf32>
  }
  scf.for %k = %c0 to %c64 step %c1 {
    %v = memref.load %x[%k] : memref<64xf32>
    %s = memref.load %shared[%c0] : memref<64xf32>
    memref.store %v, %shared[%k] : memref<64xf32>
    %n = arith.addf %s, %v : f32
    memref.store %n, %shared[%c0] : memref<64xf32>
  }
  memref.copy %sums, %out : memref<2xf32> to memref<2xf32>
  memref.copy %shared, %other : memref<64xf32> to memref<64xf32>
  return
}
