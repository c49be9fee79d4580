"""moe_compiler.compile from every kind of source a user holds, each run
and compared with an independent reference on random non-zero inputs:
numpy float64 (MLIR), onnxruntime (ONNX), JAX itself (JAX), PyTorch itself
(torch.nn.Module). Tolerances: f32 programs within 1e-5 (absolute, values
O(1))."""

import os

import numpy as np
import pytest

import moe_compiler as mc
from conftest import layer_operands

TOL = 1e-5


def test_mlir_text_and_report(layer_artifact):
    ops, y = layer_operands(9)
    out, logits = layer_artifact(*ops)
    assert out.shape == (9, 64) and logits.shape == (9, 8)
    assert np.abs(out - y).max() < TOL
    r = layer_artifact.report
    assert r.entry == "layer" and r.target == "cpu"
    assert len(r.layers) == 1
    layer = r.layers[0]
    assert layer["experts"] == [{"kind": "ffn", "count": 8}]
    assert (layer["routing"]["scoring"], layer["routing"]["k"], layer["routing"]["normalize"]) == ("softmax", 2, "all")
    assert layer["activation"] == "swiglu" and layer["hidden"] == 64 and not layer["shared_expert"]
    # The cost table at 256 assumed tokens: every token's 2 experts run a
    # 64 -> 2x32 -> 64 SwiGLU FFN: 2 * 256 * 2 * (64*64 + 32*64) FLOPs.
    assert r.cost["tokens"] == 256
    assert r.cost["total"]["gemm_flops"] >= 2 * 256 * 2 * (64 * 64 + 32 * 64)
    assert "1 MoE layers" in r.summary() and "softmax top-2" in r.summary()


def test_mlir_path_and_output_dir(tmp_path, layer_mlir):
    src = tmp_path / "layer.mlir"
    src.write_text(layer_mlir)
    art = mc.compile(src, output=tmp_path / "out" / "liblayer.so", cache_dir="")
    assert os.path.exists(tmp_path / "out" / "liblayer.so") and os.path.exists(tmp_path / "out" / "liblayer.h")
    ops, y = layer_operands(4, seed=1)
    assert np.abs(art(*ops)[0] - y).max() < TOL
    # Loaded again from the file, as another process would.
    again = mc.load(tmp_path / "out" / "liblayer.so")
    assert again.signature == art.signature
    assert np.abs(again(*ops)[0] - y).max() < TOL


