# convert-moe-to-linalg{parallel-contractions}, the form moe-gpu-pipeline
# maps to GPU threads (one linalg.generic per matmul; grouped matmuls gather
# each row's expert weights), run on the CPU against the float64 reference:
# f32 rel err <= 1e-5, bf16 <= 8e-3. It covers every contraction the
# lowering emits: router (and its tanh hidden layer), routed GEMMs with and
# without the fused epilogues, the folded shared expert, the dense shared
# expert with its gate, capacity with padding (rows without an expert), and
# MoE++ constant experts (their mixing matmul).
# RUN: %moe_python %s

from moe_reference.harness import main

PARALLEL = ["--convert-moe-to-linalg=parallel-contractions"]
OPTIMIZED = ["--moe-optimize"] + PARALLEL
LAYERS = {
    "mixtral": dict(experts=[("ffn", 8)], activation="swiglu",
                    routing=dict(scoring="softmax", k=2, order="select_then_score")),
    "capacity_pad": dict(experts=[("ffn", 4)], activation="geglu", routing=dict(scoring="softmax", k=2),
                         capacity=dict(factor=1.0, pad=True)),
    "qwen2_gated_shared": dict(experts=[("ffn", 8)], activation="swiglu",
                               routing=dict(scoring="softmax", k=2), shared=24, shared_gate=True),
    "moe_plus_plus": dict(experts=[("ffn", 8), ("constant", 2), ("copy", 1), ("zero", 1)], activation="swiglu",
                          routing=dict(scoring="softmax", k=2, normalize="computing", input_scale=2.0),
                          residual=True),
}
CASES = []
for name, cfg in LAYERS.items():
    for dtype in ("f32", "bf16"):
        shape = dict(cfg=cfg, tokens=40, hidden=32, ffn=16, dtype=dtype)
        CASES.append((f"{name}_{dtype}", dict(shape, passes=PARALLEL, expect="linalg.generic")))
    CASES.append((f"{name}_optimized", dict(cfg=cfg, tokens=40, hidden=32, ffn=16, passes=OPTIMIZED,
                                            expect="linalg.generic", fused=True)))
# A folded shared expert (routed GEMMs with a shared weight), plain and gated.
for gate in (False, True):
    CASES.append((f"fold_shared_gate{int(gate)}",
                  dict(cfg=dict(experts=[("ffn", 8)], activation="swiglu",
                                routing=dict(scoring="sigmoid", k=2, normalize="all"), shared=16,
                                shared_gate=gate),
                       tokens=33, hidden=32, ffn=16, passes=OPTIMIZED, expect="linalg.generic", fused=True)))
main(CASES)
