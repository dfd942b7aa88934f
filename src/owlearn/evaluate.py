"""Closed-set evaluation of a model on a labelled dataset: numbers, a report, and pictures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from owlearn import metrics, viz
from owlearn._atomic import atomic_open
from owlearn.data.dataset import UNLABELED, ImageDataset
from owlearn.model import OwlModel


def evaluate_model(model: OwlModel, data: ImageDataset, out_dir: str | Path | None = None, *,
                   feature_map: Literal["tsne", "pca", "none"] = "tsne", max_points: int = 2000,
                   seed: int = 0, extra: dict[str, ImageDataset] | None = None) -> dict:
    """Accuracy, per-class report and confusion matrix of ``model`` on ``data``.

    ``data`` is matched to the model's classes by name; images of classes the model does not know
    are left out of the closed-set numbers (and drawn on the feature map as "unknown"). With
    ``out_dir``, writes ``metrics.json``, ``confusion_matrix.png`` and ``feature_map.png`` there.
    ``extra`` datasets (e.g. out-of-distribution images) are drawn on the feature map too.
    """
    aligned = data.relabel(model.classes)
    known = aligned.labels != UNLABELED
    if not bool(known.any()):
        raise ValueError(f"{data.name or 'the dataset'} has no images of the model's classes "
                         f"({', '.join(model.classes[:10])}…)")
    pred = model.predict(aligned.subset(known))
    y_true = aligned.labels[known].numpy()
    # closed-set figures: the most probable known class, whether or not the detector would refuse it
    summary = metrics.classification_summary(y_true, pred.nearest, model.classes)
    summary["dataset"] = data.name
    summary["unknown_images"] = int((~known).sum())
    summary["report"] = metrics.format_report(y_true, pred.nearest, model.classes)
    if out_dir is None:
        return summary
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"confusion_matrix": str(viz.plot_confusion_matrix(
        np.asarray(summary["confusion_matrix"]), model.classes, out / "confusion_matrix.png",
        title=f"{data.name}: accuracy {summary['accuracy']:.4f}"))}
    if feature_map != "none":
        extra_feats = {}
        if bool((~known).any()):
            extra_feats["unknown classes"] = model.features(aligned.subset(~known)).numpy()
        for name, ds in (extra or {}).items():
            extra_feats[name] = model.features(ds).numpy()
        feats = model.features(aligned.subset(known)).numpy()
        files["feature_map"] = str(viz.plot_feature_map(
            feats, y_true, model.classes, out / "feature_map.png", method=feature_map,
            extra=extra_feats or None, seed=seed, max_points=max_points,
            title=f"feature space ({feature_map}) — {data.name}"))
    history = model.info.get("training", {}).get("history")
    if history:
        files["training_curves"] = str(viz.plot_training_curves(history, out / "training_curves.png"))
    summary["files"] = files
    with atomic_open(out / "metrics.json", "w") as fh:
        json.dump({k: v for k, v in summary.items() if k != "report"}, fh, indent=2)
    return summary


def evaluate_rejection(model: OwlModel, data: ImageDataset, ood: dict[str, ImageDataset],
                       out_dir: str | Path | None = None) -> dict:
    """How well the model's detector tells ``data`` (its own classes) from each ``ood`` dataset.

    Per OOD set: AUROC, FPR at 95% TPR, share of in-distribution accepted, share of OOD rejected and
    accuracy on the accepted in-distribution images, at the model's calibrated threshold. With
    ``out_dir``: ``ood_metrics.json``, ``score_histograms.png`` and ``roc_curves.png``.
    """
    if model.detector is None:
        raise ValueError("the model has no outlier detector: train it with --detector (e.g. knn) or add one "
                         "with OwlModel.fit_detector")
    aligned = data.relabel(model.classes)
    known = aligned.labels != UNLABELED
    pred_in = model.predict(aligned.subset(known))
    correct = pred_in.nearest == aligned.labels[known].numpy()
    results: dict = {"in_distribution": data.name, "detector": model.info.get("rejection", {}),
                     "closed_set_accuracy": float(correct.mean()), "ood": {}}
    ood_scores = {}
    for name, ds in ood.items():
        pred_out = model.predict(ds)
        ood_scores[name] = pred_out.scores
        summary = metrics.rejection_summary(pred_in.accepted, pred_out.accepted, correct)
        summary["auroc"] = metrics.auroc(pred_in.scores, pred_out.scores)
        summary["fpr_at_95_tpr"] = metrics.fpr_at_tpr(pred_in.scores, pred_out.scores, 0.95)
        results["ood"][name] = summary
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        threshold = float(model.detector.offset_)
        results["files"] = {
            "score_histograms": str(viz.plot_score_histograms(pred_in.scores, ood_scores, out / "score_histograms.png",
                                                              threshold=threshold)),
            "roc_curves": str(viz.plot_roc_curves(pred_in.scores, ood_scores, out / "roc_curves.png")),
        }
        with atomic_open(out / "ood_metrics.json", "w") as fh:
            json.dump(results, fh, indent=2)
    return results


def held_out_accuracy(model: OwlModel, data: ImageDataset) -> float:
    """Accuracy on the images of ``data`` whose class the model knows."""
    aligned = data.relabel(model.classes)
    known = aligned.labels != UNLABELED
    pred = model.predict(aligned.subset(known))
    return float((torch.from_numpy(pred.nearest) == aligned.labels[known]).float().mean())
