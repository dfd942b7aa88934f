#!/usr/bin/env bash
# B7's GPU settings on a GPU machine: eager, torch.compile, bfloat16 autocast and both, for B4's SimpleNet and
# B1's ConvNet, on all 60,000 Fashion-MNIST training images (GPU epochs take seconds).
#   bash benchmarks/gpu/b7_gpu.sh OUT
# Writes OUT/b7_compile-gpu.json and its log; copy the JSON to benchmarks/results/ and run benchmarks/report.py,
# which renders it below the CPU run.
set -eu
out=${1:?output folder}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
cd benchmarks
python3 b7_compile.py --device cuda --bf16 --images 60000 --epochs 4 --repeats 3 \
  --out "$out/b7_compile-gpu.json" 2>&1 | tee "$out/b7_compile-gpu.log"
