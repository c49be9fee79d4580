#!/usr/bin/env bash
# Installs, builds, and runs the main job end to end on a bundled model: the
# Hugging Face Mixtral causal LM (tiny random weights) that torch.onnx
# exported (test/Onnx/Inputs/hf/mixtral.onnx). It imports the ONNX graph,
# shows the MoE layers recognised and what moe-optimize changes (the cost
# report before and after), compiles and runs the whole model on sample
# token ids, and checks the logits against onnxruntime's, bundled in
# examples/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/build.sh"
BUILD="${MOE_BUILD_DIR:-$ROOT/build}"
BIN="$BUILD/bin"
MODEL="$ROOT/test/Onnx/Inputs/hf/mixtral.onnx"
OUT="$BUILD/example"
mkdir -p "$OUT"
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
total=$(date +%s%N)

echo "[example] model: ${MODEL#"$ROOT"/} (Mixtral causal LM, torch.onnx export, token ids -> logits)"
start=$(date +%s%N)
"$BIN/moe-translate" --import-onnx "$MODEL" -o "$OUT/mixtral.mlir"
layers=$(grep -c " = moe.layer " "$OUT/mixtral.mlir" || true)
echo "[example] 1. import: $layers MoE layers recognised ($(ms_since "$start") ms):"
grep -o "moe.layer .*" "$OUT/mixtral.mlir" |
  sed -E 's/.*activation = #moe.activation<([a-z_]+)>, experts = \[([^]]*)\], routing = #moe.routing<([^>]*)>.*/     moe.layer \1, experts [\2], routing <\3>/' |
  sort | uniq -c | sed 's/^ */     /'

start=$(date +%s%N)
"$BIN/moe-opt" --moe-optimize "$OUT/mixtral.mlir" -o "$OUT/mixtral.opt.mlir"
echo "[example] 2. moe-optimize ($(ms_since "$start") ms); the MoE ops of each layer, and the cost of all for 16 tokens"
echo "             (moe-cost-report):"
report() { "$BIN/moe-opt" --moe-cost-report=tokens=16 "$1" -o /dev/null 2>&1; }
ops() { report "$1" | awk '$1 ~ /^moe\./ && $1 != "moe.yield" && $2 == "line" { print $1 }' | sort | uniq -c |
        awk -v layers="$layers" '{ n = $1 / layers; printf "%s%s%s", sep, $2, (n > 1 ? " x" n : ""); sep = ", " }'; }
printf '     %-10s %s\n' before: "$(ops "$OUT/mixtral.mlir")" after: "$(ops "$OUT/mixtral.opt.mlir")"
printf '     %-10s %12s %12s %14s %18s\n' "" "GEMM FLOP" "other FLOP" "weight bytes" "activation bytes"
for stage in mixtral mixtral.opt; do
  report "$OUT/$stage.mlir" | awk -v name="$([ "$stage" = mixtral ] && echo before || echo after)" \
    '$1 == "total" { printf "     %-10s %12s %12s %14s %18s\n", name, $2, $3, $4, $5 }'
done

echo "[example] 3. compile and run the whole model on examples/mixtral_input_ids.npy [2, 8],"
echo "             checked against onnxruntime's logits (examples/mixtral_logits.npy):"
"$BIN/moe-run" "$MODEL" --input input_ids="$ROOT/examples/mixtral_input_ids.npy" \
  --reference "$ROOT/examples/mixtral_logits.npy" --output-dir "$OUT" --repeat 5 --warmup 1 | sed 's/^/     /'
echo "[example] done in $(ms_since "$total") ms; outputs in ${OUT#"$ROOT"/}/"
