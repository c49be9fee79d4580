"""MoE layers written the ways JAX code writes them, exported to StableHLO text.

Each program is a JAX function with its argument shapes and the form its
text is written in:
  * "text":    jax.jit(f).lower(...).as_text() (pretty form, CPU lowering:
               ragged_dot expands to a masked dense dot_general);
  * "generic": the same module printed in MLIR's generic op form;
  * "export":  jax.export for the given platform (serialisation rewrites
               top_k and ragged_dot into stablehlo.composite ops).

`python -m moe_reference.jax_programs OUT_DIR [names]` writes OUT_DIR/<name>.mlir;
test/Stablehlo/programs holds the committed output, and
test/Stablehlo/jax_match.py runs each program here and in JAX on the same
random inputs.
"""

import os
import re
import sys
import zlib
from dataclasses import dataclass, field

import numpy as np

import jax
import jax.numpy as jnp
from jax import lax

from moe_reference import jax_idioms

jax.config.update("jax_enable_x64", False)

T, H, F, E, K = 16, 32, 48, 8, 2


@dataclass
class Program:
    fn: object
    shapes: list
    form: str = "text"
    platform: str = "cpu"
    dtype: object = jnp.float32
    scales: list = field(default_factory=list)

    def specs(self):
        return [jax.ShapeDtypeStruct(s, self.dtype) for s in self.shapes]

    def inputs(self, seed=0):
        rng = np.random.default_rng(seed)
        scales = self.scales or [0.5] * len(self.shapes)
        return [(rng.standard_normal(s) * sc).astype(self.dtype) for s, sc in zip(self.shapes, scales)]


def swiglu(g, u):
    return jax.nn.silu(g) * u


# --- Mixtral: softmax top-2, dropless sort-by-expert + ragged_dot + unsort --------------

def mixtral_dropless(x, wr, w1, w3, w2):
    probs = jax.nn.softmax(x @ wr, axis=-1)
    vals, idx = lax.top_k(probs, K)
    vals = vals / vals.sum(-1, keepdims=True)
    flat = idx.reshape(-1)
    order = jnp.argsort(flat)
    tok = order // K
    xs = x[tok]
    sizes = jnp.bincount(flat, length=wr.shape[1]).astype(jnp.int32)
    h = swiglu(lax.ragged_dot(xs, w1, sizes), lax.ragged_dot(xs, w3, sizes))
    y = lax.ragged_dot(h, w2, sizes)
    w = vals.reshape(-1)[order]
    return jnp.zeros_like(x).at[tok].add(y * w[:, None])


MIXTRAL_SHAPES = [(T, H), (H, E), (E, H, F), (E, H, F), (E, F, H)]


def dropless_gelu(x, wr, w1, w3, w2):
    """A near miss of the dropless layer: GeGLU (tanh GELU) experts, no renormalisation."""
    probs = jax.nn.softmax(x @ wr, axis=-1)
    vals, idx = lax.top_k(probs, K)
    flat = idx.reshape(-1)
    order = jnp.argsort(flat)
    tok = order // K
    xs = x[tok]
    sizes = jnp.bincount(flat, length=wr.shape[1]).astype(jnp.int32)
    h = jax.nn.gelu(lax.ragged_dot(xs, w1, sizes)) * lax.ragged_dot(xs, w3, sizes)
    y = lax.ragged_dot(h, w2, sizes)
    return jnp.zeros_like(x).at[tok].add(y * vals.reshape(-1)[order][:, None])

# --- GShard / Switch: einsum dispatch with one-hot masks and capacity --------------------


