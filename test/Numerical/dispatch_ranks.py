# drop = probs and fill-in rank each expert's slots by weight (ties: earlier
# slot; NaN last; -0 ties +0) with a per-expert sort (docs/design.md 5.3).
# Many tokens, few distinct weights (so most comparisons are ties), NaN,
# signed zeros and out-of-range ids; the plan (rows, offsets, slot rows,
# slot weights) must equal the numpy reference exactly, on CPU and emulated
# GPU. 1500 tokens x 2 slots span several dispatch chunks and sort passes.
# RUN: %moe_python %s

import numpy as np

from moe_reference import ops
from moe_reference.harness import main

rng = np.random.default_rng(17)
T, E = 1500, 5
LEVELS = np.array([0.25, 0.5, 0.75, 0.0, -0.0, np.nan, 1.0, 0.125], np.float32)


def selections(columns):
    ids = rng.integers(0, E, size=(T, columns)).astype(np.int32)
    ids[rng.random((T, columns)) < 0.02] = -1
    ids[rng.random((T, columns)) < 0.01] = E + 3  # out of range: an empty slot
    # Skewed towards expert 0 so that it overflows by far.
    ids[rng.random((T, columns)) < 0.3] = 0
    weights = LEVELS[rng.integers(0, LEVELS.size, size=(T, columns))]
    # Some distinct weights too, so that sorted runs interleave.
    distinct = rng.random((T, columns)) < 0.3
    weights[distinct] = rng.random(int(distinct.sum())).astype(np.float32)
    return ids, weights


def case(name, columns, cap, rows):
    ids, weights = selections(columns)
    cap_attr = ", ".join(f"{k} = {v}" for k, v in cap.items())
    sel = f"tensor<{T}x{columns}xi32>"
    wt = f"tensor<{T}x{columns}xf32>"
    results = f"tensor<{rows}xi32>, tensor<{E + 1}xi32>, {sel}, {wt}"
    mlir = f"""
func.func @main(%i: {sel}, %w: {wt}) -> ({results}) {{
  %r, %o, %sr, %sw = moe.dispatch %i, %w experts = {E} {{capacity = #moe.capacity<{cap_attr}>}}
    : ({sel}, {wt}) -> ({results})
  return %r, %o, %sr, %sw : {results}
}}"""
    ref_cap = {k: (v == "true" if v in ("true", "false") else v) for k, v in cap.items()}
    r, o, sr, sw = ops.dispatch(ids, weights, E, cap=ref_cap)
    assert r.shape == (rows,), (r.shape, rows)
    return (name, dict(mlir=mlir, inputs=[(ids, "i32"), (weights, "f32")],
                       expected=[(r, "i32"), (o, "i32"), (sr, "i32"), (sw, "f32")], tol=0.0))


main([
    case("probs_compact", 2, dict(tokens=300, drop="probs"), T * 2),
    case("probs_padded", 2, dict(tokens=300, drop="probs", pad="true"), E * 300),
    # Capacity 1: only each expert's best slot survives.
    case("probs_capacity_one", 2, dict(tokens=1, drop="probs", pad="true"), E),
    # The third column holds fill-in candidates, ranked per expert the same way.
    case("probs_fill_in", 3, dict(tokens=400, drop="probs", pad="true", rectify="fill_in"), E * 400),
    case("position_fill_in", 3, dict(tokens=700, drop="position", pad="true", rectify="fill_in"), E * 700),
])
