#!/usr/bin/env python3
"""Prints a serialized JAX/StableHLO program as StableHLO text that moe tools read.

Accepts either
  * a StableHLO portable artifact (MLIR bytecode of the VHLO dialect, as in
    `jax.export.Exported.mlir_module_serialized`), or
  * a serialized `jax.export.Exported` (the flatbuffer `Exported.serialize()`
    writes).
Needs jaxlib (pip install "jax[cpu]"), which ships the StableHLO dialects;
this project cannot read bytecode itself (docs/stablehlo.md).

  scripts/stablehlo-to-text.py model.bc > model.mlir
"""

import sys


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write(__doc__)
        return 2
    data = open(argv[1], "rb").read()
    try:
        from jax import export
        from jaxlib.mlir import ir
        from jaxlib.mlir.dialects import stablehlo
    except ImportError as e:
        sys.stderr.write(f"stablehlo-to-text: needs jax and jaxlib ({e}); pip install 'jax[cpu]'\n")
        return 1
    if data[:4] == b"ML\xefR":  # MLIR bytecode: a portable artifact
        with ir.Context() as context:
            stablehlo.register_dialect(context)
            module = stablehlo.deserialize_portable_artifact(context, data)
            print(module)
        return 0
    try:
        print(export.deserialize(bytearray(data)).mlir_module())
    except Exception as e:  # noqa: BLE001 - any parse failure is the same answer
        sys.stderr.write(f"stablehlo-to-text: {argv[1]} is neither a StableHLO portable artifact "
                         f"nor a serialized jax.export.Exported ({type(e).__name__}: {e})\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
