#!/usr/bin/env python3
"""Exports tiny random-weight Hugging Face MoE models to ONNX, as a user's
torch.onnx.export of a real checkpoint would produce them: the whole causal
LM (embedding, RMSNorm, rotary attention, MoE FFNs, LM head), input_ids in,
logits out, weights in an external data file.

  python3 scripts/export-hf-moe-models.py [--out test/Onnx/Inputs/hf]
  python3 scripts/export-hf-moe-models.py --exporter torchscript --opset 17 olmoe

Needs torch and transformers (not in python/requirements.txt: the files it
writes are committed, so tests and CI only need onnxruntime). The dynamo
exports were written with torch 2.11 and transformers 5.17; their experts
use transformers' "batched_mm" implementation, the export-friendly one (its
default "grouped_mm" is an opaque custom op the ONNX exporter cannot
translate). The TorchScript exporter (torch.onnx.export(..., dynamo=False),
how most published ONNX MoE models were made) traces transformers' eager
per-expert loop instead, and writes PyTorch's logits next to the model
(.reference.npz): olmoe_torchscript.onnx was written with torch 2.15 and
transformers 4.57.1, whose OLMoE loops over every expert with per-expert
weights; mixtral_torchscript.onnx with transformers 5.24, whose experts
loop over the experts the example input hit (which tracing bakes into the
graph) on stacked weights. mixtral_f16.onnx (--dtype f16, torch 2.15,
transformers 5.25) is the half-precision model, with PyTorch's logits;
mixtral_torchscript_f16.onnx its TorchScript export (opset 17).
olmoe_f16.onnx, qwen2_moe_f16.onnx and qwen3_moe_f16.onnx (--dtype f16,
torch 2.15, transformers 5.25): these take the router's softmax in f16;
deepseek_v3_f16.onnx likewise, its router in f32 on x cast up; gpt_oss_f16.onnx
likewise.
qwen3_moe_torchscript.onnx and deepseek_v3_torchscript.onnx: torch 2.15,
transformers 5.25, opset 17 (the routers' biases scaled to 0.05 so that
the example hits every expert); gpt_oss_torchscript.onnx the same way.
glm4_moe.onnx, ernie4_5_moe.onnx, phimoe.onnx, granitemoe.onnx, lfm2_moe.onnx
and jetmoe.onnx: torch 2.15, transformers 5.25 (dynamo); ernie4_5_moe_f16.onnx
likewise (--dtype f16), with PyTorch's logits. afmoe.onnx, dots1.onnx,
exaone_moe.onnx, hunyuan_moe.onnx, minimax_m2.onnx and qwen3_5_moe.onnx:
torch 2.15, transformers 5.25 (dynamo); qwen3_5_moe_torchscript.onnx the
same with TorchScript (opset 17; its rotary sections leave an empty
index tensor in the graph). nemotron_h.onnx and nemotron_h_torchscript.onnx
(opset 17): torch 2.15, transformers 5.25.
"""

import argparse
import os

import torch
import transformers

