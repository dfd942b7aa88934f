"""B5 (discover) — finding new classes: a model trained on Fashion-MNIST classes 0-7 looks through the whole
test set (classes 8 and 9 unknown to it), refuses what it does not know, groups the refused images, and
the groups are named (here by their majority label, standing in for a person reading the contact
sheets) and added as classes without retraining. Reports the refusal, group purity, and the 10-class
accuracy after naming, for k-means on features and IIC on pixels.

Full run:  python benchmarks/b5_discover.py
Smoke run: python benchmarks/b5_discover.py --quick
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from owlearn.api import build_model, train_model
from owlearn.data.augment import preset
from owlearn.data.sources import load_dataset
from owlearn.discover import discover, name_groups, purity
from owlearn.train.loop import TrainConfig

from common import base_parser, mean_std, write_results

KNOWN = list(range(8))


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--accept-rate", type=float, default=0.95)
    p.add_argument("--methods", nargs="+", default=["kmeans", "iic"])
    p.add_argument("--iic-epochs", type=int, default=30, help="IIC's epochs on the refused images (discover's default)")
    p.add_argument("--detector", default="layers", help="the model's detector (layers: owlearn train's default)")
    args = p.parse_args()
    started = time.time()
    train_all, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    if args.quick:
        train_all, test = train_all.subset(torch.arange(6000)), test.subset(torch.arange(2000))
        args.epochs, args.seeds = 1, args.seeds[:1]
    names = train_all.class_names
    known = train_all.select_classes(KNOWN).relabel([names[c] for c in KNOWN])
    labels = test.labels.numpy()
    results: dict = {m: {"runs": []} for m in args.methods}
    for seed in args.seeds:
        calib, train = known.random_split(2000, seed=seed)
        model = build_model(train, "convnet", "linear", seed=seed)
        t0 = time.perf_counter()
        train_model(model, train, config=TrainConfig(epochs=args.epochs, batch_size=128, lr=0.1, seed=seed,
                                                     device=args.device), augment=preset("fashion"), progress=False)
        train_s = time.perf_counter() - t0
        model.fit_detector(train, calib, args.detector, accept_rate=args.accept_rate)
        model.fit_gaussian(train)
        for method in args.methods:
            m = copy.deepcopy(model)
            t0 = time.perf_counter()
            found = discover(m, test.images, k=2, method=method, seed=seed, iic_epochs=args.iic_epochs)
            group_s = time.perf_counter() - t0
            pur = purity(found, labels)
            # the "person" names each group after what most of its images are; a group whose majority is a
            # known class is left unnamed (they would see it is not new)
            named: dict[int, str] = {}
            for g in sorted(pur["groups"], key=lambda g: -g["purity"]):  # the clearest contact sheet first
                if g["majority"] not in KNOWN and names[g["majority"]] not in named.values():
                    named[g["group"]] = names[g["majority"]]
            name_groups(m, test.images, found, named)
            pred = m.predict(test.images)
            truth = np.array([names[v] for v in labels])
            answered = np.array(pred.names)
            acc_all = float((answered == truth).mean())
            new_mask = np.isin(labels, [8, 9])
            run = {"seed": seed, "train_seconds": train_s, "group_seconds": group_s,
                   "refused": int(len(found.rejected)),
                   "refused_share_of_unknown": float((~pred_mask(found, len(test))[new_mask]).mean()),
                   "unknown_share_of_refused": float(new_mask[found.rejected].mean()),
                   "group_sizes": found.sizes(), "purity": pur["purity"], "groups": pur["groups"],
                   "named": {int(g): n for g, n in named.items()},
                   "accuracy_10_classes_after_naming": acc_all,
                   "accuracy_new_classes_after_naming": float((answered[new_mask] == truth[new_mask]).mean()),
                   "accuracy_known_classes_after_naming": float((answered[~new_mask] == truth[~new_mask]).mean())}
            results[method]["runs"].append(run)
            print(f"seed {seed} {method}: refused {run['refused']}, purity {run['purity']:.3f}, named {named}, "
                  f"10-class accuracy {acc_all:.4f}", flush=True)
    for entry in results.values():
        for key in ("purity", "accuracy_10_classes_after_naming", "accuracy_new_classes_after_naming",
                    "unknown_share_of_refused", "group_seconds"):
            entry[key] = mean_std([r[key] for r in entry["runs"]])
    config = {"known_classes": KNOWN, "epochs": args.epochs, "accept_rate": args.accept_rate, "groups": 2,
              "detector": args.detector, "backbone": "convnet", "iic_epochs": args.iic_epochs, "quick": args.quick}
    write_results("b5_discover", config, results, started, args.out)


def pred_mask(found, n: int) -> np.ndarray:
    """Accepted mask of all ``n`` images from a discovery (refused = not accepted)."""
    accepted = np.ones(n, dtype=bool)
    accepted[found.rejected] = False
    return accepted


if __name__ == "__main__":
    main()
