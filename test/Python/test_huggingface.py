"""The Hugging Face drop-in: tiny random-weight Mixtral, Qwen2-MoE, OLMoE,
Qwen3-MoE, DeepSeek-V3, gpt-oss, GLM-4.5, Ernie 4.5, Phi-3.5-MoE, Granite
MoE, LFM2-MoE, AFMoE, dots.llm1, EXAONE-MoE, Hunyuan-MoE, MiniMax-M2,
Qwen3.5-MoE and Nemotron-H models (the configurations of scripts/export-hf-moe-models.py but
PLAIN_OPS) with every MoE block replaced by its
compiled form: logits match the original model's within 1e-5 (f32,
logits O(1)), greedy generate() gives the same tokens, and the compiled
blocks read the model's own weight tensors (data pointers checked)."""

import importlib.util
import os

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import moe_compiler.huggingface as hf  # noqa: E402

_SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "export-hf-moe-models.py")
_spec = importlib.util.spec_from_file_location("export_hf_moe_models", _SCRIPT)
models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(models)


def tiny_model(name):
    config_class, model_class, extra = models.MODELS[name]
    torch.manual_seed(0)
    model = model_class(config_class(**{**models.COMMON, **extra})).eval()
    with torch.no_grad():  # weights of a realistic scale everywhere
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.5 if p.dim() == 1 else 0.2))
        for buffer_name, buffer in model.named_buffers():
            if buffer_name.endswith("e_score_correction_bias"):
                buffer.copy_(torch.randn_like(buffer) * 0.5)
    return model


@pytest.mark.parametrize("name", sorted(set(models.MODELS) - models.PLAIN_OPS))
def test_drop_in(name):
    model = tiny_model(name)
    ids = torch.randint(0, models.COMMON["vocab_size"], (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(input_ids=ids).logits
        want_tokens = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    blocks = hf.find_moe_blocks(model)
    replaced = hf.replace_moe_blocks(model, cache_dir="")
    assert [n for n, _ in replaced] == [n for n, _ in blocks] and replaced
    for block_name, compiled in replaced:
        assert model.get_submodule(block_name) is compiled
        report = compiled.artifact.report
        assert report.layers or report.moe_ops, report.summary()
        # The weights passed are the block's own tensors.
        own = {t.data_ptr() for t in list(compiled.original.parameters()) + list(compiled.original.buffers())}
        shared = [w for (n, _), w in zip(compiled._sources, compiled.weights()) if n is not None]
        assert shared and all(w.data_ptr() in own for w in shared)
    # Blocks of one shape share one compiled artifact, unless the export
    # made constants of a block's own (then they are kept per block).
    if all(n is not None for _, c in replaced for n, _ in c._sources):
        assert len({id(c.artifact) for _, c in replaced}) == 1
    # Each compiled block against its original on the same hidden states,
    # every output (gpt-oss also returns its router scores).
    hidden = torch.randn(2, 3, models.COMMON["hidden_size"], generator=torch.Generator().manual_seed(2))
    for _, compiled in replaced:
        with torch.no_grad():
            mine, theirs = compiled(hidden), compiled.original(hidden)
        mine = mine if isinstance(mine, tuple) else (mine,)
        theirs = theirs if isinstance(theirs, tuple) else (theirs,)
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs):
            assert a.shape == b.shape and (a - b).abs().max().item() < 1e-5
    with torch.no_grad():
        got = model(input_ids=ids).logits
        got_tokens = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert (got - want).abs().max().item() < 1e-5
    assert torch.equal(got_tokens, want_tokens)


def test_no_moe_block():
    with pytest.raises(hf.MoeCompilerError, match="no MoE block"):
        hf.replace_moe_blocks(torch.nn.Sequential(torch.nn.Linear(4, 4)))


def test_block_that_does_not_compile():
    """A block the exporter cannot translate: an error naming it, or with
    strict=False the original block kept (and the model still runs)."""

    class OddMoe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = torch.nn.Linear(8, 4, bias=False)
            self.experts = torch.nn.Linear(8, 8)

        def forward(self, x):
            # Det (a determinant) is not an op the importer takes.
            return self.experts(x) + torch.linalg.det(self.gate(x)[..., :4, :4]).sum()

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = OddMoe()

        def forward(self, x):
            return self.mlp(x)

    net = Net().eval()
    import moe_compiler as mc
    with pytest.raises(mc.CompileError, match="mlp \\(OddMoe\\): moe-compile failed") as info:
        hf.replace_moe_blocks(net, cache_dir="", progress=False)
    assert any("Det" in d.message for d in info.value.diagnostics)
    assert isinstance(net.mlp, torch.nn.Module) and type(net.mlp).__name__ == "OddMoe"
    assert hf.replace_moe_blocks(net, cache_dir="", progress=False, strict=False) == []
    assert type(net.mlp).__name__ == "OddMoe"
