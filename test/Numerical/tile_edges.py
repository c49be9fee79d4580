# The CPU contraction kernel (lib/Conversion/MoeToLinalg/VectorContraction.cpp)
# works in register tiles of MR x NR outputs (4 x 6 for 512-bit vectors,
# 3 x 4 for 256-bit ones), vectors of 16 (8) f32 lanes along k with a masked
# last one, inside parallel blocks of 64 rows x a column panel (for grouped
# matmuls, (column panel, expert) pairs whose rows run in blocks of 64; two or
# more rows left after whole tiles take one overhanging tile). These shapes
# are multiples of none of them: k shorter than one vector, odd sizes, one
# token with k = E, experts with no rows or one row, more rows than one block
# and more columns than one panel. Each runs with the tiles of this machine's
# vector width and with the 256-bit tiles (moe-run --vector-bits 256).
# Tolerances as in shapes.py: f32 1e-5 against float64; f16 2e-3 and bf16
# 8e-3 against a reference that rounds each op's result to the storage type.
# RUN: %moe_python %s

from moe_reference.harness import main

MIXTRAL_ROUTING = dict(scoring="softmax", k=2, order="select_then_score")


def layer(experts, routing, activation="swiglu", **extra):
    return dict(experts=[("ffn", experts)], activation=activation, routing=routing, **extra)


CASES = [
    ("k_below_one_vector", dict(cfg=layer(8, MIXTRAL_ROUTING), tokens=5, hidden=7, ffn=5)),
    ("odd_sizes", dict(cfg=layer(8, MIXTRAL_ROUTING), tokens=23, hidden=37, ffn=13)),
    ("one_token_k_equals_e", dict(cfg=layer(8, dict(scoring="softmax", k=8, normalize="all")), tokens=1,
                                  hidden=48, ffn=22)),
    ("rows_and_columns_beyond_one_block",
     dict(cfg=layer(4, dict(scoring="softmax", k=4, normalize="all")), tokens=203, hidden=40, ffn=211)),
    ("idle_experts", dict(cfg=layer(64, dict(scoring="softmax", k=1)), tokens=3, hidden=33, ffn=17)),
    ("bf16_odd", dict(cfg=layer(8, MIXTRAL_ROUTING), tokens=19, hidden=45, ffn=27, dtype="bf16")),
    ("f16_odd", dict(cfg=layer(8, dict(scoring="softmax", k=2, normalize="all")), tokens=11, hidden=21, ffn=9,
                     dtype="f16")),
]

main(CASES, cpu_vector_bits=[256])
