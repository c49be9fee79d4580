// The verifier of moe.raising_check: the layer, the ops it was recognised in
// and the result compute one type.
// RUN: moe-opt %s -split-input-file -verify-diagnostics

func.func @raising_check_shapes_differ(%layer: tensor<16x64xf32>, %plain: tensor<?x64xf32>) {
  // expected-error @+1 {{'moe.raising_check' op failed to verify that all of {raised, original, result} have same type}}
  %y = "moe.raising_check"(%layer, %plain) : (tensor<16x64xf32>, tensor<?x64xf32>) -> tensor<16x64xf32>
  return
}

// -----

func.func @raising_check_element_types_differ(%layer: tensor<16x64xbf16>, %plain: tensor<16x64xf32>) {
  // expected-error @+1 {{'moe.raising_check' op failed to verify that all of {raised, original, result} have same type}}
  %y = "moe.raising_check"(%layer, %plain) : (tensor<16x64xbf16>, tensor<16x64xf32>) -> tensor<16x64xf32>
  return
}
