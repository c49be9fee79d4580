# Every expert kind and activation, shared experts, and MoE++ (f32, rel err <= 1e-5).
# RUN: %moe_python %s

from moe_reference.harness import main

SOFTMAX_K2 = dict(scoring="softmax", k=2)


def layer(experts, activation="swiglu", routing=SOFTMAX_K2, **extra):
    return dict(experts=experts, activation=activation, routing=routing, **extra)


CASES = [(f"activation_{act}", dict(cfg=layer([("ffn", 4)], act), tokens=16, hidden=16, ffn=8))
         for act in ("swiglu", "geglu", "geglu_tanh", "gelu", "gelu_tanh", "relu", "relu2", "silu", "linear")]
CASES += [
    # MoE++ released code: FFN + constant + copy + zero, zero left out of the
    # renormalization, expert input scaled by k = 2, two-layer router, gating residual.
    ("moe_plus_plus", dict(cfg=layer([("ffn", 4), ("constant", 2), ("copy", 1), ("zero", 1)],
                                     routing=dict(scoring="softmax", k=2, normalize="computing", input_scale=2.0),
                                     hidden=32, residual=True),
                           tokens=32, hidden=16, ffn=8)),
    # Each zero-computation kind on its own next to the FFN experts.
    ("copy_expert", dict(cfg=layer([("ffn", 3), ("copy", 1)]), tokens=16, hidden=16, ffn=8)),
    ("constant_experts", dict(cfg=layer([("ffn", 3), ("constant", 3)], routing=dict(scoring="softmax", k=3)),
                              tokens=16, hidden=16, ffn=8)),
    ("zero_expert_all_normalized", dict(cfg=layer([("ffn", 3), ("zero", 1)], routing=dict(scoring="softmax", k=2,
                                                                                           normalize="all")),
                                        tokens=16, hidden=16, ffn=8)),
    # AdaMoE: null experts, renormalized over the true experts only.
    ("adamoe_null", dict(cfg=layer([("ffn", 6), ("null", 4)], routing=dict(scoring="softmax", k=4,
                                                                          normalize="computing")),
                         tokens=32, hidden=16, ffn=8)),
    # Shared experts: plain (DeepSeek) and sigmoid-gated (Qwen2-MoE).
    ("shared_expert", dict(cfg=layer([("ffn", 8)], routing=dict(scoring="softmax", k=2, normalize="all"), shared=12),
                           tokens=16, hidden=16, ffn=8)),
    ("shared_expert_gated", dict(cfg=layer([("ffn", 8)], routing=dict(scoring="softmax", k=4), shared=16,
                                           shared_gate=True), tokens=16, hidden=16, ffn=8)),
    # Experts with biases (linear layers with biases), with a router bias, a
    # shared expert, zero-computation experts next to them, a capacity, bf16.
    ("expert_bias_swiglu", dict(cfg=layer([("ffn", 6)], routing=dict(scoring="softmax", k=2, normalize="all"),
                                          expert_bias=True, router_bias=True, shared=12),
                                tokens=24, hidden=16, ffn=8)),
    ("expert_bias_gelu_zero", dict(cfg=layer([("ffn", 4), ("zero", 1), ("copy", 1)], "gelu", expert_bias=True),
                                   tokens=16, hidden=16, ffn=8)),
    ("expert_bias_capacity", dict(cfg=layer([("ffn", 4)], "relu", expert_bias=True,
                                            capacity=dict(factor=1.0, drop="probs", pad=True)),
                                  tokens=16, hidden=16, ffn=8)),
    ("expert_bias_bf16", dict(cfg=layer([("ffn", 4)], "geglu", expert_bias=True), tokens=16, hidden=16, ffn=8,
                              dtype="bf16")),
    # A two-layer router without a residual.
    ("two_layer_router", dict(cfg=layer([("ffn", 4)], hidden=24), tokens=16, hidden=16, ffn=8)),
]

main(CASES)
