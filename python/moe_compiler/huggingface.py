"""Drop-in compiled MoE blocks for Hugging Face transformers models.

    model = transformers.AutoModelForCausalLM.from_pretrained(...)
    moe_compiler.huggingface.replace_moe_blocks(model)
    model.generate(...)   # every MoE block runs compiled code

Each MoE block (a module with `experts` and a `gate` or `router`: Mixtral,
Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V3, gpt-oss) is exported alone with
torch.onnx.export over a dynamic token count, compiled with its weights as
inputs, and called with the block's own parameter tensors: nothing is
copied, and blocks of one shape share one compiled artifact. Inference
only (no gradients flow through the compiled code).
"""

import contextlib
import os
import sys
import tempfile
import time

from .compiler import compile as _compile
from .errors import MoeCompilerError
from .sources import _export_torch


def is_moe_block(module):
    """A sparse MoE block as transformers writes them: routed `experts` and a router."""
    return hasattr(module, "experts") and (hasattr(module, "gate") or hasattr(module, "router"))


def find_moe_blocks(model):
    """(qualified name, module) of every outermost MoE block of `model`."""
    found = []
    for name, module in model.named_modules():
        if is_moe_block(module) and not any(name.startswith(f + ".") for f, _ in found):
            found.append((name, module))
    return found


def _tokens_only(block):
    """The block over [tokens, hidden]: the block sees a batch of one."""
    import torch

    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = block

        def forward(self, x):
            return self.block(x.unsqueeze(0))

    return Flat()


@contextlib.contextmanager
def _exportable_experts(block):
    """transformers' default grouped-GEMM experts are an opaque custom op the
    ONNX exporter cannot translate; its "batched_mm" form is equivalent."""
    configs = [m.config for m in block.modules() if getattr(m, "config", None) is not None]
    saved = [(c, c.__dict__.get("_experts_implementation", None)) for c in configs]
    for c in configs:
        c._experts_implementation = "batched_mm"
    try:
        yield
    finally:
        for c, value in saved:
            if value is None:
                c.__dict__.pop("_experts_implementation", None)
            else:
                c._experts_implementation = value


def _tensors_of(block):
    """The block's parameters and buffers by qualified name (detached: the same storage)."""
    named = {n: p.detach() for n, p in block.named_parameters()}
    named.update({n: b for n, b in block.named_buffers()})
    return named


def _weight_sources(art, onnx_path, block):
    """For each weight input of `art`: the name of the block tensor it is, or
    None when the export made a new constant (then its value is kept)."""
    import onnx
    import torch
    from onnx import numpy_helper
    tensors = _tensors_of(block)
    inits = {i.name: i for i in onnx.load(onnx_path).graph.initializer}
    sources = []
    for spec in art.signature.inputs[1:]:
        name = spec.name[len("block."):] if spec.name.startswith("block.") else spec.name
        if name in tensors:
            sources.append((name, None))
            continue
        value = torch.from_numpy(numpy_helper.to_array(inits[spec.name]).copy())
        match = [n for n, t in tensors.items() if t.shape == value.shape and t.dtype == value.dtype and torch.equal(t, value)]
        sources.append((match[0], None) if len(match) == 1 else (None, value))
    return sources


def _compiled_block(original, artifact, sources, structure):
    """The module standing in for one MoE block: the original stays
    registered under `original` (its parameters, state_dict and device moves
    are unchanged) and is what the compiled code reads its weights from.
    torch is imported here, not when the package is."""
    import torch

    class CompiledMoEBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.original = original
            self.artifact = artifact
            self._sources = sources
            self._structure = structure

        def weights(self):
            """The artifact's weight inputs: the block's tensors as they are now
            (after a device move too), or the constants the export made."""
            tensors = _tensors_of(self.original)
            return [tensors[name] if name is not None else value for name, value in self._sources]

        def forward(self, hidden_states, *args, **kwargs):
            shape = hidden_states.shape
            x = hidden_states.reshape(-1, shape[-1]).contiguous()
            outputs = self.artifact(x, *self.weights())
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            first = outputs[0].reshape(shape)
            return first if self._structure == "tensor" else (first,) + tuple(outputs[1:])

        def extra_repr(self):
            return f"compiled: {self.artifact.report.summary().splitlines()[0] if self.artifact.report else ''}"

    return CompiledMoEBlock()


