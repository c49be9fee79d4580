# Token counts from 1 to 1024, up to 256 experts, static and dynamic token
# dimensions, and the f16 / bf16 paths.
# Tolerances (normwise relative error): f32 1e-5 against float64; f16 2e-3 and
# bf16 8e-3 (two bf16 ulps, 2 x 2^-8), where the reference rounds every op's
# result to the storage type as the compiled program does, so what is left is
# f32-vs-f64 accumulation, which can move a value across a rounding boundary.
# RUN: %moe_python %s

from moe_reference.harness import main

MIXTRAL_ROUTING = dict(scoring="softmax", k=2, order="select_then_score")


def layer(experts, routing, activation="swiglu", **extra):
    return dict(experts=[("ffn", experts)], activation=activation, routing=routing, **extra)


CASES = [
    ("one_token", dict(cfg=layer(8, MIXTRAL_ROUTING), tokens=1, hidden=32, ffn=16)),
    ("one_token_static", dict(cfg=layer(8, MIXTRAL_ROUTING), tokens=1, hidden=32, ffn=16, dynamic_tokens=False)),
    ("many_tokens", dict(cfg=layer(8, MIXTRAL_ROUTING), tokens=1024, hidden=64, ffn=32)),
    ("static_tokens", dict(cfg=layer(8, dict(scoring="softmax", k=2)), tokens=64, hidden=32, ffn=16,
                           dynamic_tokens=False)),
    ("experts_256_top8", dict(cfg=layer(256, dict(scoring="softmax", k=8, normalize="all")), tokens=64,
                              hidden=32, ffn=8)),
    ("bf16", dict(cfg=layer(8, MIXTRAL_ROUTING), tokens=64, hidden=64, ffn=32, dtype="bf16")),
    ("bf16_shared_sigmoid", dict(cfg=layer(16, dict(scoring="sigmoid", k=4, normalize="all", num_groups=4,
                                                    topk_groups=2), bias=True, shared=32),
                                 tokens=32, hidden=64, ffn=32, dtype="bf16")),
    ("f16", dict(cfg=layer(8, dict(scoring="softmax", k=2, normalize="all")), tokens=64, hidden=64, ffn=32,
                 dtype="f16")),
]

main(CASES)
