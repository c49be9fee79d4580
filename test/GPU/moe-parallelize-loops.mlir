// RUN: moe-opt %s --moe-parallelize-loops --split-input-file | FileCheck %s
// RUN: moe-opt %s --moe-parallelize-loops=parallel-generics --split-input-file | FileCheck %s --check-prefix=GENERICS

// A marked loop updating a buffer in place becomes scf.parallel.
// CHECK-LABEL: func.func @marked_in_place
// CHECK: scf.parallel (%[[T:.*]]) = (%c0) to (%[[N:.*]]) step (%c1)
// CHECK: memref.store %{{.*}}, %{{.*}}[%[[T]]]
// CHECK-NOT: moe.parallel
func.func @marked_in_place(%buf: memref<?xf32>, %n: index, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %t = %c0 to %n step %c1 {
    memref.store %v, %buf[%t] : memref<?xf32>
  } {moe.parallel}
  return
}

// -----

// Unmarked loops stay sequential, and so does a marked loop that still
// yields (bufferized out of place); the mark is dropped.
// CHECK-LABEL: func.func @stays_sequential
// CHECK-NOT: scf.parallel
// CHECK: scf.for
// CHECK: scf.for
// CHECK-NOT: moe.parallel
func.func @stays_sequential(%buf: memref<?xf32>, %n: index, %v: f32) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %t = %c0 to %n step %c1 {
    memref.store %v, %buf[%t] : memref<?xf32>
  }
  %s = scf.for %t = %c0 to %n step %c1 iter_args(%acc = %v) -> f32 {
    %x = memref.load %buf[%t] : memref<?xf32>
    %y = arith.addf %acc, %x : f32
    scf.yield %y : f32
  } {moe.parallel}
  return %s : f32
}

// -----

// A parallel loop whose body is exactly a parallel loop with outside bounds
// merges with it into one two-dimensional loop.
// CHECK-LABEL: func.func @merge_nest
// CHECK: scf.parallel (%[[I:.*]], %[[J:.*]]) = (%c0, %c0) to (%{{.*}}, %{{.*}}) step (%c1, %c1)
// CHECK-NEXT: memref.store %{{.*}}, %{{.*}}[%[[I]], %[[J]]]
// CHECK-NOT: scf.parallel
func.func @merge_nest(%buf: memref<?x?xf32>, %m: index, %n: index, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %m step %c1 {
    scf.for %j = %c0 to %n step %c1 {
      memref.store %v, %buf[%i, %j] : memref<?x?xf32>
    } {moe.parallel}
  } {moe.parallel}
  return
}

// -----

// An inner loop bounded by the outer index cannot merge: two nested loops.
// CHECK-LABEL: func.func @triangular_not_merged
// CHECK: scf.parallel (%[[I:.*]]) =
// CHECK: scf.parallel (%{{.*}}) = (%c0) to (%[[I]])
func.func @triangular_not_merged(%buf: memref<?x?xf32>, %m: index, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %m step %c1 {
    scf.for %j = %c0 to %i step %c1 {
      memref.store %v, %buf[%i, %j] : memref<?x?xf32>
    } {moe.parallel}
  } {moe.parallel}
  return
}

// -----

// A strided copy becomes a parallel copy loop; a contiguous top-level copy
// stays (it becomes a device memcpy).
// CHECK-LABEL: func.func @copies
// CHECK: scf.parallel (%[[I:.*]], %[[J:.*]]) =
// CHECK: %[[V:.*]] = memref.load %{{.*}}[%[[I]], %[[J]]] : memref<4x4xf32, strided<[8, 1]>>
// CHECK: memref.store %[[V]], %{{.*}}[%[[I]], %[[J]]] : memref<4x4xf32>
// CHECK: memref.copy %{{.*}}, %{{.*}} : memref<4x4xf32> to memref<4x4xf32>
func.func @copies(%src: memref<4x8xf32>, %dst: memref<4x4xf32>, %dst2: memref<4x4xf32>) {
  %sub = memref.subview %src[0, 0] [4, 4] [1, 1] : memref<4x8xf32> to memref<4x4xf32, strided<[8, 1]>>
  memref.copy %sub, %dst : memref<4x4xf32, strided<[8, 1]>> to memref<4x4xf32>
  memref.copy %dst, %dst2 : memref<4x4xf32> to memref<4x4xf32>
  return
}

