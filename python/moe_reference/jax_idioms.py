"""MoE layers in the other ways JAX code writes them: every expert computed
and weighted by a routing gate (loops over experts with where-masks, vmapped
or stacked experts, fused gate/up weights split, separate per-expert
parameters, one-hot, scattered or masked-softmax gates), top-k-then-softmax
and sigmoid routing, jnp.take / segment_sum dispatch, and near misses.
Sizes, k, expert counts and dtypes differ between programs on purpose.

jax_programs.PROGRAMS includes these (their names start with `idiom_`).
"""

import jax
import jax.numpy as jnp
from jax import lax


def ffn(x, a, b, c):
    return (jax.nn.silu(x @ a) * (x @ b)) @ c


def softmax_topk(x, wr, k, renormalise=True):
    vals, idx = lax.top_k(jax.nn.softmax(x @ wr, axis=-1), k)
    if renormalise:
        vals = vals / vals.sum(-1, keepdims=True)
    return vals, idx


def sigmoid_topk(x, wr, k):
    """Sigmoid scores (Llama-4 style), their top-k renormalised."""
    vals, idx = lax.top_k(jax.nn.sigmoid(x @ wr), k)
    return vals / vals.sum(-1, keepdims=True), idx


def loop_where(k, route=softmax_topk):
    """A Python loop over experts: each expert's weight is
    sum(where(idx == e, vals, 0)) and its output is added in turn."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = route(x, wr, k)
        y = jnp.zeros_like(x)
        for e in range(wr.shape[1]):
            we = jnp.sum(jnp.where(idx == e, vals, 0.0), axis=-1)
            y = y + we[:, None] * ffn(x, w1[e], w3[e], w2[e])
        return y
    return fn


def sigmoid_loop_where(k):
    """The where-mask loop with sigmoid scores; in bf16 the sigmoid
    saturates, so equal rounded scores are common and the lower index wins
    them."""
    return loop_where(k, sigmoid_topk)


def separate_params(k):
    """A list of expert modules, each with its own parameters (separate
    arguments), GELU experts, top-k of the logits then softmax, a residual."""
    def fn(x, wr, *ws):
        vals, idx = lax.top_k(x @ wr, k)
        vals = jax.nn.softmax(vals, -1)
        y = x
        for e in range(wr.shape[1]):
            we = jnp.sum((idx == e).astype(x.dtype) * vals, axis=-1, keepdims=True)
            y = y + we * (jax.nn.gelu(x @ ws[2 * e], approximate=False) @ ws[2 * e + 1])
        return y
    return fn


def fused_split(k):
    """Fused gate/up weights [E, H, 2F] cut by jnp.split; one-hot gate."""
    def fn(x, wr, w13, w2):
        vals, idx = softmax_topk(x, wr, k)
        gate = jnp.sum(jax.nn.one_hot(idx, wr.shape[1]) * vals[..., None], axis=1)
        g, u = jnp.split(jnp.einsum('th,ehf->etf', x, w13), 2, axis=-1)
        out = jnp.einsum('etf,efh->eth', jax.nn.silu(g) * u, w2)
        return jnp.einsum('te,eth->th', gate, out)
    return fn


def vmap_experts(k):
    """Experts under jax.vmap; the gate scattered by .at[rows, idx].set."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = softmax_topk(x, wr, k, renormalise=False)
        rows = jnp.arange(x.shape[0])[:, None]
        gate = jnp.zeros((x.shape[0], wr.shape[1]), x.dtype).at[rows, idx].set(vals)
        outs = jax.vmap(lambda a, b, c: ffn(x, a, b, c))(w1, w3, w2)  # [E, T, H]
        return jnp.einsum('eth,te->th', outs, gate)
    return fn


def masked_softmax_stack(k):
    """softmax of the logits masked to their top-k; per-expert outputs
    stacked on axis 1 and summed."""
    def fn(x, wr, w1, w3, w2):
        logits = x @ wr
        kth = lax.top_k(logits, k)[0][:, -1:]
        gate = jax.nn.softmax(jnp.where(logits >= kth, logits, -jnp.inf), -1)
        outs = jnp.stack([ffn(x, w1[e], w3[e], w2[e]) for e in range(wr.shape[1])], axis=1)
        return jnp.sum(gate[..., None] * outs, axis=1)
    return fn


def sigmoid_top1_shared(x, wr, w1, w3, w2, s1, s3, s2):
    """Llama-4 style: sigmoid of the top-1 logit, scattered gate, a shared
    expert added."""
    v, i = lax.top_k(x @ wr, 1)
    gate = jnp.zeros((x.shape[0], wr.shape[1]), x.dtype).at[jnp.arange(x.shape[0]), i[:, 0]].set(
        jax.nn.sigmoid(v[:, 0]))
    h = jax.nn.silu(jnp.einsum('th,ehf->tef', x, w1)) * jnp.einsum('th,ehf->tef', x, w3)
    routed = jnp.einsum('te,teh->th', gate, jnp.einsum('tef,efh->teh', h, w2))
    return routed + ffn(x, s1, s3, s2)


def geglu_stack(k):
    """GeGLU experts (exact GELU), jnp.stack on axis 0."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = softmax_topk(x, wr, k)
        gate = jnp.sum(jax.nn.one_hot(idx, wr.shape[1]) * vals[..., None], axis=1)
        outs = jnp.stack([(jax.nn.gelu(x @ w1[e], approximate=False) * (x @ w3[e])) @ w2[e]
                          for e in range(wr.shape[1])])
        return jnp.einsum('te,eth->th', gate, outs)
    return fn


def rms_norm(x, g):
    return x * lax.rsqrt(jnp.mean(jnp.square(x), -1, keepdims=True) + 1e-6) * g


def two_layer_lm(k):
    """Two pre-norm MoE blocks with residuals; fused gate/up weights."""
    def block(h, g, wr, w13, w2):
        n = rms_norm(h, g)
        return h + fused_split(k)(n, wr, w13, w2)

    def fn(x, g1, wr1, w13a, w2a, g2, wr2, w13b, w2b):
        return block(block(x, g1, wr1, w13a, w2a), g2, wr2, w13b, w2b)
    return fn


def take_segment_sum(k):
    """Dropless: argsort, jnp.take(mode='fill'), ragged_dot, segment_sum."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = softmax_topk(x, wr, k)
        flat = idx.reshape(-1)
        order = jnp.argsort(flat, stable=True)
        tok = order // k
        xs = jnp.take(x, tok, axis=0, mode='fill', fill_value=0)
        sizes = jnp.bincount(flat, length=wr.shape[1])
        h = jax.nn.silu(lax.ragged_dot(xs, w1, sizes)) * lax.ragged_dot(xs, w3, sizes)
        o = lax.ragged_dot(h, w2, sizes) * vals.reshape(-1)[order][:, None]
        return jax.ops.segment_sum(o, tok, num_segments=x.shape[0])
    return fn


def torch_layout(k):
    """A PyTorch port: Linear weights [out, in] used as x @ w.T (router
    [E, H], w1/w3 [E, F, H], w2 [E, H, F]); HF Mixtral's routing (softmax,
    top-k, renormalised) and its loop over the experts' one-hot mask."""
    def fn(x, wr, w1, w3, w2):
        probs = jax.nn.softmax(x @ wr.T, axis=-1)
        vals, idx = lax.top_k(probs, k)
        vals = vals / vals.sum(-1, keepdims=True)
        mask = jax.nn.one_hot(idx, wr.shape[0], dtype=x.dtype)  # [T, k, E]
        y = jnp.zeros_like(x)
        for e in range(wr.shape[0]):
            w = jnp.sum(mask[:, :, e] * vals, axis=-1, keepdims=True)
            y = y + w * ((jax.nn.silu(x @ w1[e].T) * (x @ w3[e].T)) @ w2[e].T)
        return y
    return fn


def gathered_weights(k):
    """Decode style (gpt-fast's Mixtral): the routed experts' weights
    gathered per token, w1[idx] [T, k, F, H], contracted by einsums."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(x @ wr, k)
        gates = jax.nn.softmax(vals, axis=-1)
        h = jax.nn.silu(jnp.einsum('ti,taoi->tao', x, w1[idx])) * jnp.einsum('ti,taoi->tao', x, w3[idx])
        outs = jnp.einsum('tao,taio->tai', h, w2[idx])
        return jnp.einsum('tai,ta->ti', outs, gates)
    return fn


def einsum_gate(k):
    """The gate as einsum("tke,tk->te", one_hot(idx), weights), experts
    [E, T, H] from einsum("th,ehf->etf"), combine einsum("te,eth->th")."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = softmax_topk(x, wr, k)
        gate = jnp.einsum('tke,tk->te', jax.nn.one_hot(idx, wr.shape[1], dtype=x.dtype), vals)
        h = jax.nn.silu(jnp.einsum('th,ehf->etf', x, w1)) * jnp.einsum('th,ehf->etf', x, w3)
        return jnp.einsum('te,eth->th', gate, jnp.einsum('etf,efh->eth', h, w2))
    return fn


def batch_seq_einsum(k):
    """Flax style on x [batch, seq, hidden]: einsums over 'bs...' (router,
    one-hot gate over the slots, per-expert SwiGLU, combine)."""
    def fn(x, wr, w1, w3, w2):
        probs = jax.nn.softmax(jnp.einsum('bsh,he->bse', x, wr), axis=-1)
        vals, idx = lax.top_k(probs, k)
        vals = vals / vals.sum(-1, keepdims=True)
        gate = jnp.sum(jax.nn.one_hot(idx, wr.shape[1]) * vals[..., None], axis=-2)  # [B, S, E]
        h = jax.nn.silu(jnp.einsum('bsh,ehf->bsef', x, w1)) * jnp.einsum('bsh,ehf->bsef', x, w3)
        return jnp.einsum('bse,bseh->bsh', gate, jnp.einsum('bsef,efh->bseh', h, w2))
    return fn


