"""Reference semantics of every moe op, in float64, from docs/design.md 5."""

import math

import numpy as np

from .numerics import activation, gumbel_noise, rank_order, relu, sigmoid, softmax, softmax_rows

# --- 5.1 Routing -------------------------------------------------------------


def group_mean(x, size):
    return np.stack([x[g:g + size].mean(axis=0) for g in range(0, x.shape[0], size)])


def expand_groups(values, tokens, size):
    return values[np.arange(tokens) // size]


def router(x, w, hidden=None):
    if hidden is not None:
        x = np.tanh(x @ hidden.T)
    return x @ w.T


def gating_residual(z, prev, g):
    return z + prev @ g.T


def score(func, z, tau=1.0, samples=1, seed=0):
    if func == "softmax":
        return softmax_rows(z)
    if func == "sigmoid":
        return sigmoid(z)
    if func == "relu":
        return relu(z)
    if func == "gumbel_softmax":
        t, e = z.shape
        acc = np.zeros_like(z, dtype=np.float64)
        for m in range(samples):
            noisy = (z.astype(np.float32) + gumbel_noise(seed, m, t, e).astype(np.float32)) / np.float32(tau)
            acc += softmax_rows(noisy.astype(np.float64))
        return acc / samples
    raise ValueError(func)


def _empty_selection(tokens, slots):
    return np.zeros((tokens, slots)), np.full((tokens, slots), -1, dtype=np.int64)


def topk(scores, k, bias=None, num_groups=1, topk_groups=1, group_score="top2_sum"):
    t_count, e_count = scores.shape
    biased = scores + (bias if bias is not None else 0.0)
    w, idx = _empty_selection(t_count, k)
    size = e_count // num_groups
    for t in range(t_count):
        allowed = np.arange(e_count)
        if num_groups > 1:
            gs = []
            for g in range(num_groups):
                members = biased[t, g * size:(g + 1) * size]
                best = members[rank_order(members)]
                gs.append(best[0] if group_score == "max" else best[0] + best[1])
            kept = rank_order(np.array(gs))[:topk_groups]
            allowed = np.concatenate([np.arange(g * size, (g + 1) * size) for g in sorted(kept)])
        picks = allowed[rank_order(biased[t, allowed])[:k]]
        idx[t, :len(picks)] = picks
        w[t, :len(picks)] = scores[t, picks]
    return w, idx


def threshold(scores, max_k, thr=0.0):
    t_count, _ = scores.shape
    w, idx = _empty_selection(t_count, max_k)
    for t in range(t_count):
        above = np.nonzero(scores[t] > thr)[0]
        picks = above[rank_order(scores[t, above])][:max_k]
        idx[t, :len(picks)] = picks
        w[t, :len(picks)] = scores[t, picks]
    return w, idx


def expert_choice(scores, capacity, token_k=None):
    t_count, e_count = scores.shape
    picked = np.zeros((t_count, e_count), dtype=bool)
    for e in range(e_count):
        picked[rank_order(scores[:, e])[:capacity], e] = True
    if token_k is None:
        idx = np.where(picked, np.arange(e_count)[None, :], -1)
        return np.where(picked, scores, 0.0), idx
    w, idx = _empty_selection(t_count, token_k)
    for t in range(t_count):
        mine = [e for e in rank_order(scores[t])[:token_k] if picked[t, e]]
        idx[t, :len(mine)] = mine
        w[t, :len(mine)] = scores[t, mine]
    return w, idx


def renormalize(mode, w, idx, skip=(), scale=1.0, denominator_slots=0, epsilon=0.0):
    t_count, k = w.shape
    n = denominator_slots if denominator_slots > 0 else k
    out = np.zeros_like(w, dtype=np.float64)
    for t in range(t_count):
        counted = [(idx[t, j] >= 0 and idx[t, j] not in skip) for j in range(k)]
        denom = [j for j in range(n) if counted[j]]
        if mode == "sum":
            s = sum(w[t, j] for j in denom) + epsilon
            s = 1.0 if s == 0 else s
            with np.errstate(invalid="ignore"):
                vals = w[t] / s
        else:
            vals = np.where(np.isnan(w[t]), -np.inf, w[t])
            if not denom:
                vals = np.zeros(k)
            else:
                m = max(vals[j] for j in denom)
                if m == np.inf:
                    cnt = sum(1 for j in denom if vals[j] == np.inf)
                    vals = np.where(vals == np.inf, 1.0 / cnt, 0.0)
                elif m == -np.inf:
                    vals = np.full(k, 1.0 / len(denom))
                else:
                    vals = np.exp(vals - m) / sum(math.exp(vals[j] - m) for j in denom)
        out[t] = np.where(counted, vals * scale, 0.0)
    return out


# --- 5.2 Expert computation ---------------------------------------------------


def grouped_matmul(lhs, w, offsets, bias=None):
    rows = lhs.shape[0]
    out = np.zeros((rows, w.shape[1]))
    for e in range(w.shape[0]):
        lo = min(max(int(offsets[e]), 0), rows)
        hi = max(min(max(int(offsets[e + 1]), 0), rows), lo)
        out[lo:hi] = lhs[lo:hi] @ w[e].T
        if bias is not None:
            out[lo:hi] += bias[e]
    return out


def zero_compute(x, idx, w, kinds, vectors=None, mix=None):
    out = np.zeros_like(x, dtype=np.float64)
    constant_of = {}
    for e, kind in enumerate(kinds):
        if kind == "constant":
            constant_of[e] = len(constant_of)
    for t in range(x.shape[0]):
        for j in range(idx.shape[1]):
            e = idx[t, j]
            if e < 0 or e >= len(kinds):
                continue
            if kinds[e] == "copy":
                out[t] += w[t, j] * x[t]
            elif kinds[e] == "constant":
                c = constant_of[e]
                a = softmax(mix[c] @ x[t])
                out[t] += w[t, j] * (a[0] * x[t] + a[1] * vectors[c])
    return out


def dense_ffn(kind, x, up, down, gate=None):
    out = activation(kind, x @ up.T) @ down.T
    if gate is not None:
        out = out * sigmoid(x @ gate.T)
    return out


def merge_experts(w, gates):
    return np.tensordot(gates, w, axes=([1], [0]))


# --- 5.3 Dispatch and combine -------------------------------------------------


def capacity_of(cap, tokens, k, experts):
    if cap.get("tokens", 0) > 0:
        return cap["tokens"]
    return math.ceil(tokens * k / experts * cap["factor"])


def dispatch(idx, w, experts, cap=None, logits=None, shared_weight=None):
    if shared_weight is not None:
        # The shared slot: one more column, on expert E, dropless.
        t_count = idx.shape[0]
        idx = np.concatenate([idx, np.full((t_count, 1), experts)], axis=1)
        w = np.concatenate([w, np.asarray(shared_weight).reshape(t_count, 1)], axis=1)
        experts += 1
    t_count, slots = idx.shape
    rectify = (cap or {}).get("rectify", "none")
    fill = rectify in ("fill_in", "both")
    intra = rectify in ("intra_device", "both")
    primary = slots - (1 if fill else 0)
    c = capacity_of(cap, t_count, primary, experts) if cap else None
    final = np.full((t_count, slots), -1)
    pos = np.full((t_count, slots), -1)
    n = np.zeros(experts, dtype=np.int64)

    kept_by_probs = set()
    if cap and cap.get("drop", "probs") == "probs":
        for e in range(experts):
            mine = [(t, j) for t in range(t_count) for j in range(primary) if idx[t, j] == e]
            order = rank_order(np.array([w[t, j] for t, j in mine]))
            kept_by_probs.update(mine[i] for i in order[:c])
    # 1. Primary selections, in (t, k) order; GShard's slot_position visits
    # every token's first choice before any second choice.
    drop = cap.get("drop", "probs") if cap else None
    if drop == "slot_position":
        visits = [(t, j) for j in range(primary) for t in range(t_count)]
    else:
        visits = [(t, j) for t in range(t_count) for j in range(primary)]
    # An id outside [0, E) of the routed experts is an empty slot, as -1 is.
    routed = experts - (1 if shared_weight is not None else 0)
    for t, j in visits:
        e = idx[t, j]
        if e < 0 or (e >= routed and not (shared_weight is not None and j == slots - 1)):
            continue
        if cap is None:
            keep = True
        elif drop in ("position", "slot_position"):
            keep = n[e] < c
        else:
            keep = (t, j) in kept_by_probs
        if keep:
            final[t, j], pos[t, j] = e, n[e]
            n[e] += 1
    # 2. Intra-device rectification.
    rectified = np.zeros(t_count, dtype=bool)
    if intra:
        per_device = cap["experts_per_device"]
        devices = experts // per_device
        for t in range(t_count):
            d = t * devices // t_count
            local = np.arange(d * per_device, (d + 1) * per_device)
            h = local[rank_order(logits[t, local])[0]]
            for j in range(primary):
                if 0 <= idx[t, j] < routed and final[t, j] < 0 and n[h] < c:
                    final[t, j], pos[t, j] = h, n[h]
                    n[h] += 1
                    rectified[t] = True
    # 3. Fill-in from the (k+1)-th column.
    if fill:
        before = n.copy()
        col = slots - 1
        for e in range(experts):
            cands = [t for t in range(t_count) if idx[t, col] == e]
            order = rank_order(np.array([w[t, col] for t in cands]))
            for r, i in enumerate(order):
                if r < c - before[e]:
                    t = cands[i]
                    final[t, col], pos[t, col] = e, before[e] + r
                    n[e] += 1
    # 4. Offsets and rows.
    pad = bool(cap and cap.get("pad", False))
    offsets = np.zeros(experts + 1, dtype=np.int64)
    for e in range(experts):
        offsets[e + 1] = (e + 1) * c if pad else offsets[e] + n[e]
    rows = experts * c if pad else t_count * slots
    row_token = np.full(rows, -1)
    slot_row = np.full((t_count, slots), -1)
    slot_weight = np.zeros((t_count, slots))
    for t in range(t_count):
        for j in range(slots):
            if final[t, j] >= 0:
                r = offsets[final[t, j]] + pos[t, j]
                row_token[r], slot_row[t, j], slot_weight[t, j] = t, r, w[t, j]
    # 5. Rectified tokens: exp(a) / sum exp(a) over their placed primary slots.
    for t in np.nonzero(rectified)[0]:
        placed = [j for j in range(primary) if final[t, j] >= 0]
        a = np.array([logits[t, final[t, j]] for j in placed])
        ex = np.exp(a - a.max())
        for j, v in zip(placed, ex / ex.sum()):
            slot_weight[t, j] = v
    return row_token, offsets, slot_row, slot_weight


def permute(x, row_token):
    out = np.zeros((len(row_token), x.shape[1]))
    valid = (row_token >= 0) & (row_token < x.shape[0])  # others: a zero row
    out[valid] = x[row_token[valid]]
    return out


def combine(rows, slot_row, slot_weight):
    out = np.zeros((slot_row.shape[0], rows.shape[1]))
    for t in range(slot_row.shape[0]):
        for j in range(slot_row.shape[1]):
            if 0 <= slot_row[t, j] < rows.shape[0]:  # others: an empty slot
                out[t] += slot_weight[t, j] * rows[slot_row[t, j]]
    return out
