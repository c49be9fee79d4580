#!/usr/bin/env bash
# Installs, builds, and runs the main job on the bundled example: moe-opt
# decomposes a Mixtral-8x7B-shaped MoE layer into routing, dispatch, expert
# and combine ops.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/build.sh"
BUILD="${MOE_BUILD_DIR:-$ROOT/build}"
echo "[example] moe-opt --moe-decompose examples/mixtral_layer.mlir"
start=$(date +%s%N)
"$BUILD/bin/moe-opt" --moe-decompose "$ROOT/examples/mixtral_layer.mlir"
echo "[example] done in $(( ($(date +%s%N) - start) / 1000000 )) ms"
