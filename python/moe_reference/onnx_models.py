"""ONNX test models, built with the `onnx` package (PyPI) and random weights.

`build(name, out_dir)` writes `<name>.onnx` (and external data where the
model asks for it) and returns the model's input arrays, seeded, so a test
can run the same inputs through onnxruntime and through our compiled code.

Models:
- ORT `com.microsoft.QMoE` nodes: 8- and 4-bit weights, per-row and
  blockwise scales (QMOE_CASES);
- ORT `com.microsoft.MoE` nodes: every activation_type (relu, gelu, silu,
  identity, swiglu with swiglu_fusion 1 = interleaved and 2 = concatenated),
  k = 1/2/4, normalize_routing_weights 0/1, f32 and f16, 2-D and 3-D input,
  router logits from a MatMul in the graph or given as an input;
- a transformer-style graph around MoE FFNs (MatMul, Gemm, Add, Mul, Div,
  Sqrt, ReduceMean, Softmax, Reshape, Transpose, Cast, Constant);
- one model with its weights in an external data file.
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
IR_VERSION = 10
DTYPES = {"f32": (np.float32, TensorProto.FLOAT), "f16": (np.float16, TensorProto.FLOAT16)}


def _rng(name):
    return np.random.default_rng(sum(map(ord, name)))


def _init(name, array):
    return numpy_helper.from_array(array, name)


def moe_node(inputs, output, **attrs):
    return helper.make_node("MoE", inputs, [output], domain="com.microsoft", **attrs)


def moe_model(name, tokens=6, hidden=16, ffn=8, experts=4, k=2, activation="relu", normalize=0,
              fusion=None, dtype="f32", rank3=False, router_in_graph=True, bias=False, swiglu=None,
              sparse_mixer=False, fc3=False):
    """One MoE node; `router_in_graph` computes the logits with a MatMul;
    `swiglu` holds activation_alpha / activation_beta / swiglu_limit;
    `sparse_mixer` sets use_sparse_mixer and gives logits whose runners-up
    are within SparseMixer's 2% of the top one for every other token (so
    its masks keep some and drop others); `fc3` (with silu) writes the gate
    rows as fc1 and the up rows as fc3, as ORT's Mixtral tooling does."""
    np_type, onnx_type = DTYPES[dtype]
    rng = _rng(name)
    gated = activation == "swiglu"
    up_rows = 2 * ffn if gated else ffn
    fc1 = (rng.standard_normal((experts, up_rows, hidden)) / np.sqrt(hidden)).astype(np_type)
    fc2 = (rng.standard_normal((experts, hidden, ffn)) / np.sqrt(ffn)).astype(np_type)
    x_shape = [2, tokens // 2, hidden] if rank3 else [tokens, hidden]
    x = rng.standard_normal(x_shape).astype(np_type)
    x_dims = ["batch", "seq", hidden] if rank3 else ["tokens", hidden]
    inits = [_init("fc1", fc1), _init("fc2", fc2)]
    nodes = []
    graph_inputs = [helper.make_tensor_value_info("x", onnx_type, x_dims)]
    feeds = {"x": x}
    if router_in_graph:
        wr = (rng.standard_normal((hidden, experts))).astype(np_type)
        inits.append(_init("router", wr))
        if rank3:  # ORT wants router_probs as [tokens, experts]
            inits.append(_init("logits_shape", np.array([-1, experts], np.int64)))
            nodes.append(helper.make_node("MatMul", ["x", "router"], ["logits3"], name="router"))
            nodes.append(helper.make_node("Reshape", ["logits3", "logits_shape"], ["logits"]))
        else:
            nodes.append(helper.make_node("MatMul", ["x", "router"], ["logits"], name="router"))
    else:
        logits_shape = x_shape[:-1] + [experts]
        graph_inputs.append(helper.make_tensor_value_info("logits", onnx_type, x_dims[:-1] + [experts]))
        feeds["logits"] = rng.standard_normal(logits_shape).astype(np_type)
        if sparse_mixer:
            near = feeds["logits"].reshape(-1, experts)
            for t in range(0, len(near), 2):
                order = np.argsort(-near[t])
                near[t, order[1]] = near[t, order[0]] * (1 - 0.01 * np.sign(near[t, order[0]]))
                # Every other such token: the third within 1% of the second too.
                third = near[t, order[1]] * (1 - 0.01 * np.sign(near[t, order[1]]))
                near[t, order[2]] = third if t % 4 == 0 else near[t, order[0]] - 0.5
    attrs = dict(k=k, activation_type=activation, normalize_routing_weights=normalize, **(swiglu or {}))
    if sparse_mixer:
        attrs["use_sparse_mixer"] = 1
    if fusion is not None:
        attrs["swiglu_fusion"] = fusion
    fc1_bias = fc2_bias = ""
    if bias:
        inits.append(_init("fc1_bias", (0.5 * rng.standard_normal((experts, up_rows))).astype(np_type)))
        inits.append(_init("fc2_bias", (0.5 * rng.standard_normal((experts, hidden))).astype(np_type)))
        fc1_bias, fc2_bias = "fc1_bias", "fc2_bias"
    moe_inputs = ["x", "logits", "fc1", fc1_bias, "fc2", fc2_bias]
    if fc3:
        up = rng.standard_normal((experts, ffn, hidden)) / np.sqrt(hidden)
        inits.append(_init("fc3", up.astype(np_type)))
        moe_inputs.append("fc3")
    nodes.append(moe_node(moe_inputs, "y", name="moe", **attrs))
    graph = helper.make_graph(nodes, name, graph_inputs,
                              [helper.make_tensor_value_info("y", onnx_type, x_dims)], inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    return model, feeds


def pack_last(values, bits):
    """`bits`-bit values packed along the last dimension, low bits first
    (the last byte zero-padded)."""
    pack = 8 // bits
    packed = np.zeros(values.shape[:-1] + (-(-values.shape[-1] // pack),), np.uint8)
    for i in range(pack):
        part = values[..., i::pack].astype(np.uint8)
        packed[..., :part.shape[-1]] |= (part << (bits * i)).astype(np.uint8)
    return packed


def moe_numpy(model, feeds):
    """The output of `model`'s com.microsoft.MoE node in float64 with numpy,
    for attributes ORT's CPU kernel does not run (swiglu_limit_after_
    activation needs CUDA there): softmax top-k routing, fc1 [E, U, H]
    (SwiGLU rows interleaved for swiglu_fusion 1), biases, fc2 [E, H, F]."""
    from onnx import numpy_helper
    raw = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    inits = {name: a.astype(np.float64) for name, a in raw.items()}
    node = next(n for n in model.graph.node if n.op_type in ("MoE", "QMoE"))
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "QMoE":
        return moe_numpy(_dequantized_qmoe(model, node, attrs, raw), feeds)
    if attrs.get("activation_type", b"relu") != b"swiglu":
        raise NotImplementedError("moe_numpy covers SwiGLU experts only")
    x = feeds["x"].astype(np.float64).reshape(-1, inits["fc2"].shape[1])
    logits = x @ inits["router"] if "router" in inits else feeds["logits"].astype(np.float64).reshape(len(x), -1)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    k, alpha, beta = attrs["k"], attrs.get("activation_alpha", 1.0), attrs.get("activation_beta", 0.0)
    routes = [sparse_mixer_top2(row) if attrs.get("use_sparse_mixer", 0) else None for row in logits]
    limit = attrs.get("swiglu_limit", np.inf)
    after = attrs.get("swiglu_limit_after_activation", 0)
    fc1, fc2 = inits[node.input[2]], inits[node.input[4]]
    b1 = inits.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    b2 = inits.get(node.input[5]) if len(node.input) > 5 and node.input[5] else None
    y = np.zeros_like(x)
    for t in range(len(x)):
        experts = np.argsort(-p[t], kind="stable")[:k]
        w = p[t, experts] / (p[t, experts].sum() if attrs.get("normalize_routing_weights", 0) else 1.0)
        if routes[t] is not None:
            experts, w = routes[t]
        for e, wt in zip(experts, w):
            h = fc1[e] @ x[t] + (b1[e] if b1 is not None else 0)
            gate, up = (h[0::2], h[1::2]) if attrs.get("swiglu_fusion", 0) == 1 else np.split(h, 2)
            if not after:
                gate = np.minimum(gate, limit)
            act = gate / (1 + np.exp(-alpha * gate))
            if after:
                act = np.minimum(act, limit)
            a = act * (np.clip(up, -limit, limit) + beta)
            y[t] += wt * (fc2[e] @ a + (b2[e] if b2 is not None else 0))
    return y.reshape(feeds["x"].shape).astype(feeds["x"].dtype)


def unpack_last(packed, bits, count):
    """The first `count` `bits`-bit values along the last dimension of
    `packed` (low bits first), as int64."""
    pack = 8 // bits
    values = np.stack([(packed.astype(np.int64) >> (bits * j)) & ((1 << bits) - 1) for j in range(pack)], -1)
    return values.reshape(packed.shape[:-1] + (-1,))[..., :count]


def _dequantized_qmoe(model, node, attrs, raw):
    """The QMoE node's model as the equivalent float MoE node (float64
    weights (q - zp) * scale, per-weight widths, row or block scales)."""
    inputs = list(node.input) + [""] * (15 - len(node.input))
    bits = attrs.get("expert_weight_bits", 4)
    block = attrs.get("block_size", 0)

    def weights(w, scales, zero_points, fc):
        width = attrs.get(f"fc{fc}_expert_weight_bits", bits)
        packed, scale = raw[w], raw[scales].astype(np.float64)
        q = unpack_last(packed, width, packed.shape[-1] * (8 // width))
        blocks = scale.shape[-1] if scale.ndim == 3 else 1
        zp = (unpack_last(raw[zero_points], width, scale.shape[-1] if scale.ndim == 3 else scale.shape[1])
              if zero_points else np.full(scale.shape, 1 << (width - 1)))
        per = q.shape[-1] // blocks
        scale, zp = scale.reshape(q.shape[0], q.shape[1], -1), zp.reshape(q.shape[0], q.shape[1], -1)
        return (q - np.repeat(zp, per, -1)) * np.repeat(scale, per, -1)

    fc1 = weights(inputs[2], inputs[3], inputs[11], 1)
    fc2 = weights(inputs[5], inputs[6], inputs[12], 2)
    assert block == 0 or fc1.shape[-1] % block == 0
    float_inits = [numpy_helper.from_array(fc1, "deq_fc1"), numpy_helper.from_array(fc2, "deq_fc2")]
    float_inputs = [inputs[0], inputs[1], "deq_fc1", inputs[4], "deq_fc2", inputs[7]]
    kept = {k: v for k, v in attrs.items() if k in ("k", "activation_type", "normalize_routing_weights",
                                                    "swiglu_fusion", "activation_alpha", "activation_beta",
                                                    "swiglu_limit", "use_sparse_mixer")}
    moe = helper.make_node("MoE", float_inputs, list(node.output), domain="com.microsoft", **kept)
    nodes = [moe if n is node else n for n in model.graph.node]
    inits = [i for i in model.graph.initializer] + float_inits
    graph = helper.make_graph(nodes, model.graph.name, model.graph.input, model.graph.output, inits)
    return helper.make_model(graph, opset_imports=model.opset_import)


def sparse_mixer_top2(s, jitter_eps=0.01):
    """Phi-3.5-MoE's sparsemixer (inference) on one token's logits: twice,
    pick the largest remaining logit m, mask logits with (m - s) /
    max(|s|, m) > 2 eps (and the earlier pick), and weigh the pick by its
    softmax over what is left. Returns (experts, weights)."""
    experts, weights, left = [], [], s.astype(np.float64).copy()
    for _ in range(2):
        e = int(np.argmax(left))
        m = left[e]
        masked = np.where((m - s) / np.maximum(np.abs(s), m) > 2 * jitter_eps, -np.inf, left)
        probs = np.exp(masked - masked.max())
        weights.append(probs[e] / probs.sum())
        experts.append(e)
        left[e] = -np.inf
    return np.array(experts), np.array(weights)


# Models ORT's CPU kernel computes otherwise (it ignores use_sparse_mixer)
# or refuses: the tests compare them with moe_numpy.
NUMPY_REFERENCE = {"moe_swiglu_limit_after", "moe_sparse_mixer", "qmoe_mixed_bits_swiglu"}


def quantize_rows(w, bits, block=None, zero_points=False):
    """`bits`-bit quantisation of [E, out, in] weights as ORT's QMoE stores
    it, scales per output row (or per `block` inputs), values packed low
    bits first. Symmetric: q = round(w / scale) + 2^(bits-1); with
    `zero_points`, asymmetric over each row's (block's) range, q =
    round(w / scale) + zp, and the zero points are returned packed too."""
    half = 2 ** (bits - 1)
    groups = w.reshape(w.shape[0], w.shape[1], -1, block) if block else w[..., None, :]
    if zero_points:
        lo, hi = np.minimum(groups.min(-1), 0), np.maximum(groups.max(-1), 0)
        scale = (hi - lo) / (2 ** bits - 1) + 1e-8
        zp = np.clip(np.round(-lo / scale), 0, 2 ** bits - 1)
    else:
        scale = np.abs(groups).max(-1) / (half - 1) + 1e-8
        zp = np.full(scale.shape, half)
    q = np.clip(np.round(groups / scale[..., None]) + zp[..., None], 0, 2 ** bits - 1).astype(np.uint8)
    packed = pack_last(q.reshape(w.shape), bits)
    scales = (scale if block else scale[..., 0]).astype(np.float32)
    if not zero_points:
        return packed, scales
    return packed, scales, pack_last(zp if block else zp[..., 0], bits)


def qmoe_model(name, tokens=6, hidden=32, ffn=16, experts=4, k=2, activation="relu", bits=8, block=None,
               fusion=None, zero_points=False, router_weights=False, fc2_bits=None):
    """One QMoE node (routing renormalised: ORT's CPU QMoE always does);
    `zero_points` quantises asymmetrically with explicit zero points;
    `router_weights` mixes with Sigmoid(logits) (input 14) while the
    softmax of the logits only chooses the experts."""
    rng = _rng(name)
    gated = activation == "swiglu"
    up_rows = 2 * ffn if gated else ffn
    q1 = quantize_rows(rng.standard_normal((experts, up_rows, hidden)) / np.sqrt(hidden), bits, block, zero_points)
    q2 = quantize_rows(rng.standard_normal((experts, hidden, ffn)) / np.sqrt(ffn), fc2_bits or bits, block,
                       zero_points)
    fc1, s1, fc2, s2 = q1[0], q1[1], q2[0], q2[1]
    wr = rng.standard_normal((hidden, experts)).astype(np.float32)
    x = rng.standard_normal((tokens, hidden)).astype(np.float32)
    attrs = dict(k=k, activation_type=activation, normalize_routing_weights=1, expert_weight_bits=bits)
    if block:
        attrs["block_size"] = block
    if fc2_bits:
        attrs["fc2_expert_weight_bits"] = fc2_bits
    if fusion is not None:
        attrs["swiglu_fusion"] = fusion
    inputs = ["x", "logits", "fc1", "fc1_scales", "", "fc2", "fc2_scales", "", "", "", "",
              "fc1_zero_points" if zero_points else "", "fc2_zero_points" if zero_points else "", "",
              "mixing" if router_weights else ""]
    while inputs[-1] == "":
        inputs.pop()
    nodes = [helper.make_node("MatMul", ["x", "router"], ["logits"], name="router")]
    if router_weights:
        nodes.append(helper.make_node("Sigmoid", ["logits"], ["mixing"]))
    nodes.append(helper.make_node("QMoE", inputs, ["y"], domain="com.microsoft", name="qmoe", **attrs))
    inits = [_init("router", wr), _init("fc1", fc1), _init("fc1_scales", s1), _init("fc2", fc2),
             _init("fc2_scales", s2)]
    if zero_points:
        inits += [_init("fc1_zero_points", q1[2]), _init("fc2_zero_points", q2[2])]
    f = TensorProto.FLOAT
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", f, ["tokens", hidden])],
                              [helper.make_tensor_value_info("y", f, ["tokens", hidden])], inits)
    return helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION), {"x": x}


def transformer_model(name, tokens=8, hidden=32, ffn=16, experts=4, layers=2):
    """`layers` blocks of: RMS-norm (ReduceMean/Sqrt/Div), attention-free
    token mixing (Gemm), a residual, then an MoE FFN (softmax top-2, SwiGLU
    interleaved) behind a router MatMul; Reshape/Transpose around a
    per-head Softmax exercise the shape ops."""
    rng = _rng(name)
    f = np.float32
    inits, nodes = [], []
    cur = "x"
    inits.append(_init("eps", np.array([1e-6], f)))
    inits.append(_init("last_axis", np.array([-1], np.int64)))
    inits.append(_init("heads_shape", np.array([tokens, 4, hidden // 4], np.int64)))
    inits.append(_init("flat_shape", np.array([tokens, hidden], np.int64)))
    for layer in range(layers):
        p = f"l{layer}_"
        inits += [
            _init(p + "norm_w", (1 + 0.1 * rng.standard_normal(hidden)).astype(f)),
            _init(p + "mix_w", (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(f)),
            _init(p + "mix_b", (0.1 * rng.standard_normal(hidden)).astype(f)),
            _init(p + "router", rng.standard_normal((hidden, experts)).astype(f)),
            _init(p + "fc1", (rng.standard_normal((experts, 2 * ffn, hidden)) / np.sqrt(hidden)).astype(f)),
            _init(p + "fc2", (rng.standard_normal((experts, hidden, ffn)) / np.sqrt(ffn)).astype(f)),
        ]
        nodes += [
            helper.make_node("Mul", [cur, cur], [p + "sq"]),
            helper.make_node("ReduceMean", [p + "sq", "last_axis"], [p + "ms"], keepdims=1),
            helper.make_node("Add", [p + "ms", "eps"], [p + "mse"]),
            helper.make_node("Sqrt", [p + "mse"], [p + "rms"]),
            helper.make_node("Div", [cur, p + "rms"], [p + "normed"]),
            helper.make_node("Mul", [p + "normed", p + "norm_w"], [p + "h"]),
            helper.make_node("Gemm", [p + "h", p + "mix_w", p + "mix_b"], [p + "mixed"], transB=1, alpha=0.5),
            # Per-head softmax gating of the mixed features: [T, 4, D/4].
            helper.make_node("Reshape", [p + "mixed", "heads_shape"], [p + "heads"]),
            helper.make_node("Transpose", [p + "heads"], [p + "heads_t"], perm=[1, 0, 2]),
            helper.make_node("Softmax", [p + "heads_t"], [p + "gates_t"], axis=-1),
            helper.make_node("Transpose", [p + "gates_t"], [p + "gates"], perm=[1, 0, 2]),
            helper.make_node("Reshape", [p + "gates", "flat_shape"], [p + "gate_flat"]),
            helper.make_node("Mul", [p + "mixed", p + "gate_flat"], [p + "gated"]),
            helper.make_node("Add", [cur, p + "gated"], [p + "res1"]),
            helper.make_node("MatMul", [p + "res1", p + "router"], [p + "logits"]),
            moe_node([p + "res1", p + "logits", p + "fc1", "", p + "fc2"], p + "moe", k=2,
                     activation_type="swiglu", swiglu_fusion=1, normalize_routing_weights=1, name=p + "moe"),
            helper.make_node("Add", [p + "res1", p + "moe"], [p + "out"]),
        ]
        cur = p + "out"
    nodes.append(helper.make_node("Cast", [cur], ["y"], to=TensorProto.FLOAT))
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [tokens, hidden])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [tokens, hidden])], inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    return model, {"x": rng.standard_normal((tokens, hidden)).astype(f)}


def ops_model(name, tokens=6, hidden=16):
    """The rest of a transformer's vocabulary in one graph: LayerNorm,
    Gather (embedding lookup), Slice (also with negative steps), Concat, Split, Expand, Shape ->
    Reshape, Range, comparisons and Where, Pow, Max/Min, TopK (values and
    indices), Unsqueeze/Squeeze, ReduceSum/ReduceMax."""
    rng = _rng(name)
    f = np.float32
    i64 = np.int64
    vocab = 10
    inits = [
        _init("ln_scale", (1 + 0.1 * rng.standard_normal(hidden)).astype(f)),
        _init("ln_bias", (0.1 * rng.standard_normal(hidden)).astype(f)),
        _init("embed", rng.standard_normal((vocab, hidden)).astype(f)),
        _init("ids", np.array([3, 0, 9, 3, 5, 1], i64)[:tokens]),
        _init("starts", np.array([0, 2], i64)), _init("ends", np.array([tokens, hidden], i64)),
        _init("axes01", np.array([0, 1], i64)),
        _init("split_sizes", np.array([6, 8], i64)),
        _init("expand_shape", np.array([2, tokens, hidden], i64)),
        _init("zero", np.array(0, i64)), _init("limit", np.array(hidden, i64)), _init("one", np.array(1, i64)),
        _init("half", np.array([0.5], f)), _init("two", np.array([2.0], f)),
        _init("k3", np.array([3], i64)), _init("axis0", np.array([0], i64)), _init("axis_last", np.array([-1], i64)),
        _init("past_end", np.array([tokens], i64)), _init("past_end3", np.array([tokens + 3], i64)),
        # Negative steps (torch.flip, x[::-3]): rows reversed, columns 12, 9, 6, 3.
        _init("rev_starts", np.array([-1, 12], i64)),
        _init("rev_ends", np.array([np.iinfo(np.int64).min, 0], i64)),
        _init("rev_steps", np.array([-1, -3], i64)),
    ]
    n = helper.make_node
    nodes = [
        n("LayerNormalization", ["x", "ln_scale", "ln_bias"], ["ln"], axis=-1, epsilon=1e-5),
        n("Gather", ["embed", "ids"], ["emb"], axis=0),
        n("Add", ["ln", "emb"], ["h"]),
        n("Slice", ["h", "starts", "ends", "axes01"], ["sl"]),                 # [T, 14]
        n("Split", ["sl", "split_sizes"], ["s0", "s1"], axis=1),               # [T, 6], [T, 8]
        n("Concat", ["s1", "s0"], ["cat"], axis=1),                            # [T, 14]
        # Rows T..T+3 of T: empty, starting at the end (x[T:]).
        n("Slice", ["cat", "past_end", "past_end3", "axis0"], ["no_rows"]),    # [0, 14]
        n("Concat", ["cat", "no_rows"], ["cat_all"], axis=0),                  # [T, 14]
        n("Pow", ["cat_all", "two"], ["sq"]),
        n("Greater", ["cat", "half"], ["big"]),
        n("Where", ["big", "sq", "cat"], ["w"]),
        n("Max", ["w", "half"], ["mx"]),
        n("Min", ["mx", "two"], ["mn"]),
        n("TopK", ["mn", "k3"], ["topv", "topi"], axis=-1),
        n("Cast", ["topi"], ["topf"], to=TensorProto.FLOAT),
        n("Add", ["topv", "topf"], ["top"]),                                   # [T, 3]
        n("ReduceSum", ["top", "axis_last"], ["rs"], keepdims=1),             # [T, 1]
        n("ReduceMax", ["h", "axis_last"], ["rm"], keepdims=0),               # [T]
        n("Unsqueeze", ["rm", "axis_last"], ["rmu"]),                          # [T, 1]
        n("Add", ["rs", "rmu"], ["col0"]),                                     # [T, 1]
        n("Slice", ["cat", "rev_starts", "rev_ends", "axes01", "rev_steps"], ["rev"]),  # [T, 4]
        n("ReduceSum", ["rev", "axis_last"], ["revs"], keepdims=1),           # [T, 1]
        n("Add", ["col0", "revs"], ["col"]),                                   # [T, 1]
        n("Range", ["zero", "limit", "one"], ["rng"]),                         # [H] i64
        n("Cast", ["rng"], ["rngf"], to=TensorProto.FLOAT),
        n("Mul", ["col", "rngf"], ["grid"]),                                   # [T, H]
        n("Expand", ["grid", "expand_shape"], ["ex"]),                         # [2, T, H]
        n("ReduceSum", ["ex", "axis0"], ["exs"], keepdims=1),                  # [1, T, H]
        n("Squeeze", ["exs", "axis0"], ["sqz"]),                               # [T, H]
        n("Shape", ["sqz"], ["shp"]),
        n("Reshape", ["h", "shp"], ["hr"]),
        n("Add", ["sqz", "hr"], ["y"]),
    ]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [tokens, hidden])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [tokens, hidden])], inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    return model, {"x": rng.standard_normal((tokens, hidden)).astype(f)}


def dynamic_shapes_model(name, hidden=16, ffn=8, experts=4):
    """An MoE layer on [batch, seq, hidden] with the reshapes computed from
    the input's sizes, as exporters and onnxruntime-genai's builder write
    them: Shape -> Gather -> Mul/Unsqueeze -> Concat -> Reshape to
    [batch * seq, hidden] and back; an Expand to a computed shape; slices
    of the dynamic seq axis with constant bounds (a head, a tail from a
    negative start, every other row) and unit dimensions added and removed
    (Unsqueeze, Squeeze, ReduceSum without keepdims) concatenated to the
    result."""
    rng = _rng(name)
    f = np.float32
    i64 = np.int64
    inits = [
        _init("router", rng.standard_normal((hidden, experts)).astype(f)),
        _init("fc1", (rng.standard_normal((experts, 2 * ffn, hidden)) / np.sqrt(hidden)).astype(f)),
        _init("fc2", (rng.standard_normal((experts, hidden, ffn)) / np.sqrt(ffn)).astype(f)),
        _init("i0", np.array(0, i64)), _init("i1", np.array(1, i64)), _init("ax0", np.array([0], i64)),
        _init("hidden", np.array([hidden], i64)), _init("experts", np.array([experts], i64)),
        _init("bias", (0.1 * rng.standard_normal(hidden)).astype(f)),
        _init("s0", np.array([0], i64)), _init("one1", np.array([1], i64)), _init("s_2", np.array([-2], i64)),
        _init("s_max", np.array([2**63 - 1], i64)), _init("s100", np.array([100], i64)),
        _init("s2", np.array([2], i64)), _init("axes03", np.array([0, 3], i64)), _init("axes2", np.array([2], i64)),
    ]
    n = helper.make_node
    nodes = [
        n("Shape", ["x"], ["shp"]),
        n("Gather", ["shp", "i0"], ["b"], axis=0),
        n("Gather", ["shp", "i1"], ["s"], axis=0),
        n("Mul", ["b", "s"], ["bs"]),
        n("Unsqueeze", ["bs", "ax0"], ["bs1"]),
        n("Concat", ["bs1", "hidden"], ["rows_shape"], axis=0),
        n("Reshape", ["x", "rows_shape"], ["rows"]),
        n("MatMul", ["rows", "router"], ["logits0"]),
        n("Concat", ["bs1", "experts"], ["logits_shape"], axis=0),
        n("Reshape", ["logits0", "logits_shape"], ["logits"]),
        moe_node(["rows", "logits", "fc1", "", "fc2"], "moe_rows", k=2, activation_type="swiglu",
                 swiglu_fusion=1, normalize_routing_weights=1, name="moe"),
        n("Unsqueeze", ["b", "ax0"], ["b1"]),
        n("Unsqueeze", ["s", "ax0"], ["s1"]),
        n("Concat", ["b1", "s1", "hidden"], ["out_shape"], axis=0),
        n("Reshape", ["moe_rows", "out_shape"], ["moe_out"]),
        n("Expand", ["bias", "out_shape"], ["bias_full"]),
        n("Add", ["moe_out", "bias_full"], ["biased"]),
        n("Slice", ["biased", "s0", "one1", "one1"], ["head"]),
        n("Slice", ["biased", "s_2", "s_max", "one1"], ["tail"]),
        n("Slice", ["biased", "one1", "s100", "one1", "s2"], ["odd"]),
        # Unit dimensions added and removed around two dynamic ones.
        n("Unsqueeze", ["biased", "axes03"], ["unit"]),                       # [1, b, s, 1, h]
        n("Squeeze", ["unit", "axes03"], ["squeezed"]),
        n("Unsqueeze", ["squeezed", "axes2"], ["unit2"]),                     # [b, s, 1, h]
        n("ReduceSum", ["unit2", "axes2"], ["summed"], keepdims=0),
        n("Concat", ["biased", "head", "tail", "odd", "summed"], ["y"], axis=1),
    ]
    dims = ["batch", "seq", hidden]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "rows", hidden])],
                              inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    return model, {"x": rng.standard_normal((3, 5, hidden)).astype(f)}


def decomposed_model(name, tokens=7, hidden=16, ffn=8, experts=4, k=2, normalize=True, near_miss=False,
                     shared=0, index_add=False, scatter_reduction="add", gelu=False, renorm_epsilon=None):
    """An MoE block written out in plain ONNX ops, in the batched form of
    transformers' export-friendly experts (batched_mm): router MatMul ->
    Softmax -> TopK (-> ReduceSum/Div), each slot's token row and expert
    weights gathered (Gather of the stacked [E, 2I, H] and [E, H, I]
    weights), batched MatMuls, Split into gate and up, SiLU(gate) * up
    (Sigmoid, Mul), the weighted rows summed per token (Reshape to
    [T, k, H], ReduceSum). `near_miss` uses a tanh activation instead: not
    an MoE the importer knows, so it stays plain ops; `gelu` uses GeGLU
    experts (Gelu(gate) * up); `renorm_epsilon` adds it to the sum the
    weights are divided by (transformers' DeepSeek-V3 and Qwen3 routers)."""
    rng = _rng(name)
    f = np.float32
    i64 = np.int64
    inits = [
        _init("router_t", rng.standard_normal((hidden, experts)).astype(f)),
        _init("gate_up_proj", (rng.standard_normal((experts, 2 * ffn, hidden)) / np.sqrt(hidden)).astype(f)),
        _init("down_proj", (rng.standard_normal((experts, hidden, ffn)) / np.sqrt(ffn)).astype(f)),
        _init("k", np.array([k], i64)), _init("flat", np.array([-1], i64)), _init("last", np.array([-1], i64)),
        _init("one", np.array([1], i64)), _init("split", np.array([ffn, ffn], i64)),
        _init("tkh", np.array([-1, k, hidden], i64)),
    ]
    n = helper.make_node
    nodes = [
        n("MatMul", ["x", "router_t"], ["router_logits"], name="router"),
        n("Softmax", ["router_logits"], ["probs"], axis=-1),
        n("TopK", ["probs", "k"], ["top_w", "top_i"], axis=-1, name="topk"),
    ]
    w = "top_w"
    if normalize:
        nodes += [n("ReduceSum", ["top_w", "last"], ["top_sum"], keepdims=1)]
        if renorm_epsilon is not None:
            inits.append(_init("renorm_eps", np.array(renorm_epsilon, f)))
            nodes += [n("Add", ["top_sum", "renorm_eps"], ["top_sum_eps"])]
        nodes += [n("Div", ["top_w", "top_sum_eps" if renorm_epsilon is not None else "top_sum"], ["top_wn"])]
        w = "top_wn"
    act = [n("Tanh", ["gate"], ["gate_act"]), n("Mul", ["gate_act", "up"], ["act"])] if near_miss else [
        n("Sigmoid", ["gate"], ["gate_sig"]), n("Mul", ["gate", "gate_sig"], ["gate_act"]),
        n("Mul", ["gate_act", "up"], ["act"])]
    if gelu:
        act = [n("Gelu", ["gate"], ["gate_act"]), n("Mul", ["up", "gate_act"], ["act"])]
    nodes += [
        # Each slot's token row: x repeated k times ([T, k, H] -> [T*k, H]).
        n("Shape", ["top_i"], ["slots_shape"]),
        n("Reshape", ["top_i", "flat"], ["expert_ids"]),
        n("Reshape", [w, "flat"], ["slot_w"]),
        n("Gather", ["gate_up_proj", "expert_ids"], ["w13"], axis=0),        # [T*k, 2I, H]
        n("Gather", ["down_proj", "expert_ids"], ["w2"], axis=0),            # [T*k, H, I]
        n("Unsqueeze", ["x", "one"], ["x3"]),                                # [T, 1, H]
        n("Expand", ["x3", "slots_shape_h"], ["x_slots"]),                   # [T, k, H]
        n("Reshape", ["x_slots", "rows_h"], ["rows"]),                       # [T*k, H]
        n("Unsqueeze", ["rows", "last"], ["rows_col"]),                      # [T*k, H, 1]
        n("MatMul", ["w13", "rows_col"], ["h_col"]),                         # [T*k, 2I, 1]
        n("Squeeze", ["h_col", "last"], ["h"]),                              # [T*k, 2I]
        n("Split", ["h", "split"], ["gate", "up"], axis=-1),
        *act,
        n("Unsqueeze", ["act", "last"], ["act_col"]),                        # [T*k, I, 1]
        n("MatMul", ["w2", "act_col"], ["o_col"]),                           # [T*k, H, 1]
        n("Squeeze", ["o_col", "last"], ["o"]),                              # [T*k, H]
        n("Unsqueeze", ["slot_w", "last"], ["slot_w_col"]),                  # [T*k, 1]
        n("Mul", ["o", "slot_w_col"], ["o_weighted"]),
        n("Reshape", ["o_weighted", "tkh"], ["o_slots"]),                    # [T, k, H]
        n("ReduceSum", ["o_slots", "one"], ["y"], keepdims=0, name="combine"),
    ]
    # [T, k, H] and [T*k, H] from the dynamic token count.
    nodes += [
        n("Concat", ["slots_shape", "h_const"], ["slots_shape_h"], axis=0),
        n("Concat", ["flat", "h_const"], ["rows_h"], axis=0),
    ]
    inits.append(_init("h_const", np.array([hidden], i64)))
    # Topological order: the shape helpers before their users.
    order = {name: i for i, name in enumerate(["slots_shape", "slots_shape_h", "rows_h"])}
    helpers = [nd for nd in nodes if nd.output[0] in order]
    rest = [nd for nd in nodes if nd.output[0] not in order]
    first = rest[:3 + (2 + (renorm_epsilon is not None) if normalize else 0)]
    nodes = first + sorted(helpers, key=lambda nd: order[nd.output[0]]) + rest[len(first):]
    if index_add:
        # As index_add_ exports: rows = x[token of each slot], the weighted
        # rows added at their tokens into zeros (ScatterND add).
        inits += [_init("i0", np.array(0, i64)), _init("r0", np.array(0, i64)), _init("r1", np.array(1, i64))]
        replace = {"rows": [n("Shape", ["x"], ["x_shape"]), n("Gather", ["x_shape", "i0"], ["num_tokens"], axis=0),
                            n("Range", ["r0", "num_tokens", "r1"], ["token_ids"]),
                            n("Unsqueeze", ["token_ids", "one"], ["token_col"]),
                            n("Expand", ["token_col", "slots_shape"], ["token_slots"]),
                            n("Reshape", ["token_slots", "flat"], ["slot_token"]),
                            n("Gather", ["x", "slot_token"], ["rows"], axis=0)],
                   "y": [n("ConstantOfShape", ["x_shape"], ["zeros"]),
                         n("Unsqueeze", ["slot_token", "last"], ["slot_token_col"]),
                         n("ScatterND", ["zeros", "slot_token_col", "o_weighted"], ["y"],
                           reduction=scatter_reduction, name="combine")]}
        drop = {"x3", "x_slots", "o_slots", "slots_shape_h", "rows_h"}
        rebuilt = []
        for nd in nodes:
            if nd.output[0] in replace:
                rebuilt += replace[nd.output[0]]
            elif nd.output[0] not in drop:
                rebuilt.append(nd)
        nodes = rebuilt
        inits = [i for i in inits if i.name not in ("tkh", "h_const")]
    if shared:
        # Qwen2-MoE: y = moe(x) + sigmoid(x Wg) * down(silu(x Wgate) * (x Wup)).
        inits += [
            _init("shared_gate_proj", (rng.standard_normal((hidden, shared)) / np.sqrt(hidden)).astype(f)),
            _init("shared_up_proj", (rng.standard_normal((hidden, shared)) / np.sqrt(hidden)).astype(f)),
            _init("shared_down_proj", (rng.standard_normal((shared, hidden)) / np.sqrt(shared)).astype(f)),
            _init("shared_expert_gate", rng.standard_normal((hidden, 1)).astype(f)),
        ]
        next(nd for nd in nodes if nd.name == "combine").output[0] = "y_routed"
        nodes += [
            n("MatMul", ["x", "shared_gate_proj"], ["sh_g"]),
            n("Sigmoid", ["sh_g"], ["sh_gs"]),
            n("Mul", ["sh_g", "sh_gs"], ["sh_ga"]),
            n("MatMul", ["x", "shared_up_proj"], ["sh_u"]),
            n("Mul", ["sh_ga", "sh_u"], ["sh_a"]),
            n("MatMul", ["sh_a", "shared_down_proj"], ["sh_out"]),
            n("MatMul", ["x", "shared_expert_gate"], ["sh_logit"]),
            n("Sigmoid", ["sh_logit"], ["sh_w"]),
            n("Mul", ["sh_w", "sh_out"], ["sh_weighted"]),
            n("Add", ["y_routed", "sh_weighted"], ["y"], name="add_shared"),
        ]
    dims = ["tokens", hidden]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    return model, {"x": rng.standard_normal((tokens, hidden)).astype(f)}


def per_expert_model(name, tokens=9, hidden=16, ffn=8, experts=4, k=2, normalize=True, mask="onehot",
                     skip_expert=None, gelu=False, torchscript=False, scatter_into_acc=False,
                     hit_loop=None, scores="softmax"):
    """An MoE block as tracing exports transformers' eager per-expert loop
    (MixtralSparseMoeBlock): router MatMul -> Softmax -> TopK (-> ReduceSum/
    Div); a mask per expert, either one_hot(ids).permute(2, 1, 0)[e]
    (`mask="onehot"`: OneHot, Transpose, Gather; NonZero gives (slot,
    token)) or ids == e (`"equal"`: Equal; NonZero gives (token, slot));
    then per expert: NonZero, the token rows (Gather), w1/w3/w2 as x @ W
    MatMuls with SiLU(gate) * up, the slot weights (GatherND on (token,
    slot)), and index_add_ into zeros (ScatterND add). `skip_expert` leaves
    one expert out of the loop: not the layer any more (a near miss).

    `torchscript=True` spells it as torch.onnx's TorchScript exporter does
    (transformers 4.57's OLMoE block): x [B, S, H] reshaped to [-1, H],
    Softmax on axis 1 and Casts to the type a value already has, the mask
    cast to bool before NonZero, torch.where's rows as Squeeze(Split(
    Transpose(nz))), x[None, tok].reshape(-1, H), routing_weights[tok,
    slot, None] as a Gather of the flattened weights at tok * k + slot,
    index_add_ as Add(acc, ScatterElements(zeros, Expand(tok), Expand(rows,
    Shape(acc[:1])))), the zeros [B * S, H] from the input's sizes.
    `scatter_into_acc` scatters into acc itself instead of zeros, so the Add
    counts acc twice: not index_add_ any more (a near miss). `hit_loop=n`
    loops as transformers' Mixtral does over the experts the input hit
    (nonzero(mask.sum((-1, -2)) > 0)), traced for an input that hit n of
    them: the graph has n iterations, whose i-th reads the i-th hit
    expert's mask with expert i's weights (valid only for inputs hitting
    exactly experts 0..n-1)."""
    rng = _rng(name)
    f = np.float32
    i64 = np.int64
    inits = [_init("router_t", rng.standard_normal((hidden, experts)).astype(f)),
             _init("k", np.array([k], i64)), _init("last", np.array([-1], i64)),
             _init("row0", np.array(0, i64)), _init("row1", np.array(1, i64))]
    if mask == "onehot":
        inits += [_init("depth", np.array(experts, i64)), _init("onehot_values", np.array([0, 1], i64))]
    n = helper.make_node
    nodes = []
    x = "x"
    if torchscript:
        inits += [_init("flat_shape", np.array([-1, hidden], i64)), _init("ax0", np.array([0], i64)),
                  _init("ax1", np.array([1], i64)), _init("ax2", np.array([2], i64)),
                  _init("i0", np.array(0, i64)), _init("i1", np.array(1, i64)), _init("i2", np.array(2, i64)),
                  _init("ones2", np.array([1, 1], i64)), _init("minus1", np.array([-1], i64)),
                  _init("slice_starts", np.array([0, 0], i64)),
                  _init("slice_ends", np.array([1, 2**63 - 1], i64)), _init("slice_axes", np.array([0, 1], i64))]
        nodes += [n("Reshape", ["x", "flat_shape"], ["x2"]),
                  n("Shape", ["x"], ["x_dims"]),
                  n("Gather", ["x_dims", "i0"], ["batch"], axis=0), n("Gather", ["x_dims", "i1"], ["seq"], axis=0),
                  n("Gather", ["x_dims", "i2"], ["hid"], axis=0),
                  n("Mul", ["batch", "seq"], ["bs"]), n("Unsqueeze", ["bs", "ax0"], ["bs1"]),
                  n("Unsqueeze", ["hid", "ax0"], ["hid1"]), n("Concat", ["bs1", "hid1"], ["zeros_shape"], axis=0),
                  n("ConstantOfShape", ["zeros_shape"], ["acc_0"],
                    value=helper.make_tensor("z", TensorProto.FLOAT, [1], [0.0])),
                  n("Unsqueeze", ["x2", "ax0"], ["x_1th"])]
        x = "x2"
    nodes += [n("MatMul", [x, "router_t"], ["router_logits"], name="router"),
              n("Softmax", ["router_logits"], ["probs"], axis=1 if torchscript else -1) if scores == "softmax" else
              n("Sigmoid", ["router_logits"], ["probs"])]
    if torchscript:
        nodes += [n("Cast", ["probs"], ["probs_f"], to=TensorProto.FLOAT)]
    nodes += [n("TopK", ["probs_f" if torchscript else "probs", "k"], ["top_w", "top_i"], axis=-1, name="topk")]
    w = "top_w"
    if normalize:
        nodes += [n("ReduceSum", ["top_w", "last"], ["top_sum"], keepdims=1),
                  n("Div", ["top_w", "top_sum"], ["top_wn"])]
        w = "top_wn"
    if torchscript:
        nodes += [n("Cast", [w], ["w_f"], to=TensorProto.FLOAT), n("Unsqueeze", ["w_f", "ax2"], ["w_3d"]),
                  n("Flatten", ["w_3d"], ["w_flat"], axis=2)]                     # [T * k, 1]
    else:
        nodes += [n("Shape", ["x"], ["x_shape"]), n("ConstantOfShape", ["x_shape"], ["acc_0"])]
    if mask == "onehot":
        nodes += [n("OneHot", ["top_i", "depth", "onehot_values"], ["onehot"], axis=-1),
                  n("Transpose", ["onehot"], ["expert_mask"], perm=[2, 1, 0])]       # [E, k, T]
    if hit_loop is not None:
        inits += [_init("sum_axes", np.array([-1, -2], i64)), _init("zero_i", np.array(0, i64)),
                  _init("hit_sizes", np.ones(hit_loop, i64))]
        nodes += [n("ReduceSum", ["expert_mask", "sum_axes"], ["hits_per_expert"], keepdims=0),
                  n("Greater", ["hits_per_expert", "zero_i"], ["was_hit"]),
                  n("NonZero", ["was_hit"], ["hit_nz"]),
                  n("Transpose", ["hit_nz"], ["hit_list"], perm=[1, 0]),            # [hits, 1]
                  n("Split", ["hit_list", "hit_sizes"], [f"hit_{e}_1" for e in range(hit_loop)], axis=0)]
        nodes += [n("Squeeze", [f"hit_{e}_1", "ax0"], [f"hit_{e}"]) for e in range(hit_loop)]  # [1]
    acc = "acc_0"
    for e in range(experts):
        p = f"e{e}_"
        inits += [_init(f"experts.{e}.w1", (rng.standard_normal((hidden, ffn)) / np.sqrt(hidden)).astype(f)),
                  _init(f"experts.{e}.w3", (rng.standard_normal((hidden, ffn)) / np.sqrt(hidden)).astype(f)),
                  _init(f"experts.{e}.w2", (rng.standard_normal((ffn, hidden)) / np.sqrt(ffn)).astype(f)),
                  _init(p + "id", np.array(e, i64))]
        if e == skip_expert:
            continue
        order = ("slot", "tok") if mask == "onehot" else ("tok", "slot")
        if hit_loop is not None and e >= hit_loop:
            continue
        if hit_loop is not None:
            nodes += [n("Gather", ["expert_mask", f"hit_{e}"], [p + "mask1"], axis=0),   # [1, k, T]
                      n("Squeeze", [p + "mask1", "ax0"], [p + "mask"])]
        elif mask == "onehot":
            nodes += [n("Gather", ["expert_mask", p + "id"], [p + "mask"], axis=0)]  # [k, T]
        else:
            nodes += [n("Equal", ["top_i", p + "id"], [p + "mask"])]                 # [T, k]
        if torchscript:
            nodes += [n("Cast", [p + "mask"], [p + "mask_b"], to=TensorProto.BOOL),
                      n("NonZero", [p + "mask_b"], [p + "nz"]),
                      n("Transpose", [p + "nz"], [p + "nzt"], perm=[1, 0]),
                      n("Split", [p + "nzt", "ones2"], [p + "c0", p + "c1"], axis=1),
                      n("Squeeze", [p + "c0", "ax1"], [p + order[0]]),
                      n("Squeeze", [p + "c1", "ax1"], [p + order[1]]),
                      n("Gather", ["x_1th", p + "tok"], [p + "rows3"], axis=1),
                      n("Reshape", [p + "rows3", "flat_shape"], [p + "rows"])]
        else:
            nodes += [n("NonZero", [p + "mask"], [p + "nz"]),
                      n("Gather", [p + "nz", "row0"], [p + order[0]], axis=0),
                      n("Gather", [p + "nz", "row1"], [p + order[1]], axis=0),
                      n("Gather", ["x", p + "tok"], [p + "rows"], axis=0)]
        nodes += [
            n("MatMul", [p + "rows", f"experts.{e}.w1"], [p + "g"]),
            *([n("Gelu", [p + "g"], [p + "ga"])] if gelu else
              [n("Sigmoid", [p + "g"], [p + "gs"]), n("Mul", [p + "g", p + "gs"], [p + "ga"])]),
            n("MatMul", [p + "rows", f"experts.{e}.w3"], [p + "u"]),
            n("Mul", [p + "ga", p + "u"], [p + "a"]),
            n("MatMul", [p + "a", f"experts.{e}.w2"], [p + "o"]),
            n("Unsqueeze", [p + "tok", "last"], [p + "tok_col"]),
        ]
        if torchscript:
            nodes += [
                n("Shape", ["w_3d"], [p + "w_dims"]),
                n("Gather", [p + "w_dims", "i1"], [p + "slots"], axis=0),
                n("Mul", [p + "tok", p + "slots"], [p + "tok_k"]),
                n("Add", [p + "slot", p + "tok_k"], [p + "flat_i"]),
                n("Gather", ["w_flat", p + "flat_i"], [p + "w_g"], axis=0),           # [n, 1]
                n("Gather", [p + "w_dims", "i2"], [p + "unit"], axis=0),
                n("Unsqueeze", [p + "unit", "ax0"], [p + "unit1"]),
                n("Concat", ["minus1", p + "unit1"], [p + "w_shape"], axis=0),
                n("Reshape", [p + "w_g", p + "w_shape"], [p + "w_col"]),
                n("Mul", [p + "o", p + "w_col"], [p + "weighted0"]),
                n("Cast", [p + "weighted0"], [p + "weighted"], to=TensorProto.FLOAT),
                n("Slice", [acc, "slice_starts", "slice_ends", "slice_axes"], [p + "acc_head"]),
                n("Shape", [p + "acc_head"], [p + "head_shape"]),
                n("Expand", [p + "weighted", p + "head_shape"], [p + "upd"]),
                n("Shape", [p + "upd"], [p + "upd_shape"]),
                n("Expand", [p + "tok_col", p + "upd_shape"], [p + "idx"]),
                n("Shape", [acc], [p + "acc_shape"]),
                n("ConstantOfShape", [p + "acc_shape"], [p + "zeros"]),
                n("ScatterElements", [acc if scatter_into_acc else p + "zeros", p + "idx", p + "upd"], [p + "scattered"],
                  axis=0),
                n("Add", [acc, p + "scattered"], [p + "acc"]),
            ]
        else:
            nodes += [
                n("Unsqueeze", [p + "slot", "last"], [p + "slot_col"]),
                n("Concat", [p + "tok_col", p + "slot_col"], [p + "pairs"], axis=-1),
                n("GatherND", [w, p + "pairs"], [p + "w"]),
                n("Unsqueeze", [p + "w", "last"], [p + "w_col"]),
                n("Mul", [p + "o", p + "w_col"], [p + "weighted"]),
                n("ScatterND", [acc, p + "tok_col", p + "weighted"], [p + "acc"], reduction="add"),
            ]
        acc = p + "acc"
    if torchscript:
        nodes.append(n("Reshape", [acc, "x_dims"], ["y"], name="combine"))
        dims = ["batch", "seq", hidden]
        feed = rng.standard_normal((3, tokens, hidden)).astype(f)
    else:
        nodes.append(n("Identity", [acc], ["y"], name="combine"))
        dims = ["tokens", hidden]
        feed = rng.standard_normal((tokens, hidden)).astype(f)
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    return model, {"x": feed}


PER_EXPERT_CASES = {
    "per_expert_mixtral": dict(normalize=True, k=2, experts=4, mask="onehot"),
    "per_expert_olmoe_equal": dict(normalize=False, k=3, experts=6, ffn=12, mask="equal"),
    "per_expert_geglu": dict(normalize=True, k=2, experts=4, mask="onehot", gelu=True),
    "per_expert_torchscript": dict(normalize=True, k=2, experts=4, mask="onehot", torchscript=True),
    "per_expert_torchscript_equal": dict(normalize=False, k=3, experts=6, ffn=12, mask="equal", torchscript=True),
    # Scattered into acc instead of zeros, then added to acc: not index_add_.
    "per_expert_torchscript_near_miss": dict(normalize=True, k=2, experts=4, torchscript=True, scatter_into_acc=True),
    # A loop that leaves expert 2 out: not the layer; plain ops (NonZero).
    "per_expert_missing_expert": dict(normalize=True, k=2, experts=4, skip_expert=2),
    # Sigmoid scores without DeepSeek's bias and groups (Llama-4 style),
    # renormalised: a moe.layer with scoring = sigmoid.
    "per_expert_sigmoid": dict(normalize=True, k=2, experts=4, scores="sigmoid"),
    # transformers' loop over the experts the input hit, traced with all 4 hit.
    "per_expert_hit_loop": dict(normalize=True, k=2, experts=4, torchscript=True, hit_loop=4),
}

# Models whose plain ops size a result by the data (NonZero): the GPU path
# cannot allocate it yet (moe-map-to-gpu says so); checked on the CPU only.
CPU_ONLY = {"per_expert_torchscript_near_miss", "per_expert_missing_expert",
            # A size read from the data: the CPU target only (docs/onnx.md).
            "expand_runtime_shape", "runtime_broadcast", "runtime_broadcast_static"}

# Traced with 3 of 4 experts hit: the graph holds only for inputs hitting
# exactly those (onnxruntime fails on the others); not an MoE layer, and
# its Split of the hit list is refused (test/Onnx/import-moe.test).
PARTIAL_HIT_LOOP = dict(normalize=True, k=2, experts=4, torchscript=True, hit_loop=3)


DECOMPOSED_CASES = {
    "decomposed_mixtral": dict(normalize=True, k=2, experts=4),
    "decomposed_olmoe": dict(normalize=False, k=2, experts=8, ffn=12),
    "decomposed_near_miss": dict(normalize=True, k=2, experts=4, near_miss=True),
    "decomposed_qwen2_shared": dict(normalize=False, k=2, experts=8, shared=24),
    "decomposed_index_add": dict(normalize=True, k=2, experts=4, index_add=True),
    "decomposed_geglu": dict(normalize=False, k=2, experts=4, gelu=True),
    "decomposed_epsilon_renorm": dict(normalize=True, k=2, experts=4, renorm_epsilon=1e-20),
    # An epsilon that changes the weights: the routing's norm_epsilon.
    "decomposed_large_epsilon": dict(normalize=True, k=2, experts=4, renorm_epsilon=0.5),
    # A negative one is no renormalisation (the sum could reach 0).
    "decomposed_negative_epsilon_near_miss": dict(normalize=True, k=2, experts=4, renorm_epsilon=-0.05),
    # Overwriting instead of adding keeps one slot per token: not an MoE sum.
    "decomposed_index_overwrite": dict(normalize=True, k=2, experts=4, index_add=True, scatter_reduction="none"),
}


def activations_model(name, tokens=6, hidden=16):
    """Activations and normalisations of transformer graphs: Gelu (exact and
    tanh), LeakyRelu, Elu, HardSigmoid, HardSwish, Softplus, Sin/Cos (RoPE
    tables), ORT's SimplifiedLayerNormalization and
    SkipSimplifiedLayerNormalization (RMS norm), ConstantOfShape of a
    computed shape."""
    rng = _rng(name)
    f = np.float32
    inits = [_init("gamma", (1 + 0.1 * rng.standard_normal(hidden)).astype(f)),
             _init("skip_bias", (0.1 * rng.standard_normal(hidden)).astype(f))]
    n = helper.make_node
    ms = "com.microsoft"
    nodes = [
        n("Gelu", ["x"], ["g0"]), n("Gelu", ["x"], ["g1"], approximate="tanh"),
        n("LeakyRelu", ["x"], ["a0"], alpha=0.1), n("Elu", ["x"], ["a1"], alpha=0.7),
        n("HardSigmoid", ["x"], ["a2"]), n("HardSwish", ["x"], ["a3"]), n("Softplus", ["x"], ["a4"]),
        n("Sin", ["x"], ["a5"]), n("Cos", ["x"], ["a6"]),
        n("Add", ["g0", "g1"], ["s0"]),
        n("Add", ["s0", "a0"], ["s1"]), n("Add", ["s1", "a1"], ["s2"]), n("Add", ["s2", "a2"], ["s3"]),
        n("Add", ["s3", "a3"], ["s4"]), n("Add", ["s4", "a4"], ["s5"]), n("Add", ["s5", "a5"], ["s6"]),
        n("Add", ["s6", "a6"], ["acts"]),
        # ORT registers SimplifiedLayerNormalization in the default domain.
        n("SimplifiedLayerNormalization", ["acts", "gamma"], ["rms"], axis=-1, epsilon=1e-5),
        n("SkipSimplifiedLayerNormalization", ["rms", "x", "gamma", "skip_bias"], ["srms", "", "", "sum"],
          domain=ms, epsilon=1e-6),
        n("Shape", ["x"], ["shape"]),
        n("ConstantOfShape", ["shape"], ["half"], value=numpy_helper.from_array(np.array([0.5], f))),
        n("Mul", ["srms", "half"], ["scaled"]),
        n("Add", ["scaled", "sum"], ["y"]),
    ]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["tokens", hidden])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["tokens", hidden])], inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    return model, {"x": rng.standard_normal((tokens, hidden)).astype(f)}


