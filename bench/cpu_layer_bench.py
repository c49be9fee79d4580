#!/usr/bin/env python3
"""CPU time of one compiled MoE layer against its peers, measured in the same run.

  ours JIT  moe-run: moe.layer -> moe-cpu-pipeline -> JIT (median of --repeat runs)
  ours AOT  moe-compile --target=cpu artifact run by moe-exec (median of --repeat runs)
  numpy     the same layer in vectorized numpy: per-expert gather + BLAS matmul
  ort graph onnxruntime on the layer as an ONNX graph in the form exporters emit
            (router MatMul -> TopK -> Softmax, then per expert Equal/NonZero/Gather ->
            MatMul -> SiLU*up -> MatMul -> ScatterND(add))
  ort MoE   onnxruntime's own fused kernel, com.microsoft.MoE (interleaved SwiGLU,
            alpha 1, beta 0: the same function)
  torch     eager PyTorch as MoE code writes it (transformers 4's Mixtral): top-k,
            then per expert its tokens' rows, SwiGLU FFN, index_add_ (when
            torch is installed; its intra-op threads on every core)

All run f32 Mixtral-style layers (softmax over the top-2 logits, SwiGLU) on the
same random inputs, and the outputs are checked against each other before
anything is timed. The same run measures the machine's limits: the f32 GEMM
rate (numpy BLAS, 2048^3, all cores) and the memory bandwidth (a 1 GiB copy
on every core). Prefill sizes report GFLOP/s and the fraction of the GEMM
rate; decode sizes (1-16 tokens) report GB/s over the bytes of the experts
the tokens were routed to (each read once) and the fraction of bandwidth.
Usage:
    python3 bench/cpu_layer_bench.py [--repeat 10] [--sizes small,medium,...] [--plot docs/perf-cpu.png]
(a size NAME-bf16, e.g. decode-4-bf16, runs that layer in bf16; deepseek and
deepseek-decode-4 are DeepSeek-V3-like layers; decode-N-int4 runs the decode
layer with 4-bit weight-only experts against onnxruntime's QMoE kernel)
Prints a markdown table (docs/perf-cpu.md records one).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
from moe_reference import layer as moe_layer  # noqa: E402
from moe_reference import numerics  # noqa: E402

SIZES = {
    # name: (tokens, hidden, ffn, experts, k)
    "small": (16, 512, 1024, 8, 2),
    "medium": (128, 1024, 2048, 8, 2),
    "large": (512, 2048, 4096, 8, 2),
    # OLMoE-1B-7B's expert shapes (64 experts, top-8, hidden 2048, FFN 1024).
    "olmoe": (256, 2048, 1024, 64, 8),
    # Mixtral-8x7B decode at half width (hidden 2048, FFN 7168: 1.4 GB of
    # f32 experts, so that every peer's copy fits in memory at once).
    "decode-1": (1, 2048, 7168, 8, 2),
    "decode-4": (4, 2048, 7168, 8, 2),
    "decode-16": (16, 2048, 7168, 8, 2),
}
# DeepSeek-V3's routing and expert count (256 experts, top-8 within the best
# 4 of 8 groups, sigmoid scores with a selection bias, weights renormalised
# and scaled by 2.5, one shared expert) at reduced width (hidden 1024, expert
# FFN 256 instead of 7168 / 2048: 0.8 GB of f32 experts). onnxruntime has no
# such routing (its MoE op is softmax top-k; the exported-graph peer is
# Mixtral's), so its peers are numpy and PyTorch.
DEEPSEEK = {
    # name: (tokens, hidden, ffn, experts, k, groups, topk_groups, shared ffn, scale)
    "deepseek": (128, 1024, 256, 256, 8, 8, 4, 256, 2.5),
    "deepseek-decode-4": (4, 1024, 256, 256, 8, 8, 4, 256, 2.5),
}
# The decode layers with 4-bit weight-only experts (per-row scales, ORT's
# QMoE format: values packed two per byte, symmetric around 8). Peers:
# onnxruntime's com.microsoft.QMoE kernel on the same packed weights (in the
# "ort MoE op" column), numpy in f32 on the dequantised weights.
INT4 = {"decode-1-int4": 1, "decode-4-int4": 4, "decode-16-int4": 16}
DECODE_TOKENS = 16  # at most this many tokens: bandwidth-bound, reported in GB/s
CFG = dict(experts=None, activation="swiglu", routing=dict(scoring="softmax", k=2, order="select_then_score"))


def numpy_layer(x, wr, up, down, k):
    logits = x @ wr.T
    idx = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(logits, idx, axis=1)
    g = np.exp(top - top.max(axis=1, keepdims=True))
    g /= g.sum(axis=1, keepdims=True)
    y = np.zeros_like(x)
    f = down.shape[2]
    for e in range(up.shape[0]):
        tok, slot = np.nonzero(idx == e)
        if tok.size == 0:
            continue
        h = x[tok] @ up[e].T
        a = h[:, :f] / (1 + np.exp(-h[:, :f])) * h[:, f:]
        np.add.at(y, tok, (a @ down[e].T) * g[tok, slot][:, None])
    return y


def deepseek_routing_numpy(x, wr, bias, k, groups, topk_groups, scale):
    """Sigmoid scores, the biased scores' best groups (sum of each group's
    top two), top-k within them (ties to the lower index), weights from the
    unbiased scores renormalised and scaled: (weights, expert ids)."""
    s = 1 / (1 + np.exp(-(x @ wr.T)))
    b = s + bias
    t, e = b.shape
    grouped = np.sort(b.reshape(t, groups, e // groups), axis=-1)[..., -2:].sum(-1)
    best = np.argsort(-grouped, axis=1, kind="stable")[:, :topk_groups]
    keep = np.zeros((t, groups), bool)
    np.put_along_axis(keep, best, True, axis=1)
    masked = np.where(np.repeat(keep, e // groups, axis=1), b, -np.inf)
    idx = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    w = np.take_along_axis(s, idx, axis=1)
    return w / w.sum(axis=1, keepdims=True) * scale, idx


def numpy_deepseek_layer(x, wr, bias, up, down, shared_up, shared_down, k, groups, topk_groups, scale):
    g, idx = deepseek_routing_numpy(x, wr, bias, k, groups, topk_groups, scale)
    y = np.zeros_like(x)
    f = down.shape[2]
    for e in np.unique(idx):
        tok, slot = np.nonzero(idx == e)
        h = x[tok] @ up[e].T
        a = h[:, :f] / (1 + np.exp(-h[:, :f])) * h[:, f:]
        np.add.at(y, tok, (a @ down[e].T) * g[tok, slot][:, None])
    fs = shared_down.shape[1]
    h = x @ shared_up.T
    return y + (h[:, :fs] / (1 + np.exp(-h[:, :fs])) * h[:, fs:]) @ shared_down.T


def torch_deepseek_layer(x, wr, bias, up, down, shared_up, shared_down, k, groups, topk_groups, scale):
    """transformers' DeepseekV3MoE as eager PyTorch: grouped routing, a loop
    over the experts the tokens hit, index_add_, the shared expert."""
    import torch
    with torch.no_grad():
        s = torch.sigmoid(x @ wr.T)
        b = s + bias
        t, e = b.shape
        grouped = b.view(t, groups, e // groups).topk(2, dim=-1)[0].sum(-1)
        best = grouped.topk(topk_groups, dim=-1)[1]
        keep = torch.zeros_like(grouped).scatter_(1, best, 1).repeat_interleave(e // groups, dim=1)
        idx = b.masked_fill(keep == 0, float("-inf")).topk(k, dim=-1)[1]
        g = s.gather(1, idx)
        g = g / g.sum(-1, keepdim=True) * scale
        y = torch.zeros_like(x)
        f = down.shape[2]
        for ex in torch.unique(idx).tolist():
            tok, slot = torch.where(idx == ex)
            h = x[tok] @ up[ex].T
            a = torch.nn.functional.silu(h[:, :f]) * h[:, f:]
            y.index_add_(0, tok, (a @ down[ex].T) * g[tok, slot, None])
        fs = shared_down.shape[1]
        h = x @ shared_up.T
        return y + (torch.nn.functional.silu(h[:, :fs]) * h[:, fs:]) @ shared_down.T


def torch_layer(x, wr, up, down, k):
    """The eager PyTorch loop over experts, on tensors sharing numpy's memory."""
    import torch
    with torch.no_grad():
        logits = x @ wr.T
        top, idx = torch.topk(logits, k, dim=1)
        g = torch.softmax(top, dim=1)
        y = torch.zeros_like(x)
        f = down.shape[2]
        for e in range(up.shape[0]):
            tok, slot = torch.where(idx == e)
            if tok.numel() == 0:
                continue
            h = x[tok] @ up[e].T
            a = torch.nn.functional.silu(h[:, :f]) * h[:, f:]
            y.index_add_(0, tok, (a @ down[e].T) * g[tok, slot, None])
        return y