def batch_seq_loop(k):
    """x [batch, seq, hidden], a loop over experts with where-masks, a residual."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(x @ wr, k)
        vals = jax.nn.softmax(vals, axis=-1)
        y = x
        for e in range(wr.shape[1]):
            we = jnp.sum(jnp.where(idx == e, vals, 0.0), axis=-1)[..., None]
            y = y + we * ffn(x, w1[e], w3[e], w2[e])
        return y
    return fn


def biased_vmap_experts(x, wr, w1, b1, w2, b2):
    """Experts with biases (Flax nn.Dense's default) under jax.vmap; a
    one-hot gate contracted with the stacked outputs."""
    vals, idx = softmax_topk(x, wr, 2, renormalise=False)
    gate = jnp.sum(jax.nn.one_hot(idx, wr.shape[1]) * vals[..., None], axis=1)
    outs = jax.vmap(lambda p1, q1, p2, q2: jax.nn.gelu(x @ p1 + q1) @ p2 + q2)(w1, b1, w2, b2)
    return jnp.einsum('te,eth->th', gate, outs)


def biased_loop_fused(k):
    """A loop over experts, each a fused gate/up projection with a bias cut by
    jnp.split (SwiGLU), a down projection with a bias; the router a linear
    layer with its bias too; where-masked weights."""
    def fn(x, wr, br, w13, b13, w2, b2):
        vals, idx = lax.top_k(x @ wr + br, k)
        vals = jax.nn.softmax(vals, axis=-1)
        y = jnp.zeros_like(x)
        for e in range(wr.shape[1]):
            g, u = jnp.split(x @ w13[e] + b13[e], 2, axis=-1)
            w = jnp.sum(jnp.where(idx == e, vals, 0), axis=-1)
            y = y + w[:, None] * ((jax.nn.silu(g) * u) @ w2[e] + b2[e])
        return y
    return fn


def biased_einsum_experts(k):
    """Every expert on every token by einsums over a [T, E, F] layout, biases
    broadcast from [E, F] and [E, H]; the gate a renormalised top-k mask."""
    def fn(x, wr, w1, b1, w2, b2):
        probs = jax.nn.softmax(x @ wr, axis=-1)
        vals, idx = lax.top_k(probs, k)
        vals = vals / vals.sum(-1, keepdims=True)
        gate = jnp.sum(jax.nn.one_hot(idx, wr.shape[1]) * vals[..., None], axis=1)
        h = jax.nn.relu(jnp.einsum('th,ehf->tef', x, w1) + b1[None])
        o = jnp.einsum('tef,efh->teh', h, w2) + b2[None]
        return jnp.einsum('te,teh->th', gate, o)
    return fn


def some_biased_near_miss(x, wr, w1, b1, w2, b2):
    """Only some experts add their bias: not one expert set (a remark)."""
    vals, idx = softmax_topk(x, wr, 2)
    y = jnp.zeros_like(x)
    for e in range(wr.shape[1]):
        w = jnp.sum(jnp.where(idx == e, vals, 0), axis=-1)
        h = jax.nn.relu(x @ w1[e] + b1[e]) if e else jax.nn.relu(x @ w1[e])
        y = y + w[:, None] * (h @ w2[e] + b2[e])
    return y


def expert_choice(c, tau=None):
    """Expert-choice routing (each expert its top-C tokens of the softmax
    scores, transposed; the logits maybe divided by a temperature tau);
    SwiGLU einsum experts on x[tok]; the weighted rows scatter-added back."""
    def f(x, wr, w1, w3, w2):
        logits = x @ wr if tau is None else (x @ wr) / tau
        g, tok = lax.top_k(jax.nn.softmax(logits, -1).T, c)
        xs = x[tok]
        h = jax.nn.silu(jnp.einsum('ech,ehf->ecf', xs, w1)) * jnp.einsum('ech,ehf->ecf', xs, w3)
        o = jnp.einsum('ecf,efh->ech', h, w2) * g[..., None]
        return jnp.zeros_like(x).at[tok.reshape(-1)].add(o.reshape(-1, x.shape[1]))
    return f


def expert_choice_take_vmap(c):
    """Expert choice on sigmoid scores (router [E, H]); the picked tokens by
    jnp.take; vmapped exact-GELU experts; the gate applied before the
    reshape."""
    def f(x, wr, w1, w2):
        scores = jax.nn.sigmoid(x @ wr.T)
        g, tok = lax.top_k(jnp.transpose(scores), c)
        xs = jnp.take(x, tok, axis=0)
        o = jax.vmap(lambda xe, a, b: jax.nn.gelu(xe @ a, approximate=False) @ b)(xs, w1, w2)
        o = g[:, :, None] * o
        return jnp.zeros_like(x).at[tok.ravel()].add(o.reshape(tok.size, -1))
    return f


def expert_choice_near_miss(x, wr, w1, w3, w2):
    """Expert choice whose rows are weighted by 1 - g: a remark."""
    g, tok = lax.top_k(jax.nn.softmax(x @ wr, -1).T, 4)
    xs = x[tok]
    h = jax.nn.silu(jnp.einsum('ech,ehf->ecf', xs, w1)) * jnp.einsum('ech,ehf->ecf', xs, w3)
    o = jnp.einsum('ecf,efh->ech', h, w2) * (1.0 - g)[..., None]
    return jnp.zeros_like(x).at[tok.reshape(-1)].add(o.reshape(-1, x.shape[1]))


def switch_argmax_loop(x, wr, wi, wo):
    """Switch Transformer top-1 by argmax: the gate is the max probability;
    relu experts in a loop over where-masks."""
    probs = jax.nn.softmax(x @ wr, axis=-1)
    idx, gate = jnp.argmax(probs, axis=-1), jnp.max(probs, axis=-1)
    y = jnp.zeros_like(x)
    for e in range(wr.shape[1]):
        y = y + jnp.where(idx == e, gate, 0.0)[:, None] * (jax.nn.relu(x @ wi[e]) @ wo[e])
    return y


def argmax_onehot_vmap(x, wr, w1, w3, w2):
    """one_hot(argmax(logits)) times the probabilities as the gate; vmapped
    tanh-GELU GLU experts; combine einsum over [E, T, H]."""
    logits = x @ wr
    gate = jax.nn.one_hot(jnp.argmax(logits, -1), wr.shape[1], dtype=x.dtype) * jax.nn.softmax(logits, -1)
    outs = jax.vmap(lambda a, b, c: (jax.nn.gelu(x @ a, approximate=True) * (x @ b)) @ c)(w1, w3, w2)
    return jnp.einsum('te,eth->th', gate, outs)


def argsort_take_along(k):
    """Top-k by a descending argsort cut to k; the weights read back with
    take_along_axis and renormalised; one-hot gate; einsum experts."""
    def fn(x, wr, w1, w3, w2):
        probs = jax.nn.softmax(x @ wr, axis=-1)
        idx = jnp.argsort(-probs, axis=-1)[:, :k]
        vals = jnp.take_along_axis(probs, idx, axis=-1)
        vals = vals / jnp.sum(vals, axis=-1, keepdims=True)
        gate = jnp.sum(jax.nn.one_hot(idx, wr.shape[1], dtype=x.dtype) * vals[..., None], axis=1)
        h = jax.nn.silu(jnp.einsum('th,ehf->tef', x, w1)) * jnp.einsum('th,ehf->tef', x, w3)
        return jnp.einsum('te,teh->th', gate, jnp.einsum('tef,efh->teh', h, w2))
    return fn


def mixed_precision(k):
    """T5X/MaxText mixed precision: bf16 activations and experts, the router
    in float32 on x converted up, the gate converted down."""
    def fn(x, wr, w1, w3, w2):
        bf16 = jnp.bfloat16
        x, w1, w3, w2 = x.astype(bf16), w1.astype(bf16), w3.astype(bf16), w2.astype(bf16)
        vals, idx = softmax_topk(x.astype(jnp.float32), wr, k)
        gate = jnp.sum(jax.nn.one_hot(idx, wr.shape[1]) * vals[..., None], axis=1).astype(bf16)
        outs = jax.vmap(lambda a, b, c: ffn(x, a, b, c))(w1, w3, w2)
        return jnp.einsum('te,eth->th', gate, outs)
    return fn


def nonzero_loop(k):
    """Hugging Face's loop over experts in JAX: each expert's (token, slot)
    pairs from jnp.nonzero(size=...), its rows gathered, weighted and added
    back with .at[].add (the padding rows point past the end and are dropped)."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = softmax_topk(x, wr, k)
        t = x.shape[0]
        y = jnp.zeros_like(x)
        for e in range(wr.shape[1]):
            tok, slot = jnp.nonzero(idx == e, size=t, fill_value=t)
            rows = jnp.take(x, tok, axis=0, mode='fill', fill_value=0)
            w = vals.at[tok, slot].get(mode='fill', fill_value=0)
            y = y.at[tok].add(w[:, None] * ffn(rows, w1[e], w3[e], w2[e]), mode='drop')
        return y
    return fn


def repeat_interleave(k):
    """A PyTorch port: x repeated k times (one row per slot), each expert
    applied to the rows routed to it by a where-mask, the slots weighted and
    summed."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = softmax_topk(x, wr, k)
        xr = jnp.repeat(x, k, axis=0)
        flat = idx.reshape(-1)
        out = jnp.zeros_like(xr)
        for e in range(wr.shape[1]):
            out = out + jnp.where((flat == e)[:, None], ffn(xr, w1[e], w3[e], w2[e]), 0.0)
        return jnp.sum(out.reshape(x.shape[0], k, -1) * vals[..., None], axis=1)
    return fn


def fori_loop_experts(k):
    """lax.fori_loop over the experts, each adding its gate-weighted output
    (a stablehlo.while, unrolled by the raising)."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = softmax_topk(x, wr, k)
        gate = jnp.sum(jax.nn.one_hot(idx, wr.shape[1]) * vals[..., None], axis=1)

        def body(e, y):
            return y + gate[:, e][:, None] * ffn(x, w1[e], w3[e], w2[e])
        return lax.fori_loop(0, wr.shape[1], body, jnp.zeros_like(x))
    return fn


def scan_experts(k):
    """lax.scan over (jnp.arange(E), w1, w3, w2): one expert per step, its
    weight where(idx == e, vals, 0) summed over the slots."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(x @ wr, k)
        vals = jax.nn.softmax(vals, -1)

        def step(y, expert):
            e, a, b, c = expert
            w = jnp.sum(jnp.where(idx == e, vals, 0.0), axis=-1, keepdims=True)
            return y + w * ffn(x, a, b, c), None
        y, _ = lax.scan(step, jnp.zeros_like(x), (jnp.arange(wr.shape[1]), w1, w3, w2))
        return y
    return fn


def lax_map_experts(k):
    """lax.map of the expert FFN over the stacked weights (a while loop
    writing [E, T, H] one expert at a time), a one-hot gate contracted with
    the stacked outputs."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = softmax_topk(x, wr, k)
        gate = jnp.sum(jax.nn.one_hot(idx, wr.shape[1]) * vals[..., None], axis=1)
        outs = lax.map(lambda p: ffn(x, *p), (w1, w3, w2))
        return jnp.einsum('te,eth->th', gate, outs)
    return fn


def lax_map_biased_experts(x, wr, br, w1, b1, w2, b2):
    """lax.map over experts with biases (a tuple of stacks), the router with a
    bias too, top-1 Switch routing; the gate contracted with the outputs."""
    probs = jax.nn.softmax(x @ wr + br, axis=-1)
    vals, idx = lax.top_k(probs, 1)
    gate = jax.nn.one_hot(idx[:, 0], wr.shape[1]) * vals
    outs = lax.map(lambda p: jax.nn.relu(x @ p[0] + p[1]) @ p[2] + p[3], (w1, b1, w2, b2))
    return jnp.einsum('te,eth->th', gate, outs)


def gshard_dense_dispatch(k, scaled=False):
    """GShard's einsums without a capacity: a dense combine [T, E] from the
    top-k, the dispatch mask (combine > 0), every expert on x masked to its
    tokens (einsum('te,th->eth')), the combine einsum. `scaled`: the experts
    read x times the combine weights instead (a near miss: not x)."""
    def fn(x, wr, w1, w3, w2):
        probs = jax.nn.softmax(x @ wr, axis=-1)
        vals, idx = lax.top_k(probs, k)
        combine = jnp.einsum('tk,tke->te', vals, jax.nn.one_hot(idx, wr.shape[1], dtype=x.dtype))
        dispatch = combine if scaled else (combine > 0).astype(x.dtype)
        xe = jnp.einsum('te,th->eth', dispatch, x)
        h = jax.nn.silu(jnp.einsum('eth,ehf->etf', xe, w1)) * jnp.einsum('eth,ehf->etf', xe, w3)
        return jnp.einsum('te,eth->th', combine, jnp.einsum('etf,efh->eth', h, w2))
    return fn


def transposed_gate_sum(k):
    """The combine as a sum over the expert axis of the transposed gate times
    the vmapped outputs [E, T, H]: jnp.sum(gate.T[:, :, None] * outs, 0)."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = softmax_topk(x, wr, k)
        gate = jnp.sum(jax.nn.one_hot(idx, wr.shape[1]) * vals[..., None], axis=1)
        outs = jax.vmap(lambda a, b, c: ffn(x, a, b, c))(w1, w3, w2)
        return jnp.sum(gate.T[:, :, None] * outs, axis=0)
    return fn


def threshold_mask_gate(k):
    """The probabilities kept where they reach the k-th largest one
    (probs >= kth), renormalised; experts as einsums over [T, E, F]."""
    def fn(x, wr, w1, w3, w2):
        probs = jax.nn.softmax(x @ wr, axis=-1)
        kth = lax.top_k(probs, k)[0][:, -1:]
        gate = jnp.where(probs >= kth, probs, 0.0)
        gate = gate / gate.sum(-1, keepdims=True)
        h = jax.nn.silu(jnp.einsum('th,ehf->tef', x, w1)) * jnp.einsum('th,ehf->tef', x, w3)
        return jnp.einsum('te,teh->th', gate, jnp.einsum('tef,efh->teh', h, w2))
    return fn


def take_weights(k, tokens='t'):
    """Decode style with jnp.take (fill mode: a NaN mask for out-of-range
    ids around each gather) of the routed experts' weights; tokens 'bs':
    on [B, S, H] (decode with a batch of sequences), the weights gathered
    per (batch, position, slot), [B, S, k, H, F]."""
    t = tokens

    def fn(x, wr, w1, w3, w2):
        vals, idx = softmax_topk(x, wr, k)
        up = lambda w: jnp.einsum(f'{t}h,{t}khf->{t}kf', x, jnp.take(w, idx, axis=0))
        h = jax.nn.silu(up(w1)) * up(w3)
        o = jnp.einsum(f'{t}kf,{t}kfh->{t}kh', h, jnp.take(w2, idx, axis=0))
        return jnp.einsum(f'{t}kh,{t}k->{t}h', o, vals)
    return fn


def batch_seq_slot_loop(k):
    """slot_loop_gather on [B, S, H] tokens: each slot's weights w1[idx[..., s]]
    [B, S, H, F]."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = softmax_topk(x, wr, k)
        y = jnp.zeros_like(x)
        for s in range(k):
            e = idx[..., s]
            h = jax.nn.silu(jnp.einsum('bsh,bshf->bsf', x, w1[e])) * jnp.einsum('bsh,bshf->bsf', x, w3[e])
            y = y + vals[..., s:s + 1] * jnp.einsum('bsf,bsfh->bsh', h, w2[e])
        return y
    return fn


def big_negative_mask(k):
    """softmax of the logits masked to their top-k with -1e9 (not -inf)."""
    def fn(x, wr, w1, w3, w2):
        logits = x @ wr
        kth = lax.top_k(logits, k)[0][:, -1:]
        gate = jax.nn.softmax(jnp.where(logits >= kth, logits, -1e9), -1)
        outs = jnp.stack([ffn(x, w1[e], w3[e], w2[e]) for e in range(wr.shape[1])], axis=1)
        return jnp.sum(gate[..., None] * outs, axis=1)
    return fn


def bf16_weights_cast(k):
    """f32 parameters cast to bf16 in the layer, the router in f32, the
    renormalised weights cast to bf16 before the loop over experts."""
    def fn(x, wr, w1, w3, w2):
        bf = jnp.bfloat16
        x = x.astype(bf)
        vals, idx = lax.top_k(jax.nn.softmax(jnp.dot(x.astype(jnp.float32), wr)), k)
        vals = (vals / vals.sum(-1, keepdims=True)).astype(bf)
        y = jnp.zeros_like(x)
        for e in range(wr.shape[1]):
            w = jnp.sum(jnp.where(idx == e, vals, 0), axis=-1)
            y = y + w[:, None] * ffn(x, w1[e].astype(bf), w3[e].astype(bf), w2[e].astype(bf))
        return y
    return fn


def router_bias(x, wr, br, w1, w3, w2):
    """A router with a bias (x @ wr + br), softmax top-2; a one-hot gate
    over vmapped experts."""
    vals, idx = lax.top_k(jax.nn.softmax(x @ wr + br, -1), 2)
    gate = jnp.sum(jax.nn.one_hot(idx, wr.shape[1]) * vals[..., None], axis=1)
    outs = jax.vmap(lambda a, b, c: ffn(x, a, b, c))(w1, w3, w2)
    return jnp.einsum('te,eth->th', gate, outs)


def flax_dense_router(k):
    """A Flax nn.Dense router with its bias (y = dot_general(x, kernel) +
    reshape(bias, (1, 1, E))) on [B, S, H] tokens, in the program's dtype;
    Mixtral's top-k of the logits and the softmax over the picks; a loop
    over the experts with where-masks."""
    def fn(x, wr, br, w1, w3, w2):
        logits = lax.dot_general(x, wr, (((x.ndim - 1,), (0,)), ((), ())))
        logits = logits + jnp.reshape(br, (1,) * (logits.ndim - 1) + (-1,))
        vals, idx = lax.top_k(logits, k)
        vals = jax.nn.softmax(vals.astype(jnp.float32), axis=-1).astype(x.dtype)
        y = jnp.zeros_like(x)
        for e in range(wr.shape[1]):
            w = jnp.sum(jnp.where(idx == e, vals, 0), axis=-1)
            y = y + w[..., None] * ffn(x, w1[e], w3[e], w2[e])
        return y
    return fn


def widened_router_bias_near_miss(x, wr, br, w1, w3, w2):
    """bf16 logits widened to f32 before an f32 bias is added: the product is
    rounded where the sum is not, which moe.router does not compute."""
    logits = (x @ wr).astype(jnp.float32) + br.astype(jnp.float32)
    vals, idx = lax.top_k(jax.nn.softmax(logits, -1), 2)
    gate = jnp.sum(jax.nn.one_hot(idx, wr.shape[1]) * vals[..., None], axis=1).astype(x.dtype)
    outs = jax.vmap(lambda a, b, c: ffn(x, a, b, c))(w1, w3, w2)
    return jnp.einsum('te,eth->th', gate, outs)


def any_mask_gate(k):
    """The softmax kept where jnp.any(idx[..., None] == arange(E), 1) marks
    the top-k of the logits, renormalised; vmapped experts."""
    def fn(x, wr, w1, w3, w2):
        logits = x @ wr
        probs = jax.nn.softmax(logits)
        idx = lax.top_k(logits, k)[1]
        mask = jnp.any(idx[..., None] == jnp.arange(wr.shape[1]), axis=1)
        gate = jnp.where(mask, probs, 0.0)
        gate = gate / gate.sum(-1, keepdims=True)
        outs = jax.vmap(lambda a, b, c: ffn(x, a, b, c))(w1, w3, w2)
        return jnp.einsum('te,eth->th', gate, outs)
    return fn


def sigmoid_topk_renorm(k):
    """Sigmoid scores, their top-k renormalised (no groups, no bias)."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = sigmoid_topk(x, wr, k)
        gate = jnp.sum(jax.nn.one_hot(idx, wr.shape[1]) * vals[..., None], axis=1)
        outs = jax.vmap(lambda a, b, c: ffn(x, a, b, c))(w1, w3, w2)
        return jnp.einsum('te,eth->th', gate, outs)
    return fn


def slot_loop_gather(k):
    """A Python loop over the k slots: each slot's experts' weights gathered
    per token by its column of the indices, w1[idx[:, s]] [T, H, F]."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(x @ wr, k)
        gates = jax.nn.softmax(vals, -1)
        y = jnp.zeros_like(x)
        for s in range(k):
            e = idx[:, s]
            h = jax.nn.silu(jnp.einsum('th,thf->tf', x, w1[e])) * jnp.einsum('th,thf->tf', x, w3[e])
            y = y + gates[:, s:s + 1] * jnp.einsum('tf,tfh->th', h, w2[e])
        return y
    return fn


def slot_loop_crossed_near_miss(x, wr, w1, w3, w2):
    """The slot loop with each slot's output weighted by the other slot's
    gate: no MoE layer; a remark, plain ops."""
    vals, idx = lax.top_k(x @ wr, 2)
    gates = jax.nn.softmax(vals, -1)
    y = jnp.zeros_like(x)
    for s in range(2):
        e = idx[:, s]
        h = jax.nn.silu(jnp.einsum('th,thf->tf', x, w1[e])) * jnp.einsum('th,thf->tf', x, w3[e])
        y = y + gates[:, 1 - s:2 - s] * jnp.einsum('tf,tfh->th', h, w2[e])
    return y


def one_hot_slot_terms(x, wr, w1, w3, w2):
    """The dense gate written one term per slot with jax.nn.one_hot (each
    call its own iota), w[:, j:j+1] * one_hot(idx[:, j], E), over every
    expert's output from vmapped FFNs."""
    experts = wr.shape[1]
    w, idx = lax.top_k(jax.nn.softmax(x @ wr, -1), 2)
    gate = (w[:, 0:1] * jax.nn.one_hot(idx[:, 0], experts, dtype=x.dtype) +
            w[:, 1:2] * jax.nn.one_hot(idx[:, 1], experts, dtype=x.dtype))
    outs = jax.vmap(lambda a, b, c: (jax.nn.silu(x @ a) * (x @ b)) @ c)(w1, w3, w2)
    return jnp.einsum('te,eth->th', gate, outs)


def slot_gather_top1(x, wr, w1, w3, w2):
    """Top-1 decode: the routed expert's weights gathered per token,
    w1[idx[:, 0]], its output scaled by the top-1 probability (no sum)."""
    vals, idx = lax.top_k(jax.nn.softmax(x @ wr, -1), 1)
    e = idx[:, 0]
    h = jax.nn.silu(jnp.einsum('th,thf->tf', x, w1[e])) * jnp.einsum('th,thf->tf', x, w3[e])
    return vals[:, :1] * jnp.einsum('tf,tfh->th', h, w2[e])


def aux_loss_outputs(k):
    """Training code: the layer also returns the load-balancing loss (the
    fraction routed to each expert times its mean probability) and the
    router z-loss, which read the same routing."""
    def fn(x, wr, w1, w3, w2):
        logits = x @ wr
        probs = jax.nn.softmax(logits, -1)
        vals, idx = lax.top_k(probs, k)
        vals = vals / vals.sum(-1, keepdims=True)
        y = jnp.zeros_like(x)
        for e in range(wr.shape[1]):
            w = jnp.sum(jnp.where(idx == e, vals, 0.0), -1, keepdims=True)
            y = y + w * ffn(x, w1[e], w3[e], w2[e])
        experts = wr.shape[1]
        routed = jax.nn.one_hot(idx, experts).sum(1).mean(0)
        balance = experts * jnp.sum(routed * probs.mean(0))
        z = jnp.mean(jax.nn.logsumexp(logits, -1) ** 2)
        return y, balance + 1e-3 * z
    return fn


def vmap_per_token(k):
    """jax.vmap over tokens of a jax.vmap over their k (expert, weight)
    pairs, each indexing the stacks w1[e] (vmap's gathers index every dim)."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = softmax_topk(x, wr, k)

        def token(xt, ids, gates):
            def slot(e, g):
                return g * ffn(xt, w1[e], w3[e], w2[e])
            return jax.vmap(slot)(ids, gates).sum(0)
        return jax.vmap(token)(x, idx, vals)
    return fn


def sort_threshold_loop(k):
    """The k-th largest logit from a full jnp.sort, softmax of the logits
    masked below it, a loop over experts reading the gate's columns."""
    def fn(x, wr, w1, w3, w2):
        logits = x @ wr
        kth = jnp.sort(logits, axis=-1)[:, -k:-k + 1]
        gate = jax.nn.softmax(jnp.where(logits >= kth, logits, -jnp.inf), -1)
        y = jnp.zeros_like(x)
        for e in range(wr.shape[1]):
            y = y + gate[:, e:e + 1] * ffn(x, w1[e], w3[e], w2[e])
        return y
    return fn



def dense_take_along(k, crossed=False):
    """Every expert on every token (einsums), then each token's k routed
    outputs picked with take_along_axis and weighted by the top-k weights
    (einsum('tk,tkh->th')). `crossed` picks them by the indices in reverse
    slot order, so each output meets the other slot's weight (a near miss)."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(jax.nn.softmax(x @ wr, axis=-1), k)
        vals = vals / vals.sum(-1, keepdims=True)
        h = jax.nn.silu(jnp.einsum('th,ehf->tef', x, w1)) * jnp.einsum('th,ehf->tef', x, w3)
        outs = jnp.einsum('tef,efh->teh', h, w2)
        pick = idx[:, ::-1] if crossed else idx
        return jnp.einsum('tk,tkh->th', vals, jnp.take_along_axis(outs, pick[..., None], axis=1))
    return fn


def stack_fancy_index(k):
    """Per-expert outputs stacked on axis 1, the routed ones picked by
    outs[arange(T)[:, None], idx] and summed with the weights over the
    slots; top-k of the logits, softmax over the k."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(x @ wr, k)
        vals = jax.nn.softmax(vals, axis=-1)
        outs = jnp.stack([ffn(x, w1[e], w3[e], w2[e]) for e in range(wr.shape[1])], 1)
        picked = outs[jnp.arange(x.shape[0])[:, None], idx]
        return (picked * vals[..., None]).sum(1)
    return fn


def bmm_broadcast(k):
    """A PyTorch port of batched experts: Linear-layout stacks [E, out, in],
    x broadcast to [E, T, H] and multiplied by each stack's transpose
    (torch.bmm), the gate transposed to [E, T] for einsum('et,eth->th')."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(x @ wr.T, k)
        vals = jax.nn.softmax(vals, axis=-1)
        xs = jnp.broadcast_to(x, (wr.shape[0],) + x.shape)
        h = jax.nn.silu(jnp.matmul(xs, jnp.swapaxes(w1, 1, 2))) * jnp.matmul(xs, jnp.swapaxes(w3, 1, 2))
        outs = jnp.matmul(h, jnp.swapaxes(w2, 1, 2))
        gate = (jax.nn.one_hot(idx, wr.shape[0], dtype=x.dtype) * vals[..., None]).sum(1)
        return jnp.einsum('et,eth->th', gate.T, outs)
    return fn


def interleaved_gate_up(k):
    """gpt-oss's fused gate/up stack [E, H, 2F] with gate and up
    interleaved (columns 0, 2, 4, ... and 1, 3, 5, ...), cut by strided
    slices; the gate scattered by .at[rows, idx].set."""
    def fn(x, wr, w13, w2):
        vals, idx = lax.top_k(jax.nn.softmax(x @ wr, axis=-1), k)
        vals = vals / vals.sum(-1, keepdims=True)
        t = x.shape[0]
        gate = jnp.zeros((t, wr.shape[1]), x.dtype).at[jnp.arange(t)[:, None], idx].set(vals)
        hu = jnp.einsum('th,ehf->tef', x, w13)
        h = jax.nn.silu(hu[..., ::2]) * hu[..., 1::2]
        return jnp.einsum('te,teh->th', gate, jnp.einsum('tef,efh->teh', h, w2))
    return fn


def where_top1_loop(near_miss=False):
    """Switch-style top-1 by argmax of sigmoid scores, its weight by max; a
    loop over experts keeping each output on its rows with
    where((idx == e)[:, None], w[:, None] * ffn_e(x), 0). `near_miss` gives
    expert 0 a plain SiLU FFN (not one expert set: a remark, plain ops)."""
    def fn(x, wr, w1, w3, w2):
        s = jax.nn.sigmoid(x @ wr)
        idx, w = jnp.argmax(s, -1), jnp.max(s, -1)
        y = jnp.zeros_like(x)
        for e in range(wr.shape[1]):
            out = (jax.nn.silu(x @ w1[e]) @ w2[e]) if near_miss and e == 0 else ffn(x, w1[e], w3[e], w2[e])
            y = y + jnp.where((idx == e)[:, None], w[:, None] * out, 0.0)
        return y
    return fn


def rows_masked_loop(k, by_column=False, wrong_rows=False):
    """A loop over experts feeding each expert only its rows of x, zeroed
    elsewhere: where(any(idx == e, -1)[:, None], x, 0), or (`by_column`)
    x * (w_e > 0)[:, None]; `wrong_rows` feeds expert e the rows of expert
    e + 1 (a remark, plain ops)."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(jax.nn.softmax(x @ wr, axis=-1), k)
        experts = wr.shape[1]
        y = jnp.zeros_like(x)
        for e in range(experts):
            hit = idx == e
            we = (vals * hit).sum(-1)
            if by_column:
                xe = x * (we > 0).astype(x.dtype)[:, None]
            else:
                rows = jnp.any(idx == (e + 1) % experts if wrong_rows else hit, -1)
                xe = jnp.where(rows[:, None], x, 0.0)
            y = y + ffn(xe, w1[e], w3[e], w2[e]) * we[:, None]
        return y
    return fn


def rounded_probs(k):
    """T5X-style bf16 layer whose router runs in f32 on x.astype(f32), its
    softmax rounded to bf16 before top_k (probs.astype(bf16)); the experts
    in bf16, a where-mask loop."""
    def fn(x, wr, w1, w3, w2):
        probs = jax.nn.softmax(x.astype(jnp.float32) @ wr.astype(jnp.float32), -1).astype(x.dtype)
        vals, idx = lax.top_k(probs, k)
        y = jnp.zeros_like(x)
        for e in range(wr.shape[1]):
            w = jnp.where(idx == e, vals, 0).sum(-1)
            y = y + w[:, None] * ffn(x, w1[e], w3[e], w2[e])
        return y
    return fn


def argsort_ascending_near_miss(x, wr, w1, w3, w2):
    """The top-2 taken from an ascending argsort cut to its last two (equal
    logits would go to the higher index, not lax.top_k's lower one): a
    remark, plain ops."""
    logits = x @ wr
    idx = jnp.argsort(logits, -1)[:, -2:]
    vals = jax.nn.softmax(jnp.take_along_axis(logits, idx, -1), -1)
    y = jnp.zeros_like(x)
    for e in range(wr.shape[1]):
        y = y + jnp.sum(jnp.where(idx == e, vals, 0), -1)[:, None] * ffn(x, w1[e], w3[e], w2[e])
    return y

def temperature_router(k, tau, multiply=False):
    """Softmax over the logits divided by a temperature (or times a constant
    scale), in f32 on 16-bit logits; top-k renormalised, a where-mask loop."""
    def fn(x, wr, w1, w3, w2):
        logits = x @ wr
        logits = logits * tau if multiply else logits / tau
        vals, idx = lax.top_k(jax.nn.softmax(logits.astype(jnp.float32), -1), k)
        vals = (vals / vals.sum(-1, keepdims=True)).astype(x.dtype)
        y = jnp.zeros_like(x)
        for e in range(wr.shape[1]):
            y = y + jnp.where(idx == e, vals, 0).sum(-1)[:, None] * ffn(x, w1[e], w3[e], w2[e])
        return y
    return fn


def log_softmax_topk(k, renormalise=False):
    """top_k of log_softmax(logits), its values exponentiated (the softmax
    probabilities), maybe renormalised; a one-hot einsum gate over
    einsum experts."""
    def fn(x, wr, w1, w3, w2):
        logp, idx = lax.top_k(jax.nn.log_softmax(x @ wr, axis=-1), k)
        vals = jnp.exp(logp)
        if renormalise:
            vals = vals / vals.sum(-1, keepdims=True)
        gate = jnp.einsum('tke,tk->te', jax.nn.one_hot(idx, wr.shape[1], dtype=x.dtype), vals)
        h = jax.nn.silu(jnp.einsum('th,ehf->etf', x, w1)) * jnp.einsum('th,ehf->etf', x, w3)
        return jnp.einsum('te,eth->th', gate, jnp.einsum('etf,efh->eth', h, w2))
    return fn


def at_set_mask(k, sigmoid=False, renormalise=True):
    """DeepSeek-style mask built by scatter: zeros_like(probs).at[rows,
    idx].set(1.0) times the probabilities (softmax, or sigmoid scores),
    maybe renormalised; the experts' outputs stacked on axis 1 and
    combined by einsum."""
    def fn(x, wr, w1, w3, w2):
        logits = x @ wr
        probs = jax.nn.sigmoid(logits) if sigmoid else jax.nn.softmax(logits, -1)
        _, idx = lax.top_k(probs, k)
        mask = jnp.zeros_like(probs).at[jnp.arange(x.shape[0])[:, None], idx].set(1.0)
        gate = probs * mask
        if renormalise:
            gate = gate / gate.sum(-1, keepdims=True)
        outs = jnp.stack([ffn(x, w1[e], w3[e], w2[e]) for e in range(wr.shape[1])], 1)
        return jnp.einsum('te,teh->th', gate, outs)
    return fn


def mixtral_shapes(t, h, f, e):
    return [(t, h), (h, e), (e, h, f), (e, h, f), (e, f, h)]


def take_along_logits(k):
    """The selection by top_k of the logits, the weights read back from the
    full softmax with take_along_axis (softmax keeps each row's order) and
    renormalised; a one-hot gate over experts stacked along axis 1."""
    def fn(x, wr, w1, w3, w2):
        logits = x @ wr
        probs = jax.nn.softmax(logits, axis=-1)
        _, idx = lax.top_k(logits, k)
        g = jnp.take_along_axis(probs, idx, axis=-1)
        g = g / g.sum(-1, keepdims=True)
        gate = (jax.nn.one_hot(idx, wr.shape[1], dtype=x.dtype) * g[..., None]).sum(1)
        out = jnp.stack([ffn(x, w1[e], w3[e], w2[e]) for e in range(wr.shape[1])], 1)
        return jnp.einsum('te,teh->th', gate, out)
    return fn


def epsilon_renorm(k, eps, clamp=False):
    """DeepSeek's renormalisation against a zero sum, w / (sum(w) + eps),
    einsum experts. An eps far below the sum's rounding is exactly the sum
    alone; a larger one is the routing's norm_epsilon (LFM2-MoE's 1e-6); a
    negative one is a near miss. `clamp`: w / max(sum(w), eps) instead
    (torch's clamp(min=finfo.eps)), the sum itself unless eps can exceed it
    (a near miss)."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(jax.nn.softmax(x @ wr, axis=-1), k)
        total = vals.sum(-1, keepdims=True)
        vals = vals / (jnp.maximum(total, eps) if clamp else total + eps)
        gate = (jax.nn.one_hot(idx, wr.shape[1], dtype=x.dtype) * vals[..., None]).sum(1)
        h = jax.nn.silu(jnp.einsum('th,ehf->tef', x, w1)) * jnp.einsum('th,ehf->tef', x, w3)
        return jnp.einsum('te,teh->th', gate, jnp.einsum('tef,efh->teh', h, w2))
    return fn


def gate_in_down_einsum(k):
    """The gate inside the down projection's einsum, einsum('te,tef,efh->th',
    gate, h, w2): each expert's activations weighted before it, the sum over
    experts and FFN at once; top-k of the logits, softmax over the picks."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(x @ wr, k)
        vals = jax.nn.softmax(vals, axis=-1)
        gate = jnp.einsum('tk,tke->te', vals, jax.nn.one_hot(idx, wr.shape[1], dtype=x.dtype))
        h = jax.nn.silu(jnp.einsum('th,ehf->tef', x, w1)) * jnp.einsum('th,ehf->tef', x, w3)
        return jnp.einsum('te,tef,efh->th', gate, h, w2)
    return fn