# Small shapes, realistic structure: 2 decoder layers, GQA attention, top-k
# softmax routing with each family's own details.
COMMON = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64)
MODELS = {
    # Top-2 of 4 experts, weights renormalised, SwiGLU experts.
    "mixtral": (transformers.MixtralConfig, transformers.MixtralForCausalLM,
                dict(intermediate_size=64, num_local_experts=4, num_experts_per_tok=2)),
    # Top-2 of 6 experts, not renormalised, plus a sigmoid-gated shared expert.
    "qwen2_moe": (transformers.Qwen2MoeConfig, transformers.Qwen2MoeForCausalLM,
                  dict(intermediate_size=64, moe_intermediate_size=48, shared_expert_intermediate_size=80,
                       num_experts=6, num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=1)),
    # Top-3 of 8 experts, not renormalised (OLMoE's default).
    "olmoe": (transformers.OlmoeConfig, transformers.OlmoeForCausalLM,
              dict(intermediate_size=40, num_experts=8, num_experts_per_tok=3, norm_topk_prob=False)),
    # Top-2 of 6, renormalised, no shared expert, q/k RMS norms.
    "qwen3_moe": (transformers.Qwen3MoeConfig, transformers.Qwen3MoeForCausalLM,
                  dict(intermediate_size=64, moe_intermediate_size=48, num_experts=6, num_experts_per_tok=2,
                       norm_topk_prob=True, head_dim=8)),
    # Sigmoid scores with a selection bias, top-2 of 8 within the best 2 of 4
    # groups, weights renormalised and scaled by 2.5, a shared expert, the
    # first layer dense, MLA attention (kv heads = heads).
    "deepseek_v3": (transformers.DeepseekV3Config, transformers.DeepseekV3ForCausalLM,
                    dict(intermediate_size=64, moe_intermediate_size=24, n_routed_experts=8, num_experts_per_tok=2,
                         n_group=4, topk_group=2, n_shared_experts=1, first_k_dense_replace=1,
                         num_key_value_heads=4, kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=8,
                         qk_nope_head_dim=8, v_head_dim=8, head_dim=8, routed_scaling_factor=2.5,
                         rope_interleave=False)),
    # Top-2 of 4 on router logits with a bias (softmax over the picks),
    # experts with biases and the clamped SwiGLU on interleaved columns,
    # sliding-window and full attention layers with sinks.
    "gpt_oss": (transformers.GptOssConfig, transformers.GptOssForCausalLM,
                dict(intermediate_size=32, num_local_experts=4, num_experts_per_tok=2, head_dim=8, sliding_window=4,
                     layer_types=["sliding_attention", "full_attention"])),
    # GLM-4.5's routing (DeepSeek-V3's with one group and no scaling:
    # routed_scaling_factor 1.0), a shared expert, the first layer dense,
    # partial rotary embeddings.
    "glm4_moe": (transformers.Glm4MoeConfig, transformers.Glm4MoeForCausalLM,
                 dict(intermediate_size=64, moe_intermediate_size=48, n_routed_experts=6, num_experts_per_tok=2,
                      n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1,
                      routed_scaling_factor=1.0, norm_topk_prob=True, head_dim=8, partial_rotary_factor=0.5)),
    # Ernie 4.5: experts picked by softmax scores plus a bias (moe_statics),
    # weighted by the unbiased scores renormalised (clamped at 1e-12), a
    # shared expert.
    "ernie4_5_moe": (transformers.Ernie4_5_MoeConfig, transformers.Ernie4_5_MoeForCausalLM,
                     dict(intermediate_size=64, moe_intermediate_size=48, moe_num_experts=6, moe_k=2,
                          moe_num_shared_experts=1, moe_layer_start_index=0, head_dim=8)),
    # Phi-3.5-MoE: SparseMixer top-2 of 4 (each pick's weight a softmax
    # over the logits near it), LayerNorm, biased attention projections.
    "phimoe": (transformers.PhimoeConfig, transformers.PhimoeForCausalLM,
               dict(intermediate_size=48, num_local_experts=4, num_experts_per_tok=2, head_dim=8)),
    # IBM Granite MoE: top-2 of 6 by softmax over the picked logits,
    # experts as one parallel linear layer.
    "granitemoe": (transformers.GraniteMoeConfig, transformers.GraniteMoeForCausalLM,
                   dict(intermediate_size=48, num_local_experts=6, num_experts_per_tok=2)),
    # LFM2-MoE (Liquid): sigmoid scores, experts picked on the scores plus a
    # bias, the picks divided by their sum + 1e-6; short-convolution layers
    # (Conv) next to attention ones.
    "lfm2_moe": (transformers.Lfm2MoeConfig, transformers.Lfm2MoeForCausalLM,
                 dict(intermediate_size=64, moe_intermediate_size=48, num_experts=6, num_experts_per_tok=2,
                      num_dense_layers=0, layer_types=["full_attention", "conv"])),
    # JetMoE: dropless MoE written as a sort of the flattened expert ids, the
    # rows split by expert counts (Split sizes read from the data) and a
    # mixture-of-attention; runs as plain ops.
    "jetmoe": (transformers.JetMoeConfig, transformers.JetMoeForCausalLM,
               dict(intermediate_size=48, num_local_experts=4, num_experts_per_tok=2, kv_channels=8,
                    num_key_value_heads=4)),
    # Families added to check that recognition generalises (none was looked
    # at before its export imported): AFMoE (sigmoid scores, a selection
    # bias, renormalised), dots.llm1 (DeepSeek-style with one group, a
    # shared expert, not renormalised), EXAONE-MoE (the first layer dense,
    # sigmoid with a selection bias, scaled by 2.5, a shared expert),
    # Hunyuan-MoE (softmax top-2 and a shared expert), MiniMax-M2 (sigmoid
    # with a selection bias), Qwen3.5-MoE (a sigmoid-gated shared expert).
    "afmoe": (transformers.AfmoeConfig, transformers.AfmoeForCausalLM,
              dict(intermediate_size=48, moe_intermediate_size=48, num_experts=4, num_experts_per_tok=2, head_dim=8,
                   num_dense_layers=0)),
    "dots1": (transformers.Dots1Config, transformers.Dots1ForCausalLM,
              dict(intermediate_size=64, moe_intermediate_size=48, n_routed_experts=6, num_experts_per_tok=2,
                   n_shared_experts=1, first_k_dense_replace=0, n_group=1, topk_group=1, head_dim=8)),
    "exaone_moe": (transformers.ExaoneMoeConfig, transformers.ExaoneMoeForCausalLM,
                   dict(intermediate_size=48, moe_intermediate_size=48, num_experts=4, num_experts_per_tok=2,
                        head_dim=8)),
    "hunyuan_moe": (transformers.HunYuanMoEV1Config, transformers.HunYuanMoEV1ForCausalLM,
                    dict(intermediate_size=48, num_experts=4, moe_topk=2, head_dim=8)),
    "minimax_m2": (transformers.MiniMaxM2Config, transformers.MiniMaxM2ForCausalLM,
                   dict(intermediate_size=48, num_local_experts=4, num_experts_per_tok=2, head_dim=8)),
    # Nemotron-H (NVIDIA's hybrid; its Mamba layers left out): DeepSeek-V3's
    # routing (sigmoid, a selection bias, groups, renormalised, scaled),
    # non-gated squared-ReLU experts and shared expert.
    "nemotron_h": (transformers.NemotronHConfig, transformers.NemotronHForCausalLM,
                   dict(layers_block_type=["full_attention", "moe"], moe_intermediate_size=48,
                        moe_shared_expert_intermediate_size=40, intermediate_size=64, n_routed_experts=8,
                        num_experts_per_tok=2, n_group=2, topk_group=1, routed_scaling_factor=2.5, head_dim=8)),
    "qwen3_5_moe": (transformers.Qwen3_5MoeTextConfig, transformers.Qwen3_5MoeForCausalLM,
                    dict(moe_intermediate_size=48, shared_expert_intermediate_size=48, num_experts=6,
                         num_experts_per_tok=2, head_dim=8, layer_types=["full_attention", "full_attention"])),
}
# Families whose MoE blocks run as plain ops (not raised to moe.layer): the
# Python drop-in (test/Python/test_huggingface.py) leaves them out.
PLAIN_OPS = {"jetmoe"}
TOKENS = 8  # the example input's length; the exported graph takes [batch, seq]
TORCHSCRIPT_BATCH = 8  # x max_position_embeddings tokens: the TorchScript example


