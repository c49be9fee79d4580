# moe-tensor-core-gemm: bf16/f16 grouped matmuls as tiled tensor-core
# kernels (64 x 64 tiles, K steps of 32). Every case also runs as the
# emulated GPU program (moe-run --gpu-emulation), where the kernel's tiling,
# staging, expert visits and epilogue run on the CPU, and is compiled to
# sm_80/sm_90 cubins. The shapes cross every tile edge: rows (tokens x k)
# spanning several partial row tiles, FFN and hidden sizes that are not
# multiples of 64 or 32 (partial column tiles and K steps), many experts with
# few tokens (experts without rows are skipped), capacity padding (rows of no
# expert), a folded shared expert. Tolerances: bf16 8e-3, f16 2e-3 (normwise,
# against the float64 reference). They also run with the sm_90a (wgmma)
# kernels emulated (moe-run --gpu-emulation --emulate-wgmma): the TMA
# boxes, the expert visits, the D fragment layout and the epilogue.
# RUN: %moe_python %s

from moe_reference.harness import main

OPTIMIZED = ["--moe-optimize"]
CASES = []
for dtype in ("bf16", "f16"):
    CASES += [
        (f"rows_cols_k_edges_{dtype}",
         dict(cfg=dict(experts=[("ffn", 8)], activation="swiglu",
                       routing=dict(scoring="softmax", k=2, order="select_then_score")),
              tokens=100, hidden=72, ffn=40, dtype=dtype, passes=OPTIMIZED, fused=True)),
        (f"many_experts_few_tokens_{dtype}",
         dict(cfg=dict(experts=[("ffn", 64)], activation="swiglu", routing=dict(scoring="softmax", k=4)),
              tokens=5, hidden=48, ffn=24, dtype=dtype, passes=OPTIMIZED, fused=True)),
        (f"capacity_padding_{dtype}",
         dict(cfg=dict(experts=[("ffn", 4)], activation="geglu", routing=dict(scoring="softmax", k=2),
                       capacity=dict(factor=1.0, pad=True)),
              tokens=70, hidden=40, ffn=36, dtype=dtype, passes=OPTIMIZED, fused=True)),
        (f"folded_shared_expert_{dtype}",
         dict(cfg=dict(experts=[("ffn", 8)], activation="swiglu",
                       routing=dict(scoring="sigmoid", k=2, normalize="all"), shared=40, shared_gate=True),
              tokens=45, hidden=64, ffn=32, dtype=dtype, passes=OPTIMIZED, fused=True)),
    ]
# K = 320 (5 steps of 64 for the Hopper kernel, 10 of 32 for mma.sync):
# the stage ring wraps within each expert and continues across the experts
# a row tile visits.
CASES.append(("deep_k_ring_bf16",
              dict(cfg=dict(experts=[("ffn", 4)], activation="swiglu", routing=dict(scoring="softmax", k=2)),
                   tokens=40, hidden=320, ffn=136, dtype="bf16", passes=OPTIMIZED, fused=True)))
# Unfused: the plain grouped matmul (no epilogue) also takes the kernel.
CASES.append(("unfused_bf16",
              dict(cfg=dict(experts=[("ffn", 6)], activation="gelu", routing=dict(scoring="softmax", k=2)),
                   tokens=90, hidden=80, ffn=96, dtype="bf16", passes=[])))
main(CASES, wgmma_emulation=True)
