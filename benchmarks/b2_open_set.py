"""B2 — open-set rejection: every detector on ConvNet features, both directions, CE vs L2-softmax.

* Fashion-MNIST in / MNIST-10k out: the ConvNets of B1 (``--models``, written by
  ``b1_supervised.py --save-models``), trained on all 60k Fashion-MNIST training images.
  Thresholds are calibrated on the first half of the Fashion-MNIST test set (images the network never
  saw) and every figure is measured on the second half against all 10k MNIST images.
* MNIST-10k split in / Fashion-MNIST out: ConvNets trained here on the first 8,000 MNIST-10k images
  less 500 held out for calibration; in-distribution = the last 2,000, OOD = the Fashion-MNIST test set.

Detectors fit on the training features (the embedding the last layer reads) and logits; the threshold
is set for 99% acceptance of held-out in-distribution images, and LOF is also run with the write-up's
``contamination`` 0.001 and 0.01. LOF reads unit-normalised features and a random 20,000 of the
training features (fit in a few seconds; measured better than raw features and all 60k). The
multi-layer detector ('layers') also reads every ConvNet block's mean+std pooled feature map. Network
outputs are cached under ``--cache`` (artifacts/b2-features) and the digit ConvNets saved under
``--digit-models``, reused when there. python benchmarks/b2_open_set.py [--quick]
"""

from __future__ import annotations

import copy
import hashlib
import os
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
from owlearn.train.loop import TrainConfig, resolve_device

from common import ROOT, SHARED_DATA, base_parser, mean_std, write_results

HEADS = {"CE": ("linear", {}), "L2-softmax": ("l2softmax", {"alpha": 16.0})}
FAST_LOF = {"n_neighbors": 20, "normalize": True, "max_reference": 20_000}
LAYERS = "Mahalanobis layers 3+4 + ViM + kNN"
DETECTORS = {  # label → (detector name, params, threshold rule)
    "LOF contamination 0.001": ("lof", {**FAST_LOF, "contamination": 0.001}, "contamination"),
    "LOF contamination 0.01": ("lof", {**FAST_LOF, "contamination": 0.01}, "contamination"),
    "LOF, 99% calibrated": ("lof", {**FAST_LOF, "contamination": None}, "calibrated"),
    "kNN (k=50)": ("knn", {"n_neighbors": 50}, "calibrated"),
    "kNN (k=1)": ("knn", {"n_neighbors": 1}, "calibrated"),
    "Mahalanobis": ("mahalanobis", {}, "calibrated"),
    "ViM": ("vim", {}, "calibrated"),
    "energy": ("energy", {}, "calibrated"),
    "MSP": ("msp", {}, "calibrated"),
    "Mahalanobis layers 3+4": ("layers", {"vim": False, "knn_block": None}, "calibrated"),
    "Mahalanobis layers 3+4 + ViM": ("layers", {"knn_block": None}, "calibrated"),
    LAYERS: ("layers", {}, "calibrated"),  # the default multi-layer detector
}
ACCEPT = 0.99
POOLING = "meanstd"  # of the multi-layer detectors' stage features


def cached_outputs(model: OwlModel, data: ImageDataset, cache: Path | None) -> dict[str, np.ndarray]:
    """Pooled stage features, embedding and logits of ``data`` (one forward pass), cached as npz: the
    detectors are cheap next to a network pass over 60k images on a shared CPU."""
    if cache is not None and cache.exists():
        with np.load(cache) as f:
            return dict(f)
    layers, emb, logits = model.layer_outputs(data, POOLING)
    out = {"layers": layers.numpy(), "emb": emb.numpy(), "logits": logits.numpy()}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **out)
    return out


def _fitted(model: OwlModel, name: str, params: dict, fit: dict, labels: np.ndarray):
    det = make_detector(name, **params)
    W, b = (t.detach().cpu() for t in model.network.head.last_layer())
    if name == "vim":
        det.fit(fit["emb"], W=W, b=b)
    elif name == "layers":
        dims = [*model.network.layer_dims(POOLING), W.shape[1]]
        det.fit(_inputs(det, fit), labels=labels, layer_dims=dims, W=W, b=b)
    else:
        det.fit(fit["emb"], labels=labels, logits=fit["logits"])
    return det


def _inputs(det, outputs: dict) -> np.ndarray:
    if getattr(det, "reads", "embedding") == "layers":
        return np.concatenate([outputs["layers"], outputs["emb"]], axis=1)
    return outputs["emb"]


