#!/usr/bin/env bash
# Kept as the record of the IIC recipe sweep and first B6 grid of 2026-11-22 (commit adac3ce); RESULTS.md still cites
# its α = 10 recipes. For new runs use b15_gpu.sh (B1, B5) and b6_gpu.sh (B6).
# IIC recipe sweep and the B6 selection grid on a GPU machine, every run its own process side by side.
# Usage (on the GPU machine, repo root): bash benchmarks/gpu/b5_sweep.sh OUTDIR
set -u
out=${1:?output folder}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
cd benchmarks
common="--device cuda --eval-every 5"
run() { tag=$1; shift; python3 b5_cluster.py $common --tag "$tag" --out "$out/b5-$tag.json" "$@" > "$out/b5-$tag.log" 2>&1 & }
run base     --datasets mnist-10k --epochs 100 --seeds 0 1 2 --alphas 10 1
run size28   --datasets mnist-10k --epochs 100 --seeds 0 --alphas 10 --size 0
run size20   --datasets mnist-10k --epochs 100 --seeds 0 --alphas 10 --size 20
run rep4     --datasets mnist-10k --epochs 100 --seeds 0 --alphas 10 --repeats 4
run lr3e-4   --datasets mnist-10k --epochs 100 --seeds 0 --alphas 10 --lr 3e-4
run noover   --datasets mnist-10k --epochs 100 --seeds 0 --alphas 10 --overclusters 0
run plain    --datasets mnist-10k --epochs 100 --seeds 0 --alphas 10 --size 0 --repeats 1 --batch-size 700 --lr 3e-4
run fashion  --datasets fashion-mnist --epochs 20 --seeds 0 1 2 --alphas 10
run fashion-a1 --datasets fashion-mnist --epochs 20 --seeds 0 --alphas 1
for i in 0 1 2 3 4 5 6; do
  python3 b6_semisup.py --stage select --grid-index $i --device cuda --out "$out/b6_semisup-select-$i.json" \
    > "$out/b6-select-$i.log" 2>&1 &
done
wait
