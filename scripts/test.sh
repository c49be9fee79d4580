#!/usr/bin/env bash
# Installs, builds and runs the whole test suite (lit + FileCheck); prints lit's summary.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/build.sh"
BUILD="${MOE_BUILD_DIR:-$ROOT/build}"
/usr/lib/llvm-22/bin/lit -sv "$BUILD/test"
