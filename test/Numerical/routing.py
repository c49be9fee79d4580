# Every routing mode through moe-run against the numpy reference (f32, rel err <= 1e-5).
# RUN: %moe_python %s

from moe_reference.harness import main


def ffn_layer(routing, experts=8, activation="swiglu", **extra):
    return dict(experts=[("ffn", experts)], activation=activation, routing=routing, **extra)


CASES = [
    # Mixtral: top-k on the logits, softmax over the k.
    ("select_then_score_k2", dict(cfg=ffn_layer(dict(scoring="softmax", k=2, order="select_then_score")),
                                  tokens=24, hidden=32, ffn=16)),
    # Softmax then top-k, no renormalization (Qwen2-MoE, OLMoE).
    ("softmax_topk_k4", dict(cfg=ffn_layer(dict(scoring="softmax", k=4)), tokens=24, hidden=32, ffn=16)),
    # Renormalized, scaled.
    ("softmax_topk_normalized_scaled", dict(cfg=ffn_layer(dict(scoring="softmax", k=3, normalize="all", scale=1.5)),
                                            tokens=24, hidden=32, ffn=16)),
    # k = 1 .. E.
    ("k1", dict(cfg=ffn_layer(dict(scoring="softmax", k=1)), tokens=16, hidden=16, ffn=8)),
    ("k_equals_E", dict(cfg=ffn_layer(dict(scoring="softmax", k=8, normalize="all")), tokens=16, hidden=16, ffn=8)),
    ("k1_select_then_score", dict(cfg=ffn_layer(dict(scoring="softmax", k=1, order="select_then_score")),
                                  tokens=16, hidden=16, ffn=8)),
    # DeepSeek-V3: sigmoid, selection bias, grouped top-k (top2_sum and max), scaled.
    ("sigmoid_bias_grouped", dict(cfg=ffn_layer(dict(scoring="sigmoid", k=4, normalize="all", scale=2.5,
                                                     num_groups=4, topk_groups=2), experts=16, bias=True),
                                  tokens=24, hidden=32, ffn=16)),
    ("sigmoid_grouped_max", dict(cfg=ffn_layer(dict(scoring="sigmoid", k=2, normalize="all", num_groups=4,
                                                    topk_groups=1, group_score="max"), experts=16),
                                 tokens=24, hidden=32, ffn=16)),
    # LFM2-MoE: sigmoid top-k with a selection bias, the picks divided by
    # their sum + epsilon (1e-3 here so that the epsilon moves the weights
    # far beyond the tolerance), scaled; and softmax with one.
    ("sigmoid_bias_norm_epsilon", dict(cfg=ffn_layer(dict(scoring="sigmoid", k=4, normalize="all",
                                                          norm_epsilon=1e-3, scale=1.5), bias=True),
                                       tokens=24, hidden=32, ffn=16)),
    ("softmax_norm_epsilon", dict(cfg=ffn_layer(dict(scoring="softmax", k=2, normalize="all", norm_epsilon=0.25)),
                                  tokens=24, hidden=32, ffn=16)),
    ("sigmoid_scale_only", dict(cfg=ffn_layer(dict(scoring="sigmoid", k=2, scale=1.5)), tokens=16, hidden=16, ffn=8)),
    # A router with its own bias (nn.Linear(H, E) with the default bias): f32,
    # and bf16, where the product is rounded before the bias is added.
    ("router_bias_softmax_topk", dict(cfg=ffn_layer(dict(scoring="softmax", k=2, normalize="all"), router_bias=True),
                                      tokens=24, hidden=32, ffn=16)),
    ("router_bias_select_then_score_bf16", dict(cfg=ffn_layer(dict(scoring="softmax", k=2, order="select_then_score"),
                                                              router_bias=True, shared=16),
                                                tokens=24, hidden=32, ffn=16, dtype="bf16")),
    # ReMoE: ReLU scores, every positive expert.
    ("relu_threshold", dict(cfg=ffn_layer(dict(scoring="relu", select="threshold", k=8), activation="relu"),
                            tokens=24, hidden=32, ffn=16)),
    ("relu_threshold_capped", dict(cfg=ffn_layer(dict(scoring="relu", select="threshold", k=3, threshold=0.05)),
                                   tokens=24, hidden=32, ffn=16)),
    # GG MoE: Gumbel-softmax averaged over 10 samples, dense.
    ("gumbel_dense", dict(cfg=ffn_layer(dict(scoring="gumbel_softmax", k=8, tau=0.5, samples=10, seed=7),
                                        activation="relu"), tokens=16, hidden=16, ffn=8)),
    # Expert choice and bidirectional selection.
    ("expert_choice", dict(cfg=ffn_layer(dict(scoring="softmax", select="expert_choice", capacity=5),
                                         activation="gelu"), tokens=16, hidden=16, ffn=8)),
    ("bidirectional", dict(cfg=ffn_layer(dict(scoring="softmax", select="bidirectional", k=2, capacity=4),
                                         activation="gelu"), tokens=16, hidden=16, ffn=8)),
]

main(CASES)