// -----

// Allocations move up to their operands, so that loops separated only by an
// allocation become adjacent (scf-parallel-loop-fusion can merge them).
// CHECK-LABEL: func.func @hoist_allocations
// Here the two loops then fuse.
// CHECK: %[[A:.*]] = memref.alloc(%{{.*}}) : memref<?xf32>
// CHECK-NEXT: %[[B:.*]] = memref.alloc(%{{.*}}) : memref<?xf32>
// CHECK-NOT: memref.alloc
// CHECK: scf.parallel
// CHECK: memref.store %{{.*}}, %[[A]]
// CHECK-NOT: scf.parallel
// CHECK: memref.store %{{.*}}, %[[B]]
func.func @hoist_allocations(%n: index, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %a = memref.alloc(%n) : memref<?xf32>
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    memref.store %v, %a[%i] : memref<?xf32>
  }
  %b = memref.alloc(%n) : memref<?xf32>
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %x = memref.load %a[%i] : memref<?xf32>
    memref.store %x, %b[%i] : memref<?xf32>
  }
  return
}

// -----

// Adjacent loops over the same space that touch shared buffers only at their
// own element fuse into one loop (one kernel).
// CHECK-LABEL: func.func @fuse_elementwise
// CHECK: scf.parallel
// CHECK: memref.store %{{.*}}, %[[A:.*]][%[[I:.*]]]
// CHECK: memref.load %[[A]][%[[I]]]
// CHECK-NOT: scf.parallel
// CHECK: return
func.func @fuse_elementwise(%a: memref<?xf32>, %b: memref<?xf32>, %n: index, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    memref.store %v, %a[%i] : memref<?xf32>
  }
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %x = memref.load %a[%i] : memref<?xf32>
    memref.store %x, %b[%i] : memref<?xf32>
  }
  return
}

// -----

// Negative: a scattered write after an elementwise fill of the same buffer
// (the dispatch plan's rows) must not fuse: iteration i's fill could land
// after iteration j's scattered write to element i.
// CHECK-LABEL: func.func @no_fusion_scattered_write
// CHECK: scf.parallel
// CHECK: scf.parallel
func.func @no_fusion_scattered_write(%rows: memref<?xi32>, %where: memref<?xindex>, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %none = arith.constant -1 : i32
  %one = arith.constant 1 : i32
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    memref.store %none, %rows[%i] : memref<?xi32>
  }
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    %r = memref.load %where[%i] : memref<?xindex>
    %placed = arith.cmpi sge, %r, %c0 : index
    scf.if %placed {
      memref.store %one, %rows[%r] : memref<?xi32>
    }
  }
  return
}

// -----

// Routing's per-token steps: a T x K fill, a per-token loop that writes the
// token's row and one that reads it fuse into one loop over tokens (the
// fill's k dimension runs sequentially inside); the memref.dim between the
// loops moves above them.
// CHECK-LABEL: func.func @fuse_rows
// CHECK: scf.parallel (%[[T:.*]]) = (%c0) to (%{{.*}}) step (%c1) {
// CHECK-NEXT: scf.for %[[K:.*]] = %c0 to %c2 step %c1 {
// CHECK-NEXT: memref.store %{{.*}}, %[[W:.*]][%[[T]], %[[K]]]
// CHECK: scf.for
// CHECK: memref.store %{{.*}}, %[[W]][%[[T]], %{{.*}}]
// CHECK: memref.load %[[W]][%[[T]], %c1]
// CHECK-NOT: scf.parallel
// CHECK: return
func.func @fuse_rows(%x: memref<?x8xf32>, %w: memref<?x2xf32>, %out: memref<?xf32>, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %n = memref.dim %x, %c0 : memref<?x8xf32>
  scf.parallel (%t, %k) = (%c0, %c0) to (%n, %c2) step (%c1, %c1) {
    memref.store %v, %w[%t, %k] : memref<?x2xf32>
  }
  %n2 = memref.dim %x, %c0 : memref<?x8xf32>
  scf.parallel (%t) = (%c0) to (%n2) step (%c1) {
    scf.for %k = %c0 to %c2 step %c1 {
      %e = memref.load %x[%t, %k] : memref<?x8xf32>
      memref.store %e, %w[%t, %k] : memref<?x2xf32>
    }
  }
  scf.parallel (%t) = (%c0) to (%n) step (%c1) {
    %y = memref.load %w[%t, %c1] : memref<?x2xf32>
    memref.store %y, %out[%t] : memref<?xf32>
  }
  return
}

