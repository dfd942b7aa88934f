#!/usr/bin/env bash
# B1 and B5 (current recipe: 16x16 images, k-means restart of the main sub-heads, with and without self-labelling) on a GPU machine, every run its
# own process side by side, sized to finish inside one 10-minute device command.
#   bash benchmarks/gpu/b15_gpu.sh OUT
# Writes OUT/b1_supervised-gpu.json, OUT/b5-*.json and their logs; copy b1_supervised-gpu.json to
# benchmarks/results/ and merge the B5 files with benchmarks/gpu/merge.py (as for b56_final.sh), then run
# benchmarks/report.py.
set -u
out=${1:?output folder}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
cd benchmarks
python3 b1_supervised.py --device cuda --out "$out/b1_supervised-gpu.json" > "$out/b1.log" 2>&1 &
for s in 0 1 2; do
  # the CPU recipe (40 epochs, restart for the last 10), then the longer training a GPU affords
  python3 b5_cluster.py --device cuda --datasets mnist-10k --alphas 1 --epochs 40 --restart-epochs 10 --seeds $s \
    --tag gpu --out "$out/b5-mnist-e40-s$s.json" > "$out/b5-mnist-e40-s$s.log" 2>&1 &
  python3 b5_cluster.py --device cuda --datasets mnist-10k --alphas 1 --epochs 40 --restart-epochs 10 \
    --self-label-epochs 30 --seeds $s --tag gpu-selflabel --out "$out/b5-mnist-sl-s$s.json" > "$out/b5-mnist-sl-s$s.log" 2>&1 &
  python3 b5_cluster.py --device cuda --datasets mnist-10k --alphas 1 --epochs 150 --restart-epochs 30 --seeds $s \
    --tag gpu-e150 --out "$out/b5-mnist-e150-s$s.json" > "$out/b5-mnist-e150-s$s.log" 2>&1 &
  python3 b5_cluster.py --device cuda --datasets fashion-mnist --alphas 1 --epochs 30 --restart-epochs 5 --seeds $s \
    --tag gpu --out "$out/b5-fashion-e30-s$s.json" > "$out/b5-fashion-e30-s$s.log" 2>&1 &
done
wait
tail -n 3 "$out"/*.log
