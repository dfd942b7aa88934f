"""B4 — class-incremental training (Split Fashion-MNIST) and its domain-incremental variant.

Split Fashion-MNIST in 5 experiences of 2 classes in natural order, one 10-way head, no task identity
at test time; SimpleNet, SGD lr 0.01 momentum 0.9, batch 64, 5 epochs per experience. Strategies:
naive, joint, EWC, online EWC, LwF, iCaRL (2,000 exemplars), replay (2,000), Gaussian. Domain-incremental
variant: Fashion-MNIST → MNIST-10k split with naive fine-tuning and EWC (task-1 accuracy after task 2).

Every (strategy, seed) runs in its own single-threaded subprocess, so its CPU seconds and peak memory
(``ru_maxrss``) are its own; the same holds for ``b4_avalanche.py``, which runs the Avalanche
counterparts for the side-by-side comparison.

Full run:   python benchmarks/b4_continual.py
Smoke run:  python benchmarks/b4_continual.py --quick
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import RESULTS, ROOT, SHARED_DATA, base_parser, mean_std, write_results

CLASS_STRATEGIES = ["naive", "joint", "ewc", "online-ewc", "lwf", "icarl", "replay", "gaussian"]
DOMAIN_STRATEGIES = ["naive", "ewc", "online-ewc"]
QUICK = {"train_limit": 6000, "test_limit": 2000, "epochs": 1}
FIGURES = RESULTS / "b4"


def worker(args) -> None:
    """One (scenario, strategy, seed) run in this process; writes its measurements to ``args.worker_out``."""
    import torch

    torch.set_num_threads(args.threads)
    from owlearn.continual import b4_config, fashion_to_mnist, make_strategy, run_continual, split_fashion_mnist

    limits = {k: QUICK[k] for k in ("train_limit", "test_limit")} if args.quick else {}
    epochs = QUICK["epochs"] if args.quick else args.epochs
    if args.scenario == "class":
        scenario = split_fashion_mnist(**limits)
    else:  # the MNIST test set of this project's machines, unless OWLEARN_DATA names another folder
        scenario = fashion_to_mnist(mnist_dir=None if os.environ.get("OWLEARN_DATA") else SHARED_DATA, **limits)
    params = json.loads(args.params)
    strategy = make_strategy(args.worker, **params)
    config = b4_config(seed=args.seed, device=args.device, epochs=epochs)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = run_continual(scenario, strategy, config=config)
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    doc = result.to_json()
    doc.update(seed=args.seed, cpu_seconds=cpu_s, wall_seconds=wall_s, threads=torch.get_num_threads(),
               peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, params=params)
    Path(args.worker_out).write_text(json.dumps(doc))


def run_one(args, scenario: str, strategy: str, seed: int, params: dict) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    cmd = [sys.executable, __file__, "--worker", strategy, "--scenario", scenario, "--seed", str(seed),
           "--params", json.dumps(params), "--worker-out", out, "--threads", str(args.threads),
           "--epochs", str(args.epochs), "--device", args.device] + (["--quick"] if args.quick else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    try:
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)
        return json.loads(Path(out).read_text())
    finally:
        Path(out).unlink(missing_ok=True)


def summarise(runs: list[dict]) -> dict:
    def stat(key):
        values = [r[key] for r in runs if r[key] is not None]
        return mean_std(values) if values else None

    return {"runs": runs, "final_accuracy": stat("final_accuracy"), "average_accuracy": stat("average_accuracy"),
            "average_incremental_accuracy": stat("average_incremental_accuracy"), "forgetting": stat("forgetting"),
            "backward_transfer": stat("backward_transfer"), "cpu_seconds": stat("cpu_seconds"),
            "wall_seconds": stat("wall_seconds"), "peak_memory_mb": stat("peak_memory_mb"),
            "seen_accuracy_mean": [None if any(r["seen_accuracy"][i] is None for r in runs)
                                   else float(np.mean([r["seen_accuracy"][i] for r in runs]))
                                   for i in range(len(runs[0]["seen_accuracy"]))],
            "accuracy_matrix_mean": _mean_matrix([r["accuracy_matrix"] for r in runs])}


def _mean_matrix(matrices: list[list[list[float | None]]]) -> list[list[float | None]]:
    """Entry-wise mean over seeds; ``None`` where a run did not measure the entry (joint training)."""
    arr = np.array([[[np.nan if v is None else v for v in row] for row in m] for m in matrices], dtype=float)
    mean = arr.mean(axis=0)
    return [[None if np.isnan(v) else float(v) for v in row] for row in mean]


def figures_folder(out: Path | None, quick: bool) -> Path:
    """benchmarks/results/b4 for the results files in benchmarks/results; beside any other results file
    (a trial written to /tmp must not replace the figures RESULTS.md links)."""
    if out is not None and out.resolve().parent != RESULTS.resolve():
        return out.resolve().parent / f"{out.stem}-figures"
    return FIGURES if not quick else FIGURES / "quick"


def figures(results: dict, folder: Path) -> dict:
    """The accuracy-over-experiences plot (means over seeds) and, per strategy, per-class accuracy and
    confusion matrix after the last experience (seed of the first run)."""
    from owlearn.continual.plots import plot_per_class_accuracy, plot_strategies
    from owlearn.viz import plot_confusion_matrix

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"accuracy_over_experiences": plot_strategies(
        {name: {"seen_accuracy": r["seen_accuracy_mean"]} for name, r in results.items()},
        folder / "accuracy-over-experiences.png", title="B4: Split Fashion-MNIST, mean over seeds")}
    for name, r in results.items():
        run = r["runs"][0]
        paths[f"{name}/per_class"] = plot_per_class_accuracy(
            run["per_class_accuracy"], run["class_names"], folder / f"{name}-per-class.png",
            title=f"{name} (seed {run['seed']}): per-class accuracy after the last experience")
        paths[f"{name}/confusion"] = plot_confusion_matrix(
            np.asarray(run["final_confusion"]), run["class_names"], folder / f"{name}-confusion.png",
            title=f"{name} (seed {run['seed']}): confusion after the last experience")
    base = (ROOT / "benchmarks").resolve()
    return {k: str(Path(v).resolve().relative_to(base)) if Path(v).resolve().is_relative_to(base) else str(v)
            for k, v in paths.items()}


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--strategies", nargs="+", default=CLASS_STRATEGIES, choices=CLASS_STRATEGIES)
    p.add_argument("--domain-strategies", nargs="*", default=DOMAIN_STRATEGIES, choices=DOMAIN_STRATEGIES)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--memory-size", type=int, default=2000)
    p.add_argument("--ewc-strength", type=float, default=None, help="λ of EWC (default: the strategy's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each run (1: as the Avalanche anchors)")
    p.add_argument("--worker", help=argparse_hidden())
    p.add_argument("--scenario", default="class", help=argparse_hidden())
    p.add_argument("--seed", type=int, default=0, help=argparse_hidden())
    p.add_argument("--params", default="{}", help=argparse_hidden())
    p.add_argument("--worker-out", help=argparse_hidden())
    p.add_argument("--merge-into", type=Path, default=None,
                   help="replace only the strategies run now in this earlier results file (the others keep their "
                        "runs; a note records what was re-run, when and at which commit)")
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    started = time.time()
    if args.quick:
        args.seeds = args.seeds[:1]
    params = {"icarl": {"memory_size": args.memory_size}, "replay": {"memory_size": args.memory_size}}
    if args.ewc_strength is not None:
        params["ewc"] = params["online-ewc"] = {"strength": args.ewc_strength}
    results: dict = {}
    for name in args.strategies:
        runs = []
        for seed in args.seeds:
            run = run_one(args, "class", name, seed, params.get(name, {}))
            runs.append(run)
            print(f"{name} seed {seed}: final accuracy {run['final_accuracy']:.4f}, {run['cpu_seconds']:.0f} CPU s, "
                  f"peak {run['peak_memory_mb']:.0f} MB", flush=True)
        results[name] = summarise(runs)
    domain: dict = {}
    for name in args.domain_strategies:
        runs = []
        for seed in args.seeds:
            run = run_one(args, "domain", name, seed, params.get(name, {}))
            run["task1_after_task2"] = run["accuracy_matrix"][1][0]
            runs.append(run)
            print(f"domain {name} seed {seed}: task-1 accuracy after task 2 {run['task1_after_task2']:.4f} "
                  f"(after task 1: {run['accuracy_matrix'][0][0]:.4f})", flush=True)
        domain[name] = {**summarise(runs), "task1_after_task1": mean_std([r["accuracy_matrix"][0][0] for r in runs]),
                        "task1_after_task2": mean_std([r["task1_after_task2"] for r in runs]),
                        "task2_after_task2": mean_std([r["accuracy_matrix"][1][1] for r in runs])}
    if args.merge_into:
        merge_into(args.merge_into, results, domain, params, started)
        return
    paths = figures(results, figures_folder(args.out, args.quick)) if results else {}
    config = {"quick": args.quick, "seeds": args.seeds, "epochs": QUICK["epochs"] if args.quick else args.epochs,
              "limits": {k: QUICK[k] for k in ("train_limit", "test_limit")} if args.quick else None,
              "backbone": "simplenet", "batch_size": 64, "optimizer": "sgd (nesterov) momentum 0.9", "lr": 0.01,
              "schedule": "constant", "weight_decay": 0.0, "augment": "none", "threads": args.threads,
              "memory_size": args.memory_size, "params": params}
    write_results("b4_continual", config, {"class_incremental": results, "domain_incremental": domain,
                                           "figures": paths}, started, args.out)


def merge_into(path: Path, results: dict, domain: dict, params: dict, started: float) -> None:
    """Put the strategies just run into an earlier full results file, keeping the others' runs."""
    from owlearn._atomic import atomic_open

    from common import command_line, start_commit

    doc = json.loads(path.read_text())
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = command_line()
    for key, new in (("class_incremental", results), ("domain_incremental", domain)):
        doc["results"][key].update(new)
        for name in new:
            doc.setdefault("notes", []).append(
                f"{key.replace('_', '-')} {name} re-run at commit {start_commit()} on {when} "
                f"(`{command}`, {time.time() - started:.0f} s), params {params.get(name, {})}; "
                f"the other rows are from the run at commit {doc['commit']}.")
    doc["results"]["figures"] = figures(doc["results"]["class_incremental"],
                                        figures_folder(path, doc["config"].get("quick", False)))
    with atomic_open(path, "w") as fh:
        json.dump(doc, fh, indent=2)
    print(f"merged {', '.join([*results, *domain])} into {path}")


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
