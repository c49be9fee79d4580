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