// -----

// Negative: a per-token loop that reads another token's row (t + 1) must
// not fuse with the loop writing the rows.
// CHECK-LABEL: func.func @no_fusion_other_row
// CHECK: scf.parallel
// CHECK: scf.parallel
func.func @no_fusion_other_row(%w: memref<?x2xf32>, %out: memref<?xf32>, %n: index, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.parallel (%t) = (%c0) to (%n) step (%c1) {
    memref.store %v, %w[%t, %c0] : memref<?x2xf32>
  }
  scf.parallel (%t) = (%c0) to (%n) step (%c1) {
    %next = arith.addi %t, %c1 : index
    %y = memref.load %w[%next, %c0] : memref<?x2xf32>
    memref.store %y, %out[%t] : memref<?xf32>
  }
  return
}

// -----

// Negative: a T x E loop with a reduction inside (the router) keeps its
// parallel E dimension, and a fill over T x 4096 is too wide to run per
// token: neither fuses with the per-token loop next to it.
// CHECK-LABEL: func.func @no_serialization
// CHECK: scf.parallel (%{{.*}}, %{{.*}}) = (%c0, %c0) to (%{{.*}}, %c8)
// CHECK: scf.parallel (%{{.*}}) = (%c0) to
// CHECK: scf.parallel (%{{.*}}, %{{.*}}) = (%c0, %c0) to (%{{.*}}, %c4096)
func.func @no_serialization(%x: memref<?x64xf32>, %r: memref<8x64xf32>, %l: memref<?x8xf32>,
                            %out: memref<?xf32>, %h: memref<?x4096xf32>, %n: index, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c64 = arith.constant 64 : index
  %c4096 = arith.constant 4096 : index
  scf.parallel (%t, %e) = (%c0, %c0) to (%n, %c8) step (%c1, %c1) {
    scf.for %i = %c0 to %c64 step %c1 {
      %a = memref.load %x[%t, %i] : memref<?x64xf32>
      %b = memref.load %r[%e, %i] : memref<8x64xf32>
      %p = arith.mulf %a, %b : f32
      %s = memref.load %l[%t, %e] : memref<?x8xf32>
      %s2 = arith.addf %s, %p : f32
      memref.store %s2, %l[%t, %e] : memref<?x8xf32>
    }
  }
  scf.parallel (%t) = (%c0) to (%n) step (%c1) {
    %y = memref.load %l[%t, %c0] : memref<?x8xf32>
    memref.store %y, %out[%t] : memref<?xf32>
  }
  scf.parallel (%t, %j) = (%c0, %c0) to (%n, %c4096) step (%c1, %c1) {
    %y = memref.load %out[%t] : memref<?xf32>
    memref.store %y, %h[%t, %j] : memref<?x4096xf32>
  }
  return
}

// -----