def onnx_layer(hidden, ffn, experts, k, wr, up, down):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], [numpy_helper.from_array(wr.T.copy(), "wr_t")]
    c = lambda name, arr: inits.append(numpy_helper.from_array(np.asarray(arr), name)) or name  # noqa: E731
    c("k", np.array([k], dtype=np.int64))
    c("zero_axis", np.array([0], dtype=np.int64))
    c("one_axis", np.array([1], dtype=np.int64))
    c("split", np.array([ffn, ffn], dtype=np.int64))
    nodes += [
        helper.make_node("MatMul", ["x", "wr_t"], ["logits"]),
        helper.make_node("TopK", ["logits", "k"], ["top", "idx"], axis=-1),
        helper.make_node("Softmax", ["top"], ["gates"], axis=-1),
        helper.make_node("Shape", ["x"], ["x_shape"]),
        helper.make_node("ConstantOfShape", ["x_shape"], ["y0"],
                         value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])),
    ]
    y = "y0"
    for e in range(experts):
        p = f"e{e}_"
        c(p + "id", np.array(e, dtype=np.int64))
        c(p + "up_t", up[e].T.copy())
        c(p + "down_t", down[e].T.copy())
        nodes += [
            helper.make_node("Equal", ["idx", p + "id"], [p + "mask"]),
            helper.make_node("NonZero", [p + "mask"], [p + "pos"]),
            helper.make_node("Transpose", [p + "pos"], [p + "pos_t"], perm=[1, 0]),
            helper.make_node("Gather", [p + "pos", "zero_axis"], [p + "tok2"], axis=0),
            helper.make_node("Squeeze", [p + "tok2", "zero_axis"], [p + "tok"]),
            helper.make_node("GatherND", ["gates", p + "pos_t"], [p + "g"]),
            helper.make_node("Gather", ["x", p + "tok"], [p + "xe"], axis=0),
            helper.make_node("MatMul", [p + "xe", p + "up_t"], [p + "h"]),
            helper.make_node("Split", [p + "h", "split"], [p + "gate", p + "upv"], axis=1),
            helper.make_node("Sigmoid", [p + "gate"], [p + "sig"]),
            helper.make_node("Mul", [p + "gate", p + "sig"], [p + "silu"]),
            helper.make_node("Mul", [p + "silu", p + "upv"], [p + "a"]),
            helper.make_node("MatMul", [p + "a", p + "down_t"], [p + "o"]),
            helper.make_node("Unsqueeze", [p + "g", "one_axis"], [p + "g2"]),
            helper.make_node("Mul", [p + "o", p + "g2"], [p + "og"]),
            helper.make_node("Unsqueeze", [p + "tok", "one_axis"], [p + "tok_idx"]),
            helper.make_node("ScatterND", [y, p + "tok_idx", p + "og"], [p + "y"], reduction="add"),
        ]
        y = p + "y"
    nodes.append(helper.make_node("Identity", [y], ["y"]))
    graph = helper.make_graph(
        nodes, "moe_layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", hidden])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model