def scatter_model(name, tokens=6, hidden=8, experts=4):
    """OneHot, ScatterND and ScatterElements as dispatch code writes them:
    a one-hot expert mask times per-expert rows, rows scattered with add
    (a duplicate index accumulates), elements scattered along the last axis."""
    rng = _rng(name)
    f = np.float32
    i64 = np.int64
    inits = [
        _init("ids", np.array([3, 0, 1, 3, -1, 2], i64)[:tokens]),
        _init("depth", np.array(experts, i64)),
        _init("onoff", np.array([0.0, 1.0], f)),
        _init("expert_rows", rng.standard_normal((experts, hidden)).astype(f)),
        _init("rows", np.array([[2], [0], [2]], i64)),
        _init("s0", np.array([0], i64)), _init("s3", np.array([3], i64)), _init("ax0", np.array([0], i64)),
        _init("cols", rng.integers(0, hidden, (tokens, 2)).astype(i64)),
        _init("c0", np.array([0], i64)), _init("c2", np.array([2], i64)), _init("ax1", np.array([1], i64)),
    ]
    n = helper.make_node
    nodes = [
        n("OneHot", ["ids", "depth", "onoff"], ["mask"], axis=-1),           # [T, E]
        n("MatMul", ["mask", "expert_rows"], ["per_token"]),                 # [T, H]
        n("Add", ["x", "per_token"], ["h"]),
        n("Shape", ["h"], ["h_shape"]),
        n("ConstantOfShape", ["h_shape"], ["zeros"]),
        n("Slice", ["h", "s0", "s3", "ax0"], ["first3"]),                      # [3, H]
        n("ScatterND", ["zeros", "rows", "first3"], ["scattered"], reduction="add"),
        n("Slice", ["h", "c0", "c2", "ax1"], ["first2cols"]),                 # [T, 2]
        n("ScatterElements", ["scattered", "cols", "first2cols"], ["elems"], axis=1, reduction="add"),
        n("Add", ["elems", "h"], ["y"]),
    ]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [tokens, hidden])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [tokens, hidden])], inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    return model, {"x": rng.standard_normal((tokens, hidden)).astype(f)}


