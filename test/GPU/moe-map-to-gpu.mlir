// RUN: moe-opt %s --moe-map-to-gpu=block-size=128 --split-input-file | FileCheck %s
// RUN: not moe-opt %s --moe-map-to-gpu=block-size=2048 --split-input-file 2>&1 \
// RUN:   | FileCheck %s --check-prefix=BLOCK
// BLOCK: block-size must be in [1, 1024], got 2048

// A parallel loop becomes one launch over its flattened iteration space:
// ceil(m*n / 128) blocks of 128 threads, the innermost index fastest, a guard
// for the threads past the end. Host buffers become device buffers, freed at
// the end; a contiguous copy becomes a device memcpy.
// CHECK-LABEL: func.func @parallel_loop
// CHECK: %[[BUF:.*]] = gpu.alloc (%{{.*}}, %{{.*}}) : memref<?x?xf32>
// CHECK: arith.muli
// CHECK: %[[BLOCKS:.*]] = arith.maxui
// CHECK: gpu.launch blocks(%[[BX:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %[[BLOCKS]], %{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}}) threads(%[[TX:.*]], %{{.*}}, %{{.*}}) in (%{{.*}} = %c128
// CHECK: %[[ID:.*]] = arith.addi %{{.*}}, %[[TX]]
// CHECK: %[[IN:.*]] = arith.cmpi ult, %[[ID]], %{{.*}} : index
// CHECK: scf.if %[[IN]]
// CHECK: arith.remui %[[ID]]
// CHECK: memref.store %{{.*}}, %[[BUF]]
// CHECK: gpu.terminator
// CHECK: gpu.memcpy %{{.*}}, %[[BUF]]
// CHECK: gpu.dealloc %[[BUF]]
// CHECK-NEXT: return
func.func @parallel_loop(%out: memref<?x?xf32>, %m: index, %n: index, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %buf = memref.alloc(%m, %n) : memref<?x?xf32>
  scf.parallel (%i, %j) = (%c0, %c0) to (%m, %n) step (%c1, %c1) {
    memref.store %v, %buf[%i, %j] : memref<?x?xf32>
  }
  memref.copy %buf, %out : memref<?x?xf32> to memref<?x?xf32>
  return
}

// -----

// A sequential loop and the operations it passes values to share one
// single-thread launch; the independent parallel loop after it gets its own.
// Scratch inside a kernel lives on the stack; constant globals are read
// inside the kernel.
memref.global "private" constant @table : memref<4xi32> = dense<[3, 1, 2, 0]>
// CHECK-LABEL: func.func @serial_chain
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}}) threads({{.*}}) in (%{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}})
// CHECK: memref.get_global @table
// CHECK: %[[SUM:.*]] = scf.for
// CHECK: memref.alloca() : memref<4xi32>
// CHECK: memref.store %[[SUM]]
// CHECK: gpu.terminator
// CHECK: gpu.launch
// CHECK: gpu.terminator
// CHECK-NOT: gpu.launch
func.func @serial_chain(%out: memref<1xi32>, %other: memref<8xi32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  %z = arith.constant 0 : i32
  %t = memref.get_global @table : memref<4xi32>
  %s = scf.for %i = %c0 to %c4 step %c1 iter_args(%acc = %z) -> i32 {
    %scratch = memref.alloc() : memref<4xi32>
    %x = memref.load %t[%i] : memref<4xi32>
    memref.store %x, %scratch[%i] : memref<4xi32>
    %y = memref.load %scratch[%i] : memref<4xi32>
    %a = arith.addi %acc, %y : i32
    scf.yield %a : i32
  }
  memref.store %s, %out[%c0] : memref<1xi32>
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    memref.store %z, %other[%i] : memref<8xi32>
  }
  return
}

// -----

// Negative: a function of size arithmetic only has nothing to launch.
// CHECK-LABEL: func.func @reduction_runs_serially
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}}) threads({{.*}}) in (%{{.*}} = %c1{{.*}},
// CHECK: scf.parallel
// CHECK: scf.reduce
func.func @reduction_runs_serially(%in: memref<8xf32>, %out: memref<f32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %zero = arith.constant 0.0 : f32
  %r = scf.parallel (%i) = (%c0) to (%c8) step (%c1) init (%zero) -> f32 {
    %x = memref.load %in[%i] : memref<8xf32>
    scf.reduce(%x : f32) {
    ^bb0(%a: f32, %b: f32):
      %s = arith.addf %a, %b : f32
      scf.reduce.return %s : f32
    }
  }
  memref.store %r, %out[] : memref<f32>
  return
}

// -----

// A sequential loop with parallel work in its body stays on the host and
// launches a kernel per iteration; its scratch buffer is allocated and freed
// inside the loop body.
// CHECK-LABEL: func.func @host_loop
// CHECK: scf.for
// CHECK: %[[S:.*]] = gpu.alloc () : memref<8xf32>
// CHECK: gpu.launch
// CHECK: memref.store %{{.*}}, %[[S]]
// CHECK: gpu.terminator
// CHECK: gpu.dealloc %[[S]]
// CHECK-NEXT: }
// CHECK-NEXT: return
func.func @host_loop(%out: memref<8xf32>, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %c10 = arith.constant 10 : index
  scf.for %s = %c0 to %c10 step %c1 {
    %scratch = memref.alloc() : memref<8xf32>
    scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
      memref.store %v, %scratch[%i] : memref<8xf32>
    }
  }
  return
}

// -----

