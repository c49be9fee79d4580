# Grouped routing (MEO's sequence-level gating, #moe.routing group_size): the
# router sees the mean of each group of consecutive tokens and every token
# uses its group's selection. f32, rel err <= 1e-5; the last group may be
# shorter than group_size (40 tokens in groups of 16).
# RUN: %moe_python %s

from moe_reference.harness import main


def layer(activation, group, **routing):
    return dict(experts=[("ffn", 6)], activation=activation,
                routing=dict(scoring="softmax", k=2, group_size=group, **routing))


main([
    ("linear_groups_of_8", dict(cfg=layer("linear", 8, order="select_then_score"), tokens=32, hidden=16, ffn=16)),
    ("swiglu_partial_group", dict(cfg=layer("swiglu", 16, normalize="all"), tokens=40, hidden=16, ffn=8)),
    ("one_group", dict(cfg=layer("gelu", 64), tokens=24, hidden=16, ffn=8, dynamic_tokens=False)),
])
