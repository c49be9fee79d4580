# Layers shaped like released MoE models (hidden sizes reduced where noted so
# the suite stays fast on a 2-core machine). f32, rel err <= 1e-5.
# The full-size Mixtral-8x7B layer is in mixtral_8x7b.py.
# RUN: %moe_python %s

from moe_reference.harness import main

CASES = [
    # DeepSeek-V3: 256 routed experts, sigmoid + selection bias, 8 groups of
    # which 4 are kept, top-8, renormalized, scaled by 2.5, one shared expert
    # (hidden 7168 -> 128, expert FFN 2048 -> 32).
    ("deepseek_v3", dict(cfg=dict(experts=[("ffn", 256)], activation="swiglu",
                                  routing=dict(scoring="sigmoid", k=8, normalize="all", scale=2.5,
                                               num_groups=8, topk_groups=4),
                                  bias=True, shared=32),
                         tokens=32, hidden=128, ffn=32)),
    # OLMoE-1B-7B: 64 experts, softmax then top-8, no renormalization
    # (hidden 2048 -> 128, FFN 1024 -> 64).
    ("olmoe", dict(cfg=dict(experts=[("ffn", 64)], activation="swiglu", routing=dict(scoring="softmax", k=8)),
                   tokens=32, hidden=128, ffn=64)),
    # Qwen3-30B-A3B: 128 experts, top-8 renormalized (hidden 2048 -> 128, FFN 768 -> 48).
    ("qwen3_moe", dict(cfg=dict(experts=[("ffn", 128)], activation="swiglu",
                                routing=dict(scoring="softmax", k=8, normalize="all")),
                       tokens=32, hidden=128, ffn=48)),
    # Qwen1.5/2-MoE: 60 experts top-4 and a sigmoid-gated shared expert 4x wide.
    ("qwen2_moe", dict(cfg=dict(experts=[("ffn", 60)], activation="swiglu", routing=dict(scoring="softmax", k=4),
                                shared=128, shared_gate=True),
                       tokens=32, hidden=128, ffn=32)),
    # MoE++ (its 7B config has 16 FFN + 4 zero-computation experts): 2 constant,
    # copy, zero; two-layer tanh router 8N wide, gating residual, input x k.
    ("moe_plus_plus", dict(cfg=dict(experts=[("ffn", 16), ("constant", 2), ("copy", 1), ("zero", 1)],
                                    activation="swiglu",
                                    routing=dict(scoring="softmax", k=2, normalize="computing", input_scale=2.0),
                                    hidden=160, residual=True),
                           tokens=32, hidden=128, ffn=64)),
    # Switch Transformer: top-1 with capacity factor 1.25, padded (ReLU FFN).
    ("switch", dict(cfg=dict(experts=[("ffn", 8)], activation="relu", routing=dict(scoring="softmax", k=1),
                             capacity=dict(factor=1.25, pad=True)),
                    tokens=64, hidden=64, ffn=128)),
]

main(CASES)
