# moe-eliminate-zero-experts preserves results: each layer runs through
# moe-run without and with the pass, and both must match the float64
# reference (f32, rel err <= 1e-5); the pass must have fired.
# RUN: %moe_python %s

from moe_reference.harness import main

PASSES = ["--moe-decompose", "--moe-eliminate-zero-experts"]
LAYERS = {
    "moe_plus_plus": dict(experts=[("ffn", 8), ("constant", 2), ("copy", 1), ("zero", 1)], activation="swiglu",
                          routing=dict(scoring="softmax", k=2, normalize="computing", input_scale=2.0),
                          hidden=32, residual=True),
    "adamoe_null": dict(experts=[("ffn", 6), ("null", 4)], activation="swiglu",
                        routing=dict(scoring="softmax", k=4, normalize="computing")),
    "copy_and_zero_k3": dict(experts=[("ffn", 4), ("copy", 2), ("zero", 2)], activation="gelu",
                             routing=dict(scoring="softmax", k=3, normalize="all")),
}
CASES = []
for name, cfg in LAYERS.items():
    shape = dict(cfg=cfg, tokens=48, hidden=32, ffn=16)
    CASES.append((name + "_before", shape))
    CASES.append((name + "_after", dict(shape, passes=PASSES, expect="moe.restrict_slots")))
# The default pipeline runs the same elimination.
CASES.append(("moe_plus_plus_moe_optimize", dict(cfg=LAYERS["moe_plus_plus"], tokens=48, hidden=32, ffn=16,
                                                  passes=["--moe-optimize"], expect="moe.restrict_slots")))
main(CASES)
