"""moe_compiler: compile MoE models from PyTorch, JAX or ONNX and call the
compiled layers on their tensors (docs/python.md).

    import moe_compiler as mc
    art = mc.compile("model.onnx", target="cpu")
    print(art.report.summary())
    y = art(x)                          # NumPy, torch or JAX arrays

The package drives the project's own moe-compile (installed with it) and
calls the artifacts it writes through their C API.
"""

from .artifact import Artifact, BoundArtifact, BufferSpec, Signature, load
from .compiler import CompileReport, compile
from .jit import Jitted, jit
from . import huggingface  # noqa: F401  (imports torch only when used)
from .errors import (ArtifactCallError, ArtifactLoadError, ArtifactRuntimeError, CompileError, Diagnostic, Location,
                     MoeCompilerError, UnsupportedSourceError)

__all__ = ["Artifact", "BoundArtifact", "BufferSpec", "Signature", "load", "CompileReport", "compile", "jit", "Jitted",
           "ArtifactCallError", "ArtifactLoadError", "ArtifactRuntimeError", "CompileError", "Diagnostic", "Location",
           "MoeCompilerError", "UnsupportedSourceError"]
