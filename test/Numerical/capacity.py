# Capacity, dropping, padding and Rectify-Router (f32, rel err <= 1e-5).
# Few experts and many tokens so that experts overflow and rows are dropped.
# RUN: %moe_python %s

from moe_reference.harness import main


def layer(capacity, k=2, experts=4, normalize="none"):
    return dict(experts=[("ffn", experts)], activation="swiglu",
                routing=dict(scoring="softmax", k=k, normalize=normalize), capacity=capacity)


SHAPE = dict(tokens=32, hidden=16, ffn=8)
# 300 tokens x 2 slots = 600 scan steps: three dispatch chunks of 256, so an
# expert's ranks continue across chunk boundaries.
CHUNKED = dict(tokens=300, hidden=16, ffn=8)
CASES = [
    ("drop_probs_padded", dict(cfg=layer(dict(factor=0.75, drop="probs", pad=True)), **SHAPE)),
    ("drop_position_padded", dict(cfg=layer(dict(factor=0.75, drop="position", pad=True)), **SHAPE)),
    ("drop_probs_compact", dict(cfg=layer(dict(factor=0.5, drop="probs")), **SHAPE)),
    ("drop_position_compact", dict(cfg=layer(dict(tokens=6, drop="position")), **SHAPE)),
    ("drop_slot_position_padded", dict(cfg=layer(dict(tokens=5, drop="slot_position", pad=True)), **SHAPE)),
    ("capacity_no_overflow", dict(cfg=layer(dict(factor=4.0, pad=True)), **SHAPE)),
    ("switch_top1", dict(cfg=layer(dict(factor=1.25, pad=True), k=1), **SHAPE)),
    ("rectify_fill_in", dict(cfg=layer(dict(factor=1.0, pad=True, rectify="fill_in"), normalize="all"), **SHAPE)),
    ("rectify_intra_device", dict(cfg=layer(dict(factor=0.5, pad=True, rectify="intra_device",
                                                 experts_per_device=2)), **SHAPE)),
    ("rectify_both", dict(cfg=layer(dict(factor=0.75, pad=True, rectify="both", experts_per_device=2),
                                    normalize="all"), **SHAPE)),
    ("rectify_intra_compact", dict(cfg=layer(dict(tokens=5, rectify="intra_device", experts_per_device=1)),
                                   **SHAPE)),
    ("chunked_dropless", dict(cfg=layer(None, experts=5), **CHUNKED)),
    ("chunked_drop_position", dict(cfg=layer(dict(factor=0.75, drop="position")), **CHUNKED)),
    ("chunked_drop_slot_position_padded",
     dict(cfg=layer(dict(factor=0.75, drop="slot_position", pad=True)), **CHUNKED)),
]

main(CASES)