def batch_gate_in_down(k):
    """The same on x [batch, seq, hidden] with GeGLU experts (tanh GELU)."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(jnp.einsum('bsh,he->bse', x, wr), k)
        vals = jax.nn.softmax(vals, axis=-1)
        gate = jnp.einsum('bsk,bske->bse', vals, jax.nn.one_hot(idx, wr.shape[1], dtype=x.dtype))
        h = jax.nn.gelu(jnp.einsum('bsh,ehf->bsef', x, w1)) * jnp.einsum('bsh,ehf->bsef', x, w3)
        return jnp.einsum('bse,bsef,efh->bsh', gate, h, w2)
    return fn


def maxtext_permute(k, repeat=True, unsort_by_inverse=True):
    """MaxText's dropless layer: the slots sorted by expert (argsort of the
    flattened ids), the rows repeat(x, k)[order] (or x[order // k]),
    ragged_dot experts over bincount groups, the rows put back by
    argsort(order), reshaped [T, k, H] and summed with the weights by
    einsum('BKE,BK -> BE'). With unsort_by_inverse=False the rows are put
    back by order itself, which is not the inverse (a near miss)."""
    def fn(x, wr, w1, w3, w2):
        top_w, top_i = lax.top_k(x @ wr, k)
        top_w = jax.nn.softmax(top_w.astype(jnp.float32), axis=-1).astype(x.dtype)
        flat = top_i.reshape(-1)
        order = jnp.argsort(flat)
        xs = jnp.repeat(x, k, axis=0)[order, ...] if repeat else jnp.take(x, order // k, axis=0)
        sizes = jnp.bincount(flat, length=wr.shape[1])
        h = jax.nn.silu(lax.ragged_dot(xs, w1, sizes)) * lax.ragged_dot(xs, w3, sizes)
        o = lax.ragged_dot(h, w2, sizes)
        back = o[jnp.argsort(order) if unsort_by_inverse else order, ...]
        return jnp.einsum('BKE,BK -> BE', back.reshape(-1, k, x.shape[1]), top_w.reshape(-1, k))
    return fn


def scatter_unsort(k):
    """A PyTorch port of the sorted dropless layer: the rows put back with
    zeros.at[order].set(o) (out[order] = o) and summed over the slots as
    (rows * w[..., None]).sum(1); softmax then top-k routing."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = softmax_topk(x, wr, k, renormalise=False)
        flat = idx.reshape(-1)
        order = jnp.argsort(flat, stable=True)
        xs = jnp.repeat(x, k, axis=0)[order]
        sizes = jnp.bincount(flat, length=wr.shape[1])
        h = jax.nn.silu(lax.ragged_dot(xs, w1, sizes)) * lax.ragged_dot(xs, w3, sizes)
        o = lax.ragged_dot(h, w2, sizes)
        back = jnp.zeros((x.shape[0] * k, x.shape[1]), x.dtype).at[order].set(o)
        return (back.reshape(x.shape[0], k, x.shape[1]) * vals[..., None]).sum(1)
    return fn


def praxis_top2_combine(raw):
    """Praxis / GShard top-2 without capacity over softmax scores [..., E]:
    the second expert is the argmax of the scores with the first one's
    zeroed (raw * (1 - mask1)), each gate read back by an einsum with its
    one-hot, renormalised with 1e-9; the combine [..., E] of both one-hots."""
    experts = raw.shape[-1]
    i1 = jnp.argmax(raw, axis=-1)
    m1 = jax.nn.one_hot(i1, experts, dtype=raw.dtype)
    g1 = jnp.einsum('...e,...e->...', raw, m1)
    without1 = raw * (1.0 - m1)
    i2 = jnp.argmax(without1, axis=-1)
    m2 = jax.nn.one_hot(i2, experts, dtype=raw.dtype)
    g2 = jnp.einsum('...e,...e->...', without1, m2)
    denom = g1 + g2 + 1e-9
    return (g1 / denom)[..., None] * m1 + (g2 / denom)[..., None] * m2


def repeated_argmax_top2(x, wr, w1, w3, w2):
    """praxis_top2_combine on tokens [T, H] times vmapped SwiGLU experts."""
    combine = praxis_top2_combine(jax.nn.softmax(x @ wr, axis=-1))
    outs = jax.vmap(lambda a, b, c: ffn(x, a, b, c))(w1, w3, w2)
    return jnp.einsum('se,esh->sh', combine, outs)


def repeated_argmax_grouped(x, wr, w1, w3, w2):
    """Praxis's grouped form: x [G, S, M], praxis_top2_combine over
    [G, S, E], applied to every expert's output [G, S, E, M]."""
    combine = praxis_top2_combine(jax.nn.softmax(jnp.einsum('gsm,me->gse', x, wr), axis=-1))
    h = jax.nn.silu(jnp.einsum('gsm,emh->gseh', x, w1)) * jnp.einsum('gsm,emh->gseh', x, w3)
    return jnp.einsum('gse,gsem->gsm', combine, jnp.einsum('gseh,ehm->gsem', h, w2))


def repeated_argmax_masked_loop(x, wr, wi, wo):
    """fairseq / DeepSpeed top-2: the second pick is the argmax of the logits
    with the first masked to -inf; the gates (softmax) are read as
    sum(gates * mask); a loop over experts adds g1 * (i1 == e) + g2 *
    (i2 == e) times each GELU expert."""
    experts = wr.shape[1]
    logits = x @ wr
    gates = jax.nn.softmax(logits, axis=-1)
    i1 = jnp.argmax(gates, axis=-1)
    m1 = jax.nn.one_hot(i1, experts)
    i2 = jnp.argmax(jnp.where(m1 > 0, -jnp.inf, logits), axis=-1)
    m2 = jax.nn.one_hot(i2, experts)
    g1, g2 = jnp.sum(gates * m1, axis=-1), jnp.sum(gates * m2, axis=-1)
    y = jnp.zeros_like(x)
    for e in range(experts):
        w = g1 * (i1 == e) + g2 * (i2 == e)
        y = y + w[:, None] * (jax.nn.gelu(x @ wi[e], approximate=False) @ wo[e])
    return y


def repeated_argmax_sigmoid_top3(x, wr, w1, w3, w2):
    """Three picks by argmax over sigmoid scores, each later one with the
    earlier ones zeroed; unnormalised weights; the gate summed slot by slot
    from one-hots ((t0 + t1) + t2)."""
    experts = wr.shape[1]
    scores = jax.nn.sigmoid(x @ wr)
    remaining, gate = scores, jnp.zeros_like(scores)
    for _ in range(3):
        i = jnp.argmax(remaining, axis=-1)
        m = jax.nn.one_hot(i, experts, dtype=x.dtype)
        gate = gate + jnp.sum(remaining * m, axis=-1)[:, None] * m
        remaining = remaining * (1.0 - m)
    outs = jax.vmap(lambda a, b, c: ffn(x, a, b, c))(w1, w3, w2)
    return jnp.einsum('se,esh->sh', gate, outs)


def repeated_argmax_logits_near_miss(x, wr, w1, w3, w2):
    """A near miss: the first pick zeroed in the logits, which can be
    negative, so the second argmax may pick it again (not a top-2)."""
    experts = wr.shape[1]
    logits = x @ wr
    i1 = jnp.argmax(logits, axis=-1)
    m1 = jax.nn.one_hot(i1, experts, dtype=x.dtype)
    i2 = jnp.argmax(logits * (1.0 - m1), axis=-1)
    m2 = jax.nn.one_hot(i2, experts, dtype=x.dtype)
    gates = jax.nn.softmax(logits, axis=-1)
    combine = gates * m1 + gates * m2
    outs = jax.vmap(lambda a, b, c: ffn(x, a, b, c))(w1, w3, w2)
    return jnp.einsum('se,esh->sh', combine, outs)


def flat_gathered(k, segment=True, tiled=False, floordiv=False, take=False):
    """Decode-style, one row per (token, slot) pair: the pairs' tokens
    repeat(arange(T), k), their rows x[tok], the routed experts' weights
    gathered per pair, w[idx.reshape(-1)], batched einsums, the weighted
    rows summed per token by segment_sum (or reshaped to [T, k, H] and
    summed). `floordiv`: the tokens written arange(T * k) // k; `take`:
    rows and weights read by jnp.take (fill mode: NaN where out of range).
    `tiled`: the tokens tile(arange(T), k), which pairs row n with token
    n % T instead of the slot's (a near miss)."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = softmax_topk(x, wr, k)
        t = x.shape[0]
        tok = (jnp.tile(jnp.arange(t), k) if tiled else jnp.arange(t * k) // k if floordiv
               else jnp.repeat(jnp.arange(t), k))
        e = idx.reshape(-1)
        rows = (lambda w, i: jnp.take(w, i, axis=0)) if take else (lambda w, i: w[i])
        xs = rows(x, tok)
        h = jax.nn.silu(jnp.einsum("nd,ndf->nf", xs, rows(w1, e))) * jnp.einsum("nd,ndf->nf", xs, rows(w3, e))
        o = jnp.einsum("nf,nfd->nd", h, rows(w2, e)) * vals.reshape(-1, 1)
        if segment:
            return jax.ops.segment_sum(o, tok, num_segments=t)
        return o.reshape(t, k, -1).sum(1)
    return fn


def gate_row_matmul(k):
    """The top-k-then-softmax weights scattered into a dense gate, the
    stacked outputs [T, E, H] weighted by the gate as a row of a batched
    matmul: jnp.matmul(gate[:, None, :], outs)[:, 0] (torch.bmm's form)."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(x @ wr, k)
        t, e = x.shape[0], wr.shape[1]
        gate = jnp.zeros((t, e), x.dtype).at[jnp.arange(t)[:, None], idx].set(jax.nn.softmax(vals, -1))
        outs = jnp.stack([ffn(x, w1[i], w3[i], w2[i]) for i in range(e)], axis=1)
        return jnp.matmul(gate[:, None, :], outs)[:, 0]
    return fn


def sort_threshold_scores(k, sigmoid=True):
    """The scores kept where they reach their k-th largest, read from an
    ascending jnp.sort as s_sorted[:, -k] and given back its axis with
    [:, None]; renormalised; a loop over the experts reading the gate's
    columns."""
    def fn(x, wr, w1, w3, w2):
        z = x @ wr
        s = jax.nn.sigmoid(z) if sigmoid else jax.nn.softmax(z, -1)
        kth = jnp.sort(s, -1)[:, -k][:, None]
        gate = jnp.where(s >= kth, s, 0.0)
        gate = gate / gate.sum(-1, keepdims=True)
        y = 0.0
        for e in range(wr.shape[1]):
            y = y + gate[:, e:e + 1] * ffn(x, w1[e], w3[e], w2[e])
        return y
    return fn


def switch_mask_times_max(x, wr, w1, w3, w2):
    """Switch top-1: each expert's term is its mask (idx == e) as numbers,
    given an axis, times the max probability, times the expert's output."""
    probs = jax.nn.softmax(x @ wr, -1)
    idx, gate = jnp.argmax(probs, -1), jnp.max(probs, -1)
    y = jnp.zeros_like(x)
    for e in range(wr.shape[1]):
        y = y + (idx == e).astype(x.dtype)[:, None] * gate[:, None] * ffn(x, w1[e], w3[e], w2[e])
    return y


def gshard_dispatch_einsums(k, scaled=False):
    """GShard's einsums without a capacity: the dispatch mask the sum of
    one_hot(idx) over the slots, x dispatched to every expert by
    einsum('te,th->eth', mask, x), vmapped experts, combined by
    einsum('te,eth->th', probs * mask, outs). `scaled` dispatches x times
    the combine weights instead of the 0/1 mask (the experts see scaled
    rows: a near miss)."""
    def fn(x, wr, w1, w3, w2):
        probs = jax.nn.softmax(x @ wr, -1)
        _, idx = lax.top_k(probs, k)
        mask = jax.nn.one_hot(idx, wr.shape[1], dtype=x.dtype).sum(1)
        combine = probs * mask
        xe = jnp.einsum("te,th->eth", combine if scaled else mask, x)
        outs = jax.vmap(ffn)(xe, w1, w3, w2)
        return jnp.einsum("te,eth->th", combine, outs)
    return fn


def additive_mask_softmax(k):
    """The softmax of the logits plus a mask that is -inf off the top-k,
    built by full(-inf).at[rows, idx].set(0); stacked outputs [E, T, H]
    combined by einsum('te,eth->th')."""
    def fn(x, wr, w1, w3, w2):
        logits = x @ wr
        _, idx = lax.top_k(logits, k)
        rows = jnp.arange(x.shape[0])[:, None]
        gate = jax.nn.softmax(logits + jnp.full_like(logits, -jnp.inf).at[rows, idx].set(0.0), -1)
        outs = jnp.stack([ffn(x, w1[e], w3[e], w2[e]) for e in range(wr.shape[1])], 0)
        return jnp.einsum("te,eth->th", gate, outs)
    return fn


def relu2_experts(k, vmapped=False):
    """Squared-ReLU FFN experts (Nemotron-H, Primer): sigmoid top-k,
    renormalised; a loop over where-masks with jnp.square(jax.nn.relu(.)),
    or (`vmapped`) `jax.nn.relu(.) ** 2` on the stacked experts combined by
    an einsum over the gate scattered into [T, E]."""
    def fn(x, wr, w1, w2):
        s = jax.nn.sigmoid(x @ wr)
        vals, idx = lax.top_k(s, k)
        vals = vals / vals.sum(-1, keepdims=True)
        if vmapped:
            rows = jnp.arange(x.shape[0])[:, None]
            gate = jnp.zeros_like(s).at[rows, idx].set(vals)
            outs = jax.vmap(lambda a, b: (jax.nn.relu(x @ a) ** 2) @ b)(w1, w2)
            return jnp.einsum("te,eth->th", gate, outs)
        y = jnp.zeros_like(x)
        for e in range(wr.shape[1]):
            we = jnp.sum(jnp.where(idx == e, vals, 0.0), -1, keepdims=True)
            y = y + we * (jnp.square(jax.nn.relu(x @ w1[e])) @ w2[e])
        return y
    return fn


def slot_column_loop(k, fori=False, wrong_expert=False):
    """A loop over the k slots, then the experts: each expert's output
    weighted by its part of slot j's column, where(idx[:, j] == e,
    vals[:, j], 0) (`fori`: the slot loop a lax.fori_loop). The parts of
    one expert add up to its gate column. `wrong_expert` runs expert e + 1's
    FFN in slot 1 (a near miss)."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(jax.nn.softmax(x @ wr, -1), k)
        n = wr.shape[1]

        def slot(j, y):
            for e in range(n):
                g = jnp.where(idx[:, j] == e, vals[:, j], 0.0)[:, None]
                f = (e + 1) % n if wrong_expert and not fori and j == 1 else e
                y = y + g * ffn(x, w1[f], w3[f], w2[f])
            return y
        if fori:
            return lax.fori_loop(0, k, slot, jnp.zeros_like(x))
        y = jnp.zeros_like(x)
        for j in range(k):
            y = slot(j, y)
        return y
    return fn


def expert_cells(k, where_chain=False, skip_last=False):
    """Every expert on every token, stacked [E, T, H]; each token's k picks
    taken as its [k, H] cells, outs[idx, arange(T)[:, None]], and summed
    with the softmax of the picked logits. `where_chain` writes the cells
    with a jnp.where per expert into zeros instead; `skip_last` leaves the
    last expert's cells zero (not a whole layer)."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(x @ wr, k)
        w = jax.nn.softmax(vals, -1)
        n = wr.shape[1]
        outs = [ffn(x, w1[e], w3[e], w2[e]) for e in range(n)]
        if where_chain:
            cells = jnp.zeros((x.shape[0], k, x.shape[1]), x.dtype)
            for e in range(n - 1 if skip_last else n):
                cells = jnp.where((idx == e)[..., None], outs[e][:, None, :], cells)
        else:
            cells = jnp.stack(outs)[idx, jnp.arange(x.shape[0])[:, None]]
        return jnp.einsum("tkh,tk->th", cells, w)
    return fn


def stacked_terms(k, gate="at_set", mean=False):
    """Each expert's output weighted by its gate column, the terms stacked
    and summed, jnp.stack(terms).sum(0); the gate scattered by
    .at[rows, idx].set(vals) or (`gate="where"`) each column
    where(idx == e, vals, 0).sum(-1). `mean` averages the stack instead (the
    layer's output divided by E)."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(jax.nn.softmax(x @ wr, -1), k)
        n = wr.shape[1]
        if gate == "at_set":
            g = jnp.zeros((x.shape[0], n), x.dtype).at[jnp.arange(x.shape[0])[:, None], idx].set(vals)
            columns = [g[:, e:e + 1] for e in range(n)]
        else:
            columns = [jnp.where(idx == e, vals, 0).sum(-1)[:, None] for e in range(n)]
        terms = jnp.stack([c * ffn(x, w1[e], w3[e], w2[e]) for e, c in enumerate(columns)])
        return terms.mean(0) if mean else terms.sum(0)
    return fn


def scan_over_slots(k):
    """lax.scan over the k slots: each step gathers its slot's experts'
    weights per token (`w1[idx[:, j]]`) and adds the slot's weighted
    output; unrolled like a loop over the experts."""
    def fn(x, wr, w1, w3, w2):
        vals, idx = lax.top_k(jax.nn.softmax(x @ wr, -1), k)

        def step(y, j):
            e = idx[:, j]
            h = jax.nn.silu(jnp.einsum("th,thf->tf", x, w1[e])) * jnp.einsum("th,thf->tf", x, w3[e])
            return y + vals[:, j][:, None] * jnp.einsum("tf,tfh->th", h, w2[e]), None
        return lax.scan(step, jnp.zeros_like(x), jnp.arange(k))[0]
    return fn


def l1_renormalised(k, spelling="norm", on_logits=False):
    """DBRX's renormalisation: the top-k probabilities divided by their L1
    norm, jnp.linalg.norm(w, ord=1) or jnp.abs(w).sum() (softmax; sigmoid
    for `abs_sigmoid`): the sum, the weights being non-negative. With
    `on_logits` the top-k of the logits, which may be negative, is divided
    by its L1 norm: not a renormalisation (a near miss)."""
    def fn(x, wr, w1, w3, w2):
        logits = x @ wr
        scores = (logits if on_logits else jax.nn.sigmoid(logits) if spelling == "abs_sigmoid"
                  else jax.nn.softmax(logits, -1))
        vals, idx = lax.top_k(scores, k)
        if spelling == "norm":
            vals = vals / jnp.linalg.norm(vals, ord=1, axis=-1, keepdims=True)
        else:
            vals = vals / jnp.sum(jnp.abs(vals), -1, keepdims=True)
        y = jnp.zeros_like(x)
        for e in range(wr.shape[1]):
            we = jnp.sum(jnp.where(idx == e, vals, 0.0), -1, keepdims=True)
            y = y + we * ffn(x, w1[e], w3[e], w2[e])
        return y
    return fn


def routed_other_act_swiglu_shared(act):
    """Routed experts with another activation than the SwiGLU shared expert
    added to them (`relu`: plain ReLU FFNs; `geglu`: GELU-gated): the layer's
    shared expert has the routed experts' activation, so the shared one
    stays plain ops beside the raised layer."""
    def mixture(x, wr, w1, w3, w2, s1, s3, s2):
        vals, idx = softmax_topk(x, wr, 2, renormalise=False)
        y = jnp.zeros_like(x)
        for e in range(wr.shape[1]):
            we = jnp.sum(jnp.where(idx == e, vals, 0.0), -1, keepdims=True)
            h = jax.nn.relu(x @ w1[e]) if w3 is None else jax.nn.gelu(x @ w1[e], approximate=False) * (x @ w3[e])
            y = y + we * (h @ w2[e])
        return y + ffn(x, s1, s3, s2)
    if act == "relu":
        return lambda x, wr, w1, w2, s1, s3, s2: mixture(x, wr, w1, None, w2, s1, s3, s2)
    return mixture


def programs(Program):
    """The idiom programs as jax_programs.Program records."""
    bf16 = jnp.bfloat16
    return {
        "idiom_loop_where": Program(loop_where(2), mixtral_shapes(16, 32, 48, 8)),
        "idiom_flat_gathered_segment_sum_k2": Program(flat_gathered(2), mixtral_shapes(6, 32, 40, 8)),
        "idiom_flat_gathered_reshape_sum_k3": Program(flat_gathered(3, segment=False), mixtral_shapes(4, 24, 32, 6)),
        "idiom_flat_gathered_segment_sum_bf16_k2": Program(flat_gathered(2), mixtral_shapes(5, 32, 24, 4), dtype=bf16),
        "idiom_flat_tiled_tokens_near_miss": Program(flat_gathered(2, tiled=True), mixtral_shapes(6, 32, 40, 8)),
        "idiom_flat_floordiv_tokens_k2": Program(flat_gathered(2, floordiv=True), mixtral_shapes(7, 32, 24, 6)),
        "idiom_flat_take_fill_k3": Program(flat_gathered(3, floordiv=True, take=True), mixtral_shapes(5, 24, 32, 8)),
        "idiom_loop_where_bf16_k3": Program(loop_where(3), mixtral_shapes(10, 24, 20, 6), dtype=bf16),
        "idiom_separate_params": Program(separate_params(2), [(12, 32), (32, 4)] + [(32, 40), (40, 32)] * 4),
        "idiom_fused_split": Program(fused_split(2), [(16, 32), (32, 8), (8, 32, 96), (8, 48, 32)]),
        "idiom_vmap_experts_k4": Program(vmap_experts(4), mixtral_shapes(20, 32, 24, 16)),
        "idiom_masked_softmax_stack": Program(masked_softmax_stack(2), mixtral_shapes(16, 32, 48, 8)),
        "idiom_sigmoid_top1_shared": Program(sigmoid_top1_shared,
                                             mixtral_shapes(16, 32, 48, 8) + [(32, 64), (32, 64), (64, 32)]),
        "idiom_geglu_stack": Program(geglu_stack(2), mixtral_shapes(8, 32, 40, 6)),
        "idiom_two_layer_lm": Program(two_layer_lm(2), [(16, 32), (32,), (32, 8), (8, 32, 96), (8, 48, 32),
                                                         (32,), (32, 8), (8, 32, 96), (8, 48, 32)]),
        "idiom_take_segment_sum": Program(take_segment_sum(2), mixtral_shapes(16, 32, 48, 8)),
        "idiom_torch_layout": Program(torch_layout(2), [(16, 32), (8, 32), (8, 48, 32), (8, 48, 32), (8, 32, 48)]),
        "idiom_gathered_weights_k3": Program(gathered_weights(3), [(4, 32), (32, 8), (8, 48, 32), (8, 48, 32),
                                                                  (8, 32, 48)]),
        "idiom_einsum_gate_k2": Program(einsum_gate(2), mixtral_shapes(16, 32, 24, 8)),
        "idiom_batch_seq_einsum": Program(batch_seq_einsum(2), [(2, 6, 32), (32, 8), (8, 32, 40), (8, 32, 40),
                                                                (8, 40, 32)]),
        "idiom_batch_seq_loop_k3": Program(batch_seq_loop(3), [(3, 4, 24), (24, 6), (6, 24, 20), (6, 24, 20),
                                                               (6, 20, 24)]),
        "idiom_biased_vmap_experts": Program(biased_vmap_experts,
                                             [(12, 32), (32, 6), (6, 32, 40), (6, 40), (6, 40, 32), (6, 32)]),
        "idiom_biased_loop_fused_k2": Program(biased_loop_fused(2), [(12, 32), (32, 4), (4,), (4, 32, 80), (4, 80),
                                                                     (4, 40, 32), (4, 32)]),
        "idiom_biased_loop_fused_bf16_k2": Program(biased_loop_fused(2), [(10, 32), (32, 4), (4,), (4, 32, 48),
                                                                          (4, 48), (4, 24, 32), (4, 32)], dtype=bf16),
        "idiom_biased_einsum_experts_k3": Program(biased_einsum_experts(3), [(16, 24), (24, 8), (8, 24, 32), (8, 32),
                                                                             (8, 32, 24), (8, 24)]),
        "idiom_some_biased_near_miss": Program(some_biased_near_miss,
                                               [(8, 32), (32, 4), (4, 32, 24), (4, 24), (4, 24, 32), (4, 32)]),
        "idiom_expert_choice_near_miss": Program(expert_choice_near_miss, mixtral_shapes(12, 32, 40, 6)),
        "idiom_expert_choice_c4": Program(expert_choice(4), mixtral_shapes(12, 32, 40, 6)),
        "idiom_expert_choice_temperature_c3": Program(expert_choice(3, tau=1.5), mixtral_shapes(10, 24, 32, 4)),
        "idiom_expert_choice_take_vmap_c6": Program(expert_choice_take_vmap(6),
                                                    [(16, 24), (8, 24), (8, 24, 32), (8, 32, 24)]),
        "idiom_switch_argmax_loop": Program(switch_argmax_loop, [(16, 32), (32, 4), (4, 32, 64), (4, 64, 32)]),
        "idiom_argmax_onehot_vmap": Program(argmax_onehot_vmap, mixtral_shapes(12, 24, 40, 8)),
        "idiom_repeated_argmax_top2": Program(repeated_argmax_top2, mixtral_shapes(16, 32, 48, 8)),
        "idiom_repeated_argmax_top2_bf16": Program(repeated_argmax_top2, mixtral_shapes(12, 32, 40, 6), dtype=bf16),
        "idiom_repeated_argmax_grouped": Program(repeated_argmax_grouped,
                                                 [(2, 8, 32), (32, 8), (8, 32, 48), (8, 32, 48), (8, 48, 32)]),
        "idiom_repeated_argmax_masked_loop": Program(repeated_argmax_masked_loop,
                                                     [(12, 24), (24, 6), (6, 24, 40), (6, 40, 24)]),
        "idiom_repeated_argmax_sigmoid_top3": Program(repeated_argmax_sigmoid_top3, mixtral_shapes(10, 32, 24, 8)),
        "idiom_repeated_argmax_logits_near_miss": Program(repeated_argmax_logits_near_miss,
                                                          mixtral_shapes(8, 24, 32, 4)),
        "idiom_argsort_take_along_k2": Program(argsort_take_along(2), mixtral_shapes(16, 32, 24, 6)),
        "idiom_mixed_precision_k2": Program(mixed_precision(2), mixtral_shapes(16, 32, 48, 8)),
        "idiom_nonzero_loop_k2": Program(nonzero_loop(2), mixtral_shapes(12, 32, 40, 4)),
        "idiom_repeat_interleave_k2": Program(repeat_interleave(2), mixtral_shapes(8, 32, 40, 4)),
        "idiom_fori_loop_k2": Program(fori_loop_experts(2), mixtral_shapes(16, 32, 24, 4)),
        "idiom_scan_experts_k2": Program(scan_experts(2), mixtral_shapes(12, 32, 40, 6)),
        "idiom_lax_map_experts_k2": Program(lax_map_experts(2), mixtral_shapes(16, 32, 48, 8)),
        "idiom_lax_map_biased_top1": Program(lax_map_biased_experts, [(12, 32), (32, 4), (4,), (4, 32, 40), (4, 40),
                                                                      (4, 40, 32), (4, 32)]),
        "idiom_gshard_dense_dispatch_k2": Program(gshard_dense_dispatch(2), mixtral_shapes(16, 32, 48, 8)),
        "idiom_gshard_scaled_dispatch_near_miss": Program(gshard_dense_dispatch(2, scaled=True),
                                                          mixtral_shapes(8, 32, 24, 4)),
        "idiom_transposed_gate_sum_k2": Program(transposed_gate_sum(2), mixtral_shapes(12, 24, 40, 6)),
        "idiom_threshold_mask_k3": Program(threshold_mask_gate(3), mixtral_shapes(16, 24, 32, 8)),
        "idiom_take_weights_k2": Program(take_weights(2), mixtral_shapes(6, 32, 40, 4)),
        "idiom_big_negative_mask_k2": Program(big_negative_mask(2), mixtral_shapes(12, 24, 32, 6)),
        "idiom_bf16_weights_cast_k2": Program(bf16_weights_cast(2), mixtral_shapes(12, 32, 40, 4)),
        "idiom_any_mask_gate_k2": Program(any_mask_gate(2), mixtral_shapes(12, 32, 40, 4)),
        "idiom_sigmoid_topk_renorm_k3": Program(sigmoid_topk_renorm(3), mixtral_shapes(10, 24, 32, 8)),
        "idiom_sigmoid_loop_where_bf16_k2": Program(sigmoid_loop_where(2), mixtral_shapes(12, 32, 24, 8), dtype=bf16),
        "idiom_slot_loop_gather_k2": Program(slot_loop_gather(2), mixtral_shapes(6, 32, 40, 4)),
        "idiom_slot_loop_crossed_near_miss": Program(slot_loop_crossed_near_miss, mixtral_shapes(6, 32, 40, 4)),
        "idiom_slot_gather_top1": Program(slot_gather_top1, mixtral_shapes(8, 32, 24, 4)),
        "idiom_one_hot_slot_terms": Program(one_hot_slot_terms, mixtral_shapes(10, 32, 40, 6)),
        "idiom_aux_loss_outputs_k2": Program(aux_loss_outputs(2), mixtral_shapes(16, 32, 40, 6)),
        "idiom_vmap_per_token_k3": Program(vmap_per_token(3), mixtral_shapes(10, 24, 32, 6)),
        "idiom_sort_threshold_loop_k2": Program(sort_threshold_loop(2), mixtral_shapes(12, 32, 24, 8)),
        "idiom_take_along_logits_k2": Program(take_along_logits(2), mixtral_shapes(14, 32, 40, 8)),
        "idiom_epsilon_renorm_k2": Program(epsilon_renorm(2, 1e-20), mixtral_shapes(12, 24, 32, 6)),
        "idiom_large_epsilon_renorm_k2": Program(epsilon_renorm(2, 1e-3), mixtral_shapes(12, 24, 32, 6)),
        "idiom_negative_epsilon_renorm_near_miss": Program(epsilon_renorm(2, -0.05), mixtral_shapes(12, 24, 32, 6)),
        "idiom_clamped_renorm_k2": Program(epsilon_renorm(2, float(jnp.finfo(jnp.float32).eps), clamp=True),
                                           mixtral_shapes(12, 24, 32, 6)),
        "idiom_clamped_renorm_near_miss": Program(epsilon_renorm(2, 0.9, clamp=True), mixtral_shapes(12, 24, 32, 6)),
        "idiom_gate_in_down_einsum_k2": Program(gate_in_down_einsum(2), mixtral_shapes(16, 32, 48, 8)),
        "idiom_batch_gate_in_down_k2": Program(batch_gate_in_down(2), [(2, 8, 32), (32, 6), (6, 32, 40), (6, 32, 40),
                                                                         (6, 40, 32)]),
        "idiom_maxtext_permute_k2": Program(maxtext_permute(2), mixtral_shapes(16, 32, 48, 8)),
        "idiom_maxtext_take_bf16_k3": Program(maxtext_permute(3, repeat=False), mixtral_shapes(12, 32, 40, 6),
                                              dtype=bf16),
        "idiom_maxtext_take_k3": Program(maxtext_permute(3, repeat=False), mixtral_shapes(12, 32, 40, 6)),
        "idiom_scatter_unsort_k2": Program(scatter_unsort(2), mixtral_shapes(16, 32, 48, 8)),
        "idiom_maxtext_unsort_near_miss": Program(maxtext_permute(2, unsort_by_inverse=False),
                                                  mixtral_shapes(8, 32, 24, 4)),
        "idiom_router_bias_k2": Program(router_bias, [(12, 32), (32, 4), (4,), (4, 32, 40), (4, 32, 40), (4, 40, 32)]),
        "idiom_flax_dense_router_bf16_k2": Program(flax_dense_router(2), [(2, 6, 32), (32, 6), (6,), (6, 32, 40),
                                                                          (6, 32, 40), (6, 40, 32)], dtype=bf16),
        "idiom_flax_dense_router_k3": Program(flax_dense_router(3), [(2, 5, 24), (24, 8), (8,), (8, 24, 32),
                                                                     (8, 24, 32), (8, 32, 24)]),
        "idiom_dense_take_along_k2": Program(dense_take_along(2), mixtral_shapes(12, 32, 40, 8)),
        "idiom_dense_take_along_crossed_near_miss": Program(dense_take_along(2, crossed=True),
                                                            mixtral_shapes(8, 24, 32, 4)),
        "idiom_stack_fancy_index_k3": Program(stack_fancy_index(3), mixtral_shapes(10, 24, 32, 6)),
        "idiom_bmm_broadcast_k2": Program(bmm_broadcast(2), [(12, 32), (6, 32), (6, 40, 32), (6, 40, 32), (6, 32, 40)]),
        "idiom_bmm_broadcast_bf16_k2": Program(bmm_broadcast(2), [(8, 32), (4, 32), (4, 24, 32), (4, 24, 32),
                                                                  (4, 32, 24)], dtype=bf16),
        "idiom_interleaved_gate_up_k2": Program(interleaved_gate_up(2), [(12, 32), (32, 8), (8, 32, 80), (8, 40, 32)]),
        "idiom_where_top1_loop": Program(where_top1_loop(), mixtral_shapes(12, 32, 40, 8)),
        "idiom_where_top1_near_miss": Program(where_top1_loop(near_miss=True), mixtral_shapes(8, 24, 32, 4)),
        "idiom_rows_masked_loop_k2": Program(rows_masked_loop(2), mixtral_shapes(12, 32, 40, 6)),
        "idiom_rows_masked_by_column_k3": Program(rows_masked_loop(3, by_column=True), mixtral_shapes(10, 24, 32, 8)),
        "idiom_rows_masked_wrong_near_miss": Program(rows_masked_loop(2, wrong_rows=True), mixtral_shapes(8, 24, 32, 4)),
        "idiom_rounded_probs_bf16_k2": Program(rounded_probs(2), mixtral_shapes(12, 32, 40, 6), dtype=bf16),
        "idiom_argsort_ascending_near_miss": Program(argsort_ascending_near_miss, mixtral_shapes(8, 24, 32, 4)),
        "idiom_batch_seq_take_weights_k2": Program(take_weights(2, tokens='bs'), [(2, 3, 32), (32, 6), (6, 32, 40),
                                                                               (6, 32, 40), (6, 40, 32)]),
        "idiom_batch_seq_slot_loop_k3": Program(batch_seq_slot_loop(3), [(3, 2, 24), (24, 8), (8, 24, 32),
                                                                          (8, 24, 32), (8, 32, 24)]),
        "idiom_temperature_router_k2": Program(temperature_router(2, 0.7), mixtral_shapes(14, 32, 40, 8)),
        "idiom_temperature_scale_bf16_k3": Program(temperature_router(3, 1.6, multiply=True),
                                                   mixtral_shapes(12, 32, 24, 6), dtype=bf16),
        "idiom_log_softmax_topk_k2": Program(log_softmax_topk(2), mixtral_shapes(12, 32, 40, 6)),
        "idiom_log_softmax_topk_renorm_k3": Program(log_softmax_topk(3, renormalise=True),
                                                    mixtral_shapes(10, 24, 32, 8)),
        "idiom_at_set_mask_k2": Program(at_set_mask(2), mixtral_shapes(12, 32, 40, 6)),
        "idiom_at_set_mask_sigmoid_bf16_k3": Program(at_set_mask(3, sigmoid=True, renormalise=False),
                                                     mixtral_shapes(10, 32, 24, 8), dtype=bf16),
        "idiom_gate_row_matmul_k2": Program(gate_row_matmul(2), mixtral_shapes(16, 32, 40, 8)),
        "idiom_sort_threshold_sigmoid_k2": Program(sort_threshold_scores(2), mixtral_shapes(12, 32, 24, 8)),
        "idiom_sort_threshold_softmax_k3": Program(sort_threshold_scores(3, sigmoid=False),
                                                   mixtral_shapes(10, 24, 32, 6)),
        "idiom_switch_mask_times_max": Program(switch_mask_times_max, mixtral_shapes(16, 32, 40, 4)),
        "idiom_gshard_einsum_dispatch_k2": Program(gshard_dispatch_einsums(2), mixtral_shapes(16, 32, 40, 8)),
        "idiom_gshard_scaled_dispatch_near_miss": Program(gshard_dispatch_einsums(2, scaled=True),
                                                          mixtral_shapes(12, 32, 24, 6)),
        "idiom_additive_mask_softmax_k3": Program(additive_mask_softmax(3), mixtral_shapes(12, 32, 24, 8)),
        "idiom_relu_routed_swiglu_shared": Program(routed_other_act_swiglu_shared("relu"),
                                                   [(16, 32), (32, 8), (8, 32, 40), (8, 40, 32), (32, 64), (32, 64),
                                                    (64, 32)]),
        "idiom_geglu_routed_swiglu_shared": Program(routed_other_act_swiglu_shared("geglu"),
                                                    mixtral_shapes(12, 32, 24, 6) + [(32, 48), (32, 48), (48, 32)]),
        "idiom_slot_column_loop_k2": Program(slot_column_loop(2), mixtral_shapes(12, 32, 24, 6)),
        "idiom_expert_cells_k3": Program(expert_cells(3), mixtral_shapes(12, 32, 24, 5)),
        "idiom_expert_cells_where_k2": Program(expert_cells(2, where_chain=True), mixtral_shapes(12, 32, 24, 4)),
        "idiom_expert_cells_where_bf16_k3": Program(expert_cells(3, where_chain=True), mixtral_shapes(10, 24, 32, 6),
                                                    dtype=bf16),
        "idiom_expert_cells_where_skip_near_miss": Program(expert_cells(2, where_chain=True, skip_last=True),
                                                           mixtral_shapes(8, 24, 32, 4)),
        "idiom_stacked_terms_at_set_k2": Program(stacked_terms(2), mixtral_shapes(12, 32, 40, 6)),
        "idiom_stacked_terms_where_k3": Program(stacked_terms(3, gate="where"), mixtral_shapes(10, 24, 32, 8)),
        "idiom_stacked_terms_mean_k2": Program(stacked_terms(2, mean=True), mixtral_shapes(8, 24, 32, 4)),
        "idiom_stacked_terms_bf16_unread": Program(stacked_terms(2, gate="where"), mixtral_shapes(8, 24, 32, 4),
                                                   dtype=bf16),
        "idiom_fori_slots_experts_k3": Program(slot_column_loop(3, fori=True), mixtral_shapes(10, 24, 32, 4)),
        "idiom_slot_column_wrong_expert_near_miss": Program(slot_column_loop(2, wrong_expert=True),
                                                            mixtral_shapes(8, 24, 16, 4)),
        "idiom_scan_over_slots_k2": Program(scan_over_slots(2), mixtral_shapes(8, 32, 24, 6)),
        "idiom_l1_norm_k2": Program(l1_renormalised(2), mixtral_shapes(16, 32, 40, 8)),
        "idiom_abs_sum_sigmoid_k3": Program(l1_renormalised(3, "abs_sigmoid"), mixtral_shapes(12, 24, 32, 6)),
        "idiom_l1_logits_near_miss": Program(l1_renormalised(2, on_logits=True), mixtral_shapes(12, 32, 24, 6)),
        "idiom_relu2_loop_k2": Program(relu2_experts(2), [(16, 32), (32, 8), (8, 32, 40), (8, 40, 32)]),
        "idiom_relu2_vmap_k3": Program(relu2_experts(3, vmapped=True), [(12, 24), (24, 6), (6, 24, 32), (6, 32, 24)]),
        "idiom_widened_router_bias_near_miss": Program(widened_router_bias_near_miss,
                                                       [(8, 32), (32, 4), (4,), (4, 32, 24), (4, 32, 24), (4, 24, 32)],
                                                       dtype=bf16),
    }