// With parallel-generics (the CPU pipeline): a top-level generic becomes an
// scf.parallel over its parallel dimensions, its reduction a sequential
// loop inside; without the option (the GPU mapping) it stays a generic.
// CHECK-LABEL: func.func @combine_generic
// CHECK: linalg.generic
// GENERICS-LABEL: func.func @combine_generic
// GENERICS-NOT: linalg.generic
// GENERICS: scf.parallel (%{{.*}}, %{{.*}}) = ({{.*}}) to (%{{.*}}, %c8) step
// GENERICS: scf.for %{{.*}} = %{{.*}} to %c2{{[_0-9]*}} step
// GENERICS: memref.load %{{.*}} : memref<?x2xf32>
// GENERICS: arith.addf
// GENERICS: memref.store %{{.*}} : memref<?x8xf32>
#slots = affine_map<(t, h, k) -> (t, k)>
#out = affine_map<(t, h, k) -> (t, h)>
func.func @combine_generic(%w: memref<?x2xf32>, %y: memref<?x8xf32>) {
  linalg.generic {indexing_maps = [#slots, #out], iterator_types = ["parallel", "parallel", "reduction"]}
      ins(%w : memref<?x2xf32>) outs(%y : memref<?x8xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %s = arith.addf %acc, %a : f32
    linalg.yield %s : f32
  }
  return
}

// -----

// Left as generics: one whose output does not index a parallel dimension
// (its iterations would write one element), one whose outermost dimension
// is a reduction, and one inside a loop.
// GENERICS-LABEL: func.func @generics_kept
// GENERICS-COUNT-3: linalg.generic
// GENERICS-NOT: scf.parallel
// GENERICS: return
#in2 = affine_map<(i, j) -> (i, j)>
#row = affine_map<(i, j) -> (i)>
#col = affine_map<(i, j) -> (j)>
func.func @generics_kept(%a: memref<4x8xf32>, %r: memref<4xf32>, %c: memref<8xf32>, %n: index) {
  linalg.generic {indexing_maps = [#in2, #row], iterator_types = ["parallel", "parallel"]}
      ins(%a : memref<4x8xf32>) outs(%r : memref<4xf32>) {
  ^bb0(%x: f32, %acc: f32):
    linalg.yield %x : f32
  }
  linalg.generic {indexing_maps = [#in2, #col], iterator_types = ["reduction", "parallel"]}
      ins(%a : memref<4x8xf32>) outs(%c : memref<8xf32>) {
  ^bb0(%x: f32, %acc: f32):
    %s = arith.addf %acc, %x : f32
    linalg.yield %s : f32
  }
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %n step %c1 {
    linalg.generic {indexing_maps = [#in2, #row], iterator_types = ["parallel", "reduction"]}
        ins(%a : memref<4x8xf32>) outs(%r : memref<4xf32>) {
    ^bb0(%x: f32, %acc: f32):
      %s = arith.addf %acc, %x : f32
      linalg.yield %s : f32
    }
  }
  return
}

// -----

// A loop reading a view of a buffer the loop before it writes is not fused
// with it: a view's indices are not the iteration's row (here every column
// of the row is read while the first loop writes one).
// CHECK-LABEL: func.func @no_fusion_through_view
// CHECK: scf.parallel
// CHECK: memref.store %{{.*}}, %[[BUF:.*]][
// CHECK: scf.reduce
// CHECK: scf.parallel
// CHECK: memref.load %{{.*}} : memref<?x4xf32, strided<[8, 1], offset: 4>>
func.func @no_fusion_through_view(%buf: memref<?x8xf32>, %out: memref<?x8xf32>, %n: index, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
  %c8 = arith.constant 8 : index
  scf.parallel (%i, %j) = (%c0, %c0) to (%n, %c8) step (%c1, %c1) {
    memref.store %v, %buf[%i, %j] : memref<?x8xf32>
  }
  %upper = memref.subview %buf[0, 4] [%n, 4] [1, 1] : memref<?x8xf32> to memref<?x4xf32, strided<[8, 1], offset: 4>>
  scf.parallel (%i, %j) = (%c0, %c0) to (%n, %c8) step (%c1, %c1) {
    %x = memref.load %upper[%i, %c3] : memref<?x4xf32, strided<[8, 1], offset: 4>>
    memref.store %x, %out[%i, %j] : memref<?x8xf32>
  }
  return
}
