// RUN: moe-opt %s --moe-map-to-gpu --split-input-file --verify-diagnostics

func.func @dynamic_scratch(%out: memref<?xf32>, %n: index, %v: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %n step %c1 {
    // expected-error @+1 {{of dynamic size inside a GPU kernel is not supported}}
    %s = memref.alloc(%n) : memref<?xf32>
    memref.store %v, %s[%i] : memref<?xf32>
  }
  return
}

// -----

func.func @returns_device_value(%in: memref<8xf32>) -> f32 {
  %c0 = arith.constant 0 : index
  %x = memref.load %in[%c0] : memref<8xf32>
  // expected-error @+1 {{returns a value computed on the GPU}}
  return %x : f32
}

// -----

func.func @strided_copy(%src: memref<4x8xf32>, %dst: memref<4x4xf32>) {
  %sub = memref.subview %src[0, 0] [4, 4] [1, 1] : memref<4x8xf32> to memref<4x4xf32, strided<[8, 1]>>
  // expected-error @+1 {{between strided buffers cannot be a GPU memcpy}}
  memref.copy %sub, %dst : memref<4x4xf32, strided<[8, 1]>> to memref<4x4xf32>
  return
}


// -----

// A kernel built earlier (moe-tensor-core-gemm) between a load and its use
// on the device: the two would have to share one kernel around it.
func.func @launch_inside_kernel_group(%in: memref<8xf32>, %out: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %x = memref.load %in[%c0] : memref<8xf32>
  // expected-error @+1 {{lies between operations that must share one kernel}}
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    gpu.terminator
  }
  memref.store %x, %out[%c0] : memref<8xf32>
  return
}
