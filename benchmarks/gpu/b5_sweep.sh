#!/usr/bin/env bash
# IIC recipe sweep on a GPU machine: several configurations side by side, seed 0, MNIST-10k (and one
# Fashion-MNIST run). Usage (on the GPU machine, repo root): bash benchmarks/gpu/b5_sweep.sh OUTDIR
set -u
out=${1:?output folder}
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
cd benchmarks
common="--device cuda --seeds 0 --alphas 10 --eval-every 5"
run() { tag=$1; shift; python3 b5_cluster.py $common --tag "$tag" --out "$out/$tag.json" "$@" > "$out/$tag.log" 2>&1 & }
run base     --datasets mnist-10k --epochs 100
run alpha1   --datasets mnist-10k --epochs 100 --alphas 1
run size28   --datasets mnist-10k --epochs 100 --size 0
run size20   --datasets mnist-10k --epochs 100 --size 20
run rep4     --datasets mnist-10k --epochs 100 --repeats 4
run lr3e-4   --datasets mnist-10k --epochs 100 --lr 3e-4
run noover   --datasets mnist-10k --epochs 100 --overclusters 0
run bs128    --datasets mnist-10k --epochs 100 --batch-size 128
run plain    --datasets mnist-10k --epochs 100 --size 0 --repeats 1 --batch-size 700 --lr 3e-4
run fashion  --datasets fashion-mnist --epochs 20
wait