def gather_nd_trilu_model(name, tokens=6, hidden=8):
    """GatherND and Trilu as attention code writes them: token scores x xᵀ
    masked to the causal (lower) triangle and a strict upper one (Trilu with
    k = 1), rows and single scores picked by GatherND (negative indices
    too); GatherElements and an unsorted TopK."""
    rng = _rng(name)
    f = np.float32
    i64 = np.int64
    inits = [_init("row_ids", np.array([[0], [2], [-1]], i64)),
             _init("pairs", np.array([[1, 0], [3, 3], [-1, -2]], i64)),
             _init("one", np.array(1, i64)), _init("last", np.array([-1], i64)),
             _init("two", np.array([2], i64)),
             _init("element_ids", np.array([[0, -1], [3, 2], [1, 1], [7, 0], [2, -3], [5, 4]], i64))]
    n = helper.make_node
    nodes = [
        n("Transpose", ["x"], ["xt"], perm=[1, 0]),
        n("MatMul", ["x", "xt"], ["scores"]),                                 # [T, T]
        n("Trilu", ["scores"], ["causal"], upper=0),
        n("Trilu", ["scores", "one"], ["strict_upper"], upper=1),
        n("Add", ["causal", "strict_upper"], ["both"]),
        n("Mul", ["both", "causal"], ["masked"]),
        n("MatMul", ["masked", "x"], ["mixed"]),                             # [T, H]
        n("GatherND", ["x", "row_ids"], ["rows"]),                            # [3, H]
        n("GatherND", ["masked", "pairs"], ["picked"]),                       # [3]
        n("Unsqueeze", ["picked", "last"], ["picked_col"]),
        n("Mul", ["rows", "picked_col"], ["weighted"]),
        # GatherElements along the columns (a negative index too), and an
        # unsorted TopK (DeepSeek-V3's group scores) summed, so that its
        # unspecified order does not matter.
        n("GatherElements", ["x", "element_ids"], ["picked_elements"], axis=1),      # [T, 2]
        n("TopK", ["x", "two"], ["top_values", "top_ids"], sorted=0),
        n("ReduceSum", ["top_values", "last"], ["top_sum"], keepdims=1),            # [T, 1]
        n("Concat", ["picked_elements", "top_sum"], ["extra"], axis=1),             # [T, 3]
        n("Transpose", ["extra"], ["extra_t"], perm=[1, 0]),                         # [3, T]
        n("MatMul", ["extra_t", "x"], ["extra_rows"]),                               # [3, H]
        n("Concat", ["mixed", "weighted", "extra_rows"], ["y"], axis=0, name="gather_nd_trilu"),
    ]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["tokens", hidden])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", hidden])], inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    return model, {"x": rng.standard_normal((tokens, hidden)).astype(f)}


