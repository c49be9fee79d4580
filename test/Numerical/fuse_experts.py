# moe-fuse-experts and the whole moe-optimize pipeline preserve results: each
# layer runs through moe-run without and with the passes, against the float64
# reference. f32: rel err <= 1e-5 (the fused program computes what the unfused
# one did). bf16: <= 8e-3, against a reference that rounds where each program
# stores bf16: the fused GEMMs keep their f32 results for the activation and
# the combine, the unfused ones round them first.
# RUN: %moe_python %s

from moe_reference.harness import main

FUSE = ["--moe-decompose", "--moe-fuse-experts"]
LAYERS = {
    "mixtral_swiglu": dict(experts=[("ffn", 8)], activation="swiglu",
                           routing=dict(scoring="softmax", k=2, order="select_then_score")),
    "geglu_capacity": dict(experts=[("ffn", 4)], activation="geglu", routing=dict(scoring="softmax", k=2),
                           capacity=dict(factor=1.0, pad=True)),
    "relu_shared": dict(experts=[("ffn", 8)], activation="relu", routing=dict(scoring="sigmoid", k=2,
                                                                              normalize="all"), shared=16),
}
CASES = []
for name, cfg in LAYERS.items():
    for dtype in ("f32", "bf16"):
        shape = dict(cfg=cfg, tokens=32, hidden=32, ffn=16, dtype=dtype)
        CASES.append((f"{name}_{dtype}_unfused", shape))
        CASES.append((f"{name}_{dtype}_fused", dict(shape, passes=FUSE, expect="moe.grouped_matmul_combine",
                                                    fused=True)))
# Routing fusion alone, on every selection kind (the CPU runs the body inline).
for name, routing in (("topk_grouped", dict(scoring="sigmoid", k=4, normalize="all", num_groups=4, topk_groups=2)),
                      ("threshold", dict(scoring="relu", select="threshold", k=8)),
                      ("expert_choice", dict(scoring="softmax", select="expert_choice", capacity=6))):
    CASES.append((f"fuse_routing_{name}", dict(cfg=dict(experts=[("ffn", 8)], activation="swiglu", routing=routing),
                                               tokens=32, hidden=32, ffn=16,
                                               passes=["--moe-decompose", "--moe-fuse-routing"],
                                               expect="moe.fused_routing")))
# A shared expert shaped like a routed one folds into the routed GEMMs
# (moe-fold-shared-expert, in moe-optimize), plain and sigmoid-gated.
for name, gate in (("fold_shared", False), ("fold_shared_gated", True)):
    CASES.append((name, dict(cfg=dict(experts=[("ffn", 8)], activation="swiglu",
                                      routing=dict(scoring="sigmoid", k=2, normalize="all"),
                                      shared=16, shared_gate=gate),
                             tokens=32, hidden=32, ffn=16, passes=["--moe-optimize"], expect="shared(%",
                             fused=True)))
# The default pipeline on MoE++: decomposition, elimination and fusion together.
MOE_PLUS_PLUS = dict(experts=[("ffn", 8), ("constant", 2), ("copy", 1), ("zero", 1)], activation="swiglu",
                     routing=dict(scoring="softmax", k=2, normalize="computing", input_scale=2.0), hidden=32,
                     residual=True)
CASES.append(("moe_plus_plus_moe_optimize", dict(cfg=MOE_PLUS_PLUS, tokens=48, hidden=32, ffn=16,
                                                  passes=["--moe-optimize"], expect="moe.grouped_matmul_act",
                                                  fused=True)))
main(CASES)
