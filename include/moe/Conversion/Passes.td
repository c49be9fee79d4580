//===- Passes.td - moe conversion passes --------------------*- tablegen -*-===//

#ifndef MOE_CONVERSION_PASSES_TD
#define MOE_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// Lowering to upstream dialects
//===----------------------------------------------------------------------===//

def ConvertMoeToLinalg : Pass<"convert-moe-to-linalg", "::mlir::ModuleOp"> {
  let summary = "Lowers every moe op to linalg, tensor, arith, math and scf";
  let description = [{
    The executable meaning of the dialect: after this pass a program has no
    moe op left and runs through the upstream bufferization and LLVM
    lowering (`moe-cpu-pipeline`). `moe.layer` is first decomposed (as
    `moe-decompose` does); every decomposed op then has its own lowering, so a
    program can be run at any point of the moe pipeline and compared.

    Contractions (router, grouped matmuls, dense FFN, merges) become
    `linalg.generic` accumulating in f32; selections and the dispatch plan,
    which are sequential over tokens, become `scf.for` loops building their
    small results with `tensor.insert`. An op that cannot be lowered is a
    located error, and the pass fails.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect", "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

#endif // MOE_CONVERSION_PASSES_TD