MOE_CASES = {
    "moe_relu_k2": dict(activation="relu", k=2),
    "moe_gelu_k1": dict(activation="gelu", k=1),
    "moe_silu_k4_norm": dict(activation="silu", k=4, normalize=1, experts=8),
    "moe_identity_k2": dict(activation="identity", k=2),
    "moe_swiglu_interleaved": dict(activation="swiglu", k=2, fusion=1, normalize=1),
    "moe_swiglu_concatenated": dict(activation="swiglu", k=2, fusion=2),
    "moe_swiglu_f16": dict(activation="swiglu", k=2, fusion=1, normalize=1, dtype="f16"),
    "moe_relu_rank3": dict(activation="relu", k=2, rank3=True),
    "moe_logits_input": dict(activation="silu", k=2, router_in_graph=False),
    "moe_relu_bias": dict(activation="relu", k=2, bias=True),
    "moe_swiglu_bias": dict(activation="swiglu", k=2, fusion=1, bias=True, normalize=1),
    # gpt-oss's SwiGLU: the limit 0.5 clamps a good share of the gate and up
    # values of these random weights (gpt-oss uses 7 on its larger ones).
    "moe_swiglu_gpt_oss": dict(activation="swiglu", k=2, fusion=1, normalize=1, bias=True,
                               swiglu=dict(activation_alpha=1.702, activation_beta=1.0, swiglu_limit=0.5)),
    # The limit on the activated gate (ORT: CUDA only; checked with numpy).
    "moe_swiglu_limit_after": dict(activation="swiglu", k=2, fusion=1, normalize=1, bias=True,
                                   swiglu=dict(activation_alpha=1.702, activation_beta=1.0, swiglu_limit=0.2,
                                               swiglu_limit_after_activation=1)),
    # Phi-3.5-MoE's SparseMixer top-2 routing (logits as an input, near ties).
    "moe_sparse_mixer": dict(activation="swiglu", k=2, fusion=1, router_in_graph=False, sparse_mixer=True,
                             experts=6, tokens=10),
    "moe_swiglu_alpha_beta": dict(activation="swiglu", k=2, fusion=1, normalize=1,
                                  swiglu=dict(activation_alpha=2.5, activation_beta=-0.25)),
    # silu(fc1 x) * (fc3 x), as ORT's Mixtral tooling writes it (ORT's CPU
    # kernel has no fc3: the reference is the same layer as interleaved SwiGLU).
    "moe_silu_fc3": dict(activation="silu", k=2, normalize=1, fc3=True),
}


