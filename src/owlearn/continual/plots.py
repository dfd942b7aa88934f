"""Figures and the results file of continual-learning runs (PNG via :mod:`owlearn.viz`, JSON atomically)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from owlearn._atomic import atomic_open
from owlearn.viz import DPI, _save, plot_accuracy_over_experiences, plot_confusion_matrix


def _as_json(result) -> dict:
    return result.to_json() if hasattr(result, "to_json") else dict(result)


def plot_strategies(results: Mapping[str, object], path: str | Path, title: str | None = None) -> Path:
    """Accuracy on the experiences seen so far, after each experience, one line per strategy.

    ``results`` maps a label to a :class:`~owlearn.continual.ContinualResult` or its JSON; strategies
    evaluated only at the end (joint training) appear as a single point.
    """
    curves = {name: [math.nan if v is None else v for v in _as_json(r)["seen_accuracy"]]
              for name, r in results.items()}
    return plot_accuracy_over_experiences(curves, path, title=title,
                                          ylabel="accuracy on the test images of experiences seen so far")


def plot_per_class_accuracy(per_class: Sequence[float], class_names: Sequence[str], path: str | Path,
                            title: str | None = None) -> Path:
    """Bar chart of each class's test accuracy after the last experience."""
    values = np.asarray(per_class, dtype=float)
    fig = Figure(figsize=(max(5.0, 0.55 * len(values) + 1.5), 3.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.bar(np.arange(len(values)), values, color="#4878a8")
    for i, v in enumerate(values):
        if np.isfinite(v):
            ax.text(i, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(np.arange(len(values)), labels=list(class_names), rotation=45, ha="right", rotation_mode="anchor",
                  fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("test accuracy")
    ax.set_title(title or "Per-class accuracy after the last experience")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def write_run_outputs(results: Mapping[str, object], out_dir: str | Path, prefix: str = "continual") -> dict[str, Path]:
    """Write ``<prefix>.json`` (every run), the comparison plot, and per strategy the per-class accuracy
    and confusion matrix after the last experience. Returns the paths by role."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = {name: _as_json(r) for name, r in results.items()}
    paths: dict[str, Path] = {}
    with atomic_open(out / f"{prefix}.json", "w") as fh:
        json.dump(docs, fh, indent=2)
    paths["results"] = out / f"{prefix}.json"
    paths["accuracy_over_experiences"] = plot_strategies(docs, out / f"{prefix}-accuracy.png",
                                                         title=next(iter(docs.values()))["scenario"])
    for name, doc in docs.items():
        slug = name.replace(" ", "_").replace("/", "-")
        paths[f"{name} per-class"] = plot_per_class_accuracy(
            doc["per_class_accuracy"], doc["class_names"], out / f"{prefix}-{slug}-per-class.png",
            title=f"{name}: per-class accuracy after the last experience (final {doc['final_accuracy']:.3f})")
        paths[f"{name} confusion"] = plot_confusion_matrix(
            np.asarray(doc["final_confusion"]), doc["class_names"], out / f"{prefix}-{slug}-confusion.png",
            title=f"{name}: confusion matrix after the last experience")
    return paths
