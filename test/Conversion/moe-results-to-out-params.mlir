// RUN: moe-opt %s --moe-results-to-out-params --split-input-file | FileCheck %s

// A public function and a private one with static results: both results
// become out-parameters, and the call passes a buffer the caller allocates.
// CHECK-LABEL: func.func @entry
// CHECK-SAME: (%[[X:[^:]+]]: memref<4xf32>, %[[OUT:[^:]+]]: memref<4xf32>)
// CHECK: %[[TMP:.+]] = memref.alloc() : memref<4xf32>
// CHECK: call @layer(%[[X]], %[[TMP]]) : (memref<4xf32>, memref<4xf32>) -> ()
// CHECK: memref.copy %[[TMP]], %[[OUT]]
// CHECK: func.func private @layer(%{{.+}}: memref<4xf32>, %{{.+}}: memref<4xf32>)
func.func @entry(%x: memref<4xf32>) -> memref<4xf32> {
  %y = call @layer(%x) : (memref<4xf32>) -> memref<4xf32>
  return %y : memref<4xf32>
}
func.func private @layer(%x: memref<4xf32>) -> memref<4xf32> {
  %y = memref.alloc() : memref<4xf32>
  memref.copy %x, %y : memref<4xf32> to memref<4xf32>
  return %y : memref<4xf32>
}

// -----

// A private function whose result shape only it knows keeps returning its
// buffer; the public caller's static result still becomes an out-parameter.
// CHECK-LABEL: func.func @dynamic_layer
// CHECK-SAME: (%[[X:[^:]+]]: memref<?xf32>, %[[OUT:[^:]+]]: memref<4xf32>)
// CHECK: %[[Y:.+]] = call @layer(%[[X]]) : (memref<?xf32>) -> memref<?xf32>
// CHECK: func.func private @layer(%{{.+}}: memref<?xf32>) -> memref<?xf32>
func.func @dynamic_layer(%x: memref<?xf32>) -> memref<4xf32> {
  %y = call @layer(%x) : (memref<?xf32>) -> memref<?xf32>
  %s = memref.cast %y : memref<?xf32> to memref<4xf32>
  return %s : memref<4xf32>
}
func.func private @layer(%x: memref<?xf32>) -> memref<?xf32> {
  %c0 = arith.constant 0 : index
  %n = memref.dim %x, %c0 : memref<?xf32>
  %y = memref.alloc(%n) : memref<?xf32>
  memref.copy %x, %y : memref<?xf32> to memref<?xf32>
  return %y : memref<?xf32>
}

// -----

// A public function with a dynamically shaped result takes it as an
// out-parameter too: its external caller sizes the buffer (moe-exec from
// the artifact's shapes). The runtime hears both sizes of the dynamic
// dimension (it records a mismatch) and the copy covers what both hold.
// CHECK: func.func private @moeRuntimeCheckOutputDim(i64, i64, i64, i64)
// CHECK-LABEL: func.func @dynamic_entry
// CHECK-SAME: (%[[X:[^:]+]]: memref<?xf32>, %[[OUT:[^:]+]]: memref<?xf32>)
// CHECK: %[[GOT:.+]] = memref.dim %[[X]], %{{.+}} : memref<?xf32>
// CHECK: %[[WANT:.+]] = memref.dim %[[OUT]], %{{.+}} : memref<?xf32>
// CHECK-DAG: %[[RESULT:.+]] = arith.constant 0 : i64
// CHECK-DAG: %[[GOT64:.+]] = arith.index_cast %[[GOT]] : index to i64
// CHECK-DAG: %[[WANT64:.+]] = arith.index_cast %[[WANT]] : index to i64
// CHECK: call @moeRuntimeCheckOutputDim(%[[RESULT]], %{{.+}}, %[[GOT64]], %[[WANT64]]) {moe.host_call}
// CHECK: %[[BOTH:.+]] = arith.minui %[[GOT]], %[[WANT]] : index
// CHECK: %[[FROM:.+]] = memref.subview %[[X]][0] [%[[BOTH]]] [1]
// CHECK: %[[TO:.+]] = memref.subview %[[OUT]][0] [%[[BOTH]]] [1]
// CHECK: memref.copy %[[FROM]], %[[TO]]
func.func @dynamic_entry(%x: memref<?xf32>) -> memref<?xf32> {
  return %x : memref<?xf32>
}