# ORT's CPU QMoE runs interleaved SwiGLU only, and renormalises always.
QMOE_CASES = {
    "qmoe_int8_relu": dict(bits=8, activation="relu"),
    "qmoe_int4_swiglu": dict(bits=4, activation="swiglu", fusion=1),
    "qmoe_int4_block16_silu": dict(bits=4, activation="silu", block=16),
    # Explicit zero points (asymmetric ranges): per row, per block, 8-bit.
    "qmoe_int4_zero_points_swiglu": dict(bits=4, activation="swiglu", fusion=1, zero_points=True),
    "qmoe_int4_block16_zero_points": dict(bits=4, activation="relu", block=16, zero_points=True),
    "qmoe_int8_zero_points": dict(bits=8, activation="silu", zero_points=True),
    # Separate mixing weights: Sigmoid(logits) at the experts softmax chose.
    "qmoe_router_weights": dict(bits=8, activation="relu", router_weights=True),
    # Another width for fc2 (ORT's CPU kernel refuses it: the numpy reference).
    "qmoe_mixed_bits_swiglu": dict(bits=4, fc2_bits=8, activation="swiglu", fusion=1, block=16, zero_points=True),
}


def fc3_twin(model):
    """The silu + fc3 MoE as interleaved SwiGLU (alpha 1, beta 0, no limit),
    which ORT's CPU kernel runs."""
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    inits = {i.name: numpy_helper.to_array(i) for i in twin.graph.initializer}
    gate, up = inits["fc1"], inits["fc3"]
    inter = np.empty((gate.shape[0], 2 * gate.shape[1], gate.shape[2]), gate.dtype)
    inter[:, 0::2], inter[:, 1::2] = gate, up
    kept = [i for i in twin.graph.initializer if i.name not in ("fc1", "fc3")]
    del twin.graph.initializer[:]
    twin.graph.initializer.extend(kept + [_init("fc1", inter)])
    for node in twin.graph.node:
        if node.op_type == "MoE":
            del node.input[6:]
            del node.attribute[:]
            node.attribute.extend([helper.make_attribute(k, v) for k, v in dict(
                k=2, activation_type="swiglu", swiglu_fusion=1, normalize_routing_weights=1, activation_alpha=1.0,
                activation_beta=0.0, swiglu_limit=1e30).items()])
    return twin


def interleaved_twin(model):
    """The same MoE with fc1 as interleaved SwiGLU rows (swiglu_fusion = 1):
    ORT's CPU kernel runs only that form, so it is the reference for the
    concatenated (swiglu_fusion = 2) model."""
    twin = onnx.ModelProto()
    twin.CopyFrom(model)
    for i, init in enumerate(twin.graph.initializer):
        if init.name == "fc1":
            fc1 = numpy_helper.to_array(init)
            half = fc1.shape[1] // 2
            inter = np.empty_like(fc1)
            inter[:, 0::2], inter[:, 1::2] = fc1[:, :half], fc1[:, half:]
            twin.graph.initializer[i].CopyFrom(_init("fc1", inter))
    for node in twin.graph.node:
        for attr in node.attribute:
            if attr.name == "swiglu_fusion":
                attr.i = 1
    return twin


# Older files: (model converted, default-domain opset, IR version). Opset 17
# still gives ReduceMean its axes as an attribute; IR 7 is the oldest the
# importer reads.
OLDER_VERSIONS = {
    "transformer_2layer_opset17": ("transformer_2layer", 17, 8),
    "moe_swiglu_opset13_ir7": ("moe_swiglu_interleaved", 13, 7),
    # Newer: IR 14, what the onnx package writes by default since 1.23.
    "moe_swiglu_ir14": ("moe_swiglu_interleaved", None, 14),
}


