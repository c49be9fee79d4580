//===- MoeBase.td - moe dialect definition and op base class -*- tablegen -*-===//
//
// The `moe` dialect represents Mixture-of-Experts layers at two levels: one
// `moe.layer` op per layer (what importers and users write) and decomposed
// routing / dispatch / expert / combine ops (what passes rewrite and lowerings
// consume). See docs/design.md for the semantics of every op.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_BASE_TD
#define MOE_BASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Moe_Dialect : Dialect {
  let name = "moe";
  let cppNamespace = "::mlir::moe";
  let summary = "Mixture-of-Experts layers: routing, dispatch, experts and combine";
  let description = [{
    The `moe` dialect represents Mixture-of-Experts (MoE) layers on tensors with
    value semantics. A whole layer is one `moe.layer` op carrying its expert set
    (`#moe.group` list), its routing configuration (`#moe.routing`) and its
    weights as operands. The `moe-decompose` pass rewrites it into routing ops
    (`moe.router`, `moe.gating_residual`, `moe.score`, `moe.topk`,
    `moe.threshold`, `moe.expert_choice`, `moe.renormalize`), the dispatch
    plan (`moe.dispatch`, `moe.permute`), expert computation
    (`moe.grouped_matmul`, `moe.activation`, `moe.zero_compute`,
    `moe.dense_ffn`, `moe.merge_experts`) and `moe.combine`.

    Conventions shared by every op:
    * tokens are rows: activations are `[T, H]`, `T` may be dynamic;
    * weights use the `nn.Linear` layout `[out, in]`, stacked over experts
      first: an FFN group's up projection is `[E, U, H]`, its down projection
      `[E, H, F]`;
    * routing values (logits, scores, gate weights) are `f32`, expert and row
      indices are `i32`, and `-1` marks an empty slot.
  }];
  let useDefaultAttributePrinterParser = 1;
  // The contract between the CPU lowering and the GPU passes: unit
  // attributes on upstream ops, checked by MoeDialect::verifyOperationAttribute
  // (docs/design.md, "Discardable attributes").
  let discardableAttrs = (ins
    // On an scf.for whose iterations write disjoint elements (one token row,
    // one expert column): moe-parallelize-loops makes it an scf.parallel.
    "::mlir::UnitAttr":$parallel,
    // On the linalg.generic of a grouped matmul in the parallel form: ins
    // (lhs [R, K], row experts [R] i32), outs (f32 [R, N]); its body loads the
    // expert weights [E, N, K] (and a shared expert's [N, K]) it captures.
    "::mlir::UnitAttr":$grouped_gemm,
    // On the linalg.generic that scales each row of a grouped matmul's f32
    // result by its slot's combine weight (ins: result [R, N], weights [R];
    // one out): moe-tensor-core-gemm applies it in the GEMM epilogue.
    "::mlir::UnitAttr":$row_scale,
    // On the linalg.generic that finds each grouped-matmul row's expert (one
    // out); its body loads the row groups' offsets [G+1] it captures.
    "::mlir::UnitAttr":$row_experts,
    // On a func.call to the host runtime that a kernel builder emits before
    // its launch (a TMA descriptor): moe-map-to-gpu leaves it on the host.
    "::mlir::UnitAttr":$host_call,
    // On a private func.func that several identical layers call
    // (moe-share-layers): compiled once, called once per layer.
    "::mlir::UnitAttr":$shared_layer
  );
  let hasOperationAttrVerify = 1;
  // Canonicalizations build splats and constants.
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::tensor::TensorDialect"];
  let extraClassDeclaration = [{
    /// Adds the attributes; defined beside them in MoeAttrs.cpp.
    void registerAttributes();
  }];
}

class Moe_Op<string mnemonic, list<Trait> traits = []>
    : Op<Moe_Dialect, mnemonic, traits>;

class Moe_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Moe_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

//===----------------------------------------------------------------------===//
// Shared type constraints
//===----------------------------------------------------------------------===//

// Activations and expert weights: the floating-point types MoE models ship in.
def Moe_FloatTensor : RankedTensorOf<[F32, F16, BF16]>;
// Routing values are computed in f32, as every reference implementation does.
def Moe_F32Tensor : RankedTensorOf<[F32]>;
def Moe_IndexTensor : RankedTensorOf<[I32]>;

// A double-precision scalar inside an attribute, printed in its shortest form.
// Stored as an APFloat (hashable, bit-exact comparison); accessors convert.
class Moe_F64Parameter<string default, string desc>
    : DefaultValuedParameter<"::llvm::APFloat", "::llvm::APFloat(" # default # ")", desc> {
  let comparator = "$_lhs.bitwiseIsEqual($_rhs)";
  let parser = [{ ::mlir::moe::parseDoubleParameter($_parser) }];
  let printer = [{ ::mlir::moe::printDoubleParameter($_printer, $_self) }];
}

#endif // MOE_BASE_TD
