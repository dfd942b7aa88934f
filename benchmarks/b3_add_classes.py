"""B3 — adding classes without retraining (Fashion-MNIST, ConvNet).

The ConvNet is trained on classes 0-4 only (30k images); classes 5…9 are then added one at a time from
their training images' feature statistics alone — no gradient step — to a Gaussian classifier with a
shared covariance. Reports 10-class test accuracy after the first 5 classes (softmax head and Gaussian
classifier) and after each added class, and the seconds per added class including feature extraction
of its 6,000 images (the median of ``--repeats`` tries, each on a fresh copy of the model). The Gaussian
classifier reads the network's embedding, the pooled mean and standard deviation of its stages, or both
(``OwlModel.fit_gaussian(features=...)``); each run measures the chosen views on the same network. Beside
it, the same ConvNet and recipe trained jointly on all ten classes (``--no-joint`` skips it;
``--joint-from RESULTS.json`` takes those figures from an earlier run with the same recipe).

python benchmarks/b3_add_classes.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from owlearn.api import build_model, train_model
from owlearn.data.augment import preset
from owlearn.data.sources import load_dataset
from owlearn.model import OwlModel
from owlearn.train.loop import TrainConfig

from common import ROOT, base_parser, mean_std, write_results

FIRST = [0, 1, 2, 3, 4]
DEFAULT_WIDTHS = (32, 64, 128, 256)  # the ConvNet's own default


def width_tag(widths) -> str:
    """``""`` for the ConvNet's default widths, else ``-w24-48-96-192``: in model and results file names."""
    return "" if tuple(widths) == DEFAULT_WIDTHS else "-w" + "-".join(map(str, widths))


def network_path(models: Path, widths, head: str, epochs: int, seed: int, label_smoothing: float = 0.0) -> Path:
    """Where the 5-class network of this recipe and seed is saved (and looked for)."""
    smoothing = f"-ls{label_smoothing:g}" if label_smoothing else ""
    return models / f"fashion5-convnet{width_tag(widths)}-{head}{smoothing}-epochs{epochs}-seed{seed}.owl"


def ten_class_accuracy(model, test) -> float:
    """Accuracy on the whole 10-class test set; images of classes the model does not know count as errors."""
    aligned = test.relabel(model.classes)
    pred = model.predict(test).nearest
    return float((pred == aligned.labels.numpy()).mean())  # unknown classes have label -1: always wrong


def train_config(args, seed: int) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, batch_size=128, lr=0.1, seed=seed, device=args.device,
                       label_smoothing=args.label_smoothing)


def new_model(data, args, seed: int):
    head_args = {"alpha": 16.0} if args.head == "l2softmax" else {}
    return build_model(data, "convnet", args.head, head_args=head_args, seed=seed,
                       backbone_args={"widths": tuple(args.widths)})


def joint_accuracy(train_all, test, args, seed: int) -> float:
    """The same ConvNet and recipe trained on all ten classes: what adding classes is measured against."""
    model = new_model(train_all, args, seed)
    train_model(model, train_all, config=train_config(args, seed), augment=preset("fashion"), progress=False)
    return ten_class_accuracy(model, test)


_PROBE = (torch.rand(512, 512, generator=torch.Generator().manual_seed(0)),) * 2


def speed_probe() -> float:
    """Seconds of a fixed piece of work (ten 512 x 512 float32 matrix products, about 2.7 GFLOP) just before a
    timed try: it shows whether the machine itself was slow at that moment."""
    a, b = _PROBE
    t0 = time.perf_counter()
    for _ in range(10):
        torch.mm(a, b)
    return time.perf_counter() - t0