def predicates_clip_model(name, tokens=6, hidden=8):
    """IsNaN, IsInf, Not/And/Or/Xor and Clip as exported models use them
    (attention masks NaN rows; transformers clamps expert ids): x holds
    NaN and +-inf, which the predicates find and Where replaces; Clip on
    floats with both bounds and with only a max, and on int64; CumSum
    (exclusive, reverse) on floats and int64; Mod (both signs' rules) and
    smallest-first TopK (argsort) on int64 and f32; ArgMax / ArgMin
    (Switch's top-1, GShard's second pick) along either axis, with and
    without keepdims and select_last_index, on f32 and on int64 and f32
    with ties; a full sort cut to its first 3 by Slices (read as TopK(3))
    and one cut to [1:3] (kept); LogSoftmax along either axis."""
    rng = _rng(name)
    f, i64 = np.float32, np.int64
    inits = [_init("zero", np.array(0, f)), _init("lo", np.array(-0.5, f)), _init("hi", np.array(0.75, f)),
             _init("four", np.array(4, f)), _init("ilo", np.array(-2, i64)), _init("ihi", np.array(3, i64)),
             _init("axis0", np.array(0, i64)), _init("axis1", np.array(-1, i64)),
             _init("three", np.array(3, i64)), _init("minus3", np.array(-3, i64)), _init("f3", np.array(0.7, f)),
             _init("k_all", np.array([hidden], i64)), _init("row_shape", np.array([1, hidden], i64)),
             _init("axis_col", np.array([1], i64)), _init("at0", np.array([0], i64)), _init("at1", np.array([1], i64)),
             _init("at3", np.array([3], i64))]
    n = helper.make_node
    nodes = [
        n("IsNaN", ["x"], ["nan"]),
        n("IsInf", ["x"], ["inf"]),
        n("IsInf", ["x"], ["pinf"], detect_negative=0),
        n("Or", ["nan", "inf"], ["bad"]),
        n("Not", ["bad"], ["good"]),
        n("Xor", ["nan", "pinf"], ["either"]),
        n("Greater", ["x", "zero"], ["positive"]),
        n("And", ["good", "positive"], ["good_positive"]),
        n("Where", ["bad", "zero", "x"], ["clean"]),
        n("Clip", ["clean", "lo", "hi"], ["clipped"]),
        n("Clip", ["clean", "", "hi"], ["below"]),
        n("Mul", ["clean", "four"], ["scaled"]),
        n("Cast", ["scaled"], ["ints"], to=TensorProto.INT64),
        n("Clip", ["ints", "ilo", "ihi"], ["int_clipped"]),
        n("Cast", ["int_clipped"], ["int_back"], to=TensorProto.FLOAT),
    ] + [n("Cast", [b], [b + "_f"], to=TensorProto.FLOAT) for b in ("good", "either", "good_positive")] + [
        # Running sums as masks are built from them: plain, exclusive and
        # reversed, floats and int64.
        n("CumSum", ["clean", "axis1"], ["running"]),
        n("CumSum", ["clean", "axis0"], ["running_rev_ex"], exclusive=1, reverse=1),
        n("CumSum", ["int_clipped", "axis1"], ["int_running"], exclusive=1),
        n("Cast", ["int_running"], ["int_running_f"], to=TensorProto.FLOAT),
        # Mod: Python's (sign of the divisor) and C's fmod, on int64 and f32.
        n("Mod", ["ints", "three"], ["mod_py"]),
        n("Mod", ["ints", "minus3"], ["mod_py_neg"]),
        n("Mod", ["ints", "minus3"], ["mod_c"], fmod=1),
        n("Mod", ["clean", "f3"], ["mod_f"], fmod=1),
        # TopK smallest first, on int64 (many ties: lower index first) and f32:
        # a whole-row argsort, as argsort exports.
        n("TopK", ["ints", "k_all"], ["int_sorted", "int_order"], largest=0),
        n("TopK", ["clean", "k_all"], ["f_sorted", "f_order"], largest=0),
        # A full descending sort cut to its first 3 by Slices (read as TopK(3)),
        # and one cut to [1:3] (kept as written).
        n("TopK", ["clean", "k_all"], ["sorted_v", "sorted_i"]),
        n("Slice", ["sorted_v", "at0", "at3", "axis_col"], ["first3_v"]),
        n("Slice", ["sorted_i", "at0", "at3", "axis_col"], ["first3_i"]),
        n("Cast", ["first3_i"], ["first3_if"], to=TensorProto.FLOAT),
        n("TopK", ["running", "k_all"], ["run_sorted_v", "run_sorted_i"]),
        n("Slice", ["run_sorted_v", "at1", "at3", "axis_col"], ["second2_v"]),
        n("Concat", ["first3_v", "first3_if", "second2_v"], ["sort_cuts"], axis=1),
        # ArgMax / ArgMin: [T, 1] and [T] per row, [1, H] per column.
        n("ArgMax", ["clean"], ["amax_row"], axis=1),
        n("ArgMin", ["clean"], ["amin_row_last"], axis=-1, select_last_index=1),
        n("ArgMax", ["ints"], ["amax_int_last"], axis=1, keepdims=0, select_last_index=1),
        n("Unsqueeze", ["amax_int_last", "axis_col"], ["amax_int_col"]),
        n("ArgMin", ["int_back"], ["amin_ties"], axis=1, keepdims=0),
        n("Unsqueeze", ["amin_ties", "axis_col"], ["amin_ties_col"]),
        n("ArgMin", ["int_back"], ["amin_col"], axis=0),
        n("ArgMax", ["clean"], ["amax_col_last"], axis=0, select_last_index=1),
        n("LogSoftmax", ["clean"], ["log_probs"]),
        n("LogSoftmax", ["clean"], ["log_probs_col"], axis=0),
    ] + [n("Cast", [v], [v + "_f"], to=TensorProto.FLOAT)
         for v in ("amax_row", "amin_row_last", "amax_int_col", "amin_ties_col", "amin_col", "amax_col_last")] + [
        n("Expand", [v + "_f", "row_shape"], [v + "_rows"])
        for v in ("amax_row", "amin_row_last", "amax_int_col", "amin_ties_col")] + [
    ] + [n("Cast", [v], [v + "_f"], to=TensorProto.FLOAT)
         for v in ("mod_py", "mod_py_neg", "mod_c", "int_sorted", "int_order", "f_order")] + [
        n("Concat", ["clipped", "below", "int_back", "good_f", "either_f", "good_positive_f", "running",
                     "running_rev_ex", "int_running_f", "mod_py_f", "mod_py_neg_f", "mod_c_f", "mod_f",
                     "int_sorted_f", "int_order_f", "f_sorted", "f_order_f", "amax_row_rows", "amin_row_last_rows",
                     "amax_int_col_rows", "amin_ties_col_rows", "amin_col_f", "amax_col_last_f", "sort_cuts",
                     "log_probs", "log_probs_col"],
          ["y"], axis=0),
    ]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["tokens", hidden])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", hidden])], inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    x = rng.standard_normal((tokens, hidden)).astype(f)
    x[0, 1], x[1, 2], x[2, 3], x[3, 0] = np.nan, np.inf, -np.inf, np.nan
    return model, {"x": x}


def expand_runtime_model(name, hidden=8):
    """Expand to a shape read from the data at run time (`y[rows] += ...`
    exports expand to a count of selected rows): the shape's first size a
    sum of a 0/1 mask, [1, H] rows broadcast to it, then reduced with the
    input so every element is checked; plus Size(x) (x.numel(), T·H at run
    time) scaled into every element."""
    f, i64 = np.float32, np.int64
    n = helper.make_node
    nodes = [
        n("Greater", ["x", "zero"], ["positive"]),
        n("Cast", ["positive"], ["count_rows"], to=TensorProto.INT64),
        n("ReduceSum", ["count_rows", "axis1"], ["count"], keepdims=0),           # [T]: positives per row
        n("ReduceSum", ["count", "axis0"], ["total"], keepdims=1),                 # [1]
        n("Concat", ["total", "width"], ["shape"], axis=0),                        # [total, H]
        n("Expand", ["row", "shape"], ["rows"]),                                   # [total, H]
        n("ReduceSum", ["rows", "axis0"], ["colsum"], keepdims=1),                 # [1, H]
        n("Add", ["x", "colsum"], ["shifted"]),
        n("Size", ["x"], ["numel"]),                                               # T * H, i64 scalar
        n("Cast", ["numel"], ["numel_f"], to=TensorProto.FLOAT),
        n("Mul", ["numel_f", "milli"], ["numel_scaled"]),
        n("Add", ["shifted", "numel_scaled"], ["y"]),
    ]
    inits = [_init("zero", np.array(0, f)), _init("milli", np.array(1e-3, f)), _init("axis0", np.array([0], i64)), _init("axis1", np.array([1], i64)),
             _init("width", np.array([hidden], i64)),
             _init("row", np.linspace(-1, 1, hidden, dtype=f).reshape(1, hidden))]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["tokens", hidden])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["tokens", hidden])], inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    return model, {"x": _rng(name).standard_normal((5, hidden)).astype(f)}


def runtime_broadcast_model(name, hidden=8, tokens=None):
    """Operands whose sizes are 1 only at run time, broadcast against
    larger ones: the row holding the largest first element, gathered by
    NonZero ([n, H], n = 1), added to x; x's first row as a Slice ([1, H]
    when the token count is dynamic, a run-time 1); Expand of the gathered
    rows to that Slice's Shape (TorchScript's index_add_) and of the first
    row to x's. `tokens` makes x's token count static (a static size
    against the run-time 1)."""
    f, i64 = np.float32, np.int64
    n = helper.make_node
    nodes = [
        n("Gather", ["x", "zero"], ["column"], axis=1),                 # [T]
        n("ReduceMax", ["column"], ["largest"], keepdims=1),            # [1]
        n("Equal", ["column", "largest"], ["hit"]),
        n("NonZero", ["hit"], ["hits"]),                                # [1, n]
        n("Reshape", ["hits", "flat"], ["index"]),                      # [n]
        n("Gather", ["x", "index"], ["rows"], axis=0),                  # [n, H], n = 1
        n("Slice", ["x", "start", "one", "start"], ["first"]),          # [min(1, T), H]
        n("Add", ["x", "rows"], ["shifted"]),
        n("Add", ["shifted", "first"], ["shifted2"]),
        n("Shape", ["first"], ["first_shape"]),
        n("Expand", ["rows", "first_shape"], ["rows_expanded"]),        # [n, H]
        n("ReduceSum", ["rows_expanded", "start"], ["rows_sum"], keepdims=1),
        n("Shape", ["x"], ["x_shape"]),
        n("Expand", ["first", "x_shape"], ["first_expanded"]),          # [T, H]
        n("Mul", ["first_expanded", "half"], ["first_half"]),
        n("Add", ["shifted2", "first_half"], ["partial"]),
        n("Add", ["partial", "rows_sum"], ["y"]),
    ]
    inits = [_init("zero", np.array(0, i64)), _init("flat", np.array([-1], i64)), _init("start", np.array([0], i64)),
             _init("one", np.array([1], i64)), _init("half", np.array(0.5, f))]
    count = tokens or "tokens"
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [count, hidden])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [count, hidden])], inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    return model, {"x": _rng(name).standard_normal((tokens or 5, hidden)).astype(f)}


def matmul_runtime_k_model(name):
    """MatMul and Gemm whose contracted sizes are each input's own run-time
    size (k_a and k_b: not provably equal before the run)."""
    f = np.float32
    n = helper.make_node
    nodes = [
        n("MatMul", ["a", "b"], ["ab"]),                         # [m, k_a] x [k_b, 3]
        n("Gemm", ["a", "b"], ["gemm"], alpha=0.5),               # the same, halved
        n("Add", ["ab", "gemm"], ["y"]),
    ]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["m", "k_a"]),
                                            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["k_b", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", 3])])
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    rng = _rng(name)
    return model, {"a": rng.standard_normal((5, 7)).astype(f), "b": rng.standard_normal((7, 3)).astype(f)}


def sort_runtime_length_model(name, hidden=4):
    """TopK whose K is its input's own run-time length (torch.sort, argsort
    and JetMoE's sort of the flattened expert ids export so): ascending and
    descending, floats with ties and integers, 1-D and along the last axis of
    a 2-D input, K = Shape of the sorted tensor itself; a constant K on a
    static rank-3 input; and a constant K = 3 along the run-time token axis
    (an expert's top-C tokens), largest and smallest first; every result
    flattened into one output."""
    f, i64 = np.float32, np.int64
    n = helper.make_node
    nodes = [
        n("Reshape", ["x", "flat_shape"], ["flat"]),
        n("Shape", ["flat"], ["length"]),
        n("TopK", ["flat", "length"], ["v_asc", "i_asc"], largest=0),
        n("Mul", ["flat", "two"], ["doubled"]),
        n("Floor", ["doubled"], ["ties"]),                                   # many equal values
        n("Shape", ["ties"], ["ties_length"]),
        n("TopK", ["ties", "ties_length"], ["v_ties", "i_ties"]),
        n("Cast", ["ties"], ["ints"], to=TensorProto.INT64),
        n("Shape", ["ints"], ["ints_length"]),
        n("TopK", ["ints", "ints_length"], ["v_int", "i_int"], largest=0),
        n("Transpose", ["x"], ["xt"], perm=[1, 0]),                            # [H, tokens]
        n("Shape", ["xt"], ["row_length"], start=-1),
        n("TopK", ["xt", "row_length"], ["v_rows", "i_rows"]),
        n("Reshape", ["v_rows", "flat_shape"], ["v_rows_flat"]),
        n("Reshape", ["i_rows", "flat_shape"], ["i_rows_flat"]),
        n("TopK", ["cube", "two_k"], ["v_cube", "i_cube"]),                   # static rank 3
        n("Reshape", ["v_cube", "flat_shape"], ["v_cube_flat"]),
        n("Reshape", ["i_cube", "flat_shape"], ["i_cube_flat"]),
        n("TopK", ["xt", "three_k"], ["v_pick", "i_pick"]),                  # K = 3 of a run-time axis
        n("TopK", ["xt", "three_k"], ["v_low", "i_low"], largest=0),
    ]
    for part in ("v_pick", "i_pick", "v_low", "i_low"):
        nodes.append(n("Reshape", [part, "flat_shape"], [part + "_flat"]))
    parts = ["v_asc", "i_asc", "v_ties", "i_ties", "v_int", "i_int", "v_rows_flat", "i_rows_flat", "v_cube_flat",
             "i_cube_flat", "v_pick_flat", "i_pick_flat", "v_low_flat", "i_low_flat"]
    for part in parts:
        nodes.append(n("Cast", [part], [part + "_f"], to=TensorProto.FLOAT))
    nodes.append(n("Concat", [p + "_f" for p in parts], ["y"], axis=0))
    inits = [_init("flat_shape", np.array([-1], i64)), _init("two", np.array(2, f)),
             _init("two_k", np.array([2], i64)), _init("three_k", np.array([3], i64))]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["tokens", hidden]),
              helper.make_tensor_value_info("cube", TensorProto.FLOAT, [2, 5, hidden])]
    graph = helper.make_graph(nodes, name, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["all"])],
                              inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    rng = _rng(name)
    return model, {"x": rng.standard_normal((7, hidden)).astype(f),
                   "cube": rng.standard_normal((2, 5, hidden)).astype(f)}


