#!/usr/bin/env bash
# Installs what the project needs (when missing), configures and builds it.
# Idempotent: a second run with nothing changed only asks ninja, which does nothing.
# MOE_BUILD_DIR, MOE_BUILD_TYPE, MOE_CMAKE_ARGS (extra configure flags) and
# MOE_EXTRA_PKGS (more Debian packages) serve other configurations
# (scripts/fuzz.sh: clang, libFuzzer, sanitizers).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MOE_BUILD_DIR:-$ROOT/build}"
LLVM_PREFIX=/usr/lib/llvm-22

need_pkgs=()
# libonnx-dev + libprotobuf-dev: the ONNX importer's protobuf classes; OpenMPI:
# the transport of expert-parallel CPU artifacts (libmoe_ep_runtime, mpirun in tests).
for p in llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools cmake ninja-build g++ python3 \
         libonnx-dev libprotobuf-dev protobuf-compiler libomp-22-dev libopenmpi-dev openmpi-bin \
         ${MOE_EXTRA_PKGS:-}; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "[build] installing Debian packages: ${need_pkgs[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if [ ! -f "$BUILD/build.ninja" ]; then
  echo "[build] configuring in $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja \
    -DCMAKE_BUILD_TYPE="${MOE_BUILD_TYPE:-Release}" \
    -DMLIR_DIR="$LLVM_PREFIX/lib/cmake/mlir" \
    -DLLVM_EXTERNAL_LIT="$LLVM_PREFIX/bin/lit" ${MOE_CMAKE_ARGS:-} >/dev/null
fi
start=$(date +%s)
# With no targets named: the tools and the generated docs (the tests read both).
if [ $# -eq 0 ]; then set -- all moe-doc; fi
ninja -C "$BUILD" "$@"
echo "[build] done in $(( $(date +%s) - start ))s"
