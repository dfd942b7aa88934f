"""B5 — unsupervised clustering with IIC: MNIST-10k and Fashion-MNIST (70k), seeds 0-2.

Trained and evaluated on the same unlabeled images (as in the IIC paper). Labels are used only to
score: after every epoch (for the accuracy-against-time curve) and at the end (Hungarian accuracy,
NMI, ARI of the sub-head chosen by its loss, the mean over sub-heads and the best sub-head).

Full run:  python benchmarks/b5_cluster.py
Smoke run: python benchmarks/b5_cluster.py --quick
More seeds for an earlier file (same recipe; runs of other seeds kept):
           python benchmarks/b5_cluster.py --datasets fashion-mnist --alphas 1 --seeds 1 2 \
               --merge-into benchmarks/results/b5_cluster-fashion.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from owlearn.cluster.train import IICConfig, all_head_assignments, fit_iic
from owlearn.data.sources import load_dataset
from owlearn.metrics import ari, hungarian_accuracy, nmi

from common import SHARED_DATA, base_parser, mean_std, start_commit, write_results


def load(name: str):
    if name == "mnist-10k":
        return load_dataset("mnist", "test", data_dir=_data_dir())
    if name == "fashion-mnist":
        return load_dataset("fashion-mnist", "all")
    return load_dataset(name, "all")


def _data_dir():
    import os

    return None if os.environ.get("OWLEARN_DATA") else SHARED_DATA


def score(labels: np.ndarray, assignments: list[np.ndarray], chosen: int) -> dict:
    accs = [hungarian_accuracy(labels, a)[0] for a in assignments]
    return {"accuracy": accs[chosen], "nmi": nmi(labels, assignments[chosen]), "ari": ari(labels, assignments[chosen]),
            "sub_head_accuracies": accs, "best_sub_head_accuracy": max(accs),
            "mean_sub_head_accuracy": float(np.mean(accs)), "chosen_head": chosen}


def run(data, config: IICConfig, eval_every: int) -> dict:
    labels = data.labels.numpy()
    curve: list[dict] = []
    clock = {"train": 0.0, "last": time.perf_counter()}

    def on_epoch(trainer, epoch, logs):
        clock["train"] += time.perf_counter() - clock["last"]
        if (epoch + 1) % eval_every == 0 or epoch + 1 == config.epochs + config.self_label_epochs:
            assignments = all_head_assignments(trainer.model, data)
            s = score(labels, assignments, logs["best_head"])
            curve.append({"epoch": epoch + 1, "train_seconds": clock["train"], "loss": logs["loss"],
                          "accuracy": s["accuracy"], "best_sub_head_accuracy": s["best_sub_head_accuracy"]})
            print(f"  epoch {epoch + 1}: {clock['train']:.0f} s, loss {logs['loss']:.4f}, head {logs['best_head']}, "
                  f"acc {s['accuracy']:.4f} (best sub-head {s['best_sub_head_accuracy']:.4f})", flush=True)
        clock["last"] = time.perf_counter()

    result = fit_iic(data, config, progress=False, on_epoch=on_epoch)
    final = score(labels, all_head_assignments(result.model, data), result.best_head)
    return {**final, "train_seconds": clock["train"], "epochs_run": len(result.history), "curve": curve}


def summarise(dataset: str, alpha: float, images: int, runs: list[dict]) -> dict:
    return {
        "dataset": dataset, "alpha": alpha, "images": images, "runs": runs,
        "accuracy": mean_std([r["accuracy"] for r in runs]),
        "best_sub_head_accuracy": mean_std([r["best_sub_head_accuracy"] for r in runs]),
        "nmi": mean_std([r["nmi"] for r in runs]), "ari": mean_std([r["ari"] for r in runs]),
        "train_seconds": mean_std([r["train_seconds"] for r in runs]),
    }


# settings that change what a run measures; seeds, output and evaluation cadence do not
_RECIPE_KEYS = ("size", "repeats", "restart_epochs", "batch_size", "lr", "sub_heads", "overclusters", "epochs",
                "quick", "self_label_epochs", "self_label_threshold", "self_label_lr")
# what the files from before these settings existed ran
_RECIPE_DEFAULTS = {"self_label_epochs": 0, "self_label_threshold": 0.99, "self_label_lr": 1e-4}


def merge(earlier_path: Path, config: dict, results: dict) -> tuple[str, dict, dict]:
    """The earlier file's protocol name, the results with its runs of other seeds added, and where those
    runs came from.

    Refuses to mix recipes: a mean over seeds is only a mean if every seed ran the same recipe.
    """
    earlier = json.loads(earlier_path.read_text())
    before = {k: earlier["config"].get(k, _RECIPE_DEFAULTS.get(k)) for k in _RECIPE_KEYS}
    differ = {k: (before[k], config.get(k)) for k in _RECIPE_KEYS if before[k] != config.get(k)}
    if differ:
        raise SystemExit(f"--merge-into {earlier_path}: its recipe differs from this run's "
                         f"(setting: (earlier, now)) {differ}; run with the same settings or write a new file")
    merged = {key: dict(entry) for key, entry in earlier["results"].items()}
    for key, entry in results.items():
        new_seeds = {r["seed"] for r in entry["runs"]}
        kept = [{"commit": earlier["commit"], **r} for r in merged.get(key, {}).get("runs", [])
                if r["seed"] not in new_seeds]
        runs = sorted(kept + entry["runs"], key=lambda r: r["seed"])
        merged[key] = summarise(entry["dataset"], entry["alpha"], entry["images"], runs)
    sources = earlier.get("merged_from", []) + [
        {k: earlier[k] for k in ("command", "commit", "date")}
        | {"seeds": sorted({r["seed"] for e in earlier["results"].values() for r in e["runs"]})}]
    return earlier["protocol"], merged, {"merged_from": sources}


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--datasets", nargs="+", default=["mnist-10k", "fashion-mnist"])
    p.add_argument("--alphas", type=float, nargs="+", default=[10.0, 1.0])
    p.add_argument("--epochs", type=int, default=None, help="default: 60 for MNIST-10k, 12 for Fashion-MNIST")
    p.add_argument("--size", type=int, default=16, help="side images are resized to (0 keeps 28)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--restart-epochs", type=int, default=5,
                   help="last epochs after restarting the main sub-heads from k-means (0: never)")
    p.add_argument("--self-label-epochs", type=int, default=0,
                   help="epochs of self-labelling after the IIC epochs (0: none)")
    p.add_argument("--self-label-threshold", type=float, default=0.99)
    p.add_argument("--self-label-lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sub-heads", type=int, default=5)
    p.add_argument("--overclusters", type=int, default=None, help="default 5k; 0 disables the head")
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--tag", default="", help="suffix of the results file name")
    p.add_argument("--merge-into", type=Path, default=None,
                   help="add these seeds' runs to this earlier results file (same recipe) and rewrite it")
    args = p.parse_args()
    started = time.time()
    if args.quick:
        args.seeds, args.alphas, args.datasets = args.seeds[:1], args.alphas[:1], args.datasets[:1]
    results: dict = {}
    for name in args.datasets:
        data = load(name)
        if args.quick:
            data = data.subset(torch.arange(2000))
        epochs = args.epochs or (2 if args.quick else 60 if len(data) <= 10_000 else 12)
        for alpha in args.alphas:
            runs = []
            for seed in args.seeds:
                config = IICConfig(clusters=len(data.class_names), overclusters=args.overclusters,
                                   sub_heads=args.sub_heads, alpha=alpha, size=args.size or None,
                                   repeats=args.repeats, restart_epochs=args.restart_epochs, epochs=epochs,
                                   self_label_epochs=args.self_label_epochs,
                                   self_label_threshold=args.self_label_threshold,
                                   self_label_lr=args.self_label_lr, batch_size=args.batch_size,
                                   lr=args.lr, seed=seed, device=args.device)
                print(f"{name} α={alpha:g} seed {seed}", flush=True)
                runs.append({"seed": seed, "commit": start_commit(), **run(data, config, args.eval_every)})
            results[f"{name} α={alpha:g}"] = summarise(name, alpha, len(data), runs)
    config = {k: (str(v) if not isinstance(v, int | float | str | list | bool | type(None)) else v)
              for k, v in vars(args).items()}
    config["recipe"] = IICConfig(size=args.size or None, repeats=args.repeats, batch_size=args.batch_size,
                                 lr=args.lr, restart_epochs=args.restart_epochs,
                                 self_label_epochs=args.self_label_epochs,
                                 self_label_threshold=args.self_label_threshold,
                                 self_label_lr=args.self_label_lr).to_json()
    name, extra = "b5_cluster" + (f"-{args.tag}" if args.tag else ""), None
    if args.merge_into:
        # the merged file keeps its own name, whatever --tag this run had
        name, results, extra = merge(args.merge_into, config, results)
        config["seeds"] = sorted({r["seed"] for entry in results.values() for r in entry["runs"]})
    write_results(name, config, results, started, args.merge_into or args.out, extra)


if __name__ == "__main__":
    main()