def sorted_split_model(name, hidden=4, classes=3):
    """JetMoE's dropless grouping as plain ops: each element's class (from
    Floor, Mod), the classes' counts, a full ascending sort of the classes
    (K = their run-time length), the values gathered in that order and Split
    by the counts (sizes read from the data; a class may be empty), each part
    summed; with Round (halves to even), Ceil and Sign on the way."""
    f, i64 = np.float32, np.int64
    n = helper.make_node
    nodes = [
        n("Reshape", ["x", "flat_shape"], ["flat"]),
        n("Abs", ["flat"], ["magnitude"]),
        n("Mul", ["magnitude", "one_and_half"], ["scaled"]),
        n("Floor", ["scaled"], ["floored"]),
        n("Cast", ["floored"], ["floored_int"], to=TensorProto.INT64),
        n("Mod", ["floored_int", "classes"], ["cls"]),
        n("Unsqueeze", ["cls", "last"], ["cls_column"]),
        n("Equal", ["cls_column", "class_ids"], ["hits"]),
        n("Cast", ["hits"], ["hit_counts"], to=TensorProto.INT64),
        n("ReduceSum", ["hit_counts", "first"], ["sizes"], keepdims=0),
        n("Shape", ["cls"], ["length"]),
        n("TopK", ["cls", "length"], ["sorted_cls", "order"], largest=0),
        n("Gather", ["flat", "order"], ["grouped"]),
        n("Split", ["grouped", "sizes"], [f"part{c}" for c in range(classes)]),
        *[n("ReduceSum", [f"part{c}", "first"], [f"sum{c}"], keepdims=1) for c in range(classes)],
        n("Mul", ["flat", "four"], ["quarters"]),
        n("Floor", ["quarters"], ["quarter_steps"]),
        n("Div", ["quarter_steps", "two"], ["halves"]),                     # multiples of 0.5: Round's ties
        n("Round", ["halves"], ["rounded"]),
        n("Ceil", ["flat"], ["ceiled"]),
        n("Sign", ["flat"], ["signs"]),
        n("Sub", ["flat", "flat"], ["zeros"]),
        n("Sign", ["zeros"], ["zero_signs"]),
        n("Sign", ["floored_int"], ["int_signs"]),
        n("Cast", ["int_signs"], ["int_signs_f"], to=TensorProto.FLOAT),
        n("Cast", ["sizes"], ["sizes_f"], to=TensorProto.FLOAT),
        n("Concat", [*[f"sum{c}" for c in range(classes)], "rounded", "ceiled", "signs", "zero_signs", "int_signs_f",
                     "sizes_f"], ["y"], axis=0),
    ]
    inits = [_init("flat_shape", np.array([-1], i64)), _init("one_and_half", np.array(1.5, f)),
             _init("classes", np.array(classes, i64)), _init("last", np.array([-1], i64)),
             _init("class_ids", np.arange(classes, dtype=i64)), _init("first", np.array([0], i64)),
             _init("four", np.array(4, f)), _init("two", np.array(2, f))]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["tokens", hidden])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["all"])], inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    return model, {"x": _rng(name).standard_normal((9, hidden)).astype(f)}


def conv_model(name, channels=4):
    """Conv as models carry it outside their MoE blocks: LFM2's short causal
    depthwise Conv1d (group = C, padded on the left) on a run-time batch and
    length, a biased strided Conv1d, and a 2-D Conv with stride, dilation,
    two groups, bias and pads, and one with auto_pad SAME_UPPER; every
    result flattened into one output."""
    f = np.float32
    rng = _rng(name)
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w_depthwise"], ["causal"], group=channels, kernel_shape=[3], pads=[2, 0]),
        n("Conv", ["x", "w_strided", "b_strided"], ["strided"], strides=[2], pads=[1, 1]),
        n("Conv", ["image", "w_grouped", "b_grouped"], ["grouped"], group=2, strides=[2, 1], dilations=[1, 2],
          pads=[1, 0, 1, 2]),
        n("Conv", ["image", "w_same"], ["same"], auto_pad="SAME_UPPER", strides=[2, 2]),
    ]
    parts = ["causal", "strided", "grouped", "same"]
    for part in parts:
        nodes.append(n("Reshape", [part, "flat_shape"], [part + "_flat"]))
    nodes.append(n("Concat", [p + "_flat" for p in parts], ["y"], axis=0))
    inits = [_init("w_depthwise", (0.5 * rng.standard_normal((channels, 1, 3))).astype(f)),
             _init("w_strided", (0.5 * rng.standard_normal((6, channels, 3))).astype(f)),
             _init("b_strided", rng.standard_normal(6).astype(f)),
             _init("w_grouped", (0.5 * rng.standard_normal((6, 2, 3, 2))).astype(f)),
             _init("b_grouped", rng.standard_normal(6).astype(f)),
             _init("w_same", (0.5 * rng.standard_normal((3, 4, 3, 3))).astype(f)),
             _init("flat_shape", np.array([-1], np.int64))]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", channels, "length"]),
              helper.make_tensor_value_info("image", TensorProto.FLOAT, [2, 4, 6, 7])]
    graph = helper.make_graph(nodes, name, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["all"])],
                              inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    return model, {"x": rng.standard_normal((3, channels, 9)).astype(f),
                   "image": rng.standard_normal((2, 4, 6, 7)).astype(f)}


def reductions_model(name, tokens=6, hidden=8):
    """Every ONNX reduction: ReduceMin, ReduceProd, ReduceL1, ReduceL2,
    ReduceSumSquare, ReduceLogSum over the last axis (keepdims both ways)
    and over both axes, and ReduceLogSumExp of elements up to about 200
    (exp overflows f32 past 88), each broadcast back onto x."""
    rng = _rng(name)
    f = np.float32
    inits = [_init("last", np.array([-1], np.int64)), _init("both", np.array([0, 1], np.int64)),
             _init("big", np.array([60.0], f))]
    n = helper.make_node
    nodes = [n("Abs", ["x"], ["ax"]), n("Mul", ["x", "big"], ["xb"])]
    terms = []
    for op, src in (("ReduceMin", "x"), ("ReduceProd", "x"), ("ReduceL1", "x"), ("ReduceL2", "x"),
                    ("ReduceSumSquare", "x"), ("ReduceLogSum", "ax"), ("ReduceLogSumExp", "xb")):
        out = op.lower()
        nodes.append(n(op, [src, "last"], [out + "_kept"], keepdims=1))                 # [T, 1]
        nodes.append(n(op, [src, "last"], [out + "_flat"], keepdims=0))                 # [T]
        nodes.append(n("Unsqueeze", [out + "_flat", "last"], [out + "_col"]))
        nodes.append(n(op, [src, "both"], [out + "_all"], keepdims=0))                  # []
        nodes.append(n("Sub", [out + "_kept", out + "_col"], [out + "_zero"]))
        nodes.append(n("Add", [out + "_kept", out + "_zero"], [out + "_a"]))
        nodes.append(n("Add", [out + "_a", out + "_all"], [out + "_term"]))
        terms.append(out + "_term")
    acc = "x"
    for i, t in enumerate(terms):
        nodes.append(n("Add", [acc, t], [f"acc{i}"]))
        acc = f"acc{i}"
    nodes.append(n("Identity", [acc], ["y"]))
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [tokens, hidden])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [tokens, hidden])], inits)
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION)
    # Prod of 48 normal elements underflows: values near 1 keep it finite.
    x = (1 + 0.3 * rng.standard_normal((tokens, hidden))).astype(f)
    x[0, :] *= 4  # one row with large elements: 60 * 4 * 1.x > 88
    return model, {"x": x}


# Models of plain ONNX ops (one builder each, called with the model's name).
OP_MODELS = {"transformer_2layer": transformer_model, "transformer_ops": ops_model, "scatter_ops": scatter_model,
             "gather_nd_trilu": gather_nd_trilu_model, "predicates_clip": predicates_clip_model,
             "expand_runtime_shape": expand_runtime_model, "sort_runtime_length": sort_runtime_length_model,
             "runtime_broadcast": runtime_broadcast_model, "matmul_runtime_k": matmul_runtime_k_model,
             "runtime_broadcast_static": lambda name: runtime_broadcast_model(name, tokens=6),
             "sorted_split": sorted_split_model, "conv_ops": conv_model, "activations_norms": activations_model,
             "moe_dynamic_shapes": dynamic_shapes_model, "reductions": reductions_model}


def build(name, out_dir):
    """Writes model `name` to out_dir and returns (path, feeds); a model
    ORT cannot run also gets `<name>.reference.onnx`, an equivalent one."""
    if name in OLDER_VERSIONS:
        from onnx import version_converter
        source, opset, ir = OLDER_VERSIONS[name]
        path, feeds = build(source, out_dir)
        model = onnx.load(path)
        if opset is not None:
            model = version_converter.convert_version(model, opset)
        model.ir_version = ir
        path = os.path.join(out_dir, name + ".onnx")
        onnx.save_model(model, path)
        return path, feeds
    if name in MOE_CASES:
        model, feeds = moe_model(name, **MOE_CASES[name])
        if MOE_CASES[name].get("fusion") == 2:
            onnx.save_model(interleaved_twin(model), os.path.join(out_dir, name + ".reference.onnx"))
        if MOE_CASES[name].get("fc3"):
            onnx.save_model(fc3_twin(model), os.path.join(out_dir, name + ".reference.onnx"))
    elif name in QMOE_CASES:
        model, feeds = qmoe_model(name, **QMOE_CASES[name])
    elif name in OP_MODELS:
        model, feeds = OP_MODELS[name](name)
    elif name in DECOMPOSED_CASES:
        model, feeds = decomposed_model(name, **DECOMPOSED_CASES[name])
    elif name in PER_EXPERT_CASES:
        model, feeds = per_expert_model(name, **PER_EXPERT_CASES[name])
    elif name == "per_expert_partial_hit_loop":
        model, feeds = per_expert_model(name, **PARTIAL_HIT_LOOP)
    elif name == "external_data":
        model, feeds = moe_model(name, activation="swiglu", fusion=1, k=2, hidden=32, ffn=24, experts=8)
        path = os.path.join(out_dir, name + ".onnx")
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=name + ".weights", size_threshold=0)
        return path, feeds
    else:
        raise KeyError(name)
    path = os.path.join(out_dir, name + ".onnx")
    onnx.save_model(model, path)
    return path, feeds


ALL = list(MOE_CASES) + list(QMOE_CASES) + list(DECOMPOSED_CASES) + list(PER_EXPERT_CASES) + ["moe_dynamic_shapes", "transformer_2layer", "transformer_ops",
                                                   "activations_norms", "scatter_ops", "gather_nd_trilu", "predicates_clip", "expand_runtime_shape", "runtime_broadcast", "runtime_broadcast_static", "matmul_runtime_k", "sort_runtime_length", "sorted_split", "conv_ops", "reductions",
                                                   "external_data"] + list(OLDER_VERSIONS)


