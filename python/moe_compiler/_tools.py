"""Where the compiler's executables are."""

import os
import shutil

from .errors import MoeCompilerError

_PACKAGE_BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin")


def tool(name):
    """The path of the tool `name` (moe-compile): from $MOE_COMPILER_BIN, else
    the one installed with this package, else the one on PATH."""
    candidates = []
    if os.environ.get("MOE_COMPILER_BIN"):
        candidates.append(os.path.join(os.environ["MOE_COMPILER_BIN"], name))
    candidates.append(os.path.join(_PACKAGE_BIN, name))
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return found
    raise MoeCompilerError(f"{name} not found (looked in {', '.join(candidates)} and on PATH): install the package "
                           f"with `pip install .` in the checkout, or set MOE_COMPILER_BIN to a build's bin directory")
