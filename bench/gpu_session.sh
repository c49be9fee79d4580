#!/usr/bin/env bash
# One device call: the GPU numerical check, then the layer benchmark, results under $OUT.
# Here first: python3 bench/gpu_check.py prepare && python3 bench/gpu_layer_bench.py prepare
# (and python3 bench/ep_gpu_check.py prepare for the expert-parallel NCCL check)
# then run this on the GPU machine carrying bench/out (see docs/gpu.md, "On a GPU").
set -u
OUT=${OUT:-bench/out/session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
BUDGET=${BUDGET:-440}  # seconds for the whole script; the benchmark gets what the checks leave
CHECK=bench/out/gpu-check BENCH=bench/out/gpu-bench
# At most 8 files come back from the device machine: the card's state goes into check.log.
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv | tee "$OUT/check.log"
timeout 150 python3 "$CHECK/gpu_check.py" run --dir "$CHECK" 2>&1 | tee -a "$OUT/check.log"
cp "$CHECK/results.md" "$OUT/check.md" 2>/dev/null
# The expert-parallel GPU artifact, one rank exchanging its rows over NCCL.
if [ -d bench/out/ep-gpu ]; then
  timeout 120 python3 bench/out/ep-gpu/ep_gpu_check.py run --dir bench/out/ep-gpu 2>&1 | tee "$OUT/ep.log" | tail -9
fi
# Memory errors and races in two small layers (mma.sync f32, wgmma bf16), where the tool is there.
if command -v compute-sanitizer > /dev/null; then
  for c in "mixtral_f32/libgpu.so" "mixtral_bf16/libgpu_wgmma.so"; do
    d=$CHECK/$(dirname $c)
    timeout 60 compute-sanitizer --tool memcheck --print-limit 5 "$CHECK/moe-exec" "$CHECK/$c" \
      $(for i in 0 1 2 3; do echo --input $d/input_$i.npy; done) --repeat 1 --warmup 0 2>&1 | tail -8
  done > "$OUT/tools.log" 2>&1
  tail -20 "$OUT/tools.log"
fi
# Where the time goes: each kernel's mean time (moe-exec --profile-kernels), decode and prefill.
for model in qwen3-30b-a3b mixtral-8x7b; do
  for tokens in 1 8192; do
    hidden=$(sed -n 's/.*tensor<?x\([0-9]*\)xbf16>.*/\1/p' "$BENCH/$model.mlir" | head -1)
    timeout 60 "$BENCH/moe-exec" "$BENCH/lib${model}_wgmma.so" --tokens $tokens --warmup 3 --repeat 10 \
      --fill 2=0.01 --fill 3=0.01 --random-scale "$(python3 -c "print(f'{(3 / $hidden ** 0.5) ** 0.5:.4f}')")" \
      --profile-kernels 2>&1 | sed "s/^/$model $tokens: /"
  done
done >> "$OUT/tools.log" 2>&1
left=$((BUDGET - SECONDS))
timeout $((left > 40 ? left - 10 : 30)) python3 "$BENCH/gpu_layer_bench.py" run --dir "$BENCH" --repeat 10 \
  --deadline-s $((left > ${AB_RESERVE:-130} + 30 ? left - ${AB_RESERVE:-130} : 5)) 2>&1 | tee "$OUT/bench.log" | tail -40
# The same layers as built before a kernel change, where they were kept (bench/out/gpu-bench-old):
# moe-exec medians side by side (AB_DIRS: the folders compared), in this run.
if [ -d bench/out/gpu-bench-old ]; then
  for model in mixtral-8x7b deepseek-v3 qwen3-30b-a3b olmoe-1b-7b; do
    fills="--fill 2=0.01 --fill 3=0.01"
    [ $model = deepseek-v3 ] && fills="$fills --fill 4=0.01 --fill 5=0.01 --fill 6=0.01"
    # Unit-variance logits, as gpu_layer_bench.py gives moe-exec.
    hidden=$(sed -n 's/.*tensor<?x\([0-9]*\)xbf16>.*/\1/p' "$BENCH/$model.mlir" | head -1)
    fills="$fills --random-scale $(python3 -c "print(f'{(3 / $hidden ** 0.5) ** 0.5:.4f}')")"
    for tokens in 1 16 128 1024 8192; do
      for v in "" _wgmma; do
        [ $((BUDGET - SECONDS)) -lt 15 ] && break 3
        line="$model $tokens ${v:-_mma}"
        for d in ${AB_DIRS:-bench/out/gpu-bench-old $BENCH}; do
          ms=$(timeout 60 "$d/moe-exec" "$d/lib$model$v.so" --tokens $tokens --warmup 3 --repeat 10 $fills 2>&1 |
               sed -n 's/.*median \([0-9.]*\) ms.*/\1/p')
          line="$line ${ms:-fail}"
        done
        echo "$line"
      done
    done
  done | tee "$OUT/ab.txt"
fi
# results.md is the table bench.log ends with: at most 8 files come back.
cp "$BENCH"/results.json "$BENCH"/time_vs_tokens.png "$OUT/" 2>/dev/null
ls "$OUT"
