#!/usr/bin/env bash
# Fuzzes the front ends and readers: builds the fuzz targets (tools/fuzz)
# with clang, libFuzzer, ASan and UBSan in build-fuzz/, seeds them from the
# test suite (scripts/fuzz-corpus.py) and runs each for a while. Findings
# (crash-*, timeout-*, oom-* inputs) land in build-fuzz/fuzz/findings/<target>/;
# the corpus grows in build-fuzz/fuzz/corpus/<target>/ across runs.
#
# usage: scripts/fuzz.sh [--seconds N] [--targets "moe-fuzz-onnx ..."] [--suite]
#   --seconds N   per target (default 60; 0: build only, no fuzzing)
#   --targets     a subset (default: all five)
#   --suite       afterwards, run the whole lit suite on this ASan + UBSan build
# Exit status 1 when any target found something. docs/fuzzing.md explains.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MOE_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
SECONDS_PER_TARGET=60
TARGETS="moe-fuzz-ir moe-fuzz-stablehlo moe-fuzz-onnx moe-fuzz-npy moe-fuzz-artifact-inputs"
SUITE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_PER_TARGET="$2"; shift 2 ;;
    --targets) TARGETS="$2"; shift 2 ;;
    --suite) SUITE=1; shift ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz.sh: unknown argument $1 (see --help)" >&2; exit 1 ;;
  esac
done

build_targets=(moe-fuzzers)
[ "$SUITE" = 1 ] && build_targets=(all moe-doc)
MOE_BUILD_DIR="$BUILD" \
MOE_EXTRA_PKGS="clang-22 libclang-rt-22-dev libfuzzer-22-dev" \
MOE_CMAKE_ARGS="-DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 -DMOE_ENABLE_FUZZING=ON" \
  "$ROOT/scripts/build.sh" "${build_targets[@]}"

PYTHON="${MOE_PYTHON:-$(command -v python3)}"
WORK="$BUILD/fuzz"
rm -rf "$WORK/seeds"
"$PYTHON" "$ROOT/scripts/fuzz-corpus.py" "$WORK/seeds" > /dev/null

# allow_user_poisoning=0: LLVM's allocators poison from inline header code (ours,
# instrumented) and unpoison from libMLIR (not): false use-after-poison.
export ASAN_OPTIONS="detect_leaks=0:allow_user_poisoning=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
found=0
summary=""
[ "$SECONDS_PER_TARGET" = 0 ] && TARGETS=""
for target in $TARGETS; do
  corpus="$WORK/corpus/$target"; findings="$WORK/findings/$target"; log="$WORK/$target.log"
  mkdir -p "$corpus" "$findings"
  dirs=("$corpus" "$WORK/seeds/$target")
  [ -d "$ROOT/test/Fuzz/regressions/$target" ] && dirs+=("$ROOT/test/Fuzz/regressions/$target")
  echo "[fuzz] $target for ${SECONDS_PER_TARGET}s (log: $log)"
  # -timeout: a hang is a finding; -malloc_limit_mb: so is one allocation a
  # file's claimed size asks for. Each finding is saved and the run goes on.
  set +e
  "$BUILD/bin/$target" "${dirs[@]}" -max_total_time="$SECONDS_PER_TARGET" -timeout=20 \
    -rss_limit_mb=4096 -malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/" \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 > "$log" 2>&1
  set -e
  execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo 0)
  n=$(find "$findings" -type f | wc -l)
  found=$((found + n))
  summary+=$(printf '%-26s %10s execs %7s edges %3s findings' "$target" "${execs:-0}" "${cov:-0}" "$n")$'\n'
done
if [ -n "$TARGETS" ]; then
  echo "[fuzz] summary (${SECONDS_PER_TARGET}s per target):"
  printf '%s' "$summary"
fi
if [ "$SUITE" = 1 ]; then
  echo "[fuzz] lit suite under ASan + UBSan"
  MOE_PYTHON="$PYTHON" /usr/lib/llvm-22/bin/lit -sv "$BUILD/test" || found=$((found + 1))
fi
if [ "$found" -gt 0 ]; then
  echo "[fuzz] findings in $WORK/findings: reproduce with $BUILD/bin/<target> FILE" >&2
  exit 1
fi