def gshard_masks(gates, k, capacity):
    """MaxText generate_masks: one_hot -> cumsum -> <= capacity -> one_hot(position)."""
    vals, idx = lax.top_k(gates, k)
    experts = gates.shape[-1]
    dispatch = jnp.zeros(gates.shape + (capacity,), gates.dtype)
    combine = jnp.zeros_like(dispatch)
    filled = jnp.zeros((experts,), jnp.int32)
    for slot in range(k):
        onehot = jax.nn.one_hot(idx[:, slot], experts, dtype=jnp.int32)
        position = jnp.cumsum(onehot, axis=0) - 1 + filled[None, :]
        filled = filled + onehot.sum(0)
        keep = (position < capacity) & (onehot > 0)
        pos = jnp.where(keep, position, 0).sum(-1)
        kept = keep.any(-1)
        mask = jax.nn.one_hot(idx[:, slot], experts)[:, :, None] * jax.nn.one_hot(pos, capacity)[:, None, :]
        mask = mask * kept[:, None, None]
        dispatch = dispatch + mask
        combine = combine + mask * vals[:, slot][:, None, None]
    return dispatch, combine


def gshard_capacity(x, wr, wi, wo):
    gates = jax.nn.softmax(x @ wr, axis=-1)
    dispatch, combine = gshard_masks(gates, 2, capacity=3)  # overflows: 32 slots, 24 rows
    xe = jnp.einsum("sm,sec->ecm", x, dispatch)
    h = jax.nn.gelu(jnp.einsum("ecm,emh->ech", xe, wi), approximate=False)
    ye = jnp.einsum("ech,ehm->ecm", h, wo)
    return jnp.einsum("ecm,sec->sm", ye, combine)


def switch_capacity(x, wr, wi, wo):
    gates = jax.nn.softmax(x @ wr, axis=-1)
    dispatch, combine = gshard_masks(gates, 1, capacity=3)
    xe = jnp.einsum("sm,sec->ecm", x, dispatch)
    ye = jnp.einsum("ech,ehm->ecm", jax.nn.relu(jnp.einsum("ecm,emh->ech", xe, wi)), wo)
    return jnp.einsum("ecm,sec->sm", ye, combine)


GSHARD_SHAPES = [(T, H), (H, E), (E, H, F), (E, F, H)]

# --- DeepSeek-V3: sigmoid scores, selection bias, group-limited top-k, shared expert -----

GROUPS, TOPK_GROUPS, DS_K = 4, 2, 3


