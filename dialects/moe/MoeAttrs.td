//===- MoeAttrs.td - moe enums and attributes ---------------*- tablegen -*-===//

#ifndef MOE_ATTRS_TD
#define MOE_ATTRS_TD

include "dialects/moe/MoeBase.td"

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Moe_ExpertKind : I32EnumAttr<"ExpertKind", "kind of expert", [
    I32EnumAttrCase<"ffn", 0>,       // a feed-forward network with weights
    I32EnumAttrCase<"zero", 1>,      // E(x) = 0 (MoE++)
    I32EnumAttrCase<"copy", 2>,      // E(x) = x (MoE++)
    I32EnumAttrCase<"constant", 3>,  // E(x) = a1 x + a2 v (MoE++)
    I32EnumAttrCase<"null", 4>       // E(x) = 0, excluded from renorm (AdaMoE)
  ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def Moe_ExpertKindAttr : EnumAttr<Moe_Dialect, Moe_ExpertKind, "expert_kind"> {
  let assemblyFormat = "`<` $value `>`";
}

def Moe_Activation : I32EnumAttr<"Activation", "expert activation", [
    I32EnumAttrCase<"swiglu", 0>,  // silu(gate) * up, up projection [gate; up]
    I32EnumAttrCase<"geglu", 1>,   // gelu(gate) * up, up projection [gate; up]
    I32EnumAttrCase<"gelu", 2>,
    I32EnumAttrCase<"relu", 3>,
    I32EnumAttrCase<"silu", 4>,
    I32EnumAttrCase<"linear", 5>,  // identity: affine experts (MEO, ChartMoE)
    // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): GELU's tanh
    // approximation (ONNX Runtime's MoE "gelu", gelu_pytorch_tanh)
    I32EnumAttrCase<"gelu_tanh", 6>,
    // gelu_tanh(gate) * up: GeGLU as jax.nn.gelu's default and Gemma write it
    I32EnumAttrCase<"geglu_tanh", 7>,
    // relu(x)^2, squared ReLU (Primer; Nemotron-H's experts, HF "relu2")
    I32EnumAttrCase<"relu2", 8>
  ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def Moe_ActivationAttr : EnumAttr<Moe_Dialect, Moe_Activation, "activation"> {
  let assemblyFormat = "`<` $value `>`";
}

def Moe_ScoringFunc : I32EnumAttr<"ScoringFunc", "router scoring function", [
    I32EnumAttrCase<"softmax", 0>,
    I32EnumAttrCase<"sigmoid", 1>,         // DeepSeek-V3
    I32EnumAttrCase<"relu", 2>,            // ReMoE
    I32EnumAttrCase<"gumbel_softmax", 3>   // GG MoE, inference form
  ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def Moe_ScoringFuncAttr : EnumAttr<Moe_Dialect, Moe_ScoringFunc, "scoring"> {
  let assemblyFormat = "`<` $value `>`";
}

def Moe_SelectMode : I32EnumAttr<"SelectMode", "expert selection", [
    I32EnumAttrCase<"top_k", 0>,          // token choice, k experts per token
    I32EnumAttrCase<"threshold", 1>,      // every expert scoring above a threshold
    I32EnumAttrCase<"expert_choice", 2>,  // each expert picks its top-C tokens
    I32EnumAttrCase<"bidirectional", 3>   // token top-k intersected with expert top-C
  ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}

def Moe_ScoreOrder : I32EnumAttr<"ScoreOrder", "scoring before or after selection", [
    I32EnumAttrCase<"score_then_select", 0>,  // softmax over all experts, then top-k
    I32EnumAttrCase<"select_then_score", 1>   // top-k on logits, then softmax over k
  ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}

def Moe_NormalizeMode : I32EnumAttr<"NormalizeMode", "gate weight renormalization", [
    I32EnumAttrCase<"none", 0>,       // weights as scored
    I32EnumAttrCase<"all", 1>,        // divide by the sum over all selected slots
    I32EnumAttrCase<"computing", 2>   // zero/null slots get weight 0 and are left out
                                      // of the sum (MoE++ code, AdaMoE)
  ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}

def Moe_GroupScore : I32EnumAttr<"GroupScore", "score of an expert group in grouped top-k", [
    I32EnumAttrCase<"max", 0>,       // DeepSeek-V2
    I32EnumAttrCase<"top2_sum", 1>   // DeepSeek-V3
  ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def Moe_GroupScoreAttr : EnumAttr<Moe_Dialect, Moe_GroupScore, "group_score"> {
  let assemblyFormat = "`<` $value `>`";
}

def Moe_RenormMode : I32EnumAttr<"RenormMode", "how moe.renormalize rescales", [
    I32EnumAttrCase<"sum", 0>,     // w / sum(w)
    I32EnumAttrCase<"softmax", 1>  // softmax over the selected slots
  ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def Moe_RenormModeAttr : EnumAttr<Moe_Dialect, Moe_RenormMode, "renorm"> {
  let assemblyFormat = "`<` $value `>`";
}

def Moe_DropPolicy : I32EnumAttr<"DropPolicy", "which tokens an overflowing expert keeps", [
    I32EnumAttrCase<"probs", 0>,    // the C highest gate weights
    I32EnumAttrCase<"position", 1>,  // the first C in token order, slots (t, k)
    I32EnumAttrCase<"slot_position", 2>  // the first C in slot order (k, t): GShard
  ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def Moe_DropPolicyAttr : EnumAttr<Moe_Dialect, Moe_DropPolicy, "drop"> {
  let assemblyFormat = "`<` $value `>`";
}

def Moe_Rectify : I32EnumAttr<"Rectify", "Rectify-Router handling of drops and padding", [
    I32EnumAttrCase<"none", 0>,
    I32EnumAttrCase<"intra_device", 1>,  // a dropped slot goes to the best local expert
    I32EnumAttrCase<"fill_in", 2>,       // pad rows take tokens whose (k+1)-th choice it is
    I32EnumAttrCase<"both", 3>
  ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}
def Moe_RectifyAttr : EnumAttr<Moe_Dialect, Moe_Rectify, "rectify"> {
  let assemblyFormat = "`<` $value `>`";
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

// The expert kind inside #moe.group, with an error that lists the kinds.
def Moe_ExpertKindParameter : AttrParameter<"::mlir::moe::ExpertKind", "expert kind"> {
  let parser = [{ ::mlir::moe::parseExpertKind($_parser) }];
  let printer = [{ $_printer << ::mlir::moe::stringifyExpertKind($_self) }];
}

def Moe_ExpertGroupAttr : Moe_Attr<"ExpertGroup", "group"> {
  let summary = "a run of experts of one kind in an expert set";
  let description = [{
    An expert set is an ordered list of groups; experts are numbered in list
    order. `#moe.group<ffn, 8>` is eight FFN experts, `#moe.group<constant, 2>`
    two MoE++ constant experts.
  }];
  let parameters = (ins Moe_ExpertKindParameter:$kind, "int64_t":$count);
  let assemblyFormat = "`<` $kind `,` $count `>`";
  let genVerifyDecl = 1;
}

def Moe_ExpertSetAttr : TypedArrayAttrBase<Moe_ExpertGroupAttr,
                                           "ordered list of expert groups">;

def Moe_RoutingAttr : Moe_Attr<"Routing", "routing"> {
  let summary = "how a layer scores, selects and weights its experts";
  let description = [{
    Every field but `scoring` has a default and is printed only when it
    differs from it.

    ```mlir
    // Mixtral: softmax over top-2 logits.
    #moe.routing<scoring = softmax, k = 2, order = select_then_score>
    // DeepSeek-V3: sigmoid, grouped top-8, renormalized, scaled by 2.5.
    #moe.routing<scoring = sigmoid, k = 8, normalize = all, scale = 2.5,
                 num_groups = 8, topk_groups = 4>
    // MEO sequence-level gating: 128 consecutive tokens share the routing of
    // their mean.
    #moe.routing<scoring = softmax, k = 2, order = select_then_score, group_size = 128>
    // A bf16 program's router: its logits rounded to bf16 before scoring
    // and selection, as the program computes them.
    #moe.routing<scoring = softmax, k = 2, normalize = all, logits_type = bf16>
    // An f16 program that also takes the softmax in f16: the scores rounded
    // to f16 before the selection (equal rounded scores: the lower index).
    #moe.routing<scoring = softmax, k = 8, logits_type = f16, scores_type = f16>
    // LFM2-MoE: sigmoid top-4, the picks divided by their sum + 1e-6.
    #moe.routing<scoring = sigmoid, k = 4, normalize = all, norm_epsilon = 1.0e-06>
    ```
  }];
  let parameters = (ins
    EnumParameter<Moe_ScoringFunc>:$scoring,
    DefaultValuedParameter<"::mlir::moe::SelectMode", "::mlir::moe::SelectMode::top_k">:$select,
    DefaultValuedParameter<"int64_t", "1">:$k,
    DefaultValuedParameter<"::mlir::moe::ScoreOrder", "::mlir::moe::ScoreOrder::score_then_select">:$order,
    DefaultValuedParameter<"::mlir::moe::NormalizeMode", "::mlir::moe::NormalizeMode::none">:$normalize,
    Moe_F64Parameter<"1.0", "routed scaling factor applied to the final weights">:$scale,
    DefaultValuedParameter<"int64_t", "1">:$num_groups,
    DefaultValuedParameter<"int64_t", "1">:$topk_groups,
    DefaultValuedParameter<"::mlir::moe::GroupScore", "::mlir::moe::GroupScore::top2_sum">:$group_score,
    Moe_F64Parameter<"0.0", "threshold selection: keep scores strictly above">:$threshold,
    DefaultValuedParameter<"int64_t", "0">:$capacity,
    Moe_F64Parameter<"1.0", "gumbel_softmax temperature">:$tau,
    DefaultValuedParameter<"int64_t", "1">:$samples,
    DefaultValuedParameter<"int64_t", "0">:$seed,
    Moe_F64Parameter<"1.0", "factor on the expert input (MoE++: k)">:$input_scale,
    DefaultValuedParameter<"int64_t", "1">:$group_size,
    OptionalParameter<"::mlir::Type", "bf16 or f16: the router logits rounded to it before scoring (a "
                      "program that computes them in 16 bits); absent: f32">:$logits_type,
    OptionalParameter<"::mlir::Type", "bf16 or f16: the scores rounded to it before selection (a "
                      "program that scores in 16 bits); absent: f32">:$scores_type,
    Moe_F64Parameter<"0.0", "renormalisation: w / (sum + norm_epsilon)">:$norm_epsilon
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def Moe_CapacityAttr : Moe_Attr<"Capacity", "capacity"> {
  let summary = "per-expert capacity, dropping, padding and rectification";
  let description = [{
    Absent capacity means dropless dispatch. With a capacity, expert `e` keeps
    at most `C = ceil(T * k / E * factor)` (or the fixed `tokens`) selections.

    ```mlir
    #moe.capacity<factor = 1.25, drop = probs, pad = true>
    #moe.capacity<tokens = 64, drop = position, pad = true, rectify = fill_in>
    ```
  }];
  let parameters = (ins
    Moe_F64Parameter<"0.0", "capacity factor (0: use `tokens`)">:$factor,
    DefaultValuedParameter<"int64_t", "0">:$tokens,
    DefaultValuedParameter<"::mlir::moe::DropPolicy", "::mlir::moe::DropPolicy::probs">:$drop,
    DefaultValuedParameter<"bool", "false">:$pad,
    DefaultValuedParameter<"::mlir::moe::Rectify", "::mlir::moe::Rectify::none">:$rectify,
    DefaultValuedParameter<"int64_t", "0">:$experts_per_device
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    bool fillsIn() const { return ::mlir::moe::fillsIn(getRectify()); }
    bool rectifiesIntraDevice() const { return ::mlir::moe::rectifiesIntraDevice(getRectify()); }
    /// C for `tokens` tokens with `k` selections each over `experts` experts:
    /// `tokens`, or ceil(T k / E factor); dynamic when T is.
    int64_t perExpert(int64_t tokens, int64_t k, int64_t experts) const;
  }];
}

#endif // MOE_ATTRS_TD
