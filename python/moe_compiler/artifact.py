"""Loading a moe-compile artifact and calling it on framework tensors.

An artifact is a shared library with a three-function C API (moe-compile
writes its header next to it): its signature as text, `moe_artifact_run`
over C-contiguous buffers (inputs then outputs) and a `tokens` size for
every dynamic dimension, and the last error. Arrays reach it through
DLPack: NumPy arrays, torch tensors and JAX arrays are passed by pointer,
never copied; outputs are allocated as the kind of array the inputs are.
"""

import ctypes
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from . import _dlpack
from .errors import ArtifactCallError, ArtifactLoadError, ArtifactRuntimeError


@dataclass(frozen=True)
class BufferSpec:
    name: str
    dtype: str  # as MLIR names it: f32, bf16, i64, ...
    shape: Tuple[Optional[int], ...]  # None: the dynamic (token) dimension

    def concrete(self, tokens):
        return tuple(tokens if d is None else d for d in self.shape)

    def __str__(self):
        dims = "x".join("?" if d is None else str(d) for d in self.shape) or "scalar"
        return f"{self.name}: {self.dtype} {dims}"


@dataclass(frozen=True)
class Signature:
    target: str  # "cpu" or "gpu sm_90"
    entry: str
    inputs: List[BufferSpec]
    outputs: List[BufferSpec]

    @property
    def gpu(self):
        return self.target.startswith("gpu")

    @staticmethod
    def parse(text):
        target = entry = None
        inputs, outputs = [], []
        for line in text.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "target":
                target = rest
            elif kind == "entry":
                entry = rest
            elif kind in ("input", "output"):
                name, dtype, dims = rest.split(" ")
                shape = () if dims == "scalar" else tuple(None if d == "?" else int(d) for d in dims.split("x"))
                (inputs if kind == "input" else outputs).append(BufferSpec(name, dtype, shape))
            elif line.strip():
                raise ArtifactLoadError(f"unexpected line in the artifact's signature: {line!r}")
        if target is None or entry is None:
            raise ArtifactLoadError("the artifact's signature names no target or entry")
        return Signature(target, entry, inputs, outputs)

    def __str__(self):
        return "\n".join([f"target {self.target}, entry {self.entry}"] + [f"  input {b}" for b in self.inputs] +
                         [f"  output {b}" for b in self.outputs])


def _framework(array):
    module = type(array).__module__.split(".")[0]
    return module if module in ("torch", "jax", "jaxlib", "numpy") else "numpy"


def _contiguous_copy(array):
    """A C-contiguous copy of a strided input (a transposed or sliced view),
    in the same framework and on the same device; None if unknown."""
    kind = _framework(array)
    if kind == "torch":
        return array.contiguous()
    if hasattr(array, "__array_interface__") or kind == "numpy":
        import numpy as np
        return np.ascontiguousarray(array)
    return None


def _numpy_dtype(name):
    import numpy as np
    if name == "bf16":
        import ml_dtypes  # NumPy has no bfloat16; JAX installs ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype({"f64": "f8", "f32": "f4", "f16": "f2", "i64": "i8", "i32": "i4", "i8": "i1"}[name])


def _torch_dtype(name):
    import torch
    return {"f64": torch.float64, "f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16,
            "i64": torch.int64, "i32": torch.int32, "i8": torch.int8}[name]


