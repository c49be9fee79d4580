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
        import jax
        leaves, tree = jax.tree_util.tree_flatten(args)
        key = (tree, tuple((tuple(a.shape), str(a.dtype)) for a in leaves))
        with self._lock:
            artifact = self.artifacts.get(key)
            if artifact is None:
                specs = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
                artifact = self.artifacts[key] = _compile(self.fn, specs, **self.options)
        return artifact(*args)


def jit(fn=None, **options):
    """`moe_compiler.jit(fn, target="cpu", ...)` or `@moe_compiler.jit(...)`:
    `fn` (a JAX function of arrays) compiled per argument signature with
    compile()'s options. Arguments are pytrees (a Flax params dict, tuples)
    of NumPy or JAX arrays; results come back in the function's output
    structure, as the inputs' kind of array."""
    if fn is None:
        return lambda f: Jitted(f, options)
    return Jitted(fn, options)