// A loop over values (scf.while, from a jax.lax.scan over layers) whose
// values are a scalar counter and a buffer stays on the host: its condition
// is host arithmetic, its body launches a kernel per iteration and passes
// the buffer it wrote on.
// CHECK-LABEL: func.func @host_while
// CHECK: scf.while (%[[I:.*]] = %{{.*}}, %[[B:.*]] = %{{.*}}) : (i32, memref<8xf32>) -> (i32, memref<8xf32>)
// CHECK-NEXT: arith.cmpi slt, %[[I]]
// CHECK-NEXT: scf.condition
// CHECK: } do {
// CHECK: gpu.launch
// CHECK: gpu.terminator
// CHECK: arith.addi
// CHECK: scf.yield
// CHECK-NOT: gpu.launch
// CHECK: return
func.func @host_while(%in: memref<8xf32>, %v: f32) -> memref<8xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %zero = arith.constant 0 : i32
  %one = arith.constant 1 : i32
  %three = arith.constant 3 : i32
  %r:2 = scf.while (%i = %zero, %buf = %in) : (i32, memref<8xf32>) -> (i32, memref<8xf32>) {
    %go = arith.cmpi slt, %i, %three : i32
    scf.condition(%go) %i, %buf : i32, memref<8xf32>
  } do {
  ^bb0(%j: i32, %b: memref<8xf32>):
    scf.parallel (%k) = (%c0) to (%c8) step (%c1) {
      %x = memref.load %b[%k] : memref<8xf32>
      %y = arith.addf %x, %v : f32
      memref.store %y, %b[%k] : memref<8xf32>
    }
    %next = arith.addi %j, %one : i32
    scf.yield %next, %b : i32, memref<8xf32>
  }
  return %r#1 : memref<8xf32>
}

// -----

// A loop whose body uses a value computed on the device cannot stay on the
// host: it joins that value's single-thread kernel.
// CHECK-LABEL: func.func @loop_uses_device_value
// CHECK: gpu.launch blocks({{.*}}) in (%{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}}, %{{.*}} = %c1{{.*}}) threads({{.*}}) in (%{{.*}} = %c1{{.*}},
// CHECK: %[[X:.*]] = memref.load
// CHECK: scf.for
// CHECK: scf.parallel
// CHECK: memref.store %[[X]]
// CHECK: gpu.terminator
// CHECK-NOT: gpu.launch
func.func @loop_uses_device_value(%in: memref<1xf32>, %out: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %x = memref.load %in[%c0] : memref<1xf32>
  scf.for %s = %c0 to %c8 step %c1 {
    scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
      memref.store %x, %out[%i] : memref<8xf32>
    }
  }
  return
}

// -----

// A copy between operations that pass values to each other joins their
// single-thread kernel as a loop of loads and stores.
// CHECK-LABEL: func.func @copy_inside_kernel
// CHECK: gpu.launch
// CHECK: memref.load %{{.*}} : memref<2xf32>
// CHECK: scf.parallel
// CHECK: memref.load
// CHECK: memref.store
// CHECK: memref.store
// CHECK: gpu.terminator
// CHECK-NOT: memref.copy
func.func @copy_inside_kernel(%a: memref<2xf32>, %b: memref<2xf32>, %out: memref<2xf32>) {
  %c0 = arith.constant 0 : index
  %x = memref.load %a[%c0] : memref<2xf32>
  memref.copy %a, %b : memref<2xf32> to memref<2xf32>
  memref.store %x, %out[%c0] : memref<2xf32>
  return
}

// -----

// CHECK-LABEL: func.func @host_only
// CHECK-NOT: gpu.launch
// CHECK: arith.muli
func.func @host_only(%a: index, %b: index) -> index {
  %p = arith.muli %a, %b : index
  return %p : index
}

// -----

// A kernel that exists already (moe-tensor-core-gemm builds them) stays as
// it is, between the kernels of the work around it.
// CHECK-LABEL: func.func @existing_launch
// CHECK: gpu.launch
// CHECK: memref.store %{{.*}}, %{{.*}}[%{{.*}}] : memref<8xf32>
// CHECK: gpu.terminator
// CHECK: gpu.launch
// CHECK-SAME: threads
// CHECK-NEXT: memref.store %{{.*}}, %{{.*}}[%c0{{.*}}] : memref<8xf32>
// CHECK-NEXT: gpu.terminator
// CHECK: gpu.launch
// CHECK: memref.store %{{.*}}, %{{.*}}[%{{.*}}] : memref<8xf32>
// CHECK: gpu.terminator
// CHECK-NEXT: }
// CHECK-NEXT: return
func.func @existing_launch(%buf: memref<8xf32>, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    memref.store %v, %buf[%i] : memref<8xf32>
  }
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    memref.store %v, %buf[%c0] : memref<8xf32>
    gpu.terminator
  }
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    memref.store %v, %buf[%i] : memref<8xf32>
  }
  return
}

// -----

// A returned view of a device buffer (a reshape of the result) leaves the
// buffer to the caller: freeing it here freed the caller's result (a double
// free found by the emulated ONNX tests).
// CHECK-LABEL: func.func @returns_view
// CHECK: %[[BUF:.*]] = gpu.alloc () : memref<8xf32>
// CHECK: %[[VIEW:.*]] = memref.expand_shape %[[BUF]]
// CHECK-NOT: gpu.dealloc
// CHECK: return %[[VIEW]]
func.func @returns_view(%v: f32) -> memref<2x4xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %buf = memref.alloc() : memref<8xf32>
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    memref.store %v, %buf[%i] : memref<8xf32>
  }
  %view = memref.expand_shape %buf [[0, 1]] output_shape [2, 4] : memref<8xf32> into memref<2x4xf32>
  return %view : memref<2x4xf32>
}