class Artifact:
    """A compiled MoE program, callable on arrays.

        art = moe_compiler.load("out/liblayer.so")
        y = art(x, router, w_up, w_down)        # NumPy, torch or JAX arrays
        layer = art.bind(router=..., w_up=...)  # weights bound once
        y = layer(x)

    Inputs are checked against `signature` (count, dtype, shape, device,
    C-contiguous layout) before anything runs; every dynamic dimension is
    the same token count. One output returns an array, several a tuple.
    `report` holds what moe-compile reported (see CompileReport) when the
    artifact came from compile().
    """

    def __init__(self, path, report=None, _keep=None):
        self.path = os.fspath(path)
        self.report = report
        # JAX sources: the function's (input, output) pytree structures; the
        # artifact then takes and returns them (compile() sets it).
        self.pytrees = None
        self._keep = _keep  # a temporary directory the library lives in
        try:
            self._lib = ctypes.CDLL(os.path.abspath(self.path))
        except OSError as e:
            raise ArtifactLoadError(f"cannot load {self.path}: {e}") from None
        try:
            sig, run, err = self._lib.moe_artifact_signature, self._lib.moe_artifact_run, self._lib.moe_artifact_error
        except AttributeError:
            raise ArtifactLoadError(f"{self.path} is not a moe-compile artifact (no moe_artifact_* functions)") from None
        sig.restype, sig.argtypes = ctypes.c_char_p, []
        run.restype, run.argtypes = ctypes.c_int, [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int64]
        err.restype, err.argtypes = ctypes.c_char_p, []
        self._run, self._error = run, err
        # GPU artifacts also run on a caller's stream (older ones lack it).
        self._run_on_stream = getattr(self._lib, "moe_artifact_run_on_stream", None)
        if self._run_on_stream is not None:
            self._run_on_stream.restype = ctypes.c_int
            self._run_on_stream.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int64, ctypes.c_void_p]
        self.signature = Signature.parse(sig().decode())

    def __repr__(self):
        return f"<moe_compiler.Artifact {os.path.basename(self.path)}: {self.signature.target} @{self.signature.entry}>"

    def bind(self, *positional, **named):
        """A callable with some inputs fixed, typically the weights: arrays
        given by position bind the last inputs (weights follow the
        activations in every artifact moe-compile writes), arrays given by
        name bind that input. They are kept, not copied, and passed on every
        call; the call takes the remaining inputs in order."""
        return BoundArtifact(self, self._bound(positional, named))

    def _bound(self, positional, named):
        names = [b.name for b in self.signature.inputs]
        if len(positional) > len(names):
            raise ArtifactCallError(f"{len(positional)} inputs bound; {self.signature.entry} takes {len(names)}")
        bound = {len(names) - len(positional) + i: value for i, value in enumerate(positional)}
        for name, value in named.items():
            if name not in names:
                raise ArtifactCallError(f"{self.signature.entry} has no input named {name!r} (inputs: {', '.join(names)})")
            index = names.index(name)
            if index in bound:
                raise ArtifactCallError(f"input {name!r} bound twice")
            bound[index] = value
        return bound

    def __call__(self, *inputs, out=None):
        if self.pytrees is not None:
            import jax
            leaves, tree = jax.tree_util.tree_flatten((inputs, {}))
            if tree == self.pytrees[0]:
                return jax.tree_util.tree_unflatten(self.pytrees[1], self._flat(leaves, out))
            if len(inputs) != len(self.signature.inputs):
                raise ArtifactCallError(f"arguments of structure {tree} do not match the function's {self.pytrees[0]}")
        return self._call(dict(enumerate(inputs)), out)

    def _flat(self, leaves, out):
        results = self._call(dict(enumerate(leaves)), out)
        return list(results) if isinstance(results, tuple) else [results]

    def _call(self, by_index, out):
        sig = self.signature
        if sorted(by_index) != list(range(len(sig.inputs))):
            missing = [b.name for i, b in enumerate(sig.inputs) if i not in by_index]
            raise ArtifactCallError(f"{sig.entry} takes {len(sig.inputs)} inputs, got {len(by_index)}"
                                    + (f" (missing: {', '.join(missing)})" if missing else ""))
        views = [self._view(by_index[i], spec, "input") for i, spec in enumerate(sig.inputs)]
        tokens = self._tokens(views)
        for v, spec in zip(views, sig.inputs):
            self._check_shape(v, spec, tokens, "input")
        first = by_index[0] if by_index else None
        if out is None:
            outputs = [self._allocate(spec.concrete(max(tokens, 0)), spec.dtype, first) for spec in sig.outputs]
        else:
            outputs = list(out) if isinstance(out, (tuple, list)) else [out]
            if len(outputs) != len(sig.outputs):
                raise ArtifactCallError(f"out: {sig.entry} has {len(sig.outputs)} outputs, got {len(outputs)}")
        out_views = [self._view(o, spec, "output") for o, spec in zip(outputs, sig.outputs)]
        for v, spec in zip(out_views, sig.outputs):
            self._check_shape(v, spec, tokens, "output")
        buffers = (ctypes.c_void_p * (len(views) + len(out_views)))(*[v.data or None for v in views + out_views])
        stream = self._caller_stream(first)
        if stream is not None and self._run_on_stream is not None:
            rc = self._run_on_stream(buffers, max(tokens, 0), stream)
        else:
            rc = self._run(buffers, max(tokens, 0))
        if rc != 0:
            message = (self._error() or b"").decode() or f"moe_artifact_run returned {rc}"
            raise (ArtifactCallError if rc == 2 else ArtifactRuntimeError)(message)
        results = [self._wrap(o, first) for o in outputs]
        return results[0] if len(results) == 1 else tuple(results)

    # -- helpers -----------------------------------------------------------

    def _view(self, array, spec, role):
        v = _dlpack.view(array)
        if v is None and role == "input" and isinstance(array, (int, float, list, tuple)) and not self.signature.gpu:
            # A Python number or nested list: made an array of the input's type (a copy).
            import numpy as np
            v = _dlpack.view(np.asarray(array, dtype=_numpy_dtype(spec.dtype)))
        if v is None:
            raise ArtifactCallError(f"{role} {spec.name}: {type(array).__name__} is not an array (needs __dlpack__)")
        want_device = (_dlpack.CUDA, _dlpack.CUDA_MANAGED) if self.signature.gpu else (_dlpack.CPU, _dlpack.CUDA_HOST)
        if v.device[0] not in want_device:
            where = "CUDA device memory" if self.signature.gpu else "host memory"
            raise ArtifactCallError(f"{role} {spec.name}: the artifact ({self.signature.target}) takes arrays in "
                                    f"{where}, got one on {v.device_name()}")
        if self.signature.gpu and v.device[1] != 0:
            raise ArtifactCallError(f"{role} {spec.name}: on {v.device_name()}; the runtime runs GPU artifacts on "
                                    f"device 0 (set CUDA_VISIBLE_DEVICES to choose it)")
        code, bits = _dlpack.DTYPE_CODES[spec.dtype]
        # Packed quantised bytes (i8) may come as uint8, bf16 as its uint16
        # bit patterns (as .npy files hold it).
        ok = v.dtype == (code, bits, 1) or (spec.dtype in ("i8", "bf16") and v.dtype == (_dlpack.UINT, bits, 1))
        if not ok:
            raise ArtifactCallError(f"{role} {spec.name}: expected {spec.dtype}, got {v.dtype_name()}")
        if not v.is_c_contiguous():
            copy = _contiguous_copy(array) if role == "input" else None
            if copy is None:
                raise ArtifactCallError(f"{role} {spec.name}: not C-contiguous (strides {v.strides}); pass a "
                                        f"contiguous array (numpy.ascontiguousarray, tensor.contiguous())")
            v = _dlpack.view(copy)  # an input view: one copy, C-contiguous
        return v

    def _tokens(self, views):
        """The one size of every dynamic dimension, from the inputs."""
        tokens, source = -1, None
        for v, spec in zip(views, self.signature.inputs):
            if len(v.shape) != len(spec.shape):
                raise ArtifactCallError(f"input {spec.name}: expected rank {len(spec.shape)} ({spec}), got shape "
                                        f"{list(v.shape)}")
            for dim, size in zip(spec.shape, v.shape):
                if dim is None:
                    if tokens >= 0 and size != tokens:
                        raise ArtifactCallError(f"input {spec.name}: dynamic dimension is {size} but {source} "
                                                f"set it to {tokens} (every ? dimension is the same token count)")
                    tokens, source = size, spec.name
        return tokens

    @staticmethod
    def _check_shape(v, spec, tokens, role):
        want = spec.concrete(tokens)
        if tokens < 0 and None in spec.shape:
            raise ArtifactCallError(f"{role} {spec.name}: no input sets the dynamic dimension")
        if tuple(v.shape) != tuple(want):
            raise ArtifactCallError(f"{role} {spec.name}: expected shape {list(want)} ({spec}), got {list(v.shape)}")

    def _allocate(self, shape, dtype, like):
        kind = _framework(like) if like is not None else "numpy"
        if kind == "torch":
            import torch
            return torch.empty(shape, dtype=_torch_dtype(dtype), device=like.device)
        if self.signature.gpu:
            raise ArtifactCallError("a GPU artifact allocates its outputs as torch CUDA tensors: pass torch inputs, "
                                    "or pass out= with device arrays")
        import numpy as np
        return np.empty(shape, dtype=_numpy_dtype(dtype))

    @staticmethod
    def _wrap(output, like):
        """The output as the inputs' kind: JAX arrays for JAX inputs (through DLPack)."""
        if like is not None and _framework(like) in ("jax", "jaxlib") and _framework(output) == "numpy":
            import jax.numpy as jnp
            try:
                return jnp.from_dlpack(output)
            except BufferError:  # NumPy cannot export bfloat16: one copy
                return jnp.asarray(output)
        return output

    def _caller_stream(self, like):
        """For a GPU artifact called on torch CUDA tensors: the torch current
        stream, which the layer then runs on (ordered after the work queued
        there; the call returns when the layer is done). JAX arrays are made
        ready first; other arrays run on the runtime's own stream."""
        if not self.signature.gpu or like is None:
            return None
        kind = _framework(like)
        if kind == "torch" and like.is_cuda:
            import torch
            return torch.cuda.current_stream(like.device).cuda_stream
        if kind in ("jax", "jaxlib") and hasattr(like, "block_until_ready"):
            like.block_until_ready()
        return None


class BoundArtifact:
    """An artifact with some inputs fixed (Artifact.bind); called with the rest, in order."""

    def __init__(self, artifact, bound):
        self.artifact, self._bound = artifact, bound
        self._free = [i for i in range(len(artifact.signature.inputs)) if i not in bound]

    @property
    def signature(self):
        return self.artifact.signature

    def __call__(self, *inputs, out=None):
        if len(inputs) != len(self._free):
            names = [self.signature.inputs[i].name for i in self._free]
            raise ArtifactCallError(f"takes {len(self._free)} inputs ({', '.join(names)}), got {len(inputs)}")
        by_index = dict(self._bound)
        by_index.update(zip(self._free, inputs))
        return self.artifact._call(by_index, out)


def load(path, report=None):
    """Loads the artifact at `path` (a lib<name>.so written by moe-compile)."""
    return Artifact(path, report)
