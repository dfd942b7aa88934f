#!/usr/bin/env bash
# B1 and B5 (current recipe: 16x16 images, k-means restart of the main sub-heads, with and without self-labelling) on
# a GPU machine, every run its own process side by side, each part sized to finish inside one 10-minute device command.
#   bash benchmarks/gpu/b15_gpu.sh OUT [PART...]
# PART: b1 (B1 on the GPU), e40 (the CPU recipe: 40 epochs, restart for the last 10), sl (e40 then 30 epochs of
# self-labelling), e150 (the longer training a GPU affords), fashion (Fashion-MNIST, 30 epochs); default all.
# Writes OUT/b1_supervised-gpu.json, OUT/b5-*.json and their logs; copy b1_supervised-gpu.json to
# benchmarks/results/ and merge the B5 files with benchmarks/gpu/merge.py (as for b56_final.sh), then run
# benchmarks/report.py.
set -u
out=$(realpath -m "${1:?output folder}")
shift
parts=${*:-b1 e40 sl e150 fashion}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
cd benchmarks
has() { [[ " $parts " == *" $1 "* ]]; }
b5() { name=$1; shift; python3 b5_cluster.py --device cuda --alphas 1 "$@" --out "$out/b5-$name.json" > "$out/b5-$name.log" 2>&1 & }
has b1 && { python3 b1_supervised.py --device cuda --out "$out/b1_supervised-gpu.json" > "$out/b1.log" 2>&1 & }
for s in 0 1 2; do
  has e40 && b5 mnist-e40-s$s --datasets mnist-10k --epochs 40 --restart-epochs 10 --seeds $s --tag gpu
  has sl && b5 mnist-sl-s$s --datasets mnist-10k --epochs 40 --restart-epochs 10 --self-label-epochs 30 --seeds $s \
    --tag gpu-selflabel
  has e150 && b5 mnist-e150-s$s --datasets mnist-10k --epochs 150 --restart-epochs 30 --seeds $s --tag gpu-e150
  has fashion && b5 fashion-e30-s$s --datasets fashion-mnist --epochs 30 --restart-epochs 5 --seeds $s --tag gpu
done
wait
tail -n 3 "$out"/*.log
