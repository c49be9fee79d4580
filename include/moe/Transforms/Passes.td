//===- Passes.td - moe transformation passes ----------------*- tablegen -*-===//
//
// Passes are grouped under banners and kept alphabetical within a group.
// Every pass is prefixed `moe-`.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TRANSFORMS_PASSES_TD
#define MOE_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// Decomposition
//===----------------------------------------------------------------------===//

def MoeDecompose : Pass<"moe-decompose"> {
  let summary = "Splits moe.layer into routing, dispatch, expert and combine ops";
  let description = [{
    `moe.layer` says what a layer computes; the optimisation passes and the
    lowerings work on its parts. This pass is the only bridge between the two
    levels: every `moe.layer` becomes

      router -> [gating_residual] -> score -> selection -> [renormalize]
        -> dispatch -> permute -> grouped_matmul -> activation -> grouped_matmul
        -> combine [+ zero_compute] [+ dense_ffn (shared)]

    with the same results. Zero-computation experts still take part in
    dispatch (their rows compute nothing in the FFN GEMMs): removing them is
    the job of the zero-computation elimination pass.

    Example:
    ```mlir
    %y, %z = moe.layer %x, %wr ffn(%up, %down) {
        experts = [#moe.group<ffn, 8>], activation = #moe.activation<swiglu>,
        routing = #moe.routing<scoring = softmax, k = 2, order = select_then_score>} : ...
    // becomes
    %z = moe.router %x, %wr : ...
    %w, %i = moe.topk %z k = 2 : ...
    %g = moe.renormalize softmax %w, %i : ...
    %rows, %offsets, %slot_row, %slot_w = moe.dispatch %i, %g experts = 8 : ...
    ...
    %y = moe.combine %o, %slot_row, %slot_w : ...
    ```
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::tensor::TensorDialect"];
}

#endif // MOE_TRANSFORMS_PASSES_TD