def evaluate_detectors(model: OwlModel, fit: dict, fit_labels: np.ndarray, calib: dict, test_in: dict,
                       in_labels: np.ndarray, test_out: dict, detectors: dict) -> dict:
    """Fit every detector on ``fit`` outputs, threshold it, score in vs out; returns per-detector figures."""
    correct = test_in["logits"].argmax(1) == in_labels
    rows = {}
    fitted: dict = {}  # LOF rows differ only in their threshold: one fit serves them all
    for label, (name, params, rule) in detectors.items():
        key = (name, repr(sorted((k, v) for k, v in params.items() if k != "contamination")))
        if key in fitted:
            base, fit_s = fitted[key]
            det = copy.copy(base)
            det.contamination = params.get("contamination")
        else:
            t0 = time.perf_counter()
            det = _fitted(model, name, params, fit, fit_labels)
            fit_s = time.perf_counter() - t0
            fitted[key] = det, fit_s
        if rule == "contamination":
            # what fit(contamination=c) sets: that share of the training samples, scored leave-one-out
            det.offset_ = float(np.percentile(det.negative_outlier_factor_, 100.0 * params["contamination"]))
        else:
            calibrate(det, _inputs(det, calib), calib["logits"], accept_rate=ACCEPT)
        t0 = time.perf_counter()
        s_in = det.score_samples(_inputs(det, test_in), test_in["logits"])
        t1 = time.perf_counter()
        s_out = det.score_samples(_inputs(det, test_out), test_out["logits"])
        score_s, score_out_s = time.perf_counter() - t0, time.perf_counter() - t1
        summary = metrics.rejection_summary(s_in >= det.offset_, s_out >= det.offset_, correct)
        rows[label] = {
            "auroc": metrics.auroc(s_in, s_out), "fpr_at_95_tpr": metrics.fpr_at_tpr(s_in, s_out, 0.95),
            "in_accepted": summary["in_accepted"], "out_rejected": summary["out_rejected"],
            "accepted_accuracy": summary["accepted_accuracy"], "fit_s": fit_s, "score_s": score_s,
            "scored_images": len(s_in) + len(s_out), "score_ood_s": score_out_s, "ood_images": len(s_out),
            "threshold": rule,
        }
        print(f"    {label:30s} AUROC {rows[label]['auroc']:.4f}  FPR95 {rows[label]['fpr_at_95_tpr']:.4f}  "
              f"in acc. {summary['in_accepted']:.3f}  out rej. {summary['out_rejected']:.3f}  "
              f"fit {fit_s:.1f} s  score {score_s:.1f} s ({len(s_out)} OOD images {score_out_s:.1f} s)", flush=True)
    return {"closed_set_accuracy": float(correct.mean()), "detectors": rows}


def _cache_file(cache_dir: Path | None, model_path: Path, data: str) -> Path | None:
    """Keyed by the model file's content too: a retrained model saved under the same name must not be
    scored with its predecessor's features; a model not saved (quick runs) is not cached at all."""
    if cache_dir is None or not model_path.is_file():
        return None
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()[:12]
    return cache_dir / f"{model_path.stem}-{digest}-{data}-{POOLING}.npz"


def _slice(outputs: dict, part: slice) -> dict:
    return {k: v[part] for k, v in outputs.items()}


def fashion_in(models_dir: Path, heads: list[str], seeds: list[int], quick: bool, cache_dir: Path | None) -> dict:
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    mnist = load_dataset("mnist", "test", data_dir=SHARED_DATA)
    if quick:
        train, test, mnist = train.subset(torch.arange(10_000)), test.subset(torch.arange(4000)), \
            mnist.subset(torch.arange(2000))
        cache_dir = None
    half = len(test) // 2  # the first half calibrates, the second is the in-distribution test set
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
            fit = cached_outputs(model, train, _cache_file(cache_dir, path, "fashion-train"))
            test_out = cached_outputs(model, test, _cache_file(cache_dir, path, "fashion-test"))
            ood = cached_outputs(model, mnist, _cache_file(cache_dir, path, "mnist-test"))
            labels = test.relabel(model.class_names).labels.numpy()
            training = model.info.get("training", {})
            # the recipe of B1's model matters here: label smoothing costs the feature-space detectors much of
            # their rejection (session 19's runs, RESULTS.md B2)
            recipe = {"model_label_smoothing": training.get("config", {}).get("label_smoothing"),
                      "model_epochs": len(training.get("history", []))}
            out.setdefault(head_label, []).append({"seed": seed, **recipe, **evaluate_detectors(
                model, fit, train.relabel(model.class_names).labels.numpy(), _slice(test_out, slice(0, half)),
                _slice(test_out, slice(half, None)), labels[half:], ood, DETECTORS)})
    return out


