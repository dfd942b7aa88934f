"""B4 — choose iCaRL's settings on held-out training images, never on the test set.

6,000 of Fashion-MNIST's 60,000 training images are set aside (seeded) and serve as the test set of a
split of the other 54,000 into B4's five experiences; iCaRL (B4's recipe: SimpleNet, 5 epochs per
experience, 2,000 exemplars) runs once per candidate setting and is scored on the held-out images after
the last experience. The setting with the best held-out accuracy becomes the default that B4 then
measures on the real test set. Candidates run two at a time, one torch thread each.

python benchmarks/b4_icarl_select.py [--quick]
python benchmarks/b4_icarl_select.py --selections herding kernel-herding random --bandwidths 0.1 0.25 1.0 \
    --distill-weights 0.5 --metrics mahalanobis --seeds 0 1 --out benchmarks/results/b4_icarl_select-exemplars.json

With several seeds every candidate runs once per seed and is ranked by its mean held-out accuracy.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT, base_parser, write_results

HELD_OUT = 6000
GRID = {"distill_weight": [1.0, 0.5, 0.25, 0.1], "metric": ["cosine", "mahalanobis"], "layer": ["features"],
        "selection": ["herding", "kernel-herding", "random"]}
POWER = {"features": 1.0, "pre-fc": 0.5}  # pre-fc ReLU maps get Tukey's square root, as in the Gaussian strategy


def worker(params: dict, seed: int, quick: bool, out: str) -> None:
    import torch

    torch.set_num_threads(1)
    from owlearn.continual import b4_config, make_strategy, run_continual
    from owlearn.continual.scenarios import class_incremental
    from owlearn.data.sources import load_dataset

    held_out, train = load_dataset("fashion-mnist", "train").random_split(HELD_OUT, seed=123)
    if quick:
        held_out, train = held_out.subset(torch.arange(1000)), train.subset(torch.arange(6000))
    scenario = class_incremental(train, held_out, 5, name="split fashion-mnist train, held-out training images")
    t0 = time.perf_counter()
    result = run_continual(scenario, make_strategy("icarl", memory_size=2000, **params),
                           config=b4_config(seed=seed, epochs=1 if quick else 5))
    doc = result.to_json()
    Path(out).write_text(json.dumps({"params": params, "seed": seed, "held_out_accuracy": doc["final_accuracy"],
                                     "seen_accuracy": doc["seen_accuracy"], "seconds": time.perf_counter() - t0}))


def run_candidate(params: dict, seed: int, quick: bool) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    try:
        subprocess.run([sys.executable, __file__, "--worker", json.dumps(params), "--seeds", str(seed),
                        "--worker-out", out] + (["--quick"] if quick else []), check=True, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        return json.loads(Path(out).read_text())
    finally:
        Path(out).unlink(missing_ok=True)


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--distill-weights", type=float, nargs="+", default=GRID["distill_weight"])
    p.add_argument("--metrics", nargs="+", default=GRID["metric"], choices=GRID["metric"])
    p.add_argument("--layers", nargs="+", default=GRID["layer"], choices=list(POWER),
                   help="feature space of herding and the nearest-mean rule (pre-fc: with the square root)")
    p.add_argument("--selections", nargs="+", default=None, choices=GRID["selection"],
                   help="exemplar selection rules to compare (default: iCaRL's default only)")
    p.add_argument("--bandwidths", type=float, nargs="+", default=[0.25],
                   help="kernel widths of kernel herding, times the median distance")
    p.add_argument("--parallel", type=int, default=2, help="candidates run at once (one thread each)")
    p.set_defaults(seeds=[0])
    p.add_argument("--worker", help="(internal)")
    p.add_argument("--worker-out", help="(internal)")
    args = p.parse_args()
    if args.worker:
        worker(json.loads(args.worker), args.seeds[0], args.quick, args.worker_out)
        return
    started = time.time()
    selections = [{}] if args.selections is None else [
        {"selection": sel} if sel != "kernel-herding" else {"selection": sel, "bandwidth": b}
        for sel in args.selections for b in (args.bandwidths if sel == "kernel-herding" else [None])]
    candidates = [{"distill_weight": w, "metric": m} | ({} if layer == "features" else
                                                       {"layer": layer, "power": POWER[layer]}) | chosen_selection
                  for layer, w, m, chosen_selection in itertools.product(args.layers, args.distill_weights,
                                                                         args.metrics, selections)]
    jobs = [(c, seed) for c in candidates for seed in args.seeds]
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(pool.map(lambda job: run_candidate(job[0], job[1], args.quick), jobs))
    for r in runs:
        print(f"{r['params']} seed {r['seed']}: held-out accuracy {r['held_out_accuracy']:.4f} "
              f"({r['seconds']:.0f} s)", flush=True)
    mean = {json.dumps(c): sum(r["held_out_accuracy"] for r in runs if r["params"] == c) / len(args.seeds)
            for c in candidates}
    best = json.loads(max(mean, key=mean.get))
    print(f"chosen: {best} (mean held-out accuracy {max(mean.values()):.4f})")
    config = {"quick": args.quick, "seed": args.seeds[0], "seeds": args.seeds, "held_out_images": HELD_OUT,
              "held_out_seed": 123, "memory_size": 2000, "epochs": 1 if args.quick else 5,
              "grid": {"distill_weight": args.distill_weights, "metric": args.metrics, "layer": args.layers,
                       "selection": args.selections, "bandwidth": args.bandwidths}}
    write_results("b4_icarl_select", config, {"runs": runs, "chosen": best}, started, args.out)


if __name__ == "__main__":
    main()