def replace_moe_blocks(model, *, cache_dir=None, verbose=False, progress=True, strict=True, **options):
    """Replaces every MoE block of `model` (in place) with its compiled form;
    returns the list of (name, compiled block). Options are compile()'s
    (target, cpu, optimize, ...; a model on CUDA needs target="gpu");
    `progress` prints one line per block to stderr (what was compiled, in
    how long, or which artifact it reuses). A block that does not export,
    compile or hold a recognised MoE layer raises MoeCompilerError, or with
    strict=False stays the original module (said on stderr)."""
    blocks = find_moe_blocks(model)
    if not blocks:
        raise MoeCompilerError(f"no MoE block found in {type(model).__name__} (looked for modules with `experts` "
                               f"and a `gate` or `router`)")
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    compiled_by_shape = {}
    replaced = []
    for name, block in blocks:
        tensors = _tensors_of(block)
        key = (type(block), tuple((n, tuple(t.shape), t.dtype, t.device) for n, t in tensors.items()))
        start = time.perf_counter()
        reused = key in compiled_by_shape
        try:
            if not reused:
                compiled_by_shape[key] = _compile_block(block, tensors, hidden, cache_dir, verbose, options)
            art, sources, structure = compiled_by_shape[key]
            if reused and any(n is None for n, _ in sources):  # constants of this block's own: its own artifact
                art, sources, structure = _compile_block(block, tensors, hidden, cache_dir, verbose, options)
                reused = False
        except Exception as e:  # export, compile or recognition failed for this block
            if strict:
                if isinstance(e, MoeCompilerError):  # CompileError keeps its type and diagnostics
                    e.args = (f"{name} ({type(block).__name__}): {e.args[0] if e.args else ''}",) + e.args[1:]
                    raise
                raise MoeCompilerError(f"{name} ({type(block).__name__}) could not be exported: {e}") from e
            print(f"[moe_compiler] {name} ({type(block).__name__}) kept as it is: {str(e).splitlines()[0]}",
                  file=sys.stderr)
            continue
        if progress:
            what = ("reuses the artifact of its shape" if reused else
                    f"exported and compiled in {time.perf_counter() - start:.1f} s: "
                    f"{art.report.summary().splitlines()[0].split(': ', 1)[-1]}")
            print(f"[moe_compiler] {name} ({type(block).__name__}) {what}", file=sys.stderr)
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        replacement = _compiled_block(block, art, sources, structure)
        setattr(parent, attr, replacement)
        replaced.append((name, replacement))
    return replaced


def _compile_block(block, tensors, hidden, cache_dir, verbose, options):
    import torch
    hidden = _hidden_size(block, hidden)
    first = next(iter(tensors.values()))
    example = torch.randn(5, hidden, dtype=first.dtype, device=first.device)
    with torch.no_grad():
        structure = "tensor" if isinstance(block(example.unsqueeze(0)), torch.Tensor) else "tuple"
    workdir = tempfile.TemporaryDirectory(prefix="moe_compiler_hf_")
    tokens = torch.export.Dim("tokens", min=2, max=1 << 20)
    with _exportable_experts(block), open(os.devnull, "w") as devnull, \
            contextlib.redirect_stdout(None if verbose else devnull):
        path = _export_torch(_tokens_only(block).eval(), (example,), workdir.name, ({0: tokens},))
    # The block's tensors become inputs; scalars the export writes (a clamp
    # limit, an activation's alpha) stay constants the compiler can see.
    smallest = min(t.numel() * t.element_size() for t in tensors.values() if t.dim() > 0)
    art = _compile(path, weights_as_inputs=smallest, cache_dir=cache_dir, verbose=verbose, **options)
    if not art.report.layers and not art.report.moe_ops:
        raise MoeCompilerError(f"{type(block).__name__} was compiled without recognising an MoE layer in it; "
                               f"see the report:\n{art.report.summary()}")
    sources = _weight_sources(art, path, block)
    workdir.cleanup()
    return art, sources, structure


def _hidden_size(block, model_hidden):
    """The block's input width: its router's weight [E, H], else the model's config."""
    router = getattr(block, "gate", None) or getattr(block, "router", None)
    weight = getattr(router, "weight", None)
    if weight is not None and weight.dim() == 2:
        return weight.shape[-1]
    if model_hidden:
        return model_hidden
    raise MoeCompilerError(f"{type(block).__name__}: cannot tell the hidden size (its router has no [E, H] weight "
                           f"and the model no config.hidden_size)")