def ort_moe_op_layer(hidden, ffn, experts, k, wr, up, down):
    """The layer as onnxruntime's com.microsoft.MoE node: its CPU kernel takes
    SwiGLU with gate and up rows interleaved (swiglu_fusion = 1)."""
    from onnx import numpy_helper

    fc1 = np.empty_like(up)
    fc1[:, 0::2], fc1[:, 1::2] = up[:, :ffn], up[:, ffn:]
    inits = [numpy_helper.from_array(wr.T.copy(), "wr_t"), numpy_helper.from_array(fc1, "fc1"),
             numpy_helper.from_array(down, "fc2")]
    return contrib_moe_model("MoE", ["fc1", "", "fc2", ""], hidden, k, inits)


def contrib_moe_model(op, weights, hidden, k, inits, **attrs):
    """x -> router MatMul (wr_t) -> onnxruntime's com.microsoft `op` (MoE or
    QMoE) reading `weights` after x and the logits: interleaved SwiGLU
    (swiglu_fusion = 1) with alpha 1, beta 0 and no limit, the routing
    renormalised."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("MatMul", ["x", "wr_t"], ["logits"]),
             helper.make_node(op, ["x", "logits", *weights], ["y"], domain="com.microsoft", k=k,
                              activation_type="swiglu", swiglu_fusion=1, activation_alpha=1.0,
                              activation_beta=0.0, swiglu_limit=1e30, normalize_routing_weights=1, **attrs)]
    graph = helper.make_graph(
        nodes, op.lower() + "_op", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", hidden])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", hidden])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)],
                             ir_version=10)


def ort_qmoe_layer(hidden, ffn, experts, k, wr, fc1, s1, fc2, s2):
    """The layer as onnxruntime's com.microsoft.QMoE node: 4-bit packed
    weights [E, rows, in / 2] with per-row scales, SwiGLU rows interleaved
    (swiglu_fusion = 1), alpha 1, beta 0."""
    from onnx import numpy_helper

    inits = [numpy_helper.from_array(wr.T.copy(), "wr_t"), numpy_helper.from_array(fc1, "fc1"),
             numpy_helper.from_array(s1, "fc1_scales"), numpy_helper.from_array(fc2, "fc2"),
             numpy_helper.from_array(s2, "fc2_scales")]
    return contrib_moe_model("QMoE", ["fc1", "fc1_scales", "", "fc2", "fc2_scales"], hidden, k, inits,
                             expert_weight_bits=4)


def ort_session(model, tmp, name):
    """An onnxruntime session on all cores; models over protobuf's 2 GB limit
    go through a file with external data."""
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count()
    path = os.path.join(tmp, name + ".onnx")
    onnx.save_model(model, path, save_as_external_data=True, location=name + ".data")
    del model
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def median_ms(fn, repeat, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def time_ours(text, arrays, tmp, repeat, tools, widened_too=False):
    """ours JIT (moe-run) and AOT (moe-compile + moe-exec) on the layer `text`
    with inputs `arrays` in the op's order: (ms, outputs, compile ms).
    `widened_too` also times the JIT with bf16 widened to f32 instead of
    AVX512_BF16 dot products ("ours JIT widened")."""
    src = os.path.join(tmp, "layer.mlir")
    with open(src, "w") as f:
        f.write(text)
    inputs = []
    for i, a in enumerate(arrays):
        np.save(os.path.join(tmp, f"arg{i}.npy"), a)
        inputs += ["--input", os.path.join(tmp, f"arg{i}.npy")]
    ms, outputs = {}, {}
    common = ["--output-dir", tmp, "--repeat", str(repeat), "--warmup", "2"]
    out = subprocess.run([tools["moe-run"], src, *common, *inputs], capture_output=True, text=True,
                         check=True).stdout
    ms["ours JIT"] = float(re.search(r"\[moe-run\] run ([0-9.]+) ms", out).group(1))
    compile_ms = float(re.search(r"\[moe-run\] compile ([0-9.]+) ms", out).group(1))
    outputs["ours JIT"] = np.load(os.path.join(tmp, "result_0.npy"))
    if widened_too:
        out = subprocess.run([tools["moe-run"], src, "--bf16-dot-products=false", *common, *inputs],
                             capture_output=True, text=True, check=True).stdout
        ms["ours JIT widened"] = float(re.search(r"\[moe-run\] run ([0-9.]+) ms", out).group(1))
        outputs["ours JIT widened"] = np.load(os.path.join(tmp, "result_0.npy"))
    lib = os.path.join(tmp, "art", "liblayer.so")
    subprocess.run([tools["moe-compile"], src, "--target=cpu", "-o", lib], capture_output=True, check=True)
    out = subprocess.run([tools["moe-exec"], lib, *inputs, "--output-dir", tmp, "--repeat", str(repeat)],
                         capture_output=True, text=True, check=True).stdout
    ms["ours AOT"] = float(re.search(r"median ([0-9.]+) ms", out).group(1))
    outputs["ours AOT"] = np.load(os.path.join(tmp, "output_0.npy"))
    return ms, outputs, compile_ms


def useful_flops(tokens, hidden, ffn, experts, k):
    """The router and each token's k experts (2 matmuls, gate/up 2F wide)."""
    return 2 * tokens * hidden * experts + tokens * k * (2 * hidden * 2 * ffn + 2 * ffn * hidden)