def test_onnx_model_proto():
    import onnx
    import onnxruntime as ort
    from moe_reference import onnx_models
    model, feeds = onnx_models.moe_model("api_moe", tokens=6, hidden=16, ffn=8, experts=4, k=2,
                                         activation="silu", normalize=1)
    assert isinstance(model, onnx.ModelProto)
    art = mc.compile(model, cache_dir="")
    # ORT's MoE node becomes the decomposed moe ops (routing, dispatch, grouped GEMMs).
    assert art.report.moe_ops.get("moe.grouped_matmul") == 2, art.report.moe_ops
    (want,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = art(*feeds.values())
    assert np.abs(got - want).max() < TOL


def test_verify_raising(monkeypatch):
    """verify_raising=True checks the recognised layer (kept: it agrees with
    its own nodes) and says so in the report; off, the report has no entry."""
    import onnxruntime as ort
    from moe_reference import onnx_models
    monkeypatch.setenv("MOE_VERIFY_RAISING", "")
    model, feeds = onnx_models.per_expert_model("api_per_expert", **onnx_models.PER_EXPERT_CASES["per_expert_mixtral"])
    art = mc.compile(model, verify_raising=True, cache_dir="")
    assert art.report.raising_check["kept"] == 1 and art.report.raising_check["refused"] == 0, art.report.raising_check
    assert len(art.report.layers) == 1
    (want,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert np.abs(art(*feeds.values()) - want).max() < TOL
    assert mc.compile(model, cache_dir="").report.raising_check is None


def test_onnx_weights_as_inputs_bound_once():
    import onnxruntime as ort
    from moe_reference import onnx_models
    from onnx import numpy_helper
    model, feeds = onnx_models.moe_model("api_moe_w", tokens=6, hidden=16, ffn=8, experts=4, k=2)
    art = mc.compile(model, weights_as_inputs=0, cache_dir="")
    names = [b.name for b in art.signature.inputs]
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name in names}
    assert names[:len(feeds)] == list(feeds) and sorted(names[len(feeds):]) == sorted(weights)  # then the weights
    layer = art.bind(**weights)
    assert all(layer._bound[names.index(n)] is w for n, w in weights.items())  # kept, not copied
    (want,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert np.abs(layer(*feeds.values()) - want).max() < TOL


def test_block_value_read_outside(tmp_path):
    """An HF Mixtral export whose first block's router softmax is also a
    graph output (as blocks that return their router scores have it): both
    blocks are still MoE layers, and both outputs match onnxruntime."""
    import subprocess
    import sys
    import onnxruntime as ort
    inputs = os.path.join(os.path.dirname(__file__), "..", "Onnx", "Inputs")
    model = tmp_path / "scores.onnx"
    subprocess.run([sys.executable, os.path.join(inputs, "mutate_hf.py"), "expose-scores",
                    os.path.join(inputs, "hf", "mixtral.onnx"), str(model)], check=True)
    art = mc.compile(model, cache_dir="")
    assert len(art.report.layers) == 2
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    # One token: batch = sequence = batch x sequence, the one size an
    # artifact gives its dynamic dimensions.
    ids = np.array([[17]], np.int64)
    want = session.run(None, {"input_ids": ids})
    got = art(ids)
    assert len(got) == 2 and got[1].shape == (1, 4)
    for g, w in zip(got, want):
        assert np.abs(g - w).max() < TOL
    # 3 x 3 ids: the scores have 9 rows, not 3; the call fails, naming the
    # output, and writes nothing past the buffer.
    with pytest.raises(mc.ArtifactRuntimeError, match="output 1 has 9 elements in its dynamic dimension 0, but "
                                                      "the buffer for it has 3"):
        art(np.ones((3, 3), np.int64))
    # The artifact still works after a failed call.
    assert np.abs(art(ids)[1] - want[1]).max() < TOL


def _jax_program():
    from moe_reference import jax_programs
    return jax_programs.PROGRAMS["mixtral_dropless"]


def test_jax_function_lowered_and_exported():
    import jax
    program = _jax_program()
    inputs = program.inputs(seed=5)
    want = np.asarray(jax.jit(program.fn)(*inputs))
    specs = program.specs()
    sources = {
        "function": (program.fn, specs),
        "lowered": (jax.jit(program.fn).lower(*specs), None),
        "exported": (jax.export.export(jax.jit(program.fn), platforms=["cpu"])(*specs), None),
    }
    for kind, (source, example) in sources.items():
        art = mc.compile(source, example, cache_dir="")
        assert art.report.layers or art.report.moe_ops, kind  # the MoE was recognised
        got = art(*[jax.numpy.asarray(a) for a in inputs])
        assert isinstance(got, jax.Array), kind
        assert np.abs(np.asarray(got) - want).max() < TOL, kind


@pytest.mark.parametrize("name", ["idiom_loop_where", "idiom_batch_seq_einsum", "idiom_gathered_weights_k3"])
def test_jax_idioms_recognised_and_checked(name):
    """JAX functions in other code bases' spellings (jax_idioms.py): one MoE
    layer each, kept by the raising check, JAX's result."""
    import jax
    from moe_reference import jax_programs
    program = jax_programs.PROGRAMS[name]
    inputs = program.inputs(seed=3)
    art = mc.compile(program.fn, inputs, cache_dir="", verify_raising=True)
    assert len(art.report.layers) == 1, art.report.summary()
    assert art.report.raising_check["kept"] == 1 and art.report.raising_check["refused"] == 0
    want = np.asarray(jax.jit(program.fn)(*inputs))
    assert np.abs(np.asarray(art(*inputs)) - want).max() < TOL * max(1.0, np.abs(want).max())


def test_jax_pytrees():
    """A Flax-style apply(params, x) with nested params and a dict result:
    the artifact takes and returns the same pytrees (an unused parameter
    stays an input)."""
    import jax
    program = _jax_program()
    x, wr, w1, w3, w2 = program.inputs(seed=8)
    params = {"router": wr, "experts": {"w1": w1, "w3": w3, "w2": w2}, "unused": np.ones(3, np.float32)}

    def apply(params, x):
        e = params["experts"]
        y = program.fn(x, params["router"], e["w1"], e["w3"], e["w2"])
        return {"y": y, "scale": (y * 2.0).sum()}

    want = jax.jit(apply)(params, x)
    art = mc.compile(apply, (params, x), cache_dir="")
    assert len(art.signature.inputs) == 6 and art.report.layers
    got = art(params, x)
    assert set(got) == {"y", "scale"}
    assert np.abs(got["y"] - np.asarray(want["y"])).max() < TOL
    assert abs(float(got["scale"]) - float(want["scale"])) < 1e-3 * abs(float(want["scale"])) + 1e-3
    with pytest.raises(mc.ArtifactCallError, match="structure"):
        art({"router": wr}, x)
    layer = mc.jit(apply, cache_dir="")
    assert np.abs(layer(params, x)["y"] - np.asarray(want["y"])).max() < TOL


def test_jit_per_signature():
    """moe_compiler.jit compiles once per argument signature, like jax.jit."""
    import jax
    program = _jax_program()
    layer = mc.jit(program.fn, cache_dir="")
    inputs = program.inputs(seed=7)
    for tokens in (16, 5, 16):
        x = inputs[0][:tokens]
        want = np.asarray(jax.jit(program.fn)(x, *inputs[1:]))
        got = layer(x, *inputs[1:])
        assert isinstance(got, np.ndarray) and np.abs(got - want).max() < TOL
    assert len(layer.artifacts) == 2  # 16 and 5 tokens; the third call reused the first
    assert all(a.report.layers for a in layer.artifacts.values())


@pytest.mark.parametrize("style", ["loop", "einsum"])
def test_torch_module(style):
    torch = pytest.importorskip("torch")

    class TopKMoE(torch.nn.Module):
        """A dense-compute MoE as PyTorch code writes it: softmax top-2,
        renormalised, experts applied through a one-hot combine."""

        def __init__(self, hidden=16, ffn=24, experts=4):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.router = torch.nn.Parameter(torch.randn(experts, hidden, generator=g) * 0.3)
            self.w1 = torch.nn.Parameter(torch.randn(experts, ffn, hidden, generator=g) * 0.3)
            self.w2 = torch.nn.Parameter(torch.randn(experts, hidden, ffn, generator=g) * 0.3)

        def forward(self, x):
            probs = torch.softmax(x @ self.router.T, dim=-1)
            top, idx = torch.topk(probs, 2, dim=-1)
            top = top / top.sum(-1, keepdim=True)
            gates = torch.zeros_like(probs).scatter(1, idx, top)
            if style == "einsum":  # ONNX Einsum nodes
                h = torch.relu(torch.einsum("th,efh->tef", x, self.w1))
                return torch.einsum("te,teh->th", gates, torch.einsum("tef,ehf->teh", h, self.w2))
            y = torch.zeros_like(x)
            for e in range(self.w1.shape[0]):
                y = y + gates[:, e:e + 1] * (torch.relu(x @ self.w1[e].T) @ self.w2[e].T)
            return y

    module = TopKMoE().eval()
    x = torch.randn(10, 16, generator=torch.Generator().manual_seed(1))
    tokens = torch.export.Dim("tokens", min=2, max=4096)
    art = mc.compile(module, (x,), dynamic_shapes=({0: tokens},), cache_dir="")
    for t in (10, 3):
        xt = x[:t].contiguous()
        with torch.no_grad():
            want = module(xt)
        got = art(xt)
        assert isinstance(got, torch.Tensor)
        assert (got - want).abs().max().item() < TOL


def test_compile_errors(tmp_path):
    bad = tmp_path / "bad.mlir"
    bad.write_text("func.func @f(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {\n"
                   "  %y = \"moe.topk\"(%x) {k = 99 : i64} : (tensor<4x8xf32>) -> tensor<4x8xf32>\n"
                   "  return %y : tensor<4x8xf32>\n}\n")
    with pytest.raises(mc.CompileError) as info:
        mc.compile(bad, cache_dir="")
    errors = [d for d in info.value.diagnostics if d.severity == "error"]
    assert errors and errors[0].location.line == 2 and errors[0].location.column == 8
    assert "bad.mlir:2:8: error:" in str(info.value)

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07\x12\xff\xff\xff\xff\x0f garbage")
    with pytest.raises(mc.CompileError) as info:
        mc.compile(corrupt, cache_dir="")
    assert info.value.diagnostics and "corrupt.onnx" in str(info.value)

    with pytest.raises(mc.UnsupportedSourceError):
        mc.compile(object())
    with pytest.raises(mc.UnsupportedSourceError):
        mc.compile("not a file and not MLIR")
    with pytest.raises(TypeError, match="unknown options"):
        mc.compile(bad, tarrget="gpu")
    with pytest.raises(mc.CompileError, match="--target must be cpu or gpu"):
        mc.compile(bad, target="tpu", cache_dir="")