def mnist_in(heads: list[str], seeds: list[int], epochs: int, quick: bool, device: str, models_dir: Path,
             cache_dir: Path | None) -> dict:
    mnist = load_dataset("mnist", "test", data_dir=SHARED_DATA)
    train_all, test_in = mnist.split(8000)
    fashion = load_dataset("fashion-mnist", "test")
    if quick:
        fashion = fashion.subset(torch.arange(2000))
        cache_dir = None
    out: dict = {}
    for head_label in heads:
        head, head_args = HEADS[head_label]
        for seed in seeds:
            calib, train = train_all.random_split(500, seed=seed)
            path = models_dir / f"mnist-convnet-{head}-seed{seed}.owl"
            if path.exists() and not quick:
                print(f"MNIST-10k split in / Fashion-MNIST out — {head_label}, seed {seed}: {path}", flush=True)
                model = OwlModel.load(path)
            else:
                print(f"MNIST-10k split in / Fashion-MNIST out — {head_label}, seed {seed}: training", flush=True)
                model = build_model(train, "convnet", head, head_args=head_args, seed=seed)
                # the resolved device, not "auto", goes into the model's record (RESULTS.md says where it trained)
                train_model(model, train, config=TrainConfig(epochs=epochs, batch_size=128, lr=0.1, seed=seed,
                                                             device=resolve_device(device).type),
                            augment=preset("digits"), progress=False)
                model.network.cpu()
                if not quick:
                    model.save(path)
            outputs = [cached_outputs(model, ds, _cache_file(cache_dir, path, name)) for ds, name in
                       [(train, "mnist-train7500"), (calib, "mnist-calib500"), (test_in, "mnist-test2000"),
                        (fashion, "fashion-test")]]
            labels = [ds.relabel(model.class_names).labels.numpy() for ds in (train, test_in)]
            trained = model.info.get("training", {}).get("config", {})
            out.setdefault(head_label, []).append({
                "seed": seed, "model": path.name, "epochs": trained.get("epochs"), "trained_on": trained.get("device"),
                **evaluate_detectors(model, outputs[0], labels[0], outputs[1], outputs[2], labels[1], outputs[3],
                                     DETECTORS)})
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
                            "score_s", "score_ood_s"]}
    return table


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--models", type=Path, default=ROOT / "artifacts" / "b1", help="where B1 saved its models")
    p.add_argument("--heads", nargs="+", default=list(HEADS), choices=list(HEADS))
    p.add_argument("--mnist-epochs", type=int, default=15)
    p.add_argument("--directions", nargs="+", default=["fashion-in", "mnist-in"], choices=["fashion-in", "mnist-in"])
    p.add_argument("--digit-models", type=Path, default=ROOT / "artifacts" / "b2-digits",
                   help="where the digit-direction ConvNets are saved (and reused from, if there)")
    p.add_argument("--cache", type=Path, default=ROOT / "artifacts" / "b2-features",
                   help="cache of network outputs (npz); --no-cache to recompute")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--timing-note", default="", help="how loaded the machine was (goes into RESULTS.md)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = None if args.no_cache else args.cache
    started = time.time()
    load_before = os.getloadavg()[0]  # the machine is shared: say how busy it was when the timings were taken
    seeds = args.seeds[:1] if args.quick else args.seeds
    results = {}
    if "fashion-in" in args.directions:
        runs = fashion_in(args.models, args.heads, seeds, args.quick, cache)
        results["fashion-in_mnist-out"] = {"runs": runs, "summary": summarise(runs)}
    if "mnist-in" in args.directions:
        runs = mnist_in(args.heads, seeds, 2 if args.quick else args.mnist_epochs, args.quick, args.device,
                        args.digit_models, cache)
        results["mnist-in_fashion-out"] = {"runs": runs, "summary": summarise(runs)}
    config = {"quick": args.quick, "seeds": seeds, "accept_rate": ACCEPT, "mnist_epochs": args.mnist_epochs,
              "detectors": {k: {"name": v[0], "params": v[1], "threshold": v[2]} for k, v in DETECTORS.items()},
              "features": "the embedding the last linear layer reads (alpha * unit features for L2-softmax); "
                          f"the multi-layer detectors also read each ConvNet block's {POOLING}-pooled feature map",
              "torch_threads": torch.get_num_threads(), "timing_note": args.timing_note,
              "load_average_before": load_before, "load_average_after": os.getloadavg()[0]}
    write_results("b2_open_set", config, results, started, args.out)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