class LogitsOnly(torch.nn.Module):
    """input_ids -> logits, without the KV cache (not an exportable output)."""

    def __init__(self, model, with_mask=False):
        super().__init__()
        self.model = model
        self.with_mask = with_mask

    def forward(self, input_ids):
        # An explicit all-ones mask keeps transformers 5's mask code out of
        # the trace (it calls ops TorchScript cannot export).
        mask = torch.ones_like(input_ids) if self.with_mask else None
        return self.model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits


def export(name, out_dir, exporter, opset, dtype="f32"):
    config_class, model_class, extra = MODELS[name]
    config = config_class(**{**COMMON, **extra})
    config._experts_implementation = "batched_mm" if exporter == "dynamo" else "eager"
    torch.manual_seed(0)
    model = model_class(config).eval()
    # Random weights of a realistic scale everywhere (fresh models leave
    # some at 0 or 1, which would hide mistakes).
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.5 if p.dim() == 1 else 0.2))
        # DeepSeek-V3's selection bias is a buffer, zero when fresh. Traced
        # exports keep only the experts the example input hits: there the
        # routers' biases are small enough that every expert is.
        bias_scale = 0.05 if exporter == "torchscript" else 0.5
        for buffer_name, buffer in model.named_buffers():
            if buffer_name.endswith("e_score_correction_bias"):
                buffer.copy_(torch.randn_like(buffer) * bias_scale)
        for param_name, param in model.named_parameters():
            if param_name.endswith("router.bias"):
                param.mul_(bias_scale / 0.5)
    if dtype == "f16":
        # A half-precision model as users export one for serving: f16
        # weights and activations, routing and the experts' weighted sum in
        # f32 as transformers computes them (Casts in the graph).
        model = model.half()
    # Batch 2: an example batch of 1 would be specialised into the graph.
    ids = torch.randint(0, COMMON["vocab_size"], (2, TOKENS))
    if exporter == "torchscript":
        # Tracing keeps the experts this input hits (transformers' loop over
        # hit experts): enough tokens that every expert of every layer is.
        ids = torch.randint(0, COMMON["vocab_size"], (TORCHSCRIPT_BATCH, COMMON["max_position_embeddings"]))
        path = os.path.join(out_dir, f"{name}_torchscript{'_f16' if dtype == 'f16' else ''}.onnx")
        torch.onnx.export(LogitsOnly(model, with_mask=True), (ids,), path, input_names=["input_ids"],
                          output_names=["logits"], opset_version=opset, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}})
        print(f"wrote {path} ({os.path.getsize(path)} B, weights inline)")
        write_reference(model, path.replace(".onnx", ".reference.npz"))
        return
    suffix = "_f16" if dtype == "f16" else ""
    path = os.path.join(out_dir, f"{name}{suffix}.onnx")
    # Any batch and sequence length, as a user exports for serving.
    dims = {0: torch.export.Dim("batch", min=1, max=64), 1: torch.export.Dim("seq", min=2, max=COMMON["max_position_embeddings"])}
    torch.onnx.export(LogitsOnly(model), (ids,), path, input_names=["input_ids"], output_names=["logits"],
                      opset_version=opset, dynamo=True, external_data=True, dynamic_shapes={"input_ids": dims})
    strip_stack_traces(path)
    print(f"wrote {path} ({os.path.getsize(path)} B + {os.path.getsize(path + '.data')} B of weights)")
    if dtype == "f16":
        # onnxruntime's f16 kernels round differently from PyTorch's: the
        # reference is PyTorch's own logits.
        write_reference(model, path.replace(".onnx", ".reference.npz"))


