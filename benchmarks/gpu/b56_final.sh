#!/usr/bin/env bash
# Kept as the record of the B5 and B6 final runs of 2026-11-22 (commits adac3ce and 2454c34), replaced in RESULTS.md by
# the runs of 2026-11-24; for new runs use b15_gpu.sh (B1, B5) and b6_gpu.sh (B6).
# B5 (α = 1) and B6 final runs on a GPU machine, each run its own process side by side.
set -u
out=${1:?output folder}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
cd benchmarks
chosen='{"eps": 5.0, "entropy_weight": 0.0}'
for s in 0 1 2; do
  python3 b5_cluster.py --device cuda --eval-every 5 --datasets mnist-10k --epochs 100 --seeds $s --alphas 1 \
    --out "$out/b5-mnist-a1-s$s.json" > "$out/b5-mnist-a1-s$s.log" 2>&1 &
  for m in ce vat; do
    python3 b6_semisup.py --device cuda --seeds $s --methods $m --chosen "$chosen" \
      --out "$out/b6-semi-$m-s$s.json" > "$out/b6-semi-$m-s$s.log" 2>&1 &
  done
done
for s in 1 2; do
  python3 b5_cluster.py --device cuda --eval-every 5 --datasets fashion-mnist --epochs 20 --seeds $s --alphas 1 \
    --out "$out/b5-fashion-a1-s$s.json" > "$out/b5-fashion-a1-s$s.log" 2>&1 &
done
for m in ce vat; do
  python3 b6_semisup.py --device cuda --seeds 0 --methods $m --chosen "$chosen" --full --no-semi \
    --out "$out/b6-full-$m-s0.json" > "$out/b6-full-$m-s0.log" 2>&1 &
done
wait
