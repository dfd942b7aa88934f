"""B3 — which features the Gaussian classifier should read, chosen on held-out training images.

Runs B3's procedure (Gaussian fitted on classes 0-4, classes 5-9 added one at a time) on 54,000 of the
Fashion-MNIST training images and scores the 10-class accuracy on the other 6,000 (a seeded split), for each
feature view and each saved 5-class network of ``b3_add_classes.py`` (run it, or its ``--train-only``, first).
The test set is never read.

python benchmarks/b3_select_view.py [--widths 24 48 96 192 --epochs 12]
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from b3_add_classes import DEFAULT_WIDTHS, FIRST, network_path, width_tag
from owlearn.data.sources import load_dataset
from owlearn.model import GAUSSIAN_FEATURES, OwlModel

from common import ROOT, base_parser, mean_std, write_results

HELD_OUT = 6_000


def held_out_accuracy(model: OwlModel, fit, held_out, view: str) -> float:
    names = fit.class_names
    model.fit_gaussian(fit.select_classes(FIRST).relabel([names[c] for c in FIRST]), features=view)
    for c in range(len(FIRST), len(names)):
        model.add_class(names[c], fit.subset(fit.labels == c))
    aligned = held_out.relabel(model.classes)
    return float((model.predict(held_out).nearest == aligned.labels.numpy()).mean())


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--head", default="l2softmax", choices=["linear", "l2softmax"])
    p.add_argument("--widths", type=int, nargs=4, default=list(DEFAULT_WIDTHS))
    p.add_argument("--models", type=Path, default=ROOT / "artifacts" / "b3")
    p.add_argument("--views", nargs="+", default=list(GAUSSIAN_FEATURES), choices=GAUSSIAN_FEATURES)
    args = p.parse_args()
    started = time.time()
    train = load_dataset("fashion-mnist", "train")
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(train)))
    held_out, fit = train.subset(order[:HELD_OUT].sort().values), train.subset(order[HELD_OUT:].sort().values)
    seeds = args.seeds
    if args.quick:  # a smoke run: one network, a fifth of the images
        seeds, held_out, fit = seeds[:1], held_out.subset(torch.arange(1_200)), fit.subset(torch.arange(10_800))
    runs = []
    for seed in seeds:
        path = network_path(args.models, args.widths, args.head, args.epochs, seed)
        if not path.exists():
            raise SystemExit(f"{path} is missing: train it with b3_add_classes.py --train-only (same options)")
        model = OwlModel.load(path)
        accuracy = {view: held_out_accuracy(model, fit, held_out, view) for view in args.views}
        print(f"seed {seed}: " + ", ".join(f"{v} {a:.4f}" for v, a in accuracy.items()), flush=True)
        runs.append({"seed": seed, "network_file": path.name, "held_out_accuracy": accuracy})
    summary = {view: mean_std([r["held_out_accuracy"][view] for r in runs]) for view in args.views}
    chosen = max(args.views, key=lambda v: summary[v]["mean"])
    config = {"epochs": args.epochs, "head": args.head, "widths": args.widths, "held_out_images": len(held_out),
              "split_seed": 0, "fit_images": len(fit), "views": args.views, "quick": args.quick}
    quick = "-quick" if args.quick else ""
    out = args.out or Path(__file__).parent / "results" / f"b3_select_view{width_tag(args.widths)}{quick}.json"
    write_results("b3_select_view", config, {"runs": runs, "held_out_accuracy": summary, "chosen": chosen},
                  started, out)


if __name__ == "__main__":
    main()