def routed_experts(x, wr, k):
    """The experts the tokens' top-k routes to (each read once by a decode step)."""
    return np.unique(np.argsort(-(x @ wr.T), axis=1, kind="stable")[:, :k])


def check_agree(name, outputs, tolerance=1e-4):
    reference = outputs["numpy"]
    scale = np.abs(reference).max()
    for what, y in outputs.items():
        err = np.abs(y - reference).max() / scale
        if err > tolerance:
            sys.exit(f"{name}: {what} differs from numpy by {err:.2e}; not timing a wrong answer")


def run_deepseek(name, repeat, tools):
    tokens, hidden, ffn, experts, k, groups, topk_groups, shared, scale = DEEPSEEK[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((tokens, hidden)).astype(np.float32)
    wr = (rng.standard_normal((experts, hidden)) / np.sqrt(hidden)).astype(np.float32)
    bias = (0.1 * rng.standard_normal(experts)).astype(np.float32)
    up = (rng.standard_normal((experts, 2 * ffn, hidden)) / np.sqrt(hidden)).astype(np.float32)
    down = (rng.standard_normal((experts, hidden, ffn)) / np.sqrt(ffn)).astype(np.float32)
    s_up = (rng.standard_normal((2 * shared, hidden)) / np.sqrt(hidden)).astype(np.float32)
    s_down = (rng.standard_normal((hidden, shared)) / np.sqrt(shared)).astype(np.float32)
    cfg = dict(experts=[("ffn", experts)], activation="swiglu", bias=True, shared=shared,
               routing=dict(scoring="sigmoid", k=k, normalize="all", scale=scale, num_groups=groups,
                            topk_groups=topk_groups))
    args = (x, wr, bias, up, down, s_up, s_down)
    with tempfile.TemporaryDirectory() as tmp:
        ms, outputs, compile_ms = time_ours(moe_layer.mlir_text(cfg, tokens, hidden, ffn, "f32"), args, tmp,
                                            repeat, tools)
    extra = (k, groups, topk_groups, scale)
    outputs["numpy"] = numpy_deepseek_layer(*args, *extra)
    ms["numpy"] = median_ms(lambda: numpy_deepseek_layer(*args, *extra), repeat)
    if "torch" in PEERS:
        import torch
        tensors = [torch.from_numpy(a) for a in args]
        outputs["torch"] = torch_deepseek_layer(*tensors, *extra).numpy()
        ms["torch"] = median_ms(lambda: torch_deepseek_layer(*tensors, *extra), repeat)
    for peer in ("ort graph", "ort MoE op"):
        ms[peer] = float("nan")  # no such routing in onnxruntime
    check_agree(name, outputs)
    _, idx = deepseek_routing_numpy(x, wr, bias, k, groups, topk_groups, scale)
    flops = 2 * tokens * hidden * experts + tokens * k * 6 * hidden * ffn + tokens * 6 * hidden * shared
    routed = np.unique(idx)
    weight_bytes = wr.nbytes + s_up.nbytes + s_down.nbytes + len(routed) * (up[0].nbytes + down[0].nbytes)
    return dict(name=name, shape=f"T={tokens} H={hidden} F={ffn} E={experts} k={k} groups {topk_groups}/{groups} "
                f"shared {shared}", ms=ms, compile=compile_ms, gflop=flops / 1e9, gbytes=weight_bytes / 1e9,
                decode=tokens <= DECODE_TOKENS)


def run_int4(name, repeat, tools):
    """A decode layer with 4-bit experts: ours imports the same QMoE model
    onnxruntime runs, its packed weights made inputs (moe-translate
    --onnx-weights-as-inputs), and dequantises them in the kernels' loads."""
    from moe_reference import onnx_models

    tokens = INT4[name]
    _, hidden, ffn, experts, k = SIZES["decode-1"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((tokens, hidden)).astype(np.float32)
    wr = (rng.standard_normal((experts, hidden)) / np.sqrt(hidden)).astype(np.float32)
    # fc1's rows interleave gate and up (gate 2i, up 2i + 1), as QMoE reads them.
    fc1, s1 = onnx_models.quantize_rows(
        rng.standard_normal((experts, 2 * ffn, hidden), dtype=np.float32) / np.float32(np.sqrt(hidden)), 4)
    fc2, s2 = onnx_models.quantize_rows(
        rng.standard_normal((experts, hidden, ffn), dtype=np.float32) / np.float32(np.sqrt(ffn)), 4)
    dequantised = [((onnx_models.unpack_last(q, 4, n).astype(np.float32) - 8) * sc[..., None]).astype(np.float32)
                   for q, sc, n in ((fc1, s1, hidden), (fc2, s2, ffn))]
    up = np.concatenate([dequantised[0][:, 0::2], dequantised[0][:, 1::2]], axis=1)
    down = dequantised[1]
    del dequantised
    outputs, ms = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        model = ort_qmoe_layer(hidden, ffn, experts, k, wr, fc1, s1, fc2, s2)
        sess = ort_session(model, tmp, "qmoe")
        outputs["ort MoE op"] = sess.run(None, {"x": x})[0]
        ms["ort MoE op"] = median_ms(lambda: sess.run(None, {"x": x}), repeat)
        del sess
        # Ours from the same model file, every weight an input.
        src, weights = os.path.join(tmp, "qmoe.mlir"), os.path.join(tmp, "weights")
        subprocess.run([tools["moe-translate"], "--import-onnx", os.path.join(tmp, "qmoe.onnx"),
                        "--onnx-weights-as-inputs=4096", "--onnx-weights-dir", weights, "-o", src], check=True,
                       capture_output=True)
        with open(src) as f:
            text = f.read()
        names = re.findall(r'%arg\d+: [^{,)]*\{onnx\.name = "([^"]+)"', text)
        arrays = [x if n == "x" else np.load(os.path.join(weights, n + ".npy")) for n in names]
        ours_ms, ours_out, compile_ms = time_ours(text, arrays, tmp, repeat, tools)
        ms.update(ours_ms)
        outputs.update(ours_out)
    outputs["numpy"] = numpy_layer(x, wr, up, down, k)
    ms["numpy"] = median_ms(lambda: numpy_layer(x, wr, up, down, k), repeat)
    ms["ort graph"] = ms["torch"] = float("nan")
    check_agree(name, outputs)
    routed = routed_experts(x, wr, k)
    weight_bytes = wr.nbytes + len(routed) * (fc1[0].nbytes + s1[0].nbytes + fc2[0].nbytes + s2[0].nbytes)
    flops = useful_flops(tokens, hidden, ffn, experts, k)
    return dict(name=name, shape=f"T={tokens} H={hidden} F={ffn} E={experts} k={k} int4", ms=ms,
                compile=compile_ms, gflop=flops / 1e9, gbytes=weight_bytes / 1e9, decode=True)


def run_size(name, repeat, tools):
    if name in DEEPSEEK:
        return run_deepseek(name, repeat, tools)
    if name in INT4:
        return run_int4(name, repeat, tools)
    # NAME-bf16: the same layer with bf16 tokens and weights (f32 routing
    # and accumulation). Its peers: eager PyTorch in bf16, and numpy in f32
    # on the same bf16-rounded values (numpy has no bf16); onnxruntime's CPU
    # MoE kernels take no bf16.
    bf16 = name.endswith("-bf16")
    tokens, hidden, ffn, experts, k = SIZES[name.removesuffix("-bf16")]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((tokens, hidden)).astype(np.float32)
    wr = (rng.standard_normal((experts, hidden)) / np.sqrt(hidden)).astype(np.float32)
    up = (rng.standard_normal((experts, 2 * ffn, hidden)) / np.sqrt(hidden)).astype(np.float32)
    down = (rng.standard_normal((experts, hidden, ffn)) / np.sqrt(ffn)).astype(np.float32)
    if bf16:
        x, wr, up, down = (numerics.round_to(a, numerics.BF16).astype(np.float32) for a in (x, wr, up, down))
    cfg = dict(CFG, experts=[("ffn", experts)], routing=dict(CFG["routing"], k=k))
    outputs, ms = {}, {}

    with tempfile.TemporaryDirectory() as tmp:
        dtype = numerics.BF16 if bf16 else numerics.F32
        ms, outputs, compile_ms = time_ours(moe_layer.mlir_text(cfg, tokens, hidden, ffn, dtype),
                                            [numerics.to_storage(a, dtype) for a in (x, wr, up, down)],
                                            tmp, repeat, tools, widened_too=bf16)
        outputs = {what: numerics.from_storage(y, dtype).astype(np.float32) for what, y in outputs.items()}

        outputs["numpy"] = numpy_layer(x, wr, up, down, k)
        ms["numpy"] = median_ms(lambda: numpy_layer(x, wr, up, down, k), repeat)
        if "torch" in PEERS:
            import torch
            tensors = [torch.from_numpy(a) for a in (x, wr, up, down)]
            if bf16:
                tensors = [t.to(torch.bfloat16) for t in tensors]
            outputs["torch"] = torch_layer(*tensors, k).float().numpy()
            ms["torch"] = median_ms(lambda: torch_layer(*tensors, k), repeat)
        for peer, build in (("ort graph", onnx_layer), ("ort MoE op", ort_moe_op_layer)):
            if bf16:
                ms[peer] = float("nan")
                continue
            sess = ort_session(build(hidden, ffn, experts, k, wr, up, down), tmp, peer.replace(" ", "_"))
            outputs[peer] = sess.run(None, {"x": x})[0]
            ms[peer] = median_ms(lambda: sess.run(None, {"x": x}), repeat)
            del sess

    check_agree(name, outputs, 2e-2 if bf16 else 1e-4)
    flops = useful_flops(tokens, hidden, ffn, experts, k)
    # Bytes a decode step must read: the router and each routed expert once.
    routed = routed_experts(x, wr, k)
    weight_bytes = (wr.nbytes + len(routed) * (up[0].nbytes + down[0].nbytes)) // (2 if bf16 else 1)
    return dict(name=name, shape=f"T={tokens} H={hidden} F={ffn} E={experts} k={k}" + (" bf16" if bf16 else ""),
                ms=ms, compile=compile_ms, gflop=flops / 1e9, gbytes=weight_bytes / 1e9,
                decode=tokens <= DECODE_TOKENS and name.startswith("decode"))


def measured_sgemm_gflops():
    """The machine's f32 matmul rate, measured with numpy's BLAS on all cores:
    the practical hardware limit the table reports a fraction of."""
    a = np.random.default_rng(1).standard_normal((2048, 2048)).astype(np.float32)
    ms = median_ms(lambda: a @ a, 5)
    return 2 * 2048**3 / (ms * 1e6)


def measured_bandwidth_gbs():
    """The machine's memory bandwidth: a 1 GiB copy split over every core
    (numpy releases the GIL while copying), bytes read + written per second."""
    import threading

    n = 1 << 28  # 2^28 f32 = 1 GiB
    src, dst = np.ones(n, np.float32), np.zeros(n, np.float32)
    parts = np.array_split(np.arange(n), os.cpu_count())
    bounds = [(p[0], p[-1] + 1) for p in parts if len(p)]

    def copy():
        threads = [threading.Thread(target=np.copyto, args=(dst[a:b], src[a:b])) for a, b in bounds]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return 2 * src.nbytes / (median_ms(copy, 5) * 1e6)


PEERS = ["numpy", "ort graph", "ort MoE op"]
try:
    import torch  # noqa: F401
    PEERS.append("torch")
except ImportError:
    pass


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in rows]
    series = ["ours JIT", "ours AOT", *PEERS]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(series)
    for i, what in enumerate(series):
        ax.bar([j + i * width for j in range(len(rows))], [r["ms"][what] for r in rows], width, label=what)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))], names, rotation=15)
    ax.set_yscale("log")
    ax.set_ylabel("ms per layer (log scale, lower is better)")
    ax.set_title(f"One f32 MoE layer on {os.cpu_count()} CPU cores (bench/cpu_layer_bench.py; "
                 "no onnxruntime bar: no such routing there)")
    ax.legend(ncols=len(series), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, -0.22))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--sizes", default="small,medium,large")
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"),
                        help="directory of moe-run, moe-compile and moe-exec")
    parser.add_argument("--plot", help="also draw the times as a PNG here")
    args = parser.parse_args()
    tools = {t: os.path.join(args.bin, t) for t in ("moe-run", "moe-compile", "moe-exec", "moe-translate")}
    rows = []
    for name in args.sizes.split(","):
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        rows.append(run_size(name, args.repeat, tools))
    peak = measured_sgemm_gflops()
    bandwidth = measured_bandwidth_gbs()
    print(f"CPU: {os.cpu_count()} cores; f32; median of {args.repeat} runs after 2 warm-up runs; "
          f"measured f32 GEMM (numpy BLAS, 2048^3): {peak:.1f} GFLOP/s; measured copy bandwidth: "
          f"{bandwidth:.1f} GB/s\n")
    print("| size | shape | ours JIT ms | ours AOT ms | " + " | ".join(f"{p} ms" for p in PEERS) +
          " | ours / best peer | ours rate | of the limit | compile ms |")
    print("|---|---|---|---|" + "---|" * len(PEERS) + "---|---|---|---|")
    for r in rows:
        ours = r["ms"]["ours JIT"]
        best = min(r["ms"][p] for p in PEERS if not np.isnan(r["ms"][p]))
        if r["decode"]:
            rate = r["gbytes"] / ours * 1e3
            rate_text, limit = f"{rate:.1f} GB/s", f"{rate / bandwidth:.0%} of bandwidth"
        else:
            rate = r["gflop"] / ours * 1e3
            rate_text, limit = f"{rate:.1f} GFLOP/s", f"{rate / peak:.0%} of GEMM"
        cells = [r["name"], r["shape"],
                 *("-" if np.isnan(r["ms"][w]) else f"{r['ms'][w]:.2f}" for w in ("ours JIT", "ours AOT", *PEERS)),
                 f"{ours / best:.2f}", rate_text, limit, f"{r['compile']:.0f}"]
        print("| " + " | ".join(cells) + " |")
    widened = [r for r in rows if "ours JIT widened" in r["ms"]]
    if widened:
        # The same bf16 layers with bf16 widened to f32 in the kernels (what
        # CPUs without AVX512_BF16 run), in this run.
        print("\n| size | ours JIT ms (bf16 dot products) | ours JIT ms (widened to f32) | speedup | "
              "widened rate |")
        print("|---|---|---|---|---|")
        for r in widened:
            dot, wide = r["ms"]["ours JIT"], r["ms"]["ours JIT widened"]
            rate = r["gbytes"] / wide * 1e3 if r["decode"] else r["gflop"] / wide * 1e3
            unit = f"{rate:.1f} GB/s ({rate / bandwidth:.0%})" if r["decode"] else f"{rate:.1f} GFLOP/s"
            print(f"| {r['name']} | {dot:.2f} | {wide:.2f} | {wide / dot:.2f}x | {unit} |")
    if args.plot:
        plot(rows, args.plot)
        print(f"\n[bench] plot written to {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
