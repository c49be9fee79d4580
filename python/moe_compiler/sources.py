"""Turning what a user holds into a file moe-compile reads: a path, MLIR
text, an onnx.ModelProto, a JAX function (with example arguments), a
jax.stages.Lowered or jax.export.Exported, or a torch.nn.Module (with
example inputs, exported by torch.onnx.export)."""

import os

from .errors import UnsupportedSourceError


def _module_of(obj):
    return type(obj).__module__.split(".")[0]


def write_source(source, example_args, workdir, dynamic_shapes=None):
    """Writes `source` under `workdir` as .mlir or .onnx. Returns its path and,
    for JAX sources, the (input, output) pytree structures of the function
    (None otherwise): the artifact takes and returns the same pytrees."""
    if isinstance(source, os.PathLike) or (isinstance(source, str) and os.path.exists(source)):
        path = os.fspath(source)
        if not path.endswith((".mlir", ".onnx")):
            raise UnsupportedSourceError(f"{path}: expected a .mlir or .onnx file")
        return path, None
    if isinstance(source, str):
        if "func.func" in source or source.lstrip().startswith("module"):
            return _write_text(workdir, "program.mlir", source), None
        raise UnsupportedSourceError(f"{source!r} is neither an existing file nor MLIR text")
    kind = _module_of(source)
    if kind == "onnx" and type(source).__name__ == "ModelProto":
        import onnx
        path = os.path.join(workdir, "model.onnx")
        # Weights go to an external file: the 2 GiB protobuf limit does not apply.
        onnx.save_model(source, path, save_as_external_data=source.ByteSize() > (1 << 30),
                        location="model.onnx.data")
        return path, None
    if kind == "torch" or _is_torch_module(source):
        return _export_torch(source, example_args, workdir, dynamic_shapes), None
    # Any other callable is traced by JAX (a plain Python function of jnp ops).
    if kind in ("jax", "jaxlib") or callable(source):
        text, trees = _jax_text(source, example_args)
        return _write_text(workdir, "program.mlir", text), trees
    raise UnsupportedSourceError(
        f"cannot compile a {type(source).__module__}.{type(source).__name__}: pass a .onnx/.mlir path, MLIR text, an "
        f"onnx.ModelProto, a JAX function with example arguments, a jax.stages.Lowered, a jax.export.Exported or a "
        f"torch.nn.Module with example inputs")


def _write_text(workdir, name, text):
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def _is_torch_module(obj):
    try:
        import torch
    except ImportError:
        return False
    return isinstance(obj, torch.nn.Module)


def _jax_text(source, example_args):
    """The StableHLO text of a JAX source and its (in_tree, out_tree)."""
    import jax
    name = type(source).__name__
    if name == "Exported":
        return source.mlir_module(), (source.in_tree, source.out_tree)
    if name == "Traced":
        source, name = source.lower(), "Lowered"
    if name == "Lowered":
        return source.as_text(), (source.in_tree, source.out_tree)
    if callable(source):
        if example_args is None:
            raise UnsupportedSourceError("a JAX function needs example arguments (arrays or jax.ShapeDtypeStruct)")
        # keep_unused: every argument leaf stays an input, in order.
        lowered = jax.jit(source, keep_unused=True).lower(*example_args)
        return lowered.as_text(), (lowered.in_tree, lowered.out_tree)
    raise UnsupportedSourceError(f"cannot compile a JAX {name}")


def _export_torch(module, example_args, workdir, dynamic_shapes):
    import torch
    if not isinstance(module, torch.nn.Module):
        raise UnsupportedSourceError(f"cannot compile a torch {type(module).__name__}: pass a torch.nn.Module")
    if example_args is None:
        raise UnsupportedSourceError("a torch.nn.Module needs example inputs (a tuple of tensors)")
    if isinstance(example_args, torch.Tensor):
        example_args = (example_args,)
    path = os.path.join(workdir, "model.onnx")
    torch.onnx.export(module, tuple(example_args), path, dynamo=True, dynamic_shapes=dynamic_shapes,
                      opset_version=18, external_data=True, verbose=False, report=False)
    return path