def timed_add_class(model: OwlModel, name: str, images, repeats: int
                    ) -> tuple[OwlModel, list[float], list[float]]:
    """Add the class ``repeats`` times, each to a fresh copy of ``model`` (copied outside the timing); returns
    the last copy, the seconds of each try (feature extraction + statistics, no gradient step) and the
    :func:`speed_probe` seconds measured just before each.

    This machine's speed drifts by 30% to 2x within minutes (docs/performance.md); the median of a few tries
    measures the work rather than the shortest drifts, as timeit's repeats do, and the probe records the rest.
    """
    tries, probes = [], []
    for _ in range(repeats):
        grown = copy.deepcopy(model)
        probes.append(speed_probe())
        t0 = time.perf_counter()
        grown.add_class(name, images)
        tries.append(time.perf_counter() - t0)
    return grown, tries, probes


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--head", default="l2softmax", choices=["linear", "l2softmax"])
    p.add_argument("--label-smoothing", type=float, default=0.0,
                   help="label smoothing of the networks' training (B2 found it costs the detectors; this measures "
                        "what it does to classes added by statistics)")
    p.add_argument("--joint", action=argparse.BooleanOptionalAction, default=True,
                   help="also train on all ten classes with the same recipe (the figure to compare with)")
    p.add_argument("--gaussian-features", nargs="+", default=["layers", "embedding"],
                   choices=["layers", "embedding", "layers+embedding"],
                   help="what the Gaussian classifier reads (each is measured)")
    p.add_argument("--joint-from", type=Path, default=None,
                   help="with --no-joint: take the joint-training figure from this earlier results file")
    p.add_argument("--models", type=Path, default=ROOT / "artifacts" / "b3",
                   help="the 5-class networks: loaded from here when there, else trained and saved here "
                        "(re-measuring the add-class timings then needs no retraining)")
    p.add_argument("--widths", type=int, nargs=4, default=list(DEFAULT_WIDTHS),
                   help="channels of the ConvNet's four blocks (the time to add a class grows with their square)")
    p.add_argument("--repeats", type=int, default=3,
                   help="time each added class this many times (each on a fresh copy of the model); the median counts")
    p.add_argument("--train-only", action="store_true",
                   help="train and save the 5-class networks to --models, measure nothing (the timed run can "
                        "then have the machine to itself)")
    args = p.parse_args()
    started = time.time()
    train_all, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    if args.quick:
        train_all = train_all.subset(torch.arange(12_000))
        args.epochs, args.seeds = 1, args.seeds[:1]
    names = train_all.class_names
    first = train_all.select_classes(FIRST).relabel([names[c] for c in FIRST])
    runs = []
    for seed in args.seeds:
        path = network_path(args.models, args.widths, args.head, args.epochs, seed, args.label_smoothing)
        if path.exists() and not args.quick:
            model = OwlModel.load(path)
            train_s = model.info["b3_train_seconds"]
            print(f"seed {seed}: the 5-class network from {path}", flush=True)
        else:
            model = new_model(first, args, seed)
            t0 = time.perf_counter()
            train_model(model, first, config=train_config(args, seed), augment=preset("fashion"), progress=False)
            train_s = time.perf_counter() - t0
            if not args.quick:
                model.info["b3_train_seconds"] = train_s
                path.parent.mkdir(parents=True, exist_ok=True)
                model.save(path)
        if args.train_only:
            print(f"seed {seed}: saved {path}", flush=True)
            continue
        softmax_acc = ten_class_accuracy(model, test)
        print(f"seed {seed}: trained on 5 classes in {train_s:.0f} s; 10-class accuracy softmax {softmax_acc:.4f}",
              flush=True)
        run = {"seed": seed, "train_seconds": train_s, "network_file": path.name, "softmax_after_5": softmax_acc,
               "gaussian": {}}
        for kind in args.gaussian_features:
            model.fit_gaussian(first, features=kind)  # a fresh classifier: the classes added before are gone
            steps = [{"classes": 5, "accuracy": ten_class_accuracy(model, test)}]
            print(f"  Gaussian on {kind}: after 5 classes {steps[0]['accuracy']:.4f}", flush=True)
            for c in range(5, 10):
                images = train_all.subset(train_all.labels == c)
                model, tries, probes = timed_add_class(model, names[c], images, args.repeats)
                seconds = float(np.median(tries))
                steps.append({"added": names[c], "images": len(images), "classes": len(model.classes),
                              "accuracy": ten_class_accuracy(model, test), "seconds": seconds,
                              "seconds_tries": tries, "speed_probe_s": probes})
                print(f"  + {names[c]:12s} ({len(images)} images, {seconds:.2f} s; tries "
                      + ", ".join(f"{t:.2f}" for t in tries) + "; probe " + ", ".join(f"{t:.3f}" for t in probes)
                      + f"): accuracy {steps[-1]['accuracy']:.4f}", flush=True)
            run["gaussian"][kind] = steps
        if args.joint:
            run["joint_accuracy"] = joint_accuracy(train_all, test, args, seed)
            print(f"  joint training on all ten classes: accuracy {run['joint_accuracy']:.4f}", flush=True)
        runs.append(run)
    if args.train_only:
        return
    results = {"runs": runs, "softmax_after_5": mean_std([r["softmax_after_5"] for r in runs]), "gaussian": {}}
    for kind in args.gaussian_features:
        steps = [r["gaussian"][kind] for r in runs]
        seconds = [s["seconds"] for st in steps for s in st[1:]]
        results["gaussian"][kind] = {
            "after_5": mean_std([st[0]["accuracy"] for st in steps]),
            "after_each_class": [mean_std([st[i]["accuracy"] for st in steps]) for i in range(6)],
            "final": mean_std([st[-1]["accuracy"] for st in steps]),
            "seconds_per_class": mean_std(seconds), "max_seconds_per_class": float(np.max(seconds)),
            "max_seconds_any_try": float(max(max(s["seconds_tries"]) for st in steps for s in st[1:])),
        }
    if args.joint:
        results["joint"] = mean_std([r["joint_accuracy"] for r in runs])
    elif args.joint_from:
        earlier = json.loads(args.joint_from.read_text())
        same = all(earlier["config"].get(k) == v for k, v in
                   {"epochs": args.epochs, "head": args.head, "lr": 0.1, "batch_size": 128}.items())
        same = same and tuple(earlier["config"].get("widths", DEFAULT_WIDTHS)) == tuple(args.widths)
        if not same or "joint" not in earlier["results"]:
            raise SystemExit(f"{args.joint_from} has no joint figure for this recipe")
        results["joint"] = earlier["results"]["joint"]
        # an earlier run that took its joint figure from a third one passes that source on
        results["joint_from"] = earlier["results"].get("joint_from") or {
            "file": str(args.joint_from), "commit": earlier.get("commit"),
            "runs": [r.get("joint_accuracy") for r in earlier["results"]["runs"]]}
    config = {"quick": args.quick, "epochs": args.epochs, "head": args.head, "widths": args.widths,
              "first_classes": FIRST, "label_smoothing": args.label_smoothing,
              "train_images": len(first), "augment": preset("fashion").to_json(), "lr": 0.1, "batch_size": 128,
              "gaussian_features": args.gaussian_features, "torch_threads": torch.get_num_threads(),
              "timing_repeats": args.repeats}
    write_results("b3_add_classes", config, results, started, args.out)


if __name__ == "__main__":
    main()
