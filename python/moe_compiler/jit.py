"""jit(): a JAX function compiled by moe_compiler once per argument
signature, as jax.jit does: the StableHLO path takes static shapes, so each
new token count (or dtype) is its own artifact, kept for the next call."""

import threading

from .compiler import compile as _compile


class Jitted:
    """Call it like the function: the first call with a new signature
    (shapes and dtypes of the arguments) compiles, later ones reuse.
    `artifacts` maps each signature to its Artifact."""

    def __init__(self, fn, options):
        self.fn, self.options = fn, options
        self.artifacts = {}
        self._lock = threading.Lock()

    def __call__(self, *args):
        key = tuple((tuple(a.shape), str(a.dtype)) for a in args)
        with self._lock:
            artifact = self.artifacts.get(key)
            if artifact is None:
                import jax
                specs = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in key]
                artifact = self.artifacts[key] = _compile(self.fn, specs, **self.options)
        return artifact(*args)


def jit(fn=None, **options):
    """`moe_compiler.jit(fn, target="cpu", ...)` or `@moe_compiler.jit(...)`:
    `fn` (a JAX function of arrays) compiled per argument signature with
    compile()'s options. Arguments are NumPy or JAX arrays (or anything with
    .shape, .dtype and __dlpack__); results come back as the inputs' kind."""
    if fn is None:
        return lambda f: Jitted(f, options)
    return Jitted(fn, options)