def bad_model(name, out_dir):
    """Models that must be refused with a clear error; returns the path."""
    path = os.path.join(out_dir, name + ".onnx")
    if name == "truncated":
        good, _ = build("moe_relu_k2", out_dir)
        data = open(good, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
        return path
    if name == "not_onnx":
        open(path, "w").write("this is a text file, not a protobuf\n")
        return path
    if name == "missing_external_data":
        model, _ = moe_model(name, activation="relu")
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=name + ".weights", size_threshold=0)
        os.remove(os.path.join(out_dir, name + ".weights"))
        return path
    f = TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", f, ["tokens", 8])
    relu = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], name, [x],
                             [helper.make_tensor_value_info("y", f, ["tokens", 8])])
    if name in ("no_default_opset", "opset_10000"):
        opsets = [helper.make_opsetid("com.microsoft", 1)] + (
            [helper.make_opsetid("", 10000)] if name == "opset_10000" else [])
        onnx.save_model(helper.make_model(relu, opset_imports=opsets, ir_version=IR_VERSION), path)
        return path
    if name == "ir_version_99":
        onnx.save_model(helper.make_model(relu, opset_imports=OPSET, ir_version=99), path)
        return path
    if name in ("produced_twice", "negative_input_dim", "bad_external_offset", "external_device", "huge_dims"):
        graph = relu
        if name == "produced_twice":
            graph.node.append(helper.make_node("Neg", ["x"], ["y"], name="neg"))
        elif name == "negative_input_dim":
            graph.input[0].type.tensor_type.shape.dim[1].dim_value = -5
        else:
            w = _init("w", np.ones((8, 3), np.float32))
            if name in ("bad_external_offset", "external_device"):
                w.data_location = TensorProto.EXTERNAL
                w.ClearField("raw_data")
                offset = "12abc" if name == "bad_external_offset" else "0"
                for key, value in (("location", name + ".weights"), ("offset", offset)):
                    entry = w.external_data.add()
                    entry.key, entry.value = key, value
                weights = os.path.join(out_dir, name + ".weights")
                if os.path.lexists(weights):
                    os.remove(weights)
                if name == "bad_external_offset":
                    open(weights, "wb").write(b"\0" * 96)
                else:  # a device that never ends: reading it would not either
                    os.symlink("/dev/zero", weights)
            else:
                # dims whose element count overflows int64, and no data.
                del w.dims[:]
                w.dims.extend([1 << 40, 1 << 40])
                w.ClearField("raw_data")
            graph.initializer.append(w)
            graph.node.append(helper.make_node("MatMul", ["y", "w"], ["z"], name="matmul"))
            graph.output.append(helper.make_tensor_value_info("z", f, ["tokens", 3]))
        onnx.save_model(helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION), path)
        return path
    if name == "unsupported_op":
        nodes = [helper.make_node("Hardmax", ["x"], ["y"], name="the_hardmax")]
        graph = helper.make_graph(nodes, name, [x], [helper.make_tensor_value_info("y", f, ["tokens", 8])])
    elif name == "if_runtime_condition":
        # An If on the data (x's first element positive): only the run knows
        # the branch; If itself is not supported.
        branch = lambda b, op: helper.make_graph([helper.make_node(op, ["x"], [b + "_y"])], b, [],
                                                 [helper.make_tensor_value_info(b + "_y", f, ["tokens", 8])])
        nodes = [helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0),
                 helper.make_node("Greater", ["top", "zero"], ["positive"]),
                 helper.make_node("If", ["positive"], ["y"], name="the_if", then_branch=branch("then", "Relu"),
                                  else_branch=branch("else", "Neg"))]
        graph = helper.make_graph(nodes, name, [x], [helper.make_tensor_value_info("y", f, ["tokens", 8])],
                                  [_init("zero", np.array(0, np.float32))])
    elif name == "shape_mismatch":
        w = _init("w", np.ones((6, 3), np.float32))
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="bad_matmul")]
        graph = helper.make_graph(nodes, name, [x], [helper.make_tensor_value_info("y", f, ["tokens", 3])], [w])
    elif name == "nan_weight":
        w = np.ones((8, 3), np.float32)
        w[2, 1] = np.nan
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")]
        graph = helper.make_graph(nodes, name, [x], [helper.make_tensor_value_info("y", f, ["tokens", 3])],
                                  [_init("w", w)])
    elif name == "gathernd_batch_dims":
        idx = _init("idx", np.zeros((2, 1), np.int64))
        nodes = [helper.make_node("GatherND", ["x", "idx"], ["y"], batch_dims=1, name="the_gathernd")]
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", f, [2, 8])],
                                  [helper.make_tensor_value_info("y", f, [2])], [idx])
    elif name in ("scatternd_updates_shape", "scatternd_updates_rows"):
        # Updates for 3 rows where the indices name 2 (static), or rows only
        # the run knows (the run checks them).
        rows = 3 if name == "scatternd_updates_shape" else "n"
        nodes = [helper.make_node("ScatterND", ["x", "idx", "u"], ["y"], name="the_scatter")]
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", f, [4, 8]),
                                                helper.make_tensor_value_info("u", f, [rows, 8])],
                                  [helper.make_tensor_value_info("y", f, [4, 8])],
                                  [_init("idx", np.array([[1], [2]], np.int64))])
    elif name == "scatterelements_updates_rows":
        nodes = [helper.make_node("ScatterElements", ["x", "idx", "u"], ["y"], axis=0, name="the_scatter")]
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", f, [4, 8]),
                                                helper.make_tensor_value_info("u", f, ["n", 8])],
                                  [helper.make_tensor_value_info("y", f, [4, 8])],
                                  [_init("idx", np.zeros((2, 8), np.int64))])
    elif name == "gatherelements_wide_indices":
        # Indices wider than the data off the axis would read past its rows.
        nodes = [helper.make_node("GatherElements", ["x", "idx"], ["y"], axis=0, name="the_gather")]
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", f, [4, 8])],
                                  [helper.make_tensor_value_info("y", f, [2, 9])],
                                  [_init("idx", np.zeros((2, 9), np.int64))])
    elif name in ("gather_index_out_of_range", "scatternd_index_out_of_range"):
        if name == "gather_index_out_of_range":
            nodes = [helper.make_node("Gather", ["x", "idx"], ["y"], axis=0, name="the_gather")]
            idx, y_shape, inputs = np.array([1, -5], np.int64), [2, 8], [helper.make_tensor_value_info("x", f, [4, 8])]
        else:
            nodes = [helper.make_node("ScatterND", ["x", "idx", "u"], ["y"], name="the_scatter")]
            idx, y_shape = np.array([[0, 1], [3, 8]], np.int64), [4, 8]
            inputs = [helper.make_tensor_value_info("x", f, [4, 8]), helper.make_tensor_value_info("u", f, [2])]
        graph = helper.make_graph(nodes, name, inputs, [helper.make_tensor_value_info("y", f, y_shape)],
                                  [_init("idx", idx)])
    elif name == "unsqueeze_repeated_axis":
        axes = _init("axes", np.array([0, 0], np.int64))
        nodes = [helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="the_unsqueeze")]
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", f, [2, 8])],
                                  [helper.make_tensor_value_info("y", f, [1, 1, 2, 8])], [axes])
    elif name == "clip_bounds_not_scalar":
        # A per-column bound: ONNX's Clip takes scalars only.
        nodes = [helper.make_node("Clip", ["x", "lo"], ["y"], name="the_clip")]
        graph = helper.make_graph(nodes, name, [x], [helper.make_tensor_value_info("y", f, ["tokens", 8])],
                                  [_init("lo", np.zeros(8, np.float32))])
    elif name == "cumsum_dynamic_axis":
        axis = helper.make_tensor_value_info("axis", TensorProto.INT64, [])
        nodes = [helper.make_node("CumSum", ["x", "axis"], ["y"], name="the_cumsum")]
        graph = helper.make_graph(nodes, name, [x, axis], [helper.make_tensor_value_info("y", f, ["tokens", 8])])
    elif name == "reduce_l2_int":
        # The norms of integers: ONNX allows them, the import takes floats only.
        xi = helper.make_tensor_value_info("x", TensorProto.INT64, ["tokens", 8])
        nodes = [helper.make_node("ReduceL2", ["x"], ["y"], keepdims=0, name="the_norm")]
        graph = helper.make_graph(nodes, name, [xi], [helper.make_tensor_value_info("y", TensorProto.INT64, [])])
    elif name == "and_not_bool":
        nodes = [helper.make_node("And", ["x", "x"], ["y"], name="the_and")]
        graph = helper.make_graph(nodes, name, [x], [helper.make_tensor_value_info("y", TensorProto.BOOL, ["tokens", 8])])
    elif name == "argmax_bool":
        nodes = [helper.make_node("Cast", ["x"], ["b"], to=TensorProto.BOOL),
                 helper.make_node("ArgMax", ["b"], ["y"], axis=1, name="the_argmax")]
        graph = helper.make_graph(nodes, name, [x], [helper.make_tensor_value_info("y", TensorProto.INT64, ["tokens", 1])])
    elif name == "argmin_axis_out_of_range":
        nodes = [helper.make_node("ArgMin", ["x"], ["y"], axis=2, name="the_argmin")]
        graph = helper.make_graph(nodes, name, [x], [helper.make_tensor_value_info("y", TensorProto.INT64, ["tokens", 1])])
    elif name == "topk_largest_minus_one":
        # A yes/no attribute outside {0, 1}: onnxruntime reads -1 as smallest.
        k = helper.make_tensor("k", TensorProto.INT64, [1], [2])
        nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], largest=-1, name="the_topk")]
        graph = helper.make_graph(nodes, name, [x], [helper.make_tensor_value_info("v", f, ["tokens", 2])], [k])
    elif name == "topk_data_dependent_k":
        # K read from an input's values: unknown until run time.
        k = helper.make_tensor_value_info("k", TensorProto.INT64, [1])
        nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], name="the_topk")]
        graph = helper.make_graph(nodes, name, [x, k], [helper.make_tensor_value_info("v", f, ["tokens", "k"])])
    elif name == "conv_bad_group":
        # 8 input channels in groups of 3 (W [4, 3, 3]) do not split evenly.
        image = helper.make_tensor_value_info("image", f, [1, 8, 5])
        nodes = [helper.make_node("Conv", ["image", "w"], ["y"], name="the_conv", group=2)]
        graph = helper.make_graph(nodes, name, [image], [helper.make_tensor_value_info("y", f, None)],
                                  [_init("w", np.ones((4, 3, 3), np.float32))])
    elif name == "split_runtime_sizes_count":
        # Sizes read from the data, but two of them for three outputs.
        sizes = helper.make_tensor_value_info("sizes", TensorProto.INT64, [2])
        nodes = [helper.make_node("Split", ["x", "sizes"], ["a", "b", "c"], name="the_split", axis=1)]
        graph = helper.make_graph(nodes, name, [x, sizes], [helper.make_tensor_value_info("a", f, ["tokens", "n"])])
    elif name == "slice_data_dependent_end":
        # Ends read from a tensor's values (not its sizes).
        ends = helper.make_tensor_value_info("ends", TensorProto.INT64, [1])
        nodes = [helper.make_node("Slice", ["x", "zero", "ends"], ["y"], name="the_slice")]
        graph = helper.make_graph(nodes, name, [x, ends], [helper.make_tensor_value_info("y", f, ["rows", 8])],
                                  [_init("zero", np.zeros(1, np.int64))])
    elif name == "slice_negative_step_dynamic":
        # x[::-1] along the dynamic token axis: its size is only known at run time.
        nodes = [helper.make_node("Slice", ["x", "start", "end", "axis", "step"], ["y"], name="the_slice")]
        graph = helper.make_graph(nodes, name, [x], [helper.make_tensor_value_info("y", f, ["tokens", 8])],
                                  [_init("start", np.array([-1], np.int64)),
                                   _init("end", np.array([np.iinfo(np.int64).min], np.int64)),
                                   _init("axis", np.array([0], np.int64)), _init("step", np.array([-1], np.int64))])
    elif name in ("qmoe_zero_points", "qmoe_fp4", "qmoe_mixed_bits"):
        model, _ = qmoe_model(name, bits=4, activation="relu")
        graph = model.graph
        node = graph.node[-1]
        if name == "qmoe_zero_points":
            # 4-bit zero points of fc1 [4, 16 rows] pack into [4, 8]: [4, 5] is wrong.
            graph.initializer.append(_init("fc1_zp", np.full((4, 5), 0x88, np.uint8)))
            node.input.extend(["", "", "", "", "fc1_zp"])
        elif name == "qmoe_mixed_bits":
            # fc1 and fc3 (concatenated) of different widths.
            graph.initializer.extend([_init("fc3", np.zeros((4, 16, 16), np.uint8)),
                                      _init("fc3_scales", np.ones((4, 16), np.float32))])
            node.input.extend([""] * (8 - len(node.input)) + ["fc3", "fc3_scales"])
            node.attribute.append(helper.make_attribute("fc3_expert_weight_bits", 8))
        else:
            node.attribute.append(helper.make_attribute("quant_type", "fp4"))
    elif name in ("moe_k_out_of_range", "moe_bias_shape", "moe_bad_activation", "moe_limit_not_swiglu",
                  "moe_bad_limit", "moe_sparse_mixer_k1", "moe_fc3_with_relu"):
        attrs = dict(k=9 if name == "moe_k_out_of_range" else 2,
                     activation_type="tanh" if name == "moe_bad_activation" else "relu")
        if name == "moe_limit_not_swiglu":
            attrs["swiglu_limit"] = 7.0
        if name == "moe_bad_limit":
            attrs.update(activation_type="swiglu", swiglu_fusion=1, swiglu_limit=-1.0)
        if name == "moe_sparse_mixer_k1":
            attrs.update(k=1, use_sparse_mixer=1)
        model, _ = moe_model(name, hidden=8, ffn=4, experts=4)
        graph = model.graph
        node = graph.node[-1]
        del node.attribute[:]
        node.attribute.extend([helper.make_attribute(k, v) for k, v in attrs.items()])
        if name == "moe_bias_shape":
            graph.initializer.append(_init("fc1_bias", np.zeros((4, 3), np.float32)))
            node.input[3] = "fc1_bias"
        if name == "moe_fc3_with_relu":
            graph.initializer.append(_init("fc3", np.zeros((4, 4, 8), np.float32)))
            node.input.append("fc3")
    else:
        raise KeyError(name)
    onnx.save_model(helper.make_model(graph, opset_imports=OPSET, ir_version=IR_VERSION), path)
    return path


BAD = ["truncated", "not_onnx", "missing_external_data", "unsupported_op", "if_runtime_condition", "shape_mismatch",
       "nan_weight",
       "argmax_bool", "argmin_axis_out_of_range", "topk_data_dependent_k", "topk_largest_minus_one",
       "split_runtime_sizes_count", "conv_bad_group",
       "moe_k_out_of_range", "moe_bias_shape", "moe_bad_activation", "moe_limit_not_swiglu", "moe_bad_limit",
       "moe_fc3_with_relu",
       "moe_sparse_mixer_k1",
       "qmoe_zero_points", "qmoe_fp4", "qmoe_mixed_bits", "gathernd_batch_dims", "unsqueeze_repeated_axis",
       "clip_bounds_not_scalar",
       "cumsum_dynamic_axis", "and_not_bool", "reduce_l2_int", "slice_data_dependent_end", "slice_negative_step_dynamic",
       "no_default_opset", "opset_10000",
       "ir_version_99", "produced_twice", "negative_input_dim", "bad_external_offset", "external_device", "huge_dims",
       "scatternd_updates_shape", "scatternd_updates_rows", "scatterelements_updates_rows",
       "gatherelements_wide_indices", "gather_index_out_of_range", "scatternd_index_out_of_range"]

if __name__ == "__main__":
    # python -m moe_reference.onnx_models OUT_DIR [NAME...]: writes the named
    # models (good or bad; all when none are named) into OUT_DIR.
    import sys

    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for model_name in sys.argv[2:] or ALL + BAD:
        bad_model(model_name, out) if model_name in BAD else build(model_name, out)
