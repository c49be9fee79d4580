// RUN: moe-opt %s --moe-gpu-launch-to-loops --split-input-file --verify-diagnostics | FileCheck %s

// A launch becomes six nested loops (blocks then threads, x, y, z); ids and
// sizes are substituted; device buffers and copies become memref ones.
// CHECK-LABEL: func.func @launch
// CHECK: %[[BUF:.*]] = memref.alloc(%{{.*}}) : memref<?xf32>
// CHECK: scf.for %[[BX:.*]] = %{{.*}} to %[[N:.*]] step
// CHECK: scf.for
// CHECK: scf.for
// CHECK: scf.for %[[TX:.*]] = %{{.*}} to %c4
// CHECK: scf.for
// CHECK: scf.for
// CHECK: %[[ROW:.*]] = arith.muli %[[BX]], %c4
// CHECK: %[[I:.*]] = arith.addi %[[ROW]], %[[TX]]
// CHECK: memref.store %{{.*}}, %[[BUF]][%[[I]]]
// CHECK-NOT: gpu.
// CHECK: memref.copy %[[BUF]], %{{.*}}
// CHECK: memref.dealloc %[[BUF]]
func.func @launch(%out: memref<?xf32>, %n: index, %v: f32) {
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %m = arith.muli %n, %c4 : index
  %buf = gpu.alloc (%m) : memref<?xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %n, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c4, %sy = %c1, %sz = %c1) {
    %row = arith.muli %bx, %sx : index
    %i = arith.addi %row, %tx : index
    memref.store %v, %buf[%i] : memref<?xf32>
    gpu.terminator
  }
  gpu.memcpy %out, %buf : memref<?xf32>, memref<?xf32>
  gpu.dealloc %buf : memref<?xf32>
  return
}

// -----

// Negative: threads that synchronise cannot run one after another.
func.func @barrier(%buf: memref<4xf32>, %v: f32) {
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  // expected-error @+1 {{has a barrier: its threads cannot run one after another}}
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c4, %sy = %c1, %sz = %c1) {
    memref.store %v, %buf[%tx] : memref<4xf32>
    gpu.barrier
    gpu.terminator
  }
  return
}
