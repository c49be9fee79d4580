#!/usr/bin/env bash
# Installs, builds and runs the whole test suite (lit + FileCheck); prints
# lit's summary and a closing "N passed, N failed" line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/build.sh"
BUILD="${MOE_BUILD_DIR:-$ROOT/build}"

# The numerical tests compare with numpy, onnxruntime and JAX (and build
# models with onnx): install them when missing.
PYTHON="${MOE_PYTHON:-$(command -v python3)}"
if ! "$PYTHON" -c "import numpy, onnx, onnxruntime, jax, pytest, torch, transformers, onnxscript" 2>/dev/null; then
  echo "[test] installing python/requirements.txt"
  "$PYTHON" -m pip install -q -r "$ROOT/python/requirements.txt"
fi
export MOE_PYTHON="$PYTHON"

# The Python package as users install it (pyproject.toml: reuses build/),
# checked from outside the checkout.
echo "[test] pip install . (the moe_compiler Python package)"
pip_log="$(mktemp)"
if ! "$PYTHON" -m pip install -q "$ROOT" > "$pip_log" 2>&1; then
  cat "$pip_log"; rm -f "$pip_log"; exit 1
fi
rm -f "$pip_log"
(cd /tmp && env -u PYTHONPATH -u MOE_COMPILER_BIN "$PYTHON" "$ROOT/scripts/python-install-check.py")

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
/usr/lib/llvm-22/bin/lit -sv "$BUILD/test" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
count() { grep -E "^ *$1( Tests)? *:" "$log" | grep -oE '[0-9]+' | head -1 || true; }
passed=$(count Passed); failed=$(count Failed); unsupported=$(count Unsupported)
echo "${passed:-0} passed, ${failed:-0} failed, ${unsupported:-0} unsupported (need a GPU driver or a sanitizer build)"
exit "$rc"