# The batch x sequence sizes the tests run: a traced loop over the experts
# the example hit is valid (for onnxruntime) only for inputs hitting the
# same ones, so these exports carry PyTorch's own logits to compare with.
REFERENCE_SIZES = ((2, 5), (1, 33), (3, 2))


def write_reference(model, path):
    """PyTorch's logits for random ids of each REFERENCE_SIZES, as
    ids_<i>/logits_<i> arrays in an .npz next to the model."""
    import numpy as np

    arrays = {}
    with torch.no_grad():
        for i, (batch, seq) in enumerate(REFERENCE_SIZES):
            ids = torch.from_numpy(np.random.default_rng(100 + i).integers(0, COMMON["vocab_size"], (batch, seq)))
            arrays[f"ids_{i}"] = ids.numpy()
            arrays[f"logits_{i}"] = LogitsOnly(model, with_mask=True)(ids).numpy()
    np.savez(path, **arrays)
    print(f"wrote {path} (PyTorch's logits at {len(REFERENCE_SIZES)} sizes)")


def strip_stack_traces(path):
    """Drops the Python stack traces torch.onnx records on every node: they
    name files of the machine that exported the model. The weights in the
    external data file are left as they are."""
    import onnx  # torch.onnx needs it too

    model = onnx.load(path, load_external_data=False)
    for node in model.graph.node:
        kept = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    onnx.save(model, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "test", "Onnx", "Inputs", "hf"))
    parser.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo",
                        help="torch.onnx's exporter (torchscript: dynamo=False, the per-expert loop traced)")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--dtype", choices=["f32", "f16"], default="f32",
                        help="f16: the model in half precision, written as NAME[_torchscript]_f16.onnx")
    parser.add_argument("models", nargs="*", default=list(MODELS))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    for name in args.models:
        export(name, args.out, args.exporter, args.opset, args.dtype)


if __name__ == "__main__":
    main()
