#!/usr/bin/env bash
# B6 on a GPU machine, in two parts that each fit one 10-minute device command:
#   bash benchmarks/gpu/b6_gpu.sh OUT select   the selection grid on the held-out images (seed 0, every setting its
#                                              own process, side by side), then the choice (OUT/choose.log)
#   bash benchmarks/gpu/b6_gpu.sh OUT final    CE only and CE + VAT for seeds 0-2 with the chosen setting, and full
#                                              supervision; the choice is OUT/b6_semisup-select.json's, or CHOSEN
#   bash benchmarks/gpu/b6_gpu.sh OUT          both
# EPOCHS sets every run's epochs, CE and VAT alike (default 10). Merge the final runs with benchmarks/gpu/merge.py
# as for b56_final.sh.
set -u
out=$(realpath -m "${1:?output folder}")
part=${2:-all}
epochs=${EPOCHS:-10}
mkdir -p "$out/select"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
cd benchmarks
if [ "$part" = select ] || [ "$part" = all ]; then
  n=$(python3 -c "import b6_semisup; print(len(b6_semisup.GRID))")
  for i in $(seq 0 "$n"); do
    python3 b6_semisup.py --device cuda --stage select --grid-index "$i" --epochs "$epochs" \
      --out "$out/select/b6_semisup-select-$i.json" > "$out/select/$i.log" 2>&1 &
  done
  wait
  python3 b6_semisup.py --stage choose --out "$out/select" | tee "$out/choose.log"
  cp results/b6_semisup-select.json "$out/"
fi
if [ "$part" = final ] || [ "$part" = all ]; then
  chosen=${CHOSEN:-$(python3 -c "import json, sys; print(json.dumps(json.load(open(sys.argv[1]))['results']['chosen']))" \
    "$out/b6_semisup-select.json")}
  echo "chosen: $chosen"
  for s in 0 1 2; do
    for m in ce vat; do
      python3 b6_semisup.py --device cuda --seeds $s --methods $m --chosen "$chosen" --epochs "$epochs" \
        --out "$out/b6-semi-$m-s$s.json" > "$out/b6-semi-$m-s$s.log" 2>&1 &
    done
  done
  for m in ce vat; do
    python3 b6_semisup.py --device cuda --seeds 0 --methods $m --chosen "$chosen" --epochs "$epochs" --full --no-semi \
      --out "$out/b6-full-$m-s0.json" > "$out/b6-full-$m-s0.log" 2>&1 &
  done
  wait
fi
