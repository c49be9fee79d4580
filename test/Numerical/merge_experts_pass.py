# moe-merge-experts (MEO) against the float64 reference, f32.
#  * Linear experts with sequence-level (grouped) routing: the merge is exact,
#    rel err <= 1e-5 against the layer's own reference.
#  * approximate=true on non-linear experts: checked (rel err <= 1e-5) against
#    a reference of the merged computation itself, D_m act(U_m x) with the
#    weights mixed by the group's gates; the script prints how far that is
#    from the layer's real function (docs/passes.md records it).
# RUN: %moe_python %s

import numpy as np

from moe_reference import layer as L
from moe_reference import ops
from moe_reference.harness import main
from moe_reference.numerics import F32, round_to


def merged_reference(cfg, a, dtype):
    """The approximate MEO computation: per group, experts mixed by the gates."""
    r = cfg["routing"]
    group = r["group_size"]
    x = a["x"]
    z = round_to(ops.router(ops.group_mean(x, group), a["router_weight"]), F32)
    w, idx = ops.topk(z, r["k"])
    w = ops.renormalize("softmax", w, idx) if r.get("order") == "select_then_score" else w
    gates = np.zeros((z.shape[0], z.shape[1]))
    for g in range(z.shape[0]):
        for j in range(idx.shape[1]):
            gates[g, idx[g, j]] += w[g, j]
    up, down = ops.merge_experts(a["ffn_up"], gates), ops.merge_experts(a["ffn_down"], gates)
    y = np.concatenate([ops.activation(cfg["activation"], x[s:s + group] @ up[s // group].T) @ down[s // group].T
                        for s in range(0, x.shape[0], group)])
    return y, ops.expand_groups(z, x.shape[0], group)


def cfg(activation):
    return dict(experts=[("ffn", 4)], activation=activation,
                routing=dict(scoring="softmax", k=2, order="select_then_score", group_size=128))


SHAPE = dict(tokens=512, hidden=16, ffn=64)
main([
    ("meo_linear_unmerged", dict(cfg=cfg("linear"), **SHAPE)),
    ("meo_linear_exact", dict(cfg=cfg("linear"), passes=["--moe-merge-experts"], expect="moe.compose_experts",
                              **SHAPE)),
    ("meo_linear_moe_optimize", dict(cfg=cfg("linear"), passes=["--moe-optimize"], expect="moe.compose_experts",
                                     **SHAPE)),
    ("meo_swiglu_approximate", dict(cfg=cfg("swiglu"), passes=["--moe-merge-experts=approximate=true"],
                                    expect="moe.merge_experts", reference=merged_reference, **SHAPE)),
    ("meo_gelu_approximate", dict(cfg=cfg("gelu"), passes=["--moe-merge-experts=approximate=true"],
                                  expect="moe.merge_experts", reference=merged_reference, **SHAPE)),
])