def deepseek_grouped(x, wr, bias, w1, w3, w2, s1, s3, s2):
    scores = jax.nn.sigmoid(x @ wr)
    biased = scores + bias
    grouped = biased.reshape(x.shape[0], GROUPS, -1)
    group_score = lax.top_k(grouped, 2)[0].sum(-1)
    _, top_groups = lax.top_k(group_score, TOPK_GROUPS)
    group_mask = jax.nn.one_hot(top_groups, GROUPS).sum(1)
    expert_mask = jnp.repeat(group_mask, E // GROUPS, axis=-1)
    _, idx = lax.top_k(jnp.where(expert_mask > 0, biased, -jnp.inf), DS_K)
    weights = jnp.take_along_axis(scores, idx, axis=-1)
    weights = weights / weights.sum(-1, keepdims=True) * 2.5
    gate = (jax.nn.one_hot(idx, E) * weights[..., None]).sum(1)  # dense top-k mask [T, E]
    h = swiglu(jnp.einsum("th,ehf->tef", x, w1), jnp.einsum("th,ehf->tef", x, w3))
    routed = jnp.einsum("tef,efh,te->th", h, w2, gate)
    shared = swiglu(x @ s1, x @ s3) @ s2
    return routed + shared


DEEPSEEK_SHAPES = [(T, H), (H, E), (E,), (E, H, F), (E, H, F), (E, F, H), (H, F), (H, F), (F, H)]

# --- MoE++: FFN experts plus zero, copy and constant experts -----------------------------

N_FFN = 6  # experts 0..5 FFN, 6 zero, 7 copy, 8 constant


def moepp(x, wr, w1, w2, const_v, const_w):
    probs = jax.nn.softmax(x @ wr, axis=-1)
    vals, idx = lax.top_k(probs, K)
    gate = (jax.nn.one_hot(idx, N_FFN + 3) * vals[..., None]).sum(1)
    ffn = jnp.einsum("tef,efh->teh", jax.nn.gelu(jnp.einsum("th,ehf->tef", x, w1), approximate=True), w2)
    mix = jax.nn.softmax(x @ const_w, axis=-1)  # [T, 2]
    constant = mix[:, :1] * x + mix[:, 1:] * const_v
    out = jnp.einsum("teh,te->th", ffn, gate[:, :N_FFN])
    out = out + gate[:, N_FFN + 1:N_FFN + 2] * x  # copy expert; the zero expert adds nothing
    return out + gate[:, N_FFN + 2:] * constant


MOEPP_SHAPES = [(T, H), (H, N_FFN + 3), (N_FFN, H, F), (N_FFN, F, H), (H,), (H, 2)]

# --- A transformer block with an MoE FFN ----------------------------------------------


def transformer_block(x, ln1, wq, wk, wv, wo, ln2, wr, w1, w3, w2):
    def rms(v, g):
        return v * lax.rsqrt(jnp.mean(v * v, axis=-1, keepdims=True) + 1e-6) * g

    h = rms(x, ln1)
    q, k, v = h @ wq, h @ wk, h @ wv
    scores = (q @ k.T) / np.sqrt(H)
    causal = jnp.tril(jnp.ones((T, T), bool))
    attn = jax.nn.softmax(jnp.where(causal, scores, -1e9), axis=-1) @ v
    x = x + attn @ wo
    h = rms(x, ln2)
    return x + mixtral_dropless(h, wr, w1, w3, w2)


TRANSFORMER_SHAPES = [(T, H), (H,), (H, H), (H, H), (H, H), (H, H), (H,)] + MIXTRAL_SHAPES[1:]


def bf16_ffn(x, wr, w1, w3, w2):
    """Top-2 softmax routing over bf16 weights, experts computed densely and masked."""
    probs = jax.nn.softmax((x @ wr).astype(jnp.float32), axis=-1)
    vals, idx = lax.top_k(probs, K)
    gate = (jax.nn.one_hot(idx, E) * vals[..., None]).sum(1).astype(x.dtype)
    h = swiglu(jnp.einsum("th,ehf->tef", x, w1), jnp.einsum("th,ehf->tef", x, w3))
    return jnp.einsum("tef,efh,te->th", h, w2, gate)


def op_coverage(x, y, w):
    """The ops the MoE programs above do not reach, one result each."""
    i = (jnp.abs(x[0, 0]) * 4).astype(jnp.int32)
    return (
        jnp.pad(x, ((1, 2), (0, 3)), constant_values=0.5),
        jnp.flip(x, axis=1),
        lax.dynamic_slice(x, (i, i + 30), (3, 4)),  # the second start is clamped
        lax.dynamic_update_slice(x, y[:2, :3], (i, 1)),
        jnp.clip(x, -0.3, 0.4),
        jnp.remainder(x, 0.3) + jnp.sign(x) + jnp.power(jnp.abs(x), 1.5) + jnp.arctan2(x, y),
        jnp.argmax(x, axis=-1).astype(jnp.int32),
        jnp.cumsum(x, axis=1),
        jnp.round(x * 3) + jnp.floor(x) + jnp.ceil(y),
        jnp.tanh(x) * jax.nn.sigmoid(y) + jnp.log1p(jnp.abs(x)) + jnp.expm1(y * 0.1) + lax.rsqrt(jnp.abs(y) + 1),
        jnp.isfinite(x / jnp.where(jnp.abs(y) > 0.2, y, 0.0)).astype(jnp.int32),  # moe-run has no i1 results
        jnp.einsum("tb,hb->th", x, w, precision=lax.Precision.HIGHEST),
    )


def control_and_bits(x, y):
    """lax.cond / lax.switch (stablehlo.case), jax.checkpoint
    (optimization_barrier), approx_max_k / approx_min_k (ApproxTopK custom
    calls), erf_inv, integer shifts, popcount and leading zeros."""
    i = (x * 1000).astype(jnp.int32)
    s = (jnp.abs(y) * 12).astype(jnp.int32)  # some shifts reach 32 and beyond
    branch = (jnp.abs(x[0, 0]) * 3).astype(jnp.int32)
    mv, mi = lax.approx_max_k(x, 3)
    nv, ni = lax.approx_min_k(y, 2)
    remat = jax.checkpoint(lambda a: jnp.tanh(a @ a.T) @ a)
    return (
        lax.cond(x.sum() > 0, lambda a: a * 2.0, lambda a: a - 1.0, x),
        lax.switch(branch, [lambda a: a + 1.0, lambda a: a * a, lambda a: -a], y),
        jax.grad(lambda a: remat(a).sum())(x * 0.1),
        mv, mi.astype(jnp.int32), nv, ni.astype(jnp.int32),
        lax.erf_inv(jnp.tanh(x) * 0.999),
        i << s, i >> s, lax.population_count(i), lax.clz(i),
    )


def sort_special_values(x):
    """Float sorts as JAX writes them: the comparator maps -0.0 to 0.0 and NaN
    to one NaN with constants and selects, then compares in TOTALORDER. Each
    row holds NaN, -0.0, 0.0, -inf and ties; NaN sorts last."""
    col = lax.broadcasted_iota(jnp.int32, x.shape, 1)
    specials = jnp.select([col == 0, col == 1, col == 2, col == 3, col >= 24],
                          [jnp.nan, -0.0, 0.0, -jnp.inf, jnp.round(x)], x)
    return (
        jnp.argsort(specials, axis=-1).astype(jnp.int32),
        jnp.nan_to_num(jnp.sort(specials, axis=-1), nan=99.0, neginf=-99.0),
        jnp.argsort(-x, axis=0).astype(jnp.int32),  # descending, along the other dimension
    )


def square_rmsnorm_zloss(x, ln, wr, w1, w3, w2):
    """RMSNorm and the router z-loss written with lax.square (chlo.square in
    the export), around the Mixtral layer."""
    h = x * lax.rsqrt(jnp.mean(lax.square(x), axis=-1, keepdims=True) + 1e-6) * ln
    z_loss = jnp.mean(lax.square(jax.nn.logsumexp(h @ wr, axis=-1)))
    return x + mixtral_dropless(h, wr, w1, w3, w2), z_loss


def dense_mixture(x, wr, w1, w3, w2):
    """Softmax top-2, renormalised, every expert computed and masked by the gate (f32)."""
    vals, idx = lax.top_k(jax.nn.softmax(x @ wr, axis=-1), K)
    vals = vals / vals.sum(-1, keepdims=True)
    gate = (jax.nn.one_hot(idx, E) * vals[..., None]).sum(1)
    h = swiglu(jnp.einsum("th,ehf->tef", x, w1), jnp.einsum("th,ehf->tef", x, w3))
    return jnp.einsum("tef,efh->th", h * gate[:, :, None], w2)


# --- a stack of layers as one jax.lax.scan (Flax nn.scan, MaxText scan_layers) ---

LAYERS = 3


def scanned_layers(x, wr, w1, w3, w2):
    """LAYERS Mixtral layers with residual adds, scanned over stacked
    weights: one stablehlo.while whose body is the layer."""
    def layer(h, w):
        return h + mixtral_dropless(h, *w), None
    return lax.scan(layer, x, (wr, w1, w3, w2))[0]


SCAN_SHAPES = [(T, H), (LAYERS, H, E), (LAYERS, E, H, F), (LAYERS, E, H, F), (LAYERS, E, F, H)]
SCAN_SCALES = [0.5, 0.5, 0.2, 0.2, 0.2]

PROGRAMS = {
    "mixtral_dropless": Program(mixtral_dropless, MIXTRAL_SHAPES),
    "mixtral_dropless_export_cuda": Program(mixtral_dropless, MIXTRAL_SHAPES, form="export", platform="cuda"),
    "mixtral_dropless_export_cpu": Program(mixtral_dropless, MIXTRAL_SHAPES, form="export"),
    "dropless_gelu_near_miss": Program(dropless_gelu, MIXTRAL_SHAPES),
    "gshard_capacity": Program(gshard_capacity, GSHARD_SHAPES),
    "switch_capacity_generic": Program(switch_capacity, GSHARD_SHAPES, form="generic"),
    "deepseek_grouped": Program(deepseek_grouped, DEEPSEEK_SHAPES,
                                scales=[0.5, 0.5, 0.1] + [0.5] * 6),
    "moepp": Program(moepp, MOEPP_SHAPES),
    "transformer_block": Program(transformer_block, TRANSFORMER_SHAPES),
    "dense_mixture": Program(dense_mixture, MIXTRAL_SHAPES),
    "bf16_ffn": Program(bf16_ffn, MIXTRAL_SHAPES, dtype=jnp.bfloat16),
    "op_coverage": Program(op_coverage, [(T, H), (T, H), (H, H)]),
    "sort_special_values": Program(sort_special_values, [(T, H)]),
    "control_and_bits": Program(control_and_bits, [(T, H), (T, H)]),
    "square_rmsnorm_zloss": Program(square_rmsnorm_zloss, [(T, H), (H,)] + MIXTRAL_SHAPES[1:]),
    "scanned_layers": Program(scanned_layers, SCAN_SHAPES, scales=SCAN_SCALES),
    "scanned_layers_export": Program(scanned_layers, SCAN_SHAPES, form="export", scales=SCAN_SCALES),
}
PROGRAMS.update(jax_idioms.programs(Program))


def without_locations(text):
    """`text` without its source locations: jax.export prints them, and they
    name files on the machine that generated the program."""
    kept = [line for line in text.splitlines() if not re.match(r"#loc\d*\s*=", line)]
    text, out, at = "\n".join(kept) + "\n", [], 0
    for m in re.finditer(r"\s*\bloc\(", text):
        if m.start() < at:
            continue
        depth, end = 1, m.end()
        while depth:  # to the parenthesis that closes loc(
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        out.append(text[at:m.start()])
        at = end
    return "".join(out) + text[at:]


def stablehlo_text(program):
    specs = program.specs()
    if program.form == "export":
        exported = jax.export.export(jax.jit(program.fn), platforms=[program.platform])(*specs)
        return without_locations(exported.mlir_module())
    lowered = jax.jit(program.fn).lower(*specs)
    if program.form == "generic":
        return lowered.compiler_ir("stablehlo").operation.get_asm(print_generic_op_form=True)
    return lowered.as_text()


def reference(name, inputs):
    """JAX's outputs (a list of numpy arrays) on `inputs`."""
    out = jax.jit(PROGRAMS[name].fn)(*inputs)
    outs = out if isinstance(out, (tuple, list)) else [out]
    return [np.asarray(o) for o in outs]


def save_npy(path, array):
    """np.save, with bf16 written as its raw 2-byte payload (numpy has no
    bf16: moe-run reads such files by the program's argument type)."""
    np.save(path, array.view(np.uint16) if array.dtype.name == "bfloat16" else array)


def saved_case(name, out_dir):
    """Program `name`'s stable random inputs written to out_dir as
    <name>.arg<i>.npy: returns (moe-run --input flags, inputs, JAX's outputs)."""
    inputs = PROGRAMS[name].inputs(seed=zlib.crc32(name.encode()) % 1000)
    args = []
    for i, x in enumerate(inputs):
        npy = os.path.join(out_dir, f"{name}.arg{i}.npy")
        save_npy(npy, x)
        args += ["--input", npy]
    return args, inputs, reference(name, inputs)


def main(argv):
    out_dir = argv[1]
    names = argv[2:] or list(PROGRAMS)
    os.makedirs(out_dir, exist_ok=True)
    for name in names:
        with open(os.path.join(out_dir, name + ".mlir"), "w") as f:
            f.write(f"// Generated by python/moe_reference/jax_programs.py ({name}, JAX {jax.__version__}).\n")
            f.write(stablehlo_text(PROGRAMS[name]))


if __name__ == "__main__":
    main(sys.argv)
