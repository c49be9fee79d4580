"""A moe.layer configuration: its MLIR text, random operands, and reference.

A configuration is a dict:
    experts     [("ffn", 8), ("zero", 1), ...]   FFN group first
    activation  "swiglu" | "geglu" | "geglu_tanh" | "gelu" | "gelu_tanh" | "relu" | "relu2" | "silu" | "linear"
    routing     {"scoring": "softmax", "k": 2, ...}   #moe.routing fields
    capacity    None | {"factor": 1.25, "drop": "probs", "pad": True, ...}
    hidden      None | R                  two-layer router (MoE++)
    router_bias bool                      the router's own bias (x @ W + b)
    bias        bool                      selection bias (DeepSeek-V3)
    expert_bias bool                      FFN experts with biases (ffn_bias)
    residual    bool                      gating residual (MoE++)
    shared      None | F_s                shared expert width
    shared_gate bool                      sigmoid gate on the shared expert
"""

import numpy as np

from . import ops
from .numerics import F32, round_to

GATED = ("swiglu", "geglu", "geglu_tanh")


def num_experts(cfg):
    return sum(n for _, n in cfg["experts"])


def expert_kinds(cfg):
    return [kind for kind, n in cfg["experts"] for _ in range(n)]


def _fmt(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        text = repr(v)
        return text if "." in text or "e" in text else text + ".0"
    return str(v)


def _attr(name, fields):
    body = ", ".join(f"{k} = {_fmt(v)}" for k, v in fields.items())
    return f"#moe.{name}<{body}>"


def operands(cfg, tokens, hidden, ffn, dtype):
    """(name, shape, element type) of every operand, in the op's order."""
    e = num_experts(cfg)
    e_ffn = dict(cfg["experts"])["ffn"]
    up = 2 * ffn if cfg["activation"] in GATED else ffn
    ops_ = [("x", (tokens, hidden), dtype)]
    if cfg.get("hidden"):
        ops_ += [("router_weight", (e, cfg["hidden"]), dtype), ("router_hidden", (cfg["hidden"], hidden), dtype)]
    else:
        ops_ += [("router_weight", (e, hidden), dtype)]
    if cfg.get("router_bias"):
        ops_.append(("router_bias", (e,), dtype))
    if cfg.get("bias"):
        ops_.append(("selection_bias", (e,), F32))
    if cfg.get("residual"):
        ops_ += [("prev_logits", (tokens, e), F32), ("residual_weight", (e, e), dtype)]
    ops_ += [("ffn_up", (e_ffn, up, hidden), dtype), ("ffn_down", (e_ffn, hidden, ffn), dtype)]
    if cfg.get("expert_bias"):
        ops_ += [("ffn_up_bias", (e_ffn, up), dtype), ("ffn_down_bias", (e_ffn, hidden), dtype)]
    n_const = expert_kinds(cfg).count("constant")
    if n_const:
        ops_ += [("constant_vectors", (n_const, hidden), dtype), ("constant_mix", (n_const, 2, hidden), dtype)]
    if cfg.get("shared"):
        fs = cfg["shared"]
        ups = 2 * fs if cfg["activation"] in GATED else fs
        ops_ += [("shared_up", (ups, hidden), dtype), ("shared_down", (hidden, fs), dtype)]
        if cfg.get("shared_gate"):
            ops_.append(("shared_gate", (1, hidden), dtype))
    return ops_


def op_text(cfg, tokens, hidden, ffn, dtype, dynamic_tokens=True, names=None, results=("%y", "%z")):
    """(argument declarations, the moe.layer op, y type, logits type) of one
    layer; `names` maps an operand name to the SSA value it reads (default
    %<name>), so that several layers can share one function."""
    e = num_experts(cfg)
    t = "?" if dynamic_tokens else str(tokens)
    ops_ = operands(cfg, tokens, hidden, ffn, dtype)
    names = {name: (names or {}).get(name, f"%{name}") for name, _, _ in ops_}

    def ty(name, shape, elt):
        dims = [t if (name in ("x", "prev_logits") and i == 0) else str(d) for i, d in enumerate(shape)]
        return f"tensor<{'x'.join(dims)}x{elt}>"

    types = {name: ty(name, shape, elt) for name, shape, elt in ops_}
    args = [f"{names[name]}: {types[name]}" for name, _, _ in ops_]
    groups = {
        "router_hidden": "hidden({router_hidden})",
        "router_bias": "bias({router_bias})",
        "selection_bias": "selection_bias({selection_bias})",
        "prev_logits": "residual({prev_logits}, {residual_weight})",
        "ffn_up": "ffn({ffn_up}, {ffn_down})",
        "ffn_up_bias": "ffn_bias({ffn_up_bias}, {ffn_down_bias})",
        "constant_vectors": "constant({constant_vectors}, {constant_mix})",
        "shared_up": "shared({shared_up}, {shared_down})",
        "shared_gate": "shared_gate({shared_gate})",
    }
    clauses = " ".join(groups[name].format(**names) for name, _, _ in ops_ if name in groups)
    experts = ", ".join(f"#moe.group<{k}, {n}>" for k, n in cfg["experts"])
    attrs = [f"experts = [{experts}]", f"activation = #moe.activation<{cfg['activation']}>",
             f"routing = {_attr('routing', cfg['routing'])}"]
    if cfg.get("capacity"):
        attrs.append(f"capacity = {_attr('capacity', cfg['capacity'])}")
    y_ty, z_ty = types["x"], f"tensor<{t}x{e}xf32>"
    operand_types = ", ".join(types[name] for name, _, _ in ops_)
    op = (f"  {results[0]}, {results[1]} = moe.layer {names['x']}, {names['router_weight']} {clauses} "
          f"{{{', '.join(attrs)}}}\n    : ({operand_types}) -> ({y_ty}, {z_ty})\n")
    return args, op, y_ty, z_ty


def mlir_text(cfg, tokens, hidden, ffn, dtype, dynamic_tokens=True):
    """A function @layer(operands...) -> (y, logits) holding one moe.layer."""
    args, op, y_ty, z_ty = op_text(cfg, tokens, hidden, ffn, dtype, dynamic_tokens)
    return (
        f"func.func @layer({', '.join(args)}) -> ({y_ty}, {z_ty}) {{\n"
        f"{op}"
        f"  return %y, %z : {y_ty}, {z_ty}\n}}\n"
    )


def random_operands(cfg, tokens, hidden, ffn, dtype, rng):
    """float64 arrays already rounded to their storage type; weights scaled
    by 1/sqrt(fan-in) so activations stay O(1), never all zero."""
    out = {}
    for name, shape, elt in operands(cfg, tokens, hidden, ffn, dtype):
        biases = ("selection_bias", "router_bias", "ffn_up_bias", "ffn_down_bias")
        fan_in = shape[-1] if name not in ("x", "prev_logits") + biases else 1
        a = rng.standard_normal(shape) / np.sqrt(fan_in)
        if name == "selection_bias":
            a = 0.1 * a
        out[name] = round_to(a, elt)
    return out


def reference(cfg, a, dtype, fused=False):
    """y and the post-residual logits of the layer, following the
    decomposition of design.md 6, with results rounded where the compiled
    program stores them in `dtype`. `fused`: the gate/up and down GEMMs keep
    their f32 results for the activation and the combine (moe-fuse-experts),
    so those two intermediates are not rounded."""
    r = dict(cfg["routing"])
    cap = cfg.get("capacity")
    e = num_experts(cfg)
    kinds = expert_kinds(cfg)
    x = a["x"]
    rnd = (lambda v: round_to(v, dtype))

    group = r.get("group_size", 1)
    # Grouped routing (MEO sequence-level gating): route the mean of each
    # group of `group` consecutive tokens, then give every token its group's.
    router_in = rnd(ops.group_mean(x, group)) if group > 1 else x
    z = round_to(ops.router(router_in, a["router_weight"], a.get("router_hidden")), F32)
    if cfg.get("router_bias"):
        # The product is rounded to the bias's type before the sum (router_c2).
        z = round_to(rnd(z) + a["router_bias"], F32)
    if cfg.get("residual"):
        z = round_to(ops.gating_residual(z, a["prev_logits"], a["residual_weight"]), F32)

    k = r.get("k", 1)
    fill = bool(cap) and cap.get("rectify", "none") in ("fill_in", "both")
    picks = k + (1 if fill else 0)
    skip = [i for i, kind in enumerate(kinds) if kind in ("zero", "null")] \
        if r.get("normalize", "none") == "computing" else []
    denom = k if fill else 0
    scale = r.get("scale", 1.0)
    select = r.get("select", "top_k")
    if r.get("order", "score_then_select") == "select_then_score":
        w, idx = ops.topk(z, picks, a.get("selection_bias"))
        w = ops.renormalize("softmax", w, idx, skip, scale, denom)
    else:
        s = ops.score(r["scoring"], z, r.get("tau", 1.0), r.get("samples", 1), r.get("seed", 0))
        if select == "top_k":
            w, idx = ops.topk(s, picks, a.get("selection_bias"), r.get("num_groups", 1),
                              r.get("topk_groups", 1), r.get("group_score", "top2_sum"))
        elif select == "threshold":
            w, idx = ops.threshold(s, k, r.get("threshold", 0.0))
        else:
            w, idx = ops.expert_choice(s, r["capacity"], k if select == "bidirectional" else None)
        if r.get("normalize", "none") != "none":
            w = ops.renormalize("sum", w, idx, skip, scale, denom, r.get("norm_epsilon", 0.0))
        elif scale != 1.0:
            w = w * scale
    w = round_to(w, F32)
    if group > 1:
        w, idx, z = (ops.expand_groups(v, x.shape[0], group) for v in (w, idx, z))

    xin = rnd(x * r["input_scale"]) if r.get("input_scale", 1.0) != 1.0 else x
    rows, offsets, slot_row, slot_w = ops.dispatch(idx, w, e, cap, z)
    keep = (lambda v: round_to(v, F32)) if fused else rnd
    h = keep(ops.grouped_matmul(ops.permute(xin, rows), a["ffn_up"], offsets, a.get("ffn_up_bias")))
    act = rnd(ops.activation(cfg["activation"], h))
    o = keep(ops.grouped_matmul(act, a["ffn_down"], offsets, a.get("ffn_down_bias")))
    y = rnd(ops.combine(o, slot_row, slot_w))
    if any(kind in ("copy", "constant") for kind in kinds):
        zc = rnd(ops.zero_compute(xin, idx, slot_w, kinds, a.get("constant_vectors"), a.get("constant_mix")))
        y = rnd(y + zc)
    if cfg.get("shared"):
        sh = rnd(ops.dense_ffn(cfg["activation"], x, a["shared_up"], a["shared_down"], a.get("shared_gate")))
        y = rnd(y + sh)
    return y, z
