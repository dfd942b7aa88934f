"""B2 — open-set rejection: every detector on ConvNet features, both directions, CE vs L2-softmax.

* Fashion-MNIST in / MNIST-10k out: the ConvNets of B1 (``--models``, written by
  ``b1_supervised.py --save-models``), trained on all 60k Fashion-MNIST training images.
  Thresholds are calibrated on the first half of the Fashion-MNIST test set (images the network never
  saw) and every figure is measured on the second half against all 10k MNIST images.
* MNIST-10k split in / Fashion-MNIST out: ConvNets trained here on the first 8,000 MNIST-10k images
  less 500 held out for calibration; in-distribution = the last 2,000, OOD = the Fashion-MNIST test set.

Detectors fit on the training features (the embedding the last layer reads) and logits; the threshold
is set for 99% acceptance of held-out in-distribution images, and LOF is also run with the write-up's
``contamination`` 0.001 and 0.01. python benchmarks/b2_open_set.py [--quick]
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from owlearn import metrics
from owlearn.api import build_model, train_model
from owlearn.data.augment import preset
from owlearn.data.dataset import ImageDataset
from owlearn.data.sources import load_dataset
from owlearn.model import OwlModel
from owlearn.space import calibrate, make_detector
from owlearn.train.loop import TrainConfig

from common import ROOT, SHARED_DATA, base_parser, mean_std, write_results

HEADS = {"CE": ("linear", {}), "L2-softmax": ("l2softmax", {"alpha": 16.0})}
DETECTORS = {  # label → (detector name, params, threshold rule)
    "LOF (k=20)": ("lof", {"n_neighbors": 20, "contamination": None}, "calibrated"),
    "LOF contamination 0.001": ("lof", {"n_neighbors": 20, "contamination": 0.001}, "contamination"),
    "LOF contamination 0.01": ("lof", {"n_neighbors": 20, "contamination": 0.01}, "contamination"),
    "kNN (k=50)": ("knn", {"n_neighbors": 50}, "calibrated"),
    "Mahalanobis": ("mahalanobis", {}, "calibrated"),
    "ViM": ("vim", {}, "calibrated"),
    "energy": ("energy", {}, "calibrated"),
    "MSP": ("msp", {}, "calibrated"),
}
ACCEPT = 0.99


def evaluate_detectors(model: OwlModel, fit: ImageDataset, calib: ImageDataset, test_in: ImageDataset,
                       test_out: ImageDataset, detectors: dict) -> dict:
    """Fit every detector on ``fit`` features, threshold it, score in vs out; returns per-detector figures."""
    fit_emb, fit_logits = model.outputs(fit)
    cal_emb, cal_logits = model.outputs(calib)
    in_emb, in_logits = model.outputs(test_in)
    out_emb, out_logits = model.outputs(test_out)
    fit_labels = fit.relabel(model.class_names).labels.numpy()
    correct = in_logits.argmax(1).numpy() == test_in.relabel(model.class_names).labels.numpy()
    W, b = model.network.head.last_layer()
    rows = {}
    for label, (name, params, rule) in detectors.items():
        det = make_detector(name, **params)
        t0 = time.perf_counter()
        if name == "vim":
            det.fit(fit_emb, W=W.cpu(), b=b.cpu())
        else:
            det.fit(fit_emb, labels=fit_labels, logits=fit_logits)
        fit_s = time.perf_counter() - t0
        if rule == "calibrated":
            calibrate(det, cal_emb, cal_logits, accept_rate=ACCEPT)
        t0 = time.perf_counter()
        s_in = det.score_samples(in_emb, in_logits)
        s_out = det.score_samples(out_emb, out_logits)
        score_s = time.perf_counter() - t0
        summary = metrics.rejection_summary(s_in >= det.offset_, s_out >= det.offset_, correct)
        rows[label] = {
            "auroc": metrics.auroc(s_in, s_out), "fpr_at_95_tpr": metrics.fpr_at_tpr(s_in, s_out, 0.95),
            "in_accepted": summary["in_accepted"], "out_rejected": summary["out_rejected"],
            "accepted_accuracy": summary["accepted_accuracy"], "fit_s": fit_s, "score_s": score_s,
            "scored_images": len(s_in) + len(s_out), "threshold": rule,
        }
        print(f"    {label:26s} AUROC {rows[label]['auroc']:.4f}  FPR95 {rows[label]['fpr_at_95_tpr']:.4f}  "
              f"in acc. {summary['in_accepted']:.3f}  out rej. {summary['out_rejected']:.3f}  "
              f"fit {fit_s:.1f} s  score {score_s:.1f} s", flush=True)
    return {"closed_set_accuracy": float(correct.mean()), "detectors": rows}


def fashion_in(models_dir: Path, heads: list[str], seeds: list[int], quick: bool) -> dict:
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    mnist = load_dataset("mnist", "test", data_dir=SHARED_DATA)
    calib, test_in = test.split(5000)
    if quick:
        train, test_in, mnist = train.subset(torch.arange(10_000)), test_in.subset(torch.arange(2000)), \
            mnist.subset(torch.arange(2000))
    out: dict = {}
    for head_label in heads:
        head = HEADS[head_label][0]
        for seed in seeds:
            path = models_dir / f"fashion-convnet-{head}-seed{seed}.owl"
            if not path.exists():
                raise SystemExit(f"{path} is missing: run python benchmarks/b1_supervised.py --save-models "
                                 f"{models_dir} first")
            print(f"Fashion-MNIST in / MNIST out — {head_label}, seed {seed}", flush=True)
            model = OwlModel.load(path)
            out.setdefault(head_label, []).append(
                {"seed": seed, **evaluate_detectors(model, train, calib, test_in, mnist, DETECTORS)})
    return out


def mnist_in(heads: list[str], seeds: list[int], epochs: int, quick: bool, device: str) -> dict:
    mnist = load_dataset("mnist", "test", data_dir=SHARED_DATA)
    train_all, test_in = mnist.split(8000)
    fashion = load_dataset("fashion-mnist", "test")
    if quick:
        fashion = fashion.subset(torch.arange(2000))
    out: dict = {}
    for head_label in heads:
        head, head_args = HEADS[head_label]
        for seed in seeds:
            calib, train = train_all.random_split(500, seed=seed)
            print(f"MNIST-10k split in / Fashion-MNIST out — {head_label}, seed {seed}: training", flush=True)
            model = build_model(train, "convnet", head, head_args=head_args, seed=seed)
            train_model(model, train, config=TrainConfig(epochs=epochs, batch_size=128, lr=0.1, seed=seed,
                                                         device=device),
                        augment=preset("digits"), progress=False)
            out.setdefault(head_label, []).append(
                {"seed": seed, **evaluate_detectors(model, train, calib, test_in, fashion, DETECTORS)})
    return out


def summarise(direction: dict) -> dict:
    """Mean ± std over seeds of every figure, per head and detector."""
    table: dict = {}
    for head, runs in direction.items():
        table[head] = {"closed_set_accuracy": mean_std([r["closed_set_accuracy"] for r in runs]), "detectors": {}}
        for det in runs[0]["detectors"]:
            table[head]["detectors"][det] = {
                key: mean_std([r["detectors"][det][key] for r in runs])
                for key in ["auroc", "fpr_at_95_tpr", "in_accepted", "out_rejected", "accepted_accuracy", "fit_s",
                            "score_s"]}
    return table


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--models", type=Path, default=ROOT / "artifacts" / "b1", help="where B1 saved its models")
    p.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    p.add_argument("--mnist-epochs", type=int, default=15)
    p.add_argument("--directions", nargs="+", default=["fashion-in", "mnist-in"], choices=["fashion-in", "mnist-in"])
    args = p.parse_args()
    started = time.time()
    seeds = args.seeds[:1] if args.quick else args.seeds
    results = {}
    if "fashion-in" in args.directions:
        runs = fashion_in(args.models, args.heads, seeds, args.quick)
        results["fashion-in_mnist-out"] = {"runs": runs, "summary": summarise(runs)}
    if "mnist-in" in args.directions:
        runs = mnist_in(args.heads, seeds, 2 if args.quick else args.mnist_epochs, args.quick, args.device)
        results["mnist-in_fashion-out"] = {"runs": runs, "summary": summarise(runs)}
    config = {"quick": args.quick, "seeds": seeds, "accept_rate": ACCEPT, "mnist_epochs": args.mnist_epochs,
              "detectors": {k: {"name": v[0], "params": v[1], "threshold": v[2]} for k, v in DETECTORS.items()},
              "features": "the embedding the last linear layer reads (alpha * unit features for L2-softmax)"}
    write_results("b2_open_set", config, results, started, args.out)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
